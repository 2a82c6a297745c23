"""Face crop geometry and paste-back (LivePortrait's similarity crop), as pure NumPy / OpenCV functions.

Coordinates are pixels, (x, y) with x to the right and y downwards, pixel centres at integer positions
(OpenCV's convention). Two 3x3 homogeneous matrices describe a crop:

* ``M_o2c``: original image -> crop, i.e. ``p_crop = M_o2c @ (x, y, 1)``; it is the matrix given to
  ``cv2.warpAffine`` to cut the crop out of the original image.
* ``M_c2o``: crop -> original image, the inverse of ``M_o2c``; it is the matrix given to
  ``cv2.warpAffine`` to paste a (generated) crop back into the original image.

The maths follows the original ``crop_image`` number for number: landmarks stay float32 (float64 only
when float64 landmarks are given, as the animal detector produces), the crop axes are rounded to
float32, the similarity matrix is formed in float64 and stored as float32, and its inverse is taken in
float32. With OpenCV's bilinear warp and INTER_AREA resize this reproduces the original bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "Crop",
    "check_image",
    "crop_anchors",
    "crop_rect",
    "similarity_crop_matrices",
    "transform_points",
    "crop_image",
    "resize_area",
    "mask_template",
    "paste_back_mask",
    "paste_back",
]

# Landmark indices of the two crop anchors (eye centre, lip centre), per landmark layout.
_EYES_106 = ([33, 35, 40, 39], [87, 89, 94, 93])  # InsightFace 2d106det: left eye, right eye
_LIP_106 = [52, 61]
_EYES_203 = ([0, 6, 12, 18], [24, 30, 36, 42])  # LivePortrait landmark.onnx
_LIP_203 = [48, 66]
# X-Pose animal face, 9 points: right-eye right, right-eye left, left-eye right, left-eye left, nose tip,
# lip right, lip left, upper lip, lower lip.
_EYES_9 = [0, 1, 2, 3]
_LIP_9 = [5, 6]

SUPPORTED_LANDMARK_COUNTS = (106, 203, 9)


def check_image(image_rgb: np.ndarray) -> np.ndarray:
    """The image as an (H, W, 3) uint8 array, or a ValueError saying what it is instead."""
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"the image is empty ({image.shape[1]}x{image.shape[0]} pixels)")
    return image


def _as_points(points) -> np.ndarray:
    """(N, 2) float array; float64 input stays float64 (as in the original), anything else becomes float32."""
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"landmarks must be an (N, 2) array of (x, y) pixel coordinates, got {pts.shape}")
    if pts.dtype != np.float64:
        pts = pts.astype(np.float32)
    return pts


def crop_anchors(points) -> np.ndarray:
    """The two crop anchors of a landmark set: ``[[eye_x, eye_y], [lip_x, lip_y]]`` (2, 2), in pixels.

    Layouts (told apart by the number of points):
    * 106 (InsightFace 2d106det): eye centre = mean of the left eye (mean of points 33, 35, 40, 39) and
      the right eye (87, 89, 94, 93); lip centre = mean of points 52 and 61.
    * 203 (LivePortrait landmark.onnx): eyes = means of {0, 6, 12, 18} and {24, 30, 36, 42}; lip centre =
      mean of points 48 and 66.
    * 9 (X-Pose animal face): eye centre = mean of the 4 eye points (0-3); lip centre = mean of the two
      lip corners (5, 6).

    Float32 (float64 for float64 input). Raises ValueError for any other number of points.
    """
    pts = _as_points(points)
    n = pts.shape[0]
    if n == 106 or n == 203:
        (left_idx, right_idx), lip_idx = (_EYES_106, _LIP_106) if n == 106 else (_EYES_203, _LIP_203)
        left = np.mean(pts[left_idx], axis=0)
        right = np.mean(pts[right_idx], axis=0)
        eye = (left + right) / 2
        lip = np.mean(pts[lip_idx], axis=0)
    elif n == 9:
        eye = np.mean(pts[_EYES_9], axis=0)
        lip = np.mean(pts[_LIP_9], axis=0)
    else:
        raise ValueError(
            f"unsupported landmark layout: {n} points; the crop needs 106 (InsightFace 2d106det), "
            f"203 (LivePortrait landmark.onnx) or 9 (X-Pose animal face) points")
    return np.stack([eye, lip])


def crop_rect(points, scale: float = 2.3, vx_ratio: float = 0.0, vy_ratio: float = -0.125):
    """Rotated square crop rectangle around a landmark set: ``(centre (2,), size (2,), angle)``.

    * ``centre``: crop centre in original-image pixels, after the vx/vy shift.
    * ``size``: side lengths of the (square) crop in original-image pixels, already multiplied by ``scale``.
    * ``angle``: roll of the face in radians (Python float); 0 for an upright face, positive when the
      face's horizontal axis ``ux`` points below the image x axis (y downwards).

    ``uy`` = unit vector eye centre -> lip centre ((0, 1) when that distance is <= 1e-3), ``ux`` =
    (uy_y, -uy_x). The landmarks minus their mean are expressed in the (ux, uy) frame, their bounding box
    gives the centre and size, the size is made square (max side) and scaled, and the centre is moved by
    ``vx_ratio * size`` along ux and ``vy_ratio * size`` along uy (negative vy_ratio = towards the
    forehead).

    ``vx_ratio`` is exposed for completeness only: the original public crop entry point never forwards
    it, so JoyVASA / LivePortrait always crop with vx_ratio = 0 (the default here).
    """
    pts = _as_points(points)
    dt = pts.dtype
    pt2 = crop_anchors(pts)
    uy = pt2[1] - pt2[0]
    length = np.linalg.norm(uy)
    if length <= 1e-3:
        uy = np.array([0, 1], dtype=dt)
    else:
        uy = uy / length
    # The original builds ux as a float32 array whatever the landmarks' dtype.
    ux = np.array((uy[1], -uy[0]), dtype=np.float32)
    angle = math.acos(min(1.0, max(-1.0, float(ux[0]))))
    if ux[1] < 0:
        angle = -angle

    axes = np.stack([ux.astype(dt), uy.astype(dt)])  # rows: ux, uy
    center0 = np.mean(pts, axis=0)
    rotated = (pts - center0) @ axes.T
    lt = np.min(rotated, axis=0)
    rb = np.max(rotated, axis=0)
    center1 = (lt + rb) / 2
    size = rb - lt
    side = max(size[0], size[1])
    size[0] = side
    size[1] = side
    size *= scale
    # float32 ux times a scalar stays float32 in the original (NumPy 1 scalar casting), even for float64
    # landmarks.
    center = center0 + ux * np.float32(center1[0]) + axes[1] * center1[1]
    center = center + axes[0] * (vx_ratio * size) + axes[1] * (vy_ratio * size)
    return center, size, angle


def similarity_crop_matrices(points, dsize: int = 512, scale: float = 2.3, vx_ratio: float = 0.0,
                             vy_ratio: float = -0.125, rotate: bool = True):
    """``(M_o2c, M_c2o)``, both (3, 3) float32, for a ``dsize`` x ``dsize`` crop around ``points``.

    ``M_o2c`` maps original-image pixels to crop pixels: the rectangle of :func:`crop_rect` is rotated
    by ``-angle`` (when ``rotate``), scaled by ``dsize / size`` and centred at (dsize/2, dsize/2).
    ``M_c2o`` maps crop pixels back to the original image (float32 inverse of ``M_o2c``).
    """
    center, size, angle = crop_rect(points, scale=scale, vx_ratio=vx_ratio, vy_ratio=vy_ratio)
    return square_crop_matrices(float(center[0]), float(center[1]), float(size[0]), dsize,
                                angle if rotate else None)


def square_crop_matrices(cx: float, cy: float, side: float, dsize: int, angle: float | None = None):
    """``(M_o2c, M_c2o)`` (3, 3) float32: the square of ``side`` pixels centred at (cx, cy), rotated by
    ``-angle`` radians when given, mapped onto a ``dsize`` x ``dsize`` crop. Entries are computed in float64
    and stored as float32; ``M_c2o`` is the float32 inverse, as the original."""
    s = float(dsize) / side
    half = float(dsize) / 2
    if angle is not None:
        cos_t, sin_t = math.cos(angle), math.sin(angle)
        m = [[s * cos_t, s * sin_t, half - s * (cos_t * cx + sin_t * cy)],
             [-s * sin_t, s * cos_t, half - s * (-sin_t * cx + cos_t * cy)]]
    else:
        m = [[s, 0.0, half - s * cx], [0.0, s, half - s * cy]]
    m_o2c = np.array(m + [[0.0, 0.0, 1.0]], dtype=np.float32)
    return m_o2c, np.linalg.inv(m_o2c)


def transform_points(points, M) -> np.ndarray:
    """Apply an affine matrix ((2, 3) or (3, 3)) to (N, 2) pixels: ``pts @ M[:2, :2].T + M[:2, 2]``."""
    pts = _as_points(points)
    M = np.asarray(M)
    return pts @ M[:2, :2].T + M[:2, 2]


@dataclass
class Crop:
    """A face crop.

    * ``image``: (dsize, dsize, C) uint8 crop (bilinear, black outside the original image).
    * ``M_o2c``: (3, 3) float32, original-image pixels -> crop pixels.
    * ``M_c2o``: (3, 3) float32, crop pixels -> original-image pixels.
    * ``points``: the landmarks in crop pixels (float32).
    """

    image: np.ndarray
    M_o2c: np.ndarray
    M_c2o: np.ndarray
    points: np.ndarray


def crop_image(image_rgb_u8: np.ndarray, points, dsize: int = 512, scale: float = 2.3, vx_ratio: float = 0.0,
               vy_ratio: float = -0.125, rotate: bool = True) -> Crop:
    """Cut the ``dsize`` x ``dsize`` similarity crop of :func:`similarity_crop_matrices` out of an image.

    ``image_rgb_u8``: (H, W, C) uint8 (the channel order is kept). ``points``: (N, 2) landmarks in
    original-image pixels (106, 203 or 9 points). Defaults are JoyVASA's source-image crop (512, scale
    2.3, vy -0.125, vx 0, rotation on); the animal pipeline uses scale 3.0.
    """
    pts = _as_points(points)
    m_o2c, m_c2o = similarity_crop_matrices(pts, dsize=dsize, scale=scale, vx_ratio=vx_ratio,
                                            vy_ratio=vy_ratio, rotate=rotate)
    crop = cv2.warpAffine(np.ascontiguousarray(image_rgb_u8), m_o2c[:2], (dsize, dsize),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    pt_crop = transform_points(pts, m_o2c).astype(np.float32)
    return Crop(image=crop, M_o2c=m_o2c, M_c2o=m_c2o, points=pt_crop)


def resize_area(image: np.ndarray, size: int = 256) -> np.ndarray:
    """Resize an image to ``size`` x ``size`` with OpenCV INTER_AREA (the 512 crop -> 256 network input)."""
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def mask_template(size: int = 512, feather: int = 16, channels: int = 3) -> np.ndarray:
    """The feathered paste-back mask, (size, size, channels) uint8 (2-D when ``channels`` is 0).

    Equal, for size 512, to LivePortrait's ``mask_template.png`` read with ``cv2.IMREAD_COLOR``. Rule:
    let d be the Euclidean distance (pixels) of pixel (x, y) to the square [feather, size - feather]^2
    (0 inside it); value = floor(255 * clip(1 - d / feather, 0, 1)). This gives a linear 16-px ramp on
    every edge (0 on row/column 0, 15, 31, ..., 239, 255 at index 16, symmetrically 15 on the last
    row/column since the square ends at size - 16) and rounded (circular) corners.
    """
    if size <= 2 * feather or feather <= 0:
        raise ValueError(f"mask_template needs size > 2 * feather > 0, got size={size}, feather={feather}")
    i = np.arange(size, dtype=np.float64)
    d1 = np.maximum(np.maximum(feather - i, i - (size - feather)), 0.0)
    dist = np.sqrt(d1[:, None] ** 2 + d1[None, :] ** 2)
    mask = np.floor(255.0 * np.clip(1.0 - dist / feather, 0.0, 1.0)).astype(np.uint8)
    if channels:
        mask = np.ascontiguousarray(np.repeat(mask[:, :, None], channels, axis=2))
    return mask


def paste_back_mask(mask_u8: np.ndarray, M_c2o: np.ndarray, out_hw) -> np.ndarray:
    """The crop mask warped into the original image: float32 in [0, 1], shape (H, W[, C]) of ``out_hw``.

    ``mask_u8``: crop-sized uint8 mask (e.g. :func:`mask_template`); ``M_c2o``: crop -> original
    matrix; ``out_hw``: (H, W) of the original image. Compute once per source image.
    """
    h, w = int(out_hw[0]), int(out_hw[1])
    warped = cv2.warpAffine(np.ascontiguousarray(mask_u8), np.asarray(M_c2o)[:2], (w, h),
                            flags=cv2.INTER_LINEAR)
    return warped.astype(np.float32) / 255


def paste_back(frame_u8: np.ndarray, M_c2o: np.ndarray, original_u8: np.ndarray,
               mask_ori: np.ndarray) -> np.ndarray:
    """Paste a generated crop-space frame back into the original image; (H, W, C) uint8.

    ``frame_u8``: (dsize, dsize, C) uint8 generated frame in crop pixels; ``M_c2o``: crop -> original
    matrix; ``original_u8``: (H, W, C) uint8 original image; ``mask_ori``: float32 mask from
    :func:`paste_back_mask`. Result = uint8 truncation of
    clip(mask * warp(frame) + (1 - mask) * original, 0, 255), in float32, warp = OpenCV bilinear.
    """
    h, w = original_u8.shape[:2]
    warped = cv2.warpAffine(np.ascontiguousarray(frame_u8), np.asarray(M_c2o)[:2], (w, h),
                            flags=cv2.INTER_LINEAR)
    mask = mask_ori
    if mask.ndim == 2 and warped.ndim == 3:
        mask = mask[:, :, None]
    if warped.ndim == 2 and original_u8.ndim == 3:  # a single-channel frame (cv2 drops the axis)
        warped = warped[:, :, None]
    out = np.clip(mask * warped + (1 - mask) * original_u8, 0, 255)
    return out.astype(np.uint8)

