"""All the speed and memory figures in one run:  .venv/bin/python -m benchmarks [--quick]

1. renderer s/frame per network, float32 and bfloat16, GFLOP/s against this machine's convolution peak;
2. motion generator: seconds of compute per second of audio;
3. end to end on a short clip: one-off costs and the per-frame cost beyond warp + generate;
4. peak RSS of a 10 s and a 60 s clip streamed to an mp4.
"""
from __future__ import annotations

import argparse
import sys

from benchmarks import memory, pipeline, render


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 repeat, a 1 s end-to-end clip")
    parser.add_argument("--e2e-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    repeats = "1" if args.quick else "3"
    print("## 1. renderer\n")
    render.main(["--repeats", repeats])
    print("\n## 2 and 3. motion and end to end (bfloat16 renderer)\n")
    pipeline.main(["--seconds", "1" if args.quick else str(args.e2e_seconds)])
    print("\n## 4. memory while streaming to a file\n")
    memory.main(["--seconds", "10", "60"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
