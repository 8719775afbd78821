"""Bad input through the CLI: one line naming the file and the problem, the right exit code, no traceback,
and no output file created or changed."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avmix import ffmpeg
from conftest import sine, write_wav

FF = ffmpeg.executable()
ROOT = Path(__file__).resolve().parents[1]


def ff(*args: str) -> None:
    subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-y", *args], check=True, capture_output=True)


@pytest.fixture
def good(tmp_path) -> Path:
    return write_wav(tmp_path / "good.wav", sine(440, 1.0, 48000, 2), subtype="PCM_16")


def check_failed(r, *, code: int, name: str | None, what: str, out_dir: Path, before: set[str]) -> None:
    """``name``: the file the one-line error must be about (``<name>: <what>``); None for option errors."""
    assert r.code == code, (r.code, r.err)
    lines = r.err.strip().splitlines()
    assert lines, "no error message"
    assert lines[0].startswith("avmix: error: "), r.err
    assert name is None or (name and f"{name}: " in lines[0]), r.err
    assert what in lines[0].lower(), r.err
    assert all(ln.startswith("avmix: hint: ") for ln in lines[1:]) and len(lines) <= 2, r.err
    assert "Traceback" not in r.err and r.out == ""
    assert set(os.listdir(out_dir)) == before, "an output or temp file was left behind"


_MADE: dict[str, bytes] = {}  # kind -> bytes of the files ffmpeg makes (the same every time): made once


def make_bad(kind: str, d: Path, good: Path) -> Path:
    if kind in _MADE:
        p = d / {"image": "photo.wav", "video": "silent.mp4", "trunc_flac": "cut.flac", "trunc_mp3": "cut.mp3",
                 "corrupt_mp3": "broken.mp3", "corrupt_flac": "broken.flac"}[kind]
        p.write_bytes(_MADE[kind])
        return p
    p = _make_bad(kind, d, good)
    if kind in ("image", "video", "trunc_flac", "trunc_mp3", "corrupt_mp3", "corrupt_flac"):
        _MADE[kind] = p.read_bytes()
    return p


def _make_bad(kind: str, d: Path, good: Path) -> Path:
    p = d / {"text": "notes.wav", "image": "photo.wav", "video": "silent.mp4", "empty": "empty.wav",
             "dir": "folder.wav", "missing": "missing.wav", "trunc_wav": "cut.wav", "trunc_flac": "cut.flac",
             "trunc_mp3": "cut.mp3", "corrupt_mp3": "broken.mp3", "zero_len": "nothing.wav",
             "junk": "junk.ogg", "corrupt_flac": "broken.flac", "trunc_aiff": "cut.aiff"}[kind]
    if kind == "text":
        p.write_text("this is a text file, not audio\n" * 50)
    elif kind == "image":
        ff("-f", "lavfi", "-i", "color=c=red:s=32x32", "-frames:v", "1", "-f", "image2", "-c:v", "png", str(p))
    elif kind == "video":
        ff("-f", "lavfi", "-i", "color=c=red:s=64x64:r=10:d=1", "-c:v", "libx264", "-preset", "ultrafast", str(p))
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "dir":
        p.mkdir()
    elif kind == "trunc_wav":
        p.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 3])
    elif kind == "trunc_flac":
        full = d / "full.flac"
        ff("-i", str(good), str(full))
        p.write_bytes(full.read_bytes()[:full.stat().st_size // 3])
        full.unlink()
    elif kind in ("trunc_mp3", "corrupt_mp3"):
        full = d / "full.mp3"
        ff("-f", "lavfi", "-i", "sine=f=440:d=3", "-c:a", "libmp3lame", str(full))
        data = bytearray(full.read_bytes())
        full.unlink()
        if kind == "trunc_mp3":
            data = data[:len(data) // 3]
        else:
            rng = np.random.default_rng(0)
            mid = len(data) // 2
            data[mid:mid + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
        p.write_bytes(bytes(data))
    elif kind == "corrupt_flac":  # valid header, first and last frames; 3 KB of noise in the middle
        full = d / "full.flac"
        ff("-f", "lavfi", "-i", "sine=f=440:d=3:r=48000", "-ac", "2", str(full))
        data = bytearray(full.read_bytes())
        full.unlink()
        mid = len(data) // 2
        data[mid:mid + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
        p.write_bytes(bytes(data))
    elif kind == "trunc_aiff":
        full = write_wav(d / "full.aiff", sine(440, 1.0, 48000, 2), subtype="PCM_16")
        p.write_bytes(full.read_bytes()[:full.stat().st_size // 3])
        full.unlink()
    elif kind == "zero_len":
        write_wav(p, np.zeros((0, 2), np.float32))
    elif kind == "junk":
        p.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    return p


BAD = [
    ("missing", "no such file"),
    ("dir", "directory"),
    ("empty", "empty"),
    ("text", "not an audio file"),
    ("image", "no audio stream"),
    ("video", "no audio stream"),
    ("trunc_wav", "truncated"),
    ("trunc_flac", "truncated"),
    ("trunc_mp3", "truncated"),
    ("corrupt_mp3", "corrupt"),
    ("corrupt_flac", "corrupt flac audio data"),
    ("trunc_aiff", "truncated aiff"),
    ("zero_len", "no audio"),
    ("junk", "not an audio file"),
]


@pytest.mark.parametrize("kind,what", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("cmd", ["mix", "concat", "overlay"])
def test_bad_input_file(run_cli, tmp_path, good, kind, what, cmd):
    bad = make_bad(kind, tmp_path, good)
    before = set(os.listdir(tmp_path))
    args = [cmd, good, bad] if cmd != "overlay" else [cmd, bad, good]
    r = run_cli(*args, "-o", tmp_path / "out.wav")
    check_failed(r, code=1, name=bad.name, what=what, out_dir=tmp_path, before=before)


def run_unprivileged(*args, code: str | None = None) -> subprocess.CompletedProcess:
    """``python -m avmix ARGS`` (or ``python -c CODE ARGS``) where permission bits hold: as root (CI),
    with the capabilities that override them dropped (setpriv), so the kernel's real EACCES is what avmix
    meets; as anyone else, as it is. (User 'nobody' cannot run the venv's interpreter here: it lives under /root.)"""
    import shutil
    import sys

    cmd = [sys.executable, *(["-c", code] if code else ["-m", "avmix"]), *map(str, args)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permission bits cannot be made to hold")
        cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *cmd]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def test_unreadable_file(tmp_path, good):
    bad = tmp_path / "locked.wav"
    bad.write_bytes(good.read_bytes())
    bad.chmod(0)
    before = set(os.listdir(tmp_path))
    p = run_unprivileged("mix", good, bad, "-o", tmp_path / "out.wav")
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.splitlines()[0] == f"avmix: error: {bad}: permission denied", p.stderr
    assert set(os.listdir(tmp_path)) == before


def test_unwritable_output_directory(tmp_path, good):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        p = run_unprivileged("mix", good, "-o", d / "out.wav")
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.splitlines()[0] == f"avmix: error: {d}: output directory is not writable", p.stderr
        assert os.listdir(d) == [] and sorted(os.listdir(tmp_path)) == ["good.wav", "ro"]
    finally:
        d.chmod(0o755)


# avmix with its early look at the output directory (os.access) skipped, as when the directory changes
# after that look: the permission error then comes from creating the temporary output, for real
_LATE = "import os, sys; os.access = lambda *a, **k: True; sys.argv[0] = 'avmix'; from avmix.cli import main; main()"


@pytest.mark.parametrize("cmd", ["mix", "mix-mp3", "render"])
def test_directory_found_unwritable_only_when_writing(tmp_path, good, clip, cmd):
    """The temporary output cannot be created: the error names the output's directory and the problem,
    never the temporary file's name (.out.*.part.wav)."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    out = d / ("out.mp4" if cmd == "render" else "out.mp3" if cmd == "mix-mp3" else "out.wav")
    args = ["render", clip, good] if cmd == "render" else ["mix", good]
    try:
        p = run_unprivileged(*args, "-o", out, code=_LATE)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        line = p.stderr.splitlines()[0]
        assert line.startswith(f"avmix: error: {d}: output directory is not writable ("), p.stderr
        assert "permission denied" in line.lower() and ".part" not in line, p.stderr
        assert os.listdir(d) == [] and sorted(os.listdir(tmp_path)) == ["good.wav", "ro"]
    finally:
        d.chmod(0o755)


def test_output_directory_missing(run_cli, tmp_path, good):
    before = set(os.listdir(tmp_path))
    r = run_cli("mix", good, good, "-o", tmp_path / "nodir" / "out.wav")
    check_failed(r, code=1, name="nodir", what="does not exist", out_dir=tmp_path, before=before)


def test_output_equal_to_input_is_refused(run_cli, tmp_path, good):
    data = good.read_bytes()
    before = set(os.listdir(tmp_path))
    r = run_cli("mix", good, good, "-o", good, "-y")
    check_failed(r, code=1, name="good.wav", what="same file as an input", out_dir=tmp_path, before=before)
    assert good.read_bytes() == data
    os.chdir(tmp_path)  # the same file by another spelling
    r = run_cli("concat", "good.wav", good, "-o", f"./{good.name}", "-y")
    assert r.code == 1 and "same file as an input" in r.err and good.read_bytes() == data


def test_existing_output_unchanged_without_overwrite(run_cli, tmp_path, good):
    out = tmp_path / "out.wav"
    out.write_bytes(b"precious")
    before = set(os.listdir(tmp_path))
    r = run_cli("mix", good, good, "-o", out)
    check_failed(r, code=1, name="out.wav", what="already exists", out_dir=tmp_path, before=before)
    assert "--overwrite" in r.err and out.read_bytes() == b"precious"
    r = run_cli("mix", good, good, "-o", out, "-y", "-q")
    assert r.code == 0, r.err
    assert out.read_bytes() != b"precious"


def test_bad_input_leaves_existing_output_unchanged(run_cli, tmp_path, good):
    out = tmp_path / "out.wav"
    out.write_bytes(b"precious")
    bad = make_bad("trunc_wav", tmp_path, good)
    r = run_cli("mix", good, bad, "-o", out, "-y")
    assert r.code == 1 and "truncated" in r.err and "Traceback" not in r.err
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize("args,what", [
    (["--gain", "-500"], "--gain -500 db is out of range"),
    (["--fade-in", "-3"], "--fade-in -3 s is out of range"),
    (["--sample-rate", "-48000"], "--sample-rate -48000 hz is out of range"),
    (["--channels", "1000"], "--channels 1000 is out of range"),
])
def test_negative_or_absurd_numbers(run_cli, tmp_path, good, args, what):
    before = set(os.listdir(tmp_path))
    r = run_cli("mix", good, good, "-o", tmp_path / "out.wav", *args)
    check_failed(r, code=2, name=None, what=what, out_dir=tmp_path, before=before)


@pytest.fixture
def long(tmp_path) -> Path:
    return write_wav(tmp_path / "long.wav", sine(330, 3.0, 48000, 2), subtype="PCM_16")


def test_offset_past_the_end(run_cli, tmp_path, good, long):
    before = set(os.listdir(tmp_path))
    r = run_cli("overlay", good, long, "--at", "5", "-o", tmp_path / "out.wav")  # good.wav is the 1 s base
    check_failed(r, code=2, name=str(good), what="past the end", out_dir=tmp_path, before=before)
    assert "long.wav" not in r.err


def test_crossfade_longer_than_a_track(run_cli, tmp_path, good, long):
    before = set(os.listdir(tmp_path))
    r = run_cli("concat", long, good, "--crossfade", "2", "-o", tmp_path / "out.wav")  # 2 s > good.wav's 1 s
    check_failed(r, code=2, name=str(good), what="crossfade", out_dir=tmp_path, before=before)
    assert "long.wav" not in r.err


def test_corrupt_flac_fails_mid_write_and_removes_the_temp_output(run_cli, tmp_path, good, monkeypatch):
    from avmix import paths
    made: list[Path] = []
    real = paths._create_temp
    monkeypatch.setattr(paths, "_create_temp", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    bad = make_bad("corrupt_flac", tmp_path, good)
    before = set(os.listdir(tmp_path))
    r = run_cli("mix", good, bad, "-o", tmp_path / "out.wav")
    check_failed(r, code=1, name=str(bad), what="decoding fails at", out_dir=tmp_path, before=before)
    assert "libsndfile: " in r.err
    assert made, "the error came before the output was opened: this test would not check the clean-up"
    assert not any(m.exists() for m in made), "the temp output was left behind"


def test_debug_shows_the_traceback(tmp_path, good):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    import sys
    p = subprocess.run([sys.executable, "-m", "avmix", "--debug", "mix", str(good), str(tmp_path / "missing.wav"),
                        "-o", str(tmp_path / "o.wav")], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode != 0 and "Traceback" in p.stderr and "missing.wav" in p.stderr


# ------------------------------------------------------------------- the same kinds through generate and render

@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 1 s silent video for render (outside each test's directory)."""
    p = tmp_path_factory.mktemp("clip") / "clip.mp4"
    ff("-f", "lavfi", "-i", "color=c=blue:s=32x32:r=10:d=1", "-c:v", "libx264", "-preset", "ultrafast",
       "-pix_fmt", "yuv420p", str(p))
    return p


@pytest.mark.parametrize("kind,what", BAD, ids=[b[0] for b in BAD])
def test_bad_input_file_through_generate(run_cli, tmp_path, good, kind, what):
    bad = make_bad(kind, tmp_path, good)
    before = set(os.listdir(tmp_path))
    r = run_cli("generate", good, bad, "-o", tmp_path / "out.mp4", "--backend", "procedural", "--size", "32x32",
                "--fps", "5")
    check_failed(r, code=1, name=bad.name, what=what, out_dir=tmp_path, before=before)


# render decodes its audio with the compose commands' reader before muxing: the same kinds, the same words
@pytest.mark.parametrize("kind,what", BAD, ids=[b[0] for b in BAD])
def test_bad_audio_file_through_render(run_cli, tmp_path, good, clip, kind, what):
    bad = make_bad(kind, tmp_path, good)
    before = set(os.listdir(tmp_path))
    r = run_cli("render", clip, bad, "-o", tmp_path / "out.mp4")
    check_failed(r, code=1, name=bad.name, what=what, out_dir=tmp_path, before=before)


BAD_VIDEO = [("missing", "no such file"), ("dir", "directory"), ("empty", "empty"), ("text", "not a"),
             ("junk", "not a"), ("zero_len", "no video stream"), ("trunc_wav", "no video stream")]


@pytest.mark.parametrize("kind,what", BAD_VIDEO, ids=[b[0] for b in BAD_VIDEO])
def test_bad_video_file_through_render(run_cli, tmp_path, good, kind, what):
    bad = make_bad(kind, tmp_path, good)
    before = set(os.listdir(tmp_path))
    r = run_cli("render", bad, good, "-o", tmp_path / "out.mp4")
    check_failed(r, code=1, name=bad.name, what=what, out_dir=tmp_path, before=before)


# ------------------------------------------------------------------- failing after the temporary output exists

def _watch_temps(monkeypatch) -> list[Path]:
    from avmix import paths
    made: list[Path] = []
    real = paths._create_temp
    monkeypatch.setattr(paths, "_create_temp", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    return made


@pytest.mark.parametrize("cmd", ["mix", "concat", "overlay", "generate", "render"])
def test_failure_after_the_temp_output_is_written_cleans_it_up(run_cli, tmp_path, good, clip, monkeypatch, cmd):
    """The disk fills after the output's temporary file holds data: one line, exit 1, and neither the
    output nor its temporary file is left, for every command that writes one."""
    from avmix import mux
    from avmix.audio import compose

    made = _watch_temps(monkeypatch)
    seen = []

    def full_disk(*_):
        seen.extend(m for m in made if m.exists() and m.stat().st_size > 0)
        raise OSError(28, "No space left on device")

    if cmd in ("mix", "concat", "overlay"):
        real_write = compose.AudioWriter.write
        monkeypatch.setattr(compose.AudioWriter, "write", lambda self, b: (real_write(self, b), full_disk()))
    else:  # ffmpeg writes the whole muxed file, then the disk fills as it closes
        real_run = mux._run_with_progress
        monkeypatch.setattr(mux, "_run_with_progress", lambda *a: (real_run(*a), full_disk()))
    out = tmp_path / ("out.mp4" if cmd in ("generate", "render") else "out.wav")
    args = {"render": [clip, good], "generate": [good, "--backend", "procedural", "--size", "32x32", "--fps", "5"]}
    before = set(os.listdir(tmp_path))
    r = run_cli(cmd, *args.get(cmd, [good, good]), "-o", out)
    assert seen, "the failure came before the temporary output held data: nothing to check"
    # generate keeps its finished stages to resume, and says so on a line of its own
    r.err = "".join(ln for ln in r.err.splitlines(True) if not ln.startswith("avmix: work directory kept: "))
    check_failed(r, code=1, name=None, what="no space left on device", out_dir=tmp_path,
                 before=before | ({".out.mp4.avmix-work"} if cmd == "generate" else set()))
    assert not any(m.exists() for m in made), "a temporary file was left behind"
