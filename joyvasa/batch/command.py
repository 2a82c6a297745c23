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

from .jobs import Job, JobError, load_jobs
from .worker import JobResult, is_done

log = logging.getLogger("joyvasa.batch")

SUMMARY_NAME = "batch_summary.csv"
SUMMARY_FIELDS = ("row", "out", "status", "seconds", "frames", "worker", "attempts", "error")


def add_batch_parser(sub) -> None:
    from ..devices import DEVICE_CHOICES

    b = sub.add_parser("batch", help="render every row of a jobs file (CSV or JSON Lines), resumably",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("jobs", type=Path, help="jobs file: .csv with a header, or .jsonl; one clip per row, columns "
                                           "named like animate's options (image, audio, out, seed, crop, ...), "
                                           "or dub's for a row with a video")
    b.add_argument("--out", "-o", type=Path, required=True, help="output folder (rows' `out` names are inside it)")
    b.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine, each holding its own models; ray: worker actors "
                        "on a Ray cluster (pip install \"joyvasa-nodes[ray]\"), which read the inputs and write the "
                        "outputs themselves, so inputs, --out and the weights must be on storage every node sees "
                        "under the same paths")
    b.add_argument("--workers", type=int, default=1, help="worker processes (each holds its own models)")
    b.add_argument("--threads-per-worker", type=int, default=None,
                   help="torch CPU threads per worker (default: the CPU cores divided among the workers)")
    b.add_argument("--retries", type=int, default=1, help="times a job is retried when its worker dies")
    from .ray_engine import IN_FLIGHT_PER_WORKER, RayOptions

    ray = b.add_argument_group("--engine ray")
    ray.add_argument("--address", default=None,
                     help="the Ray cluster: auto (this machine is a node of it), HOST:PORT of its head node or "
                          "ray://HOST:PORT (Ray Client); default: a Ray on this machine for this batch only")
    ray.add_argument("--gpus-per-worker", type=float, default=None,
                     help="GPUs each worker asks Ray for; fractions share a GPU (0.5: two workers a GPU). Default "
                          f"{RayOptions.gpus_per_worker:g}")
    ray.add_argument("--cpus-per-worker", type=float, default=None,
                     help="CPUs each worker asks Ray for, also its torch threads (rounded up). Default "
                          f"{RayOptions.cpus_per_worker:g}")
    ray.add_argument("--max-in-flight", type=int, default=None,
                     help=f"jobs submitted to the workers at once (default: {IN_FLIGHT_PER_WORKER} per worker)")
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
    from ..cli import _weights
    from .jobs import weight_files

    needed = dict.fromkeys(f for job in jobs for f in weight_files(job))
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


RAY_ONLY = ("address", "gpus_per_worker", "cpus_per_worker", "max_in_flight")


def ray_options(args: argparse.Namespace):
    """The --engine ray options, checked (and Ray found) before any work; ray-only flags refused with local."""
    from ..cli import InputError
    from .ray_engine import RayOptions, check_ray_installed

    given = [name for name in RAY_ONLY if getattr(args, name, None) is not None]
    if args.engine != "ray":
        if given:
            raise InputError(f"{', '.join('--' + n.replace('_', '-') for n in given)} only apply to --engine ray "
                             "(add --engine ray, or leave them out)")
        return None
    if args.threads_per_worker is not None:
        raise InputError("--threads-per-worker is for --engine local; with --engine ray each worker's torch "
                         "threads follow --cpus-per-worker")
    try:
        options = RayOptions(retries=args.retries, **{name: getattr(args, name) for name in given})
    except ValueError as err:
        raise InputError(str(err)) from None
    check_ray_installed()  # an ImportError with the install hint
    return options


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Jobs finished of all, failures and an ETA on stderr: one bar redrawn on a terminal, else a line per job."""

    WIDTH = 24  # characters of the bar

    def __init__(self, total: int, stream=None):
        self.total, self.stream = total, stream or sys.stderr
        self.finished = self.failed = 0
        self.start = time.perf_counter()
        self.tty = self.stream.isatty()

    def update(self, result: JobResult) -> None:
        self.finished += 1
        self.failed += result.status == "failed"
        elapsed, left = time.perf_counter() - self.start, self.total - self.finished
        # jobs finish at the rate seen so far (the workers run side by side, so this counts them all)
        eta = f"ETA {_duration(elapsed / self.finished * left)}" if left else f"all in {_duration(elapsed)}"
        counts = f"{self.finished}/{self.total} jobs, {self.failed} failed, {eta}"
        if self.tty:
            filled = self.WIDTH * self.finished // max(self.total, 1)
            self.stream.write(f"\r[{'#' * filled}{'-' * (self.WIDTH - filled)}] {counts}  " + ("" if left else "\n"))
        else:
            what = f"{result.frames} frames" if result.status == "done" else result.error.split("\n")[0]
            self.stream.write(f"[{counts}] {result.status} {result.name} in {result.seconds:.1f} s "
                              f"({result.worker}): {what}\n")
        self.stream.flush()


def run_jobs(jobs: list[Job], args: argparse.Namespace, on_result) -> list[JobResult]:
    from .local import run_local

    if args.engine == "ray":
        from .ray_engine import run_ray

        options = ray_options(args)
        return run_ray(jobs, args.workers, address=options.address, gpus_per_worker=options.gpus_per_worker,
                       cpus_per_worker=options.cpus_per_worker, max_in_flight=options.max_in_flight,
                       retries=options.retries, on_result=on_result,
                       log_level=logging.INFO if args.verbose else logging.WARNING)
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
    ray_options(args)
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
    start, progress = time.perf_counter(), Progress(len(todo))

    def on_result(result: JobResult) -> None:
        results.append(result)
        progress.update(result)

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
