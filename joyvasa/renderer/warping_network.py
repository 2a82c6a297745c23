"""W, the warping module: (f_s, x_s, x_d) -> the source volume moved to the driving pose, as 2-D features.

The dense motion network predicts a deformation and an occlusion map; f_s is warped with a 5-D grid_sample,
its depth folded into channels (c * 16 + d), mixed by two 2-D convs and multiplied by the occlusion map.
Output (B, 256, 64, 64) feeds the SPADE generator. Names follow `liveportrait/base_models/warping_module.pth`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import SameBlock2d
from .dense_motion import DenseMotionConfig, DenseMotionNetwork


@dataclass(frozen=True)
class WarpingConfig:
    block_expansion: int = 64
    max_features: int = 512  # = reshape_channel x reshape_depth of f_s
    num_down_blocks: int = 2
    dense_motion: DenseMotionConfig = field(default_factory=DenseMotionConfig)


class WarpOutput(NamedTuple):
    out: Tensor  # (B, 256, 64, 64) input of the generator
    deformation: Tensor  # (B, 16, 64, 64, 3)
    occlusion_map: Tensor | None  # (B, 1, 64, 64)


class WarpingNetwork(nn.Module):
    def __init__(self, config: WarpingConfig = WarpingConfig()):
        super().__init__()
        self.config = config
        width = config.block_expansion * 2**config.num_down_blocks
        self.dense_motion_network = DenseMotionNetwork(config.dense_motion)
        self.third = SameBlock2d(config.max_features, width, kernel_size=3, padding=1, lrelu=True)
        self.fourth = nn.Conv2d(width, width, kernel_size=1)

    def forward(self, f_s: Tensor, x_s: Tensor, x_d: Tensor) -> WarpOutput:
        motion = self.dense_motion_network(f_s, kp_driving=x_d, kp_source=x_s)
        # the warp itself runs in float32 (the grid is float32); the convolutions in the network's dtype
        warped = F.grid_sample(f_s.float(), motion.deformation, align_corners=False).to(f_s.dtype)  # Bx32x16x64x64
        B, C, D, H, W = warped.shape
        out = self.fourth(self.third(warped.view(B, C * D, H, W)))  # Bx256x64x64
        if motion.occlusion_map is not None:
            out = out * motion.occlusion_map.to(out.dtype)
        return WarpOutput(out, motion.deformation, motion.occlusion_map)
