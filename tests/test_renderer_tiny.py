"""Renderer logic on tiny configurations: shapes, dtypes, batching, and the keypoint math."""
from __future__ import annotations

import math

import pytest
import torch

from joyvasa.renderer import (
    appearance_features,
    prepare_images,
    source_keypoints,
    stitch,
    to_uint8,
    warp_decode,
)
from joyvasa.renderer import keypoints as kpm
from joyvasa.renderer.dense_motion import coordinate_grid
from joyvasa.renderer.spade_generator import fold_spectral_norm
from joyvasa.testing.tiny import tiny_renderer


@pytest.fixture(scope="module")
def renderer():
    return tiny_renderer()


def _images(batch: int, size: int = 64) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_shapes(renderer):
    images = _images(2)
    f_s = appearance_features(renderer, images)
    assert f_s.shape == (2, 4, 8, 16, 16)
    sk = source_keypoints(renderer, images)
    assert sk.x_s.shape == (2, 21, 3) and sk.R.shape == (2, 3, 3) and sk.pitch.shape == (2, 1)
    frames, warped = warp_decode(renderer, f_s, sk.x_s, sk.x_s + 0.01)
    assert frames.shape == (2, 3, 128, 128) and frames.dtype == torch.float32
    assert warped.deformation.shape == (2, 8, 16, 16, 3) and warped.occlusion_map.shape == (2, 1, 16, 16)
    assert 0 <= frames.min() and frames.max() <= 1


