"""Pure schedules (numpy only): which prompt conditions each frame, how far the noise walks, retiming.

The conditioning of a frame is a weighted blend of K+1 prompt embeddings: one prompt per source track
and a last, shared scene prompt. ``blend_weights`` gives the weights (rows sum to 1); ``noise_walk``
gives the initial latents, whose frame-to-frame change is proportional to the audio's onsets and
envelope flux (an audio-driven time warp), so visual change concentrates on the hits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avmix.stats import unique
from avmix.video.timing import frame_at, onset_frame

SILENCE = 0.02  # envelope (0..1) below which a track counts as silent
PRESENCE_FLOOR = 0.15  # concat/overlay: a placed track keeps at least this weight while quiet
CALM_STEP = 0.03  # noise-walk travel per native frame with no audio change (in keyframes)
ONSET_STEP = 0.6  # extra travel at an onset
FLUX_GAIN = 2.0  # extra travel per unit of rising mix envelope


@dataclass
class Prompts:
    texts: list[str]  # one per track, then the scene prompt
    tracks: int  # number of track prompts (the scene prompt is texts[tracks])


def _join(parts: list[str]) -> str:
    parts = [p.strip() for p in parts if p and p.strip()]
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _with_style(text: str, style: str) -> str:
    style = style.strip()
    return f"{text}, {style}" if text and style else (text or style)


def build_prompts(labels: list[str], *, mode: str, style: str = "") -> Prompts:
    """Track and scene prompts: mix -> the scene holds every source ("a dog barking and heavy rain");
    overlay -> the top track's subject is set in the base's scene; concat -> one scene per track.
    ``style`` (``--prompt``) is appended to every prompt."""
    labels = [lab.strip() or f"sound {i + 1}" for i, lab in enumerate(labels)]
    tracks = list(labels)
    if mode == "overlay" and len(labels) >= 2:
        tracks = [labels[0]] + [f"{lab} with {labels[0]}" for lab in labels[1:]]
    # concat/overlay: the scene prompt only fills silences, so the style alone when there is one
    scene = _join(labels) if mode == "mix" or not style.strip() else ""
    return Prompts([_with_style(t, style) for t in tracks] + [_with_style(scene, style)], len(tracks))


def sample(values: np.ndarray, fps: float, times: np.ndarray) -> np.ndarray:
    """A per-video-frame series (frame i at i/fps) read at ``times`` (s): the value of the frame that
    holds each time, so nothing a frame shows leaks into the times before it."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return np.zeros(len(times))
    return values[np.clip(frame_at(times, fps), 0, values.size - 1)]


def blend_weights(envelopes: np.ndarray, *, fps: float, times: np.ndarray, mode: str,
                  spans: list[tuple[float, float]] | None = None) -> np.ndarray:
    """Weights (len(times), K+1) of the K track prompts and the scene prompt; rows sum to 1.

    envelopes: (K, video frames) loudness 0..1 on the analysis grid at ``fps``. spans: (start, end)
    seconds of each track in the output (from the timeline). mix: weights follow the gated envelopes,
    the part all tracks share goes to the scene prompt (it holds every source); concat/overlay: a
    track holds its scene over its whole span (at least PRESENCE_FLOOR), so the picture changes at the
    track boundary. When every track is silent the scene prompt has weight 1.
    """
    env = np.atleast_2d(np.asarray(envelopes, dtype=np.float64))
    k = env.shape[0]
    times = np.asarray(times, dtype=np.float64)
    e = np.stack([sample(env[i], fps, times) for i in range(k)], axis=1) if k else np.zeros((len(times), 0))
    e = np.where(e >= SILENCE, np.clip(e, 0.0, 1.0), 0.0)
    if spans is not None and mode in ("concat", "overlay"):
        f = frame_at(times, fps)  # a span shows from the frame its start cuts to, as onsets do
        inside = np.stack([(f >= onset_frame(s, fps)) & (f < onset_frame(t, fps)) for s, t in spans], axis=1) if k \
            else e > 0
        e = np.where(inside, np.maximum(e, PRESENCE_FLOOR), 0.0)
    w = np.zeros((len(times), k + 1))
    w[:, :k] = e
    if mode == "mix" and k >= 2:
        common = e.min(axis=1)
        w[:, :k] -= common[:, None]
        w[:, k] = k * common
    total = w.sum(axis=1)
    silent = total <= 1e-9
    w[silent] = 0.0
    w[silent, k] = 1.0
    w[~silent] /= total[~silent, None]
    return w


def scene_changes(spans: list[tuple[float, float]], *, mode: str) -> list[float]:
    """Times (s) where the scene changes by construction: concat boundaries, an overlay's entry and
    exit (none for mix, whose scene changes only as the envelopes move)."""
    if mode not in ("concat", "overlay"):
        return []
    return sorted({float(t) for span in spans for t in span})


def cut_points(times: list[float], *, fps: float, frames: int, native_fps: float, n: int,
               allowed: list[int] | np.ndarray | None = None) -> list[tuple[int, int]]:
    """Where the picture changes at once: (j, c) for each change at ``times`` (onsets, scene changes).

    j is the output frame that first shows it (``onset_frame``); c is the native frame that first carries the change,
    the one of ``allowed`` (default: every native frame but the first) nearest to j/fps. Retiming with
    these cuts (``retime``) shows native frames < c only before output frame j and frames >= c only
    from it, so the change can neither start early nor be spread over a native interval. Both j and c
    strictly increase; changes closer than that merge into the earlier one.
    """
    allowed = np.arange(1, n) if allowed is None else np.asarray(sorted(allowed), dtype=np.int64)
    allowed = allowed[(allowed >= 1) & (allowed < n)]
    if allowed.size == 0:
        return []
    js = {int(x) for x in onset_frame(np.asarray(times, dtype=np.float64), fps)}
    return merge_cuts([(j, int(allowed[np.argmin(np.abs(allowed / native_fps - j / fps))])) for j in js
                       if 0 < j < frames])


