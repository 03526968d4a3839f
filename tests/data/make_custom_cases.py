#!/usr/bin/env python3
"""Keras models with a layer class of their own, converted through fkb.register_layer, for the
engine's Fortran custom layer (tests/fortran/test_custom_keras.f90 runs them with
examples/custom_layer/scale_shift.f90 registered).

Usage: make_custom_cases.py OUTDIR

``ScaleShift`` (y = a*x + offset; ``a`` a config value, ``offset`` a weight of shape (n,)) is
registered with ``fkb.register_layer`` under the type name ``scale_shift`` with option ``a`` and
tensor ``offset``: exactly the record the Fortran example layer reads. Cases (float32 and
float64, fixed seeds, random weights):

* ``seq``: Sequential Dense(tanh) -> ScaleShift -> Dense;
* ``graph``: Functional Dense -> ScaleShift, added to the Dense output (skip connection),
  -> Dense(relu) -> ScaleShift -> Dense.

For every case: OUTDIR/<name>.fkb (written by the converter, fkb.convert), <name>.x.bin (float64
little-endian, C order (N, n_in)) and <name>.y.bin (Keras' outputs (N, n_out), float64), and a
line `name dtype n_in n_out N` in OUTDIR/custom_cases.txt. The Python tests
(tests/python/test_custom_layers.py) import ScaleShift and register() from here.
"""

from __future__ import annotations

import os
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.join(HERE, os.pardir, os.pardir, "python")
if os.path.isdir(os.path.join(PYTHON_DIR, "fkb")) and "fkb" not in sys.modules:
    sys.path.insert(0, os.path.abspath(PYTHON_DIR))

import keras  # noqa: E402
import numpy as np  # noqa: E402

N = 256
SEED = 20241125


def _scale_shift_class() -> type:
    name = "fkb_tests>ScaleShift"
    existing = keras.saving.get_registered_object(name)
    if existing is not None:
        return existing

    @keras.saving.register_keras_serializable(package="fkb_tests")
    class ScaleShift(keras.layers.Layer):
        """y = a * x + offset, one offset per feature."""

        def __init__(self, a: float = 1.0, **kwargs: Any):
            super().__init__(**kwargs)
            self.a = a

        def build(self, input_shape: Any) -> None:
            self.offset = self.add_weight(shape=(input_shape[-1],), name="offset",
                                          initializer="random_normal")

        def call(self, x: Any) -> Any:
            return self.a * x + self.offset

        def get_config(self) -> dict:
            return {**super().get_config(), "a": self.a}

    return ScaleShift


ScaleShift = _scale_shift_class()


def to_config_and_weights(layer: Any) -> tuple[dict, list]:
    return {"a": float(layer.a), "tensor_names": ["offset"]}, [layer.offset.numpy()]


def from_config_and_weights(config: dict, weights: list) -> Any:
    return ScaleShift(**config)


def forward(config: dict, weights: list, x: np.ndarray) -> np.ndarray:
    return (config["a"] * x + weights[0]).astype(x.dtype)


def register(with_forward: bool = False, fkb_module: Any = None) -> None:
    """Registers ScaleShift as the fkb layer type `scale_shift` (option a, tensor offset)."""
    if fkb_module is None:
        import fkb as fkb_module
    fkb_module.register_layer(ScaleShift, "scale_shift", to_config_and_weights,
                              from_config_and_weights,
                              forward=forward if with_forward else None)


def build(case: str, dtype: str, seed: int = SEED) -> Any:
    """The Keras model of a case, in dtype, with random weights (fixed seed)."""
    L = keras.layers
    old_floatx, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        keras.utils.set_random_seed(seed)
        if case == "seq":
            model = keras.Sequential([keras.Input((6,)), L.Dense(5, activation="tanh"),
                                      ScaleShift(a=-1.75, name="scale"), L.Dense(4)],
                                     name="custom_seq")
        elif case == "graph":
            x = keras.Input((6,), name="x")
            h = L.Dense(5, name="d1")(x)
            s = ScaleShift(a=0.3, name="ss1")(h)
            h = L.Add(name="skip")([s, h])
            h = L.Dense(8, activation="relu", name="d2")(h)
            h = ScaleShift(a=2.0, name="ss2")(h)
            model = keras.Model(x, L.Dense(3, name="out")(h), name="custom_graph")
        else:
            raise ValueError(case)
    finally:
        keras.config.set_floatx(old_floatx)
        keras.config.set_dtype_policy(old_policy)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([rng.normal(0.0, 0.5, w.shape).astype(w.dtype) for w in ws])
    return model


def keras_predict(model: Any, x: np.ndarray, dtype: str) -> np.ndarray:
    """Keras' outputs for x in the model's precision (a direct call: model.predict would
    round float64 inputs to the global floatx)."""
    return np.asarray(model(x.astype(dtype), training=False), dtype=np.float64)


CASES = [(case, dtype) for case in ("seq", "graph") for dtype in ("float32", "float64")]


def main(out: str) -> None:
    import fkb

    register()
    os.makedirs(out, exist_ok=True)
    lines = []
    for case, dtype in CASES:
        name = f"{case}_{dtype}"
        model = build(case, dtype)
        rng = np.random.default_rng(SEED + len(lines))
        x = rng.normal(0.0, 1.5, (N, 6))
        y = keras_predict(model, x, dtype)
        fkb.convert(model, os.path.join(out, name + ".fkb"))
        x.astype("<f8").tofile(os.path.join(out, name + ".x.bin"))
        y.astype("<f8").tofile(os.path.join(out, name + ".y.bin"))
        lines.append(f"{name} {dtype} {x.shape[1]} {y.shape[1]} {N}\n")
    with open(os.path.join(out, "custom_cases.txt"), "w") as f:
        f.writelines(lines)
    print(f"wrote {len(lines)} custom-layer cases to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
