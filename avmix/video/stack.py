"""The composite backend in one ffmpeg filter graph, for layouts that stand still.

When every tile keeps its box for the whole video (grid, row, column, a picture stem) and each picture's
frames follow one another (its first frame held until its track starts, its last after it ends, no
loop), one ffmpeg decodes the pictures, lights each tile and stacks them (``xstack``) into the encoder:
no frame passes through a pipe or through Python. Each tile's lighting is the numpy compositor's, sent
by its own ``sendcmd`` on the frames where :func:`avmix.video.composite.calm` changes it: ``eq``
scales the picture about black (Y) and grey (U, V) through its look-up table, within 1 of the exact
value, and ``fillborders`` paints the border. Everything else (spotlight, PiP, crossfades, loops,
captions, procedural elements) is drawn by :class:`avmix.video.composite.Compositor`.
"""
from __future__ import annotations

import functools
import os
import re
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from avmix import ffmpeg
from avmix.errors import FFmpegError, InputError
from avmix.paths import atomic_path
from avmix.progress import ProgressFn, report
from avmix.video import composite
from avmix.video import layout as lay
from avmix.video import pictures, writer

NEEDS = pictures.DECODE_NEEDS | {"libx264", "trim", "tpad", "sendcmd", "eq", "fillborders", "xstack", "pad",
                                 "setparams"}
# eq takes its exact path (a look-up table) only where a gamma is not 1 (Y: gamma, U and V: the square
# root of gamma_b or gamma_r over gamma_g); a gamma of 1.000001 moves no level
EQ_LUT = "gamma=1.000001:gamma_r=1.000002:gamma_b=1.000002"
# ffmpeg turns the RGB of a painted colour into limited-range BT.601 Y, U, V (5.1 and 9.0 alike)
_TO_601 = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]) * \
    (np.array([219.0, 224.0, 224.0])[:, None] / 255)
_FROM_601 = np.linalg.inv(_TO_601)
_BLACK_601 = np.array([16.0, 128.0, 128.0])
# one ffmpeg renders this many keyframe intervals (20 s at 30 fps), then the next goes on: sendcmd holds
# every change of its script in memory (~50 KB each in ffmpeg 5.1: a page for each token it parses), which
# a long video would pile up. Each piece seeks its pictures afresh: 10-minute jobs take ~6% longer
PIECE_GOPS = 10
_NEAR = np.array([(r, g, b) for r in (-1, 0, 1) for g in (-1, 0, 1) for b in (-1, 0, 1)], np.float64)


@dataclass
class Run:
    """How a picture's frames are shown: from frame ``first``, that frame held for ``hold`` output frames,
    then ``count`` frames in turn, then the last held."""

    first: int
    hold: int
    count: int


def straight_run(t: composite.Track, frames: int, fps: float, sample_rate: int) -> Run | None:
    """The picture frames a track shows, as a :class:`Run`; None when they do not follow one another
    (a loop)."""
    if t.picture.kind == "image":
        return Run(0, 0, 1)
    j = np.array([pictures.picture_index(lay.picture_time(k, fps, start=t.start, end=t.end, offset=t.offset,
                                                          length=t.length, loop=t.loop, sample_rate=sample_rate),
                                         fps) for k in range(frames)], np.int64)
    steps = np.diff(j)
    moving = np.flatnonzero(steps)
    if np.any((steps != 0) & (steps != 1)) or (len(moving) and moving[-1] - moving[0] + 1 != len(moving)):
        return None
    return Run(int(j[0]), int(moving[0]) if len(moving) else 0, int(j[-1] - j[0]) + 1)


def plan(tracks: list[composite.Track], shots: list[lay.Shot], frames: int, fps: float, sample_rate: int, *,
         captions: bool) -> list[Run] | None:
    """The :class:`Run` of each shot's picture when the graph can draw the shots: whole-video tiles of
    pictures, none overlapping, each picture's frames following one another; else None."""
    if captions or not shots or not lay.apart(shots):
        return None
    for s in shots:
        if s.start != 0 or s.end != frames or s.fade or tracks[s.index].picture is None:
            return None
    runs = [straight_run(tracks[s.index], frames, fps, sample_rate) for s in shots]
    return None if any(r is None for r in runs) else runs


def paint_rgb(rgb: tuple[float, float, float]) -> str:
    """The ffmpeg colour (0xRRGGBB) that ffmpeg paints as the BT.709 limited-range Y, U, V of ``rgb``
    (0..1): the 8-bit RGB whose BT.601 conversion comes nearest."""
    return _paint(tuple(round(c) for c in composite.yuv(rgb)))


