"""Motion generator speed on this machine: seconds of compute per second of audio, at full size.

    .venv/bin/python -m benchmarks.motion              # random weights of the released sizes
    .venv/bin/python -m benchmarks.motion --checkpoint .../motion_generator_hubert_chinese.pt --seconds 10 30

Random weights cost exactly what the released ones cost (same shapes, same 50 steps, CFG batch of 2).
Prints one row per clip length: frames, windows, audio-encoder time, sampling time, total, and the ratio
compute seconds / audio seconds (below 1 = faster than real time).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from joyvasa.motion import MotionGenerator, MotionTemplate, generate_motion, load_motion_generator
from joyvasa.motion.audio import pad_silence, plan_windows, split_windows
from joyvasa.motion.audio_encoder import AudioEncoder, build_speech_model, default_encoder_config
from joyvasa.motion.decode import TEMPLATE_KEYS
from joyvasa.motion.denoiser import DenoiserConfig, DenoisingNetwork
from joyvasa.motion.schedule import cosine_schedule


def random_full_size_generator() -> MotionGenerator:
    torch.manual_seed(0)
    encoder = AudioEncoder(build_speech_model(default_encoder_config("hubert"), "hubert"))
    cfg = DenoiserConfig()
    template = MotionTemplate.from_arrays({k: np.full(n, 1.0 if k.startswith(("std", "max")) else 0.0, np.float32)
                                           for k, n in TEMPLATE_KEYS.items()})
    return MotionGenerator(encoder, DenoisingNetwork(cfg), cosine_schedule(50), template,
                           start_motion=torch.randn(1, cfg.n_prev_motions, cfg.motion_dim),
                           start_audio=torch.randn(1, cfg.n_prev_motions, cfg.d_model),
                           null_audio=torch.randn(1, 1, cfg.d_model)).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="official motion_generator_hubert_chinese.pt (optional)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[4.0, 10.0], help="clip lengths to time")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    opts = parser.parse_args()
    if opts.threads:
        torch.set_num_threads(opts.threads)

    t0 = time.perf_counter()
    model = load_motion_generator(opts.checkpoint) if opts.checkpoint else random_full_size_generator()
    model = model.to(opts.device)
    print(f"model ready in {time.perf_counter() - t0:.1f} s ({'checkpoint' if opts.checkpoint else 'random weights'}, "
          f"device {opts.device}, {torch.get_num_threads()} threads, torch {torch.__version__})")

    generate_motion(model, 0.1 * torch.randn(8000), 16000)  # warm-up
    header = (f"{'audio s':>8} {'frames':>7} {'windows':>8} {'encoder s':>10} {'sampler s':>10} {'total s':>8} "
              f"{'s per s':>8}")
    print(header)
    print("-" * len(header))
    for seconds in opts.seconds:
        audio = 0.1 * torch.randn(int(seconds * 16000), generator=torch.Generator().manual_seed(0))
        padded = pad_silence(audio)
        plan = plan_windows(padded.shape[0], model.window_frames)
        windows = split_windows(padded, plan)
        t0 = time.perf_counter()
        model.encode_audio(windows)
        encoder_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        motion = generate_motion(model, audio, 16000, seed=0)
        total = time.perf_counter() - t0
        print(f"{seconds:8.1f} {len(motion):7d} {plan.n_windows:8d} {encoder_s:10.2f} {total - encoder_s:10.2f} "
              f"{total:8.2f} {total / seconds:8.3f}")


if __name__ == "__main__":
    main()
