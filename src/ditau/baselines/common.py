"""What every reconstruction method shares: its inputs from the event table, and its output.

Inputs (:class:`Inputs`): per event the two measured visible legs (charged + neutral parts of
the schema's reco columns), their reconstructed decay modes, MET and its covariance. Output:
a table of the schema's ``method`` group keyed by ``event_id`` (:func:`recon_table`), with a
status per row: ``ok``, ``no_solution`` (the method found none) or ``failed`` (bad input, with
the reason). Bad events never stop a run: they are flagged and the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ditau.physics import DECAY_MODES
from ditau.schema import (
    BY_NAME,
    EventWriter,
    SchemaError,
    arrow_schema,
    read_events,
)

_C = ("px", "py", "pz", "e")
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
    bad[~((cxx > 0) & (cyy > 0) & (det > 0))] = "MET covariance missing or not positive definite"
    bad[~np.all(np.isfinite(met), axis=1)] = "MET is not finite"
    for leg, v, mode in (("tau+", vis_p, mode_p), ("tau-", vis_m, mode_m)):
        bad[~np.isin(mode, [m for m in DECAY_MODES if m != "other"])] = \
            f"{leg} leg: decay mode not one of pi, rho, e, mu"
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


def mass(p4: NDArray[np.float64]) -> NDArray[np.float64]:
    """Invariant mass of (n, 4) four-momenta (negative m^2 -> 0)."""
    m2 = p4[:, 3] ** 2 - np.sum(p4[:, :3] ** 2, axis=1)
    return np.sqrt(np.maximum(m2, 0.0))


def recon_schema() -> pa.Schema:
    """``event_id`` plus the schema's ``method`` group."""
    return pa.schema([pa.field("event_id", BY_NAME["event_id"].dtype, nullable=False),
                      *arrow_schema("method")])


def recon_table(method: str, inputs: Inputs, tau_p: NDArray[np.float64],
                tau_m: NDArray[np.float64], status: NDArray[np.object_],
                reason: NDArray[np.object_] | None = None,
                m_tautau: NDArray[np.float64] | None = None,
                candidate: NDArray[np.int16] | None = None,
                rows: NDArray[np.int64] | None = None) -> pa.Table:
    """The method-output table. ``tau_p``/``tau_m``: (k, 4) reconstructed tau four-momenta for
    the events ``rows`` of ``inputs`` (default: all, in order); rows not ``ok`` get NaN.

    Neutrino momenta are tau - visible; ``m_tautau`` defaults to the mass of tau+ + tau- (MMC's
    MLM estimator passes its own). Events whose inputs are bad are marked ``failed`` with the
    reason, whatever the method returned.
    """
    idx = np.arange(len(inputs)) if rows is None else np.asarray(rows)
    k = len(idx)
    status = np.asarray(status, dtype=object).copy()
    reason = np.full(k, "", dtype=object) if reason is None else \
        np.asarray(reason, dtype=object).copy()
    bad = inputs.bad[idx] != ""
    status[bad] = "failed"
    reason[bad] = inputs.bad[idx][bad]
    ok = status == "ok"
    tau_p = np.where(ok[:, None], tau_p, np.nan)
    tau_m = np.where(ok[:, None], tau_m, np.nan)
    if m_tautau is None:
        m_tautau = mass(tau_p + tau_m)
    m_tautau = np.where(ok, m_tautau, np.nan)
    cols: dict[str, Any] = {
        "event_id": inputs.event_id[idx],
        "method": np.full(k, method, dtype=object),
        "candidate": np.zeros(k, np.int16) if candidate is None else candidate,
    }
    for leg, tau, vis in (("p", tau_p, inputs.vis_p[idx]), ("m", tau_m, inputs.vis_m[idx])):
        for j, c in enumerate(_C):
            cols[f"rec_tau_{c}_{leg}"] = tau[:, j]
        for j, c in enumerate(_C[:3]):
            cols[f"rec_nu_{c}_{leg}"] = tau[:, j] - vis[:, j]
    cols["rec_m_tautau"] = m_tautau
    cols["rec_status"] = status
    cols["rec_reason"] = reason
    schema = recon_schema()
    return pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in schema},
                    schema=schema)


def write_recon(table: pa.Table, path: str | Path, metadata: dict[str, Any]) -> None:
    """Write a method-output table atomically (validated; metadata in the footer)."""
    writer = EventWriter(path, recon_schema(), {"stage": "reconstruct", **metadata},
                         require=("method",))
    try:
        writer.write(table)
        writer.close()
    except BaseException:
        writer.abort()
        raise


def read_recon(path: str | Path) -> pa.Table:
    """Read and validate a method-output table."""
    t = read_events(path, require=("method",))
    if "event_id" not in t.column_names:
        raise SchemaError(f"{path}: a method-output table needs an event_id column")
    return t
