"""Every option of avmix, each declared once: its type, default, check and command-line flag.

Options come in groups, bundled by :class:`Options`:

* :class:`ComposeOptions`: how the tracks are composed (mix, concat, overlay, and ``generate``);
* :class:`VideoOptions`: the picture (size, fps, backend, encoder quality);
* :class:`ModelOptions`: the diffusion and tagging models;
* :class:`WorkOptions`: the work directory and the extra outputs of ``generate``;
* :class:`SynthOptions`: how ``text:PROMPT[@SECONDS]`` inputs are synthesised (every composing command).

A field's metadata (:func:`opt`) says how the command line shows it, which commands take it and whether
it names a file. The CLI builds each command's parameters from it (:mod:`avmix.commands.options`),
batch reads jobs-file fields by it, and the manifest records :meth:`Options.flat`. So adding an
option is one field here, plus the code that acts on it.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Sequence

from avmix.errors import UsageError

INPUT, OUTPUT, LEVELS, VIDEO, MODEL, WORK = "Input", "Output", "Levels", "Video", "Model", "Work directory"
TEXT = "Text tracks"
AUDIO_COMMANDS = ("mix", "concat", "overlay")
COMPOSING = (*AUDIO_COMMANDS, "generate")

MAX_GAIN_DB = 60.0  # |gain| beyond this is a typo, not a level
MAX_DUCK_DB = 60.0
MAX_SECONDS = 24 * 3600.0
RATE_RANGE = (8000, 384000)
MAX_CHANNELS = 32
TARGET_RANGE = {"lufs": (-70.0, 0.0), "peak": (-60.0, 0.0)}
CEILING_RANGE = (-24.0, 0.0)
FPS_RANGE = (1, 120)
SIDE_RANGE = (16, 7680)


class Mode(str, Enum):
    mix = "mix"
    concat = "concat"
    overlay = "overlay"


class Duration(str, Enum):
    longest = "longest"
    shortest = "shortest"
    first = "first"


class Curve(str, Enum):
    equal_power = "equal-power"
    linear = "linear"


class Align(str, Enum):
    none = "none"
    auto = "auto"


class Normalize(str, Enum):
    none = "none"
    peak = "peak"
    lufs = "lufs"


class Backend(str, Enum):
    auto = "auto"
    procedural = "procedural"
    composite = "composite"
    diffusion = "diffusion"


class Layout(str, Enum):
    grid = "grid"
    spotlight = "spotlight"
    row = "row"
    column = "column"
    sequence = "sequence"
    pip = "pip"


class PipPosition(str, Enum):
    top_left = "top-left"
    top_right = "top-right"
    bottom_left = "bottom-left"
    bottom_right = "bottom-right"


@dataclass(frozen=True)
class Flag:
    """How one option appears on the command line (read by :mod:`avmix.commands.options`)."""

    decls: tuple[str, ...]
    help: str = ""
    panel: str = INPUT
    commands: tuple[str, ...] = COMPOSING
    metavar: str | None = None
    choices: type[Enum] | None = None  # a closed set of values; the field holds the value string
    path: str | None = None  # "input" or "output": a file name, resolved by batch
    cli_default: Any = None  # the default as the command line shows it, when it differs
    min: float | None = None
    max: float | None = None


def opt(default: Any, *decls: str, **flag: Any) -> Any:
    """A dataclass field with its command-line flag; ``decls`` empty means the library only."""
    meta = {"flag": Flag(decls, **flag)} if decls else {}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def flag_of(f: dataclasses.Field) -> Flag | None:
    return f.metadata.get("flag")


# --------------------------------------------------------------------------------------- checks

def check_number(name: str, value: float | None, lo: float, hi: float, *, unit: str = "") -> None:
    """UsageError (exit 2) unless ``value`` is None or a finite number in [lo, hi]."""
    if value is None:
        return
    u = f" {unit}" if unit else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise UsageError(f"{name} {value:g}{u} is out of range ({lo:g}..{hi:g}{u})")


def check_seconds(name: str, value: float | None, *, allow_zero: bool = True) -> None:
    check_number(name, value, 0.0, MAX_SECONDS, unit="s")
    if value is not None and not allow_zero and value <= 0:
        raise UsageError(f"{name} must be greater than 0 s")


def check_choice(name: str, value: Any, choices: type[Enum]) -> str:
    """The value string of ``value`` (an Enum member or its value); UsageError naming the choices."""
    value = value.value if isinstance(value, Enum) else value
    allowed = [c.value for c in choices]
    if value not in allowed:
        raise UsageError(f"unknown {name} {value!r}", hint=f"use {', '.join(allowed[:-1])} or {allowed[-1]}")
    return value


def parse_size(size: str | Sequence[int]) -> tuple[int, int]:
    """``"1280x720"`` or ``(1280, 720)`` -> (width, height); both even and in 16..7680."""
    if isinstance(size, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", size)
        if not m:
            raise UsageError(f"bad --size {size!r}", hint="use WIDTHxHEIGHT, e.g. 1280x720")
        w, h = int(m.group(1)), int(m.group(2))
    else:
        try:
            w, h = (int(v) for v in size)
        except (TypeError, ValueError):
            raise UsageError(f"bad --size {size!r}", hint="use WIDTHxHEIGHT, e.g. 1280x720") from None
    lo, hi = SIDE_RANGE
    for name, v in (("width", w), ("height", h)):
        if not lo <= v <= hi:
            raise UsageError(f"--size {name} {v} out of range {lo}..{hi}")
        if v % 2:
            raise UsageError(f"--size {name} {v} is odd", hint="H.264 (yuv420p) needs even sizes")
    return w, h


def _plural(n: int) -> str:
    return "s" if n != 1 else ""


# --------------------------------------------------------------------------------------- groups

class _Group:
    """Shared by the option groups: construction from flat keywords and a flat dict for the manifest."""

    def flat(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)


def _plain(value: Any) -> Any:
    """A JSON-friendly copy: tuples become lists, paths strings, enums their values."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


