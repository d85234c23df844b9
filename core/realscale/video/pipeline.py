"""Upscale a video: ffmpeg decodes, the model upscales, ffmpeg (or an image writer) encodes.

Three threads overlap the work: one reads raw frames from the decoding ffmpeg, the calling
thread runs the model, one feeds the encoding ffmpeg (or writes the image files), after the
temporal step when the job asks for it (temporal.py: it needs the frames in order). Bounded
queues between them keep only a few frames in memory and keep them in order. The output is
written under a hidden temporary name and renamed only once every frame is in, so an
interrupted run (error, Ctrl-C, cancel) leaves nothing that looks complete.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from ..errors import Cancelled
from ..formats import write_image
from ..upscale import CancelToken, Upscaler
from . import codecs, ffmpeg
from .ffmpeg import VideoError
from .frames import select_frames
from .plan import Plan, colour_of, sequence_layout, temporary_name
from .probe import probe

if TYPE_CHECKING:
    from .temporal import TemporalFilter

DEFAULT_VIDEO_MODEL = "realesr-animevideov3"
QUEUE_BYTES = 768 * 2**20
"""Rough memory bound of each frame queue."""
_POLL = 0.2


@dataclass
class VideoJob:
    """What to upscale and how; see ``realscale video --help`` for each option."""

    source: str
    output: str
    codec: str | None = None
    scale: float | None = None
    crf: int | None = None
    preset: str | None = None
    start_frame: int = 0
    frames: int | None = None
    audio: bool = True
    subtitles: bool = True
    overwrite: bool = False
    start_number: int = 1
    temporal: bool = False
    """Blend each frame with the motion-compensated previous output where the motion is
    reliable (``realscale video --temporal``): no flicker on still content; see temporal.py."""


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    elapsed: float
    fps: float
    """Frames per second over the last few seconds."""
    eta: float | None
    """Seconds left, None until there is a rate to go by."""


@dataclass
class VideoResult:
    output: str
    frames: int
    first_frame: int
    size: tuple[int, int]
    seconds: float
    notes: list[str]


ProgressCallback = Callable[[Progress], None]


class FrameUpscaler(Protocol):
    """An upscaler that takes the frames as a stream, so that several are upscaled at once
    (``realscale.cluster.video.ClusterUpscaler``: frames in flight on a Ray cluster's
    workers). An ``Upscaler`` is used one frame at a time instead."""

    def output_size(self, width: int, height: int, *,
                    scale: float | None = None) -> tuple[int, int]: ...

    def upscale_frames(self, frames: Iterable[np.ndarray], *, scale: float | None = None,
                       cancel: CancelToken | None = None,
                       ) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...


def _frame_pairs(upscaler: Upscaler | FrameUpscaler, frames: Iterable[np.ndarray],
                 scale: float | None, cancel: CancelToken,
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame, upscaled frame) for every frame, in order."""
    if not isinstance(upscaler, Upscaler):
        yield from upscaler.upscale_frames(frames, scale=scale, cancel=cancel)
        return
    for frame in frames:
        yield frame, upscaler.upscale(frame, scale=scale, cancel=cancel)


def check_job(job: VideoJob) -> tuple[str, codecs.Codec, str, str | None]:
    """The checks that need neither the model nor the frames, so mistakes show at once:
    (source, codec, output, sequence pattern)."""
    source = os.path.abspath(job.source)
    if not os.path.isfile(source):
        msg = f"{job.source} does not exist or is not a file"
        raise VideoError(msg)
    codec = codecs.choose(job.output, job.codec)
    if job.crf is not None and not codec.quality:
        msg = f"--crf is for h264 and h265; {codec.label} has no quality setting"
        raise VideoError(msg)
    if job.start_frame < 0 or (job.frames is not None and job.frames < 1):
        msg = "--start-frame must be 0 or more and --frames 1 or more"
        raise VideoError(msg)
    output, pattern = _output_paths(job, codec, source)
    if job.temporal:
        from .temporal import require_opencv

        require_opencv()
    return source, codec, output, pattern


