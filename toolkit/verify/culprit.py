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
5. What if (``whatif``, for a failing artifact's fix): the twin again with the worst 1, 2, … layers kept float
   (their float weights, their outputs not quantized), where the format can keep layers float at this
   precision; and with each nearby higher precision of the format, its weights rounded from the float ones as
   that precision stores them (the artifact's own where the storage is the same) and its activations quantized
   as it quantizes them. Each is the network output's SQNR against float on the same images: a simulation,
   which ``toolkit.verify.advice`` reads as a change against the twin's own SQNR.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from toolkit.backends import get_backend
from toolkit.backends.weights import fold_batchnorm, match_weights, matchable_layers

SQNR_CAP_DB = 100.0  # identical tensors (infinite SQNR) count as this, so differences stay finite
WHATIF_KEEP = (1, 2, 4, 8)  # how many of the worst layers a what-if keeps float
WHATIF_PRECISIONS = 3  # the nearest higher precisions a what-if simulates (and fp16 or fp32, the last resort)

# Precisions from the least faithful to float to the most, as a failing artifact moves up: a step keeps as much of
# the deployment as it can (full-integer int8 moves to int16 activations before float activations).
FIDELITY = ("palettize4", "int4_block", "palettize6", "palettize8", "int8", "int16x8", "dynamic_int8", "int8_weights",
            "sparse", "fp16", "fp32")
# How each precision stores weights, for the what-if: the same storage reuses the artifact's own weights.
WEIGHT_STORAGE = {"fp32": "float32", "fp16": "float16", "sparse": "float16", "int8_weights": "int8 per channel",
                  "dynamic_int8": "int8 per channel", "int8": "int8 per channel", "int16x8": "int8 per channel",
                  "palettize8": "8-bit k-means lookup table", "palettize6": "6-bit k-means lookup table",
                  "palettize4": "4-bit k-means lookup table", "int4_block": "int4, block-wise scales (block 16)"}


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    r, t = ref.astype(np.float64).ravel(), test.astype(np.float64).ravel()
    noise = float(np.sum((r - t) ** 2))
    signal = float(np.sum(r * r))
    if noise == 0:
        return SQNR_CAP_DB
    return float(min(SQNR_CAP_DB, 10 * np.log10(max(signal, 1e-30) / noise)))


def network_output(y, output_names: tuple[str, ...], *, softmax_first: bool = False) -> np.ndarray:
    """A network's return value (one tensor, a tuple or a dict of them) as one array per image: its named
    outputs flattened side by side, N x (all values), so SQNR covers every output. ``softmax_first``: the first
    output as probabilities, as a Core ML classifier returns it and the gate compares it."""
    from toolkit.outputs import name_outputs
    from toolkit.tasks.measures import softmax

    named = [v.detach().reshape(len(v), -1).numpy() for v in name_outputs(y, output_names).values()]
    if softmax_first:
        named[0] = softmax(named[0].astype(np.float64))
    return np.concatenate(named, axis=1)


def _capture(model, names: list[str], x, *, local: dict | None = None):
    """Each named layer's input and output on ``x``, and the network's return value; with ``local`` (name -> float
    layer), also what the float layer computes from the same input, so a layer's own error is separated from its
    input's."""
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
            y = model(x)
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


def locate(model, images: np.ndarray, spec, *, fmt: str, path: Path, precision: str, top: int = 3, whatif: bool = False,
           output_transform: str | None = None) -> dict:
    """Rank the layers of ``model`` (the float network the artifact was made from) by the SQNR each
    loses in the artifact. ``images``: uint8 NHWC RGB, a few are enough (16). ``whatif``: also the twin's output
    SQNR with the worst layers kept float and at the format's nearby higher precisions (step 5), comparing the outputs
    as the gate does (``output_transform``: 'softmax' for a classifier that returns probabilities)."""
    import torch

    from toolkit.load.contract import to_network_input

    output_names = tuple(o.name for o in spec.outputs)
    fused = fold_batchnorm(model)
    layers = matchable_layers(fused)
    weights = get_backend(fmt).weights(Path(path))
    matched = match_weights(layers, weights)
    names = [n for n in layers if n in matched]
    x = to_network_input(images, spec)
    float_acts, float_raw = _capture(fused, list(layers), x)
    float_y = network_output(float_raw, output_names)
    order = list(float_acts) + [n for n in layers if n not in float_acts]  # execution order, unreached layers last

    twin = copy.deepcopy(fused)
    twin_layers = matchable_layers(twin)
    with torch.no_grad():
        for n in names:
            twin_layers[n].weight.copy_(torch.from_numpy(matched[n][1]))
    bits = get_backend(fmt).activation_bits(precision)
    ranges = {n: (float(float_acts[n][1].min()), float(float_acts[n][1].max())) for n in names if n in float_acts}
    hooks = _fake_quant_hooks(twin, list(ranges), ranges, bits) if bits else []
    try:
        twin_acts, twin_raw = _capture(twin, list(layers), x, local=layers)
        twin_y = network_output(twin_raw, output_names)
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
    result = {
        "method": ("artifact weights read back from the file" + (f"; activations fake-quantized to {bits} bits over float ranges (simulated)" if bits else "")),
        "images": int(len(images)),
        "layers_matched": len(names), "layers_total": len(layers),
        "unmatched": [n for n in order if n not in matched],
        "output_sqnr_db": round(sqnr_db(float_y, twin_y), 2),
        "ranking": ranked,
        "suggestion": ("keep in higher precision: " + ", ".join(r["layer"] for r in worst)) if worst else "no layer adds measurable noise",
    }
    if whatif:
        probabilities = output_transform == "softmax"
        sim = _Twin(fused, x, output_names, network_output(float_raw, output_names, softmax_first=probabilities), ranges,
                    softmax_first=probabilities)
        artifact_weights = {n: matched[n][1] for n in names}
        ranked_matched = [r["layer"] for r in ranked if r["artifact_tensor"] is not None and r["local_sqnr_db"] < SQNR_CAP_DB]
        result["whatif"] = {
            "images": int(len(images)),
            "compared": "the first output as probabilities (softmax), as the gate compares it" if probabilities else "every output",
            "twin_output_sqnr_db": round(sqnr_db(sim.float_y, network_output(twin_raw, output_names, softmax_first=probabilities)), 2),
            "keep_float": [{"layers": ranked_matched[:k], "output_sqnr_db": sim.sqnr(artifact_weights, bits, float_layers=ranked_matched[:k])}
                           for k in sorted({min(k, len(ranked_matched)) for k in WHATIF_KEEP}) if k] if keeps_float(fmt, precision) else [],
            "precisions": [_precision_whatif(sim, fmt, precision, p, artifact_weights, fused_layers=layers, names=names)
                           for p in whatif_precisions(fmt, precision)],
        }
    return result


def keeps_float(fmt: str, precision: str) -> bool:
    """Whether a ``fmt`` target of ``precision`` can keep named layers float (a ``keep_float`` option)."""
    options = get_backend(fmt).options
    if "keep_float" not in options.model_fields:
        return False
    try:
        options(keep_float=("layer",)).check_precision(precision)
    except ValueError:
        return False
    return True


def whatif_precisions(fmt: str, precision: str) -> list[str]:
    """The precisions a what-if simulates: the nearest higher ones, and the last resort (fp16, else fp32). Dynamic int8
    is left out: its run-time activation ranges are not simulated."""
    above = [p for p in higher_precisions(fmt, precision) if p != "dynamic_int8"]
    near = above[:WHATIF_PRECISIONS]
    resort = next((p for p in ("fp16", "fp32") if p in above), None)
    return near + ([resort] if resort and resort not in near else [])


def higher_precisions(fmt: str, precision: str) -> list[str]:
    """The precisions of ``fmt`` more faithful to float than ``precision``, nearest first (none that needs a
    pruned model unless ``precision`` already does)."""
    from toolkit.backends.precisions import PRECISIONS

    supported = get_backend(fmt).precisions
    if precision not in FIDELITY:
        return []
    above = FIDELITY[FIDELITY.index(precision) + 1:]
    return [p for p in above if p in supported and (PRECISIONS[precision].needs_sparsity or not PRECISIONS[p].needs_sparsity)]


class _Twin:
    """The float network run with other weights and quantized activations, its output's SQNR against float."""

    def __init__(self, fused, x, output_names, float_y, ranges: dict[str, tuple[float, float]], *, softmax_first: bool = False):
        self.fused, self.x, self.output_names, self.float_y, self.ranges = fused, x, output_names, float_y, ranges
        self.softmax_first = softmax_first

    def sqnr(self, weights: dict[str, np.ndarray], bits: int | None, *, float_layers=()) -> float:
        import torch

        net = copy.deepcopy(self.fused)
        layers = matchable_layers(net)
        with torch.no_grad():
            for n, w in weights.items():
                if n not in float_layers:
                    layers[n].weight.copy_(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)))
        quantized = [n for n in self.ranges if n not in float_layers]
        hooks = _fake_quant_hooks(net, quantized, self.ranges, bits) if bits else []
        try:
            with torch.inference_mode():
                y = network_output(net(self.x), self.output_names, softmax_first=self.softmax_first)
        finally:
            for h in hooks:
                h.remove()
        return round(sqnr_db(self.float_y, y), 2)


