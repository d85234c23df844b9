"""torch.compile, the GPU fast path's compiler, exercised on the CPU: the compiled network
gives the eager result, and a second tile of the same shape reuses the compiled graph.

About 20 s on a 2-core CPU (the first compile); not part of tests/core for that reason.
Run: PYTHONPATH=core .venv/bin/python -m pytest tests/speed -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from realscale import devices, load_model
from realscale.backends.torch import TorchEngine

pytest.importorskip("torch._inductor", reason="this torch has no inductor")


def test_compiled_graph_is_reused_and_exact(tmp_path, monkeypatch) -> None:
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    counters.clear()
    model = load_model("realesr-animevideov3")
    placement = devices.Placement(torch.device("cpu"), "fp32", False)
    compiled = TorchEngine(model, placement, compile=True)
    eager = TorchEngine(model, placement)
    rng = np.random.default_rng(0)
    tiles = [rng.random((1, 40, 52, 3), dtype=np.float32) for _ in range(3)]
    for tile in tiles:
        np.testing.assert_allclose(compiled.run(tile), eager.run(tile), atol=1e-4)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
