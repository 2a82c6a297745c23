"""Dubbing a video (joyvasa.pipeline.dub, `python -m joyvasa dub`): the driving rule, the frame schedule, the
sound track, and whole runs on tiny models with stand-in face models over synthetic videos.

The synthetic videos carry each frame's index as 6 black/white blocks in the top-right corner, outside the face
crop, so the source frame behind every output frame can be read back from the mp4.
"""
from __future__ import annotations

import math
import subprocess
import sys
import weakref
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from joyvasa.motion import MotionSequence
from joyvasa.pipeline import MotionOptions
from joyvasa.pipeline.dub import (
    DubOptions,
    SpeechDrive,
    dub_audio,
    dub_keypoints,
    dub_video,
    frame_schedule,
    resample_motion,
    scheduled_frames,
)
from joyvasa.renderer import SourceKeypoints
from joyvasa.renderer.keypoints import LIP_KP, rotation_matrix, transform_keypoints

REPO = Path(__file__).resolve().parents[1]
LIP = list(LIP_KP)
OTHER = [k for k in range(21) if k not in LIP_KP]


# ------------------------------------------------------------------------------------------ options

@pytest.mark.parametrize("kwargs, words", [
    (dict(regions="mouth"), "regions must be one of lips, expression, all"),
    (dict(audio_longer="repeat"), "audio_longer must be one of pingpong, loop, hold"),
    (dict(video_longer="cut"), "video_longer must be one of trim, keep"),
    (dict(crop_scale=0), "crop scale"),
    (dict(crop_vy_ratio=float("nan")), "crop vy_ratio"),
    (dict(crop_smoothing=-1), "crop_smoothing"),
    (dict(face_index=-1), "face_index"),
    (dict(det_thresh=2.0), "det_thresh"),
    (dict(batch_size=0), "batch_size"),
    (dict(motion="fast"), "MotionOptions"),
])
def test_bad_options_are_refused_with_the_reason(kwargs, words):
    with pytest.raises(ValueError, match=words):
        DubOptions(**kwargs)


def test_default_options_dub_the_lips_pingpong_and_trim():
    options = DubOptions()
    assert (options.regions, options.audio_longer, options.video_longer) == ("lips", "pingpong", "trim")


# ------------------------------------------------------------------------------------------ the schedule

def test_schedule_when_the_speech_is_longer():
    assert frame_schedule(4, 11, "loop").tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2]
    assert frame_schedule(4, 11, "pingpong").tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2]
    assert frame_schedule(4, 7, "hold").tolist() == [0, 1, 2, 3, 3, 3, 3]
    assert frame_schedule(1, 3, "pingpong").tolist() == [0, 0, 0]
    assert frame_schedule(2, 5, "pingpong").tolist() == [0, 1, 0, 1, 0]
    for mode in ("loop", "pingpong", "hold"):  # "keep" changes nothing when the speech is the longer
        assert frame_schedule(4, 9, mode, "keep").tolist() == frame_schedule(4, 9, mode, "trim").tolist()


def test_schedule_when_the_video_is_longer():
    assert frame_schedule(10, 4, "pingpong", "trim").tolist() == [0, 1, 2, 3]
    assert frame_schedule(10, 4, "loop", "keep").tolist() == list(range(10))
    assert len(frame_schedule(10, 10)) == 10


def test_schedule_refuses_empty_inputs():
    with pytest.raises(ValueError, match="at least one"):
        frame_schedule(0, 5)
    with pytest.raises(ValueError, match="audio_longer"):
        frame_schedule(3, 5, "bounce")


class _CountingReader:
    """A stand-in for read_video_frames: frame k is filled with k; records every (start, stop) read and keeps
    weak references to the frames it made, to count how many are still held."""

    def __init__(self, n: int):
        self.n, self.calls, self.made = n, [], []

    def __call__(self, path, start=0, stop=None):
        stop = self.n if stop is None else min(stop, self.n)
        self.calls.append((start, stop))
        for k in range(start, stop):
            frame = np.full((2, 2, 3), k, np.uint8)
            self.made.append(weakref.ref(frame))
            yield frame

    def alive(self) -> int:
        return sum(ref() is not None for ref in self.made)


