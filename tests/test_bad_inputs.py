"""Every bad input is answered before the work starts, in one clear line, and leaves nothing behind.

A table of cases for the command line (run in-process: `joyvasa.cli.main`) and one for the nodes. Each CLI case
checks: a non-zero exit, one `error:` message naming the file or option (and no traceback), no file left in
the output folder, and an output file that existed before untouched. Cases that need models run on stand-in
weights in the official layout; one case interrupts a real render with SIGTERM.
"""
from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from joyvasa.cli import main as cli_main
from joyvasa.weights import MOTION_CHECKPOINT, MOTION_TEMPLATE, motion_files, renderer_files
from tests.pack import PACK

REPO = Path(__file__).resolve().parents[1]
EXISTING = b"an earlier output that must survive"


def _wav(path: Path, seconds: float, rate: int = 16000, values: np.ndarray | None = None) -> Path:
    samples = values if values is not None else 0.2 * np.sin(np.arange(int(seconds * rate)) * 0.05)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(rate)
        f.writeframes((samples * 32767).astype(np.int16).tobytes())
    return path


def _float_wav_with_nan(path: Path, rate: int = 16000) -> Path:
    """A 32-bit float wav (format tag 3) with one NaN sample: what a damaged export looks like."""
    import struct

    samples = np.zeros(8000, dtype="<f4")
    samples[100] = np.nan
    data = samples.tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE" + b"fmt "
                     + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)
    return path


@pytest.fixture(scope="module")
def scene(kit, standin_weights, tmp_path_factory):
    """Stand-in weights (renderer, motion generator, stand-in face detector) and valid inputs."""
    from joyvasa.testing import onnx_standins

    tmp = tmp_path_factory.mktemp("bad_inputs")
    image_hw = (360, 400)
    face = onnx_standins.StandinFace(box=(140.0, 90.0, 260.0, 230.0))
    root = standin_weights([*renderer_files("human").values(), *motion_files()])
    onnx_standins.build_weights(root, [face], image_hw)
    image = tmp / "portrait.png"
    cv2.imwrite(str(image), cv2.cvtColor(onnx_standins.warm_image(image_hw, [face]), cv2.COLOR_RGB2BGR))
    return {"root": root, "image": image, "audio": _wav(tmp / "speech.wav", 0.05), "tmp": tmp}


