"""The loaded motion generator and the one function that turns speech into per-frame motion.

`generate_motion` is the whole method as a list of named steps:
prepare audio -> silence padding -> windows -> audio features -> guided DDPM sampling -> trim -> decode.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .audio import (
    Alignment,
    PadMode,
    frames_to_keep,
    pad_silence,
    plan_windows,
    prepare_audio,
    split_windows,
)
from .audio_encoder import AudioEncoder
from .constants import DEFAULT_CFG_SCALE, DEFAULT_SMOOTHING, SAMPLE_RATE
from .constraint import Constraint
from .decode import MotionSequence, MotionTemplate, decode_motion
from .denoiser import DenoisingNetwork, PEMode
from .sampler import Callback, GuidedDenoiser, replay_noise, sample_motion, seeded_noise
from .schedule import DiffusionSchedule

log = logging.getLogger(__name__)


class MotionGenerator(nn.Module):
    """Audio encoder + denoiser + schedule + learned start/null tokens + normalisation template.

    Built by `joyvasa.motion.load_motion_generator`. `.to(device)` moves the networks and learned tokens; the
    schedule and the template stay float32 and follow the device at use (they are tiny, and the schedule's
    alpha-bars go down to 1e-6, which half precision cannot hold)."""

    def __init__(self, encoder: AudioEncoder, denoiser: DenoisingNetwork, schedule: DiffusionSchedule,
                 template: MotionTemplate, start_motion: Tensor, start_audio: Tensor, null_audio: Tensor,
                 pad_mode: PadMode = "zero"):
        super().__init__()
        cfg = denoiser.config
        expected = {"start_motion": (1, cfg.n_prev_motions, cfg.motion_dim),
                    "start_audio": (1, cfg.n_prev_motions, cfg.d_model), "null_audio": (1, 1, cfg.d_model)}
        for name, value in (("start_motion", start_motion), ("start_audio", start_audio), ("null_audio", null_audio)):
            if tuple(value.shape) != expected[name]:
                raise ValueError(f"{name} has shape {tuple(value.shape)}, expected {expected[name]}")
        self.encoder = encoder
        self.denoiser = denoiser
        self.template = template
        self.pad_mode: PadMode = pad_mode
        self.register_buffer("start_motion", start_motion.detach().clone())
        self.register_buffer("start_audio", start_audio.detach().clone())
        self.register_buffer("null_audio", null_audio.detach().clone())
        self._schedule = schedule.to("cpu", torch.float32)

    @property
    def schedule(self) -> DiffusionSchedule:
        """The diffusion schedule (float32) on the model's device."""
        return self._schedule.to(self.device)

    @property
    def window_frames(self) -> int:
        return self.denoiser.config.n_motions

    @property
    def device(self) -> torch.device:
        return self.start_motion.device

    @property
    def dtype(self) -> torch.dtype:
        return self.start_motion.dtype

    @property
    def pe_mode(self) -> str:
        """The positional encoding used when a call names none (chosen at loading)."""
        return self.denoiser.config.pe_mode

    @torch.no_grad()
    def encode_audio(self, windows: Tensor) -> Tensor:
        """(W, S) speech windows -> (W, L, d) features, one window at a time (bounded memory)."""
        return torch.cat([self.encoder(w[None].to(self.device, self.dtype)) for w in windows])


@dataclass(frozen=True)
class NoiseReplay:
    """Explicit noise: x_T (1, L, D) and per-step draws z (W, n_steps - 1, 1, L, D), z[w, j] used at
    t = n_steps - j (the layout of the parity kit's recordings)."""

    x_T: Tensor
    z: Tensor


@dataclass(frozen=True)
class SpeechFeatures:
    """Encoded speech: one feature window per 100 frames, and the frame count they stand for."""

    features: Tensor  # (W, L, d) conditional audio features of each window
    n_frames: int  # frames the padded audio covers (the tail of the last window is padding)
    n_samples: int  # 16 kHz samples of the speech itself (before the silence padding)

    @property
    def seconds(self) -> float:
        return self.n_samples / SAMPLE_RATE


@torch.no_grad()
def encode_speech(model: MotionGenerator, waveform: Tensor | np.ndarray, sample_rate: int) -> SpeechFeatures:
    """Speech (any rate, any channels, ComfyUI AUDIO batches too) -> windows of audio features.

    Downmix and resample to 16 kHz mono (soxr HQ, never normalised), 2 frames of silence before and 1 after
    (the original's padding), cut into 100-frame windows, HuBERT, pair-average to 25 fps, project to 256."""
    audio = prepare_audio(waveform, sample_rate)
    padded = pad_silence(audio)
    plan = plan_windows(padded.shape[0], model.window_frames)
    windows = split_windows(padded, plan, model.pad_mode)  # (W, S)
    log.info("motion: %.2f s of audio -> %d frames in %d window(s)", audio.shape[0] / SAMPLE_RATE, plan.n_frames,
             plan.n_windows)
    return SpeechFeatures(model.encode_audio(windows), plan.n_frames, int(audio.shape[0]))


