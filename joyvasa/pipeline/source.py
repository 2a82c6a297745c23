"""The source side of the pipeline: a prepared crop -> appearance volume f_s and source keypoints x_s.

Computed once per source image; every rendered frame reuses it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..face.source import SourceCrop
from ..renderer import LivePortraitRenderer, SourceKeypoints, appearance_features, prepare_images, source_keypoints


@dataclass(frozen=True)
class Source:
    """A source portrait ready to animate. Its tensors stay where the renderer made them; every step moves what
    it is given to its renderer's device at entry."""

    image: np.ndarray  # (H, W, 3) uint8, the size-limited image the crop was taken from (paste-back target)
    crop: SourceCrop  # 512 / 256 crops, M_c2o, optional 203 landmarks
    f_s: Tensor  # (1, 32, 16, 64, 64) appearance volume, in the renderer's dtype
    keypoints: SourceKeypoints  # x_s and its parts, float32
    species: str  # "human" or "animal": which keypoint rule drives it

    @property
    def landmarks_203(self) -> Tensor | None:
        lmk = self.crop.landmarks_203
        return None if lmk is None else torch.from_numpy(np.asarray(lmk, dtype=np.float32))


def prepare_source(renderer: LivePortraitRenderer, image: np.ndarray, crop: SourceCrop) -> Source:
    """Run F and M on the crop's 256x256 image. `image` is the full (size-limited) source image."""
    I_s = prepare_images(torch.from_numpy(np.ascontiguousarray(crop.image_256)))
    return Source(image=image, crop=crop, f_s=appearance_features(renderer, I_s),
                  keypoints=source_keypoints(renderer, I_s), species=renderer.species)
