"""Command-line entry points.

`animate`: portrait + speech -> talking-head mp4 (H.264 + AAC), the whole JoyVASA pipeline, streamed to disk.
`render`: re-pose a face crop with the LivePortrait renderer alone (a quick check of the renderer weights): the
source turning its head left and right, written as one PNG strip.

Options follow the original `inference.py` (its flag names are accepted as aliases); defaults are those of
JoyVASA's web demo, which give the expected result: crop, stitching, relative motion, paste-back and
normalize-lip on, driving multiplier 1.0, and the command line's cfg scale 2.8. Every option and path is
checked before a model is loaded; missing official weight files are downloaded first (--no-download: fail
with the download command instead). Outputs appear complete or not at all, also on Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .checkpoint import CheckpointError
from .devices import DEVICE_CHOICES, PRECISION_CHOICES
from .weights import WeightsNotFoundError

log = logging.getLogger("joyvasa")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# the spellings of the first release, still accepted
PRECISION_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


class InputError(ValueError):
    """A command-line input (file or option) that cannot work; said before any model is loaded."""


def _read_image(path: Path) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise InputError(f"image file not found: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot read image {path}: OpenCV cannot decode it (use PNG, JPEG, WebP, BMP or TIFF)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _read_audio(path: Path):
    from .motion import decode_audio_file
    from .motion.audio import as_channels

    if not path.is_file():
        raise InputError(f"audio file not found: {path}")
    try:
        waveform, rate = decode_audio_file(path)
        return as_channels(waveform), rate
    except ValueError as err:
        raise InputError(f"cannot use audio {path}: {err}") from None


def _read_motion(path: Path):
    from .direct.motion_file import read_motion_file
    from .motion import FPS

    if not path.is_file():
        raise InputError(f"motion file not found: {path}")
    try:
        motion, info = read_motion_file(path)
    except ValueError as err:
        raise InputError(str(err)) from None
    if float(info.get("fps", FPS)) != FPS:
        raise InputError(f"{path} holds motion at {info['fps']} fps; only {FPS} fps motion can be rendered")
    return motion, info


def _write_png(path: Path, rgb: np.ndarray) -> None:
    """An (H, W, 3) uint8 RGB image as a PNG, written complete or not at all."""
    import cv2

    from .files import AtomicFile

    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"could not encode {path}")
    with AtomicFile(path) as tmp:
        tmp.write_bytes(data.tobytes())


def _precision(value: str) -> str:
    return PRECISION_ALIASES.get(value, value)


def _output(path: Path, suffix: str, *inputs: Path) -> Path:
    from .files import check_output_path

    try:
        return check_output_path(path, suffix, inputs, what="--out")
    except ValueError as err:
        raise InputError(str(err)) from None


def _weights(relpaths, args):
    """Every file's path, downloading missing official files (with progress) unless --no-download."""
    from .download import ensure_weights
    from .weights import default_location

    last = [0.0]

    def progress(relpath: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] > 2.0:
            last[0] = now
            size = f"{done / 1e6:.0f} of {total / 1e6:.0f} MB" if total else f"{done / 1e6:.0f} MB"
            log.info("downloading %s: %s", relpath, size)

    location = default_location(args.weights_dir)
    return location, ensure_weights(relpaths, location, download=args.download, progress=progress)


def _portrait_options(args: argparse.Namespace):
    from .pipeline import CropOptions, DrivingOptions, MotionOptions, PortraitOptions

    try:
        return PortraitOptions(
            crop=CropOptions(mode=args.crop, box=None if args.box is None else tuple(args.box), scale=args.scale,
                             vx_ratio=args.vx_ratio, vy_ratio=args.vy_ratio, rotate=args.rotate,
                             face_index=args.face_index, det_thresh=args.det_thresh, max_dim=args.source_max_dim),
            motion=MotionOptions(cfg_scale=args.cfg_scale, seed=args.seed, smoothing=args.smoothing,
                                 pe_mode=args.pe_mode, timing=args.timing),
            driving=DrivingOptions(relative_motion=args.relative_motion, driving_option=args.driving_option,
                                   driving_multiplier=args.driving_multiplier,
                                   animation_region=args.animation_region, stitching=args.stitching,
                                   normalize_lip=args.normalize_lip),
            paste_back=args.paste_back, batch_size=args.batch_size)
    except ValueError as err:
        raise InputError(str(err)) from None


