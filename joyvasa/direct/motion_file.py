"""Motion files: a `MotionSequence` saved and loaded exactly, and LivePortrait/JoyVASA motion templates (`.pkl`).

`.safetensors` (the pack's own format; no pickle, nothing in it can run):
- tensors, float32, T = frames: `exp` (T, 21, 3), `scale` (T, 1), `t` (T, 3), `pitch`, `yaw`, `roll` (T, 1)
  in degrees, `R` (T, 3, 3) (the row-vector form LivePortrait uses), and `raw` (T, 70), the sampler's
  normalised output, when the motion has one; optionally `eye_ratio` (T, 2) and `lip_ratio` (T, 1), the eye and
  lip openness of each frame (motion read from a video), read back into info;
- metadata (strings): `format` = "joyvasa-motion", `format_version`, `fps`, `frames`, `source`, `seed`,
  `joyvasa_version`, `torch_version`, plus any caller fields.
Save -> load gives back every tensor bit for bit. Loading is strict: every tensor present, float32, of its
shape, the same number of frames everywhere (and in `frames`), finite; nothing unknown.

`.pkl` motion templates (LivePortrait `make_motion_template`, JoyVASA's `motion_extractor.py`; see
spec/liveportrait.md §2.8): a pickled dict `{"n_frames": int, "output_fps": number, "motion": [per frame
{"scale" (1, 1), "R" (1, 3, 3), "exp" (1, 21, 3), "t" (1, 3), optional "kp", "x_s" (1, 21, 3), "pitch",
"yaw", "roll" (1, 1)}], "c_eyes_lst": [(1, 2) per frame] or [], "c_lip_lst": [(1, 1) per frame] or []}`.
Older LivePortrait files say `R_d`, `c_d_eyes_lst`, `c_d_lip_lst`; both spellings are read.
- Import goes through `joyvasa.numpy_pickle` (NumPy arrays and builtin containers only): a pickle naming
  any other global is refused before anything in it runs. LivePortrait's own templates have no angles:
  they are recovered from R (R is kept as stored). A template has no normalised model output, so `raw` is
  None, or the template-normalised values when a `MotionTemplate` is given (`normalize_motion`).
- Export writes the same layout with pitch/yaw/roll (as JoyVASA's extractor does). `kp` (the source's
  canonical keypoints) and `x_s` (its transformed keypoints) belong to the image the motion was extracted
  from; a generated motion has none, so they are written only when given (LivePortrait reads neither from a
  driving template: it takes them from the source). `c_eyes_lst` / `c_lip_lst` are always written (LivePortrait
  reads the keys unconditionally) and empty unless eye/lip-open ratios are given; LivePortrait only indexes them
  with eye/lip retargeting on.
"""
from __future__ import annotations

import json
import math
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..files import AtomicFile
from ..motion.constants import MOTION_DIM, NUM_KP
from ..motion.decode import MotionSequence, MotionTemplate, normalize_motion
from ..numpy_pickle import RefusedGlobal, loads_numpy_only

FORMAT = "joyvasa-motion"
FORMAT_VERSION = 1
TEMPLATE_FORMAT = "liveportrait-template"
SUFFIXES = (".safetensors", ".pkl")

# per-frame shape of every tensor of a MotionSequence (raw is optional)
FIELD_SHAPES: Mapping[str, tuple[int, ...]] = {
    "exp": (NUM_KP, 3), "scale": (1,), "t": (3,), "pitch": (1,), "yaw": (1,), "roll": (1,), "R": (3, 3),
}
RAW_SHAPE = (MOTION_DIM,)
# optional per-frame eye / lip openness (motion read from a video); a file without them reads as before
RATIO_SHAPES: Mapping[str, tuple[int, ...]] = {"eye_ratio": (2,), "lip_ratio": (1,)}
RESERVED_METADATA = ("format", "format_version", "fps", "frames", "joyvasa_version", "torch_version")


class MotionFileError(ValueError):
    """A motion file is missing, unreadable, truncated, refused or not of the expected layout (names the file)."""


# ------------------------------------------------------------------------------------------- safetensors

