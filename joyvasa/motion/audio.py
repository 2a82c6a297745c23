"""Audio preparation for the motion generator: decode, downmix, resample, silence padding and windowing.

The original reads speech with `librosa.load(path, sr=16000, mono=True)`: channels are averaged, the signal
is resampled with soxr at "HQ" quality and its length fixed to ceil(n * 16000 / sr), and it is never
normalised. `prepare_audio` does the same for a waveform from anywhere (a ComfyUI AUDIO dict's tensor, a
file decoded by `decode_audio_file`, a numpy array).

Then the original pads 2 frames of silence before the speech and 1 after, cuts the result into windows of
100 frames (64 000 samples, the last one zero-padded) and, per window, reflect-pads 40 samples on each side
for the audio encoder. `plan_windows`, `split_windows` and `pad_for_encoder` reproduce that exactly.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .constants import (
    ENCODER_HOP,
    ENCODER_PAD_THRESHOLD,
    FPS,
    LEAD_SILENCE_FRAMES,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    TAIL_SILENCE_FRAMES,
    WINDOW_FRAMES,
)

log = logging.getLogger(__name__)

Alignment = Literal["original", "aligned"]
PadMode = Literal["zero", "replicate"]
ALIGNMENTS: tuple[str, ...] = ("original", "aligned")

SOXR_QUALITY = "HQ"  # librosa's default res_type 'soxr_hq'


def decode_audio_file(path: str | Path) -> tuple[Tensor, int]:
    """Decode the first audio stream of any file FFmpeg reads (wav, mp3, m4a, flac, a video's sound track).

    Returns (waveform (C, T) float32 in [-1, 1], sample rate). Integer samples are scaled as FFmpeg does
    (int16 / 32768), exactly what librosa gives for a PCM wav.
    """
    import av  # PyAV: the same decoder ComfyUI's LoadAudio uses

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Audio file not found: {path}")
    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise ValueError(f"{path} has no audio stream. Pass a speech recording (wav, mp3, m4a, ...).")
            to_float = av.AudioResampler(format="fltp")  # sample format only: rate and layout are kept
            chunks, rate = [], stream.rate
            for frame in container.decode(stream):
                rate = frame.sample_rate
                chunks += [f.to_ndarray() for f in to_float.resample(frame)]
            chunks += [f.to_ndarray() for f in to_float.resample(None)]
    except av.FFmpegError as err:
        raise ValueError(f"Cannot decode audio from {path}: {err}") from None
    if not chunks:
        raise ValueError(f"{path} contains no audio samples.")
    waveform = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    return torch.from_numpy(waveform), int(rate)


def resample(audio: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a 1-D float32 signal with soxr HQ; the length is fixed to ceil(n * target / source) (librosa)."""
    if sample_rate == target_rate:
        return audio
    import soxr

    out = soxr.resample(audio, sample_rate, target_rate, quality=SOXR_QUALITY).astype(np.float32, copy=False)
    n_target = int(math.ceil(audio.shape[-1] * float(target_rate) / sample_rate))
    if out.shape[-1] >= n_target:
        return out[:n_target]
    return np.pad(out, (0, n_target - out.shape[-1]))


def as_channels(waveform: Tensor | np.ndarray) -> Tensor:
    """One clip of audio as a (C, T) float32 CPU tensor: (T,), (C, T) or a ComfyUI AUDIO batch of one
    (1, C, T). Refuses batches of several clips, empty audio and NaN or infinite samples."""
    x = torch.as_tensor(waveform).detach().to("cpu", torch.float32)
    if x.ndim == 3:
        if x.shape[0] != 1:
            raise ValueError(f"Expected one audio clip, got a batch of {x.shape[0]}. Pass the clips one at a time.")
        x = x[0]
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"Audio must be (samples,), (channels, samples) or (1, channels, samples); "
                         f"got shape {tuple(x.shape)}.")
    if x.shape[-1] == 0:
        raise ValueError("The audio is empty (0 samples). Pass a speech recording.")
    if not torch.isfinite(x).all():
        raise ValueError("The audio contains NaN or infinite samples; it is damaged or not a recording. Re-export "
                         "it (e.g. as 16-bit PCM wav).")
    return x


def prepare_audio(waveform: Tensor | np.ndarray, sample_rate: int) -> Tensor:
    """Any waveform -> (T,) float32 mono at 16 kHz, not normalised (the original's librosa path).

    `waveform` may be (T,), (C, T) or a ComfyUI AUDIO batch (1, C, T); channels are averaged.
    """
    x = as_channels(waveform)
    if sample_rate <= 0:
        raise ValueError(f"Invalid sample rate {sample_rate}.")
    mono = x.mean(dim=0) if x.shape[0] > 1 else x[0]
    out = resample(mono.numpy(), int(sample_rate))
    log.debug("audio: %d ch, %d Hz, %d samples -> %d samples at %d Hz",
              x.shape[0], sample_rate, x.shape[-1], out.shape[-1], SAMPLE_RATE)
    return torch.from_numpy(np.ascontiguousarray(out))


