"""Run the detector and selection over an event file (chunked, optionally in parallel)."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ditau.detector.config import DetectorConfig
from ditau.detector.parametric import INPUT_COLUMNS, simulate
from ditau.generate.config import SIGNAL
from ditau.schema import (
    EventWriter,
    SchemaError,
    arrow_schema,
    check_writable,
    group_columns,
    read_metadata,
)
from ditau.select import SelectConfig, select


@dataclass
class DetectorSummary:
    path: Path
    events: int
    in_sr: int
    seconds: float


def reco_table(table: pa.Table, config: DetectorConfig, select_config: SelectConfig,
               fake_taus: bool) -> pa.Table:
    """The schema's reco columns for one chunk (``table`` has ``INPUT_COLUMNS``)."""
    cols = select(simulate(table, config, fake_taus=fake_taus), select_config)
    schema = arrow_schema("reco")
    return pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in schema},
                     schema=schema)


def _chunks(path: Path, chunk: int, columns: list[str]) -> Iterator[pa.Table]:
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=chunk, columns=columns):
        yield pa.Table.from_batches([batch])


class _InProcess:
    """The executor interface, run in this process (workers = 1)."""

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn: Any, it: Any) -> Iterator[Any]:
        return map(fn, it)


def _work(args: tuple[pa.Table, DetectorConfig, SelectConfig, bool, list[str]]) -> pa.Table:
    table, cfg, scfg, fakes, keep = args
    reco = reco_table(table, cfg, scfg, fakes)
    out = table.select(keep)
    for f in reco.schema:
        out = out.append_column(f, reco.column(f.name))
    return out


def run_detector(inp: str | Path, out: str | Path, config: DetectorConfig | None = None,
                 select_config: SelectConfig | None = None, systematic: str | None = None,
                 keep_particles: bool = True, workers: int = 1,
                 progress: bool = True) -> DetectorSummary:
    """Simulate the detector and the selection for every event of ``inp`` into ``out``.

    ``out`` holds the input's id and truth (and, with ``keep_particles``, particle) columns plus
    the reco group. ``systematic`` names a variation (:data:`ditau.detector.SYSTEMATICS`).
    """
    inp = Path(inp)
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
    missing = [c for c in keep if c not in names]
    if missing:
        raise SchemaError(f"{inp}: missing column(s) {missing[:6]} of groups {groups}")
    out = check_writable(out)
    first = pq.read_table(inp, columns=["sample"]).column("sample")
    sample = first[0].as_py() if len(first) else SIGNAL
    fakes = cfg.fake_taus if cfg.fake_taus is not None else sample != SIGNAL
    n_total = pq.ParquetFile(inp).metadata.num_rows
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
    start = time.perf_counter()
    bar = tqdm(total=n_total, unit="ev", desc="detector", disable=not progress, leave=False)
    writer = EventWriter(out, arrow_schema(*groups, "reco"), metadata,
                         require=(*groups, "reco"))
    n = n_sr = 0
    columns = sorted(set(INPUT_COLUMNS) | set(keep))
    tasks = ((t, cfg, scfg, fakes, keep) for t in _chunks(inp, cfg.chunk_size, columns))
    try:
        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context(
                "fork" if "fork" in mp.get_all_start_methods() else "spawn")) \
                if workers > 1 else _InProcess() as ex:
            for t in ex.map(_work, tasks):
                writer.write(t)
                n += t.num_rows
                n_sr += int(np.sum(np.asarray(t["in_sr"])))
                bar.update(t.num_rows)
        writer.close({"n_events": n, "n_in_sr": n_sr})
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return DetectorSummary(out, n, n_sr, time.perf_counter() - start)
