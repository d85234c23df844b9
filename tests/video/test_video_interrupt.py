"""An interrupted run (cancel, Ctrl-C, SIGTERM, 'cancel' from a host) leaves nothing behind:
no output, no temporary file, no ffmpeg still running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from helpers import ignores, like_a_terminal
from realscale import Cancelled, CancelToken, Upscaler
from realscale.video.pipeline import VideoJob, upscale_video


@pytest.mark.parametrize("output", ["out.mov", "frames"])
def test_cancel_token_removes_the_partial_output(sample, tiny_model, tmp_path,
                                                 output) -> None:
    token = CancelToken()

    def progress(state) -> None:
        assert all(p.name.endswith(".part") for p in tmp_path.iterdir())
        if state.done == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        upscale_video(VideoJob(str(sample), str(tmp_path / output), codec=None),
                      Upscaler(str(tiny_model)), progress=progress, cancel=token)
    assert list(tmp_path.iterdir()) == []


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and /proc: Linux")
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "stdin"])
def test_interrupted_command_cleans_up(sample, tiny_model, tmp_path, how) -> None:
    out = tmp_path / "out.mov"
    process = like_a_terminal(
        [sys.executable, "-m", "realscale", "video", str(sample), "-o", str(out), "-m",
         str(tiny_model), "--progress", "json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stdin is not None
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] == "progress" and event["done"] >= 3:
            break
    assert not ignores(process.pid, signal.SIGINT)
    ffmpegs = _children(process.pid)
    assert len(ffmpegs) == 2  # the decoder and the encoder
    assert all(p.name.startswith(".out.mov.") for p in tmp_path.iterdir())
    if how == "stdin":
        process.stdin.write("cancel\n")
        process.stdin.flush()
    else:
        process.send_signal(getattr(signal, how))
    rest = process.stdout.read()
    assert process.wait(60) == 130
    assert json.loads(rest.splitlines()[-1])["event"] == "cancelled"
    assert list(tmp_path.iterdir()) == []
    assert not any(os.path.exists(f"/proc/{pid}") for pid in ffmpegs)  # ffmpeg stopped too