def _direct_options(args: argparse.Namespace):
    """The performance controls of `animate` (all neutral unless a flag is given)."""
    from .direct.blinks import BlinkOptions
    from .direct.emotion import ExpressionOffsetOptions
    from .direct.fade import FadeOptions
    from .direct.gaze import GazeOptions
    from .direct.head import HeadOptions
    from .direct.mouth import MouthOptions
    from .direct.perform import DirectOptions
    from .direct.silence import SilenceOptions

    try:
        return DirectOptions(
            head=HeadOptions(gain=tuple(args.head_gain), offset=tuple(args.head_offset), keyframes=args.head_keys,
                             distance=args.distance, shift_x=args.framing[0], shift_y=args.framing[1],
                             ramp_s=args.head_ramp),
            gaze=GazeOptions(target=args.gaze, horizontal_deg=args.gaze_horizontal, vertical_deg=args.gaze_vertical,
                             amplitude=args.gaze_amplitude),
            blinks=BlinkOptions(mode=args.blinks, rate_per_minute=args.blink_rate, duration=args.blink_duration,
                                seed=args.blink_seed),
            expression=ExpressionOffsetOptions(
                intensity=args.expression_intensity if (args.expression_image or args.neutralize_expression) else 0.0,
                region=args.expression_region, start=args.expression_start, end=args.expression_end),
            neutralize=args.neutralize_expression,
            mouth=MouthOptions(lip_gain=args.lip_gain, offset_frames=args.mouth_offset,
                               close_silences=args.close_silences,
                               silence=SilenceOptions(threshold_db=args.silence_threshold_db,
                                                      min_pause_s=args.min_pause)),
            fade=FadeOptions(fade_in_s=args.fade_in, fade_out_s=args.fade_out))
    except ValueError as err:
        raise InputError(str(err)) from None


def _reference_expression(args, renderer, detector, options):
    """The expression of --expression-image, cropped like the source (None without the flag)."""
    from .direct.emotion import expression_from_image
    from .pipeline import crop_portrait, portrait_image

    if args.expression_image is None:
        return None
    image = portrait_image(_read_image(args.expression_image), options.crop.max_dim)
    crop_options = options.crop if options.crop.mode != "box" else type(options.crop)(mode="none")
    return expression_from_image(renderer, crop_portrait(image, crop_options, detector).image_256)


