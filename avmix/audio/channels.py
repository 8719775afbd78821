"""Speaker layouts by channel count, and converting blocks between channel counts (pure numpy).

The layout is assumed from the count alone (a WAVEFORMATEXTENSIBLE channel mask is not read). The
loudness meter weights channels by the same layouts.
"""
from __future__ import annotations

import functools
import math

import numpy as np

# In WAV mask order, which is also ffmpeg's output order for 5-8 channels. For 3 and 4 channels ffmpeg
# would guess 2.1 and 4.0; 3.0 and quad are what such files usually hold.
LAYOUTS = {2: ("FL", "FR"), 3: ("FL", "FR", "FC"), 4: ("FL", "FR", "BL", "BR"),
           5: ("FL", "FR", "FC", "BL", "BR"), 6: ("FL", "FR", "FC", "LFE", "BL", "BR"),
           7: ("FL", "FR", "FC", "LFE", "BC", "SL", "SR"), 8: ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR")}
MINUS_3DB = math.sqrt(0.5)
# Where a speaker the target layout lacks goes: the first choice the target has (ITU-R BS.775 fold-down:
# centre and surrounds at -3 dB into the fronts, LFE dropped). Back and side surrounds stand in for each
# other at unity, so 7.1 -> 5.1 -> stereo equals 7.1 -> stereo.
_FOLD = {"FC": [(("FL", "FR"), MINUS_3DB)], "LFE": [],
         "BL": [(("SL",), 1.0), (("FL",), MINUS_3DB)], "BR": [(("SR",), 1.0), (("FR",), MINUS_3DB)],
         "SL": [(("BL",), 1.0), (("FL",), MINUS_3DB)], "SR": [(("BR",), 1.0), (("FR",), MINUS_3DB)],
         "BC": [(("BL", "BR"), MINUS_3DB), (("SL", "SR"), MINUS_3DB), (("FL", "FR"), 0.5)]}


@functools.lru_cache(maxsize=None)
def channel_matrix(have: int, channels: int) -> np.ndarray:
    """Gains (have, channels) from input to output channels, both of at least 2 channels.

    Known layouts (2-8 channels) map speaker to speaker and fold the missing ones as in ``_FOLD``; with
    more than 8 channels on either side nothing says where a channel sits, so channels match by index
    (extra inputs dropped, extra outputs silent). Never normalised: the sum keeps its headroom in float.
    """
    m = np.zeros((have, channels), dtype=np.float32)
    src, dst = LAYOUTS.get(have), LAYOUTS.get(channels)
    if src is None or dst is None:
        n = min(have, channels)
        m[range(n), range(n)] = 1.0
    else:
        for i, spk in enumerate(src):
            if spk in dst:
                m[i, dst.index(spk)] = 1.0
                continue
            for targets, gain in _FOLD[spk]:
                if all(t in dst for t in targets):
                    for t in targets:
                        m[i, dst.index(t)] += gain
                    break
    m.flags.writeable = False  # cached and shared
    return m


@functools.lru_cache(maxsize=None)
def _ones(have: int) -> np.ndarray:
    m = np.ones((have, 1), dtype=np.float32)
    m.flags.writeable = False
    return m


def reconcile_channels(block: np.ndarray, channels: int) -> np.ndarray:
    """(n, c) -> (n, channels): mono duplicates, to-mono averages, otherwise :func:`channel_matrix`."""
    have = block.shape[1]
    if have == channels:
        return block
    if have == 1:
        return np.repeat(block, channels, axis=1)
    if channels == 1:  # a sum by matrix product: mean(axis=1) over so few columns is ~30x slower
        return (block @ _ones(have)) / np.float32(have)
    return block @ channel_matrix(have, channels)
