"""Pictures of sources: a video input's own stream or an image, probed and decoded by ffmpeg.

A picture is decoded at its tile's size and the output fps, frame by frame through a pipe, as 8-bit
yuv420p (BT.709, limited range): what the encoder takes, so no colour conversion happens in numpy.
ffmpeg does the work it is good at: it applies rotation side data (autorotate), makes pixels square
(SAR), converts 10-bit, flattens alpha over the background, places variable-rate frames by timestamp
(the ``fps`` filter) and cover-crops into the tile. Memory is a few frames per picture (read ahead).

Time: picture time 0 is the first sample of the input's audio stream (what the audio stage reads as
sample 0), so a video whose streams start at different times stays in sync. An image is one frame held.
"""
from __future__ import annotations

import math
import os
import queue
import re
import subprocess
import threading
from dataclasses import dataclass

import numpy as np

from avmix import ffmpeg, paths, progress
from avmix.errors import FFmpegError, InputError

SEEK_MARGIN_S = 1.0  # seek this far before a wanted time and let the fps filter find the frame
SKIP_LIMIT_S = 3.0  # read forward up to this far; further jumps restart the decoder with a seek
READ_AHEAD = 6  # frames read ahead of the compositor, per picture
SINGLE_THREAD_PIXELS = 1920 * 1088  # pictures up to this size decode in one thread (see Reader._start)
PROBE_NEEDS = frozenset({"ashowinfo"})  # the filters these ffmpeg commands use (avmix.ffmpeg picks a build)
DECODE_NEEDS = frozenset({"fps", "setpts", "scale", "crop", "setsar", "format", "color", "overlay"})
BACKGROUND = "0x0b0e1a"  # behind alpha, and the tile colour where there is no picture (dark blue-grey)
# WebM keeps VP8/VP9 alpha as a second layer (stream tag alpha_mode 1) that ffmpeg's own decoders drop
ALPHA_DECODERS = {"vp8": "libvpx", "vp9": "libvpx-vp9"}


@dataclass
class Picture:
    """What a picture source is: its display size (after rotation and SAR), rate and timing."""

    path: str
    kind: str  # "video" or "image"
    width: int  # display width (rotation and non-square pixels applied)
    height: int
    fps: float | None
    duration: float | None
    rotation: int = 0  # degrees of the display matrix, as ffmpeg prints it
    sar: float = 1.0
    alpha: bool = False
    pix_fmt: str = ""
    color: str = ""  # what ffmpeg says in brackets after the pixel format: range, matrix, ...
    stored: tuple[int, int] = (0, 0)  # coded width and height, before rotation and SAR
    has_audio: bool = False
    audio_start: float = 0.0  # seconds from the container's start to the first audio sample
    decoder: str = ""  # the video decoder to name before -i ("": ffmpeg's choice)


def _alpha(pix_fmt: str) -> bool:
    return bool(re.match(r"(yuva|rgba|bgra|argb|abgr|gbrap|ya|pal8)", pix_fmt))


_PROBED: dict[tuple[str, int, int], Picture | None] = {}  # by path, mtime and size: a file is probed once


def probe(path: str | os.PathLike) -> Picture:
    """Probe a picture source. InputError (one line naming the file) if it has no usable picture."""
    pic = find(path)
    if pic is None:
        raise InputError("has no picture (no video stream)", path=path)
    return pic


def find(path: str | os.PathLike) -> Picture | None:
    """The picture of a file, or None when it has no video stream (cover art does not count).
    InputError if ffmpeg cannot read it."""
    path = os.fspath(path)
    key = paths.file_key(path)
    if key is None:
        raise InputError("no such file" if not os.path.exists(path) else "not a file", path=path)
    if key not in _PROBED:
        from avmix.audio import io  # a sound file needs no ffmpeg run (0.07 s) to show it has no picture

        _PROBED[key] = None if io.sound_only(path) else _probe(path)
    return _PROBED[key]


