"""Stand-in checkpoints in the official file layout, built from the parity kit.

The official weights cannot be downloaded in CI, so every test or benchmark that loads a checkpoint first
writes one: same relative path under a weights root, same container (bare state dict, the stitching file's
three sub-dicts, the motion generator's {args, model, iter}, X-Pose's {'model': ...}, a pickled template),
same keys and shapes, with values from the kit's `fill.py` for any seed (kit README §2).

Works for any kit of the same layout: the kit folder comes from JOYVASA_REFERENCE_DIR.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import pickle
import zlib
from collections import OrderedDict
from functools import cache
from pathlib import Path

import numpy as np
import torch

from ..renderer.keypoints import rotation_matrix

REPO_ROOT = Path(__file__).resolve().parents[2]  # joyvasa/testing/standin.py -> the repository

LIVEPORTRAIT_NETWORKS = (
    "appearance_feature_extractor",
    "motion_extractor",
    "warping_module",
    "spade_generator",
)
STITCHING_FILE = "retargeting_models/stitching_retargeting_module.pth"


def kit_dir() -> Path:
    """The parity kit folder: $JOYVASA_REFERENCE_DIR, else ../shared/reference beside the repository."""
    env = os.environ.get("JOYVASA_REFERENCE_DIR")
    return Path(env).resolve() if env else (REPO_ROOT.parent / "shared" / "reference").resolve()


def kit_required() -> bool:
    """When the kit location is given explicitly (CI), a missing kit is a failure, not a skip."""
    return bool(os.environ.get("JOYVASA_REFERENCE_DIR"))


@cache
def _fill_module(kit: Path):
    spec = importlib.util.spec_from_file_location("joyvasa_kit_fill", kit / "fill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fill(kit: Path, key: str, shape, seed: int) -> np.ndarray:
    return _fill_module(kit).fill(key, tuple(shape), seed)


@cache
def manifest_index(kit: Path) -> dict[str, str]:
    return json.loads((kit / "manifest" / "index.json").read_text())


def manifest_for(kit: Path, relpath: str) -> tuple[dict, Path]:
    """Manifest of an official file. `base_models_v1.1` shares the layout of the v1.0 `base_models` file."""
    index = manifest_index(kit)
    name = index.get(relpath) or index.get(relpath.replace("/base_models_v1.1/", "/base_models/"))
    if name is None:
        # manifests not listed in index.json (X-Pose) follow the same naming rule
        name = relpath.replace("/", "__").rsplit(".", 1)[0] + ".json"
    path = kit / "manifest" / name
    return json.loads(path.read_text()), path


def _buffers(manifest_path: Path) -> dict[str, np.ndarray]:
    npz = manifest_path.with_name(manifest_path.name[: -len(".json")] + ".buffers.npz")
    if not npz.exists():
        return {}
    with np.load(npz) as z:
        return {k: z[k] for k in z.files}


def spectral_uv(weight_orig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """u, v of a trained spectral-normalised weight: 200 power iterations in float64 (kit README §2.1)."""
    w = weight_orig.astype(np.float64).reshape(weight_orig.shape[0], -1)
    u = np.ones(w.shape[0]) / np.sqrt(w.shape[0])
    for _ in range(200):
        v = w.T @ u
        v /= np.linalg.norm(v)
        u = w @ v
        u /= np.linalg.norm(u)
    return u.astype(np.float32), v.astype(np.float32)


def state_tensors(kit: Path, relpath: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Every tensor of one official file as numpy arrays, keyed by the manifest's flat key."""
    manifest, manifest_path = manifest_for(kit, relpath)
    same_file = manifest["file"] == relpath
    buffers = _buffers(manifest_path)
    values: dict[str, np.ndarray] = {}
    spectral: list[dict] = []
    for entry in manifest["tensors"]:
        key, kind = entry["key"], entry["kind"]
        if kind == "fill":
            fill_key = entry["fill_key"]
            if not same_file:  # same layout under another path (v1.1): the path is part of the fill key
                fill_key = relpath + "::" + fill_key.split("::", 1)[1]
            values[key] = fill(kit, fill_key, entry["shape"], seed)
        elif kind == "counter":
            values[key] = np.zeros((), dtype=np.int64)
        elif kind == "computed":
            values[key] = buffers[key]
        elif kind == "spectral":
            spectral.append(entry)
        else:
            raise ValueError(f"{manifest_path.name}: unknown tensor kind {kind!r} for {key}")
    for entry in spectral:
        key = entry["key"]
        if seed == 0 and same_file and key in buffers:
            values[key] = buffers[key]
            continue
        base = key.rsplit("_", 1)[0]  # '...conv_0.weight_u' -> '...conv_0.weight'
        u, v = spectral_uv(values[base + "_orig"])
        values[key] = u if key.endswith("_u") else v
    for entry in manifest["tensors"]:  # aliases of tied parameters carry the same values
        if entry.get("tied_to"):  # X-Pose lists tied_to for every key (None when not an alias)
            values[entry["key"]] = values[entry["tied_to"]]
    return {e["key"]: values[e["key"]] for e in manifest["tensors"]}


