"""Motion Preview: the plot of a motion over time (library function and node), on synthetic motion."""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

from joyvasa.direct.preview import PANELS, audio_envelope, eye_openness, motion_preview, mouth_openness, preview_layout
from joyvasa.direct.silence import find_silences
from joyvasa.motion.decode import MotionSequence
from joyvasa.renderer.keypoints import rotation_matrix
from tests.pack import NAME, PACK

FPS = 25


def make_motion(frames: int = 100, yaw=None, pitch=None, roll=None, exp=None) -> MotionSequence:
    def angle(v):
        return torch.zeros(frames, 1) if v is None else torch.as_tensor(v, dtype=torch.float32).reshape(frames, 1)

    p, y, r = angle(pitch), angle(yaw), angle(roll)
    e = torch.zeros(frames, 21, 3) if exp is None else torch.as_tensor(exp, dtype=torch.float32)
    return MotionSequence(torch.zeros(frames, 70), e, torch.ones(frames, 1), torch.zeros(frames, 3), p, y, r,
                          rotation_matrix(p, y, r))


def wavy_motion(frames: int = 100) -> MotionSequence:
    k = torch.arange(frames, dtype=torch.float32)
    exp = torch.zeros(frames, 21, 3)
    exp[:, 19, 1] = 0.01 * torch.sin(k / 3).abs()
    exp[:, 11, 1] = 0.002 * torch.cos(k / 7)
    return make_motion(frames, yaw=10 * torch.sin(k / 10), pitch=3 * torch.cos(k / 13), roll=k / 50, exp=exp)


def speech_and_silence(seconds: float = 4.0, rate: int = 16000):
    """A 200 Hz tone, silent during [1, 2) s and [3, 4) s."""
    t = torch.arange(int(seconds * rate)) / rate
    on = ((t < 1) | ((t >= 2) & (t < 3))).float()
    return (0.3 * torch.sin(2 * math.pi * 200 * t) * on)[None], rate


def curve_rows(img: np.ndarray, rect, colour, tol: float = 60.0) -> dict[int, float]:
    """column -> mean row of the pixels close to `colour` inside a panel's plot area."""
    x0, y0, x1, y1 = rect
    area = img[y0 + 1:y1, x0 + 1:x1].astype(np.float64)
    close = np.linalg.norm(area - np.array(colour, np.float64), axis=-1) < tol
    rows = np.arange(area.shape[0])[:, None]
    return {x0 + 1 + c: float((rows[:, 0][close[:, c]]).mean()) + y0 + 1
            for c in range(area.shape[1]) if close[:, c].any()}


def changed_columns(a: np.ndarray, b: np.ndarray, rect) -> np.ndarray:
    x0, y0, x1, y1 = rect
    diff = np.any(a[y0:y1 + 1, x0:x1 + 1] != b[y0:y1 + 1, x0:x1 + 1], axis=(0, 2))
    return np.flatnonzero(diff) + x0


def test_shape_dtype_and_height_from_layout():
    img = motion_preview(wavy_motion(), width=800)
    layout = preview_layout(100, FPS, 800, ("yaw", "pitch", "roll", "mouth", "eyes"))
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape == (layout.height, 800, 3)
    wave, rate = speech_and_silence()
    with_audio = motion_preview(wavy_motion(), waveform=wave, sample_rate=rate, width=640)
    assert with_audio.shape[1] == 640 and with_audio.shape[0] > img.shape[0]  # one more panel
    # one frame, and a long clip, both draw
    assert motion_preview(make_motion(1)).shape[1] == 1024
    assert motion_preview(make_motion(25 * 300), panels=("yaw",)).shape[1] == 1024


def test_deterministic():
    wave, rate = speech_and_silence()
    silences = np.zeros(100, bool)
    silences[30:50] = True
    kwargs = dict(waveform=wave, sample_rate=rate, audio_delay=0.08, silences=silences, width=700)
    a = motion_preview(wavy_motion(), before=make_motion(100), **kwargs)
    b = motion_preview(wavy_motion(), before=make_motion(100), **kwargs)
    assert np.array_equal(a, b)


