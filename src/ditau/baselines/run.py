"""The ``reconstruct`` stage: run one reconstruction method over an event file, in chunks.

Reads the detector-level file in chunks of the methods' input columns, runs the method on each
chunk (in this process or in a pool of forked workers), and writes one method-output file
(:func:`~ditau.baselines.common.write_recon`) with the rows in input order, so the output does
not depend on the chunk size or the number of workers.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import inspect
import multiprocessing as mp
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from ditau.baselines.common import (
    INPUT_COLUMNS,
    inputs_from_table,
    recon_schema,
    write_recon,
)
from ditau.schema import RECO_STATUS, SchemaError, check_writable, read_metadata

Method = Callable[..., pa.Table]

#: Method name -> "module:function" (imported when used, so a missing one fails only then).
METHODS: dict[str, str] = {
    "collinear": "ditau.baselines.collinear:collinear",
    "fastmtt": "ditau.baselines.fastmtt:fastmtt",
    "mmc": "ditau.baselines.mmc:mmc",
    "ml": "ditau.ml.infer:ml",
}


def get_method(name: str) -> Method:
    """The reconstruction function registered as ``name``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    module, func = METHODS[name].split(":")
    try:
        return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as err:
        raise ValueError(f"method {name} not available ({err})") from err


def method_columns(name: str) -> tuple[str, ...]:
    """Event-table columns a method needs besides INPUT_COLUMNS: its module's
    ``EXTRA_COLUMNS`` (such a method is also given the chunk's table as ``table=``)."""
    get_method(name)
    module = importlib.import_module(METHODS[name].split(":")[0])
    return tuple(getattr(module, "EXTRA_COLUMNS", ()))


def _check_settings(name: str, method: Method, settings: dict[str, Any]) -> None:
    params = inspect.signature(method).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [p for p in params if p not in ("inputs", "table")]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(f"method {name}: unknown setting(s) {unknown}; "
                         f"settings are {allowed}")


@dataclass
class ReconstructSummary:
    """What :func:`reconstruct` did."""

    path: Path
    method: str
    events: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


def _chunks(inp: Path, chunk: int, only_sr: bool,
            extra: tuple[str, ...] = ()) -> Iterator[pa.Table]:
    pf = pq.ParquetFile(inp)
    cols = list(INPUT_COLUMNS) + list(extra) + (["in_sr"] if only_sr else [])
    for batch in pf.iter_batches(batch_size=chunk, columns=cols):
        t = pa.Table.from_batches([batch])
        if only_sr:
            t = t.filter(t["in_sr"]).drop_columns(["in_sr"])
        yield t


def _start_method() -> str:
    """``fork``, unless this process already started numba's OpenMP thread pool (a method with
    ``parallel=True``, e.g. MMC, run in-process before): GNU OpenMP aborts forked children."""
    if "fork" not in mp.get_all_start_methods():
        return "spawn"
    try:
        import numba

        layer = numba.threading_layer()
    except (ImportError, ValueError):  # no numba, or no parallel region run yet
        return "fork"
    return "spawn" if layer == "omp" else "fork"


def run_on_table(name: str, table: pa.Table, settings: Mapping[str, Any] | None = None,
                 source: str = "table") -> pa.Table:
    """The method-output table of method ``name`` run in-process on the event table
    ``table`` (a method that declared EXTRA_COLUMNS gets the table too, as ``table=``)."""
    if table.num_rows == 0:
        return recon_schema().empty_table()
    kw = dict(settings or {})
    if method_columns(name):
        kw["table"] = table
    return get_method(name)(inputs_from_table(table, source=source), **kw)


def _work(args: tuple[str, pa.Table, str, dict[str, Any]]) -> pa.Table:
    name, table, source, settings = args
    return run_on_table(name, table, settings, source)


def reconstruct(inp_path: str | Path, out_path: str | Path, method: str, *,
                chunk: int = 20000, workers: int = 1, only_sr: bool = False,
                progress: bool = True, **settings: Any) -> ReconstructSummary:
    """Run ``method`` (``collinear``, ``fastmtt``, ``mmc``, ``ml``) on every event of ``inp_path``
    (only signal-region events with ``only_sr``) and write the method-output file ``out_path``.

    ``chunk``: events per chunk; ``workers``: processes (> 1: a forked pool over chunks, the
    output still in input order); ``settings``: keyword arguments of the method, recorded in
    the file's metadata with the input path and the number of rows per status.
    """
    inp = Path(inp_path)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    func = get_method(method)
    _check_settings(method, func, settings)
    extra = method_columns(method)
    meta_in = read_metadata(inp)  # also checks that the file is a readable ditau file
    names = pq.ParquetFile(inp).schema_arrow.names
    needed = list(INPUT_COLUMNS) + list(extra) + (["in_sr"] if only_sr else [])
    missing = [c for c in needed if c not in names]
    if missing:
        raise SchemaError(f"{inp}: missing column(s) {missing[:6]} needed by the "
                          "reconstruction (run 'ditau detector' first)")
    out = check_writable(out_path)
    n_total = pq.ParquetFile(inp).metadata.num_rows
    start = time.perf_counter()
    bar = tqdm(total=n_total, unit="ev", desc=f"reconstruct {method}", disable=not progress,
               leave=False)
    tables: list[pa.Table] = []
    tasks = ((method, t, str(inp), settings)
             for t in _chunks(inp, chunk, only_sr, extra))

    def done(t: pa.Table, n_read: int) -> None:
        tables.append(t)
        bar.update(n_read)

    try:
        if workers == 1:
            for task in tasks:
                done(_work(task), task[1].num_rows)
        else:
            ctx = mp.get_context(_start_method())
            with cf.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
                pending: deque[tuple[cf.Future[pa.Table], int]] = deque()
                for task in tasks:  # a bounded window of chunks in flight, kept in order
                    pending.append((ex.submit(_work, task), task[1].num_rows))
                    if len(pending) >= 2 * workers:
                        fut, n = pending.popleft()
                        done(fut.result(), n)
                while pending:
                    fut, n = pending.popleft()
                    done(fut.result(), n)
    finally:
        bar.close()
    table = pa.concat_tables(tables) if tables else recon_schema().empty_table()
    # one row per event with candidate 0 (the point estimate); methods that sample (ml) add
    # rows 1..K per event: events and status counts are those of the candidate-0 rows
    first = table.filter(pc.equal(table["candidate"], 0))
    status = first["rec_status"].to_numpy(zero_copy_only=False)
    counts = {s: int(np.sum(status == s)) for s in RECO_STATUS}
    not_ok = first.filter(pc.not_equal(first["rec_status"], "ok"))
    reasons = Counter(not_ok["rec_reason"].to_pylist())
    metadata = {
        "method": method,
        "settings": settings,
        "input": str(inp),
        "input_stage": meta_in.get("stage"),
        "only_sr": only_sr,
        "n_events": first.num_rows,
        "n_rows": table.num_rows,
        "status_counts": counts,
        "reason_counts": dict(reasons.most_common(20)),
    }
    write_recon(table, out, metadata)
    return ReconstructSummary(out, method, first.num_rows, time.perf_counter() - start, counts)
