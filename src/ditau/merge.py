"""Merge event files of one sample (e.g. several generation seeds) into one file.

Files generated with different seeds each number their events from 0 and each carry weights
normalised to the file ("events per fb^-1" summing to the expected yield). The merged file
renumbers ``event_id`` consecutively in input order and scales each file's weights by its
share of the merged events, so the merged weights again sum to the expected yield (the
event-count-weighted mean of the files' cross-section estimates). The metadata records the
source files, their event-id offsets and their own metadata, the identity of each input and
the merged file's own run id (:mod:`ditau.provenance`).

Files of one sample only: the same sample name, the same columns, no generation job seed in
two files (the same events twice: e.g. one file given twice, or two runs with one ``--seed``),
no two files with the same ``run_id`` (the same run: one file or a copy of it, e.g. a Delphes
import, which has no job seeds) and the same generator settings (process, mass window,
forced decays, tau filter, spin settings, ...; for detector-level files also the detector,
selection and systematic). Seeds and event counts may differ. ``force=True`` turns the seed,
run and settings checks into warnings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ditau.provenance import (
    INPUTS,
    RUN_ID,
    first_difference,
    identity,
    input_key,
    job_seeds,
    report,
    run_id,
    sample_settings,
)
from ditau.schema import (
    EventWriter,
    SchemaError,
    check_not_input,
    file_version,
    read_metadata,
    upgrade,
    upgraded_schema,
)


def check_one_sample(srcs: Sequence[Path], metas: Sequence[dict[str, Any]],
                     force: bool = False) -> None:
    """Refuse files that are not independent parts of one sample (module doc): a job seed in
    two files, two files of one run (the same ``run_id``), or a generator/detector setting
    that differs. Raises
    :class:`~ditau.provenance.ProvenanceError` naming both files and the seed or setting;
    with ``force`` a :class:`~ditau.provenance.ProvenanceWarning` instead."""
    hint = "merge files of one sample only, or --force to go on anyway"
    seen: dict[int, Path] = {}
    for p, meta in zip(srcs, metas, strict=True):
        seeds = job_seeds(meta)
        dup = sorted({s for s in seeds if s in seen})
        if dup:
            other = seen[dup[0]]
            same = " (the same file twice?)" if other.resolve() == p.resolve() else ""
            report(f"merge: {other} and {p} share generation job seed(s) {dup[:5]}: the same "
                   f"events twice{same}; generate each part with its own --seed", force, hint)
        for s in seeds:
            seen.setdefault(s, p)
    runs: dict[str, Path] = {}
    for p, meta in zip(srcs, metas, strict=True):
        rid = meta.get(RUN_ID)
        if rid and rid in runs:
            report(f"merge: {runs[rid]} and {p} are the same run ({rid}): the same events "
                   "twice; merge independent runs only", force, hint)
        if rid:
            runs.setdefault(rid, p)
    ref = sample_settings(metas[0])
    for p, meta in zip(srcs[1:], metas[1:], strict=True):
        diff = first_difference(ref, sample_settings(meta))
        if diff is not None:
            name, a, b = diff
            report(f"merge: {srcs[0]} and {p} differ in the setting '{name}' ({a!r} vs {b!r})",
                   force, hint)


def merge_files(paths: Sequence[str | Path], out: str | Path, batch_rows: int = 50_000,
                force: bool = False) -> int:
    """Merge the event files ``paths`` (same sample, same columns) into ``out``; returns rows.

    Streams in batches (memory does not grow with the sample); ``out`` appears only when
    complete. Raises :class:`SchemaError` naming the file for different samples, different
    columns, an existing output among the inputs, or an unreadable file, and
    :class:`~ditau.provenance.ProvenanceError` (a SchemaError) naming both files for a shared
    job seed or a different generator/detector setting (:func:`check_one_sample`; ``force``:
    a warning instead).
    """
    if not paths:
        raise SchemaError("merge: no input files")
    srcs = [Path(p) for p in paths]
    check_not_input(out, srcs, prefix="merge: ")
    metas = [read_metadata(p) for p in srcs]
    for p, m in zip(srcs, metas, strict=True):
        if m.get("stage") == "reconstruct":
            raise SchemaError(f"{p}: a reconstruction output (method {m.get('method')}); merge "
                              "takes event files")
    check_one_sample(srcs, metas, force)
    files = [pq.ParquetFile(p) for p in srcs]
    # files of an older schema version are upgraded (their missing columns filled)
    versions = [file_version(m) for m in metas]
    schemas = [upgraded_schema(f.schema_arrow.remove_metadata(), v)
               for f, v in zip(files, versions, strict=True)]
    schema = schemas[0]
    for p, sch in zip(srcs[1:], schemas[1:], strict=True):
        if set(sch.names) != set(schema.names):  # the writer puts them in one order
            diff = set(sch.names) ^ set(schema.names)
            raise SchemaError(f"merge: {p} has different columns from {srcs[0]} "
                              f"(e.g. {sorted(diff)[:5]})")
    rows = [f.metadata.num_rows for f in files]
    total = sum(rows)
    samples: set[str] = set()
    for p, f in zip(srcs, files, strict=True):
        col = f.read(columns=["sample"])["sample"]
        samples.update(str(s) for s in pa.compute.unique(col).to_pylist())
        if len(samples) > 1:
            raise SchemaError(f"merge: {p} adds sample(s) {sorted(samples)}; merge files of "
                              "one sample only (yields combine different samples)")
    sources: list[dict[str, Any]] = []
    inputs = [identity(p, m) for p, m in zip(srcs, metas, strict=True)]
    meta_out = {"stage": "merge", "merged_stage": metas[0].get("stage"), INPUTS: inputs,
                RUN_ID: run_id("merge", {"inputs": [input_key(i) for i in inputs]})}
    writer = EventWriter(out, schema, meta_out, require=("id",))
    try:
        offset = 0
        for p, f, n, meta, ver in zip(srcs, files, rows, metas, versions, strict=True):
            share = n / total
            for batch in f.iter_batches(batch_size=batch_rows):
                t = upgrade(pa.Table.from_batches([batch]), ver)
                ids = np.arange(offset, offset + t.num_rows, dtype=np.int64)
                t = t.set_column(t.schema.get_field_index("event_id"), "event_id", pa.array(ids))
                w = np.asarray(t["weight"]) * share
                t = t.set_column(t.schema.get_field_index("weight"), "weight", pa.array(w))
                writer.write(t)
                offset += t.num_rows
            sources.append({"path": str(p), "events": n, "first_event_id": offset - n,
                            "weight_scale": share, "metadata": meta})
        writer.close({"merged_from": sources, "n_events": total})
    except BaseException:
        writer.abort()
        raise
    return total
