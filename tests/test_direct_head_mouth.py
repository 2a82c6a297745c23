"""Head, mouth (silences) and fade controls of `joyvasa.direct`, and their MOTION -> MOTION nodes.

Properties are checked on synthetic motion: random per-frame fields with R made from the angles, as decoding does.
"""
from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from joyvasa.direct.fade import FadeOptions, fade, fade_weights
from joyvasa.direct.head import HeadOptions, direct_head, keyframe_offsets, parse_keyframes
from joyvasa.direct.mouth import MouthOptions, close_lips, closed_lip_expression, direct_mouth, scale_lips, shift_lips
from joyvasa.direct.silence import SilenceOptions, find_silences, pause_weights
from joyvasa.motion.decode import MotionSequence
from joyvasa.renderer.keypoints import LIP_KP, rotation_matrix
from joyvasa.testing.tiny import tiny_generator, tiny_renderer
from tests.pack import PACK

LIP = list(LIP_KP)
OTHER = [k for k in range(21) if k not in LIP_KP]
FPS = 25.0
REPO = Path(__file__).resolve().parents[1]


def _motion(T: int = 100, seed: int = 0) -> MotionSequence:
    g = torch.Generator().manual_seed(seed)
    pitch, yaw, roll = (torch.randn(T, 1, generator=g) * 5 for _ in range(3))
    return MotionSequence(raw=torch.randn(T, 70, generator=g), exp=torch.randn(T, 21, 3, generator=g) * 0.02,
                          scale=1 + 0.1 * torch.rand(T, 1, generator=g), t=torch.randn(T, 3, generator=g) * 0.05,
                          pitch=pitch, yaw=yaw, roll=roll, R=rotation_matrix(pitch, yaw, roll))


# ------------------------------------------------------------------------------------------------------ head

def test_head_neutral_returns_the_input_itself():
    m = _motion()
    assert direct_head(m, HeadOptions()) is m
    assert direct_head(m, HeadOptions(gain=[1, 1, 1], offset=(0, 0, 0), keyframes="  ", ramp_s=2.0)) is m


def test_head_gain_zero_holds_the_first_frame_pose():
    m = _motion()
    out = direct_head(m, HeadOptions(gain=(0.0, 0.0, 0.0)))
    for axis in ("pitch", "yaw", "roll"):
        assert torch.equal(getattr(out, axis), getattr(m, axis)[:1].expand_as(getattr(m, axis)))
    assert torch.equal(out.R, m.R[:1].expand_as(m.R))
    assert out.exp is m.exp and out.scale is m.scale and out.t is m.t and out.raw is m.raw


def test_head_gain_scales_deviation_per_axis_and_leaves_other_axes_alone():
    m = _motion()
    out = direct_head(m, HeadOptions(gain=(1.0, 2.0, 1.0)))
    assert out.pitch is m.pitch and out.roll is m.roll
    assert torch.equal(out.yaw, m.yaw[:1] + 2.0 * (m.yaw - m.yaw[:1]))
    assert torch.equal(out.R, rotation_matrix(m.pitch, out.yaw, m.roll))


def test_head_offsets_add_exactly_after_frame_0():
    m = _motion()
    out = direct_head(m, HeadOptions(offset=(2.0, -10.0, 5.5), ramp_s=0.0))
    for axis, deg in zip(("pitch", "yaw", "roll"), (2.0, -10.0, 5.5)):
        a = getattr(m, axis)
        assert torch.equal(getattr(out, axis)[1:], a[1:] + torch.tensor(deg))
        assert torch.equal(getattr(out, axis)[0], a[0])  # the anchor the renderer pins to the source
    assert torch.equal(out.R, rotation_matrix(out.pitch, out.yaw, out.roll))


def test_head_offset_eases_in_over_the_ramp():
    m = _motion()
    out = direct_head(m, HeadOptions(offset=(0.0, 12.0, 0.0), ramp_s=0.4))  # 10 frames
    added = (out.yaw - m.yaw)[:, 0]
    assert added[0] == 0 and torch.allclose(added[10:], torch.tensor(12.0), atol=1e-5)
    assert bool((added[1:11].diff() > 0).all())  # rises monotonically during the ramp


