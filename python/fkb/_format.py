"""The `.fkb` model file (docs/format.md, format version 1) in pure Python.

This module holds the in-memory description of a network (:class:`ModelSpec`,
:class:`LayerSpec`), the one table of layer types (their keys and tensors), and a reader and a
writer that need nothing but numpy. The Keras readers produce a ``ModelSpec``; the engine reads
the file this module writes.
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ._errors import FKBFileError, FKBFormatError, FKBVersionError, ShapeError, UnsupportedError

__all__ = [
    "MAGIC",
    "FORMAT_MAJOR",
    "FORMAT_MINOR",
    "ACTIVATIONS",
    "ALPHA_DEFAULTS",
    "LAYER_TYPES",
    "META_KEYS",
    "LayerSpec",
    "ModelSpec",
    "percent_encode",
    "percent_decode",
    "format_number",
    "format_header",
    "parse_header",
    "write_fkb",
    "read_fkb",
    "encode_fkb",
    "decode_fkb",
]

MAGIC = b"\x89FKB\r\n\x1a\n"
FORMAT_MAJOR = 1
FORMAT_MINOR = 1  # 1.1: optional training records (read here, written by the engine)
_PREFIX = struct.Struct("<8sIIQ")  # magic, major, minor, header length: 24 bytes

DTYPES = ("float32", "float64")

#: Activations of `dense` and `activation` layers (Keras 3 definitions).
ACTIVATIONS = frozenset(
    [
        "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "gelu_tanh", "silu",
        "mish", "softplus", "softsign", "tanh", "sigmoid", "hard_sigmoid", "hard_silu",
        "exponential", "softmax", "log_softmax",
    ]
)
#: Activations that take `alpha=`, with the Keras default used when it is absent.
ALPHA_DEFAULTS = {"leaky_relu": 0.2, "elu": 1.0}

#: The metadata keys docs/format.md names (a reader keeps any other well-formed key as well).
META_KEYS = (
    "name", "keras_version", "fkb_version", "source", "input_names", "output_names",
    "training_config", "learning_rate", "weights",
)

_KEY_RE = re.compile(rb"^[a-z0-9_]+\Z")
_INT_RE = re.compile(r"^[+-]?[0-9]+\Z")
_FLOAT_RE = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
# Bytes that are always percent-encoded in a value.
_ENCODED = frozenset(b"% =\t\n\r,") | frozenset(range(0x20)) | {0x7F}

# Sanity limits, checked before anything is allocated.
_MAX_DIM = 1 << 40
_MAX_HEADER = 1 << 30


# --------------------------------------------------------------------------------------------
# The layer table: one entry per layer type, the only place that knows keys and tensors.
# --------------------------------------------------------------------------------------------

# Kinds of values: "int" (>= 1), "float" (finite), "bool" (0/1), "activation",
# "float_or_none" (finite number or `none`).


@dataclass(frozen=True)
class LayerType:
    """Keys and tensors of one layer type (docs/format.md, "Layer types")."""

    #: (key, kind, required) in the order a writer emits them (after `name=`).
    keys: tuple[tuple[str, str, bool], ...]
    #: (config, n) -> [(tensor name, shape)], n = input width.
    tensors: Callable[[dict, int], list[tuple[str, tuple[int, ...]]]]
    #: (config, n) -> output width.
    out_width: Callable[[dict, int], int] = lambda c, n: n


def _norm_tensors(c: dict, n: int) -> list[tuple[str, tuple[int, ...]]]:
    out = []
    if c["scale"]:
        out.append(("gamma", (n,)))
    if c["center"]:
        out.append(("beta", (n,)))
    return out


LAYER_TYPES: dict[str, LayerType] = {
    "dense": LayerType(
        keys=(("units", "int", True), ("activation", "activation", True),
              ("alpha", "float", False), ("use_bias", "bool", True),
              ("kernel_l1", "float", False), ("kernel_l2", "float", False),
              ("bias_l1", "float", False), ("bias_l2", "float", False)),
        tensors=lambda c, n: [("kernel", (n, c["units"]))]
        + ([("bias", (c["units"],))] if c["use_bias"] else []),
        out_width=lambda c, n: c["units"],
    ),
    "activation": LayerType(
        keys=(("activation", "activation", True), ("alpha", "float", False)),
        tensors=lambda c, n: [],
    ),
    "dropout": LayerType(keys=(("rate", "float", True),), tensors=lambda c, n: []),
    "flatten": LayerType(keys=(), tensors=lambda c, n: []),
    "batch_normalization": LayerType(
        keys=(("epsilon", "float", True), ("center", "bool", True), ("scale", "bool", True)),
        tensors=lambda c, n: _norm_tensors(c, n)
        + [("moving_mean", (n,)), ("moving_variance", (n,))],
    ),
    "layer_normalization": LayerType(
        keys=(("epsilon", "float", True), ("center", "bool", True), ("scale", "bool", True)),
        tensors=_norm_tensors,
    ),
    "normalization": LayerType(
        keys=(("invert", "bool", True),),
        tensors=lambda c, n: [("mean", (n,)), ("variance", (n,))],
    ),
    "relu": LayerType(
        keys=(("max_value", "float_or_none", True), ("negative_slope", "float", True),
              ("threshold", "float", True)),
        tensors=lambda c, n: [],
    ),
    "leaky_relu": LayerType(keys=(("negative_slope", "float", True),), tensors=lambda c, n: []),
    "elu": LayerType(keys=(("alpha", "float", True),), tensors=lambda c, n: []),
    "prelu": LayerType(keys=(), tensors=lambda c, n: [("alpha", (n,))]),
    "softmax": LayerType(keys=(), tensors=lambda c, n: []),
}

# Optional keys of training (format 1.1): `trainable=0` freezes a layer's tensors (Keras'
# layer.trainable), `momentum` is BatchNormalization's moving-statistics momentum.
for _name, _lt in list(LAYER_TYPES.items()):
    _extra: tuple[tuple[str, str, bool], ...] = (("trainable", "bool", False),)
    if _name == "batch_normalization":
        _extra = (("momentum", "float", False),) + _extra
    LAYER_TYPES[_name] = LayerType(keys=_lt.keys + _extra, tensors=_lt.tensors,
                                   out_width=_lt.out_width)


# --------------------------------------------------------------------------------------------
# In-memory model
# --------------------------------------------------------------------------------------------


@dataclass
class LayerSpec:
    """One layer: its type (a key of LAYER_TYPES), name, hyper-parameters and tensors.

    ``config`` holds the keys of the type (without ``name``) as Python values: ``int`` for
    ``int``, ``bool`` for ``bool``, ``float`` for ``float``, ``str`` for ``activation`` and
    ``None`` or ``float`` for ``float_or_none``. ``tensors`` is the list of ``(name, array)``
    in the order the type fixes, with their Keras shapes.
    """

    type: str
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    tensors: list[tuple[str, np.ndarray]] = field(default_factory=list)

    @property
    def n_params(self) -> int:
        return sum(math.prod(_shape(t)) for _, t in self.tensors)

    def activation_alpha(self) -> float | None:
        """The `alpha` of a leaky_relu/elu activation (default filled in), else None."""
        act = self.config.get("activation")
        if act in ALPHA_DEFAULTS:
            return float(self.config.get("alpha", ALPHA_DEFAULTS[act]))
        return None


@dataclass
class ModelSpec:
    """A whole network as a `.fkb` file describes it."""

    dtype: str
    n_inputs: int
    layers: list[LayerSpec] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    #: Training state of a file saved by a compiled network (format 1.1): the optimizer and
    #: loss specs, the state line, and the optimizer's slot arrays [(name, float64 array)].
    #: Read and shown, not written by this module (the engine writes it).
    training: dict[str, Any] | None = None

    def widths(self) -> list[int]:
        """Input width followed by each layer's output width (after validate())."""
        out = [self.n_inputs]
        for layer in self.layers:
            lt = LAYER_TYPES.get(layer.type)
            if lt is None:
                raise UnsupportedError(f"layer {layer.name!r}: unknown layer type {layer.type!r}")
            out.append(lt.out_width(layer.config, out[-1]))
        return out

    @property
    def n_outputs(self) -> int:
        return self.widths()[-1]

    @property
    def n_params(self) -> int:
        return sum(layer.n_params for layer in self.layers)

    def truncated(self, n_layers: int) -> "ModelSpec":
        """The network made of the first ``n_layers`` layers (same dtype and metadata)."""
        return ModelSpec(self.dtype, self.n_inputs, list(self.layers[:n_layers]),
                         dict(self.metadata))

    def validate(self) -> None:
        """Checks everything docs/format.md requires; raises an FKBError naming the problem."""
        if self.dtype not in DTYPES:
            raise UnsupportedError(f"dtype {self.dtype!r} is not supported (float32, float64)")
        _check_int("input", self.n_inputs)
        names = set()
        n = self.n_inputs
        for layer in self.layers:
            where = f"layer {layer.name!r}"
            if not isinstance(layer.name, str) or not layer.name:
                raise FKBFormatError(f"a {layer.type!r} layer has an empty or non-text name")
            if layer.name in names:
                raise FKBFormatError(f"{where}: duplicate layer name")
            names.add(layer.name)
            lt = LAYER_TYPES.get(layer.type)
            if lt is None:
                raise UnsupportedError(f"{where}: unknown layer type {layer.type!r}")
            _check_config(where, layer.type, lt, layer.config)
            expected = lt.tensors(layer.config, n)
            got = [(name, _shape(t)) for name, t in layer.tensors]
            if [e[0] for e in expected] != [g[0] for g in got]:
                raise ShapeError(
                    f"{where}: tensors {[g[0] for g in got]} where a {layer.type} layer has "
                    f"{[e[0] for e in expected]}"
                )
            for (name, shape), (_, gshape) in zip(expected, got):
                if shape != gshape:
                    raise ShapeError(
                        f"{where}: tensor {name!r} has shape {gshape}, expected {shape}"
                    )
            n = lt.out_width(layer.config, n)
        for key, value in self.metadata.items():
            if not isinstance(key, str) or not _KEY_RE.match(key.encode("ascii", "replace")):
                raise FKBFormatError(f"metadata key {key!r} is not [a-z0-9_]+")
            if not isinstance(value, str):
                raise FKBFormatError(f"metadata {key!r} is not text")


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in (t.shape if hasattr(t, "shape") else np.shape(t)))


