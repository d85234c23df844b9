"""End-to-end video speed: decode, upscale and encode, as `realscale video` does it.

Run: .venv/bin/python bench/video.py [--model realesrgan-x4plus] [--width 960]
     [--height 540] [--frames 60] [--codec h264] [--device auto] [--precision auto]
     [--temporal]

Makes a test clip from Real-ESRGAN's sample video (onepiece_demo.mp4, 640x480, stretched to
--width x --height with ffmpeg, lossless: 16:9 540p by default), then runs
``realscale video`` on it in a process of its own and prints the frame rate of the whole
pipeline: from the command's start (model loading
included) and from its first finished frame on (the steady rate a long clip sees). Issue 6's
goal on an H100/H200: 540p -> 2160p with realesrgan-x4plus at 15 frames/s or more. On a
2-core CPU use the compact model or a few frames (x4plus takes tens of seconds a frame).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "core"))

from realscale.video import ffmpeg  # noqa: E402

SAMPLE = HERE.parent / "tests" / "data" / "realesrgan-inputs" / "video" / "onepiece_demo.mp4"


def make_clip(target: Path, width: int, height: int, frames: int) -> None:
    """The sample's first ``frames`` frames at ``width`` x ``height``, in lossless H.264."""
    command = ffmpeg.base_command() + [
        "-i", str(SAMPLE), "-frames:v", str(frames), "-an",
        "-vf", f"scale={width}:{height}:flags=lanczos,setsar=1", "-c:v", "libx264", "-qp", "0",
        "-pix_fmt", "yuv420p", str(target),
    ]
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="realesrgan-x4plus")
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=540)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--codec", default="h264")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--tile", default="auto")
    parser.add_argument("--temporal", action="store_true",
                        help="with --temporal (its step runs on the CPU, beside the model)")
    args = parser.parse_args()
    if not SAMPLE.is_file():
        sys.exit(f"the sample video is missing: {SAMPLE}")
    with tempfile.TemporaryDirectory() as scratch:
        clip = Path(scratch) / f"clip_{args.height}p.mp4"
        make_clip(clip, args.width, args.height, args.frames)
        out = Path(scratch) / "out.mp4"
        command = [sys.executable, "-m", "realscale", "video", str(clip), "-o", str(out),
                   "-m", args.model, "--codec", args.codec, "--device", args.device,
                   "--precision", args.precision, "--tile", args.tile, "--progress", "json",
                   *(["--temporal"] if args.temporal else [])]
        env = dict(os.environ, PYTHONPATH=str(HERE.parent / "core"))
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        assert process.stdout is not None
        first_frame: float | None = None
        plan: dict = {}
        frames_done = 0
        for line in process.stdout:
            event = json.loads(line)
            if event["event"] == "start":
                plan = event
            elif event["event"] == "progress":
                frames_done = event["done"]
                if first_frame is None:
                    first_frame = time.perf_counter()
        if process.wait() != 0:
            sys.exit(f"realscale video failed (exit {process.returncode})")
        ended = time.perf_counter()
    total = ended - started
    print(f"{args.model}: {args.frames} frames, {args.width}x{args.height} -> "
          f"{plan.get('width')}x{plan.get('height')} {args.codec}, device {args.device}, "
          f"precision {args.precision}{', temporal' if args.temporal else ''}")
    print(f"  whole command: {total:.1f} s, {frames_done / total:.2f} frames/s "
          "(model loading and ffmpeg start included)")
    if first_frame is not None and frames_done > 1:
        steady = (frames_done - 1) / (ended - first_frame)
        print(f"  after the first frame: {steady:.2f} frames/s")


if __name__ == "__main__":
    main()