def find_all(paths: list[str | os.PathLike], *, unreadable_ok: bool = False) -> list[Picture | None]:
    """:func:`find` of every path, probed side by side. With ``unreadable_ok`` a file ffmpeg cannot
    read counts as having no picture (the audio stage then says what is wrong with it)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(path):
        try:
            return find(path)
        except InputError:
            if unreadable_ok:
                return None
            raise

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, paths))


def _probe(path: str) -> Picture | None:
    # one run: the input's description, and the first audio frame's time (ashowinfo) if it has audio
    cmd = [ffmpeg.executable(PROBE_NEEDS), "-hide_banner", "-nostdin", "-i", ffmpeg.url(path), "-map", "0:a:0?",
           "-af", "ashowinfo", "-frames:a", "1", "-f", "null", "-"]
    try:
        _, _, err_bytes = ffmpeg.run_command(cmd, timeout=ffmpeg.PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise InputError("reading it timed out", path=path) from None
    err = err_bytes.decode("utf-8", "replace")
    if "Input #0" not in err:
        raise InputError("not an image or video ffmpeg can read", path=path)
    info = ffmpeg.parse_info(path, err)
    ffmpeg.remember_info(path, err)  # the audio stage's probe of this file reads it from here
    line = next((s for s in info.streams if "Video:" in s and "attached pic" not in s), None)
    if info.video is None:
        if line is not None:  # a video stream without a size
            raise InputError("its picture cannot be read (truncated or corrupt)", path=path)
        return None
    v = info.video
    sar = 1.0
    m = re.search(r"SAR (\d+):(\d+)", line)
    if m and int(m.group(1)) > 0 and int(m.group(2)) > 0:
        sar = int(m.group(1)) / int(m.group(2))
    rot = 0
    m = re.search(r"(?:displaymatrix|Display Matrix): rotation of (-?[\d.]+) degrees", err)
    if m:
        rot = int(round(float(m.group(1)))) % 360
    w, h = max(1, round(v.width * sar)), v.height
    if rot in (90, 270):
        w, h = h, w
    image = info.still
    if w < 2 or h < 2:
        raise InputError(f"picture of {v.width}x{v.height} is too small", path=path)
    m = re.search(r"Video: [^,]+, [a-z0-9_]+\(([^)]*)\)", line)
    alpha, decoder = _alpha(v.pix_fmt), ""
    if v.codec in ALPHA_DECODERS and _stream_tags(err, line).get("alpha_mode") == "1":
        # a build with libvpx has its decoders as well as its encoders (the build lists only encoders)
        if ALPHA_DECODERS[v.codec] in ffmpeg.build(DECODE_NEEDS).encoders:
            alpha, decoder = True, ALPHA_DECODERS[v.codec]
        else:
            progress.note(f"{path}: this ffmpeg has no libvpx decoder, so the picture's transparency is dropped")
    pic = Picture(path=path, kind="image" if image else "video", width=w, height=h, fps=v.fps,
                  duration=info.duration, rotation=rot, sar=sar, alpha=alpha, pix_fmt=v.pix_fmt,
                  color=m.group(1) if m else "", stored=(v.width, v.height), has_audio=info.audio is not None,
                  decoder=decoder)
    if pic.has_audio and not image:
        pic.audio_start = _audio_start(err)
    return pic


def _stream_tags(stderr: str, stream_line: str) -> dict[str, str]:
    """The metadata ffmpeg prints under one stream's line, names in lower case."""
    lines = stderr.splitlines()
    at = next((i for i, s in enumerate(lines) if s.strip() == stream_line), len(lines))
    tags = {}
    for s in lines[at + 1:]:
        if not s.startswith("    "):  # the next stream, input or output
            break
        m = re.match(r"\s+([^:]+?)\s*:\s(.*)$", s)
        if m:
            tags[m.group(1).lower()] = m.group(2).strip()
    return tags


def _audio_start(stderr: str) -> float:
    """Time of the first decoded audio sample on the video's clock (ffmpeg's ashowinfo line)."""
    for line in stderr.splitlines():
        m = re.search(r"ashowinfo.*\bn:\s*0\b.*pts_time:\s*(-?[\d.]+)", line)
        if m:
            return float(m.group(1))
    return 0.0


def cover_size(picture: Picture, width: int, height: int) -> tuple[int, int]:
    """The size the stored pixels are scaled to so that the shown picture (rotation and SAR applied)
    covers a width x height tile, before the centre is cropped out."""
    s = max(width / picture.width, height / picture.height)
    return max(width, round(picture.width * s)), max(height, round(picture.height * s))


