"""Fade: ease in from the source's still face at the start and back to it at the end.

The renderer drives the source relative to motion frame 0 (pose, scale, translation and, with the default
expression-friendly driving, the whole expression), so frame 0's values *are* the source's own still face.
Fading every field towards frame 0's values with a smoothstep weight therefore fades the performance in from
the still portrait and back out to it. R is recomputed from the blended angles; frames at full weight keep
every field bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..motion.constants import FPS
from ..motion.decode import MotionSequence
from ..renderer.keypoints import rotation_matrix
from .curves import frame_times, smoothstep

_BLENDED = ("exp", "scale", "t", "pitch", "yaw", "roll")


@dataclass(frozen=True)
class FadeOptions:
    """Seconds of fade at each end; 0 = no fade there."""

    fade_in_s: float = 0.0
    fade_out_s: float = 0.0

    def __post_init__(self):
        for name in ("fade_in_s", "fade_out_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")

    @property
    def is_neutral(self) -> bool:
        return self.fade_in_s == 0 and self.fade_out_s == 0


def fade_weights(n_frames: int, fps: float, fade_in_s: float, fade_out_s: float) -> Tensor:
    """(T,) float64 performance weight: 0 at frame 0 (fade in) and at the last frame (fade out), 1 between."""
    t = frame_times(n_frames, fps)
    w = torch.ones(n_frames, dtype=torch.float64)
    if fade_in_s > 0:
        w = w * smoothstep(t / fade_in_s)
    if fade_out_s > 0:
        w = w * smoothstep((t[-1] - t) / fade_out_s)
    return w


def fade(motion: MotionSequence, options: FadeOptions = FadeOptions(), fps: float = FPS) -> MotionSequence:
    """Every field blended towards frame 0's: f0 + w (f - f0), w from `fade_weights`; the input if neutral."""
    T = len(motion)
    if options.is_neutral or T == 0:
        return motion
    w = fade_weights(T, fps, options.fade_in_s, options.fade_out_s)
    full = w == 1  # frames left exactly as they are
    if bool(full.all()):
        return motion
    edits = {}
    for name in _BLENDED:
        f = getattr(motion, name)
        wf = w.to(f.device, f.dtype).reshape(-1, *[1] * (f.ndim - 1))
        edits[name] = torch.where(wf == 1, f, f[:1] + wf * (f - f[:1]))
    R = rotation_matrix(edits["pitch"], edits["yaw"], edits["roll"]).to(motion.R.dtype)
    full_r, still_r = full.to(R.device)[:, None, None], (w == 0).to(R.device)[:, None, None]
    # frames at weight 0 are the still face: frame 0's own R, even where R was not made from the angles
    edits["R"] = torch.where(full_r, motion.R, torch.where(still_r, motion.R[:1], R))
    return replace(motion, **edits)
