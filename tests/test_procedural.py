"""The procedural renderer and the video writer: frame counts, A/V sync, determinism, no partial files."""
from __future__ import annotations

import time

import numpy as np
import pytest

from avmix import ffmpeg
from avmix.audio.analyze import analyze_array, n_video_frames
from avmix.errors import FFmpegError, UsageError
from avmix.timeline import Analysis
from avmix.video import procedural, timing
from avmix.video.writer import VideoWriter

SR = 16000
W, H = 320, 180


def clicks(times, seconds, amp=0.8):
    x = np.zeros(int(seconds * SR), np.float32)
    for t in times:
        i = int(round(t * SR))
        x[i:i + 32] = amp * np.hanning(32)
    return x


def make_analysis(tracks, seconds, fps, mode="mix", labels=None, starts=None):
    n = n_video_frames(int(seconds * SR), SR, fps)
    tas = []
    for i, x in enumerate(tracks):
        ta = analyze_array(x, SR, fps=fps, n_frames=n, label=(labels or [f"track {i}" for _ in tracks])[i], index=i)
        if starts:
            ta.start = starts[i][0]
            ta.end = starts[i][1]
        tas.append(ta)
    mix = analyze_array(np.sum(tracks, axis=0), SR, fps=fps, n_frames=n, label="mix")
    return Analysis(fps=fps, frames=n, duration=seconds, tracks=tas, mix=mix, mode=mode)


def decode_gray(path, w=W, h=H) -> np.ndarray:
    raw = ffmpeg.run(["-i", ffmpeg.url(path), "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}", "pipe:"],
                     what="decode")
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w)


