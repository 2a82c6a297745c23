"""The pack imported the way ComfyUI imports it: its root `__init__.py` as a package (here named
`joyvasa_pack`), so `nodes/` reaches the library through relative imports (`..joyvasa`), exactly as inside
ComfyUI. Import this module before importing `joyvasa_pack.*`. The loader lives in `tools/pack.py` (the
workflow tools read the nodes' schemas through it too)."""
from __future__ import annotations

from tools.pack import NAME, REPO, load_pack

__all__ = ["NAME", "PACK", "REPO", "load_pack"]

PACK = load_pack()
