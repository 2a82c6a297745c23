"""Peak memory of a whole clip streamed to an mp4, in a fresh process per clip length.

    .venv/bin/python -m benchmarks.memory --seconds 10 60

Each run: full-size motion generator (random weights of the released sizes) on synthetic speech, a 1280x720
source with a box crop, rendering in batches with paste-back into the full frame, H.264 + AAC written as the
frames come. The renderer is a small configuration of the same networks: what could grow with the clip
(frames, pasted frames, encoder buffers, motion) is the same, while a full-size renderer would need an hour of
CPU per minute of video here. Prints seconds of audio, frames, wall time and the process's peak RSS.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _one_clip(seconds: float) -> dict:
    import numpy as np
    import torch

    from benchmarks.motion import random_full_size_generator
    from joyvasa.face.source import box_crop
    from joyvasa.motion import generate_motion
    from joyvasa.pipeline import DrivingOptions, animate, prepare_source
    from joyvasa.testing.tiny import tiny_renderer
    from joyvasa.video import Mp4Writer

    renderer = tiny_renderer()
    generator = random_full_size_generator()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    audio = 0.1 * torch.randn(int(seconds * 16000), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    motion = generate_motion(generator, audio, 16000, seed=0)
    source = prepare_source(renderer, image, box_crop(image, (540, 200, 740, 440)))
    with tempfile.TemporaryDirectory() as tmp, Mp4Writer(Path(tmp) / "clip.mp4", audio=(audio, 16000)) as writer:
        for frames in animate(renderer, source, motion, DrivingOptions(normalize_lip=False), True, batch_size=4):
            writer.write(frames)
        n = writer.frames
    return {"seconds": seconds, "frames": n, "wall": time.perf_counter() - start,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(seconds_list) -> list[dict]:
    """Run each clip length in its own process (peak RSS is per process)."""
    rows = []
    for seconds in seconds_list:
        out = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--child", str(seconds)],
                             capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def print_table(rows: list[dict]) -> None:
    print("| clip (s) | frames | wall (s) | peak RSS (MB) |")
    print("|---------:|-------:|---------:|--------------:|")
    for r in rows:
        print(f"| {r['seconds']:8.0f} | {r['frames']:6d} | {r['wall']:8.1f} | {r['peak_mb']:13.0f} |")
    if len(rows) >= 2:
        print(f"peak RSS growth from {rows[0]['seconds']:.0f} s to {rows[-1]['seconds']:.0f} s: "
              f"{rows[-1]['peak_mb'] - rows[0]['peak_mb']:+.0f} MB")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(_one_clip(args.child)))
        return 0
    print_table(measure(args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
