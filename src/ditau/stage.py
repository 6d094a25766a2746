"""The chunked stage runner shared by the detector and reconstruct stages.

:func:`run_chunked` reads an event file in chunks of the columns a stage needs, applies the
stage function to each chunk (in this process, in a pool of local processes, or on a Dask
cluster given its scheduler address) and appends the results to one output file in input order;
the file is written under a temporary name and renamed at the end, so a failed run leaves no
partial output. Memory is bounded by the chunk size times the number of chunks in flight
(twice the workers), not by the file size. The output does not depend on the back-end or the
number of workers: chunk boundaries are fixed by ``chunk`` alone, and every random stream of a
stage is keyed by the events of its chunk.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ditau.schema import EventWriter

ChunkFunction = Callable[[pa.Table], pa.Table]


def _start_method() -> str:
    """``fork``, unless this process already started numba's OpenMP thread pool (a method with
    ``parallel=True``, e.g. MMC, run in-process before): GNU OpenMP aborts forked children;
    or imported torch (a model loaded or run in-process, e.g. to learn which columns it
    reads): children forked after torch's intra-op thread pool started hang on its locks
    (measured: ``reconstruct --method ml`` with 2 workers never returned)."""
    if "fork" not in mp.get_all_start_methods() or "torch" in sys.modules:
        return "spawn"
    try:
        import numba

        layer = numba.threading_layer()
    except (ImportError, ValueError):  # no numba, or no parallel region run yet
        return "fork"
    return "spawn" if layer == "omp" else "fork"


def ordered_map(fn: ChunkFunction, items: Iterable[pa.Table], *, workers: int = 1,
                scheduler: str | Any | None = None) -> Iterator[tuple[int, pa.Table]]:
    """``(rows in, fn(item))`` for each item, in input order, with at most ``2 * workers``
    items in flight (Dask: twice the cluster's worker threads).

    ``scheduler``: a Dask scheduler address (``tcp://host:port``) or a
    ``distributed.Client``; else ``workers`` local processes (1: this process).
    """
    if scheduler is not None:
        yield from _dask_map(fn, items, scheduler)
        return
    if workers <= 1:
        for t in items:
            yield t.num_rows, fn(t)
        return
    ctx = mp.get_context(_start_method())
    with cf.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        yield from _in_order(lambda t: ex.submit(fn, t), items, 2 * workers)


def _dask_map(fn: ChunkFunction, items: Iterable[pa.Table],
              scheduler: str | Any) -> Iterator[tuple[int, pa.Table]]:
    from distributed import Client

    own = isinstance(scheduler, str)
    client = Client(scheduler) if own else scheduler
    try:
        window = 2 * max(1, sum(client.nthreads().values()))
        yield from _in_order(lambda t: client.submit(fn, t, pure=False), items, window)
    finally:
        if own:
            client.close()


def _in_order(submit: Callable[[pa.Table], Any], items: Iterable[pa.Table],
              window: int) -> Iterator[tuple[int, pa.Table]]:
    """``(rows in, result)`` of futures ``submit(item)`` (local or Dask: anything with
    ``.result()``), in input order, with at most ``window`` items in flight."""
    pending: deque[tuple[Any, int]] = deque()
    for t in items:
        pending.append((submit(t), t.num_rows))
        if len(pending) >= window:
            fut, n = pending.popleft()
            yield n, fut.result()
    while pending:
        fut, n = pending.popleft()
        yield n, fut.result()


def read_chunks(path: str | Path, columns: Sequence[str], chunk: int) -> Iterator[pa.Table]:
    """The columns ``columns`` of a Parquet file in chunks of ``chunk`` rows.

    Read with a fixed 1 MiB buffer and without pre-buffering whole row groups: pyarrow's
    defaults let the reader's peak memory grow with the file (measured: +120 MB per million
    events; flat with these settings, benchmarks/stream_memory.py)."""
    pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    for batch in pf.iter_batches(batch_size=chunk, columns=list(columns), use_threads=False):
        yield pa.Table.from_batches([batch])


@dataclass
class StageRun:
    """What :func:`run_chunked` did: rows read and written."""

    path: Path
    rows_in: int
    rows_out: int


def run_chunked(inp: str | Path, out: str | Path, fn: ChunkFunction, *,
                columns: Sequence[str], schema: pa.Schema, metadata: dict[str, Any],
                require: Sequence[str], chunk: int, workers: int = 1,
                scheduler: str | Any | None = None, progress: bool = False,
                desc: str = "", on_chunk: Callable[[pa.Table], None] | None = None,
                final_metadata: Callable[[], dict[str, Any]] | None = None,
                chunks: Iterable[pa.Table] | None = None,
                total: int | None = None) -> StageRun:
    """Run the stage function ``fn`` over ``inp`` in chunks and write ``out`` (module doc).

    ``fn`` must be picklable for ``workers > 1`` or a scheduler (a module-level function or a
    ``functools.partial`` of one). ``schema``/``require``/``metadata``: of the output file
    (:class:`~ditau.schema.EventWriter`); ``on_chunk`` sees each output chunk (e.g. to count
    statuses) and ``final_metadata()`` adds metadata known only at the end; ``chunks``
    replaces the plain chunked read of ``columns`` (e.g. a renaming or ROOT reader) and
    ``total`` is then its row count (progress bar only).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    n_total = total if total is not None else pq.ParquetFile(inp).metadata.num_rows
    bar = tqdm(total=n_total, unit="ev", desc=desc, disable=not progress, leave=False)
    writer = EventWriter(out, schema, metadata, require=tuple(require))
    rows_in = rows_out = 0
    items = chunks if chunks is not None else read_chunks(inp, columns, chunk)
    try:
        for n, t in ordered_map(fn, items, workers=workers, scheduler=scheduler):
            writer.write(t)
            if on_chunk is not None:
                on_chunk(t)
            rows_in += n
            rows_out += t.num_rows
            bar.update(n)
        writer.close(final_metadata() if final_metadata is not None else None)
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return StageRun(writer.path, rows_in, rows_out)
