"""`python -m joyvasa dub --video V --audio A --out O.mp4`: the face of a video re-rendered so it speaks new audio.

The video keeps its frame rate, size and everything but the face; the lips (with --regions expression or all,
also the expression or the head) follow motion sampled from the speech. When the speech is longer, the video
ping-pongs (or loops, or holds its last frame); when the video is longer, it is trimmed (or its rest kept with
its own sound). Every option and input is checked before a model is loaded; the mp4 appears complete or not
at all.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger("joyvasa")


def add_dub_parser(sub) -> None:
    from .cli import _common, _precision
    from .devices import PRECISION_CHOICES
    from .motion.constants import DEFAULT_CFG_SCALE
    from .pipeline.dub import AUDIO_LONGER, DUB_REGIONS, VIDEO_LONGER, DubOptions

    d = sub.add_parser("dub", help="re-render a video's face so it speaks new audio (lip-sync dubbing)",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("--video", "-v", type=Path, required=True, help="the video to dub (mp4, mov, webm, mkv, ...)")
    d.add_argument("--audio", "-a", type=Path, default=None,
                   help="the new speech (wav, mp3, m4a, ...: anything PyAV decodes); may be left out with --motion "
                        "(the dubbed part is then silent)")
    d.add_argument("--motion", type=Path, default=None,
                   help="render this motion file (.safetensors or .pkl) instead of sampling motion from the speech")
    d.add_argument("--out", "-o", type=Path, required=True, help="mp4 to write (H.264 + AAC)")
    d.add_argument("--regions", choices=DUB_REGIONS, default=DubOptions.regions,
                   help="what the speech drives: lips only, the whole expression, or expression and head")
    d.add_argument("--audio-longer", choices=AUDIO_LONGER, default=DubOptions.audio_longer,
                   help="when the speech outlasts the video: play it back and forth (no jump cut), loop it, or "
                        "hold its last frame")
    d.add_argument("--video-longer", choices=VIDEO_LONGER, default=DubOptions.video_longer,
                   help="when the video outlasts the speech: cut it there, or keep the rest as it was with its "
                        "own sound")
    d.add_argument("--crop-scale", type=float, default=DubOptions.crop_scale, help="crop size relative to the face")
    d.add_argument("--crop-smoothing", type=float, default=DubOptions.crop_smoothing,
                   help="smoothing of the per-frame crop over time, in frames (0 = off: the crop may shake)")
    d.add_argument("--face-index", type=int, default=0, help="which face of the first frame with a face, 0 = largest")
    d.add_argument("--det-thresh", type=float, default=None,
                   help="detection score threshold in [0, 1] (default: 0.15)")
    d.add_argument("--cfg-scale", type=float, default=DEFAULT_CFG_SCALE, help="audio guidance strength")
    d.add_argument("--seed", type=int, default=0, help="random seed (same seed, same motion)")
    d.add_argument("--batch-size", type=int, default=DubOptions.batch_size, help="frames rendered at once")
    _common(d)
    d.add_argument("--precision", type=_precision, choices=PRECISION_CHOICES, default="auto",
                   help="auto = bf16 on a CUDA GPU that supports it, else fp32")
    d.set_defaults(func=cmd_dub)


def _dub_options(args: argparse.Namespace):
    from .cli import InputError
    from .pipeline import MotionOptions
    from .pipeline.dub import DubOptions

    try:
        return DubOptions(regions=args.regions, audio_longer=args.audio_longer, video_longer=args.video_longer,
                          crop_scale=args.crop_scale, crop_smoothing=args.crop_smoothing, face_index=args.face_index,
                          det_thresh=args.det_thresh, motion=MotionOptions(cfg_scale=args.cfg_scale, seed=args.seed),
                          batch_size=args.batch_size)
    except ValueError as err:
        raise InputError(str(err)) from None


def dub_files(sample_motion: bool = True) -> list[str]:
    """Official relative paths of every weight file `dub` needs (the motion generator's only when it samples)."""
    from .pipeline import detector_files
    from .weights import motion_files, renderer_files

    files = [*renderer_files("human").values(), *detector_files("human")]
    return files + motion_files() if sample_motion else files


def _probe(path: Path):
    from .cli import InputError
    from .video_reader import probe_video

    try:
        return probe_video(path)
    except ValueError as err:
        raise InputError(str(err)) from None


def cmd_dub(args: argparse.Namespace, models=None) -> int:
    """models: optional `models(key, load) -> model` (see `cmd_animate`); by default every model is loaded."""
    from .cli import InputError, _output, _read_audio, _read_motion, _weights
    from .devices import resolve_device, resolve_dtype
    from .motion import load_motion_generator
    from .pipeline import load_detector
    from .pipeline.dub import dub_video
    from .renderer import load_renderer
    from .weights import MOTION_CHECKPOINT, MOTION_TEMPLATE

    # everything that can be checked without a model, first
    options = _dub_options(args)
    if args.audio is None and args.motion is None:
        raise InputError("give the new speech with --audio (or a motion file with --motion)")
    motion = _read_motion(args.motion)[0] if args.motion is not None else None
    info = _probe(args.video)
    waveform, rate = _read_audio(args.audio) if args.audio is not None else (None, None)
    out = _output(args.out, ".mp4", *[p for p in (args.video, args.audio, args.motion) if p is not None])
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.precision, device)

    location, paths = _weights(dub_files(sample_motion=motion is None), args)
    # the keys are cmd_animate's for the same models, so a batch worker loads each once for both kinds of row
    models = models or (lambda key, load: load())
    detector = models(("detector", "human", str(device), args.det_thresh, str(location)),
                      lambda: load_detector("human", paths, device, args.det_thresh))
    renderer = models(("renderer", "human", "v1.0", str(device), str(dtype), str(location)),
                      lambda: load_renderer("human", location=location, device=device, dtype=dtype))
    generator = None if motion is not None else models(
        ("generator", str(device), str(location)),
        lambda: load_motion_generator(paths[MOTION_CHECKPOINT], paths[MOTION_TEMPLATE]).to(device))
    log.info("models on %s (%s); %s: %dx%d, %d frames at %.3g fps%s", device, str(dtype).replace("torch.", ""),
             info.path.name, info.width, info.height, info.frames, float(info.fps),
             "" if info.has_audio else ", no sound")

    start = time.perf_counter()

    def track_progress(done: int) -> None:
        if done == info.frames or done % 100 == 0:
            log.info("tracked the face in %d/%d frames (%.1f s)", done, info.frames, time.perf_counter() - start)

    def frame_progress(done: int, total: int) -> None:
        if done == total or done % 25 < options.batch_size:
            log.info("dubbed %d/%d frames (%.1f s)", done, total, time.perf_counter() - start)

    result = dub_video(renderer, generator, detector, info.path, waveform, rate, out, options, motion=motion,
                       frame_callback=frame_progress, track_callback=track_progress)
    log.info("wrote %s: %d frames (%d dubbed) at %.3g fps, %.1f s", result.path, result.frames, result.dubbed,
             float(result.fps), result.seconds)
    return 0
