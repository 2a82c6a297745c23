"""Streaming MP4 output (H.264 + AAC) with PyAV.

Frames are encoded as they arrive, so memory does not grow with the clip. The file is written under a
temporary name in the destination folder and renamed only when complete: an error or an interrupt never
leaves a half-written video behind.
"""
from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .files import AtomicFile
from .motion.audio import as_channels

log = logging.getLogger(__name__)

AUDIO_RATE = 48000  # AAC output rate (speech of any rate is resampled to it by PyAV)


class Mp4Writer:
    """`with Mp4Writer(path, fps=25, audio=(waveform, rate)) as w: w.write(frames_u8); ...`

    frames: (b, H, W, 3) uint8 RGB (numpy or tensor), every batch the same even size.
    audio: optional (waveform (C, T) or (T,) float in [-1, 1], sample_rate); at close it is delayed by
    `audio_delay` seconds of silence, then trimmed or padded with silence to the video's duration.
    crf: H.264 quality (lower = better and larger; 18 is the original's).
    """

    def __init__(self, path: str | Path, fps: float = 25.0, audio: tuple | None = None, audio_delay: float = 0.0,
                 crf: int = 18, preset: str = "medium"):
        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise ValueError(f"output must be an .mp4 file, got {self.path}")
        self.fps = Fraction(fps).limit_denominator(1001)
        self.crf, self.preset = crf, preset
        self.frames = 0
        self._audio = None if audio is None else _aac_channels(*audio, audio_delay)
        self._container = None
        self._video = None
        self._audio_stream = None
        self._file = AtomicFile(self.path)

    def __enter__(self) -> Mp4Writer:
        import av

        tmp = self._file.__enter__()
        try:
            self._container = av.open(str(tmp), mode="w", format="mp4")
        except BaseException:
            self._file.discard()
            raise
        return self

    def write(self, frames) -> None:
        import av

        frames = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (b, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        h, w = frames.shape[1:3]
        if self._video is None:
            if h % 2 or w % 2:
                raise ValueError(f"H.264 needs even frame sizes, got {w}x{h}; crop or pad the frames")
            self._video = self._container.add_stream("libx264", rate=self.fps)
            self._video.width, self._video.height = w, h
            self._video.pix_fmt = "yuv420p"
            self._video.options = {"crf": str(self.crf), "preset": self.preset}
            if self._audio is not None:  # every stream must exist before the first packet is written
                layout = "stereo" if self._audio[0].shape[0] == 2 else "mono"
                self._audio_stream = self._container.add_stream("aac", rate=AUDIO_RATE, layout=layout)
        elif (h, w) != (self._video.height, self._video.width):
            raise ValueError(f"frame size changed from {self._video.width}x{self._video.height} to {w}x{h}")
        for frame in frames:
            for packet in self._video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                self._container.mux(packet)
        self.frames += len(frames)

    def _write_audio(self) -> None:
        import av

        wave, rate, delay = self._audio
        channels = wave.shape[0]
        wave = fit_audio(wave, rate, self.frames, float(self.fps), delay).numpy()
        layout = "stereo" if channels == 2 else "mono"
        stream = self._audio_stream
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=AUDIO_RATE)
        for start in range(0, wave.shape[1], 4096):
            part = wave[:, start : start + 4096].T.reshape(1, -1)  # packed (interleaved) samples
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format="flt", layout=layout)
            frame.sample_rate = rate
            for resampled in resampler.resample(frame):
                for packet in stream.encode(resampled):
                    self._container.mux(packet)
        for resampled in resampler.resample(None):
            for packet in stream.encode(resampled):
                self._container.mux(packet)
        for packet in stream.encode(None):
            self._container.mux(packet)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if self.frames == 0:
                    raise ValueError("no frames were written; nothing to save")
                for packet in self._video.encode(None):
                    self._container.mux(packet)
                if self._audio is not None:
                    self._write_audio()
            self._container.close()
        except BaseException:
            self._file.discard()
            raise
        self._file.__exit__(exc_type, exc, tb)
        if exc_type is not None:
            return
        log.info("wrote %s: %d frames at %s fps", self.path, self.frames, self.fps)


def fit_audio(waveform, sample_rate: int, n_frames: int, fps: float, delay: float = 0.0) -> torch.Tensor:
    """The sound track of `n_frames` video frames: (C, T) speech delayed by `delay` seconds of silence, then cut
    or padded with silence to n_frames / fps seconds. Returns (C, round(n_frames / fps * rate)) float32."""
    wave = as_channels(waveform)
    lead = round(delay * sample_rate)
    length = round(n_frames / fps * sample_rate)
    wave = torch.nn.functional.pad(wave, (lead, 0))[:, :length]
    return torch.nn.functional.pad(wave, (0, length - wave.shape[1]))


def _aac_channels(waveform, sample_rate: int, delay: float) -> tuple[torch.Tensor, int, float]:
    """Speech as (C <= 2, T) float32 (more channels are downmixed: AAC gets mono or stereo)."""
    wave = as_channels(waveform)
    if wave.shape[0] > 2:
        wave = wave.mean(dim=0, keepdim=True)
    if sample_rate <= 0:
        raise ValueError(f"invalid audio sample rate {sample_rate}")
    return wave, int(sample_rate), float(delay)
