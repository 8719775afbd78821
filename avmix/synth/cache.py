"""Where synthesised tracks live: ``$AVMIX_CACHE``, else ``$XDG_CACHE_HOME/avmix``, else ``~/.cache/avmix``,
under ``tracks/<key>.wav`` (32-bit float) with ``tracks/<key>.json`` (its origin record) beside it.

The key is a hash of everything that changes the samples: prompt, length, model and weights, seed and
settings. The JSON is written before the WAV and each is renamed into place only when complete, so a WAV
that is there is a finished track, and an interrupted synthesis leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from avmix.audio.writer import write_audio
from avmix.errors import OutputError
from avmix.paths import ENV_CACHE, cache_root, write_text_atomic

FORMAT = 1  # bump when the synthesis of the same key would give other samples


def root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory (not created)."""
    return Path(cache_dir).expanduser() if cache_dir else cache_root()


def key(parts: dict[str, Any]) -> str:
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def paths(key_: str, cache_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    base = root(cache_dir) / "tracks"
    return base / f"{key_}.wav", base / f"{key_}.json"


def lookup(key_: str, cache_dir: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The origin record of a finished cached track (its WAV there with the recorded frames), else None."""
    wav, meta = paths(key_, cache_dir)
    try:
        record = json.loads(meta.read_text(encoding="utf-8"))
        if sf.info(str(wav)).frames != int(record["frames"]):
            return None
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, sf.LibsndfileError):
        return None
    return record


def store(key_: str, audio: np.ndarray, sample_rate: int, record: dict[str, Any],
          cache_dir: str | os.PathLike | None = None) -> Path:
    """Write ``audio`` (frames, channels) and its record atomically; returns the WAV path."""
    wav, meta = paths(key_, cache_dir)
    try:
        wav.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the track cache ({e.strerror})", path=wav.parent,
                          hint=f"set {ENV_CACHE} to a writable directory") from None
    write_text_atomic(meta, json.dumps(record, indent=2, sort_keys=True) + "\n")
    write_audio(wav, audio, sample_rate, bit_depth=32)
    return wav
