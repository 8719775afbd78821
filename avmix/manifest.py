"""manifest.json of a work directory: what went in, every option, versions, and the stage cache.

Each stage has a key: a hash of its inputs' keys/hashes, the options that change its output, the
avmix version and the ffmpeg build. A stage is reused when the manifest records the same key and its output files are still
there with the recorded sizes. Before a stage runs, its entry and every later stage's entry are removed
and the manifest saved, so a run interrupted half-way can never be mistaken for a finished stage.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from avmix import __version__
from avmix.errors import AvmixError, InputError
from avmix.paths import write_text_atomic
from avmix.timeline import read_json

MANIFEST_SCHEMA = "avmix.manifest/1"
MANIFEST = "manifest.json"
STAGES = ("synth", "compose", "analyze", "video")  # cached stages in order; the mux always runs (its output is outside)
VERSIONED = ("numpy", "scipy", "soundfile", "soxr", "ffmpeg-python", "torch", "diffusers",
             "transformers", "accelerate")


def key(stage: str, parts: dict[str, Any]) -> str:
    """Stable ``sha256:`` key of a stage's inputs and options (JSON with sorted keys), the avmix version
    and the ffmpeg build (decoders and x264 differ between builds: a stage made with one is not reused
    with another)."""
    text = json.dumps({"stage": stage, "avmix": __version__, "ffmpeg": ffmpeg_build(), **parts},
                      sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def ffmpeg_build() -> str:
    """Identity of the ffmpeg build a generate job runs (version and a hash of its -version text)."""
    from avmix import ffmpeg

    try:
        return ffmpeg.build(ffmpeg.VIDEO_NEEDS).identity
    except (AvmixError, OSError):  # the stage that needs ffmpeg says why
        return "unavailable"


def versions() -> dict[str, str]:
    """Versions of avmix, Python, ffmpeg and the libraries present (read from metadata: nothing imported)."""
    from avmix import ffmpeg

    out = {"avmix": __version__, "python": platform.python_version()}
    try:
        used = ffmpeg.build(ffmpeg.VIDEO_NEEDS)
        out["ffmpeg"], out["ffmpeg_path"] = used.version, used.path
    except (AvmixError, OSError):
        out["ffmpeg"] = "unavailable"
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


class Manifest:
    """The manifest of one work directory, saved atomically after every change."""

    def __init__(self, workdir: str | os.PathLike, data: dict[str, Any] | None = None):
        self.workdir = Path(workdir)
        self.data = data if data is not None else {"schema": MANIFEST_SCHEMA, "stages": {}}

    @property
    def path(self) -> Path:
        return self.workdir / MANIFEST

    @classmethod
    def load(cls, workdir: str | os.PathLike) -> "Manifest":
        """The manifest in ``workdir``; a fresh one if it is missing, unreadable or of another schema
        (the cache then simply misses and every stage reruns)."""
        p = Path(workdir) / MANIFEST
        try:
            data = read_json(p) if p.exists() else None
        except AvmixError:
            data = None
        if not (isinstance(data, dict) and data.get("schema") == MANIFEST_SCHEMA
                and isinstance(data.get("stages"), dict)):
            data = None
        return cls(workdir, data)

    def save(self) -> None:
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_text_atomic(self.path, json.dumps(self.data, indent=2, default=str) + "\n")

    @property
    def stages(self) -> dict[str, Any]:
        return self.data["stages"]

    def fresh(self, stage: str, stage_key: str) -> bool:
        """True if ``stage`` finished before with this key and its outputs are still intact."""
        entry = self.stages.get(stage)
        if not isinstance(entry, dict) or entry.get("key") != stage_key:
            return False
        outputs = entry.get("outputs")
        if not isinstance(outputs, dict) or not outputs:
            return False
        return all(self._intact(name, size) for name, size in outputs.items())

    def _intact(self, name: str, size: int) -> bool:
        """The stage file ``name`` is in the work directory with the size recorded for it."""
        p = self.workdir / name
        return Path(name).name == name and p.is_file() and p.stat().st_size == size

    def check_files(self, names: list[str]) -> None:
        """Raise InputError unless each of ``names`` (stage files a command is about to use) is the file
        the manifest recorded: there, with the recorded size. A work directory without a manifest (or
        one recording no stage) is taken as it is: there is nothing to check against."""
        recorded = {n: s for e in self.stages.values() if isinstance(e, dict) and isinstance(e.get("outputs"), dict)
                    for n, s in e["outputs"].items() if isinstance(s, int)}
        if not recorded:
            return
        for name in names:
            p = self.workdir / name
            if name not in recorded:  # its stage did not finish in the run that wrote this manifest
                raise InputError("is not a finished stage of the work directory's manifest (an interrupted "
                                 "run?); run avmix generate again", path=p)
            if not self._intact(name, recorded[name]):
                raise InputError("does not match the work directory's manifest (changed or truncated); "
                                 "run avmix generate again", path=p)

    def invalidate(self, stage: str) -> None:
        """Forget ``stage`` and every stage after it (their files are about to be replaced)."""
        for name in STAGES[STAGES.index(stage):]:
            self.stages.pop(name, None)
        self.save()

    def record(self, stage: str, stage_key: str, *, depends: dict[str, Any], outputs: list[str],
               seconds: float, info: dict[str, Any] | None = None) -> None:
        entry = {"key": stage_key, "depends": depends, "seconds": round(seconds, 4), "ran": True,
                 "outputs": {name: (self.workdir / name).stat().st_size for name in outputs},
                 "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if info:
            entry["info"] = info
        self.stages[stage] = entry
        self.save()

    def mark_reused(self, stage: str) -> None:
        self.stages[stage]["ran"] = False
        self.save()
