"""Set up realscale's engine from inside a host: find a Python, make an environment, install.

Standard library only, Python 3.10+: GIMP's, Krita's and Resolve's Python import this file
from the plug-in folder, where it sits beside ``realscale_client.py`` and the realscale wheel
the plug-in carries (``realscale-<version>-py3-none-any.whl``). Host dialogs are built on top:

    plan = detect()                      # Python, backends, sizes, folder (fast, no network)
    job = install(plan, plan.backend)    # or update(), remove()
    job.start()                          # its own thread; or job.run() on yours
    while not job.done: show(job.progress()); sleep(0.1)   # cancel with job.cancel()
    result = job.result                  # .ok, .message (one or two sentences), .log

The worker config is written only after the new environment has answered a worker
``hello``, so a host never starts a half-installed engine. See ``docs/engine-setup.md``.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

if __package__:  # Krita: the plug-in is a package; GIMP, Resolve and tests: a folder on sys.path
    from . import realscale_client as _client
else:
    if __name__ == "__main__":  # run as a script, even isolated (-I): the client is beside it
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import realscale_client as _client  # type: ignore[no-redef]

_wire: Any = getattr(_client, "wire", _client)
"""realscale_wire (the framing and config lookup the worker shares) where the client has it;
older clients hold the config lookup themselves."""

__all__ = [
    "BACKENDS",
    "MIN_PYTHON",
    "Backend",
    "EngineInfo",
    "Plan",
    "Progress",
    "PythonFound",
    "Result",
    "SetupJob",
    "bundled_wheel",
    "default_folder",
    "detect",
    "engine_info",
    "find_pythons",
    "install",
    "nvidia_gpu",
    "outdated",
    "remove",
    "update",
]

MIN_PYTHON = (3, 10)
PREFERRED = ((3, 12), (3, 11), (3, 13), (3, 10))
"""Tried first, in this order: every dependency has wheels for them (a brand-new Python may
not have onnxruntime or torch wheels yet)."""
RECORD = "engine.json"
"""The record of a set-up engine, in its folder: which environment is current, its backend."""
SEARCH_ENV = "REALSCALE_SETUP_SEARCH"
"""When set, the only folders searched for a Python (os.pathsep-separated; may be empty)."""
_PROBE_TIMEOUT = 20.0
_KEEP_LOGS = 10
_WHEEL = re.compile(r"realscale-(\d[^-]*)-py3-none-any\.whl$")

# ---------------------------------------------------------------------------------------
# Data types
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PythonFound:
    """A Python that can host the engine (or, with ``problem``, one that cannot and why)."""

    path: str
    version: tuple[int, int, int]
    source: str
    """Where it was found: "PATH", "py launcher", "install folder", "uv"."""
    problem: str = ""

    @property
    def label(self) -> str:
        return "Python {} ({})".format(".".join(map(str, self.version)), self.path)


@dataclass(frozen=True)
class Backend:
    """One way to run the models, with what it installs and how big that is."""

    name: str
    """"cuda", "cpu", "directml", "coreml" or "mps"."""
    label: str
    size_text: str
    need_bytes: int
    """Free disk space asked for before starting (the environment and pip's downloads)."""
    extras: tuple[str, ...] = ()
    swap: tuple[str, str] | None = None
    """(distribution to remove, distribution to install instead) after the wheel."""
    index: str | None = None
    """An extra package index this backend's packages come from (CUDA torch on Windows)."""
    recommended: bool = False


_MB = 1_000_000
_TORCH_FREE = "about 270 MB"
"""Measured: see docs/engine-setup.md (Linux x86_64, Python 3.12; other systems differ a little)."""

BACKENDS = {
    "cuda": Backend("cuda", "NVIDIA GPU (PyTorch with CUDA)", "several GB", 8000 * _MB,
                    extras=("torch",)),
    "cpu": Backend("cpu", "CPU (ONNX Runtime)", _TORCH_FREE, 600 * _MB),
    "directml": Backend("directml", "GPU through DirectML (ONNX Runtime)", _TORCH_FREE,
                        600 * _MB, swap=("onnxruntime", "onnxruntime-directml")),
    "coreml": Backend("coreml", "Apple Neural Engine and GPU through CoreML (ONNX Runtime)",
                      _TORCH_FREE, 600 * _MB),
    "mps": Backend("mps", "Apple GPU (PyTorch with Metal)", "about 1 GB", 2000 * _MB,
                   extras=("torch",)),
}
CUDA_INDEX_WINDOWS = "https://download.pytorch.org/whl/cu128"
"""The package index of PyTorch's CUDA builds: torch on the default index is CPU-only on
Windows (on Linux its default build is the CUDA one)."""


@dataclass(frozen=True)
class Plan:
    """What ``detect`` found: everything a setup dialog shows before anything is installed."""

    python: PythonFound | None
    """The Python to use (best first of ``pythons``), None when there is none."""
    pythons: list[PythonFound]
    rejected: list[PythonFound]
    backends: list[Backend]
    backend: Backend
    """The recommended one."""
    folder: str
    wheel: str | None
    version: str | None
    """realscale's version in the wheel, which is the plug-in's."""
    gpu: str | None
    uv: str | None
    """uv's path when there is one; it can fetch a Python when none is installed."""
    problem: str = ""
    """Why installing cannot start (empty when it can): one or two sentences."""


@dataclass(frozen=True)
class Progress:
    """A snapshot for a progress dialog; ``fraction`` is None when no estimate is possible."""

    phase: str
    """"python", "environment", "download", "install", "check", "remove", "done"."""
    label: str
    fraction: float | None
    message: str = ""


@dataclass(frozen=True)
class EngineInfo:
    """The engine the worker config points at, as far as it could be asked."""

    config: str
    python: str | None = None
    address: str | None = None
    folder: str | None = None
    managed: bool = False
    """Set up by this module (so update and remove may touch it)."""
    version: str | None = None
    protocol: int | None = None
    backend: str | None = None
    device: str | None = None
    size_bytes: int | None = None
    update_offered: bool = False
    message: str = ""
    """One or two sentences for the dialog: what is installed, or what is wrong and what to do."""


@dataclass(frozen=True)
class Result:
    ok: bool
    message: str
    log: str | None = None
    cancelled: bool = False
    engine: EngineInfo | None = None


# ---------------------------------------------------------------------------------------
# Where things go
# ---------------------------------------------------------------------------------------


def data_dir() -> str:
    """realscale's per-user data folder (not the config folder: an engine is large)."""
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
    elif sys.platform == "darwin":
        base = os.path.join(home, "Library", "Application Support")
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.join(home, ".local", "share")
    return os.path.join(base, "realscale")


def default_folder() -> str:
    """Where the engine goes unless the user picks another folder."""
    return os.path.join(data_dir(), "engine")


def log_dir() -> str:
    """Setup logs live outside the engine folder, so a cancelled setup leaves no engine folder."""
    return os.path.join(data_dir(), "logs")


def bundled_wheel(folder: str | None = None) -> str | None:
    """The realscale wheel the plug-in carries beside this file (the newest, if several)."""
    folder = folder or os.path.dirname(os.path.abspath(__file__))
    found = [(_version_key(m.group(1)), path)
             for path in glob.glob(os.path.join(folder, "realscale-*-py3-none-any.whl"))
             if (m := _WHEEL.search(os.path.basename(path)))]
    return max(found)[1] if found else None


def wheel_version(wheel: str) -> str | None:
    match = _WHEEL.search(os.path.basename(wheel))
    return match.group(1) if match else None


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:4])


