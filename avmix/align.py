"""Lining up separately recorded takes: how far to delay each input so it matches the first.

Two stages:

1. coarse: both whole takes, mixed to mono and decimated to ``COARSE_RATE`` while read, one FFT each,
   GCC-PHAT (cross-correlation with the cross-spectrum's magnitude divided out, so every frequency band
   votes equally and loud low notes, gain and microphone colour do not decide). The peak gives the lag
   to a coarse sample (0.125 ms) and the confidence.
2. fine: a few windows of the overlap read again at the takes' common rate (up to 48 kHz), their
   spectra summed. In a reverberant take the strongest arrival can be a reflection some milliseconds
   after the direct sound, so the fine stage estimates the impulse response from one take to the other
   (the cross-spectrum divided by one take's power, both ways) within ``DIRECT_SPAN`` of the coarse lag,
   and takes its first strong arrival: the direct sound. A parabola through that peak and its
   neighbours places it between samples.

Only the decimated takes and a few seconds at the full rate are held in memory. Offsets are in
seconds: positive delays the track, negative trims its start. Both takes must run on one clock: a
drift between two devices' clocks (a few ms over minutes) is not corrected.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy import fft  # not scipy.fft: importing it costs 0.2 s of CPU (scipy.special), a fifth of the goal

from avmix.audio.io import AudioFile, open_audio
from avmix.errors import InputError
from avmix.stats import robust_spread

COARSE_RATE = 8000  # Hz: speech and music keep most of their structure below 4 kHz
FINE_RATE_MAX = 48000  # Hz: above this the fine stage gains nothing that matters at 1 ms
FINE_WINDOW = 4.0  # seconds per fine window
FINE_WINDOWS = 4  # windows spread over the overlap
FINE_SEARCH = 3  # coarse samples either side of the coarse lag searched when no direct sound stands out
DIRECT_SPAN = 0.05  # seconds either side of the coarse lag searched for the direct sound
STRONG = 0.3  # an arrival at least this fraction of the strongest may be the direct sound
ONSET_SPAN = 0.01  # seconds either side of an arrival compared to tell where the reflections lie
ONSET_GUARD = 0.0005  # seconds next to an arrival that belong to its own peak
MIX_OTHER = 0.1  # of the other take's power added to one take's before dividing by it
REGULARISE = 0.1  # of the mean power, added as well: bands where neither take has much are not raised
AGREE = 0.4  # the GCC-PHAT at the direct sound must reach this fraction of its highest peak
SHARP = 3.0  # and the reflections after it must hold this many times the energy of what comes before
MIN_SECONDS = 0.25  # a take shorter than this has too little to match
MIN_OVERLAP = 2.0  # seconds the takes must share (or half the shorter take, when that is less)
SIDE_LOBE = DIRECT_SPAN  # seconds around the best peak that belong to it (reflections, the peak's own width)
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

def fast_len(n: int) -> int:
    """The smallest length >= n with no prime factor above 5, where the FFT is fastest."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            best = min(best, p35 << max(0, (-(-n // p35) - 1).bit_length()))
            p35 *= 3
        p5 *= 5
    return best


def _rfft(x: np.ndarray, n: int) -> np.ndarray:
    """The spectrum of real x zero-padded to n, divided by n (nothing here depends on the scale).

    norm="forward" makes numpy pass its scale as a float32 for float32 input: with the default (the
    int 1) it computes in float64, taking twice the time and 4 extra bytes per input sample x 4."""
    return fft.rfft(x, n, norm="forward")


def gcc_phat(a: np.ndarray, b: np.ndarray, n: int | None = None) -> np.ndarray:
    """Circular GCC-PHAT of two 1-D signals, length ``n`` (default: long enough for no wrap-around).

    ``r[k]`` (k taken modulo n) is large where ``a[m + k]`` matches ``b[m]``: delaying b by k lines
    it up with a.
    """
    n = n or fast_len(len(a) + len(b) - 1)
    return _gcc_phat(_rfft(a, n), b, n)


