"""Tiling: tiled results equal the untiled one within 4/255 (2/255 at the 99.9th percentile),
memory stays bounded, out-of-memory halves the tile, cancel stops within one tile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import assert_close_u8, rgb_crop
from realscale import Cancelled, CancelToken, Upscaler, load_model
from realscale.tiling import TilePlan, process, spans


@pytest.fixture(scope="module")
def compact():
    return load_model("realesr-animevideov3")


@pytest.mark.parametrize(
    ("model", "image", "height", "width"),
    [
        # Strips wider than a tile plus twice the model's context: the middle tiles see only
        # part of the image, so the context (64 px for both RRDBNets, whatever their depth)
        # is what keeps them seam-free.
        ("realesrgan-x4plus", "0030.jpg", 24, 208),
        ("realesrgan-x4plus-anime", "00003.png", 32, 208),
        ("realesr-animevideov3-x3", "00003.png", 96, 96),
    ],
)
def test_tiled_equals_untiled(model: str, image: str, height: int, width: int) -> None:
    pixels = np.ascontiguousarray(rgb_crop(image, width)[40 : 40 + height])
    descriptor = load_model(model)
    untiled = Upscaler(descriptor, device="cpu", tile=512).upscale(pixels)
    tiled_upscaler = Upscaler(descriptor, device="cpu", tile=32)
    parts = spans(width, tiled_upscaler.plan())
    assert any(part.input_start > 0 and part.input_end < width for part in parts), (
        "the test must give some tile only part of the image"
    )
    tiled = tiled_upscaler.upscale(pixels)
    assert_close_u8(tiled, untiled, max_diff=4, p999=2)


def test_hard_cropped_tiles_show_seams() -> None:
    """The check above can fail: upstream-style tiles (10 px pad, hard crop) break it."""
    pixels = rgb_crop("0014.jpg", 96)
    descriptor = load_model("realesrgan-x4plus-anime")
    untiled = Upscaler(descriptor, device="cpu", tile=512).upscale(pixels)
    seamy = Upscaler(descriptor, device="cpu", tile=32, context=10, overlap=0).upscale(pixels)
    with pytest.raises(AssertionError):
        assert_close_u8(seamy, untiled, max_diff=4, p999=2)


def test_spans_cover_axis_and_respect_multiple() -> None:
    for length in (1, 7, 31, 32, 33, 100, 517):
        for multiple in (1, 2, 4):
            plan = TilePlan(tile=32, overlap=8, context=12, multiple=multiple)
            parts = spans(length, plan)
            assert parts[0].blend_start == 0 and parts[-1].blend_end == length
            for a, b in zip(parts, parts[1:], strict=False):
                # Neighbours share exactly one blend zone, on the multiple grid.
                assert a.blend_end - b.blend_start == 8
                assert b.blend_start % multiple == 0 and a.blend_end % multiple == 0
            for part in parts:
                assert 0 <= part.input_start <= part.blend_start < part.blend_end
                assert part.blend_end <= part.input_end <= length


def test_blend_weights_sum_to_one() -> None:
    """With an identity 'network' the tiler must give back exactly its input."""
    rng = np.random.default_rng(1)
    image = rng.random((70, 90, 3), dtype=np.float32)
    out = np.zeros((140, 180, 3), dtype=np.float32)

    def nearest_x2(region: np.ndarray) -> np.ndarray:
        return region.repeat(2, axis=0).repeat(2, axis=1)

    written = np.zeros((140, 180), dtype=np.int32)

    def sink(y: int, x: int, block: np.ndarray) -> None:
        out[y : y + block.shape[0], x : x + block.shape[1]] = block
        written[y : y + block.shape[0], x : x + block.shape[1]] += 1

    process(image, nearest_x2, 2, TilePlan(16, 8, 4), sink)
    assert (written == 1).all(), "every output pixel is delivered exactly once"
    np.testing.assert_allclose(out, nearest_x2(image), atol=1e-6)


def test_blocks_bound_memory() -> None:
    """Finished pixels leave tile by tile: no block is larger than a tile's output."""
    image = np.random.default_rng(2).random((200, 260, 3), dtype=np.float32)
    blocks: list[tuple[int, int]] = []
    process(image, lambda r: r.repeat(4, 0).repeat(4, 1), 4, TilePlan(40, 8, 8),
            lambda y, x, block: blocks.append(block.shape[:2]))
    assert sum(h * w for h, w in blocks) == 800 * 1040
    assert max(max(h, w) for h, w in blocks) <= (40 + 8) * 4


