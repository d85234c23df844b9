"""Speed, side by side: realscale vs the upstream-equivalent PyTorch path vs the ncnn runtime.

Run: .venv/bin/python bench/speed.py [--models x4plus,anime,compact] [--small 128]
     [--large 320] [--tile auto] [--threads 2] [--repeat 2] [--large-repeat 1]
     [--device auto]

For each model and a small and a large real image (OST_009.png, cropped or mirrored to
size), times the whole pipeline from 8-bit pixels to 8-bit pixels (padding, tiling, the
network, blending, rounding) of:

- realscale: ``Upscaler(model)`` with every setting at ``auto``, and on the CPU the other
  backend (torch fp32 or onnxruntime) as another column, and ``--precision bf16`` where auto
  keeps fp32 on a CPU with bfloat16 instructions (RRDBNet: faster, but not within 2/255);
- upstream-equivalent: what Real-ESRGAN's ``RealESRGANer`` does with ``tile=0, pre_pad=10``:
  the same weights, eager NCHW, fp32 on the CPU and fp16 on CUDA, the whole image at once;
- the ncnn runtime (PyPI ``ncnn``, CPU, same threads) on the same ``.param/.bin``, padded by
  10 px as realesrgan-ncnn-vulkan does (the reference for the 8-bit differences printed;
  upstream pads bottom/right only, so its edges differ).

Each column runs in a process of its own; each row gives the best of ``--repeat`` runs
(``--large-repeat`` for the large image) after a warm-up run, and says how many cores other
processes used meanwhile (timings on a shared machine are only comparable when that is near
0). Then the ratio of each pair, and the extra network work of the tile context at the default tile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "core"))
sys.path.insert(0, str(HERE))

# realscale first, as its command line does: it turns on huge pages for torch's CPU allocator
# before torch allocates (the upstream-equivalent path, in this process, gets them as well).
from realscale import DeviceError, Upscaler, catalogue, devices, load_model  # noqa: E402, I001
from realscale.download import ensure_weights  # noqa: E402
from realscale.tiling import TilePlan  # noqa: E402
import torch  # noqa: E402
from tiling import work_ratio  # noqa: E402  (bench/tiling.py)

DATA = HERE.parent / "tests" / "data" / "realesrgan-inputs"
MODELS = {
    "x4plus": "realesrgan-x4plus",
    "anime": "realesrgan-x4plus-anime",
    "compact": "realesr-animevideov3",
}
PRE_PAD = 10


def load() -> str:
    """The 1-minute load average (this benchmark's own threads count in it too)."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"


def busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (Linux), to tell others' share."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def photo(size: int) -> np.ndarray:
    """A real photo, cropped (or tiled by reflection, for sizes beyond the file) to size²."""
    with Image.open(DATA / "OST_009.png") as image:
        pixels = np.asarray(image.convert("RGB"))
    if min(pixels.shape[:2]) < size:
        pixels = np.pad(pixels, ((0, max(0, size - pixels.shape[0])),
                                 (0, max(0, size - pixels.shape[1])), (0, 0)), mode="reflect")
    return np.ascontiguousarray(pixels[:size, :size])


def upstream_path(name: str, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """RealESRGANer(tile=0, pre_pad=10, half=cuda): eager NCHW, the whole image at once."""
    import copy

    from torch.nn import functional as F

    model = load_model(name)
    half = device.type == "cuda"
    network = copy.deepcopy(model.network).to(device)
    if half:
        network = network.half()
    scale = model.scale

    def run(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
            x = x.to(device)
            x = x.half() if half else x
            x = F.pad(x, (0, PRE_PAD, 0, PRE_PAD), mode="reflect")  # as upstream: right/bottom
            y = network(x)
            h, w = pixels.shape[0] * scale, pixels.shape[1] * scale
            y = y[:, :, :h, :w].float().clamp_(0, 1)
            out = (y[0].permute(1, 2, 0) * 255.0).round().byte().cpu().numpy()
        return out

    return run


def ncnn_path(name: str, threads: int) -> Callable[[np.ndarray], np.ndarray] | None:
    try:
        import ncnn
    except ImportError:
        return None
    weights = ensure_weights(catalogue.get(name), allow_download=False)
    if not isinstance(weights, tuple):
        return None
    param, bin_path = weights
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    if net.load_param(str(param)) or net.load_model(str(bin_path)):
        return None
    scale = catalogue.get(name).scale

    def run(pixels: np.ndarray) -> np.ndarray:
        padded = np.pad(pixels, ((PRE_PAD, PRE_PAD), (PRE_PAD, PRE_PAD), (0, 0)), mode="reflect")
        planar = np.ascontiguousarray(padded.astype(np.float32).transpose(2, 0, 1) / 255.0)
        extractor = net.create_extractor()
        extractor.input("data", ncnn.Mat(planar))
        _status, out = extractor.extract("output")
        result = np.array(out).transpose(1, 2, 0)
        border = PRE_PAD * scale
        result = result[border:-border, border:-border]
        return np.clip(np.rint(result * 255.0), 0, 255).astype(np.uint8)

    return run


def timed(run: Callable[[np.ndarray], np.ndarray], pixels: np.ndarray,
          repeat: int, warm_up: bool) -> tuple[float, np.ndarray, str]:
    if warm_up:
        # Throughput, not first-call cost: the first run of each path pays for thread pools,
        # kernel selection and fresh memory pages (ncnn's first 512 px run of x4plus-anime
        # took 27 s against 11.5 s after it).
        run(pixels)
    best, out, others = float("inf"), pixels, []
    for _ in range(repeat):
        busy, own = busy_seconds(), time.process_time()
        started = time.perf_counter()
        out = run(pixels)
        wall = time.perf_counter() - started
        if busy is not None:
            after = busy_seconds()
            assert after is not None
            others.append(max(0.0, (after - busy) - (time.process_time() - own)) / wall)
        best = min(best, wall)
    share = f"others used {max(others):.2f} cores" if others else "others' use unknown"
    return best, out, f"{share}, load {load()}"


def diff(a: np.ndarray, b: np.ndarray) -> str:
    d = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return f"max {d.max()}/255, 99.9th pct {np.percentile(d, 99.9):.1f}/255"


KINDS = ("ours", "bf16", "upstream", "ncnn", "other")


def make_path(kind: str, name: str, args: argparse.Namespace
              ) -> tuple[str, Callable[[np.ndarray], np.ndarray], str] | None:
    """(label, run, note) of one column, or None where it cannot run here."""
    tile: int | str = int(args.tile) if args.tile != "auto" else "auto"
    # Only realscale's own columns build an Upscaler (and load realscale's engine).
    device = devices.choose(args.device).device
    if kind == "upstream":
        label = "fp16" if device.type == "cuda" else "fp32"
        return f"upstream-equivalent ({label} eager NCHW)", upstream_path(name, device), ""
    if kind == "ncnn":
        run = ncnn_path(name, args.threads)
        return None if run is None else (f"ncnn runtime (CPU, {args.threads} threads)", run, "")
    ours = Upscaler(name, device=args.device, tile=tile)
    if kind == "ours":
        plan = ours.plan()
        note = f"tile {plan.tile} px" + (" from free memory" if tile == "auto" else "")
        return f"realscale ({ours.engine.backend} {ours.precision} on {device})", ours.upscale, note
    if kind == "bf16":
        # The opt-in fast path where auto stays in fp32 for accuracy (RRDBNet on bf16 CPUs).
        if device.type != "cpu" or ours.precision == "bf16" or not devices.cpu_has_bf16():
            return None
        fast = Upscaler(name, device="cpu", precision="bf16", tile=tile)
        return "realscale --precision bf16 (opt-in)", fast.upscale, ""
    if args.no_other_backend or device.type != "cpu":
        return None
    # The backend auto did not pick, for comparison (torch in fp32 or onnxruntime).
    other = "torch" if ours.engine.backend == "onnxruntime" else "onnxruntime"
    try:
        alt = Upscaler(name, device="cpu", backend=other, tile=tile,
                       precision="fp32" if other == "torch" else "auto")
    except DeviceError:  # the other backend is not installed: the column is left out
        return None
    return f"realscale {other} ({alt.precision})", alt.upscale, ""


def child(args: argparse.Namespace) -> None:
    """Run one column in this process and report it as a JSON line (output in --out)."""
    torch.set_num_threads(args.threads)
    made = make_path(args.child, MODELS.get(args.models, args.models), args)
    if made is None:
        print(json.dumps(None))
        return
    label, run, note = made
    small = args.size <= args.small
    repeat = args.repeat if small else args.large_repeat
    seconds, out, info = timed(run, photo(args.size), repeat, True)
    np.save(args.out, out)
    print(json.dumps({"label": label, "seconds": seconds, "info": info, "note": note}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="x4plus,anime,compact")
    parser.add_argument("--small", type=int, default=128)
    parser.add_argument("--large", type=int, default=320)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=2, help="timed runs, small image")
    parser.add_argument("--large-repeat", type=int, default=1, help="timed runs, large image")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tile", default="auto",
                        help="realscale's tile (auto: from free memory, which other processes "
                        "change; give a number for figures that compare across runs)")
    parser.add_argument("--no-other-backend", action="store_true",
                        help="leave out the column of the backend auto did not choose")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, {args.threads} threads; "
          f"torch {torch.__version__}; load average {load()}; each column in its own process")
    with tempfile.TemporaryDirectory() as scratch:
        for key in args.models.split(","):
            for size in (args.small, args.large):
                report(key, size, args, Path(scratch))


def report(key: str, size: int, args: argparse.Namespace, scratch: Path) -> None:
    name = MODELS.get(key, key)
    scale = catalogue.get(name).scale
    print(f"\n{name}, {size}x{size} -> {size * scale}x{size * scale}:", flush=True)
    times: dict[str, float] = {}
    outputs: dict[str, np.ndarray] = {}
    for kind in KINDS:
        out = scratch / f"{kind}.npy"
        command = [sys.executable, __file__, "--child", kind, "--models", key, "--size",
                   str(size), "--out", str(out)]
        for option in ("small", "threads", "repeat", "large_repeat", "device", "tile"):
            command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
        if args.no_other_backend:
            command.append("--no-other-backend")
        env = dict(os.environ)
        if kind == "upstream":
            env["THP_MEM_ALLOC_ENABLE"] = "0"  # plain torch, as upstream runs it
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        lines = done.stdout.strip().splitlines()
        result = json.loads(lines[-1]) if done.returncode == 0 and lines else None
        if result is None:
            if done.returncode:
                print(f"  {kind}: failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        label = result["label"]
        times[label], outputs[label] = result["seconds"], np.load(out)
        note = f"; {result['note']}" if result["note"] else ""
        # Issue 6 states the GPU goal per 256x256 input tile: the same work, whole pipeline.
        per_tile = result["seconds"] * 1000 * (256 * 256) / (size * size)
        print(f"  {label:48s} {result['seconds']:8.2f} s = {per_tile:7.1f} ms per 256x256 "
              f"({result['info']}{note})", flush=True)
    labels = list(times)
    if len(labels) < 2:
        return
    # The reference is the official engine's output (ncnn) where it runs; upstream's
    # RealESRGANer pads bottom/right only, so its edges differ from both.
    ref_label = next((label for label in labels if label.startswith("ncnn")), labels[1])
    for label in labels:
        if label != ref_label:
            print(f"  {label:48s} vs {ref_label.split(' (')[0]}: "
                  f"{diff(outputs[label], outputs[ref_label])}")
    ours_label, fast_label = labels[0], next((x for x in labels if "bf16 (opt-in)" in x), None)
    if fast_label is not None and ours_label.startswith("realscale ("):
        print(f"  {fast_label:48s} vs {ours_label}: "
              f"{diff(outputs[fast_label], outputs[ours_label])}")
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            print(f"  speed of {a.split(' (')[0]} relative to {b.split(' (')[0]}: "
                  f"{times[b] / times[a]:.2f}x")
    if size == args.large:
        model = load_model(name)
        tile = int(args.tile) if args.tile != "auto" else Upscaler(model, device=args.device
                                                                   ).plan().tile
        plan = TilePlan(tile, 8, model.tile_context, model.size_multiple)
        cells = ", ".join(
            f"{w}x{h}: +{(work_ratio(w, h, plan) - 1) * 100:.0f}%"
            for w, h in ((640, 480), (1920, 1080), (4000, 3000))
        )
        small_plan = TilePlan(512, 8, model.tile_context, model.size_multiple)
        print(f"  tiling at the default tile ({plan.tile} px, context {plan.context}, overlap "
              f"{plan.overlap}): extra network work {cells} (at 512 px tiles: "
              f"+{(work_ratio(1920, 1080, small_plan) - 1) * 100:.0f}% on 1920x1080)")


if __name__ == "__main__":
    main()
