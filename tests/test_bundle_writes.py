"""Exports are crash-safe and exclusive: one export per bundle at a time (a second is refused naming the holder),
whatever a `kill -9` left is swept by the next export, an existing bundle is replaced only with --force even when it
appears mid-export, the bundle follows the umask, names no folder of the build machine, and an --out that cannot be
written is one line. `skinkit train MODEL` writes trained/, never the shipped weights unless told."""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, TINY_NET, run_cli, write_recipe
from toolkit.bundle.writer import bundle_lock, commit_bundle, staged_bundle, sweep
from toolkit.errors import BadInputError


def _tiny_recipe(tmp: Path) -> Path:
    """The smallest export there is: a bring-your-own net, one ONNX target, 8 evaluation images, no benchmark.
    Its paths are relative to the recipe, as a user writes them."""
    (tmp / "tiny.py").write_text(TINY_NET)
    namespace: dict = {}
    exec(TINY_NET, namespace)
    torch.manual_seed(0)
    torch.save(namespace["build"]().state_dict(), tmp / "tiny.pt")
    return write_recipe(tmp / "tiny.yaml", """
name: tiny
model: {name: 'tiny.py:build', checkpoint: tiny.pt, spec_from: acne_mobilenetv2}
targets: [{format: onnx, precision: fp32}]
evaluation: {n: 8, bootstrap: 100}
benchmark: {enabled: false}
""")


