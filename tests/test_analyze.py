"""Audio features on the video frame grid: envelopes, onsets, tempo, beats, frame counts."""
from __future__ import annotations

import math

import numpy as np
import pytest

from avmix.audio import analyze as an
from avmix.timeline import Analysis, Source, Timeline
from conftest import sine, write_wav

SR = 48000


def clicks(times, seconds, sr=SR, amp=0.8):
    x = np.zeros(int(seconds * sr), np.float32)
    for t in times:
        i = int(round(t * sr))
        x[i:i + 48] = amp * np.hanning(48)
    return x


def test_tone_only_in_frames_10_to_19():
    fps = 30
    x = np.zeros((2 * SR, 2), np.float32)
    a, b = round(10 * SR / fps), round(20 * SR / fps)
    x[a:b] = sine(440, (b - a) / SR, amp=0.5, channels=2)
    env = an.envelope(x, SR, fps)
    assert len(env) == 60
    assert np.all(env[:10] == 0) and np.all(env[20:] == 0)
    assert np.all(env[10:20] > 0.5)


def test_envelope_follows_level_in_db_and_silence_is_zero():
    fps = 25
    quiet = sine(440, 1.0, amp=0.05)  # -29 dBFS RMS
    loud = sine(440, 1.0, amp=0.5)  # -9 dBFS RMS
    x = np.concatenate([quiet, np.zeros_like(quiet), loud])
    env = an.envelope(x, SR, fps)
    assert np.all(env[25:50] == 0)
    assert 0.3 < env[10] < env[60] and env[60] == pytest.approx(1.0, abs=0.01)
    # 20 dB quieter = a third of the way down a 60 dB range
    assert env[60] - env[10] == pytest.approx(20 / 51, abs=0.05)
    assert not np.any(an.envelope(np.zeros((SR, 2), np.float32), SR, fps))