def test_keyframes_hit_their_values_and_ease_between():
    keys = parse_keyframes("0:yaw=0; 2s ease: yaw=20, pitch=-5\n3s hold: yaw=0; 100f: roll=4;")
    off = keyframe_offsets(keys, 150, FPS)  # (T, 3) pitch, yaw, roll
    pitch, yaw, roll = off[:, 0], off[:, 1], off[:, 2]
    assert yaw[0] == 0 and yaw[50] == 20 and yaw[75] == 0 and yaw[149] == 0
    assert yaw[25] == 10 and yaw[12] == pytest.approx(20 * (3 * 0.24**2 - 2 * 0.24**3))  # smoothstep, not linear
    assert bool((yaw[51:75] == 20).all())  # hold: the previous value until the key's time
    assert pitch[0] == 0 and pitch[50] == -5 and bool((pitch[50:] == -5).all())  # implicit 0 at time 0, then held
    assert roll[50] == pytest.approx(2.0) and roll[100] == 4  # linear from the implicit 0, frames as time
    m = _motion(150)
    out = direct_head(m, HeadOptions(keyframes="2s ease: yaw=20"))
    assert torch.equal(out.yaw[50], m.yaw[50] + torch.tensor(20.0)) and torch.equal(out.yaw[0], m.yaw[0])


@pytest.mark.parametrize("text, token", [
    ("2.5x: yaw=1", "'2.5x'"),
    ("1s: yew=3", "'yew'"),
    ("1s: yaw=abc", "'yaw=abc'"),
    ("1s yaw=3", "'1s yaw=3'"),
    ("1s bounce: yaw=3", "'bounce'"),
    ("2.5f: yaw=1", "'2.5f'"),
    ("1s: yaw=1, yaw=2", "yaw is given twice"),
    ("-1s: yaw=1", "'-1s'"),
])
def test_bad_keyframes_name_the_token(text, token):
    with pytest.raises(ValueError, match=token.replace(".", r"\.")):
        HeadOptions(keyframes=text)


def test_keyframes_on_one_frame_are_refused_naming_both():
    with pytest.raises(ValueError, match="'1s: yaw=1' and '25f: yaw=2'"):
        keyframe_offsets(parse_keyframes("1s: yaw=1; 25f: yaw=2"), 50, FPS)


def test_distance_scales_scale_exactly_and_framing_shifts_t():
    m = _motion()
    out = direct_head(m, HeadOptions(distance=1.3, shift_x=0.1, shift_y=-0.05, ramp_s=0.0))
    assert torch.equal(out.scale[1:], m.scale[1:] * torch.tensor(1.3)) and torch.equal(out.scale[0], m.scale[0])
    assert torch.equal(out.t[1:, 0], m.t[1:, 0] + torch.tensor(0.1))
    assert torch.equal(out.t[1:, 1], m.t[1:, 1] + torch.tensor(-0.05))
    assert torch.equal(out.t[:, 2], m.t[:, 2]) and torch.equal(out.t[0], m.t[0])
    assert out.R is m.R and out.yaw is m.yaw


@pytest.mark.parametrize("kw", [dict(gain=(1, -1, 1)), dict(offset=(0, math.nan, 0)), dict(gain=(1, 1)),
                                dict(distance=0.0), dict(ramp_s=-1.0), dict(shift_x=math.inf)])
def test_bad_head_options_are_refused(kw):
    with pytest.raises(ValueError):
        HeadOptions(**kw)


# -------------------------------------------------------------------------------------------------- silences

RATE = 16000


def _speech(segments, rate=RATE, seed=0):
    """Noise 'syllables' (4 Hz envelope, never below a fifth) where segments say speech, faint noise elsewhere."""
    g = np.random.default_rng(seed)
    total = sum(d for d, _ in segments)
    n = int(total * rate)
    t = np.arange(n) / rate
    wave = 0.003 * g.standard_normal(n)  # background 40 dB below the speech
    start = 0.0
    for duration, speaking in segments:
        a, b = int(start * rate), int((start + duration) * rate)
        if speaking:
            envelope = 0.2 + 0.8 * np.abs(np.sin(2 * np.pi * 2 * t[a:b]))
            wave[a:b] += 0.3 * envelope * g.standard_normal(b - a)
        start += duration
    return torch.from_numpy(wave.astype(np.float32))[None]


