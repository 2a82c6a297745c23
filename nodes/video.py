"""ComfyUI's VIDEO type, and the video nodes: Motion from Video (a driving video -> MOTION) and Dub Video (new speech
on the face of a video -> an mp4 in the output folder).

VIDEO is an object of ComfyUI's video API (`VideoInput`: `VideoFromFile` for a file or BytesIO, `VideoFromComponents`
for frames in memory). That API is imported only when used, inside try/except, so the pack still loads on ComfyUI
versions without it (and in tests without ComfyUI): the VIDEO outputs are then None, with a log line saying why.
The library reads videos from files, so a VIDEO that is not a file on disk is written once to ComfyUI's temp folder.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import logging
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import runtime
from .types import CATEGORY, FACE_DETECTOR, MOTION, MOTION_MODEL, RENDERER, MeasuredRatios, MotionClip

log = logging.getLogger("joyvasa.nodes")

VIDEO = "VIDEO"  # ComfyUI's core video type (comfy_api ... VideoInput)
# Where ComfyUI's video implementations live: the compatibility module the core nodes import (v0.3.3x up to v0.8),
# then the versioned API of later releases.
VIDEO_API_MODULES = (("comfy_api.input_impl", "VideoFromFile"), ("comfy_api.latest", "InputImpl.VideoFromFile"))
# PyAV container format name -> the suffix a copy of such a stream is written under
CONTAINER_SUFFIXES = {"mov": ".mp4", "mp4": ".mp4", "matroska": ".mkv", "webm": ".webm", "avi": ".avi",
                      "gif": ".gif"}


def video_from_file_class():
    """ComfyUI's VideoFromFile class, or None when this ComfyUI has no video API (or outside ComfyUI)."""
    for module_name, attribute in VIDEO_API_MODULES:
        try:
            found = importlib.import_module(module_name)
            for part in attribute.split("."):
                found = getattr(found, part)
        except Exception:  # noqa: BLE001  (an older or partial layout: try the next one)
            continue
        return found
    return None


def file_video(path: str | Path):
    """A core VIDEO backed by the file at `path` (ComfyUI's VideoFromFile), or None when the API is missing."""
    cls = video_from_file_class()
    if cls is None:
        log.info("JoyVASA: this ComfyUI has no video API (comfy_api VideoFromFile), so the VIDEO output is empty; "
                 "the file is at %s", path)
        return None
    return cls(str(path))


def temp_directory() -> Path:
    """ComfyUI's temp folder (emptied when ComfyUI starts), or the system's outside ComfyUI."""
    try:
        folder_paths = importlib.import_module("folder_paths")
        return Path(folder_paths.get_temp_directory())
    except (ImportError, AttributeError):
        return Path(tempfile.gettempdir())


def _stream_source(video):
    """What a VideoFromFile-like VIDEO reads from (a path string or a BytesIO), or None for other videos."""
    getter = getattr(video, "get_stream_source", None)
    if callable(getter):
        return getter()
    return getattr(video, "_VideoFromFile__file", None)  # VideoFromFile before get_stream_source existed


def _container_suffix(data: io.BytesIO) -> str:
    import av

    data.seek(0)
    try:
        with av.open(data, mode="r") as container:
            name = container.format.name.split(",")[0]
    except (av.FFmpegError, ValueError) as err:
        raise ValueError(f"the VIDEO input holds data that is not a readable video ({err}); load it with Load "
                         "Video") from None
    finally:
        data.seek(0)
    return CONTAINER_SUFFIXES.get(name, ".mp4")


