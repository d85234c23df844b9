"""Freed CPU memory is reused while tiles run (no fresh pages per activation) and given
back after an upscale: measured with the process's page-fault and resident-size counters."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import REPO

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

PROBE = """
import resource, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from realscale import cpu_memory

def faults_of_a_big_array():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    # Over glibc's 32 MB mmap ceiling; a bytearray (numpy would ask for huge pages).
    block = bytearray(48 << 20)
    np.frombuffer(block, dtype=np.uint8)[::4096] = 1  # touch every page
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

def resident_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

faults_of_a_big_array()
plain = faults_of_a_big_array()
assert cpu_memory.hold()
faults_of_a_big_array()
held = faults_of_a_big_array()
kept = resident_kb()
cpu_memory.release()
print(plain, held, kept - resident_kb())
"""


def test_freed_memory_is_reused_then_released() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, str(REPO / "core")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    plain, held, released_kb = map(int, done.stdout.split())
    assert plain > 10_000, "without holding, each 48 MB array faults its pages in afresh"
    assert held < plain / 10, f"held memory should be reused ({held} faults vs {plain})"
    assert released_kb > 40_000, "release() gives the held 48 MB back to the system"