@pytest.mark.parametrize("mode", ["loop", "pingpong", "hold"])
def test_scheduled_frames_come_in_schedule_order_holding_few_frames(mode):
    schedule = frame_schedule(23, 80, mode)
    reader = _CountingReader(23)
    seen, most_alive = [], 0
    for frame in scheduled_frames("v.mp4", schedule, block=5, read=reader):
        seen.append(int(frame[0, 0, 0]))
        del frame
        most_alive = max(most_alive, reader.alive())
    assert seen == schedule.tolist()
    assert most_alive <= 5 + 1  # a block of a backward run (and the frame just shown), never the whole video
    if mode == "hold":
        assert len(reader.calls) == 1  # the held last frame is decoded once


def test_scheduled_frames_say_when_the_video_is_shorter_than_promised():
    with pytest.raises(ValueError, match="ended at frame 5"):
        list(scheduled_frames("v.mp4", np.arange(8), block=4, read=_CountingReader(5)))


# ------------------------------------------------------------------------------------------ motion and driving

def _motion(T: int, seed: int = 0, **fields) -> MotionSequence:
    g = torch.Generator().manual_seed(seed)
    values = dict(exp=0.02 * torch.randn(T, 21, 3, generator=g), scale=1 + 0.1 * torch.rand(T, 1, generator=g),
                  t=0.05 * torch.randn(T, 3, generator=g), pitch=5 * torch.randn(T, 1, generator=g),
                  yaw=5 * torch.randn(T, 1, generator=g), roll=5 * torch.randn(T, 1, generator=g))
    values.update(fields)
    R = rotation_matrix(values["pitch"], values["yaw"], values["roll"])
    return MotionSequence(None, R=R, **values)


def _source(B: int, seed: int = 1, yaw=None, pitch=None) -> SourceKeypoints:
    g = torch.Generator().manual_seed(seed)
    pitch = 3 * torch.randn(B, 1, generator=g) if pitch is None else pitch
    roll = 3 * torch.randn(B, 1, generator=g)
    yaw = 10 * torch.randn(B, 1, generator=g) if yaw is None else yaw
    t, exp = 0.05 * torch.randn(B, 3, generator=g), 0.03 * torch.randn(B, 21, 3, generator=g)
    scale, kp = 1.5 + 0.1 * torch.rand(B, 1, generator=g), 0.5 * torch.randn(B, 21, 3, generator=g)
    R = rotation_matrix(pitch, yaw, roll)
    return SourceKeypoints(pitch, yaw, roll, t, exp, scale, kp, R, transform_keypoints(kp, R, exp, scale, t))


def test_resampled_motion_is_linear_in_time_at_the_video_rate():
    T = 11
    k = torch.arange(T, dtype=torch.float32)[:, None]
    motion = _motion(T, exp=(0.01 * k).reshape(T, 1, 1).expand(T, 21, 3).clone(), yaw=2 * k, pitch=-k,
                     roll=0 * k, scale=1 + 0.1 * k, t=torch.cat([0.01 * k, -0.02 * k, 0 * k], 1))
    at_30 = resample_motion(motion, 30.0)
    assert len(at_30) == round(T * 30 / 25)
    time_in_motion_frames = torch.arange(len(at_30), dtype=torch.float32) * 25 / 30
    expected = time_in_motion_frames.clamp(max=T - 1)[:, None]
    torch.testing.assert_close(at_30.yaw, 2 * expected)
    torch.testing.assert_close(at_30.scale, 1 + 0.1 * expected)
    torch.testing.assert_close(at_30.exp[:, 7, 2:], 0.01 * expected)
    torch.testing.assert_close(at_30.R, rotation_matrix(at_30.pitch, at_30.yaw, at_30.roll))
    same = resample_motion(motion, 25.0)
    torch.testing.assert_close(same.exp, motion.exp)


