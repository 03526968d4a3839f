"""Keras 3 models (live, `.keras`, Keras-3 `.h5`) and legacy tf.keras `.h5` files -> ModelSpec.

Sequential models and Functional graphs (several inputs and outputs, skip connections, merges;
nested models are inlined) are read. Files are opened by their content, not their name; Keras 3 files are
loaded with ``safe_mode=True`` after their stored config was checked for unsupported layers,
legacy tf.keras `.h5` files are read with h5py and ``json.loads`` only (see _legacy_h5).
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from typing import Any

import numpy as np

from ._errors import FKBFileError, FKBFormatError, ShapeError, UnsupportedError
from ._format import LAYER_TYPES, InputSpec, LayerSpec, ModelSpec
from ._custom import custom_for_class
from ._keras_layers import SUPPORTED_CLASSES, check_dtype_policy, convert_layer

__all__ = ["spec_from_keras", "spec_from_path", "load_keras_file", "check_config_layers"]

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_MODEL_CLASSES = ("Sequential", "Functional", "Model")


def _keras():
    import keras

    from . import _keras_objects  # noqa: F401  (registers fkb>gelu_tanh & co.)

    return keras


def _fkb_version() -> str:
    from . import __version__

    return __version__


# --------------------------------------------------------------------------------------------
# Activations of a live Keras 3 layer
# --------------------------------------------------------------------------------------------

_ACT_TABLE: dict[int, str] | None = None


def _activation_table() -> dict[int, str]:
    global _ACT_TABLE
    if _ACT_TABLE is None:
        keras = _keras()
        from . import _keras_objects as ko

        a = keras.activations
        names = [
            "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "mish",
            "softplus", "softsign", "tanh", "sigmoid", "hard_sigmoid", "hard_silu",
            "exponential", "softmax", "log_softmax",
        ]
        table = {id(getattr(a, n)): n for n in names}
        table[id(a.swish)] = "silu"
        table[id(a.hard_swish)] = "hard_silu"
        table[id(ko.gelu_tanh)] = "gelu_tanh"
        _ACT_TABLE = table
    return _ACT_TABLE


def resolve_activation_k3(obj: Any, where: str) -> tuple[str, float | None]:
    """fkb activation name and alpha of a Keras 3 activation (object or config value)."""
    keras = _keras()
    from . import _keras_objects as ko

    if obj is None:
        return "linear", None
    if isinstance(obj, (str, dict)):
        try:
            obj = keras.activations.get(obj)
        except Exception as e:  # unknown name or unregistered object
            raise UnsupportedError(f"{where}: activation {obj!r} is not supported") from e
    if type(obj) is ko.LeakyReLUActivation:
        return "leaky_relu", obj.alpha
    if type(obj) is ko.ELUActivation:
        return "elu", obj.alpha
    name = _activation_table().get(id(obj))
    if name is None:
        label = getattr(obj, "__name__", None) or type(obj).__name__
        raise UnsupportedError(f"{where}: activation {label!r} is not supported by FKB")
    if name == "leaky_relu":
        return name, 0.2
    if name == "elu":
        return name, 1.0
    return name, None


# --------------------------------------------------------------------------------------------
# Live models
# --------------------------------------------------------------------------------------------


def _chain_layers(model: Any) -> tuple[Any, list[Any]]:
    """(input KerasTensor, layers in order) of a chain model; nested chain models flattened.
    Refuses graphs (kept for callers that need a chain, e.g. per-layer checks)."""
    keras = _keras()
    if isinstance(model, keras.Sequential):
        if not model.built or not getattr(model, "inputs", None):
            raise UnsupportedError(
                f"model {model.name!r} is not built: give it a keras.Input or call it on data"
            )
        return model.inputs[0], _flatten(list(model.layers))
    from keras.src.models.functional import Functional

    if not isinstance(model, Functional):
        raise UnsupportedError(
            f"model {getattr(model, 'name', '?')!r} of class {type(model).__name__} is a "
            "subclassed model; FKB reads Sequential and Functional models"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedError(
            f"model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} "
            "outputs; not a chain"
        )
    inp = model.inputs[0]
    t = model.outputs[0]
    layers: list[Any] = []
    while t is not inp:
        op, node_index, _ = t._keras_history
        node = op._inbound_nodes[node_index]
        if isinstance(op, keras.layers.InputLayer) or len(node.input_tensors) != 1:
            raise UnsupportedError(f"model {model.name!r} is not a chain")
        layers.append(op)
        t = node.input_tensors[0]
    layers.reverse()
    return inp, _flatten(layers)


def _flatten(layers: list[Any]) -> list[Any]:
    keras = _keras()
    out = []
    for layer in layers:
        if isinstance(layer, keras.Model):
            _, inner = _chain_layers(layer)
            out.extend(inner)
        elif isinstance(layer, keras.layers.InputLayer):
            continue
        else:
            out.append(layer)
    return out


def _per_sample(shape: Any) -> tuple:
    return tuple(shape)[1:]


class _GraphReader:
    """Walks a Keras 3 model's graph from its outputs and converts every layer call, in an
    execution order (inputs before the layers that take them); nested models are inlined."""

    def __init__(self, model: Any):
        self.keras = _keras()
        self.model = model
        self.layers: list[LayerSpec] = []
        self.shapes: dict[str, tuple] = {}
        self.dtype: str | None = None
        self.done: dict[tuple, list[str]] = {}
        self.calls: dict[int, int] = {}
        self.stateful_batch: int | None = None

    # -- names -------------------------------------------------------------------------

    def _claim(self, name: str, what: str) -> None:
        if name in self.shapes:
            raise UnsupportedError(
                f"model {self.model.name!r}: two {what}s named {name!r} (nested models?); FKB "
                "needs unique names")

    def add_input(self, name: str, shape: Any) -> str:
        shape = tuple(shape)
        if not shape or any(d is None for d in shape):
            raise UnsupportedError(
                f"model {self.model.name!r}: input {name!r} has per-sample shape {shape}; FKB "
                "needs every dimension but the batch known (e.g. a fixed number of steps)")
        self._claim(name, "input")
        self.shapes[name] = tuple(int(d) for d in shape)
        return name

    # -- layers ------------------------------------------------------------------------

    def convert(self, layer: Any, srcs: list[str], keras_out: Any) -> str:
        keras = self.keras
        cls = type(layer).__name__
        k = self.calls.get(id(layer), 0)
        self.calls[id(layer)] = k + 1
        name = layer.name
        if k:
            if layer.weights:
                raise UnsupportedError(
                    f"layer {layer.name!r} ({cls}) is used {k + 1} times (a shared layer with "
                    "weights); FKB needs one layer per call")
            name = f"{layer.name}_{k}"
            while name in self.shapes:
                name += "_"
        custom = custom_for_class(type(layer))
        if custom is not None:
            return self.convert_custom(layer, custom, name, srcs, keras_out)
        if cls not in SUPPORTED_CLASSES or getattr(keras.layers, cls, None) is not type(layer):
            if cls == "Lambda":
                raise UnsupportedError(
                    f"layer {layer.name!r} is a Lambda layer (arbitrary Python code); FKB does "
                    "not convert it"
                )
            if cls == "Masking":
                raise UnsupportedError(f"layer {layer.name!r} (Masking): masking is not "
                                       "supported by FKB")
            raise UnsupportedError(
                f"layer {layer.name!r}: layer type {cls!r} ({type(layer).__module__}) is not "
                "supported by FKB (a layer class of your own can be registered with "
                "fkb.register_layer)"
            )
        self._layer_dtype(layer, cls)
        cfg = dict(layer.get_config())
        cfg["name"] = name
        weights = [np.asarray(w) for w in layer.get_weights()]
        if cls == "Normalization":
            if keras.config.epsilon() != 1e-7:
                raise UnsupportedError(
                    f"layer {layer.name!r} (Normalization): keras.config.epsilon() is "
                    f"{keras.config.epsilon()!r}; FKB's normalization uses 1e-7"
                )
            cfg.pop("mean", None)
            cfg.pop("variance", None)
            # The tensors Keras computes with, whether adapted or given to the constructor.
            weights = [np.reshape(keras.ops.convert_to_numpy(v), (-1,))
                       for v in (layer.mean, layer.variance)]
        if cls == "Dense" and getattr(layer, "quantization_mode", None):
            raise UnsupportedError(f"layer {layer.name!r} (Dense): quantized layers")
        if getattr(layer, "stateful", False) or getattr(
                getattr(layer, "forward_layer", None), "stateful", False):
            self.stateful_batch = self.stateful_batch or _static_batch(keras_out)
        owner = getattr(layer, "forward_layer", None) or getattr(layer, "layer", None) or layer

        def resolve(value: Any, where: str, _layer: Any = owner) -> tuple[str, float | None]:
            attr = "recurrent_activation" if where.endswith("[recurrent_activation]") \
                else "activation"
            return resolve_activation_k3(getattr(_layer, attr, value), where)

        in_shapes = [self.shapes[s] for s in srcs]
        ls = convert_layer(cls, cfg, weights, in_shapes if len(in_shapes) > 1 else in_shapes[0],
                           self.dtype, resolve)
        ls.inputs = list(srcs)
        ls.name = name
        lt = LAYER_TYPES[ls.type]
        try:
            out = lt.out_shape(ls.config, in_shapes)
        except ShapeError as e:
            raise ShapeError(f"layer {layer.name!r} ({cls}): {e}") from None
        want = _per_sample(keras_out.shape) if keras_out is not None else out
        if tuple(want) != tuple(out):
            raise ShapeError(
                f"layer {layer.name!r} ({cls}): Keras gives per-sample shape {tuple(want)}, FKB "
                f"would compute {out}")
        self._claim(name, "layer")
        self.shapes[name] = out
        self.layers.append(ls)
        return name

    def _layer_dtype(self, layer: Any, cls: str) -> None:
        policy = getattr(layer.dtype_policy, "name", str(layer.dtype_policy))
        d = check_dtype_policy(layer.name, cls, policy)
        if self.dtype is None:
            self.dtype = d
        elif d != self.dtype:
            raise UnsupportedError(
                f"layer {layer.name!r} ({cls}) computes in {d} while the layers before it "
                f"compute in {self.dtype}; FKB needs one precision per model"
            )

    def convert_custom(self, layer: Any, lt: Any, name: str, srcs: list[str],
                       keras_out: Any) -> str:
        """A layer of a class registered with fkb.register_layer -> its registered type."""
        cls = type(layer).__name__
        where = f"layer {layer.name!r} ({cls}, registered as {lt.name!r})"
        if len(srcs) != 1:
            raise UnsupportedError(f"{where}: takes {len(srcs)} inputs; a registered layer "
                                   "type takes one")
        self._layer_dtype(layer, cls)
        ls = custom_layer_spec(layer, lt, name, self.dtype, where)
        ls.inputs = list(srcs)
        in_shapes = [self.shapes[s] for s in srcs]
        try:
            out = lt.out_shape(ls.config, in_shapes)
        except ShapeError as e:
            raise ShapeError(f"{where}: {e}") from None
        want = _per_sample(keras_out.shape) if keras_out is not None else out
        if tuple(want) != tuple(out):
            raise ShapeError(
                f"{where}: Keras gives per-sample shape {tuple(want)}, the registered type's "
                f"output_shape gives {out} (give register_layer an output_shape)")
        self._claim(name, "layer")
        self.shapes[name] = out
        self.layers.append(ls)
        return name

    # -- graph walk ----------------------------------------------------------------------

    def tensor(self, t: Any, ctx: dict, ctx_key: tuple) -> str:
        """The FKB name of KerasTensor ``t`` (converting what it depends on first)."""
        keras = self.keras
        if id(t) in ctx:
            return ctx[id(t)]
        hist = getattr(t, "_keras_history", None)
        if hist is None:
            raise UnsupportedError(f"model {self.model.name!r}: a value that is not a Keras "
                                   "tensor")
        op, node_index, tensor_index = hist
        if isinstance(op, keras.layers.InputLayer):
            raise UnsupportedError(
                f"model {self.model.name!r}: input {op.name!r} is not an input of the model")
        key = ctx_key + ((id(op), node_index),)
        if key not in self.done:
            node = op._inbound_nodes[node_index]
            if not isinstance(op, keras.layers.Layer):
                raise UnsupportedError(
                    f"model {self.model.name!r}: operation {op.name!r} ({type(op).__name__}) "
                    "is not a layer FKB supports"
                )
            kwargs = {k: v for k, v in node.arguments.kwargs.items() if not _all_none(v)}
            if kwargs.get("training") is False:
                kwargs.pop("training")
            if kwargs:
                raise UnsupportedError(
                    f"layer {op.name!r} ({type(op).__name__}) is called with {sorted(kwargs)}; "
                    "FKB supports plain calls only"
                )
            srcs = [self.tensor(x, ctx, ctx_key) for x in node.input_tensors]
            if isinstance(op, keras.Model):
                self.done[key] = self.nested(op, srcs, key)
            else:
                if len(node.output_tensors) != 1:
                    raise UnsupportedError(
                        f"layer {op.name!r} ({type(op).__name__}) has "
                        f"{len(node.output_tensors)} outputs; FKB layers have one")
                if not srcs:
                    raise UnsupportedError(f"layer {op.name!r} takes no input")
                self.done[key] = [self.convert(op, srcs, node.output_tensors[0])]
        return self.done[key][tensor_index]

    def nested(self, model: Any, srcs: list[str], key: tuple) -> list[str]:
        """Inlines a model called inside another one; returns its outputs' names."""
        keras = self.keras
        if isinstance(model, keras.Sequential):
            if len(srcs) != 1:
                raise UnsupportedError(f"model {model.name!r} takes {len(srcs)} inputs")
            return [self.chain(list(model.layers), srcs[0], key)]
        from keras.src.models.functional import Functional

        if not isinstance(model, Functional):
            raise UnsupportedError(
                f"model {model.name!r} of class {type(model).__name__} is a subclassed model; "
                "FKB reads Sequential and Functional models")
        if len(model.inputs) != len(srcs):
            raise UnsupportedError(f"model {model.name!r} is called with {len(srcs)} inputs, "
                                   f"it has {len(model.inputs)}")
        ctx = {id(t): s for t, s in zip(model.inputs, srcs)}
        return [self.tensor(t, ctx, key) for t in model.outputs]

    def chain(self, layers: list[Any], src: str, key: tuple) -> str:
        """The layers of a Sequential model one after the other, from ``src``."""
        keras = self.keras
        for layer in layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if isinstance(layer, keras.Model):
                outs = self.nested(layer, [src], key + ((id(layer), -1),))
                if len(outs) != 1:
                    raise UnsupportedError(f"model {layer.name!r} has {len(outs)} outputs "
                                           "inside a Sequential model")
                src = outs[0]
            else:
                try:
                    out = layer.output if len(layer._inbound_nodes) == 1 else None
                except Exception:
                    out = None
                src = self.convert(layer, [src], out)
        return src


