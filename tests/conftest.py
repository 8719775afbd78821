"""Shared test helpers: synthesised audio written to temporary files, and running the CLI in-process."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avmix import cli


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
