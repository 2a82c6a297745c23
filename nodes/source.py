"""Prepare Source: portrait IMAGE -> cropped source (appearance volume + keypoints) and a crop preview."""
from __future__ import annotations

import logging

import numpy as np
import torch

from . import runtime
from .types import CATEGORY, FACE_DETECTOR, RENDERER, SOURCE

log = logging.getLogger("joyvasa.nodes")

CROP_MODES = ["auto", "none", "box"]


def image_to_uint8(image: torch.Tensor) -> np.ndarray:
    """First image of a ComfyUI IMAGE batch (B, H, W, C) float in [0, 1] -> (H, W, 3) uint8 RGB."""
    if image.ndim != 4 or image.shape[-1] not in (3, 4):
        raise ValueError(f"expected an IMAGE batch (B, H, W, 3), got shape {tuple(image.shape)}")
    if image.shape[0] > 1:
        log.warning("JoyVASA: the source IMAGE holds %d images; using the first", image.shape[0])
    rgb = image[0, :, :, :3].detach().float().cpu().clamp(0, 1)
    return (rgb * 255).round().to(torch.uint8).numpy()


def crop_for(image: np.ndarray, crop: str, detector, species: str, scale: float, vx_ratio: float, vy_ratio: float,
             face_index: int, box_xyxy):
    """Choose and compute the source crop (see the node's tooltips)."""
    from ..joyvasa.face.source import box_crop, crop_source, landmark_crop, no_crop

    if crop == "box":
        return box_crop(image, box_xyxy, scale=scale, vx_ratio=vx_ratio, vy_ratio=vy_ratio)
    if detector is not None and crop == "auto":
        wanted = "xpose" if species == "animal" else "insightface"
        if detector.kind != wanted:
            raise ValueError(f"A {detector.kind} face detector is connected to a {species} renderer: load the face "
                             f"detector as {'x-pose (animal)' if species == 'animal' else 'insightface (human)'}, "
                             "or use crop = box / none.")
        if detector.kind == "xpose":
            from ..joyvasa.face.xpose import detect_animal_keypoints

            with detector.detector.use() as model:
                found = detect_animal_keypoints(model, image, min_score=detector.det_thresh)
            return landmark_crop(image, found.points, scale=scale, vx_ratio=vx_ratio, vy_ratio=vy_ratio)
        face = detector.detector.find(image, face_index=face_index)
        return crop_source(image, face, scale=scale, vx_ratio=vx_ratio, vy_ratio=vy_ratio)
    landmarks = None
    if detector is not None and detector.kind == "insightface" and species == "human":
        # landmarks for normalize-lip, as the original computes them without a crop
        try:
            landmarks = detector.detector.find(image, face_index=face_index).landmarks_203
        except ValueError as err:
            log.info("JoyVASA: no landmarks for normalize-lip (%s)", err)
    return no_crop(image, landmarks)


class JoyVASAPrepareSource:
    DESCRIPTION = ("Crops the portrait around the face and extracts what the renderer needs from it, once per "
                   "image: the 3-D appearance volume and the source keypoints.")
    CATEGORY = CATEGORY
    FUNCTION = "prepare"
    RETURN_TYPES = (SOURCE, "IMAGE")
    RETURN_NAMES = ("source", "crop_preview")
    OUTPUT_TOOLTIPS = ("The prepared source for Render.", "The 512x512 crop the renderer animates.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "renderer": (RENDERER, {"tooltip": "From JoyVASA Load Renderer."}),
                "image": ("IMAGE", {"tooltip": "The portrait (first image of the batch is used)."}),
                "crop": (CROP_MODES, {
                    "default": "auto", "tooltip": "auto: find the face with the connected detector (whole image if "
                                                  "none is connected). none: the image already is a face crop. "
                                                  "box: crop around the box given below."}),
                "scale": ("FLOAT", {"default": 2.3, "min": 1.0, "max": 5.0, "step": 0.05,
                                    "tooltip": "Crop size relative to the face: larger shows more hair and "
                                               "shoulders, smaller zooms in."}),
                "vx_ratio": ("FLOAT", {"default": 0.0, "min": -0.5, "max": 0.5, "step": 0.01,
                                       "tooltip": "Horizontal crop shift (fraction of the crop); JoyVASA uses 0."}),
                "vy_ratio": ("FLOAT", {"default": -0.125, "min": -0.5, "max": 0.5, "step": 0.005,
                                       "tooltip": "Vertical crop shift (fraction of the crop); negative moves the "
                                                  "crop up towards the forehead."}),
                "face_index": ("INT", {"default": 0, "min": 0, "max": 64,
                                       "tooltip": "Which face when there are several: 0 = the largest."}),
                "max_dim": ("INT", {"default": 1280, "min": 256, "max": 8192, "step": 2,
                                    "tooltip": "Images with a longer side are scaled down first (and odd sizes "
                                               "trimmed to even, for video encoders)."}),
            },
            "optional": {
                "face_detector": (FACE_DETECTOR, {"tooltip": "From JoyVASA Load Face Detector (for crop = auto)."}),
                "box_x": ("INT", {"default": 0, "min": 0, "max": 16384, "tooltip": "Box left, pixels (crop = box)."}),
                "box_y": ("INT", {"default": 0, "min": 0, "max": 16384, "tooltip": "Box top, pixels (crop = box)."}),
                "box_width": ("INT", {"default": 256, "min": 1, "max": 16384,
                                      "tooltip": "Box width: the face's extent, pixels (crop = box)."}),
                "box_height": ("INT", {"default": 256, "min": 1, "max": 16384,
                                       "tooltip": "Box height: the face's extent, pixels (crop = box)."}),
            },
        }

    def prepare(self, renderer, image, crop, scale, vx_ratio, vy_ratio, face_index, max_dim, face_detector=None,
                box_x=0, box_y=0, box_width=256, box_height=256):
        from ..joyvasa.face.source import resize_to_limit
        from ..joyvasa.pipeline import prepare_source

        if crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}")
        picture = resize_to_limit(image_to_uint8(image), max_dim=max_dim)
        box = (box_x, box_y, box_x + box_width, box_y + box_height)
        source_crop = crop_for(picture, crop, face_detector, renderer.info["species"], scale, vx_ratio, vy_ratio,
                               face_index, box)
        with renderer.use() as model:
            source = prepare_source(model, picture, source_crop)
        preview = torch.from_numpy(source_crop.image_512).float()[None] / 255
        return (source, preview.to(runtime.intermediate_device()))
