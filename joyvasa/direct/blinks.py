"""Blinks: insert natural blinks, or suppress the generated ones, through LivePortrait's eye-retargeting MLP.

An eye-openness curve over time (1 = as open as the source's eyes, 0 = closed) becomes a target eye ratio per
frame; the eye MLP turns [source left ratio, source right ratio, target] into a keypoint delta, and the delta
minus the MLP's delta at the source's own openness is added to the eye keypoints' expression (EYE_KP: 11, 13,
15, 16, 18) of the blinking frames only, so every other frame and keypoint stays bit for bit as it was.

The MLP's delta is in posed keypoint units (LivePortrait adds it to x_d); the expression sits inside the head's
scale (x = s (x_c R + delta) + t), so it is divided by the source's scale s_s before it is added.

The source's eye ratios (eyelid gap / eye width) come from its 203 landmarks (`eye_close_ratio`); a source
cropped by box or without a detector has none, so the landmark model is run on its crop when a human face
detector is given. Animal sources have neither the landmarks nor a trained eye MLP: blinks refuse them.

Numbers (physiology of spontaneous blinks):
* rate 15 per minute: adults at rest blink about 15-20 times a minute (more in conversation, fewer reading);
* duration 0.25 s: a full spontaneous blink lasts 0.1-0.4 s; the lid closes in about a third of it and reopens
  more slowly in the remaining two thirds (CLOSE_FRACTION);
* intervals are gamma-distributed around 60 / rate seconds with a coefficient of variation `jitter` (0.4 by
  default; measured blink intervals are irregular, CV 0.3-1), never shorter than the blink plus
  REFRACTORY_SECONDS, so two blinks never merge.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..renderer import retarget_eye
from ..renderer.keypoints import EYE_KP, eye_close_ratio
from ._face import check_finite, smoothstep, with_exp

BLINK_MODES = ("off", "add", "replace", "suppress")
DEFAULT_RATE = 15.0  # blinks per minute
DEFAULT_DURATION = 0.25  # seconds
DEFAULT_JITTER = 0.4  # coefficient of variation of the intervals
CLOSE_FRACTION = 1.0 / 3.0  # share of the blink spent closing (the rest reopens)
REFRACTORY_SECONDS = 0.25  # minimum open time between two blinks
SUPPRESS_WINDOW = 0.6  # seconds: a running median this long removes pulses shorter than half of it (blinks)

ANIMAL_MESSAGE = ("Blinks need a human source: they read the eyes' openness from LivePortrait's 203 human face "
                  "landmarks and drive LivePortrait's eye-retargeting network, which animal weights do not have.")
NO_LANDMARKS_MESSAGE = ("Blinks need the source's eye openness, read from LivePortrait's 203 face landmarks, and "
                        "this source has none (it was cropped by box, or without a face detector). Connect a face "
                        "detector (insightface) to the blinks control, or prepare the source with crop = auto and "
                        "a face detector.")


@dataclass(frozen=True)
class BlinkOptions:
    """mode: "off" (neutral), "add" (insert blinks, keep the generated ones), "replace" (suppress the generated
    blinks, then insert), "suppress" (remove the generated blinks only). `seed` makes the timing reproducible;
    `depth` 1 closes the eyes fully."""

    mode: str = "off"
    rate_per_minute: float = DEFAULT_RATE
    duration: float = DEFAULT_DURATION
    seed: int = 0
    jitter: float = DEFAULT_JITTER
    depth: float = 1.0

    def __post_init__(self):
        if self.mode not in BLINK_MODES:
            raise ValueError(f"blink mode must be one of {', '.join(BLINK_MODES)}, got {self.mode!r}")
        check_finite("blink rate (per minute)", self.rate_per_minute, 0.0, 60.0)
        check_finite("blink duration (seconds)", self.duration, 0.05, 1.0)
        check_finite("blink jitter", self.jitter, 0.0, 1.0)
        check_finite("blink depth", self.depth, 0.0, 1.0)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"blink seed must be a whole number >= 0, got {self.seed!r}")

    @property
    def inserts(self) -> bool:
        return self.mode in ("add", "replace") and self.rate_per_minute > 0 and self.depth > 0

    @property
    def neutral(self) -> bool:
        return self.mode == "off" or (self.mode == "add" and not self.inserts)


def blink_schedule(frames: int, options: BlinkOptions, fps: float = 25.0) -> list[int]:
    """Frames at which the eyes are most closed, in order. The same seed gives the same schedule; no blink
    touches frame 0 (the source's own face, see `_face`)."""
    if not options.inserts or frames < 2:
        return []
    rng = np.random.default_rng(options.seed)
    mean = 60.0 / options.rate_per_minute
    closing = options.duration * CLOSE_FRACTION
    gap = options.duration + REFRACTORY_SECONDS
    first = math.floor(closing * fps) + 1  # the closing starts after frame 0

    def interval() -> float:
        if options.jitter == 0:
            return mean
        shape = 1.0 / options.jitter ** 2
        return float(rng.gamma(shape, mean / shape))

    t = closing + rng.uniform(0.0, mean)  # the first blink falls anywhere in the first mean interval
    apexes: list[int] = []
    while True:
        frame = max(round(t * fps), first if not apexes else apexes[-1] + math.ceil(gap * fps))
        if frame >= frames:
            return apexes
        apexes.append(frame)
        t = frame / fps + max(interval(), gap)


def eye_openness(frames: int, options: BlinkOptions, fps: float = 25.0) -> Tensor:
    """(frames,) float32: 1 where the eyes are as open as the source's, down to 1 - depth at each blink's apex.
    Exactly 1.0 outside the blinks."""
    out = torch.ones(frames, dtype=torch.float64)
    closing = options.duration * CLOSE_FRACTION
    opening = options.duration - closing
    t = torch.arange(frames, dtype=torch.float64) / fps
    for apex in blink_schedule(frames, options, fps):
        ta = apex / fps
        rel = t - ta
        closure = torch.zeros_like(t)
        down = (rel > -closing) & (rel <= 0)
        closure[down] = smoothstep((rel[down] + closing) / closing)
        up = (rel > 0) & (rel < opening)
        closure[up] = 1.0 - smoothstep(rel[up] / opening)
        out = torch.minimum(out, 1.0 - options.depth * closure)
    return out.float()


def source_eye_ratios(source, detector=None) -> Tensor:
    """(1, 2) [left, right] eye openness of a `joyvasa.pipeline.Source`, from its 203 landmarks, or from the
    landmark model run on its crop when it has none and a human `FaceDetector` is given."""
    if source.species != "human":
        raise ValueError(ANIMAL_MESSAGE)
    lmk = source.landmarks_203
    if lmk is None:
        from ..face.detect import FaceDetector

        if detector is None:
            raise ValueError(NO_LANDMARKS_MESSAGE)
        if not isinstance(detector, FaceDetector):
            raise ValueError("Blinks need the human face detector (insightface) to find the eyes, got "
                             f"{type(detector).__name__}.")
        lmk = torch.from_numpy(np.asarray(detector.find(source.crop.image_512).landmarks_203, dtype=np.float32))
    return eye_close_ratio(torch.as_tensor(lmk, dtype=torch.float32).reshape(1, -1, 2))


def blink_deltas(renderer, x_s: Tensor, source_scale: Tensor, eye_ratios: Tensor, openness: Tensor) -> Tensor:
    """(B, 21, 3) expression deltas for openness values (B,) in [0, 1]: eye MLP at target ratio openness x the
    source's mean ratio, minus the MLP at the source's own ratio, divided by the source's scale. Zero rows outside
    EYE_KP."""
    ratios = eye_ratios.reshape(1, 2).float()
    open_ratio = ratios.mean(dim=1, keepdim=True)  # (1, 1)
    targets = torch.cat([openness.reshape(-1, 1).float().to(ratios.device) * open_ratio, open_ratio])  # (B + 1, 1)
    B1 = targets.shape[0]
    x = x_s.reshape(1, -1, 3).float().expand(B1, -1, -1)
    inputs = torch.cat([ratios.expand(B1, 2).to(targets.device), targets], dim=1)
    delta = retarget_eye(renderer, x, inputs).float()
    delta = (delta[:-1] - delta[-1:]) / source_scale.reshape(1, 1, 1).to(delta.device, torch.float32)
    mask = torch.zeros(1, delta.shape[1], 1, dtype=delta.dtype, device=delta.device)
    mask[:, list(EYE_KP)] = 1.0
    return delta * mask


def suppress_blinks(motion, window: float = SUPPRESS_WINDOW, fps: float = 25.0):
    """The eye keypoints' expression through a running median of `window` seconds (edge-preserving: gaze shifts
    and slow changes stay, pulses shorter than half the window, i.e. blinks, go), then shifted so frame 0 is
    unchanged."""
    T = len(motion)
    k = max(3, int(round(window * fps)) | 1)  # odd, at least 3
    if T < 3:
        return motion
    eye = list(EYE_KP)
    rows = motion.exp[:, eye].float()  # (T, 5, 3)
    half = k // 2
    padded = torch.cat([rows[:1].expand(half, -1, -1), rows, rows[-1:].expand(half, -1, -1)])
    med = padded.unfold(0, k, 1).median(dim=-1).values  # (T, 5, 3)
    exp = motion.exp.clone()
    exp[:, eye] = (med - med[:1] + rows[:1]).to(exp.dtype)
    return with_exp(motion, exp)


def apply_blinks(motion, options: BlinkOptions, renderer=None, source=None, eye_ratios: Tensor | None = None,
                 detector=None, fps: float = 25.0):
    """The motion with blinks inserted / suppressed (a new MotionSequence; neutral options return `motion`).

    Inserting needs the renderer (its eye MLP) and the `Source` (keypoints, scale, species and, unless
    `eye_ratios` (1, 2) is given, its eye ratios: see `source_eye_ratios`)."""
    if options.neutral or len(motion) == 0:
        return motion
    if options.mode in ("replace", "suppress"):  # needs no network: works on any motion
        motion = suppress_blinks(motion, fps=fps)
    if not options.inserts:
        return motion
    if renderer is None or source is None:
        raise ValueError("inserting blinks needs the renderer (its eye-retargeting network) and the prepared source")
    if getattr(renderer, "species", "human") != "human" or source.species != "human":
        raise ValueError(ANIMAL_MESSAGE)
    ratios = source_eye_ratios(source, detector) if eye_ratios is None else torch.as_tensor(eye_ratios).float()
    openness = eye_openness(len(motion), options, fps)
    frames = torch.nonzero(openness < 1.0).flatten()
    if frames.numel() == 0:
        return motion
    kp = source.keypoints
    delta = blink_deltas(renderer, kp.x_s, kp.scale, ratios, openness[frames])
    exp = motion.exp.clone()
    eye = list(EYE_KP)
    idx = frames.to(exp.device)
    exp[idx[:, None], torch.tensor(eye, device=exp.device)[None, :]] += delta[:, eye].to(exp.device, exp.dtype)
    return with_exp(motion, exp)
