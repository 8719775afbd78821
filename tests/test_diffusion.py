"""The diffusion backend end to end on the CPU with tiny random-weight pipelines (no download)."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

pytest.importorskip("diffusers")

from avmix import ffmpeg  # noqa: E402
from avmix.errors import ModelError, UsageError  # noqa: E402
from avmix.timeline import Analysis, Source, Timeline, TrackAnalysis  # noqa: E402
from avmix.video import diffusion  # noqa: E402
from avmix.video.diffusion import loading, tiny  # noqa: E402

FPS = 10
SIZE = 64
SR = 8000


@pytest.fixture(scope="session")
def tiny_ad(tmp_path_factory):
    return tiny.write(tmp_path_factory.mktemp("tiny") / "animatediff", family="animatediff")


@pytest.fixture(scope="session")
def tiny_wan(tmp_path_factory):
    return tiny.write(tmp_path_factory.mktemp("tiny") / "wan", family="wan")


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.delenv("AVMIX_MODEL", raising=False)


def make_case(mode="mix", seconds=2.5):
    frames = int(seconds * FPS)
    dog = [0.0] * 10 + [0.8] * (frames - 10)  # silent in frames 0-9
    rain = [0.5] * frames
    tracks = [TrackAnalysis("a dog barking", dog, [1.0, 1.6], index=0, end=seconds),
              TrackAnalysis("heavy rain", rain, [], index=1, end=seconds)]
    mix = TrackAnalysis("mix", [max(a, b) for a, b in zip(dog, rain)], [1.0, 1.6])
    analysis = Analysis(fps=FPS, frames=frames, duration=seconds, tracks=tracks, mix=mix, mode=mode)
    n = int(seconds * SR)
    timeline = Timeline(mode, SR, 1, n, [Source(0, "dog.wav", "a dog barking", 0, n, n),
                                         Source(1, "rain.wav", "heavy rain", 0, n, n)])
    return analysis, timeline


def decode(path, w=SIZE, h=SIZE):
    out = subprocess.run([ffmpeg.executable(), "-v", "error", "-i", ffmpeg.url(path), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, h, w, 3)


def render(model, out, *, seed=1, analysis=None, **kw):
    analysis, timeline = analysis or make_case()
    return diffusion.render(analysis, timeline, out, width=SIZE, height=SIZE, fps=FPS, seed=seed, model=str(model),
                            **{"steps": 2, "device": "cpu", **kw})


def test_tiny_pipeline_saved_and_loaded_through_from_pretrained(tiny_ad):
    index = json.loads((tiny_ad / "model_index.json").read_text())
    assert index["_class_name"] == "AnimateDiffPipeline"
    assert index["unet"] == ["diffusers", "UNetMotionModel"]
    assert list(tiny_ad.rglob("*.bin")) == [] and len(list(tiny_ad.rglob("*.safetensors"))) == 4
    info = loading.identify(str(tiny_ad))
    assert (info.family, info.class_name, info.revision) == ("animatediff", "AnimateDiffPipeline", None)
    pipe = loading.load(info, device="cpu", dtype=None)
    assert type(pipe).__name__ == "AnimateDiffPipeline" and type(pipe.unet).__name__ == "UNetMotionModel"


def test_render_makes_video_with_analysis_frames(tiny_ad, tmp_path):
    seen = []
    info = render(tiny_ad, tmp_path / "v.mp4", progress=lambda s, d, t: seen.append((s, d, t)))
    media = ffmpeg.probe(tmp_path / "v.mp4")
    assert (media.video.width, media.video.height, media.video.fps) == (SIZE, SIZE, FPS)
    frames = decode(tmp_path / "v.mp4")
    assert len(frames) == 25
    assert frames.std() > 1  # not a blank picture
    # 25 frames at 10 fps = 2.4 s -> 21 native frames at 8 fps, one FreeNoise pass of 16 + stride 4 = 3 windows
    assert info["native_frames"] == 21 and info["family"] == "animatediff" and info["steps"] == 2
    assert ("diffusion", 6, 6) in seen and seen[-1][0] == "decode" and seen[-1][1] == seen[-1][2] == 21
    sched = info["prompt_schedule"]
    assert sched[0]["weights"] == [0.0, 1.0, 0.0]  # the dog is silent at the start
    assert info["prompts"][-1] == "a dog barking and heavy rain"
    assert info["scheduler"] == "DDIMScheduler" and info["guidance"] == 7.5


def test_clip_shorter_than_a_window(tiny_ad, tmp_path):
    info = render(tiny_ad, tmp_path / "s.mp4", analysis=make_case(seconds=1.0))
    assert info["native_frames"] == 9  # fewer than the 16-frame FreeNoise window
    assert len(decode(tmp_path / "s.mp4")) == 10


def test_same_seed_same_frames_different_seed_differs(tiny_ad, tmp_path):
    render(tiny_ad, tmp_path / "a.mp4", seed=5)
    render(tiny_ad, tmp_path / "b.mp4", seed=5)
    render(tiny_ad, tmp_path / "c.mp4", seed=6)
    a, b, c = (decode(tmp_path / f"{x}.mp4") for x in "abc")
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1


def test_visual_change_lands_on_the_onset(tiny_ad, tmp_path):
    """A steady sound with one hit at 2.0 s: the biggest frame-to-frame change is into frame 20 (2.0 s)."""
    env = [0.3] * 40
    tracks = [TrackAnalysis("a drum", env, [2.0], index=0, end=4.0)]
    analysis = Analysis(fps=FPS, frames=40, duration=4.0, tracks=tracks, mix=TrackAnalysis("mix", env, [2.0]))
    render(tiny_ad, tmp_path / "o.mp4", analysis=(analysis, None))
    change = np.abs(np.diff(decode(tmp_path / "o.mp4").astype(float), axis=0)).mean(axis=(1, 2, 3))
    assert change.argmax() + 1 == 20
    assert change.max() > 4 * np.median(change)


CLICKS = [0.52, 1.13, 1.71, 2.38, 3.02]  # at different places inside the 8 fps native interval


def click_track(seconds=3.5, sr=22050):
    x = np.zeros(int(seconds * sr), np.float32)
    rng = np.random.default_rng(0)
    for t in CLICKS:
        i, n = int(round(t * sr)), int(0.01 * sr)
        x[i:i + n] += 0.8 * np.exp(-np.arange(n) / (0.002 * sr)) * rng.uniform(-1, 1, n).astype(np.float32)
    return x, sr


@pytest.mark.parametrize("fps", [24, 30])
def test_click_track_moves_on_the_clicks_never_before(fps, tiny_ad, tmp_path):
    """AV-Align of a click track: each click's optical-flow peak is on the first frame at or after it."""
    pytest.importorskip("cv2")
    pytest.importorskip("librosa")
    from avmix import score
    from avmix.audio.analyze import analyze_array, n_video_frames

    x, sr = click_track()
    n = n_video_frames(len(x), sr, fps)
    tracks = [analyze_array(x, sr, fps=fps, n_frames=n, label="a drum", index=0)]
    analysis = Analysis(fps=fps, frames=n, duration=len(x) / sr, tracks=tracks,
                        mix=analyze_array(x, sr, fps=fps, n_frames=n, label="mix"))
    out = tmp_path / "clicks.mp4"
    diffusion.render(analysis, None, out, width=SIZE, height=SIZE, fps=fps, seed=1, model=str(tiny_ad), steps=2,
                     device="cpu")
    flow, _ = score.flow_trajectories(score.gray_frames(out, *score.flow_size(SIZE, SIZE)))
    assert len(flow) == n
    peaks = np.array(score.video_peak_times(flow, fps))
    result = score.av_align(score.audio_onsets(x, sr), peaks, fps)
    assert result["av_align"] >= 0.8, result
    for t in CLICKS:  # the peak nearest each click: on its frame or the next, never before it
        lag = peaks[np.argmin(np.abs(peaks - t))] - t
        assert -1e-6 <= lag <= 1 / fps + 1e-6, f"click at {t} s: nearest motion peak {lag * 1000:+.0f} ms"


