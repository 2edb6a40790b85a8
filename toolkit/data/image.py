"""Image files of data folders and calibration sets, checked before they are decoded.

Every image skinkit reads from a folder goes through ``check_image`` first:

- its width × height is read from the header and refused above ``max_pixels()`` (250 megapixels, or the
  ``SKINKIT_MAX_PIXELS`` environment variable), so a small file that would decode to gigabytes never is;
- a truncated or corrupt file is refused: Pillow decodes it first and raises where the data ends early or
  does not parse (OpenCV would pad a cut-off JPEG with grey and say nothing); a JPEG is decoded at 1/8 scale,
  which still reads all of its data, at a fraction of the cost;
- a folder, a missing file, an empty file or a file in no image format is refused too.

Each refusal is a ``DataError`` naming the file; the caller supplies the fix (which depends on where the
file is listed). Pixels still come from OpenCV (``read_image``), as the models' preprocessing does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from toolkit.errors import BadInputError, DataError

ENV_MAX_PIXELS = "SKINKIT_MAX_PIXELS"
# A 200-megapixel phone camera's full frame reads (as ``load_photo`` allows); beyond is a decompression bomb.
MAX_PIXELS = 250_000_000
DEFAULT_FIX = "re-export the image, or remove it"


def max_pixels() -> int:
    """The most pixels (width × height) an image may have: ``SKINKIT_MAX_PIXELS`` if set, else ``MAX_PIXELS``."""
    raw = os.environ.get(ENV_MAX_PIXELS, "").strip()
    if not raw:
        return MAX_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise BadInputError(f"{ENV_MAX_PIXELS}={raw!r} is not a positive whole number of pixels",
                            fix=f"set it to e.g. {MAX_PIXELS} (the default), or unset it")
    return value


def check_image(path: Path, data: bytes | None = None, *, what: str = "image", fix: str = DEFAULT_FIX) -> tuple[int, int]:
    """Refuse an image file that cannot be used, without decoding more than needed; its (width, height).

    ``data``: the file's bytes where the caller has read them already (they are checked, not the file).
    ``what`` names the file in the error ("calibration image", "skin mask"); ``fix`` is the error's fix."""
    import io

    from PIL import Image

    path = Path(path)
    if data is None:
        data = read_file(path, what=what, fix=fix)
    if not data:
        raise DataError(f"unreadable {what}: {path} (empty, 0 bytes)", fix=fix)
    limit = max_pixels()
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # our limit, checked below on the header's size, replaces Pillow's
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > limit:
                raise DataError(f"{what} {path} is {width}x{height} = {width * height / 1e6:.1f} megapixels, more than the limit "
                                f"of {limit / 1e6:g} megapixels (a decompression-bomb guard)",
                                fix=f"downscale it or remove it, or raise the limit with {ENV_MAX_PIXELS}=<pixels>")
            if img.format == "JPEG":
                img.draft(img.mode, (max(width // 8, 1), max(height // 8, 1)))
            img.load()
    except DataError:
        raise
    except Exception as e:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError... on bad data
        from PIL import UnidentifiedImageError

        reason = "not an image: no format Pillow reads" if isinstance(e, UnidentifiedImageError) else f"truncated or corrupt: {' '.join(str(e).split())}"
        raise DataError(f"unreadable {what}: {path} ({reason})", fix=fix) from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    return width, height


def read_image(path: Path, data: bytes | None = None, *, flags: int | None = None, what: str = "image",
               fix: str = DEFAULT_FIX) -> np.ndarray:
    """The image OpenCV decodes (``flags``, default IMREAD_COLOR: EXIF orientation applied, BGR order) after
    ``check_image`` accepted it."""
    import cv2

    path = Path(path)
    if data is None:
        data = read_file(path, what=what, fix=fix)
    check_image(path, data, what=what, fix=fix)
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR if flags is None else flags)
    except cv2.error:
        decoded = None
    if decoded is None:
        raise DataError(f"unreadable {what}: {path} (not an image OpenCV can decode)", fix=fix)
    return decoded


def read_file(path: Path, *, what: str = "image", fix: str = DEFAULT_FIX) -> bytes:
    """A file's bytes; a folder, a missing or an unreadable file is a ``DataError`` naming it."""
    try:
        if path.is_dir():
            raise DataError(f"unreadable {what}: {path} (a folder, not an image file)", fix=fix)
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}", fix=fix) from None
    except OSError as e:
        raise DataError(f"unreadable {what}: {path} ({e.strerror or e})", fix=fix) from None
