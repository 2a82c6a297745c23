"""Command-line entry points.

`render`: re-pose a 256x256 face crop with the LivePortrait renderer (a quick check that the renderer weights
are in place and work): the source is rendered turning its head left and right, written as one PNG strip.
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m joyvasa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
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
