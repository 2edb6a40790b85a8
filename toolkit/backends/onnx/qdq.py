"""Reading a QDQ graph: which ops hold stored weights, and how those weights and the activations are quantized."""

from __future__ import annotations

import collections

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def weight_sources(model) -> list[tuple[object, str, object | None]]:
    """Each conv / linear / matmul whose second input is a stored weight: ``(node, the stored tensor's name, the
    DequantizeLinear node it passes through or None)``. A MatMul of two activations (attention) has no weight."""
    inits = {t.name for t in model.graph.initializer}
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    out = []
    for node in model.graph.node:
        if node.op_type not in WEIGHTED_OPS or len(node.input) < 2:
            continue
        w = node.input[1]
        if w in inits:
            out.append((node, w, None))
        elif w in dq and dq[w].input[0] in inits:
            out.append((node, dq[w].input[0], dq[w]))
    return out


def quantization(model) -> dict:
    """How a QDQ graph stores its weights and activations: the stored dtype of every conv / linear / matmul weight,
    how many have one scale per output channel (a rank-1 scale), and the activations' quantized dtypes."""
    import onnx

    inits = {t.name: t for t in model.graph.initializer}
    name = onnx.TensorProto.DataType.Name
    weighted = weight_sources(model)
    per_channel = [n for n, _, dq in weighted if dq is not None and dq.input[1] in inits and len(inits[dq.input[1]].dims) == 1]
    weight_names = {w for _, w, _ in weighted}
    activations = collections.Counter()
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in weight_names and len(n.input) > 2 and n.input[2] in inits:
            activations[name(inits[n.input[2]].data_type)] += 1
    return {
        "format": "QDQ",
        "weighted_ops": len(weighted),
        "weight_dtypes": dict(collections.Counter(name(inits[w].data_type) for _, w, _ in weighted)),
        "per_channel_weights": len(per_channel),
        "convs": sum(n.op_type == "Conv" for n, _, _ in weighted),
        "per_channel_convs": sum(n.op_type == "Conv" for n in per_channel),
        "activation_dtypes": dict(activations),
    }
