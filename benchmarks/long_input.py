"""Long input: a 2-hour track through `avmix mix` and `avmix generate`, with wall time and peak memory.

    .venv/bin/python benchmarks/long_input.py                    # 10 min vs 120 min
    .venv/bin/python benchmarks/long_input.py --long 30 --short 5 --skip-generate

The claim under test is flat memory: each stage streams in blocks, so the peak RSS of a 2-hour job
is about that of a 10-minute one. Inputs are stereo 48 kHz 16-bit WAVs generated once, streaming
(benchmarks/data/, git-ignored). Jobs, each on the short and the long input:

- mix:      `avmix mix LONG B10 -o OUT.wav --normalize lufs` (two passes over the blocks + limiter;
            B10 is a 10-minute second track, so the long job mixes past its end)
- generate: `avmix generate LONG -o OUT.mp4 --backend procedural --size 640x360` (compose, analysis,
            procedural video piped to ffmpeg, mux)

Peak memory is the larger of the biggest single process's ru_maxrss and the summed RSS of the
process tree (avmix and its ffmpeg children), see common.measure_once. Writes
benchmarks/results-long.json.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import DATA  # noqa: E402

OUT = DATA / "long"


def mix_cmd(a: Path, b: Path, out: Path) -> list[str]:
    return common.avmix_cmd() + ["mix", a, b, "-o", out, "--normalize", "lufs", "-y", "--quiet"]


def generate_cmd(a: Path, out: Path, size: str, fps: int) -> list[str]:
    return common.avmix_cmd() + ["generate", a, "-o", out, "--backend", "procedural", "--size", size,
                                 "--fps", str(fps), "-y", "--quiet"]


def check_audio(path: Path, seconds: float, r: dict) -> str:
    if r["code"] != 0:
        return f"FAIL: exit {r['code']}: {r.get('stderr', '')[-200:]}"
    got = common.frames(path) / common.RATE
    return "ok" if abs(got - seconds) < 1e-3 else f"FAIL: {got:.3f} s, expected {seconds:.3f} s"


def check_video(path: Path, seconds: float, fps: int, r: dict) -> str:
    from avmix import ffmpeg
    if r["code"] != 0:
        return f"FAIL: exit {r['code']}: {r.get('stderr', '')[-200:]}"
    info = ffmpeg.probe(path)
    if info.video is None or info.audio is None or info.duration is None:
        return f"FAIL: probe {info}"
    return "ok" if abs(info.duration - seconds) <= 1.5 / fps else f"FAIL: duration {info.duration:.3f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long", type=float, default=120.0, help="minutes of the long input (default 120)")
    ap.add_argument("--short", type=float, default=10.0, help="minutes of the short input (default 10)")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--skip-generate", action="store_true")
    ap.add_argument("--skip-mix", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the outputs (they are large)")
    ap.add_argument("--results", default="results-long.json", help="file name under benchmarks/ for the results")
    args = ap.parse_args(argv)

    OUT.mkdir(parents=True, exist_ok=True)
    short_s, long_s = args.short * 60, args.long * 60
    t = time.perf_counter()
    a_short = common.make_wav(DATA / f"a_{short_s:.0f}.wav", short_s, seed=1, peak=0.5)
    a_long = common.make_wav(DATA / f"a_{long_s:.0f}.wav", long_s, seed=1, peak=0.5)
    b10 = common.make_wav(DATA / "b_600.wav", 600.0, seed=2, peak=0.5)
    print(f"inputs ready in {time.perf_counter() - t:.0f} s: {a_short.name}, {a_long.name}, {b10.name}", flush=True)

    rows, results = [], {}
    for tag, a, seconds in (("short", a_short, short_s), ("long", a_long, long_s)):
        common.warm(a)
        if not args.skip_mix:
            out = OUT / f"mix_{tag}.wav"
            r = common.measure_once(mix_cmd(a, b10, out))
            expect = max(seconds, 600.0)
            row = {"job": f"mix {seconds / 60:g} min", "tool": "avmix mix --normalize lufs", "wall_s": r["wall"],
                   "cpu_s": r["cpu"], "peak_mb": r["peak_mb"], "check": check_audio(out, expect, r),
                   "realtime_x": round(expect / r["wall"], 1)}
            rows.append(row)
            results[f"mix_{tag}"] = row
            print(common.table([row]).splitlines()[-1], flush=True)
            if not args.keep:
                out.unlink(missing_ok=True)
                Path(f"{out}.timeline.json").unlink(missing_ok=True)
        if not args.skip_generate:
            out = OUT / f"generate_{tag}.mp4"
            r = common.measure_once(generate_cmd(a, out, args.size, args.fps))
            row = {"job": f"generate {seconds / 60:g} min", "tool": f"avmix generate {args.size}",
                   "wall_s": r["wall"], "cpu_s": r["cpu"], "peak_mb": r["peak_mb"],
                   "check": check_video(out, seconds, args.fps, r), "realtime_x": round(seconds / r["wall"], 1)}
            rows.append(row)
            results[f"generate_{tag}"] = row
            print(common.table([row]).splitlines()[-1], flush=True)
            if not args.keep:
                out.unlink(missing_ok=True)
                shutil.rmtree(OUT / f".{out.name}.avmix-work", ignore_errors=True)

    print()
    print(common.table(rows))
    for job in ("mix", "generate"):
        s, lg = results.get(f"{job}_short"), results.get(f"{job}_long")
        if s and lg:
            ratio = lg["peak_mb"] / s["peak_mb"]
            results[f"{job}_memory_ratio"] = round(ratio, 3)
            print(f"{job}: peak memory {lg['peak_mb']:.0f} MB ({args.long:.0f} min) vs {s['peak_mb']:.0f} MB "
                  f"({args.short:.0f} min): x{ratio:.2f} for x{args.long / args.short:.0f} the audio")
    common.save(common.HERE / args.results,
                {"environment": common.environment(), "size": args.size, "fps": args.fps,
                 "minutes": {"short": args.short, "long": args.long}, "results": results})
    return 0 if all(r["check"].startswith("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
