"""Image files of evaluation folders and calibration sets: truncated, corrupt, empty, oversized (a pixel bomb)
and folder-named-like-an-image inputs are refused in one line naming the file, or skipped where the user said
so; never decoded into grey padding or gigabytes, never a traceback. Every file here is real, written in tmp_path."""

import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, run_cli
from toolkit.data.calibration import load_calibration, write_manifest
from toolkit.data.image import check_image, max_pixels, read_image
from toolkit.data.synthetic import make_sample
from toolkit.errors import BadInputError, DataError, SkinkitError
from toolkit.registry import get_spec
from toolkit.tasks.data import load_folder, task_data, write_folder

SPEC = get_spec("acne_mobilenetv2")


# --- fixture files ------------------------------------------------------------------------------------------

def _face(i: int = 0, size: int = 224) -> np.ndarray:
    return cv2.cvtColor(make_sample(0, "val", i, size).image, cv2.COLOR_RGB2BGR)


def _encoded(suffix: str, i: int = 0) -> bytes:
    ok, buf = cv2.imencode(suffix, _face(i))
    assert ok
    return buf.tobytes()


def _truncated(path: Path) -> Path:
    """The first 60 % of a real photo's file: a copy that stopped part-way."""
    whole = _encoded(path.suffix)
    path.write_bytes(whole[: len(whole) * 6 // 10])
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """A valid 20000 x 20000 8-bit grayscale PNG of zeros: 0.4 MB on disk, 400 megapixels (1.2 GB as BGR) decoded."""
    w = h = 20_000
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(bytes(w + 1)) for _ in range(h)) + z.flush()  # each row: filter byte 0, then zeros
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))
    return path


# --- truncated, corrupt, empty ------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_image_in_an_evaluation_folder_is_refused_naming_it(tmp_path, suffix):
    write_folder(task_data(SPEC, 3, split="val"), SPEC, tmp_path)
    labels = tmp_path / "labels.csv"
    labels.write_text(labels.read_text().replace("img_00001.png", f"img_00001{suffix}"))
    cut = _truncated(tmp_path / f"img_00001{suffix}")
    if suffix == ".jpg":  # what this guards against: OpenCV pads the missing part with grey and says nothing
        padded = cv2.imread(str(cut))
        assert padded is not None and (padded[-20:] == 128).all()

    with pytest.raises(DataError) as err:
        load_folder(SPEC, tmp_path)

    assert err.value.cause.startswith(f"unreadable image: {cut} (truncated or corrupt: image file is truncated")
    assert err.value.fix == "re-export the image, or remove it (and its labels.csv row)"


