"""Shared fixtures: the parity kit and stand-in checkpoints written in the official layout."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from joyvasa.testing import standin


def _kit_or_skip() -> Path:
    kit = standin.kit_dir()
    required = ["fill.py", "manifest/index.json", "golden/tolerances.json"]
    missing = [r for r in required if not (kit / r).exists()]
    if missing:
        message = f"parity kit not found or incomplete at {kit} (missing: {', '.join(missing)})"
        if standin.kit_required():
            pytest.fail(message + "; JOYVASA_REFERENCE_DIR is set, so this is an error, not a skip")
        pytest.skip(message + "; set JOYVASA_REFERENCE_DIR to run the parity tests")
    return kit


@pytest.fixture(scope="session")
def kit() -> Path:
    """The parity kit folder (JOYVASA_REFERENCE_DIR, default ../shared/reference)."""
    return _kit_or_skip()


@pytest.fixture(scope="session")
def tolerances(kit):
    return json.loads((kit / "golden" / "tolerances.json").read_text())["fixtures"]


class Golden:
    """One golden fixture file: arrays, meta and tolerances."""

    def __init__(self, kit: Path, name: str, tolerances: dict):
        path = kit / "golden" / name
        if not path.exists():
            message = f"golden fixture {path} is missing"
            if standin.kit_required():
                pytest.fail(message)
            pytest.skip(message)
        with np.load(path) as z:
            self.arrays = {k: z[k] for k in z.files}
        self.name = name
        self.meta = json.loads(str(self.arrays.pop("meta_json")))
        self.tol = tolerances.get(name, {})
        self.errors: dict[str, float] = {}

    def __getitem__(self, key):
        return self.arrays[key]

    def keys(self, prefix=""):
        return [k for k in self.arrays if k.startswith(prefix)]

    @property
    def weights_seed(self) -> int:
        return int(self.meta.get("weights_seed", 0))

    def check(self, key: str, actual) -> float:
        """Compare one array with its tolerance; returns the max abs error (recorded for the report)."""
        expected = self.arrays[key]
        actual = np.asarray(actual.detach().cpu() if hasattr(actual, "detach") else actual)
        assert actual.shape == expected.shape, f"{self.name}:{key} shape {actual.shape} != {expected.shape}"
        tol = self.tol[key]
        if expected.dtype == np.uint8:
            diff = np.abs(actual.astype(np.int32) - expected.astype(np.int32))
            frac = float((diff > 0).mean())
            err = float(diff.max())
            assert err <= tol["max_abs_diff"] and frac <= tol["max_fraction_differing"], (
                f"{self.name}:{key} max diff {err}, {frac:.2e} of elements differ "
                f"(allowed {tol['max_abs_diff']}, {tol['max_fraction_differing']})")
        else:
            err = float(np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max())
            assert err <= tol["atol"], f"{self.name}:{key} max abs error {err:.3g} > atol {tol['atol']}"
        self.record(key, err)
        return err

    def record(self, key: str, err: float) -> None:
        """Note a passed comparison (made by `check` or by a test's own exact check) for the report."""
        self.errors[key] = err
        tol = self.tol.get(key, {})
        _REPORT.setdefault(self.name, {})[key] = (err, tol.get("atol", tol.get("max_abs_diff", tol.get("kind"))))

    def recording(self) -> Recording:
        """A view whose `errors` hold only the comparisons made through it (see `Recording`)."""
        return Recording(self)


class Recording:
    """One golden file seen by one test: reads and comparisons go to the file, and the keys this view compared
    are kept in its own `errors`. The Golden objects are shared by the whole session, so their `errors` also
    hold what other tests compared; a coverage test that runs the comparisons through a fresh view sees exactly
    what it compared, whichever tests ran before it."""

    def __init__(self, golden: Golden):
        self.golden = golden
        self.errors: dict[str, float] = {}

    def __getattr__(self, name):  # arrays, meta, tol, name, keys(), weights_seed
        return getattr(self.golden, name)

    def __getitem__(self, key):
        return self.golden[key]

    def check(self, key: str, actual) -> float:
        err = self.golden.check(key, actual)
        self.errors[key] = err
        return err

    def record(self, key: str, err: float) -> None:
        self.golden.record(key, err)
        self.errors[key] = err


_REPORT: dict[str, dict[str, tuple[float, float]]] = {}


@pytest.fixture(scope="session")
def golden(kit, tolerances):
    cache: dict[str, Golden] = {}

    def load(name: str) -> Golden:
        if name not in cache:
            cache[name] = Golden(kit, name, tolerances)
        return cache[name]

    return load


@pytest.fixture(scope="session")
def weights_root(tmp_path_factory) -> Path:
    """Where stand-in checkpoints are written: $JOYVASA_STANDIN_CACHE (kept between runs) or a temp dir."""
    cache = os.environ.get("JOYVASA_STANDIN_CACHE")
    if cache:
        Path(cache).mkdir(parents=True, exist_ok=True)
        return Path(cache)
    return tmp_path_factory.mktemp("standin_weights")


@pytest.fixture(scope="session")
def standin_weights(kit, weights_root):
    """standin_weights(relpaths, seed) -> weights root holding those official files for that seed."""

    def build(relpaths, seed: int = 0) -> Path:
        root = weights_root / f"seed{seed}"
        for relpath in relpaths:
            if not (root / relpath).exists():
                standin.write_checkpoint(kit, relpath, root, seed)
        return root

    return build


def pytest_terminal_summary(terminalreporter):
    if not _REPORT:
        return
    terminalreporter.section("parity: largest error per array (tolerance)")
    for name, rows in sorted(_REPORT.items()):
        for key, (err, tol) in sorted(rows.items()):
            terminalreporter.write_line(f"{name:38s} {key:28s} {err:10.3g}  ({tol})")
