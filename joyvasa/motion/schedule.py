"""The diffusion schedule as data: per-step alpha, cumulative alpha-bar and posterior sigma, index 0 = padding.

The released checkpoint stores its schedule (`diffusion_sched.*`, 51 values each for 50 steps); those buffers
are authoritative and `DiffusionSchedule.from_buffers` takes them as they are. `cosine_schedule` rebuilds
the same kind of schedule from scratch (Nichol & Dhariwal 2021, s = 0.008) for small test models.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

BUFFER_NAMES = ("betas", "alphas", "alpha_bars", "sigmas_flex", "sigmas_inflex")


@dataclass(frozen=True)
class DiffusionSchedule:
    """alphas, alpha_bars, sigmas: (n_steps + 1,) float tensors; entry t belongs to step t (t = 1..n_steps)."""

    alphas: Tensor
    alpha_bars: Tensor
    sigmas: Tensor  # posterior standard deviation sqrt(beta_t (1 - abar_{t-1}) / (1 - abar_t)) ("inflex")

    @property
    def n_steps(self) -> int:
        return self.alphas.shape[0] - 1

    def to(self, device=None, dtype=None) -> DiffusionSchedule:
        return DiffusionSchedule(*(x.to(device=device, dtype=dtype) for x in (self.alphas, self.alpha_bars,
                                                                              self.sigmas)))

    @classmethod
    def from_buffers(cls, buffers: Mapping[str, Tensor]) -> DiffusionSchedule:
        """From the checkpoint's `diffusion_sched.*` buffers (keys without the prefix)."""
        missing = [k for k in ("alphas", "alpha_bars", "sigmas_inflex") if k not in buffers]
        if missing:
            raise ValueError(f"diffusion schedule buffers missing: {missing}")
        lengths = {tuple(v.shape) for v in buffers.values()}
        if len(lengths) != 1 or len(next(iter(lengths))) != 1:
            raise ValueError(f"diffusion schedule buffers must be 1-D of one length, got shapes {sorted(lengths)}")
        return cls(buffers["alphas"].float(), buffers["alpha_bars"].float(), buffers["sigmas_inflex"].float())


def cosine_schedule(n_steps: int = 50, s: float = 0.008) -> DiffusionSchedule:
    """Cosine schedule: abar(k) = cos^2(((k / T) + s) / (1 + s) * pi / 2) / abar(0), betas clipped to
    [1e-4, 0.999], beta_0 = 0 as padding; alpha-bar re-accumulated in log space in float32."""
    k = torch.arange(n_steps + 1, dtype=torch.float64)
    f = torch.cos(((k / n_steps) + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    betas = (1 - abar[1:] / abar[:-1]).clamp(1e-4, 0.999).float()
    betas = torch.cat([betas.new_zeros(1), betas])
    alphas = 1 - betas
    alpha_bars = torch.cumsum(torch.log(alphas), 0).exp()
    prev = torch.cat([alpha_bars.new_ones(1), alpha_bars[:-1]])
    variance = torch.zeros_like(betas)
    variance[1:] = (1 - prev[1:]) / (1 - alpha_bars[1:]) * betas[1:]
    return DiffusionSchedule(alphas, alpha_bars, variance.sqrt())
