"""The --ray flags and the worker plan, without a cluster: what a user types and what the
cluster's resources allow."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from helpers import REPO
from realscale.cluster.options import FIND_OR_START, add_ray_arguments, ray_options
from realscale.cluster.placement import Node, Slot, plan_workers
from realscale.errors import RealscaleError


def parser(*positionals: str) -> argparse.ArgumentParser:
    """A command like ``realscale upscale`` (many inputs) or ``realscale video`` (one)."""
    made = argparse.ArgumentParser(prog="realscale")
    for name in positionals:
        made.add_argument(name, nargs="+" if name == "inputs" else None)
    add_ray_arguments(made)
    return made


def test_address_forms() -> None:
    up = parser("inputs")
    assert up.parse_args(["a.png", "--ray"]).ray == FIND_OR_START
    assert up.parse_args(["a.png"]).ray is None
    for address in ("127.0.0.1:6379", "head.studio.lan:6379", "[::1]:6379", "auto", "local",
                    "ray://head:10001"):
        assert up.parse_args(["--ray", address, "a.png"]).ray == address
        assert up.parse_args([f"--ray={address}", "a.png"]).ray == address


@pytest.mark.parametrize("positional", ["inputs", "input"])
def test_an_input_taken_for_an_address_says_how_to_write_it(positional, capsys) -> None:
    given = ["--ray", "clip.mp4"] + (["more.mp4"] if positional == "inputs" else [])
    with pytest.raises(SystemExit) as stopped:
        parser(positional).parse_args(given)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'clip.mp4' is not a Ray address" in error and "--ray=ADDRESS" in error


def test_worker_flags() -> None:
    up = parser("inputs")
    args = up.parse_args(["a.png", "--ray", "--ray-workers", "3", "--ray-gpus-per-worker", "0.5"])
    options = ray_options(args)
    assert options is not None and (options.workers, options.gpus_per_worker) == (3, 0.5)
    assert up.parse_args(["a.png", "--ray", "--ray-gpus-per-worker", "1"]).ray_gpus_per_worker \
        == 1.0
    for bad in (["--ray-workers", "0"], ["--ray-gpus-per-worker", "2"],
                ["--ray-gpus-per-worker", "0"], ["--ray-gpus-per-worker", "half"]):
        with pytest.raises(SystemExit):
            up.parse_args(["a.png", "--ray", *bad])
    assert ray_options(up.parse_args(["a.png"])) is None
    with pytest.raises(RealscaleError, match="only apply with --ray"):
        ray_options(up.parse_args(["a.png", "--ray-workers", "2"]))


CPU_NODES = [Node("a" * 8, "10.0.0.1", 16, 0), Node("b" * 8, "10.0.0.2", 8, 0)]
GPU_NODES = [Node("g" * 8, "10.0.0.3", 32, 4), Node("h" * 8, "10.0.0.4", 8, 2),
             Node("c" * 8, "10.0.0.5", 64, 0)]


def test_cpu_cluster_one_worker_per_machine_with_all_its_cpus() -> None:
    assert plan_workers(CPU_NODES, workers=None, gpus_per_worker=None, device="auto") == [
        Slot("a" * 8, 16, 0), Slot("b" * 8, 8, 0)]
    slots = plan_workers(CPU_NODES, workers=5, gpus_per_worker=None, device="auto")
    assert sorted((s.node_id[0], s.cpus) for s in slots) == [
        ("a", 5), ("a", 5), ("a", 5), ("b", 4), ("b", 4)]
    many = plan_workers([Node("a" * 8, "", 1, 0)], workers=4, gpus_per_worker=None,
                        device="cpu")
    assert [s.cpus for s in many] == [0.25] * 4


def test_gpu_cluster_every_gpu_and_fractions() -> None:
    slots = plan_workers(GPU_NODES, workers=None, gpus_per_worker=None, device="auto")
    assert [(s.node_id[0], s.gpus, s.cpus) for s in slots] == [("g", 1, 1)] * 4 + [
        ("h", 1, 1)] * 2
    halves = plan_workers(GPU_NODES, workers=None, gpus_per_worker=0.5, device="auto")
    assert len(halves) == 12 and {s.gpus for s in halves} == {0.5}
    three = plan_workers(GPU_NODES, workers=3, gpus_per_worker=None, device="cuda")
    assert sorted(s.node_id[0] for s in three) == ["g", "g", "h"]  # spread, not packed
    thirds = plan_workers(GPU_NODES, workers=None, gpus_per_worker=0.3, device="auto")
    assert [s.node_id[0] for s in thirds] == ["g"] * 13 + ["h"] * 6  # whole shares only
    few_cpus = plan_workers([Node("f" * 8, "", 3, 4)], workers=None, gpus_per_worker=0.5,
                            device="auto")
    assert [(s.cpus, s.gpus) for s in few_cpus] == [(0.37, 0.5)] * 8
    on_cpus = plan_workers(GPU_NODES, workers=None, gpus_per_worker=None, device="cpu")
    assert [(s.cpus, s.gpus) for s in on_cpus] == [(64, 0), (32, 0), (8, 0)]


@pytest.mark.parametrize(("nodes", "workers", "share", "device", "message"), [
    (GPU_NODES, 7, None, "auto", "room for 6 workers of 1 GPU each, not 7"),
    ([Node("h" * 8, "", 8, 0.5)], None, None, "auto", "has 1 GPUs for one worker"),
    (CPU_NODES, None, None, "cuda", "no GPUs"),
    (CPU_NODES, None, 0.5, "auto", "has no GPUs"),
    (GPU_NODES, None, 0.5, "cpu", "runs on CPUs"),
    ([], None, None, "auto", "no live machines"),
])
def test_impossible_plans_are_one_line(nodes, workers, share, device, message) -> None:
    with pytest.raises(RealscaleError, match=message) as error:
        plan_workers(nodes, workers=workers, gpus_per_worker=share, device=device)
    assert "\n" not in str(error.value)


def test_without_ray_the_error_says_how_to_install_it(tmp_path) -> None:
    # A real process where importing ray fails, as in an installation without the extra.
    code = ("import sys, runpy; sys.modules['ray'] = None; "
            "sys.argv = ['drive.py', 'upscale', '--ray', '--', 'x.png', '-o', {!r}]; "
            "runpy.run_path({!r}, run_name='__main__')").format(
        str(tmp_path / "out.png"), str(REPO / "tests" / "cluster" / "drive.py"))
    (tmp_path / "x.png").write_bytes(b"")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO / "core")),
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "realscale: --ray needs Ray, which is not installed here: pip install "
        "'realscale[ray]' (on every machine of the cluster)"]
