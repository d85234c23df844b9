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
Installed as one file, because every .py file in Fusion/Scripts/Edit becomes a menu entry.
"""

import contextlib
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
CODECS = (("prores", "ProRes 422 HQ"), ("prores4444", "ProRes 4444"))
PLACEMENTS = (("track", "On a new video track above"), ("take", "As a take of the clip"))
SCOPES = (("clip", "Current clip"), ("track", "Every clip on the track"))
DEFAULT_HANDLES = 6
CONFIG_VERSION = 1
KILL_AFTER = 20
"""Seconds a cancelled job may take to stop before it is killed."""
_STRIPPED_ENV = ("PYTHON", "QT_", "QML", "QTWEBENGINE", "__PYVENV")


class ScriptError(Exception):
    """Something the user can act on; shown in the dialog as it is."""


class Settings:
    def __init__(self, model: str = MODELS[0], scale: str = "2", codec: str = "prores",
                 placement: str = "track", scope: str = "clip", track: int = 0,
                 handles: int = DEFAULT_HANDLES, folder: str = "") -> None:
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


def config_path() -> str:
    """Where `realscale install` writes the worker config (docs/worker-client.md)."""
    override = os.environ.get("REALSCALE_WORKER_CONFIG")
    if override:
        return override
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or os.path.expanduser("~\\AppData\\Roaming")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(base, "realscale", "worker.json")


def core_python() -> "tuple[str, list[str]]":
    """The interpreter of realscale's own environment and the folders it needs on
    PYTHONPATH, from the worker config."""
    path = config_path()
    fix = "run `realscale install resolve` in a terminal, then run this script again"
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except OSError:
        raise ScriptError(
            f"realscale is not set up for Resolve ({path} is missing); {fix}.") from None
    except ValueError:
        raise ScriptError(f"{path} is not valid JSON; {fix}.") from None
    python = config.get("python") if isinstance(config, dict) else None
    if not isinstance(python, str) or not python:
        raise ScriptError(f"{path} names no Python interpreter; {fix}.")
    if isinstance(config, dict) and config.get("version", CONFIG_VERSION) > CONFIG_VERSION:
        raise ScriptError(f"{path} was written by a newer realscale; update this script with "
                          "`realscale install resolve`.")
    if not os.path.isfile(python):
        raise ScriptError(f"realscale's Python {python} does not exist any more; {fix}.")
    extra = config.get("pythonpath") if isinstance(config, dict) else None
    pythonpath = [p for p in extra if isinstance(p, str)] if isinstance(extra, list) else []
    return python, pythonpath


def clean_environment(pythonpath: "list[str]") -> "dict[str, str]":
    """Resolve's own Python and Qt settings must not leak into realscale's interpreter."""
    env = {key: value for key, value in os.environ.items()
           if not key.upper().startswith(_STRIPPED_ENV)}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    return env


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
    return f"{whole // 60}:{whole % 60:02d}"


# ---------------------------------------------------------------------------------------------
# The dialog (Fusion UIManager: fusionscript-stubs does not type it, hence Any)

_INPUTS = ("Model", "Scale", "Codec", "Scope", "Track", "Placement", "Handles", "Folder")


class Dialog:
    """Model, scale and placement; then progress, cancel, and what happened to each clip."""

    def __init__(self, ui: Any, dispatcher: Any, timeline: "Timeline", start: Any) -> None:
        self.ui = ui
        self.dispatcher = dispatcher
        self.start = start
        self.session = None  # type: Session | None
        self.busy = False
        count = timeline.GetTrackCount("video")
        tracks = [f"V{i} {timeline.GetTrackName('video', i) or ''}".strip()
                  for i in range(1, count + 1)]
        current = timeline.GetCurrentVideoItem()

        def row(label: str, widget: Any) -> Any:
            return ui.HGroup({"Weight": 0}, [ui.Label({"Text": label, "Weight": 0.3}), widget])

        self.window = dispatcher.AddWindow(
            {"ID": "RealscaleWindow", "WindowTitle": TITLE, "Geometry": [300, 200, 520, 380]},
            ui.VGroup([
                row("Model", ui.ComboBox({"ID": "Model", "Editable": True})),
                row("Scale", ui.ComboBox({"ID": "Scale"})),
                row("Codec", ui.ComboBox({"ID": "Codec"})),
                row("Clips", ui.ComboBox({"ID": "Scope"})),
                row("Track", ui.ComboBox({"ID": "Track"})),
                row("Place", ui.ComboBox({"ID": "Placement"})),
                row("Handle frames", ui.SpinBox({"ID": "Handles", "Minimum": 0,
                                                 "Maximum": 240, "Value": DEFAULT_HANDLES})),
                row("Output folder", ui.LineEdit({
                    "ID": "Folder", "PlaceholderText": "a 'realscale' folder beside each source"})),
                ui.Label({"ID": "Status", "Text": "", "WordWrap": True, "Weight": 1}),
                ui.HGroup({"Weight": 0}, [ui.Button({"ID": "Go", "Text": "Upscale"}),
                                          ui.Button({"ID": "Close", "Text": "Close"})]),
            ]))
        self.items = items = self.window.GetItems()
        for key, values in (("Model", MODELS), ("Scale", SCALES),
                            ("Codec", [label for _, label in CODECS]),
                            ("Scope", [label for _, label in SCOPES]),
                            ("Track", tracks or ["V1"]),
                            ("Placement", [label for _, label in PLACEMENTS])):
            items[key].AddItems(list(values))
        if current is not None:
            items["Track"].CurrentIndex = _track_of(timeline, current) - 1
        self.timer = ui.Timer({"ID": "RealscaleTick", "Interval": 250})
        self.window.On.Go.Clicked = self.on_go
        self.window.On.Close.Clicked = self.on_close
        self.window.On.RealscaleWindow.Close = self.on_close
        # Timer events reach the window in some Resolve versions and the dispatcher in
        # others; on_tick does nothing when called twice.
        self.window.On.RealscaleTick.Timeout = self.on_tick
        with contextlib.suppress(AttributeError, TypeError):
            dispatcher.On.Timeout = self.on_tick

    def settings(self) -> Settings:
        items = self.items
        scope = SCOPES[int(items["Scope"].CurrentIndex)][0]
        return Settings(
            model=str(items["Model"].CurrentText).strip() or MODELS[0],
            scale=str(items["Scale"].CurrentText),
            codec=CODECS[int(items["Codec"].CurrentIndex)][0],
            placement=PLACEMENTS[int(items["Placement"].CurrentIndex)][0],
            scope=scope,
            track=int(items["Track"].CurrentIndex) + 1 if scope == "track" else 0,
            handles=int(items["Handles"].Value),
            folder=str(items["Folder"].Text or "").strip())

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
        try:
            self.session = self.start(self.settings())
        except ScriptError as exc:
            self.show(f"Error: {exc}.")
            return
        self.set_busy(True)
        self.show("Starting...")
        self.timer.Start()

    def on_tick(self, _event: Any = None) -> None:
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
            self.timer.Stop()
            self.set_busy(False)

    def on_close(self, _event: Any = None) -> None:
        session = self.session
        if self.busy and session is not None:
            session.cancel()
            deadline = time.monotonic() + 20
            while self.busy and time.monotonic() < deadline:
                self.on_tick()
                time.sleep(0.1)
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
    dialog = Dialog(ui, dispatcher, timeline, start)
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