def test_yaw_ramp_draws_a_monotone_curve_in_the_yaw_panel():
    frames = 100
    motion = make_motion(frames, yaw=torch.linspace(-20, 30, frames), pitch=torch.full((frames,), 5.0))
    img = motion_preview(motion, width=900)
    layout = preview_layout(frames, FPS, 900, ("yaw", "pitch", "roll", "mouth", "eyes"))
    rows = curve_rows(img, layout.panels["yaw"], PANELS["yaw"].colour)
    first, last = int(layout.frame_x(0)), int(layout.frame_x(frames - 1))
    cols = [c for c in range(first + 2, last - 1)]
    assert all(c in rows for c in cols), "the yaw curve spans the time axis"
    ys = np.array([rows[c] for c in cols])
    assert np.all(np.diff(ys) <= 0.75), "rising yaw -> the curve climbs (rows decrease) from left to right"
    x0, y0, x1, y1 = layout.panels["yaw"]
    assert ys[0] - ys[-1] > 0.6 * (y1 - y0), "auto-scaled: the ramp fills most of the panel's height"
    # constant pitch draws a flat line in its own panel, and the yaw colour stays out of it
    pitch_rows = curve_rows(img, layout.panels["pitch"], PANELS["pitch"].colour)
    flat = np.array([pitch_rows[c] for c in cols if c in pitch_rows])
    assert len(flat) > 0.9 * len(cols) and np.ptp(flat) < 1.5
    assert not curve_rows(img, layout.panels["pitch"], PANELS["yaw"].colour, tol=30)


def test_silence_shading_only_over_silent_frames():
    frames = 100
    wave, rate = speech_and_silence()
    silences = np.zeros(frames, bool)
    silences[25:50] = True
    silences[75:] = True
    plain = motion_preview(make_motion(frames), waveform=wave, sample_rate=rate, width=800)
    shaded = motion_preview(make_motion(frames), waveform=wave, sample_rate=rate, width=800, silences=silences)
    layout = preview_layout(frames, FPS, 800)
    allowed = set()
    for a, b in ((25, 50), (75, 100)):
        allowed |= set(range(int(layout.slot_x(a)) - 1, int(math.ceil(layout.slot_x(b))) + 1))
    for name in ("yaw", "mouth", "audio"):
        cols = changed_columns(plain, shaded, layout.panels[name])
        assert len(cols) and set(cols.tolist()) <= allowed, name
        # inside each silent run, (nearly) every column is shaded
        for a, b in ((25, 50), (75, 100)):
            inside = range(int(math.ceil(layout.slot_x(a))) + 1, int(layout.slot_x(b)) - 1)
            assert np.isin(np.array(inside), cols).mean() > 0.9, name


def test_before_and_after_differ_only_where_the_motion_differs():
    frames = 100
    k = torch.arange(frames, dtype=torch.float32)
    after = make_motion(frames, yaw=10 * torch.sin(k / 8))
    yaw_before = 10 * torch.sin(k / 8)
    yaw_before[40:60] = 0.0  # inside the after curve's range: the axes stay the same
    before = make_motion(frames, yaw=yaw_before)
    same = motion_preview(after, before=after, width=800)
    diff = motion_preview(after, before=before, width=800)
    layout = preview_layout(frames, FPS, 800, ("yaw", "pitch", "roll", "mouth", "eyes"))
    cols = changed_columns(same, diff, layout.panels["yaw"])
    lo, hi = layout.frame_x(39) - 3, layout.frame_x(60) + 3
    assert len(cols) > 0.8 * (layout.frame_x(59) - layout.frame_x(40))
    assert cols.min() >= lo and cols.max() <= hi
    for name in ("pitch", "roll", "mouth", "eyes"):
        assert len(changed_columns(same, diff, layout.panels[name])) == 0, name
    # without a 'before' the faint curve is absent, and the header's legend too
    alone = motion_preview(after, width=800)
    assert not np.array_equal(alone, same)


def test_openness_proxies_follow_the_lip_and_lid_keypoints():
    frames = 10
    exp = torch.zeros(frames, 21, 3)
    exp[:, 19, 1] = torch.linspace(0, 0.02, frames)  # lower lip drops: the mouth opens
    exp[:, 11, 1] = torch.linspace(0, 0.01, frames)  # upper lids drop...
    exp[:, 15, 1] = torch.linspace(0, 0.01, frames)
    exp[:, 13, 1] = -torch.linspace(0, 0.01, frames)  # ...and lower lids rise: the eyes close
    exp[:, 16, 1] = -torch.linspace(0, 0.01, frames)
    motion = make_motion(frames, exp=exp)
    mouth, eyes = mouth_openness(motion), eye_openness(motion)
    assert mouth[0] == 0 and np.all(np.diff(mouth) > 0) and mouth[-1] == pytest.approx(0.02)
    assert eyes[0] == 0 and np.all(np.diff(eyes) < 0) and eyes[-1] == pytest.approx(-0.02)
    # a 'before' is measured from the main motion's frame 0: a constant offset stays visible
    shifted = make_motion(frames, exp=exp + torch.tensor([0.0, 0.005, 0.0]) * (torch.arange(21) == 19)[None, :, None])
    assert mouth_openness(shifted, motion) == pytest.approx(mouth + 0.005)


