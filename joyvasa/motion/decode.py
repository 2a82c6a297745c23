"""From normalised 70-d motion vectors to per-frame LivePortrait motion: de-normalisation, EMA, rotation.

The template (`motion_template.pkl`) holds statistics over the training frames. Expression deltas were
z-scored, everything else min-max normalised, so decoding is v * std + mean for the expression and
v * (max - min) + min for scale, translation and the three angles (degrees). The model output is never
clamped. All of it happens in float32, like the original.

The original then smooths head pose, scale and translation with a very strong exponential moving average
(y_0 = v_0, y_k = a v_k + (1 - a) y_{k-1}, a = 0.01: a time constant of about 100 frames) and recomputes R
from the smoothed angles. The expression is never smoothed. Values a sampler was constrained to (a given head
track) can be kept out of the smoothing (`keep`). `normalize_motion` is the way back, per-frame motion -> (T, 70).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import Tensor

from ..renderer.keypoints import rotation_matrix
from .constants import EXP, MOTION_DIM, NUM_KP, PITCH, ROLL, SCALE, TRANSLATION, YAW

POSE = slice(SCALE.start, ROLL.stop)  # [scale, tx, ty, tz, pitch, yaw, roll], in this order in the 70-d vector

# template key -> expected length
TEMPLATE_KEYS: Mapping[str, int] = {
    "mean_exp": 63, "std_exp": 63,
    "min_scale": 1, "max_scale": 1,
    "min_t": 3, "max_t": 3,
    "min_pitch": 1, "max_pitch": 1,
    "min_yaw": 1, "max_yaw": 1,
    "min_roll": 1, "max_roll": 1,
}


@dataclass(frozen=True)
class MotionTemplate:
    """The normalisation statistics used at inference, as float32 tensors (other template keys are unused)."""

    mean_exp: Tensor
    std_exp: Tensor
    min_scale: Tensor
    max_scale: Tensor
    min_t: Tensor
    max_t: Tensor
    min_pitch: Tensor
    max_pitch: Tensor
    min_yaw: Tensor
    max_yaw: Tensor
    min_roll: Tensor
    max_roll: Tensor

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray | Tensor], source: str = "motion template") -> MotionTemplate:
        missing = [k for k in TEMPLATE_KEYS if k not in arrays]
        if missing:
            raise ValueError(f"{source} lacks {missing}. Is it JoyVASA's motion_template.pkl?")
        values = {}
        for key, size in TEMPLATE_KEYS.items():
            v = torch.as_tensor(np.asarray(arrays[key], dtype=np.float32)).reshape(-1)
            if v.numel() != size:
                raise ValueError(f"{source}: {key} has {v.numel()} values, expected {size}.")
            values[key] = v
        return cls(**values)

    def to(self, device) -> MotionTemplate:
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})


@dataclass(frozen=True)
class MotionSequence:
    """Per-frame motion at 25 fps, T frames. Angles in degrees; R = (Rz(roll) Ry(yaw) Rx(pitch))^T."""

    # (T, 70) the normalised model output it was decoded from; None when unknown (motion imported from a
    # LivePortrait template, which stores only the decoded fields)
    raw: Tensor | None
    exp: Tensor  # (T, 21, 3)
    scale: Tensor  # (T, 1)
    t: Tensor  # (T, 3)
    pitch: Tensor  # (T, 1)
    yaw: Tensor  # (T, 1)
    roll: Tensor  # (T, 1)
    R: Tensor  # (T, 3, 3)

    def __len__(self) -> int:
        return self.exp.shape[0]

    def to(self, device) -> MotionSequence:
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)
                                if getattr(self, f.name) is not None})


def _minmax(v: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    return v * (hi - lo) + lo


def denormalize(raw: Tensor, template: MotionTemplate) -> MotionSequence:
    """(T, 70) normalised motion -> per-frame motion (float32), R from the decoded angles."""
    if raw.ndim != 2 or raw.shape[1] != MOTION_DIM:
        raise ValueError(f"motion must be (frames, {MOTION_DIM}), got {tuple(raw.shape)}")
    v = raw.float()
    tp = template.to(v.device)
    exp = (v[:, EXP] * tp.std_exp + tp.mean_exp).reshape(-1, NUM_KP, 3)
    scale = _minmax(v[:, SCALE], tp.min_scale, tp.max_scale)
    t = _minmax(v[:, TRANSLATION], tp.min_t, tp.max_t)
    pitch = _minmax(v[:, PITCH], tp.min_pitch, tp.max_pitch)
    yaw = _minmax(v[:, YAW], tp.min_yaw, tp.max_yaw)
    roll = _minmax(v[:, ROLL], tp.min_roll, tp.max_roll)
    return MotionSequence(raw, exp, scale, t, pitch, yaw, roll, rotation_matrix(pitch, yaw, roll))


def _unscale(v: Tensor, lo: Tensor, d: Tensor) -> Tensor:
    """(v - lo) / d, the inverse of u * d + lo; 0 where d = 0 (every u decodes to lo there)."""
    return torch.where(d != 0, (v - lo) / torch.where(d != 0, d, 1), 0)


def normalize_motion(motion: MotionSequence, template: MotionTemplate) -> Tensor:
    """Per-frame motion -> (T, 70) normalised vectors: the inverse of `denormalize`, from the decoded fields
    (exp, scale, t, pitch, yaw, roll; `raw` and R are not read, so edited motion normalises as edited).

    exp: (v - mean_exp) / std_exp; the others: (v - min) / (max - min). Training normalised with `+ 1e-9` in
    both denominators (spec 4.1), but the decoder multiplies by std and (max - min) without it, so this inverts
    the decoder: normalise -> denormalise returns v up to float32 rounding, |error| <= 2 eps (|v| + |v - lo|),
    lo = mean or min, eps = 2^-23 (three roundings on v - lo, one on + lo). The 1e-9 would change v by under
    1e-9 / (max - min) relative, below float32 resolution for any real range. A degenerate channel (max = min,
    std = 0) decodes every value to lo; it normalises to 0."""
    n = len(motion)
    expected = {"exp": (n, NUM_KP, 3), "scale": (n, 1), "t": (n, 3), "pitch": (n, 1), "yaw": (n, 1), "roll": (n, 1)}
    for name, shape in expected.items():
        if tuple(getattr(motion, name).shape) != shape:
            raise ValueError(f"motion.{name} has shape {tuple(getattr(motion, name).shape)}, expected {shape} for "
                             f"{n} frames")
    tp = template.to(motion.exp.device)
    v = torch.empty(n, MOTION_DIM, dtype=torch.float32, device=motion.exp.device)
    # the same float32 multipliers as `denormalize` (std, and max - min computed the same way)
    v[:, EXP] = _unscale(motion.exp.reshape(n, -1).float(), tp.mean_exp, tp.std_exp)
    v[:, SCALE] = _unscale(motion.scale.float(), tp.min_scale, tp.max_scale - tp.min_scale)
    v[:, TRANSLATION] = _unscale(motion.t.float(), tp.min_t, tp.max_t - tp.min_t)
    v[:, PITCH] = _unscale(motion.pitch.float(), tp.min_pitch, tp.max_pitch - tp.min_pitch)
    v[:, YAW] = _unscale(motion.yaw.float(), tp.min_yaw, tp.max_yaw - tp.min_yaw)
    v[:, ROLL] = _unscale(motion.roll.float(), tp.min_roll, tp.max_roll - tp.min_roll)
    return v


def ema(x: Tensor, alpha: float) -> Tensor:
    """Exponential moving average along dim 0: y_0 = x_0, y_k = alpha x_k + (1 - alpha) y_{k-1}."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"smoothing strength must be in (0, 1], got {alpha}")
    src = x.detach().to("cpu", torch.float32)
    out = torch.empty_like(src)
    out[0] = src[0]
    keep = 1.0 - alpha
    for k in range(1, src.shape[0]):
        out[k] = alpha * src[k] + keep * out[k - 1]
    return out.to(x.device)


