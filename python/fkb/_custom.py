"""Layer types of your own, from Python: :func:`register_layer`.

A registered type ties a Keras layer class to a `.fkb` layer type name: the converter writes
each instance as ``layer NAME key=value ...`` plus its tensors (``to_config_and_weights``),
:func:`fkb.to_keras` rebuilds it (``from_config_and_weights``), the pure-Python reader and
writer accept the type, and with ``forward`` the engine runs it by calling back into Python
(through the C API's custom-layer callbacks). The same records load in a Fortran, C or C++
host that registers a layer type of the same name (``fkb_register_layer``,
``fkb_register_layer_callbacks``).
"""

from __future__ import annotations

from typing import Any, Callable

from ._errors import UnsupportedError
from ._format import (
    CUSTOM_KINDS,
    CUSTOM_LAYER_TYPES,
    CustomLayerType,
    check_custom_type_name,
)

__all__ = ["register_layer", "unregister_layer", "registered_layer_types", "custom_for_class"]


def register_layer(
    keras_class: type,
    name: str,
    to_config_and_weights: Callable[[Any], tuple[dict, list]],
    from_config_and_weights: Callable[[dict, list], Any],
    forward: Callable[[dict, list, Any], Any] | None = None,
    *,
    output_shape: Callable[[dict, tuple], tuple] | None = None,
    options: dict[str, Any] | None = None,
) -> None:
    """Registers a Keras layer class as the `.fkb` layer type ``name``.

    ``name``: the type name in the file, ``[a-z0-9_]+``, not a built-in type. Registering a
    name again replaces it (and its Keras class).

    ``to_config_and_weights(layer) -> (config, weights)`` turns an instance of
    ``keras_class`` into the layer's record. ``config`` maps option names (``[a-z0-9_]+``) to
    int, float (finite), bool, non-empty str, or a non-empty list of those; they are written
    as ``key=value`` in dict order (bools as 0/1, floats round-tripping, lists
    comma-separated). ``weights`` is a list of arrays, written as the layer's tensors in that
    order with their shapes, converted to the model's precision (values must fit it exactly).
    Tensor names come from an optional ``config["tensor_names"]`` (a list of
    ``[A-Za-z0-9_.]+`` names, one per weight, not written as an option); without it they are
    ``w0, w1, ...``. The keys ``name``, ``dtype`` and ``trainable`` may be present (e.g. from
    ``layer.get_config()``) and are ignored: FKB takes them from the layer itself (a
    ``trainable=False`` layer with weights gets ``trainable=0``); ``inputs`` is reserved.

    ``from_config_and_weights(config, weights) -> keras layer`` rebuilds it for
    :func:`fkb.to_keras` and ``fkb export``. ``config`` holds the file's options plus
    ``name`` (the layer's name) and ``dtype`` (the model's precision), so ``lambda c, w:
    MyLayer(**c)`` is enough for a layer whose constructor takes its options; ``weights``
    are the tensors in file order. Return an unbuilt layer, and FKB calls
    ``layer.set_weights(weights)`` once it is placed in the model (so the tensors must be in
    the layer's ``get_weights()`` order), or a built layer that has its weights already.

    ``forward(config, weights, x) -> y`` (optional) lets the engine run the layer
    (:func:`fkb.from_keras`, :func:`fkb.load`, ``Network.predict``): ``config`` the options
    (plus ``name``), ``weights`` the tensors (read-only numpy arrays of the model's dtype,
    valid during the call), ``x`` a read-only array ``(batch, *input_shape)``; return an
    array of shape ``(batch, *output_shape)`` (cast to the model's dtype). It runs with the
    GIL held; an exception becomes :class:`fkb.LayerError` from ``predict``, with its
    message, and the network stays usable. Without ``forward`` the engine refuses files with
    the type (unless the host registered the type itself).

    ``output_shape(config, input_shape) -> shape`` (optional): the per-sample output shape
    (a tuple) for the per-sample input shape; default: the input's shape.

    ``options`` (optional): ``{key: kind}`` with kind ``int``, ``float``, ``bool``, ``str``
    or ``list`` (the types or their names): the type's options, each read back from a file as
    its kind, anything else refused. Without it any key is accepted and values are read back
    by their syntax: integers as int, other numbers as float, the rest as str, values with
    commas as lists (so a bool comes back as 0/1 and a one-item list as its item).
    """
    check_custom_type_name(name)
    if not isinstance(keras_class, type):
        raise TypeError(f"register_layer: keras_class must be a class, not {keras_class!r}")
    _check_keras_class(keras_class, name)
    for what, fn in (("to_config_and_weights", to_config_and_weights),
                     ("from_config_and_weights", from_config_and_weights)):
        if not callable(fn):
            raise TypeError(f"register_layer: {what} must be callable")
    for what, fn in (("forward", forward), ("output_shape", output_shape)):
        if fn is not None and not callable(fn):
            raise TypeError(f"register_layer: {what} must be callable or None")
    if options is not None:
        if not isinstance(options, dict):
            raise TypeError("register_layer: options must be a dict {key: kind}")
        for key, kind in options.items():
            check_option_key(key)
            if kind not in CUSTOM_KINDS:
                raise UnsupportedError(f"register_layer: option {key!r} has kind {kind!r}; "
                                       "kinds are int, float, bool, str, list")
    lt = CustomLayerType(name, output_shape=output_shape, options=options,
                         keras_class=keras_class, to_config_and_weights=to_config_and_weights,
                         from_config_and_weights=from_config_and_weights, forward=forward)
    for other in [n for n, t in CUSTOM_LAYER_TYPES.items() if t.keras_class is keras_class]:
        del CUSTOM_LAYER_TYPES[other]
    CUSTOM_LAYER_TYPES[name] = lt
    if forward is not None:
        from ._engine_layers import register_with_engine

        register_with_engine(lt)


def unregister_layer(name: str) -> None:
    """Forgets a registered type (files naming it are refused again by the Python reader and
    the converter). A type already given to the engine stays known there, but without its
    Python functions its layers fail to load."""
    CUSTOM_LAYER_TYPES.pop(name, None)


def registered_layer_types() -> dict[str, type]:
    """The registered type names and their Keras classes."""
    return {n: t.keras_class for n, t in CUSTOM_LAYER_TYPES.items()}


def custom_for_class(cls: type) -> CustomLayerType | None:
    """The registered type of a Keras layer class (exactly that class), or None."""
    for lt in CUSTOM_LAYER_TYPES.values():
        if lt.keras_class is cls:
            return lt
    return None


def check_option_key(key: Any) -> None:
    import re

    from ._format import CUSTOM_RESERVED

    if not isinstance(key, str) or not re.match(r"^[a-z0-9_]+\Z", key):
        raise UnsupportedError(f"option name {key!r} is not [a-z0-9_]+")
    if key in CUSTOM_RESERVED:
        raise UnsupportedError(f"option name {key!r} is reserved by FKB")


def _check_keras_class(cls: type, name: str) -> None:
    try:
        import keras
    except ImportError:  # pragma: no cover - registration without Keras (reader/writer only)
        return
    if not issubclass(cls, keras.layers.Layer):
        raise TypeError(f"register_layer: {cls.__name__} is not a Keras layer class")
    from ._keras_layers import SUPPORTED_CLASSES

    if cls.__name__ in SUPPORTED_CLASSES and getattr(keras.layers, cls.__name__, None) is cls:
        raise UnsupportedError(f"register_layer: keras.layers.{cls.__name__} is converted by "
                               f"FKB itself; register your own layer classes")
