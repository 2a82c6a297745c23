"""Safe, strict loading of `motion_generator_hubert_chinese.pt` and `motion_template.pkl`.

The checkpoint is `{"args": argparse.Namespace, "model": state_dict, "iter": int}`, pickled on Linux. It is
read with `torch.load(weights_only=True)` and an allow-list of exactly what the official file needs beyond
tensors: `argparse.Namespace` and the `pathlib.PosixPath` inside it (`args.data_root`). Path objects are
rebuilt as *pure* paths (`PurePosixPath` / `PureWindowsPath`), which every OS can create: a Linux
`PosixPath` cannot be instantiated on Windows, and the value is never used.

`motion_template.pkl` is a plain pickled dict of NumPy arrays. It goes through a restricted unpickler that
admits only NumPy's array reconstruction (`_reconstruct`, `ndarray`, `dtype`); anything else - a function, a
class, a module attribute - is refused before it can run.

The state dict is split by prefix and every key must land somewhere:
- `audio_encoder.*`, `audio_feature_map.*` -> `AudioEncoder` (both weight-norm spellings mapped);
- `denoising_net.*` -> `DenoisingNetwork` (except `denoising_net.TE.pe`, which the original drops and
  rebuilds; so do we);
- `diffusion_sched.*` -> `DiffusionSchedule`;
- `start_motion_feat`, `start_audio_feat`, `null_audio_feat` -> the generator's learned tensors.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from torch import Tensor

from ..checkpoint import TRAINING_ARGS_GLOBALS, CheckpointError, first_line, load_strict, read_checkpoint
from ..numpy_pickle import ARRAY_GLOBALS, NumpyOnlyUnpickler, RefusedGlobal
from .audio_encoder import AUDIO_MODELS, AudioEncoder, build_speech_model, default_encoder_config, encoder_family
from .constants import FPS
from .decode import MotionTemplate
from .denoiser import DenoiserConfig, DenoisingNetwork, PEMode
from .generator import MotionGenerator
from .schedule import BUFFER_NAMES, DiffusionSchedule

log = logging.getLogger(__name__)


# `args` fields the inference reads, with train.py's defaults for a checkpoint that lacks one.
ARG_DEFAULTS = {
    "motion_feat_dim": 70,
    "n_motions": 100,
    "n_prev_motions": 25,
    "feature_dim": 256,
    "audio_model": "hubert_zh_ori",
    "n_diff_steps": 50,
    "fps": FPS,
    "pad_mode": "zero",
}

LEARNED_TENSORS = ("start_motion_feat", "start_audio_feat", "null_audio_feat")
DROPPED_KEYS = ("denoising_net.TE.pe",)  # rebuilt by the network, as the original does

# HuBERT's positional convolution uses weight norm; its keys depend on the torch/transformers versions that
# wrote (or read) them. Each pair is one tensor under the old and the parametrizations spelling.
WEIGHT_NORM_SPELLINGS = (
    ("conv.weight_g", "conv.parametrizations.weight.original0"),
    ("conv.weight_v", "conv.parametrizations.weight.original1"),
)


# ------------------------------------------------------------------------------------------------- template

# the allow-list is shared with the motion-file reader (joyvasa.direct.motion_file): NumPy arrays only
_ARRAY_GLOBALS = ARRAY_GLOBALS
_RefusedGlobal = RefusedGlobal
_ArrayOnlyUnpickler = NumpyOnlyUnpickler


def read_motion_template(path: str | Path) -> MotionTemplate:
    """Read motion_template.pkl without executing anything but NumPy array reconstruction."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Motion template not found: {path}. It is JoyVASA/motion_template/motion_template.pkl "
                              "from the Hugging Face repo jdh-algo/JoyVASA.")
    data = path.read_bytes()
    if zipfile.is_zipfile(path):  # torch.save writes zip archives; the template is a bare pickle
        raise CheckpointError(f"{path} is a PyTorch checkpoint, not JoyVASA's motion_template.pkl (a pickle of NumPy "
                              "arrays). Check that the files are in their official places (not swapped).")
    try:
        arrays = _ArrayOnlyUnpickler(io.BytesIO(data)).load()
    except _RefusedGlobal as err:
        raise CheckpointError(
            f"Refused to load {path}: it asks to import {err}, but the official motion template holds only NumPy "
            "arrays; nothing in it was run. Is it the right file? Download motion_template.pkl again from the "
            "Hugging Face repo jdh-algo/JoyVASA.") from None
    except Exception as err:  # truncated or not a pickle at all
        raise CheckpointError(f"Cannot read {path}: {first_line(err)}. It is not a complete pickle; download "
                              "motion_template.pkl again.") from None
    if not isinstance(arrays, dict) or not all(
            isinstance(k, str) and isinstance(v, np.ndarray) and v.dtype.kind in "fiu" for k, v in arrays.items()):
        raise CheckpointError(f"{path} is not a dict of numeric NumPy arrays. Is it JoyVASA's motion_template.pkl?")
    try:
        return MotionTemplate.from_arrays(arrays, source=str(path))
    except ValueError as err:
        raise CheckpointError(str(err)) from None


