"""Beyond one process: the conversion cache, ``skinkit batch`` on local processes and on a real local Ray cluster
(including a worker killed mid-export), and verification sharded over workers with the same confidence intervals."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_NET, run_cli
from toolkit.convert.cache import ConversionCache, network_digest
from toolkit.pipeline import export
from toolkit.recipe import parse_recipe, read_yaml
from toolkit.scale.batch import run_batch
from toolkit.scale.executor import LocalPool
from toolkit.scale.shards import ShardedRunners
from toolkit.verify.bundle import verify_bundle

RECIPE = """name: {name}
model: {{name: 'tiny.py:build', checkpoint: {checkpoint}, spec_from: acne_mobilenetv2}}
targets: [{{format: onnx, precision: fp32}}, {{format: tflite, precision: int8}}]
evaluation: {{n: {n}, bootstrap: 200, ground_truth: {gt}}}
calibration: {{n: 16}}
tolerances: {{int8: {{max_metric_drop: 1.0, min_cosine: 0.5, max_group_drop: 1.0, min_agreement: 0.0}}}}
benchmark: {{warmup: 1, repeats: 2}}
"""

# What differs between two exports of one recipe: timings, the host's facts and what is measured from them.
VOLATILE = {"created_utc", "conversion_seconds", "benchmark", "reference_benchmark", "recommended", "seconds", "tools", "files"}


def _net(seed: int) -> torch.nn.Module:
    namespace: dict = {}
    exec(TINY_NET, namespace)
    torch.manual_seed(seed)
    return namespace["build"]()


def _recipes(folder: Path, names=("tiny_a", "tiny_b"), n: int = 24, gt: str = "float") -> list[Path]:
    """Recipes of small networks (one checkpoint each), as a user's own would be written."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.py").write_text(TINY_NET)
    paths = []
    for i, name in enumerate(names):
        torch.save(_net(i).state_dict(), folder / f"{name}.pt")
        paths.append(folder / f"{name}.yaml")
        paths[-1].write_text(RECIPE.format(name=name, checkpoint=f"{name}.pt", n=n, gt=gt))
    return paths


def _stable(value):
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _conversions(cache: Path) -> list[dict]:
    """The cache's conversions (it also keeps artifacts' outputs, costs and synthetic images)."""
    return [e for e in ConversionCache(cache).entries() if e["kind"] == "conversion"]


def _export(path: Path, out: Path, cache):
    return export(parse_recipe(read_yaml(path), source=str(path)), recipe_path=path, out_dir=out, cache=cache)


# --- the conversion cache ---------------------------------------------------------------------------------------


def test_network_digest_follows_weights_and_code():
    # setup: one network, the same weights again, other weights
    a, b, c = _net(0), _net(0), _net(1)
    # assert: same weights and classes, same digest; a changed weight or buffer changes it
    assert network_digest(a) == network_digest(b)
    assert network_digest(a) != network_digest(c)
    with torch.no_grad():
        b.fc.bias[0] += 1e-6
    assert network_digest(a) != network_digest(b)


def test_reexport_with_changed_tolerances_copies_every_artifact(tmp_path):
    # setup: a cache folder and one recipe, exported once
    (path,) = _recipes(tmp_path, names=("tiny_a",))
    cache = tmp_path / "cache"
    first = _export(path, tmp_path / "first", cache)
    entries = _conversions(cache)
    assert sorted(e["filename"] for e in entries) == ["tiny_fp32.onnx", "tiny_int8.tflite"]
    # execute: the same recipe with other tolerances and another evaluation set size
    path.write_text(path.read_text().replace("min_cosine: 0.5", "min_cosine: 0.4").replace("n: 24", "n: 20"))
    events = []
    from toolkit import progress

    with progress.reporting(events.append):
        second = _export(path, tmp_path / "second", cache)
    # assert: both targets copied from the cache (byte-identical artifacts), nothing added to it
    converted = {e.step: e.message for e in events if e.stage == "convert" and e.finished}
    assert converted == {"onnx_fp32": "tiny_fp32.onnx (from the conversion cache)",
                         "tflite_int8": "tiny_int8.tflite (from the conversion cache)"}
    assert [a["sha256"] for a in second.manifest["artifacts"]] == [a["sha256"] for a in first.manifest["artifacts"]]
    assert len(_conversions(cache)) == 2
    # the verification ran again on the new settings
    crit = {c["name"]: c["bound"] for c in second.manifest["artifacts"][1]["verification"]["criteria"]}
    assert crit["cosine vs float"] == 0.4 and second.manifest["evaluation"]["n"] == 20


