"""Mixing like a reference (--reference): what is matched, how closely, and the edge cases.

Tolerances stated here are the promises of the README: a mix matched to itself changes by under
0.1 dB in every third-octave band; a known EQ tilt is recovered within 1.5 dB per third-octave band
(63 Hz .. 12.5 kHz, after the overall level); a width change within 0.5 dB of side/mid per broad band;
a level change within 0.2 LU (the LUFS search's tolerance).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from avmix.audio import compose, dynamics, match
from avmix.audio.loudness import integrated_loudness
from avmix.audio.reference import Analyzer
from avmix.errors import InputError, UsageError

SR = 48000


def tracks(seconds: float = 8.0, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """Two music-like stereo tracks: a pulsing chord (panned left) and kicks with noise (wide)."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(3)
    env = np.exp(-(t % 0.5) * 6.0)
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 880.0)) / 4 * env
    a = np.stack([chord * 0.3, chord * 0.15], axis=1)
    kick = np.sin(2 * np.pi * 55 * t) * np.exp(-(t % 0.25) * 20)
    hiss = rng.standard_normal((len(t), 2)) * 0.03
    b = kick[:, None] * 0.3 + hiss
    return a.astype(np.float32), b.astype(np.float32)


def bands_db(x: np.ndarray, sr: int = SR, which: str = "total") -> tuple[np.ndarray, np.ndarray]:
    """Third-octave band powers (dB) of a whole signal, 63 Hz .. 12.5 kHz (independent of avmix)."""
    if which == "total":
        y = x.astype(np.float64)
    else:
        m, s = (x[:, 0] + x[:, 1]) / 2, (x[:, 0] - x[:, 1]) / 2
        y = (m if which == "mid" else s)[:, None].astype(np.float64)
    p = (np.abs(np.fft.rfft(y, axis=0)) ** 2).sum(axis=1)
    f = np.fft.rfftfreq(len(y), 1 / sr)
    centres = 1000.0 * 2.0 ** (np.arange(-12, 12) / 3)
    out = np.array([p[(f >= c * 2 ** (-1 / 6)) & (f < c * 2 ** (1 / 6))].sum() for c in centres])
    return centres, 10 * np.log10(out + 1e-20)


def side_mid_db(x: np.ndarray, lo: float, hi: float, sr: int = SR) -> float:
    m, s = (x[:, 0] + x[:, 1]) / 2, (x[:, 0] - x[:, 1]) / 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    sel = (f >= lo) & (f < hi)
    return 10 * math.log10((np.abs(np.fft.rfft(s)) ** 2)[sel].sum() / (np.abs(np.fft.rfft(m)) ** 2)[sel].sum())


def filtered(x: np.ndarray, points: np.ndarray, db: np.ndarray, sr: int = SR) -> np.ndarray:
    h = match.fir(points, db, sr, 8192)
    return np.stack([np.convolve(x[:, c], h)[4096:4096 + len(x)] for c in range(x.shape[1])], 1).astype(np.float32)


@pytest.fixture
def pair(tmp_path):
    a, b = tracks()
    pa, pb = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(pa, a, SR, subtype="FLOAT")
    sf.write(pb, b, SR, subtype="FLOAT")
    return pa, pb, a + b


def mix_to(tmp_path, pair, ref: np.ndarray | None, sr: int = SR, name: str = "out.wav", **kw) -> tuple:
    pa, pb, _ = pair
    if ref is not None:
        sf.write(tmp_path / "ref.wav", ref, sr, subtype="FLOAT")
    kw.setdefault("reference", str(tmp_path / "ref.wav"))
    kw.setdefault("loudness", True)  # and the "after" figures
    tl = compose.mix([pa, pb], tmp_path / name, overwrite=True, bit_depth=32, **kw)
    out, _ = sf.read(tmp_path / name, dtype="float32")
    return tl, out