def _check_int(where: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise FKBFormatError(f"{where}: {value!r} is not an integer")
    if not 1 <= value <= _MAX_DIM:
        raise FKBFormatError(f"{where}: size {value} out of range [1, 2**40]")


def _check_config(where: str, ltype: str, lt: LayerType, config: dict) -> None:
    known = {k for k, _, _ in lt.keys}
    for key in config:
        if key not in known:
            raise UnsupportedError(f"{where}: key {key!r} is not known for a {ltype} layer")
    for key, kind, required in lt.keys:
        if key not in config:
            if required:
                raise FKBFormatError(f"{where}: missing key {key!r} of a {ltype} layer")
            continue
        v = config[key]
        if kind == "int":
            _check_int(f"{where}: {key}", v)
        elif kind == "bool":
            if not isinstance(v, (bool, np.bool_)):
                raise FKBFormatError(f"{where}: {key}={v!r} is not a boolean")
        elif kind == "activation":
            if v not in ACTIVATIONS:
                raise UnsupportedError(f"{where}: unknown activation {v!r}")
        elif kind in ("float", "float_or_none"):
            if v is None and kind == "float_or_none":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise FKBFormatError(f"{where}: {key}={v!r} is not a number")
            if not math.isfinite(float(v)):
                raise FKBFormatError(f"{where}: {key}={v!r} is not finite")
    if "alpha" in config and ltype in ("dense", "activation"):
        if config.get("activation") not in ALPHA_DEFAULTS:
            raise FKBFormatError(
                f"{where}: alpha is only allowed with leaky_relu or elu, not "
                f"{config.get('activation')!r}"
            )
    if ltype == "dropout" and not 0.0 <= float(config["rate"]) < 1.0:
        raise FKBFormatError(f"{where}: dropout rate {config['rate']!r} not in [0, 1)")
    if ltype in ("batch_normalization", "layer_normalization") and float(config["epsilon"]) < 0:
        raise FKBFormatError(f"{where}: negative epsilon {config['epsilon']!r}")


# --------------------------------------------------------------------------------------------
# Header text
# --------------------------------------------------------------------------------------------


def percent_encode(value: str) -> str:
    """Encodes a value: `%`, space, `=`, tab, LF, CR, `,`, bytes < 0x20 and 0x7F as %XX."""
    out = bytearray()
    for b in value.encode("utf-8"):
        if b in _ENCODED:
            out += b"%%%02X" % b
        else:
            out.append(b)
    return out.decode("utf-8")


def percent_decode(text: bytes, where: str = "header") -> str:
    """Decodes a percent-encoded value (bytes of the header) into text."""
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        b = text[i]
        if b == 0x25:  # %
            hexd = text[i + 1:i + 3]
            if len(hexd) != 2 or not all(c in b"0123456789ABCDEFabcdef" for c in hexd):
                raise FKBFormatError(f"{where}: bad percent escape in {text!r}")
            out.append(int(hexd, 16))
            i += 3
            continue
        if b in _ENCODED:
            raise FKBFormatError(f"{where}: byte 0x{b:02X} must be percent-encoded in {text!r}")
        out.append(b)
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FKBFormatError(f"{where}: value {text!r} is not UTF-8") from e


def format_number(value: Any) -> str:
    """An int in decimal, a float as Python repr (round-trips), None as `none`."""
    if value is None:
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))


