"""End to end on a short clip at full size: where the time goes.

    .venv/bin/python -m benchmarks.pipeline [--seconds 5] [--dtype bfloat16] [--weights-dir DIR]

Stand-in weights of the official sizes (from the parity kit) unless --weights-dir is given. A 1280x720 source
with a box crop, synthetic speech; frames are rendered in batches, pasted back and written to an mp4 as they
come. Reports the one-off costs (motion, source) and, per frame, warp + generate versus everything else
(keypoints, uint8 conversion, paste-back, H.264 encoding).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def run(root: Path, seconds: float, dtype: torch.dtype, batch_size: int) -> dict[str, float]:
    from joyvasa.face.source import box_crop
    from joyvasa.motion import generate_motion, load_motion_generator
    from joyvasa.pipeline import DrivingOptions, PasteBack, driving_keypoints, prepare_source, render_frames
    from joyvasa.renderer import load_renderer, to_uint8
    from joyvasa.video import Mp4Writer
    from joyvasa.weights import WeightsLocation

    location = WeightsLocation(explicit_dir=root)
    renderer = load_renderer("human", location=location, dtype=dtype)
    generator = load_motion_generator(root / "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt",
                                      root / "JoyVASA/motion_template/motion_template.pkl")
    image = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    audio = 0.1 * torch.randn(int(seconds * 16000), generator=torch.Generator().manual_seed(0))
    out = {}
    t0 = time.perf_counter()
    motion = generate_motion(generator, audio, 16000, seed=0)
    out["motion"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    source = prepare_source(renderer, image, box_crop(image, (540, 200, 740, 440)))
    paste = PasteBack.for_source(source.image, source.crop.M_c2o)
    x_d = driving_keypoints(renderer, source.keypoints, motion, DrivingOptions(normalize_lip=False)).x_d
    out["source"] = time.perf_counter() - t0
    wg = rest = 0.0
    with tempfile.TemporaryDirectory() as tmp, Mp4Writer(Path(tmp) / "clip.mp4", audio=(audio, 16000)) as writer:
        frames_iter = render_frames(renderer, source.f_s, source.keypoints.x_s, x_d, batch_size)
        while True:
            t0 = time.perf_counter()
            batch = next(frames_iter, None)
            wg += time.perf_counter() - t0
            if batch is None:
                break
            t0 = time.perf_counter()
            writer.write(paste(to_uint8(batch).numpy()))
            rest += time.perf_counter() - t0
        t0 = time.perf_counter()
    out.update(frames=len(motion), warp_generate=wg, other=rest + (time.perf_counter() - t0))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--weights-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    tmp = None
    root = args.weights_dir
    if root is None:
        from joyvasa.testing import standin

        tmp = tempfile.TemporaryDirectory(prefix="joyvasa-bench-")
        root = Path(tmp.name)
        standin.write_liveportrait(standin.kit_dir(), root, "human")
        for rel in ("JoyVASA/motion_generator/motion_generator_hubert_chinese.pt",
                    "JoyVASA/motion_template/motion_template.pkl"):
            standin.write_checkpoint(standin.kit_dir(), rel, root)
    r = run(root, args.seconds, getattr(torch, args.dtype), args.batch_size)
    n = r["frames"]
    total = r["motion"] + r["source"] + r["warp_generate"] + r["other"]
    print(f"end to end, {args.seconds:.1f} s clip, {n} frames, renderer {args.dtype}, batch {args.batch_size}, "
          "1280x720 paste-back + mp4")
    print("| part | seconds | per frame | share of total |")
    print("|---|---:|---:|---:|")
    for key, label in (("motion", "motion generation (once)"), ("source", "source crop, F, M, keypoints (once)"),
                       ("warp_generate", "warp + generate"),
                       ("other", "everything else per frame (uint8, paste-back, H.264)")):
        print(f"| {label} | {r[key]:.2f} | {r[key] / n:.3f} | {r[key] / total:.1%} |")
    print(f"motion real-time factor: {args.seconds / r['motion']:.1f}x faster than real time")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