def _metadata_value(key: str, value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    raise ValueError(f"metadata {key!r} must be a string or a number, got {type(value).__name__}")


def save_motion(path: str | Path, motion: MotionSequence, *, fps: float = 25.0,
                metadata: Mapping[str, object] | None = None, eye_ratio: Tensor | None = None,
                lip_ratio: Tensor | None = None) -> Path:
    """Write `motion` as a `.safetensors` motion file, complete or not at all. Returns the path.

    eye_ratio (T, 2) / lip_ratio (T, 1): optional eye and lip openness per frame, stored as tensors of those
    names (left out when None, so the file is then exactly what it was before they existed).

    metadata: caller fields (strings or numbers; None values are left out), e.g. source, seed, cfg_scale;
    `source` and `seed` are always present ("" when not given). The format, fps, frame count and versions are
    added and cannot be overridden."""
    from safetensors.torch import save_file

    from .. import __version__

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"a motion file must end in .safetensors, got {path}")
    fps = float(fps)
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    tensors = _checked_tensors({name: getattr(motion, name) for name in ("raw", *FIELD_SHAPES)}, f"motion for {path}",
                               error=ValueError)
    tensors.update(_checked_ratios({"eye_ratio": eye_ratio, "lip_ratio": lip_ratio}, len(motion),
                                   f"motion for {path}", ValueError))
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}
    meta = {"source": "", "seed": ""}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or key in RESERVED_METADATA:
            raise ValueError(f"metadata key {key!r} is reserved or not a string")
        if value is not None:
            meta[key] = _metadata_value(key, value)
    meta.update(format=FORMAT, format_version=str(FORMAT_VERSION), fps=repr(fps), frames=str(len(motion)),
                joyvasa_version=__version__, torch_version=torch.__version__)
    with AtomicFile(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def _checked_tensors(tensors: Mapping[str, Tensor | None], source: str, error=None) -> dict[str, Tensor]:
    """Shapes, frame counts, dtype and finiteness of the motion tensors; raw may be None (left out)."""
    error = error or MotionFileError
    out = {}
    frames = None
    for name in ("raw", *FIELD_SHAPES):
        value = tensors.get(name)
        if value is None:
            if name == "raw":
                continue
            raise error(f"{source} lacks the tensor {name!r}")
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise error(f"{source}: {name} must be a float tensor, got {getattr(value, 'dtype', type(value))}")
        shape = RAW_SHAPE if name == "raw" else FIELD_SHAPES[name]
        if value.ndim != 1 + len(shape) or tuple(value.shape[1:]) != shape:
            raise error(f"{source}: {name} has shape {tuple(value.shape)}, expected (frames, "
                        f"{', '.join(map(str, shape))})")
        if frames is None:
            frames = value.shape[0]
        elif value.shape[0] != frames:
            raise error(f"{source}: {name} has {value.shape[0]} frames, the other tensors {frames}")
        if not torch.isfinite(value).all():
            raise error(f"{source}: {name} holds NaN or infinite values")
        out[name] = value
    if not frames:
        raise error(f"{source} holds no frames")
    return out


def _checked_ratios(ratios: Mapping[str, Tensor | None], frames: int, source: str, error) -> dict[str, Tensor]:
    """The optional eye / lip ratio tensors that are given: (frames, 2) / (frames, 1), float, finite."""
    out = {}
    for name, shape in RATIO_SHAPES.items():
        value = ratios.get(name)
        if value is None:
            continue
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise error(f"{source}: {name} must be a float tensor, got {getattr(value, 'dtype', type(value))}")
        if tuple(value.shape) != (frames, *shape):
            raise error(f"{source}: {name} has shape {tuple(value.shape)}, expected ({frames}, "
                        f"{', '.join(map(str, shape))}) (one row per frame)")
        if not torch.isfinite(value).all():
            raise error(f"{source}: {name} holds NaN or infinite values")
        out[name] = value
    return out


def load_motion(path: str | Path) -> tuple[MotionSequence, dict]:
    """Read a `.safetensors` motion file (strictly) -> (MotionSequence on the CPU, info).

    info: every metadata string, with `fps` as a float and `frames` as an int; `eye_ratio` (T, 2) and
    `lip_ratio` (T, 1) tensors only when the file has them. Raises MotionFileError naming the file and what is
    wrong."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise MotionFileError(f"motion file not found: {path}")
    if path.suffix.lower() == ".pkl":
        raise MotionFileError(f"{path} is a motion template (.pkl); read it with import_template")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            names = set(f.keys())
            tensors = {k: f.get_tensor(k) for k in names}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise MotionFileError(f"cannot read {path}: {str(err).strip() or type(err).__name__}. It is not a complete "
                              "safetensors file (truncated or damaged?); save the motion again.") from None
    if meta.get("format") != FORMAT:
        raise MotionFileError(f"{path} is not a JoyVASA motion file (metadata format={meta.get('format')!r}, "
                              f"expected {FORMAT!r})")
    version = meta.get("format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise MotionFileError(f"{path} has motion-file format version {version!r}; this pack reads up to "
                              f"{FORMAT_VERSION}. Update the pack.")
    unknown = sorted(names - {"raw", *FIELD_SHAPES, *RATIO_SHAPES})
    if unknown:
        raise MotionFileError(f"{path} holds unknown tensors {unknown}")
    for name, value in tensors.items():
        if value.dtype != torch.float32:
            raise MotionFileError(f"{path}: {name} is {value.dtype}, expected torch.float32")
    checked = _checked_tensors(tensors, str(path))
    frames = len(checked["exp"])
    ratios = _checked_ratios(tensors, frames, str(path), MotionFileError)
    try:
        fps = float(meta.get("fps", ""))
    except ValueError:
        fps = float("nan")
    if not (math.isfinite(fps) and fps > 0):
        raise MotionFileError(f"{path}: metadata fps={meta.get('fps')!r} is not a positive number")
    if meta.get("frames") != str(frames):
        raise MotionFileError(f"{path}: metadata says {meta.get('frames')!r} frames, the tensors hold {frames}")
    motion = MotionSequence(checked.get("raw"), *(checked[name] for name in FIELD_SHAPES))
    info = {**meta, "fps": fps, "frames": frames, **ratios}
    return motion, info


# ------------------------------------------------------------------------------------------ conversions

def angles_from_rotation(R: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(T, 3, 3) rotations in the returned (transposed) form -> pitch, yaw, roll (T, 1) in degrees, the inverse of
    `rotation_matrix` for |yaw| < 90 degrees. R = (Rz Ry Rx)^T, so M = R^T has M[2,0] = -sin(yaw),
    M[2,1] / M[2,2] = tan(pitch), M[1,0] / M[0,0] = tan(roll)."""
    R = R.double()
    yaw = torch.asin((-R[:, 0, 2]).clamp(-1, 1))
    pitch = torch.atan2(R[:, 1, 2], R[:, 2, 2])
    roll = torch.atan2(R[:, 0, 1], R[:, 0, 0])
    return tuple(torch.rad2deg(a).float()[:, None] for a in (pitch, yaw, roll))


# ----------------------------------------------------------------------------------------- .pkl templates

def _per_frame(value, shape: tuple[int, ...], where: str, path: Path) -> np.ndarray:
    if isinstance(value, np.generic | int | float) and not isinstance(value, bool):
        value = np.asarray(value)  # a bare number (e.g. a NumPy scalar angle)
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
        raise MotionFileError(f"{path}: {where} is {type(value).__name__}"
                              f"{' of ' + str(value.dtype) if isinstance(value, np.ndarray) else ''}, expected a "
                              "numeric NumPy array")
    if value.size != math.prod(shape):
        raise MotionFileError(f"{path}: {where} has shape {value.shape}, expected (1, {', '.join(map(str, shape))})")
    return value.astype(np.float32, copy=False).reshape(shape)


def _ratio_list(data: dict, keys: tuple[str, str], frames: int, size: int, path: Path) -> Tensor | None:
    key = keys[0] if keys[0] in data else keys[1]
    values = data.get(key)
    if isinstance(values, np.ndarray) and values.ndim >= 1:
        values = list(values)  # one array of all frames instead of a list
    if values is None or (isinstance(values, list | tuple) and len(values) == 0):
        return None
    if not isinstance(values, list | tuple) or len(values) != frames:
        raise MotionFileError(f"{path}: {key} has {len(values) if isinstance(values, list | tuple) else 'no'} "
                              f"entries, expected one per frame ({frames})")
    return torch.from_numpy(np.stack([_per_frame(v, (size,), f"{key}[{i}]", path) for i, v in enumerate(values)]))


def import_template(path: str | Path, template: MotionTemplate | None = None) -> tuple[MotionSequence, dict]:
    """Read a LivePortrait/JoyVASA motion template `.pkl` (NumPy-only unpickler) -> (MotionSequence, info).

    `raw` is None unless `template` (JoyVASA's normalisation statistics) is given: then `normalize_motion`.
    info: format, fps (`output_fps`), frames, source, and kp / x_s (T, 21, 3), c_eyes (T, 2), c_lip (T, 1)
    as float32 tensors where the file has them (else None)."""
    path = Path(path)
    if not path.is_file():
        raise MotionFileError(f"motion template not found: {path}")
    if zipfile.is_zipfile(path):
        raise MotionFileError(f"{path} is a zip archive (a PyTorch checkpoint?), not a motion template pickle")
    try:
        data = loads_numpy_only(path.read_bytes())
    except RefusedGlobal as err:
        raise MotionFileError(f"Refused to load {path}: it asks to import {err}, but a motion template holds only "
                              "NumPy arrays, numbers and lists; nothing in it was run. Do not use this file.") from None
    except Exception as err:  # truncated, damaged or not a pickle
        raise MotionFileError(f"cannot read {path}: {str(err).strip() or type(err).__name__}. It is not a complete "
                              "pickle (truncated or damaged?).") from None
    if not isinstance(data, dict) or not isinstance(data.get("motion"), list | tuple):
        raise MotionFileError(f"{path} is not a motion template: expected a dict with a 'motion' list (LivePortrait's "
                              "n_frames / output_fps / motion layout)")
    frames_list = data["motion"]
    frames = len(frames_list)
    if frames == 0:
        raise MotionFileError(f"{path} holds no frames")
    n_frames = data.get("n_frames", frames)
    if isinstance(n_frames, np.ndarray | np.generic):
        n_frames = n_frames.item()
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames != frames:
        raise MotionFileError(f"{path}: n_frames={n_frames!r} but the motion list has {frames} frames")
    fps = data.get("output_fps", 25)
    if isinstance(fps, np.ndarray | np.generic):
        fps = fps.item()
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not (math.isfinite(fps) and fps > 0):
        raise MotionFileError(f"{path}: output_fps={fps!r} is not a positive number")

    fields: dict[str, list[np.ndarray]] = {k: [] for k in (*FIELD_SHAPES, "kp", "x_s")}
    for i, item in enumerate(frames_list):
        if not isinstance(item, dict):
            raise MotionFileError(f"{path}: motion[{i}] is {type(item).__name__}, expected a dict")
        if "R" not in item and "R_d" in item:
            item = {**item, "R": item["R_d"]}
        missing = [k for k in ("exp", "scale", "t", "R") if k not in item]
        if missing:
            raise MotionFileError(f"{path}: motion[{i}] lacks {missing}")
        for key in fields:
            if key in item:
                shape = FIELD_SHAPES.get(key, (NUM_KP, 3))
                fields[key].append(_per_frame(item[key], shape, f"motion[{i}][{key!r}]", path))
    for key in ("pitch", "yaw", "roll", "kp", "x_s"):
        if 0 < len(fields[key]) < frames:
            raise MotionFileError(f"{path}: {key!r} is in some frames of the motion list but not in all")
    stacked = {k: torch.from_numpy(np.stack(v)) for k, v in fields.items() if v}
    if "pitch" not in stacked or "yaw" not in stacked or "roll" not in stacked:
        stacked["pitch"], stacked["yaw"], stacked["roll"] = angles_from_rotation(stacked["R"])
    checked = _checked_tensors(stacked, str(path))
    motion = MotionSequence(None, *(checked[name] for name in FIELD_SHAPES))
    if template is not None:
        motion = MotionSequence(normalize_motion(motion, template), *(checked[name] for name in FIELD_SHAPES))
    info = {"format": TEMPLATE_FORMAT, "fps": float(fps), "frames": frames, "source": str(path),
            "kp": stacked.get("kp"), "x_s": stacked.get("x_s"),
            "c_eyes": _ratio_list(data, ("c_eyes_lst", "c_d_eyes_lst"), frames, 2, path),
            "c_lip": _ratio_list(data, ("c_lip_lst", "c_d_lip_lst"), frames, 1, path)}
    return motion, info


def _frames_array(value, name: str, frames: int, shape: tuple[int, ...]) -> np.ndarray | None:
    """An optional per-frame input: (T, *shape), or (*shape) / (1, *shape) repeated for every frame."""
    if value is None:
        return None
    array = np.asarray(value.detach().cpu() if isinstance(value, Tensor) else value, dtype=np.float32)
    if array.shape == shape or array.shape == (1, *shape):
        array = np.broadcast_to(array.reshape(shape), (frames, *shape))
    if array.shape != (frames, *shape):
        raise ValueError(f"{name} must have shape ({frames}, {', '.join(map(str, shape))}) or "
                         f"({', '.join(map(str, shape))}), got {array.shape}")
    return array


def template_dict(motion: MotionSequence, *, fps: float = 25.0, kp=None, x_s=None, c_eyes=None,
                  c_lip=None) -> dict:
    """The motion as a LivePortrait motion-template dict of float32 NumPy arrays (see the module docstring)."""
    fps = float(fps)
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    checked = _checked_tensors({name: getattr(motion, name) for name in FIELD_SHAPES}, "motion", error=ValueError)
    arrays = {k: v.detach().to("cpu", torch.float32).numpy() for k, v in checked.items()}
    frames = len(motion)
    extra = {"kp": _frames_array(kp, "kp", frames, (NUM_KP, 3)), "x_s": _frames_array(x_s, "x_s", frames, (NUM_KP, 3))}
    eyes, lip = _frames_array(c_eyes, "c_eyes", frames, (2,)), _frames_array(c_lip, "c_lip", frames, (1,))
    items = []
    for i in range(frames):
        item = {"scale": arrays["scale"][i].reshape(1, 1), "R": arrays["R"][i].reshape(1, 3, 3),
                "exp": arrays["exp"][i].reshape(1, NUM_KP, 3), "t": arrays["t"][i].reshape(1, 3)}
        item.update({k: v[i].reshape(1, NUM_KP, 3).copy() for k, v in extra.items() if v is not None})
        item.update({k: arrays[k][i].reshape(1, 1) for k in ("pitch", "yaw", "roll")})
        items.append({k: np.ascontiguousarray(v) for k, v in item.items()})
    return {"n_frames": frames, "output_fps": int(fps) if fps.is_integer() else fps, "motion": items,
            "c_eyes_lst": [] if eyes is None else [eyes[i].reshape(1, 2).copy() for i in range(frames)],
            "c_lip_lst": [] if lip is None else [lip[i].reshape(1, 1).copy() for i in range(frames)]}


def export_template(path: str | Path, motion: MotionSequence, *, fps: float = 25.0, kp=None, x_s=None, c_eyes=None,
                    c_lip=None) -> Path:
    """Write `motion` as a LivePortrait/JoyVASA motion template `.pkl` (pickle protocol 4, NumPy arrays only),
    complete or not at all. kp / x_s: the source's keypoints, (T, 21, 3) or one (21, 3) for every frame;
    c_eyes (T, 2) / c_lip (T, 1): eye/lip-open ratios. Each is written only when given."""
    path = Path(path)
    if path.suffix.lower() != ".pkl":
        raise ValueError(f"a motion template must end in .pkl, got {path}")
    data = template_dict(motion, fps=fps, kp=kp, x_s=x_s, c_eyes=c_eyes, c_lip=c_lip)
    with AtomicFile(path) as tmp:
        tmp.write_bytes(pickle.dumps(data, protocol=4))
    return path


# ---------------------------------------------------------------------------------------------- either

def read_motion_file(path: str | Path, template: MotionTemplate | None = None) -> tuple[MotionSequence, dict]:
    """`.safetensors` -> load_motion, `.pkl` -> import_template (others refused). info["fps"] is always there."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return load_motion(path)
    if suffix == ".pkl":
        return import_template(path, template)
    raise MotionFileError(f"{path}: a motion file ends in .safetensors (saved by this pack) or .pkl (a LivePortrait "
                          "motion template)")


def write_motion_file(path: str | Path, motion: MotionSequence, *, fps: float = 25.0,
                      metadata: Mapping[str, object] | None = None, eye_ratio: Tensor | None = None,
                      lip_ratio: Tensor | None = None) -> Path:
    """`.safetensors` -> save_motion (with metadata), `.pkl` -> export_template (metadata is not stored there;
    the eye / lip ratios become its c_eyes_lst / c_lip_lst)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return save_motion(path, motion, fps=fps, metadata=metadata, eye_ratio=eye_ratio, lip_ratio=lip_ratio)
    if suffix == ".pkl":
        return export_template(path, motion, fps=fps, c_eyes=eye_ratio, c_lip=lip_ratio)
    raise ValueError(f"{path}: a motion file must end in .safetensors or .pkl")


__all__ = ["FORMAT", "FORMAT_VERSION", "MotionFileError", "angles_from_rotation", "export_template",
           "import_template", "load_motion", "read_motion_file", "save_motion",
           "template_dict", "write_motion_file"]
