"""Cross-checks of avmix's compose stage against independent implementations of the same job:
pydub (overlay, append without crossfade) and FFmpeg's amix (normalize=0), adelay and acrossfade filters,
compared sample by sample where the algorithms agree."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf

from avmix import ffmpeg
from avmix.audio import compose
from conftest import noise, sine, write_wav

SR = 48000

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pydub warns when ffmpeg is not on PATH; WAV needs none
    from pydub import AudioSegment


def read(p) -> np.ndarray:
    return sf.read(str(p), dtype="float32", always_2d=True)[0]


def int16_material(seconds: float, seed: int, channels: int = 2) -> np.ndarray:
    """int16-exact float samples that never clip when two of them are summed."""
    x = noise(seconds, channels=channels, amp=0.3, seed=seed) + sine(300 + 100 * seed, seconds, channels=channels,
                                                                     amp=0.15)
    return (np.round(x * 32768) / 32768).astype(np.float32)


def run_ffmpeg(inputs: list, filter_complex: str, output) -> np.ndarray:
    args = []
    for p in inputs:
        args += ["-i", ffmpeg.url(p)]
    ffmpeg.run(args + ["-filter_complex", filter_complex, "-c:a", "pcm_f32le", ffmpeg.url(output)],
               what="ffmpeg cross-check", timeout=120)
    return read(output)


# ------------------------------------------------------------------------------------------ pydub

def test_overlay_matches_pydub_overlay(tmp_path):
    base = write_wav(tmp_path / "base.wav", int16_material(3, 1), subtype="PCM_16")
    top = write_wav(tmp_path / "top.wav", int16_material(1.2, 2), subtype="PCM_16")
    ours = tmp_path / "ours.wav"
    compose.overlay(base, top, ours, at=1.234, limit=False, bit_depth=16)  # pydub positions are whole ms
    ref = AudioSegment.from_wav(base).overlay(AudioSegment.from_wav(top), position=1234)
    theirs = np.array(ref.get_array_of_samples(), dtype=np.int16).reshape(-1, 2)
    mine, _ = sf.read(str(ours), dtype="int16")
    assert mine.shape == theirs.shape and np.array_equal(mine, theirs)


def test_concat_matches_pydub_append_without_crossfade(tmp_path):
    parts = [write_wav(tmp_path / f"{i}.wav", int16_material(0.5 + 0.37 * i, i), subtype="PCM_16")
             for i in range(3)]
    ours = tmp_path / "ours.wav"
    compose.concat(parts, ours, limit=False, bit_depth=16)
    seg = AudioSegment.from_wav(parts[0])
    for p in parts[1:]:
        seg = seg.append(AudioSegment.from_wav(p), crossfade=0)  # pydub's default would crossfade 100 ms
    theirs = np.array(seg.get_array_of_samples(), dtype=np.int16).reshape(-1, 2)
    mine, _ = sf.read(str(ours), dtype="int16")
    assert np.array_equal(mine, theirs)


# ------------------------------------------------------------------------------------------ ffmpeg

def test_mix_matches_ffmpeg_amix_normalize_0(tmp_path):
    a = write_wav(tmp_path / "a.wav", noise(2, amp=0.6, seed=1))
    b = write_wav(tmp_path / "b.wav", noise(1.3, amp=0.6, seed=2))
    c = write_wav(tmp_path / "c.wav", sine(440, 1.7, channels=2, amp=0.5))
    theirs = run_ffmpeg([a, b, c], "amix=inputs=3:normalize=0:duration=longest", tmp_path / "ff.wav")
    ours = tmp_path / "ours.wav"
    compose.mix([a, b, c], ours, limit=False, bit_depth=32)
    mine = read(ours)
    assert mine.shape == theirs.shape
    assert np.abs(mine - theirs).max() < 1e-6
    assert np.abs(mine).max() > 1.0  # over full scale: both kept it in float


def test_overlay_matches_ffmpeg_adelay_amix(tmp_path):
    base = write_wav(tmp_path / "base.wav", noise(2, amp=0.4, seed=3))
    top = write_wav(tmp_path / "top.wav", noise(1, amp=0.4, seed=4))
    delay = 70001  # samples: the top runs past the end of the base, the output extends
    theirs = run_ffmpeg([base, top], f"[1:a]adelay=delays={delay}S:all=1[d];[0:a][d]amix=inputs=2:normalize=0",
                        tmp_path / "ff.wav")
    ours = tmp_path / "ours.wav"
    tl = compose.overlay(base, top, ours, at=delay / SR, limit=False, bit_depth=32)
    mine = read(ours)
    assert tl.sources[1].start_sample == delay and len(mine) == delay + SR
    assert mine.shape == theirs.shape and np.abs(mine - theirs).max() < 1e-6


@pytest.mark.parametrize("curve,ff_curve", [("equal-power", "qsin"), ("linear", "tri")])
def test_crossfade_matches_ffmpeg_acrossfade(tmp_path, curve, ff_curve):
    a = write_wav(tmp_path / "a.wav", noise(1.5, amp=0.5, seed=5))
    b = write_wav(tmp_path / "b.wav", noise(1.2, amp=0.5, seed=6))
    n = 24007  # crossfade length in samples
    theirs = run_ffmpeg([a, b], f"acrossfade=ns={n}:c1={ff_curve}:c2={ff_curve}", tmp_path / "ff.wav")
    ours = tmp_path / "ours.wav"
    tl = compose.concat([a, b], ours, crossfade=n / SR, curve=curve, limit=False, bit_depth=32)
    mine = read(ours)
    assert tl.frames == 72000 + 57600 - n
    assert mine.shape == theirs.shape and np.abs(mine - theirs).max() < 1e-6


# ------------------------------------------------------------------------------------------ ebur128

def ffmpeg_true_peak_and_loudness(path) -> tuple[float, float]:
    """(true peak dBTP, integrated LUFS) by ffmpeg's ebur128 filter: its own oversampling and K-filter."""
    import re

    code, _, err = ffmpeg.run_command([ffmpeg.executable(), "-hide_banner", "-nostats", "-nostdin", "-i",
                                       ffmpeg.url(path), "-af", "ebur128=peak=true", "-f", "null", "-"],
                                      timeout=120)
    assert code == 0, err[-500:]
    text = err.decode()
    return (float(re.findall(r"Peak:\s+(-?[\d.]+) dBFS", text)[-1]),
            float(re.findall(r"I:\s+(-?[\d.]+) LUFS", text)[-1]))


