"""The real GIMP 3 for the host tests: GIMP 3.0.4 (Debian 13, trixie) and GIMP 3.2.6 (Debian
sid) in the cached chroots of ``scripts/host-chroot.sh``, the plug-in installed as users
install it, a realscale worker outside the chroot on 127.0.0.1, and gimp-console runs of
``gimp_driver.py``.

The chroot shares this machine's network namespace, so the plug-in inside reaches the worker
outside over TCP; the chroot cannot see this checkout's Python environment, which is why the
worker runs out here (``realscale worker --listen``) and the plug-in's client config holds
its address and token.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CHROOT_SCRIPT = REPO / "scripts" / "host-chroot.sh"
PLUGIN_DIR = REPO / "plugins" / "gimp"
DRIVER = Path(__file__).with_name("gimp_driver.py")
CANNOT_BUILD = 77  # host-chroot.sh: this machine cannot build the chroot
REQUIRE_ENV = "REALSCALE_REQUIRE_GIMP"  # "1": a chroot that cannot be built fails the tests


@dataclass(frozen=True)
class GimpHost:
    """One GIMP release the tests run in."""

    version: str
    """``major.minor``: the name of its per-user folder (``GIMP/3.2``) and of its console."""
    release: str
    """The exact Debian package version tested (``Gimp.version()`` reports it)."""
    chroot: str
    """The ``scripts/host-chroot.sh`` name of the chroot holding it."""

    @property
    def console(self) -> str:
        return f"gimp-console-{self.version}"


GIMPS = (GimpHost("3.0", "3.0.4", "trixie"), GimpHost("3.2", "3.2.6", "sid"))
EXACT_ENV = {"REALSCALE_CPU_BF16": "0"}
"""For the worker and the command it is compared with: fp32 on the CPU. These tests compare
the plug-in's pixels with ``realscale upscale`` to half an 8-bit step; in bf16 (auto's choice
for the compact net on CPUs with bfloat16 instructions) a float image whose values lie 1e-7
from the 8-bit ones can round differently inside the network (18/255 after unpremultiplying
a faint alpha), which is the precision's doing, not the plug-in's."""
GIMP_TIMEOUT = float(os.environ.get("REALSCALE_GIMP_TIMEOUT", "300"))


def build_chroot(host: GimpHost) -> Path:
    """The cached chroot's root (built on first use; parallel runs share one build), or skip
    with the reason it cannot be built here (fail with REALSCALE_REQUIRE_GIMP=1, as in CI);
    fails outright if the build script itself breaks."""
    started = time.monotonic()
    try:
        proc = subprocess.run(["bash", str(CHROOT_SCRIPT), host.chroot], capture_output=True,
                              text=True, timeout=3600, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/host-chroot.sh {host.chroot} took more than an hour")
    if proc.returncode == CANNOT_BUILD:
        reason = [line for line in proc.stderr.splitlines() if "cannot build" in line]
        text = reason[-1] if reason else proc.stderr.strip()[-500:]
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"GIMP {host.version}: {text} (and {REQUIRE_ENV}=1 asks for every GIMP "
                        "to be tested)")
        pytest.skip(f"the GIMP {host.version} host tests need the Debian {host.chroot} chroot: "
                    f"{text}")
    if proc.returncode != 0:
        pytest.fail(f"scripts/host-chroot.sh {host.chroot} failed with exit code "
                    f"{proc.returncode}:\n{proc.stderr[-3000:]}")
    root = Path(proc.stdout.strip().splitlines()[-1])
    took = time.monotonic() - started
    if took > 5:
        print(f"built the {host.chroot} chroot at {root} in {took:.0f} s", file=sys.stderr)
    return root


USER_VARIABLES = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "APPDATA",
                  "LOCALAPPDATA", "GIMP3_DIRECTORY", "REALSCALE_CONFIG_DIR",
                  "REALSCALE_WORKER_CONFIG", "REALSCALE_PLUGINS_DIR")
"""Where realscale and GIMP look for a user's folders: never this machine's user's."""