# ----------------------------------------------------------------------------------------------- checkpoint

def read_motion_checkpoint(path: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """Safely read the motion-generator file -> (args read by the inference, state dict).

    A bare state dict (e.g. a safetensors re-save) is accepted too; its args take train.py's defaults."""
    path = Path(path)
    obj = read_checkpoint(path, TRAINING_ARGS_GLOBALS)
    if isinstance(obj, Mapping) and "model" in obj:
        state, ns = obj["model"], obj.get("args")
    else:
        state, ns = obj, None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a JoyVASA motion-generator state dict. Is it "
                              "motion_generator_hubert_chinese.pt?")
    given = vars(ns) if isinstance(ns, argparse.Namespace) else dict(ns or {})
    args = {k: (given[k] if given.get(k) is not None else default) for k, default in ARG_DEFAULTS.items()}
    if ns is None:
        log.info("%s has no training args; using the released model's values %s", path.name, args)
    return args, dict(state)


def split_state(state: Mapping[str, Tensor], source: str) -> dict[str, dict[str, Tensor]]:
    """Group keys by destination; every key must have one."""
    parts: dict[str, dict[str, Tensor]] = {"encoder": {}, "denoiser": {}, "schedule": {}, "learned": {}}
    unknown = []
    for key, value in state.items():
        if key in DROPPED_KEYS:
            continue
        if key.startswith(("audio_encoder.", "audio_feature_map.")):
            parts["encoder"][key] = value
        elif key.startswith("denoising_net."):
            parts["denoiser"][key[len("denoising_net."):]] = value
        elif key.startswith("diffusion_sched."):
            parts["schedule"][key[len("diffusion_sched."):]] = value
        elif key in LEARNED_TENSORS:
            parts["learned"][key] = value
        else:
            unknown.append(key)
    missing = [k for k in LEARNED_TENSORS if k not in parts["learned"]]
    if unknown or missing:
        raise CheckpointError(f"{source} is not a JoyVASA motion generator of the known layout: "
                              + (f"unknown keys {unknown[:8]} " if unknown else "")
                              + (f"missing {missing}" if missing else ""))
    unknown_sched = [k for k in parts["schedule"] if k not in BUFFER_NAMES]
    if unknown_sched:
        raise CheckpointError(f"{source}: unknown schedule buffers {unknown_sched}")
    return parts


def match_weight_norm_spelling(state: Mapping[str, Tensor], expected: set[str]) -> dict[str, Tensor]:
    """Rename weight-norm keys to the spelling of the model at hand (either direction)."""
    out = {}
    for key, value in state.items():
        if key not in expected:
            for old, new in WEIGHT_NORM_SPELLINGS:
                for a, b in ((old, new), (new, old)):
                    if key.endswith(a) and key[: -len(a)] + b in expected:
                        key = key[: -len(a)] + b
                        break
        out[key] = value
    return out


def find_encoder_config(checkpoint_path: str | Path, audio_model: str) -> Path | None:
    """A Hugging Face `config.json` for the encoder in the weights folder, as the original lays it out:
    `<pretrained_weights>/TencentGameMate:chinese-hubert-base/config.json` (or `chinese-hubert-base/` where
    ':' is not allowed) beside `<pretrained_weights>/JoyVASA/`; also `<folder>/chinese-hubert-base/` next to
    a `motion_generator/` folder (ComfyUI's `models/joyvasa/`)."""
    checkpoint_path = Path(checkpoint_path).resolve()
    folders = AUDIO_MODELS[audio_model][1] if audio_model in AUDIO_MODELS else ()
    roots = [checkpoint_path.parents[i] for i in (2, 1) if len(checkpoint_path.parents) > i]
    for root in roots:
        for folder in folders:
            candidate = root / folder / "config.json"
            if candidate.is_file():
                return candidate
    return None


