"""Streaming video input with PyAV: probe a file, read its frames one at a time, read its sound track.

Frames are decoded one by one, so memory stays flat whatever the clip's length. Frame indices are exact: they
are the rank of each frame's presentation time among all the video packets' times (read by demuxing, without
decoding), so seeking into a clip with B-frames (stored out of display order) gives the same frames as decoding
it from the start.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

__all__ = ["VideoInfo", "probe_video", "read_video_frames", "read_video_audio", "resample_times"]

_FORMAT_HINT = "use an mp4/mov/webm/mkv file with a video track (H.264, H.265, VP9, AV1, ...)"


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` finds in a video file.

    * ``width`` / ``height``: frame size in pixels.
    * ``fps``: the video track's average frame rate (frames per second, exact fraction, e.g. 30000/1001).
    * ``frames``: exact number of frames (video packets counted by demuxing, nothing decoded).
    * ``duration``: seconds, ``frames / fps``.
    * ``has_audio``: whether the file has a sound track.
    """

    path: Path
    width: int
    height: int
    fps: Fraction
    frames: int
    duration: float
    has_audio: bool


def _bad(path: Path, reason: str) -> ValueError:
    return ValueError(f"cannot read video {path}: {reason}; {_FORMAT_HINT}.")


def _open(path) -> tuple[Path, object]:
    """The opened container, or a clear ValueError for a missing or unreadable file."""
    import av

    path = Path(path)
    if not path.exists():
        raise _bad(path, "the file does not exist")
    if path.is_dir():
        raise _bad(path, "it is a folder, not a file")
    try:
        return path, av.open(str(path))
    except av.FFmpegError as err:
        raise _bad(path, f"it is not a video file FFmpeg can open ({err.strerror or type(err).__name__})") from None


def _video_stream(path: Path, container):
    if not container.streams.video:
        raise _bad(path, "the file has no video track")
    return container.streams.video[0]


def _packet_times(path: Path, container, stream) -> list[int]:
    """Presentation times of all the video packets, sorted: entry i is the time of frame i."""
    import av

    times = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's final empty packet
                continue
            times.append(packet.pts if packet.pts is not None else (times[-1] + 1 if times else 0))
    except av.FFmpegError as err:
        raise _bad(path, f"reading its video packets failed ({err.strerror or type(err).__name__})") from None
    return sorted(times)


def _fps(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(0)


def probe_video(path) -> VideoInfo:
    """Size, frame rate, exact frame count and whether there is sound; a ValueError saying what is wrong for a
    missing file, a file that is not a video, a file without a video track or without frames."""
    path, container = _open(path)
    with container:
        stream = _video_stream(path, container)
        fps = _fps(stream)
        has_audio = bool(container.streams.audio)
        width, height = stream.codec_context.width, stream.codec_context.height
        frames = len(_packet_times(path, container, stream))
    if frames == 0:
        raise _bad(path, "its video track has no frames")
    if fps <= 0:
        raise _bad(path, "its video track has no frame rate")
    if width <= 0 or height <= 0:
        raise _bad(path, f"its frames have no size ({width}x{height})")
    return VideoInfo(path=path, width=int(width), height=int(height), fps=fps, frames=frames,
                     duration=float(frames / fps), has_audio=has_audio)


def _check_range(start: int, stop: int | None) -> None:
    if start < 0 or (stop is not None and stop < start):
        raise ValueError(f"frame range must satisfy 0 <= start <= stop, got start={start}, stop={stop}")


def read_video_frames(path, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Frames ``start .. stop - 1`` (all to the end when ``stop`` is None) as (H, W, 3) uint8 RGB arrays, in
    display order, decoded one at a time. For ``start`` > 0 it seeks to the keyframe before the first wanted
    frame and decodes forward from there; a range past the end gives fewer (or no) frames."""
    _check_range(start, stop)
    path, container = _open(path)  # checked now, so a bad file fails at the call, not at the first next()
    try:
        _video_stream(path, container)
    except ValueError:
        container.close()
        raise
    return _frames(path, container, start, stop)


def _frames(path: Path, container, start: int, stop: int | None) -> Iterator[np.ndarray]:
    import av

    with container:
        stream = _video_stream(path, container)
        stream.thread_type = "AUTO"
        wanted = math.inf if stop is None else stop - start
        given = 0
        try:
            frames = None
            if start > 0:
                times = _packet_times(path, container, stream)
                if start >= len(times):
                    return
                frames = _from_seek(container, stream, times[start])
            if frames is None:  # from the start, or the seek landed past the frame: count frames from 0
                if start > 0:
                    container.seek(0, stream=stream, backward=True, any_frame=False)
                frames = _skip(container.decode(stream), start)
            for frame in frames:
                if given >= wanted:
                    break
                yield frame.to_ndarray(format="rgb24")
                given += 1
        except av.FFmpegError as err:
            raise _bad(path, f"decoding frame {start + given} failed ({err.strerror or type(err).__name__})") from None


def _skip(frames, n: int):
    for i, frame in enumerate(frames):
        if i >= n:
            yield frame


def _from_seek(container, stream, first_pts: int):
    """Decoded frames from the one shown at ``first_pts`` on, after seeking to the keyframe before it; None when
    the frames carry no times or the seek landed after that frame (then the caller decodes from the start)."""
    container.seek(first_pts, stream=stream, backward=True, any_frame=False)
    decoded = container.decode(stream)
    for frame in decoded:
        if frame.pts is None or frame.pts > first_pts:
            return None
        if frame.pts == first_pts:
            return _chain(frame, decoded)
    return None


def _chain(first, rest):
    yield first
    yield from rest


def read_video_audio(path) -> tuple[torch.Tensor, int] | None:
    """The file's (first) sound track as ((C, T) float32 in [-1, 1], sample rate), or None when it has none."""
    import av

    path, container = _open(path)
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or stream.rate
        parts = []
        resampler = None
        try:
            for frame in container.decode(stream):
                if resampler is None:  # planar float keeps the channels apart: to_ndarray gives (C, n)
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=frame.sample_rate)
                    rate = frame.sample_rate
                parts += [f.to_ndarray() for f in resampler.resample(frame)]
            if resampler is not None:
                parts += [f.to_ndarray() for f in resampler.resample(None)]
        except av.FFmpegError as err:
            raise _bad(path, f"decoding its sound track failed ({err.strerror or type(err).__name__})") from None
    if not parts:
        return None
    wave = torch.from_numpy(np.concatenate(parts, axis=1).astype(np.float32, copy=False))
    return wave.clamp_(-1.0, 1.0), int(rate)


def resample_times(n_frames: int, fps: float, out_fps: float) -> np.ndarray:
    """Where each frame of the clip at ``out_fps`` falls in the ``n_frames`` source frames at ``fps``.

    Returns (round(n_frames * out_fps / fps),) float64 source positions ``k * fps / out_fps`` (at least one),
    clipped to [0, n_frames - 1]; interpolate between the frames around each position (or pick the nearest)."""
    if n_frames < 1 or not fps > 0 or not out_fps > 0 or not math.isfinite(fps) or not math.isfinite(out_fps):
        raise ValueError(f"resample_times needs n_frames >= 1 and finite fps > 0, got n_frames={n_frames}, "
                         f"fps={fps}, out_fps={out_fps}")
    count = max(1, round(n_frames * out_fps / fps))
    return np.clip(np.arange(count) * (fps / out_fps), 0, n_frames - 1)
