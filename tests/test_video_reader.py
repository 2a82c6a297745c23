"""Video input (joyvasa.video_reader): exact frame counts, seeking with B-frames, sound, bad files."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from joyvasa.video import Mp4Writer
from joyvasa.video_reader import probe_video, read_video_audio, read_video_frames, resample_times

H, W = 64, 96


def _frame(i: int) -> np.ndarray:
    """Frame i shows a bright 2-pixel column at x = 2 i on a grey picture, so its index can be read back."""
    frame = np.full((H, W, 3), 60, np.uint8)
    frame[:, 2 * i: 2 * i + 2] = 250
    return frame


def _index(frame: np.ndarray) -> int:
    return int(np.argmax(frame[H // 2, :, 1].astype(int))) // 2


def _write_gop_video(path, n: int, fps=30, gop: int = 8):
    """H.264 with a keyframe every ``gop`` frames and B-frames (packets stored out of display order)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "2", "crf": "12"}
        for i in range(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_frame(i), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory):
    return _write_gop_video(tmp_path_factory.mktemp("video") / "gop.mp4", 40)


def test_probe_counts_every_frame_and_reads_the_rate(gop_video):
    """40 frames at 30 fps, stored with B-frames (decode order differs from display order)."""
    with av.open(str(gop_video)) as container:
        pts = [p.pts for p in container.demux(container.streams.video[0]) if p.size]
    assert pts != sorted(pts), "the test video should store frames out of display order"
    info = probe_video(gop_video)
    assert (info.width, info.height, info.frames) == (W, H, 40)
    assert info.fps == Fraction(30) and isinstance(info.fps, Fraction)
    assert info.duration == pytest.approx(40 / 30)
    assert not info.has_audio


def test_full_decoding_gives_the_frames_in_display_order(gop_video):
    frames = list(read_video_frames(gop_video))
    assert len(frames) == 40
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    assert [_index(f) for f in frames] == list(range(40))


@pytest.mark.parametrize("start, stop", [(1, 5), (8, 9), (11, 27), (15, None), (33, 40), (39, 100), (0, 3)])
def test_a_range_equals_the_same_frames_of_a_full_decode(gop_video, start, stop):
    """Seeking (to the keyframe before ``start``, keyframes every 8 frames) gives exactly the frames a full
    decode gives at those indices."""
    full = list(read_video_frames(gop_video))
    part = list(read_video_frames(gop_video, start, stop))
    expected = full[start:stop]
    assert len(part) == len(expected)
    for got, want in zip(part, expected):
        np.testing.assert_array_equal(got, want)


def test_ranges_past_the_end_and_bad_ranges(gop_video):
    assert list(read_video_frames(gop_video, 40)) == []
    assert list(read_video_frames(gop_video, 5, 5)) == []
    with pytest.raises(ValueError, match="start"):
        read_video_frames(gop_video, -1)
    with pytest.raises(ValueError, match="start"):
        read_video_frames(gop_video, 5, 3)


def test_frames_are_decoded_lazily(gop_video):
    """Taking two frames of the iterator decodes as far as needed, not the whole clip (memory stays flat)."""
    frames = read_video_frames(gop_video, 3)
    assert _index(next(frames)) == 3
    assert _index(next(frames)) == 4
    frames.close()