def _env_python(env: str) -> str:
    if sys.platform == "win32":
        return os.path.join(env, "Scripts", "python.exe")
    return os.path.join(env, "bin", "python")


# ---------------------------------------------------------------------------------------
# Finding a Python
# ---------------------------------------------------------------------------------------

_PROBE = (
    "import json,struct,sys,sysconfig\n"
    "i={'version':list(sys.version_info[:3]),'executable':sys.executable,"
    "'bits':struct.calcsize('P')*8,'gil':bool(sysconfig.get_config_var('Py_GIL_DISABLED'))}\n"
    "try:\n import venv,ensurepip;i['venv']=True\n"
    "except ImportError:\n i['venv']=False\n"
    "print(json.dumps(i))\n"
)


def candidate_paths(search: Iterable[str] | None = None, *, system: str | None = None,
                    environ: dict[str, str] | None = None, home: str | None = None,
                    root: str = "/") -> list[tuple[str, str]]:
    """(path, source) of every Python executable worth asking, best places first.

    ``search`` replaces PATH and the usual folders (for tests and the host drivers); the
    ``system``, ``environ``, ``home`` and ``root`` (of the system folders) arguments let a
    test lay out another system's folders."""
    system = system or sys.platform
    environ = dict(os.environ if environ is None else environ)
    home = home or os.path.expanduser("~")
    windows = system == "win32"
    names = (["python.exe", "python3.exe"] if windows else
             [f"python3.{minor}" for minor in range(20, 9, -1)] + ["python3", "python"])
    found: list[tuple[str, str]] = []

    def add(path: str, source: str) -> None:
        if os.path.isfile(path) and (windows or os.access(path, os.X_OK)):
            found.append((path, source))

    if search is None and SEARCH_ENV in environ:
        search = [p for p in environ[SEARCH_ENV].split(os.pathsep) if p]
    only = search is not None
    folders = list(search) if search is not None else [
        p for p in environ.get("PATH", "").split(os.pathsep) if p]
    for folder in folders:
        if system == "darwin" and os.path.normpath(folder) == os.path.join(root, "usr", "bin"):
            continue  # Apple's python3 stub is 3.9, and may pop up a developer-tools installer
        for name in names:
            add(os.path.join(folder, name), "PATH")
    if only:
        return found
    patterns: list[str] = []
    if windows:
        local = environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
        for base in (os.path.join(local, "Programs", "Python"),
                     environ.get("ProgramFiles") or r"C:\Program Files",
                     environ.get("ProgramFiles(x86)") or r"C:\Program Files (x86)",
                     environ.get("SystemDrive", "C:") + os.sep):
            patterns.append(os.path.join(base, "Python3*", "python.exe"))
        patterns.append(os.path.join(home, "miniconda3", "python.exe"))
        patterns.append(os.path.join(home, "anaconda3", "python.exe"))
        patterns.append(os.path.join(home, ".pyenv", "pyenv-win", "versions", "*", "python.exe"))
        patterns.append(os.path.join(environ.get("APPDATA", os.path.join(
            home, "AppData", "Roaming")), "uv", "python", "*", "python.exe"))
    else:
        if system == "darwin":
            system_places = ["Library/Frameworks/Python.framework/Versions/3.*/bin/python3",
                             "opt/homebrew/bin/python3.*",
                             "opt/homebrew/opt/python@3.*/bin/python3", "usr/local/bin/python3.*"]
        else:
            system_places = ["usr/bin/python3.*", "usr/local/bin/python3.*"]
        patterns += [os.path.join(root, place) for place in system_places]
        patterns += [os.path.join(home, ".pyenv", "versions", "*", "bin", "python3"),
                     os.path.join(home, ".local", "share", "uv", "python", "*", "bin", "python3"),
                     os.path.join(home, "miniconda3", "bin", "python3"),
                     os.path.join(home, "anaconda3", "bin", "python3"),
                     os.path.join(home, "miniforge3", "bin", "python3")]
    for pattern in patterns:
        for path in sorted(glob.glob(pattern), reverse=True):
            if re.search(r"python3(\.\d+)?(\.exe)?$", path) or path.endswith("python.exe"):
                add(path, "install folder")
    return found


def _launcher_paths() -> list[tuple[str, str]]:
    """Windows: every Python the ``py`` launcher knows (``py -0p``)."""
    if sys.platform != "win32" or not shutil.which("py"):
        return []
    output = _quiet(["py", "-0p"])
    line = re.compile(r"^\s*-\S+\s+\*?\s*(\S.*pythonw?\.exe)\s*$", re.M | re.I)
    return [(m.group(1).strip(), "py launcher") for m in line.finditer(output)]


def find_uv(search: Iterable[str] | None = None) -> str | None:
    """uv's path (it can fetch a Python when none is installed), or None."""
    if search is not None:
        return shutil.which("uv", path=os.pathsep.join(search))
    if SEARCH_ENV in os.environ:
        return shutil.which("uv", path=os.environ[SEARCH_ENV])
    return shutil.which("uv") or next(
        (p for p in (os.path.expanduser("~/.local/bin/uv"), os.path.expanduser("~/.cargo/bin/uv"))
         if os.path.isfile(p)), None)


def _uv_paths(uv: str | None) -> list[tuple[str, str]]:
    if uv is None:
        return []
    output = _quiet([uv, "python", "find", ">={}.{}".format(*MIN_PYTHON)]).strip()
    return [(output.splitlines()[-1], "uv")] if output else []


