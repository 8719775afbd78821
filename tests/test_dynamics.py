"""avmix.audio.dynamics and loudness: fades, ducking, the true-peak limiter, streaming BS.1770."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pyloudnorm as pyln
import pytest
from scipy.signal import resample_poly, sosfilt

from avmix.audio import dynamics, loudness
from avmix.audio.dynamics import Ducker, TruePeakLimiter, fade_curve
from avmix.audio.loudness import IIRFilter, LoudnessMeter, integrated_loudness, k_weighting_sos
from conftest import noise, sine

SR = 48000


def tp_db(x: np.ndarray) -> float:
    """True peak (dBTP) measured independently: 4x resample_poly, as in BS.1770 annex 2."""
    up = resample_poly(np.asarray(x, np.float64), 4, 1, axis=0)
    return 20 * math.log10(max(np.abs(up).max(), np.abs(x).max()))


def limit(x: np.ndarray, blocksize: int = 65536, **kw) -> np.ndarray:
    lim = TruePeakLimiter(SR, x.shape[1], **kw)
    out = [lim.process(x[i:i + blocksize]) for i in range(0, len(x), blocksize)]
    out.append(lim.flush())
    return np.concatenate(out)


def hot_inputs() -> dict[str, np.ndarray]:
    t = np.arange(2 * SR) / SR

    def st(v):
        return np.repeat(v[:, None], 2, axis=1).astype(np.float32)

    return {
        "noise +12 dB": noise(2, amp=4.0),
        "fs/4 sine at 45 deg (3 dB inter-sample overs)": st(2.0 * np.sin(2 * np.pi * 12000 * t + np.pi / 4)),
        "997 Hz sine +10 dB": st(3.0 * np.sin(2 * np.pi * 997 * t)),
        "square wave (Gibbs overs)": st(1.5 * np.sign(np.sin(2 * np.pi * 441 * t))),
        "19 kHz sine": st(1.2 * np.sin(2 * np.pi * 19000 * t + 0.3)),
    }


# ----------------------------------------------------------------------------------------- fades

def test_fade_curves_match_ffmpeg_definitions():
    i = np.arange(10)
    assert np.allclose(fade_curve("linear", i, 10), i / 10)  # ffmpeg 'tri'
    assert np.allclose(fade_curve("equal-power", i, 10), np.sin(i / 10 * np.pi / 2))  # ffmpeg 'qsin'
    # equal power: in^2 + out^2 stays ~1 across a crossfade (no 3 dB dip)
    n = 4800
    g_in = fade_curve("equal-power", np.arange(n), n)
    g_out = fade_curve("equal-power", n - 1 - np.arange(n), n)
    assert np.all(np.abs(10 * np.log10(g_in ** 2 + g_out ** 2)) < 0.01)
    lin = fade_curve("linear", np.arange(n), n) ** 2 + fade_curve("linear", n - 1 - np.arange(n), n) ** 2
    assert 10 * np.log10(lin.min()) < -2.9  # the linear dip
    with pytest.raises(ValueError):
        fade_curve("cubic", i, 10)


def test_fade_gains_none_outside_fades():
    assert dynamics.fade_gains(100, 50, 1000, 10, 10, "linear") is None
    g = dynamics.fade_gains(0, 1000, 1000, 100, 100, "linear")
    assert g[0] == 0.0 and g[-1] == 0.0 and g[500] == 1.0


# ----------------------------------------------------------------------------------------- limiter

@pytest.mark.parametrize("name", list(hot_inputs()))
def test_limiter_keeps_true_peak_under_ceiling(name):
    x = hot_inputs()[name]
    assert tp_db(x) > 0.0
    y = limit(x)
    assert y.shape == x.shape
    assert tp_db(y) <= -1.0 + 1e-6, name
    # it limits, it does not mute: the output stays near the ceiling
    assert tp_db(y) > -2.0


def test_limiter_other_ceiling_and_rate():
    x = noise(1, amp=2.0)
    lim = TruePeakLimiter(44100, 2, ceiling_db=-3.0)
    y = np.concatenate([lim.process(x), lim.flush()])
    assert -3.5 < tp_db(y) <= -3.0  # under the ceiling, and not turned down further than it needs


def test_limiter_leaves_quiet_input_bit_identical():
    x = noise(3, amp=0.25)  # peaks at -12 dBFS
    y = limit(x)
    assert y.dtype == np.float32 and np.array_equal(x, y)


def test_limiter_is_block_size_invariant():
    x = hot_inputs()["noise +12 dB"]
    a = limit(x, 65536)
    b = limit(x, 1000)
    c = limit(x, 7)
    # same gains to float rounding (the vectorised release/averaging sums in a different order)
    assert np.abs(a - b).max() < 2e-5 and np.abs(a - c).max() < 2e-5
    assert -2.0 < tp_db(a) <= -1.0  # and what they agree on is limited output, near the ceiling


def test_limiter_does_not_shift_the_timeline():
    # a quiet tone with one loud burst: samples far from the burst are untouched and in place,
    # the burst is reduced where it is (no lookahead delay, unlike ffmpeg alimiter without latency=1)
    x = sine(440, 3, channels=1, amp=0.1)
    x[48000:48100] += 1.5
    y = limit(x)
    assert len(y) == len(x)
    # untouched before the lookahead and once the release is over (~1 s)
    assert np.array_equal(y[:47800], x[:47800]) and np.array_equal(y[2 * SR + 5000:], x[2 * SR + 5000:])
    assert np.all(np.abs(y[48000 + 14400:, 0]) >= np.abs(x[48000 + 14400:, 0]) * 0.89)  # released 3 dB in 0.3 s
    ratio = y[48000:48100, 0] / x[48000:48100, 0]
    assert np.all(ratio > 0) and ratio.max() < 0.9
    assert -1.5 < tp_db(y[47000:49000]) <= -1.0  # the burst is brought to the ceiling, not below it
    assert int(np.argmax(np.abs(y[:, 0]))) in range(48000, 48100)


def test_limiter_gain_ramps_down_before_peak():
    x = np.full((24000, 1), 0.5, np.float32)
    x[12000] = 2.0  # a single hot sample needs ~13 dB: the gain ramps down over the lookahead
    y = limit(x)
    g = y[:, 0] / x[:, 0]
    assert 10 ** (-1.5 / 20) < g[12000] * 2.0 <= 10 ** (-1 / 20)  # at the ceiling, not far under it
    assert g[12000 - 200] == 1.0 and g[11990] < 1.0  # starts ~2 ms early, not earlier
    assert np.all(np.diff(g[11000:12000]) <= 1e-7)  # monotonic ramp down


def test_true_peak_helper():
    t = np.arange(SR) / SR
    x = np.sin(2 * np.pi * 12000 * t + np.pi / 4)[:, None]
    assert abs(20 * math.log10(dynamics.true_peak(x))) < 0.2  # samples read -3 dB, true peak 0 dB
    assert dynamics.true_peak(np.zeros((0, 2))) == 0.0


def test_sliding_max():
    x = np.array([0, 1, 5, 2, 0, 0, 3, 0.0])
    for size in (1, 2, 3, 5, 8):
        ref = [x[i:i + size].max() for i in range(len(x) - size + 1)]
        assert np.array_equal(dynamics.sliding_max(x, size), ref)


# ----------------------------------------------------------------------------------------- ducking

def test_ducker_lowers_while_control_sounds_then_releases():
    d = Ducker(SR, 12.0, attack=0.01, release=0.25)
    ctl = np.zeros((3 * SR, 1), np.float32)
    ctl[SR:2 * SR] = noise(1, channels=1, amp=0.3)
    g = np.concatenate([d.gains(ctl[i:i + 65536]) for i in range(0, len(ctl), 65536)])
    assert len(g) == len(ctl)
    assert np.all(g[:SR - 512] == 1.0)  # the level is read per 512-sample hop
    assert abs(20 * np.log10(g[SR + 4800:2 * SR].mean()) + 12.0) < 0.2  # reached -12 dB within 0.1 s
    assert g[-1] > 0.97  # released within 1 s (release time constant 0.25 s)
    # block size (in whole hops) does not matter
    d2 = Ducker(SR, 12.0)
    g2 = np.concatenate([d2.gains(ctl[i:i + 1024]) for i in range(0, len(ctl), 1024)])
    assert np.allclose(g, g2, atol=1e-7)


# ----------------------------------------------------------------------------------------- loudness

def test_iir_filter_matches_scipy_sosfilt_across_blocks():
    sos = k_weighting_sos(44100)
    x = np.random.default_rng(1).standard_normal((100000, 2))
    ref = sosfilt(sos, x, axis=0)
    for dtype, tol in ((np.float64, 1e-9), (np.float32, 1e-4)):
        f = IIRFilter(sos, 2, dtype=dtype)
        parts, i = [], 0
        for n in (65536, 100, 15, 1, 17, 40000):
            parts.append(f(x[i:i + n]))
            i += n
        y = np.concatenate(parts, axis=1).T
        assert i >= len(x) and np.abs(y - ref).max() < tol * np.abs(ref).max()


def test_bs1770_reference_sine():
    # BS.1770: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS
    x = sine(997, 5, channels=1, amp=1.0)
    assert abs(integrated_loudness(x, SR) + 3.01) < 0.01


@pytest.mark.parametrize("sr", [44100, 48000, 96000])
def test_loudness_agrees_with_pyloudnorm(sr):
    rng = np.random.default_rng(sr)
    x = rng.standard_normal((5 * sr, 2)) * 0.1
    x[: sr // 2] *= 0.001  # a quiet start exercises the gates
    x[:, 0] += 0.2 * np.sin(2 * np.pi * 440 * np.arange(len(x)) / sr)
    ours = integrated_loudness(x.astype(np.float32), sr)
    ref = pyln.Meter(sr).integrated_loudness(x)
    assert abs(ours - ref) < 0.1


def test_loudness_streaming_is_block_invariant():
    x = noise(3, amp=0.2)
    assert abs(integrated_loudness(x, SR, blocksize=65536) - integrated_loudness(x, SR, blocksize=999)) < 1e-3


def test_loudness_silent_and_short_inputs():
    assert integrated_loudness(np.zeros((SR, 2), np.float32), SR) == -math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pyloudnorm overflows on near-silence (#42); we must not
        assert integrated_loudness(noise(1, amp=1e-9), SR) == -math.inf
    # shorter than one 400 ms block (pyloudnorm raises): measured as one block
    short = noise(0.2, amp=0.1)
    v = integrated_loudness(short, SR)
    longer = integrated_loudness(np.tile(short, (10, 1)), SR)
    assert math.isfinite(v) and abs(v - longer) < 0.5
    m = LoudnessMeter(SR, 2)
    assert m.integrated() == -math.inf


def test_peak_dbfs():
    assert loudness.peak_dbfs(0.0) == -math.inf
    assert abs(loudness.peak_dbfs(0.5) + 6.0206) < 1e-3


def test_sliding_sum():
    x = np.random.default_rng(0).random(50)
    for size in (1, 2, 3, 5, 8, 13, 50):
        ref = [x[i:i + size].sum() for i in range(len(x) - size + 1)]
        assert np.allclose(dynamics.sliding_sum(x, size), ref)


def test_dense_and_sparse_true_peak_paths_agree():
    lim = TruePeakLimiter(SR, 2)
    x = noise(0.5, amp=1.0)
    dense = lim._dense_peaks(x)
    idx = np.arange(lim.HALF, len(x) - lim.HALF)
    taps = idx[:, None] + np.arange(-lim.HALF, lim.HALF + 1)[None, :]
    ref = np.max([np.abs(x[:, c][taps] @ lim.kernels).max(axis=1) for c in range(2)], axis=0)
    assert np.allclose(dense[idx], ref, atol=1e-6)


def _ffmpeg_192k(x: np.ndarray, sr: int, tmp_path) -> np.ndarray:
    """x resampled to 192 kHz by ffmpeg's libswresample with default settings, as ebur128=peak=true does."""
    import soundfile as sf

    from avmix import ffmpeg

    p = tmp_path / "x.wav"
    sf.write(str(p), x, sr, subtype="FLOAT")
    raw = ffmpeg.run(["-i", ffmpeg.url(p), "-af", "aresample=192000", "-f", "f64le", "-"])
    return np.frombuffer(raw, np.float64).reshape(-1, x.shape[1])


