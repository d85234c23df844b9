"""Upscale clip with Real-ESRGAN: realscale's script for DaVinci Resolve (Workspace > Scripts).

It upscales the part of the current clip's source media that the timeline uses (plus a few
handle frames), imports the result into a "realscale" bin and puts it on a new video track
directly above the original at the same record frame, or adds it to the original as a take.
The original clip is never deleted or changed (a take leaves it as the selector's first take).
With no clip under the playhead, the one clip selected in the Media Pool is upscaled whole
(audio kept) into the bin.

Resolve runs this file with its own Python (3.6 or later) and injects ``resolve``, so it uses
the standard library only and keeps to Python 3.6 syntax. The upscaling runs in realscale's
own environment: ``<python> -m realscale video ... --progress json``, with the interpreter that
``realscale install resolve`` recorded in the worker config file, as docs/resolve-job.md
describes (the Lua script for Resolve's free edition, realscale_resolve.lua, runs the same job).
Every .py file in Fusion/Scripts/Edit becomes a menu entry (and every sub-folder there a
sub-menu), so this script is one file there; the worker config is found by realscale_wire.py
(core's realscale/wire.py), which `realscale install resolve` puts outside the menus, in
Fusion/Modules/realscale, so the script, the worker and `realscale install` agree on where it
is (plugins/resolve/README.md).
"""

import contextlib
import importlib.util
import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from collections.abc import Callable

    from fusionscript import (
        Folder,
        MediaPoolClipInfo,
        MediaPoolItem,
        Project,
        Resolve,
        Timeline,
        TimelineItem,
    )

TITLE = "Upscale clip with Real-ESRGAN"
BIN_NAME = "realscale"
MODELS = ("realesr-animevideov3", "realesrgan-x4plus", "realesrgan-x4plus-anime",
          "realesr-general-x4v3")
SCALES = ("2", "3", "4")
PURPOSES = ("photo", "anime", "video")
"""Order of the model list: photographs, anime, video frames, then anything else."""
EXACT, FAST = "Exact", "Fast"
FAST_COST = ("Fast computes in {fast}: usually much quicker, and the result differs very "
             "slightly from Exact (not visible in normal viewing).")
NO_FAST = "This device has no fast mode: Exact only."
LARGE = (7680, 4320)
"""Beyond 8K UHD a ProRes clip is heavy for Resolve to play: the dialog says so first."""
CODECS = (("prores", "ProRes 422 HQ"), ("prores4444", "ProRes 4444"))
PLACEMENTS = (("track", "On a new video track above"), ("take", "As a take of the clip"))
SCOPES = (("clip", "Current clip"), ("track", "Every clip on the track"))
DEFAULT_HANDLES = 6
REMEMBERED = "resolve-dialog.json"
KILL_AFTER = 20
"""Seconds a cancelled job may take to stop before it is killed."""


class ScriptError(Exception):
    """Something the user can act on; shown in the dialog as it is."""


class Settings:
    def __init__(self, model: str = MODELS[0], scale: str = "2", codec: str = "prores",
                 placement: str = "track", scope: str = "clip", track: int = 0,
                 handles: int = DEFAULT_HANDLES, folder: str = "",
                 temporal: bool = False, device: str = "auto",
                 precision: str = "auto") -> None:
        self.model = model
        self.scale = scale
        self.codec = codec
        self.placement = placement
        self.scope = scope
        self.track = track
        """Video track of "every clip on the track" (0: the current clip's)."""
        self.handles = handles
        self.folder = folder
        """Output folder; empty: a "realscale" folder beside each source file."""
        self.temporal = temporal
        """Steady video: `realscale video --temporal` (less flicker on still content)."""
        self.device = device
        """A device name the worker reported ("cpu", "cuda:0", ...) or "auto"."""
        self.precision = precision
        """On the wire: "fp32" (Exact), the device's fast one ("bf16", "fp16") or "auto"."""

    def remembered(self) -> "dict[str, Any]":
        """What the dialog offers again next time (docs/resolve-job.md, "Remembered
        settings"); the track of one timeline means nothing in another, so it is left out."""
        return {"model": self.model, "scale": self.scale, "codec": self.codec,
                "placement": self.placement, "scope": self.scope, "handles": self.handles,
                "folder": self.folder, "temporal": self.temporal, "device": self.device,
                "precision": self.precision}


class ClipJob:
    """One clip: which source frames to upscale and where the result goes. ``item`` is None
    for a Media Pool clip, upscaled whole into the bin."""

    def __init__(self, item: "TimelineItem | None", media_item: "MediaPoolItem", path: str,
                 first: int, left: int, used: int, count: int, record: int,
                 track: int, duration: int, frame_ratio: float) -> None:
        self.item = item
        self.media_item = media_item
        self.path = path
        self.first = first
        """Source frame (0-based) of the first upscaled frame, handles included."""
        self.left = left
        """Handle frames before the part the timeline uses."""
        self.used = used
        """Source frames the timeline uses."""
        self.count = count
        """Frames to upscale: handles and used part."""
        self.record = record
        self.track = track
        self.duration = duration
        """Timeline frames the original occupies."""
        self.frame_ratio = frame_ratio
        """Clip frames per timeline frame."""
        self.whole = item is None
        self.name = (item or media_item).GetName() or os.path.basename(path)
        self.output = ""
        self.error = ""
        self.placed = ""


# ---------------------------------------------------------------------------------------------
# The core interpreter and the `realscale video` process


FUSION_FOLDERS = {
    "win32": ("%APPDATA%", "Blackmagic Design", "DaVinci Resolve", "Support", "Fusion"),
    "darwin": ("~", "Library", "Application Support", "Blackmagic Design", "DaVinci Resolve",
               "Fusion"),
    "linux": ("~", ".local", "share", "DaVinciResolve", "Fusion"),
}
"""Resolve's per-user Fusion folder, where `realscale install resolve` puts this script (in
Scripts/Edit) and realscale_wire.py (in WIRE_FOLDER)."""
WIRE_FOLDER = ("Modules", "realscale")
"""Where realscale_wire.py lies in the Fusion folder: outside Scripts/, so no menu lists it."""


def wire_candidates(here: "str | None") -> "list[str]":
    """Where realscale_wire.py may lie, in the order the script looks: in the Fusion folder
    this script was installed into (Scripts/Edit/../../Modules/realscale: also a --dest
    install or an unpacked zip), in Resolve's per-user Fusion folder (when Resolve does not
    tell the script where it lies), beside this script (an install from before it moved),
    and (a source checkout, as the tests run it: plugins/resolve/) in core/."""
    folder = os.path.dirname(os.path.abspath(here)) if here else ""
    fusion = os.path.expanduser(os.path.expandvars(os.path.join(
        *FUSION_FOLDERS.get(sys.platform, FUSION_FOLDERS["linux"]))))
    found = []
    if folder:
        found.append(os.path.join(folder, os.pardir, os.pardir, *WIRE_FOLDER))
    found.append(os.path.join(fusion, *WIRE_FOLDER))
    if folder:
        found.append(folder)
    paths = [os.path.join(f, "realscale_wire.py") for f in found]
    if folder:
        paths.append(os.path.join(folder, os.pardir, os.pardir, "core", "realscale", "wire.py"))
    return [os.path.normpath(path) for path in paths]


def wire() -> Any:
    """realscale_wire: core's config lookup and reading (realscale/wire.py), which
    `realscale install resolve` copies into Fusion/Modules/realscale, so script and worker
    agree on where the config is; see wire_candidates for where it is looked for."""
    loaded = sys.modules.get("realscale_wire")
    if loaded is not None:
        return loaded
    here = globals().get("__file__")
    for path in wire_candidates(here if isinstance(here, str) else None):
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("realscale_wire", path)
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules["realscale_wire"] = module
            return module
    raise ScriptError("realscale_wire.py is missing from Resolve's Fusion/Modules/realscale "
                      "folder; run `realscale install resolve` in a terminal, then run this "
                      "script again")


def config_path() -> str:
    """Where `realscale install` writes the worker config: realscale_wire decides."""
    return str(wire().config_path())


def remembered_path() -> str:
    """The dialog's remembered choices: beside the worker config, one file per script."""
    return os.path.join(os.path.dirname(config_path()), REMEMBERED)


