"""A portrait and a speech clip -> a talking-head clip: the one assembly path of the CLI and the Animate node.

    options = PortraitOptions(crop=CropOptions(mode="auto"), motion=MotionOptions(seed=0))   # checked here
    clip = animate_portrait(renderer, generator, image, waveform, rate, options, detector=detector)
    for frames in clip.frames: ...          # (b, H, W, 3) uint8 batches, streamed
    audio = synced_audio(waveform, rate, len(clip), clip.fps, clip.audio_delay)

Every option is a field of a small frozen dataclass, checked when it is built, so a bad value fails before a
model is loaded or a sample drawn. The steps are the library's: crop (detector or box), JoyVASA motion from the
speech, the source's features, driving keypoints, rendering and paste-back.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..direct.perform import DirectOptions, direct_motion
from ..face.detect import DEFAULT_DET_THRESH, FaceDetector
from ..face.source import (
    CROP_MODES,
    CROP_SCALE,
    CROP_VX_RATIO,
    CROP_VY_RATIO,
    SOURCE_MAX_DIM,
    SourceCrop,
    box_crop,
    check_image,
    crop_source,
    landmark_crop,
    no_crop,
    resize_to_limit,
)
from ..face.xpose import AnimalFaceDetector
from ..motion import FPS, MotionGenerator, MotionSequence, generate_motion
from ..motion.audio import ALIGNMENTS, audio_delay
from ..motion.constants import CFG_SCALE_RANGE, DEFAULT_CFG_SCALE, DEFAULT_SMOOTHING, SEED_RANGE
from ..motion.constraint import Constraint
from ..motion.denoiser import PE_MODES
from ..motion.sampler import Callback
from ..renderer import LivePortraitRenderer
from ..weights import motion_files, renderer_files
from . import DrivingOptions, Source, animate, prepare_source, will_paste_back
from .render import ProgressCallback

Detector = FaceDetector | AnimalFaceDetector


def _finite(name: str, value: float, low: float | None = None, high: float | None = None) -> None:
    """Raise ValueError unless `value` is a finite number within [low, high]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or (low is not None and number < low) or (high is not None and number > high):
        bounds = " and ".join(b for b in (f">= {low:g}" if low is not None else "",
                                          f"<= {high:g}" if high is not None else "") if b)
        raise ValueError(f"{name} must be a finite number{' ' + bounds if bounds else ''}, got {value!r}")


@dataclass(frozen=True)
class CropOptions:
    """How the face is found and framed (LivePortrait's crop; defaults are JoyVASA's).

    mode: "auto" (the detector finds the face; the whole image when no detector is given), "none" (the image
    already is a face crop), "box" (crop around `box` = (x1, y1, x2, y2), the face's extent in pixels).
    det_thresh: detector score threshold; None = the species' default (0.15 for faces, 0 = the best candidate
    for X-Pose)."""

    mode: str = "auto"
    box: tuple[float, float, float, float] | None = None
    scale: float = CROP_SCALE
    vx_ratio: float = CROP_VX_RATIO
    vy_ratio: float = CROP_VY_RATIO
    rotate: bool = True
    face_index: int = 0
    det_thresh: float | None = None
    max_dim: int = SOURCE_MAX_DIM

    def __post_init__(self):
        if self.mode not in CROP_MODES:
            raise ValueError(f"crop must be one of {', '.join(CROP_MODES)}, got {self.mode!r}")
        _finite("crop scale", self.scale, low=0.05, high=20.0)
        _finite("vx_ratio", self.vx_ratio, low=-2.0, high=2.0)
        _finite("vy_ratio", self.vy_ratio, low=-2.0, high=2.0)
        if not isinstance(self.face_index, int) or self.face_index < 0:
            raise ValueError(f"face_index must be a whole number >= 0 (0 = the largest face), got {self.face_index!r}")
        if self.det_thresh is not None:
            _finite("det_thresh (detection score threshold)", self.det_thresh, low=0.0, high=1.0)
        if not isinstance(self.max_dim, int) or self.max_dim < 0:
            raise ValueError(f"max_dim must be a whole number >= 0 (0 = no limit), got {self.max_dim!r}")
        if self.mode == "box":
            if self.box is None or len(self.box) != 4:
                raise ValueError("crop box needs a box (x1, y1, x2, y2): the face's extent in pixels")
            for name, v in zip(("x1", "y1", "x2", "y2"), self.box):
                _finite(f"box {name}", v)
            x1, y1, x2, y2 = (float(v) for v in self.box)
            if x2 <= x1 or y2 <= y1:
                raise ValueError(f"the box {tuple(self.box)} is empty or inverted: give (x1, y1, x2, y2) with "
                                 "x2 > x1 and y2 > y1, in pixels")

    def check_box_in(self, width: int, height: int) -> None:
        """A box must overlap the image it crops (else the crop is black)."""
        if self.mode != "box":
            return
        x1, y1, x2, y2 = (float(v) for v in self.box)
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise ValueError(f"the box {tuple(self.box)} lies outside the {width}x{height} image; give the face's "
                             "extent in pixels of the image (after the max_dim size limit)")


