"""Synthesise the example tracks in this directory (CC0; see README.md).

    python examples/make_examples.py [OUTDIR]

Four 8-second tracks, deterministic (fixed seeds), small enough to commit:
  drums.wav  120 BPM kick / snare / hi-hat loop     48 kHz mono 16-bit
  pad.wav    Am-F-C-G synth pad with a plucked bass 48 kHz mono 16-bit
  birds.wav  groups of rising chirps with pauses    44.1 kHz mono 16-bit
  rain.flac  soft noise bed with droplets           32 kHz mono 16-bit FLAC
The different rates and formats are on purpose: avmix resamples and decodes them as any user file.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SECONDS = 8.0
BPM = 120.0


def _t(n: int, sr: int) -> np.ndarray:
    return np.arange(n) / sr


def _place(out: np.ndarray, sound: np.ndarray, at_s: float, sr: int) -> None:
    i = int(round(at_s * sr))
    n = min(len(sound), len(out) - i)
    if n > 0:
        out[i:i + n] += sound[:n]


def drums(sr: int = 48000) -> np.ndarray:
    rng = np.random.default_rng(1)
    out = np.zeros(int(SECONDS * sr))
    beat = 60.0 / BPM
    t = _t(int(0.4 * sr), sr)
    freq = 50 + 100 * np.exp(-t / 0.03)  # kick: a falling sine
    kick = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.12)
    ts = _t(int(0.25 * sr), sr)
    snare = (0.6 * rng.uniform(-1, 1, len(ts)) + 0.5 * np.sin(2 * np.pi * 190 * ts)) * np.exp(-ts / 0.06)
    th = _t(int(0.06 * sr), sr)
    hat = np.diff(rng.uniform(-1, 1, len(th) + 1)) * np.exp(-th / 0.012)  # differenced noise: bright
    for k in range(int(SECONDS / beat)):
        _place(out, 0.9 * kick if k % 2 == 0 else 0.55 * snare, k * beat, sr)
        _place(out, 0.25 * hat, k * beat + beat / 2, sr)
    return out


def pad(sr: int = 48000) -> np.ndarray:
    chords = [(57, 60, 64), (53, 57, 60), (48, 52, 55), (55, 59, 62)]  # Am F C G (MIDI)
    seg = SECONDS / len(chords)
    n_seg = int(seg * sr)
    t = _t(n_seg, sr)
    env = np.minimum(1, t / 0.4) * np.minimum(1, (seg - t) / 0.3)  # slow attack, short release
    out = []
    for chord in chords:
        x = np.zeros(n_seg)
        for note in chord:
            f = 440 * 2 ** ((note - 69) / 12)
            for h in range(1, 7):  # a soft saw: harmonics falling off fast
                x += np.sin(2 * np.pi * f * h * t * (1 + 0.002 * (h % 2))) / h ** 1.6
        root = 440 * 2 ** ((chord[0] - 12 - 69) / 12)
        for b in range(4):  # one plucked bass note per beat
            tb = t - b * seg / 4
            on = tb >= 0
            x[on] += 2.2 * np.sin(2 * np.pi * root * tb[on]) * np.exp(-tb[on] / 0.25)
        out.append(0.09 * x * env)
    return np.concatenate(out)


def birds(sr: int = 44100) -> np.ndarray:
    rng = np.random.default_rng(2)
    out = np.zeros(int(SECONDS * sr))
    at = 0.3
    while at < SECONDS - 0.5:
        for _ in range(rng.integers(2, 5)):  # a group of chirps
            dur = rng.uniform(0.06, 0.12)
            t = _t(int(dur * sr), sr)
            f0, f1 = rng.uniform(2200, 3000), rng.uniform(3800, 5200)
            freq = f0 + (f1 - f0) * (t / dur) ** 0.7 + 120 * np.sin(2 * np.pi * 40 * t)
            chirp = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.sin(np.pi * t / dur) ** 2
            _place(out, 0.45 * chirp, at, sr)
            at += dur + rng.uniform(0.04, 0.1)
        at += rng.uniform(0.5, 1.3)  # a pause between groups
    return out


def rain(sr: int = 32000) -> np.ndarray:
    rng = np.random.default_rng(3)
    n = int(SECONDS * sr)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec *= 1 / np.sqrt(np.maximum(f, 200)) * (f < 9000)  # pink-ish, no hiss above 9 kHz
    bed = np.fft.irfft(spec, n)
    bed *= 0.12 / np.sqrt(np.mean(bed ** 2))
    td = _t(int(0.03 * sr), sr)
    for at in np.sort(rng.uniform(0, SECONDS - 0.05, 60)):  # droplets: short resonant pings
        ping = np.sin(2 * np.pi * rng.uniform(1500, 3500) * td) * np.exp(-td / 0.004)
        _place(bed, rng.uniform(0.1, 0.35) * ping, at, sr)
    return bed * np.minimum(1, _t(n, sr) / 1.0)  # fade in over the first second


TRACKS = {"drums.wav": (drums, 48000), "pad.wav": (pad, 48000), "birds.wav": (birds, 44100),
          "rain.flac": (rain, 32000)}


def main(outdir: str | None = None) -> None:
    out = Path(outdir) if outdir else Path(__file__).resolve().parent
    for name, (fn, sr) in TRACKS.items():
        x = fn(sr)
        x = np.clip(x, -1, 1).astype(np.float32)[:, None]
        sf.write(str(out / name), x, sr, subtype="PCM_16")
        print(f"{out / name}: {len(x) / sr:.1f} s, {sr} Hz, peak {20 * np.log10(np.abs(x).max()):.1f} dBFS")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