def load_remembered() -> "dict[str, Any]":
    """The choices saved by the last run; nothing (all defaults) when unreadable."""
    try:
        with open(remembered_path(), encoding="utf-8") as handle:
            values = json.load(handle)
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) else {}


def save_remembered(values: "dict[str, Any]") -> None:
    """Merge ``values`` into the remembered choices (written whole, then renamed); a
    folder that cannot be written only means the choices are not remembered."""
    merged = load_remembered()
    merged.update(values)
    path = remembered_path()
    with contextlib.suppress(OSError):
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(merged, handle, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)


def core_python() -> "tuple[str, list[str]]":
    """The interpreter of realscale's own environment and the folders it needs on
    PYTHONPATH, from the worker config (read by realscale_wire, as the worker reads it)."""
    module = wire()
    fix = "run `realscale install resolve` in a terminal, then run this script again"
    try:
        config = module.read_config(host="resolve")
    except module.ConfigError as exc:
        raise ScriptError(str(exc).rstrip(".")) from None
    path = config.get("_path")
    python = config.get("python")
    if not isinstance(python, str) or not python:
        raise ScriptError(f"{path} names no Python interpreter; {fix}")
    if not os.path.isfile(python):
        raise ScriptError(f"realscale's Python {python} does not exist any more; {fix}")
    extra = config.get("pythonpath")
    pythonpath = [p for p in extra if isinstance(p, str)] if isinstance(extra, list) else []
    return python, pythonpath


def clean_environment(pythonpath: "list[str]") -> "dict[str, str]":
    """Resolve's own Python and Qt settings must not leak into realscale's interpreter."""
    return dict(wire().worker_environment(pythonpath))


class Runner:
    """`realscale video` in a subprocess; its JSON progress lines arrive in ``events``."""

    def __init__(self, python: str, pythonpath: "list[str]", args: "list[str]") -> None:
        self.events = queue.Queue()  # type: queue.Queue[dict[str, Any]]
        self.stderr = []  # type: list[str]
        self.cancelled = False
        self.cancel_time = 0.0
        flags = 0x08000000 if sys.platform == "win32" else 0  # CREATE_NO_WINDOW
        try:
            self.process = subprocess.Popen(
                [python, "-m", "realscale", "video"] + args, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=clean_environment(pythonpath), cwd=os.path.expanduser("~"),
                encoding="utf-8", errors="replace", bufsize=1, creationflags=flags)
        except OSError as exc:
            raise ScriptError(f"could not start realscale ({python}): {exc}") from None
        self._readers = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_errors, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_events(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.events.put(event)

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line.rstrip())
            del self.stderr[:-40]

    def poll(self) -> "list[dict[str, Any]]":
        found = []
        while True:
            try:
                found.append(self.events.get_nowait())
            except queue.Empty:
                return found

    def returncode(self) -> "int | None":
        """The exit status once the process ended and its output was read, else None."""
        if self.process.poll() is None or any(r.is_alive() for r in self._readers):
            if self.cancelled and time.monotonic() - self.cancel_time > KILL_AFTER:
                self.process.kill()
            return None
        return self.process.returncode

    def cancel(self) -> None:
        """Ask realscale to stop; it removes its unfinished output."""
        if self.cancelled:
            return
        self.cancelled = True
        self.cancel_time = time.monotonic()
        try:
            assert self.process.stdin is not None
            self.process.stdin.write("cancel\n")
            self.process.stdin.flush()
        except (OSError, ValueError):
            self.process.terminate()

    def error_text(self) -> str:
        lines = [line for line in self.stderr if line.strip()]
        return lines[-1].replace("realscale: ", "", 1) if lines else "realscale failed"


# ---------------------------------------------------------------------------------------------
# What the dialog offers: realscale's worker, asked from realscale's own Python

ASK_PROGRAM = '''
import json
import sys


# --- realscale ask: the same text in realscale_resolve.py and realscale_resolve.lua ---
def ask(request, emit):
    """Asks realscale's worker what the Resolve dialog offers; ``emit`` gets each answer.

    Runs in realscale's own Python. ``request``: "facts" (true: the models and the devices),
    "measure" ({"model", "device", "precision"}: a rate timed by the worker), "pythonpath"
    (folders the worker needs). A worker without the devices or measure request answers
    with no devices or an error, and the dialog falls back.
    """
    import importlib.util

    import realscale.wire  # noqa: F401 - the client below shares the worker's own module

    try:
        from realscale.install import client_file
    except ImportError:
        from realscale.install.sources import client_file
    spec = importlib.util.spec_from_file_location("realscale_client", str(client_file()))
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    with client.WorkerClient(sys.executable, pythonpath=request.get("pythonpath") or None,
                             host="resolve") as worker:
        if request.get("facts"):
            try:
                devices = worker.devices()
            except (AttributeError, client.WorkerError):
                devices = []
            emit({"answer": "facts", "models": worker.models(), "devices": devices})
        wanted = request.get("measure")
        if wanted:
            try:
                rate = worker.measure(wanted["model"], wanted["device"], wanted["precision"])
            except (AttributeError, client.WorkerError) as exc:
                rate = {"error": str(exc)}
            emit(dict(rate, answer="measure", asked=wanted))
# --- end of realscale ask ---


def main():
    def emit(answer):
        sys.stdout.write(json.dumps(answer) + "\\n")
        sys.stdout.flush()

    try:
        ask(json.loads(sys.stdin.readline()), emit)
    except Exception as exc:  # noqa: BLE001 - reported to the dialog, never lost
        emit({"answer": "error", "message": str(exc) or type(exc).__name__})


main()
'''
"""Run as ``<python> -c ASK_PROGRAM``, the request as one JSON line on standard input, the
answers as JSON lines on standard output (docs/resolve-job.md, "Asking the worker")."""


class Asker:
    """One ASK_PROGRAM run in a thread; its answers arrive in ``answers``."""

    def __init__(self, python: str, pythonpath: "list[str]", request: "dict[str, Any]") -> None:
        self.answers = queue.Queue()  # type: queue.Queue[dict[str, Any]]
        self.done = False
        flags = 0x08000000 if sys.platform == "win32" else 0  # CREATE_NO_WINDOW
        request = dict(request, pythonpath=pythonpath)
        try:
            self.process = subprocess.Popen(
                [python, "-c", ASK_PROGRAM], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=clean_environment(pythonpath),
                cwd=os.path.expanduser("~"), encoding="utf-8", errors="replace",
                creationflags=flags)
        except OSError as exc:
            raise ScriptError(f"could not start realscale ({python}): {exc}") from None
        thread = threading.Thread(target=self._talk, args=(json.dumps(request),), daemon=True)
        thread.start()

    def _talk(self, request: str) -> None:
        try:
            out, err = self.process.communicate(request + "\n", timeout=300)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        answered = False
        for line in out.splitlines():
            with contextlib.suppress(ValueError):
                answer = json.loads(line)
                if isinstance(answer, dict):
                    self.answers.put(answer)
                    answered = True
        if not answered:
            lines = [line for line in err.splitlines() if line.strip()]
            self.answers.put({"answer": "error",
                              "message": lines[-1] if lines else "realscale did not answer"})
        self.done = True

    def poll(self) -> "list[dict[str, Any]]":
        found = []
        while True:
            try:
                found.append(self.answers.get_nowait())
            except queue.Empty:
                return found

    def stop(self) -> None:
        if not self.done:
            with contextlib.suppress(OSError):
                self.process.kill()


def model_entries(models: "list[dict[str, Any]]") -> "list[tuple[str, str]]":
    """(entry, name) for the model list: by purpose ("Photos and real-world images:
    realesrgan-x4plus"), a download's weight said, the default first within its purpose."""

    def order(model: "dict[str, Any]") -> "tuple[int, bool, str]":
        purpose = model.get("purpose")
        rank = PURPOSES.index(purpose) if purpose in PURPOSES else len(PURPOSES)
        return rank, not model.get("default"), str(model.get("name"))

    entries = []
    for model in sorted((m for m in models if isinstance(m.get("name"), str)), key=order):
        name = model["name"]
        label = model.get("purpose_label")
        text = f"{label}: {name}" if isinstance(label, str) and label else name
        size = model.get("download_bytes")
        if isinstance(size, int) and size > 0:
            text += f" (download, {size / 1e6:.0f} MB)"
        entries.append((text, name))
    return entries


