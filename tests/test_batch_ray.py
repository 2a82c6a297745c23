"""`python -m joyvasa batch --engine ray`: a real Ray on this machine (started by the engine for each batch and
stopped after it), 2 worker actors on stand-in weights: the same frames as the local engine, resuming, a bad row
failing alone, a worker killed in the middle of a job, and the flags checked before any work."""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from joyvasa import cli
from joyvasa.batch import load_jobs, run_local
from joyvasa.batch.ray_engine import INSTALL_HINT
from joyvasa.weights import renderer_files
from tests.test_batch import _jobs_csv, _motion_file, _no_partials, _run, _summary

# not imported here: the engine imports Ray itself, after setting what a local Ray needs (the loopback address)
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="the Ray engine's tests need Ray (requirements-dev.txt installs it)")

RUN_SECONDS = 240  # bound on one in-process batch; the CLI runs are bounded by _run's timeout


def _decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


@pytest.fixture(scope="module")
def scene(kit, standin_weights, tmp_path_factory):
    """Stand-in renderer and face detector, a portrait, short motion files (each row renders in seconds), a
    motion file that is not one (it fails inside a worker, not when the rows are read)."""
    from joyvasa.testing import onnx_standins

    tmp = tmp_path_factory.mktemp("batch_ray")
    image_hw = (360, 400)
    face = onnx_standins.StandinFace(box=(140.0, 90.0, 260.0, 230.0))
    root = standin_weights(list(renderer_files("human").values()))
    onnx_standins.build_weights(root, [face], image_hw)
    cv2.imwrite(str(tmp / "portrait.png"), cv2.cvtColor(onnx_standins.warm_image(image_hw, [face]),
                                                        cv2.COLOR_RGB2BGR))
    _motion_file(tmp / "one.safetensors", 1)
    _motion_file(tmp / "two.safetensors", 2)
    (tmp / "broken.safetensors").write_bytes(b"not a motion file")
    rows = [
        {"image": "portrait.png", "motion": "one.safetensors", "out": "a.mp4"},
        {"image": "portrait.png", "motion": "one.safetensors", "out": "b.mp4", "crop": "box",
         "box": "140 90 260 230"},
        {"image": "missing.png", "motion": "one.safetensors", "out": "bad_image.mp4"},
        {"image": "portrait.png", "motion": "two.safetensors", "out": "c/c.mp4", "stitching": "false"},
        {"image": "portrait.png", "motion": "broken.safetensors", "out": "broken.mp4"},
    ]
    return root, tmp, rows


def _good(rows):
    return [row for row in rows if "bad" not in row["out"] and "broken" not in row["out"]]


@pytest.fixture(scope="module")
def local_frames(scene):
    """The local engine's frames for every good row (1 thread per worker, as the Ray workers have)."""
    root, tmp, rows = scene
    out = tmp / "local"
    jobs = load_jobs(_jobs_csv(tmp / "local.csv", _good(rows)), out, ["--weights-dir", str(root), "--no-download"])
    results = run_local(jobs, workers=2, threads=1)
    assert [r.status for r in results] == ["done"] * len(jobs), [r.error for r in results]
    return {job.name: _decoded(job.out) for job in jobs}


@pytest.fixture(scope="module")
def ray_run(scene):
    root, tmp, rows = scene
    out = tmp / "out"
    result = _run("batch", _jobs_csv(tmp / "jobs.csv", rows), "--out", out, "--engine", "ray", "--workers", 2,
                  "--no-download", root=root)
    return result, out


@pytest.fixture()
def ray_stopped():
    """Whatever a test leaves of an in-process Ray is shut down, even when it fails."""
    yield
    if sys.modules.get("ray") is not None:
        sys.modules["ray"].shutdown()


