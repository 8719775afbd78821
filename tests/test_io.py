"""avmix.audio.io and writer: every input format, every output format, resampling, channels, stdin/stdout."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avmix import ffmpeg
from avmix.audio import io, writer
from avmix.errors import InputError, UsageError
from conftest import sine, write_wav

FF = ffmpeg.executable()
ROOT = Path(__file__).resolve().parents[1]
CODEC_FRAME = {"mp3": 1152, "m4a": 1024, "aac": 1024, "opus": 960, "ogg": 2048, "mp4": 1024, "mov": 1024,
               "mkv": 1152, "webm": 960}


def tones(seconds: float, sr: int, channels: int, amp: float = 0.3) -> np.ndarray:
    """A different tone on every channel, so a swapped or dropped channel shows."""
    t = np.arange(int(round(seconds * sr))) / sr
    cols = [amp * np.sin(2 * np.pi * (330.0 + 220.0 * k) * t + k) for k in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def ffmpeg_convert(src: Path, dst: Path, *args: str, video: bool = False, seconds: float = 1.0) -> Path:
    cmd = [FF, "-hide_banner", "-loglevel", "error", "-y"]
    if video:
        cmd += ["-f", "lavfi", "-i", f"color=c=blue:s=64x64:r=10:d={seconds}"]
    cmd += ["-i", str(src)]
    if video:
        cmd += ["-map", "0:v", "-map", "1:a", "-pix_fmt", "yuv420p"]
    subprocess.run(cmd + list(args) + [str(dst)], check=True, capture_output=True)
    return dst


def best_corr(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


# -------------------------------------------------------------------------------- input formats

# (name, extension, ffmpeg args, rate, channels, exact length)
FORMATS = [
    ("wav16", ".wav", ["-c:a", "pcm_s16le"], 44100, 2, True),
    ("wav24-96k", ".wav", ["-c:a", "pcm_s24le"], 96000, 2, True),
    ("wav32int", ".wav", ["-c:a", "pcm_s32le"], 48000, 1, True),
    ("wav-float64", ".wav", ["-c:a", "pcm_f64le"], 22050, 2, True),
    ("wav-u8-11k", ".wav", ["-c:a", "pcm_u8"], 11025, 1, True),
    ("wav-msadpcm", ".wav", ["-c:a", "adpcm_ms"], 22050, 2, False),
    ("wav-8k", ".wav", ["-c:a", "pcm_s16le"], 8000, 1, True),
    ("wav-192k-6ch", ".wav", ["-c:a", "pcm_s24le"], 192000, 6, True),
    ("flac-96k-24", ".flac", ["-c:a", "flac", "-sample_fmt", "s32"], 96000, 2, True),
    ("flac-5ch", ".flac", ["-c:a", "flac"], 48000, 5, True),
    ("aiff", ".aiff", ["-c:a", "pcm_s16be"], 44100, 2, True),
    ("mp3", ".mp3", ["-c:a", "libmp3lame", "-b:a", "192k"], 44100, 2, False),
    ("ogg", ".ogg", ["-c:a", "libvorbis", "-q:a", "6"], 48000, 2, False),
    ("opus", ".opus", ["-c:a", "libopus", "-b:a", "128k"], 48000, 2, False),
    ("m4a", ".m4a", ["-c:a", "aac", "-b:a", "192k"], 44100, 2, False),
    ("m4a-mono-32k", ".m4a", ["-c:a", "aac", "-b:a", "96k"], 32000, 1, False),
]


@pytest.mark.parametrize("name,ext,args,sr,ch,exact", FORMATS, ids=[f[0] for f in FORMATS])
def test_reads_every_format(tmp_path, name, ext, args, sr, ch, exact):
    x = tones(1.0, sr, ch)
    src = write_wav(tmp_path / "src.wav", x, sr)
    path = ffmpeg_convert(src, tmp_path / f"in{ext}", *args)
    f = io.open_audio(path)
    assert (f.sample_rate, f.channels) == (sr, ch)
    if exact:
        assert f.frames == len(x)
    else:  # lossy: at most one codec frame of padding left
        assert abs(f.frames - len(x)) <= CODEC_FRAME.get(ext.lstrip("."), 1024)
    assert f.duration == pytest.approx(f.frames / sr)
    y = f.read()
    assert y.dtype == np.float32 and y.shape == (f.frames, ch)
    for k in range(ch):
        assert best_corr(y[:, k], x[:, k]) > (0.999 if exact else 0.99), f"channel {k}"
    if name in ("wav16", "flac-96k-24", "aiff"):  # lossless: equal within quantisation
        assert np.max(np.abs(y - x)) < 2.0 ** -14


@pytest.mark.parametrize("ext,vargs,aargs", [
    (".mp4", ["-c:v", "libx264", "-preset", "ultrafast"], ["-c:a", "aac", "-b:a", "256k"]),
    (".mkv", ["-c:v", "libx264", "-preset", "ultrafast"], ["-c:a", "flac"]),
    (".webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"], ["-c:a", "libopus"]),
    (".mov", ["-c:v", "libx264", "-preset", "ultrafast"], ["-c:a", "pcm_s16le"]),
])
def test_reads_audio_stream_of_video(tmp_path, ext, vargs, aargs):
    sr = 48000
    x = tones(1.0, sr, 2)
    src = write_wav(tmp_path / "src.wav", x, sr)
    path = ffmpeg_convert(src, tmp_path / f"v{ext}", *vargs, *aargs, video=True)
    f = io.open_audio(path)
    assert (f.sample_rate, f.channels) == (sr, 2)
    assert abs(f.frames - len(x)) <= CODEC_FRAME.get(ext.lstrip("."), 0)
    y = f.read()
    assert min(best_corr(y[:, k], x[:, k]) for k in range(2)) > 0.99


def test_wav_float_nan_replaced_by_zero(tmp_path):
    x = sine(440, 0.5, 48000, 1)
    x[100] = np.nan
    x[200] = np.inf
    path = write_wav(tmp_path / "nan.wav", x)
    y = io.open_audio(path).read()
    assert np.isfinite(y).all()
    assert y[100, 0] == 0 and y[200, 0] == 0 and y[101, 0] == x[101, 0]


# ----------------------------------------------------------------------------- blocks and lengths

def test_blocks_are_exact_and_sample_aligned(tmp_path):
    x = tones(2.0, 44100, 2)
    f = io.open_audio(write_wav(tmp_path / "a.wav", x, 44100))
    # native rate: exactly the requested span, in blocksize pieces, zero-padded past the end
    bl = list(f.blocks(sample_rate=44100, channels=2, start=1000, frames=100000, blocksize=30000))
    assert [len(b) for b in bl] == [30000, 30000, 30000, 10000]
    y = np.concatenate(bl)
    np.testing.assert_array_equal(y[:len(x) - 1000], x[1000:])
    assert not y[len(x) - 1000:].any()
    # resampled: any span equals the same span of a read from the start
    full = f.read(sample_rate=48000)
    assert len(full) == f.target_frames(48000) == 96000
    for start, n in [(0, 5000), (12345, 20000), (70000, 26000), (95990, 100)]:
        part = np.concatenate(list(f.blocks(sample_rate=48000, channels=2, start=start, frames=n, blocksize=8192)))
        assert part.shape == (n, 2)
        np.testing.assert_allclose(part[:96000 - start], full[start:start + n], atol=2e-6)
    # past the end: silence of the requested length
    tail = np.concatenate(list(f.blocks(sample_rate=48000, channels=2, start=200000, frames=1000)))
    assert tail.shape == (1000, 2) and not tail.any()
    assert list(f.blocks(sample_rate=48000, channels=2, start=96000)) == []


@pytest.mark.parametrize("src,dst", [(44100, 48000), (48000, 44100), (48000, 96000), (22050, 44100)])
def test_resampled_sine_snr_above_90db(tmp_path, src, dst):
    freq = 997.0
    n = src * 2
    t = np.arange(n) / src
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)[:, None]
    f = io.open_audio(write_wav(tmp_path / "s.wav", x, src))
    y = f.read(sample_rate=dst)[:, 0]
    assert len(y) == round(n * dst / src)
    ref = 0.5 * np.sin(2 * np.pi * freq * np.arange(len(y)) / dst)
    m = slice(dst // 10, len(y) - dst // 10)  # the edges see the signal switch on/off
    snr = 10 * np.log10(np.sum(ref[m] ** 2) / np.sum((y[m] - ref[m]) ** 2))
    assert snr > 90, snr


def test_target_frames_rounds_exactly(tmp_path):
    f = io.open_audio(write_wav(tmp_path / "odd.wav", np.zeros((44101, 1), np.float32) + 0.1, 44100))
    assert f.target_frames(48000) == round(44101 * 48000 / 44100)  # 48001.088 -> 48001
    assert len(f.read(sample_rate=48000)) == 48001
    assert f.target_frames(8000) == 8000  # 8000.18


def test_channel_reconciliation(tmp_path):
    st = tones(0.2, 48000, 2)
    f = io.open_audio(write_wav(tmp_path / "st.wav", st))
    mono = f.read(channels=1)
    np.testing.assert_allclose(mono[:, 0], st.mean(axis=1), atol=1e-7)
    four = f.read(channels=4)
    np.testing.assert_array_equal(four[:, :2], st)
    assert not four[:, 2:].any()
    m = io.open_audio(write_wav(tmp_path / "m.wav", st[:, :1]))
    dup = m.read(channels=2)
    np.testing.assert_array_equal(dup[:, 0], dup[:, 1])
    np.testing.assert_array_equal(dup[:, 0], st[:, 0])
    # with resampling too (downmix happens before, upmix after the resampler)
    assert m.read(sample_rate=44100, channels=2).shape == (m.target_frames(44100), 2)
    assert f.read(sample_rate=44100, channels=1).shape == (f.target_frames(44100), 1)


C = float(np.sqrt(0.5))  # 0.7071: -3 dB, ITU-R BS.775


def one_channel(ch: int, which: int, seconds: float = 0.2, sr: int = 48000) -> np.ndarray:
    """A ``ch``-channel signal whose only content is a 0.5 sine on channel ``which``."""
    x = np.zeros((int(seconds * sr), ch), np.float32)
    x[:, which] = sine(440, seconds, sr)[:, 0]
    return x


# channel count, the only channel with content, expected (left, right) gains in the stereo downmix
FOLDS = [
    (6, 2, (C, C)), (6, 3, (0, 0)), (6, 4, (C, 0)), (6, 5, (0, C)), (6, 0, (1, 0)), (6, 1, (0, 1)),  # 5.1
    (8, 2, (C, C)), (8, 3, (0, 0)), (8, 4, (C, 0)), (8, 5, (0, C)), (8, 6, (C, 0)), (8, 7, (0, C)),  # 7.1
    (5, 2, (C, C)), (5, 3, (C, 0)), (5, 4, (0, C)),  # 5.0
    (3, 2, (C, C)), (3, 0, (1, 0)),  # 3.0
    (4, 2, (C, 0)), (4, 3, (0, C)), (4, 1, (0, 1)),  # quad
]


@pytest.mark.parametrize("ch,which,gains", FOLDS, ids=[f"{f[0]}ch-{f[1]}" for f in FOLDS])
def test_downmix_to_stereo_follows_bs775(tmp_path, ch, which, gains):
    x = one_channel(ch, which)
    f = io.open_audio(write_wav(tmp_path / "multi.wav", x))
    for sr in (48000, 44100):  # downmixed before the resampler too
        y = f.read(sample_rate=sr, channels=2)
        ref = f.read(sample_rate=sr, channels=ch)[:, which]
        assert np.max(np.abs(ref)) > 0.49
        for k in (0, 1):
            np.testing.assert_allclose(y[:, k], gains[k] * ref, atol=2e-4 if sr != 48000 else 1e-7)


def test_centre_only_51_is_not_silent_in_stereo(tmp_path):
    x = one_channel(6, 2)
    y = io.open_audio(write_wav(tmp_path / "c.wav", x)).read(channels=2)
    peak = np.max(np.abs(y), axis=0)
    np.testing.assert_allclose(peak, [0.5 * np.sqrt(0.5)] * 2, rtol=1e-4)  # -3 dB, not normalised


@pytest.mark.parametrize("ext", ["ogg", "flac"])
def test_surround_in_vorbis_order_folds_to_the_right_speakers(tmp_path, ext):
    """Ogg Vorbis stores 5.1 as L C R RL RR LFE; the fold-down must follow the speakers, not the index."""
    wav = write_wav(tmp_path / "c.wav", one_channel(6, 2))  # the centre only (WAV order)
    coded = tmp_path / f"c.{ext}"
    ffmpeg.run(["-i", ffmpeg.url(wav), ffmpeg.url(coded)], what="test encode", timeout=60)
    y = io.open_audio(coded).read(channels=2)
    rms = np.sqrt(np.mean(y.astype(np.float64) ** 2, axis=0))
    np.testing.assert_allclose(rms, [rms.mean()] * 2, rtol=0.02)  # centred, not in one side
    lfe = write_wav(tmp_path / "l.wav", one_channel(6, 3))
    coded = tmp_path / f"l.{ext}"
    ffmpeg.run(["-i", ffmpeg.url(lfe), ffmpeg.url(coded)], what="test encode", timeout=60)
    assert np.abs(io.open_audio(coded).read(channels=2)).max() < 1e-3  # the LFE is dropped


@pytest.mark.parametrize("ext,size", [("wav", 0x7FFFF000), ("wav", 0xFFFFFFFF), ("aiff", 0x7F000000)])
def test_placeholder_sizes_from_a_pipe_are_not_truncation(tmp_path, ext, size):
    """Tools writing to a pipe cannot seek back to fill in sizes: SoX leaves about 2 GB, ffmpeg 4 GB."""
    p = tmp_path / f"streamed.{ext}"
    sf.write(str(p), sine(440, 1.0, 48000, 2), 48000, subtype="PCM_16")
    data = bytearray(p.read_bytes())
    tag, order = (b"data", "little") if ext == "wav" else (b"SSND", "big")
    at = data.index(tag) + 4
    data[at:at + 4] = size.to_bytes(4, order)
    p.write_bytes(bytes(data))
    assert io.open_audio(p).read().shape == (48000, 2)


def test_other_channel_conversions():
    m = io.channel_matrix
    np.testing.assert_array_equal(m(8, 6)[6:], [[0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1]])  # 7.1 sides -> 5.1 backs
    np.testing.assert_allclose(m(8, 6) @ m(6, 2), m(8, 2), atol=1e-7)  # 7.1 -> 5.1 -> 2 == 7.1 -> 2
    np.testing.assert_array_equal(m(4, 6)[2:], [[0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1]])  # quad rears -> 5.1 backs
    np.testing.assert_allclose(m(7, 2)[4], [0.5, 0.5], atol=1e-6)  # 6.1 back centre
    np.testing.assert_array_equal(m(10, 2), np.eye(10, 2))  # no layout: by index
    x = np.arange(18, dtype=np.float32).reshape(3, 6)
    np.testing.assert_array_equal(io.reconcile_channels(x, 1)[:, 0], x.mean(axis=1))  # to mono: average
    np.testing.assert_array_equal(io.reconcile_channels(x[:, :1], 6), np.repeat(x[:, :1], 6, axis=1))  # duplicate


@pytest.mark.parametrize("ch", [5, 6, 8])
def test_downmix_matches_ffmpeg_float_rematrix(tmp_path, ch):
    """ffmpeg's -ac 2 uses the same coefficients; to float output it does not normalise (to int it does)."""
    x = tones(0.3, 48000, ch)
    src = write_wav(tmp_path / "m.wav", x)
    out = subprocess.run([FF, "-v", "error", "-i", str(src), "-ac", "2", "-f", "f32le", "-"],
                         capture_output=True, check=True).stdout
    ref = np.frombuffer(out, "<f4").reshape(-1, 2)
    np.testing.assert_allclose(io.open_audio(src).read(channels=2), ref, atol=1e-5)


