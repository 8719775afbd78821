"""Gain curves and level processors that run block by block: fades, sidechain ducking, true-peak limiter.

Everything here is vectorised numpy (no per-sample Python loops) and carries its state across blocks,
so processing a signal in blocks of any size gives the same samples as processing it at once.
"""
from __future__ import annotations

import contextlib
import math
import os

import numpy as np
from numpy.lib.stride_tricks import as_strided

def single_thread_blas():
    """Context manager limiting BLAS to one thread (threadpoolctl, when installed).

    The products here are small (a 16x16 or 33x6 matrix against a block); OpenBLAS splits them over
    threads anyway, which on a 2-core machine under load makes them 10x slower, not faster. The command
    line sets one OpenBLAS thread before numpy loads: then there is nothing to limit (and 5 ms saved).
    """
    if _openblas_one_thread():
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _openblas_one_thread() -> bool:
    """numpy's BLAS is a pthreads OpenBLAS and ``OPENBLAS_NUM_THREADS`` is 1 (which it reads on loading)."""
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        return False
    try:
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
    except (AttributeError, KeyError, TypeError):
        return False
    name, config = str(blas.get("name", "")).lower(), str(blas.get("openblas configuration", ""))
    return "openblas" in name and "OPENMP" not in config


_HELPERS: list = []
if hasattr(os, "register_at_fork"):  # a forked child has the pool but not its thread: start a new one
    os.register_at_fork(after_in_child=_HELPERS.clear)


def _helper():
    """One lazily started helper thread for work that releases the GIL (idle between jobs; joined at exit,
    by the exit handlers too, which the command line runs without the interpreter's teardown)."""
    if not _HELPERS:
        import atexit
        from concurrent.futures import ThreadPoolExecutor
        _HELPERS.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="avmix-dsp"))
        atexit.register(_HELPERS[0].shutdown)
    return _HELPERS[0]


EQUAL_POWER = "equal-power"
LINEAR = "linear"
CURVES = (EQUAL_POWER, LINEAR)


# ------------------------------------------------------------------------------------------ fades

def fade_curve(curve: str, index: np.ndarray, length: int) -> np.ndarray:
    """Fade-in gain at integer positions ``index`` of a fade ``length`` samples long.

    ``t = clip(index / length, 0, 1)``; linear gives ``t``, equal-power ``sin(t * pi / 2)``
    (the definitions of ffmpeg's afade/acrossfade curves ``tri`` and ``qsin``). A fade-out over the
    same span uses ``fade_curve(curve, length - 1 - index, length)``, so a crossfade of two fades of
    equal length matches ffmpeg's acrossfade sample for sample.
    """
    t = np.clip(np.asarray(index, dtype=np.float64) / max(length, 1), 0.0, 1.0)
    if curve == EQUAL_POWER:
        return np.sin(t * (math.pi / 2))
    if curve == LINEAR:
        return t
    raise ValueError(f"unknown fade curve {curve!r}")


def fade_gains(pos: int, n: int, length: int, fade_in: int, fade_out: int, curve: str) -> np.ndarray | None:
    """Per-sample gain (n,) for samples ``pos .. pos+n`` of a placement ``length`` samples long, with a
    ``fade_in`` and a ``fade_out`` (in samples) at its ends; None when no fade touches that span."""
    touches_in = fade_in > 0 and pos < fade_in
    touches_out = fade_out > 0 and pos + n > length - fade_out
    if not (touches_in or touches_out):
        return None
    idx = np.arange(pos, pos + n)
    g = np.ones(n)
    if touches_in:
        g *= fade_curve(curve, idx, fade_in)
    if touches_out:
        # the fade-out covers [length - fade_out, length); positions before it get index >= fade_out -> 1
        g *= fade_curve(curve, (length - 1) - idx, fade_out)
    return g


# ------------------------------------------------------------------------------------------ ducking

