"""X-Pose animal-face detection speed on the CPU at full size: seconds per image.

    .venv/bin/python -m benchmarks.xpose [--weights-dir DIR] [--size 450x300] [--repeats 3]

Without --weights-dir, a stand-in `liveportrait_animals/xpose.pth` is written to a temporary folder from the
parity kit (timings do not depend on weight values). The image is resized to short side 800 as in animal mode
(450 x 300, the kit's cat, becomes a 1200 x 800 network input). Prints a table: median seconds per call,
batch 1 (wall clock, and CPU time summed over threads: the wall time inflates when other processes share the
cores), and the peak RSS.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _median_seconds(fn, repeats: int) -> tuple[float, float]:
    """Median (wall-clock seconds, CPU seconds of all threads) per call, after one warm-up call."""
    fn()  # warm-up (oneDNN primitive creation)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", type=Path, default=None, help="folder holding liveportrait_animals/xpose.pth")
    parser.add_argument("--size", default="450x300", help="input image WIDTHxHEIGHT before the detector's resize")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from joyvasa.face.xpose import XPOSE_FILE, animal_face_prompt, detect_animal_keypoints, load_xpose
    from joyvasa.face.xpose.preprocess import preprocess
    from joyvasa.weights import WeightsLocation

    tmp = None
    root = args.weights_dir
    if root is None:
        from joyvasa.testing import standin

        tmp = tempfile.TemporaryDirectory(prefix="joyvasa-bench-")
        root = Path(tmp.name)
        standin.write_checkpoint(standin.kit_dir(), XPOSE_FILE, root, seed=0)
    model = load_xpose(WeightsLocation(explicit_dir=root))

    width, height = (int(v) for v in args.size.lower().split("x"))
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    x = preprocess(image)
    prompt = animal_face_prompt()

    with torch.no_grad():
        pre = _median_seconds(lambda: preprocess(image), args.repeats)
        backbone = _median_seconds(lambda: model.backbone[0](x), args.repeats)
        network = _median_seconds(lambda: model(x, prompt), args.repeats)
        total = _median_seconds(lambda: detect_animal_keypoints(model, image), args.repeats)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [
        ("preprocess (PIL resize + normalise)", pre),
        ("Swin-T backbone", backbone),
        ("encoder + decoder + heads (network - backbone)", tuple(n - b for n, b in zip(network, backbone))),
        ("whole network", network),
        ("detect_animal_keypoints (per image)", total),
    ]

    print(f"X-Pose benchmark: float32, CPU, {torch.get_num_threads()} threads, batch 1, image {width}x{height} -> "
          f"network input {x.shape[-1]}x{x.shape[-2]}, median of {args.repeats}, torch {torch.__version__}")
    print(f"| {'step':48s} | {'s/image':>8s} | {'CPU s':>8s} |")
    print(f"|{'-' * 50}|{'-' * 10}|{'-' * 10}|")
    for name, (wall, cpu) in rows:
        print(f"| {name:48s} | {wall:8.3f} | {cpu:8.3f} |")
    print(f"| {'peak RSS (MB)':48s} | {peak_mb:8.0f} | {'':8s} |")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
