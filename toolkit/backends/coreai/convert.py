"""PyTorch → Core AI ``.aimodel`` through ``torch.export`` and coreai-torch.

The contract network (NHWC 0–255 input, normalization in the graph) is exported, decomposed with
coreai-torch's table and converted; its input is named ``image`` and its outputs as the spec declares.
fp16 converts a float16 copy of the network behind a cast at each end, so the app still passes and
receives float32 while every weight is stored, and every op computes, in float16; the saved program is
read back and a float32 weight in an fp16 asset is an error, never a silently float model.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

from toolkit.backends.coreai.program import INPUT_NAME
from toolkit.backends.named import named_module
from toolkit.errors import ConversionError

MINIMUM_OS = "v27"  # the only version coreai-core 1.0.0b3 serializes for (iOS / macOS 27)


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
    if precision == "fp16":
        net = _float16(net)
    exported = torch.export.export(net, (sample,)).run_decompositions(decompositions())
    converter = coreai_torch.TorchConverter(mode=coreai_torch.TorchConverter.Mode.RELEASE)
    program = converter.add_exported_program(exported, input_names=[INPUT_NAME], output_names=names).to_coreai()

    tmp = path.with_name(f".{path.stem}.tmp.aimodel")  # save_asset insists on the suffix
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        asset = program.save_asset(tmp)
        _set_metadata(asset, spec, precision, options.get("metadata", {}))
        details = inspect(tmp)
        if precision == "fp16" and details["weight_dtypes"].get("f32"):
            raise ConversionError(f"coreai fp16 was requested but the saved program stores {details['weight_dtypes']['f32']} "
                                  "float32 weight tensors", fix="export fp32, or report the layer that stays float32")
        details.update(minimum_os=MINIMUM_OS, input_type="tensor")
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return details

