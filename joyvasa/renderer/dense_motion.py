"""Dense motion network, part of W: keypoints -> a dense 3-D deformation field and an occlusion map.

Each of the 21 keypoints proposes a translation of the whole volume (grid - x_d[k] + x_s[k]); a 3-D hourglass
looks at the source volume warped by each proposal plus Gaussian keypoint heatmaps, and predicts soft masks
that blend the 22 proposals (21 + identity background) into one deformation.

The coordinate grid spans [-1, 1] in the align_corners=True sense while every grid_sample uses
align_corners=False: the weights were trained with that mismatch, so it is kept on purpose.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import Hourglass

KP_VARIANCE = 0.01  # of the Gaussian keypoint heatmaps, in normalised volume units


@dataclass(frozen=True)
class DenseMotionConfig:
    num_kp: int = 21
    feature_channel: int = 32  # channels of f_s
    reshape_depth: int = 16
    compress: int = 4  # f_s is compressed to this many channels before warping 22 copies
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    estimate_occlusion_map: bool = True


class DenseMotion(NamedTuple):
    deformation: Tensor  # (B, D, H, W, 3) sampling grid into f_s
    occlusion_map: Tensor | None  # (B, 1, H, W) in [0, 1]


def coordinate_grid(depth: int, height: int, width: int, like: Tensor) -> Tensor:
    """(D, H, W, 3) grid of (x, y, z) in [-1, 1], endpoints included; device and dtype of `like`."""

    def axis(n: int) -> Tensor:
        i = torch.arange(n, device=like.device, dtype=like.dtype)
        return 2 * (i / (n - 1)) - 1

    z, y, x = torch.meshgrid(axis(depth), axis(height), axis(width), indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def keypoint_heatmaps(kp: Tensor, grid: Tensor) -> Tensor:
    """(B, K, 3) keypoints, (D, H, W, 3) grid -> (B, K, D, H, W) unnormalised Gaussians."""
    B, K, _ = kp.shape
    diff = grid[None, None] - kp.view(B, K, 1, 1, 1, 3)
    return torch.exp(-0.5 * (diff**2).sum(-1) / KP_VARIANCE)


class DenseMotionNetwork(nn.Module):
    def __init__(self, config: DenseMotionConfig = DenseMotionConfig()):
        super().__init__()
        c = config
        self.config = c
        motions = c.num_kp + 1
        self.hourglass = Hourglass(c.block_expansion, motions * (c.compress + 1), c.num_blocks, c.max_features)
        self.mask = nn.Conv3d(self.hourglass.out_filters, motions, kernel_size=7, padding=3)
        self.compress = nn.Conv3d(c.feature_channel, c.compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(c.compress, affine=True)
        if c.estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_filters * c.reshape_depth, 1, kernel_size=7, padding=3)

    def forward(self, feature: Tensor, kp_driving: Tensor, kp_source: Tensor) -> DenseMotion:
        B, _, D, H, W = feature.shape
        K = kp_driving.shape[1]
        dtype = feature.dtype
        # sampling grids, heatmaps and the blended deformation stay float32 whatever the network's dtype:
        # keypoint positions need the precision (as under LivePortrait's fp16 autocast)
        kp_driving, kp_source = kp_driving.float(), kp_source.float()
        feature = F.relu(self.norm(self.compress(feature))).float()  # Bx4xDxHxW

        grid = coordinate_grid(D, H, W, like=kp_source)  # DxHxWx3
        # motion 0 is the identity (background); motion k moves driving keypoint k onto source keypoint k
        to_source = grid[None, None] - kp_driving.view(B, K, 1, 1, 1, 3) + kp_source.view(B, K, 1, 1, 1, 3)
        sparse_motions = torch.cat([grid.expand(B, 1, D, H, W, 3), to_source], dim=1)  # Bx(K+1)xDxHxWx3

        copies = feature[:, None].expand(B, K + 1, *feature.shape[1:]).reshape(B * (K + 1), -1, D, H, W)
        deformed = F.grid_sample(copies, sparse_motions.reshape(B * (K + 1), D, H, W, 3), align_corners=False)
        deformed = deformed.view(B, K + 1, -1, D, H, W)  # Bx(K+1)x4xDxHxW

        heatmap = keypoint_heatmaps(kp_driving, grid) - keypoint_heatmaps(kp_source, grid)  # BxKxDxHxW
        heatmap = torch.cat([heatmap.new_zeros(B, 1, D, H, W), heatmap], dim=1)[:, :, None]  # Bx(K+1)x1xDxHxW

        x = torch.cat([heatmap, deformed], dim=2).view(B, -1, D, H, W)  # channel 5*j + c
        prediction = self.hourglass(x.to(dtype))  # Bx142xDxHxW

        mask = torch.softmax(self.mask(prediction).float(), dim=1)  # Bx(K+1)xDxHxW
        deformation = (sparse_motions * mask[..., None]).sum(dim=1)  # BxDxHxWx3

        occlusion_map = None
        if self.config.estimate_occlusion_map:
            occlusion_map = torch.sigmoid(self.occlusion(prediction.reshape(B, -1, H, W)).float())  # Bx1xHxW
        return DenseMotion(deformation, occlusion_map)
