"""Face detection and source preparation on stand-in ONNX files, through the real insightface / onnxruntime code."""
from __future__ import annotations

import pickle
import sys

import cv2
import numpy as np
import pytest

from joyvasa.face.crop import resize_area, transform_points
from joyvasa.face.detect import (
    DET_10G,
    LANDMARK_106,
    LANDMARK_203,
    FaceDetector,
    NoFaceError,
    _import_model_zoo,
    default_providers,
    insightface_providers,
)
from joyvasa.face.source import box_crop, crop_source, no_crop, resize_to_limit
from joyvasa.testing import onnx_standins as standins
from joyvasa.testing.onnx_standins import StandinFace
from joyvasa.weights import WeightsLocation, WeightsNotFoundError

HW = (500, 600)  # a 600 x 500 (W x H) picture
BIG = StandinFace((250.0, 150.0, 370.0, 270.0), 0.9)
SMALL = StandinFace((60.0, 300.0, 120.0, 360.0), 0.95)  # smaller but more confident: size decides
FAINT = StandinFace((250.0, 150.0, 370.0, 270.0), 0.1)  # below the default threshold 0.15

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
COREML = "CoreMLExecutionProvider"


def _detector(tmp_path_factory, faces, **kwargs) -> FaceDetector:
    root = standins.build_weights(tmp_path_factory.mktemp("weights"), faces, HW)
    return FaceDetector.from_weights(WeightsLocation(explicit_dir=root, pack_dir=root), **kwargs)


@pytest.fixture(scope="module")
def one_face(tmp_path_factory):
    return _detector(tmp_path_factory, [BIG])


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    return _detector(tmp_path_factory, [SMALL, BIG])


def test_face_and_landmarks_land_where_the_standins_put_them(one_face):
    """Box, score, 106 and 203 points come back at the stand-in's pixels after all the affine round trips."""
    image = standins.warm_image(HW, [BIG])
    face = one_face.find(image)
    np.testing.assert_allclose(face.box, BIG.box, atol=0.01)
    assert face.score == pytest.approx(0.9, abs=1e-6)
    assert face.landmarks_106.shape == (106, 2) and face.landmarks_106.dtype == np.float32
    assert face.landmarks_203.shape == (203, 2) and face.landmarks_203.dtype == np.float32
    np.testing.assert_allclose(face.landmarks_106, standins.expected_landmarks(BIG.box, standins.layout_106()),
                               atol=0.05)
    np.testing.assert_allclose(face.landmarks_203, standins.expected_landmarks(BIG.box, standins.layout_203()),
                               atol=0.05)


def test_channel_order_reaches_the_models(one_face):
    """The stand-ins only answer for red > blue network input, so a blue picture finds nothing: the detector
    gets BGR (insightface swaps it to RGB) and landmark.onnx gets RGB."""
    blue = np.empty((*HW, 3), np.uint8)
    blue[:] = (40, 60, 200)
    assert one_face.detect(blue) == []
    lmk106 = standins.expected_landmarks(BIG.box, standins.layout_106()).astype(np.float32)
    collapsed = one_face.landmarks_203(blue, lmk106)
    assert np.ptp(collapsed, axis=0).max() < 1e-3  # zero output: every point at the crop's corner
    red = one_face.landmarks_203(standins.warm_image(HW, [BIG]), lmk106)
    np.testing.assert_allclose(red, standins.expected_landmarks(BIG.box, standins.layout_203()), atol=0.05)


def test_rejects_images_that_are_not_rgb_uint8(one_face):
    """Float or single-channel images are refused with the expected format named."""
    image = standins.warm_image(HW, [BIG])
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        one_face.detect(image.astype(np.float32) / 255)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        crop_source(image[:, :, 0], one_face.find(image))


def test_largest_face_first(two_faces):
    """Faces are ordered by box area, not score; find() takes the largest by default."""
    image = standins.warm_image(HW, [SMALL, BIG])
    faces = two_faces.detect(image)
    assert [tuple(f.box.round(2)) for f in faces] == [BIG.box, SMALL.box]
    np.testing.assert_allclose(two_faces.find(image).box, BIG.box, atol=0.01)


