"""The pack imported the way ComfyUI imports it: its root `__init__.py` as a package (here named
`joyvasa_pack`), so `nodes/` reaches the library through relative imports (`..joyvasa`), exactly as inside
ComfyUI. `load_pack()` imports it once and returns the same module afterwards."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

NAME = "joyvasa_pack"
REPO = Path(__file__).resolve().parents[1]


def load_pack():
    if NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(NAME, REPO / "__init__.py",
                                                      submodule_search_locations=[str(REPO)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[NAME]
