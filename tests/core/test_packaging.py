"""The wheel carries every sub-package, the catalogue and the host plug-ins."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import REPO


def test_wheel_contents(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("realscale-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = sorted(
        str(init.parent.relative_to(REPO / "core"))
        for init in (REPO / "core" / "realscale").rglob("__init__.py")
        if "__pycache__" not in init.parts
    )
    missing = [p for p in packages if f"{p}/__init__.py" not in names]
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"
    assert "realscale/catalogue_data/catalogue.json" in names
    for manifest in sorted((REPO / "plugins").glob("*/manifest.json")):
        host = manifest.parent.name
        assert f"realscale/plugins_data/{host}/manifest.json" in names
    assert "realscale/plugins_data/common/realscale_client.py" in names
    assert "realscale/wire.py" in names, "the protocol module every plug-in vendors"
    assert not [n for n in names if "__pycache__" in n]


def test_package_wheel_leaves_out_build_leftovers(tmp_path: Path) -> None:
    """`realscale package` builds its wheel from a fresh copy of the sources: setuptools never
    deletes in build/lib, so a build in place ships files removed from the checkout since."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, checkout / name)
    for name in ("core", "models", "plugins"):
        shutil.copytree(REPO / name, checkout / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # Leftovers of an earlier build in place: a module and a plug-in file since removed.
    stale = checkout / "build" / "lib" / "realscale"
    (stale / "plugins_data" / "resolve").mkdir(parents=True)
    (stale / "removed_module.py").write_text("raise ImportError\n")
    (stale / "plugins_data" / "resolve" / "removed_script.py").write_text("")
    code = ("import sys; from pathlib import Path; "
            "from realscale.install.package import build_wheel; "
            "print(build_wheel(Path(sys.argv[1])))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")],
                            env={**os.environ, "PYTHONPATH": str(checkout / "core")},
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = Path(result.stdout.strip().splitlines()[-1])
    assert wheel.parent == tmp_path / "out"
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "realscale/plugins_data/resolve/realscale_resolve.py" in names
    assert "realscale/removed_module.py" not in names
    assert "realscale/plugins_data/resolve/removed_script.py" not in names
    assert not (checkout / "build" / "lib" / "realscale" / "wire.py").exists(), (
        "the build wrote into the checkout")
