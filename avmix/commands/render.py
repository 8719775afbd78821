"""``avmix render VIDEO AUDIO -o OUT`` and ``avmix render WORKDIR -o OUT``: the mux stage."""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import List

import typer
from typing_extensions import Annotated

from avmix import mux
from avmix.errors import InputError, UsageError
from avmix.manifest import Manifest
from avmix.progress import Bar, note


class Fit(str, Enum):
    audio = "audio"
    video = "video"
    shortest = "shortest"


def resolve_inputs(inputs: list[Path]) -> tuple[Path, Path]:
    """(video, audio) from ``VIDEO AUDIO`` or a work directory holding video.mp4 and audio.wav."""
    if len(inputs) == 1:
        workdir = inputs[0]
        if not workdir.is_dir():
            raise UsageError("render takes VIDEO AUDIO, or one work directory", path=workdir)
        video, audio = workdir / "video.mp4", workdir / "audio.wav"
        for p in (video, audio):
            if not p.is_file():
                raise InputError("missing from the work directory", path=p,
                                 hint="run avmix generate with --workdir/--keep first")
        Manifest.load(workdir).check_files([video.name, audio.name])  # a cut or swapped file is refused
        return video, audio
    if len(inputs) == 2:
        return inputs[0], inputs[1]
    raise UsageError(f"render takes VIDEO AUDIO or WORKDIR, got {len(inputs)} arguments")


def register(app: typer.Typer) -> None:
    @app.command("render")
    def render(
        inputs: Annotated[List[Path], typer.Argument(metavar="VIDEO AUDIO | WORKDIR",
                                                     help="A video and an audio file, or a generate work directory.",
                                                     show_default=False)],
        output: Annotated[Path, typer.Option("-o", "--output", help="Output video (.mp4, .mov, .mkv, .webm).",
                                             rich_help_panel="Output")],
        fit: Annotated[Fit, typer.Option(help="Whose length wins: audio (video held/looped/cut), "
                                              "video (audio padded/cut), or the shortest.")] = Fit.audio,
        crf: Annotated[int, typer.Option(min=0, max=51, help="Video quality (x264 CRF; lower is better).")] = 18,
        preset: Annotated[str, typer.Option(help="x264 speed preset (ultrafast .. veryslow).")] = "veryfast",
        audio_bitrate: Annotated[str, typer.Option("--audio-bitrate", help="AAC/Opus bitrate.")] = "192k",
        overwrite: Annotated[bool, typer.Option("-y", "--overwrite", help="Replace an existing output.",
                                                rich_help_panel="Output")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.",
                                              rich_help_panel="Output")] = False,
        quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress or notes on stderr.")] = False,
    ) -> None:
        """Mux a video with an audio track (or re-mux a generate work directory)."""
        video, audio = resolve_inputs(inputs)
        with Bar(quiet=quiet) as bar:
            result = mux.render(video, audio, output, fit=fit.value, crf=crf, preset=preset,
                                audio_bitrate=audio_bitrate, overwrite=overwrite, progress=bar)
        if as_json:
            print(json.dumps(result))
        else:
            how = "video copied" if result["video_copied"] else f"video {result['method']}"
            note(f"wrote {result['output']} ({result['duration']:.2f} s, {how})", quiet=quiet)