def test_face_index_selects_the_other_face(two_faces):
    """face_index=1 picks the second largest face, with its own landmarks."""
    image = standins.warm_image(HW, [SMALL, BIG])
    face = two_faces.find(image, face_index=1)
    np.testing.assert_allclose(face.box, SMALL.box, atol=0.01)
    assert face.score == pytest.approx(0.95, abs=1e-6)
    np.testing.assert_allclose(face.landmarks_203, standins.expected_landmarks(SMALL.box, standins.layout_203()),
                               atol=0.05)


def test_face_index_out_of_range(two_faces):
    """An index past the last face says how many faces were found."""
    image = standins.warm_image(HW, [SMALL, BIG])
    with pytest.raises(ValueError, match=r"face_index 2 is out of range: 2 face\(s\) found"):
        two_faces.find(image, face_index=2)
    with pytest.raises(ValueError, match="face_index must be >= 0"):
        two_faces.find(image, face_index=-1)


def test_no_face_error_names_the_threshold(tmp_path_factory):
    """No face: a NoFaceError (a ValueError) naming the threshold used and a lower one, and the no-crop way out."""
    detector = _detector(tmp_path_factory, [])
    with pytest.raises(NoFaceError) as info:
        detector.find(standins.warm_image(HW))
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "det_thresh=0.15" in message and "det_thresh=0.05" in message and "no crop" in message
    assert info.value.det_thresh == pytest.approx(0.15)
    assert str(pickle.loads(pickle.dumps(info.value))) == message
    with pytest.raises(NoFaceError, match="det_thresh=0.4"):
        detector.find(standins.warm_image(HW), det_thresh=0.4)


def test_threshold_decides(tmp_path_factory):
    """A face scored 0.1 is missed at the default 0.15 and found at the suggested 0.05 (per call or per detector)."""
    image = standins.warm_image(HW, [FAINT])
    detector = _detector(tmp_path_factory, [FAINT])
    assert detector.det_thresh == pytest.approx(0.15)
    with pytest.raises(NoFaceError):
        detector.find(image)
    np.testing.assert_allclose(detector.find(image, det_thresh=0.05).box, FAINT.box, atol=0.01)
    low = _detector(tmp_path_factory, [FAINT], det_thresh=0.05)
    np.testing.assert_allclose(low.find(image).box, FAINT.box, atol=0.01)


def test_default_providers_follow_what_is_installed(monkeypatch):
    """CUDA first, else CoreML, else CPU, with CPU as fallback; TensorRT is not picked; insightface drops CoreML."""
    import onnxruntime

    cases = {
        (CPU,): [CPU],
        ("AzureExecutionProvider", CPU): [CPU],
        ("TensorrtExecutionProvider", CUDA, CPU): [CUDA, CPU],
        (COREML, CPU): [COREML, CPU],
    }
    for available, expected in cases.items():
        monkeypatch.setattr(onnxruntime, "get_available_providers", lambda a=available: list(a))
        assert default_providers() == expected
    assert insightface_providers([COREML, CPU]) == [CPU]
    assert insightface_providers([COREML]) == [CPU]
    assert insightface_providers([CUDA, CPU]) == [CUDA, CPU]


def test_sessions_use_the_chosen_providers(one_face):
    """On this CPU-only onnxruntime all three sessions run on the CPU provider chosen by default."""
    assert one_face.providers == [CPU]
    assert one_face.det_model.session.get_providers() == [CPU]
    assert one_face.landmark_106.session.get_providers() == [CPU]
    assert one_face.landmark_203.get_providers() == [CPU]


def test_missing_files_name_the_places_looked(tmp_path):
    """Missing model files raise WeightsNotFoundError listing all three files and the folders searched."""
    location = WeightsLocation(explicit_dir=tmp_path / "mine", pack_dir=tmp_path / "pack")
    with pytest.raises(WeightsNotFoundError) as info:
        FaceDetector.from_weights(location)
    message = str(info.value)
    for relpath in (DET_10G, LANDMARK_106, LANDMARK_203):
        assert relpath in message
        assert str(tmp_path / "mine" / relpath) in message
        assert str(tmp_path / "pack" / relpath) in message


