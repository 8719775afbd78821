"""One static correction that brings a mix towards a reference, from two :class:`Measurement` s.

:func:`derive` returns the correction as a JSON-ready dict (it is what the timeline records as
``master``); :class:`Corrector` applies such a dict to blocks. Nothing here reads files.

- **Tone**: for mid and side, the difference of the two loud-part spectra (each relative to its own
  file's total power, then shifted to a median of 0 dB), summed over an octave around points spaced
  1/6 octave apart, bounded to +``MAX_DB`` of boost and -``MAX_CUT_DB`` of cut (a cut cannot raise
  noise, so it may go further; the curve is shifted down to use that room when its boosts would
  clip, the loudness gain making up the level), and never boosted where the mix has next to nothing
  (``FLOOR_DB`` under its loudest band). An octave, not a third: between two songs in different keys
  a third-octave curve follows the notes, and a static EQ that lifts one bass note changes the
  loudness from bar to bar (the loudness range of the benchmark's pairs doubled). The curve is kept as
  (frequency, dB) points and a linear-phase FIR is designed from it by frequency sampling (Hann window,
  ``taps`` long), run by FFT overlap-add with its delay taken out, so the timeline does not move.
- **Width**: the side curve is then corrected per broad band so that the side/mid energy of each band
  (after both curves) equals the reference's. A mono mix cannot be widened and a mono reference says
  nothing about width: then the side follows the mid curve.
- **Dynamics**: a gain curve per ``HOP`` samples from two ratios: a slow one on the 3 s level around
  the integrated level (loudness range) and a fast one on each hop's peak over the 0.4 s level (crest
  factor). Each ratio is found by bisection, simulating the curve on the mix's measurements: the
  slow one on half-octave band powers per spectrum frame put through the EQ (K-weighted), the fast
  one on hop peaks and mean squares with the limiter's ceiling. The curve is computed on the mix and
  recorded, so stems get the same. For a mix held in memory :mod:`avmix.audio.held` chooses both
  ratios again with the limiter in the loop.
- **Loudness**: the reference's integrated loudness. For a held mix the master gain comes from
  :class:`avmix.audio.held.LevelModel` (the corrected mix's loudness less what the limiter is modelled to take), so one
  write normally suffices; otherwise it is predicted through the curves. Either way the caller writes
  and measures, and corrects the gain as for ``--normalize lufs`` when the output misses.
- ``strength`` scales every dB curve, moves the loudness and dynamics targets part of the way, and
  so blends from untouched (0) to matched (1).
"""
from __future__ import annotations

import math
from typing import Iterable, Iterator

import numpy as np

from avmix.audio import dynamics
from avmix.audio.loudness import k_weighting_sos, loudness_range
from avmix.stats import median
from avmix.audio.reference import (BAND_EDGES_HZ, DYNAMICS_SECONDS, HOP, OCTAVES_HZ, Measurement, crest_db, gated,
                                   mid_side)

MAX_DB = 12.0  # bound of every boost, and of the width and dynamics gains both ways
MAX_CUT_DB = 24.0  # the spectral curves may cut this far
FLOOR_DB = -60.0  # a mix band this far under its loudest is not boosted
POINTS_PER_OCTAVE = 6
LOW_HZ, HIGH_HZ = 20.0, 20000.0  # the curve is held flat outside (and above 0.45 x the rate)
MID_SMOOTH, SIDE_SMOOTH = 1.0, 1.0  # band widths (octaves) the spectra are summed over
RATIO_RANGE = (0.5, 4.0)  # the slow stage's ratio: expander 2:1 .. compressor 4:1 ("gentle")
FAST_RANGE = (1.0, 4.0)  # the fast stage only compresses: lifting peaks cannot make transients, it
# only feeds the limiter (in the benchmark an expanded mix at -9 LUFS came out with twice the LRA)
SLOW_S, FAST_S = 3.0, 0.4  # level windows of the two dynamics stages
SEGMENT = 1 << 16  # overlap-add FFT size


# ------------------------------------------------------------------------------------------ derive