def test_changed_weights_miss_the_cache(tmp_path):
    # setup: an export into a cache, then other weights under the same recipe
    (path,) = _recipes(tmp_path, names=("tiny_a",))
    cache = tmp_path / "cache"
    first = _export(path, tmp_path / "first", cache)
    torch.save(_net(7).state_dict(), tmp_path / "tiny_a.pt")
    # execute
    second = _export(path, tmp_path / "second", cache)
    # assert: converted again (new entries, other bytes)
    assert len(_conversions(cache)) == 4
    assert first.manifest["artifacts"][0]["sha256"] != second.manifest["artifacts"][0]["sha256"]


def test_cache_key_is_the_same_in_another_process(tmp_path):
    # setup: one recipe exported into a cache here
    (path,) = _recipes(tmp_path, names=("tiny_a",))
    cache = tmp_path / "cache"
    _export(path, tmp_path / "first", cache)
    # execute: the CLI in a fresh process, with the cache named by the environment
    env = {**os.environ, "SKINKIT_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "export", str(path), "--out", str(tmp_path / "cli")],
                          capture_output=True, text=True, env=env, timeout=600)
    # assert: both artifacts from the cache
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("(from the conversion cache)") == 2


def test_cache_at_an_fsspec_url(tmp_path):
    # setup: fsspec's in-memory filesystem stands for a bucket (the same code path as s3:// or gcs://)
    (path,) = _recipes(tmp_path, names=("tiny_a",))
    first = _export(path, tmp_path / "first", "memory://skinkit-test-cache")
    events = []
    from toolkit import progress

    # execute
    with progress.reporting(events.append):
        second = _export(path, tmp_path / "second", "memory://skinkit-test-cache")
    # assert: both targets read back from the URL, byte-identical
    assert sum(e.message.endswith("(from the conversion cache)") for e in events if e.stage == "convert" and e.finished) == 2
    assert [a["sha256"] for a in second.manifest["artifacts"]] == [a["sha256"] for a in first.manifest["artifacts"]]


def test_an_unfinished_entry_is_ignored_and_the_target_converted(tmp_path):
    # setup: an export into a cache, then its onnx entry's completion marker removed (a writer killed mid-put)
    (path,) = _recipes(tmp_path, names=("tiny_a",))
    cache = tmp_path / "cache"
    _export(path, tmp_path / "first", cache)
    onnx = next(e for e in _conversions(cache) if e["filename"].endswith(".onnx"))
    marker = next(cache.glob(f"??/{onnx['key']}/entry.json"))
    marker.unlink()
    # execute
    result = _export(path, tmp_path / "second", cache)
    # assert: the bundle is complete and passes
    assert result.passed and len(result.manifest["artifacts"]) == 2


# --- sharded verification -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A bundle with an fp32 and an int8 artifact verified on 90 labelled images (an untrained network: wide intervals)."""
    tmp = tmp_path_factory.mktemp("sharded")
    (path,) = _recipes(tmp, names=("tiny_a",), n=90, gt="labels")
    return _export(path, tmp / "out", False).bundle_dir


def _same_verdicts(a: dict, b: dict) -> None:
    for x, y in zip(a["artifacts"], b["artifacts"], strict=True):
        assert x["path"] == y["path"] and x["passed"] == y["passed"]
        for key in ("task_metric", "metrics", "criteria", "by_group", "numerics"):  # the metrics and their bootstrap CIs, exactly
            assert json.dumps(x[key], sort_keys=True) == json.dumps(y[key], sort_keys=True), key  # (NaN == NaN here)


def test_sharded_verification_on_local_processes_gives_identical_intervals(bundle):
    # execute: in this process, then over two local processes in shards of 20 images
    alone = verify_bundle(bundle)
    pool = LocalPool(2)
    try:
        sharded = verify_bundle(bundle, runner_factory=ShardedRunners(pool, 20))
    finally:
        pool.close()
    # assert: the same figures; the record says how it ran (5 shards of 90 images per artifact)
    _same_verdicts(alone, sharded)
    low, high = alone["artifacts"][1]["metrics"]["accuracy"]["artifact"]["ci95"]
    assert high - low > 0.05
    assert all(a["check"].endswith("sharded over 2 local worker processes, 1 thread(s) each (5 shards)") for a in sharded["artifacts"])


def test_verify_cli_rejects_a_bad_shard_size(bundle):
    proc = run_cli("verify", str(bundle), "--workers", "2", "--shard-images", "0")
    assert proc.returncode == 1
    assert "skinkit: error: --shard-images 0 is not a number of images — fix: pass --shard-images 1 or more" in proc.stderr


# --- skinkit batch --------------------------------------------------------------------------------------------------


