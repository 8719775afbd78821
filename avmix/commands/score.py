"""``avmix score VIDEO``: the AV-Align alignment score of a video and its audio."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from avmix.progress import Bar


def register(app: typer.Typer) -> None:
    app.command("score", help="Score how well a video's motion follows its audio (AV-Align).")(score_command)


def score_command(
    video: Path = typer.Argument(..., help="Video to score.", show_default=False),
    audio: Optional[Path] = typer.Option(None, "--audio", "-a",
                                         help="Audio to score against (default: the video's own audio).",
                                         rich_help_panel="Input"),
    workdir: Optional[Path] = typer.Option(None, "--workdir",
                                           help="A generate work directory: also score each track "
                                                "inside its part of the picture.", rich_help_panel="Input"),
    flow_width: Optional[int] = typer.Option(
        None, "--flow-width", metavar="PX",
        help="Compute optical flow on frames scaled to PX wide (256 is several times faster). Not the "
             "published AV-Align: the default, full-size flow, is the number to compare with papers.",
        show_default=False, rich_help_panel="Speed"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout.",
                                 rich_help_panel="Output"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.", rich_help_panel="Output"),
) -> None:
    from avmix.score import score

    with Bar(quiet=quiet or as_json) as bar:
        result = score(video, audio=audio, workdir=workdir, flow_width=flow_width, progress=bar)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    console = Console(highlight=False)
    table = Table(title=f"AV-Align  {result['video']}")
    for col in ("", "AV-Align", "audio peaks", "video peaks", "matches"):
        table.add_column(col, justify="left" if not col else "right")
    table.add_row("all", f"{result['av_align']:.3f}", str(result["audio_peaks"]), str(result["video_peaks"]),
                  str(result["matches"]))
    for t in result["per_track"] or []:
        table.add_row(f"{t['index']}: {t['label']}", f"{t['av_align']:.3f}", str(t["audio_peaks"]),
                      str(t["video_peaks"]), str(t["matches"]))
    console.print(table)
    console.print(f"{result['frames']} frames at {result['fps']:g} fps; audio: {result['audio']}")
    fw, fh = result["flow_size"]
    if result["flow_width"] is None:
        console.print(f"optical flow at full size ({fw}x{fh}), peaks >= {result['min_flow']:g} px")
    else:
        console.print(f"optical flow scaled to {fw}x{fh} (--flow-width: faster, not the published "
                      f"definition), peaks >= {result['min_flow']:g} px there")
    if result.get("per_track_onsets"):
        console.print(f"per-track audio peaks from {result['per_track_onsets']}")
    if result.get("per_track_note"):
        console.print(f"per-track: {result['per_track_note']}")
