"""A driver process for the cluster tests: realscale's Ray entry points with arguments
parsed by realscale's own command-line parser.

    python drive.py upscale RAY-FLAGS -- UPSCALE-ARGS
        ``realscale upscale UPSCALE-ARGS`` through realscale.cluster.batch.run_upscale_batch,
        with cli.main's exit codes and one-line errors.
    python drive.py frames RAY-FLAGS -- CLIP OUT.npy MODEL TILE START COUNT
        the clip's frames through ClusterUpscaler.upscale_frames, saved in their order.
"""

from __future__ import annotations

import argparse
import signal
import sys

import numpy as np

from realscale import cli
from realscale.cluster.batch import run_upscale_batch
from realscale.cluster.options import add_ray_arguments
from realscale.errors import RealscaleError


def _split(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    cut = argv.index("--")
    flags = argparse.ArgumentParser()
    add_ray_arguments(flags)
    return flags.parse_args(argv[:cut]), argv[cut + 1:]


def upscale(argv: list[str]) -> int:
    ray_flags, rest = _split(argv)
    args = cli._parser().parse_args(["upscale", *rest])
    vars(args).update(vars(ray_flags))
    try:
        return run_upscale_batch(args)
    except RealscaleError as exc:
        print(f"realscale: {exc}", file=sys.stderr)
        return cli.EXIT_FAILED
    except KeyboardInterrupt:
        print("realscale: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except cli.Stopped as exc:
        return 128 + exc.signum


def frames(argv: list[str]) -> int:
    from realscale.cluster.video import cluster_upscaler
    from realscale.video.frames import read_frames

    ray_flags, (clip, out, model, tile, start, count) = _split(argv)
    args = argparse.Namespace(model=model, device="cpu", precision="auto", backend="auto",
                              tile=int(tile), download=False, quiet=True, **vars(ray_flags))
    with cluster_upscaler(args) as upscaler:
        pairs = upscaler.upscale_frames(read_frames(clip, start_frame=int(start),
                                                    frames=int(count)))
        results = []
        for _, result in pairs:
            results.append(result)
            print(f"frame {len(results)}", flush=True)
    np.save(out, np.stack(results))
    return 0


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    sys.exit({"upscale": upscale, "frames": frames}[command](rest))
