"""Shared fixtures of the Python test suite.

Tolerances (also in fkb._verify.TOLERANCES): FKB agrees with Keras when every output element
satisfies |fkb - keras| <= tol * max(1, |keras|), tol = 1e-5 for float32 models and 1e-12 for
float64 models. Keras -> FKB -> Keras round trips (to_keras(from_keras(m))) must be bit-exact.

Models are generated here with fixed seeds (tests/data/make_cases.py), once per session.
"""

from __future__ import annotations

import importlib.util
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
LEGACY_DIR = os.path.join(os.path.dirname(ROOT), "shared", "legacy-fkb")
if not os.path.isdir(LEGACY_DIR):
    LEGACY_DIR = "/work/shared/legacy-fkb"

try:  # the installed package (pip install .) ...
    import fkb  # noqa: F401
except ImportError:  # ... or the source tree
    sys.path.insert(0, os.path.join(ROOT, "python"))

TOL = {"float32": 1e-5, "float64": 1e-12}


def assert_close(got, ref, dtype: str, what: str = "") -> None:
    """|got - ref| <= TOL[dtype] * max(1, |ref|) elementwise; NaN must meet NaN."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} vs {ref.shape}"
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(got), nan), f"{what}: NaN pattern differs"
    err = np.abs(got[~nan] - ref[~nan]) / np.maximum(1.0, np.abs(ref[~nan]))
    worst = float(err.max()) if err.size else 0.0
    assert worst <= TOL[dtype], f"{what}: max |Δ|/max(1,|y|) = {worst:.3e} > {TOL[dtype]:g}"


def _load_make_cases():
    path = os.path.join(ROOT, "tests", "data", "make_cases.py")
    spec = importlib.util.spec_from_file_location("fkb_make_cases", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def make_cases():
    return _load_make_cases()


@pytest.fixture(scope="session")
def cases(make_cases):
    """[(name, dtype, keras model)] covering every layer type and activation, both dtypes."""
    return list(make_cases.iter_cases())


@pytest.fixture(scope="session")
def case_inputs(cases):
    """name -> float64 random normal inputs (64, n_in), fixed seed."""
    rng = np.random.default_rng(7)
    return {name: rng.normal(size=(64, int(m.inputs[0].shape[-1]))) for name, _, m in cases}


@pytest.fixture(scope="session")
def keras_outputs(cases, case_inputs, make_cases):
    return {name: make_cases.keras_predict(m, case_inputs[name]) for name, _, m in cases}


def pytest_configure(config):
    config.addinivalue_line("markers", "engine: needs the compiled extension fkb._core")
