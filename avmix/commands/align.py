"""``avmix align A B [C ...]``: how far to delay each take so that it lines up with the first."""
from __future__ import annotations

import json
import sys
from typing import List

import typer
from typing_extensions import Annotated

from avmix.commands import common as c
from avmix.errors import AvmixError
from avmix.options import INPUT, check_number


def register(app: typer.Typer) -> None:
    app.command("align", help="Find how far each take must be delayed to line up with the first "
                              "(GCC-PHAT, sub-millisecond). A negative offset trims the take's start.")(align_command)


def align_command(
    inputs: Annotated[List[str], typer.Argument(
        metavar="REFERENCE TAKE...", show_default=False,
        help="Recordings of the same performance (any audio or video ffmpeg reads); the first is the reference.")],
    threshold: Annotated[float, typer.Option(
        "--threshold", metavar="0..1", rich_help_panel=INPUT,
        help="Lowest confidence taken as a match; below it a take has no reliable match.")] = 0.3,
    as_json: c.JsonOpt = False,
) -> None:
    from avmix.align import align

    c.check_inputs(inputs, at_least=2)
    check_number("--threshold", threshold, 0.0, 1.0)
    matches = align(inputs, threshold=threshold)
    if as_json:
        d = {"reference": matches[0].path,
             "tracks": [{"path": m.path, "offset": None if m.offset is None else round(m.offset, 6),
                         "confidence": m.confidence} for m in matches]}
        sys.stdout.write(json.dumps(d) + "\n")
    else:
        width = max(len(m.path) for m in matches)
        sys.stdout.write(f"{matches[0].path:<{width}}  reference\n")
        for m in matches[1:]:
            where = "no reliable match" if m.offset is None else f"{m.offset:+.6f} s"
            sys.stdout.write(f"{m.path:<{width}}  {where:<17}  confidence {m.confidence:.2f}\n")
    sys.stdout.flush()
    if matches[0].offset is None:
        raise AvmixError("the reference is silent; nothing to line the takes up with", path=matches[0].path)
    lost = [m for m in matches[1:] if m.offset is None]
    if lost:
        names = ", ".join(f"{m.path} (confidence {m.confidence:.2f})" for m in lost)
        # one line, no hint: the offsets above already say which takes matched
        raise AvmixError(f"no reliable match with {matches[0].path} for {names}, below --threshold {threshold:g}")
