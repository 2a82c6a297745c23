"""The command line: `python -m joyvasa animate` end to end on stand-in weights, and its error messages."""
from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from joyvasa.weights import renderer_files

REPO = Path(__file__).resolve().parents[1]
MOTION_FILES = ["JoyVASA/motion_generator/motion_generator_hubert_chinese.pt",
                "JoyVASA/motion_template/motion_template.pkl"]


def _wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    samples = (0.2 * np.sin(np.arange(int(seconds * rate)) * 0.05) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(rate)
        f.writeframes(samples.tobytes())
    return path


def _run(*args, env_root: Path | None = None):
    cmd = [sys.executable, "-m", "joyvasa", *map(str, args)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    if env_root is not None:
        env["JOYVASA_WEIGHTS_DIR"] = str(env_root)
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def scene(kit, standin_weights, tmp_path_factory):
    from joyvasa.testing import onnx_standins

    tmp = tmp_path_factory.mktemp("cli")
    image_hw = (360, 400)
    face = onnx_standins.StandinFace(box=(140.0, 90.0, 260.0, 230.0))
    root = standin_weights([*renderer_files("human").values(), *MOTION_FILES])
    onnx_standins.build_weights(root, [face], image_hw)
    image = tmp / "portrait.png"
    cv2.imwrite(str(image), cv2.cvtColor(onnx_standins.warm_image(image_hw, [face]), cv2.COLOR_RGB2BGR))
    return root, image, _wav(tmp / "speech.wav", 0.05), tmp


@pytest.mark.slow
def test_animate_writes_a_talking_mp4(scene):
    root, image, speech, tmp = scene
    out = tmp / "out" / "talk.mp4"
    result = _run("animate", "--image", image, "--audio", speech, "--out", out, env_root=root)
    assert result.returncode == 0, result.stderr[-2000:]
    with av.open(str(out)) as c:
        video = next(s for s in c.streams if s.type == "video")
        assert (video.codec_context.name, video.codec_context.width, video.codec_context.height) == ("h264", 400, 360)
        assert video.frames == (800 + 1920) // 640
        assert any(s.type == "audio" and s.codec_context.name == "aac" for s in c.streams)
    assert [p.name for p in out.parent.iterdir()] == ["talk.mp4"]


def test_missing_inputs_are_reported(scene, tmp_path):
    root, image, speech, _ = scene
    result = _run("animate", "--image", tmp_path / "nope.png", "--audio", speech, "--out", tmp_path / "a.mp4",
                  env_root=root)
    assert result.returncode != 0 and "image file not found" in result.stderr
    result = _run("animate", "--image", image, "--audio", tmp_path / "nope.wav", "--out", tmp_path / "a.mp4",
                  env_root=root)
    assert result.returncode != 0 and "audio file not found" in result.stderr
    result = _run("animate", "--image", image, "--audio", speech, "--out", tmp_path / "a.avi", env_root=root)
    assert result.returncode != 0 and "must end in .mp4" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_weights_name_the_download(scene, tmp_path, monkeypatch, capsys):
    from joyvasa import cli, weights

    _, image, speech, _ = scene
    # in-process, so that the pack's own pretrained_weights/ (where users put their weights) is not searched
    monkeypatch.setenv("JOYVASA_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setattr(weights, "PACK_WEIGHTS_DIR", tmp_path / "pack")
    code = cli.main(["animate", "--image", str(image), "--audio", str(speech), "--out", str(tmp_path / "a.mp4"),
                     "--no-download"])
    stderr = capsys.readouterr().err
    assert code != 0 and "not found" in stderr and "download" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "a.mp4").exists()


def test_no_face_names_the_threshold(scene, tmp_path):
    root, _, speech, _ = scene
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((200, 200, 3), np.uint8))  # the stand-in detector sees no face in black
    result = _run("animate", "--image", blank, "--audio", speech, "--out", tmp_path / "a.mp4", env_root=root)
    assert result.returncode != 0 and "det_thresh" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_controls_save_a_motion_that_renders_again(scene):
    """Performance controls on the command line, --save-motion, then --motion renders that file again (no
    motion generator, no audio: a silent video of the same length)."""
    from joyvasa.direct.motion_file import load_motion

    root, image, speech, tmp = scene
    saved, first, second = tmp / "directed.safetensors", tmp / "directed.mp4", tmp / "again.mp4"
    result = _run("animate", "--image", image, "--audio", speech, "--out", first, "--save-motion", saved,
                  "--head-gain", "0", "0", "0", "--gaze", "camera", "--blinks", "add", "--blink-rate", "60",
                  "--lip-gain", "1.3", "--close-silences", "--fade-in", "0.04", env_root=root)
    assert result.returncode == 0, result.stderr[-2000:]
    motion, info = load_motion(saved)
    assert info["source"] == speech.name and int(info["seed"]) == 0
    assert torch.equal(motion.pitch, motion.pitch[:1].expand_as(motion.pitch))  # gain 0: a still head
    result = _run("animate", "--image", image, "--motion", saved, "--out", second, env_root=root)
    assert result.returncode == 0, result.stderr[-2000:]
    with av.open(str(first)) as a, av.open(str(second)) as b:
        assert a.streams.video[0].frames == b.streams.video[0].frames == len(motion)
        assert len(a.streams.audio) == 1 and len(b.streams.audio) == 0
    # the still head of that take constrains a new sampling with another seed: same head, new lips
    third = tmp / "constrained.safetensors"
    result = _run("animate", "--image", image, "--audio", speech, "--out", tmp / "constrained.mp4", "--seed", "9",
                  "--head-track", saved, "--save-motion", third, env_root=root)
    assert result.returncode == 0, result.stderr[-2000:]
    constrained, _ = load_motion(third)
    for name in ("pitch", "yaw", "roll", "scale", "t"):
        torch.testing.assert_close(getattr(constrained, name), getattr(motion, name), rtol=0, atol=1e-4)
    assert not torch.allclose(constrained.exp, motion.exp)