def plan_job(job: VideoJob, upscaler: Upscaler | FrameUpscaler) -> Plan:
    """Check the job and decide everything about it (reads the frame times of the source)."""
    source, codec, output, pattern = check_job(job)
    info = probe(source)
    video = info.video

    trimmed = job.start_frame > 0 or job.frames is not None
    seek, times = select_frames(source, job.start_frame, job.frames)
    in_size = times.size or (video.width, video.height)
    out_size = upscaler.output_size(*in_size, scale=job.scale)
    if codec.even_size and (out_size[0] % 2 or out_size[1] % 2):
        msg = (f"{codec.label} needs an even width and height, but the output would be "
               f"{out_size[0]}x{out_size[1]}; choose another --scale or codec")
        raise VideoError(msg)
    channels = 4 if video.has_alpha and codec.alpha else 3
    plan = Plan(
        source=source, info=info, codec=codec, times=times, first_frame=job.start_frame,
        seek=seek, trimmed=trimmed, in_size=in_size, out_size=out_size, channels=channels,
        colour=colour_of(video), output=output,
        temporary=temporary_name(output), pattern=pattern, start_number=job.start_number,
    )
    plan.choose_streams(job.audio, job.subtitles)
    if video.interlaced:
        plan.notes.append("the source is interlaced; frames are upscaled as they are "
                          "(deinterlace it first for clean motion)")
    if not times.constant_rate:
        plan.notes.append("the source has a variable frame rate; every frame keeps its own "
                          "timestamp" + (" (image files carry none)" if codec.sequence else ""))
    return plan


