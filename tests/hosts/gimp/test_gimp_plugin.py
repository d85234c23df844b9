"""plug-in-realscale-upscale in the real GIMP 3.0.4 (Debian 13) and GIMP 3.2.6 (Debian sid),
gimp-console batch runs in the chroots of ``scripts/host-chroot.sh``.

Every check runs in both releases. Real images from tests/data, cropped small (2 CPU cores):
8-bit RGBA, 16-bit RGBA with its own ICC profile, 8-bit grey, grey with a grey ICC profile.
Each is upscaled by the plug-in through GIMP's PDB and by ``realscale upscale`` with the same
model, scale and tile; the new layer's stored values and GIMP's PNG export must equal the
command's output exactly. The same images converted in GIMP to linear float, half, linear u32
and indexed check the other precisions; errors (unknown model, no layer, no worker) must leave
the image as it was. A user's own GIMP folders: ``realscale install gimp`` before GIMP ever
started (GIMP 3.2 copies GIMP/3.0 on its first start), and for a user who already runs that
GIMP; ``realscale uninstall gimp`` takes back every copy. GIMP 3.2 only: the source may be a
vector layer or a link layer; the result is a new raster layer with the exact values of
``realscale upscale`` on what GIMP renders. The worker runs outside the chroot on 127.0.0.1
(the chroot cannot see this environment's torch). The dialogs run on Xvfb: the choices, the
result size and time, the warnings; first use from the package zip (the engine set up with
pip from the zip's wheel, then the upscale); that engine made to speak protocol 2 (its update
offered and made, then the upscale); and a plug-in folder without realscale_wire.py.

The chroots are built on first use and cached (a few minutes each; parallel runs share one
build); the tests skip, saying why, only where they cannot be built (no root, no debootstrap,
no mirror), and fail instead when REALSCALE_REQUIRE_GIMP=1 (CI). Each GIMP is started about
ten times in all (work is shared between the tests through ``Runs``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gimp_host import (
    EXACT_ENV,
    GIMPS,
    REPO,
    GimpSession,
    TcpWorker,
    Xvfb,
    build_chroot,
    closed_port,
)
from PIL import Image

from helpers import data_file

FAST = "realesr-animevideov3"  # compact x4 model: quick on a CPU
PROCEDURE_ARGS = ["run-mode", "image", "drawables", "model", "scale", "tile", "device",
                  "precision"]
CHOICES = ("model", "device", "precision")
PURPOSE_LABELS = {"photo": "Photos and real-world images", "anime": "Anime and illustrations",
                  "video": "Video frames, fast"}
HOSTS = {host.version: host for host in GIMPS}
PLUGIN_FILE = Path("realscale-upscale") / "realscale-upscale.py"

# name: source file, crop (top, left, height, width), model, scale, tile, raw babl format.
# The crops hold every kind of pixel: transparent, semi-transparent and opaque, edges.
IMAGES = {
    "rgba8": ("children-alpha.png", (136, 312, 32, 32), FAST, 4.0, 16, "native"),
    "rgba16": ("tree_alpha_16bit.png", (96, 8, 32, 32), FAST, 4.0, 0, "native"),
    "gray8": ("00017_gray.png", (150, 200, 32, 40), FAST, 2.0, 24, "native"),
    # Grey with its own (grey) ICC profile, from the JPEG sample, cropped into a PNG.
    "gray8-icc": ("wolf_gray.jpg", (100, 150, 24, 24), FAST, 3.0, 0, "native"),
}
# GIMP 3.2's vector layer: an image this size with a filled ellipse (x, y, rx, ry) on a
# transparent layer of its own size, away from the corner.
VECTOR = {"size": [40, 30], "ellipse": [20, 14, 11, 7], "scale": 2.0, "tile": 0}


def _crop(name: str, out: Path) -> None:
    from realscale import formats

    source, (top, left, height, width), *_ = IMAGES[name]
    image = formats.read_image(data_file("realesrgan-inputs", source))
    pixels = np.ascontiguousarray(image.pixels[top : top + height, left : left + width])
    # Same depth, mode and ICC profile, always as PNG (lossless).
    formats.write_image(out, pixels, like=image, format="png")


def _cli_upscale(source: Path, out: Path, model: str, scale: float, tile: int) -> None:
    command = [sys.executable, "-m", "realscale", "upscale", str(source), "-o", str(out),
               "--model", model, "--scale", f"{scale:g}", "--tile", str(tile or "auto"),
               "--device", "cpu", "-q"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO / "core")
    env.update(EXACT_ENV)
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False,
                          env=env)
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stderr}"


def _read(path: Path) -> np.ndarray:
    from realscale import formats

    pixels = formats.read_image(path).pixels
    return pixels if pixels.ndim == 3 else pixels[..., None]


def _args(model: str, scale: float, tile: int) -> dict:
    return {"model": model, "scale": scale, "tile": tile, "device": "cpu"}


def _plugin_copies(gimp_dir: Path) -> dict[str, bool]:
    """Each GIMP version folder of a user, and whether the plug-in is in its plug-ins."""
    if not gimp_dir.is_dir():
        return {}
    return {entry.name: (entry / "plug-ins" / PLUGIN_FILE).is_file()
            for entry in sorted(gimp_dir.iterdir()) if entry.is_dir()}


class Runs:
    """What the tests look at, made once per module and only when a test asks: the chroots,
    the crops and the command's results, the worker, and each GIMP's runs. The GIMP sessions
    stay until the module ends, so the tests of both releases may run in any order."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._done: dict[Any, tuple[bool, Any]] = {}
        self._sessions: list[GimpSession] = []
        self._worker: TcpWorker | None = None
        self._xvfb: Xvfb | None = None

    def _once(self, key: Any, make: Callable[[], Any]) -> Any:
        if key not in self._done:
            try:
                self._done[key] = (True, make())
            except (Exception, pytest.skip.Exception, pytest.fail.Exception) as exc:
                self._done[key] = (False, exc)  # a skip or failure is not retried per test
        ok, value = self._done[key]
        if not ok:
            raise value
        return value

    def close(self) -> None:
        for session in self._sessions:
            session.close()
        if self._worker is not None:
            self._worker.close()
        if self._xvfb is not None:
            self._xvfb.close()

    def chroot(self, version: str) -> Path:
        return self._once(("chroot", version), lambda: build_chroot(HOSTS[version]))

    def session(self, version: str, install: str | None) -> GimpSession:
        session = GimpSession(self.chroot(version), HOSTS[version], install=install)
        self._sessions.append(session)
        return session

    def worker(self) -> TcpWorker:
        if self._worker is None:
            self._worker = TcpWorker()
        return self._worker

    def xvfb(self) -> Xvfb:
        if self._xvfb is None:
            self._xvfb = Xvfb()
        return self._xvfb

    def expected(self) -> dict[str, dict[str, Path]]:
        """The crops, and ``realscale upscale`` of each (the same for every GIMP)."""

        def make() -> dict[str, dict[str, Path]]:
            folder = self.tmp / "expected"
            folder.mkdir()
            crops, cli = {}, {}
            for name, (_, _, model, scale, tile, _) in IMAGES.items():
                crops[name] = folder / f"{name}.png"
                _crop(name, crops[name])
                cli[name] = folder / f"{name}-cli.png"
                _cli_upscale(crops[name], cli[name], model, scale, tile)
            return {"crops": crops, "cli": cli}

        return self._once("expected", make)

    def crop(self, session: GimpSession, name: str) -> Path:
        """The crop ``name`` copied into ``session`` (where GIMP can read it)."""
        target = session.file(f"{name}.png")
        if not target.is_file():
            shutil.copyfile(self.expected()["crops"][name], target)
        return target

    def offline(self, version: str) -> dict:
        return self._once(("offline", version), lambda: self._offline(version))

    def upscaled(self, version: str) -> dict:
        return self._once(("upscaled", version), lambda: self._upscaled(version))

    def user(self, version: str) -> dict:
        return self._once(("user", version), lambda: self._user(version))

    def dialogs(self, version: str) -> dict:
        return self._once(("dialogs", version), lambda: self._dialogs(version))

    def first_use(self, version: str) -> dict:
        return self._once(("first-use", version), lambda: self._first_use(version))

    def outdated(self, version: str) -> dict:
        return self._once(("outdated", version), lambda: self._outdated(version))

    def incomplete(self, version: str) -> dict:
        return self._once(("incomplete", version), lambda: self._incomplete(version))

    def _first_use(self, version: str) -> dict:
        """A user who unpacked the package's zip and never set realscale up: no worker
        config. The command opens the set-up dialog (driven as a user would: a folder of
        this session, the CPU backend, Install), which installs the torch-free engine from
        the zip's wheel with pip from the package index this machine's pip uses; the upscale
        then goes on. The Python found is this machine's (bound into the chroot read-only:
        Debian's Python in the chroots has no ensurepip, as without python3-venv). pip's
        cache is one folder per chroot that outlives the session (see ``_pip_settings``)."""
        gimp = self.session(version, "zip")
        base = Path(sys.base_prefix)
        env = {"REALSCALE_SETUP_SEARCH": f"{base}/bin",
               "REALSCALE_GIMP_DIALOG": gimp.inner(gimp.file("dialog.json"))}
        binds = [str(base)]
        env.update(_pip_settings(gimp, binds))
        folder = gimp.dir / "engine"
        photo = gimp.file("children-alpha.png")
        shutil.copyfile(data_file("realesrgan-inputs", "children-alpha.png"), photo)
        setup = {"folder": gimp.inner(folder), "backend": "cpu", "respond": "install",
                 "record_before": gimp.inner(gimp.file("setup-before.json")),
                 "record_after": gimp.inner(gimp.file("setup-after.json"))}
        dialog = {"setup": setup, "set": {"model": FAST, "scale": 2.0, "device": "cpu"},
                  "record": gimp.inner(gimp.file("upscale.json")), "respond": "ok"}
        engine_dialog = {"engine": {"respond": "close",
                                    "record_before": gimp.inner(gimp.file("engine.json"))}}
        results = gimp.run([
            {"name": "first-use", "input": gimp.inner(photo), "crop": [312, 136, 32, 32],
             "run_mode": "INTERACTIVE", "args": {}, "dialog": dialog},
            {"name": "engine", "procedure": "plug-in-realscale-engine",
             "run_mode": "INTERACTIVE", "input": gimp.inner(photo), "args": {},
             "dialog": engine_dialog},
        ], env=env, display=self.xvfb().display, binds=binds)
        read = {}
        for name in ("setup-before", "setup-after", "upscale", "engine"):
            path = gimp.file(f"{name}.json")
            read[name] = json.loads(path.read_text()) if path.is_file() else None
        config = gimp.dir / "config" / "realscale" / "worker.json"
        return {"results": results, "records": read, "folder": folder, "gimp": gimp,
                "config": json.loads(config.read_text()) if config.is_file() else None,
                "env": env, "binds": binds, "photo": photo}

    def _outdated(self, version: str) -> dict:
        """After first use, the engine set up there is made to speak protocol 2 (as one set up
        by another realscale release would). The next upscale, in a new GIMP: the plug-in
        offers the update (driven: Update the engine), which installs the plug-in's realscale
        from the zip's wheel into the same folder with the same backend, then the upscale
        goes on."""
        first = self.first_use(version)
        gimp, folder = first["gimp"], first["folder"]
        old = sorted(folder.glob("env-*"))
        assert len(old) == 1, f"first use left {old} in {folder}"
        _speak_protocol(old[0], 2)
        update = {"respond": "update",
                  "record_before": gimp.inner(gimp.file("update-before.json")),
                  "record_after": gimp.inner(gimp.file("update-after.json"))}
        dialog = {"update": update, "set": {"model": FAST, "scale": 2.0, "device": "cpu"},
                  "record": gimp.inner(gimp.file("after-update.json")), "respond": "ok"}
        results = gimp.run([
            {"name": "outdated", "input": gimp.inner(first["photo"]),
             "crop": [312, 136, 32, 32], "run_mode": "INTERACTIVE", "args": {},
             "dialog": dialog},
        ], env=first["env"], display=self.xvfb().display, binds=first["binds"])
        read = {}
        for name in ("update-before", "update-after", "after-update"):
            path = gimp.file(f"{name}.json")
            read[name] = json.loads(path.read_text()) if path.is_file() else None
        config = gimp.dir / "config" / "realscale" / "worker.json"
        return {"results": results, "records": read, "old": old[0], "folder": folder,
                "gimp": gimp, "envs": sorted(folder.glob("env-*")),
                "config": json.loads(config.read_text()) if config.is_file() else None}

    def _incomplete(self, version: str) -> dict:
        """The plug-in folder from the zip copied without realscale_wire.py: a script's
        upscale, the menu's upscale and the engine procedure (both interactive) each end with
        one line saying so, no traceback anywhere in GIMP's output."""
        gimp = self.session(version, "zip")
        assert gimp.plugin is not None
        (gimp.plugin / "realscale_wire.py").unlink()
        crop = gimp.file("incomplete.png")
        _crop("rgba8", crop)
        results = gimp.run([
            {"name": "script", "input": gimp.inner(crop), "args": _args(FAST, 2.0, 0)},
            {"name": "menu", "input": gimp.inner(crop), "args": {},
             "run_mode": "INTERACTIVE"},
            {"name": "engine", "procedure": "plug-in-realscale-engine",
             "run_mode": "INTERACTIVE", "input": gimp.inner(crop), "args": {}},
        ])
        return {"results": results, "folder": gimp.inner(gimp.plugin)}

    def _dialogs(self, version: str) -> dict:
        """The real dialog (``run-mode`` INTERACTIVE, GIMP on Xvfb), driven by the plug-in's
        test script: the first GIMP picks the fast model at x2 on the CPU in Fast precision
        and upscales; a second GIMP opens the dialog again (what it remembers) and upscales,
        then opens it for a scale that needs more than GIMP's tile cache (set to 16 MB in
        this session's gimprc) and for a result over the engine's limit, and cancels."""
        gimp = self.session(version, "install")
        (gimp.dir / "gimp" / "gimprc").write_text("(tile-cache-size 16M)\n")
        config = gimp.file("worker.json")
        config.write_text(json.dumps(self.worker().config))
        photo = gimp.file("children-alpha.png")
        shutil.copyfile(data_file("realesrgan-inputs", "children-alpha.png"), photo)

        def case(name: str, dialog: dict, **more: Any) -> dict:
            dialog = {"record": gimp.inner(gimp.file(f"{name}.json")), "respond": "cancel",
                      **dialog}
            return {"name": name, "input": gimp.inner(photo), "crop": [312, 136, 96, 96],
                    "run_mode": "INTERACTIVE", "args": {}, "dialog": dialog, **more}

        env = {"REALSCALE_WORKER_CONFIG": gimp.inner(config),
               "REALSCALE_GIMP_DIALOG": gimp.inner(gimp.file("dialog.json"))}
        display = self.xvfb().display
        chosen = {"model": FAST, "scale": 2.0, "device": "cpu", "precision": "fast"}
        first = gimp.run([case("choose", {"set": chosen, "respond": "ok"})], env=env,
                         display=display)
        second = gimp.run([
            case("again", {"respond": "ok"}),
            case("large", {"set": {"scale": 16.0}}),
            {**case("too-large", {"set": {"scale": 16.0}}), "make": "blank",
             "size": [1200, 1100], "crop": None},
        ], env=env, display=display)
        records = {}
        for name in ("choose", "again", "large", "too-large"):
            path = gimp.file(f"{name}.json")
            records[name] = json.loads(path.read_text()) if path.is_file() else None
        cases = {c["name"]: c for c in first["cases"] + second["cases"]}
        return {"records": records, "cases": cases, "chosen": chosen,
                "log": first["log"] + second["log"]}

    def _offline(self, version: str) -> dict:
        """The plug-in installed from the package zip, with no worker: the per-user client
        config in the chroot (no REALSCALE_WORKER_CONFIG) names an address where nothing
        listens. Needs no worker, so registration is checked even when the worker is
        broken."""
        gimp = self.session(version, "zip")
        crop = gimp.file("offline.png")
        _crop("rgba8", crop)
        address = f"127.0.0.1:{closed_port()}"
        config = gimp.dir / "config" / "realscale" / "worker.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({"version": 1, "address": address, "token": "not-a-token"}))
        # The default model: offered however the plug-in learnt the models.
        results = gimp.run([{"name": "unreachable", "input": gimp.inner(crop),
                             "args": _args("realesrgan-x4plus", 4.0, 0)}])
        return {"results": results, "address": address}

    def _upscaled(self, version: str) -> dict:
        """One gimp-console run over every case with a live worker (the plug-in installed
        by `realscale install gimp --dest`)."""
        gimp = self.session(version, "install")
        expected = self.expected()
        config = gimp.file("worker.json")
        config.write_text(json.dumps(self.worker().config))
        trace = gimp.file("progress.txt")
        cases = []
        for name, (_, _, model, scale, tile, raw_format) in IMAGES.items():
            cases.append({
                "name": name, "input": gimp.inner(self.crop(gimp, name)),
                "args": _args(model, scale, tile),
                "raw": gimp.inner(gimp.file(f"{name}.raw")), "raw_format": raw_format,
                "export": gimp.inner(gimp.file(f"{name}-gimp.png")),
            })
        rgba8 = gimp.inner(self.crop(gimp, "rgba8"))
        gray8 = gimp.inner(self.crop(gimp, "gray8"))
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
            {"name": "no-layer", "input": rgba8, "no_drawables": True,
             "args": _args(FAST, 4.0, 0)},
        ]
        if version != "3.0":  # vector and link layers are new in GIMP 3.2
            cases += [
                {"name": "vector", "make": "vector", **VECTOR,
                 "args": _args(FAST, VECTOR["scale"], VECTOR["tile"]),
                 "source_raw": gimp.inner(gimp.file("vector-source.raw")),
                 "raw": gimp.inner(gimp.file("vector.raw")), "raw_format": "R'G'B'A u8"},
                # A link layer to the rgba8 crop, upscaled exactly as the rgba8 case.
                {"name": "link", "make": "link", "input": rgba8, "size": [32, 32],
                 "args": _args(FAST, 4.0, 16), "raw": gimp.inner(gimp.file("link.raw")),
                 "raw_format": "native"},
            ]
        results = gimp.run(cases, env={"REALSCALE_WORKER_CONFIG": gimp.inner(config),
                                       "REALSCALE_GIMP_PROGRESS_TRACE": gimp.inner(trace)})
        assert results["registered"], (
            f"the plug-in did not register in GIMP {version}:\n{results['log'][-3000:]}")
        by_name = {case["name"]: case for case in results["cases"]}
        for case in results["cases"]:
            assert "driver_error" not in case, case["driver_error"]
        cli = dict(expected["cli"])
        vector = by_name.get("vector")
        if vector is not None and vector.get("status") == "success":
            # What GIMP rendered for the vector layer, upscaled by the command.
            width, height = vector["before"]["layers"][0]["width"], vector["before"][
                "layers"][0]["height"]
            source = np.fromfile(gimp.file("vector-source.raw"), dtype=np.uint8)
            rendered = gimp.file("vector-source.png")
            Image.fromarray(source.reshape(height, width, 4), "RGBA").save(rendered)
            cli["vector"] = gimp.file("vector-cli.png")
            _cli_upscale(rendered, cli["vector"], FAST, VECTOR["scale"], VECTOR["tile"])
        return {"results": results, "cases": by_name, "cli": cli, "gimp": gimp,
                "progress": trace.read_text() if trace.is_file() else ""}

    def _user(self, version: str) -> dict:
        """A user's own folders (no GIMP3_DIRECTORY): `realscale install gimp` before GIMP
        ever started, GIMP's first start, `realscale uninstall gimp`; then, for the user who
        now runs this GIMP, `realscale install gimp` again, GIMP, and uninstall. Each GIMP
        run upscales the rgba8 crop through the worker."""
        gimp = self.session(version, None)
        gimp_dir = gimp.dir / "config" / "GIMP"
        worker_json = gimp.dir / "config" / "realscale" / "worker.json"
        tcp = gimp.file("tcp.json")
        tcp.write_text(json.dumps(self.worker().config))
        env = {"REALSCALE_WORKER_CONFIG": gimp.inner(tcp)}  # the worker out here, over TCP
        crop = gimp.inner(self.crop(gimp, "rgba8"))

        def case(name: str) -> dict:
            return {"name": name, "input": crop, "args": _args(FAST, 4.0, 16),
                    "raw": gimp.inner(gimp.file(f"{name}.raw")), "raw_format": "native"}

        def installed() -> list[str]:
            records = gimp.dir / "config" / "realscale" / "installs"
            folders = [json.loads(r.read_text())["folder"] for r in records.glob("*.json")]
            return sorted(str(Path(f).relative_to(gimp_dir)) for f in folders)

        facts: dict[str, Any] = {"gimp": gimp}
        gimp.user_realscale("install", "gimp")
        facts["first_install"] = installed()
        facts["first_config"] = worker_json.is_file()
        facts["first_run"] = gimp.run([case("first")], env=env)
        facts["first_copies"] = _plugin_copies(gimp_dir)
        gimp.user_realscale("uninstall", "gimp")
        facts["uninstalled_copies"] = _plugin_copies(gimp_dir)
        facts["uninstalled_config"] = worker_json.exists()
        gimp.user_realscale("install", "gimp")
        facts["second_install"] = installed()
        facts["second_run"] = gimp.run([case("second")], env=env)
        gimp.user_realscale("uninstall", "gimp")
        facts["final_copies"] = _plugin_copies(gimp_dir)
        return facts


