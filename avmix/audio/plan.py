"""Planning a composition: the options checked, every input placed on the output to the sample.

:func:`plan_mix`, :func:`plan_concat` and :func:`plan_overlay` turn opened inputs and options into a
:class:`~avmix.timeline.Timeline` in integer sample arithmetic on the inputs' lengths at the job's rate, so
there is no float drift; :func:`plan` picks one by mode name. Inputs are read only to measure loudness
(``match_loudness``) or find silence (``trim_silence``). Rendering a plan is :mod:`avmix.audio.compose`;
keeping the two apart lets a plan be made and checked without the engine, its threads and writers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from avmix import paths
from avmix.audio import dynamics
from avmix.audio.io import AudioFile
from avmix.audio.loudness import LoudnessMeter
from avmix.errors import InputError, UsageError
from avmix.progress import ProgressFn, report
from avmix.timeline import Duck, Source, Timeline

BLOCK = 1 << 17  # frames per engine block (a multiple of the ducker's hop); 2^16 was 18% slower per
# job from per-block overhead, 2^18 costs ~20 MB more for little speed
MAX_SECONDS = 24 * 3600.0  # longer times, offsets, fades are a typing mistake
DEFAULT_PEAK = -1.0  # dBFS, --normalize peak without --target
TRIM_DB = -60.0  # --trim-silence threshold (dBFS sample peak)
DURATIONS = ("longest", "shortest", "first")
NORMALIZE = ("none", "peak", "lufs")
MODES = ("mix", "concat", "overlay")


@dataclass
class Settings:
    """Options common to mix, concat and overlay. Gains in dB, one per input in order (missing = 0)."""

    sample_rate: int | None = None
    channels: int | None = None
    gains: list[float] = field(default_factory=list)
    normalize: str = "none"
    target: float | None = None  # LUFS for lufs (default -14), dBFS for peak (default -1)
    limit: bool = True
    ceiling: float = -1.0  # dBTP
    fade_in: float = 0.0  # seconds
    fade_out: float = 0.0
    labels: list[str] = field(default_factory=list)
    reference: str | None = None  # a finished mix to match (level, tone, width, dynamics)
    reference_strength: float = 1.0  # 0 = untouched .. 1 = fully matched
    reference_balance: bool = False  # also set each track's gain (+-12 dB) to the reference's band energies

    def __post_init__(self) -> None:
        """A sample-peak target above the limiter's true-peak ceiling cannot be met (the limiter would
        win and the output peak lower than asked, silently): a usage error, before any work. A
        reference sets the loudness itself, so normalising as well is a usage error too."""
        if self.reference is not None and (self.normalize != "none" or self.target is not None):
            raise UsageError("--reference sets the output's loudness itself; it cannot be combined with "
                             "--normalize or --target", hint="drop --normalize/--target, or drop --reference")
        if self.normalize != "peak" or not self.limit:
            return
        try:
            target = DEFAULT_PEAK if self.target is None else float(self.target)
            ceiling = float(self.ceiling)
        except (TypeError, ValueError):
            return  # not numbers: the plan's checks say so
        if target > ceiling:
            given = "" if self.target is not None else " (the default)"
            raise UsageError(f"--normalize peak --target {target:g} dBFS{given} is above the limiter's "
                             f"--ceiling {ceiling:g} dBTP: the output would peak lower than asked",
                             hint=f"give --target {ceiling:g} or lower, raise --ceiling, or pass --no-limit")


# ------------------------------------------------------------------------------------------ checks

def _check_number(name: str, value: float, lo: float, hi: float, unit: str = "") -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        u = f" {unit}" if unit else ""
        raise UsageError(f"{name} {value!r}{u} is out of range ({lo:g}..{hi:g}{u})")
    return v


def _seconds(name: str, value: float) -> float:
    return _check_number(name, value, 0.0, MAX_SECONDS, "s")


def _check_settings(s: Settings, n_inputs: int) -> None:
    if len(s.gains) > n_inputs:
        raise UsageError(f"{len(s.gains)} gains for {n_inputs} input{'s' if n_inputs != 1 else ''}",
                         hint="give one --gain per input, in order")
    for g in s.gains:
        _check_number("gain", g, -120.0, 60.0, "dB")
    if s.normalize not in NORMALIZE:
        raise UsageError(f"normalize must be one of {', '.join(NORMALIZE)}, not {s.normalize!r}")
    if s.target is not None:
        if s.normalize == "lufs":
            _check_number("target", s.target, -70.0, 0.0, "LUFS")
        elif s.normalize == "peak":
            _check_number("target", s.target, -120.0, 0.0, "dBFS")
    _check_number("ceiling", s.ceiling, -60.0, 0.0, "dBTP")
    _seconds("fade-in", s.fade_in)
    _seconds("fade-out", s.fade_out)
    if s.sample_rate is not None:
        _check_number("sample rate", s.sample_rate, 1000, 768000, "Hz")
    if s.channels is not None:
        _check_number("channels", s.channels, 1, 64)
    _check_number("reference strength", s.reference_strength, 0.0, 1.0)
    if s.reference_balance and s.reference is None:
        raise UsageError("--reference-balance needs --reference")


def _job_format(files: Sequence[AudioFile], s: Settings) -> tuple[int, int]:
    sr = int(s.sample_rate) if s.sample_rate else max(f.sample_rate for f in files)
    ch = int(s.channels) if s.channels else max(f.channels for f in files)
    return sr, ch


def _label(s: Settings, i: int, f: AudioFile) -> str:
    if i < len(s.labels) and s.labels[i]:
        return str(s.labels[i])
    return "stdin" if f.path == paths.STDIO else Path(f.path).stem


def _source(i: int, f: AudioFile, s: Settings, **kw) -> Source:
    gain = float(s.gains[i]) if i < len(s.gains) else 0.0
    return Source(index=i, path=f.path, label=_label(s, i, f), gain_db=gain, sample_rate=f.sample_rate,
                  channels=f.channels, **kw)


def _timeline(mode: str, files: Sequence[AudioFile], sources: list[Source], frames: int, sr: int, ch: int,
              s: Settings) -> Timeline:
    tl = Timeline(mode=mode, sample_rate=sr, channels=ch, frames=frames, sources=sources,
                  fade_in=float(s.fade_in), fade_out=float(s.fade_out),
                  limit_dbtp=float(s.ceiling) if s.limit else None)
    tl._files = list(files)  # the opened inputs (stdin copies included), reused by render
    tl._settings = s
    return tl


# ------------------------------------------------------------------------------------------ plans

def plan_mix(files: list[AudioFile], *, duration: str = "longest", match_loudness: bool = False,
             align: bool = False, settings: Settings | None = None, progress: ProgressFn = None) -> Timeline:
    """Tracks start together; the output is as long as the longest/shortest/first track.

    With ``match_loudness`` every track's integrated loudness is measured (streaming) and its gain is
    adjusted so all reach the mean loudness of the non-silent tracks (recorded in ``gain_db``).

    With ``align`` each track is first lined up with the first one by its sound (:mod:`avmix.align`):
    a positive offset delays it, a negative one trims its start, and the output starts where the first
    track does. Each source records its ``align`` result; a track with no reliable match is an
    InputError naming it.
    """
    s = settings or Settings()
    if not files:
        raise UsageError("mix needs at least one input")
    if duration not in DURATIONS:
        raise UsageError(f"duration must be one of {', '.join(DURATIONS)}, not {duration!r}")
    _check_settings(s, len(files))
    sr, ch = _job_format(files, s)
    lengths = [f.target_frames(sr) for f in files]
    matches = _aligned(files) if align and len(files) > 1 else None
    shifts = [0 if m is None else int(round(m.offset * sr)) for m in (matches or [None] * len(files))]
    starts = [max(0, k) for k in shifts]
    skips = [min(max(0, -k), n) for k, n in zip(shifts, lengths)]
    ends = [a + n - t for a, n, t in zip(starts, lengths, skips)]
    frames = {"longest": max, "shortest": min}.get(duration, lambda x: x[0])(ends)
    sources = []
    for i, (f, a, t, e) in enumerate(zip(files, starts, skips, ends)):
        a = min(a, frames)
        m = max(0, min(e, frames) - a)
        sources.append(_source(i, f, s, start_sample=a, end_sample=a + m, source_frames=m, offset_sample=t))
        if matches is not None:
            sources[-1].align = {"reference": matches[0].path, "offset": matches[i].offset,
                                 "confidence": matches[i].confidence}
    if match_loudness:
        levels = [measure_file(f, sr, ch, progress=progress) for f in files]
        ok = [v for v in levels if math.isfinite(v)]
        if ok:
            ref = float(np.mean(ok))
            for src, v in zip(sources, levels):
                if math.isfinite(v):
                    src.gain_db = round(src.gain_db + ref - v, 6)
    return _timeline("mix", files, sources, frames, sr, ch, s)


def _aligned(files: list[AudioFile]):
    """The align matches of ``files`` against the first; InputError naming a track that has none."""
    from avmix.align import align_files

    matches = align_files(files)
    # first: against a silent first track no other track matches, and the fault is the first one's
    if matches[0].offset is None:
        raise InputError("is silent; --align auto has nothing to line the other tracks up with",
                         path=matches[0].path)
    for m in matches[1:]:
        if m.offset is None:
            raise InputError(f"no reliable match with {matches[0].path} (confidence {m.confidence:.2f}); "
                             "--align auto cannot place it", path=m.path)
    return matches


def plan_concat(files: list[AudioFile], *, crossfade: float = 0.0, curve: str = dynamics.EQUAL_POWER,
                gap: float = 0.0, trim_silence: bool = False, settings: Settings | None = None,
                progress: ProgressFn = None) -> Timeline:
    """Tracks back to back. Output length = sum of lengths - crossfades + gaps, exactly.

    Each junction starts the next track ``gap - crossfade`` seconds after the end of the previous one;
    a crossfade fades the previous track out and the next in over the same samples (``curve``).
    ``trim_silence`` first cuts each track's leading and trailing samples below -60 dBFS.
    """
    s = settings or Settings()
    if not files:
        raise UsageError("concat needs at least one input")
    if curve not in dynamics.CURVES:
        raise UsageError(f"curve must be one of {', '.join(dynamics.CURVES)}, not {curve!r}")
    crossfade = _seconds("crossfade", crossfade)
    gap = _seconds("gap", gap)
    _check_settings(s, len(files))
    sr, ch = _job_format(files, s)
    x = int(round(crossfade * sr))
    g = int(round(gap * sr))
    spans = []
    for f in files:
        if trim_silence:
            spans.append(silence_bounds(f, sr, ch, progress=progress))
        else:
            spans.append((0, f.target_frames(sr)))
    n_files = len(files)
    for i, (f, (off, n)) in enumerate(zip(files, spans)):
        ends = (i > 0) + (i < n_files - 1)  # crossfaded ends of this track
        if x and ends and x * ends > n:
            what = "more than half the length of" if ends == 2 and x <= n else "longer than"
            raise UsageError(f"crossfade {crossfade:g} s is {what} the track ({n / sr:.3f} s"
                             f"{' after trimming silence' if trim_silence else ''})", path=f.path,
                             hint="use a shorter --crossfade" + (" (a middle track is crossfaded at both ends)"
                                                                 if ends == 2 else ""))
    sources = []
    pos = 0
    for i, (f, (off, n)) in enumerate(zip(files, spans)):
        fade = x / sr  # stored in seconds; round(fade * sr) == x recovers the sample count exactly
        sources.append(_source(i, f, s, start_sample=pos, end_sample=pos + n, source_frames=n,
                               offset_sample=off, fade_in=fade if i > 0 else 0.0,
                               fade_out=fade if i < n_files - 1 else 0.0, fade_curve=curve))
        pos += n
        if i < n_files - 1:
            pos += g - x
    frames = max([src.end_sample for src in sources] + [0])
    if frames == 0:
        raise UsageError("nothing left to join: every input is silent after trimming silence",
                         hint="drop --trim-silence")
    return _timeline("concat", files, sources, frames, sr, ch, s)


def plan_overlay(base: AudioFile, top: AudioFile, *, at: float = 0.0, loop: bool = False,
                 duck_db: float | None = None, settings: Settings | None = None,
                 attack: float = 0.01, release: float = 0.25) -> Timeline:
    """TOP laid over BASE from ``at`` seconds (sample round(at * rate)).

    ``loop`` repeats TOP to the end of BASE (at least once). ``duck_db`` lowers BASE by that many dB
    while TOP sounds. The output extends past BASE when TOP does. An offset past the end of BASE is an
    error.
    """
    s = settings or Settings()
    at = _seconds("offset (--at)", at)
    if duck_db is not None:
        duck_db = abs(_check_number("duck", duck_db, -120.0, 120.0, "dB"))
    _check_settings(s, 2)
    sr, ch = _job_format([base, top], s)
    nb, nt = base.target_frames(sr), top.target_frames(sr)
    start = int(round(at * sr))
    if start > nb:
        raise UsageError(f"offset {at:g} s is past the end of the base track ({nb / sr:.3f} s)", path=base.path,
                         hint="use an --at within the base track")
    end = max(nb, start + nt) if loop else start + nt
    b = _source(0, base, s, start_sample=0, end_sample=nb, source_frames=nb)
    t = _source(1, top, s, start_sample=start, end_sample=end, source_frames=nt, loop=bool(loop))
    if duck_db:
        b.duck = Duck(db=duck_db, by=1, attack=attack, release=release)
    return _timeline("overlay", [base, top], [b, t], max(nb, end), sr, ch, s)


def plan(mode: str, files: list[AudioFile], *, settings: Settings | None, progress: ProgressFn = None,
         **options) -> Timeline:
    """The plan for ``mode`` ("mix", "concat" or "overlay"; overlay takes ``files[0]`` as BASE and
    ``files[1]`` as TOP); ``options`` are that plan function's keywords. ``progress`` reports the scans
    of mix and concat (overlay reads nothing)."""
    if mode == "mix":
        return plan_mix(files, settings=settings, progress=progress, **options)
    if mode == "concat":
        return plan_concat(files, settings=settings, progress=progress, **options)
    if mode == "overlay":
        if len(files) != 2:
            raise UsageError(f"overlay takes exactly two inputs (BASE TOP), got {len(files)}")
        return plan_overlay(files[0], files[1], settings=settings, **options)
    raise UsageError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")


# ------------------------------------------------------------------------------------------ scans

def measure_file(f: AudioFile, sample_rate: int, channels: int, *, progress: ProgressFn = None) -> float:
    """Integrated loudness (LUFS, -inf for silence) of one input at the job's rate and channels."""
    m = LoudnessMeter(sample_rate, channels)
    total = f.target_frames(sample_rate)
    done = 0
    with dynamics.single_thread_blas():
        for b in f.blocks(sample_rate=sample_rate, channels=channels, blocksize=BLOCK):
            m.add(b)
            done += len(b)
            report(progress, "measure", done, total)
    return m.integrated()


def silence_bounds(f: AudioFile, sample_rate: int, channels: int, *, threshold_db: float = TRIM_DB,
                   progress: ProgressFn = None) -> tuple[int, int]:
    """(offset, frames) of the part of ``f`` between its first and last sample above ``threshold_db``."""
    thr = 10.0 ** (threshold_db / 20.0)
    first = last = -1
    pos = 0
    total = f.target_frames(sample_rate)
    for b in f.blocks(sample_rate=sample_rate, channels=channels, blocksize=BLOCK):
        loud = np.flatnonzero(np.abs(b).reshape(-1) > thr) // b.shape[1]  # frame indices
        if len(loud):
            if first < 0:
                first = pos + int(loud[0])
            last = pos + int(loud[-1])
        pos += len(b)
        report(progress, "scan", pos, total)
    if first < 0:
        return 0, 0
    return first, last + 1 - first

