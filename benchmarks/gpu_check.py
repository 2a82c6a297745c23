"""GPU check, for when a CUDA (or MPS) machine is at hand: the real CLI on the GPU, speed, memory, and frames
compared with the CPU.

    .venv/bin/python -m benchmarks.gpu_check [--device cuda] [--seconds 2] [--weights-dir DIR] [--out DIR]

Stand-in weights of the official sizes (the parity kit's rules, `joyvasa.testing.standin`) unless
--weights-dir is given. Steps, each printed as a table row:
1. `python -m joyvasa animate` in-process on the device in fp32, then bf16 and fp16 (box crop of a 1280x720
   picture, synthetic speech): exit code, seconds, seconds per frame, peak device memory.
2. The same clip through `animate_portrait` on the CPU (fp32) and on the device (fp32, bf16, fp16), the uint8
   frames compared: largest pixel difference and PSNR against the CPU run (the mp4s are lossy, so frames are
   compared before encoding).
Exit code 1 if a CLI run fails or the fp32 device frames differ from the CPU's by more than 2 levels.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BOX = ("540", "200", "740", "440")


def _standin_root(tmp: Path) -> Path:
    from joyvasa.pipeline import portrait_files
    from joyvasa.testing import standin

    root = tmp / "weights"
    for relpath in portrait_files("human", crop_mode="box"):
        standin.write_checkpoint(standin.kit_dir(), relpath, root, 0)
    return root


def _inputs(tmp: Path, seconds: float) -> tuple[Path, Path]:
    import wave

    import cv2

    image = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp / "portrait.png"), image)
    t = np.arange(int(seconds * 16000)) / 16000
    speech = 0.2 * np.sin(2 * np.pi * 180 * t) * np.sin(2 * np.pi * 3 * t)
    with wave.open(str(tmp / "speech.wav"), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes((speech * 32767).astype(np.int16).tobytes())
    return tmp / "portrait.png", tmp / "speech.wav"


def _peak_memory(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return float("nan")


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def cli_runs(device: str, image: Path, audio: Path, root: Path, out: Path) -> list[tuple]:
    from joyvasa.cli import main

    rows = []
    for precision in ("fp32", "bf16", "fp16"):
        target = torch.device(device)
        _reset_peak(target)
        clip = out / f"cli_{device}_{precision}.mp4"
        start = time.perf_counter()
        code = main(["animate", "--image", str(image), "--audio", str(audio), "--out", str(clip), "--device", device,
                     "--precision", precision, "--crop", "box", "--box", *BOX, "--weights-dir", str(root),
                     "--no-download"])
        seconds = time.perf_counter() - start
        frames = _count_frames(clip) if code == 0 else 0
        rows.append((f"CLI {device} {precision}", code, seconds, seconds / max(frames, 1), _peak_memory(target)))
    return rows


def _count_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return container.streams.video[0].frames


def library_frames(device: str, precision: str, image: Path, audio: Path, root: Path) -> tuple[np.ndarray, float]:
    import cv2

    from joyvasa.devices import resolve_dtype
    from joyvasa.motion import decode_audio_file, load_motion_generator
    from joyvasa.pipeline import CropOptions, PortraitOptions, animate_portrait
    from joyvasa.renderer import load_renderer
    from joyvasa.weights import MOTION_CHECKPOINT, MOTION_TEMPLATE, WeightsLocation

    target = torch.device(device)
    renderer = load_renderer("human", location=WeightsLocation(explicit_dir=root), device=target,
                             dtype=resolve_dtype(precision, target))
    generator = load_motion_generator(root / MOTION_CHECKPOINT, root / MOTION_TEMPLATE).to(target)
    picture = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
    waveform, rate = decode_audio_file(audio)
    options = PortraitOptions(crop=CropOptions(mode="box", box=tuple(float(v) for v in BOX)))
    start = time.perf_counter()
    clip = animate_portrait(renderer, generator, picture, waveform, rate, options)
    frames = np.concatenate(list(clip.frames))
    return frames, (time.perf_counter() - start) / len(frames)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "mps", "cpu"))
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the synthetic speech")
    parser.add_argument("--weights-dir", type=Path, default=None, help="default: stand-in weights")
    parser.add_argument("--out", type=Path, default=None, help="keep the mp4s here (default: a temp folder)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        out = args.out or tmp
        out.mkdir(parents=True, exist_ok=True)
        root = args.weights_dir or _standin_root(tmp)
        image, audio = _inputs(tmp, args.seconds)
        failed = False

        print(f"{'run':24s} {'exit':>4s} {'seconds':>8s} {'s/frame':>8s} {'peak GiB':>8s}")
        for name, code, seconds, per_frame, peak in cli_runs(args.device, image, audio, root, out):
            failed |= code != 0
            print(f"{name:24s} {code:4d} {seconds:8.2f} {per_frame:8.3f} {peak:8.2f}")

        reference, cpu_time = library_frames("cpu", "fp32", image, audio, root)
        print(f"\n{'frames vs CPU fp32':24s} {'s/frame':>8s} {'max diff':>8s} {'PSNR dB':>8s}")
        print(f"{'cpu fp32':24s} {cpu_time:8.3f} {0:8d} {'inf':>8s}")
        for precision in ("fp32", "bf16", "fp16"):
            frames, per_frame = library_frames(args.device, precision, image, audio, root)
            diff = int(np.abs(frames.astype(np.int16) - reference.astype(np.int16)).max())
            failed |= precision == "fp32" and diff > 2
            print(f"{args.device + ' ' + precision:24s} {per_frame:8.3f} {diff:8d} {psnr(frames, reference):8.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
