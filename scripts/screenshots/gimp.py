#!/usr/bin/env python3
"""Pictures of the GIMP plug-in for the README, taken from the real GIMP 3.2 (Debian sid
chroot of ``scripts/host-chroot.sh``) on Xvfb, through the host tests' harness:

- ``docs/images/gimp-dialog.png``: the plug-in's dialog, opened on a crop of a test image
  (tests/data), with a model picked as a user picks it;
- ``docs/images/gimp-result.png``: the upscaled layer that dialog's OK made.

Run as root (the chroot) from the checkout: ``.venv/bin/python scripts/screenshots/gimp.py``.
The worker runs from this checkout, outside the chroot, as in the tests.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests" / "hosts" / "gimp"), str(REPO / "core")]

from gimp_host import GIMPS, GimpSession, TcpWorker, Xvfb, build_chroot  # noqa: E402

OUT = REPO / "docs" / "images"
SOURCE = REPO / "tests" / "data" / "realesrgan-inputs" / "children-alpha.png"
CROP = [300, 120, 128, 128]  # x, y, width, height: faces and the transparent edge
SETTINGS = {"model": "realesr-animevideov3", "scale": 4.0, "device": "cpu",
            "precision": "exact"}
LIMIT = 300_000  # bytes a picture in the repository may weigh


def main() -> int:
    host = next(h for h in GIMPS if h.version == "3.2")
    session = GimpSession(build_chroot(host), host, install="install")
    worker, xvfb = TcpWorker(), Xvfb()
    try:
        config = session.file("worker.json")
        config.write_text(json.dumps(worker.config))
        image = session.file(SOURCE.name)
        shutil.copyfile(SOURCE, image)
        shot, result = session.file("dialog.png"), session.file("result.png")
        case = {"name": "screenshot", "input": session.inner(image), "crop": CROP,
                "run_mode": "INTERACTIVE", "args": {},
                "export": session.inner(result),
                "dialog": {"set": SETTINGS, "record": session.inner(session.file("shown.json")),
                           "snapshot": session.inner(shot), "respond": "ok"}}
        env = {"REALSCALE_WORKER_CONFIG": session.inner(config),
               "REALSCALE_GIMP_DIALOG": session.inner(session.file("dialog.json"))}
        results = session.run([case], env=env, display=xvfb.display)
        [done] = results["cases"]
        if done.get("status") != "success" or not shot.is_file() or not result.is_file():
            print(f"GIMP did not finish the upscale: {done}\n{results['log'][-3000:]}",
                  file=sys.stderr)
            return 1
        OUT.mkdir(parents=True, exist_ok=True)
        for made, name in ((shot, "gimp-dialog.png"), (result, "gimp-result.png")):
            target = OUT / name
            _save_small(made, target)
            print(f"{target} ({target.stat().st_size // 1000} KB)")
        return 0
    finally:
        xvfb.close()
        worker.close()
        session.close()


def _save_small(made: Path, target: Path) -> None:
    """Copy, re-encoded as an optimised PNG; fewer colours only where it must be smaller."""
    from PIL import Image

    with Image.open(made) as picture:
        picture.load()
        picture.save(target, optimize=True)
        if target.stat().st_size > LIMIT:
            picture.convert("RGBA").quantize(256).save(target, optimize=True)
    if target.stat().st_size > LIMIT:
        msg = f"{target} weighs {target.stat().st_size} bytes, more than {LIMIT}"
        raise SystemExit(msg)


if __name__ == "__main__":
    raise SystemExit(main())
