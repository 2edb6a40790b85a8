"""Find the layers that broke an artifact.

1. Read the weights back out of the artifact file itself (TFLite tensors dequantized with their own
   scales; Core ML constants decompressed by the MIL program's constexpr ops; ONNX initializers).
2. Match each to its PyTorch layer: BatchNorm is folded into the convolutions first (as every converter
   does), then each layer takes the artifact tensor of its shape (in any axis order) that is most similar
   to it. A layer no tensor resembles is reported, never guessed.
3. Build the *compressed twin*: the float network with the artifact's weights in place and, for precisions
   that quantize activations, each layer's output fake-quantized over its observed range (a simulation:
   said so in the result).
4. Run float and twin on the same images, hooking every layer: SQNR of its input and of its output against
   float (the *SQNR drop* between them is what the layer loses along the twin), and its *local SQNR*: the
   twin layer's output against the float layer's output on the same (twin) input, the noise the layer adds
   itself, whatever reached it. Layers are ranked by local SQNR, lowest first, and named by their PyTorch
   module path. The worst few are confirmed one at a time: only that layer's artifact weights in the float
   network, SQNR of the network's output.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from toolkit.backends import get_backend
from toolkit.backends.weights import fold_batchnorm, match_weights, matchable_layers

SQNR_CAP_DB = 100.0  # identical tensors (infinite SQNR) count as this, so differences stay finite


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    r, t = ref.astype(np.float64).ravel(), test.astype(np.float64).ravel()
    noise = float(np.sum((r - t) ** 2))
    signal = float(np.sum(r * r))
    if noise == 0:
        return SQNR_CAP_DB
    return float(min(SQNR_CAP_DB, 10 * np.log10(max(signal, 1e-30) / noise)))


def network_output(y, output_names: tuple[str, ...]) -> np.ndarray:
    """A network's return value (one tensor, a tuple or a dict of them) as one array per image: its named
    outputs flattened side by side, N x (all values), so SQNR covers every output."""
    from toolkit.outputs import name_outputs

    named = name_outputs(y, output_names)
    return np.concatenate([v.detach().reshape(len(v), -1).numpy() for v in named.values()], axis=1)


def _capture(model, names: list[str], x, *, output_names: tuple[str, ...], local: dict | None = None):
    """Each named layer's input and output on ``x``; with ``local`` (name -> float layer), also what the
    float layer computes from the same input, so a layer's own error is separated from its input's."""
    import torch

    acts: dict[str, tuple[np.ndarray, ...]] = {}
    modules = dict(model.named_modules())

    def hook(m, i, o, n):
        got = (i[0].detach().numpy().copy(), o.detach().numpy().copy())
        if local is not None:
            got += (local[n](i[0]).detach().numpy(),)
        acts[n] = got

    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: hook(m, i, o, n)) for n in names]
    try:
        with torch.inference_mode():
            y = network_output(model(x), output_names)
    finally:
        for h in hooks:
            h.remove()
    return acts, y


def _fake_quant_hooks(model, names: list[str], ranges: dict[str, tuple[float, float]], bits: int):
    """Quantize each layer's output to ``bits`` over its float range (per tensor, asymmetric)."""
    import torch

    levels = 2**bits - 1
    modules = dict(model.named_modules())
    hooks = []
    for n in names:
        lo, hi = ranges[n]
        scale = max(hi - lo, 1e-12) / levels

        def hook(m, i, o, lo=lo, scale=scale):
            return torch.round((o.clamp(lo, lo + scale * levels) - lo) / scale) * scale + lo

        hooks.append(modules[n].register_forward_hook(hook))
    return hooks


def locate(model, images: np.ndarray, spec, *, fmt: str, path: Path, precision: str, top: int = 3) -> dict:
    """Rank the layers of ``model`` (the float network the artifact was made from) by the SQNR each
    loses in the artifact. ``images``: uint8 NHWC RGB, a few are enough (16)."""
    import torch

    from toolkit.load.contract import to_network_input

    output_names = tuple(o.name for o in spec.outputs)
    fused = fold_batchnorm(model)
    layers = matchable_layers(fused)
    weights = get_backend(fmt).weights(Path(path))
    matched = match_weights(layers, weights)
    names = [n for n in layers if n in matched]
    x = to_network_input(images, spec)
    float_acts, float_y = _capture(fused, list(layers), x, output_names=output_names)
    order = list(float_acts) + [n for n in layers if n not in float_acts]  # execution order, unreached layers last

    twin = copy.deepcopy(fused)
    twin_layers = matchable_layers(twin)
    with torch.no_grad():
        for n in names:
            twin_layers[n].weight.copy_(torch.from_numpy(matched[n][1]))
    bits = get_backend(fmt).activation_bits(precision)
    hooks = []
    if bits:
        ranges = {n: (float(float_acts[n][1].min()), float(float_acts[n][1].max())) for n in names if n in float_acts}
        hooks = _fake_quant_hooks(twin, list(ranges), ranges, bits)
    try:
        twin_acts, twin_y = _capture(twin, list(layers), x, output_names=output_names, local=layers)
    finally:
        for h in hooks:
            h.remove()

    rows = []
    for position, n in enumerate(order):
        if n not in float_acts:
            continue
        s_in = sqnr_db(float_acts[n][0], twin_acts[n][0])
        s_out = sqnr_db(float_acts[n][1], twin_acts[n][1])
        s_local = sqnr_db(twin_acts[n][2], twin_acts[n][1])
        row = {"layer": n, "position": position, "type": type(layers[n]).__name__, "local_sqnr_db": round(s_local, 2), "input_sqnr_db": round(s_in, 2),
               "output_sqnr_db": round(s_out, 2), "sqnr_drop_db": round(s_in - s_out, 2)}
        if n in matched:
            aw, aligned, cos = matched[n]
            row.update(weight_sqnr_db=round(sqnr_db(layers[n].weight.detach().numpy(), aligned), 2),
                       artifact_tensor=aw.name, match_cosine=round(cos, 4))
        else:
            row["artifact_tensor"] = None
        rows.append(row)
    ranked = sorted(rows, key=lambda r: r["local_sqnr_db"])

    # Confirm the worst few in isolation: only that layer's artifact weights, everything else float.
    for r in ranked[:top]:
        if r["artifact_tensor"] is None:
            continue
        solo = copy.deepcopy(fused)
        with torch.no_grad():
            matchable_layers(solo)[r["layer"]].weight.copy_(torch.from_numpy(matched[r["layer"]][1]))
            r["isolated_output_sqnr_db"] = round(sqnr_db(float_y, network_output(solo(x), output_names)), 2)
    worst = [r for r in ranked[:top] if r["local_sqnr_db"] < SQNR_CAP_DB]
    return {
        "method": ("artifact weights read back from the file" + (f"; activations fake-quantized to {bits} bits over float ranges (simulated)" if bits else "")),
        "images": int(len(images)),
        "layers_matched": len(names), "layers_total": len(layers),
        "unmatched": [n for n in order if n not in matched],
        "output_sqnr_db": round(sqnr_db(float_y, twin_y), 2),
        "ranking": ranked,
        "suggestion": ("keep in higher precision: " + ", ".join(r["layer"] for r in worst)) if worst else "no layer adds measurable noise",
    }
