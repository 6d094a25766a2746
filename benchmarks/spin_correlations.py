"""Truth-level tau spin correlations in generated pi pi events against the LO expectation.

    python benchmarks/spin_correlations.py [--events 20000] [--uncorrelated]

Generates forced tau -> pi nu pairs (MPI and hadronisation off: they do not touch the tau
decays) and prints C_ij (helicity basis, Collins-Soper axis) with statistical errors, next to
the LO expectation from the events' own scattering angles and the reference's truth numbers
(shared/reference/tomography.md: C_kk ~ +0.97, C_rr ~ -0.48, C_nn ~ +0.48, +-0.02).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ditau.generate import GenerateConfig, run
from ditau.schema import read_events
from ditau.tomography import concurrence_diagonal, from_truth, lo_expectation, measure

REFERENCE = {"kk": 0.97, "rr": -0.48, "nn": 0.48}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--uncorrelated", action="store_true",
                    help="switch tau spin correlations off (validation: C must vanish)")
    a = ap.parse_args()
    cfg = GenerateConfig(events=a.events, seed=a.seed, force_decays=("pi",), mpi=False,
                         hadronisation=False, keep_particles=False,
                         tau_spin_correlations=not a.uncorrelated)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run(cfg, Path(tmp) / "pipi.parquet", progress=False)
        dt = time.perf_counter() - t0
        t = read_events(Path(tmp) / "pipi.parquet", require=("id", "truth"))
    cols = {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names}
    # truth analysers; pi+ direction: analysing power -1 relative to the tau+ spin; pi-: +1.
    an = from_truth(cols)
    obs = measure(an.h_p, an.h_m, an.kappa_p, an.kappa_m, valid=an.valid)
    c, err = obs.C, obs.C_err
    lo = lo_expectation(an.cos_theta[an.valid])
    print(f"{a.events} pi pi events ({'un' if a.uncorrelated else ''}correlated tau decays), "
          f"generated in {dt:.0f} s")
    print("element   measured          LO (same events)   reference   pull vs LO")
    for i, name in enumerate(("kk", "rr", "nn")):
        exp = 0.0 if a.uncorrelated else float(lo[name].mean())
        print(f"C_{name}     {c[i, i]:+.3f} +- {err[i, i]:.3f}    {exp:+.3f}             "
              f"{REFERENCE[name]:+.2f}       {(c[i, i] - exp) / err[i, i]:+.1f}")
    off = ~np.eye(3, dtype=bool)
    print(f"largest |off-diagonal| / error: {np.max(np.abs(c[off]) / err[off]):.1f}")
    # B = 0, diagonal C (Wootters; shared/reference/tomography.md "Quantum observables")
    conc = concurrence_diagonal(c)
    print(f"concurrence (diagonal-C formula, tomography.md): {conc:.3f}")


if __name__ == "__main__":
    main()
