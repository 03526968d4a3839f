"""Training helpers of :class:`fkb.Network`: Keras losses as engine specs, targets, `fit`.

Losses are computed in the engine (double precision) with Keras 3's definitions and its
"sum over batch size" reduction: ``loss = sum_b w_b l_b / batch``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ._errors import FKBArgumentError, ShapeError, UnsupportedError

__all__ = ["loss_spec", "targets", "fit_loop", "LOSSES"]

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
    n = x.shape[0]
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
                xb = np.ascontiguousarray(x[idx])
                yb = np.ascontiguousarray(y[idx])
                wb = None if w is None else np.ascontiguousarray(w[idx])
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
