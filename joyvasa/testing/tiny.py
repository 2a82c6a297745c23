"""Tiny, randomly initialised models: the released architectures at toy widths, for tests and benchmarks.

`tiny_renderer()` is a LivePortrait renderer (F, M, W, G and the stitching MLPs) of toy widths (a 64x64 source
gives 128x128 frames in milliseconds); `tiny_generator()` is a JoyVASA motion generator with a HuBERT (or
wav2vec 2.0) of the real strides (320 samples per frame) but widths of 16, a one-layer denoiser and a 4-step
schedule; `tiny_template()` is a synthetic motion template. Each is seeded, so two calls give the same model.
"""
from __future__ import annotations

import numpy as np
import torch

from ..motion import MotionGenerator, MotionTemplate
from ..motion.audio_encoder import AudioEncoder, build_speech_model, default_encoder_config
from ..motion.decode import TEMPLATE_KEYS
from ..motion.denoiser import DenoiserConfig, DenoisingNetwork
from ..motion.schedule import cosine_schedule
from ..renderer import LivePortraitRenderer
from ..renderer.appearance_feature_extractor import AppearanceConfig, AppearanceFeatureExtractor
from ..renderer.dense_motion import DenseMotionConfig
from ..renderer.motion_extractor import MotionExtractor, MotionExtractorConfig
from ..renderer.spade_generator import GeneratorConfig, SPADEGenerator
from ..renderer.stitching_retargeting import StitchingRetargeting
from ..renderer.warping_network import WarpingConfig, WarpingNetwork

__all__ = [
    "TINY_DENOISER",
    "TINY_ENCODER",
    "TINY_F",
    "TINY_G",
    "TINY_M",
    "TINY_STEPS",
    "TINY_W",
    "tiny_generator",
    "tiny_renderer",
    "tiny_template",
]

# ------------------------------------------------------------------------------------------------- renderer

TINY_F = AppearanceConfig(block_expansion=8, max_features=32, reshape_channel=4, reshape_depth=8, num_resblocks=1)
TINY_M = MotionExtractorConfig(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
TINY_W = WarpingConfig(block_expansion=8, max_features=32, dense_motion=DenseMotionConfig(
    feature_channel=4, reshape_depth=8, compress=2, block_expansion=4, max_features=16, num_blocks=2))
TINY_G = GeneratorConfig(input_channels=32, out_channels=8, spade_hidden=8, num_middle_blocks=1)


def tiny_renderer(dtype=torch.float32) -> LivePortraitRenderer:
    torch.manual_seed(0)
    nets = [AppearanceFeatureExtractor(TINY_F), MotionExtractor(TINY_M), WarpingNetwork(TINY_W),
            SPADEGenerator(TINY_G)]
    nets = [n.eval().to(dtype) for n in nets]
    return LivePortraitRenderer(*nets, StitchingRetargeting().eval())


# ------------------------------------------------------------------------------------------ motion generator

# A HuBERT of the real strides (320 samples per frame) but tiny widths.
TINY_ENCODER = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                    conv_dim=[8] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
TINY_DENOISER = DenoiserConfig(d_model=16, n_layers=1, n_heads=8, ffn_dim=32, pe_rows=200)
# (8 heads like the released network: the loader cannot read the head count from a checkpoint)
TINY_STEPS = 4


def tiny_template(seed: int = 0) -> MotionTemplate:
    rng = np.random.default_rng(seed)
    arrays = {}
    for key, size in TEMPLATE_KEYS.items():
        base = rng.standard_normal(size).astype(np.float32)
        arrays[key] = np.abs(base) + 1 if key.startswith(("std", "max")) else base * 0.1
    return MotionTemplate.from_arrays(arrays)


def tiny_generator(family: str = "hubert", seed: int = 0, encoder_config: dict | None = None) -> MotionGenerator:
    torch.manual_seed(seed)
    config = {**default_encoder_config(family), **TINY_ENCODER, **(encoder_config or {})}
    encoder = AudioEncoder(build_speech_model(config, family), d_model=TINY_DENOISER.d_model)
    denoiser = DenoisingNetwork(TINY_DENOISER)
    cfg = TINY_DENOISER
    return MotionGenerator(encoder, denoiser, cosine_schedule(TINY_STEPS), tiny_template(seed),
                           start_motion=torch.randn(1, cfg.n_prev_motions, cfg.motion_dim),
                           start_audio=torch.randn(1, cfg.n_prev_motions, cfg.d_model),
                           null_audio=torch.randn(1, 1, cfg.d_model)).eval()
