"""Reading any audio ffmpeg can decode as float32 blocks, and writing audio by the output's extension.

Reading: WAV/AIFF/FLAC/Ogg-Vorbis (and 8-bit / ADPCM WAV) go straight through libsndfile (soundfile),
block by block. Everything else (mp3, opus, m4a/aac, the audio stream of mp4/mkv/webm/mov, ...) is
decoded once by ffmpeg to a raw float32 file in the system temp directory, which gives the exact frame
count and cheap random access while memory stays flat in the file's length. The temp file is deleted
when the AudioFile is garbage-collected or at exit.

Blocks are float32 arrays of shape (frames, channels). Resampling is soxr (HQ) streaming; a block
request ``start``/``frames`` is in frames at the *target* rate and is sample-exact: the resampler is
started on a grid point where input and output samples coincide, a pre-roll before ``start`` is
discarded, so any block equals the same span of a read from the start (to float rounding).

``-`` (stdin) and pipes such as ``<(cmd)`` are copied to a temp file first (deleted at exit).

Bad files raise InputError naming the file: missing, directory, unreadable, empty, not audio, no
audio stream, 0 samples; truncated (a WAV data chunk or an mp3/m4a duration longer than what is
there, a FLAC whose last frame does not decode) and corrupt (ffmpeg reports decoding errors). A
truncated Ogg cannot be told from a shorter one and is read as it is.

Non-finite samples (NaN, +-inf, possible only in float files) are replaced by 0: one bad sample would
otherwise poison every loudness and peak measurement of the mix.

Writing: wav (PCM 16/24 or 32-bit float; our own writer, RF64 past 4 GiB), flac (16/24) via
soundfile; mp3, ogg (vorbis), opus, m4a (aac) by piping float32 to ffmpeg (at a rate the codec takes:
opus is always 48 kHz). Integer formats are rounded and clipped at full scale (never wrapped). Files
are written to a temp file beside the target and renamed into place only on success. ``-`` writes a
WAV stream to standard output (exact sizes when ``frames`` is known, else 0xFFFFFFFF).
"""
from __future__ import annotations

import atexit
import contextlib
import math
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import soundfile as sf
import soxr

from avmix import ffmpeg, paths
from avmix.errors import FFmpegError, InputError, OutputError, UsageError

BLOCK = 65536  # frames per block
RESAMPLE_QUALITY = "HQ"
PREROLL = 16384  # output frames decoded and discarded before a mid-file start (>> soxr filter length)
MIN_RATE, MAX_RATE = 1000, 768000
MAX_CHANNELS = 64
COPY_CHUNK = 1 << 20  # bytes
DECODE_TIMEOUT, DECODE_SECONDS_PER_MB = 120.0, 10.0  # ffmpeg decoding (to a temp file) is ~100x faster

OUTPUT_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
DEFAULT_BIT_DEPTH = 24
# formats libsndfile reads sample-exactly; everything else is decoded by ffmpeg
_SNDFILE_FORMATS = {"WAV", "WAVEX", "W64", "RF64", "AIFF", "AIFC", "FLAC", "CAF", "OGG"}
_SNDFILE_SKIP_SUBTYPES = {"OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III"}
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}
# lossy encoders: extension -> ffmpeg codec args; the rates each accepts (None = any) and channel limit
_LOSSY = {
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "192k"],
    ".ogg": ["-c:a", "libvorbis", "-q:a", "6"],
    ".opus": ["-c:a", "libopus", "-b:a", "160k"],
    ".m4a": ["-c:a", "aac", "-b:a", "192k"],
}
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_LOSSY_RATES = {".mp3": _MP3_RATES, ".opus": (48000,), ".m4a": _MP3_RATES + (64000, 88200, 96000), ".ogg": None}
_LOSSY_MAX_CHANNELS = {".mp3": 2, ".opus": 8, ".m4a": 8, ".ogg": 8}


_VORBIS_MAX_RATE = 200000  # libvorbis refuses higher rates
FLAC_MAX_RATE, FLAC_MAX_CHANNELS = 655350, 8


def _encoder_rate(ext: str, rate: int) -> int:
    """The rate the encoder will write: ``rate`` if it takes it, else the next higher one it takes."""
    rates = _LOSSY_RATES[ext]
    if rates is None:
        return min(rate, _VORBIS_MAX_RATE)
    if rate in rates:
        return rate
    return next((r for r in rates if r >= rate), rates[-1])