def device_entries(devices: "list[dict[str, Any]]") -> "list[tuple[str, dict[str, Any]]]":
    """(entry, device) for the device list: each device the worker reported, a GPU with its
    free memory; none reported: "auto" alone."""
    entries = []
    for device in devices:
        if not isinstance(device, dict) or not isinstance(device.get("name"), str):
            continue
        text = str(device.get("label") or device["name"])
        free = device.get("free_bytes")
        if isinstance(free, int) and device.get("kind") != "cpu":
            text += f" ({free / 2**30:.1f} GB free)"
        entries.append((text, device))
    return entries or [("Automatic (the best this machine has)", {"name": "auto", "fast": None})]


def output_size(width: int, height: int, scale: str) -> "tuple[int, int]":
    factor = float(scale)
    return int(round(width * factor)), int(round(height * factor))


def rate_key(model: str, device: str, precision: str) -> str:
    return f"{model}|{device}|{precision}"


# ---------------------------------------------------------------------------------------------
# Reading the timeline


def _number(value: Any) -> "float | None":
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _frames(method: "Callable[[bool], int | float]") -> int:
    """A whole-frame position: Resolve 19 and later take ``subframe_precision``, older
    versions no argument."""
    try:
        value = method(False)
    except TypeError:
        value = cast(Any, method)()
    return int(round(value))


def _track_of(timeline: "Timeline", item: "TimelineItem") -> int:
    try:
        kind, index = item.GetTrackTypeAndIndex()
        if kind == "video" and int(index) > 0:
            return int(index)
    except (AttributeError, TypeError, ValueError):
        pass  # Resolve before 19: look for the item on each track
    wanted = item.GetUniqueId()
    for index in range(1, timeline.GetTrackCount("video") + 1):
        for other in timeline.GetItemListInTrack("video", index) or []:
            if other.GetUniqueId() == wanted:
                return index
    raise ScriptError(f"could not find the track of {item.GetName()}")


def _frame_rate(timeline: "Timeline", project: "Project") -> "float | None":
    for value in (timeline.GetSetting("timelineFrameRate"),
                  project.GetSetting("timelineFrameRate")):
        rate = _number(value)
        if rate:
            return rate
    return None


def plan_clip(timeline: "Timeline", project: "Project", item: "TimelineItem",
              settings: Settings, track: int) -> ClipJob:
    """Which source frames a timeline clip uses, plus handles; ScriptError if it cannot be
    upscaled (no file, offline, speed-changed)."""
    name = item.GetName()
    media_item = item.GetMediaPoolItem()
    if media_item is None:
        raise ScriptError(f"{name} is not a media clip (a title, generator or compound clip)")
    path = media_item.GetClipProperty("File Path")
    if not isinstance(path, str) or not path:
        raise ScriptError(f"{name} has no source file")
    if not os.path.isfile(path):
        raise ScriptError(f"the source of {name} is offline ({path})")
    clip_frames = _number(media_item.GetClipProperty("Frames"))
    clip_rate = _number(media_item.GetClipProperty("FPS"))
    timeline_rate = _frame_rate(timeline, project)
    start = int(item.GetSourceStartFrame())
    end = int(item.GetSourceEndFrame())
    duration = _frames(item.GetDuration)
    first_number = _number(media_item.GetClipProperty("Start"))
    if clip_frames and start >= clip_frames and first_number and start >= first_number:
        # Frames counted from the file's first frame number (image sequences, timecode).
        start, end = start - int(first_number), end - int(first_number)
    ratio = clip_rate / timeline_rate if clip_rate and timeline_rate else 1.0
    if abs(ratio - 1.0) < 0.001:
        ratio = 1.0  # the same rate written two ways (23.976 and 23.98)
    expected = duration * ratio
    span = end - start
    # GetSourceEndFrame is the last frame in some Resolve versions and the one after it in
    # others; the clip's duration tells which. Placement checks the result again.
    if abs(span - expected) < 0.5:
        used = span
    elif abs(span + 1 - expected) < 0.5:
        used = span + 1
    elif abs(span + 1 - expected) <= 2 * max(ratio, 1.0):
        used = span + 1  # frame-rate conversion rounding
    else:
        raise ScriptError(f"{name} has a speed change; realscale upscales clips that play at "
                          "normal speed (render the retime first)")
    used = max(used, 1)
    left = min(settings.handles, start)
    right = settings.handles
    if clip_frames:
        right = max(0, min(right, int(clip_frames) - (start + used)))
    record = _frames(item.GetStart)
    return ClipJob(item, media_item, path, start - left, left, used, left + used + right,
                   record, track, duration, ratio)


def plan_clips(project: "Project", timeline: "Timeline",
               settings: Settings) -> "tuple[list[ClipJob], list[str]]":
    """The clips to upscale and, for those that cannot be, why."""
    current = timeline.GetCurrentVideoItem()
    if settings.scope == "track":
        track = settings.track or (_track_of(timeline, current) if current else 1)
        if track > timeline.GetTrackCount("video"):
            raise ScriptError(f"the timeline has no video track {track}")
        items = list(timeline.GetItemListInTrack("video", track) or [])
        if not items:
            raise ScriptError(f"video track {track} has no clips")
    else:
        if current is None:
            return [plan_pool_clip(project)], []
        track = _track_of(timeline, current)
        items = [current]
    jobs, skipped = [], []
    for item in items:
        try:
            jobs.append(plan_clip(timeline, project, item, settings, track))
        except ScriptError as exc:
            skipped.append(str(exc))
    return jobs, skipped


def plan_pool_clip(project: "Project") -> ClipJob:
    """No clip under the playhead: the one clip selected in the Media Pool, whole."""
    selected = list(project.GetMediaPool().GetSelectedClips() or [])
    if len(selected) > 1:
        raise ScriptError(f"no video clip under the playhead, and {len(selected)} clips are "
                          "selected in the Media Pool; put the playhead on the clip to upscale "
                          "or select just one")
    if not selected:
        raise ScriptError("no video clip under the playhead; move the playhead onto the clip "
                          "to upscale (or select one clip in the Media Pool)")
    media_item = selected[0]
    name = media_item.GetName()
    kind = str(media_item.GetClipProperty("Type") or "")
    if "Video" not in kind:
        raise ScriptError(f"{name} is not a video clip ({kind or 'no type'})")
    path = media_item.GetClipProperty("File Path")
    if not isinstance(path, str) or not path:
        raise ScriptError(f"{name} has no source file")
    if not os.path.isfile(path):
        raise ScriptError(f"the source of {name} is offline ({path})")
    frames = int(_number(media_item.GetClipProperty("Frames")) or 0)
    return ClipJob(None, media_item, path, 0, 0, frames, frames, 0, 0, frames, 1.0)


def resolution(media_item: "MediaPoolItem") -> "tuple[int, int] | None":
    """A clip's frame size from its "Resolution" property ("1920x1080")."""
    text = str(media_item.GetClipProperty("Resolution") or "")
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
        return int(parts[0]), int(parts[1])
    return None


def preview(project: "Project", timeline: "Timeline",
            settings: Settings) -> "tuple[int, int, int]":
    """(width, height, frames) of what Upscale would do now: the first clip's size (0, 0 if
    unknown) and the frames of every clip; ScriptError when there is nothing to upscale."""
    jobs, skipped = plan_clips(project, timeline, settings)
    if not jobs:
        raise ScriptError("; ".join(skipped) or "nothing to upscale")
    width, height = resolution(jobs[0].media_item) or (0, 0)
    return width, height, sum(job.count for job in jobs)


def output_path(job: ClipJob, settings: Settings) -> str:
    folder = settings.folder or os.path.join(os.path.dirname(job.path), BIN_NAME)
    folder = os.path.abspath(os.path.expanduser(folder))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ScriptError(f"cannot create the output folder {folder} ({exc.strerror}); "
                          "choose another folder") from None
    stem = os.path.splitext(os.path.basename(job.path))[0]
    base = f"{stem}_x{settings.scale}"
    if not job.whole:
        base += f"_{job.first}-{job.first + job.count - 1}"
    path = os.path.join(folder, base + ".mov")
    number = 2
    while os.path.exists(path):
        path = os.path.join(folder, f"{base}_{number}.mov")
        number += 1
    return path