@dataclass(frozen=True)
class MotionOptions:
    """JoyVASA's sampling of motion from speech (defaults: the original command line's)."""

    cfg_scale: float = DEFAULT_CFG_SCALE
    seed: int = 0
    smoothing: float = DEFAULT_SMOOTHING  # 0 = off
    pe_mode: str = "legacy"
    timing: str = "original"

    def __post_init__(self):
        _finite("cfg_scale (audio guidance)", self.cfg_scale, *CFG_SCALE_RANGE)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not SEED_RANGE[0] <= self.seed <= \
                SEED_RANGE[1]:
            raise ValueError(f"seed must be a whole number from {SEED_RANGE[0]} to {SEED_RANGE[1]} (2^64 - 1), "
                             f"got {self.seed!r}")
        _finite("smoothing", self.smoothing, low=0.0, high=1.0)
        if self.pe_mode not in PE_MODES:
            raise ValueError(f"pe_mode must be one of {', '.join(PE_MODES)}, got {self.pe_mode!r}")
        if self.timing not in ALIGNMENTS:
            raise ValueError(f"timing must be one of {', '.join(ALIGNMENTS)}, got {self.timing!r}")

    @property
    def audio_delay(self) -> float:
        """Seconds the speech must be delayed to play in sync with the frames."""
        return audio_delay(self.timing)


@dataclass(frozen=True)
class PortraitOptions:
    """Everything `animate_portrait` does with a portrait, checked before any work."""

    crop: CropOptions = field(default_factory=CropOptions)
    motion: MotionOptions = field(default_factory=MotionOptions)
    driving: DrivingOptions = field(default_factory=DrivingOptions)
    paste_back: bool = True
    batch_size: int = 4

    def __post_init__(self):
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size (frames rendered at once) must be a whole number >= 1, got "
                             f"{self.batch_size!r}")


def portrait_image(image: np.ndarray, max_dim: int = SOURCE_MAX_DIM) -> np.ndarray:
    """Check an (H, W, 3) uint8 RGB portrait and limit its size (long side, even sides), as the original."""
    return resize_to_limit(check_image(image), max_dim=max_dim)


def check_detector(detector: Detector | str | None, species: str) -> None:
    """A human renderer needs the face detector, an animal one X-Pose. `detector`: a detector, or the species
    it finds ("human" / "animal")."""
    if detector is None:
        return
    finds = detector if isinstance(detector, str) else "animal" if isinstance(detector, AnimalFaceDetector) else \
        "human"
    if species == "animal" and finds != "animal":
        raise ValueError("An insightface (human) face detector is connected to an animal renderer: load the face "
                         "detector as x-pose (animal), or use crop box / none.")
    if species == "human" and finds == "animal":
        raise ValueError("An x-pose (animal) face detector is connected to a human renderer: load the face "
                         "detector as insightface (human), or use crop box / none.")


def crop_portrait(image: np.ndarray, options: CropOptions, detector: Detector | None = None) -> SourceCrop:
    """The source crop of a size-limited portrait (see `CropOptions`). A human detector given with crop "none"
    still supplies the 203 landmarks that normalize-lip needs, as the original computes them without a crop."""
    options.check_box_in(image.shape[1], image.shape[0])
    if options.mode == "box":
        return box_crop(image, options.box, scale=options.scale, vx_ratio=options.vx_ratio,
                        vy_ratio=options.vy_ratio)
    framing = dict(scale=options.scale, vx_ratio=options.vx_ratio, vy_ratio=options.vy_ratio, rotate=options.rotate)
    if options.mode == "auto" and isinstance(detector, AnimalFaceDetector):
        found = detector.find(image, min_score=options.det_thresh)
        return landmark_crop(image, found.points, **framing)
    if options.mode == "auto" and isinstance(detector, FaceDetector):
        return crop_source(image, detector.find(image, face_index=options.face_index,
                                                det_thresh=options.det_thresh), **framing)
    landmarks = None
    if isinstance(detector, FaceDetector):
        try:
            landmarks = detector.find(image, face_index=options.face_index,
                                      det_thresh=options.det_thresh).landmarks_203
        except ValueError:
            landmarks = None  # no face: the mouth is left as it is
    return no_crop(image, landmarks)


