"""Spin weights against Pythia's exact spin correlations, and what they buy in CPU time.

Two samples of one channel: ``--spin weights`` (unpolarised tau decays, TauDecays:mode = 3,
plus the per-event ``spin_weight`` to the LO Standard-Model state, ditau.spin) and the default
exact mode (Pythia's correlated decays, the reference). Either analyse existing files:

    ditau generate -n 5000 --force-decays pi --spin weights -s 7 -j 1 -q -o w.parquet
    ditau generate -n 5000 --force-decays pi -s 8 -j 1 -q -o exact.parquet
    python benchmarks/spin_weights.py w.parquet exact.parquet

or generate both in this process first (one core each, in turn), which also measures the
events per CPU-second of each mode in the same run:

    python benchmarks/spin_weights.py --generate 5000 w.parquet exact.parquet

Prints B+-, C (truth level, tomography truth analysers, Collins-Soper helicity basis) for the
exact sample, the weights sample unweighted (~0) and weighted, the pulls weighted - exact and
their chi2; n_eff / n with n_eff = (sum w)^2 / sum w^2; with ``--generate`` the events and
effective events per CPU-second of both modes and their ratio (target: >= 2).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ditau.generate import GenerateConfig, run
from ditau.schema import column_array, read_metadata
from ditau.tomography import PARAMETER_NAMES, from_truth, measure
from ditau.tomography.estimators import SpinObservables


def _generate(path: Path, events: int, seed: int, modes: tuple[str, ...], spin: str,
              fast: bool) -> float:
    """Generate in this process (workers=1) and return the CPU seconds it took."""
    extra = {"mpi": False, "hadronisation": False} if fast else {}
    cfg = GenerateConfig(events=events, seed=seed, force_decays=modes, spin=spin,
                         keep_particles=False, **extra)  # type: ignore[arg-type]
    start = time.process_time()
    run(cfg, path, workers=1, progress=False)
    return time.process_time() - start


def _measure(path: Path, weighted: bool) -> tuple[SpinObservables, float]:
    """(observables, n_eff / n of the spin weights over the analysed events)."""
    events = pq.read_table(path)
    an = from_truth(events)
    w = np.asarray(column_array(events, "spin_weight"), dtype=float) if weighted else None
    obs = measure(an.h_p, an.h_m, an.kappa_p, an.kappa_m, weights=w, valid=an.valid)
    if w is None:
        return obs, 1.0
    wv = w[an.valid]
    return obs, float(wv.sum() ** 2 / np.sum(wv**2) / len(wv))


def _row(name: str, obs: SpinObservables) -> None:
    vals = " ".join(f"{v:+.3f}±{e:.3f}" for v, e in zip(obs.vector, obs.errors, strict=True))
    print(f"{name:<24} n={obs.n:<6d} {vals}")


def main(weights: Path, exact: Path, cpu: dict[str, float] | None = None) -> None:
    """Print the measurements, the pulls (weighted - exact) / combined error, n_eff and, with
    ``cpu`` (CPU seconds per mode), the throughput."""
    for path, mode in ((weights, "weights"), (exact, "exact")):
        got = read_metadata(path).get("spin", {}).get("mode", "exact (pre-1.2 file)")
        if not str(got).startswith(mode):
            raise SystemExit(f"{path}: generated with spin mode {got!r}, expected {mode!r}")
    ex, _ = _measure(exact, weighted=False)
    raw, _ = _measure(weights, weighted=False)
    wt, frac = _measure(weights, weighted=True)
    print(" " * 32 + " ".join(f"{n:>12}" for n in PARAMETER_NAMES))
    _row("exact (Pythia)", ex)
    _row("unpolarised, raw", raw)
    _row("unpolarised x spin_weight", wt)
    pull = (wt.vector - ex.vector) / np.hypot(wt.errors, ex.errors)
    print(f"{'pull weighted - exact':<24} " + " ".join(f"{p:+12.2f}" for p in pull)
          + f"   chi2/ndf = {np.sum(pull**2):.1f}/15, max |pull| = {np.max(np.abs(pull)):.2f}")
    w = np.asarray(column_array(pq.read_table(weights), "spin_weight"), dtype=float)
    print(f"spin weights: <w> = {w.mean():.4f} ± {w.std() / np.sqrt(len(w)):.4f}, "
          f"n_eff/n = {w.sum()**2 / np.sum(w**2) / len(w):.3f} (all events), "
          f"{frac:.3f} (analysed), max w = {w.max():.2f}")
    if cpu:
        n_w = pq.ParquetFile(weights).metadata.num_rows
        n_x = pq.ParquetFile(exact).metadata.num_rows
        n_eff = w.sum() ** 2 / np.sum(w**2)
        rate_w, rate_x = n_w / cpu["weights"], n_x / cpu["exact"]
        eff_w = n_eff / cpu["weights"]
        print(f"CPU: weights {cpu['weights']:.1f} s for {n_w} events = {rate_w:.1f} ev/CPU-s "
              f"({eff_w:.1f} effective ev/CPU-s); exact {cpu['exact']:.1f} s for {n_x} = "
              f"{rate_x:.1f} ev/CPU-s")
        print(f"effective signal events per CPU-second, weights / exact = {eff_w / rate_x:.2f} "
              f"(raw events: {rate_w / rate_x:.2f}; target >= 2)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path, help="file generated with --spin weights")
    ap.add_argument("exact", type=Path, help="file generated in the default exact mode")
    ap.add_argument("--generate", type=int, metavar="N",
                    help="generate N events of each mode first (one core, CPU time measured)")
    ap.add_argument("--modes", default="pi", help="forced decay modes (default: pi)")
    ap.add_argument("--seed", type=int, default=7, help="seed of the weights sample (exact: +1)")
    ap.add_argument("--fast", action="store_true", help="MPI and hadronisation off")
    args = ap.parse_args()
    cpu_s = None
    if args.generate:
        modes = tuple(args.modes.split(","))
        cpu_s = {"weights": _generate(args.weights, args.generate, args.seed, modes, "weights",
                                      args.fast),
                 "exact": _generate(args.exact, args.generate, args.seed + 1, modes, "exact",
                                    args.fast)}
    main(args.weights, args.exact, cpu_s)
