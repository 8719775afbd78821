"""Reference matching (--reference) against matchering, on pairs made here, in one run.

Each pair: a set of three tracks (drums, bass, keys) mixed plainly, and a reference made from *other*
material (another track set, other tempo, key and balance) given a known treatment: an EQ tilt,
widening or narrowing, compression, a level change, or several at once. For every pair:

- ``unmatched``: the distance from the plain mix to the reference;
- ``avmix``: ``avmix mix`` of the tracks with ``--reference`` (composing included in its time);
- ``matchering``: matchering 2 run on the plain mix (a separate process in its own venv: it is GPLv3
  and never imported by avmix; mixing the tracks is not counted in its time).

Distance: the mean relative error over eight features (in the spirit of automix-toolkit's
mixing-style evaluation): integrated loudness and loudness range (ffmpeg's ebur128), crest factor
(sample peak over RMS per 2048-sample frame, mean dB over frames above -60 dBFS), spectral centroid,
bandwidth, roll-off (85 %) and flatness (librosa, mono, frame means), and the side/mid energy ratio.
Relative error is |out - ref| / max(|ref|, floor), the floor keeping features near 0 (LRA, side/mid,
flatness) from dividing by nothing: 1 LU, 1 LU, 1 dB, 100 Hz, 100 Hz, 100 Hz, 0.01, 0.01.

    .venv/bin/python benchmarks/reference.py [--runs 3]       # 9 pairs, matchering if found
    .venv/bin/python benchmarks/reference.py --memory         # also a 2 x 60 min mix with --reference
    python3 -m venv /tmp/mgvenv && /tmp/mgvenv/bin/pip install matchering   # the peer (--matchering)
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SR = 48000
SECONDS = 60.0
OUT = common.DATA / "reference"
FLOORS = {"lufs": 1.0, "lra": 1.0, "crest_db": 1.0, "centroid": 100.0, "bandwidth": 100.0, "rolloff": 100.0,
          "flatness": 0.01, "side_mid": 0.01}
MATCHERING = """
import sys, matchering as mg
mg.log(lambda *a: None)
mg.process(target=sys.argv[1], reference=sys.argv[2], results=[mg.pcm24(sys.argv[3])])
"""


# ------------------------------------------------------------------------------------------ material

def track_set(seed: int, seconds: float = SECONDS) -> list[np.ndarray]:
    """Drums, bass and keys (stereo float32) of one song: tempo, key and panning from the seed."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    bpm = rng.uniform(84, 132)
    beat = 60.0 / bpm
    root = 55.0 * 2 ** (rng.integers(0, 12) / 12)
    # drums: kick on the beat, snare-like noise on 2 and 4, hats every eighth
    kick = np.sin(2 * np.pi * (50 + 60 * np.exp(-(t % beat) * 30)) * (t % beat)) * np.exp(-(t % beat) * 9)
    bar_pos = t % (2 * beat)
    snare = rng.standard_normal(n) * np.exp(-np.maximum(bar_pos - beat, 0) * 25) * (bar_pos >= beat)
    hat = np.diff(rng.standard_normal(n + 1)) * np.exp(-(t % (beat / 2)) * 60) * 0.5
    pan = rng.uniform(0.3, 0.7)
    drums = np.stack([kick * 0.6 + snare * 0.25 * pan + hat * 0.2,
                      kick * 0.6 + snare * 0.25 * (1 - pan) + hat * 0.2 * 0.7], 1)
    # bass: a root note per bar, saw-ish
    bar = (t // (4 * beat)).astype(int)
    f = root * 2 ** (np.array([0, 5, 7, 3])[bar % 4] / 12)
    ph = 2 * np.pi * np.cumsum(f) / SR
    b = sum(np.sin(k * ph) / k for k in range(1, 6)) * 0.3 * (1 - np.exp(-(t % beat) * 40))
    bass = np.stack([b, b], 1)
    # keys: a chord per bar, two detuned voices, wide
    chord = [2 ** (i / 12) for i in (12, 16, 19, 24)]
    env = 0.6 + 0.4 * np.exp(-(t % (4 * beat)) * 1.2)
    left = sum(np.sin(2 * np.pi * f * c * t) for c in chord) / 4 * env
    right = sum(np.sin(2 * np.pi * f * c * 1.003 * t + 0.5) for c in chord) / 4 * env
    keys = np.stack([left, right], 1) * 0.25
    gains = 10 ** (rng.uniform(-4, 2, 3) / 20)
    # an arrangement: every 8 bars each part moves between -9 and 0 dB (0.5 s ramps), as songs have
    # sections; this gives the loudness range of real music (several LU) instead of a steady loop
    sec = (t // (32 * beat)).astype(int)
    out = []
    for x, g in zip((drums, bass, keys), gains):
        lv = rng.uniform(-9, 0, sec.max() + 1)[sec]
        k = int(0.5 * SR)
        c = np.concatenate([[0.0], np.cumsum(np.pad(lv, (k // 2, k - k // 2 - 1), mode="edge"))])
        env = (c[k:] - c[:-k]) / k  # a moving average (np.convolve would take k x n steps)
        out.append((x * g * (10 ** (env / 20))[:, None]).astype(np.float32))
    return out


def tilt(x: np.ndarray, db_per_octave: float) -> np.ndarray:
    from avmix.audio import match
    pts = match._points(SR)
    h = match.fir(pts, np.clip(db_per_octave * np.log2(pts / 1000.0), -12, 12), SR, 8192)
    return np.stack([np.convolve(x[:, c], h)[4096:4096 + len(x)] for c in range(2)], 1)


def width(x: np.ndarray, side_gain: float) -> np.ndarray:
    m, s = (x[:, 0] + x[:, 1]) / 2, (x[:, 0] - x[:, 1]) / 2 * side_gain
    return np.stack([m + s, m - s], 1)


def compress(x: np.ndarray, ratio: float = 4.0, threshold_db: float = -24.0) -> np.ndarray:
    """A feed-forward RMS compressor (5 ms attack, 80 ms release) with make-up to the input's RMS."""
    from scipy.signal import lfilter
    p = (x ** 2).mean(axis=1)
    env = lfilter([1 - math.exp(-1 / (0.01 * SR))], [1, -math.exp(-1 / (0.01 * SR))], p)
    lvl = 10 * np.log10(env + 1e-12)
    g_db = np.minimum(0.0, (threshold_db - lvl) * (1 - 1 / ratio))
    # attack/release smoothing of the gain
    a_att, a_rel = math.exp(-1 / (0.005 * SR)), math.exp(-1 / (0.08 * SR))
    g = np.empty_like(g_db)
    prev = 0.0
    for i, v in enumerate(g_db):  # slow, but only the benchmark's inputs
        a = a_att if v < prev else a_rel
        prev = v + (prev - v) * a
        g[i] = prev
    y = x * (10 ** (g / 20))[:, None]
    return y * math.sqrt((x ** 2).mean() / max((y ** 2).mean(), 1e-20))


def to_lufs(x: np.ndarray, lufs: float, peak: float = 0.99) -> np.ndarray:
    from avmix.audio.loudness import integrated_loudness
    y = x * 10 ** ((lufs - integrated_loudness(x, SR)) / 20)
    return np.clip(y, -peak, peak)  # a hard clip: as loud masters are, crudely


TREATMENTS = {
    "dark (-3 dB/oct)": lambda x: to_lufs(tilt(x, -3.0), -16),
    "bright (+2 dB/oct)": lambda x: to_lufs(tilt(x, 2.0), -16),
    "wide (side +6 dB)": lambda x: to_lufs(width(x, 2.0), -16),
    "narrow (side -10 dB)": lambda x: to_lufs(width(x, 0.32), -16),
    "compressed, -9 LUFS": lambda x: to_lufs(compress(x), -9),
    "quiet (-26 LUFS)": lambda x: to_lufs(x, -26),
    "dark+narrow+loud": lambda x: to_lufs(compress(width(tilt(x, -2.0), 0.5)), -10),
}


# real recordings (tests/fixtures/real/): tracks, and a reference made from another recording
REAL_PAIRS = {
    "real: beat+voice / coffee": (("music_electronic.flac", "speech_instruct.flac"), "music_morning_coffee.flac",
                                   lambda x: x),
    "real: piano+birds / beat": (("music_piano_notes.flac", "field_birds.flac"), "music_electronic.flac",
                                 lambda x: to_lufs(width(tilt(x, 1.5), 1.0), -12)),
}


def real_pair(name: str, d: Path) -> tuple[list[Path], Path]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import real
    from avmix.audio.io import open_audio
    names, ref_name, treat = REAL_PAIRS[name]
    x = open_audio(real.path(ref_name)).read(sample_rate=SR, channels=2).astype(np.float64)
    ref = d / "ref.wav"
    sf.write(ref, treat(x).astype(np.float32), SR, subtype="PCM_24")
    return [real.path(n) for n in names], ref


# ------------------------------------------------------------------------------------------ features

def ebur128_i_lra(path: Path) -> tuple[float, float]:
    proc = subprocess.run([common.ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", str(path),
                           "-af", "ebur128", "-f", "null", "-"], capture_output=True, text=True)
    s = proc.stderr.rsplit("Summary:", 1)[-1]
    import re
    i = re.search(r"I:\s+(-?[\d.]+) LUFS", s)
    lra = re.search(r"LRA:\s+(-?[\d.]+) LU", s)
    return float(i.group(1)), float(lra.group(1))


def features(path: Path) -> dict[str, float]:
    import librosa
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if x.shape[1] == 1:  # a mono output: no side
        x = np.repeat(x, 2, axis=1)
    lufs, lra = ebur128_i_lra(path)
    n, hop = 2048, 1024
    k = (len(x) - n) // hop + 1
    idx = np.arange(k)[:, None] * hop + np.arange(n)[None, :]
    fr = x[idx]  # (k, n, ch)
    rms = np.sqrt((fr.astype(np.float64) ** 2).mean(axis=(1, 2)))
    pk = np.abs(fr).max(axis=(1, 2))
    ok = rms > 10 ** (-60 / 20)
    crest = float(np.mean(20 * np.log10(pk[ok] / rms[ok])))
    mono = x.mean(axis=1)
    S = np.abs(librosa.stft(mono, n_fft=2048, hop_length=512))
    m, s = (x[:, 0] + x[:, 1]) / 2, (x[:, 0] - x[:, 1]) / 2
    return {"lufs": lufs, "lra": lra, "crest_db": crest,
            "centroid": float(librosa.feature.spectral_centroid(S=S, sr=sr).mean()),
            "bandwidth": float(librosa.feature.spectral_bandwidth(S=S, sr=sr).mean()),
            "rolloff": float(librosa.feature.spectral_rolloff(S=S, sr=sr, roll_percent=0.85).mean()),
            "flatness": float(librosa.feature.spectral_flatness(S=S).mean()),
            "side_mid": float((s.astype(np.float64) ** 2).sum() / max((m.astype(np.float64) ** 2).sum(), 1e-20))}


def distance(f: dict, ref: dict) -> float:
    return float(np.mean([abs(f[k] - ref[k]) / max(abs(ref[k]), FLOORS[k]) for k in FLOORS]))


# ------------------------------------------------------------------------------------------ runs

def avmix_cmd(tracks: list[Path], out: Path, ref: Path | None) -> list[str]:
    cmd = common.avmix_cmd() + ["mix", *map(str, tracks), "-o", str(out), "-y", "--quiet"]
    return cmd + (["--reference", str(ref)] if ref is not None else ["--no-limit"])


def cli_has_reference() -> bool:
    proc = subprocess.run(common.avmix_cmd() + ["mix", "--help"], capture_output=True, text=True)
    return "--reference" in proc.stdout


def library_cmd(tracks: list[Path], out: Path, ref: Path | None) -> list[str]:
    """Until the CLI has --reference: the same job through the library (same imports, same writer)."""
    code = ("import sys; from avmix.audio import compose; "
            "compose.mix(sys.argv[3:], sys.argv[1], overwrite=True, "
            + ("reference=sys.argv[2])" if ref is not None else "limit=False, bit_depth=32)"))
    return [sys.executable, "-c", code, str(out), str(ref or "-"), *map(str, tracks)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matchering", default="/tmp/mgvenv/bin/python",
                    help="a Python with matchering installed (skipped if missing)")
    ap.add_argument("--pairs", type=int, default=len(TREATMENTS))
    ap.add_argument("--memory", action="store_true", help="also measure a 2 x 60 min mix with --reference")
    ap.add_argument("--no-real", action="store_true", help="only the synthetic pairs")
    ap.add_argument("--runs", type=int, default=1, help="timed runs per tool and pair (median)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    have_mg = os.access(args.matchering, os.X_OK) and subprocess.run(
        [args.matchering, "-c", "import matchering"], capture_output=True).returncode == 0
    cmd_of = avmix_cmd if cli_has_reference() else library_cmd
    rows = []
    jobs = list(TREATMENTS.items())[:args.pairs] + ([] if args.no_real else [(n, None) for n in REAL_PAIRS])
    for i, (name, treat) in enumerate(jobs):
        d = OUT / f"pair{i}"
        d.mkdir(exist_ok=True)
        if treat is None:
            tracks, ref = real_pair(name, d)
        else:
            tracks = []
            for j, x in enumerate(track_set(100 + i)):
                p = d / f"track{j}.wav"
                sf.write(p, x, SR, subtype="FLOAT")
                tracks.append(p)
            other = sum(track_set(200 + i))
            ref = d / "ref.wav"
            sf.write(ref, treat(other).astype(np.float32), SR, subtype="PCM_24")
        plain = d / "plain.wav"
        subprocess.run(library_cmd(tracks, plain, None), check=True)  # float WAV: the exact sum
        cmds = {"avmix": cmd_of(tracks, d / "avmix.wav", ref)}
        if treat is None:  # real tracks are 16 kHz mono: compose at the reference's 48 kHz stereo, as
            cmds["avmix"] += ["--sample-rate", str(SR), "--channels", "2"]  # matchering's output is
        if have_mg:
            cmds["matchering"] = [args.matchering, "-c", MATCHERING, str(plain), str(ref), str(d / "mg.wav")]
        common.warm(*tracks, ref, plain)
        timing = common.run_side_by_side(cmds, args.runs, log=lambda s: None)
        fr = features(ref)
        row = {"pair": name, "unmatched": distance(features(plain), fr),
               "avmix": distance(features(d / "avmix.wav"), fr), "avmix_s": timing["avmix"]["wall_s"],
               "avmix_cpu_s": timing["avmix"]["cpu_s"], "avmix_mb": timing["avmix"]["peak_mb"]}
        if have_mg:
            row["matchering"] = distance(features(d / "mg.wav"), fr)
            row["matchering_s"] = timing["matchering"]["wall_s"]
            row["matchering_cpu_s"] = timing["matchering"]["cpu_s"]
        row["features"] = {"ref": fr, "avmix": features(d / "avmix.wav")}
        rows.append(row)
        print(f"{name:<27} unmatched {row['unmatched']:.3f}  avmix {row['avmix']:.3f} ({row['avmix_s']:.2f} s)"
              + (f"  matchering {row['matchering']:.3f} ({row['matchering_s']:.2f} s)" if have_mg else ""),
              flush=True)
    print()
    head = (f"{'pair':<27} {'unmatched':>9} {'avmix':>7} {'matchering':>10} {'avmix/unm':>9} {'avmix/mg':>8} "
            f"{'avmix s':>7} {'mg s':>6} {'wall x':>6} {'cpu x':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        mg = r.get("matchering")
        print(f"{r['pair']:<27} {r['unmatched']:>9.3f} {r['avmix']:>7.3f} {mg if mg is not None else float('nan'):>10.3f} "
              f"{r['avmix'] / r['unmatched']:>9.2f} {r['avmix'] / mg if mg else float('nan'):>8.2f} "
              f"{r['avmix_s']:>7.2f} {r.get('matchering_s', float('nan')):>6.1f} "
              f"{r['matchering_s'] / r['avmix_s'] if mg else float('nan'):>6.1f} "
              f"{r['matchering_cpu_s'] / r['avmix_cpu_s'] if mg and r['avmix_cpu_s'] else float('nan'):>6.1f}")
    goals = {"avmix halves the unmatched distance on every pair": all(r["avmix"] <= 0.5 * r["unmatched"] for r in rows)}
    if have_mg:
        goals["avmix no further than matchering on every pair"] = all(r["avmix"] <= r["matchering"] for r in rows)
        goals["avmix >= 10x faster than matchering, wall time (every pair)"] = all(
            r["matchering_s"] >= 10 * r["avmix_s"] for r in rows)
        goals["avmix >= 10x less CPU time than matchering (every pair)"] = all(
            r["matchering_cpu_s"] >= 10 * r["avmix_cpu_s"] for r in rows)
    result = {"rows": rows, "goals": goals, "environment": common.environment(), "seconds": SECONDS}
    if args.memory:
        result["memory"] = memory(cmd_of)
        print(f"\n2 x 60 min with --reference: {result['memory']['wall_s']:.1f} s, "
              f"peak {result['memory']['peak_mb']:.0f} MB")
        goals["under 150 MB for a 60-minute mix"] = result["memory"]["peak_mb"] < 150
    print()
    for k, ok in goals.items():
        print(f"{'PASS' if ok else 'MISS'}  {k}")
    common.save(Path(__file__).resolve().parent / "results-reference.json", result)
    return 0


def memory(cmd_of) -> dict:
    a = common.make_wav(common.DATA / "a_60.wav", 3600, seed=1, peak=0.28)
    b = common.make_wav(common.DATA / "b_60.wav", 3600, seed=2, peak=0.28)
    ref = common.make_wav(common.DATA / "ref_3min.wav", 180, seed=7, peak=0.9)
    r = common.run_side_by_side({"avmix": cmd_of([a, b], OUT / "long.wav", ref)}, 1, log=print)["avmix"]
    (OUT / "long.wav").unlink(missing_ok=True)
    return r


if __name__ == "__main__":
    sys.exit(main())