def _estimate(lim: TruePeakLimiter, x: np.ndarray) -> np.ndarray:
    """The limiter's true-peak estimate (linear) of each interval [n, n+1], n in [HALF, len - HALF)."""
    idx = np.arange(lim.HALF, len(x) - lim.HALF)
    taps = idx[:, None] + np.arange(-lim.HALF, lim.HALF + 1)[None, :]
    est = np.max([np.abs(x[:, c][taps] @ lim.kernels).max(axis=1) for c in range(x.shape[1])], axis=0)
    return np.maximum(est, np.maximum(np.abs(x[idx]), np.abs(x[idx + 1])).max(axis=1))


@pytest.mark.parametrize("sr", [48000, 44100, 16000])
def test_true_peak_estimate_reads_at_least_what_ebur128_and_resample_poly_read(tmp_path, sr):
    """On full-band noise (the material where the meters disagree most), the limiter's estimate of every
    interval is at least the highest point ffmpeg's ebur128 (libswresample to 192 kHz) and a 4x
    resample_poly read inside it, so a limiter that holds its estimate under the ceiling holds both."""
    x = noise(0.25, sr=sr, amp=0.5, seed=3).astype(np.float64)
    lim = TruePeakLimiter(sr, 2)
    h = lim.HALF
    est = _estimate(lim, x.astype(np.float32))  # intervals h .. len-h-1
    n = len(x)
    for name, up, rate in (("ebur128", _ffmpeg_192k(x, sr, tmp_path), 192000),
                           ("resample_poly", resample_poly(x, 4, 1, axis=0), 4 * sr)):
        t = np.arange(len(up)) * (sr / rate)  # each point's position in input samples
        k = np.floor(t).astype(int)
        ok = (k >= h) & (k < n - h - 1)
        point = np.abs(up[ok]).max(axis=1)
        worst = np.max(20 * np.log10(point / est[k[ok] - h]))
        assert worst < 0.05, f"{name} reads {worst:.3f} dB above the limiter's estimate"


