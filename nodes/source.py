"""Prepare Source: portrait IMAGE -> cropped source (appearance volume + keypoints) and a crop preview."""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..joyvasa.face.source import CROP_MODES, CROP_SCALE, CROP_VX_RATIO, CROP_VY_RATIO, SOURCE_MAX_DIM
from . import runtime
from .types import CATEGORY, FACE_DETECTOR, RENDERER, SOURCE, FaceDetectorHandle


def image_to_uint8(image: torch.Tensor) -> np.ndarray:
    """A ComfyUI IMAGE holding one picture (1, H, W, C) float in [0, 1] -> (H, W, 3) uint8 RGB."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (3, 4):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"expected an IMAGE batch (B, H, W, 3), got {shape}")
    if image.shape[0] != 1:
        raise ValueError(f"the source IMAGE holds {image.shape[0]} pictures; JoyVASA animates one portrait: pick one "
                         "(e.g. with Image From Batch) before this node")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"the source IMAGE is empty ({image.shape[2]}x{image.shape[1]} pixels)")
    rgb = image[0, :, :, :3].detach().float().cpu().clamp(0, 1)
    return (rgb * 255).round().to(torch.uint8).numpy()


@contextlib.contextmanager
def detector_in_use(handle: FaceDetectorHandle | None):
    """The library's detector for a FACE_DETECTOR handle (X-Pose on its compute device while in use)."""
    if handle is None:
        yield None
    elif handle.kind == "xpose":
        from ..joyvasa.face.xpose import AnimalFaceDetector

        with handle.detector.use() as model:
            yield AnimalFaceDetector(model, handle.det_thresh)
    else:
        yield handle.detector


def crop_options(crop: str, scale: float, vx_ratio: float, vy_ratio: float, face_index: int, max_dim: int,
                 box=None, det_thresh: float | None = None):
    from ..joyvasa.pipeline import CropOptions

    return CropOptions(mode=crop, box=box, scale=scale, vx_ratio=vx_ratio, vy_ratio=vy_ratio,
                       face_index=face_index, max_dim=max_dim, det_thresh=det_thresh)


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
                "crop": (list(CROP_MODES), {
                    "default": "auto", "tooltip": "auto: find the face with the connected detector (whole image if "
                                                  "none is connected). none: the image already is a face crop. "
                                                  "box: crop around the box given below."}),
                "scale": ("FLOAT", {"default": CROP_SCALE, "min": 1.0, "max": 5.0, "step": 0.05,
                                    "tooltip": "Crop size relative to the face: larger shows more hair and "
                                               "shoulders, smaller zooms in."}),
                "vx_ratio": ("FLOAT", {"default": CROP_VX_RATIO, "min": -0.5, "max": 0.5, "step": 0.01,
                                       "tooltip": "Horizontal crop shift (fraction of the crop); JoyVASA uses 0."}),
                "vy_ratio": ("FLOAT", {"default": CROP_VY_RATIO, "min": -0.5, "max": 0.5, "step": 0.005,
                                       "tooltip": "Vertical crop shift (fraction of the crop); negative moves the "
                                                  "crop up towards the forehead."}),
                "face_index": ("INT", {"default": 0, "min": 0, "max": 64,
                                       "tooltip": "Which face when there are several: 0 = the largest."}),
                "max_dim": ("INT", {"default": SOURCE_MAX_DIM, "min": 256, "max": 8192, "step": 2,
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
        from ..joyvasa.pipeline import check_detector, crop_portrait, portrait_image, prepare_source

        box = (box_x, box_y, box_x + box_width, box_y + box_height) if crop == "box" else None
        options = crop_options(crop, scale, vx_ratio, vy_ratio, face_index, max_dim, box)
        picture = portrait_image(image_to_uint8(image), options.max_dim)
        if face_detector is not None:
            check_detector("animal" if face_detector.kind == "xpose" else "human", renderer.info["species"])
        with detector_in_use(face_detector) as detector:
            source_crop = crop_portrait(picture, options, detector)
        with renderer.use() as model:
            source = prepare_source(model, picture, source_crop)
        preview = torch.from_numpy(source_crop.image_512).float()[None] / 255
        return (source, preview.to(runtime.intermediate_device()))