SEGMENTS = [(0.5, True), (0.06, False), (0.44, True), (0.6, False), (1.0, True), (0.6, False), (0.4, True)]


def test_silences_found_at_the_right_frames_and_none_inside_speech():
    """Pauses at 1.0-1.6 s and 2.6-3.2 s; frame i shows the audio at i / 25 - 0.08 s (2 lead frames)."""
    wave = _speech(SEGMENTS)
    silent = find_silences(wave, RATE, n_frames=92, fps=FPS, delay_s=0.08)
    expected = torch.zeros(92, dtype=torch.bool)
    expected[27:42] = True  # 1.0-1.6 s + 2 frames
    expected[67:82] = True  # 2.6-3.2 s + 2 frames
    assert torch.equal(silent, expected)  # the 60 ms gap at 0.5 s and the 2 lead frames are too short to count


def test_tone_bursts_and_digital_silence():
    t = torch.arange(int(2.0 * RATE)) / RATE
    wave = 0.5 * torch.sin(2 * math.pi * 220 * t) * ((t < 0.8) | (t >= 1.4))  # tone, 0.6 s of zeros, tone
    silent = find_silences(wave, RATE, fps=FPS)
    assert silent.shape == (50,) and bool(silent[20:35].all()) and not bool(silent[:20].any())
    assert not bool(silent[35:].any())
    assert bool(find_silences(torch.zeros(1, RATE), RATE, n_frames=25).all())


def test_pause_weights_close_inside_pauses_and_leave_speech_alone():
    silent = torch.zeros(60, dtype=torch.bool)
    silent[10:30] = True  # long pause
    silent[40:43] = True  # short pause
    w = pause_weights(silent, FPS, attack_s=0.12, release_s=0.08)
    assert bool((w[~silent] == 0).all())
    assert bool((w[12:29] == 1).all()) and 0 < w[10] < w[11] < 1 and 0 < w[29] < 1  # 3 frames in, 2 out
    assert 0 < w[41] < 1  # too short to close fully


# ---------------------------------------------------------------------------------------------------- mouth

def test_lips_reach_the_closed_reference_in_long_pauses_and_are_untouched_in_speech():
    wave = _speech(SEGMENTS)
    m = _motion(92)
    out = direct_mouth(m, MouthOptions(close_silences=True), wave, RATE, fps=FPS, audio_delay=0.08)
    silent = find_silences(wave, RATE, 92, FPS, 0.08)
    closed = m.exp[0, LIP]
    assert torch.equal(out.exp[:, OTHER], m.exp[:, OTHER])
    assert torch.equal(out.exp[~silent], m.exp[~silent])  # speech frames bit for bit
    assert torch.equal(out.exp[30:39, LIP], closed.expand(9, -1, -1))  # inside 27..41, after attack/release
    assert not torch.equal(out.exp[28, LIP], m.exp[28, LIP])
    assert torch.equal(out.exp[0], m.exp[0])


def test_close_lips_never_moves_frame_0_and_uses_the_given_reference():
    m = _motion(10)
    ref = torch.full((21, 3), 0.5)
    out = close_lips(m, torch.ones(10), ref)
    assert torch.equal(out.exp[0], m.exp[0]) and torch.equal(out.exp[1:, LIP], ref[LIP].expand(9, -1, -1))
    assert close_lips(m, torch.zeros(10), ref) is m
    with pytest.raises(ValueError, match="weights"):
        close_lips(m, torch.full((10,), 1.5), ref)


def test_lip_gain_scales_around_the_first_frame_lips():
    m = _motion()
    zero = scale_lips(m, 0.0)
    assert torch.equal(zero.exp[:, LIP], m.exp[:1, LIP].expand(100, -1, -1))
    double = scale_lips(m, 2.0)
    ref = m.exp[0, LIP]
    assert torch.equal(double.exp[1:, LIP], ref + 2.0 * (m.exp[1:, LIP] - ref))
    assert torch.equal(double.exp[:, OTHER], m.exp[:, OTHER]) and double.R is m.R


