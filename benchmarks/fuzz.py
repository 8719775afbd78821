"""The fuzz cases of tests/test_fuzz.py, many more of them, with a count of every outcome.

    .venv/bin/python benchmarks/fuzz.py                 # about 2000 cases, a few minutes
    .venv/bin/python benchmarks/fuzz.py --cases 300     # quicker
    .venv/bin/python benchmarks/fuzz.py --seed 7        # other random cases

Each generated file goes through `avmix mix` in-process (as the tests do) with a per-case alarm:
outcomes are "ok" (an output), "error" (one clean `avmix: error:` line, no leftovers) or a problem:
"DIRTY" (traceback, internal error, more than error + hint, a file left behind, a wrong outcome
for a case whose outcome is known) or "HANG" (over --timeout seconds). JSON readers (timeline,
analysis) are fuzzed at the library level: InputError is clean, any other exception is DIRTY.
Problems are listed with their case so they can be replayed. Writes benchmarks/results-fuzz.json.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))
import test_fuzz as gen  # noqa: E402  (the generators)

from avmix import cli  # noqa: E402
from avmix import timeline as tl_mod  # noqa: E402
from avmix.errors import InputError  # noqa: E402


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def run_cli(*args) -> tuple[int, str, str]:
    """avmix in-process; stderr is sys.stderr plus whatever C libraries wrote to file descriptor 2."""
    out, err = io.StringIO(), io.StringIO()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as raw:
        os.dup2(raw.fileno(), 2)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = cli.run([str(a) for a in args])
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        raw.seek(0)
        native = raw.read().decode("utf-8", "replace")
    return code, out.getvalue(), native + err.getvalue()


def classify(case: gen.Case, d: Path, timeout: float) -> tuple[str, str]:
    """(outcome, detail) of one audio case."""
    d.mkdir()
    src = d / case.name
    src.write_bytes(case.data)
    out = d / "out.wav"
    signal.alarm(int(timeout))
    try:
        code, _, err = run_cli("mix", "-o", out, "--quiet", "--", src)
    except Hang:
        return "HANG", f"over {timeout:.0f} s"
    finally:
        signal.alarm(0)
    left = sorted(n for n in os.listdir(d) if n not in (case.name, "out.wav", "out.wav.timeline.json"))
    if left:
        return "DIRTY", f"left {left}; {err.strip()[:200]}"
    if code == 0:
        if case.expect == "error":
            return "DIRTY", "exit 0 for a case that must fail"
        try:
            x, _ = gen.sf.read(os.fsencode(out), dtype="float32", always_2d=True)
        except Exception as e:
            return "DIRTY", f"unreadable output: {e}"
        if len(x) == 0 or not gen.np.isfinite(x).all() or gen.np.abs(x).max() > 1.0:
            return "DIRTY", "output empty, not finite or over full scale"
        return "ok", ""
    lines = err.rstrip("\n").split("\n")
    if ("Traceback" in err or "internal error" in err or not lines[0].startswith("avmix: error: ")
            or len(lines) > 2 or any(not ln.startswith("avmix: hint: ") for ln in lines[1:])):
        return "DIRTY", err.strip()[:300]
    if out.exists():
        return "DIRTY", "failed but the output exists"
    if case.expect == "ok":
        return "DIRTY", f"valid input refused: {lines[0][:200]}"
    return "error", lines[0]


def error_kind(line: str, name: str) -> str:
    """The problem part of an error line, without the file name and numbers (for a histogram)."""
    msg = line.split(name + ": ", 1)[-1]
    msg = re.sub(r"\(.*", "", msg)
    return re.sub(r"[-\d.]+", "N", msg).strip()[:60]


def audio_cases(rng: random.Random, n: int, real: dict[str, bytes]) -> list[tuple[str, gen.Case]]:
    fixed = ([("wrong extension", c) for c in gen.wrong_extension_cases(real)]
             + [("header", c) for c in gen.header_cases()] + [("signal", c) for c in gen.signal_cases()])
    fractions = [i / 200 for i in range(1, 200, 5)] + [1e-4, 1e-3]
    fixed += [("truncated", c) for c in gen.truncated_cases(real, fractions)]
    rest = max(0, n - len(fixed))
    fixed += [("random", c) for c in gen.random_cases(rng, rest // 2)]
    fixed += [("mutated", c) for c in gen.mutated_cases(rng, real, rest - rest // 2)]
    return fixed


def json_outcomes(rng: random.Random, n: int, tmp: Path) -> dict[str, collections.Counter]:
    results = {}
    for kind, valid, cls in (("timeline", gen.valid_timeline(), tl_mod.Timeline),
                             ("analysis", gen.valid_analysis(), tl_mod.Analysis)):
        counts: collections.Counter = collections.Counter()
        p = tmp / f"{kind}.json"
        for text in gen.json_docs(rng, valid, n):
            p.write_text(text, encoding="utf-8", errors="surrogatepass")
            try:
                cls.load(p)
                counts["ok"] += 1
            except InputError:
                counts["error"] += 1
            except Exception as e:
                counts[f"DIRTY {type(e).__name__}: {str(e)[:80]}"] += 1
        results[kind] = counts
    return results


def jobs_outcomes(rng: random.Random, n: int, tmp: Path) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for i, (suffix, text) in enumerate(gen.jobs_texts(rng, n)):
        d = tmp / f"jobs{i}"
        d.mkdir()
        jobs = d / f"jobs{suffix}"
        jobs.write_text(text)
        code, out, err = run_cli("batch", jobs, "-o", d / "out", "--workers", "1", "--quiet", "--json")
        if code == 0 or "Traceback" in err or "internal error" in err:
            counts[f"DIRTY exit {code}: {err.strip()[:120]}"] += 1
        elif err.startswith("avmix: error: "):
            counts["error (file refused)"] += 1
        else:
            counts["jobs failed (batch ran)"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000, help="audio cases (default 2000)")
    ap.add_argument("--json-cases", type=int, default=1000, help="mutations per JSON reader")
    ap.add_argument("--jobs-cases", type=int, default=60, help="jobs files (each starts a batch)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as a hang")
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="avmix-fuzz-"))
    t0 = time.perf_counter()
    try:
        real = gen.real_files(tmp / "real")
        cases = audio_cases(rng, args.cases, real)
        by_family: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        kinds: collections.Counter = collections.Counter()
        problems = []
        for i, (family, case) in enumerate(cases):
            outcome, detail = classify(case, tmp / f"c{i}", args.timeout)
            by_family[family][outcome] += 1
            if outcome == "error":
                kinds[error_kind(detail, case.name)] += 1
            elif outcome in ("DIRTY", "HANG"):
                problems.append({"family": family, "case": case.name, "why": case.why, "expect": case.expect,
                                 "outcome": outcome, "detail": detail})
            shutil.rmtree(tmp / f"c{i}", ignore_errors=True)
            if (i + 1) % 200 == 0:
                print(f"  {i + 1}/{len(cases)} cases, {time.perf_counter() - t0:.0f} s", flush=True)
        audio_s = time.perf_counter() - t0
        js = json_outcomes(rng, args.json_cases, tmp)
        jobs = jobs_outcomes(rng, args.jobs_cases, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    total = collections.Counter()
    print(f"\naudio inputs through `avmix mix`: {len(cases)} cases in {audio_s:.0f} s")
    print(f"{'family':<16} {'cases':>6} {'ok':>6} {'error':>6} {'DIRTY':>6} {'HANG':>6}")
    for family, c in sorted(by_family.items()):
        total.update(c)
        print(f"{family:<16} {sum(c.values()):>6} {c['ok']:>6} {c['error']:>6} {c['DIRTY']:>6} {c['HANG']:>6}")
    print(f"{'all':<16} {sum(total.values()):>6} {total['ok']:>6} {total['error']:>6} {total['DIRTY']:>6} "
          f"{total['HANG']:>6}")
    print("\nerror messages (file name and numbers removed):")
    for kind, n in kinds.most_common(15):
        print(f"  {n:>5}  {kind}")
    for kind, c in js.items():
        print(f"\n{kind}.json reader: " + ", ".join(f"{k}: {v}" for k, v in c.most_common()))
    print("\njobs files through `avmix batch`: " + ", ".join(f"{k}: {v}" for k, v in jobs.most_common()))
    if problems:
        print(f"\n{len(problems)} PROBLEMS:")
        for p in problems[:30]:
            print(f"  {p['outcome']} {p['family']} {p['case']!r} ({p['why']}): {p['detail']}")
    dirty_json = sum(v for c in js.values() for k, v in c.items() if k.startswith("DIRTY"))
    dirty_jobs = sum(v for k, v in jobs.items() if k.startswith("DIRTY"))
    payload = {"seed": args.seed, "seconds": round(time.perf_counter() - t0, 1),
               "audio": {f: dict(c) for f, c in by_family.items()}, "audio_total": dict(total),
               "error_kinds": dict(kinds.most_common()), "json": {k: dict(c) for k, c in js.items()},
               "jobs": dict(jobs), "problems": problems}
    (HERE / "results-fuzz.json").write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if problems or dirty_json or dirty_jobs else 0


if __name__ == "__main__":
    sys.exit(main())
