"""``realscale doctor``: print what this machine has, for bug reports and set-up checks."""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path

from .. import __version__, wire
from ..errors import RealscaleError
from .hosts import HOST_LIST
from .manifest import Manifest, load_manifest
from .sources import plugins_root


def _manifest(host: str) -> Manifest | None:
    try:
        return load_manifest(host)
    except RealscaleError:
        return None  # reported below, with the plug-in sources


def _gib(value: float) -> str:
    return f"{value / (1 << 30):.1f} GiB"


def report(out: Callable[[str], None] = print) -> int:
    """Print the report; returns how many problems were found."""
    problems = 0
    out(f"realscale {__version__}")
    out(f"Python     {sys.version.split()[0]} at {sys.executable} ({platform.platform()})")

    out("\nCompute")
    from ..devices import available_ram

    backends = 0
    try:
        import onnxruntime

        from ..backends.ort import available_devices

        backends += 1
        out(f"  onnxruntime {onnxruntime.__version__}: {', '.join(available_devices())}")
    except ImportError:
        out("  onnxruntime missing (optional with torch): pip install onnxruntime")
    try:
        import torch

        backends += 1
        out(f"  torch      {torch.__version__}")
        out(f"  CPU        {torch.get_num_threads()} threads, {_gib(available_ram())} RAM free")
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(index)
                out(f"  cuda:{index}     {torch.cuda.get_device_name(index)}, "
                    f"{_gib(free)} free of {_gib(total)}")
        else:
            out("  CUDA       not available")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            out("  mps        available")
        from ..architectures import ARCHITECTURES
        from ..devices import choose

        auto = choose()
        fp32 = [arch.name for arch in ARCHITECTURES if not arch.bf16_accurate]
        note = f"; {', '.join(fp32)} models in fp32" if fp32 and (
            auto.device.type, auto.precision) == ("cpu", "bf16") else ""
        out(f"  auto       {auto.device} ({auto.precision}{note})")
    except ImportError:
        out("  torch      not installed: the onnxruntime backend runs the models "
            "(for CUDA/MPS, bf16 and .pth files: pip install 'realscale[torch]')")
        out(f"  CPU        {_gib(available_ram())} RAM free")
    if not backends:
        problems += 1
        out("  PROBLEM: no backend; pip install 'realscale[torch]' or pip install onnxruntime")

    out("\nWorker config")
    config_file = Path(wire.config_path())
    try:
        config = wire.read_config(str(config_file), "gimp|krita|resolve")
        config.pop("_path", None)
        out(f"  {config_file}")
        out(f"  {json.dumps({k: v for k, v in config.items() if k != 'token'})}")
        python = config.get("python")
        if python and not Path(python).is_file():
            problems += 1
            out(f"  PROBLEM: {python} does not exist; run `realscale install <host>` again")
    except wire.ConfigError as exc:
        out(f"  none: {exc}")

    out("\nHost plug-in folders")
    from .records import records

    installed = {Path(r.get("folder", "")): r for _p, r in records()}
    known: set[Path] = set()
    for host in HOST_LIST:
        folders = host.folders(sys.platform)
        known.update(folders)
        manifest = _manifest(host.name)
        if manifest is not None and manifest.supports:
            out(f"  {host.name:8s} supports {manifest.supports}")
        used = any(folder in installed for folder in folders)
        for folder in folders:
            state = "exists" if folder.is_dir() else "absent"
            record = installed.get(folder)
            if record:
                missing = [f["path"] for f in record.get("files", [])
                           if not Path(f["path"]).is_file()]
                state += (f", realscale {record.get('realscale')} installed "
                          f"{record.get('installed', '')}")
                if missing:
                    problems += 1
                    state += f", {len(missing)} file(s) MISSING"
            complete = manifest is not None and all(
                host.target(folder, f.dest).is_file() for f in manifest.files)
            note, problem = host.folder_state(folder, record is not None, used, complete)
            if note:
                state += f", {note}"
            problems += int(problem)
            out(f"  {host.name:8s} {folder} ({state})")
        for label, path in host.settings_files(sys.platform):
            out(f"  {label:8s} {path}")
    for folder, record in installed.items():
        if folder not in known:
            out(f"  {record.get('host')!s:8s} {folder} (installed with --dest)")
    try:
        out(f"  sources  {plugins_root()}")
    except RealscaleError as exc:
        problems += 1
        out(f"  sources  MISSING: {exc}")

    out("\nModels")
    try:
        from .. import catalogue

        for entry in catalogue.entries():
            cached = any(
                (catalogue.cache_dir() / s.filename).is_file()
                for s in entry.sources if isinstance(s, catalogue.UrlSource)
            )
            where = "embedded" if entry.embedded else ("downloaded" if cached else "not downloaded")
            mark = "*" if entry.default else " "
            out(f" {mark}{entry.name:26s} x{entry.scale}  {where}")
        out(f"  cache      {catalogue.cache_dir()}")
    except RealscaleError as exc:
        problems += 1
        out(f"  PROBLEM: {exc}")
    if problems:
        out(f"\n{problems} problem(s) found.")
    return problems