def video_path(video, folder: str | Path | None = None) -> Path:
    """The file a VIDEO can be read from: a VideoFromFile's own file when it is one on disk; otherwise (a BytesIO
    source, VideoFromComponents, ...) the video written once to a new file in `folder` (default ComfyUI's temp
    folder). ValueError for something that is not a video."""
    if video is None:
        raise ValueError("no VIDEO is connected; connect one, e.g. from Load Video")
    source = _stream_source(video)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"the VIDEO's file {path} does not exist (any more); load the video again")
        return path
    from ..joyvasa.files import AtomicFile

    target_folder = Path(folder) if folder is not None else temp_directory()
    if isinstance(source, io.BytesIO):
        target = target_folder / f"joyvasa_video_{uuid.uuid4().hex}{_container_suffix(source)}"
        with AtomicFile(target) as tmp:
            tmp.write_bytes(source.getvalue())
        return target
    if not callable(getattr(video, "save_to", None)):
        raise ValueError(f"expected a VIDEO (e.g. from Load Video or Create Video), got {type(video).__name__}")
    target = target_folder / f"joyvasa_video_{uuid.uuid4().hex}.mp4"
    with AtomicFile(target) as tmp:
        video.save_to(str(tmp))
    return target


@contextlib.contextmanager
def readable_video(video):
    """`with readable_video(video) as path:` the VIDEO as a file while the block runs; a copy written for it
    (see `video_path`) is removed afterwards."""
    own_file = isinstance(_stream_source(video), str | Path)
    path = video_path(video)
    try:
        yield path
    finally:
        if not own_file:
            path.unlink(missing_ok=True)


class ImageFrames(Sequence):
    """A ComfyUI IMAGE batch (B, H, W, C) float in [0, 1] seen as a sequence of (H, W, 3) uint8 RGB frames, each
    converted when read (no uint8 copy of the whole clip)."""

    def __init__(self, images: torch.Tensor):
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (3, 4):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"expected an IMAGE batch (frames, height, width, 3), got {shape}")
        if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
            raise ValueError(f"the IMAGE batch is empty ({tuple(images.shape)}); connect the frames of a video")
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        rgb = self.images[index, :, :, :3].detach().float().cpu().clamp(0, 1)
        return (rgb * 255).round().to(torch.uint8).numpy()


def check_fps(fps) -> float:
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number of frames per second (the IMAGE batch's frame rate), "
                         f"got {fps!r}")
    return float(fps)


# ------------------------------------------------------------------------------------------------------- nodes

def _video_name(video, path: Path) -> str:
    """A short name of the VIDEO for messages and motion info: its file's name, or 'a VIDEO' for a temp copy."""
    return path.name if isinstance(_stream_source(video), str | Path) else "a VIDEO"


def _human_detector(face_detector):
    """The insightface detector of a FACE_DETECTOR handle; ValueError for X-Pose (it cannot track a video)."""
    if face_detector is None:
        return None
    if face_detector.kind != "insightface":
        raise ValueError("video nodes track a human face: load the face detector as insightface (human); X-Pose "
                         "(animal) has no video tracking")
    return face_detector.detector


