"""Writing float32 audio blocks to a file, the format chosen by the output's extension.

wav (PCM 16/24 or 32-bit float; our own writer, RF64 past 4 GiB), flac (16/24) via soundfile; mp3, ogg
(vorbis), opus, m4a (aac) by piping float32 to ffmpeg (at a rate the codec takes: opus is always 48 kHz).
Integer formats are rounded and clipped at full scale (never wrapped). Files are written to a temp file
beside the target and renamed into place only on success, so a failed or interrupted write never leaves a
partial output. ``-`` writes a WAV stream to standard output (exact sizes when ``frames`` is known, else
0xFFFFFFFF).
"""
from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import soundfile as sf

from avmix import ffargs, ffmpeg, paths
from avmix.audio.io import BLOCK, _check_rate_channels
from avmix.errors import FFmpegError, OutputError, UsageError

OUTPUT_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
DEFAULT_BIT_DEPTH = 24
# lossy encoders: extension -> ffmpeg codec args; the rates each accepts (None = any) and channel limit
_LOSSY = {  # ffmpeg-python output options per extension
    ".mp3": {"acodec": "libmp3lame", "audio_bitrate": "192k"},
    ".ogg": {"acodec": "libvorbis", "q:a": 6},
    ".opus": {"acodec": "libopus", "audio_bitrate": "160k"},
    ".m4a": {"acodec": "aac", "audio_bitrate": "192k"},
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


def written_rate(path: str | os.PathLike, sample_rate: int) -> int:
    """The rate ``path`` is written at when the mix is at ``sample_rate``: the mix's own, except for a lossy
    format whose encoder does not take it (mp3 at most 48 kHz, opus always 48 kHz), which is resampled."""
    ext = supported_output(path)
    return _encoder_rate(ext, int(sample_rate)) if ext in _LOSSY else int(sample_rate)


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


def integer_bits(path: str | os.PathLike, bit_depth: int | None) -> int | None:
    """The bit depth if ``path`` is written as integer PCM (wav, flac, stdout), which clips beyond 0 dBFS;
    None for float WAV and lossy formats, whose encoders take the float samples."""
    ext = supported_output(path)
    bits = DEFAULT_BIT_DEPTH if bit_depth is None else int(bit_depth)
    return bits if ext in (".wav", ".flac") and bits != 32 else None


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
            import ffmpeg as ffmpeg_python  # ffmpeg-python builds the command; only lossy outputs need it

            opts = dict(_LOSSY[self.ext], vn=None)
            rate = _encoder_rate(self.ext, self.sample_rate)
            if rate != self.sample_rate:  # resampled by ffmpeg (soxr is not needed for a lossy target)
                opts["ar"] = rate
            out = ffmpeg_python.input("pipe:0", format="f32le", ar=self.sample_rate, ac=self.channels).output(
                ffargs.slot(0), **opts)
            self._proc = ffmpeg.popen(ffargs.fill(out.get_args(), [tmp]), stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, needs={opts["acodec"]})

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


__all__ = ["AudioWriter", "write_audio", "written_rate", "OUTPUT_EXTENSIONS", "supported_output"]
