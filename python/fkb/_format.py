"""The `.fkb` model file (docs/format.md, format version 1.2) in pure Python.

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
    "CUSTOM_LAYER_TYPES",
    "CustomLayerType",
    "layer_type",
    "META_KEYS",
    "InputSpec",
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
FORMAT_MINOR = 2  # 1.1: training records (written by the engine); 1.2: graphs, shaped data
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

# Kinds of values: "int" (>= 1), "uint" (>= 0), "sint" (any integer), "float" (finite),
# "bool" (0/1), "activation", "float_or_none" (finite number or `none`), "ints" (a list of
# integers >= 1) and "enum:A|B|..." (one of the words).

Shape = tuple  # a per-sample shape: tuple[int, ...]


def _prod(shape: tuple) -> int:
    return int(math.prod(shape))


class LayerType:
    """Keys, tensors and shape rule of one layer type (docs/format.md, "Layer types")."""

    def __init__(
        self,
        keys: tuple[tuple[str, str, bool], ...],
        tensors: Callable[[dict, tuple], list[tuple[str, tuple[int, ...]]]],
        out_shape: Callable[[dict, list[tuple]], tuple] | None = None,
        arity: tuple[int, int] = (1, 1),
        last_axis: bool = False,
        new: bool = False,
    ):
        #: (key, kind, required) in the order a writer emits them (after `name=`, `inputs=`).
        self.keys = keys
        self._tensors = tensors
        self._out_shape = out_shape or (lambda c, s: s[0])
        #: (min, max) number of inputs (max None: any).
        self.arity = arity
        #: acts on the last axis (every other axis is like more batch)
        self.last_axis = last_axis
        #: added in format 1.2
        self.new = new

    def tensors(self, config: dict, shape: Any) -> list[tuple[str, tuple[int, ...]]]:
        """[(tensor name, Keras shape)] for an input of per-sample ``shape`` (or width)."""
        return self._tensors(config, _as_shape(shape))

    def out_shape(self, config: dict, shapes: list) -> tuple:
        """Per-sample output shape for the input shapes (ShapeError when they do not fit)."""
        return tuple(int(d) for d in self._out_shape(config, [_as_shape(s) for s in shapes]))

    def out_width(self, config: dict, n: int) -> int:
        """Output width for a rank-1 input of width ``n`` (format 1.0 view)."""
        return _prod(self.out_shape(config, [(n,)]))


def _as_shape(shape: Any) -> tuple:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(d) for d in shape)


def _norm_tensors(c: dict, s: tuple) -> list[tuple[str, tuple[int, ...]]]:
    n = s[-1]
    out = []
    if c["scale"]:
        out.append(("gamma", (n,)))
    if c["center"]:
        out.append(("beta", (n,)))
    return out


def _no_tensors(c: dict, s: tuple) -> list:
    return []


def _rank(shapes: list, rank: int, what: str) -> tuple:
    s = shapes[0]
    if len(s) != rank:
        raise ShapeError(f"input shape {s}: {what} needs {rank}-d per-sample data")
    return s


def _steps_channels(shapes: list) -> tuple[int, int]:
    s = _rank(shapes, 2, "a 1-D layer")
    return s[0], s[1]


def _same_shapes(c: dict, shapes: list) -> tuple:
    first = shapes[0]
    for s in shapes[1:]:
        if s != first:
            raise ShapeError(f"inputs of shapes {[tuple(x) for x in shapes]} differ (merged "
                             "inputs must have one shape)")
    return first


def _concat_shape(c: dict, shapes: list) -> tuple:
    rank = len(shapes[0])
    axis = int(c["axis"])
    ax = rank + axis if axis < 0 else axis - 1
    if not 0 <= ax < rank:
        raise ShapeError(f"axis={axis} is not an axis of per-sample shape {shapes[0]}")
    for s in shapes[1:]:
        if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0]))
                                 if i != ax):
            raise ShapeError(f"inputs of shapes {[tuple(x) for x in shapes]} differ other than "
                             f"along axis {axis}")
    out = list(shapes[0])
    out[ax] = sum(s[ax] for s in shapes)
    return tuple(out)


def conv_out_length(t: int, kernel: int, stride: int, padding: str, dilation: int = 1) -> int:
    """Output steps of a 1-D convolution or pooling (Keras/TensorFlow rules)."""
    eff = (kernel - 1) * dilation + 1
    if padding == "valid":
        if t < eff:
            return 0
        return (t - eff) // stride + 1
    return -(-t // stride)  # same, causal: ceil(t / stride)


def same_padding(t: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(left, right) zero padding of TensorFlow's SAME rule."""
    eff = (kernel - 1) * dilation + 1
    total = max((-(-t // stride) - 1) * stride + eff - t, 0)
    return total // 2, total - total // 2


def _conv_shape(c: dict, shapes: list) -> tuple:
    t, ch = _steps_channels(shapes)
    g = int(c["groups"])
    if ch % g or int(c["filters"]) % g:
        raise ShapeError(f"groups={g} does not divide the {ch} input channels and the "
                         f"{c['filters']} filters")
    k, s, d = int(c["kernel_size"]), int(c["strides"]), int(c["dilation_rate"])
    out = conv_out_length(t, k, s, c["padding"], d)
    if out < 1:
        raise ShapeError(f"kernel of width {(k - 1) * d + 1} (kernel_size {k}, dilation_rate "
                         f"{d}) is wider than the input of {t} steps (padding {c['padding']})")
    return (out, int(c["filters"]))


def _conv_tensors(c: dict, s: tuple) -> list:
    ch = s[-1]
    g = int(c["groups"])
    out = [("kernel", (int(c["kernel_size"]), ch // g if ch % g == 0 else ch,
                       int(c["filters"])))]
    if c["use_bias"]:
        out.append(("bias", (int(c["filters"]),)))
    return out


def _pool_shape(c: dict, shapes: list) -> tuple:
    t, ch = _steps_channels(shapes)
    p, s = int(c["pool_size"]), int(c["strides"])
    out = conv_out_length(t, p, s, c["padding"])
    if out < 1:
        raise ShapeError(f"pool_size {p} is wider than the input of {t} steps")
    return (out, ch)


def _global_pool_shape(c: dict, shapes: list) -> tuple:
    _, ch = _steps_channels(shapes)
    return (1, ch) if c["keepdims"] else (ch,)


def _crop_shape(c: dict, shapes: list) -> tuple:
    t, ch = _steps_channels(shapes)
    out = t - int(c["left"]) - int(c["right"])
    if out < 1:
        raise ShapeError(f"cropping {c['left']}+{c['right']} leaves no step of {t}")
    return (out, ch)


def _reshape_shape(c: dict, shapes: list) -> tuple:
    target = tuple(int(d) for d in c["target_shape"])
    if _prod(target) != _prod(shapes[0]):
        raise ShapeError(f"target_shape {target} does not hold the {_prod(shapes[0])} values "
                         f"of shape {shapes[0]}")
    return target


def _permute_shape(c: dict, shapes: list) -> tuple:
    dims = [int(d) for d in c["dims"]]
    s = shapes[0]
    if sorted(dims) != list(range(1, len(s) + 1)):
        raise ShapeError(f"dims {tuple(dims)} is not a permutation of the axes 1..{len(s)} of "
                         f"shape {s}")
    return tuple(s[d - 1] for d in dims)


RNN_TYPES = ("simple_rnn", "lstm", "gru")
_GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


def _rnn_tensors(ltype: str, c: dict, s: tuple) -> list:
    u = int(c["units"])
    k = _GATES[ltype] * u
    out = [("kernel", (s[-1], k)), ("recurrent_kernel", (u, k))]
    if c["use_bias"]:
        out.append(("bias", (2, k) if ltype == "gru" and c.get("reset_after") else (k,)))
    return out


def _rnn_shape(c: dict, shapes: list, width: int | None = None) -> tuple:
    t, _ = _steps_channels(shapes)
    u = int(c["units"]) if width is None else width
    return (t, u) if c["return_sequences"] else (u,)


def _bidi_tensors(c: dict, s: tuple) -> list:
    inner = _rnn_tensors(c["layer"], c, s)
    return [("forward_" + n, sh) for n, sh in inner] + [("backward_" + n, sh) for n, sh in inner]


def _bidi_shape(c: dict, shapes: list) -> tuple:
    u = int(c["units"])
    return _rnn_shape(c, shapes, 2 * u if c["merge_mode"] == "concat" else u)


_RNN_KEYS: tuple[tuple[str, str, bool], ...] = (
    ("units", "int", True), ("activation", "activation", True), ("alpha", "float", False),
    ("use_bias", "bool", True), ("return_sequences", "bool", True),
    ("go_backwards", "bool", True), ("stateful", "bool", True),
)
_PAD = "enum:valid|same"

LAYER_TYPES: dict[str, LayerType] = {
    "dense": LayerType(
        keys=(("units", "int", True), ("activation", "activation", True),
              ("alpha", "float", False), ("use_bias", "bool", True),
              ("kernel_l1", "float", False), ("kernel_l2", "float", False),
              ("bias_l1", "float", False), ("bias_l2", "float", False)),
        tensors=lambda c, s: [("kernel", (s[-1], c["units"]))]
        + ([("bias", (c["units"],))] if c["use_bias"] else []),
        out_shape=lambda c, s: s[0][:-1] + (c["units"],),
        last_axis=True,
    ),
    "activation": LayerType(
        keys=(("activation", "activation", True), ("alpha", "float", False)),
        tensors=_no_tensors, last_axis=True,
    ),
    "dropout": LayerType(keys=(("rate", "float", True),), tensors=_no_tensors),
    "flatten": LayerType(keys=(), tensors=_no_tensors, out_shape=lambda c, s: (_prod(s[0]),)),
    "batch_normalization": LayerType(
        keys=(("epsilon", "float", True), ("center", "bool", True), ("scale", "bool", True)),
        tensors=lambda c, s: _norm_tensors(c, s)
        + [("moving_mean", (s[-1],)), ("moving_variance", (s[-1],))],
        last_axis=True,
    ),
    "layer_normalization": LayerType(
        keys=(("epsilon", "float", True), ("center", "bool", True), ("scale", "bool", True)),
        tensors=_norm_tensors, last_axis=True,
    ),
    "normalization": LayerType(
        keys=(("invert", "bool", True),),
        tensors=lambda c, s: [("mean", (s[-1],)), ("variance", (s[-1],))],
        last_axis=True,
    ),
    "relu": LayerType(
        keys=(("max_value", "float_or_none", True), ("negative_slope", "float", True),
              ("threshold", "float", True)),
        tensors=_no_tensors, last_axis=True,
    ),
    "leaky_relu": LayerType(keys=(("negative_slope", "float", True),), tensors=_no_tensors,
                            last_axis=True),
    "elu": LayerType(keys=(("alpha", "float", True),), tensors=_no_tensors, last_axis=True),
    "prelu": LayerType(keys=(), tensors=lambda c, s: [("alpha", tuple(s))]),
    "softmax": LayerType(keys=(), tensors=_no_tensors, last_axis=True),
}

#: The layer types of format 1.0/1.1.
V1_LAYER_TYPES = frozenset(LAYER_TYPES)

for _merge in ("add", "subtract", "multiply", "average", "maximum", "minimum"):
    LAYER_TYPES[_merge] = LayerType(keys=(), tensors=_no_tensors, out_shape=_same_shapes,
                                    arity=(2, 2) if _merge == "subtract" else (2, None),
                                    new=True)
LAYER_TYPES.update({
    "concatenate": LayerType(keys=(("axis", "sint", True),), tensors=_no_tensors,
                             out_shape=_concat_shape, arity=(2, None), new=True),
    "conv1d": LayerType(
        keys=(("filters", "int", True), ("kernel_size", "int", True), ("strides", "int", True),
              ("padding", "enum:valid|same|causal", True), ("dilation_rate", "int", True),
              ("groups", "int", True), ("activation", "activation", True),
              ("alpha", "float", False), ("use_bias", "bool", True)),
        tensors=_conv_tensors, out_shape=_conv_shape, new=True),
    "max_pooling1d": LayerType(
        keys=(("pool_size", "int", True), ("strides", "int", True), ("padding", _PAD, True)),
        tensors=_no_tensors, out_shape=_pool_shape, new=True),
    "average_pooling1d": LayerType(
        keys=(("pool_size", "int", True), ("strides", "int", True), ("padding", _PAD, True)),
        tensors=_no_tensors, out_shape=_pool_shape, new=True),
    "global_average_pooling1d": LayerType(
        keys=(("keepdims", "bool", True),), tensors=_no_tensors, out_shape=_global_pool_shape,
        new=True),
    "global_max_pooling1d": LayerType(
        keys=(("keepdims", "bool", True),), tensors=_no_tensors, out_shape=_global_pool_shape,
        new=True),
    "up_sampling1d": LayerType(
        keys=(("size", "int", True),), tensors=_no_tensors,
        out_shape=lambda c, s: (_steps_channels(s)[0] * int(c["size"]), s[0][1]), new=True),
    "zero_padding1d": LayerType(
        keys=(("left", "uint", True), ("right", "uint", True)), tensors=_no_tensors,
        out_shape=lambda c, s: (_steps_channels(s)[0] + int(c["left"]) + int(c["right"]),
                                s[0][1]), new=True),
    "cropping1d": LayerType(
        keys=(("left", "uint", True), ("right", "uint", True)), tensors=_no_tensors,
        out_shape=_crop_shape, new=True),
    "reshape": LayerType(keys=(("target_shape", "ints", True),), tensors=_no_tensors,
                         out_shape=_reshape_shape, new=True),
    "permute": LayerType(keys=(("dims", "ints", True),), tensors=_no_tensors,
                         out_shape=_permute_shape, new=True),
    "repeat_vector": LayerType(
        keys=(("n", "int", True),), tensors=_no_tensors,
        out_shape=lambda c, s: (int(c["n"]),) + _rank(s, 1, "repeat_vector"), new=True),
    "simple_rnn": LayerType(keys=_RNN_KEYS, tensors=lambda c, s: _rnn_tensors("simple_rnn", c, s),
                            out_shape=_rnn_shape, new=True),
    "lstm": LayerType(keys=_RNN_KEYS + (("recurrent_activation", "activation", True),),
                      tensors=lambda c, s: _rnn_tensors("lstm", c, s), out_shape=_rnn_shape,
                      new=True),
    "gru": LayerType(keys=_RNN_KEYS + (("recurrent_activation", "activation", True),
                                       ("reset_after", "bool", True)),
                     tensors=lambda c, s: _rnn_tensors("gru", c, s), out_shape=_rnn_shape,
                     new=True),
    "bidirectional": LayerType(
        keys=(("merge_mode", "enum:concat|sum|mul|ave", True),
              ("layer", "enum:simple_rnn|lstm|gru", True)) + _RNN_KEYS
        + (("recurrent_activation", "activation", False), ("reset_after", "bool", False)),
        tensors=_bidi_tensors, out_shape=_bidi_shape, new=True),
})

# Optional keys of training (format 1.1): `trainable=0` freezes a layer's tensors (Keras'
# layer.trainable), `momentum` is BatchNormalization's moving-statistics momentum; format 1.2:
# `time_distributed=1` on the last-axis layers (a Keras TimeDistributed wrapper).
for _name, _lt in list(LAYER_TYPES.items()):
    _extra: tuple[tuple[str, str, bool], ...] = (("trainable", "bool", False),)
    if _name == "batch_normalization":
        _extra = (("momentum", "float", False),) + _extra
    if _lt.last_axis:
        _extra = (("time_distributed", "bool", False),) + _extra
    _lt.keys = _lt.keys + _extra


# --------------------------------------------------------------------------------------------
# Registered layer types (fkb.register_layer): a user's own type, known by name only
# --------------------------------------------------------------------------------------------

#: Keys FKB itself handles on every layer of a registered type (not passed to the user's
#: functions): `name`, `inputs` (format 1.2 graphs) and `trainable`.
CUSTOM_RESERVED = frozenset(["name", "inputs", "trainable", "dtype", "tensor_names"])
#: Kinds of an ``options`` schema: how a registered type's option values are read back.
CUSTOM_KINDS = {int: "int", float: "float", bool: "bool", str: "str", list: "list",
                "int": "int", "float": "float", "bool": "bool", "str": "str", "list": "list"}
_TYPE_RE = re.compile(r"^[a-z0-9_]+\Z")
_TENSOR_NAME_RE = re.compile(r"^[A-Za-z0-9_.]{1,64}\Z")


class CustomLayerType(LayerType):
    """A layer type registered with :func:`fkb.register_layer`.

    Its options are free (any ``[a-z0-9_]+`` key; with an ``options`` schema, exactly the
    schema's keys, each read back as its kind), its tensors are whatever the record lists
    (the engine's layer checks them), and its output shape is ``output_shape(config,
    input_shape)`` (default: the input's). One input.
    """

    def __init__(self, name: str, output_shape: Callable | None = None,
                 options: dict | None = None, **registration: Any):
        super().__init__(keys=(("trainable", "bool", False),), tensors=_no_tensors,
                         out_shape=self._shape)
        self.name = name
        self.output_shape = output_shape
        self.options = dict(options) if options is not None else None
        #: keras_class, to_config_and_weights, from_config_and_weights, forward
        self.__dict__.update(registration)

    def _shape(self, config: dict, shapes: list) -> tuple:
        if self.output_shape is None:
            return shapes[0]
        user = {k: v for k, v in config.items() if k != "trainable"}
        try:
            out = self.output_shape(user, tuple(shapes[0]))
        except ShapeError:
            raise
        except Exception as e:
            raise ShapeError(f"output_shape of layer type {self.name!r} failed: "
                             f"{type(e).__name__}: {e}") from e
        return _as_shape(out)


#: Registered layer types by name (kept apart from the built-in LAYER_TYPES).
CUSTOM_LAYER_TYPES: dict[str, CustomLayerType] = {}


def layer_type(name: str) -> LayerType | None:
    """The built-in or registered layer type called ``name`` (None: neither)."""
    lt = LAYER_TYPES.get(name)
    return lt if lt is not None else CUSTOM_LAYER_TYPES.get(name)


def _unknown_type(where: str, ltype: str) -> UnsupportedError:
    return UnsupportedError(f"{where}: unknown layer type {ltype!r} (neither built in nor "
                            "registered with fkb.register_layer)")


def check_custom_type_name(name: Any) -> str:
    """A registrable type name: [a-z0-9_]+ and not a built-in type's."""
    if not isinstance(name, str) or not _TYPE_RE.match(name):
        raise UnsupportedError(f"layer type name {name!r} is not [a-z0-9_]+")
    if name in LAYER_TYPES:
        raise UnsupportedError(f"layer type name {name!r} is a built-in FKB layer type; "
                               "choose another name")
    return name


def _custom_value_ok(v: Any) -> bool:
    if isinstance(v, (bool, np.bool_, int, np.integer)):
        return True
    if isinstance(v, (float, np.floating)):
        return math.isfinite(float(v))
    return isinstance(v, str) and v != ""


def _check_custom_config(where: str, lt: CustomLayerType, config: dict) -> None:
    for key, v in config.items():
        if not isinstance(key, str) or not _KEY_RE.match(key.encode("ascii", "replace")):
            raise FKBFormatError(f"{where}: option name {key!r} is not [a-z0-9_]+")
        if key == "trainable":
            if not isinstance(v, (bool, np.bool_)):
                raise FKBFormatError(f"{where}: trainable={v!r} is not a boolean")
            continue
        if key in CUSTOM_RESERVED:
            raise FKBFormatError(f"{where}: option {key!r} is reserved by FKB")
        if lt.options is not None and key not in lt.options:
            raise UnsupportedError(f"{where}: key {key!r} is not known for a {lt.name} layer "
                                   f"(its options: {', '.join(lt.options) or 'none'})")
        items = list(v) if isinstance(v, (list, tuple)) else [v]
        if not items or not all(_custom_value_ok(x) for x in items):
            raise FKBFormatError(
                f"{where}: option {key}={v!r} cannot be written (values are int, float "
                "(finite), bool, non-empty str, or a non-empty list of those)")


def _format_custom_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(_format_custom_value(x) for x in v)
    if isinstance(v, str):
        return percent_encode(v)
    return format_number(v)


def _parse_custom_scalar(text: str, kind: str | None) -> Any:
    if kind == "str":
        return text
    if kind == "bool":
        if text not in ("0", "1"):
            raise ValueError("is not 0 or 1")
        return text == "1"
    if kind == "int":
        if not _INT_RE.match(text):
            raise ValueError("is not an integer")
        return int(text)
    if kind == "float":
        if not _FLOAT_RE.match(text):
            raise ValueError("is not a finite number")
        return float(text)
    # No schema: by syntax.
    if _INT_RE.match(text):
        return int(text)
    if _FLOAT_RE.match(text):
        return float(text)
    return text


def _parse_custom_value(where: str, lt: CustomLayerType, key: str, raw: bytes) -> Any:
    kind = CUSTOM_KINDS[lt.options[key]] if lt.options is not None else None
    try:
        if kind == "list" or (kind is None and b"," in raw):
            return [_parse_custom_scalar(percent_decode(r, where), None)
                    for r in raw.split(b",")]
        return _parse_custom_scalar(percent_decode(raw, where), kind)
    except ValueError as e:
        raise FKBFormatError(f"{where}: {key}={raw.decode('latin-1')!r} {e}") from None


# --------------------------------------------------------------------------------------------
# In-memory model
# --------------------------------------------------------------------------------------------


@dataclass
class InputSpec:
    """One input of a network: its name and per-sample shape."""

    name: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return _prod(self.shape)


def default_input_name(k: int) -> str:
    """Name of the k-th input (0-based) when its record has no name=."""
    return "input" if k == 0 else f"input_{k + 1}"


@dataclass
class LayerSpec:
    """One layer: its type (a key of LAYER_TYPES), name, hyper-parameters and tensors.

    ``config`` holds the keys of the type (without ``name``) as Python values: ``int`` for
    ``int``, ``bool`` for ``bool``, ``float`` for ``float``, ``str`` for ``activation`` and
    enumerations, ``list[int]`` for lists and ``None`` or ``float`` for ``float_or_none``.
    ``tensors`` is the list of ``(name, array)`` in the order the type fixes, with their Keras
    shapes. ``inputs`` names the inputs/layers whose outputs the layer takes (format 1.2);
    None: the previous layer's output (the first layer: the network's only input).
    """

    type: str
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    tensors: list[tuple[str, np.ndarray]] = field(default_factory=list)
    inputs: list[str] | None = None

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
    """A whole network as a `.fkb` file describes it.

    ``inputs`` lists the network's inputs (name, per-sample shape); when not given, one rank-1
    input of width ``n_inputs`` named ``input``. ``n_inputs`` is the sum of the inputs' flat
    sizes (filled in when None). ``outputs`` names the network's outputs; empty: the last
    layer's output.
    """

    dtype: str
    n_inputs: int | None
    layers: list[LayerSpec] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    #: Training state of a file saved by a compiled network (format 1.1): the optimizer and
    #: loss specs, the state line, and the optimizer's slot arrays [(name, float64 array)].
    #: Read and shown, not written by this module (the engine writes it).
    training: dict[str, Any] | None = None
    inputs: list[InputSpec] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.inputs and self.n_inputs is not None:
            self.inputs = [InputSpec("input", (self.n_inputs,))]
        elif self.inputs and self.n_inputs is None:
            self.n_inputs = sum(_prod(i.shape) for i in self.inputs)

    # -- the graph ---------------------------------------------------------------------------

    def layer_inputs(self, index: int) -> list[str]:
        """Names of the values layer ``index`` takes (its inputs= or the implicit one)."""
        layer = self.layers[index]
        if layer.inputs is not None:
            return list(layer.inputs)
        if index > 0:
            return [self.layers[index - 1].name]
        return [self.inputs[0].name] if len(self.inputs) == 1 else []

    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    def output_names(self) -> list[str]:
        """The network's outputs (the `output` record, or the last layer / the only input)."""
        if self.outputs:
            return list(self.outputs)
        if self.layers:
            return [self.layers[-1].name]
        return [self.inputs[0].name] if self.inputs else []

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of every input and layer output, by name (validated)."""
        return self._walk()

    def input_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(i.shape) for i in self.inputs]

    def output_shapes(self) -> list[tuple[int, ...]]:
        shapes = self._walk()
        return [shapes[n] for n in self.output_names()]

    def is_chain(self) -> bool:
        """One input, one output (the last layer), every layer taking the one before it."""
        if len(self.inputs) != 1:
            return False
        last = self.layers[-1].name if self.layers else self.inputs[0].name
        if self.output_names() != [last]:
            return False
        return all(self.explicit_inputs(i) is None for i in range(len(self.layers)))

    def explicit_inputs(self, index: int) -> list[str] | None:
        """The inputs= a writer must write for layer ``index`` (None: the implicit one)."""
        layer = self.layers[index]
        if layer.inputs is None:
            return None
        if index > 0:
            implicit = [self.layers[index - 1].name]
        elif len(self.inputs) == 1:
            implicit = [self.inputs[0].name]
        else:
            return list(layer.inputs)
        return None if list(layer.inputs) == implicit else list(layer.inputs)

    def explicit_outputs(self) -> list[str] | None:
        """The names an `output` record must list (None: the last layer's output)."""
        if not self.outputs or (self.layers and list(self.outputs) == [self.layers[-1].name]):
            return None
        return list(self.outputs)

    def uses_v12(self) -> bool:
        """True when the file needs format 1.2 (graphs, shaped data, new layer types)."""
        if len(self.inputs) != 1 or self.inputs[0].name != "input" or \
                len(self.inputs[0].shape) != 1 or self.explicit_outputs() is not None:
            return True
        for i, layer in enumerate(self.layers):
            lt = LAYER_TYPES.get(layer.type)
            if self.explicit_inputs(i) is not None or (lt is not None and lt.new) or \
                    "time_distributed" in layer.config:
                return True
        return False

    def widths(self) -> list[int]:
        """Flat input size followed by each layer's flat output size (after validate())."""
        shapes = self._walk()
        return [int(self.n_inputs)] + [_prod(shapes[layer.name]) for layer in self.layers]

    @property
    def n_outputs(self) -> int:
        shapes = self._walk()
        return sum(_prod(shapes[n]) for n in self.output_names())

    @property
    def n_params(self) -> int:
        return sum(layer.n_params for layer in self.layers)

    def truncated(self, n_layers: int) -> "ModelSpec":
        """The network made of the first ``n_layers`` layers, whose output is the last of
        them (same dtype, inputs and metadata)."""
        layers = list(self.layers[:n_layers])
        outputs = [layers[-1].name] if layers and not self.is_chain() else []
        return ModelSpec(self.dtype, self.n_inputs, layers, dict(self.metadata),
                         inputs=list(self.inputs), outputs=outputs)

    def subgraph(self, outputs: list[str]) -> "ModelSpec":
        """The network computing ``outputs`` from all the inputs: only the layers they need."""
        need = set(outputs)
        keep = []
        for i in range(len(self.layers) - 1, -1, -1):
            if self.layers[i].name in need:
                keep.append(i)
                need.update(self.layer_inputs(i))
        keep.reverse()
        layers = []
        for i in keep:
            layer = self.layers[i]
            layers.append(LayerSpec(layer.type, layer.name, layer.config, layer.tensors,
                                    self.layer_inputs(i)))
        return ModelSpec(self.dtype, self.n_inputs, layers, dict(self.metadata),
                         inputs=list(self.inputs), outputs=list(outputs))

    def validate(self) -> None:
        """Checks everything docs/format.md requires; raises an FKBError naming the problem."""
        self._walk()
        for key, value in self.metadata.items():
            if not isinstance(key, str) or not _KEY_RE.match(key.encode("ascii", "replace")):
                raise FKBFormatError(f"metadata key {key!r} is not [a-z0-9_]+")
            if not isinstance(value, str):
                raise FKBFormatError(f"metadata {key!r} is not text")

    def _walk(self) -> dict[str, tuple[int, ...]]:
        if self.dtype not in DTYPES:
            raise UnsupportedError(f"dtype {self.dtype!r} is not supported (float32, float64)")
        if not self.inputs:
            raise FKBFormatError("a network needs at least one input")
        shapes: dict[str, tuple[int, ...]] = {}
        for k, inp in enumerate(self.inputs):
            if not isinstance(inp.name, str) or not inp.name:
                raise FKBFormatError(f"input {k + 1} has an empty or non-text name")
            if inp.name in shapes:
                raise FKBFormatError(f"input {inp.name!r}: duplicate name")
            shape = tuple(inp.shape)
            if not shape:
                raise FKBFormatError(f"input {inp.name!r}: empty shape")
            for d in shape:
                _check_int(f"input {inp.name!r}", d)
            shapes[inp.name] = tuple(int(d) for d in shape)
        _check_int("input", self.n_inputs)
        total = sum(_prod(s) for s in shapes.values())
        if self.n_inputs != total:
            raise ShapeError(f"n_inputs is {self.n_inputs}, the inputs hold {total} values")
        later = {layer.name for layer in self.layers}
        for i, layer in enumerate(self.layers):
            where = f"layer {layer.name!r}"
            if not isinstance(layer.name, str) or not layer.name:
                raise FKBFormatError(f"a {layer.type!r} layer has an empty or non-text name")
            if layer.name in shapes:
                raise FKBFormatError(f"{where}: duplicate name (names of inputs and layers "
                                     "must be unique)")
            lt = layer_type(layer.type)
            if lt is None:
                raise _unknown_type(where, layer.type)
            where = f"layer {layer.name!r} ({layer.type})"
            if isinstance(lt, CustomLayerType):
                _check_custom_config(where, lt, layer.config)
            else:
                _check_config(where, layer.type, lt, layer.config)
            if layer.inputs is not None and (not isinstance(layer.inputs, (list, tuple))
                                             or not layer.inputs):
                raise FKBFormatError(f"{where}: inputs= must name at least one input or layer")
            srcs = self.layer_inputs(i)
            if not srcs:
                raise FKBFormatError(f"{where}: the network has {len(self.inputs)} inputs; the "
                                     "first layer must name its inputs (inputs=)")
            for src in srcs:
                if src not in shapes:
                    if src == layer.name:
                        raise FKBFormatError(f"{where}: takes its own output (a cycle)")
                    if src in later:
                        raise FKBFormatError(
                            f"{where}: takes {src!r}, which comes after it in the file (layers "
                            "may only take inputs and layers before them: a cycle or a wrong "
                            "order)")
                    raise FKBFormatError(f"{where}: takes {src!r}, which is neither an input "
                                         "nor a layer")
            lo, hi = lt.arity
            if len(srcs) < lo or (hi is not None and len(srcs) > hi):
                want = f"{lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo}-{hi}"
                raise FKBFormatError(f"{where}: takes {len(srcs)} input(s), a {layer.type} "
                                     f"layer takes {want}")
            in_shapes = [shapes[s] for s in srcs]
            if layer.config.get("time_distributed") and len(in_shapes[0]) < 2:
                raise ShapeError(f"{where}: time_distributed=1 needs per-sample data of rank "
                                 f">= 2, got shape {in_shapes[0]}")
            try:
                out = lt.out_shape(layer.config, in_shapes)
            except ShapeError as e:
                raise ShapeError(f"{where}: {e}") from None
            if not out or any(d < 1 for d in out):
                raise ShapeError(f"{where}: output shape {out} is empty")
            got = [(name, _shape(t)) for name, t in layer.tensors]
            if isinstance(lt, CustomLayerType):
                # The record's own tensors (the engine's layer checks names and shapes).
                seen_t: set = set()
                for tname, tshape in got:
                    if not isinstance(tname, str) or not _TENSOR_NAME_RE.match(tname):
                        raise FKBFormatError(f"{where}: tensor name {tname!r} is not "
                                             "[A-Za-z0-9_.]+ (at most 64 characters)")
                    if tname in seen_t:
                        raise FKBFormatError(f"{where}: two tensors named {tname!r}")
                    seen_t.add(tname)
                    if not 1 <= len(tshape) <= 16 or any(d < 1 for d in tshape):
                        raise ShapeError(f"{where}: tensor {tname!r} has shape {tshape} "
                                         "(rank 1 to 16, dimensions >= 1)")
                shapes[layer.name] = out
                continue
            expected = lt.tensors(layer.config, in_shapes[0])
            if [e[0] for e in expected] != [g[0] for g in got]:
                raise ShapeError(
                    f"{where}: tensors {[g[0] for g in got]} where a {layer.type} layer has "
                    f"{[e[0] for e in expected]}"
                )
            for (name, shape), (_, gshape) in zip(expected, got):
                if tuple(shape) != gshape:
                    raise ShapeError(
                        f"{where}: tensor {name!r} has shape {gshape}, expected {tuple(shape)}"
                    )
            shapes[layer.name] = out
        if self.outputs:
            seen = set()
            for name in self.outputs:
                if not isinstance(name, str) or name not in shapes:
                    raise FKBFormatError(f"output {name!r} is neither an input nor a layer")
                if name in seen:
                    raise FKBFormatError(f"output {name!r} is named twice")
                seen.add(name)
        return shapes


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in (t.shape if hasattr(t, "shape") else np.shape(t)))


def _check_int(where: str, value: Any, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise FKBFormatError(f"{where}: {value!r} is not an integer")
    if low is not None and not low <= value <= _MAX_DIM:
        raise FKBFormatError(f"{where}: size {value} out of range [{low}, 2**40]")
    if low is None and not -_MAX_DIM <= value <= _MAX_DIM:
        raise FKBFormatError(f"{where}: {value} out of range")


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
        if kind in ("int", "uint", "sint"):
            _check_int(f"{where}: {key}", v, {"int": 1, "uint": 0, "sint": None}[kind])
        elif kind == "ints":
            if not isinstance(v, (list, tuple)) or not v:
                raise FKBFormatError(f"{where}: {key}={v!r} is not a list of integers")
            for d in v:
                _check_int(f"{where}: {key}", d)
        elif kind.startswith("enum:"):
            if v not in kind[5:].split("|"):
                raise UnsupportedError(f"{where}: {key}={v!r} is not one of "
                                       f"{kind[5:].replace('|', ', ')}")
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
    if "alpha" in config and "activation" in known:
        if config.get("activation") not in ALPHA_DEFAULTS:
            raise FKBFormatError(
                f"{where}: alpha is only allowed with leaky_relu or elu, not "
                f"{config.get('activation')!r}"
            )
    if ltype == "dropout" and not 0.0 <= float(config["rate"]) < 1.0:
        raise FKBFormatError(f"{where}: dropout rate {config['rate']!r} not in [0, 1)")
    if ltype in ("batch_normalization", "layer_normalization") and float(config["epsilon"]) < 0:
        raise FKBFormatError(f"{where}: negative epsilon {config['epsilon']!r}")
    if ltype == "concatenate" and config["axis"] == 0:
        raise FKBFormatError(f"{where}: axis=0 is the batch axis")
    if ltype == "bidirectional":
        inner = config["layer"]
        for key in ("recurrent_activation", "reset_after"):
            wanted = inner == "gru" or (inner == "lstm" and key == "recurrent_activation")
            if wanted and key not in config:
                raise FKBFormatError(f"{where}: missing key {key!r} of a bidirectional {inner}")
            if not wanted and key in config:
                raise UnsupportedError(f"{where}: key {key!r} is not known for a bidirectional "
                                       f"{inner}")


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
    if kind == "activation" or kind.startswith("enum:"):
        return percent_encode(str(value))
    if kind == "ints":
        return ",".join(str(int(d)) for d in value)
    return format_number(value)


def format_list(names: list[str]) -> str:
    """A list value: comma-separated, each item percent-encoded on its own."""
    return ",".join(percent_encode(n) for n in names)


def format_header(spec: ModelSpec) -> str:
    """The header text of ``spec`` (validated first), ending with "end\\n"."""
    spec.validate()
    lines = ["fkb-model", f"dtype {spec.dtype}"]
    if not spec.uses_v12():
        lines.append(f"input {int(spec.n_inputs)}")
    else:
        for k, inp in enumerate(spec.inputs):
            rec = "input " + ",".join(str(int(d)) for d in inp.shape)
            if inp.name != default_input_name(k):
                rec += " name=" + percent_encode(inp.name)
            lines.append(rec)
    for i, layer in enumerate(spec.layers):
        lt = layer_type(layer.type)
        fields = ["layer", layer.type, "name=" + percent_encode(layer.name)]
        explicit = spec.explicit_inputs(i)
        if explicit is not None:
            fields.append("inputs=" + format_list(explicit))
        if isinstance(lt, CustomLayerType):
            for key, value in layer.config.items():
                if key != "trainable":
                    fields.append(f"{key}={_format_custom_value(value)}")
            if layer.config.get("trainable") is False:
                fields.append("trainable=0")
        else:
            for key, kind, _ in lt.keys:
                if key in layer.config:
                    fields.append(f"{key}={_format_value(kind, layer.config[key])}")
        lines.append(" ".join(fields))
        for name, t in layer.tensors:
            shape = ",".join(str(d) for d in _shape(t))
            lines.append(f"tensor {name} {spec.dtype} {shape}")
    outputs = spec.explicit_outputs()
    if outputs is not None:
        lines.append("output " + format_list(outputs))
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
    if kind == "ints":
        items = [percent_decode(r, where) for r in raw.split(b",")]
        if not all(_INT_RE.match(t) for t in items):
            raise FKBFormatError(f"{where}: {key}={raw!r} is not a list of integers")
        return [int(t) for t in items]
    text = percent_decode(raw, where)
    if kind in ("int", "uint", "sint"):
        if not _INT_RE.match(text):
            raise FKBFormatError(f"{where}: {key}={text!r} is not an integer")
        return int(text)
    if kind == "bool":
        if text not in ("0", "1"):
            raise FKBFormatError(f"{where}: {key}={text!r} is not 0 or 1")
        return text == "1"
    if kind == "activation" or kind.startswith("enum:"):
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
    inputs: list[InputSpec] = []
    while True:
        fields = next_fields()
        if fields[0] != b"input":
            break
        if len(fields) not in (2, 3):
            raise FKBFormatError(f"{where()}: expected 'input D1[,D2,...] [name=NAME]'")
        dims = fields[1].decode("latin-1").split(",")
        if not all(_INT_RE.match(d) for d in dims):
            raise FKBFormatError(f"{where()}: expected 'input N' or 'input D1,D2,... name=NAME', "
                                 f"got shape {fields[1]!r}")
        shape = tuple(int(d) for d in dims)
        for d in shape:
            _check_int(where() + ": input", d)
        iname = default_input_name(len(inputs))
        if len(fields) == 3:
            key, eq, raw = fields[2].partition(b"=")
            if key != b"name" or not eq:
                raise FKBFormatError(f"{where()}: {fields[2]!r}: an input record only takes "
                                     "name=")
            iname = percent_decode(raw, where())
            if not iname:
                raise FKBFormatError(f"{where()}: empty input name")
        if any(i.name == iname for i in inputs):
            raise FKBFormatError(f"{where()}: input {iname!r}: duplicate name")
        inputs.append(InputSpec(iname, shape))
        pos += 1
    if not inputs:
        raise FKBFormatError(f"{where()}: expected 'input N'")
    spec = ModelSpec(dtype=dtype, n_inputs=None, inputs=inputs)
    tensor_list: list[tuple[str, tuple[int, ...]]] = []
    layer: LayerSpec | None = None
    in_meta = False
    have_output = False
    while True:
        fields = next_fields()
        rec = fields[0]
        if rec == b"end":
            if len(fields) != 1:
                raise FKBFormatError(f"{where()}: 'end' takes no fields")
            pos += 1
            break
        if rec == b"layer" and not in_meta and not have_output:
            if len(fields) < 3:
                raise FKBFormatError(f"{where()}: a layer needs a type and name=")
            ltype = fields[1].decode("latin-1")
            lt = layer_type(ltype)
            if lt is None:
                raise _unknown_type(where(), ltype)
            kinds = {k: kind for k, kind, _ in lt.keys}
            custom = lt if isinstance(lt, CustomLayerType) else None
            config: dict[str, Any] = {}
            name = None
            layer_inputs: list[str] | None = None
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
                if k == "inputs":
                    if layer_inputs is not None:
                        raise FKBFormatError(f"{where()}: layer {lname!r}: inputs= given twice")
                    layer_inputs = [percent_decode(r, where()) for r in raw.split(b",")]
                    if not all(layer_inputs):
                        raise FKBFormatError(f"{where()}: layer {lname!r}: empty name in "
                                             "inputs=")
                    continue
                if k in config:
                    raise FKBFormatError(f"{where()}: layer {lname!r}: key {k!r} given twice")
                if custom is not None and k != "trainable":
                    if k in CUSTOM_RESERVED:
                        raise FKBFormatError(f"{where()}: layer {lname!r}: option {k!r} is "
                                             "reserved by FKB")
                    if custom.options is not None and k not in custom.options:
                        raise UnsupportedError(
                            f"{where()}: layer {lname!r}: key {k!r} is not known for a "
                            f"{ltype} layer (its options: {', '.join(custom.options) or 'none'})")
                    config[k] = _parse_custom_value(f"{where()}: layer {lname!r}", custom, k,
                                                    raw)
                    continue
                if k not in kinds:
                    raise UnsupportedError(
                        f"{where()}: layer {lname!r}: key {k!r} is not known for a {ltype} layer"
                    )
                config[k] = _parse_value(f"{where()}: layer {lname!r}", k, kinds[k], raw)
            if name is None:
                raise FKBFormatError(f"{where()}: {ltype} layer without name=")
            layer = LayerSpec(ltype, name, config, [], layer_inputs)
            spec.layers.append(layer)
        elif rec == b"tensor" and not in_meta and not have_output:
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
        elif rec == b"output" and not in_meta and not have_output:
            if len(fields) != 2:
                raise FKBFormatError(f"{where()}: expected 'output NAME[,NAME,...]'")
            spec.outputs = [percent_decode(r, where()) for r in fields[1].split(b",")]
            have_output = True
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
            if rec in (b"layer", b"tensor", b"output") and in_meta:
                raise FKBFormatError(f"{where()}: {name!r} record after the metadata")
            if rec in (b"layer", b"tensor", b"output"):
                raise FKBFormatError(f"{where()}: {name!r} record after the output record")
            if rec == b"input":
                raise FKBFormatError(f"{where()}: 'input' record after the first layer")
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
    minor = 2 if spec.uses_v12() else 1  # 1.1 is what files without 1.2 features have
    parts = [_PREFIX.pack(MAGIC, FORMAT_MAJOR, minor, len(header)), header]
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
