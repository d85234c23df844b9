"""`realscale install`, `uninstall` and `package` with manifests of our own, in a fake home."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from worker_support import REPO, WORKER_PYTHON, worker_env

from realscale import __version__
from realscale.cli import main
from realscale.errors import RealscaleError
from realscale.install import host_folders, kritarc_path
from realscale.install.doctor import report
from realscale.install.files import FileWriteError, write_text
from realscale.install.installer import install, records, set_ini_value, uninstall
from realscale.install.manifest import load_manifest
from realscale.install.package import build_wheel, wheel_name
from realscale.install.package import package as build_package

CLIENT = REPO / "plugins" / "common" / "realscale_client.py"
WIRE = REPO / "core" / "realscale" / "wire.py"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """realscale's wheel, built once from this checkout (as `realscale package` does)."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def package(host: str, output: Path, *, plugins_root: Path | None = None,
            wheel: Path) -> Path:
    return build_package(host, output, plugins_root=plugins_root, wheel=wheel)


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
                           "realscale-upscale/realscale_client.py",
                           "realscale-upscale/realscale_wire.py"]
    script = dest / "realscale-upscale" / "realscale-upscale.py"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755, "GIMP skips files without the run bit"
    assert (dest / "realscale-upscale/realscale_client.py").read_bytes() == CLIENT.read_bytes()
    assert (dest / "realscale-upscale/realscale_wire.py").read_bytes() == WIRE.read_bytes()

    config = home / ".config" / "realscale" / "worker.json"
    assert report.config == config
    saved = json.loads(config.read_text())
    assert saved["version"] == 1 and saved["python"] == sys.executable
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert [r["folder"] for _p, r in records("gimp")] == [str(dest)]

    removed = uninstall("gimp")
    assert len(removed) == 3
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
                              "realscale/realscale_client.py", "realscale/realscale_wire.py",
                              "realscale/ui",
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
    # The Flatpak's GIMP 3.2 has run: its own folder, not 3.0's any more.
    (home / ".var/app/org.gimp.GIMP/config/GIMP/3.2").mkdir(parents=True)
    assert host_folders("gimp") == [native, flatpak.parent.parent / "3.2" / "plug-ins"]


def test_gimp_folders_are_every_gimp_3_version_that_exists(home: Path) -> None:
    gimp = home / ".config" / "GIMP"
    # A user who runs only GIMP 3.2: 3.2's folder, and no 3.0 folder made up.
    (gimp / "3.2").mkdir(parents=True)
    assert host_folders("gimp") == [gimp / "3.2" / "plug-ins"]
    for name in ("3.0", "3.10", "2.10", "3.2-old", "3.x"):
        (gimp / name).mkdir()
    (gimp / "3.4").write_text("a file, not a GIMP folder")
    assert host_folders("gimp") == [gimp / v / "plug-ins" for v in ("3.0", "3.2", "3.10")]
    roaming, support = home / "AppData" / "Roaming", home / "Library" / "Application Support"
    (roaming / "GIMP" / "3.2").mkdir(parents=True)
    assert host_folders("gimp", "win32") == [roaming / "GIMP/3.2/plug-ins"]
    (support / "GIMP" / "3.2").mkdir(parents=True)
    (support / "GIMP" / "3.0").mkdir(parents=True)
    assert host_folders("gimp", "darwin") == [support / "GIMP/3.0/plug-ins",
                                              support / "GIMP/3.2/plug-ins"]


def test_gimp_install_for_a_user_who_already_runs_gimp_3_2(home: Path, plugins: Path) -> None:
    gimp = home / ".config" / "GIMP"
    (gimp / "3.2" / "plug-ins").mkdir(parents=True)
    (gimp / "3.2" / "gimprc").write_text("(theme \"Dark\")\n")
    reports = install("gimp", plugins_root=plugins, write_config=False)
    assert [r.folder for r in reports] == [gimp / "3.2" / "plug-ins"]
    assert os.access(gimp / "3.2/plug-ins/realscale-upscale/realscale-upscale.py", os.X_OK)
    assert sorted(os.listdir(gimp)) == ["3.2"], "no GIMP/3.0 folder that nothing reads"
    lines: list[str] = []
    report(lines.append)
    text = "\n".join(lines)
    assert f"{gimp / '3.2' / 'plug-ins'} (exists, realscale" in text
    uninstall("gimp")
    assert _tree(gimp) == ["3.2", "3.2/gimprc", "3.2/plug-ins"]