def _speak_protocol(env: Path, version: int) -> None:
    """Make a set-up engine speak another protocol (as another realscale release would)."""
    pattern = re.compile(r"(?m)^PROTOCOL_VERSION = 1$")
    files = [p for p in env.glob("lib/python3*/site-packages/realscale/**/*.py")
             if pattern.search(p.read_text())]
    assert files, f"no PROTOCOL_VERSION = 1 in the realscale of {env}"
    for path in files:
        path.write_text(pattern.sub(f"PROTOCOL_VERSION = {version}", path.read_text()))
    for cached in env.glob("lib/python3*/site-packages/realscale/**/__pycache__"):
        shutil.rmtree(cached)


def _pip_settings(gimp: GimpSession, binds: list[str]) -> dict[str, str]:
    """This machine's pip settings for a pip inside the chroot: its config values in a
    config file of the session (files it names copied there, or bound when folders), and
    its PIP_* variables."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                            capture_output=True, text=True, check=False).stdout
    values: dict[str, str] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        values[key.split(".", 1)[1]] = value.strip().strip("'")
    env = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    values.update({k[4:].lower().replace("_", "-"): v for k, v in env.items()})
    for key in ("cert", "constraint"):
        if values.get(key) and Path(values[key]).is_file():
            copy = gimp.file(f"pip-{key}")
            shutil.copyfile(values[key], copy)
            values[key] = gimp.inner(copy)
    for folder in values.get("find-links", "").split():
        if Path(folder).is_dir():
            binds.append(folder)
    # pip's cache outlives the session, one per chroot, as a user's own cache does: the
    # downloads are made once, and later set-ups install from the cache.
    cache = gimp.root / "tmp" / "realscale-pip-cache"
    cache.mkdir(exist_ok=True)
    values["cache-dir"] = gimp.inner(cache)
    config = gimp.file("pip.conf")
    config.write_text("[global]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return {"PIP_CONFIG_FILE": gimp.inner(config)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    made = Runs(tmp_path_factory.mktemp("gimp-runs"))
    yield made
    made.close()


@pytest.fixture(params=list(HOSTS))
def version(request: pytest.FixtureRequest) -> str:
    """The GIMP release a test runs in: every check runs in each."""
    return request.param


@pytest.fixture
def offline(runs: Runs, version: str) -> dict:
    return runs.offline(version)


@pytest.fixture
def upscaled(runs: Runs, version: str) -> dict:
    return runs.upscaled(version)


@pytest.fixture
def user(runs: Runs, version: str) -> dict:
    return runs.user(version)


def _case(upscaled: dict, name: str) -> dict:
    case = upscaled["cases"][name]
    assert case["status"] == "success", (
        f"{name}: {case['status']}: {case['message']}\n{upscaled['results']['log'][-3000:]}")
    return case


def _raw(gimp: GimpSession, name: str, dtype, shape) -> np.ndarray:
    data = np.fromfile(gimp.file(f"{name}.raw"), dtype=dtype)
    return data.reshape(shape)


def _assert_same(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    assert diff.max() == 0, (
        f"{what} differs from `realscale upscale` at {int((diff > 0).sum())} values, by up "
        f"to {int(diff.max())}")


def test_procedure_registers(offline, version):
    results = offline["results"]
    assert results["gimp_version"].startswith(f"{version}."), results["gimp_version"]
    assert results["registered"], "lookup_procedure('plug-in-realscale-upscale') is None"
    proc = results["procedure"]
    assert proc["menu_label"] == "Upscale with Real-ESRGAN..."
    assert proc["menu_paths"] == ["<Image>/Filters/Enhance"]
    assert [a["name"] for a in proc["arguments"]] == PROCEDURE_ARGS
    args = {a["name"]: a for a in proc["arguments"]}
    assert (args["scale"]["type"], args["tile"]["type"]) == ("gdouble", "gint")
    for name in CHOICES:  # drop-downs in the dialog; names (strings) for scripts
        assert args[name]["spec"] == "GimpParamChoice", args[name]
        assert args[name]["type"] == "gchararray", args[name]
    devices = [nick for nick, _ in args["device"]["choices"]]
    assert devices[:2] == ["auto", "cpu"] and "cuda:0" in devices and "mps" in devices
    assert args["device"]["default"] == "auto"
    assert [nick for nick, _ in args["precision"]["choices"]] == ["exact", "fast"]
    assert args["precision"]["default"] == "exact"


def _expected_model_labels() -> list[list[str]]:
    """The catalogue's models as the model argument must offer them: by purpose (photos,
    anime, video), the default first within one, each labelled with its purpose, name and
    scale, and the download's size where the weights are not shipped in a package."""
    from realscale import catalogue

    order = list(PURPOSE_LABELS)
    entries = sorted(enumerate(catalogue.entries()), key=lambda item: (
        order.index(item[1].purpose), not item[1].default, item[0]))
    expected = []
    for _, entry in entries:
        details = [f"x{entry.scale}"]
        if not entry.embedded:
            sizes = [s.size for s in entry.sources if getattr(s, "size", None)]
            details.append(f"downloads {max(1, round(sizes[0] / 1e6))} MB" if sizes
                           else "downloads on first use")
        expected.append([entry.name, f"{PURPOSE_LABELS[entry.purpose]}: {entry.name} "
                                     f"({', '.join(details)})"])
    return expected


