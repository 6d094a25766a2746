"""Classical baselines: speed, MMC sampling-budget convergence, and the resolution table.

    python benchmarks/baselines.py EVENTS.parquet [--speed-events 20000]
        [--budget-events 2000] [--out DIR] [--skip-speed] [--skip-budget] [--skip-table]

EVENTS is a detector-level signal file (``ditau detector``, several seeds joined with
``ditau merge``). Signal-region events only. Prints, on this machine:

1. events/s of each method in-process with its default settings (signal-region events
   replicated up to --speed-events), next to the issue's targets (MMC 2 000, FastMTT 5 000);
2. the MMC budget study: fixed budgets 1x, 2x, 4x, 16x (n_met scaled, one round) and the
   adaptive default on the first --budget-events events: per-event median |delta m|/m against
   16x, and the m_tautau and tau+ p_x resolution (HWHM, with a bootstrap error) at each
   budget; then the convergence figure: median |delta m|/m of the default (adaptive) and of
   the fixed 1x budget against 16x in bins of |dphi| of the visible legs;
3. ``ditau reconstruct`` (driver, 2 workers) for collinear / FastMTT / MMC on every
   signal-region event, then ``ditau evaluate``: the per-channel HWHM tables with the
   reference's MMC column. Written to --out (default: a temporary directory).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ditau.evaluate import evaluate_files
from ditau.evaluate.hwhm import hwhm
from ditau.reconstruct import INPUT_COLUMNS, inputs_from_table, reconstruct
from ditau.reconstruct.collinear import collinear
from ditau.reconstruct.fastmtt import fastmtt
from ditau.reconstruct.mmc import DEFAULT_N_MET, LAST_RUN, mmc
from ditau.schema import group_columns
from machine import describe_machine  # benchmarks/machine.py

TARGETS = {"mmc": 2000.0, "fastmtt": 5000.0}


def sr_table(path: Path, extra: tuple[str, ...] = ()) -> pa.Table:
    ids = [c.name for c in group_columns("id")]
    t = pq.read_table(path, columns=sorted(set(ids) | set(INPUT_COLUMNS) | {"in_sr", *extra}))
    t = t.filter(t["in_sr"])
    if t.num_rows == 0:
        raise SystemExit(f"{path}: no signal-region events")
    return t


def replicated(t: pa.Table, n_min: int) -> pa.Table:
    out = pa.concat_tables([t] * max(1, -(-n_min // t.num_rows)))
    return out.set_column(out.column_names.index("event_id"), "event_id",
                          pa.array(np.arange(out.num_rows, dtype=np.int64)))


def speed(t: pa.Table, n: int) -> None:
    table = replicated(t, n)
    inp = inputs_from_table(table)
    warm = inputs_from_table(table.slice(0, 50))
    print(f"\n1. speed, in-process, default settings, {len(inp)} signal-region events "
          f"({t.num_rows} distinct)")
    for name, fn in (("collinear", collinear), ("fastmtt", fastmtt), ("mmc", mmc)):
        fn(warm)  # compile / load the numba cache
        t0 = time.perf_counter()
        res = fn(inp)
        rate = len(inp) / (time.perf_counter() - t0)
        ok = np.mean(res["rec_status"].to_numpy(zero_copy_only=False) == "ok")
        tgt = TARGETS.get(name)
        ratio = f"   target {tgt:6.0f}   ratio {rate / tgt:5.2f}" if tgt else ""
        print(f"   {name:10s} {rate:9.0f} events/s   ok {ok:.3f}{ratio}")


def _boot_hwhm(x: np.ndarray, n_boot: int = 200, seed: int = 1) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    boots = [hwhm(x[rng.integers(0, len(x), len(x))]) for _ in range(n_boot)]
    return hwhm(x), float(np.std(boots))


def budget(t: pa.Table, path: Path, n: int) -> None:
    t = t.slice(0, n)
    inp = inputs_from_table(t)
    tt = pq.read_table(path, columns=["event_id", "m_tautau", "tau_px_p"])
    ids = tt["event_id"].to_numpy()
    row = np.searchsorted(ids, inp.event_id, sorter=np.argsort(ids))
    row = np.argsort(ids)[row]
    true_m = tt["m_tautau"].to_numpy()[row]
    true_px = tt["tau_px_p"].to_numpy()[row]
    runs = {}
    print(f"\n2. MMC sampling budget, {len(inp)} signal-region events "
          f"(n_met = {DEFAULT_N_MET} x factor, one round; 'adaptive' = the default)")
    for f in (1, 2, 4, 16, "adaptive"):
        kw = {} if f == "adaptive" else {"n_met": DEFAULT_N_MET * int(f), "max_rounds": 1}
        t0 = time.perf_counter()
        res = mmc(inp, **kw)
        dt = time.perf_counter() - t0
        runs[f] = (res["rec_m_tautau"].to_numpy(), res["rec_tau_px_p"].to_numpy(), dt)
        if f == "adaptive":
            rounds = float(np.mean(LAST_RUN["rounds"][LAST_RUN["todo"]]))
    ref = runs[16][0]
    print("   budget    events/s  median|dm|/m vs 16x  q90      HWHM dm/m (%)     "
          "HWHM dpx+/px+ (%)")
    for f, (m, px, dt) in runs.items():
        ok = np.isfinite(m) & np.isfinite(ref)
        d = np.abs(m[ok] - ref[ok]) / ref[ok]
        hm, em = _boot_hwhm((m[ok] - true_m[ok]) / true_m[ok])
        tp = true_px[ok]
        hp, ep = _boot_hwhm((px[ok] - tp) / tp)
        label = f"x{f}" if f != "adaptive" else "adaptive"
        print(f"   {label:8s} {len(inp) / dt:9.0f}  {np.median(d):19.4f}  "
              f"{np.quantile(d, 0.9):.3f}   {100 * hm:6.2f} +- {100 * em:4.2f}    "
              f"{100 * hp:6.2f} +- {100 * ep:4.2f}")
    print(f"   adaptive: {rounds:.2f} rounds per event on average")
    # convergence figure: default vs 16x in |dphi| bins
    dphi = np.abs(np.angle(np.exp(1j * (np.arctan2(inp.vis_p[:, 1], inp.vis_p[:, 0])
                                        - np.arctan2(inp.vis_m[:, 1], inp.vis_m[:, 0])))))
    edges = (0.0, 2.0, 2.5, 2.8, 3.0, np.pi + 1e-9)
    print("\n   convergence: median |dm|/m vs 16x (%) per |dphi| bin (events)")
    print("   |dphi|       " + "  ".join(f"[{lo:.1f},{hi:.1f})" for lo, hi in
                                       itertools.pairwise(edges)))
    for f in (1, "adaptive"):
        m = runs[f][0]
        cells = []
        for lo, hi in itertools.pairwise(edges):
            sel = np.isfinite(m) & np.isfinite(ref) & (dphi >= lo) & (dphi < hi)
            med = 100 * np.median(np.abs(m[sel] - ref[sel]) / ref[sel]) if sel.any() \
                else float("nan")
            cells.append(f"{med:4.1f} ({sel.sum():4d})")
        label = "fixed 1x" if f == 1 else "adaptive"
        print(f"   {label:12s} " + "  ".join(cells))


def table(path: Path, out: Path) -> None:
    print(f"\n3. resolution table: ditau reconstruct (2 workers) + ditau evaluate on {path}")
    files = []
    for method in ("collinear", "fastmtt", "mmc"):
        dest = out / f"{method}.parquet"
        s = reconstruct(path, dest, method, workers=2, only_sr=True, progress=False)
        print(f"   {method:10s} {s.events} events in {s.seconds:.1f} s "
              f"({s.events_per_s:.0f} events/s, driver incl. I/O); {dict(s.counts)}")
        files.append(dest)
    ev = evaluate_files(path, files, out=out / "evaluation")
    print()
    print(ev.markdown)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("events", type=Path)
    ap.add_argument("--speed-events", type=int, default=20000)
    ap.add_argument("--budget-events", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-budget", action="store_true")
    ap.add_argument("--skip-table", action="store_true")
    args = ap.parse_args()
    print(describe_machine())
    print(f"date: {time.strftime('%Y-%m-%d %H:%M')}; events: {args.events}")
    t = sr_table(args.events)
    if not args.skip_speed:
        speed(t, args.speed_events)
    if not args.skip_budget:
        budget(t, args.events, args.budget_events)
    if not args.skip_table:
        with tempfile.TemporaryDirectory() as tmp:
            out = args.out or Path(tmp)
            out.mkdir(parents=True, exist_ok=True)
            table(args.events, out)


if __name__ == "__main__":
    main()
