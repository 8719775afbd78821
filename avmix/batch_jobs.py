"""Reading a jobs file for :mod:`avmix.batch`: one ``generate`` job per row, checked before anything runs.

Jobs file, one job per row:

* JSONL (``.jsonl``/``.ndjson``/``.json``, or any file whose first character is ``{``): one JSON
  object per line; blank lines and lines starting with ``#`` are skipped.
* CSV: a header row naming the fields; list fields (``inputs``, ``labels``, ``gains``, ...) hold
  their items separated by ``;`` (:data:`LIST_SEP`); an empty cell means "not given".

Fields: ``inputs`` (list of paths, relative to the jobs file, or ``text:PROMPT[@SECONDS]`` tracks to
synthesise, which are not paths; in CSV a prompt containing ``;`` is quoted inside the cell: the cell
``"text:rain; wind@4";dog.wav``, written with CSV's doubled quotes in the file; JSONL needs no quoting), ``output`` (a file name inside OUTDIR,
sub-directories allowed; an absolute path, ``..`` or a symlink leading out of OUTDIR fails that job),
and any option of :class:`avmix.options.Options` by its name, with ``-`` or ``_``
(``"size": "640x360"``, ``"backend": "procedural"``, ``"at": 1.5``, ``"label"``/``"labels"``,
``"no-limit": true``). Output-side paths (``workdir``, ``preview``, ``stems``) are inside OUTDIR like
``output``. A malformed file (bad JSON, missing ``inputs``/``output``, a value of the wrong type) is
rejected as a whole before anything runs (UsageError naming the file and line), and so is a file
that two jobs write, or that one job writes and a job reads (an input, ``image``, ``reference``, a file
inside a ``stems``/``workdir`` directory, or the jobs file): jobs run at once and in any order. An option
that ``generate`` does not know fails only that job.
"""
from __future__ import annotations

import csv
import inspect
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from avmix.errors import UsageError
from avmix import paths
from avmix.paths import read_text
from avmix.synth.spec import is_text

LIST_SEP = ";"
RECORD_SUFFIX = ".job.json"
SUMMARY_NAME = "batch.json"
ALIASES = {"label": "labels", "gain": "gains", "image": "images"}  # the CLI flags are singular
# Options batch sets itself: not allowed in a jobs file.
MANAGED = {"inputs", "output", "overwrite", "progress", "quiet"}
SIZE_RE = re.compile(r"^\s*(\d{1,6})\s*[xX]\s*(\d{1,6})\s*$")


@dataclass
class Job:
    """One row of the jobs file, checked and with paths made absolute."""

    index: int
    line: int
    output: str  # as written in the jobs file
    inputs: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    target: str = ""  # absolute output path
    error: str | None = None  # this job fails without running (unknown option, escaping output)


# ------------------------------------------------------------------------------- generate options


def _options(generate: Callable | None = None) -> tuple[dict[str, Any], set[str] | None]:
    """The options a job may set, by name -> field (from :class:`avmix.options.Options`), and, for a
    stand-in ``generate`` without ``**kwargs``, the names its signature takes (None: any option)."""
    from avmix.options import Options

    known = {name: f for name, (_, f) in Options.by_name().items() if name not in MANAGED}
    if generate is None:
        return known, None
    params = inspect.signature(generate).parameters.values()
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return known, None
    return known, {p.name for p in params}


def _kind(name: str, f: Any) -> str:
    """'bool', 'int', 'float', 'str', 'size', 'list:str', 'list:num' or 'any', from the field's type."""
    if f is None:
        return "any"
    if name == "size":
        return "size"
    ann = str(f.type).replace("typing.", "").lower()
    if m := re.search(r"\b(?:list|sequence|tuple)\[(\w+)", ann):
        return "list:str" if m.group(1) == "str" else "list:num" if m.group(1) in ("float", "int") else "list"
    for key in ("bool", "float", "int", "str"):
        if re.search(rf"\b{key}\b", ann):
            return key
    return "any"


def _path_kind(f: Any) -> str | None:
    from avmix.options import flag_of

    flag = flag_of(f) if f is not None else None
    return flag.path if flag else None


def _parse_scalar(text: str, kind: str) -> Any:
    t = text.strip()
    if kind == "bool":
        low = t.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {text!r}")
    if kind == "int":
        return int(t)
    if kind == "float":
        return float(t)
    try:  # "any" / list items: numbers stay numbers
        return float(t) if re.fullmatch(r"[-+]?\d*\.?\d+(e[-+]?\d+)?", t, re.I) else t
    except ValueError:
        return t