@pytest.mark.parametrize("source", ["zip", "install"])
def test_model_choice_lists_the_catalogue_by_purpose(runs, version, source):
    # zip: the package's plug-in reads the catalogue from the wheel it carries (no worker
    # answers); install: `realscale install gimp` ships no wheel, and registration asks the
    # configured worker.
    results = (runs.offline(version) if source == "zip" else runs.upscaled(version))["results"]
    args = {a["name"]: a for a in results["procedure"]["arguments"]}
    assert args["model"]["choices"] == _expected_model_labels()
    from realscale import catalogue

    assert args["model"]["default"] == catalogue.default_name()


@pytest.mark.parametrize("name", list(IMAGES))
def test_pixels_equal_realscale_upscale(upscaled, name):
    gimp = upscaled["gimp"]
    case = _case(upscaled, name)
    expected = _read(upscaled["cli"][name])
    height, width, channels = expected.shape
    if channels == 4:  # the crop really has transparent, translucent and opaque pixels
        alpha, top = _read(gimp.file(f"{name}.png"))[..., 3], np.iinfo(expected.dtype).max
        assert (alpha == 0).any() and ((alpha > 0) & (alpha < top)).any() and (
            alpha == top).any()
    # The new layer's own stored values (its native format: no conversion at all).
    _assert_same(_raw(gimp, name, expected.dtype, expected.shape), expected,
                 f"{name}: GIMP's layer")
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
    assert new["kind"] == "Layer"
    assert after["selected"] == [new["name"]]
    assert after["dirty"], "the upscale must be an undo step"


