"""Run the real Krita under Xvfb with the realscale plug-in and a test driver.

Four Krita releases, each from Debian's packages: 5.1.5 installed on this machine (Debian 12,
``scripts/krita-deps.sh``), and 5.2.9, 5.3.4 and 6.0.4 (Qt 6, PyQt6) in the cached Debian
chroots of ``scripts/host-chroot.sh`` (trixie, sid, experimental). Krita in a chroot runs in a
private mount namespace (``unshare --mount``) holding its /proc, a tmpfs /dev/shm and
bind mounts of this checkout, the worker's Python and the test's temporary folder, each at the
same path as outside: every path means the same inside and out, the plug-in starts the worker
from the config exactly as it does for a user, and the mounts vanish with the last process of
the run (a killed run leaves none behind, and nothing outside ever sees them).

Each run gets its own profile (XDG folders, HOME, TMPDIR), copied from one warmed profile so
Krita starts in about 2 s instead of 12. The realscale plug-in goes in from the zip that
``realscale package krita`` builds, through that Krita's own importer code
(``plugin_importer.py`` from its installation), and is enabled the way the importer's
"Enable plugins now?" answer does it. The test driver (a second, test-only pykrita plug-in in
``driver/``) runs one scenario from ``krita_scenarios.py`` and writes ``result.json``; the
X server is this machine's Xvfb, which Krita in a chroot reaches through its abstract socket
(the chroot shares the network namespace).
"""

from __future__ import annotations

import builtins
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
KRITA_IMPORTER = "usr/share/krita/pykrita/plugin_importer/plugin_importer.py"
"""Krita's own plug-in importer, relative to the root Krita is installed under."""
SCREEN = ("-screen", "0", "1280x1024x24", "-noreset")
"""Xvfb's screen, and -noreset. Without it Krita often exited at once with "could not connect
to display" (printed twice: it seems to close a first, short X connection before making its
main one, and a server that resets when its last client leaves refuses connections while it
resets): 13 starts in 20 on a loaded machine, none in 20 with -noreset."""
DEPS_HINT = "install them with `bash scripts/krita-deps.sh` (Debian 12: krita, xvfb...)"
CHROOT_SCRIPT = REPO / "scripts" / "host-chroot.sh"
CANNOT_BUILD = 77
"""host-chroot.sh's exit status when this machine cannot build a chroot."""
REQUIRE_ENV = "REALSCALE_REQUIRE_KRITA"
"""``1`` (CI): a Krita that cannot be set up fails the tests instead of skipping them."""


@dataclass(frozen=True)
class Host:
    """One Krita release the tests run in."""

    #: The test id: "krita5.1".
    key: str
    #: The release series ``Krita.version()`` starts with.
    series: str
    qt_major: int
    #: The host-chroot.sh name, or None for the Krita installed on this machine.
    chroot: str | None
    origin: str


HOSTS = (
    Host("krita5.1", "5.1", 5, None, "Debian 12 (bookworm), installed on this machine"),
    Host("krita5.2", "5.2", 5, "trixie", "Debian 13 (trixie) chroot"),
    Host("krita5.3", "5.3", 5, "sid", "Debian sid chroot"),
    Host("krita6.0", "6.0", 6, "experimental", "Debian sid chroot with experimental's Krita 6"),
)


@dataclass(frozen=True)
class Installation:
    """A Krita ready to run: installed under ``root`` ("/" for this machine)."""

    host: Host
    root: Path
    #: Folders of this machine that a chroot's Krita sees at the same paths: (path, writable).
    shared: tuple[tuple[Path, bool], ...] = ()

    @property
    def importer(self) -> Path:
        return self.root / KRITA_IMPORTER

    def start(self, argv: list[str], env: dict[str, str], cwd: Path, log,
              binds: tuple[Path, ...] = ()) -> subprocess.Popen:
        """Start ``argv`` (a program of this Krita) with ``env`` in ``cwd``, in a session of
        its own (for killing the whole run), output to ``log``; in a chroot, ``binds`` (files
        or folders of this machine) are seen read-only at the same paths."""
        if self.host.chroot is None:
            command, outer_env = argv, env
        else:
            command = self.command(argv, env, cwd, binds)
            outer_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=outer_env, cwd=str(cwd),
                                start_new_session=True)

    def command(self, argv: list[str], env: dict[str, str], cwd: Path,
                binds: tuple[Path, ...] = ()) -> list[str]:
        """The command line that runs ``argv`` in the chroot with exactly ``env``, in
        ``cwd``, with the shared folders and ``binds`` (read-only) mounted, in a private
        mount namespace."""
        mounts = []
        for path, writable in self.shared:
            mounts += ["rw" if writable else "ro", str(path)]
        for path in binds:
            mounts += ["ro", str(path)]
        variables = [f"{key}={value}" for key, value in env.items()]
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _CHROOT_RUN,
                "realscale-krita-chroot", str(self.root), *mounts, "--",
                "/usr/bin/env", "-i", "-C", str(cwd), *variables, *argv]


