"""End-to-end parity with the original pipeline (kit fixtures 06, human and animal).

Two levels: the keypoint chain and frames from the fixture's own generated motion (`mid_motion_*`), and the
whole chain from the waveform through the motion generator (replaying the recorded noise) to the frames.
Settings, seed, inputs and expectations come from the fixture files.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from joyvasa.pipeline.driving import DrivingOptions, driving_keypoints
from joyvasa.pipeline.render import render_frames
from joyvasa.renderer import appearance_features, load_renderer, prepare_images, source_keypoints, to_uint8
from joyvasa.weights import WeightsLocation, renderer_files

pytestmark = pytest.mark.parity

SPECIES = ["human", "animal"]
MOTION_KEYS = ("exp", "scale", "t", "pitch", "yaw", "roll", "R")


def options_from(settings: dict) -> DrivingOptions:
    """The original's flags as our options (eye/lip retargeting are broken in the original and never on)."""
    assert not settings.get("flag_eye_retargeting") and not settings.get("flag_lip_retargeting")
    return DrivingOptions(relative_motion=settings["flag_relative_motion"],
                          driving_option=settings["driving_option"],
                          driving_multiplier=float(settings["driving_multiplier"]),
                          animation_region=settings["animation_region"], stitching=settings["flag_stitching"],
                          normalize_lip=settings["flag_normalize_lip"])


@pytest.fixture(scope="module")
def renderers(standin_weights):
    cache = {}

    def get(species: str, seed: int):
        if (species, seed) not in cache:
            root = standin_weights(list(renderer_files(species).values()), seed)
            cache[species, seed] = load_renderer(species, location=WeightsLocation(explicit_dir=root))
        return cache[species, seed]

    return get


def _check_keypoints_and_frames(g, renderer, motion, frames: bool = True):
    settings = g.meta["settings"]
    assert not settings["flag_do_crop"], "crop fixtures are covered by test_crop.py"
    I_s = prepare_images(torch.from_numpy(g["in_image_rgb_u8"]))
    np.testing.assert_array_equal(I_s.numpy(), g["in_I_s"])
    src = source_keypoints(renderer, I_s)
    for key in ("pitch", "yaw", "roll", "t", "exp", "scale", "kp"):
        g.check(f"mid_x_s_info_{key}", getattr(src, key))
    g.check("mid_x_s", src.x_s[0])

    dk = driving_keypoints(renderer, src, motion, options_from(settings), species=g.meta["species"])
    g.check("mid_motion_multiplier", np.float32(dk.multiplier))
    g.check("mid_x_d_pre_stitch", dk.pre_stitch)
    g.check("mid_x_d_post_stitch", dk.post_stitch)
    g.check("out_x_d", dk.x_d)

    if not frames:
        return
    f_s = appearance_features(renderer, I_s)
    idx = torch.from_numpy(g["in_frame_indices"])
    frames = torch.cat(list(render_frames(renderer, f_s, src.x_s, dk.x_d[idx], batch_size=2)))
    g.check("out_frames", frames)
    g.check("out_frames_u8", to_uint8(frames))


@pytest.mark.parametrize("species", SPECIES)
def test_keypoints_from_recorded_motion(golden, renderers, species):
    g = golden(f"06_e2e_{species}.npz")
    motion = SimpleNamespace(**{k: torch.from_numpy(g[f"mid_motion_{k}"]) for k in MOTION_KEYS})
    _check_keypoints_and_frames(g, renderers(g.meta["species"], g.weights_seed), motion, frames=False)
    # the motion arrays are this test's input; the full-chain test compares them and the frames
    unchecked = sorted((set(g.keys("out_x")) | set(g.keys("mid_"))) - set(g.errors) - set(g.keys("mid_motion_")))
    assert not unchecked, f"{g.name}: arrays not compared: {unchecked}"


CHECKPOINT = "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt"
TEMPLATE = "JoyVASA/motion_template/motion_template.pkl"


@pytest.mark.parametrize("species", SPECIES)
def test_whole_chain_from_audio(golden, renderers, standin_weights, species):
    """Waveform -> motion generator (recorded noise) -> keypoints -> frames, as the original pipeline."""
    from joyvasa.motion import NoiseReplay, generate_motion, load_motion_generator

    g = golden(f"06_e2e_{species}.npz")
    settings = g.meta["settings"]
    root = standin_weights([CHECKPOINT, TEMPLATE], g.weights_seed)
    model = load_motion_generator(root / CHECKPOINT, root / TEMPLATE, pe_mode=settings["pe_mode"])
    assert settings["cfg_mode"] == "incremental"  # the only mode with a single (audio) condition
    motion = generate_motion(model, torch.from_numpy(g["in_audio_16k"]), 16000, cfg_scale=float(settings["cfg_scale"]),
                             smoothing=0.01 if settings["is_smooth_motion"] else None,
                             noise=NoiseReplay(torch.from_numpy(g["in_noise_xT"]), torch.from_numpy(g["in_noise_z"])))
    assert len(motion) == g.meta["n_frames"]
    for key in MOTION_KEYS:
        g.check(f"mid_motion_{key}", getattr(motion, key))
    _check_keypoints_and_frames(g, renderers(g.meta["species"], g.weights_seed), motion)
    unchecked = sorted((set(g.keys("out_")) | set(g.keys("mid_"))) - set(g.errors))
    assert not unchecked, f"{g.name}: arrays not compared: {unchecked}"
