"""Rendering many ``generate`` jobs from a JSONL or CSV file, on a local process pool or on Ray.

Jobs file, one job per row:

* JSONL (``.jsonl``/``.ndjson``/``.json``, or any file whose first character is ``{``): one JSON
  object per line; blank lines and lines starting with ``#`` are skipped.
* CSV: a header row naming the fields; list fields (``inputs``, ``labels``, ``gains``, ...) hold
  their items separated by ``;`` (:data:`LIST_SEP`); an empty cell means "not given".

Fields: ``inputs`` (list of paths, relative to the jobs file), ``output`` (a file name inside OUTDIR,
sub-directories allowed; an absolute path, ``..`` or a symlink leading out of OUTDIR fails that job),
and any option of :func:`avmix.pipeline.generate` by its long name, with ``-`` or ``_``
(``"size": "640x360"``, ``"backend": "procedural"``, ``"at": 1.5``, ``"label"``/``"labels"``,
``"no-limit": true``). Output-side paths (``workdir``, ``preview``, ``stems``) are inside OUTDIR like
``output``. A malformed file (bad JSON, missing ``inputs``/``output``, a value of the wrong type) is
rejected as a whole before anything runs (UsageError naming the file and line); an option that
``generate`` does not know fails only that job.

After a job succeeds, ``OUTDIR/<output>.job.json`` records a hash of the job (input contents, output
name, options) and the output's size and mtime. A later run skips a job whose output and record are
still there and match; a changed input or option reruns it; ``force`` reruns everything.
``OUTDIR/batch.json`` records every job's status (ok / failed / skipped), timings and error.
"""
from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import logging
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from avmix.errors import AvmixError, InputError, UsageError
from avmix.paths import read_text, write_text_atomic
from avmix.progress import ProgressFn, report
from avmix.signals import sigterm_as_interrupt

BATCH_SCHEMA = "avmix.batch/1"
JOB_SCHEMA = "avmix.batchjob/1"
LIST_SEP = ";"
RECORD_SUFFIX = ".job.json"
SUMMARY_NAME = "batch.json"
ENGINES = ("local", "ray")
ALIASES = {"label": "labels", "gain": "gains"}
# Options batch sets itself: not allowed in a jobs file.
MANAGED = {"inputs", "output", "overwrite", "progress", "quiet"}
OUTPUT_PATH_OPTIONS = {"workdir", "preview", "stems"}
STOP_TIMEOUT = 30.0  # seconds interrupted jobs get to clean up before they are killed
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


def _generate_params(generate: Callable | None = None) -> tuple[dict[str, inspect.Parameter], bool]:
    """generate()'s keyword parameters (minus the ones batch manages) and whether it takes **kwargs."""
    if generate is None:
        from avmix.pipeline import generate

    params, var_kw = {}, False
    for name, p in inspect.signature(generate).parameters.items():
        if p.kind == p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and name not in MANAGED:
            params[name] = p
    return params, var_kw