def test_mouth_offset_shifts_lips_holding_the_edges():
    m = _motion(20)
    later = shift_lips(m, 3)
    assert torch.equal(later.exp[3:, LIP], m.exp[:17, LIP])
    assert torch.equal(later.exp[1:3, LIP], m.exp[[0, 0]][:, LIP])
    earlier = shift_lips(m, -3)
    assert torch.equal(earlier.exp[1:17, LIP], m.exp[4:20, LIP])
    assert torch.equal(earlier.exp[17:, LIP], m.exp[[19, 19, 19]][:, LIP])
    assert torch.equal(earlier.exp[0], m.exp[0]) and torch.equal(earlier.exp[:, OTHER], m.exp[:, OTHER])


def test_mouth_neutral_and_bad_options():
    m = _motion()
    assert direct_mouth(m, MouthOptions()) is m
    with pytest.raises(ValueError, match="waveform"):
        direct_mouth(m, MouthOptions(close_silences=True))
    for kw in (dict(lip_gain=-1.0), dict(offset_frames=1.5), dict(attack_s=math.nan)):
        with pytest.raises(ValueError):
            MouthOptions(**kw)
    with pytest.raises(ValueError):
        SilenceOptions(threshold_db=3.0)


def _landmarks(openness: float) -> torch.Tensor:
    lmk = torch.zeros(203, 2)
    lmk[48], lmk[66] = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])  # mouth 1 wide
    lmk[90], lmk[102] = torch.tensor([0.5, 0.0]), torch.tensor([0.5, openness])
    return lmk


def test_closed_lip_expression_from_the_lip_mlp():
    from joyvasa.renderer import retarget_lip, source_keypoints

    renderer = tiny_renderer()
    src = source_keypoints(renderer, torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)))
    anchor = _motion(2).exp[0]
    closed = closed_lip_expression(renderer, src, _landmarks(0.01), anchor)
    delta = retarget_lip(renderer, src.x_s, torch.tensor([[0.01, 0.0]]))[0] / src.scale[0]
    assert torch.allclose(closed[LIP], anchor[LIP] + delta[LIP], atol=1e-5)
    assert torch.equal(closed[OTHER], anchor[OTHER])
    assert not torch.equal(closed, anchor)
    # an open mouth that Render's normalize-lip will close anyway: no second closing here
    assert torch.equal(closed_lip_expression(renderer, src, _landmarks(0.4), anchor, normalize_lip=True), anchor)
    assert not torch.equal(closed_lip_expression(renderer, src, _landmarks(0.4), anchor, normalize_lip=False), anchor)
    with pytest.raises(ValueError, match="landmarks"):
        closed_lip_expression(renderer, src, None, anchor)


# ------------------------------------------------------------------------------------------------------ fade

def test_fade_ends_on_the_still_face_and_leaves_the_middle():
    m = _motion(100)
    out = fade(m, FadeOptions(fade_in_s=0.4, fade_out_s=0.6))  # 10 and 15 frames
    for name in ("exp", "scale", "t", "pitch", "yaw", "roll", "R"):
        f, g = getattr(m, name), getattr(out, name)
        assert torch.equal(g[0], f[0]) and torch.equal(g[-1], f[0]), name
        assert torch.equal(g[10:85], f[10:85]), name
        assert not torch.equal(g[5], f[5]), name
    assert out.raw is m.raw
    w = fade_weights(100, FPS, 0.4, 0.6)
    assert bool((w[:11].diff() > 0).all()) and bool((w[84:].diff() < 0).all())
    assert torch.allclose(out.R[5], rotation_matrix(out.pitch[5:6], out.yaw[5:6], out.roll[5:6])[0])


def test_fade_neutral_and_bad_options():
    m = _motion()
    assert fade(m, FadeOptions()) is m
    with pytest.raises(ValueError, match="fade_in_s"):
        FadeOptions(fade_in_s=-1)


# ----------------------------------------------------------------------------------------------------- nodes

direct = importlib.import_module(f"{PACK.__name__}.nodes.direct")  # not registered yet: imported by name
runtime = PACK.nodes.runtime
DIRECT_NODES = {"JoyVASAHeadMotion": direct.JoyVASAHeadMotion, "JoyVASAMouth": direct.JoyVASAMouth,
                "JoyVASAFade": direct.JoyVASAFade}
HEAD = {k: v[1]["default"] for k, v in direct.JoyVASAHeadMotion.INPUT_TYPES()["required"].items() if k != "motion"}
MOUTH = {k: v[1]["default"] for k, v in direct.JoyVASAMouth.INPUT_TYPES()["required"].items() if k != "motion"}
DRIVING = {k: v[1]["default"] for k, v in PACK.nodes.render.DRIVING_INPUTS.items()}