def test_lips_replace_only_the_mouth_and_keep_each_frames_pose():
    src, speech = _source(3), _motion(3, seed=4)
    x = dub_keypoints(src, SpeechDrive.of(speech), "lips")
    torch.testing.assert_close(x[:, OTHER], src.x_s[:, OTHER], rtol=0, atol=1e-6)
    assert (x[:, LIP] - src.x_s[:, LIP]).abs().amax() > 1e-3
    # the mouth is the speech's, not added to the frame's own: another own mouth gives the same lips
    other_mouth = src.exp.clone()
    other_mouth[:, LIP] += 0.05
    x2 = dub_keypoints(src._replace(exp=other_mouth), SpeechDrive.of(speech), "lips")
    torch.testing.assert_close(x2[:, LIP], x[:, LIP], rtol=0, atol=1e-6)


@pytest.mark.parametrize("regions", ["expression", "all"])
def test_a_still_speech_leaves_the_rest_of_the_face_as_it_was(regions):
    still = _motion(1, seed=5)
    still = MotionSequence(None, *(getattr(still, f).expand(4, *getattr(still, f).shape[1:]) for f in
                                   ("exp", "scale", "t", "pitch", "yaw", "roll", "R")))
    src = _source(4)
    x = dub_keypoints(src, SpeechDrive.of(still), regions)
    torch.testing.assert_close(x[:, OTHER], src.x_s[:, OTHER], rtol=0, atol=1e-5)


def test_expression_follows_the_speech_relative_to_its_first_frame():
    speech = _motion(2, seed=6)
    src = _source(2)
    lips = dub_keypoints(src, SpeechDrive.of(speech), "lips")
    expr = dub_keypoints(src, SpeechDrive.of(speech), "expression")
    torch.testing.assert_close(expr[0], lips[0], rtol=0, atol=1e-6)  # frame 0 is the anchor: no change
    change = (expr[1] - lips[1])[OTHER] / src.scale[1]  # s (x_c R + exp_s + d_exp) - s (x_c R + exp_s)
    torch.testing.assert_close(change, (speech.exp[1] - speech.exp[0])[OTHER], rtol=0, atol=1e-5)


