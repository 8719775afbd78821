"""The composite backend: each source's own picture, placed and timed by the timeline.

Clips are made here: a solid colour that flashes to its complement on known frames, with a click of the
clip's own pitch at the same instants, at different fps and sizes. The output is decoded and measured:
in every layout and mode each tile's flashes start in the output frame of its clicks (within one
frame), and each colour is seen where the manifest's boxes say.
"""
from __future__ import annotations

import dataclasses
import subprocess

import numpy as np
import pytest
import soundfile as sf

from avmix import ffmpeg
from avmix.audio import analyze, compose, io, plan
from avmix.errors import InputError
from avmix.video import composite, layout as lay, pictures
from avclips import chroma, click_times, decode_yuv, make_clip, rgb_uv
from conftest import sine, write_wav

W, H, FPS = 320, 180, 30.0
ERODE = 2  # chroma pixels


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return [
        make_clip(d / "red.mp4", color=(200, 40, 40), fps=25, size=(64, 48), flash_frames=[12, 40, 62], freq=1000,
                  hum=(0.3, 2.8)),
        # variable frame rate in Matroska (whose video starts after the audio)
        # (flashes of two frames: a frame shown for less than an output frame may rightly be dropped)
        make_clip(d / "green.mkv", color=(40, 170, 40), fps=30, size=(96, 54), flash_frames=[20, 21, 55, 56, 80, 81],
                  freq=3000, pts_jitter_ms=9, hum=(0.3, 2.8)),
        # odd size, 4:4:4, 24 fps, MOV with PCM audio
        make_clip(d / "blue.mov", color=(40, 40, 200), fps=24, size=(101, 75), flash_frames=[30, 50],
                  freq=5000, pix_fmt="yuv444p", audio_codec="pcm_s16le", hum=(0.3, 2.8)),
    ]


@pytest.fixture(scope="module")
def mix_job(clips, tmp_path_factory):
    return compose_job(tmp_path_factory.mktemp("mix"), [c["path"] for c in clips])


def compose_job(tmp_path, paths, mode="mix", **opts):
    files = [io.open_audio(p) for p in paths]
    tl = plan.plan(mode, files, settings=plan.Settings(limit=False), **opts)
    compose.render(tl, tmp_path / "audio.wav")
    an = analyze.analyze(tl, tmp_path / "audio.wav", fps=FPS)
    x, sr = sf.read(tmp_path / "audio.wav", dtype="float32")
    return tl, an, (x.mean(axis=1) if x.ndim > 1 else x), sr


def visible(entries, k):
    """The manifest entries live at frame k that nothing later in the list covers in full (the one
    drawn last on a box is what is seen there)."""
    live = [e for e in entries if e["start_frame"] <= k < e["end_frame"]]
    out = []
    for i, e in enumerate(live):
        x0, y0, x1, y1 = e["box"]
        covered = any(o["box"][0] <= x0 + (x1 - x0) // 2 < o["box"][2] and o["box"][1] <= y0 + (y1 - y0) // 2 < o["box"][3]
                      for o in live[i + 1:])
        if not covered:
            out.append(e)
    return out


def flash_starts(frames, entries, clip, index, *, crossfading=frozenset()):
    """Output frames where the clip's picture turns to its flash colour, read in the box the manifest
    gives for each frame."""
    base = rgb_uv(clip["color"])
    flashing = []
    for k in range(len(frames)):
        if k in crossfading:
            flashing.append(False)
            continue
        box = next((e["box"] for e in visible(entries, k) if e["index"] == index), None)
        if box is None:
            flashing.append(False)
            continue
        uv = chroma(frames[k:k + 1], box, W, H)[0]
        flashing.append(float(uv @ base) < 0)
    return [k for k in range(len(flashing)) if flashing[k] and (k == 0 or not flashing[k - 1])]


def crossfade_frames(entries):
    full = [e for e in entries if e["box"] == [0, 0, W, H]]
    out = set()
    for a in full:
        for b in full:
            if a is not b:
                out |= set(range(max(a["start_frame"], b["start_frame"]), min(a["end_frame"], b["end_frame"])))
    return out