def test_sixteen_bit_keeps_its_profile_and_precision(upscaled):
    case = _case(upscaled, "rgba16")
    # The tree image has its own ICC profile (gamma 2.2): its layer format is tied to that
    # space, and the plug-in moved the values in it, 16 bits per channel.
    assert case["before"]["precision"] == "u16-non-linear"
    assert "-space-" in case["before"]["layers"][0]["format"]
    assert case["after"]["layers"][0]["format"] == case["before"]["layers"][0]["format"]


def test_linear_float_goes_through_srgb_encoded_values(upscaled):
    case = _case(upscaled, "float-linear")
    assert case["after"]["precision"] == "float-linear"
    assert case["after"]["layers"][0]["format"] == "RGBA float"
    expected = _read(upscaled["cli"]["rgba8"]).astype(np.float64) / 255
    got = _raw(upscaled["gimp"], "float-linear", np.float32, expected.shape).astype(np.float64)
    # Same input values (8-bit in a float image); the command rounds its output to 8 bits,
    # GIMP keeps floats: half a step apart at most. Linear values would be far off.
    worst = float(np.abs(got - expected).max())
    assert worst <= 0.5 / 255 + 1e-4, f"float result differs by up to {worst * 255:.2f}/255"


def test_half_float_grey(upscaled):
    case = _case(upscaled, "half-nonlinear")
    assert case["after"]["precision"] == "half-non-linear"
    expected = _read(upscaled["cli"]["gray8"]).astype(np.float64) / 255
    got = _raw(upscaled["gimp"], "half", np.float32, expected.shape).astype(np.float64)
    worst = float(np.abs(got - expected).max())
    # The 8-bit values are stored as half floats (steps of 1/2048 near 1.0) and the result
    # is rounded to half floats again; the command's 8-bit path rounds twice (x4, then
    # resized to x2: see test_u32_linear_grey). A linear or mis-scaled transfer would be far
    # off.
    assert worst <= 1.5 / 255, f"half result differs by up to {worst * 255:.2f}/255"


