"""Screenshots of the realscale plug-in in the real Krita, for the README.

Starts Krita 5.1 (this machine's, under its own Xvfb) with the plug-in installed from the zip
``realscale package krita`` builds, exactly as the host tests do (tests/hosts/krita's
harness), opens a real test image, fills in the dialog, and saves

- docs/images/krita-dialog.png: the "Upscale with Real-ESRGAN" dialog once the worker has
  timed the chosen model;
- docs/images/krita-result.png: Krita's window with the result layer.

Run from the repository root: ``.venv/bin/python scripts/screenshots/krita.py``. The pictures
are reduced to at most 1000 px wide (Krita's window is 1280 px), and to 256 colours where
that is needed to stay under 300 KB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests" / "hosts" / "krita"), str(REPO / "tests"), str(REPO / "core")]

import krita_harness as kh  # noqa: E402

IMAGE = REPO / "tests" / "data" / "realesrgan-inputs" / "0014.jpg"
MODEL = "realesrgan-x4plus"
MAX_WIDTH = 1000
MAX_BYTES = 300 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--model", default=MODEL)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="realscale-shots-") as temp:
        root = Path(temp)
        installation = kh.set_up(kh.HOSTS[0], [root])
        archive = kh.build_zip(root / "zip")
        warm = kh.new_profile(root / "warm", installation)
        run = kh.run_scenario(warm, "noop", root / "warm-out", timeout=180)
        if not run.result.get("ok"):
            print(run.describe(), file=sys.stderr)
            return 1
        profile = kh.clone_profile(warm, root / "shots")
        kh.import_zip(archive, profile)
        config = kh.write_worker_config(root / "worker.json")
        out = root / "out"
        run = kh.run_scenario(profile, "screenshots", out, timeout=400,
                              params={"image": str(IMAGE), "model": args.model},
                              env={"REALSCALE_WORKER_CONFIG": str(config)})
        if not run.result.get("ok") or run.returncode != 0:
            print(run.describe(), file=sys.stderr)
            return 1
        records = run.result["records"]
        if records.get("elided"):
            print(f"texts cut off in the dialog: {records['elided']}", file=sys.stderr)
            return 1
        args.output.mkdir(parents=True, exist_ok=True)
        for name in ("dialog", "result"):
            target = args.output / f"krita-{name}.png"
            shrink(out / f"{name}.png", target)
            print(f"{target} ({target.stat().st_size // 1024} KB)")
        print("dialog:", records["dialog"])
    return 0


def shrink(source: Path, target: Path) -> None:
    """At most MAX_WIDTH wide; reduced to 256 colours only when it would exceed MAX_BYTES."""
    import cv2
    import numpy as np

    pixels = cv2.imread(str(source), cv2.IMREAD_COLOR)
    height, width = pixels.shape[:2]
    if width > MAX_WIDTH:
        pixels = cv2.resize(pixels, (MAX_WIDTH, round(height * MAX_WIDTH / width)),
                            interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(target), pixels, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if target.stat().st_size <= MAX_BYTES:
        return
    data = pixels.reshape(-1, 3).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    _, labels, centres = cv2.kmeans(data, 256, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    quantised = centres.astype(np.uint8)[labels.ravel()].reshape(pixels.shape)
    cv2.imwrite(str(target), quantised, [cv2.IMWRITE_PNG_COMPRESSION, 9])


if __name__ == "__main__":
    sys.exit(main())
