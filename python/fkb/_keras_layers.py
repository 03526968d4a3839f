"""Keras layer configs -> FKB layers, shared by the Keras 3 and the legacy tf.keras readers.

A layer is converted from its class name, its ``get_config()`` dictionary, its weights (the
``get_weights()`` order) and the per-sample shapes of its inputs. Every config key is either used, checked to have the one value FKB
computes, or listed as irrelevant at inference (initializers, regularizers, constraints);
any other key is refused, so an option added by a future Keras is never silently dropped.
This module does not import Keras.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._errors import ShapeError, UnsupportedError
from ._format import ALPHA_DEFAULTS, LAYER_TYPES, LayerSpec

__all__ = ["SUPPORTED_CLASSES", "convert_layer", "check_dtype_policy", "ActivationResolver"]

#: (fkb activation name, alpha or None) from a Keras activation config value or object.
ActivationResolver = Callable[[Any, str], tuple[str, "float | None"]]

_IRRELEVANT = frozenset(
    [
        "name", "dtype",  # dtype is checked on its own (check_dtype_policy)
        "kernel_initializer", "bias_initializer", "beta_initializer", "gamma_initializer",
        "moving_mean_initializer", "moving_variance_initializer", "alpha_initializer",
        "beta_regularizer", "gamma_regularizer", "alpha_regularizer", "activity_regularizer",
        "kernel_constraint", "bias_constraint", "beta_constraint", "gamma_constraint",
        "alpha_constraint",
        "synchronized",  # batch normalization: training only
        "seed", "noise_shape",  # dropout: training only
        "data_format",  # checked where it matters (_channels_last)
        "build_config", "shared_object_id",
        # recurrent layers: initializers, constraints, training-only options
        "recurrent_initializer", "recurrent_regularizer", "recurrent_constraint",
        "kernel_regularizer", "bias_regularizer", "dropout", "recurrent_dropout",
        "unit_forget_bias", "unroll", "use_cudnn", "implementation", "zero_output_for_mask",
    ]
)
# Dense's regularizers are converted (training); other layers' are irrelevant at inference.
_DENSE_USED = frozenset(["kernel_regularizer", "bias_regularizer"])

#: Keras merge layers -> fkb types.
MERGE_CLASSES = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply",
                 "Average": "average", "Maximum": "maximum", "Minimum": "minimum"}
RNN_CLASSES = {"SimpleRNN": "simple_rnn", "LSTM": "lstm", "GRU": "gru"}

SUPPORTED_CLASSES = frozenset(
    [
        "InputLayer", "Dense", "Activation", "Dropout", "BatchNormalization",
        "LayerNormalization", "Normalization", "Flatten", "ReLU", "LeakyReLU", "ELU", "PReLU",
        "Softmax", "Concatenate", "Conv1D", "MaxPooling1D", "AveragePooling1D",
        "GlobalAveragePooling1D", "GlobalMaxPooling1D", "UpSampling1D", "ZeroPadding1D",
        "Cropping1D", "Reshape", "Permute", "RepeatVector", "TimeDistributed", "Bidirectional",
    ]
    + list(MERGE_CLASSES) + list(RNN_CLASSES)
)


def check_dtype_policy(layer_name: str, cls: str, policy: str) -> str:
    """The precision of a layer from its dtype policy name; refuses anything but float32/64."""
    if policy in ("float32", "float64"):
        return policy
    raise UnsupportedError(
        f"layer {layer_name!r} ({cls}): dtype policy {policy!r} is not supported; FKB computes "
        "in float32 or float64 (the whole model in one precision)"
    )


def _last_axis(layer: str, cls: str, axis: Any, rank: int = 1) -> None:
    """Accepts the last axis of per-sample data of ``rank`` (-1, or ``rank`` counting the batch
    axis as 0), or a one-element list of those."""
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise UnsupportedError(f"layer {layer!r} ({cls}): axis={axis!r}; only the last axis")
        axis = axis[0]
    if axis not in (-1, rank):
        raise UnsupportedError(f"layer {layer!r} ({cls}): axis={axis!r}; only the last axis "
                               "(axis=-1)")


def _shapes_arg(n: Any) -> list[tuple[int, ...]]:
    """Input shapes from a width, a shape, or a list of shapes."""
    if isinstance(n, (int, np.integer)):
        return [(int(n),)]
    n = list(n)
    if n and isinstance(n[0], (list, tuple)):
        return [tuple(int(d) for d in s) for s in n]
    return [tuple(int(d) for d in n)]


def _one(value: Any, what: str, where: str) -> int:
    """An int from Keras' int or one-element tuple (kernel_size=(3,))."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise UnsupportedError(f"{where}: {what}={value!r} is not one integer")
        value = value[0]
    return int(value)


