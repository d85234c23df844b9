"""Run the real Krita (Debian's 5.1.5) under Xvfb with the realscale plug-in and a test driver.

Each run gets its own profile (XDG folders, HOME, TMPDIR), copied from one warmed profile so
Krita starts in about 2 s instead of 12. The realscale plug-in goes in from the zip that
``realscale package krita`` builds, through Krita's own importer code
(``plugin_importer.py`` from Krita's installation), and is enabled the way the importer's
"Enable plugins now?" answer does it. The test driver (a second, test-only pykrita plug-in in
``driver/``) runs one scenario from ``krita_scenarios.py`` and writes ``result.json``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DRIVER = HERE / "driver"
DRIVER_NAME = "realscale_testdriver"
SCENARIOS = HERE / "krita_scenarios.py"
PLUGINS = REPO / "plugins"
KRITA_IMPORTER = Path("/usr/share/krita/pykrita/plugin_importer/plugin_importer.py")
SCREEN = ("-screen", "0", "1280x1024x24")
DEPS_HINT = "install them with `bash scripts/krita-deps.sh` (Debian 12: krita, xvfb...)"


def require_krita() -> None:
    """Skip unless Krita, Xvfb and Krita's plug-in importer are installed."""
    missing = [name for name in ("krita", "Xvfb") if shutil.which(name) is None]
    if not KRITA_IMPORTER.is_file():
        missing.append(str(KRITA_IMPORTER))
    if missing:
        message = f"the real-Krita tests need {', '.join(missing)}: {DEPS_HINT}"
        if os.environ.get("REALSCALE_REQUIRE_KRITA") == "1":
            pytest.fail(message)  # CI: a host that cannot be set up is a failure
        pytest.skip(message)


def worker_python() -> str:
    """The interpreter the worker runs in: this test run's (it has torch and realscale), or
    $REALSCALE_KRITA_WORKER_PYTHON."""
    return os.environ.get("REALSCALE_KRITA_WORKER_PYTHON") or sys.executable


