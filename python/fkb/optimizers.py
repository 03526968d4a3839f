"""Optimizers for :meth:`fkb.Network.compile`, with Keras 3's names, arguments and defaults.

>>> net.compile(optimizer=fkb.optimizers.Adam(learning_rate=1e-3), loss="mse")

Each class only describes the optimizer: :meth:`Optimizer.spec` is the text the engine parses
(``"adam learning_rate=0.001 beta_1=0.9 ..."``); the update itself runs in the engine, with
Keras 3's update rules, in double precision, except Adam and AdamW on a float32 network: those
run in float32 with a float32 state, in Keras' order of operations, so that given the same
gradients they move every weight exactly as Keras does. A Keras optimizer object is accepted
wherever one of these is (:func:`get` converts it through its ``get_config()``).

Not supported yet (refused with a message naming the option): learning-rate schedules and
callables, ``use_ema``, ``loss_scale_factor``, ``gradient_accumulation_steps`` and
``exclude_from_weight_decay``.
"""

from __future__ import annotations

import math
from typing import Any

from ._errors import FKBArgumentError, UnsupportedError

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Nadam", "get"]

# Options of Keras' base optimizer that FKB has no equivalent for (value when off).
_UNSUPPORTED_OFF = {
    "use_ema": False,
    "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
}
# Keras options that only matter when an unsupported one is on.
_IGNORED = ("name", "ema_momentum", "ema_overwrite_frequency")


