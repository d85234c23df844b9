"""Are two checkouts' upscales bit-identical? Prints one sha256 per output of a fixed set.

Runs the ``realscale upscale`` command line of the checkout given (its ``core/`` first on the
path, the installed editable package set aside) over small crops of tests/data: RGB, RGBA,
16-bit RGBA and grey; the compact model and x4plus-anime; the torch and onnxruntime backends;
``--tile auto`` and ``--tile 32`` (several tiles); fp32 on the CPU. Run it once per checkout
and compare the lines (``diff``)::

    git worktree add /tmp/realscale-old 1c85ea0
    .venv/bin/python bench/identical.py /tmp/realscale-old > old.txt
    .venv/bin/python bench/identical.py . > new.txt
    diff old.txt new.txt && echo identical

Each line: model, backend, tile, input, the sha256 of the decoded output pixels (the file's
bytes can differ with the encoder's version; its pixels must not).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "realesrgan-inputs"
CROPS = {
    # name: (source file, top, left, height, width)
    "rgb.png": ("0014.jpg", 100, 120, 40, 56),
    "rgba.png": ("children-alpha.png", 60, 80, 44, 52),
    "rgba16.png": ("tree_alpha_16bit.png", 40, 40, 36, 48),
    "grey.png": ("wolf_gray.jpg", 80, 60, 40, 44),
}
MODELS = ("realesr-animevideov3", "realesrgan-x4plus-anime")
BACKENDS = ("torch", "onnxruntime")
TILES = ("auto", "32")


def _use_checkout(checkout: Path) -> None:
    """Import realscale from ``checkout/core``, not from the editable install: its finder is
    taken off ``sys.meta_path`` so that the catalogue is read from ``checkout/models`` too."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__
                        and "editable" not in getattr(f, "__module__", "")]
    sys.path.insert(0, str(checkout / "core"))
    import realscale

    where = Path(realscale.__file__).resolve()
    if not where.is_relative_to(checkout.resolve()):
        raise SystemExit(f"realscale came from {where}, not from {checkout}")


def _crops(folder: Path) -> list[Path]:
    import cv2

    paths = []
    for name, (source, top, left, height, width) in CROPS.items():
        image = cv2.imread(str(DATA / source), cv2.IMREAD_UNCHANGED)
        crop = image[top : top + height, left : left + width]
        if name == "grey.png" and crop.ndim == 3:
            crop = crop[..., 0]
        path = folder / name
        cv2.imwrite(str(path), crop)
        paths.append(path)
    return paths


def _digest(path: Path) -> str:
    import cv2

    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    header = f"{pixels.shape}{pixels.dtype}".encode()
    return hashlib.sha256(header + pixels.tobytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="the repository checkout to run")
    args = parser.parse_args()
    _use_checkout(args.checkout)
    from realscale.cli import main as realscale

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "in").mkdir()
        inputs = _crops(folder / "in")
        for path in inputs:
            print(f"input {path.name} {_digest(path)}")
        for model in MODELS:
            for backend in BACKENDS:
                for tile in TILES:
                    out = folder / f"{model}-{backend}-{tile}"
                    out.mkdir()
                    argv = ["upscale", "-q", "-m", model, "--backend", backend, "--tile", tile,
                            "--device", "cpu", "--precision", "fp32", "-o", str(out),
                            *map(str, inputs)]
                    with contextlib.redirect_stdout(io.StringIO()):
                        code = realscale(argv)
                    if code:
                        raise SystemExit(f"realscale {' '.join(argv)} exited {code}")
                    for path in inputs:
                        print(f"{model} {backend} tile={tile} {path.name} "
                              f"{_digest(out / path.name)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
