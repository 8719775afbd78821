"""Measuring a finished mix for reference matching: level, dynamics, tone and width, streamed in blocks.

:class:`Analyzer` takes float32 (n, channels) blocks of any length and keeps only running sums, so a
file of any length is measured in flat memory (about 10 MB for an hour):

- integrated loudness (BS.1770, :mod:`avmix.audio.loudness`) and loudness range (EBU Tech 3342, from
  the same meter's 100 ms steps);
- per hop of ``HOP`` samples, the mean square and the sample peak (two float32 numbers): crest factor
  is computed from them, and the dynamics match simulates its gain curve on them;
- the long-term average spectrum of mid and side (Hann frames side by side). Each frame's power
  spectra are added to a histogram bin of the frame's level (1 dB wide), so the *loud parts* can be
  chosen once the whole file's level is known (a BS.1770-style relative gate) without keeping frames.

Mid is (L+R)/2 and side (L-R)/2 for stereo; mono and more than two channels have mid only (the mean).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from avmix.audio.loudness import LoudnessMeter, loudness_range, short_term
from avmix.progress import ProgressFn, report

HOP = 512  # samples per dynamics hop (a divisor of the engine's block)
ABS_GATE_DB = -70.0  # dBFS: frames below are silence
REL_GATE_DB = -15.0  # dB under the power mean of the non-silent frames: the "loud parts"
LEVELS = np.arange(-100, 21)  # level histogram bins, dBFS (lower edges)
CREST_S = 0.4  # crest factor is measured in blocks of this length
OCTAVES_HZ = 44.2 * 2.0 ** (np.arange(18) / 2)  # edges of the per-frame band powers (half octaves, 44 Hz .. 11 kHz)
BAND_EDGES_HZ = (200.0, 1000.0, 5000.0)  # broad bands for width: low | low-mid | high-mid | high
ROLLOFF = 0.85  # spectral roll-off: the frequency under which this share of the power lies
MIN_SECONDS = 0.4  # shorter references cannot be measured (one BS.1770 gating block)
DYNAMICS_SECONDS = 3.0  # shorter ones have no loudness range: the dynamics are not matched


def frame_size(sample_rate: int) -> int:
    """FFT frame of the spectrum analysis: the power of two nearest 85 ms (4096 at 44.1 and 48 kHz)."""
    return 1 << max(8, int(round(math.log2(sample_rate * 0.085))))


def mid_side(block: np.ndarray) -> np.ndarray:
    """(n, 2) mid and side of a stereo block, or (n, 1) mid (the channel mean) of any other."""
    if block.shape[1] == 2:
        m = (block[:, 0] + block[:, 1]) * np.float32(0.5)
        s = (block[:, 0] - block[:, 1]) * np.float32(0.5)
        return np.stack([m, s], axis=1)
    return block.mean(axis=1, keepdims=True, dtype=np.float32)


@dataclass
class Measurement:
    """What :class:`Analyzer` found. Spectra are mean power per rfft bin of the loud frames."""

    sample_rate: int
    channels: int
    frames: int
    lufs: float
    lra: float
    crest_db: float
    peak: float  # linear sample peak
    freqs: np.ndarray = field(repr=False)
    mid: np.ndarray = field(repr=False)
    side: np.ndarray | None = field(repr=False)  # None: no side signal (mono or surround)
    hop_ms: np.ndarray = field(repr=False)  # mean square per HOP samples (over channels)
    hop_peak: np.ndarray = field(repr=False)  # sample peak per HOP samples
    frame_bands: np.ndarray = field(repr=False)  # (frames, k, octave bands) power per spectrum frame
    frame_hop: int = 0  # samples between spectrum frames

    def spectrum_only(self) -> "Measurement":
        """This measurement without its per-hop and per-frame arrays (kept in bulk, e.g. one per track)."""
        empty = np.zeros(0, np.float32)
        return dataclasses.replace(self, hop_ms=empty, hop_peak=empty,
                                   frame_bands=np.zeros((0,) + self.frame_bands.shape[1:], np.float32))

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    @property
    def silent(self) -> bool:
        return not math.isfinite(self.lufs)

    @property
    def total(self) -> np.ndarray:
        return self.mid if self.side is None else self.mid + self.side

    def side_mid(self, lo: float = 0.0, hi: float = math.inf) -> float | None:
        """Side to mid energy ratio between ``lo`` and ``hi`` Hz (None without a side signal or mid)."""
        if self.side is None:
            return None
        sel = (self.freqs >= lo) & (self.freqs < hi)
        m = float(self.mid[sel].sum())
        return float(self.side[sel].sum()) / m if m > 0 else None

    def spectral(self) -> dict[str, float | None]:
        """Centroid, bandwidth, roll-off (Hz) and flatness (0..1) of the loud parts' spectrum."""
        p = self.total[1:].astype(np.float64)  # without DC
        f = self.freqs[1:]
        s = float(p.sum())
        if s <= 0:
            return {"centroid_hz": None, "bandwidth_hz": None, "rolloff_hz": None, "flatness": None}
        c = float((f * p).sum() / s)
        bw = math.sqrt(float(((f - c) ** 2 * p).sum() / s))
        roll = float(f[min(np.searchsorted(np.cumsum(p), ROLLOFF * s), len(f) - 1)])
        floor = s / len(p) * 1e-10
        flat = float(np.exp(np.mean(np.log(p + floor))) / (s / len(p)))
        return {"centroid_hz": c, "bandwidth_hz": bw, "rolloff_hz": roll, "flatness": flat}

    def summary(self) -> dict[str, float | None]:
        """The figures ``--json`` reports (None where undefined: silence, no side signal)."""
        sp = self.spectral()
        fin = (lambda v: None if v is None or not math.isfinite(v) else round(float(v), 3))
        return {"lufs": fin(self.lufs), "lra": fin(self.lra), "crest_db": fin(self.crest_db),
                "centroid_hz": fin(sp["centroid_hz"]), "side_mid": fin(self.side_mid())}