def _precision_whatif(twin: _Twin, fmt: str, current: str, precision: str, artifact_weights: dict[str, np.ndarray], *,
                      fused_layers: dict, names: list[str]) -> dict:
    """The twin at another precision: the artifact's weights where it stores them the same way, else the float
    weights rounded as ``precision`` stores them; activations quantized as it quantizes them."""
    backend = get_backend(fmt)
    bits = backend.activation_bits(precision)
    same = WEIGHT_STORAGE.get(precision) == WEIGHT_STORAGE.get(current)
    if same:
        weights = artifact_weights
    else:
        weights = {n: simulate_weights(fused_layers[n].weight.detach().numpy(), precision) for n in names}
        if WEIGHT_STORAGE.get(current) not in FLOAT_STORAGE:  # what the artifact left uncompressed (small tensors, kept layers) stays so
            weights.update({n: artifact_weights[n] for n in names
                            if sqnr_db(fused_layers[n].weight.detach().numpy(), artifact_weights[n]) >= UNCOMPRESSED_DB})
    how = (f"weights as the artifact stores them ({WEIGHT_STORAGE.get(precision, precision)})" if same
           else f"weights rounded from float as {precision} stores them ({WEIGHT_STORAGE.get(precision, precision)})")
    how += f"; activations fake-quantized to {bits} bits" if bits else "; activations float (compute precision not simulated)"
    return {"precision": precision, "output_sqnr_db": twin.sqnr(weights, bits), "simulated": how}


