"""Reading any audio ffmpeg can decode as float32 blocks (writing is :mod:`avmix.audio.writer`).

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
audio stream, 0 samples; truncated (a WAV data or AIFF SSND chunk or an mp3/m4a duration longer than
what is there, a FLAC whose last frame does not decode) and corrupt (ffmpeg reports decoding errors, or
libsndfile fails on a block while reading, e.g. a FLAC that loses sync mid-file). A truncated Ogg
cannot be told from a shorter one and is read as it is; damage inside PCM samples is just other samples.

Channel counts are reconciled by speaker layout (:func:`reconcile_channels`): mono is duplicated,
anything to mono averaged, 3.0/quad/5.0/5.1/7.1 to stereo folded down as in ITU-R BS.775.

Non-finite samples (NaN, +-inf, possible only in float files) are replaced by 0: one bad sample would
otherwise poison every loudness and peak measurement of the mix.
"""
from __future__ import annotations

import atexit
import contextlib
import copy
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

from avmix import ffargs, ffmpeg, paths
from avmix.audio.channels import channel_matrix, reconcile_channels  # noqa: F401 (part of io's API)
from avmix.errors import FFmpegError, InputError, UsageError

BLOCK = 1 << 17  # frames per block, as plan.BLOCK
RESAMPLE_QUALITY = "HQ"
PREROLL = 16384  # output frames decoded and discarded before a mid-file start (>> soxr filter length)
MIN_RATE, MAX_RATE = 1000, 768000
MAX_CHANNELS = 64
COPY_CHUNK = 1 << 20  # bytes
DECODE_TIMEOUT, DECODE_SECONDS_PER_MB = 120.0, 10.0  # ffmpeg decoding (to a temp file) is ~100x faster

# formats libsndfile reads sample-exactly; everything else is decoded by ffmpeg
_SNDFILE_FORMATS = {"WAV", "WAVEX", "W64", "RF64", "AIFF", "AIFC", "FLAC", "CAF", "OGG"}
_SNDFILE_SKIP_SUBTYPES = {"OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III"}
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}
# sizes that tools writing to a pipe (unable to seek back) leave in the header: ffmpeg 0 or 0xFFFFFFFF,
# SoX just under 2 GiB (0x7FFFF000 in WAV, 0x7F000008 in AIFF); such a file is read to its end
_SOX_STREAMED = range(0x7F000000, 0x7FFFF001)


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

    def __init__(self, path: str, floats: bool, name: str):
        self._path, self._name = path, name
        self._f = sf.SoundFile(os.fsencode(path))  # bytes: soundfile cannot encode non-UTF-8 names
        self._floats = floats
        self._int = self._INT_READS.get(self._f.subtype) if self._f.format in ("WAV", "WAVEX", "AIFF") else None
        self._pos = 0

    def seek(self, frame: int) -> None:
        try:
            self._f.seek(frame)
        except sf.SoundFileError as e:
            raise self._corrupt(e, frame) from None
        self._pos = frame

    def read(self, n: int) -> np.ndarray:
        # opening checked only the first and last frame: damage in between shows up here (a FLAC that
        # lost sync), and must be the input's error, not a crash
        try:
            b = self._read(n)
        except sf.SoundFileError as e:
            raise self._corrupt(e, self._first_bad(self._pos)) from None
        self._pos += len(b)
        return b

    def _read(self, n: int) -> np.ndarray:
        if self._int is not None:
            dtype, scale = self._int
            raw = self._f.read(n, dtype=dtype, always_2d=True)
            out = np.empty(raw.shape, np.float32)
            np.multiply(raw, np.float32(scale), out=out)
            return out
        b = self._f.read(n, dtype="float32", always_2d=True)
        return _finite(b) if self._floats else b

    def _first_bad(self, frame: int, step: int = 4096) -> int:
        """The block that failed started at ``frame``: find the failing spot more closely (best effort)."""
        try:
            with sf.SoundFile(os.fsencode(self._path)) as f:
                f.seek(frame)
                while len(f.read(step, dtype="float32")) == step:
                    frame += step
        except Exception:
            pass
        return frame

    def _corrupt(self, e: Exception, frame: int) -> InputError:
        why = (str(e).splitlines() or ["unreadable"])[0].removeprefix("Error : ").rstrip(". ")[:100]
        at = frame / self._f.samplerate
        # libsndfile fails where it first trips, which can be some way before the damaged bytes
        return InputError(f"corrupt {self._f.format} audio data: decoding fails at {at:.2f} s (libsndfile: {why})",
                          path=self._name)

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
        self._finalizer = weakref.finalize(self, _remove, raw_path) if raw_path is not None else None

    def __repr__(self) -> str:
        return (f"AudioFile({self.path!r}, {self.format}, {self.sample_rate} Hz, {self.channels} ch, "
                f"{self.frames} frames)")

    def close(self) -> None:
        """Delete the decoded temp file now (else when garbage-collected); the AudioFile is unusable after."""
        if self._finalizer is not None:
            self._finalizer()

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
        return _SndReader(self.local_path, self._floats, self.path)

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


