"""`python -m joyvasa batch JOBS --out DIR`: every row of a jobs file rendered, resumably, one failure never
stopping the others.

Each output `NAME.mp4` gets a sidecar `NAME.mp4.json` (job hash, seed, frames, timings, versions); a row whose
output and sidecar with the same hash exist is skipped (`--force` redoes it). At the end a summary
(`batch_summary.csv` in the output folder, and a table) lists every row as done, skipped or failed with its
reason and seconds; the exit code is 1 when any row failed.
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
import time
from pathlib import Path

from .jobs import Job, JobError, load_jobs, parse_job
from .worker import JobResult, is_done

log = logging.getLogger("joyvasa.batch")

SUMMARY_NAME = "batch_summary.csv"
SUMMARY_FIELDS = ("row", "out", "status", "seconds", "frames", "worker", "attempts", "error")


def add_batch_parser(sub) -> None:
    from ..devices import DEVICE_CHOICES

    b = sub.add_parser("batch", help="render every row of a jobs file (CSV or JSON Lines), resumably",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("jobs", type=Path, help="jobs file: .csv with a header, or .jsonl; one clip per row, columns "
                                           "named like animate's options (image, audio, out, seed, crop, ...)")
    b.add_argument("--out", "-o", type=Path, required=True, help="output folder (rows' `out` names are inside it)")
    b.add_argument("--engine", choices=("local",), default="local",
                   help="local: worker processes on this machine, each holding its own models")
    b.add_argument("--workers", type=int, default=1, help="worker processes (each holds its own models)")
    b.add_argument("--threads-per-worker", type=int, default=None,
                   help="torch CPU threads per worker (default: the CPU cores divided among the workers)")
    b.add_argument("--retries", type=int, default=1, help="times a job is retried when its worker dies")
    b.add_argument("--force", action="store_true", help="redo rows whose output is already up to date")
    b.add_argument("--weights-dir", type=Path, default=None,
                   help="folder laid out like pretrained_weights/ (default: $JOYVASA_WEIGHTS_DIR, then the pack's)")
    b.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                   help="download missing official weight files first (off: fail and print the download command)")
    b.add_argument("--device", choices=DEVICE_CHOICES, default=None,
                   help="device of every row that does not set its own (default: animate's, auto)")
    b.add_argument("--verbose", "-v", action="store_true", help="also log each worker's per-frame progress")
    b.set_defaults(func=cmd_batch)


def _fetch_weights(jobs: list[Job], args: argparse.Namespace) -> None:
    """Every weight file any row needs, found (or downloaded) once here, not by N workers at the same time."""
    from ..cli import _direct_options, _weights
    from ..pipeline import portrait_files
    from ..weights import MOTION_CHECKPOINT, MOTION_TEMPLATE

    needed: dict[str, None] = {}
    for job in jobs:
        row = parse_job(job)
        landmarks = _direct_options(row).blinks.inserts
        files = portrait_files(row.species, row.animal_version, "auto" if landmarks else row.crop)
        if row.motion is not None:
            files = [f for f in files if f not in (MOTION_CHECKPOINT, MOTION_TEMPLATE)]
        needed.update(dict.fromkeys(files))
    if needed:
        _weights(list(needed), args)


def write_summary(path: Path, results: list[JobResult]) -> None:
    from ..files import AtomicFile

    with AtomicFile(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for r in sorted(results, key=lambda r: r.row):
            writer.writerow({"row": r.row, "out": r.name, "status": r.status, "seconds": f"{r.seconds:.1f}",
                             "frames": "" if r.frames is None else r.frames, "worker": r.worker,
                             "attempts": r.attempts, "error": r.error})


def summary_table(results: list[JobResult]) -> str:
    """A plain-text table of the results, then the totals line."""
    rows = [("row", "out", "status", "s", "frames", "reason")]
    for r in sorted(results, key=lambda r: r.row):
        rows.append((str(r.row), r.name, r.status, f"{r.seconds:.1f}" if r.status != "skipped" else "",
                     "" if r.frames is None else str(r.frames), r.error.splitlines()[0] if r.error else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    out = io.StringIO()
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[5] + "\n")
    count = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    done = [r.seconds for r in results if r.status == "done"]
    per_clip = f", {sum(done) / len(done):.1f} s per clip" if done else ""
    out.write(f"{count['done']} done, {count['skipped']} skipped, {count['failed']} failed{per_clip}\n")
    return out.getvalue()


def run_jobs(jobs: list[Job], args: argparse.Namespace, on_result) -> list[JobResult]:
    from .local import run_local

    return run_local(jobs, args.workers, on_result, retries=args.retries, threads=args.threads_per_worker,
                     log_level=logging.INFO if args.verbose else logging.WARNING)


def cmd_batch(args: argparse.Namespace) -> int:
    from ..cli import InputError

    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    if args.retries < 0:
        raise InputError(f"--retries must be 0 or more, got {args.retries}")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file; give a folder")
    defaults = [*(["--weights-dir", str(args.weights_dir)] if args.weights_dir else []),
                *([] if args.download else ["--no-download"]),
                *(["--device", args.device] if args.device else [])]
    args.out = args.out.resolve()  # workers (and Ray nodes) get absolute paths
    try:
        jobs = load_jobs(args.jobs, args.out, defaults)
    except JobError as err:
        raise InputError(str(err)) from None
    results: list[JobResult] = [JobResult(row=j.row, name=j.name, status="failed", error=j.error)
                                for j in jobs if j.error]
    runnable = [j for j in jobs if not j.error]
    todo = [j for j in runnable if args.force or not is_done(j)]
    rerun = {j.row for j in todo}
    results += [JobResult(row=j.row, name=j.name, status="skipped") for j in runnable if j.row not in rerun]
    log.info("%d jobs: %d to run, %d up to date (skipped), %d invalid", len(jobs), len(todo),
             len(runnable) - len(todo), len(jobs) - len(runnable))
    for r in results:
        if r.status == "failed":
            log.info("row %d (%s) failed: %s", r.row, r.name or "-", r.error)
    if todo:
        _fetch_weights(todo, args)
    start, finished = time.perf_counter(), [0]

    def on_result(result: JobResult) -> None:
        finished[0] += 1
        results.append(result)
        what = f"{result.frames} frames" if result.status == "done" else result.error
        log.info("[%d/%d] %s %s in %.1f s (%s): %s", finished[0], len(todo), result.status, result.name,
                 result.seconds, result.worker, what)

    args.out.mkdir(parents=True, exist_ok=True)
    interrupted = False
    try:
        if todo:
            run_jobs(todo, args, on_result)
    except KeyboardInterrupt:
        interrupted = True
        seen = {r.row for r in results}
        results += [JobResult(row=j.row, name=j.name, status="failed", error="interrupted")
                    for j in todo if j.row not in seen]
    write_summary(args.out / SUMMARY_NAME, results)
    sys.stdout.write(summary_table(results))
    if todo:
        log.info("%d jobs in %.1f s; summary: %s", len(todo), time.perf_counter() - start, args.out / SUMMARY_NAME)
    if interrupted:
        return 130
    return 1 if any(r.status == "failed" for r in results) else 0
