"""Batches of talking portraits: a jobs file (CSV or JSON Lines, one clip per row) rendered by long-lived workers
that load the models once, resumably (a sidecar with a job hash per output), one failure never stopping the rest.

    jobs = load_jobs("jobs.csv", out_dir)            # every row parsed with the CLI's parser, checked, hashed
    results = run_local(jobs, workers=2)              # or `python -m joyvasa batch jobs.csv --out out/`
    results = run_ray(jobs, workers=8, address="auto")  # Ray worker actors (`--engine ray`; pip install ray)
"""
from .jobs import Job, JobError, load_jobs
from .local import run_local
from .ray_engine import run_ray
from .worker import JobResult, ModelCache, is_done, run_job

__all__ = ["Job", "JobError", "JobResult", "ModelCache", "is_done", "load_jobs", "run_job", "run_local", "run_ray"]
