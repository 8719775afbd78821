"""Lining up separately recorded takes: how far to delay each input so it matches the first.

Two stages, both GCC-PHAT (cross-correlation with the cross-spectrum's magnitude divided out, so every
frequency band votes equally and loud low notes, gain and microphone colour do not decide):

1. coarse: both whole takes, mixed to mono and decimated to ``COARSE_RATE``, one FFT each. The peak
   gives the lag to a coarse sample (0.125 ms) and the confidence.
2. fine: a few windows of the overlap read again at the takes' common rate (up to 48 kHz), their
   cross-spectra summed before the PHAT weighting, the peak searched near the coarse lag only and
   placed between samples by a parabola through it and its neighbours.

Only the decimated takes and a few seconds at the full rate are held in memory. Offsets are in
seconds: positive delays the track, negative trims its start. Both takes must run on one clock: a
drift between two devices' clocks (a few ms over minutes) is not corrected.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import fft as sfft

from avmix.audio.io import AudioFile, open_audio
from avmix.errors import InputError

COARSE_RATE = 8000  # Hz: speech and music keep most of their structure below 4 kHz
FINE_RATE_MAX = 48000  # Hz: above this the fine stage gains nothing that matters at 1 ms
FINE_WINDOW = 4.0  # seconds per fine window
FINE_WINDOWS = 4  # windows spread over the overlap
FINE_SEARCH = 3  # coarse samples either side of the coarse lag searched at the fine rate
MIN_SECONDS = 0.25  # a take shorter than this has too little to match
MIN_OVERLAP = 2.0  # seconds the takes must share (or half the shorter take, when that is less)
SIDE_LOBE = 0.02  # seconds around the best peak that belong to it (reflections, the peak's own width)
THRESHOLD = 0.3  # default: confidence below this is "no reliable match"
SILENT_RMS = 1e-5  # about -100 dBFS: nothing to correlate


@dataclass(frozen=True)
class Match:
    """Where one take sits against the reference.

    ``offset``: seconds to delay the take (negative: trim its start), None when ``confidence`` is below
    the threshold. ``confidence``: 0 (nothing stands out) .. 1 (one peak far above every other lag).
    """

    path: str
    offset: float | None
    confidence: float


# ------------------------------------------------------------------------------------- pure numpy

def gcc_phat(a: np.ndarray, b: np.ndarray, n: int | None = None) -> np.ndarray:
    """Circular GCC-PHAT of two 1-D signals, length ``n`` (default: long enough for no wrap-around).

    ``r[k]`` (k taken modulo n) is large where ``a[m + k]`` matches ``b[m]``: delaying b by k lines
    it up with a.
    """
    n = n or sfft.next_fast_len(len(a) + len(b) - 1, real=True)
    cross = sfft.rfft(a, n) * np.conj(sfft.rfft(b, n))
    return sfft.irfft(_phat(cross), n)


def _phat(cross: np.ndarray) -> np.ndarray:
    mag = np.abs(cross)
    # bins with (almost) no energy in either take would be raised to full weight as pure noise
    floor = 1e-6 * float(np.mean(mag)) + np.finfo(np.float32).tiny
    return cross / (mag + floor)


def _by_lag(r: np.ndarray, len_a: int, len_b: int, min_overlap: int) -> tuple[np.ndarray, int]:
    """The part of circular r whose lags leave at least min_overlap samples shared, in lag order,
    and the lag of its first value."""
    n = len(r)
    lo, hi = min_overlap - len_b, len_a - min_overlap  # lags k with min(len_a, k + len_b) - max(0, k) >= m
    lo, hi = max(lo, -(n // 2)), min(hi, n // 2)
    if hi < lo:
        return r[:0], 0
    if lo < 0:
        return np.concatenate([r[n + lo:], r[:hi + 1]]) if hi >= 0 else r[n + lo:n + hi + 1], lo
    return r[lo:hi + 1], lo


def peak_and_confidence(vals: np.ndarray, first_lag: int, rate: float) -> tuple[int, float]:
    """The best lag and how much it stands out, for correlation values ``vals`` at lags first_lag, +1, ...

    Confidence is 1 - (the strongest rival / the peak), each measured in robust standard deviations
    of the values. The rival is the highest value more than SIDE_LOBE from the peak, or the highest
    that noise alone would reach over this many lags, whichever is larger.
    """
    if len(vals) < 3:
        return first_lag, 0.0
    i = int(np.argmax(vals))
    lag = first_lag + i
    # the spread of the bulk: a strided sample is plenty (the peak is a handful of values)
    sample = vals[::max(1, len(vals) // 200_000)]
    med = float(np.median(sample))
    sigma = 1.4826 * float(np.median(np.abs(sample - med)))
    if not sigma > 0 or vals[i] <= med:
        return lag, 0.0
    z_peak = (float(vals[i]) - med) / sigma
    w = int(SIDE_LOBE * rate)
    rivals = [vals[:max(0, i - w)], vals[i + w + 1:]]
    z_rival = max(((float(v.max()) - med) / sigma for v in rivals if len(v)), default=0.0)
    z_noise = math.sqrt(2.0 * math.log(len(vals)))
    conf = 1.0 - max(z_rival, z_noise) / z_peak
    return lag, float(min(1.0, max(0.0, conf)))


def parabolic(y_minus: float, y0: float, y_plus: float) -> float:
    """Where between -1 and 1 a parabola through three equally spaced points peaks."""
    den = y_minus - 2.0 * y0 + y_plus
    if den >= 0:  # not a maximum: keep the sample
        return 0.0
    return float(np.clip(0.5 * (y_minus - y_plus) / den, -1.0, 1.0))


def coarse_lag(a: np.ndarray, b: np.ndarray, rate: float) -> tuple[int, float]:
    """Lag of b against a in samples (delay b by it) and the confidence, over whole signals."""
    n = sfft.next_fast_len(len(a) + len(b) - 1, real=True)
    r = gcc_phat(a, b, n)
    min_overlap = int(min(MIN_OVERLAP * rate, 0.5 * min(len(a), len(b))))
    vals, first = _by_lag(r, len(a), len(b), max(min_overlap, 1))
    return peak_and_confidence(vals, first, rate)


def fine_lag(pairs: Sequence[tuple[np.ndarray, np.ndarray]], search: int) -> float:
    """Residual lag (samples, fractional) of b against a, summed over window pairs of equal length,
    searched within +-search samples of zero."""
    size = max(len(a) for a, _ in pairs)
    n = sfft.next_fast_len(size + search + 1, real=True)
    cross = None
    for a, b in pairs:
        taper = np.hanning(len(a)).astype(a.dtype)
        c = sfft.rfft(a * taper, n) * np.conj(sfft.rfft(b * taper, n))
        cross = c if cross is None else cross + c
    r = sfft.irfft(_phat(cross), n)
    ks = np.arange(-search, search + 1)
    vals = r[ks % n]
    i = int(np.argmax(vals))
    if 0 < i < len(vals) - 1:
        return float(ks[i]) + parabolic(vals[i - 1], vals[i], vals[i + 1])
    return float(ks[i])


# ------------------------------------------------------------------------------------------ files

def _mono(af: AudioFile, rate: int, start: int = 0, frames: int | None = None) -> np.ndarray:
    """Frames of ``af`` at ``rate``, mixed to mono, read block by block into one float32 array."""
    total = af.target_frames(rate) - start if frames is None else frames
    out = np.empty(max(total, 0), dtype=np.float32)
    pos = 0
    for blk in af.blocks(sample_rate=rate, channels=1, start=start, frames=total):
        out[pos:pos + len(blk)] = blk[:, 0]
        pos += len(blk)
    return out


class _Take:
    """An opened take with its decimated mono signal."""

    def __init__(self, file: AudioFile):
        self.path = file.path
        self.file = file
        if file.duration < MIN_SECONDS:
            raise InputError(f"too short to align ({file.duration:.3f} s; needs at least {MIN_SECONDS} s)",
                             path=self.path)
        self.coarse = _mono(file, COARSE_RATE)
        self.silent = float(np.sqrt(np.mean(np.square(self.coarse, dtype=np.float64)))) < SILENT_RMS


def _windows(start: float, stop: float, margin: float) -> list[tuple[float, float]]:
    """Up to FINE_WINDOWS windows (start, seconds) spread evenly over [start + margin, stop - margin]."""
    lo, hi = start + margin, stop - margin
    span = hi - lo
    if span <= 0:
        return []
    if span <= FINE_WINDOW * FINE_WINDOWS:
        size = min(FINE_WINDOW, span)
        count = max(1, min(FINE_WINDOWS, int(span // size)))
    else:
        size, count = FINE_WINDOW, FINE_WINDOWS
    step = (span - size) / (count - 1) if count > 1 else 0.0
    return [(lo + i * step, size) for i in range(count)]


def _refine(ref: _Take, take: _Take, lag: int) -> float:
    """The offset in seconds from a coarse lag (COARSE_RATE samples), refined at the common rate."""
    rate = min(ref.file.sample_rate, take.file.sample_rate, FINE_RATE_MAX)
    rate = max(rate, COARSE_RATE)  # takes below 8 kHz: refine at the coarse rate
    shift = round(lag * rate / COARSE_RATE)  # integer fine samples: take frame m lines up with ref m + shift
    search = int(math.ceil(FINE_SEARCH * rate / COARSE_RATE))
    ref_len, take_len = ref.file.target_frames(rate), take.file.target_frames(rate)
    start, stop = max(0, shift), min(ref_len, shift + take_len)  # overlap, in ref frames
    pairs = []
    for t0, size in _windows(start / rate, stop / rate, (search + 1) / rate):
        a0, frames = int(round(t0 * rate)), int(round(size * rate))
        pairs.append((_mono(ref.file, rate, a0, frames), _mono(take.file, rate, a0 - shift, frames)))
    if not pairs:
        return lag / COARSE_RATE
    return (shift + fine_lag(pairs, search)) / rate


def _match(ref: _Take, take: _Take, threshold: float) -> Match:
    if ref.silent or take.silent:
        return Match(take.path, None, 0.0)
    lag, conf = coarse_lag(ref.coarse, take.coarse, COARSE_RATE)
    if conf < threshold:
        return Match(take.path, None, round(conf, 3))
    return Match(take.path, _refine(ref, take, lag), round(conf, 3))


def align_files(files: Sequence[AudioFile], *, threshold: float = THRESHOLD) -> list[Match]:
    """One Match per opened file; the first is the reference (offset 0, confidence 1 unless silent).

    Raises InputError naming a take that is too short. Only one take besides the reference is held
    decimated in memory at a time.
    """
    if len(files) < 2:
        raise ValueError("align needs a reference and at least one more take")
    ref = _Take(files[0])
    out = [Match(ref.path, None if ref.silent else 0.0, 0.0 if ref.silent else 1.0)]
    for f in files[1:]:
        out.append(_match(ref, _Take(f), threshold))
    return out


def align(paths: Sequence[str | os.PathLike], *, threshold: float = THRESHOLD) -> list[Match]:
    """:func:`align_files` on files by name; InputError names one that cannot be read or has no audio."""
    return align_files([open_audio(p) for p in paths], threshold=threshold)
