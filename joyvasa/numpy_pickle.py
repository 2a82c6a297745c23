"""Reading pickles of NumPy arrays without running anything else: the allow-list shared by every `.pkl` reader.

A pickle names the callables that rebuild its objects ("globals"); an ordinary `pickle.load` imports and
calls whatever it names, so a crafted file runs code. `NumpyOnlyUnpickler` resolves a global only if it is
one of NumPy's own array/scalar rebuilders (as written by numpy 1.x `numpy.core` and 2.x `numpy._core`,
pickle protocols 2 to 5) or a latin-1 `bytes` rebuilder that protocol 2 needs; the builtin containers
(dict, list, tuple, str, int, float) are pickle opcodes and need no global. Any other name is refused with
`RefusedGlobal` *before* it is imported, so nothing in such a file runs.
"""
from __future__ import annotations

import io
import pickle
from collections.abc import Mapping

import numpy as np

_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]  # numpy.(_)core.multiarray._reconstruct
_FROMBUFFER = np.zeros(1, np.float32).__reduce_ex__(5)[0]  # numpy.(_)core.numeric._frombuffer (protocol 5)
_SCALAR = np.float32(0).__reduce__()[0]  # numpy.(_)core.multiarray.scalar (NumPy scalars)


def _latin1_bytes(text, encoding="latin1"):
    """What protocol 2 writes for `bytes`: `_codecs.encode(text, "latin1")`; only that exact use is admitted."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedGlobal("_codecs.encode (with other arguments than protocol 2's bytes)")
    return text.encode("latin1")


ARRAY_GLOBALS: Mapping[tuple[str, str], object] = {
    **{(core + ".multiarray", "_reconstruct"): _RECONSTRUCT for core in ("numpy.core", "numpy._core")},
    **{(core + ".multiarray", "scalar"): _SCALAR for core in ("numpy.core", "numpy._core")},
    **{(core + ".numeric", "_frombuffer"): _FROMBUFFER for core in ("numpy.core", "numpy._core")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list (it was not imported; nothing ran). str() = module.name"""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only NumPy's array-reconstruction globals (`ARRAY_GLOBALS`); refuses every other global."""

    def find_class(self, module: str, name: str):  # no use of self: callable as find_class(None, ...)
        try:
            return ARRAY_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None


def loads_numpy_only(data: bytes) -> object:
    """Unpickle `data` admitting only NumPy arrays/scalars and builtin containers. Raises `RefusedGlobal` for a
    pickle naming any other global (nothing run), other exceptions for a damaged pickle."""
    return NumpyOnlyUnpickler(io.BytesIO(data)).load()
