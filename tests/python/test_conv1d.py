"""Format 1.2 one-dimensional layers: Conv1D (valid/same/causal, strides, dilation, groups),
pooling, up-sampling, zero padding, cropping. The ClimSim-like column case of make_cases and
single-layer models over many lengths; expected values from Keras at test time."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import check_engine, check_round_trip

from fkb import ShapeError, UnsupportedError
from fkb._format import InputSpec, LayerSpec, ModelSpec, format_header, parse_header

keras = pytest.importorskip("keras")
L = keras.layers

DTYPES = ["float32", "float64"]


def _single_layer_models():
    """(label, builder) of one-layer models whose output length depends on the padding rule."""
    out = []
    for t, k, s, pad in itertools.product((1, 4, 7), (1, 2, 3), (1, 2, 3),
                                          ("valid", "same", "causal")):
        if pad == "valid" and k > t:
            continue
        out.append((f"conv_t{t}_k{k}_s{s}_{pad}", lambda t=t, k=k, s=s, pad=pad: keras.Sequential(
            [keras.Input((t, 3)), L.Conv1D(2, k, strides=s, padding=pad, name="conv")])))
    for t, d, pad in itertools.product((5, 9), (2, 3), ("valid", "same", "causal")):
        if pad == "valid" and 2 * d + 1 > t:
            continue
        out.append((f"conv_t{t}_dil{d}_{pad}", lambda t=t, d=d, pad=pad: keras.Sequential(
            [keras.Input((t, 4)), L.Conv1D(6, 3, dilation_rate=d, padding=pad, groups=2,
                                           activation="elu", name="conv")])))
    for t, p, s, pad, kind in itertools.product((1, 5, 6), (2, 3), (1, 2),
                                                ("valid", "same"), ("Max", "Average")):
        if pad == "valid" and p > t:
            continue
        cls = getattr(L, f"{kind}Pooling1D")
        out.append((f"{kind.lower()}pool_t{t}_p{p}_s{s}_{pad}",
                    lambda t=t, p=p, s=s, pad=pad, cls=cls: keras.Sequential(
                        [keras.Input((t, 3)), cls(p, strides=s, padding=pad, name="pool")])))
    return out


SINGLE = _single_layer_models()


def _build(make_cases, builder, dtype, seed):
    return make_cases.make_model(builder, dtype, seed)


# -- pure Python: the shape rules are Keras' ----------------------------------------------------


def test_output_lengths_are_keras(make_cases):
    from fkb._keras_reader import spec_from_keras

    for i, (label, builder) in enumerate(SINGLE):
        model = _build(make_cases, builder, "float32", i)
        spec = spec_from_keras(model)
        assert spec.output_shapes() == [tuple(model.outputs[0].shape[1:])], label


def test_same_padding_is_tensorflow_rule():
    from fkb._format import same_padding

    for t, k, s in itertools.product(range(1, 12), range(1, 6), range(1, 5)):
        left, right = same_padding(t, k, s)
        out = -(-t // s)
        total = max((out - 1) * s + k - t, 0)
        assert (left, right) == (total // 2, total - total // 2)


# -- Keras round trip (no engine) --------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_column_round_trip_exact(make_cases, graph_case, dtype):
    _, model, xs, ys = graph_case(f"conv1d_column_{dtype}")
    check_round_trip(make_cases, model, xs, ys, dtype)


def test_single_layer_round_trip_exact(make_cases):
    from fkb._format import decode_fkb, encode_fkb
    from fkb._keras_reader import spec_from_keras
    from fkb._to_keras import spec_to_keras

    rng = np.random.default_rng(5)
    for i, (label, builder) in enumerate(SINGLE[::3]):
        model = _build(make_cases, builder, "float64", 100 + i)
        x = rng.normal(size=(4,) + tuple(model.inputs[0].shape[1:]))
        back = spec_to_keras(decode_fkb(encode_fkb(spec_from_keras(model))))
        assert np.array_equal(np.asarray(back(x)), np.asarray(model(x))), label


def test_column_conversion_records(graph_case):
    from fkb._keras_reader import spec_from_keras

    _, model, _, _ = graph_case("conv1d_column_float32")
    spec = spec_from_keras(model)
    by_name = {layer.name: layer for layer in spec.layers}
    c = by_name["c_causal"].config
    assert (c["padding"], c["dilation_rate"], c["activation"]) == ("causal", 2, "gelu")
    c = by_name["c_stride_same"].config
    assert (c["padding"], c["strides"], c["kernel_size"]) == ("same", 2, 4)
    assert by_name["c_groups"].config["groups"] == 4
    assert dict(by_name["c_groups"].tensors)["kernel"].shape == (3, 3, 12)
    assert by_name["crop"].config == {"left": 3, "right": 1}
    assert by_name["pad2"].config == {"left": 2, "right": 2}
    assert by_name["max_valid"].config == {"pool_size": 2, "strides": 2, "padding": "valid"}
    assert spec.output_shapes() == [(60, 3), (2,)]


# -- bad files and refusals --------------------------------------------------------------------


def conv_spec(t: int = 6, k: int = 3, padding: str = "valid", groups: int = 1, ch: int = 4,
              dilation: int = 1) -> ModelSpec:
    return ModelSpec(
        "float32", None, inputs=[InputSpec("x", (t, ch))],
        layers=[LayerSpec("conv1d", "conv", {
            "filters": 4, "kernel_size": k, "strides": 1, "padding": padding,
            "dilation_rate": dilation, "groups": groups, "activation": "linear",
            "use_bias": False}, [("kernel", np.zeros((k, ch // groups, 4), "f4"))])])


def test_kernel_wider_than_input():
    with pytest.raises(ShapeError, match="'conv'.*wider than the input of 2 steps"):
        format_header(conv_spec(t=2, k=3))
    with pytest.raises(ShapeError, match="'conv'.*wider"):
        format_header(conv_spec(t=4, k=3, dilation=2))
    for padding in ("same", "causal"):  # padded: never too narrow
        parse_header(format_header(conv_spec(t=2, k=3, padding=padding)))
    text = format_header(conv_spec(t=6, k=3)).replace("input 6,4", "input 2,4")
    with pytest.raises(ShapeError, match="'conv'.*wider"):
        parse_header(text)


@pytest.mark.parametrize(
    "old,new,error,match",
    [
        ("groups=1", "groups=3", ShapeError, "'conv'.*groups=3"),
        ("padding=valid", "padding=full", UnsupportedError, "'conv'.*padding='full'"),
        ("input 6,4 name=x", "input 24 name=x", ShapeError, "'conv'.*2-d"),
        ("kernel_size=3", "kernel_size=0", Exception, "'conv'.*kernel_size"),
    ],
)
def test_bad_conv_headers(old, new, error, match):
    text = format_header(conv_spec())
    assert old in text
    with pytest.raises(error, match=match):
        parse_header(text.replace(old, new))


@pytest.mark.parametrize(
    "layer,shape,match",
    [
        (LayerSpec("max_pooling1d", "pool", {"pool_size": 5, "strides": 1,
                                             "padding": "valid"}), (4, 2), "'pool'.*pool_size 5"),
        (LayerSpec("cropping1d", "crop", {"left": 2, "right": 2}), (4, 2), "'crop'.*no step"),
        (LayerSpec("up_sampling1d", "up", {"size": 2}), (4,), "'up'.*2-d"),
        (LayerSpec("global_average_pooling1d", "gap", {"keepdims": False}), (2, 3, 4),
         "'gap'.*2-d"),
        (LayerSpec("average_pooling1d", "pool", {"pool_size": 2, "strides": 1,
                                                 "padding": "causal"}), (4, 2), "'pool'.*causal"),
    ],
)
def test_bad_1d_layers(layer, shape, match):
    spec = ModelSpec("float64", None, [layer], inputs=[InputSpec("x", shape)])
    with pytest.raises((ShapeError, UnsupportedError), match=match):
        spec.validate()


def test_converter_refusals():
    from fkb._keras_reader import spec_from_keras

    for layer, match in [
        (L.Conv1D(2, 3, data_format="channels_first", name="cf"), "'cf'.*channels_first"),
        (L.MaxPooling1D(2, data_format="channels_first", name="pcf"), "'pcf'.*channels_first"),
        (L.GlobalAveragePooling1D(data_format="channels_first", name="gcf"),
         "'gcf'.*channels_first"),
    ]:
        model = keras.Sequential([keras.Input((8, 4)), layer])
        with pytest.raises(UnsupportedError, match=match):
            spec_from_keras(model)


# -- the engine --------------------------------------------------------------------------------


@pytest.mark.engine
@pytest.mark.parametrize("dtype", DTYPES)
def test_engine_column_agrees_with_keras(graph_case, dtype):
    pytest.importorskip("fkb._core")
    import fkb

    _, model, xs, ys = graph_case(f"conv1d_column_{dtype}")
    check_engine(fkb.from_keras(model), xs, ys, dtype)


@pytest.mark.engine
@pytest.mark.parametrize("dtype", DTYPES)
def test_engine_single_layers_agree_with_keras(make_cases, dtype):
    pytest.importorskip("fkb._core")
    import fkb

    rng = np.random.default_rng(11)
    for i, (label, builder) in enumerate(SINGLE):
        model = _build(make_cases, builder, dtype, 1000 + i)
        xs = [rng.normal(size=(7,) + tuple(model.inputs[0].shape[1:]))]
        ys = make_cases.keras_predict_multi(model, xs)
        try:
            check_engine(fkb.from_keras(model), xs, ys, dtype, batches=(1, 7))
        except AssertionError as e:
            raise AssertionError(f"{label}: {e}") from None
