"""PyTorch → Core ML ``.mlpackage`` (ML program) through coremltools from a TorchScript trace."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

from toolkit import __version__


def inspect(path: Path) -> dict:
    """Op histogram, weight dtypes and I/O of a saved ML program, read back from the package (works on Linux)."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    ops: collections.Counter = collections.Counter()
    weight_dtypes: collections.Counter = collections.Counter()
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in block.operations:
                ops[op.type] += 1
                if op.type == "const":
                    for out in op.outputs:
                        tt = out.type.tensorType
                        if len(tt.dimensions) >= 1:
                            weight_dtypes[ct.proto.MIL_pb2.DataType.Name(tt.dataType)] += 1
    io = lambda feats: [{"name": f.name, "shape": list(f.type.multiArrayType.shape)} for f in feats]  # noqa: E731
    return {
        "op_histogram": dict(sorted(ops.items())),
        "transpose_count": ops.get("transpose", 0),
        "weight_dtypes": dict(weight_dtypes),
        "inputs": io(spec.description.input),
        "outputs": io(spec.description.output),
        "spec_version": spec.specificationVersion,
    }


def convert(module, sample, spec, *, precision: str, path: Path, options: dict) -> dict:
    import coremltools as ct
    import torch

    target = getattr(ct.target, options.get("deployment_target", "iOS16"))
    traced = torch.jit.trace(module.eval(), (sample,))
    out_name = spec.outputs[0].name if len(spec.outputs) == 1 else "outputs"
    mlmodel = ct.convert(
        traced,
        inputs=[ct.TensorType(name="image", shape=tuple(sample.shape))],
        outputs=[ct.TensorType(name=out_name)],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
        minimum_deployment_target=target,
    )
    mlmodel.author = "skinkit"
    mlmodel.license = spec.licence
    mlmodel.short_description = spec.description
    mlmodel.version = __version__
    meta = mlmodel.user_defined_metadata
    meta["skinkit.model"] = spec.name
    meta["skinkit.task"] = spec.task
    meta["skinkit.precision"] = precision
    if spec.labels:
        meta["skinkit.labels"] = ",".join(spec.labels)
    tmp = path.with_name(f".{path.stem}.tmp.mlpackage")  # coremltools insists on the suffix
    shutil.rmtree(tmp, ignore_errors=True)
    mlmodel.save(str(tmp))
    details = inspect(tmp)
    details["deployment_target"] = options.get("deployment_target", "iOS16")
    tmp.rename(path)
    return details