def test_u32_linear_grey(upscaled):
    # 32-bit integer, linear light: travels as sRGB-encoded float32, comes back as u32.
    case = _case(upscaled, "u32-linear")
    assert case["after"]["precision"] == "u32-linear"
    expected = _read(upscaled["cli"]["gray8"]).astype(np.float64) / 255
    got = _raw(upscaled["gimp"], "u32", np.float32, expected.shape).astype(np.float64)
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


def test_unknown_model_is_refused_by_the_procedure(upscaled):
    # The model is a choice argument: GIMP itself refuses a name it does not offer, before
    # the plug-in runs.
    case = upscaled["cases"]["bad-model"]
    assert case["status"] == "refused"
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


# -- a user's own GIMP folders ----------------------------------------------------------------


def _user_run(user: dict, run: str) -> np.ndarray:
    results = user[f"{run}_run"]
    assert results["registered"], (
        f"{run} run: the plug-in did not register:\n{results['log'][-3000:]}")
    [case] = results["cases"]
    assert case["status"] == "success", f"{run} run: {case['status']}: {case['message']}"
    expected_shape = (128, 128, 4)
    return _raw(user["gimp"], run, np.uint8, expected_shape)


def test_install_before_gimp_ever_started(runs, user, version):
    # No GIMP folder yet: the 3.0 one, which GIMP 3.2 copies on its first start.
    assert user["first_install"] == ["3.0/plug-ins"]
    assert user["first_config"], "`realscale install gimp` writes the worker config"
    copies = user["first_copies"]
    assert copies == {"3.0": True, version: True}, (
        f"after GIMP {version}'s first start the plug-in is in {copies}")
    got = _user_run(user, "first")
    _assert_same(got, _read(runs.expected()["cli"]["rgba8"]), "the user's first upscale")


