"""Fast unit tests of the crop geometry and paste-back (no parity kit needed)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from joyvasa.face import (
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
from joyvasa.face.crop import _EYES_9, _EYES_106, _EYES_203, _LIP_9, _LIP_106, _LIP_203


def _level_face(n: int, eye_y: float = 100.0, lip_y: float = 160.0, cx: float = 128.0, seed: int = 0):
    """Landmarks of an upright face: symmetric eyes on one row, lip centre straight below the eye centre."""
    rng = np.random.default_rng(seed)
    pts = np.empty((n, 2), np.float32)
    pts[:, 0] = cx + rng.uniform(-40, 40, n)
    pts[:, 1] = rng.uniform(60, 200, n)
    layouts = {106: (_EYES_106, _LIP_106), 203: (_EYES_203, _LIP_203),
               9: ((_EYES_9[:2], _EYES_9[2:]), _LIP_9)}
    eyes, lip = layouts[n]
    for sign, idx in zip((-1, 1), eyes, strict=True):
        for k, i in enumerate(idx):
            pts[i] = (cx + sign * (20 + 4 * k), eye_y + (k % 2))
    left, right = eyes
    for a, b in zip(left, right, strict=True):  # mirror pairs so that the eye centre is exactly at cx
        pts[b, 1] = pts[a, 1]
    pts[lip[0]] = (cx - 12, lip_y)
    pts[lip[1]] = (cx + 12, lip_y)
    return pts


def _rotate(pts, angle, about=(128.0, 128.0)):
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    about = np.asarray(about)
    return ((pts.astype(np.float64) - about) @ rot.T + about).astype(np.float32)


@pytest.mark.parametrize("n", [106, 203, 9])
def test_level_face_has_zero_angle(n):
    pts = _level_face(n)
    pt2 = crop_anchors(pts)
    assert pt2.shape == (2, 2) and pt2.dtype == np.float32
    assert pt2[0, 0] == pytest.approx(128.0, abs=1e-4) and pt2[1, 0] == pytest.approx(128.0, abs=1e-4)
    center, size, angle = crop_rect(pts)
    assert angle == pytest.approx(0.0, abs=1e-6)
    assert size.shape == (2,) and size[0] == size[1] > 0
    m_o2c, _ = similarity_crop_matrices(pts)
    assert m_o2c[0, 1] == pytest.approx(0.0, abs=1e-6) and m_o2c[1, 0] == pytest.approx(0.0, abs=1e-6)
    assert m_o2c[0, 0] == pytest.approx(512 / float(size[0]), rel=1e-6)
    # the crop centre lands in the middle of the crop
    assert transform_points(center[None], m_o2c)[0] == pytest.approx([256.0, 256.0], abs=1e-3)


def test_vy_ratio_moves_the_box_up():
    pts = _level_face(106)
    c0, s0, _ = crop_rect(pts, vy_ratio=0.0)
    c1, s1, _ = crop_rect(pts, vy_ratio=-0.125)
    np.testing.assert_allclose(s0, s1)
    assert c1[0] == pytest.approx(c0[0], abs=1e-4)
    assert c1[1] == pytest.approx(c0[1] - 0.125 * s0[1], abs=1e-3)
    c2, _, _ = crop_rect(pts, vx_ratio=0.1, vy_ratio=0.0)
    assert c2[0] == pytest.approx(c0[0] + 0.1 * s0[0], abs=1e-3)


def test_matrices_are_inverse():
    pts = _rotate(_level_face(106), 0.3)
    m_o2c, m_c2o = similarity_crop_matrices(pts, dsize=512, scale=2.3)
    assert m_o2c.shape == (3, 3) and m_o2c.dtype == np.float32 and m_c2o.dtype == np.float32
    np.testing.assert_array_equal(m_o2c[2], [0, 0, 1])
    np.testing.assert_allclose(m_o2c.astype(np.float64) @ m_c2o, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(m_c2o.astype(np.float64) @ m_o2c, np.eye(3), atol=1e-4)


@pytest.mark.parametrize("phi", [0.2, -0.5, 1.0, 2.5])
def test_rotating_the_face_rotates_the_crop(phi):
    pts = _level_face(106)
    rotated = _rotate(pts, phi)
    _, size0, a0 = crop_rect(pts)
    _, size1, a1 = crop_rect(rotated)
    delta = (a1 - a0 + math.pi) % (2 * math.pi) - math.pi
    assert delta == pytest.approx(phi, abs=1e-5)
    np.testing.assert_allclose(size1, size0, rtol=1e-5)
    # the crop follows the face: landmarks land on the same crop pixels
    c0 = crop_image(np.zeros((256, 256, 3), np.uint8), pts)
    c1 = crop_image(np.zeros((256, 256, 3), np.uint8), rotated)
    np.testing.assert_allclose(c1.points, c0.points, atol=2e-3)


def test_no_rotation_option():
    pts = _rotate(_level_face(106), 0.4)
    m, _ = similarity_crop_matrices(pts, rotate=False)
    assert m[0, 1] == 0 and m[1, 0] == 0 and m[0, 0] == m[1, 1] > 0


def test_degenerate_anchors_fall_back_to_upright():
    pts = _level_face(106)
    pts[_LIP_106] = crop_anchors(pts)[0]  # lip centre on the eye centre
    assert crop_rect(pts)[2] == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("n", [5, 68, 101, 107, 0])
def test_bad_landmark_count_raises(n):
    with pytest.raises(ValueError, match=r"106 .*203 .*9"):
        crop_anchors(np.zeros((n, 2), np.float32))
    with pytest.raises(ValueError, match="unsupported landmark layout"):
        crop_image(np.zeros((64, 64, 3), np.uint8), np.zeros((n, 2), np.float32))


def test_bad_landmark_shape_raises():
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        crop_anchors(np.zeros((106, 3), np.float32))


def test_crop_image_outputs():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    pts = _rotate(_level_face(106, cx=200.0), 0.1, about=(200.0, 130.0))
    crop = crop_image(image, pts, dsize=512)
    assert isinstance(crop, Crop)
    assert crop.image.shape == (512, 512, 3) and crop.image.dtype == np.uint8
    assert crop.points.shape == (106, 2) and crop.points.dtype == np.float32
    np.testing.assert_allclose(crop.points, transform_points(pts, crop.M_o2c), atol=1e-4)
    small = resize_area(crop.image, 256)
    assert small.shape == (256, 256, 3) and small.dtype == np.uint8
    # the small crop of a big image: the corners of the 512 crop fall outside the image -> black
    tiny = crop_image(image[:40, :40], pts, dsize=128)
    assert tiny.image.shape == (128, 128, 3)
    assert (tiny.image[-1, -1] == 0).all()


def test_float64_points_are_accepted():
    pts = _level_face(9).astype(np.float64)
    crop = crop_image(np.zeros((256, 256, 3), np.uint8), pts, scale=3.0)
    assert crop.M_o2c.dtype == np.float32 and crop.points.dtype == np.float32


def test_mask_template_shape_and_profile():
    mask = mask_template(512)
    assert mask.shape == (512, 512, 3) and mask.dtype == np.uint8
    assert (mask[..., 0] == mask[..., 1]).all() and (mask[..., 0] == mask[..., 2]).all()
    row = mask[256, :, 0].astype(int)
    np.testing.assert_array_equal(row[:17], [0] + [16 * k - 1 for k in range(1, 17)])
    np.testing.assert_array_equal(row[-16:], row[1:17][::-1])
    assert (mask[16:497, 16:497] == 255).all()
    assert mask[0, 0, 0] == 0 and mask[511, 511, 0] == 0
    np.testing.assert_array_equal(mask[..., 0], mask[..., 0].T)
    assert mask_template(256, channels=0).shape == (256, 256)
    with pytest.raises(ValueError):
        mask_template(32)


def test_paste_back_zero_mask_returns_original():
    rng = np.random.default_rng(2)
    original = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    frame = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    pts = _level_face(106, cx=150.0)
    crop = crop_image(original, pts)
    mask_ori = paste_back_mask(np.zeros((512, 512, 3), np.uint8), crop.M_c2o, original.shape[:2])
    assert mask_ori.shape == (200, 300, 3) and mask_ori.dtype == np.float32
    np.testing.assert_array_equal(paste_back(frame, crop.M_c2o, original, mask_ori), original)


def test_paste_back_of_the_crop_itself_is_close_to_the_original():
    rng = np.random.default_rng(3)
    original = cv2_blur(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    pts = _level_face(106, eye_y=110.0, lip_y=140.0, cx=128.0)
    crop = crop_image(original, pts, dsize=512, scale=1.5)
    mask_ori = paste_back_mask(mask_template(512), crop.M_c2o, original.shape[:2])
    assert mask_ori.max() == pytest.approx(1.0) and mask_ori.min() == 0.0
    pasted = paste_back(crop.image, crop.M_c2o, original, mask_ori)
    assert pasted.shape == original.shape and pasted.dtype == np.uint8
    inner = mask_ori[..., 0] == 1.0
    assert inner.any()
    diff = np.abs(pasted.astype(int) - original.astype(int))[inner]
    assert diff.mean() < 2.0
    outside = mask_ori[..., 0] == 0.0
    np.testing.assert_array_equal(pasted[outside], original[outside])


def test_paste_back_2d_mask_broadcasts():
    original = np.full((100, 120, 3), 10, np.uint8)
    frame = np.full((512, 512, 3), 200, np.uint8)
    pts = _level_face(106, cx=60.0, eye_y=40.0, lip_y=60.0)
    crop = crop_image(original, pts)
    mask2 = paste_back_mask(mask_template(512, channels=0), crop.M_c2o, original.shape[:2])
    mask3 = paste_back_mask(mask_template(512), crop.M_c2o, original.shape[:2])
    assert mask2.shape == (100, 120)
    np.testing.assert_array_equal(paste_back(frame, crop.M_c2o, original, mask2),
                                  paste_back(frame, crop.M_c2o, original, mask3))


def cv2_blur(image):
    import cv2

    return cv2.GaussianBlur(image, (0, 0), 3)