def _coerce(name: str, value: Any, kind: str, from_csv: bool) -> Any:
    """A jobs-file value as the type generate() takes; ValueError says what is wrong."""
    if kind == "size":
        if isinstance(value, str) and (m := SIZE_RE.match(value)):
            return (int(m.group(1)), int(m.group(2)))
        if (isinstance(value, (list, tuple)) and len(value) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            return (value[0], value[1])
        raise ValueError(f"expected WxH such as \"640x360\", got {value!r}")
    if from_csv:
        if kind.startswith("list"):
            items = split_list(value)
            return items if kind == "list:str" else [_parse_scalar(v, "float" if kind == "list:num" else "any")
                                                     for v in items]
        return _parse_scalar(value, kind) if kind != "str" else value
    if kind == "bool" and not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"expected an integer, got {value!r}")
    if kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"expected a number, got {value!r}")
    if kind == "str" and not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if kind.startswith("list"):
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {value!r}")
        if kind == "list:str" and not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected a list of strings, got {value!r}")
        if kind == "list:num" and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ValueError(f"expected a list of numbers, got {value!r}")
    return value


def _option_name(key: str) -> str:
    name = key.strip().lstrip("-").lower().replace("-", "_")
    return ALIASES.get(name, name)


# ------------------------------------------------------------------------------------ jobs file


def _rows(path: Path, text: str) -> list[tuple[int, dict[str, Any], bool]]:
    """(line, raw fields, from_csv) for every job row; UsageError for a malformed file."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json") or stripped.startswith("{"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            s = line.strip().lstrip("\ufeff")
            if not s or s.startswith("#"):
                continue
            try:
                obj = json.loads(s)
            except (json.JSONDecodeError, RecursionError) as e:
                raise UsageError(f"line {n}: invalid JSON ({getattr(e, 'msg', 'nested too deeply')})",
                                 path=path) from None
            if not isinstance(obj, dict):
                raise UsageError(f"line {n}: expected a JSON object, got {type(obj).__name__}", path=path)
            rows.append((n, obj, False))
        return rows
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = next(reader, None)
        if not header:
            return []
        names = [h.strip() for h in header]
        rows = []
        for cells in reader:
            n = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(names):
                raise UsageError(f"line {n}: {len(cells)} fields but the header has {len(names)}", path=path)
            rows.append((n, {k: v for k, v in zip(names, cells) if k and v.strip()}, True))
    except csv.Error as e:
        raise UsageError(f"line {reader.line_num}: bad CSV ({e})", path=path) from None
    return rows


def split_list(cell: str) -> list[str]:
    """A CSV cell's list items: split on ``;`` except inside double quotes (a prompt may hold ``;``)."""
    items = next(csv.reader([cell], delimiter=LIST_SEP, quotechar='"', skipinitialspace=True), [])
    return [v.strip() for v in items if v.strip()]


def _resolve(base: Path, value: Any) -> Any:
    if isinstance(value, list):
        return [_resolve(base, v) for v in value]
    if isinstance(value, str) and value not in ("", "-"):
        return os.fspath(base / os.path.expanduser(value))
    return value


def _safe_output(outdir: Path, name: str, what: str = "output") -> Path:
    """``outdir/name`` if it stays inside ``outdir`` (symlinks followed); ValueError otherwise."""
    if "\x00" in name:
        raise ValueError("output name contains a NUL byte")
    if os.path.isabs(name) or name.startswith(("\\", "/")) or re.match(r"^[A-Za-z]:", name):
        raise ValueError(f"{what} {name!r} is an absolute path; give a file name inside the output directory")
    parts = re.split(r"[\\/]+", name)
    if ".." in parts:
        raise ValueError(f"{what} {name!r} leads out of the output directory ('..')")
    if not name.strip() or name.endswith(("/", "\\")) or parts[-1] in ("", "."):
        raise ValueError(f"{what} {name!r} is not a file name")
    root = os.path.realpath(outdir)
    real = os.path.realpath(os.path.join(root, name))
    if not paths.inside(real, root):
        raise ValueError(f"{what} {name!r} leads out of the output directory (through a symlink)")
    if os.path.basename(real) == SUMMARY_NAME or real.endswith(RECORD_SUFFIX):
        raise ValueError(f"{what} {name!r} is a name batch uses for its own records")
    return Path(root) / name


