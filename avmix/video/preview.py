"""A contact sheet: thumbnails across a video above a timeline of its tracks, as one PNG.

The lanes show each track's loudness envelope filled in its colour (the procedural renderer's palette)
with its onsets as ticks, so one glance tells which source sounds when and what the picture did then.
Text and PNG encoding use Pillow when it is installed; without it the sheet has no text and is written
with a minimal zlib PNG encoder.
"""
from __future__ import annotations

import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from avmix import ffmpeg
from avmix.errors import InputError
from avmix.paths import atomic_path
from avmix.timeline import Analysis, TrackAnalysis
from avmix.video.procedural import track_color

ROWS = 2
THUMB_W = 256
GAP = 10
LABEL_W = 150
LANE_H = 40
AXIS_H = 26
BG = (13, 15, 23)
PANEL = (22, 25, 36)
TEXT = (205, 210, 225)
DIM = (120, 126, 145)
MIX_COLOR = (0.75, 0.77, 0.85)
ONE_PASS_S = 40.0  # videos up to this long are decoded in one pass instead of one seek per thumbnail


def contact_sheet(video: str | os.PathLike, analysis: Analysis, output_png: str | os.PathLike, *,
                  columns: int = 6) -> None:
    """Write ``output_png``: ``2 x columns`` thumbnails spread over ``video`` above one lane per track."""
    info = ffmpeg.probe(video)
    if info.video is None:
        raise InputError("has no video stream", path=video)
    columns = max(1, int(columns))
    duration = analysis.duration or (info.duration or 0.0)
    n = max(1, min(columns * ROWS, analysis.frames))
    tw = THUMB_W
    th = max(2, int(round(tw * info.video.height / info.video.width / 2)) * 2)
    times = [(i + 0.5) * duration / n for i in range(n)]
    if duration <= ONE_PASS_S:
        thumbs = _grab_all(video, times, analysis.fps, tw, th)
    else:  # long videos: seek to each (keyframes every 2 s in avmix videos), not decode it all
        thumbs = [_grab(video, t, tw, th) for t in times]

    rows = math.ceil(n / columns)
    width = columns * tw + (columns + 1) * GAP
    lanes = list(analysis.tracks) + [analysis.mix]
    top = GAP + rows * (th + GAP)
    height = top + GAP + len(lanes) * (LANE_H + 4) + AXIS_H + GAP
    img = np.empty((height, width, 3), np.uint8)
    img[:] = BG
    texts: list[tuple[int, int, str, tuple, int]] = []
    for i, thumb in enumerate(thumbs):
        r, c = divmod(i, columns)
        x, y = GAP + c * (tw + GAP), GAP + r * (th + GAP)
        img[y:y + th, x:x + tw] = thumb
        texts.append((x + 5, y + 4, _clock(times[i]), (235, 238, 245), 12))

    x0, x1 = LABEL_W, width - GAP
    y = top + GAP
    for i, lane in enumerate(lanes):
        is_mix = lane is analysis.mix
        color = MIX_COLOR if is_mix else track_color(i)
        _lane(img, lane, x0, x1, y, LANE_H, color, duration)
        label = "mix" if is_mix else (lane.label or f"track {i + 1}")
        texts.append((GAP, y + LANE_H // 2 - 7, _fit(label, 20), DIM if is_mix else TEXT, 13))
        y += LANE_H + 4
    # time axis, with a marker where each thumbnail was taken
    img[y:y + 1, x0:x1] = (60, 64, 80)
    for t in times:
        xm = x0 + int(round(t / max(duration, 1e-9) * (x1 - x0 - 1)))
        img[top + GAP:y, xm:xm + 1] = np.maximum(img[top + GAP:y, xm:xm + 1], 70)
        img[y - 5:y, max(0, xm - 1):xm + 2] = (235, 238, 245)
    step = _nice_step(duration)
    t = 0.0
    while t <= duration + 1e-9:
        xt = x0 + int(round(t / max(duration, 1e-9) * (x1 - x0 - 1)))
        img[y:y + 5, xt:xt + 1] = (110, 116, 135)
        texts.append((min(xt + 2, x1 - 40), y + 7, _clock(t, step < 1), DIM, 11))
        t += step
    _write_png(output_png, img, texts)


def _grab_all(video, times: list[float], fps: float, w: int, h: int) -> list[np.ndarray]:
    frames = sorted({int(t * fps) for t in times})
    expr = "+".join(f"eq(n\\,{k})" for k in frames)
    raw = ffmpeg.run(["-i", ffmpeg.url(video), "-vf", f"select={expr},scale={w}:{h}:flags=area",
                      "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
                     what="preview", timeout=300)
    size = w * h * 3
    got = {k: np.frombuffer(raw[i * size:(i + 1) * size], np.uint8).reshape(h, w, 3)
           for i, k in enumerate(frames) if (i + 1) * size <= len(raw)}
    blank = np.zeros((h, w, 3), np.uint8)
    return [got.get(int(t * fps), blank) for t in times]


def _grab(video, t: float, w: int, h: int) -> np.ndarray:
    raw = ffmpeg.run(["-ss", f"{t:.3f}", "-i", ffmpeg.url(video), "-frames:v", "1", "-vf",
                      f"scale={w}:{h}:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
                     what="preview", timeout=120)
    if len(raw) < w * h * 3:  # seeking past the last frame: take the last one we can get
        raw = ffmpeg.run(["-sseof", "-0.5", "-i", ffmpeg.url(video), "-update", "1", "-vf", f"scale={w}:{h}:flags=area",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"], what="preview", timeout=120)[-w * h * 3:]
    if len(raw) < w * h * 3:
        return np.zeros((h, w, 3), np.uint8)
    return np.frombuffer(raw[: w * h * 3], np.uint8).reshape(h, w, 3)


def _lane(img: np.ndarray, lane: TrackAnalysis, x0: int, x1: int, y: int, h: int, color, duration: float) -> None:
    img[y:y + h, x0:x1] = PANEL
    env = np.asarray(lane.envelope, np.float32)
    if env.size == 0:
        return
    cols = x1 - x0
    # the loudest frame under each column, so short hits stay visible at any zoom
    idx = np.linspace(0, env.size, cols + 1).astype(int)
    idx[1:] = np.maximum(idx[1:], idx[:-1] + 1)
    idx = np.minimum(idx, env.size)
    peak = np.maximum.reduceat(env, np.minimum(idx[:-1], env.size - 1))
    half = (h - 6) / 2
    mid = y + h / 2
    rows = np.arange(y, y + h, dtype=np.float32)[:, None] + 0.5
    cover = np.clip(peak[None, :] * half - np.abs(rows - mid) + 0.5, 0, 1)
    col = np.asarray(color, np.float32) * 255
    base = np.asarray(PANEL, np.float32)
    shade = 0.35 + 0.65 * peak[None, :]
    alpha = (cover * shade)[..., None]
    img[y:y + h, x0:x1] = (base * (1 - alpha) + col * alpha).astype(np.uint8)
    img[int(mid), x0:x1] = np.maximum(img[int(mid), x0:x1], (col * 0.35).astype(np.uint8))
    for t in lane.onsets:
        xt = x0 + int(round(t / max(duration, 1e-9) * (cols - 1)))
        if x0 <= xt < x1:
            img[y:y + 4, xt] = col.astype(np.uint8)


def _nice_step(duration: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if duration / step <= 12:
            return float(step)
    return 7200.0


def _clock(t: float, tenths: bool = True) -> str:
    m, s = divmod(max(t, 0.0), 60)
    return f"{int(m)}:{s:04.1f}" if tenths else f"{int(m)}:{int(s):02d}"


def _fit(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _write_png(path, img: np.ndarray, texts) -> None:
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        Image = None
    with atomic_path(Path(path)) as tmp:
        if Image is None:  # no text without Pillow; a plain zlib PNG
            tmp.write_bytes(_png_bytes(img))
            return
        im = Image.fromarray(img, "RGB")
        draw = ImageDraw.Draw(im)
        fonts = {}
        for x, y, text, color, size in texts:
            if size not in fonts:
                try:
                    fonts[size] = ImageFont.load_default(size=size)
                except TypeError:  # Pillow < 10.1
                    fonts[size] = ImageFont.load_default()
            draw.text((x, y), text, fill=tuple(int(c) for c in color), font=fonts[size])
        im.save(tmp, format="PNG", optimize=False)


def _png_bytes(img: np.ndarray) -> bytes:
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