class JoyVASADubVideo:
    DESCRIPTION = ("Dubs a video with new speech: the face in every frame is re-rendered so its lips (or its whole "
                   "expression, or also its head) follow the speech, the rest of each frame stays as it was. The "
                   "frames stream into an mp4 in ComfyUI's output folder (memory stays flat however long the "
                   "video); the video keeps its frame rate and size.")
    CATEGORY = CATEGORY
    FUNCTION = "dub"
    OUTPUT_NODE = True
    RETURN_TYPES = (VIDEO, "STRING")
    RETURN_NAMES = ("video", "path")
    OUTPUT_TOOLTIPS = ("The dubbed mp4 as a VIDEO (for Save Video or another video node); empty on ComfyUI "
                       "without video support.", "Path of the written mp4.")

    @classmethod
    def INPUT_TYPES(cls):
        from ..joyvasa.pipeline.dub import AUDIO_LONGER, DUB_REGIONS, VIDEO_LONGER, DubOptions
        from .motion import JoyVASASampleMotion
        from .render import OUTPUT_INPUTS

        sample = JoyVASASampleMotion.INPUT_TYPES()["required"]
        return {"required": {
            "renderer": (RENDERER, {"tooltip": "From JoyVASA Load Renderer (human)."}),
            "motion_model": (MOTION_MODEL, {"tooltip": "From JoyVASA Load Motion Generator (unused when a motion "
                                                       "is connected)."}),
            "face_detector": (FACE_DETECTOR, {"tooltip": "From JoyVASA Load Face Detector (insightface): finds and "
                                                         "tracks the face in every frame."}),
            "video": (VIDEO, {"tooltip": "The video to dub, e.g. from Load Video."}),
            "audio": ("AUDIO", {"tooltip": "The new speech, e.g. from Load Audio."}),
            "regions": (list(DUB_REGIONS), {
                "default": DubOptions.regions,
                "tooltip": "What follows the speech: lips only (the rest is the video's own face); expression = "
                           "also eyes, brows and cheeks; all = also the head's movement."}),
            "audio_longer": (list(AUDIO_LONGER), {
                "default": DubOptions.audio_longer,
                "tooltip": "When the speech outlasts the video: pingpong plays it forward then backward (no jump "
                           "cut), loop starts it again, hold freezes its last frame."}),
            "video_longer": (list(VIDEO_LONGER), {
                "default": DubOptions.video_longer,
                "tooltip": "When the video outlasts the speech: trim cuts it at the speech's end; keep plays the "
                           "rest unchanged with its own sound."}),
            "cfg_scale": sample["cfg_scale"],
            "seed": sample["seed"],
            "crop_smoothing": ("FLOAT", {
                "default": DubOptions.crop_smoothing, "min": 0.0, "max": 100.0, "step": 0.5,
                "tooltip": "Steadies the face crop over time (Gaussian sigma in frames): larger is steadier but "
                           "lags fast moves; 0 = a crop per frame as found."}),
            "batch_size": OUTPUT_INPUTS["batch_size"],
            "filename_prefix": ("STRING", {"default": "video/JoyVASA_dub",
                                           "tooltip": "Output file name prefix (a numbered .mp4 is added)."}),
        }, "optional": {
            "motion": (MOTION, {"tooltip": "Optional 25 fps motion to use instead of sampling one from the speech "
                                           "(e.g. Sample Motion edited by the motion nodes)."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix):
        return runtime.validate_filename_prefix(filename_prefix)

    def dub(self, renderer, motion_model, face_detector, video, audio, regions, audio_longer, video_longer, cfg_scale,
            seed, crop_smoothing, batch_size, filename_prefix, motion=None):
        from ..joyvasa.files import check_output_path
        from ..joyvasa.motion.constants import FPS
        from ..joyvasa.pipeline import MotionOptions
        from ..joyvasa.pipeline.dub import DubOptions, dub_video
        from ..joyvasa.video_reader import probe_video
        from .motion import audio_input

        detector = _human_detector(face_detector)
        if detector is None:
            raise ValueError("connect the face detector (JoyVASA Load Face Detector, insightface): dubbing tracks "
                             "the face through every frame")
        if renderer.info["species"] != "human":
            raise ValueError("dubbing needs the human renderer: load JoyVASA Load Renderer with species human")
        if motion is not None and not isinstance(motion, MotionClip):
            raise ValueError(f"motion must be a JoyVASA MOTION, got {type(motion).__name__}")
        if motion is not None and motion.fps != FPS:
            raise ValueError(f"the motion runs at {motion.fps:g} fps; Dub Video takes JoyVASA's {FPS} fps motion")
        options = DubOptions(regions=regions, audio_longer=audio_longer, video_longer=video_longer,
                             crop_smoothing=crop_smoothing, det_thresh=face_detector.det_thresh,
                             motion=MotionOptions(cfg_scale=cfg_scale, seed=seed), batch_size=batch_size)
        waveform, rate = audio_input(audio)
        out = check_output_path(runtime.output_path(filename_prefix, ".mp4"), ".mp4")
        models = (renderer,) if motion is not None else (renderer, motion_model)
        with readable_video(video) as path:
            frames = probe_video(path).frames  # a clear error for a file that is no video, before loading models
            tracking, rendering = runtime.Progress(frames), runtime.Progress()

            def track_step(done: int) -> None:
                tracking(done, frames)

            def frame_step(done: int, total: int) -> None:
                rendering(done, total)
                runtime.throw_if_interrupted()  # Cancel between batches

            with runtime.using(*models) as loaded:
                renderer_model, generator = (loaded, None) if motion is not None else loaded
                result = dub_video(renderer_model, generator, detector, path, waveform, rate, out, options,
                                   motion=None if motion is None else motion.motion,
                                   motion_callback=runtime.Progress().sampling_step, frame_callback=frame_step,
                                   track_callback=track_step)
        if result.lost:
            log.warning("JoyVASA Dub Video: %s", result.lost)
        folder, name = runtime.output_folder_and_name(result.path)
        return {"ui": {"images": [{"filename": name, "subfolder": folder, "type": "output"}], "animated": (True,)},
                "result": (file_video(result.path), str(result.path))}


PREVIEW_FRAMES = 4  # crops shown by Motion from Video's preview
PREVIEW_SIDE = 128  # their size in pixels


def _preview_frames(frames, path: Path | None, count: int) -> list[np.ndarray]:
    """Up to PREVIEW_FRAMES frames spread over the clip: from the IMAGE batch, or decoded from the file."""
    from ..joyvasa.video_reader import read_video_frames

    picks = sorted({round(i * (count - 1) / max(1, PREVIEW_FRAMES - 1)) for i in range(PREVIEW_FRAMES)})
    if path is None:
        return [frames[i] for i in picks]
    return [frame for i in picks for frame in read_video_frames(path, i, i + 1)]


def crop_preview(pictures: list[np.ndarray], crop: str, box, detector, face_index: int) -> torch.Tensor:
    """(n, PREVIEW_SIDE, PREVIEW_SIDE, 3) IMAGE of the preview frames cropped as the motion extractor reads them:
    the whole frame (crop none), the given box, or (crop auto) the driving box of the faces found in these frames
    (the extractor uses the box averaged over every frame of the clip, so this is close, not exact)."""
    import cv2

    from ..joyvasa.face.detect import NoFaceError
    from ..joyvasa.face.track import FaceTrack, box_crop_matrices, driving_box
    from ..joyvasa.pipeline.video_motion import driving_crop_box

    matrix = None
    if crop == "box":
        matrix = box_crop_matrices(driving_crop_box(box), PREVIEW_SIDE)[0]
    elif crop == "auto":
        landmarks = []
        for picture in pictures:
            with contextlib.suppress(NoFaceError, ValueError):
                landmarks.append(detector.find(picture, face_index).landmarks_203)
        if landmarks:
            track = FaceTrack(np.stack(landmarks), np.ones(len(landmarks), bool), pictures[0].shape[:2])
            matrix = box_crop_matrices(driving_box(track), PREVIEW_SIDE)[0]
    crops = [cv2.warpAffine(np.ascontiguousarray(p), matrix[:2], (PREVIEW_SIDE, PREVIEW_SIDE), flags=cv2.INTER_AREA,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0) if matrix is not None else
             cv2.resize(p, (PREVIEW_SIDE, PREVIEW_SIDE), interpolation=cv2.INTER_AREA) for p in pictures]
    return (torch.from_numpy(np.stack(crops)).float() / 255).to(runtime.intermediate_device())


class JoyVASAMotionFromVideo:
    DESCRIPTION = ("Reads the motion of the face in a driving video (head pose, expression, lips, position, size) "
                   "with LivePortrait's motion extractor, resampled to JoyVASA's 25 fps: render it on a portrait, "
                   "or take only its head with Mix Motion. Give a VIDEO (Load Video) or the frames of any video "
                   "loader as IMAGE plus their fps.")
    CATEGORY = CATEGORY
    FUNCTION = "extract"
    RETURN_TYPES = (MOTION, "IMAGE")
    RETURN_NAMES = ("motion", "crop_preview")
    OUTPUT_TOOLTIPS = ("The video's motion at 25 fps, with the video's sound (none for IMAGE frames).",
                       f"{PREVIEW_FRAMES} frames cropped as the motion extractor reads them (crop auto: the face box "
                       "found in these frames; the extractor averages it over the whole clip).")

    @classmethod
    def INPUT_TYPES(cls):
        from ..joyvasa.face.source import CROP_MODES

        prepare = _prepare_source_inputs()
        return {
            "required": {
                "renderer": (RENDERER, {"tooltip": "From JoyVASA Load Renderer: its motion extractor reads the "
                                                   "frames."}),
                "crop": (list(CROP_MODES), {
                    "default": "auto", "tooltip": "auto: track the face with the face detector (needed) and crop "
                                                  "one box around it for the whole clip. none: the frames already "
                                                  "are face crops. box: the box given below, in every frame."}),
                "face_index": ("INT", {"default": 0, "min": 0, "max": 64,
                                       "tooltip": "Which face when there are several: 0 = the largest."}),
            },
            "optional": {
                "face_detector": (FACE_DETECTOR, {"tooltip": "From JoyVASA Load Face Detector (insightface); needed "
                                                             "for crop auto."}),
                "video": (VIDEO, {"tooltip": "The driving video (e.g. Load Video). Give this or images, not both."}),
                "images": ("IMAGE", {"tooltip": "The driving video's frames from any video loader (give this or "
                                                "video, not both)."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 0.1, "max": 240.0, "step": 0.001,
                                  "tooltip": "Frame rate of the images (ignored for a VIDEO, which knows its own)."}),
                **{name: prepare["optional"][name] for name in ("box_x", "box_y", "box_width", "box_height")},
            },
        }

    def extract(self, renderer, crop, face_index, face_detector=None, video=None, images=None, fps=25.0, box_x=0,
                box_y=0, box_width=256, box_height=256):
        from ..joyvasa.motion.constants import FPS
        from ..joyvasa.pipeline.video_motion import motion_from_video
        from ..joyvasa.video_reader import read_video_audio

        if (video is None) == (images is None):
            raise ValueError("connect either a VIDEO (video input, e.g. Load Video) or the frames as IMAGE (images "
                             "input, with their fps), not " + ("both" if video is not None else "neither"))
        detector = _human_detector(face_detector)
        if crop == "auto" and detector is None:
            raise ValueError("crop auto tracks the face with the face detector: connect JoyVASA Load Face Detector "
                             "(insightface), or use crop none (the frames already are face crops) or box")
        box = (box_x, box_y, box_x + box_width, box_y + box_height) if crop == "box" else None
        det_thresh = None if face_detector is None else face_detector.det_thresh
        progress = runtime.Progress()

        def step(done: int, total: int) -> None:
            progress(done, total)
            runtime.throw_if_interrupted()

        frames = None if images is None else ImageFrames(images)
        rate = None if images is None else check_fps(fps)
        with contextlib.ExitStack() as stack:
            path = None if video is None else stack.enter_context(readable_video(video))
            with renderer.use() as model:
                found = motion_from_video(model, detector, frames if path is None else path, fps=rate, crop=crop,
                                          box=box, face_index=face_index, det_thresh=det_thresh, callback=step)
            sound = None if path is None else read_video_audio(path)
            pictures = _preview_frames(frames, path, found.frames)
            preview = crop_preview(pictures, crop, box, detector, face_index)
            source = _video_name(video, path) if path is not None else f"{len(frames)} IMAGE frames"
        waveform, sample_rate = sound if sound is not None else (None, 0)
        info = {"source": source, "source_fps": found.source_fps, "source_frames": found.frames}
        if found.lost:
            info["lost"] = found.lost
            log.warning("JoyVASA Motion from Video: %s", found.lost)
        clip = MotionClip(found.motion, waveform, sample_rate, 0.0, fps=float(FPS), info=info,
                          ratios=MeasuredRatios(found.motion, found.eye_ratio, found.lip_ratio))
        return clip, preview


def _prepare_source_inputs() -> dict:
    from .source import JoyVASAPrepareSource

    return JoyVASAPrepareSource.INPUT_TYPES()
