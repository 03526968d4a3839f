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


@pytest.fixture(scope="session")
def graph_case(make_cases):
    """get("merge_graph_float32") -> (dtype, keras model, inputs, keras outputs): a format 1.2
    case of make_cases.build_graph_cases(), with 256 random normal float64 samples per input
    (fixed seed) and Keras' outputs (lists, one array per input/output). Built once."""
    cache = {}

    def get(name: str):
        if name not in cache:
            base, dtype = name.rsplit("_", 1)
            ((_, _, model),) = make_cases.iter_graph_cases((dtype,), (base,))
            xs = make_cases.make_inputs(model, 256, np.random.default_rng(7))
            cache[name] = (dtype, model, xs, make_cases.keras_predict_multi(model, xs))
        return cache[name]

    return get


def check_round_trip(make_cases, model, xs, ys, dtype: str, tmp_path=None) -> None:
    """Keras -> .fkb bytes -> Keras is exact: same weights, bit-identical predictions, same
    layer names (and input names of Functional models)."""
    from fkb._format import decode_fkb, encode_fkb
    from fkb._keras_reader import spec_from_keras
    from fkb._to_keras import spec_to_keras

    spec = decode_fkb(encode_fkb(spec_from_keras(model)))
    assert spec.dtype == dtype
    rebuilt = spec_to_keras(spec)
    a = model.get_weights()
    b = rebuilt.get_weights()
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes()
    got = make_cases.keras_predict_multi(rebuilt, xs)
    assert len(got) == len(ys)
    for g, y in zip(got, ys):
        assert g.shape == y.shape and np.array_equal(g, y, equal_nan=True)
    names = {layer.name for layer in spec.layers}
    assert names <= {layer.name for layer in rebuilt.layers}
    if not isinstance(model, __import__("keras").Sequential):
        assert [t.name for t in rebuilt.inputs] == [t.name for t in model.inputs] or \
            spec.is_chain()


def check_engine(net, xs, ys, dtype: str, batches=(1, 7, 256)) -> None:
    """fkb's predict agrees with Keras' outputs ys (lists) at several batch sizes, for inputs
    given as arrays (batch, *shape): one array, a list or a dict by input name."""
    for batch in batches:
        part = [x[:batch].astype(dtype) for x in xs]
        arg = part[0] if len(part) == 1 else part
        out = net.predict(arg)
        outs = out if isinstance(out, list) else [out]
        assert len(outs) == len(ys)
        for k, (o, y) in enumerate(zip(outs, ys)):
            assert o.dtype == np.dtype(dtype)
            assert_close(o, y[:batch], dtype, f"batch {batch}, output {k}")
    if len(xs) > 1:
        named = dict(zip(net.input_names, [x[:3].astype(dtype) for x in xs]))
        out = net.predict(named)
        for o, y in zip(out if isinstance(out, list) else [out], ys):
            assert_close(o, y[:3], dtype, "dict input")


def pytest_configure(config):
    config.addinivalue_line("markers", "engine: needs the compiled extension fkb._core")
