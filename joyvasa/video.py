"""Streaming MP4 output (H.264 + AAC) with PyAV.

Frames are encoded as they arrive, so memory does not grow with the clip. The file is written under a
temporary name in the destination folder and renamed only when complete: an error or an interrupt never
leaves a half-written video behind.
"""
from __future__ import annotations

import logging
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

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
        self._audio = None if audio is None else _as_channels(*audio, audio_delay)
        self._container = None
        self._video = None
        self._audio_stream = None
        self._tmp: Path | None = None

    def __enter__(self) -> Mp4Writer:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".partial.mp4", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
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
        n_out = int(round(self.frames / float(self.fps) * rate))
        lead = np.zeros((channels, int(round(delay * rate))), dtype=np.float32)
        wave = np.concatenate([lead, wave], axis=1)[:, :n_out]
        wave = np.pad(wave, ((0, 0), (0, n_out - wave.shape[1])))
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
            self._tmp.unlink(missing_ok=True)
            raise
        if exc_type is not None:
            self._tmp.unlink(missing_ok=True)
            return
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.path)
        log.info("wrote %s: %d frames at %s fps", self.path, self.frames, self.fps)


def _as_channels(waveform, sample_rate: int, delay: float) -> tuple[np.ndarray, int, float]:
    """(T,), (C, T) or ComfyUI's (1, C, T) -> (C <= 2, T) float32 numpy."""
    wave = waveform.detach().cpu().float().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(
        waveform, dtype=np.float32)
    wave = wave.reshape(-1, wave.shape[-1]) if wave.ndim > 1 else wave[None]
    if wave.shape[0] > 2:
        wave = wave.mean(axis=0, keepdims=True)  # more than stereo: downmix
    if sample_rate <= 0:
        raise ValueError(f"invalid audio sample rate {sample_rate}")
    return wave.astype(np.float32), int(sample_rate), float(delay)
