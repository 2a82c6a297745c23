"""The video nodes without ComfyUI: the VIDEO helpers (with a fake VideoFromFile and with the video API absent),
Motion from Video (an IMAGE batch, a VIDEO backed by a file), Dub Video, Render to File's VIDEO output, and bad
inputs refused before any work. Tiny renderer configs, stand-in face models, short synthetic videos."""
from __future__ import annotations

import io
import math
import sys
import types
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from joyvasa.testing.tiny import tiny_generator, tiny_renderer
from joyvasa.testing.videos import face_frame, standin_face_weights, write_face_video
from tests.pack import PACK

nodes = PACK.nodes
runtime = nodes.runtime
video_nodes = nodes.video

HW = (96, 128)  # small synthetic frames (H, W), even for H.264
BOX = (40.0, 20.0, 88.0, 76.0)  # where the face is drawn and where the stand-in detector reports it
FPS_VIDEO = 30
SPEECH_S = 0.05  # a few frames of speech: rendering dominates the dub tests' time


def _speech(seconds: float, rate: int = 16000) -> dict:
    t = torch.arange(int(seconds * rate)) / rate
    return {"waveform": (0.2 * torch.sin(2 * math.pi * 220 * t))[None, None], "sample_rate": rate}


class FakeVideoFromFile:
    """Like comfy_api's VideoFromFile: reads from a path or a BytesIO, can save itself."""

    def __init__(self, file):
        self._file = file

    def get_stream_source(self):
        if isinstance(self._file, io.BytesIO):
            self._file.seek(0)
        return self._file


