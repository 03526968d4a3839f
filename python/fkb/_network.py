"""`fkb.Network`: a network loaded into the engine, run through the C API (extension _core)."""

from __future__ import annotations

import copy
import os
import tempfile
from typing import Any, Callable, Sequence

import numpy as np

from ._format import LayerSpec, ModelSpec, parse_header, write_fkb

__all__ = ["Network", "RnnState", "load"]


def _core_module():
    try:
        from . import _core
    except ImportError as e:  # pragma: no cover - only without the compiled extension
        raise ImportError(
            "the FKB engine extension fkb._core is not built; install the package with "
            "`pip install .` from the FKB source tree"
        ) from e
    return _core


class RnnState:
    """Recurrent state carried from one :meth:`Network.predict` call to the next.

    Without a state every call starts recurrent layers from zero (Keras after
    ``reset_states()``); with one, each call continues the sequences where the previous call
    on this state stopped (Keras' ``stateful=True``), for the same batch size. One state per
    network and set of sequences.
    """

    def __init__(self) -> None:
        self._state = _core_module().RnnState()

    def reset(self) -> None:
        """Back to the zero state."""
        self._state.reset()


class Network:
    """A network in the FKB engine (float32 or float64, as its model file says).

    Create one with :func:`fkb.load`, :func:`fkb.from_keras` or :meth:`Network.from_spec`.
    ``predict`` may be called from several threads at once (the GIL is released during the
    computation); ``set_weights`` waits for running predictions.
    """

    def __init__(self, core: Any, source: str | None = None):
        self._core = core
        self._source = source
        self._spec: ModelSpec | None = None

    # -- construction --------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Network":
        """Loads a `.fkb` file or a legacy FKB text file."""
        from ._engine_layers import loading

        path = os.fspath(path)
        with loading([path]):
            core = _core_module().Network(path)
        net = cls(core, source=path)
        training = _training_records(path)
        if training is not None and "loss" in training:
            # The engine restored the optimizer, its state and the loss: compiled.
            net._core.loaded_compiled(training["loss"])
            net._loss = training["loss"]
            net._optimizer = training.get("optimizer")
        return net

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> "Network":
        """The engine's network for a ModelSpec (written to a temporary `.fkb` file)."""
        with tempfile.TemporaryDirectory(prefix="fkb-") as tmp:
            path = os.path.join(tmp, "model.fkb")
            write_fkb(spec, path)
            from ._engine_layers import loading

            with loading([spec]):
                return cls(_core_module().Network(path))

    # -- computing -----------------------------------------------------------------------

    def predict(self, x: Any, state: RnnState | None = None) -> Any:
        """Runs the network, as Keras' ``model.predict``.

        ``x``: one array of shape (batch, *input_shape), or for a network with several inputs
        a list of such arrays (in :attr:`input_names` order) or a dict by input name. A single
        sample without the batch axis (shape ``input_shape``) gives a result without it.
        Returns one array of shape (batch, *output_shape), or a list of arrays for a network
        with several outputs.

        float32/float64 arrays keep their dtype (the output has it too) and are not copied
        when C-contiguous; other numeric arrays are converted to the network's dtype.
        ``state``: an :class:`RnnState` carried between calls (recurrent layers).
        """
        in_shapes, out_shapes, rank1 = self._io()
        if rank1 and not isinstance(x, dict) and state is None and \
                not (isinstance(x, (list, tuple)) and len(x) == 1 and
                     isinstance(x[0], np.ndarray) and x[0].ndim == 2):
            return self._core.predict(x)  # rank-1 in and out: the engine's own checks
        xs, single = self._inputs(x, self._input_names(), in_shapes)
        batch = xs[0].shape[0]
        flat = [np.ascontiguousarray(a.reshape(batch, int(np.prod(s, dtype=np.int64))))
                for a, s in zip(xs, in_shapes)]
        if hasattr(self._core, "predict_multi"):
            outs = list(self._core.predict_multi(
                flat, None if state is None else state._state))
        elif len(flat) == 1 and len(out_shapes) == 1:
            outs = [self._core.predict(flat[0])]
        else:  # pragma: no cover - an engine without graphs cannot load such a file anyway
            from ._errors import UnsupportedError

            raise UnsupportedError("this build of the FKB engine has no multi-input/output "
                                   "predict")
        res = [np.asarray(o).reshape((batch,) + tuple(s)) for o, s in zip(outs, out_shapes)]
        if single:
            res = [r[0] for r in res]
        return res[0] if len(res) == 1 else res

    __call__ = predict

    def _inputs(self, x: Any, names: list[str], shapes: list[tuple[int, ...]]
                ) -> tuple[list[np.ndarray], bool]:
        """Input arrays (batch, *shape) in input order, and whether x had no batch axis."""
        from ._errors import FKBArgumentError, ShapeError

        if isinstance(x, dict):
            unknown = sorted(set(x) - set(names))
            if unknown:
                raise FKBArgumentError(f"predict: unknown input name(s) {unknown}; the network's "
                                       f"inputs are {names}")
            missing = [n for n in names if n not in x]
            if missing:
                raise FKBArgumentError(f"predict: input(s) {missing} missing")
            items = [x[n] for n in names]
        elif isinstance(x, (list, tuple)) and len(names) > 1:
            items = list(x)
        elif isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], np.ndarray) \
                and x[0].ndim >= len(shapes[0]):
            items = [x[0]]  # [array] for a one-input network, as Keras accepts
        else:
            items = [x]
        if len(items) != len(names):
            raise FKBArgumentError(f"predict: {len(items)} input array(s) for a network with "
                                   f"{len(names)} inputs {names}")
        arrays = []
        for item in items:
            a = item if isinstance(item, np.ndarray) else np.asarray(item)
            if a.dtype not in (np.float32, np.float64):
                if a.dtype.kind not in "biuf":
                    raise FKBArgumentError(f"predict: input of dtype {a.dtype} is not numeric")
                a = a.astype(self.dtype)
            arrays.append(a)
        dtype = np.result_type(*[a.dtype for a in arrays])
        singles = []
        for a, name, shape in zip(arrays, names, shapes):
            if a.shape == tuple(shape):
                singles.append(True)
            elif a.ndim == len(shape) + 1 and a.shape[1:] == tuple(shape):
                singles.append(False)
            else:
                raise ShapeError(f"predict: input {name!r} has shape {a.shape}, expected "
                                 f"(batch, {', '.join(map(str, shape))}) or {tuple(shape)}")
        if len(set(singles)) > 1:
            raise ShapeError("predict: some inputs have a batch axis and some do not")
        single = singles[0]
        arrays = [(a[None] if single else a).astype(dtype, copy=False) for a in arrays]
        if len({a.shape[0] for a in arrays}) > 1:
            raise ShapeError(f"predict: the inputs have different batch sizes "
                             f"{[a.shape[0] for a in arrays]}")
        return arrays, single

    # -- training ------------------------------------------------------------------------

    def compile(self, optimizer: Any = "rmsprop", loss: Any = None,
                loss_weights: Any = None) -> None:
        """Prepares training, as Keras' ``model.compile``; resets the optimizer state.

        ``optimizer``: an :mod:`fkb.optimizers` object, a Keras optimizer object or a name
        (``"adam"``: Keras' defaults). ``loss``: a name as Keras spells it (``"mse"``,
        ``"huber"``, ``"log_cosh"``, ``"sparse_categorical_crossentropy"``...), a Keras loss
        object (``keras.losses.Huber(delta=0.5)``) or function. Layers without a backward
        pass are refused (:class:`fkb.UnsupportedError` naming the layer).

        Several outputs: one loss for all of them, or a list (one per output, in
        :attr:`output_names` order) or dict by output name; ``loss_weights`` a list or dict
        of Keras' loss weights. The loss is then ``sum_k w_k loss_k``, as Keras computes it.
        """
        from . import optimizers
        from ._training import CustomLoss, multi_loss_spec

        opt = optimizers.get(optimizer)
        if isinstance(loss, CustomLoss):
            if loss_weights is not None:
                from ._errors import FKBArgumentError

                raise FKBArgumentError("compile: loss_weights do not apply to a CustomLoss")
            self._core.compile_custom(opt.spec(), loss.fn)
            self._optimizer = opt
            self._loss = "custom"
            return
        spec = multi_loss_spec(loss, loss_weights, self.output_names)
        self._core.compile(opt.spec(), spec)
        self._optimizer = opt
        self._loss = spec

    def set_custom_loss(self, loss: Any) -> None:
        """Sets a :class:`fkb.CustomLoss` without resetting the optimizer state (for a network
        loaded from a file saved while training with a custom loss)."""
        from ._training import CustomLoss

        if not isinstance(loss, CustomLoss):
            raise TypeError("set_custom_loss takes an fkb.CustomLoss")
        self._core.set_custom_loss(loss.fn)
        self._loss = "custom"

    @property
    def optimizer(self) -> Any:
        """The compiled :class:`fkb.optimizers.Optimizer` (None before :meth:`compile`); for a
        network loaded with its training state, the engine's optimizer text from the file."""
        return getattr(self, "_optimizer", None)

    @property
    def loss(self) -> str | None:
        """The compiled loss as the engine's text, e.g. ``'huber delta=1.0'``."""
        return getattr(self, "_loss", None)

    @property
    def iterations(self) -> int:
        """Optimizer steps taken since :meth:`compile`."""
        return int(self._core.iterations)

    def _simple(self) -> bool:
        """One input and one output, both rank 1: the engine's single-array calls. (Cached:
        walking the header's graph on every train_on_batch cost 0.2 ms a call.)"""
        return self._io()[2]

    def _batch(self, where: str, x: Any, y: Any, sample_weight: Any):
        from ._errors import FKBArgumentError
        from ._training import inputs, targets, weights

        if not self._core.is_compiled:
            raise FKBArgumentError(f"{where}: the network is not compiled; call "
                                   "compile(optimizer=..., loss=...) first")
        if not self._simple():
            return self._batch_multi(where, x, y, sample_weight)
        xa = inputs(x, self.n_inputs, where)
        n = xa.shape[0]
        sparse = (self.loss or "").split(" ")[0] == "sparse_categorical_crossentropy"
        ya = targets(y, n, int(self._core.n_targets), sparse, where)
        return xa, ya, weights(sample_weight, n, where)

    def _batch_multi(self, where: str, x: Any, y: Any, sample_weight: Any):
        """Lists of flat (batch, values) inputs and (batch, n_targets) targets."""
        from ._training import multi_inputs, multi_targets, weights

        spec = self._header()
        xs = multi_inputs(x, spec.input_names(), spec.input_shapes(), where)
        n = xs[0].shape[0]
        ts = multi_targets(y, spec.output_names(), spec.output_shapes(),
                           [int(self._core.n_targets_of(k))
                            for k in range(len(spec.output_names()))], n, where)
        return xs, ts, weights(sample_weight, n, where)

    def _call(self, mode: int, xa: Any, ya: Any, wa: Any):
        """The engine's call for a batch from _batch: (loss, flat gradients or None)."""
        if isinstance(xa, list):
            return self._core.train_multi(mode, xa, ya, wa)
        if mode == 1:
            return self._core.train_on_batch(xa, ya, wa), None
        if mode == 2:
            return self._core.gradients(xa, ya, wa)
        return self._core.evaluate(xa, ya, wa), None

    def train_on_batch(self, x: Any, y: Any, sample_weight: Any = None) -> float:
        """One optimizer step on the batch; returns the batch loss before the step.

        ``x`` (batch, n_inputs); ``y`` (batch, n_outputs), or (batch,) class indices for
        sparse categorical crossentropy; ``sample_weight`` (batch,). A NaN or infinite loss
        raises :class:`fkb.FKBArgumentError` and leaves weights and optimizer state as they
        were. Several inputs or outputs, or shaped data: ``x`` a list (or dict by input name)
        of (batch, *input_shape) arrays, ``y`` a list (or dict by output name) of
        (batch, *output_shape) arrays; the loss is the weighted sum over outputs.
        """
        return float(self._call(1, *self._batch("train_on_batch", x, y, sample_weight))[0])

    def evaluate(self, x: Any, y: Any, batch_size: int | None = None,
                 sample_weight: Any = None) -> float:
        """The compiled loss over (x, y) in inference mode (Dropout off); nothing changes.

        With ``batch_size`` the data go through in batches and the result is their
        batch-size-weighted mean, as Keras reports it (equal to the one-batch loss up to
        rounding); None: one call.
        """
        from ._training import take

        xa, ya, wa = self._batch("evaluate", x, y, sample_weight)
        n = xa[0].shape[0] if isinstance(xa, list) else xa.shape[0]
        if batch_size is None:
            return float(self._call(3, xa, ya, wa)[0])
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            from ._errors import FKBArgumentError

            raise FKBArgumentError(f"evaluate: batch_size must be a positive integer or None, "
                                   f"got {batch_size!r}")
        total = 0.0
        for start in range(0, n, batch_size):
            sl = slice(start, min(n, start + batch_size))
            total += float(self._call(3, take(xa, sl), take(ya, sl), take(wa, sl))[0]) \
                * (sl.stop - sl.start)
        return total / n

    def gradients(self, x: Any, y: Any, sample_weight: Any = None) -> list[np.ndarray]:
        """d loss / d tensor for every tensor, in :meth:`get_weights` order and shapes, as
        float64 (the engine's values, exact); nothing changes. Dropout is active, as in a
        training step."""
        _, flat = self._call(2, *self._batch("gradients", x, y, sample_weight))
        out, start = [], 0
        for shape in self._shapes():
            size = int(np.prod(shape, dtype=np.int64))
            out.append(flat[start:start + size].reshape(shape))
            start += size
        return out

    def fit(self, x: Any, y: Any, batch_size: int = 32, epochs: int = 1, shuffle: bool = True,
            seed: int = 0, validation_data: Any = None, verbose: int = 1,
            sample_weight: Any = None) -> dict[str, list[float]]:
        """Trains for ``epochs`` passes over (x, y) in mini-batches, as Keras' ``fit``.

        ``shuffle``: a new order each epoch, drawn from numpy's generator seeded with ``seed``
        (reproducible; not Keras' order). ``validation_data``: (x_val, y_val) or
        (x_val, y_val, sample_weight_val), evaluated after each epoch. ``verbose``: 0 silent,
        1 a progress bar, 2 one line per epoch. Returns the history
        ``{"loss": [...], "val_loss": [...]}`` (per epoch; the epoch's loss is the mean of
        the batch losses, each taken before its step, weighted by batch size). ``x`` and
        ``y`` may be lists or dicts, as for :meth:`train_on_batch`.
        """
        from ._training import fit_loop

        xa, ya, wa = self._batch("fit", x, y, sample_weight)
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                from ._errors import FKBArgumentError

                raise FKBArgumentError("fit: validation_data must be (x_val, y_val) or "
                                       "(x_val, y_val, sample_weight_val)")
            validation = self._batch("fit (validation_data)", *validation_data) \
                if len(validation_data) == 3 else \
                self._batch("fit (validation_data)", validation_data[0], validation_data[1], None)
        return fit_loop(lambda a, b, c: self._call(1, a, b, c)[0],
                        lambda a, b, c: self._call(3, a, b, c)[0], xa, ya, wa,
                        batch_size, epochs, shuffle, seed, validation, verbose)

    # -- properties ----------------------------------------------------------------------

    @property
    def n_inputs(self) -> int:
        return int(self._core.n_inputs)

    @property
    def n_outputs(self) -> int:
        return int(self._core.n_outputs)

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shape of each input, e.g. [(60, 6)]."""
        return self._header().input_shapes()

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shape of each output."""
        return self._header().output_shapes()

    @property
    def input_names(self) -> list[str]:
        return self._header().input_names()

    @property
    def output_names(self) -> list[str]:
        return self._header().output_names()

    @property
    def dtype(self) -> np.dtype:
        """Precision the network computes in."""
        return np.dtype(self._core.dtype)

    @property
    def description(self) -> str:
        """The header text of the network's `.fkb` file (docs/format.md)."""
        return self._core.description

    def _io(self) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]], bool]:
        """Input and output shapes, and whether the network is one rank-1 input to one rank-1
        output; asked of the engine once (predict's per-call cost stays that of the engine)."""
        if getattr(self, "_io_cache", None) is None:
            if hasattr(self._core, "input_shapes"):
                ins = [tuple(v) for v in self._core.input_shapes()]
                outs = [tuple(v) for v in self._core.output_shapes()]
            else:  # pragma: no cover - an engine built before graphs
                ins, outs = [(self._core.n_inputs,)], [(self._core.n_outputs,)]
            rank1 = len(ins) == 1 and len(outs) == 1 and len(ins[0]) == 1 and len(outs[0]) == 1
            self._io_cache = (ins, outs, rank1)
        return self._io_cache

    def _input_names(self) -> list[str]:
        if getattr(self, "_names_cache", None) is None:
            self._names_cache = self._header().input_names()
        return self._names_cache

    def _header(self) -> ModelSpec:
        if self._spec is None:
            self._spec, _ = parse_header(self._core.description)
        return self._spec

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._header().metadata)

    @property
    def n_params(self) -> int:
        return self._header().n_params

    @property
    def layers(self) -> list[LayerSpec]:
        """The layers (type, name, hyper-parameters and a copy of their tensors)."""
        return self.to_spec().layers

    def to_spec(self) -> ModelSpec:
        """The whole network, weights included, as a ModelSpec."""
        spec = copy.deepcopy(self._header())
        weights = iter(self.get_weights())
        for layer in spec.layers:
            layer.tensors = [(name, next(weights)) for name, _ in layer.tensors]
        return spec

    # -- weights -------------------------------------------------------------------------

    def _shapes(self) -> list[tuple[int, ...]]:
        return [tuple(t.shape) for layer in self._header().layers for _, t in layer.tensors]

    def get_weights(self) -> list[np.ndarray]:
        """Every tensor, layer by layer in Keras order, in the network's dtype.

        (A Keras Normalization layer also has an integer ``count`` weight, which FKB does not
        keep.)
        """
        return [
            self._core.get_tensor(i).reshape(shape).astype(self.dtype)
            for i, shape in enumerate(self._shapes())
        ]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replaces every tensor (same list layout and shapes as :meth:`get_weights`)."""
        shapes = self._shapes()
        if len(weights) != len(shapes):
            from ._errors import ShapeError

            raise ShapeError(f"{len(weights)} arrays given, the network has {len(shapes)} tensors")
        arrays = []
        for i, (w, shape) in enumerate(zip(weights, shapes)):
            a = np.asarray(w, dtype=np.float64)
            if a.shape != shape:
                from ._errors import ShapeError

                raise ShapeError(f"weight {i}: shape {a.shape}, expected {shape}")
            arrays.append(a)
        for i, a in enumerate(arrays):
            self._core.set_tensor(i, a.ravel())

    # -- files ---------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, format: str = "fkb") -> None:
        """Writes the network: ``format='fkb'`` (bit-exact) or ``'legacy'`` (FKB text)."""
        path = os.fspath(path)
        if format == "fkb":
            self._core.save(path)
        elif format == "legacy":
            self._core.save_legacy(path)
        else:
            raise ValueError(f"format must be 'fkb' or 'legacy', not {format!r}")

    # -- display -------------------------------------------------------------------------

    def summary(self, print_fn: Callable[[str], Any] | None = print) -> str:
        """A Keras-like table of the layers; printed with ``print_fn`` and returned."""
        text = format_summary(self._header())
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self) -> str:
        spec = self._header()
        name = spec.metadata.get("name", "")
        if spec.uses_v12():
            ins = ", ".join(str(s) for s in spec.input_shapes())
            outs = ", ".join(str(s) for s in spec.output_shapes())
            return (f"<fkb.Network {name!r} {self.dtype.name} {ins} -> {outs}, "
                    f"{len(spec.layers)} layers>")
        return (
            f"<fkb.Network {name!r} {self.dtype.name} {self.n_inputs} -> {self.n_outputs}, "
            f"{len(spec.layers)} layers>"
        )


def _training_records(path: str) -> dict[str, Any] | None:
    """The training records (optimizer, loss, state) of a `.fkb` file's header, if any."""
    from ._format import _PREFIX, MAGIC

    try:
        with open(path, "rb") as f:
            prefix = f.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size or prefix[:len(MAGIC)] != MAGIC:
                return None  # a legacy text file (the engine has read it already)
            header = f.read(_PREFIX.unpack_from(prefix)[3])
    except OSError:
        return None
    if b"\nloss " not in header:
        return None
    spec, _ = parse_header(header)
    return spec.training


