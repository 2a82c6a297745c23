"""Pose-constrained sampling: known values for some channels of the 70-d motion, to sample the rest given them.

A `Constraint` holds normalised values y (T, 70) and a bool mask (T, 70) or (70,): where the mask is set, the
sampler keeps x_t on the forward process of y (RePaint-style inpainting, see `joyvasa.motion.sampler`), so the
sampled x_0 holds y exactly there and the denoiser generates the other channels given them (VASA-1 samples
lips given a head track; JoyVASA's authors find lips-only generation given the head works better, JoyVASA #7).

Channel groups (the layout of `constants`):
    "head"           scale, translation, pitch, yaw, roll (63..69): lips and expression are sampled;
    "head_rotation"  pitch, yaw, roll (67..69): scale and translation are sampled too;
    "expression"     the 63 expression deltas (0..62): the head is sampled;
    "all"            every channel: the sampler returns the track itself.

Length: a track longer than the clip is cut to its first frames; a single frame is a still pose held for the
whole clip; a track of 2 or more frames but shorter than the clip is refused (holding the last frame would
freeze a moving head mid-clip without saying so).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from .constants import EXP, FPS, MOTION_DIM, PITCH, ROLL, SCALE
from .decode import MotionSequence, MotionTemplate, normalize_motion

CHANNEL_GROUPS: Mapping[str, slice] = {
    "head": slice(SCALE.start, ROLL.stop),
    "head_rotation": slice(PITCH.start, ROLL.stop),
    "expression": EXP,
    "all": slice(0, MOTION_DIM),
}


def channel_mask(channels: str) -> Tensor:
    """(70,) bool mask of a channel group ("head", "head_rotation", "expression" or "all")."""
    if channels not in CHANNEL_GROUPS:
        raise ValueError(f"channels must be one of {', '.join(CHANNEL_GROUPS)}, got {channels!r}")
    mask = torch.zeros(MOTION_DIM, dtype=torch.bool)
    mask[CHANNEL_GROUPS[channels]] = True
    return mask


@dataclass(frozen=True)
class Constraint:
    """Known normalised motion: values (T, 70) float, mask (T, 70) or (70,) bool (True = given)."""

    values: Tensor
    mask: Tensor

    def __post_init__(self):
        v, m = self.values, self.mask
        if not isinstance(v, Tensor) or v.ndim != 2 or v.shape[1] != MOTION_DIM or not v.is_floating_point():
            raise ValueError(f"constraint values must be a float tensor (frames, {MOTION_DIM}), got "
                             f"{tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__}")
        if v.shape[0] == 0:
            raise ValueError("the constraint's track has no frames")
        if not isinstance(m, Tensor) or m.dtype != torch.bool or tuple(m.shape) not in ((MOTION_DIM,), tuple(v.shape)):
            raise ValueError(f"constraint mask must be a bool tensor ({MOTION_DIM},) or {tuple(v.shape)} like the "
                             f"values, got {getattr(m, 'dtype', type(m).__name__)} "
                             f"{tuple(m.shape) if isinstance(m, Tensor) else ''}")
        if not torch.isfinite(v).all():
            raise ValueError("the constraint's track holds NaN or infinite values")

    @classmethod
    def from_motion(cls, track: MotionSequence, template: MotionTemplate, channels: str = "head") -> Constraint:
        """Constrain a channel group to a per-frame motion (a loaded file, another seed's motion, a still head),
        normalised with the generator's template (`normalize_motion`)."""
        mask = channel_mask(channels)
        if len(track) == 0:
            raise ValueError("the head track has no frames")
        return cls(normalize_motion(track, template).cpu(), mask)

    def __len__(self) -> int:
        return self.values.shape[0]

    def frame_mask(self) -> Tensor:
        """The mask as (T, 70)."""
        return self.mask.expand_as(self.values)

    def take(self, index: Tensor) -> Constraint:
        """The constraint on frames `index` (1-D long tensor)."""
        mask = self.mask if self.mask.ndim == 1 else self.mask[index]
        return Constraint(self.values[index], mask)

    def fit(self, n_frames: int) -> Constraint:
        """The constraint over a clip of n_frames: the first n_frames of a longer track, a single frame held,
        anything else refused (before any sampling)."""
        T = len(self)
        if T == 1 or T >= n_frames:
            return self.take(torch.arange(n_frames).clamp(max=T - 1))
        raise ValueError(f"the head track has {T} frames ({T / FPS:.2f} s) but the clip needs {n_frames} "
                         f"({n_frames / FPS:.2f} s): give a track at least as long as the speech, or a single "
                         f"frame for a still head")