def test_self_match_leaves_every_band_within_a_tenth_of_a_db(tmp_path, pair):
    tl, out = mix_to(tmp_path, pair, pair[2], limit=False)
    _, before = bands_db(pair[2])
    _, after = bands_db(out)
    assert np.abs(after - before).max() < 0.1
    for which in ("mid", "side"):
        assert np.abs(bands_db(out, which=which)[1] - bands_db(pair[2], which=which)[1]).max() < 0.1
    assert tl.master["dynamics"] is None


def test_known_tilt_is_recovered(tmp_path, pair):
    pts = match._points(SR)
    tilt = np.clip(-2.0 * np.log2(pts / 1000.0), -8, 8)  # -2 dB per octave around 1 kHz
    ref = filtered(pair[2], pts, tilt) * np.float32(0.7)
    _, out = mix_to(tmp_path, pair, ref, limit=False)
    _, want = bands_db(ref)
    _, got = bands_db(out)
    _, was = bands_db(pair[2])
    err, err0 = (got - want) - np.median(got - want), (was - want) - np.median(was - want)
    assert np.abs(err).max() < 1.5, np.round(err, 2)
    assert np.abs(err0).max() > 6  # the tilt was there to recover


def test_known_width_is_recovered(tmp_path, pair):
    x = pair[2]
    m, s = (x[:, 0] + x[:, 1]) / 2, (x[:, 0] - x[:, 1]) / 2
    s = s * 0.4  # -8 dB of side
    ref = np.stack([m + s, m - s], 1).astype(np.float32)
    _, out = mix_to(tmp_path, pair, ref, limit=False)
    for lo, hi in ((40, 200), (200, 1000), (1000, 5000), (5000, 16000)):
        assert abs(side_mid_db(out, lo, hi) - side_mid_db(ref, lo, hi)) < 0.5, (lo, hi)
    assert abs(side_mid_db(x, 200, 1000) - side_mid_db(ref, 200, 1000)) > 7


def test_known_level_is_recovered(tmp_path, pair):
    ref = pair[2] * np.float32(10 ** (-9 / 20))
    tl, out = mix_to(tmp_path, pair, ref)
    assert abs(integrated_loudness(out, SR) - integrated_loudness(ref, SR)) < 0.2
    assert tl.master_gain_db == pytest.approx(-9.0, abs=0.3)


def test_strength_blends_from_untouched_to_matched(tmp_path, pair):
    ref = pair[2] * np.float32(10 ** (-10 / 20))
    _, none = mix_to(tmp_path, pair, ref, name="s0.wav", reference_strength=0.0, limit=False)
    _, half = mix_to(tmp_path, pair, ref, name="s5.wav", reference_strength=0.5, limit=False)
    assert np.abs(none - pair[2]).max() < 1e-4
    assert integrated_loudness(half, SR) == pytest.approx(integrated_loudness(pair[2], SR) - 5.0, abs=0.2)


def test_compression_brings_the_loudness_range_towards_the_reference(tmp_path, pair):
    # the mix rises 10 dB over its length; the reference is steady: a compressor is needed
    n = len(pair[2])
    ride = (10.0 ** (np.linspace(-10.0, 0.0, n) / 20.0))[:, None].astype(np.float32)
    pa, pb, _ = pair
    a, b = tracks()
    sf.write(pa, a * ride, SR, subtype="FLOAT")
    sf.write(pb, b * ride, SR, subtype="FLOAT")
    tl, out = mix_to(tmp_path, (pa, pb, pair[2] * ride), pair[2], limit=False)
    rep = tl.reference_report
    before, after, target = rep["before"]["lra"], rep["after"]["lra"], rep["target"]["lra"]
    assert before > target + 4
    assert abs(after - target) < 0.5 * abs(before - target), rep
    assert tl.master["dynamics"]["slow_ratio"] > 1.0  # a compressor, not an expander


def test_true_peak_ceiling_holds_with_a_loud_reference(tmp_path, pair):
    x = pair[2] * 6.0  # far over full scale: as loud as a hard-limited master
    ref = np.clip(x, -0.95, 0.95).astype(np.float32)
    tl, out = mix_to(tmp_path, pair, ref)
    assert 20 * math.log10(dynamics.true_peak(out)) <= -1.0 + 0.05
    assert tl.limit_dbtp == -1.0


