"""The MIL reference interpreter runs saved Core ML programs exactly enough to verify them on Linux."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests import byo_models as byo
from tests.mil_models import OpZoo, Palette
from toolkit.backends.coreml import mil
from toolkit.backends.coreml.graph import runner
from toolkit.convert.base import convert_target
from toolkit.errors import VerificationError
from toolkit.load.contract import DeviceContract, InputContract


def _save(module, path, *, precision="fp32", x=None, compress=None, target="iOS16"):
    import coremltools as ct

    x = torch.rand(1, 3, 32, 32) * 255 if x is None else x
    model = ct.convert(torch.jit.trace(module.eval(), (x,)), inputs=[ct.TensorType(name="image", shape=tuple(x.shape))],
                       convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, target),
                       compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16)
    if compress is not None:
        model = compress(model)
    model.save(str(path))
    return path


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zoo")
    module = OpZoo().eval()
    return module, _save(module, tmp / "zoo32.mlpackage"), _save(module, tmp / "zoo16.mlpackage", precision="fp16")


def _inputs(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 3, 32, 32, generator=g).mul(255).round()


def test_fp32_program_matches_pytorch_to_float32_precision(zoo):
    module, p32, _ = zoo
    program = mil.MILProgram(p32)
    # The zoo makes the converter emit convolutions of every padding kind, transposed convolution,
    # both poolings, bilinear and nearest resampling, pixel shuffle, layer norm, attention matmuls...
    assert {"conv", "conv_transpose", "max_pool", "avg_pool", "upsample_bilinear", "upsample_nearest_neighbor",
            "pixel_shuffle", "layer_norm", "matmul", "softmax", "gelu", "split", "slice_by_index"} <= {op.op_type for op in program.ops}
    for x in _inputs():
        with torch.no_grad():
            ref = module(x).numpy()
        out = program.run({"image": x.numpy()})[program.output_names[0]].numpy()
        np.testing.assert_allclose(out, ref, rtol=0, atol=2e-6)


def test_fp16_program_stores_every_tensor_in_float16(zoo):
    module, _, p16 = zoo
    program = mil.MILProgram(p16)
    x = _inputs(1)[0]
    with torch.no_grad():
        ref = module(x).numpy()
    out = program.run({"image": x.numpy()})[program.output_names[0]].numpy()
    err = np.abs(out - ref).max()
    assert 1e-5 < err < 5e-3, "float16 storage must differ from float32, by float16 rounding only"


@pytest.mark.parametrize("target, grouping", [
    ("iOS16", {"mode": "unique"}),
    ("iOS18", {"mode": "kmeans", "nbits": 4, "granularity": "per_grouped_channel", "group_size": 8}),
], ids=["per-tensor-iOS16", "grouped-iOS18"])
def test_lossless_palettization_decodes_exactly(tmp_path, target, grouping):
    """Weights with 16 distinct values survive 4-bit palettization unchanged, so the interpreter's
    lookup-table decode must reproduce the float16 program's output exactly."""
    from coremltools.optimize import coreml as cto

    module = Palette().eval()
    x = _inputs(1)[0]
    p16 = _save(module, tmp_path / "dense.mlpackage", precision="fp16", x=x, target=target)
    lut = _save(module, tmp_path / "lut.mlpackage", precision="fp16", x=x, target=target, compress=lambda m: cto.palettize_weights(
        m, cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(weight_threshold=1, **grouping))))
    program = mil.MILProgram(lut)
    assert any(op.op_type == "constexpr_lut_to_dense" for op in program.ops)
    dense = mil.MILProgram(p16).run({"image": x.numpy()})
    out = program.run({"image": x.numpy()})
    np.testing.assert_array_equal(next(iter(out.values())).numpy(), next(iter(dense.values())).numpy())


def test_unknown_op_is_named(zoo, monkeypatch):
    _, p32, _ = zoo
    monkeypatch.delitem(mil.KERNELS, "pixel_shuffle")
    with pytest.raises(VerificationError, match="uses ops it does not implement: pixel_shuffle") as e:
        mil.MILProgram(p32)
    assert "macOS" in e.value.fix


def test_not_a_package_is_a_clear_error(tmp_path):
    (tmp_path / "x.mlpackage").mkdir()
    with pytest.raises(VerificationError, match="not an .mlpackage"):
        mil.MILProgram(tmp_path / "x.mlpackage")


