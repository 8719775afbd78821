"""Pure schedules (numpy only): which prompt conditions each frame, how far the noise walks, retiming.

The conditioning of a frame is a weighted blend of K+1 prompt embeddings: one prompt per source track
and a last, shared scene prompt. ``blend_weights`` gives the weights (rows sum to 1); ``noise_walk``
gives the initial latents, whose frame-to-frame change is proportional to the audio's onsets and
envelope flux (an audio-driven time warp), so visual change concentrates on the hits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    """Linear interpolation of a per-video-frame series (frame i at i/fps) at ``times`` (s)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return np.zeros(len(times))
    return np.interp(np.asarray(times) * fps, np.arange(values.size), values)


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
        inside = np.stack([(times >= s) & (times < t) for s, t in spans], axis=1) if k else e > 0
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


def scene_cuts(spans: list[tuple[float, float]], *, mode: str, native_fps: float, n: int) -> list[int]:
    """Native frames where the scene changes by construction: concat boundaries, an overlay's entry and
    exit (none for mix, whose scene changes only as the envelopes move)."""
    if mode not in ("concat", "overlay"):
        return []
    points = {int(round(t * native_fps)) for span in spans for t in span}
    return sorted(p for p in points if 0 < p < n)


def native_frame_count(frames: int, fps: float, native_fps: float) -> int:
    """Native frames at ``native_fps`` covering output frames 0..frames-1 at ``fps`` (first and last included)."""
    last = max(frames - 1, 0) / fps
    return max(int(np.ceil(last * native_fps - 1e-9)) + 1, 2)


def retime(frames: int, fps: float, native_fps: float) -> tuple[np.ndarray, np.ndarray]:
    """For each output frame j (time j/fps): the native frame i0 before it and the blend weight a of
    native frame i0+1 (output = (1-a) * native[i0] + a * native[i0+1])."""
    pos = np.arange(frames) / fps * native_fps
    i0 = np.floor(pos + 1e-9).astype(np.int64)
    a = np.clip(pos - i0, 0.0, 1.0)
    a[a < 1e-9] = 0.0
    return i0, a


def motion(mix_envelope: np.ndarray, onsets: list[float], *, fps: float, times: np.ndarray) -> np.ndarray:
    """Noise-walk travel per native frame (len(times)): calm drift + rising envelope flux + onset kicks."""
    times = np.asarray(times, dtype=np.float64)
    env = sample(mix_envelope, fps, times)
    flux = np.maximum(np.diff(env, prepend=env[:1] if env.size else env), 0.0)
    step = CALM_STEP + FLUX_GAIN * flux
    if len(times) > 1 and onsets:
        dt = times[1] - times[0]
        idx = np.round((np.asarray(onsets, dtype=np.float64) - times[0]) / dt).astype(np.int64)
        idx = np.unique(idx[(idx >= 0) & (idx < len(times))])  # a hit seen in the mix and its track counts once
        step[idx] += ONSET_STEP
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
    pos = np.cumsum(np.asarray(steps, dtype=np.float64))
    keys = int(np.floor(pos[-1])) + 2 if len(pos) else 2
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