def upscale_video(
    job: VideoJob,
    upscaler: Upscaler | FrameUpscaler,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> VideoResult:
    """Upscale ``job.source`` into ``job.output``; raises VideoError, Cancelled or the
    upscaler's errors, leaving no output behind."""
    started = time.monotonic()
    plan = plan_job(job, upscaler)
    if on_plan is not None:
        on_plan(plan)
    token = cancel or CancelToken()
    run = _Run(plan, job, upscaler, token, progress)
    run.execute()
    return VideoResult(output=plan.output, frames=plan.frames, first_frame=plan.first_frame,
                       size=plan.out_size, seconds=time.monotonic() - started,
                       notes=plan.notes)


class _End:
    """Marks the end of a frame queue."""


_END = _End()


class _Run:
    def __init__(self, plan: Plan, job: VideoJob, upscaler: Upscaler | FrameUpscaler,
                 cancel: CancelToken,
                 progress: ProgressCallback | None) -> None:
        self.plan = plan
        self.job = job
        self.upscaler = upscaler
        self.cancel = cancel
        self.progress = progress
        self.stop = threading.Event()
        in_bytes = plan.frame_bytes(plan.in_size)
        out_bytes = plan.frame_bytes(plan.out_size)
        self.decoded: queue.Queue[Any] = queue.Queue(max(2, min(8, QUEUE_BYTES // in_bytes)))
        self.encoded: queue.Queue[Any] = queue.Queue(max(2, min(8, QUEUE_BYTES // out_bytes)))
        self.decoder: ffmpeg.Process | None = None
        self.encoder: ffmpeg.Process | None = None
        self.threads: list[threading.Thread] = []
        self.failure: BaseException | None = None
        self.filter_file: str | None = None
        self.temporal: TemporalFilter | None = None
        if job.temporal:
            from .temporal import TemporalFilter

            self.temporal = TemporalFilter()

    # The calling thread: model, bookkeeping, cleanup.

    def execute(self) -> None:
        plan = self.plan
        done = False
        try:
            self._start()
            count = 0
            meter = _Meter(plan.frames)
            pairs = _frame_pairs(self.upscaler, self._decoded_frames(), self.job.scale,
                                 self.cancel)
            for item, result in pairs:
                # The temporal step runs in the writing thread, beside the next frame's model.
                self._give(self.encoded, result if self.temporal is None else (item, result))
                count += 1
                if self.progress is not None:
                    self.progress(meter.update(count))
            self._give(self.encoded, _END)
            for thread in self.threads:
                while thread.is_alive():
                    thread.join(_POLL)
                    self._raise_failure()
            self._raise_failure()
            if self.decoder is not None:
                self.decoder.finish()
            if self.encoder is not None:
                self.encoder.finish()
            if count != plan.frames:
                msg = (f"ffmpeg decoded {count} frames of {plan.source} where {plan.frames} "
                       "were expected; the file may be damaged")
                raise VideoError(msg)
            if not plan.codec.sequence:
                _check_output(plan)
            self._publish()
            done = True
        finally:
            if not done:
                self._abort()
            self._remove_filter_file()

    def _decoded_frames(self) -> Iterator[np.ndarray]:
        while True:
            item = self._take(self.decoded)
            if item is _END:
                return
            if self.cancel.cancelled:
                raise Cancelled("the video upscale was cancelled")
            yield item

    def _start(self) -> None:
        plan = self.plan
        if plan.codec.sequence:
            os.makedirs(plan.temporary)
            writer = self._write_images
        else:
            if plan.needs_filter_file():
                handle, self.filter_file = tempfile.mkstemp(suffix=".txt", prefix="realscale-")
                with os.fdopen(handle, "w") as text:
                    text.write(plan.video_filter())
            self.encoder = ffmpeg.Process(
                plan.encoder_args(crf=self.job.crf, preset=self.job.preset,
                                  filter_file=self.filter_file),
                what=f"write {plan.output}", stdin=True, stdout=False)
            writer = self._write_video
        self.decoder = ffmpeg.Process(plan.decoder_args(), what=f"read {plan.source}",
                                      stdin=False, stdout=True)
        for target, name in ((self._read_frames, "decode"), (writer, "encode")):
            thread = threading.Thread(target=self._guard(target), name=f"realscale-{name}",
                                      daemon=True)
            thread.start()
            self.threads.append(thread)

    def _take(self, source: queue.Queue[Any]) -> Any:
        while True:
            self._raise_failure()
            try:
                return source.get(timeout=_POLL)
            except queue.Empty:
                if self.cancel.cancelled:
                    raise Cancelled("the video upscale was cancelled") from None

    def _give(self, target: queue.Queue[Any], item: Any) -> None:
        while True:
            self._raise_failure()
            try:
                target.put(item, timeout=_POLL)
                return
            except queue.Full:
                if self.cancel.cancelled:
                    raise Cancelled("the video upscale was cancelled") from None

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _publish(self) -> None:
        plan = self.plan
        if plan.codec.sequence:
            _publish_sequence(plan, self.job.overwrite)
        else:
            os.replace(plan.temporary, plan.output)

    def _abort(self) -> None:
        self.stop.set()
        for process in (self.decoder, self.encoder):
            if process is not None:
                process.kill()
        for thread in self.threads:
            thread.join(5)
        if os.path.isdir(self.plan.temporary):
            shutil.rmtree(self.plan.temporary, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(self.plan.temporary)

    def _remove_filter_file(self) -> None:
        if self.filter_file is not None:
            with contextlib.suppress(OSError):
                os.remove(self.filter_file)

    # Worker threads.

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                if not self.stop.is_set() and self.failure is None:
                    self.failure = exc
        return run

    def _read_frames(self) -> None:
        plan = self.plan
        assert self.decoder is not None and self.decoder.popen.stdout is not None
        stdout = cast(io.BufferedReader, self.decoder.popen.stdout)
        width, height = plan.in_size
        size = plan.frame_bytes(plan.in_size)
        while not self.stop.is_set():
            buffer = bytearray(size)
            view = memoryview(buffer)
            got = 0
            while got < size:
                read = stdout.readinto(view[got:])
                if not read:
                    break
                got += read
            if got == 0:
                break
            if got < size:
                if self.stop.is_set():
                    return
                self.decoder.finish()  # raises with ffmpeg's message if it failed
                msg = f"ffmpeg stopped in the middle of a frame of {plan.source}"
                raise VideoError(msg)
            frame = np.frombuffer(buffer, dtype=plan.dtype).reshape(height, width, plan.channels)
            self._offer(self.decoded, frame)
        self._offer(self.decoded, _END)

    def _write_video(self) -> None:
        assert self.encoder is not None and self.encoder.popen.stdin is not None
        stdin = self.encoder.popen.stdin
        while True:
            item = self._next_output()
            if item is None:
                return
            if item is _END:
                stdin.close()
                return
            try:
                stdin.write(np.ascontiguousarray(item, dtype=self.plan.dtype).data)
            except (BrokenPipeError, OSError):
                if self.stop.is_set():
                    return
                self.encoder.finish()
                msg = f"ffmpeg stopped taking frames for {self.plan.output}"
                raise VideoError(msg) from None

    def _write_images(self) -> None:
        plan = self.plan
        assert plan.pattern is not None
        number = plan.start_number
        while True:
            item = self._next_output()
            if item is None or item is _END:
                return
            name = os.path.join(plan.temporary, plan.pattern % number)
            write_image(name, item, format=plan.codec.name)
            number += 1

    def _offer(self, target: queue.Queue[Any], item: Any) -> None:
        while not self.stop.is_set():
            try:
                target.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    def _next_output(self) -> Any:
        """The next frame to write (after the temporal step), _END, or None when stopped."""
        item = self._next(self.encoded)
        if self.temporal is None or item is None or item is _END:
            return item
        frame, upscaled = item
        return self.temporal.step(frame, upscaled)

    def _next(self, source: queue.Queue[Any]) -> Any:
        while not self.stop.is_set():
            try:
                return source.get(timeout=_POLL)
            except queue.Empty:
                continue
        return None


class _Meter:
    """Frames per second over a sliding window, and the time left."""

    def __init__(self, total: int, window: float = 10.0) -> None:
        self.total = total
        self.window = window
        self.started = time.monotonic()
        self.marks: deque[tuple[float, int]] = deque([(self.started, 0)])

    def update(self, done: int) -> Progress:
        now = time.monotonic()
        self.marks.append((now, done))
        while len(self.marks) > 2 and now - self.marks[1][0] > self.window:
            self.marks.popleft()
        first_time, first_done = self.marks[0]
        span = now - first_time
        fps = (done - first_done) / span if span > 0 else 0.0
        eta = (self.total - done) / fps if fps > 0 else None
        return Progress(done, self.total, now - self.started, fps, eta)


def _output_paths(job: VideoJob, codec: codecs.Codec, source: str) -> tuple[str, str | None]:
    """The final output path (file, or folder of a sequence) and a sequence's pattern."""
    if codec.sequence:
        folder, pattern = sequence_layout(job.output, codec)
        parent = os.path.dirname(folder)
        if not os.path.isdir(parent):
            msg = f"the folder {parent} does not exist; create it first"
            raise VideoError(msg)
        if os.path.exists(folder) and not os.path.isdir(folder):
            msg = f"{folder} is a file; give a folder for the image sequence"
            raise VideoError(msg)
        if not job.overwrite and _sequence_files(folder, pattern):
            msg = (f"{folder} already holds frames named like {pattern}; choose another "
                   "folder or pass --overwrite")
            raise VideoError(msg)
        return folder, pattern
    output = os.path.abspath(job.output)
    if os.path.normcase(output) == os.path.normcase(source):
        msg = "the output is the input file; choose another output path"
        raise VideoError(msg)
    folder = os.path.dirname(output)
    if not os.path.isdir(folder):
        msg = f"the folder {folder} does not exist; create it first"
        raise VideoError(msg)
    if os.path.isdir(output):
        msg = f"{output} is a folder; give a file name such as {output}/upscaled.mov"
        raise VideoError(msg)
    if os.path.exists(output) and not job.overwrite:
        msg = f"{output} already exists; choose another name or pass --overwrite"
        raise VideoError(msg)
    return output, None


def _sequence_files(folder: str, pattern: str) -> list[str]:
    if not os.path.isdir(folder):
        return []
    head, _, tail = pattern.partition("%")
    tail = tail.lstrip("0123456789").removeprefix("d")
    return glob.glob(os.path.join(glob.escape(folder), glob.escape(head) + "*" +
                                  glob.escape(tail)))


def _publish_sequence(plan: Plan, overwrite: bool) -> None:
    """Move a finished sequence into place: rename the folder, or (into an existing folder)
    move its files."""
    assert plan.pattern is not None
    if not os.path.exists(plan.output):
        os.replace(plan.temporary, plan.output)
        return
    if overwrite:
        for old in _sequence_files(plan.output, plan.pattern):
            os.remove(old)
    for name in sorted(os.listdir(plan.temporary)):
        os.replace(os.path.join(plan.temporary, name), os.path.join(plan.output, name))
    os.rmdir(plan.temporary)


def _check_output(plan: Plan) -> None:
    """Count the frames the written file really shows (a demux pass, no decoding): an ffmpeg
    that mishandles timestamps must not leave a file one frame short."""
    text = ffmpeg.run(["-i", plan.temporary, "-map", "0:v:0", "-c", "copy", "-f", "framecrc",
                       "-"], what=f"check {plan.output}")
    shown = sum(1 for line in text.splitlines() if line.startswith("0,"))
    if shown != plan.frames:
        msg = (f"ffmpeg ({ffmpeg.executable()}) wrote {shown} of {plan.frames} frames; "
               "update imageio-ffmpeg (0.8 or later) or point REALSCALE_FFMPEG at ffmpeg 7.1 "
               "or later")
        raise VideoError(msg)
