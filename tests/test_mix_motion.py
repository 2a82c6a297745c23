"""Mix Motion (`joyvasa.direct.mix`) and its node: head, lips and face from different motions, each with a weight.

Synthetic motions: random per-frame fields with R made from the angles, as decoding does.
"""
from __future__ import annotations

import math

import pytest
import torch

from joyvasa.direct.mix import fit_indices, mix_motion
from joyvasa.motion.decode import MotionSequence
from joyvasa.renderer.keypoints import LIP_KP, rotation_matrix
from tests.pack import PACK

LIP = list(LIP_KP)
OTHER = [k for k in range(21) if k not in LIP_KP]
HEAD = ("pitch", "yaw", "roll", "t")
ALL_FIELDS = ("exp", "scale", "t", "pitch", "yaw", "roll", "R")


def _motion(T: int = 40, seed: int = 0) -> MotionSequence:
    g = torch.Generator().manual_seed(seed)
    pitch, yaw, roll = (torch.randn(T, 1, generator=g) * 5 for _ in range(3))
    return MotionSequence(raw=torch.randn(T, 70, generator=g), exp=torch.randn(T, 21, 3, generator=g) * 0.02,
                          scale=1 + 0.1 * torch.rand(T, 1, generator=g), t=torch.randn(T, 3, generator=g) * 0.05,
                          pitch=pitch, yaw=yaw, roll=roll, R=rotation_matrix(pitch, yaw, roll))


def _deltas(x: torch.Tensor) -> torch.Tensor:
    return x - x[:1]


# ------------------------------------------------------------------------------------------------ weights 0 / 1

def test_nothing_to_mix_returns_the_base_itself():
    base = _motion()
    assert mix_motion(base) is base
    assert mix_motion(base, head=_motion(seed=1), head_weight=0.0, lips=_motion(seed=2), lips_weight=0.0,
                      face=_motion(seed=3), face_weight=0.0) is base


def test_a_part_at_weight_0_is_the_base_bit_for_bit():
    base, other = _motion(), _motion(seed=1)
    out = mix_motion(base, head=other, head_weight=0.0, lips=other, lips_weight=1.0)
    for name in ("scale", "t", "pitch", "yaw", "roll", "R"):
        assert torch.equal(getattr(out, name), getattr(base, name)), name
    assert torch.equal(out.exp[:, OTHER], base.exp[:, OTHER])  # face not given
    assert out.raw is None  # the mixed lips no longer match the sampler's output


def test_head_at_weight_1_takes_the_others_movement_from_the_bases_first_frame():
    base, other = _motion(), _motion(seed=1)
    out = mix_motion(base, head=other)
    for name in HEAD:
        assert torch.equal(getattr(out, name)[0], getattr(base, name)[0]), name  # frame 0 stays
        assert torch.allclose(_deltas(getattr(out, name)), _deltas(getattr(other, name)), atol=1e-5), name
    # scale is driven as a ratio to frame 0: the other's ratios, from the base's first scale
    assert torch.equal(out.scale[0], base.scale[0])
    assert torch.allclose(out.scale / out.scale[:1], other.scale / other.scale[:1], atol=1e-6)
    assert torch.allclose(out.R, rotation_matrix(out.pitch, out.yaw, out.roll))
    assert torch.equal(out.exp, base.exp)  # only the head changed


def test_head_half_weight_is_halfway_in_deltas():
    base, other = _motion(), _motion(seed=1)
    out = mix_motion(base, head=other, head_weight=0.5)
    expected = 0.5 * (_deltas(base.yaw) + _deltas(other.yaw))
    assert torch.allclose(_deltas(out.yaw), expected, atol=1e-5)


def test_lip_rows_are_mixed_absolutely():
    base, other = _motion(), _motion(seed=1)
    out = mix_motion(base, lips=other)
    assert torch.equal(out.exp[:, LIP], other.exp[:, LIP])  # frame 0 too: JoyVASA drives the lips absolutely
    assert torch.equal(out.exp[:, OTHER], base.exp[:, OTHER])
    half = mix_motion(base, lips=other, lips_weight=0.25)
    assert torch.allclose(half.exp[:, LIP], 0.75 * base.exp[:, LIP] + 0.25 * other.exp[:, LIP], atol=1e-7)
    for name in ("scale", "t", "pitch", "yaw", "roll", "R"):
        assert torch.equal(getattr(out, name), getattr(base, name))


def test_face_rows_are_mixed_relatively_and_leave_the_lips():
    base, other = _motion(), _motion(seed=1)
    out = mix_motion(base, face=other)
    assert torch.equal(out.exp[0], base.exp[0])
    assert torch.allclose(_deltas(out.exp[:, OTHER]), _deltas(other.exp[:, OTHER]), atol=1e-6)
    assert torch.equal(out.exp[:, LIP], base.exp[:, LIP])


def test_three_sources_at_once():
    base, head, lips, face = (_motion(seed=s) for s in range(4))
    out = mix_motion(base, head=head, lips=lips, face=face)
    assert torch.allclose(_deltas(out.roll), _deltas(head.roll), atol=1e-5)
    assert torch.equal(out.exp[:, LIP], lips.exp[:, LIP])
    assert torch.allclose(_deltas(out.exp[:, OTHER]), _deltas(face.exp[:, OTHER]), atol=1e-6)
    assert all(torch.isfinite(getattr(out, name)).all() for name in ALL_FIELDS)


def test_inputs_are_not_mutated():
    base, other = _motion(), _motion(seed=1)
    copies = [{name: getattr(m, name).clone() for name in ALL_FIELDS} for m in (base, other)]
    mix_motion(base, head=other, lips=other, face=other, head_weight=0.3)
    for m, saved in zip((base, other), copies):
        assert all(torch.equal(getattr(m, name), saved[name]) for name in ALL_FIELDS)


