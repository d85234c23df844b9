"""Find the ffmpeg executable and run it: the one place that starts ffmpeg processes.

realscale does not assume a system ffmpeg: the ``imageio-ffmpeg`` package (the ``video``
extra) ships a static build for Windows, macOS and Linux; without it, ffmpeg on PATH is used.
``REALSCALE_FFMPEG`` (a path) overrides both, for builds with other encoders.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from typing import IO, Any

from ..errors import RealscaleError

ENV_VAR = "REALSCALE_FFMPEG"


class VideoError(RealscaleError):
    """A video could not be read, upscaled or written."""


@functools.lru_cache(maxsize=1)
def executable() -> str:
    """The ffmpeg to run: $REALSCALE_FFMPEG, else the one imageio-ffmpeg ships."""
    override = os.environ.get(ENV_VAR)
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            msg = f"{ENV_VAR} is {override!r}, which is not an executable file; fix or unset it"
            raise VideoError(msg)
        return override
    try:
        import imageio_ffmpeg
    except ImportError:
        found = shutil.which("ffmpeg")
        if found:
            return found
        msg = (
            "video needs ffmpeg: pip install 'realscale[video]' in realscale's environment, "
            f"put ffmpeg on PATH, or set {ENV_VAR} to an ffmpeg"
        )
        raise VideoError(msg) from None
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError as exc:
        msg = f"imageio-ffmpeg has no ffmpeg for this platform ({exc}); set {ENV_VAR}"
        raise VideoError(msg) from None


def base_command() -> list[str]:
    """ffmpeg with the options every run uses: no banner, no stdin, errors only."""
    return [executable(), "-hide_banner", "-nostdin", "-loglevel", "error"]


def run(args: Sequence[str], *, what: str) -> str:
    """Run ffmpeg to completion and return its stdout; ``what`` names the job in errors."""
    command = [*base_command(), *args]
    try:
        done = subprocess.run(command, capture_output=True, check=False)
    except OSError as exc:
        msg = f"could not start ffmpeg ({exc}) to {what}"
        raise VideoError(msg) from None
    if done.returncode != 0:
        raise VideoError(failure(what, done.stderr.decode("utf-8", "replace")))
    return done.stdout.decode("utf-8", "replace")


def info_text(path: str) -> str:
    """What ``ffmpeg -i`` prints about a file (ffmpeg exits 1: no output was given)."""
    command = [executable(), "-hide_banner", "-nostdin", "-i", path]
    try:
        done = subprocess.run(command, capture_output=True, check=False)
    except OSError as exc:
        msg = f"could not start ffmpeg ({exc}) to read {path}"
        raise VideoError(msg) from None
    return done.stderr.decode("utf-8", "replace")


def failure(what: str, stderr: str) -> str:
    """One message from ffmpeg's error output: the last few meaningful lines."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    tail = "; ".join(lines[-3:]) if lines else "no error output"
    return f"ffmpeg could not {what}: {tail}"


class Process:
    """A running ffmpeg whose stderr goes to a temporary file (no pipe to fill up)."""

    def __init__(self, args: Sequence[str], *, what: str, stdin: bool, stdout: bool) -> None:
        self.what = what
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finish/kill
        command = [*base_command(), *args]
        # Its own process group: Ctrl-C in a terminal reaches realscale, which stops ffmpeg
        # itself after cleaning up, instead of ffmpeg dying first with a confusing error.
        group: dict[str, Any] = (
            {"start_new_session": True} if os.name == "posix"
            else {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        )
        try:
            self.popen = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                stderr=self._log,
                **group,
            )
        except OSError as exc:
            self._log.close()
            msg = f"could not start ffmpeg ({exc}) to {what}"
            raise VideoError(msg) from None

    def stderr_text(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def finish(self, timeout: float | None = None) -> None:
        """Wait for the process; raise VideoError with its output if it failed."""
        code = self.popen.wait(timeout)
        try:
            if code != 0:
                raise VideoError(failure(self.what, self.stderr_text()))
        finally:
            self._log.close()

    def kill(self) -> None:
        """Stop the process now (cleanup after an error or Ctrl-C)."""
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self.popen.poll() is None:
            self.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        self._log.close()
