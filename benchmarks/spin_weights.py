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

Then the pulls in bins of |cos Theta| and m_tautau, of the visible energy fractions, and the
separable-state check (C = B+ B-^T: concurrence 0, D < 1/3 expected).

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


def _binned_pulls(weights: Path, exact: Path) -> None:
    """Pulls (weighted - exact) of the 15 parameters in 3 bins of |cos Theta| and in m_tautau
    bins 60-80, 80-100, 100-120 GeV, and of the visible pi and rho energy fractions
    x = E_vis / E_tau (lab) in 10 bins: every bin's largest |pull| and the chi2."""
    tw, tx = pq.read_table(weights), pq.read_table(exact)
    aw, ax = from_truth(tw), from_truth(tx)
    ww = np.asarray(column_array(tw, "spin_weight"), dtype=float)
    cuts = {f"|cos T| {lo:.2f}-{hi:.2f}": (lambda an, t, lo=lo, hi=hi:
                                            (np.abs(an.cos_theta) >= lo)
                                            & (np.abs(an.cos_theta) < hi))
            for lo, hi in ((0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1.0001))}
    cuts |= {f"m {lo}-{hi} GeV": (lambda an, t, lo=lo, hi=hi:
                                  (column_array(t, "m_tautau") >= lo)
                                  & (column_array(t, "m_tautau") < hi))
             for lo, hi in ((60, 80), (80, 100), (100, 120))}
    all_p = []
    print(f"{'bin':<20} {'n exact':>8} {'n weights':>9}  chi2/15  max|pull| (parameter)")
    for name, cut in cuts.items():
        mw, mx = cut(aw, tw), cut(ax, tx)
        ow = measure(aw.h_p, aw.h_m, aw.kappa_p, aw.kappa_m, weights=ww, valid=aw.valid & mw)
        ox = measure(ax.h_p, ax.h_m, ax.kappa_p, ax.kappa_m, valid=ax.valid & mx)
        pull = (ow.vector - ox.vector) / np.hypot(ow.errors, ox.errors)
        all_p.append(pull)
        i = int(np.argmax(np.abs(pull)))
        print(f"{name:<20} {ox.n:>8d} {ow.n:>9d}  {np.sum(pull**2):6.1f}   "
              f"{abs(pull[i]):.2f} ({PARAMETER_NAMES[i]})")
    p = np.concatenate(all_p)
    print(f"all {len(p)} pulls: {np.sum(np.abs(p) > 2)} beyond 2 sigma "
          f"(expected {0.0455 * len(p):.1f}), chi2 = {np.sum(p**2):.1f}/{len(p)}")
    edges = np.linspace(0, 1, 11)
    for mode in ("pi", "rho"):
        for leg in ("p", "m"):
            def frac(t, leg=leg, mode=mode):
                sel = column_array(t, f"decay_mode_{leg}") == mode
                vis = column_array(t, f"chg_e_{leg}") + np.nan_to_num(
                    column_array(t, f"neu_e_{leg}"))
                return sel, vis / column_array(t, f"tau_e_{leg}")
            sw, xw = frac(tw)
            sx, xx = frac(tx)
            hw, _ = np.histogram(xw[sw], edges, weights=ww[sw])
            e2w, _ = np.histogram(xw[sw], edges, weights=ww[sw] ** 2)
            hx, _ = np.histogram(xx[sx], edges)
            # compare shapes: normalise both to unit area
            nw, nx = hw.sum(), hx.sum()
            pull = (hw / nw - hx / nx) / np.sqrt(e2w / nw**2 + hx / nx**2)
            print(f"E_vis/E_tau {mode} (tau{'+' if leg == 'p' else '-'}): chi2 = "
                  f"{np.sum(pull**2):.1f}/10, max |pull| = {np.max(np.abs(pull)):.2f}")


def _separable(weights: Path) -> None:
    """The weights sample put in the separable state (C = B+ B-^T): truth-level C, D and the
    concurrence (expected: 0, D < 1/3)."""
    from ditau.spin import truth_weights
    from ditau.tomography import quantum_observables

    t = pq.read_table(weights)
    an = from_truth(t)
    w = truth_weights(t, "separable")
    obs = measure(an.h_p, an.h_m, an.kappa_p, an.kappa_m, weights=w, valid=an.valid)
    q = quantum_observables(obs, n_toys=2000, seed=1)
    print(f"separable state: C diag = {np.round(np.diag(obs.C), 3)}, "
          f"D = {q.central['D']:.3f} ± {q.error['D']:.3f} (< 1/3), concurrence = "
          f"{q.central['concurrence']:.3f} ± {q.error['concurrence']:.3f} "
          f"(raw {q.central['concurrence_raw']:+.3f}), Z(D > 1/3) = "
          f"{q.significance['D']:.1f}")


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
    _binned_pulls(args.weights, args.exact)
    _separable(args.weights)
