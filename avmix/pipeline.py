"""``generate``: compose -> analyze -> video -> mux, through files in a work directory, with a cache.

Work directory files: audio.wav (32-bit float, so stems sum to it exactly), timeline.json,
analysis.json, video.mp4 (silent), audio.m4a (the output's AAC, encoded while the video renders, for
MP4 and MOV outputs) and manifest.json (see :mod:`avmix.manifest`). Every stage writes
its files atomically, and the manifest records a stage only once its files are complete, so Ctrl-C or
SIGTERM at any moment leaves a work directory the next run resumes from, and never a partial output.

Without ``workdir`` the work directory is ``.OUT.avmix-work`` beside the output (same file system, and
found again by a rerun after an interruption); it is removed after success unless ``keep``.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import Iterator, Sequence

from avmix import mux, paths, synth
from avmix.errors import InputError, OutputError, UsageError
from avmix.manifest import MANIFEST, Manifest, key, versions
from avmix.options import Backend, ComposeOptions, Mode, Options, check_choice, parse_size  # noqa: F401 (parse_size: public here before)
from avmix.progress import ProgressFn, note, report
from avmix.signals import sigterm_as_interrupt
from avmix.timeline import Analysis, Timeline, file_hash, same_content

AUDIO, TIMELINE, ANALYSIS, VIDEO = "audio.wav", "timeline.json", "analysis.json", "video.mp4"
TRACKS = "tracks.json"  # the synth stage's list of text tracks (their audio is in the track cache)
ENCODED = "audio"  # + mux.EARLY_AUDIO's extension: the output's audio, encoded while the video renders
WORK_FILES = (TRACKS, AUDIO, TIMELINE, ANALYSIS, VIDEO, MANIFEST,
              *sorted({ENCODED + ext for ext in mux.EARLY_AUDIO.values()}))
WORK_BIT_DEPTH = 32  # float: the work audio is exact, stems sum to it
BACKENDS = tuple(b.value for b in Backend)


def label_from_name(path: str | os.PathLike) -> str:
    """'dog_barking-01.wav' -> 'dog barking 01'."""
    return re.sub(r"[\s_\-.]+", " ", Path(path).stem).strip() or Path(path).name


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


@contextlib.contextmanager
def _locked(workdir: Path) -> Iterator[None]:
    """One run per work directory at a time."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(workdir / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError("work directory is in use by another avmix run", path=workdir) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _work_path(workdir: str | os.PathLike | None, output: Path) -> tuple[Path, bool]:
    """(work directory, whether it is ours to remove: the default one beside the output)."""
    if workdir is None:
        return output.with_name(f".{output.name}.avmix-work"), True
    return Path(workdir), False


