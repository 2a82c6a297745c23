"""Parity of the LivePortrait renderer with the original implementation (kit fixtures 01-04).

Inputs, weight seed, weight files and expected outputs all come from the kit's golden files; the stand-in
checkpoints are written in the official layout and read by our own loader.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from joyvasa.renderer import (
    LivePortraitRenderer,
    appearance_features,
    load_network,
    prepare_images,
    retarget_eye,
    retarget_lip,
    source_keypoints,
    stitch,
    to_uint8,
    warp_decode,
)
from joyvasa.renderer.keypoints import stitching_input

pytestmark = pytest.mark.parity

SPECIES = ["human", "animal"]


@pytest.fixture(scope="module")
def network(standin_weights):
    """network(relpath, seed) -> that official file loaded into our module (cached per module)."""
    cache = {}

    def load(relpath: str, seed: int):
        if (relpath, seed) not in cache:
            root = standin_weights([relpath], seed)
            cache[relpath, seed] = load_network(Path(relpath).stem, root / relpath)
        return cache[relpath, seed]

    return load


def _all_checked(g) -> None:
    unchecked = sorted((set(g.keys("out_")) | set(g.keys("mid_"))) - set(g.errors))
    assert not unchecked, f"{g.name}: arrays not compared: {unchecked}"


def _files(meta) -> list[str]:
    weights = meta["weights"]
    return [weights] if isinstance(weights, str) else list(weights)


def _renderer_with(network, meta, **names) -> LivePortraitRenderer:
    """A renderer holding only the networks a fixture uses (the others are never called)."""
    nets = {Path(rel).stem: network(rel, int(meta["weights_seed"])) for rel in _files(meta)}
    return LivePortraitRenderer(
        appearance=nets.get("appearance_feature_extractor"), motion=nets.get("motion_extractor"),
        warping=nets.get("warping_module"), generator=nets.get("spade_generator"),
        stitching=nets.get("stitching_retargeting_module"))


@pytest.mark.parametrize("species", SPECIES)
def test_motion_extractor_and_source_keypoints(golden, network, species):
    g = golden(f"01_motion_extractor_{species}.npz")
    renderer = _renderer_with(network, g.meta)
    images = prepare_images(torch.from_numpy(g["in_image_rgb_u8"]))
    np.testing.assert_array_equal(images.numpy(), g["in_I_s"])

    I_s = torch.from_numpy(g["in_I_s"])
    with torch.no_grad():
        raw = renderer.motion(I_s)
    for key in g.keys("out_raw_"):
        g.check(key, getattr(raw, key[len("out_raw_"):]))

    sk = source_keypoints(renderer, I_s)
    for key in ("pitch", "yaw", "roll", "t", "exp", "scale", "kp", "x_s"):
        g.check(f"out_{key}", getattr(sk, key))
    g.check("out_R_s", sk.R)
    _all_checked(g)


@pytest.mark.parametrize("species", SPECIES)
def test_appearance_features(golden, network, species):
    g = golden(f"02_appearance_feature_{species}.npz")
    renderer = _renderer_with(network, g.meta)
    g.check("out_f_s", appearance_features(renderer, torch.from_numpy(g["in_I_s"])))
    _all_checked(g)


@pytest.mark.parametrize("species", SPECIES)
def test_warp_decode(golden, network, species):
    g = golden(f"03_warp_decode_{species}.npz")
    renderer = _renderer_with(network, g.meta)
    np.testing.assert_allclose(g["in_x_s"] + g["in_delta"], g["in_x_d"], atol=1e-6)
    image, warped = warp_decode(renderer, *(torch.from_numpy(g[k]) for k in ("in_f_s", "in_x_s", "in_x_d")))
    g.check("out_occlusion_map", warped.occlusion_map)
    g.check("out_deformation", warped.deformation)
    g.check("out_warped_feature", warped.out)
    g.check("out_image", image)
    g.check("out_image_u8", to_uint8(image)[0])
    _all_checked(g)


def test_stitching_and_retargeting(golden, network):
    g = golden("04_stitching_retargeting.npz")
    renderer = _renderer_with(network, g.meta)
    x_s, x_d = torch.from_numpy(g["in_x_s"]), torch.from_numpy(g["in_x_d"])
    with torch.no_grad():
        g.check("out_stitch_delta", renderer.stitching.stitching(stitching_input(x_s, x_d)))
    g.check("out_x_d_stitched", stitch(renderer, x_s, x_d))
    g.check("out_lip_delta", retarget_lip(renderer, x_s, torch.from_numpy(g["in_lip_ratio"])))
    g.check("out_eye_delta", retarget_eye(renderer, x_s, torch.from_numpy(g["in_eye_ratio"])))
    _all_checked(g)


@pytest.mark.parametrize("species", SPECIES)
def test_bfloat16_frames_stay_close_to_float32(golden, network, species):
    """The fast bf16 mode: warp + generate on the kit's inputs within 35 dB PSNR of the original's fp32 frame."""
    g = golden(f"03_warp_decode_{species}.npz")
    renderer = _renderer_with(network, g.meta)
    fast = LivePortraitRenderer(None, None, copy.deepcopy(renderer.warping).to(torch.bfloat16),
                                copy.deepcopy(renderer.generator).to(torch.bfloat16), None)
    f_s = torch.from_numpy(g["in_f_s"]).to(torch.bfloat16)
    image, _ = warp_decode(fast, f_s, torch.from_numpy(g["in_x_s"]), torch.from_numpy(g["in_x_d"]))
    mse = float(((image - torch.from_numpy(g["out_image"])) ** 2).mean())
    psnr = 10 * math.log10(1.0 / max(mse, 1e-20))
    assert image.dtype == torch.float32 and psnr >= 35.0, f"bf16 PSNR {psnr:.1f} dB"
