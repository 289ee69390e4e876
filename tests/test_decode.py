"""Every kind of image input, good and bad, through ``load_image``."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import need_shared
from PIL import Image

from facial_emotion import settings
from facial_emotion.inference.decode import ImageError, ImageTooLarge, as_bgr, from_array, load_image


def _png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_rgba_png_from_shared_is_bgr_uint8() -> None:
    img = load_image(need_shared("media", "32bit.png"))
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def test_channel_orders_agree() -> None:
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red
    from_pil = load_image(Image.fromarray(rgb))
    from_png = load_image(_png_bytes(Image.fromarray(rgb)))
    from_bgr_array = load_image(rgb[..., ::-1].copy())
    for out in (from_pil, from_png, from_bgr_array):
        assert out[0, 0].tolist() == [0, 0, 200]  # BGR: red is the last channel


def test_gray_16bit_cmyk_and_palette() -> None:
    gray = Image.fromarray(np.full((10, 12), 77, np.uint8))
    assert load_image(_png_bytes(gray))[0, 0].tolist() == [77, 77, 77]
    deep = Image.fromarray(np.full((10, 12), 65535, np.uint16))
    assert load_image(_png_bytes(deep))[0, 0].tolist() == [255, 255, 255]
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # red in CMYK
    out = load_image(_png_bytes(cmyk, "JPEG"))
    assert out[4, 4, 2] > 200 and out[4, 4, 0] < 60
    assert load_image(_png_bytes(Image.new("P", (5, 5)))).shape == (5, 5, 3)
    assert load_image(np.zeros((6, 6, 4), np.uint8)).shape == (6, 6, 3)


def test_a_pil_image_made_in_memory_keeps_8_bit_values_a_16_bit_file_stays_16_bit() -> None:
    """``Image.fromarray`` of int32 and ``.convert("I")`` give mode "I" images: their 8-bit values
    were read as 16-bit, a near-black picture with no face."""
    bgr = load_image(need_shared("media", "justin.jpg"))
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    as_array = load_image(gray.astype(np.int32))
    for img in (Image.fromarray(gray.astype(np.int32)), Image.fromarray(gray).convert("I")):
        assert img.mode == "I" and load_image(img).tolist() == as_array.tolist()
    dim = Image.fromarray(np.full((6, 6), 200, np.uint16)).convert("I")  # a dark 16-bit PPM opens as "I"
    from_file = Image.open(io.BytesIO(_png_bytes(dim, "PPM")))
    assert from_file.mode == "I" and load_image(from_file)[0, 0, 0] == 200 * 255 // 65535
    assert load_image(_png_bytes(dim, "PPM"))[0, 0, 0] == 200 * 255 // 65535


def test_every_pixel_type_comes_out_as_the_same_picture() -> None:
    """One rule per type: a 0..1 float image one pixel past 1.0 came out black (taken for 0..255), a
    12-bit frame in uint16 nearly black (divided by 257), bool pixels as 0 and 1 (black)."""
    bgr = load_image(need_shared("media", "justin.jpg"))
    as_float = bgr.astype(np.float32) / 255

    def same(arr: np.ndarray, tolerance: int = 1, want: np.ndarray = bgr) -> bool:
        return int(np.abs(load_image(arr).astype(int) - want).max()) <= tolerance

    overshoot, clipped = as_float.copy(), bgr.copy()
    overshoot[0, 0, 0], clipped[0, 0, 0] = 1.001, 255  # as cubic resampling leaves a few pixels
    assert same(overshoot, want=clipped)
    assert same(as_float * 2 - 1)  # a normalised -1..1 tensor
    assert same(bgr.astype(np.float64))  # 0..255 floats
    assert same(bgr.astype(np.int32), 0) and same(bgr.astype(np.int64), 0)  # 8-bit values in wider ints
    assert same(bgr.astype(np.uint16) * 257, 0)  # full 16-bit
    assert same((bgr.astype(np.uint16) * 16) << 4, 1)  # a 12-bit frame, scaled up by its caller
    # 16-bit whatever the brightest pixel: a depth guessed per picture made the brighter of two dark
    # pictures come out darker (a peak of 1000 read as 10-bit, 1100 as 12-bit)
    dim, brighter = np.full((4, 4), 1000, np.uint16), np.full((4, 4), 1100, np.uint16)
    assert load_image(dim)[0, 0, 0] < load_image(brighter)[0, 0, 0] == 1100 * 255 // 65535
    dark = np.full((4, 4), 199, np.uint16)  # 16-bit in either byte order (I;16B TIFFs)
    assert load_image(dark.astype(">u2")).tolist() == load_image(dark).tolist()
    # BGRA: the colours read by their own values, not by an opaque 16-bit alpha beside them
    bgra = np.dstack([bgr.astype(np.int32), np.full(bgr.shape[:2], 65535, np.int32)])
    assert same(bgra, 0)
    assert same(np.dstack([bgr.astype(np.uint16) * 257, np.full(bgr.shape[:2], 65535, np.uint16)]), 0)
    assert load_image(np.eye(4, dtype=bool))[:, :, 0].tolist() == (np.eye(4) * 255).tolist()
    for odd in (np.full((4, 4), "a"), np.ones((4, 4), np.complex64), np.empty((4, 4), object)):
        with pytest.raises(ImageError, match="not numbers an image can hold"):
            load_image(odd)


def test_a_float_face_with_resampling_overshoot_is_still_found() -> None:
    """The real detector and model on a 0..1 float frame that cubic resizing pushed past 1.0."""
    from facial_emotion import EmotionRecognizer

    recognizer = EmotionRecognizer(threads=1)
    bgr = load_image(need_shared("media", "justin.jpg"))
    frame = cv2.resize(bgr.astype(np.float32) / 255, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC)
    assert frame.max() > 1.0  # the case: it came out black, with no face
    reference = recognizer.analyze(cv2.resize(bgr, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC))
    faces = recognizer.analyze_frame(frame)
    assert [f.emotion for f in faces] == [f.emotion for f in reference] and len(faces) == 1


def test_exif_orientation_is_honoured() -> None:
    wide = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": the upright image is 20 wide, 40 tall
    data = _png_bytes(wide, "JPEG", exif=exif.tobytes())
    assert load_image(data).shape[:2] == (40, 20)
    from facial_emotion.inference.decode import exif_orientation

    assert exif_orientation(data) == 6 and exif_orientation(_png_bytes(wide)) == 1
    assert exif_orientation(b"not an image") == 1


def test_bad_inputs_give_one_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image")
    good = _png_bytes(Image.new("RGB", (64, 64), (10, 20, 30)), "JPEG")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(good[: len(good) // 2])
    cases = {
        tmp_path / "missing.jpg": "file not found",
        tmp_path: "is a folder",
        empty: "empty file",
        text: "not an image",
        truncated: "corrupt or truncated",
    }
    for path, message in cases.items():
        with pytest.raises(ImageError, match=message) as info:
            load_image(path)
        assert str(path) in str(info.value)
    with pytest.raises(ImageError, match="unsupported input type"):
        load_image(3.14)


def test_huge_images_are_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _png_bytes(Image.new("L", (200, 200)))
    # The limit given by the caller (the service passes its own) ...
    with pytest.raises(ImageTooLarge, match="too large"):
        load_image(data, max_pixels=10_000)
    assert load_image(data, max_pixels=40_000).shape == (200, 200, 3)
    # ... else the process's setting, read from the environment.
    monkeypatch.setenv("FACIAL_EMOTION_MAX_PIXELS", "10000")
    settings.reload()
    try:
        with pytest.raises(ImageTooLarge, match="too large"):
            load_image(data)
        with pytest.raises(ImageTooLarge, match="too large"):
            load_image(np.zeros((200, 200), np.uint8))
        # A frame of a stream is never refused, whatever its type (gray and float frames were,
        # BGR uint8 ones not): the limit guards decoding a photo.
        for frame in (
            np.zeros((200, 200, 3), np.uint8),
            np.zeros((200, 200)),
            np.zeros((200, 200, 4), np.uint16),
        ):
            assert as_bgr(frame).shape == (200, 200, 3)
    finally:
        monkeypatch.delenv("FACIAL_EMOTION_MAX_PIXELS")
        settings.reload()
    assert load_image(data).shape == (200, 200, 3)


def test_decompression_bomb_is_refused() -> None:
    # A 20000 x 20000 PNG of zeros compresses to a few hundred KB but would decode to 400 MP.
    bomb = Image.new("1", (20000, 20000))
    data = _png_bytes(bomb)
    assert len(data) < 2_000_000
    with pytest.raises(ImageTooLarge, match="too large"):
        load_image(data)


def test_opencv_fallback_decodes_what_pillow_does_not() -> None:
    ok, buf = cv2.imencode(".pgm", np.full((9, 9), 5, np.uint8))
    assert ok and load_image(buf.tobytes()).shape == (9, 9, 3)


def test_a_bgra_array_is_composited_like_the_same_image_from_a_file(tmp_path: Path) -> None:
    """Files with alpha are composited on white; a BGRA array was shown on black, so the same picture
    gave another emotion through the API than from its file."""
    bgr = cv2.imread(str(need_shared("media", "justin.jpg")))
    alpha = np.full(bgr.shape[:2], 255, np.uint8)
    alpha[:, : bgr.shape[1] // 2] = 0  # left half transparent
    alpha[:, bgr.shape[1] // 2 : bgr.shape[1] // 2 + 40] = 128  # and a half-transparent band
    bgra = np.dstack([bgr, alpha])
    path = tmp_path / "alpha.png"
    cv2.imwrite(str(path), bgra)
    from_file, from_arr = load_image(path), from_array(cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
    assert from_file.shape == from_arr.shape
    assert np.abs(from_file.astype(int) - from_arr.astype(int)).max() <= 1  # rounding only
    assert (from_arr[:, :10] == 255).all()  # the transparent part is white
    padded = np.dstack([bgr, np.zeros(bgr.shape[:2], np.uint8)])  # a 4th byte of padding, all 0
    assert (from_array(padded) == bgr).all()  # the picture, not a white page