@dataclass(frozen=True)
class ComposeOptions(_Group):
    """How the tracks become one audio file (the compose stage). Gains in dB, times in seconds."""

    mode: str = opt("mix", "--mode", "-m", commands=("generate",), choices=Mode,
                    help="How the tracks are composed.")
    labels: list[str] = opt([], "--label", "-l", metavar="TEXT",
                            help="A label for each input, in order (repeatable; default: the file name).")
    images: list[str] = opt([], "--image", metavar="PATH", commands=("generate",), path="input",
                            help="The picture (PNG or JPEG) of each input, in order, as --gain; '-' for none. "
                                 "A video input without one shows its own picture.")
    gains: list[float] = opt([], "--gain", "-g", metavar="DB", panel=LEVELS,
                             help="Gain in dB for each input, in order (repeat the option: --gain -6 --gain 0). "
                                  "Missing ones are 0.")
    duration: str = opt("longest", "--duration", commands=("mix", "generate"), choices=Duration,
                        help="Output length: the longest input, the shortest, or the first.")
    match_loudness: bool = opt(False, "--match-loudness", commands=("mix", "generate"), panel=LEVELS,
                               help="Bring every track to the same integrated loudness before summing.")
    align: str = opt("none", "--align", commands=("mix", "generate"), choices=Align,
                     help="auto: line each track up with the first by its sound, as avmix align does, before "
                          "mixing (recorded in the timeline); a track with no reliable match stops the job.")
    crossfade: float = opt(0.0, "--crossfade", "-x", metavar="SEC", commands=("concat", "generate"),
                           help="Overlap consecutive tracks by SEC seconds with a crossfade.")
    curve: str = opt("equal-power", "--curve", commands=("concat", "generate"), choices=Curve,
                     help="Crossfade shape: equal-power (no level dip on uncorrelated material) or linear.")
    gap: float = opt(0.0, "--gap", metavar="SEC", commands=("concat", "generate"),
                     help="Seconds of silence between tracks.")
    trim_silence: bool = opt(False, "--trim-silence", commands=("concat", "generate"),
                             help="Cut leading and trailing silence of every track first.")
    at: float = opt(0.0, "--at", metavar="SEC", commands=("overlay", "generate"),
                    help="Where TOP starts in BASE, in seconds (sample-accurate).")
    loop: bool = opt(False, "--loop", commands=("overlay", "generate"),
                     help="Repeat TOP to the end of BASE (its first pass always plays whole).")
    duck: float | None = opt(None, "--duck", metavar="DB", commands=("overlay", "generate"), panel=LEVELS,
                             help="Lower BASE by DB dB while TOP sounds (sidechain ducking, as a voice over a "
                                  "music bed).")
    normalize: str = opt("none", "--normalize", panel=LEVELS, choices=Normalize,
                         help="Normalise the output: none, peak (to --target dBFS, default -1) or lufs (BS.1770 "
                              "integrated loudness to --target LUFS, default -14).")
    target: float | None = opt(None, "--target", metavar="LEVEL", panel=LEVELS,
                               help="Normalisation target: LUFS for --normalize lufs (default -14), dBFS for peak "
                                    "(default -1).")
    limit: bool = opt(True, "--limit/--no-limit", panel=LEVELS,
                      help="True-peak limiter at --ceiling; --no-limit writes the exact sum (integer formats clip "
                           "at 0 dBFS).")
    ceiling: float = opt(-1.0, "--ceiling", metavar="DBTP", panel=LEVELS, help="Limiter ceiling in dB true peak.")
    fade_in: float = opt(0.0, "--fade-in", metavar="SEC", panel=LEVELS, help="Fade the output in over SEC seconds.")
    fade_out: float = opt(0.0, "--fade-out", metavar="SEC", panel=LEVELS,
                          help="Fade the output out over SEC seconds.")
    reference: str | None = opt(None, "--reference", metavar="REF", panel=LEVELS, path="input",
                                help="Match a finished mix: its loudness, tone (mid and side), width per band and "
                                     "dynamics, by one static correction before the limiter. Replaces "
                                     "--normalize/--target.")
    reference_strength: float = opt(1.0, "--reference-strength", metavar="0..1", panel=LEVELS, min=0.0, max=1.0,
                                    help="How far to go towards the reference: 0 leaves the mix, 1 matches it.")
    reference_balance: bool = opt(False, "--reference-balance", commands=("mix", "generate"), panel=LEVELS,
                                  help="With --reference, also set each track's gain (within +-12 dB) so the "
                                       "mix's band energies come closest to the reference's.")
    sample_rate: int | None = opt(None, "--sample-rate", "-r", metavar="HZ", panel=OUTPUT,
                                  help="Output sample rate (default: the highest input rate; others are resampled "
                                       "with soxr).")
    channels: int | None = opt(None, "--channels", "-c", metavar="N", panel=OUTPUT,
                               help="Output channels (default: the most of any input; mono is duplicated, "
                                    "anything->mono averages, surround->stereo folds down as BS.775).")

    def checked(self, n_inputs: int) -> "ComposeOptions":
        """This group validated for ``n_inputs`` tracks (UsageError, exit 2, before any work), with
        choices as plain strings, numbers as floats and ``duck`` as a positive dB value."""
        n_inputs = max(n_inputs, 1)
        mode = check_choice("--mode", self.mode, Mode)
        norm = check_choice("--normalize", self.normalize, Normalize)
        gains = [float(g) for g in (self.gains or [])]
        if len(gains) > n_inputs:
            raise UsageError(f"{len(gains)} --gain values for {n_inputs} input{_plural(n_inputs)}",
                             hint="give one --gain per input, in order")
        for g in gains:
            check_number("--gain", g, -MAX_GAIN_DB, MAX_GAIN_DB, unit="dB")
        gains += [0.0] * (n_inputs - len(gains))
        images = [os.fspath(x) for x in (self.images or [])]
        if len(images) > n_inputs:
            raise UsageError(f"{len(images)} --image values for {n_inputs} input{_plural(n_inputs)}",
                             hint="give one --image per input, in order ('-' for none)")
        labels = [str(x) for x in (self.labels or [])]
        if len(labels) > n_inputs:
            raise UsageError(f"{len(labels)} --label values for {n_inputs} input{_plural(n_inputs)}")
        if any(not x.strip() for x in labels):
            raise UsageError("--label must not be empty")
        if self.reference is not None and (norm != "none" or self.target is not None):
            raise UsageError("--reference sets the output's loudness itself; it cannot be combined with "
                             "--normalize or --target", hint="drop --normalize/--target, or drop --reference")
        if self.target is not None:
            if norm == "none":
                raise UsageError("--target needs --normalize peak or --normalize lufs")
            lo, hi = TARGET_RANGE[norm]
            check_number("--target", self.target, lo, hi, unit="LUFS" if norm == "lufs" else "dBFS")
        check_number("--ceiling", self.ceiling, *CEILING_RANGE, unit="dBTP")
        check_number("--reference-strength", self.reference_strength, 0.0, 1.0)
        if self.reference_balance and self.reference is None:
            raise UsageError("--reference-balance needs --reference")
        check_seconds("--fade-in", self.fade_in)
        check_seconds("--fade-out", self.fade_out)
        if self.sample_rate is not None:
            check_number("--sample-rate", self.sample_rate, *RATE_RANGE, unit="Hz")
        if self.channels is not None:
            check_number("--channels", self.channels, 1, MAX_CHANNELS)
        duration = check_choice("--duration", self.duration, Duration)
        align = check_choice("--align", self.align, Align)
        if align != "none" and mode != "mix":
            raise UsageError(f"--align {align} lines up tracks that are mixed, not with --mode {mode}",
                             hint="use --mode mix")
        curve = check_choice("--curve", self.curve, Curve)
        for name, value in (("--crossfade", self.crossfade), ("--gap", self.gap), ("--at", self.at)):
            check_seconds(name, value)
        if self.crossfade > 0 and self.gap > 0:
            raise UsageError("--crossfade and --gap cannot be combined")
        duck = self.duck
        if duck is not None:
            check_number("--duck", abs(duck), 0.0, MAX_DUCK_DB, unit="dB")
            duck = abs(float(duck))  # "--duck 12" and "--duck -12" both mean: lower BASE by 12 dB
        checked = self.replace(mode=mode, normalize=norm, duration=duration, align=align, curve=curve, gains=gains,
                               labels=labels, images=images, duck=duck, limit=bool(self.limit),
                               ceiling=float(self.ceiling),
                               fade_in=float(self.fade_in), fade_out=float(self.fade_out),
                               reference=None if self.reference is None else os.fspath(self.reference),
                               reference_strength=float(self.reference_strength),
                               reference_balance=bool(self.reference_balance))
        checked.settings()  # a peak target above the limiter's ceiling is refused there
        return checked

    def settings(self, labels: list[str] | None = None):
        """The :class:`avmix.audio.plan.Settings` of this group (``labels`` replaces the group's)."""
        from avmix.audio.plan import Settings

        return Settings(sample_rate=self.sample_rate, channels=self.channels, gains=list(self.gains),
                        normalize=self.normalize, target=self.target, limit=self.limit, ceiling=self.ceiling,
                        fade_in=self.fade_in, fade_out=self.fade_out,
                        labels=list(self.labels if labels is None else labels), reference=self.reference,
                        reference_strength=self.reference_strength, reference_balance=self.reference_balance)

    def mode_options(self, mode: str | None = None) -> dict[str, Any]:
        """The keywords of :func:`avmix.audio.plan.plan` for ``mode`` (default: this group's)."""
        mode = mode or self.mode
        if mode == "mix":
            return {"duration": self.duration, "match_loudness": self.match_loudness,
                    "align": self.align == "auto"}
        if mode == "concat":
            return {"crossfade": self.crossfade, "curve": self.curve, "gap": self.gap,
                    "trim_silence": self.trim_silence}
        return {"at": self.at, "loop": self.loop, "duck_db": self.duck}


