"""The work directory of ``generate``: its file names, where it goes, creating it, one run at a time in it,
and the stage cache (:class:`Stages`) kept in its manifest.

Files: audio.wav (32-bit float, so stems sum to it exactly), timeline.json, analysis.json, video.mp4
(silent), audio.m4a (the output's AAC, encoded while the video renders, for MP4 and MOV outputs) and
manifest.json (see :mod:`avmix.manifest`).
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Iterator

from avmix import mux
from avmix.errors import OutputError, UsageError
from avmix.manifest import MANIFEST, Manifest
from avmix.progress import ProgressFn, report

AUDIO, TIMELINE, ANALYSIS, VIDEO = "audio.wav", "timeline.json", "analysis.json", "video.mp4"
TRACKS = "tracks.json"  # the synth stage's list of text tracks (their audio is in the track cache)
ENCODED = "audio"  # + mux.EARLY_AUDIO's extension: the output's audio, encoded while the video renders
WORK_FILES = (TRACKS, AUDIO, TIMELINE, ANALYSIS, VIDEO, MANIFEST,
              *sorted({ENCODED + ext for ext in mux.EARLY_AUDIO.values()}))
WORK_BIT_DEPTH = 32  # float: the work audio is exact, stems sum to it


def location(workdir: str | os.PathLike | None, output: Path) -> tuple[Path, bool]:
    """(work directory, whether it is ours to remove: the default one beside the output)."""
    if workdir is None:
        return output.with_name(f".{output.name}.avmix-work"), True
    return Path(workdir), False


def create(work: Path, ours: bool) -> None:
    """Create the work directory; refuses a non-empty directory that is not one."""
    if work.exists() and not work.is_dir():
        raise UsageError("work directory is not a directory", path=work)
    if work.is_dir() and not (work / MANIFEST).exists() and any(p.name != ".lock" for p in work.iterdir()):
        raise UsageError("not empty and not an avmix work directory (no manifest.json)", path=work,
                         hint="give a new or empty --workdir")
    try:
        work.mkdir(parents=not ours, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the work directory ({e.strerror})", path=work) from None


@contextlib.contextmanager
def locked(workdir: Path) -> Iterator[None]:
    """One run per work directory at a time."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(workdir / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError("work directory is in use by another avmix run", path=workdir) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Stages:
    """Runs or reuses cached stages, keeping timings and the manifest up to date."""

    def __init__(self, manifest: Manifest, *, no_cache: bool, progress: ProgressFn):
        self.manifest, self.no_cache, self.progress = manifest, no_cache, progress
        self.timings: dict[str, float] = {}
        self.reused: list[str] = []

    def run(self, name: str, stage_key: str, depends: dict, outputs: list[str], fn) -> dict | None:
        if self.reuse(name, stage_key):
            self.reused.append(name)
            report(self.progress, name, 1, 1)
            return self.manifest.stages[name].get("info")
        self.manifest.invalidate(name)
        t = time.perf_counter()
        info = fn()
        self.done(name, stage_key, depends, outputs, time.perf_counter() - t, info)
        return info

    def reuse(self, name: str, stage_key: str) -> bool:
        """Whether ``name`` is cached with this key and intact (then marked reused, in 0 s)."""
        if self.no_cache or not self.manifest.fresh(name, stage_key):
            return False
        self.manifest.mark_reused(name)
        self.timings[name] = 0.0
        return True

    def done(self, name: str, stage_key: str, depends: dict, outputs: list[str], seconds: float,
             info: dict | None = None) -> None:
        """Record a finished stage and its time."""
        self.manifest.record(name, stage_key, depends=depends, outputs=outputs, seconds=seconds, info=info)
        self.timings[name] = round(seconds, 4)

