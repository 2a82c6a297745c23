"""`python -m joyvasa motion --video V --out M.safetensors`: the head and face motion of a video, as a motion file.

The face is tracked through the video (crop auto), cropped with one box for the whole clip, and LivePortrait's
motion extractor reads its head pose, expression, scale and translation in every frame; the motion is resampled
to 25 fps and saved with each frame's eye and lip openness. The file drives `animate --motion` and the nodes
like any saved motion (`.pkl`: a LivePortrait motion template). Every option and path is checked before a model
is loaded; the file appears complete or not at all.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger("joyvasa")

MOTION_SUFFIXES = (".safetensors", ".pkl")


def add_motion_parser(sub) -> None:
    from .cli import _common, _precision
    from .devices import PRECISION_CHOICES
    from .face.source import CROP_MODES

    m = sub.add_parser("motion", help="a video's head and face motion -> a motion file (.safetensors or .pkl)",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    m.add_argument("--video", "-v", type=Path, required=True, help="the driving video (mp4, mov, webm, mkv, ...)")
    m.add_argument("--out", "-o", type=Path, required=True,
                   help="motion file to write: .safetensors (with eye/lip openness), or .pkl (a LivePortrait motion "
                        "template)")
    m.add_argument("--crop", choices=CROP_MODES, default="auto",
                   help="auto: track the face; none: the video already is a face crop; box: use --box")
    m.add_argument("--box", nargs="+", metavar="X1,Y1,X2,Y2", default=None,
                   help="the face's extent in pixels for --crop box (x1,y1,x2,y2, or four numbers)")
    m.add_argument("--face-index", type=int, default=0, help="which face of the first frame with a face, 0 = largest")
    m.add_argument("--det-thresh", "--det_thresh", type=float, default=None,
                   help="detection score threshold in [0, 1] (default: 0.15)")
    m.add_argument("--species", choices=("human", "animal"), default="human",
                   help="which renderer's motion extractor reads the motion (animal: --crop none or box)")
    m.add_argument("--batch-size", type=int, default=8, help="frames read by the motion extractor at once")
    _common(m)
    m.add_argument("--precision", type=_precision, choices=PRECISION_CHOICES, default="auto",
                   help="auto = bf16 on a CUDA GPU that supports it, else fp32")
    m.set_defaults(func=cmd_motion)


def _box(values: list[str] | None) -> tuple[float, ...] | None:
    from .cli import InputError

    if values is None:
        return None
    parts = [p for v in values for p in v.replace(",", " ").split()]
    try:
        box = tuple(float(p) for p in parts)
    except ValueError:
        box = ()
    if len(box) != 4:
        raise InputError(f"--box needs four numbers x1,y1,x2,y2 (the face's extent in pixels), got "
                         f"{' '.join(values)!r}")
    return box


def cmd_motion(args: argparse.Namespace) -> int:
    from .cli import InputError, _output, _weights
    from .devices import resolve_device, resolve_dtype
    from .direct.motion_file import write_motion_file
    from .motion import FPS
    from .pipeline import CropOptions, detector_files, load_detector
    from .pipeline.video_motion import motion_from_video
    from .renderer import load_renderer
    from .video_reader import probe_video
    from .weights import renderer_files

    # everything that can be checked without a model, first
    box = _box(args.box)
    try:
        crop = CropOptions(mode=args.crop, box=box, face_index=args.face_index, det_thresh=args.det_thresh)
    except ValueError as err:
        raise InputError(str(err)) from None
    if box is not None and crop.mode != "box":
        raise InputError("--box is used with --crop box only")
    if args.species == "animal" and crop.mode == "auto":
        raise InputError("the animal face finder (X-Pose) does not track faces through a video: use --crop box "
                         "(with --box) or --crop none for animals")
    if isinstance(args.batch_size, bool) or args.batch_size < 1:
        raise InputError(f"--batch-size must be a whole number >= 1, got {args.batch_size}")
    suffix = args.out.suffix.lower()
    if suffix not in MOTION_SUFFIXES:
        raise InputError(f"--out {args.out} must end in .safetensors or .pkl (a motion file)")
    try:
        info = probe_video(args.video)
        if crop.mode == "box":
            crop.check_box_in(info.width, info.height)
    except ValueError as err:
        raise InputError(str(err)) from None
    out = _output(args.out, suffix, args.video)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.precision, device)

    use_detector = args.species == "human" and crop.mode == "auto"
    needed = [*renderer_files(args.species).values(), *(detector_files("human") if use_detector else [])]
    location, paths = _weights(needed, args)
    detector = load_detector("human", paths, device, args.det_thresh) if use_detector else None
    renderer = load_renderer(args.species, location=location, device=device, dtype=dtype)
    log.info("models on %s (%s); %s: %dx%d, %d frames at %.4g fps", device, str(dtype).replace("torch.", ""),
             info.path.name, info.width, info.height, info.frames, float(info.fps))

    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done == total or done % 100 < args.batch_size:
            log.info("read %d/%d (%.1f s)", done, total, time.perf_counter() - start)

    result = motion_from_video(renderer, detector, info.path, crop=crop.mode, box=crop.box,
                               face_index=crop.face_index, det_thresh=crop.det_thresh, batch_size=args.batch_size,
                               callback=progress)
    write_motion_file(out, result.motion, fps=FPS, eye_ratio=result.eye_ratio, lip_ratio=result.lip_ratio,
                      metadata={"source": info.path.name, "source_fps": result.source_fps,
                                "source_frames": result.frames, "crop": crop.mode, "lost_face": result.lost})
    log.info("wrote %s: %d frames at %d fps from %d frames at %.4g fps%s", out, len(result), FPS, result.frames,
             result.source_fps, "" if result.lost is None else f"; {result.lost}")
    return 0
