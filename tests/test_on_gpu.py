"""The whole pack on a pretend GPU (tests/pretend_gpu.py): models and tensors "on the device", numbers from the
CPU. A tensor left on the CPU that meets a device tensor raises here as it does on CUDA, and float64 on the
device raises as on MPS; the results must equal the CPU run's.

Covered: the library path (animate_portrait on tiny models, one full-size stand-in run through the CLI with
`--device cuda`), motion sampling (same seed, same motion as on the CPU), X-Pose detection, paste-back and
the mp4 writer, and every node with the runtime's compute device on the pretend GPU.
"""
from __future__ import annotations

import logging
import math
import wave
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from joyvasa.motion import encode_speech, sample_speech_motion
from joyvasa.pipeline import CropOptions, MotionOptions, PortraitOptions, animate_portrait
from joyvasa.renderer import warp_decode
from joyvasa.testing.tiny import tiny_generator, tiny_renderer
from joyvasa.video import Mp4Writer
from joyvasa.weights import motion_files, renderer_files
from tests.pack import PACK
from tests.pretend_gpu import PRETEND_DEVICE, is_pretend, on_pretend_gpu

SPEECH = 0.1 * torch.randn(1, 6000, generator=torch.Generator().manual_seed(3))
IMAGE = np.random.default_rng(0).integers(0, 256, (96, 120, 3), dtype=np.uint8)


def _render(renderer, generator, options: PortraitOptions, motion=None) -> tuple[np.ndarray, object]:
    """animate_portrait's frames; with `motion` given, the same rendering driven by that motion."""
    from joyvasa.pipeline import animate, crop_portrait, portrait_image, prepare_source

    if motion is None:
        clip = animate_portrait(renderer, generator, IMAGE, SPEECH, 16000, options)
        return np.concatenate(list(clip.frames)), clip.motion
    picture = portrait_image(IMAGE)
    source = prepare_source(renderer, picture, crop_portrait(picture, options.crop))
    frames = animate(renderer, source, motion, options.driving, options.paste_back, options.batch_size)
    return np.concatenate(list(frames)), motion


@pytest.mark.parametrize("crop", [CropOptions(mode="none"), CropOptions(mode="box", box=(30, 20, 80, 75))],
                         ids=["no-crop", "box-and-paste-back"])
def test_animate_portrait_on_the_gpu_equals_the_cpu(crop, monkeypatch):
    """The whole path runs on the device; driven by the same motion, its frames equal the CPU's bit for bit
    (the motion itself is compared in the next test)."""
    options = PortraitOptions(crop=crop, motion=MotionOptions(seed=5), batch_size=3)
    expected, cpu_motion = _render(tiny_renderer(), tiny_generator(), options)
    with on_pretend_gpu(monkeypatch) as device:
        renderer, generator = tiny_renderer().to(device), tiny_generator().to(device)
        assert is_pretend(next(renderer.parameters())) and renderer.device == device
        frames, motion = _render(renderer, generator, options)  # end to end on the device
        assert is_pretend(motion.exp)
        same_motion, _ = _render(renderer, generator, options, motion=cpu_motion)  # a CPU motion is moved over
    assert frames.dtype == np.uint8 and frames.shape == expected.shape
    np.testing.assert_array_equal(same_motion, expected)


def test_motion_sampling_same_seed_same_motion_as_cpu(monkeypatch):
    """The seed's noise is drawn on the CPU, so a seed gives the same motion on any device. Not bit for bit:
    nn.MultiheadAttention takes its fused CPU fast path only for plain CPU tensors, and scaled-dot-product
    attention picks its kernel by device type, so the pretend device runs the math path (~1e-6 apart)."""
    def motion(generator):
        speech = encode_speech(generator, SPEECH, 16000)
        return sample_speech_motion(generator, speech, seed=11, cfg_scale=2.8, pe_mode="main")

    expected, other_seed = motion(tiny_generator()), None
    with on_pretend_gpu(monkeypatch) as device:
        result = motion(tiny_generator().to(device))
        assert is_pretend(result.exp)
        raw, exp, R = result.raw.cpu(), result.exp.cpu(), result.R.cpu()
    other_seed = sample_speech_motion(tiny_generator(), encode_speech(tiny_generator(), SPEECH, 16000), seed=12)
    for actual, wanted in ((raw, expected.raw), (exp, expected.exp), (R, expected.R)):
        torch.testing.assert_close(actual, wanted, rtol=0, atol=2e-5)
    assert (other_seed.raw - expected.raw).abs().max() > 0.1  # the tolerance is far below a seed's effect


