"""The built-in audio-reactive renderer: one glowing element per source track over a mix-level layer.

Each track owns a shape, a colour and a place. On each onset its element grows to the level of the
sound, turns, flashes and lights a halo, all within a frame or two; between onsets its size and
brightness glide slowly towards the track's envelope. It fades in and out with the track's placement
in the timeline. In ``concat`` the sounding track moves to centre stage while the others wait as small
chips along the top; in ``overlay`` the top track's element enters at its offset. Underneath, a band
shows every track's envelope stacked in its colour, a page of ``BAND_WINDOW_S`` seconds at a time whose
playhead steps to each hit, over a still background in the hue of the tracks present.

Motion is kept for the hits: between onsets nothing changes faster than ``LEVEL_RATE`` allows, so that
the peaks of optical flow are the onsets (AV-Align), on recorded sound with wobbling envelopes too.

Speed: frames are drawn in float32 as planar G, B, R at a reduced internal size (about 640x360 pixels)
and ffmpeg upscales them inside the H.264 encode (x264 "ultrafast" with CABAC and deblocking by default); every shape is
evaluated as a signed distance only inside its bounding box. Memory does not grow with the length.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from avmix.errors import UsageError
from avmix.progress import ProgressFn, report
from avmix.stats import unique
from avmix.timeline import Analysis, TrackAnalysis
from avmix.video.timing import frames_since_hit, hit_frames
from avmix.video.writer import VideoWriter, check_size

INTERNAL_PIXELS = 640 * 360  # draw at about this many pixels; ffmpeg scales to the output size
# Motion is spent on hits only (AV-Align counts peaks of optical flow): on a hit the element grows,
# turns and flashes within one frame; between hits nothing changes faster than LEVEL_RATE allows.
HIT_LOOK_S = 0.1  # a hit lifts the level to the loudest envelope this soon after it
LEVEL_RATE = 0.12  # level units per second that the level may glide between hits
SMOOTH_S = 0.3  # the envelope the level glides towards is smoothed with this time constant
FLASH_S = 0.04  # onset flash decay time constant: gone in a few frames, each change half the one before
HALO_S = 0.15  # lifetime of the halo an onset lights
TURN = 0.35  # rad a shape turns on each hit (sign per track)
HALO_GAP = 0.45  # its distance outside the shape, in base radii
PRESENCE_IN = 0.1  # an element enters this fast at its track's start (an onset there must show at once)
PRESENCE_OUT = 0.35  # and fades out this slowly after its end
PRESENCE_MOVE = 0.35  # a concat chip's flight to centre stage (it flashes in place meanwhile)
BAND_WINDOW_S = 10.0  # seconds on one page of the band
STAGE_BOTTOM = 0.78  # elements live above this fraction of the height; the band below
BG = np.array([0.018, 0.022, 0.045], np.float32)

# A designed palette: saturated, evenly bright hues that read well on a dark background.
PALETTE = [
    (0.27, 0.80, 1.00),  # sky cyan
    (1.00, 0.38, 0.62),  # rose
    (1.00, 0.72, 0.30),  # amber
    (0.55, 0.95, 0.45),  # lime
    (0.70, 0.52, 1.00),  # violet
    (0.30, 1.00, 0.82),  # aqua
    (1.00, 0.50, 0.35),  # coral
    (0.98, 0.90, 0.45),  # gold
]
SHAPES = ["circle", "hexagon", "diamond", "square", "capsule", "ring"]
# how much further than ``r + d`` a shape's distance field can reach (polygons' distances are plane
# distances, which run slower than Euclidean ones towards the corners; the rounded square's corner
# lies at 0.62 * sqrt(2) + 0.22 = 1.097 r): sizes the bounding boxes, which must hold all of the glow
# and halo at any rotation, or they show as straight cut-off edges
REACH = {"circle": 1.0, "ring": 1.0, "square": 1.1, "capsule": 1.0, "hexagon": 1.16, "diamond": 1.42}


def track_color(i: int) -> tuple[float, float, float]:
    """Colour (0..1 RGB) of track ``i``; shared with the preview so lanes match the video."""
    return PALETTE[i % len(PALETTE)]


def internal_size(width: int, height: int) -> tuple[int, int, int]:
    """(w, h, factor): the size frames are drawn at before ffmpeg upscales them by ``factor``."""
    f = max(1, round(math.sqrt(width * height / INTERNAL_PIXELS)))
    return max(2, width // f), max(2, height // f), f


# ---------------------------------------------------------------------------------------- shapes

def sdf(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (px, negative inside) of ``shape`` of size ``r`` at rotated offsets ``u, v``."""
    if shape == "circle":
        return np.sqrt(u * u + v * v) - r
    au, av = np.abs(u), np.abs(v)
    if shape == "hexagon":
        return np.maximum(av, au * 0.8660254 + av * 0.5) - r * 0.92
    if shape == "diamond":
        return (au + av) * 0.70710677 - r * 0.78
    if shape == "square":  # rounded square
        b, rr = r * 0.62, r * 0.22
        qx, qy = au - b, av - b
        out = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
        return out + np.minimum(np.maximum(qx, qy), 0) - rr
    if shape == "capsule":  # a pill along u
        a = r * 0.45
        qx = np.maximum(au - a, 0)
        return np.sqrt(qx * qx + v * v) - r * 0.5
    if shape == "ring":
        return np.abs(np.sqrt(u * u + v * v) - r * 0.8) - r * 0.2
    raise ValueError(shape)


