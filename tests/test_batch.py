"""`python -m joyvasa batch`: jobs files read with the CLI's parser, job hashes, and the local engine end to end
(2 workers on stand-in weights: outputs, resuming, one bad row failing alone, a killed worker's job retried)."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from joyvasa.batch import load_jobs, run_local
from joyvasa.batch.jobs import parse_job
from joyvasa.weights import renderer_files

REPO = Path(__file__).resolve().parents[1]
MOTION_FILES = ["JoyVASA/motion_generator/motion_generator_hubert_chinese.pt",
                "JoyVASA/motion_template/motion_template.pkl"]
FIELDS = ["image", "audio", "out", "seed", "crop", "box", "stitching", "cfg_scale"]


def _wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    samples = (0.2 * np.sin(np.arange(int(seconds * rate)) * 0.05) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(rate)
        f.writeframes(samples.tobytes())
    return path


def _frames(seconds: float, rate: int = 16000) -> int:
    """Frames of a clip from `seconds` of speech (JoyVASA's 2 lead frames included, as test_cli counts them)."""
    return (int(seconds * rate) + 1920) // 640


def _jobs_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted({k for row in rows for k in row}, key=_column_order))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _column_order(name: str):
    return (FIELDS.index(name) if name in FIELDS else len(FIELDS), name)


@pytest.fixture()
def folder(tmp_path):
    """A jobs folder with a small picture and a speech clip (no models needed)."""
    cv2.imwrite(str(tmp_path / "face.png"), np.full((64, 64, 3), 128, np.uint8))
    _wav(tmp_path / "hello.wav", 0.05)
    return tmp_path


def test_rows_become_cli_options(folder):
    """A row's columns are animate's options (dashes or underscores), several values by spaces, on/off as words;
    inputs resolve against the jobs file's folder and outputs land inside the output folder."""
    jobs_file = _jobs_csv(folder / "jobs.csv", [
        {"image": "face.png", "audio": "hello.wav", "out": "a/talk.mp4", "seed": "7", "crop": "box",
         "box": "1 2 30 40", "stitching": "false", "cfg_scale": "1.5"}])
    (job,) = load_jobs(jobs_file, folder / "out")
    assert job.error is None
    args = parse_job(job)
    assert (args.image, args.audio, args.out) == (folder / "face.png", folder / "hello.wav",
                                                  folder / "out" / "a" / "talk.mp4")
    assert (args.seed, args.crop, args.box, args.stitching, args.cfg_scale) == (7, "box", [1, 2, 30, 40], False, 1.5)
    assert job.name == "a/talk.mp4" and job.seed == 7


def test_json_lines_rows(folder):
    """JSON Lines rows take lists, booleans and numbers; a null leaves the default."""
    (folder / "jobs.jsonl").write_text(
        json.dumps({"image": "face.png", "audio": "hello.wav", "out": "t.mp4", "head-gain": [0, 0.5, 1],
                    "close_silences": True, "precision": "fp32", "seed": None}) + "\n")
    (job,) = load_jobs(folder / "jobs.jsonl", folder / "out")
    args = parse_job(job)
    assert (args.head_gain, args.close_silences, args.precision, args.seed) == ([0, 0.5, 1], True, "fp32", 0)


def test_bad_rows_fail_alone_with_their_reason(folder):
    """Every row is checked up front; each bad one carries a reason that names the problem, the good one none."""
    good = {"image": "face.png", "audio": "hello.wav"}
    jobs = load_jobs(_jobs_csv(folder / "jobs.csv", [
        {**good, "out": "ok.mp4"},
        {**good, "out": "missing.mp4", "image": "nope.png"},
        {**good, "out": "choice.mp4", "crop": "sideways"},
        {**good, "out": "number.mp4", "cfg_scale": "lots"},
        {**good, "out": "range.mp4", "smoothing": "-1"},
        {**good, "out": "ok.mp4"},
        {**good, "out": "../escape.mp4"},
        {**good, "out": "column.mp4", "colour": "red"},
    ]), folder / "out")
    errors = [job.error for job in jobs]
    assert errors[0] is None
    expected = ["image file not found", "sideways", "lots", "smoothing", "output of row 1", "inside the output",
                "unknown column 'colour'"]
    for error, words in zip(errors[1:], expected):
        assert error is not None and words in error, (words, error)