def test_performance_controls_on_the_gpu(monkeypatch):
    """Every control of joyvasa.direct at once on a motion sampled on the device, with the renderer's MLPs on the
    device (blinks, lip closing): no device mix, and the CPU's result within the motion's own tolerance."""
    from joyvasa.direct.blinks import BlinkOptions
    from joyvasa.direct.emotion import ExpressionOffsetOptions
    from joyvasa.direct.fade import FadeOptions
    from joyvasa.direct.gaze import GazeOptions
    from joyvasa.direct.head import HeadOptions
    from joyvasa.direct.mouth import MouthOptions
    from joyvasa.direct.perform import DirectOptions, direct_motion
    from joyvasa.face.source import no_crop
    from joyvasa.motion import generate_motion
    from joyvasa.pipeline import portrait_image, prepare_source
    from joyvasa.testing.onnx_standins import layout_203

    options = DirectOptions(head=HeadOptions(gain=(0.5, 0.5, 0.5), offset=(2, 5, 0), keyframes="1s: yaw=10"),
                            gaze=GazeOptions(target="camera"), blinks=BlinkOptions(mode="add", rate_per_minute=60),
                            expression=ExpressionOffsetOptions(intensity=0.5), neutralize=True,
                            mouth=MouthOptions(lip_gain=1.2, close_silences=True), fade=FadeOptions(0.2, 0.2))
    picture = portrait_image(IMAGE)
    landmarks = (layout_203() * 60 + np.array([60, 48])).astype(np.float32)

    def run(device):
        renderer, generator = tiny_renderer().to(device), tiny_generator().to(device)
        source = prepare_source(renderer, picture, no_crop(picture, landmarks))
        motion = generate_motion(generator, SPEECH, 16000, seed=1)
        return motion, direct_motion(motion, options, renderer=renderer, source=source, waveform=SPEECH,
                                     sample_rate=16000, audio_delay=0.08)

    plain, expected = run(torch.device("cpu"))
    assert not torch.equal(expected.exp, plain.exp)  # the controls did something
    with on_pretend_gpu(monkeypatch) as device:
        _, directed = run(device)
    for name in ("exp", "pitch", "yaw", "roll", "scale", "t", "R"):
        torch.testing.assert_close(getattr(directed, name).cpu(), getattr(expected, name), rtol=0, atol=2e-5)


def test_bf16_and_fp32_renderers_see_identical_keypoints():
    """Only feature volumes take the low precision: the keypoints reaching the dense motion network are the
    float32 ones in both modes."""
    seen = {}

    def record(name):
        def hook(module, args, kwargs):
            seen[name] = (kwargs["kp_driving"], kwargs["kp_source"])
        return hook

    from joyvasa.renderer import appearance_features, prepare_images

    fp32, bf16 = tiny_renderer(), tiny_renderer(torch.bfloat16)
    x_s = torch.randn(1, 21, 3, generator=torch.Generator().manual_seed(0)) * 0.3
    x_d = x_s + 0.01 * torch.randn(2, 21, 3, generator=torch.Generator().manual_seed(1))
    f_s = appearance_features(fp32, prepare_images(torch.from_numpy(IMAGE)))
    for name, renderer in (("fp32", fp32), ("bf16", bf16)):
        renderer.warping.dense_motion_network.register_forward_pre_hook(record(name), with_kwargs=True)
        warp_decode(renderer, f_s, x_s, x_d)
    for a, b in zip(seen["fp32"], seen["bf16"], strict=True):
        assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b)
    assert torch.equal(seen["fp32"][0], x_d)


def test_xpose_detection_on_the_gpu(monkeypatch):
    from joyvasa.face.xpose import detect_animal_keypoints
    from tests.test_xpose import tiny_model, tiny_prompt

    image = np.random.default_rng(1).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    expected = detect_animal_keypoints(tiny_model(), image, prompt=tiny_prompt())
    with on_pretend_gpu(monkeypatch) as device:
        found = detect_animal_keypoints(tiny_model().to(device), image, prompt=_prompt_on(tiny_prompt(), device))
    np.testing.assert_allclose(found.points, expected.points, rtol=0, atol=1e-4)
    assert found.score == pytest.approx(expected.score, abs=1e-6)


def _prompt_on(prompt, device):
    return type(prompt)(*(t.to(device) if isinstance(t, torch.Tensor) else t for t in prompt))