def video_args(job: ClipJob, settings: Settings) -> "list[str]":
    """The arguments of docs/resolve-job.md: part of a timeline clip without its audio (the
    original's keeps playing), or a whole Media Pool clip with it."""
    args = [job.path, "-o", job.output, "--model", settings.model, "--scale", settings.scale,
            "--codec", settings.codec]
    if settings.temporal:
        args.append("--temporal")
    if settings.device != "auto":
        args += ["--device", settings.device]
    if settings.precision != "auto":
        args += ["--precision", settings.precision]
    if not job.whole:
        args += ["--start-frame", str(job.first), "--frames", str(job.count), "--no-audio"]
    return args + ["--no-subtitles", "--download", "--progress", "json"]


# ---------------------------------------------------------------------------------------------
# Bringing the result back


class _AppendsClipInfo:
    """The documented ``AppendToTimeline([clipInfo, ...])`` form. fusionscript-stubs 21.0.0
    declares the first AppendToTimeline without @overload, so mypy only sees the
    ``(clip1, *clips)`` form; this typed view keeps the clip-info dicts checked."""

    def AppendToTimeline(self, clipInfo: "list[MediaPoolClipInfo]") -> "list[TimelineItem]":
        raise NotImplementedError


class Placer:
    """Imports upscaled files into the "realscale" bin and puts them on the timeline."""

    def __init__(self, project: "Project", timeline: "Timeline") -> None:
        self.project = project
        self.timeline = timeline
        self.media_pool = project.GetMediaPool()
        self.tracks = {}  # type: dict[int, int]

    def bin(self) -> "Folder":
        root = self.media_pool.GetRootFolder()
        for folder in root.GetSubFolderList() or []:
            if folder.GetName() == BIN_NAME:
                return folder
        created = self.media_pool.AddSubFolder(root, BIN_NAME)
        if not created:
            raise ScriptError(f"could not create the {BIN_NAME} bin in the media pool")
        return created

    def import_clip(self, job: ClipJob) -> "MediaPoolItem":
        target = self.bin()
        previous = self.media_pool.GetCurrentFolder()
        self.media_pool.SetCurrentFolder(target)
        try:
            imported = self.media_pool.ImportMedia([job.output])
        finally:
            if previous:
                self.media_pool.SetCurrentFolder(previous)
        if not imported:
            raise ScriptError(f"Resolve could not import {job.output}")
        clip = imported[0]
        frames = _number(clip.GetClipProperty("Frames"))
        if frames is not None and int(frames) != job.count:
            self.media_pool.DeleteClips([clip])
            raise ScriptError(f"Resolve sees {int(frames)} frames in {job.output} where "
                              f"realscale wrote {job.count}")
        return clip

    def take_back(self, clip: "MediaPoolItem") -> None:
        """After a placement failed: empty tracks this session added and the imported clip
        go again, so the timeline and the Media Pool are as they were."""
        for original, track in sorted(self.tracks.items(), key=lambda t: -t[1]):
            if not self._clip_ids(track) and self.timeline.DeleteTrack("video", track):
                del self.tracks[original]
                for other, index in list(self.tracks.items()):
                    if index > track:
                        self.tracks[other] = index - 1
        self.media_pool.DeleteClips([clip])

    def track_above(self, track: int) -> int:
        """A new, empty video track directly above ``track`` (one per original track)."""
        if track in self.tracks:
            return self.tracks[track]
        before = self.timeline.GetTrackCount("video")
        wanted = min(track + 1, before + 1)
        above = self._clip_ids(wanted) if wanted <= before else []
        added = self.timeline.AddTrack("video", {"audiotype": "mono", "index": wanted})
        if not added:
            # Resolve before 19.1 only appends tracks (its second argument is for audio).
            added = self.timeline.AddTrack("video", "mono")
            wanted = before + 1
        if not added or self.timeline.GetTrackCount("video") != before + 1:
            raise ScriptError("Resolve could not add a video track")
        if above and self._clip_ids(wanted) == above:
            wanted = before + 1  # this Resolve ignored the index and put the track on top
        self.timeline.SetTrackName("video", wanted, BIN_NAME)
        for original, new in list(self.tracks.items()):
            if new >= wanted:
                self.tracks[original] = new + 1
        self.tracks[track] = wanted
        return wanted

    def _clip_ids(self, track: int) -> "list[str]":
        return [item.GetUniqueId()
                for item in self.timeline.GetItemListInTrack("video", track) or []]

    def place_on_track(self, job: ClipJob, clip: "MediaPoolItem") -> str:
        track = self.track_above(job.track)
        appender = cast(_AppendsClipInfo, self.media_pool)
        end = job.left + job.used - 1
        slack = 0 if job.frame_ratio == 1.0 else 1
        for _attempt in range(2):
            info = {"mediaPoolItem": clip, "startFrame": job.left, "endFrame": end,
                    "mediaType": 1, "trackIndex": track,
                    "recordFrame": job.record}  # type: MediaPoolClipInfo
            placed = appender.AppendToTimeline([info])
            if not placed:
                raise ScriptError(f"Resolve could not put {job.name} on video track {track}")
            item = placed[0]
            start = _frames(item.GetStart)
            length = _frames(item.GetDuration)
            if start != job.record:
                self.timeline.DeleteClips([item], False)
                raise ScriptError(f"Resolve put the upscaled {job.name} at frame {start} "
                                  f"instead of {job.record}; it was removed again")
            if abs(length - job.duration) <= slack:
                return f"on video track {track} at frame {job.record}"
            # This Resolve counts endFrame the other way: take our clip away, try again.
            self.timeline.DeleteClips([item], False)
            end += _frames_off(job.duration - length, job.frame_ratio)
        raise ScriptError(f"Resolve placed the upscaled {job.name} with the wrong length; it "
                          "was removed again")

    def place_as_take(self, job: ClipJob, clip: "MediaPoolItem") -> str:
        item = job.item
        assert item is not None, "a Media Pool clip has no timeline item to take"
        end = job.left + job.used - 1
        for _attempt in range(2):
            if not item.AddTake(clip, job.left, end):
                raise ScriptError(f"Resolve could not add a take to {job.name}")
            index = item.GetTakesCount()
            item.SelectTakeByIndex(index)
            length = _frames(item.GetDuration)
            if abs(length - job.duration) <= (0 if job.frame_ratio == 1.0 else 1):
                return f"as take {index} of the clip"
            item.DeleteTakeByIndex(index)
            end += _frames_off(job.duration - length, job.frame_ratio)
        raise ScriptError(f"Resolve made a take of the wrong length for {job.name}; it was "
                          "removed again")


def _frames_off(timeline_frames: int, ratio: float) -> int:
    step = int(round(timeline_frames * ratio))
    return step if step else (1 if timeline_frames > 0 else -1)


# ---------------------------------------------------------------------------------------------
# The work, one clip after another, driven by a timer so the dialog stays responsive