def core_env() -> dict[str, str]:
    """Environment for running ``python -m realscale`` from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "core")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


# -- profiles ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """One Krita user: every per-user folder lives under ``root``."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def resources(self) -> Path:
        """Krita's ``getAppDataLocation()``: pykrita/ and actions/ live here."""
        return self.data / "krita"

    @property
    def kritarc(self) -> Path:
        return self.config / "kritarc"

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("PYTHON", "QT_", "XDG_", "REALSCALE_"))}
        env.update({
            "HOME": str(self.root / "home"),
            "XDG_CONFIG_HOME": str(self.config),
            "XDG_DATA_HOME": str(self.data),
            "XDG_CACHE_HOME": str(self.root / "cache"),
            "XDG_RUNTIME_DIR": str(self.root / "runtime"),
            "TMPDIR": str(self.root / "tmp"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        })
        return env


def new_profile(root: Path) -> Profile:
    """A fresh profile with the test driver installed and enabled (nothing else)."""
    profile = Profile(root)
    for sub in ("home", "config", "data/krita/pykrita", "cache", "runtime", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "runtime").chmod(0o700)
    # Without this a second Krita hands its arguments to the first one and exits 0.
    set_ini(profile.config / "kritadisplayrc", "General", "EnableSingleApplication", "false")
    set_ini(profile.kritarc, "python", f"enable_{DRIVER_NAME}", "true")
    pykrita = profile.resources / "pykrita"
    shutil.copy2(DRIVER / f"{DRIVER_NAME}.desktop", pykrita)
    shutil.copytree(DRIVER / DRIVER_NAME, pykrita / DRIVER_NAME, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return profile


def clone_profile(warm: Profile, root: Path) -> Profile:
    """A copy of a warmed profile (Krita's resources already in place)."""
    shutil.copytree(warm.root, root, symlinks=True,
                    ignore=shutil.ignore_patterns("runtime", "tmp"))
    (root / "runtime").mkdir(mode=0o700)
    (root / "tmp").mkdir()
    return Profile(root)


def set_ini(path: Path, section: str, key: str, value: str) -> None:
    """Set ``key=value`` in ``[section]`` of a Qt/KDE INI file, keeping the other lines."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    header = f"[{section}]"
    if header not in (line.strip() for line in lines):
        lines += ([""] if lines else []) + [header, f"{key}={value}"]
    else:
        start = [line.strip() for line in lines].index(header)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")),
                   len(lines))
        for i in range(start + 1, end):
            if lines[i].partition("=")[0].strip() == key:
                lines[i] = f"{key}={value}"
                break
        else:
            lines.insert(start + 1, f"{key}={value}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- the plug-in zip and Krita's importer ----------------------------------------------------


def build_zip(output: Path) -> Path:
    """The plug-in zip, made by ``realscale package krita``."""
    output.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "realscale", "package", "krita", "--output", str(output)],
        capture_output=True, text=True, env=core_env(), cwd=REPO, timeout=120, check=False)
    zips = sorted(output.glob("*.zip"))
    assert done.returncode == 0 and len(zips) == 1, (
        f"realscale package krita failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return zips[0]


def cli_install(profile: Profile) -> subprocess.CompletedProcess:
    """``realscale install krita`` for the user ``profile`` stands for (plug-in, kritarc,
    worker config in that user's config folder)."""
    env = profile.env()
    env["PYTHONPATH"] = str(REPO / "core")
    return subprocess.run([sys.executable, "-m", "realscale", "install", "krita"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
                          check=False)


def krita_importer():
    """Krita's own plug-in importer module (standard library only), from Krita's install."""
    spec = importlib.util.spec_from_file_location("krita_plugin_importer", KRITA_IMPORTER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.i18n = str  # Krita provides i18n() as a builtin; the importer uses it for errors
    return module


def import_zip(archive: Path, profile: Profile) -> list[dict]:
    """What Tools > Scripts > Import Python Plugin from File... does with ``archive``, then
    the "Enable plugins now?" answer Yes (``enable_NAME=true`` in kritarc)."""
    importer = krita_importer()
    imported = importer.PluginImporter(str(archive), str(profile.resources),
                                       lambda plugin: True).import_all()
    for plugin in imported:
        set_ini(profile.kritarc, "python", f"enable_{plugin['name']}", "true")
    return imported


def zip_names(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as handle:
        return handle.namelist()


# -- running Krita ----------------------------------------------------------------------------


@dataclass
class Run:
    returncode: int | None
    result: dict
    log: str
    seconds: float

    def describe(self) -> str:
        tail = "\n".join(self.log.splitlines()[-60:])
        return (f"Krita exit code {self.returncode} after {self.seconds:.1f}s; "
                f"result {json.dumps(self.result, indent=1)[:4000]}\n--- Krita log tail ---\n"
                f"{tail}")


def write_worker_config(path: Path, python: str | None = None) -> Path:
    """The worker config ``realscale install`` writes, pointing at this checkout."""
    config = {"version": 1, "python": python or worker_python(),
              "pythonpath": [str(REPO / "core")]}
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def run_scenario(profile: Profile, scenario: str, out: Path, *, params: dict | None = None,
                 timeout: float = 240.0, env: dict[str, str] | None = None) -> Run:
    """Start Krita on ``profile``, run one scenario, wait for it to quit (or kill it)."""
    out.mkdir(parents=True, exist_ok=True)
    spec = {"scenarios": str(SCENARIOS), "scenario": scenario, "params": params or {},
            "out": str(out), "timeout": timeout - 15}
    spec_path = out / "scenario.json"
    spec_path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    run_env = profile.env()
    run_env["REALSCALE_KRITA_SCENARIO"] = str(spec_path)
    run_env.update(env or {})
    log_path = out / "krita.log"
    started = time.monotonic()
    with open(log_path, "wb") as log, virtual_display(log) as display:
        run_env["DISPLAY"] = display
        process = subprocess.Popen(
            ["krita", "--nosplash"], stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, env=run_env, cwd=str(profile.root / "home"),
            start_new_session=True)
        try:
            returncode: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            _kill_group(process)
    seconds = time.monotonic() - started
    result_path = out / "result.json"
    result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.exists() else {}
    if returncode is None:
        result.setdefault("failures", []).append(f"Krita did not finish within {timeout:.0f}s")
    return Run(returncode, result, log_path.read_text(encoding="utf-8", errors="replace"), seconds)


@contextlib.contextmanager
def virtual_display(log, attempts: int = 3) -> Iterator[str]:
    """An Xvfb server of our own, yielding its DISPLAY once it accepts connections.

    ``-displayfd`` makes Xvfb pick a free display number and write it when it is ready, so
    there is no race on the number and no fixed wait (``xvfb-run -a`` once handed Krita a
    display that was not up yet: "could not connect to display :100").
    """
    for attempt in range(1, attempts + 1):
        read_end, write_end = os.pipe()
        server = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_end), *SCREEN, "-nolisten", "tcp"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=(write_end,), start_new_session=True)
        os.close(write_end)
        number = _read_display_number(read_end, timeout=30.0)
        if number is not None:
            try:
                yield f":{number}"
            finally:
                _kill_group(server)
            return
        _kill_group(server)
        log.write(f"[harness] Xvfb did not start (attempt {attempt})\n".encode())
    msg = f"Xvfb did not start in {attempts} attempts; see the log"
    raise RuntimeError(msg)


def _read_display_number(fd: int, timeout: float) -> str | None:
    """The display number Xvfb writes to its -displayfd pipe, or None if it dies first."""
    import selectors

    data = b""
    with os.fdopen(fd, "rb", buffering=0) as pipe, selectors.DefaultSelector() as selector:
        selector.register(pipe, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return None
            chunk = pipe.read(64)
            if not chunk:  # Xvfb exited before it was ready
                return None
            data += chunk
    number = data.strip().decode("ascii", "replace")
    return number if number.isdigit() else None


def _kill_group(process: subprocess.Popen) -> None:
    """End whatever is left of the run: Xvfb, Krita, the worker."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
