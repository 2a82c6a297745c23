"""Command-line entry points.

`animate`: portrait + speech -> talking-head mp4 (H.264 + AAC), the whole JoyVASA pipeline, streamed to disk.
`render`: re-pose a face crop with the LivePortrait renderer alone (a quick check of the renderer weights): the
source turning its head left and right, written as one PNG strip.

Options follow the original `inference.py` (its flag names are accepted as aliases); defaults are those of
JoyVASA's web demo, which give the expected result: crop, stitching, relative motion, paste-back and
normalize-lip on, driving multiplier 1.0, and the command line's cfg scale 2.8.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .weights import WeightsNotFoundError, default_location

log = logging.getLogger("joyvasa")


def _read_image(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"error: cannot read image {path} (is it a PNG/JPEG file?)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    """Write atomically: a temporary file in the same folder, renamed when complete."""
    import cv2

    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise SystemExit(f"error: could not encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".partial")
    with os.fdopen(fd, "wb") as f:
        f.write(data.tobytes())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def cmd_render(args: argparse.Namespace) -> int:
    import torch

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

    image = _read_image(args.image)
    try:
        renderer = load_renderer(args.species, args.animal_version,
                                 location=default_location(args.weights_dir))
    except WeightsNotFoundError as err:
        raise SystemExit(f"error: {err}") from None
    I_s = prepare_images(torch.from_numpy(image))
    f_s = appearance_features(renderer, I_s)
    src = source_keypoints(renderer, I_s)
    yaws = torch.tensor(args.yaw, dtype=torch.float32)[:, None]
    n = len(args.yaw)
    R_d = kpm.rotation_matrix(src.pitch.expand(n, 1), src.yaw + yaws, src.roll.expand(n, 1))
    x_d = kpm.transform_keypoints(src.kp.expand(n, -1, -1), R_d, src.exp.expand(n, -1, -1),
                                  src.scale.expand(n, 1), src.t.expand(n, 3))
    x_d = stitch(renderer, src.x_s.expand(n, -1, -1), x_d)
    frames, _ = warp_decode(renderer, f_s, src.x_s, x_d)
    strip = np.concatenate(list(to_uint8(frames).numpy()), axis=1)
    _write_png(args.out, strip)
    log.info("wrote %s (%d frames, yaw offsets %s degrees)", args.out, n, args.yaw)
    return 0


def _read_audio(path: Path):
    from .motion import decode_audio_file

    if not path.is_file():
        raise SystemExit(f"error: audio file not found: {path}")
    try:
        return decode_audio_file(path)
    except Exception as err:  # PyAV raises many error types for unreadable files
        raise SystemExit(f"error: cannot decode audio {path}: {err}") from None


def cmd_animate(args: argparse.Namespace) -> int:
    import time

    import torch

    from .face.detect import FaceDetector, NoFaceError
    from .face.source import box_crop, crop_source, no_crop, resize_to_limit
    from .face.xpose import NoAnimalFoundError
    from .motion import generate_motion, load_motion_generator
    from .pipeline import DrivingOptions, animate, prepare_source, will_paste_back
    from .renderer import load_renderer
    from .video import Mp4Writer

    if args.out.suffix.lower() != ".mp4":
        raise SystemExit(f"error: --out must end in .mp4, got {args.out}")
    options = DrivingOptions(relative_motion=args.relative_motion, driving_option=args.driving_option,
                             driving_multiplier=args.driving_multiplier, animation_region=args.animation_region,
                             stitching=args.stitching, normalize_lip=args.normalize_lip)
    image = resize_to_limit(_read_image(args.image), max_dim=args.source_max_dim)
    waveform, rate = _read_audio(args.audio)
    location = default_location(args.weights_dir)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        if args.crop == "auto" and args.species == "human":
            detector = FaceDetector.from_weights(location, det_thresh=0.15 if args.det_thresh is None else
                                                 args.det_thresh)
            face = detector.find(image, face_index=args.face_index)
            crop = crop_source(image, face, scale=args.scale, vx_ratio=args.vx_ratio, vy_ratio=args.vy_ratio,
                               rotate=args.rotate)
        elif args.crop == "auto":  # animal: X-Pose finds the 9 animal-face keypoints
            from .face.source import landmark_crop
            from .face.xpose import XPOSE_FILE, detect_animal_keypoints, load_xpose

            found = detect_animal_keypoints(load_xpose(location.find(XPOSE_FILE), device=device), image,
                                            min_score=0.0 if args.det_thresh is None else args.det_thresh)
            crop = landmark_crop(image, found.points, scale=args.scale, vx_ratio=args.vx_ratio,
                                 vy_ratio=args.vy_ratio, rotate=args.rotate)
        elif args.crop == "box":
            if args.box is None:
                raise SystemExit("error: --crop box needs --box X1 Y1 X2 Y2 (the face's extent in pixels)")
            crop = box_crop(image, args.box, scale=args.scale, vx_ratio=args.vx_ratio, vy_ratio=args.vy_ratio)
        else:
            crop = no_crop(image)
        renderer = load_renderer(args.species, args.animal_version, location=location, device=device,
                                 dtype=getattr(torch, args.precision))
        generator = load_motion_generator(location.find("JoyVASA/motion_generator/motion_generator_hubert_chinese.pt"),
                                          location.find("JoyVASA/motion_template/motion_template.pkl"),
                                          pe_mode=args.pe_mode).to(device)
    except (WeightsNotFoundError, NoFaceError, NoAnimalFoundError) as err:
        raise SystemExit(f"error: {err}") from None

    start = time.perf_counter()
    motion = generate_motion(generator, waveform, rate, seed=args.seed, cfg_scale=args.cfg_scale,
                             alignment=args.timing, smoothing=args.smoothing or None)
    log.info("motion: %d frames in %.1f s", len(motion), time.perf_counter() - start)
    source = prepare_source(renderer, image, crop)
    if args.paste_back and not will_paste_back(source, options, True):
        log.info("no paste-back: it needs a crop and stitching; writing the 512x512 animated crop")
    delay = 0.08 if args.timing == "original" else 0.0  # frames lag the speech by the 2 lead frames

    def progress(done: int, total: int) -> None:
        if done == total or done % 25 < args.batch_size:
            log.info("rendered %d/%d frames (%.1f s)", done, total, time.perf_counter() - start)

    start = time.perf_counter()
    with Mp4Writer(args.out, fps=25, audio=(waveform, rate), audio_delay=delay, crf=args.crf) as writer:
        for frames in animate(renderer, source, motion, options, args.paste_back, args.batch_size, progress):
            writer.write(frames)
    return 0


def _flag(parser, name: str, default: bool, help: str, *aliases: str) -> None:
    """--name / --no-name, plus the original's --flag_name / --no_flag_name spellings."""
    dest = name.replace("-", "_")
    parser.add_argument(f"--{name}", *aliases, dest=dest, action=argparse.BooleanOptionalAction, default=default,
                        help=help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m joyvasa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    examples = Path(__file__).resolve().parents[1] / "examples"

    a = sub.add_parser("animate", help="portrait + speech -> talking-head mp4",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a.add_argument("--image", "-r", "--reference", type=Path, default=examples / "astronaut.png",
                   help="source portrait (any size)")
    a.add_argument("--audio", "-a", type=Path, default=examples / "speech_en.wav",
                   help="speech (wav, mp3, m4a, ...: anything PyAV decodes)")
    a.add_argument("--out", "-o", type=Path, default=Path("out.mp4"), help="mp4 to write (H.264 + AAC)")
    a.add_argument("--species", "--animation_mode", choices=("human", "animal"), default="human")
    a.add_argument("--animal-version", choices=("v1.0", "v1.1"), default="v1.0")
    a.add_argument("--weights-dir", type=Path, default=None,
                   help="folder laid out like pretrained_weights/ (default: $JOYVASA_WEIGHTS_DIR, then the pack's)")
    a.add_argument("--crop", choices=("auto", "none", "box"), default="auto",
                   help="auto: detect the face (InsightFace for people, X-Pose for animals); none: the image "
                        "is a face crop; box: use --box")
    a.add_argument("--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"), help="face box for --crop box")
    a.add_argument("--face-index", type=int, default=0, help="which face, 0 = largest")
    a.add_argument("--det-thresh", "--det_thresh", type=float, default=None,
                   help="detection score threshold (default: 0.15 for faces; 0 for animals = the best candidate)")
    a.add_argument("--scale", type=float, default=2.3, help="crop size relative to the face")
    a.add_argument("--vx-ratio", "--vx_ratio", type=float, default=0.0, help="horizontal crop shift")
    a.add_argument("--vy-ratio", "--vy_ratio", type=float, default=-0.125, help="vertical crop shift (negative = up)")
    _flag(a, "rotate", True, "crop follows the head's roll", "--flag_do_rot")
    a.add_argument("--source-max-dim", "--source_max_dim", type=int, default=1280,
                   help="larger images are scaled down first")
    a.add_argument("--cfg-scale", "--cfg_scale", type=float, default=2.8, help="audio guidance strength")
    a.add_argument("--seed", type=int, default=0, help="random seed (same seed, same motion)")
    a.add_argument("--smoothing", type=float, default=0.01,
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
    a.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    a.add_argument("--precision", choices=("float32", "bfloat16", "float16"), default="float32")
    a.add_argument("--crf", type=int, default=18, help="H.264 quality (lower = better, larger)")
    a.set_defaults(func=cmd_animate)
    render = sub.add_parser("render", help="re-pose a 256x256 face crop with the LivePortrait renderer")
    render.add_argument("--image", type=Path, default=Path(__file__).resolve().parents[1] / "examples" /
                        "astronaut_256.png", help="face crop (any size; resized to 256x256)")
    render.add_argument("--out", type=Path, default=Path("out_render.png"), help="PNG strip to write")
    render.add_argument("--species", choices=("human", "animal"), default="human")
    render.add_argument("--animal-version", choices=("v1.0", "v1.1"), default="v1.0",
                        help="animal weight set (v1.0 = base_models, what JoyVASA uses)")
    render.add_argument("--weights-dir", type=Path, default=None,
                        help="folder laid out like pretrained_weights/ (default: the pack's pretrained_weights/)")
    render.add_argument("--yaw", type=float, nargs="+", default=[-20.0, 0.0, 20.0],
                        help="head-turn offsets in degrees, one frame each")
    render.set_defaults(func=cmd_render)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    return args.func(args)
