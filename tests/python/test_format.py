"""The pure-Python `.fkb` reader and writer (docs/format.md), good and bad input."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from fkb import (
    FKBFileError,
    FKBFormatError,
    FKBVersionError,
    LayerSpec,
    ModelSpec,
    ShapeError,
    UnsupportedError,
    read_fkb,
    write_fkb,
)
from fkb._format import (
    LAYER_TYPES,
    MAGIC,
    decode_fkb,
    encode_fkb,
    format_header,
    parse_header,
    percent_decode,
    percent_encode,
)


def small_spec(dtype: str = "float32") -> ModelSpec:
    rng = np.random.default_rng(0)
    return ModelSpec(
        dtype=dtype,
        n_inputs=3,
        layers=[
            LayerSpec("dense", "dense 1", {"units": 4, "activation": "leaky_relu", "alpha": 0.3,
                                           "use_bias": True},
                      [("kernel", rng.normal(size=(3, 4)).astype(dtype)),
                       ("bias", rng.normal(size=4).astype(dtype))]),
            LayerSpec("batch_normalization", "bn", {"epsilon": 0.001, "center": False,
                                                    "scale": True},
                      [("gamma", np.full(4, 1.5, dtype)), ("moving_mean", np.zeros(4, dtype)),
                       ("moving_variance", np.ones(4, dtype))]),
            LayerSpec("relu", "r", {"max_value": None, "negative_slope": 0.0,
                                    "threshold": 0.25}),
            LayerSpec("dense", "out", {"units": 2, "activation": "softmax", "use_bias": False},
                      [("kernel", rng.normal(size=(4, 2)).astype(dtype))]),
        ],
        metadata={"name": "a model, 100% =test=\n", "keras_version": "3.15.1"},
    )


def header_bytes(data: bytes) -> tuple[int, bytes]:
    (hlen,) = struct.unpack_from("<Q", data, 16)
    return hlen, data[24:24 + hlen]


def with_header(data: bytes, new_header: bytes) -> bytes:
    hlen, _ = header_bytes(data)
    return data[:16] + struct.pack("<Q", len(new_header)) + new_header + data[24 + hlen:]


def edit_header(data: bytes, old: bytes, new: bytes) -> bytes:
    _, h = header_bytes(data)
    assert old in h
    return with_header(data, h.replace(old, new, 1))


# -- good input ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_bit_exact(tmp_path, dtype):
    spec = small_spec(dtype)
    path = tmp_path / "m.fkb"
    write_fkb(spec, path)
    back = read_fkb(path)
    assert back.dtype == dtype and back.n_inputs == 3 and back.n_outputs == 2
    assert back.metadata == spec.metadata
    for a, b in zip(spec.layers, back.layers):
        assert (a.type, a.name, a.config) == (b.type, b.name, b.config)
        for (na, ta), (nb, tb) in zip(a.tensors, b.tensors):
            assert na == nb and ta.dtype == tb.dtype and ta.tobytes() == tb.tobytes()
    assert encode_fkb(back) == path.read_bytes()


def test_layout_matches_spec():
    spec = small_spec()
    data = encode_fkb(spec)
    assert data[:8] == MAGIC == b"\x89FKB\r\n\x1a\n"
    assert struct.unpack_from("<II", data, 8) == (1, 1)  # 1.1: training records allowed
    hlen, header = header_bytes(data)
    text = header.decode()
    assert text.startswith("fkb-model\ndtype float32\ninput 3\n") and text.endswith("\nend\n")
    assert "layer dense name=dense%201 units=4 activation=leaky_relu alpha=0.3 use_bias=1\n" \
        in text
    assert "tensor kernel float32 3,4\n" in text
    assert "layer relu name=r max_value=none negative_slope=0.0 threshold=0.25\n" in text
    assert "meta name a%20model%2C%20100%25%20%3Dtest%3D%0A\n" in text
    # Tensor data: exactly Keras' kernel.tobytes() (C order, little-endian), no padding.
    kernel = spec.layers[0].tensors[0][1]
    assert data[24 + hlen:24 + hlen + kernel.nbytes] == kernel.astype("<f4").tobytes()
    total = sum(t.nbytes for layer in spec.layers for _, t in layer.tensors)
    assert len(data) == 24 + hlen + total


def test_percent_encoding():
    s = "% =\t\n\r,\x01\x7fé/ok"
    enc = percent_encode(s)
    assert enc == "%25%20%3D%09%0A%0D%2C%01%7Fé/ok"
    assert percent_decode(enc.encode()) == s
    assert percent_decode(b"%2c%3d") == ",="  # lower-case hex is read too
    for bad in (b"%", b"%4", b"%GG", b"a=b", b"a,b"):
        with pytest.raises(FKBFormatError):
            percent_decode(bad)


def test_every_layer_type_has_a_round_trip(tmp_path):
    """One spec with each 1.0 layer type of the table (and every activation) survives a file
    (the 1.2 types: tests/python/test_graphs.py)."""
    from fkb._format import V1_LAYER_TYPES

    n = 5
    layers = []
    for ltype, lt in LAYER_TYPES.items():
        if ltype not in V1_LAYER_TYPES:
            continue
        config = {}
        for key, kind, required in lt.keys:
            if not required:
                continue
            config[key] = {"int": 5, "float": 0.125, "bool": True, "activation": "tanh",
                           "float_or_none": 6.0}[kind]
        if ltype == "dropout":
            config["rate"] = 0.5
        tensors = [(name, np.arange(np.prod(shape), dtype="f8").reshape(shape))
                   for name, shape in lt.tensors(config, n)]
        layers.append(LayerSpec(ltype, f"l_{ltype}", config, tensors))
    from fkb._format import ACTIVATIONS

    for act in sorted(ACTIVATIONS):
        cfg = {"activation": act}
        if act in ("leaky_relu", "elu"):
            cfg["alpha"] = 0.1
        layers.append(LayerSpec("activation", f"act_{act}", cfg))
    spec = ModelSpec("float64", n, layers)
    write_fkb(spec, tmp_path / "all.fkb")
    back = read_fkb(tmp_path / "all.fkb")
    assert [(l.type, l.name, l.config) for l in back.layers] == \
        [(l.type, l.name, l.config) for l in spec.layers]


def test_newer_minor_version_with_known_records_is_read():
    data = bytearray(encode_fkb(small_spec()))
    data[12:16] = struct.pack("<I", 3)
    assert decode_fkb(bytes(data)).n_outputs == 2


# -- bad input -------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FKBFileError) as e:
        read_fkb(tmp_path / "nope.fkb")
    assert isinstance(e.value, OSError)


@pytest.mark.parametrize("data", [b"", b"hello world, not a model\n", b"PK\x03\x04zip"])
def test_bad_magic(data):
    with pytest.raises(FKBFormatError, match="magic"):
        decode_fkb(data)


def test_unsupported_major_version():
    data = bytearray(encode_fkb(small_spec()))
    data[8:12] = struct.pack("<I", 2)
    with pytest.raises(FKBVersionError, match="version 2"):
        decode_fkb(bytes(data))


@pytest.mark.parametrize("cut", [4, 20, 30, -1, -17])
def test_truncated(cut):
    data = encode_fkb(small_spec())
    with pytest.raises(FKBFormatError, match="truncated"):
        decode_fkb(data[:cut])


def test_extra_bytes():
    with pytest.raises(FKBFormatError, match="after the last tensor"):
        decode_fkb(encode_fkb(small_spec()) + b"\0")


def test_header_length_beyond_file():
    data = bytearray(encode_fkb(small_spec()))
    data[16:24] = struct.pack("<Q", 1 << 50)
    with pytest.raises(FKBFormatError, match="truncated"):
        decode_fkb(bytes(data))


@pytest.mark.parametrize(
    "old,new,error,match",
    [
        (b"units=4 ", b"units=4 colour=red ", UnsupportedError, "'dense 1'.*colour"),
        (b"layer relu", b"layer swish_layer", UnsupportedError, "swish_layer"),
        (b"activation=leaky_relu", b"activation=swoosh", UnsupportedError, "swoosh"),
        (b"activation=softmax", b"activation=softmax alpha=0.1", FKBFormatError, "alpha"),
        (b" use_bias=1", b"", FKBFormatError, "missing key 'use_bias'"),
        (b"units=4 ", b"units=4 units=4 ", FKBFormatError, "twice"),
        (b"tensor kernel float32 3,4", b"tensor kernel float32 4,3", ShapeError, "kernel"),
        (b"tensor bias float32 4", b"tensor offset float32 4", ShapeError, "offset"),
        (b"tensor bias float32 4", b"tensor bias float64 4", FKBFormatError, "float64"),
        (b"fkb-model", b"fkb-modell", FKBFormatError, "fkb-model"),
        (b"dtype float32", b"dtype float16", UnsupportedError, "float16"),
        (b"input 3", b"input three", FKBFormatError, "input"),
        (b"input 3", b"input 0", FKBFormatError, "out of range"),
        (b"threshold=0.25", b"threshold=nan", FKBFormatError, "threshold"),
        (b"threshold=0.25", b"threshold=1e999", FKBFormatError, "threshold"),
        (b"units=4", b"units=1099511627777", FKBFormatError, "out of range"),
        (b"meta keras_version", b"gossip keras_version", FKBFormatError, "unknown record"),
        (b"meta name", b"meta Name", FKBFormatError, "Name"),
        (b"name=r ", b"name=r  ", FKBFormatError, "empty field"),
        (b"name=r ", b"name=r\t", FKBFormatError, "tab"),
        (b"max_value=none", b"max_value=None", FKBFormatError, "max_value"),
        (b"center=0", b"center=false", FKBFormatError, "center"),
    ],
)
def test_malformed_header(old, new, error, match):
    data = edit_header(encode_fkb(small_spec()), old, new)
    with pytest.raises(error, match=match):
        decode_fkb(data)


def test_header_structure_errors():
    data = encode_fkb(small_spec())
    _, h = header_bytes(data)
    lines = h.decode().split("\n")
    # no `end`
    with pytest.raises(FKBFormatError, match="end"):
        parse_header("\n".join(l for l in lines if l != "end"))
    # text after `end`
    with pytest.raises(FKBFormatError, match="after its `end`"):
        parse_header(h + b"meta name x\n")
    # layer after the metadata
    moved = [l for l in lines if not l.startswith("meta")]
    moved.insert(3, "meta name x")
    with pytest.raises(FKBFormatError, match="after the metadata"):
        parse_header("\n".join(moved))
    # tensor before any layer
    with pytest.raises(FKBFormatError, match="before any layer"):
        parse_header("fkb-model\ndtype float32\ninput 3\ntensor kernel float32 3,4\nend\n")
    # no final newline
    with pytest.raises(FKBFormatError, match="newline"):
        parse_header(h[:-1])


def test_writer_refuses_invalid_spec_and_leaves_no_file(tmp_path):
    spec = small_spec()
    spec.layers[0].tensors[0] = ("kernel", np.zeros((4, 3), "f4"))
    with pytest.raises(ShapeError, match="'dense 1'.*kernel"):
        write_fkb(spec, tmp_path / "bad.fkb")
    assert list(tmp_path.iterdir()) == []
    spec = small_spec()
    spec.layers[1].name = "dense 1"
    with pytest.raises(FKBFormatError, match="duplicate"):
        write_fkb(spec, tmp_path / "bad.fkb")
    spec = small_spec()
    spec.layers[0].tensors[1] = ("bias", np.array([0.1, 0, 0, 0]))  # float64 value not in f32
    with pytest.raises(FKBFormatError, match="do not fit"):
        encode_fkb(spec)
    spec = small_spec()
    spec.layers[2].config["max_value"] = float("inf")
    with pytest.raises(FKBFormatError, match="finite"):
        encode_fkb(spec)
    with pytest.raises(FKBFileError):
        write_fkb(small_spec(), tmp_path / "no" / "such" / "dir.fkb")


def test_format_header_is_parse_header_inverse():
    spec = small_spec()
    text = format_header(spec)
    back, tensors = parse_header(text)
    assert format_header(ModelSpec(back.dtype, back.n_inputs, back.layers, back.metadata)) == text
    assert [s for _, s in tensors] == [(3, 4), (4,), (4,), (4,), (4,), (4, 2)]
