"""Sampling motion from the denoiser: DDPM ancestral steps with an x0-predicting model (Ho et al. 2020, Eq. 7).

One step, t = T..1, with the guided estimate x0 = model(x_t, t):

    x_{t-1} = c0 x_t + c1 x0 + sigma_t z,   c0 = (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t),
                                            c1 = (1 - alpha_t) sqrt(abar_{t-1}) / (1 - abar_t),
    z ~ N(0, I) for t > 1 and z = 0 at t = 1.

Long clips are sampled in windows of 100 frames (stride 100, no overlap). Each window is conditioned on the
last 25 generated (normalised) frames and the last 25 audio features of the previous window; the first window
uses the learned start tokens. All windows start from the same x_T, as in the original.

Randomness enters only through the arguments: `x_T` and a noise function `noise(window, t) -> z`.
`seeded_noise` draws from a `torch.Generator` on the CPU (the same seed gives the same motion on every device);
`replay_noise` plays back recorded draws. Classifier-free guidance lives in `GuidedDenoiser`, so the samplers
make one model call per step. Progress goes to `callback(dict)`.

Pose-constrained sampling (RePaint, Lugmayr et al. 2022, without resampling jumps): given a `Constraint` with
normalised values y and a mask m, the known channels of every x_t are replaced by y noised to level t with the
forward process q(x_t | x0 = y):

    x_T   <- m * (sqrt(abar_T) y + sqrt(1 - abar_T) x_T) + (1 - m) * x_T      before the first step,
    x_{t-1} <- m * (sqrt(abar_{t-1}) y + sqrt(1 - abar_{t-1}) z) + (1 - m) * x_{t-1}   after each DDPM update,

with x_{t-1} on the right the ancestral update above and z that step's draw; at t = 1 (level 0) the known
channels are set to y itself, so the sampled x_0 holds y exactly there. The forward-process noise reuses the
entries of x_T and z at the known positions: those entries are otherwise overwritten, so they are fresh
N(0, 1) draws independent of everything the sampler keeps; nothing extra is drawn, the seeded stream is the
one unconstrained sampling uses, an empty mask gives the unconstrained motion bit for bit, and replayed noise
works unchanged. With noise=None (posterior mean only) the known channels follow the mean sqrt(abar_{t-1}) y
after each step (x_T still gives the first level's noise).
The last 25 frames passed to the next window come from x_0, so they hold y too.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor, nn

from .constraint import Constraint
from .schedule import DiffusionSchedule

NoiseFn = Callable[[int, int], Tensor]  # (window, t) -> z, shaped like x_t
Callback = Callable[[dict], None]


class XZeroModel(Protocol):
    def __call__(self, x_t: Tensor, t: int, audio: Tensor, prev_motion: Tensor, prev_audio: Tensor,
                 **window_inputs) -> Tensor: ...


class GuidedDenoiser:
    """Classifier-free guidance on the audio: x0 = u + s (c - u).

    u is the network's output with the current window's audio replaced by the learned null token (the context
    audio stays real), c the output with the audio. Both run as one batch; the last L tokens are kept.
    `window_inputs` computes what depends only on a window's audio (the network's audio attention) once; the
    sampler passes it back at every step of that window. The wrapper itself holds no state between calls.
    """

    def __init__(self, net: nn.Module, null_audio: Tensor, cfg_scale: float, pe_mode: str | None = None):
        self.net, self.null_audio, self.cfg_scale, self.pe_mode = net, null_audio, float(cfg_scale), pe_mode

    def _with_null(self, audio: Tensor, prev_audio: Tensor) -> tuple[Tensor, Tensor]:
        """(null audio; real audio) and the context audio twice, as one batch of 2N."""
        N, L, _ = audio.shape
        null = self.null_audio.to(audio).expand(N, L, -1)
        return torch.cat([null, audio]), torch.cat([prev_audio, prev_audio])

    def window_inputs(self, audio: Tensor, prev_audio: Tensor) -> dict:
        """The network's per-window audio attention for both halves of the batch ({} if it has none)."""
        if not hasattr(self.net, "audio_attention"):
            return {}
        cached = self.net.audio_attention(*self._with_null(audio, prev_audio))
        return {} if cached is None else {"audio_attention": cached}

    def __call__(self, x_t: Tensor, t: int, audio: Tensor, prev_motion: Tensor, prev_audio: Tensor,
                 audio_attention: list[Tensor] | None = None) -> Tensor:
        N, L, _ = x_t.shape
        step = torch.full((2 * N,), t, dtype=torch.long, device=x_t.device)
        both_audio, both_prev = self._with_null(audio, prev_audio)
        extra = {} if audio_attention is None else {"audio_attention": audio_attention}
        if self.pe_mode is not None:
            extra["pe_mode"] = self.pe_mode
        out = self.net(torch.cat([x_t, x_t]), step, both_audio, torch.cat([prev_motion, prev_motion]), both_prev,
                       **extra)[:, -L:]  # (2N, L, D)
        uncond, cond = out[:N], out[N:]
        return uncond + self.cfg_scale * (cond - uncond)


