"""Where each source's picture goes, frame by frame (pure: numbers in, shots out).

A *shot* is one track shown in one box over a range of output frames, with an optional fade-in (a
video crossfade). Every layout is a list of shots; the renderer draws the shots live at a frame in
order (later ones on top) and the manifest records one entry per shot. Boxes are ``[x0, y0, x1, y1]``
in output pixels with even coordinates (yuv420p chroma is half-size).

Picture time: output frame ``k`` shows a source's picture at the time its sound is at during that
frame, from the timeline alone (start, offset, loop), so picture and sound move together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from avmix.video.timing import frame_at, onset_frame

LAYOUTS = ("grid", "spotlight", "row", "column")
DEFAULT_LAYOUT = {"mix": "grid", "concat": "sequence", "overlay": "pip"}
PIP_POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
PIP_MARGIN = 0.03  # of the output height
THUMB_WIDTH = 0.2  # spotlight thumbnails, of the output width (at most)
SPOT_SMOOTH_S = 0.5  # loudness is averaged over this long before shots are chosen
SPOT_MIN_SHOT_S = 2.0  # a shot lasts at least this long
SPOT_HYSTERESIS = 1.5  # a challenger must be this much louder (x, about 3.5 dB) than the shown track
SPOT_SILENT = 0.02  # below this (smoothed, 0..1) a track is not sounding


@dataclass
class Shot:
    index: int  # position of the source in the timeline
    box: tuple[int, int, int, int]
    start: int  # first output frame
    end: int  # one past the last output frame
    fade: int = 0  # frames over which the shot fades in over what is below it


def even(v: float) -> int:
    return int(round(v / 2.0)) * 2


def _box(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = even(x0), even(y0), even(x1), even(y1)
    return x0, y0, max(x0 + 2, x1), max(y0 + 2, y1)


def grid_shape(n: int, width: int, height: int, aspect: float = 16 / 9) -> tuple[int, int]:
    """(columns, rows) for ``n`` pictures of ``aspect`` in a width x height frame: the largest tiles
    once each picture is cover-cropped, that is the least picture cut away, fewest empty cells on ties."""
    best = None
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        tw, th = width / cols, height / rows
        kept = min(tw / th, aspect) / max(tw / th, aspect)  # share of a picture kept by the cover-crop
        score = (round(tw * th * kept, 6), -(cols * rows - n))
        if best is None or score > best[0]:
            best = (score, cols, rows)
    return best[1], best[2]


def grid_boxes(n: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Tiles in rows; a last row that is not full is centred."""
    if n <= 0:
        return []
    cols, rows = grid_shape(n, width, height)
    tw, th = width / cols, height / rows
    boxes = []
    for i in range(n):
        r, c = divmod(i, cols)
        in_row = min(cols, n - r * cols)
        x0 = (width - in_row * tw) / 2 + c * tw
        boxes.append(_box(x0, r * th, x0 + tw, (r + 1) * th))
    return boxes