def test_zero_byte_and_non_image_files_are_refused(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.png").write_text("a shopping list\n")

    with pytest.raises(DataError, match=r"^unreadable image: .*empty.jpg \(empty, 0 bytes\)$"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(DataError, match=r"^unreadable image: .*notes.png \(not an image: no format Pillow reads\)$"):
        read_image(tmp_path / "notes.png")
    with pytest.raises(DataError, match=r"^image not found: .*gone.png$"):
        read_image(tmp_path / "gone.png")


def test_a_whole_image_reads_as_opencv_decodes_it(tmp_path):
    for suffix in (".jpg", ".png", ".webp", ".bmp"):
        path = tmp_path / f"face{suffix}"
        path.write_bytes(_encoded(suffix))
        assert check_image(path) == (224, 224)
        assert np.array_equal(read_image(path), cv2.imread(str(path), cv2.IMREAD_COLOR)), suffix


def test_truncated_skin_mask_and_segmentation_mask_are_refused(tmp_path):
    spec = get_spec("skin_segmenter")
    write_folder(task_data(spec, 2, split="val"), spec, tmp_path)
    whole = (tmp_path / "masks" / "img_00001.png").read_bytes()
    (tmp_path / "masks" / "img_00001.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"^unreadable mask: .*masks/img_00001.png \(truncated or corrupt"):
        load_folder(spec, tmp_path)


# --- the pixel limit ----------------------------------------------------------------------------------------

def test_pixel_bomb_is_refused_from_its_header(bomb):
    assert bomb.stat().st_size < 1_000_000 and max_pixels() == 250_000_000

    with pytest.raises(DataError) as err:
        read_image(bomb)

    assert err.value.one_line() == (f"image {bomb} is 20000x20000 = 400.0 megapixels, more than the limit of 250 megapixels "
                                    "(a decompression-bomb guard) — fix: downscale it or remove it, or raise the limit with "
                                    "SKINKIT_MAX_PIXELS=<pixels>")


def test_pixel_bomb_is_refused_without_decoding_it(bomb):
    """In a fresh process: the refusal's peak memory stays far below the 400 MB a grayscale decode needs."""
    script = f"""
import resource, time
from toolkit.data.image import read_image
from toolkit.errors import DataError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
try:
    read_image({str(bomb)!r})
except DataError:
    pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, time.perf_counter() - t)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    grown_kb, seconds = proc.stdout.split()
    assert int(grown_kb) < 50_000 and float(seconds) < 2.0, proc.stdout


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "face.png"
    path.write_bytes(_encoded(".png"))
    monkeypatch.setenv("SKINKIT_MAX_PIXELS", "40000")
    with pytest.raises(DataError, match=r"is 224x224 = 0.1 megapixels, more than the limit of 0.04 megapixels"):
        read_image(path)
    monkeypatch.setenv("SKINKIT_MAX_PIXELS", "50_176")  # exactly 224 x 224 is allowed
    assert read_image(path).shape == (224, 224, 3)
    monkeypatch.setenv("SKINKIT_MAX_PIXELS", "lots")
    with pytest.raises(BadInputError, match=r"SKINKIT_MAX_PIXELS='lots' is not a positive whole number of pixels"):
        read_image(path)


def test_pixel_limit_applies_to_an_evaluation_folder_on_the_command_line(tmp_path):
    """`skinkit verify --data` and an export's evaluation.folder read through the same reader: one line, exit 1."""
    data = tmp_path / "data"
    write_folder(task_data(SPEC, 2, split="val"), SPEC, data)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
name: acne_folder
model: {{name: acne_mobilenetv2}}
targets: [{{format: onnx, precision: fp32}}]
evaluation: {{source: folder, folder: {data}}}
benchmark: {{enabled: false}}
""")
    proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "export", str(recipe), "--out", str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "SKINKIT_MAX_PIXELS": "1000"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("skinkit: error:")]
    assert line == [f"skinkit: error: image {data / 'img_00000.png'} is 224x224 = 0.1 megapixels, more than the limit of 0.001 "
                    "megapixels (a decompression-bomb guard) — fix: downscale it or remove it, or raise the limit with SKINKIT_MAX_PIXELS=<pixels>"]
    assert "Traceback" not in proc.stderr


# --- a folder named like an image ---------------------------------------------------------------------------

def test_folder_named_like_an_image_is_skipped_when_listing_and_refused_when_named(tmp_path):
    write_folder(task_data(SPEC, 2, split="val"), SPEC, tmp_path)
    (tmp_path / "extra.png").mkdir()

    unlabelled = load_folder(SPEC, tmp_path, labelled=False)  # a calibration folder: every image file in it
    (tmp_path / "labels.csv").unlink()
    assert len(unlabelled) == 2 and len(load_folder(SPEC, tmp_path, labelled=False)) == 2

    (tmp_path / "labels.csv").write_text("file,label\nimg_00000.png,clear\nextra.png,mild\n")
    with pytest.raises(DataError, match=r"^unreadable image: .*extra.png \(a folder, not an image file\)$"):
        load_folder(SPEC, tmp_path)


# --- calibration: the manifest writer and reader -----------------------------------------------------------

def _calibration_cli(folder: Path, out: Path) -> subprocess.CompletedProcess:
    return run_cli("calibration", "--out", str(out), "--folder", str(folder), "--name", "photos", "--provenance", "test",
                   "--consent", "synthetic, none needed")


def test_calibration_writer_refuses_bad_files_and_writes_nothing(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.png"), _face(i))
    _truncated(folder / "cut.jpg")
    (folder / "empty.png").write_bytes(b"")
    out = tmp_path / "set.yaml"

    proc = _calibration_cli(folder, out)

    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    [line] = proc.stderr.splitlines()
    assert re.fullmatch(
        re.escape(f"skinkit: error: 2 of 5 images in {folder} cannot be used: unreadable calibration image: {folder / 'cut.jpg'} "
                  "(truncated or corrupt: image file is truncated") + r" \(\d+ bytes not processed\)\); "
        + re.escape(f"unreadable calibration image: {folder / 'empty.png'} (empty, 0 bytes) — fix: re-export those images or remove "
                    "them from the folder, then write the manifest again (nothing was written)"), line), line
    assert not out.exists() and list(tmp_path.iterdir()) == [folder]  # no manifest, no temporary file


def test_calibration_writer_skips_a_folder_named_like_an_image(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "p0.png"), _face(0))
    (folder / "sub.jpg").mkdir()
    out = tmp_path / "set.yaml"

    proc = _calibration_cli(folder, out)

    assert proc.returncode == 0, proc.stderr
    assert [e["id"] for e in yaml.safe_load(out.read_text())["images"]] == ["p0.png"]
    assert load_calibration(out, SPEC)[0].shape == (1, 224, 224, 3)


def _hashed_manifest(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A folder manifest whose hashes match the files as they are (as one written before these checks existed)."""
    import hashlib

    folder = tmp_path / "photos"
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return write_manifest(tmp_path / "set.yaml", name="photos", provenance="test", consent="synthetic", source="folder",
                          ids=list(files), hashes=[hashlib.sha256(d).hexdigest() for d in files.values()], folder="photos")


def test_manifest_naming_a_truncated_file_is_refused_or_skipped_when_allowed(tmp_path):
    whole = _encoded(".jpg")
    manifest = _hashed_manifest(tmp_path, {"ok.jpg": whole, "cut.jpg": whole[: len(whole) // 2]})

    with pytest.raises(DataError) as err:
        load_calibration(manifest, SPEC)
    assert err.value.cause.startswith(f"unreadable calibration image: {tmp_path / 'photos' / 'cut.jpg'} (truncated or corrupt")
    assert err.value.fix == "re-export it, remove it from the manifest, or set calibration.allow_unreadable: true"

    images, report = load_calibration(manifest, SPEC, allow_unreadable=True)
    assert len(images) == 1 and [s["id"] for s in report["skipped"]] == ["cut.jpg"]
    assert report["skipped"][0]["reason"].startswith("unreadable calibration image: cut.jpg (truncated or corrupt")


def test_manifest_naming_a_folder_or_an_oversized_image_is_refused(tmp_path, monkeypatch):
    manifest = _hashed_manifest(tmp_path, {"ok.png": _encoded(".png")})
    (tmp_path / "photos" / "dir.png").mkdir()
    doc = yaml.safe_load(manifest.read_text())
    doc["images"].append({"id": "dir.png", "sha256": "0" * 64})
    manifest.write_text(yaml.safe_dump(doc))
    with pytest.raises(DataError, match=r"^unreadable calibration image: .*dir.png \(a folder, not an image file\)$"):
        load_calibration(manifest, SPEC)

    monkeypatch.setenv("SKINKIT_MAX_PIXELS", "10000")
    with pytest.raises(DataError, match=r"^calibration image .*ok.png is 224x224 = 0.1 megapixels, more than the limit of 0.01 megapixels"):
        load_calibration(manifest, SPEC, limit=1)


@pytest.mark.parametrize("bad_id", ["../outside.png", "/etc/passwd", "sub/../../x.png", "C:/x.png", ""])
def test_manifest_image_ids_stay_inside_its_folder(tmp_path, bad_id):
    manifest = _hashed_manifest(tmp_path, {"ok.png": _encoded(".png")})
    doc = yaml.safe_load(manifest.read_text())
    doc["images"].append({"id": bad_id, "sha256": "0" * 64})
    manifest.write_text(yaml.safe_dump(doc))
    with pytest.raises(DataError, match=re.escape(f"image id {bad_id!r} must be a path inside the manifest's folder")):
        load_calibration(manifest, SPEC)


def test_manifest_with_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    manifest = _hashed_manifest(tmp_path, {"ok.png": _encoded(".png")})
    manifest.write_text(manifest.read_text() + "consent: none\n")
    first = next(i for i, line in enumerate(manifest.read_text().splitlines(), 1) if line.startswith("consent:"))
    last = len(manifest.read_text().splitlines())
    with pytest.raises(DataError, match=re.escape(f"duplicate key 'consent' at line {last} (first at line {first})")):
        load_calibration(manifest, SPEC)


# --- property tests: any input gives a result or a skinkit error --------------------------------------------

_REAL = {".jpg": _encoded(".jpg"), ".png": _encoded(".png")}


@st.composite
def _damaged(draw, suffix: str) -> bytes:
    """A real image's bytes, cut short and with some bytes overwritten."""
    data = bytearray(_REAL[suffix][: draw(st.integers(0, len(_REAL[suffix])))])
    for _ in range(draw(st.integers(0, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=2000), st.builds(lambda h, b: h + b, st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]),
                                                          st.binary(max_size=500)), st.deferred(lambda: st.sampled_from(list(_REAL)).flatmap(_damaged))))
def test_any_bytes_as_an_image_decode_or_raise_a_data_error(tmp_path, suffix, data):
    path = tmp_path / f"x{suffix}"
    path.write_bytes(data)
    try:
        image = read_image(path)
    except DataError as exc:
        assert str(path) in exc.cause and exc.fix
    else:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def _json_values():
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                        max_leaves=12)


_PHOTOS = {"p0.png": _encoded(".png", 0), "p1.jpg": _encoded(".jpg", 1), "cut.jpg": _encoded(".jpg", 2)[:900], "empty.png": b""}


def _valid_doc(source: str) -> dict:
    import hashlib

    doc = {"name": "x", "provenance": "p", "consent": "c", "source": source}
    if source == "synthetic":
        doc["generator"] = {"split": "calib", "seed": 0, "size": 224}
        doc["images"] = [{"id": "0", "sha256": "65d19296d921b28caeaa21645532c8ddc184d2847fb00a970f3be4ae6905e0eb"}]
    else:
        doc["folder"] = "photos"
        doc["images"] = [{"id": n, "sha256": hashlib.sha256(d).hexdigest()} for n, d in _PHOTOS.items()]
    return doc


def _or_any(*values, strategy=None):
    """One of ``values`` or of ``strategy``, or any JSON value: mostly plausible, sometimes anything."""
    return st.one_of(st.sampled_from(values), *([strategy] if strategy is not None else []), _json_values())


_FIELDS = {  # where in a manifest, and what may land there
    ("name",): _or_any("x", ""),
    ("source",): _or_any("synthetic", "folder"),
    ("folder",): _or_any("photos", "", ".", "..", "/", "photos/sub.png", "nope", "a\x00b", "x" * 300),
    ("generator", "split"): _or_any("calib", "test", "nope"),
    ("generator", "seed"): _or_any(0, strategy=st.integers(-3, 3)),
    ("generator", "size"): _or_any(224, strategy=st.integers(0, 300)),
    ("preprocessing", "crop"): _or_any("none", "skin"),
    ("extra",): _json_values(),
}
_IDS = _or_any(*_PHOTOS, "sub.png", "", "0", "1", "-1", "٣", "../photos/p0.png", "a\x00b", "x" * 300, strategy=st.text(max_size=12))
_HASHES = _or_any("0" * 64, strategy=st.text("0123456789abcdef", min_size=64, max_size=64))


@st.composite
def _mutated_manifest(draw) -> bytes:
    """A valid manifest (synthetic or folder) with a few fields replaced, or image entries added, as YAML or JSON."""
    import json

    doc = _valid_doc(draw(st.sampled_from(["synthetic", "folder"])))
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            doc["images"] = [*doc["images"], {"id": draw(_IDS), "sha256": draw(_HASHES)}]
            continue
        where = draw(st.sampled_from(sorted(_FIELDS)))
        value = draw(_FIELDS[where])
        if len(where) == 1:
            doc[where[0]] = value
        else:
            section = doc.setdefault(where[0], {})
            section[where[1]] = value
    if draw(st.booleans()):
        doc["images"] = draw(st.permutations(doc["images"]))
    text = yaml.safe_dump(doc) if draw(st.booleans()) else json.dumps(doc)
    return text.encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def manifest_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("manifests")
    (root / "photos").mkdir()
    for name, data in _PHOTOS.items():
        (root / "photos" / name).write_bytes(data)
    (root / "photos" / "sub.png").mkdir()
    return root


@settings(max_examples=200, deadline=None)
@example(text=b"\xff\xfe not utf-8", allow_unreadable=False)
@example(text=b"name: 2020-02-30", allow_unreadable=False)  # PyYAML raises ValueError on the impossible date
@example(text=b"[" * 3000, allow_unreadable=False)  # RecursionError in PyYAML's composer
@given(text=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode), _json_values().map(lambda v: yaml.safe_dump(v).encode()),
                      _mutated_manifest()),
       allow_unreadable=st.booleans())
def test_any_manifest_loads_or_raises_a_skinkit_error(manifest_dir, text, allow_unreadable):
    path = manifest_dir / "m.yaml"
    path.write_bytes(text)
    try:
        images, report = load_calibration(path, SPEC, allow_unreadable=allow_unreadable, limit=3)
    except SkinkitError as exc:
        assert exc.cause and "\n" not in exc.one_line()
    else:
        assert images.shape[1:] == (224, 224, 3) and report["images"] == len(images) >= 1


def test_the_shipped_manifest_still_loads():
    images, report = load_calibration(ROOT / "calibration" / "acne_synthetic_calib.yaml", SPEC, limit=2)
    assert images.shape == (2, 224, 224, 3) and report["skipped"] == []
