"""Gaze: the eyes hold a target (the camera, or a fixed direction) while the head moves.

LivePortrait's implicit keypoints 11 and 15 are the pupils (spec liveportrait.md §2.7): offsetting their
expression in x / y turns the eyes. Here the offset counter-rotates the eyes against the head's yaw and pitch
relative to frame 0 (the vestibulo-ocular reflex: to keep fixating, the eye turns in the head by minus the head's
turn), optionally plus a chosen direction. Only the x and y of keypoints 11 and 15 change; nothing else.

Coefficient (expression units per degree of eye rotation), derived from the geometry of the crop:
* The source crop is 2.3 x the extent of the face's 106 landmarks; for an adult that extent's long side is the
  face width across the contour, about 135 mm (bizygomatic breadth 130-140 mm), so the crop spans about 310 mm.
  The keypoints map the 256-pixel network input onto [-1, 1] (2 units): 1 posed unit is about 155 mm at the face.
* The pupil (iris plane) lies about 10 mm in front of the eyeball's centre of rotation (the centre of rotation is
  about 13.5 mm behind the corneal apex, the iris about 3.5 mm behind it), so the pupil moves 10 mm x pi / 180 =
  0.175 mm per degree of eye rotation: 0.175 / 155 = 1.13e-3 posed units per degree.
* The expression is added before the head's scale s (x = s (x_c R + delta) + t), and the motion extractor gives
  s of about 1.55-1.6 on crops of this framing (1.57 in a published dump of LivePortrait's source info):
  1.13e-3 / 1.57 = 7.2e-4 expression units per degree.
It is a first-order figure (the warp moves the image near a keypoint about as far as the keypoint moves); the
amplitude option scales it.

Sign (see `joyvasa.renderer.keypoints.rotation_matrix`, row vectors x @ R): a head yaw maps a point on the face's
front, which lies towards -z in LivePortrait's keypoint volume, by x' = x cos + z sin, so +yaw turns the face
towards the image's left and the eyes must turn towards the image's right (+x) to stay on target; +pitch maps
y' = y cos - z sin, turning the face down (+y is down), so the eyes turn up (-y). (The published gaze
compensation for LivePortrait motion, Ditto's, moves the pupils the same ways: with +delta-yaw in x, against
delta-pitch in y.) The offset is added after the rotation (delta is in the camera's axes), so it needs no rotating.

The keypoint meanings are those of the human weights; on animal weights keypoints 11 and 15 are not known to be
the pupils.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._face import check_finite, envelope, with_exp

PUPIL_KP = (11, 15)  # left and right pupil keypoints (LivePortrait editors' gaze keypoints)
GAZE_TARGETS = ("free", "camera", "direction")

EXP_PER_DEGREE = 7.2e-4  # expression units per degree of eye rotation (derivation in the module docstring)
# Pupil offset per degree of eye-in-head rotation. Holding a target, the eyes turn by +delta-yaw towards the
# image's right (+x) and by +delta-pitch up (-y), hence the signs.
YAW_TO_X = +EXP_PER_DEGREE  # x offset per degree of rotation towards the image's right
PITCH_TO_Y = -EXP_PER_DEGREE  # y offset per degree of rotation up
# Eye-in-head rotation is limited to +-30 degrees: past about 20-30 degrees people turn the head rather than the
# eyes, and keypoint offsets much larger than this distort the eye region.
EYE_LIMIT_DEG = 30.0
GAZE_SHIFT_SECONDS = 0.12  # a saccade towards a chosen direction takes 30-100 ms: three frames at 25 fps


@dataclass(frozen=True)
class GazeOptions:
    """Where the eyes look. "free": as generated (neutral). "camera": they keep the source portrait's own gaze
    (portraits almost always look into the lens) while the head turns. "direction": they look `horizontal_deg`
    to the image's right (negative: left) and `vertical_deg` up (negative: down) of the source's gaze, and hold
    it while the head turns. `amplitude` scales the whole offset (0 = off, 1 = full compensation)."""

    target: str = "free"
    horizontal_deg: float = 0.0
    vertical_deg: float = 0.0
    amplitude: float = 1.0
    shift_seconds: float = GAZE_SHIFT_SECONDS  # "direction": how fast the eyes move from the source's gaze

    def __post_init__(self):
        if self.target not in GAZE_TARGETS:
            raise ValueError(f"gaze target must be one of {', '.join(GAZE_TARGETS)}, got {self.target!r}")
        check_finite("gaze horizontal_deg", self.horizontal_deg, -EYE_LIMIT_DEG, EYE_LIMIT_DEG)
        check_finite("gaze vertical_deg", self.vertical_deg, -EYE_LIMIT_DEG, EYE_LIMIT_DEG)
        check_finite("gaze amplitude", self.amplitude, 0.0, 2.0)
        check_finite("gaze shift_seconds", self.shift_seconds, 0.0, 10.0)

    @property
    def neutral(self) -> bool:
        return self.target == "free" or self.amplitude == 0


def gaze_offsets(motion, options: GazeOptions, fps: float = 25.0) -> torch.Tensor:
    """(T, 2) pupil (x, y) expression offsets, the same for both pupils; zero at frame 0."""
    T = len(motion)
    # on the CPU, in float64: a few hundred values, and MPS has no float64
    d_yaw = (motion.yaw[:, 0] - motion.yaw[:1, 0]).cpu().double()
    d_pitch = (motion.pitch[:, 0] - motion.pitch[:1, 0]).cpu().double()
    if options.target == "direction":
        w = envelope(T, fps, ramp_in=options.shift_seconds).double()
        eye_h = options.horizontal_deg * w + d_yaw  # eye-in-head rotation, towards the image's right
        eye_v = options.vertical_deg * w + d_pitch  # eye-in-head rotation, up
    else:  # camera
        eye_h, eye_v = d_yaw, d_pitch
    eye_h, eye_v = eye_h.clamp(-EYE_LIMIT_DEG, EYE_LIMIT_DEG), eye_v.clamp(-EYE_LIMIT_DEG, EYE_LIMIT_DEG)
    return (torch.stack([YAW_TO_X * eye_h, PITCH_TO_Y * eye_v], dim=1) * options.amplitude).float()


def apply_gaze(motion, options: GazeOptions, fps: float = 25.0):
    """The motion with the pupils' expression offset so the eyes hold the target (a new MotionSequence; the
    input is never changed). Neutral options return `motion` itself."""
    if options.neutral or len(motion) == 0:
        return motion
    off = gaze_offsets(motion, options, fps).to(motion.exp.device, motion.exp.dtype)
    exp = motion.exp.clone()
    for k in PUPIL_KP:  # only where the offset is non-zero, so untouched frames stay bit for bit (even -0.0)
        exp[:, k, :2] = torch.where(off != 0, exp[:, k, :2] + off, exp[:, k, :2])
    return with_exp(motion, exp)
