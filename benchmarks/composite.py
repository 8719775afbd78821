"""Composite backend benchmark: 4 videos into a lit 1280x720 grid, against ffmpeg commands.

    .venv/bin/python benchmarks/composite.py            # 4 x 20 s inputs, 3 runs each; memory at 20 s and 10 min
    .venv/bin/python benchmarks/composite.py --quick    # 4 x 5 s inputs, one run; memory at 5 s and 40 s

The job: 4 inputs of 640x360 H.264 + AAC (a moving test pattern and a music-like signal each), into one
1280x720 30 fps MP4 with the 4 sounds mixed. Every tool encodes with the same x264 settings (the composite
backend's: preset, crf and x264-params read from avmix) and AAC 192k.

* avmix: compose (mix) -> analyse -> composite video (grid, lit by each track's loudness and onsets)
  -> mux, the whole job (``avmix generate --backend composite``); its grid is drawn by one ffmpeg graph;
* avmix, numpy compositor: the same command with every frame composed in numpy (the other way avmix
  draws, used for moving layouts), a row for reference;
* ffmpeg xstack + amix: the command a user would write, with no lighting;
* ffmpeg lit graph: the same graph with per-tile lighting, ``eq`` brightness and a ``drawbox`` border per
  tile, both driven through ``sendcmd`` from avmix's own envelopes, on the frames where avmix's lighting
  changes (``composite.calm``): the goal's peer, doing the same job;
* ffmpeg lit graph, every frame: the same with a command on every frame, as avmix lit tiles before its
  lighting held its steps (a row for reference, not a goal).

Outputs are checked for equal length (within a frame of the audio). Peak memory sums the process
tree. Writes benchmarks/results-composite.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import DATA  # noqa: E402

SIZE, FPS, N = (1280, 720), 30, 4
TILE = (640, 360)


def _encode() -> tuple[int, str, str]:
    import inspect

    from avmix.video import composite, procedural
    p = inspect.signature(composite.render).parameters
    return p["crf"].default, p["preset"].default, procedural.X264_PARAMS


CRF, PRESET, X264 = _encode()
ENCODE = ["-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-x264-params", X264, "-pix_fmt", "yuv420p",
          "-g", str(2 * FPS), "-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart"]


def make_input(path: Path, seconds: float, seed: int) -> Path:
    """A 640x360 30 fps H.264 + AAC clip: a moving pattern over the music-like test signal."""
    if path.exists():
        return path
    wav = common.make_wav(path.with_suffix(".wav"), seconds, seed=seed, peak=0.5)
    pattern = ["testsrc2", "smptebars", "testsrc", "rgbtestsrc"][seed % 4]
    src = f"{pattern}=s={TILE[0]}x{TILE[1]}:r=30:d={seconds}"
    tmp = path.with_suffix(".tmp.mp4")
    cmd = common.ffmpeg_cmd("-f", "lavfi", "-i", src, "-i", str(wav), "-t", str(seconds), "-c:v", "libx264",
                            "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k",
                            str(tmp))
    import subprocess
    subprocess.run(cmd, check=True)
    tmp.rename(path)
    return path


NUMPY = r"""
import sys
from avmix.video import stack
stack.plan = lambda *a, **k: None  # no layout drawn by one ffmpeg graph: every frame composed in numpy
from avmix.cli import main
sys.argv[0] = "avmix"
main()
"""


def avmix(inputs: list[Path], out: Path, *, numpy: bool = False) -> list[str]:
    """``avmix generate`` of the job; with ``numpy``, its frames composed by the numpy compositor (the
    other way the composite backend draws), not by one ffmpeg graph."""
    args = ["generate", *map(str, inputs), "-o", str(out), "--backend", "composite", "--size", f"{SIZE[0]}x{SIZE[1]}",
            "--fps", str(FPS), "-y", "--quiet"]
    return ([sys.executable, "-c", NUMPY] if numpy else common.avmix_cmd()) + args


def tiles() -> list[tuple[int, int]]:
    return [(0, 0), (TILE[0], 0), (0, TILE[1]), (TILE[0], TILE[1])]


def xstack(inputs: list[Path], out: Path, *, lit: Path | None = None) -> list[str]:
    """xstack + amix; with ``lit`` (a sendcmd file) each tile gets an eq and a drawbox that it drives."""
    parts = []
    for i in range(N):
        head = f"sendcmd=f='{lit}'," if lit is not None and i == 0 else ""  # one sendcmd reaches every filter
        chain = f"[{i}:v]{head}fps={FPS},scale={TILE[0]}:{TILE[1]},setsar=1"
        if lit is not None:
            chain += f",eq@e{i}=brightness=0,drawbox@b{i}=x=0:y=0:w={TILE[0]}:h={TILE[1]}:color=white:t=8"
        parts.append(chain + f"[v{i}]")
    layout = "|".join(f"{x}_{y}" for x, y in tiles())
    graph = ";".join(parts) + ";" + "".join(f"[v{i}]" for i in range(N)) + \
        f"xstack=inputs={N}:layout={layout}[v];" + "".join(f"[{i}:a]" for i in range(N)) + \
        f"amix=inputs={N}:normalize=0[a]"
    args = []
    for p in inputs:
        args += ["-i", str(p)]
    return common.ffmpeg_cmd(*args, "-filter_complex", graph, "-map", "[v]", "-map", "[a]", *ENCODE, str(out))


def sendcmd_file(inputs: list[Path], seconds: float, path: Path, *, calm: bool = True) -> Path:
    """eq brightness and drawbox colour per tile, from avmix's analysis of each input: on the frames where
    avmix's lighting changes (``calm``), else on every frame (avmix's lighting before it held its steps)."""
    from avmix.audio import analyze, io
    from avmix.video import composite
    from avmix.video.procedural import track_color

    lines = []
    for i, p in enumerate(inputs):
        f = io.open_audio(p)
        import numpy as np
        x = np.concatenate(list(f.blocks(sample_rate=48000, channels=1)))[:, 0]
        ta = analyze.analyze_array(x, 48000, fps=FPS, label=str(i), index=i)
        level, flash = composite.lighting(ta.envelope, ta.onsets, FPS, len(ta.envelope))
        gain = composite.DIM + (1 - composite.DIM) * level + composite.PULSE * flash
        shown = composite.calm(gain) if calm else np.arange(len(gain))
        level, flash, gain = level[shown], flash[shown], gain[shown]
        r, g, b = track_color(i)
        for k in range(len(level)):
            if k > 0 and shown[k] == shown[k - 1]:
                continue
            lit = min(1.0, 0.25 + 0.75 * float(level[k]) + 0.6 * float(flash[k]))
            col = "0x%02x%02x%02x" % tuple(int(255 * c * lit) for c in (r, g, b))
            lines.append(f"{k / FPS:.4f} [enter] eq@e{i} brightness {0.5 * (float(gain[k]) - 1):.3f}, "
                         f"[enter] drawbox@b{i} color {col};")
    lines.sort(key=lambda s: float(s.split()[0]))
    path.write_text("\n".join(lines) + "\n")
    return path


def check(path: Path, seconds: float, r: dict) -> str:
    from avmix import ffmpeg
    if r["exit_codes"] != [0]:
        return common.failed(r)
    info = ffmpeg.probe(path)
    v = info.video
    problems = []
    if v is None or (v.width, v.height) != SIZE:
        problems.append(f"video {v}")
    if info.audio is None:
        problems.append("no audio")
    if info.duration is None or abs(info.duration - seconds) > 1.5 / FPS + 0.03:
        problems.append(f"duration {info.duration} s")
    r["duration_s"] = info.duration
    return "FAIL: " + "; ".join(problems) if problems else f"ok, {info.duration:.3f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 s inputs (40 s for memory), one run")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--no-long", action="store_true", help="skip the long memory run")
    ap.add_argument("--memory-only", action="store_true",
                    help="only avmix, once at each length (memory flatness; no ratios)")
    args = ap.parse_args(argv)
    if args.memory_only:
        return memory_only(args)
    seconds, long_seconds = (5, 40) if args.quick else (20, 600)
    runs = args.runs or (1 if args.quick else 3)
    out = DATA / "out"
    out.mkdir(parents=True, exist_ok=True)
    inputs = [make_input(DATA / f"composite_{seconds}_{i}.mp4", seconds, i) for i in range(N)]
    common.warm(*inputs)
    started, env = time.time(), common.environment()
    lit = sendcmd_file(inputs, seconds, out / f"composite_{seconds}.cmd")
    every = sendcmd_file(inputs, seconds, out / f"composite_{seconds}_every.cmd", calm=False)
    o = {k: out / f"composite_{k}.mp4" for k in ("avmix", "xstack", "lit", "every", "numpy", "long")}
    cmds = {"avmix composite": avmix(inputs, o["avmix"]),
            "ffmpeg xstack+amix": xstack(inputs, o["xstack"]),
            "ffmpeg lit graph": xstack(inputs, o["lit"], lit=lit),
            "ffmpeg lit graph, every frame": xstack(inputs, o["every"], lit=every),
            "avmix composite, numpy compositor": avmix(inputs, o["numpy"], numpy=True)}
    print(f"composite: {N} x {seconds} s of 640x360 into {SIZE[0]}x{SIZE[1]} {FPS} fps (runs interleaved)",
          flush=True)
    res = common.run_side_by_side(cmds, runs)
    rows = []
    for (tool, r), key in zip(res.items(), ("avmix", "xstack", "lit", "every", "numpy")):
        rows.append({"job": f"grid {N}x{seconds} s", "tool": tool, **r, "check": check(o[key], seconds, r),
                     "cmd": " ".join(map(str, cmds[tool]))[:400]})
    if not args.no_long:
        long_inputs = [make_input(DATA / f"composite_{long_seconds}_{i}.mp4", long_seconds, i) for i in range(N)]
        print(f"memory: avmix on {N} x {long_seconds} s (one run)", flush=True)
        (tool, r), = common.run_side_by_side({f"avmix composite {long_seconds} s": avmix(long_inputs, o["long"])},
                                             1).items()
        rows.append({"job": f"grid {N}x{long_seconds} s", "tool": tool, **r,
                     "check": check(o["long"], long_seconds, r), "cmd": ""})
    base = rows[0]["wall_s"]
    for r in rows[:5]:
        r["ratio"] = round(r["wall_s"] / base, 2)
    av, plain, litr = rows[:3]
    ok = all(not r["check"].startswith("FAIL") for r in rows)
    budget = 300 + 100 * N
    goals = {
        "avmix <= ffmpeg lit graph (ratio <= 1.0)": ok and av["wall_s"] <= litr["wall_s"],
        "avmix <= 1.3x ffmpeg xstack+amix": ok and av["wall_s"] <= 1.3 * plain["wall_s"],
        f"peak memory < {budget} MB (300 + 100 per input)": ok and max(r["peak_mb"] for r in rows if "avmix" in r["tool"]) < budget,
        "all outputs checked ok (equal length)": ok,
    }
    if not args.no_long:
        goals[f"memory flat ({long_seconds} s <= {seconds} s + 10%)"] = ok and rows[-1]["peak_mb"] <= av["peak_mb"] * 1.1
    common.report(rows, goals, "(x avmix = tool wall time / avmix wall time; peak MB = summed RSS of the tree)")
    results = DATA / "results-composite-quick.json" if args.quick else common.HERE / "results-composite.json"
    common.save(results, {"date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)), "quick": args.quick,
                          "seconds": seconds, "long_seconds": long_seconds, "runs": runs, "crf": CRF,
                          "preset": PRESET, "x264_params": X264, "environment": env, "rows": rows, "targets": goals})
    print(f"wrote {results}")
    return 0 if ok else 1


def memory_only(args) -> int:
    """Peak memory of avmix at the short and the long length, one run each."""
    seconds, long_seconds = (5, 40) if args.quick else (20, 600)
    out = DATA / "out"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in (seconds, long_seconds):
        inputs = [make_input(DATA / f"composite_{s}_{i}.mp4", s, i) for i in range(N)]
        common.warm(*inputs)
        o = out / f"composite_mem_{s}.mp4"
        print(f"memory: avmix on {N} x {s} s (one run)", flush=True)
        (tool, r), = common.run_side_by_side({f"avmix composite {s} s": avmix(inputs, o)}, 1).items()
        rows.append({"job": f"grid {N}x{s} s", "tool": tool, **r, "check": check(o, s, r)})
    budget = 300 + 100 * N
    goals = {f"peak memory < {budget} MB (300 + 100 per input)": all(r["peak_mb"] < budget for r in rows),
             f"memory flat ({long_seconds} s <= {seconds} s + 10%)": rows[1]["peak_mb"] <= rows[0]["peak_mb"] * 1.1,
             "outputs checked ok": all(not r["check"].startswith("FAIL") for r in rows)}
    common.report(rows, goals, "(peak MB = summed RSS of the process tree)")
    results = DATA / "results-composite-memory-quick.json" if args.quick else common.HERE / "results-composite-memory.json"
    common.save(results, {"date": time.strftime("%Y-%m-%d %H:%M"), "environment": common.environment(),
                          "rows": rows, "targets": goals})
    print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
