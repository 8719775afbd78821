"""Pure schedules of the diffusion backend: prompt blend weights, retiming, the audio-driven noise walk."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from avmix.video import timing
from avmix.video.diffusion import schedule
from avmix.video.diffusion.interpolate import retimed

FPS = 10.0


def test_mix_weights_follow_envelopes():
    env = np.zeros((2, 30))
    env[0, 10:] = 0.8  # track 0 silent in frames 0-9
    env[1, :] = 0.5
    times = np.arange(30) / FPS
    w = schedule.blend_weights(env, fps=FPS, times=times, mode="mix")
    assert w.shape == (30, 3)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert np.all(w[:10, 0] == 0.0)  # silent -> weight 0
    np.testing.assert_allclose(w[:10, 1], 1.0)  # only the rain is on screen
    assert np.all(w[10:, 0] > 0.2)  # the dog appears when it sounds
    # both sounding: the shared part goes to the scene prompt that holds every source
    np.testing.assert_allclose(w[10:, 2], 1.0 / 1.3)
    np.testing.assert_allclose(w[10:, 0], 0.3 / 1.3)


def test_all_silent_uses_scene_prompt():
    env = np.zeros((3, 20))
    env[1, 5:8] = 1.0
    w = schedule.blend_weights(env, fps=FPS, times=np.arange(20) / FPS, mode="mix")
    np.testing.assert_allclose(w[:5], [[0, 0, 0, 1]] * 5)
    np.testing.assert_allclose(w[5:8], [[0, 1, 0, 0]] * 3)
    np.testing.assert_allclose(w[8:], [[0, 0, 0, 1]] * 12)


def test_weights_fade_with_envelope():
    env = np.stack([np.linspace(1, 0, 20), np.full(20, 0.0)])
    env[1, :] = 0.3
    w = schedule.blend_weights(env, fps=FPS, times=np.arange(20) / FPS, mode="mix")
    # as track 0 fades, its share falls monotonically to 0
    assert np.all(np.diff(w[:, 0]) <= 1e-12)
    assert w[-1, 0] == 0.0


def test_concat_schedule_changes_at_boundary():
    env = np.zeros((2, 30))
    env[0, :15] = 0.6
    env[0, 5:8] = 0.0  # a pause inside track 0 keeps its scene
    env[1, 15:] = 0.6
    w = schedule.blend_weights(env, fps=FPS, times=np.arange(30) / FPS, mode="concat",
                               spans=[(0.0, 1.5), (1.5, 3.0)])
    dominant = w.argmax(axis=1)
    assert list(dominant[:15]) == [0] * 15
    assert list(dominant[15:]) == [1] * 15
    assert np.all(w[:15, 1] == 0) and np.all(w[15:, 0] == 0)


def test_overlay_top_enters_at_offset():
    env = np.zeros((2, 40))
    env[0, :] = 0.5
    env[1, 12:30] = 0.9
    w = schedule.blend_weights(env, fps=FPS, times=np.arange(40) / FPS, mode="overlay",
                               spans=[(0.0, 4.0), (1.2, 3.0)])
    assert np.all(w[:12, 1] == 0)
    assert np.all(w[12:30, 1] > 0.5)
    assert np.all(w[30:, 1] == 0)
    assert np.all(w[:, 0] > 0)


def test_prompts_per_mode():
    mix = schedule.build_prompts(["a dog barking", "heavy rain"], mode="mix", style="film still")
    assert mix.texts == ["a dog barking, film still", "heavy rain, film still",
                         "a dog barking and heavy rain, film still"]
    over = schedule.build_prompts(["a street", "a siren"], mode="overlay")
    assert over.texts[1] == "a siren with a street"
    cat = schedule.build_prompts(["a", "b"], mode="concat", style="watercolour")
    assert cat.texts[-1] == "watercolour"


def test_native_frames_and_retime():
    # 60 s at 30 fps from 8 fps native: the last output frame (59.9667 s) lies inside the native range
    n = schedule.native_frame_count(1800, 30, 8)
    assert n == 481
    i0, a = schedule.retime(1800, 30, 8)
    assert i0[-1] + (a[-1] > 0) <= n - 1
    # output frame 15 at 0.5 s is native frame 4 exactly; frame 1 (1/30 s) is 4/15 of the way to native 1
    assert i0[15] == 4 and a[15] == 0
    assert i0[1] == 0 and abs(a[1] - 8 / 30) < 1e-12


def test_retimed_streams_linear_blend():
    native = [np.full((2, 2, 3), 10 * i, np.uint8) for i in range(9)]
    out = list(retimed(iter(native), n_native=9, frames=31, fps=30, native_fps=8))
    assert len(out) == 31
    expected = np.rint(np.arange(31) / 30 * 8 * 10)
    np.testing.assert_array_equal([f[0, 0, 0] for f in out], expected)


def test_noise_walk_moves_at_onsets():
    times = np.arange(40) / 8.0
    mix = np.zeros(20 * 5)
    steps = schedule.motion(mix, [20], fps=20, times=times)  # a kick into native frame 20 (2.5 s)
    assert steps.argmax() == 20 and steps[20] > 10 * steps[5]
    walk = schedule.noise_walk(steps, (4, 6, 6), seed=3)
    assert walk.shape == (4, 40, 6, 6) and walk.dtype == np.float32
    change = np.linalg.norm(np.diff(walk, axis=1).reshape(4, 39, -1).transpose(1, 0, 2).reshape(39, -1), axis=1)
    assert change.argmax() == 19  # the step from frame 19 to 20, where the onset is
    assert change[19] > 5 * np.median(change)
    assert abs(float(walk.std()) - 1.0) < 0.15  # still unit-variance noise for the scheduler
    np.testing.assert_array_equal(walk, schedule.noise_walk(steps, (4, 6, 6), seed=3))
    assert not np.array_equal(walk, schedule.noise_walk(steps, (4, 6, 6), seed=4))


def test_importing_avmix_does_not_import_torch():
    code = ("import sys, avmix, avmix.cli, avmix.video.diffusion as d; "
            "ok, why = d.available(None); assert not ok, why; "
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'heavy import'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "AVMIX_MODEL": ""})
    assert r.returncode == 0, r.stderr


def test_segment_plan_cuts_at_scene_changes():
    from avmix.video.diffusion.segments import plan

    window, overlap, segs = plan(100, 33)
    assert (window, overlap) == (33, 9)
    assert [(s.start, s.fade) for s in segs] == [(0, 0), (24, 9), (48, 9), (72, 9)]
    assert segs[-1].end == 100 and all(a.end == b.start for a, b in zip(segs, segs[1:]))
    # a concat boundary at native frame 30 becomes a hard cut; the plan continues from there
    _, _, segs = plan(100, 33, cuts=[30])
    assert [(s.start, s.fade) for s in segs] == [(0, 0), (30, 0), (54, 9), (78, 9)]
    _, _, segs = plan(100, 33, cuts=[50])  # a cut beyond the first segment is taken by the second
    assert [(s.start, s.fade) for s in segs] == [(0, 0), (24, 9), (50, 0), (74, 9)]
    assert schedule.scene_changes([(0.0, 1.5), (1.5, 3.0)], mode="concat") == [0.0, 1.5, 3.0]
    assert schedule.scene_changes([(0.0, 1.5), (1.5, 3.0)], mode="mix") == []
    changes = schedule.scene_changes([(0.0, 1.5), (1.5, 3.0)], mode="concat")
    assert schedule.cut_points(changes, fps=10, frames=30, native_fps=16, n=48) == [(15, 24)]


def test_onsets_cut_on_the_first_frame_at_or_after_them():
    # 24 fps out, 8 fps native: the onset at 0.72 s shows from output frame 18 (0.75 s), never frame 17
    fps, native, frames = 24, 8, 120
    n = schedule.native_frame_count(frames, fps, native)
    cuts = schedule.cut_points([0.72, 1.90, 1.91, 3.0], fps=fps, frames=frames, native_fps=native, n=n)
    assert cuts == [(18, 6), (46, 15), (72, 24)]  # 1.91 s shares native frame 15 with 1.90 s: merged
    i0, a = schedule.retime(frames, fps, native, cuts)
    pos = i0 + a
    assert np.all(np.diff(pos) >= 0)
    for j, c in cuts:  # nothing of native frame c before output frame j; no blend towards it either
        assert np.all(pos[:j] <= c - 1) and np.all(pos[j:] >= c)
    # away from the cuts the blend is the plain linear one
    assert abs(pos[30] - 10.0) < 1e-9 and abs(pos[31] - 31 / 3) < 1e-9
    # at 30 fps the cut native frame is the one nearest the onset frame: 0.733 s -> native 6 (0.75 s)
    n30 = schedule.native_frame_count(150, 30, native)
    assert schedule.cut_points([0.72], fps=30, frames=150, native_fps=native, n=n30) == [(22, 6)]
    # a change at the very start or past the end has no frame on either side to cut between
    assert schedule.cut_points([0.0, 5.0], fps=30, frames=150, native_fps=native, n=n30) == []


def test_native_frames_stand_for_the_audio_around_the_cut():
    # 10 fps out, 8 fps native: a hit at 1.05 s is held by frame 10 ([1.0, 1.1) s), whose envelope
    # already rises; it shows from frame 11, cut onto native frame 9 (1.125 s). Native frame 8 (1.0 s)
    # comes before the cut, so it must see the quiet before the hit, or the crossfade into it would move.
    fps, native, frames = 10, 8, 30
    env = np.zeros(frames)
    env[10:] = 1.0
    n = schedule.native_frame_count(frames, fps, native)
    cuts = schedule.cut_points([1.05], fps=fps, frames=frames, native_fps=native, n=n)
    assert cuts == [(11, 9)]
    times = schedule.native_times(n, native, fps, cuts)
    steps = schedule.motion(env, [9], fps=fps, times=times)
    assert steps.argmax() == 9 and np.all(steps[:9] == schedule.CALM_STEP * (np.arange(9) > 0))
    w = schedule.blend_weights(env[None], fps=fps, times=times, mode="mix")
    assert np.all(w[:9, 1] == 1.0) and np.all(w[9:, 0] == 1.0)  # the track's prompt takes over at the cut
    # a second change one frame later does not pull the first one's frames back before it
    cuts = schedule.cut_points([1.05, 1.15], fps=fps, frames=frames, native_fps=native, n=n, allowed=[9, 10])
    assert cuts == [(11, 9), (12, 10)]
    times = schedule.native_times(n, native, fps, cuts)
    assert np.all(timing.frame_at(times[9:], fps) >= 11) and np.all(timing.frame_at(times[:9], fps) <= 9)


def test_wan_changes_start_on_latent_groups():
    from avmix.video.diffusion.segments import change_frames

    # segments of 17 (4 latent groups of 4 after the first frame), overlap 5, stride 12
    assert change_frames(40, 17)[:6] == [1, 5, 9, 13, 17, 21]
    # a hard cut at native frame 22 starts a segment whose groups start 23, 27, ... (not 25 as before it)
    got = change_frames(48, 17, cuts=[22])
    assert {22, 23, 27} <= set(got) and 25 not in got
    fps, native = 24, 16
    n = schedule.native_frame_count(96, fps, native)
    cuts = schedule.cut_points([1.0], fps=fps, frames=96, native_fps=native, n=n, allowed=change_frames(n, 17))
    assert cuts == [(24, 17)]  # 1.0 s is native frame 16, the last of a group; the change starts at 17
