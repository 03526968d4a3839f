#!/usr/bin/env python3
"""Keras reference cases for the engine's recurrent layers (tests/fortran/test_recurrent.f90).

Usage: make_rnn_cases.py OUTDIR

Small Keras 3 models (fixed seeds, random weights and biases) with SimpleRNN, LSTM, GRU
(reset_after 0 and 1), every return_sequences/go_backwards combination, Bidirectional with
every merge mode, and an LSTM -> Dense sequence model, in float32 and float64. The `.fkb` files
are written directly from the Keras layers' configurations and weights with the pure-Python
writer (fkb._format), following docs/format.md (not through the converter), so the test is
independent of it. For every case:

    OUTDIR/<name>.fkb    the model
    OUTDIR/<name>.x.bin  float64 little-endian, C order (N, T, C): random normal inputs
    OUTDIR/<name>.y.bin  float64 little-endian, C order (N, ...): Keras' outputs

and OUTDIR/rnn_cases.txt with one line per case: `name dtype mode n_in n_out N T B`:

* mode `seq`: the file takes the whole sequence; y is Keras' output for x.
* mode `step`: the file takes one step, input (1, C), and is meant to be stepped with an
  fkb_rnn_state: x holds T steps per sample (n_in = C values per step), y holds for every step
  the output Keras gives at that step of the whole sequence (n_out values per step), taken
  from the same weights with return_sequences=True.
* mode `keras_step`: like `step`, but y comes from a stateful=True Keras model with a fixed
  batch of B samples stepped one step per call (state reset between groups of B samples).
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

import numpy as np  # noqa: E402

N = 256
SEED = 20240717
TYPES = {"SimpleRNN": "simple_rnn", "LSTM": "lstm", "GRU": "gru"}


def _act(a: Any) -> str:
    import keras

    name = a if isinstance(a, str) else keras.activations.serialize(a)
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
    return {"swish": "silu"}.get(name, name)


def _rnn_config(layer: Any) -> tuple[str, dict]:
    """(fkb type, keys) of a Keras SimpleRNN/LSTM/GRU layer, as docs/format.md lists them."""
    ltype = TYPES[type(layer).__name__]
    cell = layer.cell
    c: dict[str, Any] = {
        "units": int(cell.units),
        "activation": _act(cell.activation),
        "use_bias": bool(cell.use_bias),
        "return_sequences": bool(layer.return_sequences),
        "go_backwards": bool(layer.go_backwards),
        "stateful": bool(layer.stateful),
    }
    if ltype != "simple_rnn":
        c["recurrent_activation"] = _act(cell.recurrent_activation)
    if ltype == "gru":
        c["reset_after"] = bool(cell.reset_after)
    return ltype, c


def _tensor_names(ltype: str, use_bias: bool) -> list[str]:
    return ["kernel", "recurrent_kernel"] + (["bias"] if use_bias else [])


def spec_of(model: Any, dtype: str, steps_override: int | None = None,
            rs_override: dict | None = None) -> Any:
    """The ModelSpec of a Sequential model of recurrent, Bidirectional and Dense layers.
    steps_override: write the input with that many steps (stepping files); rs_override:
    {layer name: return_sequences} to write instead of the Keras flag."""
    from fkb._format import InputSpec, LayerSpec, ModelSpec

    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if steps_override is not None:
        shape = (steps_override,) + shape[1:]
    layers = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in TYPES:
            ltype, c = _rnn_config(layer)
            if rs_override and layer.name in rs_override:
                c["return_sequences"] = rs_override[layer.name]
            w = layer.get_weights()
            layers.append(LayerSpec(ltype, layer.name, c,
                                    list(zip(_tensor_names(ltype, c["use_bias"]), w))))
        elif kind == "Bidirectional":
            ltype, c = _rnn_config(layer.forward_layer)
            if rs_override and layer.name in rs_override:
                c["return_sequences"] = rs_override[layer.name]
            names = _tensor_names(ltype, c["use_bias"])
            fw = layer.forward_layer.get_weights()
            bw = layer.backward_layer.get_weights()
            assert layer.backward_layer.go_backwards != layer.forward_layer.go_backwards
            cfg = {"merge_mode": layer.merge_mode, "layer": ltype, **c}
            tensors = [("forward_" + n, a) for n, a in zip(names, fw)] + \
                      [("backward_" + n, a) for n, a in zip(names, bw)]
            layers.append(LayerSpec("bidirectional", layer.name, cfg, tensors))
        elif kind == "Dense":
            c = {"units": int(layer.units), "activation": _act(layer.activation),
                 "use_bias": bool(layer.use_bias)}
            names = ["kernel", "bias"] if layer.use_bias else ["kernel"]
            layers.append(LayerSpec("dense", layer.name, c, list(zip(names, layer.get_weights()))))
        else:
            raise ValueError(f"{kind} is not used by these cases")
    return ModelSpec(dtype, None, layers, {"name": model.name},
                     inputs=[InputSpec("input", shape)])


def randomise(model: Any, rng: np.random.Generator) -> None:
    for layer in model.layers:
        new = []
        for w in layer.weights:
            name = w.path.split("/")[-1]
            shape = tuple(w.shape)
            if name in ("kernel", "recurrent_kernel"):
                v = rng.normal(0.0, 1.0 / np.sqrt(shape[0]), shape)
            else:
                v = rng.normal(0.0, 0.3, shape)
            new.append(np.asarray(v).astype(w.dtype))
        if new:
            layer.set_weights(new)


def build(dtype: str, seed: int, fn) -> Any:
    import keras

    old_floatx, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        keras.utils.set_random_seed(seed)
        model = fn()
    finally:
        keras.config.set_floatx(old_floatx)
        keras.config.set_dtype_policy(old_policy)
    randomise(model, np.random.default_rng(seed))
    return model


def seq_cases() -> list[tuple[str, Any]]:
    """[(name, builder)] of the whole-sequence cases."""
    import keras

    L = keras.layers
    T, C = 7, 3

    def one(layer_fn):
        return lambda: keras.Sequential([keras.Input((T, C)), layer_fn()])

    cases = []
    for rs in (0, 1):
        for gb in (0, 1):
            tag = f"rs{rs}_gb{gb}"
            kw = dict(return_sequences=bool(rs), go_backwards=bool(gb))
            cases += [
                (f"simple_rnn_{tag}", one(lambda kw=kw: L.SimpleRNN(5, name="rnn", **kw))),
                (f"lstm_{tag}", one(lambda kw=kw: L.LSTM(4, name="lstm", **kw))),
                (f"gru1_{tag}", one(lambda kw=kw: L.GRU(4, name="gru", reset_after=True, **kw))),
                (f"gru0_{tag}", one(lambda kw=kw: L.GRU(4, name="gru", reset_after=False, **kw))),
            ]
    cases += [
        ("simple_rnn_relu_nobias", one(lambda: L.SimpleRNN(
            6, activation="relu", use_bias=False, return_sequences=True, name="rnn"))),
        ("lstm_hard_sigmoid_nobias", one(lambda: L.LSTM(
            5, recurrent_activation="hard_sigmoid", use_bias=False, name="lstm"))),
        ("gru_nobias_tanh_rec", one(lambda: L.GRU(
            3, recurrent_activation="tanh", activation="sigmoid", use_bias=False,
            return_sequences=True, name="gru"))),
        ("gru0_nobias", one(lambda: L.GRU(3, reset_after=False, use_bias=False, name="gru"))),
        ("bi_concat_lstm_seq", one(lambda: L.Bidirectional(
            L.LSTM(4, return_sequences=True), merge_mode="concat", name="bi"))),
        ("bi_sum_gru_seq", one(lambda: L.Bidirectional(
            L.GRU(3, return_sequences=True), merge_mode="sum", name="bi"))),
        ("bi_mul_rnn_seq", one(lambda: L.Bidirectional(
            L.SimpleRNN(3, return_sequences=True), merge_mode="mul", name="bi"))),
        ("bi_ave_gru0", one(lambda: L.Bidirectional(
            L.GRU(2, reset_after=False), merge_mode="ave", name="bi"))),
        # A forward layer with go_backwards=True needs an explicit backward layer in Keras 3.
        ("bi_concat_rnn_back", one(lambda: L.Bidirectional(
            L.SimpleRNN(3, go_backwards=True), backward_layer=L.SimpleRNN(3),
            merge_mode="concat", name="bi"))),
        ("bi_ave_lstm_back_seq", one(lambda: L.Bidirectional(
            L.LSTM(3, go_backwards=True, return_sequences=True),
            backward_layer=L.LSTM(3, return_sequences=True), merge_mode="ave", name="bi"))),
        ("lstm_dense_seq", lambda: keras.Sequential([
            keras.Input((T, C)),
            L.LSTM(6, return_sequences=True, name="lstm1"),
            L.GRU(5, return_sequences=True, go_backwards=True, name="gru2"),
            L.Dense(3, activation="tanh", name="per_step"),
            L.LSTM(4, name="lstm3"),
            L.Dense(2, name="head")])),
    ]
    return cases


STEP_T, STEP_C = 6, 3


def step_cases() -> list[tuple[str, Any, dict]]:
    """[(name, builder, return_sequences to write)]: whole-sequence Keras models whose
    per-step outputs are the reference for stepping a one-step file."""
    import keras

    L = keras.layers
    inp = lambda: keras.Input((STEP_T, STEP_C))  # noqa: E731
    return [
        ("step_simple_rnn", lambda: keras.Sequential([
            inp(), L.SimpleRNN(4, return_sequences=True, stateful=False, name="rnn")]),
         {"rnn": False}),
        ("step_gru1", lambda: keras.Sequential([
            inp(), L.GRU(4, return_sequences=True, name="gru")]), {"gru": False}),
        ("step_gru0", lambda: keras.Sequential([
            inp(), L.GRU(3, reset_after=False, return_sequences=True, name="gru")]),
         {"gru": True}),
        ("step_lstm_dense", lambda: keras.Sequential([
            inp(), L.LSTM(5, return_sequences=True, name="lstm"),
            L.LSTM(4, return_sequences=True, name="lstm2"),
            L.Dense(2, name="head")]), {"lstm": True, "lstm2": False}),
    ]


KERAS_STEP_B = 8


def keras_step_cases() -> list[tuple[str, Any]]:
    import keras

    L = keras.layers
    inp = lambda: keras.Input(batch_shape=(KERAS_STEP_B, 1, STEP_C))  # noqa: E731
    return [
        ("kstep_bi_lstm", lambda: keras.Sequential([
            inp(), L.Bidirectional(L.LSTM(3, stateful=True), merge_mode="concat", name="bi"),
            L.Dense(2, name="head")])),
        ("kstep_gru_back", lambda: keras.Sequential([
            inp(), L.GRU(3, stateful=True, go_backwards=True, return_sequences=True,
                         name="gru")])),
    ]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    from fkb._format import write_fkb

    lines = []

    def save(name, spec, x, y, mode, steps=1, b=0):
        write_fkb(spec, os.path.join(out, name + ".fkb"))
        x.astype("<f8").tofile(os.path.join(out, name + ".x.bin"))
        y.astype("<f8").tofile(os.path.join(out, name + ".y.bin"))
        n_in = x[0].size // steps
        n_out = y[0].size // steps
        lines.append(f"{name} {spec.dtype} {mode} {n_in} {n_out} {x.shape[0]} {steps} {b}\n")

    k = 0
    for dtype in ("float32", "float64"):
        for name, fn in seq_cases():
            k += 1
            model = build(dtype, SEED + k, fn)
            x = np.random.default_rng(SEED + 1000 + k).normal(size=(N,) + tuple(
                int(d) for d in model.inputs[0].shape[1:]))
            y = np.asarray(model(x.astype(dtype), training=False), dtype=np.float64)
            save(f"{name}_{dtype}", spec_of(model, dtype), x, y, "seq")
        for name, fn, rs in step_cases():
            k += 1
            model = build(dtype, SEED + k, fn)
            x = np.random.default_rng(SEED + 1000 + k).normal(size=(N, STEP_T, STEP_C))
            y = np.asarray(model(x.astype(dtype), training=False), dtype=np.float64)
            save(f"{name}_{dtype}", spec_of(model, dtype, steps_override=1, rs_override=rs),
                 x, y, "step", STEP_T)
        for name, fn in keras_step_cases():
            k += 1
            model = build(dtype, SEED + k, fn)
            x = np.random.default_rng(SEED + 1000 + k).normal(size=(N, STEP_T, STEP_C))
            ys = []
            for g0 in range(0, N, KERAS_STEP_B):
                for layer in model.layers:
                    if hasattr(layer, "reset_states"):
                        layer.reset_states()
                    elif hasattr(layer, "reset_state"):
                        layer.reset_state()
                steps = []
                for s in range(STEP_T):
                    xs = x[g0:g0 + KERAS_STEP_B, s:s + 1, :].astype(dtype)
                    steps.append(np.asarray(model(xs, training=False), dtype=np.float64)
                                 .reshape(KERAS_STEP_B, -1))
                ys.append(np.stack(steps, axis=1))
            y = np.concatenate(ys)
            save(f"{name}_{dtype}", spec_of(model, dtype), x, y, "keras_step", STEP_T,
                 KERAS_STEP_B)
    with open(os.path.join(out, "rnn_cases.txt"), "w") as f:
        f.writelines(lines)
    print(f"{len(lines)} recurrent cases written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