def _realscale(*args: str, env: dict[str, str] | None = None) -> str:
    """Run this checkout's ``python -m realscale ARGS``; its stdout, or fail the test."""
    variables = {k: v for k, v in os.environ.items()
                 if not k.startswith("PYTHON") and k not in USER_VARIABLES}
    variables["HOME"] = os.environ.get("HOME", "/root")
    variables["PYTHONPATH"] = str(REPO / "core")
    variables.update(env or {})
    command = [sys.executable, "-m", "realscale", *args]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=variables,
                          timeout=600, check=False)
    if proc.returncode != 0:
        pytest.fail(f"`realscale {' '.join(args)}` failed ({proc.returncode}):\n"
                    f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return proc.stdout


def install_plugin(plugins_dir: Path, records_dir: Path, how: str) -> Path:
    """Install the plug-in into a GIMP plug-ins folder the way a user does: ``realscale
    install gimp`` (how="install"), or by unpacking the zip of ``realscale package gimp``
    with its file modes (how="zip"). Returns the installed plug-in's folder."""
    manifest = json.loads((PLUGIN_DIR / "manifest.json").read_text(encoding="utf-8"))
    env = {"REALSCALE_CONFIG_DIR": str(records_dir)}  # install records stay in the session
    if how == "install":
        _realscale("install", "gimp", "--dest", str(plugins_dir), "--no-config", env=env)
    else:
        out = records_dir / "package"
        _realscale("package", "gimp", "-o", str(out), env=env)
        [zip_path] = out.glob("realscale-gimp-*.zip")
        with zipfile.ZipFile(zip_path) as archive:
            for info in archive.infolist():
                target = Path(archive.extract(info, plugins_dir))
                mode = (info.external_attr >> 16) & 0o777
                if mode:  # what unzip and file managers do with the modes a zip records
                    target.chmod(mode)
    for entry in manifest["files"]:
        installed = plugins_dir / entry["dest"]
        assert installed.is_file(), f"{how}: {installed} is missing"
        if entry.get("executable"):
            assert os.access(installed, os.X_OK), (
                f"{how}: {installed} is not executable (GIMP skips it silently)")
    assert (plugins_dir / manifest["client_dest"]).is_file(), f"{how}: no client"
    return plugins_dir / manifest["name"]


class GimpSession:
    """One folder inside the chroot for a test session: GIMP's config folder with the
    plug-in installed, the test images, jobs and results. Paths handed to GIMP are the
    chroot's view of them (``inner``).

    ``install``: "install" (``realscale install gimp --dest``) or "zip" (the package
    unpacked) into ``$GIMP3_DIRECTORY/plug-ins``; or None: a user's own folders, with no
    GIMP3_DIRECTORY, where ``user_realscale`` runs ``realscale`` as that user would."""

    def __init__(self, root: Path, host: GimpHost, install: str | None = "install") -> None:
        self.root = root
        self.host = host
        (root / "tmp").mkdir(exist_ok=True)
        for stale in (root / "tmp").glob("realscale-gimp-test-*"):  # from killed runs
            if time.time() - stale.stat().st_mtime > 86400:
                shutil.rmtree(stale, ignore_errors=True)
        self.dir = Path(tempfile.mkdtemp(prefix="realscale-gimp-test-", dir=root / "tmp"))
        self.dir.chmod(0o755)
        for name in ("gimp", "cache", "config", "data", "tmp", "work", "records", "home"):
            (self.dir / name).mkdir()
        self.gimp3_directory = install is not None
        self.plugin = None if install is None else install_plugin(
            self.dir / "gimp" / "plug-ins", self.dir / "records", install)
        self.runs = 0

    def inner(self, path: Path) -> str:
        """``path`` (under the chroot) as GIMP inside the chroot sees it."""
        return "/" + str(Path(path).relative_to(self.root))

    def file(self, name: str) -> Path:
        return self.dir / "work" / name

    def user_realscale(self, *args: str) -> str:
        """``realscale ARGS`` as the user whose folders GIMP uses in this session (their home
        and XDG folders, no GIMP3_DIRECTORY); its stdout."""
        return _realscale(*args, env={
            "HOME": str(self.dir / "home"), "XDG_CONFIG_HOME": str(self.dir / "config"),
            "XDG_DATA_HOME": str(self.dir / "data"), "XDG_CACHE_HOME": str(self.dir / "cache"),
        })

    def run(self, cases: list[dict], *, env: dict[str, str] | None = None,
            display: str | None = None, binds: list[str] | None = None) -> dict:
        """Run the driver over ``cases`` in one gimp-console; return its results, with the
        console output under ``log``. Fails the test if GIMP does not finish or the driver
        could not report.

        ``display``: an X display (Xvfb) for the plug-in's dialogs. GTK then needs /proc and
        /dev/shm in the chroot (GIMP 3.2's image loaders run sandboxed through bwrap), which
        are mounted in a private mount namespace that vanishes with the run, with ``binds``
        (folders of this machine, read-only at the same paths inside)."""
        self.runs += 1
        job = self.file(f"job-{self.runs}.json")
        result = self.file(f"result-{self.runs}.json")
        job.write_text(json.dumps({"result": self.inner(result), "cases": cases}, indent=1))
        driver = self.file("gimp_driver.py")
        shutil.copyfile(DRIVER, driver)
        inner = self.inner(self.dir)
        variables = {
            "HOME": "/root", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1",  # stacks on SIGABRT
            "XDG_CACHE_HOME": f"{inner}/cache", "XDG_CONFIG_HOME": f"{inner}/config",
            "XDG_DATA_HOME": f"{inner}/data", "TMPDIR": f"{inner}/tmp",
            "REALSCALE_GIMP_JOB": self.inner(job),
        }
        if self.gimp3_directory:
            variables["GIMP3_DIRECTORY"] = f"{inner}/gimp"
        if display:
            variables["DISPLAY"] = display
        variables.update(env or {})
        namespace = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _MOUNTED,
                     "realscale-gimp-chroot", str(self.root), *(binds or []), "--"] if (
            display or binds) else []
        command = [*namespace, "chroot", str(self.root), "/usr/bin/env", "-i",
                   *(f"{key}={value}" for key, value in variables.items()),
                   self.host.console, "-i", "--no-data", "--no-fonts",
                   "--batch-interpreter=python-fu-eval", "-b", "-", "--quit"]
        code, log = _run_group(command, f"exec(open({self.inner(driver)!r}).read())\n",
                               GIMP_TIMEOUT)
        if not result.is_file():
            pytest.fail(f"{self.host.console} (exit code {code}) wrote no result; its output:\n"
                        f"{log[-6000:]}")
        results = json.loads(result.read_text())
        results["log"], results["exit_code"] = log, code
        if results.get("driver_error"):
            pytest.fail(f"the GIMP driver failed:\n{results['driver_error']}\n{log[-3000:]}")
        return results

    def close(self) -> None:
        if os.environ.get("REALSCALE_KEEP_GIMP_SESSION") == "1":
            print(f"kept the GIMP test folder {self.dir}", file=sys.stderr)
            return
        shutil.rmtree(self.dir, ignore_errors=True)


