"""``generate``: compose -> analyze -> video -> mux, through files in a work directory, with a cache.

Here: the checks before any work and the stages in order. Each stage's work and cache key are in
:mod:`.audio` (synth, compose, analyze), :mod:`.video` and :mod:`.muxing`; the work directory and the
stage cache in :mod:`.workdir`; the files a run reads and writes, kept apart, in :mod:`.files`;
``--stems`` in :mod:`.stems`.

Every stage writes its files atomically, and the manifest records a stage only once its files are complete,
so Ctrl-C or SIGTERM at any moment leaves a work directory the next run resumes from, and never a partial
output.

Without ``workdir`` the work directory is ``.OUT.avmix-work`` beside the output (same file system, and
found again by a rerun after an interruption); it is removed after success unless ``keep``.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Sequence

from avmix import mux, paths, synth
from avmix.errors import UsageError
from avmix.manifest import MANIFEST, Manifest, versions
from avmix.options import Backend, Mode, Options, check_choice
from avmix.pipeline import files, workdir
from avmix.pipeline.audio import run_analyze, run_compose, run_synth
from avmix.pipeline.muxing import EarlyAudio, run_mux
from avmix.pipeline.stems import write_picture_stems, write_stems
from avmix.pipeline.video import run_video, write_preview
from avmix.pipeline.workdir import ANALYSIS, TIMELINE
from avmix.progress import ProgressFn, note
from avmix.signals import sigterm_as_interrupt
from avmix.timeline import Analysis, Timeline, file_hash

BACKENDS = tuple(b.value for b in Backend)


def choose_backend(backend: str, model: str | None, pictures: int = 0) -> tuple[str, str]:
    """(backend, reason). auto: composite when ``pictures`` tracks have a picture, else diffusion when a
    model is configured and usable here, else procedural."""
    if backend == "procedural":
        return "procedural", "requested with --backend procedural"
    if backend == "composite":
        return "composite", "requested with --backend composite"
    if pictures:
        return "composite", f"{pictures} track{'s' if pictures != 1 else ''} with a picture"
    if backend == "diffusion":
        if not model:
            raise UsageError("--backend diffusion needs a model", hint="pass --model ID_OR_DIR or set AVMIX_MODEL")
        return "diffusion", f"requested with --backend diffusion (model {model})"
    if not model:
        return "procedural", "no diffusion model configured; pass --model or set AVMIX_MODEL"
    from avmix.video import diffusion  # only now: it may pull in torch

    ok, why = diffusion.available(model)
    if ok:
        return "diffusion", f"model {model} is configured and usable ({why})"
    return "procedural", f"model {model} is configured but not usable here ({why})"


def generate(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, options: Options | None = None, *,
             overwrite: bool = False, progress: ProgressFn = None, quiet: bool = True, **flat) -> dict:
    """Compose ``inputs``, analyse, render a video and mux it into ``output``.

    ``options`` holds every option in groups (:class:`avmix.options.Options`); flat keywords by option
    name (``fps=24``, ``gains=[0, -6]``, ``size=(640, 360)``) change single options, on top of ``options``.

    Returns ``{"output", "duration" (s), "backend", "backend_reason", "workdir" (None once removed),
    "timings" {stage: s}, "reused" [stages taken from the cache], "preview", "stems"}``.
    """
    opts = Options.of(options, **flat)
    # -- check everything before any work
    opts, inputs, texts, sources, out = _check_options(inputs, output, opts, overwrite=overwrite)
    pics = _pictures(inputs, opts.compose.images, texts, sources)
    chosen, why = _backend(opts, pics, inputs, sources)
    work, ours = workdir.location(opts.work.workdir, out)
    reads = files.check_apart(inputs, out, work, ours=ours, texts=texts, sources=sources, pics=pics, opts=opts,
                              chosen=chosen)
    if opts.video.backend == "auto":
        note(f"backend {chosen}: {why}", quiet=quiet)

    workdir.create(work, ours)
    started = time.perf_counter()
    try:
        from avmix.audio import io

        with sigterm_as_interrupt(), workdir.locked(work), io.reuse_decoded():  # analysis reads compose's decodes
            result = _run(inputs, out, work, composed=sources is not None, pics=pics, opts=opts, chosen=chosen,
                          why=why, overwrite=overwrite, progress=progress, quiet=quiet, texts=texts, reads=reads)
    except BaseException:
        if (work / MANIFEST).exists() and Manifest.load(work).stages:
            note(f"work directory kept: {work} (run the same command again to resume)", quiet=quiet)
        elif ours:  # no stage finished (e.g. an input would not open): nothing to resume
            shutil.rmtree(work, ignore_errors=True)
        raise
    result["timings"]["total"] = round(time.perf_counter() - started, 4)
    if ours and not opts.work.keep:
        shutil.rmtree(work, ignore_errors=True)
        result["workdir"] = None
    return result


def _check_options(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, opts: Options, *,
                   overwrite: bool) -> tuple[Options, list[Path], dict, list | None, Path]:
    """(the options checked, the inputs, the text inputs by index, a composed input's timeline sources or
    None, the output), or the first problem found, in the order a user would fix them."""
    synth_opts = opts.synth.checked()
    raw = [os.fspath(p) for p in inputs]  # a text input is not a path ("//" in a prompt stays)
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise UsageError("generate needs at least one input")
    if any(os.fspath(p) == paths.STDIO for p in inputs):
        raise UsageError("generate reads files, not standard input", hint="save the audio to a file first")
    check_choice("--mode", opts.compose.mode, Mode)
    check_choice("--backend", opts.video.backend, Backend)
    video = opts.video.checked()
    texts = synth.check(raw, synth_opts.settings(seed=video.seed, device=opts.model.device))
    for i, p in enumerate(inputs):
        if i not in texts:
            paths.check_input(p)
    composed = len(inputs) == 1 and not texts and paths.sidecar(inputs[0]).is_file()
    sources = Timeline.load(paths.sidecar(inputs[0])).sources if composed else None  # a composed input's
    if opts.compose.mode == "overlay" and len(inputs) != 2 and not composed:
        raise UsageError(f"--mode overlay takes exactly two inputs (BASE TOP), got {len(inputs)}")
    n_labels = len(opts.compose.labels or [])
    compose = opts.compose.checked(n_labels if composed else len(inputs))
    mux.container(output)
    out = paths.check_output(output, inputs, overwrite=overwrite)
    work_opts = opts.work.checked()
    if work_opts.preview is not None:
        if Path(work_opts.preview).suffix.lower() != ".png":
            raise UsageError("the preview must be a .png file", path=work_opts.preview)
        paths.check_output(work_opts.preview, inputs, overwrite=overwrite)
    opts = Options(compose=compose, video=video, model=opts.model.checked(), work=work_opts, synth=synth_opts)
    return opts, inputs, texts, sources, out


def _pictures(inputs: list[Path], images: Sequence[str], texts: dict, sources: list | None) -> list[dict | None]:
    """Each track's picture (:func:`source_pictures`; a text track has only an --image), each image probed."""
    pics = [None if i in texts and (pic or {}).get("kind") != "image" else pic  # text: only an --image
            for i, pic in enumerate(source_pictures(inputs, images, sources=sources))]
    for pic in pics:
        if pic is not None and pic["kind"] == "image":  # a missing or unreadable image stops here, in one line
            from avmix.video import pictures

            pictures.probe(pic["path"])
    return pics