def cover_filter(picture: Picture, width: int, height: int, fps: float, start: float, *, src: str = "0:v:0",
                 out: str = "out") -> str:
    """Filter text from label ``src`` to label ``out``: ``fps`` frames from ``start`` seconds (of the
    decoder's timestamps), scaled once to cover width x height (square pixels) and centre-cropped, yuv420p
    BT.709 limited range. ffmpeg rotates by the display matrix before this graph. Alpha is flattened over
    BACKGROUND."""
    sw, sh = cover_size(picture, width, height)
    shown = picture.stored[::-1] if picture.rotation in (90, 270) else picture.stored
    # setpts: the first frame at 0, or a constant-rate muxer would pad the gap before ``start``
    chain = [f"fps=fps={fps!r}:start_time={start!r}:round=down", "setpts=PTS-STARTPTS"]
    convert = needs_conversion(picture)
    if (sw, sh) != tuple(shown) or convert:  # one scaling pass, and none for a picture already the tile's
        chain.append(f"scale={sw}:{sh}:flags=bicubic" + (":out_color_matrix=bt709:out_range=tv" if convert else ""))
    if (sw, sh) != (width, height):
        chain.append(f"crop={width}:{height}")
    chain.append("setsar=1")
    if picture.alpha:
        chain.append("format=yuva420p")
        return (f"color=c={BACKGROUND}:s={width}x{height}:r={fps!r}[{out}_bg];[{src}]{','.join(chain)}[{out}_fg];"
                f"[{out}_bg][{out}_fg]overlay=shortest=1:format=yuv420,format=yuv420p[{out}]")
    chain.append("format=yuv420p")
    return f"[{src}]{','.join(chain)}[{out}]"


def needs_conversion(picture: Picture) -> bool:
    """Whether the picture's colours must be converted to BT.709 limited range: RGB, full range, or a
    declared matrix other than BT.709. Untagged YUV passes as it is (taken as BT.709, as players do for
    HD and as an ffmpeg xstack would pass it)."""
    fmt, color = picture.pix_fmt, picture.color
    if not fmt.startswith(("yuv", "nv", "p0", "p2", "y2", "uyvy", "yuyv")) or fmt.startswith("yuvj"):
        return True
    if re.search(r"\bpc\b", color):
        return True
    return bool(re.search(r"\b(bt470bg|smpte170m|bt2020nc|bt2020c|smpte240m|fcc|ycgco)\b", color))


def frame_bytes(width: int, height: int) -> int:
    return width * height * 3 // 2


def decode_input(picture: Picture, width: int, height: int, fps: float, j: int, *, index: int = 0,
                 out: str = "out", alone: bool = True) -> tuple[list[str], str]:
    """(ffmpeg input options ending in ``-i``, filter text) that decode ``picture`` as input ``index``
    from its frame ``j`` on, at width x height and ``fps``, into the filter label ``out``. ``alone``: the
    only input of its ffmpeg (which then decodes up to 1080p in one thread)."""
    want = picture.audio_start + j / fps  # on the decoder's clock without a seek
    seek = 0.0 if picture.kind == "image" or want <= SEEK_MARGIN_S * 2 else want - SEEK_MARGIN_S
    graph = cover_filter(picture, width, height, fps, round(want - seek, 6), src=f"{index}:v:0", out=out)
    # one decoding thread up to 1080p: ~0.3 s less CPU for 4 pictures, and one core decodes 1080p H.264
    # at ~200 fps, ahead of the encoder; bigger pictures (4K: ~60 fps a core) keep ffmpeg's threads. Beside
    # other inputs a decoder keeps them too: ffmpeg 5.1 runs a one-thread decoder in its main thread
    small = alone and picture.stored[0] * picture.stored[1] <= SINGLE_THREAD_PIXELS
    args = (["-threads", "1"] if small else []) + (["-c:v", picture.decoder] if picture.decoder else [])
    args += (["-ss", f"{seek:.6f}"] if seek > 0 else []) + ["-i", ffmpeg.url(picture.path)]
    return args, graph


