"""Shared time curves of the direct controls: smoothstep easing and per-frame ramps.

Weights are float64 tensors on the CPU (a few hundred values); callers cast them to the motion's device and dtype
when they blend, so that the curves themselves do not depend on where the motion lives.
"""
from __future__ import annotations

import torch
from torch import Tensor


def smoothstep(x: Tensor) -> Tensor:
    """3x^2 - 2x^3 on x clamped to [0, 1]: zero slope at both ends, so a blend starts and stops gently."""
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def frame_times(n_frames: int, fps: float) -> Tensor:
    """(T,) float64 time of each frame in seconds."""
    return torch.arange(n_frames, dtype=torch.float64) / fps


def ramp_in(n_frames: int, fps: float, seconds: float) -> Tensor:
    """(T,) weight rising from exactly 0 at frame 0 to exactly 1 at `seconds` (smoothstep); 0 s: a step at frame 1.

    Frame 0 is the anchor the renderer pins to the source's own face, so a control that should be seen ramps in
    from it instead of being cancelled by it."""
    if seconds <= 0:
        w = torch.ones(n_frames, dtype=torch.float64)
        w[:1] = 0.0
        return w
    return smoothstep(frame_times(n_frames, fps) / seconds)
