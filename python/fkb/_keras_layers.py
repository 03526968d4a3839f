"""Keras layer configs -> FKB layers, shared by the Keras 3 and the legacy tf.keras readers.

A layer is converted from its class name, its ``get_config()`` dictionary and its weights (the
``get_weights()`` order). Every config key is either used, checked to have the one value FKB
computes, or listed as irrelevant at inference (initializers, regularizers, constraints);
any other key is refused, so an option added by a future Keras is never silently dropped.
This module does not import Keras.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._errors import ShapeError, UnsupportedError
from ._format import ALPHA_DEFAULTS, LayerSpec

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
        "data_format",  # flatten of rank-1 samples: no effect
        "build_config", "shared_object_id",
    ]
)

SUPPORTED_CLASSES = frozenset(
    [
        "InputLayer", "Dense", "Activation", "Dropout", "BatchNormalization",
        "LayerNormalization", "Normalization", "Flatten", "ReLU", "LeakyReLU", "ELU", "PReLU",
        "Softmax",
    ]
)


def check_dtype_policy(layer_name: str, cls: str, policy: str) -> str:
    """The precision of a layer from its dtype policy name; refuses anything but float32/64."""
    if policy in ("float32", "float64"):
        return policy
    raise UnsupportedError(
        f"layer {layer_name!r} ({cls}): dtype policy {policy!r} is not supported; FKB computes "
        "in float32 or float64 (the whole model in one precision)"
    )


def _last_axis(layer: str, cls: str, axis: Any) -> None:
    """Accepts axis -1 / 1 (rank-2 data) or a one-element list of those."""
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise UnsupportedError(f"layer {layer!r} ({cls}): axis={axis!r}; only the last axis")
        axis = axis[0]
    if axis not in (-1, 1):
        raise UnsupportedError(f"layer {layer!r} ({cls}): axis={axis!r}; only the last axis")


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
    n: int,
    dtype: str,
    resolve_activation: ActivationResolver,
) -> LayerSpec:
    """One Keras layer (class name, config, weights) with input width n -> LayerSpec."""
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
        shapes = [(n, units), (units,)][: len(names)]
        spec = LayerSpec("dense", name, config, _weights(name, cls, weights, names, shapes, dtype))
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
        spec = LayerSpec("flatten", name, {}, _weights(name, cls, weights, [], [], dtype))
    elif cls in ("BatchNormalization", "LayerNormalization"):
        _last_axis(name, cls, get("axis", -1))
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
        _last_axis(name, cls, get("axis", -1))
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
                         _weights(name, cls, weights, ["alpha"], [(n,)], dtype))
    elif cls == "Softmax":
        _last_axis(name, cls, get("axis", -1))
        spec = LayerSpec("softmax", name, {}, _weights(name, cls, weights, [], [], dtype))
    else:
        raise UnsupportedError(f"{where}: layer type {cls!r} is not supported by FKB")

    if get("trainable", True) is False and spec.tensors:
        spec.config["trainable"] = False
    unknown = sorted(k for k in cfg if k not in used and k not in _IRRELEVANT)
    if unknown:
        raise UnsupportedError(
            f"{where}: option(s) {', '.join(unknown)} not supported by FKB "
            f"(values {[cfg[k] for k in unknown]!r})"
        )
    return spec


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
