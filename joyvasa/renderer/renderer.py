"""The LivePortrait renderer: one weight set's five networks, and the steps that use them.

Steps are plain functions of (renderer, tensors): `prepare_images` -> `appearance_features` (f_s, once per
source) and `source_keypoints` (x_s and its parts) -> driving keypoints (JoyVASA motion, see
`keypoints.py`) -> `stitch` / `retarget_*` -> `warp_decode` (W then G) -> `to_uint8`.
Networks run in the renderer's dtype; keypoint math and the small MLPs run in float32.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..weights import WeightsLocation, renderer_files
from . import keypoints as kpm
from .loading import load_network
from .warping_network import WarpOutput

INPUT_SIZE = 256  # network input resolution
OUTPUT_SIZE = 512  # generator output resolution (the crop space)


class LivePortraitRenderer(nn.Module):
    """Appearance extractor F, motion extractor M, warping module W, SPADE generator G, stitching MLPs S."""

    def __init__(self, appearance: nn.Module, motion: nn.Module, warping: nn.Module, generator: nn.Module,
                 stitching: nn.Module, species: str = "human"):
        super().__init__()
        self.appearance = appearance
        self.motion = motion
        self.warping = warping
        self.generator = generator
        self.stitching = stitching
        self.species = species

    @property
    def dtype(self) -> torch.dtype:
        return next(self.warping.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """Where the networks are (all on one device)."""
        return next(self.parameters()).device


def load_renderer(species: str = "human", animal_version: str = "v1.0",
                  location: WeightsLocation | None = None, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32, configs: dict | None = None) -> LivePortraitRenderer:
    """Load one official weight set. Animal `v1.0` (`base_models`) is what JoyVASA uses; `v1.1` is
    LivePortrait's newer animal set. The stitching MLPs always stay in float32 (they are tiny)."""
    paths = (location or WeightsLocation()).find_all(renderer_files(species, animal_version).values())
    files = renderer_files(species, animal_version)
    configs = configs or {}
    nets = {name: load_network(name, paths[rel], configs.get(name), device=device,
                               dtype=torch.float32 if name == "stitching_retargeting_module" else dtype)
            for name, rel in files.items()}
    return LivePortraitRenderer(nets["appearance_feature_extractor"], nets["motion_extractor"],
                                nets["warping_module"], nets["spade_generator"],
                                nets["stitching_retargeting_module"], species=species)


class SourceKeypoints(NamedTuple):
    """Motion-extractor result in keypoint form (LivePortrait `get_kp_info` + `transform_keypoint`)."""

    pitch: Tensor  # (B, 1) degrees
    yaw: Tensor
    roll: Tensor
    t: Tensor  # (B, 3)
    exp: Tensor  # (B, 21, 3)
    scale: Tensor  # (B, 1)
    kp: Tensor  # (B, 21, 3) canonical keypoints x_c
    R: Tensor  # (B, 3, 3) row-vector rotation
    x_s: Tensor  # (B, 21, 3) posed keypoints

    def to(self, device: torch.device | str) -> SourceKeypoints:
        return SourceKeypoints(*(t.to(device) for t in self))


def prepare_images(images: Tensor) -> Tensor:
    """(B, H, W, 3) uint8 or float in [0, 1] -> (B, 3, 256, 256) float32 in [0, 1], the networks' input."""
    if images.dim() == 3:
        images = images[None]
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    x = x.clamp(0, 1).permute(0, 3, 1, 2)
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
    return x.contiguous()


def _features(module: nn.Module, x: Tensor) -> Tensor:
    """An image or feature volume in the module's device and dtype (the only tensors that take a low-precision
    dtype; keypoints always stay float32)."""
    param = next(module.parameters())
    return x.to(param.device, param.dtype)


def _keypoints(module: nn.Module, x: Tensor) -> Tensor:
    """Keypoints (or eye / lip ratios) on the module's device, always float32."""
    return x.to(next(module.parameters()).device, torch.float32)


