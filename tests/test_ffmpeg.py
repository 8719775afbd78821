"""Finding the ffmpeg binary ($AVMIX_FFMPEG, PATH, the imageio-ffmpeg wheel) and working without ffprobe."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import pytest

from avmix import ffmpeg
from avmix.errors import FFmpegError
from conftest import sine, write_wav

ROOT = Path(__file__).resolve().parents[1]
WHEEL_FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture
def fresh(monkeypatch):
    """ffmpeg.executable() looked up again under the test's environment, and forgotten afterwards."""
    monkeypatch.delenv("AVMIX_FFMPEG", raising=False)
    ffmpeg.executable.cache_clear()
    yield monkeypatch
    ffmpeg.executable.cache_clear()


def _bin_dir(tmp_path: Path, name: str = "ffmpeg") -> Path:
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    (d / name).symlink_to(WHEEL_FFMPEG)
    return d


def test_avmix_ffmpeg_comes_first(fresh, tmp_path):
    fresh.setenv("PATH", str(_bin_dir(tmp_path)))
    fresh.setenv("AVMIX_FFMPEG", WHEEL_FFMPEG)
    assert ffmpeg.executable() == WHEEL_FFMPEG


def test_avmix_ffmpeg_that_is_not_a_program_is_an_error(fresh, tmp_path):
    bad = tmp_path / "ffmpeg.txt"
    bad.write_text("not a program\n")
    fresh.setenv("AVMIX_FFMPEG", str(bad))
    with pytest.raises(FFmpegError, match="AVMIX_FFMPEG=.*ffmpeg.txt is not an executable file"):
        ffmpeg.executable()


def test_path_before_the_wheel(fresh, tmp_path):
    d = _bin_dir(tmp_path)
    fresh.setenv("PATH", str(d))
    assert ffmpeg.executable() == str(d / "ffmpeg")


def test_the_wheel_when_nothing_else(fresh, tmp_path):
    fresh.setenv("PATH", str(tmp_path))  # no ffmpeg here
    fresh.delenv("IMAGEIO_FFMPEG_EXE", raising=False)
    assert os.path.samefile(ffmpeg.executable(), WHEEL_FFMPEG)


def test_compressed_input_needs_no_ffprobe(tmp_path):
    """An mp3 is probed and decoded with ffmpeg alone; an ffprobe on PATH is never run."""
    src = write_wav(tmp_path / "a.wav", sine(440, 1.0, 44100, 2, amp=0.3), 44100)
    mp3 = tmp_path / "a.mp3"
    subprocess.run([WHEEL_FFMPEG, "-v", "error", "-i", str(src), str(mp3)], check=True, timeout=60)
    d = _bin_dir(tmp_path)
    marker = tmp_path / "ffprobe-ran"
    (d / "ffprobe").write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    (d / "ffprobe").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "AVMIX_FFMPEG"}
    env.update(PATH=str(d), PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "avmix", "mix", str(mp3), str(src), "-o", str(tmp_path / "o.flac"),
                        "--json", "-q"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["sample_rate"] == 44100 and out["channels"] == 2
    assert abs(out["duration"] - 1.0) < 0.06  # mp3 decoders may keep a frame of padding
    assert not marker.exists()
