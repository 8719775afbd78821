"""The mux stage: put a video and an audio track into one file, fitted to one length.

``fit="audio"`` (default) makes the result as long as the audio: a longer video is cut; a shorter one
has its last frame held (``tpad=stop_mode=clone``) when it covers at least half of the audio, and is
looped from the start (``-stream_loop -1``) when it covers less (a short clip held for most of the
audio would look frozen). ``fit="video"`` pads the audio with silence (``apad``) or cuts it to the
video's length; ``fit="shortest"`` cuts both to the shorter one. A still image (png, jpg) counts as a
one-frame video, so ``render cover.png song.wav`` makes a video of the picture for the whole song.

Containers by extension: .mp4/.m4v/.mov/.mkv get H.264 yuv420p + AAC (mp4/mov with ``+faststart``),
.webm gets VP9 + Opus. When the video already is H.264 yuv420p of the right length, it is copied
(no re-encode). Output is written to a temporary file beside the target and renamed into place.

The audio may be encoded ahead (:class:`AudioEncode`, which ``generate`` runs while the video renders)
and its stream copied by the mux: the same encoder, options and input, so the same samples, priming and
length as encoding it in the mux.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import ffmpeg as ffmpeg_python  # ffmpeg-python, only used to build the command line

from avmix import ffargs, ffmpeg, paths
from avmix.errors import InputError, UsageError
from avmix.progress import ProgressFn, report

FITS = ("audio", "video", "shortest")
LOOP_BELOW = 0.5  # loop the video instead of holding its last frame when it covers < this of the audio
DEFAULT_FPS = 25.0  # when the video's rate is unknown
MUX_TIMEOUT = 6 * 3600.0  # seconds; a mux of hours of video is still bounded

# extension -> (ffmpeg format, video codec, audio codec)
CONTAINERS = {
    ".mp4": ("mp4", "libx264", "aac"),
    ".m4v": ("mp4", "libx264", "aac"),
    ".mov": ("mov", "libx264", "aac"),
    ".mkv": ("matroska", "libx264", "aac"),
    ".webm": ("webm", "libvpx-vp9", "libopus"),
}
AUDIO_BITRATE = "192k"
# output extension -> the file an audio encode made ahead is kept in. Copying its AAC from an MP4 gives
# the very packets, priming and length of an encode in the mux on 5.1 and 9.0 alike; into .mkv it does
# only from .m4a on 5.1 and only from .mka on 9.0, and Opus into .webm moves its start on 5.1: those
# containers encode their audio in the mux.
EARLY_AUDIO = {".mp4": ".m4a", ".m4v": ".m4a", ".mov": ".m4a"}


def audio_encoding(output: str | os.PathLike, bitrate: str) -> dict:
    """The audio encoder options of ``output``'s container: the mux and :class:`AudioEncode` both use
    these, so an early encode is the one the mux would make."""
    return {"acodec": container(output)[2], "b:a": bitrate}


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def container(output: str | os.PathLike) -> tuple[str, str, str]:
    """(format, video codec, audio codec) for an output name; UsageError for an unknown extension."""
    ext = Path(output).suffix.lower()
    if ext not in CONTAINERS:
        raise UsageError(f"unknown video container {ext or '(no extension)'!r}", path=output,
                         hint="use one of " + ", ".join(CONTAINERS))
    return CONTAINERS[ext]


def check_options(*, fit: str = "audio", crf: int = 18, preset: str = "veryfast",
                  audio_bitrate: str = AUDIO_BITRATE) -> None:
    """UsageError for a bad fit, CRF, x264 preset or bitrate (callers check before doing any work)."""
    if fit not in FITS:
        raise UsageError(f"unknown --fit {fit!r}", hint="use audio, video or shortest")
    if not isinstance(crf, int) or not 0 <= crf <= 51:
        raise UsageError(f"--crf {crf} out of range 0..51")
    if preset not in X264_PRESETS:
        raise UsageError(f"unknown --preset {preset!r}", hint="use one of " + ", ".join(X264_PRESETS))
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", str(audio_bitrate))
    if not m:
        raise UsageError(f"bad --audio-bitrate {audio_bitrate!r}", hint="e.g. 192k")
    bits = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    if not 8e3 <= bits <= 512e3:  # Opus (WebM) takes 6-510 kbit/s; AAC beyond 512k buys nothing
        raise UsageError(f"--audio-bitrate {audio_bitrate} is out of range", hint="use 8k to 512k")


def _vp9_options(crf: int, preset: str) -> dict:
    # VP9's quality scale is wider than x264's: crf 18 (x264) looks about like 31 (VP9).
    fast = X264_PRESETS.index(preset) <= X264_PRESETS.index("fast")
    return {"crf": min(63, round(crf * 1.7)), "b:v": 0, "row-mt": 1,
            "deadline": "realtime" if fast else "good", "cpu-used": 8 if fast else 2}


def render(video: str | os.PathLike, audio: str | os.PathLike, output: str | os.PathLike, *,
           fit: str = "audio", crf: int = 18, preset: str = "veryfast", audio_bitrate: str = AUDIO_BITRATE,
           overwrite: bool = False, progress: ProgressFn = None,
           encoded_audio: str | os.PathLike | None = None, video_info: ffmpeg.MediaInfo | None = None) -> dict:
    """Mux ``video`` (its first video stream) with ``audio`` (its first audio stream) into ``output``.

    ``encoded_audio``: ``audio`` already encoded for this output by :class:`AudioEncode` (at
    ``audio_bitrate``); its stream is copied when the output keeps the audio whole (as ``fit="audio"``
    does), else the audio is encoded here as without it. ``video_info``: what the caller knows of
    ``video`` because it wrote it (:func:`avmix.video.writer.described`); None: ``video`` is probed.

    Returns ``{"output", "duration" (s), "fit", "video_copied", "video_codec", "audio_codec", "audio_copied",
    "width", "height", "fps", "method" ("cut"|"hold"|"loop"|"as-is")}``.
    """
    check_options(fit=fit, crf=crf, preset=preset, audio_bitrate=audio_bitrate)
    fmt, vcodec, acodec = container(output)
    video, audio = paths.check_input(video), paths.check_input(audio)
    out = paths.check_output(output, [video, audio], overwrite=overwrite)

    vinfo = video_info or ffmpeg.probe(video)
    if vinfo.video is None:
        raise InputError("has no video stream", path=video, hint="give a video file as the first input")
    # decoded by avmix's reader as the compose commands do: ffmpeg's mux would decode past a truncated or
    # corrupt file without a word; the exact length also comes from it (not a header's estimate)
    from avmix.audio import io as audio_io  # numpy, soundfile: not on every CLI start, which imports mux

    af = audio_io.open_checked(audio)
    da, audio_local = af.duration, af.local_path  # (a temp copy of stdin or a pipe)
    af.close()
    fps = vinfo.video.fps or DEFAULT_FPS
    # a still image has no duration: it is one frame, looped to the length needed
    dv = vinfo.duration or 1.0 / fps
    target = {"audio": da, "video": dv, "shortest": min(da, dv)}[fit]
    frame = 1.0 / fps

    vin_opts: dict = {}
    method = "as-is" if abs(dv - target) < frame else ("cut" if dv > target else "hold")
    if method == "hold" and dv < LOOP_BELOW * target:
        method = "loop"
        vin_opts["stream_loop"] = -1
    vin = ffmpeg_python.input(ffargs.slot(0), **vin_opts)
    early = (encoded_audio is not None and target == da
             and EARLY_AUDIO.get(Path(output).suffix.lower()) == Path(encoded_audio).suffix.lower())
    ain = ffmpeg_python.input(ffargs.slot(1))

    copy = (vcodec == "libx264" and vinfo.video.codec == "h264" and method == "as-is"
            and vinfo.video.pix_fmt == "yuv420p")  # not yuv420p10le
    v = vin["v:0"]
    needs = set() if early else {acodec}
    if not copy:
        needs.add(vcodec)
        if method == "hold":
            v = v.filter("tpad", stop_mode="clone", stop_duration=f"{target - dv + 2 * frame:.6f}")
            needs.add("tpad")
        if vinfo.video.width % 2 or vinfo.video.height % 2:  # yuv420p needs even sizes
            v = v.filter("scale", "trunc(iw/2)*2", "trunc(ih/2)*2")
            needs.add("scale")
    a = ain["a:0"]
    if da < target:
        a = a.filter("apad")
        needs.add("apad")

    opts: dict = {"f": fmt, "t": f"{target:.6f}"}
    opts.update({"acodec": "copy"} if early else audio_encoding(output, audio_bitrate))
    if fmt in ("matroska", "webm"):
        # The audio encoder's priming samples (AAC 1024, Opus 312) lie before zero. By default ffmpeg 5.1
        # shifts the whole file to start them at zero, so the video starts 21 ms late and gains a frame
        # when decoded at a constant rate; 9.0 writes them at negative times. Both: video from zero.
        opts["avoid_negative_ts"] = "disabled"
    if copy:
        opts["vcodec"] = "copy"
    elif vcodec == "libx264":
        opts.update(vcodec="libx264", pix_fmt="yuv420p", crf=crf, preset=preset)
    else:
        opts.update(vcodec=vcodec, pix_fmt="yuv420p", **_vp9_options(crf, preset))
    if fmt in ("mp4", "mov"):
        opts["movflags"] = "+faststart"

    with paths.atomic_path(out) as tmp:
        args = ffmpeg_python.output(v, a, ffargs.slot(2), **opts).global_args(
            "-nostats", "-progress", "pipe:1").get_args()
        args = ffargs.fill(args, [video, encoded_audio if early else audio_local, tmp])  # names need not be UTF-8
        _run_with_progress(args, target, progress, needs)
    return {"output": os.fspath(out), "duration": target, "fit": fit, "video_copied": copy,
            "video_codec": "h264" if copy else vcodec, "audio_codec": acodec, "audio_copied": early, "method": method,
            "width": vinfo.video.width - vinfo.video.width % 2,
            "height": vinfo.video.height - vinfo.video.height % 2, "fps": fps}


class AudioEncode:
    """The audio of a future mux into ``output``'s container, encoded now into ``path`` (an
    :data:`EARLY_AUDIO` file), by an ffmpeg running in the background: the same input stream, encoder
    and bitrate as :func:`render` would use. ``wait()`` finishes it and moves the file into place;
    ``cancel()`` stops it and leaves nothing. A context manager that cancels unless waited for."""

    def __init__(self, audio: str | os.PathLike, path: str | os.PathLike, output: str | os.PathLike, *,
                 audio_bitrate: str = AUDIO_BITRATE):
        enc = audio_encoding(output, audio_bitrate)
        self.path = Path(path)
        self._atomic = paths.atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._proc = None
        try:
            stream = ffmpeg_python.input(ffargs.slot(0))["a:0"]
            args = ffmpeg_python.output(stream, ffargs.slot(1), f="mp4", **enc).get_args()
            self._proc = ffmpeg.popen(ffargs.fill(args, [audio, tmp]), stdout=subprocess.DEVNULL,
                                      needs={enc["acodec"]})
        except BaseException as e:
            self._stop(e)
            raise

    def wait(self) -> Path:
        """Finish the encode (FFmpegError if it failed) and return the file's path."""
        if self._atomic is not None:
            try:
                ffmpeg.finish(self._proc, what="audio encoding", timeout=MUX_TIMEOUT)
            except BaseException as e:
                self._stop(e)
                raise
            atomic, self._atomic = self._atomic, None
            atomic.__exit__(None, None, None)
        return self.path

    def cancel(self) -> None:
        if self._atomic is not None:
            self._stop(InterruptedError("cancelled"))

    def _stop(self, e: BaseException) -> None:
        if self._proc is not None:
            ffmpeg.kill(self._proc)
        atomic, self._atomic = self._atomic, None
        if atomic is not None:
            atomic.__exit__(type(e), e, e.__traceback__)  # removes the temporary file

    def __enter__(self) -> "AudioEncode":
        return self

    def __exit__(self, *exc) -> bool:
        self.cancel()
        return False


def _run_with_progress(args: list[str], total: float, progress: ProgressFn, needs: set[str]) -> None:
    """Run ffmpeg, turning its ``-progress`` lines (out_time_us) into progress('mux', s, total)."""
    def on(key: str, value: str) -> None:
        if key == "out_time_us" and value.isdigit():
            report(progress, "mux", min(total, int(value) / 1e6), total)

    report(progress, "mux", 0.0, total)
    ffmpeg.run_progress(args, on, what="mux", needs=needs, timeout=MUX_TIMEOUT)
    report(progress, "mux", total, total)