def test_frame_count_is_ceil_of_duration_times_fps():
    assert an.n_video_frames(SR * 2, SR, 30) == 60
    assert an.n_video_frames(SR * 2 + 1, SR, 30) == 61
    assert an.n_video_frames(44100 * 3, 44100, 29.97) == math.ceil(3 * 29.97)
    ta = an.analyze_array(np.zeros(SR // 10 * 25 + 7, np.float32), SR, fps=24)
    assert len(ta.envelope) == an.n_video_frames(SR // 10 * 25 + 7, SR, 24)


# Onsets sit on the published method's 23 ms frames (what AV-Align scores against), so they are within
# 30 ms of a hit (about one such frame; librosa's trail hits by 8-39 ms), not the 5 ms of the fine
# detector's times: on the frame the score expects, the picture's hits agree far better with it (0.88
# against 0.65 over the real recordings, measured with a looser confirmation than the one kept).
ONSET_TOL = 0.030


def test_click_onsets_within_30_ms():
    times = [0.5, 1.234, 2.0071, 3.3333, 4.9, 5.61]
    found = an.onsets(clicks(times, 6.0), SR)
    assert len(found) == len(times)
    assert np.max(np.abs(found - times)) < ONSET_TOL


def test_onsets_of_tone_bursts_over_noise_at_44100():
    sr = 44100
    rng = np.random.default_rng(0)
    x = 0.01 * rng.standard_normal(sr * 5).astype(np.float32)
    times = [0.6, 1.45, 2.8, 3.9]
    n = int(0.3 * sr)
    burst = (0.5 * np.sin(2 * np.pi * 660 * np.arange(n) / sr) * np.exp(-np.arange(n) / sr / 0.1)).astype(np.float32)
    burst[-int(0.01 * sr):] *= np.linspace(1, 0, int(0.01 * sr), dtype=np.float32)  # cut off, it ended in a click
    for t in times:
        i = int(t * sr)
        x[i:i + n] += burst
    found = an.onsets(x, sr)
    found = found[found > 0.1]  # the noise itself starts at 0
    assert len(found) == len(times)
    assert np.max(np.abs(found - times)) < ONSET_TOL


def test_kick_drums_count_as_much_as_bright_hits():
    """Kick (a sine falling from 150 to 50 Hz), hi-hat, snare, hi-hat: every hit is an onset. Averaged
    over FFT bins instead of log-spaced bands, the kicks' flux was too small beside the hi-hats'."""
    rng = np.random.default_rng(1)
    t = np.arange(int(0.4 * SR)) / SR
    kick = 0.9 * np.sin(2 * np.pi * np.cumsum(50 + 100 * np.exp(-t / 0.03)) / SR) * np.exp(-t / 0.12)
    ts = t[: int(0.25 * SR)]
    snare = 0.55 * (0.6 * rng.uniform(-1, 1, len(ts)) + 0.5 * np.sin(2 * np.pi * 190 * ts)) * np.exp(-ts / 0.06)
    th = t[: int(0.06 * SR)]
    hat = 0.25 * np.diff(rng.uniform(-1, 1, len(th) + 1)) * np.exp(-th / 0.012)  # bright
    x = np.zeros(8 * SR)
    times = np.arange(0.5, 7.5, 0.25)
    for k, at in enumerate(times):
        hit = (kick, hat, snare, hat)[k % 4]
        i = int(round(at * SR))
        x[i:i + len(hit)] += hit
    found = an.onsets(x.astype(np.float32), SR)
    assert len(found) == len(times), found
    assert np.max(np.abs(found - times)) < ONSET_TOL


def held_notes(starts, seconds, sr=SR):
    """Notes of five harmonics with 5.5 Hz vibrato (+-1.2%) and a 4.3 Hz tremolo (+-25%), each held
    until just before the next: their wobble must not count as onsets."""
    t = np.arange(int(seconds * sr)) / sr
    x = np.zeros_like(t)
    ends = [s - 0.1 for s in starts[1:]] + [seconds - 0.3]
    for s, e, f0 in zip(starts, ends, [220.0, 262.0, 196.0, 247.0]):
        m = (t >= s) & (t < e)
        tt = t[m] - s
        phase = 2 * np.pi * f0 * np.cumsum(1 + 0.012 * np.sin(2 * np.pi * 5.5 * tt)) / sr
        env = np.minimum(tt / 0.03, 1) * np.minimum((e - s - tt) / 0.15, 1) * (1 + 0.25 * np.sin(2 * np.pi * 4.3 * tt + 1))
        x[m] += 0.3 * env * sum(np.sin(k * phase) / k for k in range(1, 6))
    return x.astype(np.float32)


def test_vibrato_and_tremolo_make_no_onsets_between_notes():
    """The published method's peak picker alone finds 5 onsets here (two inside the last note); the
    fine detector does not confirm those, and they are too weak to stand on their own."""
    starts = [0.5, 2.5, 4.2]
    found = an.onsets(held_notes(starts, 6.0), SR)
    assert len(found) == len(starts), found
    assert np.max(np.abs(found - starts)) < 0.015


def test_coarse_strength_is_the_published_onset_strength():
    """On real recordings at librosa's rate, the coarse onset strength and its peaks are librosa's
    ``onset_strength`` and ``onset_detect`` with their defaults (the clip level interpolated)."""
    librosa = pytest.importorskip("librosa")
    import soundfile as sf

    from avmix import score
    from tests import real
    for name in ("music_electronic.flac", "speech_instruct.flac", "field_birds.flac"):
        x, sr = sf.read(real.path(name), dtype="float32")
        y = librosa.resample(x, orig_sr=sr, target_sr=22050)
        ref = librosa.onset.onset_strength(y=y, sr=22050)
        mel = an.MelFlux(22050)
        mel.feed(y)
        mel.finish()
        ours, hop_s = mel.envelope()
        assert len(ours) == len(ref) and hop_s == pytest.approx(512 / 22050)
        assert np.mean(np.abs(ours - ref)) < 0.005 * ref.max(), name
        peaks = an.pick_coarse(ours, hop_s)[0] * hop_s
        theirs = librosa.onset.onset_detect(onset_envelope=ref, sr=22050, units="time")
        assert score.av_align(theirs, peaks, 1000.0)["av_align"] >= 0.97, name  # same frames, nearly all


def test_onsets_agree_with_the_scored_onsets_on_real_recordings():
    """The onsets the picture moves on against the ones AV-Align scores it by (librosa's), matched
    within one frame at 30 fps, on the frames the picture shows them (timing.hit_frames), over the
    real recordings: 0.51 mean with the fine detector's times for confirmed onsets (0.66 on the coarse
    frames, which can put a change before its hit; 0.94 for the published method's own picks, which also
    find onsets in vibrato and steady noise); the fine detector alone gave 0.41."""
    pytest.importorskip("librosa")
    import soundfile as sf

    from avmix import score
    from avmix.video.timing import hit_frames
    from tests import real
    fps, scores = 30, []
    for path, _ in real.all_recordings():
        x, sr = sf.read(path, dtype="float32", always_2d=True)
        ta = an.analyze_array(x, sr, fps=fps)
        ours = hit_frames(ta.onsets, fps, len(ta.envelope)) / fps
        import librosa
        theirs = score.audio_onsets(librosa.resample(x.mean(axis=1), orig_sr=sr, target_sr=score.AUDIO_RATE),
                                    score.AUDIO_RATE)
        scores.append(score.av_align(theirs, ours, fps)["av_align"])
    assert np.mean(scores) >= 0.48, np.round(scores, 2)  # the fine detector alone: 0.41


def test_tempo_and_beats_of_120_bpm_click_track():
    times = np.arange(0.25, 10.0, 0.5)
    ta = an.analyze_array(clicks(times, 10.0), SR, fps=30)
    assert ta.tempo == pytest.approx(120, abs=2)
    beats = np.asarray(ta.beats)
    assert len(beats) >= len(times) - 2
    assert np.median(np.diff(beats)) == pytest.approx(0.5, abs=0.02)
    # each beat lies on a click
    assert np.max(np.min(np.abs(beats[:, None] - times[None, :]), axis=1)) < 0.03


def test_no_tempo_without_onsets():
    ta = an.analyze_array(sine(220, 3.0), SR, fps=30)
    assert ta.tempo is None and ta.beats == []
    assert len(ta.onsets) <= 1


def test_results_do_not_depend_on_block_size():
    rng = np.random.default_rng(3)
    x = (clicks([0.3, 1.1, 2.2], 3.0)[:, None] + 0.02 * rng.standard_normal((3 * SR, 2))).astype(np.float32)
    a = an.analyze_array(x, SR, fps=30, blocksize=65536)
    b = an.analyze_array(x, SR, fps=30, blocksize=997)
    assert a.onsets == b.onsets
    assert np.allclose(a.envelope, b.envelope, atol=1e-4)


def test_analyze_timeline_reads_sources_and_mix(tmp_path):
    compose = pytest.importorskip("avmix.audio.compose")
    if not hasattr(compose, "source_blocks"):
        pytest.skip("compose.source_blocks not available yet")
    a = np.zeros((2 * SR, 1), np.float32)
    a[: SR // 2] = sine(440, 0.5, amp=0.5)
    b = clicks([0.2, 0.9, 1.5], 2.0)[:, None]
    pa, pb = write_wav(tmp_path / "a.wav", a), write_wav(tmp_path / "b.wav", b)
    mix = write_wav(tmp_path / "mix.wav", a + b)
    sources = [Source(index=i, path=str(p), label=lab, start_sample=0, end_sample=2 * SR, source_frames=2 * SR,
                      sample_rate=SR, channels=1)
               for i, (p, lab) in enumerate([(pa, "tone"), (pb, "clicks")])]
    tl = Timeline(mode="mix", sample_rate=SR, channels=1, frames=2 * SR, sources=sources, limit_dbtp=None)
    res = an.analyze(tl, mix, fps=25)
    assert res.frames == 50 and res.fps == 25 and res.mode == "mix"
    tone, clk = res.tracks
    assert tone.label == "tone" and clk.label == "clicks"
    assert np.all(np.asarray(tone.envelope[13:]) == 0) and min(tone.envelope[:12]) > 0.5
    assert np.max(np.abs(np.asarray(clk.onsets) - [0.2, 0.9, 1.5])) < ONSET_TOL
    assert len(res.mix.envelope) == 50
    back = Analysis.load(_save(res, tmp_path / "analysis.json"))
    assert back.tracks[1].onsets == clk.onsets


def _save(analysis, path):
    analysis.save(path)
    return path
