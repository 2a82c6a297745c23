"""Motion files: exact `.safetensors` round trips, LivePortrait `.pkl` templates (import refuses code), strict
errors for damaged files, and the Save Motion / Load Motion nodes feeding Render."""
from __future__ import annotations

import os
import pathlib
import pickle
import shutil
from importlib import import_module

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from joyvasa.direct.motion_file import (
    FORMAT,
    MotionFileError,
    angles_from_rotation,
    export_template,
    import_template,
    load_motion,
    read_motion_file,
    save_motion,
    template_dict,
)
from joyvasa.motion.decode import MotionSequence, decode_motion, normalize_motion
from joyvasa.testing.tiny import tiny_renderer, tiny_template
from tests.pack import PACK

FIELDS = ("raw", "exp", "scale", "t", "pitch", "yaw", "roll", "R")


def _motion(frames: int = 12, seed: int = 0, smoothing: float | None = 0.2) -> MotionSequence:
    raw = torch.randn(frames, 70, generator=torch.Generator().manual_seed(seed)) * 0.3 + 0.5
    return decode_motion(raw, tiny_template(), smoothing)


def _assert_same(a: MotionSequence, b: MotionSequence, fields=FIELDS) -> None:
    for name in fields:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), name


# ------------------------------------------------------------------------------------------- safetensors

def test_save_load_round_trip_is_exact(tmp_path):
    motion = _motion()
    path = save_motion(tmp_path / "sub" / "talk.safetensors", motion, fps=25.0,
                       metadata={"source": "speech.wav", "seed": 7, "cfg_scale": 2.8, "note": "take 2"})
    loaded, info = load_motion(path)
    _assert_same(motion, loaded)
    assert info["format"] == FORMAT and info["format_version"] == "1" and info["fps"] == 25.0
    assert info["frames"] == 12 and info["source"] == "speech.wav" and info["seed"] == "7"
    assert info["cfg_scale"] == "2.8" and info["note"] == "take 2"
    assert info["joyvasa_version"] == PACK.joyvasa.__version__ and info["torch_version"] == torch.__version__
    assert [p.name for p in path.parent.iterdir()] == ["talk.safetensors"]  # no temporary file left


def test_motion_without_raw_round_trips(tmp_path):
    motion = MotionSequence(None, *(getattr(_motion(5), name) for name in FIELDS[1:]))
    loaded, info = load_motion(save_motion(tmp_path / "m.safetensors", motion, fps=30))
    assert loaded.raw is None and info["fps"] == 30.0 and info["seed"] == "" and len(loaded) == 5
    _assert_same(motion, loaded, FIELDS[1:])
    assert loaded.to("cpu").raw is None


def test_save_refuses_bad_input_before_writing(tmp_path):
    motion = _motion(4)
    with pytest.raises(ValueError, match="reserved"):
        save_motion(tmp_path / "a.safetensors", motion, metadata={"fps": "60"})
    with pytest.raises(ValueError, match=r"\.safetensors"):
        save_motion(tmp_path / "a.pt", motion)
    with pytest.raises(ValueError, match="positive"):
        save_motion(tmp_path / "a.safetensors", motion, fps=0)
    bad = MotionSequence(motion.raw, motion.exp[:, :20], *(getattr(motion, n) for n in FIELDS[2:]))
    with pytest.raises(ValueError, match=r"exp has shape \(4, 20, 3\)"):
        save_motion(tmp_path / "a.safetensors", bad)
    nan = MotionSequence(motion.raw, motion.exp, motion.scale * float("nan"), *(getattr(motion, n) for n in FIELDS[3:]))
    with pytest.raises(ValueError, match="NaN"):
        save_motion(tmp_path / "a.safetensors", nan)
    assert not any(tmp_path.iterdir())


def _tensors(motion):
    return {name: getattr(motion, name).contiguous() for name in FIELDS}


def _meta(frames=12, **kw):
    return {"format": FORMAT, "format_version": "1", "fps": "25.0", "frames": str(frames), **kw}


