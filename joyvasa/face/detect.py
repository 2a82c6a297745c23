"""Face detection and landmarks for source images: InsightFace ``buffalo_l`` plus LivePortrait's 203 points.

Three ONNX models, as JoyVASA / LivePortrait use them (spec: liveportrait.md §3.2–3.4):

* ``det_10g.onnx`` (SCRFD-10G with 5 keypoints), run through insightface's own SCRFD class at a fixed
  512 x 512 detector size, score threshold ``det_thresh`` (0.15, the JoyVASA command-line default) and
  NMS IoU 0.4. It is given **BGR** pixels, as the original does (insightface swaps them back to RGB).
* ``2d106det.onnx``, insightface's Landmark class: 106 points per detected box.
* ``landmark.onnx`` (LivePortrait), run here with onnxruntime: a 224 x 224 similarity crop made from the
  106 points (scale 1.5, vy_ratio -0.1, rotation on), fed as RGB / 255 NCHW under the input name
  ``input``; output 2 holds 203 (x, y) pairs in [0, 1] of the crop, mapped back with the crop's M_c2o.

Faces come back largest first (box area, the original's "large-small" order). All coordinates are pixels
of the image given to the detector. ``insightface`` and ``onnxruntime`` are imported only when a detector is
built, so the rest of the pack works without them.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..weights import WeightsLocation
from .crop import check_image, crop_image, transform_points

__all__ = [
    "DET_10G",
    "LANDMARK_106",
    "LANDMARK_203",
    "DEFAULT_DET_THRESH",
    "Face",
    "NoFaceError",
    "FaceDetector",
    "default_providers",
    "insightface_providers",
]

logger = logging.getLogger(__name__)

# Official paths relative to a `pretrained_weights/` folder (see joyvasa/weights.py).
DET_10G = "insightface/models/buffalo_l/det_10g.onnx"
LANDMARK_106 = "insightface/models/buffalo_l/2d106det.onnx"
LANDMARK_203 = "liveportrait/landmark.onnx"

DEFAULT_DET_THRESH = 0.15  # JoyVASA's ArgumentConfig (LivePortrait's CropConfig says 0.1)
DET_SIZE = 512
NMS_THRESH = 0.4

# Secondary crop that feeds landmark.onnx (LivePortrait's human landmark runner).
LANDMARK_203_DSIZE = 224
LANDMARK_203_SCALE = 1.5
LANDMARK_203_VY_RATIO = -0.1
LANDMARK_203_OUTPUT = 2  # index of the (1, 406) output

_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_COREML = "CoreMLExecutionProvider"


def default_providers(available: Sequence[str] | None = None) -> list[str]:
    """ONNX Runtime execution providers to use: CUDA, else CoreML, else CPU; CPU is always last as fallback.

    ``available`` defaults to ``onnxruntime.get_available_providers()``, i.e. what the installed
    onnxruntime build offers (``onnxruntime-gpu`` offers CUDA, the macOS wheel CoreML). TensorRT is
    never chosen by default: it compiles engines on first use.
    """
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    for preferred in (_CUDA, _COREML):
        if preferred in available:
            return [preferred, _CPU]
    return [_CPU]


def insightface_providers(providers: Sequence[str]) -> list[str]:
    """Providers for the two insightface models: the same minus CoreML, whose shape inference fails on
    det_10g (LivePortrait runs insightface on the CPU on Macs for that reason)."""
    kept = [p for p in providers if p != _COREML]
    return kept if kept else [_CPU]


@dataclass(frozen=True)
class Face:
    """One detected face, in pixels of the image given to the detector.

    * ``box``: (4,) float32 ``[x1, y1, x2, y2]`` from det_10g.
    * ``score``: detector confidence in [0, 1].
    * ``landmarks_106``: (106, 2) float32 (x, y), InsightFace 2d106det order.
    * ``landmarks_203``: (203, 2) float32 (x, y), LivePortrait landmark.onnx order.
    """

    box: np.ndarray
    score: float
    landmarks_106: np.ndarray
    landmarks_203: np.ndarray


class NoFaceError(ValueError):
    """The detector found no face above its score threshold."""

    def __init__(self, det_thresh: float):
        self.det_thresh = float(det_thresh)
        lower = max(0.01, round(self.det_thresh / 3, 2))
        if lower < self.det_thresh:
            hint = f"try a lower detection threshold (det_thresh={lower:g})"
        else:
            hint = "the threshold is already very low, so the image probably shows no frontal human face"
        super().__init__(
            f"No face detected with detection threshold det_thresh={self.det_thresh:g}: {hint}, "
            f"or switch cropping off (no crop) if the image is already a face crop, or give the face box by hand.")

    def __reduce__(self):  # pickle with the constructor's argument, not the message
        return type(self), (self.det_thresh,)


def _import_model_zoo():
    try:
        from insightface import model_zoo
    except ImportError as e:
        raise ImportError(
            "Face detection needs the insightface package (>= 2.1): pip install insightface "
            "(it brings onnxruntime; for CUDA, replace onnxruntime by onnxruntime-gpu).") from e
    return model_zoo


def _open(path: str | Path, load):
    """Load an ONNX model; a file ONNX Runtime cannot parse (truncated, corrupt, not ONNX) gets a clear
    CheckpointError instead of the runtime's own exception."""
    from ..checkpoint import CheckpointError, first_line

    if not Path(path).is_file() or Path(path).stat().st_size == 0:
        raise CheckpointError(f"{path} is missing or empty. Delete it and download it again.")
    try:
        return load()
    except (ImportError, MemoryError):
        raise
    except Exception as err:  # onnxruntime and insightface raise their own error types
        raise CheckpointError(f"Cannot read {path}: {first_line(err)}. Delete it and download it again (the file "
                              "may be truncated or corrupted), or point the loader at another copy.") from None


