"""Every registered backend × every hook, on a tiny model (ExecuTorch backends/test/suite style), and models
returning two outputs (a tuple, a dict) exported to every format with both outputs named and run."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from toolkit.backends import BACKENDS, backend_for_path, get_backend
from toolkit.backends.base import Backend, Cost, Runner
from toolkit.errors import ConversionError

HOOKS = ("convert", "runner", "structural_checks", "weights", "cost", "inspect")
# (backend, hook) pairs known not to work on the tiny model; a newly passing one fails the suite.
EXPECTED_FAILURES: set[tuple[str, str]] = set()


class Tiny(nn.Module):
    """NHWC in (the contract layout), one conv and a linear head; returns what ``kind`` says."""

    def __init__(self, kind: str = "one"):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 2)
        self.kind = kind

    def forward(self, x):
        f = torch.relu(self.conv(x.permute(0, 3, 1, 2))).mean(dim=(2, 3))
        y = self.head(f)
        if self.kind == "tuple":
            return y, torch.sigmoid(f)
        if self.kind == "dict":
            return {"score": y, "features": torch.sigmoid(f)}
        return y


def _spec(names):
    return SimpleNamespace(name="tiny", task="regression", labels=(), input_size=(16, 16), licence="MIT", description="tiny test model",
                           outputs=tuple(SimpleNamespace(name=n, description=n, unit="") for n in names))


SAMPLE = torch.rand(1, 16, 16, 3) * 255
OPTIONS = {"input_type": "tensor", "metadata": {"model": "tiny", "outputs": []}}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out, spec = {}, _spec(["score"])
    module = Tiny().eval()
    for name, backend in BACKENDS.items():
        path = tmp_path_factory.mktemp(name) / f"tiny_fp32{backend.suffix}"
        out[name] = (path, backend.convert(module, SAMPLE, spec, precision="fp32", path=path, options=OPTIONS))
    return out


def test_registry_names_unknown_formats_and_every_backend_is_complete():
    with pytest.raises(ConversionError, match="unknown format 'nope'") as e:
        get_backend("nope")
    assert all(n in e.value.fix for n in BACKENDS)
    for name, backend in BACKENDS.items():
        assert isinstance(backend, Backend) and backend.name == name and "fp32" in backend.precisions
        assert all(callable(getattr(backend, h)) for h in HOOKS)
        assert backend.options.model_fields is not None


@pytest.mark.parametrize("hook", HOOKS)
@pytest.mark.parametrize("fmt", list(BACKENDS))
def test_every_backend_every_hook(artifacts, fmt, hook):
    backend = get_backend(fmt)
    path, details = artifacts[fmt]
    x = (np.random.default_rng(0).random((2, 16, 16, 3)) * 255).astype(np.float32)
    try:
        if hook == "convert":
            assert path.exists() and details["outputs"] and backend_for_path(path) is backend
        elif hook == "runner":
            runner = backend.runner(path)
            assert isinstance(runner, Runner)
            out = runner.run(x)
            with torch.no_grad():
                ref = Tiny().eval()(torch.from_numpy(x)).numpy()
            assert list(out) == ["score"] and out["score"].shape == (2, 2)
            np.testing.assert_allclose(out["score"], ref, rtol=1e-3, atol=1e-3)
        elif hook == "structural_checks":
            checks = backend.structural_checks(details, "fp32", input_shape=(1, 16, 16, 3), output_shapes={"score": (1, 2)})
            assert checks and all(c["passed"] for c in checks), checks
            bad = backend.structural_checks(details, "fp32", input_shape=(1, 16, 16, 3), output_shapes={"other": (1, 2)})
            assert fmt == "coreml" or not all(c["passed"] for c in bad), "a wrong output name must fail"
        elif hook == "weights":
            shapes = sorted(w.array.size for w in backend.weights(path))
            assert shapes == [16, 216], shapes
        elif hook == "cost":
            cost = backend.cost(path)
            assert isinstance(cost, Cost) and cost.macs >= 16 * 16 * 8 * 27 and cost.params > 0
        elif hook == "inspect":
            d = backend.inspect(path)
            assert d["op_histogram"] and d["inputs"] and d["outputs"]
    except Exception:
        if (fmt, hook) in EXPECTED_FAILURES:
            pytest.xfail("listed in EXPECTED_FAILURES")
        raise
    assert (fmt, hook) not in EXPECTED_FAILURES, "now passes: remove it from EXPECTED_FAILURES"


def test_a_backend_without_structural_checks_cannot_exist():
    class Half(Backend):
        name, suffix, precisions = "half", ".half", ("fp32",)

        def convert(self, *a, **k): ...
        def runner(self, *a, **k): ...
        def weights(self, *a, **k): ...
        def cost(self, *a, **k): ...
        def inspect(self, *a, **k): ...

    with pytest.raises(TypeError, match="structural_checks"):
        Half()


@pytest.mark.parametrize("kind", ["tuple", "dict"])
@pytest.mark.parametrize("fmt", list(BACKENDS))
def test_two_outputs_are_named_and_returned_by_every_runner(tmp_path, fmt, kind):
    backend = get_backend(fmt)
    names = ["score", "features"]
    module = Tiny(kind).eval()
    path = tmp_path / f"two{backend.suffix}"
    details = backend.convert(module, SAMPLE, _spec(names), precision="fp32", path=path, options=OPTIONS)
    x = (np.random.default_rng(1).random((2, 16, 16, 3)) * 255).astype(np.float32)
    out = backend.runner(path).run(x)
    with torch.no_grad():
        ref = module(torch.from_numpy(x))
    ref = dict(zip(names, ref)) if kind == "tuple" else ref
    assert sorted(out) == sorted(names)
    for n in names:
        np.testing.assert_allclose(out[n], ref[n].numpy(), rtol=1e-3, atol=1e-3)
    checks = backend.structural_checks(details, "fp32", input_shape=(1, 16, 16, 3), output_shapes={"score": (1, 2), "features": (1, 8)})
    assert all(c["passed"] for c in checks), checks