def corrupt_flac(path: Path, seconds: float = 3.0) -> Path:
    write_wav(path.with_suffix(".wav"), sine(440, seconds, 48000, 2), subtype="PCM_16")
    ffmpeg_convert(path.with_suffix(".wav"), path)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def test_corrupt_flac_fails_while_reading_with_the_input_error(tmp_path):
    f = io.open_audio(corrupt_flac(tmp_path / "broken.flac"))  # first and last frames decode
    with pytest.raises(InputError) as e:
        f.read()
    msg = e.value.message
    assert msg.startswith(f"{tmp_path / 'broken.flac'}: corrupt FLAC audio data: decoding fails at "), msg
    at = float(msg.split("decoding fails at ")[1].split(" s")[0])
    assert 0 < at < 3.0 and "\n" not in msg
    good = list(f.blocks(sample_rate=48000, channels=2, frames=14400))  # before the damage: fine
    np.testing.assert_allclose(np.concatenate(good), sine(440, 0.3, 48000, 2), atol=1 / 32768)
    for sr in (48000, 44100):  # a seek from the middle (an offset), resampled or not, fails the same way
        with pytest.raises(InputError, match="broken.flac: corrupt FLAC audio data: decoding fails at "):
            list(f.blocks(sample_rate=sr, channels=1, start=sr, blocksize=1024))


