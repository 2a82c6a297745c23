"""Dub a video: the face of every frame re-rendered so its lips (and, if asked, its expression and head) follow
new speech, the rest of each frame left as it was.

    result = dub_video(renderer, generator, detector, "talk.mp4", waveform, rate, "dubbed.mp4",
                       DubOptions(regions="lips", audio_longer="pingpong", video_longer="trim"))

Two passes over the video, both streamed (memory does not grow with its length):
1. the face is tracked through every frame (203 landmarks only) and each frame gets its own source crop,
   smoothed over time so the crop does not shake (`joyvasa.face.track`);
2. frames are read in the order of the frame schedule (the video looped, ping-ponged or held while the
   speech lasts longer; trimmed or kept when it is shorter), each is cropped with its own matrix, its
   appearance and keypoints are extracted, the speech motion of the same moment drives it (`dub_keypoints`),
   and the rendered face is pasted back into that frame and written to the mp4 as it comes.

Output frame i shows source frame `schedule[i]` with speech motion at time i / fps (the motion is 25 fps,
resampled to the video's rate). Frames after the speech ("keep") are the video's own, with its own sound.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor

from ..face import mask_template, paste_back, paste_back_mask, resize_area
from ..face.detect import FaceDetector
from ..face.source import CROP_SCALE, CROP_VX_RATIO, CROP_VY_RATIO, MIN_SOURCE_SIDE, NETWORK_SIZE
from ..files import check_output_path
from ..motion import FPS, MotionGenerator, MotionSequence, generate_motion
from ..motion.audio import as_channels, resample
from ..motion.sampler import Callback
from ..renderer import (
    LivePortraitRenderer,
    SourceKeypoints,
    appearance_features,
    prepare_images,
    source_keypoints,
    stitch,
    to_uint8,
    warp_decode,
)
from ..renderer.keypoints import LIP_KP, rotation_matrix, transform_keypoints
from ..renderer.renderer import OUTPUT_SIZE
from ..video import Mp4Writer, fit_audio
from .driving import DrivingMotion, _relative_rotation, _relative_translation
from .portrait import MotionOptions, _finite, check_detector
from .render import ProgressCallback

log = logging.getLogger(__name__)

DUB_REGIONS = ("lips", "expression", "all")  # what the speech drives; the rest stays each frame's own
AUDIO_LONGER = ("pingpong", "loop", "hold")  # what the video does while the speech goes on
VIDEO_LONGER = ("trim", "keep")  # the video cut at the speech's end, or its rest kept as it was
DUB_CROP_SMOOTHING = 2.0  # sigma in frames of the crop's smoothing over time (0 = a crop per frame as found)
MAX_CROP_SMOOTHING = 100.0
# reversed runs of a ping-pong are decoded forward in blocks of at most this many bytes of frames
REVERSE_BLOCK_BYTES = 64 << 20
MAX_REVERSE_BLOCK = 32


@dataclass(frozen=True)
class DubOptions:
    """Everything `dub_video` does with a video, checked when built.

    regions: "lips" (only the mouth follows the speech), "expression" (also the rest of the face, relative to
    the speech's first frame), "all" (also the head, relative). audio_longer: the video "pingpong"s (forward,
    backward, ...: no jump cut), "loop"s or "hold"s its last frame while the speech lasts longer.
    video_longer: "trim" the video to the speech, or "keep" the rest unchanged with its own sound.
    crop_*: the per-frame source crop (LivePortrait's source crop), smoothed over time with a Gaussian of
    `crop_smoothing` frames. det_thresh: None = the detector's own."""

    regions: str = DUB_REGIONS[0]
    audio_longer: str = AUDIO_LONGER[0]
    video_longer: str = VIDEO_LONGER[0]
    crop_scale: float = CROP_SCALE
    crop_vx_ratio: float = CROP_VX_RATIO
    crop_vy_ratio: float = CROP_VY_RATIO
    crop_smoothing: float = DUB_CROP_SMOOTHING
    face_index: int = 0
    det_thresh: float | None = None
    motion: MotionOptions = field(default_factory=MotionOptions)
    batch_size: int = 4
    stitching: bool = True

    def __post_init__(self):
        for name, value, choices in (("regions", self.regions, DUB_REGIONS),
                                     ("audio_longer", self.audio_longer, AUDIO_LONGER),
                                     ("video_longer", self.video_longer, VIDEO_LONGER)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        _finite("crop scale", self.crop_scale, low=0.05, high=20.0)
        _finite("crop vx_ratio", self.crop_vx_ratio, low=-2.0, high=2.0)
        _finite("crop vy_ratio", self.crop_vy_ratio, low=-2.0, high=2.0)
        _finite("crop_smoothing (sigma in frames)", self.crop_smoothing, low=0.0, high=MAX_CROP_SMOOTHING)
        if isinstance(self.face_index, bool) or not isinstance(self.face_index, int) or self.face_index < 0:
            raise ValueError(f"face_index must be a whole number >= 0 (0 = the largest face), got {self.face_index!r}")
        if self.det_thresh is not None:
            _finite("det_thresh (detection score threshold)", self.det_thresh, low=0.0, high=1.0)
        if not isinstance(self.motion, MotionOptions):
            raise ValueError(f"motion must be a MotionOptions, got {type(self.motion).__name__}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size (frames rendered at once) must be a whole number >= 1, got "
                             f"{self.batch_size!r}")
        if not isinstance(self.stitching, bool):
            raise ValueError(f"stitching must be True or False, got {self.stitching!r}")


# ------------------------------------------------------------------------------------------ motion and driving

def resample_motion(motion: MotionSequence, fps: float) -> MotionSequence:
    """25 fps motion at `fps`: exp, scale, t and the angles linearly interpolated at each output frame's time
    (the interpolation of `joyvasa.pipeline.video_motion`), R recomputed from the angles. On the CPU, float32;
    raw is None."""
    from .video_motion import resample_motion as resample_fields

    m = motion.to("cpu")
    at = resample_fields({name: getattr(m, name).float() for name in ("exp", "scale", "t", "pitch", "yaw", "roll")},
                         FPS, float(fps))
    return MotionSequence(None, at["exp"], at["scale"], at["t"], at["pitch"], at["yaw"], at["roll"],
                          rotation_matrix(at["pitch"], at["yaw"], at["roll"]))


class SpeechDrive(NamedTuple):
    """Per output frame, what the speech motion contributes: its absolute expression (the lips are driven
    absolutely) and its change since its own first frame (expression, rotation, scale, translation)."""

    exp: Tensor  # (M, 21, 3) absolute expression
    d_exp: Tensor  # (M, 21, 3) exp_j - exp_0
    d_R: Tensor  # (M, 3, 3) R_j R_0^T
    scale_ratio: Tensor  # (M, 1) s_j / s_0
    d_t: Tensor  # (M, 3) t_j - t_0, t_z = 0

    @classmethod
    def of(cls, motion) -> SpeechDrive:
        """From any motion with per-frame exp, scale, t and R (float32, on the CPU)."""
        exp, scale, t, R = DrivingMotion.of(motion, torch.device("cpu"))
        identity = torch.eye(3).expand_as(R)
        return cls(exp, exp - exp[:1], _relative_rotation(R, identity), scale / scale[:1],
                   _relative_translation(t, torch.zeros_like(t)))

    def take(self, frames, device: torch.device | str) -> SpeechDrive:
        """The rows of output frames `frames`, on `device`."""
        index = torch.as_tensor(np.asarray(frames, dtype=np.int64))
        return SpeechDrive(*(v[index].to(device) for v in self))


def dub_keypoints(src: SourceKeypoints, drive: SpeechDrive, regions: str = "lips") -> Tensor:
    """(B, 21, 3) driving keypoints (before stitching) of B video frames, each with its own keypoints `src`
    (batch B) and the speech's `drive` of the same output frames.

    lips: delta = the frame's own expression with the lip rows set to the speech's (absolute, as JoyVASA drives
    lips: the frame's own mouth movement is replaced, not added to); pose, scale and t the frame's own.
    expression: also the other rows relative, exp_s + (exp_d,j - exp_d,0). all: also the head, relative:
    R = R_d,j R_d,0^T R_s, s = s_s s_d,j / s_d,0, t = t_s + (t_d,j - t_d,0) with t_z = 0.
    x_d = s (x_c R + delta) + t."""
    if regions not in DUB_REGIONS:
        raise ValueError(f"regions must be one of {', '.join(DUB_REGIONS)}, got {regions!r}")
    lip = list(LIP_KP)
    delta = src.exp + drive.d_exp if regions != "lips" else src.exp.clone()
    delta[:, lip] = drive.exp[:, lip]
    if regions == "all":
        R, scale = drive.d_R @ src.R, src.scale * drive.scale_ratio
        t = src.t + drive.d_t
        t = torch.cat([t[:, :2], torch.zeros_like(t[:, 2:])], dim=1)
    else:
        R, scale, t = src.R, src.scale, src.t
    return transform_keypoints(src.kp, R, delta, scale, t)


# ------------------------------------------------------------------------------------------ frame schedule

def frame_schedule(n_video: int, n_speech: int, audio_longer: str = "pingpong",
                   video_longer: str = "trim") -> np.ndarray:
    """The source frame of every output frame, (n_out,) int64. Output frames 0..n_speech-1 are dubbed.

    Speech longer than the video (n_speech > n_video): "loop" 0..N-1, 0..N-1, ...; "pingpong" 0..N-1, N-2..1,
    0..; "hold" 0..N-1, N-1, N-1, ... Video longer: "trim" = the first n_speech frames; "keep" = all n_video
    frames (those after the speech are passed through)."""
    if n_video < 1 or n_speech < 1:
        raise ValueError(f"a schedule needs at least one video and one speech frame, got {n_video} and {n_speech}")
    if audio_longer not in AUDIO_LONGER:
        raise ValueError(f"audio_longer must be one of {', '.join(AUDIO_LONGER)}, got {audio_longer!r}")
    if video_longer not in VIDEO_LONGER:
        raise ValueError(f"video_longer must be one of {', '.join(VIDEO_LONGER)}, got {video_longer!r}")
    n_out = max(n_video, n_speech) if video_longer == "keep" else n_speech
    i = np.arange(n_out, dtype=np.int64)
    if n_video == 1:
        return np.zeros(n_out, dtype=np.int64)
    if audio_longer == "loop":
        return i % n_video
    if audio_longer == "hold":
        return np.minimum(i, n_video - 1)
    period = 2 * (n_video - 1)
    k = i % period
    return np.where(k < n_video, k, period - k)


def schedule_runs(schedule: np.ndarray) -> list[tuple[int, int, int]]:
    """The schedule as runs (first, count, step), step +1 (forward), -1 (backward) or 0 (the same frame)."""
    runs = []
    values = [int(v) for v in schedule]
    start = 0
    while start < len(values):
        step = values[start + 1] - values[start] if start + 1 < len(values) else 1
        if step not in (-1, 0, 1):
            step = 1
        end = start + 1
        while end < len(values) and values[end] - values[end - 1] == step:
            end += 1
        runs.append((values[start], end - start, step))
        start = end
    return runs


FrameReader = Callable[..., Iterator[np.ndarray]]  # (path, start, stop) -> frames start..stop-1


def scheduled_frames(path: str | Path, schedule: np.ndarray, block: int, read: FrameReader | None = None
                     ) -> Iterator[np.ndarray]:
    """Yield the video's frames in schedule order, holding at most `block` frames: forward runs are decoded
    as a stream, backward runs in blocks (seek, decode a block forward, yield it reversed), a repeated frame
    is decoded once. `read`: `read_video_frames` (replaceable in tests)."""
    if read is None:
        from ..video_reader import read_video_frames as read
    last_index, last_frame = None, None

    def exact(start: int, stop: int) -> Iterator[np.ndarray]:
        got = 0
        for frame in read(path, start, stop):
            if got == stop - start:
                break
            got += 1
            yield frame
        if got < stop - start:
            raise ValueError(f"the video {path} ended at frame {start + got}, before frame {stop - 1}; it may be "
                             "damaged. Re-encode it (e.g. ffmpeg -i in.mp4 out.mp4) and try again.")

    for first, count, step in schedule_runs(schedule):
        indices = [first + k * step for k in range(count)]
        if indices[0] == last_index:  # the frame just shown (a ping-pong's turn, a hold)
            yield last_frame
            indices = indices[1:]
        if not indices:
            continue
        if step == 0:
            if last_index != first:
                last_frame = next(exact(first, first + 1))
            for _ in indices:
                yield last_frame
        elif step == 1:
            for last_frame in exact(indices[0], indices[-1] + 1):
                yield last_frame
        else:
            top, bottom = indices[0], indices[-1]
            while top >= bottom:
                low = max(bottom, top - block + 1)
                frames = list(exact(low, top + 1))
                for last_frame in reversed(frames):
                    yield last_frame
                del frames
                top = low - 1
        last_index = indices[-1]


def reverse_block(height: int, width: int) -> int:
    """Frames per block of a backward run: REVERSE_BLOCK_BYTES of frames, 1 to MAX_REVERSE_BLOCK."""
    return max(1, min(MAX_REVERSE_BLOCK, REVERSE_BLOCK_BYTES // max(1, height * width * 3)))


# ------------------------------------------------------------------------------------------ sound

def dub_audio(speech: Tensor | None, speech_rate: int | None, original: tuple[Tensor, int] | None, n_dubbed: int,
              n_frames: int, fps: float, delay: float) -> tuple[Tensor, int] | None:
    """The sound of the dubbed video, (C, T) float32 and its rate: the speech delayed by `delay` seconds over
    the first `n_dubbed` frames, then the video's own sound over the rest (silence where it has none).

    Both parts are brought to the higher of the two rates (soxr, as the speech is read) and the same
    channel count (mono is repeated to stereo; other mixes are averaged to mono). None when there is no sound
    at all (no speech, and no kept frames with sound)."""
    kept = n_frames > n_dubbed and original is not None
    if speech is None and not kept:
        return None
    rate = int(speech_rate) if speech is not None else int(original[1])
    if kept:
        rate = max(rate, int(original[1]))
    parts = []
    if speech is not None:
        parts.append(_at_rate(as_channels(speech), int(speech_rate), rate))
    if kept:
        parts.append(_at_rate(as_channels(original[0]), int(original[1]), rate))
    channels = {p.shape[0] for p in parts}
    if len(channels) > 1:
        target = max(channels) if min(channels) == 1 else 1
        parts = [p if p.shape[0] == target else p.expand(target, -1) if p.shape[0] == 1 else
                 p.mean(dim=0, keepdim=True) for p in parts]
    c = parts[0].shape[0]
    head_len = round(n_dubbed / fps * rate)
    if speech is not None:
        head = fit_audio(parts[0], rate, n_dubbed, fps, delay)
    else:
        head = torch.zeros(c, head_len)
    tail_len = round(n_frames / fps * rate) - head.shape[1]
    if tail_len <= 0:
        return head, rate
    if kept:
        tail = parts[-1][:, head_len: head_len + tail_len]
        tail = torch.nn.functional.pad(tail, (0, tail_len - tail.shape[1]))
    else:
        tail = torch.zeros(c, tail_len)
    return torch.cat([head, tail], dim=1), rate


def _at_rate(wave: Tensor, rate: int, target: int) -> Tensor:
    if rate == target:
        return wave
    return torch.stack([torch.from_numpy(resample(ch.numpy(), rate, target)) for ch in wave])


# ------------------------------------------------------------------------------------------ the whole path

@dataclass(frozen=True)
class DubResult:
    """What `dub_video` wrote."""

    path: Path
    frames: int  # output frames
    dubbed: int  # of which the first `dubbed` follow the speech
    fps: Fraction
    seconds: float
    lost: str | None  # where the face was lost and bridged (None: found in every frame)


class _Face(NamedTuple):
    """One output frame to render: its source frame and crop matrices."""

    out_index: int
    frame: np.ndarray
    M_o2c: np.ndarray
    M_c2o: np.ndarray


def _render_batch(renderer: LivePortraitRenderer, faces: list[_Face], drive: SpeechDrive, options: DubOptions,
                  mask_512: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """(b, H, W, 3) uint8: each frame's face cropped with its own matrix, driven, rendered, pasted back."""
    device = renderer.device
    crops = [cv2.warpAffine(np.ascontiguousarray(f.frame), f.M_o2c[:2], (OUTPUT_SIZE, OUTPUT_SIZE),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0) for f in faces]
    images = prepare_images(torch.from_numpy(np.stack([resize_area(c, NETWORK_SIZE) for c in crops])))
    f_s = appearance_features(renderer, images)
    src = source_keypoints(renderer, images)
    x_d = dub_keypoints(src, drive.take([f.out_index for f in faces], device), options.regions)
    if options.stitching:
        x_d = stitch(renderer, src.x_s, x_d)
    rendered, _ = warp_decode(renderer, f_s, src.x_s, x_d)
    out = to_uint8(rendered).cpu().numpy()
    h, w = size_hw
    return np.stack([paste_back(frame, f.M_c2o, f.frame, paste_back_mask(mask_512, f.M_c2o, f.frame.shape[:2]))
                     [:h, :w] for frame, f in zip(out, faces)])


def dub_video(renderer: LivePortraitRenderer, generator: MotionGenerator | None, detector: FaceDetector,
              video_path: str | Path, waveform, sample_rate: int | None, out_path: str | Path,
              options: DubOptions = DubOptions(), *, motion: MotionSequence | None = None,
              motion_callback: Callback | None = None, frame_callback: ProgressCallback | None = None,
              track_callback: Callable[[int], None] | None = None) -> DubResult:
    """Dub `video_path` with the speech `waveform` (any rate; (T,), (C, T) or (1, C, T)) into `out_path` (mp4).

    motion: a 25 fps motion to use instead of sampling one from the speech (then the generator may be None,
    and the waveform too: the dubbed part is then silent). Everything is checked before any work; the mp4
    appears complete or not at all (also on an error or an interrupt). The output keeps the video's frame
    rate and size (one row / column dropped when odd: H.264 needs even sides)."""
    from ..face.track import smoothed_crop_matrices, track_face
    from ..video_reader import probe_video, read_video_audio, read_video_frames

    if not isinstance(options, DubOptions):
        raise ValueError(f"options must be DubOptions, got {type(options).__name__}")
    out = check_output_path(out_path, ".mp4", [video_path], what="output")
    info = probe_video(video_path)
    if renderer.species != "human":
        raise ValueError("dubbing drives a human face's lips: load the human renderer (the animal renderer has no "
                         "lip rule, and X-Pose does not track video)")
    if detector is None:
        raise ValueError("dubbing needs the face detector (insightface + landmark.onnx) to find the face in every "
                         "frame of the video")
    check_detector(detector, "human")
    if min(info.width, info.height) < MIN_SOURCE_SIDE:
        raise ValueError(f"the video {info.path} is {info.width}x{info.height} pixels; dubbing needs at least "
                         f"{MIN_SOURCE_SIDE}x{MIN_SOURCE_SIDE}")
    if motion is None and generator is None:
        raise ValueError("dub_video needs the motion generator, or a motion to render")
    speech = None
    if waveform is not None:
        speech = as_channels(waveform)
        if sample_rate is None or int(sample_rate) <= 0:
            raise ValueError(f"invalid audio sample rate {sample_rate!r}")
    elif motion is None:
        raise ValueError("dub_video needs the speech (waveform and sample rate), or a motion to render")
    if motion is not None and len(motion) < 1:
        raise ValueError("the motion to render is empty (0 frames)")
    fps = float(info.fps)

    # pass 1: the face through every frame (landmarks only), a smoothed crop per frame
    track = track_face(read_video_frames(info.path), detector, face_index=options.face_index,
                       det_thresh=options.det_thresh, callback=track_callback, what=f"the video {info.path}")
    M_o2c, M_c2o = smoothed_crop_matrices(track, scale=options.crop_scale, vx_ratio=options.crop_vx_ratio,
                                          vy_ratio=options.crop_vy_ratio, rotate=True,
                                          sigma_frames=options.crop_smoothing, dsize=OUTPUT_SIZE)
    n_video = min(info.frames, len(M_o2c))
    lost = track.describe_lost(fps)
    if lost:
        log.warning("%s", lost)

    m = options.motion
    if motion is None:
        motion = generate_motion(generator, speech, int(sample_rate), seed=m.seed, cfg_scale=m.cfg_scale,
                                 alignment=m.timing, smoothing=m.smoothing or None, pe_mode=m.pe_mode,
                                 callback=motion_callback)
    at_video_rate = resample_motion(motion, fps)
    drive = SpeechDrive.of(at_video_rate)
    n_speech = len(at_video_rate)
    schedule = frame_schedule(n_video, n_speech, options.audio_longer, options.video_longer)
    total = len(schedule)
    original = read_video_audio(info.path) if total > n_speech and info.has_audio else None
    sound = dub_audio(speech, sample_rate, original, n_speech, total, fps, m.audio_delay)
    del original

    # pass 2: frames in schedule order, each cropped, driven, rendered and pasted back as it comes
    size_hw = (info.height - info.height % 2, info.width - info.width % 2)
    mask_512 = mask_template(OUTPUT_SIZE)
    frames = scheduled_frames(info.path, schedule, reverse_block(info.height, info.width))
    pending: list[_Face] = []
    done = 0
    with Mp4Writer(out, fps=info.fps, audio=sound) as writer:
        def flush() -> None:
            nonlocal done
            if pending:
                writer.write(_render_batch(renderer, pending, drive, options, mask_512, size_hw))
                done += len(pending)
                pending.clear()
                if frame_callback is not None:
                    frame_callback(done, total)

        for i, (source, frame) in enumerate(zip(schedule, frames)):
            if i >= n_speech:  # after the speech: the video's own frame
                flush()
                writer.write(frame[None, : size_hw[0], : size_hw[1]])
                done += 1
                if frame_callback is not None:
                    frame_callback(done, total)
                continue
            pending.append(_Face(i, frame, M_o2c[source], M_c2o[source]))
            if len(pending) == options.batch_size:
                flush()
        flush()
        if writer.frames != total:  # a bug, not bad input: leave no file
            raise RuntimeError(f"wrote {writer.frames} frames, expected {total}")
    return DubResult(out, total, n_speech, Fraction(info.fps), total / fps, lost)
