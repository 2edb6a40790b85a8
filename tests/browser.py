"""Render a page in a real headless browser (Debian's ``chromium``) and read the screenshot's pixels."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

PASS, FAIL, MARGIN = (0x1B, 0x7F, 0x3B), (0xC6, 0x28, 0x28), (0xE0, 0x8A, 0x00)  # toolkit.verify.html's colours


def browser() -> str:
    """The chromium executable; skip where there is none, unless ``SKINKIT_REQUIRE_BROWSER`` is set (``.ci/run``)."""
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        why = "no chromium: install it (apt-get install chromium) to render the HTML report in a browser"
        if os.environ.get("SKINKIT_REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)
    return exe


def screenshot(page: Path, out: Path, *, width: int = 1280, height: int = 900) -> np.ndarray:
    """``page`` rendered at ``width`` x ``height`` CSS pixels, as an RGB array (height x width x 3)."""
    from PIL import Image

    exe = browser()
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="skinkit-chromium-") as profile:
        proc = subprocess.run([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
                               "--no-first-run", "--force-device-scale-factor=1", f"--user-data-dir={profile}",
                               f"--window-size={width},{height}", f"--screenshot={out}", page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=180)
    assert out.is_file(), f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return np.asarray(Image.open(out).convert("RGB"))


def content_height(pixels: np.ndarray) -> int:
    """How far down the page has anything but white background: the last such row, plus one."""
    rows = np.flatnonzero((pixels < 245).any(axis=(1, 2)))
    return int(rows[-1]) + 1 if rows.size else 0


def colour_pixels(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 24) -> int:
    """How many pixels are within ``tolerance`` of ``colour`` in every channel."""
    return int((np.abs(pixels.astype(int) - np.array(colour)).max(axis=2) <= tolerance).sum())


def colour_rows(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 24) -> np.ndarray:
    """The rows holding any pixel of ``colour``."""
    return np.flatnonzero((np.abs(pixels.astype(int) - np.array(colour)).max(axis=2) <= tolerance).any(axis=1))
