#!/usr/bin/env python3
"""Keras references for training Functional graphs and last-axis layers on (steps, channels)
data (tests/fortran/test_training_graphs.f90; tests/python/test_training_graphs.py imports
CASES and the builders).

Usage: make_train_graph_cases.py OUTDIR

For every case and precision (float32, float64; Keras run in that precision, compiled without
XLA) this writes, all float64 little-endian, one sample per row in C order with the inputs
(targets) of a sample flattened and concatenated:

    <name>.fkb        the untrained model (pure-Python writer)
    <name>.x.bin      (4*B, sum of input sizes): 4 batches of B samples
    <name>.t.bin      (4*B, sum of target sizes): targets (sparse: class indices)
    <name>.w.bin      (4*B,) sample weights (cases with weights only)
    <name>.grad.bin   loss, then d loss / d tensor of every tensor in file order (batch 1;
                      tf.GradientTape in a tf.function, training=True; moving statistics 0)
    <name>.adam.bin   loss, then every tensor after one Keras train_on_batch (Adam lr 0.01)
    <name>.sgd.bin    the same with SGD(lr 0.05, momentum 0.9)
    <name>.curve.bin  50 losses of train_on_batch (Adam lr 1e-3, batches 1,2,3,4,1,...),
                      then every tensor after them

and OUTDIR/train_cases.txt, one line per case:
`name dtype B has_w IN_SIZES TARGET_SIZES LOSS...` (the engine's loss spec, spaces allowed).
Also bad_conv1d.fkb and bad_lstm.fkb: graphs with a layer that has no backward pass.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.join(HERE, os.pardir, os.pardir, "python")
if os.path.isdir(os.path.join(PYTHON_DIR, "fkb")) and "fkb" not in sys.modules:
    sys.path.insert(0, os.path.abspath(PYTHON_DIR))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

B = 16
STEPS = 50
SEED = 20240917


def residual_mlp():
    """Add skips (a value used by two layers), BatchNormalization in a block."""
    import keras

    L = keras.layers
    i = keras.Input((8,), name="features")
    h = L.Dense(16, activation="relu", name="stem")(i)
    for k in range(2):
        b = L.Dense(16, activation="tanh", name=f"block{k}_a")(h)
        if k == 1:
            b = L.BatchNormalization(name="block1_bn")(b)
        b = L.Dense(16, name=f"block{k}_b")(b)
        h = L.Add(name=f"skip{k}")([h, b])
    h = L.LayerNormalization(name="norm")(h)
    return keras.Model(i, L.Dense(4, name="head")(h), name="residual_mlp")


def two_in_three_out():
    """Two inputs, three outputs (linear / softmax / tanh heads), concatenate, multiply,
    maximum, minimum, subtract, average; tie units in maximum and minimum (see TIES)."""
    import keras

    L = keras.layers
    a = keras.Input((6,), name="a")
    b = keras.Input((4,), name="b")
    ha = L.Dense(8, activation="tanh", name="ha")(a)
    hb = L.Dense(8, activation="elu", name="hb")(b)
    cat = L.Concatenate(name="cat")([ha, hb, a])
    mul = L.Multiply(name="mul")([ha, hb])
    d1 = L.Dense(8, name="d1")(cat)
    d2 = L.Dense(8, name="d2")(cat)
    mx = L.Maximum(name="mx")([d1, d2, mul])
    mn = L.Minimum(name="mn")([d2, d1])
    sub = L.Subtract(name="sub")([mx, mn])
    avg = L.Average(name="avg")([sub, ha, hb])
    o1 = L.Dense(3, name="o1")(avg)
    o2 = L.Dense(4, activation="softmax", name="o2")(L.Concatenate(name="cat2")([mx, hb]))
    o3 = L.Dense(2, activation="tanh", name="o3")(mn)
    return keras.Model([a, b], [o1, o2, o3], name="two_in_three_out")


def steps_channels():
    """Dense-family layers on (steps, channels) data, a per-step regression output and a
    per-step class output (sparse targets, softmax logits)."""
    import keras

    L = keras.layers
    i = keras.Input((7, 4), name="seq")
    h = L.TimeDistributed(L.Dense(6, activation="relu"), name="td_dense")(i)
    h = L.Dense(5, activation="tanh", name="dense_rank3")(h)
    # (BN after LN would make LN's beta gradient (near) zero, which Adam blows up to +-lr)
    h = L.BatchNormalization(name="bn")(h)
    h = L.PReLU(name="prelu")(h)
    h = L.LayerNormalization(name="ln")(h)
    reg = L.Dense(3, name="reg")(h)
    cls = L.Dense(4, activation="softmax", name="cls")(L.Activation("swish", name="act")(h))
    return keras.Model(i, [reg, cls], name="steps_channels")


def td_sequential():
    """Sequential TimeDistributed(Dense) on (steps, channels), one output, MSE."""
    import keras

    L = keras.layers
    return keras.Sequential([
        keras.Input((5, 3)),
        L.TimeDistributed(L.Dense(4, activation="selu"), name="td"),
        L.Dense(6, activation="softplus", name="d6"),
        L.BatchNormalization(name="bn"),
        L.Dense(2, name="out"),
    ], name="td_sequential")


# name -> (builder, Keras losses, loss_weights, the engine's loss spec, sample weights, sparse)
CASES = {
    "residual_mlp": (residual_mlp, "mse", None, "mean_squared_error", False),
    "two_in_three_out": (two_in_three_out,
                         ["mse", "categorical_crossentropy", "huber"], [1.0, 0.5, 2.0],
                         "mean_squared_error weight=1.0;categorical_crossentropy weight=0.5;"
                         "huber weight=2.0", True),
    "steps_channels": (steps_channels, ["mae", "sparse_categorical_crossentropy"], [0.7, 0.3],
                       "mean_absolute_error weight=0.7;sparse_categorical_crossentropy "
                       "weight=0.3", True),
    "td_sequential": (td_sequential, "mse", None, "mean_squared_error", False),
}
# Units of Maximum/Minimum inputs made equal (identical weights): ties, which TF gives to the
# first input (x >= y for maximum, x <= y for minimum).
TIES = {"two_in_three_out": ("d1", "d2", [0, 3, 5])}


def make(name: str, dtype: str):
    """The case's model in `dtype`, random weights from a fixed seed."""
    import make_cases

    builder = CASES[name][0]
    k = list(CASES).index(name) * 2 + ("float32", "float64").index(dtype)
    model = make_cases.make_model(builder, dtype, SEED + k)
    if name in TIES:
        first, second, units = TIES[name]
        w1 = model.get_layer(first).get_weights()
        w2 = model.get_layer(second).get_weights()
        for u in units:
            w2[0][:, u] = w1[0][:, u]
            w2[1][u] = w1[1][u]
        model.get_layer(second).set_weights(w2)
    return model


