"""The one place that knows where model files live.

Files are named by their official path relative to a `pretrained_weights/` folder (the layout of the JoyVASA
README and of the Hugging Face repos), e.g. `liveportrait/base_models/warping_module.pth`. A file is looked up,
in order, in:

1. an explicit folder given by the caller (a CLI flag), else $JOYVASA_WEIGHTS_DIR if set;
2. model folders supplied by the host application (ComfyUI's `models/liveportrait`, `models/joyvasa`,
   `models/insightface`; the node adapter passes them in — this library never imports ComfyUI);
3. the pack's own `pretrained_weights/` folder.

A missing file raises `WeightsNotFoundError` naming every place looked at and how to get the file.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PACK_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "pretrained_weights"
WEIGHTS_DIR_ENV = "JOYVASA_WEIGHTS_DIR"  # an explicit folder for every entry point that is given none

# First path component of an official relative path -> (Hugging Face repo, path inside the repo, ComfyUI folder).
# ComfyUI folders hold the files below that component (models/liveportrait/base_models/...), except insightface,
# whose own convention keeps a `models/` level (models/insightface/models/buffalo_l/...).
SOURCES: Mapping[str, tuple[str, str, str]] = {
    "liveportrait": ("KwaiVGI/LivePortrait", "liveportrait", "liveportrait"),
    "liveportrait_animals": ("KwaiVGI/LivePortrait", "liveportrait_animals", "liveportrait_animals"),
    "insightface": ("KwaiVGI/LivePortrait", "insightface", "insightface"),
    "JoyVASA": ("jdh-algo/JoyVASA", "", "joyvasa"),
    # the original hard-codes this folder name ("chinese-hubert-base" on Windows, where ':' is not allowed)
    "TencentGameMate:chinese-hubert-base": ("TencentGameMate/chinese-hubert-base", "", "joyvasa/chinese-hubert-base"),
    "chinese-hubert-base": ("TencentGameMate/chinese-hubert-base", "", "joyvasa/chinese-hubert-base"),
}

ANIMAL_VERSIONS = {"v1.0": "base_models", "v1.1": "base_models_v1.1"}
RENDERER_NETWORKS = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator")
STITCHING = "liveportrait/retargeting_models/stitching_retargeting_module.pth"
MOTION_CHECKPOINT = "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt"
MOTION_TEMPLATE = "JoyVASA/motion_template/motion_template.pkl"


class WeightsNotFoundError(FileNotFoundError):
    """A model file is in none of the searched folders."""


@dataclass(frozen=True)
class WeightsLocation:
    """Search roots, most specific first. `host_dirs` maps a host folder name (e.g. 'liveportrait') to dirs."""

    explicit_dir: Path | None = None
    host_dirs: Mapping[str, tuple[Path, ...]] | None = None
    # read when a location is made, not when this module is imported, so a test can point it elsewhere
    pack_dir: Path = field(default_factory=lambda: PACK_WEIGHTS_DIR)

    def candidates(self, relpath: str) -> list[Path]:
        """Every path where `relpath` may live, in search order."""
        head = relpath.partition("/")[0]
        out: list[Path] = []
        if self.explicit_dir is not None:
            out.append(Path(self.explicit_dir) / relpath)
        if self.host_dirs and head in SOURCES:
            folder, below = host_subpath(relpath)
            for d in self.host_dirs.get(folder, ()):
                out.append(Path(d) / below)
        out.append(Path(self.pack_dir) / relpath)
        return out

    def find(self, relpath: str) -> Path:
        """Path of the first existing candidate, else a WeightsNotFoundError saying where to put it."""
        candidates = self.candidates(relpath)
        for path in candidates:
            if path.is_file():
                return path
        raise WeightsNotFoundError(missing_message(relpath, candidates))

    def find_all(self, relpaths: Iterable[str]) -> dict[str, Path]:
        """Like `find` for several files, reporting all missing ones at once."""
        found, missing = {}, []
        for relpath in relpaths:
            try:
                found[relpath] = self.find(relpath)
            except WeightsNotFoundError:
                missing.append(relpath)
        if missing:
            raise WeightsNotFoundError("\n\n".join(missing_message(r, self.candidates(r)) for r in missing))
        return found


def default_location(explicit_dir: str | Path | None = None,
                     host_dirs: Mapping[str, tuple[Path, ...]] | None = None) -> WeightsLocation:
    """The search order of every entry point: `explicit_dir`, else $JOYVASA_WEIGHTS_DIR, then host folders,
    then the pack's `pretrained_weights/`."""
    if explicit_dir is None and os.environ.get(WEIGHTS_DIR_ENV):
        explicit_dir = os.environ[WEIGHTS_DIR_ENV]
    return WeightsLocation(explicit_dir=Path(explicit_dir) if explicit_dir is not None else None, host_dirs=host_dirs)


def host_subpath(relpath: str) -> tuple[str, str]:
    """(host folder name, path below that folder) of an official relative path, e.g.
    `liveportrait/base_models/x.pth` -> ('liveportrait', 'base_models/x.pth')."""
    head, _, rest = relpath.partition("/")
    if head not in SOURCES:
        raise ValueError(f"Unknown weights path {relpath!r}: expected it to start with one of {sorted(SOURCES)}")
    folder, _, sub = SOURCES[head][2].partition("/")
    return folder, f"{sub}/{rest}" if sub else rest


def hub_source(relpath: str) -> tuple[str, str]:
    """(Hugging Face repo id, file path inside that repo) of an official relative path."""
    head, _, rest = relpath.partition("/")
    if head not in SOURCES:
        raise ValueError(f"Unknown weights path {relpath!r}: expected it to start with one of {sorted(SOURCES)}")
    repo, prefix, _ = SOURCES[head]
    return repo, f"{prefix}/{rest}" if prefix else rest


def missing_message(relpath: str, looked: list[Path]) -> str:
    from .download import manual_command  # download.py builds on this module

    repo, file_in_repo = hub_source(relpath)
    places = "\n".join(f"  - {p}" for p in looked)
    return (f"Model file {relpath!r} not found. Looked in:\n{places}\n"
            f"Get it from the Hugging Face repo {repo} (file {file_in_repo}):\n"
            f"  {manual_command(relpath, looked[-1])}\n"
            f"or put it at one of the paths above.")


def renderer_files(species: str = "human", animal_version: str = "v1.0") -> dict[str, str]:
    """Official relative paths of one renderer set, keyed by network. Animals use the human stitching file,
    as JoyVASA and LivePortrait do (the animal stitching MLPs were never trained)."""
    if species == "human":
        folder = "liveportrait/base_models"
    elif species == "animal":
        if animal_version not in ANIMAL_VERSIONS:
            raise ValueError(f"animal_version must be one of {sorted(ANIMAL_VERSIONS)}, got {animal_version!r}")
        folder = f"liveportrait_animals/{ANIMAL_VERSIONS[animal_version]}"
    else:
        raise ValueError(f"species must be 'human' or 'animal', got {species!r}")
    files = {name: f"{folder}/{name}.pth" for name in RENDERER_NETWORKS}
    files["stitching_retargeting_module"] = STITCHING
    return files


def motion_files() -> list[str]:
    """Official relative paths of the motion generator: its checkpoint and its motion template."""
    return [MOTION_CHECKPOINT, MOTION_TEMPLATE]