# ---------------------------------------------------------------------------------------------- lengths and fit

def test_fit_indices():
    assert fit_indices(3, 8, "loop").tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert fit_indices(3, 8, "hold").tolist() == [0, 1, 2, 2, 2, 2, 2, 2]
    assert fit_indices(3, 8, "pingpong").tolist() == [0, 1, 2, 1, 0, 1, 2, 1]
    assert fit_indices(1, 4, "pingpong").tolist() == [0, 0, 0, 0]
    assert fit_indices(10, 4, "loop").tolist() == [0, 1, 2, 3]  # longer: trimmed


@pytest.mark.parametrize("fit", ["loop", "hold", "pingpong"])
def test_a_shorter_head_is_fitted_to_the_base(fit):
    base, short = _motion(40), _motion(15, seed=1)
    out = mix_motion(base, head=short, fit=fit)
    assert len(out) == 40 and out.R.shape == (40, 3, 3)
    idx = fit_indices(15, 40, fit)
    assert torch.allclose(_deltas(out.yaw), short.yaw[idx] - short.yaw[:1], atol=1e-5)


def test_a_longer_motion_is_trimmed_and_length_choices():
    base, long = _motion(20), _motion(50, seed=1)
    assert len(mix_motion(base, lips=long)) == 20
    assert torch.equal(mix_motion(base, lips=long).exp[:, LIP], long.exp[:20, LIP])
    assert len(mix_motion(base, lips=long, length="shortest")) == 20
    longest = mix_motion(base, lips=long, length="longest", fit="hold")
    assert len(longest) == 50 and longest.R.shape == (50, 3, 3)
    assert torch.equal(longest.exp[25:, OTHER], base.exp[19:20, OTHER].expand(25, -1, -1))  # the base held
    assert torch.equal(longest.R[25:], base.R[19:20].expand(25, -1, -1))


# ---------------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("weight", [-0.1, 1.5, math.nan, math.inf, "1", True])
def test_bad_weights_are_refused(weight):
    with pytest.raises(ValueError, match="head_weight must be a number from 0"):
        mix_motion(_motion(), head=_motion(seed=1), head_weight=weight)


def test_bad_length_fit_and_motions_are_refused():
    base = _motion()
    with pytest.raises(ValueError, match="length must be one of"):
        mix_motion(base, head=_motion(seed=1), length="median")
    with pytest.raises(ValueError, match="fit must be one of"):
        mix_motion(base, head=_motion(seed=1), fit="bounce")
    with pytest.raises(ValueError, match="the lips motion has no frames"):
        mix_motion(base, lips=_motion(0))
    with pytest.raises(ValueError, match="must be a MotionSequence"):
        mix_motion(base, face=object())


# ------------------------------------------------------------------------------------------------------- device

def test_a_device_motion_on_the_pretend_gpu(monkeypatch):
    from tests.pretend_gpu import is_pretend, on_pretend_gpu

    base, other = _motion(), _motion(12, seed=1)  # the video motion stays on the CPU
    expected = mix_motion(base, head=other, lips=other, face=other, head_weight=0.7)
    with on_pretend_gpu(monkeypatch) as device:
        on_device = base.to(device)
        out = mix_motion(on_device, head=other, lips=other, face=other, head_weight=0.7)
        assert all(is_pretend(getattr(out, name)) for name in ALL_FIELDS)
        cpu = out.to("cpu")
    for name in ALL_FIELDS:
        assert torch.allclose(getattr(cpu, name), getattr(expected, name), atol=1e-6), name


# --------------------------------------------------------------------------------------------------------- node

def _clip(motion, fps=25.0, waveform=None, info=None):
    return PACK.nodes.types.MotionClip(motion, waveform, 16000, 0.08, fps=fps, info=info or {})


def test_node_keeps_the_bases_audio_and_mixes_the_head():
    node = PACK.nodes.mix.JoyVASAMixMotion()
    wave = torch.zeros(1, 16000)
    base = _clip(_motion(), waveform=wave, info={"seed": 3})
    head = _clip(_motion(10, seed=1), info={"source": "drive.mp4"})
    (out,) = node.mix(base, 1.0, 1.0, 1.0, "base", "loop", head=head)
    assert out.waveform is wave and out.sample_rate == 16000 and out.audio_delay == 0.08 and out.fps == 25.0
    assert len(out) == len(base) and torch.equal(out.motion.exp, base.motion.exp)
    assert not torch.equal(out.motion.yaw, base.motion.yaw)
    assert out.info["seed"] == 3 and "drive.mp4" in out.info["mix"]
    (same,) = node.mix(base, 1.0, 1.0, 1.0, "base", "loop")
    assert same.motion is base.motion


def test_node_refuses_other_frame_rates_and_bad_weights():
    node = PACK.nodes.mix.JoyVASAMixMotion()
    base = _clip(_motion())
    with pytest.raises(ValueError, match="runs at 30 fps and the base at 25 fps"):
        node.mix(base, 1.0, 1.0, 1.0, "base", "loop", lips=_clip(_motion(seed=1), fps=30.0))
    with pytest.raises(ValueError, match="face_weight must be a number"):
        node.mix(base, 1.0, 1.0, 2.0, "base", "loop", face=_clip(_motion(seed=1)))
    with pytest.raises(ValueError, match="head must be a JoyVASA MOTION"):
        node.mix(base, 1.0, 1.0, 1.0, "base", "loop", head=_motion())
