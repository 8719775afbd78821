"""`avmix align` on two 3-minute takes of one performance: accuracy and time, beside a plain peer.

    .venv/bin/python benchmarks/align.py [--runs 3]

The "performance" is the real recordings of tests/fixtures/real/ one after another (music, speech,
field, effects; 175 s) followed by three of them reversed (80 s), all at 48 kHz. Take A is a stereo
24-bit WAV at 48 kHz with noise 30 dB down. Each take B starts a known, fractional-millisecond time
later or earlier, is band-passed 120 Hz-6 kHz (zero-phase, so the known offset stays exact), 10 dB
quieter, with noise 15 dB down, resampled to 44.1 kHz and written as 16-bit FLAC.

The peer is what one writes by hand: both files read whole, B resampled to 48 kHz, mono, and
scipy.signal.correlate (FFT) at the full rate, arg-max to the nearest sample. Both run as processes
(interpreter start included), interleaved. Also timed: the align() call inside one process.

Then the confidence: for each real recording, three pairs of takes cut from it (noise 20, 5 and 0 dB
down, a causal 150 Hz-3.5 kHz band-pass, 15 dB less gain) and every pair of different recordings.
Last, reverberation: take B, then take A, convolved with a synthetic room response (3 ms to the
direct sound, then RT60 0.3-0.8 s of reflections 0 to 20 dB above it in energy), beside the error of
the strongest GCC-PHAT peak. Writes benchmarks/results-align.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy import signal

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import common  # noqa: E402
from common import DATA  # noqa: E402

from tests import real  # noqa: E402

RATE, RATE_B = 48000, 44100
START, LENGTH = 10.0, 180.0  # seconds of the performance where take A starts, and each take's length
OFFSETS = {"later": 367407 / RATE, "earlier": -207455 / RATE}  # 7654.3125 ms, -4321.979... ms
REVERSED = ("speech_instruct.flac", "music_morning_coffee.flac", "music_piano_notes.flac")

PEER = r"""
import sys, numpy as np, soundfile as sf, soxr
from scipy import signal
a, ra = sf.read(sys.argv[1], dtype="float32"); b, rb = sf.read(sys.argv[2], dtype="float32")
a = a.mean(axis=1) if a.ndim > 1 else a
b = b.mean(axis=1) if b.ndim > 1 else b
if rb != ra:
    b = soxr.resample(b, rb, ra)
