"""The composite backend: each source's own picture, placed, timed and lit by the timeline.

Pictures (a video input's stream or an image) are decoded by ffmpeg at their tile's size and the
output fps (:mod:`avmix.video.pictures`); a track with no picture gets its procedural element in its
tile. Each output frame is assembled in yuv420p, the encoder's own format, so numpy only scales tiles'
planes as they are copied (:func:`scale_about`) and draws borders: no colour conversion per pixel.

The sound lights the picture: a tile brightens with its track's loudness (instant attack, exponential
release, as the procedural renderer) and dims when silent; on each onset it gives one short flash that
only decays, and its border glows in the track's colour. The lighting moves in steps of CALM_STEP
(:func:`calm`), so the encoder is not handed a new picture for changes nobody sees. Timing comes from the timeline alone
(:func:`avmix.video.layout.picture_time`): offset, trim, loop and crossfade move picture and sound
together. Memory is a few frames per picture and one per tile, whatever the length.

Layouts whose tiles stand still are drawn by one ffmpeg filter graph instead (:mod:`avmix.video.stack`),
with the same lighting; the :class:`Compositor` here draws the rest.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from avmix.errors import UsageError
from avmix.progress import ProgressFn, report
from avmix.timeline import Analysis, Timeline
from avmix.video import layout as lay
from avmix.video import pictures
from avmix.video.timing import frames_since_hit, hit_frames
from avmix.video.writer import VideoWriter, check_size

DIM = 0.5  # picture brightness of a silent tile (1.0 at full loudness)
PULSE = 0.35  # extra brightness of an onset's flash
FLASH_S = 0.12  # the flash's decay time constant
RELEASE_S = 0.18  # loudness release time constant (the procedural renderer's)
BORDER = 0.012  # border width, of the tile's shorter side
CALM_STEP = 0.05  # the lighting holds until the brightness it shows would change by this much (see calm)
DUCK_SHOWN = 0.6  # share of the ducking gain shown as the base's dimming (all of it would go near black)
PREVIEW_PIXELS = 320 * 180  # procedural tiles are drawn at about this size and scaled up
BG_RGB = tuple(int(pictures.BACKGROUND[i:i + 2], 16) / 255 for i in (2, 4, 6))


def yuv(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    """BT.709 limited-range Y, U, V (0..255) of an RGB colour in 0..1."""
    r, g, b = rgb
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return 16 + 219 * y, 128 + 224 * (b - y) / 1.8556, 128 + 224 * (r - y) / 1.5748


def planes(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a (h * 3 / 2, w) yuv420p frame."""
    h, w = buf.shape[0] * 2 // 3, buf.shape[1]
    flat, n, q = buf.reshape(-1), h * w, h * w // 4
    return flat[:n].reshape(h, w), flat[n:n + q].reshape(h // 2, w // 2), flat[n + q:].reshape(h // 2, w // 2)


def scale_about(src: np.ndarray, dst: np.ndarray, g: float, pivot: int, tmp: np.ndarray) -> None:
    """``dst = clip(pivot + (src - pivot) * g + 0.5)`` for uint8 planes, in 16-bit fixed point: a few
    vectorised passes, about twice as fast as a table look-up (which casts every index to 64 bits).
    Within 1 of the exact value for g up to 1, and 1.5 up to 1.6. ``tmp``: a uint16 plane of src's shape."""
    for s in (8, 7, 6, 5, 4):  # the most fraction bits that cannot overflow 16 bits
        G = round(g * (1 << s))
        D = round((pivot * g - pivot) * (1 << s)) - (1 << (s - 1))  # (src * G - D) >> s is the result
        if 255 * G + max(0, -D) <= 0xFFFF:
            break
    np.multiply(src, np.uint16(G), out=tmp, dtype=np.uint16)
    if D > 0:  # below D the result is under 0: clipped to 0
        np.maximum(tmp, np.uint16(D), out=tmp)
        np.subtract(tmp, np.uint16(D), out=tmp)
    elif D < 0:
        np.add(tmp, np.uint16(-D), out=tmp)
    np.right_shift(tmp, s, out=tmp)
    if g > 1:
        np.minimum(tmp, 255, out=tmp)
    np.copyto(dst, tmp, casting="unsafe")


# ---------------------------------------------------------------------------------------- lighting

def lighting(envelope: list[float], onsets: list[float], fps: float, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(level, flash) per frame: loudness with an instant attack and exponential release, and an
    onset's flash (1 on the onset's frame, then only decaying)."""
    env = np.zeros(frames, np.float32)
    src = np.asarray(envelope, np.float32)[:frames]
    env[:len(src)] = src
    rel = math.exp(-1.0 / (RELEASE_S * fps))
    level = np.empty(frames, np.float32)
    cur = 0.0
    for k in range(frames):
        cur = max(float(env[k]), cur * rel)
        level[k] = cur
    age = frames_since_hit(hit_frames(onsets, fps, frames), frames)  # huge before the first hit: exp gives 0
    flash = np.exp(-age / (FLASH_S * fps)).astype(np.float32)
    flash[flash < 0.02] = 0.0
    return level, flash


def calm(gain: np.ndarray, step: float = CALM_STEP) -> np.ndarray:
    """Per frame, the index of the frame whose lighting is shown: the last one whose brightness differs
    from the one shown before it by ``step`` or more. A flash (+0.35) or a new sound shows at once; a
    release or a small wobble moves in steps. Frames between changes keep their tiles' brightness, so
    x264 codes a still tile as skipped blocks instead of a new picture (~0.7 s of its 3.2 s here)."""
    shown = np.empty(len(gain), np.int64)
    held, value = 0, float(gain[0]) if len(gain) else 0.0
    for k, g in enumerate(gain.tolist()):
        if abs(g - value) >= step:
            held, value = k, g
        shown[k] = held
    return shown


def duck_dimming(trigger_level: np.ndarray, db: float, fps: float, attack: float, release: float) -> np.ndarray:
    """Brightness factor of a ducked base per frame: lower while the trigger track sounds."""
    target = (trigger_level > lay.SPOT_SILENT).astype(np.float32)
    a = 1.0 - math.exp(-1.0 / max(attack * fps, 1e-3))
    r = 1.0 - math.exp(-1.0 / max(release * fps, 1e-3))
    depth = DUCK_SHOWN * (1.0 - 10.0 ** (-abs(db) / 20.0))
    out = np.empty_like(target)
    cur = 0.0
    for k, t in enumerate(target):
        cur += (t - cur) * (a if t > cur else r)
        out[k] = 1.0 - depth * cur
    return out


def border_rgb(t: "Track", k: int, alpha: float) -> tuple[float, float, float]:
    """The colour of a tile's border at frame ``k``: the track's colour, brighter with its loudness,
    towards white on a flash, faded over the background by ``alpha``."""
    lvl = float(t.level[min(k, len(t.level) - 1)])
    fl = float(t.flash[min(k, len(t.flash) - 1)])
    bright = min(1.0, 0.25 + 0.75 * lvl + 0.6 * fl)
    white = 0.5 * fl
    rgb = tuple(min(1.0, c * bright * (1 - white) + white) for c in t.color)
    return tuple(bg + (c - bg) * alpha for c, bg in zip(rgb, BG_RGB)) if alpha < 1 else rgb


# ---------------------------------------------------------------------------------------- tiles

@dataclass
class Track:
    index: int  # position in the timeline
    label: str
    color: tuple[float, float, float]
    picture: pictures.Picture | None
    start: int
    end: int
    offset: int
    length: int
    loop: bool
    level: np.ndarray
    flash: np.ndarray
    gain: np.ndarray  # picture brightness per frame


class ElementTile:
    """The procedural renderer's picture of one track, drawn small and scaled up to a tile (yuv420p)."""

    def __init__(self, analysis: Analysis, i: int, w: int, h: int, seed: int):
        from avmix.video import procedural

        f = max(1, round(math.sqrt(w * h / PREVIEW_PIXELS)))
        self.f, self.w, self.h = f, w, h
        track = analysis.tracks[i]
        one = Analysis(fps=analysis.fps, frames=analysis.frames, duration=analysis.duration, tracks=[track],
                       mix=track, mode="mix")
        self.painter = procedural.Painter(one, math.ceil(w / f), math.ceil(h / f), seed=seed + i, captions=False)
        for el in self.painter.elements:  # the track's own colour, as in the procedural video
            el.color = np.asarray(procedural.track_color(i), np.float32)[procedural.PLANES]
        self.out = np.empty((h * 3 // 2, w), np.uint8)
        # the small picture's pixel under each output pixel (Y) and each chroma sample (U, V: every other)
        self._luma = np.ix_(np.arange(h) // f, np.arange(w) // f)
        self._chroma = np.ix_(np.arange(0, h, 2) // f, np.arange(0, w, 2) // f)

    def frame(self, k: int) -> np.ndarray:
        g, b, r = (p.astype(np.float32) for p in self.painter.frame(k))  # planar G, B, R
        y = 0.2126 * r + 0.7152 * g + 0.0722 * b
        u = 128 + (224 / 255) * (b - y) / 1.8556
        v = 128 + (224 / 255) * (r - y) / 1.5748
        y = 16 + (219 / 255) * y
        Y, U, V = planes(self.out)
        Y[...] = y[self._luma]
        U[...] = u[self._chroma]
        V[...] = v[self._chroma]
        return self.out


# ---------------------------------------------------------------------------------------- frames

class Compositor:
    """Assembles output frames (yuv420p) from shots, pictures and lighting."""

    def __init__(self, timeline: Timeline, analysis: Analysis, tracks: list[Track], shots: list[lay.Shot], *,
                 width: int, height: int, lit: bool, captions: bool, seed: int):
        self.analysis, self.tracks, self.shots = analysis, tracks, shots
        self.width, self.height, self.fps = width, height, float(analysis.fps)
        self.sample_rate = timeline.sample_rate
        self.lit, self.seed = lit, seed
        self.buf = np.empty((height * 3 // 2, width), np.uint8)
        self.bg = yuv(BG_RGB)
        self.readers: dict[tuple[int, int, int], pictures.Reader] = {}
        self.elements: dict[tuple[int, int, int], ElementTile] = {}
        self.captions: dict[tuple[int, int], np.ndarray | None] = {} if captions else None
        self.order = sorted(range(len(shots)), key=lambda s: shots[s].start)
        self.next_shot = 0
        self.live: list[int] = []
        self.scratch: dict[tuple, np.ndarray] = {}
        # numpy's vector operations and copies release the GIL: on 2 cores (or a loaded machine) 4 tiles
        # drawn by 4 threads take about half the wall time of one thread, for the same CPU
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="avmix-tile")

    def close(self) -> None:
        self.pool.shutdown()
        for r in self.readers.values():
            r.close()
        self.readers.clear()

    def _reader(self, t: Track, w: int, h: int, k: int) -> tuple[pictures.Reader, int]:
        key = (t.index, w, h)
        if key not in self.readers:
            self.readers[key] = pictures.Reader(t.picture, w, h, self.fps)
        s = lay.picture_time(k, self.fps, start=t.start, end=t.end, offset=t.offset, length=t.length,
                             loop=t.loop, sample_rate=self.sample_rate)
        return self.readers[key], pictures.picture_index(s, self.fps)

    def _tile(self, t: Track, w: int, h: int, k: int) -> np.ndarray:
        if t.picture is None:
            key = (t.index, w, h)
            if key not in self.elements:
                self.elements[key] = ElementTile(self.analysis, t.index, w, h, self.seed)
            return self.elements[key].frame(k)
        reader, j = self._reader(t, w, h, k)
        return reader.get(j)

    def frame(self, k: int) -> np.ndarray:
        while self.next_shot < len(self.order) and self.shots[self.order[self.next_shot]].start <= k:
            self.live.append(self.order[self.next_shot])
            self.next_shot += 1
        self.live = sorted(s for s in self.live if self.shots[s].end > k)  # list order is drawing order
        apart = self._apart(self.live)
        if not self._covered(self.live, k, apart):  # the background shows
            Y, U, V = planes(self.buf)
            Y[...], U[...], V[...] = (round(c) for c in self.bg)
        for s in self.live:  # a new picture's decoder starts now, beside the others
            if self.shots[s].start == k:
                self._prepare(self.shots[s], k)
        if apart:  # tiles that touch no common pixel or decoder are drawn side by side
            list(self.pool.map(lambda s: self._draw(self.shots[s], k), self.live))
        else:
            for s in self.live:
                self._draw(self.shots[s], k)
        return self.buf

    def start(self) -> None:
        """Start the decoders of the pictures shown from frame 0 without waiting for them: render calls
        this before it starts the encoder, so they all start side by side."""
        for shot in self.shots:
            if shot.start == 0:
                self._prepare(shot, 0)

    def _prepare(self, shot: lay.Shot, k: int) -> None:
        if self.tracks[shot.index].picture is not None:
            x0, y0, x1, y1 = shot.box
            reader, j = self._reader(self.tracks[shot.index], x1 - x0, y1 - y0, k)
            reader.prepare(j)

    def _apart(self, live: list[int]) -> bool:
        return len(live) >= 2 and lay.apart([self.shots[s] for s in live])

    def _covered(self, live: list[int], k: int, apart: bool) -> bool:
        """Whether opaque tiles cover the whole frame: the first one drawn (a full-frame base under a
        PiP or a spotlight), or tiles that do not overlap (a full grid)."""
        if live and lay.fade_alpha(self.shots[live[0]], k) >= 1.0 and self._full(self.shots[live[0]].box):
            return True
        if not apart:  # one tile covers the frame only as the full-frame base above
            return False
        area = 0
        for s in live:
            shot = self.shots[s]
            if lay.fade_alpha(shot, k) < 1.0:
                return False
            x0, y0, x1, y1 = shot.box
            area += (min(x1, self.width) - max(x0, 0)) * (min(y1, self.height) - max(y0, 0))
        return area >= self.width * self.height

    def _full(self, box: tuple[int, int, int, int]) -> bool:
        return box[0] <= 0 and box[1] <= 0 and box[2] >= self.width and box[3] >= self.height

    def _draw(self, shot: lay.Shot, k: int) -> None:
        t = self.tracks[shot.index]
        x0, y0, x1, y1 = shot.box
        w, h = x1 - x0, y1 - y0
        Ys, Us, Vs = planes(self._tile(t, w, h, k))
        Y, U, V = planes(self.buf)
        dst = (Y[y0:y1, x0:x1], U[y0 // 2:y1 // 2, x0 // 2:x1 // 2], V[y0 // 2:y1 // 2, x0 // 2:x1 // 2])
        alpha = lay.fade_alpha(shot, k)
        if not self.lit:
            g = 1.0
        else:
            g = float(t.gain[min(k, len(t.gain) - 1)])
        for plane, src, pivot in zip(dst, (Ys, Us, Vs), (16, 128, 128)):
            # brightness scales Y above black and U, V about grey: the same as scaling RGB, so hues keep
            if g == 1.0 and alpha >= 1.0:
                plane[...] = src
            elif alpha >= 1.0:
                scale_about(src, plane, g, pivot, self._scratch(t.index, src.shape))
            else:
                lit = np.clip(pivot + (src - np.float32(pivot)) * np.float32(g) + 0.5, 0, 255).astype(np.uint8)
                plane[...] = (plane * np.float32(1 - alpha) + lit * np.float32(alpha) + 0.5).astype(np.uint8)
        if self.lit:
            self._border(dst, t, k, alpha)
        if self.captions is not None:
            self._caption(dst, t, alpha)

    def _scratch(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        """A uint16 plane for :func:`scale_about`, one per track and shape (tiles drawn side by side
        belong to different tracks)."""
        key = (index, shape)
        if key not in self.scratch:
            self.scratch[key] = np.empty(shape, np.uint16)
        return self.scratch[key]

    def _border(self, dst, t: Track, k: int, alpha: float) -> None:
        """A frame in the track's colour that glows with its loudness and flashes on onsets."""
        Y, U, V = dst
        h, w = Y.shape
        bw = max(2, lay.even(min(w, h) * BORDER))
        cy, cu, cv = (int(round(c)) for c in yuv(border_rgb(t, k, alpha)))
        b2 = bw // 2
        for plane, val, b in ((Y, cy, bw), (U, cu, b2), (V, cv, b2)):
            plane[:b] = val
            plane[-b:] = val
            plane[:, :b] = val
            plane[:, -b:] = val

    def _caption(self, dst, t: Track, alpha: float) -> None:
        Y, U, V = dst
        h, w = Y.shape
        size = max(9, min(h // 10, 28))
        key = (t.index, size)
        if key not in self.captions:
            from avmix.video.procedural import _text_mask  # one caption look for both renderers

            self.captions[key] = _text_mask(t.label, size)
        m = self.captions[key]
        if m is None:
            return
        pad = max(4, size // 2)
        mh, mw = min(m.shape[0], h - 2 * pad), min(m.shape[1], w - 2 * pad)
        if mh <= 0 or mw <= 0:
            return
        y0 = x0 = pad - pad % 2  # top left: a spotlight's thumbnails cover the bottom of the main picture
        m = m[:mh, :mw] * np.float32(alpha)
        region = Y[y0:y0 + mh, x0:x0 + mw]
        region[...] = (region * (1 - m) + 235 * m + 0.5).astype(np.uint8)
        mc = m[::2, ::2]
        for C in (U, V):
            r = C[y0 // 2:y0 // 2 + mc.shape[0], x0 // 2:x0 // 2 + mc.shape[1]]
            r[...] = (r * (1 - mc[:r.shape[0], :r.shape[1]]) + 128 * mc[:r.shape[0], :r.shape[1]] + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------------------- entry

def _pictures(timeline: Timeline, given: list | None) -> list[str | None]:
    """Picture path of each source: ``given`` (one per source, None for none), else the timeline's
    ``source.picture`` record when it has one."""
    n = len(timeline.sources)
    if given is not None:
        if len(given) > n:
            raise UsageError(f"{len(given)} pictures for {n} tracks")
        return [os.fspath(p) if p not in (None, "", "-") else None for p in list(given) + [None] * (n - len(given))]
    out = []
    for s in timeline.sources:
        pic = getattr(s, "picture", None)
        out.append(pic.get("path") if isinstance(pic, dict) and pic.get("path") else None)
    return out


def check_layout(mode: str, layout: str | None, n_tracks: int) -> str:
    """The layout to use for ``mode`` (its default when None); UsageError if it does not fit the mode."""
    name = layout or lay.DEFAULT_LAYOUT.get(mode, "grid")
    if name == "sequence" and mode != "concat":
        raise UsageError("--layout sequence is for --mode concat")
    if name == "pip" and (mode != "overlay" or n_tracks != 2):
        raise UsageError("--layout pip is for --mode overlay")
    if name not in lay.LAYOUTS + ("sequence", "pip"):
        raise UsageError(f"unknown layout {name!r}", hint=f"use one of {', '.join(lay.LAYOUTS + ('sequence', 'pip'))}")
    return name


def plan_shots(timeline: Timeline, analysis: Analysis, layout: str | None, width: int, height: int, *,
               pip_position: str = "bottom-right", pip_size: float = 0.3) -> tuple[str, list[lay.Shot]]:
    """(layout name, shots) for a timeline: the mode's default layout unless one is asked for."""
    n, frames, fps = len(timeline.sources), analysis.frames, float(analysis.fps)
    name = check_layout(timeline.mode, layout, n)
    sr = timeline.sample_rate
    if name == "sequence":
        fade = timeline.sources[1].fade_in if n > 1 else 0.0
        return name, lay.concat_shots([s.start_sample / sr for s in timeline.sources],
                                      [s.end_sample / sr for s in timeline.sources], width, height, frames, fps, fade)
    if name == "pip":
        top = timeline.sources[1]
        try:
            return name, lay.overlay_shots(top.start_sample / sr, top.end_sample / sr, width, height, frames, fps,
                                           position=pip_position, size=pip_size)
        except ValueError as e:
            raise UsageError(str(e)) from None
    envs = [np.asarray(t.envelope, np.float32) for t in analysis.tracks]
    return name, lay.mix_shots(name, n, width, height, frames, envelopes=envs, fps=fps)


def _tracks(timeline: Timeline, analysis: Analysis, pics: list[pictures.Picture | None]) -> list[Track]:
    from avmix.video.procedural import track_color

    fps, frames = float(analysis.fps), analysis.frames
    tracks = []
    for i, (src, ta, pic) in enumerate(zip(timeline.sources, analysis.tracks, pics)):
        level, flash = lighting(ta.envelope, ta.onsets, fps, frames)
        gain = DIM + (1 - DIM) * level + PULSE * flash
        tracks.append(Track(index=i, label=src.label, color=track_color(i), picture=pic, start=src.start_sample,
                            end=src.end_sample, offset=src.offset_sample, length=src.source_frames, loop=src.loop,
                            level=level, flash=flash, gain=gain))
    for src, t in zip(timeline.sources, tracks):
        if src.duck is not None and 0 <= src.duck.by < len(tracks):
            t.gain = t.gain * duck_dimming(tracks[src.duck.by].level, src.duck.db, fps, src.duck.attack,
                                           src.duck.release)
    for t in tracks:  # the border and the picture change on the same frames
        shown = calm(t.gain)
        t.level, t.flash, t.gain = t.level[shown], t.flash[shown], t.gain[shown]
    return tracks


def render(timeline: Timeline, analysis: Analysis, output: str | os.PathLike, *, picture_files: list | None = None,
           width: int = 1280, height: int = 720, layout: str | None = None, pip_position: str = "bottom-right",
           pip_size: float = 0.3, captions: bool = False, seed: int = 0, only: int | None = None,
           progress: ProgressFn = None, crf: int = 20, preset: str = "ultrafast",
           x264_params: str | None = None) -> dict:
    """Render a silent H.264 video of ``analysis.frames`` frames at ``analysis.fps`` to ``output``.

    ``picture_files`` gives each timeline source's picture file (None: the track's procedural element).
    ``only``: the picture track of that one source, full-frame and unlit (a stem). Returns
    ``{"backend": "composite", "layout_name", "layout": [{"index", "label", "box", "start", "end",
    "start_frame", "end_frame"}, ...]}``, one layout entry per (track, shot).
    """
    from avmix.video.procedural import X264_PARAMS

    check_size(width, height, analysis.fps)
    if len(analysis.tracks) != len(timeline.sources):
        raise UsageError(f"analysis has {len(analysis.tracks)} tracks, the timeline {len(timeline.sources)}")
    paths = _pictures(timeline, picture_files)
    with ThreadPoolExecutor(max_workers=4) as pool:  # every picture checked before writing, side by side
        pics = list(pool.map(lambda p: pictures.probe(p) if p else None, paths))
    tracks = _tracks(timeline, analysis, pics)
    fps, frames = float(analysis.fps), analysis.frames
    if only is not None:
        if not 0 <= only < len(tracks):
            raise UsageError(f"no track {only}")
        name, shots = "stem", [lay.Shot(only, (0, 0, width, height), 0, frames)]
    else:
        name, shots = plan_shots(timeline, analysis, layout, width, height, pip_position=pip_position,
                                 pip_size=pip_size)
    x264 = X264_PARAMS if x264_params is None else x264_params
    from avmix.video import stack  # imports this module

    # tiles that stand still, each a picture whose frames follow one another: one ffmpeg graph draws them
    runs = stack.plan(tracks, shots, frames, fps, timeline.sample_rate, captions=captions and only is None)
    if runs is not None:
        stack.render(tracks, shots, runs, output, width=width, height=height, fps=fps, frames=frames,
                     lit=only is None, crf=crf, preset=preset, x264_params=x264, progress=progress)
        return _info(timeline, name, shots, fps)
    comp = Compositor(timeline, analysis, tracks, shots, width=width, height=height, lit=only is None,
                      captions=captions and only is None, seed=seed)
    try:
        comp.start()
        with VideoWriter(output, width=width, height=height, fps=fps, crf=crf, preset=preset, pix_fmt="yuv420p",
                         x264_params=x264) as writer:
            for k in range(frames):
                writer.write(comp.frame(k))
                if k % 10 == 0 or k == frames - 1:
                    report(progress, "video", k + 1, frames)
    finally:
        comp.close()
    return _info(timeline, name, shots, fps)


def _info(timeline: Timeline, name: str, shots: list[lay.Shot], fps: float) -> dict:
    labels = [s.label for s in timeline.sources]
    entries = lay.entries(shots, labels, fps)
    for e in entries:
        e["index"] = timeline.sources[e["index"]].index
    return {"backend": "composite", "layout_name": name, "layout": entries}
