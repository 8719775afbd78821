"""Reference matching's second stage for a mix short enough to hold in memory (:class:`Held`).

The held mix is corrected once (:class:`~avmix.audio.match.Corrector`), and a :class:`LevelModel` of
it predicts the output's loudness, loudness range and crest factor under the true-peak limiter for any
master gain, per ``HOP`` samples. With it the master gain is chosen before writing (so one write
normally suffices), and :func:`refine_dynamics` chooses the dynamics ratios again with the limiter in
the loop. A longer mix is streamed as before (:mod:`avmix.audio.compose`).
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np

from avmix.audio import dynamics, gainsearch
from avmix.audio.loudness import BLOCK_S, OFFSET, STEP_S, LoudnessMeter, gated_loudness, loudness_range
from avmix.audio.match import (FAST_RANGE, RATIO_RANGE, _eq_band_gains, _Shape, _solve, corrector, pack_curve, ramp,
                               unpack_curve)
from avmix.audio.reference import DYNAMICS_SECONDS, HOP, Measurement, crest_db


HOLD_BYTES = 72 << 20  # a mix up to this size (3 min 16 s of 48 kHz stereo float32) is held in memory: it is
# corrected once, its level with the limiter is modelled before writing, and rewrites skip mixing


class Held:
    """The mix's blocks, kept while they pass (:meth:`keep`) as long as they total under HOLD_BYTES."""

    def __init__(self):
        self.blocks: list[np.ndarray] | None = []  # None: too long, not kept

    def keep(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        size = 0
        for b in blocks:
            if self.blocks is not None:
                size += b.nbytes
                if size > HOLD_BYTES:
                    self.blocks = None
                else:
                    self.blocks.append(b)  # the engine makes a new array per block: no copy
            yield b

    def correct(self, corr: dict, sample_rate: int, channels: int, ceiling_db: float | None) -> "LevelModel":
        """Replace the kept blocks by the corrected mix (at master gain 0) and model its level."""
        model = LevelModel(sample_rate, channels, ceiling_db)
        c = corrector(corr, sample_rate, channels)
        out, jobs = [], []
        with ThreadPoolExecutor(max_workers=1) as pool:  # the model beside the correction (one worker: in order)
            for b in (c.run(self._drain()) if c is not None else self._drain()):
                jobs.append(pool.submit(model.add, b))
                out.append(b)
        for j in jobs:
            j.result()  # re-raises
        self.blocks = out
        return model

    def _drain(self) -> Iterator[np.ndarray]:
        """The held blocks, each let go as it is taken (so the mix is not held twice while corrected)."""
        blocks, self.blocks = self.blocks, None
        blocks.reverse()
        while blocks:
            yield blocks.pop()

    def regain(self, change_db: np.ndarray) -> None:
        """Multiply the held mix by a gain per ``HOP`` (dB), interpolated as the corrector's curve is."""
        lin = (10.0 ** (np.asarray(change_db, np.float64) / 20.0)).astype(np.float32)
        pos = 0
        for i, b in enumerate(self.blocks):
            self.blocks[i] = b * ramp(lin, pos, len(b), HOP)[:, None]
            pos += len(b)


class HeldEngine:
    """Blocks of a held, corrected mix at a master gain, in place of the compose engine's (whose
    :meth:`blocks` they mirror); ``corrected`` tells the writer not to correct them again."""

    corrected = True

    def __init__(self, tl, blocks: list[np.ndarray]):
        self.tl, self._blocks = tl, blocks

    def blocks(self, *, master_gain_db: float = 0.0) -> Iterator[np.ndarray]:
        g = np.float32(10.0 ** (master_gain_db / 20.0))
        for b in self._blocks:
            yield b * g


class LevelModel:
    """The output's integrated loudness as a function of the master gain, from the corrected mix at
    gain 0: its loudness (measured, so exact without a limiter) less what the true-peak limiter takes.
    That is modelled per ``HOP``: each hop's K-weighted mean square and true peak
    (:func:`dynamics.hop_true_peaks`), the limiter's reduction from those (:func:`dynamics.hop_reduction`),
    and BS.1770 gating over 400 ms of hops. On the benchmark's pairs the model is within 0.15 LU of
    the written output where the limiter takes up to 3 LU."""

    def __init__(self, sample_rate: int, channels: int, ceiling_db: float | None):
        self.sr, self.ceiling_db = sample_rate, ceiling_db
        self._meter = LoudnessMeter(sample_rate, channels)
        self._lufs: float | None = None
        self._base: float | None = None  # the hops' own gated loudness (the model's zero)
        self._kernels = dynamics.true_peak_kernels(sample_rate).astype(np.float32)
        self._rest = np.zeros((0, channels), np.float32)
        self._zrest = np.zeros(0, np.float32)
        self._ms: list[np.ndarray] = []  # K-weighted mean square per hop
        self._tp: list[np.ndarray] = []  # true peak per hop (dB once all are in)
        self._ums: list[np.ndarray] = []  # plain mean square and sample peak per hop (for the crest factor)
        self._pk: list[np.ndarray] = []
        self._left = None

    def add(self, block: np.ndarray) -> None:
        power = self._meter.power(block)  # K-weighted once, for the meter and the hops
        self._meter.add_power(power)
        if self.ceiling_db is None:
            return
        z = np.concatenate([self._zrest, power])
        k = len(z) // HOP
        self._ms.append(z[:k * HOP].reshape(k, HOP).mean(axis=1, dtype=np.float64))
        self._zrest = z[k * HOP:]
        x = np.concatenate([self._rest, block]) if len(self._rest) else block
        tp, pk = dynamics.hop_true_peaks(x, HOP, self._kernels, self._left)
        self._tp.append(tp)
        self._pk.append(pk.astype(np.float32))
        h = x[:k * HOP].reshape(k, -1)
        self._ums.append(np.einsum("ij,ij->i", h, h, dtype=np.float64) / h.shape[1])
        self._left = x[k * HOP - (len(self._kernels) - 1):k * HOP] if k else self._left
        self._rest = x[k * HOP:]

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(self._ms, np.ndarray):  # once every block is in
            cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0))
            self._ms, self._ums, self._pk = cat(self._ms), cat(self._ums), cat(self._pk)
            with np.errstate(divide="ignore"):
                self._tp = 20.0 * np.log10(cat(self._tp))
        return self._ms, self._tp

    @property
    def lufs(self) -> float:
        """The corrected mix's loudness at gain 0, without the limiter."""
        if self._lufs is None:
            self._lufs = self._meter.integrated()
        return self._lufs

    def shift(self, change_db: np.ndarray) -> None:
        """The mix was given a further gain per hop (dB, :meth:`Held.regain`): follow it."""
        ms, tp = self._arrays()
        d = np.asarray(change_db, np.float64)[:len(ms)]
        if len(d) < len(ms):
            d = np.pad(d, (0, len(ms) - len(d)), mode="edge")
        before = _gated_lufs(ms, self.sr)
        self._ms, self._ums = ms * 10.0 ** (d / 10.0), self._ums * 10.0 ** (d / 10.0)
        self._tp, self._pk = tp + d, self._pk * 10.0 ** (d / 20.0)
        self._base = _gated_lufs(self._ms, self.sr)
        if math.isfinite(before):
            self._lufs = self.lufs + self._base - before

    def _limited(self, gain_db: float, change: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(K-weighted power, total gain in dB) per hop after a further ``change`` and the limiter."""
        ms, tp_db = self._arrays()
        g = gain_db if change is None else gain_db + change
        total = g - dynamics.hop_reduction(tp_db + g, self.ceiling_db, HOP, self.sr)
        return ms * 10.0 ** (total / 10.0), total

    def level(self, gain_db: float, change: np.ndarray | None = None) -> float:
        """The output's LUFS at master gain ``gain_db`` (-inf when silent), after a further gain per hop
        ``change`` (dB, as long as the model's hops) if given."""
        if self.ceiling_db is None or not math.isfinite(self.lufs):
            return self.lufs + gain_db
        ms, _ = self._arrays()
        if self._base is None:
            self._base = _gated_lufs(ms, self.sr)
        moved = _gated_lufs(self._limited(gain_db, change)[0], self.sr) - self._base
        return self.lufs + (moved if math.isfinite(moved) else gain_db)

    def dynamics(self, gain_db: float, change: np.ndarray | None = None) -> tuple[float, float]:
        """(loudness range, crest factor in dB) of the output modelled at ``gain_db`` and ``change``."""
        p, total = self._limited(gain_db, change)
        per = max(1, int(round(3.0 * self.sr / HOP)))  # short-term loudness: 3 s windows
        lra = 0.0
        if len(p) >= per:
            st = np.convolve(p, np.ones(per) / per, mode="valid")[::max(1, per // 30)]
            lra = loudness_range(OFFSET + 10.0 * np.log10(np.maximum(st, 1e-20)))
        crest = crest_db((self._ums * 10.0 ** (total / 10.0)).astype(np.float32),
                         (self._pk * 10.0 ** (total / 20.0)).astype(np.float32), self.sr)
        return lra, crest


def _gated_lufs(hop_power: np.ndarray, sample_rate: int) -> float:
    """BS.1770 integrated loudness of K-weighted per-hop mean squares: 100 ms steps of whole hops,
    400 ms blocks, the absolute and relative gates (a whole-hop version of LoudnessMeter's)."""
    per = STEP_S * sample_rate / HOP
    k = int(len(hop_power) // per)
    if k < int(round(BLOCK_S / STEP_S)):
        return gated_loudness(np.array([hop_power.mean() if len(hop_power) else 0.0]))  # as one block
    edges = np.round(np.arange(k + 1) * per).astype(np.int64)
    c = np.concatenate([[0.0], np.cumsum(hop_power)])
    steps = (c[edges[1:]] - c[edges[:-1]]) / np.diff(edges)
    n = int(round(BLOCK_S / STEP_S))
    return gated_loudness(np.convolve(steps, np.ones(n) / n, mode="valid"))


# ------------------------------------------------------------------------------------------ dynamics after the limiter

LRA_SLACK = 0.5  # LU: a modelled loudness range after the limiter this close to the wanted one is kept
CREST_SLACK = 0.5  # dB: likewise the crest factor


def refine_dynamics(corr: dict, ref: Measurement, mix: Measurement, held: Held, model: LevelModel, *,
                    strength: float = 1.0) -> bool:
    """A second look at the dynamics ratios with the limiter in the loop (a held mix only).

    At a loud target the limiter takes more from sections with strong peaks than from the rest, so the
    loudness range that the ratios were chosen for comes back (a -9 LUFS reference: 1.3 LU before the
    limiter, 3.5 after). Here both ratios are chosen again on the :class:`LevelModel` of the corrected
    mix, the master gain following the target: the fast one for the crest factor after the limiter
    (compressing only), then the slow one for the loudness range after it, and where that is not
    enough the fast one for the loudness range too. When the first choice is
    already within LRA_SLACK and CREST_SLACK nothing changes. Updates ``corr``, ``held`` and ``model``;
    returns whether it changed anything."""
    if (model.ceiling_db is None or strength <= 0 or corr.get("eq") is None or corr.get("target_lufs") is None
            or min(ref.duration, mix.duration) < DYNAMICS_SECONDS
            or not (math.isfinite(ref.crest_db) and math.isfinite(mix.crest_db))):
        return False
    s = float(strength)
    want_lra = mix.lra + s * (ref.lra - mix.lra)
    want_crest = mix.crest_db + s * (ref.crest_db - mix.crest_db)
    eq = corr["eq"]
    pts = np.asarray(eq["freqs_hz"])
    shape = _Shape(mix, _eq_band_gains(mix, pts, np.asarray(eq["mid_db"]), np.asarray(eq["side_db"])))
    dyn = corr["dynamics"]
    slow, fast = (dyn["slow_ratio"], dyn["fast_ratio"]) if dyn else (1.0, 1.0)
    g0 = unpack_curve(dyn) if dyn else np.zeros(len(mix.hop_ms))
    hops = len(model._arrays()[0])
    target = corr["target_lufs"]
    gain = [gainsearch.solve(model.level, target, target - model.lufs - 6.0, target - model.lufs + 18.0)]

    seen: dict[tuple[float, float], tuple[float, float]] = {}  # a pair already tried is not redone

    def outcome(sr: float, fr: float) -> tuple[float, float]:
        if (sr, fr) not in seen:
            d = (shape.curve(sr, fr) - g0)[:hops]
            d = np.pad(d, (0, hops - len(d)), mode="edge") if len(d) < hops else d
            gain[0] = _secant(lambda g: model.level(g, d), target, gain[0])
            seen[(sr, fr)] = model.dynamics(gain[0], d)
        return seen[(sr, fr)]

    lra0, crest0 = outcome(slow, fast)
    if abs(lra0 - want_lra) <= LRA_SLACK and abs(crest0 - want_crest) <= CREST_SLACK:
        return False
    if crest0 > want_crest + CREST_SLACK and fast < FAST_RANGE[1]:
        fast = _bisect(lambda r: outcome(slow, r)[1], want_crest, fast, FAST_RANGE[1])
    lra1 = outcome(slow, fast)[0]
    if abs(lra1 - want_lra) > LRA_SLACK:
        slow = _bisect(lambda r: outcome(r, fast)[0], want_lra, *RATIO_RANGE)
        if outcome(slow, fast)[0] > want_lra + LRA_SLACK and fast < FAST_RANGE[1]:
            # the slow stage at its most cannot even the sections out: take the peaks the limiter
            # would take from the loud ones with the fast stage instead
            fast = _bisect(lambda r: outcome(slow, r)[0], want_lra, fast, FAST_RANGE[1])
    lra2, crest2 = outcome(slow, fast)
    if abs(lra2 - want_lra) > abs(lra0 - want_lra) - 0.1 and abs(crest2 - want_crest) >= abs(crest0 - want_crest):
        return False  # no better: keep the first choice
    packed = pack_curve(shape.curve(slow, fast))  # the mix gets the curve the timeline records, as stems do
    curve = unpack_curve({"gain_cdb": packed})
    change = curve - g0
    held.regain(change)
    model.shift(change)
    corr["dynamics"] = {"hop": HOP, "slow_ratio": round(slow, 4), "fast_ratio": round(fast, 4),
                        "gain_cdb": packed}
    return True


def _bisect(fn, want: float, lo: float, hi: float, steps: int = 6) -> float:
    """The ratio in [lo, hi] (log scale) where the falling ``fn`` meets ``want`` (an end if it does not)."""
    return hi if fn(hi) >= want else _solve(fn, want, lo, hi, rising=False, steps=steps)


def _secant(level, target: float, g: float, steps: int = 5) -> float:
    """The gain near ``g`` where ``level`` (rising, about a LU per dB) meets ``target``."""
    lv = level(g)
    g2 = g + (target - lv)
    for _ in range(steps):
        if not math.isfinite(lv) or abs(lv - target) < 0.01:
            break
        lv2 = level(g2)
        slope = (lv2 - lv) / (g2 - g) if g2 != g else 1.0
        g, lv = g2, lv2
        g2 = g + (target - lv) / max(slope, 0.1)
    return g