def _quiet(command: list[str], timeout: float = _PROBE_TIMEOUT) -> str:
    """A helper program's output, or "" when it is missing or fails (this only looks)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=_environment(), check=False, **_no_window())
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def probe_python(path: str, source: str = "PATH") -> PythonFound | None:
    """Ask a Python what it is; None when it does not run (a broken link, a pyenv shim
    for a version that is not selected, the Microsoft Store's placeholder)."""
    try:
        info = json.loads(_quiet([path, "-I", "-c", _PROBE]).strip() or "null")
    except ValueError:
        info = None
    if not isinstance(info, dict):
        return None
    version = tuple(int(v) for v in info["version"])
    shown = ".".join(map(str, version))
    exe = str(info.get("executable") or path)
    problem = ""
    if version[:2] < MIN_PYTHON:
        problem = "Python {} is too old (realscale needs {}.{} or newer)".format(shown, *MIN_PYTHON)
    elif info.get("bits") != 64:
        problem = f"Python {shown} is a 32-bit build (ONNX Runtime and PyTorch need 64-bit)"
    elif info.get("gil"):
        problem = f"Python {shown} is a free-threaded build, which ONNX Runtime does not support"
    elif not info.get("venv"):
        problem = (f"Python {shown} cannot make virtual environments (on Debian and Ubuntu: "
                   f"install the python{version[0]}.{version[1]}-venv package)")
    return PythonFound(exe, version, source, problem)  # type: ignore[arg-type]


def find_pythons(search: Iterable[str] | None = None) -> tuple[list[PythonFound],
                                                                list[PythonFound]]:
    """(usable Pythons best first, Pythons found but unusable with the reason)."""
    search = list(search) if search is not None else None
    candidates = candidate_paths(search)
    if search is None and SEARCH_ENV not in os.environ:
        candidates = _launcher_paths() + candidates
    candidates += _uv_paths(find_uv(search))
    seen: set[str] = set()
    good: list[PythonFound] = []
    bad: list[PythonFound] = []
    for path, source in candidates:
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        found = probe_python(path, source)
        if found is None or os.path.realpath(found.path) in seen - {real}:
            continue
        seen.add(os.path.realpath(found.path))
        (bad if found.problem else good).append(found)
    good.sort(key=_python_rank)
    return good, bad


def _python_rank(found: PythonFound) -> tuple[int, tuple[int, ...]]:
    minor = found.version[:2]
    if minor in PREFERRED:
        return PREFERRED.index(minor), ()
    return len(PREFERRED), tuple(-v for v in found.version)


# ---------------------------------------------------------------------------------------
# Choosing a backend
# ---------------------------------------------------------------------------------------


def nvidia_gpu(search: Iterable[str] | None = None,
               proc: str = "/proc/driver/nvidia") -> str | None:
    """The NVIDIA GPU's name (or "NVIDIA GPU" when only the driver shows), else None."""
    path = os.pathsep.join(search) if search is not None else None
    smi = shutil.which("nvidia-smi", path=path)
    if smi is None and sys.platform == "win32" and search is None:
        for guess in (r"C:\Windows\System32\nvidia-smi.exe",
                      r"C:\Program Files\NVIDIA Corporation\NVSMI\nvidia-smi.exe"):
            if os.path.isfile(guess):
                smi = guess
    if smi is not None:
        for line in _quiet([smi, "-L"]).splitlines():
            match = re.match(r"GPU \d+: (.+?)(?: \(UUID.*)?$", line.strip())
            if match:
                return match.group(1)
    if os.path.isdir(proc) and os.path.isdir(os.path.join(proc, "gpus")):
        return "NVIDIA GPU"
    return None


def choose_backends(system: str, gpu: str | None) -> list[Backend]:
    """The backends this system can use, the recommended one first and marked.

    An NVIDIA GPU gets PyTorch with CUDA; otherwise ONNX Runtime on the CPU (realscale's
    torch-free base install). DirectML (any DirectX 12 GPU) is offered on Windows, and on a
    Mac the base install's CoreML comes first, with PyTorch on the Apple GPU as a choice."""
    order: list[Backend] = []
    if gpu and system in ("win32", "linux"):
        order.append(replace(BACKENDS["cuda"], label=f"{gpu} (PyTorch with CUDA)",
                             index=CUDA_INDEX_WINDOWS if system == "win32" else None))
    if system == "darwin":
        order += [BACKENDS["coreml"], BACKENDS["mps"]]
    order.append(BACKENDS["cpu"])
    if system == "win32":
        order.append(BACKENDS["directml"])
    return [replace(b, recommended=(i == 0)) for i, b in enumerate(order)]


def detect(folder: str | None = None, *, wheel: str | None = None,
           search: Iterable[str] | None = None, python: PythonFound | None = None) -> Plan:
    """Look at the machine (a second or two: each Python found is asked what it is, unless
    ``python`` names the one to use)."""
    search = list(search) if search is not None else None
    wheel = wheel or bundled_wheel()
    good, bad = ([python], []) if python is not None else find_pythons(search)
    uv = find_uv(search)
    gpu = nvidia_gpu(search)
    backends = choose_backends(sys.platform, gpu)
    problem = ""
    if wheel is None:
        problem = ("The plug-in carries no realscale wheel (realscale-*.whl beside "
                   "realscale_setup.py): download the plug-in's release zip, not its sources.")
    elif not good and uv is None:
        problem = no_python_message(bad)
    return Plan(good[0] if good else None, good, bad, backends, backends[0],
                folder or default_folder(), wheel, wheel_version(wheel) if wheel else None,
                gpu, uv, problem)


def no_python_message(rejected: list[PythonFound]) -> str:
    """One sentence: no usable Python, and what to do (naming the closest miss)."""
    need = "{}.{}".format(*MIN_PYTHON)
    if rejected:
        return (f"No usable Python {need} or newer was found ({rejected[0].problem}); install "
                "Python 3.12 from python.org or your system's packages, then try again.")
    return (f"No Python {need} or newer was found on this computer; install Python 3.12 from "
            "python.org (on Windows tick \"Add python.exe to PATH\") or your system's packages, "
            "then try again.")


# ---------------------------------------------------------------------------------------
# Jobs: install, update, remove on a thread, polled by a dialog
# ---------------------------------------------------------------------------------------

PHASES = {
    "python": ("Finding Python", 0.0, 0.02),
    "environment": ("Making the environment", 0.02, 0.08),
    "download": ("Downloading", 0.08, 0.75),
    "install": ("Installing", 0.75, 0.93),
    "check": ("Checking the engine", 0.93, 1.0),
    "remove": ("Removing", 0.0, 1.0),
    "done": ("Done", 1.0, 1.0),
}


class _Stop(Exception):
    """Ends a job early with a Result (a failure, or a cancel)."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.message)
        self.result = result


class SetupJob:
    """One install, update or removal. ``run()`` blocks (call it on a worker thread) or
    ``start()`` runs it on its own thread; ``progress()`` and ``cancel()`` are safe from any
    thread. ``on_progress`` (optional) is called from the job's thread on each change."""

    def __init__(self, work: Callable[[SetupJob], Result], title: str,
                 on_progress: Callable[[Progress], None] | None = None,
                 logs: str | None = None) -> None:
        self._work = work
        self.title = title
        self.on_progress = on_progress
        self.result: Result | None = None
        self.log_path = os.path.join(logs or log_dir(), "engine-{}-{}.log".format(
            title, datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")))
        self._lock = threading.Lock()
        self._progress = Progress("python", PHASES["python"][0], 0.0)
        self._phases: list[Progress] = []  # each phase as it began, in order
        self._cancelled = threading.Event()
        self._process: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()
        self._log: Any = None
        self._started = time.monotonic()

    # -- for the dialog ---------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def progress(self) -> Progress:
        with self._lock:
            return self._progress

    def phases(self) -> list[Progress]:
        """Each phase as it began: a dialog that polls can show one that came and went
        between two looks."""
        with self._lock:
            return list(self._phases)

    def cancel(self) -> None:
        """Stop now: pip (and whatever it started) is killed; the job then cleans up."""
        self._cancelled.set()
        with self._lock:
            process = self._process
        if process is not None:
            _kill_tree(process)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"realscale-{self.title}",
                                        daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> Result | None:
        self._finished.wait(timeout)
        return self.result

    def run(self) -> Result:
        self._started = time.monotonic()
        try:
            os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
            self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115
        except OSError:
            self.log_path, self._log = "", None
        try:
            self.note(f"realscale {self.title}, {datetime.datetime.now().isoformat()}, "
                      f"{sys.platform}, host Python {sys.version.split()[0]}")
            try:
                result = self._work(self)
            except _Stop as stop:
                result = stop.result
            except Exception as exc:  # a dialog shows a sentence, never a traceback
                import traceback

                self.note(traceback.format_exc())
                result = Result(False, f"The {self.title} failed unexpectedly ({exc}).")
            if result.log is None and self.log_path:
                result = replace(result, log=self.log_path)
            self.note(f"result: {result.message}")
            if result.ok:
                self.phase("done")
        finally:
            if self._log is not None:
                self._log.close()
            _prune_logs(os.path.dirname(self.log_path))
            self.result = result
            self._finished.set()
        return result

    # -- for the work -----------------------------------------------------------------

    def note(self, text: str) -> None:
        if self._log is not None:
            self._log.write(text.rstrip("\n") + "\n")
            self._log.flush()

    def phase(self, phase: str, message: str = "") -> None:
        label, start, _end = PHASES[phase]
        began = Progress(phase, label, start, message)
        with self._lock:
            self._phases.append(began)
        self._set(began)
        elapsed = time.monotonic() - self._started
        self.note(f"== {label}" + (f": {message}" if message else "") + f" ({elapsed:.1f} s)")

    def within(self, part: float | None, message: str) -> None:
        """Progress inside the current phase (``part`` from 0 to 1, None: unknown)."""
        current = self.progress()
        _label, start, end = PHASES[current.phase]
        fraction = None if part is None else start + (end - start) * min(max(part, 0.0), 1.0)
        self._set(replace(current, fraction=fraction, message=message))

    def _set(self, progress: Progress) -> None:
        with self._lock:
            self._progress = progress
        if self.on_progress is not None:
            self.on_progress(progress)

    def check_cancel(self) -> None:
        if self._cancelled.is_set():
            raise _Stop(Result(False, f"The {self.title} was cancelled.", cancelled=True))

    def execute(self, command: list[str], on_line: Callable[[str], None] | None = None,
                env: dict[str, str] | None = None) -> tuple[int, list[str]]:
        """Run a program, logging its output; (exit status, its last 200 lines)."""
        self.check_cancel()
        self.note("$ " + " ".join(command))
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, encoding="utf-8", errors="replace", env=env or _environment(),
            cwd=os.path.expanduser("~"), **_new_group())
        with self._lock:
            self._process = process
        tail: list[str] = []
        try:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.rstrip("\r\n")
                self.note(line)
                tail = tail[-199:] + [line]
                if on_line is not None and not self._cancelled.is_set():
                    on_line(line)
            code = process.wait()
        finally:
            with self._lock:
                self._process = None
            if process.poll() is None:
                _kill_tree(process)
            if process.stdout is not None:
                process.stdout.close()
        self.note(f"(exit status {code})")
        self.check_cancel()
        return code, tail


def _environment() -> dict[str, str]:
    """The host's environment without what breaks another Python (Krita's PYTHONHOME, an
    AppImage's libraries), with pip told never to ask a question."""
    env = _client.worker_environment()
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PIP_NO_INPUT="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _no_window() -> dict[str, Any]:
    return {"creationflags": 0x08000000} if sys.platform == "win32" else {}


def _new_group() -> dict[str, Any]:
    """Start a program in its own process group, so cancel ends its children too."""
    if sys.platform == "win32":
        return {"creationflags": 0x08000000 | subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _kill_tree(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(process.pid)], capture_output=True,
                       check=False, **_no_window())
    else:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        process.kill()


def _prune_logs(folder: str) -> None:
    logs = sorted(glob.glob(os.path.join(folder, "engine-*.log")), key=os.path.getmtime)
    for old in logs[:-_KEEP_LOGS]:
        with contextlib.suppress(OSError):
            os.remove(old)


# ---------------------------------------------------------------------------------------
# Install and update
# ---------------------------------------------------------------------------------------


def install(plan: Plan, backend: Backend | str | None = None, *, folder: str | None = None,
            python: PythonFound | None = None, config: str | None = None,
            on_progress: Callable[[Progress], None] | None = None,
            logs: str | None = None, extras: Iterable[str] = ()) -> SetupJob:
    """A job that installs the plug-in's realscale into ``folder`` (default: the plan's) with
    ``backend`` (default: the recommended one), then points the worker config at it.
    ``extras``: realscale extras the host needs besides the backend's (Resolve: "video",
    for ffmpeg and OpenCV); an update installs them again."""
    if isinstance(backend, Backend):
        chosen = backend
    else:
        chosen = next((b for b in plan.backends if b.name == backend), plan.backend)
    chosen = replace(chosen, extras=tuple(dict.fromkeys((*chosen.extras, *extras))))
    target = os.path.abspath(folder or plan.folder)
    return SetupJob(lambda job: _install(job, plan, chosen, target, python or plan.python,
                                         config), "install", on_progress, logs)


def update(config: str | None = None, *, wheel: str | None = None,
           search: Iterable[str] | None = None,
           on_progress: Callable[[Progress], None] | None = None,
           logs: str | None = None) -> SetupJob:
    """A job that replaces the set-up engine with the plug-in's version (same folder and
    backend); the old engine keeps working until the new one has answered."""

    def work(job: SetupJob) -> Result:
        info = engine_info(config, ask=False)
        if not info.managed or info.folder is None:
            return Result(False, "There is no engine set up by the plug-in to update; "
                          "set one up instead.")
        job.phase("python")
        record = _read_record(info.folder) or {}
        earlier = _python_found(str(record.get("base_python", "")))  # the Python used before
        plan = detect(info.folder, wheel=wheel, search=search, python=earlier)
        backend = next((b for b in plan.backends if b.name == record.get("backend")),
                       BACKENDS.get(str(record.get("backend")), plan.backend))
        extras = record.get("extras")
        if isinstance(extras, list) and all(isinstance(e, str) for e in extras):
            backend = replace(backend, extras=tuple(extras))  # what the host asked for too
        return _install(job, plan, backend, info.folder, plan.python, config)

    return SetupJob(work, "update", on_progress, logs)


def _python_found(path: str) -> PythonFound | None:
    found = probe_python(path, "earlier setup") if path and os.path.isfile(path) else None
    return found if found is not None and not found.problem else None


def _install(job: SetupJob, plan: Plan, backend: Backend, folder: str,
             python: PythonFound | None, config: str | None) -> Result:
    job.phase("python")
    if plan.wheel is None or not os.path.isfile(plan.wheel):
        return Result(False, plan.problem or f"The realscale wheel {plan.wheel} is missing: "
                      "reinstall the plug-in.")
    if python is None:
        python = _python_from_uv(job, plan)
    job.note(f"Python: {python.label} (from {python.source}); backend: {backend.name}; "
             f"folder: {folder}")
    _check_space(folder, backend)
    created = []  # the folder and each parent it lacks, deepest first: removed if left empty
    missing = folder
    while not os.path.exists(missing) and os.path.dirname(missing) != missing:
        created.append(missing)
        missing = os.path.dirname(missing)
    job.phase("environment", folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise _Stop(Result(False, f"The folder {folder} cannot be made ({exc.strerror}); "
                           "choose another folder.")) from None
    try:
        with _folder_lock(folder):
            return _build(job, plan, backend, folder, python, config)
    finally:
        for made in created:
            try:
                os.rmdir(made)  # only when nothing was installed
            except OSError:
                break


def _build(job: SetupJob, plan: Plan, backend: Backend, folder: str, python: PythonFound,
           config: str | None) -> Result:
    """The environment, pip, the check, then the record and the config (the lock held)."""
    assert plan.wheel is not None
    env = os.path.join(folder, f"env-{plan.version}-{secrets.token_hex(3)}")
    try:
        code, tail = job.execute([python.path, "-m", "venv", env])
        if code != 0:
            raise _Stop(_failure(job, "making the environment", tail, backend))
        env_python = _env_python(env)
        _pip_install(job, env_python, plan.wheel, backend)
        job.phase("check", "starting the worker")
        version, device = _hello(job, env_python)
        if version != plan.version:
            raise _Stop(Result(False, f"The new engine reports realscale {version}, not "
                               f"{plan.version}: reinstall the plug-in."))
        previous = _read_record(folder)
        _write_json(os.path.join(folder, RECORD), {
            "version": 1, "env": os.path.basename(env), "backend": backend.name,
            "extras": list(backend.extras),
            "realscale": version, "base_python": python.path,
            "installed": datetime.datetime.now().isoformat(timespec="seconds")}, private=False)
        try:
            _write_config({"version": _client.CONFIG_VERSION, "python": env_python}, config)
        except OSError as exc:
            if previous is not None:
                _write_json(os.path.join(folder, RECORD), previous, private=False)
            else:
                os.remove(os.path.join(folder, RECORD))
            raise _Stop(Result(False, f"The worker config cannot be written ({exc}); make its "
                               "folder writable and try again.")) from None
    except BaseException:
        job.note(f"removing the unfinished environment {env}")
        _remove_tree(env)
        raise
    for other in glob.glob(os.path.join(folder, "env-*")):
        if os.path.basename(other) != os.path.basename(env):
            job.note(f"removing the earlier environment {other}")
            _remove_tree(other)
    device = device or _DEVICES.get(backend.name, backend.label)
    info = EngineInfo(config or _client.config_path(), python=env_python, folder=folder,
                      managed=True, version=version, protocol=_client.PROTOCOL_VERSION,
                      backend=backend.name, device=device, size_bytes=_size(env),
                      message=f"realscale {version} in {folder}, running on {device}.")
    return Result(True, f"realscale {version} is set up in {folder} ({backend.label}).",
                  engine=info)


_DEVICES = {"cpu": "the CPU (ONNX Runtime)", "cuda": "the NVIDIA GPU (PyTorch)",
            "directml": "the GPU (DirectML)", "coreml": "CoreML (ONNX Runtime)",
            "mps": "the Apple GPU (PyTorch)"}
"""What to call the device when the worker cannot be asked (before the ``devices`` request)."""


LOCK = "setup.lock"


@contextlib.contextmanager
def _folder_lock(folder: str) -> Iterator[None]:
    """One setup at a time per engine folder (two hosts may offer it at once): the lock
    names its process, and a lock whose process has ended is taken over."""
    path = os.path.join(folder, LOCK)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _attempt in range(3):
        try:
            fd = os.open(path, flags, 0o644)
            break
        except FileExistsError:
            holder = _lock_holder(path)
            if holder is not None:
                raise _Stop(Result(False, f"Another setup of the engine in {folder} is running "
                                   f"(process {holder}); wait for it to finish, then try "
                                   "again.")) from None
            with contextlib.suppress(OSError):
                os.remove(path)
    else:
        raise _Stop(Result(False, f"The lock file {path} cannot be taken over; remove it, "
                           "then try again."))
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"pid": os.getpid()}))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)


