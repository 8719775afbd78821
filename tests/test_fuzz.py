"""Fuzzing the input side: generated bad files and JSON fed through the CLI.

Every case must end in exit code != 0 with stderr exactly ``avmix: error: ...`` (plus optional
``avmix: hint: ...``), no traceback, no output file and no ``.part`` temp file left; or, where the
input is in fact valid (odd but legal names, a FLAC named .wav, NaN samples), in a correct output.
The generators are seeded and shared with ``benchmarks/fuzz.py``, which runs many more cases.
"""
from __future__ import annotations

import io
import json
import math
import os
import random
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avmix import timeline as tl_mod
from avmix.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000  # small real files: fast to make and to decode
SECONDS = 0.5


# ---------------------------------------------------------------------------------------- generators

@dataclass
class Case:
    """One input file to write: ``name`` (may hold odd characters), its bytes, and what must happen:
    "error" (a clean failure), "ok" (valid input: an output), or "either" (both are right, e.g. a
    truncated Ogg that cannot be told from a shorter one) -- but always clean."""

    name: str
    data: bytes
    expect: str
    why: str


def wav_bytes(frames: np.ndarray | None = None, *, rate: int = RATE, channels: int = 1, bits: int = 16,
              tag: int | None = None, data_size: int | None = None, riff_size: int | None = None,
              block_align: int | None = None, extra: bytes = b"") -> bytes:
    """A WAV file with every header field settable (to lie about the data)."""
    if frames is None:
        frames = np.zeros((int(RATE * SECONDS), max(channels, 1)), np.float32)
    if tag is None:
        tag = 3 if bits == 32 else 1
    if bits == 32:
        payload = np.asarray(frames, "<f4").tobytes()
    elif bits == 16:
        payload = (np.clip(np.asarray(frames), -1, 1) * 32767).astype("<i2").tobytes()
    else:
        payload = bytes(len(frames) * max(channels, 1) * max(bits // 8, 1))
    width = max(bits // 8, 1)
    ba = channels * width if block_align is None else block_align
    fmt = struct.pack("<HHIIHH", tag, channels, rate & 0xFFFFFFFF, (rate * ba) & 0xFFFFFFFF, ba & 0xFFFF, bits)
    size = len(payload) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra + b"data" + struct.pack("<I", size) + payload
    riff = len(body) if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", riff & 0xFFFFFFFF) + body


def tone(seconds: float = SECONDS, rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    x = (0.3 * np.sin(2 * np.pi * 441.0 * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def real_files(d: Path) -> dict[str, bytes]:
    """Bytes of one short valid file per format (made by avmix's own writer)."""
    from avmix.audio.writer import write_audio

    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for ext in (".wav", ".flac", ".mp3", ".ogg", ".m4a"):
        p = d / f"real{ext}"
        write_audio(p, tone(channels=2), RATE if ext != ".mp3" else 16000, bit_depth=16 if ext == ".wav" else None)
        out[ext] = p.read_bytes()
    return out


MAGICS = [b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS\x00\x02", b"ID3\x03\x00\x00\x00\x00\x00\x00",
          b"\xff\xfb\x90\x00", b"\x00\x00\x00\x20ftypM4A ", b"\x1aE\xdf\xa3", b"FORM\x00\x00\x00\x00AIFF",
          b"\x89PNG\r\n\x1a\n", b"{\"schema\": \"avmix.timeline/1\"}"]
EXTS = [".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus", ".aiff", ".mp4", ".bin", ""]


def random_cases(rng: random.Random, n: int) -> list[Case]:
    """Random bytes, often behind a real container's magic number so a decoder gets further."""
    cases = []
    for i in range(n):
        magic = rng.choice(MAGICS)
        body = rng.randbytes(rng.choice([1, 7, 64, 500, 3000, 20000]))
        cases.append(Case(f"rand{i}{rng.choice(EXTS)}", magic + body, "error", f"random bytes after {magic[:8]!r}"))
    return cases


def mutated_cases(rng: random.Random, real: dict[str, bytes], n: int) -> list[Case]:
    """Real files with a few random bytes overwritten: a decoder may reject them or play the damage."""
    cases = []
    for i in range(n):
        ext = rng.choice(sorted(real))
        data = bytearray(real[ext])
        for _ in range(rng.choice([1, 4, 32])):
            pos = rng.randrange(min(len(data), 200)) if rng.random() < 0.6 else rng.randrange(len(data))
            data[pos] = rng.randrange(256)
        cases.append(Case(f"mut{i}{ext}", bytes(data), "either", f"{ext} with bytes changed"))
    return cases


def truncated_cases(real: dict[str, bytes], fractions=(0.0001, 0.01, 0.1, 0.5, 0.9)) -> list[Case]:
    """Real files cut short. WAV and FLAC declare their length, so a cut is always detected; lossy
    streams without a length in the header may legitimately decode to a shorter file."""
    cases = []
    for ext, data in sorted(real.items()):
        for f in fractions:
            cut = max(1, int(len(data) * f))
            expect = "error" if ext in (".wav", ".flac") or cut < 64 else "either"
            cases.append(Case(f"cut{int(f * 10000)}{ext}", data[:cut], expect, f"{ext} cut at {cut} of {len(data)} bytes"))
        # less than one frame missing from a WAV is tolerated (writers miscount pad bytes)
        cases.append(Case(f"cut_last{ext}", data[:-1], "error" if ext == ".flac" else "either",
                          f"{ext} missing its last byte"))
    return cases


def wrong_extension_cases(real: dict[str, bytes]) -> list[Case]:
    png = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
           b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
           b"\x00\x00\x00\x00IEND\xaeB`\x82")
    return [
        Case("flac_named.wav", real[".flac"], "ok", "a FLAC named .wav is valid audio"),
        Case("ogg_named.mp3", real[".ogg"], "ok", "an Ogg named .mp3 is valid audio"),
        Case("wav_named.m4a", real[".wav"], "ok", "a WAV named .m4a is valid audio"),
        Case("mp3_named.flac", real[".mp3"], "ok", "an MP3 named .flac is valid audio"),
        Case("picture.wav", png, "error", "a PNG named .wav"),
        Case("notes.mp3", b"this is text, not audio\n" * 40, "error", "text named .mp3"),
        Case("timeline.wav", json.dumps({"schema": "avmix.timeline/1"}).encode() * 20, "error", "JSON named .wav"),
        Case("zeros.wav", bytes(4096), "error", "4 KiB of zero bytes"),
        Case("html.ogg", b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n" * 10, "error", "an HTML page"),
    ]


def header_cases() -> list[Case]:
    """WAV headers that lie: sizes, channel counts, rates and bit depths no decoder should trust."""
    x = tone()
    return [
        Case("huge_data.wav", wav_bytes(x, data_size=0xFFFFFFF0), "error", "data chunk size 0xFFFFFFF0"),
        Case("huge_riff.wav", wav_bytes(x, riff_size=0xFFFFFFF0, data_size=0x7FFFFFF0), "error", "huge sizes"),
        Case("zero_channels.wav", wav_bytes(x, channels=0, block_align=2), "error", "fmt with 0 channels"),
        Case("rate0.wav", wav_bytes(x, rate=0), "error", "sample rate 0"),
        Case("rate4e9.wav", wav_bytes(x, rate=4_000_000_000), "error", "sample rate 4e9"),
        Case("rate1.wav", wav_bytes(x, rate=1), "error", "sample rate 1 Hz"),
        Case("rate_max.wav", wav_bytes(x, rate=0xFFFFFFFF), "error", "sample rate 2^32-1"),
        Case("bits7.wav", wav_bytes(x, bits=7), "either", "7 bits per sample (legal: stored in 8)"),
        Case("bits0.wav", wav_bytes(x, bits=0, block_align=1), "error", "0 bits per sample"),
        Case("tag99.wav", wav_bytes(x, tag=0x99), "error", "unknown format tag"),
        Case("align0.wav", wav_bytes(x, block_align=0), "either", "block align 0 (recomputable)"),
        Case("chan_huge.wav", wav_bytes(x, channels=0xFFFF, block_align=2), "error", "65535 channels"),
        Case("no_data.wav", wav_bytes(x)[:36], "error", "fmt chunk and no data chunk"),
        Case("no_fmt.wav", b"RIFF\x10\x00\x00\x00WAVEdata\x04\x00\x00\x00\x00\x00\x00\x00", "error", "no fmt chunk"),
        Case("header_only.wav", b"RIFF\x04\x00\x00\x00WAVE", "error", "RIFF header only"),
        Case("bad_chunk.wav", wav_bytes(x, extra=b"LIST\xff\xff\xff\x7f"), "either", "a chunk claiming 2 GB"),
    ]


def signal_cases() -> list[Case]:
    """Legal files with hostile content: no samples, NaN/inf floats, extreme but valid rates."""
    x = tone()
    bad = x.copy()
    bad[::7] = np.nan
    bad[1::11] = np.inf
    bad[2::13] = -np.inf
    allbad = np.full_like(x, np.nan)
    huge = np.full_like(x, 1e30)
    return [
        Case("zero_frames.wav", wav_bytes(np.zeros((0, 1), np.float32)), "error", "a WAV with no samples"),
        Case("zero_frames_float.wav", wav_bytes(np.zeros((0, 2), np.float32), channels=2, bits=32), "error",
             "a float WAV with no samples"),
        Case("nan_inf.wav", wav_bytes(bad, bits=32), "ok", "NaN and +-inf samples (replaced by 0)"),
        Case("all_nan.wav", wav_bytes(allbad, bits=32), "ok", "only NaN samples"),
        Case("huge_floats.wav", wav_bytes(huge, bits=32), "ok", "samples of 1e30 (limited)"),
        Case("rate8k.wav", wav_bytes(tone(rate=8000), rate=8000), "ok", "8 kHz"),
        Case("rate192k.wav", wav_bytes(tone(0.05, rate=192000), rate=192000), "ok", "192 kHz"),
        Case("rate999.wav", wav_bytes(tone(rate=999), rate=999), "error", "999 Hz (below 1 kHz)"),
        Case("rate_1M.wav", wav_bytes(tone(0.01, rate=1_000_000), rate=1_000_000), "error", "1 MHz"),
        Case("one_frame.wav", wav_bytes(tone()[:1]), "ok", "a single sample"),
    ]


# names that are legal on Linux and must work everywhere, also when handed to ffmpeg
ODD_NAMES = ["-rf.wav", "--help.wav", "-i.wav", "-y.wav", "file:x.wav", "a:b.wav", "x;y.wav", "[in]v[out].wav",
             "amix=inputs=2.wav", "concat:a.wav|b.wav", "sp ace s.wav", "ünïcødé 音.wav", "emoji 🎵.wav",
             "quote'd\".wav", "back\\slash.wav", "%d %s.wav", "$(echo x).wav", "pipe:0.wav", "http:x.wav",
             ".hidden.wav", "tab\there.wav", os.fsdecode(b"not utf-8 \xff\xfe.wav")]


# ----------------------------------------------------------------------------------------- checking

def leftovers(d: Path, keep: set[str]) -> list[str]:
    return sorted(n for n in os.listdir(d) if n not in keep)


def check_clean_failure(r, out_dir: Path, keep: set[str], what: str) -> None:
    assert r.code != 0, f"{what}: exit 0 (stdout {r.out[:200]!r})"
    assert "Traceback" not in r.err, f"{what}: {r.err}"
    lines = r.err.rstrip("\n").split("\n")
    assert lines[0].startswith("avmix: error: "), f"{what}: {r.err!r}"
    assert all(ln.startswith("avmix: hint: ") for ln in lines[1:]) and len(lines) <= 2, f"{what}: {r.err!r}"
    assert "internal error" not in r.err, f"{what}: {r.err!r}"
    assert leftovers(out_dir, keep) == [], f"{what}: left {leftovers(out_dir, keep)}"


def check_ok(r, out: Path, what: str, *, max_abs: float = 1.0) -> None:
    assert r.code == 0, f"{what}: {r.err!r}"
    assert "Traceback" not in r.err
    x, _ = sf.read(os.fsencode(out), dtype="float32", always_2d=True)
    assert len(x) > 0 and np.isfinite(x).all() and np.abs(x).max() <= max_abs, what
    assert not [n for n in os.listdir(out.parent) if ".part" in n], f"{what}: temp file left"


def run_case(run_cli, case: Case, d: Path) -> str:
    """Write ``case`` into a fresh directory, mix it into a WAV there; return "ok" or "error"."""
    d.mkdir()
    src = d / case.name
    src.write_bytes(case.data)
    keep = set(os.listdir(d))
    out = d / "out.wav"
    r = run_cli("mix", "-o", out, "--quiet", "--", src)
    what = f"{case.name} ({case.why})"
    if case.expect == "ok" or (case.expect == "either" and r.code == 0):
        check_ok(r, out, what)
        return "ok"
    check_clean_failure(r, d, keep, what)
    assert case.name in r.err or src.name in r.err, f"{what}: the error does not name the file: {r.err!r}"
    return "error"


def run_cases(run_cli, cases: list[Case], tmp: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i, case in enumerate(cases):
        got = run_case(run_cli, case, tmp / f"c{i}")
        counts[got] = counts.get(got, 0) + 1
    return counts


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict[str, bytes]:
    return real_files(tmp_path_factory.mktemp("real"))


# ------------------------------------------------------------------------------------ audio inputs

def test_random_bytes(run_cli, tmp_path):
    counts = run_cases(run_cli, random_cases(random.Random(1), 40), tmp_path)
    assert counts == {"error": 40}


def test_mutated_real_files(run_cli, tmp_path, real):
    counts = run_cases(run_cli, mutated_cases(random.Random(2), real, 25), tmp_path)
    # each case is already checked (clean error or valid output); this seeded set must exercise both:
    # damaged files that still decode are mixed, ones that do not are refused, neither side collapses
    assert counts.get("ok", 0) >= 5 and counts.get("error", 0) >= 5, counts


def test_damaged_wav_samples_still_play_in_full(run_cli, tmp_path, real):
    """Bytes changed only in a PCM WAV's sample data are still valid audio: mixed, at full length."""
    rng = random.Random(12)
    data = bytearray(real[".wav"])
    frames = sf.info(io.BytesIO(bytes(data))).frames
    for _ in range(64):
        data[rng.randrange(44, len(data))] = rng.randrange(256)  # past the 44-byte header
    src, out = tmp_path / "damaged.wav", tmp_path / "out.wav"
    src.write_bytes(bytes(data))
    r = run_cli("mix", src, "-o", out, "--quiet", "--no-limit", "--bit-depth", "16")
    check_ok(r, out, "damaged samples")
    assert sf.info(str(out)).frames == frames


def test_truncated_real_files(run_cli, tmp_path, real):
    cases = truncated_cases(real)
    counts = run_cases(run_cli, cases, tmp_path)
    assert counts.get("error", 0) >= sum(c.expect == "error" for c in cases)


def test_wrong_extensions(run_cli, tmp_path, real):
    counts = run_cases(run_cli, wrong_extension_cases(real), tmp_path)
    assert counts == {"ok": 4, "error": 5}


def test_lying_wav_headers(run_cli, tmp_path):
    run_cases(run_cli, header_cases(), tmp_path)


def test_hostile_signals(run_cli, tmp_path):
    run_cases(run_cli, signal_cases(), tmp_path)


@pytest.mark.parametrize("rate,channels", [(768000, 1), (1000, 2), (48000, 64), (11025, 3)])
def test_extreme_but_legal_inputs_to_every_output_format(run_cli, tmp_path, rate, channels):
    """The limits of each output format (FLAC <= 655350 Hz and 8 channels, Vorbis <= 200 kHz, mp3 <=
    2 channels...) give a clean error or a resampled output, never an encoder's crash."""
    src = tmp_path / "in.wav"
    src.write_bytes(wav_bytes(tone(0.05, rate=rate, channels=channels), rate=rate, channels=channels))
    for ext in (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a"):
        out = tmp_path / f"out{ext}"
        r = run_cli("mix", src, "-o", out, "--quiet")
        if r.code == 0:
            # resampled where the format needs it: the file's rate is legal for the format (the input's
            # where it is), and the file holds the input's 50 ms, decoded by ffmpeg, not by avmix
            from avmix import ffmpeg
            stream = ffmpeg.probe(out).audio
            file_rate = stream.sample_rate
            top = {".flac": 655350, ".mp3": 48000, ".ogg": 200000, ".opus": 48000, ".m4a": 96000}.get(ext, rate)
            assert file_rate <= top, (ext, file_rate)
            if ext in (".wav", ".flac") and rate <= top:
                assert file_rate == rate, (ext, file_rate)  # lossless formats keep a rate they can hold
            raw = ffmpeg.run(["-i", ffmpeg.url(out), "-f", "f32le", "-"])
            seconds = len(raw) / 4 / stream.channels / file_rate
            # lossy codecs may add up to two frames of priming and padding (AAC: 2 x 1024 samples)
            assert 0.045 <= seconds <= 0.05 + 2048 / file_rate + 0.001, (ext, seconds)
            for p in (out, tmp_path / f"out{ext}.timeline.json"):
                p.unlink()
        else:
            check_clean_failure(r, tmp_path, {"in.wav"}, f"{rate} Hz {channels} ch -> {ext}")


def test_no_library_chatter_on_stderr(tmp_path, capfd):
    """C libraries write to file descriptor 2 behind Python's back (libsndfile's mpg123 fallback
    prints 'Note: Illegal Audio-MPEG-Header' for a broken FLAC named .mp3): stderr must still be
    exactly avmix's error line."""
    from avmix import cli

    rng = random.Random(167)
    for i in range(12):
        src = tmp_path / f"flac{i}.mp3"
        src.write_bytes(b"fLaC" + rng.randbytes(rng.choice([7, 64, 500])))
        capfd.readouterr()
        code = cli.run(["mix", str(src), "-o", str(tmp_path / "out.wav")])
        err = capfd.readouterr().err
        assert code == 1 and err.startswith("avmix: error: ") and err.count("\n") == 1, err


def test_nan_samples_are_silenced_not_spread(run_cli, tmp_path):
    x = tone()
    x[100:200] = np.nan
    src = tmp_path / "nan.wav"
    src.write_bytes(wav_bytes(x, bits=32))
    out = tmp_path / "out.wav"
    r = run_cli("mix", src, "-o", out, "--no-limit", "--bit-depth", "32", "--quiet")
    assert r.code == 0, r.err
    y, _ = sf.read(str(out), dtype="float32")
    assert np.all(y[100:200] == 0) and np.allclose(y[300:], x[300:, 0], atol=1e-6)


# -------------------------------------------------------------------------------------- file names

@pytest.mark.parametrize("ext", [".wav", ".flac", ".mp3"])
def test_odd_names_work_as_inputs_and_outputs(run_cli, tmp_path, ext):
    """Names that look like options, ffmpeg protocols or filter text are plain files, in and out
    (.mp3 goes through ffmpeg both ways)."""
    from avmix.audio.writer import write_audio

    for i, name in enumerate(ODD_NAMES):
        d = tmp_path / f"n{i}"
        d.mkdir()
        src = d / (name[:-4] + ext)
        write_audio(src, tone(0.2, channels=1), 16000)
        out = d / ("out " + name[:-4] + ext)
        r = run_cli("mix", "-o", out, "--quiet", "--", src)
        assert r.code == 0, (name, r.err)
        assert sorted(os.listdir(d)) == sorted([src.name, out.name, out.name + ".timeline.json"]), name
        y, sr = sf.read(os.fsencode(out)) if ext == ".wav" else (None, None)
        if ext == ".wav":
            assert sr == 16000 and len(y) == 3200, name
        assert json.loads((d / (out.name + ".timeline.json")).read_text())["sources"][0]["path"].endswith(src.name)


def test_longest_names(run_cli, tmp_path):
    """A 255-byte input name works; an output name with no room left for OUT.timeline.json is refused
    before any work (it used to write the output, then fail on the sidecar and exit 1)."""
    src = tmp_path / ("i" * 251 + ".wav")
    src.write_bytes(wav_bytes(tone()))
    r = run_cli("mix", src, "-o", tmp_path / ("o" * 251 + ".wav"), "--quiet")
    check_clean_failure(r, tmp_path, {src.name}, "255-byte output name")
    assert "too long" in r.err
    ok = tmp_path / ("o" * 235 + ".wav")
    r = run_cli("mix", src, "-o", ok, "--quiet")
    assert r.code == 0 and ok.is_file() and Path(f"{ok}.timeline.json").is_file(), r.err


def test_timeline_option_never_clobbers(run_cli, tmp_path):
    """--timeline PATH is an output too: an existing file (here another audio file) is kept without
    -y, and the output itself or an input cannot be the timeline."""
    a, other = tmp_path / "a.wav", tmp_path / "other.wav"
    a.write_bytes(wav_bytes(tone()))
    other.write_bytes(wav_bytes(tone() * 0.5))
    before = other.read_bytes()
    for timeline in (other, a, tmp_path / "out.wav"):
        r = run_cli("mix", a, "-o", tmp_path / "out.wav", "--timeline", timeline, "--quiet")
        check_clean_failure(r, tmp_path, {"a.wav", "other.wav"}, f"--timeline {timeline.name}")
    assert other.read_bytes() == before
    r = run_cli("mix", a, "-o", tmp_path / "out.wav", "--timeline", other, "--quiet", "-y")
    assert r.code == 0 and json.loads(other.read_text())["schema"] == "avmix.timeline/1"


def test_missing_odd_names_give_one_line(run_cli, tmp_path):
    """A name with a newline or escape sequence must not break the one-line error."""
    for name in ["new\nline.wav", "esc\x1b[31mred.wav", "cr\rret.wav", "-rf.wav", "ünï.wav"]:
        r = run_cli("mix", "-o", tmp_path / "out.wav", "--", tmp_path / name)
        check_clean_failure(r, tmp_path, set(), repr(name))
        assert "no such file" in r.err


def test_option_like_name_without_double_dash_is_a_usage_error(run_cli, tmp_path):
    """Without '--' a name such as -rf.wav is parsed as options: a usage error, nothing run."""
    (tmp_path / "-rf.wav").write_bytes(wav_bytes(tone()))
    r = run_cli("mix", "-rf.wav", "-o", tmp_path / "out.wav")
    check_clean_failure(r, tmp_path, {"-rf.wav"}, "-rf.wav")
    assert r.code == 2


def test_bad_input_to_generate_leaves_nothing(run_cli, tmp_path):
    """generate with one undecodable input: only the error line(s) on stderr, and nothing left beside
    the output (no hidden work directory: no stage ever ran, there is nothing to resume)."""
    rng = random.Random(9)
    good = tmp_path / "good.wav"
    good.write_bytes(wav_bytes(tone()))
    for case in random_cases(rng, 2) + header_cases()[:2]:
        bad = tmp_path / case.name
        bad.write_bytes(case.data)
        r = run_cli("generate", good, bad, "-o", tmp_path / "out.mp4", "--backend", "procedural",
                    "--size", "32x32")
        check_clean_failure(r, tmp_path, {"good.wav", case.name}, case.why)
        bad.unlink()


def test_non_utf8_names_through_generate(run_cli, tmp_path):
    """A file name that is not UTF-8 (legal bytes on Linux) must reach ffmpeg as the same bytes; the
    command lines built with ffmpeg-python must not choke on it (it hashes names as UTF-8)."""
    d = tmp_path / os.fsdecode(b"dir \xff")
    d.mkdir()
    a = d / os.fsdecode(b"in \xfe.wav")
    a.write_bytes(wav_bytes(tone(1.0)))
    out = d / os.fsdecode(b"out \xfd.mp4")
    r = run_cli("generate", a, "-o", out, "--backend", "procedural", "--size", "32x32", "--fps", "10", "--quiet")
    assert r.code == 0, r.err
    assert sorted(os.listdir(d)) == sorted([a.name, out.name])


def test_odd_names_through_generate(run_cli, tmp_path):
    """The whole pipeline (compose, ffmpeg video writer, mux, preview) with hostile names."""
    d = tmp_path / "dir [a];b:c"
    d.mkdir()
    a, b = d / "-i.wav", d / "concat:x|y [0:a].wav"
    a.write_bytes(wav_bytes(tone(1.0)))
    b.write_bytes(wav_bytes(tone(1.0) * 0.5))
    out, png = d / "-y out;[v].mp4", d / "--preview.png"
    r = run_cli("generate", "-o", out, "--backend", "procedural", "--size", "64x48", "--fps", "10",
                "--preview", png, "--quiet", "--", a, b)
    assert r.code == 0, r.err
    assert sorted(os.listdir(d)) == sorted([a.name, b.name, out.name, png.name])
    from avmix import ffmpeg
    info = ffmpeg.probe(out)
    assert info.video is not None and info.audio is not None and abs(info.duration - 1.0) < 0.15


def test_render_and_score_with_hostile_inputs(run_cli, tmp_path):
    """avmix render VIDEO AUDIO and avmix score VIDEO [--audio A] where a file is random, truncated or
    of the wrong kind."""
    from avmix.video.writer import VideoWriter

    video = tmp_path / "v.mp4"
    with VideoWriter(video, width=32, height=32, fps=10) as w:
        for i in range(10):
            w.write(np.full((32, 32, 3), i * 20, np.uint8))
    audio = tmp_path / "a.wav"
    audio.write_bytes(wav_bytes(tone(1.0)))
    vbytes, rng = video.read_bytes(), random.Random(10)
    bad = {"random.mp4": rng.randbytes(5000), "cut.mp4": vbytes[:len(vbytes) // 2], "head.mp4": vbytes[:40],
           "audio_only.mp4": audio.read_bytes(), "text.mkv": b"not a video\n" * 100}
    d = tmp_path / "cases"
    d.mkdir()
    for name, data in bad.items():
        (d / name).write_bytes(data)
    keep = set(os.listdir(d))
    def check_score(r, what: str, frames: range) -> int:
        """A success must be a real score: frames decoded from the video, numbers in range."""
        if r.code != 0:
            check_clean_failure(r, d, keep, what)
            return 0
        res = json.loads(r.out)
        assert res["frames"] in frames and res["fps"] == 10.0, (what, res)
        assert 0.0 <= res["av_align"] <= 1.0 and res["matches"] <= min(res["audio_peaks"], res["video_peaks"]), res
        return 1

    ok = 0
    for name in bad:
        ok += check_score(run_cli("score", d / name, "--json"), f"score {name}", range(1, 11))
        ok += check_score(run_cli("score", video, "--audio", d / name, "--json"), f"score --audio {name}",
                          range(10, 11))
        for args in ([d / name, audio], [video, d / name]):
            r = run_cli("render", *args, "-o", d / "out.mp4", "--quiet")
            if r.code == 0:  # e.g. a truncated mp4 whose remaining frames still play
                assert ffmpeg_ok(d / "out.mp4"), name
                (d / "out.mp4").unlink()
                continue
            check_clean_failure(r, d, keep, f"render {args}")
    assert ok >= 1  # a WAV named .mp4 is good audio: at least that success is checked


def ffmpeg_ok(path: Path) -> bool:
    from avmix import ffmpeg
    info = ffmpeg.probe(path)
    return info.video is not None and info.audio is not None


# ---------------------------------------------------------------------------------------- options

ODD_NUMBERS = ["nan", "inf", "-inf", "-0", "1e309", "-1e309", "99999999999999999999", "-1", "0", "", "x", "1,5",
               "0x10", "1e-320"]
OPTIONS = {
    "mix": ["--gain", "--target", "--ceiling", "--fade-in", "--fade-out", "--sample-rate", "--channels",
            "--bit-depth"],
    "concat": ["--crossfade", "--gap"],
    "overlay": ["--at", "--duck"],
    "generate": ["--fps", "--size", "--seed", "--crf", "--steps", "--guidance", "--at", "--gap"],
}


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_odd_numbers_for_every_option(run_cli, tmp_path, command):
    """NaN, infinities, huge, negative, empty and non-numbers: a usage error or a valid run, never a
    crash deep inside (numpy seeds, ffmpeg arguments, soxr rates)."""
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(wav_bytes(tone(0.3)))
    b.write_bytes(wav_bytes(tone(0.2)))
    out = tmp_path / ("out.mp4" if command == "generate" else "out.wav")
    extra = {"generate": ["--backend", "procedural", "--size", "32x32", "--fps", "5"],
             "mix": ["--normalize", "lufs"]}.get(command, [])
    problems = []
    for option in OPTIONS[command]:
        for value in ODD_NUMBERS:
            args = [command, a, b, "-o", out, "--quiet", "-y", *extra, option, value]
            if option == "--size":
                value = f"{value}x{value}"
                args[-1] = value
            before = os.stat(out).st_ino if out.exists() else None
            r = run_cli(*args)
            what = f"{command} {option} {value!r}"
            if r.code == 0:
                # -y replaced the output with a new file (renamed into place), and it is a valid one
                assert out.is_file() and os.stat(out).st_ino != before, what
                assert ffmpeg_ok(out) if command == "generate" else len(sf.read(out)[0]) > 0, what
                continue
            try:
                check_clean_failure(r, tmp_path, {"a.wav", "b.wav", ".out.mp4.avmix-work"} | (
                    {out.name, out.name + ".timeline.json"} if out.exists() else set()), what)
            except AssertionError as e:
                problems.append(str(e).split("\n")[0])
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------- JSON readers

def valid_timeline(audio: str = "a.wav") -> dict:
    return {"schema": "avmix.timeline/1", "mode": "mix", "sample_rate": RATE, "channels": 1, "frames": 8000,
            "sources": [{"index": 0, "path": audio, "label": "a", "start_sample": 0, "end_sample": 8000,
                         "source_frames": 8000, "gain_db": 0.0, "duck": None}],
            "master_gain_db": 0.0, "limit_dbtp": -1.0}


def valid_analysis() -> dict:
    track = {"label": "a", "envelope": [0.5] * 5, "onsets": [0.1], "beats": [], "tempo": None,
             "start": 0.0, "end": 0.5, "index": 0}
    return {"schema": "avmix.analysis/1", "fps": 10.0, "frames": 5, "duration": 0.5, "tracks": [track],
            "mix": dict(track, index=-1), "mode": "mix"}


def random_json(rng: random.Random, depth: int = 0):
    kinds = ["int", "float", "str", "bool", "null", "list", "dict", "special"]
    k = rng.choice(kinds if depth < 4 else kinds[:5])
    if k == "int":
        return rng.choice([0, -1, 1, 2, 7, 48000, -2**63, 2**64, 10**30])
    if k == "float":
        return rng.choice([0.0, -0.5, 1e308, -1e308, 1e-320, 3.7])
    if k == "str":
        return rng.choice(["", "x", "-i", "../../etc/passwd", "48000", "\u0000", "avmix.timeline/2", "é" * 50])
    if k == "bool":
        return rng.random() < 0.5
    if k == "null":
        return None
    if k == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    if k == "dict":
        return {rng.choice(["a", "sources", "schema", "duck", "index"]): random_json(rng, depth + 1)
                for _ in range(rng.randrange(4))}
    return rng.choice([float("nan"), float("inf"), -float("inf")])  # json.dumps writes NaN/Infinity


def _paths(obj, prefix=()):
    """Every (path) into nested dicts/lists."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def mutate(rng: random.Random, doc):
    """A copy of ``doc`` with one value replaced, removed, or one key added."""
    doc = json.loads(json.dumps(doc))
    spots = [p for p in _paths(doc) if p]
    path = rng.choice(spots)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    op = rng.random()
    if op < 0.7:
        parent[path[-1]] = random_json(rng)
    elif op < 0.85:
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[rng.choice(["extra", "schema", "sources"])] = random_json(rng)
    return doc


def json_docs(rng: random.Random, valid: dict, n: int) -> list[str]:
    """Texts of JSON files: mutations of a valid one, random values, other schema versions, deep
    nesting, broken syntax."""
    docs = [json.dumps(mutate(rng, valid)) for _ in range(n)]
    docs += [json.dumps(random_json(rng)) for _ in range(n // 4)]
    schema = valid["schema"].rsplit("/", 1)[0]
    docs += [json.dumps(dict(valid, schema=s)) for s in
             (f"{schema}/2", f"{schema}/0", schema, 1, None, "avmix.other/1", f"{schema}/1.1")]
    docs += ["[" * 100000 + "]" * 100000, '{"a":' * 50000 + "1" + "}" * 50000, json.dumps(valid)[:-7], "", "\ufeff{}",
             "\xff\xfe{}", "NaN", json.dumps(valid).replace("48000", "4.8e4")]
    return docs


@pytest.mark.parametrize("kind", ["timeline", "analysis"])
def test_json_readers_raise_only_input_errors(tmp_path, kind):
    """Timeline.load / Analysis.load on fuzzed files: a valid object or InputError, nothing else."""
    rng = random.Random(3)
    valid = valid_timeline() if kind == "timeline" else valid_analysis()
    cls = tl_mod.Timeline if kind == "timeline" else tl_mod.Analysis
    p = tmp_path / f"{kind}.json"
    outcome = {"ok": 0, "error": 0}
    for text in json_docs(rng, valid, 300):
        p.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
        try:
            obj = cls.load(p)
        except InputError as e:
            assert "\n" not in e.message and str(p) in e.message, e.message
            outcome["error"] += 1
            continue
        outcome["ok"] += 1
        if kind == "timeline":  # what loads must be usable: numbers of the right type and range
            assert isinstance(obj.sample_rate, int) and not isinstance(obj.sample_rate, bool)
            for s in obj.sources:
                assert all(isinstance(v, int) and not isinstance(v, bool)
                           for v in (s.start_sample, s.end_sample, s.source_frames, s.offset_sample))
                assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in (s.gain_db, s.fade_in, s.fade_out))
                assert isinstance(s.path, str)
        else:
            assert isinstance(obj.fps, (int, float)) and obj.fps > 0 and isinstance(obj.frames, int)
            for t in obj.tracks + [obj.mix]:
                assert isinstance(t.envelope, list) and all(isinstance(v, (int, float)) and math.isfinite(v)
                                                            for v in t.envelope)
                assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in t.onsets + t.beats)
    assert outcome["error"] > 100 and outcome["ok"] > 5, outcome


def test_fuzzed_timeline_sidecar_through_generate(run_cli, tmp_path):
    """generate of one composed file reads its .timeline.json: a broken sidecar is a clean error."""
    rng = random.Random(4)
    for i, text in enumerate(json_docs(rng, valid_timeline("a.wav"), 8)[:12]):
        d = tmp_path / f"t{i}"
        d.mkdir()
        (d / "a.wav").write_bytes(wav_bytes(tone()))
        (d / "a.wav.timeline.json").write_text(text)
        keep = set(os.listdir(d))
        r = run_cli("generate", d / "a.wav", "-o", d / "out.mp4", "--backend", "procedural", "--size", "32x32",
                    "--fps", "5", "--quiet", "--workdir", d / "w")
        if r.code == 0:
            assert (d / "out.mp4").is_file()
            continue
        check_clean_failure(r, d, keep | {"w"}, f"timeline {text[:80]!r}")


def test_fuzzed_work_directory_through_score(run_cli, tmp_path):
    """score --workdir reads analysis.json, manifest.json and timeline.json written by someone else."""
    from avmix.video.writer import VideoWriter

    video = tmp_path / "v.mp4"
    with VideoWriter(video, width=32, height=32, fps=10) as w:
        for i in range(5):
            w.write(np.full((32, 32, 3), i * 40, np.uint8))
    audio = tmp_path / "a.wav"  # real audio, so every case gets as far as the work directory's files
    audio.write_bytes(wav_bytes(tone()))
    rng = random.Random(5)
    docs = json_docs(rng, valid_analysis(), 8)
    reached = 0
    for i, text in enumerate(docs[:8] + docs[-12:]):
        wd = tmp_path / f"w{i}"
        wd.mkdir()
        (wd / "analysis.json").write_text(text)
        (wd / "manifest.json").write_text(json.dumps(mutate(rng, {"schema": "avmix.manifest/1", "video": {
            "layout": [{"index": 0, "label": "a", "box": [0, 0, 16, 16]}]}})))
        (wd / "timeline.json").write_text(json.dumps(mutate(rng, valid_timeline(str(audio)))))
        r = run_cli("score", video, "--audio", audio, "--workdir", wd, "--json")
        if r.code != 0:
            check_clean_failure(r, wd, {"analysis.json", "manifest.json", "timeline.json"}, f"analysis {text[:80]!r}")
            continue
        res = json.loads(r.out)
        assert 0.0 <= res["av_align"] <= 1.0 and res["frames"] == 5, res
        for row in res["per_track"] or []:
            assert 0.0 <= row["av_align"] <= 1.0 and row["index"] == 0, row
        reached += res["per_track"] is not None
    assert reached >= 1, f"only {reached} fuzzed work directories reached per-track scoring"


def test_fuzzed_manifest_in_work_directory(run_cli, tmp_path):
    """A work directory whose manifest.json was damaged (crash, disk full, hand edit): the rerun
    either redoes the stages and succeeds, or stops with a clean error -- never reuses garbage."""
    a = tmp_path / "a.wav"
    a.write_bytes(wav_bytes(tone(1.0)))
    work, out = tmp_path / "work", tmp_path / "out.mp4"
    args = ["generate", a, "-o", out, "--backend", "procedural", "--size", "32x32", "--fps", "10", "--quiet",
            "--workdir", work, "-y", "--json"]
    r = run_cli(*args)
    assert r.code == 0, r.err
    good = json.loads((work / "manifest.json").read_text())
    rng = random.Random(8)
    texts = [json.dumps(mutate(rng, good)) for _ in range(5)] + ["", "{", "[]", json.dumps(dict(good, stages=[]))]
    for text in texts:
        (work / "manifest.json").write_text(text)
        out.unlink()
        r = run_cli(*args)
        if r.code != 0:
            check_clean_failure(r, tmp_path, {"a.wav", "work"}, f"manifest {text[:80]!r}")
            continue
        info = json.loads(r.out)
        assert abs(info["duration"] - 1.0) < 1e-6 and out.is_file(), text[:200]


def jobs_texts(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """(suffix, text) of jobs files whose jobs can never run: bad syntax, bad types, bad names."""
    good = {"inputs": ["missing.wav"], "output": "o.mp4", "size": "32x32", "backend": "procedural"}
    out = []
    for _ in range(n):
        job = mutate(rng, good)
        if isinstance(job, dict) and isinstance(job.get("inputs"), list):
            job["inputs"] = [f"missing{i}.wav" for i in range(len(job["inputs"]))]  # never runs for real
        out.append((".jsonl", json.dumps(job)))
    out += [(".jsonl", json.dumps(random_json(rng))) for _ in range(n // 3)]
    out += [(".jsonl", "{"), (".jsonl", "[" * 100000), (".jsonl", ""), (".jsonl", "\n\n# only a comment\n"),
            (".csv", "inputs,output\n\"unclosed,o.mp4\n"), (".csv", "inputs,output\na.wav,o.mp4,extra,cells\n"),
            (".csv", "\x00\x01\x02"), (".csv", "inputs\n" + "a.wav\n"), (".csv", "inputs,output,size\nx.wav,o.mp4,banana\n"),
            (".jsonl", json.dumps(dict(good, output="../escape.mp4"))),
            (".jsonl", json.dumps(dict(good, output="/etc/passwd"))),
            (".jsonl", json.dumps(dict(good, fps="fast"))), (".jsonl", json.dumps(dict(good, seed=1e400)))]
    return out


def test_fuzzed_jobs_files(run_cli, tmp_path):
    """batch on broken jobs files: a clean error before any job runs, or every job failing cleanly
    (their inputs do not exist) with exit code 1 and a batch.json."""
    rng = random.Random(6)
    ran = 0
    for i, (suffix, text) in enumerate(jobs_texts(rng, 30)):
        d = tmp_path / f"j{i}"
        d.mkdir()
        jobs = d / f"jobs{suffix}"
        jobs.write_text(text)
        out = d / "out"
        r = run_cli("batch", jobs, "-o", out, "--workers", "1", "--quiet", "--json")
        assert r.code != 0 and "Traceback" not in r.err, (text[:200], r.err)
        if not r.out.strip():  # refused before any job ran: no summary
            check_clean_failure(r, d, {jobs.name}, f"jobs {text[:80]!r}")
            continue
        ran += 1
        summary = json.loads(r.out)
        assert summary["failed"] >= 1 and summary["ok"] == 0, text
        assert sorted(os.listdir(out)) == ["batch.json"], (text, os.listdir(out))
    assert ran >= 1


# ---------------------------------------------------------------------------- real processes, timeouts

@pytest.mark.parametrize("ext", [".wav", ".flac", ".mp3"])
def test_disk_full_while_writing(tmp_path, ext):
    """A write that fails half-way (here RLIMIT_FSIZE, as a full disk or a quota would): one error
    line naming the output (not a temp file), exit 1, nothing left, the ffmpeg encoder stopped."""
    import resource

    src = tmp_path / "in.wav"
    src.write_bytes(wav_bytes(tone(20.0, rate=48000, channels=2), rate=48000, channels=2))
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    proc = subprocess.run([sys.executable, "-m", "avmix", "mix", src, "-o", out_dir / f"out{ext}", "--quiet"],
                          preexec_fn=limit, capture_output=True, text=True, timeout=60, cwd=ROOT)
    lines = proc.stderr.rstrip("\n").split("\n")
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("avmix: error: "), proc.stderr
    assert f"out{ext}" in lines[0] and ".part" not in lines[0], proc.stderr
    assert os.listdir(out_dir) == []


def test_subprocess_bad_inputs_never_hang(tmp_path):
    """`python -m avmix` on hostile files and devices: a clean error within the timeout, every time."""
    rng = random.Random(7)
    files = []
    for case in random_cases(rng, 3) + header_cases()[:2]:
        p = tmp_path / case.name
        p.write_bytes(case.data)
        files.append(str(p))
    files += ["/dev/zero", "/dev/null", str(tmp_path), "-"]
    for f in files:
        out = tmp_path / "out.wav"
        with open("/dev/zero", "rb") as zero:  # for '-': endless standard input must not be copied
            proc = subprocess.run([sys.executable, "-m", "avmix", "mix", "-o", str(out), "--", f], stdin=zero,
                                  capture_output=True, text=True, timeout=60, cwd=ROOT)
        lines = proc.stderr.rstrip("\n").split("\n")
        assert proc.returncode == 1, (f, proc.stderr)
        assert lines[0].startswith("avmix: error: ") and len(lines) <= 2 and "Traceback" not in proc.stderr, (f, proc.stderr)
        assert not out.exists() and not [n for n in os.listdir(tmp_path) if ".part" in n]
