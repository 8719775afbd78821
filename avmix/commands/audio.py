"""``avmix mix``, ``avmix concat``, ``avmix overlay``: the compose stage on the command line.

Parsing and validation only; the work is :mod:`avmix.audio.compose`.
"""
from __future__ import annotations

import os
from enum import Enum
from typing import List, Optional

import typer
from typing_extensions import Annotated

from avmix.commands import common as c
from avmix.errors import UsageError
from avmix.progress import Bar

MAX_DUCK_DB = 60.0


class Duration(str, Enum):
    longest = "longest"
    shortest = "shortest"
    first = "first"


class Curve(str, Enum):
    equal_power = "equal-power"
    linear = "linear"


def _prepare(inputs: list[str], output: str, *, at_least: int, as_json: bool, bit_depth: int | None,
             timeline: str | None = None, overwrite: bool = False) -> None:
    c.check_inputs(inputs, at_least=at_least)
    c.check_output_format(output, as_json=as_json)
    c.check_bit_depth(bit_depth)
    if timeline is not None:  # an explicit --timeline is an output like OUT: never clobber a file without -y
        from avmix import paths

        if timeline == "-" or (output != "-" and os.path.abspath(timeline) == os.path.abspath(output)):
            raise UsageError("--timeline must be a file other than the output", path=timeline)
        paths.check_output(timeline, inputs, overwrite=overwrite)


def _run(fn, args: tuple, *, kwargs: dict, output: str, bit_depth, overwrite, timeline, as_json, quiet) -> None:
    with Bar(quiet=quiet) as bar:
        # --json reports the output's loudness, which costs a K-weighting pass: only then is it measured
        tl = fn(*args, output, bit_depth=bit_depth, overwrite=overwrite, timeline_path=timeline,
                progress=bar, loudness=True if as_json else None, **kwargs)
    c.print_result(tl, as_json=as_json, quiet=quiet or output == "-")


