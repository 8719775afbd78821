"""Video stage benchmark: `avmix generate --backend procedural` against ffmpeg's showwaves and showspectrum.

    .venv/bin/python benchmarks/render.py            # 60 s of audio (and 240 s for memory flatness)
    .venv/bin/python benchmarks/render.py --quick    # 10 s (and 40 s), one run each

Every tool makes a 1280x720 30 fps H.264 (libx264 yuv420p with the constant QP, preset, x264 options
and keyframe interval avmix's procedural renderer uses, read from its defaults; the x264 settings
written in each output are recorded to confirm; showwaves also at x264's CRF of the same --crf) + AAC 192k MP4 with +faststart from the same stereo 48 kHz WAV, muxing included. Outputs are probed (duration within a frame of the audio, size, fps, an audio stream).
One more row encodes avmix's own frames, drawn beforehand, with one ffmpeg command: the encoding's
share of the job on this machine, with no drawing, analysis or Python.
Writes benchmarks/results-render.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import DATA  # noqa: E402

SIZE, FPS = "1280x720", 30


def _avmix_encode() -> tuple[int, int, str, str | None]:
    """The crf, the constant QP it becomes, the x264 preset and the x264 options avmix's procedural
    renderer encodes with (its defaults), so the peers match."""
    import inspect
    from avmix.video import procedural
    p = inspect.signature(procedural.render).parameters
    crf = p["crf"].default
    return crf, procedural.quantizer(crf), p["preset"].default, p["x264_params"].default


CRF, QP, PRESET, X264_PARAMS = _avmix_encode()
GOP = 2 * FPS  # avmix's keyframe interval (avmix.video.writer.GOP_SECONDS)


def encode(rate: list[str]) -> list[str]:
    return ["-c:v", "libx264", "-preset", PRESET, *rate, "-g", str(GOP), "-pix_fmt", "yuv420p",
            *(["-x264-params", X264_PARAMS] if X264_PARAMS else []),
            "-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart"]


ENCODE = encode(["-qp", str(QP)])  # identical to avmix's
ENCODE_CRF = encode(["-crf", str(CRF)])  # the user's --crf as x264's CRF, as the issue first compared


def avmix(audio: Path, out: Path) -> list[str]:
    return common.avmix_cmd() + ["generate", audio, "-o", out, "--backend", "procedural", "--size", SIZE,
                                 "--fps", str(FPS), "-y"]


# what a user types for the same job: x264's own defaults (preset medium, crf 23)
DEFAULT_ENCODE = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k",
                  "-movflags", "+faststart"]


def ffmpeg_viz(audio: Path, out: Path, viz: str, encode: list[str] = ENCODE) -> list[str]:
    # fps: ffmpeg 5.1's showwaves gives 37.5 fps from 48 kHz audio whatever its rate option says
    graph = f"[0:a]{viz},fps={FPS},format=yuv420p[v]"
    return common.ffmpeg_cmd("-i", str(audio), "-filter_complex", graph, "-map", "[v]", "-map", "0:a",
                             *encode, str(out))


def check(path: Path, seconds: float, r: dict, *, slack: float = 1.5 / FPS) -> str:
    """Probe an output: 1280x720, 30 fps, an audio stream, duration within ``slack`` s of the audio."""
    from avmix import ffmpeg
    if r["exit_codes"] != [0]:
        return common.failed(r)
    try:
        info = ffmpeg.probe(path)
    except Exception as e:  # a broken output is a failed run, whatever the error
        return f"FAIL: cannot probe output: {e}"
    v, problems = info.video, []
    if v is None or (v.width, v.height) != (1280, 720) or not v.fps or abs(v.fps - FPS) > 0.01:
        problems.append(f"video {v}")
    if info.audio is None:
        problems.append("no audio stream")
    if info.duration is None or abs(info.duration - seconds) > slack:
        problems.append(f"duration {info.duration} s")
    r["duration_s"] = info.duration
    r["x264"] = x264_settings(path)
    return "FAIL: " + "; ".join(problems) if problems else f"ok, {info.duration:.3f} s"


def x264_settings(path: Path) -> str | None:
    """Rate control / me / subme / ref from the x264 settings string inside an H.264 file (tells the
    preset)."""
    with open(path, "rb") as f:
        head = f.read(4 << 20)
    i = head.find(b"x264 - core")
    if i < 0:
        return None
    opts = head[i:i + 2000].split(b"\0")[0].decode("ascii", "replace").split()
    keep = ("cabac=", "deblock=", "rc=", "crf=", "qp=", "me=", "subme=", "ref=", "keyint=")
    return " ".join(o for o in opts if o.startswith(keep))


# Run in a child Python so that start-up and imports count. CPU of ffmpeg children is counted when they are
# reaped: the video's x264 in "video", the audio encode (started after compose, run beside the analysis and
# the video) in "audio", the mux's in "mux".
PROFILE = r"""
import json, resource, sys, time
def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime
rows = {"start-up and imports": [*cpu(), 0.0]}
t0 = time.perf_counter()
from avmix import pipeline, mux
from avmix.pipeline import muxing, workdir
rows["start-up and imports"] = [*cpu(), 0.0]
def timed(name, fn):
    def run(*a, **k):
        b, t = cpu(), time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            e = cpu()
            rows[name] = [e[0] - b[0], e[1] - b[1], time.perf_counter() - t]
    return run