@dataclass(frozen=True)
class VideoOptions(_Group):
    """The picture of ``generate``."""

    fps: float = opt(30.0, "--fps", panel=VIDEO, commands=("generate",), help="Frames per second (1..120).")
    size: tuple[int, int] = opt((1280, 720), "--size", "-s", metavar="WxH", panel=VIDEO, commands=("generate",),
                                cli_default="1280x720", help="Frame size, both even, at least 16.")
    seed: int = opt(0, "--seed", panel=VIDEO, commands=COMPOSING, min=0,
                    help="Every random choice follows from it (each text track's seed too).")
    backend: str = opt("auto", "--backend", panel=VIDEO, commands=("generate",), choices=Backend,
                       help="auto: composite when a track has a picture (a video input or --image), else "
                            "diffusion when a model is configured and usable, else procedural.")
    captions: bool = opt(False, "--captions", panel=VIDEO, commands=("generate",),
                         help="Draw each track's label in the video.")
    layout: str | None = opt(None, "--layout", panel=VIDEO, commands=("generate",), choices=Layout,
                             help="composite: where the pictures go. grid, spotlight, row, column (mix's default: grid); "
                                  "sequence (concat's default); pip (overlay's default).")
    pip_position: str = opt("bottom-right", "--pip-position", panel=VIDEO, commands=("generate",),
                            choices=PipPosition, help="composite, overlay: the corner of TOP's picture.")
    pip_size: float = opt(0.3, "--pip-size", metavar="FRACTION", panel=VIDEO, commands=("generate",),
                          min=0.05, max=1.0, help="composite, overlay: TOP's picture width, of the frame's.")
    crf: int = opt(20, "--crf", panel=VIDEO, commands=("generate",), min=0, max=51,
                   help="Video quality (x264 CRF; lower is better; the procedural renderer uses QP crf - 4).")
    preset: str = opt("veryfast")  # x264 preset of the mux when it has to encode; library only

    def checked(self) -> "VideoOptions":
        backend = check_choice("--backend", self.backend, Backend)
        if isinstance(self.fps, bool) or not isinstance(self.fps, numbers.Real) \
                or not FPS_RANGE[0] <= float(self.fps) <= FPS_RANGE[1]:
            raise UsageError(f"--fps {self.fps} out of range {FPS_RANGE[0]}..{FPS_RANGE[1]}")
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise UsageError(f"--seed {seed!r} must be a whole number >= 0")
        from avmix import mux

        mux.check_options(crf=self.crf, preset=self.preset)
        layout = None if self.layout is None else check_choice("--layout", self.layout, Layout)
        pip_position = check_choice("--pip-position", self.pip_position, PipPosition)
        check_number("--pip-size", self.pip_size, 0.05, 1.0)
        return self.replace(backend=backend, size=parse_size(self.size), fps=self.fps, seed=int(seed),
                            layout=layout, pip_position=pip_position, pip_size=float(self.pip_size))


