"""The client's photo side on real files written with Pillow: orientation, colour modes, every error a user
can hit, the fit to the network's input, and the overlay drawn back onto the photo."""

import sys

import numpy as np
import pytest
from PIL import Image

from toolkit.client.overlay import PALETTE, Layer, ascii_text, draw_overlay, write_overlay
from toolkit.data.photo import FIT_MODES, Fit, fit, load_photo
from toolkit.errors import BadInputError

RED, BLUE, GRAY = (220, 20, 20), (20, 40, 200), (128, 128, 128)


def _upright(h=64, w=96) -> np.ndarray:
    """A gray picture whose top-left quadrant is red: any rotation or mirror moves the red."""
    a = np.full((h, w, 3), GRAY, np.uint8)
    a[: h // 2, : w // 2] = RED
    return a


def _save(path, array_or_image, **kwargs):
    img = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    img.save(path, **kwargs)
    return path


def _is_red(px) -> bool:
    return px[0] > 180 and px[1] < 70 and px[2] < 70


# What the camera stored for each EXIF orientation, by the EXIF definitions of the 0th row and column.
STORED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: np.rot90(a, 2),
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # 0th row = visual left, 0th column = visual top
    6: lambda a: np.rot90(a, 1),  # 0th row = visual right, 0th column = visual top (portrait, phone turned)
    7: lambda a: np.rot90(a.transpose(1, 0, 2), 2),  # 0th row = visual right, 0th column = visual bottom
    8: lambda a: np.rot90(a, -1),  # 0th row = visual left, 0th column = visual bottom
}


# --- load_photo: orientation and formats -------------------------------------------------------------------

@pytest.mark.parametrize("orientation", sorted(STORED))
def test_exif_orientation_loads_upright(tmp_path, orientation):
    upright = _upright()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path / "p.jpg", np.ascontiguousarray(STORED[orientation](upright)), exif=exif.tobytes(), quality=95)

    photo = load_photo(path)

    assert photo.shape == (64, 96, 3) and photo.dtype == np.uint8 and photo.flags.c_contiguous
    assert _is_red(photo[16, 24])  # the top-left quadrant
    assert not any(_is_red(photo[y, x]) for y, x in [(16, 72), (48, 24), (48, 72)])


@pytest.mark.parametrize("suffix, kwargs", [(".png", {}), (".webp", {"lossless": True}), (".bmp", {}), (".tiff", {})])
def test_lossless_formats_load_exactly(tmp_path, suffix, kwargs):
    upright = _upright()
    assert np.array_equal(load_photo(str(_save(tmp_path / f"p{suffix}", upright, **kwargs))), upright)