def _workdir(work: Path, ours: bool) -> None:
    """Create the work directory; refuses a non-empty directory that is not one."""
    if work.exists() and not work.is_dir():
        raise UsageError("work directory is not a directory", path=work)
    if work.is_dir() and not (work / MANIFEST).exists() and any(p.name != ".lock" for p in work.iterdir()):
        raise UsageError("not empty and not an avmix work directory (no manifest.json)", path=work,
                         hint="give a new or empty --workdir")
    try:
        work.mkdir(parents=not ours, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the work directory ({e.strerror})", path=work) from None


def _labels(labels: Sequence[str], inputs: list[Path], texts: dict, *, tagger: str | None) -> list[str]:
    """Each input's label (inputs not composed): its --label, else a text input's prompt, else its file
    name; "" where --tagger is to name it."""
    out = synth.labels_with_prompts(labels, {i: spec.prompt for i, spec in texts.items()}, len(inputs))
    return out if tagger else [x or label_from_name(p) for x, p in zip(out, inputs)]


def _check_apart(inputs: list[Path], out: Path, work: Path, *, ours: bool, texts: dict, sources: list | None,
                 pics: list[dict | None], opts: Options, chosen: str) -> list[Path]:
    """Before any work: every file the run reads kept apart from everything it writes, and those from each
    other. Returns the files read."""
    reads, labels = _files_read(inputs, texts=texts, sources=sources, pics=pics, opts=opts)
    writes = _files_written(out, work, reads, labels, ours=ours, pics=pics, opts=opts, chosen=chosen)
    paths.check_apart(writes, reads)
    return [p for _, p in reads]


def _files_read(inputs: list[Path], *, texts: dict, sources: list | None, pics: list[dict | None], opts: Options
                ) -> tuple[list[tuple[str, Path]], list[str]]:
    """(role, path) of the inputs, --image and --reference files, and a composed input's timeline, sources
    (``sources``: its timeline's, None for inputs not composed) and pictures; and each track's label (""
    where --tagger is to name it)."""
    co = opts.compose
    reads: list[tuple[str, Path]] = [("an input", p) for i, p in enumerate(inputs) if i not in texts]
    reads += [("an input (--image)", Path(img)) for img in co.images if img not in ("", "-")]
    if co.reference is not None:
        reads.append(("an input (--reference)", Path(co.reference)))
    if sources is None:
        return reads, _labels(co.labels, inputs, texts, tagger=opts.model.tagger)
    side = paths.sidecar(inputs[0])
    reads.append(("an input (its timeline)", side))
    for s in sources:
        with contextlib.suppress(InputError):  # a missing source is reported where it is read
            reads.append(("a source of the composed input", _find_source(s.path, side)))
    reads += [("a picture of the composed input", Path(pic["path"])) for pic in pics if pic]
    return reads, [co.labels[i] if i < len(co.labels) else s.label for i, s in enumerate(sources)]


def _files_written(out: Path, work: Path, reads: list[tuple[str, Path]], labels: list[str], *, ours: bool,
                   pics: list[dict | None], opts: Options, chosen: str) -> list[tuple[str, Path]]:
    """(role, path) of the output, --preview, --stems and its files, the work directory and its files.
    OutputError for a stem that may be a file read, or a file read or written inside a work directory
    that is removed after the run."""
    wo = opts.work
    writes: list[tuple[str, Path]] = [("the output", out)]
    if wo.preview is not None:
        writes.append(("--preview", Path(wo.preview)))
    if wo.stems is not None:
        d = Path(wo.stems)
        if d.exists() and not d.is_dir():
            raise OutputError("--stems must be a directory", path=d)
        writes.append(("--stems", d))
        for i, label in enumerate(labels):
            if label:
                writes.append(("a --stems file", d / paths.stem_name(i, label)))
                if chosen == "composite" and pics[i] is not None:
                    writes.append(("a --stems file", d / paths.stem_name(i, label, ".mp4")))
            else:  # --tagger names it later: any stem of this track may be it
                for what, r in reads:
                    if paths.same_path(r.parent, d) and re.fullmatch(re.escape(paths.stem_prefix(i)) + r".+\.(wav|mp4)", r.name):
                        raise OutputError(f"a --stems file may be the same file as {what}; refusing to "
                                          "overwrite it", path=r)
        writes.append(("a --stems file", d / "mix.wav"))
    if ours and not wo.keep:  # removed after the run, with all it holds
        for role, p in [*reads, *writes]:
            if paths.inside(p, work):
                raise OutputError(f"{role} is inside the work directory, which avmix removes after the run",
                                  path=p, hint="move it, or pass --keep or --workdir DIR")
    writes.append(("the work directory" if ours else "--workdir", work))
    writes += [("a file of the work directory", work / name) for name in (*WORK_FILES, ".lock")]
    return writes


class _Stages:
    """Runs or reuses cached stages, keeping timings and the manifest up to date."""

    def __init__(self, manifest: Manifest, *, no_cache: bool, progress: ProgressFn):
        self.manifest, self.no_cache, self.progress = manifest, no_cache, progress
        self.timings: dict[str, float] = {}
        self.reused: list[str] = []

    def run(self, name: str, stage_key: str, depends: dict, outputs: list[str], fn) -> dict | None:
        if self.reuse(name, stage_key):
            self.reused.append(name)
            report(self.progress, name, 1, 1)
            return self.manifest.stages[name].get("info")
        self.manifest.invalidate(name)
        t = time.perf_counter()
        info = fn()
        self.done(name, stage_key, depends, outputs, time.perf_counter() - t, info)
        return info

    def reuse(self, name: str, stage_key: str) -> bool:
        """Whether ``name`` is cached with this key and intact (then marked reused, in 0 s)."""
        if self.no_cache or not self.manifest.fresh(name, stage_key):
            return False
        self.manifest.mark_reused(name)
        self.timings[name] = 0.0
        return True

    def done(self, name: str, stage_key: str, depends: dict, outputs: list[str], seconds: float,
             info: dict | None = None) -> None:
        """Record a finished stage and its time."""
        self.manifest.record(name, stage_key, depends=depends, outputs=outputs, seconds=seconds, info=info)
        self.timings[name] = round(seconds, 4)


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
    pics = [None if i in texts and (pic or {}).get("kind") != "image" else pic  # text: only an --image
            for i, pic in enumerate(source_pictures(inputs, compose.images, sources=sources))]
    for pic in pics:
        if pic is not None and pic["kind"] == "image":  # a missing or unreadable image stops here, in one line
            from avmix.video import pictures

            pictures.probe(pic["path"])
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
    work, ours = _work_path(work_opts.workdir, out)
    keep = _check_apart(inputs, out, work, ours=ours, texts=texts, sources=sources, pics=pics, opts=opts,
                        chosen=chosen)
    if video.backend == "auto":
        note(f"backend {chosen}: {why}", quiet=quiet)

    _workdir(work, ours)
    started = time.perf_counter()
    try:
        from avmix.audio import io

        with sigterm_as_interrupt(), _locked(work), io.reuse_decoded():  # analysis reads compose's decodes
            result = _run(inputs, out, work, composed=composed, pics=pics, opts=opts, chosen=chosen, why=why,
                          overwrite=overwrite, progress=progress, quiet=quiet, texts=texts, keep=keep)
    except BaseException:
        if (work / MANIFEST).exists() and Manifest.load(work).stages:
            note(f"work directory kept: {work} (run the same command again to resume)", quiet=quiet)
        elif ours:  # no stage finished (e.g. an input would not open): nothing to resume
            shutil.rmtree(work, ignore_errors=True)
        raise
    result["timings"]["total"] = round(time.perf_counter() - started, 4)
    if ours and not work_opts.keep:
        shutil.rmtree(work, ignore_errors=True)
        result["workdir"] = None
    return result


def _run(inputs: list[Path], out: Path, work: Path, *, composed: bool, pics: list[dict | None], opts: Options,
         chosen: str, why: str,
         overwrite: bool, progress: ProgressFn, quiet: bool, texts: dict | None = None,
         keep: Sequence[Path] = ()) -> dict:
    man = Manifest.load(work)
    stages = _Stages(man, no_cache=opts.work.no_cache, progress=progress)
    co, vo, mo, wo = opts.compose, opts.video, opts.model, opts.work
    # -- synth: text:PROMPT inputs become cached files (outside the work directory, listed in tracks.json)
    tracks = _synth(inputs, texts or {}, work, opts, stages, progress, quiet) if texts else {}
    inputs = [Path(tracks[i].path) if i in tracks else p for i, p in enumerate(inputs)]
    hashes = [file_hash(p) for p in inputs]
    vers = versions()
    man.data.update(avmix=vers["avmix"], versions=vers, options=opts.flat(), seed=opts.video.seed,
                    inputs=[dict({"path": os.path.abspath(p), "hash": h, "bytes": p.stat().st_size},
                                 **({"text": tracks[i].spec.source} if i in tracks else {}))
                            for i, (p, h) in enumerate(zip(inputs, hashes))],
                    backend={"name": chosen, "reason": why}, output=os.fspath(out))
    man.save()

    # -- compose: audio.wav + timeline.json
    _import_soon("avmix.audio.analyze")  # scipy takes ~0.3 s of CPU to import: meanwhile ffmpeg decodes
    labels = list(co.labels)
    if not composed:  # a text track's label is its prompt unless --label gave one ("" = not given)
        labels = _labels(labels, inputs, texts or {}, tagger=mo.tagger)
        missing = [i for i, x in enumerate(labels) if not x]
        if mo.tagger and missing:
            from avmix.video import diffusion

            tagged = diffusion.tag_labels([os.fspath(inputs[i]) for i in missing], mo.tagger)
            for i, x in zip(missing, tagged):
                labels[i] = x
        labels = [x or label_from_name(p) for x, p in zip(labels, inputs)]
    compose_opts = {k: v for k, v in co.flat().items() if k != "labels"}  # labels are a dependency below
    depends = {"inputs": [{"path": os.path.abspath(p), "hash": h} for p, h in zip(inputs, hashes)],
               "labels": labels}
    images = [p for p in co.images if p not in ("", "-")]
    if images:  # their content, not only their names
        depends["images"] = [file_hash(p) for p in images]
    if composed:
        depends["timeline"] = file_hash(paths.sidecar(inputs[0]))
    else:
        depends["options"] = compose_opts
        if co.reference is not None:  # matched to the reference's sound: a changed reference is a new mix
            from avmix.audio.compose import open_reference

            open_reference(co.reference)  # missing, unreadable or too short: say so before any work
            depends["reference"] = file_hash(co.reference)
    k_compose = key("compose", depends)
    stages.run("compose", k_compose, depends, [AUDIO, TIMELINE],
               lambda: _compose(inputs, work, composed=composed, pics=pics, labels=labels, co=co,
                                hashes=hashes, progress=progress, quiet=quiet,
                                origins={i: t.origin for i, t in tracks.items()}))
    timeline = Timeline.load(work / TIMELINE)
    stems = _write_stems(timeline, work, wo.stems, [*inputs, *keep], overwrite=overwrite, man=man) if wo.stems else None

    # -- the mux's audio, encoded in the background meanwhile (cached)
    early = None
    try:
        early = _EarlyAudio(stages, k_compose, work, out)
        # -- analyze: analysis.json
        depends = {"compose": k_compose, "fps": vo.fps}
        k_analyze = key("analyze", depends)

        def _analyze() -> None:
            from avmix.audio import analyze

            analyze.analyze(timeline, work / AUDIO, fps=vo.fps, progress=progress).save(work / ANALYSIS)

        stages.run("analyze", k_analyze, depends, [ANALYSIS], _analyze)
        analysis = Analysis.load(work / ANALYSIS)

        # -- video: video.mp4 (silent)
        depends = {"analyze": k_analyze, "backend": chosen, "size": list(vo.size), "seed": vo.seed,
                   "captions": vo.captions, "crf": vo.crf}
        if chosen == "composite":
            depends.update(layout=vo.layout, pip_position=vo.pip_position, pip_size=vo.pip_size,
                           pictures=[s.picture for s in timeline.sources])
        if chosen == "diffusion":
            depends.update({k: getattr(mo, k) for k in ("model", "device", "prompt", "negative_prompt", "steps",
                                                        "guidance")})
        video_info = stages.run("video", key("video", depends), depends, [VIDEO],
                                lambda: _video(chosen, analysis, timeline, work, opts, progress))

        if wo.stems and chosen == "composite":  # each picture as it sits in the video, beside its sound
            stems["pictures"] = _write_picture_stems(timeline, analysis, wo.stems, [*inputs, *keep], opts,
                                                     overwrite=overwrite, man=man, progress=progress)
        encoded = early.finish()
    finally:
        if early is not None:
            early.cancel()  # an error or Ctrl-C: no encode outlives the run

    # -- mux: OUT (always; the video is H.264 of the right length, so it is copied, not re-encoded)
    t = time.perf_counter()
    known = None  # the built-in backends write exactly the analysis' frames: no probe needed
    if chosen != "diffusion":
        from avmix.video import writer
        known = writer.described(work / VIDEO, width=vo.size[0], height=vo.size[1], fps=analysis.fps,
                                 frames=analysis.frames)
    muxed = mux.render(work / VIDEO, work / AUDIO, out, fit="audio", crf=vo.crf, preset=vo.preset,
                       overwrite=overwrite, progress=progress, encoded_audio=encoded, video_info=known)
    stages.timings["mux"] = round(time.perf_counter() - t, 4)

    preview = None
    if wo.preview:
        t = time.perf_counter()
        from avmix.video import preview as preview_mod

        preview_mod.contact_sheet(work / VIDEO, analysis, wo.preview)  # writes atomically itself
        preview = wo.preview
        stages.timings["preview"] = round(time.perf_counter() - t, 4)

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


class _EarlyAudio:
    """The mux stage's audio: the composed audio encoded for the output's container (mux.AudioEncode) by
    an ffmpeg that runs while the analysis and the video stage do, so that the mux only copies streams.
    The file is cached in the manifest under "audio", keyed on compose's key and the encoder: a run that
    changes only video options reuses it. (Part of the mux, which always runs, so not in "reused".)
    Containers whose mux must encode the audio itself (see mux.EARLY_AUDIO) have no such file."""

    def __init__(self, stages: _Stages, k_compose: str, work: Path, out: Path):
        self.stages, self.job, self.path = stages, None, None
        ext = mux.EARLY_AUDIO.get(out.suffix.lower())
        if ext is None:
            return
        self.name = ENCODED + ext
        self.depends = {"compose": k_compose, "codec": mux.container(out)[2], "bitrate": mux.AUDIO_BITRATE}
        self.key = key("audio", self.depends)
        if stages.reuse("audio", self.key):
            self.path = work / self.name
            return
        m = stages.manifest
        if m.stages.pop("audio", None) is not None:  # the old file is about to be replaced
            m.save()
        self.started = time.perf_counter()
        self.job = mux.AudioEncode(work / AUDIO, work / self.name, out)

    def finish(self) -> Path | None:
        """The encoded file (waiting for the encode to end), recorded in the manifest; None: no such stage."""
        if self.job is not None:
            self.path, self.job = self.job.wait(), None
            # wall time, overlapping the stages it ran beside
            self.stages.done("audio", self.key, self.depends, [self.name], time.perf_counter() - self.started)
        return self.path

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job = None


def _import_soon(name: str) -> None:
    """Import a later stage's module in a background thread, while this one mostly waits on ffmpeg.
    A failure is left to the stage's own import, which reports it."""
    import importlib
    import threading

    def load() -> None:
        try:
            importlib.import_module(name)
        except Exception:
            pass

    threading.Thread(target=load, name="avmix-import", daemon=True).start()


def _compose(inputs: list[Path], work: Path, *, composed: bool, pics: list[dict | None], labels: list[str],
             co: ComposeOptions,
             hashes: list[str], progress: ProgressFn, quiet: bool, origins: dict[int, dict] | None = None) -> None:
    from avmix.audio import compose, io, plan, writer

    if composed:  # one already-composed file: take its timeline, copy its audio at the timeline's format
        side = paths.sidecar(inputs[0])
        timeline = Timeline.load(side)
        for source, label in zip(timeline.sources, labels):
            source.label = label
        for source in timeline.sources:  # the analysis reads each source again: find it, check it
            source.path = os.fspath(_find_source(source.path, side))
            if source.hash and not same_content(source.path, source.hash):
                raise InputError(f"source {source.index} changed since the audio was composed", path=source.path,
                                 hint=f"compose {inputs[0]} again")
        audio = io.open_audio(inputs[0])
        with writer.AudioWriter(work / AUDIO, sample_rate=timeline.sample_rate, channels=timeline.channels,
                                bit_depth=WORK_BIT_DEPTH, frames=timeline.frames) as w:
            for block in audio.blocks(sample_rate=timeline.sample_rate, channels=timeline.channels,
                                      frames=timeline.frames):
                w.write(block)
        timeline.output = os.fspath(work / AUDIO)
        for source, pic in zip(timeline.sources, pics):
            source.picture = pic  # the composed file's pictures, with any --image given now
        timeline.save(work / TIMELINE)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:  # each decode is an ffmpeg of its own: side by side
        files = list(pool.map(io.open_audio, inputs))
    planned = plan.plan(co.mode, files, settings=co.settings(labels), **co.mode_options())
    # with --reference, the "after" figures of --json: an analysis pass of the composed audio
    timeline = compose.render(planned, work / AUDIO, bit_depth=WORK_BIT_DEPTH, progress=progress, quiet=quiet,
                              loudness=co.reference is not None)
    for source, h in zip(timeline.sources, hashes):  # hashed once already, for the manifest
        source.hash = h
    for i, origin in (origins or {}).items():
        timeline.sources[i].origin = origin
    for source, pic in zip(timeline.sources, pics):
        source.picture = pic
    timeline.save(work / TIMELINE)


def _synth(inputs: list[Path], texts: dict, work: Path, opts: Options, stages: _Stages, progress: ProgressFn,
           quiet: bool) -> dict:
    """The synth stage: every text track made or taken from the track cache; ``tracks.json`` in the work
    directory lists them (the files stay in the cache, where the timeline points, so they outlive the run)."""
    import json

    settings = opts.synth.settings(seed=opts.video.seed, device=opts.model.device)
    raw = [texts[i].source if i in texts else os.fspath(p) for i, p in enumerate(inputs)]  # Path() may alter text
    t = time.perf_counter()
    tracks = synth.synthesize(raw, settings, on_step=synth.progress_to(progress, texts))
    seconds = time.perf_counter() - t
    for track in tracks.values():
        synth.note_track(track, quiet=quiet)
    info = {"tracks": [dict(t.origin, cached=t.cached) for t in tracks.values()]}
    paths.write_text_atomic(work / TRACKS, json.dumps({"schema": "avmix.tracks/1", **info}, indent=2) + "\n")
    depends = {"texts": {str(i): s.source for i, s in texts.items()}, "settings": opts.synth.flat(),
               "seed": opts.video.seed, "device": opts.model.device}
    stages.manifest.record("synth", key("synth", depends), depends=depends, outputs=[TRACKS], seconds=seconds,
                           info=info)
    stages.timings["synth"] = round(seconds, 4)
    if all(t.cached for t in tracks.values()):
        stages.manifest.mark_reused("synth")
        stages.reused.append("synth")
    return tracks


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


def _find_source(name: str, sidecar: Path) -> Path:
    """A timeline's source path: as written (absolute or from here), else beside the timeline file."""
    p = Path(name)
    for candidate in ([p] if p.is_absolute() else [p, sidecar.parent / p]):
        if candidate.is_file():
            return candidate.resolve()
    raise InputError("source of the composed audio not found", path=name,
                     hint=f"the timeline {sidecar} refers to it; compose again or restore the file")


def _video(backend: str, analysis: Analysis, timeline: Timeline, work: Path, opts: Options,
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


def _write_picture_stems(timeline: Timeline, analysis: Analysis, stems_dir: str, inputs: list[Path], opts: Options,
                         *, overwrite: bool, man: Manifest, progress: ProgressFn) -> list[str]:
    """``NN-slug.mp4`` beside ``NN-slug.wav`` for every source with a picture: its picture full-frame and
    unlit, where the timeline puts it (silent H.264 at the video's size and fps)."""
    from avmix.video import composite

    d = Path(stems_dir)
    width, height = opts.video.size
    ours = set(man.data.get("stems_written") or [])
    todo = [(i, d / paths.stem_name(i, s.label, ".mp4")) for i, s in enumerate(timeline.sources)
            if isinstance(s.picture, dict) and s.picture.get("path")]
    for _, target in todo:
        paths.check_output(target, inputs, overwrite=overwrite or os.path.abspath(target) in ours)
    man.data["stems_written"] = sorted(ours | {os.path.abspath(t) for _, t in todo})
    man.save()
    for i, target in todo:
        composite.render(timeline, analysis, target, width=width, height=height, only=i, crf=opts.video.crf,
                         progress=progress)
    return [t.name for _, t in todo]


def _write_stems(timeline: Timeline, work: Path, stems_dir: str, inputs: list[Path], *, overwrite: bool,
                 man: Manifest) -> dict:
    """Each source exactly as it sits in the composed audio (float WAV, full length) plus mix.wav.

    Existing files are replaced with ``overwrite`` or when this work directory wrote them (a resumed run).
    """
    from avmix.audio import compose, writer

    d = Path(stems_dir)  # checked to be a directory (or none yet) with the other outputs, before any work
    try:
        d.mkdir(exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the stems directory ({e.strerror})", path=d) from None
    names = [paths.stem_name(i, s.label) for i, s in enumerate(timeline.sources)]
    ours = set(man.data.get("stems_written") or [])
    targets = [os.path.abspath(d / name) for name in names + ["mix.wav"]]
    for t in targets:
        paths.check_output(t, inputs, overwrite=overwrite or t in ours)
    man.data["stems_written"] = sorted(ours | set(targets))
    man.save()
    for i, name in enumerate(names):
        with writer.AudioWriter(d / name, sample_rate=timeline.sample_rate, channels=timeline.channels,
                                bit_depth=WORK_BIT_DEPTH, frames=timeline.frames) as w:
            for block in compose.source_blocks(timeline, i):
                w.write(block)
    with paths.atomic_path(d / "mix.wav") as tmp:
        shutil.copyfile(work / AUDIO, tmp)
    return {"dir": os.fspath(d), "files": names, "mix": "mix.wav"}
