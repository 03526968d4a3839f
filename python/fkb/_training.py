"""Training helpers of :class:`fkb.Network`: Keras losses as engine specs, targets, `fit`.

Losses are computed in the engine (double precision) with Keras 3's definitions and its
"sum over batch size" reduction: ``loss = sum_b w_b l_b / batch``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ._errors import FKBArgumentError, ShapeError, UnsupportedError

__all__ = ["loss_spec", "multi_loss_spec", "targets", "fit_loop", "LOSSES"]

#: engine name -> {Keras option: default}
LOSSES: dict[str, dict[str, Any]] = {
    "mean_squared_error": {},
    "mean_absolute_error": {},
    "mean_absolute_percentage_error": {},
    "huber": {"delta": 1.0},
    "log_cosh": {},
    "binary_crossentropy": {"from_logits": False, "label_smoothing": 0.0},
    "categorical_crossentropy": {"from_logits": False, "label_smoothing": 0.0},
    "sparse_categorical_crossentropy": {"from_logits": False},
}

# Every spelling Keras' `keras.losses.get` accepts for these: function names, class names,
# aliases.
_NAMES = {
    "mean_squared_error": "mean_squared_error", "MeanSquaredError": "mean_squared_error",
    "mse": "mean_squared_error", "MSE": "mean_squared_error",
    "mean_absolute_error": "mean_absolute_error", "MeanAbsoluteError": "mean_absolute_error",
    "mae": "mean_absolute_error", "MAE": "mean_absolute_error",
    "mean_absolute_percentage_error": "mean_absolute_percentage_error",
    "MeanAbsolutePercentageError": "mean_absolute_percentage_error",
    "mape": "mean_absolute_percentage_error", "MAPE": "mean_absolute_percentage_error",
    "huber": "huber", "Huber": "huber",
    "log_cosh": "log_cosh", "LogCosh": "log_cosh",
    "binary_crossentropy": "binary_crossentropy", "BinaryCrossentropy": "binary_crossentropy",
    "bce": "binary_crossentropy", "BCE": "binary_crossentropy",
    "categorical_crossentropy": "categorical_crossentropy",
    "CategoricalCrossentropy": "categorical_crossentropy",
    "sparse_categorical_crossentropy": "sparse_categorical_crossentropy",
    "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
}


def _spec(name: str, options: dict[str, Any], where: str) -> str:
    defaults = LOSSES[name]
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise UnsupportedError(f"{where}: option(s) {', '.join(unknown)} not supported")
    parts = [name]
    for key, default in defaults.items():
        value = options.get(key, default)
        if isinstance(default, bool):
            if not isinstance(value, (bool, np.bool_)) and value not in (0, 1):
                raise FKBArgumentError(f"{where}: {key} must be True or False, got {value!r}")
            parts.append(f"{key}={int(bool(value))}")
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
                raise FKBArgumentError(f"{where}: {key} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise FKBArgumentError(f"{where}: {key} must be finite, got {value!r}")
            if key == "delta" and not value > 0:
                raise FKBArgumentError(f"{where}: delta must be > 0, got {value!r}")
            if key == "label_smoothing" and not 0 <= value <= 1:
                raise FKBArgumentError(f"{where}: label_smoothing must be in [0, 1], "
                                       f"got {value!r}")
            parts.append(f"{key}={value!r}")
    return " ".join(parts)


def _supported() -> str:
    return ", ".join(LOSSES)


class CustomLoss:
    """A loss written in Python: ``fn(y_pred, y_true, sample_weight) -> (loss, grad)`` with
    float64 arrays of shape (batch, n_outputs) (sample_weight: None or (batch,)); ``loss`` is
    the batch loss (a float) and ``grad`` its gradient with respect to y_pred. An exception
    raised by ``fn`` stops the step (nothing changes) and is reported by train_on_batch.

    >>> def half_sse(y, t, w):
    ...     return 0.5 * ((y - t) ** 2).sum() / len(y), (y - t) / len(y)
    >>> net.compile("adam", loss=fkb.CustomLoss(half_sse))
    """

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError("CustomLoss takes a function (y_pred, y_true, sample_weight) -> "
                            "(loss, grad)")
        self.fn = fn


def loss_spec(loss: Any) -> str:
    """The engine's loss text for a loss as Keras takes it: a name (``"mse"``, ``"huber"``,
    ``"CategoricalCrossentropy"``...), a Keras loss object (``keras.losses.Huber(delta=2)``)
    or a Keras loss function (``keras.losses.log_cosh``). A text with options in the engine's
    own form (``"huber delta=0.5"``) is passed on as it is."""
    if isinstance(loss, str):
        text = loss.strip()
        if " " in text or "=" in text:  # the engine's own spec text
            return text
        name = _NAMES.get(text)
        if name is None:
            raise UnsupportedError(f"unknown or unsupported loss {loss!r} (FKB has "
                                   f"{_supported()})")
        return _spec(name, {}, f"loss {loss!r}")
    if loss is None:
        raise FKBArgumentError("compile: a loss is needed (a name such as 'mse', or a Keras "
                               "loss)")
    module = type(loss).__module__ or ""
    fn = getattr(loss, "fn", None)
    if module.startswith("keras") and fn is not None and hasattr(loss, "reduction"):
        # A keras.losses.Loss wrapping a loss function (every built-in Loss class does).
        kind = type(loss).__name__
        name = _NAMES.get(getattr(fn, "__name__", ""))
        if name is None:
            raise UnsupportedError(f"loss {kind} is not supported by FKB (FKB has "
                                   f"{_supported()})")
        if loss.reduction != "sum_over_batch_size":
            raise UnsupportedError(f"{kind}: reduction={loss.reduction!r} is not supported; "
                                   "FKB uses Keras' default 'sum_over_batch_size'")
        options = dict(getattr(loss, "_fn_kwargs", {}))
        if options.pop("axis", -1) != -1:
            raise UnsupportedError(f"{kind}: only axis=-1 is supported")
        if options.pop("ignore_class", None) is not None:
            raise UnsupportedError(f"{kind}: ignore_class is not supported")
        return _spec(name, options, kind)
    if callable(loss) and (getattr(loss, "__module__", "") or "").startswith("keras"):
        name = _NAMES.get(getattr(loss, "__name__", ""))
        if name is None:
            raise UnsupportedError(f"loss {getattr(loss, '__name__', loss)!r} is not supported "
                                   f"by FKB (FKB has {_supported()})")
        return _spec(name, {}, name)
    if callable(loss):
        raise UnsupportedError(
            "custom Python loss functions are not supported yet; use one of "
            f"{_supported()}"
        )
    raise UnsupportedError(f"loss must be a name or a Keras loss, not {type(loss).__name__}")


def _per_output(value: Any, names: list[str], what: str) -> list[Any] | None:
    """A list or dict by output name as a list in output order; None for one value."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise FKBArgumentError(f"compile: {what} for unknown output(s) {unknown}; the "
                                   f"network's outputs are {names}")
        missing = [n for n in names if n not in value]
        if missing:
            raise FKBArgumentError(f"compile: {what} missing for output(s) {missing}")
        return [value[n] for n in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise FKBArgumentError(f"compile: {len(value)} {what} for a network with "
                                   f"{len(names)} output(s) {names}")
        return list(value)
    return None


def multi_loss_spec(loss: Any, loss_weights: Any, names: list[str]) -> str:
    """The engine's loss text for Keras' compile(loss=..., loss_weights=...): one loss for
    every output, or a list/dict of one per output, joined with ';'; each weight becomes the
    item's ``weight=W``."""
    losses = _per_output(loss, names, "losses")
    if loss_weights is None:
        weights = None
    else:
        weights = _per_output(loss_weights, names, "loss_weights")
        if weights is None:
            raise FKBArgumentError("compile: loss_weights must be a list or a dict by output "
                                   "name")
        for w in weights:
            if isinstance(w, bool) or not isinstance(w, (int, float, np.floating, np.integer)) \
                    or not math.isfinite(float(w)) or float(w) < 0:
                raise FKBArgumentError(f"compile: loss weight {w!r} is not a finite number >= 0")
    if losses is None:
        one = loss_spec(loss)
        if weights is None:
            return one
        items = [one] * len(names)
    else:
        items = [loss_spec(item) for item in losses]
    if weights is not None:
        items = [f"{item} weight={float(w)!r}" for item, w in zip(items, weights)]
    return ";".join(items)


def take(a: Any, sl: slice) -> Any:
    """Rows `sl` of an array, of each array of a list, or None."""
    if a is None:
        return None
    if isinstance(a, list):
        return [np.ascontiguousarray(v[sl]) for v in a]
    return np.ascontiguousarray(a[sl])


def _named(value: Any, names: list[str], what: str, where: str) -> list[Any]:
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise FKBArgumentError(f"{where}: unknown {what} name(s) {unknown}; the network's "
                                   f"{what}s are {names}")
        missing = [n for n in names if n not in value]
        if missing:
            raise FKBArgumentError(f"{where}: {what}(s) {missing} missing")
        return [value[n] for n in names]
    if isinstance(value, (list, tuple)) and not (len(names) == 1 and len(value) != 1):
        items = list(value)
    else:
        items = [value]
    if len(items) != len(names):
        raise FKBArgumentError(f"{where}: {len(items)} {what} array(s) for a network with "
                               f"{len(names)} {what}(s) {names}")
    return items


def multi_inputs(x: Any, names: list[str], shapes: list[tuple], where: str) -> list[np.ndarray]:
    """x (one array, a list or a dict by input name) as (batch, values) float64 arrays."""
    out = []
    for item, name, shape in zip(_named(x, names, "input", where), names, shapes):
        try:
            a = np.asarray(item, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise FKBArgumentError(f"{where}: input {name!r} is not an array of numbers "
                                   f"({e})") from None
        if a.ndim != len(shape) + 1 or a.shape[1:] != tuple(shape):
            raise ShapeError(f"{where}: input {name!r} has shape {a.shape}, expected "
                             f"(batch, {', '.join(map(str, shape))})")
        if a.shape[0] < 1:
            raise FKBArgumentError(f"{where}: empty batch")
        out.append(np.ascontiguousarray(a.reshape(a.shape[0], -1)))
    if len({a.shape[0] for a in out}) > 1:
        raise ShapeError(f"{where}: the inputs have different batch sizes "
                         f"{[a.shape[0] for a in out]}")
    return out


def multi_targets(y: Any, names: list[str], shapes: list[tuple], n_targets: list[int],
                  batch: int, where: str) -> list[np.ndarray]:
    """y (one array, a list or a dict by output name) as (batch, n_targets) float64 arrays:
    each (batch, *output_shape), or for sparse categorical crossentropy the class indices
    (batch, *output_shape[:-1]) with or without a trailing 1."""
    out = []
    for item, name, shape, nt in zip(_named(y, names, "output", where), names, shapes,
                                     n_targets):
        try:
            a = np.asarray(item, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise FKBArgumentError(f"{where}: targets of {name!r} are not an array of numbers "
                                   f"({e})") from None
        full = (batch,) + tuple(shape)
        ok = a.shape == full or (a.ndim >= 1 and a.shape[0] == batch and a.size == batch * nt
                                 and nt != int(np.prod(shape)))
        if not ok and nt == int(np.prod(shape)) == 1:
            ok = a.shape == (batch,)
        if not ok:
            raise ShapeError(f"{where}: targets of output {name!r} have shape {a.shape}, "
                             f"expected {full}" + ("" if nt == int(np.prod(shape)) else
                                                   f" or {batch} x {nt} class indices"))
        out.append(np.ascontiguousarray(a.reshape(batch, nt)))
    return out


def targets(y: Any, batch: int, n_targets: int, sparse: bool, where: str) -> np.ndarray:
    """y as a C-contiguous float64 (batch, n_targets) array, with Keras' accepted shapes:
    (batch, n_out); (batch,) when there is one output; for sparse categorical crossentropy
    (batch,) or (batch, 1) class indices."""
    try:
        a = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise FKBArgumentError(f"{where}: y is not an array of numbers ({e})") from None
    ok = a.shape == (batch, n_targets) or (a.ndim == 1 and a.shape == (batch,)
                                           and n_targets == 1)
    if not ok:
        want = f"({batch}, {n_targets})" + (f" or ({batch},)" if n_targets == 1 else "")
        what = "class indices " if sparse else ""
        raise ShapeError(f"{where}: y has shape {a.shape}, expected {what}{want} for x of "
                         f"{batch} samples")
    return np.ascontiguousarray(a.reshape(batch, n_targets))


def inputs(x: Any, n_inputs: int, where: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise FKBArgumentError(f"{where}: x is not an array of numbers ({e})") from None
    if a.ndim != 2 or a.shape[1] != n_inputs:
        raise ShapeError(f"{where}: x has shape {a.shape}, expected (batch, {n_inputs})")
    if a.shape[0] < 1:
        raise FKBArgumentError(f"{where}: empty batch")
    return np.ascontiguousarray(a)


def weights(sample_weight: Any, batch: int, where: str) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape not in ((batch,), (batch, 1)):
        raise ShapeError(f"{where}: sample_weight has shape {w.shape}, expected ({batch},)")
    return np.ascontiguousarray(w.reshape(batch))


def fit_loop(
    step: Callable[[np.ndarray, np.ndarray, np.ndarray | None], float],
    evaluate: Callable[[np.ndarray, np.ndarray, np.ndarray | None], float],
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None,
    batch_size: int,
    epochs: int,
    shuffle: bool,
    seed: int,
    validation: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None,
    verbose: int,
) -> dict[str, list[float]]:
    """Keras-like epochs of mini-batches; the epoch's loss is the batch-size-weighted mean of
    the batch losses (each taken before its step), as Keras reports it."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise FKBArgumentError(f"fit: batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise FKBArgumentError(f"fit: epochs must be an integer >= 0, got {epochs!r}")
    n = x[0].shape[0] if isinstance(x, list) else x.shape[0]
    rng = np.random.default_rng(seed)
    history: dict[str, list[float]] = {"loss": []}
    if validation is not None:
        history["val_loss"] = []
    n_batches = (n + batch_size - 1) // batch_size
    bar_factory = None
    if verbose == 1:
        try:
            from tqdm import tqdm as bar_factory
        except ImportError:  # pragma: no cover - tqdm is a dependency
            bar_factory = None
    for epoch in range(int(epochs)):
        order = rng.permutation(n) if shuffle else np.arange(n)
        total = 0.0
        bar = None
        if bar_factory is not None:
            bar = bar_factory(total=n_batches, desc=f"Epoch {epoch + 1}/{epochs}",
                              unit="batch", leave=True)
        try:
            for b in range(n_batches):
                idx = order[b * batch_size:(b + 1) * batch_size]
                xb = take(x, idx)
                yb = take(y, idx)
                wb = take(w, idx)
                total += step(xb, yb, wb) * len(idx)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{total / min(n, (b + 1) * batch_size):.4g}")
            history["loss"].append(total / n)
            if validation is not None:
                history["val_loss"].append(evaluate(*validation))
                if bar is not None:
                    bar.set_postfix(loss=f"{history['loss'][-1]:.4g}",
                                    val_loss=f"{history['val_loss'][-1]:.4g}")
        finally:
            if bar is not None:
                bar.close()
        if verbose == 2 or (verbose == 1 and bar_factory is None):
            line = f"Epoch {epoch + 1}/{epochs} - loss: {history['loss'][-1]:.6g}"
            if validation is not None:
                line += f" - val_loss: {history['val_loss'][-1]:.6g}"
            print(line)
    return history
