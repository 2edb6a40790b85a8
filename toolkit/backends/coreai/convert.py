"""PyTorch → Core AI ``.aimodel`` through ``torch.export`` and coreai-torch.

The contract network (NHWC 0–255 input, normalization in the graph) is exported, decomposed with
coreai-torch's table and converted; its input is named ``image`` and its outputs as the spec declares.
fp16 converts a float16 copy of the network behind a cast at each end, so the app still passes and
receives float32 while every weight is stored, and every op computes, in float16; the saved program is
read back and a float32 weight in an fp16 asset is an error, never a silently float model.

The compressed precisions start from that float16 program and compress its stored weights with coreai-opt's
passes on the Core AI program (``coreai_opt.coreai_utils``), as Core ML's are compressed after conversion:
int8 per-channel weights (``blockwise_shift_scale``), k-means lookup tables of 8, 6 or 4 bits
(``lut_to_dense``; one table per tensor, or per ``group_size`` output channels) and int4 with a scale per
block of 16 input channels. Weights under ``WEIGHT_THRESHOLD`` elements stay float16, as in Core ML.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

from toolkit.backends.coreai.program import INPUT_NAME
from toolkit.backends.named import named_module
from toolkit.errors import ConversionError

MINIMUM_OS = "v27"  # the only version coreai-core 1.0.0b3 serializes for (iOS / macOS 27)
WEIGHT_THRESHOLD = 256  # smaller weights (biases, depthwise 3x3 of few channels) stay float16, as in Core ML
COMPRESSED = ("int8_weights", "palettize8", "palettize6", "palettize4", "int4_block")


def compress(program, precision: str, *, group_size: int | None = None):
    """The float16 ``program`` with its weights compressed for ``precision`` (a new program)."""
    import logging

    from coreai_opt.coreai_utils import CompressionGranularity, DType, palettize_weights, quantize_weights

    logging.getLogger("coreai_opt").setLevel(logging.ERROR)  # a weight whose shape a scheme cannot split stays float16
    if precision == "int8_weights":
        return quantize_weights(program, DType.INT8, granularity=CompressionGranularity.PER_CHANNEL,
                                weight_num_threshold=WEIGHT_THRESHOLD)
    if precision == "int4_block":
        return quantize_weights(program, DType.INT4, granularity=CompressionGranularity.PER_BLOCK, block_size=16,
                                weight_num_threshold=WEIGHT_THRESHOLD)
    grouping = ({"granularity": CompressionGranularity.PER_GROUPED_CHANNEL, "group_size": group_size} if group_size
                else {"granularity": CompressionGranularity.PER_TENSOR})
    return palettize_weights(program, None, n_bits=int(precision.removeprefix("palettize")), weight_num_threshold=WEIGHT_THRESHOLD,
                             num_kmeans_workers=1, **grouping)  # its spawned worker pool hangs under skinkit's CLI (measured)


def decompositions() -> dict:
    """coreai-torch's table, less the ops it lowers itself that torch 2.13's defaults would decompose into
    ops it cannot lower: adaptive average pooling would become ``as_strided`` (refused); it is kept as
    ``_adaptive_avg_pool2d``, which coreai-torch lowers."""
    import coreai_torch
    import torch

    aten = torch.ops.aten
    table = coreai_torch.get_decomp_table()
    table[aten.adaptive_avg_pool2d.default] = lambda x, size: aten._adaptive_avg_pool2d.default(x, size)
    table.pop(aten._adaptive_avg_pool2d.default, None)
    return table


def _float16(net):
    """``net`` computing in float16 behind float32 I/O (a copy: the caller's network is not changed)."""
    import torch

    class Float16(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, image):
            out = self.inner(image.half())
            return out.float() if isinstance(out, torch.Tensor) else tuple(o.float() for o in out)

    return Float16(copy.deepcopy(net).half()).eval()


def _set_metadata(asset, spec, precision: str, meta: dict) -> None:
    import json

    def update(m) -> None:
        m.author = "skinkit"
        m.license = spec.licence
        m.model_description = spec.description
        m.set_custom("skinkit.precision", precision)
        m.set_custom("skinkit.minimum_os", MINIMUM_OS)
        for key, value in meta.items():  # mirrors the manifest: model, task, labels, input, outputs, ...
            m.set_custom(f"skinkit.{key}", json.loads(json.dumps(value)))  # plain JSON (tuples become lists)

    asset.update_metadata(update)


def convert(module, sample, spec, *, precision: str, path: Path, options: dict) -> dict:
    import coreai_torch
    import torch

    from toolkit.backends.coreai.graph import inspect

    names = [o.name for o in spec.outputs]
    net = named_module(module, names).eval()
    if precision != "fp32":
        net = _float16(net)
    exported = torch.export.export(net, (sample,)).run_decompositions(decompositions())
    converter = coreai_torch.TorchConverter(mode=coreai_torch.TorchConverter.Mode.RELEASE)
    program = converter.add_exported_program(exported, input_names=[INPUT_NAME], output_names=names).to_coreai()
    if precision in COMPRESSED:
        program = compress(program, precision, group_size=options.get("group_size"))

    tmp = path.with_name(f".{path.stem}.tmp.aimodel")  # save_asset insists on the suffix
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        asset = program.save_asset(tmp)
        _set_metadata(asset, spec, precision, options.get("metadata", {}))
        details = inspect(tmp)
        if precision != "fp32" and details["weight_dtypes"].get("f32"):
            raise ConversionError(f"coreai {precision} was requested but the saved program stores {details['weight_dtypes']['f32']} "
                                  "float32 weight tensors", fix="export fp32, or report the layer that stays float32")
        details.update(minimum_os=MINIMUM_OS, input_type="tensor")
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return details

