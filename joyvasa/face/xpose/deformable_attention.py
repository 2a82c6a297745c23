"""Multi-scale deformable attention (Deformable DETR, Zhu et al. 2021) in plain PyTorch.

Each query looks at a few learned sampling points around its reference point on every feature level and
returns their attention-weighted sum. The original X-Pose calls a CUDA-only compiled operator for the sampling;
here it is `grid_sample` (bilinear, zero padding, align_corners=False), which runs on any device and is what
the parity fixtures were computed with.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sample_multi_scale(value: Tensor, spatial_shapes: Sequence[tuple[int, int]], locations: Tensor,
                       weights: Tensor) -> Tensor:
    """Weighted bilinear samples of a multi-level value map.

    value: (B, S, M, D) with S = sum of H_l * W_l (levels concatenated, row-major), M heads of D channels.
    locations: (B, Q, M, L, P, 2) sampling points (x, y) in [0, 1] of each level (0 and 1 = outer pixel edges).
    weights: (B, Q, M, L, P) attention weights.
    Returns (B, Q, M * D).
    """
    B, _, M, D = value.shape
    _, Q, _, L, P, _ = locations.shape
    per_level = value.split([h * w for h, w in spatial_shapes], dim=1)
    grids = 2 * locations - 1  # grid_sample coordinates in [-1, 1]
    samples = []
    for level, (h, w) in enumerate(spatial_shapes):
        v = per_level[level].flatten(2).transpose(1, 2).reshape(B * M, D, h, w)
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # (B*M, Q, P, 2)
        samples.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    sampled = torch.stack(samples, dim=-2).flatten(-2)  # (B*M, D, Q, L*P)
    weights = weights.transpose(1, 2).reshape(B * M, 1, Q, L * P)
    out = (sampled * weights).sum(-1).view(B, M * D, Q)
    return out.transpose(1, 2).contiguous()  # (B, Q, M*D)


class MSDeformAttn(nn.Module):
    """Deformable attention over `n_levels` maps: `n_heads` heads x `n_points` points per level.

    Reference points are either (x, y) per level — offsets are in pixels of that level — or boxes
    (cx, cy, w, h) — offsets are in units of (box size / 2 / n_points).
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        self.n_levels, self.n_heads, self.n_points = n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)

    def forward(self, query: Tensor, reference_points: Tensor, value_input: Tensor,
                spatial_shapes: Sequence[tuple[int, int]]) -> Tensor:
        """query (B, Q, C); reference_points (B, Q, L, 2 or 4) in [0, 1]; value_input (B, S, C) -> (B, Q, C)."""
        B, Q, C = query.shape
        M, L, P = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(value_input).view(B, -1, M, C // M)  # (B, S, M, D)
        offsets = self.sampling_offsets(query).view(B, Q, M, L, P, 2)
        weights = self.attention_weights(query).view(B, Q, M, L * P).softmax(-1).view(B, Q, M, L, P)

        ref = reference_points[:, :, None, :, None, :]  # (B, Q, 1, L, 1, 2|4)
        if reference_points.shape[-1] == 2:
            wh = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=query.dtype, device=query.device)
            locations = ref + offsets / wh[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            locations = ref[..., :2] + offsets / P * ref[..., 2:] * 0.5
        else:
            raise ValueError(f"reference points must end in 2 (points) or 4 (boxes), got {reference_points.shape}")
        if value.dtype in (torch.float16, torch.bfloat16):
            # sample in float32, as the original does under autocast (bfloat16 grid_sample on CPU can give NaN)
            sampled = sample_multi_scale(value.float(), spatial_shapes, locations.float(), weights.float())
            return self.output_proj(sampled.to(value.dtype))
        return self.output_proj(sample_multi_scale(value, spatial_shapes, locations, weights))