@pytest.mark.parametrize("node_id", sorted(DIRECT_NODES))
def test_direct_nodes_are_documented(node_id):
    cls = DIRECT_NODES[node_id]
    assert cls.CATEGORY == "JoyVASA" and cls.DESCRIPTION and callable(getattr(cls(), cls.FUNCTION))
    for section in ("required", "optional"):
        for name, spec in cls.INPUT_TYPES().get(section, {}).items():
            assert len(spec) == 2 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES) and all(cls.OUTPUT_TOOLTIPS)
    assert (REPO / "web" / "docs" / f"{node_id}.md").is_file()


def _audio(segments) -> dict:
    return {"waveform": _speech(segments)[None], "sample_rate": RATE}


def test_nodes_chain_motion_to_motion_and_render_accepts_it():
    renderer = runtime.ModelHandle(tiny_renderer(), torch.device("cpu"), species="human", dtype=torch.float32)
    generator = runtime.ModelHandle(tiny_generator(), torch.device("cpu"))
    (speech,) = PACK.nodes.motion.JoyVASAEncodeAudio().encode(generator, _audio([(0.1, True), (0.3, False)]))
    (clip,) = PACK.nodes.motion.JoyVASASampleMotion().sample(generator, speech, 2.8, 0, 0.01, "legacy", "original")
    (head,) = direct.JoyVASAHeadMotion().direct(clip, **{**HEAD, "yaw_gain": 2.0, "keyframes": "0.3s ease: yaw=10"})
    (mouth,) = direct.JoyVASAMouth().direct(head, **{**MOUTH, "close_silences": True, "lip_gain": 1.5})
    (faded,) = direct.JoyVASAFade().direct(mouth, 0.2, 0.2)
    for out in (head, mouth, faded):
        assert (out.waveform is clip.waveform and out.sample_rate == clip.sample_rate and out.fps == clip.fps
                and out.audio_delay == clip.audio_delay and len(out) == len(clip))
    assert not torch.equal(head.motion.yaw, clip.motion.yaw) and torch.equal(mouth.motion.yaw, head.motion.yaw)
    assert not torch.equal(mouth.motion.exp, head.motion.exp)
    neutral = direct.JoyVASAHeadMotion().direct(clip, **HEAD)[0]
    assert neutral.motion is clip.motion  # defaults change nothing
    image = torch.rand(1, 96, 80, 3, generator=torch.Generator().manual_seed(0))
    source, _ = PACK.nodes.source.JoyVASAPrepareSource().prepare(renderer, image, "none", 2.3, 0.0, -0.125, 0, 1280)
    with pytest.raises(ValueError, match="landmarks"):  # no face detector, no lip ratio for the MLP
        direct.JoyVASAMouth().direct(head, **{**MOUTH, "close_silences": True}, renderer=renderer, source=source)
    with pytest.raises(ValueError, match="both"):
        direct.JoyVASAMouth().direct(head, **MOUTH, renderer=renderer)
    frames, audio, fps = PACK.nodes.render.JoyVASARender().render(renderer, source, faded, paste_back=False,
                                                                  batch_size=8, **DRIVING)
    assert frames.shape[0] == len(clip) and bool(torch.isfinite(frames).all()) and fps == 25.0


def test_nodes_refuse_bad_options_before_any_work():
    with pytest.raises(ValueError, match="'yew'"):
        direct.JoyVASAHeadMotion().direct(None, **{**HEAD, "keyframes": "1s: yew=2"})
    with pytest.raises(ValueError, match="fade_out_s"):
        direct.JoyVASAFade().direct(None, 0.5, -1.0)
    with pytest.raises(ValueError, match="MOTION"):
        direct.JoyVASAFade().direct("not a clip", 0.5, 0.5)
    silent_clip = PACK.nodes.types.MotionClip(_motion(10), None, 16000, 0.0)  # e.g. a loaded motion file
    with pytest.raises(ValueError, match="no audio"):
        direct.JoyVASAMouth().direct(silent_clip, **{**MOUTH, "close_silences": True})
    assert direct.JoyVASAMouth().direct(silent_clip, **{**MOUTH, "lip_gain": 0.5})[0].waveform is None
