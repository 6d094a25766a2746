"""Spin weights closure: an unpolarised Pythia sample reweighted to the LO production state vs
Pythia's exact spin correlations (truth level, tomography truth analysers).

    ditau generate -c unpol.yaml -o unpol.parquet -j 1 -q    # tau_spin_correlations: false,
                                                            # force_decays: [pi]
    ditau generate -n 2500 --force-decays pi -o exact.parquet -j 1 -q
    python benchmarks/spin_weights.py unpol.parquet exact.parquet

Prints B+-, C in the Collins-Soper helicity basis for: the exact sample; the unpolarised
sample unweighted (must be ~0); the unpolarised sample weighted with
w = 1 + B+.h+ + B-.h- + h+ C h- (ditau.spin) with the per-event LO state from (m_hat,
cos Theta_CS, flavour, quark direction); and the pulls weighted - exact.
"""

from __future__ import annotations

import sys

import numpy as np
import pyarrow.parquet as pq

from ditau.schema import column_array
from ditau.spin import from_analysers, production_state, spin_weight, state_from_truth
from ditau.tomography import PARAMETER_NAMES, from_truth, measure
from ditau.tomography.estimators import SpinObservables


def _measure(path: str, reweight: bool, quark_known: bool = True) -> SpinObservables:
    events = pq.read_table(path)
    an = from_truth(events)
    w = None
    if reweight:
        h_p, h_m = from_analysers(an)
        # per-event LO state; quark direction from the truth record or unknown (mixture)
        state = state_from_truth(events, an.cos_theta)
        if not quark_known:
            state = production_state(np.asarray(column_array(events, "m_hat")) ** 2,
                                     an.cos_theta, np.asarray(column_array(events, "hard_id1")),
                                     quark_sign=0)
        w = spin_weight(h_p, h_m, state)
        print(f"  {path}: <w> = {np.nanmean(w[an.valid]):.4f}, "
              f"n_eff/n = {np.sum(w[an.valid])**2 / np.sum(w[an.valid]**2) / an.valid.sum():.3f}")
    return measure(an.h_p, an.h_m, an.kappa_p, an.kappa_m, weights=w, valid=an.valid)


def _row(name: str, obs: SpinObservables) -> None:
    vals = " ".join(f"{v:+.3f}±{e:.3f}" for v, e in zip(obs.vector, obs.errors, strict=True))
    print(f"{name:<24} n={obs.n:<5d} {vals}")


def main(unpol: str, exact: str) -> None:
    """Print the three measurements and the pulls (weighted - exact) / combined error."""
    ex = _measure(exact, reweight=False)
    raw = _measure(unpol, reweight=False)
    wt = _measure(unpol, reweight=True)
    wt0 = _measure(unpol, reweight=True, quark_known=False)
    print(" " * 32 + " ".join(f"{n:>12}" for n in PARAMETER_NAMES))
    _row("exact (Pythia)", ex)
    _row("unpolarised, raw", raw)
    _row("unpolarised, weighted", wt)
    _row("weighted, quark unknown", wt0)
    for name, obs in (("pull weighted", wt), ("pull quark unknown", wt0)):
        pull = (obs.vector - ex.vector) / np.hypot(obs.errors, ex.errors)
        print(f"{name:<24} " + " ".join(f"{p:+12.2f}" for p in pull)
              + f"   chi2/ndf = {np.sum(pull**2):.1f}/15")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