def test_out_of_memory_halves_tile_and_resumes(compact, monkeypatch) -> None:
    pixels = rgb_crop("00003.png", 96, 40, 40)
    reference = Upscaler(compact, device="cpu", tile=512).upscale(pixels)
    upscaler = Upscaler(compact, device="cpu", tile=96)
    network = upscaler.engine._network
    real_forward = network.forward
    sizes = []

    def forward_with_small_memory(x: torch.Tensor) -> torch.Tensor:
        sizes.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(x)

    monkeypatch.setattr(network, "forward", forward_with_small_memory)
    result = upscaler.upscale(pixels)
    assert max(sizes) > 64, "the injected out-of-memory error must have fired"
    failed = [s for s in sizes if s > 64]
    # Each failure shrinks the tile: no size that failed (or a larger one) is tried again.
    assert failed == sorted(set(failed), reverse=True)
    assert_close_u8(result, reference, max_diff=4, p999=2)


def test_out_of_memory_at_smallest_tile_is_clear(compact, monkeypatch) -> None:
    from realscale import OutOfMemoryError

    upscaler = Upscaler(compact, device="cpu", tile=32)

    def always_oom(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")

    monkeypatch.setattr(upscaler.engine._network, "forward", always_oom)
    with pytest.raises(OutOfMemoryError, match="smallest tile"):
        upscaler.upscale(rgb_crop("00003.png", 64))


def test_progress_and_cancel_within_one_tile(compact) -> None:
    pixels = rgb_crop("00003.png", 96)
    upscaler = Upscaler(compact, device="cpu", tile=32)
    calls: list[tuple[int, int]] = []
    upscaler.upscale(pixels, progress=lambda done, total: calls.append((done, total)))
    total = calls[-1][1]
    assert total >= 9 and calls == [(i, total) for i in range(1, total + 1)]

    token = CancelToken()
    seen: list[int] = []

    def cancel_after_first(done: int, total: int) -> None:
        seen.append(done)
        token.cancel()

    with pytest.raises(Cancelled):
        upscaler.upscale(pixels, progress=cancel_after_first, cancel=token)
    assert seen == [1]


def test_auto_tile_comes_from_free_memory(compact, monkeypatch) -> None:
    from realscale.backends import torch as engine

    upscaler = Upscaler(compact, device="cpu")
    monkeypatch.setattr(engine, "free_memory", lambda device: 64 << 30)
    big = upscaler.plan().tile
    monkeypatch.setattr(engine, "free_memory", lambda device: 200 << 20)
    small = upscaler.plan().tile
    assert 32 <= small < big


def test_cpu_tile_ceilings(compact, monkeypatch) -> None:
    """With memory to spare, CPU tiles stop at 512 px for the compact net (2.3 output copies
    at 4000x3000 x4, bench/worker_memory.py) and 1024 px for RRDBNet (its 64 px context)."""
    from realscale.backends import torch as engine

    monkeypatch.setattr(engine, "free_memory", lambda device: 64 << 30)
    assert Upscaler(compact, device="cpu").plan().tile == 512
    rrdbnet = Upscaler(load_model("realesrgan-x4plus-anime"), device="cpu")
    assert rrdbnet.plan().tile == 1024


def test_tiles_wholly_in_the_border(compact) -> None:
    """Small tiles put whole blocks into the reflected border; they must simply be skipped."""
    pixels = rgb_crop("00003.png", 48)
    upscaler = Upscaler(compact, device="cpu", tile=16)
    for width in range(17, 48, 2):
        crop = np.ascontiguousarray(pixels[:20, :width])
        assert upscaler.upscale(crop).shape == (80, width * 4, 3)


def _grouped(upscaler: Upscaler, monkeypatch, group: int) -> list[int]:
    """Let the tiler hand ``group`` tiles per call, as on CUDA; record each forward's N."""
    monkeypatch.setattr(upscaler.engine, "tiles_per_call", lambda *args, **kwargs: group)
    network = upscaler.engine._network
    real_forward = network.forward
    batches: list[int] = []

    def counting_forward(x: torch.Tensor) -> torch.Tensor:
        batches.append(x.shape[0])
        return real_forward(x)

    monkeypatch.setattr(network, "forward", counting_forward)
    return batches


@pytest.mark.parametrize("alpha", [False, True])
def test_grouped_tiles_equal_single_tiles(compact, monkeypatch, alpha: bool) -> None:
    """Same-shape neighbours in a row go to the network as one batch (RGBA: colour and alpha
    of every tile in it), and the result is the one-tile-at-a-time result."""
    # 200 px + the 10 px border: ten 22 px cores a side, six of them with full context.
    pixels = rgb_crop("00003.png", 200, 40, 40)[:64]
    if alpha:
        ramp = np.linspace(40, 255, 200, dtype=np.float32).astype(np.uint8)
        pixels = np.concatenate([pixels, np.broadcast_to(ramp[None, :, None], (64, 200, 1))],
                                axis=2)
    single = Upscaler(compact, device="cpu", precision="fp32", tile=24).upscale(pixels)
    grouped = Upscaler(compact, device="cpu", precision="fp32", tile=24)
    batches = _grouped(grouped, monkeypatch, 3)
    result = grouped.upscale(pixels)
    per_tile = 2 if alpha else 1
    assert max(batches) == 3 * per_tile, batches
    assert_close_u8(result, single, max_diff=1, p999=0)


def test_grouped_tiles_fall_back_one_by_one_when_memory_runs_short(compact, monkeypatch) -> None:
    pixels = rgb_crop("00003.png", 200, 40, 40)[:64]
    single = Upscaler(compact, device="cpu", precision="fp32", tile=24).upscale(pixels)
    grouped = Upscaler(compact, device="cpu", precision="fp32", tile=24)
    batches = _grouped(grouped, monkeypatch, 4)
    counting = grouped.engine._network.forward

    def no_room_for_batches(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return counting(x)

    monkeypatch.setattr(grouped.engine._network, "forward", no_room_for_batches)
    result = grouped.upscale(pixels)
    assert batches and set(batches) == {1}, "after the failed batch, tiles go one by one"
    assert_close_u8(result, single, max_diff=1, p999=0)


def test_tile_is_given_per_call(compact) -> None:
    """``upscale(tile=...)`` tiles this call only: the same result as an Upscaler built with
    that tile, the cached Upscaler's default untouched; the one tile check refuses the rest."""
    from realscale import RealscaleError
    from realscale.tiling import MIN_TILE

    pixels = rgb_crop("00003.png", 72, 10, 10)
    shared = Upscaler(compact, device="cpu")
    built = Upscaler(compact, device="cpu", tile=MIN_TILE)
    assert len(spans(72 + 20, built.plan())) >= 3
    assert np.array_equal(shared.upscale(pixels, tile=MIN_TILE), built.upscale(pixels))
    assert shared.tile == "auto" and shared.plan().tile > MIN_TILE
    assert shared.plan(tile=MIN_TILE).tile == MIN_TILE
    for bad in (MIN_TILE - 1, 0, "big", 32.0, True):
        with pytest.raises(RealscaleError, match="auto or a whole number of at least 16"):
            shared.upscale(pixels, tile=bad)
        with pytest.raises(RealscaleError, match="auto or a whole number of at least 16"):
            Upscaler(compact, device="cpu", tile=bad)