def _start_export(recipe: Path, out: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "toolkit.cli", "export", str(recipe), "--out", str(out), "--quiet"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(out.glob(".tiny.partial-*")):  # the lock is held from before the staging folder appears
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no staging folder appeared"
        time.sleep(0.05)
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


def _reaped_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --- real processes ------------------------------------------------------------------------------------------


def test_kill_9_mid_export_leaves_nothing_visible_and_the_next_export_sweeps_it(tmp_path):
    recipe, out = _tiny_recipe(tmp_path), tmp_path / "out"
    proc = _start_export(recipe, out)
    _kill(proc)
    left = sorted(p.name for p in out.iterdir())
    assert all(name.startswith(".") for name in left), left  # nothing visible: only dotfiles
    assert any(name.startswith(f".tiny.partial-{proc.pid}-") for name in left), left  # owned by the killed export

    again = subprocess.run([sys.executable, "-m", "toolkit.cli", "export", str(recipe), "--out", str(out), "--quiet"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600, umask=0o027)
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["tiny"], "the killed export's staging folder and the lock are gone"
    bundle = out / "tiny"
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o750, "the bundle follows the umask, not mkdtemp's 0700"

    # Manifest and report name no folder of the build machine; verify still finds the model's files from the bundle.
    for f in ("manifest.json", "report.md"):
        text = (bundle / f).read_text()
        for folder in {str(tmp_path), str(tmp_path.resolve()), str(Path.home()), str(ROOT)}:
            assert folder not in text, f"{f} names {folder}"
    import json

    m = json.loads((bundle / "manifest.json").read_text())
    assert (m["recipe"]["path"], m["model"]["checkpoint"]) == ("../../tiny.yaml", "tiny.pt")
    verified = run_cli("verify", str(bundle), "--n", "8")
    assert verified.returncode == 0, verified.stderr[-2000:]


def test_a_second_export_into_the_same_bundle_is_refused_at_once(tmp_path):
    recipe, out = _tiny_recipe(tmp_path), tmp_path / "out"
    first = _start_export(recipe, out)
    try:
        second = run_cli("export", str(recipe), "--out", str(out), timeout=120)
        assert first.poll() is None, "the first export is still running"
    finally:
        _kill(first)
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert (f"skinkit: error: another export is writing {out / 'tiny'} (pid {first.pid} holds {out / '.tiny.lock'}) "
            "— fix: wait for it to finish, or export into another --out") in second.stderr


@pytest.mark.parametrize("where, message", [
    ("file", "--out {out} is a file, not a folder — fix: remove it, or pass --out a folder"),
    ("under_file", "--out {out} cannot be written: {file} is a file, not a folder — fix: pass --out a path that is not under a file"),
    ("read_only", "--out {out} is not writable ("),
])
def test_an_out_that_cannot_be_written_is_one_line(tmp_path, where, message):
    recipe, file = _tiny_recipe(tmp_path), tmp_path / "a_file"
    file.write_text("x")
    out = {"file": file, "under_file": file / "out", "read_only": tmp_path / "ro"}[where]
    if where == "read_only":
        out.mkdir()
        _make_read_only(out)
    try:
        proc = run_cli("export", str(recipe), "--out", str(out), timeout=120)
    finally:
        if where == "read_only":
            _undo_read_only(out)
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("skinkit: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert message.format(out=out, file=file) in lines[0]


def _make_read_only(folder: Path) -> None:
    """chmod 0555; as root, which chmod does not stop, the immutable attribute."""
    folder.chmod(0o555)
    if os.access(folder, os.W_OK) and os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"running as root and chattr +i is refused here: {done.stderr.decode().strip()}")


def _undo_read_only(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


def test_calibration_train_and_data_name_an_out_they_cannot_write(tmp_path):
    file = tmp_path / "a_file"
    file.write_text("x")
    proc = run_cli("calibration", "--out", str(file / "c.yaml"), "--synthetic", "2", "--name", "n", "--provenance", "p",
                   "--consent", "c")
    assert proc.returncode == 1 and f"--out {file / 'c.yaml'} cannot be written: {file} is a file, not a folder" in proc.stderr
    proc = run_cli("calibration", "--out", str(tmp_path), "--synthetic", "2", "--name", "n", "--provenance", "p", "--consent", "c")
    assert proc.returncode == 1 and f"--out {tmp_path} is a folder, but calibration writes one manifest file" in proc.stderr
    proc = run_cli("train", "skin_segmenter", "--out", str(file))
    assert proc.returncode == 1 and f"--out {file} is a file, not a folder" in proc.stderr and "training" not in proc.stderr
    proc = run_cli("data", "skin_segmenter", "--out", str(file / "d"), "--n", "2")
    assert proc.returncode == 1 and f"--out {file / 'd'} cannot be written: {file} is a file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_train_writes_trained_and_never_the_shipped_weights_unless_told(tmp_path):
    from toolkit.load.loader import shipped_checkpoint

    shipped = shipped_checkpoint("skin_segmenter")
    before = shipped.stat().st_mtime_ns
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # run from tmp_path: the default folder is relative to it

    def train(*args):
        return subprocess.run([sys.executable, "-m", "toolkit.cli", "train", "skin_segmenter", "--epochs", "1", "--n-train", "16",
                               "--threads", "1", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    proc = train()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p.name for p in (tmp_path / "trained").iterdir()} == {"skin_segmenter.safetensors", "skin_segmenter.json"}
    assert "weights: trained/skin_segmenter.safetensors" in proc.stderr
    proc = train()
    assert proc.returncode == 1
    assert ("skinkit: error: trained/skin_segmenter.safetensors exists: training would replace those weights — fix: pass "
            "--force to replace them, or --out DIR to write elsewhere") in proc.stderr
    proc = train("--out", str(shipped.parent))
    assert proc.returncode == 1 and f"{shipped} exists: training would replace those weights" in proc.stderr
    assert shipped.stat().st_mtime_ns == before


# --- the writer itself ---------------------------------------------------------------------------------------


def test_sweep_removes_dead_exports_folders_keeps_live_ones_and_puts_back_a_bundle_caught_mid_replacement(tmp_path):
    dead, live = _reaped_pid(), os.getppid()
    for name in (f".b.partial-{dead}-abc", f".b.old-{dead}-1f2e", f".b.partial-{live}-xyz", f".bb.partial-{dead}-abc",
                 ".b.partial-legacy"):
        (tmp_path / name).mkdir()
    (tmp_path / f".b.old-{dead}-1f2e" / "manifest.json").write_text("{}")
    sweep(tmp_path, "b")
    assert {p.name for p in tmp_path.iterdir()} == {f".b.partial-{live}-xyz", ".b.partial-legacy", f".bb.partial-{dead}-abc", "b"}
    assert (tmp_path / "b" / "manifest.json").read_text() == "{}", "the replaced bundle is back"
    (tmp_path / f".b.old-{dead}-99").mkdir()
    sweep(tmp_path, "b")
    assert not (tmp_path / f".b.old-{dead}-99").exists(), "with the bundle in place, a dead export's old copy goes"


def test_a_held_lock_refuses_naming_the_holder(tmp_path):
    with bundle_lock(tmp_path, "b"):
        with pytest.raises(BadInputError) as e, staged_bundle(tmp_path, "b", force=True):
            pass
        assert f"(pid {os.getpid()} holds {tmp_path / '.b.lock'})" in str(e.value)
    assert list(tmp_path.iterdir()) == [], "released: the lock file goes with it"


def test_a_bundle_that_appears_mid_export_is_replaced_only_with_force(tmp_path):
    appeared = "bundle already exists: .* \\(written while this export ran\\)"
    with pytest.raises(BadInputError, match=appeared), staged_bundle(tmp_path, "b", force=False) as staging:
        (staging / "new").write_text("new")
        (tmp_path / "b").mkdir()  # another writer, outside skinkit's lock
        (tmp_path / "b" / "old").write_text("old")
        commit_bundle(staging, tmp_path / "b", force=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"] and [p.name for p in (tmp_path / "b").iterdir()] == ["old"]
    with staged_bundle(tmp_path, "b", force=True) as staging:
        (staging / "new").write_text("new")
        commit_bundle(staging, tmp_path / "b", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"] and [p.name for p in (tmp_path / "b").iterdir()] == ["new"]
