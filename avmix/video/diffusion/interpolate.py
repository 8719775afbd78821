"""Bringing frames generated at the model's native rate to the output rate.

Output frame j (time j/fps) is a linear blend, in pixel space, of the two native frames around it
(native frame i at i/native_fps). Pixel blending is cheap and exact in timing; it ghosts fast motion a
little, which at 8-16 native fps is the usual trade of audio-reactive renderers. Across an onset the
blend is cut instead (``schedule.retime``): a crossfade would start the hit's change up to a native
interval before it. Streaming: only two native frames are held at a time.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from avmix.video.diffusion.schedule import retime


def retimed(native: Iterable[np.ndarray], *, n_native: int, frames: int, fps: float,
            native_fps: float, cuts: list[tuple[int, int]] = ()) -> Iterator[np.ndarray]:
    """Yield ``frames`` uint8 (h, w, 3) frames at ``fps`` from ``n_native`` frames at ``native_fps``,
    cut at each (output frame, native frame) of ``cuts``."""
    i0, a = retime(frames, fps, native_fps, cuts)
    it = iter(native)
    held: dict[int, np.ndarray] = {}
    loaded = 0
    for j in range(frames):
        lo = min(int(i0[j]), n_native - 1)
        hi = min(lo + (1 if a[j] > 0 else 0), n_native - 1)
        while loaded <= hi:
            held[loaded] = next(it)
            loaded += 1
        for k in [k for k in held if k < lo]:
            del held[k]
        if hi == lo:
            yield held[lo]
        else:
            mix = (1.0 - a[j]) * held[lo].astype(np.float32) + a[j] * held[hi].astype(np.float32)
            yield np.clip(np.rint(mix), 0, 255).astype(np.uint8)


def to_uint8(video) -> list[np.ndarray]:
    """A decoded torch video (3, f, h, w) in -1..1 -> f uint8 (h, w, 3) frames."""
    x = ((video.float() / 2 + 0.5).clamp(0, 1) * 255).round().to("cpu").numpy().astype(np.uint8)
    return list(np.ascontiguousarray(np.moveaxis(x, 0, -1)))
