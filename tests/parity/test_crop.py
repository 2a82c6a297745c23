"""Parity of the crop geometry and paste-back with the original (fixture 07, and the animal crop of 08)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from joyvasa.face import (
    crop_anchors,
    crop_image,
    crop_rect,
    mask_template,
    paste_back,
    paste_back_mask,
    resize_area,
    similarity_crop_matrices,
)

pytestmark = pytest.mark.parity

FIXTURE = "07_crop_pasteback.npz"


@pytest.fixture(scope="module")
def g(golden):
    return golden(FIXTURE)


@pytest.fixture(scope="module")
def params(g):
    p = g.meta["params"]
    return dict(dsize=int(p["dsize"]), scale=float(p["scale"]), vx_ratio=float(p["vx_ratio"]),
                vy_ratio=float(p["vy_ratio"]), rotate=bool(p["flag_do_rot"]))


@pytest.fixture(scope="module")
def crop(g, params):
    return crop_image(g["in_image_rgb_u8"], g["in_landmarks_106"], **params)


def test_anchors(g):
    g.check("mid_pt2", crop_anchors(g["in_landmarks_106"]))


def test_rect(g, params):
    center, size, angle = crop_rect(g["in_landmarks_106"], scale=params["scale"], vx_ratio=params["vx_ratio"],
                                    vy_ratio=params["vy_ratio"])
    g.check("mid_center", center)
    g.check("mid_size", size)
    g.check("mid_angle_rad", np.float32(angle))


def test_matrices(g, params):
    m_o2c, m_c2o = similarity_crop_matrices(g["in_landmarks_106"], **params)
    assert m_o2c.dtype == np.float32 and m_c2o.dtype == np.float32
    g.check("out_M_o2c", m_o2c)
    g.check("out_M_c2o", m_c2o)


def test_crop_image(g, crop):
    g.check("out_M_o2c", crop.M_o2c)
    g.check("out_M_c2o", crop.M_c2o)
    g.check("out_pt_crop", crop.points)
    g.check("out_img_crop_512_u8", crop.image)
    g.check("out_img_crop_256_u8", resize_area(crop.image, 256))


def test_mask_template_equals_png(kit, g):
    png = cv2.imread(str(kit / "inputs" / "mask_template.png"), cv2.IMREAD_COLOR)
    assert png is not None, "inputs/mask_template.png could not be read"
    mask = mask_template(512)
    assert mask.shape == png.shape and mask.dtype == png.dtype
    np.testing.assert_array_equal(mask, png)
    np.testing.assert_array_equal(mask, g["in_mask_template_u8"])


def test_paste_back(g, crop):
    image = g["in_image_rgb_u8"]
    mask_ori = paste_back_mask(g["in_mask_template_u8"], crop.M_c2o, image.shape[:2])
    assert mask_ori.dtype == np.float32
    g.check("out_mask_ori", mask_ori)
    g.check("out_pasted_u8", paste_back(g["in_frame_512_u8"], crop.M_c2o, image, mask_ori))


def test_paste_back_with_generated_mask(g, crop):
    """The mask generated in code gives the same paste-back as the shipped PNG."""
    image = g["in_image_rgb_u8"]
    mask_ori = paste_back_mask(mask_template(512), crop.M_c2o, image.shape[:2])
    np.testing.assert_array_equal(mask_ori, g["out_mask_ori"])
    np.testing.assert_array_equal(paste_back(g["in_frame_512_u8"], crop.M_c2o, image, mask_ori),
                                  g["out_pasted_u8"])


def paste_back_torch(frames, M_c2o, original, mask_ori):
    """Batched paste-back in PyTorch, as a port for frames already on a GPU would do it; (B, H, W, 3) uint8.
    Not part of the library (the pipeline pastes back with OpenCV); kept here to show README §4's bound holds.

    ``frames``: (B, 3, dsize, dsize) crop-space frames, float in [0, 1] (converted to uint8 by
    truncation like the original's output conversion) or uint8. ``M_c2o``: (3, 3) crop -> original
    matrix. ``original``: (H, W, 3) uint8 array/tensor. ``mask_ori``: (H, W[, 3]) float mask from
    :func:`paste_back_mask`. Bilinear warp with ``grid_sample`` (align_corners=True, zero padding)
    instead of OpenCV's fixed-point warp: within 2 of :func:`paste_back` on a few % of the pixels.
    """
    import torch
    import torch.nn.functional as F

    device = frames.device
    if frames.dtype == torch.uint8:
        src = frames.float()
    else:
        src = torch.floor(frames.float().clamp(0, 1) * 255)
    b, _, hc, wc = src.shape
    orig = torch.as_tensor(np.asarray(original) if not torch.is_tensor(original) else original, device=device)
    h, w = orig.shape[:2]
    mask = torch.as_tensor(np.asarray(mask_ori) if not torch.is_tensor(mask_ori) else mask_ori,
                           device=device, dtype=torch.float32)
    if mask.ndim == 2:
        mask = mask[:, :, None]

    # OpenCV inverts the 2x3 matrix in double: each output pixel samples the crop at M_o2c @ (x, y, 1).
    m = np.asarray(M_c2o, dtype=np.float64)[:2]
    m_inv = cv2.invertAffineTransform(m)
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    sx = m_inv[0, 0] * xs + m_inv[0, 1] * ys + m_inv[0, 2]
    sy = m_inv[1, 0] * xs + m_inv[1, 1] * ys + m_inv[1, 2]
    grid = np.stack([2 * sx / (wc - 1) - 1, 2 * sy / (hc - 1) - 1], axis=-1).astype(np.float32)
    grid = torch.from_numpy(grid).to(device)[None].expand(b, h, w, 2)
    warped = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    warped = torch.round(warped).permute(0, 2, 3, 1)  # OpenCV rounds the warped frame to uint8
    out = mask * warped + (1 - mask) * orig.float()
    return out.clamp(0, 255).to(torch.uint8)


def test_paste_back_torch_close(g, crop):
    """Float bilinear warp (grid_sample) instead of OpenCV's fixed-point one: README §4's looser bound."""
    torch = pytest.importorskip("torch")
    image = g["in_image_rgb_u8"]
    frame = g["in_frame_512_u8"]
    mask_ori = paste_back_mask(g["in_mask_template_u8"], crop.M_c2o, image.shape[:2])
    frames = torch.from_numpy(frame).permute(2, 0, 1)[None]
    out_u8 = paste_back_torch(frames, crop.M_c2o, image, mask_ori)
    out_float = paste_back_torch((frames.float() + 0.5) / 255, crop.M_c2o, image, mask_ori)
    expected = g["out_pasted_u8"].astype(np.int32)
    for out in (out_u8, out_float):
        assert out.shape == (1, *image.shape) and out.dtype == torch.uint8
        diff = np.abs(out[0].numpy().astype(np.int32) - expected)
        assert diff.max() <= 2 and (diff > 0).mean() <= 0.10, (diff.max(), (diff > 0).mean())


def test_animal_crop_from_xpose_points(golden, kit):
    """The 9-point (X-Pose) layout: fixture 08's crop of the detector's float64 points."""
    g8 = golden("08_xpose_detect_crop.npz")
    tol = json.loads((kit / "golden" / "08_xpose_tolerances.json").read_text())["fixtures"][g8.name]
    p = g8.meta["crop_params"]
    crop8 = crop_image(g8["in_image_rgb_u8"], g8["out_lmk9_px_f64"], dsize=int(p["dsize"]),
                       scale=float(p["scale"]), vx_ratio=float(p["vx_ratio"]), vy_ratio=float(p["vy_ratio"]),
                       rotate=bool(p["flag_do_rot"]))
    got = {"crop_M_o2c": crop8.M_o2c, "crop_M_c2o": crop8.M_c2o, "crop_pt_crop": crop8.points,
           "crop_img_crop_512_u8": crop8.image, "crop_img_crop_256_u8": resize_area(crop8.image, 256)}
    for key, actual in got.items():
        expected = g8[key]
        assert actual.shape == expected.shape, key
        t = tol[key]
        if expected.dtype == np.uint8:
            diff = np.abs(actual.astype(np.int32) - expected.astype(np.int32))
            assert diff.max() <= t["max_abs_diff"] and (diff > 0).mean() <= t["max_fraction_differing"], key
        else:
            err = np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max()
            assert err <= t["atol"], f"{key}: {err:.3g} > {t['atol']}"