def _format_value(kind: str, value: Any) -> str:
    if kind == "bool":
        return "1" if value else "0"
    if kind == "activation":
        return percent_encode(str(value))
    return format_number(value)


def format_header(spec: ModelSpec) -> str:
    """The header text of ``spec`` (validated first), ending with "end\\n"."""
    spec.validate()
    lines = ["fkb-model", f"dtype {spec.dtype}", f"input {int(spec.n_inputs)}"]
    for layer in spec.layers:
        lt = LAYER_TYPES[layer.type]
        fields = ["layer", layer.type, "name=" + percent_encode(layer.name)]
        for key, kind, _ in lt.keys:
            if key in layer.config:
                fields.append(f"{key}={_format_value(kind, layer.config[key])}")
        lines.append(" ".join(fields))
        for name, t in layer.tensors:
            shape = ",".join(str(d) for d in _shape(t))
            lines.append(f"tensor {name} {spec.dtype} {shape}")
    for key, value in spec.metadata.items():
        lines.append(f"meta {key} {percent_encode(value)}")
    tr = spec.training
    if tr and tr.get("optimizer") and tr.get("loss"):
        lines.append(f"optimizer {percent_encode(tr['optimizer'])}")
        lines.append(f"loss {percent_encode(tr['loss'])}")
        lines.append(f"state {percent_encode(tr.get('state') or 'iterations=0 u_product=1.0 seed=0')}")
        for name, arr in tr.get("slots", []):
            lines.append(f"slot {name} float64 {int(np.asarray(arr).size)}")
    lines.append("end")
    return "\n".join(lines) + "\n"