def data(name: str, model, dtype: str):
    """Inputs, targets (float64, per output) and sample weights of 4*B samples."""
    k = list(CASES).index(name) * 2 + ("float32", "float64").index(dtype)
    rng = np.random.default_rng(SEED + 100 + k)
    xs = [rng.normal(size=(4 * B,) + tuple(t.shape[1:])) for t in model.inputs]
    losses = CASES[name][1]
    losses = losses if isinstance(losses, list) else [losses]
    ts = []
    for out, loss in zip(model.outputs, losses):
        shape = (4 * B,) + tuple(out.shape[1:])
        if loss == "sparse_categorical_crossentropy":
            ts.append(rng.integers(0, shape[-1], size=shape[:-1]).astype(np.float64))
        elif loss == "categorical_crossentropy":
            p = rng.uniform(0.05, 1.0, size=shape)
            ts.append(p / p.sum(axis=-1, keepdims=True))
        else:
            ts.append(rng.normal(size=shape))
    w = rng.uniform(0.2, 1.8, size=4 * B) if CASES[name][4] else None
    return xs, ts, w


def keras_tensors(spec, model):
    """The Keras variables of every tensor of the file, in file order."""
    out = []
    for layer in spec.layers:
        kv = model.get_layer(layer.name).weights
        if len(kv) != len(layer.tensors):
            raise RuntimeError(f"{layer.name}: {len(kv)} Keras weights, "
                               f"{len(layer.tensors)} tensors")
        for v, (_, t) in zip(kv, layer.tensors):
            if not np.array_equal(np.asarray(v.numpy(), dtype=np.float64),
                                  np.asarray(t, dtype=np.float64)):
                raise RuntimeError(f"{layer.name}: tensor order differs from Keras")
            out.append(v)
    return out


def compile_keras(model, name, optimizer):
    _, losses, weights, _, _ = CASES[name]
    model.compile(optimizer=optimizer, loss=losses, loss_weights=weights, jit_compile=False)


def cast(a, dtype, sparse=False):
    return a.astype("int32" if sparse else dtype)


def batch(xs, ts, w, k, dtype, sparse_flags):
    sl = slice(k * B, (k + 1) * B)
    x = [cast(a[sl], dtype) for a in xs]
    t = [cast(a[sl], dtype, s) for a, s in zip(ts, sparse_flags)]
    # (batch, 1) weights: Keras 3 refuses (batch,) weights for a per-step loss of shape
    # (batch, steps) and broadcasts (batch, 1) over the steps, which is what FKB does with its
    # (batch,) weights.
    return (x if len(x) > 1 else x[0]), (t if len(t) > 1 else t[0]), \
        (None if w is None else w[sl].astype(dtype)[:, None])


