"""Keras 3 -> ModelSpec -> Keras 3, files, and every refusal (no engine needed)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from fkb import FKBFileError, FKBFormatError, UnsupportedError  # noqa: E402
from fkb._format import decode_fkb, encode_fkb, format_header  # noqa: E402
from fkb._keras_reader import spec_from_keras, spec_from_path  # noqa: E402
from fkb._to_keras import spec_to_keras  # noqa: E402

L = keras.layers


def _header_without(spec, *keys):
    s = decode_fkb(encode_fkb(spec))
    for k in keys:
        s.metadata.pop(k, None)
    return format_header(s)


def test_cases_cover_every_layer_type_and_activation(cases, make_cases):
    from fkb._format import ACTIVATIONS, LAYER_TYPES

    types, acts = set(), set()
    graph_cases = list(make_cases.iter_graph_cases(("float32",)))
    for _, _, m in list(cases) + graph_cases:
        for layer in spec_from_keras(m).layers:
            types.add(layer.type)
            if "activation" in layer.config:
                acts.add(layer.config["activation"])
    assert types == set(LAYER_TYPES)
    assert acts == set(ACTIVATIONS)


def test_round_trip_is_bit_exact(cases, case_inputs, keras_outputs):
    """to_keras(from_keras(m)) predicts exactly what m predicts (through the file bytes)."""
    for name, dtype, model in cases:
        spec = decode_fkb(encode_fkb(spec_from_keras(model)))
        assert spec.dtype == dtype, name
        rebuilt = spec_to_keras(spec)
        x = case_inputs[name].astype(dtype)
        y = np.asarray(rebuilt(x, training=False), dtype=np.float64)
        assert np.array_equal(y, keras_outputs[name], equal_nan=True), name
        if name.startswith("normalization_given"):
            continue  # constructor mean/variance are config, not weights, in the original
        # Weights identical too (Normalization's count aside).
        a = [w for w in model.get_weights() if np.size(w) > 1 or np.ndim(w)]
        b = [w for w in rebuilt.get_weights() if np.size(w) > 1 or np.ndim(w)]
        assert len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b)), name


def test_round_trip_through_predict(cases, case_inputs):
    """Also through model.predict (compiled graph), for a few cases."""
    for name, dtype, model in cases[:6]:
        rebuilt = spec_to_keras(spec_from_keras(model))
        x = case_inputs[name].astype(dtype)
        assert np.array_equal(model.predict(x, verbose=0), rebuilt.predict(x, verbose=0)), name


def test_keras_and_h5_files(tmp_path, cases):
    picked = [c for c in cases if c[0].startswith(
        ("functional_chain", "normalization_given", "dense_gelu_tanh", "dense_leaky_alpha",
         "batch_normalization_float64"))]
    assert len(picked) >= 5
    for name, _, model in picked:
        live = _header_without(spec_from_keras(model), "source")
        for ext in (".keras", ".h5"):
            path = tmp_path / (name + ext)
            model.save(path)
            spec = spec_from_path(path)
            assert spec.metadata["source"] == str(path)
            assert _header_without(spec, "source") == live, (name, ext)


def test_exported_keras_file_reloads_exactly(tmp_path, cases, case_inputs, keras_outputs):
    """A rebuilt model with FKB's registered objects saves and loads in safe mode."""
    for name, dtype, model in cases:
        if not name.startswith(("dense_gelu_tanh", "dense_leaky_alpha", "activation_layers",
                                "normalization_float64")):
            continue
        path = tmp_path / (name + ".keras")
        spec_to_keras(spec_from_keras(model)).save(path)
        again = keras.saving.load_model(path, safe_mode=True)
        y = np.asarray(again(case_inputs[name].astype(dtype)), dtype=np.float64)
        assert np.array_equal(y, keras_outputs[name]), name


def test_metadata_and_training_config():
    model = keras.Sequential([keras.Input((3,)), L.Dense(2)], name="my_net")
    spec = spec_from_keras(model)
    assert spec.metadata["name"] == "my_net"
    assert spec.metadata["keras_version"] == keras.__version__
    assert "training_config" not in spec.metadata
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.0025), loss="mse")
    cfg = json.loads(spec_from_keras(model).metadata["training_config"])
    assert cfg["loss"] == "mse"
    assert cfg["optimizer"]["config"]["learning_rate"] == pytest.approx(0.0025)


def test_float64_by_layer_dtype():
    model = keras.Sequential([keras.Input((3,), dtype="float64"),
                              L.Dense(2, dtype="float64", activation="tanh"),
                              L.Softmax(dtype="float64")])
    spec = spec_from_keras(model)
    assert spec.dtype == "float64"
    assert all(t.dtype == np.float64 for l in spec.layers for _, t in l.tensors)


