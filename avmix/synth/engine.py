"""Running a text-to-audio pipeline for one track: windows, seeds, family-specific calls (torch here).

Each window is one pipeline call with its own CPU ``torch.Generator`` (the same numbers on every
device), seeded from the track's seed and the window's index; the windows are joined by
:mod:`avmix.synth.windows` to exactly the requested frame count.
"""
from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from avmix.synth import windows
from avmix.video.diffusion.loading import quiet_libraries

SEAM_SECONDS = 1.0  # crossfade between windows (at most a quarter of a window)
MARGIN = 1  # frames kept below a model's hard limit: its own seconds->samples rounding must not cross it


def derive_seed(seed: int, *path: int | str) -> int:
    """A 63-bit seed from ``seed`` and a path (track index, window index): stable across runs and machines."""
    text = ":".join(str(p) for p in (seed, *path))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class Call:
    """What one track asks of the model."""
    prompt: str
    frames: int
    seed: int
    steps: int
    guidance: float
    negative_prompt: str | None = None


def sample_rate(pipe: Any) -> int:
    if hasattr(pipe, "vocoder"):  # AudioLDM 2: the vocoder's rate
        return int(pipe.vocoder.config.sampling_rate)
    return int(pipe.vae.config.sampling_rate)


def channels(pipe: Any) -> int:
    return 1 if hasattr(pipe, "vocoder") else int(pipe.vae.config.audio_channels)


def max_frames(pipe: Any) -> int:
    """Frames one call may make: Stable Audio's hard limit (transformer length x VAE hop), AudioLDM 2's
    trained length (UNet size x VAE scale x vocoder hop; longer calls run but drift off its training)."""
    rate = sample_rate(pipe)
    if hasattr(pipe, "vocoder"):
        hop = int(np.prod(pipe.vocoder.config.upsample_rates))
        return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor) * hop - MARGIN
    limit_s = pipe.transformer.config.sample_size * pipe.vae.hop_length / rate
    return int(math.floor(limit_s * rate)) - MARGIN


def window_plan(pipe: Any, frames: int) -> list[tuple[int, int]]:
    most = max_frames(pipe)
    seam = min(int(SEAM_SECONDS * sample_rate(pipe)), most // 4)
    return windows.plan(frames, most, seam)


def render(pipe: Any, call: Call, *, plan: list[tuple[int, int]],
           on_step: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The track as float32 (frames, channels) at the model's rate, exactly ``call.frames`` long, made in
    the windows ``plan`` (``window_plan(pipe, call.frames)``)."""
    import torch

    rate = sample_rate(pipe)
    total = len(plan) * call.steps
    parts = []
    for w, (_, length) in enumerate(plan):
        seed = call.seed if w == 0 else derive_seed(call.seed, "window", w)
        generator = torch.Generator("cpu").manual_seed(seed)
        done = w * call.steps

        def step(i: int, *_: Any, done: int = done) -> None:
            if on_step is not None:
                on_step(done + i + 1, total)

        # ask for half a sample more than needed: the pipelines floor seconds * rate
        seconds = (length + 0.5) / rate
        with torch.inference_mode(), quiet_libraries(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchsde's Brownian-interval bounds chatter, transformers renames
            if hasattr(pipe, "vocoder"):
                lm = pipe.language_model.config
                out = pipe(call.prompt, audio_length_in_s=seconds, num_inference_steps=call.steps,
                           guidance_scale=call.guidance, negative_prompt=call.negative_prompt, generator=generator,
                           max_new_tokens=getattr(lm, "max_new_tokens", None) or 8, output_type="np",
                           callback=step, callback_steps=1).audios
                block = np.asarray(out[0], dtype=np.float32)[:, None]
            else:
                out = pipe(call.prompt, audio_start_in_s=0.0, audio_end_in_s=seconds, num_inference_steps=call.steps,
                           guidance_scale=call.guidance, negative_prompt=call.negative_prompt, generator=generator,
                           output_type="np", callback=step, callback_steps=1).audios
                block = np.asarray(out[0], dtype=np.float32).T
        parts.append(windows.fit(np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0), length))
    return windows.join(parts, plan, call.frames)
