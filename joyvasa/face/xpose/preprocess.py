"""X-Pose input: resize so the short side is 800 (long side at most 1333), scale to [0, 1], ImageNet-normalise.

The resize is PIL's bilinear filter on the uint8 image, as in the original (torchvision on a PIL image), so the
network input is reproduced exactly; output sizes are truncated, not rounded (450 x 300 -> 1200 x 800).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

SHORT_SIDE = 800
MAX_SIDE = 1333
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resized_size(width: int, height: int, short_side: int = SHORT_SIDE, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(new_width, new_height): short side -> `short_side`, reduced so the long side stays <= `max_side`."""
    lo, hi = float(min(width, height)), float(max(width, height))
    size = short_side
    if hi / lo * size > max_side:
        size = int(round(max_side * lo / hi))
    if min(width, height) == size:
        return width, height
    if width < height:
        return size, int(size * height / width)
    return int(size * width / height), size


def resize_bilinear(image_rgb_u8: np.ndarray, width: int, height: int) -> np.ndarray:
    """PIL bilinear resize of an (H, W, 3) uint8 image to (height, width, 3)."""
    from PIL import Image  # optional dependency, needed by animal mode only

    return np.asarray(Image.fromarray(image_rgb_u8).resize((width, height), Image.BILINEAR))


def preprocess(image_rgb_u8: np.ndarray, short_side: int = SHORT_SIDE, max_side: int = MAX_SIDE) -> Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H', W') float32 network input."""
    image = np.asarray(image_rgb_u8)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"X-Pose expects an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    new_w, new_h = resized_size(width, height, short_side, max_side)
    resized = resize_bilinear(np.ascontiguousarray(image), new_w, new_h)
    x = torch.from_numpy(resized.copy()).permute(2, 0, 1).float().div(255)  # (3, H', W') in [0, 1]
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    return ((x - mean) / std)[None]
