"""Face controls on motion (gaze, blinks, emotion / expression offset) and their nodes, on synthetic motion and
tiny models."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from joyvasa.direct import blinks as bl
from joyvasa.direct import emotion as em
from joyvasa.direct import gaze as gz
from joyvasa.face.source import no_crop
from joyvasa.motion.decode import MotionSequence
from joyvasa.pipeline import prepare_source
from joyvasa.renderer import prepare_images, retarget_eye, source_keypoints
from joyvasa.renderer.keypoints import EYE_KP, LIP_KP, rotation_matrix
from joyvasa.testing.tiny import tiny_renderer

FPS = 25.0


def _motion(T: int = 100, seed: int = 0, yaw=None, pitch=None) -> MotionSequence:
    g = torch.Generator().manual_seed(seed)
    exp = torch.randn(T, 21, 3, generator=g) * 0.01
    yaw = torch.linspace(0, 20, T)[:, None] if yaw is None else torch.as_tensor(yaw, dtype=torch.float32)[:, None]
    pitch = (torch.sin(torch.arange(T) / 7.0) * 8)[:, None] if pitch is None else \
        torch.as_tensor(pitch, dtype=torch.float32)[:, None]
    roll = torch.full((T, 1), 2.0)
    return MotionSequence(raw=torch.randn(T, 70, generator=g), exp=exp, scale=torch.ones(T, 1),
                          t=torch.zeros(T, 3), pitch=pitch, yaw=yaw, roll=roll, R=rotation_matrix(pitch, yaw, roll))


def _same_except_exp(a: MotionSequence, b: MotionSequence) -> None:
    for f in dataclasses.fields(a):
        if f.name != "exp":
            assert torch.equal(getattr(a, f.name), getattr(b, f.name)), f.name


@pytest.fixture(scope="module")
def renderer():
    return tiny_renderer()


def _image(seed: int = 0, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _landmarks(open_ratio: float = 0.3) -> np.ndarray:
    """203 points with both eyes `open_ratio` open (eye width 40, lid gap 40 x ratio)."""
    lmk = np.random.default_rng(1).uniform(100, 400, (203, 2)).astype(np.float32)
    for corner_a, corner_b, lid_a, lid_b, x0 in ((0, 12, 6, 18, 150.0), (24, 36, 30, 42, 300.0)):
        lmk[corner_a], lmk[corner_b] = (x0, 200.0), (x0 + 40.0, 200.0)
        lmk[lid_a], lmk[lid_b] = (x0 + 20.0, 200.0 - 20 * open_ratio), (x0 + 20.0, 200.0 + 20 * open_ratio)
    return lmk


@pytest.fixture(scope="module")
def source(renderer):
    image = _image()
    return prepare_source(renderer, image, no_crop(image, landmarks_203=_landmarks()))


# ------------------------------------------------------------------------------------------------------ gaze

def test_free_gaze_and_zero_amplitude_are_unchanged():
    m = _motion()
    assert gz.apply_gaze(m, gz.GazeOptions()) is m
    assert gz.apply_gaze(m, gz.GazeOptions(target="camera", amplitude=0.0)) is m


def test_camera_gaze_cancels_head_yaw_on_the_pupils_only():
    m = _motion(yaw=torch.linspace(0, 24, 100), pitch=torch.linspace(0, -12, 100))
    out = gz.apply_gaze(m, gz.GazeOptions(target="camera"))
    _same_except_exp(m, out)
    d_yaw, d_pitch = (m.yaw[:, 0] - m.yaw[0, 0]), (m.pitch[:, 0] - m.pitch[0, 0])
    diff = out.exp - m.exp
    for k in gz.PUPIL_KP:
        torch.testing.assert_close(diff[:, k, 0], gz.YAW_TO_X * d_yaw, atol=1e-8, rtol=1e-5)
        torch.testing.assert_close(diff[:, k, 1], gz.PITCH_TO_Y * d_pitch, atol=1e-8, rtol=1e-5)
        assert torch.equal(out.exp[:, k, 2], m.exp[:, k, 2])
    others = [k for k in range(21) if k not in gz.PUPIL_KP]
    assert torch.equal(out.exp[:, others], m.exp[:, others])
    assert torch.equal(out.exp[0], m.exp[0])  # frame 0 is the source's face
    # the counter-rotation opposes the head's turn in the image: +yaw turns the face to the image's left (-x)
    assert gz.YAW_TO_X > 0 and gz.PITCH_TO_Y < 0 and abs(gz.YAW_TO_X) == gz.EXP_PER_DEGREE


def test_gaze_is_limited_and_amplitude_scales_it():
    m = _motion(T=10, yaw=torch.tensor([0.0] + [45.0] * 9), pitch=torch.zeros(10))
    full = gz.apply_gaze(m, gz.GazeOptions(target="camera"))
    half = gz.apply_gaze(m, gz.GazeOptions(target="camera", amplitude=0.5))
    x = (full.exp - m.exp)[:, 11, 0]
    torch.testing.assert_close(x[1:], torch.full((9,), gz.YAW_TO_X * gz.EYE_LIMIT_DEG))
    torch.testing.assert_close((half.exp - m.exp)[:, 11, 0], 0.5 * x)


def test_direction_gaze_shifts_in_then_holds_against_the_head():
    m = _motion(T=50, yaw=torch.linspace(0, 10, 50), pitch=torch.zeros(50))
    out = gz.apply_gaze(m, gz.GazeOptions(target="direction", horizontal_deg=10.0, vertical_deg=-5.0))
    d = out.exp - m.exp
    assert torch.equal(d[0], torch.zeros(21, 3))
    late = slice(int(gz.GAZE_SHIFT_SECONDS * FPS) + 1, None)
    torch.testing.assert_close(d[late, 15, 0], gz.YAW_TO_X * (10.0 + m.yaw[late, 0] - m.yaw[0, 0]))
    torch.testing.assert_close(d[late, 15, 1], torch.full_like(d[late, 15, 1], gz.PITCH_TO_Y * -5.0))


def test_gaze_options_are_checked():
    with pytest.raises(ValueError, match="gaze target"):
        gz.GazeOptions(target="moon")
    with pytest.raises(ValueError, match="horizontal_deg"):
        gz.GazeOptions(target="direction", horizontal_deg=90)


# ---------------------------------------------------------------------------------------------------- blinks

def test_blink_schedule_is_seeded_and_spaced():
    opts = bl.BlinkOptions(mode="add", rate_per_minute=30.0, seed=3)
    a, b = bl.blink_schedule(1500, opts), bl.blink_schedule(1500, opts)
    c = bl.blink_schedule(1500, dataclasses.replace(opts, seed=4))
    assert a == b and a != c
    assert 10 <= len(a) <= 50  # ~30 in a minute
    assert min(np.diff(a)) >= (opts.duration + bl.REFRACTORY_SECONDS) * FPS - 1
    assert a[0] > 0
    assert bl.blink_schedule(1500, dataclasses.replace(opts, rate_per_minute=0.0)) == []


def test_openness_closes_at_the_apex_and_is_exactly_open_elsewhere():
    opts = bl.BlinkOptions(mode="add", rate_per_minute=20.0, seed=1)
    o = bl.eye_openness(500, opts)
    apexes = bl.blink_schedule(500, opts)
    assert torch.all(o[apexes] == 0.0)
    blinking = o < 1
    assert blinking.sum() <= len(apexes) * (opts.duration * FPS + 1)
    assert torch.all(o[~blinking] == 1.0) and not blinking[0]


def test_blinks_change_the_eye_rows_exactly_at_the_scheduled_frames(renderer, source):
    m = _motion(T=250)
    opts = bl.BlinkOptions(mode="add", rate_per_minute=20.0, seed=5)
    out = bl.apply_blinks(m, opts, renderer=renderer, source=source)
    _same_except_exp(m, out)
    changed = torch.nonzero((out.exp != m.exp).any(dim=2).any(dim=1)).flatten().tolist()
    scheduled = torch.nonzero(bl.eye_openness(250, opts) < 1).flatten().tolist()
    assert changed == scheduled and set(bl.blink_schedule(250, opts)) <= set(changed)
    others = [k for k in range(21) if k not in EYE_KP]
    assert torch.equal(out.exp[:, others], m.exp[:, others])
    # the delta at an apex is the eye MLP at ratio 0 minus at the source's ratio, over the source's scale
    apex = bl.blink_schedule(250, opts)[0]
    ratios = bl.source_eye_ratios(source)
    torch.testing.assert_close(ratios, torch.tensor([[0.3, 0.3]]), atol=1e-5, rtol=0)
    kp = source.keypoints
    closed, opened = (retarget_eye(renderer, kp.x_s, torch.tensor([[0.3, 0.3, r]])) for r in (0.0, 0.3))
    want = ((closed - opened) / kp.scale)[0, list(EYE_KP)]
    torch.testing.assert_close(out.exp[apex, list(EYE_KP)] - m.exp[apex, list(EYE_KP)], want, atol=1e-6, rtol=1e-4)
    # same seed, same result; rate 0 or "off": unchanged
    again = bl.apply_blinks(m, opts, renderer=renderer, source=source)
    assert torch.equal(out.exp, again.exp)
    assert bl.apply_blinks(m, dataclasses.replace(opts, rate_per_minute=0.0), renderer, source) is m
    assert bl.apply_blinks(m, bl.BlinkOptions(), renderer, source) is m


def test_suppress_removes_short_eye_pulses_and_keeps_frame_0(renderer, source):
    T = 100
    exp = torch.zeros(T, 21, 3)
    exp[40:44, 13, 1] = 0.02  # a 4-frame blink-like pulse
    exp[70:, 11, 0] = 0.01  # a gaze step
    m = dataclasses.replace(_motion(T), exp=exp)
    out = bl.apply_blinks(m, bl.BlinkOptions(mode="suppress"))
    assert torch.all(out.exp[:, 13, 1] == 0)
    assert torch.equal(out.exp[:, 11, 0], exp[:, 11, 0])  # edges survive a running median
    others = [k for k in range(21) if k not in EYE_KP]
    assert torch.equal(out.exp[:, others], exp[:, others]) and torch.equal(out.exp[0], exp[0])
    replaced = bl.apply_blinks(m, bl.BlinkOptions(mode="replace", seed=2), renderer=renderer, source=source)
    assert not torch.equal(replaced.exp, out.exp)


def test_blinks_explain_missing_landmarks_and_animals(renderer, source):
    m = _motion(T=50)
    opts = bl.BlinkOptions(mode="add", rate_per_minute=30.0)
    boxed = dataclasses.replace(source, crop=dataclasses.replace(source.crop, landmarks_203=None))
    with pytest.raises(ValueError, match="203 face landmarks.*face detector"):
        bl.apply_blinks(m, opts, renderer=renderer, source=boxed)
    with pytest.raises(ValueError, match="human"):
        bl.apply_blinks(m, opts, renderer=renderer, source=dataclasses.replace(source, species="animal"))
    # a detector finds the eyes on the crop
    from joyvasa.face.detect import FaceDetector

    class FakeDetector(FaceDetector):
        def __init__(self):
            self.seen = None

        def find(self, image_rgb, face_index=0, det_thresh=None):
            self.seen = image_rgb.shape
            return type("F", (), {"landmarks_203": _landmarks(0.25)})()

    det = FakeDetector()
    torch.testing.assert_close(bl.source_eye_ratios(boxed, det), torch.tensor([[0.25, 0.25]]), atol=1e-5, rtol=0)
    assert det.seen == source.crop.image_512.shape
    assert not torch.equal(bl.apply_blinks(m, opts, renderer=renderer, source=boxed, detector=det).exp, m.exp)


# ---------------------------------------------------------------------------------------------- emotion

def test_expression_from_image_is_the_motion_extractors_expression(renderer):
    image = _image(7, 256)
    exp = em.expression_from_image(renderer, image)
    want = source_keypoints(renderer, prepare_images(torch.from_numpy(image))).exp[0]
    assert exp.shape == (21, 3) and torch.equal(exp, want)
    torch.testing.assert_close(em.expression_from_image(renderer, _image(7, 300))[0].shape, torch.Size([3]))


def test_regions():
    assert em.region_keypoints("brows") == (1, 2)
    assert em.region_keypoints("eyes") == tuple(EYE_KP)
    assert set(LIP_KP) <= set(em.region_keypoints("mouth"))
    assert em.region_keypoints("brows+eyes") == tuple(sorted((1, 2, *EYE_KP)))
    assert em.region_keypoints("all") == tuple(range(21))
    assert not set(em.REGIONS["brows"]) & set(em.REGIONS["eyes"]) and not set(em.REGIONS["eyes"]) & set(
        em.REGIONS["mouth"])
    with pytest.raises(ValueError, match="region"):
        em.region_keypoints("nose")


def test_intensity_zero_is_unchanged():
    m = _motion()
    assert em.apply_expression_offset(m, torch.ones(21, 3), em.ExpressionOffsetOptions()) is m


@pytest.mark.parametrize("region", ["brows", "eyes", "mouth", "eyes+mouth", "all"])
def test_region_masks_touch_only_their_keypoints(region):
    m = _motion()
    off = torch.randn(21, 3, generator=torch.Generator().manual_seed(2)) * 0.01
    out = em.apply_expression_offset(m, off, em.ExpressionOffsetOptions(intensity=0.7, region=region))
    _same_except_exp(m, out)
    kps = list(em.region_keypoints(region))
    rest = [k for k in range(21) if k not in kps]
    assert torch.equal(out.exp[:, rest], m.exp[:, rest])
    assert not torch.equal(out.exp[:, kps], m.exp[:, kps])


def test_ramps_reach_full_strength_and_fade_out():
    T = 200
    m = _motion(T)
    off = torch.full((21, 3), 0.01)
    opts = em.ExpressionOffsetOptions(intensity=1.5, start=1.0, end=6.0, ramp_in=0.5, ramp_out=1.0)
    out = em.apply_expression_offset(m, off, opts)
    d = (out.exp - m.exp)[:, 4, 0]
    w = em.expression_weights(T, opts)
    assert torch.all(d[: int(1.0 * FPS) + 1] == 0)  # before the start (and frame 0)
    full = slice(int(1.5 * FPS) + 1, int(5.0 * FPS) + 1)
    assert torch.all(w[full] == 1.0)
    torch.testing.assert_close(d[full], torch.full_like(d[full], 1.5 * 0.01))
    assert torch.all(d[int(6.0 * FPS):] == 0)  # faded out by the end
    ramp = d[int(1.0 * FPS): int(1.5 * FPS) + 1]
    assert torch.all(ramp[1:] >= ramp[:-1])  # monotone ramp in
    # without an end the offset holds to the last frame; a zero ramp is full from frame 1
    held = em.expression_weights(T, em.ExpressionOffsetOptions(intensity=1.0, ramp_in=0.0, ramp_out=0.0))
    assert held[0] == 0 and torch.all(held[1:] == 1)


def test_offsets_follow_the_driving_rule():
    src = torch.randn(21, 3) * 0.01
    ref = torch.randn(21, 3) * 0.01
    lip, rest = list(LIP_KP), [k for k in range(21) if k not in LIP_KP]
    towards = em.expression_offset(src, ref, "human")
    torch.testing.assert_close(towards[rest], ref[rest] - src[rest])
    torch.testing.assert_close(towards[lip], ref[lip])
    neutral = em.expression_offset(src, None, "human")
    torch.testing.assert_close(neutral[rest], -src[rest])
    assert torch.all(neutral[lip] == 0)
    torch.testing.assert_close(em.expression_offset(src, None, "animal"), -src)
    # human driving: delta = exp_s + (exp_d,i - exp_d,0) outside the lips; at full weight neutralize leaves only
    # the generated motion
    m = _motion(60)
    out = em.apply_expression_offset(m, neutral, em.ExpressionOffsetOptions(intensity=1.0, ramp_in=0.2))
    delta = src + (out.exp - out.exp[:1])
    gen = m.exp - m.exp[:1]
    torch.testing.assert_close(delta[30:, rest], gen[30:, rest])


def test_expression_options_are_checked():
    with pytest.raises(ValueError, match="end"):
        em.ExpressionOffsetOptions(intensity=1.0, start=2.0, end=1.0)
    with pytest.raises(ValueError, match="intensity"):
        em.ExpressionOffsetOptions(intensity=float("nan"))


# ------------------------------------------------------------------------------------------------ nodes

@pytest.fixture(scope="module")
def nodes():
    import importlib

    from tests.pack import NAME, PACK  # noqa: F401  (imports the pack as ComfyUI does)

    return importlib.import_module(f"{NAME}.nodes.direct_face")


@pytest.fixture(scope="module")
def handle(renderer):
    from tests.pack import PACK

    return PACK.nodes.runtime.ModelHandle(renderer, torch.device("cpu"), species="human", dtype=torch.float32)


def _clip(motion, nodes):
    import importlib

    types = importlib.import_module(f"{nodes.__package__}.types")
    return types.MotionClip(motion, torch.zeros(1, 16000), 16000, 0.08)


@pytest.fixture(scope="module")
def node_source(handle):
    from tests.pack import PACK

    image = _image()
    return PACK.joyvasa.pipeline.prepare_source(handle.model, image, PACK.joyvasa.face.source.no_crop(
        image, landmarks_203=_landmarks()))


def test_node_schemas(nodes):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for name in ("JoyVASAGaze", "JoyVASABlinks", "JoyVASAExpressionFromImage"):
        cls = getattr(nodes, name)
        assert cls.CATEGORY == "JoyVASA" and cls.DESCRIPTION and callable(getattr(cls(), cls.FUNCTION))
        for section in ("required", "optional"):
            for key, spec in cls.INPUT_TYPES().get(section, {}).items():
                assert len(spec) == 2 and spec[1].get("tooltip"), f"{name}.{key}"
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES) == 1
        assert (repo / "web" / "docs" / f"{name}.md").is_file()


def test_nodes_edit_the_motion(nodes, handle, node_source):
    clip = _clip(_motion(120), nodes)
    (gazed,) = nodes.JoyVASAGaze().apply(clip, "camera", 0.0, 0.0, 1.0)
    assert gazed.audio_delay == clip.audio_delay and not torch.equal(gazed.motion.exp, clip.motion.exp)
    (free,) = nodes.JoyVASAGaze().apply(clip, "free", 0.0, 0.0, 1.0)
    assert free.motion is clip.motion
    (blinked,) = nodes.JoyVASABlinks().apply(handle, node_source, clip, "add", 30.0, 0.25, 1, 0.4, 1.0)
    assert not torch.equal(blinked.motion.exp, clip.motion.exp)
    (same,) = nodes.JoyVASABlinks().apply(handle, node_source, clip, "add", 0.0, 0.25, 1, 0.4, 1.0)
    assert same is clip
    (quiet,) = nodes.JoyVASABlinks().apply(handle, node_source, clip, "suppress", 15.0, 0.25, 1, 0.4, 1.0)
    changed_kp = torch.nonzero((quiet.motion.exp != clip.motion.exp).any(dim=2).any(dim=0)).flatten().tolist()
    assert changed_kp and set(changed_kp) <= set(EYE_KP)
    ref = torch.rand(1, 80, 80, 3)
    (moved,) = nodes.JoyVASAExpressionFromImage().apply(handle, node_source, clip, "reference image", 1.0, "mouth",
                                                        0.0, 0.0, 0.5, 0.5, reference_image=ref)
    changed = (moved.motion.exp != clip.motion.exp).any(dim=2).any(dim=0)
    assert set(torch.nonzero(changed).flatten().tolist()) <= set(em.region_keypoints("mouth"))
    (neutral,) = nodes.JoyVASAExpressionFromImage().apply(handle, node_source, clip, "neutralize source", 1.0,
                                                          "brows", 1.0, 3.0, 0.5, 0.5)
    assert not torch.equal(neutral.motion.exp, clip.motion.exp)
    with pytest.raises(ValueError, match="reference_image"):
        nodes.JoyVASAExpressionFromImage().apply(handle, node_source, clip, "reference image", 1.0, "all",
                                                 0.0, 0.0, 0.5, 0.5)
    animal = type(handle)(handle.model, torch.device("cpu"), species="animal", dtype=torch.float32)
    with pytest.raises(ValueError, match="same renderer"):
        nodes.JoyVASABlinks().apply(animal, node_source, clip, "add", 30.0, 0.25, 1, 0.4, 1.0)
