"""M, the motion extractor: 256x256 RGB in [0, 1] -> canonical keypoints, head pose, expression, scale, t.

A ConvNeXt-V2 tiny backbone (depths 3/3/9/3, widths 96/192/384/768) with seven linear heads. The official
checkpoint (`liveportrait/base_models/motion_extractor.pth`) stores it under the attribute `detector`, so every
key starts with `detector.`; we keep that name. Outputs are raw: head pose as 66-bin logits, keypoints and
expression flat (use `keypoints.bins_to_degrees` and reshape to (B, 21, 3)).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class MotionExtractorConfig:
    in_channels: int = 3
    depths: tuple[int, ...] = (3, 3, 9, 3)
    dims: tuple[int, ...] = (96, 192, 384, 768)
    num_kp: int = 21
    num_bins: int = 66  # head-pose bins of 3 degrees


class MotionOutput(NamedTuple):
    pitch: Tensor  # (B, num_bins) logits
    yaw: Tensor
    roll: Tensor
    t: Tensor  # (B, 3)
    exp: Tensor  # (B, 3 * num_kp)
    scale: Tensor  # (B, 1)
    kp: Tensor  # (B, 3 * num_kp) canonical keypoints


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (eps 1e-6)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GRN(nn.Module):
    """Global response normalisation (ConvNeXt-V2) on NHWC tensors."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: Tensor) -> Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)  # B x 1 x 1 x C
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtBlock(nn.Module):
    """depthwise 7x7 -> LN -> Linear 4x -> GELU -> GRN -> Linear, plus the input."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # NCHW -> NHWC
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtV2(nn.Module):
    """Backbone plus the seven heads; key names match the checkpoint after its `detector.` prefix."""

    def __init__(self, c: MotionExtractorConfig):
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(c.in_channels, c.dims[0], kernel_size=4, stride=4), LayerNorm2d(c.dims[0]))
        downs = [nn.Sequential(LayerNorm2d(c.dims[i]), nn.Conv2d(c.dims[i], c.dims[i + 1], kernel_size=2, stride=2))
                 for i in range(len(c.dims) - 1)]
        self.downsample_layers = nn.ModuleList([stem, *downs])
        self.stages = nn.ModuleList(nn.Sequential(*[ConvNeXtBlock(dim) for _ in range(depth)])
                                    for dim, depth in zip(c.dims, c.depths, strict=True))
        width = c.dims[-1]
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.fc_kp = nn.Linear(width, 3 * c.num_kp)
        self.fc_scale = nn.Linear(width, 1)
        self.fc_pitch = nn.Linear(width, c.num_bins)
        self.fc_yaw = nn.Linear(width, c.num_bins)
        self.fc_roll = nn.Linear(width, c.num_bins)
        self.fc_t = nn.Linear(width, 3)
        self.fc_exp = nn.Linear(width, 3 * c.num_kp)

    def forward(self, x: Tensor) -> MotionOutput:
        for down, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(down(x))  # ... -> Bx768x8x8
        h = self.norm(x.mean([-2, -1]))  # global average pool -> Bx768
        return MotionOutput(pitch=self.fc_pitch(h), yaw=self.fc_yaw(h), roll=self.fc_roll(h), t=self.fc_t(h),
                            exp=self.fc_exp(h), scale=self.fc_scale(h), kp=self.fc_kp(h))


class MotionExtractor(nn.Module):
    def __init__(self, config: MotionExtractorConfig = MotionExtractorConfig()):
        super().__init__()
        self.config = config
        self.detector = ConvNeXtV2(config)

    def forward(self, image: Tensor) -> MotionOutput:
        return self.detector(image)
