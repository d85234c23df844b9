"""plug-in-realscale-upscale in the real GIMP 3.0.4 (Debian 13 chroot, gimp-console batch).

Real images from tests/data, cropped small (2 CPU cores): 8-bit RGBA, 16-bit RGBA with
its own ICC profile, 8-bit grey, grey with a grey ICC profile. Each is upscaled by the
plug-in through GIMP's PDB and by ``realscale upscale`` with the same model, scale and tile;
the new layer's stored values and GIMP's PNG export must equal the command's output exactly.
The same images converted in GIMP to linear float, half, linear u32 and indexed check the
other precisions; errors (unknown model, no layer, no worker) must leave the image as it was.
The worker runs outside the chroot on 127.0.0.1 (the chroot cannot see this environment's
torch).

The chroot is built on first use and cached (scripts/gimp-chroot.sh, about a minute); the
tests skip, saying why, only where it cannot be built (no root, no debootstrap, no mirror),
and fail instead when REALSCALE_REQUIRE_GIMP=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from gimp_host import EXACT_ENV, REPO, GimpSession, TcpWorker, build_chroot, closed_port

from helpers import data_file

FAST = "realesr-animevideov3"  # compact x4 model: quick on a CPU
PROCEDURE_ARGS = ["run-mode", "image", "drawables", "model", "scale", "tile", "device"]

# name: source file, crop (top, left, height, width), model, scale, tile, raw babl format.
# The crops hold every kind of pixel: transparent, semi-transparent and opaque, edges.
IMAGES = {
    "rgba8": ("children-alpha.png", (136, 312, 32, 32), FAST, 4.0, 16, "native"),
    "rgba16": ("tree_alpha_16bit.png", (96, 8, 32, 32), FAST, 4.0, 0, "native"),
    "gray8": ("00017_gray.png", (150, 200, 32, 40), FAST, 2.0, 24, "native"),
    # Grey with its own (grey) ICC profile, from the JPEG sample, cropped into a PNG.
    "gray8-icc": ("wolf_gray.jpg", (100, 150, 24, 24), FAST, 3.0, 0, "native"),
}


def _crop(name: str, out) -> None:
    from realscale import formats

    source, (top, left, height, width), *_ = IMAGES[name]
    image = formats.read_image(data_file("realesrgan-inputs", source))
    pixels = np.ascontiguousarray(image.pixels[top : top + height, left : left + width])
    # Same depth, mode and ICC profile, always as PNG (lossless).
    formats.write_image(out, pixels, like=image, format="png")


def _cli_upscale(source, out, model: str, scale: float, tile: int) -> None:
    command = [sys.executable, "-m", "realscale", "upscale", str(source), "-o", str(out),
               "--model", model, "--scale", f"{scale:g}", "--tile", str(tile or "auto"),
               "--device", "cpu", "-q"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO / "core")
    env.update(EXACT_ENV)
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False,
                          env=env)
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stderr}"


def _read(path) -> np.ndarray:
    from realscale import formats

    pixels = formats.read_image(path).pixels
    return pixels if pixels.ndim == 3 else pixels[..., None]


def _args(model: str, scale: float, tile: int) -> dict:
    return {"model": model, "scale": scale, "tile": tile, "device": "cpu"}


@pytest.fixture(scope="module")
def chroot():
    return build_chroot()


@pytest.fixture(scope="module")
def gimp(chroot):
    """GIMP with the plug-in installed by `realscale install gimp --dest`."""
    session = GimpSession(chroot, install="install")
    yield session
    session.close()


@pytest.fixture(scope="module")
def gimp_from_zip(chroot):
    """GIMP with the plug-in unpacked from the zip of `realscale package gimp`."""
    session = GimpSession(chroot, install="zip")
    yield session
    session.close()


@pytest.fixture(scope="module")
def worker():
    tcp = TcpWorker()
    yield tcp
    tcp.close()


@pytest.fixture(scope="module")
def offline(gimp_from_zip):
    """The plug-in installed from the package zip, with no worker: the per-user client
    config in the chroot (no REALSCALE_WORKER_CONFIG) names an address where nothing
    listens. Needs no worker, so registration is checked even when the worker is broken."""
    gimp = gimp_from_zip
    crop = gimp.file("offline.png")
    _crop("rgba8", crop)
    address = f"127.0.0.1:{closed_port()}"
    config = gimp.dir / "config" / "realscale" / "worker.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"version": 1, "address": address, "token": "not-a-token"}))
    results = gimp.run([{"name": "unreachable", "input": gimp.inner(crop),
                         "args": _args(FAST, 4.0, 0)}])
    return {"results": results, "address": address}


@pytest.fixture(scope="module")
def upscaled(gimp, worker):
    """One gimp-console run over every case with a live worker; the command's outputs."""
    config = gimp.file("worker.json")
    config.write_text(json.dumps(worker.config))
    trace = gimp.file("progress.txt")
    cases, cli = [], {}
    for name, (_, _, model, scale, tile, raw_format) in IMAGES.items():
        crop = gimp.file(f"{name}.png")
        _crop(name, crop)
        cli[name] = gimp.file(f"{name}-cli.png")
        _cli_upscale(crop, cli[name], model, scale, tile)
        cases.append({
            "name": name, "input": gimp.inner(crop), "args": _args(model, scale, tile),
            "raw": gimp.inner(gimp.file(f"{name}.raw")), "raw_format": raw_format,
            "export": gimp.inner(gimp.file(f"{name}-gimp.png")),
        })
    rgba8 = gimp.inner(gimp.file("rgba8.png"))
    gray8 = gimp.inner(gimp.file("gray8.png"))
    cases += [
        # 32-bit float with LINEAR light: the plug-in must still hand the network
        # sRGB-encoded values (R'G'B'A float), so the result matches the 8-bit one.
        {"name": "float-linear", "input": rgba8, "precision": "FLOAT_LINEAR",
         "args": _args(FAST, 4.0, 16), "raw": gimp.inner(gimp.file("float-linear.raw")),
         "raw_format": "R'G'B'A float"},
        {"name": "half-nonlinear", "input": gray8, "precision": "HALF_NON_LINEAR",
         "args": _args(FAST, 2.0, 24), "raw": gimp.inner(gimp.file("half.raw")),
         "raw_format": "Y' float"},
        {"name": "u32-linear", "input": gray8, "precision": "U32_LINEAR",
         "args": _args(FAST, 2.0, 24), "raw": gimp.inner(gimp.file("u32.raw")),
         "raw_format": "Y' float"},
        {"name": "indexed", "input": rgba8, "indexed": 32, "args": _args(FAST, 2.0, 0)},
        {"name": "offsets", "input": gray8, "offsets": [5, 7], "args": _args(FAST, 2.0, 0)},
        {"name": "bad-model", "input": rgba8, "args": _args("no-such-model", 4.0, 0)},
        {"name": "no-layer", "input": rgba8, "no_drawables": True, "args": _args(FAST, 4.0, 0)},
    ]
    results = gimp.run(cases, env={"REALSCALE_WORKER_CONFIG": gimp.inner(config),
                                   "REALSCALE_GIMP_PROGRESS_TRACE": gimp.inner(trace)})
    assert results["registered"], (
        f"the plug-in did not register:\n{results['log'][-3000:]}")
    by_name = {case["name"]: case for case in results["cases"]}
    for case in results["cases"]:
        assert "driver_error" not in case, case["driver_error"]
    return {"results": results, "cases": by_name, "cli": cli,
            "progress": trace.read_text() if trace.is_file() else ""}