def test_all_moves_the_head_relative_to_the_speechs_first_frame():
    B = 3
    turn = torch.tensor([[0.0], [12.0], [-7.0]])  # yaw of the speech relative to its frame 0
    zero = torch.zeros(B, 1)
    exp0 = 0.02 * torch.randn(1, 21, 3, generator=torch.Generator().manual_seed(8)).expand(B, 21, 3)
    speech = _motion(B, exp=exp0.clone(), pitch=zero, roll=zero, yaw=5 + turn,
                     scale=torch.tensor([[1.0], [2.0], [0.5]]),
                     t=torch.tensor([[0.0, 0.0, 0.0], [0.1, -0.2, 0.7], [0.0, 0.3, -0.4]]))
    # no source pitch: then the speech's turn (applied first, R_d,j R_d,0^T) and the source's yaw are turns about
    # one axis, which add up
    src = _source(B, yaw=torch.tensor([[10.0], [20.0], [-15.0]]), pitch=zero)
    x = dub_keypoints(src, SpeechDrive.of(speech), "all")
    # scale multiplies; t moves x and y only
    R = rotation_matrix(src.pitch, src.yaw + turn, src.roll)
    scale = src.scale * torch.tensor([[1.0], [2.0], [0.5]])
    t = src.t + torch.tensor([[0.0, 0.0, 0.0], [0.1, -0.2, 0.0], [0.0, 0.3, 0.0]])
    expected = transform_keypoints(src.kp, R, src.exp, scale, t)
    torch.testing.assert_close(x[:, OTHER], expected[:, OTHER], rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------ the sound track

def test_sound_is_the_delayed_speech_then_the_videos_own():
    fps, rate = 30.0, 48000
    speech = 0.5 * torch.ones(1, 16000)  # 1 s at 16 kHz
    original = torch.stack([torch.linspace(-1, 1, 2 * rate), torch.linspace(1, -1, 2 * rate)])  # 2 s stereo
    wave, out_rate = dub_audio(speech, 16000, (original, rate), 15, 60, fps, delay=0.08)
    assert out_rate == rate and wave.shape == (2, 2 * rate)  # the higher rate; mono speech made stereo
    head = round(15 / fps * rate)
    assert wave[:, : round(0.08 * rate) - 50].abs().max() == 0  # the delay: silence first
    assert wave[:, round(0.1 * rate): head - 50].mean() == pytest.approx(0.5, abs=0.01)
    torch.testing.assert_close(wave[:, head:], original[:, head:])  # the video's own sound, at its own time
    silent, _ = dub_audio(speech, 16000, None, 15, 60, fps, delay=0.0)
    assert silent.shape == (1, 2 * 16000) and silent[:, round(15 / fps * 16000):].abs().max() == 0
    assert dub_audio(None, None, None, 15, 60, fps, 0.0) is None


# ------------------------------------------------------------------------------------------ whole runs

HW = (128, 256)  # the face on the left half, the frame-number blocks top right, outside the face crop
VIDEO_FPS = 30
BITS = 6
BLOCK = 12


def face_box(i: int):
    dx = 15 * math.sin(i / 3)
    return (52 + dx, 36, 104 + dx, 100)


def _marked_frame(i: int, box) -> np.ndarray:
    from joyvasa.testing.videos import face_frame

    frame = face_frame(HW, box).copy()
    for bit in range(BITS):
        x = HW[1] - (bit + 1) * BLOCK
        frame[:BLOCK, x: x + BLOCK] = 255 if (i >> bit) & 1 else 0
    return frame


def _read_mark(frame: np.ndarray) -> int:
    return sum(1 << bit for bit in range(BITS)
               if frame[2:BLOCK - 2, HW[1] - (bit + 1) * BLOCK + 2: HW[1] - bit * BLOCK - 2].mean() > 128)


def _write_video(path: Path, n: int, sound=None, box=face_box) -> Path:
    from joyvasa.video import Mp4Writer

    with Mp4Writer(path, fps=VIDEO_FPS, audio=sound) as writer:
        for i in range(n):
            writer.write(_marked_frame(i, box(i))[None])
    return path


def _tone(hz: float, seconds: float, rate: int) -> torch.Tensor:
    return (0.3 * torch.sin(2 * math.pi * hz * torch.arange(int(seconds * rate)) / rate))[None].float()


def _frames(path: Path) -> np.ndarray:
    from joyvasa.video_reader import read_video_frames

    return np.stack(list(read_video_frames(path)))


def _audio(path: Path) -> tuple[np.ndarray, int] | None:
    from joyvasa.video_reader import read_video_audio

    got = read_video_audio(path)
    return None if got is None else (got[0].mean(0).numpy(), got[1])


def _durations(path: Path) -> tuple[float, float | None]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0] if c.streams.audio else None
        return float(v.duration * v.time_base), None if a is None else float(a.duration * a.time_base)


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def _speech_frames(seconds: float, fps: float = VIDEO_FPS) -> int:
    """Output frames of a speech clip: JoyVASA's motion frames (original timing: 2 lead + 1 tail frame of
    silence, 640 samples at 16 kHz a frame) at the video's rate."""
    motion_frames = int(seconds * 16000) // 640 + 3
    return round(motion_frames * fps / 25)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from joyvasa.face.detect import DET_10G, LANDMARK_106, LANDMARK_203, FaceDetector
    from joyvasa.testing.tiny import tiny_generator, tiny_renderer
    from joyvasa.testing.videos import standin_face_weights

    tmp = tmp_path_factory.mktemp("dub")
    root = standin_face_weights(tmp / "weights", face_box(0), HW)
    detector = FaceDetector(root / DET_10G, root / LANDMARK_106, root / LANDMARK_203)
    return dict(tmp=tmp, root=root, detector=detector, renderer=tiny_renderer(), generator=tiny_generator(),
                long=_write_video(tmp / "long.mp4", 40, sound=(_tone(440, 40 / VIDEO_FPS, 48000), 48000)),
                short=_write_video(tmp / "short.mp4", 6))


def _dub(scene, video, seconds, out, hz=1000.0, **options):
    return dub_video(scene["renderer"], scene["generator"], scene["detector"], video, _tone(hz, seconds, 16000),
                     16000, out, DubOptions(**options))


