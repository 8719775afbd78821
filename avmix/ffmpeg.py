"""Finding and running the ffmpeg binary, and reading media info without ffprobe.

The binary is ``$AVMIX_FFMPEG``, else ``ffmpeg`` on PATH, else the one in the imageio-ffmpeg wheel,
so no system package is needed; :mod:`avmix.ffmpeg_select` checks that it is 5.1 or newer and has the
encoders and filters the job names (``needs``). Callers build their commands with ffmpeg-python (see
``ffargs``); the probe, ``ffmpeg -i FILE`` with no output, is the one list written here, since ffmpeg-python always
adds an output. Commands are lists (never a shell) and every path goes through :func:`url`, so a file
name can never be read as an option, a protocol or filter text.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from avmix import ffmpeg_select, paths, signals
from avmix.errors import FFmpegError, InputError

ERROR_LINES = 3  # lines of ffmpeg's stderr quoted in an error
PROBE_TIMEOUT = 60.0  # seconds


# the encoder and filters of the video stage's silent H.264 (video.writer); also what the stage cache
# keys name the build by (manifest), as every generate job renders one
VIDEO_NEEDS = frozenset({"libx264", "scale", "format", "setparams"})


def executable(needs: Iterable[str] = ()) -> str:
    """Path of the ffmpeg binary for a job that needs the encoders and filters ``needs``.

    Chosen on first use and kept for the process (see :mod:`avmix.ffmpeg_select`)."""
    return ffmpeg_select.choose(needs).path


def build(needs: Iterable[str] = ()) -> ffmpeg_select.Build:
    """The ffmpeg build a job with ``needs`` uses: path, version, identity, encoders, filters."""
    return ffmpeg_select.choose(needs)


def version() -> str:
    return build().version


def url(path: str | os.PathLike) -> str:
    """An ffmpeg input/output name for a local file that ffmpeg cannot misread."""
    return "file:" + os.path.abspath(os.fspath(path))


_NOISE = re.compile(r"\[[^\[\]]* @ 0x[0-9a-fA-F]+\]\s*|\[(?:warning|error|fatal|info|verbose|debug)\]\s*")
# "file:/abs/path: Invalid data ..." (5.1 names the input; 9.0 does not): avmix names the file itself
_INPUT_NAME = re.compile(r"^file:.*?: (?=[A-Z])")


# lines ffmpeg 6.0 and later add after the error itself (its threads and tasks winding down): quoting
# them instead of the cause would make a message depend on the build
_AFTERMATH = re.compile(r"^(Terminating thread with return code|Task finished with error code|Nothing was written "
                        r"into output file|Error sending frames to consumers|Could not open encoder before EOF|"
                        r"Conversion failed)")


def last_lines(stderr: bytes | str, n: int = ERROR_LINES) -> str:
    """ffmpeg's last ``n`` stderr lines that say what went wrong, joined on one line, without its
    '[muxer @ 0x55..]' and '[warning]' tags (addresses that differ on every run and say nothing to a user)."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    lines = [_INPUT_NAME.sub("", _NOISE.sub("", ln).strip()) for ln in stderr.strip().splitlines()]
    lines = [ln for ln in lines if ln]
    causes = [ln for ln in lines if not _AFTERMATH.match(ln)] or lines
    return " | ".join(causes[-n:]) if causes else "no error output"


def base_args(needs: Iterable[str] = ()) -> list[str]:
    return [executable(needs), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]


