"""Option groups: one declaration per option, shared by the commands, the Python API, batch and the
manifest; timeline keys a reader does not know survive a load and save."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from avmix.batch_jobs import read_jobs
from avmix.commands.options import parameters
from avmix.errors import InputError, UsageError
from avmix.options import GROUPS, ComposeOptions, Options, VideoOptions, flag_of
from avmix.timeline import Analysis, Timeline

ROOT = Path(__file__).resolve().parents[1]


def _decls(command):
    """{flag: parameter name} of a command's group options, read from the Typer parameters."""
    out = {}
    for p in parameters(command):
        info = p.annotation.__metadata__[0]  # typer.Option keeps its first declaration as `default`
        for d in (info.default, *(info.param_decls or ())):
            for part in d.split("/"):
                out[part] = p.name
    return out


def test_every_cli_flag_is_one_field_and_each_flag_is_unique():
    seen = {}
    for group in GROUPS.values():
        for f in dataclasses.fields(group):
            flag = flag_of(f)
            for d in flag.decls if flag else ():
                for part in d.split("/"):
                    assert part not in seen, f"{part} declared by {seen[part]} and {f.name}"
                    seen[part] = f.name
    assert len(seen) > 40  # the compose, video, model and work options are all here


def test_commands_share_the_declarations():
    mix, concat, overlay, gen = (_decls(c) for c in ("mix", "concat", "overlay", "generate"))
    assert mix["--gain"] == concat["--gain"] == overlay["--gain"] == gen["--gain"] == "gains"
    assert concat["--crossfade"] == gen["--crossfade"] == gen["-x"] == "crossfade"
    assert "--crossfade" not in mix and "--at" not in concat and "--duration" not in overlay
    assert "--fps" in gen and "--fps" not in mix
    assert "--mode" in gen and "--mode" not in mix  # mix, concat and overlay imply it


def test_generate_help_names_the_mode_of_mode_options():
    def helps(command):
        return {p.name: p.annotation.__metadata__[0].help for p in parameters(command)}

    assert helps("generate")["crossfade"] == "concat: " + helps("concat")["crossfade"]
    assert helps("generate")["gains"] == helps("mix")["gains"]  # every mode takes it: no prefix


def test_options_of_flat_names_and_unknown_names():
    o = Options.of(fps=24, gains=[0, -6], crossfade=1.5, stems="s", model="m")
    assert (o.video.fps, o.compose.gains, o.compose.crossfade, o.work.stems, o.model.model) == \
        (24, [0, -6], 1.5, "s", "m")
    o2 = Options.of(o, fps=12)
    assert (o2.video.fps, o2.compose.crossfade) == (12, 1.5)  # the base's other options stay
    assert o.video.fps == 24  # frozen: a new object, the old one unchanged
    with pytest.raises(TypeError, match="colour"):
        Options.of(colour="red")
    flat = o.flat()
    assert set(flat) == set(Options.by_name()) and flat["size"] == [1280, 720]
    json.dumps(flat)  # the manifest records it as is


