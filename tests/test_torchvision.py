"""A user's model built from torchvision loads (toolkit/load/torchvision_support.py): with the test extra's
torchvision 0.28.0+cu130, whose C++ ops do not load on the CPU torch, skinkit's plain-torch ones stand in;
without torchvision, the user's file fails in one line naming the pinned install."""

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from toolkit.errors import BadInputError
from toolkit.load import load_model, vision_ops
from toolkit.load.torchvision_support import INSTALL

ROOT = Path(__file__).resolve().parent.parent
SPEC_FROM = "acne_mobilenetv2"  # any registered contract: these tests load and run, they do not export

DETECTOR = textwrap.dedent("""
    import torch
    import torchvision
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.rpn import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign


    class Backbone(torch.nn.Module):
        out_channels = 8

        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                                            torch.nn.Conv2d(8, 8, 3, stride=2, padding=1))

        def forward(self, x):
            return self.body(x)


    def build():
        return MaskRCNN(Backbone(), num_classes=3, min_size=64, max_size=64, box_score_thresh=0.0,
                        rpn_anchor_generator=AnchorGenerator(sizes=((8, 16, 32),), aspect_ratios=((0.5, 1.0, 2.0),)),
                        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), mask_roi_pool=MultiScaleRoIAlign(["0"], 14, 2))
""")


def _require_torchvision():
    if importlib.util.find_spec("torchvision") is None:
        pytest.fail(f"torchvision is not installed: pip install -e '.[test]' (or {INSTALL})")


def _run(script: str) -> dict:
    """A fresh process, as a user's `skinkit export` starts: nothing of torchvision imported yet."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_user_detection_model_from_torchvision_loads_and_runs(tmp_path):
    _require_torchvision()
    from toolkit.load import torchvision_support

    torchvision_support.prepare()  # this process builds the checkpoint and the expected output
    import torchvision

    (tmp_path / "detector.py").write_text(DETECTOR)
    spec = importlib.util.spec_from_file_location("detector_reference", tmp_path / "detector.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.build().eval()
    torch.save(model.state_dict(), tmp_path / "detector.pt")
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
    torch.save(image, tmp_path / "image.pt")
    with torch.no_grad():
        want = model([image])[0]

    got = _run(f"""
        import json
        from pathlib import Path
        import torch
        from toolkit.load import load_model
        loaded = load_model("detector.py:build", checkpoint=Path("detector.pt"), spec_from={SPEC_FROM!r}, base_dir=Path({str(tmp_path)!r}))
        with torch.no_grad():
            out = loaded.module([torch.load({str(tmp_path / "image.pt")!r})])[0]
        print(json.dumps({{"provenance": loaded.provenance, "boxes": out["boxes"].tolist(), "labels": out["labels"].tolist(),
                          "masks": out["masks"].sum((1, 2, 3)).tolist()}}))
    """)
    assert got["provenance"]["source"] == "user factory"
    assert got["provenance"]["torchvision"].startswith(torchvision.__version__)
    if vision_ops.registered():  # the CUDA build on the CPU torch: its operators are skinkit's, here and there
        assert got["provenance"]["torchvision"].endswith("C++ ops replaced by skinkit's plain-torch nms/roi_align/roi_pool")
    assert len(got["boxes"]) > 0 and got["labels"] == want["labels"].tolist()
    torch.testing.assert_close(torch.tensor(got["boxes"]), want["boxes"])
    torch.testing.assert_close(torch.tensor(got["masks"]), want["masks"].sum((1, 2, 3)))

    # torchvision's Python entry points reach the operators: per-class NMS, and RoIAlign on a list of boxes.
    keep = torchvision.ops.batched_nms(want["boxes"], want["scores"], want["labels"], 0.5)
    assert keep.tolist() == list(range(len(want["boxes"])))  # the model's output already went through it
    features = torch.randn(1, 4, 16, 16)
    boxes = torch.tensor([[2.0, 3.0, 40.0, 50.0], [0.0, 0.0, 63.0, 63.0]])
    torch.testing.assert_close(torchvision.ops.roi_align(features, [boxes], 5, spatial_scale=0.25, sampling_ratio=2, aligned=True),
                               vision_ops.roi_align(features, torch.cat([torch.zeros(2, 1), boxes], 1), 0.25, 5, 5, 2, True))


def test_missing_torchvision_is_one_line_naming_the_pinned_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if not installed: `import torchvision` raises
    (tmp_path / "needs_tv.py").write_text("import torchvision\n\ndef build():\n    return torchvision.models.resnet18()\n")
    with pytest.raises(BadInputError) as e:
        load_model("needs_tv.py:build", checkpoint=tmp_path / "w.pt", spec_from=SPEC_FROM, base_dir=tmp_path)
    assert str(e.value) == f"{tmp_path / 'needs_tv.py'} imports torchvision, which is not installed"
    assert e.value.fix.startswith("pip install --no-deps torchvision==0.28.0") and "never a plain `pip install torchvision`" in e.value.fix
    assert "\n" not in e.value.one_line()


def test_torchvision_that_does_not_import_even_with_the_fallback_says_so(tmp_path, monkeypatch):
    from toolkit.load import torchvision_support

    monkeypatch.setattr(torchvision_support, "_state", {"error": "RuntimeError: operator torchvision::new_op does not exist"})
    err = torchvision_support.import_error(tmp_path / "m.py", RuntimeError("operator torchvision::new_op does not exist"))
    assert "torchvision does not import (RuntimeError: operator torchvision::new_op does not exist)" in str(err)
    assert err.fix.startswith("reinstall it with pip install --no-deps torchvision==0.28.0")
    assert torchvision_support.import_error(tmp_path / "m.py", ValueError("unrelated")) is None


class _Classifier(torch.nn.Module):
    """A user's exported program calling torchvision's operators: pooled crops of fixed boxes, and NMS."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.register_buffer("rois", torch.tensor([[0, 4.0, 4, 28, 28], [0, 0, 8, 31, 20]]))

    def forward(self, x):
        f = self.conv(x)
        pooled = torch.ops.torchvision.roi_align(f, self.rois, 0.5, 3, 3, 2, True)
        keep = torch.ops.torchvision.nms(self.rois[:, 1:], pooled.mean((1, 2, 3)), 0.3)
        return pooled.flatten(1).sum(0, keepdim=True), keep