class FaceDetector:
    """The three ONNX models of the human source path, loaded once; call :meth:`find` per image.

    ``providers``: ONNX Runtime execution providers, default :func:`default_providers`. The insightface
    models get them without CoreML (:func:`insightface_providers`).
    """

    def __init__(self, det_path: str | Path, landmark_106_path: str | Path, landmark_203_path: str | Path,
                 providers: Sequence[str] | None = None, det_thresh: float = DEFAULT_DET_THRESH,
                 det_size: int = DET_SIZE, nms_thresh: float = NMS_THRESH):
        import onnxruntime

        model_zoo = _import_model_zoo()
        self.providers = list(providers) if providers is not None else default_providers()
        self.det_thresh = float(det_thresh)
        self.det_size = int(det_size)

        if_providers = insightface_providers(self.providers)
        self.det_model = _open(det_path, lambda: model_zoo.get_model(str(det_path), providers=if_providers))
        if getattr(self.det_model, "taskname", None) != "detection":
            raise ValueError(f"{det_path} is not an SCRFD face detector (expected buffalo_l det_10g.onnx)")
        self.det_model.prepare(0, input_size=(self.det_size, self.det_size), det_thresh=self.det_thresh,
                               nms_thresh=nms_thresh)

        self.landmark_106 = _open(landmark_106_path,
                                  lambda: model_zoo.get_model(str(landmark_106_path), providers=if_providers))
        if getattr(self.landmark_106, "taskname", None) != "landmark_2d_106":
            raise ValueError(f"{landmark_106_path} is not a 106-point landmark model (expected buffalo_l "
                             f"2d106det.onnx)")

        self.landmark_203 = _open(landmark_203_path, lambda: onnxruntime.InferenceSession(
            str(landmark_203_path), providers=self.providers))
        outputs = self.landmark_203.get_outputs()
        width = outputs[LANDMARK_203_OUTPUT].shape[-1] if len(outputs) > LANDMARK_203_OUTPUT else None
        if width is None or (isinstance(width, int) and width != 406):
            raise ValueError(f"{landmark_203_path} is not LivePortrait's landmark.onnx (expected a (1, 406) output "
                             f"at index {LANDMARK_203_OUTPUT})")
        self._landmark_203_input = self.landmark_203.get_inputs()[0].name  # 'input' in the official file

    @classmethod
    def from_weights(cls, location: WeightsLocation | None = None, **kwargs) -> FaceDetector:
        """Find the three files by their official paths (raises WeightsNotFoundError naming every place
        looked at for all missing files); ``kwargs`` go to the constructor."""
        found = (location or WeightsLocation()).find_all([DET_10G, LANDMARK_106, LANDMARK_203])
        return cls(found[DET_10G], found[LANDMARK_106], found[LANDMARK_203], **kwargs)

    def boxes(self, image_rgb: np.ndarray, det_thresh: float | None = None) -> list[tuple[np.ndarray, float]]:
        """The detector's face boxes only, ``[(box (4,) float32 [x1, y1, x2, y2], score), ...]`` largest first,
        without landmarks (cheap enough for every frame of a video)."""
        image = check_image(image_rgb)
        thresh = self.det_thresh if det_thresh is None else float(det_thresh)
        # Set as an attribute rather than passed to detect(): insightface 0.7.3's detect() has no det_thresh.
        self.det_model.det_thresh = thresh
        found, _ = self.det_model.detect(np.ascontiguousarray(image[:, :, ::-1]),
                                         input_size=(self.det_size, self.det_size), max_num=0)
        # The original sorts by box area, largest first (Python's stable sort, so ties keep score order).
        order = sorted(range(len(found)), reverse=True,
                       key=lambda i: (found[i, 2] - found[i, 0]) * (found[i, 3] - found[i, 1]))
        return [(found[i, :4].astype(np.float32), float(found[i, 4])) for i in order]

    def face_in_box(self, image_rgb: np.ndarray, box: np.ndarray, score: float = 1.0) -> Face:
        """The face in a detected box: its 106 landmarks (2d106det, given BGR as the original does) and 203."""
        from insightface.app.common import Face as InsightFace

        image = check_image(image_rgb)
        box = np.asarray(box, np.float32)
        lmk106 = self.landmark_106.get(np.ascontiguousarray(image[:, :, ::-1]), InsightFace(bbox=box))
        lmk106 = lmk106.astype(np.float32)
        return Face(box=box, score=float(score), landmarks_106=lmk106, landmarks_203=self.landmarks_203(image, lmk106))

    def detect(self, image_rgb: np.ndarray, det_thresh: float | None = None) -> list[Face]:
        """All faces with score >= ``det_thresh`` (default: the detector's), largest box first; [] if none."""
        return [self.face_in_box(image_rgb, box, score) for box, score in self.boxes(image_rgb, det_thresh)]

    def find(self, image_rgb: np.ndarray, face_index: int = 0, det_thresh: float | None = None) -> Face:
        """The ``face_index``-th largest face (0 = largest). Raises NoFaceError when there is none, and
        ValueError when ``face_index`` is out of range."""
        if face_index < 0:
            raise ValueError(f"face_index must be >= 0 (0 = largest face), got {face_index}")
        faces = self.detect(image_rgb, det_thresh)
        if not faces:
            raise NoFaceError(self.det_thresh if det_thresh is None else det_thresh)
        if face_index >= len(faces):
            raise ValueError(f"face_index {face_index} is out of range: {len(faces)} face(s) found, so use "
                             f"0 to {len(faces) - 1} (0 = largest)")
        if len(faces) > 1:
            logger.info("%d faces found; using face %d (faces ordered largest first)", len(faces), face_index)
        return faces[face_index]

    def landmarks_203(self, image_rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """LivePortrait's 203 landmarks (203, 2) float32 in image pixels, seeded by 106 or 203 points
        (203 when tracking video frames)."""
        image = check_image(image_rgb)
        crop = crop_image(image, landmarks, dsize=LANDMARK_203_DSIZE, scale=LANDMARK_203_SCALE,
                          vy_ratio=LANDMARK_203_VY_RATIO, rotate=True)
        x = (crop.image.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]  # (1, 3, 224, 224) RGB
        out = self.landmark_203.run(None, {self._landmark_203_input: np.ascontiguousarray(x)})[LANDMARK_203_OUTPUT]
        pts = out[0].reshape(-1, 2) * LANDMARK_203_DSIZE
        return transform_points(pts, crop.M_c2o).astype(np.float32)
