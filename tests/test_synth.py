"""Text tracks: parsing, windows, tiny text-to-audio pipelines through the real loading path, seeds,
the cache and resume after an interrupt, origin records and errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from avmix import synth
from avmix.errors import ModelError, UsageError
from avmix.synth import cache, engine, model, windows
from avmix.synth.spec import parse

pytest.importorskip("diffusers")
pytest.importorskip("torchsde")  # Stable Audio Open's scheduler needs it

# the classes the real checkpoints' model_index.json name (stabilityai/stable-audio-open-1.0, cvssp/audioldm2)
REAL_CLASSES = {
    "stable-audio": {"vae": "AutoencoderOobleck", "text_encoder": "T5EncoderModel",
                     "projection_model": "StableAudioProjectionModel", "transformer": "StableAudioDiTModel",
                     "scheduler": "CosineDPMSolverMultistepScheduler"},
    "audioldm2": {"vae": "AutoencoderKL", "text_encoder": "ClapModel", "text_encoder_2": "T5EncoderModel",
                  "projection_model": "AudioLDM2ProjectionModel", "language_model": "GPT2LMHeadModel",
                  "unet": "AudioLDM2UNet2DConditionModel", "vocoder": "SpeechT5HifiGan",
                  "feature_extractor": "ClapFeatureExtractor", "scheduler": "DDIMScheduler"},
}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from avmix.synth import tiny

    base = tmp_path_factory.mktemp("audio-models")
    return {fam: str(tiny.write(base / fam, family=fam)) for fam in tiny.FAMILIES}


@pytest.fixture(scope="module", autouse=True)
def one_load_per_model():
    with model.keep_loaded():  # loading dominates a tiny model's time
        yield


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AVMIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AVMIX_AUDIO_MODEL", raising=False)
    return tmp_path / "cache"


def read(track):
    data, rate = sf.read(str(track.path), dtype="float32", always_2d=True)
    return data, rate


# -- parsing

@pytest.mark.parametrize("text, prompt, seconds", [
    ("text:heavy rain@8", "heavy rain", 8.0),
    ("text:heavy rain @ 2.5s", "heavy rain", 2.5),
    ("text:  a   slow cello ", "a slow cello", None),
    ("text:mail me@home", "mail me@home", None),
    ("text:a@b@.5", "a@b", 0.5),
])
def test_parse(text, prompt, seconds):
    spec = parse(text)
    assert (spec.prompt, spec.seconds, spec.source) == (prompt, seconds, text)


@pytest.mark.parametrize("text", ["text:", "text:@3", "text:rain@0", "text:rain@-2", "text:rain@1e-9", "text:rain@1e9",
                                  "text:rain@1e999"])
def test_parse_rejects(text):
    with pytest.raises(UsageError) as e:
        parse(text)
    assert "\n" not in e.value.message and text in e.value.message


def test_dot_slash_text_is_a_file():
    assert synth.text_inputs(["./text:rain@2", "text:rain@2", "rain.wav"]).keys() == {1}


# -- windows (pure)

def test_sixty_seconds_at_stable_audio_open_limit_is_exact():
    rate = 44100
    limit = math.floor(1024 * 2048 / rate * rate) - engine.MARGIN  # the real transformer length x VAE hop
    frames = 60 * rate
    plan = windows.plan(frames, limit, rate)
    assert len(plan) == 2 and plan[0][0] == 0 and plan[-1][0] + plan[-1][1] == frames
    assert all(length <= limit for _, length in plan)
    assert plan[0][0] + plan[0][1] - plan[1][0] >= rate  # a seam of at least 1 s
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((length, 2)).astype(np.float32) for _, length in plan]
    out = windows.join(parts, plan, frames)
    assert out.shape == (frames, 2)
    # outside the seam the samples are the windows' own; across it the level holds (equal power, no 3 dB dip)
    assert np.array_equal(out[:plan[1][0]], parts[0][:plan[1][0]])
    assert np.array_equal(out[plan[0][1]:], parts[1][plan[0][1] - plan[1][0]:])
    seam = out[plan[1][0]:plan[0][1]]
    assert abs(20 * np.log10(np.sqrt(np.mean(seam ** 2)))) < 0.3


@pytest.mark.parametrize("frames, most, seam", [(1000, 1000, 100), (1001, 1000, 100), (99991, 1000, 250),
                                                  (5000, 700, 699)])
def test_plan_covers_exactly_with_seams(frames, most, seam):
    plan = windows.plan(frames, most, seam)
    assert plan[0][0] == 0 and plan[-1][0] + plan[-1][1] == frames
    assert all(0 < length <= most for _, length in plan)
    seam = min(seam, most // 2)
    for (s0, l0), (s1, _) in zip(plan, plan[1:]):
        assert s0 < s1 and s0 + l0 - s1 >= seam


# -- tiny pipelines through the real loading path

@pytest.mark.parametrize("family", ["stable-audio", "audioldm2"])
def test_tiny_model_classes_match_the_real_checkpoints(tiny_models, family):
    index = json.loads(open(f"{tiny_models[family]}/model_index.json").read())
    assert index["_class_name"] == {"stable-audio": "StableAudioPipeline", "audioldm2": "AudioLDM2Pipeline"}[family]
    for name, cls in REAL_CLASSES[family].items():
        assert index[name][1] == cls, name
    assert model.identify(tiny_models[family]).family == family


@pytest.mark.parametrize("family, text, frames, rate, channels, calls", [
    ("stable-audio", "text:heavy rain@0.8765", 38654, 44100, 2, 3),  # 0.37 s a call: 3 windows
    ("audioldm2", "text:heavy rain@1.0007", 16011, 16000, 1, 2),  # 0.64 s a call: 2 windows
])
def test_exact_length_in_samples(tiny_models, family, text, frames, rate, channels, calls):
    tracks = synth.synthesize(["a.wav", text], synth.Settings(model=tiny_models[family], steps=1))
    assert list(tracks) == [1]
    data, got_rate = read(tracks[1])
    assert data.shape == (frames, channels) and got_rate == rate
    assert tracks[1].origin["windows"] == calls
    assert np.all(np.isfinite(data)) and np.abs(data).max() > 0


def test_seeds(tiny_models, tmp_path):
    def run(seed, where, inputs=("text:rain@0.2",)):
        tracks = synth.synthesize(list(inputs), synth.Settings(model=tiny_models["stable-audio"], steps=1, seed=seed,
                                                               cache_dir=str(tmp_path / where)))
        return [read(t)[0] for t in tracks.values()]

    first, second = run(1, "a", ("text:rain@0.2", "text:rain@0.2"))
    again, other = run(1, "b")[0], run(2, "c")[0]
    assert np.array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3
    assert np.abs(first - second).max() > 1e-3  # the same prompt at two positions: each track has its own seed


def test_cache_reused_without_loading_and_keyed_on_settings(tiny_models, cache_dir, monkeypatch):
    settings = synth.Settings(model=tiny_models["audioldm2"], steps=1, duration=0.3, seed=4)
    first = synth.synthesize(["text:dog barking"], settings)[0]
    assert not first.cached and first.path.parent == cache_dir / "tracks"
    assert read(first)[0].shape == (4800, 1)  # --text-duration 0.3 s at 16 kHz
    stamp = first.path.stat().st_mtime_ns

    def no_load(*a, **k):
        raise AssertionError("the model was loaded for a cached track")

    monkeypatch.setattr(model, "load", no_load)
    again = synth.synthesize(["text:dog barking"], settings)[0]
    assert again.cached and again.path == first.path and again.path.stat().st_mtime_ns == stamp
    assert again.origin["prompt"] == "dog barking" and again.origin == first.origin
    keys = {first.path.name}
    for change in (dict(steps=2), dict(guidance=2.0), dict(seed=5), dict(duration=0.4), dict(negative_prompt="hum")):
        keys.add(_key_of(synth.Settings(**{**settings.__dict__, **change}), monkeypatch))
    assert len(keys) == 6


def _key_of(settings, monkeypatch):
    """The cache file a setting would use (synthesize is stopped at the cache lookup)."""
    class Stop(Exception):
        pass

    seen = {}

    def spy(key, cache_dir=None):
        seen["key"] = key
        raise Stop

    with monkeypatch.context() as m:
        m.setattr(cache, "lookup", spy)
        with pytest.raises(Stop):
            synth.synthesize(["text:dog barking"], settings)
    return seen["key"] + ".wav"


def test_interrupt_during_synthesis_leaves_nothing_and_resumes(tiny_models, cache_dir):
    settings = synth.Settings(model=tiny_models["stable-audio"], steps=2)
    inputs = ["text:rain@0.2", "text:wind@0.5"]

    def interrupt(index, step, steps):
        if index == 1 and step == 3:  # inside the second window of the second track
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synth.synthesize(inputs, settings, on_step=interrupt)
    files = sorted(p.name for p in (cache_dir / "tracks").iterdir())
    assert len(files) == 2 and {f.rsplit(".", 1)[1] for f in files} == {"wav", "json"}  # the first track only
    tracks = synth.synthesize(inputs, settings)
    assert tracks[0].cached and not tracks[1].cached
    assert read(tracks[1])[0].shape == (22050, 2)
    assert len(list((cache_dir / "tracks").iterdir())) == 4


def test_origin_record(tiny_models):
    settings = synth.Settings(model=tiny_models["stable-audio"], steps=2, guidance=3.0, seed=9,
                              negative_prompt="hum", duration=0.25)
    track = synth.synthesize(["x.wav", "y.wav", "text:a crowd cheering"], settings)[2]
    o = track.origin
    assert o["kind"] == "text" and o["prompt"] == "a crowd cheering" and o["seconds"] == 0.25
    assert o["frames"] == 11025 and o["sample_rate"] == 44100 and o["channels"] == 2
    assert o["model"] == tiny_models["stable-audio"] and o["pipeline"] == "StableAudioPipeline"
    assert o["steps"] == 2 and o["guidance"] == 3.0 and o["negative_prompt"] == "hum"
    assert o["run_seed"] == 9 and o["index"] == 2 and o["seed"] == engine.derive_seed(9, "track", 2)
    assert o["path"] == str(track.path) and o["weights"].startswith("local:")
    assert json.loads(track.path.with_suffix(".json").read_text())["key"] == track.path.stem


def test_other_weights_other_key(tiny_models, tmp_path):
    from avmix.synth import tiny

    other = tiny.write(tmp_path / "other", family="audioldm2", seed=1)
    assert model.identify(str(other)).fingerprint != model.identify(tiny_models["audioldm2"]).fingerprint


def test_bare_gpt2_language_model_still_generates(tiny_models, tmp_path):
    """Older AudioLDM 2 folders name a bare GPT2Model, which transformers 5 cannot generate with."""
    from avmix.synth import tiny
    from transformers import GPT2Model

    pipe = tiny.audioldm2()
    pipe.register_modules(language_model=GPT2Model(pipe.language_model.config))
    pipe.save_pretrained(tmp_path / "old", safe_serialization=True)
    assert json.loads((tmp_path / "old" / "model_index.json").read_text())["language_model"][1] == "GPT2Model"
    track = synth.synthesize(["text:rain@0.1"], synth.Settings(model=str(tmp_path / "old"), steps=1))[0]
    assert read(track)[0].shape == (1600, 1)


# -- errors

def test_no_model_says_what_to_pass():
    with pytest.raises(ModelError) as e:
        synth.synthesize(["text:rain"], synth.Settings())
    assert "--audio-model" in e.value.hint and "AVMIX_AUDIO_MODEL" in e.value.hint


def test_video_model_is_refused(tmp_path):
    (tmp_path / "video").mkdir()
    (tmp_path / "video" / "model_index.json").write_text(json.dumps({"_class_name": "AnimateDiffPipeline"}))
    with pytest.raises(ModelError, match="not a text-to-audio family"):
        synth.synthesize(["text:rain"], synth.Settings(model=str(tmp_path / "video")))


def test_missing_and_offline_models(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="no such model directory"):
        synth.synthesize(["text:rain"], synth.Settings(model=str(tmp_path / "nope")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelError, match="not on this machine"):
        synth.synthesize(["text:rain"], synth.Settings(model="stabilityai/stable-audio-open-1.0"))


def test_weights_without_safetensors_are_refused(tiny_models, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["stable-audio"], broken)
    for f in (broken / "projection_model").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ModelError) as e:
        synth.synthesize(["text:rain@0.1"], synth.Settings(model=str(broken), steps=1))
    assert "safetensors" in e.value.message and "\n" not in e.value.message
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("bad, word", [(dict(steps=0), "--audio-steps"), (dict(guidance=float("nan")), "--audio-guidance"),
                                       (dict(duration=-1), "--text-duration"), (dict(seed=-1), "--seed")])
def test_bad_settings(bad, word):
    with pytest.raises(UsageError, match=word):
        synth.synthesize(["text:rain"], synth.Settings(model="unused", **bad))


def test_no_text_inputs_needs_no_model():
    assert synth.synthesize(["a.wav", "./text:b"], synth.Settings()) == {}


def test_models_tiny_cli(run_cli, tmp_path):
    r = run_cli("models", "tiny", str(tmp_path / "m"), "--family", "audioldm2", "-q")
    assert r.code == 0 and (tmp_path / "m" / "vocoder" / "config.json").is_file()
    r = run_cli("models", "check", str(tmp_path / "m"), "--json")
    assert r.code == 0 and json.loads(r.out)["family"] == "audioldm2"


# -- text tracks in the commands (mix, concat, overlay, generate, batch)

@pytest.fixture
def shared_cache(tmp_path_factory, monkeypatch):
    """One track cache for the command tests: the same text at the same index and seed is made once."""
    path = tmp_path_factory.getbasetemp() / "shared-track-cache"
    monkeypatch.setenv("AVMIX_CACHE", str(path))
    return path


@pytest.fixture
def dog(tmp_path):
    from conftest import sine, write_wav

    return write_wav(tmp_path / "dog.wav", sine(440, 1.0, sr=48000))


def _timeline(path):
    return json.loads(open(f"{path}.timeline.json").read())


def test_text_tracks_in_mix_concat_overlay(run_cli, tiny_models, shared_cache, dog, tmp_path):
    sa = ["--audio-model", tiny_models["stable-audio"], "--audio-steps", "2", "-q"]
    out = tmp_path / "mix.wav"
    r = run_cli("mix", "text:heavy rain@0.25", str(dog), "-o", str(out), *sa)
    assert r.code == 0, r.err
    tl = _timeline(out)
    rain = tl["sources"][0]
    assert rain["label"] == "heavy rain" and rain["path"].startswith(str(shared_cache / "tracks"))
    assert rain["origin"]["prompt"] == "heavy rain" and rain["origin"]["seconds"] == 0.25
    assert rain["end_sample"] - rain["start_sample"] == 12000  # 0.25 s at the job's 48 kHz
    assert sf.info(str(out)).frames == 48000 and "origin" not in tl["sources"][1]

    out = tmp_path / "concat.wav"
    r = run_cli("concat", "text:heavy rain@0.25", "text:wind@0.5", "--label", "storm", "-o", str(out), *sa)
    assert r.code == 0, r.err
    assert sf.info(str(out)).frames == 33075 and sf.info(str(out)).samplerate == 44100  # 0.75 s, to the sample
    assert [s["label"] for s in _timeline(out)["sources"]] == ["storm", "wind"]

    out = tmp_path / "overlay.wav"
    r = run_cli("overlay", str(dog), "text:birds@0.2", "--at", "0.5", "-o", str(out), *sa)
    assert r.code == 0, r.err
    top = _timeline(out)["sources"][1]
    assert (top["start_sample"], top["end_sample"], top["label"]) == (24000, 33600, "birds")

    # the composed file finds its synthesised source again through the timeline
    r = run_cli("generate", str(tmp_path / "mix.wav"), "-o", str(tmp_path / "v.mp4"), "--size", "32x32",
                "--fps", "5", "--backend", "procedural", "-q", "--stems", str(tmp_path / "stems"))
    assert r.code == 0, r.err
    assert (tmp_path / "stems" / "00-heavy-rain.wav").is_file()


def test_generate_text_tracks_stage_manifest_and_rerun(run_cli, tiny_models, shared_cache, tmp_path, monkeypatch):
    args = ["generate", "text:waves on a beach@0.3", "text:a busy street@0.2", "--mode", "concat",
            "--audio-model", tiny_models["audioldm2"], "--audio-steps", "2", "--audio-guidance", "2.5", "--seed", "7",
            "--size", "32x32", "--fps", "5", "--backend", "procedural", "-w", str(tmp_path / "w"),
            "-o", str(tmp_path / "film.mp4"), "-q"]
    r = run_cli(*args)
    assert r.code == 0, r.err
    work = tmp_path / "w"
    man = json.loads((work / "manifest.json").read_text())
    assert set(man["stages"]) == {"synth", "compose", "analyze", "video", "audio"}  # audio: the AAC, beside video
    assert [i["text"] for i in man["inputs"]] == ["text:waves on a beach@0.3", "text:a busy street@0.2"]
    assert man["options"]["audio_guidance"] == 2.5 and man["options"]["audio_steps"] == 2
    listed = json.loads((work / "tracks.json").read_text())["tracks"]
    assert [t["prompt"] for t in listed] == ["waves on a beach", "a busy street"]
    tl = json.loads((work / "timeline.json").read_text())
    assert [s["label"] for s in tl["sources"]] == ["waves on a beach", "a busy street"]
    assert [s["path"] for s in tl["sources"]] == [t["path"] for t in listed]
    assert tl["sources"][1]["origin"]["seed"] == engine.derive_seed(7, "track", 1)
    assert tl["frames"] == 8000  # 0.5 s at 16 kHz
    analysis = json.loads((work / "analysis.json").read_text())  # what the diffusion backend prompts with
    assert [t["label"] for t in analysis["tracks"]] == ["waves on a beach", "a busy street"]

    def no_load(*a, **k):
        raise AssertionError("reloaded")

    monkeypatch.setattr(model, "load", no_load)
    r = run_cli(*args, "-y", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["reused"] == ["synth", "compose", "analyze", "video"]


def test_generate_interrupted_in_synthesis_resumes(run_cli, tiny_models, cache_dir, tmp_path, monkeypatch):
    real = engine.render
    calls = []

    def interrupt_second(pipe, call, **kw):
        calls.append(call.prompt)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(pipe, call, **kw)

    monkeypatch.setattr(engine, "render", interrupt_second)
    args = ["generate", "text:rain@0.2", "text:wind@0.2", "--audio-model", tiny_models["stable-audio"],
            "--audio-steps", "1", "--size", "32x32", "--fps", "5", "--backend", "procedural",
            "-o", str(tmp_path / "out.mp4"), "-q"]
    r = run_cli(*args)
    assert r.code == 130 and not (tmp_path / "out.mp4").exists()
    assert len(list((cache_dir / "tracks").glob("*.wav"))) == 1
    assert not [p for p in (cache_dir / "tracks").iterdir() if ".part" in p.name]
    monkeypatch.setattr(engine, "render", real)
    r = run_cli(*args, "--json")
    assert r.code == 0, r.err and (tmp_path / "out.mp4").is_file()
    assert len(list((cache_dir / "tracks").glob("*.wav"))) == 2


@pytest.mark.parametrize("command", ["generate", "mix"])
def test_text_track_without_model_writes_nothing(run_cli, tmp_path, cache_dir, command):
    out = tmp_path / ("out.mp4" if command == "generate" else "out.wav")
    r = run_cli(command, "text:heavy rain@2", "-o", str(out))
    assert r.code == 1
    assert r.err.count("error:") == 1 and "--audio-model" in r.err and "Traceback" not in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_file_named_text_is_reached_with_dot_slash(run_cli, tmp_path, monkeypatch):
    from conftest import sine, write_wav

    monkeypatch.chdir(tmp_path)
    write_wav(tmp_path / "rain.wav", sine(220, 0.5), subtype="PCM_16").rename(tmp_path / "text:rain")
    r = run_cli("mix", "./text:rain", "-o", "o.wav", "-q")
    assert r.code == 0, r.err and "origin" not in _timeline("o.wav")["sources"][0]


def test_batch_jobs_with_text_tracks(tiny_models, shared_cache, dog, tmp_path):
    from avmix.batch import batch
    from avmix.batch_jobs import read_jobs

    csv_file = tmp_path / "jobs.csv"
    csv_file.write_text('inputs,output\n"""text:rain; wind@0.2"";dog.wav",a.mp4\n')
    job = read_jobs(csv_file, tmp_path / "out")[0]
    assert job.inputs == ["text:rain; wind@0.2", str(tmp_path / "dog.wav")]  # the text is not a path
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"inputs": ["text:rain; wind@0.2", "dog.wav"], "output": "a.mp4",
                                "audio-model": tiny_models["stable-audio"], "audio-steps": 2,
                                "size": "32x32", "fps": 5, "backend": "procedural"}) + "\n")
    summary = batch(jobs, tmp_path / "out", workers=1)
    assert summary["failed"] == 0, summary
    from avmix.audio.io import open_audio

    made = open_audio(tmp_path / "out" / "a.mp4")
    assert made.frames / made.sample_rate == pytest.approx(1.0, abs=0.03)  # the longer of 0.2 s and dog's 1 s