@dataclass(frozen=True)
class ModelOptions(_Group):
    """The models of ``generate``: the diffusion video model and the audio tagger."""

    model: str | None = opt(None, "--model", metavar="ID_OR_DIR", panel=MODEL, commands=("generate",),
                            help="Diffusion model (default: $AVMIX_MODEL).")
    device: str = opt("auto", "--device", panel=MODEL, commands=COMPOSING,
                      help="Where the models run (the video model, text tracks): auto, cuda, cpu or mps.")
    offload: bool = opt(False, "--offload", panel=MODEL, commands=("generate",),
                        help="Offload model parts to the CPU (less GPU memory).")
    prompt: str = opt("", "--prompt", panel=MODEL, commands=("generate",), help="Extra prompt text.")
    negative_prompt: str = opt("", "--negative-prompt", panel=MODEL, commands=("generate",),
                               help="What the video model should avoid drawing.")
    steps: int | None = opt(None, "--steps", panel=MODEL, commands=("generate",), min=1, max=1000,
                            help="Denoising steps of the video model (default: its family's).")
    guidance: float | None = opt(None, "--guidance", panel=MODEL, commands=("generate",), min=0.0, max=100.0,
                                 help="Guidance scale of the video model (default: its family's).")
    tagger: str | None = opt(None, "--tagger", metavar="MODEL", panel=MODEL, commands=("generate",),
                             help="Audio tagging model that labels inputs without --label.")

    def checked(self) -> "ModelOptions":
        model = self.model or os.environ.get("AVMIX_MODEL") or None
        return self.replace(model=model)


