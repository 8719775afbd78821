"""The files a ``generate`` run reads and writes, listed before any work so that they are kept apart: no file
written may be a file read or another file written, and none may sit in a work directory removed after the run."""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

from avmix import paths
from avmix.errors import InputError, OutputError
from avmix.options import Options
from avmix.pipeline.audio import find_source, track_labels
from avmix.pipeline.workdir import WORK_FILES


def check_apart(inputs: list[Path], out: Path, work: Path, *, ours: bool, texts: dict, sources: list | None,
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
        return reads, track_labels(co.labels, inputs, texts, tagger=opts.model.tagger)
    side = paths.sidecar(inputs[0])
    reads.append(("an input (its timeline)", side))
    for s in sources:
        with contextlib.suppress(InputError):  # a missing source is reported where it is read
            reads.append(("a source of the composed input", find_source(s.path, side)))
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
