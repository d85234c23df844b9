"""Sub-commands ``worker``, ``install``, ``uninstall``, ``package`` and ``doctor``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from ..install.paths import HOSTS

EXIT_OK, EXIT_FAILED = 0, 2


def add_commands(sub: argparse._SubParsersAction) -> None:
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

    install = sub.add_parser("install", help="install a host plug-in for this user")
    install.add_argument("host", choices=HOSTS)
    install.add_argument("--dest", type=Path, metavar="DIR",
                         help="install into DIR instead of the host's per-user plug-in folder")
    install.add_argument("--config", type=Path, metavar="FILE",
                         help="write the worker config to FILE instead of the per-user one")
    install.add_argument("--no-config", action="store_true",
                         help="do not write the worker config (e.g. a TCP worker's is in place)")
    install.add_argument("--model-dir", action="append", default=[], metavar="DIR",
                         help="let the plug-in use weights files from DIR (repeatable)")
    install.add_argument("--plugins-root", type=Path, help=argparse.SUPPRESS)
    install.set_defaults(handler=_cmd_install)

    uninstall = sub.add_parser("uninstall", help="remove what `realscale install` put in place")
    uninstall.add_argument("host", choices=HOSTS)
    uninstall.add_argument("--dest", type=Path, metavar="DIR",
                           help="only the install into DIR")
    uninstall.set_defaults(handler=_cmd_uninstall)

    package = sub.add_parser("package", help="build the zip a user installs into a host")
    package.add_argument("hosts", nargs="+", choices=HOSTS, metavar="HOST",
                         help=f"one or more of {', '.join(HOSTS)}")
    package.add_argument("-o", "--output", type=Path, default=Path("dist"), metavar="DIR",
                         help="folder for the zip files (default: dist)")
    package.add_argument("--plugins-root", type=Path, help=argparse.SUPPRESS)
    package.set_defaults(handler=_cmd_package)

    doctor = sub.add_parser("doctor", help="print what realscale finds on this machine")
    doctor.set_defaults(handler=_cmd_doctor)


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


def _cmd_install(args: argparse.Namespace) -> int:
    from ..install.installer import install

    reports = install(args.host, dest=args.dest, plugins_root=args.plugins_root,
                      config=args.config, write_config=not args.no_config,
                      model_dirs=args.model_dir)
    for report in reports:
        print(f"Installed the {report.host} plug-in in {report.folder} "
              f"({len(report.files)} files).")
        if report.kritarc is not None:
            print(f"Enabled it in {report.kritarc}.")
    if reports and reports[0].config is not None:
        print(f"The worker config {reports[0].config} points at this Python.")
    print("Restart the host to load the plug-in; `realscale uninstall "
          f"{args.host}` removes it again.")
    return EXIT_OK


def _cmd_uninstall(args: argparse.Namespace) -> int:
    from ..install.installer import uninstall

    removed = uninstall(args.host, dest=args.dest)
    print(f"Removed the {args.host} plug-in ({len(removed)} files).")
    return EXIT_OK


def _cmd_package(args: argparse.Namespace) -> int:
    from ..install.installer import package
    from ..install.manifest import load_manifest

    for host in args.hosts:
        path = package(host, args.output, plugins_root=args.plugins_root)
        supports = load_manifest(host, args.plugins_root).supports
        print(f"{path} (supports {supports})" if supports else path)
    return EXIT_OK


def _cmd_doctor(_args: argparse.Namespace) -> int:
    from ..install.doctor import report

    return EXIT_OK if report() == 0 else 1