def register(app: typer.Typer) -> None:
    @app.command("mix")
    def mix(
        inputs: Annotated[List[str], typer.Argument(metavar="INPUT...", show_default=False,
                                                    help="Audio files (any format ffmpeg reads; - = stdin).")],
        output: c.OutputOpt,
        duration: Annotated[Duration, typer.Option(
            "--duration", rich_help_panel=c.INPUT,
            help="Output length: the longest input, the shortest, or the first.")] = Duration.longest,
        match_loudness: Annotated[bool, typer.Option(
            "--match-loudness", rich_help_panel=c.LEVELS,
            help="Bring every track to the same integrated loudness before summing.")] = False,
        gain: c.GainOpt = None, normalize: c.NormalizeOpt = c.Normalize.none, target: c.TargetOpt = None,
        limit: c.LimitOpt = True, ceiling: c.CeilingOpt = -1.0, fade_in: c.FadeInOpt = 0.0,
        fade_out: c.FadeOutOpt = 0.0, sample_rate: c.SampleRateOpt = None, channels: c.ChannelsOpt = None,
        bit_depth: c.BitDepthOpt = None, overwrite: c.OverwriteOpt = False, timeline: c.TimelineOpt = None,
        as_json: c.JsonOpt = False, quiet: c.QuietOpt = False, label: c.LabelOpt = None,
    ) -> None:
        """Mix tracks that start together (summed in float, one true-peak limiter at the end).

        [bold]Examples[/bold]

          avmix mix dog.wav rain.flac -o scene.wav

          avmix mix voice.mp3 bed.wav --gain 0 --gain -12 --normalize lufs --target -16 -o out.m4a

          avmix mix a.wav b.wav --duration shortest --no-limit -o sum.wav

          cat a.wav | avmix mix - b.wav -o - | avmix concat - c.wav -o out.flac
        """
        _prepare(inputs, output, at_least=1, as_json=as_json, bit_depth=bit_depth, timeline=timeline,
                 overwrite=overwrite)
        settings = c.audio_settings(len(inputs), gain=gain, normalize=normalize, target=target, limit=limit,
                                    ceiling=ceiling, fade_in=fade_in, fade_out=fade_out,
                                    sample_rate=sample_rate, channels=channels, label=label)
        from avmix.audio import compose

        _run(compose.mix, (inputs,), kwargs={"duration": duration.value, "match_loudness": match_loudness,
                                              **settings},
             output=output, bit_depth=bit_depth, overwrite=overwrite, timeline=timeline, as_json=as_json,
             quiet=quiet)

    @app.command("concat")
    def concat(
        inputs: Annotated[List[str], typer.Argument(metavar="INPUT...", show_default=False,
                                                    help="Audio files in playing order (- = stdin).")],
        output: c.OutputOpt,
        crossfade: Annotated[float, typer.Option(
            "--crossfade", "-x", metavar="SEC", rich_help_panel=c.INPUT,
            help="Overlap consecutive tracks by SEC seconds with a crossfade.")] = 0.0,
        curve: Annotated[Curve, typer.Option(
            "--curve", rich_help_panel=c.INPUT,
            help="Crossfade shape: equal-power (no level dip on uncorrelated material) or linear.")]
        = Curve.equal_power,
        gap: Annotated[float, typer.Option(
            "--gap", metavar="SEC", rich_help_panel=c.INPUT,
            help="Seconds of silence between tracks.")] = 0.0,
        trim_silence: Annotated[bool, typer.Option(
            "--trim-silence", rich_help_panel=c.INPUT,
            help="Cut leading and trailing silence of every track first.")] = False,
        gain: c.GainOpt = None, normalize: c.NormalizeOpt = c.Normalize.none, target: c.TargetOpt = None,
        limit: c.LimitOpt = True, ceiling: c.CeilingOpt = -1.0, fade_in: c.FadeInOpt = 0.0,
        fade_out: c.FadeOutOpt = 0.0, sample_rate: c.SampleRateOpt = None, channels: c.ChannelsOpt = None,
        bit_depth: c.BitDepthOpt = None, overwrite: c.OverwriteOpt = False, timeline: c.TimelineOpt = None,
        as_json: c.JsonOpt = False, quiet: c.QuietOpt = False, label: c.LabelOpt = None,
    ) -> None:
        """Join tracks back to back, with optional crossfades or gaps.

        The output length is the sum of the inputs minus the crossfades plus the gaps, to the sample.

        [bold]Examples[/bold]

          avmix concat intro.wav body.mp3 outro.flac -o show.wav

          avmix concat a.wav b.wav --crossfade 2 --curve linear -o ab.flac

          avmix concat take1.wav take2.wav --gap 0.5 --trim-silence -o takes.wav
        """
        _prepare(inputs, output, at_least=1, as_json=as_json, bit_depth=bit_depth, timeline=timeline,
                 overwrite=overwrite)
        c.check_seconds("--crossfade", crossfade)
        c.check_seconds("--gap", gap)
        if crossfade > 0 and gap > 0:
            raise UsageError("--crossfade and --gap cannot be combined")
        settings = c.audio_settings(len(inputs), gain=gain, normalize=normalize, target=target, limit=limit,
                                    ceiling=ceiling, fade_in=fade_in, fade_out=fade_out,
                                    sample_rate=sample_rate, channels=channels, label=label)
        from avmix.audio import compose

        _run(compose.concat, (inputs,), kwargs={"crossfade": crossfade, "curve": curve.value, "gap": gap,
                                                 "trim_silence": trim_silence, **settings},
             output=output, bit_depth=bit_depth, overwrite=overwrite, timeline=timeline, as_json=as_json,
             quiet=quiet)

    @app.command("overlay")
    def overlay(
        base: Annotated[str, typer.Argument(metavar="BASE", show_default=False,
                                            help="The bed track (- = stdin).")],
        top: Annotated[str, typer.Argument(metavar="TOP", show_default=False,
                                           help="The track laid over it (- = stdin).")],
        output: c.OutputOpt,
        at: Annotated[float, typer.Option(
            "--at", metavar="SEC", rich_help_panel=c.INPUT,
            help="Where TOP starts in BASE, in seconds (sample-accurate).")] = 0.0,
        loop: Annotated[bool, typer.Option(
            "--loop", rich_help_panel=c.INPUT, help="Repeat TOP to the end of BASE.")] = False,
        duck: Annotated[Optional[float], typer.Option(
            "--duck", metavar="DB", rich_help_panel=c.LEVELS, show_default=False,
            help="Lower BASE by DB dB while TOP sounds (sidechain ducking, as a voice over a music bed).")]
        = None,
        gain: c.GainOpt = None, normalize: c.NormalizeOpt = c.Normalize.none, target: c.TargetOpt = None,
        limit: c.LimitOpt = True, ceiling: c.CeilingOpt = -1.0, fade_in: c.FadeInOpt = 0.0,
        fade_out: c.FadeOutOpt = 0.0, sample_rate: c.SampleRateOpt = None, channels: c.ChannelsOpt = None,
        bit_depth: c.BitDepthOpt = None, overwrite: c.OverwriteOpt = False, timeline: c.TimelineOpt = None,
        as_json: c.JsonOpt = False, quiet: c.QuietOpt = False, label: c.LabelOpt = None,
    ) -> None:
        """Lay TOP over BASE from --at seconds; the output grows if TOP runs past the end of BASE.

        [bold]Examples[/bold]

          avmix overlay music.wav voice.wav --at 3.5 --duck 12 -o promo.wav

          avmix overlay field.flac birds.wav --at 0 --loop -o scene.mp3
        """
        inputs = [base, top]
        _prepare(inputs, output, at_least=2, as_json=as_json, bit_depth=bit_depth, timeline=timeline,
                 overwrite=overwrite)
        c.check_seconds("--at", at)
        if duck is not None:
            c.check_number("--duck", abs(duck), 0.0, MAX_DUCK_DB, unit="dB")
            duck = abs(duck)  # "--duck 12" and "--duck -12" both mean: lower BASE by 12 dB
        settings = c.audio_settings(2, gain=gain, normalize=normalize, target=target, limit=limit,
                                    ceiling=ceiling, fade_in=fade_in, fade_out=fade_out,
                                    sample_rate=sample_rate, channels=channels, label=label)
        from avmix.audio import compose

        _run(compose.overlay, (base, top), kwargs={"at": at, "loop": loop, "duck": duck, **settings},
             output=output, bit_depth=bit_depth, overwrite=overwrite, timeline=timeline, as_json=as_json,
             quiet=quiet)
