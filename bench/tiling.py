"""Tiling figures: seam error against the untiled result, and the extra work of the context.

Run: .venv/bin/python bench/tiling.py [--model realesrgan-x4plus] [--size 96]
Prints, on a real photo crop, the largest and 99.9th-percentile difference to the untiled
result for realscale's tiles (context + blended overlap) and for upstream-style tiles (10 px
pad, hard crop), and the share of extra pixels the network processes at the default tiles.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

from realscale import Upscaler, load_model  # noqa: E402
from realscale.tiling import TilePlan, spans  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "realesrgan-inputs"


def work_ratio(width: int, height: int, plan: TilePlan) -> float:
    """Pixels sent to the network divided by the (padded) image's pixels."""
    cols = spans(width + 20, plan)
    rows = spans(height + 20, plan)
    sent = sum(r.input_end - r.input_start for r in rows) * sum(
        c.input_end - c.input_start for c in cols
    )
    return sent / ((width + 20) * (height + 20))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="realesrgan-x4plus")
    parser.add_argument("--image", default="0014.jpg")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--tile", type=int, default=32)
    args = parser.parse_args()
    model = load_model(args.model)
    with Image.open(DATA / args.image) as image:
        pixels = np.asarray(image.convert("RGB"))[: args.size, : args.size]
    started = time.perf_counter()
    reference = Upscaler(model, device="cpu", tile=4096).upscale(pixels).astype(np.int32)
    print(f"{args.model} on {args.image} {args.size}x{args.size}, tile {args.tile}")
    print(f"  untiled: {time.perf_counter() - started:.1f}s")
    for label, kwargs in (
        (f"realscale (context {model.tile_context}, overlap 8, blended)", {}),
        ("upstream-style (pad 10, hard crop)", {"context": 10, "overlap": 0}),
    ):
        started = time.perf_counter()
        tiled = Upscaler(model, device="cpu", tile=args.tile, **kwargs).upscale(pixels)
        diff = np.abs(tiled.astype(np.int32) - reference)
        print(f"  {label}: max {diff.max()}/255, 99.9th percentile "
              f"{np.percentile(diff, 99.9):.1f}/255, {time.perf_counter() - started:.1f}s")
    print(f"extra network work from the context ({model.tile_context} px) + overlap (8 px):")
    for tile in (512, 1024, 2048):
        plan = TilePlan(tile, 8, model.tile_context, model.size_multiple)
        cells = ", ".join(
            f"{w}x{h}: +{(work_ratio(w, h, plan) - 1) * 100:.0f}%"
            for w, h in ((640, 480), (1920, 1080), (4000, 3000))
        )
        print(f"  tile {tile}: {cells}")


if __name__ == "__main__":
    main()
