"""Rendering many ``generate`` jobs from a JSONL or CSV file, on a local process pool or on Ray.

The jobs file format (JSONL or CSV, its fields, what is rejected) is described in
:mod:`avmix.batch_jobs`, which reads and checks it (:func:`read_jobs`).

After a job succeeds, ``OUTDIR/<output>.job.json`` records a hash of the job (input contents, output
name, options) and the output's size and mtime. A later run skips a job whose output and record are
still there and match; a changed input or option reruns it; ``force`` reruns everything. An existing
output (or preview, stems, record, ``batch.json``) that batch did not write, or that was changed since,
stops the batch before anything runs unless ``force`` is given: batch replaces only its own files.
``OUTDIR/batch.json`` records every job's status (ok / failed / skipped), timings and error.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from avmix.batch_jobs import (  # noqa: F401  (re-exported: avmix.batch.Job, avmix.batch.read_jobs, ...)
    ALIASES,
    LIST_SEP,
    MANAGED,
    RECORD_SUFFIX,
    SIZE_RE,
    SUMMARY_NAME,
    Job,
    read_jobs,
)
from avmix.errors import AvmixError, OutputError, UsageError
from avmix.paths import write_text_atomic
from avmix.progress import ProgressFn, report
from avmix.signals import sigterm_as_interrupt
from avmix.synth.spec import is_text

BATCH_SCHEMA = "avmix.batch/1"
JOB_SCHEMA = "avmix.batchjob/1"
ENGINES = ("local", "ray")
STOP_TIMEOUT = 30.0  # seconds interrupted jobs get to clean up before they are killed


# --------------------------------------------------------------------------------- records, hashes


def job_hash(job: Job, seen: dict[str, str] | None = None) -> str:
    """A hash of what the job makes: input contents, output name and options. ``seen`` caches file
    hashes across the jobs of one batch (a music bed shared by every row is read once)."""
    from avmix.timeline import file_hash

    seen = {} if seen is None else seen
    ins = []
    for p in job.inputs:
        if is_text(p):  # a track to synthesise: its text is what it is (the options hold the rest)
            ins.append([p, "text"])
            continue
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


def _json_of(path: str | os.PathLike, schema: str) -> dict[str, Any] | None:
    """The JSON object in ``path`` if it is readable and of ``schema``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == schema else None


@dataclass
class Prior:
    """What an earlier run of a job left beside its output, read once: its record, whether the output
    is still the file that record describes, and the preview and stems folder it made."""
    target: str
    record: dict[str, Any] | None
    intact: bool
    made: dict[str, Any]

    @classmethod
    def of(cls, target: str) -> "Prior":
        rec = _json_of(record_path(target), JOB_SCHEMA)
        try:
            st = os.stat(target)
        except OSError:
            st = None
        intact = (rec is not None and st is not None and rec.get("size") == st.st_size
                  and rec.get("mtime_ns") == st.st_mtime_ns)
        result = rec.get("result") if rec is not None and isinstance(rec.get("result"), dict) else {}
        stems = result.get("stems") if isinstance(result.get("stems"), dict) else {}
        return cls(target, rec, intact, {"preview": result.get("preview"), "stems": stems.get("dir")})

    def completed(self, digest: str) -> dict[str, Any] | None:
        """The record of the finished job with this hash if its output is still the one it wrote."""
        return self.record if self.intact and self.record.get("job_hash") == digest else None

    def refusal(self, extra: dict[str, str], line: int) -> str | None:
        """Why rerunning the job would replace a file batch did not make (None: it would not).

        The target and the records batch keeps beside it may be replaced only when batch wrote them; a
        ``preview``/``stems`` in ``extra`` only when the record names it (its previous run's, even if its
        output was removed since)."""
        target, where = self.target, f"(job on line {line}); move it away or pass --force to replace it"
        if os.path.lexists(target) and not self.intact:
            why = "was changed since avmix batch wrote it" if self.record else "exists and avmix batch did not make it"
            return f"{target}: {why} {where}"
        side = record_path(target)
        if os.path.lexists(side) and self.record is None:
            return f"{side}: exists and is not an avmix batch record {where}"
        for name, p in extra.items():
            if self.made[name] == p or not os.path.lexists(p):
                continue
            if name == "stems" and (not self.intact or (os.path.isdir(p) and not any(os.scandir(p)))):
                continue  # a fresh job does not replace stems files (generate refuses); empty: nothing to lose
            return f"{p}: exists and avmix batch did not make it {where}"
        return None

    def replaces(self, extra: dict[str, str]) -> bool:
        """Whether the rerun replaces files this job made before (generate's overwrite)."""
        return os.path.lexists(self.target) or any(self.made[k] == v and os.path.lexists(v) for k, v in extra.items())


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
        # the old record stays until the new one replaces it: a failed rerun leaves the job's files its own
        result = generate(spec["inputs"], os.fspath(target), overwrite=spec["overwrite"], quiet=True,
                          **spec["options"])
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
    summary_path = out / SUMMARY_NAME
    if not force and os.path.lexists(summary_path) and _json_of(summary_path, BATCH_SCHEMA) is None:
        raise OutputError("exists and is not an avmix batch summary; move it away or pass --force to replace it",
                          path=summary_path)

    t_start, wall = time.time(), time.monotonic()
    rows: list[dict[str, Any]] = []
    specs: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    refused: list[str] = []
    for j in jobs:
        row = {"index": j.index, "line": j.line, "output": j.output, "target": j.target or None,
               "inputs": j.inputs, "status": "failed", "error": j.error, "elapsed": None, "timings": None,
               "result": None}
        rows.append(row)
        if j.error:
            continue
        digest = job_hash(j, seen)
        prior = None if force else Prior.of(j.target)  # --force: nothing batch left is asked about
        rec = prior and prior.completed(digest)
        if rec is not None:
            row.update(status="skipped", error=None, result=rec.get("result"),
                       timings=(rec.get("result") or {}).get("timings") if isinstance(rec.get("result"), dict) else None)
            continue
        extra = {k: v for k, v in j.options.items() if k in ("preview", "stems")}
        if prior is not None and (why := prior.refusal(extra, j.line)):
            refused.append(why)
        # generate replaces files only when batch made them (a changed job) or with --force
        overwrite = prior is None or prior.replaces(extra)
        specs.append({"index": j.index, "inputs": j.inputs, "target": j.target, "output": j.output,
                      "options": j.options, "job_hash": digest, "generate": generate, "overwrite": overwrite})
    if refused:  # before running anything
        more = f" ({len(refused) - 1} more such files)" if len(refused) > 1 else ""
        raise OutputError(refused[0] + more)
    out.mkdir(parents=True, exist_ok=True)

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