def _parse_value(where: str, key: str, kind: str, raw: bytes) -> Any:
    text = percent_decode(raw, where)
    if kind == "int":
        if not _INT_RE.match(text):
            raise FKBFormatError(f"{where}: {key}={text!r} is not an integer")
        return int(text)
    if kind == "bool":
        if text not in ("0", "1"):
            raise FKBFormatError(f"{where}: {key}={text!r} is not 0 or 1")
        return text == "1"
    if kind == "activation":
        return text
    if kind == "float_or_none" and text == "none":
        return None
    if not _FLOAT_RE.match(text):
        raise FKBFormatError(f"{where}: {key}={text!r} is not a finite number")
    return float(text)


def parse_header(text: str | bytes) -> tuple[ModelSpec, list[tuple[str, tuple[int, ...]]]]:
    """Parses header text into a ModelSpec whose layers have no tensor data yet.

    Returns ``(spec, tensor_list)`` where ``tensor_list`` is ``[(dtype, shape)]`` of every
    `tensor` line in order. The layers' ``tensors`` hold placeholders that have only a
    ``shape`` (:func:`decode_fkb` replaces them by the data). The layer table is checked.
    """
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if not data.endswith(b"\n"):
        raise FKBFormatError("header does not end with a newline")
    lines = data[:-1].split(b"\n")
    pos = 0

    def where() -> str:
        return f"header line {pos + 1}"

    def next_fields() -> list[bytes]:
        nonlocal pos
        if pos >= len(lines):
            raise FKBFormatError("header ends before its `end` line")
        line = lines[pos]
        if b"\r" in line or b"\t" in line:
            raise FKBFormatError(f"{where()}: tab or carriage return in {line!r}")
        fields = line.split(b" ")
        if any(not f for f in fields):
            raise FKBFormatError(f"{where()}: empty field (fields are separated by one space)")
        return fields

    fields = next_fields()
    if fields != [b"fkb-model"]:
        raise FKBFormatError(f"first header line is {lines[0]!r}, expected 'fkb-model'")
    pos += 1
    fields = next_fields()
    if len(fields) != 2 or fields[0] != b"dtype":
        raise FKBFormatError(f"{where()}: expected 'dtype float32|float64'")
    dtype = fields[1].decode("ascii", "replace")
    if dtype not in DTYPES:
        raise UnsupportedError(f"{where()}: dtype {dtype!r} is not supported")
    pos += 1
    fields = next_fields()
    if len(fields) != 2 or fields[0] != b"input" or not _INT_RE.match(fields[1].decode("latin-1")):
        raise FKBFormatError(f"{where()}: expected 'input N'")
    n_in = int(fields[1])
    _check_int(where() + ": input", n_in)
    pos += 1
    spec = ModelSpec(dtype=dtype, n_inputs=n_in)
    tensor_list: list[tuple[str, tuple[int, ...]]] = []
    layer: LayerSpec | None = None
    in_meta = False
    while True:
        fields = next_fields()
        rec = fields[0]
        if rec == b"end":
            if len(fields) != 1:
                raise FKBFormatError(f"{where()}: 'end' takes no fields")
            pos += 1
            break
        if rec == b"layer" and not in_meta:
            if len(fields) < 3:
                raise FKBFormatError(f"{where()}: a layer needs a type and name=")
            ltype = fields[1].decode("latin-1")
            lt = LAYER_TYPES.get(ltype)
            if lt is None:
                raise UnsupportedError(f"{where()}: unknown layer type {ltype!r}")
            kinds = {k: kind for k, kind, _ in lt.keys}
            config: dict[str, Any] = {}
            name = None
            for f in fields[2:]:
                key, eq, raw = f.partition(b"=")
                if not eq or not _KEY_RE.match(key):
                    raise FKBFormatError(f"{where()}: {f!r} is not key=value")
                k = key.decode("ascii")
                if k == "name":
                    if name is not None:
                        raise FKBFormatError(f"{where()}: name given twice")
                    name = percent_decode(raw, where())
                    continue
                lname = name if name is not None else "?"
                if k not in kinds:
                    raise UnsupportedError(
                        f"{where()}: layer {lname!r}: key {k!r} is not known for a {ltype} layer"
                    )
                if k in config:
                    raise FKBFormatError(f"{where()}: layer {lname!r}: key {k!r} given twice")
                config[k] = _parse_value(f"{where()}: layer {lname!r}", k, kinds[k], raw)
            if name is None:
                raise FKBFormatError(f"{where()}: {ltype} layer without name=")
            layer = LayerSpec(ltype, name, config, [])
            spec.layers.append(layer)
        elif rec == b"tensor" and not in_meta:
            if layer is None:
                raise FKBFormatError(f"{where()}: tensor before any layer")
            if len(fields) != 4:
                raise FKBFormatError(f"{where()}: expected 'tensor NAME DTYPE D1,D2,...'")
            tname = fields[1].decode("latin-1")
            tdtype = fields[2].decode("latin-1")
            if tdtype != dtype:
                raise FKBFormatError(
                    f"{where()}: layer {layer.name!r}: tensor {tname!r} is {tdtype}, the model "
                    f"is {dtype}"
                )
            dims = fields[3].decode("latin-1").split(",")
            if not all(_INT_RE.match(d) for d in dims):
                raise FKBFormatError(f"{where()}: bad shape {fields[3]!r}")
            shape = tuple(int(d) for d in dims)
            for d in shape:
                _check_int(f"{where()}: tensor {tname!r} dimension", d)
            layer.tensors.append((tname, _Placeholder(shape)))
            tensor_list.append((tdtype, shape))
        elif rec in (b"optimizer", b"loss", b"state"):
            if len(fields) != 2:
                raise FKBFormatError(f"{where()}: expected '{rec.decode()} SPEC'")
            if spec.training is None:
                spec.training = {"slots": []}
            spec.training[rec.decode()] = percent_decode(fields[1], where())
        elif rec == b"slot":
            if spec.training is None or len(fields) != 4 or fields[2] != b"float64" or \
                    not _INT_RE.match(fields[3].decode("latin-1")):
                raise FKBFormatError(f"{where()}: expected 'slot NAME float64 N' after the "
                                     "optimizer record")
            spec.training["slots"].append((fields[1].decode("latin-1"), int(fields[3])))
        elif rec == b"meta":
            in_meta = True
            if len(fields) not in (2, 3):
                raise FKBFormatError(f"{where()}: expected 'meta KEY VALUE'")
            if not _KEY_RE.match(fields[1]):
                raise FKBFormatError(f"{where()}: metadata key {fields[1]!r} is not [a-z0-9_]+")
            key = fields[1].decode("ascii")
            if key in spec.metadata:
                raise FKBFormatError(f"{where()}: metadata {key!r} given twice")
            spec.metadata[key] = percent_decode(fields[2], where()) if len(fields) == 3 else ""
        else:
            name = rec.decode("utf-8", "replace")
            if rec in (b"layer", b"tensor"):
                raise FKBFormatError(f"{where()}: {name!r} record after the metadata")
            raise FKBFormatError(f"{where()}: unknown record {name!r}")
        pos += 1
    if pos != len(lines):
        raise FKBFormatError("header text continues after its `end` line")
    spec.validate()
    return spec, tensor_list


