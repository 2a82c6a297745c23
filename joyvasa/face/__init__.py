"""Face pre- and post-processing: landmark-driven similarity crop, feathered paste-back (NumPy / OpenCV)."""
from .crop import (
    SUPPORTED_LANDMARK_COUNTS,
    Crop,
    crop_anchors,
    crop_image,
    crop_rect,
    mask_template,
    paste_back,
    paste_back_mask,
    resize_area,
    similarity_crop_matrices,
    transform_points,
)

__all__ = [
    "SUPPORTED_LANDMARK_COUNTS",
    "Crop",
    "crop_anchors",
    "crop_image",
    "crop_rect",
    "mask_template",
    "paste_back",
    "paste_back_mask",
    "resize_area",
    "similarity_crop_matrices",
    "transform_points",
]
