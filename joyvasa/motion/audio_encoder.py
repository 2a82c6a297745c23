"""Audio encoder: 16 kHz speech windows -> 25 fps features for the denoiser.

A Hugging Face `HubertModel` (chinese-hubert-base architecture; `Wav2Vec2Model` when a checkpoint says
`audio_model == 'wav2vec2'`), built from a config only: every weight comes from the JoyVASA checkpoint,
whose fine-tuned copy overrides the public one. Per window of S samples:

    reflect-pad 40 + 40 samples -> conv stack (2 S / 640 frames at 50 Hz) -> transformer -> last hidden state
    -> mean of frames (2k, 2k + 1) (= the original's linear 200 -> 100 interpolation) -> Linear 768 -> 256.

The transformer is run as an explicit loop over its parts (feature projection, convolutional positional
embedding, layer norm, layers) instead of through `HubertModel.forward`: that works the same on transformers
4.45+ and 5.x, which differ in what `forward` and the encoder return.

Attribute names follow the checkpoint keys (`audio_encoder.*`, `audio_feature_map.*`).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from torch import Tensor, nn

from .audio import pad_for_encoder
from .constants import ENCODER_FRAMES_PER_MOTION_FRAME, SAMPLES_PER_FRAME

log = logging.getLogger(__name__)

EncoderFamily = Literal["hubert", "wav2vec2"]

HUBERT_CONFIG = Path(__file__).with_name("hubert_config.json")  # chinese-hubert-base (= hubert-base layout)

# `args.audio_model` of a checkpoint -> (architecture, folders of the original's Hugging Face configs)
AUDIO_MODELS: Mapping[str, tuple[EncoderFamily, tuple[str, ...]]] = {
    "hubert_zh_ori": ("hubert", ("TencentGameMate:chinese-hubert-base", "chinese-hubert-base")),
    "hubert_zh": ("hubert", ("TencentGameMate:chinese-hubert-base", "chinese-hubert-base")),
    "hubert": ("hubert", ("hubert-base-ls960",)),
    "wav2vec2": ("wav2vec2", ("wav2vec2-base-960h",)),
}


def encoder_family(audio_model: str) -> EncoderFamily:
    if audio_model not in AUDIO_MODELS:
        raise ValueError(f"Unknown audio_model {audio_model!r} in the checkpoint; supported: {sorted(AUDIO_MODELS)}.")
    return AUDIO_MODELS[audio_model][0]


def default_encoder_config(family: EncoderFamily) -> dict:
    """The config used when no config.json is found: hubert-base shipped with the pack; wav2vec2-base."""
    if family == "hubert":
        return json.loads(HUBERT_CONFIG.read_text())
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config().to_dict()  # the defaults are wav2vec2-base's architecture


def build_speech_model(config: Mapping, family: EncoderFamily) -> nn.Module:
    """A randomly initialised HubertModel / Wav2Vec2Model of the given config (weights are loaded later)."""
    if family == "hubert":
        from transformers import HubertConfig as Config
        from transformers import HubertModel as Model
    elif family == "wav2vec2":
        from transformers import Wav2Vec2Config as Config
        from transformers import Wav2Vec2Model as Model
    else:
        raise ValueError(f"Unknown audio encoder family {family!r}")
    cfg = Config.from_dict(dict(config))
    # Eager attention: the attention of the original's environment (transformers 4.39), and fully
    # supported by every transformers version we run on.
    cfg._attn_implementation = "eager"
    return Model(cfg).eval()


def _first(out):
    return out[0] if isinstance(out, tuple | list) else out


class AudioEncoder(nn.Module):
    """(N, S) speech windows at 16 kHz, S a multiple of 640 -> (N, S / 640, d_model) features."""

    def __init__(self, speech_model: nn.Module, d_model: int = 256):
        super().__init__()
        self.audio_encoder = speech_model
        self.audio_feature_map = nn.Linear(speech_model.config.hidden_size, d_model)

    def conv_features(self, audio: Tensor) -> Tensor:
        """(N, S') encoder-padded audio -> (N, 512, F) convolutional features (50 Hz)."""
        return self.audio_encoder.feature_extractor(audio)

    def hidden_states(self, audio: Tensor) -> Tensor:
        """(N, S') encoder-padded audio -> (N, F, hidden) last hidden state, without attention mask."""
        model = self.audio_encoder
        x = self.conv_features(audio).transpose(1, 2)  # (N, F, 512)
        x = _first(model.feature_projection(x))  # wav2vec2 returns (projected, normed)
        encoder = model.encoder
        if model.config.do_stable_layer_norm:  # pre-LN variant: layer norm after the layers
            x = x + encoder.pos_conv_embed(x)
            for layer in encoder.layers:
                x = _first(layer(x))
            return encoder.layer_norm(x)
        x = encoder.layer_norm(x + encoder.pos_conv_embed(x))
        for layer in encoder.layers:
            x = _first(layer(x))
        return x  # (N, F, hidden)

    @staticmethod
    def to_motion_rate(hidden: Tensor) -> Tensor:
        """(N, 2L, C) 50 Hz -> (N, L, C) 25 Hz: mean of each pair of frames.

        Computed channel-first and returned as a transposed view, the layout of the original's
        F.interpolate: the projection's matmul kernel depends on the layout, and so does its last bit."""
        N, F, C = hidden.shape
        x = hidden.transpose(1, 2).reshape(N, C, F // ENCODER_FRAMES_PER_MOTION_FRAME, ENCODER_FRAMES_PER_MOTION_FRAME)
        return x.mean(3).transpose(1, 2)  # (N, L, C)

    def forward(self, windows: Tensor) -> Tensor:
        N, S = windows.shape
        if S % SAMPLES_PER_FRAME:
            raise ValueError(f"window length {S} is not a whole number of frames ({SAMPLES_PER_FRAME} samples)")
        n_frames = S // SAMPLES_PER_FRAME
        hidden = self.hidden_states(pad_for_encoder(windows))  # (N, 2L, C)
        if hidden.shape[1] != n_frames * ENCODER_FRAMES_PER_MOTION_FRAME:
            raise RuntimeError(f"audio encoder gave {hidden.shape[1]} frames for {n_frames} motion frames; "
                               "its config must have a total stride of 320 samples")
        return self.audio_feature_map(self.to_motion_rate(hidden))  # (N, L, d)
