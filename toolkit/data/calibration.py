"""Calibration sets described by manifests: which images, their hashes, where they came from, consent.

A manifest (YAML, ``calibration/*.yaml``) lists every image by id with the sha256 it must have:

    name: acne_synthetic_calib
    description: …
    provenance: where the images come from
    consent: the basis on which they may be used
    source: synthetic            # or folder (then: folder: relative/to/manifest)
    generator: {split: calib, seed: 0, size: 224}    # synthetic: id = "<index>"; sha256 of the RGB pixels
    preprocessing: {crop: none}  # or skin: the skin region's bounding box, padded to a square
    images:
      - {id: "0", sha256: …}      # folder: id = file name; sha256 of the file's bytes

Loading checks every hash, so a calibration set cannot drift silently. An unreadable (empty, truncated, corrupt,
over the pixel limit: ``toolkit.data.image``), missing or changed image is an error naming it, or — with
``allow_unreadable`` — skipped and listed in the report. Images go
through the model's own preprocessing: OpenCV decoding (EXIF orientation applied), BGR→RGB, optional
crop, INTER_AREA resize to the model input. ``check_disjoint`` refuses a calibration set that shares an
image (the same model-input pixels) with the evaluation set.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path, PurePosixPath
from typing import Literal

import cv2
import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from toolkit._io import yaml_load
from toolkit.data.image import read_file, read_image
from toolkit.errors import DataError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Generator(_Strict):
    split: Literal["calib", "train", "val", "test"] = "calib"
    seed: int = Field(0, ge=0)
    size: int = Field(224, ge=32, le=1024)  # a synthetic face above 1024 px takes seconds to render and adds nothing


class Preprocessing(_Strict):
    crop: Literal["none", "skin"] = "none"


class ImageEntry(_Strict):
    id: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("id")
    @classmethod
    def _inside_the_folder(cls, v: str) -> str:
        parts = PurePosixPath(v.replace("\\", "/")).parts
        if not parts or parts[0] == "/" or ".." in parts or re.match(r"[A-Za-z]:", v):  # empty, absolute, escaping, a drive
            raise ValueError(f"image id {v!r} must be a path inside the manifest's folder (relative, no '..')")
        return v


class CalibrationManifest(_Strict):
    name: str
    description: str = ""
    provenance: str
    consent: str
    source: Literal["synthetic", "folder"]
    generator: Generator | None = None
    folder: Path | None = None
    preprocessing: Preprocessing = Preprocessing()
    images: tuple[ImageEntry, ...] = Field(min_length=1)


def pixel_sha256(image: np.ndarray) -> str:
    """Hash of an image's pixels (shape and dtype included), independent of how it was stored."""
    h = hashlib.sha256(f"{image.shape}{image.dtype}".encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def read_manifest(path: Path) -> CalibrationManifest:
    if not path.is_file():
        raise DataError(f"calibration manifest not found: {path}", fix="pass a manifest from calibration/, or `skinkit calibration DIR` to write one")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read calibration manifest {path}: {exc}", fix="give the YAML manifest `skinkit calibration` wrote") from None
    try:
        m = CalibrationManifest.model_validate(yaml_load(text))
    # ValidationError is a ValueError; PyYAML raises ValueError too (a date such as 2020-02-30), and RecursionError on deep nesting
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        first = str(exc).splitlines()
        raise DataError(f"{path} is not a valid calibration manifest: {' '.join(first[:3])}",
                        fix="compare it with calibration/acne_synthetic_calib.yaml") from None
    if m.source == "synthetic" and m.generator is None:
        raise DataError(f"{path}: source synthetic needs a generator section", fix="add generator: {split: calib, seed: 0, size: 224}")
    if m.source == "folder" and m.folder is None:
        raise DataError(f"{path}: source folder needs folder:", fix="set folder: to the images' folder, relative to the manifest")
    return m


def skin_crop(image: np.ndarray, pad: float = 0.1) -> np.ndarray:
    """The square around the image's estimated skin region (its bounding box, padded); the whole image
    if too little skin is found."""
    from toolkit.data.skin_tone import MIN_SKIN_FRACTION, estimate_skin_mask

    mask = estimate_skin_mask(image)
    ys, xs = np.nonzero(mask)
    if len(ys) < MIN_SKIN_FRACTION * mask.size:
        return image
    h, w = mask.shape
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    half = max(ys.max() - ys.min(), xs.max() - xs.min()) * (0.5 + pad)
    y0, y1 = int(max(cy - half, 0)), int(min(cy + half, h))
    x0, x1 = int(max(cx - half, 0)), int(min(cx + half, w))
    return image[y0:y1, x0:x1]


def _prepare(image: np.ndarray, spec, crop: str) -> np.ndarray:
    if crop == "skin":
        image = skin_crop(image)
    h, w = spec.input_size
    return image if image.shape[:2] == (h, w) else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def _check_hash(path: Path, entry: ImageEntry, got: str) -> None:
    if got != entry.sha256:
        raise DataError(f"calibration image {entry.id} of {path.name} changed (sha256 {got[:12]}…, manifest says {entry.sha256[:12]}…)",
                        fix="restore the original, or regenerate the manifest if the change is intended")


def load_calibration(path: Path, spec, *, allow_unreadable: bool = False, limit: int | None = None) -> tuple[np.ndarray, dict]:
    """Model-input images (N x H x W x 3 uint8 RGB) of a manifest, every hash checked, and a report."""
    from toolkit.data.masking import masked_fill
    from toolkit.data.synthetic import make_sample

    path = Path(path)
    if masked_fill(spec) is not None:
        raise DataError(f"{spec.name} sees photos masked to the skin, but the calibration manifest {path.name} holds whole "
                        "photos: their activation ranges would not be the ones the model meets",
                        fix="calibrate on source: synthetic, or a folder with skin/ masks")
    m = read_manifest(path)
    entries = m.images[:limit] if limit else m.images
    images, skipped = [], []
    for e in entries:
        try:
            if m.source == "synthetic":
                if not (e.id.isascii() and e.id.isdigit()):
                    raise DataError(f"{path}: synthetic image id {e.id!r} is not an index", fix="ids of synthetic sets are 0, 1, 2, …")
                img = make_sample(m.generator.seed, m.generator.split, int(e.id), m.generator.size).image
                _check_hash(path, e, pixel_sha256(img))
            else:
                folder = m.folder if m.folder.is_absolute() else path.parent / m.folder
                file = folder / e.id
                if not os.path.lexists(file):
                    raise DataError(f"calibration image missing: {file}", fix="restore it, or remove it from the manifest")
                fix = "re-export it, remove it from the manifest, or set calibration.allow_unreadable: true"
                data = read_file(file, what="calibration image", fix=fix)
                _check_hash(path, e, hashlib.sha256(data).hexdigest())
                decoded = read_image(file, data, what="calibration image", fix=fix)  # EXIF orientation applied
                img = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
            images.append(_prepare(img, spec, m.preprocessing.crop))
        except DataError as exc:
            if not allow_unreadable:
                raise
            # the manifest holds no path of this machine: the image by its id, relative to the manifest's folder
            where = m.folder if m.folder is None or m.folder.is_absolute() else path.parent / m.folder
            reason = exc.cause if where is None else exc.cause.replace(str(Path(where) / e.id), e.id)
            skipped.append({"id": e.id, "reason": reason.replace(str(path), path.name)})
    if not images:
        raise DataError(f"calibration set {path} has no usable images ({len(skipped)} skipped)", fix="fix or replace the images listed")
    report = {"manifest": str(path), "name": m.name, "provenance": m.provenance, "consent": m.consent, "source": m.source,
              "crop": m.preprocessing.crop, "images": len(images), "skipped": skipped}
    return np.stack(images), report


def check_disjoint(calibration: np.ndarray, evaluation: np.ndarray) -> None:
    """Refuse a calibration set that shares an image with the evaluation set (same model-input pixels)."""
    calib = {pixel_sha256(img): i for i, img in enumerate(calibration)}
    shared = [(calib[h], j) for j, img in enumerate(evaluation) if (h := pixel_sha256(img)) in calib]
    if shared:
        pairs = ", ".join(f"calibration #{i} = evaluation #{j}" for i, j in shared[:5])
        raise DataError(f"{len(shared)} image(s) are in both the calibration and the evaluation set ({pairs})",
                        fix="calibrate and evaluate on disjoint images: remove them from one set")


def write_manifest(out: Path, *, name: str, provenance: str, consent: str, source: str, ids: list[str], hashes: list[str],
                   generator: dict | None = None, folder: str | None = None, crop: str = "none", description: str = "") -> Path:
    """Write a manifest (atomically) for images already hashed."""
    doc = {"name": name, "description": description, "provenance": provenance, "consent": consent, "source": source}
    if generator:
        doc["generator"] = generator
    if folder:
        doc["folder"] = folder
    doc["preprocessing"] = {"crop": crop}
    doc["images"] = [{"id": i, "sha256": h} for i, h in zip(ids, hashes)]
    from toolkit._io import write_atomically

    CalibrationManifest.model_validate(doc)
    write_atomically(out, yaml.safe_dump(doc, sort_keys=False, width=120))
    return out
