"""F, the appearance feature extractor: 256x256 RGB in [0, 1] -> 3-D appearance volume f_s (B, 32, 16, 64, 64).

Computed once per source image. Attribute names follow the official checkpoint
(`liveportrait/base_models/appearance_feature_extractor.pth`), including `resblocks_3d.3dr0`..`3dr5`.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .blocks import DownBlock2d, ResBlock3d, SameBlock2d


@dataclass(frozen=True)
class AppearanceConfig:
    image_channel: int = 3
    block_expansion: int = 64
    num_down_blocks: int = 2
    max_features: int = 512
    reshape_channel: int = 32  # max_features is split into reshape_channel x reshape_depth
    reshape_depth: int = 16
    num_resblocks: int = 6


class AppearanceFeatureExtractor(nn.Module):
    def __init__(self, config: AppearanceConfig = AppearanceConfig()):
        super().__init__()
        c = config
        assert c.reshape_channel * c.reshape_depth == c.max_features, "max_features must split into C x D"
        self.config = c
        self.first = SameBlock2d(c.image_channel, c.block_expansion, kernel_size=3, padding=1)
        widths = [min(c.max_features, c.block_expansion * 2**i) for i in range(c.num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(DownBlock2d(widths[i], widths[i + 1]) for i in range(c.num_down_blocks))
        self.second = nn.Conv2d(widths[-1], c.max_features, kernel_size=1)
        self.resblocks_3d = nn.Sequential()
        for i in range(c.num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(c.reshape_channel))

    def forward(self, image: Tensor) -> Tensor:
        x = self.first(image)  # Bx64x256x256
        for block in self.down_blocks:
            x = block(x)  # Bx128x128x128, Bx256x64x64
        x = self.second(x)  # Bx512x64x64
        B, _, H, W = x.shape
        x = x.view(B, self.config.reshape_channel, self.config.reshape_depth, H, W)  # Bx32x16x64x64
        return self.resblocks_3d(x)
