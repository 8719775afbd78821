"""``avmix generate A [B ...] -o OUT.mp4``: compose, analyse, render the video and mux, in one command.

Its options are the groups of :mod:`avmix.options`; this module declares only the inputs and outputs.
"""
from __future__ import annotations

import json
import sys
from typing import List

import typer
from typing_extensions import Annotated

from avmix.commands import common as c
from avmix.commands.options import command
from avmix.options import Options
from avmix.progress import Bar


def register(app: typer.Typer) -> None:
    @command(app, "generate")
    def generate(
        inputs: Annotated[List[str], typer.Argument(
            metavar="INPUT...", show_default=False,
            help="Audio tracks (or one composed file with its .timeline.json beside it).")],
        output: Annotated[str, typer.Option(
            "--output", "-o", metavar="OUT", rich_help_panel=c.OUTPUT, show_default=False,
            help="Output video: .mp4 (H.264 + AAC), .mov, .mkv or .webm (VP9 + Opus).")],
        overwrite: c.OverwriteOpt = False, as_json: c.JsonOpt = False, quiet: c.QuietOpt = False, *,
        opts: Options,
    ) -> None:
        """Make a sounding video: compose, analyse, draw a picture that follows each track, mux.

        [bold]Examples[/bold]

          avmix generate dog.wav rain.wav -o out.mp4 --preview out.png

          avmix generate intro.wav song.wav --mode concat --crossfade 2 --size 640x360 -o clip.mp4

          avmix generate bed.wav voice.wav --mode overlay --at 3 --duck 12 --captions -o promo.mp4

          avmix generate a.wav b.wav --workdir work --stems stems --no-limit -o out.mp4
        """
        from avmix import pipeline

        with Bar(quiet=quiet) as bar:
            result = pipeline.generate(inputs, output, opts, overwrite=overwrite, progress=bar, quiet=quiet)
        if as_json:
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