def test_sound_track_comes_back_as_float_channels(tmp_path):
    """A 440 Hz tone written as AAC is read back as (C, T) float32 in [-1, 1] at the file's rate, with the tone."""
    rate = 16000
    t = torch.arange(rate) / rate
    tone = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    path = tmp_path / "talk.mp4"
    with Mp4Writer(path, fps=25, audio=(tone, rate)) as writer:
        for i in range(25):
            writer.write(_frame(i)[None])
    info = probe_video(path)
    assert info.has_audio and info.frames == 25 and info.fps == 25
    wave, got_rate = read_video_audio(path)
    assert wave.dtype == torch.float32 and wave.ndim == 2 and wave.shape[0] == 1
    assert got_rate == 48000  # Mp4Writer's AAC rate
    assert wave.shape[1] / got_rate == pytest.approx(1.0, abs=0.1)
    assert wave.abs().max() <= 1.0
    middle = wave[0, 12000:36000].numpy()
    spectrum = np.abs(np.fft.rfft(middle))
    peak_hz = np.argmax(spectrum) * got_rate / len(middle)
    assert peak_hz == pytest.approx(440, abs=5)
    assert np.sqrt(np.mean(middle ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_no_sound_track_gives_none(gop_video):
    assert read_video_audio(gop_video) is None


def _audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def _no_frames(path):
    """An mkv whose video track exists but holds no frame (the sound track keeps the file valid)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        stream = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


@pytest.mark.parametrize("make, reason", [
    (lambda d: d / "missing.mp4", "does not exist"),
    (lambda d: d, "is a folder"),
    (lambda d: (d / "notes.mp4").write_text("not a video") and d / "notes.mp4", "not a video file"),
    (lambda d: _audio_only(d / "speech.m4a"), "no video track"),
    (lambda d: _no_frames(d / "empty.mkv"), "no frames"),
])
def test_bad_files_get_a_clear_error(tmp_path, make, reason):
    """Every reader refuses the file up front, saying what is wrong and which files work."""
    path = make(tmp_path)
    # read_video_frames does not count the frames first (it streams); an empty track just yields nothing
    for read in (probe_video,) if reason == "no frames" else (probe_video, read_video_frames):
        with pytest.raises(ValueError, match=reason) as err:
            read(path)
        assert f"cannot read video {path}" in str(err.value) and "mp4/mov/webm/mkv" in str(err.value)
    if reason in ("does not exist", "is a folder", "not a video file"):
        with pytest.raises(ValueError, match=reason):
            read_video_audio(path)


def test_resample_times():
    """30 fps -> 25 fps: round(30 * 25 / 30) = 25 positions, 1.2 source frames apart, inside the clip."""
    times = resample_times(30, 30.0, 25.0)
    assert len(times) == 25
    np.testing.assert_allclose(times, np.arange(25) * 1.2)
    up = resample_times(10, 10.0, 25.0)  # upsampling: positions past the last frame are held on it
    assert len(up) == 25 and up[-1] == 9 and up.max() == 9 and np.all(np.diff(up) >= 0)
    assert len(resample_times(1, 30.0, 25.0)) == 1  # at least one frame
    np.testing.assert_allclose(resample_times(7, 25.0, 25.0), np.arange(7))
    with pytest.raises(ValueError, match="fps"):
        resample_times(10, 0.0, 25.0)
    with pytest.raises(ValueError, match="n_frames"):
        resample_times(0, 30.0, 25.0)


def test_synthetic_face_video_with_sound(tmp_path):
    """joyvasa.testing.videos writes the frames it is asked for (a face, or a blue frame without one) and the
    sound."""
    from joyvasa.testing.videos import NO_FACE_BACKGROUND, write_face_video

    tone = 0.3 * torch.sin(2 * torch.pi * 300 * torch.arange(8000) / 16000)
    path = write_face_video(tmp_path / "face.mp4", 5, 30, (48, 64), lambda i: None if i == 2 else (10, 8, 40, 40),
                            audio=(tone, 16000))
    info = probe_video(path)
    assert (info.frames, info.fps, info.width, info.height, info.has_audio) == (5, 30, 64, 48, True)
    frames = list(read_video_frames(path))
    red, blue = (frames[2][..., c].astype(float).mean() for c in (0, 2))
    assert blue > red and abs(red - NO_FACE_BACKGROUND[0]) < 4  # no face: blue-dominant
    assert frames[0][24, 25, 0] > 200 and frames[0][2, 60, 2] < 120  # skin in the box, warm background outside
    assert read_video_audio(path)[0].abs().max() > 0.1
