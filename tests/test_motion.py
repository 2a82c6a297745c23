"""Motion generator on tiny configs: audio preparation, windows, sampler, guidance, decoding, reproducibility."""
from __future__ import annotations

import math
import wave

import numpy as np
import pytest
import soxr
import torch

from joyvasa.motion import NoiseReplay, decode_audio_file, generate_motion
from joyvasa.motion.audio import (
    frames_to_keep,
    pad_for_encoder,
    pad_silence,
    plan_windows,
    prepare_audio,
    split_windows,
)
from joyvasa.motion.constants import SAMPLES_PER_FRAME, WINDOW_SAMPLES
from joyvasa.motion.decode import decode_motion, denormalize, ema
from joyvasa.motion.denoiser import DenoisingNetwork
from joyvasa.motion.sampler import GuidedDenoiser, ddpm_step, sample_motion, sample_window
from joyvasa.motion.schedule import cosine_schedule
from joyvasa.renderer.keypoints import rotation_matrix
from joyvasa.testing.tiny import TINY_DENOISER, TINY_STEPS, tiny_generator, tiny_template


@pytest.fixture(scope="module")
def tiny():
    return tiny_generator()


def speech(n_samples: int, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(n_samples, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------- audio handling

def test_prepare_audio_downmixes_and_resamples_like_librosa():
    stereo = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 44100)).astype(np.float32)
    out = prepare_audio(torch.from_numpy(stereo)[None], 44100)  # ComfyUI AUDIO layout (1, C, T)
    expected = soxr.resample(stereo.mean(0), 44100, 16000, quality="HQ")
    n = math.ceil(44100 * 16000 / 44100)
    assert out.dtype == torch.float32 and out.shape == (n,)
    np.testing.assert_array_equal(out.numpy()[: expected.shape[0]], expected[:n])


def test_prepare_audio_keeps_16k_mono_untouched():
    x = speech(1000)
    assert torch.equal(prepare_audio(x, 16000), x)
    assert torch.equal(prepare_audio(x[None], 16000), x)


@pytest.mark.parametrize("bad, match", [(torch.zeros(2, 1, 100), "batch"), (torch.zeros(1, 0), "empty"),
                                        (torch.full((100,), float("nan")), "NaN")])
def test_prepare_audio_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        prepare_audio(bad, 16000)


def test_decode_audio_file_reads_pcm_like_librosa(tmp_path):
    samples = (np.random.default_rng(1).uniform(-1, 1, (300, 2)) * 30000).astype(np.int16)
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(22050)
        f.writeframes(samples.tobytes())
    waveform, rate = decode_audio_file(path)
    assert rate == 22050 and waveform.shape == (2, 300) and waveform.dtype == torch.float32
    np.testing.assert_array_equal(waveform.numpy(), samples.T.astype(np.float32) / 32768)
    with pytest.raises(FileNotFoundError):
        decode_audio_file(tmp_path / "missing.wav")


def test_pad_silence_two_frames_before_one_after():
    x = torch.ones(10)
    padded = pad_silence(x)
    assert padded.shape == (10 + 3 * SAMPLES_PER_FRAME,)
    assert padded[: 2 * SAMPLES_PER_FRAME].abs().sum() == 0 and padded[-SAMPLES_PER_FRAME:].abs().sum() == 0
    assert torch.equal(padded[2 * SAMPLES_PER_FRAME : -SAMPLES_PER_FRAME], x)


@pytest.mark.parametrize("n_padded, frames, windows, pad", [
    (1920 + 100, 3, 1, WINDOW_SAMPLES - 2020),  # audio shorter than one frame
    (WINDOW_SAMPLES, 100, 1, 0),  # exactly one window
    (WINDOW_SAMPLES + 1, 100, 1, -1),  # one sample over: dropped with the partial frame
    (WINDOW_SAMPLES + SAMPLES_PER_FRAME, 101, 2, WINDOW_SAMPLES - SAMPLES_PER_FRAME),  # one frame over
])
def test_plan_windows(n_padded, frames, windows, pad):
    plan = plan_windows(n_padded)
    assert (plan.n_frames, plan.n_windows, plan.n_pad_samples) == (frames, windows, pad)
    cut = split_windows(torch.arange(n_padded, dtype=torch.float32) + 1, plan)
    assert cut.shape == (windows, WINDOW_SAMPLES)
    kept = min(n_padded, windows * WINDOW_SAMPLES)
    assert torch.equal(cut.reshape(-1)[:kept], torch.arange(kept, dtype=torch.float32) + 1)
    assert cut.reshape(-1)[kept:].abs().sum() == 0


def test_split_windows_replicate_pads_with_last_sample():
    x = torch.arange(1, 2001, dtype=torch.float32)
    cut = split_windows(x, plan_windows(2000), pad_mode="replicate")
    assert torch.all(cut[0, 2000:] == 2000)