def read_jobs(jobs_file: str | os.PathLike, outdir: str | os.PathLike, *,
              generate: Callable | None = None) -> list[Job]:
    """Parse and check a jobs file. Raises InputError (unreadable) or UsageError (malformed)."""
    path = Path(jobs_file)
    text = read_text(path, "jobs")
    base, out = path.resolve().parent, Path(outdir)
    known, takes = _options(generate)
    jobs: list[Job] = []
    for line, raw, from_csv in _rows(path, text):
        where = f"line {line}"
        fields = {_option_name(k): v for k, v in raw.items() if isinstance(k, str)}
        inputs = fields.pop("inputs", fields.pop("input", None))
        output = fields.pop("output", None)
        if inputs is None:
            raise UsageError(f"{where}: missing 'inputs'", path=path)
        if output is None:
            raise UsageError(f"{where}: missing 'output'", path=path)
        if from_csv:
            inputs = split_list(inputs)
        elif isinstance(inputs, str):
            inputs = [inputs]
        if (not isinstance(inputs, list) or not inputs
                or not all(isinstance(s, str) and s.strip() for s in inputs)):
            raise UsageError(f"{where}: 'inputs' must be a non-empty list of file names", path=path)
        if not isinstance(output, str) or not output.strip():
            raise UsageError(f"{where}: 'output' must be a file name", path=path)
        job = Job(index=len(jobs), line=line, output=output,
                  inputs=[s if is_text(s) else os.fspath(base / os.path.expanduser(s)) for s in inputs])
        try:
            job.target = os.fspath(_safe_output(out, output))
        except ValueError as e:
            job.error = str(e)
        for name, value in fields.items():
            if name.startswith("no_") and _kind(name[3:], known.get(name[3:])) == "bool":
                try:
                    flag = _coerce(name, value, "bool", from_csv)
                except ValueError as e:
                    raise UsageError(f"{where}: option {name!r}: {e}", path=path) from None
                job.options[name[3:]] = not flag
                continue
            if name in MANAGED:
                job.error = job.error or f"option {name!r} is set by batch itself and cannot be given per job"
                continue
            if value is None:  # null: the default
                continue
            if name not in known or (takes is not None and name not in takes):
                job.error = job.error or f"unknown option {name!r} (not an option of avmix generate)"
                continue
            try:
                value = _coerce(name, value, _kind(name, known[name]), from_csv)
            except ValueError as e:
                raise UsageError(f"{where}: option {name!r}: {e}", path=path) from None
            where_to = _path_kind(known[name])
            if where_to == "output" and isinstance(value, str):
                try:
                    value = os.fspath(_safe_output(out, value, name))
                except ValueError as e:
                    job.error = job.error or str(e)
                    continue
            elif where_to == "input":  # relative to the jobs file, like the inputs ('-' means none)
                value = _resolve(base, value)
            job.options[name] = value
        jobs.append(job)
    if not jobs:
        raise UsageError("no jobs in the file", path=path)
    _check_overlaps(path, jobs, known)
    return jobs


def _check_overlaps(path: Path, jobs: list[Job], known: dict[str, Any]) -> None:
    """UsageError if two jobs write the same file, or a job writes a file that a job (itself or
    another) reads, or the jobs file: jobs run in any order and at once, so one would clobber the other."""
    outs: dict[Any, tuple[int, str, str]] = {}  # real path or inode -> (line, field, path) of the writer
    for j in jobs:
        if j.error:  # it will not run
            continue
        written = [("output", j.target)]
        written += [(name, v) for name, v in j.options.items()
                    if isinstance(v, str) and _path_kind(known.get(name)) == "output"]
        for what, p in written:
            keys = paths.file_keys(p)
            hit = next((outs[k] for k in keys if k in outs), None)
            if hit is not None:
                by = "this job's " + hit[1] if hit[0] == j.line else f"the job on line {hit[0]}"
                raise UsageError(f"line {j.line}: {what} {p} is also written by {by}", path=path)
            outs.update((k, (j.line, what, p)) for k in keys)
    for key, (line, what, p) in list(outs.items()):  # nor inside another job's folder (--workdir, --stems)
        for parent in (map(str, Path(key).parents) if isinstance(key, str) else ()):
            hit = outs.get(parent)
            if hit is not None and hit[0] != line and hit[1] in ("workdir", "stems"):
                raise UsageError(f"line {line}: {what} {p} lies inside {hit[1]} {hit[2]} of the job on line "
                                 f"{hit[0]}; batch would overwrite it", path=path)
    reads = [(0, os.fspath(path))]  # the jobs file itself
    for j in jobs:
        reads += [(j.line, p) for p in j.inputs if not is_text(p)]
        for name, v in j.options.items():
            if _path_kind(known.get(name)) == "input":
                reads += [(j.line, p) for p in (v if isinstance(v, list) else [v])
                          if isinstance(p, str) and p not in ("", "-")]
    for line, p in reads:
        keys = paths.file_keys(p)
        hit, held = next((outs[k] for k in keys if k in outs), None), "is"
        if hit is None:  # or a directory output holding it (--stems, --workdir)
            hit = next((outs[d] for d in map(str, Path(keys[0]).parents) if d in outs), None)
            held = f"holds {p},"
        if hit is None:
            continue
        w_line, what, w_path = hit
        whose = ("the jobs file" if line == 0 else "an input of this job" if line == w_line
                 else f"an input of the job on line {line}")
        raise UsageError(f"line {w_line}: {what} {w_path} {held} {whose}; batch would overwrite it", path=path)