def run(args: list[str], *, timeout: float | None = None, what: str = "ffmpeg", input: bytes | None = None,
        needs: Iterable[str] = ()) -> bytes:
    """Run ffmpeg with ``args`` (without the binary); return stdout, or raise FFmpegError quoting stderr.
    ``needs``: the encoders and filters ``args`` use beyond decoding."""
    try:
        code, out, err = run_command(base_args(needs) + list(args), input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FFmpegError(f"{what}: ffmpeg timed out after {timeout:.0f} s") from None
    except OSError as e:
        raise FFmpegError(f"{what}: cannot run ffmpeg: {e.strerror}") from None
    if code != 0:
        raise FFmpegError(f"{what}: ffmpeg failed: {_why(code, err)}")
    return out


def run_command(cmd: list[str], *, input: bytes | None = None, timeout: float | None = None,
                stdout=subprocess.PIPE) -> tuple[int, bytes, bytes]:
    """(exit code, stdout, stderr) of ``cmd``; the child is killed on timeout (TimeoutExpired is
    raised) and on Ctrl-C, so none outlives the call."""
    proc = start(cmd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL, stdout=stdout,
                 stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except BaseException:
        kill(proc)
        raise
    return proc.returncode, out or b"", err or b""


def start(cmd: list[str], **popen_args) -> subprocess.Popen:
    """``subprocess.Popen(cmd, ...)`` that Ctrl-C cannot split in two: a SIGINT/SIGTERM arriving while
    the child is being started is held until Popen returns, then the child is killed and the signal
    handled. (Otherwise the caller may never get the Popen to kill, and an ffmpeg left running writes
    its output after the temp file was cleaned up.)"""
    held: list[int] = []
    proc = None
    try:
        with _held_signals(held):
            proc = subprocess.Popen(cmd, **popen_args)
        if held:
            kill(proc)  # before the signal: its default action may end this process at once
            _redeliver(held[0])
    except BaseException:  # also a signal arriving while the old handlers are being put back
        if proc is not None:
            kill(proc)
        raise
    return proc


def _held_signals(held: list[int]):
    """Signals that arrive inside the block are only noted in ``held``."""
    return signals.handling(lambda signum, frame: held.append(signum))


def _redeliver(signum: int) -> None:
    handler = signal.getsignal(signum)
    if callable(handler):
        handler(signum, None)  # raises KeyboardInterrupt (or avmix.errors.Terminated)
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)


def popen(args: list[str], *, stdin=None, stdout=None, needs: Iterable[str] = ()) -> subprocess.Popen:
    """Start ffmpeg for streaming; stderr goes to a pipe that :func:`finish` reads."""
    return start(base_args(needs) + list(args), stdin=stdin if stdin is not None else subprocess.DEVNULL,
                 stdout=stdout, stderr=subprocess.PIPE)


def grow_pipe(pipe, size: int = 1 << 20) -> None:
    """Ask for a pipe of ``size`` bytes (a frame or more): fewer wake-ups of ffmpeg and of the thread
    feeding or draining it. Ignored where pipes cannot grow (not Linux, or above the system's limit)."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, size)
    except (ImportError, AttributeError, OSError):
        pass


def finish(proc: subprocess.Popen, *, what: str, timeout: float = 600.0) -> None:
    """Wait for a streaming ffmpeg and raise FFmpegError if it failed. Kills it on timeout."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        raise FFmpegError(f"{what}: ffmpeg timed out after {timeout:.0f} s") from None
    except BaseException:
        kill(proc)
        raise
    if proc.returncode != 0:
        raise FFmpegError(f"{what}: ffmpeg failed: {_why(proc.returncode, err or b'')}")


def run_progress(args: list[str], on, *, what: str, needs: Iterable[str] = (), timeout: float = 600.0) -> None:
    """Run ffmpeg with ``args`` (without the binary; they ask for ``-progress pipe:1``), handing each
    ``key=value`` line it reports to ``on(key, value)``. FFmpegError if it fails; killed on any error."""
    proc = popen(args, stdout=subprocess.PIPE, needs=needs)
    try:
        for raw in proc.stdout:
            key, _, value = raw.decode("ascii", "replace").strip().partition("=")
            on(key, value)
        finish(proc, what=what, timeout=timeout)
    except BaseException:
        kill(proc)
        raise


def _why(code: int, stderr: bytes) -> str:
    """ffmpeg's last error lines, or the signal that killed it (SIGXFSZ: file too large, SIGKILL: the
    out-of-memory killer or a user)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}" + ("" if not stderr.strip() else f" ({last_lines(stderr)})")
    return last_lines(stderr)


def kill(proc: subprocess.Popen) -> None:
    """Stop a child ffmpeg and reap it, so none is left behind."""
    if proc.poll() is None:
        proc.kill()
    try:
        proc.communicate(timeout=10)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        pass


# ----------------------------------------------------------------------------------------- probing

_LAYOUTS = {"mono": 1, "stereo": 2, "2.1": 3, "3.0": 3, "quad": 4, "4.0": 4, "4.1": 5, "5.0": 5,
            "5.1": 6, "6.0": 6, "6.1": 7, "7.0": 7, "7.1": 8, "hexagonal": 6, "octagonal": 8, "downmix": 2}


IMAGE_FORMATS = ("png_pipe", "jpeg_pipe", "image2", "apng", "webp_pipe", "bmp_pipe")  # ffmpeg's image demuxers


@dataclass
class AudioStream:
    codec: str
    sample_rate: int
    channels: int


@dataclass
class VideoStream:
    codec: str
    width: int
    height: int
    fps: float | None
    pix_fmt: str = ""  # e.g. yuv420p, yuv420p10le ("" when ffmpeg does not say)


@dataclass
class MediaInfo:
    """What ``ffmpeg -i`` says of a file: container duration and its first audio and video streams."""

    path: str
    format: str
    duration: float | None
    audio: AudioStream | None = None
    video: VideoStream | None = None
    streams: list[str] = field(default_factory=list)

    @property
    def still(self) -> bool:
        """A still image: read by one of ffmpeg's image demuxers, or a lone PNG or JPEG frame."""
        v = self.video
        return v is not None and (self.format.split(",")[0] in IMAGE_FORMATS or v.codec in ("png", "mjpeg")
                                  and self.audio is None and (self.duration is None or self.duration <= 0.05))


def _channels(desc: str) -> int:
    m = re.match(r"(\d+) channels", desc)
    if m:
        return int(m.group(1))
    key = desc.split("(")[0].strip()
    return _LAYOUTS.get(key, 2)


def parse_info(path: str, stderr: str) -> MediaInfo:
    fmt = re.search(r"Input #0, ([^,]+(?:,[^,\s]+)*), from", stderr)
    dur = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", stderr)
    duration = None
    if dur:
        h, m, s = dur.groups()
        duration = int(h) * 3600 + int(m) * 60 + float(s)
    info = MediaInfo(path=path, format=fmt.group(1) if fmt else "unknown", duration=duration)
    for line in stderr.splitlines():
        line = line.strip()
        if not line.startswith("Stream #0:"):
            continue
        info.streams.append(line)
        am = re.search(r"Audio: ([^,\s]+)[^,]*, (\d+) Hz, ([^,]+)", line)
        if am and info.audio is None:
            info.audio = AudioStream(codec=am.group(1), sample_rate=int(am.group(2)), channels=_channels(am.group(3)))
        vm = re.search(r"Video: ([^,\s]+).*?, (\d{1,5})x(\d{1,5})", line)
        if vm and info.video is None and "attached pic" not in line:
            # whole thousands read "1k fps"
            fm = re.search(r"([\d.]+)(k?) fps", line) or re.search(r"([\d.]+)(k?) tbr", line)
            pm = re.search(r"Video: [^,]+, ([a-z0-9][a-z0-9_]*)", line)  # the field after the codec
            fps = float(fm.group(1)) * (1000 if fm.group(2) else 1) if fm else None
            info.video = VideoStream(codec=vm.group(1), width=int(vm.group(2)), height=int(vm.group(3)),
                                     fps=fps, pix_fmt=pm.group(1) if pm else "")
    return info


_KNOWN: dict[tuple[str, int, int], str] = {}  # ``-i`` text another run already printed, by file state


def remember_info(path: str | os.PathLike, stderr: str) -> None:
    """Keep what another ffmpeg run on ``path`` printed about its input (up to its outputs), so that
    :func:`probe` of the unchanged file needs no ffmpeg start of its own."""
    key = paths.file_key(os.fspath(path))
    head = re.split(r"\n(?:Stream mapping:|Output #0)", stderr, maxsplit=1)[0]
    if key is not None and "Input #0" in head:
        _KNOWN[key] = head


def probe(path: str | os.PathLike) -> MediaInfo:
    """Media info of ``path`` from ``ffmpeg -i`` (no ffprobe needed). Raises InputError if unreadable."""
    path = os.fspath(path)
    key = paths.file_key(path)
    if key in _KNOWN:
        return parse_info(path, _KNOWN[key])
    cmd = [executable(), "-hide_banner", "-nostdin", "-i", url(path)]
    try:
        _, _, err_bytes = run_command(cmd, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise InputError("reading it timed out", path=path) from None
    except OSError as e:
        raise FFmpegError(f"cannot run ffmpeg: {e.strerror}") from None
    err = err_bytes.decode("utf-8", "replace")
    if "Input #0" not in err:
        why = re.sub(r"^Error opening input( files)?: ", "", last_lines(err, 1))
        raise InputError(f"not a media file ffmpeg can read ({why})", path=path)
    return parse_info(path, err)


def has_encoder(name: str) -> bool:
    return name in build().encoders


def exists(path: str | os.PathLike) -> bool:
    return Path(path).exists()