# -- refusals --------------------------------------------------------------------------------


def _seq(*layers, n=4):
    return keras.Sequential([keras.Input((n,))] + list(layers))


class MyDense(L.Dense):
    pass


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: _seq(L.Dense(3), L.Lambda(lambda t: t * 2, name="doubler")),
         "'doubler' is a Lambda"),
        (lambda: keras.Sequential([keras.Input((4, 4, 1)), L.Conv2D(2, 2, name="conv2")]),
         "'conv2'.*Conv2D"),
        (lambda: _seq(MyDense(3, name="mine")), "'mine'.*MyDense"),
        (lambda: _seq(L.Dense(3, activation=lambda t: t * 3, name="d")), "'d'.*activation"),
        (lambda: _seq(L.Dense(3, activation="hard_tanh", name="d")), "'d'.*hard_tanh"),
        (lambda: _seq(L.Dense(3, activation="celu", name="d")), "celu"),
        (lambda: _seq(L.Dense(3, dtype="mixed_float16", name="half")),
         "'half'.*mixed_float16"),
        (lambda: _seq(L.Dense(3, dtype="bfloat16", name="bf")), "'bf'.*bfloat16"),
        (lambda: _seq(L.Dense(3, name="a"), L.Dense(2, dtype="float64", name="b")),
         "'b'.*float64"),
        (lambda: _seq(L.LayerNormalization(rms_scaling=True, name="ln")), "'ln'.*rms_scaling"),
        (lambda: _seq(L.PReLU(shared_axes=[1], name="pr")), "'pr'.*shared_axes"),
        (lambda: _seq(L.BatchNormalization(renorm=True, name="bn")), "'bn'.*renorm"),
        (lambda: keras.Sequential([keras.Input((None, 3)), L.Dense(2)]),
         "dimension but the batch"),
        (lambda: keras.Sequential([L.Dense(2)]), "not built"),
    ],
)
def test_unsupported_live(build, match):
    with pytest.raises(UnsupportedError, match=match):
        spec_from_keras(build())


def test_unsupported_graphs():
    a = keras.Input((4,))
    x = L.Dense(4)(a)
    y = L.Dropout(0.5, name="mc")(x, training=True)
    with pytest.raises(UnsupportedError, match="'mc'.*training"):
        spec_from_keras(keras.Model(a, y))
    y = keras.ops.exp(x)
    with pytest.raises(UnsupportedError, match="not a layer"):
        spec_from_keras(keras.Model(a, y))

    class Sub(keras.Model):
        def call(self, t):
            return t

    with pytest.raises(UnsupportedError, match="subclassed"):
        spec_from_keras(Sub())


def test_normalization_axis_refused():
    norm = L.Normalization(axis=None, name="norm_all")
    with pytest.raises(UnsupportedError, match="'norm_all'.*axis"):
        spec_from_keras(_seq(norm))


def test_lambda_in_keras_file_is_refused_before_loading(tmp_path):
    model = _seq(L.Dense(3), L.Lambda(lambda t: t + 1, name="plus_one"))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(UnsupportedError, match="'plus_one' is a Lambda"):
        spec_from_path(path)
    path = tmp_path / "lambda.h5"
    model.save(path)
    with pytest.raises(UnsupportedError, match="'plus_one' is a Lambda"):
        spec_from_path(path)


def test_bad_files(tmp_path):
    with pytest.raises(FKBFileError):
        spec_from_path(tmp_path / "missing.keras")
    text = tmp_path / "notes.keras"
    text.write_text("this is not a model\n")
    with pytest.raises(FKBFormatError, match="not a Keras model"):
        spec_from_path(text)
    model = _seq(L.Dense(3))
    good = tmp_path / "m.h5"
    model.save(good)
    data = good.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FKBFormatError, match="HDF5"):
        spec_from_path(cut)
    good = tmp_path / "m.keras"
    model.save(good)
    data = good.read_bytes()
    cut = tmp_path / "cut.keras"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FKBFormatError, match=".keras"):
        spec_from_path(cut)
    weights = tmp_path / "only.weights.h5"
    model.save_weights(weights)
    with pytest.raises(FKBFormatError, match="weights only"):
        spec_from_path(weights)
    # A zip that is not a Keras archive.
    z = tmp_path / "other.keras"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("hello.txt", "hi")
    with pytest.raises(FKBFormatError):
        spec_from_path(z)
