"""Options shared by every command that composes audio (mix, concat, overlay, generate).

Each option is an ``Annotated`` alias: a command declares ``gain: GainOpt = None`` and passes what it got
to :func:`audio_settings`, which validates the numbers (UsageError, exit 2) and returns the keyword
arguments of the compose library functions. :func:`print_result` prints the ``--json`` object.
"""
from __future__ import annotations

import json
import math
import os
import sys
from enum import Enum
from typing import Any, List, Optional

import typer
from typing_extensions import Annotated

from avmix.errors import UsageError
from avmix.progress import note

INPUT, OUTPUT, LEVELS = "Input", "Output", "Levels"

MAX_GAIN_DB = 60.0  # |gain| beyond this is a typo, not a level
MAX_SECONDS = 24 * 3600.0
RATE_RANGE = (8000, 384000)
MAX_CHANNELS = 32
BIT_DEPTHS = (16, 24, 32)
TARGET_RANGE = {"lufs": (-70.0, 0.0), "peak": (-60.0, 0.0)}
CEILING_RANGE = (-24.0, 0.0)


class Normalize(str, Enum):
    none = "none"
    peak = "peak"
    lufs = "lufs"


# ----------------------------------------------------------------------------------- option aliases

GainOpt = Annotated[Optional[List[float]], typer.Option(
    "--gain", "-g", metavar="DB", rich_help_panel=LEVELS,
    help="Gain in dB for each input, in order (repeat the option: --gain -6 --gain 0). Missing ones are 0.")]
NormalizeOpt = Annotated[Normalize, typer.Option(
    "--normalize", case_sensitive=False, rich_help_panel=LEVELS,
    help="Normalise the output: none, peak (to --target dBFS, default -1) or lufs (BS.1770 integrated "
         "loudness to --target LUFS, default -14).")]
TargetOpt = Annotated[Optional[float], typer.Option(
    "--target", metavar="LEVEL", rich_help_panel=LEVELS, show_default=False,
    help="Normalisation target: LUFS for --normalize lufs (default -14), dBFS for peak (default -1).")]
LimitOpt = Annotated[bool, typer.Option(
    "--limit/--no-limit", rich_help_panel=LEVELS,
    help="True-peak limiter at --ceiling; --no-limit writes the exact sum (integer formats clip at 0 dBFS).")]
CeilingOpt = Annotated[float, typer.Option(
    "--ceiling", metavar="DBTP", rich_help_panel=LEVELS, help="Limiter ceiling in dB true peak.")]
FadeInOpt = Annotated[float, typer.Option(
    "--fade-in", metavar="SEC", rich_help_panel=LEVELS, help="Fade the output in over SEC seconds.")]
FadeOutOpt = Annotated[float, typer.Option(
    "--fade-out", metavar="SEC", rich_help_panel=LEVELS, help="Fade the output out over SEC seconds.")]
SampleRateOpt = Annotated[Optional[int], typer.Option(
    "--sample-rate", "-r", metavar="HZ", rich_help_panel=OUTPUT, show_default=False,
    help="Output sample rate (default: the highest input rate; others are resampled with soxr).")]
ChannelsOpt = Annotated[Optional[int], typer.Option(
    "--channels", "-c", metavar="N", rich_help_panel=OUTPUT, show_default=False,
    help="Output channels (default: the most of any input; mono is duplicated, anything->mono averages, "
         "surround->stereo folds down as BS.775).")]
BitDepthOpt = Annotated[Optional[int], typer.Option(
    "--bit-depth", "-b", metavar="BITS", rich_help_panel=OUTPUT, show_default=False,
    help="16, 24 (default) or 32 (float) for wav; 16 or 24 for flac; ignored for lossy formats.")]
OutputOpt = Annotated[str, typer.Option(
    "--output", "-o", metavar="OUT", rich_help_panel=OUTPUT, show_default=False,
    help="Output file: .wav .flac .mp3 .ogg .opus .m4a, or - for WAV on stdout.")]
OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite", "-y", rich_help_panel=OUTPUT, help="Replace an existing output file.")]
TimelineOpt = Annotated[Optional[str], typer.Option(
    "--timeline", metavar="PATH", rich_help_panel=OUTPUT, show_default=False,
    help="Where to write the timeline JSON (default: OUT.timeline.json; none for -o - unless given).")]
JsonOpt = Annotated[bool, typer.Option(
    "--json", rich_help_panel=OUTPUT, help="Print the result as one JSON object on stdout.")]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", rich_help_panel=OUTPUT, help="No progress bar or notes on stderr.")]
LabelOpt = Annotated[Optional[List[str]], typer.Option(
    "--label", "-l", metavar="TEXT", rich_help_panel=INPUT,
    help="A label for each input, in order (repeatable; default: the file name).")]


# ------------------------------------------------------------------------------------- validation

def check_number(name: str, value: float | None, lo: float, hi: float, *, unit: str = "") -> None:
    """UsageError (exit 2) unless ``value`` is None or a finite number in [lo, hi]."""
    if value is None:
        return
    u = f" {unit}" if unit else ""
    if not math.isfinite(value) or not lo <= value <= hi:
        raise UsageError(f"{name} {value:g}{u} is out of range ({lo:g}..{hi:g}{u})")


