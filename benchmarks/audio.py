"""Audio stage benchmark: `avmix mix` against ffmpeg, SoX and pydub on the same files, in one run.

    .venv/bin/python benchmarks/audio.py            # full: 2 x 10 min (and 2 x 60 min for memory)
    .venv/bin/python benchmarks/audio.py --quick    # smoke: 2 x 1 min (and 2 x 6 min)

Inputs are stereo 48 kHz 16-bit WAVs made once under benchmarks/data/ (git-ignored). Every command
runs `--runs` times, interleaved; the table shows the median wall time and the largest peak RSS.
Outputs are checked (length, sample agreement, loudness) so no broken run is reported as fast.
Writes benchmarks/results-audio.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import DATA, RATE  # noqa: E402

PYDUB = ("import sys; from pydub import AudioSegment as A; "
         "A.from_wav(sys.argv[1]).overlay(A.from_wav(sys.argv[2])).export(sys.argv[3], format='wav')")
TARGET_LUFS = -14.0
CEILING_DBTP = -1.0


def inputs(seconds: int, long_seconds: int) -> dict[str, Path]:
    print(f"inputs: 2 x {seconds} s (+ hot pair), 2 x {long_seconds} s; made once under {DATA}", flush=True)
    return {
        "a": common.make_wav(DATA / f"a_{seconds}.wav", seconds, seed=1, peak=0.45),
        "b": common.make_wav(DATA / f"b_{seconds}.wav", seconds, seed=2, peak=0.45),
        "hot_a": common.make_wav(DATA / f"hot_a_{seconds}.wav", seconds, seed=3, peak=1.0),
        "hot_b": common.make_wav(DATA / f"hot_b_{seconds}.wav", seconds, seed=4, peak=1.0),
        "long_a": common.make_wav(DATA / f"a_{long_seconds}.wav", long_seconds, seed=1, peak=0.45),
        "long_b": common.make_wav(DATA / f"b_{long_seconds}.wav", long_seconds, seed=2, peak=0.45),
    }


def plain_sum(f: dict[str, Path], out: Path, runs: int, seconds: int) -> list[dict]:
    avmix = common.avmix_cmd()
    o = {k: out / f"sum_{k}.wav" for k in ("avmix", "ffmpeg", "sox", "pydub")}
    cmds = {
        "avmix mix --no-limit": avmix + ["mix", f["a"], f["b"], "-o", o["avmix"], "--no-limit",
                                         "--bit-depth", "16", "-y"],
        "ffmpeg amix normalize=0": common.ffmpeg_cmd("-i", str(f["a"]), "-i", str(f["b"]), "-filter_complex",
                                                     "amix=inputs=2:normalize=0", "-c:a", "pcm_s16le",
                                                     str(o["ffmpeg"])),
        "pydub overlay+export": [sys.executable, "-c", PYDUB, f["a"], f["b"], o["pydub"]],
    }
    if common.sox_exe():  # -v 1: unit gain (sox -m scales by 1/n otherwise); -D: no dither
        cmds["sox -m"] = [common.sox_exe(), "-D", "-m", "-v", "1", f["a"], "-v", "1", f["b"], o["sox"]]
    else:
        print("  sox not found: skipped (apt-get install sox)")
    res = common.run_side_by_side(cmds, runs)
    rows = []
    avmix_ok = _length_check(o["avmix"], seconds * RATE, res["avmix mix --no-limit"]) == "ok"
    for tool, r in res.items():
        path = o[tool.split()[0]]
        check = _length_check(path, seconds * RATE, r)
        if check == "ok" and avmix_ok and path != o["avmix"]:
            d = common.max_diff_int16(path, o["avmix"])
            check = f"ok, max diff vs avmix {d} LSB" if 0 <= d <= 1 else f"DIFFERS from avmix by {d} LSB"
        rows.append({"job": "plain sum", "tool": tool, **r, "check": check, "cmd": _show(cmds[tool])})
    return rows


def lufs_limited(f: dict[str, Path], out: Path, runs: int, seconds: int) -> list[dict]:
    o_avmix, o_ff = out / "lufs_avmix.wav", out / "lufs_ffmpeg.wav"
    cmds = {
        "avmix mix --normalize lufs": common.avmix_cmd() + ["mix", f["hot_a"], f["hot_b"], "-o", o_avmix,
                                                            "--normalize", "lufs", "--target", "-14", "-y"],
        "ffmpeg amix,loudnorm": common.ffmpeg_cmd("-i", str(f["hot_a"]), "-i", str(f["hot_b"]),
                                                  "-filter_complex",
                                                  "amix=inputs=2:normalize=0,loudnorm=I=-14:TP=-1",
                                                  "-ar", "48000", "-c:a", "pcm_s24le", str(o_ff)),
    }
    res = common.run_side_by_side(cmds, runs)
    want = seconds * RATE
    rows = []
    for (tool, r), path in zip(res.items(), (o_avmix, o_ff)):
        check = _length_check(path, want, r)
        if check == "ok":
            m = common.ebur128(path)
            r.update(m)
            check = f"I {m['lufs']} LUFS, TP {m['true_peak_dbtp']} dBTP"
            if path == o_avmix and not (abs(m["lufs"] - TARGET_LUFS) <= 0.5
                                        and m["true_peak_dbtp"] <= CEILING_DBTP + 0.1):
                check = "FAIL: " + check
        rows.append({"job": "lufs -14 + limit (hot)", "tool": tool, **r, "check": check, "cmd": _show(cmds[tool])})
    return rows


def plain_sum_long(f: dict[str, Path], out: Path, runs: int, long_seconds: int) -> list[dict]:
    """The plain sum on the long pair, avmix against ffmpeg amix: where start-up no longer counts."""
    o = {k: out / f"long_sum_{k}.wav" for k in ("avmix", "ffmpeg")}
    job = f"plain sum 2x{long_seconds // 60} min"
    cmds = {
        "avmix mix --no-limit": common.avmix_cmd() + ["mix", f["long_a"], f["long_b"], "-o", o["avmix"],
                                                      "--no-limit", "--bit-depth", "16", "-y"],
        "ffmpeg amix normalize=0": common.ffmpeg_cmd("-i", str(f["long_a"]), "-i", str(f["long_b"]),
                                                     "-filter_complex", "amix=inputs=2:normalize=0",
                                                     "-c:a", "pcm_s16le", str(o["ffmpeg"])),
    }
    rows = []
    for tool, r in common.run_side_by_side(cmds, runs).items():
        path = o[tool.split()[0]]
        rows.append({"job": job, "tool": tool, **r, "check": _length_check(path, long_seconds * RATE, r),
                     "cmd": _show(cmds[tool])})
    for path in o.values():  # 700 MB each
        path.unlink(missing_ok=True)
    return rows


def memory(f: dict[str, Path], out: Path, seconds: int, long_seconds: int) -> list[dict]:
    avmix = common.avmix_cmd()
    rows = []
    for mode, extra in (("--no-limit", ["--no-limit", "--bit-depth", "16"]),
                        ("--normalize lufs", ["--normalize", "lufs", "--target", "-14"])):
        for secs, a, b in ((seconds, f["a"], f["b"]), (long_seconds, f["long_a"], f["long_b"])):
            path = out / f"mem_{secs}.wav"
            cmd = avmix + ["mix", a, b, "-o", path, *extra, "-y"]
            r = common.run_side_by_side({f"avmix {mode} {secs // 60} min": cmd}, 1)
            (tool, r), = r.items()
            rows.append({"job": f"memory 2x{secs // 60} min", "tool": tool, **r,
                         "check": _length_check(path, secs * RATE, r), "cmd": _show(cmd)})
    return rows


def _length_check(path: Path, want: int, r: dict) -> str:
    if r["exit_codes"] != [0]:
        return common.failed(r)
    try:
        got = common.frames(path)
    except RuntimeError as e:
        return f"FAIL: unreadable output: {e}"
    return "ok" if got == want else f"FAIL: {got} frames, expected {want}"


def _show(cmd: list) -> str:
    return " ".join(Path(str(c)).name if "/" in str(c) else str(c) for c in cmd)


def targets(rows: list[dict]) -> dict:
    def get(job: str, tool: str) -> dict | None:
        return next((r for r in rows if r["job"].startswith(job) and r["tool"].startswith(tool)), None)
    def ok(r: dict) -> bool:  # a broken avmix run meets no target
        return not r["check"].startswith(("FAIL", "DIFF"))
    t: dict = {}
    av, ff = get("plain sum", "avmix"), get("plain sum", "ffmpeg")
    if av and ff:
        t["plain: avmix <= ffmpeg amix"] = ok(av) and av["wall_s"] <= ff["wall_s"]
        for peer in ("sox", "pydub"):
            p = get("plain sum", peer)
            if p:
                t[f"plain: avmix < {peer}"] = ok(av) and av["wall_s"] < p["wall_s"]
    av, ff = get("plain sum 2x", "avmix"), get("plain sum 2x", "ffmpeg")
    if av and ff:
        t["plain, long pair: avmix <= ffmpeg amix"] = ok(av) and av["wall_s"] <= ff["wall_s"]
    av, ff = get("lufs", "avmix"), get("lufs", "ffmpeg")
    if av and ff:
        t["lufs+limit: >= 10x faster than loudnorm"] = ok(av) and ff["wall_s"] >= 10 * av["wall_s"]
    mem = [r for r in rows if r["job"].startswith("memory")]
    if mem:
        t["memory: avmix peak < 100 MB"] = all(ok(r) and r["peak_mb"] < 100 for r in rows if r["tool"].startswith("avmix"))
        pairs = [mem[i:i + 2] for i in range(0, len(mem), 2)]
        t["memory: flat (long <= short + 5%)"] = all(ok(a) and ok(b) and b["peak_mb"] <= a["peak_mb"] * 1.05
                                                     for a, b in pairs)
    t["all outputs checked ok"] = not any(r["check"].startswith(("FAIL", "DIFF")) for r in rows)
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1-minute inputs (6 min for memory), one run each")
    ap.add_argument("--runs", type=int, default=None, help="runs per command (default 3, quick 1)")
    ap.add_argument("--only", choices=["plain", "lufs", "memory"], action="append", help="run only these jobs")
    args = ap.parse_args(argv)
    seconds, long_seconds = (60, 360) if args.quick else (600, 3600)
    runs = args.runs or (1 if args.quick else 3)
    jobs = args.only or ["plain", "lufs", "memory"]
    f = inputs(seconds, long_seconds)
    out = DATA / "out"
    out.mkdir(parents=True, exist_ok=True)
    common.warm(*f.values())
    started, env = time.time(), common.environment()  # load average before we add ours
    rows: list[dict] = []
    if "plain" in jobs:
        print("plain sum (16-bit WAV out for every tool)", flush=True)
        rows += plain_sum(f, out, runs, seconds)
        rows += plain_sum_long(f, out, runs, long_seconds)
    if "lufs" in jobs:
        print("loudness-normalised (-14 LUFS) and limited (-1 dBTP) mix of the hot pair, 24-bit WAV out", flush=True)
        rows += lufs_limited(f, out, runs, seconds)
    if "memory" in jobs:
        print("memory: avmix on short vs long inputs (one run each)", flush=True)
        rows += memory(f, out, seconds, long_seconds)
    for job in {r["job"] for r in rows if not r["job"].startswith("memory")}:
        base = next((r for r in rows if r["job"] == job and r["tool"].startswith("avmix")), None)
        for r in rows:
            if r["job"] == job:
                r["ratio"] = round(r["wall_s"] / base["wall_s"], 2) if base and base["wall_s"] else None
    goals = targets(rows)
    common.report(rows, goals, "(x avmix = tool wall time / avmix wall time; > 1 means avmix is faster)")
    # the README reports the full run; a quick smoke does not overwrite it
    results = DATA / "results-audio-quick.json" if args.quick else common.HERE / "results-audio.json"
    common.save(results, {
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)), "quick": args.quick,
        "seconds": seconds, "long_seconds": long_seconds, "runs": runs, "environment": env,
        "rows": rows, "targets": goals,
    })
    print(f"wrote {results}")
    return 0 if goals.get("all outputs checked ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