_MOUNTED = """set -e
root=$1; shift
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
while [ "$1" != "--" ]; do
    mkdir -p "$root$1"
    mount --bind "$1" "$root$1"
    mount -o remount,bind,ro "$root$1"
    shift
done
shift
exec "$@"
"""
"""Runs inside ``unshare --mount``: ROOT, then PATH... (bound read-only), --, the command; the
mounts live only in this private namespace and end with its last process."""


def _run_group(command: list[str], stdin: str, timeout: float) -> tuple[int, str]:
    """Run ``command`` in its own process group; on timeout kill the whole group (GIMP
    and its plug-in processes)."""
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGABRT first: the Python plug-ins (PYTHONFAULTHANDLER) print where they hang.
        os.killpg(proc.pid, signal.SIGABRT)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"gimp-console did not finish within {timeout:.0f} s; its output, with "
                    f"the Python stacks at the end:\n{out[-8000:]}")
    return proc.returncode, out


class Xvfb:
    """This machine's Xvfb, for the plug-in's dialogs. The chroot shares the network
    namespace, so GTK inside reaches it through its abstract socket."""

    def __init__(self) -> None:
        exe = shutil.which("Xvfb")
        if exe is None:
            pytest.fail("the GIMP dialog tests need Xvfb on this machine: install xvfb")
        read, write = os.pipe()
        self.proc = subprocess.Popen(
            [exe, "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)
        os.close(write)
        number = b""
        deadline = time.monotonic() + 30
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([read], [], [], 0.5)
            if ready:
                chunk = os.read(read, 16)
                if not chunk:
                    break
                number += chunk
        os.close(read)
        if not number.strip().isdigit():
            self.close()
            pytest.fail(f"Xvfb did not start: {self.proc.stderr.read().decode()[-2000:]}")
        self.display = f":{number.decode().strip()}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class TcpWorker:
    """``realscale worker --listen 127.0.0.1:0`` from this checkout's environment, outside
    the chroot; ``config`` is the client config that points the plug-in at it."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = str(REPO / "core")
        env.update(EXACT_ENV)
        # stdin stays an open pipe: the worker ends when it closes (or this process dies).
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "realscale", "worker", "--listen", "127.0.0.1:0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            start_new_session=True)
        line = _read_line(self.proc, 120)
        try:
            hello = json.loads(line)
            self.address, self.token = hello["address"], hello["token"]
        except (ValueError, KeyError, TypeError):
            self.close()
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            pytest.fail(f"`realscale worker --listen` did not announce its address "
                        f"(got {line!r}); stderr:\n{err[-3000:]}")
        self.config = {"version": 1, "address": self.address, "token": self.token}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 1)
            if not chunk:
                break
            line += chunk
        elif proc.poll() is not None:
            break
    return line.decode(errors="replace").strip()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