def test_uninstall_takes_back_every_copy(user, version):
    # Including the copy GIMP 3.2 made of GIMP/3.0; the folders install made are gone, and
    # the GIMP version folder the user runs stays.
    assert user["uninstalled_copies"] == {version: False}, user["uninstalled_copies"]
    assert not user["uninstalled_config"], "the worker config install wrote is removed"
    assert user["final_copies"] == {version: False}, user["final_copies"]


def test_user_who_already_runs_this_gimp_installs(runs, user, version):
    # The user has run GIMP (here: only this version): its folder, and no other.
    assert user["second_install"] == [f"{version}/plug-ins"]
    got = _user_run(user, "second")
    _assert_same(got, _read(runs.expected()["cli"]["rgba8"]), "the user's upscale")


# -- GIMP 3.2: vector and link layers ----------------------------------------------------------


@pytest.fixture
def upscaled_32(runs: Runs) -> dict:
    return runs.upscaled("3.2")


def test_vector_layer_becomes_an_upscaled_raster_layer(upscaled_32):
    case = _case(upscaled_32, "vector")
    source = case["before"]["layers"][0]
    assert source["kind"] == "VectorLayer"
    new, kept = case["after"]["layers"]
    assert new["kind"] == "Layer" and kept["kind"] == "VectorLayer"
    assert new["visible"] and not kept["visible"]
    scale = VECTOR["scale"]
    assert (new["width"], new["height"]) == (source["width"] * scale, source["height"] * scale)
    assert new["offsets"] == [round(o * scale) for o in source["offsets"]]
    assert source["offsets"] != [0, 0], "the ellipse's layer is away from the corner"
    # The rendering really has transparent, antialiased and opaque pixels of the fill.
    rendered = _read(upscaled_32["gimp"].file("vector-source.png"))
    alpha = rendered[..., 3]
    assert (alpha == 0).any() and ((alpha > 0) & (alpha < 255)).any() and (alpha == 255).any()
    expected = _read(upscaled_32["cli"]["vector"])
    assert expected.shape == (new["height"], new["width"], 4)
    got = _raw(upscaled_32["gimp"], "vector", np.uint8, expected.shape)
    _assert_same(got, expected, "the upscaled vector layer")