class _Placeholder:
    """Stands for a tensor whose data has not been read; has only a shape."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    def __repr__(self) -> str:
        return f"<tensor {self.shape}>"


# --------------------------------------------------------------------------------------------
# Whole file
# --------------------------------------------------------------------------------------------


def _tensor_bytes(spec: ModelSpec, t: Any, where: str) -> bytes:
    a = np.asarray(t)
    if a.dtype.kind not in "fiu" and a.dtype != np.bool_:
        raise FKBFormatError(f"{where}: tensor of dtype {a.dtype} is not numeric")
    target = np.dtype(spec.dtype).newbyteorder("<")
    b = a.astype(target)
    if a.dtype != b.dtype.newbyteorder("=") and not np.array_equal(
        b.astype(a.dtype), a, equal_nan=True
    ):
        raise FKBFormatError(f"{where}: tensor values of dtype {a.dtype} do not fit {spec.dtype}")
    return np.ascontiguousarray(b).tobytes()


def encode_fkb(spec: ModelSpec) -> bytes:
    """The bytes of a `.fkb` file for ``spec``."""
    header = format_header(spec).encode("utf-8")
    parts = [_PREFIX.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, len(header)), header]
    for layer in spec.layers:
        for name, t in layer.tensors:
            parts.append(_tensor_bytes(spec, t, f"layer {layer.name!r}: tensor {name!r}"))
    tr = spec.training
    if tr and tr.get("optimizer") and tr.get("loss"):
        for _, arr in tr.get("slots", []):
            parts.append(np.ascontiguousarray(arr, dtype="<f8").tobytes())
    return b"".join(parts)


def write_fkb(spec: ModelSpec, path: str | os.PathLike) -> None:
    """Writes ``spec`` as a `.fkb` file (validated; an error leaves no file behind)."""
    data = encode_fkb(spec)
    path = os.fspath(path)
    tmp = path + ".part"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise FKBFileError(e.errno, f"cannot write {path}: {e.strerror}", path) from e


def decode_fkb(data: bytes, where: str = "model file") -> ModelSpec:
    """Parses the bytes of a `.fkb` file."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        if MAGIC.startswith(bytes(data[: len(MAGIC)])) and data:
            raise FKBFormatError(f"{where}: truncated ({len(data)} bytes)")
        raise FKBFormatError(
            f"{where}: not a .fkb file (bad magic); legacy FKB text files are read by fkb.load"
        )
    if len(data) < _PREFIX.size:
        raise FKBFormatError(f"{where}: truncated ({len(data)} bytes)")
    _, major, minor, hlen = _PREFIX.unpack_from(data)
    if major != FORMAT_MAJOR:
        raise FKBVersionError(
            f"{where}: format version {major}.{minor} is not supported (this reader: "
            f"{FORMAT_MAJOR}.{FORMAT_MINOR})"
        )
    if hlen > _MAX_HEADER or _PREFIX.size + hlen > len(data):
        raise FKBFormatError(f"{where}: truncated (header of {hlen} bytes, file {len(data)})")
    header = bytes(data[_PREFIX.size:_PREFIX.size + hlen])
    spec, tensor_list = parse_header(header)
    itemsize = np.dtype(spec.dtype).itemsize
    total = _PREFIX.size + hlen + sum(itemsize * math.prod(s) for _, s in tensor_list)
    slots = spec.training["slots"] if spec.training else []
    total += sum(8 * n for _, n in slots)
    if len(data) < total:
        raise FKBFormatError(f"{where}: truncated ({len(data)} bytes, expected {total})")
    if len(data) > total:
        raise FKBFormatError(
            f"{where}: malformed ({len(data) - total} bytes after the last tensor)"
        )
    off = _PREFIX.size + hlen
    le = np.dtype(spec.dtype).newbyteorder("<")
    for layer in spec.layers:
        for i, (name, ph) in enumerate(layer.tensors):
            count = math.prod(ph.shape)
            a = np.frombuffer(data, dtype=le, count=count, offset=off).reshape(ph.shape)
            layer.tensors[i] = (name, a.astype(spec.dtype))  # native order, own copy
            off += count * itemsize
    for i, (name, n) in enumerate(slots):
        slots[i] = (name, np.frombuffer(data, dtype="<f8", count=n, offset=off).astype(np.float64))
        off += 8 * n
    return spec


def read_fkb(path: str | os.PathLike) -> ModelSpec:
    """Reads a `.fkb` file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise FKBFileError(e.errno, f"cannot read {path}: {e.strerror}", path) from e
    return decode_fkb(data, path)