def sound_only(path: str | os.PathLike) -> bool:
    """A WAV, AIFF, FLAC or CAF file by its first bytes: it holds sound and no picture (FLAC's cover art
    does not count), so nothing needs to ask ffmpeg. RIFF that is not WAVE (AVI) and Ogg are not."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    family, tag = _MAGIC.get(head[:4]), head[8:12]
    if head[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64"):
        return tag == b"WAVE"
    if family == "aiff":
        return tag in (b"AIFF", b"AIFC")
    return family in ("wav", "flac", "caf")  # W64 ("riff") names its kind in a GUID further on


def _data_shortfall(local: str) -> int:
    """Bytes missing from a WAV or AIFF file whose header declares a longer sound-data chunk (0 if complete).

    libsndfile counts the frames that are there, so a cut file would otherwise read as a shorter one."""
    size = os.path.getsize(local)
    with open(local, "rb") as f:
        head = f.read(12)
        if head[:4] in (b"RIFF", b"RF64", b"BW64", b"RIFX") and head[8:12] == b"WAVE":
            order, want = (">" if head[:4] == b"RIFX" else "<"), b"data"
        elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            order, want = ">", b"SSND"  # big-endian; SSND's size includes its 8-byte offset/blockSize
        else:
            return 0
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            hdr = f.read(8)
            cid, n = hdr[:4], struct.unpack(order + "I", hdr[4:8])[0]
            if cid == want:
                if n in (0, 0xFFFFFFFF) or n in _SOX_STREAMED:  # streamed (or RF64): length unknown
                    return 0
                return max(0, pos + 8 + n - size)
            pos += 8 + n + (n & 1)
    return 0


class _ProbeFile:
    """A file for sf.info whose failing seeks (before the start: libsndfile tries that on an AIFF cut
    inside its header) stay where they are instead of raising in soundfile's callback, which would print
    "Exception ignored from cffi callback" and a traceback on stderr."""

    def __init__(self, f: BinaryIO):
        self._f = f

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return self._f.seek(offset, whence)
        except (OSError, ValueError):
            return self._f.tell()

    def __getattr__(self, name: str):
        return getattr(self._f, name)


def _open_sndfile(name: str, local: str, family: str) -> AudioFile | None:
    try:
        with open(local, "rb") as fh:  # a file object: libsndfile must not guess MPEG from a .mp3 name
            info = sf.info(_ProbeFile(fh))  # (its mpg123 fallback prints "Note: Illegal Audio-MPEG-Header")
    except Exception:  # libsndfile cannot read it: let ffmpeg try
        return None
    if info.format not in _SNDFILE_FORMATS or info.subtype in _SNDFILE_SKIP_SUBTYPES:
        return None
    if info.format == "OGG" and info.channels > 2:  # Vorbis orders surround L C R ...; ffmpeg's decoder
        return None  # puts it in the WAV order that the channel matrix expects
    if family in ("wav", "aiff"):  # before the 0-samples check: a file cut after its header is truncated
        missing = _data_shortfall(local)
        if missing >= max(1, info.channels):
            raise InputError(f"truncated {family.upper()} file ({missing} bytes of audio data missing)", path=name)
    if info.frames <= 0:
        raise InputError("contains no audio (0 samples)", path=name)
    if not MIN_RATE <= info.samplerate <= MAX_RATE or not 1 <= info.channels <= MAX_CHANNELS:
        raise InputError(f"unsupported {info.samplerate} Hz / {info.channels} channels", path=name)
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
    import ffmpeg as ffmpeg_python  # ffmpeg-python builds the command; imported only when a file needs it

    out = ffmpeg_python.input(ffargs.slot(0))["a:0"].output(ffargs.slot(1), format="f32le", acodec="pcm_f32le",
                                                            ac=ch, ar=rate, vn=None, sn=None, dn=None)
    cmd = [ffmpeg.executable({"pcm_f32le"}), "-hide_banner", "-nostdin", "-loglevel", "level+warning", "-y",
           *ffargs.fill(out.get_args(), [local, raw])]
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


_decoded: dict[tuple[str, int, int], AudioFile] | None = None  # while reuse_decoded() is active


@contextlib.contextmanager
def reuse_decoded() -> Iterator[None]:
    """Within the block, opening an unchanged file that ffmpeg already decoded reuses that decode
    (``generate`` reads each input in its compose and again in its analysis stage). The decoded
    temp files are removed once nothing uses them."""
    global _decoded
    outer, _decoded = _decoded, ({} if _decoded is None else _decoded)
    try:
        yield
    finally:
        _decoded = outer


def _reused(name: str) -> tuple[tuple[str, int, int] | None, AudioFile | None]:
    if _decoded is None:
        return None, None
    key = paths.file_key(name)
    if key is None:
        return None, None
    got = _decoded.get(key)
    if got is None:
        return key, None
    clone = copy.copy(got)  # named as asked this time; it keeps the first (owner of the temp file) alive
    clone.path, clone._owner = name, got
    return key, clone


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
        key, known = _reused(name)
        if known is not None:
            return known
        af = _open(name, name)
        if key is not None and af._raw is not None and _decoded is not None:
            _decoded[key] = af
        return af
    return _open(name, local)


def _open(name: str, local: str) -> AudioFile:
    try:
        family = _sniff(local)
        return (family and _open_sndfile(name, local, family)) or _open_ffmpeg(name, local, family)
    except BaseException:
        if local != name:
            _remove(local)
        raise


def open_checked(path: str | os.PathLike) -> AudioFile:
    """:func:`open_audio`, and for the compressed formats libsndfile reads (FLAC, Ogg Vorbis, ...) a
    decode to the end, for callers that hand the file to someone else (render gives it to ffmpeg's mux,
    which decodes past damage). Damage inside such a file shows only when that part is read; the files
    ffmpeg decodes were decoded whole by open_audio, and WAV/AIFF PCM was checked for its length (damage
    inside PCM samples is just other samples), so those cost nothing more here."""
    af = open_audio(path)
    if af._raw is not None or af.format in ("wav", "aiff"):
        return af
    try:
        got = 0
        for b in af._native(0, af.frames, BLOCK):
            got += len(b)
        if got < af.frames:
            raise InputError(f"truncated {af.format.upper()} file (decodes to {got / af.sample_rate:.2f} s; its "
                             f"header declares {af.duration:.2f} s)", path=af.path)
    except BaseException:
        af.close()
        raise
    return af


__all__ = ["AudioFile", "open_audio", "open_checked", "BLOCK", "reconcile_channels"]
