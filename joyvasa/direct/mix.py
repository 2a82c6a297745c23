"""Mix motion: one motion built from several, e.g. the head from a driving video, the lips and the rest of the face
from speech, each part with a weight.

The renderer drives a source *relative to motion frame 0* for the head and for most of the expression, and
*absolutely* for the lip rows (`joyvasa.pipeline.driving`: `delta[:, lip] = exp_d[:, lip]`). Each part is mixed the
way it is driven, so a part taken from another motion looks on the source as it looked in that motion:

- head (pitch, yaw, roll, t; scale): relative, base_i + w ((other_i - other_0) - (base_i - base_0)): frame 0 and the
  base's framing stay, the other's movement is added in place of the base's. Scale is driven as a ratio
  (s_s s_d,i / s_d,0), so it is mixed the same way in ratios: base_i ((other_i / other_0) / (base_i / base_0))^w;
- lips (expression rows `LIP_KP`): absolute, lerp(base, other, w);
- face (the other expression rows: eyes, brows, cheeks): relative, like the head.
At weight 0 (or without that input) a part is the base's, bit for bit; at weight 1 it is the other's movement.
R is recomputed from the mixed angles. `raw` (the sampler's normalised output) no longer describes the result:
it is None, as for any motion without one (`joyvasa.motion.decode.normalize_motion` recomputes it from the fields).

Lengths: the result is as long as the base by default ("shortest" / "longest" of the motions used); a motion shorter
than that is looped, held on its last frame or played back and forth (pingpong), a longer one is trimmed.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from ..motion.decode import MotionSequence
from ..renderer.keypoints import LIP_KP, rotation_matrix

LENGTHS = ("base", "shortest", "longest")
FITS = ("loop", "hold", "pingpong")
PARTS = ("head", "lips", "face")
_ADDITIVE_HEAD = ("pitch", "yaw", "roll", "t")
_LIP = list(LIP_KP)
_FIELDS = ("exp", "scale", "t", "pitch", "yaw", "roll", "R")


def check_weight(name: str, weight) -> float:
    """A mix weight as a float in [0, 1]; ValueError naming the input otherwise."""
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) \
            or not 0.0 <= weight <= 1.0:
        raise ValueError(f"{name} must be a number from 0 (keep the base's) to 1 (the other motion's), got {weight!r}")
    return float(weight)


def fit_indices(n_frames: int, length: int, fit: str) -> Tensor:
    """(length,) int64 CPU indices into a motion of `n_frames` frames: the first `length` frames when it is long
    enough, else continued by `fit` (loop: from the start again; hold: the last frame; pingpong: back and forth)."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    if n_frames < 1:
        raise ValueError("cannot fit a motion with no frames")
    i = torch.arange(length)
    if length <= n_frames:
        return i
    if fit == "loop":
        return i % n_frames
    if fit == "hold" or n_frames == 1:
        return i.clamp(max=n_frames - 1)
    period = 2 * (n_frames - 1)  # pingpong: 0 1 .. n-1 n-2 .. 1 0 1 ..
    phase = i % period
    return torch.where(phase < n_frames, phase, period - phase)


def _fitted(motion: MotionSequence, length: int, fit: str, like: Tensor) -> MotionSequence:
    """The motion's fields (not raw, not R) fitted to `length` frames, on `like`'s device and dtype."""
    if len(motion) == length and motion.exp.device == like.device:
        idx = None
    else:
        idx = fit_indices(len(motion), length, fit)
    fields = {}
    for name in ("exp", "scale", "t", "pitch", "yaw", "roll"):
        value = getattr(motion, name)
        value = value if idx is None else value[idx.to(value.device)]
        fields[name] = value.to(like.device, like.dtype)
    return replace(motion, raw=None, **fields)


def _relative(base: Tensor, other: Tensor, weight: float) -> Tensor:
    """base + w ((other - other_0) - (base - base_0)) along dim 0."""
    return base + weight * ((other - other[:1]) - (base - base[:1]))


