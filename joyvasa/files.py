"""Output files written safely: checked before any work, complete or not at all, inside their folder.

A file is written under a hidden temporary name in its destination folder and renamed over the destination
only once complete, with the permissions the user's umask gives a new file; on any error or interrupt the
temporary file, and the folders made for it, are removed. `check_output_path` refuses at the start what
would otherwise fail (or overwrite an input) after minutes of work.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def _umask() -> int:
    try:  # read without changing it (os.umask sets it, which races with other threads)
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode a newly created file gets from the user's umask (0o644 under the usual 022)."""
    return 0o666 & ~_umask()


def check_output_path(path: str | Path, suffix: str | None = None, inputs: Iterable[str | Path] = (),
                      what: str = "output") -> Path:
    """Refuse an output path that cannot be written, before any work is done. Returns it as a Path.

    Checked: the suffix; not an existing folder; no parent that is a file; the nearest existing folder is
    writable (a temporary file is made and removed there); not one of `inputs` (which it would overwrite).
    """
    path = Path(path)
    if suffix is not None and path.suffix.lower() != suffix:
        raise ValueError(f"{what} {path} must end in {suffix}")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file name, e.g. {path / ('out' + (suffix or ''))}")
    for given in inputs:
        if path.exists() and Path(given).exists() and path.resolve() == Path(given).resolve():
            raise ValueError(f"{what} {path} is also an input file; writing it would destroy the input. Choose "
                             "another output name.")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"cannot write {what} {path}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".joyvasa-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"cannot write {what} {path}: the folder {folder} is not writable ({err.strerror}). "
                         "Choose another folder or fix its permissions.") from None
    return path


def make_parents(path: Path) -> list[Path]:
    """Create the missing folders above `path`; returns those created, deepest first (for `remove_empty`)."""
    missing = []
    folder = Path(path).parent
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return missing


def remove_empty(folders: Iterable[Path]) -> None:
    """Remove folders (deepest first) that are still empty; leave any that something else filled."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


class AtomicFile:
    """`with AtomicFile(path) as tmp: write tmp` -> `path` appears complete, or nothing changes.

    The temporary file `.NAME.XXXX.partial<suffix>` lives beside `path` (same filesystem, so the rename is
    atomic); folders created for it are removed again on failure."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tmp: Path | None = None
        self._made: list[Path] = []

    def __enter__(self) -> Path:
        self._made = make_parents(self.path)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".partial{self.path.suffix}",
                                       dir=self.path.parent)
        except BaseException:
            remove_empty(self._made)
            raise
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                os.chmod(self.tmp, new_file_mode())
                os.replace(self.tmp, self.path)
                return
            except BaseException:
                self.discard()
                raise
        self.discard()

    def discard(self) -> None:
        """Remove the temporary file and the folders made for it."""
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
        remove_empty(self._made)
