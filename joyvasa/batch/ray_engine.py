"""The Ray engine (`batch --engine ray`): the jobs on worker actors of a Ray cluster, each holding its own models.

    results = run_ray(jobs, workers=4, address="auto", gpus_per_worker=0.5)

Without an address, a Ray is started on this machine (on 127.0.0.1) for this batch only, with as many CPUs as
the workers ask for, and stopped at the end, also on an error or Ctrl-C. With "auto" (on a node of a running
cluster), "HOST:PORT" (its head node) or "ray://HOST:PORT" (Ray Client) the batch joins that cluster and leaves
it running. A Ray this process is already connected to (`ray.init` called by the caller) is used as it is.

Shared storage: the worker that runs a job reads its inputs and writes its output and sidecar itself, straight
into the output folder, so the inputs, the output folder and the weights folder must be on storage that every
node sees under the same paths (NFS or the like), and joyvasa-nodes must be installed on every node.

One actor per worker loads the models once (`ModelCache`) and runs one job at a time; at most `max_in_flight`
jobs are submitted at once (backpressure: the next one when one finishes), and each result goes to `on_result`
as it comes. A worker that dies is restarted by Ray, which runs the job again (`max_restarts` and
`max_task_retries` = `retries`). A small ledger actor, outside the workers, counts each job's starts, so a job
that still fails is recorded as failed after `retries` retries while the jobs that were only waiting behind it go
to a fresh worker uncounted. Every attempt first removes the temporary files a killed attempt of its job left;
outputs are renamed into place only by the attempt that completes, so there is never a partial or a second copy.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .jobs import Job
from .local import remove_partials
from .worker import JobResult

log = logging.getLogger("joyvasa.batch")

INSTALL_HINT = '--engine ray needs Ray: pip install "joyvasa-nodes[ray]" (or pip install ray); or use --engine local'
IN_FLIGHT_PER_WORKER = 2  # one job running and one waiting on each actor: no idle gap between a worker's jobs
OBJECT_STORE_BYTES = 256 * 1024**2  # jobs and results are a few kB; Ray's default reserves 30% of the RAM
POLL_SECONDS = 1.0  # the driver looks for started jobs (on_start) and for Ctrl-C this often while it waits
CONNECT_SECONDS = 10.0  # for the cluster's address to answer at all
SHUTDOWN_SECONDS = 10.0  # how long killed workers get to be gone before their temporary files are removed


class RayWorkersError(OSError):
    """The cluster cannot run the workers (joyvasa missing on a node, workers dying before any job): an
    environment problem, reported like an unreadable file."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how the Ray workers run; checked before anything starts."""

    address: str | None = None  # None: a Ray on this machine for this batch; auto, HOST:PORT or ray://HOST:PORT
    gpus_per_worker: float = 0.0  # fractions share a GPU between workers (0.5: two workers per GPU)
    cpus_per_worker: float = 1.0  # also each worker's torch threads, rounded up
    max_in_flight: int | None = None  # jobs submitted at once; None: IN_FLIGHT_PER_WORKER per worker
    retries: int = 1  # times a job is run again after its worker died during it

    def __post_init__(self):
        for name in ("gpus_per_worker", "cpus_per_worker"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"--{name.replace('_', '-')} must be a number of 0 or more (fractions allowed), "
                                 f"got {value}")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError(f"--max-in-flight must be at least 1, got {self.max_in_flight}")
        if self.retries < 0:
            raise ValueError(f"--retries must be 0 or more, got {self.retries}")
        check_address(self.address)

    @property
    def threads(self) -> int:
        return max(1, math.ceil(self.cpus_per_worker))

    def in_flight(self, workers: int) -> int:
        return self.max_in_flight or IN_FLIGHT_PER_WORKER * workers


def check_address(address: str | None) -> None:
    """None, auto, HOST:PORT or ray://HOST:PORT; anything else is refused before Ray is asked."""
    if address is None or address == "auto":
        return
    rest = address.removeprefix("ray://")
    host, colon, port = rest.rpartition(":")
    if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"--address {address!r} is not a Ray address: give auto (the cluster this machine is a "
                         "node of), HOST:PORT of the cluster's head node, or ray://HOST:PORT for Ray Client (port "
                         "10001 by default); leave --address out to start a Ray on this machine for this batch")


def check_ray_installed() -> None:
    """An ImportError that says how to install Ray where it is missing; Ray itself is not imported yet (it
    reads its settings from the environment when imported, see `_connected`)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise ImportError(INSTALL_HINT)


def import_ray():
    """Ray, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return ray


# ------------------------------------------------------------------------------------------- in the cluster