def test_missing_input_is_named(zoo):
    with pytest.raises(VerificationError, match="input 'image' not given"):
        mil.MILProgram(zoo[1]).run({"pixels": np.zeros((1, 3, 32, 32), np.float32)})


def test_activation_quantize_dequantize_kernels():
    x = torch.tensor([[-1.0, 0.26, 300.0], [0.75, -0.25, -100.0]])
    q = mil.KERNELS["quantize"](input=x, scale=0.5, zero_point=np.int8(0), output_dtype="int8")
    assert q.tolist() == [[-2, 1, 127], [2, -0, -128]]  # round half to even: 1.5 -> 2, -0.5 -> -0
    assert mil.KERNELS["dequantize"](input=q, scale=0.5, zero_point=np.int8(0)).tolist() == [[-1.0, 0.5, 63.5], [1.0, 0.0, -64.0]]
    per_row = mil.KERNELS["quantize"](input=x, scale=np.array([0.5, 0.25]), zero_point=np.array([0, 10], np.uint8),
                                      axis=0, output_dtype="uint8")
    assert per_row.tolist() == [[0, 1, 255], [13, 9, 0]]


def test_thresholded_relu_keeps_values_at_and_above_alpha():
    x = torch.tensor([-4.0, -3.0, -2.5, 0.0, 2.0])
    assert mil.KERNELS["thresholded_relu"](x=x, alpha=-3.0).tolist() == [0.0, -3.0, -2.5, 0.0, 2.0]
    # coremltools' hardswish: thresholded_relu(x, -3) * sigmoid_hard(., 1/6, 1/2)
    x = torch.linspace(-5, 5, 101)
    w = mil.KERNELS["thresholded_relu"](x=x, alpha=-3.0)
    torch.testing.assert_close(w * mil.KERNELS["sigmoid_hard"](x=w, alpha=1 / 6, beta=0.5), F.hardswish(x))


def test_elu_softplus_parametric_and_reverse_kernels():
    x = torch.tensor([[-2.0, -0.5, 0.0, 1.5]])
    torch.testing.assert_close(mil.KERNELS["elu"](x=x, alpha=0.7), F.elu(x, alpha=0.7))
    y = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    alpha, beta = np.array([1.0, 2.0, 0.5], np.float32), np.array([1.0, 0.5, 3.0], np.float32)
    want = torch.stack([a * F.softplus(b * y[:, c]) for c, (a, b) in enumerate(zip(alpha.tolist(), beta.tolist()))], dim=1)
    torch.testing.assert_close(mil.KERNELS["softplus_parametric"](x=y, alpha=alpha, beta=beta), want)
    assert mil.KERNELS["reverse"](x=torch.arange(6.0).reshape(2, 3), axes=np.array([-1])).tolist() == [[2, 1, 0], [5, 4, 3]]
    assert mil.KERNELS["reverse"](x=torch.arange(4.0).reshape(2, 2)).tolist() == [[3, 2], [1, 0]]


def test_stack_kernel_matches_torch_stack():
    a, b = torch.arange(6.0).reshape(2, 3), np.full((2, 3), 7.0, np.float32)  # a constant arrives as NumPy
    assert mil.KERNELS["stack"](values=(a, b), axis=1).tolist() == torch.stack([a, torch.from_numpy(b)], 1).tolist()
    assert mil.KERNELS["stack"](values=(a, b), axis=-1).shape == (2, 3, 2)


def test_topk_and_gather_along_axis_kernels():
    # A detector's selection: the k best along an axis (ties: the first index), then rows gathered by index.
    x = torch.tensor([[0.25, 0.75, 0.75, 0.125], [0.5, 0.375, 0.625, 0.625]])
    values, idx = mil.KERNELS["topk"](x=x, k=3, axis=-1)
    assert values.tolist() == [[0.75, 0.75, 0.25], [0.625, 0.625, 0.5]] and idx.tolist() == [[1, 2, 0], [2, 3, 0]]
    assert idx.dtype == torch.int32
    low, low_idx = mil.KERNELS["topk"](x=x, k=1, axis=1, ascending=True)
    assert low.tolist() == [[0.125], [0.375]] and low_idx.tolist() == [[3], [1]]
    boxes = torch.arange(24.0).reshape(2, 4, 3)
    got = mil.KERNELS["gather_along_axis"](x=boxes, indices=idx[..., None].expand(-1, -1, 3), axis=1)
    assert got.tolist() == torch.gather(boxes, 1, idx.long()[..., None].expand(-1, -1, 3)).tolist()
    assert mil.KERNELS["gather_along_axis"](x=x, indices=torch.tensor([[-1], [0]]), axis=1).tolist() == [[0.125], [0.5]]


