"""`realscale install`, `uninstall` and `package` with manifests of our own, in a fake home."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import zipfile
from pathlib import Path

import pytest
from worker_support import REPO

from realscale.cli import main
from realscale.errors import RealscaleError
from realscale.install import host_folders, kritarc_path
from realscale.install.installer import install, package, records, set_ini_value, uninstall
from realscale.install.manifest import load_manifest

CLIENT = REPO / "plugins" / "common" / "realscale_client.py"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    """A plugins/ folder with one small plug-in per host, laid out like the real ones."""
    root = tmp_path / "plugins"
    (root / "common").mkdir(parents=True)
    shutil.copy(CLIENT, root / "common" / "realscale_client.py")
    _write(root / "gimp/realscale-upscale/realscale-upscale.py", "#!/usr/bin/env python3\n")
    _write(root / "gimp/manifest.json", json.dumps({
        "version": 1, "host": "gimp", "name": "realscale-upscale",
        "files": [{"src": "realscale-upscale/realscale-upscale.py",
                   "dest": "realscale-upscale/realscale-upscale.py", "executable": True}],
        "client_dest": "realscale-upscale/realscale_client.py"}))
    _write(root / "krita/realscale.desktop", "[Desktop Entry]\nX-KDE-Library=realscale\n")
    _write(root / "krita/realscale/__init__.py", "from .extension import *\n")
    _write(root / "krita/realscale/ui/dialog.py", "DIALOG = 1\n")
    _write(root / "krita/realscale.action", "<ActionCollection/>\n")
    _write(root / "krita/manifest.json", json.dumps({
        "version": 1, "host": "krita", "name": "realscale",
        "files": [{"src": "realscale.desktop", "dest": "realscale.desktop"},
                  {"src": "realscale/__init__.py", "dest": "realscale/__init__.py"},
                  {"src": "realscale/ui/dialog.py", "dest": "realscale/ui/dialog.py"},
                  {"src": "realscale.action", "dest": "realscale.action"}],
        "client_dest": "realscale/realscale_client.py"}))
    _write(root / "resolve/realscale_upscale.py", "print('hi')\n")
    _write(root / "resolve/manifest.json", json.dumps({
        "version": 1, "host": "resolve", "name": "realscale",
        "files": [{"src": "realscale_upscale.py", "dest": "Realscale Upscale.py"}],
        "client_dest": None}))
    return root


def _tree(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_gimp_install_and_uninstall_round_trip(home: Path, plugins: Path) -> None:
    dest = home / "somewhere" / "plug-ins"
    [report] = install("gimp", dest=dest, plugins_root=plugins)
    assert _tree(dest) == ["realscale-upscale", "realscale-upscale/realscale-upscale.py",
                           "realscale-upscale/realscale_client.py"]
    script = dest / "realscale-upscale" / "realscale-upscale.py"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755, "GIMP skips files without the run bit"
    assert (dest / "realscale-upscale/realscale_client.py").read_bytes() == CLIENT.read_bytes()

    config = home / ".config" / "realscale" / "worker.json"
    assert report.config == config
    saved = json.loads(config.read_text())
    assert saved["version"] == 1 and saved["python"] == sys.executable
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert [r["folder"] for _p, r in records("gimp")] == [str(dest)]

    removed = uninstall("gimp")
    assert len(removed) == 2
    assert not (home / "somewhere").exists() or _tree(home / "somewhere") == []
    assert not config.exists()
    assert records() == []
    with pytest.raises(RealscaleError, match="has not installed the gimp plug-in"):
        uninstall("gimp")


def test_uninstall_leaves_what_it_did_not_install(home: Path, plugins: Path) -> None:
    dest = home / "plug-ins"
    theirs = dest / "someone-elses" / "plugin.py"
    _write(theirs, "x")
    config = home / ".config" / "realscale" / "worker.json"
    before = json.dumps({"version": 1, "address": "127.0.0.1:5000", "token": "t"})
    _write(config, before)
    install("gimp", dest=dest, plugins_root=plugins)
    assert json.loads(config.read_text())["python"] == sys.executable
    # The host compiled our module, and the user dropped a file into our folder.
    _write(dest / "realscale-upscale" / "__pycache__" / "realscale_client.cpython-311.pyc", "")
    _write(dest / "realscale-upscale" / "notes.txt", "mine")
    uninstall("gimp", dest=dest)
    assert _tree(dest) == ["realscale-upscale", "realscale-upscale/notes.txt", "someone-elses",
                           "someone-elses/plugin.py"]
    assert config.read_text() == before, "the config from before is back"


def test_krita_install_enables_the_plugin_and_uninstall_restores_kritarc(
    home: Path, plugins: Path
) -> None:
    kritarc = kritarc_path()
    assert kritarc == home / ".config" / "kritarc"
    original = "[General]\nfoo=1\n\n[python]\nenable_other=true\n\n[Theme]\nTheme=Dark\n"
    _write(kritarc, original)
    [report] = install("krita", plugins_root=plugins)
    pykrita = home / ".local" / "share" / "krita" / "pykrita"
    assert report.folder == pykrita
    assert _tree(pykrita) == ["realscale", "realscale.desktop", "realscale/__init__.py",
                              "realscale/realscale_client.py", "realscale/ui",
                              "realscale/ui/dialog.py"]
    # Krita reads .action files (menus, default shortcuts) only from actions/ beside pykrita.
    actions = home / ".local" / "share" / "krita" / "actions"
    assert _tree(actions) == ["realscale.action"]
    text = kritarc.read_text()
    assert "[python]\nenable_other=true\nenable_realscale=true\n\n[Theme]" in text
    assert text.startswith("[General]\nfoo=1\n")

    # Installing again replaces the first install rather than stacking a second one.
    install("krita", plugins_root=plugins)
    assert len(records("krita")) == 1
    uninstall("krita")
    assert kritarc.read_text() == original
    assert _tree(pykrita) == []
    assert not actions.exists()


def test_ini_editing_keeps_other_lines() -> None:
    text, previous = set_ini_value("", "python", "enable_realscale", "true")
    assert (text, previous) == ("[python]\nenable_realscale=true\n", None)
    text, previous = set_ini_value("[python]\nenable_realscale=false\n", "python",
                                   "enable_realscale", "true")
    assert (text, previous) == ("[python]\nenable_realscale=true\n", "false")


def test_gimp_folders_include_the_flatpak_when_it_is_there(home: Path) -> None:
    native = home / ".config" / "GIMP" / "3.0" / "plug-ins"
    assert host_folders("gimp") == [native]
    (home / ".var" / "app" / "org.gimp.GIMP").mkdir(parents=True)
    flatpak = home / ".var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins"
    assert host_folders("gimp") == [flatpak]
    (home / ".config" / "GIMP" / "3.0").mkdir(parents=True)
    assert host_folders("gimp") == [native, flatpak]


def test_host_folders_on_windows_and_macos(home: Path) -> None:
    roaming = home / "AppData" / "Roaming"
    support = home / "Library" / "Application Support"
    assert host_folders("gimp", "win32") == [roaming / "GIMP/3.0/plug-ins"]
    assert host_folders("gimp", "darwin") == [support / "GIMP/3.0/plug-ins"]
    assert host_folders("krita", "win32") == [roaming / "krita/pykrita"]
    assert host_folders("krita", "darwin") == [support / "krita/pykrita"]
    assert host_folders("krita", "linux") == [home / ".local/share/krita/pykrita"]
    assert host_folders("resolve", "win32") == [
        roaming / "Blackmagic Design/DaVinci Resolve/Support/Fusion/Scripts/Edit"]
    assert host_folders("resolve", "darwin") == [
        support / "Blackmagic Design/DaVinci Resolve/Fusion/Scripts/Edit"]
    assert host_folders("resolve", "linux") == [
        home / ".local/share/DaVinciResolve/Fusion/Scripts/Edit"]
    assert kritarc_path("win32") == home / "AppData" / "Local" / "kritarc"
    assert kritarc_path("darwin") == home / "Library" / "Preferences" / "kritarc"


def test_package_zips_have_directory_entries_and_modes(tmp_path: Path, plugins: Path) -> None:
    krita = package("krita", tmp_path / "dist", plugins_root=plugins)
    assert krita.name == "realscale-krita-0.1.0.zip"
    with zipfile.ZipFile(krita) as archive:
        names = archive.namelist()
        # The .action file stays at the zip root: Krita's importer moves it to actions/.
        assert names == ["realscale/", "realscale/ui/", "realscale.desktop",
                         "realscale/__init__.py", "realscale/ui/dialog.py", "realscale.action",
                         "realscale/realscale_client.py"]
        assert archive.getinfo("realscale/").is_dir()
        assert archive.read("realscale/realscale_client.py") == CLIENT.read_bytes()
    again = package("krita", tmp_path / "again", plugins_root=plugins)
    assert again.read_bytes() == krita.read_bytes(), "the same sources give the same zip"

    gimp = package("gimp", tmp_path / "dist", plugins_root=plugins)
    with zipfile.ZipFile(gimp) as archive:
        info = archive.getinfo("realscale-upscale/realscale-upscale.py")
        assert stat.S_IMODE(info.external_attr >> 16) == 0o755
        assert "realscale-upscale/" in archive.namelist()


def test_manifests_are_checked(plugins: Path) -> None:
    manifest = load_manifest("krita", plugins)
    assert manifest.name == "realscale" and manifest.files[-1].source.name == CLIENT.name
    path = plugins / "gimp" / "manifest.json"
    raw = json.loads(path.read_text())
    raw["files"][0]["dest"] = "../escape.py"
    path.write_text(json.dumps(raw))
    with pytest.raises(RealscaleError, match="must stay inside the folder"):
        load_manifest("gimp", plugins)
    with pytest.raises(RealscaleError, match="is not part of this realscale"):
        load_manifest("resolve", plugins.parent / "nowhere")


def test_command_line_install_package_uninstall(
    home: Path, plugins: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "scripts"
    config = tmp_path / "cfg" / "worker.json"
    assert main(["install", "resolve", "--dest", str(dest), "--config", str(config),
                 "--plugins-root", str(plugins)]) == 0
    assert _tree(dest) == ["Realscale Upscale.py"], "client_dest null: no client vendored"
    assert json.loads(config.read_text())["python"] == sys.executable
    assert main(["package", "gimp", "krita", "-o", str(tmp_path / "zips"),
                 "--plugins-root", str(plugins)]) == 0
    assert sorted(os.listdir(tmp_path / "zips")) == ["realscale-gimp-0.1.0.zip",
                                                     "realscale-krita-0.1.0.zip"]
    assert main(["uninstall", "resolve"]) == 0
    assert not dest.exists() and not config.exists()
    assert main(["doctor"]) in (0, 1)
    out = capsys.readouterr().out
    assert "Installed the resolve plug-in" in out and "Host plug-in folders" in out


@pytest.mark.parametrize("host", ["gimp", "krita", "resolve"])
def test_the_repositorys_own_plugins_package(host: str, tmp_path: Path) -> None:
    assert (REPO / "plugins" / host / "manifest.json").is_file()
    manifest = load_manifest(host)
    with zipfile.ZipFile(package(host, tmp_path)) as archive:
        names = set(archive.namelist())
    assert {f.dest for f in manifest.files} <= names
    if host == "krita":
        assert {f"{manifest.name}/", f"{manifest.name}/__init__.py",
                f"{manifest.name}.desktop"} <= names