_CHROOT_RUN = r"""
set -eu
root=$1
shift
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
while [ "$1" != "--" ]; do
    if [ -d "$2" ]; then
        mkdir -p "$root$2"
    elif [ ! -e "$root$2" ]; then
        mkdir -p "$(dirname "$root$2")"
        : > "$root$2"
    fi
    mount --bind "$2" "$root$2"
    if [ "$1" = ro ]; then mount -o remount,bind,ro "$root$2"; fi
    shift 2
done
shift
exec chroot "$root" "$@"
"""
"""Runs inside ``unshare --mount``: ROOT, then (ro|rw PATH)..., --, the command. The mounts
live only in this private namespace; the chroot's /tmp is a tmpfs there, so the mount points of
folders under /tmp are made in memory, not in the cached chroot. A file (/etc/resolv.conf) is
bound over the chroot's own; only where the chroot has none is an empty one made to mount on."""


def unavailable(message: str) -> None:
    """Skip with ``message``, or fail in CI (a host that cannot be set up is a failure)."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} (and {REQUIRE_ENV}=1 asks for every Krita to be tested)")
    pytest.skip(message)


def require_krita() -> None:
    """Skip unless Krita, Xvfb and Krita's plug-in importer are installed on this machine."""
    missing = [name for name in ("krita", "Xvfb") if shutil.which(name) is None]
    if not (Path("/") / KRITA_IMPORTER).is_file():
        missing.append("/" + KRITA_IMPORTER)
    if missing:
        unavailable(f"the real-Krita tests need {', '.join(missing)}: {DEPS_HINT}")


