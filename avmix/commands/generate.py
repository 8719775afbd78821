"""``avmix generate A [B ...] -o OUT.mp4``: compose, analyse, render the video and mux, in one command."""
from __future__ import annotations

import json
import sys
from enum import Enum
from typing import List, Optional

import typer
from typing_extensions import Annotated

from avmix.commands import common as c
from avmix.commands.audio import Curve, Duration
from avmix.progress import Bar

VIDEO, MODEL, WORK = "Video", "Model", "Work directory"


class Mode(str, Enum):
    mix = "mix"
    concat = "concat"
    overlay = "overlay"


class Backend(str, Enum):
    auto = "auto"
    procedural = "procedural"
    diffusion = "diffusion"


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate(
        inputs: Annotated[List[str], typer.Argument(
            metavar="INPUT...", show_default=False,
            help="Audio tracks (or one composed file with its .timeline.json beside it).")],
        output: Annotated[str, typer.Option(
            "--output", "-o", metavar="OUT", rich_help_panel=c.OUTPUT, show_default=False,
            help="Output video: .mp4 (H.264 + AAC), .mov, .mkv or .webm (VP9 + Opus).")],
        mode: Annotated[Mode, typer.Option("--mode", "-m", rich_help_panel=c.INPUT,
                                           help="How the tracks are composed.")] = Mode.mix,
        label: c.LabelOpt = None,
        # compose
        duration: Annotated[Duration, typer.Option(
            "--duration", rich_help_panel=c.INPUT, help="mix: output length (longest, shortest, first).")]
        = Duration.longest,
        match_loudness: Annotated[bool, typer.Option(
            "--match-loudness", rich_help_panel=c.LEVELS, help="mix: same integrated loudness per track.")] = False,
        crossfade: Annotated[float, typer.Option(
            "--crossfade", "-x", metavar="SEC", rich_help_panel=c.INPUT, help="concat: crossfade length.")] = 0.0,
        curve: Annotated[Curve, typer.Option("--curve", rich_help_panel=c.INPUT, help="concat: crossfade shape.")]
        = Curve.equal_power,
        gap: Annotated[float, typer.Option(
            "--gap", metavar="SEC", rich_help_panel=c.INPUT, help="concat: silence between tracks.")] = 0.0,
        trim_silence: Annotated[bool, typer.Option(
            "--trim-silence", rich_help_panel=c.INPUT, help="concat: cut leading/trailing silence.")] = False,
        at: Annotated[float, typer.Option(
            "--at", metavar="SEC", rich_help_panel=c.INPUT, help="overlay: where TOP starts in BASE.")] = 0.0,
        loop: Annotated[bool, typer.Option("--loop", rich_help_panel=c.INPUT,
                                           help="overlay: repeat TOP to the end of BASE.")] = False,
        duck: Annotated[Optional[float], typer.Option(
            "--duck", metavar="DB", rich_help_panel=c.LEVELS, show_default=False,
            help="overlay: lower BASE by DB dB while TOP sounds.")] = None,
        gain: c.GainOpt = None, normalize: c.NormalizeOpt = c.Normalize.none, target: c.TargetOpt = None,
        limit: c.LimitOpt = True, ceiling: c.CeilingOpt = -1.0, fade_in: c.FadeInOpt = 0.0,
        fade_out: c.FadeOutOpt = 0.0, sample_rate: c.SampleRateOpt = None, channels: c.ChannelsOpt = None,
        # video
        fps: Annotated[float, typer.Option("--fps", rich_help_panel=VIDEO, help="Frames per second (1..120).")]
        = 30.0,
        size: Annotated[str, typer.Option("--size", "-s", metavar="WxH", rich_help_panel=VIDEO,
                                          help="Frame size, both even, at least 16.")] = "1280x720",
        seed: Annotated[int, typer.Option("--seed", min=0, rich_help_panel=VIDEO,
                                          help="Every random choice follows from it.")] = 0,
        backend: Annotated[Backend, typer.Option(
            "--backend", rich_help_panel=VIDEO,
            help="auto: diffusion when a model is configured and a GPU is present, else procedural.")]
        = Backend.auto,
        captions: Annotated[bool, typer.Option("--captions", rich_help_panel=VIDEO,
                                               help="Draw each track's label in the video.")] = False,
        crf: Annotated[int, typer.Option("--crf", min=0, max=51, rich_help_panel=VIDEO,
                                         help="Video quality (x264 CRF; lower is better).")] = 20,
        # model
        model: Annotated[Optional[str], typer.Option(
            "--model", metavar="ID_OR_DIR", rich_help_panel=MODEL, show_default=False,
            help="Diffusion model (default: $AVMIX_MODEL).")] = None,
        device: Annotated[str, typer.Option("--device", rich_help_panel=MODEL, help="auto, cuda, cpu, mps.")]
        = "auto",
        offload: Annotated[bool, typer.Option("--offload", rich_help_panel=MODEL,
                                              help="Offload model parts to the CPU (less GPU memory).")] = False,
        prompt: Annotated[str, typer.Option("--prompt", rich_help_panel=MODEL, help="Extra prompt text.")] = "",
        negative_prompt: Annotated[str, typer.Option("--negative-prompt", rich_help_panel=MODEL)] = "",
        steps: Annotated[Optional[int], typer.Option("--steps", min=1, max=1000, rich_help_panel=MODEL,
                                                     show_default=False)] = None,
        guidance: Annotated[Optional[float], typer.Option("--guidance", min=0.0, max=100.0,
                                                          rich_help_panel=MODEL, show_default=False)] = None,
        tagger: Annotated[Optional[str], typer.Option(
            "--tagger", metavar="MODEL", rich_help_panel=MODEL, show_default=False,
            help="Audio tagging model that labels inputs without --label.")] = None,
        # work directory and outputs
        workdir: Annotated[Optional[str], typer.Option(
            "--workdir", "-w", metavar="DIR", rich_help_panel=WORK, show_default=False,
            help="Keep the stage files here; a rerun reuses the stages whose inputs did not change.")] = None,
        keep: Annotated[bool, typer.Option("--keep", rich_help_panel=WORK,
                                           help="Keep the default work directory (.OUT.avmix-work).")] = False,
        no_cache: Annotated[bool, typer.Option("--no-cache", rich_help_panel=WORK,
                                               help="Redo every stage.")] = False,
        preview: Annotated[Optional[str], typer.Option(
            "--preview", metavar="PNG", rich_help_panel=c.OUTPUT, show_default=False,
            help="Also write a contact sheet: thumbnails over a timeline of the tracks.")] = None,
        stems: Annotated[Optional[str], typer.Option(
            "--stems", metavar="DIR", rich_help_panel=c.OUTPUT, show_default=False,
            help="Also write each source as it sits in the mix (with --no-limit they sum to it).")] = None,
        overwrite: c.OverwriteOpt = False, as_json: c.JsonOpt = False, quiet: c.QuietOpt = False,
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
            result = pipeline.generate(
                inputs, output, mode=mode.value, labels=label, fps=fps, size=size, seed=seed,
                backend=backend.value, model=model, device=device, offload=offload, prompt=prompt,
                negative_prompt=negative_prompt, steps=steps, guidance=guidance, tagger=tagger,
                captions=captions, workdir=workdir, keep=keep, preview=preview, stems=stems,
                overwrite=overwrite, no_cache=no_cache, gains=gain, duration=duration.value,
                match_loudness=match_loudness, crossfade=crossfade, curve=curve.value, gap=gap,
                trim_silence=trim_silence, at=at, loop=loop, duck=duck, normalize=normalize.value,
                target=target, limit=limit, ceiling=ceiling, fade_in=fade_in, fade_out=fade_out,
                sample_rate=sample_rate, channels=channels, crf=crf, progress=bar, quiet=quiet)
        if as_json:
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
