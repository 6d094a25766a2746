"""Training data of the ML reconstruction: the selected events of the Parquet files
(:func:`load_data`) and the validation split (:func:`split_mask`).

The validation split is a hash of ``event_id``: it does not depend on the seed, the file
order or the number of processes. Imports the features (:mod:`ditau.ml.features`), the
hashing (:mod:`ditau.ml.hashing`), the channel registry and the event schema; no torch.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Final

import numpy as np

from ditau.ml.config import TrainConfig
from ditau.ml.features import (
    FEATURE_COLUMNS,
    IP_COLUMNS,
    NO_IP_REASON,
    NU_ENERGY_COLUMNS,
    ONE_HOT_CHANNELS,
    TARGETS,
    EventArrays,
    check_ip_columns,
    extract,
)
from ditau.ml.hashing import uniform_hash
from ditau.schema import SchemaError, read_events, read_metadata

_SPLIT_SALT: Final[int] = 0x5D1A_7A0E_D17A_0001


def split_mask(event_id: np.ndarray, val_fraction: float) -> np.ndarray:
    """True for validation events: a hash of ``event_id`` below ``val_fraction``."""
    return uniform_hash(event_id, _SPLIT_SALT) <= val_fraction


def concat_events(parts: list[EventArrays]) -> EventArrays:
    """The events of ``parts`` in order (a field absent from any part is absent)."""
    out = {}
    for f in fields(EventArrays):
        vals = [getattr(p, f.name) for p in parts]
        out[f.name] = None if any(v is None for v in vals) else np.concatenate(vals)
    return EventArrays(**out)


def expand_paths(patterns: list[str]) -> list[str]:
    """Paths with glob patterns (``*``, ``?``, ``[``) expanded, sorted; a pattern matching
    nothing is an error."""
    import glob

    out: list[str] = []
    for p in patterns:
        if any(ch in p for ch in "*?["):
            hits = sorted(glob.glob(p))
            if not hits:
                raise OSError(f"no file matches {p!r}")
            out += hits
        else:
            out.append(p)
    return out


def load_data(cfg: TrainConfig) -> tuple[EventArrays, EventArrays, dict[str, Any]]:
    """The selected events of ``cfg.data``, split into (train, validation), and the recipe.
    The ``visible`` target frame reads the nu energies (``nu_e_p``, ``nu_e_m``) too; a model
    with ``impact_parameters`` the :data:`~ditau.ml.features.IP_COLUMNS` (a file without them,
    or with none for its usable events, is a SchemaError naming the file and the columns;
    events whose legs lack them are left out, counted per file as ``no_ip``). With
    ``mass_weighting="flat"`` the truth column ``m_tautau`` is read into
    :attr:`~ditau.ml.features.EventArrays.m_true` (a file without it is a SchemaError)."""
    if not cfg.data:
        raise ValueError("no training data: give one or more event files ('data' in the "
                         "config, or --data)")
    truth = [*TARGETS, *(NU_ENERGY_COLUMNS if cfg.model.target_frame == "visible" else ())]
    ip = cfg.model.impact_parameters
    if cfg.mass_weighting != "none":
        truth.append("m_tautau")
    cols = [*FEATURE_COLUMNS, *(IP_COLUMNS if ip else ()), *truth, "in_sr"]
    parts: list[EventArrays] = []
    files = []
    for path in expand_paths(cfg.data):
        meta = read_metadata(path)
        table = read_events(path, columns=_present(path, cols, truth), require=("id",))
        ev = extract(table, targets=True, source=path, impact_parameters=ip)
        if cfg.mass_weighting != "none":
            ev.m_true = table["m_tautau"].to_numpy(zero_copy_only=False).astype(np.float64)
        keep = ev.usable.copy()
        if cfg.selection == "sr":
            keep &= table["in_sr"].to_numpy(zero_copy_only=False).astype(bool)
        if cfg.channels is not None:
            keep &= np.isin(ev.channel, [ONE_HOT_CHANNELS.index(c) for c in cfg.channels])
        if ev.m_true is not None:
            bad = keep & ~np.isfinite(ev.m_true)
            if bad.any():
                raise ValueError(f"{path}: the truth column m_tautau is not finite for event_id "
                                 f"{int(ev.event_id[bad][0])} ({int(bad.sum())} selected events)"
                                 "; the flat mass weighting needs it")
        parts.append(ev.subset(keep))
        entry = {"path": str(Path(path).resolve()), "bytes": Path(path).stat().st_size,
                 "rows": table.num_rows, "selected": int(keep.sum()),
                 "stage": meta.get("stage"), "sample": meta.get("sample")}
        if ip:  # events left out because a leg has no impact parameters
            entry["no_ip"] = int(np.char.startswith(ev.reason.astype(str), NO_IP_REASON).sum())
        files.append(entry)
    ev = concat_events(parts)
    if cfg.max_events is not None:
        ev = ev.subset(np.arange(min(len(ev), cfg.max_events)))
    val = split_mask(ev.event_id, cfg.val_fraction)
    train, valid = ev.subset(~val), ev.subset(val)
    if len(train) == 0:
        raise ValueError(f"no training events left after the selection ({cfg.selection}) in "
                         f"{', '.join(cfg.data)}")
    recipe = {"files": files, "selection": cfg.selection, "channels": cfg.channels,
              "val_fraction": cfg.val_fraction,
              "max_events": cfg.max_events, "n_train": len(train), "n_val": len(valid),
              "split": f"uniform_hash(event_id, {_SPLIT_SALT:#x}) <= val_fraction"}
    return train, valid, recipe


def _present(path: str, cols: list[str], truth: list[str]) -> list[str]:
    import pyarrow.parquet as pq

    names = set(pq.ParquetFile(path).schema_arrow.names)
    if any(c in IP_COLUMNS for c in cols):
        check_ip_columns(names, path)
    missing = [c for c in cols if c not in names]
    if missing:
        what = "truth" if set(missing) <= set(truth) else "detector-level"
        raise SchemaError(f"{path}: missing {what} column(s) {missing[:6]} needed for the ML "
                          "training (a detector-level file with truth is needed)")
    return ["event_id", *[c for c in cols if c != "event_id"]]


__all__ = ["concat_events", "expand_paths", "load_data", "split_mask"]
