"""render and score check what they are given against the work directory's manifest, and score refuses
inputs it cannot measure: one line on stderr, exit 1, no warnings, nothing written."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avmix import cli, ffmpeg
from tests.conftest import write_wav

SR = 48000


def clicks(path: Path, seconds: float, at: list[float]) -> Path:
    x = np.zeros(int(seconds * SR), dtype=np.float32)
    burst = np.random.default_rng(0).uniform(-0.8, 0.8, 400).astype(np.float32)
    for t in at:
        i = int(t * SR)
        x[i:i + burst.size] += burst
    return write_wav(path, x[:, None], SR)


def raw_video(path: Path, frames: int, fps: int, size: int = 32) -> Path:
    """``frames`` frames of noise at ``fps`` (H.264), or one PNG when ``path`` ends in .png."""
    pics = np.random.default_rng(1).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size}x{size}", "-r", str(fps), "-i", "pipe:0"]
    if path.suffix == ".png":
        args += ["-frames:v", "1"]
    else:
        args += ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
    ffmpeg.run(args + [ffmpeg.url(path)], input=pics.tobytes(), timeout=60)
    return path


def generate(d: Path, audio: Path, out: str) -> tuple[Path, Path]:
    code = cli.run(["generate", str(audio), "--size", "160x90", "--fps", "10", "--keep", "-q", "-o", str(d / out)])
    assert code == 0
    return d / out, d / f".{out}.avmix-work"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two generate runs kept with their work directories: r (2 s) and s (1.5 s)."""
    d = tmp_path_factory.mktemp("workdirs")
    r, r_work = generate(d, clicks(d / "a.wav", 2.0, [0.3, 0.9, 1.4]), "r.mp4")
    s, s_work = generate(d, clicks(d / "b.wav", 1.5, [0.5]), "s.mp4")
    return {"dir": d, "r": r, "r_work": r_work, "s": s, "s_work": s_work, "a": d / "a.wav"}


@pytest.fixture
def work_copy(runs, tmp_path):
    """A copy of r's work directory to spoil."""
    return Path(shutil.copytree(runs["r_work"], tmp_path / "work"))


def one_error(r, *parts: str) -> None:
    """Exit 1 and exactly one line on stderr, an error containing every one of ``parts``."""
    assert r.code == 1, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("avmix: error: ") and all(p in lines[0] for p in parts), lines[0]