def _case(upscaled, name: str) -> dict:
    case = upscaled["cases"][name]
    assert case["status"] == "success", (
        f"{name}: {case['status']}: {case['message']}\n{upscaled['results']['log'][-3000:]}")
    return case


def _raw(gimp, name: str, dtype, shape) -> np.ndarray:
    data = np.fromfile(gimp.file(f"{name}.raw"), dtype=dtype)
    return data.reshape(shape)


def test_procedure_registers(offline):
    results = offline["results"]
    assert results["gimp_version"].startswith("3.0"), results["gimp_version"]
    assert results["registered"], "lookup_procedure('plug-in-realscale-upscale') is None"
    proc = results["procedure"]
    assert proc["menu_label"] == "Upscale with Real-ESRGAN..."
    assert proc["menu_paths"] == ["<Image>/Filters/Enhance"]
    assert [a["name"] for a in proc["arguments"]] == PROCEDURE_ARGS
    types = {a["name"]: a["type"] for a in proc["arguments"]}
    assert (types["model"], types["scale"], types["tile"], types["device"]) == (
        "gchararray", "gdouble", "gint", "gchararray")


@pytest.mark.parametrize("name", list(IMAGES))
def test_pixels_equal_realscale_upscale(gimp, upscaled, name):
    case = _case(upscaled, name)
    expected = _read(upscaled["cli"][name])
    height, width, channels = expected.shape
    if channels == 4:  # the crop really has transparent, translucent and opaque pixels
        alpha, top = _read(gimp.file(f"{name}.png"))[..., 3], np.iinfo(expected.dtype).max
        assert (alpha == 0).any() and ((alpha > 0) & (alpha < top)).any() and (
            alpha == top).any()
    # The new layer's own stored values (its native format: no conversion at all).
    got = _raw(gimp, name, expected.dtype, expected.shape)
    diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    assert diff.max() == 0, (
        f"{name}: GIMP's layer differs from `realscale upscale` at {int((diff > 0).sum())} "
        f"values, by up to {int(diff.max())}")
    # GIMP's PNG export of that layer, read back from the file.
    exported = _read(gimp.file(f"{name}-gimp.png"))
    assert exported.dtype == expected.dtype and exported.shape == expected.shape, (
        f"{name}: export is {exported.dtype} {exported.shape}, "
        f"`realscale upscale` gave {expected.dtype} {expected.shape}")
    assert np.array_equal(exported, expected), f"{name}: GIMP's PNG export differs"
    assert (case["after"]["width"], case["after"]["height"]) == (width, height)
    assert channels == {"rgba8": 4, "rgba16": 4, "gray8": 1, "gray8-icc": 1}[name]


