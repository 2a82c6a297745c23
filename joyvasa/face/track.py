"""Tracking one face through a video, and the crops made from the track (spec: liveportrait.md §3.4, §3.5).

LivePortrait tracks a driving video's face like this: detect on the first frame (106 points -> 203 points), then
for every later frame run landmark.onnx seeded with the previous frame's 203 points. It never detects again, so
a face that leaves the picture (a cut, a hand, a turn) silently drags the crop to wherever the landmark model
drifts. Here the detector also runs on every frame as a presence check: a frame whose tracked landmarks' centre
lies in no detected box is *lost*; when a face is detected again, tracking restarts from it (the face nearest
to where the tracked one was last seen). Lost frames, and frames before the first face, are bridged by linear
interpolation of the landmarks between the nearest found frames (held at the ends), and reported.

Only the landmarks are kept (203 x 2 float32 = 1.6 kB a frame), never the frames.

Two crops are made from a track:
* :func:`driving_box`: LivePortrait's driving-video crop, one box for the whole clip (the average of every
  frame's square box at scale 2.2, vy -0.1), cut without rotation (:func:`box_crop_matrices`);
* :func:`smoothed_crop_matrices`: a source-style crop per frame (scale 2.3, rotation on) whose centre, side and
  angle are smoothed over time, to crop every frame of a video that is being re-animated.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .crop import check_image, crop_rect, square_crop_matrices
from .detect import NoFaceError
from .source import CROP_SCALE, CROP_VX_RATIO, CROP_VY_RATIO

__all__ = [
    "DRIVING_CROP_SCALE",
    "DRIVING_CROP_VX_RATIO",
    "DRIVING_CROP_VY_RATIO",
    "FaceTrack",
    "NoFaceInVideoError",
    "track_face",
    "driving_box",
    "box_crop_matrices",
    "smoothed_crop_matrices",
]

# LivePortrait's driving-video auto-crop (its argument defaults): a bit tighter than the source crop.
DRIVING_CROP_SCALE = 2.2
DRIVING_CROP_VX_RATIO = 0.0
DRIVING_CROP_VY_RATIO = -0.1


@dataclass(frozen=True)
class FaceTrack:
    """One face tracked through N frames.

    * ``landmarks_203``: (N, 203, 2) float32, LivePortrait's 203 points in image pixels, for every frame
      (interpolated where the face was lost).
    * ``found``: (N,) bool, False where the face was lost (or not yet seen) and the landmarks are bridged.
    * ``image_hw``: (H, W) of the frames.
    """

    landmarks_203: np.ndarray
    found: np.ndarray
    image_hw: tuple[int, int]

    def __post_init__(self):
        lmk, found = np.asarray(self.landmarks_203), np.asarray(self.found)
        if lmk.ndim != 3 or lmk.shape[1:] != (203, 2) or lmk.shape[0] == 0:
            raise ValueError(f"landmarks_203 must be (N >= 1, 203, 2), got {lmk.shape}")
        if found.shape != (lmk.shape[0],) or found.dtype != np.bool_:
            raise ValueError(f"found must be a ({lmk.shape[0]},) bool array, got {found.shape} {found.dtype}")
        if not found.any():
            raise ValueError("a face track needs at least one frame where the face was found")
        if not np.isfinite(lmk).all():
            raise ValueError("landmarks_203 must be finite")
        if len(self.image_hw) != 2 or min(self.image_hw) <= 0:
            raise ValueError(f"image_hw must be (H, W) > 0, got {self.image_hw}")

    def __len__(self) -> int:
        return len(self.found)

    def lost_spans(self) -> list[tuple[int, int]]:
        """The [start, stop) frame ranges where the face was not found, in order."""
        lost = np.concatenate([[False], ~np.asarray(self.found), [False]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(lost))
        return [(int(a), int(b)) for a, b in zip(edges[0::2], edges[1::2])]

    def describe_lost(self, fps: float) -> str | None:
        """One line for people, e.g. "the face was lost in 2 places (frames 30-41 and 80-85, 0.6 s in all);
        those frames were bridged by interpolation"; None when the face was found in every frame."""
        spans = self.lost_spans()
        if not spans:
            return None
        names = [f"{a}" if b - a == 1 else f"{a}-{b - 1}" for a, b in spans]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        count = sum(b - a for a, b in spans)
        places = "1 place" if len(spans) == 1 else f"{len(spans)} places"
        frames = "frame" if count == 1 else "frames"
        return (f"the face was lost in {places} ({frames} {listed}, {count / fps:.1f} s in all); those frames "
                f"were bridged by interpolation")