def custom_layer_spec(layer: Any, lt: Any, name: str, dtype: str, where: str) -> LayerSpec:
    """The LayerSpec of a Keras layer of a registered type (to_config_and_weights)."""
    from ._custom import check_option_key

    try:
        result = lt.to_config_and_weights(layer)
    except Exception as e:
        raise UnsupportedError(f"{where}: to_config_and_weights failed: "
                               f"{type(e).__name__}: {e}") from e
    if not isinstance(result, (tuple, list)) or len(result) != 2 or \
            not isinstance(result[0], dict):
        raise UnsupportedError(f"{where}: to_config_and_weights must return (config dict, "
                               f"list of weights), not {type(result).__name__}")
    config = dict(result[0])
    weights = list(result[1])
    for key in ("name", "dtype", "trainable"):
        config.pop(key, None)  # FKB takes these from the layer itself
    names = config.pop("tensor_names", None)
    if names is None:
        names = [f"w{k}" for k in range(len(weights))]
    elif isinstance(names, str) or len(list(names)) != len(weights):
        raise ShapeError(f"{where}: tensor_names {names!r} does not name the {len(weights)} "
                         "weights one by one")
    for key in config:
        try:
            check_option_key(key)
        except UnsupportedError as e:
            raise UnsupportedError(f"{where}: {e}") from None
    tensors = []
    for tname, w in zip(list(names), weights):
        a = np.asarray(w)
        if a.dtype.kind not in "fiub":
            raise UnsupportedError(f"{where}: weight {tname!r} of dtype {a.dtype} is not "
                                   "numeric")
        b = np.array(a, dtype=dtype, order="C")
        if a.dtype != b.dtype and not np.array_equal(b.astype(a.dtype), a, equal_nan=True):
            raise UnsupportedError(f"{where}: weight {tname!r} ({a.dtype}) has values that "
                                   f"{dtype} cannot hold exactly; the model is {dtype}")
        if b.ndim == 0:
            b = b.reshape(1)
        tensors.append((str(tname), b))
    if not getattr(layer, "trainable", True) and tensors:
        config["trainable"] = False
    return LayerSpec(lt.name, name, config, tensors)