class Session:
    def __init__(self, project: "Project", timeline: "Timeline", settings: Settings,
                 python: str, jobs: "list[ClipJob]", skipped: "list[str]",
                 pythonpath: "list[str] | None" = None) -> None:
        self.settings = settings
        self.python = python
        self.pythonpath = pythonpath or []
        self.jobs = jobs
        self.skipped = skipped
        self.placer = Placer(project, timeline)
        self.index = 0
        self.runner = None  # type: Runner | None
        self.status = ""
        self.finished = False
        self.cancelled = False
        self.rates = {}  # type: dict[str, Any]
        """Rates of the jobs that finished (input pixels per second, whole job), by
        rate_key: the dialog's estimate next time."""

    def cancel(self) -> None:
        self.cancelled = True
        if self.runner is not None:
            self.runner.cancel()

    def step(self) -> None:
        """Advance: start the next clip, read progress, place finished clips."""
        if self.finished:
            return
        if self.runner is None:
            if self.cancelled or self.index >= len(self.jobs):
                self._finish()
                return
            job = self.jobs[self.index]
            try:
                job.output = output_path(job, self.settings)
                self.runner = Runner(self.python, self.pythonpath,
                                     video_args(job, self.settings))
            except ScriptError as exc:
                job.error = str(exc)
                self.index += 1
                return
            self.status = self._prefix(job) + "starting realscale..."
            return
        job = self.jobs[self.index]
        runner = self.runner
        for event in runner.poll():
            self._event(job, event)
        code = runner.returncode()
        if code is None:
            return
        for event in runner.poll():
            self._event(job, event)
        self.runner = None
        self.index += 1
        if code != 0 or job.error:
            job.error = job.error or runner.error_text()
            return
        if self.cancelled:
            with contextlib.suppress(OSError):
                os.remove(job.output)  # finished just as it was cancelled: cancel wins
            return
        try:
            clip = self.placer.import_clip(job)
        except ScriptError as exc:
            job.error = str(exc)
            return
        if job.whole:
            job.placed = f"in the {BIN_NAME} bin"
            return
        try:
            if self.settings.placement == "take":
                job.placed = self.placer.place_as_take(job, clip)
            else:
                job.placed = self.placer.place_on_track(job, clip)
        except ScriptError as exc:
            self.placer.take_back(clip)
            job.error = f"{exc}; the upscaled file is {job.output}"

    def _event(self, job: ClipJob, event: "dict[str, Any]") -> None:
        kind = event.get("event")
        if kind == "start":
            frames = int(event.get("frames", job.count))
            if not job.whole and frames < job.left + job.used:
                job.error = (f"{os.path.basename(job.path)} has only {frames} frames from "
                             f"frame {job.first}; Resolve expected {job.left + job.used}")
                if self.runner is not None:
                    self.runner.cancel()
            job.count = frames
        elif kind == "progress":
            done, total = int(event.get("done", 0)), int(event.get("total", job.count))
            fps = float(event.get("fps") or 0.0)
            eta = event.get("eta")
            left = f" - about {_clock(float(eta))} left" if eta is not None else ""
            self.status = f"{self._prefix(job)}frame {done} of {total} - {fps:.2f} fps{left}"
        elif kind == "done":
            job.output = str(event.get("output", job.output))
            size = resolution(job.media_item)
            seconds, frames = float(event.get("seconds") or 0), int(event.get("frames") or 0)
            if size and seconds > 0 and frames > 0:
                settings = self.settings
                key = rate_key(settings.model, settings.device, settings.precision)
                self.rates[key] = {"pixels_per_second": frames * size[0] * size[1] / seconds,
                                   "from": "run"}
        elif kind in ("error", "cancelled"):
            job.error = job.error or str(event.get("message", "realscale failed"))

    def _prefix(self, job: ClipJob) -> str:
        return f"Clip {self.index + 1} of {len(self.jobs)} ({job.name}): "

    def _finish(self) -> None:
        self.finished = True
        self.status = self.summary()

    def summary(self) -> str:
        lines = []
        for job in self.jobs:
            if job.placed:
                lines.append(f"{job.name}: upscaled, {job.placed}.")
            elif job.error:
                lines.append(f"{job.name}: {job.error.rstrip('.')}.")
            elif self.cancelled:
                lines.append(f"{job.name}: not done (cancelled).")
        lines += [f"Skipped: {reason.rstrip('.')}." for reason in self.skipped]
        if self.cancelled:
            lines.insert(0, "Cancelled.")
        return "\n".join(lines) or "Nothing to do."


def _clock(seconds: float) -> str:
    whole = int(round(seconds))
    if whole >= 3600:
        return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    return f"{whole // 60}:{whole % 60:02d}"


# ---------------------------------------------------------------------------------------------
# The dialog (Fusion UIManager: fusionscript-stubs does not type it, hence Any)

_INPUTS = ("Model", "Device", "Precision", "Scale", "Codec", "Temporal", "Scope", "Track",
           "Placement", "Handles", "Folder")
TEMPORAL_TEXT = "Steady video (less flicker)"
TEMPORAL_TIP = ("Blends each frame with the previous result where the picture did not move, "
                "so still backgrounds stop shimmering; new content and scene cuts stay as "
                "upscaled.")


