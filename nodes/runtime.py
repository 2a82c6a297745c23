"""The one adapter between the nodes and ComfyUI's runtime services.

Inside ComfyUI it uses `comfy.model_management` (devices, memory management, interrupts), `comfy.utils`
(progress bars), `comfy.model_patcher` (model handles) and `folder_paths` (model folders). Outside ComfyUI
(unit tests, scripts) every function degrades to plain PyTorch: CPU unless asked otherwise, no-op progress,
no interrupts, the pack's own `pretrained_weights/`. ComfyUI is imported lazily, never at module load.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
from pathlib import Path

import torch

log = logging.getLogger("joyvasa.nodes")

# ComfyUI model folder names this pack uses (models/<name>), with the file extensions it lists there.
MODEL_FOLDERS = {
    "liveportrait": {".pth", ".safetensors", ".onnx"},
    "liveportrait_animals": {".pth", ".safetensors"},
    "joyvasa": {".pt", ".pth", ".pkl", ".safetensors", ".json", ".bin"},
    "insightface": {".onnx"},
}


def _comfy(name: str):
    """A ComfyUI module, or None outside ComfyUI."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def in_comfyui() -> bool:
    return _comfy("comfy.model_management") is not None


def compute_device(choice: str = "auto") -> torch.device:
    """'auto' = ComfyUI's compute device (outside it: CUDA, else MPS, else the CPU); 'cpu', 'cuda', 'mps' as
    named, refused when not available."""
    if choice == "auto":
        mm = _comfy("comfy.model_management")
        if mm is not None:
            return mm.get_torch_device()
    from ..joyvasa.devices import resolve_device

    return resolve_device(choice)


def offload_device() -> torch.device:
    mm = _comfy("comfy.model_management")
    return mm.unet_offload_device() if mm is not None else torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where IMAGE / AUDIO outputs live (the CPU unless ComfyUI runs with --gpu-only)."""
    mm = _comfy("comfy.model_management")
    return mm.intermediate_device() if mm is not None else torch.device("cpu")


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The library's precision rule ('auto' = bf16 on a CUDA GPU that supports it, else fp32)."""
    from ..joyvasa.devices import resolve_dtype as library_rule

    return library_rule(precision, device)


def throw_if_interrupted() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel (no-op outside ComfyUI)."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


class Progress:
    """A progress bar in the ComfyUI UI (updates are also interruption points); no-op outside ComfyUI.
    Call it with (done, total); a new total starts a new bar."""

    def __init__(self, total: int = 0):
        self.total = -1
        self._bar = None
        self._start(total)

    def _start(self, total: int) -> None:
        utils = _comfy("comfy.utils")
        self._bar = utils.ProgressBar(total) if utils is not None and total > 0 else None
        self.total = total

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None and total != self.total:
            self._start(total)
        if self._bar is not None:
            self._bar.update_absolute(done, self.total)

    def sampling_step(self, step: dict) -> None:
        """The motion sampler's callback: one bar over every window's denoising steps."""
        self(step["window"] * step["n_steps"] + step["i"] + 1, step["n_windows"] * step["n_steps"])


class _PatcherTarget(torch.nn.Module):
    """What ComfyUI's ModelPatcher manages: a plain holder of our model. The patcher sets bookkeeping
    attributes (`device`, `model_lowvram`, ...) on the module it is given; our models expose `device` as a
    read-only property, so they are not given to it directly."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.inner = model


class ModelHandle:
    """A model that ComfyUI's memory management may move: on the offload device while idle, on the compute
    device while `with handle.use() as model:` runs. Outside ComfyUI it simply lives on its device."""

    def __init__(self, model: torch.nn.Module, device: torch.device, **info):
        self.info = info  # what the loader was asked for (species, precision, ...)
        self._patcher = None
        mp = _comfy("comfy.model_patcher")
        if mp is not None:
            model = model.to(offload_device())
            self._patcher = mp.ModelPatcher(_PatcherTarget(model), load_device=device,
                                            offload_device=offload_device())
        else:
            model = model.to(device)
        self._model = model
        self.device = device

    @property
    def model(self) -> torch.nn.Module:
        return self._model

    def use(self):
        """`with handle.use() as model:` the model on its compute device while the block runs."""
        return using(self)


@contextlib.contextmanager
def using(*handles: ModelHandle):
    """`with using(a, b) as (model_a, model_b):` several models on their compute device at once (ComfyUI
    loads them together, so making room for one never offloads another in the middle of the work)."""
    patchers = [h._patcher for h in handles if h._patcher is not None]
    if patchers:
        _comfy("comfy.model_management").load_models_gpu(patchers)
    models = tuple(h.model for h in handles)
    yield models[0] if len(models) == 1 else models


def model_dirs() -> dict[str, tuple[Path, ...]]:
    """ComfyUI's folders for each of MODEL_FOLDERS (registered on first use); {} outside ComfyUI."""
    folder_paths = _comfy("folder_paths")
    if folder_paths is None:
        return {}
    out = {}
    for name, extensions in MODEL_FOLDERS.items():
        known = getattr(folder_paths, "folder_names_and_paths", {})
        if name in known:
            paths, exts = known[name]
            known[name] = (paths, set(exts) | extensions)  # keep user paths (extra_model_paths.yaml)
        else:
            folder_paths.add_model_folder_path(name, str(Path(folder_paths.models_dir) / name), is_default=True)
            known[name] = (known[name][0], extensions)
        out[name] = tuple(Path(p) for p in folder_paths.get_folder_paths(name))
    return out


