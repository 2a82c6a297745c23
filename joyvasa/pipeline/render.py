"""Rendering as a stream: frames are produced batch by batch and pasted back as they come.

Nothing here holds more than one batch of frames; a caller that wants the whole clip collects it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from ..face import mask_template, paste_back, paste_back_mask
from ..renderer import LivePortraitRenderer, to_uint8, warp_decode

ProgressCallback = Callable[[int, int], None]  # (frames done, frames total)


def render_frames(renderer: LivePortraitRenderer, f_s: Tensor, x_s: Tensor, x_d: Tensor, batch_size: int = 4,
                  callback: ProgressCallback | None = None) -> Iterator[Tensor]:
    """Yield (b, 3, 512, 512) float32 frames in [0, 1] for consecutive slices of x_d (T, 21, 3).

    f_s and x_s are the source's (batch 1); they are moved to the renderer's device once."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = renderer.device
    f_s, x_s = f_s.to(device), x_s.to(device)
    total = x_d.shape[0]
    for start in range(0, total, batch_size):
        frames, _ = warp_decode(renderer, f_s, x_s, x_d[start : start + batch_size].to(device))
        yield frames
        if callback is not None:
            callback(min(start + batch_size, total), total)


@dataclass(frozen=True)
class PasteBack:
    """Everything paste-back needs that is constant per source: the image and the warped feather mask."""

    original: np.ndarray  # (H, W, 3) uint8, the (size-limited) source image
    M_c2o: np.ndarray  # (3, 3) crop -> original
    mask: np.ndarray  # (H, W, 3) float32 feather mask in the original's frame

    @classmethod
    def for_source(cls, original: np.ndarray, M_c2o: np.ndarray) -> PasteBack:
        mask = paste_back_mask(mask_template(512), M_c2o, original.shape[:2])
        return cls(original, np.asarray(M_c2o, dtype=np.float32), mask)

    def __call__(self, frames_u8: np.ndarray) -> np.ndarray:
        """(b, 512, 512, 3) uint8 crop-space frames -> (b, H, W, 3) uint8 full frames."""
        return np.stack([paste_back(f, self.M_c2o, self.original, self.mask) for f in frames_u8])


def stream_uint8(frames: Iterator[Tensor], paste: PasteBack | None = None) -> Iterator[np.ndarray]:
    """Convert rendered batches to uint8 HWC (truncation, as the original) and paste back when asked."""
    for batch in frames:
        u8 = to_uint8(batch).cpu().numpy()
        yield paste(u8) if paste is not None else u8
