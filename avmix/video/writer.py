"""Streaming raw RGB frames into ffmpeg to make a silent H.264 video.

Frames may be drawn at a smaller size than the output (``src_size``): ffmpeg then upscales them in the
same encode, which is much cheaper than drawing every output pixel in numpy. A background thread feeds
ffmpeg's pipe so that drawing the next frame overlaps writing (and encoding) this one.
"""
from __future__ import annotations

import os
import queue
import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import ffmpeg as ffmpeg_python
import numpy as np

from avmix import ffargs, ffmpeg
from avmix.errors import FFmpegError, UsageError
from avmix.paths import atomic_path

QUEUE_FRAMES = 3  # frames buffered between the drawing thread and the pipe
MOV_LIKE = (".mp4", ".mov", ".m4v")
MAX_FPS = 120
GOP_SECONDS = 2.0


def rate_string(fps: float) -> str:
    """ffmpeg rational for ``fps`` (29.97 -> 30000/1001)."""
    return str(Fraction(fps).limit_denominator(1001))


def check_size(width: int, height: int, fps: float) -> None:
    if not (isinstance(width, int) and isinstance(height, int)) or width <= 0 or height <= 0:
        raise UsageError(f"bad video size {width}x{height}: width and height must be positive integers")
    if width % 2 or height % 2:
        raise UsageError(f"bad video size {width}x{height}: H.264 yuv420p needs even width and height")
    if width > 8192 or height > 8192:
        raise UsageError(f"bad video size {width}x{height}: at most 8192x8192")
    if not (1 <= fps <= MAX_FPS):
        raise UsageError(f"bad fps {fps}: must be between 1 and {MAX_FPS}")


def encode_args(output: str | os.PathLike, *, width: int, height: int, fps: float, src_size: tuple[int, int],
                crf: int, preset: str, movflags: bool, pix_fmt: str = "rgb24",
                x264_params: str | None = None, qp: int | None = None) -> list[str]:
    """ffmpeg arguments (without the binary): raw frames on stdin -> H.264 yuv420p BT.709 in the file
    ``output``, at ``crf``, or at the constant quantizer ``qp`` when it is given."""
    sw, sh = src_size
    stream = ffmpeg_python.input("pipe:", format="rawvideo", pix_fmt=pix_fmt, s=f"{sw}x{sh}",
                                 framerate=rate_string(fps))
    if pix_fmt != "yuv420p" or (sw, sh) != (width, height):  # yuv420p BT.709 at size goes straight in
        scale = {"out_color_matrix": "bt709", "out_range": "tv"}
        if (sw, sh) != (width, height):
            scale["flags"] = "bicubic"
        stream = stream.filter("scale", width, height, **scale)
    stream = (stream.filter("format", "yuv420p")
              .filter("setparams", color_primaries="bt709", color_trc="bt709", colorspace="bt709", range="tv"))
    out_opts = x264_options(fps, crf=crf, preset=preset, movflags=movflags, x264_params=x264_params, qp=qp)
    return ffargs.fill(ffmpeg_python.output(stream, ffargs.slot(0), **out_opts).get_args(), [output])


def x264_options(fps: float, *, crf: int, preset: str, movflags: bool, x264_params: str | None = None,
                 qp: int | None = None) -> dict:
    """ffmpeg output options (ffmpeg-python's keywords) of a silent H.264 yuv420p BT.709 video."""
    rate = {"crf": crf} if qp is None else {"qp": qp}
    out_opts = {"vcodec": "libx264", "preset": preset, **rate, "pix_fmt": "yuv420p",
                "g": max(1, round(GOP_SECONDS * fps)),  # a keyframe every 2 s: quick seeking
                "colorspace": "bt709", "color_primaries": "bt709", "color_trc": "bt709",
                "color_range": "tv", "an": None}
    if x264_params:
        out_opts["x264-params"] = x264_params
    if movflags:
        out_opts["movflags"] = "+faststart"
    return out_opts


def described(path: str | os.PathLike, *, width: int, height: int, fps: float, frames: int) -> ffmpeg.MediaInfo:
    """What ``ffmpeg.probe`` says of the file a :class:`VideoWriter` made of ``frames`` frames."""
    return ffmpeg.MediaInfo(os.fspath(path), "mov,mp4,m4a,3gp,3g2,mj2", duration=frames / fps,
                            video=ffmpeg.VideoStream("h264", width, height, fps, "yuv420p"))


