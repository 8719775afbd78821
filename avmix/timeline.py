"""The files that pass between stages: timeline.json and analysis.json (schema ``avmix.<kind>/N``).

A Timeline is both the plan the compose engine renders and the record the video stage reads: for every
source it says where the source sits in the output, in samples, with its gain, fades and ducking, and
where later stages extend it: a source's ``picture`` (its video stream or image) and ``origin`` (how a
synthesised track was made), and the timeline's ``master`` (a correction applied after the sum).

Keys this version does not know survive a load and save (``extra``), so a file written by a newer
avmix keeps them. A timeline with a ``master`` correction is written as ``avmix.timeline/2``: an older
reader would ignore the correction and mis-read the audio, so it refuses the file instead.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import xxhash

from avmix.errors import InputError
from avmix.paths import read_text, write_text_atomic

TIMELINE_SCHEMA = "avmix.timeline/1"
TIMELINE_SCHEMA_MASTER = "avmix.timeline/2"  # written when a master correction is recorded
TIMELINE_MAJORS = ("1", "2")
ANALYSIS_SCHEMA = "avmix.analysis/1"
HASH_CHUNK = 1 << 20
HASH_ALGORITHM = "xxh3_128"
MAX_VIDEO_FRAMES = 120 * 3600 * 48  # 48 hours at 120 fps


def file_hash(path: str | os.PathLike, algorithm: str = HASH_ALGORITHM) -> str:
    """``<algorithm>:<hex>`` of a file's bytes.

    The hash tells whether an input changed (caches, stale timelines); it is not a signature, so the
    default is xxh3-128, about 14x faster than sha256 (which stays readable in older records).
    """
    if algorithm == "xxh3_128":
        h = xxhash.xxh3_128()
    elif algorithm == "sha256":
        h = hashlib.sha256()
    else:
        raise ValueError(f"unknown hash algorithm {algorithm!r}")
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return f"{algorithm}:{h.hexdigest()}"


def same_content(path: str | os.PathLike, stored: str) -> bool:
    """Whether ``path`` still has the content of ``stored`` (a :func:`file_hash`, of either algorithm).
    A hash this version cannot recompute counts as changed: composing again is the safe answer."""
    algorithm, sep, _ = stored.partition(":")
    if not sep or algorithm not in ("xxh3_128", "sha256"):
        return False
    return file_hash(path, algorithm) == stored


@dataclass
class Duck:
    """Lower this source by ``db`` while source ``by`` sounds (sidechain with attack/release in seconds)."""

    db: float
    by: int
    attack: float = 0.01
    release: float = 0.25
    threshold_db: float = -45.0
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # keys kept unread


@dataclass
class Source:
    """One input track placed in the output.

    Output samples ``[start_sample, end_sample)`` hold the source read from ``offset_sample`` on, for
    ``source_frames`` frames (at the job's sample rate); with ``loop`` the segment repeats to ``end_sample``.
    Fades are in seconds at the placement's start and end.
    """

    index: int
    path: str
    label: str
    start_sample: int
    end_sample: int
    source_frames: int
    offset_sample: int = 0
    loop: bool = False
    gain_db: float = 0.0
    fade_in: float = 0.0
    fade_out: float = 0.0
    fade_curve: str = "equal-power"
    duck: Duck | None = None
    hash: str = ""
    sample_rate: int = 0  # the file's own rate
    channels: int = 0  # the file's own channel count
    picture: dict[str, Any] | None = None  # the source's picture: its video stream or an image
    origin: dict[str, Any] | None = None  # how a synthesised source was made (prompt, model, seed, ...)
    align: dict[str, Any] | None = None  # --align auto: {reference, offset (s), confidence} of this take
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # keys kept unread


@dataclass
class Timeline:
    mode: str
    sample_rate: int
    channels: int
    frames: int
    sources: list[Source]
    master_gain_db: float = 0.0
    fade_in: float = 0.0
    fade_out: float = 0.0
    limit_dbtp: float | None = -1.0  # true-peak ceiling, None = no limiter
    output: str = ""
    peak_dbfs: float | None = None  # measured on the written output
    lufs: float | None = None  # integrated loudness of the written output
    master: dict[str, Any] | None = None  # a correction applied to the sum (and every stem), after the gain
    schema: str = TIMELINE_SCHEMA
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # keys kept unread

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    @property
    def reference_report(self) -> dict[str, Any] | None:
        """What --reference matching measured: {"path", "before", "after", "target"} (``--json``'s
        "reference"), or None without a reference."""
        m = self.master or {}
        return {"path": m["reference"], **m["report"]} if "report" in m and "reference" in m else None

    def to_dict(self) -> dict[str, Any]:
        d = _out(asdict(self), optional=("master",))
        d.pop("schema")
        d = {"schema": TIMELINE_SCHEMA_MASTER if self.master is not None else TIMELINE_SCHEMA, **d}
        d["duration"] = self.duration
        for key in ("peak_dbfs", "lufs"):  # silence measures -inf, which strict JSON parsers refuse
            if d[key] is not None and not math.isfinite(d[key]):
                d[key] = None
        sources = []
        for s, sd in zip(self.sources, d["sources"]):
            sd = _out(sd, optional=("picture", "origin", "align"))
            if sd.get("duck") is not None:
                sd["duck"] = _out(sd["duck"])
            sd["start"] = s.start_sample / self.sample_rate
            sd["end"] = s.end_sample / self.sample_rate
            sources.append(sd)
        d["sources"] = sources
        return d

    def save(self, path: str | os.PathLike) -> None:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "timeline") -> "Timeline":
        check_schema(d, TIMELINE_SCHEMA, where, majors=TIMELINE_MAJORS)
        try:
            if not isinstance(d["sources"], list):
                raise TypeError("sources is not a list")
            sources = []
            for sd in d["sources"]:
                sd = _known(Source, sd, derived=("start", "end"))
                if sd.get("duck") is not None:
                    sd["duck"] = Duck(**_known(Duck, sd["duck"]))
                sources.append(Source(**sd))
            top = _known(cls, d, derived=("duration", "schema"))
            top["sources"] = sources
            tl = cls(**top)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"malformed timeline ({e})", path=where) from None
        tl.validate(where)
        return tl

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Timeline":
        return cls.from_dict(read_json(path), where=os.fspath(path))

    def validate(self, where: str = "timeline") -> None:
        """InputError unless every field has a usable type and range (a timeline may come from a file
        someone edited: a string, NaN or a bool where a count belongs must not reach the engine)."""
        bad = _check_fields(self, _TIMELINE_FIELDS) or _check_range(self.sample_rate, 1000, 768000, "sample_rate") \
            or _check_range(self.channels, 1, 64, "channels") or _check_range(self.frames, 0, None, "frames")
        if not bad and not isinstance(self.sources, list):
            bad = "sources (not a list)"
        for s in self.sources if not bad else []:
            bad = _check_fields(s, _SOURCE_FIELDS, f"source {s.index!r} ")
            if not bad and not (0 <= s.start_sample <= s.end_sample and s.source_frames >= 0 and s.offset_sample >= 0):
                bad = f"source {s.index} placement"
            if not bad and s.fade_in < 0 or not bad and s.fade_out < 0:
                bad = f"source {s.index} fades"
            for name in ("picture", "origin", "align"):
                if not bad and getattr(s, name) is not None and not isinstance(getattr(s, name), dict):
                    bad = f"source {s.index} {name} {_short(getattr(s, name))}"
            if not bad and s.duck is not None and not isinstance(s.duck, Duck):
                bad = f"source {s.index} duck {_short(s.duck)}"
            if not bad and s.duck is not None:
                bad = _check_fields(s.duck, _DUCK_FIELDS, f"source {s.index} duck ")
                if not bad and not 0 <= s.duck.by < len(self.sources):
                    bad = f"source {s.index} duck.by {s.duck.by!r}"
            if bad:
                break
        if bad:
            raise InputError(f"malformed timeline: bad {bad}", path=where)


_INT, _NUM, _STR, _BOOL = "int", "number", "str", "bool"
_TIMELINE_FIELDS = {"mode": _STR, "sample_rate": _INT, "channels": _INT, "frames": _INT, "master_gain_db": _NUM,
                    "fade_in": _NUM, "fade_out": _NUM, "limit_dbtp": (_NUM, None), "output": _STR,
                    "peak_dbfs": (_NUM, None, "-inf"), "lufs": (_NUM, None, "-inf")}
_SOURCE_FIELDS = {"index": _INT, "path": _STR, "label": _STR, "start_sample": _INT, "end_sample": _INT,
                  "source_frames": _INT, "offset_sample": _INT, "loop": _BOOL, "gain_db": _NUM, "fade_in": _NUM,
                  "fade_out": _NUM, "fade_curve": _STR, "hash": _STR, "sample_rate": _INT, "channels": _INT}
_DUCK_FIELDS = {"db": _NUM, "by": _INT, "attack": _NUM, "release": _NUM, "threshold_db": _NUM}


def _is(value: Any, kind: Any) -> bool:
    if isinstance(kind, tuple):
        return any(_is(value, k) for k in kind)
    if kind is None:
        return value is None
    if kind == "-inf":  # a measured level of digital silence
        return isinstance(value, float) and value == -math.inf
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == _STR:
        return isinstance(value, str)
    return isinstance(value, bool)


def _check_fields(obj: Any, kinds: dict[str, Any], prefix: str = "") -> str | None:
    """The first field of ``obj`` whose value is not of its kind, as 'name value' (None if all are)."""
    for name, kind in kinds.items():
        value = getattr(obj, name)
        if not _is(value, kind):
            return f"{prefix}{name} {_short(value)}"
    return None


def _check_range(value: int, lo: int, hi: int | None, name: str) -> str | None:
    return None if lo <= value and (hi is None or value <= hi) else f"{name} {value!r}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class TrackAnalysis:
    """Features of one track as it sits in the composed audio, on the video's frame grid."""

    label: str
    envelope: list[float]  # loudness 0..1, one value per video frame
    onsets: list[float]  # seconds
    beats: list[float] = field(default_factory=list)  # seconds
    tempo: float | None = None  # BPM
    start: float = 0.0
    end: float = 0.0
    index: int = -1  # source index, -1 for the mix
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # keys kept unread


@dataclass
class Analysis:
    fps: float
    frames: int  # video frames
    duration: float
    tracks: list[TrackAnalysis]
    mix: TrackAnalysis
    mode: str = "mix"
    schema: str = ANALYSIS_SCHEMA
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # keys kept unread

    def to_dict(self) -> dict[str, Any]:
        d = _out(asdict(self))
        d["tracks"] = [_out(t) for t in d["tracks"]]
        d["mix"] = _out(d["mix"])
        return {"schema": d.pop("schema"), **d}

    def save(self, path: str | os.PathLike) -> None:
        write_text_atomic(path, json.dumps(self.to_dict(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Analysis":
        d = read_json(path)
        check_schema(d, ANALYSIS_SCHEMA, os.fspath(path))
        try:
            if not isinstance(d["tracks"], list):
                raise TypeError("tracks is not a list")
            tracks = [TrackAnalysis(**_known(TrackAnalysis, t)) for t in d["tracks"]]
            mix = TrackAnalysis(**_known(TrackAnalysis, d["mix"]))
            top = _known(cls, d, derived=("schema",))
            top.update(tracks=tracks, mix=mix)
            analysis = cls(**top)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"malformed analysis ({e})", path=path) from None
        analysis.validate(os.fspath(path))
        return analysis

    def validate(self, where: str = "analysis") -> None:
        """InputError unless the numbers are usable: fps in (0, 1000], an envelope of ``frames`` finite
        values per track, onsets/beats lists of finite seconds."""
        bad = _check_fields(self, {"fps": _NUM, "frames": _INT, "duration": _NUM, "mode": _STR})
        if not bad and not (0 < self.fps <= 1000 and 0 <= self.frames <= MAX_VIDEO_FRAMES and self.duration >= 0):
            bad = f"fps/frames/duration {self.fps!r}/{self.frames!r}/{self.duration!r}"
        for i, t in enumerate([self.mix] + self.tracks if not bad else []):
            name = "mix " if i == 0 else f"track {i - 1} "
            bad = _check_fields(t, {"label": _STR, "start": _NUM, "end": _NUM, "index": _INT, "tempo": (_NUM, None)},
                                name)
            for field_name in ("envelope", "onsets", "beats"):
                values = getattr(t, field_name)
                if not bad and not (isinstance(values, list) and all(_is(v, _NUM) for v in values)):
                    bad = f"{name}{field_name} (not a list of finite numbers)"
            if not bad and len(t.envelope) != self.frames:
                bad = f"{name}envelope ({len(t.envelope)} values for {self.frames} frames)"
            if bad:
                break
        if bad:
            raise InputError(f"malformed analysis: bad {bad}", path=where)


def _known(cls, d: dict[str, Any], derived: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of ``cls`` in ``d``; other keys go to ``extra`` (``derived`` ones are recomputed)."""
    if not isinstance(d, dict):
        raise TypeError(f"expected an object, got {type(d).__name__}")
    names = {f.name for f in fields(cls)} - {"extra"}
    known = {k: v for k, v in d.items() if k in names}
    known["extra"] = {k: v for k, v in d.items() if k not in names and k not in derived and k != "extra"}
    return known


def _out(d: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A dataclass dict as written: unknown keys read earlier back in place, ``optional`` keys only when set."""
    extra = d.pop("extra", None) or {}
    for key in optional:
        if d.get(key) is None:
            d.pop(key, None)
    return {**d, **{k: v for k, v in extra.items() if k not in d}}


def read_json(path: str | os.PathLike) -> Any:
    p = Path(path)
    text = read_text(p, "JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON at line {e.lineno} column {e.colno}", path=p) from None
    except RecursionError:
        raise InputError("invalid JSON (nested too deeply)", path=p) from None


def check_schema(d: Any, expected: str, where: str, majors: tuple[str, ...] = ()) -> None:
    if not isinstance(d, dict):
        raise InputError("not a JSON object", path=where)
    schema = d.get("schema")
    kind, _, major = expected.rpartition("/")
    if not isinstance(schema, str) or not schema.startswith(kind + "/"):
        raise InputError(f"not an {kind} file (schema {schema!r})", path=where)
    if schema.rpartition("/")[2] not in (majors or (major,)):
        raise InputError(f"unsupported schema version {schema!r}; this avmix reads {expected}", path=where,
                         hint="upgrade avmix")