def avmix(*args) -> subprocess.CompletedProcess:
    """``python -m avmix ARGS`` in a process of its own: Python's warnings reach its real stderr."""
    return subprocess.run([sys.executable, "-m", "avmix", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


# ---------------------------------------------------------------------------------------------- render


def test_render_workdir_intact_is_muxed(work_copy, tmp_path, run_cli):
    r = run_cli("render", work_copy, "-o", tmp_path / "o.mp4", "--json", "-q")
    assert r.code == 0, r.err
    assert json.loads(r.out)["duration"] == pytest.approx(2.0)


def test_render_refuses_a_truncated_video(work_copy, tmp_path, run_cli):
    video = work_copy / "video.mp4"
    with open(video, "r+b") as f:
        f.truncate(video.stat().st_size // 2)
    r = run_cli("render", work_copy, "-o", tmp_path / "o.mp4")
    one_error(r, f"{video}: does not match the work directory's manifest", "run avmix generate again")
    assert not (tmp_path / "o.mp4").exists()


def test_render_refuses_a_swapped_audio(work_copy, runs, tmp_path, run_cli):
    shutil.copyfile(runs["s_work"] / "audio.wav", work_copy / "audio.wav")
    r = run_cli("render", work_copy, "-o", tmp_path / "o.mp4")
    one_error(r, f"{work_copy / 'audio.wav'}: does not match the work directory's manifest")
    assert not (tmp_path / "o.mp4").exists()


def test_render_refuses_a_stage_the_manifest_does_not_record(work_copy, tmp_path, run_cli):
    """An interrupted run removes the video stage's entry before it writes: an older video.mp4 beside it
    is not this run's."""
    m = json.loads((work_copy / "manifest.json").read_text())
    del m["stages"]["video"]
    (work_copy / "manifest.json").write_text(json.dumps(m))
    r = run_cli("render", work_copy, "-o", tmp_path / "o.mp4")
    one_error(r, f"{work_copy / 'video.mp4'}: is not a finished stage")


# ----------------------------------------------------------------------------------------------- score


def test_score_with_its_own_workdir_scores_each_track(runs, run_cli):
    r = run_cli("score", runs["r"], "--workdir", runs["r_work"], "--json", "-q")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["frames"] == 20 and len(res["per_track"]) == 1 and res["per_track"][0]["label"] == "a"


def test_score_refuses_another_runs_workdir(runs, run_cli):
    r = run_cli("score", runs["s"], "--workdir", runs["r_work"], "--json", "-q")
    one_error(r, f"{runs['r_work']}: this work directory made", "2.00 s", f"not {runs['s']} (1.50 s")
    assert r.out == ""


def test_score_takes_a_manifest_without_a_mux_record(work_copy, runs, run_cli):
    m = json.loads((work_copy / "manifest.json").read_text())
    del m["run"]
    (work_copy / "manifest.json").write_text(json.dumps(m))
    r = run_cli("score", runs["s"], "--workdir", work_copy, "--json", "-q")
    assert r.code == 0, r.err
    assert json.loads(r.out)["per_track"] is not None


def test_score_refuses_a_changed_analysis(work_copy, runs, run_cli):
    with open(work_copy / "analysis.json", "a") as f:
        f.write(" ")
    r = run_cli("score", runs["r"], "--workdir", work_copy, "-q")
    one_error(r, f"{work_copy / 'analysis.json'}: does not match the work directory's manifest")


def test_score_workdir_that_is_a_file(runs, run_cli):
    r = run_cli("score", runs["r"], "--workdir", runs["a"], "-q")
    one_error(r, f"{runs['a']}: is not a directory")


def test_score_refuses_audio_under_one_onset_window(runs, tmp_path):
    tiny = write_wav(tmp_path / "tiny.wav", np.full((480, 1), 0.1, np.float32), SR)  # 10 ms
    p = avmix("score", runs["r"], "--audio", tiny, "-q")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.splitlines() == [f"avmix: error: {tiny}: audio too short to score: 0.010 s, at least "
                                     "0.093 s needed (one 2048-sample onset window at 22050 Hz)"]


def test_score_refuses_a_still_image(runs, tmp_path):
    png = raw_video(tmp_path / "red.png", 1, 25)
    p = avmix("score", png, "--audio", runs["a"], "-q")
    assert p.returncode == 1 and p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"avmix: error: {png}: is a still image"), p.stderr


@pytest.mark.parametrize("frames", [2, 3])
def test_score_refuses_too_few_frames_for_a_motion_peak(runs, tmp_path, run_cli, frames):
    """Flow value 0 repeats value 1, so the first possible peak is value 2, which needs value 3."""
    short = raw_video(tmp_path / "short.mp4", frames, 10)
    r = run_cli("score", short, "--audio", runs["a"], "-q")
    one_error(r, f"{short}: has {frames} frame(s)", "at least 4")


def test_score_finds_the_motion_peak_of_four_frames(tmp_path, run_cli):
    """The least video scored can score: a jump at frame 2 of 4, a click at 0.2 s."""
    size, fps = 64, 10
    f = np.full((4, size, size, 3), 96, np.uint8)
    tex = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for i, x in enumerate([8, 8, 32, 32]):  # the square jumps between frames 1 and 2 only
        f[i, 24:40, x:x + 16] = tex
    video = tmp_path / "four.mp4"
    ffmpeg.run(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size}x{size}", "-r", str(fps), "-i", "pipe:0",
                "-c:v", "libx264", "-crf", "10", "-pix_fmt", "yuv420p", ffmpeg.url(video)], input=f.tobytes())
    audio = clicks(tmp_path / "c.wav", 0.4, [0.2])
    r = run_cli("score", video, "--audio", audio, "--json", "-q")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["frames"] == 4 and res["video_peaks"] == 1


def test_score_reads_a_thousand_fps(runs, tmp_path, run_cli):
    """ffmpeg prints 1000 fps as "1k fps"."""
    fast = raw_video(tmp_path / "fast.mp4", 200, 1000)
    r = run_cli("score", fast, "--audio", runs["a"], "--json", "-q")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["fps"] == 1000 and res["frames"] == 200