def test_limiter_untouched_peak_is_where_it_starts_to_look():
    x = noise(1, amp=1.0)
    lim_peak = TruePeakLimiter.untouched_peak(-1.0)
    assert abs(20 * math.log10(lim_peak) - (-1.0 - 0.1 - 6.0)) < 1e-9
    under = x * np.float32(lim_peak / np.abs(x).max())
    assert np.array_equal(limit(under), under)  # passes bit-identical, as compose relies on
    over = x * np.float32(1.0 / np.abs(x).max())  # over the ceiling: changed
    y = limit(over)
    assert not np.array_equal(y, over) and -2.0 < tp_db(y) <= -1.0


# ----------------------------------------------------------------------------------- channel weights

@pytest.mark.parametrize("channels,weights", [
    (1, [1.0]), (2, [1.0, 1.0]), (3, [1.0, 1.0, 1.0]),
    (5, [1.0, 1.0, 1.0, 1.41, 1.41]),  # FL FR FC BL BR
    (6, [1.0, 1.0, 1.0, 0.0, 1.41, 1.41]),  # FL FR FC LFE BL BR
    (8, [1.0, 1.0, 1.0, 0.0, 1.41, 1.41, 1.41, 1.41]),  # FL FR FC LFE BL BR SL SR
])
def test_channel_weights_follow_bs1770(channels, weights):
    assert loudness.channel_weights(channels).tolist() == weights


