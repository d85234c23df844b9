"""What the Ray path costs and what bounds it: `realscale upscale --ray` against the plain
command, frame transfers between Ray nodes, and the driver's decode/encode ceiling.

Run: .venv/bin/python bench/ray_scale.py [--parts batch,frames,ceiling] [--small 8]
     [--large 24] [--repeat 2] [--frames 40]

- batch: the same batch of real crops (OST_009.png) through the plain `realscale upscale`
  (1 and 2 threads) and through the Ray path on a local two-node cluster (127.0.0.1, one CPU
  per node, as tests/cluster starts it) with 1 and 2 workers. Each configuration runs a
  small and a large batch; the difference gives the time per file (the slope) apart from the
  fixed start-up (joining Ray, starting workers, loading the model); each time is the best
  of --repeat runs. Two models: the compact model on 96x96 crops (real work, 0.2-0.4 s a
  file on one core) and a tiny 4-channel network on 32x32 crops in batches 2x and 4x as
  large (almost no work: its slope is each path's own cost per file).
- frames: a 960x540 8-bit frame sent to a worker and a 3840x2160 one sent back, on the same
  node and across the two nodes (loopback TCP between Ray's object managers): milliseconds
  per frame and MB/s, the model left out.
- ceiling: the driver's side of `realscale video` with no model (frames repeated 4x, the
  cost of which is printed too): 540p decoded, 2160p encoded as ProRes 422 HQ and as H.264,
  in frames per second. Nothing spread over a cluster can go faster than this.

Timings on a shared machine are noisy: the load average is printed with each part.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for extra in (REPO / "core", REPO / "tests", REPO / "tests" / "cluster", HERE):
    sys.path.insert(0, str(extra))

from local_cluster import LocalCluster  # noqa: E402
from PIL import Image  # noqa: E402

from fakes.models import compact_model  # noqa: E402

SOURCE = REPO / "tests" / "data" / "realesrgan-inputs" / "OST_009.png"


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def crops(folder: Path, count: int, size: int) -> Path:
    folder.mkdir(parents=True)
    with Image.open(SOURCE) as image:
        rgb = image.convert("RGB")
        for index in range(count):
            left = (20 + 23 * index) % (rgb.width - size)
            top = (10 + 17 * index) % (rgb.height - size)
            rgb.crop((left, top, left + size, top + size)).save(folder / f"c{index:03d}.png")
    return folder


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:4])}... failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def batch(cluster: LocalCluster, scratch: Path, small: int, large: int, repeat: int) -> None:
    tiny = compact_model(scratch / "tiny.safetensors", seed=1)
    # (model, crop size, tile, small and large batch): the tiny network's files take a few
    # milliseconds, so its batches are larger for the slope to stand above the noise.
    cases = [("realesr-animevideov3", 96, "64", small, large),
             (str(tiny), 32, "32", 2 * small, 4 * large)]
    plain_env = dict(os.environ, PYTHONPATH=str(REPO / "core"))
    print(f"batch ({load()})")
    print(f"  {'model, input':<34} {'path':<22} {'start-up s':>10} {'s/file':>7} "
          f"{'files/s':>8} {'vs plain, 1 thread':>19}")
    for model, size, tile, few, many in cases:
        name = "tiny 4-channel net" if model == str(tiny) else model
        folders = {n: crops(scratch / f"{size}-{n}", n, size) for n in (few, many)}
        rows = []
        for label, threads in (("plain, 1 thread", "1"), ("plain, 2 threads", "2")):
            times = {}
            for count, folder in folders.items():
                out = scratch / f"out-{len(rows)}-{count}-{size}"
                out.mkdir()
                times[count] = min(timed(
                    [sys.executable, "-m", "realscale", "upscale", str(folder), "-o", str(out),
                     "-m", model, "--tile", tile, "-q"],
                    dict(plain_env, OMP_NUM_THREADS=threads)) for _ in range(repeat))
            rows.append((label, times))
        for workers in (1, 2):
            times = {}
            for count, folder in folders.items():
                out = scratch / f"out-ray{workers}-{count}-{size}"
                out.mkdir()
                times[count] = min(timed(
                    [sys.executable, "-m", "realscale", "upscale", str(folder), "-o", str(out),
                     "-m", model, "--tile", tile, "-q", f"--ray={cluster.address}",
                     "--ray-workers", str(workers)], cluster.env())
                    for _ in range(repeat))
            rows.append((f"Ray, {workers} worker{'s' * (workers > 1)}", times))
        base = None
        for label, times in rows:
            slope = (times[many] - times[few]) / (many - few)
            fixed = times[few] - few * slope
            base = slope if base is None else base
            print(f"  {name + f', {size}x{size}':<34} {label:<22} {fixed:>10.1f} "
                  f"{slope:>7.3f} {1 / slope if slope > 0 else float('inf'):>8.2f} "
                  f"{slope - base:>+18.3f}s")


def frames(cluster: LocalCluster) -> None:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(address=cluster.address, logging_level="error", log_to_driver=False)
    try:
        here = ray.get_runtime_context().get_node_id()
        others = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != here]

        class Echo:
            def __init__(self) -> None:
                self.out = np.random.default_rng(0).integers(
                    0, 256, (2160, 3840, 3), dtype=np.uint8)

            def take(self, frame: np.ndarray) -> np.ndarray:
                assert frame.shape == (540, 960, 3)
                return self.out

        remote = ray.remote(Echo)
        frame = np.random.default_rng(1).integers(0, 256, (540, 960, 3), dtype=np.uint8)
        print(f"frames: 960x540 in ({frame.nbytes / 1e6:.2f} MB), 3840x2160 out "
              f"({2160 * 3840 * 3 / 1e6:.1f} MB), 8-bit ({load()})")
        for where, node in (("same node", here), ("other node", others[0])):
            echo = remote.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
                node, soft=False)).remote()
            ray.get(echo.take.remote(frame))
            count = 20
            started = time.perf_counter()
            for _ in range(count):
                result = ray.get(echo.take.remote(frame))
                assert result.shape == (2160, 3840, 3)
                del result
            each = (time.perf_counter() - started) / count
            moved = frame.nbytes + 2160 * 3840 * 3
            print(f"  {where:<11} {each * 1000:7.1f} ms a frame, {moved / each / 1e6:7.0f} MB/s")
            ray.kill(echo)
    finally:
        ray.shutdown()


class NullUpscaler:
    """The pipeline's model step without a model: each pixel repeated 4x4."""

    scale = 4
    seconds = 0.0

    def output_size(self, width: int, height: int, *, scale: float | None = None,
                    **_: object) -> tuple[int, int]:
        return width * 4, height * 4

    def upscale_frames(self, frames: Iterable[np.ndarray], **_: object,
                       ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for image in frames:
            started = time.perf_counter()
            result = np.repeat(np.repeat(image, 4, axis=0), 4, axis=1)
            self.seconds += time.perf_counter() - started
            yield image, result


def ceiling(scratch: Path, count: int) -> None:
    from realscale.video.pipeline import VideoJob, upscale_video
    from video import make_clip

    clip = scratch / "clip_540p.mp4"
    make_clip(clip, 960, 540, count)
    print(f"ceiling: {count} frames 960x540 -> 3840x2160 with no model, {os.cpu_count()} "
          f"cores ({load()})")
    for codec, suffix in (("prores", ".mov"), ("h264", ".mp4")):
        null = NullUpscaler()
        result = upscale_video(VideoJob(str(clip), str(scratch / f"null{suffix}"), codec=codec,
                                        overwrite=True), null)
        rest = result.seconds - null.seconds
        print(f"  {codec:<7} {count / result.seconds:6.2f} frames/s; without the 4x repeat "
              f"({null.seconds / count * 1000:.0f} ms a frame): {count / rest:6.2f} frames/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="batch,frames,ceiling")
    parser.add_argument("--small", type=int, default=8)
    parser.add_argument("--large", type=int, default=24)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory(prefix="ray-scale-") as folder:
        scratch = Path(folder)
        if parts & {"batch", "frames"}:
            cluster = LocalCluster()
            try:
                cluster.start()
                if "batch" in parts:
                    batch(cluster, scratch, args.small, args.large, args.repeat)
                if "frames" in parts:
                    os.environ.update({k: v for k, v in cluster.env().items()
                                       if k.startswith("RAY_")})
                    frames(cluster)
            finally:
                cluster.stop()
        if "ceiling" in parts:
            ceiling(scratch, args.frames)


if __name__ == "__main__":
    main()
