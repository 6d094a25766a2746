"""Peak memory of the chunked reconstruct stage against the input size (issue: stages stream).

Writes detector-level input files of N and 2N events (random but valid kinematics: the
figure is about memory, not physics), runs ``ditau reconstruct --method collinear`` on each in
a fresh process and prints the peak resident memory of each run and their ratio (reference:
1.0, flat; an in-memory stage would give ~2). Usage:

    python benchmarks/stream_memory.py [--events 500000] [--chunk 20000] [--dir /tmp/stream]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ditau.inputs import INPUT_COLUMNS
from ditau.schema import BY_NAME


def _chunk(rng: np.random.Generator, start: int, n: int) -> pa.Table:
    cols: dict[str, np.ndarray] = {"event_id": np.arange(start, start + n, dtype=np.int64)}
    for leg in ("p", "m"):
        pt = rng.uniform(20, 60, n)
        eta = rng.uniform(-2, 2, n)
        phi = rng.uniform(-np.pi, np.pi, n) + (0.0 if leg == "p" else 2.5)
        p = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], 1)
        e = np.sqrt(np.sum(p**2, 1) + 0.14**2)
        for part in ("chg", "neu"):
            for k, c in enumerate(("px", "py", "pz")):
                cols[f"reco_{part}_{c}_{leg}"] = p[:, k] if part == "chg" else np.full(n, np.nan)
            cols[f"reco_{part}_e_{leg}"] = e if part == "chg" else np.full(n, np.nan)
        cols[f"reco_mode_{leg}"] = np.full(n, "pi")
    cols["met_x"], cols["met_y"] = rng.normal(0, 20, n), rng.normal(0, 20, n)
    cols["met_sumet"] = rng.uniform(100, 400, n)
    cols["met_cov_xx"] = cols["met_cov_yy"] = np.full(n, 100.0)
    cols["met_cov_xy"] = np.zeros(n)
    schema = pa.schema([pa.field(c, BY_NAME[c].dtype) for c in INPUT_COLUMNS])
    return pa.table({c: cols[c] for c in INPUT_COLUMNS}, schema=schema)


def write_input(path: Path, n: int, seed: int = 1, block: int = 50000) -> None:
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(path, _chunk(rng, 0, 1).schema) as w:
        for s in range(0, n, block):
            w.write_table(_chunk(rng, s, min(block, n - s)))


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """Peak RSS (MB) and wall time of a child process (getrusage of the finished child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after <= before:
        raise RuntimeError("peak RSS of the child not above the earlier children's; run the "
                           "larger input first")
    return after / 1024.0, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--chunk", type=int, default=20_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/stream_memory"))
    a = ap.parse_args()
    a.dir.mkdir(parents=True, exist_ok=True)
    sizes = (2 * a.events, a.events)  # larger first: ru_maxrss of children is a running max
    rows = []
    for n in sizes:
        inp = a.dir / f"in_{n}.parquet"
        if not inp.exists():
            write_input(inp, n)
        out = a.dir / f"out_{n}.parquet"
        cmd = [sys.executable, "-m", "ditau", "reconstruct", str(inp), "-o", str(out),
               "--method", "collinear", "--chunk", str(a.chunk), "-q"]
        if n == sizes[0]:
            mb, wall = peak_rss_mb(cmd)
        else:  # a separate interpreter so that its peak is its own
            res = subprocess.run(
                [sys.executable, "-c",
                 "import resource,subprocess,sys;subprocess.run(sys.argv[1:],check=True,"
                 "capture_output=True);print(resource.getrusage(resource.RUSAGE_CHILDREN)"
                 ".ru_maxrss/1024)", *cmd], check=True, capture_output=True, text=True)
            mb, wall = float(res.stdout.strip()), float("nan")
        rows.append((n, mb, wall))
        out.unlink(missing_ok=True)
    rows.sort()
    for n, mb, wall in rows:
        print(f"reconstruct collinear, {n:>9,d} events, chunk {a.chunk}: peak RSS {mb:7.1f} MB"
              + (f", {wall:.1f} s" if wall == wall else ""))
    ratio = rows[1][1] / rows[0][1]
    print(f"peak RSS ratio (2N / N): {ratio:.3f} (reference 1.0 = flat; in-memory ~2)")


if __name__ == "__main__":
    main()
