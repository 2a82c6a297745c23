"""Motion from a driving video: the face's head pose, expression, scale and translation in every frame, read by
LivePortrait's motion extractor, resampled to JoyVASA's 25 fps (spec: liveportrait.md §3.4-3.6).

    result = motion_from_video(renderer, detector, "talk.mp4")        # crop "auto": tracked face
    save_motion("talk.safetensors", result.motion, eye_ratio=result.eye_ratio, lip_ratio=result.lip_ratio)

A video file is decoded twice, streaming (memory does not grow with its length): pass 1 tracks the face
(`joyvasa.face.track`, 203 landmarks a frame), pass 2 crops every frame with LivePortrait's one average box for
the clip (no rotation, black outside the frame), resizes the 512 crop to the 256 network input (bilinear, as
the original resizes driving frames) and runs the motion extractor on batches of crops. Frames already in
memory (a ComfyUI IMAGE batch) are read the same way. The per-frame values are then resampled to 25 fps by
linear interpolation (R recomputed from the interpolated angles).

Eye and lip openness per frame (LivePortrait's calc_ratio: eyelid gap / eye width, lip gap / mouth width) come
from the tracked 203 landmarks. They are ratios of distances, so the similarity crop (a uniform scale and a
shift) does not change them: they are computed from the landmarks in frame pixels.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from ..face.crop import check_image
from ..face.detect import FaceDetector, NoFaceError
from ..face.source import NETWORK_SIZE
from ..face.track import (
    DRIVING_CROP_SCALE,
    DRIVING_CROP_VX_RATIO,
    DRIVING_CROP_VY_RATIO,
    FaceTrack,
    box_crop_matrices,
    driving_box,
    track_face,
)
from ..face.xpose import AnimalFaceDetector
from ..motion import FPS, MotionSequence
from ..motion.decode import MotionTemplate, normalize_motion
from ..renderer import LivePortraitRenderer, prepare_images, source_keypoints
from ..renderer.keypoints import eye_close_ratio, lip_close_ratio, rotation_matrix
from ..renderer.renderer import OUTPUT_SIZE
from .portrait import CropOptions, _finite
from .render import ProgressCallback  # (frames done, frames total); here over both passes

__all__ = ["VideoMotion", "motion_from_video", "resample_motion", "driving_crop_box"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoMotion:
    """The motion of a driving video, at 25 fps (T frames), on the CPU.

    * ``motion``: per-frame exp, scale, t, pitch, yaw, roll, R; ``raw`` is None unless a template was given to
      normalise with.
    * ``eye_ratio``: (T, 2) float32 [left, right] eye openness; ``lip_ratio``: (T, 1) float32 mouth openness;
      both None when no face detector was used (crop "none" or "box" without one, or no face found there).
    * ``source_fps``: the video's frame rate; ``frames``: its number of frames.
    * ``lost``: a one-line message when the tracked face was lost in some frames (bridged), else None.
    """

    motion: MotionSequence
    eye_ratio: Tensor | None
    lip_ratio: Tensor | None
    source_fps: float
    lost: str | None
    frames: int

    def __len__(self) -> int:
        return len(self.motion)


class _Frames:
    """A video that can be read more than once: a file (decoded as needed) or frames in memory."""

    def __init__(self, video, fps: float | None):
        if isinstance(video, str | Path):
            from ..video_reader import probe_video

            if fps is not None:
                raise ValueError("fps is read from the video file; give fps only with frames in memory")
            info = probe_video(video)  # a clear error for a missing or unreadable file, before any work
            self.path, self.count, self.fps = info.path, info.frames, float(info.fps)
            self.what = f"the video {info.path}"
            self.hw = (info.height, info.width)
            return
        if fps is None:
            raise ValueError("frames in memory need their frame rate: give fps (e.g. the video loader's frame rate)")
        _finite("fps", fps, low=1e-3, high=1000.0)
        if isinstance(video, Tensor):
            video = video.detach().cpu()
        if isinstance(video, Tensor | np.ndarray):
            if video.ndim != 4 or video.shape[-1] != 3:
                raise ValueError(f"frames must be (N, H, W, 3) RGB, got shape {tuple(video.shape)}")
        elif not isinstance(video, Sequence):
            raise ValueError(f"video must be a file path or (N, H, W, 3) frames, got {type(video).__name__}")
        if len(video) == 0:
            raise ValueError("the video has no frames")
        self.path, self.frames, self.count, self.fps = None, video, len(video), float(fps)
        self.what = f"the {len(video)} frames given"
        self.hw = tuple(_as_uint8(video[0]).shape[:2])

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.path is not None:
            from ..video_reader import read_video_frames

            yield from read_video_frames(self.path)
        else:
            for frame in self.frames:
                yield _as_uint8(frame)


def _as_uint8(frame) -> np.ndarray:
    """One frame as (H, W, 3) uint8 RGB: uint8 as it is, float in [0, 1] (a ComfyUI IMAGE) rounded."""
    array = frame.detach().cpu().numpy() if isinstance(frame, Tensor) else np.asarray(frame)
    if array.dtype != np.uint8 and np.issubdtype(array.dtype, np.floating):
        array = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    return check_image(array)


def driving_crop_box(box_xyxy, scale: float = DRIVING_CROP_SCALE, vx_ratio: float = DRIVING_CROP_VX_RATIO,
                     vy_ratio: float = DRIVING_CROP_VY_RATIO) -> tuple[float, float, float]:
    """A face box (x1, y1, x2, y2), read as the face's extent, as a (cx, cy, side) driving crop: framed like the
    tracked crop (side = scale x the longer box side, centre moved by vx / vy x side)."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    side = scale * max(x2 - x1, y2 - y1)
    return (x1 + x2) / 2 + vx_ratio * side, (y1 + y2) / 2 + vy_ratio * side, side