def _kind(p: inspect.Parameter | None) -> str:
    """'bool', 'int', 'float', 'str', 'size', 'list' or 'any', from the annotation, else the default."""
    if p is None:
        return "any"
    if p.name == "size":
        return "size"
    ann = p.annotation
    ann = "" if ann is inspect.Parameter.empty else (ann if isinstance(ann, str) else str(ann))
    ann = ann.replace("typing.", "").lower()
    if m := re.search(r"\b(?:list|sequence|tuple)\[(\w+)", ann):
        return "list:str" if m.group(1) == "str" else "list:num" if m.group(1) in ("float", "int") else "list"
    for key, kind in (("list", "list"), ("sequence", "list"), ("tuple", "list"), ("bool", "bool"),
                      ("float", "float"), ("int", "int"), ("str", "str")):
        if re.search(rf"\b{key}\b", ann):
            return kind
    d = p.default
    for typ, kind in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), ((list, tuple), "list")):
        if isinstance(d, typ):
            return kind
    return "any"


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
            items = [v.strip() for v in value.split(LIST_SEP) if v.strip()]
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
    if not real.startswith(root + os.sep):
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
    params, var_kw = _generate_params(generate)
    jobs: list[Job] = []
    seen: dict[str, int] = {}
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
            inputs = [s.strip() for s in inputs.split(LIST_SEP) if s.strip()]
        elif isinstance(inputs, str):
            inputs = [inputs]
        if (not isinstance(inputs, list) or not inputs
                or not all(isinstance(s, str) and s.strip() for s in inputs)):
            raise UsageError(f"{where}: 'inputs' must be a non-empty list of file names", path=path)
        if not isinstance(output, str) or not output.strip():
            raise UsageError(f"{where}: 'output' must be a file name", path=path)
        job = Job(index=len(jobs), line=line, output=output,
                  inputs=[os.fspath(base / os.path.expanduser(s)) for s in inputs])
        try:
            job.target = os.fspath(_safe_output(out, output))
        except ValueError as e:
            job.error = str(e)
        if job.target and job.target in seen:
            job.error = f"same output as the job on line {seen[job.target]}"
        elif job.target:
            seen[job.target] = line
        for name, value in fields.items():
            if name.startswith("no_") and name[3:] in params and _kind(params[name[3:]]) == "bool":
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
            if name not in params and not var_kw:
                job.error = job.error or f"unknown option {name!r} (not an option of avmix generate)"
                continue
            try:
                value = _coerce(name, value, _kind(params.get(name)), from_csv)
            except ValueError as e:
                raise UsageError(f"{where}: option {name!r}: {e}", path=path) from None
            if name in OUTPUT_PATH_OPTIONS and isinstance(value, str):
                try:
                    value = os.fspath(_safe_output(out, value, name))
                except ValueError as e:
                    job.error = job.error or str(e)
                    continue
            job.options[name] = value
        jobs.append(job)
    if not jobs:
        raise UsageError("no jobs in the file", path=path)
    return jobs


# --------------------------------------------------------------------------------- records, hashes