@dataclass(frozen=True)
class PortraitClip:
    """A talking portrait being rendered: `frames` yields (b, H, W, 3) uint8 batches as they are rendered."""

    source: Source
    motion: MotionSequence
    frames: Iterator[np.ndarray]
    audio_delay: float  # seconds to delay the speech by to stay in sync
    pasted_back: bool  # full-size frames (True) or 512x512 crops
    fps: float = FPS

    def __len__(self) -> int:
        return len(self.motion)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the frames."""
        return self.source.image.shape[:2] if self.pasted_back else self.source.crop.image_512.shape[:2]


def animate_portrait(renderer: LivePortraitRenderer, generator: MotionGenerator | None, image: np.ndarray,
                     waveform, sample_rate: int, options: PortraitOptions = PortraitOptions(), *,
                     detector: Detector | None = None, motion: MotionSequence | None = None,
                     head_track: MotionSequence | None = None, constrain: str = "head",
                     direct: DirectOptions | None = None, reference_exp=None,
                     motion_callback: Callback | None = None,
                     frame_callback: ProgressCallback | None = None) -> PortraitClip:
    """Portrait + speech -> a clip whose frames are rendered lazily, batch by batch.

    image: (H, W, 3) uint8 RGB, any size (limited to `options.crop.max_dim` here). waveform: any rate, (T,),
    (C, T) or (1, C, T). motion: a motion to render instead of sampling one from the speech (a motion file);
    the generator may then be None. head_track: sample lips and expression given this head motion
    (`constrain` = the channels it fixes: "head", "head_rotation", "expression", "all"; RePaint-style inpainting,
    see `joyvasa.motion.sampler`). direct: performance controls applied to the motion (`joyvasa.direct`),
    with `reference_exp` for an expression offset. The crop and the motion are computed now (a face not found
    fails before sampling); rendering happens while `frames` is consumed. Models stay where they are; tensors
    go to them."""
    check_detector(detector, renderer.species)
    picture = portrait_image(image, options.crop.max_dim)
    crop = crop_portrait(picture, options.crop, detector)
    m = options.motion
    if motion is None:
        if generator is None:
            raise ValueError("animate_portrait needs the motion generator, or a motion to render")
        constraint = None if head_track is None else Constraint.from_motion(head_track, generator.template,
                                                                            constrain)
        motion = generate_motion(generator, waveform, sample_rate, seed=m.seed, cfg_scale=m.cfg_scale,
                                 alignment=m.timing, smoothing=m.smoothing or None, pe_mode=m.pe_mode,
                                 constraint=constraint, callback=motion_callback)
    source = prepare_source(renderer, picture, crop)
    if direct is not None:
        motion = direct_motion(motion, direct, renderer=renderer, source=source, waveform=waveform,
                               sample_rate=sample_rate, audio_delay=m.audio_delay, reference_exp=reference_exp,
                               detector=detector if isinstance(detector, FaceDetector) else None,
                               normalize_lip=options.driving.normalize_lip)
    frames = animate(renderer, source, motion, options.driving, options.paste_back, options.batch_size,
                     frame_callback)
    return PortraitClip(source, motion, frames, m.audio_delay,
                        will_paste_back(source, options.driving, options.paste_back))


def detector_files(species: str = "human") -> list[str]:
    """Official relative paths of a species' face detector: X-Pose for animals, insightface + landmarks else."""
    from ..face.detect import DET_10G, LANDMARK_106, LANDMARK_203
    from ..face.xpose import XPOSE_FILE

    return [XPOSE_FILE] if species == "animal" else [DET_10G, LANDMARK_106, LANDMARK_203]


def portrait_files(species: str = "human", animal_version: str = "v1.0", crop_mode: str = "auto") -> list[str]:
    """Official relative paths of every file `animate_portrait` needs (renderer, motion generator, and the
    detector when the crop is automatic)."""
    files = [*renderer_files(species, animal_version).values(), *motion_files()]
    return files + detector_files(species) if crop_mode == "auto" else files


def load_detector(species: str, paths: dict[str, Path], device="cpu", det_thresh: float | None = None,
                  providers=None) -> Detector:
    """The face detector of a species from its files (`portrait_files` paths): insightface + 203 landmarks for
    people, X-Pose for animals (on `device`)."""
    if species == "animal":
        from ..face.xpose import XPOSE_FILE, load_xpose

        return AnimalFaceDetector(load_xpose(paths[XPOSE_FILE], device=device),
                                  0.0 if det_thresh is None else det_thresh)
    from ..face.detect import DET_10G, LANDMARK_106, LANDMARK_203

    return FaceDetector(paths[DET_10G], paths[LANDMARK_106], paths[LANDMARK_203], providers=providers,
                        det_thresh=DEFAULT_DET_THRESH if det_thresh is None else det_thresh)
