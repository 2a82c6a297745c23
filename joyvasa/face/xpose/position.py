"""Sine position encodings of X-Pose (DETR family): image feature maps, reference boxes, text positions.

All three map a coordinate c (already scaled to [0, 2*pi] or a raw position) to features
c / T^(2*floor(i/2)/n) for i = 0..n-1, with sin on even and cos on odd features, interleaved.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def _frequencies(n: int, temperature: float, device) -> Tensor:
    i = torch.arange(n, dtype=torch.float32, device=device)
    return temperature ** (2 * (i // 2) / n)  # (n,)


def _phase_dtype(x: Tensor) -> torch.dtype:
    """Phases are computed in at least float32 (float16 / bfloat16 inputs would lose the high frequencies)."""
    return torch.promote_types(x.dtype, torch.float32)


def _interleave_sin_cos(x: Tensor) -> Tensor:
    """(..., n) phases -> (..., n): sin of the even phases and cos of the odd ones, interleaved."""
    return torch.stack((x[..., 0::2].sin(), x[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_position_map(height: int, width: int, num_feats: int = 128, temperature: float = 20.0,
                      device=None) -> Tensor:
    """Position encoding of an unpadded (H, W) feature map: (1, 2*num_feats, H, W), [y features, x features].

    Row/column indices count from 1 and are normalised by (size + 1e-6) to (0, 2*pi].
    """
    ones = torch.ones(1, height, width, dtype=torch.float32, device=device)
    y = ones.cumsum(1)
    x = ones.cumsum(2)
    y = y / (y[:, -1:, :] + 1e-6) * (2 * math.pi)
    x = x / (x[:, :, -1:] + 1e-6) * (2 * math.pi)
    freq = _frequencies(num_feats, temperature, device)
    pos_x = _interleave_sin_cos(x[..., None] / freq)  # (1, H, W, n)
    pos_y = _interleave_sin_cos(y[..., None] / freq)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def sine_embed_boxes(boxes: Tensor, num_feats: int = 128, temperature: float = 10000.0) -> Tensor:
    """(..., 4) boxes (cx, cy, w, h) in [0, 1] -> (..., 4 * num_feats) features in the order [y, x, w, h]."""
    freq = _frequencies(num_feats, temperature, boxes.device)
    b = boxes.to(_phase_dtype(boxes))
    x, y, w, h = (_interleave_sin_cos((b[..., i] * (2 * math.pi))[..., None] / freq) for i in range(4))
    return torch.cat((y, x, w, h), dim=-1).to(boxes.dtype)


def sine_embed_positions(position_ids: Tensor, num_feats: int = 256, temperature: float = 10000.0) -> Tensor:
    """(B, N) text position ids -> (B, N, num_feats) features of 2*pi*id."""
    freq = _frequencies(num_feats, temperature, position_ids.device)
    ids = position_ids.to(_phase_dtype(position_ids))
    return _interleave_sin_cos(ids[..., None] * (2 * math.pi) / freq).to(position_ids.dtype)
