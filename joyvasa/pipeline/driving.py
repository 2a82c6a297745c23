"""Per-frame driving keypoints x_d from generated motion: JoyVASA's human and animal rules.

All frames are computed at once (T x 21 x 3 is tiny); rendering then streams over them.

Human rule (JoyVASA `live_portrait_wmg_pipeline.py`), frame i, generated frame 0 as the anchor:
    R_new = (R_d,i R_d,0^T) R_s                  (regions all, pose; else R_s)
    delta = delta_s + (delta_d,i - delta_d,0)    (regions all, exp), lip rows then set to the absolute delta_d,i
            delta_s with only the lip rows moved (region lip); delta_s (region pose)
    s = s_s * s_d,i / s_d,0;   t = t_s + (t_d,i - t_d,0) with t_z = 0
    x_d,i = s (x_c,s R_new + delta) + t
    expression-friendly (with relative motion): x_d,i <- (x_d,i - x_d,0) m + x_s, m from convex-hull volumes
Animal rule (`live_portrait_wmg_pipeline_animal.py`): relative rotation and expression for every keypoint,
scale fixed to s_s, and the convex-hull re-anchoring always.
Then, both: stitching (optional), the normalize-lip delta (human), and x_s + (x_d - x_s) * driving_multiplier.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..renderer import LivePortraitRenderer, SourceKeypoints, retarget_lip, stitch
from ..renderer.keypoints import LIP_KP, lip_close_ratio, transform_keypoints

DRIVING_OPTIONS = ("expression-friendly", "pose-friendly")
ANIMATION_REGIONS = ("all", "exp", "pose", "lip")
LIP_NORMALIZE_THRESHOLD = 0.03  # source mouths open wider than this are closed first (normalize-lip)


@dataclass(frozen=True)
class DrivingOptions:
    """How generated motion drives the source. Defaults are those of JoyVASA's Gradio app."""

    relative_motion: bool = True  # re-anchor frame 0 on the source (expression-friendly) and allow normalize-lip
    driving_option: str = "expression-friendly"  # or "pose-friendly": skip the re-anchoring
    driving_multiplier: float = 1.0  # scales every keypoint's offset from the source
    animation_region: str = "all"  # human only: all / exp (expression) / pose (head) / lip
    stitching: bool = True  # keep the face aligned with the shoulders (needed for paste-back)
    normalize_lip: bool = True  # human only: close an open source mouth before animating

    def __post_init__(self):
        if self.driving_option not in DRIVING_OPTIONS:
            raise ValueError(f"driving_option must be one of {DRIVING_OPTIONS}, got {self.driving_option!r}")
        if self.animation_region not in ANIMATION_REGIONS:
            raise ValueError(f"animation_region must be one of {ANIMATION_REGIONS}, got {self.animation_region!r}")
        if not np.isfinite(self.driving_multiplier) or self.driving_multiplier < 0:
            raise ValueError(f"driving_multiplier must be a finite number >= 0, got {self.driving_multiplier}")


class DrivingMotion(NamedTuple):
    """The per-frame motion fields the keypoint rules read: exp (T, 21, 3), scale (T, 1), t (T, 3), R (T, 3, 3)."""

    exp: Tensor
    scale: Tensor
    t: Tensor
    R: Tensor

    @classmethod
    def of(cls, motion, device: torch.device) -> DrivingMotion:
        """From any object with those fields (e.g. `joyvasa.motion.MotionSequence`), float32 on `device`."""
        return cls(*(getattr(motion, name).to(device, torch.float32) for name in cls._fields))


def motion_multiplier(x_s: Tensor, x_d0: Tensor) -> float:
    """sqrt(V(x_s)) / sqrt(V(x_d,0)), V = volume of the 3-D convex hull of the 21 keypoints."""
    from scipy.spatial import ConvexHull

    # to the CPU before float64: MPS has no float64
    v_s = ConvexHull(x_s.detach().reshape(-1, 3).cpu().double().numpy()).volume
    v_d = ConvexHull(x_d0.detach().reshape(-1, 3).cpu().double().numpy()).volume
    return float(np.sqrt(v_s) / np.sqrt(v_d))


def _reanchor(x: Tensor, x_s: Tensor) -> tuple[Tensor, float]:
    """x_d,i <- (x_d,i - x_d,0) * m + x_s: frame 0 becomes the source, offsets scaled to the source's size."""
    m = motion_multiplier(x_s, x[0])
    # the original multiplies by a float64 NumPy scalar, which torch applies in the tensor's float32
    return (x - x[:1]) * np.float32(m).item() + x_s, m


def _relative_rotation(R_d: Tensor, R_s: Tensor) -> Tensor:
    return (R_d @ R_d[:1].transpose(1, 2)) @ R_s