_temp_files: set[str] = set()


def _remove(path: str) -> None:
    _temp_files.discard(path)
    try:
        os.unlink(path)
    except OSError:
        pass


@atexit.register
def _cleanup() -> None:
    for p in list(_temp_files):
        _remove(p)


def _temp_file(prefix: str, suffix: str = "") -> str:
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix)
    os.close(fd)
    _temp_files.add(name)
    return name


def _round_frames(frames: int, src: int, dst: int) -> int:
    """round(frames * dst / src) in exact integer arithmetic (halves round up)."""
    return (2 * frames * dst + src) // (2 * src)


def _check_rate_channels(sample_rate: int, channels: int) -> None:
    if not isinstance(sample_rate, (int, np.integer)) or not MIN_RATE <= sample_rate <= MAX_RATE:
        raise UsageError(f"sample rate {sample_rate!r} Hz is out of range ({MIN_RATE}..{MAX_RATE})")
    if not isinstance(channels, (int, np.integer)) or not 1 <= channels <= MAX_CHANNELS:
        raise UsageError(f"channel count {channels!r} is out of range (1..{MAX_CHANNELS})")


def reconcile_channels(block: np.ndarray, channels: int) -> np.ndarray:
    """(n, c) -> (n, channels): mono duplicates, to-mono averages, otherwise first channels / zero-padded."""
    have = block.shape[1]
    if have == channels:
        return block
    if have == 1:
        return np.repeat(block, channels, axis=1)
    if channels == 1:
        return block.mean(axis=1, keepdims=True, dtype=np.float32)
    if have > channels:
        return np.ascontiguousarray(block[:, :channels])
    out = np.zeros((block.shape[0], channels), dtype=np.float32)
    out[:, :have] = block
    return out


def _finite(block: np.ndarray) -> np.ndarray:
    if not np.isfinite(block).all():
        block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
    return block


# ------------------------------------------------------------------------------------------ readers

class _SndReader:
    """Native-rate blocks from a libsndfile-readable file."""

    # libsndfile's own int->float conversion is about 3x slower than reading ints and scaling in numpy;
    # the result is the same (x / 2^15 for 16-bit, (x << 8) / 2^31 for 24-bit)
    _INT_READS = {"PCM_16": ("int16", 1 / 32768), "PCM_24": ("int32", 1 / 2147483648)}

    def __init__(self, path: str, floats: bool):
        self._f = sf.SoundFile(os.fsencode(path))  # bytes: soundfile cannot encode non-UTF-8 names
        self._floats = floats
        self._int = self._INT_READS.get(self._f.subtype) if self._f.format in ("WAV", "WAVEX", "AIFF") else None

    def seek(self, frame: int) -> None:
        self._f.seek(frame)

    def read(self, n: int) -> np.ndarray:
        if self._int is not None:
            dtype, scale = self._int
            raw = self._f.read(n, dtype=dtype, always_2d=True)
            out = np.empty(raw.shape, np.float32)
            np.multiply(raw, np.float32(scale), out=out)
            return out
        b = self._f.read(n, dtype="float32", always_2d=True)
        return _finite(b) if self._floats else b

    def close(self) -> None:
        self._f.close()


class _RawReader:
    """Native-rate blocks from the raw float32 file ffmpeg decoded to."""

    def __init__(self, path: str, channels: int):
        self._f = open(path, "rb")
        self._c = channels

    def seek(self, frame: int) -> None:
        self._f.seek(frame * 4 * self._c)

    def read(self, n: int) -> np.ndarray:
        b = np.fromfile(self._f, dtype="<f4", count=n * self._c)
        return _finite(b.reshape(-1, self._c))

    def close(self) -> None:
        self._f.close()


