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

The text-to-audio stage (``text:PROMPT`` tracks) is measured the same way, each model in its own process:
``--text-seconds`` of audio synthesised through ``avmix.synth`` (load, generate, windows, realtime factor,
peak memory). Without ``--audio-model`` the tiny stable-audio and audioldm2 pipelines run on the CPU:
wiring only. ``--only-audio`` skips the video cases (their earlier results in the JSON are kept).

    .venv/bin/python benchmarks/diffusion.py --only-audio --text-seconds 10
    .venv/bin/python benchmarks/diffusion.py --only-audio --audio-model stabilityai/stable-audio-open-1.0 \
        --audio-model cvssp/audioldm2       # on a GPU machine, models already downloaded
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


AUDIO_DOCUMENTED = [
    ("cvssp/audioldm2 (diffusers AudioLDM2Pipeline)", "a 10 s sample took upwards of 30 s with the original code; "
     "about 1 s in diffusers with fp16, SDPA attention, a DPM-Solver scheduler and fewer steps (Colab T4 GPU)",
     "Hugging Face blog 'AudioLDM 2, but faster', 2023-08-30, https://huggingface.co/blog/audioldm2"),
    ("stabilityai/stable-audio-open-1.0", "no published GPU speed or memory figure for the diffusers pipeline was "
     "found", "-"),
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


def child_audio(args) -> None:
    import torch

    from avmix import synth
    from avmix.synth import model as audio_model

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    settings = synth.Settings(model=args.model, device=args.device, steps=args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        settings = synth.Settings(**{**settings.__dict__, "cache_dir": tmp})
        start, cpu0 = time.perf_counter(), time.process_time()
        with audio_model.keep_loaded():  # load once, timed apart; synthesize then reuses it
            audio_model.load(audio_model.identify(args.model), args.device)
            loaded = time.perf_counter()
            track = synth.synthesize([f"text:heavy rain on a tin roof@{args.text_seconds:g}"], settings)[0]
        end, cpu = time.perf_counter(), time.process_time() - cpu0
    o = track.origin
    out = {"model": args.label or args.model, "family": o["family"], "device": o["device"], "steps": o["steps"],
           "audio_s": o["seconds"], "sample_rate": o["sample_rate"], "channels": o["channels"], "windows": o["windows"],
           "load_s": round(loaded - start, 3), "generate_s": round(end - loaded, 3), "cpu_s": round(cpu, 3),
           "realtime_x": round(o["seconds"] / (end - loaded), 3),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None}
    print("RESULT " + json.dumps(out), flush=True)


def run_child(cmd: list[str], label: str, steps: int | None) -> dict | None:
    """Run one case in its own process (peak memory is per case) and read its RESULT line."""
    cmd = [sys.executable, __file__, *cmd, "--label", label] + (["--steps", str(steps)] if steps else [])
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    print(f"  {label}: failed\n{r.stderr[-1500:]}", file=sys.stderr)
    return None


def run_audio_case(model: str, label: str, args, steps: int | None) -> dict | None:
    return run_child(["--child-audio", "--model", model, "--text-seconds", str(args.text_seconds),
                      "--device", args.device], label, steps)


def run_case(model: str, label: str, args, *, offload: bool = False, steps: int | None = None) -> dict | None:
    return run_child(["--child", "--model", model, "--seconds", str(args.seconds), "--fps", str(args.fps),
                      "--size", args.size, "--device", args.device] + (["--offload"] if offload else []),
                     label, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-audio", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--audio-model", action="append", default=None, help="real text-to-audio model(s) (GPU machines)")
    ap.add_argument("--text-seconds", type=float, default=10.0, help="text track length (default 10)")
    ap.add_argument("--only-audio", action="store_true", help="run only the text-to-audio stage")
    ap.add_argument("--label", default="", help=argparse.SUPPRESS)
    ap.add_argument("--model", action="append", default=None, help="real model(s) to measure (GPU machines)")
    ap.add_argument("--seconds", type=float, default=10.0, help="input length (default 10)")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--size", default="64x64", help="output size WxH (default 64x64 for the tiny models)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--offload", action="store_true")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (tiny models: 4)")
    args = ap.parse_args()
    if args.child or args.child_audio:
        args.model = args.model[0]
        (child_audio if args.child_audio else child)(args)
        return

    from avmix.video.diffusion import tiny

    results, audio_results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        if args.only_audio:
            pass
        elif args.model:
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
        from avmix.synth import tiny as tiny_audio

        if args.audio_model:
            audio_cases, audio_steps = [(m, m) for m in args.audio_model], args.steps
        else:
            audio_cases = [(str(tiny_audio.write(Path(tmp) / ("audio-" + f), family=f)), f"tiny {f}")
                           for f in tiny_audio.FAMILIES]
            audio_steps = args.steps or 4
        print(f"text-to-audio: {args.text_seconds:g} s track", flush=True)
        for model, label in audio_cases:
            res = run_audio_case(model, label, args, audio_steps)
            if res:
                audio_results.append(res)
                print(f"  done: {label}", flush=True)
    if results:
        video_table(results)
    audio_table(audio_results, tiny=not args.audio_model)
    print("\nRecommended real models: documented figures (not measured here):")
    for model, figure, source in DOCUMENTED + AUDIO_DOCUMENTED:
        print(f"  {model}: {figure} [{source}]")
    path = HERE / "results-diffusion.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    if results:
        saved.update(results=results, args=vars(args))
    saved.update(text_to_audio={"results": audio_results, "args": vars(args),
                                "note": "tiny random-weight models on the CPU: wiring only" if not args.audio_model
                                else "real models"})
    path.write_text(json.dumps(saved, indent=2) + "\n")


def audio_table(results: list[dict], *, tiny: bool) -> None:
    hdr = f"{'text-to-audio model':<34} {'dev':<5} {'steps':>5} {'audio s':>7} {'rate':>6} {'ch':>2} {'calls':>5} " \
          f"{'load s':>6} {'gen s':>7} {'x realtime':>10} {'CPU s':>6} {'RSS MB':>7} {'CUDA MB':>8}"
    print("\n" + hdr + "\n" + "-" * len(hdr))
    for r in results:
        cuda = "-" if r["peak_cuda_mb"] is None else f"{r['peak_cuda_mb']:.0f}"
        print(f"{r['model'][:34]:<34} {r['device']:<5} {r['steps']:>5} {r['audio_s']:>7g} {r['sample_rate']:>6} "
              f"{r['channels']:>2} {r['windows']:>5} {r['load_s']:>6.2f} {r['generate_s']:>7.2f} "
              f"{r['realtime_x']:>10.3f} {r['cpu_s']:>6.1f} {r['peak_rss_mb']:>7.0f} {cuda:>8}")
    if tiny:
        print("(tiny random-weight models on the CPU: these figures measure avmix's wiring, not real-model speed)")


def video_table(results: list[dict]) -> None:
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


if __name__ == "__main__":
    main()
