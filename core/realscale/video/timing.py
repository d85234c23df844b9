"""Give encoded frames the source's own timestamps.

Frames reach the encoder as raw pixels through a pipe, which carries no timestamps; ffmpeg
would number them at a constant rate. A ``setpts`` expression indexed by the frame number
``N`` puts every frame back at its source time, exactly, in the source's time base. Constant
rate video needs one linear piece; variable rate video gets one piece per run of equal
steps, looked up through a balanced tree of ``if``s so evaluation stays shallow.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    """Frames ``first`` onwards start at ``pts`` and advance by ``step`` ticks each."""

    first: int
    pts: int
    step: int


def runs(pts: list[int]) -> list[Run]:
    """Split a timestamp list into maximal arithmetic runs."""
    if not pts:
        return []
    found: list[Run] = []
    start = 0
    while start < len(pts):
        step = pts[start + 1] - pts[start] if start + 1 < len(pts) else 0
        end = start + 1
        while end < len(pts) and pts[end] - pts[end - 1] == step:
            end += 1
        if end - start == 1 and found:
            # A lone frame: continue the previous run's step from its own time.
            step = found[-1].step
        found.append(Run(start, pts[start], step))
        start = end
    return found


def setpts_expression(pts: list[int]) -> str:
    """An ffmpeg expression of ``N`` that yields ``pts[N]`` (and extrapolates past the end)."""
    pieces = runs(pts)
    if not pieces:
        return "N"
    return _tree(pieces, 0, len(pieces))


def _tree(pieces: list[Run], low: int, high: int) -> str:
    if high - low == 1:
        piece = pieces[low]
        return f"{piece.pts}+{piece.step}*(N-{piece.first})"
    middle = (low + high) // 2
    left = _tree(pieces, low, middle)
    right = _tree(pieces, middle, high)
    return f"if(lt(N,{pieces[middle].first}),{left},{right})"


def evaluate(expression_pts: list[int], frame: int) -> int:
    """What :func:`setpts_expression` yields for ``frame`` (for tests and checks)."""
    pieces = runs(expression_pts)
    piece = next(p for p in reversed(pieces) if p.first <= frame)
    return piece.pts + piece.step * (frame - piece.first)