class _Ledger:
    """Every start of every job, kept outside the workers so it survives their deaths."""

    def __init__(self):
        self.starts: dict[int, int] = {}
        self.events: list[tuple[int, int]] = []  # (row, pid), in start order

    def started(self, row: int, pid: int) -> int:
        self.starts[row] = self.starts.get(row, 0) + 1
        self.events.append((row, pid))
        return self.starts[row]

    def attempts(self, row: int) -> int:
        return self.starts.get(row, 0)

    def events_since(self, seen: int) -> list[tuple[int, int]]:
        return self.events[seen:]


class _Worker:
    """A worker actor: its models, loaded once; `run` renders one job (atomically) and returns its JobResult."""

    def __init__(self, name: str, ledger, threads: int, log_level: int):
        import torch

        from .worker import ModelCache

        logging.basicConfig(level=log_level, format=f"[{name}] %(message)s")
        logging.getLogger("joyvasa").setLevel(log_level)
        torch.set_num_threads(threads)
        self.name, self.ledger, self.models = name, ledger, ModelCache()

    def pid(self) -> int:
        return os.getpid()

    def run(self, job: Job) -> JobResult:
        import ray

        from .worker import run_job

        attempt = ray.get(self.ledger.started.remote(job.row, os.getpid()))
        remove_partials(job.out)  # what a killed attempt of this job left
        result = run_job(job, self.models, worker=self.name)
        result.attempts = attempt
        return result


# ------------------------------------------------------------------------------------------- in the driver

@contextlib.contextmanager
def _env_defaults(**values: str):
    """Environment variables set while Ray is imported and started (its processes inherit them), unless the
    user set them; restored afterwards."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextlib.contextmanager
def _connected(options: RayOptions, workers: int):
    """Ray, connected as the options say; a Ray started here is stopped on the way out, a cluster is left."""
    # a local Ray on the loopback address only (Ray otherwise binds this machine's network address) and no
    # usage reporting from a Ray that exists for one batch
    loopback = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"} \
        if options.address is None else {}
    with _env_defaults(**loopback):
        ray = import_ray()
        owned = not ray.is_initialized()  # else: the caller's connection, used and left open
        try:
            if owned:
                _init(ray, options, workers)
        except BaseException:
            ray.shutdown()  # whatever part of a Ray was started
            raise
    if not owned:
        yield ray
        return
    try:
        yield ray
    finally:
        ray.shutdown()  # stops a Ray started here; only disconnects from a cluster


def _init(ray, options: RayOptions, workers: int) -> None:
    common = dict(logging_level=logging.WARNING, log_to_driver=True)
    if options.address is None:
        ray.init(address="local", num_cpus=max(1, math.ceil(workers * options.cpus_per_worker)),
                 num_gpus=None if options.gpus_per_worker else 0, include_dashboard=False,
                 object_store_memory=OBJECT_STORE_BYTES, **common)
        return
    try:
        _check_reachable(options.address)
        ray.init(address=options.address, **common)
    except ImportError as err:  # Ray Client needs grpcio
        raise ImportError(f"--address {options.address} uses Ray Client, which needs more of Ray: pip install "
                          f'"ray[client]" ({err})') from None
    except (OSError, RuntimeError, ValueError) as err:
        raise ConnectionError(
            f"cannot reach the Ray cluster at --address {options.address}: {str(err).strip()}. Check that the "
            "cluster runs (`ray status` on its head node) and the address: auto on a node of the cluster, "
            "HEAD:6379 from a machine on its network, ray://HEAD:10001 through Ray Client; or leave --address out "
            "to run a Ray on this machine.") from None


def _check_reachable(address: str) -> None:
    """A TCP connection to HOST:PORT first: Ray itself retries an address where nothing answers for minutes."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS):
        pass


def _workers_that_fit(ray, options: RayOptions, workers: int) -> int:
    """The workers the cluster can hold at once (fewer than asked: a warning; none: an error)."""
    total = ray.cluster_resources()
    cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    fit = workers
    if options.gpus_per_worker:
        fit = min(fit, int(gpus / options.gpus_per_worker + 1e-9))
    if options.cpus_per_worker:
        fit = min(fit, int(cpus / options.cpus_per_worker + 1e-9))
    if fit < 1:
        raise ValueError(f"the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs: a worker asking for "
                         f"{options.cpus_per_worker:g} CPUs and {options.gpus_per_worker:g} GPUs cannot be "
                         "placed. Lower --cpus-per-worker or --gpus-per-worker, or add nodes.")
    if fit < workers:
        log.warning("the Ray cluster holds %d workers of %g CPUs and %g GPUs (%g CPUs, %g GPUs in all), not %d",
                    fit, options.cpus_per_worker, options.gpus_per_worker, cpus, gpus, workers)
    return fit


@dataclass
class _Slot:
    """One worker: its actor (replaced when Ray gives it up) and the jobs submitted to it, oldest first."""

    name: str
    actor: object
    jobs: deque


