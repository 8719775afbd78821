"""Finding the ffmpeg binary ($AVMIX_FFMPEG, PATH, the imageio-ffmpeg wheel) and working without ffprobe."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import pytest

from avmix import ffmpeg, ffmpeg_select
from avmix.errors import FFmpegError
from conftest import sine, write_wav

ROOT = Path(__file__).resolve().parents[1]
WHEEL_FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """ffmpeg chosen again under the test's environment (with a cache directory of its own), and
    forgotten afterwards."""
    monkeypatch.delenv("AVMIX_FFMPEG", raising=False)
    monkeypatch.setenv("AVMIX_CACHE", str(tmp_path / "cache"))
    ffmpeg_select.reset()
    yield monkeypatch
    ffmpeg_select.reset()


def _bin_dir(tmp_path: Path, name: str = "ffmpeg") -> Path:
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    (d / name).symlink_to(WHEEL_FFMPEG)
    return d


def fake_ffmpeg(path: Path, *, version: str = "4.4.2-0ubuntu0.22.04.1", lavf: str = "58. 76.100",
                drop: tuple[str, ...] = (), log: Path | None = None) -> Path:
    """A script that says it is ffmpeg ``version`` and lists the wheel's encoders and filters without
    ``drop``; anything else it hands to the wheel's ffmpeg. ``log`` records each call's arguments."""
    path.parent.mkdir(parents=True, exist_ok=True)
    grep = "".join(f" | {shutil.which('grep')} -v ' {name} '" for name in drop)  # PATH may hold only the fake
    path.write_text(f"""#!/bin/sh
{f'echo "$*" >> "{log}"' if log else ''}
case "$*" in
  "-hide_banner -version") printf 'ffmpeg version {version} Copyright (c) the FFmpeg developers\\n'
    printf 'libavformat    {lavf} / {lavf}\\n'; exit 0;;
  "-hide_banner -encoders") "{WHEEL_FFMPEG}" -hide_banner -encoders{grep}; exit 0;;
  "-hide_banner -filters") "{WHEEL_FFMPEG}" -hide_banner -filters{grep}; exit 0;;
esac
exec "{WHEEL_FFMPEG}" "$@"
""")
    path.chmod(0o755)
    return path


def test_avmix_ffmpeg_comes_first(fresh, tmp_path):
    fresh.setenv("PATH", str(_bin_dir(tmp_path)))
    fresh.setenv("AVMIX_FFMPEG", WHEEL_FFMPEG)
    assert ffmpeg.executable() == WHEEL_FFMPEG
    fresh.setenv("AVMIX_FFMPEG", "ffmpeg")  # a command name is looked up on PATH
    assert ffmpeg.executable() == str(tmp_path / "bin" / "ffmpeg")


def test_avmix_ffmpeg_that_is_not_a_program_is_an_error(fresh, tmp_path):
    bad = tmp_path / "ffmpeg.txt"
    bad.write_text("not a program\n")
    fresh.setenv("AVMIX_FFMPEG", str(bad))
    with pytest.raises(FFmpegError, match="AVMIX_FFMPEG=.*ffmpeg.txt is not an executable file"):
        ffmpeg.executable()


def test_path_before_the_wheel(fresh, tmp_path):
    d = _bin_dir(tmp_path)
    fresh.setenv("PATH", str(d))
    assert ffmpeg.executable() == str(d / "ffmpeg")


def test_the_wheel_when_nothing_else(fresh, tmp_path):
    fresh.setenv("PATH", str(tmp_path))  # no ffmpeg here
    fresh.delenv("IMAGEIO_FFMPEG_EXE", raising=False)
    assert os.path.samefile(ffmpeg.executable(), WHEEL_FFMPEG)
    fresh.setenv("IMAGEIO_FFMPEG_EXE", str(_bin_dir(tmp_path) / "ffmpeg"))  # imageio's own override is honoured
    assert os.path.samefile(ffmpeg_select.wheel_binary(), WHEEL_FFMPEG) and ffmpeg_select.wheel_binary() != WHEEL_FFMPEG


def test_old_ffmpeg_on_path_is_passed_over_with_one_note(fresh, tmp_path, capsys):
    old = fake_ffmpeg(tmp_path / "bin" / "ffmpeg")
    fresh.setenv("PATH", str(old.parent))
    assert os.path.samefile(ffmpeg.executable(), WHEEL_FFMPEG)
    assert os.path.samefile(ffmpeg.executable({"libx264", "aac"}), WHEEL_FFMPEG)
    note = capsys.readouterr().err.splitlines()
    assert len(note) == 1, note
    assert note[0].startswith(f"avmix: using ffmpeg {ffmpeg.version()} from imageio-ffmpeg ({WHEEL_FFMPEG}) because ")
    assert note[0].endswith(f"{old} on PATH is ffmpeg 4.4.2-0ubuntu0.22.04.1, older than 5.1")


def test_path_ffmpeg_without_what_the_job_needs(fresh, tmp_path, capsys):
    """A PATH ffmpeg without libx264 decodes; a job that encodes H.264 goes to the wheel's, and stays."""
    lean = fake_ffmpeg(tmp_path / "bin" / "ffmpeg", version="5.1.4", lavf="59. 27.100", drop=("libx264",))
    fresh.setenv("PATH", str(lean.parent))
    assert ffmpeg.executable() == str(lean)
    assert capsys.readouterr().err == ""
    assert os.path.samefile(ffmpeg.executable(ffmpeg.VIDEO_NEEDS), WHEEL_FFMPEG)
    assert os.path.samefile(ffmpeg.executable(), WHEEL_FFMPEG)  # the rest of the job uses the same build
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.rstrip().endswith(f"{lean} on PATH is ffmpeg 5.1.4 without libx264")


