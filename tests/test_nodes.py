"""The ComfyUI nodes, called directly with real tensors and ComfyUI absent.

Logic runs on tiny models wrapped in the same handles the loaders return; one test runs the whole pack
through the nodes on full-size stand-in weights (loaders included) for a short clip.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from joyvasa.testing.tiny import tiny_generator, tiny_renderer
from tests.pack import PACK

# the nodes as ComfyUI imports them (the pack as a package; nodes reach joyvasa/ by relative imports)
nodes = PACK.nodes
runtime = nodes.runtime
JoyVASALoadRenderer, JoyVASALoadMotionGenerator, JoyVASALoadFaceDetector = (
    nodes.loaders.JoyVASALoadRenderer, nodes.loaders.JoyVASALoadMotionGenerator, nodes.loaders.JoyVASALoadFaceDetector)
JoyVASAEncodeAudio, JoyVASASampleMotion = nodes.motion.JoyVASAEncodeAudio, nodes.motion.JoyVASASampleMotion
JoyVASARender, JoyVASAAnimate, DRIVING_INPUTS = nodes.render.JoyVASARender, nodes.render.JoyVASAAnimate, \
    nodes.render.DRIVING_INPUTS
JoyVASAPrepareSource = nodes.source.JoyVASAPrepareSource

REPO = Path(__file__).resolve().parents[1]
DRIVING = {k: v[1]["default"] for k, v in DRIVING_INPUTS.items()}


def _audio(seconds: float, rate: int = 22050, channels: int = 2) -> dict:
    n = int(seconds * rate)
    t = torch.arange(n) / rate
    wave = 0.2 * torch.sin(2 * math.pi * 220 * t)[None].repeat(channels, 1)
    return {"waveform": wave[None], "sample_rate": rate}


def _image(h: int = 300, w: int = 260) -> torch.Tensor:
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------------- registration and schema

def test_pack_registers_like_comfyui_loads_it():
    """ComfyUI imports the pack's __init__.py from its path under a made-up name; relative imports only."""
    spec = importlib.util.spec_from_file_location("custom_nodes_joyvasa_test", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    assert module.NODE_CLASS_MAPPINGS.keys() == nodes.NODE_CLASS_MAPPINGS.keys()
    assert module.WEB_DIRECTORY == "./web"
    assert not any(m == "comfy" or m.startswith(("comfy.", "folder_paths")) for m in sys.modules)


@pytest.mark.parametrize("node_id", sorted(nodes.NODE_CLASS_MAPPINGS))
def test_every_input_and_output_is_documented(node_id):
    cls = nodes.NODE_CLASS_MAPPINGS[node_id]
    assert node_id.startswith("JoyVASA") and node_id in nodes.NODE_DISPLAY_NAME_MAPPINGS
    assert cls.CATEGORY == "JoyVASA" and cls.DESCRIPTION and callable(getattr(cls(), cls.FUNCTION))
    for section in ("required", "optional"):
        for name, spec in cls.INPUT_TYPES().get(section, {}).items():
            assert len(spec) == 2 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES)
    assert all(cls.OUTPUT_TOOLTIPS)
    assert (REPO / "web" / "docs" / f"{node_id}.md").is_file(), f"web/docs/{node_id}.md is missing"


def test_seed_has_control_after_generate():
    assert JoyVASASampleMotion.INPUT_TYPES()["required"]["seed"][1]["control_after_generate"] is True


# ------------------------------------------------------------------------------------ tiny models, node logic

@pytest.fixture(scope="module")
def renderer():
    return runtime.ModelHandle(tiny_renderer(), torch.device("cpu"), species="human", dtype=torch.float32)


@pytest.fixture(scope="module")
def motion_model():
    return runtime.ModelHandle(tiny_generator(), torch.device("cpu"))


def _prepare(renderer, crop="none", **kw):
    args = dict(scale=2.3, vx_ratio=0.0, vy_ratio=-0.125, face_index=0, max_dim=1280)
    args.update(kw)
    return JoyVASAPrepareSource().prepare(renderer, _image(), crop, **args)


def test_prepare_source_no_crop_and_box(renderer):
    source, preview = _prepare(renderer, "none")
    assert preview.shape == (1, 512, 512, 3) and preview.dtype == torch.float32
    assert source.image.shape == (300, 260, 3) and source.image.dtype == np.uint8
    assert source.keypoints.x_s.shape == (1, 21, 3) and not source.crop.cropped
    boxed, _ = _prepare(renderer, "box", box_x=50, box_y=60, box_width=100, box_height=120)
    assert boxed.crop.cropped and not torch.equal(boxed.keypoints.x_s, source.keypoints.x_s)


def test_prepare_source_trims_odd_sizes(renderer):
    source, _ = JoyVASAPrepareSource().prepare(renderer, _image(301, 259), "none", 2.3, 0.0, -0.125, 0, 1280)
    assert source.image.shape == (300, 258, 3)