FLOAT_STORAGE = ("float32", "float16")
UNCOMPRESSED_DB = 60.0  # an artifact weight this close to float was stored as float (float16 is ~65 dB), not compressed


def simulate_weights(w: np.ndarray, precision: str, *, group_size: int | None = None) -> np.ndarray:
    """``w`` (a float weight, output channels first) rounded as ``precision`` stores it."""
    storage = WEIGHT_STORAGE.get(precision, "float32")
    w = w.astype(np.float32)
    if storage == "float32":
        return w
    if storage == "float16":
        return w.astype(np.float16).astype(np.float32)
    if storage == "int8 per channel":
        flat = w.reshape(len(w), -1)
        scale = np.abs(flat).max(1, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        return (np.clip(np.round(flat / scale), -127, 127) * scale).reshape(w.shape).astype(np.float32)
    if storage.startswith("int4"):
        moved = np.moveaxis(w, 1, -1) if w.ndim > 1 else w[None]
        rows = moved.reshape(-1, moved.shape[-1])
        pad = (-rows.shape[1]) % 16
        blocks = np.pad(rows, ((0, 0), (0, pad))).reshape(len(rows), -1, 16)
        scale = np.abs(blocks).max(2, keepdims=True) / 7.0
        scale[scale == 0] = 1.0
        q = (np.clip(np.round(blocks / scale), -8, 7) * scale).reshape(len(rows), -1)[:, :rows.shape[1]]
        q = q.reshape(moved.shape)
        return (np.moveaxis(q, -1, 1) if w.ndim > 1 else q[0]).astype(np.float32)
    nbits = int(storage.split("-")[0])
    groups = [slice(i, i + group_size) for i in range(0, len(w), group_size)] if group_size else [slice(None)]
    out = np.empty_like(w)
    for g in groups:
        out[g] = kmeans_1d(w[g], 2 ** nbits)
    return out.astype(np.float16).astype(np.float32)


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 30) -> np.ndarray:
    """``values`` replaced by the nearest of ``k`` centroids: Lloyd's algorithm in one dimension, started from half
    the centroids at quantiles (the dense middle) and half evenly over the range (the tails), which comes within
    about 1 dB of Core ML's k-means palettization on the reference models' weights."""
    v = values.astype(np.float64).ravel()
    if np.unique(v).size <= k:
        return values.astype(np.float32)
    half = k // 2
    centroids = np.sort(np.concatenate([np.quantile(v, (np.arange(k - half) + 0.5) / (k - half)), np.linspace(v.min(), v.max(), half)]))
    for _ in range(iterations):
        centroids = np.unique(centroids)
        idx = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, v)
        counts = np.bincount(idx, minlength=len(centroids))
        sums = np.bincount(idx, weights=v, minlength=len(centroids))
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
    centroids = np.unique(centroids)
    idx = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, v)
    return centroids[idx].reshape(values.shape).astype(np.float32)
