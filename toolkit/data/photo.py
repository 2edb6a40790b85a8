"""A phone photo, read upright as RGB uint8 (``load_photo``), and fitted to the network's input size (``fit``)
exactly as an app must do it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.data.image import ENV_MAX_PIXELS, max_pixels
from toolkit.errors import BadInputError

FIT_MODES = ("center_crop", "stretch")
MIN_SIDE = 16
FORMATS = "JPEG, PNG, WebP, BMP, TIFF or HEIC"
# ISO-BMFF brands (bytes 8:12, after b"ftyp" at 4:8) of HEIF/HEIC stills and sequences.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
_DAMAGED_FIX = "the file is damaged or only partly copied: copy or export the photo again"


def load_photo(path: str | Path) -> np.ndarray:
    """Read a photo as an upright, C-contiguous RGB uint8 array of shape (H, W, 3).

    - The EXIF orientation (all 8 values) is applied, so a portrait taken sideways comes out upright.
    - JPEG, PNG, WebP, BMP and TIFF are read by Pillow; HEIC/HEIF (recognised by its ``ftyp`` brand, not
      its suffix) when ``pillow_heif`` is installed. A multi-frame file (animated GIF, TIFF pages) gives
      its first frame.
    - Grayscale, palette and CMYK become RGB; transparency is composited over white; 16-bit samples are
      scaled to 8 bits with rounding (65535 -> 255, 32896 -> 128).

    Every problem (missing, a folder, empty, not an image, truncated or corrupt, smaller than 16 px on a
    side, more than ``max_pixels()`` (a decompression bomb; 250 megapixels unless ``SKINKIT_MAX_PIXELS`` says
    otherwise: 200-megapixel phone photos read; Pillow's own default, 89 MP, would refuse them), HEIC without
    pillow-heif) raises one ``BadInputError`` naming the file, with a ``fix``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise BadInputError(f"photo not found: {path}", fix="check the path and the file name")
    if path.is_dir():
        raise BadInputError(f"{path} is a folder, not a photo", fix=f"give the path of one photo file ({FORMATS})")
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError as e:
        raise BadInputError(f"cannot read photo {path}: {e.strerror or e}", fix="check the file's permissions") from None
    if not head:
        raise BadInputError(f"photo {path} is empty (0 bytes)", fix=_DAMAGED_FIX)
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        _register_heif(path)

    limit = max_pixels()
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = limit  # Pillow warns above it (an error here) and refuses above twice it
            with Image.open(path) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadInputError(f"photo {path} has more than {limit:,} pixels (skinkit's decompression-bomb limit)",
                            fix=f"downscale the photo below {limit / 1e6:g} megapixels, or raise the limit with {ENV_MAX_PIXELS}=<pixels>") from None
    except UnidentifiedImageError:
        raise BadInputError(f"{path} is not an image (its bytes are no format Pillow reads)",
                            fix=f"give a {FORMATS} photo; a renamed file keeps its old format") from None
    except Exception as e:  # Pillow's decoders raise OSError, SyntaxError, ValueError, EOFError... on bad data
        raise BadInputError(f"photo {path} is truncated or corrupt: {e}", fix=_DAMAGED_FIX) from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit

    if min(img.size) < MIN_SIDE:
        raise BadInputError(f"photo {path} is {img.width}x{img.height} px, smaller than {MIN_SIDE} px on a side",
                            fix="give the full-size photo, not a thumbnail")
    return np.ascontiguousarray(_to_rgb(img))


def _register_heif(path: Path) -> None:
    try:
        import pillow_heif
    except ImportError:
        raise BadInputError(f"photo {path} is HEIC/HEIF and pillow-heif is not installed",
                            fix="pip install pillow-heif, or convert the photo to JPEG") from None
    pillow_heif.register_heif_opener()


def _to_rgb(img) -> np.ndarray:
    from PIL import Image

    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):  # 16-bit grayscale ("I": as PNG's 16-bit)
        wide = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img.convert("RGBA"))
    return np.array(img.convert("RGB"), dtype=np.uint8)


@dataclass(frozen=True)
class Fit:
    """A photo fitted to the network: ``image`` (h, w, 3) uint8 is the network's input; ``box`` (x0, y0, x1,
    y1) the region of the photo it shows, end-exclusive; ``source_size`` (H, W) the photo's size."""

    image: np.ndarray
    box: tuple[int, int, int, int]
    source_size: tuple[int, int]


def fit(photo: np.ndarray, size: tuple[int, int], mode: str = "center_crop") -> Fit:
    """Fit an (H, W, 3) uint8 photo to the network's input ``size`` = (h, w), pixel-exactly as an app must:

    - ``center_crop``: the largest centred crop with the target's aspect ratio. If ``W * h >= H * w`` (the
      photo is wider): ``ch = H``, ``cw = H * w // h``; else ``cw = W``, ``ch = W * h // w`` (floor
      division). Offsets ``x0 = (W - cw) // 2``, ``y0 = (H - ch) // 2``; box ``(x0, y0, x0 + cw, y0 + ch)``.
    - ``stretch``: the whole photo, box ``(0, 0, W, H)``, aspect ratio not kept.

    The box is then resized to (h, w) with OpenCV's ``cv2.resize``: ``INTER_AREA`` when shrinking (``w <= cw``
    and ``h <= ch``), otherwise ``INTER_LINEAR``. Channels stay RGB.
    """
    import cv2

    if mode not in FIT_MODES:
        raise BadInputError(f"unknown fit mode {mode!r}", fix=f"use one of: {', '.join(FIT_MODES)}")
    H, W = photo.shape[:2]
    h, w = size
    if mode == "center_crop":
        cw, ch = (H * w // h, H) if W * h >= H * w else (W, W * h // w)
        cw, ch = max(cw, 1), max(ch, 1)
        x0, y0 = (W - cw) // 2, (H - ch) // 2
    else:
        cw, ch, x0, y0 = W, H, 0, 0
    crop = photo[y0:y0 + ch, x0:x0 + cw]
    interpolation = cv2.INTER_AREA if w <= cw and h <= ch else cv2.INTER_LINEAR
    image = np.ascontiguousarray(cv2.resize(crop, (w, h), interpolation=interpolation))
    return Fit(image=image, box=(x0, y0, x0 + cw, y0 + ch), source_size=(H, W))
