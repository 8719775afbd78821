"""``avmix mix``, ``avmix concat``, ``avmix overlay``: the compose stage on the command line.

Parsing only: the options and their checks are :class:`avmix.options.ComposeOptions`; the work is
:mod:`avmix.audio.compose`.
"""
from __future__ import annotations

import dataclasses
from typing import List

import typer
from typing_extensions import Annotated

from avmix.commands import common as c
from avmix.commands.options import command
from avmix.errors import UsageError
from avmix.options import Options
from avmix.progress import Bar


def _prepare(inputs: list[str], output: str, *, at_least: int, as_json: bool, bit_depth: int | None,
             timeline: str | None = None, overwrite: bool = False, reference: str | None = None) -> None:
    from avmix import paths, synth

    c.check_inputs(inputs, at_least=at_least)
    c.check_output_format(output, as_json=as_json)
    c.check_bit_depth(bit_depth)
    if timeline == "-":
        raise UsageError("--timeline must be a file, not standard output", path=timeline)
    paths.check_audio_outputs([p for p in inputs if not synth.is_text(p)], output, timeline=timeline,
                              reference=reference)
    if timeline is not None:  # an explicit --timeline is an output like OUT: never clobber a file without -y
        paths.check_output(timeline, overwrite=overwrite)


def _run(inputs: list[str], output: str, opts: Options, *, at_least: int, bit_depth, overwrite, timeline,
         as_json, quiet) -> None:
    _prepare(inputs, output, at_least=at_least, as_json=as_json, bit_depth=bit_depth, timeline=timeline,
             overwrite=overwrite, reference=opts.compose.reference)
    co = opts.compose.checked(len(inputs))
    inputs, labels, origins = _synthesize(inputs, output, opts, co.labels, overwrite=overwrite, quiet=quiet)
    co = co.replace(labels=labels)
    from avmix.audio import compose

    s = co.settings()
    settings = {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}  # every Settings field, as keywords
    mode = co.mode_options()
    if co.mode == "overlay":  # compose.overlay names it duck
        mode["duck"] = mode.pop("duck_db")
    fn = {"mix": compose.mix, "concat": compose.concat, "overlay": compose.overlay}[co.mode]
    args = (inputs[0], inputs[1]) if co.mode == "overlay" else (inputs,)
    with Bar(quiet=quiet) as bar:
        # --json reports the output's loudness, which costs a K-weighting pass: only then is it measured
        tl = fn(*args, output, bit_depth=bit_depth, overwrite=overwrite, timeline_path=timeline,
                progress=bar, loudness=True if as_json else None, **mode, **settings,
                **({"origins": origins} if origins else {}))
    c.print_result(tl, as_json=as_json, quiet=quiet or output == "-")


def _synthesize(inputs: list[str], output: str, opts: Options, labels: list[str], *, overwrite: bool,
                quiet: bool) -> tuple[list[str], list[str], dict[int, dict]]:
    """The synth stage: each ``text:`` input made (or taken from the cache) and replaced by its file;
    the labels gain the prompts; the origins go into the timeline. Nothing runs when there is no text input.
    The files and the output are checked first, so a doomed run synthesises nothing."""
    from avmix import paths, synth

    settings = opts.synth.checked().settings(seed=opts.video.seed, device=opts.model.device)
    texts = synth.check(inputs, settings)
    if not texts:
        return inputs, labels, {}
    files = [p for i, p in enumerate(inputs) if i not in texts]
    for p in files:
        if p != paths.STDIO:
            paths.check_input(p)
    if output != paths.STDIO:
        paths.check_output(output, files, overwrite=overwrite)
    with Bar(quiet=quiet) as bar:
        resolved, tracks = synth.resolve(inputs, settings, on_step=synth.progress_to(bar, texts))
    for t in tracks.values():
        synth.note_track(t, quiet=quiet)
    return resolved, synth.labels_with_prompts(labels, texts, len(inputs)), {i: t.origin for i, t in tracks.items()}