def _points(sample_rate: int) -> np.ndarray:
    hi = min(HIGH_HZ, 0.45 * sample_rate)
    n = int(math.floor(math.log2(hi / LOW_HZ) * POINTS_PER_OCTAVE)) + 1
    return LOW_HZ * 2.0 ** (np.arange(n) / POINTS_PER_OCTAVE)


def _bands(freqs: np.ndarray, psd: np.ndarray, points: np.ndarray, width_oct: float) -> np.ndarray:
    """Power summed over bins within width/2 octaves of each point (the nearest bin when none is)."""
    out = np.empty(len(points))
    lf = np.log2(np.maximum(freqs, 1e-9))
    for i, p in enumerate(points):
        sel = np.abs(lf - math.log2(p)) <= width_oct / 2
        out[i] = psd[sel].sum() if sel.any() else psd[np.argmin(np.abs(freqs - p))]
    return out


def _diff_db(ref_b: np.ndarray, ref_total: float, mix_b: np.ndarray, mix_total: float) -> np.ndarray:
    tiny = 1e-30
    d = 10.0 * np.log10((ref_b + tiny) / ref_total) - 10.0 * np.log10((mix_b + tiny) / mix_total)
    return np.convolve(np.pad(d, 1, mode="edge"), np.ones(3) / 3, mode="valid")  # a little smoother


