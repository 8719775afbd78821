"""The audio stages of ``generate``, each with its cache key: synth (text tracks into the track cache),
compose (audio.wav + timeline.json in the work directory) and analyze (analysis.json); and the tracks'
labels and a composed input's sources, which the checks before any work read too."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Sequence

from avmix import heap, paths, synth
from avmix.errors import InputError
from avmix.manifest import key
from avmix.options import ComposeOptions, Options
from avmix.pipeline.workdir import ANALYSIS, AUDIO, TIMELINE, TRACKS, WORK_BIT_DEPTH, Stages
from avmix.progress import ProgressFn
from avmix.timeline import Timeline, file_hash, same_content


def label_from_name(path: str | os.PathLike) -> str:
    """'dog_barking-01.wav' -> 'dog barking 01'."""
    return re.sub(r"[\s_\-.]+", " ", Path(path).stem).strip() or Path(path).name


def track_labels(labels: Sequence[str], inputs: list[Path], texts: dict, *, tagger: str | None) -> list[str]:
    """Each input's label (inputs not composed): its --label, else a text input's prompt, else its file
    name; "" where --tagger is to name it."""
    out = synth.labels_with_prompts(labels, texts, len(inputs))
    return out if tagger else [x or label_from_name(p) for x, p in zip(out, inputs)]


def find_source(name: str, sidecar: Path) -> Path:
    """A timeline's source path: as written (absolute or from here), else beside the timeline file."""
    p = Path(name)
    for candidate in ([p] if p.is_absolute() else [p, sidecar.parent / p]):
        if candidate.is_file():
            return candidate.resolve()
    raise InputError("source of the composed audio not found", path=name,
                     hint=f"the timeline {sidecar} refers to it; compose again or restore the file")


def run_synth(inputs: list[Path], texts: dict, work: Path, opts: Options, stages: Stages, progress: ProgressFn,
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


def run_compose(inputs: list[Path], work: Path, *, composed: bool, pics: list[dict | None], opts: Options,
                texts: dict, tracks: dict, hashes: list[str], stages: Stages, progress: ProgressFn,
                quiet: bool) -> str:
    """The compose stage: audio.wav + timeline.json. Returns its key, which the later stages' keys build on."""
    co, mo = opts.compose, opts.model
    _import_soon("avmix.audio.analyze")  # scipy takes ~0.3 s of CPU to import: meanwhile ffmpeg decodes
    labels = list(co.labels)
    if not composed:  # a text track's label is its prompt unless --label gave one ("" = not given)
        labels = track_labels(labels, inputs, texts, tagger=mo.tagger)
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
    return k_compose


def run_analyze(timeline: Timeline, work: Path, *, fps: float, k_compose: str, stages: Stages,
                progress: ProgressFn) -> str:
    """The analyze stage: analysis.json, the work audio read at the video's frame rate. Returns its key."""
    depends = {"compose": k_compose, "fps": fps}
    k_analyze = key("analyze", depends)

    def _analyze() -> None:
        from avmix.audio import analyze

        analyze.analyze(timeline, work / AUDIO, fps=fps, progress=progress).save(work / ANALYSIS)
        heap.give_back()

    stages.run("analyze", k_analyze, depends, [ANALYSIS], _analyze)
    return k_analyze


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
            source.path = os.fspath(find_source(source.path, side))
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