def test_per_frame_conditioning_reaches_the_unet(tiny_ad):
    """The UNet sees, for every frame, the envelope-weighted blend of the track prompt embeddings."""
    import torch
    from avmix.video.diffusion import animatediff

    pipe = loading.load(loading.identify(str(tiny_ad)), device="cpu", dtype=None)
    texts = ["a dog barking", "heavy rain", "a dog barking and heavy rain"]
    n = 12
    weights = np.zeros((n, 3))
    weights[:6, 1] = 1.0
    weights[6:, 0] = 0.25
    weights[6:, 2] = 0.75
    seen = []
    hook = pipe.unet.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["encoder_hidden_states"].clone()), with_kwargs=True)
    latents = np.random.default_rng(0).standard_normal((4, n, 8, 8)).astype(np.float32)
    animatediff.denoise(pipe, texts=texts, negative="", weights=weights, latents=latents, size=(64, 64), seed=0,
                        steps=1, guidance=7.5, window=8)
    hook.remove()
    with torch.no_grad():
        pos, _ = pipe.encode_prompt(texts, "cpu", 1, False)
    cond = seen[0][n:]  # CFG batch: [negative frames, positive frames]
    assert cond.shape[0] == n
    torch.testing.assert_close(cond[0], pos[1])
    torch.testing.assert_close(cond[-1], 0.25 * pos[0] + 0.75 * pos[2])
    torch.testing.assert_close(seen[0][0], seen[0][n - 1])  # the negative prompt is the same for every frame