@dataclass(frozen=True)
class WorkOptions(_Group):
    """The work directory of ``generate`` and its extra outputs."""

    workdir: str | None = opt(None, "--workdir", "-w", metavar="DIR", panel=WORK, commands=("generate",),
                              path="output",
                              help="Keep the stage files here; a rerun reuses the stages whose inputs did not change.")
    keep: bool = opt(False, "--keep", panel=WORK, commands=("generate",),
                     help="Keep the default work directory (.OUT.avmix-work).")
    no_cache: bool = opt(False, "--no-cache", panel=WORK, commands=("generate",), help="Redo every stage.")
    preview: str | None = opt(None, "--preview", metavar="PNG", panel=OUTPUT, commands=("generate",),
                              path="output",
                              help="Also write a contact sheet: thumbnails over a timeline of the tracks.")
    stems: str | None = opt(None, "--stems", metavar="DIR", panel=OUTPUT, commands=("generate",), path="output",
                            help="Also write each source as it sits in the mix (with --no-limit they sum to it).")

    def checked(self) -> "WorkOptions":
        return self.replace(**{n: None if getattr(self, n) is None else os.fspath(getattr(self, n))
                               for n in ("workdir", "preview", "stems")})


@dataclass(frozen=True)
class SynthOptions(_Group):
    """How ``text:PROMPT[@SECONDS]`` inputs are synthesised (:mod:`avmix.synth`); --device and --seed are
    shared with the other groups."""

    audio_model: str | None = opt(None, "--audio-model", metavar="ID_OR_DIR", panel=TEXT,
                                  help="Text-to-audio model for text: inputs (Stable Audio Open or AudioLDM 2; "
                                       "default: $AVMIX_AUDIO_MODEL).")
    audio_steps: int | None = opt(None, "--audio-steps", metavar="N", panel=TEXT, min=1, max=10000,
                                  help="Denoising steps of a text track (default: the model's, 100 or 200).")
    audio_guidance: float | None = opt(None, "--audio-guidance", metavar="SCALE", panel=TEXT, min=0.0, max=100.0,
                                       help="Guidance scale of a text track (default: the model's, 7 or 3.5).")
    audio_negative_prompt: str = opt("", "--audio-negative-prompt", metavar="TEXT", panel=TEXT,
                                     help="What text tracks should not sound like (--negative-prompt is the "
                                          "video model's).")
    text_duration: float = opt(10.0, "--text-duration", metavar="SEC", panel=TEXT,
                               help="Length of a text: input without @SECONDS.")

    def checked(self) -> "SynthOptions":
        check_seconds("--text-duration", self.text_duration, allow_zero=False)
        check_number("--audio-guidance", self.audio_guidance, 0.0, 100.0)
        steps = self.audio_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, numbers.Integral)
                                  or not 1 <= steps <= 10000):
            raise UsageError(f"--audio-steps {steps!r} must be a whole number from 1 to 10000")
        model = self.audio_model or os.environ.get("AVMIX_AUDIO_MODEL") or None
        return self.replace(audio_model=model, text_duration=float(self.text_duration))

    def settings(self, *, seed: int = 0, device: str = "auto"):
        """The :class:`avmix.synth.Settings` of this group with the run's seed and device."""
        from avmix import synth

        return synth.Settings(model=self.audio_model, device=device, seed=seed, steps=self.audio_steps,
                              guidance=self.audio_guidance, negative_prompt=self.audio_negative_prompt or None,
                              duration=self.text_duration)


