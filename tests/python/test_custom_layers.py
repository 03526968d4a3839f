"""Layer types of your own from Python (fkb.register_layer): a Keras layer class converts to a
registered `.fkb` layer type and back bit-exactly, its records are the ones the Fortran
example layer reads (examples/custom_layer/scale_shift.f90, run by
tests/fortran/test_custom_keras.f90), and with a Python forward the engine runs it.
Expected values come from Keras at test time."""

from __future__ import annotations

import importlib.util
import os
import threading

import numpy as np
import pytest

from conftest import ROOT, assert_close

import fkb
from fkb import FKBFormatError, LayerError, UnsupportedError

keras = pytest.importorskip("keras")
L = keras.layers

CASES = ["seq", "graph"]
DTYPES = ["float32", "float64"]


def _load_generator():
    path = os.path.join(ROOT, "tests", "data", "make_custom_cases.py")
    spec = importlib.util.spec_from_file_location("fkb_make_custom_cases", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gen():
    return _load_generator()


@pytest.fixture(autouse=True)
def clean_registry():
    yield
    for name in list(fkb.registered_layer_types()):
        fkb.unregister_layer(name)


def keras_y(model, x, dtype):
    return np.asarray(model(np.asarray(x, dtype=dtype), training=False), dtype=np.float64)


def rand_x(n, width=6, seed=0):
    return np.random.default_rng(seed).normal(0.0, 1.5, (n, width))


def weights_by_layer(model):
    return {layer.name: layer.get_weights() for layer in model.layers if layer.get_weights()}


# -- Keras <-> .fkb, no engine -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_round_trip_exact(gen, tmp_path, case, dtype):
    gen.register()
    model = gen.build(case, dtype)
    path = tmp_path / "m.fkb"
    fkb.convert(model, path)
    spec = fkb.read_fkb(path)
    ss = [layer for layer in spec.layers if layer.type == "scale_shift"]
    assert ss and all(list(layer.config) == ["a"] for layer in ss)
    assert all([n for n, _ in layer.tensors] == ["offset"] for layer in ss)
    back = fkb.to_keras(path)
    assert [type(layer).__name__ for layer in back.layers if "ScaleShift" in
            type(layer).__name__] == ["ScaleShift"] * len(ss)
    w0, w1 = weights_by_layer(model), weights_by_layer(back)
    assert list(w0) == list(w1)
    for name in w0:
        for a, b in zip(w0[name], w1[name]):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    for layer in model.layers:
        if isinstance(layer, gen.ScaleShift):
            assert back.get_layer(layer.name).a == layer.a
    x = rand_x(64)
    assert np.array_equal(keras_y(model, x, dtype), keras_y(back, x, dtype))
    # and again through the writer: the same bytes
    fkb.convert(back, tmp_path / "again.fkb")
    spec2 = fkb.read_fkb(tmp_path / "again.fkb")
    assert fkb._format.format_header(spec2).replace("sequential", "x") \
        .split("meta")[0] == fkb._format.format_header(spec).split("meta")[0]


def test_record_is_the_fortran_layers(gen):
    """`layer scale_shift name=... a=...` + `tensor offset DTYPE n`, as scale_shift.f90 reads."""
    from fkb._format import format_header
    from fkb._keras_reader import spec_from_keras

    gen.register()
    for dtype in DTYPES:
        header = format_header(spec_from_keras(gen.build("seq", dtype))).splitlines()
        i = next(k for k, line in enumerate(header) if line.startswith("layer scale_shift"))
        assert header[i] == "layer scale_shift name=scale a=-1.75"
        assert header[i + 1] == f"tensor offset {dtype} 5"


def test_keras_file_converts(gen, tmp_path):
    gen.register()
    model = gen.build("graph", "float32")
    model.save(tmp_path / "m.keras")
    fkb.convert(tmp_path / "m.keras", tmp_path / "from_file.fkb")
    fkb.convert(model, tmp_path / "live.fkb")
    a, b = fkb.read_fkb(tmp_path / "from_file.fkb"), fkb.read_fkb(tmp_path / "live.fkb")
    assert [(x.type, x.name, x.config) for x in a.layers] == \
        [(x.type, x.name, x.config) for x in b.layers]
    for la, lb in zip(a.layers, b.layers):
        for (na, ta), (nb, tb) in zip(la.tensors, lb.tensors):
            assert na == nb and ta.tobytes() == tb.tobytes()


def test_trainable_and_default_tensor_names(gen, tmp_path):
    """No tensor_names: w0, w1, ...; a frozen layer carries trainable=0."""
    fkb.register_layer(gen.ScaleShift, "scale_shift",
                       lambda layer: ({"a": layer.a}, [layer.offset.numpy()]),
                       gen.from_config_and_weights)
    model = gen.build("seq", "float32")
    model.get_layer("scale").trainable = False
    spec = fkb._keras_reader.spec_from_keras(model)
    layer = spec.layers[1]
    assert [n for n, _ in layer.tensors] == ["w0"] and layer.config["trainable"] is False
    assert "layer scale_shift name=scale a=-1.75 trainable=0" in \
        fkb._format.format_header(spec)
    back = fkb.to_keras(spec)
    assert back.get_layer("scale").trainable is False
    x = rand_x(8)
    assert np.array_equal(keras_y(model, x, "float32"), keras_y(back, x, "float32"))


def test_option_values_and_schema(gen, tmp_path):
    """Option kinds survive a file: by syntax without a schema, by kind with one."""
    from fkb._format import InputSpec, LayerSpec, ModelSpec, format_header, parse_header

    def spec_with(config):
        return ModelSpec("float32", None, [LayerSpec("my_layer", "m", config,
                                                     [("w", np.ones(3, "float32"))])],
                         inputs=[InputSpec("input", (3,))])

    config = {"a": 2, "b": 0.1, "c": "two words,=%", "d": [1, 2.5, "x y"], "e": True}
    fkb.register_layer(gen.ScaleShift, "my_layer", gen.to_config_and_weights,
                       gen.from_config_and_weights)
    text = format_header(spec_with(config))
    assert "layer my_layer name=m a=2 b=0.1 c=two%20words%2C%3D%25 d=1,2.5,x%20y e=1" in text
    got = parse_header(text)[0].layers[0].config
    assert got == {"a": 2, "b": 0.1, "c": "two words,=%", "d": [1, 2.5, "x y"], "e": 1}
    fkb.register_layer(gen.ScaleShift, "my_layer", gen.to_config_and_weights,
                       gen.from_config_and_weights,
                       options={"a": float, "b": "float", "c": str, "d": list, "e": bool})
    got = parse_header(text)[0].layers[0].config
    assert got == config and isinstance(got["a"], float)
    with pytest.raises(UnsupportedError, match="key 'f' is not known for a my_layer"):
        parse_header(text.replace(" e=1", " e=1 f=3"))
    with pytest.raises(FKBFormatError, match="e='2' is not 0 or 1"):
        parse_header(text.replace(" e=1", " e=2"))
    for bad in ({"a": float("nan")}, {"a": None}, {"a": ""}, {"a": []}, {"a": {"x": 1}}):
        with pytest.raises(FKBFormatError, match="cannot be written"):
            format_header(spec_with(bad))
    with pytest.raises(FKBFormatError, match="reserved"):
        format_header(spec_with({"inputs": 1}))


def test_output_shape(tmp_path):
    """A registered type that changes the shape (output_shape), converted, rebuilt and run."""

    class Twice(L.Layer):
        def call(self, x):
            return keras.ops.concatenate([x, 2.0 * x], axis=-1)

    def out_shape(config, shape):
        return shape[:-1] + (2 * shape[-1],)

    fkb.register_layer(Twice, "twice", lambda layer: ({}, []),
                       lambda c, w: Twice(**c), forward=lambda c, w, x: np.concatenate(
                           [x, 2 * x], axis=-1), output_shape=out_shape)
    model = keras.Sequential([keras.Input((4,)), L.Dense(3), Twice(name="tw"), L.Dense(2)])
    spec = fkb._keras_reader.spec_from_keras(model)
    assert spec.shapes()["tw"] == (6,)
    back = fkb.to_keras(spec)
    x = rand_x(9, 4)
    assert np.array_equal(keras_y(model, x, "float32"), keras_y(back, x, "float32"))
    net = fkb.from_keras(model)
    assert_close(net.predict(x.astype("float32")), keras_y(model, x, "float32"), "float32")
    fkb.register_layer(Twice, "twice", lambda layer: ({}, []), lambda c, w: Twice(**c))
    with pytest.raises(fkb.ShapeError, match="output_shape"):
        fkb._keras_reader.spec_from_keras(model)


# -- The engine runs the layer through Python ----------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_engine_forward(gen, tmp_path, case, dtype):
    gen.register(with_forward=True)
    model = gen.build(case, dtype)
    x = rand_x(256, seed=3)
    ref = keras_y(model, x, dtype)
    net = fkb.from_keras(model)
    for b in (1, 7, 256):
        assert_close(net.predict(x[:b].astype(dtype)), ref[:b], dtype, f"batch {b}")
    fkb.convert(model, tmp_path / "m.fkb")
    loaded = fkb.load(tmp_path / "m.fkb")
    y = loaded.predict(x.astype(dtype))
    assert_close(y, ref, dtype)
    # the engine saves the records as it read them; the saved file loads and runs the same
    loaded.save(tmp_path / "saved.fkb")
    assert open(tmp_path / "saved.fkb", "rb").read() == open(tmp_path / "m.fkb", "rb").read()
    assert np.array_equal(fkb.load(tmp_path / "saved.fkb").predict(x.astype(dtype)), y)
    back = fkb.to_keras(loaded)
    assert np.array_equal(keras_y(back, x, dtype), ref)


def test_engine_threads_and_ensemble(gen, tmp_path):
    gen.register(with_forward=True)
    model = gen.build("graph", "float64")
    x = rand_x(100, seed=5)
    ref = keras_y(model, x, "float64")
    net = fkb.from_keras(model)
    results = [None] * 6

    def work(k):
        results[k] = net.predict(x)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert_close(r, ref, "float64")
    fkb.convert(model, tmp_path / "a.fkb")
    fkb.convert(model, tmp_path / "b.fkb")
    ens = fkb.Ensemble([tmp_path / "a.fkb", tmp_path / "b.fkb"])
    assert_close(ens.predict(x), ref, "float64")


def test_forward_errors(gen):
    def forward(config, weights, x):
        if np.isnan(x).any():
            raise ValueError(f"{config['name']}: NaN in the input")
        if x.shape[0] == 3:
            return np.zeros((3, 2))
        return gen.forward(config, weights, x)

    fkb.register_layer(gen.ScaleShift, "scale_shift", gen.to_config_and_weights,
                       gen.from_config_and_weights, forward=forward)
    model = gen.build("seq", "float32")
    x = rand_x(5).astype("float32")
    net = fkb.from_keras(model)
    with pytest.raises(LayerError, match=r"'scale' \(scale_shift\): ValueError: scale: NaN in "
                                         "the input"):
        net.predict(np.full((4, 6), np.nan, "float32"))
    with pytest.raises(LayerError, match=r"forward returned an array of shape \(3, 2\), "
                                         r"expected \(3, 5\)"):
        net.predict(x[:3])
    assert_close(net.predict(x), keras_y(model, x, "float32"), "float32")  # still works
    with pytest.raises(fkb.FKBError):
        net.compile("sgd", "mse")  # no backward: not trainable


# -- Refusals --------------------------------------------------------------------------------------


def test_unregistered_class_refused(gen, tmp_path):
    model = gen.build("seq", "float32")
    with pytest.raises(UnsupportedError, match="'ScaleShift'.*fkb.register_layer"):
        fkb.from_keras(model)
    model.save(tmp_path / "m.keras")
    with pytest.raises(UnsupportedError, match="ScaleShift.*not supported"):
        fkb.convert(tmp_path / "m.keras", tmp_path / "m.fkb")


def test_registration_refusals(gen):
    args = (gen.to_config_and_weights, gen.from_config_and_weights)
    for name in ("dense", "lstm", "add"):
        with pytest.raises(UnsupportedError, match="built-in"):
            fkb.register_layer(gen.ScaleShift, name, *args)
    for name in ("Scale", "scale-shift", "", "a b"):
        with pytest.raises(UnsupportedError, match=r"\[a-z0-9_\]\+"):
            fkb.register_layer(gen.ScaleShift, name, *args)
    with pytest.raises(UnsupportedError, match="converted by FKB itself"):
        fkb.register_layer(L.Dense, "my_dense", *args)
    with pytest.raises(TypeError):
        fkb.register_layer(int, "my_int", *args)
    with pytest.raises(UnsupportedError, match="reserved"):
        fkb.register_layer(gen.ScaleShift, "scale_shift", *args, options={"name": str})
    assert fkb.registered_layer_types() == {}


def test_file_with_unregistered_type_refused(gen, tmp_path):
    gen.register()
    fkb.convert(gen.build("seq", "float64"), tmp_path / "m.fkb")
    fkb.unregister_layer("scale_shift")
    with pytest.raises(UnsupportedError, match="unknown layer type 'scale_shift'"):
        fkb.read_fkb(tmp_path / "m.fkb")
    with pytest.raises(UnsupportedError, match="unknown layer type 'scale_shift'"):
        fkb.to_keras(tmp_path / "m.fkb")
    gen.register()  # registered without forward: the engine cannot run the type (unknown to
    # it, or given to it earlier in this process with a forward that is gone now)
    with pytest.raises((UnsupportedError, FKBFormatError), match="scale_shift"):
        fkb.load(tmp_path / "m.fkb")


def test_bad_conversion_functions(gen):
    model = gen.build("seq", "float32")
    fkb.register_layer(gen.ScaleShift, "scale_shift", lambda layer: [1, 2, 3],
                       gen.from_config_and_weights)
    with pytest.raises(UnsupportedError, match="must return"):
        fkb.from_keras(model)
    fkb.register_layer(gen.ScaleShift, "scale_shift",
                       lambda layer: ({"a": 1.0, "tensor_names": ["x", "y"]}, [np.ones(5)]),
                       gen.from_config_and_weights)
    with pytest.raises(fkb.ShapeError, match="tensor_names"):
        fkb.from_keras(model)
    fkb.register_layer(gen.ScaleShift, "scale_shift",
                       lambda layer: ({"a": 1.0}, [np.full(5, 0.1, np.float64)]),
                       gen.from_config_and_weights)
    with pytest.raises(UnsupportedError, match="cannot hold exactly"):
        fkb.from_keras(model)
    fkb.register_layer(gen.ScaleShift, "scale_shift", gen.to_config_and_weights,
                       lambda c, w: "not a layer")
    spec = fkb._keras_reader.spec_from_keras(model)
    with pytest.raises(UnsupportedError, match="not a Keras layer"):
        fkb.to_keras(spec)
