"""Loading the motion generator: official container, strict keys, both weight-norm spellings, wav2vec2,
encoder config lookup, and refusal of pickles that carry code."""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from joyvasa.checkpoint import TRAINING_ARGS_GLOBALS as CHECKPOINT_GLOBALS
from joyvasa.checkpoint import CheckpointError, read_checkpoint
from joyvasa.motion import generate_motion, load_motion_generator
from joyvasa.motion.audio_encoder import default_encoder_config
from joyvasa.motion.decode import TEMPLATE_KEYS
from joyvasa.motion.loading import find_encoder_config, read_motion_checkpoint, read_motion_template
from joyvasa.testing.tiny import TINY_ENCODER, tiny_generator

CHECKPOINT = "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt"
TEMPLATE = "JoyVASA/motion_template/motion_template.pkl"
ENCODER_FOLDERS = {"hubert_zh_ori": "TencentGameMate:chinese-hubert-base", "wav2vec2": "wav2vec2-base-960h"}


def official_state(model) -> OrderedDict:
    """The generator's tensors under the original DitTalkingHead's key names."""
    state = OrderedDict()
    state["start_audio_feat"] = model.start_audio
    state["start_motion_feat"] = model.start_motion
    state["null_audio_feat"] = model.null_audio
    state.update(model.encoder.state_dict())
    state["denoising_net.TE.pe"] = model.denoiser.TE.pe  # stored by the original, dropped on load
    state.update({f"denoising_net.{k}": v for k, v in model.denoiser.state_dict().items()})
    s = model.schedule
    betas = 1 - s.alphas
    sched = {"betas": betas, "alphas": s.alphas, "alpha_bars": s.alpha_bars, "sigmas_flex": betas.sqrt(),
             "sigmas_inflex": s.sigmas}
    state.update({f"diffusion_sched.{k}": v for k, v in sched.items()})
    return OrderedDict((k, v.detach().clone()) for k, v in state.items())


def write_weights(root: pathlib.Path, model, audio_model: str = "hubert_zh_ori", state=None, **args) -> pathlib.Path:
    """Write the model as the official .pt + template + encoder config.json under `root`; returns the .pt."""
    cfg = model.denoiser.config
    ns = argparse.Namespace(motion_feat_dim=cfg.motion_dim, n_motions=cfg.n_motions, n_prev_motions=cfg.n_prev_motions,
                            feature_dim=cfg.d_model, audio_model=audio_model, n_diff_steps=model.schedule.n_steps,
                            fps=25, pad_mode="zero", use_indicator=True, data_root=pathlib.PosixPath("data"),
                            n_layers=6)
    for key, value in args.items():
        setattr(ns, key, value)
    path = root / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"args": ns, "model": official_state(model) if state is None else state, "iter": 20000}, path)
    (root / TEMPLATE).parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: getattr(model.template, k).numpy() for k in TEMPLATE_KEYS}
    arrays |= {"mean_lip": np.zeros(1, np.float32), "abs_max_R": np.ones(9, np.float32)}  # unused extras
    with open(root / TEMPLATE, "wb") as f:
        pickle.dump(arrays, f)
    folder = root / ENCODER_FOLDERS[audio_model]
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(model.encoder.audio_encoder.config.to_dict()))
    return path


@pytest.fixture(scope="module")
def tiny():
    return tiny_generator()


def assert_same_motion(a, b):
    audio = 0.1 * torch.randn(20_000, generator=torch.Generator().manual_seed(3))
    expected, actual = (generate_motion(m, audio, 16000, seed=5).raw for m in (a, b))
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_official_layout_round_trip(tmp_path, tiny):
    path = write_weights(tmp_path, tiny)
    loaded = load_motion_generator(path)  # template and encoder config found beside it
    assert loaded.encoder.audio_encoder.config.hidden_size == TINY_ENCODER["hidden_size"]
    assert loaded.pe_mode == "legacy" and loaded.schedule.n_steps == tiny.schedule.n_steps
    assert_same_motion(tiny, loaded)


def test_old_weight_norm_spelling(tmp_path, tiny):
    state = official_state(tiny)
    renamed = OrderedDict()
    for key, value in state.items():
        key = key.replace("conv.parametrizations.weight.original0", "conv.weight_g")
        renamed[key.replace("conv.parametrizations.weight.original1", "conv.weight_v")] = value
    assert any(k.endswith("conv.weight_g") for k in renamed)
    assert_same_motion(tiny, load_motion_generator(write_weights(tmp_path, tiny, state=renamed)))


