"""``avmix align``: takes cut from one real recording at known offsets are lined up within 1 ms."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import soundfile as sf
import soxr
from scipy import signal

from avmix import ffmpeg
from avmix.align import parabolic
from tests import real

RATE = 48000
TOLERANCE = 0.001  # seconds


def _source(name: str) -> np.ndarray:
    x, sr = sf.read(str(real.path(name)), always_2d=True)
    x = x.mean(axis=1)
    return soxr.resample(x, sr, RATE) if sr != RATE else x


def _delayed(x: np.ndarray, samples: float) -> np.ndarray:
    """x delayed by a fractional number of samples (band-limited, by a phase ramp)."""
    n = 2 * len(x)
    f = np.fft.rfftfreq(n)
    return np.fft.irfft(np.fft.rfft(x, n) * np.exp(-2j * np.pi * f * samples), n)[:len(x)]


def _take(x: np.ndarray, start: float, seconds: float, *, seed: int, snr_db: float, gain_db: float = 0.0,
          band: tuple[float, float] | None = None) -> np.ndarray:
    """The part of x from ``start`` seconds (fractional samples allowed) with its own noise, filter, gain."""
    i = int(np.floor(start * RATE))
    seg = _delayed(x[i:i + int(seconds * RATE) + 16], -(start * RATE - i))[:int(seconds * RATE)]
    if band is not None:  # causal, like a microphone or a recorder's filter, not zero-phase
        seg = signal.sosfilt(signal.butter(2, band, "bandpass", fs=RATE, output="sos"), seg)
    rng = np.random.default_rng(seed)
    seg = seg + rng.standard_normal(len(seg)) * np.sqrt(np.mean(seg ** 2) / 10 ** (snr_db / 10))
    return (seg * 10 ** (gain_db / 20)).astype(np.float32)


def _json(res) -> dict:
    return json.loads(res.out)


@pytest.mark.parametrize("name", ["speech_instruct.flac", "music_morning_coffee.flac", "field_birds.flac",
                                  "effects_pygame.flac"])
def test_known_offsets_found_within_a_millisecond(tmp_path, run_cli, name):
    x = _source(name)
    a_start = 2.8
    length = min(len(x) / RATE - a_start - 1.3, 12.0)
    starts = {"later": a_start + 1.2345678, "earlier": a_start - 2.7182818, "close": a_start + 0.0004321}
    paths = [tmp_path / "a.wav"]
    sf.write(str(paths[0]), _take(x, a_start, length, seed=1, snr_db=25), RATE, subtype="PCM_24")
    for i, (label, start) in enumerate(starts.items()):
        b = _take(x, start, length - 1.0, seed=2 + i, snr_db=10, gain_db=-18, band=(200, 5000))
        p = tmp_path / f"b_{label}.flac"
        if label == "close":  # another device: 44.1 kHz
            sf.write(str(p), soxr.resample(b, RATE, 44100), 44100, subtype="PCM_16")
        else:
            sf.write(str(p), b, RATE, subtype="PCM_16")
        paths.append(p)
    res = run_cli("align", *paths, "--json")
    assert res.code == 0, res.err
    d = _json(res)
    assert d["reference"] == str(paths[0])
    assert [t["path"] for t in d["tracks"]] == [str(p) for p in paths]
    assert d["tracks"][0]["offset"] == 0.0
    for t, start in zip(d["tracks"][1:], starts.values()):
        want = start - a_start  # a take that starts later in the performance is delayed
        assert abs(t["offset"] - want) < TOLERANCE, (t, want)
        assert 0.3 <= t["confidence"] <= 1.0


@pytest.mark.parametrize("name, rt60, drr_db, far, seed", [
    ("music_morning_coffee.flac", 0.4, 0.0, "take", 3),
    ("music_morning_coffee.flac", 0.8, -12.0, "take", 3),
    # reflections 20 dB over the direct sound: the strongest peak is a reflection 6 ms off
    ("speech_instruct.flac", 0.3, -20.0, "take", 4),
    ("field_birds.flac", 0.3, -20.0, "reference", 4),
])
def test_a_reverberant_take_lines_up_by_its_direct_sound(tmp_path, run_cli, name, rt60, drr_db, far, seed):
    """The far take hears everything 3 ms late, through a room; the offset is to its direct sound."""
    x = _source(name)
    length = min(len(x) / RATE - 2.0, 14.0)
    a = _take(x, 0.5, length, seed=1, snr_db=25)
    b = _take(x, 1.7345, length - 1.0, seed=2, snr_db=15, gain_db=-10)
    h = real.room(rt60, drr_db, np.random.default_rng(seed), rate=RATE, delay=0.003)
    if far == "take":
        b = signal.fftconvolve(b, h)[:len(b)].astype(np.float32)
        want = 1.2345 - 0.003
    else:
        a = signal.fftconvolve(a, h)[:len(a)].astype(np.float32)
        want = 1.2345 + 0.003
    sf.write(str(tmp_path / "a.wav"), a, RATE)
    sf.write(str(tmp_path / "b.wav"), b, RATE)
    if drr_db <= -20:  # a case the strongest peak gets wrong
        assert abs(real.strongest_lag(a, b, rate=RATE) - want) > 0.002
    res = run_cli("align", tmp_path / "a.wav", tmp_path / "b.wav", "--json")
    assert res.code == 0, res.err
    assert abs(_json(res)["tracks"][1]["offset"] - want) < TOLERANCE


def test_a_band_passed_noisy_take_is_not_taken_for_a_reverberant_one(tmp_path, run_cli):
    """A steep causal band-pass and noise as loud as the music: its impulse response starts sharply,
    but it is not a room; the offset stays within the filter's own delay."""
    x = _source("music_piano_notes.flac")
    a = _take(x, 1.0, 16.0, seed=1, snr_db=20)
    band = signal.butter(4, [150, 3500], "bandpass", fs=RATE, output="sos")
    b = _take(signal.sosfilt(band, x), 1.0005, 15.5, seed=2, snr_db=0, gain_db=-15)
    sf.write(str(tmp_path / "a.wav"), a, RATE)
    sf.write(str(tmp_path / "b.wav"), b, RATE)
    res = run_cli("align", tmp_path / "a.wav", tmp_path / "b.wav", "--json")
    assert res.code == 0, res.err
    assert abs(_json(res)["tracks"][1]["offset"] - 0.0005) < TOLERANCE


