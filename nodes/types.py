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
    motion came from (seed, source, ...), written into a saved motion file's metadata."""

    motion: object  # joyvasa.motion.MotionSequence
    waveform: torch.Tensor | None
    sample_rate: int
    audio_delay: float
    fps: float = 25.0
    info: Mapping[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.motion)


@dataclass
class FaceDetectorHandle:
    """What PrepareSource needs to find a face: the InsightFace detector (humans), X-Pose (animals) or None."""

    kind: str  # "insightface" | "xpose"
    detector: object
    det_thresh: float