def _real(cls_name: str, arg: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            import numpy as np

            if isinstance(value, np.generic) and np.issubdtype(type(value), np.floating):
                return float(value)
        except ImportError:  # pragma: no cover
            pass
        if arg == "learning_rate" and (callable(value) or hasattr(value, "get_config")):
            raise UnsupportedError(
                f"{cls_name}: learning_rate={type(value).__name__}: learning-rate schedules "
                "and callables are not supported by FKB yet; give a number"
            )
        raise FKBArgumentError(f"{cls_name}: {arg} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise FKBArgumentError(f"{cls_name}: {arg} must be finite, got {value!r}")
    return value


def _text(value: Any) -> str:
    """Numbers as Python's repr (round-trips exactly), booleans as 0/1."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(float(value))


class Optimizer:
    """Base class: the Keras name of the optimizer and its options."""

    #: the engine's (and Keras') lower-case name
    name: str = ""
    #: this optimizer's own arguments, in Keras' order
    _own: tuple[str, ...] = ()

    def __init__(
        self,
        learning_rate: float,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        loss_scale_factor: float | None = None,
        gradient_accumulation_steps: int | None = None,
        name: str | None = None,
    ):
        cls = type(self).__name__
        self.schedule = _schedule_text(learning_rate, cls)
        if self.schedule is not None:
            learning_rate = 1.0  # the schedule's own initial rate is in the text
        self.learning_rate = _real(cls, "learning_rate", learning_rate)
        if not self.learning_rate > 0:
            raise FKBArgumentError(
                f"{cls}: learning_rate must be a positive number, got {learning_rate!r}"
            )
        self.weight_decay = None if weight_decay is None else _real(cls, "weight_decay",
                                                                     weight_decay)
        if self.weight_decay is not None and self.weight_decay < 0:
            raise FKBArgumentError(f"{cls}: weight_decay must be >= 0, got {weight_decay!r}")
        clips = {}
        for arg, value in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                           ("global_clipnorm", global_clipnorm)):
            if value is not None:
                value = _real(cls, arg, value)
                if value < 0:
                    raise FKBArgumentError(f"{cls}: {arg} must be >= 0, got {value!r}")
            clips[arg] = value
        set_clips = [k for k, v in clips.items() if v is not None]
        if len(set_clips) > 1:
            raise FKBArgumentError(
                f"{cls}: only one of clipnorm, clipvalue and global_clipnorm can be set "
                f"(as in Keras); got {', '.join(set_clips)}"
            )
        self.clipnorm = clips["clipnorm"]
        self.clipvalue = clips["clipvalue"]
        self.global_clipnorm = clips["global_clipnorm"]
        given = {"use_ema": use_ema, "loss_scale_factor": loss_scale_factor,
                 "gradient_accumulation_steps": gradient_accumulation_steps}
        bad = [f"{k}={v!r}" for k, v in given.items() if v != _UNSUPPORTED_OFF[k]]
        if bad:
            raise UnsupportedError(f"{cls}: {', '.join(bad)} is not supported by FKB")
        self.optimizer_name = name if name is not None else self.name

    # -- the engine's text ---------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """The options, with Keras' names (numbers and booleans; None when off)."""
        config: dict[str, Any] = {"learning_rate": self.learning_rate}
        for arg in self._own:
            config[arg] = getattr(self, arg)
        config.update(weight_decay=self.weight_decay, clipnorm=self.clipnorm,
                      clipvalue=self.clipvalue, global_clipnorm=self.global_clipnorm)
        return config

    def spec(self) -> str:
        """The engine's optimizer text, every option written out (none left to defaults)."""
        parts = [self.name]
        for key, value in self.get_config().items():
            if value is None:
                continue
            if key == "learning_rate" and self.schedule is not None:
                parts.append(f"learning_rate={self.schedule}")
                continue
            if key in ("clipnorm", "clipvalue", "global_clipnorm") and value == 0:
                continue  # 0 switches clipping off, as in Keras
            parts.append(f"{key}={_text(value)}")
        return " ".join(parts)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if v is not None)
        return f"fkb.optimizers.{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.get_config() == self.get_config()

    # -- Keras ---------------------------------------------------------------------------

    @staticmethod
    def from_keras(optimizer: Any) -> "Optimizer":
        """The FKB optimizer of a Keras 3 optimizer object (from its ``get_config()``)."""
        kind = type(optimizer).__name__
        cls = _CLASSES.get(kind.lower())
        if cls is None or not hasattr(optimizer, "get_config"):
            raise UnsupportedError(
                f"optimizer {kind} is not supported by FKB (supported: "
                f"{', '.join(c.__name__ for c in _CLASSES.values())})"
            )
        config = dict(optimizer.get_config())
        lr = config.get("learning_rate")
        if isinstance(lr, dict) or callable(getattr(optimizer, "_learning_rate", None)):
            # A schedule: converted from the object (refused by name if FKB lacks it).
            config["learning_rate"] = getattr(optimizer, "_learning_rate", lr)
            lr = None
        # Keras keeps the learning rate in a variable of floatx; a float32 one is written as
        # the shortest decimal that rounds to it (0.001, not 0.0010000000474974513).
        if lr is not None and \
                getattr(getattr(optimizer, "_learning_rate", None), "dtype", None) == "float32":
            import numpy as np

            config["learning_rate"] = float(str(np.float32(lr)))
        excluded = (getattr(optimizer, "_exclude_from_weight_decay", None)
                    or getattr(optimizer, "_exclude_from_weight_decay_pattern", None))
        if excluded:
            raise UnsupportedError(f"{kind}: exclude_from_weight_decay is not supported by FKB")
        known = {"learning_rate", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm",
                 *cls._own, *_UNSUPPORTED_OFF}
        unknown = sorted(k for k in config if k not in known and k not in _IGNORED)
        if unknown:
            raise UnsupportedError(
                f"{kind}: option(s) {', '.join(unknown)} not supported by FKB"
            )
        bad = [f"{k}={config[k]!r}" for k, off in _UNSUPPORTED_OFF.items()
               if config.get(k, off) != off]
        if bad:
            raise UnsupportedError(f"{kind}: {', '.join(bad)} is not supported by FKB")
        args = {k: v for k, v in config.items() if k in known and k not in _UNSUPPORTED_OFF}
        return cls(**args, name=config.get("name"))


def _check_range(cls: str, arg: str, value: float, low: float, high: float,
                 high_open: bool = True) -> None:
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        bracket = ")" if high_open else "]"
        raise FKBArgumentError(f"{cls}: {arg} must be in [{low:g}, {high:g}{bracket}, "
                               f"got {value!r}")


def _bool(cls: str, arg: str, value: Any) -> bool:
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise FKBArgumentError(f"{cls}: {arg} must be True or False, got {value!r}")


class SGD(Optimizer):
    """Gradient descent with momentum (``keras.optimizers.SGD``)."""

    name = "sgd"
    _own = ("momentum", "nesterov")

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, use_ema: bool = False,
                 ema_momentum: float = 0.99, ema_overwrite_frequency: int | None = None,
                 loss_scale_factor: float | None = None,
                 gradient_accumulation_steps: int | None = None, name: str | None = None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name)
        self.momentum = _real("SGD", "momentum", momentum)
        _check_range("SGD", "momentum", self.momentum, 0.0, 1.0, high_open=False)
        self.nesterov = _bool("SGD", "nesterov", nesterov)