def references(name: str, dtype: str):
    """{'grad': [...], 'adam': [...], 'sgd': [...], 'curve': [...]} as float64 arrays."""
    import keras
    import tensorflow as tf

    from fkb._keras_reader import spec_from_keras
    from make_cases import make_model  # noqa: F401  (floatx handling lives there)

    old_floatx, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        losses = CASES[name][1]
        losses = losses if isinstance(losses, list) else [losses]
        sparse = [lo == "sparse_categorical_crossentropy" for lo in losses]
        model = make(name, dtype)
        spec = spec_from_keras(model)
        xs, ts, w = data(name, model, dtype)
        out = {"spec": spec, "xs": xs, "ts": ts, "w": w}
        # Gradients of the compiled loss, as Keras' train step computes them.
        compile_keras(model, name, keras.optimizers.SGD(0.0))
        variables = keras_tensors(spec, model)
        saved = [np.array(v.numpy()) for v in variables]
        x, t, sw = batch(xs, ts, w, 0, dtype, sparse)

        @tf.function(jit_compile=False)
        def f(x, t, sw):
            with tf.GradientTape() as tape:
                pred = model(x, training=True)
                loss = model.compute_loss(x=x, y=t, y_pred=pred, sample_weight=sw,
                                          training=True)
            return loss, tape.gradient(loss, variables)

        loss, grads = f(x, t, sw)
        out["grad"] = np.concatenate(
            [[float(loss)]] + [np.zeros(v.shape).ravel() if g is None else
                               np.asarray(g, dtype=np.float64).ravel()
                               for v, g in zip(variables, grads)])
        for v, s in zip(variables, saved):
            v.assign(s)
        # One step of each optimizer, and a 50-step curve.
        for key, opt in (("adam", lambda: keras.optimizers.Adam(0.01)),
                         ("sgd", lambda: keras.optimizers.SGD(0.05, momentum=0.9))):
            m = make(name, dtype)
            compile_keras(m, name, opt())
            logs = m.train_on_batch(x, t, sample_weight=sw, return_dict=True)
            out[key] = np.concatenate([[float(logs["loss"])]] + [
                np.asarray(v.numpy(), dtype=np.float64).ravel()
                for v in keras_tensors(spec_from_keras(m), m)])
        m = make(name, dtype)
        compile_keras(m, name, keras.optimizers.Adam(1e-3))
        curve = []
        for s in range(STEPS):
            xb, tb, wb = batch(xs, ts, w, s % 4, dtype, sparse)
            curve.append(float(m.train_on_batch(xb, tb, sample_weight=wb,
                                                return_dict=True)["loss"]))
        out["curve"] = np.concatenate([curve] + [
            np.asarray(v.numpy(), dtype=np.float64).ravel()
            for v in keras_tensors(spec_from_keras(m), m)])
        return out
    finally:
        keras.config.set_floatx(old_floatx)
        keras.config.set_dtype_policy(old_policy)


def bad_models():
    import keras

    L = keras.layers
    i = keras.Input((6, 3), name="s")
    v = keras.Input((2,), name="v")
    c = L.Conv1D(4, 3, name="conv")(i)
    h = L.Concatenate(name="cat")([L.Flatten(name="fl")(c), v])
    conv = keras.Model([i, v], L.Dense(2, name="out")(h), name="bad_conv1d")
    i = keras.Input((6, 3), name="s")
    r = L.LSTM(4, name="lstm")(i)
    d = L.Dense(4, name="skip")(L.Flatten(name="fl")(i))
    lstm = keras.Model(i, L.Dense(1, name="out")(L.Add(name="add")([r, d])), name="bad_lstm")
    return [("bad_conv1d", conv), ("bad_lstm", lstm)]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: make_train_graph_cases.py OUTDIR", file=sys.stderr)
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    from fkb._format import write_fkb
    from fkb._keras_reader import spec_from_keras

    lines = []
    for name in CASES:
        for dtype in ("float32", "float64"):
            case = f"{name}_{dtype}"
            ref = references(name, dtype)
            write_fkb(ref["spec"], os.path.join(out, case + ".fkb"))
            n = 4 * B
            np.concatenate([a.reshape(n, -1) for a in ref["xs"]], axis=1).astype("<f8").tofile(
                os.path.join(out, case + ".x.bin"))
            np.concatenate([a.reshape(n, -1) for a in ref["ts"]], axis=1).astype("<f8").tofile(
                os.path.join(out, case + ".t.bin"))
            if ref["w"] is not None:
                ref["w"].astype("<f8").tofile(os.path.join(out, case + ".w.bin"))
            for key in ("grad", "adam", "sgd", "curve"):
                ref[key].astype("<f8").tofile(os.path.join(out, f"{case}.{key}.bin"))
            ins = ",".join(str(int(np.prod(a.shape[1:]))) for a in ref["xs"])
            tgs = ",".join(str(int(np.prod(a.shape[1:]))) for a in ref["ts"])
            lines.append(f"{case} {dtype} {B} {int(ref['w'] is not None)} {ins} {tgs} "
                         f"{CASES[name][3]}\n")
    for case, model in bad_models():
        write_fkb(spec_from_keras(model), os.path.join(out, case + ".fkb"))
    with open(os.path.join(out, "train_cases.txt"), "w") as f:
        f.writelines(lines)
    print(f"{len(lines)} training cases written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