def test_encode_sample_render(renderer, motion_model):
    (speech,) = JoyVASAEncodeAudio().encode(motion_model, _audio(0.5))
    (motion,) = JoyVASASampleMotion().sample(motion_model, speech, 2.8, 7, 0.01, "legacy", "original")
    source, _ = _prepare(renderer)
    frames, audio, fps = JoyVASARender().render(renderer, source, motion, paste_back=True, batch_size=3, **DRIVING)
    n = len(motion)
    assert n == (int(0.5 * 16000) + 1920) // 640  # the original's frame count: 2 lead + 1 tail frames of silence
    assert frames.shape == (n, 512, 512, 3) and frames.dtype == torch.float32  # no crop: no paste-back
    assert 0 <= frames.min() and frames.max() <= 1
    assert fps == 25.0
    assert audio["sample_rate"] == 22050 and audio["waveform"].shape == (1, 2, round(n / 25 * 22050))
    lead = round(0.08 * 22050)  # the speech is delayed by the 80 ms the frames lag
    assert audio["waveform"][0, :, :lead].abs().max() == 0
    torch.testing.assert_close(audio["waveform"][0, :, lead:lead + 100], _audio(0.5)["waveform"][0, :, :100])


def test_aligned_timing_has_no_lead(motion_model):
    (speech,) = JoyVASAEncodeAudio().encode(motion_model, _audio(0.5, rate=16000, channels=1))
    (original,) = JoyVASASampleMotion().sample(motion_model, speech, 2.8, 7, 0.01, "legacy", "original")
    (aligned,) = JoyVASASampleMotion().sample(motion_model, speech, 2.8, 7, 0.01, "legacy", "aligned")
    assert len(original) == len(aligned) + 2 and aligned.audio_delay == 0.0 and original.audio_delay == 0.08


def test_seed_reproducible(motion_model):
    (speech,) = JoyVASAEncodeAudio().encode(motion_model, _audio(0.3))
    sample = JoyVASASampleMotion().sample
    a, b, c = (sample(motion_model, speech, 2.0, s, 0.01, "main", "original")[0].motion.exp for s in (1, 1, 2))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_bad_audio_is_refused_clearly(motion_model):
    with pytest.raises(ValueError, match="AUDIO"):
        JoyVASAEncodeAudio().encode(motion_model, torch.zeros(10))
    with pytest.raises(ValueError, match="empty"):
        JoyVASAEncodeAudio().encode(motion_model, {"waveform": torch.zeros(1, 1, 0), "sample_rate": 16000})


def test_render_refuses_a_source_of_the_other_species(renderer, motion_model):
    (speech,) = JoyVASAEncodeAudio().encode(motion_model, _audio(0.2))
    (motion,) = JoyVASASampleMotion().sample(motion_model, speech, 2.8, 0, 0.01, "legacy", "original")
    animal = runtime.ModelHandle(renderer.model, torch.device("cpu"), species="animal", dtype=torch.float32)
    source, _ = _prepare(renderer)
    with pytest.raises(ValueError, match="same renderer"):
        JoyVASARender().render(animal, source, motion, paste_back=False, batch_size=2, **DRIVING)


def test_prepare_source_refuses_unknown_crop(renderer):
    with pytest.raises(ValueError, match="crop must be one of"):
        _prepare(renderer, "magic")


# ------------------------------------------------------------------------------ full size, through the loaders

@pytest.mark.slow
def test_whole_pack_through_the_nodes(kit, standin_weights, tmp_path, monkeypatch):
    """Loaders (stand-in official files), face detection, crop, speech, motion, render and paste-back."""
    from joyvasa.testing import onnx_standins

    renderer_files = PACK.joyvasa.weights.renderer_files

    image_hw = (360, 400)
    face = onnx_standins.StandinFace(box=(140.0, 90.0, 260.0, 230.0))
    root = standin_weights([*renderer_files("human").values(), "JoyVASA/motion_generator/"
                            "motion_generator_hubert_chinese.pt", "JoyVASA/motion_template/motion_template.pkl"])
    onnx_standins.build_weights(root, [face], image_hw)
    monkeypatch.setenv("JOYVASA_WEIGHTS_DIR", str(root))

    (renderer,) = JoyVASALoadRenderer().load("human", "v1.0", "fp32", "cpu", download=False)
    (motion_model,) = JoyVASALoadMotionGenerator().load("cpu", download=False)
    (detector,) = JoyVASALoadFaceDetector().load("insightface (human)", 0.15, "cpu", download=False)
    image = torch.from_numpy(onnx_standins.warm_image(image_hw, [face])).float()[None] / 255
    frames, audio, fps = JoyVASAAnimate().animate(renderer, motion_model, image, _audio(0.12), "auto", 2.8, 0, 1.0,
                                                  paste_back=True, batch_size=4, face_detector=detector)
    n = (int(0.12 * 16000) + 1920) // 640
    assert frames.shape == (n, *image_hw, 3) and fps == 25.0
    assert audio["waveform"].shape[-1] == round(n / 25 * 22050)
    # paste-back: far from the face the frames are the source image itself
    torch.testing.assert_close(frames[:, :20, :20], image[:, :20, :20].expand(n, -1, -1, -1), atol=1 / 255, rtol=0)
    assert not torch.allclose(frames[0, 150:170, 190:210], image[0, 150:170, 190:210], atol=0.05)