def test_pad_for_encoder_is_two_reflect_pads():
    x = torch.randn(2, 6400)
    expected = np.pad(np.pad(x.numpy(), ((0, 0), (20, 20)), mode="reflect"), ((0, 0), (20, 20)), mode="reflect")
    np.testing.assert_array_equal(pad_for_encoder(x).numpy(), expected)


def test_frames_to_keep():
    assert frames_to_keep(10, "original") == slice(0, 10)
    assert frames_to_keep(10, "aligned") == slice(2, 10)
    with pytest.raises(ValueError, match="alignment"):
        frames_to_keep(10, "late")


# --------------------------------------------------------------------------------------- schedule, denoiser

def test_cosine_schedule_reference_values():
    s = cosine_schedule(50)  # reference values computed in float64 (spec §3.5)
    betas = 1 - s.alphas
    for value, expected in [(betas[1], 0.001748), (s.alpha_bars[10], 0.898706), (s.alpha_bars[25], 0.493844),
                            (betas[49], 0.749757), (betas[50], 0.999), (s.sigmas[2], 0.034456),
                            (s.sigmas[25], 0.236008), (s.sigmas[50], 0.999015)]:
        assert float(value) == pytest.approx(expected, abs=3e-6)
    assert float(betas[0]) == 0 and float(s.sigmas[1]) == 0


def test_step_table_is_rebuilt_not_stored():
    net = DenoisingNetwork(TINY_DENOISER)
    assert "TE.pe" not in net.state_dict() and "PE.pe" in net.state_dict()


def test_positional_encoding_modes():
    net = DenoisingNetwork(TINY_DENOISER).eval()
    n = TINY_DENOISER.n_tokens
    legacy = net.positional_encoding(n, "legacy")
    assert torch.equal(legacy.reshape(-1), net.PE.pe[0, n])  # one row, the same for every token
    assert torch.equal(net.positional_encoding(n), legacy)  # the configured mode (TINY_DENOISER: legacy)
    assert torch.equal(net.positional_encoding(n, "main"), net.PE.pe[:, :n])
    with pytest.raises(ValueError, match="pe_mode"):
        net.positional_encoding(n, "learned")


def test_denoiser_output_shape():
    cfg = TINY_DENOISER
    net = DenoisingNetwork(cfg).eval()
    out = net(torch.randn(3, cfg.n_motions, cfg.motion_dim), torch.tensor([1, 2, 3]),
              torch.randn(3, cfg.n_motions, cfg.d_model), torch.randn(3, cfg.n_prev_motions, cfg.motion_dim),
              torch.randn(3, cfg.n_prev_motions, cfg.d_model))
    assert out.shape == (3, cfg.n_tokens, cfg.motion_dim)


# ----------------------------------------------------------------------------------------------- sampler

