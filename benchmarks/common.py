"""Shared helpers for the benchmarks: test signals, timing and peak memory of a command, checks, tables.

Every measured command runs under GNU time (or, without it, a tiny fork/exec wrapper) so that its
numbers are its own: wall time from spawn to exit, user+sys CPU and ``ru_maxrss`` (the largest single
process of the tree), and, when psutil is present, the summed RSS of the whole tree polled every
50 ms (what matters when avmix and an ffmpeg child run at the same time).
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"  # git-ignored: generated inputs and outputs
RATE = 48000
BLOCK = 1 << 16

TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None  # GNU time

# Fallback when GNU time is missing: a Python wrapper reporting its child's ru_maxrss. Its floor is the
# wrapper's own RSS (~10 MB): the kernel keeps the forking process's high-water mark at exec.
WRAPPER = r"""
import os, resource, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status = os.waitpid(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{time.perf_counter() - t0} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def avmix_cmd() -> list[str]:
    """The avmix console script of the running venv (else ``python -m avmix``)."""
    exe = Path(sys.executable).parent / "avmix"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "avmix"]


def ffmpeg_exe() -> str:
    from avmix import ffmpeg
    return ffmpeg.executable()


def ffmpeg_cmd(*args: str) -> list[str]:
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]


def sox_exe() -> str | None:
    return shutil.which("sox")


# ------------------------------------------------------------------------------------------ signals

def _signal_block(start: int, n: int, *, seed: int, peak: float, state: dict) -> np.ndarray:
    """Music-like stereo: a decaying chord per bar, a kick per beat and filtered noise, |x| <= peak."""
    rng = state.setdefault("rng", np.random.default_rng(seed))
    bpm = 120 if seed % 2 else 96
    t = (start + np.arange(n)) / RATE
    beat = 60.0 / bpm
    bar = (t // (4 * beat)).astype(np.int64)
    roots = 110.0 * 2 ** (np.array([0, 5, 7, 3, 8, 10, 2]) / 12) * (1.5 if seed % 2 else 1.0)
    f0 = roots[(bar + seed) % len(roots)]
    bar_env = np.exp(-(t % (4 * beat)) * 1.5)
    chord = sum(np.sin(2 * np.pi * f0 * r * t) for r in (1.0, 1.25, 1.5)) / 3 * bar_env
    kick = np.sin(2 * np.pi * 55 * t) * np.exp(-(t % beat) * 12)
    # one-pole low-pass of uniform noise, state carried across blocks; stays within [-1, 1]
    from scipy.signal import lfilter
    a = 0.9
    zi = state.setdefault("zi", np.zeros((1, 2)))
    noise = rng.uniform(-1, 1, (n, 2))
    out = np.empty((n, 2))
    for c in range(2):
        out[:, c], zi[:, c] = lfilter([1 - a], [1, -a], noise[:, c], zi=zi[:, c])
    state["zi"] = zi
    left, right = (0.6, 0.4) if seed % 2 else (0.4, 0.6)
    x = 0.45 * out * (1.0 + 0.5 * np.sin(2 * np.pi * 0.05 * t))[:, None] / 1.5
    x[:, 0] += 0.3 * chord * left * 2 + 0.15 * kick
    x[:, 1] += 0.3 * chord * right * 2 + 0.15 * kick
    return (x * peak).astype(np.float32)


def make_wav(path: Path, seconds: float, *, seed: int, peak: float) -> Path:
    """Write (once, streaming) a stereo 48 kHz 16-bit WAV of the test signal; reuse it if present."""
    frames = int(round(seconds * RATE))
    if path.exists():
        try:
            if sf.info(str(path)).frames == frames:
                return path
        except RuntimeError:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.wav")
    state: dict = {}
    with sf.SoundFile(str(tmp), "w", samplerate=RATE, channels=2, subtype="PCM_16") as f:
        for start in range(0, frames, BLOCK):
            f.write(_signal_block(start, min(BLOCK, frames - start), seed=seed, peak=peak, state=state))
    os.replace(tmp, path)
    return path


def warm(*paths: Path) -> None:
    """Read files once so every tool starts from the page cache."""
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


# ------------------------------------------------------------------------------------------ measuring

def measure_once(cmd: list[str]) -> dict:
    """Run ``cmd``; return its wall s, peak MB (max of ru_maxrss and the polled tree RSS) and exit code.

    ``ru_maxrss`` comes from GNU time (``%M``) around the command: the largest single process. The
    tree RSS (summed over the command and its children, GNU time excluded, polled every 50 ms with
    psutil) adds what concurrent children (avmix + its ffmpeg) hold together; shared libraries count
    once per process.
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as rep, tempfile.TemporaryFile() as err:
        pre = [TIME, "-f", "%U %S %M", "-o", rep.name] if TIME else [sys.executable, "-c", WRAPPER, rep.name]
        t0 = time.perf_counter()
        proc = subprocess.Popen(pre + [str(c) for c in cmd], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        tree = 0
        if psutil is not None:
            root = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:
                    tree = max(tree, sum(q.memory_info().rss for q in root.children(recursive=True)))
                except psutil.Error:
                    pass
                time.sleep(0.05)
        code = proc.wait()
        wall = time.perf_counter() - t0
        fields = rep.read().split()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    maxrss = int(fields[-1]) * 1024 if fields else 0
    cpu = float(fields[-3]) + float(fields[-2]) if len(fields) >= 3 else None  # user + sys, GNU time only
    r = {"code": code, "wall": wall, "cpu": cpu, "peak_mb": max(maxrss, tree) / 1e6, "maxrss_mb": maxrss / 1e6,
         "tree_mb": tree / 1e6}
    if code != 0:
        r["stderr"] = stderr.strip()[-800:]
    return r


def summarize(runs: list[dict]) -> dict:
    """Median wall time and the largest peak over the runs."""
    return {
        "wall_s": round(statistics.median(r["wall"] for r in runs), 3),
        "walls_s": [round(r["wall"], 3) for r in runs],
        "cpu_s": round(statistics.median(r["cpu"] for r in runs), 3) if runs[0]["cpu"] is not None else None,
        "peak_mb": round(max(r["peak_mb"] for r in runs), 1),
        "maxrss_mb": round(max(r["maxrss_mb"] for r in runs), 1),
        "tree_mb": round(max(r["tree_mb"] for r in runs), 1),
        "exit_codes": sorted({r["code"] for r in runs}),
        "stderr": next((r["stderr"] for r in runs if "stderr" in r), None),
    }


@functools.cache
def fresh_bytecode() -> None:
    """Compile avmix's bytecode, as ``make`` and a pip install do: after an edit (or where
    PYTHONDONTWRITEBYTECODE is set) every timed run would otherwise compile the changed modules anew.
    Once per benchmark run."""
    import compileall
    compileall.compile_dir(str(HERE.parent / "avmix"), quiet=1)


def run_side_by_side(cmds: dict[str, list[str]], runs: int, *, log=print) -> dict[str, dict]:
    """Measure every command ``runs`` times, interleaved (a, b, c, a, b, c, ...) so drift hits all alike."""
    fresh_bytecode()
    got: dict[str, list[dict]] = {name: [] for name in cmds}
    for i in range(runs):
        for name, cmd in cmds.items():
            r = measure_once(cmd)
            got[name].append(r)
            log(f"  run {i + 1}/{runs} {name}: {r['wall']:.2f} s (cpu {r['cpu'] or 0:.2f} s), {r['peak_mb']:.0f} MB"
                + ("" if r["code"] == 0 else f"  EXIT {r['code']}: {r.get('stderr', '')[-300:]}"))
    return {name: summarize(rs) for name, rs in got.items()}


# ------------------------------------------------------------------------------------------ checks

def failed(r: dict) -> str:
    """One-line check result for a run that exited non-zero: the exit code and the last error line."""
    lines = [ln for ln in (r.get("stderr") or "").splitlines() if ln.strip()]
    return f"FAIL: exit {r['exit_codes']}: {lines[-1][-160:] if lines else 'no error output'}"


def frames(path: Path) -> int:
    return sf.info(str(path)).frames


def ebur128(path: Path) -> dict:
    """Integrated loudness (LUFS) and true peak (dBTP) measured by ffmpeg's ebur128 filter."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", str(path),
                           "-af", "ebur128=peak=true", "-f", "null", "-"], capture_output=True, text=True)
    summary = proc.stderr.rsplit("Summary:", 1)[-1]
    i = re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary)
    tp = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    return {"lufs": float(i.group(1)) if i else None, "true_peak_dbtp": float(tp.group(1)) if tp else None}