def seeded_noise(generator: torch.Generator, shape: tuple[int, ...], device=None, dtype=None) -> NoiseFn:
    """Fresh N(0, I) draws from `generator` (CPU), in call order, moved to `device`."""

    def noise(window: int, t: int) -> Tensor:
        return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)

    return noise


def replay_noise(z: Tensor, n_steps: int) -> NoiseFn:
    """Play back recorded draws: z[w, j] is window w's j-th draw, used at step t = n_steps - j."""

    def noise(window: int, t: int) -> Tensor:
        return z[window, n_steps - t]

    return noise


def ddpm_step(x_t: Tensor, x0: Tensor, t: int, schedule: DiffusionSchedule, z: Tensor | None) -> Tensor:
    """Posterior mean of q(x_{t-1} | x_t, x0) plus sigma_t z."""
    alpha, abar, abar_prev = schedule.alphas[t], schedule.alpha_bars[t], schedule.alpha_bars[t - 1]
    c0 = (1 - abar_prev) * torch.sqrt(alpha) / (1 - abar)
    c1 = (1 - alpha) * torch.sqrt(abar_prev) / (1 - abar)
    x = c0 * x_t + c1 * x0
    return x if z is None else x + schedule.sigmas[t] * z


def q_sample(y: Tensor, t: int, schedule: DiffusionSchedule, eps: Tensor | None) -> Tensor:
    """x_t ~ q(x_t | x0 = y) = sqrt(abar_t) y + sqrt(1 - abar_t) eps; y itself at t = 0, the mean if eps is None."""
    if t == 0:
        return y
    abar = schedule.alpha_bars[t]
    return torch.sqrt(abar) * y if eps is None else torch.sqrt(abar) * y + torch.sqrt(1 - abar) * eps


def _check_constraint(constraint: Constraint, n_frames: int, dim: int, what: str) -> None:
    if not isinstance(constraint, Constraint):
        raise TypeError(f"constraint must be a joyvasa.motion.Constraint, got {type(constraint).__name__}")
    if tuple(constraint.values.shape) != (n_frames, dim):
        raise ValueError(f"the constraint covers {tuple(constraint.values.shape)} but {what} is ({n_frames}, {dim})")


@torch.no_grad()
def sample_window(model: XZeroModel, x_T: Tensor, schedule: DiffusionSchedule, audio: Tensor, prev_motion: Tensor,
                  prev_audio: Tensor, noise: NoiseFn | None = None, callback: Callback | None = None,
                  window: int = 0, n_windows: int = 1, constraint: Constraint | None = None) -> Tensor:
    """DDPM ancestral sampling of one window, x0 target. x_T (N, L, D) -> x_0 (N, L, D).

    noise: per-step z; None samples the posterior mean only (deterministic, not what the original does).
    constraint: known values (L, D) for this window (module docstring); None = unconstrained."""
    x = x_T
    n_steps = schedule.n_steps
    if constraint is not None:
        _check_constraint(constraint, x_T.shape[1], x_T.shape[2], "a window")
        y, known = constraint.values.to(x_T)[None], constraint.mask.to(x_T.device)  # (1, L, D); (L, D) or (D,)
        x = torch.where(known, q_sample(y, n_steps, schedule, x_T), x_T)
    # what depends only on this window's audio, computed once and passed to every step
    window_inputs = model.window_inputs(audio, prev_audio) if hasattr(model, "window_inputs") else {}
    for i, t in enumerate(range(n_steps, 0, -1)):
        z = noise(window, t) if (noise is not None and t > 1) else None
        x0 = model(x, t, audio, prev_motion, prev_audio, **window_inputs)
        x_next = ddpm_step(x, x0, t, schedule, z)
        if constraint is not None:
            x_next = torch.where(known, q_sample(y, t - 1, schedule, z), x_next)
        if callback is not None:
            callback({"window": window, "n_windows": n_windows, "i": i, "n_steps": n_steps, "t": t, "x": x,
                      "denoised": x0})
        x = x_next
    return x


@torch.no_grad()
def sample_motion(model: XZeroModel, audio_features: Tensor, schedule: DiffusionSchedule, x_T: Tensor,
                  start_motion: Tensor, start_audio: Tensor, noise: NoiseFn | None = None,
                  callback: Callback | None = None, constraint: Constraint | None = None) -> Tensor:
    """Sample every window in turn. audio_features (W, L, d), x_T (1, L, D), start_* (1, Lp, .)
    -> normalised motion (W, L, D). Window w is conditioned on window w - 1's last Lp frames and features.
    constraint: known values over all W * L frames (window w gets frames w L .. w L + L - 1); None = none."""
    W = audio_features.shape[0]
    Lp = start_motion.shape[1]
    _, L, D = x_T.shape
    if constraint is not None:
        _check_constraint(constraint, W * L, D, f"{W} window(s) of {L} frames")
    prev_motion, prev_audio = start_motion, start_audio
    windows = []
    for w in range(W):
        audio = audio_features[w : w + 1]  # (1, L, d)
        known = None if constraint is None else constraint.take(torch.arange(w * L, (w + 1) * L))
        x0 = sample_window(model, x_T, schedule, audio, prev_motion, prev_audio, noise, callback, w, W, known)
        windows.append(x0)
        prev_motion, prev_audio = x0[:, -Lp:], audio[:, -Lp:]
    return torch.cat(windows)