def test_mp4_writer_takes_device_frames(tmp_path, monkeypatch):
    frames = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with on_pretend_gpu(monkeypatch) as device, Mp4Writer(tmp_path / "a.mp4", audio=(SPEECH, 16000)) as writer:
        writer.write(frames.to(device))
    with av.open(str(tmp_path / "a.mp4")) as container:
        assert container.streams.video[0].frames == 3


# ---------------------------------------------------------------------------- the CLI, full size, --device cuda

def _wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    samples = (0.2 * np.sin(np.arange(int(seconds * rate)) * 0.05) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(rate)
        f.writeframes(samples.tobytes())
    return path


@pytest.mark.slow
def test_cli_animate_with_device_cuda(kit, standin_weights, tmp_path, monkeypatch, capsys, caplog):
    """The README's command with --device cuda at full size (stand-in weights): face detection, motion,
    rendering, paste-back, mp4; and the same frames as on the CPU."""
    from joyvasa.cli import main
    from joyvasa.testing import onnx_standins

    image_hw = (360, 400)
    face = onnx_standins.StandinFace(box=(140.0, 90.0, 260.0, 230.0))
    root = standin_weights([*renderer_files("human").values(), *motion_files()])
    onnx_standins.build_weights(root, [face], image_hw)
    image = tmp_path / "portrait.png"
    cv2.imwrite(str(image), cv2.cvtColor(onnx_standins.warm_image(image_hw, [face]), cv2.COLOR_RGB2BGR))
    speech = _wav(tmp_path / "speech.wav", 0.05)
    caplog.set_level(logging.INFO, logger="joyvasa")
    argv = ["animate", "--image", str(image), "--audio", str(speech), "--weights-dir", str(root), "--no-download"]
    assert main([*argv, "--out", str(tmp_path / "cpu.mp4"), "--device", "cpu", "--precision", "bf16"]) == 0
    with on_pretend_gpu(monkeypatch):
        assert torch.cuda.is_available()
        code = main([*argv, "--out", str(tmp_path / "gpu.mp4"), "--device", "cuda"])  # auto precision: bf16
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"models on {PRETEND_DEVICE} (bfloat16)" in caplog.text
    cpu, gpu = _decode(tmp_path / "cpu.mp4"), _decode(tmp_path / "gpu.mp4")
    assert gpu.shape == cpu.shape == ((800 + 1920) // 640, *image_hw, 3)
    # The motion's attention runs another kernel on the device (~1e-6 apart, see above), which the random
    # stand-in renderer amplifies, so the clips are close, not equal (bit-for-bit rendering from the same motion
    # is checked on tiny models above). Measured here: mean |diff| 0.5 levels.
    mse = np.mean((gpu.astype(np.float64) - cpu.astype(np.float64)) ** 2)
    assert 10 * np.log10(255**2 / max(mse, 1e-12)) > 35


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


# ----------------------------------------------------------------------------- every node on the pretend GPU

nodes = PACK.nodes
runtime = nodes.runtime
DRIVING = {k: v[1]["default"] for k, v in nodes.render.DRIVING_INPUTS.items()}


def _audio(seconds: float = 0.3) -> dict:
    t = torch.arange(int(seconds * 22050)) / 22050
    return {"waveform": (0.2 * torch.sin(2 * math.pi * 220 * t))[None, None].repeat(1, 2, 1), "sample_rate": 22050}


def _node_chain(device: torch.device, tmp_path: Path, cpu_motion=None) -> dict:
    """Prepare Source, Encode Audio, Sample Motion, Render, Render to File and Animate on tiny models; Render
    once more with `cpu_motion` (a MOTION made on the CPU) when given."""
    renderer = runtime.ModelHandle(tiny_renderer(), device, species="human", dtype=torch.float32)
    motion_model = runtime.ModelHandle(tiny_generator(), device)
    image = torch.from_numpy(IMAGE).float()[None] / 255
    source, preview = nodes.source.JoyVASAPrepareSource().prepare(
        renderer, image, "box", 2.3, 0.0, -0.125, 0, 1280, box_x=30, box_y=20, box_width=50, box_height=55)
    (speech,) = nodes.motion.JoyVASAEncodeAudio().encode(motion_model, _audio())
    (motion,) = nodes.motion.JoyVASASampleMotion().sample(motion_model, speech, 2.8, 4, 0.01, "legacy", "original")
    frames, audio, fps = nodes.render.JoyVASARender().render(renderer, source, motion, paste_back=True,
                                                             batch_size=2, **DRIVING)
    written = nodes.render.JoyVASARenderToFile().render(renderer, source, motion, paste_back=True, batch_size=2,
                                                        filename_prefix="gpu/clip", crf=18, **DRIVING)
    animated, animated_audio, _ = nodes.render.JoyVASAAnimate().animate(
        renderer, motion_model, image, _audio(), "none", 2.8, 4, 1.0, paste_back=True, batch_size=2)
    same_motion = frames if cpu_motion is None else nodes.render.JoyVASARender().render(
        renderer, source, cpu_motion, paste_back=True, batch_size=2, **DRIVING)[0]
    return {"preview": preview, "frames": frames, "audio": audio["waveform"], "fps": fps, "motion": motion,
            "file": Path(written["result"][0]), "animated": animated, "animated_audio": animated_audio["waveform"],
            "same_motion": same_motion}


def test_every_processing_node_on_the_gpu_equals_the_cpu(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = _node_chain(torch.device("cpu"), tmp_path)
    with on_pretend_gpu(monkeypatch) as device:
        monkeypatch.setattr(runtime, "compute_device", lambda choice="auto": device)
        result = _node_chain(device, tmp_path, cpu_motion=expected["motion"])
    for key in ("preview", "frames", "audio", "animated", "animated_audio", "same_motion"):
        assert not is_pretend(result[key]) and result[key].device.type == "cpu", key  # IMAGE / AUDIO on the CPU
        assert result[key].shape == expected[key].shape, key
    for key in ("preview", "audio", "animated_audio"):
        assert torch.equal(result[key], expected[key]), key
    assert torch.equal(result["same_motion"], expected["frames"])  # same motion: the CPU's frames, bit for bit
    assert result["file"].stat().st_size > 0 and result["file"] != expected["file"]


@pytest.mark.slow
def test_loaders_on_the_gpu(kit, standin_weights, monkeypatch):
    """Every loader at full size (stand-in files) with device auto on the pretend GPU: the models land there."""
    root = standin_weights([*renderer_files("human").values(), *motion_files(), "liveportrait_animals/xpose.pth"])
    monkeypatch.setenv("JOYVASA_WEIGHTS_DIR", str(root))
    with on_pretend_gpu(monkeypatch) as device:
        (renderer,) = nodes.loaders.JoyVASALoadRenderer().load("human", "v1.0", "auto", "auto", download=False)
        (motion_model,) = nodes.loaders.JoyVASALoadMotionGenerator().load("auto", download=False)
        (xpose,) = nodes.loaders.JoyVASALoadFaceDetector().load("x-pose (animal)", 0.0, "auto", download=False)
        assert renderer.device == motion_model.device == xpose.detector.device == device
        assert renderer.info["dtype"] == torch.bfloat16  # auto precision on a GPU with bf16
        for handle in (renderer, motion_model, xpose.detector):
            with handle.use() as model:
                assert all(is_pretend(p) for p in model.parameters())


def test_control_nodes_on_a_device_motion(monkeypatch):
    """Head, Gaze, Mouth and Fade nodes take a MOTION sampled on the device (Sample Motion keeps it there)."""
    with on_pretend_gpu(monkeypatch) as device:
        motion_model = runtime.ModelHandle(tiny_generator(), device)
        (speech,) = nodes.motion.JoyVASAEncodeAudio().encode(motion_model, _audio())
        (motion,) = nodes.motion.JoyVASASampleMotion().sample(motion_model, speech, 2.8, 0, 0.01, "legacy",
                                                              "original")
        assert is_pretend(motion.motion.exp)
        (motion,) = nodes.direct.JoyVASAHeadMotion().direct(motion, 0.5, 0.5, 0.5, 1.0, 2.0, 3.0, "0.1s: yaw=10",
                                                            1.1, 0.01, 0.0, 0.5)
        (motion,) = nodes.direct_face.JoyVASAGaze().apply(motion, "direction", 5.0, -3.0, 1.0)
        (motion,) = nodes.direct.JoyVASAMouth().direct(motion, 1.2, 1, True, -30.0, 0.25, 0.08, 0.08, True)
        (motion,) = nodes.direct.JoyVASAFade().direct(motion, 0.1, 0.1)
        exp = motion.motion.exp.cpu()
    assert torch.isfinite(exp).all() and exp.shape[1:] == (21, 3)
