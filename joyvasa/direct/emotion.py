"""Emotion / expression offset (VASA-1's emotion offset, in LivePortrait's expression space).

`expression_from_image` runs the motion extractor on a reference portrait and returns its expression (21, 3).
The offset from the source's expression to the reference's is added to the motion on chosen keypoint regions,
with an intensity, ramped in and out over time. "Neutralize" is the offset that removes the source's own
expression (minus the source's expression) on the chosen regions.

How the offset reaches the face under JoyVASA's driving rule (`joyvasa.pipeline.driving`):
* every keypoint but the lips is driven relatively, delta_i = exp_s + (exp_d,i - exp_d,0): adding
  w_i (exp_ref - exp_s) to exp_d,i gives exp_s + w_i (exp_ref - exp_s) + generated motion, i.e. at full weight the
  reference's expression replaces the source's, and the generated motion plays on top;
* the human lip keypoints (LIP_KP) are driven absolutely, delta_i = exp_d,i: the source's lip expression never
  reaches the face, so the lips get w_i exp_ref (the reference's lip shape added to the speech motion), and
  neutralizing leaves them alone (normalize-lip already closes an open source mouth);
* animals are driven relatively on every keypoint, lips included.
The weight w is 0 at frame 0 (the source's own face, see `_face`) and ramps in and out with smoothsteps.

Keypoint regions (spec liveportrait.md §2.7, the keypoints LivePortrait's and AdvancedLivePortrait's editors move):
* brows: 1, 2 (the eyebrow sliders);
* eyes: 11, 13, 15, 16, 18 (LivePortrait's "eyes" animation region: pupils and lids);
* mouth: 6, 12, 14, 17, 19, 20 (LivePortrait's "lip" region) plus 3 and 7, which the smile and "woo" editors move
  with them (cheeks / mouth corners);
* all: every keypoint (the remaining 0, 4, 5, 8, 9, 10 carry face shape and head shift).
Regions combine with "+", e.g. "brows+eyes".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..renderer import prepare_images, source_keypoints
from ..renderer.keypoints import EYE_KP, LIP_KP, NUM_KP
from ._face import check_finite, envelope, with_exp

REGIONS: dict[str, tuple[int, ...]] = {
    "brows": (1, 2),
    "eyes": tuple(EYE_KP),
    "mouth": tuple(sorted((*LIP_KP, 3, 7))),
    "all": tuple(range(NUM_KP)),
}
REGION_CHOICES = ("all", "brows", "eyes", "mouth", "brows+eyes", "eyes+mouth", "brows+mouth")
DEFAULT_RAMP = 0.5  # seconds: an expression change on a face takes about half a second to build (0.3-1 s)


def region_keypoints(region: str) -> tuple[int, ...]:
    """Keypoint indices of a region name, or of names joined by "+" ("brows+eyes"), sorted."""
    names = [n.strip() for n in str(region).split("+") if n.strip()]
    unknown = [n for n in names if n not in REGIONS]
    if not names or unknown:
        raise ValueError(f"expression region must be {', '.join(REGIONS)} or several joined by '+', got {region!r}")
    return tuple(sorted({k for n in names for k in REGIONS[n]}))


@dataclass(frozen=True)
class ExpressionOffsetOptions:
    """intensity: 0 = off (neutral), 1 = the full offset, up to 2 (negative: the opposite expression, down to
    -1). Times in seconds: the offset ramps in over `ramp_in` from `start`, and out over `ramp_out` ending at `end`
    (None: held to the last frame)."""

    intensity: float = 0.0
    region: str = "all"
    start: float = 0.0
    end: float | None = None
    ramp_in: float = DEFAULT_RAMP
    ramp_out: float = DEFAULT_RAMP

    def __post_init__(self):
        check_finite("expression intensity", self.intensity, -1.0, 2.0)
        region_keypoints(self.region)
        check_finite("expression start (seconds)", self.start, 0.0)
        if self.end is not None:
            check_finite("expression end (seconds)", self.end, 0.0)
            if self.end <= self.start:
                raise ValueError(f"expression end ({self.end:g} s) must come after its start ({self.start:g} s)")
        check_finite("expression ramp_in (seconds)", self.ramp_in, 0.0)
        check_finite("expression ramp_out (seconds)", self.ramp_out, 0.0)

    @property
    def neutral(self) -> bool:
        return self.intensity == 0


@torch.no_grad()
def expression_from_image(renderer, image_rgb_256) -> Tensor:
    """The motion extractor's expression (21, 3) float32 on the CPU for a face crop: (H, W, 3) uint8 RGB (or
    float in [0, 1]), resized to 256 x 256 when it is another size."""
    image = torch.as_tensor(np.ascontiguousarray(image_rgb_256)) if not isinstance(image_rgb_256, Tensor) \
        else image_rgb_256
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected one (H, W, 3) RGB face crop, got shape {tuple(image.shape)}")
    return source_keypoints(renderer, prepare_images(image)).exp[0].float().cpu()


def expression_offset(source_exp: Tensor, reference_exp: Tensor | None = None, species: str = "human") -> Tensor:
    """(21, 3) offset to add to the motion's expression: towards the reference (reference_exp given) or removing
    the source's expression (None). Human lip rows follow JoyVASA's absolute lip rule (module docstring)."""
    src = torch.as_tensor(source_exp, dtype=torch.float32).reshape(NUM_KP, 3).cpu()
    ref = None if reference_exp is None else torch.as_tensor(reference_exp, dtype=torch.float32).reshape(NUM_KP, 3)
    offset = -src if ref is None else ref.cpu() - src
    if species == "human":
        lip = list(LIP_KP)
        offset[lip] = 0.0 if ref is None else ref.cpu()[lip]
    return offset


def expression_weights(frames: int, options: ExpressionOffsetOptions, fps: float = 25.0) -> Tensor:
    """(frames,) float32 weight of the offset over time (0 at frame 0)."""
    return envelope(frames, fps, options.start, options.end, options.ramp_in, options.ramp_out)


def apply_expression_offset(motion, offset: Tensor, options: ExpressionOffsetOptions, fps: float = 25.0):
    """The motion with intensity x weight(t) x offset added on the region's keypoints (a new MotionSequence);
    frames of weight 0 and keypoints outside the region stay bit for bit. Neutral options return `motion`."""
    if options.neutral or len(motion) == 0:
        return motion
    kps = list(region_keypoints(options.region))
    w = expression_weights(len(motion), options, fps)
    frames = torch.nonzero(w > 0).flatten()
    if frames.numel() == 0:
        return motion
    exp = motion.exp.clone()
    off = torch.as_tensor(offset, dtype=torch.float32).reshape(NUM_KP, 3)[kps]  # (K, 3)
    add = (w[frames, None, None] * options.intensity * off[None]).to(exp.device, exp.dtype)  # (F, K, 3)
    idx = frames.to(exp.device)[:, None]
    cols = torch.tensor(kps, device=exp.device)[None, :]
    exp[idx, cols] = exp[idx, cols] + add
    return with_exp(motion, exp)