def box_changes(frames: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = box
    crop = frames[:, y0:y1, x0:x1].astype(np.int16)
    diff = np.abs(np.diff(crop, axis=0)).mean(axis=(1, 2))
    return np.concatenate(([0.0], diff))  # change[k] = frame k vs frame k-1


def test_av_sync_clicks_across_the_file(tmp_path):
    fps, seconds = 25, 40.0
    times = [1.013, 7.77, 20.5, 33.31, 38.93]  # late clicks catch drift
    noise = (0.05 * np.random.default_rng(1).standard_normal(int(seconds * SR))).astype(np.float32)
    an = make_analysis([clicks(times, seconds), noise], seconds, fps)
    out = tmp_path / "v.mp4"
    res = procedural.render(an, out, width=W, height=H, seed=3)
    frames = decode_gray(out)
    assert len(frames) == an.frames
    change = box_changes(frames, res["layout"][0]["box"])
    for t in times:
        k = int(np.ceil(t * fps))  # the first frame at or after the click
        window = change[k - 12:k + 13]
        assert abs(int(np.argmax(window)) - 12) <= 1, f"click at {t} s: biggest change at frame {k - 12 + int(np.argmax(window))}, not {k}"
    # the noise track's element does not jump on the clicks
    other = box_changes(frames, res["layout"][1]["box"])
    hit = [int(np.ceil(t * fps)) for t in times]
    assert max(other[k] for k in hit) < 0.5 * min(change[k] for k in hit)


def test_motion_peaks_mark_the_hits(tmp_path):
    """Optical-flow peaks (as AV-Align finds them) mark the hits: after each hit the picture only
    settles. A ripple flying out, a jolt in the release or a scrolling band each made peaks that no
    sound makes; the band's page turns on the hit at 9.5 s, not on its own at 10 s."""
    pytest.importorskip("cv2")
    from avmix import score

    fps, seconds = 25, 14.0
    times = [1.0, 3.0, 5.0, 7.0, 9.5, 12.0]
    noise = (0.02 * np.random.default_rng(4).standard_normal(int(seconds * SR))).astype(np.float32)
    an = make_analysis([clicks(times, seconds), noise], seconds, fps)
    out = tmp_path / "v.mp4"
    procedural.render(an, out, width=W, height=H, seed=2)
    fw, fh = W, H
    whole, _ = score.flow_trajectories(score.gray_frames(out, fw, fh))
    peaks = score.peak_frames(whole)
    peaks = peaks[peaks > 5]  # the noise starting at 0 s is an onset too
    near_hit = [p for p in peaks if any(abs(p - t * fps) <= 1 for t in times)]
    other = [p for p in peaks if p not in near_hit]
    detail = (peaks, whole.round(2))
    assert all(any(abs(p - t * fps) <= 1 for p in peaks) for t in times), detail
    # what else moves is noise beside the hits (it was a quarter of a hit's motion, 46 peaks in 8 s)
    assert max(whole[other], default=0.0) < 0.05 * min(whole[near_hit]), detail


def vibrato_tones(seconds=6.0):
    """Three held notes with 5.5 Hz vibrato and a 4.3 Hz tremolo of +-25%: only the note starts are onsets."""
    t = np.arange(int(seconds * SR)) / SR
    x, starts = np.zeros_like(t), [0.5, 2.5, 4.2]
    for i, (s, f0) in enumerate(zip(starts, [220, 262, 196])):
        d = (starts[i + 1] - 0.1 if i + 1 < len(starts) else seconds - 0.3) - s
        m = (t >= s) & (t < s + d)
        tt = t[m] - s
        phase = 2 * np.pi * f0 * np.cumsum(1 + 0.012 * np.sin(2 * np.pi * 5.5 * tt)) / SR
        env = np.minimum(tt / 0.03, 1) * np.minimum((d - tt) / 0.15, 1) * (1 + 0.25 * np.sin(2 * np.pi * 4.3 * tt + 1))
        x[m] += env * sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.3
    return x.astype(np.float32), starts


def speech_bursts(seconds=6.0):
    """Syllable-long bursts of band-passed noise in words, each wobbling at 7 Hz by +-30%."""
    from scipy.signal import butter, sosfilt
    rng = np.random.default_rng(3)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    voiced = sosfilt(butter(2, [300, 3000], "bandpass", fs=SR, output="sos"), rng.standard_normal(n))
    x, s = np.zeros(n), 0.4
    for _ in range(5):
        for _ in range(rng.integers(1, 4)):
            d = rng.uniform(0.15, 0.25)
            m = (t >= s) & (t < s + d)
            tt = t[m] - s
            x[m] += voiced[m] * 0.4 * np.minimum(tt / 0.015, 1) * np.sin(np.pi * tt / d) ** 0.5 * (1 + 0.3 * np.sin(2 * np.pi * 7 * tt))
            s += d + rng.uniform(0.12, 0.2)
        s += rng.uniform(0.3, 0.5)
    return x.astype(np.float32), None


def pad_swell(seconds=6.0):
    """Two chords that swell from 30% to full and back over 2.7 s: only the chord starts are onsets."""
    t = np.arange(int(seconds * SR)) / SR
    x, starts = np.zeros_like(t), [0.3, 3.2]
    for s in starts:
        m = (t >= s) & (t < s + 2.7)
        tt = t[m] - s
        env = np.minimum(tt / 0.02, 1) * (0.3 + 0.7 * np.sin(np.pi * tt / 2.7) ** 2) * np.minimum((2.7 - tt) / 0.3, 1)
        x[m] += env * sum(np.sin(2 * np.pi * f * tt + k) for k, f in enumerate([130.8, 164.8, 196.0, 261.6])) * 0.12
    return x.astype(np.float32), starts


def flow_peak_frames(path, w=W, h=H):
    from avmix import score
    whole, _ = score.flow_trajectories(score.gray_frames(path, w, h))
    return score.peak_frames(whole), whole


@pytest.mark.parametrize("material", ["tones", "speech", "pad", "all three at once"])
def test_recorded_like_material_moves_only_on_its_onsets(tmp_path, material):
    """Sustained sound wobbles and swells, but the picture's optical-flow peaks (full size, as AV-Align
    finds them) fall only on onsets, and every onset makes one. Wobbling envelopes, a breathing
    background, spin and a moving playhead each made peaks between onsets."""
    pytest.importorskip("cv2")
    fps, seconds = 25, 6.0
    makers = {"tones": [vibrato_tones], "speech": [speech_bursts], "pad": [pad_swell]}
    made = [f(seconds) for f in makers.get(material, [vibrato_tones, speech_bursts, pad_swell])]
    an = make_analysis([x for x, _ in made], seconds, fps)
    for ta, (_, truth) in zip(an.tracks, made):
        if truth is not None:  # the analysis finds the note starts and nothing else (no vibrato onsets)
            assert np.allclose(ta.onsets, truth, atol=0.02), (ta.onsets, truth)
    hits = np.unique(np.concatenate([timing.hit_frames(ta.onsets, fps, an.frames) for ta in an.tracks]))
    out = tmp_path / "v.mp4"
    procedural.render(an, out, width=W, height=H, seed=1)
    peaks, whole = flow_peak_frames(out)
    detail = (hits.tolist(), peaks.tolist(), whole.round(2).tolist())
    assert all(np.min(np.abs(hits - p)) <= 1 for p in peaks), detail  # no peak away from an onset
    assert all(np.min(np.abs(peaks - k)) <= 1 for k in hits if k > 0), detail  # every onset shows
    # once a hit has settled (a quarter second) the sustained sound moves the picture by well under
    # the peak threshold, so no wobble or swell can make a peak (it was 0.13-0.15 px, over 0.1, before)
    from avmix.score import MIN_FLOW
    from avmix.video.writer import GOP_SECONDS
    quiet = np.ones(len(whole), bool)
    for k in hits:
        quiet[max(0, k - 1):k + 7] = False
    # a keyframe quantises the whole picture afresh: flow of 0.07-0.09 px at this size, from x264, not sound
    quiet[::round(GOP_SECONDS * fps)] = False
    assert whole[quiet].max() < 0.8 * MIN_FLOW, detail  # measured at most 0.069 px


def test_real_piano_notes_move_the_picture_once_each(tmp_path):
    """Eight recorded piano notes, each held 2.5 s as it decays: eight optical-flow peaks, one per note,
    and nothing from the decays (the instant attack and spin made 90 peaks here)."""
    pytest.importorskip("cv2")
    import soundfile as sf

    from tests import real
    x, sr = sf.read(real.path("music_piano_notes.flac"), dtype="float32", always_2d=True)
    fps = 25
    ta = analyze_array(x, sr, fps=fps, label="piano", index=0)
    mix = analyze_array(x, sr, fps=fps, label="mix")
    an = Analysis(fps=fps, frames=len(ta.envelope), duration=len(x) / sr, tracks=[ta], mix=mix, mode="mix")
    assert len(ta.onsets) == 8
    hits = timing.hit_frames(ta.onsets, fps, an.frames)
    out = tmp_path / "v.mp4"
    procedural.render(an, out, width=W, height=H)
    peaks, whole = flow_peak_frames(out)
    # AV-Align's flow repeats its first value, so a hit on frame 0 or 1 cannot peak
    assert peaks.tolist() == [k for k in hits.tolist() if k > 1], (hits, peaks)


def test_band_pages_turn_on_hits():
    hits = np.array([3.0, 8.0, 9.5, 12.0, 27.5])
    # the last hit in 7.5-10 s turns the first page; none in 17-19.5 s, so the second turns after 10 s
    assert procedural.band_pages(hits, 40.0).tolist() == [0.0, 9.5, 19.5, 27.5, 37.5]
    assert procedural.band_pages(hits, 10.0).tolist() == [0.0]


def test_frame_count_size_and_layout(tmp_path):
    an = make_analysis([clicks([0.5], 2.02), clicks([1.0], 2.02)], 2.02, 30, labels=["dog", "rain"])
    out = tmp_path / "v.mp4"
    res = procedural.render(an, out, width=W, height=H, captions=True)
    info = ffmpeg.probe(out)
    assert (info.video.width, info.video.height) == (W, H) and info.audio is None
    assert len(decode_gray(out)) == an.frames == 61
    assert res["backend"] == "procedural"
    assert [e["label"] for e in res["layout"]] == ["dog", "rain"]
    b0, b1 = res["layout"][0]["box"], res["layout"][1]["box"]
    assert 0 <= b0[0] < b0[2] <= b1[0] < b1[2] <= W  # side by side, inside the frame
    assert list(tmp_path.iterdir()) == [out]  # writes nothing else


def x264_settings(path) -> str:
    data = path.read_bytes()
    i = data.index(b"x264 - core")
    return data[i:data.index(b"\0", i)].decode()


def test_crf_sets_the_constant_quantizer(tmp_path):
    an = make_analysis([clicks([0.3, 1.2], 2.0)], 2.0, 24)
    sizes = []
    for crf in (10, 30):
        out = tmp_path / f"{crf}.mp4"
        procedural.render(an, out, width=W, height=H, crf=crf)
        settings = x264_settings(out)
        assert " rc=cqp " in settings and f" qp={crf - procedural.CRF_TO_QP} " in settings
        sizes.append(out.stat().st_size)
    assert sizes[0] > 1.5 * sizes[1]  # lower is better, and bigger
    assert procedural.quantizer(0) == 0  # --crf 0 stays lossless
    assert procedural.quantizer(3) == 1  # and only 0 is: QP 0 is x264's lossless High 4:4:4 profile


def test_same_seed_same_frames(tmp_path):
    an = make_analysis([clicks([0.3, 1.2], 2.0)], 2.0, 24)
    paths = [tmp_path / f"{n}.mp4" for n in ("a", "b", "c")]
    for p, seed in zip(paths, (5, 5, 6)):
        procedural.render(an, p, width=W, height=H, seed=seed)
    a, b, c = (decode_gray(p) for p in paths)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_overlay_top_element_enters_at_its_offset(tmp_path):
    fps, seconds, at = 25, 4.0, 2.0
    base = (0.1 * np.random.default_rng(0).standard_normal(int(seconds * SR))).astype(np.float32)
    top = clicks([at, 2.5, 3.0, 3.5], seconds)  # a hit right at the offset shows at once
    an = make_analysis([base, top], seconds, fps, mode="overlay", starts=[(0.0, seconds), (at, seconds)])
    out = tmp_path / "v.mp4"
    res = procedural.render(an, out, width=W, height=H)
    frames = decode_gray(out)
    x0, y0, x1, y1 = res["layout"][1]["box"]
    light = frames[:, y0:y1, x0:x1].mean(axis=(1, 2))
    assert light[: int(at * fps)].max() - light[0] < 1.0  # nothing there before the offset
    assert light[int((at + 0.6) * fps)] > light[0] + 3
    change = box_changes(frames, res["layout"][1]["box"])
    k = int(at * fps)
    assert abs(int(np.argmax(change[k - 10:k + 10])) - 10) <= 1


def test_concat_active_track_takes_centre_stage(tmp_path):
    fps, seconds = 25, 4.0
    n = int(seconds * SR)
    a, b = np.zeros(n, np.float32), np.zeros(n, np.float32)
    a[: n // 2] = 0.3 * np.sin(np.arange(n // 2) * 0.2)
    b[n // 2:] = 0.3 * np.sin(np.arange(n - n // 2) * 0.3)
    an = make_analysis([a, b], seconds, fps, mode="concat", starts=[(0.0, 2.0), (2.0, 4.0)])
    out = tmp_path / "v.mp4"
    res = procedural.render(an, out, width=W, height=H)
    assert res["layout"][0]["box"] == res["layout"][1]["box"]  # the shared stage
    frames = decode_gray(out)
    x0, y0, x1, y1 = res["layout"][0]["box"]
    stage = frames[:, y0:y1, x0:x1].mean(axis=(1, 2))
    assert stage[25] > frames[25].mean() and stage[75] > frames[75].mean()


def test_writer_leaves_no_file_and_no_ffmpeg_on_error(tmp_path):
    out = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, width=64, height=64, fps=10) as w:
            w.write(np.zeros((64, 64, 3), np.uint8))
            proc = w._proc
            time.sleep(0.3)  # the pipe thread is idle, waiting for the next frame
            raise RuntimeError("boom")
    assert proc.poll() is not None
    assert list(tmp_path.iterdir()) == []


def test_writer_quotes_ffmpeg_error_and_leaves_no_file(tmp_path):
    """The one-line error names the file and ffmpeg's reason (each build words it its own way)."""
    out = tmp_path / "v.mp4"
    with pytest.raises(FFmpegError) as caught:
        with VideoWriter(out, width=64, height=64, fps=10, preset="no-such-preset") as w:
            for _ in range(50):
                w.write(np.zeros((64, 64, 3), np.uint8))
    message = caught.value.message
    assert message.startswith(f"{out}: video encoding: ffmpeg failed: ") and "\n" not in message
    assert "preset 'no-such-preset'" in message
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_odd_sizes_and_bad_fps(tmp_path):
    for kw in ({"width": 63, "height": 64, "fps": 30}, {"width": 0, "height": 64, "fps": 30},
               {"width": 64, "height": 64, "fps": 0}, {"width": 64, "height": 64, "fps": 500}):
        with pytest.raises(UsageError):
            VideoWriter(tmp_path / "v.mp4", **kw)


def test_writer_output_plays_as_h264_yuv420p(tmp_path):
    out = tmp_path / "v.mp4"
    with VideoWriter(out, width=128, height=72, fps=30, src_size=(64, 36)) as w:
        for k in range(15):
            w.write(np.full((36, 64, 3), k * 10, np.uint8))
    info = ffmpeg.probe(out)
    assert info.video.codec == "h264" and "yuv420p" in info.streams[0]
    assert (info.video.width, info.video.height) == (128, 72)
    assert info.duration == pytest.approx(0.5, abs=0.04)


def test_contact_sheet_has_thumbnails_and_lanes(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    from avmix.video import preview

    fps, seconds = 25, 3.0
    tone = np.zeros(int(seconds * SR), np.float32)
    tone[: int(SR * 1.0)] = 0.5 * np.sin(np.arange(SR) * 0.1)
    an = make_analysis([tone, clicks([1.5, 2.5], seconds)], seconds, fps, labels=["tone", "clicks"])
    video = tmp_path / "v.mp4"
    procedural.render(an, video, width=W, height=H)
    png = tmp_path / "sheet.png"
    preview.contact_sheet(video, an, png, columns=4)
    img = np.asarray(PIL.open(png).convert("RGB"))
    cols = 4
    assert img.shape[1] == cols * preview.THUMB_W + (cols + 1) * preview.GAP
    th = preview.THUMB_W * H // W
    assert img.shape[0] > 2 * th + 3 * (preview.LANE_H + 4)
    # the tone's lane is lit in its colour during its first second only
    y = preview.GAP + 2 * (th + preview.GAP) + preview.GAP + preview.LANE_H // 2 - 6  # off the centre line
    x0, x1 = preview.LABEL_W, img.shape[1] - preview.GAP
    lane = img[y, x0:x1].astype(int)
    first, last = lane[: (x1 - x0) // 4], lane[-(x1 - x0) // 4:]
    blue = np.asarray(procedural.track_color(0)) * 255
    assert np.abs(first.mean(axis=0) - blue).max() < 60
    assert (np.abs(last - np.asarray(preview.PANEL)).max(axis=1) < 5).mean() > 0.9  # bar thumbnail markers


def test_png_without_pillow_is_valid(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    from avmix.video.preview import _png_bytes

    img = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    p = tmp_path / "x.png"
    p.write_bytes(_png_bytes(img))
    assert np.array_equal(np.asarray(PIL.open(p).convert("RGB")), img)


@pytest.mark.parametrize("shape", procedural.SHAPES)
def test_bounding_box_holds_glow_and_halo_at_any_rotation(shape):
    """An element is drawn only inside a box of half-size REACH * (radius + glow width): whatever of
    its glow or halo reaches past that is cut off along a straight edge (seen on the rounded square)."""
    angles = np.linspace(0, 2 * np.pi, 721)[:, None]
    for r in (10.0, 60.0, 150.0):
        for reach in (0.3 * r, r, 2.2 * r):  # glow width, or halo radius - r plus the ring's width
            rho = np.linspace(0, 4 * (r + reach), 3000)[None, :]
            d = procedural.sdf(shape, rho * np.cos(angles), rho * np.sin(angles), r)
            extent = float((rho * (d < reach)).max())  # farthest lit pixel in any direction
            assert extent <= procedural.REACH[shape] * (r + reach), (shape, r, reach, extent)


@pytest.mark.parametrize("fps", [24, 29.97, 30])
def test_level_glides_towards_the_one_pole_smoothed_envelope(fps):
    """Between hits the level follows the envelope smoothed by one pole of SMOOTH_S (as
    scipy.signal.lfilter computes it), at no more than LEVEL_RATE per second."""
    import scipy.signal

    rng = np.random.default_rng(4)
    n = 400
    env = (0.5 + 0.3 * np.sin(np.arange(n) / 7.0) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    level = procedural.level_curve(env, np.zeros(0, np.int64), fps)
    a = np.exp(-1.0 / (procedural.SMOOTH_S * fps))
    smooth = scipy.signal.lfilter([1 - a], [1, -a], env.astype(np.float64)).astype(np.float32)
    step = np.float32(procedural.LEVEL_RATE / fps)
    want = np.zeros(n, np.float32)
    cur = np.float32(0.0)
    for k in range(n):
        cur += min(step, max(-step, smooth[k] - cur))
        want[k] = cur
    assert np.array_equal(level, want)
    assert np.abs(np.diff(level)).max() <= step * 1.0001
