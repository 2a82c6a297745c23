"""Small helpers shared by the face controls (gaze, blinks, emotion): time envelopes and expression edits.

Why every expression edit here is zero at frame 0: JoyVASA drives the source relatively,
delta_i = exp_s + (exp_d,i - exp_d,0), so whatever an edit adds to frame 0 of the motion is subtracted from every
frame (on the lip rows, which JoyVASA drives absolutely, it would show on frame 0 only). Frame 0 of the motion is
therefore always the source's own face; an edit that should hold over the whole clip ramps in from frame 0.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from .curves import smoothstep


def check_finite(name: str, value: float, low: float | None = None, high: float | None = None) -> float:
    """A finite number within [low, high], else a ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"from {low:g} to {high:g}" if low is not None and high is not None else \
            f">= {low:g}" if low is not None else f"<= {high:g}"
        raise ValueError(f"{name} must be {bounds}, got {value:g}")
    return float(value)


def envelope(frames: int, fps: float, start: float = 0.0, end: float | None = None, ramp_in: float = 0.0,
             ramp_out: float = 0.0) -> Tensor:
    """(frames,) float32 weights in [0, 1]: 0 before `start` (seconds), a smoothstep up over `ramp_in` seconds,
    1 until the ramp down of `ramp_out` seconds that ends at `end` (None or past the clip: held to the last frame),
    0 after. Frame 0 is always 0 (see the module note); a zero ramp_in from start 0 is full from frame 1."""
    t = torch.arange(frames, dtype=torch.float64) / fps
    up = (t > start).double() if ramp_in <= 0 else smoothstep((t - start) / ramp_in)
    if end is None or end * fps >= frames - 1 + 1e-9:
        down = torch.ones_like(t)
    else:
        down = (t < end).double() if ramp_out <= 0 else smoothstep((end - t) / ramp_out)
    w = (up * down).float()
    if frames:
        w[0] = 0.0
    return w


def with_exp(motion, exp: Tensor):
    """The motion with a new expression (T, 21, 3); every other field (and `raw`) kept as it was."""
    return replace(motion, exp=exp.to(motion.exp.dtype))