def test_stems_sum_to_the_mix(tmp_path, pair):
    pts = match._points(SR)
    ref = filtered(pair[2], pts, np.clip(np.log2(pts / 1000.0), -5, 5)) * np.float32(0.5)
    tl, out = mix_to(tmp_path, pair, ref, limit=False, stems_dir=tmp_path / "stems")
    s0, _ = sf.read(tmp_path / "stems" / "00-a.wav", dtype="float32")
    s1, _ = sf.read(tmp_path / "stems" / "01-b.wav", dtype="float32")
    assert np.abs(s0 + s1 - out).max() < 1e-5
    assert np.abs(out - pair[2]).max() > 0.01  # and the correction did something


def test_timeline_records_the_correction(tmp_path, pair):
    ref = filtered(pair[2], match._points(SR), np.linspace(3, -3, len(match._points(SR))))
    mix_to(tmp_path, pair, ref)
    d = json.loads((tmp_path / "out.wav.timeline.json").read_text())
    m = d["master"]
    assert m["reference"].endswith("ref.wav")
    assert len(m["eq"]["freqs_hz"]) == len(m["eq"]["mid_db"]) == len(m["eq"]["side_db"])
    assert max(abs(v) for v in m["eq"]["mid_db"]) > 1.0
    assert m["target_lufs"] == pytest.approx(integrated_loudness(ref, SR), abs=0.01)


def test_silent_reference_leaves_the_mix_with_a_note(tmp_path, pair, capsys):
    tl, out = mix_to(tmp_path, pair, np.zeros((SR * 4, 2), np.float32), limit=False)
    assert "silent" in capsys.readouterr().err
    assert np.abs(out - pair[2]).max() < 1e-6


def test_mono_reference_keeps_the_width(tmp_path, pair, capsys):
    x = pair[2]
    ref = ((x[:, 0] + x[:, 1]) / 2 * 0.5)[:, None].astype(np.float32)
    tl, out = mix_to(tmp_path, pair, ref, limit=False)
    assert "mono" in capsys.readouterr().err
    assert abs(side_mid_db(out, 200, 5000) - side_mid_db(x, 200, 5000)) < 0.3
    # the output measures what the reference file measures (its own, mono, loudness)
    assert abs(integrated_loudness(out, SR) - integrated_loudness(ref, SR)) < 0.2


def test_short_reference_skips_dynamics(tmp_path, pair, capsys):
    ref = pair[2][:SR] * np.float32(0.5)  # 1 s
    tl, out = mix_to(tmp_path, pair, ref, limit=False)
    assert "dynamics are not matched" in capsys.readouterr().err
    assert tl.master["dynamics"] is None
    assert abs(integrated_loudness(out, SR) - integrated_loudness(ref, SR)) < 0.5


def test_too_short_reference_is_an_error_naming_it(tmp_path, pair):
    with pytest.raises(InputError) as e:
        mix_to(tmp_path, pair, pair[2][:int(0.3 * SR)])
    assert "ref.wav" in str(e.value) and "0.4" in str(e.value)
    assert not (tmp_path / "out.wav").exists()


def test_reference_at_another_rate(tmp_path, pair):
    import soxr
    ref = soxr.resample(pair[2] * np.float32(0.5), SR, 44100).astype(np.float32)
    tl, out = mix_to(tmp_path, pair, ref, sr=44100, limit=False)
    assert tl.sample_rate == SR
    assert abs(integrated_loudness(out, SR) - integrated_loudness(ref, 44100)) < 0.2
    _, d = bands_db(out)
    _, d0 = bands_db(pair[2])
    assert np.abs((d - d0) - np.median(d - d0))[:-2].max() < 0.5  # same tone, so nearly no EQ