@functools.lru_cache(maxsize=4096)
def _paint(want: tuple[int, int, int]) -> str:
    guess = np.rint(_FROM_601 @ (np.array(want, np.float64) - _BLACK_601))
    candidates = np.clip(guess + _NEAR, 0, 255)  # the rounded guess and its 26 neighbours
    err = np.abs(candidates @ _TO_601.T + _BLACK_601 - want).max(axis=1)
    return "0x%02x%02x%02x" % tuple(int(v) for v in candidates[int(np.argmin(err))])


def _eq(g: float) -> dict[str, str]:
    """eq options that map Y to 16 + (Y - 16) g and U, V to 128 + (U - 128) g, rounded (eq's table is
    ``256 (contrast (x / 255 - 0.5) + 0.5 + brightness)``, truncated)."""
    c = g * 255 / 256
    b = (16.5 - 16 * g) / 256 - 0.5 + c / 2
    return {"contrast": f"{c:.6f}", "brightness": f"{b:.6f}", "saturation": f"{c:.6f}"}


def _lighting(t: composite.Track, frames: int) -> list[tuple[int, dict[str, str], str]]:
    """(frame, eq options, border colour) on frame 0 and on each frame where the tile's lighting changes."""
    held = np.minimum(np.arange(frames), len(t.gain) - 1)
    moved = np.zeros(frames, bool)
    for a in (t.gain, t.level, t.flash):  # the picture's and the border's lighting
        moved[1:] |= np.diff(np.asarray(a)[held]) != 0
    out, last = [], None
    for k in [0, *np.flatnonzero(moved).tolist()]:
        state = (float(t.gain[held[k]]), composite.border_rgb(t, int(held[k]), 1.0))
        if state != last:
            out.append((k, _eq(state[0]), paint_rgb(state[1])))
            last = state
    return out


def _commands(changes: list[tuple[int, dict[str, str], str]], name: str, fps: float, start: int, end: int) -> str:
    """sendcmd lines of the changes in frames (start, end), timed from ``start`` (the piece's frame 0), each
    half a frame before its frame's timestamp, so that rounding cannot move it."""
    lines = []
    for k, eq, colour in changes:
        if not start < k < end:
            continue
        sets = [f"[enter] eq@{name} {key} {value}" for key, value in eq.items()]
        sets.append(f"[enter] fillborders@{name} color {colour}")
        lines.append(f"{(k - start - 0.5) / fps:.6f} {', '.join(sets)};\n")
    return "".join(lines)


def _piece(run: Run, a: int, b: int) -> Run:
    """The part of ``run`` shown in output frames [a, b), as a run of its own."""
    def shown(k: int) -> int:
        return run.first + min(max(k - run.hold, 0), run.count - 1)

    return Run(shown(a), max(0, run.hold - a), shown(b - 1) - shown(a) + 1)


def _quote(path: str) -> str:
    """A file name as a filter option inside a filter graph (ffmpeg's two levels of escaping)."""
    value = re.sub(r"([\\':])", r"\\\1", path)
    return re.sub(r"([\\'\[\],;])", r"\\\1", value)


def graph(tracks: list[composite.Track], shots: list[lay.Shot], runs: list[Run], lighting: list | None, *,
          width: int, height: int, fps: float, start: int, end: int, scripts: Path) -> tuple[list[str], str]:
    """(input options, filter graph) that make output frames [start, end) of the video, as the filter label
    ``[v]``. ``lighting``: each shot's changes (:func:`_lighting`), None for unlit tiles. The lighting
    scripts are written into the directory ``scripts``."""
    inputs, parts, labels = [], [], []
    rate = Fraction(writer.rate_string(fps))
    tick = f"{rate.denominator}/{rate.numerator}"
    for n, (shot, run) in enumerate(zip(shots, runs)):
        t = tracks[shot.index]
        x0, y0, x1, y1 = shot.box
        w, h = x1 - x0, y1 - y0
        args, decode = pictures.decode_input(t.picture, w, h, fps, run.first, index=n, out=f"p{n}",
                                              alone=False)
        inputs += args
        # the frames numbered afresh, one time base unit apart: tpad times its clones from where the input
        # ended, which an overlay (an alpha picture over its background) reports as its last frame's time
        chain = [f"trim=end_frame={run.count}", f"tpad=start={run.hold}:start_mode=clone:stop=-1:stop_mode=clone",
                 f"settb={tick}", "setpts=N"]
        if lighting is not None:
            name = f"t{n}"
            commands = _commands(lighting[n], name, fps, start, end)
            if commands:  # sendcmd refuses a script with no command
                script = scripts / f"{name}.cmd"
                script.write_text(commands)
                chain.append(f"sendcmd=f={_quote(os.fspath(script))}")
            _, eq, colour = [c for c in lighting[n] if c[0] <= start][-1]  # the lighting at the first frame
            eq = ":".join(f"{key}={value}" for key, value in eq.items())
            bw = max(2, lay.even(min(w, h) * composite.BORDER))
            chain += [f"eq@{name}={eq}:{EQ_LUT}",
                      f"fillborders@{name}=left={bw}:right={bw}:top={bw}:bottom={bw}:mode=fixed:color={colour}"]
        parts += [decode, f"[p{n}]{','.join(chain)}[t{n}]"]
        labels.append(f"[t{n}]")
    background = paint_rgb(composite.BG_RGB)
    tail = []
    if len(shots) > 1:  # xstack places tiles from the top left and fills what none covers
        layout = "|".join(f"{s.box[0]}_{s.box[1]}" for s in shots)
        parts.append(f"{''.join(labels)}xstack=inputs={len(shots)}:layout={layout}:fill={background}[s]")
        if (max(s.box[2] for s in shots), max(s.box[3] for s in shots)) != (width, height):
            tail.append(f"pad={width}:{height}:0:0:color={background}")
    else:
        parts.append(f"{labels[0]}null[s]")
        if shots[0].box != (0, 0, width, height):
            tail.append(f"pad={width}:{height}:{shots[0].box[0]}:{shots[0].box[1]}:color={background}")
    tail += ["format=yuv420p", "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv"]
    parts.append(f"[s]{','.join(tail)}[v]")
    return inputs, ";".join(parts)


