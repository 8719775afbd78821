"""The diffusion video backend: a pretrained diffusers text-to-video model steered by the audio tracks.

    render(analysis, timeline, output, ...)   silent video with analysis.frames frames at fps
    available(model) -> (ok, reason)          for --backend auto
    tag_labels(paths, model) -> labels        audio-classification labels (--tagger)

Each frame's text conditioning blends the tracks' prompts by their loudness envelopes
(schedule.blend_weights); the initial noise walks faster at onsets (schedule.motion / noise_walk);
frames are generated at the model's native rate and blended to ``fps`` (interpolate.retimed), with a
cut instead of a blend at each onset and scene change (schedule.cut_points), so a change shows on the
first output frame at or after its onset, never before.
torch/diffusers are imported only inside these functions.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avmix.errors import ModelError, UsageError
from avmix.progress import ProgressFn
from avmix.timeline import Analysis, Timeline
from avmix.video.diffusion import schedule
from avmix.video.diffusion.loading import ENV_MODEL, identify

__all__ = ["render", "available", "tag_labels", "identify"]

ENV_WINDOW = "AVMIX_WINDOW"  # frames per window/segment when render() is not given one
TAG_TOP = 2  # classes per track joined into its label
TAG_MIN_SCORE = 0.1


def _family_module(family: str):
    if family.startswith("animatediff"):
        from avmix.video.diffusion import animatediff as mod
    else:
        from avmix.video.diffusion import segments as mod
    return mod


def generation_size(width: int, height: int, *, native_side: int, multiple: int) -> tuple[int, int]:
    """The size the model draws at: the output's aspect, longer side at most ``native_side``, multiples
    of ``multiple`` (ffmpeg scales it to the output size while encoding)."""
    scale = min(1.0, native_side / max(width, height))
    return (max(multiple, int(round(width * scale / multiple)) * multiple),
            max(multiple, int(round(height * scale / multiple)) * multiple))


def _spans(analysis: Analysis, timeline: Timeline | None) -> list[tuple[float, float]]:
    by_index = {s.index: s for s in timeline.sources} if timeline is not None else {}
    spans = []
    for i, tr in enumerate(analysis.tracks):
        src = by_index.get(tr.index if tr.index >= 0 else i)
        if src is not None and timeline.sample_rate:
            spans.append((src.start_sample / timeline.sample_rate, src.end_sample / timeline.sample_rate))
        else:
            spans.append((tr.start, tr.end if tr.end > tr.start else analysis.duration))
    return spans


@dataclass
class Conditioning:
    prompts: schedule.Prompts
    times: np.ndarray  # (N,) the time each native frame stands for (schedule.native_times)
    weights: np.ndarray  # (N, K+1) prompt blend
    travel: np.ndarray  # (N,) noise-walk travel into each native frame
    cuts: list[tuple[int, int]]  # (output frame, native frame) where the retiming cuts
    scene: list[int]  # native frames of scene changes (Wan segments cut hard there)


def _mode(analysis: Analysis, timeline: Timeline | None) -> str:
    return (timeline.mode if timeline is not None else analysis.mode) or "mix"


def conditioning(analysis: Analysis, timeline: Timeline | None, *, family: str, native_fps: float,
                 window: int | None = None, prompt: str = "") -> Conditioning:
    """Prompts, per-native-frame weights and noise travel, and the cuts, for a clip.

    Every onset and scene change becomes a cut (schedule.cut_points): on the first output frame at or
    after it, onto the nearest native frame where the family can start a change (any for AnimateDiff;
    the first frame of a latent group for Wan, segments.change_frames). The onset's kick goes into
    that native frame, and native frames are conditioned on the audio of the time they are shown at.
    """
    mode = _mode(analysis, timeline)
    spans = _spans(analysis, timeline)
    prompts = schedule.build_prompts([t.label for t in analysis.tracks], mode=mode, style=prompt)
    n = schedule.native_frame_count(analysis.frames, analysis.fps, native_fps)
    grid = dict(fps=analysis.fps, frames=analysis.frames, native_fps=native_fps, n=n)
    scene = schedule.cut_points(schedule.scene_changes(spans, mode=mode), **grid)
    scene_frames = [c for _, c in scene]
    allowed = None
    if not family.startswith("animatediff"):
        from avmix.video.diffusion import segments

        size = window or segments.WINDOW
        hard = {sg.start for sg in segments.plan(n, size, scene_frames)[2] if sg.fade == 0}
        scene = [cut for cut in scene if cut[1] in hard]  # a change inside a segment is not a cut
        allowed = segments.change_frames(n, size, scene_frames)
    onsets = list(analysis.mix.onsets) + [o for t in analysis.tracks for o in t.onsets]
    cuts = schedule.merge_cuts(scene, schedule.cut_points(onsets, allowed=allowed, **grid))
    kicks = sorted({c for _, c in cuts} - {c for _, c in scene})
    times = schedule.native_times(n, native_fps, analysis.fps, cuts)
    env = np.array([np.asarray(t.envelope, dtype=np.float64) for t in analysis.tracks]) if analysis.tracks \
        else np.zeros((0, analysis.frames))
    weights = schedule.blend_weights(env, fps=analysis.fps, times=times, mode=mode, spans=spans)
    travel = schedule.motion(np.asarray(analysis.mix.envelope), kicks, fps=analysis.fps, times=times)
    return Conditioning(prompts, times, weights, travel, cuts, scene_frames)


def render(analysis: Analysis, timeline: Timeline | None, output: str | os.PathLike, *, width: int, height: int,
           fps: float, seed: int, model: str | None, device: str = "auto", offload: bool = False,
           prompt: str = "", negative_prompt: str = "", steps: int | None = None, guidance: float | None = None,
           window: int | None = None, progress: ProgressFn = None) -> dict[str, Any]:
    """Write a silent video of ``analysis.frames`` frames at ``fps`` (``width`` x ``height``) to ``output``.

    ``window``: native frames per FreeNoise context window (AnimateDiff, default 16) or per segment
    (Wan, default 81), else $AVMIX_WINDOW; fewer uses less memory. Returns the manifest record (model, revision, family,
    scheduler, steps, guidance, seed, sizes, prompts and the per-frame prompt schedule).
    """
    from avmix.video.writer import check_size

    check_size(width, height, fps)
    if abs(fps - analysis.fps) > 1e-6:
        raise UsageError(f"fps {fps} differs from the analysis' {analysis.fps}; re-run the analysis at {fps}")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise UsageError(f"bad steps {steps!r}: must be a positive integer")
    if guidance is not None and not (np.isfinite(guidance) and guidance >= 0):
        raise UsageError(f"bad guidance {guidance!r}: must be a number >= 0")
    if window is None and os.environ.get(ENV_WINDOW, "").strip():
        try:
            window = int(os.environ[ENV_WINDOW])
        except ValueError:
            raise UsageError(f"bad {ENV_WINDOW}={os.environ[ENV_WINDOW]!r}: a whole number of frames") from None
    if window is not None and window < 2:
        raise UsageError(f"bad window {window!r}: at least 2 frames")
    info = identify(model)
    from avmix.video.diffusion import loading

    dev, dtype = loading.resolve_device(device)
    with loading.quiet_libraries():
        return _generate(info, analysis, timeline, output, width=width, height=height, fps=fps, seed=seed, dev=dev,
                         dtype=dtype, offload=offload, prompt=prompt, negative_prompt=negative_prompt, steps=steps,
                         guidance=guidance, window=window, progress=progress)


def _generate(info, analysis, timeline, output, *, width, height, fps, seed, dev, dtype, offload, prompt,
              negative_prompt, steps, guidance, window, progress) -> dict[str, Any]:
    from avmix.video.diffusion import loading
    from avmix.video.writer import VideoWriter

    started = time.perf_counter()
    try:
        pipe = loading.load(info, device=dev, dtype=dtype, offload=offload)
    except Exception as e:
        _raise_oom(e)
        raise
    loaded = time.perf_counter()
    mod = _family_module(info.family)
    d_steps, d_guidance = mod.DEFAULTS[info.family]
    steps = steps or info.extra.get("steps") or d_steps
    guidance = d_guidance if guidance is None else guidance
    size = generation_size(width, height, native_side=mod.NATIVE_SIDE, multiple=mod.MULTIPLE)
    cond = conditioning(analysis, timeline, family=info.family, native_fps=mod.NATIVE_FPS, window=window,
                        prompt=prompt)
    prompts, weights, n = cond.prompts, cond.weights, len(cond.times)
    from avmix.video.diffusion.interpolate import retimed

    extra: dict[str, Any] = {}

    try:
        if info.family.startswith("animatediff"):
            shape = (pipe.unet.config.in_channels, size[1] // pipe.vae_scale_factor, size[0] // pipe.vae_scale_factor)
            latents = mod.denoise(pipe, texts=prompts.texts, negative=negative_prompt, weights=weights,
                                  latents=schedule.noise_walk(cond.travel, shape, seed=seed), size=size, seed=seed,
                                  steps=steps, guidance=guidance, window=window, progress=progress)
            native = mod.decode(pipe, latents, progress=progress)
        else:
            native = mod.frames(pipe, texts=prompts.texts, negative=negative_prompt, weights=weights,
                                motion=cond.travel, size=size, seed=seed, steps=steps, guidance=guidance,
                                window=window, cuts=cond.scene, progress=progress)
            extra["segments"] = [[sg.start, sg.fade] for sg in mod.plan(n, window or mod.WINDOW, cond.scene)[2]]
        with VideoWriter(output, width=width, height=height, fps=fps, src_size=size) as writer:
            for frame in retimed(native, n_native=n, frames=analysis.frames, fps=fps, native_fps=mod.NATIVE_FPS,
                                 cuts=cond.cuts):
                writer.write(frame)
    except Exception as e:
        _raise_oom(e)
        raise
    done = time.perf_counter()
    return {
        "backend": "diffusion", "model": info.spec, "revision": info.revision, "family": info.family,
        "pipeline": type(pipe).__name__, "scheduler": type(pipe.scheduler).__name__,
        "steps": steps, "guidance": guidance, "seed": seed, "device": dev, "dtype": str(dtype).replace("torch.", ""),
        "offload": bool(offload and dev == "cuda"), "native_fps": mod.NATIVE_FPS, "native_frames": n,
        "generated_size": list(size), "window": _effective_window(info.family, n, window),
        "interpolation": "linear pixel blend, cut at onsets and scene changes",
        "cuts": [list(c) for c in cond.cuts],
        "prompts": prompts.texts, "negative_prompt": negative_prompt,
        "prompt_schedule": schedule.summary(prompts, weights, cond.times),
        "timings": {"load": round(loaded - started, 3), "generate": round(done - loaded, 3)},
        **extra,
    }


def _effective_window(family: str, n: int, window: int | None) -> int:
    if family.startswith("animatediff"):
        from avmix.video.diffusion import animatediff

        return max(2, min(window or animatediff.WINDOW, 32, n))
    from avmix.video.diffusion import segments

    return segments.plan(n, window or segments.WINDOW)[0]


def _raise_oom(e: BaseException) -> None:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", RuntimeError)
    if isinstance(e, oom) or "out of memory" in str(e).lower():
        raise ModelError("the GPU ran out of memory while generating",
                         hint=f"try --offload, a smaller --size, or fewer frames per window ({ENV_WINDOW}=8)") from None


def available(model: str | None) -> tuple[bool, str]:
    """Whether ``--backend auto`` should pick diffusion: a model configured AND a CUDA/MPS GPU present.
    Without a model configured torch is not even imported."""
    spec = (model or os.environ.get(ENV_MODEL) or "").strip()
    if not spec:
        return False, f"no diffusion model configured (--model or {ENV_MODEL})"
    try:
        import torch  # noqa: F401
        import diffusers  # noqa: F401
    except ImportError:
        return False, "torch/diffusers are not installed (pip install 'avmix[diffusion]')"
    from avmix.video.diffusion import loading

    try:
        dev, _ = loading.resolve_device("auto")
    except ModelError as e:
        return False, e.message
    if dev == "cpu":
        return False, "no CUDA or MPS GPU; --backend diffusion runs it on the CPU, which suits tiny test models only"
    try:
        info = identify(spec)
    except ModelError as e:
        return False, e.message
    return True, f"model {spec} ({info.family}) on {dev}"


def tag_labels(paths: list[str | os.PathLike], model: str) -> list[str]:
    """One label per audio file from a transformers audio-classification model (hub id or local dir):
    its top classes, e.g. "dog (bark)". Safetensors only, no remote code, HF_HUB_OFFLINE honoured."""
    from avmix.audio.io import open_audio
    from avmix.video.diffusion import loading

    try:
        from transformers import pipeline as hf_pipeline
    except ImportError:
        raise ModelError("transformers is not installed", hint="pip install 'avmix[diffusion]'") from None
    local = Path(model).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelError("not a transformers model directory (no config.json)", path=model)
    elif not loading._HUB_ID.match(model):
        raise ModelError("no such tagger directory", path=model)
    else:
        try:
            loading.fetch(model, "config.json")
        except FileNotFoundError:
            raise ModelError(f"{model} is not a transformers model (no config.json)") from None
    with loading.quiet_libraries():
        return _tag(paths, model, local, hf_pipeline, open_audio)


def _tag(paths, model, local, hf_pipeline, open_audio) -> list[str]:
    try:
        clf = hf_pipeline("audio-classification", model=str(local) if local.exists() else model,
                          trust_remote_code=False, model_kwargs={"use_safetensors": True},
                          device="cpu")
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"tagger {model} failed to load: {first}") from None
    sr = int(getattr(clf.feature_extractor, "sampling_rate", 16000))
    labels = []
    for p in paths:
        audio = open_audio(p).read(sample_rate=sr, channels=1)[:, 0]
        preds = clf({"raw": np.ascontiguousarray(audio, dtype=np.float32), "sampling_rate": sr}, top_k=5)
        top = [str(x["label"]) for x in preds if x["score"] >= TAG_MIN_SCORE][:TAG_TOP] or [str(preds[0]["label"])]
        top = [t.lower() for t in top]
        labels.append(top[0] + (f" ({', '.join(top[1:])})" if len(top) > 1 else ""))
    return labels
