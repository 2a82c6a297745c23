"""Where models run and in which precision: the one policy shared by the CLI, the nodes and the library.

A user names a device ("auto", "cpu", "cuda", "mps") and a precision ("auto", "fp32", "bf16", "fp16"); both
are checked here, before any model is loaded, and turned into a `torch.device` and a `torch.dtype`.
Placement rule of the pipeline: models live on one device; every tensor a step is given is moved to its
model's device once, at the step's entry; keypoints and motion stay float32 whatever the precision, and only
feature volumes and images take the renderer's dtype.
"""
from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceUnavailableError(ValueError):
    """The device the user asked for is not on this machine (or not in this PyTorch build)."""


def cuda_available() -> bool:
    return torch.cuda.is_available()


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def torch_device(kind: str) -> torch.device:
    """The torch device of a resolved kind ("cpu", "cuda", "mps"): the single place devices are made, so
    tests can stand in a pretend GPU for "cuda"."""
    return torch.device(kind)


def resolve_device(choice: str = "auto") -> torch.device:
    """'auto' = CUDA if present, else Apple MPS, else the CPU; a named device must be available."""
    if choice not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}; got {choice!r}")
    if choice == "cuda" and not cuda_available():
        raise DeviceUnavailableError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU here (a CPU-only "
                                     "build of torch, or no driver); use device auto or cpu")
    if choice == "mps" and not mps_available():
        raise DeviceUnavailableError("device 'mps' was asked for, but Apple MPS is not available here; use "
                                     "device auto or cpu")
    if choice == "auto":
        choice = "cuda" if cuda_available() else "mps" if mps_available() else "cpu"
    return torch_device(choice)


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """'fp32' / 'bf16' / 'fp16' as named; 'auto' = bf16 on a CUDA GPU that supports it, else fp32 (on the CPU
    and on MPS bf16 is often slower or unsupported; pick it by name where it pays off)."""
    if precision in PRECISION_DTYPES:
        return PRECISION_DTYPES[precision]
    if precision != "auto":
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}; got {precision!r}")
    if device.type not in ("cpu", "mps") and cuda_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32
