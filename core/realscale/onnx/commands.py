"""``realscale export-onnx MODEL -o FILE``: write a model as an ONNX file (dynamic size)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from ..errors import RealscaleError

EXIT_OK = 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export-onnx", help="write a model as an ONNX file (any image size, opset 17)",
        description="Write MODEL (a catalogue name or a weights file) as an ONNX graph with "
        "input 'input' (N, 3, H, W) float32 in [0, 1] and output 'output' "
        "(N, 3, H*scale, W*scale); N, H and W are dynamic.",
    )
    export.add_argument("model", help="catalogue name or weights file")
    export.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    export.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                        help="weights in fp32 or fp16 (input and output stay float32)")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or later")
    export.add_argument("--download", action="store_true",
                        help="allow downloading official weights that are not embedded")
    export.set_defaults(handler=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("onnx") is None:
        msg = "export-onnx needs the onnx package, which is missing here: pip install onnx"
        raise RealscaleError(msg)
    if args.opset < 17:
        msg = f"--opset must be 17 or later, got {args.opset}"
        raise RealscaleError(msg)
    import onnx

    from ..loading import load_model
    from .graph import build

    target = Path(args.output)
    if not target.parent.is_dir():
        msg = f"the output folder {target.parent} does not exist; create it first"
        raise RealscaleError(msg)
    model = load_model(args.model, allow_download=args.download, backend="onnxruntime")
    proto = build(model, precision=args.precision, opset=args.opset)
    onnx.checker.check_model(proto, full_check=True)
    partial = target.with_name(target.name + ".part")
    onnx.save(proto, str(partial))
    partial.replace(target)
    print(f"{model.name} -> {target} ({model.architecture}, x{model.scale}, {args.precision}, "
          f"opset {args.opset}, {target.stat().st_size / 1e6:.1f} MB)")
    return EXIT_OK