def test_job_hash_follows_options_and_contents_not_row_order(folder):
    """The hash changes with an option or an input's bytes, not with the row's position or the output's name."""
    rows = [{"image": "face.png", "audio": "hello.wav", "out": "a.mp4", "seed": "1"},
            {"image": "face.png", "audio": "hello.wav", "out": "b.mp4", "seed": "2"}]
    first = load_jobs(_jobs_csv(folder / "jobs.csv", rows), folder / "out")
    reordered = load_jobs(_jobs_csv(folder / "jobs2.csv", rows[::-1]), folder / "out")
    assert first[0].hash != first[1].hash
    assert {j.name: j.hash for j in first} == {j.name: j.hash for j in reordered}
    renamed = load_jobs(_jobs_csv(folder / "jobs3.csv", [{**rows[0], "out": "c.mp4"}]), folder / "out")
    assert renamed[0].hash == first[0].hash
    _wav(folder / "hello.wav", 0.06)
    assert load_jobs(folder / "jobs.csv", folder / "out")[0].hash != first[0].hash


def test_batch_command_reports_a_bad_jobs_file(folder, capsys):
    """A jobs file that cannot be read is one `error:` line and exit code 1, before any worker starts."""
    from joyvasa import cli

    (folder / "jobs.txt").write_text("image,audio,out\n")
    for jobs, words in ((folder / "nope.csv", "jobs file not found"), (folder / "jobs.txt", "must be .csv or .jsonl")):
        assert cli.main(["batch", str(jobs), "--out", str(folder / "out")]) == 1
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
    assert not (folder / "out").exists()


# --------------------------------------------------------------------------- end to end on stand-in weights