def _all_none(v: Any) -> bool:
    """None, or a list/tuple/dict of such (e.g. mask=[None, None] of a nested model call)."""
    if v is None:
        return True
    if isinstance(v, (list, tuple)):
        return all(_all_none(x) for x in v)
    if isinstance(v, dict):
        return all(_all_none(x) for x in v.values())
    return False


def _static_batch(t: Any) -> int | None:
    try:
        b = tuple(t.shape)[0]
    except Exception:
        return None
    return int(b) if b is not None else None


def spec_from_keras(model: Any, source: str | None = None,
                    training_config: str | None = None) -> ModelSpec:
    """A live Keras 3 model -> ModelSpec (refusing whatever FKB cannot compute exactly).

    Sequential models, and Functional models with any number of inputs and outputs, skip
    connections, merges and nested models (inlined). A file that is a chain over one rank-1
    input stays a format 1.0/1.1 file (its input is called ``input``).
    """
    keras = _keras()
    from keras.src.models.functional import Functional

    if not isinstance(model, keras.Model):
        raise UnsupportedError(f"{type(model).__name__} is not a Keras 3 model")
    g = _GraphReader(model)
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, 20000))
    try:
        if isinstance(model, keras.Sequential):
            if not model.built or not getattr(model, "inputs", None):
                raise UnsupportedError(
                    f"model {model.name!r} is not built: give it a keras.Input or call it on "
                    "data")
            inp = model.inputs[0]
            taken = any(layer.name == "input" for layer in _all_layers(model))
            in_name = g.add_input(_input_name(inp, "input") if taken else "input",
                                  _per_sample(inp.shape))
            g.stateful_batch = _static_batch(inp) if _has_stateful(model) else None
            outputs = [g.chain(list(model.layers), in_name, ())]
            in_names = [in_name]
        elif isinstance(model, Functional):
            in_names = [g.add_input(_input_name(t, f"input_{k + 1}"), _per_sample(t.shape))
                        for k, t in enumerate(model.inputs)]
            if _has_stateful(model):
                g.stateful_batch = _static_batch(model.inputs[0])
            ctx = {id(t): n for t, n in zip(model.inputs, in_names)}
            outputs = [g.tensor(t, ctx, ()) for t in model.outputs]
        else:
            raise UnsupportedError(
                f"model {getattr(model, 'name', '?')!r} of class {type(model).__name__} is a "
                "subclassed model; FKB reads Sequential and Functional models"
            )
    finally:
        sys.setrecursionlimit(old_limit)
    if len(set(outputs)) != len(outputs):
        raise UnsupportedError(f"model {model.name!r}: the same value is output twice")
    dtype = g.dtype or check_dtype_policy("input", "InputLayer", keras.config.floatx())
    inputs = [InputSpec(n, g.shapes[n]) for n in in_names]
    spec = ModelSpec(dtype=dtype, n_inputs=None, layers=g.layers, inputs=inputs,
                     outputs=list(outputs))
    if spec.is_chain() and len(inputs[0].shape) == 1 and \
            all(layer.name != "input" for layer in spec.layers):
        # A chain over one rank-1 input: the format 1.0 file of earlier versions.
        spec.inputs = [InputSpec("input", inputs[0].shape)]
        spec.outputs = []
        for layer in spec.layers:
            layer.inputs = None
    elif spec.is_chain() and isinstance(model, keras.Sequential):
        for layer in spec.layers:
            layer.inputs = None
        spec.outputs = []
    spec.metadata["name"] = str(model.name)
    spec.metadata["keras_version"] = keras.__version__
    spec.metadata["fkb_version"] = _fkb_version()
    if source:
        spec.metadata["source"] = os.fspath(source)
    if g.stateful_batch:
        spec.metadata["batch_size"] = str(g.stateful_batch)
    if training_config is None:
        try:
            cc = model.get_compile_config()
        except Exception:
            cc = None
        if cc:
            training_config = json.dumps(cc, default=str, sort_keys=True)
    if training_config:
        spec.metadata["training_config"] = training_config
    spec.training = _training_records(model) or _records_from_config(training_config)
    spec.validate()
    return spec