def _encoder_config(checkpoint_path: Path, audio_model: str, encoder_config) -> dict:
    if isinstance(encoder_config, Mapping):
        return dict(encoder_config)
    path = Path(encoder_config) if encoder_config is not None else find_encoder_config(checkpoint_path, audio_model)
    if path is not None and path.is_dir():
        path = path / "config.json"
    if path is None:
        log.info("no encoder config.json beside %s; using the built-in %s config", checkpoint_path.name,
                 encoder_family(audio_model))
        return default_encoder_config(encoder_family(audio_model))
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"Cannot read the audio encoder config {path}: {err}") from None
    log.info("audio encoder config: %s", path)
    return config


def _denoiser_config(args: dict, state: Mapping[str, Tensor], pe_mode: PEMode, source: str) -> DenoiserConfig:
    try:
        d_model = state["feature_proj.weight"].shape[0]
        motion_dim = state["feature_proj.weight"].shape[1]
        ffn_dim = state["transformer.layers.0.linear1.weight"].shape[0]
        pe_rows = state["PE.pe"].shape[1]
    except KeyError as err:
        raise CheckpointError(f"{source}: the denoiser weights lack {err.args[0]}") from None
    layer_ids = {int(m.group(1)) for k in state if (m := re.match(r"transformer\.layers\.(\d+)\.", k))}
    config = DenoiserConfig(motion_dim=motion_dim, d_model=d_model, n_layers=len(layer_ids), ffn_dim=ffn_dim,
                            n_motions=int(args["n_motions"]), n_prev_motions=int(args["n_prev_motions"]),
                            pe_rows=pe_rows, pe_mode=pe_mode)
    if (motion_dim, d_model) != (int(args["motion_feat_dim"]), int(args["feature_dim"])):
        raise CheckpointError(f"{source}: args say motion_feat_dim={args['motion_feat_dim']}, "
                              f"feature_dim={args['feature_dim']} but the weights have {motion_dim}, {d_model}")
    return config


def load_motion_generator(checkpoint_path: str | Path, template_path: str | Path | None = None, *,
                          encoder_config: str | Path | Mapping | None = None,
                          pe_mode: PEMode = "legacy") -> MotionGenerator:
    """Build the motion generator from the official files, strictly; on CPU, in eval mode.

    template_path: default `<pretrained_weights>/JoyVASA/motion_template/motion_template.pkl` beside the
    checkpoint's folder. encoder_config: a HF config.json (or its folder, or a dict) for the audio encoder;
    default: a config.json found in the weights folder (`find_encoder_config`), else the pack's own
    hubert-base config. pe_mode: see `joyvasa.motion.denoiser` ("legacy" matches the released weights).
    """
    checkpoint_path = Path(checkpoint_path)
    source = str(checkpoint_path)
    args, state = read_motion_checkpoint(checkpoint_path)
    if int(args["fps"]) != FPS:
        raise CheckpointError(f"{source} was trained at {args['fps']} fps; only {FPS} fps is supported.")
    if args["pad_mode"] not in ("zero", "replicate"):
        raise CheckpointError(f"{source}: unknown pad_mode {args['pad_mode']!r} (expected 'zero' or 'replicate')")
    parts = split_state(state, source)

    family = encoder_family(str(args["audio_model"]))
    speech_model = build_speech_model(_encoder_config(checkpoint_path, str(args["audio_model"]), encoder_config),
                                      family)
    encoder = AudioEncoder(speech_model, d_model=int(args["feature_dim"]))
    encoder_state = match_weight_norm_spelling(parts["encoder"], set(encoder.state_dict()))
    load_strict(encoder, encoder_state, source)

    denoiser = DenoisingNetwork(_denoiser_config(args, parts["denoiser"], pe_mode, source))
    load_strict(denoiser, parts["denoiser"], source)

    try:
        schedule = DiffusionSchedule.from_buffers(parts["schedule"])
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from None
    if schedule.n_steps >= denoiser.config.step_rows:
        raise CheckpointError(f"{source}: {schedule.n_steps} diffusion steps exceed the step table "
                              f"({denoiser.config.step_rows - 1} steps)")

    if template_path is None:
        template_path = checkpoint_path.parent.parent / "motion_template" / "motion_template.pkl"
    if int(args["n_diff_steps"]) != schedule.n_steps:
        log.warning("%s: args say %s diffusion steps, the stored schedule has %d; using the schedule",
                    checkpoint_path.name, args["n_diff_steps"], schedule.n_steps)

    template = read_motion_template(template_path)
    learned = parts["learned"]
    try:
        model = MotionGenerator(encoder, denoiser, schedule, template, start_motion=learned["start_motion_feat"],
                                start_audio=learned["start_audio_feat"], null_audio=learned["null_audio_feat"],
                                pad_mode=str(args["pad_mode"]))
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from None
    return model.eval()