class AudioFile:
    """An opened audio input. ``frames`` is exact, at the file's own ``sample_rate``.

    Use :func:`open_audio` to create one. ``path`` is the name as given (``-`` for stdin);
    ``local_path`` is the file actually read (a temp copy for stdin).
    """

    def __init__(self, path: str, *, local_path: str, sample_rate: int, channels: int, frames: int,
                 format: str, subtype: str = "", raw_path: str | None = None, floats: bool = False):
        self.path = path
        self.local_path = local_path
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.frames = int(frames)
        self.format = format
        self.subtype = subtype
        self._raw = raw_path
        self._floats = floats
        if raw_path is not None:
            weakref.finalize(self, _remove, raw_path)

    def __repr__(self) -> str:
        return (f"AudioFile({self.path!r}, {self.format}, {self.sample_rate} Hz, {self.channels} ch, "
                f"{self.frames} frames)")

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    def target_frames(self, sample_rate: int) -> int:
        """Exact length at another rate: round(frames * sample_rate / self.sample_rate)."""
        if sample_rate == self.sample_rate:
            return self.frames
        return _round_frames(self.frames, self.sample_rate, int(sample_rate))

    def _reader(self):
        if self._raw is not None:
            return _RawReader(self._raw, self.channels)
        return _SndReader(self.local_path, self._floats)

    def _native(self, start: int, stop: int, blocksize: int) -> Iterator[np.ndarray]:
        """Native-rate frames [start, min(stop, self.frames)) in blocks."""
        stop = min(stop, self.frames)
        if start >= stop:
            return
        r = self._reader()
        try:
            r.seek(start)
            pos = start
            while pos < stop:
                b = r.read(min(blocksize, stop - pos))
                if len(b) == 0:  # the file ended early (truncated after opening): pad, stay exact
                    return
                pos += len(b)
                yield b
        finally:
            r.close()

    def _resampled(self, rate: int, channels: int, start: int, stop: int, blocksize: int) -> Iterator[np.ndarray]:
        """Frames [start, stop) at ``rate`` (stop <= target_frames(rate)), channels already reconciled."""
        src = self.sample_rate
        g = math.gcd(src, rate)
        in_step, out_step = src // g, rate // g
        k = max(0, start - PREROLL) // out_step  # start on a grid point where in and out samples coincide
        in_pos, out_pos = k * in_step, k * out_step
        early = channels < self.channels  # downmix before resampling (less work), upmix after
        rs = soxr.ResampleStream(src, rate, channels if early else self.channels, dtype="float32",
                                 quality=RESAMPLE_QUALITY)
        need_in = max(blocksize, 8192)
        it = self._native(in_pos, self.frames, need_in)
        done = False
        while out_pos < stop and not done:
            b = next(it, None)
            if b is None:
                done = True
                b = np.zeros((0, channels if early else self.channels), dtype=np.float32)
            elif early:
                b = reconcile_channels(b, channels)
            y = rs.resample_chunk(b, last=done)
            if y.ndim == 1:
                y = y[:, None]
            lo, hi = max(start - out_pos, 0), min(stop - out_pos, len(y))
            out_pos += len(y)
            if hi > lo:
                y = y[lo:hi]
                yield y if early else reconcile_channels(y, channels)
        it.close()

    def blocks(self, *, sample_rate: int, channels: int, start: int = 0, frames: int | None = None,
               blocksize: int = BLOCK) -> Iterator[np.ndarray]:
        """float32 blocks (n, channels) at ``sample_rate``, from target frame ``start``.

        Yields exactly ``frames`` frames (zero-padded past the end of the file; ``None`` = to the end of
        the file) in blocks of ``blocksize`` frames (the last one shorter).
        """
        _check_rate_channels(sample_rate, channels)
        if start < 0 or (frames is not None and frames < 0) or blocksize < 1:
            raise ValueError("start, frames must be >= 0 and blocksize >= 1")
        total = self.target_frames(sample_rate)
        if frames is None:
            frames = max(0, total - start)
        stop = start + frames
        if sample_rate == self.sample_rate:
            src = (reconcile_channels(b, channels) for b in self._native(start, stop, blocksize))
        else:
            src = self._resampled(sample_rate, channels, start, min(stop, total), blocksize)
        return _rechunk(src, frames, channels, blocksize)

    def read(self, *, sample_rate: int | None = None, channels: int | None = None) -> np.ndarray:
        """The whole file as one float32 (frames, channels) array (for tests and short files)."""
        sr = sample_rate or self.sample_rate
        ch = channels or self.channels
        out = np.empty((self.target_frames(sr), ch), dtype=np.float32)
        pos = 0
        for b in self.blocks(sample_rate=sr, channels=ch):
            out[pos:pos + len(b)] = b
            pos += len(b)
        return out