def test_link_layer_becomes_an_upscaled_raster_layer(upscaled_32):
    case = _case(upscaled_32, "link")
    assert case["before"]["layers"][0]["kind"] == "LinkLayer"
    new, kept = case["after"]["layers"]
    assert new["kind"] == "Layer" and kept["kind"] == "LinkLayer"
    assert new["visible"] and not kept["visible"]
    expected = _read(upscaled_32["cli"]["rgba8"])
    got = _raw(upscaled_32["gimp"], "link", np.uint8, expected.shape)
    _assert_same(got, expected, "the upscaled link layer (to the rgba8 crop)")


# -- the dialog ---------------------------------------------------------------------------------


@pytest.fixture
def dialogs(runs: Runs, version: str) -> dict:
    return runs.dialogs(version)


def _record(dialogs: dict, name: str) -> dict:
    record = dialogs["records"][name]
    assert record is not None, f"the {name!r} dialog recorded nothing:\n{dialogs['log'][-4000:]}"
    return record


def test_dialog_offers_choices_and_upscales(dialogs):
    record = _record(dialogs, "choose")
    assert record["config"] == {**record["initial"], **dialogs["chosen"]}
    assert [nick for nick, _ in record["choices"]["model"]] == [
        nick for nick, _ in _expected_model_labels()]
    assert [nick for nick, _ in record["choices"]["precision"]] == ["exact", "fast"]
    case = dialogs["cases"]["choose"]
    assert case["status"] == "success", case
    new = case["after"]["layers"][0]
    assert (new["width"], new["height"]) == (192, 192)