def _bounded(d: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``d`` within -MAX_CUT_DB..+MAX_DB, and not above 0 dB where the mix's band powers ``b`` have next
    to nothing."""
    low = b < b.max() * 10.0 ** (FLOOR_DB / 10.0)
    d = np.clip(d, -MAX_CUT_DB, MAX_DB)
    d[low] = np.minimum(d[low], 0.0)
    return d


def curve_on(freqs: np.ndarray, points: np.ndarray, db: np.ndarray) -> np.ndarray:
    """A point curve (dB) interpolated on log frequency at ``freqs`` (held flat beyond its ends)."""
    return np.interp(np.log2(np.maximum(freqs, 1e-9)), np.log2(points), db)


def _band_of(freqs: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(BAND_EDGES_HZ), freqs, side="right")


def _width(ref: Measurement, mix: Measurement, points: np.ndarray, mid_db: np.ndarray, side_db: np.ndarray,
           strength: float) -> tuple[np.ndarray, list[float]]:
    """Side curve corrected per broad band so each band's side/mid energy after both curves is the
    reference's (moved ``strength`` of the way, in dB); returns it and the per-band corrections."""
    nb = len(BAND_EDGES_HZ) + 1
    band = _band_of(mix.freqs)
    gm = 10.0 ** (curve_on(mix.freqs, points, mid_db) / 10.0) * mix.mid
    extra = np.zeros(nb)
    centres = np.array([math.sqrt(a * b) for a, b in zip((LOW_HZ,) + BAND_EDGES_HZ, BAND_EDGES_HZ + (HIGH_HZ,))])
    for _ in range(4):  # the band gains are interpolated between band centres, so refine a few times
        sd = side_db + np.interp(np.log2(points), np.log2(centres), extra)
        gs = 10.0 ** (curve_on(mix.freqs, points, sd) / 10.0) * mix.side
        for b in range(nb):
            sel = band == b
            r_ref, m_ref = ref.side[sel].sum(), ref.mid[sel].sum()
            now_s, now_m = gs[sel].sum(), gm[sel].sum()
            was = mix.side[sel].sum() / max(mix.mid[sel].sum(), 1e-30)
            if min(r_ref, m_ref, now_s, now_m) <= 0:
                continue
            want = 10.0 * math.log10(was) + strength * (10.0 * math.log10(r_ref / m_ref) - 10.0 * math.log10(was))
            extra[b] += want - 10.0 * math.log10(now_s / now_m)
        extra = np.clip(extra, -2 * MAX_DB, 2 * MAX_DB)
    sd = np.clip(side_db + np.interp(np.log2(points), np.log2(centres), extra), -MAX_CUT_DB, MAX_DB)
    return sd, [round(float(e), 3) for e in extra]


def _has_side(m: Measurement) -> bool:
    return m.side is not None and m.side.sum() > 1e-6 * m.mid.sum()


def derive(ref: Measurement, mix: Measurement, *, strength: float = 1.0, ceiling_db: float | None = -1.0,
           notes: list[str] | None = None) -> dict:
    """The correction (a JSON-ready dict) that brings ``mix`` towards ``ref``; see the module doc.
    ``ceiling_db``: the limiter's ceiling (None: no limiter), for the dynamics simulation. Notes for the
    user are appended to ``notes``."""
    notes = notes if notes is not None else []
    s = float(strength)
    sr = mix.sample_rate
    pts = _points(sr)
    taps = 2 * (len(mix.freqs) - 1)
    corr: dict = {"strength": s, "eq": None, "width_db": None, "dynamics": None,
                  "target_lufs": None, "predicted_lufs": None}
    if mix.silent or ref.silent:
        notes.append(("the reference" if ref.silent else "the mix") + " is silent; the mix is left unchanged")
        return corr
    ref_tot, mix_tot = float(ref.total.sum()), float(mix.total.sum())
    # both spectra relative to their file's power, then shifted to a mean of 0 dB over log frequency:
    # the bounds are spent on the shape both ways, the level is the loudness gain's job
    mb = _bands(mix.freqs, mix.mid, pts, MID_SMOOTH)
    raw_mid = _diff_db(_bands(ref.freqs, ref.mid, pts, MID_SMOOTH), ref_tot, mb, mix_tot)
    raw_side = sb = None
    if _has_side(mix) and _has_side(ref):
        sb = _bands(mix.freqs, mix.side, pts, SIDE_SMOOTH)
        raw_side = _diff_db(_bands(ref.freqs, ref.side, pts, SIDE_SMOOTH), ref_tot, sb, mix_tot)
    heard = mb >= mb.max() * 10.0 ** (FLOOR_DB / 10.0)
    shift = -median(raw_mid[heard])
    over = float((raw_mid + shift)[heard].max()) - MAX_DB
    if over > 0:  # boosts would clip: move down into the cutting room left
        shift -= min(over, max(float((raw_mid + shift)[heard].min()) + MAX_CUT_DB, 0.0))
    mid_db = s * _bounded(raw_mid + shift, mb)
    side_db = mid_db.copy()
    width = None
    if mix.side is not None:
        if not _has_side(mix):
            notes.append("the mix is mono (no side signal), so its width cannot be matched")
        elif not _has_side(ref):
            notes.append("the reference has no side signal (mono); the mix's width is kept")
        else:
            side_db = s * _bounded(raw_side + shift, sb)
            side_db, width = _width(ref, mix, pts, mid_db, side_db, s)
    corr["eq"] = {"freqs_hz": [round(float(f), 2) for f in pts], "mid_db": [round(float(v), 3) for v in mid_db],
                  "side_db": [round(float(v), 3) for v in side_db], "taps": taps}
    corr["width_db"] = None if width is None else {"edges_hz": list(BAND_EDGES_HZ), "gains_db": width}
    eq_change = _eq_loudness_change(mix, pts, mid_db, side_db)
    target = mix.lufs + s * (ref.lufs - mix.lufs)
    gain_curve = None
    if ref.duration < DYNAMICS_SECONDS or mix.duration < DYNAMICS_SECONDS:
        notes.append(f"the {'reference' if ref.duration < DYNAMICS_SECONDS else 'mix'} is shorter than "
                     f"{DYNAMICS_SECONDS:g} s, so its dynamics are not matched (loudness, tone and width are)")
    elif math.isfinite(ref.crest_db) and math.isfinite(mix.crest_db):
        gain_curve, slow, fast = _dynamics(mix, ref, s, target - mix.lufs - eq_change, ceiling_db,
                                           _eq_band_gains(mix, pts, mid_db, side_db))
        if gain_curve is not None:
            corr["dynamics"] = {"hop": HOP, "slow_ratio": round(slow, 4), "fast_ratio": round(fast, 4),
                                "gain_cdb": pack_curve(gain_curve)}
    dyn_change = 0.0
    if corr["dynamics"] is not None:
        g = unpack_curve(corr["dynamics"])
        dyn_change = _level(mix.hop_ms * 10.0 ** (g / 10.0)) - _level(mix.hop_ms)
    corr["target_lufs"] = round(float(target), 4)
    corr["predicted_lufs"] = round(float(mix.lufs + eq_change + dyn_change), 4)
    return corr


def _eq_loudness_change(mix: Measurement, pts: np.ndarray, mid_db: np.ndarray, side_db: np.ndarray) -> float:
    """How much the curves change the K-weighted power of the mix's loud parts (dB)."""
    w = np.abs(_sos_response(k_weighting_sos(mix.sample_rate), mix.freqs, mix.sample_rate)) ** 2
    before = (w * mix.total).sum()
    after = (w * mix.mid * 10.0 ** (curve_on(mix.freqs, pts, mid_db) / 10.0)).sum()
    if mix.side is not None:
        after += (w * mix.side * 10.0 ** (curve_on(mix.freqs, pts, side_db) / 10.0)).sum()
    return 10.0 * math.log10(after / before) if before > 0 and after > 0 else 0.0


def _sos_response(sos: np.ndarray, freqs: np.ndarray, sr: int) -> np.ndarray:
    z = np.exp(-1j * 2 * np.pi * freqs / sr)
    h = np.ones(len(freqs), complex)
    for b0, b1, b2, a0, a1, a2 in sos:
        h *= (b0 + b1 * z + b2 * z * z) / (a0 + a1 * z + a2 * z * z)
    return h


# ------------------------------------------------------------------------------------------ dynamics

def _level(ms: np.ndarray) -> float:
    """Gated power mean (dB) of hop mean squares, gated as BS.1770 does (unweighted, per hop)."""
    with np.errstate(divide="ignore"):
        lv = 10.0 * np.log10(ms)
    keep = gated(lv, -10.0)
    return 10.0 * math.log10(float(ms[keep].mean())) if keep.any() else -math.inf


def _smooth(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average over n values (edges averaged over what exists)."""
    n = max(1, int(n))
    c = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    i = np.arange(len(x))
    lo, hi = np.maximum(i - n // 2, 0), np.minimum(i + n - n // 2, len(x))
    return (c[hi] - c[lo]) / (hi - lo)


class _Shape:
    """The two gain components of the mix, before their ratios are chosen (dB per hop).

    The slow one works on the loudness of each spectrum frame *after the EQ* (octave-band powers of
    mid and side, K-weighted and put through the curves), since a static EQ can itself move loudness
    over time (a boosted bass line that changes note each bar)."""

    def __init__(self, mix: Measurement, band_gains: np.ndarray | None = None):
        sr = mix.sample_rate
        ms = mix.hop_ms.astype(np.float64)  # freed at the end of __init__
        tiny = 1e-20
        fb = mix.frame_bands  # (frames, k, bands) float32; no float64 copy (25 MB an hour)
        kb = _band_weights(mix)  # (k, bands): K-weighting x EQ power per octave band
        after = kb[0] * (band_gains if band_gains is not None else 1.0)
        self.k_before = np.einsum("fkb,b->f", fb, kb[0].astype(np.float32)).astype(np.float64)
        self.k_after = np.einsum("fkb,kb->f", fb, np.broadcast_to(after, fb.shape[1:]).astype(np.float32)).astype(
            np.float64)
        self.frame_hop = mix.frame_hop
        per = max(1, int(round(SLOW_S * sr / max(mix.frame_hop, 1))))
        slow_f = 10.0 * np.log10(_smooth(self.k_after, per) + tiny)
        integ = _level(self.k_after) if len(self.k_after) else 0.0
        slow_f = np.maximum(slow_f, integ - 20.0) - integ  # LU around the integrated level
        # frame j starts at j*frame_hop and is 2*(bins-1) long
        hop_t = (np.arange(len(ms)) + 0.5) * HOP
        frame_t = np.arange(len(slow_f)) * float(mix.frame_hop) + (len(mix.freqs) - 1)
        # per-hop arrays in float32: an hour has 340 000 hops, and these live through the ratio search
        self.slow = (np.interp(hop_t, frame_t, slow_f) if len(slow_f) else np.zeros(len(ms))).astype(np.float32)
        self._frame_t = frame_t
        del hop_t
        local = 10.0 * np.log10(_smooth(ms, FAST_S * sr / HOP) + tiny)
        hop_integ = _level(ms)
        fast = np.maximum(20.0 * np.log10(mix.hop_peak + tiny) - local - 3.0, 0.0)  # peak over local RMS
        fast[local < hop_integ - 30.0] = 0.0  # quiet passages: leave them be
        self.fast = fast.astype(np.float32)
        del local, fast
        self.ms, self.peak, self.sr, self.per = mix.hop_ms, mix.hop_peak, sr, per

    def curve(self, slow_ratio: float, fast_ratio: float) -> np.ndarray:
        g = (1.0 / slow_ratio - 1.0) * self.slow
        f = (1.0 / fast_ratio - 1.0) * self.fast
        if fast_ratio > 1.0:  # hold a reduction over its neighbours: the gain ramps into a peak
            f = np.minimum(np.minimum(f, np.roll(f, 1)), np.roll(f, -1))
        else:
            f = np.maximum(np.maximum(f, np.roll(f, 1)), np.roll(f, -1))
        g = g + _smooth(f, 3)
        return np.clip(g, -MAX_DB, MAX_DB)

    def lra(self, g: np.ndarray | None, *, eq: bool = True) -> float:
        """Loudness range of the frames' K-weighted power (after the EQ unless told) under curve ``g``."""
        e = self.k_after if eq else self.k_before
        if g is not None and len(e):
            hop_t = (np.arange(len(g)) + 0.5) * HOP
            e = e * 10.0 ** (np.interp(self._frame_t, hop_t, g) / 10.0)
        if len(e) < self.per:
            return 0.0
        st = 10.0 * np.log10(np.maximum(np.convolve(e, np.ones(self.per) / self.per, mode="valid"), 1e-20))
        return loudness_range(st)

    def crest(self, g: np.ndarray, gain_db: float, ceiling_db: float | None) -> float:
        """Crest factor (dB) of the mix after curve ``g`` and ``gain_db``, peaks held at the ceiling."""
        ms = self.ms * 10.0 ** ((g + gain_db) / 10.0)
        pk = self.peak * 10.0 ** ((g + gain_db) / 20.0)
        if ceiling_db is not None:
            top = 10.0 ** (ceiling_db / 20.0)
            over = pk > top
            ms[over] *= (top / pk[over]) ** 2  # what the limiter takes from a hop, roughly
            pk = np.minimum(pk, top)
        return crest_db(ms.astype(np.float32), pk.astype(np.float32), self.sr)


def _band_weights(mix: Measurement) -> np.ndarray:
    """(k, octave bands): mean K-weighting power gain of each band, over the mix's spectrum."""
    w = np.abs(_sos_response(k_weighting_sos(mix.sample_rate), mix.freqs, mix.sample_rate)) ** 2
    band = np.searchsorted(OCTAVES_HZ, mix.freqs, side="right")
    nb = len(OCTAVES_HZ) + 1
    out = np.ones((1, nb))
    p = mix.total
    for j in range(nb):
        sel = band == j
        if p[sel].sum() > 0:
            out[0, j] = (w[sel] * p[sel]).sum() / p[sel].sum()
    return out


def _eq_band_gains(mix: Measurement, pts: np.ndarray, mid_db: np.ndarray, side_db: np.ndarray) -> np.ndarray:
    """(k, octave bands) power gain the curves give each octave band of mid (and side)."""
    band = np.searchsorted(OCTAVES_HZ, mix.freqs, side="right")
    nb = len(OCTAVES_HZ) + 1
    parts = [(mix.mid, mid_db)] + ([(mix.side, side_db)] if mix.side is not None else [])
    out = np.ones((len(parts), nb))
    for c, (p, db) in enumerate(parts):
        h = 10.0 ** (curve_on(mix.freqs, pts, db) / 10.0)
        for j in range(nb):
            sel = band == j
            if p[sel].sum() > 0:
                out[c, j] = (h[sel] * p[sel]).sum() / p[sel].sum()
    return out


def _solve(fn, want: float, lo: float, hi: float, rising: bool, steps: int = 14) -> float:
    """Bisection on log ratio for fn(r) = want (fn monotone; clamped to the range)."""
    a, b = math.log(lo), math.log(hi)
    for _ in range(steps):
        m = (a + b) / 2
        v = fn(math.exp(m))
        if (v < want) == rising:
            a = m
        else:
            b = m
    return math.exp((a + b) / 2)


def _dynamics(mix: Measurement, ref: Measurement, s: float, gain_db: float, ceiling_db: float | None,
              band_gains: np.ndarray) -> tuple[np.ndarray | None, float, float]:
    shape = _Shape(mix, band_gains)
    want_lra = mix.lra + s * (ref.lra - mix.lra)
    want_crest = mix.crest_db + s * (ref.crest_db - mix.crest_db)
    slow = 1.0
    lra0 = shape.lra(None, eq=False)
    if lra0 > 0.05 and mix.lra > 0.05:  # the frames' LRA is scaled to the measured one
        scale = mix.lra / lra0
        slow = _solve(lambda r: scale * shape.lra(shape.curve(r, 1.0)), want_lra, *RATIO_RANGE, rising=False)
    offset = mix.crest_db - shape.crest(shape.curve(1.0, 1.0), 0.0, None)  # simulation vs measurement
    fast = 1.0
    if want_crest < mix.crest_db:
        fast = _solve(lambda r: shape.crest(shape.curve(slow, r), gain_db, ceiling_db) + offset, want_crest,
                      *FAST_RANGE, rising=False)
    if abs(math.log(slow)) < 0.01 and abs(math.log(fast)) < 0.01:
        return None, 1.0, 1.0
    return shape.curve(slow, fast).astype(np.float32), slow, fast


# ------------------------------------------------------------------------------------------ apply

def pack_curve(gain_db: np.ndarray) -> str:
    """A gain curve as the timeline keeps it: base64 of little-endian int16 hundredths of a dB. An
    hour has 340 000 values: 0.9 MB this way, against 5 MB of JSON numbers and 11 MB of Python floats
    while the mix is written."""
    import base64
    q = np.round(np.asarray(gain_db, np.float64) * 100.0).astype("<i2")
    return base64.b64encode(q.tobytes()).decode("ascii")


def unpack_curve(dyn: dict) -> np.ndarray:
    """The curve (dB per hop) of a timeline's dynamics record (``gain_cdb``, or a plain ``gain_db`` list)."""
    import base64
    if "gain_db" in dyn:
        return np.asarray(dyn["gain_db"], np.float64)
    return np.frombuffer(base64.b64decode(dyn["gain_cdb"]), "<i2").astype(np.float64) / 100.0

def ramp(gain: np.ndarray, pos: int, n: int, hop: int) -> np.ndarray:
    """float32 per-sample gains of samples pos .. pos+n from gains per hop (each at its hop's centre,
    interpolated linearly between centres and held beyond the ends): whole hops at a time, as a
    (hops, hop) table of float32 steps rather than a float64 search per sample."""
    if n <= 0:
        return np.zeros(0, np.float32)
    half = hop // 2  # sample i lies at (i - half + 0.5) / hop hops past centre k = (i - half) // hop
    j0 = pos - half
    k0, k1 = j0 // hop, (j0 + n - 1) // hop
    k = np.arange(k0, k1 + 1)
    last = len(gain) - 1
    a = gain[np.clip(k, 0, last)].astype(np.float32)
    b = gain[np.clip(k + 1, 0, last)].astype(np.float32)
    frac = ((np.arange(hop) + (0.5 if hop % 2 == 0 else 0.0)) / hop).astype(np.float32)
    table = a[:, None] + (b - a)[:, None] * frac[None, :]
    start = j0 - k0 * hop
    return table.reshape(-1)[start:start + n]


def fir(points: np.ndarray, db: np.ndarray, sample_rate: int, taps: int) -> np.ndarray:
    """Linear-phase FIR (``taps`` long, delay taps // 2) with the point curve as its magnitude."""
    f = np.fft.rfftfreq(taps, 1.0 / sample_rate)
    mag = 10.0 ** (curve_on(f, np.asarray(points), np.asarray(db)) / 20.0)
    h = np.roll(np.fft.irfft(mag, taps), taps // 2)
    return (h * np.hanning(taps + 1)[:-1]).astype(np.float32)


def corrector(corr: dict | None, sample_rate: int, channels: int) -> "Corrector | None":
    """The Corrector of a correction record, or None when it has neither EQ nor dynamics."""
    if not corr or (corr.get("eq") is None and corr.get("dynamics") is None):
        return None
    return Corrector(corr, sample_rate, channels)


class Corrector:
    """Applies a :func:`derive` dict to (n, channels) blocks of the mix (or of one source as placed).

    Like the limiter, :meth:`process` may return fewer samples than it got (the FIR's delay) and
    :meth:`flush` returns the rest, so the output has exactly the input's length and is aligned to it.
    """

    def __init__(self, corr: dict, sample_rate: int, channels: int):
        self.ch = channels
        eq = corr.get("eq")
        self.h = None
        if eq is not None:
            taps = int(eq["taps"])
            pts = np.asarray(eq["freqs_hz"], np.float64)
            mid = fir(pts, np.asarray(eq["mid_db"]), sample_rate, taps)
            side = fir(pts, np.asarray(eq["side_db"]), sample_rate, taps)
            self.nfft = max(SEGMENT, 1 << int(math.ceil(math.log2(4 * taps))))
            self.seg = self.nfft - taps + 1
            self.delay = taps // 2
            stereo = channels == 2
            self.h = np.stack([np.fft.rfft(mid, self.nfft)] + ([np.fft.rfft(side, self.nfft)] if stereo else []))
            self.stereo = stereo
            k = 2 if stereo else channels
            self._in = np.zeros((0, k), np.float32)
            self._tail = np.zeros((taps - 1, k), np.float32)
            self._skip = self.delay  # outputs still to drop (the delay)
            self._fed = 0
        dyn = corr.get("dynamics")
        # linear gain per hop, interpolated linearly between hops (in dB it would take a power per sample;
        # between neighbouring hops the two differ by under 0.01 dB)
        self.gain = None if dyn is None else (10.0 ** (unpack_curve(dyn) / 20.0)).astype(np.float32)
        self.hop = HOP if dyn is None else int(dyn["hop"])
        self.pos = 0  # absolute output position (for the gain curve)
        self._flushed = False

    def _split(self, block: np.ndarray) -> np.ndarray:
        return mid_side(block) if self.stereo else block

    def _join(self, y: np.ndarray) -> np.ndarray:
        if self.stereo:
            return np.stack([y[:, 0] + y[:, 1], y[:, 0] - y[:, 1]], axis=1)
        return y

    def _convolve(self, x: np.ndarray) -> np.ndarray:
        """Overlap-add of whole segments of x (len a multiple of seg, or any length at the end)."""
        outs = []
        taps1 = len(self._tail)
        for a in range(0, len(x), self.seg):
            part = x[a:a + self.seg]
            y = np.empty((len(part) + taps1, x.shape[1]), np.float32)

            def channel(c: int) -> None:  # one filter per channel (mid and side), or the one for all
                h = self.h[c] if self.stereo else self.h[0]
                y[:, c] = np.fft.irfft(np.fft.rfft(part[:, c], self.nfft) * h, self.nfft)[:len(y)]

            # the other channels on the limiter's helper thread (the FFTs release the GIL)
            others = [dynamics._helper().submit(channel, c) for c in range(1, x.shape[1])]
            channel(0)
            for f in others:
                f.result()
            y[:taps1] += self._tail
            outs.append(y[:len(part)])
            self._tail = np.ascontiguousarray(y[len(part):len(part) + taps1])
            if len(self._tail) < taps1:
                self._tail = np.concatenate([self._tail, np.zeros((taps1 - len(self._tail), y.shape[1]), np.float32)])
        return np.concatenate(outs) if outs else np.zeros((0, x.shape[1]), np.float32)

    def _emit(self, y: np.ndarray) -> np.ndarray:
        if self._skip:
            k = min(self._skip, len(y))
            y, self._skip = y[k:], self._skip - k
        y = self._join(y) if self.h is not None else y
        return self._apply_gain(y)

    def _apply_gain(self, y: np.ndarray) -> np.ndarray:
        n = len(y)
        if self.gain is not None and n:
            y = y * ramp(self.gain, self.pos, n, self.hop)[:, None]
        self.pos += n
        return y

    def process(self, block: np.ndarray) -> np.ndarray:
        if self.h is None:
            return self._apply_gain(block)
        self._fed += len(block)
        x = np.concatenate([self._in, self._split(block)]) if len(self._in) else self._split(block)
        k = len(x) // self.seg * self.seg
        self._in = x[k:]
        return self._emit(self._convolve(x[:k]))

    def flush(self) -> np.ndarray:
        if self._flushed:
            raise RuntimeError("corrector already flushed")
        self._flushed = True
        if self.h is None:
            return np.zeros((0, self.ch), np.float32)
        y = self._convolve(self._in) if len(self._in) else np.zeros((0, self._tail.shape[1]), np.float32)
        y = np.concatenate([y, self._tail[:self.delay]])
        return self._emit(y)

    def run(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Correct a whole stream of blocks (a generator of corrected blocks, aligned, same total)."""
        for b in blocks:
            out = self.process(b)
            if len(out):
                yield out
        out = self.flush()
        if len(out):
            yield out


# ------------------------------------------------------------------------------------------ balance

BALANCE_STEP_DB = 0.25
BALANCE_ROUNDS = 8  # sweeps over the tracks; the gains settle in a few


def balance(ref: Measurement, tracks: list[Measurement]) -> list[float]:
    """Per-track gains (dB, within +-MAX_DB) that bring the mix's third-octave band energies closest
    (least squares in dB, the overall level free) to the reference's. Tracks add as powers (uncorrelated);
    solved one track at a time over a 0.25 dB grid, a few rounds. Silent tracks keep 0 dB."""
    pts = _points(ref.sample_rate)[::2]  # third-octave points
    r = _bands(ref.freqs, ref.total, pts, 1 / 3)
    e = np.array([_bands(t.freqs, t.total, pts, 1 / 3) if not t.silent else np.zeros(len(pts)) for t in tracks])
    use = r > r.max() * 10.0 ** (FLOOR_DB / 10.0)
    live = e.sum(axis=1) > 0
    if not use.any() or not live.any():
        return [0.0] * len(tracks)
    r, e = 10.0 * np.log10(r[use]), e[:, use]
    grid = np.arange(-MAX_DB, MAX_DB + 1e-9, BALANCE_STEP_DB)
    g = np.zeros(len(tracks))

    def cost(total: np.ndarray) -> np.ndarray:  # (candidates, bands) powers -> (candidates,)
        d = 10.0 * np.log10(np.maximum(total, 1e-30)) - r
        return ((d - d.mean(axis=-1, keepdims=True)) ** 2).mean(axis=-1)

    for _ in range(BALANCE_ROUNDS):
        before = g.copy()
        for i in np.flatnonzero(live):
            rest = (10.0 ** (g[:, None] / 10.0) * e).sum(axis=0) - 10.0 ** (g[i] / 10.0) * e[i]
            g[i] = grid[np.argmin(cost(rest[None, :] + 10.0 ** (grid[:, None] / 10.0) * e[i][None, :]))]
        if np.array_equal(g, before):
            break
    g -= median(g[live])  # the level is the loudness match's job: keep the gains centred
    return [round(float(v), 3) for v in np.clip(g, -MAX_DB, MAX_DB)]
