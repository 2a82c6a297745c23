"""Implicit-keypoint math of LivePortrait, as small pure functions over tensors.

Conventions (LivePortrait, arXiv 2407.03168):
- Head pose comes from the motion extractor as 66-bin logits per angle; 3 degrees per bin, offset -97.5.
- `rotation_matrix` returns the *transposed* rotation (Rz(roll) @ Ry(yaw) @ Rx(pitch))^T, because keypoints
  are row vectors multiplied on the right: x @ R rotates by pitch first, roll last, about fixed axes.
- Keypoints live in the warping volume's normalised space [-1, 1]^3; t_z is never added (Eqn. 2 with t_z = 0).

Every function keeps its inputs' device and dtype.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

NUM_KP = 21
NUM_BINS = 66
DEGREES_PER_BIN = 3.0
BIN_OFFSET_DEG = 97.5

# Keypoints whose expression the lip MLP and the absolute-lip rule of JoyVASA touch (LivePortrait §2.4).
LIP_KP = (6, 12, 14, 17, 19, 20)
EYE_KP = (11, 13, 15, 16, 18)


def bins_to_degrees(logits: Tensor) -> Tensor:
    """(B, 66) head-pose logits -> (B, 1) degrees: 3 * E[bin] - 97.5."""
    idx = torch.arange(logits.shape[1], device=logits.device, dtype=logits.dtype)
    prob = torch.softmax(logits, dim=1)
    return (torch.sum(prob * idx, dim=1) * DEGREES_PER_BIN - BIN_OFFSET_DEG)[:, None]


def rotation_matrix(pitch_deg: Tensor, yaw_deg: Tensor, roll_deg: Tensor) -> Tensor:
    """(B, 1) angles in degrees -> (B, 3, 3) = (Rz(roll) Ry(yaw) Rx(pitch))^T, the row-vector form."""
    pitch = (pitch_deg / 180 * math.pi).reshape(-1)
    yaw = (yaw_deg / 180 * math.pi).reshape(-1)
    roll = (roll_deg / 180 * math.pi).reshape(-1)
    one, zero = torch.ones_like(pitch), torch.zeros_like(pitch)

    def mat(*rows):
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)

    rx = mat((one, zero, zero), (zero, pitch.cos(), -pitch.sin()), (zero, pitch.sin(), pitch.cos()))
    ry = mat((yaw.cos(), zero, yaw.sin()), (zero, one, zero), (-yaw.sin(), zero, yaw.cos()))
    rz = mat((roll.cos(), -roll.sin(), zero), (roll.sin(), roll.cos(), zero), (zero, zero, one))
    return (rz @ ry @ rx).transpose(1, 2)


def transform_keypoints(kp: Tensor, R: Tensor, exp: Tensor, scale: Tensor, t: Tensor) -> Tensor:
    """x = s * (x_c @ R + delta) + (t_x, t_y, 0)  (LivePortrait Eqn. 2 with t_z dropped).

    kp, exp: (B, 21, 3); R: (B, 3, 3); scale: (B, 1); t: (B, 3). Returns (B, 21, 3).
    """
    B = kp.shape[0]
    x = kp.reshape(B, -1, 3) @ R + exp.reshape(B, -1, 3)
    x = x * scale[..., None]
    return torch.cat([x[..., :2] + t[:, None, :2], x[..., 2:]], dim=-1)


def stitching_input(x_s: Tensor, x_d: Tensor) -> Tensor:
    """(B, 21, 3) x2 -> (B, 126): the stitching MLP's input, source keypoints first."""
    return torch.cat([x_s.flatten(1), x_d.flatten(1)], dim=1)


def apply_stitching(x_d: Tensor, delta: Tensor) -> Tensor:
    """Add the stitching MLP's 65 outputs to x_d: 63 per-keypoint offsets plus one (dx, dy) for all."""
    B, K = x_d.shape[:2]
    x = x_d + delta[:, : 3 * K].reshape(B, K, 3)
    shift = delta[:, 3 * K : 3 * K + 2].reshape(B, 1, 2)
    return torch.cat([x[..., :2] + shift, x[..., 2:]], dim=-1)


def retargeting_input(x_s: Tensor, ratios: Tensor) -> Tensor:
    """(B, 21, 3), (B, n) -> (B, 63 + n): input of the lip (n = 2) and eye (n = 3) MLPs."""
    return torch.cat([x_s.flatten(1), ratios], dim=1)


def _distance_ratio(lmk: Tensor, a: int, b: int, c: int, d: int, eps: float = 1e-6) -> Tensor:
    num = torch.linalg.vector_norm(lmk[:, a] - lmk[:, b], dim=-1, keepdim=True)
    return num / (torch.linalg.vector_norm(lmk[:, c] - lmk[:, d], dim=-1, keepdim=True) + eps)


def eye_close_ratio(lmk203: Tensor) -> Tensor:
    """(B, 203, 2) landmarks -> (B, 2) [left, right] eye openness (eyelid gap / eye width)."""
    return torch.cat([_distance_ratio(lmk203, 6, 18, 0, 12), _distance_ratio(lmk203, 30, 42, 24, 36)], dim=1)


def lip_close_ratio(lmk203: Tensor) -> Tensor:
    """(B, 203, 2) landmarks -> (B, 1) mouth openness (lip gap / mouth width)."""
    return _distance_ratio(lmk203, 90, 102, 48, 66)