def pad_silence(audio: Tensor) -> Tensor:
    """(T,) -> (T + 1920,): 2 frames of zeros before the speech and 1 after, as the original does."""
    lead = audio.new_zeros(LEAD_SILENCE_FRAMES * SAMPLES_PER_FRAME)
    tail = audio.new_zeros(TAIL_SILENCE_FRAMES * SAMPLES_PER_FRAME)
    return torch.cat([lead, audio, tail])


def frames_to_keep(n_frames: int, alignment: Alignment = "original") -> slice:
    """Which generated frames to return.

    "original" keeps all of them: frame k then shows the audio of [k/25 - 0.08 s, k/25 - 0.04 s), because of
    the 2 leading silent frames, so the mouth lags the unpadded sound track by 80 ms, and the clip is 3 frames
    longer than the audio. "aligned" drops the 2 silent lead frames: frame k shows [k/25, (k + 1)/25) of the
    input audio and there are floor(n_samples / 640) + 1 frames.
    """
    if alignment == "original":
        return slice(0, n_frames)
    if alignment == "aligned":
        return slice(LEAD_SILENCE_FRAMES, n_frames)
    raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}.")


def audio_delay(alignment: Alignment = "original") -> float:
    """Seconds to delay the speech by so that it plays in sync with the frames: the 2 silent lead frames
    (80 ms) of the original timing, 0 when aligned."""
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}.")
    return LEAD_SILENCE_FRAMES / FPS if alignment == "original" else 0.0


@dataclass(frozen=True)
class WindowPlan:
    """How a padded waveform of `n_samples` is cut into windows (the original's gen_motion_sequence)."""

    n_samples: int
    n_frames: int  # frames generated in all: floor(n_samples / 640)
    n_windows: int
    window_frames: int
    n_pad_samples: int  # zeros appended so the windows are full (<= 0: the partial last frame is dropped)

    @property
    def window_samples(self) -> int:
        return self.window_frames * SAMPLES_PER_FRAME


def plan_windows(n_samples: int, window_frames: int = WINDOW_FRAMES) -> WindowPlan:
    """Windows of `window_frames` frames with stride = window (no overlap); the last one is padded."""
    n_frames = n_samples // SAMPLES_PER_FRAME
    n_windows = 1 if n_frames <= window_frames else math.ceil(n_frames / window_frames)
    n_pad = n_windows * window_frames * SAMPLES_PER_FRAME - n_samples
    return WindowPlan(n_samples, n_frames, n_windows, window_frames, n_pad)


def split_windows(audio: Tensor, plan: WindowPlan, pad_mode: PadMode = "zero") -> Tensor:
    """(T,) padded waveform -> (n_windows, window_samples). The tail is filled with zeros ("zero") or with
    the last sample ("replicate"); samples past the last full window are dropped."""
    if pad_mode not in ("zero", "replicate"):
        raise ValueError(f"pad_mode must be 'zero' or 'replicate', got {pad_mode!r}.")
    if plan.n_pad_samples > 0:
        fill = audio[-1] if pad_mode == "replicate" else audio.new_zeros(())
        audio = torch.cat([audio, fill.expand(plan.n_pad_samples)])
    return audio[: plan.n_windows * plan.window_samples].reshape(plan.n_windows, plan.window_samples)


def pad_for_encoder(windows: Tensor) -> Tensor:
    """(N, S) -> (N, S + 2 * side): the original's `pad_audio`.

    side = ceil((320 * floor(S / 320) + 80 - S) / 2) = 40 for whole frames, applied as two successive
    'reflect' pads of side // 2 (the second reflects the first's output), then a 1-sample 'replicate' pad if
    side is odd. The encoder then yields exactly 2 frames per motion frame.
    """
    n, length = windows.shape
    side = math.ceil((ENCODER_HOP * (length // ENCODER_HOP) + ENCODER_PAD_THRESHOLD - length) / 2)
    if side <= 0:
        return windows
    x = windows[:, None]  # (N, 1, S): F.pad's reflect mode needs a channel dim
    reflect = side // 2
    if reflect > 0:
        x = F.pad(x, (reflect, reflect), mode="reflect")
        x = F.pad(x, (reflect, reflect), mode="reflect")
    if side % 2:
        x = F.pad(x, (1, 1), mode="replicate")
    return x[:, 0]
