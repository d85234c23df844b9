"""The wheel carries every sub-package, the catalogue and the host plug-ins."""

from __future__ import annotations

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
