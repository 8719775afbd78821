"""The video stage of ``generate``: video.mp4 (silent) in the work directory, made from the analysis by the
chosen backend and cached on the analysis' key and the options that change the picture; and --preview, a
contact sheet of it."""
from __future__ import annotations

import time
from pathlib import Path

from avmix.manifest import key
from avmix.options import Options
from avmix.pipeline.workdir import VIDEO, Stages
from avmix.progress import ProgressFn
from avmix.timeline import Analysis, Timeline


def run_video(chosen: str, analysis: Analysis, timeline: Timeline, work: Path, opts: Options, *, k_analyze: str,
              stages: Stages, progress: ProgressFn) -> dict | None:
    """The video stage. Returns what the backend reports of its render (from the cache when reused)."""
    vo, mo = opts.video, opts.model
    depends = {"analyze": k_analyze, "backend": chosen, "size": list(vo.size), "seed": vo.seed,
               "captions": vo.captions, "crf": vo.crf}
    if chosen == "composite":
        depends.update(layout=vo.layout, pip_position=vo.pip_position, pip_size=vo.pip_size,
                       pictures=[s.picture for s in timeline.sources])
    if chosen == "diffusion":
        depends.update({k: getattr(mo, k) for k in ("model", "device", "prompt", "negative_prompt", "steps",
                                                    "guidance")})
    return stages.run("video", key("video", depends), depends, [VIDEO],
                      lambda: _render(chosen, analysis, timeline, work, opts, progress))


def _render(backend: str, analysis: Analysis, timeline: Timeline, work: Path, opts: Options,
            progress: ProgressFn) -> dict:
    vo, mo = opts.video, opts.model
    width, height = vo.size
    if backend == "procedural":
        from avmix.video import procedural

        info = procedural.render(analysis, work / VIDEO, width=width, height=height, seed=vo.seed,
                                 captions=vo.captions, crf=vo.crf, progress=progress)
    elif backend == "composite":
        from avmix.video import composite

        info = composite.render(timeline, analysis, work / VIDEO, width=width, height=height, layout=vo.layout,
                                pip_position=vo.pip_position, pip_size=vo.pip_size, captions=vo.captions,
                                seed=vo.seed, crf=vo.crf, progress=progress)
    else:
        from avmix.video import diffusion

        info = diffusion.render(analysis, timeline, work / VIDEO, width=width, height=height, fps=vo.fps,
                                seed=vo.seed, model=mo.model, device=mo.device, offload=mo.offload,
                                prompt=mo.prompt, negative_prompt=mo.negative_prompt, steps=mo.steps,
                                guidance=mo.guidance, progress=progress)
    return dict(info or {}, backend=backend)


def write_preview(work: Path, analysis: Analysis, path: str, stages: Stages) -> str:
    """--preview: a contact sheet of video.mp4 (``contact_sheet`` writes it atomically). Returns ``path``."""
    t = time.perf_counter()
    from avmix.video import preview as preview_mod

    preview_mod.contact_sheet(work / VIDEO, analysis, path)
    stages.timings["preview"] = round(time.perf_counter() - t, 4)
    return path
