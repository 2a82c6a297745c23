"""Parity of the motion generator with the original (fixtures 05a, 05b, 05c in both PE modes).

Weights are the kit's stand-in files for the fixture's weight seed, written in the official layout and read by
our own loader; inputs, noise and settings come from the fixture files, so another kit of the same layout works
unchanged.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from joyvasa.motion import NoiseReplay, generate_motion, load_motion_generator
from joyvasa.motion.audio import pad_for_encoder, pad_silence, plan_windows, split_windows
from joyvasa.motion.constants import SAMPLE_RATE
from joyvasa.motion.decode import decode_motion
from joyvasa.motion.sampler import GuidedDenoiser, replay_noise, sample_motion

pytestmark = pytest.mark.parity

CHECKPOINT = "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt"
TEMPLATE = "JoyVASA/motion_template/motion_template.pkl"
FIXTURE_05A = "05a_audio_features.npz"
FIXTURE_05B = "05b_denoiser_forward.npz"
FIXTURES_05C = {"legacy": "05c_motion_sequence_legacy_pe.npz", "main": "05c_motion_sequence_main_pe.npz"}
MOTION_FIELDS = ("exp", "scale", "t", "pitch", "yaw", "roll", "R")


def _t(array) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array))


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy()


@pytest.fixture(scope="module")
def motion_model(golden, standin_weights):
    seed = golden(FIXTURE_05A).weights_seed
    for name in (FIXTURE_05B, *FIXTURES_05C.values()):
        assert golden(name).weights_seed == seed, "the motion fixtures must share one weight seed"
    root = standin_weights([CHECKPOINT, TEMPLATE], seed)
    return load_motion_generator(root / CHECKPOINT, root / TEMPLATE)


def _assert_all_checked(g):
    """Every out_/mid_ array of the file was compared through `g`, a recording view (`Golden.recording()`): the
    keys that were actually compared, whatever other tests compared before."""
    expected = set(g.keys("out_")) | set(g.keys("mid_"))
    assert expected <= set(g.errors), f"{g.name}: arrays without a check: {sorted(expected - set(g.errors))}"


# ----------------------------------------------------------------------------------------- 05a audio encoder

def test_audio_features(golden, motion_model):
    g = golden(FIXTURE_05A).recording()
    window = _t(g["in_audio_window"])
    padded = pad_for_encoder(window)
    np.testing.assert_array_equal(_np(padded), g["in_audio_padded"])
    encoder = motion_model.encoder
    with torch.no_grad():
        g.check("mid_conv_features", encoder.conv_features(padded))
        hidden = encoder.hidden_states(padded)
        g.check("out_hubert_last_hidden", hidden)
        g.check("out_interp_100", encoder.to_motion_rate(hidden))
        g.check("out_audio_feat", encoder(window))
    _assert_all_checked(g)


# -------------------------------------------------------------------------------------- 05b denoiser forward

@pytest.mark.parametrize("pe_mode", ["legacy", "main"])
def test_denoiser_forward(golden, motion_model, pe_mode):
    g = golden(FIXTURE_05B)
    net = motion_model.denoiser
    step = _t(g["in_step"])
    x_t, prev_motion = _t(g["in_motion_feat"]), _t(g["in_prev_motion_feat"])
    with torch.no_grad():
        g.check("mid_TE_rows", net.TE.pe[0, step])
        g.check("mid_step_embedding", net.step_embedding(step))
        g.check(f"mid_tokens_{pe_mode}", net.tokens(x_t, prev_motion, step, pe_mode))
        out = net(x_t, step, _t(g["in_audio_feat"]), prev_motion, _t(g["in_prev_audio_feat"]), pe_mode=pe_mode)
    g.check(f"out_{pe_mode}", out)


def test_denoiser_fixture_covered(golden, motion_model):
    """`test_denoiser_forward` in both PE modes, run here through one recording view, compares every array."""
    g = golden(FIXTURE_05B).recording()
    for pe_mode in ("legacy", "main"):
        test_denoiser_forward(lambda name: g, motion_model, pe_mode)
    _assert_all_checked(g)


# ---------------------------------------------------------------------------------- 05c full sampling runs

class _Recorder(nn.Module):
    """Passes calls to the denoiser and keeps their inputs and the last-L-token outputs."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, x_t, step, audio, prev_motion, prev_audio, **options):
        out = self.net(x_t, step, audio, prev_motion, prev_audio, **options)
        self.calls.append({"x_t": x_t, "step": step, "audio": audio, "prev_motion": prev_motion,
                           "prev_audio": prev_audio, "out": out[:, -x_t.shape[1]:]})
        return out


