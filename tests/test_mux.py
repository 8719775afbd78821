"""The mux stage: lengths by decoding, containers, the stream-copy path, and bad input."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from avmix import ffmpeg, mux
from avmix.errors import InputError, OutputError, UsageError
from conftest import sine, write_wav

SR = 48000
FPS = 25


def make_video(path, seconds=2.0, size="160x120", fps=FPS, codec=("-c:v", "libx264", "-pix_fmt", "yuv420p")):
    ffmpeg.run(["-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}:duration={seconds}", *codec, ffmpeg.url(path)])
    return path


def decode_video(path, side=16) -> np.ndarray:
    """Every frame the first video stream holds (none duplicated or dropped to make a constant rate from
    the file's start), as (n, side, side) grey uint8."""
    raw = ffmpeg.run(["-i", ffmpeg.url(path), "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo",
                      "-pix_fmt", "gray", "-s", f"{side}x{side}", "-"])
    return np.frombuffer(raw, np.uint8).reshape(-1, side, side)


def frame_times(path) -> list[float]:
    """Presentation time (s) of every frame of the first video stream, as stored in the file."""
    _, _, err = ffmpeg.run_command([ffmpeg.executable(), "-hide_banner", "-nostdin", "-copyts", "-i", ffmpeg.url(path),
                                    "-map", "0:v:0", "-vf", "showinfo", "-fps_mode", "passthrough", "-f", "null", "-"])
    return [float(t) for t in re.findall(rb"pts_time:\s*(-?[0-9.]+)", err)]


def decode_audio(path, sr=SR, from_zero=False) -> np.ndarray:
    """The first audio stream as mono float32; ``from_zero``: the samples a player plays from time 0
    on, placed by their timestamps (what comes before 0, such as priming, is left out)."""
    placed = (["-copyts"], ["-af", "atrim=start=0"]) if from_zero else ([], [])
    raw = ffmpeg.run([*placed[0], "-i", ffmpeg.url(path), "-map", "0:a:0", *placed[1], "-f", "f32le", "-ac", "1",
                      "-ar", str(sr), "-"])
    return np.frombuffer(raw, np.float32)


def band_noise(rng, n, cutoff=6000.0):
    """Noise below ``cutoff`` Hz (what AAC keeps intact), peak about 0.5."""
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[np.fft.rfftfreq(n, 1 / SR) > cutoff] = 0
    x = np.fft.irfft(spec, n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def best_lag(x, y, span=2048):
    """Lag (samples) of y against x with the highest correlation, searched in +-span."""
    lags = range(-span, span + 1, 1)
    core = slice(span, len(x) - span)
    return max(lags, key=lambda k: float(np.dot(x[core], y[span + k:len(x) - span + k])))


@pytest.fixture
def video(tmp_path):
    return make_video(tmp_path / "v.mp4")


def audio_file(tmp_path, seconds, name=None):
    return write_wav(tmp_path / (name or f"a{seconds}.wav"), sine(440, seconds, SR, 2, 0.3), SR, "PCM_16")


def assert_length(out, seconds, fps=FPS):
    """The video holds seconds * fps frames (+-1), the first at time 0 and the last ending at ``seconds``
    (+-1 frame); the audio lasts ``seconds`` (+-1 frame)."""
    times = frame_times(out)
    assert abs(len(times) - seconds * fps) <= 1, (len(times), seconds * fps)
    assert abs(times[0]) < 0.25 / fps, times[:3]  # not late: a player would show it, a decoder duplicate it
    assert abs(times[-1] + 1 / fps - seconds) <= 1 / fps, (times[-1], seconds)
    frames = decode_video(out)
    assert len(frames) == len(times)
    audio = decode_audio(out)
    assert abs(len(audio) / SR - seconds) <= 1 / fps, (len(audio) / SR, seconds)
    return frames, audio


def test_fit_audio_holds_last_frame(tmp_path, video):
    audio = audio_file(tmp_path, 3.3)
    res = mux.render(video, audio, tmp_path / "o.mp4")
    assert res["method"] == "hold" and not res["video_copied"]
    frames, _ = assert_length(tmp_path / "o.mp4", 3.3)
    held = frames[2 * FPS:].astype(int)
    assert np.abs(held - held[0]).max() <= 2  # the last frame, held
    assert np.abs(frames[FPS].astype(int) - frames[2 * FPS - 1]).mean() > 2  # the source itself moves


def test_fit_audio_loops_a_short_video(tmp_path):
    video = make_video(tmp_path / "short.mp4", seconds=1.0)
    audio = audio_file(tmp_path, 3.5)
    res = mux.render(video, audio, tmp_path / "o.mp4")
    assert res["method"] == "loop"
    frames, _ = assert_length(tmp_path / "o.mp4", 3.5)
    f = frames.astype(int)
    assert np.abs(f[FPS] - f[0]).mean() < 2 and np.abs(f[2 * FPS + 5] - f[5]).mean() < 2  # starts again
    assert np.abs(f[FPS - 1] - f[0]).mean() > 2


def test_still_image_lasts_the_whole_audio(tmp_path):
    png = tmp_path / "cover.png"
    ffmpeg.run(["-f", "lavfi", "-i", "testsrc=size=160x120", "-frames:v", "1", "-f", "image2", ffmpeg.url(png)])
    res = mux.render(png, audio_file(tmp_path, 2.2), tmp_path / "o.mp4")
    assert res["method"] == "loop"
    frames, _ = assert_length(tmp_path / "o.mp4", 2.2)
    assert np.abs(frames.astype(int) - frames[0]).max() <= 2


def test_fit_audio_cuts_a_long_video(tmp_path, video):
    audio = audio_file(tmp_path, 1.3)
    res = mux.render(video, audio, tmp_path / "o.mkv")
    assert res["method"] == "cut"
    assert_length(tmp_path / "o.mkv", 1.3)


def test_fit_video_pads_audio_with_silence(tmp_path, video):
    audio = audio_file(tmp_path, 1.0)
    mux.render(video, audio, tmp_path / "o.mp4", fit="video")
    _, a = assert_length(tmp_path / "o.mp4", 2.0)
    assert np.sqrt(np.mean(a[int(0.2 * SR):int(0.8 * SR)] ** 2)) > 0.1
    assert np.abs(a[int(1.2 * SR):]).max() < 1e-3


def test_fit_video_cuts_audio_and_shortest(tmp_path, video):
    audio = audio_file(tmp_path, 3.0)
    mux.render(video, audio, tmp_path / "v.mov", fit="video")
    assert_length(tmp_path / "v.mov", 2.0)
    short = audio_file(tmp_path, 1.4)
    mux.render(video, short, tmp_path / "s.mp4", fit="shortest")
    assert_length(tmp_path / "s.mp4", 1.4)


def test_audio_is_the_input_audio(tmp_path, video):
    rng = np.random.default_rng(1)
    x = band_noise(rng, 2 * SR)[:, None]
    audio = write_wav(tmp_path / "n.wav", x, SR)
    mux.render(video, audio, tmp_path / "o.mp4")
    y = decode_audio(tmp_path / "o.mp4")
    assert abs(len(y) - len(x)) <= SR // FPS
    n = min(len(y), len(x))
    assert np.corrcoef(x[:n, 0], y[:n])[0, 1] > 0.99
    assert best_lag(x[:n, 0], y[:n]) == 0  # AAC priming is trimmed: no shift


@pytest.mark.parametrize("ext", [".mkv", ".webm"])
def test_audio_starts_with_the_first_frame_in_matroska(tmp_path, video, ext):
    """By timestamps, the first frame is at 0 and so is the audio's first sample, within a quarter of
    a frame on every build (5.1 cannot mark AAC's priming in .mkv, so it sits just before 0)."""
    rng = np.random.default_rng(2)
    x = band_noise(rng, 2 * SR)
    mux.render(video, write_wav(tmp_path / "n.wav", x[:, None], SR), tmp_path / f"o{ext}")
    assert abs(frame_times(tmp_path / f"o{ext}")[0]) < 0.25 / FPS
    y = decode_audio(tmp_path / f"o{ext}", from_zero=True)
    n = min(len(x), len(y)) - 2048
    lag = best_lag(x[:n], y[:n])
    assert abs(lag) < 0.25 * SR / FPS, lag
    assert np.corrcoef(x[1024:n - 1024], y[1024 + lag:n - 1024 + lag])[0, 1] > 0.95


@pytest.mark.parametrize("ext,vcodec,acodec", [(".webm", "vp9", "opus"), (".mkv", "h264", "aac"),
                                               (".mov", "h264", "aac"), (".mp4", "h264", "aac")])
def test_containers(tmp_path, ext, vcodec, acodec):
    video = make_video(tmp_path / "v.mkv", codec=("-c:v", "mpeg4"))  # not H.264: always re-encoded
    audio = audio_file(tmp_path, 2.0)
    out = tmp_path / f"o{ext}"
    mux.render(video, audio, out)
    info = ffmpeg.probe(out)
    assert info.video.codec == vcodec and info.audio.codec == acodec
    assert "yuv420p" in next(s for s in info.streams if "Video:" in s)
    assert_length(out, 2.0)


def test_mp4_is_faststart(tmp_path, video):
    mux.render(video, audio_file(tmp_path, 2.0), tmp_path / "o.mp4")
    head = (tmp_path / "o.mp4").read_bytes()
    assert 0 <= head.find(b"moov") < head.find(b"mdat")


def test_stream_copy_when_video_fits(tmp_path, video):
    audio = audio_file(tmp_path, 2.0)
    res = mux.render(video, audio, tmp_path / "o.mp4")
    assert res["video_copied"] and res["method"] == "as-is"
    src, out = decode_video(video), decode_video(tmp_path / "o.mp4")
    assert len(out) == len(src) == 2 * FPS
    assert np.array_equal(src, out)  # bit-identical frames: nothing re-encoded
    # a webm cannot hold H.264, so the same job re-encodes
    assert not mux.render(video, audio, tmp_path / "o.webm")["video_copied"]


def test_ten_bit_h264_is_not_copied(tmp_path):
    if not ffmpeg.has_encoder("libx264"):
        pytest.skip("no libx264")
    try:
        video = make_video(tmp_path / "v10.mp4", codec=("-c:v", "libx264", "-pix_fmt", "yuv420p10le"))
    except ffmpeg.FFmpegError:
        pytest.skip("this libx264 has no 10-bit support")
    res = mux.render(video, audio_file(tmp_path, 2.0), tmp_path / "o.mp4")
    assert not res["video_copied"]  # browsers and phones need 8-bit yuv420p
    assert "yuv420p10" not in next(s for s in ffmpeg.probe(tmp_path / "o.mp4").streams if "Video:" in s)


def test_odd_sized_video_is_made_even(tmp_path):
    video = make_video(tmp_path / "odd.mkv", size="161x99", codec=("-c:v", "ffv1"))
    res = mux.render(video, audio_file(tmp_path, 1.0), tmp_path / "o.mp4")
    info = ffmpeg.probe(tmp_path / "o.mp4")
    assert (info.video.width, info.video.height) == (160, 98) == (res["width"], res["height"])


def test_no_video_stream_is_an_input_error(tmp_path):
    audio = audio_file(tmp_path, 1.0)
    with pytest.raises(InputError, match="a1.0.wav: has no video stream"):
        mux.render(audio, audio, tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()


def test_unknown_container_and_bad_options(tmp_path, video):
    audio = audio_file(tmp_path, 1.0)
    for bad in (dict(output=tmp_path / "o.avi"), dict(output=tmp_path / "o"), dict(fit="longest"),
                dict(preset="warp"), dict(crf=60), dict(audio_bitrate="loud"),
                dict(audio_bitrate="1000000000k"), dict(audio_bitrate="1k")):
        kw = {"output": tmp_path / "o.mp4", **bad}
        with pytest.raises(UsageError):
            mux.render(video, audio, kw.pop("output"), **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([audio.name, video.name])


def test_existing_output_and_inputs_are_protected(tmp_path, video):
    audio = audio_file(tmp_path, 1.0)
    out = tmp_path / "o.mp4"
    out.write_bytes(b"keep")
    with pytest.raises(OutputError):
        mux.render(video, audio, out)
    assert out.read_bytes() == b"keep"
    mux.render(video, audio, out, overwrite=True)
    assert ffmpeg.probe(out).video is not None
    before = video.read_bytes()
    with pytest.raises(OutputError):
        mux.render(video, audio, video, overwrite=True)
    assert video.read_bytes() == before


def test_failure_leaves_no_partial_output(tmp_path, video):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + b"\x00" * 100)
    with pytest.raises((InputError, ffmpeg.FFmpegError)):
        mux.render(video, bad, tmp_path / "o.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.wav", "v.mp4"]


def test_progress_reports_to_the_end(tmp_path, video):
    seen = []
    mux.render(video, audio_file(tmp_path, 3.0), tmp_path / "o.mp4", progress=lambda *a: seen.append(a))
    assert seen[0] == ("mux", 0.0, 3.0) and seen[-1] == ("mux", 3.0, 3.0)
    assert all(s == "mux" and 0 <= d <= t for s, d, t in seen)


def test_cli_render_and_workdir(tmp_path, video, run_cli):
    work = tmp_path / "work"
    work.mkdir()
    (work / "video.mp4").write_bytes(video.read_bytes())
    audio_file(work, 2.0, "audio.wav")
    r = run_cli("render", work, "-o", tmp_path / "w.mp4", "--json", "-q")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert math.isclose(res["duration"], 2.0) and res["video_copied"]
    assert_length(tmp_path / "w.mp4", 2.0)
    r = run_cli("render", video, work / "audio.wav", "-o", tmp_path / "w.mp4")
    assert r.code == 1 and "already exists" in r.err
    r = run_cli("render", video, "-o", tmp_path / "x.mp4")
    assert r.code == 2 and "work directory" in r.err
    r = run_cli("render", work / "audio.wav", work / "audio.wav", "-o", tmp_path / "x.mp4")
    assert r.code == 1 and "audio.wav: has no video stream" in r.err and "Traceback" not in r.err
    r = run_cli("render", video, work / "audio.wav", "-o", tmp_path / "x.gif")
    assert r.code == 2 and "unknown video container" in r.err
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "x.gif").exists()


def audio_packets(path) -> list[str]:
    """Every audio packet as stored (timestamps, duration, size, checksum, skip-samples side data)."""
    raw = ffmpeg.run(["-copyts", "-i", ffmpeg.url(path), "-map", "0:a:0", "-c", "copy", "-f", "framecrc", "-"])
    return [ln for ln in raw.decode().splitlines() if not ln.startswith("#")]


@pytest.mark.parametrize("ext", [".mp4", ".mov"])
def test_audio_encoded_ahead_is_the_audio_encoded_in_the_mux(tmp_path, ext):
    """The stream copied from an encode made ahead is the one the mux would have encoded: the same
    packets (so the same priming and end), the same decoded samples, on every build."""
    seconds = 2.0123  # not a whole number of AAC frames (1024 samples)
    rng = np.random.default_rng(3)
    audio = write_wav(tmp_path / "n.wav", band_noise(rng, round(seconds * SR))[:, None].repeat(2, 1), SR, "FLOAT")
    video = make_video(tmp_path / "v.mp4", seconds=2.04)
    with mux.AudioEncode(audio, tmp_path / "a.m4a", tmp_path / f"o{ext}") as job:
        encoded = job.wait()
    plain = mux.render(video, audio, tmp_path / f"plain{ext}")
    ahead = mux.render(video, audio, tmp_path / f"ahead{ext}", encoded_audio=encoded)
    assert ahead["audio_copied"] and not plain["audio_copied"]
    assert audio_packets(tmp_path / f"ahead{ext}") == audio_packets(tmp_path / f"plain{ext}")
    a, b = decode_audio(tmp_path / f"ahead{ext}"), decode_audio(tmp_path / f"plain{ext}")
    assert len(a) == len(b) and np.array_equal(a, b)
    assert abs(len(a) - seconds * SR) < 1024  # at most the last AAC frame's padding on builds that keep it
    assert decode_video(tmp_path / f"ahead{ext}").shape == decode_video(tmp_path / f"plain{ext}").shape


def test_audio_encoded_ahead_is_not_used_where_it_would_change_the_audio(tmp_path, video):
    audio = audio_file(tmp_path, 1.0)
    with mux.AudioEncode(audio, tmp_path / "a.m4a", tmp_path / "o.mp4") as job:
        encoded = job.wait()
    # padded to the video's length: the mux encodes the padding itself
    res = mux.render(video, audio, tmp_path / "o.mp4", fit="video", encoded_audio=encoded)
    assert not res["audio_copied"]
    assert abs(len(decode_audio(tmp_path / "o.mp4")) / SR - 2.0) <= 1 / FPS
    # Matroska keeps the priming only when encoded in the mux on some builds
    assert not mux.render(video, audio, tmp_path / "o.mkv", encoded_audio=encoded)["audio_copied"]


def test_audio_encode_cancelled_leaves_nothing(tmp_path):
    audio = audio_file(tmp_path, 2.0)
    job = mux.AudioEncode(audio, tmp_path / "a.m4a", tmp_path / "o.mp4")
    proc = job._proc
    job.cancel()
    assert proc.poll() is not None  # stopped and reaped
    assert sorted(p.name for p in tmp_path.iterdir()) == [audio.name]
    with mux.AudioEncode(audio, tmp_path / "a.m4a", tmp_path / "o.mp4"):
        pass  # left without wait(): cancelled too
    assert sorted(p.name for p in tmp_path.iterdir()) == [audio.name]


def test_what_the_writer_describes_is_what_ffmpeg_probes(tmp_path):
    """The pipeline hands the mux :func:`writer.described` instead of probing its own video."""
    from avmix.video import writer

    path = tmp_path / "v.mp4"
    with writer.VideoWriter(path, width=64, height=48, fps=29.97) as w:
        for k in range(31):
            w.write(np.full((48, 64, 3), k * 8, np.uint8))
    probed, told = ffmpeg.probe(path), writer.described(path, width=64, height=48, fps=29.97, frames=31)
    assert probed.duration == pytest.approx(told.duration, abs=0.011)  # ffmpeg prints centiseconds
    assert (probed.video.codec, probed.video.width, probed.video.height, probed.video.pix_fmt) == \
        (told.video.codec, told.video.width, told.video.height, told.video.pix_fmt)
    assert probed.video.fps == pytest.approx(told.video.fps, abs=0.01)
    assert probed.format == told.format
