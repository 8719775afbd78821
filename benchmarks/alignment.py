"""Alignment benchmark: how well the picture's motion follows the sound (AV-Align, `avmix score`).

    .venv/bin/python benchmarks/alignment.py

`avmix generate --backend procedural` makes a video, and ffmpeg's showwaves and showspectrum draw
theirs from its soundtrack and copy it, all at 640x360 and 30 fps. Each video is scored against that
one soundtrack. The jobs
are every example track alone and the mix of drums, birds and rain. Writes
benchmarks/results-alignment.json.

AV-Align counts a match when a motion peak lies within one frame of a librosa onset. librosa's
onsets come 8-39 ms after the true hits of the example drum loop, while avmix puts a hit on the frame
that holds it, up to 33 ms before; hits that fall late in their frame are then counted as misses.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import DATA  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SIZE, FPS = "640x360", 30
JOBS = {"drums": ["drums.wav"], "pad": ["pad.wav"], "birds": ["birds.wav"], "rain": ["rain.flac"],
        "drums+birds+rain": ["drums.wav", "birds.wav", "rain.flac"]}
PEERS = {"ffmpeg showwaves": f"showwaves=s={SIZE}:rate={FPS}",
         "ffmpeg showspectrum": f"showspectrum=s={SIZE}:slide=scroll:fps={FPS}"}


def run(cmd: list) -> None:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{proc.stderr[-2000:]}")


def score(video: Path) -> dict:
    out = subprocess.run(common.avmix_cmd() + ["score", str(video), "--json", "-q"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"avmix score {video} failed: {out.stderr.strip()}")
    r = json.loads(out.stdout)
    return {k: r[k] for k in ("av_align", "audio_peaks", "video_peaks", "matches")}


def main() -> int:
    work = DATA / "alignment"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for job, names in JOBS.items():
        inputs = [EXAMPLES / n for n in names]
        ours = work / f"{job}.avmix.mp4"
        run(common.avmix_cmd() + ["generate", *inputs, "-o", ours, "--backend", "procedural", "--size", SIZE,
                                  "--fps", str(FPS), "-y", "-q"])
        rows.append({"job": job, "tool": "avmix procedural", **score(ours)})
        for tool, viz in PEERS.items():  # drawn from avmix's soundtrack, which they copy: the same onsets
            out = work / f"{job}.{tool.split()[-1]}.mp4"
            run(common.ffmpeg_cmd("-i", str(ours), "-filter_complex", f"[0:a]{viz},format=yuv420p[v]",
                                  "-map", "[v]", "-map", "0:a", "-c:v", "libx264", "-crf", "20",
                                  "-c:a", "copy", str(out)))
            rows.append({"job": job, "tool": tool, **score(out)})
        for r in rows[-3:]:
            print(f"{r['job']:<18} {r['tool']:<20} AV-Align {r['av_align']:.3f}  "
                  f"(audio peaks {r['audio_peaks']}, video peaks {r['video_peaks']}, matches {r['matches']})")
    ours = [r["av_align"] for r in rows if r["tool"] == "avmix procedural"]
    print()
    print(f"mean AV-Align: avmix {sum(ours) / len(ours):.3f}", end="")
    for tool in PEERS:
        vals = [r["av_align"] for r in rows if r["tool"] == tool]
        print(f", {tool} {sum(vals) / len(vals):.3f}", end="")
    print()
    common.save(Path(__file__).resolve().parent / "results-alignment.json",
                {"date": time.strftime("%Y-%m-%d %H:%M"), "environment": common.environment(), "size": SIZE, "fps": FPS, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