class Analyzer:
    """Feed float32 (n, channels) blocks with :meth:`add`, then :meth:`result` once."""

    def __init__(self, sample_rate: int, channels: int, *, bands: bool = True):
        """``bands``: keep the per-frame band powers (what the dynamics search needs of a mix; 13 MB an
        hour); without them the measurement is only for reporting."""
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        self._keep_bands = bands
        self.nfft = frame_size(self.sample_rate)
        self.step = self.nfft  # frames side by side: a long-term average needs no overlap, and half the FFTs
        self.meter = LoudnessMeter(self.sample_rate, self.channels)  # shared with an output's loudness
        self._win = np.hanning(self.nfft + 1)[:-1].astype(np.float32)  # periodic
        self._w2 = float((self._win.astype(np.float64) ** 2).sum())
        k = 2 if self.channels == 2 else 1
        bins = self.nfft // 2 + 1
        self._spec = np.zeros((len(LEVELS), k, bins))  # summed power spectra per level bin
        self._count = np.zeros(len(LEVELS))
        self._power = np.zeros(len(LEVELS))  # summed frame power per level bin (for the gate)
        self._pending = np.zeros((0, k), np.float32)  # mid/side not yet in a whole frame
        f = np.fft.rfftfreq(self.nfft, 1.0 / self.sample_rate)
        octave = np.searchsorted(OCTAVES_HZ, f, side="right")  # band of each bin (ascending)
        self._nbands = len(OCTAVES_HZ) + 1
        self._slices = [(int(np.searchsorted(octave, j)), int(np.searchsorted(octave, j, side="right")))
                        for j in range(self._nbands)]
        self._fb: list[np.ndarray] = []  # per frame band powers, float32
        self._hop_rest = np.zeros((0, self.channels), np.float32)
        self._ms: list[np.ndarray] = []
        self._pk: list[np.ndarray] = []
        self._frames = 0
        self._peak = 0.0

    def add(self, block: np.ndarray) -> None:
        block = np.asarray(block, np.float32)
        if not len(block):
            return
        self._frames += len(block)
        self.meter.add(block)
        self._peak = max(self._peak, float(np.abs(block).max()))
        self._hops(block)
        self._spectra(mid_side(block))

    def _hops(self, block: np.ndarray) -> None:
        x = np.concatenate([self._hop_rest, block]) if len(self._hop_rest) else block
        k = len(x) // HOP
        if k:
            h = x[:k * HOP].reshape(k, HOP * self.channels)
            self._ms.append(np.einsum("ij,ij->i", h, h, dtype=np.float64).astype(np.float32) / (HOP * self.channels))
            self._pk.append(np.abs(h).max(axis=1))
        self._hop_rest = x[k * HOP:].copy()

    def _spectra(self, ms: np.ndarray) -> None:
        x = np.concatenate([self._pending, ms]) if len(self._pending) else ms
        n, half = self.nfft, self.step
        k = (len(x) - n) // half + 1 if len(x) >= n else 0
        if k:
            xt = np.ascontiguousarray(x.T)  # (k, n): frames are strided views of each row
            for c in range(xt.shape[0]):
                fr = as_strided(xt[c], shape=(k, n), strides=(half * 4, 4)) * self._win
                power = np.einsum("ij,ij->i", fr, fr) / self._w2
                spec = np.fft.rfft(fr, axis=1)
                spec = spec.real ** 2 + spec.imag ** 2  # (frames, bins) float32
                if c == 0:
                    total, specs = power, [spec]
                else:
                    total = total + power
                    specs.append(spec)
            if self._keep_bands:
                fb = np.zeros((k, len(specs), self._nbands), np.float32)
                for c, spec in enumerate(specs):
                    for j, (lo, hi) in enumerate(self._slices):
                        fb[:, c, j] = spec[:, lo:hi].sum(axis=1)
                self._fb.append(fb / np.float32(self._w2))
            lvl = 10.0 * np.log10(np.maximum(total.astype(np.float64), 1e-30))
            b = np.clip(np.floor(lvl).astype(np.int64), LEVELS[0], LEVELS[-1]) - LEVELS[0]
            for j in np.flatnonzero(np.bincount(b)):  # a few level bins per block (np.unique imports numpy.ma)
                sel = b == j
                for c, spec in enumerate(specs):
                    self._spec[j, c] += spec[sel].sum(axis=0, dtype=np.float64)
                self._count[j] += sel.sum()
                self._power[j] += float(total[sel].sum(dtype=np.float64))
        self._pending = x[k * half:].copy()

    def result(self) -> Measurement:
        sr = self.sample_rate
        if len(self._pending) and self._count.sum() == 0:
            # shorter than one frame: measure it zero-padded as one frame
            pad = np.zeros((self.nfft - len(self._pending), self._pending.shape[1]), np.float32)
            self._spectra_once(np.concatenate([self._pending, pad]))
        lufs = self.meter.integrated()
        lra = loudness_range(short_term(self.meter)) if self._frames >= DYNAMICS_SECONDS * sr else 0.0
        ms, pk = self._hop_arrays()
        spec = self._loud_spectrum()
        freqs = np.fft.rfftfreq(self.nfft, 1.0 / sr)
        return Measurement(sample_rate=sr, channels=self.channels, frames=self._frames, lufs=lufs, lra=lra,
                           crest_db=crest_db(ms, pk, sr), peak=self._peak, freqs=freqs, mid=spec[0],
                           side=spec[1] if len(spec) == 2 else None, hop_ms=ms, hop_peak=pk,
                           frame_bands=(np.concatenate(self._fb) if self._fb
                                        else np.zeros((0, self._spec.shape[1], self._nbands), np.float32)),
                           frame_hop=self.step)

    def _spectra_once(self, frame: np.ndarray) -> None:
        self._pending = np.zeros((0, frame.shape[1]), np.float32)
        self._spectra(frame)

    def _hop_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        ms, pk = list(self._ms), list(self._pk)
        r = self._hop_rest
        if len(r):  # the last, partial hop
            ms.append(np.array([np.mean(r.astype(np.float64) ** 2)], np.float32))
            pk.append(np.array([np.abs(r).max()], np.float32))
        if not ms:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        return np.concatenate(ms), np.concatenate(pk)

    def _loud_spectrum(self) -> np.ndarray:
        """(k, bins) mean power spectra of the frames that pass the absolute and relative gates."""
        lv = LEVELS + 0.5
        ok = (lv > ABS_GATE_DB) & (self._count > 0)
        if not ok.any():
            return np.zeros(self._spec.shape[1:])
        mean = 10.0 * math.log10(self._power[ok].sum() / self._count[ok].sum())
        loud = ok & (lv > mean + REL_GATE_DB)
        if not loud.any():
            loud = ok
        return self._spec[loud].sum(axis=0) / self._count[loud].sum()


