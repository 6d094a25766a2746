"""The method-output table every reconstruction method returns: ``event_id`` plus the schema's
``method`` group, with a status per row: ``ok``, ``no_solution`` (the method found none) or
``failed`` (bad input, with the reason). Bad events never stop a run: they are flagged and the
others go on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ditau.inputs import FOUR_MOMENTUM, Inputs
from ditau.physics import mass
from ditau.schema import BY_NAME, EventWriter, SchemaError, arrow_schema, read_events


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
        for j, c in enumerate(FOUR_MOMENTUM):
            cols[f"rec_tau_{c}_{leg}"] = tau[:, j]
        for j, c in enumerate(FOUR_MOMENTUM[:3]):
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
