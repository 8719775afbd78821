"""Tracks from text: ``text:PROMPT[@SECONDS]`` inputs synthesised by a diffusers text-to-audio model.

A stage before compose: each text input becomes a cached WAV (see :mod:`avmix.synth.cache`) that is
then composed, analysed, drawn and muxed like any recorded file; its ``origin`` record says how it was
made. Families: Stable Audio Open (``StableAudioPipeline``, stereo 44.1 kHz, up to ~47 s a call) and
AudioLDM 2 (``AudioLDM2Pipeline``, mono 16 kHz). Longer tracks are made in crossfaded windows.

    from avmix import synth
    tracks = synth.synthesize(["text:heavy rain@8", "dog.wav"], synth.Settings(model="DIR", seed=1))
    tracks[0].path   # ~/.cache/avmix/tracks/<key>.wav; the file input (index 1) is not in the dict
"""
from __future__ import annotations

import math
import numbers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from avmix.errors import UsageError
from avmix.synth.spec import PREFIX, TextSpec, check_seconds, is_text, parse

DEFAULT_SECONDS = 10.0


@dataclass(frozen=True)
class Settings:
    """Options of the synth stage (the CLI's --audio-model, --device, --seed, --audio-steps,
    --audio-guidance, --audio-negative-prompt, --text-duration)."""
    model: str | None = None  # dir or hub id; None: $AVMIX_AUDIO_MODEL
    device: str = "auto"
    seed: int = 0  # the run's seed; each track's is derived from it and the track's index
    steps: int | None = None  # None: the family's default (Stable Audio 100, AudioLDM 2 200)
    guidance: float | None = None  # None: the family's default (7.0, 3.5)
    negative_prompt: str | None = None
    duration: float = DEFAULT_SECONDS  # length of a text track without @SECONDS
    cache_dir: str | None = None  # None: $AVMIX_CACHE, $XDG_CACHE_HOME/avmix or ~/.cache/avmix

    def check(self) -> "Settings":
        """UsageError naming the option for a bad value."""
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise UsageError(f"--seed {self.seed!r} must be a whole number >= 0")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, numbers.Integral)
                                       or not 1 <= self.steps <= 10000):
            raise UsageError(f"--audio-steps {self.steps!r} must be a whole number from 1 to 10000")
        if self.guidance is not None and (not isinstance(self.guidance, numbers.Real) or isinstance(self.guidance, bool)
                                          or not math.isfinite(self.guidance) or not 0 <= self.guidance <= 100):
            raise UsageError(f"--audio-guidance {self.guidance!r} must be a number from 0 to 100")
        check_seconds(self.duration, "--text-duration")
        return self


@dataclass
class Track:
    """One synthesised text input: where its audio is and how it was made."""
    index: int  # position among the job's inputs
    spec: TextSpec
    path: Path
    cached: bool  # True when a previous run had made it
    origin: dict[str, Any] = field(default_factory=dict)


def text_inputs(inputs: Sequence[str | os.PathLike]) -> dict[int, TextSpec]:
    """The text inputs of a job by index (parsed; UsageError for a bad one). ``./text:x`` is a file."""
    return {i: parse(v) for i, v in enumerate(inputs) if is_text(v)}