def test_batch_on_local_processes_equals_one_by_one(tmp_path):
    # setup: two recipes, a broken third (unknown model) and a fourth that repeats the first's bundle name
    paths = _recipes(tmp_path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nmodel: {name: no_such_model}\ntargets: [{format: onnx}]\n")
    twin = tmp_path / "twin.yaml"
    twin.write_text(paths[0].read_text())
    # execute: the batch on two processes with a shared cache; then each recipe alone, without a cache
    result = run_batch([*paths, broken, twin], out=tmp_path / "batch", workers=2, cache=tmp_path / "cache")
    alone = [_export(p, tmp_path / "alone", False) for p in paths]
    # assert: every recipe's result, the failures with their exit codes and one-line errors
    rows = {r.recipe: r for r in result.results}
    assert [rows[str(p)].exit_code for p in paths] == [0, 0] and result.exit_code == 1
    assert [c["target"] for c in rows[str(paths[0])].conversions] == ["onnx_fp32", "tflite_int8"]
    assert all(c["exit_code"] == 0 for r in (rows[str(p)] for p in paths) for c in r.conversions)
    assert rows[str(broken)].exit_code == 1 and rows[str(broken)].error.startswith("unknown model 'no_such_model'")
    assert rows[str(twin)].exit_code == 1 and rows[str(twin)].error == (
        f"{twin} writes bundle 'tiny_a', as {paths[0]} does in this batch")
    # the bundles are what one-by-one exports give: equal manifests but for timings and host facts
    for p, one in zip(paths, alone):
        name = p.stem
        assert _stable(_manifest(tmp_path / "batch" / name)) == _stable(one.manifest)
    # nothing half-written beside the bundles
    assert sorted(f.name for f in (tmp_path / "batch").iterdir() if not f.name.endswith(".lock")) == ["tiny_a", "tiny_b"]


def test_batch_cli_json_lists_each_recipe(tmp_path):
    # setup: one recipe and a missing-file error
    (path,) = _recipes(tmp_path, names=("tiny_a",))
    proc = run_cli("batch", str(path), str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1 and f"skinkit: error: recipe not found: {tmp_path / 'nope.yaml'}" in proc.stderr
    # execute
    proc = run_cli("batch", str(path), "--out", str(tmp_path / "out"), "--workers", "1", "--cache", "off", "--json")
    # assert
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["passed"] and summary["exit_code"] == 0 and summary["cache"] is None
    assert summary["workers"] == f"1 local worker processes, {os.cpu_count()} thread(s) each"
    (row,) = summary["recipes"]
    assert row["exit_code"] == 0 and row["conversions"] == [] and row["summary"]["passed"]
    assert [a["path"] for a in row["summary"]["artifacts"]] == ["artifacts/tiny_fp32.onnx", "artifacts/tiny_int8.tflite"]
    assert "[batch] export tiny_a:" in proc.stderr


# --- on a real local Ray cluster ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _ray_workers(title: str) -> list[int]:
    """PIDs of Ray workers running a task of that name (Ray titles a worker process ``ray::<task name>``)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if cmd.strip() == f"ray::{title}":
            pids.append(int(pid))
    return pids


def test_batch_on_ray_survives_a_killed_worker(ray_cluster, tmp_path):
    # setup: two recipes; a thread that kills the worker running tiny_b's export once it is running
    paths = _recipes(tmp_path)
    killed: list[int] = []

    def kill_once():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            for pid in _ray_workers("skinkit export tiny_b"):
                time.sleep(1.0)  # mid-export: it has loaded and started converting or verifying
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_once)
    killer.start()
    # execute: the batch on the Ray session this test started (--ray auto joins it)
    result = run_batch(paths, out=tmp_path / "ray", ray="auto", cache=tmp_path / "cache")
    killer.join()
    # assert: a worker was killed, Ray ran the export again, and both recipes pass
    assert killed, "the export task of tiny_b was never seen running"
    assert [r.exit_code for r in result.results] == [0, 0], [r.error for r in result.results]
    assert result.workers.startswith("Ray 2.") and "2 CPUs" in result.workers
    # nothing partial: exactly the two bundles, each complete
    assert sorted(f.name for f in (tmp_path / "ray").iterdir() if not f.name.endswith(".lock")) == ["tiny_a", "tiny_b"]
    for p in paths:
        m = _manifest(tmp_path / "ray" / p.stem)
        assert m["verdict"]["passed"] and len(m["artifacts"]) == 2
        # verification ran in shards on the cluster
        assert all("sharded over Ray" in a["verification"]["check"] for a in m["artifacts"])
    # the same verdicts and metrics as one-by-one
    one = _export(paths[1], tmp_path / "alone", False)
    assert _stable(_manifest(tmp_path / "ray" / "tiny_b"))["artifacts"][0]["verification"]["task_metric"] == \
        _stable(one.manifest)["artifacts"][0]["verification"]["task_metric"]


def test_sharded_verification_on_ray_gives_identical_intervals(ray_cluster, bundle):
    from toolkit.scale.executor import RayCluster

    alone = verify_bundle(bundle)
    sharded = verify_bundle(bundle, runner_factory=ShardedRunners(RayCluster("auto"), 30))
    _same_verdicts(alone, sharded)
    assert all(a["check"].endswith("sharded over Ray " + ray_cluster.__version__ + ": 1 node(s), 2 CPUs (3 shards)")
               for a in sharded["artifacts"])
