"""Source-image preparation: size limit, then a 512 crop (from landmarks, from a box, or none) and its 256 copy.

All functions are pure: (H, W, 3) uint8 RGB in, a :class:`SourceCrop` out. The crop geometry is LivePortrait's
(spec: liveportrait.md §3.1 and §3.5, joyvasa.md §6.1); the landmark crop itself lives in ``crop.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .crop import check_image, crop_image, resize_area, square_crop_matrices, transform_points
from .detect import Face

__all__ = [
    "CROP_MODES",
    "CROP_SCALE",
    "CROP_VX_RATIO",
    "CROP_VY_RATIO",
    "MIN_SOURCE_SIDE",
    "SOURCE_MAX_DIM",
    "SOURCE_DIVISION",
    "NETWORK_SIZE",
    "SourceCrop",
    "check_image",
    "landmark_crop",
    "resize_to_limit",
    "crop_source",
    "box_crop",
    "no_crop",
]

SOURCE_MAX_DIM = 1280  # source_max_dim
SOURCE_DIVISION = 2  # source_division
NETWORK_SIZE = 256  # input size of the appearance and motion networks
MIN_SOURCE_SIDE = 16  # smaller pictures hold no face to animate (and trip video encoders)

CROP_MODES = ("auto", "none", "box")  # detector, the image as it is, a given box
# LivePortrait's source crop as JoyVASA uses it: side = 2.3 x the landmarks' extent, moved up by 12.5 % of the
# side; the original never shifts sideways.
CROP_SCALE = 2.3
CROP_VX_RATIO = 0.0
CROP_VY_RATIO = -0.125


@dataclass(frozen=True)
class SourceCrop:
    """A prepared source image.

    * ``image_512``: (dsize, dsize, 3) uint8 crop (dsize = 512 unless asked otherwise; the generator's output
      is 512, so ``M_c2o`` also maps rendered frames back).
    * ``image_256``: (256, 256, 3) uint8 network input.
    * ``M_o2c`` / ``M_c2o``: (3, 3) float32, source-image pixels -> crop pixels and back.
    * ``landmarks_203``: (203, 2) float32 in crop pixels (``image_512``'s frame), or None when unknown
      (box crop, or no crop without landmarks). Only their ratios are used (normalize-lip), so the frame
      does not matter to the renderer.
    * ``cropped``: False for "no crop": the whole image was squeezed to a square, so pasting back makes no
      sense (the original only pastes back crops).
    """

    image_512: np.ndarray
    image_256: np.ndarray
    M_o2c: np.ndarray
    M_c2o: np.ndarray
    landmarks_203: np.ndarray | None
    cropped: bool = True


def resize_to_limit(image: np.ndarray, max_dim: int = SOURCE_MAX_DIM, division: int = SOURCE_DIVISION) -> np.ndarray:
    """Limit the long side to ``max_dim`` and make both sides multiples of ``division``, as the original.

    When max(H, W) > max_dim (and max_dim > 0) the image is resized (OpenCV bilinear) so that the long side
    is exactly max_dim and the short side is ``int(short * (max_dim / long))`` (truncated). Then the bottom
    rows and right columns that exceed a multiple of ``division`` are dropped (no resize). Images with a side
    under ``MIN_SOURCE_SIDE`` pixels are refused.
    """
    h, w = check_image(image).shape[:2]
    if min(h, w) < MIN_SOURCE_SIDE:
        raise ValueError(f"the image is {w}x{h} pixels; a portrait needs at least {MIN_SOURCE_SIDE}x{MIN_SOURCE_SIDE}")
    if max_dim > 0 and max(h, w) > max_dim:
        if h > w:
            new_h, new_w = max_dim, int(w * (max_dim / h))
        else:
            new_h, new_w = int(h * (max_dim / w)), max_dim
        image = cv2.resize(image, (new_w, new_h))
    division = max(division, 1)
    h, w = image.shape[:2]
    new_h, new_w = h - h % division, w - w % division
    if new_h == 0 or new_w == 0:
        return image
    return image[:new_h, :new_w] if (new_h, new_w) != (h, w) else image


def crop_source(image: np.ndarray, face: Face, scale: float = CROP_SCALE, vx_ratio: float = CROP_VX_RATIO,
                vy_ratio: float = CROP_VY_RATIO, dsize: int = 512, rotate: bool = True) -> SourceCrop:
    """The human source crop: LivePortrait's similarity crop from the face's 106 landmarks.

    ``image``: the (H, W, 3) uint8 RGB image the face was detected on. Defaults are JoyVASA's: scale 2.3
    (crop side = 2.3 x the landmarks' extent), vy_ratio -0.125 (move the crop up by 12.5 % of its side),
    rotation on (the crop follows the head's roll). The original never forwards ``vx_ratio`` (it is always
    0); it is honoured here when given.
    """
    return landmark_crop(image, face.landmarks_106, scale, vx_ratio, vy_ratio, dsize, rotate, face.landmarks_203)


def landmark_crop(image: np.ndarray, points: np.ndarray, scale: float = CROP_SCALE,
                  vx_ratio: float = CROP_VX_RATIO, vy_ratio: float = CROP_VY_RATIO, dsize: int = 512,
                  rotate: bool = True, landmarks_203: np.ndarray | None = None) -> SourceCrop:
    """The similarity crop from any supported landmark layout: 106 (human) or the 9 X-Pose animal points.
    ``landmarks_203`` (image pixels), when known, are carried into the crop's frame for normalize-lip."""
    image = check_image(image)
    crop = crop_image(image, points, dsize=dsize, scale=scale, vx_ratio=vx_ratio, vy_ratio=vy_ratio, rotate=rotate)
    lmk = None if landmarks_203 is None else transform_points(landmarks_203, crop.M_o2c).astype(np.float32)
    return SourceCrop(crop.image, resize_area(crop.image, NETWORK_SIZE), crop.M_o2c, crop.M_c2o, lmk)


def box_crop(image: np.ndarray, box_xyxy, scale: float = CROP_SCALE, vx_ratio: float = CROP_VX_RATIO,
             vy_ratio: float = CROP_VY_RATIO, dsize: int = 512) -> SourceCrop:
    """A square crop around a given face box (animal mode without X-Pose, or a manual box).

    ``box_xyxy`` = (x1, y1, x2, y2) in pixels is read as the face's extent, i.e. what the landmarks span in
    the landmark crop. The crop is then built the same way, without rotation: side = ``scale`` x
    max(x2 - x1, y2 - y1), centre = box centre moved by ``vx_ratio`` x side to the right and ``vy_ratio`` x
    side downwards (negative = up). So the defaults frame a face box like a detected face; pass
    ``scale=1, vy_ratio=0`` to crop exactly the square around the box. Outside the image is black.
    """
    image = check_image(image)
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    extent = max(x2 - x1, y2 - y1)
    if not extent > 0 or scale <= 0:
        raise ValueError(f"box must be (x1, y1, x2, y2) with x2 > x1 or y2 > y1, and scale > 0; got box "
                         f"{tuple(box_xyxy)}, scale {scale}")
    side = scale * extent
    cx = (x1 + x2) / 2 + vx_ratio * side
    cy = (y1 + y2) / 2 + vy_ratio * side
    m_o2c, m_c2o = square_crop_matrices(cx, cy, side, dsize)
    crop = cv2.warpAffine(np.ascontiguousarray(image), m_o2c[:2], (dsize, dsize), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return SourceCrop(crop, resize_area(crop, NETWORK_SIZE), m_o2c, m_c2o, None)


def no_crop(image: np.ndarray, landmarks_203: np.ndarray | None = None, dsize: int = 512) -> SourceCrop:
    """No crop: the whole image squeezed to a square, for images that already are a face crop.

    As the original, ``image_256`` is the whole image resized (OpenCV bilinear, aspect ratio not kept) to
    256 x 256; ``image_512`` is the same at ``dsize``. ``M_o2c`` is that resize as an affine map (pixel
    centres aligned like cv2.resize). ``landmarks_203`` (in image pixels), when given, are mapped into
    the crop frame.
    """
    image = check_image(image)
    h, w = image.shape[:2]
    sx, sy = dsize / w, dsize / h
    m_o2c = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]], dtype=np.float32)
    m_c2o = np.linalg.inv(m_o2c)
    lmk = None if landmarks_203 is None else transform_points(landmarks_203, m_o2c).astype(np.float32)
    return SourceCrop(cv2.resize(image, (dsize, dsize)), cv2.resize(image, (NETWORK_SIZE, NETWORK_SIZE)), m_o2c,
                      m_c2o, lmk, cropped=False)
