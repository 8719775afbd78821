"""Diffusion backend benchmark: seconds per generated (native) frame and peak memory.

    .venv/bin/python benchmarks/diffusion.py                  # CPU smoke with the tiny pipelines
    .venv/bin/python benchmarks/diffusion.py --seconds 60     # a 60 s input
    .venv/bin/python benchmarks/diffusion.py --model guoyww/animatediff-motion-adapter-v1-5-3+emilianJR/epiCRealism \\
        --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --size 512x512    # on a GPU machine, models already downloaded

Every case runs in its own process (so peak RSS and peak GPU memory are its own), renders a synthetic
two-track analysis (a pulsing tone and a steady bed) through ``avmix.video.diffusion.render``, and
reports: native frames, generation seconds (after loading), seconds per native frame, output frames
per second (output frames / generation seconds), peak RSS and peak CUDA memory. On a CPU-only machine
the tiny random-weight pipelines measure the wiring overhead only, not real-model speed.
Writes benchmarks/results-diffusion.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

# Publicly documented figures for the recommended models (NOT measured here: this machine has no GPU).
DOCUMENTED = [
    ("guoyww/animatediff-motion-adapter-v1-5-3 + an SD 1.5 base (e.g. emilianJR/epiCRealism)",
     "~12 GB VRAM for 16 frames at 512x512 (original AnimateDiff code with xformers and sequential decoding)",
     "guoyww/AnimateDiff README"),
    ("ByteDance/AnimateDiff-Lightning (4-step) + an SD 1.5 base", "no VRAM figure published; same UNet as above, "
     "4 steps without CFG instead of 25 with CFG", "ByteDance/AnimateDiff-Lightning model card"),
    ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "8.19 GB VRAM; a 5 s 480P clip in about 4 minutes on an RTX 4090 "
     "(Wan's own code, no quantization)", "Wan-Video/Wan2.1 README"),
]


def analysis_for(seconds: float, fps: float):
    import numpy as np

    from avmix.timeline import Analysis, Source, Timeline, TrackAnalysis

    frames = int(round(seconds * fps))
    t = np.arange(frames) / fps
    pulse = (0.5 + 0.5 * (np.sin(2 * np.pi * t / 2.0) > 0)).tolist()  # on/off every second
    bed = np.full(frames, 0.4).tolist()
    onsets = [float(x) for x in np.arange(0, seconds, 2.0)]
    tracks = [TrackAnalysis("a dog barking", pulse, onsets, index=0, end=seconds),
              TrackAnalysis("heavy rain", bed, [], index=1, end=seconds)]
    mix = TrackAnalysis("mix", [max(a, b) for a, b in zip(pulse, bed)], onsets)
    sr = 8000
    n = int(seconds * sr)
    timeline = Timeline("mix", sr, 1, n, [Source(0, "a.wav", "a dog barking", 0, n, n),
                                          Source(1, "b.wav", "heavy rain", 0, n, n)])
    return Analysis(fps=fps, frames=frames, duration=seconds, tracks=tracks, mix=mix), timeline


def child(args) -> None:
    from avmix.video import diffusion

    analysis, timeline = analysis_for(args.seconds, args.fps)
    w, h = (int(x) for x in args.size.split("x"))
    cuda = False
    try:
        import torch

        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu0 = time.perf_counter(), time.process_time()
        info = diffusion.render(analysis, timeline, Path(tmp) / "v.mp4", width=w, height=h, fps=args.fps, seed=0,
                                model=args.model, device=args.device, offload=args.offload, steps=args.steps)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    gen = info["timings"]["generate"]
    out = {"model": args.label or args.model, "family": info["family"], "device": info["device"],
           "offload": info["offload"], "size": info["generated_size"], "steps": info["steps"],
           "native_frames": info["native_frames"], "output_frames": analysis.frames, "seconds": args.seconds,
           "load_s": info["timings"]["load"], "generate_s": gen, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
           "s_per_native_frame": round(gen / info["native_frames"], 4),
           "output_fps": round(analysis.frames / gen, 2),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None}
    print("RESULT " + json.dumps(out), flush=True)


def run_case(model: str, label: str, args, *, offload: bool = False, steps: int | None = None) -> dict | None:
    cmd = [sys.executable, __file__, "--child", "--model", model, "--label", label, "--seconds", str(args.seconds),
           "--fps", str(args.fps), "--size", args.size, "--device", args.device]
    if offload:
        cmd.append("--offload")
    if steps:
        cmd += ["--steps", str(steps)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    print(f"  {label}: failed\n{r.stderr[-1500:]}", file=sys.stderr)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--label", default="", help=argparse.SUPPRESS)
    ap.add_argument("--model", action="append", default=None, help="real model(s) to measure (GPU machines)")
    ap.add_argument("--seconds", type=float, default=10.0, help="input length (default 10)")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--size", default="64x64", help="output size WxH (default 64x64 for the tiny models)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--offload", action="store_true")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (tiny models: 4)")
    args = ap.parse_args()
    if args.child:
        args.model = args.model[0]
        child(args)
        return

    from avmix.video.diffusion import tiny

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        if args.model:
            for m in args.model:
                cases += [(m, m, False), (m, m + " (offload)", True)]
            steps = args.steps
        else:
            for fam in ("animatediff", "animatediff-lightning", "wan"):
                cases.append((str(tiny.write(Path(tmp) / fam, family=fam)), f"tiny {fam}", False))
            steps = args.steps or 4
        print(f"{args.seconds:g} s input at {args.fps:g} fps, output {args.size}", flush=True)
        for model, label, offload in cases:
            res = run_case(model, label, args, offload=offload, steps=steps)
            if res:
                results.append(res)
                print(f"  done: {label}", flush=True)
    hdr = f"{'model':<44} {'dev':<5} {'size':<9} {'steps':>5} {'native':>6} {'gen s':>7} {'s/frame':>8} " \
          f"{'out fps':>8} {'CPU s':>6} {'RSS MB':>7} {'CUDA MB':>8}"
    print("\n" + hdr + "\n" + "-" * len(hdr))
    for r in results:
        size = "x".join(map(str, r["size"]))
        cuda = "-" if r["peak_cuda_mb"] is None else f"{r['peak_cuda_mb']:.0f}"
        print(f"{r['model'][:44]:<44} {r['device']:<5} {size:<9} {r['steps']:>5} {r['native_frames']:>6} "
              f"{r['generate_s']:>7.2f} {r['s_per_native_frame']:>8.4f} {r['output_fps']:>8.1f} "
              f"{r['cpu_s']:>6.1f} {r['peak_rss_mb']:>7.0f} {cuda:>8}")
    print("(gen s: wall time after loading; CPU s: process CPU time of the whole render incl. loading, "
          "which is steadier than wall time on a busy machine)")
    print("\nRecommended real models: documented figures (not measured here):")
    for model, figure, source in DOCUMENTED:
        print(f"  {model}: {figure} [{source}]")
    (HERE / "results-diffusion.json").write_text(json.dumps({"results": results, "args": vars(args)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
