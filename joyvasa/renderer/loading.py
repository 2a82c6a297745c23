"""Build the LivePortrait networks and load the official checkpoints into them, strictly.

The remap from file to module is data, applied in one place:
- F, W: bare state dicts, names as is;
- M: bare state dict whose keys start with `detector.` (kept: our module has the same attribute);
- G: spectral-norm triples folded into plain weights (`fold_spectral_norm`);
- S: a dict of three sub-dicts (`STITCHING_SUBDICTS`), inner keys prefixed `module.` by DDP (stripped).
`.safetensors` re-saves with the same key names load too.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from ..checkpoint import CheckpointError, load_strict, read_checkpoint, strip_prefix
from .appearance_feature_extractor import AppearanceConfig, AppearanceFeatureExtractor
from .motion_extractor import MotionExtractor, MotionExtractorConfig
from .spade_generator import GeneratorConfig, SPADEGenerator, fold_spectral_norm
from .stitching_retargeting import StitchingConfig, StitchingRetargeting
from .warping_network import WarpingConfig, WarpingNetwork

# sub-dict of the official stitching file -> our attribute
STITCHING_SUBDICTS = {"retarget_shoulder": "stitching", "retarget_mouth": "lip", "retarget_eye": "eye"}

NETWORKS: Mapping[str, tuple[type[nn.Module], type]] = {
    "appearance_feature_extractor": (AppearanceFeatureExtractor, AppearanceConfig),
    "motion_extractor": (MotionExtractor, MotionExtractorConfig),
    "warping_module": (WarpingNetwork, WarpingConfig),
    "spade_generator": (SPADEGenerator, GeneratorConfig),
    "stitching_retargeting_module": (StitchingRetargeting, StitchingConfig),
}


def _as_state_dict(obj: object, path: Path) -> dict[str, Tensor]:
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a plain state dict of tensors (found {type(obj).__name__}). "
                              "Is it the right file?")
    return dict(obj)


def stitching_state(obj: object, path: Path) -> dict[str, Tensor]:
    """Flatten the stitching file's three sub-dicts into our module's names, dropping DDP's `module.`."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict with {sorted(STITCHING_SUBDICTS)}, found {type(obj).__name__}")
    if all(isinstance(v, Tensor) for v in obj.values()):
        # flat re-saves (safetensors) spell the sub-dicts as '<name>_module.' or '<name>.'
        nested: dict[str, dict[str, Tensor]] = {}
        for key, value in obj.items():
            for name in STITCHING_SUBDICTS:
                for prefix in (f"{name}_module.", f"{name}."):
                    if key.startswith(prefix):
                        nested.setdefault(name, {})[key[len(prefix):]] = value
                        break
        obj = nested
    missing = [name for name in STITCHING_SUBDICTS if name not in obj]
    if missing:
        raise CheckpointError(f"{path} lacks the stitching sub-dicts {missing}. Is it "
                              "`stitching_retargeting_module.pth` from KwaiVGI/LivePortrait?")
    state = {}
    for name, attr in STITCHING_SUBDICTS.items():
        for key, value in strip_prefix(_as_state_dict(obj[name], path), "module.").items():
            state[f"{attr}.{key}"] = value
    return state


def _check_spectral_triples(state: Mapping[str, Tensor], path: Path) -> None:
    bases = {k.rsplit("_", 1)[0] for k in state if k.endswith((".weight_orig", ".weight_u", ".weight_v"))}
    missing = sorted(f"{b}_{s}" for b in bases for s in ("orig", "u", "v") if f"{b}_{s}" not in state)
    if missing:
        raise CheckpointError(f"{path} has incomplete spectral-norm weights; missing keys: {', '.join(missing[:8])}"
                              f"{' ...' if len(missing) > 8 else ''}. Is the file truncated or converted?")


def load_network(name: str, path: str | Path, config=None, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> nn.Module:
    """Build network `name` (a key of NETWORKS) and load the file at `path` into it; eval mode."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; expected one of {sorted(NETWORKS)}")
    path = Path(path)
    cls, config_cls = NETWORKS[name]
    module = cls(config if config is not None else config_cls())
    obj = read_checkpoint(path)
    if name == "stitching_retargeting_module":
        state = stitching_state(obj, path)
    else:
        state = _as_state_dict(obj, path)
        if name == "spade_generator":
            _check_spectral_triples(state, path)
            state = fold_spectral_norm(state)
    load_strict(module, state, path)
    return module.eval().requires_grad_(False).to(device=device, dtype=dtype)
