"""avmix.audio.compose: mix / concat / overlay, sample-exact, streaming, with levels that add up."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pyloudnorm as pyln
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from avmix.audio import compose, plan
from avmix.audio.io import open_audio
from avmix.audio.loudness import integrated_loudness
from avmix.errors import OutputError, UsageError
from avmix.timeline import Timeline
from conftest import noise, sine, write_wav

SR = 48000


def read(p) -> np.ndarray:
    return sf.read(str(p), dtype="float32", always_2d=True)[0]


def tp_db(x: np.ndarray) -> float:
    up = resample_poly(np.asarray(x, np.float64), 4, 1, axis=0)
    return 20 * math.log10(max(np.abs(up).max(), np.abs(x).max()))


@pytest.fixture
def wav(tmp_path):
    def _w(name: str, data: np.ndarray, sr: int = SR, subtype: str = "FLOAT") -> str:
        return str(write_wav(tmp_path / name, data, sr, subtype))
    return _w


def out(tmp_path, name="out.wav") -> str:
    return str(tmp_path / name)


# ------------------------------------------------------------------------------------------ mix

@pytest.mark.parametrize("duration,expect", [("longest", 72001), ("shortest", 30000), ("first", 48000)])
def test_mix_length_per_duration(tmp_path, wav, duration, expect):
    a = wav("a.wav", noise(1.0, amp=0.1))
    b = wav("b.wav", noise(72001 / SR, amp=0.1, seed=1))
    c = wav("c.wav", noise(30000 / SR, amp=0.1, seed=2))
    tl = compose.mix([a, b, c], out(tmp_path), duration=duration, limit=False)
    assert len(read(out(tmp_path))) == expect == tl.frames
    assert all(s.end_sample <= expect for s in tl.sources)


def test_mix_no_limit_is_the_exact_sum_of_gained_inputs(tmp_path, wav):
    a, b = noise(1.5, amp=0.8), noise(1.0, channels=2, amp=0.8, seed=3)
    pa, pb = wav("a.wav", a), wav("b.wav", b)
    compose.mix([pa, pb], out(tmp_path), gains=[-6.0, 3.5], limit=False, bit_depth=32)
    y = read(out(tmp_path))
    ref = a * np.float32(10 ** (-6 / 20))
    ref[:len(b)] += b * np.float32(10 ** (3.5 / 20))
    assert y.shape == ref.shape and np.abs(y - ref).max() < 1e-6
    assert np.abs(y).max() > 1.0  # no clipping in float: headroom kept


def test_track_mixed_with_its_inverse_is_silence(tmp_path, wav):
    x = noise(2.0, amp=0.5) + sine(440, 2.0, channels=2, amp=0.3)
    a, b = wav("a.wav", x), wav("inv.wav", -x)
    tl = compose.mix([a, b], out(tmp_path), bit_depth=32, loudness=True)  # limiter on: silence stays silence
    assert np.all(read(out(tmp_path)) == 0.0)
    assert tl.peak_dbfs == -math.inf and tl.lufs == -math.inf


def test_output_loudness_measured_on_request(tmp_path, wav):
    a = wav("a.wav", noise(3, amp=0.3))
    tl = compose.mix([a], out(tmp_path), limit=False)
    assert tl.lufs is None and tl.peak_dbfs is not None  # K-weighting only when asked or normalising
    tl = compose.mix([a], out(tmp_path, "o2.wav"), limit=False, loudness=True)
    ref = pyln.Meter(SR).integrated_loudness(read(out(tmp_path, "o2.wav")).astype(np.float64))
    assert abs(tl.lufs - ref) < 0.1
    assert abs(tl.peak_dbfs - 20 * np.log10(np.abs(read(out(tmp_path, "o2.wav"))).max())) < 1e-4


def test_pydub_pairwise_clipping_trap_does_not_happen(tmp_path, wav):
    # pydub sums pairwise in int16 and clamps each time: a=b=30000, c=-30000 gives 2767, not 30000
    one = np.ones((4800, 1), np.float32)
    a = wav("a.wav", one * 30000 / 32768, subtype="PCM_16")
    b = wav("b.wav", one * 30000 / 32768, subtype="PCM_16")
    c = wav("c.wav", one * -30000 / 32768, subtype="PCM_16")
    compose.mix([a, b, c], out(tmp_path), limit=False, bit_depth=16)
    y, _ = sf.read(out(tmp_path), dtype="int16")
    assert np.all(y == 30000)


def test_mix_mono_and_stereo_gives_stereo(tmp_path, wav):
    # ffmpeg amix of mono + stereo gives mono; avmix keeps the most channels, mono duplicated
    m = sine(440, 1, channels=1, amp=0.3)
    s = np.zeros((SR, 2), np.float32)
    s[:, 1] = 0.2
    tl = compose.mix([wav("m.wav", m), wav("s.wav", s)], out(tmp_path), limit=False, bit_depth=32)
    y = read(out(tmp_path))
    assert tl.channels == 2 and y.shape == (SR, 2)
    assert np.allclose(y[:, 0], m[:, 0]) and np.allclose(y[:, 1], m[:, 0] + 0.2)


def test_mixed_rates_resampled_to_highest(tmp_path, wav):
    a = wav("a.wav", sine(440, 1, sr=44100, amp=0.3), sr=44100)
    b = wav("b.wav", sine(440, 0.5, sr=48000, amp=0.3), sr=48000)
    tl = compose.mix([a, b], out(tmp_path), limit=False)
    assert tl.sample_rate == 48000 and tl.frames == 48000 == len(read(out(tmp_path)))
    tl = compose.mix([a, b], out(tmp_path, "o2.wav"), limit=False, sample_rate=22050, channels=1)
    assert (tl.sample_rate, tl.channels, tl.frames) == (22050, 1, 22050)


def test_gains_count_checked(tmp_path, wav):
    a = wav("a.wav", noise(0.5))
    with pytest.raises(UsageError, match="2 gains for 1 input"):
        compose.mix([a], out(tmp_path), gains=[1.0, 2.0])
    tl = compose.mix([a, a], out(tmp_path), gains=[-3.0], limit=False)  # fewer: the rest 0 dB
    assert [s.gain_db for s in tl.sources] == [-3.0, 0.0]


def test_match_loudness_levels_tracks(tmp_path, wav):
    a = wav("a.wav", noise(2, amp=0.5))
    b = wav("b.wav", noise(2, amp=0.05, seed=4))
    tl = compose.mix([a, b], out(tmp_path), match_loudness=True, limit=False)
    la = integrated_loudness(np.concatenate(list(compose.source_blocks(tl, 0))), SR)
    lb = integrated_loudness(np.concatenate(list(compose.source_blocks(tl, 1))), SR)
    assert abs(la - lb) < 0.1
    assert abs(tl.sources[0].gain_db + tl.sources[1].gain_db) < 0.01  # both moved to the mean


# ------------------------------------------------------------------------------------------ normalize / limit

def test_lufs_normalisation_within_half_lu(tmp_path, wav):
    a = wav("a.wav", noise(4, amp=0.05))
    b = wav("b.wav", sine(220, 4, channels=2, amp=0.05))
    calls = []
    tl = compose.mix([a, b], out(tmp_path), normalize="lufs", target=-16.0, bit_depth=32, loudness=True,
                     progress=lambda *c: calls.append(c))
    y = read(out(tmp_path))
    assert sf.info(out(tmp_path)).samplerate == SR  # (ffmpeg loudnorm would have upsampled to 192 kHz)
    assert {c[0] for c in calls} == {"measure", "mix"} and calls[-1] == ("mix", 4 * SR, 4 * SR)
    assert abs(pyln.Meter(SR).integrated_loudness(y.astype(np.float64)) + 16.0) < 0.5  # independent meter
    assert abs(tl.lufs + 16.0) < 0.5 and tl.master_gain_db > 0
    assert tp_db(y) <= -1.0 + 1e-6


def test_lufs_normalisation_of_hot_mix_is_limited(tmp_path, wav):
    a = wav("a.wav", noise(3, amp=0.9))
    b = wav("b.wav", noise(3, amp=0.9, seed=5))
    compose.mix([a, b], out(tmp_path), normalize="lufs", target=-9.0, bit_depth=32)
    y = read(out(tmp_path))
    assert tp_db(y) <= -1.0 + 1e-6
    assert abs(pyln.Meter(SR).integrated_loudness(y.astype(np.float64)) + 9.0) <= 0.5  # limiting corrected for


def clicks_over_noise(seconds: float = 6.0, every: float = 0.25, bed: float = 0.03, seed: int = 0) -> np.ndarray:
    """10 ms 2 kHz clicks peaking at 0.9 every ``every`` s over a noise bed: percussive material whose
    peaks stand 20-30 dB above its RMS, so a limiter at the ceiling takes loudness away."""
    x = noise(seconds, amp=bed * 3 ** 0.5, seed=seed)  # uniform noise: RMS = bed
    t = np.arange(480) / SR
    c = np.sin(2 * np.pi * 2000 * t) * np.exp(-t / 0.002)
    for s in range(SR // 10, len(x) - len(c), int(every * SR)):
        x[s:s + len(c)] += (0.9 * c / np.abs(c).max())[:, None].astype(np.float32)
    return x


def crest_db(x: np.ndarray) -> float:
    return 20 * math.log10(np.abs(x).max() / np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def mix_passes(calls: list) -> int:
    """How many mixing passes a recorded progress log shows (each ends at done == total)."""
    return sum(1 for stage, done, total in calls if stage == "mix" and done == total)


def test_lufs_target_met_on_spiky_material_despite_the_limiter(tmp_path, wav):
    x = clicks_over_noise()
    assert crest_db(x) > 20
    calls = []
    tl = compose.mix([wav("k.wav", x)], out(tmp_path), normalize="lufs", target=-14.0, bit_depth=32,
                     progress=lambda *c: calls.append(c))
    y = read(out(tmp_path))
    measured = pyln.Meter(SR).integrated_loudness(y.astype(np.float64))  # independent meter
    assert abs(measured + 14.0) <= 0.5  # one pass at the first gain gave -18.4
    assert tp_db(y) <= -1.0 + 1e-6
    assert abs(tl.lufs - measured) < 0.1  # the timeline has the output's measured loudness
    assert 2 <= mix_passes(calls) <= compose.MAX_WRITES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.wav", "out.wav", "out.wav.timeline.json"]


def test_lufs_target_met_on_spiky_material_written_to_stdout(tmp_path, wav, capsysbinary):
    import io

    compose.mix([wav("k.wav", clicks_over_noise())], "-", normalize="lufs", target=-16.0, bit_depth=32)
    raw = capsysbinary.readouterr().out
    assert len(raw) == int.from_bytes(raw[4:8], "little") + 8  # one stream, nothing after it
    y, sr = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    assert (sr, len(y)) == (SR, 6 * SR)
    assert abs(pyln.Meter(SR).integrated_loudness(y.astype(np.float64)) + 16.0) <= 0.5
    assert tp_db(y) <= -1.0 + 1e-6


def test_lufs_normalisation_writes_once_where_the_limiter_does_not_act(tmp_path, wav):
    calls = []
    tl = compose.mix([wav("a.wav", noise(3, amp=0.05))], out(tmp_path), normalize="lufs", target=-23.0,
                     progress=lambda *c: calls.append(c))
    assert mix_passes(calls) == 1 and tl.lufs is None  # far under the ceiling: not even measured again
    # near the ceiling (the limiter looks) but under it: measured while writing, still one pass
    calls.clear()
    tl = compose.mix([wav("s.wav", sine(997, 3, channels=2, amp=0.1))], out(tmp_path, "o2.wav"),
                     normalize="lufs", target=-12.0, ceiling=-6.0, progress=lambda *c: calls.append(c))
    assert mix_passes(calls) == 1 and abs(tl.lufs + 12.0) < 0.01


def test_unreachable_lufs_target_is_noted_unless_quiet(run_cli, tmp_path, wav):
    k = wav("k.wav", clicks_over_noise(every=1.0, bed=0.001))  # lone clicks in near silence
    o = out(tmp_path)
    r = run_cli("mix", k, "-o", o, "--normalize", "lufs", "--target", "-8")
    assert r.code == 0, r.err
    y = read(o)
    measured = pyln.Meter(SR).integrated_loudness(y.astype(np.float64))
    [line] = [ln for ln in r.err.splitlines() if "could not" in ln]  # one line, besides the summary
    assert line.startswith("avmix: could not bring the output to -8 LUFS")
    said = float(re.search(r"it is (-?[\d.]+) LUFS", line).group(1))
    assert abs(said - measured) < 0.15  # the note tells the truth
    assert tp_db(y) <= -1.0 + 1e-6
    r = run_cli("mix", k, "-o", o, "--normalize", "lufs", "--target", "-8", "-q", "-y")
    assert r.code == 0 and r.err == ""


def test_silent_mix_note_respects_quiet(run_cli, tmp_path, wav):
    s = wav("silent.wav", np.zeros((SR, 2), np.float32))
    r = run_cli("mix", s, "-o", out(tmp_path), "--normalize", "lufs")
    assert r.code == 0 and "the mix is silent" in r.err
    r = run_cli("mix", s, "-o", out(tmp_path, "q.wav"), "--normalize", "lufs", "--quiet")
    assert r.code == 0 and r.err == ""


def test_align_auto_names_a_silent_first_track(run_cli, tmp_path, wav):
    """The fault is the silent first track's (nothing matches it), not the next track's."""
    s = wav("silent.wav", np.zeros((3 * SR, 2), np.float32))
    n = wav("noise.wav", noise(3.0))
    r = run_cli("mix", s, n, "--align", "auto", "-o", out(tmp_path))
    lines = r.err.strip().splitlines()
    assert r.code == 1 and len(lines) == 1 and "is silent" in lines[0] and str(s) in lines[0], r.err
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("args,shown", [
    (["--target", "-0.3"], "--normalize peak --target -0.3 dBFS is above the limiter's --ceiling -1 dBTP"),
    (["--ceiling", "-3"], "--normalize peak --target -1 dBFS (the default) is above the limiter's --ceiling -3"),
])
def test_peak_target_above_the_ceiling_is_a_usage_error(run_cli, tmp_path, wav, args, shown):
    a = wav("a.wav", sine(440, 1, channels=2, amp=0.2))
    o = out(tmp_path)
    r = run_cli("mix", a, "-o", o, "--normalize", "peak", *args)
    assert r.code == 2, r.err
    lines = r.err.strip().splitlines()
    assert lines[0].startswith("avmix: error: ") and shown in lines[0], r.err
    assert len(lines) == 2 and "raise --ceiling" in lines[1] and "--no-limit" in lines[1]
    assert not Path(o).exists()
    with pytest.raises(UsageError, match="above the limiter"):  # the library refuses it too
        compose.mix([a], o, normalize="peak", **{k.lstrip("-"): float(v) for k, v in [args]})
    r = run_cli("mix", a, "-o", o, "--normalize", "peak", *args, "--no-limit", "--bit-depth", "32")
    assert r.code == 0, r.err  # what the hint says works: the target is met
    want = -0.3 if "--target" in args else -1.0
    assert abs(20 * np.log10(np.abs(read(o)).max()) - want) < 1e-3


def test_peak_normalisation(tmp_path, wav):
    a = wav("a.wav", sine(440, 1, channels=2, amp=0.2))
    tl = compose.mix([a], out(tmp_path), normalize="peak", target=-3.0, limit=False, bit_depth=32)
    assert abs(20 * np.log10(np.abs(read(out(tmp_path))).max()) + 3.0) < 1e-3
    assert abs(tl.peak_dbfs + 3.0) < 1e-3


def test_silent_and_short_inputs_normalise_without_crash(tmp_path, wav, capsys):
    s = wav("silent.wav", np.zeros((SR, 2), np.float32))
    tl = compose.mix([s], out(tmp_path), normalize="lufs")
    assert tl.master_gain_db == 0.0 and np.all(read(out(tmp_path)) == 0)
    assert "silent" in capsys.readouterr().err
    short = wav("short.wav", noise(0.2, amp=0.05))  # < 0.4 s: measured as one block
    tl = compose.mix([short], out(tmp_path, "o2.wav"), normalize="lufs", target=-20.0, loudness=True)
    assert abs(tl.lufs + 20.0) < 0.5 and len(read(out(tmp_path, "o2.wav"))) == 9600


def test_limiter_on_by_default_keeps_quiet_mix_bit_identical(tmp_path, wav):
    a, b = noise(2, amp=0.1), noise(2, amp=0.1, seed=9)
    pa, pb = wav("a.wav", a), wav("b.wav", b)
    compose.mix([pa, pb], out(tmp_path, "lim.wav"), bit_depth=32)
    compose.mix([pa, pb], out(tmp_path, "raw.wav"), bit_depth=32, limit=False)
    assert np.array_equal(read(out(tmp_path, "lim.wav")), read(out(tmp_path, "raw.wav")))


def test_master_fades(tmp_path, wav):
    a = wav("a.wav", np.full((SR, 1), 0.5, np.float32))
    tl = compose.mix([a], out(tmp_path), fade_in=0.1, fade_out=0.25, limit=False, bit_depth=32)
    y = read(out(tmp_path))[:, 0]
    assert y[0] == 0.0 and y[-1] == 0.0 and y[SR // 2] == 0.5
    assert np.all(np.diff(y[:4800]) > 0) and np.all(np.diff(y[-12000:]) <= 0) and y[-6000] < y[-12000] * 0.8
    assert tl.fade_in == 0.1 and tl.fade_out == 0.25


# ------------------------------------------------------------------------------------------ concat

def test_concat_length_is_sum_minus_crossfades_plus_gaps(tmp_path, wav):
    lens = [44101, 30007, 50000]
    files = [wav(f"{i}.wav", noise(n / 44100, sr=44100, amp=0.1, seed=i), sr=44100) for i, n in enumerate(lens)]
    tl = compose.concat(files, out(tmp_path), limit=False)
    assert tl.frames == sum(lens) == len(read(out(tmp_path)))
    tl = compose.concat(files, out(tmp_path, "x.wav"), crossfade=0.25, limit=False)
    x = int(round(0.25 * 44100))
    assert tl.frames == sum(lens) - 2 * x == len(read(out(tmp_path, "x.wav")))
    tl = compose.concat(files, out(tmp_path, "g.wav"), gap=0.1, limit=False, bit_depth=32)
    g = int(round(0.1 * 44100))
    y = read(out(tmp_path, "g.wav"))
    assert tl.frames == sum(lens) + 2 * g == len(y)
    assert np.all(y[lens[0]:lens[0] + g] == 0) and np.any(y[lens[0] + g] != 0)
    assert [s.start_sample for s in tl.sources] == [0, lens[0] + g, lens[0] + lens[1] + 2 * g]


def test_concat_without_crossfade_is_exact_join(tmp_path, wav):
    a, b = noise(0.3, amp=0.2), noise(0.2, amp=0.2, seed=2)
    compose.concat([wav("a.wav", a), wav("b.wav", b)], out(tmp_path), limit=False, bit_depth=32)
    assert np.array_equal(read(out(tmp_path)), np.concatenate([a, b]))


def test_crossfade_longer_than_a_track_is_an_error(tmp_path, wav):
    a = wav("long.wav", noise(2))
    b = wav("short.wav", noise(0.5))
    with pytest.raises(UsageError, match=r"short\.wav: crossfade 1 s is longer than the track"):
        compose.concat([a, b], out(tmp_path), crossfade=1.0)
    with pytest.raises(UsageError, match=r"short\.wav: crossfade 0.3 s is more than half the length"):
        compose.concat([a, b, a], out(tmp_path), crossfade=0.3)  # middle track faded at both ends
    assert not Path(out(tmp_path)).exists()


def test_equal_power_crossfade_has_no_dip_linear_has(tmp_path, wav):
    a = wav("a.wav", noise(2, amp=0.2, seed=1))
    b = wav("b.wav", noise(2, amp=0.2, seed=2))

    def dip(curve):
        p = out(tmp_path, f"{curve}.wav")
        compose.concat([a, b], p, crossfade=1.0, curve=curve, limit=False)
        y = read(p)
        rms = lambda z: 10 * np.log10(np.mean(z.astype(np.float64) ** 2))
        mid = y[2 * SR - SR // 2 - 2400:2 * SR - SR // 2 + 2400]  # the centre of the crossfade
        return rms(mid) - rms(y[:SR // 2])

    assert abs(dip("equal-power")) < 0.5
    assert dip("linear") < -2.5


def test_trim_silence_records_offsets(tmp_path, wav):
    x = np.concatenate([np.zeros((24000, 2)), noise(1, amp=0.2), np.zeros((12000, 2))]).astype(np.float32)
    p = wav("padded.wav", x)
    tl = compose.concat([p, p], out(tmp_path), trim_silence=True, limit=False, bit_depth=32)
    s = tl.sources[0]
    assert (s.offset_sample, s.source_frames) == (24000, 48000)
    assert tl.frames == 96000
    assert np.array_equal(read(out(tmp_path))[:48000], x[24000:72000])


# ------------------------------------------------------------------------------------------ overlay

def click(n: int, at: int, channels: int = 1) -> np.ndarray:
    x = np.zeros((n, channels), np.float32)
    x[at] = 0.5
    return x


@pytest.mark.parametrize("at", [0.0, 1.2345, 0.00002, 2.5])
def test_overlay_offset_is_sample_exact(tmp_path, wav, at):
    base = wav("base.wav", np.zeros((3 * SR, 1), np.float32))
    top = wav("top.wav", click(SR, 100))
    tl = compose.overlay(base, top, out(tmp_path), at=at, limit=False, bit_depth=32)
    y = read(out(tmp_path))[:, 0]
    assert np.flatnonzero(y).tolist() == [round(at * SR) + 100]
    assert tl.sources[1].start_sample == round(at * SR)
    assert tl.frames == max(3 * SR, round(at * SR) + SR)  # extends when the top runs past the base


def test_overlay_offset_at_other_rate(tmp_path, wav):
    base = wav("base.wav", np.zeros((44100, 1), np.float32), sr=44100)
    top = wav("top.wav", click(4410, 0), sr=44100)
    compose.overlay(base, top, out(tmp_path), at=0.123457, limit=False, bit_depth=32)
    assert np.flatnonzero(read(out(tmp_path))[:, 0]).tolist() == [round(0.123457 * 44100)]


def test_overlay_offset_past_end_is_an_error(tmp_path, wav):
    base = wav("base.wav", noise(1))
    top = wav("top.wav", noise(0.5))
    with pytest.raises(UsageError, match=r"base\.wav: offset 1.5 s is past the end of the base track \(1.000 s\)"):
        compose.overlay(base, top, out(tmp_path), at=1.5)
    assert not Path(out(tmp_path)).exists()


def test_overlay_loop_repeats_top_to_end_of_base(tmp_path, wav):
    base = wav("base.wav", np.zeros((SR, 1), np.float32))
    top = wav("top.wav", click(10000, 5))
    tl = compose.overlay(base, top, out(tmp_path), at=0.1, loop=True, limit=False, bit_depth=32)
    y = read(out(tmp_path))[:, 0]
    assert len(y) == SR and tl.frames == SR
    assert np.flatnonzero(y).tolist() == [4800 + 5 + 10000 * k for k in range(5)]


def test_overlay_duck_lowers_base_while_top_sounds(tmp_path, wav):
    base = wav("base.wav", sine(200, 4, channels=2, amp=0.3))
    voice = wav("voice.wav", noise(1, amp=0.2))
    tl = compose.overlay(base, voice, out(tmp_path), at=1.5, duck=12, limit=False, bit_depth=32)
    assert tl.sources[0].duck.db == 12 and tl.sources[0].duck.by == 1
    bed = np.concatenate(list(compose.source_blocks(tl, 0)))
    lvl = lambda a, b: 20 * np.log10(np.sqrt(np.mean(bed[int(a * SR):int(b * SR)] ** 2)) / (0.3 / np.sqrt(2)))
    assert abs(lvl(0.2, 1.4)) < 0.01  # before: untouched
    assert abs(lvl(1.7, 2.4) + 12) < 0.3  # under the voice: -12 dB
    assert abs(lvl(3.6, 4.0)) < 0.2  # released afterwards
    y = read(out(tmp_path))
    top = np.concatenate(list(compose.source_blocks(tl, 1)))
    assert np.abs(y - (bed + top)).max() < 1e-6  # the stems add up to the mix


def test_source_blocks_add_up_to_output(tmp_path, wav):
    files = [wav(f"{i}.wav", noise(1 + i * 0.3, amp=0.1, seed=i)) for i in range(3)]
    tl = compose.concat(files, out(tmp_path), crossfade=0.2, gains=[1, -2, 3], fade_in=0.1, limit=False,
                        bit_depth=32)
    parts = [np.concatenate(list(compose.source_blocks(tl, i, blocksize=10000))) for i in range(3)]
    assert all(len(p) == tl.frames for p in parts)
    assert np.abs(read(out(tmp_path)) - sum(parts)).max() < 1e-6


# ------------------------------------------------------------------------------------------ files

def test_sidecar_timeline_written_and_readable(tmp_path, wav):
    a = wav("a.wav", noise(0.5))
    tl = compose.mix([a], out(tmp_path), gains=[-1.5], labels=["rain"])
    side = Path(out(tmp_path) + ".timeline.json")
    d = json.loads(side.read_text())
    assert d["schema"] == "avmix.timeline/1" and d["sample_rate"] == SR and d["duration"] == 0.5
    s = d["sources"][0]
    assert s["label"] == "rain" and s["gain_db"] == -1.5 and s["hash"].startswith("xxh3_128:")
    assert (s["start_sample"], s["end_sample"], s["start"], s["end"]) == (0, 24000, 0.0, 0.5)
    back = Timeline.load(side)
    assert back.sources[0].hash == tl.sources[0].hash and back.peak_dbfs == tl.peak_dbfs
    other = tmp_path / "t.json"
    compose.mix([a], out(tmp_path, "b.wav"), timeline_path=other)
    assert other.exists() and not Path(out(tmp_path, "b.wav") + ".timeline.json").exists()


def test_render_from_saved_timeline_reproduces_output(tmp_path, wav):
    a, b = wav("a.wav", noise(1, amp=0.3)), wav("b.wav", sine(300, 0.7, channels=2))
    tl = compose.overlay(a, b, out(tmp_path), at=0.2, duck=6, normalize="lufs", bit_depth=32)
    again = compose.render(Timeline.load(out(tmp_path) + ".timeline.json"), out(tmp_path, "again.wav"),
                           bit_depth=32)
    assert again.master_gain_db == tl.master_gain_db
    assert np.array_equal(read(out(tmp_path)), read(out(tmp_path, "again.wav")))


def test_output_checks(tmp_path, wav):
    a = wav("a.wav", noise(0.5))
    with pytest.raises(OutputError, match="same file as an input"):
        compose.mix([a], a, overwrite=True)
    p = out(tmp_path)
    Path(p).write_bytes(b"keep")
    with pytest.raises(OutputError, match="already exists"):
        compose.mix([a], p)
    assert Path(p).read_bytes() == b"keep"
    compose.mix([a], p, overwrite=True)
    assert len(read(p)) == 24000


@pytest.mark.parametrize("kw", [{"crossfade": -1}, {"gap": float("nan")}, {"crossfade": 1e9},
                                {"gap": float("inf")}, {"fade_in": -0.5}, {"gains": [float("nan")]},
                                {"curve": "cubic"}])
def test_bad_concat_numbers(tmp_path, wav, kw):
    a = wav("a.wav", noise(0.5))
    with pytest.raises(UsageError):
        compose.concat([a, a], out(tmp_path), **kw)
    assert not Path(out(tmp_path)).exists()


@pytest.mark.parametrize("kw", [{"at": -1.0}, {"at": float("nan")}, {"at": 1e6}, {"duck": float("inf")}])
def test_bad_overlay_numbers(tmp_path, wav, kw):
    a = wav("a.wav", noise(0.5))
    with pytest.raises(UsageError):
        compose.overlay(a, a, out(tmp_path), **kw)


def test_plan_is_pure_arithmetic(tmp_path, wav):
    a = open_audio(wav("a.wav", noise(1.0)))
    b = open_audio(wav("b.wav", noise(0.5, sr=44100), sr=44100))
    tl = plan.plan_concat([a, b, a], crossfade=0.1, gap=0.0, settings=plan.Settings())
    assert [s.start_sample for s in tl.sources] == [0, 48000 - 4800, 48000 - 4800 + 24000 - 4800]
    assert tl.frames == 48000 * 2 + 24000 - 2 * 4800
    assert tl.sources[1].fade_in == tl.sources[1].fade_out == 0.1 and tl.sources[0].fade_in == 0


def test_ducking_does_not_depend_on_normalisation(tmp_path, wav):
    base = wav("base.wav", sine(200, 3, channels=2, amp=0.3))
    voice = wav("voice.wav", noise(1, amp=0.0077))  # -47 dBFS rms: under the -45 dB sidechain threshold,
    # over it if the master gain leaked into the sidechain
    tl = compose.overlay(base, voice, out(tmp_path), at=1.0, duck=10, normalize="lufs", target=-6.0, limit=False)
    assert tl.master_gain_db > 3
    loud = np.concatenate(list(compose.source_blocks(tl, 0)))
    tl.master_gain_db = 0.0
    plain = np.concatenate(list(compose.source_blocks(tl, 0)))
    nz = np.abs(plain) > 1e-3
    ratio = loud[nz] / plain[nz]
    assert np.allclose(ratio, ratio[0], rtol=1e-5)  # the same ducking curve, just scaled


def test_failed_write_leaves_no_output(tmp_path, wav, monkeypatch):
    a = wav("a.wav", noise(3, amp=0.2))
    calls = []

    def broken(self, block):
        calls.append(len(block))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(compose.AudioWriter, "write", broken)
    with pytest.raises(OSError, match="No space"):
        compose.mix([a], out(tmp_path), normalize="lufs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]  # no output, no temp file, no sidecar


def test_gain_search_steps_by_the_error_then_brackets_and_stays_in_bounds():
    from avmix.audio import gainsearch

    # first correction: the whole remaining error (loudness rises at most 1 LU per dB)
    assert gainsearch.next_gain([(3.0, -15.0)], -14.0, 3.0) == pytest.approx(4.0)
    # a bracket: the next try lies strictly inside it
    g = gainsearch.next_gain([(3.0, -15.0), (5.0, -13.0)], -14.0, 3.0)
    assert 3.0 < g < 5.0
    # an exact power curve (a linear part plus a constant floor) is solved in one step
    def lufs(gain):
        return 10 * math.log10(0.5 * 10 ** (gain / 10) + 0.01)
    g = gainsearch.next_gain([(0.0, lufs(0.0)), (10.0, lufs(10.0))], -1.0, 0.0)
    assert lufs(g) == pytest.approx(-1.0, abs=1e-5)  # gains are kept to 6 decimals
    # never below the first pass's gain, never more than MAX_BOOST_DB above it
    assert gainsearch.next_gain([(2.0, -40.0)], -14.0, 2.0) == 2.0 + gainsearch.MAX_BOOST_DB
    assert gainsearch.next_gain([(2.0, -10.0)], -14.0, 2.0) == 2.0


def test_clipping_an_unlimited_sum_in_integer_pcm_is_said(tmp_path, wav, capsys):
    a = wav("a.wav", sine(440, 0.5, channels=2, amp=0.8))
    compose.mix([a, a], tmp_path / "o24.wav", limit=False)
    err = capsys.readouterr().err
    assert "peaks at +4.1 dBFS" in err and "24-bit file is clipped" in err
    assert sf.read(str(tmp_path / "o24.wav"))[0].max() == pytest.approx(1.0, abs=1e-6)
    compose.mix([a, a], tmp_path / "o32.wav", limit=False, bit_depth=32)  # float keeps the exact sum
    assert capsys.readouterr().err == ""
    assert sf.read(str(tmp_path / "o32.wav"))[0].max() == pytest.approx(1.6, abs=1e-4)
    compose.mix([a, a], tmp_path / "lim.wav", bit_depth=16)  # the limiter keeps it under full scale
    assert capsys.readouterr().err == ""
    # peak-normalised to 0 dBFS: float rounding may overshoot by less than a step, which is no clipping
    compose.mix([a], tmp_path / "pk.wav", normalize="peak", target=0.0, limit=False)
    assert capsys.readouterr().err == ""


def test_unreachable_lufs_target_keeps_the_closest_pass(tmp_path, wav):
    """Lone clicks in near-silence: more gain lets the noise past the gate and loudness falls. The
    search must not keep a pass further from the target than one it already made."""
    k = wav("k.wav", clicks_over_noise(every=1.0, bed=0.001))
    seen = []
    real = compose._Measure.result

    def result(self):
        peak, level = real(self)
        if level is not None:
            seen.append(level)
        return peak, level

    compose._Measure.result = result
    try:
        tl = compose.mix([k], out(tmp_path), normalize="lufs", target=-20.0, bit_depth=32)
    finally:
        compose._Measure.result = real
    passes = seen[1:]  # the first is the measuring pass
    assert len(passes) >= 2
    measured = pyln.Meter(SR).integrated_loudness(read(out(tmp_path)).astype(np.float64))
    assert abs(measured - tl.lufs) < 0.05
    assert abs(tl.lufs + 20.0) <= min(abs(p + 20.0) for p in passes) + 1e-6


def test_sidecar_records_crossfades_in_samples_and_seconds(tmp_path, wav):
    a, b = wav("a.wav", noise(1.0, seed=1)), wav("b.wav", noise(0.75, seed=2))
    compose.concat([a, b], out(tmp_path), crossfade=0.25, fade_out=0.1)
    d = json.loads(Path(out(tmp_path) + ".timeline.json").read_text())
    sa, sb = d["sources"]
    assert (sa["start_sample"], sa["end_sample"], sb["start_sample"], sb["end_sample"]) == (0, 48000, 36000, 72000)
    assert (sa["start"], sa["end"], sb["start"], sb["end"]) == (0.0, 1.0, 0.75, 1.5)
    assert (sa["fade_in"], sa["fade_out"], sb["fade_in"], sb["fade_out"]) == (0.0, 0.25, 0.25, 0.0)
    assert sa["fade_curve"] == sb["fade_curve"] == "equal-power"
    assert d["frames"] == 72000 and d["duration"] == 1.5 and d["fade_out"] == 0.1


def test_gain_search_verdict_keeps_the_closest_pass_when_it_ends():
    from avmix.audio import gainsearch

    v = lambda tries, final=False: gainsearch.verdict(tries, -14.0, 0.0, tolerance=0.2, final=final)  # noqa: E731
    assert v([(0.0, -14.1)]) is None  # within tolerance: kept
    assert v([(0.0, -15.0)]) == pytest.approx(1.0)  # not yet: step by the error
    assert v([(0.0, -15.0), (1.0, -16.0)]) == 0.0  # louder gain came out quieter: back to the closest
    assert v([(0.0, -15.0), (1.0, -16.0), (0.0, -15.0)]) is None  # ... which, written again, is kept
    assert v([(0.0, -15.0), (1.0, -14.5)], final=True) is None  # the search ends on its closest pass


@pytest.mark.parametrize("mode", ["mix", "concat"])
def test_stems_sum_to_the_mix_under_lufs_normalisation_and_fades(tmp_path, wav, mode):
    """The README's promise: with --no-limit the stems sum to the mix. Here the master gain (LUFS
    normalisation), master fades and source gains all act, and the sum is checked against the
    composed output itself, not against another stem file."""
    a, b = wav("a.wav", noise(2.0, amp=0.1, seed=1)), wav("b.wav", sine(330, 1.5, channels=2, amp=0.2))
    stems = tmp_path / "stems"
    fn = compose.mix if mode == "mix" else compose.concat
    extra = {"crossfade": 0.4} if mode == "concat" else {}
    tl = fn([a, b], out(tmp_path), normalize="lufs", target=-20.0, limit=False, fade_in=0.3, fade_out=0.5,
            gains=[2.0, -3.0], bit_depth=32, stems_dir=stems, **extra)
    assert abs(tl.master_gain_db) > 2  # the normalisation acts, so a stem without it would show
    y = read(out(tmp_path))
    parts = [read(p) for p in sorted(stems.iterdir())]
    assert len(parts) == 2 and all(p.shape == y.shape for p in parts)
    assert np.abs(parts[0] + parts[1] - y).max() < 1e-6
    assert abs(pyln.Meter(SR).integrated_loudness(y.astype(np.float64)) + 20.0) < 0.5


def test_lufs_rewrite_rule_lands_within_0_2_lu(tmp_path, wav):
    """The README's rule: a limited pass more than 0.2 LU off its target is written again. The click
    track aimed at -12 LUFS lands within 0.2 LU (a 0.49 LU rule left it at -11.62), by avmix's meter
    and by pyloudnorm."""
    calls = []
    tl = compose.mix([wav("k.wav", clicks_over_noise())], out(tmp_path), normalize="lufs", target=-12.0,
                     bit_depth=32, progress=lambda *c: calls.append(c))
    measured = pyln.Meter(SR).integrated_loudness(read(out(tmp_path)).astype(np.float64))
    assert abs(tl.lufs + 12.0) <= 0.2 and abs(measured + 12.0) <= 0.2, (tl.lufs, measured)
    assert mix_passes(calls) >= 2  # the first limited pass missed by more than 0.2 LU
