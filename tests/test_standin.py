"""The stand-in writer of `joyvasa.testing.standin` follows the kit's rules (kit README §2)."""
from __future__ import annotations

import math
import pickle
import zlib

import numpy as np
import pytest

from joyvasa.testing import standin

TEMPLATE = "JoyVASA/motion_template/motion_template.pkl"
STATISTICS = ("mean", "std", "max", "min", "abs_max")


def _bits(a: np.ndarray) -> np.ndarray:
    """The float32 array's bit patterns: equal bits, not merely equal values (-0.0 == 0.0, nan != nan)."""
    assert a.dtype == np.float32, a.dtype
    return np.ascontiguousarray(a).view(np.uint32)


def _read(path) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        template = pickle.load(f)  # a file this test just wrote
    assert type(template) is dict
    return template


def _rule_series(seed: int) -> dict[str, np.ndarray]:
    """The nine float64 series of the kit's motion-template rule (README §2), drawn in the stated order."""
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
    # R = (Rz(roll) Ry(yaw) Rx(pitch))^T from degrees (README §5.1), in float64, in plain NumPy
    pitch, yaw, roll = (angles / 180 * math.pi).T
    one, zero = np.ones(n), np.zeros(n)

    def mat(*rows):
        return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)

    rx = mat((one, zero, zero), (zero, np.cos(pitch), -np.sin(pitch)), (zero, np.sin(pitch), np.cos(pitch)))
    ry = mat((np.cos(yaw), zero, np.sin(yaw)), (zero, one, zero), (-np.sin(yaw), zero, np.cos(yaw)))
    rz = mat((np.cos(roll), -np.sin(roll), zero), (np.sin(roll), np.cos(roll), zero), (zero, zero, one))
    R = np.swapaxes(rz @ ry @ rx, 1, 2).reshape(n, 9)
    return {"scale": scale, "R": R, "t": t, "exp": exp, "pitch": angles[:, :1], "yaw": angles[:, 1:2],
            "roll": angles[:, 2:], "lip": lip, "eyes": eyes}


def _reduce(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"mean": x.mean(0), "std": x.std(0), "max": x.max(0), "min": x.min(0), "abs_max": np.abs(x).max(0)}


def _rule_template(seed: int) -> dict[str, np.ndarray]:
    """Each series cast to float32 first, then NumPy's reductions over frames of the float32 arrays."""
    out = {}
    for name, x in _rule_series(seed).items():
        for stat, value in _reduce(x.astype(np.float32)).items():
            out[f"{stat}_{name}"] = value
    return out


def test_motion_template_seed0_is_the_kits_bit_for_bit(kit, tmp_path):
    with np.load(kit / "manifest" / "JoyVASA__motion_template__motion_template.buffers.npz") as z:
        expected = {k: z[k] for k in z.files}
    assert len(expected) == 45
    written = _read(standin.write_checkpoint(kit, TEMPLATE, tmp_path, seed=0))
    rule = standin.motion_template_stats(0)
    independent = _rule_template(0)
    assert set(written) == set(rule) == set(independent) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(_bits(written[key]), _bits(value), err_msg=f"written {key}")
        np.testing.assert_array_equal(_bits(rule[key]), _bits(value), err_msg=f"rule {key}")
        np.testing.assert_array_equal(_bits(independent[key]), _bits(value), err_msg=f"this test's rule {key}")


@pytest.mark.parametrize("seed", [3])
def test_motion_template_other_seed_follows_the_float32_rule(kit, tmp_path, seed):
    written = _read(standin.write_checkpoint(kit, TEMPLATE, tmp_path, seed=seed))
    expected = _rule_template(seed)
    assert set(written) == set(expected)
    for key, value in expected.items():
        assert written[key].shape == value.shape, key
        np.testing.assert_array_equal(_bits(written[key]), _bits(value), err_msg=key)
    assert (written["std_exp"] > 0).all() and (written["min_yaw"] < written["max_yaw"]).all()
    # the rule is not a formality: float64 statistics cast afterwards differ in the last bit somewhere
    float64_first = {f"{stat}_{name}": value.astype(np.float32)
                     for name, x in _rule_series(seed).items() for stat, value in _reduce(x).items()}
    assert any(not np.array_equal(float64_first[k], written[k]) for k in written)
