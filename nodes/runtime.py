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
    """'auto' = ComfyUI's compute device (or CUDA / MPS / CPU outside it); 'cpu', 'cuda', 'mps' as named."""
    if choice != "auto":
        if choice == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was chosen but no CUDA GPU is available; choose 'auto' or 'cpu'")
        if choice == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError("device 'mps' was chosen but Apple MPS is not available; choose 'auto' or 'cpu'")
        return torch.device(choice)
    mm = _comfy("comfy.model_management")
    if mm is not None:
        return mm.get_torch_device()
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def offload_device() -> torch.device:
    mm = _comfy("comfy.model_management")
    return mm.unet_offload_device() if mm is not None else torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where IMAGE / AUDIO outputs live (the CPU unless ComfyUI runs with --gpu-only)."""
    mm = _comfy("comfy.model_management")
    return mm.intermediate_device() if mm is not None else torch.device("cpu")


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """'fp32' / 'bf16' / 'fp16' as named; 'auto' = bf16 on a GPU that supports it, else fp32."""
    table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision in table:
        return table[precision]
    if precision != "auto":
        raise ValueError(f"precision must be one of auto, fp32, bf16, fp16; got {precision!r}")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def throw_if_interrupted() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel (no-op outside ComfyUI)."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


class Progress:
    """A per-item progress bar in the ComfyUI UI (updates are also interruption points); no-op outside."""

    def __init__(self, total: int):
        utils = _comfy("comfy.utils")
        self._bar = utils.ProgressBar(total) if utils is not None and total > 0 else None
        self.total = total

    def __call__(self, done: int, total: int | None = None) -> None:
        if self._bar is not None:
            self._bar.update_absolute(done, total or self.total)


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

    @contextlib.contextmanager
    def use(self):
        if self._patcher is not None:
            _comfy("comfy.model_management").load_models_gpu([self._patcher])
        yield self._model


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
    """A new numbered file `<prefix>_NNNNN_<suffix>` under the output folder (ComfyUI's naming rule)."""
    root = output_directory()
    target = (root / prefix).resolve()
    if root.resolve() not in (target, *target.parents):
        raise ValueError(f"filename_prefix {prefix!r} points outside the output folder {root}")
    target.parent.mkdir(parents=True, exist_ok=True)
    stem = target.name or "JoyVASA"
    taken = [p.name for p in target.parent.glob(f"{stem}_*_{suffix}")]
    counter = 1 + max((int(n[len(stem) + 1:].split("_")[0]) for n in taken
                       if n[len(stem) + 1:].split("_")[0].isdigit()), default=0)
    return target.parent / f"{stem}_{counter:05}_{suffix}"


def output_folder_and_name(path: Path) -> tuple[str, str]:
    """(subfolder relative to the output folder, file name), as ComfyUI's UI expects them."""
    relative = Path(path).resolve().relative_to(output_directory().resolve())
    return str(relative.parent) if str(relative.parent) != "." else "", relative.name
