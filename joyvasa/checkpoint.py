"""Safe reading of checkpoint files and strict, loud loading into modules.

No file is ever unpickled with arbitrary code execution: `.pth`/`.pt`/`.bin` go through
`torch.load(weights_only=True)` (plus a caller-given allow-list of harmless classes), `.safetensors` through
safetensors. Every failure names the file and says what to do.
"""
from __future__ import annotations

import argparse
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath

import torch
from torch import nn

MAX_KEYS_LISTED = 8

# Harmless objects that official training checkpoints hold besides tensors (their `args`); nothing else is
# unpickled. Paths become *pure* paths, which every OS can create (a Linux PosixPath cannot be made on Windows).
TRAINING_ARGS_GLOBALS = (
    argparse.Namespace,
    (PurePosixPath, "pathlib.PosixPath"),
    (PurePosixPath, "pathlib._local.PosixPath"),  # pickled by Python >= 3.13
    (PureWindowsPath, "pathlib.WindowsPath"),
    (PureWindowsPath, "pathlib._local.WindowsPath"),
)

# Globals of files this pack knows, by what they tell about the file: such a file is not malicious, only not
# the one expected here (two files swapped, or a file of another model in this place).
_KNOWN_FOREIGN_GLOBALS = {
    "argparse.": "a training checkpoint with its arguments (like JoyVASA's motion generator or X-Pose)",
    "pathlib.": "a training checkpoint with its arguments (like JoyVASA's motion generator or X-Pose)",
    "numpy.": "pickled NumPy arrays (like JoyVASA's motion_template.pkl)",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class CheckpointError(RuntimeError):
    """A weights file is missing, unreadable, truncated or does not fit the network."""


def _redownload_hint(path: Path) -> str:
    return (f"Delete {path} and download it again (the file may be truncated or corrupted), "
            "or point the loader at another copy.")


def read_checkpoint(path: str | Path, allowed_globals: Iterable = ()) -> object:
    """Read a checkpoint without executing pickled code. Returns the stored object (usually a dict)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f"Cannot read {path}: {err}. {_redownload_hint(path)}") from None
    if path.stat().st_size == 0:
        raise CheckpointError(f"Checkpoint {path} is empty (0 bytes). {_redownload_hint(path)}")
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(refusal_message(path, str(err))) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"Cannot read {path}: {first_line(err)}. {_redownload_hint(path)}") from None


def first_line(err: BaseException | str) -> str:
    """The first line of an error message, without terminal colour codes (torch colours some of its own)."""
    lines = _ANSI.sub("", str(err)).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def refusal_message(path: Path, error: str) -> str:
    """Why a file's pickle was refused, told apart: a known file of another kind in the wrong place, not a
    weights file at all, or objects that no official file holds."""
    text = _ANSI.sub("", error)
    found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"global ([\w.]+)", text)
    name = found.group(1) if found else None
    if name is not None:
        for prefix, kind in _KNOWN_FOREIGN_GLOBALS.items():
            if name.startswith(prefix):
                return (f"{path} is not the file expected here: it holds {kind}, not plain weights. Check that "
                        "the files are in their official places (not swapped or renamed).")
        return (f"Refused to load {path}: it asks to import {name}, which no official checkpoint does; nothing in "
                f"it was run. Is it the right file? {_redownload_hint(path)}")
    return f"Cannot read {path}: it is not a PyTorch weights file ({first_line(text)}). {_redownload_hint(path)}"


def strip_prefix(state: Mapping[str, torch.Tensor], substring: str) -> dict[str, torch.Tensor]:
    """Remove every occurrence of `substring` from the keys (DDP's 'module.')."""
    return {k.replace(substring, ""): v for k, v in state.items()}


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_KEYS_LISTED])
    more = len(keys) - MAX_KEYS_LISTED
    return shown + (f" (and {more} more)" if more > 0 else "")


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path) -> nn.Module:
    """Copy `state` into `module`, failing with the file name and the offending keys on any mismatch."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
                   for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if wrong_shape:
        problems.append(f"wrong shapes: {_listing(wrong_shape)}")
    if problems:
        raise CheckpointError(
            f"{source} does not fit {type(module).__name__}: " + "; ".join(problems)
            + ". Is this the right file for this network (human/animal set, official layout)?")
    module.load_state_dict(dict(state), strict=True)
    return module
