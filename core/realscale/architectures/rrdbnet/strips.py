"""Where RRDBNet's upsampling tail is cut into row strips: shared by the torch network and the
ONNX Runtime engine, so both run the same exact strips.

The tail holds 64-channel tensors at 16 times the input's pixels: nine tenths of the peak
memory. Run in strips of feature rows it costs little, and since its four convolutions reach
under two input rows, a halo of ``HALO`` rows makes the strips exact.
"""

from __future__ import annotations

from collections.abc import Iterator

HALO = 2
STRIP_BYTES = 256 << 20
"""About how much the tail of one strip may take (its three largest tensors)."""


def tail_strips(count: int, channels: int, height: int, width: int,
                element_size: int) -> Iterator[tuple[int, int, int, int]]:
    """(start, stop, skip, keep): run the tail on feature rows [start, stop), then keep
    ``keep`` output rows from output row ``skip``. One strip when the whole tail fits."""
    per_row = count * width * 16 * channels * element_size * 3
    rows = max(8, STRIP_BYTES // max(per_row, 1))
    if height <= rows + 2 * HALO:
        yield 0, height, 0, height * 4
        return
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        start, stop = max(0, top - HALO), min(height, bottom + HALO)
        yield start, stop, (top - start) * 4, (bottom - top) * 4