def ffmpeg_true_peak_exact(path, tmp_path) -> float:
    """The highest true peak (dBTP) ebur128=peak=true reads, to 0.001 dB (its summary prints one
    decimal, so -0.96 would read as -1.0)."""
    chans = sf.info(str(path)).channels
    logs = [tmp_path / f"tp{c}.txt" for c in range(chans)]  # one file per channel: each print truncates its own
    chain = ",".join(["ebur128=peak=true:metadata=1"] + [
        f"ametadata=print:key=lavfi.r128.true_peaks_ch{c}:file={log}" for c, log in enumerate(logs)])
    ffmpeg.run(["-i", ffmpeg.url(path), "-af", chain, "-f", "null", "-"])
    values = [float(line.split("=", 1)[1]) for log in logs for line in log.read_text().splitlines()
              if "true_peaks_ch" in line]
    assert values, "ebur128 printed no true peaks"
    return 20 * np.log10(max(values))


def noise_bursts(seconds: float = 6.0, every: float = 0.1, decay: float = 0.003, amp: float = 0.3,
                 channels: int = 1, seed: int = 2) -> np.ndarray:
    """Short white-noise bursts with an exponential decay: full-band transients, the material where a
    4x estimate with a soft interpolation filter reads lower than ebur128."""
    rng = np.random.default_rng(seed)
    x = np.zeros((int(seconds * SR), channels), np.float32)
    n = int(8 * decay * SR)
    env = np.exp(-np.arange(n) / (decay * SR))[:, None]
    for s in range(SR // 10, len(x) - SR // 2, int(every * SR)):
        x[s:s + n] += (rng.standard_normal((n, channels)) * amp * env).astype(np.float32)
    return x


@pytest.mark.parametrize("args", [dict(gains=[12.0]), dict(normalize="lufs", target=-24.0)],
                         ids=["gain 12", "lufs -24"])
def test_full_band_noise_bursts_stay_under_the_ceiling_by_ebur128(tmp_path, args):
    """Before the limiter read the points ebur128 reads, these came out at -0.9 dBTP by ebur128 (-1.1 by
    the limiter's own estimate); now they reach the ceiling's margin and no further."""
    src = write_wav(tmp_path / "bursts.wav", noise_bursts(), subtype="PCM_16")
    out = tmp_path / "o.wav"
    compose.mix([src], out, **args)
    tp = ffmpeg_true_peak_exact(out, tmp_path)
    assert -1.3 < tp <= -1.0, tp  # limited to the ceiling, not far under it


@pytest.mark.parametrize("name", ["effects_tuxracer.flac", "effects_pygame.flac", "music_electronic.flac"])
def test_real_recordings_pushed_into_the_limiter_stay_under_the_ceiling_by_ebur128(tmp_path, name):
    """Recorded hits and beats (44.1, 11.025 and 16 kHz: rates where ebur128's points fall between the
    limiter's 4 phases) 12 dB too hot: ebur128 reads the ceiling, not over it, not far under it."""
    import real

    out = tmp_path / "o.wav"
    compose.mix([real.path(name)], out, gains=[12.0])
    tp = ffmpeg_true_peak_exact(out, tmp_path)
    assert -1.3 < tp <= -1.0, tp


def test_limited_output_true_peak_by_ffmpeg_ebur128(tmp_path):
    """Hot inputs (the sum peaks near +6 dBFS, with intersample overs) limited to -1 dBTP: ffmpeg's own
    true-peak meter agrees."""
    a = sine(997, 4.0, amp=0.95, channels=2) + noise(4.0, amp=0.05, seed=11)
    b = sine(12001, 4.0, amp=0.95, channels=2)  # near fs/4: large intersample peaks
    pa, pb = write_wav(tmp_path / "a.wav", a), write_wav(tmp_path / "b.wav", b)
    out = tmp_path / "o.wav"
    compose.mix([pa, pb], out)
    tp, _ = ffmpeg_true_peak_and_loudness(out)
    assert tp <= -1.0  # ffmpeg prints one decimal
    assert ffmpeg_true_peak_exact(out, tmp_path) <= -1.0
    assert np.abs(read(out)).max() > 10 ** (-2.0 / 20)  # limited, not just turned down


def test_spiky_lufs_target_by_ffmpeg_ebur128(tmp_path):
    """Clicks over quiet noise brought to -14 LUFS: the limiter has to act hard, and ffmpeg's meters
    still read the target within 0.5 LU and the true peak under the ceiling."""
    x = noise(6.0, amp=0.01, seed=12)
    x[::12000] += 0.9  # a click every 0.25 s
    p = write_wav(tmp_path / "clicks.wav", x)
    out = tmp_path / "o.wav"
    compose.mix([p], out, normalize="lufs", target=-14.0)
    tp, lufs = ffmpeg_true_peak_and_loudness(out)
    assert abs(lufs + 14.0) <= 0.5 and tp <= -1.0
    assert ffmpeg_true_peak_exact(out, tmp_path) <= -1.0
