"""Keras objects FKB registers, so that every FKB network has an exact Keras 3 equivalent.

Importing this module imports Keras and registers, under the package name ``fkb``:

- ``gelu_tanh``: GELU with the tanh approximation (``keras.activations.gelu(x,
  approximate=True)``), which Keras has no name for;
- ``LeakyReLUActivation(alpha)`` and ``ELUActivation(alpha)``: the leaky_relu / elu
  activations of a Dense layer with a non-default alpha (legacy FKB files have Dense layers
  with LeakyReLU(0.3)).

Load a `.keras` file that uses them after ``import fkb._keras_objects`` (``fkb.to_keras`` and
``fkb.from_keras`` do this themselves).
"""

from __future__ import annotations

import keras

__all__ = ["gelu_tanh", "LeakyReLUActivation", "ELUActivation"]


@keras.saving.register_keras_serializable(package="fkb", name="gelu_tanh")
def gelu_tanh(x):
    """GELU, tanh approximation (Keras ``gelu(x, approximate=True)``)."""
    return keras.activations.gelu(x, approximate=True)


@keras.saving.register_keras_serializable(package="fkb", name="LeakyReLUActivation")
class LeakyReLUActivation:
    """``keras.activations.leaky_relu`` with a given negative slope, as a serializable object."""

    def __init__(self, alpha: float = 0.2):
        self.alpha = float(alpha)

    def __call__(self, x):
        return keras.activations.leaky_relu(x, negative_slope=self.alpha)

    def get_config(self) -> dict:
        return {"alpha": self.alpha}

    @classmethod
    def from_config(cls, config: dict) -> "LeakyReLUActivation":
        return cls(**config)


@keras.saving.register_keras_serializable(package="fkb", name="ELUActivation")
class ELUActivation:
    """``keras.activations.elu`` with a given alpha, as a serializable object."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)

    def __call__(self, x):
        return keras.activations.elu(x, alpha=self.alpha)

    def get_config(self) -> dict:
        return {"alpha": self.alpha}

    @classmethod
    def from_config(cls, config: dict) -> "ELUActivation":
        return cls(**config)