@pytest.mark.parametrize("ext,endian", [("aiff", "FILE"), ("wav", "BIG")])  # AIFF and big-endian RIFX
def test_truncated_aiff_and_rifx_count_missing_bytes(tmp_path, ext, endian):
    full = tmp_path / f"full.{ext}"
    sf.write(str(full), sine(440, 1.0, 48000, 2), 48000, subtype="PCM_16", endian=endian)
    data = full.read_bytes()
    assert io.open_audio(full).frames == 48000
    for keep in (len(data) // 3, len(data) - 4, data.index(b"SSND" if ext == "aiff" else b"data") + 16):
        cut = tmp_path / f"cut.{ext}"
        cut.write_bytes(data[:keep])
        with pytest.raises(InputError, match=f"cut.{ext}: truncated {ext.upper()} file "
                                             f"\\({len(data) - keep} bytes of audio data missing\\)"):
            io.open_audio(cut)


# ---------------------------------------------------------------------------------- writing

@pytest.mark.parametrize("bits,subtype,tol", [(16, "PCM_16", 0.5 / 32768), (24, "PCM_24", 0.5 / 2 ** 23),
                                               (32, "FLOAT", 0.0), (None, "PCM_24", 0.5 / 2 ** 23)])
def test_wav_round_trip(tmp_path, bits, subtype, tol):
    x = tones(0.5, 48000, 2, amp=0.9)
    out = tmp_path / "o.wav"
    writer.write_audio(out, x, 48000, bit_depth=bits)
    info = sf.info(str(out))
    assert (info.format, info.subtype, info.frames, info.samplerate) == ("WAV", subtype, len(x), 48000)
    y = io.open_audio(out).read()
    assert np.max(np.abs(y - x)) <= tol + 1e-9


@pytest.mark.parametrize("bits", [16, 24])
def test_flac_round_trip_is_lossless(tmp_path, bits):
    x = tones(0.5, 44100, 3, amp=0.9)
    writer.write_audio(tmp_path / "o.wav", x, 44100, bit_depth=bits)
    writer.write_audio(tmp_path / "o.flac", x, 44100, bit_depth=bits)
    assert sf.info(str(tmp_path / "o.flac")).subtype == f"PCM_{bits}"
    a = io.open_audio(tmp_path / "o.wav").read()
    b = io.open_audio(tmp_path / "o.flac").read()
    np.testing.assert_array_equal(a, b)


def test_integer_outputs_clip_instead_of_wrapping(tmp_path):
    x = np.array([[1.5], [-1.5], [0.999999], [-1.0], [0.5]], np.float32)
    writer.write_audio(tmp_path / "c.wav", x, 48000, bit_depth=16)
    y, _ = sf.read(str(tmp_path / "c.wav"), dtype="int16")
    assert list(y) == [32767, -32768, 32767, -32768, 16384]


@pytest.mark.parametrize("ext,rate", [(".mp3", 44100), (".ogg", 44100), (".opus", 48000), (".m4a", 44100),
                                      (".opus", 44100)])
def test_lossy_round_trip(tmp_path, ext, rate):
    x = tones(1.0, rate, 2)
    out = tmp_path / f"o{ext}"
    writer.write_audio(out, x, rate)
    f = io.open_audio(out)
    expect_rate = 48000 if ext == ".opus" else rate
    assert f.sample_rate == expect_rate and f.channels == 2
    y = f.read(sample_rate=rate)
    assert abs(len(y) - len(x)) <= CODEC_FRAME[ext.lstrip(".")]
    for k in range(2):
        assert best_corr(y[:, k], x[:, k]) > 0.99


def test_writer_is_atomic(tmp_path):
    out = tmp_path / "keep.wav"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with writer.AudioWriter(out, sample_rate=48000, channels=1) as w:
            w.write(np.zeros((1000, 1), np.float32))
            raise RuntimeError("boom")
    assert out.read_bytes() == b"old"
    with pytest.raises(RuntimeError):
        with writer.AudioWriter(tmp_path / "new.mp3", sample_rate=48000, channels=1) as w:
            w.write(np.zeros((1000, 1), np.float32))
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.wav"]


def test_unknown_output_extension_is_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"x\.aif.*unsupported"):
        writer.AudioWriter(tmp_path / "x.aif", sample_rate=48000, channels=2)
    with pytest.raises(UsageError, match="bit depth"):
        writer.AudioWriter(tmp_path / "x.flac", sample_rate=48000, channels=2, bit_depth=32)