def _relative_translation(t_d: Tensor, t_s: Tensor) -> Tensor:
    t = t_s + (t_d - t_d[:1])
    return torch.cat([t[:, :2], torch.zeros_like(t[:, 2:])], dim=1)  # t_z = 0


def human_keypoints(src: SourceKeypoints, motion, options: DrivingOptions) -> tuple[Tensor, float | None]:
    """(T, 21, 3) driving keypoints before stitching, and the re-anchoring multiplier (None if not applied).

    `src` is the source's keypoint info (batch 1); `motion` any object with per-frame `exp` (T, 21, 3),
    `scale` (T, 1), `t` (T, 3) and `R` (T, 3, 3), e.g. `joyvasa.motion.MotionSequence`.
    """
    region = options.animation_region
    exp_s, exp_d = src.exp, motion.exp.float()
    T = exp_d.shape[0]
    R_new = _relative_rotation(motion.R.float(), src.R) if region in ("all", "pose") else src.R.expand(T, 3, 3)
    lip = list(LIP_KP)
    if region in ("all", "exp"):
        delta = exp_s + (exp_d - exp_d[:1])
        delta[:, lip] = exp_d[:, lip]  # JoyVASA drives the lips absolutely
    elif region == "lip":
        delta = exp_s.expand(T, -1, -1).clone()
        delta[:, lip] = (exp_s + (exp_d - exp_d[:1]))[:, lip]
    else:  # pose
        delta = exp_s.expand(T, -1, -1)
    scale = src.scale * (motion.scale.float() / motion.scale[:1].float())  # (T, 1)
    t = _relative_translation(motion.t.float(), src.t)
    x = transform_keypoints(src.kp.expand(T, -1, -1), R_new, delta, scale, t)
    if options.relative_motion and options.driving_option == "expression-friendly":
        return _reanchor(x, src.x_s)
    return x, None


def animal_keypoints(src: SourceKeypoints, motion) -> tuple[Tensor, float]:
    """(T, 21, 3) animal driving keypoints before stitching, and the re-anchoring multiplier (always applied)."""
    exp_d = motion.exp.float()
    R_new = _relative_rotation(motion.R.float(), src.R)
    delta = src.exp + (exp_d - exp_d[:1])
    t = _relative_translation(motion.t.float(), src.t)
    x = transform_keypoints(src.kp.expand(len(exp_d), -1, -1), R_new, delta, src.scale, t)
    return _reanchor(x, src.x_s)


def normalize_lip_delta(renderer: LivePortraitRenderer, x_s: Tensor, landmarks_203: Tensor | None,
                        threshold: float = LIP_NORMALIZE_THRESHOLD) -> Tensor | None:
    """Expression delta that closes the source's mouth (lip MLP towards ratio 0), or None if already closed
    or no landmarks are known. landmarks_203: (203, 2) or (1, 203, 2) in any pixel frame."""
    if landmarks_203 is None:
        return None
    lmk = torch.as_tensor(landmarks_203, dtype=torch.float32).reshape(1, -1, 2)
    ratio = lip_close_ratio(lmk)  # (1, 1)
    if ratio[0, 0].item() < threshold:
        return None
    return retarget_lip(renderer, x_s, torch.cat([ratio, torch.zeros_like(ratio)], dim=1))


@dataclass(frozen=True)
class DrivingKeypoints:
    """x_d for every frame, plus the intermediate steps (for inspection and tests)."""

    x_d: Tensor  # (T, 21, 3) what the renderer receives
    pre_stitch: Tensor  # (T, 21, 3)
    post_stitch: Tensor  # (T, 21, 3) after stitching and the normalize-lip delta
    multiplier: float | None  # convex-hull re-anchoring multiplier


def driving_keypoints(renderer: LivePortraitRenderer, src: SourceKeypoints, motion, options: DrivingOptions,
                      species: str = "human", landmarks_203: Tensor | None = None) -> DrivingKeypoints:
    """The whole keypoint chain for one source and one motion sequence, on the renderer's device (the source's
    keypoints and the motion are moved there first, wherever they were made)."""
    src, motion = src.to(renderer.device), DrivingMotion.of(motion, renderer.device)
    if species == "human":
        x, m = human_keypoints(src, motion, options)
        lip_delta = None
        if options.normalize_lip and options.relative_motion:
            lip_delta = normalize_lip_delta(renderer, src.x_s, landmarks_203)
    elif species == "animal":
        x, m = animal_keypoints(src, motion)
        lip_delta = None
    else:
        raise ValueError(f"species must be 'human' or 'animal', got {species!r}")
    x_s = src.x_s.expand_as(x)
    post = stitch(renderer, x_s, x) if options.stitching else x
    if lip_delta is not None:
        post = post + lip_delta
    x_d = x_s + (post - x_s) * options.driving_multiplier
    return DrivingKeypoints(x_d=x_d, pre_stitch=x, post_stitch=post, multiplier=m)
