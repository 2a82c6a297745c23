"""Synthetic face videos and the stand-in face models that track them, for tests of video input.

A frame is :func:`~joyvasa.testing.onnx_standins.warm_image`: a warm background with a skin-coloured ellipse
filling the face box. A frame without a face is blue-dominant, so the stand-in detector's colour gate closes
and it finds nothing there. The stand-in landmark model of :func:`standin_face_weights` follows the skin blob
(:func:`~joyvasa.testing.onnx_standins.build_tracking_landmark_203`), so tracking seeded by the previous
frame's points follows a moving face.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .onnx_standins import (
    DET_10G,
    LANDMARK_106,
    LANDMARK_203,
    StandinFace,
    build_2d106det,
    build_det_10g,
    build_tracking_landmark_203,
    warm_image,
)

__all__ = ["Box", "NO_FACE_BACKGROUND", "face_frame", "write_face_video", "standin_face_weights"]

Box = tuple[float, float, float, float]  # (x1, y1, x2, y2) pixels
NO_FACE_BACKGROUND = (90, 110, 160)  # blue > red: the stand-in detector's colour gate rejects it


def face_frame(image_hw, box: Box | None) -> np.ndarray:
    """One (H, W, 3) uint8 RGB frame: the warm picture with a face at ``box``, or a blue frame without one."""
    if box is None:
        return warm_image(image_hw, background=NO_FACE_BACKGROUND)
    return warm_image(image_hw, [StandinFace(tuple(float(v) for v in box))])


def write_face_video(path, n_frames: int, fps: float, size_hw, face_box_at: Callable[[int], Box | None],
                     audio: tuple | None = None) -> Path:
    """An H.264 mp4 of ``n_frames`` frames of :func:`face_frame` (the face of frame i at ``face_box_at(i)``,
    None = no face), with AAC sound when ``audio`` = (waveform, sample_rate) is given. ``size_hw`` must be even."""
    from ..video import Mp4Writer

    with Mp4Writer(path, fps=fps, audio=audio) as writer:
        for i in range(n_frames):
            writer.write(face_frame(size_hw, face_box_at(i))[None])
    return Path(path)


def standin_face_weights(root, first_box: Box, image_hw) -> Path:
    """det_10g (reporting ``first_box`` for every warm picture of size ``image_hw``), 2d106det and the
    face-following landmark.onnx stand-in under ``root`` in the official layout; returns ``root``."""
    root = Path(root)
    build_det_10g(root / DET_10G, [StandinFace(tuple(float(v) for v in first_box))], tuple(image_hw))
    build_2d106det(root / LANDMARK_106)
    build_tracking_landmark_203(root / LANDMARK_203)
    return root