def _rechunk(src: Iterator[np.ndarray], frames: int, channels: int, blocksize: int) -> Iterator[np.ndarray]:
    """Exactly ``frames`` frames in blocks of ``blocksize``, zero-padded when ``src`` runs short."""
    left = frames
    pend: list[np.ndarray] = []
    have = 0
    for b in src:
        if left - have <= 0:
            break
        b = b[:left - have]
        if have == 0 and len(b) == blocksize:  # the common case: pass through untouched
            left -= blocksize
            yield b
            continue
        pend.append(b)
        have += len(b)
        while have >= blocksize:
            cat = np.concatenate(pend) if len(pend) > 1 else pend[0]
            yield cat[:blocksize]
            left -= blocksize
            rest = cat[blocksize:]
            pend, have = ([rest] if len(rest) else []), len(rest)
    if have and left > 0:
        cat = np.concatenate(pend) if len(pend) > 1 else pend[0]
        cat = cat[:left]
        if len(cat) < min(blocksize, left):
            pad = min(blocksize, left) - len(cat)
            cat = np.concatenate([cat, np.zeros((pad, channels), dtype=np.float32)])
        left -= len(cat)
        yield cat
    while left > 0:
        n = min(blocksize, left)
        left -= n
        yield np.zeros((n, channels), dtype=np.float32)


# ------------------------------------------------------------------------------------------ opening

def _copy_stream(stream: BinaryIO, name: str) -> str:
    """Copy a pipe (stdin, a FIFO, /dev/fd/N) to a temp file so it can be probed and read twice."""
    tmp = _temp_file("avmix-stdin-")
    with open(tmp, "wb") as f:
        shutil.copyfileobj(stream, f, COPY_CHUNK)
    if os.path.getsize(tmp) == 0:
        _remove(tmp)
        if name == paths.STDIO:
            raise InputError("standard input is empty", path=name,
                             hint="pipe audio into it, e.g. avmix mix - b.wav < a.wav")
        raise InputError("pipe is empty", path=name)
    return tmp


def _stdin_is_terminal() -> bool:
    """A terminal or another character device (< /dev/zero would be copied until the disk is full)."""
    try:
        if sys.stdin.isatty():
            return True
        st = os.fstat(sys.stdin.fileno())
        return stat.S_ISCHR(st.st_mode) and not os.path.samestat(st, os.stat(os.devnull))  # /dev/null: empty
    except (AttributeError, ValueError, OSError):  # closed or replaced (None, a test harness's object)
        return False


def _is_pipe(name: str) -> bool:
    """A FIFO (process substitution ``<(...)``, a named pipe). Devices are refused by check_input:
    copying /dev/zero or /dev/urandom would never end."""
    try:
        mode = os.stat(name).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode)


_MAGIC = {b"RIFF": "wav", b"RIFX": "wav", b"RF64": "wav", b"BW64": "wav", b"riff": "wav", b"FORM": "aiff",
          b"fLaC": "flac", b"OggS": "ogg", b"caff": "caf"}


def _sniff(local: str) -> str | None:
    """The container family from the first bytes, for files libsndfile should read (else None).

    MP3 and friends never reach libsndfile: its mpg123 backend prints to stderr."""
    with open(local, "rb") as f:
        head = f.read(12)
    return _MAGIC.get(head[:4])


def _wav_shortfall(local: str) -> int:
    """Bytes missing from a RIFF/WAVE file whose header declares a longer data chunk (0 if complete)."""
    size = os.path.getsize(local)
    with open(local, "rb") as f:
        if f.read(12)[8:12] != b"WAVE":
            return 0
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            hdr = f.read(8)
            cid, n = hdr[:4], struct.unpack("<I", hdr[4:8])[0]
            if cid == b"data":
                if n in (0, 0xFFFFFFFF):  # streamed WAV: length unknown, not truncated
                    return 0
                return max(0, pos + 8 + n - size)
            pos += 8 + n + (n & 1)
    return 0