def _lock_holder(path: str) -> int | None:
    """The process holding a setup lock, or None when it has ended (or the lock is unreadable)."""
    try:
        with open(path, encoding="utf-8") as handle:
            pid = int(json.load(handle)["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid == os.getpid():
        return pid  # another job of this host
    if sys.platform == "win32":  # os.kill would end the process there
        listed = _quiet(["tasklist", "/NH", "/FI", f"PID eq {pid}"])
        return pid if re.search(rf"\b{pid}\b", listed) else None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:
        return pid  # alive, someone else's
    return pid


def _python_from_uv(job: SetupJob, plan: Plan) -> PythonFound:
    if plan.uv is None:
        raise _Stop(Result(False, no_python_message(plan.rejected)))
    job.within(None, "uv is fetching Python 3.12")
    code, tail = job.execute([plan.uv, "python", "install", "3.12"])
    found = _uv_paths(plan.uv) if code == 0 else []
    python = probe_python(found[0][0], "uv") if found else None
    if python is None or python.problem:
        reason = _last_error(tail) or "it found no Python afterwards"
        raise _Stop(Result(False, f"uv could not fetch a Python ({reason}); install Python "
                           "3.12 from python.org or your system's packages, then try again."))
    return python


def _check_space(folder: str, backend: Backend) -> None:
    existing = folder
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return
    if free < backend.need_bytes:
        raise _Stop(Result(False, f"The disk holding {folder} has {free / 1e9:.1f} GB free and "
                           f"the {backend.label} engine needs about {backend.need_bytes / 1e9:.1f}"
                           " GB: free some space or choose a folder on another disk."))


_DOWNLOAD = re.compile(r"^\s*Downloading (\S+?)(?: \((\d+(?:\.\d+)?) (kB|MB|GB)\))?\s*$")
_UNITS = {"kB": 1e3, "MB": 1e6, "GB": 1e9}
_ESTIMATED_DOWNLOAD = {"cuda": 3500 * _MB, "cpu": 105 * _MB, "directml": 110 * _MB,
                       "coreml": 105 * _MB}
"""Bytes pip downloads for each backend with an empty cache (for the progress bar only)."""


def _pip_install(job: SetupJob, env_python: str, wheel: str, backend: Backend) -> None:
    job.phase("download", "asking the package index")
    expected = _ESTIMATED_DOWNLOAD.get(backend.name, 200 * _MB)
    state = {"bytes": 0.0, "count": 0, "current": 0.0}

    def on_line(line: str) -> None:
        text = line.strip()
        match = _DOWNLOAD.match(text)
        raw = re.match(r"Progress (\d+) of (\d+)", text)
        if raw:
            done = int(raw.group(1))
            job.within((state["bytes"] - state["current"] + done) / expected,
                       job.progress().message)
            return
        if match:
            size = float(match.group(2) or 0) * _UNITS.get(match.group(3) or "MB", 1e6)
            state["bytes"] += size
            state["current"] = size
            state["count"] += 1
            job.within(state["bytes"] / expected, f"{_short(match.group(1))} "
                       f"({state['bytes'] / 1e6:.0f} MB so far)")
        elif text.startswith(("Collecting ", "Processing ", "Using cached ")):
            state["count"] += 1
            verb, _, what = text.split(" (from")[0].partition(" ")
            job.within(state["bytes"] / expected, f"{verb} {_short(what)}")
        elif text.startswith("Installing collected packages"):
            job.phase("install", "{} packages".format(len(text.split(":", 1)[1].split(","))))
            job.within(None, job.progress().message)

    extras = "[{}]".format(",".join(backend.extras)) if backend.extras else ""
    command = [env_python, "-m", "pip", "install", "--progress-bar",
               "raw" if _pip_has_raw(env_python) else "off", wheel + extras]
    if backend.index:
        command += ["--extra-index-url", backend.index]
    code, tail = job.execute(command, on_line)
    if code != 0:
        raise _Stop(_failure(job, "installing", tail, backend, env_python))
    if backend.swap:
        old, new = backend.swap
        job.within(None, f"replacing {old} with {new}")
        code, tail = job.execute([env_python, "-m", "pip", "uninstall", "-y", old])
        if code == 0:
            code, tail = job.execute([env_python, "-m", "pip", "install", "--progress-bar",
                                      "off", new], on_line)
        if code != 0:
            raise _Stop(_failure(job, "installing", tail, backend, env_python))


def _pip_has_raw(env_python: str) -> bool:
    """pip 24.1 and newer print "Progress N of M" lines a dialog can follow."""
    match = re.search(r"pip (\d+)\.(\d+)", _quiet([env_python, "-m", "pip", "--version"]))
    if match is None:
        return False
    return (int(match.group(1)), int(match.group(2))) >= (24, 1)


def _short(name: str) -> str:
    """``numpy-2.5.5-cp312-...whl``, its path or URL -> ``numpy 2.5.5``; others unchanged."""
    base = re.split(r"[/\\]", name)[-1]
    parts = base.split("-")
    return f"{parts[0]} {parts[1]}" if base.endswith(".whl") and len(parts) > 2 else base


def _hello(job: SetupJob, env_python: str) -> tuple[str, str | None]:
    """Start the new environment's worker through the host client: (its realscale version,
    the device it would use, where the worker answers ``devices``)."""
    client = _client.WorkerClient(python=env_python)
    try:
        status = client.status()
        models = client.models()
        device = None
        with contextlib.suppress(_client.WorkerError, AttributeError, KeyError, IndexError):
            first = client.devices()[0]  # newer clients and workers
            device = str(first.get("label") or first.get("name"))
        job.note(f"worker hello: pid {client.pid}, realscale {status.get('realscale')}, "
                 f"{len(models)} models, device {device}")
        return str(status.get("realscale")), device
    except _client.WorkerError as exc:
        job.note(f"worker failed: {exc}\n{exc.detail}")
        raise _Stop(Result(False, f"The new engine does not start ({exc}). The full log is in "
                           f"{job.log_path}.")) from None
    finally:
        client.close()
        job.check_cancel()


# ---------------------------------------------------------------------------------------
# Failures: one or two sentences, with what to do
# ---------------------------------------------------------------------------------------

_NETWORK = re.compile(
    r"NewConnectionError|Connection refused|ConnectionRefused|Network is unreachable|"
    r"Temporary failure in name resolution|Name or service not known|getaddrinfo failed|"
    r"Max retries exceeded|Read timed out|ConnectTimeout|ProxyError|SSLError|"
    r"Could not fetch URL|connection broken", re.I)
_MISSING = re.compile(r"No matching distribution found for (\S+)|"
                      r"Could not find a version that satisfies the requirement (\S+)")
_FULL = re.compile(r"No space left on device|\[Errno 28\]|Disk quota exceeded", re.I)


def _last_error(tail: list[str]) -> str:
    for line in reversed(tail):
        text = line.strip()
        if text.startswith("ERROR:") or text.endswith("Error") or "Error:" in text:
            return text.removeprefix("ERROR:").strip()
    return next((line.strip() for line in reversed(tail) if line.strip()), "")


def _index_urls(tail: list[str], env_python: str | None) -> list[str]:
    """The package indexes pip used: from its "Looking in indexes" line, else pip's default."""
    for line in tail:
        if line.startswith("Looking in indexes:"):
            return [url.strip() for url in line.split(":", 1)[1].split(",")]
    if env_python is None:
        return []
    default = _quiet([env_python, "-c", "from pip._internal.models.index import PyPI; "
                      "print(PyPI.simple_url)"]).strip()
    return [default] if default else []


def _proxied() -> bool:
    """A proxy is set: a direct connection says nothing about whether pip can reach out."""
    return any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                                           "http_proxy", "PIP_PROXY", "ALL_PROXY"))