def test_found_in_comfyui_model_folders(tmp_path):
    """ComfyUI's layout works: models/insightface/models/buffalo_l/... and models/liveportrait/landmark.onnx."""
    models = tmp_path / "models"
    standins.build_det_10g(models / "insightface/models/buffalo_l/det_10g.onnx", [BIG], HW)
    standins.build_2d106det(models / "insightface/models/buffalo_l/2d106det.onnx")
    standins.build_landmark_203(models / "liveportrait/landmark.onnx")
    location = WeightsLocation(host_dirs={"insightface": (models / "insightface",),
                                          "liveportrait": (models / "liveportrait",)},
                               pack_dir=tmp_path / "pack")
    detector = FaceDetector.from_weights(location)
    np.testing.assert_allclose(detector.find(standins.warm_image(HW, [BIG])).box, BIG.box, atol=0.01)


def test_wrong_files_are_rejected(tmp_path):
    """A 106-point model given as the detector (or the reverse) is named in a clear error."""
    root = standins.build_weights(tmp_path, [BIG], HW)
    with pytest.raises(ValueError, match="not an SCRFD face detector"):
        FaceDetector(root / LANDMARK_106, root / LANDMARK_106, root / LANDMARK_203)
    with pytest.raises(ValueError, match="not a 106-point landmark model"):
        FaceDetector(root / DET_10G, root / DET_10G, root / LANDMARK_203)
    with pytest.raises(ValueError, match="not LivePortrait's landmark.onnx"):
        FaceDetector(root / DET_10G, root / LANDMARK_106, root / LANDMARK_106)


def test_missing_insightface_says_how_to_install(monkeypatch):
    """Without insightface the error tells to pip install it."""
    monkeypatch.setitem(sys.modules, "insightface", None)
    with pytest.raises(ImportError, match="pip install insightface"):
        _import_model_zoo()


# --------------------------------------------------------------------------- source preparation

def test_resize_to_limit_trims_odd_sides_without_resizing():
    """Under the limit only the last row / column go, so both sides are even; pixels are untouched."""
    image = np.random.default_rng(0).integers(0, 256, (301, 401, 3), dtype=np.uint8)
    out = resize_to_limit(image)
    assert out.shape == (300, 400, 3)
    np.testing.assert_array_equal(out, image[:300, :400])
    assert resize_to_limit(image[:300, :400]).shape == (300, 400, 3)
    assert resize_to_limit(image, division=4).shape == (300, 400, 3)
    assert resize_to_limit(image, division=0).shape == (301, 401, 3)


@pytest.mark.parametrize(("hw", "resized_hw", "final_hw"), [
    ((1000, 1500), (853, 1280), (852, 1280)),  # landscape: 1000 * 1280 / 1500 = 853.3, truncated, then even
    ((2001, 999), (1280, 639), (1280, 638)),  # portrait: 999 * 1280 / 2001 = 639.04
    ((1300, 1300), (1280, 1280), (1280, 1280)),  # square
])
def test_resize_to_limit_downscales_long_side(hw, resized_hw, final_hw):
    """Over 1280 the long side becomes 1280 (bilinear), the short side is truncated, then trimmed to even."""
    image = np.random.default_rng(1).integers(0, 256, (*hw, 3), dtype=np.uint8)
    out = resize_to_limit(image)
    assert out.shape[:2] == final_hw
    expected = cv2.resize(image, resized_hw[::-1], interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out, expected[: final_hw[0], : final_hw[1]])