def test_last_step_lands_on_the_prediction():
    """With an oracle returning a fixed x0, the DDPM chain ends exactly on it (c0 = 0, c1 = 1, z = 0 at t = 1)."""
    schedule = cosine_schedule(5)
    target = torch.randn(1, 4, 3)
    seen = []

    def oracle(x_t, t, audio, prev_motion, prev_audio):
        seen.append(t)
        return target

    out = sample_window(oracle, torch.randn(1, 4, 3), schedule, None, None, None,
                        noise=lambda w, t: torch.randn(1, 4, 3))
    assert seen == [5, 4, 3, 2, 1]
    torch.testing.assert_close(out, target, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n_steps", [5, 50])
def test_ddpm_step_is_the_posterior_formula(n_steps):
    """x_{t-1} = c0 x_t + c1 x0 + sigma_t z, the mean and deviation of q(x_{t-1} | x_t, x0) (Ho et al. 2020,
    eqs. 6-7), recomputed here in float64 from the schedule's alphas and alpha-bars alone."""
    schedule = cosine_schedule(n_steps)
    alphas, abars = schedule.alphas.double(), schedule.alpha_bars.double()
    gen = torch.Generator().manual_seed(n_steps)
    for t in range(1, n_steps + 1):
        x_t, x0, z = (torch.randn(2, 6, 5, generator=gen) for _ in range(3))
        alpha, abar, abar_prev = alphas[t], abars[t], abars[t - 1]
        beta = 1 - alpha
        c0 = alpha.sqrt() * (1 - abar_prev) / (1 - abar)  # weight of x_t
        c1 = abar_prev.sqrt() * beta / (1 - abar)  # weight of the predicted x0
        sigma = (beta * (1 - abar_prev) / (1 - abar)).sqrt()
        mean = c0 * x_t.double() + c1 * x0.double()
        torch.testing.assert_close(ddpm_step(x_t, x0, t, schedule, None).double(), mean, rtol=1e-5, atol=1e-6,
                                   msg=lambda m, t=t: f"posterior mean at t={t}: {m}")
        torch.testing.assert_close(ddpm_step(x_t, x0, t, schedule, z).double(), mean + sigma * z.double(),
                                   rtol=1e-5, atol=1e-6, msg=lambda m, t=t: f"mean + sigma z at t={t}: {m}")


def test_guidance_nulls_only_the_current_audio():
    calls = []

    def net(x_t, step, audio, prev_motion, prev_audio):
        calls.append((audio, prev_audio, step))
        feats = torch.cat([prev_audio, audio], 1).mean(-1, keepdim=True)  # (2N, Lp + L, 1)
        return feats.expand(-1, -1, x_t.shape[-1]) + 0 * torch.cat([prev_motion, x_t], 1)

    null = torch.full((1, 1, 8), -1.0)
    audio, prev_audio = torch.ones(1, 5, 8), torch.full((1, 2, 8), 3.0)
    guided = GuidedDenoiser(net, null, cfg_scale=2.5)
    out = guided(torch.zeros(1, 5, 4), 7, audio, torch.zeros(1, 2, 4), prev_audio)
    a, pa, step = calls[0]
    assert torch.equal(a[0], null[0].expand(5, 8)) and torch.equal(a[1], audio[0])
    assert torch.equal(pa[0], pa[1]) and torch.equal(pa[1], prev_audio[0])
    assert step.tolist() == [7, 7]
    torch.testing.assert_close(out, torch.full((1, 5, 4), -1.0 + 2.5 * (1.0 - -1.0)))


def test_windows_chain_context_and_share_x_T():
    schedule, Lp, L, D = cosine_schedule(3), 2, 5, 3
    starts = []

    def model(x_t, t, audio, prev_motion, prev_audio):
        if t == schedule.n_steps:
            starts.append((x_t.clone(), prev_motion.clone(), prev_audio.clone()))
        ramp = torch.arange(L, dtype=torch.float32)[None, :, None]
        return audio[..., :1].expand(-1, -1, D) * 10 + ramp

    features = torch.arange(3 * L * 4, dtype=torch.float32).reshape(3, L, 4)
    x_T = torch.randn(1, L, D)
    start_motion, start_audio = torch.randn(1, Lp, D), torch.randn(1, Lp, 4)
    out = sample_motion(model, features, schedule, x_T, start_motion, start_audio,
                        noise=lambda w, t: torch.randn(1, L, D))
    assert out.shape == (3, L, D)
    assert all(torch.equal(s[0], x_T) for s in starts)  # one x_T for every window
    assert torch.equal(starts[0][1], start_motion) and torch.equal(starts[0][2], start_audio)
    for w in (1, 2):
        assert torch.equal(starts[w][1], out[w - 1 : w, -Lp:])
        assert torch.equal(starts[w][2], features[w - 1 : w, -Lp:])


# --------------------------------------------------------------------------------------------- decoding

def test_denormalize_layout():
    template = tiny_template()
    raw = torch.zeros(2, 70)
    raw[1] = 1
    m = denormalize(raw, template)
    assert m.exp.shape == (2, 21, 3) and m.R.shape == (2, 3, 3)
    torch.testing.assert_close(m.exp[0].reshape(-1), template.mean_exp)
    torch.testing.assert_close(m.exp[1].reshape(-1), template.mean_exp + template.std_exp)
    torch.testing.assert_close(m.scale[:, 0], torch.cat([template.min_scale, template.max_scale]))
    torch.testing.assert_close(m.t, torch.stack([template.min_t, template.max_t]))
    torch.testing.assert_close(m.yaw[:, 0], torch.cat([template.min_yaw, template.max_yaw]))
    torch.testing.assert_close(m.R, rotation_matrix(m.pitch, m.yaw, m.roll))


def test_ema_step_response():
    x = torch.ones(50, 2)
    x[0] = 0
    y = ema(x, 0.01)
    k = torch.arange(50, dtype=torch.float64)
    torch.testing.assert_close(y[:, 0].double(), 1 - 0.99**k, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="smoothing"):
        ema(x, 0.0)


def test_smoothing_touches_pose_not_expression():
    raw = torch.rand(30, 70)
    plain = decode_motion(raw, tiny_template(), smoothing=None)
    smooth = decode_motion(raw, tiny_template(), smoothing=0.3)
    assert torch.equal(plain.exp, smooth.exp)
    assert not torch.allclose(plain.yaw, smooth.yaw)
    torch.testing.assert_close(smooth.yaw, ema(plain.yaw, 0.3))
    torch.testing.assert_close(smooth.R, rotation_matrix(smooth.pitch, smooth.yaw, smooth.roll))
    assert torch.equal(decode_motion(raw, tiny_template(), smoothing=1.0).yaw, plain.yaw)


# ---------------------------------------------------------------------------------- whole tiny generator

@pytest.mark.parametrize("n_samples, original, aligned, windows", [
    (100, 3, 1, 1),  # shorter than one frame: only the silent frames and the partial one
    (WINDOW_SAMPLES - 1920, 100, 98, 1),  # exactly one window after the silence padding
    (WINDOW_SAMPLES - 1920 + 1, 100, 98, 1),  # one sample over: the partial frame is dropped
    (WINDOW_SAMPLES - 1920 + SAMPLES_PER_FRAME, 101, 99, 2),  # one frame over: a second window
])
def test_frame_counts(tiny, n_samples, original, aligned, windows):
    seen = set()
    audio = speech(n_samples)
    motion = generate_motion(tiny, audio, 16000, seed=1, callback=lambda info: seen.add(info["n_windows"]))
    assert seen == {windows}
    assert len(motion) == original == n_samples // SAMPLES_PER_FRAME + 3
    assert motion.exp.shape == (original, 21, 3) and motion.R.shape == (original, 3, 3)
    shifted = generate_motion(tiny, audio, 16000, seed=1, alignment="aligned", smoothing=None)
    assert len(shifted) == aligned == n_samples // SAMPLES_PER_FRAME + 1
    torch.testing.assert_close(shifted.raw, motion.raw[2:], rtol=0, atol=0)


def test_same_seed_same_motion_different_seed_differs(tiny):
    audio = speech(20_000)
    a = generate_motion(tiny, audio, 16000, seed=123)
    b = generate_motion(tiny, audio, 16000, seed=123)
    c = generate_motion(tiny, audio, 16000, seed=124)
    assert torch.equal(a.raw, b.raw) and torch.equal(a.yaw, b.yaw)
    assert not torch.allclose(a.raw, c.raw)


def test_replayed_noise_reproduces_a_seeded_run(tiny):
    """The seeded run draws x_T first, then every window's steps t = T..2 in order; replaying those draws
    gives the same motion."""
    audio = speech(WINDOW_SAMPLES + 5000)  # two windows
    cfg = TINY_DENOISER
    g = torch.Generator().manual_seed(7)
    x_T = torch.randn(1, cfg.n_motions, cfg.motion_dim, generator=g)
    z = torch.stack([torch.stack([torch.randn(1, cfg.n_motions, cfg.motion_dim, generator=g)
                                  for _ in range(TINY_STEPS - 1)]) for _ in range(2)])
    seeded = generate_motion(tiny, audio, 16000, seed=7, cfg_scale=2.0)
    replayed = generate_motion(tiny, audio, 16000, noise=NoiseReplay(x_T, z), cfg_scale=2.0)
    assert torch.equal(seeded.raw, replayed.raw)


def test_any_rate_and_channels(tiny):
    stereo = torch.from_numpy(np.random.default_rng(2).uniform(-0.3, 0.3, (1, 2, 22050)).astype(np.float32))
    motion = generate_motion(tiny, stereo, 44100, seed=0)
    n16 = math.ceil(22050 * 16000 / 44100)
    assert len(motion) == n16 // SAMPLES_PER_FRAME + 3


def test_callback_reports_every_step(tiny):
    steps = []
    generate_motion(tiny, speech(3000), 16000, callback=lambda info: steps.append((info["i"], info["t"])))
    assert steps == [(i, TINY_STEPS - i) for i in range(TINY_STEPS)]


def test_generator_argument_and_low_precision(tiny):
    audio = speech(8000)
    by_int = generate_motion(tiny, audio, 16000, seed=9)
    by_generator = generate_motion(tiny, audio, 16000, seed=torch.Generator().manual_seed(9))
    assert torch.equal(by_int.raw, by_generator.raw)
    half = tiny_generator().to(torch.bfloat16)  # decoding still happens in float32
    motion = generate_motion(half, audio, 16000, seed=9)
    assert motion.raw.dtype == torch.float32 and motion.exp.dtype == torch.float32
    assert torch.isfinite(motion.raw).all() and half.schedule.alphas.dtype == torch.float32


def test_replay_noise_of_the_wrong_shape_is_refused(tiny):
    cfg = TINY_DENOISER
    x_T = torch.zeros(1, cfg.n_motions, cfg.motion_dim)
    short = torch.zeros(1, TINY_STEPS - 1, 1, cfg.n_motions, cfg.motion_dim)  # one window, the clip needs two
    with pytest.raises(ValueError, match="noise to replay"):
        generate_motion(tiny, speech(WINDOW_SAMPLES), 16000, noise=NoiseReplay(x_T, short))
