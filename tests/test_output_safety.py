"""No command writes over a file it reads, writes two outputs to one path, or replaces something that is
not a regular file: each is refused before any work, in one line naming the file, with nothing written."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from avmix import ffmpeg
from conftest import sine, write_wav

G = ["generate", "--size", "160x90", "--fps", "10", "-q"]


def ff(*args: str) -> None:
    subprocess.run([ffmpeg.executable(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True,
                   capture_output=True)


@pytest.fixture
def d(tmp_path, monkeypatch) -> Path:
    """A folder with a.wav, b.wav (1 s tones) and keep.png, as the current directory."""
    monkeypatch.chdir(tmp_path)
    write_wav(tmp_path / "a.wav", sine(440, 1.0, 48000, 2), subtype="PCM_16")
    write_wav(tmp_path / "b.wav", sine(660, 1.0, 48000, 2), subtype="PCM_16")
    ff("-f", "lavfi", "-i", "color=c=red:s=32x32", "-frames:v", "1", "-c:v", "png", str(tmp_path / "keep.png"))
    return tmp_path


def video(path: Path) -> Path:
    """A 1 s clip with a picture and a tone (usable as --image and as --reference)."""
    ff("-f", "lavfi", "-i", "color=c=blue:s=64x36:r=10:d=1", "-f", "lavfi", "-i", "sine=f=330:d=1",
       "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path))
    return path


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file under ``root`` with its bytes (a FIFO or folder as its kind), to show nothing changed."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath, name)
            rel = os.fspath(p.relative_to(root))
            mode = p.lstat().st_mode
            out[rel] = p.read_bytes() if stat.S_ISREG(mode) else ("dir" if stat.S_ISDIR(mode) else "other")
    return out


def refused(r, *, code: int, name: str, what: str) -> None:
    """One error line ``avmix: error: <name>: ...<what>...`` (and at most a hint), no traceback."""
    lines = r.err.strip().splitlines()
    assert r.code == code, (r.code, r.err)
    assert lines and lines[0].startswith(f"avmix: error: {name}: "), r.err
    assert what in lines[0], r.err
    assert len(lines) <= 2 and all(ln.startswith("avmix: hint: ") for ln in lines[1:]), r.err
    assert "Traceback" not in r.err and r.out == ""


# -- 1. what generate reads (inputs, --image, --reference) is never what it writes

def test_generate_preview_over_an_image_is_refused(d, run_cli):
    before = snapshot(d)
    r = run_cli(*G, "a.wav", "b.wav", "--image", "keep.png", "--preview", "keep.png", "-o", "o.mp4", "-y")
    refused(r, code=1, name="keep.png", what="same file as an input (--image)")
    assert snapshot(d) == before  # keep.png unchanged, no o.mp4, no work directory left


@pytest.mark.parametrize("args, name, what", [
    (["a.wav", "--image", "vv.mp4", "-o", "vv.mp4"], "vv.mp4", "same file as an input (--image)"),
    (["a.wav", "b.wav", "--reference", "vv.mp4", "-o", "vv.mp4"], "vv.mp4", "same file as an input (--reference)"),
    (["a.wav", "--image", "st/00-a.mp4", "--stems", "st"], "st/00-a.mp4", "same file as an input (--image)"),
    (["a.wav", "b.wav", "--reference", "st/mix.wav", "--stems", "st"], "st/mix.wav",
     "same file as an input (--reference)"),
], ids=["image-is-output", "reference-is-output", "image-is-a-picture-stem", "reference-is-stems-mix"])
def test_generate_never_writes_over_an_image_or_reference(d, run_cli, args, name, what):
    (d / "st").mkdir()
    video(d / "vv.mp4")
    video(d / "st" / "00-a.mp4")
    write_wav(d / "st" / "mix.wav", sine(220, 1.0, 48000, 2), subtype="PCM_16")
    before = snapshot(d)
    out = [] if "-o" in args else ["-o", "out.mp4"]
    r = run_cli(*G, *args, *out, "-y")
    refused(r, code=1, name=name, what=what)
    assert snapshot(d) == before


def test_generate_never_writes_over_an_image_in_its_work_directory(d, run_cli):
    assert run_cli(*G, "a.wav", "-o", "first.mp4", "--workdir", "wz").code == 0
    before = snapshot(d)
    r = run_cli(*G, "a.wav", "--image", "wz/video.mp4", "--workdir", "wz", "-o", "second.mp4")
    refused(r, code=1, name="wz/video.mp4", what="same file as an input (--image)")
    assert snapshot(d) == before


def test_generate_input_in_the_default_work_directory_is_refused(d, run_cli):
    """The default work directory is removed after the run, and everything in it."""
    assert run_cli(*G, "a.wav", "-o", "o.mp4", "--keep").code == 0
    work = d / ".o.mp4.avmix-work"
    os.replace(d / "keep.png", work / "keep.png")
    before = snapshot(d)
    r = run_cli(*G, "a.wav", "--image", work / "keep.png", "-o", "o.mp4", "-y")
    refused(r, code=1, name=os.fspath(work / "keep.png"), what="inside the work directory")
    assert snapshot(d) == before


def test_audio_commands_never_write_over_the_reference(d, run_cli):
    ref = write_wav(d / "ref.wav", sine(220, 1.0, 48000, 2), subtype="PCM_16")
    before = snapshot(d)
    r = run_cli("mix", "a.wav", "b.wav", "--reference", "ref.wav", "-o", "o.wav", "--timeline", "ref.wav", "-y")
    refused(r, code=1, name="ref.wav", what="same file as an input (--reference)")
    r = run_cli("concat", "a.wav", "b.wav", "--reference", ref, "-o", "ref.wav", "-y")
    refused(r, code=1, name="ref.wav", what="same file as an input")
    # the timeline written beside the output by default is an output too
    os.replace(ref, d / "o.wav.timeline.json")
    before = snapshot(d)
    r = run_cli("overlay", "a.wav", "b.wav", "--reference", "o.wav.timeline.json", "-o", "o.wav", "-y")
    refused(r, code=1, name="o.wav.timeline.json", what="same file as an input (--reference)")
    assert snapshot(d) == before


# -- 2. -y replaces regular files only

@pytest.mark.parametrize("y", [["-y"], []], ids=["overwrite", "no-overwrite"])
@pytest.mark.parametrize("target", ["output", "timeline", "sidecar"])
def test_a_fifo_is_never_replaced(d, run_cli, target, y):
    fifo = {"output": "f.wav", "timeline": "f.json", "sidecar": "o.wav.timeline.json"}[target]
    os.mkfifo(d / fifo)
    out = "f.wav" if target == "output" else "o.wav"
    before = snapshot(d)
    r = run_cli("mix", "a.wav", "b.wav", "-o", out, *(["--timeline", fifo] if target == "timeline" else []), *y)
    refused(r, code=1, name=fifo, what="is not a regular file")
    assert snapshot(d) == before and stat.S_ISFIFO(os.stat(d / fifo).st_mode)


def test_generate_preview_fifo_is_never_replaced(d, run_cli):
    os.mkfifo(d / "p.png")
    before = snapshot(d)
    r = run_cli(*G, "a.wav", "-o", "o.mp4", "--preview", "p.png", "-y")
    refused(r, code=1, name="p.png", what="is not a regular file")
    assert snapshot(d) == before and stat.S_ISFIFO(os.stat(d / "p.png").st_mode)


# -- 3. two outputs on one path: refused before anything is written

@pytest.mark.parametrize("args, name", [
    (["-o", "g3.mp4", "--preview", "g3.png", "--stems", "g3.png"], "g3.png"),
    (["-o", "g3.mp4", "--stems", "g3.mp4"], "g3.mp4"),
    (["-o", "g3.mp4", "--workdir", "g3.mp4"], "g3.mp4"),
    (["-o", "wz/video.mp4", "--workdir", "wz"], "wz/video.mp4"),
    (["-o", "g3.mp4", "--stems", "st", "--workdir", "st"], "st"),
    (["--image", "keep.png", "-o", "st/00-a.mp4", "--stems", "st"], "st/00-a.mp4"),
], ids=["preview-is-stems", "output-is-stems", "output-is-workdir", "output-is-a-work-file", "stems-is-workdir",
        "output-is-a-picture-stem"])
def test_generate_outputs_on_one_path_are_refused_up_front(d, run_cli, args, name):
    (d / "wz").mkdir()
    (d / "st").mkdir()
    before = snapshot(d)
    r = run_cli(*G, "a.wav", *args, "-y")
    refused(r, code=2, name=name, what="same path")
    assert snapshot(d) == before


def test_collision_checks_leave_a_normal_run_alone(d, run_cli):
    """Stems, preview and work directory side by side, and a rerun over its own outputs with -y."""
    args = [*G, "a.wav", "b.wav", "--image", "keep.png", "-o", "o.mp4", "--preview", "o.png", "--stems", "st",
            "--workdir", "wz"]
    assert run_cli(*args).code == 0
    assert run_cli(*args, "-y").code == 0
    assert sorted(os.listdir(d / "st")) == ["00-a.mp4", "00-a.wav", "01-b.wav", "mix.wav"]
    assert (d / "o.png").stat().st_size > 0 and (d / "o.mp4").stat().st_size > 0


def test_the_library_keeps_a_reference_from_its_own_timeline(d):
    from avmix.audio import compose
    from avmix.errors import OutputError

    ref = d / "b.wav"
    before = ref.read_bytes()
    with pytest.raises(OutputError, match="same file as an input"):
        compose.mix([d / "a.wav"], d / "o.wav", reference=ref, timeline_path=ref, overwrite=True)
    assert ref.read_bytes() == before and not (d / "o.wav").exists()


def test_an_output_ending_in_a_slash_is_refused(d, run_cli):
    r = run_cli("mix", "a.wav", "-o", "out.wav/")
    assert r.code == 1 and "ends with '/'" in r.err and "Traceback" not in r.err
    assert not (d / "out.wav").exists()


def test_the_library_replaces_stems_only_with_overwrite(d):
    from avmix.audio import compose
    from avmix.errors import OutputError

    stems = d / "stems"
    compose.mix([d / "a.wav", d / "b.wav"], d / "o.wav", stems_dir=stems, labels=["a", "b"])
    (stems / "01-b.wav").write_bytes(b"mine")
    with pytest.raises(OutputError, match="already exists"):
        compose.mix([d / "a.wav", d / "b.wav"], d / "o2.wav", stems_dir=stems, labels=["a", "b"])
    assert (stems / "01-b.wav").read_bytes() == b"mine" and not (d / "o2.wav").exists()
    compose.mix([d / "a.wav", d / "b.wav"], d / "o2.wav", stems_dir=stems, labels=["a", "b"], overwrite=True)
    assert (stems / "01-b.wav").read_bytes() != b"mine"


def test_the_library_keeps_its_timeline_off_an_input(d):
    from avmix.audio import compose
    from avmix.errors import OutputError

    side = d / "o.wav.timeline.json"
    compose.mix([d / "a.wav"], side.with_suffix(".wav"), timeline_path=d / "t.json")  # any audio file named so
    (d / "t.json").unlink()
    os.replace(side.with_suffix(".wav"), side)
    before = side.read_bytes()
    with pytest.raises(OutputError, match="the timeline is the same file as an input"):
        compose.mix([d / "a.wav", side], d / "o.wav", overwrite=True)
    assert side.read_bytes() == before and not (d / "o.wav").exists()