GROUPS = {"compose": ComposeOptions, "video": VideoOptions, "model": ModelOptions, "work": WorkOptions,
          "synth": SynthOptions}


@dataclass(frozen=True)
class Options:
    """All options of a ``generate`` run, one group each; build it from flat keywords with :meth:`of`."""

    compose: ComposeOptions = field(default_factory=ComposeOptions)
    video: VideoOptions = field(default_factory=VideoOptions)
    model: ModelOptions = field(default_factory=ModelOptions)
    work: WorkOptions = field(default_factory=WorkOptions)
    synth: SynthOptions = field(default_factory=SynthOptions)

    @classmethod
    def by_name(cls) -> dict[str, tuple[str, dataclasses.Field]]:
        """Every option by its flat name: (group name, field)."""
        return {f.name: (g, f) for g, group in GROUPS.items() for f in fields(group)}

    @classmethod
    def of(cls, base: "Options | None" = None, **flat: Any) -> "Options":
        """``base`` (default: all defaults) with the options in ``flat`` (by field name) changed.
        An unknown name is a TypeError, as for any function."""
        base = base or cls()
        known = cls.by_name()
        unknown = sorted(set(flat) - set(known))
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(unknown)}")
        changes: dict[str, dict[str, Any]] = {}
        for name, value in flat.items():
            changes.setdefault(known[name][0], {})[name] = value
        return dataclasses.replace(base, **{g: getattr(base, g).replace(**c) for g, c in changes.items()})

    def flat(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for g in GROUPS:
            out.update(getattr(self, g).flat())
        return out