r = signal.correlate(a, b, mode="full", method="fft")
print((int(np.argmax(r)) - (len(b) - 1)) / ra)
"""


def performance() -> np.ndarray:
    parts = []
    for path, _kind in real.all_recordings():
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        x = soxr.resample(x, sr, RATE) if sr != RATE else x
        parts.append(x / (np.sqrt(np.mean(x ** 2)) + 1e-9) * 0.1)  # similar levels, about -20 dBFS RMS
    for name in REVERSED:
        x, sr = sf.read(str(real.path(name)), dtype="float32", always_2d=True)
        x = soxr.resample(x.mean(axis=1), sr, RATE) if sr != RATE else x.mean(axis=1)
        parts.append(x[::-1] / (np.sqrt(np.mean(x ** 2)) + 1e-9) * 0.1)
    return np.concatenate(parts).astype(np.float64)


def noisy(x: np.ndarray, snr_db: float, rng: np.random.Generator, channels: int = 1) -> np.ndarray:
    level = np.sqrt(np.mean(x ** 2) / 10 ** (snr_db / 10))
    return np.stack([x + level * rng.standard_normal(len(x)) for _ in range(channels)], axis=1)


def make_takes() -> tuple[Path, dict[str, Path]]:
    DATA.mkdir(parents=True, exist_ok=True)
    src = performance()
    rng = np.random.default_rng(7)
    n = int(LENGTH * RATE)
    a0 = int(START * RATE)
    path_a = DATA / "align_take_a.wav"
    sf.write(str(path_a), np.clip(noisy(src[a0:a0 + n], 30, rng, channels=2), -1, 1), RATE, subtype="PCM_24")
    band = signal.butter(4, [120, 6000], "bandpass", fs=RATE, output="sos")
    takes = {}
    for name, offset in OFFSETS.items():
        b0 = a0 + int(round(offset * RATE))
        b = signal.sosfiltfilt(band, src[b0:b0 + n]) * 10 ** (-10 / 20)
        b = noisy(b, 15, rng)[:, 0]
        b = soxr.resample(b, RATE, RATE_B)
        takes[name] = DATA / f"align_take_b_{name}.flac"
        sf.write(str(takes[name]), np.clip(b, -1, 1), RATE_B, subtype="PCM_16")
    return path_a, takes


def confidences() -> dict:
    """Confidence and error for takes of one recording, and confidence for unrelated recordings."""
    from avmix.align import align

    band = signal.butter(4, [150, 3500], "bandpass", fs=RATE, output="sos")
    rng = np.random.default_rng(1)
    same, unrelated = [], []
    for path, kind in real.all_recordings():
        x, sr = sf.read(str(path), always_2d=True)
        x = soxr.resample(x.mean(axis=1), sr, RATE) if sr != RATE else x.mean(axis=1)
        for a0, b0, snr in [(0.5, 1.7345, 20), (2.2, 0.4, 5), (1.0, 1.0005, 0)]:
            n = int(min(len(x) / RATE - max(a0, b0) - 0.1, 25) * RATE)
            a = noisy(x[int(a0 * RATE):][:n], 20, rng)[:, 0]
            b = noisy(signal.sosfilt(band, x[int(b0 * RATE):][:n - RATE // 4]), snr, rng)[:, 0] * 10 ** (-15 / 20)
            pa, pb = DATA / "align_conf_a.wav", DATA / "align_conf_b.wav"
            sf.write(str(pa), a.astype(np.float32), RATE)
            sf.write(str(pb), b.astype(np.float32), RATE)
            m = align([pa, pb])[1]
            want = (int(b0 * RATE) - int(a0 * RATE)) / RATE
            err = None if m.offset is None else round((m.offset - want) * 1000, 4)
            same.append({"file": path.name, "kind": kind, "snr_db": snr, "confidence": m.confidence, "error_ms": err})
            print(f"  {path.name:26s} noise {snr:2d} dB down: confidence {m.confidence:.2f}, error "
                  + ("no match" if err is None else f"{err:+.3f} ms"))
    recs = [p for p, _ in real.all_recordings()]
    for i, p in enumerate(recs):
        for q in recs[i + 1:]:
            unrelated.append({"a": p.name, "b": q.name, "confidence": align([p, q])[1].confidence})
    top = sorted(unrelated, key=lambda u: -u["confidence"])[:3]
    print(f"  unrelated pairs: {len(unrelated)}, confidence max {top[0]['confidence']:.2f}, "
          f"mean {np.mean([u['confidence'] for u in unrelated]):.2f}; highest: "
          + ", ".join(f"{u['a']}/{u['b']} {u['confidence']:.2f}" for u in top))
    return {"same": same, "unrelated": unrelated}


DIRECT_DELAY = 0.003  # seconds: the far microphone is about a metre further from the source


def reverberant() -> list[dict]:
    """Error and confidence when one take is reverberant, from mild rooms to a far microphone in a
    live hall; the far take is B, then the reference A. Beside it, the strongest peak's error."""
    from avmix.align import align

    rng = np.random.default_rng(3)
    rows = []
    for path, kind in real.all_recordings():
        if path.name in ("effects_tuxracer.flac", "music_electronic.flac", "speech_congrats.flac"):
            continue  # one of each kind is enough here
        x, sr = sf.read(str(path), always_2d=True)
        x = soxr.resample(x.mean(axis=1), sr, RATE) if sr != RATE else x.mean(axis=1)
        for far in ("B", "A"):
            for rt60, drr in ((0.4, 0), (0.4, -6), (0.8, -6), (0.8, -12), (0.3, -15), (0.3, -20), (0.8, -20)):
                n = int(min(len(x) / RATE - 2.4, 15) * RATE)
                a = noisy(x[RATE:RATE + n], 25, rng)[:, 0]
                b0 = int(2.2345 * RATE)
                b = noisy(x[b0:b0 + n - RATE // 4], 15, rng)[:, 0] * 10 ** (-10 / 20)
                want = (b0 - RATE) / RATE
                if far == "B":
                    b = signal.fftconvolve(b, real.room(rt60, drr, rng, rate=RATE, delay=DIRECT_DELAY))[:len(b)]
                    want -= DIRECT_DELAY
                else:
                    a = signal.fftconvolve(a, real.room(rt60, drr, rng, rate=RATE, delay=DIRECT_DELAY))[:len(a)]
                    want += DIRECT_DELAY
                pa, pb = DATA / "align_room_a.wav", DATA / "align_room_b.wav"
                sf.write(str(pa), a.astype(np.float32), RATE)
                sf.write(str(pb), b.astype(np.float32), RATE)
                m = align([pa, pb])[1]
                err = None if m.offset is None else round((m.offset - want) * 1000, 3)
                plain = round((real.strongest_lag(a, b, rate=RATE) - want) * 1000, 3)
                rows.append({"file": path.name, "kind": kind, "far": far, "rt60_s": rt60, "reflections_db": -drr,
                             "confidence": m.confidence, "error_ms": err, "strongest_peak_error_ms": plain})
                print(f"  {path.name:26s} far {far}, RT60 {rt60} s, reflections {-drr:2d} dB over direct: confidence "
                      f"{m.confidence:.2f}, error " + ("no match" if err is None else f"{err:+.3f} ms")
                      + f" (strongest peak {plain:+.3f} ms)")
    rev = [r for r in rows if r["reflections_db"] >= 15]
    ok = [r for r in rev if r["error_ms"] is not None and abs(r["error_ms"]) < 1]
    was = [r for r in rev if abs(r["strongest_peak_error_ms"]) < 1]
    print(f"  reflections 15-20 dB over direct: {len(ok)} of {len(rev)} within 1 ms "
          f"({sum(r['error_ms'] is None for r in rev)} no match); the strongest peak: {len(was)} of {len(rev)}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; making two {LENGTH:.0f} s takes from the real recordings ...",
          flush=True)
    path_a, takes = make_takes()
    common.warm(path_a, *takes.values())
    from avmix.align import align

    results = {"takes_s": LENGTH, "runs": args.runs, "load_average_at_start": round(os.getloadavg()[0], 2),
               "jobs": {}}
    for name, path_b in takes.items():
        want = OFFSETS[name]
        print(f"\nB starts {want * 1000:+.4f} ms from A ({name}):")
        t0, c0 = time.perf_counter(), time.process_time()
        m = align([path_a, path_b])[1]
        inproc, inproc_cpu = time.perf_counter() - t0, time.process_time() - c0
        out = subprocess.run(common.avmix_cmd() + ["align", str(path_a), str(path_b), "--json"],
                             capture_output=True, text=True)
        got = json.loads(out.stdout)["tracks"][1]["offset"] if out.returncode == 0 else None
        peer = subprocess.run([sys.executable, "-c", PEER, str(path_a), str(path_b)], capture_output=True, text=True)
        peer_got = float(peer.stdout) if peer.returncode == 0 else None
        cmds = {"avmix align": common.avmix_cmd() + ["align", str(path_a), str(path_b)],
                "scipy correlate, full rate": [sys.executable, "-c", PEER, str(path_a), str(path_b)]}
        timing = common.run_side_by_side(cmds, args.runs)
        err = None if got is None else (got - want) * 1000
        peer_err = None if peer_got is None else (peer_got - want) * 1000
        job = {"want_s": want, "avmix_offset_s": got, "avmix_error_ms": err, "confidence": m.confidence,
               "avmix_in_process_s": round(inproc, 3), "avmix_in_process_cpu_s": round(inproc_cpu, 3),
               "peer_offset_s": peer_got, "peer_error_ms": peer_err,
               "timing": timing}
        results["jobs"][name] = job
        av, peer_t = timing["avmix align"], timing["scipy correlate, full rate"]
        print(f"  avmix align:   error {err:+.4f} ms, confidence {m.confidence:.2f}, wall {av['wall_s']:.2f} s, "
              f"CPU {av['cpu_s']} s as a command ({inproc:.2f} s wall, {inproc_cpu:.2f} s CPU inside the "
              f"process), {av['peak_mb']:.0f} MB")
        print(f"  scipy correlate at 48 kHz: error {peer_err:+.4f} ms, wall {peer_t['wall_s']:.2f} s, "
              f"CPU {peer_t['cpu_s']} s, {peer_t['peak_mb']:.0f} MB  "
              f"(avmix/peer wall {av['wall_s'] / peer_t['wall_s']:.2f})")
    print("\nconfidence, takes of one recording and unrelated recordings:")
    results["confidence"] = confidences()
    print("\nreverberant takes (the far one B, then A):")
    results["reverberation"] = reverberant()
    (HERE / "results-align.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {HERE / 'results-align.json'}")


if __name__ == "__main__":
    main()