def test_audio_envelope_is_aligned_with_the_frames():
    rate = 16000
    wave = torch.zeros(1, rate)  # 1 s, one loud frame slot at [0.4, 0.44) s
    wave[0, int(0.4 * rate):int(0.44 * rate)] = 0.5
    env = audio_envelope(wave, rate, frames=25, fps=25)
    assert np.argmax(env) == 10 and env[10] == pytest.approx(0.5) and np.count_nonzero(env) == 1
    delayed = audio_envelope(wave, rate, frames=25, fps=25, audio_delay=0.08)  # played 2 frames later
    assert np.argmax(delayed) == 12 and np.count_nonzero(delayed) == 1
    assert np.all(audio_envelope(wave, rate, frames=40, fps=25)[25:] == 0)  # past the end: silence


def test_bad_inputs():
    with pytest.raises(ValueError, match="no frames"):
        motion_preview(make_motion(0))
    with pytest.raises(ValueError, match="silences"):
        motion_preview(make_motion(10), silences=np.zeros(5, bool))
    with pytest.raises(ValueError, match="sample_rate"):
        motion_preview(make_motion(10), waveform=torch.zeros(100))
    with pytest.raises(ValueError, match="unknown panels"):
        motion_preview(make_motion(10), panels=("nose",))


def test_node_returns_an_image():
    module = importlib.import_module(f"{NAME}.nodes.preview")
    types = PACK.nodes.types
    node = module.JoyVASAMotionPreview()
    wave, rate = speech_and_silence()
    clip = types.MotionClip(wavy_motion(), wave, rate, 0.08)
    (image,) = node.preview(clip, 512, before=types.MotionClip(make_motion(100), wave, rate, 0.08))
    assert isinstance(image, torch.Tensor) and image.dtype == torch.float32 and image.device.type == "cpu"
    assert image.ndim == 4 and image.shape[0] == 1 and image.shape[2] == 512 and image.shape[3] == 3
    assert 0.0 <= image.min() and image.max() <= 1.0
    silences = find_silences(wave, rate, 100, FPS, 0.08).numpy()
    assert silences[30:45].all() and not silences[5:20].any()  # the pause of [1, 2) s, played 80 ms late
    expected = motion_preview(clip.motion, waveform=wave, sample_rate=rate, audio_delay=0.08, width=512,
                              before=make_motion(100), silences=silences)
    assert torch.equal(image[0], torch.from_numpy(expected).float() / 255)
    (plain,) = node.preview(clip, 512, show_silences=False)
    assert torch.equal(plain[0], torch.from_numpy(motion_preview(
        clip.motion, waveform=wave, sample_rate=rate, audio_delay=0.08, width=512)).float() / 255)
    # schema: every input has a tooltip
    spec = module.JoyVASAMotionPreview.INPUT_TYPES()
    for group in spec.values():
        for name, (_, options) in group.items():
            assert options.get("tooltip"), name
    assert len(module.JoyVASAMotionPreview.OUTPUT_TOOLTIPS) == len(module.JoyVASAMotionPreview.RETURN_TYPES)
    with pytest.raises(ValueError, match="MOTION"):
        node.preview(wavy_motion(), 512)


def test_cli_preview_writes_a_png_of_a_motion_file(tmp_path):
    """`python -m joyvasa preview`: a saved motion (and a second one, faintly) with its audio, as a PNG."""
    import cv2

    from joyvasa.cli import main
    from joyvasa.direct.head import HeadOptions, direct_head
    from joyvasa.direct.motion_file import save_motion
    from joyvasa.motion import generate_motion
    from joyvasa.testing.tiny import tiny_generator

    speech = 0.1 * torch.randn(1, 24000, generator=torch.Generator().manual_seed(0))
    speech[:, 12000:20000] = 0  # a pause
    motion = generate_motion(tiny_generator(), speech, 16000, seed=0)
    save_motion(tmp_path / "take.safetensors", motion)
    save_motion(tmp_path / "calm.safetensors", direct_head(motion, HeadOptions(gain=(0.0, 0.0, 0.0))))
    wav = tmp_path / "speech.wav"
    import wave

    with wave.open(str(wav), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes((speech[0].numpy() * 32767).astype(np.int16).tobytes())
    out = tmp_path / "plot.png"
    assert main(["preview", "--motion", str(tmp_path / "calm.safetensors"), "--before",
                 str(tmp_path / "take.safetensors"), "--audio", str(wav), "--out", str(out), "--width", "640"]) == 0
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] == 640 and image.std() > 10
    assert main(["preview", "--motion", str(tmp_path / "nope.safetensors"), "--out", str(out)]) == 1
