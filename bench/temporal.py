"""`realscale video --temporal` against per-frame upscaling, side by side in one run.

Run: .venv/bin/python bench/temporal.py [--model realesr-animevideov3] [--start 0]
     [--frames 181] [--cost-start 60] [--cost-frames 12] [--cost-rounds 3]
     [--plot docs/images/temporal.png]

1. A clip made from real photographs with known motion (tests/video/synthetic_clip.py: a still
   background, grain and a JPEG of its own in every frame, an object moving across, a scene
   cut). Flicker: mean absolute difference between consecutive outputs over the pixels whose
   content did not move. Ghosting: mean absolute difference to the per-frame result over the
   moving object and the background it just uncovered, and whether the first frame after the
   cut is the per-frame one.
2. The real clip (onepiece_demo.mp4, frames --start to --start + --frames): flicker as the
   flow-warped error of consecutive outputs, with flow computed on the *input* (DIS, medium
   preset, on the unfiltered frames), over the pixels where that flow is reliable
   (forward-backward consistent, input warping error under 12 levels); where the input is
   explained at least as well without motion (local error within 0.5 levels), the motion is
   taken as zero, since DIS on a still, noisy picture returns fractions of a pixel that would
   charge both methods for resampling, not flicker. Pairs with fewer than 10% reliable pixels
   (scene cuts) are left out. The plot shows this per pair of frames.
3. Cost: `realscale video` on --cost-frames frames of the real clip, per-frame and
   --temporal in alternation (ABBA), --cost-rounds times; wall-clock and CPU time per frame
   after the first one (CPU: the process's threads and its ffmpegs, from /proc, Linux), the
   ratio of each round's pair, and the load average around each run (the machine may be
   shared; CPU time is the steadier figure there). Also, in parts 1 and 2, the time of the
   temporal step against the model's, in-process.

Both outputs of 1 and 2 come from the same per-frame upscales: the temporal result is
``TemporalFilter`` applied to them, exactly what the pipeline does. Errors are in 8-bit levels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "core"))
sys.path.insert(0, str(HERE.parent / "tests" / "video"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from synthetic_clip import make_clip  # noqa: E402

from realscale import Upscaler  # noqa: E402
from realscale.video.frames import read_frames  # noqa: E402
from realscale.video.temporal import TemporalFilter  # noqa: E402

SAMPLE = HERE.parent / "tests" / "data" / "realesrgan-inputs" / "video" / "onepiece_demo.mp4"


@dataclass
class Times:
    model: list[float] = field(default_factory=list)
    step: list[float] = field(default_factory=list)

    def line(self) -> str:
        model, step = np.mean(self.model[1:]), np.mean(self.step[1:])
        return (f"in-process: model {model:.3f} s/frame, temporal step {step * 1000:.1f} "
                f"ms/frame (+{100 * step / model:.1f}%)")


def upscale_both(upscaler: Upscaler, temporal: TemporalFilter, frame: np.ndarray,
                 times: Times) -> tuple[np.ndarray, np.ndarray]:
    started = time.perf_counter()
    fresh = upscaler.upscale(frame)
    middle = time.perf_counter()
    out = temporal.step(frame, fresh)
    times.model.append(middle - started)
    times.step.append(time.perf_counter() - middle)
    return fresh, out


def change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference over the channels, per pixel, in 8-bit levels."""
    return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=2)


def at_output(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]),
                      interpolation=cv2.INTER_NEAREST).astype(bool)


def synthetic(upscaler: Upscaler, frames: int) -> None:
    clip = make_clip(frames=frames, size=(256, 192), cut=frames * 2 // 3, speed=(2.6, 0.7),
                     object_size=(64, 48))
    temporal, times = TemporalFilter(), Times()
    flicker: dict[str, list[float]] = {"per-frame": [], "temporal": []}
    ghost: list[float] = []
    cut_exact = False
    previous: tuple[np.ndarray, np.ndarray] | None = None
    for index, frame in enumerate(clip.frames):
        fresh, out = upscale_both(upscaler, temporal, frame, times)
        if index == clip.cut:
            cut_exact = np.array_equal(out, fresh)
        elif previous is not None:
            still = at_output(clip.still(index), out.shape)
            flicker["per-frame"].append(float(change(fresh, previous[0])[still].mean()))
            flicker["temporal"].append(float(change(out, previous[1])[still].mean()))
            moving = at_output(clip.moving(index), out.shape)
            ghost.append(float(change(out, fresh)[moving].mean()))
        previous = fresh, out
    per, tmp = np.mean(flicker["per-frame"]), np.mean(flicker["temporal"])
    print(f"synthetic clip: {frames} frames of 256x192 (cut at {clip.cut}), "
          f"{clip.frames[0].shape[1] * upscaler.scale}x{clip.frames[0].shape[0] * upscaler.scale}"
          " out")
    print(f"  flicker on still pixels: per-frame {per:.3f}, temporal {tmp:.3f} "
          f"({100 * (1 - tmp / per):.0f}% lower)")
    print(f"  ghosting (moving object + uncovered background vs per-frame): mean "
          f"{np.mean(ghost):.3f}, worst frame {np.max(ghost):.3f} (limit 2)")
    print(f"  first frame after the cut equals per-frame: {cut_exact}")
    print("  " + times.line())