def test_exported_program_with_torchvision_ops_loads_with_and_without_torchvision(tmp_path):
    """Exported with torchvision imported, loaded here and in a process without torchvision. NMS keeps one of the
    two boxes: torchvision 0.28's own fake nms would have put an assertion of at least 2 into the program."""
    _require_torchvision()
    from toolkit.load import torchvision_support

    torchvision_support.prepare()
    import torchvision

    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    model = _Classifier().eval()
    want, keep = model(x)
    assert len(keep) == 1
    path = tmp_path / "classifier.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(path))
    torch.save(x, tmp_path / "x.pt")

    loaded = load_model(str(path), spec_from=SPEC_FROM)
    assert loaded.provenance["torchvision"].startswith(torchvision.__version__)
    got, got_keep = loaded.module(x)
    torch.testing.assert_close(got, want)
    assert got_keep.tolist() == keep.tolist()

    result = _run(f"""
        import json, sys
        sys.modules["torchvision"] = None  # not installed
        import torch
        from toolkit.load import load_model
        loaded = load_model({str(path)!r}, spec_from={SPEC_FROM!r})
        out, keep = loaded.module(torch.load({str(tmp_path / 'x.pt')!r}))
        print(json.dumps({{"provenance": loaded.provenance, "out": out.tolist(), "keep": keep.tolist()}}))
    """)
    assert result["provenance"]["torchvision"] == "not installed; torchvision:: ops run on skinkit's plain-torch kernels"
    torch.testing.assert_close(torch.tensor(result["out"]), want)
    assert result["keep"] == keep.tolist()