def test_dialog_shows_the_result_size_and_time(dialogs):
    record = _record(dialogs, "choose")
    labels = record["labels"]
    assert not record["measuring"], "the speed measurement did not end within 120 s"
    # The default model's measurement, started as the dialog opened, was given up when the
    # user chose another: every measured speed is the chosen model's.
    assert record["measured"] and {key.split("|")[0] for key in record["measured"]} == {
        dialogs["chosen"]["model"]}, record
    assert labels["size-info"] == "96 × 96 → 192 × 192 px"
    assert labels["warning-info"] == ""
    assert "Fast" in labels["precision-info"] and "PSNR" in labels["precision-info"]
    assert labels["estimate-info"].startswith("Time: "), labels
    # The second dialog knows the speed: measured by the engine, or the first upscale's.
    again = _record(dialogs, "again")["labels"]["estimate-info"]
    assert again.startswith("Time: ") and (
        "(speed of the last upscale)" in again or "measured just now" in again), again


def test_dialog_remembers_the_last_choices(dialogs):
    # A new GIMP: the dialog opens with what the user chose and ran in the last one.
    record = _record(dialogs, "again")
    assert {k: record["initial"][k] for k in dialogs["chosen"]} == dialogs["chosen"]
    assert dialogs["cases"]["again"]["status"] == "success"


def test_dialog_warns_before_a_result_too_large(dialogs):
    large = _record(dialogs, "large")["labels"]
    assert large["size-info"] == "96 × 96 → 1536 × 1536 px"
    assert "more than GIMP's tile cache (17 MB" in large["warning-info"], large
    too_large = _record(dialogs, "too-large")["labels"]
    assert too_large["size-info"] == "1200 × 1100 → 19200 × 17600 px"
    assert too_large["warning-info"].startswith("Too large"), too_large
    for name in ("large", "too-large"):  # cancelled: nothing changed
        case = dialogs["cases"][name]
        assert case["status"] == "cancel", case
        _assert_unchanged(case)


# -- first use: the engine set up from inside GIMP -------------------------------------------


def test_first_use_sets_up_the_engine_and_upscales(runs, version):
    facts = runs.first_use(version)
    records = facts["records"]
    log = facts["results"]["log"]
    before = records["setup-before"]
    assert before is not None, f"no set-up dialog:\n{log[-4000:]}"
    labels = before["labels"]
    assert labels["what"].startswith("realscale ") and "package index" in labels["what"]
    assert labels["python"].startswith("Python 3."), labels
    assert "MB" in labels["size"], labels
    assert before["sensitive"]["install_button"], labels["status"]
    assert records["setup-after"] is not None, f"the set-up never ended:\n{log[-4000:]}"
    config = facts["config"]
    assert config is not None, f"no worker config after the set-up:\n{log[-4000:]}"
    assert config["python"].startswith(facts["gimp"].inner(facts["folder"])), config
    [case, engine] = facts["results"]["cases"]
    assert case["status"] == "success", (case, log[-4000:])
    new = case["after"]["layers"][0]
    assert (new["width"], new["height"]) == (64, 64)
    assert records["upscale"]["labels"]["size-info"] == "32 × 32 → 64 × 64 px"
    # The engine dialog beside the command: version, location, backend.
    assert engine["status"] == "success", engine
    shown = records["engine"]["labels"]
    assert shown["backend"] == "cpu" and shown["location"] == facts["gimp"].inner(
        facts["folder"]), shown
    assert shown["version"] != "unknown", shown
    assert records["engine"]["sensitive"]["remove_button"]


def test_engine_of_another_protocol_is_updated_then_upscales(runs, version):
    facts = runs.outdated(version)
    records = facts["records"]
    log = facts["results"]["log"]
    before = records["update-before"]
    assert before is not None, f"no update offered:\n{log[-4000:]}"
    intro = before["labels"]["intro"]
    assert "speaks protocol 2 and this plug-in speaks 1" in intro, intro
    assert intro.endswith("The upscale goes on once the engine is updated."), intro
    assert before["labels"]["location"] == facts["gimp"].inner(facts["folder"]), before
    assert before["sensitive"]["update_button"], before
    after = records["update-after"]
    assert after is not None, f"the update never ended:\n{log[-4000:]}"
    # The old environment replaced by a new one in the same folder, which the config names.
    assert not facts["old"].exists(), f"{facts['old']} is still there after the update"
    [new] = facts["envs"]
    assert facts["config"]["python"] == facts["gimp"].inner(new / "bin" / "python"), facts
    [case] = facts["results"]["cases"]
    assert case["status"] == "success", (case, log[-4000:])
    layer = case["after"]["layers"][0]
    assert (layer["width"], layer["height"]) == (64, 64)
    assert records["after-update"]["labels"]["size-info"] == "32 × 32 → 64 × 64 px"


def test_plugin_without_realscale_wire_says_it_is_incomplete(runs, version):
    facts = runs.incomplete(version)
    results = facts["results"]
    assert results["registered"], results["log"][-3000:]
    reason = (f"the plug-in is incomplete: realscale_wire.py is missing from {facts['folder']}; "
              "install it again from the realscale release zip or with "
              "`realscale install gimp`")
    cases = {case["name"]: case for case in results["cases"]}
    for name in ("script", "menu"):
        assert cases[name]["status"] == "execution-error", cases[name]
        assert cases[name]["message"] == f"Real-ESRGAN upscale failed: {reason}", cases[name]
        _assert_unchanged(cases[name])
    assert cases["engine"]["status"] == "execution-error", cases["engine"]
    assert cases["engine"]["message"] == f"Real-ESRGAN engine: {reason}", cases["engine"]
    assert "Traceback" not in results["log"], results["log"][-6000:]