def check_seconds(name: str, value: float | None, *, allow_zero: bool = True) -> None:
    check_number(name, value, 0.0, MAX_SECONDS, unit="s")
    if value is not None and not allow_zero and value <= 0:
        raise UsageError(f"{name} must be greater than 0 s")


def check_inputs(inputs: list[str], *, at_least: int = 1) -> list[str]:
    """At least ``at_least`` inputs and standard input ('-') at most once."""
    if len(inputs) < at_least:
        raise UsageError(f"need at least {at_least} input file{'s' if at_least > 1 else ''}, got {len(inputs)}")
    if sum(1 for i in inputs if i == "-") > 1:
        raise UsageError("standard input ('-') can be given only once")
    return inputs


def check_output_format(output: str, *, as_json: bool = False) -> None:
    """An unsupported extension, or --json together with -o -, is a usage error (before any work)."""
    from avmix.audio.writer import supported_output  # writer pulls numpy/soundfile: only when used

    supported_output(output)
    if as_json and output == "-":
        raise UsageError("--json cannot be used with -o - (both write to stdout)")


def audio_settings(n_inputs: int, *, gain: list[float] | None = None, normalize: Normalize | str = "none",
                   target: float | None = None, limit: bool = True, ceiling: float = -1.0,
                   fade_in: float = 0.0, fade_out: float = 0.0, sample_rate: int | None = None,
                   channels: int | None = None, label: list[str] | None = None) -> dict[str, Any]:
    """Validate the common options and return the compose settings keyword arguments:
    sample_rate, channels, gains (one per input, dB), normalize, target, limit, ceiling, fade_in,
    fade_out, labels."""
    norm = Normalize(normalize).value if not isinstance(normalize, Normalize) else normalize.value
    gains = [float(g) for g in (gain or [])]
    if len(gains) > n_inputs:
        raise UsageError(f"{len(gains)} --gain values for {n_inputs} input{'s' if n_inputs > 1 else ''}",
                         hint="give one --gain per input, in order")
    for g in gains:
        check_number("--gain", g, -MAX_GAIN_DB, MAX_GAIN_DB, unit="dB")
    gains += [0.0] * (n_inputs - len(gains))
    labels = [str(x) for x in (label or [])]
    if len(labels) > n_inputs:
        raise UsageError(f"{len(labels)} --label values for {n_inputs} input{'s' if n_inputs > 1 else ''}")
    if any(not x.strip() for x in labels):
        raise UsageError("--label must not be empty")
    if target is not None:
        if norm == "none":
            raise UsageError("--target needs --normalize peak or --normalize lufs")
        lo, hi = TARGET_RANGE[norm]
        check_number("--target", target, lo, hi, unit="LUFS" if norm == "lufs" else "dBFS")
    check_number("--ceiling", ceiling, *CEILING_RANGE, unit="dBTP")
    check_seconds("--fade-in", fade_in)
    check_seconds("--fade-out", fade_out)
    if norm == "peak":  # Settings refuses a peak target above the limiter's ceiling
        from avmix.audio.plan import Settings
        Settings(normalize=norm, target=target, limit=bool(limit), ceiling=float(ceiling))
    if sample_rate is not None:
        check_number("--sample-rate", sample_rate, *RATE_RANGE, unit="Hz")
    if channels is not None:
        check_number("--channels", channels, 1, MAX_CHANNELS)
    return {"sample_rate": sample_rate, "channels": channels, "gains": gains, "normalize": norm,
            "target": target, "limit": bool(limit), "ceiling": float(ceiling), "fade_in": float(fade_in),
            "fade_out": float(fade_out), "labels": labels}


def check_bit_depth(bit_depth: int | None) -> None:
    if bit_depth is not None and bit_depth not in BIT_DEPTHS:
        raise UsageError(f"--bit-depth {bit_depth} is not one of {', '.join(map(str, BIT_DEPTHS))}")


# ---------------------------------------------------------------------------------------- results

def result_dict(timeline) -> dict[str, Any]:
    """The --json object of a composed Timeline."""
    sr = timeline.sample_rate
    return {
        "output": timeline.output,
        "duration": timeline.frames / sr,
        "sample_rate": sr,
        "channels": timeline.channels,
        "peak_dbfs": _num(timeline.peak_dbfs),
        "lufs": _num(timeline.lufs),
        "tracks": [{"path": s.path, "label": s.label, "start": s.start_sample / sr, "end": s.end_sample / sr,
                    "gain_db": s.gain_db} for s in timeline.sources],
    }


def _num(x: float | None) -> float | None:
    # JSON has no -inf (digital silence): report null
    return None if x is None or not math.isfinite(x) else round(float(x), 3)


def print_result(timeline, *, as_json: bool = False, quiet: bool = False) -> None:
    """--json: one JSON object on stdout; otherwise a one-line summary on stderr (unless quiet)."""
    d = result_dict(timeline)
    if as_json:
        sys.stdout.write(json.dumps(d) + "\n")
        sys.stdout.flush()
        return
    peak = "-inf" if d["peak_dbfs"] is None else f"{d['peak_dbfs']:.1f}"
    lufs = "" if d["lufs"] is None else f", {d['lufs']:.1f} LUFS"
    where = "stdout" if d["output"] in ("-", "") else os.fspath(d["output"])
    note(f"wrote {where}: {d['duration']:.3f} s, {d['sample_rate']} Hz, {d['channels']} ch, "
         f"peak {peak} dBFS{lufs}", quiet=quiet)