def row_boxes(n: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    return [_box(width * i / n, 0, width * (i + 1) / n, height) for i in range(n)]


def column_boxes(n: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    return [_box(0, height * i / n, width, height * (i + 1) / n) for i in range(n)]


def thumb_boxes(n: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Spotlight thumbnails: one fixed slot per track along the bottom edge (the shown track's slot is
    left empty), so that a picture only moves when the spotlight moves."""
    m = PIP_MARGIN * height
    tw = min(THUMB_WIDTH * width, (width - m * (n + 1)) / max(n, 1))
    th = tw * height / width
    x = (width - n * tw - (n - 1) * m) / 2
    return [_box(x + i * (tw + m), height - m - th, x + i * (tw + m) + tw, height - m) for i in range(n)]


def pip_box(width: int, height: int, position: str = "bottom-right", size: float = 0.3) -> tuple[int, int, int, int]:
    """The picture-in-picture box: ``size`` of the output width, the output's aspect, in a corner."""
    if position not in PIP_POSITIONS:
        raise ValueError(f"pip position must be one of {', '.join(PIP_POSITIONS)}")
    if not 0.05 <= size <= 1.0:
        raise ValueError("pip size must be between 0.05 and 1")
    m = PIP_MARGIN * height
    w, h = size * width, size * height
    x0 = m if position.endswith("left") else width - m - w
    y0 = m if position.startswith("top") else height - m - h
    return _box(max(0, x0), max(0, y0), min(width, x0 + w), min(height, y0 + h))


def smooth(env: np.ndarray, frames: int) -> np.ndarray:
    """Moving average over ``frames`` frames (centred), the same length as ``env``."""
    env = np.asarray(env, np.float64)
    if frames <= 1 or len(env) == 0:
        return env
    kernel = np.ones(frames) / frames
    return np.convolve(np.pad(env, (frames // 2, frames - 1 - frames // 2), mode="edge"), kernel, "valid")


def spotlight_track(envelopes: list[np.ndarray], fps: float, *, min_shot_s: float = SPOT_MIN_SHOT_S,
                    hysteresis: float = SPOT_HYSTERESIS) -> np.ndarray:
    """Which track is in the spotlight at each frame (int array), from per-frame loudness 0..1.

    The loudest sounding track takes the spotlight only when it is ``hysteresis`` times louder than the
    shown one (smoothed over SPOT_SMOOTH_S) and the current shot has lasted ``min_shot_s``; a shown
    track that falls silent is replaced by any sounding one once the minimum shot is over.
    """
    n = len(envelopes)
    frames = len(envelopes[0]) if n else 0
    out = np.zeros(frames, np.int64)
    if n <= 1 or frames == 0:
        return out
    lv = np.stack([smooth(e, max(1, round(SPOT_SMOOTH_S * fps))) for e in envelopes])
    min_shot = max(1, round(min_shot_s * fps))
    cur, since = int(np.argmax(lv[:, 0])), 0
    for k in range(frames):
        best = int(np.argmax(lv[:, k]))
        if best != cur and k - since >= min_shot and lv[best, k] >= SPOT_SILENT:
            if lv[best, k] > hysteresis * lv[cur, k] or lv[cur, k] < SPOT_SILENT:
                cur, since = best, k
        out[k] = cur
    return out


def runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """(value, start, end) of each run of equal values."""
    out = []
    start = 0
    for k in range(1, len(values) + 1):
        if k == len(values) or values[k] != values[start]:
            out.append((int(values[start]), start, k))
            start = k
    return out


def first_frame(t: float, fps: float) -> int:
    """The output frame during which time ``t`` falls (a start is shown in the frame it falls in)."""
    return max(0, int(frame_at(t, fps)))


def end_frame(t: float, fps: float) -> int:
    """The first output frame starting at or after time ``t`` (an end shows through the frame it falls in)."""
    return int(onset_frame(t, fps))


def mix_shots(layout: str, n: int, width: int, height: int, frames: int, *,
              envelopes: list[np.ndarray] | None = None, fps: float = 30.0) -> list[Shot]:
    if layout == "grid":
        boxes = grid_boxes(n, width, height)
    elif layout == "row":
        boxes = row_boxes(n, width, height)
    elif layout == "column":
        boxes = column_boxes(n, width, height)
    elif layout == "spotlight":
        main = spotlight_track(envelopes or [np.zeros(frames)] * n, fps)
        thumbs = thumb_boxes(n, width, height)
        shots = [Shot(t, (0, 0, width, height), a, b) for t, a, b in runs(main)]
        for i in range(n):  # the others as thumbnails, on top; one shot while a track stays small
            shots += [Shot(i, thumbs[i], a, b) for small, a, b in runs((main != i).astype(np.int64)) if small]
        return shots
    else:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}")
    return [Shot(i, boxes[i], 0, frames) for i in range(n)]


def concat_shots(starts: list[float], ends: list[float], width: int, height: int, frames: int, fps: float,
                 crossfade: float) -> list[Shot]:
    """Full-frame pictures in sequence: a cut at each boundary (the next track's first frame), or, with
    a crossfade, the next picture fading in over exactly the audio crossfade's frames."""
    full = (0, 0, width, height)
    shots = []
    n = len(starts)
    for i in range(n):
        a = 0 if i == 0 else first_frame(starts[i], fps)
        if i + 1 < n:
            b = first_frame(starts[i + 1], fps) if crossfade <= 0 else min(frames, end_frame(ends[i], fps))
            b = max(b, first_frame(starts[i + 1], fps))
        else:
            b = frames
        fade = 0 if i == 0 or crossfade <= 0 else max(1, round(crossfade * fps))
        shots.append(Shot(i, full, a, max(a, b), fade))
    return shots


def overlay_shots(top_start: float, top_end: float, width: int, height: int, frames: int, fps: float, *,
                  position: str = "bottom-right", size: float = 0.3) -> list[Shot]:
    """The base full-frame throughout; the top track in its box from its ``--at`` offset to its end."""
    a = first_frame(top_start, fps)
    b = min(frames, max(a, end_frame(top_end, fps)))
    return [Shot(0, (0, 0, width, height), 0, frames), Shot(1, pip_box(width, height, position, size), a, b)]


def apart(shots: list[Shot]) -> bool:
    """Whether the shots are of different tracks and no two of their boxes share a pixel."""
    if len({s.index for s in shots}) < len(shots):
        return False
    boxes = sorted(s.box for s in shots)
    return not any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                   for i, a in enumerate(boxes) for b in boxes[i + 1:])


def fade_alpha(shot: Shot, k: int) -> float:
    """Opacity of ``shot`` at frame ``k`` (a linear crossfade over its first ``fade`` frames, the
    value at the middle of the frame, so the fade is symmetric about the audio crossfade)."""
    if shot.fade <= 0:
        return 1.0
    return min(1.0, max(0.0, (k - shot.start + 0.5) / shot.fade))


def picture_time(k: int, fps: float, *, start: int, end: int, offset: int, length: int, loop: bool,
                 sample_rate: int) -> float:
    """Seconds into a source (its audio clock) shown at output frame ``k``.

    The source sounds at output samples [start, end), read from sample ``offset`` for ``length``
    samples, repeating with ``loop``. Before its start the first frame is held, after its end the last.
    """
    s = k / fps * sample_rate - start
    if s < 0:
        s = 0.0
    elif s >= end - start:
        s = max(0.0, end - start - 1)
    if loop and length > 0:
        s = math.fmod(s, length)
    else:
        s = min(s, max(0, length - 1))
    return (offset + s) / sample_rate


def entries(shots: list[Shot], labels: list[str], fps: float) -> list[dict]:
    """Manifest ``video.layout``: one ``{index, label, box, start, end, start_frame, end_frame}`` per shot
    (seconds and frames; ``end_frame`` is exclusive)."""
    return [{"index": s.index, "label": labels[s.index], "box": list(s.box), "start": s.start / fps,
             "end": s.end / fps, "start_frame": s.start, "end_frame": s.end} for s in shots if s.end > s.start]