@needs_ray
@pytest.mark.slow
def test_ray_renders_every_good_row_as_the_local_engine(scene, ray_run, local_frames):
    """2 Ray workers: every good row's frames equal the local engine's, each with a sidecar of its hash; both
    workers took jobs; the row with a missing image and the one whose motion file is broken fail alone with
    their reasons; the progress lines count the jobs; exit code 1; no temporary file left."""
    _, tmp, rows = scene
    result, out = ray_run
    assert result.returncode == 1, result.stderr[-3000:]
    summary = _summary(out)
    assert {name: row["status"] for name, row in summary.items()} == {
        "a.mp4": "done", "b.mp4": "done", "c/c.mp4": "done", "bad_image.mp4": "failed", "broken.mp4": "failed"}
    assert "image file not found" in summary["bad_image.mp4"]["error"]
    assert "broken.safetensors" in summary["broken.mp4"]["error"]
    assert summary["broken.mp4"]["worker"] in ("w1", "w2")  # it failed in a worker, not when read
    jobs = {job.name: job for job in load_jobs(tmp / "jobs.csv", out)}
    for name, frames in local_frames.items():
        assert np.array_equal(_decoded(out / name), frames), name
        side = json.loads((out / (name + ".json")).read_text())
        assert side["job_hash"] == jobs[name].hash and side["frames"] == len(frames)
    assert {row["worker"] for row in summary.values() if row["status"] == "done"} == {"w1", "w2"}
    assert "3 done, 0 skipped, 2 failed" in result.stdout
    assert "[4/4 jobs, 1 failed, all in" in result.stderr  # the progress line of the last job run
    _no_partials(out)