def _check_motion(name: str, motion) -> None:
    # by its fields, not its class: the library may be imported under two names (e.g. by ComfyUI and by a test)
    if not all(isinstance(getattr(motion, f, None), Tensor) for f in _FIELDS):
        raise ValueError(f"{name} must be a MotionSequence, got {type(motion).__name__}")
    if len(motion) == 0:
        raise ValueError(f"{name} has no frames; give a motion with at least one frame")


def mix_length(base: MotionSequence, others: list[MotionSequence], length: str) -> int:
    """Frames of the mixed motion: the base's, or the shortest / longest of the base and the motions used."""
    if length not in LENGTHS:
        raise ValueError(f"length must be one of {', '.join(LENGTHS)}, got {length!r}")
    counts = [len(base)] + [len(m) for m in others]
    return {"base": counts[0], "shortest": min(counts), "longest": max(counts)}[length]


def mix_motion(base: MotionSequence, *, head: MotionSequence | None = None, head_weight: float = 1.0,
               lips: MotionSequence | None = None, lips_weight: float = 1.0, face: MotionSequence | None = None,
               face_weight: float = 1.0, length: str = "base", fit: str = "loop") -> MotionSequence:
    """`base` with its head, lips and/or the rest of its face mixed from other motions (see the module docstring).

    A part whose motion is None or whose weight is 0 stays the base's; with no part to mix (and length "base")
    the base itself is returned. The result lives on the base's device, in its dtype; the others are moved there."""
    _check_motion("the base motion", base)
    weights = {"head": check_weight("head_weight", head_weight), "lips": check_weight("lips_weight", lips_weight),
               "face": check_weight("face_weight", face_weight)}
    given = {"head": head, "lips": lips, "face": face}
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    used = {}
    for part, motion in given.items():
        if motion is None or weights[part] == 0.0:
            continue
        _check_motion(f"the {part} motion", motion)
        if motion.exp.shape[1:] != base.exp.shape[1:]:
            raise ValueError(f"the {part} motion has {tuple(motion.exp.shape[1:])} expression keypoints per frame, "
                             f"the base {tuple(base.exp.shape[1:])}; mix motions of the same renderer")
        used[part] = motion
    n = mix_length(base, list(used.values()), length)
    if not used and n == len(base):
        return base
    out = _fitted(base, n, fit, base.exp) if n != len(base) else replace(base, raw=None)
    like = out.exp
    edits: dict[str, Tensor] = {}
    if "head" in used:
        other, w = _fitted(used["head"], n, fit, like), weights["head"]
        for name in _ADDITIVE_HEAD:
            edits[name] = _relative(getattr(out, name), getattr(other, name), w)
        if bool((out.scale <= 0).any()) or bool((other.scale <= 0).any()):
            raise ValueError("a motion's scale must be positive in every frame to mix heads")
        ratio = (other.scale / other.scale[:1]) / (out.scale / out.scale[:1])
        edits["scale"] = out.scale * ratio.pow(w)
    exp = out.exp
    if "face" in used:
        other, w = _fitted(used["face"], n, fit, like), weights["face"]
        mixed = _relative(exp, other.exp, w)
        mixed[:, _LIP] = exp[:, _LIP]  # the lip rows are the lips part's
        exp = mixed
    if "lips" in used:
        other, w = _fitted(used["lips"], n, fit, like), weights["lips"]
        exp = exp.clone() if exp is out.exp else exp
        exp[:, _LIP] = torch.lerp(exp[:, _LIP], other.exp[:, _LIP], w)  # lerp: exactly the other's at w = 1
    if exp is not out.exp:
        edits["exp"] = exp
    if "head" in used:
        edits["R"] = rotation_matrix(edits["pitch"], edits["yaw"], edits["roll"]).to(base.R.dtype)
    elif n != len(base):
        edits["R"] = base.R[fit_indices(len(base), n, fit).to(base.R.device)]
    return replace(out, **edits)
