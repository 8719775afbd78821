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
  recorded, so stems get the same. For a mix held in memory (:class:`Held`) :func:`refine_dynamics`
  chooses both ratios again with the limiter in the loop (:class:`LevelModel`).
- **Loudness**: the reference's integrated loudness. For a held mix the master gain comes from
  :class:`LevelModel` (the corrected mix's loudness less what the limiter is modelled to take), so one
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
           notes: list[str] | None = None, taps: int | None = None) -> dict:
    """The correction (a JSON-ready dict) that brings ``mix`` towards ``ref``; see the module doc.
    ``ceiling_db``: the limiter's ceiling (None: no limiter), for the dynamics simulation. Notes for the
    user are appended to ``notes``."""
    notes = notes if notes is not None else []
    s = float(strength)
    sr = mix.sample_rate
    pts = _points(sr)
    taps = int(taps or 2 * (len(mix.freqs) - 1))
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
    shift = -float(np.median(raw_mid[heard]))
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


def _solve(fn, want: float, lo: float, hi: float, rising: bool) -> float:
    """Bisection on log ratio for fn(r) = want (fn monotone; clamped to the range)."""
    a, b = math.log(lo), math.log(hi)
    for _ in range(14):
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
    """float32 per-sample gains of samples pos .. pos+n from linear gains per hop (each at its hop's
    centre, interpolated linearly between them and held beyond the ends)."""
    t = (np.arange(pos, pos + n, dtype=np.float64) + 0.5) / hop - 0.5
    return np.interp(t, np.arange(len(gain)), gain).astype(np.float32)