def measure(blocks: Iterable[np.ndarray], sample_rate: int, channels: int, *, bands: bool = True,
            progress: ProgressFn = None, stage: str = "measure", total: int = 0) -> Measurement:
    """A whole stream of (n, channels) blocks measured, reported as ``stage`` of ``total`` frames."""
    a = Analyzer(sample_rate, channels, bands=bands)
    done = 0
    for b in blocks:
        a.add(b)
        done += len(b)
        report(progress, stage, done, total)
    return a.result()


def gated(levels_db: np.ndarray, rel_db: float = -20.0) -> np.ndarray:
    """Mask of levels above the absolute gate and ``rel_db`` under the power mean of those."""
    ok = levels_db > ABS_GATE_DB
    if not ok.any():
        return ok
    mean = 10.0 * np.log10(np.mean(10.0 ** (levels_db[ok] / 10.0)))
    return ok & (levels_db > mean + rel_db)


def blocks_of(hop_ms: np.ndarray, hop_peak: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean square, peak) per CREST_S block of hops (the last partial block dropped unless it is all)."""
    b = max(1, int(round(CREST_S * sample_rate / HOP)))
    k = len(hop_ms) // b
    if k == 0:
        return hop_ms[None, :].mean(axis=1), hop_peak[None, :].max(axis=1, initial=0.0)
    return hop_ms[:k * b].reshape(k, b).mean(axis=1), hop_peak[:k * b].reshape(k, b).max(axis=1)


def crest_db(hop_ms: np.ndarray, hop_peak: np.ndarray, sample_rate: int) -> float:
    """Mean crest factor (dB, sample peak over RMS) of the loud 0.4 s blocks; nan for silence."""
    if len(hop_ms) == 0:
        return math.nan
    ms, pk = blocks_of(hop_ms, hop_peak, sample_rate)
    with np.errstate(divide="ignore", invalid="ignore"):
        lvl = 10.0 * np.log10(ms)
        keep = gated(lvl)
        if not keep.any():
            return math.nan
        return float(np.mean(20.0 * np.log10(pk[keep]) - lvl[keep]))
