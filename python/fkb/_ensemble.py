"""Ensembles of FKB networks with spread (the engine's fkb_ensemble)."""

from __future__ import annotations

import os
from typing import Sequence, Union

import numpy as np

from ._errors import FKBArgumentError
from ._network import _core_module

Members = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]


class Ensemble:
    """Several networks with the same input and output widths, run as one.

    ``members`` is a list of model files, a folder (its ``*.fkb`` files, in name order) or a
    manifest file (one ``PATH [WEIGHT]`` per line, paths relative to the manifest).
    ``weights`` (>= 0, positive sum; default equal) weight the members. With ``noise_std`` > 0
    each member sees ``copies`` noisy copies of the inputs (Gaussian, a scalar or one standard
    deviation per feature) drawn from a counter-based generator: the same ``seed`` gives the
    same bits whatever the number of threads. With ``mc_dropout=True`` each member's Dropout
    layers stay active (Monte-Carlo dropout): ``copies`` passes per member with masks drawn
    from ``seed``.

    Over the P = members x copies predictions y_p with weights w_p = w_member / copies:
    mean = sum w_p y_p and std = sqrt(sum w_p (y_p - mean)^2).
    """

    def __init__(self, members: Members, weights: Sequence[float] | None = None,
                 noise_std: float | Sequence[float] = 0.0, copies: int = 1, seed: int = 0,
                 mc_dropout: bool = False):
        from ._engine_layers import loading

        core = _core_module()
        if isinstance(members, (str, os.PathLike)):
            path = os.fspath(members)
            if weights is not None:
                raise FKBArgumentError("weights go with a list of members, not a folder or "
                                       "manifest (a manifest holds its own weights)")
            if os.path.isdir(path):
                files = sorted(os.path.join(path, f) for f in os.listdir(path)
                               if f.endswith(".fkb"))
                with loading(files):
                    self._ens = core.Ensemble.from_directory(path)
            else:
                self._ens = core.Ensemble.from_manifest(path)
        else:
            paths = [os.fspath(p) for p in members]
            w = None if weights is None else [float(v) for v in weights]
            with loading(paths):
                self._ens = core.Ensemble.from_paths(paths, w)
        std = np.atleast_1d(np.asarray(noise_std, dtype=np.float64))
        if std.ndim != 1:
            raise FKBArgumentError("noise_std must be a number or one value per input feature")
        if isinstance(copies, bool) or int(copies) != copies:
            raise FKBArgumentError(f"copies must be an integer, got {copies!r}")
        if int(seed) < 0 or int(seed) >= 2**64:
            raise FKBArgumentError("seed must be in [0, 2**64)")
        self._ens.set_noise(std.tolist(), int(copies), int(seed))
        if mc_dropout:
            self._ens.set_mc_dropout(True, int(copies), int(seed))

    @property
    def n_members(self) -> int:
        return self._ens.n_members

    @property
    def n_inputs(self) -> int:
        return self._ens.n_inputs

    @property
    def n_outputs(self) -> int:
        return self._ens.n_outputs

    def _as_batch(self, x):
        a = np.asarray(x)
        if a.dtype.kind not in "fiub":
            raise FKBArgumentError(f"input of non-numeric dtype '{a.dtype}'")
        a = np.ascontiguousarray(a, dtype=np.float64)
        return (a[None, :], True) if a.ndim == 1 else (a, False)

    def predict(self, x, return_std: bool = False, return_range: bool = False):
        """The (weighted) ensemble mean of x (batch, n_inputs) or one sample (n_inputs,).

        ``return_std=True`` returns ``(mean, std)``; ``return_range=True`` appends the
        minimum and maximum over the predictions.
        """
        a, single = self._as_batch(x)
        mean, std, lo, hi = self._ens.predict(a, bool(return_std), bool(return_range))
        out = [mean, std, lo, hi]
        if single:
            out = [None if v is None else v[0] for v in out]
        result = [out[0]]
        if return_std:
            result.append(out[1])
        if return_range:
            result += [out[2], out[3]]
        return result[0] if len(result) == 1 else tuple(result)

    def predict_members(self, x) -> np.ndarray:
        """Every member's output (its mean over noise copies): (n_members, batch, n_outputs)."""
        a, single = self._as_batch(x)
        out = self._ens.predict_members(a)
        return out[:, 0, :] if single else out
