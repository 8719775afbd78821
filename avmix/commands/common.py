"""What the audio commands and generate share besides their options: the output parameters, the checks
of inputs and output format, and the ``--json`` result (:func:`print_result`).

The options themselves are declared once, in :mod:`avmix.options`.
"""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, Optional

import typer
from typing_extensions import Annotated

from avmix.errors import UsageError
from avmix.options import OUTPUT
from avmix.progress import note

BIT_DEPTHS = (16, 24, 32)

# the outputs of the audio commands and generate; the compose options are in avmix.options
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


def check_bit_depth(bit_depth: int | None) -> None:
    if bit_depth is not None and bit_depth not in BIT_DEPTHS:
        raise UsageError(f"--bit-depth {bit_depth} is not one of {', '.join(map(str, BIT_DEPTHS))}")


# ---------------------------------------------------------------------------------------- results

def result_dict(timeline) -> dict[str, Any]:
    """The --json object of a composed Timeline: the file as written (a lossy encoder may have resampled
    the mix: an mp3 of a 96 kHz mix is 48 kHz); the tracks' times on the mix's own clock."""
    from avmix.audio.io import _round_frames
    from avmix.audio.writer import written_rate

    sr = timeline.sample_rate
    rate = written_rate(timeline.output or "-", sr)
    return {
        "output": timeline.output,
        "duration": _round_frames(timeline.frames, sr, rate) / rate,
        "sample_rate": rate,
        "channels": timeline.channels,
        "peak_dbfs": _num(timeline.peak_dbfs),
        "lufs": _num(timeline.lufs),
        "tracks": [{"path": s.path, "label": s.label, "start": s.start_sample / sr, "end": s.end_sample / sr,
                    "gain_db": s.gain_db} for s in timeline.sources],
        **({"reference": timeline.reference_report} if timeline.reference_report else {}),
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
