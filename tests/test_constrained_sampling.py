"""Pose-constrained sampling (RePaint-style inpainting of known channels) on tiny models, and normalise_motion."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from joyvasa.motion import (
    Constraint,
    NoiseReplay,
    encode_speech,
    generate_motion,
    normalize_motion,
    sample_speech_motion,
)
from joyvasa.motion.constants import EXP, MOTION_DIM, ROLL, SCALE, WINDOW_SAMPLES
from joyvasa.motion.constraint import channel_mask
from joyvasa.motion.decode import MotionTemplate, denormalize
from joyvasa.motion.sampler import GuidedDenoiser, replay_noise, sample_motion
from joyvasa.testing.tiny import TINY_DENOISER, TINY_STEPS, tiny_generator, tiny_template
from tests.pack import PACK

HEAD = slice(SCALE.start, ROLL.stop)
FIELDS = ("exp", "scale", "t", "pitch", "yaw", "roll")
EPS = torch.finfo(torch.float32).eps


@pytest.fixture(scope="module")
def tiny():
    return tiny_generator()


def _speech(tiny, n_samples: int, seed: int = 0):
    wave = 0.1 * torch.randn(n_samples, generator=torch.Generator().manual_seed(seed))
    return encode_speech(tiny, wave, 16000)


@pytest.fixture(scope="module")
def short(tiny):
    return _speech(tiny, 20_000)  # one window, 34 frames


@pytest.fixture(scope="module")
def long(tiny):
    return _speech(tiny, WINDOW_SAMPLES + 30_000, seed=1)  # two windows, 149 frames


def _round_trip_bound(motion, template: MotionTemplate) -> dict:
    """Per-element bound on |denormalize(normalize(v)) - v|: 2 eps (|v| + |v - lo|), lo = mean_exp or min
    (three roundings on v - lo, one on + lo; the multiplier is the same float32 number both ways)."""
    lo = {"exp": template.mean_exp.reshape(21, 3), "scale": template.min_scale, "t": template.min_t,
          "pitch": template.min_pitch, "yaw": template.min_yaw, "roll": template.min_roll}
    return {k: 2 * EPS * (getattr(motion, k).abs() + (getattr(motion, k) - lo[k]).abs()) for k in FIELDS}


def _assert_fields_match(got, want, template, names=FIELDS):
    bound = _round_trip_bound(want, template)
    for k in names:
        err = (getattr(got, k) - getattr(want, k)).abs()
        assert (err <= bound[k]).all(), f"{k}: off by {err.max():.3g} > float32 round trip"


# ------------------------------------------------------------------------------------- normalise_motion

def test_normalize_inverts_denormalize_to_float32_rounding():
    """normalise -> denormalise gives the fields back within 2 eps (|v| + |v - lo|); the reverse is close too."""
    template = tiny_template()
    raw = torch.randn(40, MOTION_DIM, generator=torch.Generator().manual_seed(0))
    motion = denormalize(raw, template)
    back = normalize_motion(motion, template)
    assert back.shape == (40, MOTION_DIM) and back.dtype == torch.float32
    torch.testing.assert_close(back, raw, rtol=1e-5, atol=1e-5)
    _assert_fields_match(denormalize(back, template), motion, template)


def test_degenerate_template_channel_normalises_to_zero():
    template = dataclasses.replace(tiny_template(), max_yaw=tiny_template().min_yaw.clone())
    motion = denormalize(torch.rand(5, MOTION_DIM), template)
    v = normalize_motion(motion, template)
    assert torch.isfinite(v).all() and (v[:, 68] == 0).all()


def test_normalize_refuses_inconsistent_fields():
    motion = denormalize(torch.rand(5, MOTION_DIM), tiny_template())
    with pytest.raises(ValueError, match="motion.yaw has shape"):
        normalize_motion(dataclasses.replace(motion, yaw=motion.yaw[:3]), tiny_template())


# -------------------------------------------------------------------------------------------- constraint

def test_channel_groups():
    assert channel_mask("head").nonzero().flatten().tolist() == list(range(63, 70))
    assert channel_mask("head_rotation").nonzero().flatten().tolist() == [67, 68, 69]
    assert channel_mask("expression").sum() == 63 and channel_mask("all").all()
    with pytest.raises(ValueError, match="channels must be one of"):
        channel_mask("lips")


@pytest.mark.parametrize("values, mask, message", [
    (torch.zeros(10, 69), torch.ones(70, dtype=torch.bool), r"\(frames, 70\)"),
    (torch.zeros(0, 70), torch.ones(70, dtype=torch.bool), "no frames"),
    (torch.zeros(10, 70), torch.ones(70), "bool tensor"),
    (torch.zeros(10, 70), torch.ones(9, 70, dtype=torch.bool), "bool tensor"),
    (torch.full((10, 70), float("nan")), torch.ones(70, dtype=torch.bool), "NaN"),
])
def test_bad_constraints_are_refused(values, mask, message):
    with pytest.raises(ValueError, match=message):
        Constraint(values, mask)


# -------------------------------------------------------------------------------------------- sampling

def _track(tiny, speech, seed=5, **kw):
    return sample_speech_motion(tiny, speech, seed=seed, **kw)


def test_full_mask_returns_the_track(tiny, short):
    """Every channel given: the sampled x_0 is the normalised track exactly, the decoded motion is the track
    to float32 round-trip precision (smoothing does not touch it)."""
    track = _track(tiny, short, smoothing=0.05)
    constraint = Constraint.from_motion(track, tiny.template, "all")
    out = sample_speech_motion(tiny, short, seed=0, constraint=constraint)
    assert torch.equal(out.raw, constraint.values)
    _assert_fields_match(out, track, tiny.template)
    torch.testing.assert_close(out.R, track.R, rtol=0, atol=1e-5)


def test_empty_mask_is_unconstrained_sampling_bit_for_bit(tiny, long):
    free = sample_speech_motion(tiny, long, seed=3)
    track = _track(tiny, long)
    values = normalize_motion(track, tiny.template)
    for mask in (torch.zeros(MOTION_DIM, dtype=torch.bool), torch.zeros(len(track), MOTION_DIM, dtype=torch.bool)):
        out = sample_speech_motion(tiny, long, seed=3, constraint=Constraint(values, mask))
        for k in ("raw", *FIELDS, "R"):
            assert torch.equal(getattr(out, k), getattr(free, k)), k


def test_head_mask_keeps_the_head_and_samples_the_rest(tiny, short):
    track = _track(tiny, short, smoothing=None)  # a lively head: unsmoothed
    constraint = Constraint.from_motion(track, tiny.template, "head")
    free = sample_speech_motion(tiny, short, seed=0)
    a = sample_speech_motion(tiny, short, seed=0, constraint=constraint)
    b = sample_speech_motion(tiny, short, seed=0, constraint=constraint)
    _assert_fields_match(a, track, tiny.template, names=("scale", "t", "pitch", "yaw", "roll"))
    assert torch.equal(a.raw[:, HEAD], constraint.values[:, HEAD])
    assert torch.equal(a.raw, b.raw) and torch.equal(a.exp, b.exp)  # deterministic for a seed
    assert not torch.allclose(a.exp, free.exp, atol=1e-3)  # the expression follows the given head
    assert not torch.allclose(a.exp, track.exp, atol=1e-3)  # and is sampled, not copied


def test_head_rotation_mask_leaves_scale_and_translation_to_the_sampler(tiny, short):
    track = _track(tiny, short, smoothing=None)
    out = sample_speech_motion(tiny, short, seed=0, smoothing=None,
                               constraint=Constraint.from_motion(track, tiny.template, "head_rotation"))
    _assert_fields_match(out, track, tiny.template, names=("pitch", "yaw", "roll"))
    assert not torch.allclose(out.t, track.t, atol=1e-3) and not torch.allclose(out.scale, track.scale, atol=1e-3)


def test_smoothing_leaves_only_the_given_channels_alone(tiny, short):
    """EMA still smooths the sampled pose channels, not the given ones."""
    track = _track(tiny, short, smoothing=None)
    constraint = Constraint.from_motion(track, tiny.template, "head_rotation")
    smoothed = sample_speech_motion(tiny, short, seed=0, smoothing=0.01, constraint=constraint)
    raw = sample_speech_motion(tiny, short, seed=0, smoothing=None, constraint=constraint)
    assert torch.equal(smoothed.yaw, raw.yaw) and torch.equal(smoothed.raw, raw.raw)
    assert not torch.allclose(smoothed.t, raw.t, atol=1e-4)


def test_constraint_holds_across_windows_and_in_the_context(tiny, long):
    """Two windows: every output frame has the given head, and the 25 context frames handed to window 1 hold
    the given values (recorded at the denoiser's input)."""
    track = _track(tiny, long, smoothing=None)
    assert len(track) > TINY_DENOISER.n_motions
    out = sample_speech_motion(tiny, long, seed=2, smoothing=None,
                               constraint=Constraint.from_motion(track, tiny.template, "head"))
    _assert_fields_match(out, track, tiny.template, names=("scale", "t", "pitch", "yaw", "roll"))

    guided = GuidedDenoiser(tiny.denoiser, tiny.null_audio, 2.8)
    contexts = []

    def spy(x_t, t, audio, prev_motion, prev_audio, **kw):
        contexts.append(prev_motion)
        return guided(x_t, t, audio, prev_motion, prev_audio, **kw)

    L, Lp = TINY_DENOISER.n_motions, TINY_DENOISER.n_prev_motions
    y = torch.randn(2 * L, MOTION_DIM, generator=torch.Generator().manual_seed(1))
    x_T = torch.randn(1, L, MOTION_DIM, generator=torch.Generator().manual_seed(2))
    sample_motion(spy, long.features, tiny.schedule, x_T, tiny.start_motion, tiny.start_audio,
                  constraint=Constraint(y, channel_mask("head")))
    assert len(contexts) == 2 * TINY_STEPS
    assert torch.equal(contexts[0], tiny.start_motion)  # window 0: the learned start tokens
    for prev in contexts[TINY_STEPS:]:  # window 1: the last 25 frames of window 0 hold the given head
        assert torch.equal(prev[0, :, HEAD], y[L - Lp : L, HEAD])


def test_known_channels_follow_the_forward_process(tiny, short):
    """x_t at the denoiser's input holds sqrt(abar_t) y + sqrt(1 - abar_t) eps on the known channels, eps the
    x_T entries at t = T and the previous step's z after that (replayed noise makes them visible)."""
    L, D = TINY_DENOISER.n_motions, MOTION_DIM
    g = torch.Generator().manual_seed(4)
    x_T, z = torch.randn(1, L, D, generator=g), torch.randn(1, TINY_STEPS - 1, 1, L, D, generator=g)
    y = torch.randn(L, D, generator=g)
    mask = channel_mask("head")
    guided = GuidedDenoiser(tiny.denoiser, tiny.null_audio, 2.8)
    inputs = {}

    def spy(x_t, t, *args, **kw):
        inputs[t] = x_t
        return guided(x_t, t, *args, **kw)

    sched = tiny.schedule
    x0 = sample_motion(spy, short.features, sched, x_T, tiny.start_motion, tiny.start_audio,
                       replay_noise(z, TINY_STEPS), constraint=Constraint(y, mask))
    for t in range(TINY_STEPS, 0, -1):
        eps = x_T if t == TINY_STEPS else z[0, TINY_STEPS - (t + 1)]
        abar = sched.alpha_bars[t]
        expected = torch.sqrt(abar) * y + torch.sqrt(1 - abar) * eps[0]
        assert torch.equal(inputs[t][0][:, mask], expected[:, mask]), t
    assert torch.equal(inputs[TINY_STEPS][0][:, ~mask], x_T[0][:, ~mask])  # the free channels start from x_T
    assert torch.equal(x0[0][:, mask], y[:, mask])  # level 0: the given values themselves


def test_replayed_noise_reproduces_a_constrained_seeded_run(tiny, long):
    """The constraint draws nothing: the seeded stream is x_T then every window's z, as without it."""
    cfg = TINY_DENOISER
    g = torch.Generator().manual_seed(7)
    x_T = torch.randn(1, cfg.n_motions, cfg.motion_dim, generator=g)
    z = torch.stack([torch.stack([torch.randn(1, cfg.n_motions, cfg.motion_dim, generator=g)
                                  for _ in range(TINY_STEPS - 1)]) for _ in range(2)])
    constraint = Constraint.from_motion(_track(tiny, long), tiny.template, "head")
    seeded = sample_speech_motion(tiny, long, seed=7, constraint=constraint)
    replayed = sample_speech_motion(tiny, long, noise=NoiseReplay(x_T, z), constraint=constraint)
    assert torch.equal(seeded.raw, replayed.raw)


# ------------------------------------------------------------------------------------ lengths and timing

def test_longer_track_is_cut_and_single_frame_is_held(tiny, short, long):
    track = _track(tiny, long, smoothing=None)  # 149 frames for a 34-frame clip
    cut = sample_speech_motion(tiny, short, seed=0, constraint=Constraint.from_motion(track, tiny.template, "head"))
    assert len(cut) == len(short_track := _track(tiny, short))
    assert torch.equal(cut.raw[:, HEAD], normalize_motion(track, tiny.template)[: len(cut), HEAD])
    still = dataclasses.replace(track, **{k: getattr(track, k)[10:11] for k in ("raw", *FIELDS, "R")})
    held = sample_speech_motion(tiny, short, seed=0, constraint=Constraint.from_motion(still, tiny.template, "head"))
    assert len(held) == len(short_track)
    assert (held.yaw == held.yaw[0]).all() and (held.t == held.t[0]).all()
    _assert_fields_match(held, dataclasses.replace(still, yaw=still.yaw.expand_as(held.yaw)), tiny.template,
                         names=("yaw",))


def test_aligned_timing_constrains_the_output_frames(tiny, short):
    """Under "aligned" the output drops the 2 lead frames; the track still lines up with the output frames."""
    track = _track(tiny, short, smoothing=None, alignment="aligned")
    out = sample_speech_motion(tiny, short, seed=0, alignment="aligned",
                               constraint=Constraint.from_motion(track, tiny.template, "head"))
    assert len(out) == len(track)
    _assert_fields_match(out, track, tiny.template, names=("pitch", "yaw", "roll", "t", "scale"))


def test_short_track_and_bad_shapes_are_refused_before_sampling(tiny, short, long):
    steps = []
    callback = steps.append
    track = _track(tiny, short)  # 34 frames; the long clip needs 149
    with pytest.raises(ValueError, match=r"head track has 34 frames .* needs 149"):
        sample_speech_motion(tiny, long, constraint=Constraint.from_motion(track, tiny.template), callback=callback)
    with pytest.raises(TypeError, match="joyvasa.motion.Constraint"):
        sample_speech_motion(tiny, short, constraint=track, callback=callback)
    with pytest.raises(TypeError, match="joyvasa.motion.Constraint"):
        generate_motion(tiny, torch.zeros(20_000), 16000, constraint=torch.zeros(34, 70), callback=callback)
    L = TINY_DENOISER.n_motions
    with pytest.raises(ValueError, match=r"covers \(50, 70\) but 1 window\(s\) of 100 frames"):
        sample_motion(GuidedDenoiser(tiny.denoiser, tiny.null_audio, 2.8), short.features, tiny.schedule,
                      torch.zeros(1, L, MOTION_DIM), tiny.start_motion, tiny.start_audio, callback=callback,
                      constraint=Constraint(torch.zeros(50, MOTION_DIM), channel_mask("head")))
    assert steps == []


def test_expression_constraint_keeps_the_expression(tiny, short):
    track = _track(tiny, short)
    out = sample_speech_motion(tiny, short, seed=1, constraint=Constraint.from_motion(track, tiny.template,
                                                                                      "expression"))
    _assert_fields_match(out, track, tiny.template, names=("exp",))
    assert torch.equal(out.raw[:, EXP], normalize_motion(track, tiny.template)[:, EXP])


def test_constrained_sampling_on_a_pretend_gpu(monkeypatch, short):
    """Model on the device, track and constraint on the CPU: moved once, the same motion as on the CPU (to the
    attention kernels' ~1e-6) and the given head exactly as on the CPU."""
    from tests.pretend_gpu import is_pretend, on_pretend_gpu

    cpu = tiny_generator()
    track = _track(cpu, short, smoothing=None)
    constraint = Constraint.from_motion(track, cpu.template, "head")
    expected = sample_speech_motion(cpu, short, seed=4, constraint=constraint)
    with on_pretend_gpu(monkeypatch) as device:
        model = tiny_generator().to(device)
        speech = encode_speech(model, 0.1 * torch.randn(20_000, generator=torch.Generator().manual_seed(0)), 16000)
        out = sample_speech_motion(model, speech, seed=4, constraint=constraint)
        assert is_pretend(out.raw)
        raw, yaw = out.raw.cpu(), out.yaw.cpu()
    assert torch.equal(raw[:, HEAD], expected.raw[:, HEAD]) and torch.equal(yaw, expected.yaw)
    torch.testing.assert_close(raw, expected.raw, rtol=0, atol=2e-5)


# ----------------------------------------------------------------------------------------------- the node

nodes = PACK.nodes


@pytest.fixture(scope="module")
def handle():
    return nodes.runtime.ModelHandle(tiny_generator(), torch.device("cpu"))


def _node_speech(handle, seconds=0.8):
    wave = 0.1 * torch.randn(1, 1, int(seconds * 16000), generator=torch.Generator().manual_seed(0))
    (speech,) = nodes.motion.JoyVASAEncodeAudio().encode(handle, {"waveform": wave, "sample_rate": 16000})
    return speech


ARGS = dict(cfg_scale=2.8, smoothing=0.01, pe_mode="legacy", timing="original")


def test_node_samples_given_a_head_track(handle):
    sample = nodes.motion.JoyVASASampleMotion().sample
    speech = _node_speech(handle)
    (track,) = sample(handle, speech, seed=1, **{**ARGS, "smoothing": 0.0})
    (free,) = sample(handle, speech, seed=2, **ARGS)
    (head,) = sample(handle, speech, seed=2, head_track=track, constrain="head", **ARGS)
    (ignored,) = sample(handle, speech, seed=2, head_track=track, constrain="none", **ARGS)
    (rotation,) = sample(handle, speech, seed=2, head_track=track, constrain="head rotation", **ARGS)
    template = tiny_generator().template
    _assert_fields_match(head.motion, track.motion, template, names=("scale", "t", "pitch", "yaw", "roll"))
    _assert_fields_match(rotation.motion, track.motion, template, names=("pitch", "yaw", "roll"))
    assert not torch.allclose(head.motion.exp, free.motion.exp, atol=1e-3)
    assert torch.equal(ignored.motion.raw, free.motion.raw) and torch.equal(ignored.motion.yaw, free.motion.yaw)
    assert head.audio_delay == free.audio_delay and len(head) == len(free)


def test_node_refuses_bad_head_tracks(handle):
    sample = nodes.motion.JoyVASASampleMotion().sample
    speech = _node_speech(handle)
    (track,) = sample(handle, speech, seed=1, **ARGS)
    with pytest.raises(ValueError, match="constrain must be one of"):
        sample(handle, speech, seed=0, head_track=track, constrain="lips", **ARGS)
    with pytest.raises(ValueError, match="30 fps"):
        sample(handle, speech, seed=0, head_track=dataclasses.replace(track, fps=30.0), **ARGS)
    with pytest.raises(ValueError, match="head_track must be a JoyVASA MOTION"):
        sample(handle, speech, seed=0, head_track=track.motion, **ARGS)
    short = dataclasses.replace(track, motion=dataclasses.replace(
        track.motion, **{k: getattr(track.motion, k)[:5] for k in ("raw", *FIELDS, "R")}))
    with pytest.raises(ValueError, match="head track has 5 frames"):
        sample(handle, speech, seed=0, head_track=short, **ARGS)