def _run(*args, root: Path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "JOYVASA_WEIGHTS_DIR": str(root)}
    return subprocess.run([sys.executable, "-m", "joyvasa", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=600)


def _summary(out: Path) -> dict[str, dict]:
    with open(out / "batch_summary.csv", newline="") as f:
        return {row["out"]: row for row in csv.DictReader(f)}


def _no_partials(folder: Path) -> None:
    leftovers = [p for p in folder.rglob("*") if p.name.startswith(".") or ".partial" in p.name]
    assert leftovers == []


def _motion_file(path: Path, frames: int) -> Path:
    """A head turning a little, `frames` long (rendering it needs no motion generator: cheap rows)."""
    import torch

    from joyvasa.direct.motion_file import write_motion_file
    from joyvasa.motion.decode import MotionSequence
    from joyvasa.renderer.keypoints import rotation_matrix

    yaw = torch.linspace(0, 10, frames)[:, None]
    zero = torch.zeros(frames, 1)
    motion = MotionSequence(None, torch.zeros(frames, 21, 3), torch.ones(frames, 1), torch.zeros(frames, 3), zero,
                            yaw, zero.clone(), rotation_matrix(zero, yaw, zero))
    write_motion_file(path, motion, fps=25)
    return path


@pytest.fixture(scope="module")
def scene(kit, standin_weights, tmp_path_factory):
    """Stand-in weights and face detector (test_cli's picture and face), a portrait, speech and motion files.
    One row samples motion from speech; the others render motion files (seconds instead of a minute each)."""
    from joyvasa.testing import onnx_standins

    tmp = tmp_path_factory.mktemp("batch")
    image_hw = (360, 400)
    face = onnx_standins.StandinFace(box=(140.0, 90.0, 260.0, 230.0))
    root = standin_weights([*renderer_files("human").values(), *MOTION_FILES])
    onnx_standins.build_weights(root, [face], image_hw)
    cv2.imwrite(str(tmp / "portrait.png"), cv2.cvtColor(onnx_standins.warm_image(image_hw, [face]),
                                                        cv2.COLOR_RGB2BGR))
    _wav(tmp / "short.wav", 0.05)
    _motion_file(tmp / "two.safetensors", 2)
    _motion_file(tmp / "three.safetensors", 3)
    rows = [
        {"image": "portrait.png", "audio": "short.wav", "out": "a.mp4", "seed": "1"},
        {"image": "portrait.png", "motion": "two.safetensors", "out": "b.mp4", "crop": "box",
         "box": "140 90 260 230"},
        {"image": "missing.png", "audio": "short.wav", "out": "bad_image.mp4"},
        {"image": "portrait.png", "motion": "three.safetensors", "out": "c/c.mp4"},
        {"image": "portrait.png", "audio": "short.wav", "out": "bad_option.mp4", "cfg_scale": "nan"},
    ]
    return root, tmp, rows


@pytest.fixture(scope="module")
def first_run(scene):
    root, tmp, rows = scene
    out = tmp / "out"
    result = _run("batch", _jobs_csv(tmp / "jobs.csv", rows), "--out", out, "--workers", 2, "--no-download",
                  root=root)
    return result, out


@pytest.mark.slow
def test_batch_renders_every_good_row(scene, first_run):
    """2 workers: each good row's video has its own speech's frame count and a sidecar with its hash and seed; the
    bad rows fail alone with their reason; exit code 1; no temporary file is left."""
    _, tmp, rows = scene
    result, out = first_run
    assert result.returncode == 1, result.stderr[-3000:]
    summary = _summary(out)
    assert {name: row["status"] for name, row in summary.items()} == {
        "a.mp4": "done", "b.mp4": "done", "c/c.mp4": "done", "bad_image.mp4": "failed", "bad_option.mp4": "failed"}
    assert "image file not found" in summary["bad_image.mp4"]["error"]
    assert "cfg" in summary["bad_option.mp4"]["error"]
    jobs = {job.name: job for job in load_jobs(tmp / "jobs.csv", out)}
    for name, frames in (("a.mp4", _frames(0.05)), ("b.mp4", 2), ("c/c.mp4", 3)):
        with av.open(str(out / name)) as container:
            assert container.streams.video[0].frames == frames
        side = json.loads((out / (name + ".json")).read_text())
        assert side["job_hash"] == jobs[name].hash and side["seed"] == jobs[name].seed
        assert side["frames"] == frames and "torch" in side["versions"]
        assert int(summary[name]["frames"]) == frames
    assert {row["worker"] for name, row in summary.items() if row["status"] == "done"} == {"w1", "w2"}
    assert "3 done, 0 skipped, 2 failed" in result.stdout
    _no_partials(out)


@pytest.mark.slow
def test_batch_resumes_in_any_order_and_reruns_only_a_changed_row(scene, first_run):
    """The same rows in reverse order are all up to date; a changed option reruns exactly that row."""
    root, tmp, rows = scene
    _, out = first_run
    before = {name: (out / name).stat().st_mtime_ns for name in ("a.mp4", "b.mp4", "c/c.mp4")}
    result = _run("batch", _jobs_csv(tmp / "reversed.csv", rows[::-1]), "--out", out, "--workers", 2,
                  "--no-download", root=root)
    assert result.returncode == 1, result.stderr[-3000:]  # the two bad rows still fail
    assert {n: r["status"] for n, r in _summary(out).items() if n in before} == dict.fromkeys(before, "skipped")
    changed = [dict(row, driving_multiplier="0.5") if row["out"] == "c/c.mp4" else row
               for row in rows if "bad" not in row["out"]]
    result = _run("batch", _jobs_csv(tmp / "changed.csv", changed), "--out", out, "--workers", 2, "--no-download",
                  root=root)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = _summary(out)
    assert {n: r["status"] for n, r in summary.items()} == {"a.mp4": "skipped", "b.mp4": "skipped",
                                                            "c/c.mp4": "done"}
    assert "0.5" in json.loads((out / "c/c.mp4.json").read_text())["argv"]
    assert {n: (out / n).stat().st_mtime_ns == t for n, t in before.items()} == {
        "a.mp4": True, "b.mp4": True, "c/c.mp4": False}
    _no_partials(out)


@pytest.mark.slow
def test_a_killed_worker_job_is_retried(scene, monkeypatch):
    """A worker killed in the middle of a job: the job runs again on a new worker and completes, once, whole."""
    root, tmp, rows = scene
    monkeypatch.setenv("JOYVASA_WEIGHTS_DIR", str(root))
    out = tmp / "killed"
    (job,) = load_jobs(_jobs_csv(tmp / "one.csv", rows[3:4]), out, ["--no-download"])
    killed = []

    def kill_when_writing(pid):  # the video's temporary file exists: frames are being rendered and encoded
        for _ in range(1200):
            if any(out.glob("c/.c.*.partial.mp4")):
                break
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)

    def kill_once(started, pid):
        if not killed:
            killed.append(pid)
            threading.Thread(target=kill_when_writing, args=(pid,), daemon=True).start()

    (result,) = run_local([job], workers=1, on_start=kill_once)
    assert (result.status, result.attempts, result.frames) == ("done", 2, 3), result.error
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["c", "c/c.mp4", "c/c.mp4.json"]