def test_scaled_dot_product_attention_kernel_matches_pytorch():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))
    sdpa = mil.KERNELS["scaled_dot_product_attention"]
    torch.testing.assert_close(sdpa(query=q, key=k, value=v), F.scaled_dot_product_attention(q, k, v))
    keep = torch.rand(5, 5, generator=g) > 0.3
    keep[:, 0] = True  # no row fully masked
    torch.testing.assert_close(sdpa(query=q, key=k, value=v, attn_mask=keep.numpy()), F.scaled_dot_product_attention(q, k, v, attn_mask=keep))
    bias = torch.randn(5, 5, generator=g)
    torch.testing.assert_close(sdpa(query=q, key=k, value=v, attn_mask=bias), F.scaled_dot_product_attention(q, k, v, attn_mask=bias))


# ---------------------------------------------------------------- bring-your-own architectures (issue 13)
# Each architecture of benchmarks/byo_models/ goes through the Core ML backend as the pipeline sends it: in the
# device contract (NHWC pixels 0-255, normalization in the graph, an image input), float32 and float16.
# Classifiers are exported without the classifier config so that logits are compared: the softmax
# probabilities of networks with random weights sit near uniform and would hide an error.

BYO_PRECISIONS = ("fp32", "fp16")
# The ops each architecture makes coremltools emit that the test is there to exercise.
BYO_OPS = {
    "resnet50": {"conv", "max_pool", "relu", "reduce_mean", "linear"},
    "efficientnet_b0": {"silu", "sigmoid", "mul", "reduce_mean"},
    "mobilenetv3_large": {"thresholded_relu", "sigmoid_hard"},  # hardswish and hardsigmoid
    "deit_tiny": {"layer_norm", "gelu", "matmul", "softmax", "concat"},
    "deit_tiny_sdpa": {"scaled_dot_product_attention", "layer_norm", "gelu"},
    "convnext_tiny": {"layer_norm", "gelu", "pow", "sqrt", "real_div", "transpose"},
    "deeplabv3": {"clip", "upsample_bilinear", "concat"},
    "espcn": {"tanh", "pixel_shuffle"},
    "pnet": {"prelu", "max_pool", "softmax"},
    "rnet": {"prelu", "max_pool", "softmax"},
    "onet": {"prelu", "max_pool", "softmax"},
}
# Ops coremltools emits for these architectures that the interpreter does not run: none.
BYO_KNOWN_GAPS: dict[str, list[str]] = {}
_byo_histograms: dict[tuple[str, str], dict[str, int]] = {}  # (architecture, precision) -> ops, shared by the tests below


@pytest.fixture(scope="module")
def byo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("byo")


def _byo_convert(name: str, precision: str, out_dir, wrapped=None, spec=None):
    case = byo.CASES[name]
    if wrapped is None:
        _, spec, wrapped = byo.build(name)
    sample = torch.rand(1, case.size, case.size, 3, generator=torch.Generator().manual_seed(1)) * 255
    options = {"classifier": False, **({"deployment_target": case.target} if case.target else {})}
    artifact = convert_target(wrapped, sample, spec, fmt="coreml", precision=precision, out_dir=out_dir, stem=name, options=options)
    _byo_histograms[name, precision] = artifact.details["op_histogram"]
    return artifact


def _program_input_scale(program: mil.MILProgram) -> torch.Tensor:
    """coremltools (fuse_elementwise_to_batchnorm) folds the contract's per-channel multiply-add into a
    batch_norm with mean 0, variance 1 and its default epsilon 1e-5: the program scales the normalized input by
    1 / sqrt(1 + 1e-5), 5e-6 off PyTorch, which fifty layers of random weights amplify to 1e-3 of the output.
    The tight reference applies the same scale, so that what is left is the interpreter's own error."""
    for op in program.ops:
        if op.op_type == "batch_norm" and op.inputs["x"].name in program.input_names:
            assert not np.any(op.inputs["mean"].val)
            return torch.as_tensor(1.0 / np.sqrt(op.inputs["variance"].val + op.inputs["epsilon"].val), dtype=torch.float32)
    return torch.ones(3)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("name", list(byo.CASES))
