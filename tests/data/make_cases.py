#!/usr/bin/env python3
"""Generates the Keras reference cases the Fortran, C and C++ tests compare the engine with.

Usage: make_cases.py OUTDIR

For every case (randomly initialised Keras 3 models with fixed seeds, covering every layer type
and activation FKB supports, in float32 and float64) this writes

    OUTDIR/<name>.fkb    the model, written by the pure-Python writer (fkb._format)
    OUTDIR/<name>.x.bin  float64 little-endian, C order (1024, n_in): random normal inputs
    OUTDIR/<name>.y.bin  float64 little-endian, C order (1024, n_out): Keras' outputs

and OUTDIR/cases.txt with one line per case: `name dtype n_in n_out 1024`.

Cases of format 1.2 (graphs, several inputs/outputs, shaped data, 1-D and recurrent layers)
have two more columns: `name dtype n_in n_out 1024 IN_SIZES OUT_SIZES`, the comma-separated
flat per-sample sizes of each input and output in order (n_in, n_out are their sums); a row of
x.bin (y.bin) holds one sample's inputs (outputs) flattened in C order and concatenated.
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
            if name in ("kernel", "recurrent_kernel"):
                fan_in = int(np.prod(shape[:-1]))  # Dense: shape[0]; Conv1D: k * C/groups
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


# --------------------------------------------------------------------------------------------
# Format 1.2 cases: graphs, shaped data, 1-D and recurrent layers
# --------------------------------------------------------------------------------------------


def _residual_mlp() -> Any:
    import keras

    L = keras.layers
    i = keras.Input((8,), name="features")
    h = L.Dense(16, activation="relu", name="stem")(i)
    for k in range(2):
        b = L.Dense(16, activation="tanh", name=f"block{k}_a")(h)
        b = L.Dense(16, name=f"block{k}_b")(b)
        h = L.Add(name=f"skip{k}")([h, b])
    h = L.LayerNormalization(name="norm")(h)
    return keras.Model(i, L.Dense(4, name="head")(h), name="residual_mlp")


def _merge_graph() -> Any:
    """Two inputs, three outputs, every merge layer, Concatenate on the last and the steps
    axis (negative and positive axis), Dense on rank-3 data."""
    import keras

    L = keras.layers
    a = keras.Input((5, 3), name="seq")
    b = keras.Input((3,), name="vec")
    rep = L.RepeatVector(5, name="rep")(L.Dense(3, activation="tanh", name="vec_dense")(b))
    add = L.Add(name="add")([a, rep])
    sub = L.Subtract(name="sub")([a, rep])
    mul = L.Multiply(name="mul")([a, rep, add])
    avg = L.Average(name="avg")([add, sub, mul])
    mx = L.Maximum(name="max")([a, rep])
    mn = L.Minimum(name="min")([a, rep, mul])
    cat_last = L.Concatenate(axis=-1, name="cat_last")([avg, mx, mn])
    cat_steps = L.Concatenate(axis=1, name="cat_steps")([a, mn])
    cat_pos = L.Concatenate(axis=2, name="cat_pos")([a, rep])
    out1 = L.Dense(2, name="per_step")(cat_last)
    out2 = L.Dense(4, activation="sigmoid", name="flat_head")(L.Flatten(name="flat")(cat_steps))
    out3 = L.Concatenate(name="cat_vec")([L.GlobalAveragePooling1D(name="gap")(cat_pos), b])
    return keras.Model([a, b], [out1, out2, out3], name="merge_graph")


def _conv1d_column() -> Any:
    """ClimSim-like column model: (60 levels, 6 variables) -> per-level outputs (60, 3), with
    every Conv1D padding, strides, dilation, groups, pooling, up-sampling, padding, cropping."""
    import keras

    L = keras.layers
    x0 = keras.Input((60, 6), name="column")
    h = L.Conv1D(8, 3, padding="same", activation="relu", name="c_same")(x0)
    h = L.Conv1D(8, 5, padding="valid", activation="tanh", name="c_valid")(h)  # 56
    h = L.ZeroPadding1D((1, 3), name="pad")(h)  # 60
    h = L.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="gelu", name="c_causal")(h)
    d = L.Conv1D(12, 4, strides=2, padding="same", name="c_stride_same")(h)  # 30
    d = L.AveragePooling1D(3, strides=2, padding="same", name="avg_same")(d)  # 15
    d = L.MaxPooling1D(3, strides=1, padding="same", name="max_same")(d)  # 15
    d = L.Conv1D(12, 3, padding="same", groups=4, activation="silu", name="c_groups")(d)
    e = L.Conv1D(4, 3, strides=2, padding="same", name="c_odd_same")(d)  # 8
    e = L.Conv1D(4, 2, strides=3, padding="valid", use_bias=False, name="c_stride_valid")(e)
    up = L.UpSampling1D(4, name="up")(d)  # 60
    p = L.MaxPooling1D(2, name="max_valid")(h)  # 30
    p = L.AveragePooling1D(2, name="avg_valid")(p)  # 15
    p = L.UpSampling1D(4, name="up2")(p)  # 60
    u = L.Concatenate(name="skip_cat")([h, up, p, x0])  # 60, 34
    u = L.Cropping1D((3, 1), name="crop")(u)  # 56
    u = L.ZeroPadding1D(2, name="pad2")(u)  # 60
    levels = L.Conv1D(3, 1, name="per_level")(u)
    g = L.GlobalMaxPooling1D(name="gmp")(h)
    g2 = L.GlobalAveragePooling1D(keepdims=True, name="gap_keep")(e)
    scalars = L.Dense(2, name="scalars")(L.Concatenate(name="cat_g")([g, L.Flatten(name="fl")(g2)]))
    return keras.Model(x0, [levels, scalars], name="conv1d_column")


def _reshape_permute() -> Any:
    import keras

    L = keras.layers
    return keras.Sequential([
        keras.Input((12,)),
        L.Dense(24, activation="tanh", name="d0"),
        L.Reshape((4, -1), name="to_4x6"),
        L.Permute((2, 1), name="swap"),  # 6, 4
        L.Dense(5, name="d_rank3"),  # 6, 5
        L.Reshape((2, 3, 5), name="to_rank3"),
        L.Permute((3, 1, 2), name="rotate"),  # 5, 2, 3
        L.Flatten(name="flat"),
        L.RepeatVector(3, name="rep"),  # 3, 30
        L.GlobalMaxPooling1D(keepdims=True, name="gmp"),  # 1, 30
        L.Reshape((-1,), name="to_flat"),
        L.Dense(3, name="out"),
    ], name="reshape_permute")


def _time_distributed() -> Any:
    import keras

    L = keras.layers
    return keras.Sequential([
        keras.Input((7, 4)),
        L.TimeDistributed(L.Dense(6, activation="relu"), name="td_dense"),
        L.Dense(5, activation="tanh", name="dense_rank3"),
        L.LayerNormalization(name="ln"),
        L.BatchNormalization(name="bn"),
        L.PReLU(name="prelu"),
        L.Dropout(0.2, name="drop"),
        L.Activation("softplus", name="act"),
        L.Softmax(name="softmax"),
        L.TimeDistributed(L.Dense(2, use_bias=False), name="td_out"),
    ], name="time_distributed")


def _simple_rnn() -> Any:
    import keras

    L = keras.layers
    return keras.Sequential([
        keras.Input((6, 3)),
        L.SimpleRNN(5, return_sequences=True, name="rnn_seq"),
        L.SimpleRNN(4, activation="relu", go_backwards=True, return_sequences=True,
                    name="rnn_back_seq"),
        L.SimpleRNN(4, go_backwards=True, use_bias=False, name="rnn_back"),
        L.Dense(2, name="out"),
    ], name="simple_rnn")


def _lstm() -> Any:
    import keras

    L = keras.layers
    return keras.Sequential([
        keras.Input((6, 3)),
        L.LSTM(5, return_sequences=True, go_backwards=True, name="lstm_back_seq"),
        L.LSTM(4, return_sequences=True, recurrent_activation="hard_sigmoid", name="lstm_seq"),
        L.LSTM(3, go_backwards=True, name="lstm_back"),
        L.Dense(2, name="out"),
    ], name="lstm")


def _gru() -> Any:
    import keras

    L = keras.layers
    i = keras.Input((6, 3), name="steps")
    h = L.GRU(5, return_sequences=True, reset_after=False, name="gru_v1_seq")(i)
    h = L.GRU(4, return_sequences=True, go_backwards=True, name="gru_back_seq")(h)
    last = L.GRU(3, reset_after=False, go_backwards=True, name="gru_v1_back")(h)
    last2 = L.GRU(3, activation="relu", use_bias=False, name="gru_no_bias")(h)
    return keras.Model(i, [h, L.Add(name="sum")([last, last2])], name="gru")


def _bidirectional() -> Any:
    import keras

    L = keras.layers
    return keras.Sequential([
        keras.Input((6, 3)),
        L.Bidirectional(L.LSTM(4, return_sequences=True), merge_mode="concat", name="bi_concat"),
        L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode="sum", name="bi_sum"),
        L.Bidirectional(L.SimpleRNN(3, return_sequences=True), merge_mode="mul", name="bi_mul"),
        L.Bidirectional(L.GRU(2, reset_after=False), merge_mode="ave", name="bi_ave"),
        L.Dense(2, name="out"),
    ], name="bidirectional")


STATEFUL_BATCH = 4


def _stateful_lstm() -> Any:
    import keras

    L = keras.layers
    return keras.Sequential([
        keras.Input(batch_shape=(STATEFUL_BATCH, 5, 3)),
        L.LSTM(4, stateful=True, return_sequences=True, name="lstm_stateful"),
        L.Dense(2, name="out"),
    ], name="stateful_lstm")


def build_graph_cases() -> list[tuple[str, Callable[[], Any]]]:
    """[(name, builder)] of the format 1.2 cases (see the module docstring)."""
    return [
        ("residual_mlp", _residual_mlp),
        ("merge_graph", _merge_graph),
        ("conv1d_column", _conv1d_column),
        ("reshape_permute", _reshape_permute),
        ("time_distributed", _time_distributed),
        ("simple_rnn", _simple_rnn),
        ("lstm", _lstm),
        ("gru", _gru),
        ("bidirectional", _bidirectional),
        ("stateful_lstm", _stateful_lstm),
    ]


def input_shapes(model: Any) -> list[tuple[int, ...]]:
    """Per-sample shapes of a model's inputs."""
    return [tuple(int(d) for d in t.shape[1:]) for t in model.inputs]


