"""The reconstruction inputs of an event table: per event the two measured visible legs
(charged + neutral parts of the schema's reco columns), their reconstructed decay modes, MET
and its covariance (lab frame, GeV).

This is the layer below both :mod:`ditau.reconstruct` (the methods) and :mod:`ditau.ml` (the
features): it imports only the schema and the physics registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ditau.physics import DECAY_MODES
from ditau.schema import SchemaError, read_events

#: Component suffixes of a four-momentum in the schema (lab frame, GeV).
FOUR_MOMENTUM: tuple[str, ...] = ("px", "py", "pz", "e")
_C = FOUR_MOMENTUM
#: The bad-input reason of an event without a usable MET covariance (collinear ignores it).
COVARIANCE_REASON: str = "MET covariance missing or not positive definite"
#: Relative tolerance of the E >= |p| check of a visible leg (float32 rounding of massless legs).
MASS_TOLERANCE: float = 1e-5
#: Event-table columns the methods read.
INPUT_COLUMNS: tuple[str, ...] = (
    "event_id",
    *(f"reco_{part}_{c}_{leg}" for part in ("chg", "neu") for c in _C for leg in ("p", "m")),
    "reco_mode_p", "reco_mode_m", "met_x", "met_y", "met_sumet",
    "met_cov_xx", "met_cov_xy", "met_cov_yy",
)


@dataclass
class Inputs:
    """Per-event inputs of a reconstruction method (lab frame, GeV).

    ``vis_p``/``vis_m``: (n, 4) visible four-momenta (px, py, pz, E) of the tau+/tau- legs;
    ``mode_p``/``mode_m``: reconstructed decay modes; ``met``: (n, 2); ``cov``: (n, 2, 2);
    ``bad``: the reason an event cannot be reconstructed ('' if it can).
    """

    event_id: NDArray[np.int64]
    vis_p: NDArray[np.float64]
    vis_m: NDArray[np.float64]
    mode_p: NDArray[np.str_]
    mode_m: NDArray[np.str_]
    met: NDArray[np.float64]
    cov: NDArray[np.float64]
    sumet: NDArray[np.float64]
    bad: NDArray[np.object_]

    def __len__(self) -> int:
        return len(self.event_id)

    @property
    def good(self) -> NDArray[np.bool_]:
        return self.bad == ""


def inputs_from_table(table: Any, source: str = "table") -> Inputs:
    """:class:`Inputs` from an event table with the reco columns (pyarrow or mapping)."""
    names = table.column_names if hasattr(table, "column_names") else list(table)
    missing = [c for c in INPUT_COLUMNS if c not in names]
    if missing:
        raise SchemaError(f"{source}: missing column(s) {missing[:6]} needed for the "
                          "reconstruction (run 'ditau detector' first)")

    def col(c: str) -> NDArray[Any]:
        x = table[c]
        if hasattr(x, "to_numpy"):
            x = x.to_numpy(zero_copy_only=False) if isinstance(x, pa.ChunkedArray | pa.Array) \
                else x.to_numpy()
        return np.asarray(x)

    def vis(leg: str) -> NDArray[np.float64]:
        chg = np.stack([col(f"reco_chg_{c}_{leg}").astype(float) for c in _C], axis=1)
        neu = np.stack([col(f"reco_neu_{c}_{leg}").astype(float) for c in _C], axis=1)
        return chg + np.nan_to_num(neu)  # NaN neutral = no cluster

    n = len(col("event_id"))
    vis_p, vis_m = vis("p"), vis("m")
    mode_p = col("reco_mode_p").astype(str)
    mode_m = col("reco_mode_m").astype(str)
    met = np.stack([col("met_x"), col("met_y")], axis=1).astype(float)
    cxx, cxy, cyy = (col(f"met_cov_{k}").astype(float) for k in ("xx", "xy", "yy"))
    cov = np.stack([np.stack([cxx, cxy], 1), np.stack([cxy, cyy], 1)], axis=1)
    bad = np.full(n, "", dtype=object)
    # Checks in increasing priority: the last matching reason is reported.
    det = cxx * cyy - cxy**2
    bad[~((cxx > 0) & (cyy > 0) & (det > 0))] = COVARIANCE_REASON
    bad[~np.all(np.isfinite(met), axis=1)] = "MET is not finite"
    for leg, v, mode in (("tau+", vis_p, mode_p), ("tau-", vis_m, mode_m)):
        bad[~np.isin(mode, [m for m in DECAY_MODES if m != "other"])] = \
            f"{leg} leg: decay mode not one of pi, rho, e, mu"
        p3 = np.linalg.norm(v[:, :3], axis=1)
        bad[v[:, 3] < p3 * (1 - MASS_TOLERANCE)] = \
            f"{leg} leg: visible energy below |p| (unphysical four-vector, m^2 < 0)"
        pt = np.hypot(v[:, 0], v[:, 1])
        bad[~(np.all(np.isfinite(v), axis=1) & (pt > 0) & (v[:, 3] > 0))] = \
            f"{leg} leg: visible momentum missing or zero pT"
    return Inputs(col("event_id").astype(np.int64), vis_p, vis_m, mode_p, mode_m, met, cov,
                  col("met_sumet").astype(float), bad)


def read_inputs(path: str | Path, only_sr: bool = False) -> Inputs:
    """Read :class:`Inputs` from an event file (optionally only signal-region events)."""
    cols = list(INPUT_COLUMNS) + (["in_sr"] if only_sr else [])
    t = read_events(path, columns=cols, require=("id",))
    if only_sr:
        t = t.filter(t["in_sr"])
    return inputs_from_table(t, source=str(path))