def render(tracks: list[composite.Track], shots: list[lay.Shot], runs: list[Run], output: str | os.PathLike, *,
           width: int, height: int, fps: float, frames: int, lit: bool, crf: int, preset: str, x264_params: str,
           progress: ProgressFn = None) -> None:
    """Write the silent H.264 video of ``frames`` frames to ``output``: one ffmpeg per piece of PIECE_GOPS
    keyframe intervals (the last up to half as long again), the pieces joined without re-encoding."""
    mov = Path(output).suffix.lower() in writer.MOV_LIKE
    out_opts = writer.x264_options(fps, crf=crf, preset=preset, x264_params=x264_params, movflags=mov)
    lighting = [_lighting(tracks[s.index], frames) for s in shots] if lit else None
    step = max(1, round(writer.GOP_SECONDS * fps)) * PIECE_GOPS  # pieces start on keyframes
    starts = list(range(0, frames, step))
    if len(starts) > 1 and frames - starts[-1] < step // 2:  # a short end joins the piece before it
        starts.pop()
    ends = starts[1:] + [frames]
    used = [tracks[s.index].picture.path for s in shots]
    with tempfile.TemporaryDirectory(prefix="avmix-stack-") as work, atomic_path(output) as tmp:
        work = Path(work)
        pieces = [tmp] if len(starts) == 1 else [work / f"piece{i:05d}.mp4" for i in range(len(starts))]
        report(progress, "video", 0, frames)
        for start, end, piece in zip(starts, ends, pieces):
            inputs, text = graph(tracks, shots, [_piece(r, start, end) for r in runs], lighting, width=width,
                                 height=height, fps=fps, start=start, end=end, scripts=work)
            args = inputs + ["-filter_complex", text, "-map", "[v]", "-frames:v", str(end - start)]
            for key, value in out_opts.items():
                args += [f"-{key}"] + ([] if value is None else [str(value)])
            args += ["-nostats", "-progress", "pipe:1", ffmpeg.url(piece)]
            _run(args, lambda done, start=start: report(progress, "video", start + done, frames), used)
        if len(pieces) > 1:
            _join(pieces, tmp, work / "pieces.txt", mov)
    report(progress, "video", frames, frames)


def _join(pieces: list[Path], output: Path, listing: Path, mov: bool) -> None:
    """The pieces, one after another, in ``output`` (ffmpeg's concat demuxer; the video is copied)."""
    listing.write_text("".join("file '" + os.fspath(p).replace("'", "'\\''") + "'\n" for p in pieces))
    ffmpeg.run(["-f", "concat", "-safe", "0", "-i", ffmpeg.url(listing), "-c", "copy"]
               + (["-movflags", "+faststart"] if mov else []) + [ffmpeg.url(output)], what="joining the video")


def _run(args: list[str], done, pictures_used: list[str]) -> None:
    """Run one piece's ffmpeg, telling ``done(frames)`` as it goes; a failure that names a picture is that
    picture's InputError."""
    def on(key: str, value: str) -> None:
        if key == "frame" and value.isdigit():
            done(int(value))

    try:
        ffmpeg.run_progress(args, on, what="composing the video", needs=NEEDS)
    except FFmpegError as e:
        said = e.message.split(": ffmpeg failed: ")[-1]
        bad = next((p for p in pictures_used if os.fspath(p) in said), None)
        if bad is not None:
            raise InputError(f"cannot decode its picture ({said})", path=bad) from None
        raise
