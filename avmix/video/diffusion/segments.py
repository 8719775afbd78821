"""DiT text-to-video families (Wan 2.1 T2V) driven segment by segment.

A DiT takes one text conditioning per clip, so the video is cut into overlapping segments of
``window`` native frames (4k+1, Wan's VAE packs 4 frames per latent frame); each segment is conditioned
on the prompt blend averaged over its frames, starts from its slice of one global audio-warped noise
walk on the latent frame grid (so neighbours start from related noise), and overlaps the previous one by
``OVERLAP`` frames, crossfaded in pixel space.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from avmix.progress import ProgressFn, report
from avmix.video.diffusion import schedule

NATIVE_FPS = 16.0  # Wan 2.1 was trained on 16 fps clips
NATIVE_SIDE = 832  # Wan 2.1 T2V 1.3B: 832x480
MULTIPLE = 16
DEFAULTS = {"wan": (30, 5.0)}  # (steps, guidance) as in the diffusers Wan docs
WINDOW = 81  # frames per segment (Wan's trained length, 5 s at 16 fps)
TEMPORAL = 4  # native frames per latent frame
LATENT_CHANNELS = 16


def plan(n: int, window: int) -> tuple[int, int, list[int]]:
    """(window, overlap, segment starts) covering native frames 0..n-1; window = 4k+1 >= 9,
    overlap = 4j+1 about a quarter of it, so every start falls on the latent grid."""
    window = max(9, (max(window, 9) - 1) // TEMPORAL * TEMPORAL + 1)
    overlap = max(1, (window - 1) // (4 * TEMPORAL) * TEMPORAL + 1)
    stride = window - overlap
    starts = [0]
    while starts[-1] + window < n:
        starts.append(starts[-1] + stride)
    return window, overlap, starts


def frames(pipe, *, texts: list[str], negative: str, weights: np.ndarray, motion: np.ndarray,
           size: tuple[int, int], seed: int, steps: int, guidance: float, window: int | None,
           progress: ProgressFn = None) -> Iterator[np.ndarray]:
    """Yield the N = len(weights) native frames, uint8 (h, w, 3)."""
    import torch

    n = weights.shape[0]
    window, overlap, starts = plan(n, window or WINDOW)
    device = pipe._execution_device
    dtype = pipe.transformer.dtype
    cfg = guidance > 1.0
    msl = min(512, int(getattr(pipe.tokenizer, "model_max_length", 512) or 512))
    with torch.inference_mode():
        pos, neg = pipe.encode_prompt(texts, negative_prompt=[negative or ""] * len(texts),
                                      do_classifier_free_guidance=cfg, max_sequence_length=msl, device=device)
    # One global noise walk on the latent grid (native frames 0, 4, 8, ...), sliced per segment.
    total = starts[-1] + window
    travel = np.concatenate([motion, np.full(max(total - n, 0), schedule.CALM_STEP)])
    lat_steps = np.add.reduceat(travel, np.arange(0, total, TEMPORAL))
    lat_steps = np.concatenate([[0.0], lat_steps[1:]]) if lat_steps.size else lat_steps
    h, w = size[1] // pipe.vae_scale_factor_spatial, size[0] // pipe.vae_scale_factor_spatial
    walk = schedule.noise_walk(lat_steps, (LATENT_CHANNELS, h, w), seed=seed)
    lat_len = (window - 1) // TEMPORAL + 1
    padded = np.concatenate([weights, np.repeat(weights[-1:], max(total - n, 0), axis=0)])
    report(progress, "diffusion", 0, steps * len(starts))

    emitted = 0
    tail: list[np.ndarray] = []
    for s, start in enumerate(starts):
        mean = torch.as_tensor(padded[start:start + window].mean(axis=0), dtype=torch.float32, device=device)
        prompt_embeds = torch.einsum("k,ksd->sd", mean, pos.float())[None].to(dtype)
        negative_embeds = neg[:1].to(dtype) if cfg else None
        m0 = start // TEMPORAL
        latents = torch.from_numpy(np.ascontiguousarray(walk[:, m0:m0 + lat_len]))[None].to(device, dtype)

        def on_step(_pipe, i, _t, kwargs, s=s):
            report(progress, "diffusion", s * steps + i + 1, steps * len(starts))
            return {}

        out = pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, height=size[1],
                   width=size[0], num_frames=window, num_inference_steps=steps, guidance_scale=guidance,
                   latents=latents, generator=torch.Generator("cpu").manual_seed(seed + s), output_type="np",
                   callback_on_step_end=on_step)
        seg = [np.clip(np.rint(f * 255), 0, 255).astype(np.uint8) for f in np.asarray(out.frames[0])]
        if tail:  # crossfade the overlap with the previous segment's tail
            k = len(tail)
            for i in range(k):
                a = (i + 1) / (k + 1)
                seg[i] = np.rint((1 - a) * tail[i].astype(np.float32) + a * seg[i].astype(np.float32)).astype(np.uint8)
        last = s == len(starts) - 1
        keep = seg if last else seg[:window - overlap]
        tail = [] if last else seg[window - overlap:]
        for f in keep:
            if emitted < n:
                yield f
                emitted += 1