def _network_input(frame: np.ndarray, m_o2c: np.ndarray | None) -> np.ndarray:
    """The 256 x 256 uint8 crop the motion extractor reads: the 512 crop (black outside the frame), then a
    bilinear resize; without a matrix the whole frame is resized (crop "none")."""
    if m_o2c is not None:
        frame = cv2.warpAffine(frame, m_o2c[:2], (OUTPUT_SIZE, OUTPUT_SIZE), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.resize(frame, (NETWORK_SIZE, NETWORK_SIZE), interpolation=cv2.INTER_LINEAR)


def _extract(renderer: LivePortraitRenderer, frames, m_o2c: np.ndarray | None, batch_size: int,
             progress: Callable[[int], None]) -> dict[str, Tensor]:
    """Per-frame pitch, yaw, roll (N, 1), t (N, 3), exp (N, 21, 3), scale (N, 1), float32 on the CPU."""
    fields = {"pitch": [], "yaw": [], "roll": [], "t": [], "exp": [], "scale": []}
    batch: list[np.ndarray] = []
    done = 0

    def run():
        nonlocal done
        images = torch.from_numpy(np.stack(batch)).to(renderer.device)  # uint8 to the device, float there
        kp = source_keypoints(renderer, prepare_images(images))
        for name in fields:
            fields[name].append(getattr(kp, name).detach().to("cpu", torch.float32))
        done += len(batch)
        batch.clear()
        progress(done)

    for frame in frames:
        batch.append(_network_input(frame, m_o2c))
        if len(batch) == batch_size:
            run()
    if batch:
        run()
    return {name: torch.cat(parts) for name, parts in fields.items()}


def _interpolate(values: Tensor, times: np.ndarray) -> Tensor:
    """values (N, ...) sampled at fractional frame positions ``times`` by linear interpolation (float32)."""
    t = torch.from_numpy(np.asarray(times, np.float64))
    i0 = t.floor().long().clamp(0, values.shape[0] - 1)
    i1 = (i0 + 1).clamp(max=values.shape[0] - 1)
    w = (t - i0).float().reshape(-1, *([1] * (values.ndim - 1)))
    v0, v1 = values[i0], values[i1]
    return torch.where(w == 0, v0, v0 + (v1 - v0) * w)  # exact source values where a time falls on a frame


def resample_motion(per_frame: dict[str, Tensor], source_fps: float, out_fps: float = FPS) -> dict[str, Tensor]:
    """Per-frame tensors (N, ...) at ``source_fps`` -> the same fields at ``out_fps``
    (round(N * out_fps / source_fps) frames, `joyvasa.video_reader.resample_times`), linearly interpolated."""
    from ..video_reader import resample_times

    n = next(iter(per_frame.values())).shape[0]
    times = resample_times(n, source_fps, out_fps)
    return {name: _interpolate(values, times) for name, values in per_frame.items()}


def _ratios(track: FaceTrack) -> tuple[Tensor, Tensor]:
    lmk = torch.from_numpy(np.ascontiguousarray(track.landmarks_203, np.float32))
    return eye_close_ratio(lmk), lip_close_ratio(lmk)


def motion_from_video(renderer: LivePortraitRenderer, detector: FaceDetector | None, video, *,
                      fps: float | None = None, crop: str = "auto", box=None, face_index: int = 0,
                      det_thresh: float | None = None, batch_size: int = 8, callback: ProgressCallback | None = None,
                      template: MotionTemplate | None = None) -> VideoMotion:
    """The motion of the face in ``video``, at 25 fps.

    video: a file path (mp4, mov, webm, mkv, ...), or (N, H, W, 3) frames in memory (uint8, or float in [0, 1]
    as a ComfyUI IMAGE batch) with their frame rate ``fps``.
    crop: "auto" = the face tracked by ``detector`` (needed), cropped with LivePortrait's one average box for the
    clip; "none" = the frames already are face crops (resized to 256); "box" = ``box`` (x1, y1, x2, y2), the
    face's extent in pixels, framed like the tracked crop, for every frame. With "none" or "box" a detector, when
    given, still tracks the face for the eye and lip ratios.
    template: JoyVASA's motion template, to fill ``motion.raw`` with the normalised values (else None).
    callback(done, total): progress over both passes (total = 2 N when the face is tracked, else N).
    Models stay where they are; frames go to the renderer's device in batches.
    """
    options = CropOptions(mode=crop, box=None if box is None else tuple(box), face_index=face_index,
                          det_thresh=det_thresh)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size (frames read at once) must be a whole number >= 1, got {batch_size!r}")
    if options.mode == "auto" and detector is None:
        raise ValueError("crop auto tracks the face with the face detector: give one, or use crop none (the frames "
                         "already are face crops) or crop box")
    if isinstance(detector, AnimalFaceDetector):
        raise ValueError("motion from a video needs the insightface (human) face detector; X-Pose does not track "
                         "faces through a video. Use crop none or box without a detector for animals.")
    frames = _Frames(video, fps)
    if options.mode == "box":
        options.check_box_in(frames.hw[1], frames.hw[0])
    track_total = frames.count if detector is not None else 0
    total = track_total + frames.count

    def report(done: int) -> None:
        if callback is not None:
            callback(done, total)

    track = None
    if detector is not None:
        try:
            track = track_face(iter(frames), detector, face_index=options.face_index, det_thresh=det_thresh,
                               callback=report, what=frames.what)
        except NoFaceError:
            if options.mode == "auto":
                raise
            log.warning("no face found in %s: no eye and lip ratios", frames.what)
    if options.mode == "auto":
        m_o2c = box_crop_matrices(driving_box(track), OUTPUT_SIZE)[0]
    elif options.mode == "box":
        m_o2c = box_crop_matrices(driving_crop_box(options.box), OUTPUT_SIZE)[0]
    else:
        m_o2c = None
    per_frame = _extract(renderer, iter(frames), m_o2c, batch_size, lambda done: report(track_total + done))
    if len(per_frame["exp"]) != frames.count:
        raise ValueError(f"{frames.what} gave {len(per_frame['exp'])} frames on the second reading, "
                         f"{frames.count} on the first; the file may be damaged")
    if track is not None:
        per_frame["eye_ratio"], per_frame["lip_ratio"] = _ratios(track)
    at_25 = resample_motion(per_frame, frames.fps, FPS)
    pitch, yaw, roll = at_25["pitch"], at_25["yaw"], at_25["roll"]
    motion = MotionSequence(None, at_25["exp"], at_25["scale"], at_25["t"], pitch, yaw, roll,
                            rotation_matrix(pitch, yaw, roll))
    if template is not None:
        motion = MotionSequence(normalize_motion(motion, template), *(getattr(motion, name) for name in
                                ("exp", "scale", "t", "pitch", "yaw", "roll", "R")))
    lost = None if track is None else track.describe_lost(frames.fps)
    if lost:
        log.warning("%s: %s", frames.what, lost)
    if not all(torch.isfinite(v).all() for v in at_25.values()):
        raise ValueError(f"the motion extractor gave NaN or infinite values for {frames.what}; check the renderer "
                         "weights (and try --precision fp32)")
    return VideoMotion(motion, at_25.get("eye_ratio"), at_25.get("lip_ratio"), frames.fps, lost, frames.count)

