"""The Upscaler on every pixel layout a host hands over: depth, channels, alpha, scale."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import rgb_crop
from realscale import RealscaleError, Upscaler, load_model
from realscale.errors import OutputSizeError, OutputTooLargeError
from realscale.formats import DEFAULT_MAX_PIXELS


@pytest.fixture(scope="module")
def upscaler() -> Upscaler:
    # The compact model: these tests are about the pipeline around the network.
    return Upscaler(load_model("realesr-animevideov3"), device="cpu")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return rgb_crop("OST_009.png", 48, 100, 100)


def test_rgb_uint8_keeps_type_and_scale(upscaler: Upscaler, photo: np.ndarray) -> None:
    out = upscaler.upscale(photo)
    assert out.dtype == np.uint8 and out.shape == (192, 192, 3)
    # Not a trivial resize: the network restores detail a bicubic upscale lacks.
    from PIL import Image

    bicubic = np.asarray(Image.fromarray(photo).resize((192, 192), Image.Resampling.BICUBIC))
    assert np.abs(out.astype(int) - bicubic.astype(int)).mean() > 2


def test_uint16_and_float_follow_uint8(upscaler: Upscaler, photo: np.ndarray) -> None:
    ref = upscaler.upscale(photo).astype(np.float64) / 255
    deep = upscaler.upscale(photo.astype(np.uint16) * 257)
    assert deep.dtype == np.uint16
    assert np.abs(deep / 65535 - ref).max() <= 1 / 255 + 1e-6
    # 16-bit output is not 8-bit data widened: values between the 8-bit steps occur.
    assert np.count_nonzero(deep % 257) > deep.size // 2
    flt = upscaler.upscale(photo.astype(np.float32) / 255)
    assert flt.dtype == np.float32 and flt.min() >= 0.0 and flt.max() <= 1.0
    assert np.abs(flt - ref).max() <= 0.5 / 255 + 1e-6


def test_gray_and_gray_alpha(upscaler: Upscaler, photo: np.ndarray) -> None:
    gray = (photo @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)
    out = upscaler.upscale(gray)
    assert out.shape == (192, 192) and out.dtype == np.uint8
    via_rgb = upscaler.upscale(np.repeat(gray[..., None], 3, axis=2))
    # Grey goes through the RGB network and comes back as BT.601 luma, as upstream does.
    luma = via_rgb @ np.array([0.299, 0.587, 0.114])
    assert np.abs(out - luma).max() <= 1
    la = np.stack([gray, np.full_like(gray, 255)], axis=2)
    out_la = upscaler.upscale(la)
    assert out_la.shape == (192, 192, 2)
    assert (out_la[..., 1] == 255).all() and np.array_equal(out_la[..., 0], out)


def test_opaque_alpha_equals_rgb(upscaler: Upscaler, photo: np.ndarray) -> None:
    rgba = np.concatenate([photo, np.full(photo.shape[:2] + (1,), 255, np.uint8)], axis=2)
    out = upscaler.upscale(rgba)
    assert out.shape == (192, 192, 4)
    assert np.array_equal(out[..., :3], upscaler.upscale(photo))
    assert (out[..., 3] == 255).all()


def _soft_disc(size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - size / 2, xx - size / 2)
    return np.clip((size * 0.35 - radius) / 4, 0, 1)


def test_hidden_colour_never_bleeds_into_edges(upscaler: Upscaler, photo: np.ndarray) -> None:
    """What lies under fully transparent pixels must not change the result (no dark or
    coloured fringes at soft edges): colour is upscaled premultiplied."""
    alpha = (_soft_disc(48) * 255).round().astype(np.uint8)
    hidden_black = np.concatenate([photo, alpha[..., None]], axis=2)
    hidden_black[alpha == 0, :3] = 0
    hidden_white = hidden_black.copy()
    hidden_white[alpha == 0, :3] = 255
    a = upscaler.upscale(hidden_black)
    b = upscaler.upscale(hidden_white)
    visible = a[..., 3] > 0
    assert visible.any() and (a[..., 3] < 255).any() and (a[..., 3] > 0).any()
    assert np.array_equal(a[..., 3], b[..., 3])
    assert np.abs(a[visible, :3].astype(int) - b[visible, :3].astype(int)).max() <= 1


def test_white_on_transparent_black_stays_white(upscaler: Upscaler) -> None:
    alpha = (_soft_disc(48) * 255).round().astype(np.uint8)
    rgba = np.zeros((48, 48, 4), np.uint8)
    rgba[..., 3] = alpha
    rgba[alpha > 0, :3] = 255
    out = upscaler.upscale(rgba)
    edge = (out[..., 3] > 12) & (out[..., 3] < 243)
    assert edge.sum() > 50
    assert out[edge, :3].min() >= 235, "soft edges darkened: a dark fringe"


def test_real_rgba_image(upscaler: Upscaler) -> None:
    from PIL import Image

    from helpers import data_file

    with Image.open(data_file("realesrgan-inputs", "children-alpha.png")) as image:
        rgba = np.asarray(image.convert("RGBA"))[200:264, 200:264]
    assert 0 < rgba[..., 3].min() < 255 or (rgba[..., 3] == 0).any()
    out = upscaler.upscale(rgba)
    assert out.shape == (256, 256, 4)
    # Alpha is upscaled, not dropped or flattened: its mean survives.
    assert abs(out[..., 3].mean() - rgba[..., 3].mean()) < 4


@pytest.mark.parametrize(
    ("kwargs", "size"),
    [({"scale": 2}, (96, 96)), ({"scale": 2.5}, (120, 120)), ({"scale": 0.5}, (24, 24)),
     ({"width": 100}, (100, 100)), ({"height": 60}, (60, 60)),
     ({"width": 500, "height": 70}, (70, 70))],
)
def test_any_scale_and_fit(upscaler: Upscaler, photo: np.ndarray, kwargs, size) -> None:
    out = upscaler.upscale(photo, **kwargs)
    assert out.shape[:2] == size and out.dtype == np.uint8
    full = upscaler.upscale(photo).astype(np.float32)
    from PIL import Image

    expect = np.asarray(Image.fromarray(full.astype(np.uint8)).resize(
        size[::-1], Image.Resampling.LANCZOS)).astype(np.float32)
    assert np.abs(out - expect).mean() < 2


def test_tiny_images(upscaler: Upscaler) -> None:
    for shape in ((1, 1, 3), (1, 5, 3), (3, 2, 4), (2, 2)):
        image = np.full(shape, 200, np.uint8)
        out = upscaler.upscale(image)
        assert out.shape[:2] == (shape[0] * 4, shape[1] * 4)
        # Flat colour stays flat (the network lifts it by a few levels, as ncnn does too).
        assert np.ptp(out.reshape(-1, out.shape[-1] if out.ndim == 3 else 1), axis=0).max() <= 3
        assert np.abs(out.astype(int) - 200).max() <= 8


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.zeros((4, 4, 5), np.uint8), "1 to 4 channels"),
        (np.zeros((4, 4, 3), np.int32), "uint8, uint16 or float32"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (np.full((4, 4, 3), np.inf, np.float32), "infinite"),
    ],
)
def test_bad_arrays_are_refused(upscaler: Upscaler, image: np.ndarray, message: str) -> None:
    with pytest.raises(RealscaleError, match=message):
        upscaler.upscale(image)


def test_bad_scale_is_refused(upscaler: Upscaler, photo: np.ndarray) -> None:
    for scale in (0, -1, float("nan"), float("-inf"), "2", True):
        with pytest.raises(OutputSizeError, match="greater than 0"):
            upscaler.upscale(photo, scale=scale)
    for target in (0, -5, 2.5, "100"):
        with pytest.raises(OutputSizeError, match="whole number of at least 1"):
            upscaler.upscale(photo, width=target)


@pytest.mark.parametrize(
    ("kwargs", "size"),
    [({"width": 100_000_000}, "100,000,000x100,000,000"),
     ({"scale": 1e6}, "48,000,000x48,000,000"),
     ({"height": 10**30}, " pixels, more than the limit"),
     ({"scale": 1e308}, None)],  # width x scale is not even a finite number
)
def test_impossible_output_size_is_refused_before_any_work(
    upscaler: Upscaler, photo: np.ndarray, kwargs, size
) -> None:
    # Without the check numpy fails allocating petabytes (or round() fails on infinity).
    with pytest.raises(OutputTooLargeError) as caught:
        upscaler.upscale(photo, **kwargs)
    message = str(caught.value)
    assert f"limit of {DEFAULT_MAX_PIXELS:,}" in message or "the limit" in message
    assert size is None or size in message
    assert "\n" not in message and isinstance(caught.value, RealscaleError)


def test_output_limit_is_the_given_max_pixels(upscaler: Upscaler, photo: np.ndarray) -> None:
    assert upscaler.output_size(48, 48) == (192, 192)
    with pytest.raises(OutputTooLargeError, match="192x192 = 36,864 pixels"):
        upscaler.upscale(photo, max_pixels=192 * 192 - 1)
    assert upscaler.upscale(photo, max_pixels=192 * 192).shape == (192, 192, 3)
    # A size within the default limit but above a lower one: the limit decides, not memory.
    with pytest.raises(OutputTooLargeError):
        upscaler.output_size(4000, 3000, max_pixels=100_000_000)
    assert upscaler.output_size(4000, 3000) == (16000, 12000)


def test_x4plus_default_model_loads_once_runs_many() -> None:
    upscaler = Upscaler(device="cpu")
    assert upscaler.name == "realesrgan-x4plus" and upscaler.scale == 4
    small = rgb_crop("0014.jpg", 16)
    first, second = upscaler.upscale(small), upscaler.upscale(small)
    assert np.array_equal(first, second) and first.shape == (64, 64, 3)
