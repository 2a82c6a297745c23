"""The JoyVASA pipeline as named steps over tensors:

    source = prepare_source(renderer, image, crop)                      # F, M once per source
    motion = joyvasa.motion.generate_motion(generator, waveform, rate)  # speech -> per-frame motion
    for frames in animate(renderer, source, motion, options): ...      # keypoints -> W + G -> paste-back

`animate` streams: it holds one batch of frames at a time. `animate_portrait` (portrait.py) runs the whole
chain from a picture and a speech clip, with every option checked up front: the CLI and the nodes use it.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..renderer import LivePortraitRenderer
from .driving import DrivingKeypoints, DrivingOptions, driving_keypoints, motion_multiplier
from .render import PasteBack, ProgressCallback, render_frames, stream_uint8
from .source import Source, prepare_source


def will_paste_back(source: Source, options: DrivingOptions, paste_back: bool) -> bool:
    """The original pastes back only crops, and only with stitching on (otherwise the shoulders would jump)."""
    return paste_back and source.crop.cropped and options.stitching


def animate(renderer: LivePortraitRenderer, source: Source, motion, options: DrivingOptions | None = None,
            paste_back: bool = True, batch_size: int = 4,
            callback: ProgressCallback | None = None) -> Iterator[np.ndarray]:
    """Yield batches of uint8 (b, H, W, 3) frames: full-size pasted-back frames when `will_paste_back`, else
    the 512x512 crop-space frames."""
    options = options or DrivingOptions()
    keypoints = driving_keypoints(renderer, source.keypoints, motion, options, species=source.species,
                                  landmarks_203=source.landmarks_203)
    paste = PasteBack.for_source(source.image, source.crop.M_c2o) if will_paste_back(
        source, options, paste_back) else None
    frames = render_frames(renderer, source.f_s, source.keypoints.x_s, keypoints.x_d, batch_size, callback)
    yield from stream_uint8(frames, paste)


from .portrait import (  # noqa: E402  (builds on the steps above)
    CropOptions,
    MotionOptions,
    PortraitClip,
    PortraitOptions,
    animate_portrait,
    check_detector,
    crop_portrait,
    detector_files,
    load_detector,
    portrait_files,
    portrait_image,
)

__all__ = [
    "CropOptions", "DrivingKeypoints", "DrivingOptions", "MotionOptions", "PasteBack", "PortraitClip",
    "PortraitOptions", "Source", "animate", "animate_portrait", "check_detector", "crop_portrait",
    "detector_files", "driving_keypoints", "load_detector", "motion_multiplier", "portrait_files",
    "portrait_image", "prepare_source", "render_frames", "stream_uint8", "will_paste_back",
]