class Reader:
    """Frames of one picture at ``width`` x ``height`` and ``fps``: ``get(j)`` is the yuv420p frame
    (a (h * 3 / 2, w) uint8 array, Y then U then V) shown at picture time ``j / fps``.

    Reading is forward and streaming; a jump back (a loop) or far ahead (a trim) restarts ffmpeg with
    a seek. Past the end of the picture its last frame is held. Call ``close()`` (or use ``with``).
    """

    def __init__(self, picture: Picture, width: int, height: int, fps: float):
        if width % 2 or height % 2:
            raise ValueError("tile sizes must be even")
        self.picture, self.width, self.height, self.fps = picture, width, height, fps
        self.size = frame_bytes(width, height)
        self.frame = np.zeros((height * 3 // 2, width), np.uint8)
        self.frame[:height] = 16
        self.frame[height:] = 128
        self.pos = 0  # index of the next frame the pipe gives
        self.have = -1  # index of the frame in self.frame (-1: none yet)
        self.ended = False
        self._proc: subprocess.Popen | None = None
        self._pump: _Pump | None = None

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self, j: int) -> None:
        self.close()
        args, graph = decode_input(self.picture, self.width, self.height, self.fps, j)
        args += ["-filter_complex", graph, "-map", "[out]", "-an", "-sn", "-f", "rawvideo", "-pix_fmt", "yuv420p",
                 "pipe:"]
        self._proc = ffmpeg.popen(args, stdout=subprocess.PIPE, needs=DECODE_NEEDS)
        ffmpeg.grow_pipe(self._proc.stdout)  # a bigger pipe lets a decoder run a frame ahead
        self._pump = _Pump(self._proc.stdout, self.size)
        self.pos, self.ended = j, False

    def _read(self) -> bool:
        """Take the next frame into self.frame; False at the end of the stream."""
        data = self._pump.take()
        if data is None:
            self._finish()
            return False
        self.frame = data.reshape(self.height * 3 // 2, self.width)
        self.have = self.pos
        self.pos += 1
        return True

    def _finish(self) -> None:
        proc, self._proc = self._proc, None
        self.ended = True
        self._stop_pump()
        if proc is not None:
            try:
                ffmpeg.finish(proc, what=f"decoding the picture of {self.picture.path}")
            except FFmpegError as e:
                raise InputError(f"cannot decode its picture ({e.message.split(': ffmpeg failed: ')[-1]})",
                                 path=self.picture.path) from None

    def prepare(self, j: int) -> None:
        """Start decoding towards frame ``j`` without waiting (decoders start in parallel)."""
        if self._proc is None and not self.ended and self.have < 0:
            self._start(0 if self.picture.kind == "image" else max(0, int(j)))

    def get(self, j: int) -> np.ndarray:
        j = 0 if self.picture.kind == "image" else max(0, int(j))
        if self.have == j:
            return self.frame
        if self.ended and j > self.have:
            return self.frame  # held: the picture ended before j
        if self._proc is None or j < self.pos or j - self.pos > SKIP_LIMIT_S * self.fps:
            self._start(j)
        while self.pos <= j:
            if not self._read():
                break
        return self.frame

    def _stop_pump(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.stop()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if self._pump is not None:
            self._pump.stopping.set()
        if proc is not None:
            ffmpeg.kill(proc)  # the pipe closes, so the pump thread ends
        self._stop_pump()


class _Pump:
    """A thread reading whole frames from a decoder's pipe a few frames ahead: the decoder keeps
    decoding while the frames are composed, instead of waiting to be scheduled for each read."""

    def __init__(self, pipe, size: int):
        self.pipe, self.size = pipe, size
        self.queue: queue.Queue = queue.Queue(maxsize=READ_AHEAD)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="avmix-picture", daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                pass
        return False

    def _run(self) -> None:
        try:
            while True:
                buf = np.empty(self.size, np.uint8)
                view, got = memoryview(buf), 0
                while got < self.size:
                    n = self.pipe.readinto(view[got:])
                    if not n:
                        break
                    got += n
                if got < self.size:
                    break
                if not self._put(buf):
                    return
        except (OSError, ValueError):  # the pipe was closed under us: stopping
            pass
        self._put(None)

    def take(self) -> np.ndarray | None:
        """The next frame (flat uint8), or None at the end of the stream."""
        while True:
            try:
                return self.queue.get(timeout=0.5)
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    return None

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


def still(picture: Picture, width: int, height: int, fps: float) -> np.ndarray:
    """The first frame of ``picture`` at the tile size (yuv420p); images are read once this way."""
    with Reader(picture, width, height, fps) as r:
        return r.get(0).copy()


def picture_index(time_s: float, fps: float) -> int:
    """Index of the decoded frame to show when an output frame starts at picture time ``time_s``.

    Decoded frame ``j`` holds what begins in picture time [j / fps, (j + 1) / fps) (``round=down``); an
    output frame that starts between two of them shows the nearer, so a picture event lands in the
    output frame its sound falls in, give or take half a frame, however the source was placed."""
    return int(math.floor(time_s * fps + 0.5))
