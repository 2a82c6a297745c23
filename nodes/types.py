"""Custom ComfyUI socket types of the pack and the small holders that travel through them."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

RENDERER = "JOYVASA_RENDERER"  # ModelHandle of a LivePortraitRenderer
MOTION_MODEL = "JOYVASA_MOTION_MODEL"  # ModelHandle of a MotionGenerator
FACE_DETECTOR = "JOYVASA_FACE_DETECTOR"  # FaceDetectorHandle
SOURCE = "JOYVASA_SOURCE"  # joyvasa.pipeline.Source
SPEECH = "JOYVASA_SPEECH"  # SpeechClip
MOTION = "JOYVASA_MOTION"  # MotionClip

CATEGORY = "JoyVASA"


@dataclass(frozen=True)
class SpeechClip:
    """Encoded speech plus the audio it came from (to hand back, aligned, with the frames)."""

    features: object  # joyvasa.motion.SpeechFeatures
    waveform: torch.Tensor  # (C, T) as the user gave it
    sample_rate: int


@dataclass(frozen=True)
class MotionClip:
    """Generated per-frame motion at `fps`, and the audio to play with it: the speech delayed by
    `audio_delay` seconds (the original timing makes frames lag the speech by 80 ms; delaying the sound
    by the same amount puts them back in sync). `waveform` None = no audio (a loaded motion file): Render
    returns silence and Render to File writes a video without sound. `info`: what is known of where the
    motion came from (seed, source, ...), written into a saved motion file's metadata. `ratios`: the eye and
    lip openness measured per frame (a driving video, or a file that stored them), see `MeasuredRatios`."""

    motion: object  # joyvasa.motion.MotionSequence
    waveform: torch.Tensor | None
    sample_rate: int
    audio_delay: float
    fps: float = 25.0
    info: Mapping[str, object] = field(default_factory=dict)
    ratios: MeasuredRatios | None = None

    def __len__(self) -> int:
        return len(self.motion)

    def measured_ratios(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(eye (T, 2), lip (T, 1)) openness when they were measured for this very motion, else (None, None):
        a node that edits the motion (`dataclasses.replace(clip, motion=...)`) leaves them behind."""
        if self.ratios is None or self.ratios.motion is not self.motion:
            return None, None
        return self.ratios.eye, self.ratios.lip


@dataclass(frozen=True)
class MeasuredRatios:
    """Eye (T, 2) and lip (T, 1) openness measured for `motion` (a MotionSequence); either may be None."""

    motion: object
    eye: torch.Tensor | None
    lip: torch.Tensor | None


@dataclass
class FaceDetectorHandle:
    """What PrepareSource needs to find a face: the InsightFace detector (humans), X-Pose (animals) or None."""

    kind: str  # "insightface" | "xpose"
    detector: object
    det_thresh: float
