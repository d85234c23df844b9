"""Peak memory of a host client and its worker for one big request (issue 3's budget).

Run it with any Python (a host's, e.g. ``/usr/bin/python3 -S``, or the venv's); the client
side uses the standard library only, like a host plug-in::

    python bench/worker_memory.py                      # 4000x3000 RGB u8, x4, compact model
    python bench/worker_memory.py --width 800 --height 600

Prints the size of one output copy and the peak resident memory (VmHWM / ru_maxrss) of
this process and of the worker: the goal is that neither holds more than about two copies
of the output. On 2 CPU cores the default request takes several minutes.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "plugins", "common"))

import realscale_client as rc  # noqa: E402

MIB = 1 << 20


def _own_peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _rss(pid: int) -> int:
    """Current resident memory of a process (Linux), 0 where unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--scale", type=float, default=4.0)
    parser.add_argument("--model", default="realesr-animevideov3")
    parser.add_argument("--tile", type=int, default=0, help="0 = auto")
    parser.add_argument("--python", default=os.path.join(REPO, ".venv", "bin", "python"),
                        help="the worker's interpreter (default: the repo's .venv)")
    parser.add_argument("--in-process", action="store_true",
                        help="no worker: the Upscaler's own peak in this process, for "
                             "comparison (needs realscale's environment)")
    args = parser.parse_args()
    if args.in_process:
        return in_process(args)

    client = rc.WorkerClient(args.python, pythonpath=[os.path.join(REPO, "core")])
    layout = rc.PixelLayout(3, "u8", "rgb")
    size = args.width * args.height * 3
    # Any pixels do for memory: a repeating ramp, built without numpy.
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    # Load the model with a tiny request first, so the baseline includes it.
    client.upscale(bytes(16 * 16 * 3), 16, 16, layout, model=args.model, scale=args.scale)
    before = client.status()
    worker_pid = int(before["pid"])
    print(f"worker {worker_pid} ready: {before['peak_rss'] / MIB:.0f} MiB peak so far "
          f"(Python, torch, the model)")
    own_before = _own_peak()
    started = time.monotonic()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > 15 or done == total:
            last[0] = now
            print(f"  tile {done}/{total}, {now - started:.0f}s, worker RSS "
                  f"{_rss(worker_pid) / MIB:.0f} MiB", flush=True)

    result = client.upscale(data, args.width, args.height, layout, model=args.model,
                            scale=args.scale, tile=args.tile, progress=progress)
    elapsed = time.monotonic() - started
    after = client.status()
    out_bytes = len(result.data)
    own = _own_peak()
    print(f"\n{args.width}x{args.height} RGB u8 -> {result.width}x{result.height} with "
          f"{args.model} in {elapsed:.0f}s")
    print(f"one output copy: {out_bytes / MIB:8.0f} MiB   (input {size / MIB:.0f} MiB)")
    print(f"client peak RSS: {own / MIB:8.0f} MiB = {own / out_bytes:.2f} output copies "
          f"(before the request: {own_before / MIB:.0f} MiB)")
    worker_peak = int(after["peak_rss"])
    print(f"worker peak RSS: {worker_peak / MIB:8.0f} MiB = {worker_peak / out_bytes:.2f} output "
          f"copies (idle with the model loaded: {before['peak_rss'] / MIB:.0f} MiB; "
          f"above that: {(worker_peak - before['peak_rss']) / out_bytes:.2f} copies)")
    client.close()
    return 0


def in_process(args: argparse.Namespace) -> int:
    """The same request straight through the Upscaler: what the worker's figure includes
    before any protocol work."""
    sys.path.insert(0, os.path.join(REPO, "core"))
    import numpy as np

    from realscale import Upscaler

    upscaler = Upscaler(args.model, tile=args.tile or "auto")
    image = np.zeros((args.height, args.width, 3), np.uint8)
    image[:] = np.arange(args.width, dtype=np.uint8)[None, :, None]
    upscaler.upscale(image[:16, :16], scale=args.scale)
    before = _own_peak()
    started = time.monotonic()
    result = upscaler.upscale(image, scale=args.scale)
    own = _own_peak()
    print(f"in process: {args.width}x{args.height} -> {result.shape[1]}x{result.shape[0]} "
          f"in {time.monotonic() - started:.0f}s")
    print(f"one output copy: {result.nbytes / MIB:8.0f} MiB")
    print(f"peak RSS:        {own / MIB:8.0f} MiB = {own / result.nbytes:.2f} output copies "
          f"(with the model loaded: {before / MIB:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
