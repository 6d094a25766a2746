"""Evaluation of neutrino-reconstruction methods: resolutions (HWHM of relative residuals)
per channel and method, efficiencies, comparison with the reference, plots.

:func:`evaluate_files` is the file-level entry point (``ditau evaluate``); the pieces are
:func:`~ditau.evaluate.hwhm.hwhm`/:func:`~ditau.evaluate.hwhm.peak`,
:func:`~ditau.evaluate.resolution.residuals`,
:func:`~ditau.evaluate.resolution.resolution_table` and
:func:`~ditau.evaluate.resolution.plot_resolution`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ditau.evaluate.hwhm import GAUSS_HWHM_PER_SIGMA, HalfMax, half_max, hwhm, peak
from ditau.evaluate.resolution import (
    QUANTITIES,
    REFERENCE_CHANNELS,
    REFERENCE_DM_TAUTAU,
    REFERENCE_ML_DP,
    REFERENCE_ORDER,
    TRUTH_COLUMNS,
    Cell,
    ResolutionError,
    ResolutionTable,
    channel_label,
    plot_resolution,
    plot_summary,
    residuals,
    resolution_table,
)


@dataclass
class Evaluation:
    """Result of :func:`evaluate_files`: the table, its Markdown and the files written."""

    table: ResolutionTable
    markdown: str
    written: list[Path] = field(default_factory=list)


def read_truth_events(path: str | os.PathLike[str], by: str = "reco_channel",
                      only_sr: bool = True) -> pa.Table:
    """The columns of an event file the evaluation needs (truth, ``by``, ``in_sr``)."""
    from ditau.schema import read_events, read_metadata

    read_metadata(path)  # existence, readability, ditau footer
    names = set(pq.read_schema(path).names)
    need = ["event_id", *TRUTH_COLUMNS, by] + (["in_sr"] if only_sr else [])
    missing = [c for c in need if c not in names]
    if missing:
        what = "truth" if set(missing) & set(TRUTH_COLUMNS) else "detector-level"
        hint = "run 'ditau detector' on it first" if what == "detector-level" else \
            "an event file with the truth group is needed"
        raise ResolutionError(f"{path}: no {what} column(s) {', '.join(missing[:6])}; {hint}")
    return read_events(path, columns=need, kind="detector")


def read_methods(paths: Sequence[str | os.PathLike[str]]) -> tuple[dict[str, pa.Table],
                                                                    dict[str, str]]:
    """Method-output files -> (method name -> table, method name -> file name).

    A file holding several methods is split by its ``method`` column; a name seen in an
    earlier file gets the file's stem appended.
    """
    from ditau.schema import read_events

    tables: dict[str, pa.Table] = {}
    sources: dict[str, str] = {}
    for p in paths:
        t = read_events(p, kind="recon")
        names = sorted(set(t["method"].to_pylist())) or [Path(p).stem]
        for name in names:
            sub = t.filter(pc.equal(t["method"], name)) if len(names) > 1 else t
            key = name if name not in tables else f"{name} ({Path(p).stem})"
            k = 2
            while key in tables:
                key, k = f"{name} ({Path(p).stem} {k})", k + 1
            tables[key], sources[key] = sub, str(p)
    return tables, sources


def evaluate_files(events: str | os.PathLike[str],
                   recon: Sequence[str | os.PathLike[str]],
                   out: str | os.PathLike[str] | None = None,
                   channels: Sequence[str] | None = None, only_sr: bool = True,
                   all_candidates: bool = False, plots: bool = True,
                   force: bool = False) -> Evaluation:
    """Evaluate method-output files against their event file.

    Every method-output file must have been reconstructed from ``events``
    (:func:`ditau.provenance.check_recon_input`: same run id, or for files written before
    provenance the same event ids); otherwise :class:`~ditau.provenance.ProvenanceError`
    names both files and what differs (``force``: a warning, and the evaluation goes on).
    Returns the table and its Markdown (the full layout, then dm_tautau side by side with
    the reference's ML and MMC). With ``out``: writes ``table.md`` there and, with ``plots``,
    the figures of :func:`~ditau.evaluate.resolution.plot_resolution` (atomically).
    """
    from ditau.plots.draw import com_tev
    from ditau.provenance import check_recon_input
    from ditau.schema import atomic_path, read_metadata

    ev = read_truth_events(events, only_sr=only_sr)
    seen = [Path(p).resolve() for p in recon]
    twice = sorted({str(p) for p in seen if seen.count(p) > 1})
    if twice:
        raise ValueError(f"--recon: {', '.join(twice)} given more than once")
    tables, sources = read_methods(recon)
    event_ids = ev["event_id"].to_numpy()
    for path in map(str, recon):  # each once: a file given twice was refused above
        ids = [t["event_id"].to_numpy() for k, t in tables.items() if sources[k] == path]
        check_recon_input(events, path, recon_ids=np.concatenate(ids), event_ids=event_ids,
                          force=force)
    table = resolution_table(ev, tables, channels=channels, only_sr=only_sr,
                             all_candidates=all_candidates, events_source=str(events),
                             sources=sources)
    md = table.to_markdown("full") + "\n\n" + table.to_markdown("mass", reference=True)
    result = Evaluation(table, md)
    if out is not None:
        out_dir = Path(out)
        if out_dir.exists() and not out_dir.is_dir():
            raise ResolutionError(f"output directory {out_dir} exists and is not a directory")
        out_dir.mkdir(parents=True, exist_ok=True)
        if plots:
            com = com_tev(read_metadata(events))
            result.written += plot_resolution(table, out_dir, com=com)
            result.written += plot_summary(table, out_dir, com=com)
        with atomic_path(out_dir / "table.md") as tmp:
            tmp.write_text(md + "\n")
        result.written.append(out_dir / "table.md")
    return result


__all__ = [
    "GAUSS_HWHM_PER_SIGMA", "QUANTITIES", "REFERENCE_CHANNELS", "REFERENCE_DM_TAUTAU",
    "REFERENCE_ML_DP", "REFERENCE_ORDER", "Cell", "Evaluation", "HalfMax", "ResolutionError",
    "ResolutionTable",
    "channel_label", "evaluate_files", "half_max", "hwhm", "peak", "plot_resolution",
    "read_methods", "read_truth_events", "residuals", "resolution_table",
]