# ------------------------------------------------------------------------------------- stdio

PY = [sys.executable, "-c"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def test_stdin_and_stdout(tmp_path):
    x = tones(0.5, 44100, 2)
    src = write_wav(tmp_path / "a.wav", x, 44100, subtype="PCM_24")
    code = ("from avmix.audio import io, writer\n"
            "import sys\nf = io.open_audio('-')\nsys.stderr.write(f.local_path)\n"
            "with writer.AudioWriter('-', sample_rate=48000, channels=1, bit_depth=16,"
            " frames=f.target_frames(48000)) as w:\n"
            "    for b in f.blocks(sample_rate=48000, channels=1): w.write(b)\n")
    with open(src, "rb") as fin:
        out = subprocess.run(PY + [code], stdin=fin, capture_output=True, env=ENV, timeout=60)
    assert out.returncode == 0, out.stderr
    (tmp_path / "piped.wav").write_bytes(out.stdout)
    info = sf.info(str(tmp_path / "piped.wav"))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (48000, 1, "PCM_16", 24000)
    y = io.open_audio(tmp_path / "piped.wav").read()
    ref = io.open_audio(src).read(sample_rate=48000, channels=1)
    assert np.max(np.abs(y - ref)) <= 1 / 32768 + 1e-7
    tmp_copy = out.stderr.decode()
    assert "avmix-stdin-" in tmp_copy and not os.path.exists(tmp_copy)  # removed at exit


def test_stdout_unknown_length_header_is_readable(tmp_path):
    code = ("import numpy as np\nfrom avmix.audio import writer\n"
            "with writer.AudioWriter('-', sample_rate=16000, channels=2, bit_depth=24) as w:\n"
            "    w.write(np.full((4000, 2), 0.25, np.float32))\n")
    out = subprocess.run(PY + [code], capture_output=True, env=ENV, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout[4:8] == b"\xff\xff\xff\xff"
    (tmp_path / "u.wav").write_bytes(out.stdout)
    f = io.open_audio(tmp_path / "u.wav")
    assert (f.frames, f.channels, f.sample_rate) == (4000, 2, 16000)
    assert np.allclose(f.read(), 0.25)


def test_empty_stdin_is_input_error():
    code = ("import sys\nfrom avmix.audio import io\nfrom avmix.errors import InputError\n"
            "try:\n    io.open_audio('-')\nexcept InputError as e:\n    print(e.message); sys.exit(3)\n")
    out = subprocess.run(PY + [code], stdin=subprocess.DEVNULL, capture_output=True, env=ENV, timeout=60, text=True)
    assert out.returncode == 3 and "standard input is empty" in out.stdout


@pytest.mark.parametrize("content,msg", [
    (b"hello, this is text and not audio at all\n" * 20, "not an audio file"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\xbb\x00\x00\x00\x77\x01\x00"
     b"\x02\x00\x10\x00data\x00\x00\x00\x00", "no audio"),
])
def test_open_audio_bad_content(tmp_path, content, msg):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(InputError, match=msg) as e:
        io.open_audio(p)
    assert str(p) in e.value.message and "\n" not in e.value.message


def test_rechunk_always_yields_exact_frames_in_full_blocks():
    rng = np.random.default_rng(0)
    for _ in range(500):
        blocks = [np.full((n, 1), i + 1, np.float32) for i, n in enumerate(rng.integers(0, 200, rng.integers(0, 6)))]
        frames, bs = int(rng.integers(0, 500)), int(rng.integers(1, 130))
        out = list(io._rechunk(iter(blocks), frames, 1, bs))
        got = np.concatenate(out) if out else np.zeros((0, 1), np.float32)
        ref = np.concatenate(blocks + [np.zeros((frames, 1), np.float32)])[:frames]
        assert all(len(o) == bs for o in out[:-1]) and (not out or 0 < len(out[-1]) <= bs)
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("src,dst", [(8000, 192000), (192000, 8000), (44100, 22050), (11025, 48000)])
def test_seek_matches_sequential_read_at_extreme_ratios(tmp_path, src, dst):
    x = tones(1.5, src, 1)
    f = io.open_audio(write_wav(tmp_path / "x.wav", x, src))
    full = f.read(sample_rate=dst)
    start = int(0.9 * dst)
    part = np.concatenate(list(f.blocks(sample_rate=dst, channels=1, start=start, frames=dst // 4)))
    np.testing.assert_allclose(part, full[start:start + dst // 4], atol=1e-5)


def test_named_pipe_input(tmp_path):
    x = tones(0.5, 22050, 2)
    src = write_wav(tmp_path / "a.wav", x, 22050, subtype="PCM_16")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    import threading

    def feed():
        with open(fifo, "wb") as w:
            w.write(src.read_bytes())

    t = threading.Thread(target=feed)
    t.start()
    f = io.open_audio(fifo)
    t.join(10)
    assert (f.frames, f.sample_rate, f.channels) == (len(x), 22050, 2)
    np.testing.assert_allclose(f.read(), x, atol=1 / 32768)


def test_block_reading_memory_is_flat(tmp_path):
    import tracemalloc
    sr, secs = 48000, 60  # 23 MB of float32 samples
    path = tmp_path / "long.wav"
    with sf.SoundFile(str(path), "w", sr, 2, "PCM_16") as w:
        for _ in range(secs):
            w.write(tones(1.0, sr, 2))
    f = io.open_audio(path)
    for rate in (48000, 44100):
        tracemalloc.start()
        n = sum(len(b) for b in f.blocks(sample_rate=rate, channels=2))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert n == f.target_frames(rate)
        assert peak < 8e6, f"{peak / 1e6:.1f} MB peak reading {secs} s at {rate} Hz"


@pytest.mark.parametrize("ext,rate,expect", [(".mp3", 96000, 48000), (".mp3", 11025, 11025), (".m4a", 192000, 96000),
                                             (".ogg", 96000, 96000), (".opus", 22050, 48000)])
def test_lossy_outputs_at_rates_their_codecs_refuse(tmp_path, ext, rate, expect):
    x = tones(0.3, rate, 1)
    writer.write_audio(tmp_path / f"o{ext}", x, rate)
    f = io.open_audio(tmp_path / f"o{ext}")
    assert f.sample_rate == expect
    assert abs(f.target_frames(rate) - len(x)) <= 2048 * rate // expect


def test_mp3_refuses_more_than_two_channels(tmp_path):
    with pytest.raises(UsageError, match="mp3 holds at most 2 channels"):
        writer.AudioWriter(tmp_path / "o.mp3", sample_rate=48000, channels=6)
    writer.write_audio(tmp_path / "o.m4a", tones(0.3, 48000, 6), 48000)  # aac takes 5.1
    assert io.open_audio(tmp_path / "o.m4a").channels == 6


def test_wav_header_becomes_rf64_past_4_gib():
    import io as pyio
    import struct
    buf = pyio.BytesIO(writer._wav_header(48000, 2, 24, None, junk=True))
    assert len(buf.getvalue()) == 80 and buf.getvalue()[12:16] == b"JUNK"
    big = 5 * 2 ** 30 // 6 * 6
    writer._patch_wav(buf, big, big // 6)
    h = buf.getvalue()
    assert h[:4] == b"RF64" and h[12:16] == b"ds64"
    riff, data, frames = struct.unpack("<QQQ", h[20:44])
    assert (riff, data, frames) == (72 + big, big, big // 6)
    assert h[72:76] == b"data" and h[76:80] == b"\xff\xff\xff\xff"


def test_reuse_decoded_decodes_an_unchanged_file_once(tmp_path, monkeypatch):
    sr = 48000
    src = write_wav(tmp_path / "src.wav", tones(1.0, sr, 2), sr)
    path = ffmpeg_convert(src, tmp_path / "v.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                          video=True)
    calls = []
    real = io._decode
    monkeypatch.setattr(io, "_decode", lambda *a: calls.append(a[0]) or real(*a))
    with io.reuse_decoded():
        first = io.open_audio(path)
        monkeypatch.chdir(tmp_path)
        again = io.open_audio("v.mp4")  # another spelling of the same file
        assert len(calls) == 1 and again.path == "v.mp4"
        assert np.array_equal(first.read(), again.read())
        del first  # the copy keeps the decoded samples alive
        assert again.read().shape == (again.frames, 2)
        ffmpeg_convert(src, tmp_path / "v.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                       "-b:a", "96k", video=True)
        io.open_audio(path)  # changed: decoded again
        assert len(calls) == 2
    io.open_audio(path)
    io.open_audio(path)
    assert len(calls) == 4  # outside the block every open decodes


def test_probe_takes_what_the_picture_probe_printed(tmp_path, monkeypatch):
    from avmix.video import pictures

    sr = 48000
    src = write_wav(tmp_path / "src.wav", tones(1.0, sr, 2), sr)
    path = ffmpeg_convert(src, tmp_path / "v.mkv", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "flac",
                          video=True)
    own = ffmpeg.probe(path)
    pictures.find(path)

    def no_ffmpeg(*a, **k):
        raise AssertionError("ffmpeg started")

    monkeypatch.setattr(ffmpeg, "run_command", no_ffmpeg)
    known = ffmpeg.probe(path)
    assert (known.format, known.duration, known.audio, known.video) == (own.format, own.duration, own.audio,
                                                                       own.video)
    assert known.streams == own.streams  # the null output's streams are not taken for the input's
