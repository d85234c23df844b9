"""Mapping pixels back onto a file's own palette, so palette inputs stay palette outputs.

Pillow's ``quantize(palette=...)`` looks colours up in a cache of 6 bits per channel and
ignores alpha, so two close palette entries can swap; here every colour that is exactly in the
palette maps to its own entry (a round trip is lossless) and the others go to the nearest
entry in premultiplied RGBA, where every fully transparent colour is the same colour.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 1 << 15  # unmatched colours per distance block (block = _CHUNK x 256 floats)


def palette_from_pillow(rgb: list[int] | None, transparency: object) -> np.ndarray | None:
    """(N, 4) uint8 RGBA palette from Pillow's ``getpalette()`` and ``info["transparency"]``."""
    if not rgb:
        return None
    entries = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    alpha = np.full((entries.shape[0], 1), 255, dtype=np.uint8)
    if isinstance(transparency, (bytes, bytearray)):
        values = np.frombuffer(bytes(transparency), dtype=np.uint8)[: entries.shape[0]]
        alpha[: values.size, 0] = values
    elif isinstance(transparency, int) and 0 <= transparency < entries.shape[0]:
        alpha[transparency, 0] = 0
    return np.concatenate([entries, alpha], axis=1)


def quantize(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Indices (H, W) uint8 of the palette entry for each uint8 RGB or RGBA pixel."""
    height, width, channels = pixels.shape
    if channels == 3:
        opaque = np.full((height, width, 1), 255, dtype=np.uint8)
        pixels = np.concatenate([pixels, opaque], axis=2)
    keys = _pack(pixels.reshape(-1, 4))
    unique, inverse = np.unique(keys, return_inverse=True)

    # Exact matches first, keeping the lowest index where the palette repeats a colour.
    palette_keys, first = np.unique(_pack(palette), return_index=True)
    where = np.clip(np.searchsorted(palette_keys, unique), 0, palette_keys.size - 1)
    exact = palette_keys[where] == unique
    lookup = np.empty(unique.size, dtype=np.uint8)
    lookup[exact] = first[where[exact]]

    missing = np.flatnonzero(~exact)
    if missing.size:
        wanted = _premultiplied(_unpack(unique[missing]))
        entries = _premultiplied(palette)
        entry_norms = (entries * entries).sum(axis=1)
        for start in range(0, missing.size, _CHUNK):
            block = wanted[start : start + _CHUNK]
            # |w - e|^2 = |w|^2 - 2 w.e + |e|^2; |w|^2 does not change the argmin.
            distance = entry_norms[None, :] - np.float32(2.0) * (block @ entries.T)
            lookup[missing[start : start + _CHUNK]] = np.argmin(distance, axis=1)
    return lookup[inverse.reshape(-1)].reshape(height, width)


def _pack(rgba: np.ndarray) -> np.ndarray:
    values = rgba.astype(np.uint32)
    return (values[:, 0] << 24) | (values[:, 1] << 16) | (values[:, 2] << 8) | values[:, 3]


def _unpack(keys: np.ndarray) -> np.ndarray:
    shifts = np.array([24, 16, 8, 0], dtype=np.uint32)
    return ((keys[:, None] >> shifts) & 0xFF).astype(np.uint8)


def _premultiplied(rgba: np.ndarray) -> np.ndarray:
    values = rgba.astype(np.float32)
    alpha = values[:, 3:] / np.float32(255.0)
    return np.concatenate([values[:, :3] * alpha, values[:, 3:]], axis=1)
