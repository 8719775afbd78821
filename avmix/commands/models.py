"""``avmix models tiny DIR`` (a tiny random-weight pipeline for CPU smoke tests) and ``avmix models check``."""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from avmix.errors import ModelError, OutputError
from avmix.progress import note


class TinyFamily(str, Enum):
    animatediff = "animatediff"
    animatediff_lightning = "animatediff-lightning"
    wan = "wan"
    sd15 = "sd15"  # an image base for --model ADAPTER+BASE (use with DIR/motion_adapter of a tiny animatediff)
    stable_audio = "stable-audio"  # text-to-audio, for text:PROMPT tracks (--audio-model DIR)
    audioldm2 = "audioldm2"


def register(app: typer.Typer) -> None:
    models = typer.Typer(name="models", help="Diffusion models: tiny test pipelines, checks.", no_args_is_help=True,
                         context_settings={"help_option_names": ["-h", "--help"]})
    app.add_typer(models, name="models")

    @models.command("tiny")
    def tiny_cmd(
        directory: Annotated[Path, typer.Argument(metavar="DIR", help="Directory to write the pipeline into.")],
        family: Annotated[TinyFamily, typer.Option(help="Pipeline family.")] = TinyFamily.animatediff,
        seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
        overwrite: Annotated[bool, typer.Option("-y", "--overwrite", help="Write into a non-empty directory.")] = False,
        quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No notes on stderr.")] = False,
    ) -> None:
        """Write a tiny random-weight pipeline (noise pictures, real wiring) for CPU smoke renders:
        avmix generate a.wav -o out.mp4 --backend diffusion --model DIR --size 64x64. The text-to-audio
        families (stable-audio, audioldm2) are for text tracks: --audio-model DIR "text:rain@2"."""
        if directory.exists() and not directory.is_dir():
            raise OutputError("exists and is not a directory", path=directory)
        if directory.is_dir() and any(directory.iterdir()) and not overwrite:
            raise OutputError("directory is not empty", path=directory, hint="pass -y/--overwrite to write into it")
        if not directory.parent.is_dir():
            raise OutputError("parent directory does not exist", path=directory.parent)
        try:
            from avmix.video.diffusion import tiny
            from avmix.video.diffusion.loading import quiet_libraries
            from avmix.synth import tiny as tiny_audio
        except ImportError as e:
            raise ModelError(f"the diffusion extra is not installed ({e.name})",
                             hint="pip install 'avmix[diffusion]'") from None
        with quiet_libraries():
            if family.value in tiny_audio.FAMILIES:
                tiny_audio.write(directory, family=family.value, seed=seed)
            else:
                tiny.write(directory, family=family.value, seed=seed)
        note(f"wrote a tiny {family.value} pipeline to {directory}", quiet=quiet)
        print(directory)

    @models.command("check")
    def check_cmd(
        model: Annotated[Optional[str], typer.Argument(
            metavar="[MODEL]", help="Hub id, local dir, or ADAPTER+BASE (default $AVMIX_MODEL).")] = None,
        load: Annotated[bool, typer.Option("--load", help="Also load the weights (on the CPU).")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    ) -> None:
        """Say whether avmix can drive MODEL (family from its config, no weights loaded unless --load)."""
        from avmix.video.diffusion import loading

        try:
            info = loading.identify(model)
        except ModelError:
            info = _audio_model(model)  # a text-to-audio pipeline (for text: tracks), or the video error
        result = {"model": info.spec, "family": info.family, "pipeline": info.class_name,
                  "location": info.location, "adapter": getattr(info, "adapter", None), "revision": info.revision}
        if load:
            if info.family in ("stable-audio", "audioldm2"):
                from avmix.synth import engine, model as audio

                pipe = audio.load(info, "cpu")[0]
                result.update(sample_rate=engine.sample_rate(pipe), channels=engine.channels(pipe),
                              seconds_per_call=round(engine.max_frames(pipe) / engine.sample_rate(pipe), 3))
            else:
                with loading.quiet_libraries():
                    pipe = loading.load(info, device="cpu", dtype=None)
            result["scheduler"] = type(pipe.scheduler).__name__
            result["loaded"] = True
        if as_json:
            print(json.dumps(result))
        else:
            for k, v in result.items():
                if v is not None:
                    print(f"{k}: {v}")


def _audio_model(model: Optional[str]):
    """The text-to-audio pipeline ``model`` names; re-raises the video loader's error when it is not one."""
    import sys

    from avmix.synth import model as audio

    video_error = sys.exc_info()[1]
    if not model:
        raise video_error
    try:  # identify reads model_index.json and checks the family itself
        return audio.identify(model)
    except ModelError:
        raise video_error from None