def _input_name(t: Any, default: str) -> str:
    hist = getattr(t, "_keras_history", None)
    name = getattr(hist[0], "name", None) if hist else None
    return str(name) if name else default


def _all_layers(model: Any) -> list[Any]:
    if hasattr(model, "_flatten_layers"):
        return list(model._flatten_layers(include_self=False))
    return list(model.layers)


def _has_stateful(model: Any) -> bool:
    return any(getattr(layer, "stateful", False) for layer in _all_layers(model))


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def check_config_layers(config: Any, where: str) -> None:
    """Refuses, by name, Lambda and any layer class FKB does not convert, before loading."""
    if isinstance(config, list):  # very old Keras Sequential config: a list of layers
        for layer in config:
            check_config_layers(layer, where)
        return
    if not isinstance(config, dict):
        raise FKBFormatError(f"{where}: model config is not a JSON object")
    cls = config.get("class_name")
    inner = config.get("config")
    if cls in _MODEL_CLASSES:
        layers = inner if isinstance(inner, list) else (inner or {}).get("layers", [])
        for layer in layers:
            check_config_layers(layer, where)
        return
    name = (inner or {}).get("name", config.get("name", "?")) if isinstance(inner, dict) else "?"
    if cls == "Lambda":
        raise UnsupportedError(
            f"{where}: layer {name!r} is a Lambda layer (arbitrary Python code); FKB does not "
            "convert it"
        )
    registered = config.get("registered_name")
    if _custom_for_config(cls, registered) is not None:
        return
    if cls not in SUPPORTED_CLASSES or registered not in (None, cls):
        label = registered or cls
        if cls == "Masking":
            raise UnsupportedError(f"{where}: layer {name!r} (Masking): masking is not "
                                   "supported by FKB")
        raise UnsupportedError(
            f"{where}: layer {name!r}: layer type {label!r} is not supported by FKB (a layer "
            "class of your own can be registered with fkb.register_layer)"
        )
    if cls in ("TimeDistributed", "Bidirectional") and isinstance(inner, dict):
        for key in ("layer", "backward_layer"):
            sub = inner.get(key)
            if isinstance(sub, dict):
                check_config_layers(sub, where)


