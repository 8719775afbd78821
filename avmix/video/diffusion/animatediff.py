"""AnimateDiff driven frame by frame: FreeNoise context windows over the whole clip, a different text
conditioning for every frame, and audio-warped initial noise.

FreeNoise (``enable_free_noise``) runs the motion modules over overlapping windows of ``window`` frames
(stride ``STRIDE``, pyramid weights), so any number of frames is one call. Its prompt-interpolation hook
is handed the per-frame embeddings we computed (the envelope-weighted blend of the track prompts), in
place of its own keyframe lerp. The initial latents come from ``schedule.noise_walk``.
"""
from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np

from avmix.progress import ProgressFn, report
from avmix.video.diffusion.interpolate import to_uint8

NATIVE_FPS = 8.0  # AnimateDiff's motion modules were trained on 8 fps clips
NATIVE_SIDE = 512  # SD 1.5's native resolution (longer side)
MULTIPLE = 8  # the VAE's downscale factor
DEFAULTS = {"animatediff": (25, 7.5), "animatediff-lightning": (4, 1.0)}  # (steps, guidance)
WINDOW = 16  # frames per FreeNoise context window (the motion modules' training length)
STRIDE = 4
DECODE_CHUNK = 8  # frames per VAE decode


def window_count(frames: int, window: int, stride: int = STRIDE) -> int:
    return 1 if frames <= window else math.ceil((frames - window) / stride) + 1


def denoise(pipe, *, texts: list[str], negative: str, weights: np.ndarray, latents: np.ndarray,
            size: tuple[int, int], seed: int, steps: int, guidance: float, window: int | None,
            progress: ProgressFn = None) -> Any:
    """Run the pipeline; returns latents (1, C, N, h, w). ``weights`` (N, len(texts)) blend the prompts."""
    import torch

    n = weights.shape[0]
    device = pipe._execution_device
    dtype = pipe.text_encoder.dtype
    with torch.inference_mode():
        pos, _ = pipe.encode_prompt(texts, device, 1, False)
        w = torch.as_tensor(weights, dtype=torch.float32, device=device)
        frame_embeds = torch.einsum("nk,ksd->nsd", w, pos.float()).to(dtype)

    adapter = getattr(pipe, "motion_adapter", None)
    limit = int(getattr(adapter.config, "motion_max_seq_length", 32)) if adapter is not None else 32
    window = max(2, min(window or WINDOW, limit, n))  # FreeNoise needs frames >= window
    used = {"positive": False}

    def embeds_for(start: int, end: int, a: Any, b: Any) -> Any:
        # The first call interpolates the positive prompt over frames 0..N-1: give it our blend.
        if not used["positive"]:
            used["positive"] = True
            return frame_embeds[start:end + 1].to(a.dtype)
        t = torch.linspace(0, 1, end - start + 1, device=a.device, dtype=a.dtype)[:, None, None]
        return (1 - t) * a + t * b

    pipe.enable_free_noise(context_length=window, context_stride=min(STRIDE, window), weighting_scheme="pyramid",
                           noise_type="random", prompt_interpolation_callback=embeds_for)
    if n > 4 * window:  # bound the spatial layers' batch on long clips
        pipe.enable_free_noise_split_inference(spatial_split_size=256, temporal_split_size=window)
    windows = window_count(n, window)

    def on_step(_pipe, i, _t, kwargs):
        report(progress, "diffusion", (i + 1) * windows, steps * windows)
        return {}

    report(progress, "diffusion", 0, steps * windows)
    x = torch.from_numpy(latents)[None].to(device=device, dtype=dtype)
    out = pipe(prompt={0: texts[-1]}, negative_prompt=negative or "", num_frames=n, height=size[1], width=size[0],
               num_inference_steps=steps, guidance_scale=guidance, latents=x,
               generator=torch.Generator("cpu").manual_seed(seed), output_type="latent",
               callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"])
    if not used["positive"]:
        raise RuntimeError("diffusers did not call the FreeNoise prompt hook; per-frame conditioning not applied")
    return out.frames


def decode(pipe, latents: Any, *, progress: ProgressFn = None) -> Iterator[np.ndarray]:
    """Decode latents (1, C, N, h, w) a few frames at a time -> uint8 (h, w, 3) frames."""
    import torch

    n = latents.shape[2]
    for start in range(0, n, DECODE_CHUNK):
        with torch.inference_mode():
            video = pipe.decode_latents(latents[:, :, start:start + DECODE_CHUNK], DECODE_CHUNK)[0]
        report(progress, "decode", min(start + DECODE_CHUNK, n), n)
        yield from to_uint8(video)
