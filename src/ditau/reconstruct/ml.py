"""The ``ml`` reconstruction method: the trained generative model of :mod:`ditau.ml` as a
:class:`~ditau.reconstruct.method.Method`.

Per event with usable inputs it writes ``candidates + 1`` rows: ``candidate`` 0 = the point
estimate, 1..K = the sampled candidates (``ditau evaluate`` uses candidate 0, or all with
``all_candidates``). Events whose inputs are bad, or whose channel is not one of the 7, get one
``failed`` row with the reason. Tau four-momenta are on shell: p_tau = p_vis + p_nu,
E_tau = sqrt(|p_tau|^2 + m_tau^2) (:func:`ditau.ml.infer.tau_four_momenta`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ditau.config import StageConfig
from ditau.inputs import Inputs
from ditau.ml.infer import (
    EXTRA_COLUMNS,
    POINT_ESTIMATES,
    model_columns,
    predict,
    tau_four_momenta,
)
from ditau.ml.io import TrainedModel
from ditau.reconstruct.output import recon_table

__all__ = ["DEVICES", "EXTRA_COLUMNS", "MLSettings", "columns_for", "ml"]

#: The torch devices the ``device`` setting accepts (N: a GPU index).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "cuda:N", "mps")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass(frozen=True)
class MLSettings(StageConfig):
    """Settings of the ``ml`` method (meanings in :func:`ml`)."""

    config_name = "method ml"

    model: Any = None
    candidates: int = 10
    steps: int | None = None
    sampler: str | None = None
    point: str = "median"
    seed: int = 0
    device: str = "auto"
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if isinstance(self.model, os.PathLike):
            object.__setattr__(self, "model", os.fspath(self.model))
        if not isinstance(self.candidates, int) or self.candidates < 1:
            raise ValueError(f"ml: candidates must be an integer >= 1, got {self.candidates!r}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"ml: steps must be a positive integer, got {self.steps!r}")
        if self.point not in POINT_ESTIMATES:
            raise ValueError(f"ml: unknown point estimate {self.point!r}; choose one of "
                             f"{', '.join(POINT_ESTIMATES)}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"ml: batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            raise ValueError(f"ml: unknown device {self.device!r}; choose one of "
                             f"{', '.join(DEVICES)}")
        if self.device.startswith("cuda"):
            import torch  # only for an explicit CUDA request: say so before any work starts

            if not torch.cuda.is_available():
                raise ValueError(f"ml: device {self.device!r}: CUDA is not available on this "
                                 "machine (use device=auto or cpu)")

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if not isinstance(d["model"], str | None):
            d["model"] = repr(d["model"])  # a loaded model object: recorded by name only
        return d


def columns_for(settings: MLSettings) -> tuple[str, ...]:
    """The columns the settings' model reads besides the baselines' (the impact parameters
    for a model trained with them: :func:`ditau.ml.infer.model_columns`). A model file's
    configuration alone is read (:func:`ditau.ml.io.read_model_config`; the network is built
    when the method runs); a loaded model's is its ``config``. Raises
    :class:`~ditau.ml.io.ModelFileError` for a missing, corrupt or inconsistent model file."""
    return model_columns(settings.model)


def ml(inputs: Inputs | Any, *, table: Any = None,
       model: str | os.PathLike[str] | TrainedModel | None = None, candidates: int = 10,
       steps: int | None = None, sampler: str | None = None, point: str = "median",
       seed: int = 0, device: str = "auto", batch_size: int = 4096) -> pa.Table:
    """Reconstruct events with a trained model -> the method-output table.

    ``inputs``: :class:`~ditau.reconstruct.output.Inputs` (then ``table``, the event table with
    the jet columns, is needed) or the event table itself; ``model``: a model file, a
    loaded :class:`~ditau.ml.io.TrainedModel`, or None for the shipped default model
    (:mod:`ditau.ml.shipped`); ``candidates``: K samples per event;
    ``steps``/``sampler``: sampler settings (default: the model's); ``point``: ``median``
    (default) or ``constraint`` (module doc); ``seed``: noise seed (same seed, same output);
    ``device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; ``batch_size``: events per
    body pass.
    """
    MLSettings(model, candidates, steps, sampler, point, seed, device, batch_size)  # validates
    pred = predict(inputs, table=table, model=model, candidates=candidates, steps=steps,
                   sampler=sampler, point=point, seed=seed, device=device,
                   batch_size=batch_size)
    inp, rows, k = pred.inputs, pred.rows, candidates
    n = len(inp)
    n_rows = np.ones(n, np.int64)
    n_rows[rows] = k + 1
    ev_of_row = np.repeat(np.arange(n), n_rows)
    first = np.concatenate([[0], np.cumsum(n_rows)[:-1]])
    candidate = (np.arange(len(ev_of_row)) - first[ev_of_row]).astype(np.int16)
    nu_rows = np.full((len(ev_of_row), 6), np.nan)
    pos = first[rows][:, None] + np.arange(k + 1)[None, :]  # (m, K+1) output rows
    nu_rows[pos.ravel()] = np.concatenate([pred.point[:, None], pred.nu], axis=1).reshape(-1, 6)
    ok = np.zeros(len(ev_of_row), bool)
    ok[pos.ravel()] = True
    status = np.where(ok, "ok", "failed").astype(object)
    reason = np.where(ok, "", pred.reason[ev_of_row]).astype(object)
    nu_safe = np.nan_to_num(nu_rows)
    tau_p = tau_four_momenta(inp.vis_p[ev_of_row], nu_safe[:, :3])
    tau_m = tau_four_momenta(inp.vis_m[ev_of_row], nu_safe[:, 3:])
    return recon_table("ml", inp, tau_p, tau_m, status, reason, candidate=candidate,
                       rows=ev_of_row)