@pytest.fixture(scope="module", params=sorted(FIXTURES_05C))
def sequence_run(request, golden, motion_model):
    """Run the fixture's sampling twice: step by step with a recorder (intermediates), and through the
    public `generate_motion` (outputs)."""
    pe_mode = request.param
    g = golden(FIXTURES_05C[pe_mode])
    assert g.meta["pe_mode"] == pe_mode
    model = motion_model
    audio = _t(g["in_audio_16k"])
    noise = NoiseReplay(_t(g["in_noise_xT"]), _t(g["in_noise_z"]))
    cfg_scale = float(g["in_cfg_scale"])

    padded = pad_silence(audio)
    plan = plan_windows(padded.shape[0], model.window_frames)
    windows = split_windows(padded, plan, model.pad_mode)
    features = model.encode_audio(windows)
    recorder = _Recorder(model.denoiser)
    x0 = sample_motion(GuidedDenoiser(recorder, model.null_audio, cfg_scale, pe_mode), features, model.schedule,
                       noise.x_T, model.start_motion, model.start_audio,
                       replay_noise(noise.z, model.schedule.n_steps))
    motion = generate_motion(model, audio, SAMPLE_RATE, cfg_scale=cfg_scale, noise=noise,
                             alignment="original", smoothing=0.01, pe_mode=pe_mode)
    return {"g": g, "padded": padded, "plan": plan, "windows": windows, "features": features, "x0": x0,
            "calls": recorder.calls, "motion": motion, "template": model.template}


def test_sequence_windows(sequence_run):
    run = sequence_run
    g, plan = run["g"], run["plan"]
    n_padded = plan.n_windows * plan.window_samples
    np.testing.assert_array_equal(_np(split_windows(run["padded"], plan).reshape(-1)), g["in_audio_padded"][:n_padded])
    assert plan.n_frames == g["out_motion_raw"].shape[0]
    g.check("mid_window_audio_in", run["windows"])
    g.check("mid_window_audio_feat", run["features"])


def test_sequence_sampler(sequence_run):
    run = sequence_run
    g, calls, n_windows = run["g"], run["calls"], run["plan"].n_windows
    n_steps = len(calls) // n_windows
    first = [calls[w * n_steps] for w in range(n_windows)]
    # The conditional half (entry 1) carries the real context; the null token replaces only the window's audio.
    g.check("mid_window_prev_motion", torch.cat([c["prev_motion"][1:] for c in first]))
    g.check("mid_window_prev_audio", torch.cat([c["prev_audio"][1:] for c in first]))
    window0 = calls[:n_steps]
    np.testing.assert_array_equal(np.array([int(c["step"][0]) for c in window0]), g["mid_w0_step_t"])
    g.record("mid_w0_step_t", 0.0)
    g.check("mid_w0_step_x_t", torch.cat([c["x_t"][:1] for c in window0]))
    g.check("mid_w0_step_denoiser_out", torch.stack([c["out"] for c in window0]))
    g.check("mid_window_x0", run["x0"])


def test_sequence_outputs(sequence_run):
    run = sequence_run
    g, motion = run["g"], run["motion"]
    for key in g.keys("in_template_"):  # the template as our safe reader loaded it
        ours = _np(getattr(run["template"], key[len("in_template_"):]))
        np.testing.assert_array_equal(ours.reshape(g[key].shape), g[key], err_msg=key)
    g.check("out_motion_raw", motion.raw)
    decoded = decode_motion(motion.raw, run["template"], smoothing=None)
    for name in MOTION_FIELDS:
        g.check(f"out_decoded_{name}", getattr(decoded, name))
        g.check(f"out_smoothed_{name}", getattr(motion, name))


def test_sequence_fixture_covered(sequence_run):
    """The three tests above, run here through one recording view, compare every array of the fixture."""
    run = {**sequence_run, "g": sequence_run["g"].recording()}
    for test in (test_sequence_windows, test_sequence_sampler, test_sequence_outputs):
        test(run)
    _assert_all_checked(run["g"])