def _open_sndfile(name: str, local: str, family: str) -> AudioFile | None:
    try:
        with open(local, "rb") as fh:  # a file object: libsndfile must not guess MPEG from a .mp3 name
            info = sf.info(fh)  # (its mpg123 fallback prints "Note: Illegal Audio-MPEG-Header" on stderr)
    except Exception:  # libsndfile cannot read it: let ffmpeg try
        return None
    if info.format not in _SNDFILE_FORMATS or info.subtype in _SNDFILE_SKIP_SUBTYPES:
        return None
    if info.frames <= 0:
        raise InputError("contains no audio (0 samples)", path=name)
    if not MIN_RATE <= info.samplerate <= MAX_RATE or not 1 <= info.channels <= MAX_CHANNELS:
        raise InputError(f"unsupported {info.samplerate} Hz / {info.channels} channels", path=name)
    if family == "wav":
        missing = _wav_shortfall(local)
        if missing >= max(1, info.channels):
            raise InputError(f"truncated WAV file ({missing} bytes of audio data missing)", path=name)
    try:  # first and last frame must decode (catches truncated FLAC/Ogg and broken headers)
        with sf.SoundFile(os.fsencode(local)) as f:
            first = f.read(1, dtype="float32")
            f.seek(info.frames - 1)
            last = f.read(1, dtype="float32")
        if len(first) != 1 or len(last) != 1:
            raise RuntimeError("short read")
    except Exception as e:
        why = (str(e).splitlines() or ["unreadable"])[0][:100]
        raise InputError(f"truncated or corrupt {family.upper()} file ({why})", path=name) from None
    fmt = {"WAVEX": "wav", "RF64": "wav", "W64": "wav", "AIFC": "aiff"}.get(info.format, info.format.lower())
    return AudioFile(name, local_path=local, sample_rate=info.samplerate, channels=info.channels,
                     frames=info.frames, format=fmt, subtype=info.subtype,
                     floats=info.subtype in _FLOAT_SUBTYPES)