def _weights_with(scene, tmp: Path, relpath: str, content: bytes | Path) -> Path:
    """A weights folder like the stand-in one (links) with one file replaced."""
    root = tmp / "weights"
    for path in scene["root"].rglob("*"):
        if path.is_file():
            target = root / path.relative_to(scene["root"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    (root / relpath).unlink()
    if isinstance(content, Path):
        shutil.copyfile(content, root / relpath)
    else:
        (root / relpath).write_bytes(content)
    return root


# (case id, extra CLI arguments or a function of (scene, tmp) -> arguments, words the error must contain)
def _args(**changes):
    return lambda scene, tmp: changes


CLI_CASES = [
    ("image-missing", _args(image="nope.png"), ["image file not found", "nope.png"]),
    ("image-not-an-image", lambda s, t: {"image": _text(t / "notes.png")}, ["cannot read image", "notes.png"]),
    ("image-1x1", lambda s, t: {"image": _png(t / "dot.png", 1, 1)}, ["1x1", "at least"]),
    ("audio-missing", _args(audio="nope.wav"), ["audio file not found", "nope.wav"]),
    ("audio-nan", lambda s, t: {"audio": _float_wav_with_nan(t / "nan.wav")}, ["NaN", "nan.wav"]),
    ("audio-not-audio", lambda s, t: {"audio": _text(t / "notes.wav")}, ["notes.wav"]),
    ("out-suffix", _args(out="clip.avi"), ["must end in .mp4"]),
    ("out-is-a-folder", lambda s, t: {"out": _folder(t / "existing.mp4")}, ["is a folder"]),
    ("out-parent-is-a-file", lambda s, t: {"out": _text(t / "file") / "clip.mp4"}, ["is a file, not a folder"]),
    ("out-unwritable", _args(out="/sys/joyvasa_out.mp4"), ["not writable", "/sys"]),
    ("out-is-the-image", lambda s, t: {"image": _copy(s["image"], t / "portrait.mp4"), "out": t / "portrait.mp4"},
     ["also an input"]),
    ("batch-size-0", _args(batch_size=0), ["batch_size"]),
    ("cfg-nan", _args(cfg_scale="nan"), ["cfg_scale"]),
    ("cfg-inf", _args(cfg_scale="inf"), ["cfg_scale"]),
    ("cfg-huge", _args(cfg_scale="1e30"), ["cfg_scale"]),
    ("cfg-negative", _args(cfg_scale="-1"), ["cfg_scale"]),
    ("seed-too-large", _args(seed=str(2**64)), ["seed"]),
    ("seed-negative", _args(seed="-1"), ["seed"]),
    ("smoothing-2", _args(smoothing="2"), ["smoothing"]),
    ("face-index-negative", _args(face_index="-1"), ["face_index"]),
    ("box-zero", _args(crop="box", box=["10", "10", "10", "10"]), ["box", "empty or inverted"]),
    ("box-inverted", _args(crop="box", box=["200", "200", "100", "100"]), ["box", "empty or inverted"]),
    ("box-nan", _args(crop="box", box=["nan", "10", "100", "100"]), ["box x1"]),
    ("box-outside", _args(crop="box", box=["5000", "5000", "5100", "5100"]), ["outside the 400x360 image"]),
    ("box-missing", _args(crop="box"), ["needs a box"]),
    ("scale-nan", _args(scale="nan"), ["crop scale"]),
    ("scale-negative", _args(scale="-2"), ["crop scale"]),
    ("det-thresh-5", _args(det_thresh="5"), ["det_thresh"]),
    ("det-thresh-negative", _args(det_thresh="-0.1"), ["det_thresh"]),
    ("crf-99", _args(crf="99"), ["crf"]),
    ("device-cuda-absent", _args(device="cuda"), ["cuda", "auto or cpu"]),
    ("device-mps-absent", _args(device="mps"), ["mps", "auto or cpu"]),
    ("head-keys-bad", _args(head_keys="2.5x: yaw=1"), ["2.5x"]),
    ("gaze-amplitude-5", _args(gaze_amplitude="5"), ["gaze amplitude"]),
    ("blink-rate-negative", _args(blinks="add", blink_rate="-3"), ["blink rate"]),
    ("expression-image-missing", _args(expression_image="nope.png"), ["image file not found", "nope.png"]),
    ("expression-image-and-neutralize", _args(expression_image="nope.png", neutralize_expression=True),
     ["not both"]),
    ("fade-negative", _args(fade_in="-1"), ["fade"]),
    ("face-index-out-of-range", _args(face_index="3"), ["face_index 3 is out of range"]),
    ("weights-missing-no-download", lambda s, t: {"weights_dir": _folder(t / "empty"), "download": False},
     ["not found", "download"]),
    ("checkpoint-empty", lambda s, t: {"weights_dir": _weights_with(s, t, renderer_files()["warping_module"], b"")},
     ["warping_module.pth", "empty", "download it again"]),
    ("checkpoint-corrupt", lambda s, t: {"weights_dir": _weights_with(
        s, t, renderer_files()["spade_generator"], os.urandom(4096))}, ["spade_generator.pth", "download it again"]),
    ("checkpoint-truncated", lambda s, t: {"weights_dir": _weights_with(
        s, t, MOTION_CHECKPOINT, (s["root"] / MOTION_CHECKPOINT).read_bytes()[:100_000])},
     ["motion_generator_hubert_chinese.pt", "download it again"]),
    ("checkpoints-swapped", lambda s, t: {"weights_dir": _weights_with(
        s, t, renderer_files()["warping_module"], s["root"] / renderer_files()["spade_generator"])},
     ["warping_module.pth", "does not fit"]),
    ("motion-file-as-renderer", lambda s, t: {"weights_dir": _weights_with(
        s, t, renderer_files()["appearance_feature_extractor"], s["root"] / MOTION_CHECKPOINT)},
     ["appearance_feature_extractor.pth", "not the file expected here", "not swapped"]),
    ("onnx-corrupt", lambda s, t: {"weights_dir": _weights_with(
        s, t, "insightface/models/buffalo_l/det_10g.onnx", os.urandom(2048))}, ["det_10g.onnx", "download it again"]),
    ("template-is-a-checkpoint", lambda s, t: {"weights_dir": _weights_with(
        s, t, MOTION_TEMPLATE, s["root"] / renderer_files()["warping_module"])},
     ["motion_template.pkl", "PyTorch checkpoint", "not swapped"]),
]


def _text(path: Path) -> Path:
    path.write_text("not what was asked for")
    return path


def _png(path: Path, w: int, h: int) -> Path:
    cv2.imwrite(str(path), np.full((h, w, 3), 128, np.uint8))
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


def _cli_argv(scene, changes: dict) -> list[str]:
    args = {"image": scene["image"], "audio": scene["audio"], "weights_dir": scene["root"], "download": True}
    args.update(changes)
    argv = ["animate"]
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def _listing(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_bad_input_before_the_work(case, scene, tmp_path, monkeypatch, capsys):
    name, make, words = case
    monkeypatch.chdir(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    existing = out_dir / "clip.mp4"
    existing.write_bytes(EXISTING)
    changes = {"out": existing, **make(scene, tmp_path)}
    before = _listing(tmp_path)
    started = time.perf_counter()
    code = cli_main(_cli_argv(scene, changes))
    err = capsys.readouterr().err
    assert code != 0, f"{name}: exit code 0"
    assert "error:" in err and "Traceback" not in err, err
    message = err[err.index("error:"):]
    for word in words:
        assert word in message, f"{name}: {word!r} not in {message!r}"
    assert "\x1b[" not in message  # no raw terminal colour codes
    assert existing.read_bytes() == EXISTING
    after = _listing(tmp_path)
    assert after == before, f"{name}: files changed: {set(after) ^ set(before)}"
    assert time.perf_counter() - started < 60  # refused before any rendering (a frame takes seconds)


def test_cli_render_refuses_a_folder_and_its_input(scene, tmp_path, capsys):
    (tmp_path / "strip.png").mkdir()
    assert cli_main(["render", "--image", str(scene["image"]), "--out", str(tmp_path / "strip.png"),
                     "--weights-dir", str(scene["root"])]) != 0
    assert "is a folder" in capsys.readouterr().err
    image = _copy(scene["image"], tmp_path / "face.png")
    assert cli_main(["render", "--image", str(image), "--out", str(image), "--weights-dir", str(scene["root"])]) != 0
    assert "also an input" in capsys.readouterr().err
    assert image.read_bytes() == scene["image"].read_bytes()


@pytest.mark.slow
def test_sigterm_during_rendering_leaves_no_file(scene, tmp_path):
    """A render interrupted by SIGTERM (a batch scheduler's kill) removes its temporary file and keeps the old
    output."""
    out = tmp_path / "clip.mp4"
    out.write_bytes(EXISTING)
    audio = _wav(tmp_path / "long.wav", 3.0)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "JOYVASA_WEIGHTS_DIR": str(scene["root"])}
    process = subprocess.Popen([sys.executable, "-m", "joyvasa", "animate", "--image", str(scene["image"]),
                                "--audio", str(audio), "--out", str(out), "--batch-size", "1"],
                               cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # the temporary mp4 appears when rendering starts (after the motion)
    while time.monotonic() < deadline and process.poll() is None:
        if any(p.name.endswith(".partial.mp4") for p in tmp_path.iterdir()):
            break
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()[1]
    assert any(p.name.endswith(".partial.mp4") for p in tmp_path.iterdir()), "rendering never started"
    time.sleep(1.0)  # inside the rendering loop
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=120)[1]
    assert process.returncode == 130, rest
    assert "interrupted" in rest and "Traceback" not in rest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "long.wav"]
    assert out.read_bytes() == EXISTING


# ------------------------------------------------------------------------------------------------------ nodes

nodes = PACK.nodes
runtime = nodes.runtime


@pytest.fixture(scope="module")
def handles():
    from joyvasa.testing.tiny import tiny_generator, tiny_renderer

    return (runtime.ModelHandle(tiny_renderer(), torch.device("cpu"), species="human", dtype=torch.float32),
            runtime.ModelHandle(tiny_generator(), torch.device("cpu")))


def _image(h=64, w=64, batch=1):
    return torch.rand(batch, h, w, 3, generator=torch.Generator().manual_seed(0))


def _audio(seconds=0.2, batch=1, value=None):
    wave_ = 0.1 * torch.randn(batch, 1, int(seconds * 16000), generator=torch.Generator().manual_seed(0))
    if value is not None:
        wave_[..., 10] = value
    return {"waveform": wave_, "sample_rate": 16000}


PREPARE = dict(crop="none", scale=2.3, vx_ratio=0.0, vy_ratio=-0.125, face_index=0, max_dim=1280)
DRIVING = {k: v[1]["default"] for k, v in nodes.render.DRIVING_INPUTS.items()}


def _prepare(handles, image=None, **changes):
    return nodes.source.JoyVASAPrepareSource().prepare(handles[0], _image() if image is None else image,
                                                       **{**PREPARE, **changes})


def _sample(handles, **changes):
    (speech,) = nodes.motion.JoyVASAEncodeAudio().encode(handles[1], _audio())
    args = dict(cfg_scale=2.8, seed=0, smoothing=0.01, pe_mode="legacy", timing="original")
    return nodes.motion.JoyVASASampleMotion().sample(handles[1], speech, **{**args, **changes})


def _render_to_file(handles, **changes):
    (motion,) = _sample(handles)
    source, _ = _prepare(handles)
    args = dict(paste_back=True, batch_size=2, filename_prefix="JoyVASA", crf=18, **DRIVING)
    return nodes.render.JoyVASARenderToFile().render(handles[0], source, motion, **{**args, **changes})


NODE_CASES = [
    ("image-0x0", lambda h: _prepare(h, image=torch.zeros(1, 0, 0, 3)), "empty"),
    ("image-batch-of-3", lambda h: _prepare(h, image=_image(batch=3)), "holds 3 pictures"),
    ("image-tiny", lambda h: _prepare(h, image=_image(4, 4)), "at least"),
    ("box-zero", lambda h: _prepare(h, crop="box", box_x=10, box_y=10, box_width=0, box_height=0), "box"),
    ("box-outside", lambda h: _prepare(h, crop="box", box_x=900, box_y=900, box_width=50, box_height=50),
     "outside"),
    ("scale-nan", lambda h: _prepare(h, scale=math.nan), "crop scale"),
    ("face-index-negative", lambda h: _prepare(h, face_index=-1), "face_index"),
    ("audio-batch-of-2", lambda h: nodes.motion.JoyVASAEncodeAudio().encode(h[1], _audio(batch=2)), "batch of 2"),
    ("audio-nan", lambda h: nodes.motion.JoyVASAEncodeAudio().encode(h[1], _audio(value=math.nan)), "NaN"),
    ("audio-empty", lambda h: nodes.motion.JoyVASAEncodeAudio().encode(h[1], _audio(seconds=0)), "empty"),
    ("cfg-nan", lambda h: _sample(h, cfg_scale=math.nan), "cfg_scale"),
    ("cfg-negative", lambda h: _sample(h, cfg_scale=-1.0), "cfg_scale"),
    ("seed-2^64", lambda h: _sample(h, seed=2**64), "seed"),
    ("pe-mode", lambda h: _sample(h, pe_mode="learned"), "pe_mode"),
    ("batch-size-0", lambda h: _render_to_file(h, batch_size=0), "batch_size"),
    ("prefix-empty", lambda h: _render_to_file(h, filename_prefix=""), "filename_prefix"),
    ("prefix-dot", lambda h: _render_to_file(h, filename_prefix="."), "filename_prefix"),
    ("prefix-up-and-back", lambda h: _render_to_file(h, filename_prefix="video/.."), "filename_prefix"),
    ("prefix-escape", lambda h: _render_to_file(h, filename_prefix="../escape"), "filename_prefix"),
    ("crf-99", lambda h: _render_to_file(h, crf=99), "crf"),
    ("device-cuda-absent", lambda h: nodes.loaders.JoyVASALoadMotionGenerator().load("cuda", download=False),
     "cuda"),
    ("det-thresh-5", lambda h: nodes.loaders.JoyVASALoadFaceDetector().load("insightface (human)", 5.0, "cpu",
                                                                           download=False), "det_thresh"),
]


@pytest.mark.parametrize("case", NODE_CASES, ids=[c[0] for c in NODE_CASES])
def test_node_refuses_bad_input(case, handles, tmp_path, monkeypatch):
    name, call, words = case
    root = tmp_path / "comfy"
    (root / "output").mkdir(parents=True)
    monkeypatch.chdir(root)  # outside ComfyUI the output folder is ./output
    with pytest.raises(ValueError, match=words):
        call(handles)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["comfy", "output"], name


@pytest.mark.parametrize("prefix", ["", ".", "video/..", "../escape", "/tmp/abs"])
def test_render_to_file_validates_the_prefix_before_the_run(prefix, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = nodes.render.JoyVASARenderToFile.VALIDATE_INPUTS(filename_prefix=prefix)
    assert isinstance(message, str) and "filename_prefix" in message
    assert nodes.render.JoyVASARenderToFile.VALIDATE_INPUTS(filename_prefix="video/JoyVASA") is True
