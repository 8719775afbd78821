"""Interrupting real `avmix` processes (SIGINT, SIGTERM) at known moments of their work.

After the signal: a non-zero exit (130 for Ctrl-C, 143 or 130 for SIGTERM, or death by the signal
before avmix's handlers are installed), no output file, no ``.part`` temp file anywhere, no ffmpeg
left running; and `generate` run again with the same ``--workdir`` finishes, reusing the stages that
were complete, with a valid video. The same for `mix` stopped mid-write and `batch` stopped mid-job.

The moments are found by watching the files: a stage's temp file appearing in the work directory
(``.audio.*.part.wav`` while composing, ``.video.*.part.mp4`` with data in it while rendering, ``.OUT.*.part.mp4``
beside the output while muxing), so the test does not depend on the machine's speed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avmix import ffmpeg

psutil = pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 10.0
RATE = 48000
TIMEOUT = 120


def avmix(*args, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "avmix", *map(str, args)], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def make_inputs(d: Path, seconds: float = SECONDS) -> list[Path]:
    t = np.arange(int(seconds * RATE)) / RATE
    a = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    b = 0.2 * np.random.default_rng(0).uniform(-1, 1, len(t)) * ((t % 1.0) < 0.1)
    pa, pb = d / "a.wav", d / "b.wav"
    sf.write(str(pa), np.stack([a, a], 1).astype(np.float32), RATE, subtype="PCM_16")
    sf.write(str(pb), np.stack([b, b], 1).astype(np.float32), RATE, subtype="PCM_16")
    return [pa, pb]


def parts(*dirs: Path) -> list[str]:
    return [os.path.join(d, n) for d in dirs if d.is_dir() for n in os.listdir(d) if ".part" in n]


def wait_for(proc: subprocess.Popen, moment, timeout: float = 60.0) -> bool:
    """Poll until ``moment()`` is true (True) or the process has ended (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if moment():
            return True
        time.sleep(0.002)
    raise AssertionError("moment never came")


def ffmpeg_children(marker: str) -> list:
    """Processes (ffmpeg, avmix, pool workers forked from it) whose command line mentions ``marker``
    (the test's temp directory), other than this test process."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except psutil.Error:
            continue
        if marker in cmd and p.pid != os.getpid() and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def assert_no_orphans(marker: str) -> None:
    end = time.monotonic() + 5
    while ffmpeg_children(marker) and time.monotonic() < end:
        time.sleep(0.05)
    left = ffmpeg_children(marker)
    assert not left, f"left running: {[p.info['cmdline'] for p in left]}"


def interrupt(proc: subprocess.Popen, sig: int, *, group: bool) -> tuple[int, str]:
    if group:  # as a terminal's Ctrl-C: the whole foreground process group, ffmpeg included
        os.killpg(proc.pid, sig)
    else:  # as `kill -INT pid`: avmix alone has to stop its children
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, err


def check_interrupted(code: int, err: str, sig: int) -> None:
    allowed = {130, -sig} | ({143} if sig == signal.SIGTERM else set())
    assert code in allowed, (code, err)
    if code > 0:
        assert "interrupted" in err and "Traceback" not in err, err


def generate_cmd(inputs: list[Path], out: Path, work: Path) -> list:
    return ["generate", *inputs, "-o", out, "--backend", "procedural", "--size", "320x180", "--fps", "30",
            "--workdir", work, "--json", "--quiet"]


def _part_in(d: Path, prefix: str, *, min_size: int = 0):
    def found() -> bool:
        try:
            return any(n.startswith(prefix) and ".part" in n and (d / n).stat().st_size >= min_size
                       for n in os.listdir(d))
        except OSError:  # the directory or the file is not there (yet, or any more)
            return False
    return found


def _recorded(work: Path, stage: str) -> bool:
    """The manifest records ``stage`` as finished (the stage after it is running)."""
    try:
        return stage in json.loads((work / "manifest.json").read_text())["stages"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


# moment name -> (condition on (work dir, output dir)), the stages a rerun can reuse
MOMENTS = {
    "compose": (lambda w, o: _part_in(w, ".audio.")(), set()),
    "analyze": (lambda w, o: _recorded(w, "compose") and not (w / "analysis.json").exists(), {"compose"}),
    # encoded data in the temp file: ffmpeg and the frame pipe are running (the instants around
    # VideoWriter's start are covered by test_video_writer_interrupted_while_starting)
    "video": (lambda w, o: _part_in(w, ".video.", min_size=1)(), {"compose", "analyze"}),
    "mux": (lambda w, o: _part_in(o, ".out.")(), {"compose", "analyze", "video"}),
}


@pytest.mark.parametrize("moment,sig,group", [
    ("compose", signal.SIGINT, False),
    ("analyze", signal.SIGTERM, False),
    ("video", signal.SIGINT, False),
    ("video", signal.SIGTERM, False),
    ("video", signal.SIGINT, True),
    ("mux", signal.SIGINT, False),
    ("mux", signal.SIGTERM, True),
])
def test_generate_interrupted_then_resumed(tmp_path, moment, sig, group):
    inputs = make_inputs(tmp_path)
    out_dir, work = tmp_path / "out", tmp_path / "work"
    out_dir.mkdir()
    out = out_dir / "out.mp4"
    cmd = generate_cmd(inputs, out, work)
    when, reusable = MOMENTS[moment]
    proc = avmix(*cmd, start_new_session=True)
    reached = wait_for(proc, lambda: when(work, out_dir))
    assert reached, f"finished before the {moment} stage: {proc.communicate()}"
    code, err = interrupt(proc, sig, group=group)
    check_interrupted(code, err, sig)
    assert not out.exists(), "a partial output was left"
    assert parts(out_dir, work) == [], (parts(out_dir, work), code, err)
    assert_no_orphans(str(tmp_path))

    again = avmix(*cmd)
    stdout, err = again.communicate(timeout=TIMEOUT)
    assert again.returncode == 0, err
    result = json.loads(stdout)
    # stages finished before the signal are reused (a stage may have completed between the moment
    # and the signal's arrival, so the rerun can reuse more, never less)
    assert reusable <= set(result["reused"]), (moment, result["reused"])
    info = ffmpeg.probe(out)
    assert info.video is not None and (info.video.width, info.video.height) == (320, 180)
    assert info.audio is not None and abs(info.duration - SECONDS) <= 1.5 / 30
    assert parts(out_dir, work) == []


def test_generate_interrupted_right_after_start(tmp_path):
    """SIGINT 0.3 s after the start (while Python imports): it stops, leaving nothing behind, and a
    rerun works."""
    inputs = make_inputs(tmp_path, 2.0)
    out = tmp_path / "out.mp4"
    cmd = generate_cmd(inputs, out, tmp_path / "work")
    proc = avmix(*cmd)
    time.sleep(0.3)
    code, err = interrupt(proc, signal.SIGINT, group=False)
    assert code in (130, -signal.SIGINT, 1), (code, err)  # 1: Python's own KeyboardInterrupt exit
    assert not out.exists() and parts(tmp_path, tmp_path / "work") == []
    assert_no_orphans(str(tmp_path))
    again = avmix(*cmd)
    _, err = again.communicate(timeout=TIMEOUT)
    assert again.returncode == 0, err
    assert abs(ffmpeg.probe(out).duration - 2.0) <= 1.5 / 30


@pytest.mark.parametrize("ext,sig", [(".mp3", signal.SIGINT), (".mp3", signal.SIGTERM), (".wav", signal.SIGTERM)])
def test_mix_interrupted_mid_write(tmp_path, ext, sig):
    """`avmix mix` on long-ish input stopped while the output is being written: nothing is left, not
    the output, not its temp file, not the timeline sidecar, not the encoding ffmpeg."""
    seconds = 120.0 if ext == ".mp3" else 300.0
    t = np.arange(int(seconds * 16000)) / 16000
    x = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    src = tmp_path / "long.wav"
    sf.write(str(src), np.stack([x, x], 1), 16000, subtype="PCM_16")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / f"mix{ext}"
    proc = avmix("mix", src, src, "-o", out, "--normalize", "lufs", "-r", "48000", "--quiet")
    assert wait_for(proc, _part_in(out_dir, ".mix.")), f"finished too soon: {proc.communicate()}"
    time.sleep(0.05)
    code, err = interrupt(proc, sig, group=False)
    check_interrupted(code, err, sig)
    if sig == signal.SIGTERM:
        assert code == 143, (code, err)
    assert os.listdir(out_dir) == [], os.listdir(out_dir)
    assert_no_orphans(str(tmp_path))


def test_video_writer_interrupted_while_starting(tmp_path, monkeypatch):
    """Ctrl-C can land anywhere in VideoWriter.__enter__, also after ffmpeg has started (here: while
    its feeding thread starts): the temp file must go and ffmpeg must be stopped at once, not when
    the process exits (a rerun in the same process, as in batch, would otherwise find both)."""
    import threading

    from avmix.video.writer import VideoWriter

    def interrupted_start(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(tmp_path / "v.mp4", width=32, height=32, fps=10) as w:
            w.write(np.zeros((32, 32, 3), np.uint8))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == [], os.listdir(tmp_path)
    assert_no_orphans(str(tmp_path))


def test_signal_while_handlers_are_restored_stops_the_child(tmp_path, monkeypatch):
    """A signal can arrive after ffmpeg started but while start() puts the old handlers back: the
    child must be killed there, or it outlives avmix and recreates the temp file it was writing."""
    import contextlib

    started = []
    real_popen = subprocess.Popen

    def recording_popen(*a, **kw):
        started.append(real_popen(*a, **kw))
        return started[-1]

    @contextlib.contextmanager
    def signal_on_restore(held):
        yield
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    monkeypatch.setattr(ffmpeg, "_held_signals", signal_on_restore)
    with pytest.raises(KeyboardInterrupt):
        ffmpeg.start([sys.executable, "-c", "import time; time.sleep(60)", str(tmp_path)])
    assert len(started) == 1 and started[0].returncode is not None  # killed and reaped
    assert_no_orphans(str(tmp_path))


def test_signal_while_handlers_are_restored_restores_them_all(monkeypatch):
    """Ctrl-C landing as signals.handling() puts the old handlers back must not leave SIGTERM with
    the temporary handler (it would then be ignored for the rest of the run)."""
    from avmix import signals

    before = {s: signal.getsignal(s) for s in signals.STOPS}
    real_signal = signal.signal

    fired = []

    def signal_then_ctrl_c(signum, handler):
        old = real_signal(signum, handler)
        if signum == signal.SIGINT and handler is before[signal.SIGINT] and not fired:  # restored first
            fired.append(signum)
            raise KeyboardInterrupt  # as the restored handler does when Ctrl-C lands right then
        return old

    monkeypatch.setattr(signal, "signal", signal_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        with signals.handling(lambda signum, frame: None):
            pass
    monkeypatch.undo()
    assert {s: signal.getsignal(s) for s in signals.STOPS} == before


def test_swallowed_interrupt_stops_the_run_at_the_next_progress_report():
    """A KeyboardInterrupt raised inside a cffi callback or a finalizer is printed and dropped; the
    run must still stop, at its next progress report, not finish as if never interrupted."""
    from avmix import signals
    from avmix.progress import report

    with signals.handling(signals._raise):
        try:
            signals._raise(signal.SIGINT, None)
        except KeyboardInterrupt:
            pass  # what cffi does with an exception in a callback
        with pytest.raises(KeyboardInterrupt):
            report(None, "mix", 1, 2)
    report(None, "mix", 2, 2)  # once the handling block is left, nothing is pending
    signals._raised.append(signal.SIGTERM)  # as if SIGTERM landed while the handlers were put back
    report(None, "mix", 2, 2)  # outside every handling(_raise) block a record stops nothing
    signals._raised.clear()


def test_batch_interrupted_then_resumed(tmp_path):
    """Ctrl-C to `avmix batch` (its pool workers and their ffmpeg are stopped by avmix) while jobs
    render: no output, no temp file, nothing left running; the rerun completes every job."""
    a, b = make_inputs(tmp_path, 6.0)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"inputs": inputs, "output": name, "size": "320x180",
                                        "backend": "procedural"}) + "\n"
                            for name, inputs in (("one.mp4", [a.name, b.name]), ("two.mp4", [b.name]))))
    out = tmp_path / "out"
    cmd = ["batch", jobs, "-o", out, "--workers", "2", "--quiet"]
    proc = avmix(*cmd)

    def rendering() -> bool:
        return any(".video." in n and ".part" in n for _, _, names in os.walk(out) for n in names)

    assert wait_for(proc, rendering), f"finished too soon: {proc.communicate()}"
    code, err = interrupt(proc, signal.SIGINT, group=False)
    check_interrupted(code, err, signal.SIGINT)
    assert not (out / "one.mp4").exists() and not (out / "two.mp4").exists()
    temps = [n for _, _, names in os.walk(out) for n in names if ".part" in n]
    assert temps == [], temps
    assert_no_orphans(str(tmp_path))
    again = avmix(*cmd, "--json")
    stdout, err = again.communicate(timeout=TIMEOUT)
    assert again.returncode == 0, err
    summary = json.loads(stdout)
    assert summary["ok"] == 2 and summary["failed"] == 0
    for name in ("one.mp4", "two.mp4"):
        assert abs(ffmpeg.probe(out / name).duration - 6.0) <= 1.5 / 30