def test_dub_trims_to_the_speech_keeps_sync_and_follows_the_face(scene, tmp_path):
    out = tmp_path / "dubbed.mp4"
    result = _dub(scene, scene["long"], 0.5, out)
    n = _speech_frames(0.5)
    assert (result.frames, result.dubbed, result.fps, result.lost) == (n, n, VIDEO_FPS, None)
    frames = _frames(out)
    assert frames.shape == (n, *HW, 3)
    with av.open(str(out)) as c:
        assert c.streams.video[0].average_rate == VIDEO_FPS
    video_s, audio_s = _durations(out)
    assert abs(audio_s - video_s) <= 1 / VIDEO_FPS  # A/V in sync within a frame
    assert [_read_mark(f) for f in frames] == list(range(n))  # trimmed: frame i is source frame i
    # the re-rendered face patch (where the frame changed) moves with the drawn face
    centres, faces = [], []
    for i, frame in enumerate(frames):
        changed = np.abs(frame.astype(int) - _marked_frame(i, face_box(i)).astype(int)).max(axis=2) > 30
        cols = np.flatnonzero(changed.any(axis=0))
        centres.append((cols[0] + cols[-1]) / 2)
        faces.append((face_box(i)[0] + face_box(i)[2]) / 2)
    centres, faces = np.array(centres), np.array(faces)
    assert np.ptp(faces) > 20 and np.abs(centres - faces).max() < 6
    assert np.corrcoef(centres, faces)[0, 1] > 0.95
    assert [p.name for p in tmp_path.iterdir()] == ["dubbed.mp4"]


@pytest.mark.parametrize("mode, sources", [
    ("pingpong", [0, 1, 2, 3, 4, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5]),
    ("loop", [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3]),
    ("hold", [0, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5]),
])
def test_a_longer_speech_replays_the_video(scene, tmp_path, mode, sources):
    assert _speech_frames(0.4) == len(sources)
    out = tmp_path / f"{mode}.mp4"
    result = _dub(scene, scene["short"], 0.4, out, audio_longer=mode)
    frames = _frames(out)
    assert result.frames == len(frames) == len(sources)
    assert [_read_mark(f) for f in frames] == sources
    video_s, audio_s = _durations(out)
    assert abs(audio_s - video_s) <= 1 / VIDEO_FPS


def test_keep_passes_the_rest_of_the_video_through_with_its_sound(scene, tmp_path):
    out = tmp_path / "kept.mp4"
    result = _dub(scene, scene["long"], 0.2, out, video_longer="keep")
    n = _speech_frames(0.2)
    assert (result.frames, result.dubbed) == (40, n)
    frames, source = _frames(out), _frames(scene["long"])
    assert [_read_mark(f) for f in frames] == list(range(40))
    kept = np.abs(frames[n:].astype(int) - source[n:].astype(int))
    assert kept.mean() < 1.5 and np.percentile(kept, 99) < 12  # the same frames, up to codec noise
    assert np.abs(frames[: n].astype(int) - source[: n].astype(int)).mean() > 5  # the dubbed ones changed
    sound, rate = _audio(out)
    assert _dominant_hz(sound[int(0.1 * rate): int(n / VIDEO_FPS * rate) - 200], rate) == pytest.approx(1000, abs=40)
    assert _dominant_hz(sound[int(0.5 * rate): int(1.2 * rate)], rate) == pytest.approx(440, abs=20)
    video_s, audio_s = _durations(out)
    assert abs(audio_s - video_s) <= 1 / VIDEO_FPS


def test_a_video_without_sound_gets_the_speech_then_silence(scene, tmp_path):
    out = tmp_path / "silent_rest.mp4"
    result = _dub(scene, scene["short"], 0.05, out, video_longer="keep")
    n = _speech_frames(0.05)
    assert n < 6 and result.frames == 6 and result.dubbed == n
    sound, rate = _audio(out)
    assert np.abs(sound[int(0.09 * rate): int(n / VIDEO_FPS * rate) - 100]).max() > 0.1
    assert np.abs(sound[int(n / VIDEO_FPS * rate) + 300: int(6 / VIDEO_FPS * rate) - 300]).max() < 0.01
    video_s, audio_s = _durations(out)
    assert abs(audio_s - video_s) <= 1 / VIDEO_FPS