def test_versions_named_by_a_git_hash_are_judged_by_libavformat():
    new = ffmpeg_select.parse("x", "ffmpeg version N-113425-g1d4d6a7bd2 Copyright\nlibavformat    60. 16.100 / 60. 16.100\n",
                              "", "")
    old = ffmpeg_select.parse("x", "ffmpeg version N-99999-gabcdef Copyright\nlibavformat    58. 76.100 / 58. 76.100\n",
                              "", "")
    assert new.problem() is None and old.problem() == "is ffmpeg N-99999-gabcdef, older than 5.1"
    assert ffmpeg_select.parse("x", "ffmpeg version 6.1.1-3ubuntu5 Copyright", "", "").release == (6, 1)
    with pytest.raises(FFmpegError, match="x is not ffmpeg"):
        ffmpeg_select.parse("x", "Usage: something else", "", "")


def test_unusable_avmix_ffmpeg_is_refused_never_replaced(fresh, tmp_path):
    old = fake_ffmpeg(tmp_path / "old" / "ffmpeg")
    fresh.setenv("AVMIX_FFMPEG", str(old))
    with pytest.raises(FFmpegError, match=f"^AVMIX_FFMPEG={old} is ffmpeg 4.4.2-0ubuntu0.22.04.1, older than 5.1$"):
        ffmpeg.executable()
    no_vp9 = fake_ffmpeg(tmp_path / "novp9" / "ffmpeg", version="7.1", lavf="61. 7.100", drop=("libvpx-vp9",))
    fresh.setenv("AVMIX_FFMPEG", str(no_vp9))
    ffmpeg_select.reset()
    assert ffmpeg.executable({"libx264", "aac"}) == str(no_vp9)
    with pytest.raises(FFmpegError, match="is ffmpeg 7.1 without libvpx-vp9") as caught:
        ffmpeg.executable({"libvpx-vp9", "libopus"})
    assert caught.value.hint == "point it at ffmpeg 5.1 or newer with libvpx-vp9, or unset it"
    not_ffmpeg = tmp_path / "sox"
    not_ffmpeg.write_text("#!/bin/sh\necho 'sox: SoX v14.4.2'\n")
    not_ffmpeg.chmod(0o755)
    fresh.setenv("AVMIX_FFMPEG", str(not_ffmpeg))
    with pytest.raises(FFmpegError, match="sox is not ffmpeg"):
        ffmpeg.executable()