def _shape_text(shape: tuple) -> str:
    return "(None, " + ", ".join(str(d) for d in shape) + ")"


def format_summary(spec: ModelSpec) -> str:
    """Keras-like table: layer (type), output shape, parameter count; for a graph also the
    inputs of each layer and the network's outputs."""
    graph = not spec.is_chain()
    shapes = spec.shapes()
    rows = [("Layer (type)", "Output Shape", "Param #") + (("Connected to",) if graph else ())]
    for inp in spec.inputs:
        rows.append((f"{inp.name} (InputLayer)", _shape_text(inp.shape), "0")
                    + (("-",) if graph else ()))
    for i, layer in enumerate(spec.layers):
        extra = ""
        if "activation" in layer.config:
            extra = f", {layer.config['activation']}"
        if layer.type == "bidirectional":
            extra = f", {layer.config['layer']}, {layer.config['merge_mode']}"
        row = (f"{layer.name} ({layer.type}{extra})", _shape_text(shapes[layer.name]),
               f"{layer.n_params:,}")
        if graph:
            row += (", ".join(spec.layer_inputs(i)),)
        rows.append(row)
    widths = [max(len(r[k]) for r in rows) + 2 for k in range(len(rows[0]))]
    widths[-1] -= 2
    line = "=" * sum(widths)

    def fmt(r: tuple) -> str:
        cells = [f"{r[0]:<{widths[0]}}", f"{r[1]:<{widths[1]}}", f"{r[2]:>{widths[2] - (2 if graph else 0)}}"]
        if graph:
            cells.append(f"  {r[3]}")
        return "".join(cells).rstrip() if graph else "".join(cells)

    out = [f'Model: "{spec.metadata.get("name", "")}" ({spec.dtype})', line]
    for i, r in enumerate(rows):
        out.append(fmt(r))
        if i == 0:
            out.append(line)
    out.append(line)
    out.append(f"Total params: {spec.n_params:,}")
    if graph:
        out.append("Outputs: " + ", ".join(
            f"{n} {_shape_text(s)}" for n, s in zip(spec.output_names(), spec.output_shapes())))
    return "\n".join(out)


def load(path: str | os.PathLike) -> Network:
    """Loads a `.fkb` file or a legacy FKB text file into the engine."""
    return Network.load(path)