def synthesize(inputs: Sequence[str | os.PathLike], settings: Settings = Settings(), *,
               on_step: Callable[[int, int, int], None] | None = None) -> dict[int, Track]:
    """Make (or find in the cache) every ``text:`` input of ``inputs``; returns {input index: Track}.

    Nothing is loaded when there is no text input, and the model's weights only when a track is not cached.
    ``on_step(index, step, steps)`` reports denoising progress.
    Raises UsageError (bad text input or option) or ModelError (no usable model) before any work.
    """
    texts = text_inputs(inputs)
    if not texts:
        return {}
    settings.check()
    from avmix.synth import cache, engine, model
    from avmix.video.diffusion import loading

    audio_model = model.identify(settings.model)
    # resolved once, without loading the model: the dtype is part of the cache key
    device, torch_dtype = loading.resolve_device(settings.device)
    dtype = model.dtype_name(torch_dtype)
    steps_default, guidance_default = model.DEFAULTS[audio_model.family]
    steps = settings.steps or steps_default
    guidance = float(settings.guidance if settings.guidance is not None else guidance_default)
    negative = settings.negative_prompt or None
    out: dict[int, Track] = {}
    pipe = None
    for index, spec in texts.items():
        seconds = spec.with_default(settings.duration)
        seed = engine.derive_seed(settings.seed, "track", index)
        recipe = dict(prompt=spec.prompt, seconds=seconds, model=audio_model.spec, pipeline=audio_model.class_name,
                      family=audio_model.family, revision=audio_model.revision, weights=audio_model.fingerprint,
                      seed=seed, steps=steps, guidance=guidance, negative_prompt=negative, dtype=dtype,
                      seam_seconds=engine.SEAM_SECONDS)
        key = cache.key(recipe)
        wav, _ = cache.paths(key, settings.cache_dir)
        record = cache.lookup(key, settings.cache_dir)
        cached = record is not None
        if record is None:
            if pipe is None:
                pipe = model.load(audio_model, device, torch_dtype)[0]
            rate = engine.sample_rate(pipe)
            frames = round(seconds * rate)
            plan = engine.window_plan(pipe, frames)
            started = time.perf_counter()
            progress = None if on_step is None else (lambda i, n, index=index: on_step(index, i, n))
            audio = engine.render(pipe, engine.Call(spec.prompt, frames, seed, steps, guidance, negative), plan=plan,
                                  on_step=progress)
            record = dict(kind="text", key=key, **recipe, run_seed=settings.seed, index=index, frames=frames,
                          sample_rate=rate, channels=audio.shape[1], windows=len(plan),
                          device=device, seconds_taken=round(time.perf_counter() - started, 3))
            cache.store(key, audio, rate, record, settings.cache_dir)
        origin = {**record, "path": str(wav), "index": index, "run_seed": settings.seed}
        out[index] = Track(index, spec, wav, cached, origin)
    return out


def check(inputs: Sequence[str | os.PathLike], settings: Settings) -> dict[int, TextSpec]:
    """The text inputs, with the settings and the model checked (config only, no weights): what a command
    calls before any work, so that a text track without a usable model writes nothing."""
    texts = text_inputs(inputs)
    if texts:
        from avmix.synth import model

        settings.check()
        model.identify(settings.model)
    return texts


def progress_to(progress: Callable[[str, float, float], None] | None, texts: dict[int, TextSpec]
                ) -> Callable[[int, int, int], None]:
    """An ``on_step`` reporting the whole synth stage as one bar ("synth") to an avmix ProgressFn."""
    from avmix.progress import report

    order = {i: n for n, i in enumerate(texts)}

    def on_step(index: int, step: int, steps: int) -> None:
        report(progress, "synth", order[index] + step / steps, len(texts))

    return on_step


def labels_with_prompts(labels: Sequence[str], texts: dict[int, TextSpec], count: int) -> list[str]:
    """``labels`` (one per input, in order, possibly fewer) with each text input's prompt (``texts`` by
    index, as :func:`check` gives them) where no label was given; "" leaves a file input to its default label."""
    out = list(labels) + [""] * (count - len(labels))
    for i, spec in texts.items():
        if not out[i]:
            out[i] = spec.prompt
    return out


def note_track(track: Track, *, quiet: bool = False) -> None:
    """One line on stderr per text track: synthesised or found in the cache, and where."""
    from avmix.progress import note

    o = track.origin
    how = "cached" if track.cached else f"synthesised in {o.get('seconds_taken', 0):.1f} s"
    note(f"text track {track.index + 1} ({track.spec.prompt!r}, {o['seconds']:g} s): {how}: {track.path}",
         quiet=quiet)


def resolve(inputs: Sequence[str | os.PathLike], settings: Settings = Settings(), **kw: Any
            ) -> tuple[list[str], dict[int, Track]]:
    """``inputs`` with each text input replaced by its synthesised file, and the tracks by index."""
    tracks = synthesize(inputs, settings, **kw)
    return [str(tracks[i].path) if i in tracks else os.fspath(v) for i, v in enumerate(inputs)], tracks


__all__ = ["PREFIX", "Settings", "TextSpec", "Track", "check", "is_text", "note_track", "labels_with_prompts", "parse",
           "progress_to", "resolve", "synthesize", "text_inputs", "DEFAULT_SECONDS"]