def set_up(host: Host, shared: list[Path]) -> Installation:
    """The installation of ``host``: this machine's Krita, or its chroot (built and cached by
    scripts/host-chroot.sh on first use; parallel runs wait for one build). ``shared``: the
    test's own folders, writable inside a chroot. Skips (fails under
    REALSCALE_REQUIRE_KRITA=1) when the host cannot be set up here."""
    if host.chroot is None:
        require_krita()
        return Installation(host, Path("/"))
    missing = [name for name in ("Xvfb", "unshare") if shutil.which(name) is None]
    if missing:
        unavailable(f"Krita {host.series} in its chroot needs {', '.join(missing)} on this "
                    f"machine: {DEPS_HINT}")
    started = time.monotonic()
    try:
        done = subprocess.run(["bash", str(CHROOT_SCRIPT), host.chroot], capture_output=True,
                              text=True, timeout=3600, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/host-chroot.sh {host.chroot} took more than an hour")
    if done.returncode == CANNOT_BUILD:
        reason = [line for line in done.stderr.splitlines() if "cannot build" in line]
        unavailable(f"Krita {host.series} needs the {host.origin}: "
                    f"{reason[-1] if reason else done.stderr.strip()[-500:]}")
    if done.returncode != 0:
        pytest.fail(f"scripts/host-chroot.sh {host.chroot} failed with exit code "
                    f"{done.returncode}:\n{done.stderr[-3000:]}")
    root = Path(done.stdout.strip().splitlines()[-1])
    if time.monotonic() - started > 5:
        print(f"built the {host.chroot} chroot at {root} in "
              f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    return Installation(host, root, shared_folders(shared))


def shared_folders(writable: list[Path]) -> tuple[tuple[Path, bool], ...]:
    """What a chroot's Krita must see: this checkout (the worker's PYTHONPATH, the scenarios,
    the test images), the worker's Python (its environment and the Python that environment was
    made from), read-only; and ``writable``. A folder inside another one is not mounted again.
    """
    python = Path(worker_python())
    wanted = [(REPO, False), (Path(sys.prefix), False), (Path(sys.base_prefix), False),
              (python.parent.parent, False), (python.resolve().parent.parent, False)]
    wanted += [(Path(path), True) for path in writable]
    # The X server's sockets: Krita reaches this machine's Xvfb through its abstract socket,
    # and through the socket file when that fails.
    wanted.append((Path("/tmp/.X11-unix"), True))
    chosen: list[tuple[Path, bool]] = []
    for path, rw in sorted(((p.resolve(), rw) for p, rw in wanted),
                           key=lambda item: len(item[0].parts)):
        if any(path == other or other in path.parents for other, _ in chosen):
            continue
        if path == Path("/") or (path.parts[1] in SYSTEM_FOLDERS
                                 and path.parts[:3] != ("/", "usr", "local")):
            unavailable(f"the worker's Python lives in {path}, a system folder that cannot be "
                        "shared with a chroot: run the tests from a Python installed elsewhere "
                        "(a pyenv, uv or /usr/local Python and its venv), or set "
                        "REALSCALE_KRITA_WORKER_PYTHON to one")
        chosen.append((path, rw))
    return tuple(chosen)


SYSTEM_FOLDERS = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "var",
                  "proc", "sys", "dev", "run", "boot"}


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
    """One Krita user of one installation: every per-user folder lives under ``root``."""

    root: Path
    installation: Installation

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
        """This machine's environment for this user (what a command run outside sees)."""
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("PYTHON", "QT_", "XDG_", "REALSCALE_"))}
        env.update(self.user_env())
        return env

    def krita_env(self) -> dict[str, str]:
        """The environment Krita starts with: this machine's inherited one, or a clean one in
        a chroot."""
        if self.installation.host.chroot is None:
            return self.env()
        env = {"PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "xcb"}
        env.update(self.user_env())
        return env

    def user_env(self) -> dict[str, str]:
        return {
            "HOME": str(self.root / "home"),
            "XDG_CONFIG_HOME": str(self.config),
            "XDG_DATA_HOME": str(self.data),
            "XDG_CACHE_HOME": str(self.root / "cache"),
            "XDG_RUNTIME_DIR": str(self.root / "runtime"),
            "TMPDIR": str(self.root / "tmp"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        }


def new_profile(root: Path, installation: Installation) -> Profile:
    """A fresh profile with the test driver installed and enabled (nothing else)."""
    profile = Profile(root, installation)
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
    return Profile(root, warm.installation)


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


def krita_importer(installation: Installation):
    """Krita's own plug-in importer module (standard library only), from that Krita's
    installation."""
    spec = importlib.util.spec_from_file_location(
        f"krita_plugin_importer_{installation.host.key.replace('.', '_')}",
        installation.importer)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Krita provides i18n() as a builtin; the importer uses it for errors (and from 5.3 on
    # imports it from builtins).
    added = not hasattr(builtins, "i18n")
    if added:
        builtins.i18n = str
    try:
        spec.loader.exec_module(module)
    finally:
        if added:
            del builtins.i18n
    module.i18n = str
    return module


def import_zip(archive: Path, profile: Profile) -> list[dict]:
    """What Tools > Scripts > Import Python Plugin from File... does with ``archive``, then
    the "Enable plugins now?" answer Yes (``enable_NAME=true`` in kritarc)."""
    importer = krita_importer(profile.installation)
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
                 timeout: float = 240.0, env: dict[str, str] | None = None,
                 binds: tuple[Path, ...] = ()) -> Run:
    """Start Krita on ``profile``, run one scenario, wait for it to quit (or kill it).
    ``binds``: files or folders of this machine a chroot's Krita sees read-only."""
    out.mkdir(parents=True, exist_ok=True)
    spec = {"scenarios": str(SCENARIOS), "scenario": scenario, "params": params or {},
            "out": str(out), "timeout": timeout - 15}
    spec_path = out / "scenario.json"
    spec_path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    run_env = profile.krita_env()
    run_env["REALSCALE_KRITA_SCENARIO"] = str(spec_path)
    run_env.update(env or {})
    log_path = out / "krita.log"
    home = profile.root / "home"
    result_path = out / "result.json"
    started = time.monotonic()
    with open(log_path, "wb") as log, virtual_display(log) as display:
        run_env["DISPLAY"] = display
        process = profile.installation.start(["krita", "--nosplash"], run_env, home, log,
                                             binds)
        try:
            returncode: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            _kill_group(process)
    seconds = time.monotonic() - started
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


# -- pip inside a chroot ------------------------------------------------------------------------


@dataclass(frozen=True)
class PipSettings:
    """What a pip inside a chroot needs to reach the package index as this machine's pip
    does: variables for Krita's environment and files or folders to bind read-only."""

    env: dict[str, str]
    binds: tuple[Path, ...]


def pip_settings(folder: Path) -> PipSettings:
    """This machine's pip settings for a pip in a chroot: name resolution (/etc/resolv.conf),
    pip's effective configuration (``pip config list`` and the PIP_* variables) written to
    ``folder``/pip.conf for PIP_CONFIG_FILE, the files it names (a CA bundle, constraints)
    copied beside it, and the local folders it names (find-links, file:// indexes) bound."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                            capture_output=True, text=True, check=False, timeout=60).stdout
    values: dict[str, str] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        if "." in key:
            values[key.split(".", 1)[1]] = value.strip().strip("'\"")
    values.update({key[4:].lower().replace("_", "-"): value
                   for key, value in os.environ.items()
                   if key.startswith("PIP_") and key != "PIP_CONFIG_FILE"})
    folder.mkdir(parents=True, exist_ok=True)
    binds: list[Path] = []
    resolv = Path("/etc/resolv.conf")
    if resolv.is_file():
        binds.append(resolv)
    for key in ("cert", "client-cert", "constraint", "requirement"):
        if values.get(key) and Path(values[key]).is_file():
            copy = folder / f"pip-{key}"
            shutil.copyfile(values[key], copy)
            values[key] = str(copy)
    for key in ("find-links", "index-url", "extra-index-url"):
        for item in values.get(key, "").split():
            path = Path(item[len("file://"):] if item.startswith("file://") else item)
            if key != "find-links":
                path = path.parent  # an index's pages link to files beside its simple/
            if path.is_absolute() and path != Path("/") and path.exists():
                binds.append(path)
    config = folder / "pip.conf"
    config.write_text("[global]\n" + "".join(f"{key} = {value}\n"
                                             for key, value in sorted(values.items())),
                      encoding="utf-8")
    return PipSettings({"PIP_CONFIG_FILE": str(config)}, tuple(dict.fromkeys(binds)))