class _AdamLike(Optimizer):
    def _betas(self, beta_1: Any, beta_2: Any, epsilon: Any) -> None:
        cls = type(self).__name__
        self.beta_1 = _real(cls, "beta_1", beta_1)
        self.beta_2 = _real(cls, "beta_2", beta_2)
        self.epsilon = _real(cls, "epsilon", epsilon)
        _check_range(cls, "beta_1", self.beta_1, 0.0, 1.0)
        _check_range(cls, "beta_2", self.beta_2, 0.0, 1.0)
        if self.epsilon < 0:
            raise FKBArgumentError(f"{cls}: epsilon must be >= 0, got {epsilon!r}")


class Adam(_AdamLike):
    """Adam, optionally AMSGrad (``keras.optimizers.Adam``)."""

    name = "adam"
    _own = ("beta_1", "beta_2", "epsilon", "amsgrad")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, use_ema: bool = False,
                 ema_momentum: float = 0.99, ema_overwrite_frequency: int | None = None,
                 loss_scale_factor: float | None = None,
                 gradient_accumulation_steps: int | None = None, name: str | None = None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name)
        self._betas(beta_1, beta_2, epsilon)
        self.amsgrad = _bool("Adam", "amsgrad", amsgrad)


class AdamW(_AdamLike):
    """Adam with decoupled weight decay (``keras.optimizers.AdamW``)."""

    name = "adamw"
    _own = ("beta_1", "beta_2", "epsilon", "amsgrad")

    def __init__(self, learning_rate: float = 0.001, weight_decay: float = 0.004,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 amsgrad: bool = False, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None,
                 use_ema: bool = False, ema_momentum: float = 0.99,
                 ema_overwrite_frequency: int | None = None,
                 loss_scale_factor: float | None = None,
                 gradient_accumulation_steps: int | None = None, name: str | None = None):
        if weight_decay is None:
            raise FKBArgumentError("AdamW: weight_decay must be a number (as in Keras), not None")
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name)
        self._betas(beta_1, beta_2, epsilon)
        self.amsgrad = _bool("AdamW", "amsgrad", amsgrad)


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with momentum (``keras.optimizers.RMSprop``)."""

    name = "rmsprop"
    _own = ("rho", "momentum", "epsilon", "centered")

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False,
                 weight_decay: float | None = None, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None,
                 use_ema: bool = False, ema_momentum: float = 0.99,
                 ema_overwrite_frequency: int | None = None,
                 loss_scale_factor: float | None = None,
                 gradient_accumulation_steps: int | None = None, name: str | None = None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name)
        self.rho = _real("RMSprop", "rho", rho)
        _check_range("RMSprop", "rho", self.rho, 0.0, 1.0)
        self.momentum = _real("RMSprop", "momentum", momentum)
        _check_range("RMSprop", "momentum", self.momentum, 0.0, 1.0, high_open=False)
        self.epsilon = _real("RMSprop", "epsilon", epsilon)
        if self.epsilon < 0:
            raise FKBArgumentError(f"RMSprop: epsilon must be >= 0, got {epsilon!r}")
        self.centered = _bool("RMSprop", "centered", centered)


class Adagrad(Optimizer):
    """Adagrad (``keras.optimizers.Adagrad``)."""

    name = "adagrad"
    _own = ("initial_accumulator_value", "epsilon")

    def __init__(self, learning_rate: float = 0.001, initial_accumulator_value: float = 0.1,
                 epsilon: float = 1e-7, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, use_ema: bool = False,
                 ema_momentum: float = 0.99, ema_overwrite_frequency: int | None = None,
                 loss_scale_factor: float | None = None,
                 gradient_accumulation_steps: int | None = None, name: str | None = None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name)
        self.initial_accumulator_value = _real("Adagrad", "initial_accumulator_value",
                                               initial_accumulator_value)
        self.epsilon = _real("Adagrad", "epsilon", epsilon)
        if self.initial_accumulator_value < 0 or self.epsilon < 0:
            raise FKBArgumentError("Adagrad: initial_accumulator_value and epsilon must be >= 0")


class Nadam(_AdamLike):
    """Adam with Nesterov momentum (``keras.optimizers.Nadam``)."""

    name = "nadam"
    _own = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, use_ema: bool = False,
                 ema_momentum: float = 0.99, ema_overwrite_frequency: int | None = None,
                 loss_scale_factor: float | None = None,
                 gradient_accumulation_steps: int | None = None, name: str | None = None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name)
        self._betas(beta_1, beta_2, epsilon)


_CLASSES: dict[str, type[Optimizer]] = {
    c.name: c for c in (SGD, Adam, AdamW, RMSprop, Adagrad, Nadam)
}


def _schedule_text(value: Any, cls: str) -> str | None:
    """The engine's text of a Keras learning-rate schedule (ExponentialDecay,
    PiecewiseConstantDecay, CosineDecay), or None for a plain number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return None
    kind = type(value).__name__
    if not hasattr(value, "get_config") or not kind.endswith("Decay"):
        if isinstance(value, dict) or callable(value):
            raise UnsupportedError(f"{cls}: learning_rate of type {kind} is not supported")
        return None
    c = value.get_config()
    if kind == "ExponentialDecay":
        return (f"exponential_decay initial_learning_rate={_text(float(c['initial_learning_rate']))}"
                f" decay_steps={_text(float(c['decay_steps']))}"
                f" decay_rate={_text(float(c['decay_rate']))} staircase={int(bool(c['staircase']))}")
    if kind == "PiecewiseConstantDecay":
        b = ",".join(_text(float(v)) for v in c["boundaries"])
        v = ",".join(_text(float(v)) for v in c["values"])
        return f"piecewise_constant_decay boundaries={b} values={v}"
    if kind == "CosineDecay":
        text = (f"cosine_decay initial_learning_rate={_text(float(c['initial_learning_rate']))}"
                f" decay_steps={_text(float(c['decay_steps']))} alpha={_text(float(c['alpha']))}")
        if c.get("warmup_target") is not None:
            text += (f" warmup_target={_text(float(c['warmup_target']))}"
                     f" warmup_steps={_text(float(c.get('warmup_steps', 0)))}")
        return text
    raise UnsupportedError(f"{cls}: learning-rate schedule {kind} is not supported by FKB "
                           "(it has ExponentialDecay, PiecewiseConstantDecay, CosineDecay)")


def get(identifier: Any) -> Optimizer:
    """An FKB optimizer from an :class:`Optimizer`, a Keras optimizer object, or a name as
    Keras spells it (``"adam"``, ``"Adam"``, ``"sgd"``...; Keras' defaults)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _CLASSES.get(identifier.strip().lower())
        if cls is None:
            raise UnsupportedError(
                f"unknown optimizer {identifier!r} (FKB has "
                f"{', '.join(c.__name__ for c in _CLASSES.values())})"
            )
        return cls()
    if hasattr(identifier, "get_config") and type(identifier).__module__.startswith("keras"):
        return Optimizer.from_keras(identifier)
    raise UnsupportedError(
        f"optimizer must be an fkb.optimizers.Optimizer, a Keras optimizer or a name, "
        f"not {type(identifier).__name__}"
    )
