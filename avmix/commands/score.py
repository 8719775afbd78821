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
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout.",
                                 rich_help_panel="Output"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.", rich_help_panel="Output"),
) -> None:
    from avmix.score import score

    with Bar(quiet=quiet or as_json) as bar:
        result = score(video, audio=audio, workdir=workdir, progress=bar)
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
    if result.get("per_track_onsets"):
        console.print(f"per-track audio peaks from {result['per_track_onsets']}")
    if result.get("per_track_note"):
        console.print(f"per-track: {result['per_track_note']}")