def test_gimp_install_covers_every_version_folder(home: Path, plugins: Path) -> None:
    gimp = home / ".config" / "GIMP"
    for version in ("3.0", "3.2"):
        (gimp / version).mkdir(parents=True)
    reports = install("gimp", plugins_root=plugins, write_config=False)
    assert [r.folder for r in reports] == [gimp / "3.0/plug-ins", gimp / "3.2/plug-ins"]
    for version in ("3.0", "3.2"):
        assert (gimp / version / "plug-ins/realscale-upscale/realscale_client.py").is_file()
    assert len(records("gimp")) == 2
    uninstall("gimp")
    assert _tree(gimp) == ["3.0", "3.2"]


def _gimp_first_start(gimp: Path, old: str, new: str) -> None:
    """What a newer GIMP does on its first start: copy the older version's whole folder."""
    shutil.copytree(gimp / old, gimp / new, copy_function=shutil.copy2)
    (gimp / new / "sessionrc").write_text("(session-info)\n")


def test_gimp_uninstall_takes_back_the_copy_gimp_3_2_made(
    home: Path, plugins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALSCALE_PLUGINS_DIR", str(plugins))  # doctor reads this manifest
    gimp = home / ".config" / "GIMP"
    [first] = install("gimp", plugins_root=plugins, write_config=False)
    assert first.folder == gimp / "3.0" / "plug-ins", "no GIMP folder yet: the 3.0 one"
    _write(gimp / "3.0" / "plug-ins" / "theirs" / "theirs.py", "x")
    _gimp_first_start(gimp, "3.0", "3.2")
    lines: list[str] = []
    report(lines.append)
    assert any("3.2/plug-ins (exists, holds a copy GIMP made" in line for line in lines), lines
    removed = uninstall("gimp")
    assert gimp / "3.2/plug-ins/realscale-upscale/realscale-upscale.py" in removed
    # Ours is gone from both; what others put there and GIMP's own files stay.
    assert _tree(gimp / "3.2") == ["plug-ins", "plug-ins/theirs", "plug-ins/theirs/theirs.py",
                                   "sessionrc"]
    assert _tree(gimp / "3.0") == ["plug-ins", "plug-ins/theirs", "plug-ins/theirs/theirs.py"]


def test_gimp_uninstall_keeps_a_copy_that_was_changed(home: Path, plugins: Path) -> None:
    gimp = home / ".config" / "GIMP"
    install("gimp", plugins_root=plugins, write_config=False)
    _gimp_first_start(gimp, "3.0", "3.2")
    edited = gimp / "3.2/plug-ins/realscale-upscale/realscale-upscale.py"
    edited.write_text("#!/usr/bin/env python3\n# the user's own edit\n")
    uninstall("gimp")
    assert _tree(gimp / "3.2" / "plug-ins") == ["realscale-upscale",
                                                "realscale-upscale/realscale-upscale.py"]
    assert not (gimp / "3.0").exists(), "install made 3.0 and its parents; uninstall removed them"


def test_gimp_reinstall_after_gimp_3_2_copied_the_plugin(home: Path, plugins: Path) -> None:
    gimp = home / ".config" / "GIMP"
    install("gimp", plugins_root=plugins, write_config=False)
    _gimp_first_start(gimp, "3.0", "3.2")
    reports = install("gimp", plugins_root=plugins, write_config=False)
    assert [r.folder for r in reports] == [gimp / "3.0/plug-ins", gimp / "3.2/plug-ins"]
    assert len(records("gimp")) == 2
    uninstall("gimp")
    assert _tree(gimp / "3.2") == ["plug-ins", "sessionrc"], "nothing of ours, not even a folder"


def test_doctor_names_a_gimp_version_without_the_plugin(home: Path, plugins: Path) -> None:
    gimp = home / ".config" / "GIMP"
    (gimp / "3.0").mkdir(parents=True)
    install("gimp", plugins_root=plugins, write_config=False)
    (gimp / "3.2").mkdir()  # GIMP 3.2 started once before 3.0's folder held the plug-in
    lines: list[str] = []
    report(lines.append)
    [line] = [line for line in lines if str(gimp / "3.2" / "plug-ins") in line]
    assert "PROBLEM: the plug-in is not installed for this GIMP version; run `realscale " \
           "install gimp` again" in line
    assert any(line.strip() == "gimp     supports GIMP 3.0 and 3.2" for line in lines), lines


def test_host_folders_on_windows_and_macos(home: Path) -> None:
    roaming = home / "AppData" / "Roaming"
    support = home / "Library" / "Application Support"
    assert host_folders("gimp", "win32") == [roaming / "GIMP/3.0/plug-ins"]
    assert host_folders("gimp", "darwin") == [support / "GIMP/3.0/plug-ins"]
    assert host_folders("krita", "win32") == [roaming / "krita/pykrita"]
    assert host_folders("krita", "darwin") == [support / "krita/pykrita"]
    assert host_folders("krita", "linux") == [home / ".local/share/krita/pykrita"]
    assert host_folders("resolve", "win32") == [
        roaming / "Blackmagic Design/DaVinci Resolve/Support/Fusion"]
    assert host_folders("resolve", "darwin") == [
        support / "Blackmagic Design/DaVinci Resolve/Fusion"]
    assert host_folders("resolve", "linux") == [home / ".local/share/DaVinciResolve/Fusion"]
    assert kritarc_path("win32") == home / "AppData" / "Local" / "kritarc"
    assert kritarc_path("darwin") == home / "Library" / "Preferences" / "kritarc"


def test_package_zips_have_directory_entries_and_modes(
    tmp_path: Path, plugins: Path, wheel: Path
) -> None:
    krita = package("krita", tmp_path / "dist", plugins_root=plugins, wheel=wheel)
    assert krita.name == "realscale-krita-0.1.0.zip"
    with zipfile.ZipFile(krita) as archive:
        names = archive.namelist()
        # The .action file stays at the zip root: Krita's importer moves it to actions/.
        assert names == ["realscale/", "realscale/ui/", "realscale.desktop",
                         "realscale/__init__.py", "realscale/ui/dialog.py", "realscale.action",
                         "realscale/realscale_wire.py", "realscale/realscale_client.py",
                         f"realscale/{wheel_name()}"]
        assert archive.getinfo("realscale/").is_dir()
        assert archive.read("realscale/realscale_client.py") == CLIENT.read_bytes()
    again = package("krita", tmp_path / "again", plugins_root=plugins, wheel=wheel)
    assert again.read_bytes() == krita.read_bytes(), "the same sources give the same zip"

    gimp = package("gimp", tmp_path / "dist", plugins_root=plugins, wheel=wheel)
    with zipfile.ZipFile(gimp) as archive:
        info = archive.getinfo("realscale-upscale/realscale-upscale.py")
        assert stat.S_IMODE(info.external_attr >> 16) == 0o755
        assert "realscale-upscale/" in archive.namelist()


def test_manifests_are_checked(plugins: Path) -> None:
    manifest = load_manifest("krita", plugins)
    assert manifest.name == "realscale"
    assert [f.source for f in manifest.files[-2:]] == [WIRE, plugins / "common" / CLIENT.name]
    path = plugins / "gimp" / "manifest.json"
    raw = json.loads(path.read_text())
    raw["files"][0]["dest"] = "../escape.py"
    path.write_text(json.dumps(raw))
    with pytest.raises(RealscaleError, match="must stay inside the folder"):
        load_manifest("gimp", plugins)
    with pytest.raises(RealscaleError, match="is not part of this realscale"):
        load_manifest("resolve", plugins.parent / "nowhere")


def test_command_line_install_package_uninstall(
    home: Path, plugins: Path, tmp_path: Path, wheel: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "scripts"
    config = tmp_path / "cfg" / "worker.json"
    assert main(["install", "resolve", "--dest", str(dest), "--config", str(config),
                 "--plugins-root", str(plugins)]) == 0
    assert _tree(dest) == ["Realscale Upscale.py"], "no client_dest or wire_dest: nothing vendored"
    assert json.loads(config.read_text())["python"] == sys.executable
    assert main(["package", "gimp", "krita", "-o", str(tmp_path / "zips"),
                 "--plugins-root", str(plugins), "--wheel", str(wheel)]) == 0
    assert sorted(os.listdir(tmp_path / "zips")) == ["realscale-gimp-0.1.0.zip",
                                                     "realscale-krita-0.1.0.zip"]
    assert main(["uninstall", "resolve"]) == 0
    assert not dest.exists() and not config.exists()
    assert main(["doctor"]) in (0, 1)
    out = capsys.readouterr().out
    assert "Installed the resolve plug-in" in out and "Host plug-in folders" in out


@pytest.mark.parametrize("host", ["gimp", "krita", "resolve"])
def test_the_repositorys_own_plugins_package(host: str, tmp_path: Path, wheel: Path) -> None:
    assert (REPO / "plugins" / host / "manifest.json").is_file()
    manifest = load_manifest(host)
    with zipfile.ZipFile(package(host, tmp_path, wheel=wheel)) as archive:
        names = set(archive.namelist())
    assert {f.dest for f in manifest.files} <= names
    # The modules the plug-in vendors and realscale's wheel lie side by side.
    beside = f"{manifest.vendor_dir}/" if manifest.vendor_dir else ""
    assert {f"{beside}realscale_wire.py", f"{beside}{wheel_name()}"} <= names
    if host != "resolve":
        assert {f"{beside}realscale_client.py", f"{beside}realscale_setup.py"} <= names
    if host == "krita":
        assert {f"{manifest.name}/", f"{manifest.name}/__init__.py",
                f"{manifest.name}.desktop"} <= names


def test_the_repositorys_manifests_say_what_they_support() -> None:
    assert load_manifest("gimp").supports == "GIMP 3.0 and 3.2"
    assert (load_manifest("krita").supports or "").startswith("Krita 5.")


def test_package_prints_what_each_host_supports(
    tmp_path: Path, wheel: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["package", "gimp", "krita", "-o", str(tmp_path), "--wheel", str(wheel)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{tmp_path / 'realscale-gimp-0.1.0.zip'} (supports GIMP 3.0 and 3.2)",
        f"{tmp_path / 'realscale-krita-0.1.0.zip'} (supports {load_manifest('krita').supports})",
    ]


def test_a_manifests_supports_must_be_text(plugins: Path) -> None:
    path = plugins / "gimp" / "manifest.json"
    raw = json.loads(path.read_text())
    raw["supports"] = ["3.0", "3.2"]
    path.write_text(json.dumps(raw))
    with pytest.raises(RealscaleError, match="'supports' must be a non-empty string"):
        load_manifest("gimp", plugins)


# -- files realscale writes: never through someone else's file or link (issue 12, defect 9) --


def _hello(proc: subprocess.Popen[bytes], timeout: float = 120) -> dict[str, str]:
    """The worker's first stdout line (its address and token), or fail with its stderr."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if selector.select(timeout):
            line = proc.stdout.readline()
            if line:
                return json.loads(line)
    proc.kill()
    _out, err = proc.communicate()
    pytest.fail(f"the worker announced nothing; stderr:\n{err.decode(errors='replace')}")


@pytest.mark.parametrize("planted", ["file", "symlink"])
def test_config_out_never_writes_through_a_planted_temporary_file(
    tmp_path: Path, planted: str
) -> None:
    config = tmp_path / "token.json"
    victim = tmp_path / "elsewhere.txt"
    victim.write_text("the victim's file\n")
    victim.chmod(0o644)
    # The shell's pid becomes the worker's (exec keeps it): the temporary name that
    # --config-out used before (FILE.<pid>.tmp) can be planted before the worker starts.
    script = 'read go && exec "$0" -m realscale worker --listen 127.0.0.1:0 --config-out "$1"'
    proc = subprocess.Popen(["sh", "-c", script, WORKER_PYTHON, str(config)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=worker_env(), cwd=tmp_path)
    assert proc.stdin is not None
    trap = tmp_path / f"token.json.{proc.pid}.tmp"
    if planted == "file":
        trap.write_text("planted\n")
        trap.chmod(0o644)  # someone else's file: its mode would stay around the token
    else:
        trap.symlink_to(victim)  # would send the token into the victim's file
    try:
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        hello = _hello(proc)
        assert not config.is_symlink() and config.is_file()
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert json.loads(config.read_text())["token"] == hello["token"]
        assert victim.read_text() == "the victim's file\n"
        assert hello["token"] not in victim.read_text()
        if planted == "file":
            assert trap.read_text() == "planted\n"
            assert stat.S_IMODE(trap.stat().st_mode) == 0o644
        else:
            assert trap.is_symlink() and os.readlink(trap) == str(victim)
        assert sorted(os.listdir(tmp_path)) == sorted([config.name, victim.name, trap.name])
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_private_files_are_created_with_mode_600_from_the_start(tmp_path: Path) -> None:
    target = tmp_path / "worker.json"
    target.write_text("old\n")
    target.chmod(0o644)
    old_umask = os.umask(0)  # nothing masks a mode that was wrong at creation
    try:
        write_text(target, "secret\n", private=True)
        write_text(tmp_path / "kritarc", "[python]\n")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "secret\n"
    assert stat.S_IMODE((tmp_path / "kritarc").stat().st_mode) == 0o644
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "kritarc")
    write_text(link, "{}\n", private=True)
    assert not link.is_symlink() and link.read_text() == "{}\n"
    assert (tmp_path / "kritarc").read_text() == "[python]\n", "the link is replaced, not followed"
    assert sorted(os.listdir(tmp_path)) == ["kritarc", "link.json", "worker.json"]


def _unwritable(folder: Path, command: list[str]) -> list[str]:
    """``command`` run with ``folder`` unwritable: a read-only bind mount in a private mount
    namespace for root (whom permission bits do not stop), else mode 555."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return command
    assert shutil.which("unshare"), "root runs this test with util-linux's unshare"
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            str(folder), *command]


@pytest.mark.parametrize("where", ["read-only folder", "a file in the way"])
def test_config_out_that_cannot_be_written_is_one_line(tmp_path: Path, where: str) -> None:
    folder = tmp_path / "configs"
    command = [WORKER_PYTHON, "-m", "realscale", "worker", "--listen", "127.0.0.1:0"]
    if where == "read-only folder":
        folder.mkdir()
        config = folder / "token.json"
        command = _unwritable(folder, [*command, "--config-out", str(config)])
    else:
        folder.write_text("a file, not a folder")
        config = folder / "sub" / "token.json"
        command = [*command, "--config-out", str(config)]
    proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, env=worker_env(), check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "", "no address or token announced for a config that was not written"
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("realscale: cannot write ") and str(config) in line, line
    reason = "Read-only file system" if where == "read-only folder" else f"{folder} is not a folder"
    assert reason in line, line
    if folder.is_dir():
        assert os.listdir(folder) == [], "no config and no temporary file left"


def test_install_into_a_folder_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "plug-ins"
    folder.mkdir()
    command = _unwritable(folder, [WORKER_PYTHON, "-m", "realscale", "install", "gimp",
                                   "--dest", str(folder), "--no-config"])
    env = worker_env(REALSCALE_CONFIG_DIR=str(tmp_path / "records"))
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"realscale: cannot install the gimp plug-in into {folder} ("), line
    assert "Read-only file system" in line or "Permission denied" in line, line
    assert os.listdir(folder) == []


def test_write_text_failure_is_a_realscale_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(FileWriteError, match=r"blocker is not a folder\); choose a file"):
        write_text(tmp_path / "blocker" / "deeper" / "worker.json", "{}", private=True)
    assert issubclass(FileWriteError, RealscaleError)


# -- the protocol module every plug-in vendors, and the wheel the zips carry (issues 13, 14) --

PYTHON36 = Path.home() / ".pyenv" / "versions" / "3.6.15" / "bin" / "python3.6"
"""The oldest Python a host runs realscale_wire.py with (Resolve: 3.6 or later)."""
HOST_PYTHON = "/usr/bin/python3"
"""A Python without realscale, numpy or torch, as a host's is."""


def _run_isolated(python: str, code: str, cwd: Path, env: dict[str, str]) -> str:
    """``code`` run by ``python -I`` in ``cwd`` (no site-packages of ours, no PYTHONPATH)."""
    code = f"import sys; sys.path.insert(0, {str(cwd)!r}); {code}"
    done = subprocess.run([python, "-I", "-c", code],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("where", ["REALSCALE_CONFIG_DIR", "relative XDG_CONFIG_HOME"])
def test_resolve_install_writes_the_config_where_the_vendored_lookup_finds_it(
    home: Path, tmp_path: Path, where: str
) -> None:
    """`realscale install resolve` puts realscale_wire.py into Fusion/Modules/realscale (out
    of Resolve's Workspace > Scripts menu, which lists Fusion/Scripts), and that copy,
    run by Resolve's oldest Python in a fresh process, finds the config the install wrote:
    with $REALSCALE_CONFIG_DIR, and with a relative $XDG_CONFIG_HOME (invalid: ignored, so
    ~/.config) alike."""
    env = worker_env(HOME=str(home))
    env.pop("REALSCALE_WORKER_CONFIG", None)
    if where == "REALSCALE_CONFIG_DIR":
        env["REALSCALE_CONFIG_DIR"] = str(tmp_path / "elsewhere")
        expected = tmp_path / "elsewhere" / "worker.json"
    else:
        env.pop("REALSCALE_CONFIG_DIR", None)
        env["XDG_CONFIG_HOME"] = "relative/config"
        expected = home / ".config" / "realscale" / "worker.json"
    done = subprocess.run([WORKER_PYTHON, "-m", "realscale", "install", "resolve"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(expected.read_text())["python"] == WORKER_PYTHON
    assert not (tmp_path / "relative").exists(), "a relative XDG_CONFIG_HOME is not used"
    fusion = home / ".local/share/DaVinciResolve/Fusion"
    modules = fusion / "Modules" / "realscale"
    assert (modules / "realscale_wire.py").read_bytes() == WIRE.read_bytes()
    python = str(PYTHON36) if PYTHON36.is_file() else HOST_PYTHON
    env.pop("PYTHONPATH")
    found = _run_isolated(python, "import realscale_wire as w; c = w.read_config(); "
                          "print(w.__file__, c['_path'], c['python'], sep='\\n')", modules, env)
    assert found.splitlines() == [str(modules / "realscale_wire.py"), str(expected),
                                  WORKER_PYTHON]
    done = subprocess.run([WORKER_PYTHON, "-m", "realscale", "uninstall", "resolve"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert not expected.exists() and not fusion.exists()


def test_the_installed_client_uses_the_protocol_module_beside_it(home: Path) -> None:
    """In a host's Python (no realscale anywhere), the vendored client imports the
    realscale_wire.py installed with it: beside it (GIMP), and inside the plug-in's package
    (Krita), and speaks with it the framing the worker speaks."""
    install("gimp", write_config=False)
    install("krita", write_config=False)
    gimp = host_folders("gimp")[0] / "realscale-upscale"
    code = ("import realscale_client as c; import realscale_wire as w; "
            "print(c.wire is w, w.__file__, c.pack_json({'type': 'ping', 'id': 1}).hex())")
    same, path, frame = _run_isolated(HOST_PYTHON, code, gimp, dict(os.environ)).split()
    assert (same, path) == ("True", str(gimp / "realscale_wire.py"))
    from realscale import wire

    assert bytes.fromhex(frame) == wire.pack_json({"type": "ping", "id": 1})
    pykrita = host_folders("krita")[0]
    # The plug-in's package as Krita has it, without its __init__ (which imports krita).
    code = ("import types; p = sys.modules['realscale'] = types.ModuleType('realscale'); "
            f"p.__path__ = [{str(pykrita / 'realscale')!r}]; "
            "import realscale.realscale_client as c; print(c.wire.__name__, c.wire.__file__, "
            "'realscale_wire' in sys.modules)")
    assert _run_isolated(HOST_PYTHON, code, pykrita, dict(os.environ)).split() == [
        "realscale.realscale_wire", str(pykrita / "realscale" / "realscale_wire.py"), "False"]


def test_the_client_maps_only_error_kinds_the_worker_sends(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "plugins" / "common"))
    for name in ("realscale_client", "realscale_wire"):  # another test's copy may be cached
        monkeypatch.delitem(sys.modules, name, raising=False)
    import realscale_client

    from realscale import wire

    assert realscale_client.wire is wire, "in one process the client shares core's module"
    assert set(realscale_client._ERRORS) <= set(wire.ERROR_KINDS)
    assert "not_installed" not in wire.ERROR_KINDS


def test_the_zip_carries_realscales_wheel_which_pip_installs(tmp_path: Path) -> None:
    """`realscale package` builds realscale's wheel from this checkout (no network) and puts
    it beside the vendored modules; pip takes it, and it is the plug-in's own version."""
    assert main(["package", "gimp", "-o", str(tmp_path)]) == 0
    zip_path = tmp_path / f"realscale-gimp-{__version__}.zip"
    inner = f"realscale-upscale/{wheel_name()}"
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        archive.extract(inner, tmp_path / "unzipped")
        setup = archive.read("realscale-upscale/realscale_setup.py")
    assert {"realscale-upscale/realscale_wire.py", "realscale-upscale/realscale_client.py",
            inner} <= set(names)
    assert setup == (REPO / "plugins" / "common" / "realscale_setup.py").read_bytes()
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
         "--target", str(target), str(tmp_path / "unzipped" / inner)],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    [metadata] = target.glob("realscale-*.dist-info/METADATA")
    assert f"\nVersion: {__version__}\n" in metadata.read_text()
    assert (target / "realscale" / "wire.py").read_bytes() == WIRE.read_bytes()
    assert (target / "realscale" / "plugins_data" / "common" / "realscale_client.py").is_file()