def test_a_given_motion_without_speech_gives_a_silent_dub(scene, tmp_path):
    out = tmp_path / "silent.mp4"
    result = dub_video(scene["renderer"], None, scene["detector"], scene["short"], None, None, out,
                       motion=_motion(5, seed=2))
    assert result.frames == round(5 * VIDEO_FPS / 25) == len(_frames(out))
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 0
    with pytest.raises(ValueError, match="speech"):
        dub_video(scene["renderer"], scene["generator"], scene["detector"], scene["short"], None, None,
                  tmp_path / "b.mp4")


def test_regions_drive_more_of_the_face(scene, tmp_path):
    frames = {}
    for regions in ("lips", "expression", "all"):
        _dub(scene, scene["short"], 0.05, tmp_path / f"{regions}.mp4", regions=regions)
        frames[regions] = _frames(tmp_path / f"{regions}.mp4").astype(int)
    assert np.abs(frames["expression"] - frames["lips"]).max() > 0
    assert np.abs(frames["all"] - frames["expression"]).max() > 0


def test_no_face_anywhere_fails_clearly_and_writes_nothing(scene, tmp_path):
    video = _write_video(tmp_path / "empty.mp4", 5, box=lambda i: None)
    out = tmp_path / "out" / "never.mp4"
    with pytest.raises(ValueError, match="no face found in any of the 5 frames"):
        _dub(scene, video, 0.2, out)
    assert not out.parent.exists()


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_a_failure_mid_render_leaves_no_file(scene, tmp_path, stop):
    out = tmp_path / "out" / "half.mp4"

    def fail(done, total):
        if done >= 4:
            raise stop("stop")

    with pytest.raises(stop):
        dub_video(scene["renderer"], scene["generator"], scene["detector"], scene["long"], _tone(500, 0.5, 16000),
                  16000, out, DubOptions(batch_size=2), frame_callback=fail)
    assert not out.parent.exists()  # no mp4, no .partial, not even the folder made for it


def test_bad_inputs_fail_before_any_work(scene, tmp_path):
    from joyvasa.testing.tiny import tiny_renderer

    with pytest.raises(ValueError, match="cannot read video"):
        _dub(scene, tmp_path / "missing.mp4", 0.2, tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="must end in .mp4"):
        _dub(scene, scene["short"], 0.2, tmp_path / "a.avi")
    with pytest.raises(ValueError, match="input"):
        _dub(scene, scene["short"], 0.2, scene["short"])  # would overwrite the video
    animal = tiny_renderer()
    animal.species = "animal"
    with pytest.raises(ValueError, match="human renderer"):
        dub_video(animal, scene["generator"], scene["detector"], scene["short"], _tone(200, 0.2, 16000), 16000,
                  tmp_path / "a.mp4")
    assert list(tmp_path.iterdir()) == []


def test_on_the_pretend_gpu_equals_the_cpu(scene, tmp_path, monkeypatch):
    from joyvasa.motion import generate_motion
    from joyvasa.testing.tiny import tiny_generator, tiny_renderer
    from tests.pretend_gpu import is_pretend, on_pretend_gpu

    motion = generate_motion(scene["generator"], _tone(300, 0.1, 16000), 16000, seed=0)
    args = (scene["short"], _tone(300, 0.1, 16000), 16000)
    options = DubOptions(regions="all", batch_size=3)
    dub_video(tiny_renderer(), None, scene["detector"], *args, tmp_path / "cpu.mp4", options, motion=motion)
    with on_pretend_gpu(monkeypatch) as device:
        renderer = tiny_renderer().to(device)
        assert is_pretend(next(renderer.parameters()))
        dub_video(renderer, None, scene["detector"], *args, tmp_path / "gpu.mp4", options, motion=motion.to(device))
        # sampling on the device too (a motion generator whose outputs are device tensors)
        sampled = dub_video(renderer, tiny_generator().to(device), scene["detector"], *args, tmp_path / "s.mp4",
                            DubOptions(motion=MotionOptions(seed=1)))
    np.testing.assert_array_equal(_frames(tmp_path / "gpu.mp4"), _frames(tmp_path / "cpu.mp4"))
    assert sampled.frames == _speech_frames(0.1)