def _gcc_phat(spec_a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    cross = _rfft(b, n)
    np.conjugate(cross, out=cross)  # in place: for two 3-minute takes each array is 12 MB
    cross *= spec_a
    return fft.irfft(_phat(cross, out=cross), n)


def _phat(cross: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    mag = np.abs(cross)
    # bins with (almost) no energy in either take would be raised to full weight as pure noise
    mag += 1e-6 * float(np.mean(mag)) + np.finfo(np.float32).tiny
    return np.divide(cross, mag, out=out)


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
    med, sigma = robust_spread(sample)
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


def coarse_lag(ref: "_Take", take: "_Take", rate: float) -> tuple[int, float]:
    """Lag of the take against the reference in samples of their coarse signals (delay the take by it),
    and the confidence, over the whole signals. The reference's spectrum is kept for the next take."""
    a, b = ref.coarse, take.coarse
    n = fast_len(len(a) + len(b) - 1)
    r = _gcc_phat(ref.spectrum(n), b, n)
    min_overlap = int(min(MIN_OVERLAP * rate, 0.5 * min(len(a), len(b))))
    vals, first = _by_lag(r, len(a), len(b), max(min_overlap, 1))
    return peak_and_confidence(vals, first, rate)


def _first_arrival(h: np.ndarray, centre: int, search: int, rate: float, later: bool) -> tuple[int, float]:
    """The direct sound in an impulse-response estimate ``h`` (index ``centre`` is lag 0) within
    +-search samples: its index, and how sharply the response starts there (energy on the side where
    reflections would follow / energy on the side where nothing should come, 1 for no difference).

    ``later``: the reflections lie at smaller indices (they arrive later in the take being delayed),
    so the direct sound is the strong arrival with the largest index; else the smallest.
    """
    body = h[centre - search:centre + search + 1]
    med, sigma = robust_spread(body)
    top = int(np.argmax(body))
    strong = max(STRONG * float(body[top]), med + 4.0 * sigma)
    mid = body[1:-1]
    peaks = np.flatnonzero((mid >= strong) & (mid >= body[:-2]) & (mid >= body[2:])) + 1
    i = centre - search + (int(peaks[-1] if later else peaks[0]) if len(peaks) else top)
    span, guard = int(ONSET_SPAN * rate), max(1, int(ONSET_GUARD * rate))
    e = np.square(h - med)
    before, after = e[max(0, i - span):max(0, i - guard + 1)], e[i + guard:i + span + 1]
    tail, ahead = (before, after) if later else (after, before)
    if not len(tail) or not len(ahead):
        return i, 1.0
    return i, float(np.mean(tail)) / (float(np.mean(ahead)) + np.finfo(np.float64).tiny)


def direct_lag(pairs: Sequence[tuple[np.ndarray, np.ndarray]], search: int, rate: float) -> float:
    """Residual lag (samples, fractional) of b against a at the direct sound, from window pairs of equal
    length, searched within +-search samples of zero.

    The cross-spectrum divided by a's power is the impulse response that makes b from a (reflections
    at smaller lags, when b is the reverberant take); divided by b's power, the one that makes a from b
    (reflections at larger lags). The one that starts more sharply tells which take is reverberant.
    Its first strong arrival is taken if it starts sharply enough and the GCC-PHAT has a strong peak
    there too (the inverse of a band-pass filter starts sharply as well, but in slow lobes that PHAT
    does not share); else the GCC-PHAT's peak within FINE_SEARCH coarse samples of zero.
    """
    span = int(ONSET_SPAN * rate) + 1
    size = max(len(a) for a, _ in pairs)
    n = fast_len(size + search + span + 1)
    cross = power_a = power_b = None
    for a, b in pairs:
        taper = np.hanning(len(a)).astype(a.dtype)
        sa, sb = _rfft(a * taper, n), _rfft(b * taper, n)
        c, pa, pb = sa * np.conj(sb), np.square(np.abs(sa)), np.square(np.abs(sb))
        if cross is None:
            cross, power_a, power_b = c, pa, pb
        else:
            cross += c
            power_a += pa
            power_b += pb
    reach = search + span
    ks = np.arange(-reach, reach + 1)
    phat = fft.irfft(_phat(cross), n)[ks % n]
    body = phat[span:-span]  # lags -search..search
    # each take's power relative to its mean, so that the two can be mixed in the denominators
    mean_a, mean_b = float(np.mean(power_a)) or 1.0, float(np.mean(power_b)) or 1.0
    cross /= math.sqrt(mean_a * mean_b)
    power_a /= mean_a
    power_b /= mean_b
    arrivals = []
    for own, other, later in ((power_a, power_b, True), (power_b, power_a, False)):
        # a little of the other take's power: no division by the bands only one take has
        h = fft.irfft(cross / (own + MIX_OTHER * other + REGULARISE), n)[ks % n]
        i, sharp = _first_arrival(h, reach, search, rate, later)
        arrivals.append((sharp, i))
    # no clear direct sound: the GCC-PHAT's peak at the coarse lag, to within a coarse sample or so
    near = int(math.ceil(FINE_SEARCH * rate / COARSE_RATE))
    i = reach - near + int(np.argmax(phat[reach - near:reach + near + 1]))
    sharp, j = max(arrivals)
    around = phat[j - 2:j + 3]
    if sharp >= SHARP and float(around.max()) >= AGREE * float(body.max()):
        i = j - 2 + int(np.argmax(around))
    return float(ks[i]) + parabolic(phat[i - 1], phat[i], phat[i + 1])


# ------------------------------------------------------------------------------------------ files

def _mono(af: AudioFile, rate: int, start: int, frames: int) -> np.ndarray:
    """``frames`` frames of ``af`` from ``start`` at ``rate``, mixed to mono, as one block."""
    return next(af.blocks(sample_rate=rate, channels=1, start=start, frames=frames, blocksize=frames))[:, 0]


class _Take:
    """An opened take with its decimated mono signal."""

    def __init__(self, file: AudioFile):
        self.path = file.path
        self.file = file
        if file.duration < MIN_SECONDS:
            raise InputError(f"too short to align ({file.duration:.3f} s; needs at least {MIN_SECONDS} s)",
                             path=self.path)
        self.coarse = file.read(sample_rate=COARSE_RATE, channels=1)[:, 0]
        self.silent = float(np.sqrt(np.mean(np.square(self.coarse, dtype=np.float64)))) < SILENT_RMS
        self._spectrum: tuple[int, np.ndarray] | None = None

    def spectrum(self, n: int) -> np.ndarray:
        """The coarse signal's spectrum at FFT length n (the reference's is reused for every take)."""
        if self._spectrum is None or self._spectrum[0] != n:
            self._spectrum = (n, _rfft(self.coarse, n))
        return self._spectrum[1]


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
    ref_len, take_len = ref.file.target_frames(rate), take.file.target_frames(rate)
    start, stop = max(0, shift), min(ref_len, shift + take_len)  # overlap, in ref frames
    # a short overlap: search less far, so that windows still fit
    search = max(2, min(int(math.ceil(DIRECT_SPAN * rate)), (stop - start) // 8))
    reach = search + int(ONSET_SPAN * rate) + 2
    pairs = []
    for t0, size in _windows(start / rate, stop / rate, reach / rate):
        a0, frames = int(round(t0 * rate)), int(round(size * rate))
        pairs.append((_mono(ref.file, rate, a0, frames), _mono(take.file, rate, a0 - shift, frames)))
    if not pairs:
        return lag / COARSE_RATE
    return (shift + direct_lag(pairs, search, rate)) / rate


def _match(ref: _Take, take: _Take, threshold: float) -> Match:
    if ref.silent or take.silent:
        return Match(take.path, None, 0.0)
    lag, conf = coarse_lag(ref, take, COARSE_RATE)
    if conf < threshold:
        return Match(take.path, None, round(conf, 3))
    return Match(take.path, _refine(ref, take, lag), round(conf, 3))


def align_files(files: Sequence[AudioFile], *, threshold: float = THRESHOLD) -> list[Match]:
    """One Match per opened file; the first is the reference (offset 0, confidence 1 unless silent).

    Raises InputError naming a take that is too short. Besides the reference, at most two takes are
    held decimated in memory: the one being matched and the next, read meanwhile on another thread.
    """
    if len(files) < 2:
        raise ValueError("align needs a reference and at least one more take")
    pool = ThreadPoolExecutor(max_workers=2)  # reading and decimating: libsndfile and soxr free the GIL
    try:
        ref_job = pool.submit(_Take, files[0])
        jobs = [pool.submit(_Take, files[1])]
        ref = ref_job.result()
        out = [Match(ref.path, None if ref.silent else 0.0, 0.0 if ref.silent else 1.0)]
        for i in range(1, len(files)):
            take = jobs.pop().result()
            if i + 1 < len(files):
                jobs.append(pool.submit(_Take, files[i + 1]))
            out.append(_match(ref, take, threshold))
        return out
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def align(paths: Sequence[str | os.PathLike], *, threshold: float = THRESHOLD) -> list[Match]:
    """:func:`align_files` on files by name; InputError names one that cannot be read or has no audio."""
    return align_files([open_audio(p) for p in paths], threshold=threshold)