def run_ray(jobs: list[Job], workers: int = 1, *, address: str | None = RayOptions.address,
            gpus_per_worker: float = RayOptions.gpus_per_worker, cpus_per_worker: float = RayOptions.cpus_per_worker,
            max_in_flight: int | None = RayOptions.max_in_flight, retries: int = RayOptions.retries,
            on_result: Callable[[JobResult], None] | None = None,
            on_start: Callable[[Job, int], None] | None = None,
            log_level: int = logging.WARNING) -> list[JobResult]:
    """Run the jobs on `workers` Ray actors; returns one result per job (in the order they finished).

    on_start(job, pid) is called when a worker process starts a job, once per attempt (tests use it to kill
    one); it is polled, so it comes up to a second late."""
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    options = RayOptions(address, gpus_per_worker, cpus_per_worker, max_in_flight, retries)
    if not jobs:
        return []
    workers = min(workers, len(jobs))
    with _connected(options, workers) as ray:
        return _run(ray, jobs, _workers_that_fit(ray, options, workers), options, on_result, on_start, log_level)


def _run(ray, jobs, workers, options, on_result, on_start, log_level) -> list[JobResult]:
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    worker_class = ray.remote(_Worker).options(
        num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker, max_restarts=options.retries,
        max_task_retries=options.retries)
    ledger = ray.remote(_Ledger).options(num_cpus=0).remote()
    by_row = {job.row: job for job in jobs}
    pending = deque(jobs)
    in_flight: dict = {}  # ObjectRef -> (job, slot, the actor it went to, that actor's name)
    results: list[JobResult] = []
    started, seen = [0], [0]
    # every replacement follows a worker's death; deaths that charge no job (a worker dying before it starts
    # one) are bounded too, so a cluster that cannot keep workers alive ends the batch instead of looping
    most_replacements = workers + len(jobs) * (options.retries + 1)

    def new_actor():
        started[0] += 1
        name = f"w{started[0]}"
        return name, worker_class.remote(name, ledger, options.threads, log_level)

    def finish(result: JobResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    def report_starts() -> None:
        events = ray.get(ledger.events_since.remote(seen[0]), timeout=60)
        seen[0] += len(events)
        for row, pid in events:
            on_start(by_row[row], pid)

    def worker_died(job: Job, slot: _Slot, actor, name: str, err: Exception) -> None:
        if "creation task" in str(err):  # its __init__ raised: every worker would
            raise RayWorkersError(f"the Ray workers cannot start: {str(err).strip()}\nIs joyvasa-nodes installed "
                                  "(same version) on every node?")
        if slot.actor is actor:  # Ray gave this actor up: a fresh one takes the slot
            ray.kill(actor, no_restart=True)
            if started[0] - workers >= most_replacements:
                raise RayWorkersError(f"the Ray workers keep dying ({started[0] - workers} replaced); last: "
                                      f"{str(err).strip()}")
            slot.name, slot.actor = new_actor()
        remove_partials(job.out)
        attempts = ray.get(ledger.attempts.remote(job.row), timeout=60)
        if attempts <= options.retries:  # never started (it waited behind the job that died), or retries left
            if attempts:
                log.warning("row %d (%s): its worker died; retrying on a new worker", job.row, job.name)
            pending.appendleft(job)
            return
        finish(JobResult(row=job.row, name=job.name, status="failed", worker=name, attempts=attempts,
                         error=f"worker died during this job ({attempts} attempts: killed, out of memory or a crash "
                               f"in native code; the Ray logs say which): {type(err).__name__}"))

    slots = [_Slot(*new_actor(), deque()) for _ in range(workers)]
    try:
        while pending or in_flight:
            while pending and len(in_flight) < options.in_flight(workers):
                job = pending.popleft()
                slot = min(slots, key=lambda s: len(s.jobs))
                in_flight[slot.actor.run.remote(job)] = (job, slot, slot.actor, slot.name)
                slot.jobs.append(job)
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_SECONDS)
            if on_start is not None:
                report_starts()
            for ref in ready:
                job, slot, actor, name = in_flight.pop(ref)
                if job in slot.jobs:
                    slot.jobs.remove(job)
                try:
                    result = ray.get(ref)
                except (RayActorError, WorkerCrashedError) as err:
                    worker_died(job, slot, actor, name, err)
                    continue
                except RayTaskError as err:  # raised around run_job (a job that cannot be unpickled, ...)
                    result = JobResult(row=job.row, name=job.name, status="failed", worker=name,
                                       error=f"{type(err.cause).__name__}: {err.cause}" if err.cause else str(err))
                finish(result)
    finally:
        for slot in slots:
            with contextlib.suppress(Exception):
                ray.kill(slot.actor, no_restart=True)
        with contextlib.suppress(Exception):
            ray.kill(ledger, no_restart=True)
        if in_flight:  # interrupted: the killed workers' temporary files go once they are gone
            with contextlib.suppress(Exception):
                ray.wait(list(in_flight), num_returns=len(in_flight), timeout=SHUTDOWN_SECONDS)
            for job, *_ in in_flight.values():
                remove_partials(job.out)
    return results