def test_loader_without_weights_names_the_download(tmp_path, monkeypatch):
    monkeypatch.setenv("JOYVASA_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setattr(PACK.joyvasa.weights, "PACK_WEIGHTS_DIR", tmp_path / "pack")  # not the user's weights
    with pytest.raises(PACK.joyvasa.weights.WeightsNotFoundError, match="download KwaiVGI/LivePortrait"):
        JoyVASALoadRenderer().load("human", "v1.0", "fp32", "cpu", download=False)


def test_render_to_file_streams_an_mp4(renderer, motion_model, tmp_path, monkeypatch):
    import av

    monkeypatch.chdir(tmp_path)  # outside ComfyUI the output folder is ./output
    (speech,) = JoyVASAEncodeAudio().encode(motion_model, _audio(0.3))
    (motion,) = JoyVASASampleMotion().sample(motion_model, speech, 2.8, 1, 0.01, "legacy", "original")
    source, _ = _prepare(renderer)
    node = nodes.NODE_CLASS_MAPPINGS["JoyVASARenderToFile"]()
    first = node.render(renderer, source, motion, paste_back=True, batch_size=4, filename_prefix="clips/talk",
                        crf=23, **DRIVING)
    second = node.render(renderer, source, motion, paste_back=True, batch_size=4, filename_prefix="clips/talk",
                         crf=23, **DRIVING)
    path = Path(first["result"][0])
    assert path.name == "talk_00001_.mp4" and Path(second["result"][0]).name == "talk_00002_.mp4"
    assert first["ui"]["images"][0] == {"filename": "talk_00001_.mp4", "subfolder": "clips", "type": "output"}
    with av.open(str(path)) as c:
        assert next(s for s in c.streams if s.type == "video").frames == len(motion)
        assert any(s.type == "audio" for s in c.streams)
    with pytest.raises(ValueError, match="inside the output folder"):
        node.render(renderer, source, motion, paste_back=True, batch_size=4, filename_prefix="../escape",
                    crf=23, **DRIVING)
    assert sorted(p.name for p in (tmp_path / "output" / "clips").iterdir()) == ["talk_00001_.mp4",
                                                                                 "talk_00002_.mp4"]


@pytest.mark.slow
def test_animal_found_automatically_and_pasted_back(kit, standin_weights, monkeypatch):
    """An uncropped animal picture: X-Pose finds the face (no box), the animal renderer animates it, pasted back."""
    import cv2

    renderer_files = PACK.joyvasa.weights.renderer_files
    root = standin_weights([*renderer_files("animal").values(), "liveportrait_animals/xpose.pth",
                            "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt",
                            "JoyVASA/motion_template/motion_template.pkl"])
    monkeypatch.setenv("JOYVASA_WEIGHTS_DIR", str(root))
    (renderer,) = JoyVASALoadRenderer().load("animal", "v1.0", "fp32", "cpu", download=False)
    (motion_model,) = JoyVASALoadMotionGenerator().load("cpu", download=False)
    (detector,) = JoyVASALoadFaceDetector().load("x-pose (animal)", 0.0, "cpu", download=False)
    cat = cv2.cvtColor(cv2.imread(str(REPO / "examples" / "cat.png")), cv2.COLOR_BGR2RGB)  # 451 x 300
    image = torch.from_numpy(cat).float()[None] / 255
    frames, audio, fps = JoyVASAAnimate().animate(renderer, motion_model, image, _audio(0.05), "auto", 2.8, 0, 1.0,
                                                  paste_back=True, batch_size=4, face_detector=detector)
    assert frames.shape == ((800 + 1920) // 640, 300, 450, 3)  # full picture, odd width trimmed to even
    with pytest.raises(ValueError, match="x-pose"):
        JoyVASAPrepareSource().prepare(renderer, image, "auto", 2.3, 0.0, -0.125, 0, 1280,
                                       face_detector=PACK.nodes.types.FaceDetectorHandle("insightface", None, 0.15))
    with pytest.raises(PACK.joyvasa.face.xpose.NoAnimalFoundError, match="min_score"):
        strict = PACK.nodes.types.FaceDetectorHandle("xpose", detector.detector, det_thresh=1.0)
        JoyVASAPrepareSource().prepare(renderer, image, "auto", 2.3, 0.0, -0.125, 0, 1280, face_detector=strict)