class VideoWriter:
    """Context manager: ``with VideoWriter(p, width=1280, height=720, fps=30) as w: w.write(frame)``.

    ``frame`` is uint8 (h, w, 3) RGB at ``src_size`` (default: the output size), or with
    ``pix_fmt="gbrp"`` planar uint8 (3, h, w) in G, B, R order (cheaper to draw into with numpy), or with
    ``pix_fmt="yuv420p"`` a (h * 3 / 2, w) array of the Y, U and V planes (BT.709, limited range). The file
    appears at ``path`` only when the block finishes without error; on any error ffmpeg is killed and
    nothing is left.
    """

    def __init__(self, path: str | os.PathLike, *, width: int, height: int, fps: float, crf: int = 18,
                 preset: str = "veryfast", src_size: tuple[int, int] | None = None, pix_fmt: str = "rgb24",
                 x264_params: str | None = None, qp: int | None = None):
        check_size(width, height, fps)
        if pix_fmt not in ("rgb24", "gbrp", "yuv420p"):
            raise ValueError(f"pix_fmt must be rgb24, gbrp or yuv420p, not {pix_fmt!r}")
        self.pix_fmt = pix_fmt
        self.path = Path(path)
        self.width, self.height, self.fps = width, height, fps
        self.crf, self.qp, self.preset, self.x264_params = crf, qp, preset, x264_params
        self.src_size = tuple(src_size) if src_size else (width, height)
        self.frames = 0
        self._atomic = None
        self._proc: subprocess.Popen | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self._thread: threading.Thread | None = None
        self._pipe_error: BaseException | None = None

    # -- context manager
    def __enter__(self) -> "VideoWriter":
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            args = encode_args(tmp, width=self.width, height=self.height, fps=self.fps,
                               src_size=self.src_size, crf=self.crf, preset=self.preset,
                               movflags=self.path.suffix.lower() in MOV_LIKE, pix_fmt=self.pix_fmt,
                               x264_params=self.x264_params, qp=self.qp)
            self._proc = ffmpeg.popen(args, stdin=subprocess.PIPE, needs=ffmpeg.VIDEO_NEEDS)
            ffmpeg.grow_pipe(self._proc.stdin)
            self._thread = threading.Thread(target=self._feed, name="avmix-video-pipe", daemon=True)
            self._thread.start()
        except BaseException as e:  # Ctrl-C while starting: no ffmpeg may outlive us to write the temp file
            self._abort()
            self._atomic.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._close()
            else:
                self._abort()
        except BaseException as e:
            self._abort()
            self._atomic.__exit__(type(e), e, e.__traceback__)
            raise
        self._atomic.__exit__(exc_type, exc, tb)
        return False

    # -- writing
    def write(self, frame: np.ndarray) -> None:
        """Queue one uint8 frame at ``src_size``: (h, w, 3) RGB, (3, h, w) G, B, R planes for gbrp, or
        (h * 3 / 2, w) Y, U, V planes for yuv420p."""
        w, h = self.src_size
        shape = {"rgb24": (h, w, 3), "gbrp": (3, h, w), "yuv420p": (h * 3 // 2, w)}[self.pix_fmt]
        if frame.shape != shape or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 {shape}, got {frame.dtype} {frame.shape}")
        if self._pipe_error is not None:
            self._raise_dead()
        data = np.ascontiguousarray(frame).tobytes()
        while True:
            try:
                self._queue.put(data, timeout=0.5)
                break
            except queue.Full:
                if self._pipe_error is not None or not self._thread.is_alive():
                    self._raise_dead()
        self.frames += 1

    def _feed(self) -> None:
        stdin = self._proc.stdin
        try:
            while True:
                data = self._queue.get()
                if data is None:
                    break
                stdin.write(data)
        except BaseException as e:  # broken pipe: ffmpeg died; the drawing thread raises
            self._pipe_error = e
            while True:  # unblock a producer waiting on a full queue
                try:
                    if self._queue.get_nowait() is None:
                        break
                except queue.Empty:
                    break

    def _raise_dead(self) -> None:
        proc = self._proc
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # the pipe broke but ffmpeg hangs: stop it before reading stderr
            proc.kill()
            proc.wait()
        err = b""
        try:
            err = proc.stderr.read() or b""
        except (OSError, ValueError):
            pass
        raise FFmpegError(f"video encoding: ffmpeg failed: {ffmpeg.last_lines(err)}", path=self.path)

    def _stop_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            while True:
                try:
                    self._queue.put(None, timeout=0.5)
                    break
                except queue.Full:
                    if not self._thread.is_alive():
                        break
            self._thread.join()

    def _close(self) -> None:
        self._stop_thread()
        if self._pipe_error is not None:
            self._raise_dead()
        # closes stdin, waits, quotes stderr on failure
        ffmpeg.finish(self._proc, what=f"{self.path}: video encoding")

    def _abort(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            ffmpeg.kill(proc)  # closes the pipe, so the feeding thread ends with an error
        except Exception:  # a half-finished communicate() leaves Popen unable to communicate again
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        # wake the feeding thread whether it is blocked writing (the kill broke the pipe) or waiting
        while self._thread is not None and self._thread.is_alive():
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
            self._thread.join(timeout=0.05)
