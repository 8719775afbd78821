"""``--stems``: each source exactly as it sits in the composed audio, plus mix.wav, and with the composite
backend each picture as it sits in the video. A resumed run may replace the files its work directory wrote."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from avmix import paths
from avmix.errors import OutputError
from avmix.manifest import Manifest
from avmix.options import Options
from avmix.pipeline.workdir import AUDIO, WORK_BIT_DEPTH
from avmix.progress import ProgressFn
from avmix.timeline import Analysis, Timeline


def write_stems(timeline: Timeline, work: Path, stems_dir: str, inputs: list[Path], *, overwrite: bool,
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


def write_picture_stems(timeline: Timeline, analysis: Analysis, stems_dir: str, inputs: list[Path], opts: Options,
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