@pytest.mark.parametrize("changes, message", [
    ({"gains": [0, 0, 0]}, "3 --gain values for 2 inputs"),
    ({"crossfade": 1.0, "gap": 1.0}, "cannot be combined"),
    ({"target": -14.0}, "--target needs --normalize"),
    ({"normalize": "lufs", "target": 3.0}, "--target 3 LUFS is out of range"),
    ({"curve": "cubic"}, "unknown --curve 'cubic'"),
    ({"duck": 99.0}, "--duck 99 dB is out of range"),
    ({"normalize": "peak", "target": -0.5}, "above the limiter's --ceiling"),
    ({"labels": ["a", " "]}, "--label must not be empty"),
])
def test_compose_checks_in_one_place(changes, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        ComposeOptions(**changes).checked(2)


def test_compose_checked_normalises_values():
    c = ComposeOptions(gains=[3], duck=-12.0, mode="overlay").checked(2)
    assert c.gains == [3.0, 0.0] and c.duck == 12.0
    assert c.mode_options() == {"at": 0.0, "loop": False, "duck_db": 12.0}
    assert c.settings().gains == [3.0, 0.0]


def test_video_checks():
    assert VideoOptions(size="640x360").checked().size == (640, 360)
    with pytest.raises(UsageError, match="odd"):
        VideoOptions(size=(641, 360)).checked()
    with pytest.raises(UsageError, match="--fps 0 out of range"):
        VideoOptions(fps=0).checked()


def test_the_library_does_not_import_the_cli():
    code = ("import sys, avmix.pipeline, avmix.batch, avmix.options, avmix.audio.compose, avmix.score; "
            "bad = sorted(m for m in sys.modules if m.startswith('avmix.commands') or m in ('avmix.cli', 'typer')); "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    # nor later, inside a function
    for path in (ROOT / "avmix").rglob("*.py"):
        rel = path.relative_to(ROOT / "avmix").as_posix()
        if rel == "cli.py" or rel.startswith("commands/") or rel == "__main__.py":
            continue
        imports = re.findall(r"^\s*(?:from|import) (avmix\.commands|avmix\.cli|typer)\b", path.read_text(), re.M)
        assert not imports, rel


def test_batch_reads_options_by_their_fields(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        json.dumps({"inputs": ["a.wav"], "output": "x.mp4", "crossfade": 2, "no-limit": True, "size": "320x240",
                    "preview": "x.png", "label": ["dog"]}) + "\n"
        + json.dumps({"inputs": ["a.wav"], "output": "y.mp4", "colour": "red"}) + "\n")
    a, b = read_jobs(jobs, tmp_path / "out")
    assert a.error is None and a.options == {"crossfade": 2, "limit": False, "size": (320, 240),
                                             "preview": str((tmp_path / "out" / "x.png").resolve()),
                                             "labels": ["dog"]}
    assert b.error and "unknown option 'colour'" in b.error
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"inputs": ["a.wav"], "output": "x.mp4", "crossfade": "long"}) + "\n")
    with pytest.raises(UsageError, match="option 'crossfade': expected a number"):
        read_jobs(bad, tmp_path / "out")


def _timeline_dict():
    return {"schema": "avmix.timeline/1", "mode": "mix", "sample_rate": 48000, "channels": 2, "frames": 48000,
            "sources": [{"index": 0, "path": "a.wav", "label": "a", "start_sample": 0, "end_sample": 48000,
                         "source_frames": 48000, "from_the_future": {"x": 1},
                         "duck": None}],
            "written_by": "avmix 9", "output": ""}


def test_unknown_timeline_keys_survive_a_load_and_save(tmp_path):
    d = _timeline_dict()
    d["sources"][0]["picture"] = {"kind": "image", "path": "a.png"}
    tl = Timeline.from_dict(d)
    assert tl.sources[0].picture == {"kind": "image", "path": "a.png"}
    tl.save(tmp_path / "t.json")
    again = json.loads((tmp_path / "t.json").read_text())
    assert again["written_by"] == "avmix 9"
    assert again["sources"][0]["from_the_future"] == {"x": 1}
    assert again["sources"][0]["picture"] == {"kind": "image", "path": "a.png"}
    assert again["schema"] == "avmix.timeline/1" and "master" not in again and "origin" not in again[
        "sources"][0]


def test_a_master_correction_bumps_the_timeline_major(tmp_path):
    tl = Timeline.from_dict(_timeline_dict())
    tl.master = {"kind": "reference", "gain_db": -3.0}
    tl.save(tmp_path / "t.json")
    d = json.loads((tmp_path / "t.json").read_text())
    assert d["schema"] == "avmix.timeline/2"
    assert Timeline.load(tmp_path / "t.json").master == {"kind": "reference", "gain_db": -3.0}
    d["schema"] = "avmix.timeline/3"
    (tmp_path / "t3.json").write_text(json.dumps(d))
    with pytest.raises(InputError, match="unsupported schema version"):
        Timeline.load(tmp_path / "t3.json")


def test_unknown_analysis_keys_survive(tmp_path):
    track = {"label": "a", "envelope": [0.0, 1.0], "onsets": [0.5], "new_feature": [1, 2]}
    d = {"schema": "avmix.analysis/1", "fps": 2, "frames": 2, "duration": 1.0, "tracks": [track],
         "mix": dict(track, index=-1), "extra_top": True}
    p = tmp_path / "a.json"
    p.write_text(json.dumps(d))
    Analysis.load(p).save(tmp_path / "b.json")
    again = json.loads((tmp_path / "b.json").read_text())
    assert again["extra_top"] is True and again["tracks"][0]["new_feature"] == [1, 2]