@pytest.mark.parametrize("change, message", [
    ("extra_encoder_key", "unexpected keys: audio_encoder.encoder.extra"),
    ("missing_encoder_key", "missing keys: audio_encoder.encoder.layer_norm.bias"),
    ("unknown_key", "unknown keys"),
    ("missing_start", "missing"),
])
def test_every_key_must_be_used(tmp_path, tiny, change, message):
    state = official_state(tiny)
    if change == "extra_encoder_key":
        state["audio_encoder.encoder.extra"] = torch.zeros(3)
    elif change == "missing_encoder_key":
        del state["audio_encoder.encoder.layer_norm.bias"]
    elif change == "unknown_key":
        state["person_feat_map.weight"] = torch.zeros(3)
    else:
        del state["start_motion_feat"]
    with pytest.raises(CheckpointError, match=message):
        load_motion_generator(write_weights(tmp_path, tiny, state=state))


def test_wav2vec2_checkpoint(tmp_path):
    model = tiny_generator("wav2vec2")
    path = write_weights(tmp_path, model, audio_model="wav2vec2")
    loaded = load_motion_generator(path)
    assert type(loaded.encoder.audio_encoder).__name__ == "Wav2Vec2Model"
    assert_same_motion(model, loaded)


def test_explicit_encoder_config_wins(tmp_path, tiny):
    path = write_weights(tmp_path, tiny)
    full_size = json.dumps(default_encoder_config("hubert"))
    (tmp_path / ENCODER_FOLDERS["hubert_zh_ori"] / "config.json").write_text(full_size)
    with pytest.raises(CheckpointError, match="does not fit"):  # the full-size config found in the folder
        load_motion_generator(path)
    config = tiny.encoder.audio_encoder.config.to_dict()
    assert_same_motion(tiny, load_motion_generator(path, encoder_config=config))


def test_find_encoder_config_windows_folder_name(tmp_path):
    checkpoint = tmp_path / CHECKPOINT
    assert find_encoder_config(checkpoint, "hubert_zh_ori") is None
    (tmp_path / "chinese-hubert-base").mkdir()
    (tmp_path / "chinese-hubert-base" / "config.json").write_text("{}")
    assert find_encoder_config(checkpoint, "hubert_zh") == tmp_path / "chinese-hubert-base" / "config.json"


def test_checkpoint_args_and_pure_paths(tmp_path, tiny):
    path = write_weights(tmp_path, tiny)
    args, state = read_motion_checkpoint(path)
    assert args["audio_model"] == "hubert_zh_ori" and args["n_motions"] == 100 and "denoising_net.TE.pe" in state
    # The PosixPath in args is rebuilt as a PurePosixPath, which Windows can create too.
    data_root = read_checkpoint(path, CHECKPOINT_GLOBALS)["args"].data_root
    assert type(data_root) is pathlib.PurePosixPath and str(data_root) == "data"


def test_unsupported_fps(tmp_path, tiny):
    with pytest.raises(CheckpointError, match="fps"):
        load_motion_generator(write_weights(tmp_path, tiny, fps=30))


# ------------------------------------------------------------------------------------ pickles carrying code

class _Payload:
    """Unpickling this would call os.system and create the marker file."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_template_with_a_callable_is_refused(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "motion_template.pkl"
    path.write_bytes(pickle.dumps({"mean_exp": np.zeros(63, np.float32), "hook": _Payload(marker)}))
    with pytest.raises(CheckpointError, match=r"Refused to load .*import (posix|nt)\.system.*nothing in it was run"):
        read_motion_template(path)
    assert not marker.exists()


def test_checkpoint_with_a_callable_is_refused(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "motion_generator_hubert_chinese.pt"
    torch.save({"args": argparse.Namespace(), "model": {"x": torch.zeros(1)}, "iter": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="Refused to load"):
        load_motion_generator(path)
    assert not marker.exists()


def test_template_must_hold_numeric_arrays(tmp_path):
    path = tmp_path / "motion_template.pkl"
    path.write_bytes(pickle.dumps({"mean_exp": np.array(["a"] * 63, dtype=object)}))
    with pytest.raises(CheckpointError):
        read_motion_template(path)
    path.write_bytes(pickle.dumps({"mean_exp": np.zeros(63, np.float32)}))
    with pytest.raises(CheckpointError, match="lacks"):
        read_motion_template(path)


def test_template_numpy1_module_path_is_admitted():
    from joyvasa.motion.loading import _ArrayOnlyUnpickler

    reconstruct = _ArrayOnlyUnpickler.find_class(None, "numpy.core.multiarray", "_reconstruct")
    assert reconstruct is np.ndarray((0,)).__reduce__()[0]
    with pytest.raises(pickle.UnpicklingError):
        _ArrayOnlyUnpickler.find_class(None, "numpy", "load")