def test_unrelated_audio_is_no_reliable_match(tmp_path, run_cli):
    ref = str(real.path("speech_instruct.flac"))
    same = tmp_path / "same.wav"
    sf.write(str(same), _take(_source("speech_instruct.flac"), 2.5, 20.0, seed=5, snr_db=15), RATE)
    other = str(real.path("music_morning_coffee.flac"))
    res = run_cli("align", ref, same, other, "--json")
    assert res.code == 1
    tracks = _json(res)["tracks"]
    assert abs(tracks[1]["offset"] - 2.5) < TOLERANCE
    assert tracks[2]["offset"] is None and tracks[2]["confidence"] < 0.3
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "no reliable match" in lines[0] and other in lines[0]
    assert str(same) not in lines[0]
    # plain text says the same
    res = run_cli("align", ref, other)
    assert res.code == 1 and "no reliable match" in res.out and "no reliable match" in res.err


def test_silent_take_is_no_reliable_match(tmp_path, run_cli):
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(RATE * 3, dtype=np.float32), RATE)
    res = run_cli("align", real.path("field_birds.flac"), silent, "--json")
    assert res.code == 1
    assert _json(res)["tracks"][1] == {"path": str(silent), "offset": None, "confidence": 0.0}
    res = run_cli("align", silent, real.path("field_birds.flac"))
    assert res.code == 1 and "reference is silent" in res.err and len(res.err.strip().splitlines()) == 1