def _custom_for_config(cls: Any, registered: Any) -> Any:
    """The registered FKB type of a layer config's class (by Keras' registered name, or by
    class name when the config has none)."""
    from ._format import CUSTOM_LAYER_TYPES

    if not CUSTOM_LAYER_TYPES:
        return None
    keras = _keras()
    for lt in CUSTOM_LAYER_TYPES.values():
        k = lt.keras_class
        if registered is not None:
            if registered in (keras.saving.get_registered_name(k), k.__name__) and \
                    cls == k.__name__:
                return lt
        elif cls == k.__name__:
            return lt
    return None


def _custom_objects() -> dict:
    """Keras custom_objects for the registered FKB types' classes."""
    from ._format import CUSTOM_LAYER_TYPES

    keras = _keras()
    out = {}
    for lt in CUSTOM_LAYER_TYPES.values():
        out[lt.keras_class.__name__] = lt.keras_class
        out[keras.saving.get_registered_name(lt.keras_class)] = lt.keras_class
    return out


def _sniff(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except OSError as e:
        raise FKBFileError(e.errno, f"cannot read {path}: {e.strerror}", path) from e


def load_keras_file(path: str | os.PathLike) -> tuple[Any, str | None]:
    """(Keras 3 model, training config JSON or None) of a `.keras` or Keras-3 `.h5` file."""
    keras = _keras()
    path = os.fspath(path)
    head = _sniff(path)
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as z:
                config = json.loads(z.read("config.json"))
        except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
            raise FKBFormatError(f"{path}: not a readable .keras file ({e})") from e
        check_config_layers(config, path)
        cc = config.get("compile_config")
        training = json.dumps(cc, sort_keys=True) if cc else None
    elif head == HDF5_MAGIC:
        training = None
        with _open_h5(path) as f:
            raw = f.attrs.get("model_config")
            if raw is None:
                raise FKBFormatError(f"{path}: HDF5 file without a Keras model (weights only?)")
            check_config_layers(json.loads(_text(raw)), path)
            if "training_config" in f.attrs:
                training = _text(f.attrs["training_config"])
    else:
        raise FKBFormatError(f"{path}: not a Keras model file (.keras archive or HDF5)")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True,
                                        custom_objects=_custom_objects() or None)
    except (UnsupportedError, FKBFormatError):
        raise
    except Exception as e:
        raise FKBFormatError(f"{path}: Keras cannot load this model: {e}") from e
    return model, training