def test_crop_source_end_to_end(one_face):
    """600 x 500 picture -> detection -> 512 / 256 crops whose centre maps back to LivePortrait's crop centre."""
    image = standins.warm_image(HW, [BIG])
    face = one_face.find(image)
    src = crop_source(image, face)
    assert src.image_512.shape == (512, 512, 3) and src.image_512.dtype == np.uint8
    assert src.image_256.shape == (256, 256, 3) and src.cropped
    np.testing.assert_array_equal(src.image_256, resize_area(src.image_512, 256))
    assert src.M_c2o.shape == (3, 3) and src.M_c2o.dtype == np.float32

    # LivePortrait's source crop of an upright face, by hand: bounding box of the 106 points, square side
    # x 2.3, centre moved up by 0.125 x side.
    lmk = standins.expected_landmarks(BIG.box, standins.layout_106())
    lo, hi = lmk.min(axis=0), lmk.max(axis=0)
    side = 2.3 * float(np.max(hi - lo))
    centre = (lo + hi) / 2 + [0.0, -0.125 * side]
    np.testing.assert_allclose(transform_points([[256.0, 256.0]], src.M_c2o)[0], centre, atol=0.05)
    np.testing.assert_allclose(src.M_c2o[:2, :2], np.eye(2) * side / 512, atol=1e-4)  # no roll
    face_centre, face_side = standins.box_centre_side(BIG.box)
    assert np.linalg.norm(centre - face_centre) < 0.2 * face_side  # near the face centre (eye level)
    assert tuple(src.image_512[256, 256]) == (220, 170, 140)  # inside the drawn face

    assert src.landmarks_203.shape == (203, 2)
    np.testing.assert_allclose(transform_points(src.landmarks_203, src.M_c2o), face.landmarks_203, atol=0.01)


def test_box_crop_is_the_square_around_the_box():
    """scale 1, vy 0: the crop is exactly the box's square; defaults enlarge and lift it like a face crop."""
    image = standins.warm_image(HW, [BIG], skin=(200, 50, 50))
    src = box_crop(image, (100.0, 50.0, 300.0, 250.0), scale=1.0, vy_ratio=0.0)
    assert src.image_512.shape == (512, 512, 3) and src.image_256.shape == (256, 256, 3)
    assert src.landmarks_203 is None and src.cropped
    np.testing.assert_allclose(transform_points([[0.0, 0.0], [512.0, 512.0]], src.M_c2o),
                               [[100.0, 50.0], [300.0, 250.0]], atol=1e-3)
    np.testing.assert_allclose(src.M_o2c @ src.M_c2o, np.eye(3), atol=1e-5)

    src = box_crop(image, BIG.box)  # 120 px face: side 2.3 x 120, centre lifted by 0.125 x side
    side = 2.3 * 120
    np.testing.assert_allclose(transform_points([[256.0, 256.0]], src.M_c2o)[0], [310.0, 210.0 - 0.125 * side],
                               atol=1e-3)
    np.testing.assert_allclose(src.M_c2o[0, 0], side / 512, rtol=1e-5)
    assert tuple(src.image_512[256, 256]) == (200, 50, 50)

    src = box_crop(image, (550.0, 400.0, 650.0, 450.0), scale=1.0, vy_ratio=0.0)  # partly outside: black
    assert src.image_512.shape == (512, 512, 3) and src.image_512[500, 500].max() == 0
    with pytest.raises(ValueError, match="box must be"):
        box_crop(image, (10, 10, 10, 10))


def test_no_crop_squeezes_the_whole_image():
    """No crop: the whole image resized to 256 (bilinear, as the original) and 512, with the matching matrices."""
    image = standins.warm_image(HW, [BIG])
    lmk = standins.expected_landmarks(BIG.box, standins.layout_203()).astype(np.float32)
    src = no_crop(image, landmarks_203=lmk)
    assert not src.cropped
    assert src.image_512.shape == (512, 512, 3) and src.image_256.shape == (256, 256, 3)
    np.testing.assert_array_equal(src.image_256, cv2.resize(image, (256, 256)))
    np.testing.assert_array_equal(src.image_512, cv2.resize(image, (512, 512)))
    # pixel-area corners match, as in cv2.resize
    np.testing.assert_allclose(transform_points([[-0.5, -0.5], [511.5, 511.5]], src.M_c2o),
                               [[-0.5, -0.5], [599.5, 499.5]], atol=1e-3)
    np.testing.assert_allclose(transform_points(src.landmarks_203, src.M_c2o), lmk, atol=1e-3)
    assert no_crop(image).landmarks_203 is None
