"""Decay-angle estimators of the spin correlation matrix and LO expectations."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ditau.physics import SIN2_THETA_EFF


def spin_correlation(h_p: ArrayLike, h_m: ArrayLike, kappa_p: float,
                     kappa_m: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """C_ij = 9 <h+_i h-_j> / (kappa+ kappa-) and its statistical error (i, j in k, r, n).

    From the decay distribution 1 + kappa+ B+.h+ + kappa- B-.h- + kappa+ kappa- h+^T C h-
    (shared/reference/tomography.md; Bernreuther et al. arXiv:1508.05271). ``h_p``/``h_m`` are
    N x 3 analyser components; ``kappa_p`` is the tau+ analysing power *relative to its spin*
    (for the pi+ direction: -1). Events with non-finite components are dropped.
    """
    hp = np.asarray(h_p, dtype=np.float64)
    hm = np.asarray(h_m, dtype=np.float64)
    ok = np.all(np.isfinite(hp), 1) & np.all(np.isfinite(hm), 1)
    x = 9.0 * hp[ok, :, None] * hm[ok, None, :] / (kappa_p * kappa_m)
    n = len(x)
    if n < 2:
        nan = np.full((3, 3), np.nan)
        return nan, nan
    return x.mean(0), x.std(0, ddof=1) / np.sqrt(n)


def lo_expectation(cos_theta: ArrayLike,
                   sin2_theta_eff: float = SIN2_THETA_EFF) -> dict[str, NDArray[np.float64]]:
    """LO spin correlations of q qbar -> Z -> tau+ tau- at the Z pole, per event.

    C_kk = 1, C_rr = -C_nn = lambda sin^2 Theta / (1 + cos^2 Theta) with
    lambda = -sqrt(1 - A_tau^2), A_tau = 2 gV gA/(gV^2 + gA^2), gV/gA = 1 - 4 sin^2 theta_eff
    (shared/reference/tomography.md, "LO expectation"; the odd-in-cos Theta term of the
    denominator averages out when the quark direction is unknown).
    """
    c = np.asarray(cos_theta, dtype=np.float64)
    ratio = 1.0 - 4.0 * sin2_theta_eff
    a_tau = 2.0 * ratio / (1.0 + ratio**2)
    lam = -np.sqrt(1.0 - a_tau**2)
    crr = lam * (1.0 - c**2) / (1.0 + c**2)
    return {"kk": np.ones_like(c), "rr": crr, "nn": -crr}