# ---------------------------------------------------------------------------------------- layout

@dataclass
class Element:
    index: int
    label: str
    color: np.ndarray  # (3,) float32
    shape: str
    home: tuple[float, float, float]  # x, y, radius when the track is silent / absent
    stage: tuple[float, float, float]  # x, y, radius while the track sounds
    start: float
    end: float
    spin: float  # its sign is the way the shape turns on hits (seeded)


def _grid(n: int, w: float, h: float) -> list[tuple[float, float, float]]:
    """``n`` slots (x, y, radius) filling a w x h area in centred rows."""
    cols = max(1, min(n, round(math.sqrt(n * w / h))))
    rows = math.ceil(n / cols)
    cw, ch = w / cols, h / rows
    r = 0.31 * min(cw, ch)
    slots = []
    for i in range(n):
        row, col = divmod(i, cols)
        in_row = min(cols, n - row * cols)
        x = w / 2 + (col - (in_row - 1) / 2) * cw
        y = (row + 0.5) * ch
        slots.append((x, y, r))
    return slots


def make_layout(analysis: Analysis, w: int, h: int, seed: int) -> list[Element]:
    rng = np.random.default_rng(seed)
    n = len(analysis.tracks)
    stage_h = h * STAGE_BOTTOM
    shape_offset = int(rng.integers(len(SHAPES)))
    elements = []
    if analysis.mode == "concat" and n > 1:
        chip_r = min(h * 0.035, w / n * 0.18)
        chips = [(w * (i + 0.5) / n, h * 0.085, chip_r) for i in range(n)]
        centre = (w / 2, stage_h * 0.56, min(stage_h * 0.30, w * 0.26))
        places = [(c, centre) for c in chips]
    else:
        slots = _grid(n, w, stage_h) if n else []
        places = [(s, s) for s in slots]
    for i, (t, (home, stage)) in enumerate(zip(analysis.tracks, places)):
        elements.append(Element(
            index=t.index if t.index >= 0 else i, label=t.label, color=np.asarray(track_color(i), np.float32),
            shape=SHAPES[(i + shape_offset) % len(SHAPES)], home=home, stage=stage,
            start=float(t.start), end=float(t.end if t.end > t.start else analysis.duration),
            spin=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.1)),
        ))
    return elements


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3 - 2 * x)


# ---------------------------------------------------------------------------------------- drawing