def _unreachable(urls: list[str]) -> bool:
    """True when no network index among ``urls`` accepts a connection (pip does not always
    say so: without retries it only reports that it found no versions)."""
    import socket
    import urllib.parse

    network = [urllib.parse.urlsplit(u) for u in urls if u.startswith(("http:", "https:"))]
    for url in network:
        with contextlib.suppress(OSError, ValueError):
            port = url.port or (443 if url.scheme == "https" else 80)
            socket.create_connection((url.hostname or "", port), timeout=5).close()
            return False
    return bool(network)


def _failure(job: SetupJob, doing: str, tail: list[str], backend: Backend,
             env_python: str | None = None) -> Result:
    text = "\n".join(tail)
    log = job.log_path
    missing = _MISSING.search(text)
    if _FULL.search(text):
        message = (f"The disk became full while {doing}: free some space (the {backend.label} "
                   f"engine needs {backend.size_text}) or choose a folder on another disk.")
    elif _NETWORK.search(text) or (missing and not _proxied() and
                                   _unreachable(_index_urls(tail, env_python))):
        message = ("pip could not reach the package index: check the internet connection (or "
                   "pip's proxy and index settings), then try again.")
    elif missing:
        name = (missing.group(1) or missing.group(2)).split("[")[0]
        message = (f"The package {name} is not available for this Python and system; choose "
                   "another backend or another Python version (3.12 is safest), then try again.")
    elif "Permission denied" in text or "Access is denied" in text:
        message = (f"pip was not allowed to write while {doing}; choose a folder you can write "
                   "to.")
    else:
        message = f"Setting up failed while {doing} ({_last_error(tail) or 'no output'})."
    return Result(False, f"{message} The full log is in {log}.", log=log)