def test_rgba_png_is_composited_over_white(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[:, :16] = (*RED, 255)  # opaque red
    rgba[:, 16:24] = (0, 0, 0, 0)  # transparent
    rgba[:, 24:] = (0, 0, 0, 128)  # half-transparent black

    photo = load_photo(_save(tmp_path / "a.png", rgba))

    assert tuple(photo[5, 5]) == RED
    assert tuple(photo[5, 20]) == (255, 255, 255)
    assert np.abs(photo[5, 28].astype(int) - 127).max() <= 1


def test_gray_alpha_is_composited_over_white(tmp_path):
    la = Image.new("LA", (20, 20), (0, 0))
    assert tuple(load_photo(_save(tmp_path / "la.png", la))[3, 3]) == (255, 255, 255)


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    values = np.array([0, 257, 32896, 65535], np.uint16)
    gray16 = np.repeat(np.repeat(values, 8)[None, :], 20, axis=0)  # 20 x 32, four bands
    path = _save(tmp_path / "g16.png", gray16)
    assert Image.open(path).mode == "I;16"

    photo = load_photo(path)

    assert photo.shape == (20, 32, 3)
    assert [tuple(photo[0, 8 * i]) for i in range(4)] == [(0, 0, 0), (1, 1, 1), (128, 128, 128), (255, 255, 255)]


def test_grayscale_palette_and_cmyk_become_rgb(tmp_path):
    gray = load_photo(_save(tmp_path / "l.png", Image.new("L", (20, 20), 77)))
    palette = Image.new("P", (20, 20), 1)
    palette.putpalette([0, 0, 0, *BLUE] + [0] * 762)
    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))  # pure red ink

    assert tuple(gray[0, 0]) == (77, 77, 77)
    assert tuple(load_photo(_save(tmp_path / "p.png", palette))[0, 0]) == BLUE
    assert tuple(load_photo(_save(tmp_path / "c.tiff", cmyk))[0, 0]) == (255, 0, 0)


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (24, 24), c) for c in [(255, 0, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 2

    assert tuple(load_photo(path)[10, 10]) == (255, 0, 0)


# --- load_photo: errors ---------------------------------------------------------------------------------------

def _bad(path, *words) -> BadInputError:
    with pytest.raises(BadInputError) as info:
        load_photo(path)
    err = info.value
    assert str(path) in str(err) and err.fix
    for word in words:
        assert word in (str(err) + " " + err.fix).lower(), err.one_line()
    return err


def test_missing_file_and_folder(tmp_path):
    _bad(tmp_path / "nope.jpg", "not found")
    _bad(tmp_path, "folder")


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    _bad(tmp_path / "empty.jpg", "empty")


@pytest.mark.parametrize("name", ["notes.txt", "photo.jpg"])
def test_text_is_not_an_image(tmp_path, name):
    (tmp_path / name).write_text("this is a shopping list, not a photo\n" * 20)
    _bad(tmp_path / name, "not an image", "jpeg")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_image(tmp_path, suffix):
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), np.uint8)
    whole = _save(tmp_path / f"whole{suffix}", noise).read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(whole[: len(whole) // 2])
    _bad(tmp_path / f"cut{suffix}", "truncated or corrupt", "copy")


def test_tiny_image(tmp_path):
    _bad(_save(tmp_path / "tiny.png", np.zeros((10, 40, 3), np.uint8)), "smaller than 16 px", "full-size")


@pytest.mark.parametrize("pixels", [3000, 5000])  # above the limit (Pillow warns), above twice it (Pillow refuses)
def test_decompression_bomb(tmp_path, monkeypatch, pixels):
    side = int(pixels**0.5)
    path = _save(tmp_path / "bomb.png", np.zeros((side, side, 3), np.uint8))
    monkeypatch.setenv("SKINKIT_MAX_PIXELS", "2000")
    before = Image.MAX_IMAGE_PIXELS
    _bad(path, "more than 2,000 pixels (skinkit's decompression-bomb limit)", "downscale")
    assert before == Image.MAX_IMAGE_PIXELS  # Pillow's own limit is left as it was


def test_heic_without_pillow_heif(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import fails, as when it is not installed
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    _bad(path, "heic", "pip install pillow-heif", "jpeg")
    renamed = tmp_path / "IMG_0001.jpg"  # found by its bytes, whatever its suffix
    renamed.write_bytes(path.read_bytes())
    _bad(renamed, "pip install pillow-heif")


# --- fit ------------------------------------------------------------------------------------------------------

def test_center_crop_of_a_landscape_photo():
    photo = np.zeros((300, 400, 3), np.uint8)
    photo[:, 50:350] = 200  # the centred square is bright, the side bands dark

    f = fit(photo, (224, 224))

    assert isinstance(f, Fit) and f.box == (50, 0, 350, 300) and f.source_size == (300, 400)
    assert f.image.shape == (224, 224, 3) and f.image.dtype == np.uint8 and f.image.flags.c_contiguous
    assert (f.image == 200).all()


def test_center_crop_offsets_are_floored():
    f = fit(np.zeros((401, 300, 3), np.uint8), (256, 192))  # portrait, crop 400 x 300 of 401 rows
    assert f.box == (0, 0, 300, 400)
    assert fit(np.zeros((100, 31, 3), np.uint8), (10, 10)).box == (0, 34, 31, 65)


def test_stretch_uses_the_whole_photo():
    f = fit(np.zeros((300, 400, 3), np.uint8), (224, 224), mode="stretch")
    assert f.box == (0, 0, 400, 300) and f.image.shape == (224, 224, 3)


def test_enlarging_interpolates_linearly():
    photo = np.zeros((20, 20, 3), np.uint8)
    photo[:, 10:] = 255
    row = fit(photo, (40, 40)).image[0, :, 0]
    assert 0 < row[19] < 255 or 0 < row[20] < 255  # a smooth edge, not a nearest-neighbour step


def test_unknown_fit_mode_lists_the_modes():
    with pytest.raises(BadInputError) as info:
        fit(np.zeros((32, 32, 3), np.uint8), (16, 16), mode="letterbox")
    assert all(m in info.value.fix for m in FIT_MODES)


@pytest.mark.parametrize("h, w", [(4000, 3000), (320, 240)])
def test_phone_sized_photos_load_fit_and_overlay(tmp_path, h, w):
    photo = load_photo(_save(tmp_path / "big.jpg", np.full((h, w, 3), 150, np.uint8)))
    f = fit(photo, (224, 224))
    assert photo.shape == (h, w, 3) and f.box == (0, (h - w) // 2, w, (h - w) // 2 + w) and f.image.shape == (224, 224, 3)

    out = draw_overlay(photo, f, [Layer("acne", np.eye(224, dtype=bool), PALETTE[0])], ["acne grade: mild (0.82)"])

    assert out.shape == photo.shape and out.dtype == np.uint8


# --- overlay --------------------------------------------------------------------------------------------------

def test_overlay_tints_layers_dims_outside_and_keeps_the_rest():
    photo = np.full((600, 800, 3), 150, np.uint8)
    f = fit(photo, (100, 100))  # box x 100..700, 6 photo px per mask px
    mask = np.zeros((100, 100), np.uint8)
    mask[60:90, 60:90] = 1  # photo rows 360..540, columns 460..640
    color = (0, 200, 255)

    out = draw_overlay(photo, f, [Layer("redness", mask, color, alpha=0.5)], ["TEWL 12 g/m²/h"])

    assert out.shape == photo.shape and tuple(photo[0, 0]) == (150, 150, 150)  # the input is not drawn on
    assert tuple(out[450, 550]) == (75, 175, 202)  # 150 * 0.5 + colour * 0.5, rounded
    assert (out[200:, :100] == 60).all() and (out[:, 700:] == 60).all()  # outside the box (and the legend): dimmed
    ys, xs = np.nonzero((out[200:, 100:700] != 150).any(axis=2))  # the box below the legend: only the layer changed
    assert (ys + 200).min() >= 356 and (ys + 200).max() < 544 and (xs + 100).min() >= 456 and (xs + 100).max() < 644


def test_mask_is_not_drawn_outside_the_box():
    photo = np.full((300, 400, 3), 150, np.uint8)
    f = fit(photo, (50, 50))
    out = draw_overlay(photo, f, [Layer("all", np.ones((50, 50), bool), (255, 0, 0))])
    assert (out[100:, :50] == 60).all() and (out[:, 350:] == 60).all()  # only dimmed (the legend is top-left)
    assert (out[150, 50:350, 0] > 150).all()  # the whole box tinted


def test_legend_is_drawn_in_a_corner():
    photo = np.full((300, 300, 3), 150, np.uint8)
    out = draw_overlay(photo, fit(photo, (64, 64)), [Layer("acne", np.zeros((64, 64), bool), PALETTE[1])], ["grade: mild"])
    corner = out[:60, :150]
    assert (corner < 100).any() and (corner > 200).any()  # a dark panel with white text
    assert (out[150:, :] == 150).all()


def test_ascii_text():
    assert ascii_text("g/m²/h") == "g/m2/h"
    assert ascii_text("32.5°C ± 0.2, café") == "32.5 degC +/- 0.2, cafe"
    assert ascii_text("Ω") == "?"


def test_palette_has_eight_distinct_colours():
    assert len(set(PALETTE)) == 8 and all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in PALETTE)


def test_write_overlay_writes_a_png_atomically(tmp_path):
    picture = np.zeros((20, 30, 3), np.uint8)
    picture[..., 0] = 255  # red in RGB

    path = write_overlay(tmp_path / "out" / "overlay.png", picture)

    assert path == tmp_path / "out" / "overlay.png"
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), picture)
    assert [p.name for p in path.parent.iterdir()] == ["overlay.png"]
