"""Dub rows in jobs files: a row with a `video` column is a `python -m joyvasa dub` job, parsed by the CLI's `dub`
parser, checked and hashed up front, run by the same workers and model cache as the `animate` rows.

Parsing and hashing need no model; one test runs an animate and a dub row in-process on tiny models (the cache
shared between them), one runs a mixed jobs file on the local engine with full-size stand-in weights."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import cv2
import pytest

from joyvasa.batch import ModelCache, is_done, load_jobs, run_job, run_local
from joyvasa.batch.jobs import NOT_HASHED, file_digest, parse_job, weight_files
from joyvasa.testing.videos import face_frame, standin_face_weights, write_face_video
from tests.test_batch import _jobs_csv, _motion_file, _wav

HW = (128, 256)  # even sides (H.264); the face on the left half
BOX = (52.0, 36.0, 104.0, 100.0)
VIDEO_FPS = 25  # the motion's rate: one motion frame, one output frame


def _video(path: Path, frames: int) -> Path:
    return write_face_video(path, frames, VIDEO_FPS, HW, lambda i: BOX)


def _portrait(path: Path) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(face_frame(HW, BOX), cv2.COLOR_RGB2BGR))
    return path


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.fixture()
def folder(tmp_path):
    """A jobs folder with a portrait, a short face video, speech and a motion file (no models needed)."""
    _portrait(tmp_path / "face.png")
    _video(tmp_path / "talk.mp4", 3)
    _wav(tmp_path / "hello.wav", 0.05)
    _motion_file(tmp_path / "four.safetensors", 4)
    return tmp_path


ANIMATE = {"image": "face.png", "audio": "hello.wav", "out": "portrait.mp4", "seed": "3"}
DUB = {"video": "talk.mp4", "audio": "hello.wav", "out": "dub/talk.mp4", "regions": "expression",
       "audio-longer": "loop", "video_longer": "keep", "crop-scale": "2.5", "seed": "5"}


def test_a_video_row_is_a_dub_job_parsed_by_dubs_parser(folder):
    """In one file, an image row is an animate job and a video row a dub job; a dub row's columns are dub's
    options, its inputs resolve against the jobs file's folder and its output lands inside the output folder."""
    animate, dub = load_jobs(_jobs_csv(folder / "jobs.csv", [ANIMATE, DUB]), folder / "out")
    assert (animate.error, dub.error) == (None, None)
    assert (animate.command, dub.command) == ("animate", "dub")
    args = parse_job(dub)
    assert (args.video, args.audio, args.out) == (folder / "talk.mp4", folder / "hello.wav",
                                                  folder / "out" / "dub" / "talk.mp4")
    assert (args.regions, args.audio_longer, args.video_longer, args.crop_scale, args.seed) == (
        "expression", "loop", "keep", 2.5, 5)
    assert not hasattr(args, "image") and dub.name == "dub/talk.mp4" and dub.seed == 5
    assert parse_job(animate).image == folder / "face.png"


def test_dub_rows_take_json_lines_and_leave_defaults(folder):
    from joyvasa.pipeline.dub import DubOptions

    (folder / "jobs.jsonl").write_text(json.dumps({"video": "talk.mp4", "motion": "four.safetensors",
                                                   "out": "d.mp4", "crop_smoothing": 0, "regions": None}) + "\n")
    (job,) = load_jobs(folder / "jobs.jsonl", folder / "out")
    args = parse_job(job)
    assert (job.command, args.audio, args.motion, args.crop_smoothing) == ("dub", None,
                                                                          folder / "four.safetensors", 0.0)
    assert (args.regions, args.audio_longer, args.crop_scale) == (DubOptions.regions, DubOptions.audio_longer,
                                                                  DubOptions.crop_scale)


def test_bad_dub_rows_fail_alone_with_their_reason(folder):
    """Each bad row carries a reason naming its problem, found before any model loads; the good rows none."""
    rows = [
        DUB,
        {**DUB, "out": "missing.mp4", "video": "nope.mp4"},
        {**DUB, "out": "both.mp4", "image": "face.png"},
        {"audio": "hello.wav", "out": "neither.mp4"},
        {**DUB, "out": "regions.mp4", "regions": "mouth"},
        {**DUB, "out": "smoothing.mp4", "crop_smoothing": "-1"},
        {**DUB, "out": "column.mp4", "crop": "box"},
        {"video": "talk.mp4", "out": "silent.mp4"},
        {**DUB, "out": "speech.mp4", "audio": "nope.wav"},
        {**DUB, "out": "clip.avi"},
        {**ANIMATE, "out": "dub/talk.mp4"},
        ANIMATE,
    ]
    jobs = load_jobs(_jobs_csv(folder / "jobs.csv", rows), folder / "out")
    assert [i for i, job in enumerate(jobs) if job.error is None] == [0, len(rows) - 1]
    expected = ["video file not found", "both image and video", "no image or video", "mouth", "crop_smoothing",
                "unknown column 'crop'", "give an audio", "audio file not found", "must end in .mp4",
                "output of row 1"]
    for job, words in zip(jobs[1:-1], expected):
        assert job.error is not None and words in job.error, (words, job.error)
    assert "python -m joyvasa dub" in jobs[6].error


