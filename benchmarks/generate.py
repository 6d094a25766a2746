"""Generation throughput: bare Pythia ``next()`` vs the full ``ditau generate`` stage.

Prints events/s for bare Pythia (1 and 2 concurrent processes, init excluded) and for the full
stage (Pythia + truth extraction + Parquet, init included) on 1 and 2 workers, and the ratios
(targets: full stage >= 90 % of bare Pythia per core; ~linear in workers).

    python benchmarks/generate.py [--events 1000] [--profile]

``--profile`` also times Pythia alone under settings that isolate the cost of the correlated
tau decays (the finding: the gamma*/Z -> tau tau helicity matrix element dominates).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path

from ditau.generate import GenerateConfig, plan_jobs, run


def _bare(args: tuple[GenerateConfig, int, int, list[str]]) -> tuple[float, float]:
    """(init seconds, seconds for n events of next()) for one Pythia instance."""
    import pythia8mc

    cfg, n, seed, extra = args
    t0 = time.perf_counter()
    py = pythia8mc.Pythia("", False)
    for s in cfg.pythia_settings(seed) + extra:
        py.readString(s)
    py.init()
    t1 = time.perf_counter()
    for _ in range(n):
        py.next()
    return t1 - t0, time.perf_counter() - t1


def bare_rate(cfg: GenerateConfig, n: int, procs: int, extra: list[str] | None = None) -> float:
    """Aggregate events/s of ``procs`` concurrent bare Pythia loops (init excluded).

    Process i uses the seed of the stage's job i, so bare and full runs time the same events.
    """
    jobs = plan_jobs(cfg.replace(events=n * procs, events_per_job=n))
    with mp.get_context("fork").Pool(procs) as pool:
        res = pool.map(_bare, [(cfg, n, job.seed, extra or []) for job in jobs])
    return sum(n / dt for _, dt in res)


def stage_rate(cfg: GenerateConfig, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        summary = run(cfg, Path(tmp) / "bench.parquet", workers=workers, progress=False)
    return summary.events_per_second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1000,
                    help="events per core (default: one job of the default size)")
    ap.add_argument("--profile", action="store_true", help="also time cost-isolating settings")
    a = ap.parse_args()
    n = a.events
    base = GenerateConfig(events=n, events_per_job=n)
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; {n} events per core; defaults (13 TeV, correlated tau decays, "
          "ISR/FSR/MPI/hadronisation on)")

    bare1 = bare_rate(base, n, 1)
    bare2 = bare_rate(base, n, 2)
    full1 = stage_rate(base, 1)
    full2 = stage_rate(base.replace(events=2 * n), 2)
    print(f"bare Pythia next(), 1 process : {bare1:7.1f} events/s")
    print(f"bare Pythia next(), 2 processes: {bare2:7.1f} events/s ({bare2 / 2:.1f} per core)")
    print(f"ditau generate, 1 worker       : {full1:7.1f} events/s")
    print(f"ditau generate, 2 workers      : {full2:7.1f} events/s ({full2 / 2:.1f} per core)")
    print(f"ratio full/bare, 1 core        : {full1 / bare1:.3f}  (target >= 0.90)")
    print(f"ratio full/bare, 2 cores       : {full2 / bare2:.3f}  (target >= 0.90)")
    print(f"scaling 2 workers / 1 worker   : {full2 / full1:.2f}  (linear = 2)")

    if a.profile:
        variants = {
            "default (exact correlated tau decays)": [],
            "tau decays off (15:mayDecay = off)": ["15:mayDecay = off"],
            "uncorrelated tau decays (mode 3)": ["TauDecays:mode = 3"],
            "massless gamma*/Z ME (mMinForZ = 10)": ["TauDecays:mMinForZ = 10."],
            "MPI + hadronisation off": ["PartonLevel:MPI = off", "HadronLevel:Hadronize = off"],
            "MPI + hadronisation off, tau decays off": [
                "PartonLevel:MPI = off", "HadronLevel:Hadronize = off", "15:mayDecay = off"],
        }
        print("\nPythia alone, ms per event (1 process):")
        ref = None
        for name, extra in variants.items():
            ms = 1000.0 / bare_rate(base, n, 1, extra)
            ref = ref or ms
            print(f"  {name:42s} {ms:6.2f} ms  ({ms / ref:.2f} of default)")


if __name__ == "__main__":
    main()