def _text(raw: Any) -> str:
    return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)


def _open_h5(path: str):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise FKBFormatError(f"{path}: not a readable HDF5 file (truncated?): {e}") from e


def h5_keras_major(path: str) -> int:
    """2 for tf.keras 2.x (or older) `.h5` files, 3 for Keras 3 ones."""
    with _open_h5(path) as f:
        if "model_config" not in f.attrs:
            raise FKBFormatError(f"{path}: HDF5 file without a Keras model (weights only?)")
        version = _text(f.attrs.get("keras_version", "2"))
    return 3 if version.split(".")[0] == "3" else 2


def spec_from_path(path: str | os.PathLike) -> ModelSpec:
    """A Keras model file (`.keras`, Keras-3 `.h5`, legacy tf.keras `.h5`) -> ModelSpec."""
    path = os.fspath(path)
    head = _sniff(path)
    if head == HDF5_MAGIC and h5_keras_major(path) == 2:
        from ._legacy_h5 import spec_from_legacy_h5

        return spec_from_legacy_h5(path)
    model, training = load_keras_file(path)
    return spec_from_keras(model, source=path, training_config=training)


def _training_records(model: Any) -> dict | None:
    """The optimizer and loss of a compiled Keras model as `.fkb` training records, so that
    the converted network loads compiled (fresh optimizer state: the step count and moments
    of Keras' optimizer are not carried over). None when the model is not compiled or its
    optimizer or loss has no FKB equivalent (the JSON training_config metadata still has it)."""
    optimizer = getattr(model, "optimizer", None)
    loss = getattr(model, "loss", None)
    if optimizer is None or loss is None:
        return None
    try:
        from . import optimizers as _opt
        from ._training import loss_spec

        return {"optimizer": _opt.get(optimizer).spec(), "loss": loss_spec(loss),
                "state": "iterations=0 u_product=1.0 seed=0", "slots": []}
    except Exception:  # unsupported optimizer, schedule or loss: convert the weights only
        return None


def _records_from_config(training_config: str | None) -> dict | None:
    """Training records from a saved model's compile config (JSON; built-in Keras optimizers
    and losses only, deserialised in safe mode)."""
    if not training_config:
        return None
    try:
        import json

        import keras

        cfg = json.loads(training_config)
        optimizer = keras.optimizers.deserialize(cfg["optimizer"])
        loss = cfg["loss"]
        if isinstance(loss, dict):
            loss = keras.losses.deserialize(loss)

        class _Compiled:  # the two attributes _training_records reads
            pass

        compiled = _Compiled()
        compiled.optimizer, compiled.loss = optimizer, loss
        return _training_records(compiled)
    except Exception:
        return None