@pytest.mark.parametrize("name", list(IMAGES))
def test_result_layer_structure(upscaled, name):
    case = _case(upscaled, name)
    before, after = case["before"], case["after"]
    scale = IMAGES[name][3]
    assert (after["width"], after["height"]) == (
        round(before["width"] * scale), round(before["height"] * scale))
    assert after["precision"] == before["precision"]
    assert after["base_type"] == before["base_type"]
    source = before["layers"][0]
    new, kept = after["layers"]
    assert new["name"].startswith(source["name"]) and new["name"] != source["name"]
    assert new["visible"] and not kept["visible"], "the source must stay, hidden"
    assert kept["name"] == source["name"]
    assert (new["width"], new["height"]) == (after["width"], after["height"])
    assert new["format"] == source["format"], "the new layer must have the image's format"
    assert new["has_alpha"] == source["has_alpha"]
    assert after["selected"] == [new["name"]]
    assert after["dirty"], "the upscale must be an undo step"


def test_sixteen_bit_keeps_its_profile_and_precision(upscaled):
    case = _case(upscaled, "rgba16")
    # The tree image has its own ICC profile (gamma 2.2): its layer format is tied to that
    # space, and the plug-in moved the values in it, 16 bits per channel.
    assert case["before"]["precision"] == "u16-non-linear"
    assert "-space-" in case["before"]["layers"][0]["format"]
    assert case["after"]["layers"][0]["format"] == case["before"]["layers"][0]["format"]


def test_linear_float_goes_through_srgb_encoded_values(gimp, upscaled):
    case = _case(upscaled, "float-linear")
    assert case["after"]["precision"] == "float-linear"
    assert case["after"]["layers"][0]["format"] == "RGBA float"
    expected = _read(upscaled["cli"]["rgba8"]).astype(np.float64) / 255
    got = _raw(gimp, "float-linear", np.float32, expected.shape).astype(np.float64)
    # Same input values (8-bit in a float image); the command rounds its output to 8 bits,
    # GIMP keeps floats: half a step apart at most. Linear values would be far off.
    worst = float(np.abs(got - expected).max())
    assert worst <= 0.5 / 255 + 1e-4, f"float result differs by up to {worst * 255:.2f}/255"