def merge_cuts(*groups: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Cut lists joined in order of output frame, dropping any that would not strictly increase."""
    out: list[tuple[int, int]] = []
    for j, c in sorted({cut for g in groups for cut in g}):
        if not out or (j > out[-1][0] and c > out[-1][1]):
            out.append((j, c))
    return out


def native_frame_count(frames: int, fps: float, native_fps: float) -> int:
    """Native frames at ``native_fps`` covering output frames 0..frames-1 at ``fps`` (first and last included)."""
    last = max(frames - 1, 0) / fps
    return max(int(np.ceil(last * native_fps - 1e-9)) + 1, 2)


def native_times(n: int, native_fps: float, fps: float, cuts: list[tuple[int, int]] = ()) -> np.ndarray:
    """The time (s) each native frame stands for: i/native_fps, except that around a cut (j, c) frames
    before c stand for output frame j-2 at the latest (frame j-1 may hold the onset, and its envelope
    already rises) and frames from c on for frame j at the earliest, so the audio they are conditioned
    on changes where the picture cuts."""
    t = np.arange(n) / native_fps
    before = 0  # a cut right after another cannot reach back past it
    for j, c in cuts:
        t[:c] = np.minimum(t[:c], max(j - 2, before) / fps)
        t[c:] = np.maximum(t[c:], j / fps)
        before = j
    return t


def retime(frames: int, fps: float, native_fps: float, cuts: list[tuple[int, int]] = ()
           ) -> tuple[np.ndarray, np.ndarray]:
    """For each output frame j (time j/fps): the native frame i0 before it and the blend weight a of
    native frame i0+1 (output = (1-a) * native[i0] + a * native[i0+1]). Linear in time, except that a
    cut (j, c) holds native frame c-1 up to output frame j-1 and shows c or later from frame j on:
    the change is one cut on frame j, never a crossfade that starts before it."""
    pos = np.arange(frames) / fps * native_fps
    for j, c in cuts:
        pos[:j] = np.minimum(pos[:j], c - 1)
        pos[j:] = np.maximum(pos[j:], c)
    i0 = np.floor(pos + 1e-9).astype(np.int64)
    a = np.clip(pos - i0, 0.0, 1.0)
    a[a < 1e-9] = 0.0
    return i0, a


def motion(mix_envelope: np.ndarray, kicks: list[int], *, fps: float, times: np.ndarray) -> np.ndarray:
    """Noise-walk travel into each native frame (len(times), sampled at ``times`` from ``native_times``):
    calm drift + rising envelope flux + an onset kick into each native frame of ``kicks``."""
    times = np.asarray(times, dtype=np.float64)
    env = sample(mix_envelope, fps, times)
    flux = np.maximum(np.diff(env, prepend=env[:1] if env.size else env), 0.0)
    step = CALM_STEP + FLUX_GAIN * flux
    idx = unique(np.asarray(kicks, dtype=np.int64))
    step[idx[(idx >= 0) & (idx < len(times))]] += ONSET_STEP
    step[0] = 0.0
    return step


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    af, bf = a.ravel(), b.ravel()
    cos = float(np.dot(af, bf) / (np.linalg.norm(af) * np.linalg.norm(bf) + 1e-12))
    theta = np.arccos(np.clip(cos, -1.0, 1.0))
    if theta < 1e-4:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * theta) * a + np.sin(t * theta) * b) / np.sin(theta)


def noise_walk(steps: np.ndarray, shape: tuple[int, ...], *, seed: int) -> np.ndarray:
    """Initial latents (C, N, *shape[1:]) for N = len(steps) frames: a spherical walk through keyframe
    noises (one per unit of travel), so frame-to-frame change follows ``steps``. float32, unit variance."""
    return noise_at(np.cumsum(np.asarray(steps, dtype=np.float64)), shape, seed=seed)


def noise_at(positions: np.ndarray, shape: tuple[int, ...], *, seed: int) -> np.ndarray:
    """The walk's noise (C, N, *shape[1:]) at N travel positions (keyframe k at position k)."""
    pos = np.asarray(positions, dtype=np.float64)
    keys = int(np.floor(pos.max())) + 2 if len(pos) else 2
    rng = np.random.default_rng(seed)
    key_noise = rng.standard_normal((keys, *shape), dtype=np.float32)
    out = np.empty((len(pos), *shape), dtype=np.float32)
    for n, p in enumerate(pos):
        i = int(np.floor(p))
        out[n] = _slerp(key_noise[i], key_noise[i + 1], p - i)
    return np.moveaxis(out, 0, 1)


def summary(prompts: Prompts, weights: np.ndarray, times: np.ndarray, *, tolerance: float = 0.05) -> list[dict]:
    """A compact schedule for the manifest: an entry at the first frame and wherever any weight moved by
    more than ``tolerance`` since the last entry; weights rounded to 3 decimals."""
    rows: list[dict] = []
    last = None
    for n, (t, w) in enumerate(zip(times, weights)):
        if last is None or np.max(np.abs(w - last)) > tolerance or n == len(times) - 1:
            rows.append({"frame": n, "time": round(float(t), 4), "weights": [round(float(x), 3) for x in w]})
            last = w
    return rows