def _decode(name: str, local: str, raw: str, rate: int, ch: int) -> list[str]:
    """ffmpeg-decode the first audio stream of ``local`` to raw float32; return its diagnostic lines."""
    cmd = [ffmpeg.executable(), "-hide_banner", "-nostdin", "-loglevel", "level+warning", "-y",
           "-i", ffmpeg.url(local), "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", str(ch), "-ar", str(rate),
           "-c:a", "pcm_f32le", "-f", "f32le", ffmpeg.url(raw)]
    timeout = DECODE_TIMEOUT + os.path.getsize(local) / 1e6 * DECODE_SECONDS_PER_MB
    try:
        code, _, err = ffmpeg.run_command(cmd, stdout=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise InputError(f"decoding it timed out after {timeout:.0f} s", path=name) from None
    except OSError as e:
        raise FFmpegError(f"cannot run ffmpeg: {e.strerror}") from None
    lines = [ln.strip() for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
    if code != 0:
        if any("Output file is empty" in ln for ln in lines):
            raise InputError("no audio could be decoded from it", path=name)
        raise InputError(f"cannot decode audio (ffmpeg: {ffmpeg.last_lines(chr(10).join(lines), 1)})", path=name)
    return lines


def _open_ffmpeg(name: str, local: str, family: str | None) -> AudioFile:
    try:
        info = ffmpeg.probe(local)
    except InputError as e:
        what = f"truncated or corrupt {family.upper()} file" if family else "not an audio file"
        why = e.message.rsplit("(", 1)[-1].rstrip(")") if e.message.endswith(")") else ""
        why = why.replace("Error opening input files: ", "")
        why = f"ffmpeg: {why}" if why and why != "no error output" else "no decoder recognises it"
        raise InputError(f"{what} ({why})", path=name) from None
    if info.audio is None:
        if info.video is not None:
            raise InputError("has no audio stream (it is a video or image without sound)", path=name)
        raise InputError("not an audio file (no audio stream found)", path=name)
    rate, ch = info.audio.sample_rate, info.audio.channels
    if not MIN_RATE <= rate <= MAX_RATE or not 1 <= ch <= MAX_CHANNELS:
        raise InputError(f"unsupported {rate} Hz / {ch} channels", path=name)
    raw = _temp_file("avmix-decode-", ".f32")
    try:
        lines = _decode(name, local, raw, rate, ch)
        frames = os.path.getsize(raw) // (4 * ch)
        errors = [ln for ln in lines if ln.startswith("[error]") or ln.startswith("[fatal]")
                  or "] [error]" in ln or "] [fatal]" in ln]
        if errors:
            why = ffmpeg.last_lines(errors[0], 1)[:100]
            raise InputError(f"corrupt audio data (ffmpeg: {why})", path=name)
        estimated = any("Estimating duration from bitrate" in ln for ln in lines)
        declared = info.duration if info.duration and not estimated else None
        got = frames / rate
        if any("filesize and duration do not match" in ln for ln in lines) or (
                declared and got < declared * 0.98 - 0.25):
            d = f"; its header declares {declared:.2f} s" if declared else ""
            raise InputError(f"truncated file (decodes to {got:.2f} s{d})", path=name)
        if frames == 0:
            raise InputError("contains no audio (0 samples)", path=name)
    except BaseException:
        _remove(raw)
        raise
    ext = Path(name).suffix.lower().lstrip(".")
    fmt = ext if ext and ext in info.format.split(",") + ["m4a", "aac", "mp4", "mov", "mkv", "webm", "opus"] \
        else info.format.split(",")[0]
    return AudioFile(name, local_path=local, sample_rate=rate, channels=ch, frames=frames, format=fmt,
                     subtype=info.audio.codec, raw_path=raw, floats=True)


def open_audio(path: str | os.PathLike) -> AudioFile:
    """Open an audio file (or the audio stream of a video) for block reading; ``-`` reads stdin.

    Raises InputError naming the file if it is missing, a directory, unreadable, empty, not audio,
    corrupt, has no audio stream or contains no samples.
    """
    name = os.fspath(path)
    if name == paths.STDIO:
        if _stdin_is_terminal():  # reading would wait for typing: an error, as nothing was piped in
            raise InputError("standard input is a terminal or device, not audio", path=name,
                             hint="pipe audio into it, e.g. avmix mix - b.wav < a.wav")
        local = _copy_stream(sys.stdin.buffer, name)
    elif _is_pipe(name):  # process substitution <(...) or a named pipe
        if not os.access(name, os.R_OK):
            raise InputError("permission denied", path=name)
        with open(name, "rb") as stream:
            local = _copy_stream(stream, name)
    else:
        paths.check_input(name)
        local = name
    try:
        family = _sniff(local)
        return (family and _open_sndfile(name, local, family)) or _open_ffmpeg(name, local, family)
    except BaseException:
        if local != name:
            _remove(local)
        raise


# ------------------------------------------------------------------------------------------ writing

def _quantize(block: np.ndarray, bits: int) -> np.ndarray:
    """float32 -> int16 (16) or int32 holding 24-bit samples in the top bits (24); clipped, rounded."""
    scale = float(1 << (bits - 1))
    y = np.multiply(block, scale, dtype=np.float32)
    np.rint(y, out=y)
    np.clip(y, -scale, scale - 1, out=y)
    if bits == 16:
        return y.astype(np.int16)
    z = y.astype(np.int32)
    z <<= 8
    return z


def _quantize24(block: np.ndarray) -> np.ndarray:
    """float32 -> int32 24-bit sample values (not shifted), clipped and rounded."""
    y = np.multiply(block, 8388608.0, dtype=np.float32)
    np.rint(y, out=y)
    np.clip(y, -8388608.0, 8388607.0, out=y)
    return y.astype(np.int32)


def _wav_header(sample_rate: int, channels: int, bits: int, frames: int | None, *, junk: bool = False) -> bytes:
    """A canonical WAV header; sizes 0xFFFFFFFF when ``frames`` is unknown (streaming).

    ``junk`` reserves a 28-byte JUNK chunk that :func:`_patch_wav` turns into RF64's ds64 if needed."""
    width = bits // 8
    tag = 3 if bits == 32 else 1  # IEEE float / PCM
    extra = 36 if junk else 0
    if frames is None:
        data_size = riff_size = 0xFFFFFFFF
    else:
        data_size = frames * channels * width
        riff_size = 36 + extra + data_size
        if riff_size > 0xFFFFFFFF:
            data_size = riff_size = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
            + (b"JUNK" + struct.pack("<I", 28) + bytes(28) if junk else b"")
            + b"fmt " + struct.pack("<IHHIIHH", 16, tag, channels, sample_rate, sample_rate * channels * width,
                                    channels * width, bits)
            + b"data" + struct.pack("<I", data_size))


def _patch_wav(f: BinaryIO, data_bytes: int, frames: int) -> None:
    """Write the real sizes into a header made with ``junk=True`` (RF64 when over 4 GiB)."""
    riff = 36 + 36 + data_bytes
    f.seek(0)
    if riff <= 0xFFFFFFFF:
        f.write(b"RIFF" + struct.pack("<I", riff))
        f.seek(76)
        f.write(struct.pack("<I", data_bytes))
    else:
        f.write(b"RF64" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE"
                + b"ds64" + struct.pack("<IQQQI", 28, riff, data_bytes, frames, 0))
        f.seek(76)
        f.write(struct.pack("<I", 0xFFFFFFFF))


def _pcm_bytes(block: np.ndarray, bits: int) -> np.ndarray:
    """Little-endian PCM of a float32 block as a contiguous array (a buffer for file.write): int16,
    packed 24-bit, or float32."""
    if bits == 32:
        return np.ascontiguousarray(block, dtype="<f4")
    if bits == 16:
        return _quantize(block, 16).astype("<i2", copy=False)
    z = _quantize24(block).ravel()
    out = np.empty(len(z) * 3, np.uint8)  # three byte-plane stores beat one strided 3-of-4 copy
    out[0::3] = z
    out[1::3] = z >> 8
    out[2::3] = z >> 16
    return out


_SF_ERRORS = (OSError, getattr(sf, "SoundFileRuntimeError", RuntimeError))


@contextlib.contextmanager
def _writing(path: str) -> Iterator[None]:
    """File system and libsndfile failures while writing (disk full, file too large) as OutputError
    naming the output, not our temp file."""
    try:
        yield
    except _SF_ERRORS as e:
        why = getattr(e, "strerror", None) or str(e).splitlines()[0][:100] or type(e).__name__
        raise OutputError(f"cannot write it ({why})", path=path) from None


def supported_output(path: str | os.PathLike) -> str:
    """The output's extension (lower case) or UsageError naming the file and the supported ones."""
    name = os.fspath(path)
    if name == paths.STDIO:
        return ".wav"
    ext = Path(name).suffix.lower()
    if ext not in OUTPUT_EXTENSIONS:
        raise UsageError(f"unsupported output format {ext or '(no extension)'!r}", path=name,
                         hint="use one of " + ", ".join(OUTPUT_EXTENSIONS))
    return ext


class AudioWriter:
    """Write float32 (n, channels) blocks to ``path`` by its extension; atomic; ``-`` = WAV on stdout.

    ``bit_depth`` is 16, 24 (default) or 32 (float) for wav, 16 or 24 for flac, ignored for lossy
    formats. Samples beyond +-1 are clipped in integer formats. ``frames`` (if known) makes the stdout
    WAV header exact; the stream is then padded/truncated to that length.
    """

    def __init__(self, path: str | os.PathLike, *, sample_rate: int, channels: int,
                 bit_depth: int | None = None, frames: int | None = None):
        self.path = os.fspath(path)
        self.ext = supported_output(self.path)
        _check_rate_channels(sample_rate, channels)
        self.sample_rate, self.channels, self.frames = int(sample_rate), int(channels), frames
        bits = DEFAULT_BIT_DEPTH if bit_depth is None else int(bit_depth)
        allowed = {".wav": (16, 24, 32), ".flac": (16, 24)}.get(self.ext)
        if allowed and bits not in allowed:
            raise UsageError(f"{self.ext[1:]} output supports bit depths {', '.join(map(str, allowed))}, "
                             f"not {bit_depth}", path=self.path)
        self.bits = bits
        limit = _LOSSY_MAX_CHANNELS.get(self.ext) or (FLAC_MAX_CHANNELS if self.ext == ".flac" else None)
        if limit and channels > limit:
            raise UsageError(f"{self.ext[1:]} holds at most {limit} channels, not {channels}", path=self.path,
                             hint="pass --channels 2 or write .wav" + ("" if self.ext == ".flac" else "/.flac"))
        if self.ext == ".flac" and sample_rate > FLAC_MAX_RATE:
            raise UsageError(f"flac holds at most {FLAC_MAX_RATE} Hz, not {sample_rate}", path=self.path,
                             hint="pass --sample-rate 192000 or write .wav")
        self.written = 0
        self._atomic = None
        self._sf: sf.SoundFile | None = None
        self._wav: BinaryIO | None = None
        self._proc = None
        self._out: BinaryIO | None = None

    # -- context manager
    def __enter__(self) -> "AudioWriter":
        if self.path == paths.STDIO:
            self._out = sys.stdout.buffer
            self._out.write(_wav_header(self.sample_rate, self.channels, self.bits, self.frames))
            return self
        self._atomic = paths.atomic_path(self.path)
        tmp = os.fspath(self._atomic.__enter__())
        try:
            with _writing(self.path):
                self._open(tmp)
        except BaseException as e:
            self._atomic.__exit__(type(e), e, e.__traceback__)
            self._atomic = None
            raise
        return self

    def _open(self, tmp: str) -> None:
        """Open the temp file (or the encoder writing it)."""
        if self.ext == ".wav":
            self._wav = open(tmp, "wb")
            self._wav.write(_wav_header(self.sample_rate, self.channels, self.bits, self.frames, junk=True))
        elif self.ext == ".flac":
            sub = {16: "PCM_16", 24: "PCM_24"}[self.bits]
            self._sf = sf.SoundFile(os.fsencode(tmp), "w", self.sample_rate, self.channels, sub, format="FLAC")
        else:
            args = ["-f", "f32le", "-ar", str(self.sample_rate), "-ac", str(self.channels), "-i", "pipe:0",
                    "-vn", *_LOSSY[self.ext]]
            rate = _encoder_rate(self.ext, self.sample_rate)
            if rate != self.sample_rate:  # resampled by ffmpeg (soxr is not needed for a lossy target)
                args += ["-ar", str(rate)]
            self._proc = ffmpeg.popen(args + [ffmpeg.url(tmp)], stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL)

    def write(self, block: np.ndarray) -> None:
        """Append float32 (n, channels) frames."""
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1:
            block = block[:, None]
        if block.shape[1] != self.channels:
            raise ValueError(f"block has {block.shape[1]} channels, writer has {self.channels}")
        if self._out is not None:
            if self.frames is not None:
                block = block[:max(0, self.frames - self.written)]
            self._out.write(_pcm_bytes(block, self.bits))
        elif self._wav is not None:
            with _writing(self.path):
                self._wav.write(_pcm_bytes(block, self.bits))
        elif self._sf is not None:
            with _writing(self.path):
                self._sf.write(_quantize(block, self.bits))
        elif self._proc is not None:
            try:
                self._proc.stdin.write(np.ascontiguousarray(block, dtype="<f4"))
            except (BrokenPipeError, OSError):
                try:
                    self._proc.stdin.close()
                except OSError:
                    pass
                self._proc.stdin = None
                ffmpeg.finish(self._proc, what=f"encoding {self.path}")
                raise FFmpegError(f"encoding {self.path}: ffmpeg stopped reading") from None
        else:
            raise RuntimeError("AudioWriter used outside its with block")
        self.written += len(block)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._out is not None:
                if exc_type is None and self.frames is not None and self.written < self.frames:
                    pad = np.zeros((min(BLOCK, self.frames - self.written), self.channels), np.float32)
                    while self.written < self.frames:
                        self.write(pad[:self.frames - self.written])
                self._out.flush()
                return
            if self._wav is not None:
                wav, self._wav = self._wav, None
                with _writing(self.path):
                    try:
                        if exc_type is None:
                            _patch_wav(wav, self.written * self.channels * self.bits // 8, self.written)
                    finally:
                        wav.close()
            if self._sf is not None:
                with _writing(self.path):
                    self._sf.close()
            if self._proc is not None:
                if exc_type is None:
                    if self._proc.stdin:
                        self._proc.stdin.close()
                        self._proc.stdin = None
                    ffmpeg.finish(self._proc, what=f"encoding {self.path}")
                else:
                    ffmpeg.kill(self._proc)
        except BaseException as e:
            if self._atomic is not None:
                self._atomic.__exit__(type(e), e, e.__traceback__)
                self._atomic = None
            raise
        finally:
            if self._atomic is not None:
                atomic, self._atomic = self._atomic, None
                if exc_type is None:
                    atomic.__exit__(None, None, None)
                else:
                    atomic.__exit__(exc_type, exc, tb)


def write_audio(path: str | os.PathLike, data: np.ndarray, sample_rate: int, *,
                bit_depth: int | None = None) -> None:
    """Write a whole float32 (frames, channels) or (frames,) array to ``path`` (format by extension)."""
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None]
    with AudioWriter(path, sample_rate=sample_rate, channels=data.shape[1], bit_depth=bit_depth,
                     frames=len(data)) as w:
        for i in range(0, max(len(data), 1), BLOCK):
            w.write(data[i:i + BLOCK])


__all__ = ["AudioFile", "AudioWriter", "open_audio", "write_audio", "OUTPUT_EXTENSIONS", "BLOCK",
           "reconcile_channels", "supported_output"]