def _weights(layer: str, cls: str, weights: list, names: list[str], shapes: list[tuple],
             dtype: str) -> list[tuple[str, np.ndarray]]:
    if len(weights) != len(names):
        raise ShapeError(
            f"layer {layer!r} ({cls}): {len(weights)} weights, expected {len(names)} ({names})"
        )
    out = []
    for w, name, shape in zip(weights, names, shapes):
        a = np.asarray(w)
        if tuple(a.shape) != tuple(shape):
            raise ShapeError(
                f"layer {layer!r} ({cls}): weight {name!r} has shape {a.shape}, expected {shape}"
            )
        if a.dtype != np.dtype(dtype):
            raise UnsupportedError(
                f"layer {layer!r} ({cls}): weight {name!r} is {a.dtype}, the model is {dtype}"
            )
        out.append((name, np.array(a, dtype=dtype, order="C")))
    return out


def convert_layer(
    cls: str,
    cfg: dict,
    weights: list,
    n: Any,
    dtype: str,
    resolve_activation: ActivationResolver,
) -> LayerSpec:
    """One Keras layer (class name, config, weights) -> LayerSpec.

    ``n``: the input width (rank-1 data), the per-sample input shape, or the list of the input
    shapes of a layer with several inputs (merge layers).
    """
    shapes = _shapes_arg(n)
    shape = shapes[0]
    n = shape[-1]
    rank = len(shape)
    name = str(cfg.get("name", "?"))
    where = f"layer {name!r} ({cls})"
    used: set[str] = set()

    def get(key: str, default: Any = None) -> Any:
        used.add(key)
        return cfg.get(key, default)

    def require(key: str, ok: Callable[[Any], bool], what: str, default: Any = None) -> Any:
        v = get(key, default)
        if not ok(v):
            raise UnsupportedError(f"{where}: {key}={v!r} is not supported ({what})")
        return v

    def channels_last() -> None:
        fmt = get("data_format", "channels_last")
        if fmt not in (None, "channels_last") and not (cls == "Flatten" and rank == 1):
            raise UnsupportedError(f"{where}: data_format={fmt!r} is not supported (FKB's 1-D "
                                   "layers are channels_last)")

    def act_config(config: dict, key: str = "activation") -> None:
        label = where if key == "activation" else f"{where} [{key}]"
        act, alpha = resolve_activation(get(key, "linear"), label)
        config[key] = act
        if alpha is not None:
            if key == "activation":
                config["alpha"] = alpha
            elif alpha != ALPHA_DEFAULTS[act]:
                raise UnsupportedError(f"{where}: {key} {act!r} with alpha={alpha!r}; FKB "
                                       f"keeps an alpha for the activation only")

    def steps_channels() -> None:
        if rank != 2:
            raise UnsupportedError(f"{where}: input shape {shape}; this layer takes "
                                   "(steps, channels) samples")

    def no_weights() -> list:
        return _weights(name, cls, weights, [], [], dtype)

    spec: LayerSpec
    if cls == "Dense":
        units = int(get("units"))
        use_bias = bool(get("use_bias", True))
        require("quantization_config", lambda v: v is None, "quantized layers")
        require("lora_rank", lambda v: not v, "LoRA layers")
        get("lora_alpha")
        act, alpha = resolve_activation(get("activation", "linear"), where)
        config: dict[str, Any] = {"units": units, "activation": act}
        if alpha is not None:
            config["alpha"] = alpha
        config["use_bias"] = use_bias
        for part in ("kernel", "bias"):
            l1, l2 = _regularizer(get(f"{part}_regularizer"), f"{where}: {part}_regularizer")
            if l1:
                config[f"{part}_l1"] = l1
            if l2:
                config[f"{part}_l2"] = l2
        names = ["kernel", "bias"] if use_bias else ["kernel"]
        wshapes = [(n, units), (units,)][: len(names)]
        spec = LayerSpec("dense", name, config, _weights(name, cls, weights, names, wshapes,
                                                         dtype))
    elif cls == "Activation":
        act, alpha = resolve_activation(get("activation"), where)
        config = {"activation": act}
        if alpha is not None:
            config["alpha"] = alpha
        spec = LayerSpec("activation", name, config, _weights(name, cls, weights, [], [], dtype))
    elif cls == "Dropout":
        rate = float(get("rate"))
        spec = LayerSpec("dropout", name, {"rate": rate},
                         _weights(name, cls, weights, [], [], dtype))
    elif cls == "Flatten":
        channels_last()
        spec = LayerSpec("flatten", name, {}, _weights(name, cls, weights, [], [], dtype))
    elif cls in ("BatchNormalization", "LayerNormalization"):
        _last_axis(name, cls, get("axis", -1), rank)
        center = bool(get("center", True))
        scale = bool(get("scale", True))
        config = {"epsilon": float(get("epsilon")), "center": center, "scale": scale}
        names = (["gamma"] if scale else []) + (["beta"] if center else [])
        if cls == "BatchNormalization":
            momentum = float(get("momentum", 0.99))
            if momentum != 0.99:
                config["momentum"] = momentum
            require("renorm", lambda v: not v, "batch renormalization")
            get("renorm_clipping")
            get("renorm_momentum")
            names += ["moving_mean", "moving_variance"]
            ltype = "batch_normalization"
        else:
            require("rms_scaling", lambda v: not v, "RMS scaling")
            ltype = "layer_normalization"
        spec = LayerSpec(ltype, name, config,
                         _weights(name, cls, weights, names, [(n,)] * len(names), dtype))
    elif cls == "Normalization":
        _last_axis(name, cls, get("axis", -1), rank)
        invert = bool(get("invert", False))
        mean, variance = get("mean"), get("variance")
        if mean is not None or variance is not None:
            # Values given to the constructor: Keras broadcasts them to the feature axis and
            # casts them to the layer's dtype.
            ws = [np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).astype(dtype)
                  for v in (mean, variance)]
            tensors = _weights(name, cls, ws, ["mean", "variance"], [(n,), (n,)], dtype)
        else:
            # Adapted state: mean, variance, count (count is only used by adapt()).
            if len(weights) == 3 and np.asarray(weights[2]).size == 1:
                weights = list(weights[:2])
            tensors = _weights(name, cls, weights, ["mean", "variance"], [(n,), (n,)], dtype)
        spec = LayerSpec("normalization", name, {"invert": invert}, tensors)
    elif cls == "ReLU":
        max_value = get("max_value")
        spec = LayerSpec(
            "relu", name,
            {"max_value": None if max_value is None else float(max_value),
             "negative_slope": float(get("negative_slope", 0.0)),
             "threshold": float(get("threshold", 0.0))},
            _weights(name, cls, weights, [], [], dtype),
        )
    elif cls == "LeakyReLU":
        if "negative_slope" in cfg:
            slope = get("negative_slope")
        else:
            slope = get("alpha", 0.3)  # Keras 2 name of the same value
        spec = LayerSpec("leaky_relu", name, {"negative_slope": float(slope)},
                         _weights(name, cls, weights, [], [], dtype))
    elif cls == "ELU":
        spec = LayerSpec("elu", name, {"alpha": float(get("alpha", 1.0))},
                         _weights(name, cls, weights, [], [], dtype))
    elif cls == "PReLU":
        require("shared_axes", lambda v: v is None or list(v) == [], "shared axes")
        spec = LayerSpec("prelu", name, {},
                         _weights(name, cls, weights, ["alpha"], [shape], dtype))
    elif cls == "Softmax":
        _last_axis(name, cls, get("axis", -1), rank)
        spec = LayerSpec("softmax", name, {}, _weights(name, cls, weights, [], [], dtype))
    elif cls in MERGE_CLASSES:
        if len(shapes) < 2 or any(s != shape for s in shapes):
            raise ShapeError(f"{where}: input shapes {shapes}; FKB merges inputs of one shape "
                             "(no broadcasting)")
        spec = LayerSpec(MERGE_CLASSES[cls], name, {}, no_weights())
    elif cls == "Concatenate":
        axis = int(get("axis", -1))
        spec = LayerSpec("concatenate", name, {"axis": axis}, no_weights())
    elif cls == "Conv1D":
        channels_last()
        steps_channels()
        require("lora_rank", lambda v: not v, "LoRA layers")
        get("lora_alpha")
        k = _one(get("kernel_size"), "kernel_size", where)
        stride = _one(get("strides", 1), "strides", where)
        dil = _one(get("dilation_rate", 1), "dilation_rate", where)
        padding = require("padding", lambda v: v in ("valid", "same", "causal"),
                          "valid, same or causal", "valid")
        filters, groups = int(get("filters")), int(get("groups", 1))
        use_bias = bool(get("use_bias", True))
        config = {"filters": filters, "kernel_size": k, "strides": stride, "padding": padding,
                  "dilation_rate": dil, "groups": groups}
        act_config(config)
        config["use_bias"] = use_bias
        if n % groups or filters % groups:
            raise ShapeError(f"{where}: groups={groups} does not divide {n} channels and "
                             f"{filters} filters")
        names = ["kernel", "bias"] if use_bias else ["kernel"]
        wshapes = [(k, n // groups, filters), (filters,)][: len(names)]
        spec = LayerSpec("conv1d", name, config,
                         _weights(name, cls, weights, names, wshapes, dtype))
    elif cls in ("MaxPooling1D", "AveragePooling1D"):
        channels_last()
        steps_channels()
        pool = _one(get("pool_size"), "pool_size", where)
        strides = get("strides")
        stride = pool if strides is None else _one(strides, "strides", where)
        padding = require("padding", lambda v: v in ("valid", "same"), "valid or same", "valid")
        ltype = "max_pooling1d" if cls == "MaxPooling1D" else "average_pooling1d"
        spec = LayerSpec(ltype, name, {"pool_size": pool, "strides": stride, "padding": padding},
                         no_weights())
    elif cls in ("GlobalAveragePooling1D", "GlobalMaxPooling1D"):
        channels_last()
        steps_channels()
        ltype = "global_average_pooling1d" if cls == "GlobalAveragePooling1D" \
            else "global_max_pooling1d"
        spec = LayerSpec(ltype, name, {"keepdims": bool(get("keepdims", False))}, no_weights())
    elif cls == "UpSampling1D":
        steps_channels()
        spec = LayerSpec("up_sampling1d", name, {"size": int(get("size", 2))}, no_weights())
    elif cls in ("ZeroPadding1D", "Cropping1D"):
        steps_channels()
        key = "padding" if cls == "ZeroPadding1D" else "cropping"
        if cls == "ZeroPadding1D":
            channels_last()
        v = get(key, 1)
        left, right = (int(v), int(v)) if isinstance(v, (int, np.integer)) else \
            (int(v[0]), int(v[1]))
        ltype = "zero_padding1d" if cls == "ZeroPadding1D" else "cropping1d"
        spec = LayerSpec(ltype, name, {"left": left, "right": right}, no_weights())
    elif cls == "Reshape":
        target = [int(d) for d in get("target_shape")]
        size = int(np.prod(shape))
        if target.count(-1) > 1:
            raise UnsupportedError(f"{where}: target_shape {tuple(target)} has several -1")
        if -1 in target:
            known = int(np.prod([d for d in target if d != -1]))
            if known <= 0 or size % known:
                raise ShapeError(f"{where}: target_shape {tuple(target)} does not fit the "
                                 f"{size} values of shape {shape}")
            target[target.index(-1)] = size // known
        spec = LayerSpec("reshape", name, {"target_shape": target}, no_weights())
    elif cls == "Permute":
        spec = LayerSpec("permute", name, {"dims": [int(d) for d in get("dims")]}, no_weights())
    elif cls == "RepeatVector":
        spec = LayerSpec("repeat_vector", name, {"n": int(get("n"))}, no_weights())
    elif cls in RNN_CLASSES:
        steps_channels()
        ltype = RNN_CLASSES[cls]
        require("return_state", lambda v: not v, "return_state: FKB layers have one output")
        require("time_major", lambda v: not v, "time-major data")
        get("seed")
        units = int(get("units"))
        use_bias = bool(get("use_bias", True))
        config = {"units": units}
        act_config(config)
        config.update({"use_bias": use_bias,
                       "return_sequences": bool(get("return_sequences", False)),
                       "go_backwards": bool(get("go_backwards", False)),
                       "stateful": bool(get("stateful", False))})
        if ltype != "simple_rnn":
            act_config(config, "recurrent_activation")
        if ltype == "gru":
            config["reset_after"] = bool(get("reset_after", True))
        wanted = LAYER_TYPES[ltype].tensors(config, shape)
        spec = LayerSpec(ltype, name, config,
                         _weights(name, cls, weights, [w[0] for w in wanted],
                                  [w[1] for w in wanted], dtype))
    elif cls == "Bidirectional":
        spec = _bidirectional(cfg, get, weights, shape, dtype, resolve_activation, where, name)
    elif cls == "TimeDistributed":
        inner = get("layer") or {}
        icls = inner.get("class_name") if isinstance(inner, dict) else None
        if icls != "Dense" or inner.get("registered_name") not in (None, "Dense"):
            raise UnsupportedError(f"{where}: wraps a {icls or inner!r} layer; FKB converts "
                                   "TimeDistributed(Dense) only")
        if rank < 2:
            raise UnsupportedError(f"{where}: input shape {shape} has no time axis")
        icfg = dict(inner.get("config") or {})
        icfg["name"] = name
        icfg.pop("batch_input_shape", None)
        if icfg.get("trainable", True) is False:
            cfg = dict(cfg, trainable=False)
        spec = convert_layer("Dense", icfg, weights, shape[1:], dtype, resolve_activation)
        spec.config["time_distributed"] = True
        spec.config.pop("trainable", None)
    else:
        raise UnsupportedError(f"{where}: layer type {cls!r} is not supported by FKB")

    if get("trainable", True) is False and spec.tensors:
        spec.config["trainable"] = False
    irrelevant = _IRRELEVANT - _DENSE_USED if cls == "Dense" else _IRRELEVANT
    unknown = sorted(k for k in cfg if k not in used and k not in irrelevant)
    if unknown:
        raise UnsupportedError(
            f"{where}: option(s) {', '.join(unknown)} not supported by FKB "
            f"(values {[cfg[k] for k in unknown]!r})"
        )
    return spec


def _bidirectional(cfg: dict, get: Callable, weights: list, shape: tuple, dtype: str,
                   resolve_activation: ActivationResolver, where: str, name: str) -> LayerSpec:
    """Bidirectional(SimpleRNN|LSTM|GRU) -> one `bidirectional` layer."""
    merge_mode = get("merge_mode", "concat")
    if merge_mode not in ("concat", "sum", "mul", "ave"):
        raise UnsupportedError(f"{where}: merge_mode={merge_mode!r} is not supported (concat, "
                               "sum, mul, ave; None gives two outputs)")
    fwd, bwd = get("layer"), get("backward_layer")
    if not isinstance(fwd, dict) or fwd.get("class_name") not in RNN_CLASSES or \
            fwd.get("registered_name") not in (None, fwd.get("class_name")):
        label = fwd.get("class_name") if isinstance(fwd, dict) else fwd
        raise UnsupportedError(f"{where}: wraps a {label!r} layer; FKB converts Bidirectional "
                               "SimpleRNN, LSTM and GRU")
    icls = fwd["class_name"]
    fcfg = dict(fwd.get("config") or {})
    if bwd is not None:
        bcfg = dict((bwd or {}).get("config") or {})
        same = bwd.get("class_name") == icls and all(
            bcfg.get(k) == v for k, v in fcfg.items()
            if k not in _IRRELEVANT and k != "go_backwards")
        if not same or bool(bcfg.get("go_backwards")) == bool(fcfg.get("go_backwards")):
            raise UnsupportedError(f"{where}: the backward layer differs from the forward layer "
                                   "(other than go_backwards); FKB needs two layers of one "
                                   "configuration")
    half = len(weights) // 2
    fcfg["name"] = name
    inner = convert_layer(icls, fcfg, weights[:half], shape, dtype, resolve_activation)
    back = convert_layer(icls, dict(fcfg, go_backwards=not fcfg.get("go_backwards", False)),
                         weights[half:], shape, dtype, resolve_activation)
    config: dict[str, Any] = {"merge_mode": merge_mode, "layer": inner.type}
    config.update({k: v for k, v in inner.config.items() if k != "trainable"})
    tensors = [("forward_" + n, t) for n, t in inner.tensors] + \
        [("backward_" + n, t) for n, t in back.tensors]
    if len(weights) != len(tensors):
        raise ShapeError(f"{where}: {len(weights)} weights, expected {len(tensors)}")
    return LayerSpec("bidirectional", name, config, tensors)


def _regularizer(value: Any, where: str) -> tuple[float, float]:
    """(l1, l2) of a Keras L1, L2 or L1L2 regularizer (config dict or object); (0, 0) for none.
    Others are refused: FKB's training would silently differ from Keras'."""
    if value is None:
        return 0.0, 0.0
    if isinstance(value, dict):
        cls, cfg = value.get("class_name"), value.get("config", {}) or {}
    else:
        cls, cfg = type(value).__name__, value.get_config()
    if cls in ("L1", "L2", "L1L2"):
        return float(cfg.get("l1", 0.0) or 0.0), float(cfg.get("l2", 0.0) or 0.0)
    raise UnsupportedError(f"{where}: regularizer {cls!r} is not supported (FKB has L1, L2, "
                           "L1L2)")


def alpha_for(act: str, alpha: float | None) -> float | None:
    """Alpha to write for an activation: given value, default for leaky_relu/elu, else None."""
    if act in ALPHA_DEFAULTS:
        return float(ALPHA_DEFAULTS[act] if alpha is None else alpha)
    return None