def job_hash(job: Job, seen: dict[str, str] | None = None) -> str:
    """A hash of what the job makes: input contents, output name and options. ``seen`` caches file
    hashes across the jobs of one batch (a music bed shared by every row is read once)."""
    from avmix.timeline import file_hash

    seen = {} if seen is None else seen
    ins = []
    for p in job.inputs:
        if p not in seen:
            try:
                seen[p] = file_hash(p)
            except OSError:
                seen[p] = "unreadable"
        ins.append([p, seen[p]])
    blob = json.dumps({"inputs": ins, "output": job.output, "options": job.options}, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def record_path(target: str | os.PathLike) -> Path:
    p = Path(target)
    return p.with_name(p.name + RECORD_SUFFIX)


def completed(target: str, digest: str) -> dict[str, Any] | None:
    """The record of a finished job if its output is still the one it wrote, else None."""
    rec_path = record_path(target)
    try:
        rec = json.loads(rec_path.read_text(encoding="utf-8"))
        st = os.stat(target)
    except (OSError, ValueError):
        return None
    if (isinstance(rec, dict) and rec.get("schema") == JOB_SCHEMA and rec.get("job_hash") == digest
            and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns):
        return rec
    return None


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one job (in a worker process or Ray task) and write its record; never raises for a job
    failure: returns {"status", "error", "elapsed", "result"}."""
    t0 = time.monotonic()
    out: dict[str, Any] = {"status": "failed", "error": None, "result": None}
    try:
        generate = spec.get("generate")
        if generate is None:
            from avmix.pipeline import generate

        target = Path(spec["target"])
        target.parent.mkdir(parents=True, exist_ok=True)
        record_path(target).unlink(missing_ok=True)
        result = generate(spec["inputs"], os.fspath(target), overwrite=True, quiet=True, **spec["options"])
        st = os.stat(target)
        rec = {"schema": JOB_SCHEMA, "job_hash": spec["job_hash"], "output": spec["output"],
               "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inputs": spec["inputs"],
               "options": spec["options"], "result": result, "finished": time.time()}
        write_text_atomic(record_path(target), json.dumps(rec, indent=2, default=str) + "\n")
        out.update(status="ok", result=result)
    except AvmixError as e:
        out["error"] = e.message + (f" ({e.hint})" if e.hint else "")
    except Exception as e:  # a bug in a stage: this job fails, the batch goes on
        out["error"] = f"internal error: {type(e).__name__}: {e}"
    out["elapsed"] = time.monotonic() - t0
    return out


# ------------------------------------------------------------------------------------------ engines

Done = Callable[[dict[str, Any], dict[str, Any]], None]


def _child(spec: dict[str, Any], conn) -> None:
    """A local worker process: one job, its result sent back through ``conn``."""
    # Ctrl-C reaches the whole process group; the parent alone handles it and sends SIGTERM to the
    # running jobs, which generate turns into its own clean-up (no partial output, no stray ffmpeg).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        res = run_job(spec)
    except KeyboardInterrupt:
        res = {"status": "failed", "error": "interrupted", "elapsed": None, "result": None}
    conn.send(res)
    conn.close()


def _run_local(specs: list[dict[str, Any]], workers: int, done: Done) -> None:
    """At most ``workers`` jobs at a time, each in a fresh spawned process (imports take ~0.3 s)."""
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")  # no fork: safe with threads, torch, ray
    queue = list(specs)
    running: dict[Any, tuple[Any, dict[str, Any]]] = {}  # result pipe -> (process, spec)
    try:
        while queue or running:
            while queue and len(running) < workers:
                spec = queue.pop(0)
                reader, writer = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(spec, writer), name=f"avmix-batch-{spec['index']}")
                proc.start()
                writer.close()
                running[reader] = (proc, spec)
            for reader in wait(list(running)):  # readable: a result, or EOF if the process died
                proc, spec = running.pop(reader)
                try:
                    res = reader.recv()
                except (EOFError, OSError):
                    res = None
                reader.close()
                proc.join()
                if res is None:
                    res = {"status": "failed", "error": f"worker process died (exit code {proc.exitcode})",
                           "elapsed": None, "result": None}
                done(spec, res)
    except BaseException:
        for proc, _ in running.values():
            proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc, _ in running.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        raise


def _run_ray(specs: list[dict[str, Any]], workers: int, address: str | None, done: Done) -> None:
    try:
        import ray
    except ImportError:
        raise AvmixError("--engine ray needs Ray, which is not installed", hint="pip install 'avmix[ray]'") from None
    started = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise AvmixError(f"cannot start or reach Ray{' at ' + address if address else ''}: {e}") from None
        started = True
    pending: dict[Any, dict[str, Any]] = {}
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        task = ray.remote(run_job)
        for s in specs:
            need_gpu = s["options"].get("backend") == "diffusion"
            if need_gpu and gpus < 1:
                done(s, {"status": "failed", "error": "backend diffusion needs a GPU and the Ray cluster has none",
                         "elapsed": 0.0, "result": None})
                continue
            ref = task.options(num_cpus=1, num_gpus=1 if need_gpu else 0, max_retries=0).remote(s)
            pending[ref] = s
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                s = pending.pop(ref)
                try:
                    res = ray.get(ref)
                except Exception as e:  # the task's worker died
                    res = {"status": "failed", "error": f"Ray task failed: {type(e).__name__}: {e}".splitlines()[0],
                           "elapsed": None, "result": None}
                done(s, res)
    except BaseException:
        for ref in list(pending):
            try:
                ray.cancel(ref)  # KeyboardInterrupt in the task: generate cleans up
            except Exception:
                pass
        raise
    finally:
        if started:
            ray.shutdown()


# ------------------------------------------------------------------------------------------- entry


def batch(jobs_file: str | os.PathLike, outdir: str | os.PathLike, *, engine: str = "local",
          workers: int | None = None, address: str | None = None, force: bool = False,
          progress: ProgressFn = None, generate: Callable | None = None) -> dict[str, Any]:
    """Run every job of ``jobs_file`` into ``outdir``; returns the summary also written to
    ``outdir/batch.json`` (its "failed" count > 0 when any job failed). Raises only for problems with
    the batch as a whole (malformed jobs file, unknown engine, Ray unavailable).

    ``generate`` replaces :func:`avmix.pipeline.generate` as the function each job calls (for tests
    and other pipelines); it must be a module-level function, as workers import it by name.
    """
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if address and engine != "ray":
        raise UsageError("--address is only for --engine ray")
    workers = workers or os.cpu_count() or 1
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise UsageError("output directory is not a directory", path=out)
    jobs = read_jobs(jobs_file, out, generate=generate)  # before creating anything: a bad file runs nothing
    out.mkdir(parents=True, exist_ok=True)

    t_start, wall = time.time(), time.monotonic()
    rows: list[dict[str, Any]] = []
    specs: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for j in jobs:
        row = {"index": j.index, "line": j.line, "output": j.output, "target": j.target or None,
               "inputs": j.inputs, "status": "failed", "error": j.error, "elapsed": None, "timings": None,
               "result": None}
        rows.append(row)
        if j.error:
            continue
        digest = job_hash(j, seen)
        rec = None if force else completed(j.target, digest)
        if rec is not None:
            row.update(status="skipped", error=None, result=rec.get("result"),
                       timings=(rec.get("result") or {}).get("timings") if isinstance(rec.get("result"), dict) else None)
            continue
        specs.append({"index": j.index, "inputs": j.inputs, "target": j.target, "output": j.output,
                      "options": j.options, "job_hash": digest, "generate": generate})

    total, finished = len(rows), sum(1 for r in rows if r["status"] == "skipped" or r["error"])
    report(progress, "jobs", finished, total)

    def done(spec: dict[str, Any], res: dict[str, Any]) -> None:
        nonlocal finished
        row = rows[spec["index"]]
        result = res.get("result")
        row.update(status=res["status"], error=res.get("error"), elapsed=res.get("elapsed"), result=result,
                   timings=result.get("timings") if isinstance(result, dict) else None)
        finished += 1
        report(progress, "jobs", finished, total)

    summary: dict[str, Any] = {"schema": BATCH_SCHEMA, "jobs_file": os.fspath(Path(jobs_file).resolve()),
                               "outdir": os.fspath(out.resolve()), "engine": engine, "workers": workers,
                               "address": address, "force": force, "started": t_start}
    try:
        if specs:
            with sigterm_as_interrupt():
                if engine == "local":
                    _run_local(specs, min(workers, len(specs)), done)
                else:
                    _run_ray(specs, workers, address, done)
    except KeyboardInterrupt:
        for r in rows:
            if r["status"] == "failed" and r["error"] is None:
                r["error"] = "interrupted"
        _write_summary(out, summary, rows, wall)
        raise
    return _write_summary(out, summary, rows, wall)


def _write_summary(out: Path, summary: dict[str, Any], rows: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    for r in rows:  # a job the engine never reported (should not happen) is a failure, not a success
        if r["status"] == "failed" and r["error"] is None:
            r["error"] = "not run"
    summary.update(elapsed=time.monotonic() - wall,
                   ok=sum(r["status"] == "ok" for r in rows),
                   failed=sum(r["status"] == "failed" for r in rows),
                   skipped=sum(r["status"] == "skipped" for r in rows),
                   jobs=rows)
    write_text_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=2, default=str) + "\n")
    return summary
