"""The master gain to try next when the limiter keeps a LUFS-normalised output under its target.

Pure arithmetic on the (gain, measured output loudness) pairs of the writing passes so far; the passes
themselves are in :mod:`avmix.audio.compose`.
"""
from __future__ import annotations

import math
from typing import Callable

MAX_BOOST_DB = 12.0  # the most a correction adds to the first pass's gain (the limiter then takes at
# least that much off the peaks; beyond it, spiky material turns into its own noise floor)


def next_gain(tries: list[tuple[float, float]], target: float, start: float,
              model: Callable[[float], float] | None = None) -> float:
    """The next master gain from the (gain, output LUFS) pairs so far, kept within
    [start, start + MAX_BOOST_DB] (no gain below the first pass's can help: a limiter never adds loudness).

    Loudness rises with the gain by a LU per dB at most, so a step of the remaining error is the least
    that can reach the target, and the first correction takes exactly that. Below the target, later
    ones follow the line through the last two passes (limited loudness bends upwards, so this tends to
    step over the target and bracket it); inside a bracket, a power curve (:func:`power_fit`) through
    its ends, or its middle where that fails. BS.1770 gating can make loudness jump, so nothing here
    relies on the curve being smooth.

    With a ``model`` (predicted loudness per gain, e.g. :class:`avmix.audio.held.LevelModel`), the
    gain where the model, shifted by its miss on the last pass, meets the target; inside a bracket."""
    below = sorted(t for t in tries if t[1] < target)
    above = sorted(t for t in tries if t[1] >= target)
    if model is not None:
        guess = _calibrated(model, tries[-1], target, start, start + MAX_BOOST_DB)
        if guess is not None and below and above and not below[-1][0] < guess < above[0][0]:
            guess = None
        if guess is not None:
            return round(min(max(guess, start), start + MAX_BOOST_DB), 6)
    if below and above:
        (g1, l1), (g2, l2) = below[-1], above[0]
        guess = power_fit(g1, l1, g2, l2, target)
        if guess is None or not g1 < guess < g2:
            guess = (g1 + g2) / 2.0
    elif below:
        g1, l1 = below[-1]
        guess = g1 + (target - l1)
        if len(below) > 1 and l1 > below[-2][1]:
            g0, l0 = below[-2]
            guess = max(guess, g1 + (target - l1) * (g1 - g0) / (l1 - l0))
    else:
        g2, l2 = above[0]
        guess = g2 + (target - l2)
    return round(min(max(guess, start), start + MAX_BOOST_DB), 6)


def _calibrated(model: Callable[[float], float], last: tuple[float, float], target: float, lo: float,
                hi: float) -> float | None:
    """The gain in [lo, hi] at which model + (the last pass's measured - modelled loudness) is ``target``
    (bisection: the model rises with the gain); None when the model is not finite there."""
    miss = last[1] - model(last[0])
    return solve(model, target - miss, lo, hi) if math.isfinite(miss) else None


def solve(level: Callable[[float], float], target: float, lo: float, hi: float, *,
          tolerance: float = 0.002) -> float:
    """The gain in [lo, hi] where ``level`` (rising with the gain) reaches ``target`` (an end when it
    does not): regula falsi with the Illinois step, a few evaluations for a loudness curve."""
    f_lo, f_hi = level(lo) - target, level(hi) - target
    if not (math.isfinite(f_lo) and math.isfinite(f_hi)) or f_lo >= 0:
        return round(lo, 6)
    if f_hi <= 0:
        return round(hi, 6)
    side = 0
    for _ in range(40):
        m = lo - f_lo * (hi - lo) / (f_hi - f_lo)
        f = level(m) - target
        if abs(f) <= tolerance or hi - lo < 1e-6:
            return round(m, 6)
        if f < 0:
            lo, f_lo = m, f
            if side == -1:
                f_hi /= 2  # the same end kept twice: halve the other's weight
            side = -1
        else:
            hi, f_hi = m, f
            if side == 1:
                f_lo /= 2
            side = 1
    return round((lo + hi) / 2, 6)


def power_fit(g1: float, l1: float, g2: float, l2: float, target: float) -> float | None:
    """The gain (dB) at which ``power = a * 10^(gain/10) + b`` through (g1, l1) and (g2, l2) (dB, LUFS)
    reaches ``target``; None where that curve does not rise to it."""
    u1, u2 = 10.0 ** (g1 / 10.0), 10.0 ** (g2 / 10.0)
    p1, p2, pt = 10.0 ** (l1 / 10.0), 10.0 ** (l2 / 10.0), 10.0 ** (target / 10.0)
    if u1 == u2:
        return None
    a = (p2 - p1) / (u2 - u1)
    b = p1 - a * u1
    if a <= 0 or pt <= b:
        return None
    return 10.0 * math.log10((pt - b) / a)


def stuck(tries: list[tuple[float, float]], nxt: float) -> bool:
    """Whether another pass (at gain ``nxt``) is pointless: the search would repeat a gain already tried,
    or loudness fell as the gain rose (gating let near-silence in, so more gain only takes the output
    further off)."""
    gain, level = tries[-1]
    if nxt in {g for g, _ in tries}:
        return True
    return any(g < gain and lv > level for g, lv in tries[:-1])


def closest(tries: list[tuple[float, float]], target: float) -> float:
    """The gain of the pass whose loudness came closest to ``target``."""
    return min(tries, key=lambda t: abs(t[1] - target))[0]


def verdict(tries: list[tuple[float, float]], target: float, start: float, *, tolerance: float,
            final: bool, model: Callable[[float], float] | None = None) -> float | None:
    """After a pass (the last of ``tries``): None to keep it, else the gain to write next. Within
    ``tolerance`` (or not measurable) a pass is kept; when the search ends (``final``, or :func:`stuck`)
    the closest pass wins, written again if it is not this one; otherwise :func:`next_gain`."""
    gain, level = tries[-1]
    if not math.isfinite(level) or abs(level - target) <= tolerance:
        return None
    if any(g == gain for g, _ in tries[:-1]):  # the closest pass, written again: the search's choice
        return None
    nxt = None if final else next_gain(tries, target, start, model)  # a model makes it a solve: once
    if nxt is None or stuck(tries, nxt):
        best = closest(tries, target)
        return None if best == gain else best
    return nxt
