"""Where model files are looked up, and what a missing file says."""
from __future__ import annotations

from pathlib import Path

import pytest

from joyvasa.weights import WeightsLocation, WeightsNotFoundError, hub_source, renderer_files

REL = "liveportrait/base_models/warping_module.pth"


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_search_order_explicit_then_host_then_pack(tmp_path):
    explicit, host, pack = tmp_path / "explicit", tmp_path / "models" / "liveportrait", tmp_path / "pack"
    location = WeightsLocation(explicit_dir=explicit, host_dirs={"liveportrait": (host,)}, pack_dir=pack)
    in_pack = _touch(pack / REL)
    assert location.find(REL) == in_pack
    in_host = _touch(host / "base_models" / "warping_module.pth")
    assert location.find(REL) == in_host
    in_explicit = _touch(explicit / REL)
    assert location.find(REL) == in_explicit


def test_host_folders_per_source(tmp_path):
    location = WeightsLocation(host_dirs={"insightface": (tmp_path / "insightface",),
                                          "joyvasa": (tmp_path / "joyvasa",)}, pack_dir=tmp_path / "pack")
    det = "insightface/models/buffalo_l/det_10g.onnx"
    assert location.candidates(det)[0] == tmp_path / "insightface" / "models" / "buffalo_l" / "det_10g.onnx"
    gen = "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt"
    assert location.candidates(gen)[0] == tmp_path / "joyvasa" / "motion_generator" / \
        "motion_generator_hubert_chinese.pt"


def test_missing_file_message(tmp_path):
    location = WeightsLocation(explicit_dir=tmp_path / "a", pack_dir=tmp_path / "b")
    with pytest.raises(WeightsNotFoundError) as err:
        location.find(REL)
    message = str(err.value)
    assert str(tmp_path / "a" / REL) in message and str(tmp_path / "b" / REL) in message
    assert "download KwaiVGI/LivePortrait liveportrait/base_models/warping_module.pth --local-dir" in message


def test_hub_sources():
    assert hub_source(REL) == ("KwaiVGI/LivePortrait", REL)
    assert hub_source("JoyVASA/motion_template/motion_template.pkl") == (
        "jdh-algo/JoyVASA", "motion_template/motion_template.pkl")
    with pytest.raises(ValueError, match="Unknown weights path"):
        hub_source("elsewhere/file.pth")


def test_renderer_files():
    human = renderer_files("human")
    assert human["warping_module"] == REL
    assert renderer_files("animal", "v1.1")["spade_generator"] == \
        "liveportrait_animals/base_models_v1.1/spade_generator.pth"
    # animals use the human stitching file, as the original does
    assert renderer_files("animal")["stitching_retargeting_module"] == human["stitching_retargeting_module"]
    with pytest.raises(ValueError, match="species"):
        renderer_files("robot")
    with pytest.raises(ValueError, match="animal_version"):
        renderer_files("animal", "v2")
