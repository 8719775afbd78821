"""``avmix mix/concat/overlay``: what the CLI passes to the library, --json, and real runs end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import avmix.audio
from avmix.audio import io
from avmix.timeline import Source, Timeline
from conftest import noise, sine, write_wav

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_compose(monkeypatch):
    """Replace avmix.audio.compose by a recorder; returns the list of (function, args, kwargs) calls."""
    calls = []

    def make(name):
        def fn(*args, **kwargs):
            calls.append((name, args, kwargs))
            ins = list(args[0]) if name != "overlay" else [args[0], args[1]]
            out = args[-1]
            sr = kwargs.get("sample_rate") or 48000
            srcs = [Source(index=i, path=str(p), label=(kwargs.get("labels") or [])[i] if i < len(kwargs.get("labels") or []) else Path(p).stem,
                           start_sample=i * sr, end_sample=(i + 2) * sr, source_frames=2 * sr,
                           gain_db=kwargs["gains"][i]) for i, p in enumerate(ins)]
            return Timeline(mode=name, sample_rate=sr, channels=2, frames=3 * sr, sources=srcs, output=str(out),
                            peak_dbfs=-3.25, lufs=-17.5)
        return fn

    fake = types.SimpleNamespace(mix=make("mix"), concat=make("concat"), overlay=make("overlay"))
    monkeypatch.setitem(sys.modules, "avmix.audio.compose", fake)
    monkeypatch.setattr(avmix.audio, "compose", fake, raising=False)
    return calls


def test_mix_passes_every_option(fake_compose, run_cli, tmp_path):
    out = tmp_path / "o.flac"
    r = run_cli("mix", "a.wav", "b.mp3", "c.ogg", "-o", out, "--gain", "-6", "--gain", "2.5", "--normalize", "lufs",
                "--target", "-16", "--no-limit", "--ceiling", "-2", "--fade-in", "0.5", "--fade-out", "1.5",
                "--sample-rate", "44100", "--channels", "1", "--bit-depth", "16", "-y", "--timeline",
                tmp_path / "t.json", "--duration", "shortest", "--match-loudness", "--label", "dog", "-q",
                "--align", "auto")
    assert r.code == 0, r.err
    [(name, args, kw)] = fake_compose
    assert name == "mix" and args == (["a.wav", "b.mp3", "c.ogg"], str(out))
    assert kw == {"duration": "shortest", "match_loudness": True, "align": True, "sample_rate": 44100,
                  "channels": 1, "gains": [-6.0, 2.5, 0.0], "normalize": "lufs", "target": -16.0, "limit": False,
                  "ceiling": -2.0, "fade_in": 0.5, "fade_out": 1.5, "labels": ["dog"], "bit_depth": 16,
                  "overwrite": True, "timeline_path": str(tmp_path / "t.json"), "progress": kw["progress"],
                  "loudness": None, "reference": None, "reference_strength": 1.0, "reference_balance": False}
    assert r.err == ""  # --quiet


def test_defaults(fake_compose, run_cli, tmp_path):
    r = run_cli("mix", "a.wav", "b.wav", "-o", tmp_path / "o.wav")
    assert r.code == 0, r.err
    kw = fake_compose[0][2]
    assert (kw["duration"], kw["match_loudness"], kw["gains"], kw["normalize"], kw["target"], kw["limit"],
            kw["ceiling"], kw["fade_in"], kw["fade_out"], kw["sample_rate"], kw["channels"], kw["bit_depth"],
            kw["overwrite"], kw["timeline_path"]) == \
        ("longest", False, [0.0, 0.0], "none", None, True, -1.0, 0.0, 0.0, None, None, None, False, None)
    assert "wrote" in r.err and "3.000 s" in r.err
    assert kw["loudness"] is None  # measured only when asked for (--json) or normalising


def test_json_measures_loudness(fake_compose, run_cli, tmp_path):
    assert run_cli("mix", "a.wav", "b.wav", "-o", tmp_path / "o.wav", "--json").code == 0
    assert fake_compose[0][2]["loudness"] is True


def test_concat_and_overlay_options(fake_compose, run_cli, tmp_path):
    assert run_cli("concat", "a.wav", "b.wav", "c.wav", "-o", tmp_path / "c.wav", "--crossfade", "1.25",
                   "--curve", "linear", "--trim-silence").code == 0
    assert run_cli("concat", "a.wav", "b.wav", "-o", tmp_path / "d.wav", "--gap", "0.5").code == 0
    assert run_cli("overlay", "bed.wav", "voice.wav", "-o", tmp_path / "e.mp3", "--at", "3.5", "--loop",
                   "--duck", "-12", "--gain", "-3").code == 0
    (n1, a1, k1), (n2, a2, k2), (n3, a3, k3) = fake_compose
    assert (n1, a1[0], k1["crossfade"], k1["curve"], k1["gap"], k1["trim_silence"]) == \
        ("concat", ["a.wav", "b.wav", "c.wav"], 1.25, "linear", 0.0, True)
    assert (k2["crossfade"], k2["curve"], k2["gap"], k2["trim_silence"]) == (0.0, "equal-power", 0.5, False)
    assert (n3, a3[:2], k3["at"], k3["loop"], k3["duck"], k3["gains"]) == \
        ("overlay", ("bed.wav", "voice.wav"), 3.5, True, 12.0, [-3.0, 0.0])


def test_json_result(fake_compose, run_cli, tmp_path):
    r = run_cli("mix", "a.wav", "b.wav", "-o", tmp_path / "o.wav", "--json", "--label", "x", "--label", "y")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert set(d) == {"output", "duration", "sample_rate", "channels", "peak_dbfs", "lufs", "tracks"}
    assert (d["duration"], d["sample_rate"], d["channels"], d["peak_dbfs"], d["lufs"]) == (3.0, 48000, 2, -3.25, -17.5)
    assert d["tracks"][1] == {"path": "b.wav", "label": "y", "start": 1.0, "end": 3.0, "gain_db": 0.0}


@pytest.mark.parametrize("args,msg", [
    (["mix", "a.wav", "b.wav", "--gain", "1", "--gain", "2", "--gain", "3"], "3 --gain values for 2 inputs"),
    (["mix", "a.wav", "--gain", "120"], "--gain 120 dB is out of range"),
    (["mix", "a.wav", "--gain", "nan"], "--gain nan dB is out of range"),
    (["mix", "a.wav", "--fade-in", "-1"], "--fade-in -1 s is out of range"),
    (["mix", "a.wav", "--fade-out", "1e9"], "--fade-out 1e+09 s is out of range"),
    (["mix", "a.wav", "--target", "-14"], "--target needs --normalize"),
    (["mix", "a.wav", "--normalize", "lufs", "--target", "5"], "--target 5 LUFS is out of range"),
    (["mix", "a.wav", "--ceiling", "3"], "--ceiling 3 dBTP is out of range"),
    (["mix", "a.wav", "--sample-rate", "100"], "--sample-rate 100 Hz is out of range"),
    (["mix", "a.wav", "--channels", "0"], "--channels 0 is out of range"),
    (["mix", "a.wav", "--bit-depth", "20"], "--bit-depth 20 is not one of"),
    (["mix", "a.wav", "--label", "a", "--label", "b"], "2 --label values for 1 input"),
    (["mix", "-", "-"], "standard input ('-') can be given only once"),
    (["mix", "a.wav", "--json", "-o", "-"], "--json cannot be used with -o -"),
    (["concat", "a.wav", "b.wav", "--crossfade", "-2"], "--crossfade -2 s is out of range"),
    (["concat", "a.wav", "b.wav", "--gap", "-0.1"], "--gap -0.1 s is out of range"),
    (["overlay", "a.wav", "b.wav", "--at", "-1"], "--at -1 s is out of range"),
    (["overlay", "a.wav", "b.wav", "--duck", "500"], "--duck 500 dB is out of range"),
    (["mix", "a.wav", "--normalize", "loud"], "Invalid value for '--normalize'"),
    (["mix", "a.wav", "--gain", "six"], "Invalid value for '--gain'"),
    (["mix", "a.wav", "-o", "x.aiff"], "x.aiff: unsupported output format '.aiff'"),
])
def test_usage_errors_exit_2_in_one_line(fake_compose, run_cli, tmp_path, args, msg):
    if "-o" not in args:
        args = args + ["-o", str(tmp_path / "o.wav")]
    r = run_cli(*args)
    assert r.code == 2, (r.err, r.out)
    lines = r.err.strip().splitlines()
    assert lines[0].startswith("avmix: error: ") and msg in lines[0], r.err
    assert len(lines) <= 2 and all(ln.startswith("avmix: hint: ") for ln in lines[1:])
    assert "Traceback" not in r.err and fake_compose == []


def test_help_lists_examples(run_cli):
    for cmd in ("mix", "concat", "overlay"):
        r = run_cli(cmd, "--help")
        assert r.code == 0 and "Examples" in r.out and f"avmix {cmd}" in r.out
        assert "--normalize" in r.out and "--gain" in r.out


# ------------------------------------------------------------------------------- end to end (real)


def test_mix_end_to_end_exact_sum(run_cli, tmp_path):
    a = noise(1.0, 48000, 2, amp=0.2, seed=1)
    b = sine(440, 1.5, 44100, 1, amp=0.3)
    pa, pb = write_wav(tmp_path / "a.wav", a), write_wav(tmp_path / "b.wav", b, 44100)
    out = tmp_path / "o.wav"
    r = run_cli("mix", pa, pb, "-o", out, "--no-limit", "--bit-depth", "32", "--gain", "-6", "--json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert (d["sample_rate"], d["channels"], d["duration"]) == (48000, 2, 1.5)
    y = io.open_audio(out).read()
    ref = np.zeros((72000, 2), np.float32)
    ref[:48000] += a * 10 ** (-6 / 20)
    ref += io.open_audio(pb).read(sample_rate=48000, channels=2)
    np.testing.assert_allclose(y, ref, atol=1e-5)
    assert Path(str(out) + ".timeline.json").exists()


@pytest.mark.parametrize("ext", [".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a"])
def test_every_output_format_through_the_cli(run_cli, tmp_path, ext):
    a = sine(330, 1.0, 48000, 2, amp=0.3)
    pa = write_wav(tmp_path / "a.wav", a)
    out = tmp_path / f"o{ext}"
    r = run_cli("concat", pa, pa, "-o", out, "-q")
    assert r.code == 0, r.err
    f = io.open_audio(out)
    assert abs(f.target_frames(48000) - 96000) <= 1152
    y = f.read(sample_rate=48000)
    assert np.corrcoef(y[:90000, 0], np.concatenate([a, a])[:90000, 0])[0, 1] > 0.99


@pytest.mark.parametrize("ext", [".mp3", ".ogg", ".opus", ".m4a"])
def test_json_reports_the_lossy_file_as_written(run_cli, tmp_path, ext):
    """A 768 kHz mix is written at a rate the encoder takes (mp3/opus 48 kHz, m4a 96 kHz, vorbis 200 kHz):
    --json and the summary give the rate, channels and length of the file as ffmpeg reads it back."""
    pa = write_wav(tmp_path / "a.wav", sine(440, 0.5, 768000, 2, amp=0.3), 768000)
    out = tmp_path / f"o{ext}"
    r = run_cli("mix", pa, "-o", out, "--json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    f = io.open_audio(out)  # decoded by the ffmpeg avmix runs
    assert (d["sample_rate"], d["channels"]) == (f.sample_rate, f.channels) == (f.sample_rate, 2)
    # ffmpeg 5.1 keeps AAC's 1024 priming samples at the start of an m4a; the rest decode to the sample
    assert abs(d["duration"] * f.sample_rate - f.frames) <= (1024 if ext == ".m4a" else 1), (d, f)
    summary = run_cli("mix", pa, "-o", tmp_path / f"p{ext}")
    assert f"{f.sample_rate} Hz, 2 ch" in summary.err, summary.err


def test_pipes_through_stdin_and_stdout(tmp_path):
    a = sine(440, 1.0, 44100, 1, amp=0.25)
    b = sine(660, 0.5, 48000, 2, amp=0.25)
    pa, pb = write_wav(tmp_path / "a.wav", a, 44100), write_wav(tmp_path / "b.wav", b)
    tmp = tmp_path / "tmp"  # stdin is copied to a temp file there, removed at exit
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}
    cmd = [sys.executable, "-m", "avmix"]
    with open(pa, "rb") as fin:
        p1 = subprocess.run(cmd + ["mix", "-", str(pb), "-o", "-", "--no-limit", "--bit-depth", "32"],
                            stdin=fin, capture_output=True, env=env, timeout=120)
    assert p1.returncode == 0, p1.stderr
    assert p1.stdout[:4] == b"RIFF" and b"Traceback" not in p1.stderr
    p2 = subprocess.run(cmd + ["concat", "-", str(pb), "-o", str(tmp_path / "out.wav"), "--no-limit",
                               "--bit-depth", "32", "--json"],
                        input=p1.stdout, capture_output=True, env=env, timeout=120)
    assert p2.returncode == 0, p2.stderr
    assert list(tmp.iterdir()) == []  # the exit handlers ran (the CLI skips the interpreter's teardown)
    d = json.loads(p2.stdout)
    assert d["duration"] == pytest.approx(1.5) and d["sample_rate"] == 48000 and d["channels"] == 2
    y, sr = sf.read(str(tmp_path / "out.wav"), dtype="float32", always_2d=True)
    assert y.shape == (72000, 2) and sr == 48000
    mixed = io.open_audio(pa).read(sample_rate=48000, channels=2)
    mixed[:24000] += b
    np.testing.assert_allclose(y[:48000], mixed, atol=1e-5)
    np.testing.assert_allclose(y[48000:], b, atol=1e-6)


def test_sidecar_of_a_silent_mix_is_strict_json(run_cli, tmp_path):
    a = noise(1.0, 48000, 2, amp=0.3, seed=3)
    pa, pb = write_wav(tmp_path / "a.wav", a), write_wav(tmp_path / "inv.wav", -a)
    out = tmp_path / "o.wav"
    r = run_cli("mix", pa, pb, "-o", out, "--no-limit", "-q")
    assert r.code == 0, r.err
    assert not io.open_audio(out).read().any()  # a track and its inverse cancel
    text = (tmp_path / "o.wav.timeline.json").read_text()
    d = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert d["peak_dbfs"] is None and d["frames"] == 48000
    assert Timeline.load(tmp_path / "o.wav.timeline.json").peak_dbfs is None


def test_default_sidecar_is_not_clobbered_without_y(run_cli, tmp_path):
    pa = write_wav(tmp_path / "a.wav", noise(0.5, seed=4))
    out = tmp_path / "o.wav"
    side = tmp_path / "o.wav.timeline.json"
    side.write_text("mine\n")
    r = run_cli("mix", pa, pa, "-o", out, "-q")
    assert r.code == 1 and "o.wav.timeline.json: already exists" in r.err and len(r.err.splitlines()) <= 2
    assert side.read_text() == "mine\n" and not out.exists()
    r = run_cli("mix", pa, pa, "-o", out, "-q", "-y")
    assert r.code == 0, r.err
    assert json.loads(side.read_text())["frames"] == 24000


def _stderr_on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run ``avmix ARGS`` with stderr on a pseudo-terminal (as in an interactive shell); return code, stderr."""
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100", "TERM": "xterm"}
    p = subprocess.Popen([sys.executable, "-m", "avmix", *args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


def test_progress_bar_on_a_terminal_and_quiet_silences_it(tmp_path):
    pa = write_wav(tmp_path / "a.wav", noise(3.0, seed=5))
    code, err = _stderr_on_a_terminal(["mix", str(pa), str(pa), "-o", str(tmp_path / "o.wav"),
                                       "--normalize", "lufs"])
    assert code == 0, err
    assert "measure" in err and "mix" in err and "100%" in err  # both passes shown, run to the end
    code, err = _stderr_on_a_terminal(["mix", str(pa), str(pa), "-o", str(tmp_path / "o.wav"), "-y",
                                       "--normalize", "lufs", "-q"])
    assert code == 0 and err == ""


@pytest.mark.parametrize("closed", ["1", "2"])
def test_a_closed_stdout_or_stderr_does_not_fail_a_quiet_run(tmp_path, closed):
    """Started with descriptor 1 or 2 closed (cron, daemons): Python then has no sys.stdout or sys.stderr,
    and the run still succeeds."""
    pa = write_wav(tmp_path / "a.wav", sine(440, 0.5))
    out = tmp_path / "o.wav"
    cmd = f'"{sys.executable}" -m avmix mix "{pa}" -o "{out}" -q {closed}>&-'
    p = subprocess.run(["sh", "-c", cmd], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert sf.info(str(out)).frames == 24000
