"""``realscale package``: the zip a user installs into a host, with realscale's own wheel in
it, so that the plug-in can set up its engine from inside the host (issue 14) with no
terminal: the vendored modules and ``realscale-VERSION-py3-none-any.whl`` side by side.

The wheel is built from this source checkout with its own build backend (setuptools), in a
separate process, without build isolation: nothing is downloaded. It is built from a fresh copy
of the sources: setuptools copies into ``build/lib`` and never deletes there, so a build in
the checkout would ship modules and plug-in files that have since been removed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from .. import __version__
from ..errors import RealscaleError
from .manifest import directories, load_manifest

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
"""Fixed timestamps: the same sources give the same zip, byte for byte."""
SOURCE_DATE_EPOCH = "315532800"
"""1980-01-01: the wheel's own timestamps, so that it too is the same from the same sources."""


def wheel_name(version: str = __version__) -> str:
    """The file name of realscale's wheel of ``version``."""
    return f"realscale-{version}-py3-none-any.whl"


def checkout_root() -> Path | None:
    """The source checkout this realscale runs from (``pyproject.toml`` beside ``core/``),
    or None when it was installed from a wheel."""
    root = Path(__file__).resolve().parents[3]
    if (root / "pyproject.toml").is_file() and (root / "core" / "realscale").is_dir():
        return root
    return None


def build_wheel(output: Path) -> Path:
    """Build realscale's wheel from this checkout into ``output``; returns its path."""
    root = checkout_root()
    if root is None:
        msg = ("this realscale was not installed from a source checkout, so it cannot build "
               "its own wheel; give one with --wheel FILE, or run `realscale package` from a "
               "checkout")
        raise RealscaleError(msg)
    output = output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    code = ("import sys, setuptools.build_meta as backend; "
            "print(backend.build_wheel(sys.argv[1]))")
    env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH)
    with tempfile.TemporaryDirectory(prefix="realscale-build-") as temp:
        sources = Path(temp) / "realscale"
        try:
            _copy_sources(root, sources)
            done = subprocess.run([sys.executable, "-c", code, str(output)], cwd=sources,
                                  env=env, capture_output=True, text=True, timeout=600,
                                  check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            msg = (f"cannot build realscale's wheel ({exc}); build it with "
                   "`pip wheel --no-deps .`")
            raise RealscaleError(msg) from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        msg = (f"cannot build realscale's wheel from {root} ({last}); is setuptools "
               "installed in this environment (pip install setuptools wheel)?")
        raise RealscaleError(msg)
    wheel = output / lines[-1].strip()
    check_wheel(wheel)
    return wheel


BUILD_SOURCES = ("pyproject.toml", "README.md", "core", "models", "plugins")
"""What the build reads: the project file, the readme it names, and the three package roots."""


def _copy_sources(root: Path, target: Path) -> None:
    """Copy what the wheel is built from, without build output, caches or compiled files."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    target.mkdir(parents=True)
    for name in BUILD_SOURCES:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore, symlinks=True)
        else:
            shutil.copy2(source, target / name)


def check_wheel(wheel: Path) -> None:
    """Refuse a file that is not realscale's wheel of this very version: the plug-in sets up
    the engine of its own version."""
    match = re.fullmatch(r"realscale-([^-]+)-py3-none-any\.whl", wheel.name)
    if match is None or not wheel.is_file():
        msg = f"{wheel} is not a realscale wheel (expected {wheel_name()})"
        raise RealscaleError(msg)
    if match[1] != __version__:
        msg = (f"{wheel.name} is realscale {match[1]}, but the plug-in is {__version__}; "
               f"use {wheel_name()}")
        raise RealscaleError(msg)


def package(host: str, output: Path, *, plugins_root: Path | None = None,
            wheel: Path | None = None) -> Path:
    """Build ``realscale-HOST-VERSION.zip`` in ``output``: the files at their ``dest`` paths,
    with an entry for every folder (Krita's importer finds nothing without them), and
    realscale's wheel (``wheel``, else built from the checkout) beside realscale_wire.py."""
    manifest = load_manifest(host, plugins_root)
    entries = [(f.dest, f.source, f.executable) for f in manifest.files]
    with tempfile.TemporaryDirectory(prefix="realscale-wheel-") as temp_dir:
        if manifest.vendor_dir is not None:
            if wheel is None:
                wheel = build_wheel(Path(temp_dir))
            check_wheel(wheel)
            dest = str(PurePosixPath(manifest.vendor_dir or ".") / wheel_name())
            entries.append((dest.removeprefix("./"), wheel, False))
        return _zip(host, output, entries)


def _zip(host: str, output: Path, entries: list[tuple[str, Path, bool]]) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    target = output / f"realscale-{host}-{__version__}.zip"
    temp = target.with_name(target.name + ".tmp")
    with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for folder in directories([dest for dest, _source, _x in entries]):
            info = zipfile.ZipInfo(folder + "/", ZIP_DATE)
            info.create_system = 3  # unix: keep the mode bits below
            info.external_attr = (0o40755 << 16) | 0x10
            archive.writestr(info, b"")
        for dest, source, executable in entries:
            info = zipfile.ZipInfo(dest, ZIP_DATE)
            info.create_system = 3
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            # A wheel is a zip already: stored as it is.
            info.compress_type = (zipfile.ZIP_STORED if dest.endswith(".whl")
                                  else zipfile.ZIP_DEFLATED)
            archive.writestr(info, source.read_bytes())
    os.replace(temp, target)
    return target