@needs_ray
@pytest.mark.slow
def test_ray_resumes_in_any_order_and_reruns_only_a_changed_row(scene, ray_run):
    """The same rows reversed are all up to date (no Ray is even started); a changed option reruns that row."""
    root, tmp, rows = scene
    _, out = ray_run
    good = _good(rows)
    before = {row["out"]: (out / row["out"]).stat().st_mtime_ns for row in good}
    result = _run("batch", _jobs_csv(tmp / "reversed.csv", good[::-1]), "--out", out, "--engine", "ray",
                  "--no-download", root=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {n: r["status"] for n, r in _summary(out).items()} == dict.fromkeys(before, "skipped")
    changed = [dict(row, driving_multiplier="0.5") if row["out"] == "a.mp4" else row for row in good]
    result = _run("batch", _jobs_csv(tmp / "changed.csv", changed), "--out", out, "--engine", "ray", "--workers", 2,
                  "--no-download", root=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {n: r["status"] for n, r in _summary(out).items()} == {"a.mp4": "done", "b.mp4": "skipped",
                                                                  "c/c.mp4": "skipped"}
    assert "0.5" in json.loads((out / "a.mp4.json").read_text())["argv"]
    assert {n: (out / n).stat().st_mtime_ns == t for n, t in before.items()} == {
        "a.mp4": False, "b.mp4": True, "c/c.mp4": True}
    _no_partials(out)


def _kill_first_when_writing(out: Path, killed: list):
    """on_start that SIGKILLs the first worker once the job's video is being written (its temporary file is
    there: frames are being rendered and encoded)."""
    def kill_when_writing(pid):
        deadline = time.monotonic() + RUN_SECONDS
        while not any(out.rglob(".*.partial.mp4")) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def on_start(job, pid):
        if not killed:
            # the Ray the engine started listens on the loopback address only
            killed.append((job.name, pid, {node["NodeManagerAddress"] for node in sys.modules["ray"].nodes()}))
            threading.Thread(target=kill_when_writing, args=(pid,), daemon=True).start()

    return on_start


def _run_in_thread(batch):
    """batch() run with a bound on its time; its exception raised here."""
    results, errors = [], []

    def run():
        try:
            results.extend(batch())
        except BaseException as err:
            errors.append(err)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(RUN_SECONDS)
    assert not runner.is_alive(), f"the batch did not finish in {RUN_SECONDS} s"
    if errors:
        raise errors[0]
    return results


@needs_ray
@pytest.mark.slow
def test_a_killed_ray_worker_job_is_retried(scene, local_frames, ray_stopped):
    """A worker actor SIGKILLed while it writes a job's video: Ray restarts it and runs the job again, which
    completes once, whole, with the local engine's frames; no temporary file is left."""
    from joyvasa.batch.ray_engine import run_ray

    root, tmp, rows = scene
    out = tmp / "killed"
    (job,) = load_jobs(_jobs_csv(tmp / "one.csv", [r for r in rows if r["out"] == "c/c.mp4"]), out,
                       ["--weights-dir", str(root), "--no-download"])
    killed = []
    (result,) = _run_in_thread(lambda: run_ray([job], workers=1, on_start=_kill_first_when_writing(out, killed)))
    assert killed and (result.status, result.attempts, result.frames) == ("done", 2, 2), result.error
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["c", "c/c.mp4", "c/c.mp4.json"]
    assert np.array_equal(_decoded(out / "c/c.mp4"), local_frames["c/c.mp4"])


@needs_ray
@pytest.mark.slow
def test_a_job_that_kills_its_worker_fails_alone(scene, ray_stopped):
    """With no retries, the job whose worker was killed fails with the reason and leaves nothing; the job that
    waited behind it on the same worker is not charged: it runs on a fresh worker and completes."""
    from joyvasa.batch.ray_engine import run_ray

    root, tmp, rows = scene
    out = tmp / "no_retries"
    jobs = load_jobs(_jobs_csv(tmp / "two.csv", [r for r in rows if r["out"] in ("c/c.mp4", "a.mp4")][::-1]), out,
                     ["--weights-dir", str(root), "--no-download"])
    assert [job.name for job in jobs] == ["c/c.mp4", "a.mp4"]
    killed = []
    results = _run_in_thread(lambda: run_ray(jobs, workers=1, retries=0, max_in_flight=2,
                                             on_start=_kill_first_when_writing(out, killed)))
    by_name = {r.name: r for r in results}
    assert killed[0][0] == "c/c.mp4" and killed[0][2] == {"127.0.0.1"}
    assert (by_name["c/c.mp4"].status, by_name["c/c.mp4"].attempts, by_name["c/c.mp4"].worker) == ("failed", 1, "w1")
    assert "worker died during this job" in by_name["c/c.mp4"].error
    assert (by_name["a.mp4"].status, by_name["a.mp4"].attempts, by_name["a.mp4"].worker) == ("done", 1, "w2")
    # the killed attempt's temporary files are gone (its folder stays: another job could be writing there)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["a.mp4", "a.mp4.json", "c"]


# --------------------------------------------------------------------------- checked before any work

def _batch_error(folder: Path, capsys, *flags) -> str:
    (folder / "jobs.csv").write_text("image,audio,out\nface.png,hello.wav,t.mp4\n")
    assert cli.main(["batch", str(folder / "jobs.csv"), "--out", str(folder / "out"), *flags]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and not (folder / "out").exists()
    return err


@pytest.mark.parametrize("flags, words", [
    (["--engine", "ray", "--gpus-per-worker", "-1"], "--gpus-per-worker must be a number of 0 or more"),
    (["--engine", "ray", "--cpus-per-worker", "nan"], "--cpus-per-worker must be a number of 0 or more"),
    (["--engine", "ray", "--max-in-flight", "0"], "--max-in-flight must be at least 1"),
    (["--engine", "ray", "--address", "nowhere"], "is not a Ray address"),
    (["--engine", "ray", "--threads-per-worker", "2"], "follow --cpus-per-worker"),
    (["--address", "auto", "--gpus-per-worker", "1"], "--address, --gpus-per-worker only apply to --engine ray"),
])
def test_ray_flags_are_checked_before_any_work(tmp_path, capsys, flags, words):
    assert words in _batch_error(tmp_path, capsys, *flags)


def test_engine_ray_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where Ray is not installed
    err = _batch_error(tmp_path, capsys, "--engine", "ray")
    assert INSTALL_HINT in err and 'pip install "joyvasa-nodes[ray]"' in err


def _closed_port() -> int:
    with socket.socket() as probe:  # a loopback port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@needs_ray
@pytest.mark.parametrize("address", ["auto", "127.0.0.1:{port}", "ray://127.0.0.1:{port}"])
def test_an_unreachable_cluster_is_one_clear_error(tmp_path, capsys, monkeypatch, ray_stopped, address):
    """No cluster where --address points: one paragraph saying what to check, in seconds, nothing written."""
    address = address.format(port=_closed_port())
    cv2.imwrite(str(tmp_path / "face.png"), np.full((64, 64, 3), 128, np.uint8))
    _motion_file(tmp_path / "m.safetensors", 1)
    with open(tmp_path / "jobs.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image", "motion", "out"], ["face.png", "m.safetensors", "t.mp4"]])
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("joyvasa.batch.command._fetch_weights", lambda jobs, args: None)  # no weights needed
    start = time.monotonic()
    code = cli.main(["batch", str(tmp_path / "jobs.csv"), "--out", str(tmp_path / "out"), "--engine", "ray",
                     "--address", address])
    err = capsys.readouterr().err
    assert code == 1 and f"cannot reach the Ray cluster at --address {address}" in err and "ray status" in err, err
    assert "Traceback" not in err and time.monotonic() - start < 30
    assert not list((tmp_path / "out").rglob("*"))