class Dialog:
    """Model (by purpose), device, precision, scale and placement, with the result's size and
    an estimate of time; then progress, cancel, and what happened to each clip.

    ``preview(settings)`` gives the chosen clips' (width, height, frames) or raises
    ScriptError; ``core()`` gives realscale's (python, pythonpath) or raises ScriptError."""

    def __init__(self, ui: Any, dispatcher: Any, timeline: "Timeline", start: Any,
                 preview: Any = None, core: Any = None) -> None:
        self.ui = ui
        self.dispatcher = dispatcher
        self.start = start
        self.preview = preview
        self.core = core
        self.session = None  # type: Session | None
        self.busy = False
        self.filling = False
        self.remembered = load_remembered()
        rates = self.remembered.get("rates")
        self.rates = dict(rates) if isinstance(rates, dict) else {}  # type: dict[str, Any]
        self.models = [(name, name) for name in MODELS]  # type: list[tuple[str, str]]
        self.devices = device_entries([])
        self.asker = None  # type: Asker | None
        self.asking = ""
        """What the worker is being asked ("facts", "measure"); empty when nothing is."""
        self.asked = set()  # type: set[str]
        self.measure_error = ""
        count = timeline.GetTrackCount("video")
        tracks = [f"V{i} {timeline.GetTrackName('video', i) or ''}".strip()
                  for i in range(1, count + 1)]
        current = timeline.GetCurrentVideoItem()

        def row(label: str, widget: Any) -> Any:
            return ui.HGroup({"Weight": 0}, [ui.Label({"Text": label, "Weight": 0.25}),
                                             widget])

        self.window = dispatcher.AddWindow(
            {"ID": "RealscaleWindow", "WindowTitle": TITLE, "Geometry": [300, 200, 640, 560]},
            ui.VGroup([
                row("Model", ui.ComboBox({"ID": "Model", "Editable": True, "Weight": 0.75})),
                row("Device", ui.ComboBox({"ID": "Device", "Weight": 0.75})),
                row("Precision", ui.ComboBox({"ID": "Precision", "Weight": 0.75})),
                row("", ui.Label({"ID": "PrecisionNote", "Text": "", "WordWrap": True,
                                  "Weight": 0.75})),
                row("Scale", ui.ComboBox({"ID": "Scale", "Weight": 0.75})),
                row("Result", ui.Label({"ID": "Estimate", "Text": "", "WordWrap": True,
                                        "Weight": 0.75})),
                row("Codec", ui.ComboBox({"ID": "Codec", "Weight": 0.75})),
                row("", ui.CheckBox({"ID": "Temporal", "Text": TEMPORAL_TEXT,
                                     "ToolTip": TEMPORAL_TIP, "Weight": 0.75})),
                row("Clips", ui.ComboBox({"ID": "Scope", "Weight": 0.75})),
                row("Track", ui.ComboBox({"ID": "Track", "Weight": 0.75})),
                row("Place", ui.ComboBox({"ID": "Placement", "Weight": 0.75})),
                row("Handle frames", ui.SpinBox({"ID": "Handles", "Minimum": 0,
                                                 "Maximum": 240, "Value": DEFAULT_HANDLES,
                                                 "Weight": 0.75})),
                row("Output folder", ui.LineEdit({
                    "ID": "Folder", "PlaceholderText": "a 'realscale' folder beside each source",
                    "Weight": 0.75})),
                ui.Label({"ID": "Status", "Text": "", "WordWrap": True, "Weight": 1}),
                ui.HGroup({"Weight": 0}, [ui.Button({"ID": "Go", "Text": "Upscale"}),
                                          ui.Button({"ID": "Close", "Text": "Close"})]),
            ]))
        self.items = items = self.window.GetItems()
        for key, values in (("Scale", SCALES),
                            ("Codec", [label for _, label in CODECS]),
                            ("Scope", [label for _, label in SCOPES]),
                            ("Track", tracks or ["V1"]),
                            ("Placement", [label for _, label in PLACEMENTS])):
            items[key].AddItems(list(values))
        if current is not None:
            items["Track"].CurrentIndex = _track_of(timeline, current) - 1
        self.fill_lists(self.remembered)
        self.restore(self.remembered)
        self.timer = ui.Timer({"ID": "RealscaleTick", "Interval": 250})
        self.window.On.Go.Clicked = self.on_go
        self.window.On.Close.Clicked = self.on_close
        self.window.On.RealscaleWindow.Close = self.on_close
        for key in ("Model", "Device", "Precision", "Scale", "Scope", "Track"):
            getattr(self.window.On, key).CurrentIndexChanged = self.on_change
        self.window.On.Model.EditTextChanged = self.on_change
        self.window.On.Handles.ValueChanged = self.on_change
        # Timer events reach the window in some Resolve versions and the dispatcher in
        # others; on_tick does nothing when called twice.
        self.window.On.RealscaleTick.Timeout = self.on_tick
        with contextlib.suppress(AttributeError, TypeError):
            dispatcher.On.Timeout = self.on_tick
        self.ask({"facts": True})
        self.refresh()
        self.timer.Start()

    # -- the choices ------------------------------------------------------------------------

    def model_name(self) -> str:
        text = str(self.items["Model"].CurrentText).strip()
        for entry, name in self.models:
            if text == entry:
                return name
        return text or MODELS[0]

    def device(self) -> "dict[str, Any]":
        index = int(self.items["Device"].CurrentIndex)
        return self.devices[index][1] if 0 <= index < len(self.devices) else self.devices[0][1]

    def precision(self) -> str:
        fast = self.device().get("fast")
        if str(self.items["Precision"].CurrentText) == FAST and isinstance(fast, str):
            return fast
        return "fp32"

    def settings(self) -> Settings:
        items = self.items
        scope = SCOPES[int(items["Scope"].CurrentIndex)][0]
        return Settings(
            model=self.model_name(),
            scale=str(items["Scale"].CurrentText),
            codec=CODECS[int(items["Codec"].CurrentIndex)][0],
            placement=PLACEMENTS[int(items["Placement"].CurrentIndex)][0],
            scope=scope,
            track=int(items["Track"].CurrentIndex) + 1 if scope == "track" else 0,
            handles=int(items["Handles"].Value),
            folder=str(items["Folder"].Text or "").strip(),
            temporal=bool(items["Temporal"].Checked),
            device=str(self.device().get("name")),
            precision=self.precision())

    def fill_lists(self, wanted: "dict[str, Any]") -> None:
        """(Re)fill the model and device lists, keeping or restoring ``wanted``'s choices."""
        items = self.items
        self.filling = True
        try:
            for key, entries in (("Model", [e for e, _ in self.models]),
                                 ("Device", [e for e, _ in self.devices])):
                items[key].Clear()
                items[key].AddItems(entries)
            model = wanted.get("model")
            if isinstance(model, str) and model.strip():
                label = [entry for entry, name in self.models if name == model]
                items["Model"].CurrentText = label[0] if label else model
            names = [str(device.get("name")) for _, device in self.devices]
            device = wanted.get("device")
            if device in names:
                items["Device"].CurrentIndex = names.index(str(device))
            else:  # the first GPU, else the first device
                kinds = [device.get("kind") for _, device in self.devices]
                gpus = [i for i, kind in enumerate(kinds) if kind not in (None, "cpu")]
                items["Device"].CurrentIndex = gpus[0] if gpus else 0
            self.fill_precision(wanted.get("precision"))
        finally:
            self.filling = False

    def fill_precision(self, wanted: Any) -> None:
        items = self.items
        fast = self.device().get("fast")
        entries = [EXACT, FAST] if isinstance(fast, str) else [EXACT]
        before = wanted if wanted is not None else self.precision()
        items["Precision"].Clear()
        items["Precision"].AddItems(entries)
        items["Precision"].CurrentIndex = 1 if isinstance(fast, str) and before == fast else 0
        items["PrecisionNote"].Text = (FAST_COST.format(fast=fast) if isinstance(fast, str)
                                       else NO_FAST if self.device().get("name") != "auto"
                                       else "")

    def restore(self, values: "dict[str, Any]") -> None:
        """Put the remembered choices back; anything unknown or malformed keeps its
        default."""
        items = self.items

        def choose(key: str, entries: "list[str]", wanted: Any) -> None:
            if isinstance(wanted, str) and wanted in entries:
                items[key].CurrentIndex = entries.index(wanted)

        choose("Scale", list(SCALES), values.get("scale"))
        choose("Codec", [name for name, _ in CODECS], values.get("codec"))
        choose("Scope", [name for name, _ in SCOPES], values.get("scope"))
        choose("Placement", [name for name, _ in PLACEMENTS], values.get("placement"))
        handles = values.get("handles")
        if isinstance(handles, int) and 0 <= handles <= 240:
            items["Handles"].Value = handles
        folder = values.get("folder")
        if isinstance(folder, str):
            items["Folder"].Text = folder
        items["Temporal"].Checked = values.get("temporal") is True

    # -- asking the worker, and what the dialog shows from it --------------------------------

    def ask(self, request: "dict[str, Any]") -> None:
        """Start asking the worker (one question at a time; not while a job runs)."""
        if self.asker is not None or self.busy or self.core is None:
            return
        try:
            python, pythonpath = self.core()
            self.asker = Asker(python, pythonpath, request)
        except ScriptError as exc:
            self.measure_error = str(exc)
            self.asked.add("facts")
            return
        self.asking = "facts" if request.get("facts") else "measure"
        if request.get("measure"):
            measure = request["measure"]
            self.asked.add(rate_key(measure["model"], measure["device"], measure["precision"]))

    def answered(self, answer: "dict[str, Any]") -> None:
        kind = answer.get("answer")
        if kind == "facts":
            models = [m for m in answer.get("models") or [] if isinstance(m, dict)]
            if models:
                self.models = model_entries(models)
            self.devices = device_entries(list(answer.get("devices") or []))
            self.fill_lists(dict(self.remembered, model=self.model_name()))
        elif kind == "measure":
            asked = answer.get("asked") or {}
            rate = answer.get("pixels_per_second")
            if isinstance(rate, (int, float)) and rate > 0 and isinstance(asked, dict):
                key = rate_key(str(asked.get("model")), str(asked.get("device")),
                               str(asked.get("precision")))
                self.rates[key] = {"pixels_per_second": float(rate), "from": "measured"}
            else:
                self.measure_error = str(answer.get("error") or "")
        elif kind == "error":
            self.measure_error = str(answer.get("message") or "")

    def poll_asker(self) -> None:
        asker = self.asker
        if asker is None:
            return
        for answer in asker.poll():
            self.answered(answer)
        if asker.done and asker.answers.empty():
            if self.asking == "facts":
                self.asked.add("facts")
            self.asker = None
            self.asking = ""
            self.refresh()

    def estimate(self, settings: Settings) -> str:
        """The result's size, and the time it may take, for the chosen clips."""
        if self.preview is None:
            return ""
        try:
            width, height, frames = self.preview(settings)
        except ScriptError as exc:
            return f"{exc}."
        if not width or not height:
            return f"{frames} frames"
        out_w, out_h = output_size(width, height, settings.scale)
        text = f"{width} x {height} -> {out_w} x {out_h} px, {frames} frames"
        key = rate_key(settings.model, settings.device, settings.precision)
        rate = self.rates.get(key)
        if isinstance(rate, dict) and rate.get("pixels_per_second"):
            seconds = frames * width * height / float(rate["pixels_per_second"])
            source = ("from your last run" if rate.get("from") == "run"
                      else "measured on this device; encoding adds to it")
            text += f"; about {_clock(seconds)} ({source})"
        elif self.asking:
            text += "; timing this device..." if self.asking == "measure" else ""
        if out_w > LARGE[0] or out_h > LARGE[1]:
            text += (f". Larger than 8K ({LARGE[0]} x {LARGE[1]}): a heavy file for Resolve "
                     "to play; a smaller scale may serve better")
        return text

    def refresh(self) -> None:
        """Show what the choices give; ask for a rate the dialog does not know yet."""
        if self.filling or self.busy:
            return
        if self.asking == "facts":
            self.items["Estimate"].Text = "Asking realscale for its models and devices..."
            return
        settings = self.settings()
        key = rate_key(settings.model, settings.device, settings.precision)
        if key not in self.rates and key not in self.asked and "facts" in self.asked \
                and settings.model in dict((n, n) for _, n in self.models):
            self.ask({"measure": {"model": settings.model, "device": settings.device,
                                  "precision": settings.precision}})
        self.items["Estimate"].Text = self.estimate(settings)

    def on_change(self, _event: Any = None) -> None:
        if self.filling:
            return
        if _event is not None and isinstance(_event, dict) and _event.get("who") == "Device":
            self.filling = True
            try:
                self.fill_precision(None)
            finally:
                self.filling = False
        self.refresh()

    # -- the job ---------------------------------------------------------------------------

    def show(self, text: str) -> None:
        self.items["Status"].Text = text

    def set_busy(self, busy: bool) -> None:
        self.busy = busy
        for key in _INPUTS:
            self.items[key].Enabled = not busy
        self.items["Go"].Text = "Cancel" if busy else "Upscale"

    def on_go(self, _event: Any = None) -> None:
        if self.busy:
            if self.session is not None:
                self.session.cancel()
            self.show("Cancelling...")
            return
        settings = self.settings()
        save_remembered(dict(settings.remembered(), rates=self.rates))
        try:
            self.session = self.start(settings)
        except ScriptError as exc:
            self.show(f"Error: {exc}.")
            return
        if self.asker is not None:  # the job's own model load comes first
            self.asker.stop()
            self.asker, self.asking = None, ""
        self.set_busy(True)
        self.show("Starting...")

    def on_tick(self, _event: Any = None) -> None:
        self.poll_asker()
        session = self.session
        if session is None or not self.busy:
            return
        try:
            session.step()
        except Exception as exc:  # noqa: BLE001 - shown to the user, never swallowed
            session.cancel()
            session.finished = True
            session.status = f"Error: {exc}"
        self.show(session.status)
        if session.finished:
            self.set_busy(False)
            self.rates.update(session.rates)
            save_remembered({"rates": self.rates})
            self.refresh()

    def on_close(self, _event: Any = None) -> None:
        session = self.session
        if self.busy and session is not None:
            session.cancel()
            deadline = time.monotonic() + 20
            while self.busy and time.monotonic() < deadline:
                self.on_tick()
                time.sleep(0.1)
        if self.asker is not None:
            self.asker.stop()
        self.timer.Stop()
        self.dispatcher.ExitLoop()

    def run(self) -> None:
        self.window.Show()
        self.dispatcher.RunLoop()
        self.window.Hide()


