"""Splitting a long track into model calls and joining them with equal-power crossfades (pure numpy).

A model makes at most ``max_frames`` a call (Stable Audio Open about 47 s). A longer track is made in
``k`` equal windows that overlap by at least ``seam`` frames; each seam is an equal-power (sin/cos)
crossfade, since separately generated windows are uncorrelated and a linear fade would dip by ~3 dB.
The joined track has exactly the requested number of frames.
"""
from __future__ import annotations

import math

import numpy as np


def plan(frames: int, max_frames: int, seam: int) -> list[tuple[int, int]]:
    """Windows ``(start, length)`` covering ``frames``: one if it fits, else equal lengths <= max_frames,
    neighbours overlapping by >= ``seam`` (seam < max_frames)."""
    if frames <= 0 or max_frames <= 0:
        raise ValueError("frames and max_frames must be positive")
    if frames <= max_frames:
        return [(0, frames)]
    seam = max(1, min(int(seam), max_frames // 2))
    count = math.ceil((frames - seam) / (max_frames - seam))
    length = math.ceil((frames + (count - 1) * seam) / count)
    # the starts spread evenly over [0, frames - length]; rounding down keeps every overlap >= seam
    return [((i * (frames - length)) // (count - 1), length) for i in range(count)]


def join(parts: list[np.ndarray], windows: list[tuple[int, int]], frames: int) -> np.ndarray:
    """Place each (length, channels) part at its window start, crossfading over each overlap."""
    if len(parts) != len(windows):
        raise ValueError("one part per window")
    channels = parts[0].shape[1]
    out = np.zeros((frames, channels), dtype=np.float32)
    end = 0
    for part, (start, length) in zip(parts, windows):
        part = fit(part, length)
        overlap = max(0, end - start)
        if overlap:
            t = (np.arange(overlap, dtype=np.float64) + 0.5) / overlap
            fade_in = np.sin(0.5 * np.pi * t)[:, None].astype(np.float32)
            fade_out = np.cos(0.5 * np.pi * t)[:, None].astype(np.float32)
            out[start:end] = out[start:end] * fade_out + part[:overlap] * fade_in
        out[start + overlap:start + length] = part[overlap:]
        end = start + length
    return out


def fit(block: np.ndarray, frames: int) -> np.ndarray:
    """``block`` cut or zero-padded to exactly ``frames`` (models round lengths to their own grid)."""
    if len(block) >= frames:
        return block[:frames]
    pad = np.zeros((frames - len(block), block.shape[1]), dtype=block.dtype)
    return np.concatenate([block, pad])
