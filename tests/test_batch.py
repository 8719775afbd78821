"""avmix batch: jobs files, output confinement, failures, resuming, and both engines on real jobs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from avmix.batch import batch, read_jobs
from avmix.errors import InputError, OutputError, UsageError
from avmix.paths import check_input
from tests.conftest import sine, write_wav

SR = 22050


def fake_generate(inputs, output, *, mode="mix", labels=None, fps=30, size=(1280, 720), seed=0,
                  backend="auto", at=0.0, gains=None, limit=True, preview=None, overwrite=False, quiet=True,
                  progress=None):
    """Stands in for pipeline.generate in the fast tests (workers import it by name)."""
    for p in inputs:
        check_input(p)
    for target in (output, preview):
        if target and Path(target).exists() and not overwrite:
            raise OutputError("already exists", path=target)
    Path(output).write_text(json.dumps({"inputs": [os.fspath(p) for p in inputs], "size": list(size),
                                        "fps": fps, "labels": labels, "at": at, "limit": limit}))
    if preview:
        Path(preview).write_text(f"preview of {fps} fps")
    return {"output": os.fspath(output), "duration": 1.0, "backend": backend, "timings": {"total": 0.01},
            "preview": preview}


def failing_generate(inputs, output, **kw):
    """A rerun that fails before writing anything."""
    raise InputError("the model ran out of memory", path=output)


def clicks(seconds: float, every: float, sr: int = SR) -> np.ndarray:
    x = np.zeros((int(seconds * sr), 1), dtype=np.float32)
    x[:: int(every * sr)] = 0.9
    return x


@pytest.fixture
def jobs_dir(tmp_path):
    d = tmp_path / "jobs"
    (d / "audio").mkdir(parents=True)
    write_wav(d / "audio" / "tone.wav", sine(330, 1.5, sr=SR), SR)
    write_wav(d / "audio" / "clicks.wav", clicks(1.5, 0.3), SR)
    write_wav(d / "audio" / "low.wav", sine(110, 1.0, sr=SR), SR)
    return d


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


TINY = {"size": "160x90", "fps": 10, "backend": "procedural"}


def three_jobs_and_a_broken_one(d: Path) -> Path:
    return write_jsonl(d / "jobs.jsonl", [
        {"inputs": ["audio/tone.wav", "audio/clicks.wav"], "output": "mix.mp4", **TINY},
        {"inputs": ["audio/tone.wav", "audio/low.wav"], "output": "sub/concat.mp4", "mode": "concat",
         "labels": ["tone", "low"], **TINY},
        {"inputs": ["audio/tone.wav", "audio/clicks.wav"], "output": "overlay.mp4", "mode": "overlay",
         "at": 0.5, **TINY},
        {"inputs": ["audio/missing.wav"], "output": "broken.mp4", **TINY},
    ])


# ------------------------------------------------------------------------------ parsing (no runs)


def test_jsonl_and_csv_parse_the_same(tmp_path, jobs_dir):
    out = tmp_path / "out"
    jl = write_jsonl(jobs_dir / "j.jsonl", [
        "# a comment line",
        {"inputs": ["audio/tone.wav", "audio/clicks.wav"], "output": "a.mp4", "size": "640x360",
         "--fps": 12.5, "label": ["x", "2"], "gain": [0, -6], "no-limit": True, "Backend": "procedural"},
    ])
    csv = jobs_dir / "j.csv"
    csv.write_text("inputs,output,size,fps,labels,gains,no_limit,backend,at\n"
                   "audio/tone.wav; audio/clicks.wav,a.mp4,640x360,12.5,x;2,0;-6,true,procedural,\n")
    for f in (jl, csv):
        (job,) = read_jobs(f, out)
        assert job.error is None
        assert job.inputs == [os.fspath(jobs_dir / "audio" / "tone.wav"), os.fspath(jobs_dir / "audio" / "clicks.wav")]
        assert job.target == os.fspath(out.resolve() / "a.mp4")
        assert job.options == {"size": (640, 360), "fps": 12.5, "labels": ["x", "2"], "gains": [0, -6.0],
                               "limit": False, "backend": "procedural"}
        assert job.line == 2


@pytest.mark.parametrize("rows, message", [
    (['{"inputs": ["a.wav"], "output": "a.mp4"}', '{"inputs": ["b.wav"], "output": '], "line 2: invalid JSON"),
    ([{"inputs": ["a.wav"]}], "line 1: missing 'output'"),
    ([{"output": "a.mp4"}], "line 1: missing 'inputs'"),
    ([{"inputs": [], "output": "a.mp4"}], "line 1: 'inputs' must be a non-empty list"),
    ([{"inputs": ["a.wav"], "output": 3}], "line 1: 'output' must be a file name"),
    ([{"inputs": ["a.wav"], "output": "a.mp4", "fps": "fast"}], "line 1: option 'fps': expected a number"),
    ([{"inputs": ["a.wav"], "output": "a.mp4", "size": "big"}], "line 1: option 'size': expected WxH"),
    ([{"inputs": ["a.wav"], "output": "a.mp4", "labels": "dog"}], "line 1: option 'labels': expected a list"),
    (["[1, 2]"], "line 1: expected a JSON object"),
])
def test_malformed_jobs_file_runs_nothing(tmp_path, run_cli, rows, message):
    jobs = write_jsonl(tmp_path / "jobs.jsonl", rows)
    out = tmp_path / "out"
    res = run_cli("batch", jobs, "-o", out)
    assert res.code == 2
    assert f"jobs.jsonl: {message}" in res.err
    assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err
    assert not out.exists()


def test_bad_csv_and_missing_file(tmp_path, run_cli):
    csv = tmp_path / "jobs.csv"
    csv.write_text("inputs,output\na.wav,a.mp4\nb.wav,b.mp4,extra\n")
    res = run_cli("batch", csv, "-o", tmp_path / "out")
    assert res.code == 2 and "jobs.csv: line 3: 3 fields but the header has 2" in res.err
    res = run_cli("batch", tmp_path / "nope.jsonl", "-o", tmp_path / "out")
    assert res.code == 1 and "nope.jsonl: no such file" in res.err


def test_outputs_cannot_escape_outdir(tmp_path, jobs_dir):
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "link").symlink_to(elsewhere, target_is_directory=True)
    (out / "file-link.mp4").symlink_to(elsewhere / "x.mp4")
    names = ["../up.mp4", "/tmp/abs.mp4", "sub/../../up.mp4", "link/in.mp4", "file-link.mp4", "batch.json",
             "ok/fine.mp4", "ok/other.mp4"]
    jobs = write_jsonl(jobs_dir / "j.jsonl", [{"inputs": ["audio/tone.wav"], "output": n} for n in names]
                       + [{"inputs": ["audio/tone.wav"], "output": "w.mp4", "frobnicate": 1},
                          {"inputs": ["audio/tone.wav"], "output": "p.mp4", "preview": "../p.png"}])
    errors = [j.error for j in read_jobs(jobs, out)]
    assert "'..'" in errors[0] and "absolute" in errors[1] and "'..'" in errors[2]
    assert "symlink" in errors[3] and "symlink" in errors[4] and "own records" in errors[5]
    assert errors[6] is None and errors[7] is None
    assert "unknown option 'frobnicate'" in errors[8]
    assert errors[9].startswith("preview ") and "'..'" in errors[9]


def _snapshot(d: Path) -> dict[str, bytes]:
    return {os.fspath(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("rows, message", [
    # the tester's case: job 2 would replace job 1's input
    ([{"inputs": ["v.mp4"], "output": "y.mp4"}, {"inputs": ["a.wav"], "output": "v.mp4"}],
     "line 2: output {d}/v.mp4 is an input of the job on line 1; batch would overwrite it"),
    ([{"inputs": ["a.wav"], "output": "v.mp4"}, {"inputs": ["sub/../v.mp4"], "output": "y.mp4"}],
     "line 1: output {d}/v.mp4 is an input of the job on line 2; batch would overwrite it"),
    ([{"inputs": ["a.wav"], "output": "y.mp4"}, {"inputs": ["a.wav"], "output": "./y.mp4"}],
     "line 2: output {d}/y.mp4 is also written by the job on line 1"),
    ([{"inputs": ["a.wav"], "output": "y.mp4", "reference": "v.mp4"}, {"inputs": ["a.wav"], "output": "v.mp4"}],
     "line 2: output {d}/v.mp4 is an input of the job on line 1; batch would overwrite it"),
    ([{"inputs": ["a.wav"], "output": "y.mp4", "image": ["pic.png"]},
      {"inputs": ["a.wav"], "output": "z.mp4", "preview": "pic.png"}],
     "line 2: preview {d}/pic.png is an input of the job on line 1; batch would overwrite it"),
    ([{"inputs": ["stems/00-a.wav"], "output": "y.mp4"}, {"inputs": ["a.wav"], "output": "z.mp4", "stems": "stems"}],
     "line 2: stems {d}/stems holds {d}/stems/00-a.wav, an input of the job on line 1; batch would overwrite it"),
    ([{"inputs": ["a.wav"], "output": "hard.mp4"}, {"inputs": ["v.mp4"], "output": "y.mp4"}],
     "line 1: output {d}/hard.mp4 is an input of the job on line 2; batch would overwrite it"),  # a hard link to v.mp4
    ([{"inputs": ["v.mp4"], "output": "v.mp4"}],
     "line 1: output {d}/v.mp4 is an input of this job; batch would overwrite it"),
    ([{"inputs": ["a.wav"], "output": "jobs.jsonl"}],
     "line 1: output {d}/jobs.jsonl is the jobs file; batch would overwrite it"),
    ([{"inputs": ["a.wav"], "output": "w/video.mp4"}, {"inputs": ["a.wav"], "output": "z.mp4", "workdir": "w"}],
     "line 1: output {d}/w/video.mp4 lies inside workdir {d}/w of the job on line 2; batch would overwrite it"),
])
def test_jobs_that_would_overwrite_an_input_run_nothing(tmp_path, run_cli, rows, message):
    d = tmp_path / "bk"
    (d / "stems").mkdir(parents=True)
    write_wav(d / "a.wav", sine(330, 0.5, sr=SR), SR)
    write_wav(d / "stems" / "00-a.wav", sine(220, 0.5, sr=SR), SR)
    (d / "v.mp4").write_bytes(b"the user's video")
    (d / "pic.png").write_bytes(b"the user's picture")
    os.link(d / "v.mp4", d / "hard.mp4")
    jobs = write_jsonl(d / "jobs.jsonl", [dict(r, **TINY) for r in rows])
    before = _snapshot(d)
    res = run_cli("batch", jobs, "-o", d, "-j", "1")
    assert res.code == 2, res.err
    assert res.err.strip() == f"avmix: error: {jobs}: {message.format(d=d)}"
    assert _snapshot(d) == before  # nothing written, nothing replaced, no batch.json


def test_files_batch_did_not_make_are_kept(tmp_path, jobs_dir, run_cli):
    jobs = write_jsonl(jobs_dir / "p.jsonl", [{"inputs": ["audio/tone.wav"], "output": "x.mp4", **TINY},
                                              {"inputs": ["audio/low.wav"], "output": "w.mp4", **TINY}])
    out = tmp_path / "bk" / "o2"
    out.mkdir(parents=True)
    (out / "x.mp4").write_bytes(b"precious\n")
    res = run_cli("batch", jobs, "-o", out)
    assert res.code == 1
    assert res.err.strip() == (f"avmix: error: {out.resolve()}/x.mp4: exists and avmix batch did not make it "
                               "(job on line 1); move it away or pass --force to replace it")
    assert (out / "x.mp4").read_bytes() == b"precious\n"
    assert sorted(os.listdir(out)) == ["x.mp4"]  # the other job did not run either

    res = run_cli("batch", jobs, "-o", out, "--force", "-j", "2")  # asked for: replaced
    assert res.code == 0, res.err
    from avmix import ffmpeg

    assert ffmpeg.probe(out / "x.mp4").duration == pytest.approx(1.5, abs=0.15)
    mtimes = [(out / n).stat().st_mtime_ns for n in ("x.mp4", "w.mp4")]
    res = run_cli("batch", jobs, "-o", out, "--json")  # a finished batch is skipped, as before
    assert res.code == 0 and json.loads(res.out)["skipped"] == 2 and res.err == ""
    assert [(out / n).stat().st_mtime_ns for n in ("x.mp4", "w.mp4")] == mtimes


def test_records_and_previews_batch_did_not_make_are_kept(tmp_path, jobs_dir):
    out = tmp_path / "out"
    jobs = write_jsonl(jobs_dir / "j.jsonl",
                       [{"inputs": ["audio/tone.wav"], "output": "a.mp4", "preview": "a.png"}])
    out.mkdir()
    for name, match in (("a.png", "a.png: exists and avmix batch did not make it"),
                        ("a.mp4.job.json", "a.mp4.job.json: exists and is not an avmix batch record"),
                        ("batch.json", "batch.json: exists and is not an avmix batch summary")):
        (out / name).write_text("mine")
        with pytest.raises(OutputError, match=match):
            batch(jobs, out, workers=1, generate=fake_generate)
        assert sorted(os.listdir(out)) == [name] and (out / name).read_text() == "mine"
        (out / name).unlink()

    # Its own preview is replaced when the job changes; a preview moved onto a user's file is not.
    assert batch(jobs, out, workers=1, generate=fake_generate)["ok"] == 1
    write_jsonl(jobs, [{"inputs": ["audio/tone.wav"], "output": "a.mp4", "preview": "a.png", "fps": 12}])
    assert batch(jobs, out, workers=1, generate=fake_generate)["ok"] == 1
    assert (out / "a.png").read_text() == "preview of 12 fps"
    (out / "b.png").write_text("mine")
    write_jsonl(jobs, [{"inputs": ["audio/tone.wav"], "output": "a.mp4", "preview": "b.png", "fps": 12}])
    with pytest.raises(OutputError, match="b.png: exists and avmix batch did not make it"):
        batch(jobs, out, workers=1, generate=fake_generate)
    assert (out / "b.png").read_text() == "mine"
    assert batch(jobs, out, workers=1, generate=fake_generate, force=True)["ok"] == 1
    assert (out / "b.png").read_text() == "preview of 12 fps"


def test_a_failed_rerun_or_a_removed_output_leaves_the_job_its_own_files(tmp_path, jobs_dir):
    out = tmp_path / "out"
    job = {"inputs": ["audio/tone.wav"], "output": "a.mp4", "preview": "a.png"}
    jobs = write_jsonl(jobs_dir / "j.jsonl", [job])
    assert batch(jobs, out, workers=1, generate=fake_generate)["ok"] == 1
    changed = write_jsonl(jobs_dir / "k.jsonl", [{**job, "fps": 12}])
    assert batch(changed, out, workers=1, generate=failing_generate)["failed"] == 1
    assert batch(jobs, out, workers=1, generate=fake_generate)["skipped"] == 1  # still the first run's
    (out / "a.mp4").unlink()  # to have the job made again: its own preview is replaced, not refused
    assert batch(changed, out, workers=1, generate=fake_generate)["ok"] == 1
    assert (out / "a.png").read_text() == "preview of 12 fps"


def test_failed_jobs_end_with_one_error_line(tmp_path, jobs_dir, run_cli):
    jobs = write_jsonl(jobs_dir / "j.jsonl", [{"inputs": ["audio/tone.wav"], "output": "ok.mp4", **TINY},
                                              {"inputs": ["audio/missing.wav"], "output": "gone.mp4", **TINY},
                                              {"inputs": ["audio/tone.wav"], "output": "odd.mp4", "frobnicate": 1}])
    out = tmp_path / "out"
    for extra in ((), ("--json",)):
        res = run_cli("batch", jobs, "-o", out, "-j", "2", *extra)
        assert res.code == 1
        assert res.err.startswith("avmix: error: 2 of 3 jobs failed: gone.mp4 (line 2): ")
        assert res.err.endswith("missing.wav: no such file\n") and len(res.err.splitlines()) == 1
        assert (out / "ok.mp4").exists()


# --------------------------------------------------------------- engine logic with a fake generate


def test_failures_resume_and_changes_with_fake_generate(tmp_path, jobs_dir):
    jobs = write_jsonl(jobs_dir / "j.jsonl", [
        {"inputs": ["audio/tone.wav"], "output": "a.mp4", "size": "160x90"},
        {"inputs": ["audio/clicks.wav"], "output": "b/b.mp4", "at": 0.5},
        {"inputs": ["audio/missing.wav"], "output": "c.mp4"},
        {"inputs": ["audio/tone.wav"], "output": "../d.mp4"},
    ])
    out = tmp_path / "out"
    s = batch(jobs, out, workers=2, generate=fake_generate)
    assert [r["status"] for r in s["jobs"]] == ["ok", "ok", "failed", "failed"]
    assert (s["ok"], s["failed"], s["skipped"]) == (2, 2, 0)
    assert "missing.wav: no such file" in s["jobs"][2]["error"]
    assert json.loads((out / "b" / "b.mp4").read_text())["at"] == 0.5
    assert json.loads((out / "batch.json").read_text())["jobs"][2]["error"] == s["jobs"][2]["error"]
    assert not (tmp_path / "d.mp4").exists()

    # Resume: the finished jobs are skipped, the failed one is tried again.
    s = batch(jobs, out, workers=2, generate=fake_generate)
    assert [r["status"] for r in s["jobs"]] == ["skipped", "skipped", "failed", "failed"]

    # A changed input content or option reruns only that job; an edited output reruns too.
    write_wav(jobs_dir / "audio" / "tone.wav", sine(331, 1.5, sr=SR), SR)
    lines = jobs.read_text().splitlines()
    lines[1] = json.dumps({"inputs": ["audio/clicks.wav"], "output": "b/b.mp4", "at": 0.25})
    jobs.write_text("\n".join(lines) + "\n")
    s = batch(jobs, out, workers=1, generate=fake_generate)
    assert [r["status"] for r in s["jobs"]][:2] == ["ok", "ok"]
    # An output edited since batch wrote it is the user's now: kept unless forced.
    (out / "a.mp4").write_text("tampered")
    with pytest.raises(OutputError, match="a.mp4: was changed since avmix batch wrote it"):
        batch(jobs, out, workers=1, generate=fake_generate)
    assert (out / "a.mp4").read_text() == "tampered"
    s = batch(jobs, out, workers=1, generate=fake_generate, force=True)
    assert [r["status"] for r in s["jobs"]][:2] == ["ok", "ok"]
    assert (out / "a.mp4").read_text() != "tampered"


def test_bad_engine_options(tmp_path, jobs_dir):
    jobs = write_jsonl(jobs_dir / "j.jsonl", [{"inputs": ["audio/tone.wav"], "output": "a.mp4"}])
    with pytest.raises(UsageError, match="unknown engine"):
        batch(jobs, tmp_path / "o", engine="spark")
    with pytest.raises(UsageError, match="only for --engine ray"):
        batch(jobs, tmp_path / "o", address="127.0.0.1:6379")
    with pytest.raises(InputError):
        batch(jobs_dir / "none.jsonl", tmp_path / "o")


# ------------------------------------------------------------------------- the real pipeline


def _check_real_run(res, out: Path) -> dict:
    assert res.code == 1, res.err  # one job failed
    summary = json.loads((out / "batch.json").read_text())
    status = {r["output"]: r for r in summary["jobs"]}
    assert [status[n]["status"] for n in ("mix.mp4", "sub/concat.mp4", "overlay.mp4", "broken.mp4")] == \
        ["ok", "ok", "ok", "failed"]
    assert "missing.wav" in status["broken.mp4"]["error"]
    from avmix import ffmpeg

    for name, seconds in (("mix.mp4", 1.5), ("sub/concat.mp4", 2.5), ("overlay.mp4", 2.0)):  # overlay at 0.5 s runs past the base
        info = ffmpeg.probe(out / name)
        assert (info.video.width, info.video.height) == (160, 90)
        assert info.video.fps == pytest.approx(10)
        assert info.audio is not None
        assert info.duration == pytest.approx(seconds, abs=0.15)
        assert status[name]["timings"]
    assert not (out / "broken.mp4").exists()
    return summary


def test_local_engine_real_jobs_and_resume(tmp_path, jobs_dir, run_cli):
    jobs = three_jobs_and_a_broken_one(jobs_dir)
    out = tmp_path / "out"
    res = run_cli("batch", jobs, "-o", out, "--workers", "2", "--json")
    summary = _check_real_run(res, out)
    assert json.loads(res.out)["ok"] == 3
    assert summary["engine"] == "local"
    mtime = (out / "mix.mp4").stat().st_mtime_ns

    res = run_cli("batch", jobs, "-o", out, "--workers", "2")
    assert res.code == 1
    assert res.err.startswith("avmix: error: 1 of 4 jobs failed: broken.mp4 (line 4): ")
    assert "missing.wav: no such file" in res.err and len(res.err.strip().splitlines()) == 1
    summary = json.loads((out / "batch.json").read_text())
    assert [r["status"] for r in summary["jobs"]] == ["skipped", "skipped", "skipped", "failed"]
    assert (out / "mix.mp4").stat().st_mtime_ns == mtime
    assert "3 skipped, 1 failed" in res.out


@pytest.fixture
def no_ray_left():
    ray = pytest.importorskip("ray")
    yield
    if ray.is_initialized():
        ray.shutdown()


def test_ray_engine_real_jobs(tmp_path, jobs_dir, run_cli, no_ray_left):
    """Ray started locally by batch with 2 CPUs (and shut down again)."""
    import ray

    jobs = three_jobs_and_a_broken_one(jobs_dir)
    out = tmp_path / "out"
    res = run_cli("batch", jobs, "-o", out, "--engine", "ray", "--workers", "2")
    summary = _check_real_run(res, out)
    assert summary["engine"] == "ray"
    assert not ray.is_initialized()


def test_sigterm_stops_jobs_cleanly(tmp_path, jobs_dir):
    """SIGTERM to a running batch: jobs stopped, no partial output, batch.json written, no process left."""
    import signal
    import subprocess
    import sys
    import time

    write_wav(jobs_dir / "audio" / "long.wav", sine(220, 20.0, sr=SR), SR)
    jobs = write_jsonl(jobs_dir / "long.jsonl", [
        {"inputs": ["audio/long.wav"], "output": f"long{i}.mp4", "backend": "procedural", "seed": i}
        for i in range(3)])
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "avmix", "batch", str(jobs), "-o", str(out), "-q",
                             "--workers", "2"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(p.name.startswith(".long") for p in out.glob(".*")):
            time.sleep(0.1)  # until a job has started writing
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err  # SIGTERM
    summary = json.loads((out / "batch.json").read_text())
    assert {r["status"] for r in summary["jobs"]} <= {"failed", "ok"}
    assert any(r["error"] == "interrupted" for r in summary["jobs"]), summary["jobs"]
    for r in summary["jobs"]:
        assert (out / r["output"]).exists() == (r["status"] == "ok"), r
    assert not [p for p in out.rglob("*") if ".part" in p.name], list(out.rglob("*"))
    deadline = time.monotonic() + 10  # the workers and their ffmpeg exit; zombies are init's to reap
    while True:
        left = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-s", str(proc.pid)], capture_output=True,
                              text=True).stdout
        alive = [ln for ln in left.splitlines() if ln.strip() and not ln.split()[1].startswith("Z")]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not alive, alive


def test_ray_missing_says_what_to_install(tmp_path, jobs_dir, monkeypatch):
    import sys

    from avmix.errors import AvmixError

    monkeypatch.setitem(sys.modules, "ray", None)
    jobs = write_jsonl(jobs_dir / "j.jsonl", [{"inputs": ["audio/tone.wav"], "output": "a.mp4"}])
    with pytest.raises(AvmixError, match="needs Ray") as e:
        batch(jobs, tmp_path / "out", engine="ray", generate=fake_generate)
    assert e.value.hint == "pip install 'avmix[ray]'"