@torch.no_grad()
def sample_speech_motion(model: MotionGenerator, speech: SpeechFeatures, *, seed: int | torch.Generator = 0,
                         cfg_scale: float = DEFAULT_CFG_SCALE, alignment: Alignment = "original",
                         smoothing: float | None = DEFAULT_SMOOTHING, noise: NoiseReplay | None = None,
                         pe_mode: PEMode | None = None, callback: Callback | None = None,
                         constraint: Constraint | None = None) -> MotionSequence:
    """Encoded speech -> per-frame motion (see `generate_motion` for the options)."""
    device, dtype = model.device, model.dtype
    features = speech.features.to(device, dtype)
    n_windows = features.shape[0]
    cfg = model.denoiser.config
    shape = (1, cfg.n_motions, cfg.motion_dim)
    keep = frames_to_keep(speech.n_frames, alignment)
    grid = None if constraint is None else constraint_grid(constraint, n_windows * cfg.n_motions, speech.n_frames,
                                                           keep)
    if noise is not None:
        n_draws = (n_windows, model.schedule.n_steps - 1)
        z_shape = tuple(noise.z.shape)
        if tuple(noise.x_T.shape) != shape or len(z_shape) != 5 or z_shape[0] < n_draws[0] or z_shape[1] < n_draws[1]:
            raise ValueError(f"noise to replay must be x_T {shape} and z ({n_draws[0]}, {n_draws[1]}, 1, "
                             f"{shape[1]}, {shape[2]}) for this clip; got {tuple(noise.x_T.shape)} and "
                             f"{tuple(noise.z.shape)}")
        x_T = noise.x_T.to(device, dtype)
        noise_fn = replay_noise(noise.z.to(device, dtype), model.schedule.n_steps)
    else:
        generator = seed if isinstance(seed, torch.Generator) else torch.Generator("cpu").manual_seed(int(seed))
        x_T = torch.randn(shape, generator=generator).to(device, dtype)
        noise_fn = seeded_noise(generator, shape, device=device, dtype=dtype)
    guided = GuidedDenoiser(model.denoiser, model.null_audio, cfg_scale, pe_mode)
    x0 = sample_motion(guided, features, model.schedule, x_T, model.start_motion, model.start_audio, noise_fn,
                       callback, grid)  # (W, L, D)

    raw = x0.reshape(-1, cfg.motion_dim)[: speech.n_frames]  # drop the padded tail frames
    raw = raw[keep]
    if grid is None:
        return decode_motion(raw.float(), model.template, smoothing)
    given = grid.frame_mask()[: speech.n_frames][keep]  # the given head is not smoothed again
    return decode_motion(raw.float(), model.template, smoothing, keep=given)


def constraint_grid(constraint: Constraint, n_grid: int, n_frames: int, keep: slice) -> Constraint:
    """A constraint over the output frames -> one over the sampled grid of n_grid frames (whole windows).

    The track is fitted to the output's length (`Constraint.fit`: cut, a still frame held, or refused); frames
    the output drops hold the nearest given frame: the 2 silent lead frames under "aligned" timing and the
    padded tail of the last window, so the head does not jump where the output starts or after it ends."""
    if not isinstance(constraint, Constraint):
        raise TypeError(f"constraint must be a joyvasa.motion.Constraint, got {type(constraint).__name__}")
    fitted = constraint.fit(n_frames - keep.start)
    return fitted.take((torch.arange(n_grid) - keep.start).clamp(0, len(fitted) - 1))


@torch.no_grad()
def generate_motion(model: MotionGenerator, waveform: Tensor | np.ndarray, sample_rate: int, *,
                    seed: int | torch.Generator = 0,
                    cfg_scale: float = DEFAULT_CFG_SCALE, alignment: Alignment = "original",
                    smoothing: float | None = DEFAULT_SMOOTHING, noise: NoiseReplay | None = None,
                    pe_mode: PEMode | None = None, callback: Callback | None = None,
                    constraint: Constraint | None = None) -> MotionSequence:
    """Speech -> per-frame LivePortrait motion at 25 fps.

    waveform: any sample rate, (T,), (C, T) or a ComfyUI AUDIO batch (1, C, T); downmixed and resampled to
        16 kHz mono (soxr HQ), never normalised.
    seed: the only randomness: an int or a CPU `torch.Generator`. x_T is drawn first, then every window's
        step noise in order, all on the CPU, so a seed gives the same motion on any device. Ignored if `noise`
        (explicit x_T and per-step draws to replay) is given.
    cfg_scale: audio guidance strength s in u + s (c - u); 1 = plain conditional, higher = stronger lip motion.
    alignment: "original" (default) keeps the original's timing: 2 silent frames lead the speech, so frame k
        shows audio from 80 ms earlier and there are floor(n / 640) + 3 frames. It is the default because it
        reproduces the released pipeline exactly and because frame 0 is then a closed-mouth, silent frame,
        which the renderer uses as the neutral anchor of relative motion. "aligned" drops those 2 lead frames,
        removing the 80 ms lag: frame k shows audio [k/25, (k + 1)/25) s, floor(n / 640) + 1 frames.
    smoothing: EMA strength on head pose, scale and translation (0.01 = the original; None = off).
    pe_mode: the denoiser's positional encoding, "legacy" or "main" (None = the one chosen at loading).
    callback: called after every denoising step with {window, n_windows, i, n_steps, t, x, denoised}.
    constraint: known motion to sample the rest given (`Constraint.from_motion(track, model.template, "head")`:
        lips and expression given a head track). It covers the output frames: a longer track is cut, a single
        frame is held, a shorter one is refused before sampling. The sampled x_0 holds the given values
        exactly and smoothing leaves them as given, so the returned motion has the track's values on the
        constrained channels (to float32 rounding of normalise -> denormalise). Same seed, same draws as
        unconstrained sampling (see `joyvasa.motion.sampler`).
    """
    speech = encode_speech(model, waveform, sample_rate)
    return sample_speech_motion(model, speech, seed=seed, cfg_scale=cfg_scale, alignment=alignment,
                                smoothing=smoothing, noise=noise, pe_mode=pe_mode, callback=callback,
                                constraint=constraint)