class Ducker:
    """Sidechain ducking gain from a control signal, on a hop grid anchored at sample 0.

    Per hop the control's mean-square level is compared with ``threshold_db``; above it the target gain
    is ``-depth_db``, else 0 dB. The gain moves towards the target with one-pole smoothing (``attack``
    seconds going down, ``release`` going up) and is interpolated linearly inside each hop. Blocks
    passed to :meth:`gains` must be whole hops except the last one.
    """

    HOP = 512  # samples; divides the engine's block size

    def __init__(self, sample_rate: int, depth_db: float, *, attack: float = 0.01, release: float = 0.25,
                 threshold_db: float = -45.0):
        self.floor = 10.0 ** (-abs(depth_db) / 20.0)
        self.threshold = 10.0 ** (threshold_db / 10.0)  # mean square
        self.a_att = math.exp(-self.HOP / (max(attack, 1e-6) * sample_rate))
        self.a_rel = math.exp(-self.HOP / (max(release, 1e-6) * sample_rate))
        self.g = 1.0

    def gains(self, control: np.ndarray) -> np.ndarray:
        """float32 gains (n,) for a control block (n, channels)."""
        n = len(control)
        hops = -(-n // self.HOP)
        if hops == 0:
            return np.ones(0, np.float32)
        pad = hops * self.HOP - n
        c = control if not pad else np.concatenate([control, np.zeros((pad, control.shape[1]), control.dtype)])
        ms = np.einsum("ijk,ijk->i", c.reshape(hops, self.HOP, -1), c.reshape(hops, self.HOP, -1),
                       dtype=np.float64) / (self.HOP * c.shape[1])
        if pad:  # the last, partial hop: mean over the samples that exist
            ms[-1] *= self.HOP / (self.HOP - pad)
        target = np.where(ms > self.threshold, self.floor, 1.0)
        out = np.empty(hops + 1)
        out[0] = g = self.g
        for i, t in enumerate(target.tolist()):  # one step per hop (~100 per second), not per sample
            a = self.a_att if t < g else self.a_rel
            g = t + (g - t) * a
            out[i + 1] = g
        self.g = g
        frac = np.arange(1, self.HOP + 1) / self.HOP
        ramp = out[:-1, None] + (out[1:] - out[:-1])[:, None] * frac[None, :]
        return ramp.reshape(-1)[:n].astype(np.float32)


# ------------------------------------------------------------------------------------------ limiter

def oversampling_kernels(factor: int = 4, half: int = 10, beta: float = 5.0) -> np.ndarray:
    """(2*half+1, factor) weights: column p gives the value at n + p/factor from x[n-half .. n+half].

    The polyphase split of a Kaiser-windowed sinc cut off at the input's Nyquist frequency. The defaults
    are the filter of scipy's ``resample_poly(x, factor, 1)``; 16 taps a side with beta 9 are the one
    libswresample builds, and so ffmpeg's ``ebur128=peak=true`` (which reads at 192 kHz).
    """
    half_len = half * factor
    n = np.arange(2 * half_len + 1) - half_len
    h = np.sinc(n / factor) * np.kaiser(2 * half_len + 1, beta)
    h *= factor / h.sum()
    taps = np.arange(-half, half + 1)
    k = np.zeros((len(taps), factor))
    for p in range(factor):
        idx = p + half_len - factor * taps
        ok = (idx >= 0) & (idx < len(h))
        k[ok, p] = h[idx[ok]]
    return k


def true_peak_kernels(sample_rate: int, half: int = 16) -> np.ndarray:
    """(2*half+1, phases) weights for the limiter's true-peak estimate: the points between samples that
    the two usual meters read, so the estimate is the larger of their readings.

    * ffmpeg's ebur128 reads at 192 kHz through libswresample's filter: at 48 kHz that is 4 phases of it
      (the same points to 1e-5; at 96 kHz 2 of them); elsewhere (16 kHz: 12 phases, 44.1 kHz: points
      that drift across each interval) 16 phases read within 0.05 dB of any of its points, half the
      limiter's margin.
    * scipy's 4x ``resample_poly`` (BS.1770 annex 2's method) has a shorter, softer filter. On full-band
      noise each reads up to 0.25 dB above the other at some points, so neither one alone keeps both
      meters under the ceiling.

    Phase 0 (the sample itself) is left out: the limiter takes the samples into the peak directly.
    """
    phases = 4 if (4 * sample_rate) % 192000 == 0 else 16  # ebur128's points are among 4 phases
    swr = oversampling_kernels(phases, half, 9.0)[:, 1:]
    scipy_4x = np.zeros((2 * half + 1, 3))
    scipy_4x[half - 10:half + 11] = oversampling_kernels(4, 10, 5.0)[:, 1:]
    return np.hstack([swr, scipy_4x])


def _colmax(a: np.ndarray) -> np.ndarray:
    """Row-wise max of a (n, few) array; numpy's reductions over a short last axis are ~20x slower."""
    m = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        np.maximum(m, a[:, j], out=m)
    return m


def sliding_sum(x: np.ndarray, size: int) -> np.ndarray:
    """``out[i] = sum(x[i : i + size])`` for i in 0 .. len(x) - size, by doubling (log2(size) passes;
    zeros stay exactly zero, unlike differences of a cumulative sum)."""
    n_out = len(x) - size + 1
    out = None
    offset = 0
    m = x
    span = 1
    while True:
        if size & span:
            part = m[offset:offset + n_out]
            out = part.copy() if out is None else out + part
            offset += span
        if span * 2 > size:
            break
        m = m[:-span] + m[span:]
        span *= 2
    return out


def sliding_max(x: np.ndarray, size: int) -> np.ndarray:
    """``out[i] = max(x[i : i + size])`` for i in 0 .. len(x) - size (log2(size) vector passes)."""
    m = x
    span = 1
    while span * 2 <= size:
        m = np.maximum(m[:-span], m[span:])
        span *= 2
    if span < size:
        m = np.maximum(m[:len(x) - size + 1], m[size - span:size - span + len(x) - size + 1])
    return m[:len(x) - size + 1]


class TruePeakLimiter:
    """Lookahead true-peak limiter that does not shift the timeline.

    :meth:`process` takes blocks and returns blocks (the first ones shorter, by the lookahead);
    :meth:`flush` returns the rest, so the concatenated output has exactly the input's length and
    output sample n is input sample n times its gain.

    Per sample, the required reduction (dB) comes from the true peak (the samples and the points that
    ebur128 and a 4x resample_poly read up to the next sample, :func:`true_peak_kernels`; computed only
    where the sample peak is within ``SCAN_DB`` of the ceiling; sparse blocks gather just those
    intervals, busy ones run a polyphase matrix product). The gain curve is that reduction held over
    the lookahead window (sliding max), released exponentially (``release`` seconds), then smoothed by
    a moving average over the lookahead, so it ramps down before a peak and never exceeds the
    reduction any peak in reach needs. Where nothing comes near the ceiling the samples pass through
    bit-identical.
    """

    HALF = 16  # interpolation kernel half-width, samples (see true_peak_kernels)
    DENSE = 0.15  # above this fraction of hot intervals, filter the whole block instead of gathering
    CHUNK = 16  # outputs per row of the dense polyphase product
    SCAN_DB = 6.0  # only samples within this of the ceiling are oversampled
    MARGIN_DB = 0.1  # aim a little under the ceiling: interpolation and gain-ramp slack

    RELEASE = 0.1  # seconds (the default)

    def __init__(self, sample_rate: int, channels: int, *, ceiling_db: float = -1.0, lookahead: float = 0.002,
                 release: float = RELEASE):
        self.channels = channels
        self.ceiling_db = ceiling_db - self.MARGIN_DB
        self.scan = self.untouched_peak(ceiling_db)
        self.L = max(1, int(round(lookahead * sample_rate)))  # lookahead / averaging length
        self.P = self.HALF  # extra hold on both sides: neighbours of a peak feed its interpolation
        self.F = self.HALF + 1  # input context needed around a sample's interpolation
        self.delay = self.L + self.P + self.F
        self.c = 1.0 / max(release * sample_rate, 1.0)  # release: log-domain decay per sample
        self.kernels = true_peak_kernels(sample_rate, self.HALF).astype(np.float32)
        B, w = self.CHUNK, 2 * self.HALF + 1
        self._toeplitz = np.zeros((B + w - 1, self.kernels.shape[1] * B), np.float32)
        for j in range(B):
            for p in range(self.kernels.shape[1]):
                self._toeplitz[j:j + w, p * B + j] = self.kernels[:, p]
        ctx = self.P + self.F
        self._x = np.zeros((ctx + self.L, channels), np.float32)  # input from absolute _o - ctx (zeros before 0)
        # start L samples early so the gain can already ramp down before a peak at sample 0
        self._o = -self.L  # next output sample (negative ones are discarded)
        self._n = 0  # input samples received
        self._hist = np.zeros(self.L, np.float32)  # last L released-reduction values before _o (dB)
        self._flushed = False

    @classmethod
    def untouched_peak(cls, ceiling_db: float) -> float:
        """The sample peak (linear) up to which a signal passes through bit-identical: nothing that low
        is even oversampled, so a caller can tell from a sample peak alone that the limiter will not act."""
        return 10.0 ** ((ceiling_db - cls.MARGIN_DB - cls.SCAN_DB) / 20.0)

    # -- per-sample required reduction
    def _reduction(self, x: np.ndarray) -> np.ndarray:
        """dB of reduction each interval [n, n+1] of x needs (0 where below the ceiling), length len(x)."""
        # float32: the reductions are float32 (tp, need) already, and max commutes with rounding, so
        # the held curve is the same as from float64 at half the memory traffic
        d = np.zeros(len(x), np.float32)
        if max(float(x.max(initial=0.0)), -float(x.min(initial=0.0))) <= self.scan:
            return d
        a = np.abs(x[:, 0])
        for c in range(1, x.shape[1]):
            np.maximum(a, np.abs(x[:, c]), out=a)
        loud = a > self.scan
        hot = np.flatnonzero(loud[:-1] | loud[1:])
        hot = hot[(hot >= self.HALF) & (hot < len(x) - self.HALF)]
        if len(hot) == 0:
            return d
        if len(hot) > self.DENSE * len(x):  # busy block: polyphase filter everything
            tpa = self._dense_peaks(x)
            tp = np.maximum(tpa[hot], np.maximum(a[hot], a[hot + 1]))
        else:  # sparse: interpolate only around the loud samples
            taps = hot[:, None] + np.arange(-self.HALF, self.HALF + 1)[None, :]  # (k, 2*HALF+1)
            tp = np.maximum(a[hot], a[hot + 1])
            for c in range(x.shape[1]):
                interp = x[:, c][taps] @ self.kernels  # (k, phases)
                np.maximum(tp, _colmax(np.abs(interp)), out=tp)
        with np.errstate(divide="ignore"):
            need = 20.0 * np.log10(tp) - self.ceiling_db
        d[hot] = np.maximum(need, 0.0)
        return d

    def _dense_peaks(self, x: np.ndarray) -> np.ndarray:
        """Max over channels and phases of |interpolated x| at every n in [HALF, len - HALF) (else 0).

        Chunks of B outputs need B + 2*HALF inputs: one (chunks, B+2*HALF) @ (B+2*HALF, phases*B) product
        per channel does all phases (a banded Toeplitz matrix; far less copying than a sliding-window matrix).
        """
        h, B = self.HALF, self.CHUNK
        n = len(x)
        tpa = np.zeros(n, np.float32)
        q = (n - 2 * h) // B
        if q > 0:
            def channel(c: int) -> np.ndarray:
                xc = np.ascontiguousarray(x[:, c])
                win = np.ascontiguousarray(as_strided(xc, shape=(q, B + 2 * h), strides=(B * 4, 4)))
                y = win @ self._toeplitz  # (q, phases*B): phase p of output j at column p*B + j
                np.abs(y, out=y)
                m = y[:, :B].copy()
                for p in range(1, self.kernels.shape[1]):
                    np.maximum(m, y[:, p * B:(p + 1) * B], out=m)
                return m.reshape(-1)

            # the other channels on a helper thread (the product releases the GIL): on two free cores
            # a stereo block takes half the time, and BLAS itself stays single-threaded
            others = [_helper().submit(channel, c) for c in range(1, x.shape[1])]
            np.maximum(tpa[h:h + q * B], channel(0), out=tpa[h:h + q * B])
            for f in others:
                np.maximum(tpa[h:h + q * B], f.result(), out=tpa[h:h + q * B])
        rest = np.arange(h + q * B, n - h)
        if len(rest):  # the few outputs after the last whole chunk
            taps = rest[:, None] + np.arange(-h, h + 1)[None, :]
            for c in range(x.shape[1]):
                tpa[rest] = np.maximum(tpa[rest], _colmax(np.abs(x[:, c][taps] @ self.kernels)))
        return tpa

    def process(self, block: np.ndarray) -> np.ndarray:
        """Feed (n, channels) float32; get back the next limited samples (possibly fewer than n)."""
        if self._flushed:
            raise RuntimeError("limiter already flushed")
        self._x = np.concatenate([self._x, np.asarray(block, np.float32)]) if len(block) else self._x
        self._n += len(block)
        return self._run(self._n - self.delay)

    def flush(self) -> np.ndarray:
        """The remaining samples (the input's tail), once the input has ended."""
        n = self._n
        self._x = np.concatenate([self._x, np.zeros((self.delay, self.channels), np.float32)])
        self._n += self.delay
        out = self._run(n)
        self._flushed = True
        return out

    def _run(self, e: int) -> np.ndarray:
        o, L, P, F = self._o, self.L, self.P, self.F
        if e <= o:
            return np.zeros((0, self.channels), np.float32)
        # self._x holds absolute samples [o - P - F, self._n)
        x = self._x
        base = o - P - F
        # reduction for d[o-P, e+L+P): its intervals need x[.. - F + 1, .. + F]
        d = self._reduction(x[: (e + L + P + F) - base])[F:F + (e + L + 2 * P) - o]
        n = e - o
        out_x = x[P + F:P + F + n]
        if not d.any() and not self._hist.any():
            y = out_x  # nothing near the ceiling: bit-identical pass-through
        else:
            h = sliding_max(d, L + 2 * P + 1)[:n]  # hold over [j-P, j+L+P] (float32, a new array)
            # exponential release of the reduction, vectorised in the log domain:
            # r[k] = max_j<=k h[j] * exp(-c (k - j)) = exp(cummax(log h[j] + c j) - c k)
            ck = np.arange(n, dtype=np.float32) * np.float32(self.c)
            with np.errstate(divide="ignore"):
                v = np.log(h)
                prev = math.log(self._hist[-1]) - self.c if self._hist[-1] > 0 else -math.inf
            v += ck
            v[0] = max(v[0], prev)
            np.maximum.accumulate(v, out=v)
            v -= ck
            r = np.exp(v)
            r[r < 1e-3] = 0.0  # below 0.001 dB the gain is exactly 1 again (bit-identical output)
            # moving average over the last L+1 values (window ends at the sample)
            full = np.concatenate([self._hist, r])
            g = sliding_sum(full, L + 1)
            g *= np.float32(-1.0 / (20.0 * (L + 1)))  # -> -dB / 20
            self._hist = full[-L:].copy()
            if g.any():
                gain = np.power(np.float32(10.0), g)
                y = out_x * gain[:, None]
            else:
                y = out_x
        self._x = x[n:]
        self._o = e
        return y[-o:] if o < 0 else y


def hop_true_peaks(x: np.ndarray, hop: int, kernels: np.ndarray,
                   left: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(estimated true peak, sample peak), linear, of each whole ``hop`` of (n, channels) ``x``. The
    estimate is the larger of the sample peak and the points ``kernels`` (:func:`true_peak_kernels`)
    read in the intervals either side of the largest sample. ``left``: the samples just before ``x``
    (zeros when not given, and after ``x``)."""
    half = (len(kernels) - 1) // 2
    k, ch = len(x) // hop, x.shape[1]
    if k == 0:
        return np.zeros(0), np.zeros(0)
    a = np.abs(x[:k * hop]).reshape(k, hop * ch)
    at = a.argmax(axis=1)
    sample = a[np.arange(k), at]
    peak = sample.astype(np.float64)
    pos, c = np.arange(k) * hop + at // ch, at % ch
    pad = np.zeros((half + 1, ch), np.float32)
    if left is not None and len(left):
        tail = left[-(half + 1):]
        pad[len(pad) - len(tail):] = tail
    xp = np.concatenate([pad, x[:k * hop], np.zeros((half + 1, ch), np.float32)])
    for start in (pos - 1, pos):  # the intervals [m-1, m] and [m, m+1] around the largest sample m
        taps = (start + half + 1)[:, None] + np.arange(-half, half + 1)[None, :]
        peak = np.maximum(peak, np.abs(xp[taps, c[:, None]] @ kernels).max(axis=1))
    return peak, sample


def hop_reduction(peak_db: np.ndarray, ceiling_db: float, hop: int, sample_rate: int,
                  release: float = TruePeakLimiter.RELEASE) -> np.ndarray:
    """The :class:`TruePeakLimiter`'s gain reduction (dB, >= 0) per hop, modelled from each hop's true
    peak (dB): what the hop needs to come under the ceiling (with the limiter's margin), released
    exponentially in dB as the limiter releases. Its 2 ms lookahead is left out."""
    need = np.maximum(peak_db - (ceiling_db - TruePeakLimiter.MARGIN_DB), 0.0)
    if not len(need):
        return need
    ck = np.arange(len(need)) * (hop / (release * sample_rate))
    with np.errstate(divide="ignore"):
        v = np.log(need) + ck
    return np.exp(np.maximum.accumulate(v) - ck)


def true_peak(x: np.ndarray) -> float:
    """True peak (linear) of a whole (n, channels) array by 4x polyphase oversampling (for tests/reports)."""
    from scipy.signal import resample_poly

    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if len(x) == 0:
        return 0.0
    up = resample_poly(x, 4, 1, axis=0)
    return float(max(np.abs(up).max(), np.abs(x).max()))
