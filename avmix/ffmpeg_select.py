"""Choosing the ffmpeg binary for a job: ``$AVMIX_FFMPEG``, else ``ffmpeg`` on PATH, else the wheel's.

A binary is usable for a job when it runs, is ffmpeg 5.1 or newer and has every encoder and filter the
job names (``needs``, e.g. ``{"libx264", "aac"}``). ``$AVMIX_FFMPEG`` is never replaced: if it is
unusable the job stops with one line saying why. A PATH ffmpeg that is too old or lacks a need is
passed over for the imageio-ffmpeg wheel's, with one note on stderr naming the binary used and why.

Nothing runs until a job first needs ffmpeg. What ``-version``, ``-encoders`` and ``-filters`` say of a
binary (about 0.15 s of work) is kept in memory and in ``ffmpeg-builds.json`` in the user cache
directory, keyed by the binary's path, size and mtime, so a short job pays only a ``stat``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from avmix.errors import FFmpegError

MIN_VERSION = (5, 1)  # the oldest build CI installs and tests (Debian 12)
MIN_LAVF = (59, 27)  # libavformat of ffmpeg 5.1: the check for git builds named by a hash
PROBE_TIMEOUT = 30.0  # seconds for each of -version, -encoders, -filters
CACHE_FILE = "ffmpeg-builds.json"
CACHE_SCHEMA = "avmix.ffmpeg-builds/1"
CACHE_ENTRIES = 32  # binaries remembered; the oldest entries are dropped
HOW_TO_GET = "install ffmpeg 5.1 or newer (e.g. apt-get install ffmpeg), or pip install imageio-ffmpeg"


@dataclass(frozen=True)
class Build:
    """One ffmpeg binary and what it can do."""

    path: str
    version: str  # as the binary names itself: "5.1.9-0+deb12u1", "n9.0.2-17-g2a571b6068-20260930"
    release: tuple[int, int] | None  # (5, 1); None when the version is a git hash
    lavf: tuple[int, int] | None  # libavformat (major, minor)
    identity: str  # version and a hash of the whole -version text: one build, whatever its path
    encoders: frozenset[str]
    filters: frozenset[str]

    @property
    def too_old(self) -> bool:
        if self.release is not None:
            return self.release < MIN_VERSION
        return self.lavf is not None and self.lavf < MIN_LAVF

    def missing(self, needs: Iterable[str]) -> list[str]:
        have = self.encoders | self.filters
        return sorted(n for n in needs if n not in have)

    def problem(self, needs: Iterable[str] = ()) -> str | None:
        """Why this build cannot do a job with ``needs`` ("is ffmpeg 4.4.2, older than 5.1"); None if it can."""
        if self.too_old:
            return f"is ffmpeg {self.version}, older than {MIN_VERSION[0]}.{MIN_VERSION[1]}"
        gone = self.missing(needs)
        if gone:
            return f"is ffmpeg {self.version} without {' and '.join(gone)}"
        return None


class Unusable(FFmpegError):
    """A binary that cannot be inspected; ``what`` says why ("is not an executable file")."""

    def __init__(self, path: str, what: str):
        super().__init__(f"{path} {what}")
        self.what = what


# ------------------------------------------------------------------------------------ inspecting

_builds: dict[tuple[str, int, int], Build] = {}  # (path, size, mtime_ns) -> Build, this process


def cache_dir() -> Path:
    from avmix.paths import cache_root

    return cache_root()


def inspect(path: str) -> Build:
    """What the binary at ``path`` is (from memory, the disk cache, or by running it).

    Raises Unusable if it is missing, not a program or not ffmpeg."""
    path = os.path.abspath(path)
    try:
        st = os.stat(path)
    except OSError:
        raise Unusable(path, "does not exist") from None
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise Unusable(path, "is not an executable file")
    key = (path, st.st_size, st.st_mtime_ns)
    if key in _builds:
        return _builds[key]
    on_disk = _read_cache()
    build = _from_disk(key, on_disk)
    if build is None:
        build = _run_probes(path)
        _to_disk(key, build, on_disk)
    _builds[key] = build
    return build


def _run_probes(path: str) -> Build:
    """Run -version, -encoders and -filters side by side and parse them."""
    outs = {}
    try:
        procs = {flag: subprocess.Popen([path, "-hide_banner", flag], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                 for flag in ("-version", "-encoders", "-filters")}
    except OSError as e:
        raise Unusable(path, f"does not run ({e.strerror})") from None
    try:
        for flag, proc in procs.items():
            out, _ = proc.communicate(timeout=PROBE_TIMEOUT)
            outs[flag] = out.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        raise Unusable(path, f"did not answer -version within {PROBE_TIMEOUT:.0f} s") from None
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return parse(path, outs["-version"], outs["-encoders"], outs["-filters"])


def parse(path: str, version_text: str, encoders_text: str, filters_text: str) -> Build:
    m = re.search(r"^ffmpeg version (\S+)", version_text, re.M)
    if not m:
        raise Unusable(path, "is not ffmpeg (no 'ffmpeg version' line from -version)")
    version = m.group(1)
    rel = re.match(r"n?(\d+)\.(\d+)", version)
    lavf = re.search(r"^libavformat\s+(\d+)\.\s*(\d+)", version_text, re.M)
    encoders = {m.group(1) for m in re.finditer(r"^ [VAS][.A-Z]{5} (\S+)", encoders_text, re.M)}
    filters = {m.group(1) for m in re.finditer(r"^ [.A-Z|]{2,3} (\S+)\s+\S*->\S*", filters_text, re.M)}
    digest = hashlib.sha256(version_text.encode()).hexdigest()[:12]
    return Build(path=path, version=version, release=(int(rel.group(1)), int(rel.group(2))) if rel else None,
                 lavf=(int(lavf.group(1)), int(lavf.group(2))) if lavf else None,
                 identity=f"{version} {digest}", encoders=frozenset(encoders), filters=frozenset(filters))


def _cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def _read_cache() -> dict:
    try:
        data = json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("schema") != CACHE_SCHEMA or not isinstance(data.get("builds"), dict):
        return {}
    return data["builds"]


def _from_disk(key: tuple[str, int, int], builds: dict) -> Build | None:
    entry = builds.get(key[0])
    if not isinstance(entry, dict) or [entry.get("size"), entry.get("mtime_ns")] != [key[1], key[2]]:
        return None
    try:
        return Build(path=key[0], version=entry["version"],
                     release=tuple(entry["release"]) if entry["release"] else None,
                     lavf=tuple(entry["lavf"]) if entry["lavf"] else None, identity=entry["identity"],
                     encoders=frozenset(entry["encoders"]), filters=frozenset(entry["filters"]))
    except (KeyError, TypeError, ValueError):
        return None


def _to_disk(key: tuple[str, int, int], build: Build, builds: dict) -> None:
    """Remember ``build`` among the cached ``builds``; a cache that cannot be written only costs the next
    job a probe."""
    from avmix.paths import write_text_atomic

    builds.pop(key[0], None)
    builds[key[0]] = {"size": key[1], "mtime_ns": key[2], "version": build.version, "release": build.release,
                      "lavf": build.lavf, "identity": build.identity, "encoders": sorted(build.encoders),
                      "filters": sorted(build.filters)}
    builds = dict(list(builds.items())[-CACHE_ENTRIES:])
    try:
        _cache_path().parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(_cache_path(), json.dumps({"schema": CACHE_SCHEMA, "builds": builds}) + "\n")
    except OSError:
        pass


# ------------------------------------------------------------------------------------- choosing

_chosen: Build | None = None  # the build this process's jobs use until one needs more
_chosen_under: tuple[str | None, str | None] = (None, None)  # ($AVMIX_FFMPEG, $PATH) when it was chosen
_noted: set[str] = set()


def choose(needs: Iterable[str] = ()) -> Build:
    """The build to run a job that needs the encoders/filters ``needs``. Raises FFmpegError if none fits."""
    global _chosen, _chosen_under
    needs = frozenset(needs)
    under = (os.environ.get("AVMIX_FFMPEG"), os.environ.get("PATH"))
    if under != _chosen_under:  # the caller pointed somewhere else
        _chosen, _chosen_under = None, under
    if _chosen is not None and _chosen.problem(needs) is None:
        return _chosen
    env = os.environ.get("AVMIX_FFMPEG")
    if env:
        _chosen = _explicit(env, needs)
        return _chosen
    passed_over: list[str] = []
    for where, path in _candidates():
        try:
            build = inspect(path)
        except Unusable as e:
            passed_over.append(f"{path} {where} {e.what}")
            continue
        why = build.problem(needs)
        if why:
            passed_over.append(f"{path} {where} {why}")
            continue
        if passed_over:
            _note(f"using ffmpeg {build.version} {where} ({build.path}) because " + "; ".join(passed_over))
        _chosen = build
        return build
    found = "; ".join(passed_over) if passed_over else "none on PATH, and imageio-ffmpeg has no binary here"
    raise FFmpegError(f"no usable ffmpeg ({found})", hint=HOW_TO_GET + ", or set AVMIX_FFMPEG")


def _explicit(env: str, needs: frozenset[str]) -> Build:
    """The build $AVMIX_FFMPEG names (a path, or a command name looked up on PATH), or FFmpegError: it is
    never silently replaced."""
    path = env if os.sep in env else (shutil.which(env) or env)
    try:
        build = inspect(path)
    except Unusable as e:
        raise FFmpegError(f"AVMIX_FFMPEG={env} {e.what}", hint="point it at ffmpeg 5.1 or newer, or unset it") from None
    why = build.problem(needs)
    if why:
        gone = build.missing(needs)
        raise FFmpegError(f"AVMIX_FFMPEG={env} {why}", hint="point it at ffmpeg 5.1 or newer"
                          + (f" with {' and '.join(gone)}" if gone and not build.too_old else "") + ", or unset it")
    return build


def _candidates() -> Iterator[tuple[str, str]]:
    """(where, path) for the PATH ffmpeg, then (only if asked for) the wheel's, the same binary once."""
    found = shutil.which("ffmpeg")
    if found:
        yield "on PATH", found
    wheel = wheel_binary()
    if wheel and not (found and os.path.realpath(found) == os.path.realpath(wheel)):
        yield "from imageio-ffmpeg", wheel


def wheel_binary() -> str | None:
    """The imageio-ffmpeg wheel's ffmpeg, looked up in its package directory: imageio_ffmpeg's own
    lookup imports it and runs the binary (~0.1 s on every job)."""
    spec = importlib.util.find_spec("imageio_ffmpeg")
    if spec is None:
        return None
    if not os.environ.get("IMAGEIO_FFMPEG_EXE"):  # imageio's own override: let it resolve that
        for loc in spec.submodule_search_locations or ():
            exes = sorted(p for p in Path(loc, "binaries").glob("ffmpeg*") if p.is_file() and os.access(p, os.X_OK))
            if exes:
                return str(exes[0])
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):  # a wheel without a binary for this platform
        return None


def _note(message: str) -> None:
    from avmix import progress

    if message not in _noted:
        _noted.add(message)
        progress.note(message, quiet=progress.notes_off())


def reset() -> None:
    """Forget the choice and what was inspected (tests; a changed $AVMIX_FFMPEG or PATH)."""
    global _chosen
    _chosen = None
    _builds.clear()
    _noted.clear()