def _to_state_dict(arrays: dict[str, np.ndarray]) -> OrderedDict:
    return OrderedDict((k, torch.from_numpy(np.array(v, copy=True, order="C"))) for k, v in arrays.items())


def _split_subdicts(arrays: dict[str, np.ndarray], names) -> dict[str, OrderedDict]:
    out = {name: OrderedDict() for name in names}
    for key, value in arrays.items():
        name, inner = key.split(".", 1)
        out[name][inner] = torch.from_numpy(np.array(value, copy=True, order="C"))
    return out


def _namespace(args: dict) -> argparse.Namespace:
    ns = argparse.Namespace()
    for key, value in args.items():
        if key == "__type__":
            continue
        if isinstance(value, str) and value.startswith("PosixPath("):
            value = pathlib.PurePosixPath(value[len("PosixPath('") : -2])
            value = pathlib.PosixPath(value) if os.name != "nt" else value
        setattr(ns, key, value)
    return ns


def write_checkpoint(kit: Path, relpath: str, root: Path, seed: int = 0) -> Path:
    """Write one official file under `root` (the pretrained_weights folder) and return its path."""
    manifest, manifest_path = manifest_for(kit, relpath)
    target = root / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    container = manifest.get("container")
    if relpath.endswith("motion_template.pkl"):
        stats = _buffers(manifest_path) if seed == 0 else motion_template_stats(seed)
        with open(partial, "wb") as f:
            pickle.dump({k: np.asarray(v, dtype=np.float32) for k, v in stats.items()}, f, protocol=4)
        os.replace(partial, target)
        return target
    arrays = state_tensors(kit, relpath, seed)
    if isinstance(container, dict) and "args" in container:  # motion generator {args, model, iter}
        model = OrderedDict((k.split(".", 1)[1], torch.from_numpy(np.array(v, copy=True, order="C")))
                            for k, v in arrays.items())
        iteration = int(str(container.get("iter", "int: 0")).split(":")[-1])
        obj = {"args": _namespace(container["args"]), "model": model, "iter": iteration}
    elif isinstance(container, dict):  # stitching file: named sub-dicts
        names = [k for k in container if k != "__type__"]
        obj = OrderedDict(_split_subdicts(arrays, names))
    elif relpath.endswith("xpose.pth"):
        obj = {"model": _to_state_dict(arrays)}
    else:
        obj = _to_state_dict(arrays)
    torch.save(obj, partial)
    os.replace(partial, target)  # never leave a half-written file in a cache folder
    return target


def motion_template_stats(seed: int) -> dict[str, np.ndarray]:
    """The kit's stand-in rule for motion_template.pkl (README §2): 2000 synthetic frames, each of the nine
    series cast to float32 (R computed in float64, then cast), then NumPy's float32 reductions over frames.
    For seed 0 this reproduces the kit's stored values bit for bit (the writer still uses the stored ones)."""
    rng = np.random.Generator(np.random.PCG64([zlib.crc32(b"motion_template"), seed]))
    n = 2000
    c = 0.01 * rng.standard_normal(63)
    s = 0.002 + 0.02 * rng.random(63)
    exp = c + s * rng.standard_normal((n, 63))
    scale = 1.45 + 0.08 * rng.standard_normal((n, 1))
    t = np.array([0.02, 0.05, 0.0]) + np.array([0.03, 0.03, 0.01]) * rng.standard_normal((n, 3))
    angles = np.array([2.0, 0.0, 0.0]) + np.array([6.0, 10.0, 4.0]) * rng.standard_normal((n, 3))
    lip = 0.6 * rng.random((n, 1))
    eyes = 0.1 + 0.35 * rng.random((n, 2))
    a = torch.from_numpy(angles)
    R = rotation_matrix(a[:, 0:1], a[:, 1:2], a[:, 2:3]).reshape(n, 9).numpy()
    series = {"scale": scale, "R": R, "t": t, "exp": exp, "pitch": angles[:, :1], "yaw": angles[:, 1:2],
              "roll": angles[:, 2:], "lip": lip, "eyes": eyes}
    out = {}
    for name, x in series.items():
        x = x.astype(np.float32)  # statistics of the float32 series, not float64 statistics cast afterwards
        out[f"mean_{name}"] = x.mean(0)
        out[f"std_{name}"] = x.std(0)
        out[f"max_{name}"] = x.max(0)
        out[f"min_{name}"] = x.min(0)
        out[f"abs_max_{name}"] = np.abs(x).max(0)
    return out


def liveportrait_files(species: str, animal_version: str = "base_models") -> list[str]:
    """Relative paths of the files one renderer set needs (animals use the human stitching file)."""
    folder = "liveportrait" if species == "human" else "liveportrait_animals"
    sub = "base_models" if species == "human" else animal_version
    files = [f"{folder}/{sub}/{name}.pth" for name in LIVEPORTRAIT_NETWORKS]
    return files + [f"liveportrait/{STITCHING_FILE}"]


def write_liveportrait(kit: Path, root: Path, species: str, seed: int = 0,
                       animal_version: str = "base_models") -> Path:
    for relpath in liveportrait_files(species, animal_version):
        if not (root / relpath).exists():
            write_checkpoint(kit, relpath, root, seed)
    return root