class FakeVideoFromComponents:
    """Like VideoFromComponents: no file behind it; save_to writes one."""

    def __init__(self, source: Path):
        self.source, self.saved = source, []

    def save_to(self, path, format=None, codec=None, metadata=None):
        self.saved.append(path)
        Path(path).write_bytes(self.source.read_bytes())


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 30 fps, 20-frame synthetic face video with sound."""
    path = tmp_path_factory.mktemp("video") / "face.mp4"
    return write_face_video(path, 20, FPS_VIDEO, HW, lambda i: BOX, audio=(_speech(0.7)["waveform"][0], 16000))


@pytest.fixture(scope="module")
def renderer():
    return runtime.ModelHandle(tiny_renderer(), torch.device("cpu"), species="human", dtype=torch.float32)


@pytest.fixture(scope="module")
def motion_model():
    return runtime.ModelHandle(tiny_generator(), torch.device("cpu"))


@pytest.fixture(scope="module")
def face_detector(tmp_path_factory):
    from joyvasa.face.detect import DET_10G, LANDMARK_106, LANDMARK_203

    root = standin_face_weights(tmp_path_factory.mktemp("faces"), BOX, HW)
    found = PACK.joyvasa.pipeline.load_detector("human", {name: root / name for name in
                                                         (DET_10G, LANDMARK_106, LANDMARK_203)})
    return nodes.types.FaceDetectorHandle("insightface", found, found.det_thresh)


@pytest.fixture()
def output_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "output_directory", lambda: tmp_path / "output")
    return tmp_path / "output"


# -------------------------------------------------------------------------------------------- VIDEO helpers

def test_video_path_of_a_file_backed_video_is_its_file(clip):
    assert video_nodes.video_path(FakeVideoFromFile(str(clip))) == clip
    with video_nodes.readable_video(FakeVideoFromFile(str(clip))) as path:
        assert path == clip
    assert clip.is_file()  # never removed: it is the user's file


def test_video_path_writes_bytes_and_components_once_to_a_temp_file(clip, tmp_path):
    copy = video_nodes.video_path(FakeVideoFromFile(io.BytesIO(clip.read_bytes())), folder=tmp_path)
    assert copy.parent == tmp_path and copy.suffix == ".mp4" and copy.read_bytes() == clip.read_bytes()
    components = FakeVideoFromComponents(clip)
    with video_nodes.readable_video(components) as path:
        assert path.is_file() and len(components.saved) == 1 and path.suffix == ".mp4"
    assert not path.exists()  # the copy made for the node is removed afterwards
    assert not [p for p in path.parent.glob(".joyvasa_video_*")]  # no partial leftovers


def test_video_path_refuses_what_is_no_video(tmp_path):
    with pytest.raises(ValueError, match="no VIDEO is connected"):
        video_nodes.video_path(None)
    with pytest.raises(ValueError, match="expected a VIDEO"):
        video_nodes.video_path(object())
    with pytest.raises(ValueError, match="does not exist"):
        video_nodes.video_path(FakeVideoFromFile(str(tmp_path / "gone.mp4")))
    with pytest.raises(ValueError, match="not a readable video"):
        video_nodes.video_path(FakeVideoFromFile(io.BytesIO(b"not a video")), folder=tmp_path)
    assert not list(tmp_path.iterdir())


def test_file_video_without_and_with_the_video_api(monkeypatch, clip, caplog):
    assert video_nodes.video_from_file_class() is None  # no ComfyUI here
    with caplog.at_level("INFO", logger="joyvasa.nodes"):
        assert video_nodes.file_video(clip) is None
    assert "no video API" in caplog.text
    api = types.ModuleType("comfy_api.input_impl")
    api.VideoFromFile = FakeVideoFromFile
    monkeypatch.setitem(sys.modules, "comfy_api", types.ModuleType("comfy_api"))
    monkeypatch.setitem(sys.modules, "comfy_api.input_impl", api)
    video = video_nodes.file_video(clip)
    assert isinstance(video, FakeVideoFromFile) and video.get_stream_source() == str(clip)


def test_image_frames_converts_each_frame_when_read():
    images = torch.rand(5, 8, 6, 3, generator=torch.Generator().manual_seed(0))
    frames = video_nodes.ImageFrames(images)
    assert len(frames) == 5
    assert frames[2].dtype == np.uint8 and frames[2].shape == (8, 6, 3)
    assert np.array_equal(frames[2], (images[2] * 255).round().to(torch.uint8).numpy())
    with pytest.raises(ValueError, match="IMAGE batch is empty"):
        video_nodes.ImageFrames(torch.zeros(0, 8, 6, 3))
    with pytest.raises(ValueError, match="expected an IMAGE batch"):
        video_nodes.ImageFrames(torch.zeros(8, 6, 3))


# ------------------------------------------------------------------------------------------- Motion from Video

def _extract(renderer, face_detector=None, crop="auto", **inputs):
    return video_nodes.JoyVASAMotionFromVideo().extract(renderer, crop, 0, face_detector=face_detector, **inputs)


def test_motion_from_a_file_backed_video(renderer, face_detector, clip):
    motion, preview = _extract(renderer, face_detector, video=FakeVideoFromFile(str(clip)))
    assert motion.fps == 25.0 and len(motion) == round(20 * 25 / FPS_VIDEO)  # resampled from the video's 30 fps
    assert motion.motion.exp.shape == (len(motion), 21, 3) and torch.isfinite(motion.motion.exp).all()
    assert motion.info["source"] == "face.mp4" and motion.info["source_fps"] == FPS_VIDEO
    assert "lost" not in motion.info  # the face is in every frame
    assert motion.waveform is not None and motion.waveform.shape[0] == 1 and motion.sample_rate > 0
    assert motion.audio_delay == 0.0  # the video's own sound plays in sync with its frames
    assert preview.shape == (video_nodes.PREVIEW_FRAMES, video_nodes.PREVIEW_SIDE, video_nodes.PREVIEW_SIDE, 3)
    # cropped around the face (black where the box leaves the frame), not the whole frame scaled down
    _, whole_frames = _extract(renderer, None, "none", video=FakeVideoFromFile(str(clip)))
    assert not torch.allclose(preview, whole_frames, atol=0.05)


def test_measured_ratios_are_saved_with_the_measured_motion_only(renderer, face_detector, clip, output_dir,
                                                                monkeypatch):
    """Save Motion writes the eye and lip openness of Motion from Video; an edited motion no longer matches
    them, so its file has none; Load Motion hands stored ratios on."""
    from joyvasa.direct.motion_file import load_motion

    motion, _ = _extract(renderer, face_detector, video=FakeVideoFromFile(str(clip)))
    eye, lip = motion.measured_ratios()
    assert eye.shape == (len(motion), 2) and lip.shape == (len(motion), 1)
    save = PACK.nodes.motion_files.JoyVASASaveMotion()
    (saved,) = save.save(motion, "measured", "safetensors")
    _, info = load_motion(saved)
    assert torch.equal(info["eye_ratio"], eye) and torch.equal(info["lip_ratio"], lip)

    edited = replace(motion, motion=replace(motion.motion, yaw=motion.motion.yaw + 5.0))  # what a motion node does
    assert edited.measured_ratios() == (None, None)
    (saved_edit,) = save.save(edited, "edited", "safetensors")
    assert "eye_ratio" not in load_motion(saved_edit)[1]

    monkeypatch.setattr(runtime, "input_path", lambda name: Path(saved))
    loaded, _, _ = PACK.nodes.motion_files.JoyVASALoadMotion().load("measured.safetensors")
    assert torch.equal(loaded.measured_ratios()[0], eye)


def test_motion_from_an_image_batch_equals_the_file(renderer, face_detector, clip):
    from joyvasa.video_reader import read_video_frames

    frames = np.stack(list(read_video_frames(clip)))
    images = torch.from_numpy(frames).float() / 255
    from_images, preview = _extract(renderer, face_detector, images=images, fps=float(FPS_VIDEO))
    from_file, _ = _extract(renderer, face_detector, video=FakeVideoFromFile(str(clip)))
    assert from_images.waveform is None and from_images.info["source"] == "20 IMAGE frames"
    assert len(from_images) == len(from_file)
    assert torch.allclose(from_images.motion.exp, from_file.motion.exp, atol=1e-5)
    assert preview.shape[0] == video_nodes.PREVIEW_FRAMES


def test_motion_from_video_crop_none_and_box_need_no_detector(renderer, clip):
    none, _ = _extract(renderer, None, "none", video=FakeVideoFromFile(str(clip)))
    boxed, preview = _extract(renderer, None, "box", video=FakeVideoFromFile(str(clip)), box_x=40, box_y=20,
                              box_width=48, box_height=56)
    assert len(none) == len(boxed) and not torch.equal(none.motion.exp, boxed.motion.exp)
    assert preview.shape[1:] == (video_nodes.PREVIEW_SIDE, video_nodes.PREVIEW_SIDE, 3)


def test_motion_from_video_bad_inputs_fail_before_work(renderer, face_detector, clip):
    video = FakeVideoFromFile(str(clip))
    with pytest.raises(ValueError, match="not neither"):
        _extract(renderer, face_detector)
    with pytest.raises(ValueError, match="not both"):
        _extract(renderer, face_detector, video=video, images=torch.rand(3, 8, 8, 3))
    with pytest.raises(ValueError, match="crop auto tracks the face"):
        _extract(renderer, None, "auto", video=video)
    with pytest.raises(ValueError, match="fps must be a positive number"):
        _extract(renderer, face_detector, images=torch.rand(3, 8, 8, 3), fps=0.0)
    with pytest.raises(ValueError, match="insightface"):
        _extract(renderer, nodes.types.FaceDetectorHandle("xpose", None, 0.0), video=video)
    with pytest.raises(ValueError, match="cannot read video"):
        _extract(renderer, face_detector, video=FakeVideoFromFile(str(Path(__file__))))


# --------------------------------------------------------------------------------------------------- Dub Video

DUB_ARGS = dict(regions="lips", audio_longer="pingpong", video_longer="trim", cfg_scale=2.8, seed=1,
                crop_smoothing=2.0, batch_size=4, filename_prefix="video/dub")


def test_dub_video_writes_one_mp4_and_returns_a_video_of_it(renderer, motion_model, face_detector, clip, output_dir,
                                                            monkeypatch):
    monkeypatch.setattr(video_nodes, "video_from_file_class", lambda: FakeVideoFromFile)
    result = video_nodes.JoyVASADubVideo().dub(renderer, motion_model, face_detector, FakeVideoFromFile(str(clip)),
                                               _speech(SPEECH_S), **DUB_ARGS)
    video, path = result["result"]
    written = list(output_dir.rglob("*.mp4"))
    assert written == [Path(path)] and Path(path).name == "dub_00001_.mp4"
    assert isinstance(video, FakeVideoFromFile) and video.get_stream_source() == path
    assert result["ui"]["images"] == [{"filename": "dub_00001_.mp4", "subfolder": "video", "type": "output"}]
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == FPS_VIDEO  # the video's own frame rate
        assert (stream.codec_context.height, stream.codec_context.width) == HW
        assert container.streams.audio
        frames = sum(1 for _ in container.decode(stream))
    motion_frames = (int(SPEECH_S * 16000) + 1920) // 640  # JoyVASA's count at 25 fps (2 lead + 1 tail frames)
    assert frames == round(motion_frames * FPS_VIDEO / 25)  # trim: the speech's length at the video's rate


def test_dub_video_with_a_motion_needs_no_sampling(renderer, face_detector, clip, output_dir):
    motion = nodes.types.MotionClip(PACK.joyvasa.motion.MotionSequence(
        None, torch.zeros(5, 21, 3), torch.ones(5, 1), torch.zeros(5, 3), *(torch.zeros(5, 1) for _ in range(3)),
        torch.eye(3).expand(5, 3, 3).clone()), None, 0, 0.0)
    result = video_nodes.JoyVASADubVideo().dub(renderer, None, face_detector, FakeVideoFromFile(str(clip)),
                                               _speech(0.2), **{**DUB_ARGS, "audio_longer": "loop"}, motion=motion)
    assert result["result"][0] is None  # no video API here: the VIDEO output is empty, the file is written
    with av.open(result["result"][1]) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6  # 5 motion frames at 25 fps -> 6 at 30 fps


def test_dub_video_bad_inputs_fail_before_work(renderer, motion_model, face_detector, clip, output_dir):
    node = video_nodes.JoyVASADubVideo()
    assert "does not name a file inside the output folder" in node.VALIDATE_INPUTS(filename_prefix="..")
    assert node.VALIDATE_INPUTS(filename_prefix="video/dub") is True
    with pytest.raises(ValueError, match="no VIDEO is connected"):
        node.dub(renderer, motion_model, face_detector, None, _speech(0.5), **DUB_ARGS)
    with pytest.raises(ValueError, match="filename_prefix"):
        node.dub(renderer, motion_model, face_detector, FakeVideoFromFile(str(clip)), _speech(0.5),
                 **{**DUB_ARGS, "filename_prefix": ""})
    with pytest.raises(ValueError, match="regions must be one of"):
        node.dub(renderer, motion_model, face_detector, FakeVideoFromFile(str(clip)), _speech(0.5),
                 **{**DUB_ARGS, "regions": "nose"})
    with pytest.raises(ValueError, match="connect the face detector"):
        node.dub(renderer, motion_model, None, FakeVideoFromFile(str(clip)), _speech(0.5), **DUB_ARGS)
    xpose = nodes.types.FaceDetectorHandle("xpose", None, 0.0)
    with pytest.raises(ValueError, match="insightface"):
        node.dub(renderer, motion_model, xpose, FakeVideoFromFile(str(clip)), _speech(0.5), **DUB_ARGS)
    with pytest.raises(ValueError, match="expected an AUDIO"):
        node.dub(renderer, motion_model, face_detector, FakeVideoFromFile(str(clip)), None, **DUB_ARGS)
    with pytest.raises(ValueError, match="cannot read video"):
        node.dub(renderer, motion_model, face_detector, FakeVideoFromFile(str(Path(__file__))), _speech(0.5),
                 **DUB_ARGS)
    assert not output_dir.exists() or not list(output_dir.rglob("*"))  # nothing written, no leftovers


# ------------------------------------------------------------------------------------- Render to File's VIDEO

def test_render_to_file_returns_its_file_as_a_video_after_the_path(renderer, output_dir, monkeypatch):
    node = nodes.render.JoyVASARenderToFile
    assert node.RETURN_TYPES == ("STRING", "VIDEO") and node.RETURN_NAMES[0] == "path"
    source, _ = nodes.source.JoyVASAPrepareSource().prepare(renderer, torch.rand(1, 64, 64, 3), "none", 2.3, 0.0,
                                                            -0.125, 0, 1280)
    motion = nodes.types.MotionClip(PACK.joyvasa.motion.MotionSequence(
        None, torch.zeros(3, 21, 3), torch.ones(3, 1), torch.zeros(3, 3), *(torch.zeros(3, 1) for _ in range(3)),
        torch.eye(3).expand(3, 3, 3).clone()), None, 0, 0.0)
    driving = {k: v[1]["default"] for k, v in nodes.render.DRIVING_INPUTS.items()}
    monkeypatch.setattr(video_nodes, "video_from_file_class", lambda: FakeVideoFromFile)
    monkeypatch.setattr(nodes.render, "file_video", video_nodes.file_video)
    out = node().render(renderer, source, motion, paste_back=True, batch_size=2, filename_prefix="r", crf=23,
                        **driving)
    path, video = out["result"]
    assert Path(path).is_file() and video.get_stream_source() == path


def test_face_frame_is_where_the_detector_reports(face_detector):
    """The fixture's premise: the stand-in detector finds the drawn face at BOX."""
    face = face_detector.detector.find(face_frame(HW, BOX))
    assert np.allclose(face.box[:4], BOX, atol=1.0)


