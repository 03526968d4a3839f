#!/usr/bin/env python3
"""Generates the Keras reference cases the Fortran, C and C++ tests compare the engine with.

Usage: make_cases.py OUTDIR

For every case (randomly initialised Keras 3 models with fixed seeds, covering every layer type
and activation FKB supports, in float32 and float64) this writes

    OUTDIR/<name>.fkb    the model, written by the pure-Python writer (fkb._format)
    OUTDIR/<name>.x.bin  float64 little-endian, C order (1024, n_in): random normal inputs
    OUTDIR/<name>.y.bin  float64 little-endian, C order (1024, n_out): Keras' outputs

and OUTDIR/cases.txt with one line per case: `name dtype n_in n_out 1024`.
Only the pure-Python parts of the fkb package are used (no compiled extension), so this runs
before the engine is built. The test suite of the Python package imports build_cases() too.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.join(HERE, os.pardir, os.pardir, "python")
if os.path.isdir(os.path.join(PYTHON_DIR, "fkb")) and "fkb" not in sys.modules:
    # Run from a source tree: use its package (the pure-Python part is enough).
    sys.path.insert(0, os.path.abspath(PYTHON_DIR))

import numpy as np  # noqa: E402

N_SAMPLES = 1024
SEED = 20240601

ACTIVATIONS = [
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "gelu_tanh", "silu",
    "mish", "softplus", "softsign", "tanh", "sigmoid", "hard_sigmoid", "hard_silu",
    "exponential", "softmax", "log_softmax",
]


def _randomise(model: Any, rng: np.random.Generator) -> None:
    """Random weights everywhere, so no layer is an identity (fixed by rng)."""
    for layer in model.layers:
        new = []
        for w in layer.weights:
            name = w.path.split("/")[-1]
            shape, dtype = tuple(w.shape), w.dtype
            if name == "kernel":
                fan_in = shape[0]
                v = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
            elif name in ("gamma", "moving_variance", "variance"):
                v = rng.uniform(0.5, 1.5, shape)
            elif name == "alpha":  # PReLU
                v = rng.uniform(-0.2, 0.6, shape)
            elif name == "count":
                v = np.zeros(shape)
            else:  # bias, beta, moving_mean, mean
                v = rng.normal(0.0, 0.3, shape)
            new.append(np.asarray(v).astype(dtype))
        if new:
            layer.set_weights(new)
            if hasattr(layer, "finalize_state") and type(layer).__name__ == "Normalization":
                layer.finalize_state()


def build_cases() -> list[tuple[str, Callable[[], Any]]]:
    """[(name, builder)]: each builder returns a Keras 3 model (floatx set by the caller)."""
    import keras

    from fkb._keras_objects import ELUActivation, LeakyReLUActivation, gelu_tanh

    L = keras.layers

    def act(name: str) -> Any:
        return gelu_tanh if name == "gelu_tanh" else name

    def seq(n_in: int, *layers: Any, name: str) -> Any:
        return keras.Sequential([keras.Input((n_in,))] + list(layers), name=name)

    cases: list[tuple[str, Callable[[], Any]]] = []
    for a in ACTIVATIONS:
        # exponential twice overflows (float64 too); its second layer is linear instead.
        second = "linear" if a == "exponential" else a
        cases.append((f"dense_{a}", lambda a=a, b=second: seq(
            7, L.Dense(16, activation=act(a)), L.Dense(5, activation=act(b)), name=f"dense_{a}")))
    cases += [
        ("dense_leaky_alpha", lambda: seq(
            6, L.Dense(12, activation=LeakyReLUActivation(0.3)),
            L.Dense(4, activation=ELUActivation(0.7)), name="dense_leaky_alpha")),
        ("dense_no_bias", lambda: seq(
            6, L.Dense(9, activation="tanh", use_bias=False), L.Dense(3, use_bias=False),
            name="dense_no_bias")),
        ("activation_layers", lambda: seq(
            8, L.Dense(10), L.Activation("sigmoid"), L.Activation("leaky_relu"),
            L.Activation(gelu_tanh), L.Activation(LeakyReLUActivation(0.1)), L.Dense(4),
            L.Activation("log_softmax"), name="activation_layers")),
        ("dropout_flatten", lambda: seq(
            5, L.Flatten(), L.Dense(8, activation="relu"), L.Dropout(0.3), L.Flatten(),
            L.Dense(2), name="dropout_flatten")),
        ("batch_normalization", lambda: seq(
            6, L.Dense(10), L.BatchNormalization(epsilon=0.01), L.Activation("relu"),
            L.Dense(7), L.BatchNormalization(center=False),
            L.Dense(5), L.BatchNormalization(scale=False),
            L.Dense(3), L.BatchNormalization(center=False, scale=False),
            name="batch_normalization")),
        ("layer_normalization", lambda: seq(
            6, L.Dense(10), L.LayerNormalization(), L.Dense(8),
            L.LayerNormalization(center=False, epsilon=1e-5), L.Dense(6),
            L.LayerNormalization(scale=False), L.Dense(4),
            L.LayerNormalization(center=False, scale=False), name="layer_normalization")),
        ("normalization", lambda: seq(
            5, L.Normalization(), L.Dense(6, activation="tanh"),
            L.Normalization(invert=True), name="normalization")),
        ("normalization_given", lambda: seq(
            4, L.Normalization(mean=[0.5, -1.0, 2.0, 0.0], variance=[4.0, 0.25, 1.0, 9.0]),
            L.Dense(3), L.Normalization(mean=[1.0, 2.0, 3.0], variance=[2.0, 3.0, 0.5],
                                        invert=True), name="normalization_given")),
        ("relu_layers", lambda: seq(
            6, L.Dense(12), L.ReLU(), L.Dense(10), L.ReLU(max_value=0.5),
            L.Dense(8), L.ReLU(threshold=0.2), L.Dense(8), L.ReLU(negative_slope=0.1),
            L.Dense(6), L.ReLU(max_value=1.5, negative_slope=0.2, threshold=0.3),
            name="relu_layers")),
        ("leaky_elu_layers", lambda: seq(
            6, L.Dense(9), L.LeakyReLU(), L.Dense(8), L.LeakyReLU(negative_slope=0.05),
            L.Dense(7), L.ELU(), L.Dense(5), L.ELU(alpha=0.4), name="leaky_elu_layers")),
        ("prelu", lambda: seq(6, L.Dense(9), L.PReLU(), L.Dense(4), L.PReLU(), name="prelu")),
        ("softmax_layer", lambda: seq(
            6, L.Dense(9), L.Softmax(), L.Dense(5), L.Softmax(), name="softmax_layer")),
        ("functional_chain", _functional_chain),
        ("spcam_like", lambda: seq(
            94, *[x for _ in range(3) for x in (L.Dense(64), L.LeakyReLU(0.3))], L.Dense(65),
            name="spcam_like")),
    ]
    return cases


def _functional_chain() -> Any:
    import keras

    L = keras.layers
    inner = keras.Sequential([keras.Input((10,)), L.Dense(8, activation="selu"),
                              L.BatchNormalization()], name="inner")
    i = keras.Input((6,), name="features")
    x = L.Dense(10, activation="swish")(i)
    x = inner(x)
    x = L.Dropout(0.1)(x)
    x = L.Dense(3, activation="softmax")(x)
    return keras.Model(i, x, name="functional_chain")


def make_model(builder: Callable[[], Any], dtype: str, seed: int) -> Any:
    """Builds a case in the given precision with random weights (fixed seed)."""
    import keras

    # Keras caches its default dtype policy on first use, so set_floatx alone is not enough.
    old_floatx, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        keras.utils.set_random_seed(seed)
        model = builder()
    finally:
        keras.config.set_floatx(old_floatx)
        keras.config.set_dtype_policy(old_policy)
    _randomise(model, np.random.default_rng(seed))
    return model


def keras_predict(model: Any, x: np.ndarray) -> np.ndarray:
    """Keras' output (float64) for float64 inputs given in the model's precision."""
    dtype = model.layers[-1].compute_dtype
    return np.asarray(model(x.astype(dtype), training=False), dtype=np.float64)


def iter_cases(dtypes: tuple[str, ...] = ("float32", "float64")):
    """Yields (case name, dtype, model) for every case and precision (fixed seeds)."""
    for i, (name, builder) in enumerate(build_cases()):
        for j, dtype in enumerate(dtypes):
            yield f"{name}_{dtype}", dtype, make_model(builder, dtype, SEED + 10 * i + j)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    from fkb._format import write_fkb
    from fkb._keras_reader import spec_from_keras

    lines = []
    for k, (case, dtype, model) in enumerate(iter_cases()):
        spec = spec_from_keras(model)
        rng = np.random.default_rng(SEED + k)
        x = rng.normal(size=(N_SAMPLES, spec.n_inputs))
        y = keras_predict(model, x)
        if y.shape != (N_SAMPLES, spec.n_outputs):
            raise RuntimeError(f"{case}: Keras output shape {y.shape}")
        write_fkb(spec, os.path.join(out, case + ".fkb"))
        x.astype("<f8").tofile(os.path.join(out, case + ".x.bin"))
        y.astype("<f8").tofile(os.path.join(out, case + ".y.bin"))
        lines.append(f"{case} {dtype} {spec.n_inputs} {spec.n_outputs} {N_SAMPLES}\n")
    with open(os.path.join(out, "cases.txt"), "w") as f:
        f.writelines(lines)
    print(f"{len(lines)} cases written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
