"""The local engine: N worker processes on this machine, each loading the models once.

The main process holds the queue of jobs and gives each worker one job at a time over its own pipe, so it
always knows which job a worker holds. A worker that dies (killed, out of memory, a crash in native code) is
seen through its process sentinel: its job is retried on a fresh worker (`retries` times), then recorded as
failed, and the temporary files it left are removed. Workers are started with 'spawn' (no forked CUDA or
thread state).
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path

from .jobs import Job
from .worker import JobResult, sidecar_path

log = logging.getLogger("joyvasa.batch")


def _worker_main(conn, name: str, threads: int, log_level: int) -> None:
    """A worker process: take jobs from `conn` until None, send back one JobResult each."""
    import signal

    import torch

    from .worker import ModelCache, run_job

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the main process decides
    logging.basicConfig(level=log_level, format=f"[{name}] %(message)s")
    torch.set_num_threads(threads)
    models = ModelCache()
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the main process is gone
            return
        if job is None:
            return
        conn.send(run_job(job, models, worker=name))


def remove_partials(out: Path) -> None:
    """The temporary files (`AtomicFile`) a killed worker left for this output and its sidecar."""
    for target in (out, sidecar_path(out)):
        for tmp in target.parent.glob(f".{target.stem}.*.partial{target.suffix}"):
            tmp.unlink(missing_ok=True)


class _Worker:
    def __init__(self, ctx, name: str, threads: int, log_level: int):
        self.name = name
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, name, threads, log_level), daemon=True,
                                   name=f"joyvasa-{name}")
        self.process.start()
        child.close()
        self.job: Job | None = None

    def give(self, job: Job | None) -> None:
        self.job = job
        self.conn.send(job)


def run_local(jobs: list[Job], workers: int = 1, on_result: Callable[[JobResult], None] | None = None,
              retries: int = 1, threads: int | None = None, log_level: int = logging.WARNING,
              on_start: Callable[[Job, int], None] | None = None) -> list[JobResult]:
    """Run the jobs on `workers` processes; returns one result per job (in the order they finished).

    on_start(job, pid) is called when a job is handed to a worker process (tests use it to kill one)."""
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    workers = min(workers, len(jobs)) or 1
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    pending = deque(jobs)
    attempts = {job.row: 0 for job in jobs}
    results: list[JobResult] = []
    started = 0

    def start() -> _Worker:
        nonlocal started
        started += 1
        return _Worker(ctx, f"w{started}", threads, log_level)

    def finish(result: JobResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    def feed(worker: _Worker) -> None:
        job = pending.popleft() if pending else None
        if job is not None:
            attempts[job.row] += 1
            if on_start is not None:
                on_start(job, worker.process.pid)
        worker.give(job)

    pool = [start() for _ in range(workers)]
    try:
        for worker in pool:
            feed(worker)
        while any(w.job is not None for w in pool):
            busy = [w for w in pool if w.job is not None]
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                result = None
                if worker.conn in ready:
                    try:
                        result = worker.conn.recv()
                    except (EOFError, OSError):
                        result = None
                if result is not None:
                    result.attempts = attempts[result.row]
                    finish(result)
                    feed(worker)
                elif worker.process.sentinel in ready or not worker.process.is_alive():
                    worker.process.join()
                    job = worker.job
                    remove_partials(job.out)
                    reason = f"worker {worker.name} died (exit code {worker.process.exitcode}) during this job"
                    pool.remove(worker)
                    if attempts[job.row] <= retries:
                        log.warning("row %d (%s): %s; retrying on a new worker", job.row, job.name, reason)
                        pending.appendleft(job)
                    else:
                        finish(JobResult(row=job.row, name=job.name, status="failed", worker=worker.name,
                                         error=reason, attempts=attempts[job.row]))
                    if pending and len(pool) < workers:
                        replacement = start()
                        pool.append(replacement)
                        feed(replacement)
    finally:
        for worker in pool:
            if worker.process.is_alive() and worker.job is not None:
                worker.process.terminate()  # interrupted; its temporary files are removed below
        for worker in pool:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            if worker.job is not None:
                remove_partials(worker.job.out)
            worker.conn.close()
    return results