@pytest.mark.parametrize("change, message", [
    (lambda t, m: (t, {**m, "format": "other"}), "not a JoyVASA motion file"),
    (lambda t, m: (t, {**m, "format_version": "9"}), "version '9'"),
    (lambda t, m: ({k: v for k, v in t.items() if k != "R"}, m), "lacks the tensor 'R'"),
    (lambda t, m: ({**t, "extra": torch.zeros(12, 1)}, m), r"unknown tensors \['extra'\]"),
    (lambda t, m: ({**t, "exp": t["exp"][:, :20].contiguous()}, m), r"exp has shape \(12, 20, 3\)"),
    (lambda t, m: ({**t, "yaw": t["yaw"][:11].contiguous()}, m), "yaw has 11 frames"),
    (lambda t, m: ({**t, "t": t["t"].double()}, m), "t is torch.float64"),
    (lambda t, m: (t, {**m, "frames": "13"}), "metadata says '13' frames"),
    (lambda t, m: (t, {**m, "fps": "fast"}), "fps='fast'"),
    (lambda t, m: ({**t, "roll": t["roll"] * float("inf")}, m), "roll holds NaN or infinite"),
])
def test_wrong_layout_is_refused_clearly(tmp_path, change, message):
    tensors, meta = change(_tensors(_motion()), _meta())
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(MotionFileError, match=message) as err:
        load_motion(path)
    assert str(path) in str(err.value)


def test_truncated_and_corrupt_files_are_refused(tmp_path):
    good = save_motion(tmp_path / "good.safetensors", _motion())
    data = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MotionFileError, match=r"cannot read .*cut\.safetensors.*truncated or damaged"):
        load_motion(cut)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(300))
    with pytest.raises(MotionFileError, match="cannot read"):
        load_motion(junk)
    with pytest.raises(MotionFileError, match="not found"):
        load_motion(tmp_path / "missing.safetensors")
    with pytest.raises(MotionFileError, match=r"\.safetensors .* or \.pkl"):
        read_motion_file(tmp_path / "motion.npz")


# ---------------------------------------------------------------------------------------- .pkl templates

def test_template_export_import_round_trip(tmp_path):
    motion = _motion(smoothing=None)
    path = export_template(tmp_path / "talk.pkl", motion, fps=25)
    data = pickle.loads(path.read_bytes())  # a plain LivePortrait template (our own file: safe to unpickle here)
    assert data["n_frames"] == 12 and data["output_fps"] == 25 and isinstance(data["output_fps"], int)
    assert data["c_eyes_lst"] == [] and data["c_lip_lst"] == []
    first = data["motion"][0]
    assert {k: v.shape for k, v in first.items()} == {"scale": (1, 1), "R": (1, 3, 3), "exp": (1, 21, 3),
                                                      "t": (1, 3), "pitch": (1, 1), "yaw": (1, 1), "roll": (1, 1)}
    assert all(v.dtype == np.float32 for v in first.values())

    loaded, info = import_template(path)
    assert loaded.raw is None and info["fps"] == 25.0 and info["frames"] == 12
    assert info["kp"] is None and info["x_s"] is None and info["c_eyes"] is None and info["c_lip"] is None
    _assert_same(motion, loaded, FIELDS[1:])
    with_template, _ = read_motion_file(path, template=tiny_template())
    torch.testing.assert_close(with_template.raw, normalize_motion(motion, tiny_template()))
    torch.testing.assert_close(with_template.raw, motion.raw, atol=1e-5, rtol=1e-5)  # unsmoothed: the sampled values


def test_template_with_keypoints_and_ratios(tmp_path):
    motion = _motion(6)
    kp, x_s = torch.randn(21, 3), torch.randn(6, 21, 3)
    eyes, lip = torch.rand(6, 2), torch.rand(6, 1)
    path = export_template(tmp_path / "m.pkl", motion, fps=12.5, kp=kp, x_s=x_s, c_eyes=eyes, c_lip=lip)
    data = pickle.loads(path.read_bytes())
    assert data["output_fps"] == 12.5 and data["motion"][3]["kp"].shape == (1, 21, 3)
    assert data["c_eyes_lst"][2].shape == (1, 2) and data["c_lip_lst"][2].shape == (1, 1)
    _, info = import_template(path)
    assert torch.equal(info["kp"], kp.expand(6, 21, 3)) and torch.equal(info["x_s"], x_s)
    assert torch.equal(info["c_eyes"], eyes) and torch.equal(info["c_lip"], lip)
    with pytest.raises(ValueError, match="x_s must have shape"):
        template_dict(motion, x_s=torch.zeros(5, 21, 3))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_liveportrait_template_without_angles(tmp_path, protocol):
    """LivePortrait's own templates: R_d / c_d_* spellings (older files), no pitch/yaw/roll (recovered from R),
    NumPy scalars; any pickle protocol NumPy writes."""
    motion = _motion(5)
    data = template_dict(motion)
    for item in data["motion"]:
        item["R_d"] = item.pop("R")
        for key in ("pitch", "yaw", "roll"):
            del item[key]
    lp = {"n_frames": np.int64(5), "output_fps": np.float32(25.0), "motion": data["motion"],
          "c_d_eyes_lst": [np.full((1, 2), 0.3, np.float32)] * 5, "c_d_lip_lst": [np.zeros((1, 1), np.float32)] * 5}
    path = tmp_path / "driving.pkl"
    path.write_bytes(pickle.dumps(lp, protocol=protocol))
    loaded, info = import_template(path)
    assert torch.equal(loaded.R, motion.R) and torch.equal(loaded.exp, motion.exp)
    for name in ("pitch", "yaw", "roll"):
        torch.testing.assert_close(getattr(loaded, name), getattr(motion, name), atol=1e-4, rtol=0)
    assert info["c_eyes"].shape == (5, 2) and info["c_lip"].shape == (5, 1)