def smooth(motion: MotionSequence, alpha: float, keep: Tensor | None = None) -> MotionSequence:
    """EMA over [scale, tx, ty, tz, pitch, yaw, roll]; the expression is kept; R recomputed.

    keep: optional (T, 70) or (70,) bool mask (the 70-d layout) of values to leave unsmoothed, e.g. a head
    track the sampler was constrained to; only its pose entries (63..69) matter."""
    if len(motion) == 0:
        return motion
    unsmoothed = torch.cat([motion.scale, motion.t, motion.pitch, motion.yaw, motion.roll], dim=1)
    pose = ema(unsmoothed, alpha)
    if keep is not None:  # the EMA is per channel, so kept channels do not change the others
        pose = torch.where(keep[..., POSE].to(pose.device), unsmoothed.to(pose), pose)
    scale, t, pitch, yaw, roll = pose[:, 0:1], pose[:, 1:4], pose[:, 4:5], pose[:, 5:6], pose[:, 6:7]
    return replace(motion, scale=scale, t=t, pitch=pitch, yaw=yaw, roll=roll, R=rotation_matrix(pitch, yaw, roll))


def decode_motion(raw: Tensor, template: MotionTemplate, smoothing: float | None = 0.01,
                  keep: Tensor | None = None) -> MotionSequence:
    """De-normalise, then smooth pose/scale/translation with EMA strength `smoothing` (None or 0: off).

    0.01, the original's value, almost freezes the head relative to the first frame; larger values follow the
    generated head motion more closely (1.0 = no smoothing). keep: a bool mask over `raw` (T, 70) or (70,) of
    given values that smoothing must not touch (a constrained head track; see `smooth`)."""
    motion = denormalize(raw, template)
    return smooth(motion, smoothing, keep) if smoothing else motion
