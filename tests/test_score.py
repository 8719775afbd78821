"""AV-Align on synthetic videos: a textured square that jumps on (or beside) clicks in the audio."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avmix import ffmpeg
from avmix.score import av_align, match_peaks, peak_frames, score
from tests.conftest import write_wav

pytest.importorskip("cv2")
pytest.importorskip("librosa")

FPS = 25
W, H = 128, 96
FRAMES = 100  # 4 s
CLICK_FRAMES = [10, 27, 41, 58, 70, 86]  # irregular, at least 12 frames apart
SR = 48000


def clicks_audio(path: Path, frames=CLICK_FRAMES, seconds=FRAMES / FPS) -> Path:
    x = np.zeros(int(seconds * SR), dtype=np.float32)
    burst = np.random.default_rng(1).uniform(-0.8, 0.8, int(0.004 * SR)).astype(np.float32)
    burst *= np.exp(-np.arange(burst.size) / (0.001 * SR)).astype(np.float32)
    for n in frames:
        i = int(round(n / FPS * SR))
        x[i:i + burst.size] += burst
    return write_wav(path, x[:, None], SR)


def square_video(path: Path, jump_frames, *, audio: Path | None = None, size=(W, H)) -> Path:
    """A static grey picture with a 24x24 noise-textured square that jumps 12 px at ``jump_frames``."""
    w, h = size
    tex = np.random.default_rng(0).integers(0, 256, (24, 24), dtype=np.uint8)
    x, step = 20, 12
    frames = []
    for n in range(FRAMES):
        if n in jump_frames:
            if not 0 <= x + step <= w - 24:
                step = -step
            x += step
        f = np.full((h, w), 96, dtype=np.uint8)
        f[36:60, x:x + 24] = tex
        frames.append(np.repeat(f[:, :, None], 3, axis=2))
    args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(FPS), "-i", "pipe:0"]
    if audio is not None:
        args += ["-i", ffmpeg.url(audio), "-c:a", "aac", "-shortest"]
    args += ["-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", ffmpeg.url(path)]
    ffmpeg.run(args, input=np.stack(frames).tobytes(), timeout=60)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("score")
    wav = clicks_audio(d / "clicks.wav")
    return {
        "wav": wav,
        "aligned": square_video(d / "aligned.mp4", CLICK_FRAMES),
        "shifted": square_video(d / "shifted.mp4", [n + 4 for n in CLICK_FRAMES]),
        "static": square_video(d / "static.mp4", []),
        "muxed": square_video(d / "muxed.mp4", CLICK_FRAMES, audio=wav),
    }


def test_pure_matching_is_one_to_one():
    # Two audio peaks within a frame of one video peak: only one may match it.
    assert match_peaks([1.00, 1.03], [1.02], 0.04) == 1
    r = av_align([1.00, 1.03], [1.02], 25)
    assert r["matches"] == 1 and r["av_align"] == pytest.approx(0.5)
    # Exactly one frame apart matches; a little more does not.
    assert match_peaks([1.0], [1.04], 1 / 25) == 1
    assert match_peaks([1.0], [1.05], 1 / 25) == 0
    # Greedy by time keeps the maximum matching.
    assert match_peaks([0.96, 1.0], [0.98, 1.03], 0.04) == 2
    # Empty cases.
    assert av_align([], [], 25)["av_align"] == 0.0
    assert av_align([1.0], [], 25)["av_align"] == 0.0


def test_peaks_need_minimum_flow():
    traj = [0.0, 0.05, 0.01, 0.0, 2.0, 0.1, 0.3, 0.2, 0.2]
    assert list(peak_frames(traj)) == [4, 6]  # 0.05 is below the minimum; ends never count
    assert list(peak_frames(traj, min_value=0.0)) == [1, 4, 6]


def test_aligned_motion_scores_near_one(media):
    r = score(media["aligned"], audio=media["wav"])
    assert r["fps"] == pytest.approx(FPS)
    assert r["frames"] == FRAMES
    assert r["video_peaks"] == len(CLICK_FRAMES)
    assert r["audio_peaks"] == len(CLICK_FRAMES)
    assert r["av_align"] > 0.8


def test_shifted_motion_scores_near_zero(media):
    r = score(media["shifted"], audio=media["wav"])
    assert r["video_peaks"] == len(CLICK_FRAMES)
    assert r["av_align"] < 0.2


def test_static_video_scores_zero(media):
    r = score(media["static"], audio=media["wav"])
    assert r["video_peaks"] == 0
    assert r["audio_peaks"] == len(CLICK_FRAMES)
    assert r["av_align"] == 0.0


def test_full_size_flow_by_default_and_scaled_on_request(media, run_cli):
    """The published AV-Align computes flow on the frames as they are; scaled flow is an option."""
    import cv2

    from avmix.score import FARNEBACK, gray_frames
    full = score(media["aligned"], audio=media["wav"])
    assert full["flow_size"] == [W, H] and full["flow_width"] is None and full["min_flow"] == 0.1
    # the reference's computation, written out: Farneback on full-size grey frames, peaks >= 0.1 px
    frames = list(gray_frames(media["aligned"], W, H))
    traj = [np.mean(cv2.magnitude(*cv2.split(cv2.calcOpticalFlowFarneback(a, b, None, *FARNEBACK))))
            for a, b in zip(frames, frames[1:])]
    traj = [traj[0]] + traj
    assert full["video_peaks"] == len(peak_frames(traj, min_value=0.1))
    res = run_cli("score", media["aligned"], "--audio", media["wav"], "--flow-width", "64", "--json")
    assert res.code == 0, res.err
    scaled = json.loads(res.out)
    assert scaled["flow_size"] == [64, 48] and scaled["flow_width"] == 64
    assert scaled["min_flow"] == pytest.approx(0.05)  # still 0.1 px of the video as it is
    assert scaled["av_align"] > 0.8
    res = run_cli("score", media["aligned"], "--audio", media["wav"], "--flow-width", "8")
    assert res.code == 2 and "flow width" in res.err and "Traceback" not in res.err


def test_cli_json_uses_the_videos_own_audio(media, run_cli):
    res = run_cli("score", media["muxed"], "--json")
    assert res.code == 0, res.err
    r = json.loads(res.out)
    assert {"av_align", "audio_peaks", "video_peaks", "fps"} <= set(r)
    assert r["audio_peaks"] == len(CLICK_FRAMES) and r["video_peaks"] == len(CLICK_FRAMES)
    assert r["av_align"] > 0.8


def test_cli_table_and_errors(media, run_cli, tmp_path):
    res = run_cli("score", media["aligned"], "--audio", media["wav"])
    assert res.code == 0, res.err
    assert "AV-Align" in res.out
    res = run_cli("score", media["aligned"])  # silent video, no --audio
    assert res.code == 1 and "no audio stream" in res.err and "Traceback" not in res.err
    res = run_cli("score", tmp_path / "missing.mp4", "--audio", media["wav"])
    assert res.code == 1 and "no such file" in res.err
    res = run_cli("score", media["wav"], "--audio", media["wav"])  # audio only: no video stream
    assert res.code == 1 and "no video stream" in res.err


def test_per_track_from_workdir(media, tmp_path):
    """Two tracks: the square's half of the picture moves on track 0's onsets; track 1 has onsets
    where nothing moves in its half."""
    wd = tmp_path / "wd"
    wd.mkdir()
    onsets0 = [n / FPS for n in CLICK_FRAMES]
    onsets1 = [0.5, 1.5, 2.5]
    track = lambda i, label, on: {"label": label, "envelope": [0.0] * FRAMES, "onsets": on, "index": i}
    analysis = {"schema": "avmix.analysis/1", "fps": FPS, "frames": FRAMES, "duration": FRAMES / FPS,
                "tracks": [track(0, "square", onsets0), track(1, "empty", onsets1)],
                "mix": track(-1, "mix", onsets0 + onsets1)}
    (wd / "analysis.json").write_text(json.dumps(analysis))
    layout = [{"index": 0, "label": "square", "box": [0, 30, W, 66]},
              {"index": 1, "label": "empty", "box": [0, 70, W, H]}]
    (wd / "manifest.json").write_text(json.dumps({"video": {"backend": "procedural", "layout": layout}}))
    r = score(media["aligned"], audio=media["wav"], workdir=wd)
    per = {t["label"]: t for t in r["per_track"]}
    assert per["square"]["av_align"] > 0.8
    assert per["empty"]["video_peaks"] == 0 and per["empty"]["av_align"] == 0.0
    assert per["empty"]["audio_peaks"] == 3

    # Without a layout the per-track score is absent, with a reason, and the overall score stands.
    (wd / "manifest.json").write_text(json.dumps({"video": {"backend": "diffusion"}}))
    r2 = score(media["aligned"], audio=media["wav"], workdir=wd)
    assert r2["per_track"] is None and "layout" in r2["per_track_note"]
    assert r2["av_align"] == r["av_align"]
    for damaged in ({"video": None}, {"video": ["x"]}, {"video": {"layout": "x"}}, ["x"]):
        (wd / "manifest.json").write_text(json.dumps(damaged))
        r3 = score(media["aligned"], audio=media["wav"], workdir=wd)
        assert r3["per_track"] is None and r3["av_align"] == r["av_align"], damaged


def test_procedural_generate_per_track(tmp_path, run_cli):
    """End to end on the real renderer: every click of the click track has a motion peak in the click
    track's part of the picture within one frame (recall), whatever else moves there."""
    clicks = clicks_audio(tmp_path / "clicks.wav")
    tone = write_wav(tmp_path / "tone.wav", (0.3 * np.sin(np.arange(4 * SR) * 2 * np.pi * 220 / SR))[:, None]
                     .astype(np.float32), SR)
    out, wd = tmp_path / "gen.mp4", tmp_path / "wd"
    res = run_cli("generate", clicks, tone, "-o", out, "--backend", "procedural", "--size", "320x180",
                  "--fps", str(FPS), "--workdir", wd, "--quiet")
    assert res.code == 0, res.err
    res = run_cli("score", out, "--workdir", wd, "--json")
    assert res.code == 0, res.err
    r = json.loads(res.out)
    assert r["per_track_onsets"].startswith("librosa")
    per = {t["index"]: t for t in r["per_track"]}
    assert set(per) == {0, 1}
    assert per[0]["audio_peaks"] == len(CLICK_FRAMES)
    assert per[0]["matches"] >= len(CLICK_FRAMES) - 1
    assert per[1]["audio_peaks"] <= 1  # a steady tone has (almost) no onsets


def test_missing_extra_says_what_to_install(media, monkeypatch, run_cli):
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    res = run_cli("score", media["aligned"], "--audio", media["wav"])
    assert res.code == 1
    assert "opencv-python-headless" in res.err and "pip install 'avmix[score]'" in res.err
