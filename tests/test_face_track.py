"""Tracking a face through a video (joyvasa.face.track) on synthetic videos and stand-in face models."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from joyvasa.face.crop import similarity_crop_matrices, transform_points
from joyvasa.face.detect import DET_10G, LANDMARK_106, LANDMARK_203, FaceDetector, NoFaceError
from joyvasa.face.track import (
    FaceTrack,
    NoFaceInVideoError,
    box_crop_matrices,
    driving_box,
    smoothed_crop_matrices,
    track_face,
)
from joyvasa.testing.onnx_standins import expected_landmarks, layout_203
from joyvasa.testing.videos import face_frame, standin_face_weights, write_face_video
from joyvasa.video_reader import read_video_frames

HW = (240, 320)
FPS = 25
N = 30


def moving_box(i: int):
    """A 100 x 120 face moving 1.5 px right and 0.5 px down a frame, on whole pixels as it is drawn (43 px in all;
    it stays inside the first frame's box, which the stand-in detector reports for every warm frame)."""
    x, y = 100 + (3 * i) // 2, 60 + i // 2
    return (x, y, x + 100, y + 120)


def lost_middle(i: int):
    return None if 10 <= i < 15 else moving_box(i)


def late_start(i: int):
    return None if i < 3 else moving_box(i)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    root = standin_face_weights(tmp_path_factory.mktemp("weights"), moving_box(0), HW)
    return FaceDetector(root / DET_10G, root / LANDMARK_106, root / LANDMARK_203, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return {name: write_face_video(folder / f"{name}.mp4", N, FPS, HW, boxes)
            for name, boxes in [("moving", moving_box), ("lost", lost_middle), ("late", late_start),
                                ("empty", lambda i: None)]}


def _expected(i, boxes=moving_box):
    return expected_landmarks(boxes(i), layout_203())


def test_tracked_landmarks_follow_the_drawn_face(detector, videos):
    """Every frame's 203 points lie where the face was drawn (within half a pixel, the face moving 43 px)."""
    done = []
    track = track_face(read_video_frames(videos["moving"]), detector, callback=done.append)
    assert done == list(range(1, N + 1))
    assert track.landmarks_203.shape == (N, 203, 2) and track.landmarks_203.dtype == np.float32
    assert track.landmarks_203[0].nbytes == 1624  # all that is kept per frame
    assert track.found.all() and track.lost_spans() == [] and track.describe_lost(FPS) is None
    assert track.image_hw == HW
    for i in range(N):
        np.testing.assert_allclose(track.landmarks_203[i], _expected(i), atol=0.5, err_msg=f"frame {i}")


def test_the_average_box_holds_every_frame_of_the_face(detector, videos):
    track = track_face(read_video_frames(videos["moving"]), detector)
    cx, cy, side = driving_box(track)
    for i in range(N):
        x1, y1, x2, y2 = moving_box(i)
        assert cx - side / 2 <= x1 and x2 <= cx + side / 2 and cy - side / 2 <= y1 and y2 <= cy + side / 2
    # the average of the frames' own boxes: the middle frame's face centre is near the box centre
    centre = np.mean(_expected(N // 2), axis=0)
    assert abs(cx - centre[0]) < 2
    m_o2c, m_c2o = box_crop_matrices((cx, cy, side), 256)
    np.testing.assert_allclose(transform_points(np.array([[cx - side / 2, cy - side / 2], [cx, cy]]), m_o2c),
                               [[0, 0], [128, 128]], atol=1e-3)
    np.testing.assert_allclose(m_o2c @ m_c2o, np.eye(3), atol=1e-5)


def test_lost_frames_are_bridged_and_reported(detector, videos):
    """No face in frames 10-14: they are marked lost, interpolated between frames 9 and 15, and described."""
    track = track_face(read_video_frames(videos["lost"]), detector)
    assert np.flatnonzero(~track.found).tolist() == [10, 11, 12, 13, 14]
    assert track.lost_spans() == [(10, 15)]
    for i in (9, 15, 20, N - 1):  # tracking goes on after the face comes back
        np.testing.assert_allclose(track.landmarks_203[i], _expected(i, lost_middle), atol=0.5)
    a, b = track.landmarks_203[9], track.landmarks_203[15]
    np.testing.assert_allclose(track.landmarks_203[12], a + (b - a) * 3 / 6, atol=1e-4)
    message = track.describe_lost(FPS)
    assert "lost in 1 place" in message and "frames 10-14" in message and "0.2 s" in message


def test_frames_before_the_first_face_hold_it(detector, videos):
    track = track_face(read_video_frames(videos["late"]), detector)
    assert track.lost_spans() == [(0, 3)]
    for i in range(3):
        np.testing.assert_array_equal(track.landmarks_203[i], track.landmarks_203[3])


def test_no_face_in_any_frame_is_a_clear_error(detector, videos):
    with pytest.raises(ValueError, match=f"no face found in any of the {N} frames of clip.mp4") as err:
        track_face(read_video_frames(videos["empty"]), detector, what="clip.mp4")
    assert isinstance(err.value, NoFaceError) and "det_thresh=0.05" in str(err.value)
    again = pickle.loads(pickle.dumps(err.value))
    assert str(again) == str(err.value)
    with pytest.raises(NoFaceInVideoError, match="det_thresh=0.3"):
        track_face(read_video_frames(videos["empty"], 0, 3), detector, det_thresh=0.9)


def test_bad_frames_and_options(detector):
    with pytest.raises(ValueError, match="no frames"):
        track_face([], detector)
    with pytest.raises(ValueError, match="face_index 1 is out of range"):
        track_face([face_frame(HW, moving_box(0))], detector, face_index=1)
    with pytest.raises(ValueError, match="one size"):
        track_face([face_frame(HW, moving_box(0)), face_frame((120, 160), None)], detector)


def _track(centres, jitter=0.0, seed=0) -> FaceTrack:
    """A synthetic track: the standard face (side 100) at the given centres plus per-frame random shifts."""
    rng = np.random.default_rng(seed)
    lmk = [layout_203() * 100 + c + rng.normal(0, jitter, 2) for c in centres]
    return FaceTrack(np.array(lmk, np.float32), np.ones(len(centres), bool), (480, 640))


def _crop_centres(m_c2o):
    return np.stack([transform_points(np.array([[256.0, 256.0]]), m)[0] for m in m_c2o])


def test_smoothing_steadies_a_jittery_crop():
    """On a slowly moving, jittery track the smoothed crop centre moves much less from frame to frame, and
    still follows the slow motion."""
    path = np.stack([200 + np.arange(60) * 0.5, np.full(60, 240.0)], axis=1)
    track = _track(path, jitter=2.0)
    _, raw = smoothed_crop_matrices(track, sigma_frames=0)
    _, smooth = smoothed_crop_matrices(track, sigma_frames=2.0)
    raw_steps = np.abs(np.diff(_crop_centres(raw), axis=0)).mean()
    smooth_steps = np.abs(np.diff(_crop_centres(smooth), axis=0)).mean()
    assert smooth_steps < 0.4 * raw_steps
    clean = _crop_centres(smoothed_crop_matrices(_track(path), sigma_frames=0)[1])
    assert np.abs(_crop_centres(smooth) - clean).mean() < np.abs(_crop_centres(raw) - clean).mean() / 2


def test_no_smoothing_is_each_frames_own_crop():
    track = _track(np.stack([200 + np.arange(5) * 3.0, 240 + np.arange(5) * 1.0], axis=1), jitter=1.0)
    m_o2c, m_c2o = smoothed_crop_matrices(track, sigma_frames=0)
    assert m_o2c.shape == (5, 3, 3) and m_o2c.dtype == np.float32 and m_c2o.dtype == np.float32
    for i in range(5):
        want_o2c, want_c2o = similarity_crop_matrices(track.landmarks_203[i])
        np.testing.assert_array_equal(m_o2c[i], want_o2c)
        np.testing.assert_array_equal(m_c2o[i], want_c2o)
    with pytest.raises(ValueError, match="sigma_frames"):
        smoothed_crop_matrices(track, sigma_frames=-1)


def test_smoothing_keeps_a_steady_roll_across_the_angle_wrap():
    """A face upside down (roll near 180 degrees, the angle wrapping from +pi to -pi) is not spun round."""
    base = layout_203() * 100
    lmk = []
    for i, roll in enumerate(np.deg2rad([178, 179, 181, 182, 179, 178])):
        c, s = np.cos(roll), np.sin(roll)
        lmk.append(base @ np.array([[c, s], [-s, c]]) + [300 + i, 240])
    track = FaceTrack(np.array(lmk, np.float32), np.ones(6, bool), (480, 640))
    m_o2c, _ = smoothed_crop_matrices(track, sigma_frames=2.0)
    raw_o2c, _ = smoothed_crop_matrices(track, sigma_frames=0)
    # the rotation part stays a rotation by about 180 degrees (a naive average of +179 and -179 would be 0)
    cos_smooth = m_o2c[:, 0, 0] / np.hypot(m_o2c[:, 0, 0], m_o2c[:, 0, 1])
    cos_raw = raw_o2c[:, 0, 0] / np.hypot(raw_o2c[:, 0, 0], raw_o2c[:, 0, 1])
    assert (cos_raw < -0.99).all() and (cos_smooth < -0.99).all()


def test_lost_spans_and_message():
    found = np.array([False, False, True, True, False, True, True, False, False, False])
    track = FaceTrack(np.zeros((10, 203, 2), np.float32), found, (10, 10))
    assert track.lost_spans() == [(0, 2), (4, 5), (7, 10)]
    assert track.describe_lost(10.0) == ("the face was lost in 3 places (frames 0-1, 4 and 7-9, 0.6 s in all); "
                                         "those frames were bridged by interpolation")
    with pytest.raises(ValueError, match="at least one frame"):
        FaceTrack(np.zeros((2, 203, 2), np.float32), np.zeros(2, bool), (10, 10))
    with pytest.raises(ValueError, match="203, 2"):
        FaceTrack(np.zeros((2, 106, 2), np.float32), np.ones(2, bool), (10, 10))


def test_face_index_picks_the_face_to_track(tmp_path):
    """Two faces: face_index 1 (the smaller) is tracked, not the largest."""
    from joyvasa.testing.onnx_standins import StandinFace, build_det_10g, warm_image

    big, small = (20, 40, 140, 190), (220, 100, 290, 180)
    root = standin_face_weights(tmp_path, big, HW)
    build_det_10g(root / DET_10G, [StandinFace(big), StandinFace(small)], HW)  # both faces reported
    detector = FaceDetector(root / DET_10G, root / LANDMARK_106, root / LANDMARK_203,
                            providers=["CPUExecutionProvider"])
    frames = [warm_image(HW, [StandinFace(big), StandinFace(small)])] * 3
    largest = track_face(frames, detector)
    second = track_face(frames, detector, face_index=1)
    np.testing.assert_allclose(largest.landmarks_203.mean(axis=(0, 1)), np.mean(_expected(0, lambda i: big), axis=0),
                               atol=1.0)
    np.testing.assert_allclose(second.landmarks_203.mean(axis=(0, 1)),
                               np.mean(_expected(0, lambda i: small), axis=0), atol=1.0)
