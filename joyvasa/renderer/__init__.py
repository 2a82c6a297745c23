"""LivePortrait renderer: networks F, M, W, G, S, their loading, and the keypoint math that drives them."""
from .loading import load_network
from .renderer import (
    LivePortraitRenderer,
    SourceKeypoints,
    appearance_features,
    load_renderer,
    prepare_images,
    retarget_eye,
    retarget_lip,
    source_keypoints,
    stitch,
    to_uint8,
    warp_decode,
)

__all__ = [
    "LivePortraitRenderer", "SourceKeypoints", "appearance_features", "load_network", "load_renderer",
    "prepare_images", "retarget_eye", "retarget_lip", "source_keypoints", "stitch", "to_uint8", "warp_decode",
]