def show_message(ui: Any, dispatcher: Any, text: str) -> None:
    """An error before the dialog can open (no timeline, ...): a small window, or the console."""
    print(f"{TITLE}: {text}")
    if dispatcher is None:
        return
    window = dispatcher.AddWindow(
        {"ID": "RealscaleMessage", "WindowTitle": TITLE, "Geometry": [320, 240, 420, 120]},
        ui.VGroup([ui.Label({"ID": "Message", "Text": text, "WordWrap": True}),
                   ui.Button({"ID": "OK", "Text": "OK"})]))

    def close(_event: Any = None) -> None:
        dispatcher.ExitLoop()

    window.On.OK.Clicked = close
    window.On.RealscaleMessage.Close = close
    window.Show()
    dispatcher.RunLoop()
    window.Hide()


# ---------------------------------------------------------------------------------------------
# Setting the engine up from here: realscale_setup (plugins/common), which the zip puts beside
# realscale_wire.py in Fusion/Modules/realscale with realscale's wheel (docs/engine-setup.md)

SETUP_TITLE = "Set up Real-ESRGAN"
SETUP_EXTRAS = ("video",)
"""What `realscale video` needs besides a backend: ffmpeg (imageio-ffmpeg) and OpenCV."""
VIDEO_EXTRA_BYTES = 340 * 10**6
"""What the video extra adds to an engine: imageio-ffmpeg 165 MB and OpenCV 173 MB, measured
in a venv on Linux x86_64 with Python 3.11 (du -sm); the torch-free engine is about 270 MB."""
UPDATE_BUTTON = "Update the engine"


def setup_candidates() -> "list[str]":
    """Folders where realscale_setup.py may lie: beside realscale_wire.py (the zip's
    Modules/realscale), then the checkout's plugins/common (a development run)."""
    found = []
    with contextlib.suppress(ScriptError, AttributeError, TypeError):
        found.append(os.path.dirname(os.path.abspath(wire().__file__)))
    here = globals().get("__file__")
    if isinstance(here, str):
        found.append(os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(here)),
                                                   os.pardir, "common")))
    return found


def setup_module() -> Any:
    """realscale_setup, or None where it is not there or Resolve's Python is older than the
    3.10 it needs (then the script says what to do, as before)."""
    if sys.version_info < (3, 10):  # noqa: UP036 - Resolve may run Python 3.6 to 3.9
        return None
    for folder in setup_candidates():
        if not os.path.isfile(os.path.join(folder, "realscale_setup.py")):
            continue
        loaded = sys.modules.get("realscale_setup")
        where = getattr(loaded, "__file__", None)
        if loaded is not None and where and os.path.dirname(os.path.abspath(where)) == folder:
            return loaded
        for name in ("realscale_setup", "realscale_client"):
            sys.modules.pop(name, None)  # another folder's copies (a second install)
        sys.path.insert(0, folder)  # realscale_setup imports realscale_client beside it
        try:
            import realscale_setup  # type: ignore[import-not-found]

            return realscale_setup
        except Exception:  # noqa: BLE001 - a broken copy: the script goes on without it
            return None
        finally:
            sys.path.remove(folder)
    return None


def engine_size(backend: Any) -> str:
    """How big the engine with this backend and ffmpeg and OpenCV for video is."""
    if "torch" not in backend.extras:
        return ("about 610 MB (the engine on ONNX Runtime about 270 MB, ffmpeg and OpenCV for "
                "video about 340 MB)")
    return f"{backend.size_text} (PyTorch), plus about 340 MB for ffmpeg and OpenCV (video)"


def _progress_text(progress: Any) -> str:
    text: str = progress.label
    if progress.message:
        text += f": {progress.message}"
    if progress.fraction is not None:
        text += f" ({int(progress.fraction * 100)}%)"
    return text