def test_lightning_defaults(tmp_path):
    d = tiny.write(tmp_path / "lightning", family="animatediff-lightning")
    assert loading.identify(str(d)).family == "animatediff-lightning"
    info = render(d, tmp_path / "l.mp4", steps=None)
    assert (info["steps"], info["guidance"], info["scheduler"]) == (4, 1.0, "EulerDiscreteScheduler")
    assert len(decode(tmp_path / "l.mp4")) == 25


def test_wan_segments_render(tiny_wan, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setenv("AVMIX_WINDOW", "17")  # segment length when render() is given none
    info = render(tiny_wan, tmp_path / "w.mp4", progress=lambda s, d, t: seen.append((s, d, t)))
    assert info["family"] == "wan" and info["pipeline"] == "WanPipeline" and info["window"] == 17
    assert len(decode(tmp_path / "w.mp4")) == 25
    # 40 native frames at 16 fps in segments of 17 overlapping by 5: starts 0, 12, 24 -> 3 segments x 2 steps
    assert info["native_frames"] == 40 and seen[-1] == ("diffusion", 6, 6)


def test_concat_and_overlay_schedules_in_manifest(tiny_wan, tmp_path):
    analysis, _ = make_case("concat", 3.0)
    half = int(1.5 * SR)
    timeline = Timeline("concat", SR, 1, 2 * half, [Source(0, "a.wav", "a dog barking", 0, half, half),
                                                   Source(1, "b.wav", "heavy rain", half, 2 * half, half)])
    seen = []
    info = render(tiny_wan, tmp_path / "c.mp4", analysis=(analysis, timeline), window=17,
                  progress=lambda s, d, t: seen.append(t))
    times = [row["time"] for row in info["prompt_schedule"]]
    dominant = [int(np.argmax(row["weights"])) for row in info["prompt_schedule"]]
    switch = times[dominant.index(1)]
    assert switch == 1.5  # the native frame at the track boundary (16 fps grid)
    # Wan segments [start, crossfade]: the track boundary (native frame 24 = 1.5 s) is a hard cut
    assert info["segments"] == [[0, 0], [12, 5], [24, 0], [36, 5]]
    assert len(decode(tmp_path / "c.mp4")) == 30
    assert seen[-1] == 4 * 2


def test_cli_models_tiny_and_check(run_cli, tmp_path):
    r = run_cli("models", "tiny", tmp_path / "m", "--family", "wan")
    assert r.code == 0, r.err
    assert (tmp_path / "m" / "model_index.json").is_file()
    r = run_cli("models", "check", tmp_path / "m", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["family"] == "wan"
    r = run_cli("models", "tiny", tmp_path / "m")
    assert r.code == 1 and "not empty" in r.err


def test_adapter_plus_base(tiny_ad, tmp_path):
    base = tiny.write(tmp_path / "sd15", family="sd15")
    spec = f"{tiny_ad / 'motion_adapter'}+{base}"
    info = loading.identify(spec)
    assert (info.family, info.location, info.adapter) == ("animatediff", str(base), str(tiny_ad / "motion_adapter"))
    out = render(spec, tmp_path / "ab.mp4")
    assert out["pipeline"] == "AnimateDiffPipeline" and len(decode(tmp_path / "ab.mp4")) == 25
    with pytest.raises(ModelError, match="not a MotionAdapter"):
        loading.identify(f"{base}+{base}")
    with pytest.raises(ModelError, match="needs a Stable Diffusion 1.5 base"):
        loading.identify(f"{tiny_ad / 'motion_adapter'}+{tiny_ad}")


def test_lightning_single_file_adapter_is_recognised(tiny_ad, tmp_path):
    import shutil

    base = tiny.write(tmp_path / "sd15", family="sd15")
    single = tmp_path / "animatediff_lightning_4step_diffusers.safetensors"
    shutil.copy(tiny_ad / "motion_adapter" / "diffusion_pytorch_model.safetensors", single)
    info = loading.identify(f"{single}+{base}")
    assert (info.family, info.extra["steps"]) == ("animatediff-lightning", 4)
    # a tiny adapter does not fit the full-size MotionAdapter layout: a one-line load error, no traceback
    with pytest.raises(ModelError, match="failed to load|not a diffusers-format motion adapter"):
        loading.load(info, device="cpu", dtype=None)


def test_cli_generate_with_tiny_model(run_cli, tiny_ad, tmp_path):
    from conftest import noise, sine, write_wav

    dog = sine(300, 2.0)
    dog[:24000] = 0  # silent for the first half second
    a = write_wav(tmp_path / "dog.wav", dog)
    b = write_wav(tmp_path / "rain.wav", noise(2.0))
    out = tmp_path / "out.mp4"
    r = run_cli("generate", a, b, "-o", out, "--backend", "diffusion", "--model", tiny_ad, "--size", "64x64",
                "--fps", "10", "--steps", "2", "--label", "a dog barking", "--label", "heavy rain",
                "--workdir", tmp_path / "work", "--keep", "--json")
    assert r.code == 0, r.err
    media = ffmpeg.probe(out)
    assert media.video is not None and media.audio is not None
    assert abs(media.duration - 2.0) <= 0.1
    assert len(decode(out)) == 20
    manifest = json.loads((tmp_path / "work" / "manifest.json").read_text())
    text = json.dumps(manifest)
    assert "AnimateDiffPipeline" in text and "prompt_schedule" in text


# -- errors -----------------------------------------------------------------------------------------------------

def test_offline_missing_hub_model(tmp_path):
    with pytest.raises(ModelError) as e:
        render("guoyww/some-model-not-here", tmp_path / "x.mp4")
    assert "not on this machine" in e.value.message and "HF_HUB_OFFLINE" in e.value.message
    assert "huggingface-cli download guoyww/some-model-not-here" in e.value.hint
    assert not (tmp_path / "x.mp4").exists()


def test_offline_missing_adapter_or_lightning_file(tiny_ad, tmp_path):
    base = tiny.write(tmp_path / "sd15", family="sd15")
    with pytest.raises(ModelError, match="guoyww/animatediff-motion-adapter-v1-5-3 is not on this machine"):
        loading.identify(f"guoyww/animatediff-motion-adapter-v1-5-3+{base}")
    spec = f"ByteDance/AnimateDiff-Lightning/animatediff_lightning_4step_diffusers.safetensors+{base}"
    with pytest.raises(ModelError, match="ByteDance/AnimateDiff-Lightning is not on this machine"):
        loading.identify(spec)
    with pytest.raises(ModelError, match="emilianJR/epiCRealism is not on this machine"):
        loading.identify(f"{tiny_ad / 'motion_adapter'}+emilianJR/epiCRealism")


def test_not_a_pipeline_directory(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "weights.safetensors").write_bytes(b"x")
    with pytest.raises(ModelError, match="not a diffusers pipeline .no model_index.json."):
        loading.identify(str(tmp_path / "d"))
    with pytest.raises(ModelError, match="no such model directory"):
        loading.identify(str(tmp_path / "missing"))


def test_unsupported_family(tmp_path):
    d = tmp_path / "sdxl"
    d.mkdir()
    (d / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    with pytest.raises(ModelError) as e:
        loading.identify(str(d))
    assert "StableDiffusionXLPipeline" in e.value.message
    assert "AnimateDiffPipeline" in e.value.message and "WanPipeline" in e.value.message


def test_motion_adapter_alone_is_explained(tiny_ad):
    with pytest.raises(ModelError) as e:
        loading.identify(str(tiny_ad / "motion_adapter"))
    assert "ADAPTER+BASE" in e.value.hint


def test_bad_device_and_missing_model(tiny_ad, tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="bad device 'tpu'"):
        render(tiny_ad, tmp_path / "x.mp4", device="tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU"):
            render(tiny_ad, tmp_path / "x.mp4", device="cuda")
    with pytest.raises(ModelError, match="no diffusion model given"):
        render("", tmp_path / "x.mp4")
    monkeypatch.setenv("AVMIX_MODEL", str(tiny_ad))
    assert loading.identify(None).location == str(tiny_ad)


def test_out_of_memory_becomes_a_hint(tiny_ad, tmp_path, monkeypatch):
    import torch
    from avmix.video.diffusion import animatediff

    def boom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(animatediff, "denoise", boom)
    with pytest.raises(ModelError) as e:
        render(tiny_ad, tmp_path / "x.mp4")
    assert "--offload" in e.value.hint and "--size" in e.value.hint and "AVMIX_WINDOW=8" in e.value.hint
    assert not (tmp_path / "x.mp4").exists()


def test_available_needs_model_and_gpu(tiny_ad):
    ok, why = diffusion.available(None)
    assert not ok and "no diffusion model" in why
    import torch

    if not torch.cuda.is_available():
        ok, why = diffusion.available(str(tiny_ad))
        assert not ok and "GPU" in why


# -- tagger -----------------------------------------------------------------------------------------------------

def test_tag_labels_with_tiny_classifier(tmp_path):
    from conftest import noise, sine, write_wav

    model = tiny.audio_classifier(tmp_path / "tagger", labels=("Dog", "Rain", "Speech"))
    a = write_wav(tmp_path / "a.wav", sine(440, 1.0, sr=16000), sr=16000)
    b = write_wav(tmp_path / "b.wav", noise(1.0, sr=22050), sr=22050)
    labels = diffusion.tag_labels([a, b], str(model))
    assert len(labels) == 2
    for lab in labels:  # "dog" or "dog (speech)": the top classes above the score floor
        parts = lab.replace(" (", ", ").rstrip(")").split(", ")
        assert 1 <= len(parts) <= 2 and set(parts) <= {"dog", "rain", "speech"}


def test_tag_labels_errors(tmp_path):
    with pytest.raises(ModelError, match="no such tagger directory"):
        diffusion.tag_labels([], str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        diffusion.tag_labels([], str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="not on this machine"):
        diffusion.tag_labels([], "MIT/ast-finetuned-audioset-10-10-0.4593")