def max_diff_int16(a: Path, b: Path) -> int:
    """Largest sample difference between two WAVs, in 16-bit steps (streaming)."""
    worst = 0
    with sf.SoundFile(str(a)) as fa, sf.SoundFile(str(b)) as fb:
        if fa.frames != fb.frames or fa.channels != fb.channels:
            return -1
        for x in fa.blocks(BLOCK, dtype="int32"):
            y = fb.read(len(x), dtype="int32")
            worst = max(worst, int(np.max(np.abs((x >> 16) - (y >> 16)))) if len(x) else 0)
    return worst


# ------------------------------------------------------------------------------------------ output

def table(rows: list[dict]) -> str:
    """Plain text table: job, tool, wall s, cpu s (user+sys), peak MB, ratio (tool wall / avmix wall), check."""
    head = f"{'job':<22} {'tool':<30} {'wall s':>8} {'cpu s':>7} {'peak MB':>8} {'x avmix':>8}  check"
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else "-"
        cpu = f"{r['cpu_s']:.2f}" if r.get("cpu_s") is not None else "-"
        lines.append(f"{r['job']:<22} {r['tool']:<30} {r['wall_s']:>8.2f} {cpu:>7} {r['peak_mb']:>8.0f} {ratio:>8}  "
                     f"{r.get('check', '')}")
    return "\n".join(lines)


def report(rows: list[dict], goals: dict, legend: str) -> None:
    """Print the result table, its legend and a PASS/MISS line per target."""
    print()
    print(table(rows))
    print(legend)
    print()
    for name, ok in goals.items():
        print(f"{'PASS' if ok else 'MISS'}  {name}")


def save(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def environment() -> dict:
    import platform
    from avmix import ffmpeg
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "ffmpeg": ffmpeg.version(), "ffmpeg_path": ffmpeg.executable(), "sox": sox_exe(),
            "loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()]}  # other work on the machine skews times
