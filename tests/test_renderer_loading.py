"""Loading the official renderer checkpoints: exact keys for every file, and clear errors for bad files."""
from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from joyvasa.checkpoint import CheckpointError
from joyvasa.renderer import load_network, load_renderer
from joyvasa.testing import standin
from joyvasa.weights import ANIMAL_VERSIONS, WeightsLocation, WeightsNotFoundError, renderer_files

SETS = [("human", "v1.0"), ("animal", "v1.0"), ("animal", "v1.1")]


@pytest.fixture(scope="module")
def renderer_root(kit, standin_weights):
    files = {rel for species, version in SETS for rel in renderer_files(species, version).values()}
    return standin_weights(sorted(files), seed=3)  # any seed: loading must not depend on values


@pytest.mark.parametrize("species,version", SETS)
def test_every_official_file_loads_strictly(kit, renderer_root, species, version):
    """Each file of the set loads with exactly its manifest keys (after the documented unwrapping)."""
    for name, relpath in renderer_files(species, version).items():
        module = load_network(name, renderer_root / relpath)
        manifest, _ = standin.manifest_for(kit, relpath)
        file_keys = {e["key"] for e in manifest["tensors"]}
        ours = set(module.state_dict())
        if name == "spade_generator":  # spectral-norm triples fold into one weight
            file_keys = {k.replace(".weight_orig", ".weight") for k in file_keys
                         if not k.endswith((".weight_u", ".weight_v"))}
        if name == "stitching_retargeting_module":
            rename = {"retarget_shoulder": "stitching", "retarget_mouth": "lip", "retarget_eye": "eye"}
            file_keys = {rename[k.split(".", 1)[0]] + "." + k.split(".", 1)[1].replace("module.", "")
                         for k in file_keys}
        assert ours == file_keys, f"{relpath}: key sets differ"


@pytest.mark.parametrize("species,version", SETS)
def test_load_renderer_set(renderer_root, species, version):
    renderer = load_renderer(species, version, location=WeightsLocation(explicit_dir=renderer_root),
                             dtype=torch.bfloat16)
    assert renderer.dtype == torch.bfloat16
    assert next(renderer.stitching.parameters()).dtype == torch.float32  # the MLPs stay float32
    assert not any(p.requires_grad for p in renderer.parameters())


def test_v1_1_is_a_different_weight_set(renderer_root):
    """v1.0 and v1.1 live in different folders and hold different values."""
    a = load_network("warping_module", renderer_root / renderer_files("animal", "v1.0")["warping_module"])
    b = load_network("warping_module", renderer_root / renderer_files("animal", "v1.1")["warping_module"])
    assert not torch.equal(a.fourth.weight, b.fourth.weight)
    assert set(ANIMAL_VERSIONS) == {"v1.0", "v1.1"}


def _copy_state(path: Path) -> OrderedDict:
    return torch.load(path, weights_only=True)


def test_truncated_file_names_the_file(renderer_root, tmp_path):
    src = renderer_root / renderer_files("human")["appearance_feature_extractor"]
    bad = tmp_path / "appearance_feature_extractor.pth"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"appearance_feature_extractor\.pth.*download it again"):
        load_network("appearance_feature_extractor", bad)


def test_corrupted_and_empty_files(tmp_path):
    garbage = tmp_path / "warping_module.pth"
    garbage.write_bytes(b"not a checkpoint at all" * 100)
    with pytest.raises(CheckpointError, match="warping_module.pth"):
        load_network("warping_module", garbage)
    empty = tmp_path / "spade_generator.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_network("spade_generator", empty)


def test_missing_and_unexpected_keys_are_listed(renderer_root, tmp_path):
    state = _copy_state(renderer_root / renderer_files("human")["motion_extractor"])
    del state["detector.fc_exp.bias"]
    state["detector.extra.weight"] = torch.zeros(1)
    path = tmp_path / "motion_extractor.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_network("motion_extractor", path)
    message = str(err.value)
    assert "motion_extractor.pth" in message
    assert "missing keys: detector.fc_exp.bias" in message
    assert "unexpected keys: detector.extra.weight" in message


def test_wrong_file_for_network(renderer_root):
    """The appearance extractor's file put where the warping module belongs fails with both names."""
    path = renderer_root / renderer_files("human")["appearance_feature_extractor"]
    with pytest.raises(CheckpointError, match=r"appearance_feature_extractor\.pth does not fit WarpingNetwork"):
        load_network("warping_module", path)


def test_incomplete_spectral_norm_is_reported(renderer_root, tmp_path):
    state = _copy_state(renderer_root / renderer_files("human")["spade_generator"])
    del state["up_1.conv_s.weight_u"]
    path = tmp_path / "spade_generator.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"missing keys: up_1\.conv_s\.weight_u"):
        load_network("spade_generator", path)


def test_stitching_file_without_subdicts(renderer_root, tmp_path):
    obj = torch.load(renderer_root / renderer_files("human")["stitching_retargeting_module"], weights_only=True)
    del obj["retarget_eye"]
    path = tmp_path / "stitching_retargeting_module.pth"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="retarget_eye"):
        load_network("stitching_retargeting_module", path)


def _mark(path: str) -> None:
    Path(path).write_text("pickled code ran")


class _Payload:
    """Unpickling this calls _mark: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (_mark, (str(self.marker),))


def test_pickled_code_is_refused(tmp_path):
    """A checkpoint carrying a callable is refused before anything runs."""
    marker = tmp_path / "marker"
    path = tmp_path / "warping_module.pth"
    torch.save({"payload": _Payload(marker)}, path)
    assert zipfile.is_zipfile(path)
    with pytest.raises(CheckpointError, match="Refused to load"):
        load_network("warping_module", path)
    assert not marker.exists()


def test_raw_pickle_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "spade_generator.pth"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError):
        load_network("spade_generator", path)
    assert not marker.exists()


def test_safetensors_resave_loads(renderer_root, tmp_path):
    from safetensors.torch import save_file

    relpath = renderer_files("human")["appearance_feature_extractor"]
    state = _copy_state(renderer_root / relpath)
    path = tmp_path / "appearance_feature_extractor.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    module = load_network("appearance_feature_extractor", path)
    assert torch.equal(module.second.weight, state["second.weight"])


def test_missing_weights_name_every_place(tmp_path):
    location = WeightsLocation(explicit_dir=tmp_path / "mine", host_dirs={"liveportrait": (tmp_path / "comfy",)},
                               pack_dir=tmp_path / "pack")
    with pytest.raises(WeightsNotFoundError) as err:
        load_renderer("human", location=location)
    message = str(err.value)
    for place in ("mine", "comfy", "pack"):
        assert str(tmp_path / place) in message
    assert "KwaiVGI/LivePortrait" in message and " download KwaiVGI/LivePortrait " in message
    assert message.count("not found") == 5  # all five files reported at once
