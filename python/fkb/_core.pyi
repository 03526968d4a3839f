"""Type stubs of fkb._core, the extension over the FKB C API (python/src/fkb_core.cpp)."""

from typing import Any

import numpy as np
import numpy.typing as npt

HEADER_VERSION: str

def version() -> str:
    """Version of the linked FKB library."""

def status_string(status: int) -> str:
    """Short name of an fkb_status code."""

class RnnState:
    """Recurrent state carried from one predict call to the next."""
    def __init__(self) -> None: ...
    def reset(self) -> None:
        """Back to zero state."""

class Network:
    def input_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shape of each input (Keras' shape without the batch axis)."""
    def output_shapes(self) -> list[tuple[int, ...]]: ...
    def input_names(self) -> list[str]: ...
    def output_names(self) -> list[str]: ...
    def predict_multi(
        self, xs: list[npt.ArrayLike], state: RnnState | None = None
    ) -> list[npt.NDArray[np.floating[Any]]]:
        """xs: one (batch, values per sample) array per input; returns one (batch, values)
        array per output (float32 when every input is float32, else float64)."""
    def compile_custom(self, optimizer: str, fn: Any) -> None: ...
    def set_custom_loss(self, fn: Any) -> None: ...
    def __init__(self, path: str) -> None:
        """Loads a .fkb file or a legacy FKB text file."""
    def save(self, path: str) -> None:
        """Writes a .fkb file (bit-exact)."""
    def save_legacy(self, path: str) -> None:
        """Writes the legacy FKB text format (Dense chains only)."""
    @property
    def n_inputs(self) -> int: ...
    @property
    def n_outputs(self) -> int: ...
    @property
    def dtype(self) -> str:
        """'float32' or 'float64'."""
    @property
    def description(self) -> str:
        """Header text of the network's .fkb file."""
    @property
    def n_tensors(self) -> int: ...
    def get_tensor(self, index: int) -> npt.NDArray[np.float64]:
        """Tensor `index` as a flat float64 array (exact)."""
    def set_tensor(self, index: int, values: npt.ArrayLike) -> None:
        """Overwrites tensor `index` from flat float64 values."""
    def predict(self, x: npt.ArrayLike | Any) -> npt.NDArray[np.floating[Any]]:
        """Runs the network on x of shape (batch, n_inputs) or (n_inputs,)."""
    def compile(self, optimizer: str, loss: str) -> None:
        """Sets the optimizer and loss (spec texts); resets the optimizer state."""
    def train_on_batch(
        self, x: npt.ArrayLike, y: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None
    ) -> float:
        """One optimizer step; returns the batch loss before the step."""
    def evaluate(
        self, x: npt.ArrayLike, y: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None
    ) -> float:
        """The compiled loss in inference mode; nothing changes."""
    def gradients(
        self, x: npt.ArrayLike, y: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None
    ) -> tuple[float, npt.NDArray[np.float64]]:
        """(loss, flat float64 gradient of every tensor in tensor order); nothing changes."""
    def train_multi(
        self, mode: int, xs: list[npt.ArrayLike], ts: list[npt.ArrayLike],
        sample_weight: npt.ArrayLike | None = None,
    ) -> tuple[float, npt.NDArray[np.float64] | None]:
        """mode 1 train_on_batch, 2 gradients, 3 evaluate on one (batch, values) array per
        input and one (batch, n_targets_of(k)) per output: (loss, flat gradients or None)."""
    def n_targets_of(self, k: int) -> int:
        """Targets per sample of output k (0-based) for the compiled loss."""
    @property
    def iterations(self) -> int:
        """Optimizer steps taken since compile."""
    def loaded_compiled(self, loss: str) -> None:
        """Marks a network loaded with its training state as compiled with `loss`."""
    @property
    def is_compiled(self) -> bool: ...
    @property
    def n_targets(self) -> int:
        """Values of y per sample for the compiled loss."""

def set_deterministic(on: bool) -> None: ...
def is_deterministic() -> bool: ...

class Ensemble:
    @staticmethod
    def from_paths(paths: list[str], weights: list[float] | None = None) -> Ensemble: ...
    @staticmethod
    def from_directory(dir: str) -> Ensemble: ...
    @staticmethod
    def from_manifest(path: str) -> Ensemble: ...
    @property
    def n_members(self) -> int: ...
    @property
    def n_inputs(self) -> int: ...
    @property
    def n_outputs(self) -> int: ...
    def set_noise(self, std: list[float], copies: int, seed: int) -> None: ...
    def set_mc_dropout(self, on: bool, copies: int, seed: int) -> None: ...
    def predict(
        self, x: npt.ArrayLike, with_std: bool = False, with_range: bool = False
    ) -> tuple[Any, Any, Any, Any]: ...
    def predict_members(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]: ...

class LayerContext:
    """What configure of a Python-registered layer type sees (valid during configure only)."""
    def option(self, key: str) -> str | None: ...
    def name(self) -> str: ...
    def input_shape(self) -> list[int]: ...
    def dtype(self) -> str: ...
    def set_output_shape(self, dims: list[int]) -> None: ...
    def declare_tensor(self, name: str, dims: list[int]) -> None: ...

def register_layer(type_name: str) -> None:
    """Registers a layer type the engine runs through fkb._engine_layers (Python)."""