def test_dub_hash_follows_the_video_and_every_option(folder):
    """Changing regions (or any option, or the video's bytes) changes a dub row's hash; its output's name and
    its position in the file do not; a dub row never hashes like an animate row."""
    def hashes(rows, name="jobs.csv"):
        return [job.hash for job in load_jobs(_jobs_csv(folder / name, rows), folder / "out")]

    (first,) = hashes([DUB])
    assert hashes([ANIMATE, {**DUB, "out": "other.mp4"}], "moved.csv")[1] == first
    for change in ({"regions": "all"}, {"audio-longer": "hold"}, {"video_longer": "trim"}, {"crop-scale": "2.4"},
                   {"seed": "6"}, {"crop_smoothing": "1.5"}, {"face-index": "1"}):
        assert hashes([{**DUB, **change}], "changed.csv")[0] != first, change
    _video(folder / "talk.mp4", 4)
    assert hashes([DUB])[0] != first


def test_an_animate_rows_hash_is_what_it_was_before_dub_rows(folder):
    """No new field enters an animate row's hash: it is the sha256 of exactly the version, the hash version and
    animate's options (inputs by their contents), as written before rows could be dubs, whatever else the jobs
    file holds."""
    from joyvasa import __version__

    (alone,) = load_jobs(_jobs_csv(folder / "alone.csv", [ANIMATE]), folder / "out")
    mixed = load_jobs(_jobs_csv(folder / "mixed.csv", [DUB, ANIMATE]), folder / "out")
    assert mixed[1].hash == alone.hash
    args, digests = parse_job(alone), {}
    options = {}
    for name, value in vars(args).items():
        if name in NOT_HASHED:
            continue
        if name in ("image", "audio", "motion", "head_track", "expression_image") and value is not None:
            value = {"sha256": file_digest(Path(value), digests)}
        options[name] = list(value) if isinstance(value, tuple) else value
    text = json.dumps({"joyvasa": __version__, "hash_version": 1, "options": options}, sort_keys=True, default=str)
    assert alone.hash == hashlib.sha256(text.encode()).hexdigest()


def test_weight_files_of_each_kind_of_row(folder):
    """A dub row needs the renderer and the face detector, and the motion generator only when it samples."""
    from joyvasa.pipeline import detector_files, portrait_files
    from joyvasa.weights import motion_files, renderer_files

    jobs = load_jobs(_jobs_csv(folder / "jobs.csv", [
        ANIMATE, DUB, {"video": "talk.mp4", "motion": "four.safetensors", "out": "m.mp4"}]), folder / "out")
    base = {*renderer_files("human").values(), *detector_files("human")}
    assert set(weight_files(jobs[0])) == set(portrait_files("human", "v1.0", "auto"))
    assert set(weight_files(jobs[1])) == base | set(motion_files())
    assert set(weight_files(jobs[2])) == base


# --------------------------------------------------------------------------- one worker's model cache

class CountingCache(ModelCache):
    """A worker's ModelCache that counts real loads and hands out tiny networks for the renderer and generator."""

    def __init__(self, tiny: dict):
        super().__init__()
        self.tiny, self.loads = tiny, []

    def __call__(self, key, load):
        def counted():
            self.loads.append(key[0])
            return self.tiny[key[0]] if key[0] in self.tiny else load()

        return super().__call__(key, counted)


