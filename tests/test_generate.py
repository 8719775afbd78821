"""`generate` end to end on short inputs: lengths and audio by decoding, work directory, cache, resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from avmix import ffmpeg, pipeline
from avmix.errors import InputError, UsageError
from avmix.timeline import file_hash
from conftest import noise, sine, write_wav

SR = 48000
SMALL = dict(size=(320, 180), fps=25, backend="procedural")


def decode_audio(path, channels=2) -> np.ndarray:
    raw = ffmpeg.run(["-i", ffmpeg.url(path), "-map", "0:a:0", "-f", "f32le", "-ac", str(channels), "-ar", str(SR), "-"])
    return np.frombuffer(raw, np.float32).reshape(-1, channels)


def count_frames(path) -> int:
    raw = ffmpeg.run(["-i", ffmpeg.url(path), "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "gray", "-s", "8x8", "-"])
    return len(raw) // 64


def clicks(seconds: float, times: list[float], freq: float = 1000.0) -> np.ndarray:
    """Short tone bursts at ``times`` over a quiet tone: clear onsets, band-limited (AAC keeps it)."""
    x = sine(220, seconds, SR, 2, 0.05)
    burst = sine(freq, 0.06, SR, 2, 0.6) * np.hanning(int(0.06 * SR))[:, None].astype(np.float32)
    for t in times:
        i = int(t * SR)
        x[i:i + len(burst)] += burst[:len(x) - i]
    return x


@pytest.fixture
def tracks(tmp_path):
    a = write_wav(tmp_path / "clicks.wav", clicks(2.5, [0.25, 0.75, 1.25, 1.75, 2.25]))
    low = noise(2.0, SR, 2, 0.2, seed=3)
    low = np.cumsum(low, axis=0) * 0.02  # brown-ish: mostly low frequencies
    b = write_wav(tmp_path / "rumble.wav", (low - low.mean(0)).astype(np.float32), SR)
    return a, b


def check_output(result, work):
    """The MP4 is as long as audio.wav (within one frame) and carries that audio (lag 0)."""
    out = result["output"]
    ref, sr = sf.read(str(work / "audio.wav"), dtype="float32", always_2d=True)
    assert sr == SR
    duration = len(ref) / SR
    assert result["duration"] == pytest.approx(duration, abs=1e-6)
    fps = SMALL["fps"]
    assert abs(count_frames(out) - duration * fps) <= 1
    got = decode_audio(out, ref.shape[1])
    assert abs(len(got) - len(ref)) <= SR / fps
    n = min(len(got), len(ref))
    for ch in range(ref.shape[1]):
        assert np.corrcoef(ref[:n, ch], got[:n, ch])[0, 1] > 0.99
    # lag 0: shifting by a few samples either way only lowers the match
    core = slice(2000, n - 2000)
    dots = {k: float(np.dot(ref[core, 0], got[2000 + k:n - 2000 + k, 0])) for k in (-64, -8, -1, 0, 1, 8, 64)}
    assert max(dots, key=dots.get) == 0
    return duration


def test_mix_end_to_end_with_workdir(tmp_path, tracks):
    work = tmp_path / "work"
    res = pipeline.generate(tracks, tmp_path / "out.mp4", workdir=work, labels=["clicks"], **SMALL)
    assert res["backend"] == "procedural" and res["workdir"] == os.fspath(work)
    assert res["video_copied"]  # the silent video is already H.264 of the right length: no re-encode
    assert check_output(res, work) == pytest.approx(2.5)
    for name in ("audio.wav", "timeline.json", "analysis.json", "video.mp4", "manifest.json"):
        assert (work / name).is_file(), name
    tl = json.loads((work / "timeline.json").read_text())
    an = json.loads((work / "analysis.json").read_text())
    man = json.loads((work / "manifest.json").read_text())
    assert tl["schema"] == "avmix.timeline/1" and len(tl["sources"]) == 2
    assert an["schema"] == "avmix.analysis/1" and an["frames"] == 63 and an["fps"] == 25
    assert [t["label"] for t in an["tracks"]] == ["clicks", "rumble"]
    assert man["schema"] == "avmix.manifest/1"
    assert [i["hash"] for i in man["inputs"]] == [file_hash(p) for p in tracks]
    assert man["seed"] == 0 and man["options"]["size"] == [320, 180] and man["options"]["mode"] == "mix"
    assert {"avmix", "ffmpeg", "numpy", "python"} <= set(man["versions"])
    for stage in ("compose", "analyze", "video"):
        entry = man["stages"][stage]
        assert entry["ran"] is True and entry["key"].startswith("sha256:") and entry["seconds"] >= 0
        assert entry["depends"]
    assert man["stages"]["analyze"]["depends"]["compose"] == man["stages"]["compose"]["key"]
    assert set(res["timings"]) >= {"compose", "analyze", "video", "mux", "total"}


@pytest.mark.parametrize("mode,opts,expect", [("concat", {"gap": 0.5}, 2.5 + 0.5 + 2.0),
                                              ("overlay", {"at": 1.5}, 1.5 + 2.0)])
def test_other_modes(tmp_path, tracks, mode, opts, expect):
    work = tmp_path / "w"
    res = pipeline.generate(tracks, tmp_path / "o.mp4", mode=mode, workdir=work, **opts, **SMALL)
    assert check_output(res, work) == pytest.approx(expect, abs=1e-4)
    tl = json.loads((work / "timeline.json").read_text())
    starts = [s["start"] for s in tl["sources"]]
    assert starts == pytest.approx([0.0, 3.0] if mode == "concat" else [0.0, 1.5], abs=1e-4)


def test_cache_reuse_and_what_reruns(tmp_path, tracks):
    work, out = tmp_path / "w", tmp_path / "o.mp4"
    pipeline.generate(tracks, out, workdir=work, **SMALL)
    video_mtime = (work / "video.mp4").stat().st_mtime_ns

    res = pipeline.generate(tracks, out, workdir=work, overwrite=True, **SMALL)
    assert res["reused"] == ["compose", "analyze", "video"]
    assert (work / "video.mp4").stat().st_mtime_ns == video_mtime
    man = json.loads((work / "manifest.json").read_text())
    assert [man["stages"][s]["ran"] for s in ("compose", "analyze", "video")] == [False, False, False]
    check_output(res, work)

    res = pipeline.generate(tracks, out, workdir=work, overwrite=True, **{**SMALL, "fps": 12})
    assert res["reused"] == ["compose"]  # only the video options changed: the audio is kept
    assert json.loads((work / "analysis.json").read_text())["fps"] == 12
    assert abs(count_frames(out) - 2.5 * 12) <= 1

    res = pipeline.generate(tracks, out, workdir=work, overwrite=True, seed=5, **{**SMALL, "fps": 12})
    assert res["reused"] == ["compose", "analyze"]

    res = pipeline.generate(tracks, out, workdir=work, overwrite=True, no_cache=True, seed=5, **{**SMALL, "fps": 12})
    assert res["reused"] == []

    res = pipeline.generate(tracks, out, workdir=work, overwrite=True, gains=[-6.0], seed=5, **{**SMALL, "fps": 12})
    assert res["reused"] == []  # a compose option changed: everything after it too


def test_audio_encoded_beside_the_video_is_cached_with_the_audio(tmp_path, tracks):
    """The output's AAC is encoded while the video renders and copied by the mux; it is kept while only
    video options change and made again when the composed audio changes."""
    work, out = tmp_path / "w", tmp_path / "o.mp4"
    res = pipeline.generate(tracks, out, workdir=work, **SMALL)
    man = json.loads((work / "manifest.json").read_text())
    assert man["run"]["mux"]["audio_copied"] and man["stages"]["audio"]["ran"]
    assert "audio" in res["timings"]
    check_output(res, work)
    mtime = (work / "audio.m4a").stat().st_mtime_ns
    res = pipeline.generate(tracks, out, workdir=work, overwrite=True, **{**SMALL, "fps": 12})
    man = json.loads((work / "manifest.json").read_text())
    assert not man["stages"]["audio"]["ran"] and (work / "audio.m4a").stat().st_mtime_ns == mtime
    assert man["run"]["mux"]["audio_copied"]
    res = pipeline.generate(tracks, out, workdir=work, overwrite=True, gains=[-6.0], **SMALL)
    man = json.loads((work / "manifest.json").read_text())
    assert man["stages"]["audio"]["ran"] and (work / "audio.m4a").stat().st_mtime_ns != mtime
    check_output(res, work)
    # a container whose mux encodes the audio itself makes no such file
    pipeline.generate(tracks, tmp_path / "o.mkv", workdir=tmp_path / "w2", keep=True, **SMALL)
    assert not list((tmp_path / "w2").glob("audio.m*"))


def test_workdir_of_other_inputs_reruns(tmp_path, tracks):
    work = tmp_path / "w"
    pipeline.generate(tracks, tmp_path / "o1.mp4", workdir=work, **SMALL)
    other = write_wav(tmp_path / "tone.wav", sine(330, 1.5, SR, 2, 0.4))
    res = pipeline.generate([other], tmp_path / "o2.mp4", workdir=work, **SMALL)
    assert res["reused"] == []
    assert check_output(res, work) == pytest.approx(1.5)
    got = decode_audio(tmp_path / "o2.mp4")
    ref = sine(330, 1.5, SR, 2, 0.4)
    n = min(len(got), len(ref))
    assert np.corrcoef(ref[:n, 0], got[:n, 0])[0, 1] > 0.99  # the new input, not the old mix
    # an input edited in place (same name, new content) is a different input too
    write_wav(other, sine(550, 1.5, SR, 2, 0.4))
    assert pipeline.generate([other], tmp_path / "o3.mp4", workdir=work, **SMALL)["reused"] == []


def test_stems_sum_to_the_mix(tmp_path, tracks):
    stems = tmp_path / "stems"
    res = pipeline.generate(tracks, tmp_path / "o.mp4", mode="concat", crossfade=0.5, gains=[3.0, -2.0],
                            limit=False, stems=stems, **SMALL)
    assert res["workdir"] is None and not (tmp_path / ".o.mp4.avmix-work").exists()
    files = res["stems"]["files"]
    assert files == ["00-clicks.wav", "01-rumble.wav"]
    mix, sr = sf.read(str(stems / "mix.wav"), dtype="float32", always_2d=True)
    parts = [sf.read(str(stems / f), dtype="float32", always_2d=True)[0] for f in files]
    assert all(p.shape == mix.shape for p in parts)
    assert np.abs(parts[0] + parts[1] - mix).max() < 1e-6
    assert len(mix) == round((2.5 + 2.0 - 0.5) * SR)
    # each stem sounds only where its source sits
    assert np.abs(parts[1][: int(1.9 * SR)]).max() == 0
    assert np.abs(parts[0][int(2.55 * SR):]).max() == 0


def test_stems_sum_to_the_composed_audio_under_lufs_and_fades(tmp_path, tracks):
    """generate --normalize lufs --no-limit --fade-in/--fade-out --stems: the stems add up to the
    composed audio in the work directory (what was muxed), master gain and fades included."""
    stems, work = tmp_path / "stems", tmp_path / "w"
    res = pipeline.generate(tracks, tmp_path / "o.mp4", normalize="lufs", target=-20.0, limit=False,
                            fade_in=0.3, fade_out=0.4, stems=stems, workdir=work, **SMALL)
    tl = json.loads((work / "timeline.json").read_text())
    assert abs(tl["master_gain_db"]) > 1  # normalisation acts: stems without it would miss the mix
    mix, _ = sf.read(str(work / "audio.wav"), dtype="float32", always_2d=True)
    parts = [sf.read(str(stems / f), dtype="float32", always_2d=True)[0] for f in res["stems"]["files"]]
    assert all(p.shape == mix.shape for p in parts)
    assert np.abs(sum(parts) - mix).max() < 1e-6
    assert np.abs(mix[:10]).max() < 1e-3  # the master fade-in is in the stems too


def test_interrupted_run_leaves_no_output_and_resumes(tmp_path, tracks, monkeypatch):
    out = tmp_path / "o.mp4"
    from avmix.video import procedural

    real = procedural.render
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(procedural, "render", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.generate(tracks, out, **SMALL)
    work = tmp_path / ".o.mp4.avmix-work"
    assert calls and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.") and p.is_file()]  # no temp files
    man = json.loads((work / "manifest.json").read_text())
    assert set(man["stages"]) == {"compose", "analyze"}  # the video stage is not recorded as done
    assert not (work / "video.mp4").exists()

    monkeypatch.setattr(procedural, "render", real)
    res = pipeline.generate(tracks, out, keep=True, **SMALL)
    assert res["reused"] == ["compose", "analyze"]
    assert res["workdir"] == os.fspath(work) and work.is_dir()  # --keep
    check_output(res, work)


def test_sigterm_is_an_interrupt(tmp_path, tracks, monkeypatch):
    from avmix.audio import analyze

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(analyze, "analyze", killed)
    with pytest.raises(KeyboardInterrupt):
        pipeline.generate(tracks, tmp_path / "o.mp4", **SMALL)
    assert signal.getsignal(signal.SIGTERM) is before  # handler restored
    assert not (tmp_path / "o.mp4").exists()
    assert "compose" in json.loads((tmp_path / ".o.mp4.avmix-work" / "manifest.json").read_text())["stages"]


def test_composed_input_with_timeline(tmp_path, tracks):
    from avmix.audio import compose

    mixed = tmp_path / "scene.wav"
    compose.overlay(tracks[0], tracks[1], mixed, at=1.0)
    assert (tmp_path / "scene.wav.timeline.json").is_file()
    work = tmp_path / "w"
    res = pipeline.generate([mixed], tmp_path / "o.mp4", workdir=work, labels=["a", "b"], **SMALL)
    assert check_output(res, work) == pytest.approx(3.0, abs=1e-4)
    an = json.loads((work / "analysis.json").read_text())
    assert [t["label"] for t in an["tracks"]] == ["a", "b"]
    assert an["tracks"][1]["start"] == pytest.approx(1.0, abs=1e-3)
    # a source edited after composing is refused, not silently analysed
    write_wav(tracks[1], noise(2.0, SR, 2, 0.1, seed=9))
    with pytest.raises(InputError, match="changed since the audio was composed"):
        pipeline.generate([mixed], tmp_path / "o2.mp4", **SMALL)
    assert not (tmp_path / "o2.mp4").exists()


def test_sha256_timeline_from_earlier_versions_still_checked(tmp_path, tracks):
    import hashlib
    from avmix.audio import compose

    mixed = tmp_path / "scene.wav"
    compose.mix(tracks, mixed)
    side = tmp_path / "scene.wav.timeline.json"
    doc = json.loads(side.read_text())
    for s in doc["sources"]:
        assert s["hash"] == file_hash(s["path"])
        s["hash"] = "sha256:" + hashlib.sha256(open(s["path"], "rb").read()).hexdigest()
    side.write_text(json.dumps(doc))
    pipeline.generate([mixed], tmp_path / "o.mp4", **SMALL)  # unchanged sources pass
    assert (tmp_path / "o.mp4").stat().st_size > 0
    write_wav(tracks[0], noise(2.0, SR, 2, 0.1, seed=9))
    with pytest.raises(InputError, match="changed since the audio was composed"):
        pipeline.generate([mixed], tmp_path / "o2.mp4", **SMALL)


def test_preview_is_a_png(tmp_path, tracks):
    png = tmp_path / "sheet.png"
    pipeline.generate(tracks, tmp_path / "o.mp4", preview=png, **SMALL)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("bad", [dict(fps=0), dict(fps=121), dict(size="321x180"), dict(size="8x8"),
                                 dict(size="wide"), dict(mode="stack"), dict(backend="magic"),
                                 dict(output="o.avi"), dict(mode="overlay", extra=True), dict(labels=["a", "b", "c"]),
                                 dict(preview="p.jpg"), dict(gains=[1, 2, 3]), dict(crossfade=-1),
                                 dict(preset="warp"), dict(crf=99), dict(duration="forever"),
                                 dict(normalize="peak", ceiling=-3.0)])
def test_bad_options_are_usage_errors_before_any_work(tmp_path, tracks, bad):
    bad = dict(bad)
    inputs = list(tracks) + ([tracks[0]] if bad.pop("extra", False) else [])
    out = tmp_path / bad.pop("output", "o.mp4")
    if "preview" in bad:
        bad["preview"] = tmp_path / bad["preview"]
    with pytest.raises(UsageError):
        pipeline.generate(inputs, out, **{**SMALL, **bad})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clicks.wav", "rumble.wav"]


def test_foreign_workdir_is_refused(tmp_path, tracks):
    work = tmp_path / "mine"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an avmix work directory"):
        pipeline.generate(tracks, tmp_path / "o.mp4", workdir=work, **SMALL)
    assert [p.name for p in work.iterdir()] == ["notes.txt"]


def test_cli_json_and_backend_note(tmp_path, tracks, run_cli, monkeypatch):
    monkeypatch.delenv("AVMIX_MODEL", raising=False)
    r = run_cli("generate", *tracks, "-o", tmp_path / "o.mp4", "--size", "320x180", "--fps", "25", "--json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["backend"] == "procedural" and res["duration"] == pytest.approx(2.5)
    assert "backend procedural: no diffusion model configured" in r.err
    r = run_cli("generate", *tracks, "-o", tmp_path / "o.mp4", "--size", "320x180")
    assert r.code == 1 and "already exists" in r.err
    r = run_cli("generate", *tracks, "-o", tmp_path / "x.mp4", "--fps", "500")
    assert r.code == 2 and "Traceback" not in r.err
    r = run_cli("generate", *tracks, "-o", tmp_path / "x.mp4", "--backend", "diffusion")
    assert r.code == 2 and "needs a model" in r.err
    assert not (tmp_path / "x.mp4").exists()


def test_procedural_run_does_not_import_torch(tmp_path, tracks):
    """Nor scipy.signal, whose import alone costs about 0.5 s of CPU (a sixth of drawing a minute)."""
    code = ("import sys; from avmix import pipeline; "
            f"pipeline.generate({[os.fspath(t) for t in tracks]!r}, {os.fspath(tmp_path / 'o.mp4')!r}, "
            "size=(320, 180), fps=10); print('torch' in sys.modules, 'scipy.signal' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "AVMIX_MODEL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False False"


@pytest.mark.slow
def test_diffusion_backend_through_generate(tmp_path, monkeypatch):
    """The generate -> diffusion wiring with a tiny random-weight AnimateDiff (CPU, no download)."""
    pytest.importorskip("diffusers")
    from avmix.video.diffusion import tiny

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("AVMIX_MODEL", raising=False)
    model = tiny.write(tmp_path / "tiny", family="animatediff")
    a = write_wav(tmp_path / "a.wav", clicks(2.0, [0.5, 1.5]))
    work = tmp_path / "w"
    res = pipeline.generate([a], tmp_path / "o.mp4", backend="diffusion", model=os.fspath(model), device="cpu",
                            steps=2, size=(64, 64), fps=8, workdir=work, prompt="neon")
    assert res["backend"] == "diffusion"
    assert abs(count_frames(tmp_path / "o.mp4") - 16) <= 1
    man = json.loads((work / "manifest.json").read_text())
    assert man["stages"]["video"]["depends"]["model"] == os.fspath(model)
    assert man["video"]["backend"] == "diffusion"
    # auto with a model but no GPU: procedural, saying why; the audio stages are reused
    res = pipeline.generate([a], tmp_path / "p.mp4", backend="auto", model=os.fspath(model), size=(64, 64), fps=8,
                            workdir=work)
    assert res["backend"] == "procedural" and "not usable" in res["backend_reason"]
    assert res["reused"] == ["compose", "analyze"]


def test_av_sync_in_the_muxed_file(tmp_path):
    """Each click changes the picture most on the first frame at or after it, from start to end (no drift)."""
    fps, seconds = 24, 20.0
    times = [0.3 + 2.37 * k for k in range(8)] + [19.5]
    a = write_wav(tmp_path / "c.wav", clicks(seconds, times))
    pipeline.generate([a], tmp_path / "o.mp4", size=(160, 90), fps=fps, backend="procedural")
    raw = ffmpeg.run(["-i", ffmpeg.url(tmp_path / "o.mp4"), "-f", "rawvideo", "-pix_fmt", "gray", "-"])
    frames = np.frombuffer(raw, np.uint8).reshape(-1, 90, 160).astype(np.float32)
    assert abs(len(frames) - seconds * fps) <= 1
    change = np.r_[0, np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2))]
    # the audio as a player gets it: placed by its own timestamps (a stream starting late is padded)
    raw = ffmpeg.run(["-i", ffmpeg.url(tmp_path / "o.mp4"), "-map", "0:a:0", "-af",
                      "aresample=async=1:first_pts=0", "-ac", "1", "-ar", str(SR), "-f", "f32le", "-"])
    env = np.abs(np.frombuffer(raw, np.float32))
    for t in times:
        k = int(np.ceil(t * fps))  # the first frame at or after the click (timing.hit_frames)
        window = change[k - 5:k + 6]
        video_frame = k - 5 + int(np.argmax(window))
        assert abs(video_frame - k) <= 1, (t, np.round(window, 1))
        # the burst peaks 30 ms after its start: find it in the decoded audio, within half a second
        lo = max(0, int((t - 0.5) * SR))
        heard = (lo + int(np.argmax(env[lo:lo + SR]))) / SR - 0.03
        assert abs(heard - t) < 0.5 / fps, (t, heard)  # the sound is where it was composed
        # and on its picture: the first frame at or after the sound, as placed
        assert abs(int(np.ceil(heard * fps)) - video_frame) <= 1, (t, heard, video_frame)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_killed_mid_video_leaves_no_output_and_no_ffmpeg(tmp_path, sig):
    a = write_wav(tmp_path / "long.wav", clicks(12.0, [1.0, 5.0, 9.0]))
    out, work = tmp_path / "o.mp4", tmp_path / "w"
    cmd = [sys.executable, "-m", "avmix", "generate", os.fspath(a), "-o", os.fspath(out), "--size", "640x360",
           "--workdir", os.fspath(work), "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    import time

    deadline = time.monotonic() + 60
    while not list(work.glob(".video.*.part.mp4")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)  # wait until the video stage is writing
    assert proc.poll() is None, "finished before it could be interrupted"
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    assert b"Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".o.*"))
    assert not list(work.glob(".*.part.*")) and not (work / "video.mp4").exists()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert os.fspath(work) not in ps  # no ffmpeg left writing into the work directory
    # and the run resumes from the audio stages
    r = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["reused"] == ["compose", "analyze"]


def test_quiet_generate_prints_no_compose_notes(tmp_path, capsys):
    silent = write_wav(tmp_path / "silent.wav", np.zeros((48000, 2), np.float32))
    pipeline.generate([silent], tmp_path / "o.mp4", normalize="lufs", quiet=True, **SMALL)
    assert capsys.readouterr().err == ""
    pipeline.generate([silent], tmp_path / "o.mp4", normalize="lufs", quiet=False, overwrite=True, **SMALL)
    assert "the mix is silent" in capsys.readouterr().err


def test_sound_files_and_our_own_video_are_not_probed(tmp_path, tracks, monkeypatch):
    """A WAV cannot hold a picture and the built-in backends know what they wrote: no ffmpeg probe runs
    for either, and the output is still whole and in sync."""
    from avmix.video import pictures

    probed = []
    real_probe, real_pic = ffmpeg.probe, pictures._probe
    monkeypatch.setattr(ffmpeg, "probe", lambda p: probed.append(os.fspath(p)) or real_probe(p))
    monkeypatch.setattr(pictures, "_probe", lambda p: probed.append(os.fspath(p)) or real_pic(p))
    monkeypatch.setattr(pictures, "_PROBED", {})
    work = tmp_path / "work"
    res = pipeline.generate(tracks, tmp_path / "out.mp4", workdir=work, **SMALL)
    assert probed == []
    assert res["video_copied"] and check_output(res, work) == pytest.approx(2.5)


def test_a_riff_that_is_not_wave_is_probed(tmp_path):
    from avmix.audio import io

    wav, avi, flac = tmp_path / "a.wav", tmp_path / "a.avi", tmp_path / "a.flac"
    wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    avi.write_bytes(b"RIFF\x24\x00\x00\x00AVI LIST")
    flac.write_bytes(b"fLaC\x00\x00\x00\x22")
    assert io.sound_only(wav) and io.sound_only(flac)
    assert not io.sound_only(avi)