def test_video_nodes_on_the_pretend_gpu(face_detector, clip, output_dir, monkeypatch):
    """Motion from Video and Dub Video with the renderer on a (pretend) GPU: the CPU's motion, one mp4 written."""
    from tests.pretend_gpu import is_pretend, on_pretend_gpu

    cpu_renderer = runtime.ModelHandle(tiny_renderer(), torch.device("cpu"), species="human", dtype=torch.float32)
    expected, _ = _extract(cpu_renderer, face_detector, video=FakeVideoFromFile(str(clip)))
    with on_pretend_gpu(monkeypatch) as device:
        renderer = runtime.ModelHandle(tiny_renderer(), device, species="human", dtype=torch.float32)
        motion, preview = _extract(renderer, face_detector, video=FakeVideoFromFile(str(clip)))
        assert not is_pretend(preview)
        m = motion.motion
        short = replace(motion, motion=type(m)(None, *(getattr(m, f)[:3] for f in ("exp", "scale", "t", "pitch",
                                                                                   "yaw", "roll", "R"))))
        result = video_nodes.JoyVASADubVideo().dub(renderer, None, face_detector, FakeVideoFromFile(str(clip)),
                                                   _speech(0.1), **DUB_ARGS, motion=short)
    exp = motion.motion.exp.cpu() if is_pretend(motion.motion.exp) else motion.motion.exp
    assert torch.allclose(exp, expected.motion.exp, atol=1e-5)
    assert Path(result["result"][1]).is_file()