def level_curve(env: np.ndarray, hits: np.ndarray, fps: float) -> np.ndarray:
    """The visible level (0..1) per frame: it rises at once only on a hit (to the loudest envelope of
    the next HIT_LOOK_S), and between hits glides towards the smoothed envelope at no more than
    LEVEL_RATE per second, so a wobbling or swelling sound moves nothing faster than that."""
    n = len(env)
    level = np.zeros(n, np.float32)
    if n == 0:
        return level
    a = math.exp(-1.0 / (SMOOTH_S * fps))
    # one pole in float64, as scipy.signal.lfilter([1 - a], [1, -a]) gives it to the bit: importing
    # scipy.signal costs about 0.5 s of CPU, this loop a few ms
    smooth = np.empty(n, np.float32)
    y = 0.0
    for k, x in enumerate(np.asarray(env, np.float64).tolist()):
        y = (1 - a) * x + a * y
        smooth[k] = y
    step = np.float32(LEVEL_RATE / fps)
    look = max(1, int(round(HIT_LOOK_S * fps)))
    is_hit = np.zeros(n, bool)
    is_hit[hits[hits < n]] = True
    cur = np.float32(0.0)
    for k in range(n):  # a few operations a frame: cheap next to drawing it
        if is_hit[k]:
            cur = max(cur, np.float32(env[k:k + look].max()))
        else:
            cur += min(step, max(-step, smooth[k] - cur))
        level[k] = cur
    return level


class _TrackState:
    """One track's motion, worked out for the whole video before drawing: hits, level, angle."""

    def __init__(self, track: TrackAnalysis, fps: float, n: int, turn: float = 0.0):
        env = np.zeros(n, np.float32)
        e = np.asarray(track.envelope, np.float32)[:n]
        env[:len(e)] = e
        self.hits = hit_frames(track.onsets, fps, n)
        self.onset_times = self.hits / fps  # the band's ticks, on the frame grid
        self.level_at = level_curve(env, self.hits, fps)
        self.since = frames_since_hit(self.hits, n)
        # a shape turns by ``turn`` on each hit and stands still between them
        self.angle_at = np.cumsum(np.isin(np.arange(n), self.hits)) * np.float32(turn)
        self.level = 0.0
        self.angle = 0.0
        self.age = 1e9

    def step(self, k: int, fps: float) -> None:
        self.level = float(self.level_at[k])
        self.angle = float(self.angle_at[k])
        self.age = self.since[k] / fps


PLANES = [1, 2, 0]  # frames are planar G, B, R (ffmpeg's gbrp): contiguous planes are fast in numpy


