"""Mouth control: lip gain, an audio/video offset in frames, and lips eased closed in pauses of the speech.

Only the lip keypoints' expression rows (`LIP_KP`) change. JoyVASA drives those rows absolutely
(`delta[:, lip] = exp_d[:, lip]` in `joyvasa.pipeline.driving`), and the default expression-friendly driving then
re-anchors every frame on frame 0 (x_d,i <- (x_d,i - x_d,0) m + x_s). So:

- frame 0 is never changed here: moving its lips would move the anchor and cancel the edit on every frame;
- the closed/neutral reference is, by default, the motion's own frame-0 lips. With JoyVASA's original timing the
  first two frames are generated from padded silence, so those lips are a closed mouth, and frame 0 is exactly
  what the renderer pins to the source's own mouth (which Render's normalize-lip closes when it is open). Lips
  equal to frame 0's therefore render as the source's closed mouth;
- `closed_lip_expression` gives the lip-retargeting-MLP reference (ratio 0, as normalize-lip) for when Render's
  normalize-lip will not close the source's mouth itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..motion.constants import FPS
from ..motion.decode import MotionSequence
from ..renderer.keypoints import LIP_KP, lip_close_ratio
from .silence import SilenceOptions, find_silences, pause_weights

_LIP = list(LIP_KP)


@dataclass(frozen=True)
class MouthOptions:
    """Mouth edits; the defaults change nothing."""

    lip_gain: float = 1.0  # lip movement around the frame-0 (closed) lips: 0 closed, 1 as generated, > 1 wider
    offset_frames: int = 0  # + = lips later than generated (when they lead the sound), - = earlier
    close_silences: bool = False  # ease the lips closed in pauses found in the speech
    silence: SilenceOptions = SilenceOptions()
    attack_s: float = 0.08  # time to close after a pause starts
    release_s: float = 0.08  # time to reopen before the pause ends, so the lips are open when speech resumes

    def __post_init__(self):
        if not math.isfinite(self.lip_gain) or self.lip_gain < 0:
            raise ValueError(f"lip_gain must be a finite number >= 0 (1 = unchanged), got {self.lip_gain}")
        if isinstance(self.offset_frames, bool) or int(self.offset_frames) != self.offset_frames:
            raise ValueError(f"mouth offset_frames must be a whole number of frames, got {self.offset_frames!r}")
        object.__setattr__(self, "offset_frames", int(self.offset_frames))
        if not isinstance(self.silence, SilenceOptions):
            raise ValueError("mouth silence must be a SilenceOptions")
        for name in ("attack_s", "release_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"mouth {name} must be a finite number >= 0 seconds, got {value}")

    @property
    def is_neutral(self) -> bool:
        return self.lip_gain == 1.0 and self.offset_frames == 0 and not self.close_silences


def _with_lips(motion: MotionSequence, lips: Tensor) -> MotionSequence:
    exp = motion.exp.clone()
    exp[:, _LIP] = lips
    return replace(motion, exp=exp)


def shift_lips(motion: MotionSequence, frames: int) -> MotionSequence:
    """Lip rows delayed by `frames` (negative: advanced), the edge frames held; frame 0 kept (the anchor)."""
    T = len(motion)
    if frames == 0 or T < 2:
        return motion
    src = (torch.arange(1, T) - frames).clamp(0, T - 1).to(motion.exp.device)
    lips = motion.exp[:, _LIP].clone()
    lips[1:] = motion.exp[src][:, _LIP]
    return _with_lips(motion, lips)


def scale_lips(motion: MotionSequence, gain: float, reference: Tensor | None = None) -> MotionSequence:
    """Lip rows moved to reference + gain (lips - reference); reference (21, 3), default the frame-0 expression."""
    if gain == 1.0 or len(motion) == 0:
        return motion
    ref = (motion.exp[0] if reference is None else reference.to(motion.exp))[_LIP]
    lips = ref + gain * (motion.exp[:, _LIP] - ref)
    lips[0] = motion.exp[0, _LIP]  # the anchor
    return _with_lips(motion, lips)


def close_lips(motion: MotionSequence, weights: Tensor, closed_lip_exp: Tensor) -> MotionSequence:
    """Lip rows blended towards the lip rows of `closed_lip_exp` (21, 3) with per-frame `weights` (T,) in [0, 1]:
    (1 - w) lips + w closed. Weight 0 keeps a frame bit for bit, 1 gives the reference exactly; frame 0 is
    never changed (the anchor, see the module docstring)."""
    T = len(motion)
    w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    if w.shape[0] != T:
        raise ValueError(f"close_lips: {w.shape[0]} weights for {T} frames")
    if closed_lip_exp.shape[-2:] != motion.exp.shape[1:]:
        raise ValueError(f"closed_lip_exp must be {tuple(motion.exp.shape[1:])}, got {tuple(closed_lip_exp.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or bool((w > 1).any()):
        raise ValueError("close_lips: weights must be in [0, 1]")
    w = w.clone()
    w[:1] = 0.0
    if not bool(w.gt(0).any()):
        return motion
    lips = motion.exp[:, _LIP]
    closed = closed_lip_exp.reshape(motion.exp.shape[1:]).to(lips)[_LIP]
    wt = w.to(lips)[:, None, None]
    blended = (1 - wt) * lips + wt * closed
    return _with_lips(motion, torch.where(wt > 0, blended, lips))


@torch.no_grad()
def closed_lip_expression(renderer, source_keypoints, landmarks_203: Tensor | None, anchor_exp: Tensor,
                          normalize_lip: bool = True) -> Tensor:
    """(21, 3) closed-mouth reference from the lip-retargeting MLP (LivePortrait's lip ratio 0, as normalize-lip).

    `anchor_exp` is the motion's frame-0 expression, which the driving pins to the source's own mouth. The MLP's
    keypoint delta that takes the source's mouth from its measured ratio to 0 is added to the anchor's lip rows,
    divided by the source's scale (x = s (x_c R + exp) + t, so a keypoint offset d is an expression offset d / s;
    the re-anchoring factor m, about 1, is left out). When Render's normalize-lip will already add that delta to
    every frame (`normalize_lip` and a mouth open beyond its threshold) the anchor's lips are returned: adding
    it here too would close the mouth twice. Human sources only: the ratio comes from the 203 landmarks."""
    from ..pipeline.driving import LIP_NORMALIZE_THRESHOLD
    from ..renderer import retarget_lip

    if landmarks_203 is None:
        raise ValueError("the lip-MLP closed mouth needs the source's 203 face landmarks (a human portrait prepared "
                         "with the face detector); without them the first frame's lips are the reference")
    lmk = torch.as_tensor(landmarks_203, dtype=torch.float32).reshape(1, -1, 2)
    ratio = lip_close_ratio(lmk)  # (1, 1)
    closed = anchor_exp.clone()
    if normalize_lip and ratio[0, 0].item() >= LIP_NORMALIZE_THRESHOLD:
        return closed
    src = source_keypoints.to(renderer.device)
    ratios = torch.cat([ratio, torch.zeros_like(ratio)], dim=1).to(renderer.device)
    delta = retarget_lip(renderer, src.x_s, ratios)[0] / src.scale[0]  # (21, 3)
    closed[_LIP] = closed[_LIP] + delta[_LIP].to(closed)
    return closed


def direct_mouth(motion: MotionSequence, options: MouthOptions = MouthOptions(), waveform: Tensor | None = None,
                 sample_rate: int | None = None, fps: float = FPS, audio_delay: float = 0.0,
                 closed_lip_exp: Tensor | None = None) -> MotionSequence:
    """Offset, then gain, then silence closing (so that closed lips are the reference exactly). The waveform
    (the clip's speech, delayed by `audio_delay` seconds to play with the frames) is needed only for closing;
    `closed_lip_exp` (21, 3) defaults to the frame-0 expression. Neutral options return the input itself."""
    if options.is_neutral or len(motion) == 0:
        return motion
    if options.close_silences and (waveform is None or sample_rate is None):
        raise ValueError("closing the lips in pauses needs the speech waveform and its sample rate")
    reference = motion.exp[0].clone() if closed_lip_exp is None else closed_lip_exp
    out = shift_lips(motion, options.offset_frames)
    out = scale_lips(out, options.lip_gain, motion.exp[0])
    if options.close_silences:
        silent = find_silences(waveform, sample_rate, len(motion), fps, audio_delay, options.silence)
        out = close_lips(out, pause_weights(silent, fps, options.attack_s, options.release_s), reference)
    return out
