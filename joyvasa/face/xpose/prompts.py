"""The text prompt of animal mode: cached CLIP text embeddings of the instance name and the 9 keypoint names.

No text encoder runs at inference: X-Pose reads embeddings computed once with CLIP's text tower. The shipped
`animal_face_9.npz` holds LivePortrait's `clip_embedding_9.pkl` (instance prompt "face" (1, 512) and the 9
animal-face keypoint names (9, 512), float16), converted to plain arrays; see this package's README.md for
attribution.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch

from .model import Prompt

PROMPT_FILE = Path(__file__).with_name("animal_face_9.npz")

# Keypoint order of the 9-point prompt (and of every detection), as in X-Pose's predefined `animal_face`.
ANIMAL_FACE_9 = ("right eye right", "right eye left", "left eye right", "left eye left", "nose tip",
                 "lip right", "lip left", "upper lip", "lower lip")


@cache
def _arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as z:
        return z["instance"].astype(np.float32), z["keypoints"].astype(np.float32)


def animal_face_prompt(path: str | Path = PROMPT_FILE) -> Prompt:
    """The 9-point animal-face prompt as float32 CPU tensors (instance (1, 512), keypoints (9, 512))."""
    instance, keypoints = _arrays(Path(path))
    if keypoints.shape[0] != len(ANIMAL_FACE_9):
        raise ValueError(f"{path}: expected {len(ANIMAL_FACE_9)} keypoint embeddings, found {keypoints.shape[0]}")
    return Prompt(instance=torch.from_numpy(instance.copy()), keypoints=torch.from_numpy(keypoints.copy()))