class NoFaceInVideoError(NoFaceError):
    """No frame of a video has a face above the detection threshold."""

    def __init__(self, det_thresh: float, n_frames: int, what: str = "the video"):
        self.n_frames, self.what = int(n_frames), str(what)
        super().__init__(det_thresh)
        lower = max(0.01, round(self.det_thresh / 3, 2))
        if lower < self.det_thresh:
            hint = f"try a lower detection threshold (det_thresh={lower:g})"
        else:
            hint = "the threshold is already very low, so the video probably shows no frontal human face"
        self.args = (f"no face found in any of the {self.n_frames} frames of {self.what} (detection threshold "
                     f"det_thresh={self.det_thresh:g}): {hint}, or switch cropping off (crop none) if the frames "
                     f"are already face crops, or give the face box by hand.",)

    def __reduce__(self):
        return type(self), (self.det_thresh, self.n_frames, self.what)


def _contains(box, point) -> bool:
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return x1 <= point[0] <= x2 and y1 <= point[1] <= y2


def _box_centre(box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float64)


def track_face(frames: Iterable[np.ndarray], detector, face_index: int = 0, det_thresh: float | None = None,
               callback: Callable[[int], None] | None = None, what: str = "the video") -> FaceTrack:
    """Track the ``face_index``-th largest face of the first frame with a face through ``frames`` ((H, W, 3)
    uint8 RGB, e.g. :func:`joyvasa.video_reader.read_video_frames`, consumed once).

    ``detector``: a :class:`~joyvasa.face.detect.FaceDetector`; ``det_thresh``: its score threshold (None = its
    own). ``callback(done)`` is called after each frame with the number of frames done. ``what`` names the
    video in the error raised when no frame has a face (:class:`NoFaceInVideoError`, a ValueError).
    """
    if face_index < 0:
        raise ValueError(f"face_index must be >= 0 (0 = largest face), got {face_index}")
    landmarks: list[np.ndarray | None] = []
    image_hw = None
    prev = None  # the tracked 203 points of the previous frame, None when lost
    last_centre = None  # where the face was last seen, to pick it again among several faces
    for image in frames:
        image = check_image(image)
        if image_hw is None:
            image_hw = image.shape[:2]
        elif image.shape[:2] != image_hw:
            raise ValueError(f"frame {len(landmarks)} of {what} is {image.shape[1]}x{image.shape[0]} pixels, the "
                             f"first was {image_hw[1]}x{image_hw[0]}; all frames must have one size")
        boxes = detector.boxes(image, det_thresh)  # boxes only: landmarks are computed for one face at most
        current = None
        if prev is not None:
            tracked = detector.landmarks_203(image, prev)
            if any(_contains(box, tracked.mean(axis=0)) for box, _ in boxes):
                current = tracked
        if current is None and boxes:  # (re)start from the detector
            if last_centre is None:
                if face_index >= len(boxes):
                    raise ValueError(f"face_index {face_index} is out of range: {len(boxes)} face(s) found in "
                                     f"frame {len(landmarks)} of {what}, so use 0 to {len(boxes) - 1} "
                                     "(0 = largest)")
                box, score = boxes[face_index]
            else:
                box, score = min(boxes, key=lambda b: float(np.linalg.norm(_box_centre(b[0]) - last_centre)))
            current = np.asarray(detector.face_in_box(image, box, score).landmarks_203, np.float32)
        landmarks.append(current)
        prev = current
        if current is not None:
            last_centre = current.mean(axis=0).astype(np.float64)
        if callback is not None:
            callback(len(landmarks))
    if not landmarks:
        raise ValueError(f"{what} has no frames")
    found = np.array([p is not None for p in landmarks])
    if not found.any():
        raise NoFaceInVideoError(detector.det_thresh if det_thresh is None else det_thresh, len(landmarks), what)
    return FaceTrack(_bridge(landmarks, found), found, (int(image_hw[0]), int(image_hw[1])))