def test_the_audio_of_a_video_lines_up(tmp_path, run_cli):
    """An AAC-in-MP4 take: the encoder's priming samples must not shift it."""
    x = _source("speech_congrats.flac")
    wav = tmp_path / "b.wav"
    sf.write(str(wav), _take(x, 4.0, 12.0, seed=3, snr_db=20), RATE)
    mp4 = tmp_path / "b.mp4"
    subprocess.run([ffmpeg.executable(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=gray:s=64x64:r=10:d=12", "-i", str(wav), "-c:v", "libx264", "-c:a", "aac",
                    str(mp4)], check=True)
    res = run_cli("align", real.path("speech_congrats.flac"), mp4, "--json")
    assert res.code == 0, res.err
    assert abs(_json(res)["tracks"][1]["offset"] - 4.0) < TOLERANCE


@pytest.mark.parametrize("args, words", [
    (["{a}"], "at least 2"),
    (["{a}", "{missing}"], "no such file"),
    (["{a}", "{text}"], "notes.txt"),
    (["{a}", "{short}"], "too short"),
    (["{a}", "{a}", "--threshold", "1.5"], "--threshold"),
])
def test_bad_inputs_give_one_line(tmp_path, run_cli, args, words):
    (tmp_path / "notes.txt").write_text("not audio\n")
    sf.write(str(tmp_path / "short.wav"), np.ones(RATE // 10, dtype=np.float32) * 0.1, RATE)
    names = {"a": real.path("field_birds.flac"), "missing": tmp_path / "nope.wav",
             "text": tmp_path / "notes.txt", "short": tmp_path / "short.wav"}
    res = run_cli("align", *[a.format(**names) for a in args])
    assert res.code in (1, 2)
    assert res.out == ""
    lines = res.err.strip().splitlines()
    assert lines and words in lines[0] and "Traceback" not in res.err
    assert all(ln.startswith("avmix: ") for ln in lines) and len([ln for ln in lines if "error" in ln]) == 1


def test_parabola_finds_the_peak_between_samples():
    t = np.array([-1.0, 0.0, 1.0])
    for true in (-0.4, 0.0, 0.25):
        y = -(t - true) ** 2
        assert parabolic(*y) == pytest.approx(true)


def test_fine_stage_places_the_peak_between_samples():
    """The fine stage alone: a 0.3-sample shift at 48 kHz is found to within 0.05 sample (1 us)."""
    from avmix.align import direct_lag

    x = _source("speech_instruct.flac")[RATE:RATE * 5]
    for shift in (0.3, -1.7):
        b = _delayed(x, -shift)  # b leads x by ``shift``: delaying b by ``shift`` lines it up
        assert direct_lag([(x, b)], 4, RATE) == pytest.approx(shift, abs=0.05)


# ------------------------------------------------------------------------------ --align auto

def _three_takes(tmp_path):
    """A reference and two takes of one recording cut at whole samples: B starts 1.5 s later (delay it),
    C 0.8 s earlier (trim it); no noise, so lined up they sum to the recording times the summed gains."""
    x = _source("speech_congrats.flac")
    a0, n = 3 * RATE, 8 * RATE
    cuts = {"a.wav": (a0, 1.0), "b.wav": (a0 + 72000, 0.5), "c.wav": (a0 - 38400, 0.25)}
    paths = []
    for name, (start, gain) in cuts.items():
        sf.write(str(tmp_path / name), (gain * x[start:start + n]).astype(np.float32), RATE, subtype="FLOAT")
        paths.append(tmp_path / name)
    return x, a0, n, paths


def test_mix_align_auto_lines_the_takes_up(tmp_path, run_cli):
    x, a0, n, paths = _three_takes(tmp_path)
    out = tmp_path / "out.wav"
    res = run_cli("mix", *paths, "--align", "auto", "--no-limit", "--bit-depth", "32", "-o", out)
    assert res.code == 0, res.err
    tl = json.loads((tmp_path / "out.wav.timeline.json").read_text())
    a, b, c = tl["sources"]
    assert (a["start_sample"], a["offset_sample"]) == (0, 0)
    assert abs(b["start_sample"] - 72000) <= 1 and b["offset_sample"] == 0
    assert c["start_sample"] == 0 and abs(c["offset_sample"] - 38400) <= 1
    assert abs(b["align"]["offset"] - 1.5) < TOLERANCE and abs(c["align"]["offset"] + 0.8) < TOLERANCE
    assert b["align"]["reference"] == str(paths[0]) and b["align"]["confidence"] >= 0.3
    assert tl["frames"] == 72000 + n  # B, delayed, ends last
    y, sr = sf.read(str(out))
    both = slice(72000, n - 38400)  # where all three sound: 1.75 x the recording if they line up
    want = 1.75 * x[a0:a0 + n][both]
    assert np.max(np.abs(y[both] - want)) < 1e-3 * np.max(np.abs(want))


def test_align_auto_stops_on_a_take_with_no_match(tmp_path, run_cli):
    _, _, _, paths = _three_takes(tmp_path)
    other = real.path("music_morning_coffee.flac")
    out = tmp_path / "out.wav"
    res = run_cli("mix", paths[0], other, "--align", "auto", "-o", out)
    assert res.code == 1
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "no reliable match" in lines[0] and str(other) in lines[0]
    assert not out.exists() and not (tmp_path / "out.wav.timeline.json").exists()


def test_align_auto_only_with_mode_mix(tmp_path, run_cli):
    _, _, _, paths = _three_takes(tmp_path)
    res = run_cli("generate", *paths, "--mode", "concat", "--align", "auto", "-o", tmp_path / "o.mp4")
    assert res.code == 2 and "--align" in res.err and not (tmp_path / "o.mp4").exists()


def test_generate_mode_mix_align_auto(tmp_path):
    from avmix import pipeline

    _, _, n, paths = _three_takes(tmp_path)
    work = tmp_path / "work"
    pipeline.generate(paths[:2], tmp_path / "out.mp4", workdir=work, align="auto", size=(64, 64), fps=10)
    tl = json.loads((work / "timeline.json").read_text())
    assert abs(tl["sources"][1]["start_sample"] - 72000) <= 1
    assert abs(tl["sources"][1]["align"]["offset"] - 1.5) < TOLERANCE
    man = json.loads((work / "manifest.json").read_text())
    assert man["options"]["align"] == "auto"
