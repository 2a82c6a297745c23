"""Pauses in speech from the waveform's energy (no model), per motion frame, and the weights that close the lips.

A voice-activity detector in four steps:
1. level: RMS in dB of the mono waveform over each motion frame's span of audio (frame i shows the speech at
   i / fps - delay_s; spans outside the audio are silent);
2. reference: the clip's speech level, the 95th percentile of the levels above `floor_db` (loud syllables;
   a percentile rather than the maximum so that one click does not set it);
3. hysteresis: a frame turns silent below `reference + threshold_db` and back to speech only above
   `reference + threshold_db + hysteresis_db`, so a level hovering at the threshold does not flicker;
   anything below the absolute `floor_db` is silent whatever the speech level (a clip of digital silence);
4. minimum pause: silent runs shorter than `min_pause_s` are gaps between syllables, not pauses, and count as speech.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..motion.constants import FPS
from .curves import smoothstep

SPEECH_PERCENTILE = 95.0
_SILENT_DB = -120.0  # the level given to frames without audio (and the log's floor)


@dataclass(frozen=True)
class SilenceOptions:
    """Voice-activity detector settings; dB values relative to the clip's speech level except `floor_db`."""

    threshold_db: float = -30.0  # quieter than this below the speech level = silent
    hysteresis_db: float = 6.0  # speech resumes only this much above the threshold
    min_pause_s: float = 0.25  # shorter silent runs are gaps between syllables
    floor_db: float = -60.0  # dB full scale: always silent below this

    def __post_init__(self):
        for name in ("threshold_db", "hysteresis_db", "min_pause_s", "floor_db"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"silence {name} must be finite, got {getattr(self, name)}")
        if self.threshold_db >= 0:
            raise ValueError(f"silence threshold_db must be < 0 (dB below the speech level), got {self.threshold_db}")
        if self.hysteresis_db < 0 or self.min_pause_s < 0:
            raise ValueError(f"silence hysteresis_db and min_pause_s must be >= 0, got {self.hysteresis_db}, "
                             f"{self.min_pause_s}")


def frame_levels_db(waveform: Tensor | np.ndarray, sample_rate: int, n_frames: int, fps: float = FPS,
                    delay_s: float = 0.0) -> np.ndarray:
    """(T,) float64 RMS level in dB full scale of the audio each motion frame shows; (C, S) or (S,) waveform."""
    x = torch.as_tensor(waveform).detach().to("cpu", torch.float64)
    x = x.reshape(-1, x.shape[-1]).mean(0).numpy() if x.ndim > 1 else x.numpy()
    energy = np.concatenate([[0.0], np.cumsum(x * x)])  # energy[b] - energy[a] = sum of squares over [a, b)
    i = np.arange(n_frames, dtype=np.float64)
    start = np.round((i / fps - delay_s) * sample_rate).astype(np.int64)
    end = np.round(((i + 1) / fps - delay_s) * sample_rate).astype(np.int64)
    length = np.maximum(end - start, 1)  # samples missing at the edges count as silence
    a, b = np.clip(start, 0, len(x)), np.clip(end, 0, len(x))
    mean_square = (energy[b] - energy[a]) / length
    return np.maximum(10.0 * np.log10(np.maximum(mean_square, 1e-30)), _SILENT_DB)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def find_silences(waveform: Tensor | np.ndarray, sample_rate: int, n_frames: int | None = None, fps: float = FPS,
                  delay_s: float = 0.0, options: SilenceOptions = SilenceOptions()) -> Tensor:
    """(T,) bool: True where motion frame i falls in a pause of the speech (see the module docstring).

    `n_frames` defaults to the frames the delayed audio covers; `delay_s` is the clip's audio delay (frame i
    shows the speech at i / fps - delay_s)."""
    if sample_rate <= 0 or fps <= 0:
        raise ValueError(f"sample_rate and fps must be > 0, got {sample_rate}, {fps}")
    n_samples = torch.as_tensor(waveform).shape[-1]
    if n_frames is None:
        n_frames = math.ceil((n_samples / sample_rate + delay_s) * fps)
    level = frame_levels_db(waveform, sample_rate, n_frames, fps, delay_s)
    heard = level[level > options.floor_db]
    if heard.size == 0:
        return torch.ones(n_frames, dtype=torch.bool)
    low = np.percentile(heard, SPEECH_PERCENTILE) + options.threshold_db
    high = low + options.hysteresis_db
    silent = np.empty(n_frames, dtype=bool)
    quiet = True  # before the audio starts
    for k, db in enumerate(level):
        quiet = db < low if not quiet else db <= high
        silent[k] = quiet or db < options.floor_db
    min_frames = math.ceil(options.min_pause_s * fps - 1e-9)
    for a, b in _runs(silent):
        if b - a < min_frames:
            silent[a:b] = False
    return torch.from_numpy(silent)


def pause_weights(silent: Tensor, fps: float = FPS, attack_s: float = 0.08, release_s: float = 0.08) -> Tensor:
    """(T,) float64 closing weight: 0 in speech, easing to 1 over `attack_s` after a pause starts and back to 0
    over `release_s` before it ends (smoothstep), so speech frames are never touched. A pause shorter than
    attack + release peaks below 1."""
    if not (math.isfinite(attack_s) and math.isfinite(release_s)) or attack_s < 0 or release_s < 0:
        raise ValueError(f"attack_s and release_s must be finite and >= 0, got {attack_s}, {release_s}")
    mask = torch.as_tensor(silent).cpu().numpy().astype(bool)
    w = np.zeros(mask.shape[0], dtype=np.float64)
    for a, b in _runs(mask):
        k = np.arange(b - a, dtype=np.float64)
        up = np.ones_like(k) if attack_s == 0 else (k + 1) / (attack_s * fps)
        down = np.ones_like(k) if release_s == 0 else (b - a - k) / (release_s * fps)
        w[a:b] = np.minimum(up, down)
    return smoothstep(torch.from_numpy(w))
