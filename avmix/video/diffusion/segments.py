"""DiT text-to-video families (Wan 2.1 T2V) driven segment by segment.

A DiT takes one text conditioning per clip, so the video is cut into overlapping segments of
``window`` native frames (4k+1, Wan's VAE packs 4 frames per latent frame); each segment is conditioned
on the prompt blend averaged over its frames, starts from its slice of one global audio-warped noise
walk (so neighbours start from related noise), and overlaps the previous one by about a quarter
window, crossfaded in pixel space. Scene changes of the timeline (concat boundaries, an overlay's entry)
become hard cuts between segments, so they land on their frame.

Latent frame i of a segment starting at native frame s decodes to native frames s+4i-3..s+4i (latent 0
to frame s alone) and starts from the walk's position at its last native frame. A jump in the walk
therefore shows from the first native frame of a latent group on, never inside one; onsets are put on
those frames (``change_frames``) and the retiming cuts there.
"""
from __future__ import annotations

from dataclasses import dataclass
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


MIN_SEGMENT = 2 * TEMPORAL  # a cut closer than this to a segment's start waits for the next segment


@dataclass
class Segment:
    start: int  # first native frame
    fade: int  # frames crossfaded with the previous segment (0 = hard cut)
    end: int = 0  # first native frame of the next segment (frames start..end-1 are this segment's own)


def plan(n: int, window: int, cuts: list[int] | tuple[int, ...] = ()) -> tuple[int, int, list[Segment]]:
    """(window, overlap, segments) covering native frames 0..n-1. window = 4k+1 >= 9; overlap = 4j+1,
    about a quarter of it, crossfaded. A cut (a native frame where the scene changes: a concat boundary,
    an overlay entry) inside a segment ends it there and the next segment starts at the cut, hard."""
    window = max(9, (max(window, 9) - 1) // TEMPORAL * TEMPORAL + 1)
    overlap = max(1, (window - 1) // (4 * TEMPORAL) * TEMPORAL + 1)
    stride = window - overlap
    cuts = sorted(c for c in set(int(c) for c in cuts) if 0 < c < n)
    segs = [Segment(0, 0)]
    while segs[-1].start + window < n:
        s = segs[-1].start
        cut = next((c for c in cuts if s + MIN_SEGMENT <= c < s + window), None)
        if cut is not None and cut <= s + stride + MIN_SEGMENT:  # later cuts are the next segment's business
            segs.append(Segment(cut, 0))
        else:
            segs.append(Segment(s + stride, overlap))
    for a, b in zip(segs, segs[1:]):
        a.end = b.start
    segs[-1].end = max(n, segs[-1].start + 1)
    return window, overlap, segs


def change_frames(n: int, window: int, cuts: list[int] | tuple[int, ...] = ()) -> list[int]:
    """Native frames where a change of the noise walk first shows: the first frame of each latent group
    (start+1, start+5, ...) of the segment that owns it, and the start of a segment that follows a
    hard cut."""
    out = []
    for sg in plan(n, window, cuts)[2]:
        if sg.start > 0 and sg.fade == 0:
            out.append(sg.start)
        out.extend(range(sg.start + 1, min(sg.end, n), TEMPORAL))
    return out


def frames(pipe, *, texts: list[str], negative: str, weights: np.ndarray, motion: np.ndarray,
           size: tuple[int, int], seed: int, steps: int, guidance: float, window: int | None,
           cuts: list[int] | tuple[int, ...] = (), progress: ProgressFn = None) -> Iterator[np.ndarray]:
    """Yield the N = len(weights) native frames, uint8 (h, w, 3)."""
    import torch

    n = weights.shape[0]
    window, overlap, segs = plan(n, window or WINDOW, cuts)
    device = pipe._execution_device
    dtype = pipe.transformer.dtype
    cfg = guidance > 1.0
    msl = min(512, int(getattr(pipe.tokenizer, "model_max_length", 512) or 512))
    with torch.inference_mode():
        pos, neg = pipe.encode_prompt(texts, negative_prompt=[negative or ""] * len(texts),
                                      do_classifier_free_guidance=cfg, max_sequence_length=msl, device=device)
    # One global noise walk over native frames; each latent frame takes its position at the last
    # native frame of its group (see the module notes).
    total = max(sg.start for sg in segs) + window
    travel = np.concatenate([motion, np.full(max(total - n, 0), schedule.CALM_STEP)])
    travel[0] = 0.0
    position = np.cumsum(travel)
    h, w = size[1] // pipe.vae_scale_factor_spatial, size[0] // pipe.vae_scale_factor_spatial
    lat_len = (window - 1) // TEMPORAL + 1
    report(progress, "diffusion", 0, steps * len(segs))

    tail: list[np.ndarray] = []
    for i, sg in enumerate(segs):
        nxt = segs[i + 1] if i + 1 < len(segs) else None
        own_end = min(sg.end + (nxt.fade if nxt else 0), sg.start + window, n)
        # conditioned on the blend averaged over the frames this segment shows
        mean = torch.as_tensor(weights[sg.start:max(own_end, sg.start + 1)].mean(axis=0), dtype=torch.float32,
                               device=device)
        prompt_embeds = torch.einsum("k,ksd->sd", mean, pos.float())[None].to(dtype)
        negative_embeds = neg[:1].to(dtype) if cfg else None
        walk = schedule.noise_at(position[sg.start + TEMPORAL * np.arange(lat_len)], (LATENT_CHANNELS, h, w),
                                 seed=seed)
        latents = torch.from_numpy(np.ascontiguousarray(walk))[None].to(device, dtype)

        def on_step(_pipe, step, _t, kwargs, i=i):
            report(progress, "diffusion", i * steps + step + 1, steps * len(segs))
            return {}

        out = pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, height=size[1],
                   width=size[0], num_frames=window, num_inference_steps=steps, guidance_scale=guidance,
                   latents=latents, generator=torch.Generator("cpu").manual_seed(seed + i), output_type="np",
                   callback_on_step_end=on_step)
        seg = [np.clip(np.rint(f * 255), 0, 255).astype(np.uint8) for f in np.asarray(out.frames[0])]
        for k in range(len(tail)):  # crossfade the overlap with the previous segment's tail
            a = (k + 1) / (len(tail) + 1)
            seg[k] = np.rint((1 - a) * tail[k].astype(np.float32) + a * seg[k].astype(np.float32)).astype(np.uint8)
        own = sg.end - sg.start
        tail = seg[own:own + nxt.fade] if nxt else []
        yield from seg[:min(own, n - sg.start)]
