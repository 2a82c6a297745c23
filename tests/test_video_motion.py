"""Motion from a driving video (joyvasa.pipeline.video_motion), its motion files, and `python -m joyvasa motion`."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from joyvasa.direct.motion_file import (
    MotionFileError,
    import_template,
    load_motion,
    save_motion,
    write_motion_file,
)
from joyvasa.face.detect import DET_10G, LANDMARK_106, LANDMARK_203, FaceDetector
from joyvasa.face.track import box_crop_matrices
from joyvasa.motion.decode import denormalize
from joyvasa.pipeline.video_motion import (
    VideoMotion,
    driving_crop_box,
    motion_from_video,
    resample_motion,
)
from joyvasa.renderer.keypoints import rotation_matrix
from joyvasa.renderer.motion_extractor import MotionOutput
from joyvasa.testing.onnx_standins import SKIN
from joyvasa.testing.tiny import tiny_renderer, tiny_template
from joyvasa.testing.videos import standin_face_weights, write_face_video
from joyvasa.video_reader import read_video_frames
from joyvasa.weights import renderer_files

REPO = Path(__file__).resolve().parents[1]
HW = (240, 320)
N = 30  # frames at 30 fps -> 25 at 25 fps


def still_box(i: int):
    return (110, 60, 210, 180)


def right_box(i: int):
    """1 px to the right a frame (29 px in all: inside the first box, which the stand-in detector reports)."""
    return (110 + i, 60, 210 + i, 180)


class SkinProbe(nn.Module):
    """Stands in for the motion extractor so that its output means something: t = (x, y, area) of the skin
    pixels of the 256 crop it is given (centroid in crop pixels), no rotation, no expression, scale 1. A face
    that moves right in the crop gives a growing t_x."""

    def __init__(self):
        super().__init__()
        self.unit = nn.Parameter(torch.ones(()))

    def forward(self, x):  # (B, 3, 256, 256) in [0, 1]
        B, _, H, W = x.shape
        skin = torch.tensor(SKIN, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1) / 255
        mask = ((x - skin).abs().sum(1) < 0.25).to(x.dtype)  # (B, H, W)
        area = mask.sum((1, 2))
        cx = (mask * torch.arange(W, dtype=x.dtype, device=x.device)).sum((1, 2)) / area.clamp(min=1)
        cy = (mask * torch.arange(H, dtype=x.dtype, device=x.device)[:, None]).sum((1, 2)) / area.clamp(min=1)
        zeros = torch.zeros(B, 66, dtype=x.dtype, device=x.device)
        return MotionOutput(pitch=zeros, yaw=zeros, roll=zeros, t=torch.stack([cx, cy, area], 1) * self.unit,
                            exp=zeros[:, :63], scale=torch.ones(B, 1, dtype=x.dtype, device=x.device) * self.unit,
                            kp=zeros[:, :63])


def probe_renderer():
    renderer = tiny_renderer()
    renderer.motion = SkinProbe()
    return renderer


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    root = standin_face_weights(tmp_path_factory.mktemp("faces"), still_box(0), HW)
    return FaceDetector(root / DET_10G, root / LANDMARK_106, root / LANDMARK_203, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return {name: write_face_video(folder / f"{name}.mp4", n, fps, HW, boxes) for name, n, fps, boxes in [
        ("still", N, 30, still_box), ("right", N, 30, right_box), ("odd", 37, 30, still_box),
        ("lost", N, 30, lambda i: None if 10 <= i < 15 else still_box(i)), ("at25", 10, 25, right_box)]}


def test_a_30_fps_video_gives_25_fps_motion(detector, videos):
    """N frames at 30 fps -> round(N * 25 / 30) motion frames, every field finite, ratios per frame."""
    renderer = tiny_renderer()
    for name, n in (("still", N), ("odd", 37)):
        calls = []
        result = motion_from_video(renderer, detector, videos[name],
                                   callback=lambda d, t, calls=calls: calls.append((d, t)))
        assert isinstance(result, VideoMotion)
        assert len(result) == round(n * 25 / 30) and result.frames == n and result.source_fps == 30.0
        motion = result.motion
        shapes = {"exp": (21, 3), "scale": (1,), "t": (3,), "pitch": (1,), "yaw": (1,), "roll": (1,), "R": (3, 3)}
        for field, shape in shapes.items():
            value = getattr(motion, field)
            assert value.shape == (len(result), *shape) and value.dtype == torch.float32
            assert torch.isfinite(value).all()
        assert motion.raw is None and result.lost is None
        torch.testing.assert_close(motion.R, rotation_matrix(motion.pitch, motion.yaw, motion.roll))
        assert result.eye_ratio.shape == (len(result), 2) and result.lip_ratio.shape == (len(result), 1)
        # the stand-in face has eye openness 0.25 and lip openness 0.1 (its landmark layout)
        torch.testing.assert_close(result.eye_ratio, torch.full((len(result), 2), 0.25), atol=2e-3, rtol=0)
        torch.testing.assert_close(result.lip_ratio, torch.full((len(result), 1), 0.1), atol=2e-3, rtol=0)
        assert calls[-1] == (2 * n, 2 * n) and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_a_template_fills_raw(detector, videos):
    template = tiny_template()
    result = motion_from_video(tiny_renderer(), detector, videos["still"], template=template)
    assert result.motion.raw.shape == (25, 70)
    back = denormalize(result.motion.raw, template)
    torch.testing.assert_close(back.exp, result.motion.exp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(back.t, result.motion.t, atol=1e-5, rtol=1e-5)


def test_a_still_face_gives_a_still_motion(detector, videos):
    result = motion_from_video(probe_renderer(), detector, videos["still"])
    centre = result.motion.t[:, :2]  # t = (x, y, area) of the face in the 256 crop
    assert (centre.max(0).values - centre.min(0).values).max() < 0.05
    assert result.motion.scale.eq(1).all() and result.motion.pitch.abs().max() < 1e-4


def test_a_face_moving_right_moves_right_in_the_motion(detector, videos):
    """1 px a frame at 30 fps in a fixed crop of side s: t_x grows by 1.2 x 256 / s per 25 fps frame, and sits
    where the face centre falls in the crop; t_y stays."""
    from joyvasa.face.track import driving_box, track_face

    result = motion_from_video(probe_renderer(), detector, videos["right"], batch_size=4)
    t = result.motion.t.numpy()
    steps = np.diff(t[:, 0])
    assert (steps > 0).all()
    box = driving_box(track_face(read_video_frames(videos["right"]), detector))
    np.testing.assert_allclose(steps, 1.2 * 256 / box[2], rtol=0.1)
    assert np.ptp(t[:, 1]) < 0.2  # (H.264 noise moves the edge pixels a little)
    m_o2c = box_crop_matrices(box, 256)[0]
    for k in (0, 12, 24):  # output frame k shows source frame 1.2 k: face centre x = 160 + 1.2 k
        expected = m_o2c[:2, :2] @ [160 + 1.2 * k, 120] + m_o2c[:2, 2]
        np.testing.assert_allclose(t[k, :2], expected, atol=0.5)


def test_frames_in_memory_give_the_same_motion_as_the_file(detector, videos):
    """An IMAGE batch (float in [0, 1]) or uint8 frames with their fps read like the file they came from."""
    renderer = probe_renderer()
    from_file = motion_from_video(renderer, detector, videos["right"])
    frames = np.stack(list(read_video_frames(videos["right"])))
    from_array = motion_from_video(renderer, detector, frames, fps=30)
    from_image = motion_from_video(renderer, detector, torch.from_numpy(frames).float() / 255, fps=30.0)
    for other in (from_array, from_image):
        assert len(other) == len(from_file) and other.frames == N
        torch.testing.assert_close(other.motion.t, from_file.motion.t, atol=0, rtol=0)
        torch.testing.assert_close(other.eye_ratio, from_file.eye_ratio, atol=0, rtol=0)


def test_25_fps_video_keeps_every_frame_exactly():
    """At 25 fps the resampling is the identity, bit for bit; at 50 fps every other frame is taken."""
    values = {"t": torch.randn(10, 3), "exp": torch.randn(10, 21, 3)}
    same = resample_motion(values, 25.0)
    assert all(torch.equal(same[k], values[k]) for k in values)
    half = resample_motion(values, 50.0)
    assert torch.equal(half["t"], values["t"][0::2])
    up = resample_motion({"t": torch.tensor([[0.0], [1.0]])}, 10.0)  # 10 -> 25 fps: linear in between
    torch.testing.assert_close(up["t"][:3, 0], torch.tensor([0.0, 0.4, 0.8]))


def test_crop_none_and_box(detector, videos):
    """none: the whole frame is the network input; box: a fixed box framed like the tracked crop."""
    renderer = probe_renderer()
    whole = motion_from_video(renderer, None, videos["still"], crop="none")
    assert whole.eye_ratio is None and whole.lip_ratio is None and whole.lost is None
    # the face centre (160, 120) of the 320 x 240 frame squeezed to 256 x 256
    np.testing.assert_allclose(whole.motion.t[0, :2].numpy(), [(160.5 * 256 / 320) - 0.5, (120.5 * 256 / 240) - 0.5],
                               atol=0.5)
    boxed = motion_from_video(renderer, None, videos["still"], crop="box", box=still_box(0))
    cx, cy, side = driving_crop_box(still_box(0))
    m_o2c = box_crop_matrices((cx, cy, side), 256)[0]
    np.testing.assert_allclose(boxed.motion.t[0, :2].numpy(), m_o2c[:2, :2] @ [160, 120] + m_o2c[:2, 2], atol=0.5)
    with_detector = motion_from_video(renderer, detector, videos["still"], crop="box", box=still_box(0))
    assert with_detector.eye_ratio.shape == (25, 2)  # a detector, when given, still gives the ratios
    torch.testing.assert_close(with_detector.motion.t, boxed.motion.t)


def test_lost_face_is_reported(detector, videos, caplog):
    with caplog.at_level(logging.WARNING, logger="joyvasa"):
        result = motion_from_video(tiny_renderer(), detector, videos["lost"])
    assert "frames 10-14" in result.lost
    assert any("frames 10-14" in r.getMessage() for r in caplog.records)
    assert torch.isfinite(result.eye_ratio).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(crop="auto", detector=None), "crop auto tracks the face"),
    (dict(crop="box"), "needs a box"),
    (dict(crop="sideways"), "crop must be one of"),
    (dict(batch_size=0), "batch_size"),
    (dict(face_index=-1), "face_index"),
    (dict(fps=30), "fps is read from the video file"),
    (dict(video="missing.mp4"), "cannot read video missing.mp4: the file does not exist"),
    (dict(video=np.zeros((3, 16, 16, 3), np.uint8)), "need their frame rate"),
    (dict(video=np.zeros((3, 16, 16), np.uint8), fps=25), r"\(N, H, W, 3\)"),
    (dict(video=np.zeros((0, 16, 16, 3), np.uint8), fps=25), "no frames"),
    (dict(crop="box", box=(400, 300, 500, 400)), "lies outside"),
])
def test_bad_inputs_are_refused_before_any_work(detector, videos, kwargs, message):
    calls = []

    class Refuse(nn.Module):
        def forward(self, x):
            calls.append(x)
            raise AssertionError("the motion extractor must not run")

    renderer = tiny_renderer()
    renderer.motion = Refuse()
    renderer.motion.p = nn.Parameter(torch.ones(()))
    video = kwargs.pop("video", videos["still"])
    det = kwargs.pop("detector", detector)
    with pytest.raises(ValueError, match=message):
        motion_from_video(renderer, det, video, **kwargs)
    assert calls == []


def test_no_face_anywhere_is_the_clear_error(detector, tmp_path):
    path = write_face_video(tmp_path / "empty.mp4", 5, 25, HW, lambda i: None)
    with pytest.raises(ValueError, match="no face found in any of the 5 frames of the video"):
        motion_from_video(tiny_renderer(), detector, path)


# ------------------------------------------------------------------------------------------ motion files

def test_ratios_are_saved_and_read_back(detector, videos, tmp_path):
    result = motion_from_video(tiny_renderer(), detector, videos["still"])
    path = save_motion(tmp_path / "m.safetensors", result.motion, eye_ratio=result.eye_ratio,
                       lip_ratio=result.lip_ratio)
    motion, info = load_motion(path)
    assert torch.equal(info["eye_ratio"], result.eye_ratio) and torch.equal(info["lip_ratio"], result.lip_ratio)
    assert torch.equal(motion.exp, result.motion.exp)
    plain = save_motion(tmp_path / "plain.safetensors", result.motion)  # without them: as before
    _, plain_info = load_motion(plain)
    assert "eye_ratio" not in plain_info and "lip_ratio" not in plain_info
    with pytest.raises(ValueError, match=r"eye_ratio has shape \(3, 2\)"):
        save_motion(tmp_path / "bad.safetensors", result.motion, eye_ratio=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="lip_ratio holds NaN"):
        save_motion(tmp_path / "bad.safetensors", result.motion, lip_ratio=torch.full((25, 1), float("nan")))
    assert not (tmp_path / "bad.safetensors").exists()
    template = write_motion_file(tmp_path / "m.pkl", result.motion, eye_ratio=result.eye_ratio,
                                 lip_ratio=result.lip_ratio)
    _, pkl_info = import_template(template)
    torch.testing.assert_close(pkl_info["c_eyes"], result.eye_ratio, atol=0, rtol=0)
    torch.testing.assert_close(pkl_info["c_lip"], result.lip_ratio, atol=0, rtol=0)


def test_damaged_ratio_tensors_are_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from joyvasa.motion import MotionSequence

    T = 4
    pitch, yaw, roll = torch.zeros(T, 1), torch.zeros(T, 1), torch.zeros(T, 1)
    motion = MotionSequence(None, torch.zeros(T, 21, 3), torch.ones(T, 1), torch.zeros(T, 3), pitch, yaw, roll,
                            rotation_matrix(pitch, yaw, roll))
    path = save_motion(tmp_path / "m.safetensors", motion, eye_ratio=torch.ones(T, 2))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    tensors["eye_ratio"] = torch.ones(T, 3)
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(MotionFileError, match=r"eye_ratio has shape \(4, 3\)"):
        load_motion(path)


# --------------------------------------------------------------------------------------------------- CLI

def _run(*args, weights: Path | None = None):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    if weights is not None:
        env["JOYVASA_WEIGHTS_DIR"] = str(weights)
    return subprocess.run([sys.executable, "-m", "joyvasa", "motion", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def cli_weights(kit, standin_weights, tmp_path_factory):
    """Stand-in renderer weights (real sizes) and the face-following ONNX stand-ins, in a folder of this module's
    own (the renderer files are linked, so the shared stand-in folder is not changed)."""
    shared = standin_weights(list(renderer_files("human").values()))
    root = tmp_path_factory.mktemp("motion_cli_weights")
    for relpath in renderer_files("human").values():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(shared / relpath, root / relpath)
    return standin_face_weights(root, still_box(0), HW)


@pytest.mark.slow
def test_cli_writes_a_motion_file_that_loads(cli_weights, tmp_path):
    video = write_face_video(tmp_path / "talk.mp4", 6, 30, HW, right_box)
    out = tmp_path / "out" / "talk.safetensors"
    result = _run("--video", video, "--out", out, "--no-download", "--device", "cpu", weights=cli_weights)
    assert result.returncode == 0, result.stderr[-3000:]
    motion, info = load_motion(out)
    assert len(motion) == 5 and info["fps"] == 25.0 and info["source"] == "talk.mp4"
    assert float(info["source_fps"]) == 30.0 and info["source_frames"] == "6" and info["crop"] == "auto"
    assert info["eye_ratio"].shape == (5, 2) and info["lip_ratio"].shape == (5, 1)
    assert torch.isfinite(motion.exp).all() and torch.isfinite(motion.t).all()
    assert "6 frames at 30 fps" in result.stderr and "5 frames at 25 fps" in result.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["talk.safetensors"]  # no leftovers


@pytest.mark.parametrize("args, message", [
    (["--video", "{tmp}/missing.mp4", "--out", "{tmp}/m.safetensors"], "cannot read video"),
    (["--video", "{tmp}/notes.mp4", "--out", "{tmp}/m.safetensors"], "not a video file"),
    (["--video", "{tmp}/clip.mp4", "--out", "{tmp}/m.json"], "must end in .safetensors or .pkl"),
    (["--video", "{tmp}/clip.mp4", "--out", "{tmp}/m.safetensors", "--crop", "box"], "needs a box"),
    (["--video", "{tmp}/clip.mp4", "--out", "{tmp}/m.safetensors", "--crop", "box", "--box", "1,2,3"],
     "four numbers"),
    (["--video", "{tmp}/clip.mp4", "--out", "{tmp}/m.safetensors", "--box", "1,2,3,4"], "--crop box only"),
])
def test_cli_bad_inputs_give_one_error_and_write_nothing(tmp_path, args, message):
    (tmp_path / "notes.mp4").write_text("not a video")
    write_face_video(tmp_path / "clip.mp4", 2, 25, (32, 32), lambda i: None)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = _run(*[a.format(tmp=tmp_path) for a in args], "--no-download", weights=tmp_path / "no_weights")
    assert result.returncode == 1
    assert result.stderr.startswith("error:") and message in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ------------------------------------------------------------------------------------------ pretend GPU

def test_motion_from_video_on_the_pretend_gpu(detector, videos, monkeypatch):
    """Models on the device, frames moved to it batch by batch; the motion equals the CPU's."""
    from tests.pretend_gpu import is_pretend, on_pretend_gpu

    expected = motion_from_video(tiny_renderer(), detector, videos["at25"], batch_size=4)
    with on_pretend_gpu(monkeypatch) as device:
        renderer = tiny_renderer().to(device)
        assert is_pretend(next(renderer.parameters()))
        result = motion_from_video(renderer, detector, videos["at25"], batch_size=4)
    assert not is_pretend(result.motion.exp)  # the motion comes back on the CPU
    for field in ("exp", "t", "scale", "pitch", "yaw", "roll", "R"):
        torch.testing.assert_close(getattr(result.motion, field), getattr(expected.motion, field))
    torch.testing.assert_close(result.eye_ratio, expected.eye_ratio)
