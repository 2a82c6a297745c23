"""Running one job where the models live: a model cache, the CLI's `animate` or `dub`, the sidecar, the result.

Every engine calls `run_job` in a long-lived worker holding a `ModelCache`, so each model is loaded once per
(kind, species, precision, device, weights) in that worker, not once per clip; `animate` and `dub` ask for the
renderer, detector and motion generator under the same keys, so a worker shares them between both kinds of row.
"""
from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .jobs import Job, parse_job

log = logging.getLogger("joyvasa.batch")

SIDECAR_SUFFIX = ".json"  # talk.mp4 -> talk.mp4.json


@dataclass
class JobResult:
    """What happened to one row; `status` is done, skipped or failed (with `error`)."""

    row: int
    name: str
    status: str
    seconds: float = 0.0
    frames: int | None = None
    worker: str = ""
    error: str = ""
    attempts: int = 0


class ModelCache:
    """`cache(key, load)`: the model loaded under `key` before, else `load()` (kept); also times the loads."""

    def __init__(self):
        self.models: dict = {}
        self.load_seconds = 0.0

    def __call__(self, key, load):
        if key not in self.models:
            start = time.perf_counter()
            self.models[key] = load()
            self.load_seconds += time.perf_counter() - start
            log.debug("loaded %s in %.1f s", key[0], time.perf_counter() - start)
        return self.models[key]


def sidecar_path(out: Path) -> Path:
    return out.with_name(out.name + SIDECAR_SUFFIX)


def read_sidecar(out: Path) -> dict | None:
    """The sidecar of an output, or None when the output or its sidecar is missing or unreadable."""
    side = sidecar_path(out)
    if not (out.is_file() and side.is_file()):
        return None
    try:
        return json.loads(side.read_text())
    except (OSError, ValueError):
        return None


def is_done(job: Job) -> bool:
    """The output and its sidecar exist and the sidecar's hash is this job's: nothing to do."""
    side = read_sidecar(job.out) if job.out is not None else None
    return side is not None and side.get("job_hash") == job.hash


def versions() -> dict:
    import av
    import torch

    from .. import __version__

    return {"joyvasa": __version__, "torch": torch.__version__, "av": av.__version__,
            "python": platform.python_version()}


def video_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return container.streams.video[0].frames


def write_sidecar(job: Job, frames: int, seconds: dict) -> None:
    from ..files import AtomicFile

    info = {"job_hash": job.hash, "row": job.row, "out": job.name, "seed": job.seed, "frames": frames,
            "seconds": seconds, "versions": versions(), "argv": job.argv,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with AtomicFile(sidecar_path(job.out)) as tmp:
        tmp.write_text(json.dumps(info, indent=1) + "\n")


def run_job(job: Job, models: ModelCache, worker: str = "") -> JobResult:
    """Render one job to its output (atomically) and write its sidecar; any error becomes a failed result."""
    from ..cli import USER_ERRORS, cmd_animate
    from ..dub_command import cmd_dub

    commands = {"animate": cmd_animate, "dub": cmd_dub}

    start = time.perf_counter()
    loaded = models.load_seconds
    result = JobResult(row=job.row, name=job.name, status="done", worker=worker)
    try:
        sidecar_path(job.out).unlink(missing_ok=True)  # a stale sidecar must not vouch for the new output
        commands[job.command](parse_job(job), models=models)
        result.frames = video_frames(job.out)
        seconds = time.perf_counter() - start
        write_sidecar(job, result.frames, {"total": round(seconds, 3),
                                           "model_loading": round(models.load_seconds - loaded, 3)})
    except USER_ERRORS as err:
        result.status, result.error = "failed", str(err) or type(err).__name__
    except Exception as err:  # a bug or a broken input deep inside: recorded, and the batch goes on
        log.debug("row %d failed", job.row, exc_info=True)
        result.status, result.error = "failed", f"{type(err).__name__}: {err}"
    result.seconds = time.perf_counter() - start
    return result


def result_dict(result: JobResult) -> dict:
    return asdict(result)