def test_template_with_scalar_angles_and_array_ratios(tmp_path):
    """Converters differ in details: bare NumPy scalars for the angles, one array of all frames for the ratios."""
    motion = _motion(3)
    data = template_dict(motion)
    for i, item in enumerate(data["motion"]):
        item["yaw"] = np.float32(motion.yaw[i, 0])
    data["c_eyes_lst"] = np.full((3, 1, 2), 0.25, np.float32)
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(data))
    loaded, info = import_template(path)
    assert torch.equal(loaded.yaw, motion.yaw) and torch.equal(info["c_eyes"], torch.full((3, 2), 0.25))


def test_angles_from_rotation_inverts_rotation_matrix():
    from joyvasa.renderer.keypoints import rotation_matrix

    angles = (torch.rand(50, 3) - 0.5) * torch.tensor([120.0, 160.0, 120.0])
    pitch, yaw, roll = angles[:, :1], angles[:, 1:2], angles[:, 2:]
    got = angles_from_rotation(rotation_matrix(pitch, yaw, roll))
    for a, b in zip(got, (pitch, yaw, roll)):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=0)


class _Payload:
    """Unpickling this would call os.system and create the marker file."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_template_with_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "executed"
    data = template_dict(_motion(3))
    data["motion"][1]["hook"] = _Payload(marker)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(MotionFileError, match=r"Refused to load .*import (posix|nt)\.system.*nothing in it was run"):
        import_template(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"motion": [], "loader": np.load}))  # a NumPy function is no array either
    with pytest.raises(MotionFileError, match=r"numpy.*load.*nothing in it was run"):
        import_template(path)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["motion"][2].update(exp=np.zeros((1, 20, 3), np.float32)), r"motion\[2\]\['exp'\] has shape"),
    (lambda d: d["motion"][1].pop("t"), r"motion\[1\] lacks \['t'\]"),
    (lambda d: d.update(n_frames=9), "n_frames=9 but the motion list has 4"),
    (lambda d: d.update(output_fps=-1), "output_fps=-1"),
    (lambda d: d["motion"][3].pop("yaw"), "'yaw' is in some frames"),
    (lambda d: d.update(c_lip_lst=[np.zeros((1, 1), np.float32)]), "c_lip_lst has 1 entries"),
    (lambda d: d["motion"][0].update(scale=np.array([["a"]], dtype=object)), r"motion\[0\]\['scale'\] is ndarray"),
    (lambda d: d.update(motion="frames"), "not a motion template"),
])
def test_wrong_template_is_refused_clearly(tmp_path, change, message):
    data = template_dict(_motion(4))
    change(data)
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(MotionFileError, match=message):
        import_template(path)


def test_truncated_template_is_refused(tmp_path):
    data = pickle.dumps(template_dict(_motion(4)))
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[:-40])
    with pytest.raises(MotionFileError, match=r"cannot read .*cut\.pkl.*not a complete pickle"):
        import_template(path)
    torch.save({"x": torch.zeros(1)}, tmp_path / "ckpt.pkl")
    with pytest.raises(MotionFileError, match="zip archive"):
        import_template(tmp_path / "ckpt.pkl")


# ------------------------------------------------------------------------------------------------- nodes

nodes = PACK.nodes
motion_files = import_module(f"{nodes.__name__}.motion_files")  # as nodes/__init__.py imports it


@pytest.fixture(scope="module")
def renderer():
    return nodes.runtime.ModelHandle(tiny_renderer(), torch.device("cpu"), species="human", dtype=torch.float32)


def _clip(frames: int = 6):
    motion = PACK.joyvasa.motion.decode.decode_motion(_motion(frames).raw, tiny_template(), 0.2)
    wave = torch.rand(1, 16000) - 0.5
    return nodes.types.MotionClip(motion, wave, 16000, 0.08, info={"seed": 3, "source": "speech.wav"})


def _source(renderer):
    image = torch.rand(1, 96, 80, 3, generator=torch.Generator().manual_seed(0))
    source, _ = nodes.source.JoyVASAPrepareSource().prepare(renderer, image, "none", 2.3, 0.0, -0.125, 0, 1280)
    return source


def test_save_and_load_nodes_render_silently(renderer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside ComfyUI: ./output and ./input
    save, load = motion_files.JoyVASASaveMotion(), motion_files.JoyVASALoadMotion
    clip = _clip()
    (first,) = save.save(clip, "motion/talk", "safetensors", note="hello")
    (second,) = save.save(clip, "motion/talk", "pkl")
    assert pathlib.Path(first) == tmp_path / "output" / "motion" / "talk_00001_.safetensors"
    assert pathlib.Path(second).name == "talk_00001_.pkl"  # numbered per extension
    assert "inside the output folder" in save.VALIDATE_INPUTS("../escape")
    assert save.VALIDATE_INPUTS("motion/talk") is True
    with pytest.raises(ValueError, match="format must be one of"):
        save.save(clip, "motion/talk", "npz")

    assert load.INPUT_TYPES()["required"]["motion_file"][0] == []
    assert "not in the input folder" in load.VALIDATE_INPUTS("talk_00001_.safetensors")
    (tmp_path / "input" / "moves").mkdir(parents=True)
    for name in (first, second):
        shutil.copy(name, tmp_path / "input" / "moves")
    (tmp_path / "input" / "photo.png").write_bytes(b"")
    listed = load.INPUT_TYPES()["required"]["motion_file"][0]
    assert listed == ["moves/talk_00001_.pkl", "moves/talk_00001_.safetensors"]
    assert load.VALIDATE_INPUTS(listed[0]) is True and load.VALIDATE_INPUTS(listed[1] + " [input]") is True
    assert "inside the input folder" in load.VALIDATE_INPUTS("../output/motion/talk_00001_.safetensors")
    before = load.IS_CHANGED(listed[0])
    os.utime(tmp_path / "input" / listed[0], ns=(1, 1))
    assert load.IS_CHANGED(listed[0]) != before

    for name in listed:
        motion, frames, fps = load().load(name)
        assert motion.waveform is None and frames == 6 and fps == 25.0 and len(motion) == 6
        for field in FIELDS[1:]:
            assert torch.equal(getattr(motion.motion, field), getattr(clip.motion, field)), field
    images, audio, out_fps = nodes.render.JoyVASARender().render(
        renderer, _source(renderer), motion, paste_back=False, batch_size=6,
        **{k: v[1]["default"] for k, v in nodes.render.DRIVING_INPUTS.items()})
    assert images.shape[0] == 6 and out_fps == 25.0
    assert audio["sample_rate"] == 16000 and audio["waveform"].shape == (1, 1, round(6 / 25 * 16000))
    assert audio["waveform"].abs().max() == 0
    safetensors_clip = load().load(listed[1])[0]
    assert safetensors_clip.info["seed"] == "3" and safetensors_clip.info["source"] == "speech.wav"
    assert safetensors_clip.info["note"] == "hello" and torch.equal(safetensors_clip.motion.raw, clip.motion.raw)


def test_loaded_motion_renders_to_a_silent_mp4(renderer, tmp_path, monkeypatch):
    import av

    monkeypatch.chdir(tmp_path)
    (path,) = motion_files.JoyVASASaveMotion().save(_clip(4), "talk", "safetensors")
    (tmp_path / "input").mkdir()
    shutil.copy(path, tmp_path / "input")
    motion = motion_files.JoyVASALoadMotion().load(pathlib.Path(path).name)[0]
    result = nodes.render.JoyVASARenderToFile().render(
        renderer, _source(renderer), motion, paste_back=False, batch_size=4, filename_prefix="video/silent", crf=23,
        **{k: v[1]["default"] for k, v in nodes.render.DRIVING_INPUTS.items()})
    with av.open(result["result"][0]) as container:
        assert next(s for s in container.streams if s.type == "video").frames == 4
        assert not any(s.type == "audio" for s in container.streams)