def seen_box(frame, clip, tol=0.9, masked=()):
    """Bounding box [x0, y0, x1, y1] of the pixels showing the clip's colour (base or flash), outside
    the ``masked`` boxes."""
    n, q = W * H, W * H // 4
    flat = frame.reshape(-1).astype(np.float32)
    u = flat[n:n + q].reshape(H // 2, W // 2) - 128
    v = flat[n + q:].reshape(H // 2, W // 2) - 128
    base = rgb_uv(clip["color"])
    base = base / np.linalg.norm(base)
    mag = np.sqrt(u * u + v * v)
    cos = np.abs(u * base[0] + v * base[1]) / np.maximum(mag, 1e-6)
    hit = (cos > tol) & (mag > 20)
    for x0, y0, x1, y1 in masked:
        hit[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = False
    for _ in range(ERODE):  # thin lines (other tiles' borders in a like colour) vanish, areas shrink
        h = hit.copy()
        h[1:] &= hit[:-1]
        h[:-1] &= hit[1:]
        h[:, 1:] &= hit[:, :-1]
        h[:, :-1] &= hit[:, 1:]
        hit = h
    ys, xs = np.nonzero(hit)
    if len(xs) == 0:
        return None
    g = 2 * ERODE
    return [2 * xs.min() - g, 2 * ys.min() - g, 2 * xs.max() + 2 + g, 2 * ys.max() + 2 + g]


def check_job(tmp_path, clips, paths, info, frames, x, sr, crossfading=frozenset(), threshold=0.03):
    entries = info["layout"]
    assert len(frames) == round(len(x) / sr * FPS + 0.49999) or abs(len(frames) - len(x) / sr * FPS) < 1
    for index, clip in enumerate(clips):
        clicks = [int(np.floor(t * FPS + 1e-6)) for t in click_times(x, sr, clip["freq"], threshold)]
        clicks = [c for c in clicks if c not in crossfading]
        flashes = flash_starts(frames, entries, clip, index, crossfading=crossfading)
        assert clicks, f"no clicks of {clip['path'].name} found"
        assert len(flashes) == len(clicks), (clip["path"].name, flashes, clicks)
        assert all(abs(f - c) <= 1 for f, c in zip(flashes, clicks)), (clip["path"].name, flashes, clicks)
    # boxes: where each colour is seen at a frame is the box the manifest gives it, to the border's width
    for k in range(0, len(frames), 7):
        if k in crossfading:
            continue
        others = [o["box"] for o in visible(entries, k) if o["index"] >= len(clips)]  # tiles not of these clips
        for e in visible(entries, k):
            if e["index"] >= len(clips):
                continue
            x0, y0, x1, y1 = e["box"]
            covered_by_others = [o for o in visible(entries, k) if o is not e and o["box"] != e["box"]
                                 and x0 <= o["box"][0] and o["box"][2] <= x1 and y0 <= o["box"][1] and o["box"][3] <= y1]
            if covered_by_others:  # a spotlight's main picture under the thumbnails: check it is there
                assert seen_box(frames[k], clips[e["index"]], masked=others) is not None
                continue
            seen = seen_box(frames[k], clips[e["index"]], masked=others)
            assert seen is not None, (k, e)
            tol = max(2, lay.even(min(x1 - x0, y1 - y0) * composite.BORDER)) + 2
            assert all(abs(a - b) <= tol for a, b in zip(seen, e["box"])), (k, e["label"], seen, e["box"])


@pytest.mark.parametrize("name", ["grid", "row", "column", "spotlight"])
def test_mix_layouts_keep_flashes_on_clicks_and_boxes_true(tmp_path, clips, mix_job, name):
    paths = [c["path"] for c in clips]
    tl, an, x, sr = mix_job
    out = tmp_path / "v.mp4"
    info = composite.render(tl, an, out, picture_files=paths, width=W, height=H, layout=name)
    assert info["layout_name"] == name
    frames = decode_yuv(out, W, H)
    assert len(frames) == an.frames
    check_job(tmp_path, clips, paths, info, frames, x, sr)
    if name == "grid":
        assert sorted(e["index"] for e in info["layout"]) == [0, 1, 2]
        assert all(e["start_frame"] == 0 and e["end_frame"] == an.frames for e in info["layout"])


def test_spotlight_follows_the_loud_track_with_hysteresis():
    fps = 30.0
    a = np.r_[np.full(90, 0.8), np.full(90, 0.1), np.full(90, 0.8)]
    b = np.r_[np.full(90, 0.1), np.full(90, 0.8), np.full(90, 0.1)]
    track = lay.spotlight_track([a, b], fps)
    shots = lay.runs(track)
    assert [s[0] for s in shots] == [0, 1, 0]
    assert all(abs(s[1] - want) <= 0.5 * fps for s, want in zip(shots[1:], (90, 180)))
    # a challenger only a little louder, or loud for less than the minimum shot, takes nothing
    c = a * 1.2
    assert set(lay.spotlight_track([a, c], fps).tolist()) == {int(np.argmax([a[0], c[0]]))}
    flicker = np.tile(np.r_[np.full(10, 0.9), np.full(10, 0.0)], 15)
    steady = np.full(300, 0.5)
    shots = lay.runs(lay.spotlight_track([steady, flicker], fps))
    assert all(b - a >= lay.SPOT_MIN_SHOT_S * fps for _, a, b in shots[:-1])


def test_concat_cut_with_trimmed_sources(tmp_path, clips):
    paths = [c["path"] for c in clips]
    tl, an, x, sr = compose_job(tmp_path, paths, mode="concat", trim_silence=True)
    assert any(s.offset_sample > 0 for s in tl.sources)  # the trim moved where each source is read from
    out = tmp_path / "v.mp4"
    info = composite.render(tl, an, out, picture_files=paths, width=W, height=H)
    assert info["layout_name"] == "sequence"
    ents = info["layout"]
    assert [e["box"] for e in ents] == [[0, 0, W, H]] * 3
    assert all(a["end_frame"] == b["start_frame"] for a, b in zip(ents, ents[1:]))  # cuts, no overlap
    check_job(tmp_path, clips, paths, info, decode_yuv(out, W, H), x, sr)


def test_concat_crossfade_is_as_long_as_the_audio_one(tmp_path, clips):
    paths = [c["path"] for c in clips]
    tl, an, x, sr = compose_job(tmp_path, paths, mode="concat", crossfade=0.3)
    out = tmp_path / "v.mp4"
    info = composite.render(tl, an, out, picture_files=paths, width=W, height=H)
    ents = info["layout"]
    frames = decode_yuv(out, W, H)
    for a, b, src in zip(ents, ents[1:], tl.sources[1:]):
        overlap = a["end_frame"] - b["start_frame"]
        assert abs(overlap - 0.3 * FPS) <= 1  # the video crossfade spans the audio crossfade
        assert abs(b["start_frame"] - src.start_sample / sr * FPS) <= 1
        # mid-way both pictures are seen blended: the chroma lies between the two clips' own
        mid = b["start_frame"] + overlap // 2
        ua, um, ub = (chroma(frames[k:k + 1], [0, 0, W, H], W, H)[0]
                      for k in (b["start_frame"] - 4, mid, a["end_frame"] + 3))  # clear of flashes
        t = float((um - ua) @ (ub - ua) / ((ub - ua) @ (ub - ua)))
        assert 0.25 < t < 0.75, (ua, um, ub)
    check_job(tmp_path, clips, paths, info, frames, x, sr, crossfading=crossfade_frames(ents))


def test_overlay_pip_loops_with_its_sound_and_the_base_dims_when_ducked(tmp_path, clips):
    d = tmp_path
    short = make_clip(d / "short.mp4", color=(200, 40, 200), fps=25, size=(80, 60), seconds=1.0, flash_frames=[5],
                      freq=3000, hum=(0.0, 1.0))  # sounding throughout: the base stays ducked
    paths = [clips[0]["path"], short["path"]]
    tl, an, x, sr = compose_job(tmp_path, paths, mode="overlay", at=0.7, loop=True, duck_db=12)
    assert tl.sources[1].loop
    out = tmp_path / "v.mp4"
    info = composite.render(tl, an, out, picture_files=paths, width=W, height=H, pip_position="top-left", pip_size=0.4)
    ents = info["layout"]
    assert ents[0]["box"] == [0, 0, W, H]
    x0, y0, x1, y1 = ents[1]["box"]
    assert x0 < W / 4 and y0 < H / 4 and abs((x1 - x0) - 0.4 * W) <= 2
    assert ents[1]["start_frame"] == int(0.7 * FPS)
    frames = decode_yuv(out, W, H)
    check_job(tmp_path, [clips[0], short], paths, info, frames, x, sr)
    assert len(click_times(x, sr, short["freq"])) >= 2  # the loop repeated the click, and the flash with it
    # the ducked base is dimmer once TOP sounds (luma left of the PiP, away from the borders)
    y = frames.reshape(len(frames), -1)[:, :H * W].reshape(-1, H, W)[:, 40:140, x1 + 10:W - 10].astype(np.float32)
    before, during = y[12:20].mean(), y[45:80].mean()
    assert during < 16 + 0.8 * (before - 16), (before, during)


def test_duck_dimming_follows_the_trigger():
    fps = 30.0
    trigger = np.r_[np.zeros(30), np.ones(60), np.zeros(60)].astype(np.float32)
    dim = composite.duck_dimming(trigger, 12.0, fps, attack=0.01, release=0.25)
    depth = composite.DUCK_SHOWN * (1 - 10 ** (-12 / 20))
    assert dim[:30].min() == 1.0 and abs(dim[80] - (1 - depth)) < 0.01
    assert np.all(np.diff(dim[90:]) >= 0) and dim[-1] > 0.99  # released, smoothly


def test_silent_tiles_dim_and_onsets_flash():
    fps, frames = 30.0, 120
    env = [1.0] * 60 + [0.0] * 60
    level, flash = composite.lighting(env, [1.0], fps, frames)
    gain = composite.DIM + (1 - composite.DIM) * level
    assert gain[30] > 0.95 and gain[110] < composite.DIM + 0.05
    assert flash[30] == 1.0 and flash[29] == 0.0 and np.all(np.diff(flash[30:]) <= 0)  # one pulse, then it settles


def test_calm_lighting_shows_flashes_at_once_and_holds_small_changes():
    fps, frames = 30.0, 120
    env = [0.0] * 30 + [1.0] * 30 + [0.0] * 30 + [0.51 + 0.01 * (k % 2) for k in range(30)]  # then a wobble
    level, flash = composite.lighting(env, [1.0], fps, frames)
    gain = composite.DIM + (1 - composite.DIM) * level + composite.PULSE * flash
    shown = gain[composite.calm(gain)]
    assert shown[30] == gain[30] and shown[29] == gain[29]  # the onset's flash on its own frame
    steps = np.abs(np.diff(shown))
    assert np.all((steps == 0) | (steps >= composite.CALM_STEP))
    assert np.abs(shown - gain).max() < composite.CALM_STEP  # never further off than one step
    assert np.count_nonzero(steps[60:]) < np.count_nonzero(np.diff(gain[60:])) / 3  # the release in a few steps
    assert np.all(steps[95:] == 0)  # a 1% wobble shows nothing


def _amber_png(path):
    """A 40x30 amber PNG whose left half is transparent (the tile's background shows there)."""
    from PIL import Image

    img = np.zeros((30, 40, 4), np.uint8)
    img[..., :3] = (230, 160, 20)
    img[..., 3] = 255
    img[:, :20, 3] = 0
    Image.fromarray(img, "RGBA").save(path)
    return path


def test_audio_only_track_gets_its_element_and_images_are_held(tmp_path, clips):
    tone = write_wav(tmp_path / "tone.wav", sine(440, 2.0, amp=0.3))
    png = _amber_png(tmp_path / "amber.png")
    paths = [clips[0]["path"], tone, tone]
    tl, an, x, sr = compose_job(tmp_path, paths)
    out = tmp_path / "v.mp4"
    info = composite.render(tl, an, out, picture_files=[clips[0]["path"], None, png], width=W, height=H, captions=True)
    frames = decode_yuv(out, W, H)
    boxes = {e["index"]: e["box"] for e in info["layout"]}
    # the element's tile moves (the procedural picture), the image's stays still apart from its lighting
    x0, y0, x1, y1 = boxes[1]
    y = frames.reshape(len(frames), -1)[:, :H * W].reshape(-1, H, W)
    elem = y[:, y0:y1, x0:x1].astype(np.int16)
    assert elem.std() > 3 and np.abs(np.diff(elem, axis=0)).mean() > 0.1
    x0, y0, x1, y1 = boxes[2]
    amber = rgb_uv((230, 160, 20))
    mid = (y0 + y1) // 2
    right = chroma(frames[10:11], [x0 + (x1 - x0) * 3 // 4 - 4, mid - 4, x0 + (x1 - x0) * 3 // 4 + 4, mid + 4], W, H, 0)[0]
    left = chroma(frames[10:11], [x0 + (x1 - x0) // 4 - 4, mid - 4, x0 + (x1 - x0) // 4 + 4, mid + 4], W, H, 0)[0]
    assert right @ amber > 0.5 * (amber @ amber) * 224 and np.linalg.norm(left) < 8
    # captions: the label in white at the top left of a tile (the red clip itself never gets near white)
    x0, y0, x1, y1 = boxes[0]
    assert (y[10, y0:(y0 + y1) // 2, x0:(x0 + x1) // 2] > 200).sum() > 10
    assert (y[10, (y0 + y1) // 2:y1, x0:x1] > 200).sum() == 0


def test_stem_is_the_unlit_picture_full_frame(tmp_path, clips, mix_job):
    paths = [c["path"] for c in clips]
    tl, an, x, sr = mix_job
    out = tmp_path / "01-green.mp4"
    info = composite.render(tl, an, out, picture_files=paths, width=W, height=H, only=1)
    assert [e["box"] for e in info["layout"]] == [[0, 0, W, H]]
    frames = decode_yuv(out, W, H)
    y = frames.reshape(len(frames), -1)[:, :H * W].reshape(-1, H, W)
    # unlit: the base colour's luma does not follow the loudness
    r, g, b = (c / 255 for c in clips[1]["color"])
    want = 16 + 219 * (0.2126 * r + 0.7152 * g + 0.0722 * b)
    base = [k for k in range(len(frames)) if chroma(frames[k:k + 1], [0, 0, W, H], W, H)[0] @ rgb_uv(clips[1]["color"]) > 0]
    assert np.all(np.abs(y[base, 40:140, 80:240].mean(axis=(1, 2)) - want) < 4)
    check_job(tmp_path, [clips[1]], paths, {"layout": [dict(info["layout"][0], index=0)]}, frames, x, sr)


@pytest.mark.parametrize("case", ["grid", "row", "concat-grid", "image", "stem", "pieces"])
def test_one_ffmpeg_graph_draws_what_the_numpy_compositor_draws(tmp_path, clips, mix_job, monkeypatch, case):
    """Still layouts are drawn by one ffmpeg graph (avmix.video.stack); frame for frame, losslessly
    coded, its picture is the numpy compositor's: timing, holds, boxes, lighting and borders."""
    from avmix.video import stack

    paths = [c["path"] for c in clips]
    tl, an, x, sr = mix_job
    layout, only, pics = {"row": "row"}.get(case), None, paths
    if case in ("concat-grid", "pieces"):  # tracks start apart and are read from trimmed offsets: held before and after
        tl, an, x, sr = compose_job(tmp_path, paths, mode="concat", trim_silence=True)
        assert any(s.offset_sample > 0 for s in tl.sources) and any(s.start_sample > 0 for s in tl.sources)
        layout = "grid"
    if case == "image":
        pics = [paths[0], _amber_png(tmp_path / "amber.png"), paths[2]]
    if case == "stem":
        only = 1
    if case == "pieces":  # a long video is made in pieces of whole keyframe intervals, then joined
        monkeypatch.setattr(stack, "PIECE_GOPS", 1)
        assert an.frames > 3 * 2 * FPS
    if case == "grid":  # the lighting scripts' folder in the graph: every character ffmpeg escapes
        import tempfile

        weird = tmp_path / "a b,c:d'e[f];g\\h"
        weird.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(weird))
    used = []
    plan = stack.plan
    monkeypatch.setattr(stack, "plan", lambda *a, **k: used.append(plan(*a, **k)) or used[-1])
    kw = dict(picture_files=pics, width=W, height=H, layout=layout, only=only, crf=0)
    seen = []
    info = composite.render(tl, an, tmp_path / "graph.mp4", **kw, progress=lambda stage, done, total: seen.append(done))
    assert used and used[-1] is not None  # the graph drew it
    assert seen == sorted(seen) and seen[0] == 0 and seen[-1] == an.frames  # the progress bar moves on to the end
    monkeypatch.setattr(stack, "plan", lambda *a, **k: None)
    assert composite.render(tl, an, tmp_path / "numpy.mp4", **kw) == info
    a = decode_yuv(tmp_path / "graph.mp4", W, H).astype(np.int16)
    b = decode_yuv(tmp_path / "numpy.mp4", W, H).astype(np.int16)
    assert a.shape == b.shape and len(a) == an.frames
    diff = np.abs(a - b)
    assert diff.mean() < 0.3 and np.percentile(diff, 99.9) <= 2, (diff.mean(), np.percentile(diff, 99.9))
    worst = diff.reshape(len(diff), -1).max(axis=1)
    assert np.count_nonzero(worst > 4) <= 0.01 * len(worst), np.flatnonzero(worst > 4)  # no frame is off
    if case != "stem":
        assert a.std(axis=0).mean() > 1  # the lighting moved


def test_spotlight_pip_loops_captions_and_elements_stay_with_numpy(clips, mix_job):
    from avmix.video import stack

    paths = [c["path"] for c in clips]
    tl, an, x, sr = mix_job
    pics = [pictures.probe(p) for p in paths]
    tracks = composite._tracks(tl, an, pics)
    fps, frames = float(an.fps), an.frames
    _, grid = composite.plan_shots(tl, an, "grid", W, H)
    _, spot = composite.plan_shots(tl, an, "spotlight", W, H)
    assert stack.plan(tracks, grid, frames, fps, tl.sample_rate, captions=False) is not None
    assert stack.plan(tracks, grid, frames, fps, tl.sample_rate, captions=True) is None
    assert stack.plan(tracks, spot, frames, fps, tl.sample_rate, captions=False) is None
    no_picture = [dataclasses.replace(t, picture=None) if t.index == 1 else t for t in tracks]
    assert stack.plan(no_picture, grid, frames, fps, tl.sample_rate, captions=False) is None
    looped = [dataclasses.replace(t, loop=True, length=t.length // 3) if t.index == 0 else t for t in tracks]
    assert stack.plan(looped, grid, frames, fps, tl.sample_rate, captions=False) is None


# ------------------------------------------------------------------------- pictures from the wild

def _ffmpeg(*args):
    subprocess.run([ffmpeg.executable(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def tile_rgb(path, w, h):
    pic = pictures.probe(path)
    f = pictures.still(pic, w, h, FPS).astype(np.float32).reshape(-1)
    y = f[:h * w].reshape(h, w) - 16
    u = np.repeat(np.repeat(f[h * w:h * w * 5 // 4].reshape(h // 2, w // 2), 2, 0), 2, 1) - 128
    v = np.repeat(np.repeat(f[h * w * 5 // 4:].reshape(h // 2, w // 2), 2, 0), 2, 1) - 128
    y, u, v = y * 255 / 219, u * 255 / 224, v * 255 / 224
    rgb = np.stack([y + 1.5748 * v, y - 0.1873 * u - 0.4681 * v, y + 1.8556 * u], -1)
    return pic, np.clip(rgb, 0, 255)


def test_rotation_side_data_is_applied(tmp_path):
    # the picture as it should be seen: 64x48, red on the left, blue on the right; stored turned 90 degrees
    stored = tmp_path / "stored.mp4"
    _ffmpeg("-f", "lavfi", "-i", "color=red:s=32x48:d=1[a];color=blue:s=32x48:d=1[b];[a][b]hstack,transpose=clock",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", str(stored))
    phone = tmp_path / "phone.mp4"
    try:  # ffmpeg 6.1+ writes a display matrix with -display_rotation; 5.1 with the rotate tag
        _ffmpeg("-display_rotation", "90", "-i", str(stored), "-c", "copy", str(phone))
    except subprocess.CalledProcessError:
        _ffmpeg("-i", str(stored), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(phone))
    pic, rgb = tile_rgb(phone, 64, 48)
    assert pic.rotation in (90, 270) and (pic.width, pic.height) == (64, 48)
    assert rgb[24, 8, 0] > 180 and rgb[24, 8, 2] < 60
    assert rgb[24, 56, 2] > 180 and rgb[24, 56, 0] < 60


def test_non_square_pixels_ten_bit_and_alpha(tmp_path):
    # 32x48 stored with SAR 2:1 is 64x48 seen: its top quarter green; the tile (64x48) is not cropped
    sar = tmp_path / "sar.mp4"
    _ffmpeg("-f", "lavfi", "-i", "color=green:s=32x12:d=1[a];color=blue:s=32x36:d=1[b];[a][b]vstack,setsar=2",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", str(sar))
    pic, rgb = tile_rgb(sar, 64, 48)
    assert abs(pic.sar - 2) < 1e-6 and pic.width == 64
    assert rgb[4, 32, 1] > 80 and rgb[4, 32, 2] < 60 and rgb[30, 32, 2] > 180
    # 10-bit
    deep = tmp_path / "deep.mkv"
    _ffmpeg("-f", "lavfi", "-i", "color=0xC83228:s=48x32:d=1", "-vf", "scale=out_color_matrix=bt470bg",
            "-c:v", "ffv1", "-pix_fmt", "yuv420p10le", "-colorspace", "bt470bg", str(deep))
    pic, rgb = tile_rgb(deep, 48, 32)
    assert "10" in pic.pix_fmt
    assert np.all(np.abs(rgb[16, 24] - (200, 50, 40)) < 12)
    # alpha in a video: half-transparent red over the background
    clear = tmp_path / "alpha.mov"
    _ffmpeg("-f", "lavfi", "-i", "color=red@0.5:s=48x32:d=1,format=rgba", "-c:v", "png", str(clear))
    pic, rgb = tile_rgb(clear, 48, 32)
    assert pic.alpha
    bg = np.array(composite.BG_RGB) * 255
    assert np.all(np.abs(rgb[16, 24] - (0.5 * np.array([255, 0, 0]) + 0.5 * bg)) < 14)
    # JPEG
    jpg = tmp_path / "c.jpg"
    _ffmpeg("-f", "lavfi", "-i", "color=0x2850C8:s=40x30", "-frames:v", "1", str(jpg))
    pic, rgb = tile_rgb(jpg, 40, 30)
    assert pic.kind == "image" and np.all(np.abs(rgb[15, 20] - (40, 80, 200)) < 14)


def test_short_picture_holds_its_last_frame(tmp_path):
    clip = make_clip(tmp_path / "short.mp4", color=(40, 170, 40), fps=25, size=(64, 48), seconds=1.0,
                     flash_frames=[24], audio=False)  # its last frame is the flash colour
    pic = pictures.probe(clip["path"])
    with pictures.Reader(pic, 64, 48, FPS) as r:
        early = chroma(r.get(3)[None], [0, 0, 64, 48], 64, 48)[0]
        late = chroma(r.get(90)[None], [0, 0, 64, 48], 64, 48)[0]
        again = chroma(r.get(2)[None], [0, 0, 64, 48], 64, 48)[0]  # back to the start: a new decoder
    base = rgb_uv(clip["color"])
    assert early @ base > 0 and late @ base < 0 and again @ base > 0


# ------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("kind", ["text", "audio", "missing"])
def test_bad_picture_is_one_line_and_nothing_is_written(tmp_path, clips, mix_job, kind):
    tl, an, x, sr = mix_job
    bad = {"text": tmp_path / "notes.mp4", "audio": tmp_path / "tone.wav", "missing": tmp_path / "gone.png"}[kind]
    if kind == "text":
        bad.write_text("not a video\n")
    elif kind == "audio":
        write_wav(bad, sine(440, 0.5))
    out = tmp_path / "v.mp4"
    with pytest.raises(InputError) as e:
        composite.render(tl, an, out, picture_files=[clips[0]["path"], bad], width=W, height=H)
    msg = e.value.message
    assert str(bad) in msg and "\n" not in msg
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))


# ------------------------------------------------------------------------- generate

def test_generate_chooses_composite_records_layout_and_writes_picture_stems(tmp_path, clips, run_cli):
    from PIL import Image

    tone = write_wav(tmp_path / "tone.wav", sine(440, 2.0, amp=0.3))
    png = tmp_path / "amber.png"
    Image.fromarray(np.full((30, 40, 3), (230, 160, 20), np.uint8)).save(png)
    out, work, stems = tmp_path / "out.mp4", tmp_path / "work", tmp_path / "stems"
    r = run_cli("generate", clips[0]["path"], clips[1]["path"], tone, tone, "--image", "-", "--image", "-",
                "--image", png, "-o", out, "--size", f"{W}x{H}", "--workdir", work, "--stems", stems,
                "--preview", tmp_path / "sheet.png")
    assert r.code == 0, r.err
    sheet = np.asarray(Image.open(tmp_path / "sheet.png").convert("RGB")).astype(int)
    reds = (sheet[..., 0] > 120) & (sheet[..., 1] < 70) & (sheet[..., 2] < 70)
    assert reds.sum() > 200  # the contact sheet's thumbnails show the composite (the red clip's tile)
    assert "backend composite: 3 tracks with a picture" in r.err
    import json
    man = json.loads((work / "manifest.json").read_text())
    assert man["backend"]["name"] == "composite" and man["options"]["layout"] is None
    entries = man["video"]["layout"]
    assert [e["index"] for e in entries] == [0, 1, 2, 3] and all(len(e["box"]) == 4 for e in entries)
    tl = json.loads((work / "timeline.json").read_text())
    assert [s["picture"]["kind"] if s.get("picture") else None for s in tl["sources"]] == \
        ["video", "video", "image", None]
    assert sorted(p.name for p in stems.glob("*.mp4")) == ["00-red.mp4", "01-green.mp4", "02-tone.mp4"]
    # the muxed output: each clip's flashes on its clicks, in its box
    frames = decode_yuv(out, W, H)
    x = decode_audio(out)
    check_job(tmp_path, clips[:2], None, {"layout": entries}, frames, x, 48000, threshold=0.1)  # AAC: less clean
    # a stem is the picture alone, as long as the video, its flashes on the clip's clicks
    stem = decode_yuv(stems / "01-green.mp4", W, H)
    assert len(stem) == len(frames)
    check_job(tmp_path, [clips[1]], None, {"layout": [dict(entries[0], index=0, box=[0, 0, W, H])]}, stem, x, 48000,
              threshold=0.1)


def decode_audio(path) -> np.ndarray:
    raw = subprocess.run([ffmpeg.executable(), "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", "48000",
                          "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.float32)


def test_video_without_sound_is_refused_in_one_line(tmp_path, clips, run_cli):
    mute = make_clip(tmp_path / "mute.mp4", color=(40, 40, 200), seconds=1.0, audio=False)["path"]
    out = tmp_path / "out.mp4"
    r = run_cli("generate", clips[0]["path"], mute, "-o", out, "--size", f"{W}x{H}")
    assert r.code == 1
    lines = [ln for ln in r.err.splitlines() if ln.startswith("avmix: error")]
    assert len(lines) == 1 and "mute.mp4" in lines[0] and "no audio stream" in lines[0]
    assert "Traceback" not in r.err and not out.exists() and not list(tmp_path.glob(".out.mp4*"))


@pytest.mark.parametrize("args, words", [
    (["--layout", "grid", "--backend", "procedural"], "composite backend"),
    (["--image", "-", "--image", "IMAGE", "--backend", "procedural"], "--image is for the composite backend"),
    (["--layout", "pip"], "overlay"),
    (["--image", "-", "--image", "-", "--image", "-"], "--image"),
    (["--pip-size", "2"], "pip-size"),
])
def test_bad_composite_options_are_one_line(tmp_path, clips, run_cli, args, words):
    out = tmp_path / "out.mp4"
    if "IMAGE" in args:
        from PIL import Image

        Image.new("RGB", (32, 32), (0, 90, 200)).save(tmp_path / "face.png")
        args = [str(tmp_path / "face.png") if a == "IMAGE" else a for a in args]
    r = run_cli("generate", clips[0]["path"], clips[1]["path"], "-o", out, *args)
    assert r.code == 2, r.err
    assert words in r.err and "Traceback" not in r.err and not out.exists()


@pytest.mark.parametrize("kind", ["missing", "text", "truncated"])
def test_bad_image_stops_generate_before_any_work(tmp_path, clips, run_cli, kind):
    img = tmp_path / "face.png"
    if kind == "text":
        img.write_text("not an image\n")
    if kind == "truncated":
        from PIL import Image

        Image.new("RGB", (64, 48), (200, 30, 30)).save(img)
        img.write_bytes(img.read_bytes()[:100])
    out = tmp_path / "out.mp4"
    r = run_cli("generate", clips[0]["path"], "--image", img, "-o", out)
    assert r.code == 1 and "face.png" in r.err and "Traceback" not in r.err
    assert len([ln for ln in r.err.splitlines() if ln.startswith("avmix: error")]) == 1
    assert not out.exists() and not list(tmp_path.glob(".out.mp4*"))
    if kind == "truncated":
        assert "truncated or corrupt" in r.err


def test_fixed_point_lighting_matches_the_formula_and_stays_in_its_tile():
    x = np.arange(256, dtype=np.uint8).reshape(8, 32)
    tmp = np.empty(x.shape, np.uint16)
    for g in (0.0, 0.5, 0.73, 1.0, 1.2, 1.35, 1.6):
        for pivot in (16, 128):
            frame = np.zeros((12, 40), np.uint8)
            composite.scale_about(x, frame[2:10, 3:35], g, pivot, tmp)  # an odd column offset, as chroma may have
            exact = np.clip(pivot + (x.astype(np.float64) - pivot) * g, 0, 255)
            assert np.abs(frame[2:10, 3:35] - exact).max() <= (1.0 if g <= 1 else 1.5), (g, pivot)
            tile = frame[2:10, 3:35]
            assert tile[exact >= 255].min(initial=255) == 255 and tile[exact <= 0].max(initial=0) == 0  # clipped
            frame[2:10, 3:35] = 0
            assert not frame.any()  # nothing written outside the tile


def test_a_piece_of_the_graph_holds_only_its_own_lighting_changes():
    from avmix.video import stack

    changes = [(k, {"contrast": "1"}, "0xffffff") for k in (0, 30, 60, 61, 90, 119, 120, 150)]
    lines = stack._commands(changes, "t0", 30.0, 60, 120).splitlines()
    times = [float(line.split()[0]) for line in lines]
    assert times == pytest.approx([0.5 / 30, 29.5 / 30, 58.5 / 30], abs=1e-6)  # frames 61, 90 and 119, from frame 60
    assert all("eq@t0 contrast 1" in line and "fillborders@t0 color 0xffffff" in line for line in lines)
