"""Renderer speed on the CPU at full size: seconds per frame for each network and for warp + generate, in
float32 and bfloat16, with the achieved GFLOP/s against this machine's convolution peak.

    .venv/bin/python -m benchmarks.render [--weights-dir DIR] [--repeats 3] [--dtypes float32 bfloat16]

Without --weights-dir, stand-in checkpoints are written to a temporary folder from the parity kit (timings do
not depend on weight values). Median of `repeats` runs after a warm-up, batch 1.
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

# Multiply-accumulates per frame of the full-size networks (../shared/spec/liveportrait.md §5, measured with the
# LivePortrait definitions): warp + generate is (171.0 + 445.8) GMAC.
GMAC = {"F": 32.1, "M": 5.8, "W": 171.0, "G": 445.8}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN primitive creation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def conv_peak_gflops(dtype: torch.dtype, repeats: int = 3) -> float:
    """Throughput of one large 3x3 convolution (512 -> 512 channels at 64x64), the floor's reference."""
    conv = torch.nn.Conv2d(512, 512, 3, padding=1).to(dtype)
    x = torch.randn(1, 512, 64, 64).to(dtype)
    seconds = median_seconds(lambda: conv(x), repeats)
    return 2 * 512 * 512 * 9 * 64 * 64 / seconds / 1e9


def measure(root: Path, dtype: torch.dtype, repeats: int) -> dict[str, float]:
    from joyvasa.renderer import appearance_features, load_renderer, source_keypoints, stitch, warp_decode
    from joyvasa.weights import WeightsLocation

    renderer = load_renderer("human", location=WeightsLocation(explicit_dir=root), dtype=dtype)
    g = torch.Generator().manual_seed(0)
    I_s = torch.rand(1, 3, 256, 256, generator=g)
    f_s = appearance_features(renderer, I_s)
    x_s = source_keypoints(renderer, I_s).x_s
    x_d = x_s + 0.05 * torch.randn(x_s.shape, generator=g)
    warped = warp_decode(renderer, f_s, x_s, x_d)[1].out
    with torch.no_grad():
        return {
            "F": median_seconds(lambda: appearance_features(renderer, I_s), repeats),
            "M": median_seconds(lambda: source_keypoints(renderer, I_s), repeats),
            "W": median_seconds(lambda: renderer.warping(f_s, x_s, x_d), repeats),
            "G": median_seconds(lambda: renderer.generator(warped), repeats),
            "S": median_seconds(lambda: stitch(renderer, x_s, x_d), repeats),
            "W+G": median_seconds(lambda: warp_decode(renderer, f_s, x_s, x_d), repeats),
        }


def print_table(results: dict[str, dict[str, float]], peaks: dict[str, float]) -> None:
    names = {"F": "F appearance extractor (once per source)", "M": "M motion extractor (once per source)",
             "W": "W warping module", "G": "G SPADE generator", "S": "S stitching MLP",
             "W+G": "warp + generate, per frame"}
    dtypes = list(results)
    print("| step | " + " | ".join(f"{d} s/frame | {d} GFLOP/s" for d in dtypes) + " |")
    print("|---|" + "---:|---:|" * len(dtypes))
    for key, label in names.items():
        cells = []
        for d in dtypes:
            seconds = results[d][key]
            gmac = GMAC.get(key, GMAC["W"] + GMAC["G"] if key == "W+G" else None)
            cells.append(f"{seconds:.3f} | {2 * gmac / seconds:.0f}" if gmac else f"{seconds:.4f} | -")
        print(f"| {label} | " + " | ".join(cells) + " |")
    total_flop = 2e9 * (GMAC["W"] + GMAC["G"])
    for d in dtypes:
        floor = total_flop / (peaks[d] * 1e9)
        print(f"{d}: conv peak {peaks[d]:.0f} GFLOP/s -> warp + generate floor {floor:.2f} s/frame; "
              f"achieved {results[d]['W+G']:.2f} s ({floor / results[d]['W+G']:.0%} of peak)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtypes", nargs="+", choices=("float32", "bfloat16"), default=["float32", "bfloat16"])
    args = parser.parse_args(argv)

    tmp = None
    root = args.weights_dir
    if root is None:
        from joyvasa.testing import standin

        tmp = tempfile.TemporaryDirectory(prefix="joyvasa-bench-")
        root = standin.write_liveportrait(standin.kit_dir(), Path(tmp.name), "human")
    print(f"renderer: CPU, {torch.get_num_threads()} threads, batch 1, median of {args.repeats}, "
          f"torch {torch.__version__}")
    results = {d: measure(root, getattr(torch, d), args.repeats) for d in args.dtypes}
    peaks = {d: conv_peak_gflops(getattr(torch, d)) for d in args.dtypes}
    print_table(results, peaks)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