def _backend(opts: Options, pics: list[dict | None], inputs: list[Path], sources: list | None) -> tuple[str, str]:
    """(backend, reason) from :func:`choose_backend`; --layout and --image refused unless it is composite."""
    compose, video = opts.compose, opts.video
    chosen, why = choose_backend(video.backend, opts.model.model, sum(p is not None for p in pics))
    if chosen == "composite":
        from avmix.video import composite

        n_tracks = len(inputs) if sources is None else len(sources)
        composite.check_layout(compose.mode, video.layout, n_tracks)
    elif video.layout is not None:
        raise UsageError(f"--layout is for the composite backend, and this run uses {chosen}",
                         hint="add --backend composite")
    elif any(p not in (None, "", "-") for p in compose.images or []):
        raise UsageError(f"--image is for the composite backend, and this run uses {chosen}",
                         hint="add --backend composite, or leave --backend auto")
    return chosen, why


def _run(inputs: list[Path], out: Path, work: Path, *, composed: bool, pics: list[dict | None], opts: Options,
         chosen: str, why: str,
         overwrite: bool, progress: ProgressFn, quiet: bool, texts: dict | None = None,
         reads: Sequence[Path] = ()) -> dict:
    """The stages in order, in the locked work directory. ``reads``: the files read, which no stem may replace."""
    man = Manifest.load(work)
    stages = workdir.Stages(man, no_cache=opts.work.no_cache, progress=progress)
    wo = opts.work
    # -- synth: text:PROMPT inputs become cached files (outside the work directory, listed in tracks.json)
    tracks = run_synth(inputs, texts or {}, work, opts, stages, progress, quiet) if texts else {}
    inputs = [Path(tracks[i].path) if i in tracks else p for i, p in enumerate(inputs)]
    hashes = [file_hash(p) for p in inputs]
    _record_run(man, inputs, hashes, tracks, opts=opts, chosen=chosen, why=why, out=out)

    # -- compose: audio.wav + timeline.json
    k_compose = run_compose(inputs, work, composed=composed, pics=pics, opts=opts, texts=texts or {},
                            tracks=tracks, hashes=hashes, stages=stages, progress=progress, quiet=quiet)
    timeline = Timeline.load(work / TIMELINE)
    stems = write_stems(timeline, work, wo.stems, [*inputs, *reads], overwrite=overwrite, man=man) if wo.stems else None

    # -- the mux's audio, encoded in the background meanwhile (cached)
    early = None
    try:
        early = EarlyAudio(stages, k_compose, work, out)
        # -- analyze: analysis.json
        k_analyze = run_analyze(timeline, work, fps=opts.video.fps, k_compose=k_compose, stages=stages,
                                progress=progress)
        analysis = Analysis.load(work / ANALYSIS)
        # -- video: video.mp4 (silent)
        video_info = run_video(chosen, analysis, timeline, work, opts, k_analyze=k_analyze, stages=stages,
                               progress=progress)
        if wo.stems and chosen == "composite":  # each picture as it sits in the video, beside its sound
            stems["pictures"] = write_picture_stems(timeline, analysis, wo.stems, [*inputs, *reads], opts,
                                                    overwrite=overwrite, man=man, progress=progress)
        encoded = early.finish()
    finally:
        if early is not None:
            early.cancel()  # an error or Ctrl-C: no encode outlives the run

    # -- mux: OUT (always), then the preview from the work directory's video
    muxed = run_mux(work, out, analysis=analysis, vo=opts.video, encoded=encoded,
                    overwrite=overwrite, stages=stages, progress=progress)
    preview = write_preview(work, analysis, wo.preview, stages) if wo.preview else None

    man.data["run"] = {"timings": stages.timings, "reused": stages.reused, "mux": muxed,
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    man.data["video"] = video_info
    man.save()
    note(f"wrote {out} ({timeline.duration:.2f} s, backend {chosen}"
         + (f", reused {', '.join(stages.reused)}" if stages.reused else "") + ")", quiet=quiet)
    return {"output": os.fspath(out), "duration": timeline.duration, "backend": chosen, "backend_reason": why,
            "workdir": os.fspath(work), "timings": dict(stages.timings), "reused": list(stages.reused),
            "preview": preview, "stems": stems, "video_copied": muxed["video_copied"],
            **({"reference": timeline.reference_report} if timeline.reference_report else {})}


def _record_run(man: Manifest, inputs: list[Path], hashes: list[str], tracks: dict, *, opts: Options, chosen: str,
                why: str, out: Path) -> None:
    """The manifest's record of what went in: versions, options, inputs with their hashes, backend, output."""
    vers = versions()
    man.data.update(avmix=vers["avmix"], versions=vers, options=opts.flat(), seed=opts.video.seed,
                    inputs=[dict({"path": os.path.abspath(p), "hash": h, "bytes": p.stat().st_size},
                                 **({"text": tracks[i].spec.source} if i in tracks else {}))
                            for i, (p, h) in enumerate(zip(inputs, hashes))],
                    backend={"name": chosen, "reason": why}, output=os.fspath(out))
    man.save()


def source_pictures(inputs: list[Path], images: Sequence[str], *, sources: list | None = None) -> list[dict | None]:
    """Each input's picture, ``{"path", "kind"}`` or None: its ``--image`` ('-': none given), else its own
    video stream (cover art of an audio file does not count). A composed input (``sources``: its
    timeline's) brings its timeline's."""
    from avmix.video import pictures

    if sources is not None:
        out = [s.picture if isinstance(s.picture, dict) and s.picture.get("path") else None for s in sources]
        for i, img in enumerate(images[:len(out)]):
            if img not in ("", "-"):
                out[i] = {"path": os.path.abspath(img), "kind": "image"}
        return out
    images = [images[i] if i < len(images) else "-" for i in range(len(inputs))]
    own = pictures.find_all([p for p, img in zip(inputs, images) if img in ("", "-")], unreadable_ok=True)
    out = []
    for p, img in zip(inputs, images):
        if img not in ("", "-"):
            out.append({"path": os.path.abspath(img), "kind": "image"})
        else:
            out.append({"path": os.path.abspath(p), "kind": "video"} if own.pop(0) is not None else None)
    return out