def register(app: typer.Typer) -> None:
    @command(app, "mix", mode="mix")
    def mix(
        inputs: Annotated[List[str], typer.Argument(metavar="INPUT...", show_default=False,
                                                    help="Audio files (any format ffmpeg reads; - = stdin), or text:PROMPT[@SECONDS] to synthesise.")],
        output: c.OutputOpt, bit_depth: c.BitDepthOpt = None, overwrite: c.OverwriteOpt = False,
        timeline: c.TimelineOpt = None, as_json: c.JsonOpt = False, quiet: c.QuietOpt = False, *, opts: Options,
    ) -> None:
        """Mix tracks that start together (summed in float, one true-peak limiter at the end).

        A "text:PROMPT[@SECONDS]" input is synthesised by --audio-model (./text:... is a file).

        [bold]Examples[/bold]

          avmix mix dog.wav rain.flac -o scene.wav

          avmix mix voice.mp3 bed.wav --gain 0 --gain -12 --normalize lufs --target -16 -o out.m4a

          avmix mix a.wav b.wav --duration shortest --no-limit -o sum.wav

          cat a.wav | avmix mix - b.wav -o - | avmix concat - c.wav -o out.flac

          avmix mix "text:heavy rain@8" dog.wav --audio-model stabilityai/stable-audio-open-1.0 -o scene.wav
        """
        _run(inputs, output, opts, at_least=1, bit_depth=bit_depth, overwrite=overwrite, timeline=timeline,
             as_json=as_json, quiet=quiet)

    @command(app, "concat", mode="concat")
    def concat(
        inputs: Annotated[List[str], typer.Argument(metavar="INPUT...", show_default=False,
                                                    help="Audio files in playing order (- = stdin) or text:PROMPT[@SECONDS].")],
        output: c.OutputOpt, bit_depth: c.BitDepthOpt = None, overwrite: c.OverwriteOpt = False,
        timeline: c.TimelineOpt = None, as_json: c.JsonOpt = False, quiet: c.QuietOpt = False, *, opts: Options,
    ) -> None:
        """Join tracks back to back, with optional crossfades or gaps.

        The output length is the sum of the inputs minus the crossfades plus the gaps, to the sample.

        [bold]Examples[/bold]

          avmix concat intro.wav body.mp3 outro.flac -o show.wav

          avmix concat a.wav b.wav --crossfade 2 --curve linear -o ab.flac

          avmix concat take1.wav take2.wav --gap 0.5 --trim-silence -o takes.wav
        """
        _run(inputs, output, opts, at_least=1, bit_depth=bit_depth, overwrite=overwrite, timeline=timeline,
             as_json=as_json, quiet=quiet)

    @command(app, "overlay", mode="overlay")
    def overlay(
        base: Annotated[str, typer.Argument(metavar="BASE", show_default=False,
                                            help="The bed track (- = stdin, or text:PROMPT[@SECONDS]).")],
        top: Annotated[str, typer.Argument(metavar="TOP", show_default=False,
                                           help="The track laid over it (- = stdin, or text:PROMPT[@SECONDS]).")],
        output: c.OutputOpt, bit_depth: c.BitDepthOpt = None, overwrite: c.OverwriteOpt = False,
        timeline: c.TimelineOpt = None, as_json: c.JsonOpt = False, quiet: c.QuietOpt = False, *, opts: Options,
    ) -> None:
        """Lay TOP over BASE from --at seconds; the output grows if TOP runs past the end of BASE.

        [bold]Examples[/bold]

          avmix overlay music.wav voice.wav --at 3.5 --duck 12 -o promo.wav

          avmix overlay field.flac birds.wav --at 0 --loop -o scene.mp3
        """
        _run([base, top], output, opts, at_least=2, bit_depth=bit_depth, overwrite=overwrite, timeline=timeline,
             as_json=as_json, quiet=quiet)
