"""Shared test helpers: synthesised audio written to temporary files, running the CLI in-process, and
running the ffmpeg-facing tests once per ffmpeg build present."""
from __future__ import annotations

import atexit
import fnmatch
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# a cache directory of this session's own, so tests neither read nor write ~/.cache/avmix
if not os.environ.get("AVMIX_CACHE"):
    os.environ["AVMIX_CACHE"] = tempfile.mkdtemp(prefix="avmix-test-cache-")
    atexit.register(shutil.rmtree, os.environ["AVMIX_CACHE"], True)

from avmix import cli, ffmpeg_select  # noqa: E402 (after AVMIX_CACHE is set)

# Tests whose outcome depends on the ffmpeg build: muxing, video encoding, decoding of formats libsndfile
# does not read, and generate end to end. Each runs once per build present (see ffmpeg_builds).
FFMPEG_FACING = {
    "test_mux": ["test_fit_*", "test_still_image_*", "test_audio_*", "test_containers", "test_mp4_is_faststart",
                 "test_stream_copy_*", "test_ten_bit_*", "test_odd_sized_*", "test_progress_*", "test_cli_render_*"],
    "test_procedural": ["test_writer_*"],
    "test_io": ["test_reads_every_format", "test_reads_audio_stream_of_video", "test_lossy_round_trip",
                "test_lossy_outputs_at_rates_their_codecs_refuse"],
    "test_generate": ["test_mix_end_to_end_with_workdir", "test_av_sync_in_the_muxed_file"],
}


def sine(freq: float, seconds: float, sr: int = 48000, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def noise(seconds: float, sr: int = 48000, channels: int = 2, amp: float = 0.25, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amp * rng.uniform(-1, 1, (int(round(seconds * sr)), channels))).astype(np.float32)


def write_wav(path: Path, data: np.ndarray, sr: int = 48000, subtype: str = "FLOAT") -> Path:
    sf.write(str(path), data, sr, subtype=subtype)
    return path


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys):
    """Run ``avmix ARGS`` in-process; returns exit code, stdout and stderr."""

    def _run(*args: str) -> Result:
        capsys.readouterr()
        code = cli.run([str(a) for a in args])
        cap = capsys.readouterr()
        return Result(code, cap.out, cap.err)

    return _run


def ffmpeg_builds() -> dict[str, str]:
    """{test id: binary} for each ffmpeg build present: the one $AVMIX_FFMPEG pins, else the wheel's
    and the one on PATH when it is another build that avmix supports."""
    if os.environ.get("AVMIX_FFMPEG"):
        paths = [os.environ["AVMIX_FFMPEG"]]
    else:
        paths = [ffmpeg_select.wheel_binary()]
        found = shutil.which("ffmpeg")
        if found and os.path.realpath(found) != os.path.realpath(paths[0]):
            paths.append(found)
    builds = {}
    for path in paths:
        try:
            build = ffmpeg_select.inspect(path)
        except ffmpeg_select.Unusable:
            continue
        if build.problem() is None:
            builds.setdefault("ffmpeg" + build.version.lstrip("n").split("-")[0], path)
    return builds


_BUILDS = ffmpeg_builds()
if not os.environ.get("AVMIX_FFMPEG") and shutil.which("ffmpeg") and len(_BUILDS) == 1:
    # the ffmpeg on PATH is one avmix passes over (too old, or the wheel's own): pin the wheel's, so that
    # no test's output carries the note saying so (tests/test_ffmpeg.py checks the note)
    os.environ["AVMIX_FFMPEG"] = next(iter(_BUILDS.values()))


def _ffmpeg_facing(module: str, name: str) -> bool:
    return any(fnmatch.fnmatch(name, pat) for pat in FFMPEG_FACING.get(module.rsplit(".", 1)[-1], ()))


def pytest_generate_tests(metafunc):
    if _BUILDS and _ffmpeg_facing(metafunc.module.__name__, metafunc.function.__name__):
        metafunc.fixturenames.insert(0, "ffmpeg_build")  # set up before the fixtures that make inputs
        metafunc.parametrize("ffmpeg_build", list(_BUILDS.values()), ids=list(_BUILDS), indirect=True)


@pytest.fixture
def ffmpeg_build(request, monkeypatch):
    """Pin $AVMIX_FFMPEG to one build (children inherit it) with avmix's choice forgotten before and after."""
    monkeypatch.setenv("AVMIX_FFMPEG", request.param)
    ffmpeg_select.reset()
    yield request.param
    ffmpeg_select.reset()