def test_batch_of_frames_equals_frames_one_by_one(renderer):
    """One source driving B frames at once gives the same frames as B single renders."""
    images = _images(1)
    f_s = appearance_features(renderer, images)
    x_s = source_keypoints(renderer, images).x_s
    x_d = x_s + 0.05 * torch.randn(3, 21, 3, generator=torch.Generator().manual_seed(2))
    batched, _ = warp_decode(renderer, f_s, x_s, x_d)
    single = torch.cat([warp_decode(renderer, f_s, x_s, x_d[i : i + 1])[0] for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batched[0], batched[1])


def test_bfloat16_renderer_returns_float32_frames():
    renderer = tiny_renderer(torch.bfloat16)
    images = _images(1)
    f_s = appearance_features(renderer, images)
    assert f_s.dtype == torch.bfloat16
    x_s = source_keypoints(renderer, images).x_s
    assert x_s.dtype == torch.float32  # keypoint math stays float32
    frames, _ = warp_decode(renderer, f_s, x_s, x_s)
    assert frames.dtype == torch.float32 and frames.shape == (1, 3, 128, 128)


def test_stitching_changes_only_through_the_mlp(renderer):
    x_s = torch.randn(2, 21, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for p in renderer.stitching.stitching.parameters():
            p.zero_()
    torch.testing.assert_close(stitch(renderer, x_s, x_s + 1), x_s + 1)


def test_prepare_images_accepts_uint8_and_float_any_size():
    u8 = torch.randint(0, 256, (300, 200, 3), dtype=torch.uint8)
    a = prepare_images(u8)
    b = prepare_images(u8.float()[None] / 255)
    assert a.shape == (1, 3, 256, 256) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)


def test_to_uint8_truncates():
    frames = torch.tensor([0.0, 0.999, 1.5, -1.0, 0.5]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert to_uint8(frames)[0, 0, :, 0].tolist() == [0, 254, 255, 0, 127]


def test_fold_spectral_norm_matches_torch():
    conv = torch.nn.utils.spectral_norm(torch.nn.Conv2d(4, 6, 3))
    conv(torch.randn(1, 4, 8, 8))  # one power iteration in train mode sets u, v
    conv.eval()
    folded = fold_spectral_norm(conv.state_dict())
    torch.testing.assert_close(folded["weight"], conv.weight, rtol=0, atol=0)
    assert set(folded) == {"weight", "bias"}


# --- keypoint math -------------------------------------------------------------------------------------------


def test_bins_to_degrees():
    logits = torch.full((3, 66), -1e4)
    for row, b in enumerate((0, 32, 65)):
        logits[row, b] = 0
    torch.testing.assert_close(kpm.bins_to_degrees(logits), torch.tensor([[-97.5], [-1.5], [97.5]]))
    assert kpm.bins_to_degrees(torch.zeros(1, 66)).item() == pytest.approx(0.0, abs=1e-4)


def test_rotation_matrix_convention():
    zero = torch.zeros(1, 1)
    torch.testing.assert_close(kpm.rotation_matrix(zero, zero, zero), torch.eye(3)[None])
    # yaw of 90 degrees: the returned (row-vector) matrix maps x to -z, i.e. R_col = Ry(90) maps x to -z
    R = kpm.rotation_matrix(zero, torch.full((1, 1), 90.0), zero)
    x = torch.tensor([[1.0, 0.0, 0.0]])
    torch.testing.assert_close(x @ R[0], torch.tensor([[0.0, 0.0, -1.0]]), atol=1e-6, rtol=0)
    angles = torch.randn(5, 3) * 40
    R = kpm.rotation_matrix(angles[:, :1], angles[:, 1:2], angles[:, 2:])
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(5))


def test_rotation_order_is_roll_yaw_pitch():
    p, y, r = (torch.full((1, 1), v) for v in (10.0, 20.0, 30.0))
    one = lambda **k: kpm.rotation_matrix(k.get("p", 0 * p), k.get("y", 0 * p), k.get("r", 0 * p))  # noqa: E731
    composite = (one(r=r).transpose(1, 2) @ one(y=y).transpose(1, 2) @ one(p=p).transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(kpm.rotation_matrix(p, y, r), composite)


def test_transform_keypoints_drops_tz():
    kp = torch.randn(2, 21, 3)
    eye = torch.eye(3).expand(2, 3, 3)
    x = kpm.transform_keypoints(kp, eye, torch.zeros(2, 21, 3), torch.full((2, 1), 2.0),
                                torch.tensor([[0.1, 0.2, 5.0]] * 2))
    torch.testing.assert_close(x[..., 0], 2 * kp[..., 0] + 0.1)
    torch.testing.assert_close(x[..., 1], 2 * kp[..., 1] + 0.2)
    torch.testing.assert_close(x[..., 2], 2 * kp[..., 2])


def test_apply_stitching_layout():
    x_d = torch.zeros(1, 21, 3)
    delta = torch.zeros(1, 65)
    delta[0, :3] = torch.tensor([1.0, 2.0, 3.0])  # keypoint 0
    delta[0, 63:] = torch.tensor([10.0, 20.0])  # shared (dx, dy)
    out = kpm.apply_stitching(x_d, delta)
    assert out[0, 0].tolist() == [11.0, 22.0, 3.0]
    assert out[0, 5].tolist() == [10.0, 20.0, 0.0]
    assert kpm.stitching_input(x_d, x_d + 1).shape == (1, 126)


def test_eye_and_lip_ratios():
    lmk = torch.zeros(1, 203, 2)
    lmk[0, 0], lmk[0, 12] = torch.tensor([0.0, 0.0]), torch.tensor([4.0, 0.0])  # left eye width 4
    lmk[0, 6], lmk[0, 18] = torch.tensor([2.0, -1.0]), torch.tensor([2.0, 1.0])  # left lid gap 2
    lmk[0, 24], lmk[0, 36] = torch.tensor([10.0, 0.0]), torch.tensor([12.0, 0.0])  # right eye width 2
    lmk[0, 48], lmk[0, 66] = torch.tensor([0.0, 5.0]), torch.tensor([8.0, 5.0])  # mouth width 8
    lmk[0, 90], lmk[0, 102] = torch.tensor([4.0, 4.0]), torch.tensor([4.0, 6.0])  # lip gap 2
    eyes = kpm.eye_close_ratio(lmk)
    assert eyes.shape == (1, 2)
    assert eyes[0, 0].item() == pytest.approx(0.5, rel=1e-5) and eyes[0, 1].item() == pytest.approx(0.0)
    assert kpm.lip_close_ratio(lmk)[0, 0].item() == pytest.approx(0.25, rel=1e-5)


def test_coordinate_grid_spans_minus_one_to_one():
    grid = coordinate_grid(4, 5, 6, like=torch.zeros(1, dtype=torch.float64))
    assert grid.shape == (4, 5, 6, 3) and grid.dtype == torch.float64
    assert grid[0, 0, 0].tolist() == [-1.0, -1.0, -1.0] and grid[-1, -1, -1].tolist() == [1.0, 1.0, 1.0]
    assert math.isclose(grid[0, 0, 1, 0].item(), -1 + 2 / 5)