class FlowMetric:
    """Flow-warped error of consecutive outputs with the input's motion (see the top)."""

    def __init__(self) -> None:
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def motion(self, prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(flow current -> previous, reliable mask) at input resolution."""
        g0 = cv2.cvtColor(prev, cv2.COLOR_RGB2GRAY)
        g1 = cv2.cvtColor(cur, cv2.COLOR_RGB2GRAY)
        backward = self.dis.calc(g1, g0, None)
        forward = self.dis.calc(g0, g1, None)
        back = warp(forward, backward, 1.0)
        consistent = (((backward + back) ** 2).sum(2)
                      <= 0.01 * ((backward**2).sum(2) + (back**2).sum(2)) + 0.5)
        moved = np.abs(cur.astype(np.float32) - warp(prev.astype(np.float32), backward, 1.0))
        still = np.abs(cur.astype(np.float32) - prev.astype(np.float32))
        moved, still = moved.max(2), still.max(2)
        zero = cv2.blur(still, (5, 5)) <= cv2.blur(moved, (5, 5)) + 0.5
        flow = backward * ~zero[..., None]
        error = np.where(zero, still, moved)
        return flow, (consistent | zero) & (error < 12)

    def error(self, prev_out: np.ndarray, out: np.ndarray, flow: np.ndarray,
              reliable: np.ndarray) -> float:
        scale = out.shape[1] / flow.shape[1]
        moved = warp(prev_out.astype(np.float32), flow, scale)
        return float(change(out, moved)[at_output(reliable, out.shape)].mean())


def warp(image: np.ndarray, flow: np.ndarray, scale: float) -> np.ndarray:
    height, width = image.shape[:2]
    if scale != 1.0:
        flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR) * scale
    x = np.arange(width, dtype=np.float32)[None, :] + flow[..., 0]
    y = np.arange(height, dtype=np.float32)[:, None] + flow[..., 1]
    return cv2.remap(image, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def real(upscaler: Upscaler, start: int, frames: int | None) -> dict[str, list]:
    temporal, times, metric = TemporalFilter(), Times(), FlowMetric()
    series: dict[str, list] = {"index": [], "per-frame": [], "temporal": [], "cuts": []}
    previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    count = 0
    for index, frame in enumerate(read_frames(str(SAMPLE), start_frame=start, frames=frames),
                                  start):
        fresh, out = upscale_both(upscaler, temporal, frame, times)
        count += 1
        if temporal.last.cut and previous is not None:
            series["cuts"].append(index)
        if previous is not None:
            flow, reliable = metric.motion(previous[0], frame)
            if reliable.mean() >= 0.1:
                series["index"].append(index)
                series["per-frame"].append(metric.error(previous[1], fresh, flow, reliable))
                series["temporal"].append(metric.error(previous[2], out, flow, reliable))
        previous = frame, fresh, out
        if count % 20 == 0:
            print(f"  ... {count} frames", flush=True)
    per, tmp = np.mean(series["per-frame"]), np.mean(series["temporal"])
    print(f"real clip: {SAMPLE.name} frames {start}-{start + count - 1}, "
          f"{len(series['index'])} pairs measured, scene cuts found at {series['cuts']}")
    print(f"  flow-warped flicker: per-frame {per:.3f}, temporal {tmp:.3f} "
          f"({100 * (1 - tmp / per):.0f}% lower)")
    print("  " + times.line())
    return series


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) of a process and of its children, living or
    reaped: less disturbed by other work on a shared machine than the wall clock."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid:  # its own threads and the children it has reaped
            total += sum(int(value) for value in fields[11:15]) / tick
        elif int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def cost(model: str, start: int, frames: int, rounds: int) -> None:
    """Interleaved `realscale video` runs (ABBA); wall and CPU time per frame from the first
    progress event to the last (model loading and ffmpeg start left out)."""
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "core"))
    wall: dict[str, list[float]] = {"per-frame": [], "temporal": []}
    cpu: dict[str, list[float]] = {"per-frame": [], "temporal": []}
    loads = []
    with tempfile.TemporaryDirectory() as scratch:
        order = []
        for round_ in range(rounds):
            pair = ["per-frame", "temporal"]
            order += pair if round_ % 2 == 0 else pair[::-1]
        for run, mode in enumerate(order):
            out = Path(scratch) / f"run{run}.mp4"
            command = [sys.executable, "-m", "realscale", "video", str(SAMPLE), "-o", str(out),
                       "-m", model, "--start-frame", str(start), "--frames", str(frames),
                       "--codec", "h264", "--progress", "json"]
            if mode == "temporal":
                command.append("--temporal")
            load_before = os.getloadavg()[0]
            process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
            assert process.stdout is not None
            marks = [(time.perf_counter(), cpu_seconds(process.pid))
                     for line in process.stdout if json.loads(line)["event"] == "progress"]
            if process.wait() != 0:
                sys.exit(f"realscale video failed (exit {process.returncode})")
            wall[mode].append((marks[-1][0] - marks[0][0]) / (len(marks) - 1))
            cpu[mode].append((marks[-1][1] - marks[0][1]) / (len(marks) - 1))
            loads.append((load_before, os.getloadavg()[0]))
            print(f"  run {run + 1}: {mode:9s} {wall[mode][-1]:.2f} s/frame, CPU "
                  f"{cpu[mode][-1]:.2f} s/frame (load {load_before:.1f} -> "
                  f"{loads[-1][1]:.1f})", flush=True)
    print(f"cost: {model}, {frames} frames of {SAMPLE.name} from {start}, h264, {rounds} "
          f"rounds, load average {min(min(x) for x in loads):.1f}-"
          f"{max(max(x) for x in loads):.1f} on {os.cpu_count()} CPUs")
    for name, times in (("wall", wall), ("CPU", cpu)):
        # A round's two runs ran back to back: their ratio is the least disturbed by load.
        ratios = [t / p for p, t in zip(times["per-frame"], times["temporal"], strict=True)]
        print(f"  {name}: median per-frame {np.median(times['per-frame']):.2f} s/frame, "
              f"temporal {np.median(times['temporal']):.2f} s/frame; temporal/per-frame by "
              f"round {', '.join(f'{r:.3f}' for r in ratios)}, median "
              f"{100 * (np.median(ratios) - 1):+.1f}%")


def plot(series: dict[str, list], path: Path) -> None:
    """Per-frame vs temporal flicker per pair of frames of the real clip, drawn with Pillow."""
    from PIL import Image, ImageDraw

    width, height, left, right, top, bottom = 760, 260, 52, 14, 30, 34
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    index = series["index"]
    first, last = min(index), max(index)
    tick = 0.25
    top_value = float(np.ceil(max(series["per-frame"]) / tick) * tick)

    def point(i: int, value: float) -> tuple[float, float]:
        x = left + (i - first) / max(1, last - first) * (width - left - right)
        y = height - bottom - min(value, top_value) / top_value * (height - top - bottom)
        return x, y

    for cut in series["cuts"]:
        x = point(cut, 0)[0]
        draw.line([(x, top), (x, height - bottom)], fill=(200, 200, 200))
    draw.line([(left, top), (left, height - bottom), (width - right, height - bottom)],
              fill="black")
    for step in np.arange(0, top_value + tick / 2, tick):
        y = point(first, step)[1]
        draw.line([(left - 4, y), (left, y)], fill="black")
        draw.text((4, y - 6), f"{step:.2f}", fill="black")
    for i in range(first - first % 20 + 20, last + 1, 20):
        x = point(i, 0)[0]
        draw.line([(x, height - bottom), (x, height - bottom + 4)], fill="black")
        draw.text((x - 8, height - bottom + 6), str(i), fill="black")
    draw.text((width // 2 - 40, height - 14), "frame", fill="black")
    colours = {"per-frame": (214, 39, 40), "temporal": (31, 119, 180)}
    for name, colour in colours.items():
        runs: list[list[tuple[float, float]]] = [[]]
        for position, (i, value) in enumerate(zip(index, series[name], strict=True)):
            if position and i != index[position - 1] + 1:
                runs.append([])
            runs[-1].append(point(i, value))
        for run in runs:
            if len(run) > 1:
                draw.line(run, fill=colour, width=2)
    per, tmp = np.mean(series["per-frame"]), np.mean(series["temporal"])
    draw.text((left + 8, 8), f"per-frame (mean {per:.2f})", fill=colours["per-frame"])
    draw.text((left + 200, 8), f"temporal (mean {tmp:.2f})", fill=colours["temporal"])
    draw.text((left + 400, 8), "flow-warped change between frames, 8-bit levels",
              fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="realesr-animevideov3")
    parser.add_argument("--synthetic-frames", type=int, default=30)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--cost-start", type=int, default=60)
    parser.add_argument("--cost-frames", type=int, default=12)
    parser.add_argument("--cost-rounds", type=int, default=3)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=("synthetic", "real", "cost"), help="parts to leave out")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    upscaler = Upscaler(args.model)
    if "synthetic" not in args.skip:
        synthetic(upscaler, args.synthetic_frames)
    if "real" not in args.skip:
        series = real(upscaler, args.start, args.frames)
        if args.plot is not None:
            plot(series, args.plot)
    if "cost" not in args.skip:
        cost(args.model, args.cost_start, args.cost_frames, args.cost_rounds)


if __name__ == "__main__":
    main()
