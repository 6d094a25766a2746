"""Run the detector and selection over an event file (chunked, optionally in parallel).

Seeding: every chunk of ``DetectorConfig.chunk_size`` events draws its detector noise from
streams keyed by the detector seed and a digest of the chunk's events (event ids and particle
lists; :func:`ditau.detector.parametric.stream_seed`). Files generated with different seeds,
which all number their events from 0, therefore get independent noise with the same (default)
detector seed, and can be merged afterwards; a merged file or an input without provenance
(a user's ntuple) is keyed by its events alike. The same input and configuration give the same
output bytes with any number of workers or a Dask cluster.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ditau.detector import impact
from ditau.detector.config import DetectorConfig
from ditau.detector.parametric import INPUT_COLUMNS, VERTEX_COLUMNS, simulate
from ditau.generate.config import SIGNAL
from ditau.provenance import INPUT, INPUTS, RUN_ID, identity, input_key, run_id
from ditau.schema import (
    SchemaError,
    arrow_schema,
    check_not_input,
    check_writable,
    complete,
    file_version,
    group_columns,
    read_metadata,
    upgrade,
)
from ditau.select import SelectConfig, select
from ditau.stage import run_chunked


@dataclass
class DetectorSummary:
    path: Path
    events: int
    in_sr: int
    seconds: float


def reco_table(table: pa.Table, config: DetectorConfig, select_config: SelectConfig,
               fake_taus: bool) -> pa.Table:
    """The schema's reco columns for one chunk (``table`` has ``INPUT_COLUMNS``, and
    ``VERTEX_COLUMNS`` for the impact parameters: NaN without)."""
    cands = simulate(table, config, fake_taus=fake_taus)
    cols = select(cands, select_config)
    cols.update(impact.leg_columns(cands, cols))
    schema = arrow_schema("reco")
    return pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in schema},
                     schema=schema)


def _work(table: pa.Table, cfg: DetectorConfig, scfg: SelectConfig, fakes: bool,
          keep: list[str], schema_version: str) -> pa.Table:
    # an input of an older schema version, or without the optional columns: its missing
    # columns with their fill values (vertices NaN: no impact parameters)
    table = complete(upgrade(table, schema_version))
    reco = reco_table(table, cfg, scfg, fakes)
    out = table.select(keep)
    for f in reco.schema:
        out = out.append_column(f, reco.column(f.name))
    return out


def run_detector(inp: str | Path, out: str | Path, config: DetectorConfig | None = None,
                 select_config: SelectConfig | None = None, systematic: str | None = None,
                 keep_particles: bool = True, workers: int = 1,
                 progress: bool = True,
                 scheduler: str | Any | None = None) -> DetectorSummary:
    """Simulate the detector and the selection for every event of ``inp`` into ``out``.

    ``out`` holds the input's id and truth (and, with ``keep_particles``, particle) columns plus
    the reco group. ``systematic`` names a variation (:data:`ditau.detector.SYSTEMATICS`).
    Chunks of ``config.chunk_size`` events run in this process, in ``workers`` local processes or
    on a Dask cluster (``scheduler``: address or client), with the same output bytes
    (:func:`ditau.stage.run_chunked`); each chunk's random numbers are keyed by the detector
    seed and the chunk's events (module doc), so inputs of different generation runs get
    independent noise.
    """
    inp = Path(inp)
    check_not_input(out, inp)
    cfg = (config or DetectorConfig()).vary(systematic)
    scfg = select_config or SelectConfig()
    meta_in = read_metadata(inp)
    names = pq.ParquetFile(inp).schema_arrow.names
    missing = [c for c in INPUT_COLUMNS if c not in names]
    if missing:
        hint = (" (generated with --no-particles? the detector needs the particles group)"
                if any(c.startswith("fs_") for c in missing) else "")
        raise SchemaError(f"{inp}: missing column(s) {missing} needed by the detector{hint}")
    groups = ["id", "truth"] + (["particles"] if keep_particles else [])
    keep = [c.name for c in group_columns(*groups)]
    in_version = file_version(meta_in)
    missing = [c.name for c in group_columns(*groups, version=in_version)
               if c.name not in names and not c.optional]
    if missing:
        raise SchemaError(f"{inp}: missing column(s) {missing[:6]} of groups {groups}")
    out = check_writable(out)
    first = pq.read_table(inp, columns=["sample"]).column("sample")
    sample = first[0].as_py() if len(first) else SIGNAL
    fakes = cfg.fake_taus if cfg.fake_taus is not None else sample != SIGNAL
    metadata: dict[str, Any] = {
        **{k: v for k, v in meta_in.items() if k not in ("schema_version",)},
        "stage": "detector",
        "ditau_version": version("ditau"),
        "input": str(inp),
        "input_stage": meta_in.get("stage"),
        "input_config": meta_in.get("config"),
        "detector_config": cfg.to_dict(),
        "select_config": scfg.to_dict(),
        "systematic": systematic or "nominal",
        "fake_taus": fakes,
    }
    metadata.pop("config", None)
    metadata.pop(INPUTS, None)
    # provenance: the input's identity, and this run's own id (input + detector settings)
    metadata[INPUT] = identity(inp, meta_in)
    metadata[RUN_ID] = run_id("detector", {
        "input": input_key(metadata[INPUT]), "keep_particles": keep_particles,
        **{k: metadata[k] for k in ("detector_config", "select_config", "systematic",
                                    "fake_taus")}})
    start = time.perf_counter()
    n = n_sr = 0

    def count(t: pa.Table) -> None:
        nonlocal n, n_sr
        n += t.num_rows
        n_sr += int(np.sum(np.asarray(t["in_sr"])))

    columns = sorted(set(INPUT_COLUMNS) | (set(keep) & set(names))
                     | (set(VERTEX_COLUMNS) & set(names)))
    run_chunked(inp, out, functools.partial(_work, cfg=cfg, scfg=scfg, fakes=fakes, keep=keep,
                                            schema_version=in_version),
                columns=columns, schema=arrow_schema(*groups, "reco"), metadata=metadata,
                require=(*groups, "reco"), chunk=cfg.chunk_size, workers=workers,
                scheduler=scheduler, progress=progress, desc="detector", on_chunk=count,
                final_metadata=lambda: {"n_events": n, "n_in_sr": n_sr})
    return DetectorSummary(out, n, n_sr, time.perf_counter() - start)