def test_byo_architecture_runs_in_the_interpreter_as_pytorch_does(name, byo_dir):
    # Setup: the network with trained-like weights, in its device contract; one test image.
    net, spec, wrapped = byo.build(name)
    size = byo.CASES[name].size
    x = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(2)) * 255
    with torch.no_grad():
        ref = wrapped(x)
    ref = dict(zip([o.name for o in spec.outputs], ref if isinstance(ref, tuple) else (ref,)))
    for precision in BYO_PRECISIONS:
        # Execute: convert as the pipeline does, run the saved program through the backend's runner.
        artifact = _byo_convert(name, precision, byo_dir, wrapped, spec)
        assert BYO_OPS[name] <= set(artifact.details["op_histogram"]), f"{name} {precision} no longer emits what it is here to test"
        out = runner(artifact.path).run(x.numpy())
        if precision == "fp32":
            tight = DeviceContract(net, spec, InputContract()).eval()
            tight.mul = tight.mul * _program_input_scale(mil.MILProgram(artifact.path)).view(1, -1, 1, 1)
            with torch.no_grad():
                program_ref = tight(x)
            program_ref = dict(zip(ref, program_ref if isinstance(program_ref, tuple) else (program_ref,)))
        # Assert: every output, at the precision the program stores.
        for key, r in ref.items():
            r = r.numpy()
            scale = float(np.abs(r).max())
            assert out[key].shape == r.shape
            if precision == "fp32":
                assert _cosine(out[key], r) > 0.99999, key
                err = float(np.abs(out[key] - program_ref[key].numpy()).max())
                assert err <= 2e-4 * scale, f"{name} {key}: max abs error {err:.3g} against output scale {scale:.3g}"
            else:
                # float16 storage through up to 60 layers of random weights: PyTorch itself, with its weights and
                # every module's output rounded to float16, errs 0.056 x scale on DeepLab (cosine 0.99957).
                assert _cosine(out[key], r) > 0.999, key
                err = float(np.abs(out[key] - r).max())
                assert err <= 0.1 * scale, f"{name} {key}: max abs error {err:.3g} against output scale {scale:.3g}"


def test_interpreter_lacks_no_op_the_byo_architectures_emit(byo_dir):
    """Every MIL op coremltools emits for these architectures has a kernel (converting those the test above
    has not, when run alone)."""
    for name in byo.CASES:
        for precision in BYO_PRECISIONS:
            if (name, precision) not in _byo_histograms:
                _byo_convert(name, precision, byo_dir)
    lacking: dict[str, list[str]] = {}
    for (name, precision), ops in sorted(_byo_histograms.items()):
        for op in ops:
            if op not in mil.KERNELS and op != "const" and not op.startswith("constexpr_"):
                lacking.setdefault(op, []).append(f"{name}/{precision}")
    assert lacking == BYO_KNOWN_GAPS


@pytest.mark.slow
@pytest.mark.parametrize("precision, target", [("fp16", "iOS17"), ("fp16", "iOS18"), ("int8_weights", "iOS18"), ("palettize4", "iOS18"),
                                               ("int4_block", "iOS18")])
def test_interpreter_runs_the_byo_architectures_at_newer_opsets_and_compressed(precision, target, tmp_path):
    """The newer opsets and the weight compressions change what coremltools emits (iOS17/18 op versions,
    constexpr_* weight ops): every architecture still converts to ops the interpreter has and runs to outputs
    of the contract's shapes."""
    lacking: dict[str, list[str]] = {}
    for name, case in byo.CASES.items():
        _, spec, wrapped = byo.build(name)
        x = torch.rand(1, case.size, case.size, 3, generator=torch.Generator().manual_seed(2)) * 255
        artifact = convert_target(wrapped, x, spec, fmt="coreml", precision=precision, out_dir=tmp_path, stem=name,
                                  options={"classifier": False, "deployment_target": target})
        for op in artifact.details["op_histogram"]:
            if op not in mil.KERNELS and op != "const" and not op.startswith("constexpr_"):
                lacking.setdefault(op, []).append(name)
        if not lacking:
            out = runner(artifact.path).run(x.numpy())
            with torch.no_grad():
                ref = wrapped(x)
            for key, r in zip([o.name for o in spec.outputs], ref if isinstance(ref, tuple) else (ref,)):
                assert out[key].shape == tuple(r.shape) and np.isfinite(out[key]).all(), f"{name} {key}"
    assert lacking == BYO_KNOWN_GAPS