def surround_material(channels: int) -> np.ndarray:
    """A different level in every channel and a loud 60 Hz tone in the 4th (the LFE of 5.1 and 7.1)."""
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((4 * SR, channels)) * (0.02 * (1 + np.arange(channels)))
    x[:, 3] += 0.5 * np.sin(2 * np.pi * 60 * np.arange(4 * SR) / SR)
    return x.astype(np.float32)


def ffmpeg_integrated(path) -> float:
    """Integrated loudness by FFmpeg's ebur128 filter (its own K-filter, gating and channel weights; it
    takes a WAV without a channel mask as the default layout for its channel count: 5.0, 5.1, 7.1)."""
    import re

    from avmix import ffmpeg

    code, _, err = ffmpeg.run_command([ffmpeg.executable(), "-hide_banner", "-nostats", "-nostdin", "-i",
                                       ffmpeg.url(path), "-af", "ebur128", "-f", "null", "-"], timeout=120)
    assert code == 0, err[-500:]
    return float(re.findall(r"I:\s+(-?[\d.]+) LUFS", err.decode())[-1])


@pytest.mark.parametrize("channels", [5, 6, 8])
def test_surround_loudness_matches_ffmpeg_ebur128(tmp_path, channels):
    import soundfile as sf

    x = surround_material(channels)
    p = tmp_path / "s.wav"
    sf.write(str(p), x, SR, subtype="FLOAT")
    ours = integrated_loudness(x, SR)
    assert abs(ours - ffmpeg_integrated(p)) < 0.15  # ffmpeg prints one decimal