def make_inputs(model: Any, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random normal float64 inputs (n, *shape) for each input of a model."""
    return [rng.normal(size=(n,) + s) for s in input_shapes(model)]


def keras_predict_multi(model: Any, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Keras' outputs (float64, a list) for float64 inputs given in the model's precision;
    stateful models run in batches of their fixed size, their state reset before each."""
    dtype = model.layers[-1].compute_dtype
    xs = [np.asarray(x).astype(dtype) for x in xs]
    batch = model.inputs[0].shape[0]
    if batch is None:
        ys = model(xs if len(xs) > 1 else xs[0], training=False)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        return [np.asarray(y, dtype=np.float64) for y in ys]
    parts: list[list[np.ndarray]] = []
    for start in range(0, xs[0].shape[0], batch):
        for layer in model.layers:
            if getattr(layer, "stateful", False):
                layer.reset_state()
        chunk = [x[start:start + batch] for x in xs]
        ys = model(chunk if len(chunk) > 1 else chunk[0], training=False)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        parts.append([np.asarray(y, dtype=np.float64) for y in ys])
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def iter_graph_cases(dtypes: tuple[str, ...] = ("float32", "float64"),
                     names: tuple[str, ...] | None = None):
    """Yields (case name, dtype, model) for the format 1.2 cases (fixed seeds)."""
    for i, (name, builder) in enumerate(build_graph_cases()):
        if names is not None and name not in names:
            continue
        for dtype in dtypes:
            j = ("float32", "float64").index(dtype)
            yield f"{name}_{dtype}", dtype, make_model(builder, dtype, SEED + 5000 + 10 * i + j)


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
    for k, (case, dtype, model) in enumerate(iter_graph_cases()):
        spec = spec_from_keras(model)
        rng = np.random.default_rng(SEED + 5000 + k)
        xs = make_inputs(model, N_SAMPLES, rng)
        ys = keras_predict_multi(model, xs)
        in_sizes = [int(np.prod(x.shape[1:])) for x in xs]
        out_sizes = [int(np.prod(y.shape[1:])) for y in ys]
        if [tuple(y.shape[1:]) for y in ys] != spec.output_shapes():
            raise RuntimeError(f"{case}: Keras output shapes {[y.shape for y in ys]}")
        write_fkb(spec, os.path.join(out, case + ".fkb"))
        x = np.concatenate([a.reshape(N_SAMPLES, -1) for a in xs], axis=1)
        y = np.concatenate([a.reshape(N_SAMPLES, -1) for a in ys], axis=1)
        x.astype("<f8").tofile(os.path.join(out, case + ".x.bin"))
        y.astype("<f8").tofile(os.path.join(out, case + ".y.bin"))
        lines.append(f"{case} {dtype} {sum(in_sizes)} {sum(out_sizes)} {N_SAMPLES} "
                     f"{','.join(map(str, in_sizes))} {','.join(map(str, out_sizes))}\n")
    with open(os.path.join(out, "cases.txt"), "w") as f:
        f.writelines(lines)
    print(f"{len(lines)} cases written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
