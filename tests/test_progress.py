"""Progress of the long steps (toolkit/progress.py): the plain log a non-terminal stderr gets, the Python callback's
events, the rich display on a terminal, and --quiet."""

from __future__ import annotations

import io
import re
from dataclasses import replace

import pytest

from tests.conftest import TINY_NET, run_cli, write_recipe
from toolkit.progress import PlainLog, ProgressEvent, RichProgress, reporting, step

RECIPE = """
name: acne_progress
model: {name: acne_mobilenetv2}
targets: [{format: onnx, precision: fp32}, {format: tflite, precision: int8}]
evaluation: {n: 24, bootstrap: 100}
calibration: {n: 16}
benchmark: {warmup: 1, repeats: 3}
"""

SECONDS = r"\d+\.\d s"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One small export of the trained default model in a fresh process, stderr a pipe (not a terminal)."""
    tmp = tmp_path_factory.mktemp("progress")
    proc = run_cli("export", str(write_recipe(tmp / "r.yaml", RECIPE)), "--out", str(tmp / "out"))
    return proc


def test_plain_log_is_one_line_per_finished_step_in_order(exported):
    # setup: the export ran with stderr a pipe
    assert exported.returncode == 0, exported.stderr[-3000:]
    # execute: the progress lines, those that start with a [stage]
    lines = [ln for ln in exported.stderr.splitlines() if ln.startswith("[")]
    # assert: exactly these steps, in this order, each in its exact shape
    expected = [
        rf"\[export\] 1/6 load: {SECONDS}",
        rf"\[export\] 2/6 compress: {SECONDS}",
        rf"\[calibrate\] calibration images: {SECONDS}; 16 images \(synthetic\), none shared with evaluation",
        rf"\[convert\] onnx_fp32: {SECONDS}; acne_mobilenetv2_fp32\.onnx",
        rf"\[convert\] tflite_int8: {SECONDS}; acne_mobilenetv2_int8\.tflite",
        rf"\[export\] 3/6 convert: {SECONDS}",
        rf"\[verify\] acne_mobilenetv2_fp32\.onnx: {SECONDS}, 24 images, \d+\.\d images/s; passed, macro_f1 drop \+0\.0000",
        rf"\[verify\] acne_mobilenetv2_int8\.tflite: {SECONDS}, 24 images, \d+\.\d images/s; passed, macro_f1 drop [+-]\d\.\d{{4}}",
        rf"\[export\] 4/6 verify: {SECONDS}",
        rf"\[benchmark\] PyTorch fp32 reference: {SECONDS}, 4 runs, \d+\.\d runs/s; p50 \d+\.\d\d ms",
        rf"\[benchmark\] acne_mobilenetv2_fp32\.onnx: {SECONDS}, 4 runs, \d+\.\d runs/s; p50 \d+\.\d\d ms",
        rf"\[benchmark\] acne_mobilenetv2_int8\.tflite: {SECONDS}, 4 runs, \d+\.\d runs/s; p50 \d+\.\d\d ms",
        rf"\[export\] 5/6 benchmark: {SECONDS}",
        rf"\[export\] 6/6 bundle: {SECONDS}",
    ]
    assert len(lines) == len(expected), "\n".join(lines)
    for line, pattern in zip(lines, expected):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_human_summary_is_a_table_of_headline_metric_margin_and_worst_group(exported):
    # setup / execute: the rows after the progress lines
    rows = [ln for ln in exported.stderr.splitlines() if ln.startswith("  ")]
    # assert: a header, then one row per artifact with its metric, drop CI, margin and worst skin-tone group
    assert re.fullmatch(r"\s+artifact\s+size\s+metric\s+float\s+value\s+drop \[95 % CI\]\s+margin\s+worst skin-tone group", rows[0])
    assert re.fullmatch(r"  pass  artifacts/acne_mobilenetv2_fp32\.onnx\s+2\.77 MB  macro_f1\s+(0\.\d{4})\s+\1\s+\+0\.0000 "
                        r"\[\+0\.0000, \+0\.0000\]\s+\+0\.0050  \w+ \+0\.0000 \(n=\d+, too few to gate\)", rows[1]), rows[1]
    assert rows[2].startswith("  pass  artifacts/acne_mobilenetv2_int8.tflite ")
    assert len(rows) == 3
    assert exported.stderr.splitlines()[-1].startswith("bundle: ")


def test_quiet_prints_no_progress(tmp_path):
    # setup: the smallest export (a bring-your-own net, one ONNX target, 8 images, no benchmark)
    (tmp_path / "tiny.py").write_text(TINY_NET)
    import torch

    namespace: dict = {}
    exec(TINY_NET, namespace)
    torch.manual_seed(0)
    torch.save(namespace["build"]().state_dict(), tmp_path / "tiny.pt")
    recipe = write_recipe(tmp_path / "tiny.yaml", "name: tiny\nmodel: {name: 'tiny.py:build', checkpoint: tiny.pt, "
                                                  "spec_from: acne_mobilenetv2}\ntargets: [{format: onnx}]\n"
                                                  "evaluation: {n: 8, bootstrap: 100, ground_truth: float}\nbenchmark: {enabled: false}\n")
    # execute: the global --quiet, then a failure under it
    proc = run_cli("--quiet", "export", str(recipe), "--out", str(tmp_path / "out"))
    again = run_cli("--quiet", "export", str(recipe), "--out", str(tmp_path / "out"))
    # assert: nothing on stderr but errors
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == ""
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [f"skinkit: error: bundle already exists: {tmp_path / 'out' / 'tiny'} — fix: "
                                                 "choose another --out, remove it, or pass --force to replace it"]


def test_callback_gets_ordered_events_and_one_final_per_step():
    # setup: steps as stages run them, one of them advancing unit by unit, one raising
    events: list[ProgressEvent] = []
    # execute
    with reporting(events.append):
        with step("verify", "a.onnx", total=5, unit="images") as s:
            for _ in range(5):
                s.advance()
            s.finish("passed")
        with step("convert", "onnx_fp32"):
            pass
        with pytest.raises(RuntimeError), step("convert", "coreml_fp16"):
            raise RuntimeError("no final event for a step that fails")
    with step("convert", "nobody listens"):
        pass
    # assert: ordered, done <= total, a single final event per finished step, carrying finish()'s message
    assert [(e.step, e.done, e.total, e.message) for e in events] == [
        ("a.onnx", 0, 5, ""), ("a.onnx", 1, 5, ""), ("a.onnx", 2, 5, ""), ("a.onnx", 3, 5, ""), ("a.onnx", 4, 5, ""),
        ("a.onnx", 5, 5, "passed"), ("onnx_fp32", 0, 1, ""), ("onnx_fp32", 1, 1, ""), ("coreml_fp16", 0, 1, "")]
    elapsed = [e.elapsed for e in events if e.step == "a.onnx"]
    assert elapsed == sorted(elapsed)
    halfway = ProgressEvent("verify", "a.onnx", 50, 200, 2.0, unit="images")
    assert (halfway.rate, halfway.eta, halfway.finished) == (25.0, 6.0, False)


def test_plain_line_shape():
    # setup
    buf = io.StringIO()
    log = PlainLog(buf)
    e = ProgressEvent("verify", "a.onnx", 200, 200, 4.0, "passed", "images")
    # execute: an unfinished event prints nothing; finished ones one line each
    log(replace(e, done=100))
    log(e)
    log(ProgressEvent("export", "6/6 bundle", 1, 1, 0.04))
    # assert
    assert buf.getvalue() == "[verify] a.onnx: 4.0 s, 200 images, 50.0 images/s; passed\n[export] 6/6 bundle: 0.0 s\n"


def test_rich_display_on_a_terminal():
    # setup: a rich console that believes it is a terminal, writing into a buffer
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=140, color_system=None)
    # execute
    with RichProgress(console) as shown, reporting(shown), step("verify", "acne_fp32.onnx", total=24, unit="images") as s:
        s.advance(12)
        s.advance(12)
        s.finish("passed")
    # assert: the last frame shows the step, its count and its verdict
    last = buf.getvalue().rsplit("\x1b[2K", 1)[-1]
    assert "verify acne_fp32.onnx" in last and "24/24" in last and "images/s" in last and "passed" in last


def test_training_reports_a_step_per_epoch(tmp_path):
    # setup: the default model's spec, trained for two short epochs
    from toolkit.registry import TrainingConfig, get_spec
    from toolkit.train import train

    spec = get_spec("acne_mobilenetv2")
    spec = replace(spec, training=TrainingConfig(n_train=32, n_val=8, epochs=2, batch_size=16, lr=1e-3))
    events: list[ProgressEvent] = []
    # execute
    with reporting(events.append):
        card = train(spec, checkpoint=tmp_path / "w.safetensors", threads=2)
    # assert: each epoch is a step of two batches whose last event carries the epoch's mean loss
    finals = [e for e in events if e.finished]
    assert [(e.stage, e.step, e.done, e.total, e.unit) for e in finals] == [
        ("train", "epoch 1/2", 2, 2, "batches"), ("train", "epoch 2/2", 2, 2, "batches")]
    assert [e.message for e in finals] == [f"loss {v:.4f}" for v in card["training"]["loss_per_epoch"]]
