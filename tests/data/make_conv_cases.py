#!/usr/bin/env python3
"""Keras reference cases of the 1-D layers (Conv1D, pooling, up-sampling, padding, cropping,
Reshape, Permute, RepeatVector) for tests/fortran/test_conv_layers.f90.

Usage: make_conv_cases.py OUTDIR

Every option combination gets its own small Keras 3 model with random weights (fixed seeds),
in float32 and float64: Conv1D over padding (valid, same, causal) x strides x dilation x
groups (Keras refuses strides > 1 together with dilation > 1), kernels wider than the input
where the padding allows it, pointwise and depthwise convolutions, every activation kind; the
pooling layers over valid/same, pool sizes and strides (also windows wider than the input with
`same`); and a few chains mixing them. The `.fkb` files are written by the pure-Python writer
(fkb._format.write_fkb) from specs this script builds itself from each Keras layer's config
and weights (so the cases do not depend on the converter), and for every case

    OUTDIR/<name>.fkb    the model
    OUTDIR/<name>.x.bin  float64 little-endian, C order (256, n_in): random normal inputs
    OUTDIR/<name>.y.bin  float64 little-endian, C order (256, n_out): Keras' outputs

and OUTDIR/cases.txt with one line per case: `name dtype n_in n_out 256`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.join(HERE, os.pardir, os.pardir, "python")
if os.path.isdir(os.path.join(PYTHON_DIR, "fkb")) and "fkb" not in sys.modules:
    sys.path.insert(0, os.path.abspath(PYTHON_DIR))

import numpy as np  # noqa: E402

N_SAMPLES = 256
SEED = 4711

CONV_ACTIVATIONS = ["linear", "relu", "tanh", "gelu", "silu", "leaky_relu", "elu", "sigmoid",
                    "softmax", "softplus"]


def conv_cases() -> list[tuple[str, tuple, list]]:
    """[(name, input shape, [(layer class name, kwargs)])]: one model per case."""
    cases = []
    i = 0
    for padding in ("valid", "same", "causal"):
        for k, s, d in [(3, 1, 1), (3, 2, 1), (4, 3, 1), (3, 1, 2), (2, 1, 3), (5, 2, 1)]:
            for g in (1, 2):
                act = CONV_ACTIVATIONS[i % len(CONV_ACTIVATIONS)]
                i += 1
                cases.append((f"conv_{padding}_k{k}_s{s}_d{d}_g{g}", (13, 4), [
                    ("Conv1D", dict(filters=6, kernel_size=k, strides=s, dilation_rate=d,
                                    groups=g, padding=padding, activation=act,
                                    use_bias=i % 5 != 0))]))
    more = [
        ("conv_pointwise", (9, 5), dict(filters=7, kernel_size=1)),
        ("conv_pointwise_nobias", (9, 5), dict(filters=3, kernel_size=1, use_bias=False,
                                                activation="relu")),
        ("conv_pointwise_s2", (9, 5), dict(filters=3, kernel_size=1, strides=2)),
        ("conv_pointwise_g5", (9, 5), dict(filters=10, kernel_size=1, groups=5)),
        ("conv_groups4", (10, 8), dict(filters=4, kernel_size=3, groups=4, padding="same")),
        ("conv_depthwise", (10, 4), dict(filters=8, kernel_size=3, groups=4, padding="causal",
                                         dilation_rate=2, activation="tanh")),
        ("conv_same_wide", (3, 2), dict(filters=4, kernel_size=5, padding="same")),
        ("conv_same_wide_s2", (3, 2), dict(filters=4, kernel_size=6, strides=2,
                                           padding="same")),
        ("conv_causal_wide", (3, 2), dict(filters=4, kernel_size=3, dilation_rate=2,
                                          padding="causal")),
        ("conv_valid_full", (5, 3), dict(filters=2, kernel_size=5)),
        ("conv_one_step", (1, 3), dict(filters=2, kernel_size=3, padding="same")),
        ("conv_stride_big", (13, 3), dict(filters=2, kernel_size=2, strides=7)),
        ("conv_log_softmax", (8, 3), dict(filters=5, kernel_size=3, activation="log_softmax")),
        ("conv_relu6", (8, 3), dict(filters=5, kernel_size=3, padding="same",
                                    activation="relu6")),
    ]
    for name, shape, kw in more:
        cases.append((name, shape, [("Conv1D", kw)]))
    return cases


def pool_cases() -> list[tuple[str, tuple, list]]:
    cases = []
    for kind in ("MaxPooling1D", "AveragePooling1D"):
        short = "max" if kind.startswith("Max") else "avg"
        for padding in ("valid", "same"):
            for p, s in [(2, 2), (3, 1), (3, 2), (4, 3), (5, 2), (1, 1)]:
                cases.append((f"{short}pool_{padding}_p{p}_s{s}", (13, 3),
                              [(kind, dict(pool_size=p, strides=s, padding=padding))]))
        cases.append((f"{short}pool_same_wide", (3, 2),
                      [(kind, dict(pool_size=5, strides=1, padding="same"))]))
        cases.append((f"{short}pool_same_wide_s4", (3, 2),
                      [(kind, dict(pool_size=5, strides=4, padding="same"))]))
        cases.append((f"{short}pool_valid_full", (4, 2),
                      [(kind, dict(pool_size=4, padding="valid"))]))
    for kind in ("GlobalMaxPooling1D", "GlobalAveragePooling1D"):
        short = "gmax" if "Max" in kind else "gavg"
        for keep in (False, True):
            cases.append((f"{short}pool{'_keep' if keep else ''}", (13, 3),
                          [(kind, dict(keepdims=keep))]))
        cases.append((f"{short}pool_one_step", (1, 3), [(kind, {})]))
    return cases


def shape_cases() -> list[tuple[str, tuple, list]]:
    return [
        ("up_1", (5, 3), [("UpSampling1D", dict(size=1))]),
        ("up_3", (5, 3), [("UpSampling1D", dict(size=3))]),
        ("zpad_0_2", (5, 3), [("ZeroPadding1D", dict(padding=(0, 2)))]),
        ("zpad_3_1", (5, 3), [("ZeroPadding1D", dict(padding=(3, 1)))]),
        ("zpad_0_0", (5, 3), [("ZeroPadding1D", dict(padding=0))]),
        ("crop_1_0", (6, 3), [("Cropping1D", dict(cropping=(1, 0)))]),
        ("crop_2_3", (6, 3), [("Cropping1D", dict(cropping=(2, 3)))]),
        ("crop_0_5", (6, 3), [("Cropping1D", dict(cropping=(0, 5)))]),
        ("reshape_2d", (13, 4), [("Reshape", dict(target_shape=(4, 13)))]),
        ("reshape_flat", (13, 4), [("Reshape", dict(target_shape=(-1,)))]),
        ("reshape_3d", (12, 2), [("Reshape", dict(target_shape=(2, 3, 4)))]),
        ("permute_21", (13, 4), [("Permute", dict(dims=(2, 1)))]),
        ("permute_1", (7,), [("Permute", dict(dims=(1,)))]),
        ("permute_312", (2, 3, 4), [("Permute", dict(dims=(3, 1, 2)))]),
        ("permute_231", (2, 3, 4), [("Permute", dict(dims=(2, 3, 1)))]),
        ("permute_4d", (2, 3, 2, 3), [("Permute", dict(dims=(4, 2, 1, 3)))]),
        ("repeat_3", (5,), [("RepeatVector", dict(n=3))]),
        ("repeat_1", (5,), [("RepeatVector", dict(n=1))]),
    ]


def chain_cases() -> list[tuple[str, tuple, list]]:
    return [
        ("chain_column", (20, 3), [
            ("Conv1D", dict(filters=8, kernel_size=3, padding="same", activation="relu")),
            ("MaxPooling1D", dict(pool_size=2)),
            ("Conv1D", dict(filters=8, kernel_size=3, padding="causal", groups=2,
                            dilation_rate=2, activation="tanh")),
            ("UpSampling1D", dict(size=2)),
            ("Cropping1D", dict(cropping=(1, 2))),
            ("ZeroPadding1D", dict(padding=(2, 1))),
            ("AveragePooling1D", dict(pool_size=3, strides=2, padding="same")),
            ("Conv1D", dict(filters=4, kernel_size=1)),
            ("GlobalAveragePooling1D", {}),
            ("Dense", dict(units=3)),
        ]),
        ("chain_permute", (12,), [
            ("Reshape", dict(target_shape=(3, 4))),
            ("Permute", dict(dims=(2, 1))),
            ("Conv1D", dict(filters=5, kernel_size=2, strides=2, padding="same",
                            activation="silu")),
            ("Permute", dict(dims=(2, 1))),
            ("Conv1D", dict(filters=3, kernel_size=2)),
            ("Flatten", {}),
            ("RepeatVector", dict(n=4)),
            ("Conv1D", dict(filters=2, kernel_size=3, padding="same")),
            ("GlobalMaxPooling1D", dict(keepdims=True)),
            ("Reshape", dict(target_shape=(-1,))),
        ]),
        ("chain_dense_steps", (6, 4), [
            ("Conv1D", dict(filters=6, kernel_size=3, padding="valid", activation="elu")),
            ("Dense", dict(units=5, activation="relu")),
            ("Conv1D", dict(filters=4, kernel_size=2, padding="same", use_bias=False)),
            ("Flatten", {}),
            ("Dense", dict(units=2)),
        ]),
    ]


def all_cases() -> list[tuple[str, tuple, list]]:
    return conv_cases() + pool_cases() + shape_cases() + chain_cases()


# ---- Keras model -> ModelSpec (independent of the converter) ----

def _activation(name: str) -> tuple[str, dict]:
    """(fkb activation name, extra config) of a Keras activation given by name."""
    if name == "swish":
        name = "silu"
    extra = {"alpha": 0.2} if name == "leaky_relu" else {"alpha": 1.0} if name == "elu" else {}
    return name, extra


def layer_spec(layer: Any, out_shape: tuple) -> Any:
    """The fkb LayerSpec of one Keras layer (only the types these cases use)."""
    from fkb._format import LayerSpec

    c = layer.get_config()
    kind = type(layer).__name__
    weights = [np.asarray(w) for w in layer.get_weights()]
    name = layer.name
    if kind == "Conv1D":
        act, extra = _activation(c["activation"])
        cfg = dict(filters=c["filters"], kernel_size=c["kernel_size"][0],
                   strides=c["strides"][0], padding=c["padding"],
                   dilation_rate=c["dilation_rate"][0], groups=c["groups"], activation=act,
                   **extra, use_bias=bool(c["use_bias"]))
        tensors = [("kernel", weights[0])] + ([("bias", weights[1])] if c["use_bias"] else [])
        return LayerSpec("conv1d", name, cfg, tensors)
    if kind == "Dense":
        act, extra = _activation(c["activation"])
        cfg = dict(units=c["units"], activation=act, **extra, use_bias=bool(c["use_bias"]))
        tensors = [("kernel", weights[0])] + ([("bias", weights[1])] if c["use_bias"] else [])
        return LayerSpec("dense", name, cfg, tensors)
    if kind in ("MaxPooling1D", "AveragePooling1D"):
        t = "max_pooling1d" if kind.startswith("Max") else "average_pooling1d"
        return LayerSpec(t, name, dict(pool_size=c["pool_size"][0], strides=c["strides"][0],
                                       padding=c["padding"]))
    if kind in ("GlobalMaxPooling1D", "GlobalAveragePooling1D"):
        t = "global_max_pooling1d" if "Max" in kind else "global_average_pooling1d"
        return LayerSpec(t, name, dict(keepdims=bool(c["keepdims"])))
    if kind == "UpSampling1D":
        return LayerSpec("up_sampling1d", name, dict(size=int(c["size"])))
    if kind == "ZeroPadding1D":
        left, right = c["padding"]
        return LayerSpec("zero_padding1d", name, dict(left=int(left), right=int(right)))
    if kind == "Cropping1D":
        left, right = c["cropping"]
        return LayerSpec("cropping1d", name, dict(left=int(left), right=int(right)))
    if kind == "Reshape":
        return LayerSpec("reshape", name, dict(target_shape=[int(d) for d in out_shape]))
    if kind == "Permute":
        return LayerSpec("permute", name, dict(dims=[int(d) for d in c["dims"]]))
    if kind == "RepeatVector":
        return LayerSpec("repeat_vector", name, dict(n=int(c["n"])))
    if kind == "Flatten":
        return LayerSpec("flatten", name, {})
    raise ValueError(f"no spec for {kind}")


def _randomise(model: Any, rng: np.random.Generator) -> None:
    for layer in model.layers:
        new = []
        for w in layer.weights:
            shape = tuple(w.shape)
            if w.path.endswith("kernel"):
                v = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
            else:
                v = rng.normal(0.0, 0.3, shape)
            new.append(v.astype(w.dtype))
        if new:
            layer.set_weights(new)


def build(shape: tuple, layers: list, dtype: str, seed: int) -> Any:
    import keras

    old_floatx, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input(shape)] + [
            getattr(keras.layers, kind)(**kw, name=f"{kind.lower()}_{j}")
            for j, (kind, kw) in enumerate(layers)])
    finally:
        keras.config.set_floatx(old_floatx)
        keras.config.set_dtype_policy(old_policy)
    _randomise(model, np.random.default_rng(seed))
    return model


def spec_of(model: Any, dtype: str) -> Any:
    from fkb._format import InputSpec, ModelSpec

    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    layers = [layer_spec(layer, tuple(int(d) for d in layer.output.shape[1:]))
              for layer in model.layers]
    return ModelSpec(dtype, None, layers, inputs=[InputSpec("input", shape)])


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    from fkb._format import write_fkb
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing warnings of the grouped (XLA) convolutions
    lines = []
    for i, (name, shape, layers) in enumerate(all_cases()):
        for j, dtype in enumerate(("float32", "float64")):
            seed = SEED + 10 * i + j
            model = build(shape, layers, dtype, seed)
            spec = spec_of(model, dtype)
            rng = np.random.default_rng(seed)
            x = rng.normal(size=(N_SAMPLES,) + tuple(shape))
            y = np.asarray(model(x.astype(dtype), training=False), dtype=np.float64)
            case = f"{name}_{dtype}"
            if tuple(y.shape[1:]) != spec.output_shapes()[0]:
                raise RuntimeError(f"{case}: Keras output shape {y.shape[1:]}, spec "
                                   f"{spec.output_shapes()[0]}")
            write_fkb(spec, os.path.join(out, case + ".fkb"))
            x.reshape(N_SAMPLES, -1).astype("<f8").tofile(os.path.join(out, case + ".x.bin"))
            y.reshape(N_SAMPLES, -1).astype("<f8").tofile(os.path.join(out, case + ".y.bin"))
            lines.append(f"{case} {dtype} {spec.n_inputs} {spec.n_outputs} {N_SAMPLES}\n")
    with open(os.path.join(out, "cases.txt"), "w") as f:
        f.writelines(lines)
    print(f"{len(lines)} cases written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