def fir(points: np.ndarray, db: np.ndarray, sample_rate: int, taps: int) -> np.ndarray:
    """Linear-phase FIR (``taps`` long, delay taps // 2) with the point curve as its magnitude."""
    f = np.fft.rfftfreq(taps, 1.0 / sample_rate)
    mag = 10.0 ** (curve_on(f, np.asarray(points), np.asarray(db)) / 20.0)
    h = np.roll(np.fft.irfft(mag, taps), taps // 2)
    return (h * np.hanning(taps + 1)[:-1]).astype(np.float32)


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


def balance(ref: Measurement, tracks: list[Measurement], *, rounds: int = 8) -> list[float]:
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

    for _ in range(rounds):
        before = g.copy()
        for i in np.flatnonzero(live):
            rest = (10.0 ** (g[:, None] / 10.0) * e).sum(axis=0) - 10.0 ** (g[i] / 10.0) * e[i]
            g[i] = grid[np.argmin(cost(rest[None, :] + 10.0 ** (grid[:, None] / 10.0) * e[i][None, :]))]
        if np.array_equal(g, before):
            break
    g -= np.median(g[live])  # the level is the loudness match's job: keep the gains centred
    return [round(float(v), 3) for v in np.clip(g, -MAX_DB, MAX_DB)]


# ------------------------------------------------------------------------------------------ level

HOLD_BYTES = 32 << 20  # a mix up to this size (3 minutes of 48 kHz stereo) is held in memory: it is
# corrected once, its level with the limiter is modelled before writing, and rewrites skip mixing


class Held:
    """The mix's blocks, kept while they pass (:meth:`keep`) as long as they total under ``limit`` bytes."""

    def __init__(self, limit: int | None = None):
        self.limit = HOLD_BYTES if limit is None else limit
        self.blocks: list[np.ndarray] | None = []  # None: too long, not kept

    def keep(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        size = 0
        for b in blocks:
            if self.blocks is not None:
                size += b.nbytes
                if size > self.limit:
                    self.blocks = None
                else:
                    self.blocks.append(b)  # the engine makes a new array per block: no copy
            yield b

    def correct(self, corr: dict, sample_rate: int, channels: int, ceiling_db: float | None) -> "LevelModel":
        """Replace the kept blocks by the corrected mix (at master gain 0) and model its level."""
        from concurrent.futures import ThreadPoolExecutor
        model = LevelModel(sample_rate, channels, ceiling_db)
        c = Corrector(corr, sample_rate, channels) if corr.get("eq") or corr.get("dynamics") else None
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
        from avmix.audio.loudness import IIRFilter, LoudnessMeter, channel_weights
        self.sr, self.ceiling_db = sample_rate, ceiling_db
        self._meter = LoudnessMeter(sample_rate, channels)
        self._lufs: float | None = None
        self._filter = IIRFilter(k_weighting_sos(sample_rate), channels)
        self._w = channel_weights(channels).astype(np.float32)
        self._kernels = dynamics.true_peak_kernels(sample_rate).astype(np.float32)
        self._rest = np.zeros((0, channels), np.float32)
        self._zrest = np.zeros(0, np.float32)
        self._ms: list[np.ndarray] = []  # K-weighted mean square per hop
        self._tp: list[np.ndarray] = []  # true peak per hop (dB once all are in)
        self._ums: list[np.ndarray] = []  # plain mean square and sample peak per hop (for the crest factor)
        self._pk: list[np.ndarray] = []
        self._left = None

    def add(self, block: np.ndarray) -> None:
        self._meter.add(block)
        if self.ceiling_db is None:
            return
        y = self._filter(block)  # (channels, n)
        np.square(y, out=y)
        z = np.concatenate([self._zrest, self._w @ y])
        k = len(z) // HOP
        self._ms.append(z[:k * HOP].reshape(k, HOP).mean(axis=1, dtype=np.float64))
        self._zrest = z[k * HOP:]
        x = np.concatenate([self._rest, block]) if len(self._rest) else block
        tp, pk = dynamics.hop_true_peaks(x, HOP, self._kernels, self._left)
        self._tp.append(tp)
        self._pk.append(pk.astype(np.float32))
        h = x[:k * HOP].reshape(k, -1)
        self._ums.append(np.einsum("ij,ij->i", h, h, dtype=np.float64) / h.shape[1])
        self._left = x[k * HOP - 32:k * HOP] if k else self._left
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
        if math.isfinite(before):
            self._lufs = self.lufs + _gated_lufs(self._ms, self.sr) - before

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
        moved = _gated_lufs(self._limited(gain_db, change)[0], self.sr) - _gated_lufs(ms, self.sr)
        return self.lufs + (moved if math.isfinite(moved) else gain_db)

    def dynamics(self, gain_db: float, change: np.ndarray | None = None) -> tuple[float, float]:
        """(loudness range, crest factor in dB) of the output modelled at ``gain_db`` and ``change``."""
        from avmix.audio.loudness import OFFSET
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
    from avmix.audio.loudness import ABS_GATE, BLOCK_S, OFFSET, REL_GATE, STEP_S
    per = STEP_S * sample_rate / HOP
    k = int(len(hop_power) // per)
    if k < int(round(BLOCK_S / STEP_S)):
        m = float(hop_power.mean()) if len(hop_power) else 0.0
        return OFFSET + 10.0 * math.log10(m) if m > 0 and OFFSET + 10.0 * math.log10(m) > ABS_GATE else -math.inf
    edges = np.round(np.arange(k + 1) * per).astype(np.int64)
    c = np.concatenate([[0.0], np.cumsum(hop_power)])
    steps = (c[edges[1:]] - c[edges[:-1]]) / np.diff(edges)
    n = int(round(BLOCK_S / STEP_S))
    z = np.convolve(steps, np.ones(n) / n, mode="valid")
    with np.errstate(divide="ignore"):
        lk = OFFSET + 10.0 * np.log10(z)
    z, lk = z[lk > ABS_GATE], lk[lk > ABS_GATE]
    if not len(z):
        return -math.inf
    z = z[lk > OFFSET + 10.0 * math.log10(z.mean()) + REL_GATE]
    return OFFSET + 10.0 * math.log10(z.mean())


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
    from avmix.audio import gainsearch
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

    def outcome(sr: float, fr: float) -> tuple[float, float, np.ndarray]:
        d = (shape.curve(sr, fr) - g0)[:hops]
        d = np.pad(d, (0, hops - len(d)), mode="edge") if len(d) < hops else d
        gain[0] = _secant(lambda g: model.level(g, d), target, gain[0])
        lra, crest = model.dynamics(gain[0], d)
        return lra, crest, d

    lra0, crest0, _ = outcome(slow, fast)
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
    lra2, crest2, _ = outcome(slow, fast)
    if abs(lra2 - want_lra) > abs(lra0 - want_lra) - 0.1 and abs(crest2 - want_crest) >= abs(crest0 - want_crest):
        return False  # no better: keep the first choice
    curve = shape.curve(slow, fast).astype(np.float32)
    change = curve.astype(np.float64) - g0
    held.regain(change)
    model.shift(change)
    corr["dynamics"] = {"hop": HOP, "slow_ratio": round(slow, 4), "fast_ratio": round(fast, 4),
                        "gain_cdb": pack_curve(curve)}
    return True


def _bisect(fn, want: float, lo: float, hi: float, steps: int = 6) -> float:
    """The ratio in [lo, hi] (log scale) where the falling ``fn`` meets ``want`` (an end if it does not)."""
    if fn(hi) >= want:
        return hi
    a, b = math.log(lo), math.log(hi)
    for _ in range(steps):
        m = (a + b) / 2
        if fn(math.exp(m)) > want:
            a = m
        else:
            b = m
    return math.exp((a + b) / 2)


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