def test_refused_avmix_ffmpeg_through_the_cli(fresh, tmp_path, run_cli):
    video = tmp_path / "v.mp4"
    subprocess.run([WHEEL_FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video)], check=True, timeout=60)
    audio = write_wav(tmp_path / "a.wav", sine(440, 1.0, 48000, 2), 48000)
    fresh.setenv("AVMIX_FFMPEG", str(fake_ffmpeg(tmp_path / "novp9" / "ffmpeg", version="7.1", lavf="61. 7.100",
                                                 drop=("libvpx-vp9",))))
    r = run_cli("render", video, audio, "-o", tmp_path / "o.webm")
    assert r.code == 1 and "Traceback" not in r.err
    lines = r.err.splitlines()
    assert lines[0] == f"avmix: error: AVMIX_FFMPEG={tmp_path}/novp9/ffmpeg is ffmpeg 7.1 without libvpx-vp9"
    assert lines[1:] == ["avmix: hint: point it at ffmpeg 5.1 or newer with libvpx-vp9, or unset it"]
    assert not (tmp_path / "o.webm").exists()


def test_no_usable_ffmpeg_says_how_to_get_one(fresh, tmp_path, run_cli, monkeypatch):
    old = fake_ffmpeg(tmp_path / "bin" / "ffmpeg")
    fresh.setenv("PATH", str(old.parent))

    monkeypatch.setattr(ffmpeg_select, "wheel_binary", lambda: None)  # a platform the wheel has no binary for
    with pytest.raises(FFmpegError, match=f"^no usable ffmpeg \\({old} on PATH is ffmpeg 4.4.2.*older than 5.1\\)$") as caught:
        ffmpeg.executable()
    assert "apt-get install ffmpeg" in caught.value.hint and "pip install imageio-ffmpeg" in caught.value.hint
    mp3 = tmp_path / "a.mp3"
    subprocess.run([WHEEL_FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine=d=0.5", str(mp3)], check=True, timeout=60)
    ffmpeg_select.reset()
    r = run_cli("mix", mp3, "-o", tmp_path / "o.wav")
    assert r.code == 1 and len(r.err.splitlines()) == 2 and "no usable ffmpeg" in r.err
    assert not (tmp_path / "o.wav").exists()


def test_probe_is_cached_on_disk_by_size_and_mtime(fresh, tmp_path):
    log = tmp_path / "calls.log"
    fake = fake_ffmpeg(tmp_path / "bin" / "ffmpeg", version="5.1.4", lavf="59. 27.100", log=log)
    first = ffmpeg_select.inspect(str(fake))
    assert sorted(log.read_text().splitlines()) == ["-hide_banner -encoders", "-hide_banner -filters",
                                                   "-hide_banner -version"]
    assert "libx264" in first.encoders and "tpad" in first.filters and first.release == (5, 1)
    assert str(fake) in json.loads((tmp_path / "cache" / "ffmpeg-builds.json").read_text())["builds"]
    ffmpeg_select.reset()  # as a new process would start
    assert ffmpeg_select.inspect(str(fake)) == first
    assert len(log.read_text().splitlines()) == 3  # from the disk: nothing ran
    st = fake.stat()
    os.utime(fake, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the binary was replaced
    ffmpeg_select.reset()
    assert ffmpeg_select.inspect(str(fake)) == first
    assert len(log.read_text().splitlines()) == 6


def test_cache_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("AVMIX_CACHE", str(tmp_path / "a"))
    assert ffmpeg_select.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("AVMIX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ffmpeg_select.cache_dir() == tmp_path / "xdg" / "avmix"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ffmpeg_select.cache_dir() == tmp_path / "home" / ".cache" / "avmix"


def test_mix_of_wavs_runs_no_ffmpeg(tmp_path):
    log = tmp_path / "calls.log"
    spy = tmp_path / "spy"
    spy.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexit 1\n')
    spy.chmod(0o755)
    a = write_wav(tmp_path / "a.wav", sine(440, 0.5), 48000)
    b = write_wav(tmp_path / "b.wav", sine(660, 0.5), 48000)
    env = dict(os.environ, AVMIX_FFMPEG=str(spy), AVMIX_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "avmix", "mix", str(a), str(b), "-o", str(tmp_path / "o.wav"), "-q"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert not log.exists() and not (tmp_path / "cache").exists()


def test_quiet_commands_print_no_note(fresh, tmp_path, run_cli):
    fresh.setenv("PATH", str(fake_ffmpeg(tmp_path / "bin" / "ffmpeg").parent))
    mp3 = tmp_path / "a.mp3"
    subprocess.run([WHEEL_FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine=d=0.5", str(mp3)], check=True, timeout=60)
    r = run_cli("mix", mp3, "-o", tmp_path / "q.wav", "-q")
    assert r.code == 0 and r.err == ""
    ffmpeg_select.reset()
    r = run_cli("mix", mp3, "-o", tmp_path / "n.wav")
    assert r.code == 0 and r.err.count("avmix: using ffmpeg") == 1


def test_stage_keys_name_the_ffmpeg_build(fresh, tmp_path):
    from avmix import manifest

    fresh.setenv("AVMIX_FFMPEG", WHEEL_FFMPEG)
    wheel_key = manifest.key("compose", {"inputs": []})
    assert manifest.key("compose", {"inputs": []}) == wheel_key
    assert manifest.versions()["ffmpeg"] == ffmpeg.version()
    fresh.setenv("AVMIX_FFMPEG", str(fake_ffmpeg(tmp_path / "other" / "ffmpeg", version="5.1.4", lavf="59. 27.100")))
    ffmpeg_select.reset()
    assert manifest.key("compose", {"inputs": []}) != wheel_key
    assert manifest.versions()["ffmpeg"] == "5.1.4"


def test_compressed_input_needs_no_ffprobe(tmp_path):
    """An mp3 is probed and decoded with ffmpeg alone; an ffprobe on PATH is never run."""
    src = write_wav(tmp_path / "a.wav", sine(440, 1.0, 44100, 2, amp=0.3), 44100)
    mp3 = tmp_path / "a.mp3"
    subprocess.run([WHEEL_FFMPEG, "-v", "error", "-i", str(src), str(mp3)], check=True, timeout=60)
    d = _bin_dir(tmp_path)
    marker = tmp_path / "ffprobe-ran"
    (d / "ffprobe").write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    (d / "ffprobe").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "AVMIX_FFMPEG"}
    env.update(PATH=str(d), PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "avmix", "mix", str(mp3), str(src), "-o", str(tmp_path / "o.flac"),
                        "--json", "-q"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["sample_rate"] == 44100 and out["channels"] == 2
    assert abs(out["duration"] - 1.0) < 0.06  # mp3 decoders may keep a frame of padding
    assert not marker.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pipe sizes are a Linux fcntl")
def test_grow_pipe_holds_a_frame():
    import fcntl

    r, w = os.pipe()
    try:
        with open(w, "wb", closefd=False) as pipe:
            ffmpeg.grow_pipe(pipe, 1 << 20)
            assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) >= 1 << 20
    finally:
        os.close(r)
        os.close(w)


def test_an_error_reads_the_same_on_both_builds():
    """5.1 prefixes its reason with the input's "file:" name (avmix names the file itself); 9.0 does not."""
    old = "file:/tmp/x: y/notes.wav: Invalid data found when processing input\n"
    new = ("[in#0 @ 0x55ecdb9a0cc0] Error opening input: Invalid data found when processing input\n"
           "Error opening input file file:/tmp/x/notes.wav.\n"
           "Error opening input files: Invalid data found when processing input\n")
    assert ffmpeg.last_lines(old, 1) == "Invalid data found when processing input"
    assert ffmpeg.last_lines(new, 1).endswith("Invalid data found when processing input")
