"""All the performance controls at once, in their documented order (see the package docstring).

    motion = direct_motion(motion, DirectOptions(head=HeadOptions(gain=(0.5, 0.5, 0.5)), ...),
                           renderer=renderer, source=source, waveform=wave, sample_rate=rate)

The edits run on the CPU (the motion is a few kilobytes; the retargeting MLPs run on the renderer's device and
their results come back), so they work whatever device sampled the motion; rendering moves the result to the
renderer. With every option neutral the motion comes back as it was given, bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from ..motion import FPS, MotionSequence
from .blinks import BlinkOptions, apply_blinks
from .emotion import ExpressionOffsetOptions, apply_expression_offset, expression_offset
from .fade import FadeOptions, fade
from .gaze import GazeOptions, apply_gaze
from .head import HeadOptions, direct_head
from .mouth import MouthOptions, closed_lip_expression, direct_mouth


@dataclass(frozen=True)
class DirectOptions:
    """Every control; the defaults leave the motion untouched. `neutralize`: the expression offset removes the
    source's own expression instead of moving towards a reference portrait's."""

    head: HeadOptions = field(default_factory=HeadOptions)
    gaze: GazeOptions = field(default_factory=GazeOptions)
    blinks: BlinkOptions = field(default_factory=BlinkOptions)
    expression: ExpressionOffsetOptions = field(default_factory=ExpressionOffsetOptions)
    neutralize: bool = False
    mouth: MouthOptions = field(default_factory=MouthOptions)
    fade: FadeOptions = field(default_factory=FadeOptions)

    @property
    def neutral(self) -> bool:
        return (self.head.is_neutral and self.gaze.neutral and self.blinks.neutral and self.expression.neutral
                and self.mouth.is_neutral and self.fade.is_neutral)

    @property
    def needs_source(self) -> bool:
        """Whether the source (and the renderer's MLPs) are needed: blinks, an expression offset, lip closing."""
        return not self.blinks.neutral or not self.expression.neutral or self.mouth.close_silences


def direct_motion(motion: MotionSequence, options: DirectOptions, *, renderer=None, source=None,
                  waveform: Tensor | None = None, sample_rate: int | None = None, fps: float = FPS,
                  audio_delay: float = 0.0, reference_exp: Tensor | None = None, detector=None,
                  normalize_lip: bool = True) -> MotionSequence:
    """The motion with head, gaze, blinks, expression offset, mouth and fade applied in that order.

    renderer, source: the LivePortrait renderer and the prepared `Source` (blinks, expression offsets and the
    lip-MLP closed mouth need them). waveform, sample_rate, audio_delay: the speech as it plays with the frames
    (silence closing). reference_exp: (21, 3) expression of a reference portrait (`expression_from_image`), for the
    expression offset unless `options.neutralize`. normalize_lip: as Render's option (the closed-mouth reference
    must not close the mouth a second time)."""
    if options.neutral:
        return motion
    if options.needs_source and source is None:
        raise ValueError("blinks, expression offsets and lip closing need the prepared source (and its renderer)")
    if not options.expression.neutral and reference_exp is None and not options.neutralize:
        raise ValueError("the expression offset needs a reference portrait (Expression from Image), or neutralize "
                         "on to remove the source's own expression")
    m = motion.to("cpu")
    m = direct_head(m, options.head, fps)
    m = apply_gaze(m, options.gaze, fps)
    m = apply_blinks(m, options.blinks, renderer, source, detector=detector, fps=fps)
    if not options.expression.neutral:
        offset = expression_offset(source.keypoints.exp[0].cpu(), None if options.neutralize else reference_exp,
                                   source.species)
        m = apply_expression_offset(m, offset, options.expression, fps)
    closed = None
    if options.mouth.close_silences and source.species == "human" and source.landmarks_203 is not None:
        closed = closed_lip_expression(renderer, source.keypoints, source.landmarks_203, m.exp[0],
                                       normalize_lip).cpu()
    m = direct_mouth(m, options.mouth, waveform, sample_rate, fps, audio_delay, closed)
    return fade(m, options.fade, fps)