def cmd_animate(args: argparse.Namespace, models=None) -> int:
    """models: optional `models(key, load) -> model`, which may return a model loaded before under that key
    (the batch workers' cache); by default every model is loaded."""
    from .devices import resolve_device, resolve_dtype
    from .motion import load_motion_generator
    from .pipeline import animate_portrait, load_detector, portrait_files, portrait_image
    from .renderer import load_renderer
    from .video import Mp4Writer
    from .weights import MOTION_CHECKPOINT, MOTION_TEMPLATE

    # everything that can be checked without a model, first
    options = _portrait_options(args)
    direct = _direct_options(args)
    motion, motion_info = _read_motion(args.motion) if args.motion is not None else (None, {})
    head_track = _read_motion(args.head_track)[0] if args.head_track is not None else None
    if head_track is not None and motion is not None:
        raise InputError("--head-track constrains sampling; with --motion nothing is sampled. Give one of them.")
    if args.audio is None and motion is None:
        args.audio = EXAMPLES / "speech_en.wav"
    if args.expression_image is not None and args.neutralize_expression:
        raise InputError("give --expression-image or --neutralize-expression, not both")
    if args.expression_image is not None and not args.expression_image.is_file():
        raise InputError(f"image file not found: {args.expression_image}")
    image = _read_image(args.image)
    waveform, rate = _read_audio(args.audio) if args.audio is not None else (None, None)
    inputs = [p for p in (args.image, args.audio, args.motion, args.head_track, args.expression_image)
              if p is not None]
    out = _output(args.out, ".mp4", *inputs)
    if args.save_motion is not None:
        suffix = args.save_motion.suffix.lower() if args.save_motion.suffix.lower() in (".safetensors", ".pkl") \
            else ".safetensors"
        _output(args.save_motion, suffix, *inputs, out)
    try:
        picture = portrait_image(image, options.crop.max_dim)
        options.crop.check_box_in(picture.shape[1], picture.shape[0])
    except ValueError as err:
        raise InputError(f"{args.image}: {err}") from None
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.precision, device)
    if args.crf is not None and not 0 <= args.crf <= 51:
        raise InputError(f"--crf must be from 0 to 51, got {args.crf}")

    # blinks read the source's eye openness from the face landmarks: the detector is needed whatever the crop
    landmarks = direct.blinks.inserts
    if landmarks and args.species == "animal":
        from .direct.blinks import ANIMAL_MESSAGE

        raise InputError(ANIMAL_MESSAGE)
    needed = portrait_files(args.species, args.animal_version, "auto" if landmarks else options.crop.mode)
    if motion is not None:  # a motion file replaces the motion generator
        needed = [f for f in needed if f not in (MOTION_CHECKPOINT, MOTION_TEMPLATE)]
    location, paths = _weights(needed, args)
    models = models or (lambda key, load: load())
    detector = models(("detector", args.species, str(device), args.det_thresh, str(location)),
                      lambda: load_detector(args.species, paths, device, args.det_thresh)) if (
        options.crop.mode == "auto" or landmarks) else None
    renderer = models(("renderer", args.species, args.animal_version, str(device), str(dtype), str(location)),
                      lambda: load_renderer(args.species, args.animal_version, location=location, device=device,
                                            dtype=dtype))
    generator = None if motion is not None else models(
        ("generator", str(device), str(location)),
        lambda: load_motion_generator(paths[MOTION_CHECKPOINT], paths[MOTION_TEMPLATE]).to(device))
    log.info("models on %s (%s)", device, str(dtype).replace("torch.", ""))

    start = time.perf_counter()
    logged = [start]

    def motion_progress(step: dict) -> None:
        now = time.perf_counter()
        if step["i"] == step["n_steps"] - 1 and (now - logged[0] > 5 or step["window"] == step["n_windows"] - 1):
            logged[0] = now
            log.info("motion: window %d/%d (%.0f s)", step["window"] + 1, step["n_windows"], now - start)

    def frame_progress(done: int, total: int) -> None:
        if done == total or done % 25 < options.batch_size:
            log.info("rendered %d/%d frames (%.1f s)", done, total, time.perf_counter() - start)

    reference_exp = _reference_expression(args, renderer, detector, options)
    clip = animate_portrait(renderer, generator, picture, waveform, rate, options, detector=detector, motion=motion,
                            head_track=head_track, constrain=args.constrain.replace("-", "_"), direct=direct,
                            reference_exp=reference_exp, motion_callback=motion_progress,
                            frame_callback=frame_progress)
    if args.save_motion is not None:
        from .direct.motion_file import write_motion_file

        write_motion_file(args.save_motion, clip.motion, fps=clip.fps, metadata={
            **{k: v for k, v in motion_info.items() if k in ("source", "seed", "cfg_scale")},
            **({} if motion is not None else {"source": args.audio.name, "seed": args.seed,
                                              "cfg_scale": args.cfg_scale, "timing": args.timing})})
        log.info("wrote the motion to %s", args.save_motion)
    if args.paste_back and not clip.pasted_back:
        log.info("no paste-back: it needs a crop and stitching; writing the 512x512 animated crop")
    start = time.perf_counter()
    audio = None if waveform is None else (waveform, rate)
    with Mp4Writer(out, fps=clip.fps, audio=audio, audio_delay=clip.audio_delay, crf=args.crf) as writer:
        for frames in clip.frames:
            writer.write(frames)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    import torch

    from .devices import resolve_device
    from .renderer import (
        appearance_features,
        load_renderer,
        prepare_images,
        source_keypoints,
        stitch,
        to_uint8,
        warp_decode,
    )
    from .renderer import keypoints as kpm
    from .weights import renderer_files

    image = _read_image(args.image)
    out = _output(args.out, ".png", args.image)
    if not all(np.isfinite(args.yaw)):
        raise InputError(f"--yaw must be finite numbers of degrees, got {args.yaw}")
    device = resolve_device(args.device)
    location, _ = _weights(renderer_files(args.species, args.animal_version).values(), args)
    renderer = load_renderer(args.species, args.animal_version, location=location, device=device)
    I_s = prepare_images(torch.from_numpy(image))
    f_s = appearance_features(renderer, I_s)
    src = source_keypoints(renderer, I_s)
    n = len(args.yaw)
    yaws = torch.tensor(args.yaw, dtype=torch.float32, device=src.yaw.device)[:, None]
    R_d = kpm.rotation_matrix(src.pitch.expand(n, 1), src.yaw + yaws, src.roll.expand(n, 1))
    x_d = kpm.transform_keypoints(src.kp.expand(n, -1, -1), R_d, src.exp.expand(n, -1, -1),
                                  src.scale.expand(n, 1), src.t.expand(n, 3))
    x_d = stitch(renderer, src.x_s.expand(n, -1, -1), x_d)
    frames, _ = warp_decode(renderer, f_s, src.x_s, x_d)
    strip = np.concatenate(list(to_uint8(frames).cpu().numpy()), axis=1)
    _write_png(out, strip)
    log.info("wrote %s (%d frames, yaw offsets %s degrees)", out, n, args.yaw)
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    """Plot a motion file (and optionally a second one, drawn faintly) with its audio and pauses, as a PNG."""

    from .direct.preview import motion_preview
    from .direct.silence import find_silences
    from .motion.audio import audio_delay

    motion, info = _read_motion(args.motion)
    before = _read_motion(args.before)[0] if args.before is not None else None
    waveform, rate = _read_audio(args.audio) if args.audio is not None else (None, None)
    out = _output(args.out, ".png", *[p for p in (args.motion, args.before, args.audio) if p is not None])
    delay = audio_delay(info.get("timing", "original")) if waveform is not None else 0.0
    silences = None if waveform is None else find_silences(waveform, rate, len(motion), delay_s=delay).numpy()
    image = motion_preview(motion, waveform=waveform, sample_rate=rate, audio_delay=delay, silences=silences,
                           width=args.width, before=before, title=args.motion.name)
    _write_png(out, image)
    log.info("wrote %s", out)
    return 0