# ------------------------------------------------------------------------------------------ the command line

def _wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    import wave

    samples = (_tone(700, seconds, rate)[0].numpy() * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(rate)
        f.writeframes(samples.tobytes())
    return path


def test_cli_dubs_through_the_same_path(scene, tmp_path):
    """`dub` end to end in-process, with tiny models handed in through `models` (as the batch workers do);
    the weight files it asks for must still exist (the renderer's and generator's are empty placeholders)."""
    from joyvasa.cli import build_parser
    from joyvasa.dub_command import cmd_dub
    from joyvasa.pipeline import detector_files
    from joyvasa.weights import motion_files, renderer_files

    weights = tmp_path / "weights"
    for rel in [*renderer_files("human").values(), *motion_files()]:
        (weights / rel).parent.mkdir(parents=True, exist_ok=True)
        (weights / rel).touch()
    for rel in detector_files("human"):
        (weights / rel).parent.mkdir(parents=True, exist_ok=True)
        (weights / rel).symlink_to(scene["root"] / rel)
    loaded = []

    def models(key, load):
        loaded.append(key[0])
        return {"renderer": scene["renderer"], "generator": scene["generator"]}.get(key[0]) or load()

    out = tmp_path / "out.mp4"
    args = build_parser().parse_args(["dub", "--video", str(scene["short"]), "--audio", str(_wav(tmp_path / "s.wav",
                                      0.3)), "--out", str(out), "--audio-longer", "loop", "--regions", "expression",
                                      "--weights-dir", str(weights), "--no-download", "--device", "cpu"])
    assert cmd_dub(args, models=models) == 0
    assert sorted(loaded) == ["detector", "generator", "renderer"]
    frames = _frames(out)
    assert [_read_mark(f) for f in frames] == [i % 6 for i in range(_speech_frames(0.3))]


def _run(*args, env_root: Path | None = None):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    if env_root is not None:
        env["JOYVASA_WEIGHTS_DIR"] = str(env_root)
    return subprocess.run([sys.executable, "-m", "joyvasa", "dub", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=600)


def test_cli_errors_are_one_paragraph_and_write_nothing(scene, tmp_path):
    speech = _wav(tmp_path / "s.wav", 0.1)
    cases = [
        (["--video", tmp_path / "nope.mp4", "--audio", speech], "cannot read video"),
        (["--video", speech, "--audio", speech], "cannot read video"),
        (["--video", scene["short"]], "--audio"),
        (["--video", scene["short"], "--audio", tmp_path / "nope.wav"], "audio file not found"),
        (["--video", scene["short"], "--audio", speech, "--crop-smoothing", "-2"], "crop_smoothing"),
    ]
    for args, words in cases:
        result = _run(*args, "--out", tmp_path / "o" / "x.mp4", env_root=tmp_path / "no-weights")
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("error: ") and words in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cli_dubs_with_full_size_weights(kit, standin_weights, tmp_path):
    """The real command with the official file layout (full-size stand-in networks): a few frames only."""
    from joyvasa.testing.videos import standin_face_weights
    from joyvasa.weights import motion_files, renderer_files

    root = standin_weights([*renderer_files("human").values(), *motion_files()])
    weights = tmp_path / "weights"
    for rel in [*renderer_files("human").values(), *motion_files()]:
        (weights / rel).parent.mkdir(parents=True, exist_ok=True)
        (weights / rel).symlink_to(root / rel)
    standin_face_weights(weights, face_box(0), HW)
    video = _write_video(tmp_path / "three.mp4", 3)
    out = tmp_path / "dubbed.mp4"
    result = _run("--video", video, "--audio", _wav(tmp_path / "s.wav", 0.05), "--out", out, env_root=weights)
    assert result.returncode == 0, result.stderr[-2000:]
    frames = _frames(out)
    assert [_read_mark(f) for f in frames] == [0, 1, 2, 1, 0][: _speech_frames(0.05)]
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1
