"""Load the official `liveportrait_animals/xpose.pth` into `XPose`, strictly.

The file is `{'model': state_dict, ...}` (other entries are ignored, as by the original); keys may carry DDP's
leading `module.`. It is read with `torch.load(weights_only=True)`; besides tensors, the pickle may hold the
training `args` (`argparse.Namespace`, with paths rebuilt as pure paths), as DETR-family checkpoints do.

The original loads non-strictly and silently ignores missing or unexpected keys; here every key of the file must
be used and every parameter and buffer of the model provided. Tied keys (the same head registered under several
names) must hold equal values; a re-save that kept only one name of a tied group (e.g. safetensors) is accepted
and the other names are filled from it.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from ...checkpoint import TRAINING_ARGS_GLOBALS, CheckpointError, load_strict, read_checkpoint
from ...weights import WeightsLocation
from .model import XPose, XPoseConfig

XPOSE_FILE = "liveportrait_animals/xpose.pth"



def xpose_state(obj: object, path: str | Path) -> dict[str, Tensor]:
    """The state dict inside a loaded X-Pose checkpoint, with a leading `module.` removed from each key."""
    if isinstance(obj, Mapping) and "model" in obj:
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} is not an X-Pose checkpoint: expected {{'model': state_dict}} or a flat "
                              f"state dict of tensors, found {type(obj).__name__}. Is it `{XPOSE_FILE}`?")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def tied_groups(module: nn.Module) -> list[list[str]]:
    """State-dict keys that name the same tensor, one list per tensor with more than one name."""
    groups: dict[int, list[str]] = {}
    for key, value in module.state_dict(keep_vars=True).items():
        groups.setdefault(id(value), []).append(key)
    return [keys for keys in groups.values() if len(keys) > 1]


def resolve_tied(module: nn.Module, state: Mapping[str, Tensor], path: str | Path) -> dict[str, Tensor]:
    """Check that the names of each tied tensor agree in `state`; fill absent names from a present one."""
    state = dict(state)
    for keys in tied_groups(module):
        present = [k for k in keys if k in state]
        if not present:
            continue  # reported as missing by the strict load
        first = state[present[0]]
        for key in present[1:]:
            if state[key].shape != first.shape or not torch.equal(state[key], first):
                raise CheckpointError(
                    f"{path}: tied keys {present[0]} and {key} name the same weights in X-Pose but hold different "
                    "values. The file is corrupted or not the official xpose.pth.")
        for key in keys:
            state.setdefault(key, first)
    return state


def load_xpose(source: str | Path | WeightsLocation, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32, config: XPoseConfig | None = None) -> XPose:
    """Build X-Pose and load `xpose.pth` from a path or a `WeightsLocation`; eval mode, no gradients."""
    path = source.find(XPOSE_FILE) if isinstance(source, WeightsLocation) else Path(source)
    model = XPose(config or XPoseConfig())
    state = resolve_tied(model, xpose_state(read_checkpoint(path, TRAINING_ARGS_GLOBALS), path), path)
    load_strict(model, state, path)
    return model.eval().requires_grad_(False).to(device=device, dtype=dtype)