def test_one_worker_renders_both_kinds_loading_each_model_once_and_resumes(folder):
    """An animate row then a dub row through `run_job` with one cache: the renderer, detector and generator are
    loaded once (the dub row's sidecar counts no loading time) and both outputs have their frame counts; then
    every row is up to date, and a changed `regions` makes exactly the dub row due again."""
    from joyvasa.testing.tiny import tiny_generator, tiny_renderer
    from joyvasa.weights import motion_files, renderer_files

    weights = standin_face_weights(folder / "weights", BOX, HW)
    for rel in [*renderer_files("human").values(), *motion_files()]:  # placeholders: the cache hands tiny nets
        (weights / rel).parent.mkdir(parents=True, exist_ok=True)
        (weights / rel).touch()
    out = folder / "out"
    defaults = ["--weights-dir", str(weights), "--no-download", "--device", "cpu"]
    rows = [ANIMATE, {**DUB, "video_longer": "trim", "audio-longer": "pingpong"}]
    jobs = load_jobs(_jobs_csv(folder / "jobs.csv", rows), out, defaults)
    cache = CountingCache({"renderer": tiny_renderer(), "generator": tiny_generator()})
    results = [run_job(job, cache, worker="w") for job in jobs]
    assert [r.status for r in results] == ["done", "done"], [r.error for r in results]
    assert sorted(cache.loads) == ["detector", "generator", "renderer"]
    speech_frames = (int(0.05 * 16000) + 1920) // 640  # JoyVASA's motion frames of the speech (25 fps)
    for job, result in zip(jobs, results):
        assert result.frames == _frames(job.out) == speech_frames
    loading = [_sidecar(job.out)["seconds"]["model_loading"] for job in jobs]
    assert loading[0] > 0 and loading[1] == 0

    reordered = load_jobs(_jobs_csv(folder / "reversed.csv", rows[::-1]), out, defaults)
    assert [is_done(job) for job in reordered] == [True, True]
    before = {job.name: job.out.stat().st_mtime_ns for job in jobs}
    changed = load_jobs(_jobs_csv(folder / "changed.csv", [rows[0], {**rows[1], "regions": "all"}]), out, defaults)
    due = [job for job in changed if not is_done(job)]
    assert [job.name for job in due] == ["dub/talk.mp4"]
    assert run_job(due[0], cache).status == "done" and sorted(cache.loads) == ["detector", "generator", "renderer"]
    assert "all" in _sidecar(due[0].out)["argv"] and all(is_done(job) for job in changed)
    assert {job.name: job.out.stat().st_mtime_ns == before[job.name] for job in jobs} == {
        "portrait.mp4": True, "dub/talk.mp4": False}


def _sidecar(out: Path) -> dict:
    return json.loads(out.with_name(out.name + ".json").read_text())


# --------------------------------------------------------------------------- the local engine, full-size stand-ins

@pytest.mark.slow
def test_local_engine_runs_a_mixed_jobs_file(kit, standin_weights, tmp_path):
    """One worker process with full-size stand-in networks: an animate row and a dub row both done (readable,
    right frame counts, the dub row reusing the animate row's renderer and detector), the bad dub rows failed
    alone when the file was read; no temporary file left."""
    from joyvasa.weights import renderer_files

    root = standin_weights([*renderer_files("human").values()])
    weights = standin_face_weights(tmp_path / "weights", BOX, HW)
    for rel in renderer_files("human").values():
        (weights / rel).parent.mkdir(parents=True, exist_ok=True)
        (weights / rel).symlink_to(root / rel)
    _portrait(tmp_path / "face.png")
    _video(tmp_path / "talk.mp4", 2)
    _motion_file(tmp_path / "one.safetensors", 1)
    _motion_file(tmp_path / "two.safetensors", 2)
    rows = [  # a frame or two each: a full-size frame takes seconds on the CPU
        {"image": "face.png", "motion": "one.safetensors", "out": "portrait.mp4"},
        {"video": "talk.mp4", "motion": "two.safetensors", "out": "dub/talk.mp4", "regions": "all"},
        {"video": "gone.mp4", "motion": "two.safetensors", "out": "gone.mp4"},
        {"video": "talk.mp4", "image": "face.png", "motion": "two.safetensors", "out": "both.mp4"},
    ]
    out = tmp_path / "out"
    jobs = load_jobs(_jobs_csv(tmp_path / "jobs.csv", rows), out,
                     ["--weights-dir", str(weights), "--no-download", "--device", "cpu"])
    assert "video file not found" in jobs[2].error and "both image and video" in jobs[3].error
    results = {r.name: r for r in run_local([job for job in jobs if job.error is None], workers=1)}
    assert {name: r.status for name, r in results.items()} == {"portrait.mp4": "done", "dub/talk.mp4": "done"}, \
        {name: r.error for name, r in results.items()}
    # a frame per motion frame (the video's rate is the motion's)
    for name, frames in (("portrait.mp4", 1), ("dub/talk.mp4", 2)):
        assert results[name].frames == _frames(out / name) == frames
        assert _sidecar(out / name)["job_hash"] == next(job.hash for job in jobs if job.name == name)
    assert _sidecar(out / "portrait.mp4")["seconds"]["model_loading"] > 0
    assert _sidecar(out / "dub/talk.mp4")["seconds"]["model_loading"] == 0
    assert all(is_done(job) for job in jobs if job.error is None)
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".") or ".partial" in p.name]
    assert leftovers == []