# ---------------------------------------------------------------------------------------
# What is installed; removing it
# ---------------------------------------------------------------------------------------

_ENGINE_PROBE = (
    "import json,importlib.util as u\n"
    "import realscale\n"
    "try:\n from realscale import wire as p\n"
    "except ImportError:\n from realscale.worker import protocol as p\n"
    "i={'version':realscale.__version__,'protocol':p.PROTOCOL_VERSION,"
    "'torch':u.find_spec('torch') is not None}\n"
    "try:\n import onnxruntime as o;i['providers']=o.get_available_providers()\n"
    "except Exception:\n i['providers']=[]\n"
    "print(json.dumps(i))\n"
)


def _managed_folder(python: str) -> str | None:
    """The engine folder when ``python`` is the current environment of a set-up engine."""
    env = os.path.dirname(os.path.dirname(os.path.abspath(python)))
    folder = os.path.dirname(env)
    record = _read_record(folder)
    if record is not None and record.get("env") == os.path.basename(env):
        return folder
    return None


def _read_record(folder: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(folder, RECORD), encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def engine_info(config: str | None = None, *, ask: bool = True,
                plugin_version: str | None = None) -> EngineInfo:
    """What the worker config points at; with ``ask``, the engine is started and asked
    (a few seconds). Never raises: problems are in ``message``."""
    path = config or _client.config_path()
    plugin_version = plugin_version or (wheel_version(bundled_wheel() or "") or None)
    try:
        settings = _client.read_config(path)
    except (_client.WorkerError, getattr(_wire, "ConfigError", _client.WorkerError)) as exc:
        return EngineInfo(path, message=f"No engine is set up ({exc}).")
    if settings.get("address"):
        return EngineInfo(path, address=str(settings["address"]),
                          message=f"The plug-in uses a running worker at {settings['address']}.")
    python = str(settings["python"])
    folder = _managed_folder(python)
    record = _read_record(folder) if folder else None
    info = EngineInfo(path, python=python, folder=folder, managed=folder is not None,
                      backend=str(record.get("backend")) if record else None,
                      version=str(record.get("realscale")) if record else None)
    if not ask:
        return info
    if not os.path.isfile(python):
        return replace(info, message=f"The engine's Python {python} is gone; set it up again.",
                       update_offered=info.managed)
    try:
        facts = json.loads(_quiet([python, "-c", _ENGINE_PROBE], timeout=60).strip() or "null")
    except ValueError:
        facts = None
    if not isinstance(facts, dict):
        return replace(info, message=f"The Python {python} in the worker config has no working "
                       "realscale; set the engine up again.", update_offered=info.managed)
    backend = info.backend or ("cuda" if facts.get("torch") else "cpu")
    info = replace(info, version=str(facts["version"]), protocol=int(facts["protocol"]),
                   backend=backend, size_bytes=_size(os.path.dirname(os.path.dirname(python)))
                   if info.managed else None)
    where = info.folder or os.path.dirname(os.path.dirname(python))
    if info.protocol != _client.PROTOCOL_VERSION:
        return replace(info, update_offered=True, message=(
            f"The engine (realscale {info.version} in {where}) speaks protocol {info.protocol} "
            f"and this plug-in speaks {_client.PROTOCOL_VERSION}: "
            + ("update it to realscale {}.".format(plugin_version or "the plug-in's version")
               if info.managed else "set up the plug-in's own engine instead.")))
    device = _ask_device(path, facts)
    newer = bool(plugin_version) and plugin_version != info.version
    message = f"realscale {info.version} in {where}, running on {device}."
    if newer and info.managed:
        message += f" An update to {plugin_version} is offered."
    return replace(info, device=device, update_offered=newer and info.managed, message=message)


def outdated(config: str | None = None) -> EngineInfo | None:
    """The engine the plug-in set up, when it speaks another protocol than this plug-in, so
    the host offers "Update the engine" (``message`` says why) instead of failing; None for an
    engine of this protocol, for none, and for one the user installed by hand (which the
    plug-in must not replace). Runs the engine's Python once (about a second), never its
    worker: a host may ask before every use."""
    info = engine_info(config, ask=False)
    if not info.managed or info.python is None or not os.path.isfile(info.python):
        return None
    try:
        facts = json.loads(_quiet([info.python, "-c", _ENGINE_PROBE], timeout=60).strip()
                           or "null")
    except ValueError:
        facts = None
    if not isinstance(facts, dict) or facts.get("protocol") in (None, _client.PROTOCOL_VERSION):
        return None
    full = engine_info(config)  # the sentence, from the same facts
    return full if full.update_offered else None


def _ask_device(config: str, facts: dict[str, Any]) -> str:
    """The device the worker would use: asked of the worker where it answers ``devices``."""
    client = _client.WorkerClient(config=config)
    devices = None
    try:
        client.status()  # the worker starts and answers hello
        with contextlib.suppress(_client.WorkerError, AttributeError, KeyError):
            devices = client.devices()  # type: ignore[attr-defined]  # newer clients, workers
    except _client.WorkerError as exc:
        return f"nothing: the worker does not start ({exc})"
    finally:
        client.close()
    if devices:
        return str(devices[0].get("label") or devices[0].get("name"))
    for provider, label in (("CUDAExecutionProvider", "NVIDIA GPU (ONNX Runtime)"),
                            ("DmlExecutionProvider", "GPU (DirectML)"),
                            ("CoreMLExecutionProvider", "CoreML")):
        if provider in facts.get("providers", []):
            return label
    return "the CPU (ONNX Runtime)" if not facts.get("torch") else "PyTorch"


def _size(folder: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def remove(config: str | None = None, *, on_progress: Callable[[Progress], None] | None = None,
           logs: str | None = None) -> SetupJob:
    """A job that removes the set-up engine (its folder's environments and record) and the
    worker config that points at it; an engine the user installed by hand is left alone."""

    def work(job: SetupJob) -> Result:
        job.phase("remove")
        info = engine_info(config, ask=False)
        if not info.managed or info.folder is None:
            return Result(False, "The worker config does not point at an engine the plug-in "
                          "set up, so nothing was removed"
                          + (f" ({info.python} stays)." if info.python else "."))
        with _folder_lock(info.folder):
            job.note(f"removing the worker config {info.config}")
            with contextlib.suppress(FileNotFoundError):
                os.remove(info.config)
            for env in glob.glob(os.path.join(info.folder, "env-*")):
                job.note(f"removing {env}")
                _remove_tree(env)
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(info.folder, RECORD))
        with contextlib.suppress(OSError):
            os.rmdir(info.folder)
        return Result(True, f"The engine in {info.folder} was removed.")

    return SetupJob(work, "remove", on_progress, logs)


def _remove_tree(path: str) -> None:
    """Remove a folder, retrying a moment on Windows, where a just-killed pip may hold files."""
    for attempt in range(10):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if attempt == 9:
                raise
            time.sleep(0.3)


def _write_config(config: dict[str, Any], path: str | None) -> None:
    """The worker config, as ``realscale install`` writes it (realscale_wire's own writer
    where the client has one)."""
    if hasattr(_wire, "write_config"):
        _wire.write_config(config, path or _client.config_path())
    else:
        _write_json(path or _client.config_path(), config, private=True)


def _write_json(path: str, data: dict[str, Any], *, private: bool) -> None:
    """Write whole or not at all: a fresh, exclusively created temporary file beside the
    target (final mode from the start), renamed over it; a link there is replaced."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = json.dumps(data, indent=2) + "\n"
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_BINARY", 0))
    temp = os.path.join(os.path.dirname(os.path.abspath(path)),
                        f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, flags, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise



# ---------------------------------------------------------------------------------------
# Run as a script: the set-up without a host's dialog
# ---------------------------------------------------------------------------------------


VIDEO_EXTRA_BYTES = 340 * _MB
"""What the video extra (ffmpeg and OpenCV) adds on disk, asked for on top of the backend's."""


def _plan_json(plan: Plan) -> dict[str, Any]:
    """What a set-up dialog in another language (the Resolve Lua script) shows."""
    return {"version": plan.version, "wheel": plan.wheel, "folder": plan.folder,
            "problem": plan.problem, "uv": plan.uv,
            "python": plan.python.label if plan.python else None,
            "backends": [{"name": b.name, "label": b.label, "size_text": b.size_text,
                          "extras": list(b.extras), "recommended": b.recommended}
                         for b in plan.backends]}


def _outdated_json() -> dict[str, Any]:
    """``outdated``: whether the engine the plug-in set up must be updated before use, and
    the sentence saying why (its worker is not started: a host asks before every use)."""
    found = outdated()
    info = found or engine_info(ask=False)
    return {"outdated": found is not None, "message": info.message,
            "version": info.version, "protocol": info.protocol,
            "plugin_protocol": _client.PROTOCOL_VERSION, "folder": info.folder,
            "backend": info.backend, "managed": info.managed}


def _emit(line: dict[str, Any], lock: threading.Lock) -> None:
    with lock:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def _cancel_on_request(job: SetupJob) -> None:
    """``--progress json``: a line "cancel" on standard input cancels (as `realscale video`
    reads it; the Resolve Lua script's job runner sends it)."""
    def read() -> None:
        for line in sys.stdin:
            if line.strip() == "cancel":
                job.cancel()
                return

    threading.Thread(target=read, name="realscale-setup-cancel", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """``python realscale_setup.py install [--folder F] [--backend B] [--extras video]``
    (also ``update``, ``remove``, ``info``, ``plan``, ``outdated``): the same set-up, from a
    terminal, for a host whose scripts cannot run it (Resolve's free edition runs only Lua).
    Progress lines go to standard output; Ctrl-C cancels and removes the unfinished
    environment. With ``--progress json`` each progress change and the result are JSON lines
    instead, and a line "cancel" on standard input cancels (a host dialog drives it); ``plan``
    prints what ``detect`` found as one JSON line, ``outdated`` what ``outdated`` found (so a
    host offers "Update the engine" before it fails)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="realscale_setup.py", description="Set up realscale's engine from the wheel "
        "beside this file (as the plug-ins do), or update, remove or describe it.")
    parser.add_argument("action", choices=("install", "update", "remove", "info", "plan",
                                           "outdated"))
    parser.add_argument("--folder", help="where the engine goes (default: %(default)s)",
                        default=default_folder())
    parser.add_argument("--backend", choices=sorted(BACKENDS),
                        help="default: the one recommended for this machine")
    parser.add_argument("--extras", default="", help="realscale extras besides the "
                        "backend's, comma-separated (Resolve: video)")
    parser.add_argument("--progress", choices=("text", "json"), default="text",
                        help="json: progress and result as JSON lines, cancel by a line "
                        "\"cancel\" on standard input (for host dialogs)")
    args = parser.parse_args(argv)
    args.folder = os.path.abspath(os.path.expanduser(args.folder))
    as_json = args.progress == "json"
    lock = threading.Lock()
    if args.action == "info":
        print(engine_info().message)
        return 0
    if args.action == "plan":
        print(json.dumps(_plan_json(detect(args.folder))), flush=True)
        return 0
    if args.action == "outdated":
        print(json.dumps(_outdated_json()), flush=True)
        return 0
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    if args.action == "install":
        plan = detect(args.folder)
        names = [b.name for b in plan.backends]
        problem = plan.problem
        if not problem and args.backend is not None and args.backend not in names:
            problem = (f"The {args.backend} backend is not offered on this machine; choose one "
                       f"of {', '.join(names)}.")
        if problem:
            if as_json:
                _emit({"event": "result", "ok": False, "cancelled": False, "message": problem,
                       "log": None}, lock)
            else:
                print(problem, file=sys.stderr)
            return 1
        chosen = plan.backends[names.index(args.backend)] if args.backend else plan.backend
        if "video" in extras:
            chosen = replace(chosen, need_bytes=chosen.need_bytes + VIDEO_EXTRA_BYTES)
        python = plan.python.label if plan.python else "a Python that uv fetches"
        if not as_json:
            print(f"Setting up realscale {plan.version} in {os.path.abspath(args.folder)}: "
                  f"{chosen.label}, {chosen.size_text}, with {python}.", flush=True)
        job = install(plan, chosen, folder=args.folder, extras=extras)
    else:
        job = update() if args.action == "update" else remove()
    if as_json:
        job.on_progress = lambda p: _emit({"event": "progress", "phase": p.phase,
                                           "label": p.label, "fraction": p.fraction,
                                           "message": p.message}, lock)
        _cancel_on_request(job)
    job.start()
    shown = ""
    try:
        while not job.done:
            progress = job.progress()
            line = progress.label + (f": {progress.message}" if progress.message else "")
            if line != shown and not as_json:
                print(line, flush=True)
                shown = line
            time.sleep(0.2)
    except KeyboardInterrupt:
        if not as_json:
            print("Cancelling...", flush=True)
        job.cancel()
    result = job.wait()
    if result is None:
        return 1
    if as_json:
        _emit({"event": "result", "ok": result.ok, "cancelled": result.cancelled,
               "message": result.message, "log": result.log}, lock)
    else:
        print(result.message, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 130 if result.cancelled else 1


if __name__ == "__main__":
    sys.exit(main())