run = workdir.Stages.run
workdir.Stages.run = lambda self, name, *a, **k: timed(name, run)(self, name, *a, **k)
muxing.EarlyAudio.finish = timed("audio (wait)", muxing.EarlyAudio.finish)
mux.render = timed("mux", mux.render)
b = cpu()
pipeline.generate([sys.argv[1]], sys.argv[2], overwrite=True, backend="procedural", size=(1280, 720), fps=30.0)
e = cpu()
rows["generate, total"] = [e[0] - b[0], e[1] - b[1], time.perf_counter() - t0]
print(json.dumps(rows))
"""


def profile(audio: Path, out: Path) -> dict:
    """CPU s of Python and of its ffmpeg children, and wall s, per stage of one ``avmix generate``."""
    import json
    import subprocess
    proc = subprocess.run([sys.executable, "-c", PROFILE, str(audio), str(out)], capture_output=True, text=True,
                          check=True)
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{'stage':<24} {'python cpu s':>12} {'ffmpeg cpu s':>12} {'wall s':>8}")
    for name, (py, ff, wall) in rows.items():
        print(f"{name:<24} {py:>12.2f} {ff:>12.2f} {wall:>8.2f}")
    return rows


def paint(files: list[Path], mode: str, raw: Path, work: Path) -> tuple[int, int]:
    """avmix's procedural frames of ``files`` at SIZE, drawn into ``raw`` as planar G, B, R at the internal
    size; returns that size. The analysis comes from an ``avmix generate`` run at a tiny size: it depends
    on the frame rate, not on the size."""
    import subprocess
    from avmix.timeline import Analysis
    from avmix.video import procedural
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(common.avmix_cmd() + ["generate", *files, "--mode", mode, "-o", work / "out.mp4",
                                         "--size", "64x36", "--fps", str(FPS), "--backend", "procedural",
                                         "--workdir", work, "-y", "-q"], check=True)
    analysis = Analysis.load(work / "analysis.json")
    w, h, _ = procedural.internal_size(*map(int, SIZE.split("x")))
    painter = procedural.Painter(analysis, w, h, seed=0, captions=False)
    with open(raw, "wb") as f:
        for k in range(analysis.frames):
            f.write(painter.frame(k).tobytes())
    return w, h


def raw_frames(raw: Path, w: int, h: int) -> list[str]:
    return ["-f", "rawvideo", "-pix_fmt", "gbrp", "-s", f"{w}x{h}", "-framerate", str(FPS), "-i", str(raw)]


UPSCALE = f"scale={SIZE.replace('x', ':')}:out_color_matrix=bt709:out_range=tv:flags=bicubic,format=yuv420p"


def quality(audio: Path) -> list[dict]:
    """Size and PSNR of avmix's constant QP against x264's CRF at the same --crf, on the frames of three
    renders: this benchmark's 60 s, and a 4-track mix and a 3-track concat of the real recordings."""
    import re
    import subprocess
    import tempfile
    from avmix import ffmpeg
    from avmix.video import writer
    real = common.HERE.parent / "tests" / "fixtures" / "real"
    jobs = {"benchmark 60 s": ("mix", [audio]),
            "4-track mix (real)": ("mix", [real / f"{n}.flac" for n in ("music_electronic", "speech_congrats",
                                                                          "field_birds", "effects_pygame")]),
            "3-track concat (real)": ("concat", [real / f"{n}.flac" for n in ("music_piano_notes", "speech_instruct",
                                                                               "effects_tuxracer")])}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, (mode, files) in jobs.items():
            raw = tmp / "frames.raw"
            w, h = paint(files, mode, raw, tmp / name.split()[0])
            for rc, qp in ((f"crf {CRF}", None), (f"qp {QP}", QP)):
                video = tmp / "v.mp4"
                args = writer.encode_args(video, width=1280, height=720, fps=FPS, src_size=(w, h), crf=CRF,
                                          qp=qp, preset=PRESET, movflags=False, pix_fmt="gbrp",
                                          x264_params=X264_PARAMS)
                with open(raw, "rb") as f:
                    subprocess.run([ffmpeg.executable(), "-v", "error", "-y", *args], stdin=f, check=True)
                out = subprocess.run([ffmpeg.executable(), "-nostats", *raw_frames(raw, w, h), "-i", video,
                                      "-lavfi", f"[0:v]{UPSCALE}[r];[1:v][r]psnr", "-f", "null", "-"],
                                     capture_output=True, text=True, check=True).stderr
                m = re.search(r"average:([\d.]+) min:([\d.]+)", out)
                rows.append({"render": name, "rate control": rc, "MB": round(video.stat().st_size / 1e6, 2),
                             "mean PSNR dB": float(m[1]), "worst frame PSNR dB": float(m[2])})
                print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 s of audio (40 s for memory), one run each")
    ap.add_argument("--runs", type=int, default=None, help="runs per command (default 3, quick 1)")
    ap.add_argument("--no-spectrum", action="store_true", help="skip the slow showspectrum peer")
    ap.add_argument("--no-long", action="store_true", help="skip the memory run on the long input")
    ap.add_argument("--profile", action="store_true",
                    help="only profile one avmix run: CPU per stage (Python and ffmpeg) and wall time")
    ap.add_argument("--quality", action="store_true",
                    help=f"only compare size and PSNR of the constant QP avmix uses with x264's CRF {CRF}")
    args = ap.parse_args(argv)
    seconds, long_seconds = (10, 40) if args.quick else (60, 240)
    runs = args.runs or (1 if args.quick else 3)
    audio = common.make_wav(DATA / f"render_{seconds}.wav", seconds, seed=5, peak=0.9)
    if args.quality:
        rows = quality(audio)
        common.save(common.HERE / "results-render-quality.json", {"date": time.strftime("%Y-%m-%d %H:%M"),
                                                                   "rows": rows})
        return 0
    if args.profile:
        (DATA / "out").mkdir(parents=True, exist_ok=True)
        profile(audio, DATA / "out" / "render_profile.mp4")
        return 0
    long_audio = common.make_wav(DATA / f"render_{long_seconds}.wav", long_seconds, seed=5, peak=0.9)
    out = DATA / "out"
    out.mkdir(parents=True, exist_ok=True)
    common.warm(audio, long_audio)
    started, env = time.time(), common.environment()  # load average before we add ours

    keys = ("avmix", "showwaves", "showwaves_crf", "showwaves_default", "encode", "showspectrum",
            "showspectrum_default")
    o = {k: out / f"render_{k}.mp4" for k in keys + ("avmix_long",)}
    o["frames"] = out / "render_frames.gbrp"
    waves, spectrum = f"showwaves=s={SIZE}:rate={FPS}", f"showspectrum=s={SIZE}:slide=scroll:fps={FPS}"
    cmds = {
        "avmix generate procedural": avmix(audio, o["avmix"]),
        "ffmpeg showwaves": ffmpeg_viz(audio, o["showwaves"], waves),
        f"ffmpeg showwaves (crf {CRF})": ffmpeg_viz(audio, o["showwaves_crf"], waves, ENCODE_CRF),
        "ffmpeg showwaves (x264 defaults)": ffmpeg_viz(audio, o["showwaves_default"], waves, DEFAULT_ENCODE),
    }
    # avmix's own frames, drawn beforehand (untimed), scaled and encoded with its audio by one ffmpeg: what
    # the job costs this machine with no drawing, analysis or Python at all
    w, h = paint([audio], "mix", o["frames"], out / "render_frames")
    cmds["ffmpeg encode of avmix's frames (no drawing)"] = common.ffmpeg_cmd(
        *raw_frames(o["frames"], w, h), "-i", str(audio), "-map", "0:v", "-map", "1:a", "-vf", UPSCALE,
        *ENCODE, str(o["encode"]))
    if not args.no_spectrum:
        cmds["ffmpeg showspectrum"] = ffmpeg_viz(audio, o["showspectrum"], spectrum)
        cmds["ffmpeg showspectrum (x264 defaults)"] = ffmpeg_viz(audio, o["showspectrum_default"], spectrum,
                                                                 DEFAULT_ENCODE)
    print(f"render {seconds} s of audio at {SIZE} {FPS} fps, muxed MP4 (runs interleaved)", flush=True)
    res = common.run_side_by_side(cmds, runs)
    o["frames"].unlink()  # 1.2 GB a minute
    rows = []
    for (tool, r), key in zip(res.items(), keys):
        # avmix promises one frame; the peers get 0.2 s (showwaves' video runs 2 frames long)
        ok = check(o[key], seconds, r, **({} if key == "avmix" else {"slack": 0.2}))
        rows.append({"job": f"render {seconds} s", "tool": tool, **r, "check": ok,
                     "realtime_x": round(seconds / r["wall_s"], 2), "cmd": " ".join(map(str, cmds[tool]))})

    if not args.no_long:
        print(f"memory: avmix generate on {long_seconds} s of audio (one run)", flush=True)
        cmd = avmix(long_audio, o["avmix_long"])
        (tool, r), = common.run_side_by_side({f"avmix generate {long_seconds} s": cmd}, 1).items()
        rows.append({"job": f"render {long_seconds} s", "tool": tool, **r,
                     "check": check(o["avmix_long"], long_seconds, r),
                     "realtime_x": round(long_seconds / r["wall_s"], 2), "cmd": " ".join(map(str, cmd))})

    base, base_cpu = rows[0]["wall_s"], rows[0].get("cpu_s")
    for r in rows[:len(res)]:
        r["ratio"] = round(r["wall_s"] / base, 2)
        if base_cpu and r.get("cpu_s"):  # on a shared machine CPU seconds compare better than wall
            r["cpu_ratio"] = round(r["cpu_s"] / base_cpu, 2)
    av, waves, waves_crf, waves_default = rows[:4]
    av_long = rows[-1] if not args.no_long else None
    fine = not av["check"].startswith("FAIL") and not (av_long and av_long["check"].startswith("FAIL"))
    goals = {
        f"avmix >= 10x real time ({seconds} s in <= {seconds / 10:.0f} s)": fine and av["wall_s"] <= seconds / 10,
        "avmix <= ffmpeg showwaves (same x264 settings)": fine and av["wall_s"] <= waves["wall_s"],
        f"avmix <= ffmpeg showwaves (crf {CRF})": fine and av["wall_s"] <= waves_crf["wall_s"],
        "avmix <= ffmpeg showwaves (x264 defaults)": fine and av["wall_s"] <= waves_default["wall_s"],
        f"peak memory flat ({long_seconds} s <= {seconds} s + 10%)": (
            fine and av_long["peak_mb"] <= av["peak_mb"] * 1.1 if av_long else None),
        "all outputs checked ok": not any(r["check"].startswith("FAIL") for r in rows),
    }
    goals = {k: v for k, v in goals.items() if v is not None}  # None: not measured in this run
    common.report(rows, goals, "(x avmix = tool wall time / avmix wall time; peak MB = largest of single-process "
                               "maxrss and the summed RSS of the process tree)")
    floor = rows[keys.index("encode")]
    print(f"the encode alone (avmix's frames, no drawing) took {floor['wall_s']:.2f} s here, "
          f"{seconds / floor['wall_s']:.1f}x real time")
    print("CPU s (user + sys of every process), tool / avmix: "
          + ", ".join(f"{r['tool']} {r['cpu_ratio']:.2f}" for r in rows if "cpu_ratio" in r))
    results = DATA / "results-render-quick.json" if args.quick else common.HERE / "results-render.json"
    common.save(results, {
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)), "quick": args.quick,
        "seconds": seconds, "long_seconds": long_seconds, "runs": runs, "size": SIZE, "fps": FPS,
        "crf": CRF, "qp": QP, "preset": PRESET, "x264_params": X264_PARAMS, "environment": env, "rows": rows, "targets": goals,
    })
    print(f"wrote {results}")
    return 0 if goals["all outputs checked ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