@torch.no_grad()
def appearance_features(renderer: LivePortraitRenderer, images: Tensor) -> Tensor:
    """(B, 3, 256, 256) -> f_s (B, 32, 16, 64, 64), in the renderer's dtype, on its device."""
    return renderer.appearance(_features(renderer.appearance, images))


@torch.no_grad()
def source_keypoints(renderer: LivePortraitRenderer, images: Tensor) -> SourceKeypoints:
    """(B, 3, 256, 256) -> head pose in degrees, expression, scale, translation, x_c, R and x_s (float32, on the
    renderer's device)."""
    out = renderer.motion(_features(renderer.motion, images))
    B = images.shape[0]
    pitch, yaw, roll = (kpm.bins_to_degrees(v.float()) for v in (out.pitch, out.yaw, out.roll))
    exp, kp = out.exp.float().reshape(B, -1, 3), out.kp.float().reshape(B, -1, 3)
    t, scale = out.t.float(), out.scale.float()
    R = kpm.rotation_matrix(pitch, yaw, roll)
    x_s = kpm.transform_keypoints(kp, R, exp, scale, t)
    return SourceKeypoints(pitch, yaw, roll, t, exp, scale, kp, R, x_s)


@torch.no_grad()
def stitch(renderer: LivePortraitRenderer, x_s: Tensor, x_d: Tensor) -> Tensor:
    """x_d corrected by the stitching MLP so the face stays aligned with the source's shoulders."""
    x_s, x_d = _keypoints(renderer.stitching, x_s), _keypoints(renderer.stitching, x_d)
    delta = renderer.stitching.stitching(kpm.stitching_input(x_s, x_d))
    return kpm.apply_stitching(x_d, delta)


@torch.no_grad()
def retarget_lip(renderer: LivePortraitRenderer, x_s: Tensor, lip_ratios: Tensor) -> Tensor:
    """(B, 21, 3), (B, 2) [source lip ratio, target lip ratio] -> expression delta (B, 21, 3)."""
    delta = renderer.stitching.lip(kpm.retargeting_input(_keypoints(renderer.stitching, x_s),
                                                       _keypoints(renderer.stitching, lip_ratios)))
    return delta.reshape(x_s.shape[0], -1, 3)


@torch.no_grad()
def retarget_eye(renderer: LivePortraitRenderer, x_s: Tensor, eye_ratios: Tensor) -> Tensor:
    """(B, 21, 3), (B, 3) [source left, source right, target] eye ratios -> expression delta (B, 21, 3)."""
    delta = renderer.stitching.eye(kpm.retargeting_input(_keypoints(renderer.stitching, x_s),
                                                       _keypoints(renderer.stitching, eye_ratios)))
    return delta.reshape(x_s.shape[0], -1, 3)


@torch.no_grad()
def warp_decode(renderer: LivePortraitRenderer, f_s: Tensor, x_s: Tensor, x_d: Tensor
                ) -> tuple[Tensor, WarpOutput]:
    """W then G: (B, 32, 16, 64, 64), (B, 21, 3) x2 -> frames (B, 3, 512, 512) float32 in [0, 1].

    A single source may drive a batch of frames: f_s and x_s of batch 1 are broadcast to x_d's batch. f_s takes
    the renderer's dtype; the keypoints stay float32 (the dense motion network builds its grids from them).
    """
    B = x_d.shape[0]
    f_s = _features(renderer.warping, f_s)
    x_s, x_d = _keypoints(renderer.warping, x_s), _keypoints(renderer.warping, x_d)
    if f_s.shape[0] != B:
        f_s = f_s.expand(B, *f_s.shape[1:])
    if x_s.shape[0] != B:
        x_s = x_s.expand(B, *x_s.shape[1:])
    warped = renderer.warping(f_s, x_s, x_d)
    return renderer.generator(_features(renderer.generator, warped.out)).float(), warped


def to_uint8(frames: Tensor) -> Tensor:
    """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8 by truncation, as the original converts frames."""
    return (frames.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1)