class SetupDialog:
    """First use (no engine): what will be installed, where (changeable), how big, which
    backend (the one realscale_setup recommends for this machine, or another it offers);
    then the phases with Cancel. With ``update`` (an engine of another protocol, from
    realscale_setup.outdated): the offer to update it, then its progress. ``run()`` is True
    once the engine answers (the upscale dialog opens next), False otherwise."""

    def __init__(self, ui: Any, dispatcher: Any, setup: Any, reason: str = "",
                 update: Any = None) -> None:
        self.ui = ui
        self.dispatcher = dispatcher
        self.setup = setup
        self.update = update
        self.job = None  # type: Any
        self.state = "offer"
        self.phases_shown = 0  # of job.phases(), the ones the progress line has shown
        """"offer", "running", "ended" (failed or cancelled: Close only), "done"."""
        self.plan = None if update is not None else setup.detect()
        plan = self.plan

        def row(label: str, widget: Any) -> Any:
            return ui.HGroup({"Weight": 0}, [ui.Label({"Text": label, "Weight": 0.2}), widget])

        if plan is not None:
            wheel = plan.version or "?"
            intro = (f"{reason.rstrip('.')}.\n\nThis script can set up realscale's engine "
                     f"now: realscale {wheel} (the version this script came with) and its "
                     "dependencies, from the package index pip is configured for, in a Python "
                     "environment of its own. Nothing else on the computer changes.")
            python = plan.python.label if plan.python is not None else (
                "none found; uv will fetch Python 3.12" if plan.uv else "none found")
            rows = [
                row("Python", ui.Label({"ID": "Python", "Text": python, "WordWrap": True,
                                        "Weight": 0.8})),
                row("Backend", ui.ComboBox({"ID": "Backend", "Weight": 0.8})),
                row("Size", ui.Label({"ID": "Size", "Text": "", "WordWrap": True,
                                      "Weight": 0.8})),
                row("Folder", ui.LineEdit({"ID": "Folder", "Text": plan.folder,
                                           "Weight": 0.8})),
            ]
            button = "Set up"
        else:
            intro = (f"{update.message}\n\nThe script cannot use this engine until it is "
                     "updated; the update keeps its folder and backend, and the engine in use "
                     "keeps working until the new one answers.")
            rows = [row("Folder", ui.Label({"ID": "Folder", "Text": update.folder or "",
                                            "WordWrap": True, "Weight": 0.8}))]
            button = UPDATE_BUTTON
        self.window = dispatcher.AddWindow(
            {"ID": "RealscaleSetup", "WindowTitle": SETUP_TITLE,
             "Geometry": [320, 220, 620, 360]},
            ui.VGroup([
                ui.Label({"ID": "Intro", "Text": intro, "WordWrap": True, "Weight": 0}),
                *rows,
                ui.Label({"ID": "Problem", "Text": "", "WordWrap": True, "Weight": 0}),
                ui.Label({"ID": "Progress", "Text": "", "WordWrap": True, "Weight": 1}),
                ui.HGroup({"Weight": 0}, [ui.Button({"ID": "Install", "Text": button}),
                                          ui.Button({"ID": "Cancel", "Text": "Cancel"})]),
            ]))
        self.items = self.window.GetItems()
        if plan is not None:
            self.items["Backend"].AddItems([
                b.label + (" (recommended)" if b.recommended else "") for b in plan.backends])
            self.items["Backend"].CurrentIndex = plan.backends.index(plan.backend)
            self.on_backend()
            self.window.On.Backend.CurrentIndexChanged = self.on_backend
            if plan.problem:
                self.items["Problem"].Text = plan.problem
                self.items["Install"].Enabled = False
        self.timer = ui.Timer({"ID": "RealscaleSetupTick", "Interval": 200})
        self.window.On.Install.Clicked = self.on_install
        self.window.On.Cancel.Clicked = self.on_cancel
        self.window.On.RealscaleSetup.Close = self.on_close
        self.window.On.RealscaleSetupTick.Timeout = self.on_tick
        with contextlib.suppress(AttributeError, TypeError):
            dispatcher.On.Timeout = self.on_tick

    def backend(self) -> Any:
        assert self.plan is not None
        index = int(self.items["Backend"].CurrentIndex)
        backends = self.plan.backends
        return backends[index] if 0 <= index < len(backends) else self.plan.backend

    def on_backend(self, _event: Any = None) -> None:
        self.items["Size"].Text = engine_size(self.backend())

    def on_install(self, _event: Any = None) -> None:
        if self.state != "offer":
            return
        setup = self.setup
        if self.plan is not None:
            from dataclasses import replace

            backend = self.backend()
            backend = replace(backend, need_bytes=backend.need_bytes + VIDEO_EXTRA_BYTES)
            folder = str(self.items["Folder"].Text or "").strip() or self.plan.folder
            folder = os.path.abspath(os.path.expanduser(folder))
            self.job = setup.install(self.plan, backend, folder=folder, extras=SETUP_EXTRAS)
        else:
            self.job = setup.update()
        for key in ("Backend", "Folder", "Install"):
            if key in self.items:
                self.items[key].Enabled = False
        self.items["Problem"].Text = ""
        self.state = "running"
        self.phases_shown = 0
        self.job.start()
        self.timer.Start()
        self.on_tick()

    def on_tick(self, _event: Any = None) -> None:
        job = self.job
        if self.state != "running" or job is None:
            return
        phases = job.phases()
        ended = len(phases) if job.done else len(phases) - 1
        if job.cancelled and not job.done:
            self.items["Progress"].Text = "Cancelling..."
            return
        if not job.cancelled and self.phases_shown < ended:
            # A phase that began and ended between two ticks is shown for one tick.
            self.items["Progress"].Text = _progress_text(phases[self.phases_shown])
            self.phases_shown += 1
            return
        if not job.done:
            self.items["Progress"].Text = _progress_text(job.progress())
            self.phases_shown = len(phases)
            return
        result = job.result
        self.timer.Stop()
        if result is not None and result.ok:
            self.state = "done"
            self.items["Progress"].Text = result.message
            self.dispatcher.ExitLoop()
            return
        self.state = "ended"
        if result is not None and result.cancelled:
            self.items["Progress"].Text = ("Cancelled: nothing was installed and nothing "
                                           "changed.")
        else:
            self.items["Progress"].Text = ""
            self.items["Problem"].Text = result.message if result else "The set-up failed."
        self.items["Cancel"].Text = "Close"

    def on_cancel(self, _event: Any = None) -> None:
        if self.state == "running" and self.job is not None:
            self.job.cancel()
            self.items["Progress"].Text = "Cancelling..."
            return
        self.dispatcher.ExitLoop()

    def on_close(self, _event: Any = None) -> None:
        job = self.job
        if self.state == "running" and job is not None:
            job.cancel()
            job.wait(60)  # the job removes what it made before the script ends
        self.timer.Stop()
        self.dispatcher.ExitLoop()

    def run(self) -> bool:
        self.window.Show()
        self.dispatcher.RunLoop()
        self.window.Hide()
        self.timer.Stop()
        return self.state == "done"


def prepare_engine(ui: Any, dispatcher: Any) -> bool:
    """Before the upscale dialog: with no engine set up, offer to set it up; with an engine
    the plug-in set up that speaks another protocol, offer its update. False when the user
    closed that offer or it failed (the script then ends); True otherwise, also where
    realscale_setup cannot run here (the dialog then says what to do, as before)."""
    if dispatcher is None:
        return True
    try:
        core_python()
        missing = ""
    except ScriptError as exc:
        missing = str(exc)
    setup = setup_module()
    reason = missing.split(": run `realscale install")[0].split("; run `realscale install")[0]
    if setup is None:
        found = [os.path.join(folder, "realscale_setup.py") for folder in setup_candidates()
                 if os.path.isfile(os.path.join(folder, "realscale_setup.py"))]
        if not missing or not found:
            return True  # the dialog says what is wrong, as before
        version = ".".join(str(part) for part in sys.version_info[:2])
        show_message(ui, dispatcher, (
            f"{reason.rstrip('.')}. Setting it up from here needs Python 3.10 or newer, and "
            f"Resolve runs this script with Python {version}: in a terminal run "
            f"python3 \"{found[0]}\" install --extras video (Windows: py -3 instead of "
            "python3), then run this script again."))
        return False
    if missing:
        return SetupDialog(ui, dispatcher, setup, reason=reason).run()
    info = setup.outdated()
    if info is None:
        return True
    return SetupDialog(ui, dispatcher, setup, update=info).run()


# ---------------------------------------------------------------------------------------------
# Entry point


def host_objects(scope: "dict[str, Any]") -> "tuple[Resolve, Any, Any]":
    """(resolve, UIManager, UIDispatcher) from what Resolve injects; no UI: (resolve, None,
    None)."""
    resolve = scope.get("resolve")
    if resolve is None:
        try:
            import DaVinciResolveScript  # type: ignore[import-not-found]

            resolve = DaVinciResolveScript.scriptapp("Resolve")
        except ImportError:
            resolve = None
    if resolve is None:
        raise ScriptError("run this script from DaVinci Resolve's Workspace > Scripts menu")
    bmd = scope.get("bmd")  # type: Any
    if bmd is None:
        try:
            import fusionscript

            bmd = fusionscript
        except ImportError:
            bmd = None
    try:
        fusion = scope.get("fusion") or scope.get("fu") or resolve.Fusion()
        ui = fusion.UIManager
        dispatcher = bmd.UIDispatcher(ui)
    except AttributeError:
        ui = dispatcher = None
    return cast("Resolve", resolve), ui, dispatcher


def current_timeline(resolve: "Resolve") -> "tuple[Project, Timeline]":
    project = resolve.GetProjectManager().GetCurrentProject()
    if not project:
        raise ScriptError("open a project first")
    timeline = project.GetCurrentTimeline()
    if not timeline:
        raise ScriptError("open a timeline first")
    return project, timeline


def main(scope: "dict[str, Any] | None" = None) -> "Session | None":
    """Show the dialog and work until it is closed; returns the last session."""
    scope = globals() if scope is None else scope
    try:
        resolve, ui, dispatcher = host_objects(scope)
    except ScriptError as exc:
        print(f"{TITLE}: {exc}")
        return None
    try:
        project, timeline = current_timeline(resolve)
    except ScriptError as exc:
        show_message(ui, dispatcher, f"{exc}.")
        return None

    def start(settings: Settings) -> Session:
        python, pythonpath = core_python()
        jobs, skipped = plan_clips(project, timeline, settings)
        if not jobs:
            raise ScriptError("; ".join(skipped) or "nothing to upscale")
        return Session(project, timeline, settings, python, jobs, skipped, pythonpath)

    if dispatcher is None:
        return run_without_dialog(start)
    if not prepare_engine(ui, dispatcher):
        return None
    dialog = Dialog(ui, dispatcher, timeline, start,
                    lambda settings: preview(project, timeline, settings), core_python)
    dialog.run()
    return dialog.session


def run_without_dialog(start: Any) -> "Session | None":
    """No UIManager (external scripting): default settings, progress on the console."""
    try:
        session = start(Settings())  # type: Session
    except ScriptError as exc:
        print(f"{TITLE}: {exc}")
        return None
    shown = ""
    while not session.finished:
        session.step()
        if session.status != shown:
            shown = session.status
            print(shown)
        time.sleep(0.25)
    return session


if __name__ != "realscale_resolve":  # the tests import it under this name without running it
    main()