def test_half_float_grey(gimp, upscaled):
    case = _case(upscaled, "half-nonlinear")
    assert case["after"]["precision"] == "half-non-linear"
    expected = _read(upscaled["cli"]["gray8"]).astype(np.float64) / 255
    got = _raw(gimp, "half", np.float32, expected.shape).astype(np.float64)
    worst = float(np.abs(got - expected).max())
    # The 8-bit values are stored as half floats (steps of 1/2048 near 1.0) and the result
    # is rounded to half floats again; the command's 8-bit path rounds twice (x4, then
    # resized to x2: see test_u32_linear_grey). A linear or mis-scaled transfer would be far
    # off.
    assert worst <= 1.5 / 255, f"half result differs by up to {worst * 255:.2f}/255"


def test_u32_linear_grey(gimp, upscaled):
    # 32-bit integer, linear light: travels as sRGB-encoded float32, comes back as u32.
    case = _case(upscaled, "u32-linear")
    assert case["after"]["precision"] == "u32-linear"
    expected = _read(upscaled["cli"]["gray8"]).astype(np.float64) / 255
    got = _raw(gimp, "u32", np.float32, expected.shape).astype(np.float64)
    worst = float(np.abs(got - expected).max())
    # Scale 2 with an x4 model: the command's 8-bit path rounds the x4 result to 8 bits,
    # resizes it and rounds again (up to one 8-bit step in all); the float path rounds never.
    assert worst <= 1 / 255 + 1e-4, f"u32 result differs by up to {worst * 255:.2f}/255"


def test_indexed_image_is_converted_to_rgb(upscaled):
    case = _case(upscaled, "indexed")
    assert case["before"]["base_type"] == "indexed"
    assert case["after"]["base_type"] == "rgb"
    new, kept = case["after"]["layers"]
    assert (new["width"], new["height"]) == (64, 64) and new["visible"] and not kept["visible"]


def test_layer_with_offsets_keeps_its_place(upscaled):
    case = _case(upscaled, "offsets")
    before, after = case["before"], case["after"]
    assert before["layers"][0]["offsets"] == [5, 7]
    assert (after["width"], after["height"]) == (before["width"] * 2, before["height"] * 2)
    new = after["layers"][0]
    assert new["offsets"] == [10, 14]
    assert (new["width"], new["height"]) == (80, 64)


def test_progress_follows_the_worker(upscaled):
    # rgba8: 32x32 in 16-pixel tiles, so the worker reports several tiles.
    sections, current = {}, None
    for line in upscaled["progress"].splitlines():
        if line.startswith("# "):
            current = sections.setdefault(line[2:], [])
        elif current is not None:
            current.append(float(line))
    values = sections.get("rgba8")
    assert values, f"no progress reached GIMP: {upscaled['progress'][:500]!r}"
    assert values == sorted(values), f"progress went backwards: {values}"
    from_worker = [v for v in values if 0.05 < v < 0.9]
    assert len(from_worker) >= 3, f"the bar did not follow the worker's tiles: {values}"
    assert values[-1] == pytest.approx(1.0)


def _assert_unchanged(case: dict) -> None:
    # Same size, layers, names, visibility and selection, and not dirty: not one undo step.
    assert not case["before"]["dirty"]
    assert case["after"] == case["before"], "a failed upscale must leave the image unchanged"


def test_unknown_model_is_a_readable_error(upscaled):
    case = upscaled["cases"]["bad-model"]
    assert case["status"] == "execution-error"
    assert "no-such-model" in (case["message"] or ""), case["message"]
    _assert_unchanged(case)


def test_no_layer_selected_is_a_readable_error(upscaled):
    case = upscaled["cases"]["no-layer"]
    assert case["status"] == "execution-error"
    assert "select exactly one layer" in (case["message"] or ""), case["message"]
    _assert_unchanged(case)


def test_unreachable_worker_says_how_to_install(offline):
    case = offline["results"]["cases"][0]
    assert case["status"] == "execution-error", case
    message = case["message"] or ""
    assert offline["address"] in message, message
    assert "realscale install gimp" in message, message
    _assert_unchanged(case)
