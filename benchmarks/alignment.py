"""Alignment benchmark: how well the picture's motion follows the sound (AV-Align, `avmix score`).

    .venv/bin/python benchmarks/alignment.py                 # real recordings, examples, a click track
    .venv/bin/python benchmarks/alignment.py --only real     # just the real recordings
    .venv/bin/python benchmarks/alignment.py --real DIR      # real recordings from another folder

`avmix generate --backend procedural` makes a video of each job, and ffmpeg's showwaves and
showspectrum draw theirs from its soundtrack and copy it, all at --size (640x360) and 30 fps. Each
video is scored with `avmix score VIDEO --json`, which computes optical flow on the frames at full
size (the published definition). The jobs: every real recording in tests/fixtures/real/ (see
SOURCES.md there), every example track alone, the mix of drums, birds and rain, and a clean click
track. Writes benchmarks/results-alignment.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import DATA  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
REAL = ROOT / "tests" / "fixtures" / "real"
FPS = 30
EXAMPLE_JOBS = {"drums": ["drums.wav"], "pad": ["pad.wav"], "birds": ["birds.wav"], "rain": ["rain.flac"],
                "drums+birds+rain": ["drums.wav", "birds.wav", "rain.flac"]}
CLICK_TIMES = [0.5, 1.3, 2.05, 3.1, 3.62, 4.4, 5.51, 6.2, 7.03, 7.9, 8.66, 9.3]  # s, irregular


def run(cmd: list) -> None:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{proc.stderr[-2000:]}")


def score(video: Path) -> dict:
    out = subprocess.run(common.avmix_cmd() + ["score", str(video), "--json", "-q"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"avmix score {video} failed: {out.stderr.strip()}")
    r = json.loads(out.stdout)
    return {k: r[k] for k in ("av_align", "audio_peaks", "video_peaks", "matches", "flow_size")}


def click_track(path: Path, seconds: float = 10.0, sr: int = 48000) -> Path:
    import soundfile as sf
    x = np.zeros(int(seconds * sr), np.float32)
    burst = np.random.default_rng(1).uniform(-0.8, 0.8, int(0.004 * sr)).astype(np.float32)
    burst *= np.exp(-np.arange(burst.size) / (0.001 * sr)).astype(np.float32)
    for t in CLICK_TIMES:
        i = int(round(t * sr))
        x[i:i + burst.size] += burst
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr, subtype="PCM_16")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=REAL, help="folder of real recordings (*.flac, *.wav)")
    ap.add_argument("--only", choices=["real", "examples", "clicks"], default=None)
    ap.add_argument("--size", default="640x360", help="video size to generate and score (default 640x360)")
    ap.add_argument("--no-peers", action="store_true", help="score avmix only, not ffmpeg's visualisers")
    args = ap.parse_args(argv)
    size = args.size
    peers = {} if args.no_peers else {"ffmpeg showwaves": f"showwaves=s={size}:rate={FPS}",
                                      "ffmpeg showspectrum": f"showspectrum=s={size}:slide=scroll:fps={FPS}"}
    work = DATA / "alignment"
    work.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, str, list[Path]]] = []
    if args.only in (None, "real"):
        real = sorted(p for p in args.real.glob("*") if p.suffix.lower() in (".flac", ".wav"))
        if not real:
            print(f"no real recordings in {args.real}", file=sys.stderr)
        jobs += [("real", p.stem, [p]) for p in real]
    if args.only in (None, "examples"):
        jobs += [("example", job, [EXAMPLES / n for n in names]) for job, names in EXAMPLE_JOBS.items()]
    if args.only in (None, "clicks"):
        jobs.append(("clicks", "click track", [click_track(work / "clicks.wav")]))
    started, env = time.time(), common.environment()
    rows = []
    for kind, job, inputs in jobs:
        ours = work / f"{job.replace(' ', '_')}.avmix.mp4"
        cmd = common.avmix_cmd() + ["generate", *inputs, "-o", ours, "--backend", "procedural", "--size", size,
                                    "--fps", str(FPS), "-y", "-q"]
        run(cmd)
        rows.append({"kind": kind, "job": job, "tool": "avmix procedural", **score(ours),
                     "cmd": " ".join(map(str, cmd)) + f" && avmix score {ours}"})
        for tool, viz in peers.items():  # drawn from avmix's soundtrack, which they copy: the same onsets
            out = work / f"{job.replace(' ', '_')}.{tool.split()[-1]}.mp4"
            run(common.ffmpeg_cmd("-i", str(ours), "-filter_complex", f"[0:a]{viz},format=yuv420p[v]",
                                  "-map", "[v]", "-map", "0:a", "-c:v", "libx264", "-crf", "20",
                                  "-c:a", "copy", str(out)))
            rows.append({"kind": kind, "job": job, "tool": tool, **score(out)})
        for r in rows[-1 - len(peers):]:
            print(f"{r['job']:<22} {r['tool']:<20} AV-Align {r['av_align']:.3f}  "
                  f"(audio peaks {r['audio_peaks']}, video peaks {r['video_peaks']}, matches {r['matches']})",
                  flush=True)
    print()
    means = {}
    for kind in ("real", "example"):
        for tool in ["avmix procedural", *peers]:
            vals = [r["av_align"] for r in rows if r["kind"] == kind and r["tool"] == tool]
            if vals:
                means[f"{kind} / {tool}"] = round(float(np.mean(vals)), 3)
                print(f"mean AV-Align, {kind} ({len(vals)}), {tool}: {np.mean(vals):.3f} "
                      f"(median {np.median(vals):.3f})")
    common.save(Path(__file__).resolve().parent / "results-alignment.json",
                {"date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)), "environment": env,
                 "size": size, "fps": FPS, "flow": "full size (avmix score default)", "means": means,
                 "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
