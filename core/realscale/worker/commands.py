"""Sub-command ``worker``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser(
        "worker", help="serve upscale requests from host plug-ins (stdin/stdout)",
        description="Serve host plug-ins over stdin/stdout (see docs/worker-protocol.md); "
                    "with --listen, over 127.0.0.1 with a per-session token instead.")
    worker.add_argument("--listen", metavar="127.0.0.1:PORT",
                        help="serve TCP on 127.0.0.1 (port 0: any free port); prints the "
                             "address and token as one JSON line")
    worker.add_argument("--config-out", type=Path, metavar="FILE",
                        help="with --listen: also write a client config (address and token) "
                             "to FILE, readable by this user only")
    worker.add_argument("--model-dir", action="append", default=[], metavar="DIR",
                        help="a folder whose weights files requests may name (repeatable; "
                             "also $REALSCALE_MODEL_DIRS)")
    worker.add_argument("--keep-models", type=int, default=3, metavar="N",
                        help="models kept loaded at once (default 3)")
    worker.add_argument("--auth-timeout", type=_seconds, default=None, metavar="SECONDS",
                        help="with --listen: close a connection that sends no token within "
                             "SECONDS (default 10)")
    worker.add_argument("--idle-timeout", type=_seconds, default=None, metavar="SECONDS",
                        help="with --listen: close a connection that sends nothing for "
                             "SECONDS while none of its upscales runs (default 300; 0: never)")
    worker.set_defaults(handler=_cmd_worker)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e9:
        msg = f"expected a number of seconds, 0 or more, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _cmd_worker(args: argparse.Namespace) -> int:
    from ..errors import RealscaleError
    from .models import ModelCache
    from .server import AUTH_TIMEOUT, IDLE_TIMEOUT, serve_stdio, serve_tcp

    dirs = list(args.model_dir)
    dirs += [d for d in os.environ.get("REALSCALE_MODEL_DIRS", "").split(os.pathsep) if d]
    cache = ModelCache(dirs, keep=args.keep_models)
    if not args.listen:
        for name in ("config_out", "auth_timeout", "idle_timeout"):
            if getattr(args, name) is not None:
                option = "--" + name.replace("_", "-")
                raise RealscaleError(f"{option} only makes sense with --listen")
        _exit(serve_stdio(cache))
    auth = AUTH_TIMEOUT if args.auth_timeout is None else args.auth_timeout
    idle = IDLE_TIMEOUT if args.idle_timeout is None else args.idle_timeout
    _exit(serve_tcp(cache, args.listen, args.config_out, auth_timeout=auth,
                    idle_timeout=idle or None))


def _exit(code: int) -> NoReturn:
    """End the worker at once, once every session has ended and its job threads have been
    joined (or waited for, bounded): no interpreter finalisation.

    Finalisation would run while a job thread can still be inside torch or ONNX Runtime,
    or finishing there (a thread's exit runs libgomp's and torch's per-thread clean-up), and
    the C++ libraries' static destructors race such a thread: "terminate called without an
    active exception" and SIGABRT, now and then, after stdin closed. The worker keeps no
    state that needs finalising; its output is flushed here.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    os._exit(code)