class Painter:
    """Draws frames of one analysis at the internal size; ``frame(k)`` returns uint8 (3, h, w) G, B, R planes."""

    def __init__(self, analysis: Analysis, w: int, h: int, *, seed: int, captions: bool):
        self.w, self.h = w, h
        self.fps = float(analysis.fps)
        self.elements = make_layout(analysis, w, h, seed)
        for el in self.elements:
            el.color = el.color[PLANES]
        n = analysis.frames
        self.states = [_TrackState(t, self.fps, n, 0.0 if el.shape == "circle" else math.copysign(TURN, el.spin))
                       for t, el in zip(analysis.tracks, self.elements)]
        hit_list = [st.hits for st in self.states]
        self.hits = unique(np.concatenate(hit_list)) if hit_list else np.zeros(0, np.int64)
        self.layer_key = None
        self.layer = np.empty((3, h, w), np.float32)
        self.layer_out = np.empty((3, h, w), np.uint8)
        self.buf = np.empty((3, h, w), np.float32)
        self.out = np.empty((3, h, w), np.uint8)
        self.scratch = np.empty(3 * h * w, np.float32)
        self.drawn: list[tuple[slice, slice, slice]] = []  # boxes of buf drawn over the layer this frame
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        rad = np.sqrt(((xx - w / 2) / (w * 0.62)) ** 2 + ((yy - h * 0.42) / (h * 0.75)) ** 2)
        self.vignette = (np.clip(1.15 - rad, 0.0, 1.0) ** 1.6).astype(np.float32)
        rng = np.random.default_rng(seed + 7919)
        # random rounding on the final cast: no banding in the dark gradients
        self.dither = rng.random((3, h, w), dtype=np.float32) / 255.0
        self.band_y0, self.band_y1 = int(h * 0.82), int(h * 0.97)
        bh = self.band_y1 - self.band_y0
        self.band_d = np.abs(np.arange(bh, dtype=np.float32) - (bh - 1) / 2)[:, None]
        self.band_half = bh / 2 - 1
        self.band_xs = np.arange(w, dtype=np.float32)
        self.band_page = -1
        mix_hits = hit_frames(analysis.mix.onsets, self.fps, n) / self.fps  # the mix's own, on the frame grid
        hits = np.concatenate([st.onset_times for st in self.states] + [mix_hits])
        self.page_starts = band_pages(unique(hits), analysis.frames / self.fps)
        self.envs = [np.asarray(t.envelope, np.float32) for t in analysis.tracks]
        self.grid = np.arange(analysis.frames, dtype=np.float32)
        self.captions = [_text_mask(e.label, max(9, h // 28)) for e in self.elements] if captions else None

    # -- one frame
    def frame(self, k: int) -> np.ndarray:
        t = k / self.fps
        for st in self.states:
            st.step(k, self.fps)
        pres = [self._presence(el, t) for el in self.elements]
        # background and band change only on a hit or a presence fade: kept as one layer until then
        # Only the boxes the elements drew in change between layers: the last frame's are put back from
        # the layer (in float and in uint8) and this frame's converted, not the whole frame.
        head = self._head_time(k, t)
        key = (tuple(round(p, 3) for p in pres), head)
        if key != self.layer_key:
            self._background(pres)
            self._band(head)
            np.copyto(self.layer, self.buf)
            _to_uint8(self.layer, self.layer_out, self.scratch)
            np.copyto(self.out, self.layer_out)
            self.layer_key = key
        else:
            for box in self.drawn:
                self.buf[box] = self.layer[box]
                self.out[box] = self.layer_out[box]
        self.drawn = []
        for el, st, p in zip(self.elements, self.states, pres):
            self._element(el, st, p, k, t)
        for box in self.drawn:  # boxes may overlap: each converts the finished sum again, to the same bytes
            _to_uint8(self.buf[box], self.out[box], self.scratch)
        return self.out

    def _presence(self, el: Element, t: float) -> float:
        t_end = t + 1.0 / self.fps  # the frame shows [t, t_end): it shows a start that falls inside it
        if t_end <= el.start:
            return 0.0
        if t <= el.end:
            ramp = PRESENCE_MOVE if el.home != el.stage else PRESENCE_IN
            return _smoothstep((t_end - el.start) / ramp) if el.start > 0 else 1.0
        return 1.0 - _smoothstep((t - el.end) / PRESENCE_OUT)

    def _background(self, pres: list[float]) -> None:
        # The background takes the hue of the tracks present and otherwise holds still: breathing with
        # the mix moved every pixel on every frame (flow that no hit makes, and costly to encode).
        tint = np.zeros(3, np.float32)
        weight = 1e-6
        for el, p in zip(self.elements, pres):
            tint += el.color * p
            weight += p
        color = BG[PLANES] + tint / max(weight, 1.0) * 0.07
        for c in range(3):
            np.multiply(self.vignette, color[c], out=self.buf[c])
        self.buf += self.dither

    def _head_time(self, k: int, t: float) -> float:
        """Where the band's playhead stands at frame ``k``: on the latest hit of its page (or the page's
        start). It jumps on hits and holds between them, so that it moves with the sound."""
        page = int(np.searchsorted(self.page_starts, t + 1e-9, "right")) - 1
        t0 = float(self.page_starts[page])
        i = int(np.searchsorted(self.hits, k, "right")) - 1
        return max(t0, float(self.hits[i]) / self.fps) if i >= 0 else t0

    def _band(self, t: float) -> None:
        """The band with its playhead at ``t`` (see ``_head_time``)."""
        if not self.envs:
            return
        y0, y1 = self.band_y0, self.band_y1
        region = self.buf[:, y0:y1]
        # a page stands still while the playhead crosses it (a scrolling band would be motion that no
        # sound makes); played columns are brighter than coming ones
        page = int(np.searchsorted(self.page_starts, t + 1e-9, "right")) - 1
        t0 = float(self.page_starts[page])
        xs, w = self.band_xs, self.w
        if page != self.band_page:
            self.band_page = page
            self.band_times = (t0 + xs * (BAND_WINDOW_S / w)) * self.fps - 0.5
        times = self.band_times
        head = (t - t0) * w / BAND_WINDOW_S
        shade = np.where(xs < head, np.float32(0.62), np.float32(0.30))
        shade += np.float32(0.8) * np.exp(-((xs - head) / np.float32(w * 0.012)) ** 2)
        n = len(self.envs)
        scale = self.band_half / max(1.0, n ** 0.6)
        below = np.zeros((1, self.w), np.float32)
        cover_prev = np.clip(below - self.band_d + 0.5, 0, 1)
        for el, env in zip(self.elements, self.envs):
            height = np.interp(times, self.grid, env, left=0.0, right=0.0).astype(np.float32)[None, :] * scale
            top = np.minimum(below + height, self.band_half)
            cover = np.clip(top - self.band_d + 0.5, 0, 1)
            alpha = (cover - cover_prev) * shade
            # brighter at the outer edge of each layer: reads as light, not as a bar chart
            alpha *= 0.55 + 0.45 * np.clip(1.0 - (top - self.band_d) / 3.0, 0, 1)
            for c in range(3):
                region[c] += alpha * el.color[c]
            below, cover_prev = top, cover
        mid = (y1 - y0) // 2
        region[:, mid] += 0.05
        xc = min(int(head), w - 2)
        region[:, :, xc:xc + 2] += 0.10
        # the page's onsets as small ticks above the band, in each track's colour
        tick_y = max(0, y0 - 5)
        for el, st in zip(self.elements, self.states):
            of = st.onset_times
            for o in of[np.searchsorted(of, t0):np.searchsorted(of, t0 + BAND_WINDOW_S)]:
                x = int((o - t0) * w / BAND_WINDOW_S)
                if 0 <= x < w - 1:
                    self.buf[:, tick_y:tick_y + 3, x:x + 2] += (el.color * (0.6 if o <= t else 0.3))[:, None, None]

    def _element(self, el: Element, st: _TrackState, p: float, k: int, t: float) -> None:
        (hx, hy, hr), (sx, sy, sr) = el.home, el.stage
        moving = el.home != el.stage
        if p <= 0.002 and not moving:
            return
        q = _smoothstep(p) if moving else 1.0
        cx, cy, base = hx + (sx - hx) * q, hy + (sy - hy) * q, hr + (sr - hr) * q
        vis = 0.35 + 0.65 * p if moving else p  # a concat chip stays visible while it waits
        lvl = st.level * p
        age = st.age
        flash = math.exp(-age / FLASH_S) * (vis if moving else p) if age >= 0 else 0.0
        r = base * (1.0 if moving else p) * (0.55 + 0.45 * lvl + 0.14 * flash)
        if r < 0.5:
            return
        halo_r = r + base * HALO_GAP if 0 <= age < HALO_S and p > 0.05 else None
        glow_w = base * (0.45 + 0.45 * lvl + 0.35 * flash)
        half = REACH[el.shape] * max(r + glow_w, (halo_r or 0) + 4) + 2
        x0, x1 = max(0, int(cx - half)), min(self.w, int(cx + half) + 2)
        y0, y1 = max(0, int(cy - half)), min(self.h, int(cy + half) + 2)
        if x1 <= x0 or y1 <= y0:
            return
        xs = np.arange(x0, x1, dtype=np.float32) - np.float32(cx)
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
        if el.shape == "circle":
            u, v = xs[None, :], ys
        else:
            c, s = np.float32(math.cos(st.angle)), np.float32(math.sin(st.angle))
            u, v = xs * c + ys * s, ys * c - xs * s
        d = sdf(el.shape, u, v, r)
        glow = np.clip(1.0 - d / glow_w, 0, 1)  # 1 inside the shape (d < 0)
        glow *= glow
        glow_gain = np.float32(vis * (0.06 + 0.30 * lvl + 0.35 * flash))
        # glass: the inside brightens towards the edge, a neon rim, a soft glow outside. Fill and rim are
        # zero where d >= rim_w, which lies outside the core box (REACH): only the glow is drawn beyond it.
        rim_w = 1.2 + 0.02 * base
        core_half = REACH[el.shape] * (r + rim_w) + 2
        core = (slice(max(y0, int(cy - core_half)) - y0, min(y1, int(cy + core_half) + 2) - y0),
                slice(max(x0, int(cx - core_half)) - x0, min(x1, int(cx + core_half) + 2) - x0))
        dc = d[core]
        fill = np.clip(0.5 - dc / 0.8, 0, 1)  # anti-aliased over ~1 px
        inner = fill * np.clip(1.0 + dc / (0.7 * r), 0.15, 1.0)
        rim = np.clip(1.0 - np.abs(dc) / rim_w, 0, 1)
        inten = glow * glow_gain
        lit = inner * np.float32(vis * (0.18 + 0.5 * lvl))
        lit += rim * np.float32(vis * (0.45 + 0.55 * lvl))
        lit += glow[core] * glow_gain
        inten[core] = lit
        if halo_r is not None:
            life = 1.0 - age / HALO_S
            dr = sdf(el.shape, u, v, halo_r)
            inten += np.clip(1.0 - np.abs(dr) / (1.0 + 2.5 * life), 0, 1) * np.float32(0.8 * life * life * p)
        self.drawn.append((slice(None), slice(y0, y1), slice(x0, x1)))
        region = self.buf[:, y0:y1, x0:x1]
        white = fill * np.float32(0.6 * flash) if flash > 0.02 else None  # the core turns white on the onset
        for c in range(3):
            region[c] += inten * el.color[c]
            if white is not None:
                region[c][core] += white
        if self.captions is not None:
            self._caption(el, cx, cy + base * 1.18 + 3, cy - base * 1.18 - 3, vis * (0.6 + 0.4 * lvl))

    def _caption(self, el: Element, x: float, below: float, above: float, alpha: float) -> None:
        mask = self.captions[self.elements.index(el)]
        if mask is None or alpha <= 0.01:
            return
        mh, mw = mask.shape
        x0, y0 = int(round(x - mw / 2)), int(round(below))
        if y0 + mh > self.band_y0 - 8:  # no room under the element: put the label above it
            y0 = int(round(above - mh))
        sx0, sy0 = max(0, -x0), max(0, -y0)
        x0c, y0c = max(0, x0), max(0, y0)
        x1c, y1c = min(self.w, x0 + mw), min(self.h, y0 + mh)
        if x1c <= x0c or y1c <= y0c:
            return
        m = mask[sy0:sy0 + (y1c - y0c), sx0:sx0 + (x1c - x0c)] * np.float32(alpha)
        self.drawn.append((slice(None), slice(y0c, y1c), slice(x0c, x1c)))
        col = 0.5 * el.color + 0.5
        for c in range(3):
            self.buf[c, y0c:y1c, x0c:x1c] += m * col[c]


def _to_uint8(src: np.ndarray, dst: np.ndarray, scratch: np.ndarray) -> None:
    """``dst = src * 255`` capped at 255, as uint8: the cast truncates, which with the dither added to
    the background is random rounding. ``scratch``: float32 room for at least ``src.size`` values."""
    tmp = scratch[:src.size].reshape(src.shape)
    np.multiply(src, np.float32(255.0), out=tmp)
    np.minimum(tmp, np.float32(255.0), out=tmp)
    dst[...] = tmp


def band_pages(hits: np.ndarray, duration: float) -> np.ndarray:
    """Start times of the band's pages. A page turns on the last hit (sorted onset times, on the frame
    grid) in its final quarter, so that the turn moves with a sound; with none there, after
    BAND_WINDOW_S."""
    starts = [0.0]
    while starts[-1] + BAND_WINDOW_S < duration:
        s = starts[-1]
        i0, i1 = np.searchsorted(hits, [s + 0.75 * BAND_WINDOW_S, s + BAND_WINDOW_S], "right")
        starts.append(float(hits[i1 - 1]) if i1 > i0 else s + BAND_WINDOW_S)
    return np.asarray(starts)


def _text_mask(text: str, size: int) -> np.ndarray | None:
    """Anti-aliased text as a float32 alpha mask, with Pillow's built-in font (no system fonts)."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise UsageError("captions need Pillow", hint="pip install pillow") from None
    text = text.strip()[:48]
    if not text:
        return None
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        font = ImageFont.load_default()
    x0, y0, x1, y1 = font.getbbox(text)
    img = Image.new("L", (max(1, x1 - x0 + 2), max(1, y1 - y0 + 2)), 0)
    ImageDraw.Draw(img).text((1 - x0, 1 - y0), text, fill=255, font=font)
    return np.asarray(img, np.float32) / 255.0


# ---------------------------------------------------------------------------------------- entry

def layout_boxes(elements: list[Element], factor: float, width: int, height: int) -> list[dict]:
    """Where each track's element lives while its track sounds, in output pixels."""
    out = []
    for el in elements:
        x, y, r = el.stage
        ext = r * 1.15
        box = [max(0, int((x - ext) * factor)), max(0, int((y - ext) * factor)),
               min(width, int(math.ceil((x + ext) * factor))), min(height, int(math.ceil((y + ext) * factor)))]
        out.append({"index": el.index, "label": el.label, "box": box, "start": el.start, "end": el.end})
    return out


# x264 is most of the render time. "ultrafast" with CABAC and the deblocking filter put back encodes these
# soft gradients about twice as fast as "superfast" at the same size and without visible blocking.
X264_PARAMS = "cabac=1:deblock=1,0,0"
# CRF spends about a sixth of this encode rating each frame's complexity (x264's half-size lookahead).
# These frames vary little, and CRF 20 settles on them at QP 14-17. On three 720p renders a constant QP
# of crf - 4 took 0.87-1.21x CRF's bytes, with a mean PSNR from 0.44 dB lower to 0.80 dB higher and a
# worst frame 1.9-2.9 dB better (benchmarks/render.py --quality).
CRF_TO_QP = 4


def quantizer(crf: int) -> int:
    """The constant x264 QP the renderer encodes at for the user's ``crf``. Only 0 gives QP 0, which x264
    codes losslessly in a profile many players lack."""
    return 0 if crf <= 0 else max(1, crf - CRF_TO_QP)


def render(analysis: Analysis, output: str | os.PathLike, *, width: int = 1280, height: int = 720, seed: int = 0,
           captions: bool = False, progress: ProgressFn = None, crf: int = 20, preset: str = "ultrafast",
           x264_params: str | None = X264_PARAMS) -> dict:
    """Render a silent H.264 video of ``analysis.frames`` frames at ``analysis.fps`` to ``output``, at the
    constant quantizer ``quantizer(crf)``.

    Returns ``{"backend": "procedural", "layout": [{"index", "label", "box": [x0, y0, x1, y1], "start",
    "end"}, ...]}`` with each track's element box in output pixels (for concat: its centre-stage box).
    """
    check_size(width, height, analysis.fps)
    w, h, f = internal_size(width, height)
    painter = Painter(analysis, w, h, seed=seed, captions=captions)
    n = analysis.frames
    with VideoWriter(output, width=width, height=height, fps=analysis.fps, crf=crf, qp=quantizer(crf),
                     preset=preset, src_size=(w, h), pix_fmt="gbrp", x264_params=x264_params) as writer:
        for k in range(n):
            writer.write(painter.frame(k))
            if k % 10 == 0 or k == n - 1:
                report(progress, "video", k + 1, n)
    return {"backend": "procedural", "layout": layout_boxes(painter.elements, width / w, width, height)}
