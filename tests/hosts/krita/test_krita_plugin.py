"""The realscale plug-in in the real Krita under Xvfb: 5.1.5, 5.2.9, 5.3.4 and 6.0.4 (Qt 6).

Every test runs in each of the four Krita releases (test ids ``[krita5.1]`` ...
``[krita6.0]``; see ``krita_harness.HOSTS``), checking the same things in each. The plug-in
is installed from the zip ``realscale package krita`` builds, by that Krita's own importer
code, into a fresh copy of a warmed profile. The test driver triggers the real actions (menu
action, keyboard shortcut, dialog) on crops of real images, exports the results and dumps the
new layers; here they are compared pixel for pixel with ``python -m realscale upscale`` on the
same files and settings.

Needs the packages of scripts/krita-deps.sh (Krita 5.1 and Xvfb on this machine) and the
chroots of scripts/host-chroot.sh (built on first use); a Krita that cannot be set up skips
its tests, or fails them under REALSCALE_REQUIRE_KRITA=1 (CI). Four Krita starts per release
(one to warm a profile, three that each copy it).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import krita_harness as kh
import numpy as np
import pytest

from helpers import data_file

MODEL = "realesr-animevideov3"
TILE = 64
SLOW_TILE = 32
"""Small tiles make the cancel and dead-worker runs long enough to act in the middle."""
CROP = (80, 96)
"""height, width of the crops: a few tiles each, quick on a CPU."""


@dataclass
class Setup:
    host: kh.Host
    root: Path
    archive: Path
    warm: kh.Profile
    worker_config: Path


@pytest.fixture(scope="module", params=kh.HOSTS, ids=[host.key for host in kh.HOSTS])
def krita(request, tmp_path_factory) -> Setup:
    """One Krita release: the plug-in zip, and a profile warmed by one Krita start (the test
    driver only)."""
    host: kh.Host = request.param
    installation = kh.set_up(host, [tmp_path_factory.getbasetemp()])
    root = tmp_path_factory.mktemp(host.key)
    archive = kh.build_zip(root / "zip")
    warm = kh.new_profile(root / "warm", installation)
    run = kh.run_scenario(warm, "noop", root / "warm-out", timeout=180)
    assert run.result.get("ok"), run.describe()
    records = run.result["records"]
    assert records["app_data"] == str(warm.resources), run.describe()
    # The Krita that ran is the release this parameter stands for, on its own Qt.
    assert records["version"].startswith(host.series + "."), records
    assert records["qt"].startswith(f"{host.qt_major}."), records
    config = kh.write_worker_config(root / "worker.json")
    return Setup(host, root, archive, warm, config)


@dataclass
class Images:
    inputs: dict[str, Path]
    references: dict[str, Path]


def _crop(source: Path, target: Path, top: int, left: int, *, to16: bool = False) -> None:
    from realscale.formats import read_image, write_image

    image = read_image(source)
    height, width = CROP
    pixels = image.pixels[top : top + height, left : left + width]
    assert pixels.shape[:2] == CROP
    if to16:
        write_image(target, pixels.astype(np.uint16) * 257, format="png")
    else:
        write_image(target, np.ascontiguousarray(pixels), like=image)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Images:
    """Crops of the real test images, and what ``realscale upscale`` makes of them."""
    root = tmp_path_factory.mktemp("krita-images")
    inputs = {name: root / f"{name}.png" for name in ("rgba8", "rgba16", "gray8", "gray16")}
    _crop(data_file("realesrgan-inputs", "children-alpha.png"), inputs["rgba8"], 120, 0)
    _crop(data_file("realesrgan-inputs", "tree_alpha_16bit.png"), inputs["rgba16"], 40, 120)
    gray = data_file("realesrgan-inputs", "00017_gray.png")
    _crop(gray, inputs["gray8"], 100, 200)
    _crop(gray, inputs["gray16"], 100, 200, to16=True)
    references = {}
    for names, scale in ((("rgba8", "rgba16"), 4), (("gray8", "gray16"), 2)):
        out = root / f"x{scale}"
        out.mkdir()
        # The grey images go through the dialog with precision "Exact" (fp32), the colour
        # ones with "Automatic".
        _cli_upscale([inputs[n] for n in names], out, scale,
                     "fp32" if names[0].startswith("gray") else "auto")
        references.update({n: out / f"{n}.png" for n in names})
    return Images(inputs, references)


def _cli_upscale(files: list[Path], out: Path, scale: int, precision: str = "auto",
                 backend: str = "auto") -> None:
    command = [sys.executable, "-m", "realscale", "upscale", *map(str, files), "-o",
               f"{out}/", "--model", MODEL, "--scale", str(scale), "--tile", str(TILE),
               "--device", "cpu", "--precision", precision, "--backend", backend, "-q"]
    done = subprocess.run(command, capture_output=True, text=True, env=kh.core_env(),
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr


def _fresh_profile(krita: Setup, name: str) -> tuple[kh.Profile, list[dict]]:
    profile = kh.clone_profile(krita.warm, krita.root / name)
    imported = kh.import_zip(krita.archive, profile)
    return profile, imported


@pytest.fixture(scope="module")
def main_run(krita: Setup, images: Images) -> tuple[kh.Run, Path, list[dict], kh.Profile]:
    profile, imported = _fresh_profile(krita, "main")
    out = krita.root / "main-out"
    params = {key: str(path) for key, path in images.inputs.items()}
    params.update(model=MODEL, tile=TILE)
    run = kh.run_scenario(profile, "upscale_matches_cli", out, params=params,
                          env={"REALSCALE_WORKER_CONFIG": str(krita.worker_config)})
    assert run.result.get("ok"), run.describe()
    assert run.returncode == 0, run.describe()
    return run, out, imported, profile


@pytest.fixture(scope="module")
def failure_run(krita: Setup, images: Images) -> kh.Run:
    profile, _ = _fresh_profile(krita, "failures")
    params = {
        "big": str(data_file("realesrgan-inputs", "children-alpha.png")),
        "rgba8": str(images.inputs["rgba8"]), "model": MODEL, "tile": TILE,
        "slow_tile": SLOW_TILE, "missing_config": str(krita.root / "no-such-worker.json"),
    }
    run = kh.run_scenario(profile, "cancel_and_failures", krita.root / "failures-out",
                          params=params,
                          env={"REALSCALE_WORKER_CONFIG": str(krita.worker_config)})
    assert run.result.get("ok"), run.describe()
    assert run.returncode == 0, run.describe()
    return run


def _read(path: Path) -> np.ndarray:
    from realscale.formats import read_image

    return read_image(path).pixels


def _raw(path: Path, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), dtype=dtype).reshape(shape)


def _bgra_to_rgba(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., [2, 1, 0, 3]]


def _assert_same_image(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal pixel for pixel; where alpha is 0 the colour is not compared (Krita's flattened
    export stores fully transparent pixels as 0, the CLI keeps the network's colour)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual[..., -1], expected[..., -1])
    visible = expected[..., -1] > 0
    np.testing.assert_array_equal(actual[visible], expected[visible])


# -- installation and wiring ------------------------------------------------------------------


def test_zip_installs_through_krita_importer(krita: Setup, main_run) -> None:
    run, _out, imported, profile = main_run
    # The release under test is one the plug-in's manifest says it supports.
    manifest = json.loads((kh.PLUGINS / "krita" / "manifest.json").read_text(encoding="utf-8"))
    assert krita.host.series in re.findall(r"\b\d+\.\d+\b", manifest["supports"]), manifest
    assert [p["name"] for p in imported] == ["realscale"]
    assert imported[0]["action"], "the zip's realscale.action was not found by the importer"
    pykrita = profile.resources / "pykrita"
    assert (pykrita / "realscale.desktop").is_file()
    assert (pykrita / "realscale" / "__init__.py").is_file()
    assert (pykrita / "realscale" / "realscale_client.py").is_file()
    assert (profile.resources / "actions" / "realscale.action").is_file()
    assert "enable_realscale=true" in profile.kritarc.read_text()


def test_actions_in_menus_with_shortcuts(main_run) -> None:
    records = main_run[0].result["records"]
    assert records["texts"] == {"realscale_upscale": "Upscale with Real-ESRGAN...",
                                "realscale_upscale_again": "Upscale Again"}
    for menus in (records["menus"], records["menus_end"]):  # at start, after documents
        for menu in ("tools/scripts", "image"):
            assert {"realscale_upscale", "realscale_upscale_again"} <= set(menus[menu]), menus
    assert records["shortcuts"] == {"realscale_upscale": "Ctrl+Alt+U",
                                    "realscale_upscale_again": "Ctrl+Alt+Shift+U"}
    assert records["enabled"] == {"realscale_upscale": True, "realscale_upscale_again": True}


def test_plugin_uses_the_binding_krita_runs_on(krita: Setup, main_run) -> None:
    """The plug-in takes the PyQt of the running Krita and never loads the other one; from
    5.3 on, Krita refuses the other one (in Krita 6 PyQt5 is installed in the chroot, so the
    plug-in loading and upscaling there shows it never asks for PyQt5)."""
    expected = "PyQt6" if krita.host.qt_major == 6 else "PyQt5"
    found = main_run[0].result["records"]["bindings"]
    assert found["plugin"] == expected, found
    assert found["loaded"] == [expected], found
    assert found["plugin_qt"] == found["qt"] and found["qt"].startswith(
        f"{krita.host.qt_major}."), found
    if krita.host.series in ("5.1", "5.2"):
        assert found["refused"] is None, found  # no guard in these releases: nothing tried
    else:
        assert f"not compatible with {found['other']}" in found["refused"], found
    if krita.host.qt_major == 6:
        assert found["other"] == "PyQt5" and found["other_installed"], found


def test_no_messages_or_stray_windows_on_success(main_run) -> None:
    result = main_run[0].result
    assert result["records"]["message_count"] == 0, result["records"]["messages"]
    assert result["unexpected_windows"] == []


# -- results, pixel for pixel -----------------------------------------------------------------


def test_rgba8_dialog_layer_matches_cli(main_run, images: Images) -> None:
    run, out, _, _ = main_run
    records = run.result["records"]
    shown = records["dialog_first_chosen"]  # MODEL's purpose chosen: its list holds MODEL
    assert MODEL in shown["models"] and shown["note"] == "", shown
    before, after = records["rgba8_before"], records["rgba8"]
    height, width = CROP
    assert before["size"] == [width, height]
    assert after["size"] == [width * 4, height * 4]
    assert after["resolution"] == before["resolution"]
    assert after["colour"] == before["colour"]
    assert after["active_colour"] == before["colour"]
    assert after["layers"] == [
        ["Under", "paintlayer", True],
        ["Background", "paintlayer", False],
        ["Background (Real-ESRGAN x4)", "paintlayer", True],
        ["Over", "paintlayer", True],
    ]
    reference = _read(images.references["rgba8"])
    _assert_same_image(_read(out / "rgba8.png"), reference)
    layer = _raw(out / "rgba8.raw", (height * 4, width * 4, 4), "u1")
    np.testing.assert_array_equal(_bgra_to_rgba(layer), reference)


def test_progress_dialog_runs_while_krita_stays_responsive(main_run) -> None:
    records = main_run[0].result["records"]
    progress = records["rgba8_progress"]
    # The robot is a timer in Krita's event loop: it ticking during the upscale means Krita
    # kept handling events; the dialog showed tiles counting up.
    assert progress["ticks"] >= 3, progress
    assert any(label.startswith("Upscaling with Real-ESRGAN: tile ") for label in
               progress["labels"]), progress
    assert max(progress["values"]) >= 1, progress
    assert records["rgba8_dialog_answered"]


def test_rgba16_shortcut_upscale_again_matches_cli(main_run, images: Images) -> None:
    run, out, _, _ = main_run
    records = run.result["records"]
    before, after = records["rgba16_before"], records["rgba16"]
    assert before["colour"] == ["RGBA", "U16", "Adobe RGB (1998)"]
    assert after["colour"] == before["colour"]
    assert after["layers"] == [["Background", "paintlayer", False],
                               ["Background (Real-ESRGAN x4)", "paintlayer", True]]
    height, width = CROP
    reference = _read(images.references["rgba16"])
    assert reference.dtype == np.uint16
    _assert_same_image(_read(out / "rgba16.png"), reference)
    layer = _raw(out / "rgba16.raw", (height * 4, width * 4, 4), "<u2")
    np.testing.assert_array_equal(_bgra_to_rgba(layer), reference)


@pytest.mark.parametrize(("key", "dtype"), [("gray8", "u1"), ("gray16", "<u2")])
def test_gray_canvas_matches_cli(main_run, images: Images, key: str, dtype: str) -> None:
    run, out, _, _ = main_run
    records = run.result["records"]
    before, after = records[f"{key}_before"], records[key]
    assert after["colour"] == before["colour"] and before["colour"][0] == "GRAYA"
    height, width = CROP
    assert after["size"] == [width * 2, height * 2]
    # The whole visible canvas: the result goes on top, named after it, the layers that made
    # the canvas are hidden.
    assert after["layers"] == [["Background", "paintlayer", False],
                               ["Visible (Real-ESRGAN x2)", "paintlayer", True]]
    reference = _read(images.references[key])[..., 0]
    exported = _read(out / f"{key}.png")
    assert exported.shape[2] == 2
    np.testing.assert_array_equal(exported[..., 0], reference)
    assert (exported[..., 1] == np.iinfo(reference.dtype).max).all()
    layer = _raw(out / f"{key}.raw", (height * 2, width * 2, 2), dtype)
    np.testing.assert_array_equal(layer[..., 0], reference)


@pytest.fixture(scope="module")
def float_references(main_run, tmp_path_factory) -> dict[str, np.ndarray]:
    """``realscale upscale`` on exactly the float pixels the Krita documents held (written
    as float TIFFs from the layers' own bytes)."""
    from realscale.formats import write_image

    _run, out, _, _ = main_run
    root = tmp_path_factory.mktemp("krita-float")
    height, width = CROP
    files = []
    for depth, dtype in (("f32", "<f4"), ("f16", "<f2")):
        pixels = _raw(out / f"rgba_{depth}_input.raw", (height, width, 4), dtype)
        files.append(root / f"{depth}.tif")
        write_image(files[-1], pixels.astype(np.float32))
    (root / "out").mkdir()
    _cli_upscale(files, root / "out", 4)
    return {depth: _read(root / "out" / f"{depth}.tif") for depth in ("f32", "f16")}


@pytest.mark.parametrize(("depth", "dtype"), [("f32", "<f4"), ("f16", "<f2")])
def test_float_rgba_through_function_api_matches_cli(main_run, float_references, images: Images,
                                                     depth: str, dtype: str) -> None:
    run, out, _, _ = main_run
    after = run.result["records"][f"rgba_{depth}"]
    assert after["colour"][:2] == ["RGBA", depth.upper()]
    assert after["colour"][2] == run.result["records"]["rgba8_before"]["colour"][2]
    assert after["layers"] == [["Background", "paintlayer", False],
                               ["Background (Real-ESRGAN x4)", "paintlayer", True]]
    height, width = CROP
    # The converted document holds the 8-bit crop (as Krita converts it): R, G, B, A order.
    source = _raw(out / f"rgba_{depth}_input.raw", (height, width, 4), dtype)
    crop = _read(images.inputs["rgba8"]).astype(np.float32) / 255
    assert np.abs(source.astype(np.float32) - crop).max() < 2e-3
    layer = _raw(out / f"rgba_{depth}.raw", (height * 4, width * 4, 4), dtype)
    reference = float_references[depth].astype(np.dtype(dtype))
    np.testing.assert_array_equal(layer, reference)


def test_dialog_remembers_last_settings(main_run) -> None:
    """Open, choose, run, reopen: the same choices (precision included), and the time
    estimate from the last run's speed."""
    records = main_run[0].result["records"]
    chosen = records["dialog_second_chosen"]
    shown = records["dialog_remembered"]
    keys = ("model", "purpose", "scale", "target", "tile", "device", "precision")
    assert {k: shown[k] for k in keys} == {k: chosen[k] for k in keys}
    assert {k: shown[k] for k in keys if k != "purpose"} == {
        "model": MODEL, "scale": 2.0, "target": "canvas", "tile": TILE, "device": "cpu",
        "precision": "exact"}
    assert re.fullmatch(r"(under a second|about \d+ (s|min)) on this CPU "
                        r"\((from the last run|measured on a tile just now)\)",
                        shown["time_line"]), shown
    assert records["dialog_cancel_unchanged"] is True


# -- the dialog a person sees (issue 17) ----------------------------------------------------------


def _expected_groups() -> dict[str, set[str]]:
    """The catalogue's models by purpose label, as the dialog should offer them (models the
    catalogue gives no purpose go under "Other models")."""
    from realscale import catalogue

    groups: dict[str, set[str]] = {}
    for entry in catalogue.entries():
        label = getattr(entry, "purpose_label", None) or "Other models"
        groups.setdefault(label, set()).add(entry.name)
    return groups


def test_dialog_offers_catalogue_models_by_purpose(main_run) -> None:
    from realscale import catalogue

    records = main_run[0].result["records"]
    groups = records["dialog_first_groups"]
    offered = {label: {name for name, _ in entries} for label, entries in groups.items()
               if entries}
    assert offered == _expected_groups(), groups
    order = [label for label in groups if groups[label]]
    known = ["Photos and real-world images", "Anime and illustrations", "Video frames, fast"]
    assert order[: len([k for k in known if k in order])] == [k for k in known if k in order]
    assert list(groups)[-1] == "A weights file (.pth, .safetensors)"
    entries = {entry.name: entry for entry in catalogue.entries()}
    for label, items in groups.items():
        for name, text in items:
            entry = entries[name]
            assert text.startswith(f"{name}  (x{entry.scale}"), (label, text)
            # A fresh profile has nothing downloaded: every model not built in says so.
            if entry.embedded:
                assert "download" not in text, text
            else:
                assert re.search(r", download( [0-9.]+ [MG]B)?\)$", text), text
    first = records["dialog_first"]
    assert first["model"] == "realesrgan-x4plus", first  # the default, on a fresh profile
    chosen = records["dialog_first_chosen"]
    assert chosen["model"] == MODEL and chosen["models"], chosen


def test_dialog_texts_are_not_elided(main_run) -> None:
    """Qt's font metrics of every combo entry and label against its widget's width, in each
    purpose's model list, at Krita's default font."""
    records = main_run[0].result["records"]
    for key in ("dialog_first", "dialog_second", "dialog_remembered"):
        assert records[key + "_elided"] == [], (key, records[key + "_elided"])
    for key in ("dialog_first", "dialog_second"):
        assert records[key + "_chosen_elided"] == [], (key, records[key + "_chosen_elided"])


def test_dialog_size_devices_and_precision(main_run) -> None:
    """The result's size for the real layer, the worker's devices, and the precision line."""
    records = main_run[0].result["records"]
    height, width = CROP
    first, second = records["dialog_first_chosen"], records["dialog_second_chosen"]
    assert first["size_line"] == f"{width} x {height} -> {width * 4} x {height * 4} px"
    assert second["size_line"] == f"{width} x {height} -> {width * 2} x {height * 2} px"
    assert first["warning"] == "" and second["warning"] == ""
    devices = dict(first["devices"])
    assert list(devices)[0] == "auto" and devices["cpu"].startswith("CPU"), devices
    assert first["precision_note"], first
    assert not first["measuring"], "the measurement did not end within 120 s"
    # The default model's measurement, started as the dialog opened, was given up when the
    # user chose another: every measured key is the chosen model's.
    assert first["measured"] and {key[0] for key in first["measured"]} == {MODEL}, first
    assert re.fullmatch(r"((under a second|about \d+ (s|min)) on this CPU \(measured on a tile "
                        r"just now\))|known after the first run", first["time_line"]), first
# -- cancel and failures ------------------------------------------------------------------------


def test_cancel_leaves_document_unchanged(failure_run) -> None:
    cancel = failure_run.result["records"]["cancel"]
    assert cancel["progress"]["acted"], cancel
    assert cancel["unchanged"] is True
    assert cancel["messages"] == []
    assert cancel["seconds_to_stop"] < 30, cancel


def test_dead_worker_gives_one_message_and_no_change(failure_run) -> None:
    records = failure_run.result["records"]
    dead = records["dead_worker"]
    assert dead["killed"], dead
    assert dead["unchanged"] is True
    assert len(dead["messages"]) == 1 and "worker stopped" in dead["messages"][0], dead
    assert "Traceback" not in dead["messages"][0]
    restarted = records["after_restart"]
    assert restarted["messages"] == []
    assert restarted["pid"] != dead["killed"]
    assert restarted["document"]["layers"][-1] == [
        "Background (Real-ESRGAN x4)", "paintlayer", True]


@pytest.mark.parametrize("model", ["CMYKA", "LABA", "XYZA"])
def test_other_colour_models_refused(failure_run, model: str) -> None:
    outcome = failure_run.result["records"]["unsupported"][model]
    assert outcome["unchanged"] is True
    assert len(outcome["messages"]) == 1, outcome
    assert "RGB and greyscale images only" in outcome["messages"][0]
    assert "Convert Image Color Space" in outcome["messages"][0]


def test_mask_refused(failure_run) -> None:
    outcome = failure_run.result["records"]["mask"]
    assert outcome["unchanged"] is True
    assert len(outcome["messages"]) == 1 and "is a mask" in outcome["messages"][0]


def test_missing_worker_offers_setup(failure_run) -> None:
    """No worker config: the command opens the set-up dialog instead of an error; declining
    it changes nothing, writes nothing and says nothing more."""
    records = failure_run.result["records"]
    outcome = records["missing_worker"]
    assert outcome["unchanged"] is True
    assert outcome["messages"] == [], outcome
    assert outcome["setup"]["setup_shown"] >= 1, outcome
    assert "not set up yet" in outcome["setup"]["setup"]["intro"], outcome
    assert outcome["config_exists"] is False
    assert records["unexpected"] == [] and failure_run.result["unexpected_windows"] == []


# -- first use: the engine set up from inside Krita (issue 14) ----------------------------------


def _setup_run(krita: Setup, images: Images, mode: str, env: dict[str, str],
               binds: tuple[Path, ...] = (), **more: object) -> tuple:
    profile, _ = _fresh_profile(krita, f"setup-{mode}")
    folder = krita.root / f"engine-{mode}"
    config = krita.root / f"setup-{mode}-worker.json"
    params = {"rgba8": str(images.inputs["rgba8"]), "model": MODEL, "tile": TILE,
              "mode": mode, "folder": str(folder), "config": str(config), "backend": "cpu",
              **more}
    run = kh.run_scenario(profile, "first_use_setup", krita.root / f"setup-{mode}-out",
                          params=params, timeout=900 if mode == "install" else 300,
                          env={"REALSCALE_WORKER_CONFIG": str(config), **env}, binds=binds)
    assert run.result.get("ok") and run.returncode == 0, run.describe()
    return run, folder, config


def _check_setup_dialog(shown: dict) -> None:
    setup = shown["setup"]
    assert "realscale " in setup["intro"] and "not set up yet" in setup["intro"], setup
    backends = dict(setup["backend"])
    assert "cpu" in backends and "CPU (ONNX Runtime)" in backends["cpu"], backends
    assert "MB" in backends["cpu"] or "GB" in backends["cpu"], backends


def _setup_env(krita: Setup) -> tuple[dict[str, str], tuple[Path, ...]]:
    """Where the set-up looks for a Python: the one this test runs on (a chroot sees it at the
    same path; the chroots' own Pythons have no venv module), and one pip cache for all the
    runs (pip still asks the package index). In a chroot, pip gets this machine's settings
    (its pip configuration, its CA bundle, its name resolution: see
    ``krita_harness.pip_settings``), bound read-only into the run's private mount namespace,
    which ends with the run."""
    env = {"REALSCALE_SETUP_SEARCH": str(Path(sys.base_prefix) / "bin"),
           "PIP_CACHE_DIR": str(krita.root.parent / "pip-cache")}
    if krita.host.chroot is None:
        return env, ()  # Krita runs in this machine's environment, pip's settings included
    pip = kh.pip_settings(krita.root / "pip")
    return {**env, **pip.env}, pip.binds


def test_first_use_declined_changes_nothing(krita: Setup, images: Images) -> None:
    run, folder, config = _setup_run(krita, images, "decline", {})
    records = run.result["records"]
    _check_setup_dialog(records["setup"])
    assert records["setup"]["setup"]["folder"], records["setup"]
    assert records["unchanged"] is True and records["messages_at_end"] == []
    assert not config.exists() and not folder.exists()
    assert records["unexpected"] == []


def test_first_use_without_python_says_what_to_do(krita: Setup, images: Images) -> None:
    """A forced failure: no Python where the search looks. The dialog says so in one
    sentence and offers no Install; nothing changes."""
    run, folder, config = _setup_run(krita, images, "nopython",
                                     {"REALSCALE_SETUP_SEARCH": str(krita.root / "empty")})
    records = run.result["records"]
    setup = records["setup"]
    assert setup["install_enabled"] is False, setup
    assert "No Python 3.10 or newer was found" in setup["setup"]["problem"], setup
    assert records["unchanged"] is True and records["messages_at_end"] == []
    assert not config.exists() and not folder.exists()


@pytest.mark.parametrize("krita", [host for host in kh.HOSTS if host.chroot is not None],
                         ids=[host.key for host in kh.HOSTS if host.chroot is not None],
                         indirect=True)
def test_first_use_with_a_python_without_venv_says_what_to_do(krita: Setup,
                                                              images: Images) -> None:
    """A Debian user's case, real: the chroot's own /usr/bin/python3 is Debian's without
    python3-venv (Krita's packages do not pull it in). The set-up dialog names the package to
    install and offers no Install; nothing changes. Only in the chroots: this machine's Debian
    has python3-venv, so Krita 5.1 here has no such Python to find."""
    run, folder, config = _setup_run(krita, images, "novenv",
                                     {"REALSCALE_SETUP_SEARCH": "/usr/bin"})
    records = run.result["records"]
    setup = records["setup"]
    assert setup["install_enabled"] is False, setup
    problem = setup["setup"]["problem"]
    assert re.search(r"No usable Python 3\.10 or newer was found \(Python 3\.\d+\.\d+ cannot "
                     r"make virtual environments \(on Debian and Ubuntu: install the "
                     r"python3\.\d+-venv package\)\)", problem), problem
    assert records["unchanged"] is True and records["messages_at_end"] == []
    assert not config.exists() and not folder.exists()


def test_first_use_cancel_during_install_leaves_nothing(krita: Setup, images: Images) -> None:
    env, binds = _setup_env(krita)
    run, folder, config = _setup_run(krita, images, "cancel", env, binds)
    records = run.result["records"]
    _check_setup_dialog(records["setup"])
    progress = records["progress"]
    assert progress["cancelled_in"], progress
    # The search's busy dialog shows before the set-up dialog, and never again after it.
    labels = progress["labels"]
    installing = next(i for i, label in enumerate(labels) if label.startswith("Setting up"))
    assert not any(label.startswith("Looking for Python") for label in labels[installing:]), (
        progress)
    assert records["unchanged"] is True and records["messages_at_end"] == []
    assert not config.exists()
    assert not folder.exists() or not list(folder.iterdir()), list(folder.iterdir())


OTHER_PROTOCOL = 2
"""The protocol the installed engine is made to speak before the update is offered."""


@pytest.fixture(scope="module")
def first_use(krita: Setup, images: Images) -> dict:
    """The real first use, then the engine of another protocol, in one Krita run: the set-up
    installs the plug-in zip's wheel into a fresh environment (ONNX Runtime on the CPU, the
    dependencies from the package index), the upscale goes on, the engine dialog shows it;
    then the engine is made to speak another protocol and Upscale Again runs on a second copy
    of the image (the update offered, accepted, run, and the upscale done). In a chroot pip
    runs with this machine's settings bound in (``_setup_env``)."""
    again = krita.root / "rgba8-again.png"
    again.write_bytes(images.inputs["rgba8"].read_bytes())
    env, binds = _setup_env(krita)
    started = time.monotonic()
    run, folder, config = _setup_run(krita, images, "install", env, binds,
                                     other_protocol=OTHER_PROTOCOL, rgba8_again=str(again))
    print(f"\n[{krita.host.key}] first use with install and update: "
          f"{time.monotonic() - started:.0f} s of Krita; {_job_times(krita.root)}",
          file=sys.stderr)
    return {"run": run, "folder": folder, "config": config,
            "out": krita.root / "setup-install-out"}


def _job_times(root: Path) -> str:
    """How long each set-up job of the install run took, from the jobs' own logs (their
    "== Done (N s)" line): a figure for the report, not a check."""
    times = []
    for log in sorted((root / "setup-install").rglob("*.log"), key=lambda p: p.stat().st_mtime):
        text = log.read_text(encoding="utf-8", errors="replace")
        first = text.split(",", 1)[0]
        done = re.findall(r"(?m)^== Done \(([0-9.]+) s\)$", text)
        if first.startswith("realscale ") and done:
            times.append(f"{first.split()[1]} {done[-1]} s")
    return ", ".join(times) or "no job logs"


def test_first_use_installs_engine_then_upscales(krita: Setup, images: Images,
                                                 first_use: dict) -> None:
    """The real install (see ``first_use``), in every release: the phases shown, the config
    written only once the engine answered, the upscale the user asked for done by it (ONNX
    Runtime in fp32), and the engine dialog showing it."""
    folder, config = first_use["folder"], first_use["config"]
    records = first_use["run"].result["records"]
    _check_setup_dialog(records["setup"])
    labels = " | ".join(records["progress"]["labels"])
    for phase in ("Making the environment", "Installing", "Checking the engine"):
        assert phase in labels, labels
    assert config.exists(), records
    assert records["messages_at_end"] == [], records["messages_at_end"]
    height, width = CROP
    assert records["document"]["size"] == [width * 4, height * 4]
    assert records["document"]["layers"][-1] == ["Background (Real-ESRGAN x4)", "paintlayer",
                                                 True]
    layer = _raw(first_use["out"] / "rgba8.raw", (height * 4, width * 4, 4), "u1")
    # The engine set up is the torch-free one: compare with the CLI on ONNX Runtime in fp32
    # (the same package from the same index; within 1/255 allows another onnxruntime build).
    out = krita.root / "setup-install-reference"
    out.mkdir(exist_ok=True)
    _cli_upscale([images.inputs["rgba8"]], out, 4, "fp32", "onnxruntime")
    reference = _read(out / "rgba8.png").astype(np.int16)
    difference = np.abs(_bgra_to_rgba(layer).astype(np.int16) - reference)
    visible = reference[..., 3] > 0
    assert difference[..., 3].max() <= 1 and difference[visible].max() <= 1, (
        difference[..., 3].max(), difference[visible].max())
    engine = records["engine"]
    assert engine["fields"]["folder"] == str(folder), engine
    assert engine["fields"]["backend"] == "cpu" and engine["fields"]["version"] != "-", engine
    assert engine["buttons"] == {"update": True, "remove": True, "setup": False}, engine
    assert records["envs_before_update"] and all(
        name.startswith(f"env-{engine['fields']['version']}-")
        for name in records["envs_before_update"]), records["envs_before_update"]


def test_engine_of_another_protocol_offers_the_update(krita: Setup, first_use: dict) -> None:
    """Issue 14.3: an engine that speaks another protocol is no error box but the offer to
    update it; accepted, the update runs behind its progress dialog (a new environment, the
    old one gone, the config pointing at the new one) and the upscale then runs, giving the
    same pixels as the engine before it."""
    folder, config = first_use["folder"], first_use["config"]
    records = first_use["run"].result["records"]
    assert records["patched"], "no PROTOCOL_VERSION found in the installed engine"
    offer = records["offer"]
    assert offer.get("text"), ("no update offered", records.get("messages_after_update"))
    assert f"speaks protocol {OTHER_PROTOCOL} and this plug-in speaks 1" in offer["text"], offer
    assert offer["text"].startswith("The engine (realscale ") and str(folder) in offer["text"]
    assert offer["buttons"] == ["Cancel", "Update the engine"], offer
    labels = records["update_progress"]["labels"]
    assert any(label.startswith("Asking the engine") for label in labels), labels
    updating = " | ".join(labels)
    for phase in ("Making the environment", "Installing", "Checking the engine"):
        assert phase in updating, labels
    assert records["messages_after_update"] == [], records["messages_after_update"]
    before, after = records["envs_before_update"], records["envs_after_update"]
    assert len(after) == 1 and after != before, (before, after)
    python = json.loads(config.read_text())["python"]
    assert python.startswith(str(folder / after[0])), python
    height, width = CROP
    assert records["again_document"]["layers"][-1] == [
        "Background (Real-ESRGAN x4)", "paintlayer", True], records["again_document"]
    first = _raw(first_use["out"] / "rgba8.raw", (height * 4, width * 4, 4), "u1")
    updated = _raw(first_use["out"] / "rgba8-again.raw", (height * 4, width * 4, 4), "u1")
    np.testing.assert_array_equal(updated, first)


# -- a plug-in folder copied without its vendored modules --------------------------------------


def test_plugin_without_realscale_wire_says_reinstall(krita: Setup, images: Images) -> None:
    """The zip installed, then realscale_wire.py deleted (a folder copied by hand without
    it): each command gives one message saying the plug-in is incomplete and how to reinstall
    it, never a traceback; the image is unchanged."""
    profile, _ = _fresh_profile(krita, "incomplete")
    (profile.resources / "pykrita" / "realscale" / "realscale_wire.py").unlink()
    run = kh.run_scenario(profile, "incomplete_plugin", krita.root / "incomplete-out",
                          params={"rgba8": str(images.inputs["rgba8"])},
                          env={"REALSCALE_WORKER_CONFIG": str(krita.worker_config)})
    assert run.result.get("ok") and run.returncode == 0, run.describe()
    records = run.result["records"]
    expected = ("The realscale plug-in is incomplete (realscale_wire.py is missing from its "
                "folder): reinstall it from the release zip (`realscale package krita`) or "
                "with `realscale install krita`.")
    assert records["messages"] == {name: [expected] for name in (
        "realscale_upscale", "realscale_upscale_again", "realscale_engine")}, records
    assert records["unchanged"] is True and records["unexpected"] == []
    assert "Traceback" not in run.log, run.log[-3000:]


# -- installed by the command line -------------------------------------------------------------


def test_realscale_install_krita(krita: Setup, images: Images) -> None:
    """``realscale install krita`` into a fresh profile: enabled, worker configured, the
    shortcut upscales, same pixels as the CLI."""
    profile = kh.clone_profile(krita.warm, krita.root / "installed")
    done = kh.cli_install(profile)
    assert done.returncode == 0, done.stderr
    pykrita = profile.resources / "pykrita"
    assert (pykrita / "realscale" / "realscale_client.py").is_file()
    assert "enable_realscale=true" in profile.kritarc.read_text()
    config = json.loads((profile.config / "realscale" / "worker.json").read_text())
    assert config["version"] == 1 and config["python"]
    params = {"rgba8": str(images.inputs["rgba8"]), "model": MODEL, "tile": TILE}
    run = kh.run_scenario(profile, "installed_by_cli", krita.root / "installed-out",
                          params=params)  # no REALSCALE_WORKER_CONFIG: the per-user config
    assert run.result.get("ok") and run.returncode == 0, run.describe()
    records = run.result["records"]
    assert records["shortcuts"] == {"realscale_upscale": "Ctrl+Alt+U",
                                    "realscale_upscale_again": "Ctrl+Alt+Shift+U"}
    assert {"realscale_upscale", "realscale_upscale_again"} <= set(records["menus"]["image"])
    assert records["message_count"] == 0, records["messages"]
    expected = "PyQt6" if krita.host.qt_major == 6 else "PyQt5"
    assert records["bindings"]["loaded"] == [expected], records["bindings"]
    height, width = CROP
    layer = _raw(krita.root / "installed-out" / "rgba8.raw", (height * 4, width * 4, 4), "u1")
    np.testing.assert_array_equal(_bgra_to_rgba(layer), _read(images.references["rgba8"]))