def _flag(parser, name: str, default: bool, help: str, *aliases: str) -> None:
    """--name / --no-name, plus the original's --flag_name / --no_flag_name spellings."""
    dest = name.replace("-", "_")
    parser.add_argument(f"--{name}", *aliases, dest=dest, action=argparse.BooleanOptionalAction, default=default,
                        help=help)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="folder laid out like pretrained_weights/ (default: $JOYVASA_WEIGHTS_DIR, then the "
                             "pack's)")
    _flag(parser, "download", True, "download missing official weight files from Hugging Face (off: fail and "
                                    "print the download command)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                        help="auto = CUDA, else Apple MPS, else the CPU")


def _direct_arguments(parser: argparse.ArgumentParser) -> None:
    """Performance controls (joyvasa.direct), applied in the order head, gaze, blinks, expression, mouth, fade;
    every default leaves the motion as generated."""
    from .direct.blinks import BLINK_MODES, BlinkOptions
    from .direct.emotion import REGION_CHOICES, ExpressionOffsetOptions
    from .direct.fade import FadeOptions
    from .direct.gaze import GAZE_TARGETS, GazeOptions
    from .direct.head import HeadOptions
    from .direct.mouth import MouthOptions
    from .direct.silence import SilenceOptions

    g = parser.add_argument_group("performance controls", "edits of the generated motion (all off by default)")
    g.add_argument("--head-gain", type=float, nargs=3, metavar=("PITCH", "YAW", "ROLL"), default=HeadOptions.gain,
                   help="head movement per axis: 0 = still, 1 = as generated, > 1 = livelier")
    g.add_argument("--head-offset", type=float, nargs=3, metavar=("PITCH", "YAW", "ROLL"),
                   default=HeadOptions.offset, help="degrees added to the head pose (eased in)")
    g.add_argument("--head-keys", default=HeadOptions.keyframes, metavar="TRACK",
                   help="keyframed head offsets, e.g. '0:yaw=0; 2.5s ease: yaw=15, pitch=-5; 4s: yaw=0'")
    g.add_argument("--head-ramp", type=float, default=HeadOptions.ramp_s, help="seconds to ease offsets in")
    g.add_argument("--distance", type=float, default=HeadOptions.distance,
                   help="head distance: > 1 closer (bigger face), < 1 further")
    g.add_argument("--framing", type=float, nargs=2, metavar=("X", "Y"), default=(HeadOptions.shift_x,
                   HeadOptions.shift_y), help="move the face (keypoint units, the crop spans -1..1)")
    g.add_argument("--gaze", choices=GAZE_TARGETS, default=GazeOptions.target,
                   help="free: as generated; camera: hold the portrait's gaze while the head turns; direction")
    g.add_argument("--gaze-horizontal", type=float, default=GazeOptions.horizontal_deg,
                   help="--gaze direction: degrees to the right (negative: left)")
    g.add_argument("--gaze-vertical", type=float, default=GazeOptions.vertical_deg,
                   help="--gaze direction: degrees up (negative: down)")
    g.add_argument("--gaze-amplitude", type=float, default=GazeOptions.amplitude, help="strength of the gaze control")
    g.add_argument("--blinks", choices=BLINK_MODES, default=BlinkOptions.mode,
                   help="add natural blinks, replace the generated ones, or suppress them (humans)")
    g.add_argument("--blink-rate", type=float, default=BlinkOptions.rate_per_minute, help="blinks per minute")
    g.add_argument("--blink-duration", type=float, default=BlinkOptions.duration, help="seconds per blink")
    g.add_argument("--blink-seed", type=int, default=BlinkOptions.seed, help="seed of the blink timing")
    g.add_argument("--expression-image", type=Path, default=None,
                   help="a portrait whose expression is added (emotion offset; cropped like the source)")
    g.add_argument("--neutralize-expression", action="store_true",
                   help="remove the source's own expression instead")
    g.add_argument("--expression-intensity", type=float, default=1.0, help="strength of the expression offset")
    g.add_argument("--expression-region", choices=REGION_CHOICES, default=ExpressionOffsetOptions.region)
    g.add_argument("--expression-start", type=float, default=ExpressionOffsetOptions.start, help="seconds")
    g.add_argument("--expression-end", type=float, default=ExpressionOffsetOptions.end,
                   help="seconds (None: to the end)")
    g.add_argument("--lip-gain", type=float, default=MouthOptions.lip_gain,
                   help="mouth movement: < 1 smaller, > 1 wider")
    g.add_argument("--mouth-offset", type=int, default=MouthOptions.offset_frames,
                   help="frames to delay the lips (negative: earlier)")
    g.add_argument("--close-silences", action="store_true", help="ease the lips closed in pauses of the speech")
    g.add_argument("--silence-threshold-db", type=float, default=SilenceOptions.threshold_db,
                   help="pauses: quieter than this below the speech level")
    g.add_argument("--min-pause", type=float, default=SilenceOptions.min_pause_s, help="pauses: shortest, seconds")
    g.add_argument("--fade-in", type=float, default=FadeOptions.fade_in_s,
                   help="seconds to ease in from the still source face")
    g.add_argument("--fade-out", type=float, default=FadeOptions.fade_out_s,
                   help="seconds to ease back to it at the end")


def build_parser() -> argparse.ArgumentParser:
    from .face.source import CROP_SCALE, CROP_VX_RATIO, CROP_VY_RATIO, SOURCE_MAX_DIM
    from .motion.constants import DEFAULT_CFG_SCALE, DEFAULT_SMOOTHING

    parser = argparse.ArgumentParser(prog="python -m joyvasa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    a = sub.add_parser("animate", help="portrait + speech -> talking-head mp4",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a.add_argument("--image", "-r", "--reference", type=Path, default=EXAMPLES / "astronaut.png",
                   help="source portrait (any size)")
    a.add_argument("--audio", "-a", type=Path, default=None,
                   help="speech (wav, mp3, m4a, ...: anything PyAV decodes); default: the bundled example, or none "
                        "with --motion (a silent video)")
    a.add_argument("--motion", type=Path, default=None,
                   help="render this motion file (.safetensors saved by --save-motion or Save Motion, or a "
                        "LivePortrait .pkl motion template) instead of sampling motion from the speech")
    a.add_argument("--head-track", type=Path, default=None,
                   help="sample lips and expression given the head motion of this motion file (e.g. a saved take)")
    a.add_argument("--constrain", choices=("head", "head-rotation", "expression", "all"), default="head",
                   help="with --head-track: the channels taken from it")
    a.add_argument("--save-motion", type=Path, default=None,
                   help="also write the motion (after the controls) to this .safetensors or .pkl file")
    a.add_argument("--out", "-o", type=Path, default=Path("out.mp4"), help="mp4 to write (H.264 + AAC)")
    a.add_argument("--species", "--animation_mode", choices=("human", "animal"), default="human")
    a.add_argument("--animal-version", choices=("v1.0", "v1.1"), default="v1.0")
    _common(a)
    a.add_argument("--crop", choices=("auto", "none", "box"), default="auto",
                   help="auto: detect the face (InsightFace for people, X-Pose for animals); none: the image "
                        "is a face crop; box: use --box")
    a.add_argument("--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"), help="face box for --crop box")
    a.add_argument("--face-index", type=int, default=0, help="which face, 0 = largest")
    a.add_argument("--det-thresh", "--det_thresh", type=float, default=None,
                   help="detection score threshold in [0, 1] (default: 0.15 for faces; 0 for animals = the best "
                        "candidate)")
    a.add_argument("--scale", type=float, default=CROP_SCALE, help="crop size relative to the face")
    a.add_argument("--vx-ratio", "--vx_ratio", type=float, default=CROP_VX_RATIO, help="horizontal crop shift")
    a.add_argument("--vy-ratio", "--vy_ratio", type=float, default=CROP_VY_RATIO,
                   help="vertical crop shift (negative = up)")
    _flag(a, "rotate", True, "crop follows the head's roll", "--flag_do_rot")
    a.add_argument("--source-max-dim", "--source_max_dim", type=int, default=SOURCE_MAX_DIM,
                   help="larger images are scaled down first")
    a.add_argument("--cfg-scale", "--cfg_scale", type=float, default=DEFAULT_CFG_SCALE, help="audio guidance strength")
    a.add_argument("--seed", type=int, default=0, help="random seed (same seed, same motion)")
    a.add_argument("--smoothing", type=float, default=DEFAULT_SMOOTHING,
                   help="EMA strength on head pose (0.01 = JoyVASA; 0 = off)")
    a.add_argument("--pe-mode", choices=("legacy", "main"), default="legacy",
                   help="positional encoding (legacy = what the released weights were trained with)")
    a.add_argument("--timing", choices=("original", "aligned"), default="original",
                   help="original: JoyVASA's 2 lead frames (audio delayed 80 ms to stay in sync); aligned: none")
    _flag(a, "relative-motion", True, "drive relative to the source's own pose and expression",
          "--flag_relative_motion")
    a.add_argument("--driving-option", "--driving_option", choices=("expression-friendly", "pose-friendly"),
                   default="expression-friendly")
    a.add_argument("--driving-multiplier", "--driving_multiplier", type=float, default=1.0,
                   help="scales all motion")
    a.add_argument("--animation-region", "--animation_region", choices=("all", "exp", "pose", "lip"),
                   default="all")
    _flag(a, "stitching", True, "keep the face aligned with the shoulders", "--flag_stitching")
    _flag(a, "normalize-lip", True, "close an open source mouth first (human)", "--flag_normalize_lip")
    _flag(a, "paste-back", True, "paste the animated crop back into the full image", "--flag_pasteback")
    a.add_argument("--batch-size", type=int, default=4, help="frames rendered at once")
    a.add_argument("--precision", type=_precision, choices=PRECISION_CHOICES, default="auto",
                   help="auto = bf16 on a CUDA GPU that supports it, else fp32; fp32 reproduces the original exactly")
    a.add_argument("--crf", type=int, default=18, help="H.264 quality 0-51 (lower = better, larger)")
    _direct_arguments(a)
    a.set_defaults(func=cmd_animate)

    render = sub.add_parser("render", help="re-pose a 256x256 face crop with the LivePortrait renderer")
    render.add_argument("--image", type=Path, default=EXAMPLES / "astronaut_256.png",
                        help="face crop (any size; resized to 256x256)")
    render.add_argument("--out", type=Path, default=Path("out_render.png"), help="PNG strip to write")
    render.add_argument("--species", choices=("human", "animal"), default="human")
    render.add_argument("--animal-version", choices=("v1.0", "v1.1"), default="v1.0",
                        help="animal weight set (v1.0 = base_models, what JoyVASA uses)")
    _common(render)
    render.add_argument("--yaw", type=float, nargs="+", default=[-20.0, 0.0, 20.0],
                        help="head-turn offsets in degrees, one frame each")
    render.set_defaults(func=cmd_render)

    preview = sub.add_parser("preview", help="plot a motion file over time (head, mouth, eyes, audio, pauses)",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    preview.add_argument("--motion", type=Path, required=True, help="motion file (.safetensors or .pkl)")
    preview.add_argument("--before", type=Path, default=None, help="a second motion file, drawn faintly")
    preview.add_argument("--audio", type=Path, default=None, help="the speech played with it (loudness, pauses)")
    preview.add_argument("--out", type=Path, default=Path("motion_preview.png"), help="PNG to write")
    preview.add_argument("--width", type=int, default=1024, help="image width in pixels")
    preview.set_defaults(func=cmd_preview)

    from .batch.command import add_batch_parser
    from .dub_command import add_dub_parser
    from .motion_command import add_motion_parser

    add_batch_parser(sub)
    add_dub_parser(sub)
    add_motion_parser(sub)
    return parser


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (and SIGHUP) unwind like Ctrl-C, so outputs in progress are removed, not left half-written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    names = [s for s in ("SIGTERM", "SIGHUP") if hasattr(signal, s)]
    previous = {name: signal.signal(getattr(signal, name), interrupt) for name in names}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


# what a user can cause and fix: one `error:` line (or paragraph), no traceback
USER_ERRORS = (ValueError, CheckpointError, WeightsNotFoundError, ImportError, OSError)


def main(argv: list[str] | None = None) -> int:
    from .download import WeightsDownloadError

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    with _sigterm_as_interrupt():
        try:
            return args.func(args)
        except KeyboardInterrupt as stop:
            print(f"error: interrupted ({stop or 'Ctrl-C'}); no output was written", file=sys.stderr)
            return 130
        except (*USER_ERRORS, WeightsDownloadError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
