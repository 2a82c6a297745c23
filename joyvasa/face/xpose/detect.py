"""Animal-face detection end to end: image -> the 9 keypoints of the best animal face, in pixels (the crop from
them is human mode's similarity crop, `joyvasa.face.source.landmark_crop`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .model import Prompt, XPose
from .postprocess import candidates, to_pixels
from .preprocess import preprocess
from .prompts import ANIMAL_FACE_9, animal_face_prompt
from .trace import Trace


class NoAnimalFoundError(ValueError):
    """X-Pose found no animal face in the image."""


@dataclass(frozen=True)
class AnimalKeypoints:
    """The best animal face of an image.

    * `points`: (9, 2) float64 pixels (x, y) in the order of `ANIMAL_FACE_9` (right eye right, right eye left,
      left eye right, left eye left, nose tip, lip right, lip left, upper lip, lower lip);
    * `score`: its confidence in (0, 1);
    * `box`: (4,) float64 pixels (x0, y0, x1, y1) of the detected face.
    """

    points: np.ndarray
    score: float
    box: np.ndarray


@dataclass(frozen=True)
class AnimalFaceDetector:
    """X-Pose with its score threshold: the animal counterpart of `joyvasa.face.detect.FaceDetector`."""

    model: XPose
    min_score: float = 0.0  # the original takes the best candidate whatever its score

    def find(self, image_rgb_u8: np.ndarray, min_score: float | None = None) -> AnimalKeypoints:
        return detect_animal_keypoints(self.model, image_rgb_u8,
                                       min_score=self.min_score if min_score is None else min_score)


@torch.no_grad()
def detect_animal_keypoints(model: XPose, image_rgb_u8: np.ndarray, prompt: Prompt | None = None,
                            min_score: float = 0.0, iou_threshold: float = 0.0,
                            trace: Trace | None = None) -> AnimalKeypoints:
    """Find the best animal face in an (H, W, 3) uint8 RGB image.

    `min_score` 0 and `iou_threshold` 0 are the original's settings (it takes the best candidate whatever its
    score); raise `min_score` to reject images without an animal. Raises NoAnimalFoundError when no candidate
    scores above `min_score`. `trace` records the network input (`image_tensor`) and the model's intermediates.
    """
    prompt = animal_face_prompt() if prompt is None else prompt
    param = next(model.parameters())
    image = preprocess(image_rgb_u8).to(device=param.device, dtype=param.dtype)
    if trace is not None:
        trace.record("image_tensor", image)
    output = model(image, prompt, trace=trace)
    found = candidates(output, num_points=len(ANIMAL_FACE_9), min_score=min_score, iou_threshold=iou_threshold)
    if len(found.keep) == 0:
        top_score = float(output.logits[0].float().sigmoid().max())
        raise NoAnimalFoundError(
            f"No animal face found: the best candidate scores {top_score:.3f}, at or below min_score={min_score}. "
            "Use a clearer, larger view of the animal's face, or lower min_score.")
    height, width = image_rgb_u8.shape[:2]
    best = int(found.keep[0])
    points = to_pixels(found.keypoints[best], width, height)
    box = to_pixels(found.boxes_xyxy[best], width, height).reshape(4)
    return AnimalKeypoints(points=points, score=float(found.scores[best]), box=box)
