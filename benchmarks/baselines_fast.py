"""Throughput of the fast baselines (collinear approximation, FastMTT) on detector-level events.

    python benchmarks/baselines_fast.py [FILE.parquet] [--events 20000] [--all-events]

Signal-region events of FILE (default /work/data/ztautau_forced_reco.parquet), replicated to
at least --events rows, are reconstructed by the ``reconstruct`` driver with 1 and 2 worker
processes (file I/O included), and by the method functions in-process (FastMTT with 1 and 2
threads). Prints events/s, the fraction of events with status ok, and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ditau.baselines.collinear import collinear
from ditau.baselines.common import INPUT_COLUMNS, inputs_from_table, read_recon
from ditau.baselines.fastmtt import fastmtt
from ditau.baselines.run import reconstruct
from ditau.schema import group_columns, write_events

DEFAULT = Path("/work/data/ztautau_forced_reco.parquet")


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.node()}: {cpu}, {cores} usable cores, Python {platform.python_version()}"


def _replicated(path: Path, n_min: int, all_events: bool) -> pa.Table:
    ids = [c.name for c in group_columns("id")]
    t = pq.read_table(path, columns=sorted(set(ids) | set(INPUT_COLUMNS) | {"in_sr"}))
    if not all_events:
        t = t.filter(t["in_sr"])
    if t.num_rows == 0:
        raise SystemExit(f"{path}: no events selected")
    reps = max(1, -(-n_min // t.num_rows))
    out = pa.concat_tables([t] * reps)
    return out.set_column(out.column_names.index("event_id"), "event_id",
                          pa.array(np.arange(out.num_rows, dtype=np.int64)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--all-events", action="store_true", help="not only the signal region")
    args = ap.parse_args()
    print(_machine())
    table = _replicated(args.file, args.events, args.all_events)
    n_unique = table.num_rows
    print(f"input: {args.file} ({'all' if args.all_events else 'signal-region'} events, "
          f"replicated to {n_unique})")
    inp = inputs_from_table(table)
    fastmtt(inputs_from_table(table.slice(0, 50)))  # compile (or load the numba cache)
    print("\nin-process (method function only):")
    for label, fn in (("collinear", collinear),
                      ("fastmtt threads=1", lambda i: fastmtt(i, threads=1)),
                      ("fastmtt threads=2", lambda i: fastmtt(i, threads=2))):
        t0 = time.perf_counter()
        res = fn(inp)
        dt = time.perf_counter() - t0
        status = res["rec_status"].to_numpy(zero_copy_only=False)
        print(f"  {label:18s} {len(inp) / dt:10.0f} events/s   ok {np.mean(status == 'ok'):.3f}"
              f"   no_solution {np.mean(status == 'no_solution'):.3f}"
              f"   failed {np.mean(status == 'failed'):.3f}")
    print("\nreconstruct driver (read + method + write):")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "events.parquet"
        write_events(table, src, {"stage": "detector", "note": "benchmark replica"})
        for method in ("collinear", "fastmtt"):
            for workers in (1, 2):
                out = Path(tmp) / f"{method}_{workers}.parquet"
                s = reconstruct(src, out, method, workers=workers, chunk=5000, progress=False)
                ok = s.counts["ok"] / max(s.events, 1)
                print(f"  {method:10s} workers={workers}  {s.events_per_s:10.0f} events/s   "
                      f"ok {ok:.3f}   ({s.events} events, {s.seconds:.2f} s)")
                assert read_recon(out).num_rows == s.events


if __name__ == "__main__":
    main()
