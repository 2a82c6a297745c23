"""Fetch missing model files from the Hugging Face hub into the folders `weights.WeightsLocation` searches.

Only files that are in none of the searched folders are downloaded, one `hf_hub_download` each. A file
goes where `WeightsLocation.find` looks first (the explicit folder, else the host's first model folder
for that source, else the pack's `pretrained_weights/`), or below `target_dir` when one is given, so the
next lookup finds it without a download.

`hf_hub_download(local_dir=...)` keeps a `.cache/huggingface/` folder of locks and metadata in
`local_dir`, which a host listing every file of a model folder would show. So each file is fetched into a
hidden staging folder next to its destination (same filesystem), moved into place with `os.replace` once
complete, and the staging folder is removed: a model folder never holds a half-written file or hub
metadata.

The endpoint is the `endpoint` argument, else `HF_ENDPOINT` read at call time, else the public hub.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from .files import make_parents, remove_empty
from .weights import WeightsLocation, WeightsNotFoundError, host_subpath, hub_source

# progress(relpath, bytes_done, bytes_total); bytes_total is 0 while the size is unknown
Progress = Callable[[str, int, int], None]

DEFAULT_ENDPOINT = "https://huggingface.co"
_STAGING_PREFIX = ".joyvasa-download-"


class WeightsDownloadError(RuntimeError):
    """A missing model file could not be downloaded; the message says how to get it by hand."""


def ensure_weights(relpaths: Iterable[str], location: WeightsLocation, download: bool = True,
                   target_dir: Path | None = None, progress: Progress | None = None,
                   endpoint: str | None = None) -> dict[str, Path]:
    """Path of every file in `relpaths` (official relative paths), downloading the missing ones.

    `download=False` raises `WeightsNotFoundError` for missing files instead. `target_dir` is a host model
    folder (e.g. ComfyUI's `models/liveportrait`); the missing files must then all belong to that folder.
    Raises `WeightsDownloadError` (naming the manual command) when a download fails.
    """
    relpaths = list(dict.fromkeys(relpaths))
    if not download:
        return location.find_all(relpaths)
    for relpath in relpaths:
        hub_source(relpath)  # an unknown path fails before anything is downloaded

    found: dict[str, Path] = {}
    missing: list[tuple[str, Path]] = []
    for relpath in relpaths:
        try:
            found[relpath] = location.find(relpath)
        except WeightsNotFoundError:
            dest = download_path(relpath, location, target_dir)
            if dest.is_file():
                found[relpath] = dest
            else:
                missing.append((relpath, dest))

    if missing:
        if target_dir is not None:
            _check_one_host_folder([relpath for relpath, _ in missing], target_dir)
        endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        if _hub_offline():
            raise WeightsDownloadError(_failure_message(
                missing, endpoint, "HF_HUB_OFFLINE is set, so nothing may be downloaded"))
        for i, (relpath, dest) in enumerate(missing):
            # two names of one file (the HuBERT folder has two) may share a destination
            found[relpath] = dest if dest.is_file() else _download(relpath, dest, endpoint, progress, missing[i:])
    return {relpath: found[relpath] for relpath in relpaths}


def download_path(relpath: str, location: WeightsLocation, target_dir: Path | None = None) -> Path:
    """Where `ensure_weights` puts `relpath`: below the host folder `target_dir`, else where `location`
    looks first."""
    if target_dir is not None:
        return Path(target_dir) / host_subpath(relpath)[1]
    return location.candidates(relpath)[0]


def manual_command(relpath: str, dest: Path) -> str:
    """The shell command that downloads `relpath` by hand so that it lands at `dest`."""
    repo, file_in_repo = hub_source(relpath)
    in_repo = PurePosixPath(file_in_repo).parts
    if Path(dest).parts[-len(in_repo):] == in_repo:
        local_dir = Path(dest).parents[len(in_repo) - 1]
        return f"{_cli()} download {repo} {file_in_repo} --local-dir {_quoted(local_dir)}"
    # the host folder is not named like the repo's top folder: download next to it, then move the file
    local_dir = Path(dest).parent / "hf-download"
    return (f"{_cli()} download {repo} {file_in_repo} --local-dir {_quoted(local_dir)}\n"
            f"    then move {_quoted(local_dir / file_in_repo)} to {_quoted(dest)} and delete {_quoted(local_dir)}")


def _download(relpath: str, dest: Path, endpoint: str, progress: Progress | None,
              pending: list[tuple[str, Path]]) -> Path:
    """Fetch one file into a staging folder beside `dest`, then move it into place."""
    from huggingface_hub import hf_hub_download

    repo, file_in_repo = hub_source(relpath)
    reporter = _Reporter(relpath, progress)
    staging: Path | None = None
    made: list[Path] = []
    try:
        made = make_parents(dest)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=dest.parent))
        options = {}
        if progress is not None and _takes_tqdm_class():
            options["tqdm_class"] = reporter.bar_class()
        else:  # huggingface_hub before 1.0: no byte counts, only a start and an end
            reporter.report(0, 0)
        fetched = hf_hub_download(repo, file_in_repo, local_dir=staging, endpoint=endpoint, **options)
        os.replace(fetched, dest)
    except BaseException as error:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
            staging = None
        remove_empty(made)  # no empty model folders left behind by a failed download
        if error is reporter.error or not isinstance(error, Exception):  # the host's interrupt, Ctrl-C
            raise
        raise WeightsDownloadError(_failure_message(pending, endpoint, _describe(error))) from error
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    size = dest.stat().st_size
    reporter.report(size, size)  # also covers a copy from the local hub cache, which shows no bar
    return dest


class _Reporter:
    """Turns huggingface_hub's tqdm updates into `progress(relpath, done, total)` calls."""

    def __init__(self, relpath: str, progress: Progress | None):
        self.relpath = relpath
        self.progress = progress
        self.last: tuple[int, int] | None = None
        self.error: BaseException | None = None

    def report(self, done: int, total: int) -> None:
        if self.progress is None or self.last == (done, total):
            return
        self.last = (done, total)
        try:
            self.progress(self.relpath, done, total)
        except BaseException as error:
            self.error = error
            raise

    def bar_class(self) -> type:
        from huggingface_hub.utils import tqdm as hf_tqdm

        reporter = self

        class Bar(hf_tqdm):
            # counts bytes itself: a disabled tqdm (HF_HUB_DISABLE_PROGRESS_BARS) does not advance `n`
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.done = int(kwargs.get("initial") or 0)
                reporter.report(self.done, int(self.total or 0))

            def update(self, n=1):
                self.done += int(n or 0)
                reporter.report(self.done, int(self.total or 0))
                return super().update(n)

            # Xet downloads: with this method, one bar gets the bytes written (update) and this the bytes
            # received, which are not reported
            def update_transfer(self, n=1):
                pass

            def set_transfer_postfix_str(self, *args, **kwargs):
                pass

        return Bar


def _check_one_host_folder(relpaths: list[str], target_dir: Path) -> None:
    folders = sorted({host_subpath(relpath)[0] for relpath in relpaths})
    if len(folders) > 1:
        raise ValueError(f"target_dir {target_dir} is one model folder, but the missing files belong to the "
                         f"folders {folders}; call once per folder, or leave target_dir out so that each file "
                         "goes to the first folder searched for it")


def _failure_message(pending: list[tuple[str, Path]], endpoint: str, cause: str) -> str:
    relpath = pending[0][0]
    repo, file_in_repo = hub_source(relpath)
    lines = [f"Could not download model file {relpath!r} (file {file_in_repo} of the Hugging Face repo {repo}) "
             f"from {endpoint}: {cause}",
             "Check the internet connection (and HF_ENDPOINT if you use a mirror), or download the missing "
             "files by hand:"]
    for relpath, dest in pending:
        lines += [f"  {manual_command(relpath, dest)}", f"    (the file must end up at {dest})"]
    return "\n".join(lines)


def _describe(error: BaseException) -> str:
    """The error's first line, plus its root cause (often the useful part: 'connection refused')."""
    text = f"{type(error).__name__}: {_first_line(error)}"
    root, seen = error, {id(error)}
    while (parent := root.__cause__ or root.__context__) is not None and id(parent) not in seen:
        root = parent
        seen.add(id(root))
    if root is not error and _first_line(root) != _first_line(error):
        text += f" (caused by {type(root).__name__}: {_first_line(root)})"
    return text


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _takes_tqdm_class() -> bool:
    """Whether `hf_hub_download` reports bytes through a `tqdm_class` (huggingface_hub 1.x and later)."""
    import inspect

    from huggingface_hub import hf_hub_download

    return "tqdm_class" in inspect.signature(hf_hub_download).parameters


def _cli() -> str:
    """`hf` (huggingface_hub 0.34 and later) or the older `huggingface-cli`."""
    import huggingface_hub

    major, minor = (int(part) for part in huggingface_hub.__version__.split(".")[:2])
    return "hf" if (major, minor) >= (0, 34) else "huggingface-cli"


def _quoted(path: Path) -> str:
    text = str(path)
    return f'"{text}"' if " " in text else text