def _bridge(landmarks: list[np.ndarray | None], found: np.ndarray) -> np.ndarray:
    """(N, 203, 2) float32: the found frames as they are, the others linearly interpolated between the nearest
    found frames on either side (held before the first and after the last)."""
    known = np.flatnonzero(found)
    stacked = np.stack([landmarks[i] for i in known]).reshape(len(known), -1).astype(np.float64)
    frames = np.arange(len(landmarks))
    out = np.empty((len(landmarks), stacked.shape[1]), np.float64)
    for k in range(stacked.shape[1]):  # np.interp holds the end values outside the known range
        out[:, k] = np.interp(frames, known, stacked[:, k])
    out = out.astype(np.float32).reshape(len(landmarks), 203, 2)
    out[known] = np.stack([landmarks[i] for i in known])  # found frames bit-exact
    return out


def _rects(track: FaceTrack, scale: float, vx_ratio: float, vy_ratio: float):
    """Per-frame (centres (N, 2), sides (N,), angles (N,)) float64 of the square crop rectangles."""
    rects = [crop_rect(p, scale=scale, vx_ratio=vx_ratio, vy_ratio=vy_ratio) for p in track.landmarks_203]
    centres = np.array([[float(c[0]), float(c[1])] for c, _, _ in rects], np.float64)
    sides = np.array([float(s[0]) for _, s, _ in rects], np.float64)
    angles = np.array([a for _, _, a in rects], np.float64)
    return centres, sides, angles


def driving_box(track: FaceTrack, scale: float = DRIVING_CROP_SCALE, vx_ratio: float = DRIVING_CROP_VX_RATIO,
                vy_ratio: float = DRIVING_CROP_VY_RATIO) -> tuple[float, float, float]:
    """LivePortrait's one crop box for a driving clip: (cx, cy, side) in pixels, the average of every frame's
    square crop rectangle (:func:`~joyvasa.face.crop.crop_rect` of its 203 points; rotation ignored)."""
    centres, sides, _ = _rects(track, scale, vx_ratio, vy_ratio)
    centre = centres.mean(axis=0)
    return float(centre[0]), float(centre[1]), float(sides.mean())


def box_crop_matrices(box: tuple[float, float, float], dsize: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(M_o2c, M_c2o) (3, 3) float32 of the upright ``dsize`` crop of a (cx, cy, side) box."""
    cx, cy, side = (float(v) for v in box)
    if not side > 0 or not math.isfinite(cx) or not math.isfinite(cy):
        raise ValueError(f"a crop box needs a finite centre and a side > 0, got (cx, cy, side) = {box}")
    return square_crop_matrices(cx, cy, side, dsize)


def _gaussian_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with the kernel cut at 3 sigma and renormalised at the ends (so the
    first and last frames are averages of real frames, not pulled towards zero or mirrored)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    n = len(values)
    out = np.empty_like(values)
    for i in range(n):
        lo, hi = max(0, i - radius), min(n, i + radius + 1)
        weights = kernel[lo - i + radius: hi - i + radius]
        out[i] = np.tensordot(weights, values[lo:hi], axes=1) / weights.sum()
    return out


def smoothed_crop_matrices(track: FaceTrack, scale: float = CROP_SCALE, vx_ratio: float = CROP_VX_RATIO,
                           vy_ratio: float = CROP_VY_RATIO, rotate: bool = True, sigma_frames: float = 2.0,
                           dsize: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (M_o2c, M_c2o), each (N, 3, 3) float32, of the source-style similarity crop of every frame.

    The crop's centre, side and angle (unwrapped) are smoothed over time by a Gaussian of ``sigma_frames``
    frames, so the crop does not shake with the landmarks' jitter; ``sigma_frames`` = 0 gives each frame's own
    crop, equal to :func:`~joyvasa.face.crop.similarity_crop_matrices` of its 203 points."""
    if not sigma_frames >= 0 or not math.isfinite(sigma_frames):
        raise ValueError(f"sigma_frames must be >= 0 (0 = no smoothing), got {sigma_frames}")
    centres, sides, angles = _rects(track, scale, vx_ratio, vy_ratio)
    if sigma_frames > 0:
        centres = _gaussian_smooth(centres, sigma_frames)
        sides = _gaussian_smooth(sides, sigma_frames)
        angles = _gaussian_smooth(np.unwrap(angles), sigma_frames)
    pairs = [square_crop_matrices(cx, cy, side, dsize, angle if rotate else None)
             for (cx, cy), side, angle in zip(centres.tolist(), sides.tolist(), angles.tolist())]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
