"""Streaming MP4 writer: H.264 + AAC, synced duration, and never a half-written file."""
from __future__ import annotations

import av
import numpy as np
import pytest

from joyvasa.video import Mp4Writer


def _frames(n, h=64, w=80, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _streams(path):
    with av.open(str(path)) as c:
        return {s.type: (s.codec_context.name, s.frames, float(s.duration * s.time_base) if s.duration else None,
                         getattr(s.codec_context, "width", None)) for s in c.streams}


def test_frames_and_audio(tmp_path):
    out = tmp_path / "clip.mp4"
    wave = 0.3 * np.sin(np.linspace(0, 2000, 16000 * 3, dtype=np.float32))  # 3 s, longer than the video
    with Mp4Writer(out, fps=25, audio=(wave, 16000), audio_delay=0.08) as writer:
        for seed in range(5):
            writer.write(_frames(10, seed=seed))
    streams = _streams(out)
    assert streams["video"][:2] == ("h264", 50) and streams["video"][3] == 80
    assert streams["audio"][0] == "aac" and streams["audio"][2] == pytest.approx(2.0, abs=0.05)  # cut to 2 s
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_stereo_tensor_audio(tmp_path):
    import torch

    out = tmp_path / "stereo.mp4"
    with Mp4Writer(out, fps=25, audio=(torch.zeros(1, 2, 8000), 44100)) as writer:
        writer.write(_frames(5))
    assert _streams(out)["audio"][0] == "aac"


def test_error_leaves_no_file(tmp_path):
    out = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError, match="boom"), Mp4Writer(out) as writer:
        writer.write(_frames(3))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_bad_frames_are_refused(tmp_path):
    with pytest.raises(ValueError, match="even"), Mp4Writer(tmp_path / "odd.mp4") as writer:
        writer.write(_frames(2, h=63))
    with pytest.raises(ValueError, match="uint8"), Mp4Writer(tmp_path / "f.mp4") as writer:
        writer.write(_frames(2).astype(np.float32))
    with pytest.raises(ValueError, match="no frames"), Mp4Writer(tmp_path / "empty.mp4"):
        pass
    with pytest.raises(ValueError, match=".mp4"):
        Mp4Writer(tmp_path / "x.avi")
    assert list(tmp_path.iterdir()) == []
