"""Renderer speed on the CPU at full size: seconds per frame for each network and for warp + generate.

    .venv/bin/python -m benchmarks.render [--weights-dir DIR] [--repeats 3] [--dtype float32]

Without --weights-dir, stand-in checkpoints are written to a temporary folder from the parity kit (timings do
not depend on weight values). Prints a table: median seconds per call, batch 1, and the peak RSS.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN primitive creation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args(argv)

    from joyvasa.renderer import (
        appearance_features,
        load_renderer,
        retarget_eye,
        retarget_lip,
        source_keypoints,
        stitch,
        warp_decode,
    )
    from joyvasa.weights import WeightsLocation

    tmp = None
    root = args.weights_dir
    if root is None:
        from tests import standin

        tmp = tempfile.TemporaryDirectory(prefix="joyvasa-bench-")
        root = standin.write_liveportrait(standin.kit_dir(), Path(tmp.name), "human")
    dtype = getattr(torch, args.dtype)
    renderer = load_renderer("human", location=WeightsLocation(explicit_dir=root), dtype=dtype)

    g = torch.Generator().manual_seed(0)
    I_s = torch.rand(1, 3, 256, 256, generator=g)
    f_s = appearance_features(renderer, I_s)
    x_s = source_keypoints(renderer, I_s).x_s
    x_d = x_s + 0.05 * torch.randn(x_s.shape, generator=g)
    warped = warp_decode(renderer, f_s, x_s, x_d)[1].out

    rows = []
    with torch.no_grad():
        rows.append(("F appearance extractor (once per source)",
                     _median_seconds(lambda: appearance_features(renderer, I_s), args.repeats)))
        rows.append(("M motion extractor (once per source)",
                     _median_seconds(lambda: source_keypoints(renderer, I_s), args.repeats)))
        rows.append(("W warping module", _median_seconds(lambda: renderer.warping(f_s, x_s, x_d), args.repeats)))
        rows.append(("G SPADE generator", _median_seconds(lambda: renderer.generator(warped), args.repeats)))
        rows.append(("S stitching + lip + eye MLPs", _median_seconds(
            lambda: (stitch(renderer, x_s, x_d), retarget_lip(renderer, x_s, torch.zeros(1, 2)),
                     retarget_eye(renderer, x_s, torch.zeros(1, 3))), args.repeats)))
        rows.append(("warp + generate (per rendered frame)",
                     _median_seconds(lambda: warp_decode(renderer, f_s, x_s, x_d), args.repeats)))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"renderer benchmark: {args.dtype}, CPU, {torch.get_num_threads()} threads, batch 1, "
          f"median of {args.repeats}, torch {torch.__version__}")
    print(f"| {'step':42s} | {'s/frame':>8s} |")
    print(f"|{'-' * 44}|{'-' * 10}|")
    for name, seconds in rows:
        print(f"| {name:42s} | {seconds:8.3f} |")
    print(f"| {'peak RSS (MB)':42s} | {peak_mb:8.0f} |")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