def find_weights(relpaths, download: bool = True) -> dict[str, Path]:
    """Paths of official model files: ComfyUI's model folders, then the pack's `pretrained_weights/`.
    Missing files are downloaded (when `download` is on) to where the lookup searches first, with a
    progress bar per file."""
    from ..joyvasa.download import ensure_weights

    bar = Progress(100)

    def progress(_relpath: str, done: int, total: int) -> None:
        if total:
            bar(int(100 * done / total), 100)

    return ensure_weights(relpaths, weights_location(), download=download, progress=progress)


def weights_location():
    """$JOYVASA_WEIGHTS_DIR, then ComfyUI's model folders, then the pack's `pretrained_weights/`."""
    from ..joyvasa.weights import default_location

    return default_location(host_dirs=model_dirs())


def output_directory() -> Path:
    """ComfyUI's output folder, or ./output outside ComfyUI."""
    folder_paths = _comfy("folder_paths")
    return Path(folder_paths.get_output_directory()) if folder_paths is not None else Path("output").resolve()


def output_path(prefix: str, suffix: str) -> Path:
    """A new numbered file `<prefix>_NNNNN_<suffix>` inside the output folder (ComfyUI's naming rule); a prefix
    that leaves the folder or names no file (e.g. "", ".", "video/..") is refused."""
    check_filename_prefix(prefix)
    root = output_directory().resolve()
    target = (root / prefix).resolve()
    stem = target.name
    taken = [p.name for p in target.parent.glob(f"{stem}_*_{suffix}")] if target.parent.is_dir() else []
    counter = 1 + max((int(n[len(stem) + 1:].split("_")[0]) for n in taken
                       if n[len(stem) + 1:].split("_")[0].isdigit()), default=0)
    return target.parent / f"{stem}_{counter:05}_{suffix}"


def check_filename_prefix(prefix: str) -> None:
    """Raise ValueError unless `prefix` names a file inside the output folder (sub-folders allowed)."""
    root = output_directory().resolve()
    target = (root / str(prefix)).resolve()
    if not str(prefix).strip() or target == root or root not in target.parents:
        raise ValueError(f"filename_prefix {prefix!r} does not name a file inside the output folder {root}; use "
                         "a name such as 'JoyVASA' or 'video/JoyVASA'")


def validate_filename_prefix(prefix: str) -> bool | str:
    """A node's VALIDATE_INPUTS answer for its filename_prefix: True, or the reason (ComfyUI refuses the prompt)."""
    try:
        check_filename_prefix(prefix)
    except ValueError as err:
        return str(err)
    return True


def output_folder_and_name(path: Path) -> tuple[str, str]:
    """(subfolder relative to the output folder, file name), as ComfyUI's UI expects them."""
    relative = Path(path).resolve().relative_to(output_directory().resolve())
    return str(relative.parent) if str(relative.parent) != "." else "", relative.name


def input_directory() -> Path:
    """ComfyUI's input folder, or ./input outside ComfyUI."""
    folder_paths = _comfy("folder_paths")
    return Path(folder_paths.get_input_directory()) if folder_paths is not None else Path("input").resolve()


def input_files(suffixes) -> list[str]:
    """Files in the input folder (and its sub-folders) ending in one of `suffixes`, as sorted '/'-separated paths
    relative to it (hidden files and folders left out); [] when the folder does not exist."""
    root = input_directory()
    if not root.is_dir():
        return []
    wanted = tuple(s.lower() for s in suffixes)
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]  # not into hidden folders
        relative = Path(folder).relative_to(root)
        found += [(relative / f).as_posix() for f in files if f.lower().endswith(wanted) and not f.startswith(".")]
    return sorted(found)


def input_path(name: str) -> Path:
    """The file `name` (as listed by `input_files`; ComfyUI's ' [input]' annotation accepted) inside the input
    folder. ValueError for a name that leaves the folder, FileNotFoundError for a missing file."""
    name = str(name)
    if name.endswith(" [input]"):
        name = name[: -len(" [input]")]
    root = input_directory().resolve()
    path = (root / name).resolve()
    if not name.strip() or root not in path.parents:
        raise ValueError(f"{name!r} does not name a file inside the input folder {root}")
    if not path.is_file():
        raise FileNotFoundError(f"{name} is not in the input folder {root} (upload it, or press R to refresh the list)")
    return path
