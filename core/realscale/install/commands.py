"""Sub-commands ``install``, ``uninstall``, ``package`` and ``doctor``."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from .hosts import HOSTS

EXIT_OK = 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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

    package = sub.add_parser(
        "package", help="build the zip a user installs into a host",
        description="Build the zip a user installs into a host: the plug-in, the modules it "
                    "vendors and realscale's own wheel (built from this checkout, without "
                    "network), from which the plug-in sets up its engine.")
    package.add_argument("hosts", nargs="+", choices=HOSTS, metavar="HOST",
                         help=f"one or more of {', '.join(HOSTS)}")
    package.add_argument("-o", "--output", type=Path, default=Path("dist"), metavar="DIR",
                         help="folder for the zip files (default: dist)")
    package.add_argument("--wheel", type=Path, metavar="FILE",
                         help="put this realscale wheel (of this version) in the zips instead "
                              "of building one from the checkout")
    package.add_argument("--plugins-root", type=Path, help=argparse.SUPPRESS)
    package.set_defaults(handler=_cmd_package)

    doctor = sub.add_parser("doctor", help="print what realscale finds on this machine")
    doctor.set_defaults(handler=_cmd_doctor)


def _cmd_install(args: argparse.Namespace) -> int:
    from .installer import install

    reports = install(args.host, dest=args.dest, plugins_root=args.plugins_root,
                      config=args.config, write_config=not args.no_config,
                      model_dirs=args.model_dir)
    for report in reports:
        print(f"Installed the {report.host} plug-in in {report.folder} "
              f"({len(report.files)} files).")
        if report.settings is not None:
            print(f"Enabled it in {report.settings}.")
    if reports and reports[0].config is not None:
        print(f"The worker config {reports[0].config} points at this Python.")
    print("Restart the host to load the plug-in; `realscale uninstall "
          f"{args.host}` removes it again.")
    return EXIT_OK


def _cmd_uninstall(args: argparse.Namespace) -> int:
    from .installer import uninstall

    removed = uninstall(args.host, dest=args.dest)
    print(f"Removed the {args.host} plug-in ({len(removed)} files).")
    return EXIT_OK


def _cmd_package(args: argparse.Namespace) -> int:
    from .manifest import load_manifest
    from .package import build_wheel, package

    with tempfile.TemporaryDirectory(prefix="realscale-wheel-") as temp:
        wheel = args.wheel or build_wheel(Path(temp))  # once for every host
        for host in args.hosts:
            path = package(host, args.output, plugins_root=args.plugins_root, wheel=wheel)
            supports = load_manifest(host, args.plugins_root).supports
            print(f"{path} (supports {supports})" if supports else path)
    return EXIT_OK


def _cmd_doctor(_args: argparse.Namespace) -> int:
    from .doctor import report

    return EXIT_OK if report() == 0 else 1