def test_normalize_with_reference_is_a_usage_error(tmp_path, pair):
    with pytest.raises(UsageError):
        mix_to(tmp_path, pair, pair[2], normalize="lufs")
    with pytest.raises(UsageError):
        compose.mix([pair[0]], tmp_path / "o.wav", reference_balance=True)


def test_balance_recovers_track_gains(tmp_path, pair):
    a, b = tracks()
    ref = a * np.float32(10 ** (-7 / 20)) + b
    tl, _ = mix_to(tmp_path, pair, ref.astype(np.float32), limit=False, reference_balance=True)
    g = tl.master["balance_db"]
    assert g[0] - g[1] == pytest.approx(-7.0, abs=1.0)
    assert tl.sources[0].gain_db - tl.sources[1].gain_db == pytest.approx(-7.0, abs=1.0)


def test_corrector_output_does_not_depend_on_block_size():
    a, b = tracks(3.0)
    x = a + b
    pts = match._points(SR)
    corr = {"eq": {"freqs_hz": list(pts), "mid_db": list(np.linspace(4, -4, len(pts))),
                   "side_db": list(np.linspace(-3, 3, len(pts))), "taps": 8192},
            "dynamics": {"hop": 512, "gain_db": list(np.sin(np.arange(len(x) // 512 + 1) / 9.0) * 3)}}
    outs = []
    for bs in (131072, 1000, 48001):
        c = match.Corrector(corr, SR, 2)
        outs.append(np.concatenate(list(c.run(x[i:i + bs] for i in range(0, len(x), bs)))))
    assert len(outs[0]) == len(x)
    assert np.abs(outs[0] - outs[1]).max() < 1e-5 and np.abs(outs[0] - outs[2]).max() < 1e-5


def test_analyzer_figures_against_independent_ones():
    a, b = tracks(6.0)
    x = a + b
    an = Analyzer(SR, 2)
    for i in range(0, len(x), 7777):
        an.add(x[i:i + 7777])
    m = an.result()
    assert m.lufs == pytest.approx(integrated_loudness(x, SR), abs=1e-3)
    f = np.fft.rfftfreq(len(x), 1 / SR)
    mid, side = (x[:, 0] + x[:, 1]) / 2, (x[:, 0] - x[:, 1]) / 2
    ps, pm = np.abs(np.fft.rfft(side)) ** 2, np.abs(np.fft.rfft(mid)) ** 2
    assert m.side_mid() == pytest.approx(ps.sum() / pm.sum(), rel=0.1)
    p = ps + pm
    assert m.spectral()["centroid_hz"] == pytest.approx((f * p).sum() / p.sum(), rel=0.1)


def test_cli_json_reports_reference_before_after_target(tmp_path, pair, run_cli):
    ref = tmp_path / "ref.wav"
    sf.write(ref, pair[2] * np.float32(0.3), SR, subtype="FLOAT")
    r = run_cli("mix", pair[0], pair[1], "-o", tmp_path / "o.wav", "--reference", ref, "--json")
    assert r.code == 0, r.err
    d = json.loads(r.out)["reference"]
    assert d["path"] == str(ref)
    for part in ("before", "after", "target"):
        assert set(d[part]) == {"lufs", "lra", "crest_db", "centroid_hz", "side_mid"}
    assert abs(d["after"]["lufs"] - d["target"]["lufs"]) < 0.2
    assert abs(d["before"]["lufs"] - d["target"]["lufs"]) > 5


def test_generate_json_reports_reference_also_from_the_cache(tmp_path, pair, run_cli):
    ref = tmp_path / "ref.wav"
    sf.write(ref, pair[2] * np.float32(0.3), SR, subtype="FLOAT")
    args = ("generate", pair[0], pair[1], "-o", tmp_path / "o.mp4", "--reference", ref, "--json", "-y",
            "--size", "160x90", "--fps", "10", "--backend", "procedural", "--workdir", tmp_path / "work")
    first, again = run_cli(*args), run_cli(*args)
    assert first.code == 0 and again.code == 0, (first.err, again.err)
    d, d2 = json.loads(first.out), json.loads(again.out)
    assert "compose" in d2["reused"] and d2["reference"] == d["reference"]
    assert d["reference"]["path"] == str(ref)
    assert abs(d["reference"]["after"]["lufs"] - d["reference"]["target"]["lufs"]) < 0.2
    assert abs(d["reference"]["before"]["lufs"] - d["reference"]["target"]["lufs"]) > 5


@pytest.mark.parametrize("extra", [("--normalize", "lufs"), ("--target", "-14"), ("--reference-strength", "2")])
def test_cli_usage_errors_exit_2(tmp_path, pair, run_cli, extra):
    ref = tmp_path / "ref.wav"
    sf.write(ref, pair[2], SR, subtype="FLOAT")
    r = run_cli("mix", pair[0], pair[1], "-o", tmp_path / "o.wav", "--reference", ref, *extra)
    assert r.code == 2 and not (tmp_path / "o.wav").exists()
    assert len([ln for ln in r.err.splitlines() if "error" in ln]) == 1


def test_cli_missing_or_short_reference_is_one_line(tmp_path, pair, run_cli):
    r = run_cli("mix", pair[0], "-o", tmp_path / "o.wav", "--reference", tmp_path / "nope.wav")
    assert r.code == 1 and "nope.wav" in r.err and "Traceback" not in r.err
    sf.write(tmp_path / "short.wav", pair[2][:1000], SR)
    r = run_cli("mix", pair[0], "-o", tmp_path / "o.wav", "--reference", tmp_path / "short.wav")
    assert r.code == 1 and "short.wav" in r.err and not (tmp_path / "o.wav").exists()


def test_real_recordings_match_a_treated_real_reference(tmp_path):
    import real  # tests/real.py: the shared real recordings
    from avmix.audio.io import open_audio
    music = [open_audio(p) for p in real.of_kind("music")[:2]]
    x = [f.read(sample_rate=SR, channels=2)[:SR * 15] for f in music]
    ref = filtered(x[1], match._points(SR), np.clip(-2.0 * np.log2(match._points(SR) / 1000.0), -8, 8))
    sf.write(tmp_path / "ref.wav", ref * np.float32(0.5), SR, subtype="FLOAT")
    tl = compose.mix([real.path("music_electronic.flac")], tmp_path / "o.wav", reference=str(tmp_path / "ref.wav"),
                     duration="longest", loudness=True)
    rep = tl.reference_report
    assert abs(rep["after"]["lufs"] - rep["target"]["lufs"]) < 0.3
    err_before = abs(math.log(rep["before"]["centroid_hz"] / rep["target"]["centroid_hz"]))
    err_after = abs(math.log(rep["after"]["centroid_hz"] / rep["target"]["centroid_hz"]))
    assert err_after < 0.5 * err_before


def test_generate_with_reference_records_the_correction_and_stems_sum(tmp_path, pair, run_cli):
    ref = tmp_path / "ref.wav"
    pts = match._points(SR)
    sf.write(ref, filtered(pair[2], pts, np.clip(np.log2(pts / 1000.0), -6, 6)) * np.float32(0.3), SR,
             subtype="FLOAT")
    r = run_cli("generate", pair[0], pair[1], "-o", tmp_path / "o.mp4", "--size", "64x36", "--fps", "5",
                "--backend", "procedural", "--reference", ref, "--no-limit", "--stems", tmp_path / "stems",
                "--workdir", tmp_path / "work", "-q")
    assert r.code == 0, r.err
    tl = json.loads((tmp_path / "work" / "timeline.json").read_text())
    assert tl["master"]["eq"] is not None and tl["master"]["reference"] == str(ref)
    audio, _ = sf.read(tmp_path / "work" / "audio.wav", dtype="float32")
    stems = sorted((tmp_path / "stems").glob("0*.wav"))  # (a mix.wav sits beside them)
    total = sum(sf.read(p, dtype="float32")[0] for p in stems)
    assert len(stems) == 2 and np.abs(total - audio).max() < 1e-4
