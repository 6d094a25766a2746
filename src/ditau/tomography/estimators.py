"""Decay-angle estimators of the spin polarisations and correlation matrix; LO expectations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ditau.physics import SIN2_THETA_EFF

#: Names of the 15 entries of :attr:`SpinObservables.vector` (order of ``cov``).
PARAMETER_NAMES: tuple[str, ...] = (
    *(f"B_p_{i}" for i in "krn"), *(f"B_m_{i}" for i in "krn"),
    *(f"C_{i}{j}" for i in "krn" for j in "krn"),
)


def spin_correlation(h_p: ArrayLike, h_m: ArrayLike, kappa_p: float,
                     kappa_m: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """C_ij = 9 <h+_i h-_j> / (kappa+ kappa-) and its statistical error (i, j in k, r, n).

    From the decay distribution 1 + kappa+ B+.h+ + kappa- B-.h- + kappa+ kappa- h+^T C h-
    (shared/reference/tomography.md; Bernreuther et al. arXiv:1508.05271). ``h_p``/``h_m`` are
    N x 3 analyser components; ``kappa_p`` is the tau+ analysing power *relative to its spin*
    (for the pi+ direction: -1). Events with non-finite components are dropped.
    See :func:`measure` for polarisations, per-event kappa, weights and the full covariance.
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


@dataclass(frozen=True)
class SpinObservables:
    """Measured polarisations and spin correlations in the (k, r, n) helicity basis.

    ``B_p``/``B_m``: tau+ / tau- polarisation (3,); ``C``: correlation matrix (3, 3), row index
    tau+, column index tau-; ``cov``: (15, 15) covariance of :attr:`vector` =
    (B_p, B_m, C.ravel()) (names: :data:`PARAMETER_NAMES`); ``n``: events used; ``sum_w``:
    their summed weight; ``n_eff``: (sum w)^2 / sum w^2.
    """

    B_p: NDArray[np.float64]
    B_m: NDArray[np.float64]
    C: NDArray[np.float64]
    cov: NDArray[np.float64]
    n: int
    sum_w: float
    n_eff: float

    @property
    def vector(self) -> NDArray[np.float64]:
        """The 15 parameters (B_p, B_m, C.ravel())."""
        return np.concatenate([self.B_p, self.B_m, self.C.ravel()])

    @property
    def errors(self) -> NDArray[np.float64]:
        """Standard errors of :attr:`vector`."""
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))

    @property
    def B_p_err(self) -> NDArray[np.float64]:
        """Standard errors of ``B_p``."""
        return self.errors[0:3]

    @property
    def B_m_err(self) -> NDArray[np.float64]:
        """Standard errors of ``B_m``."""
        return self.errors[3:6]

    @property
    def C_err(self) -> NDArray[np.float64]:
        """Standard errors of ``C`` (3, 3)."""
        return self.errors[6:].reshape(3, 3)


def measure(h_p: ArrayLike, h_m: ArrayLike, kappa_p: ArrayLike, kappa_m: ArrayLike,
            weights: ArrayLike | None = None, valid: ArrayLike | None = None) -> SpinObservables:
    """B+-_i = 3 <h+-_i / kappa+-> and C_ij = 9 <h+_i h-_j / (kappa+ kappa-)> with covariance.

    Estimators from the decay distribution 1 + kappa+ B+.h+ + kappa- B-.h- +
    kappa+ kappa- h+^T C h- (shared/reference/tomography.md "Decay-angle estimators"), valid
    event by event, so per-event kappa (mixed channels) and event weights are allowed (the
    weighted mean of unbiased per-event terms stays unbiased). ``kappa_*`` are relative to each
    tau's own spin (scalars or (N,)). Events with ``valid`` False, non-finite h, kappa or
    weight, or kappa = 0 are dropped.

    Covariance of the weighted mean x_bar = sum w x / sum w of the per-event 15-vectors x:
    sum w^2 (x - x_bar)(x - x_bar)^T / (sum w)^2 * n/(n - 1) (for unit weights: the sample
    covariance / n).
    """
    hp = np.atleast_2d(np.asarray(h_p, dtype=np.float64))
    hm = np.atleast_2d(np.asarray(h_m, dtype=np.float64))
    n_all = len(hp)
    if hm.shape != hp.shape or hp.shape[1:] != (3,):
        raise ValueError(f"h_p and h_m must both be (N, 3), got {hp.shape} and {hm.shape}")
    kp = np.broadcast_to(np.asarray(kappa_p, dtype=np.float64), (n_all,))
    km = np.broadcast_to(np.asarray(kappa_m, dtype=np.float64), (n_all,))
    w = np.ones(n_all) if weights is None else np.broadcast_to(
        np.asarray(weights, dtype=np.float64), (n_all,))
    ok = (np.all(np.isfinite(hp), 1) & np.all(np.isfinite(hm), 1) & np.isfinite(kp)
          & np.isfinite(km) & (kp != 0) & (km != 0) & np.isfinite(w))
    if valid is not None:
        ok &= np.broadcast_to(np.asarray(valid, dtype=bool), (n_all,))
    hp, hm, kp, km, w = hp[ok], hm[ok], kp[ok], km[ok], w[ok]
    # per-event terms: 3 h+/kappa+, 3 h-/kappa-, 9 h+ h-^T/(kappa+ kappa-) (tomography.md)
    x = np.concatenate([3.0 * hp / kp[:, None], 3.0 * hm / km[:, None],
                        (9.0 * hp[:, :, None] * hm[:, None, :]
                         / (kp * km)[:, None, None]).reshape(-1, 9)], axis=1)
    n = len(x)
    sw, sw2 = float(np.sum(w)), float(np.sum(w**2))
    if n < 2 or sw == 0:
        nan3 = np.full(3, np.nan)
        return SpinObservables(nan3, nan3.copy(), np.full((3, 3), np.nan),
                               np.full((15, 15), np.nan), n, sw, np.nan)
    mean = w @ x / sw
    d = x - mean
    # variance of a weighted mean: sum w^2 d d^T / (sum w)^2, small-sample factor n/(n-1)
    cov = (d * (w**2)[:, None]).T @ d / sw**2 * n / (n - 1)
    return SpinObservables(mean[0:3], mean[3:6], mean[6:].reshape(3, 3), cov, n, sw, sw**2 / sw2)


# --- LO expectations


def z_couplings(sin2_theta_eff: float = SIN2_THETA_EFF) -> tuple[float, float]:
    """(A_tau, lambda) at the Z pole: g_V/g_A = 1 - 4 sin^2 theta_eff,
    A_tau = 2 g_V g_A/(g_V^2 + g_A^2), lambda = (g_V^2 - g_A^2)/(g_V^2 + g_A^2) = -sqrt(1 - A^2)
    (shared/reference/tomography.md "LO expectation")."""
    ratio = 1.0 - 4.0 * sin2_theta_eff
    a_tau = 2.0 * ratio / (1.0 + ratio**2)
    lam = (ratio**2 - 1.0) / (ratio**2 + 1.0)
    return a_tau, lam


def lo_expectation(cos_theta: ArrayLike, sin2_theta_eff: float = SIN2_THETA_EFF,
                   a_q: float | None = None) -> dict[str, NDArray[np.float64]]:
    """LO spin correlations and polarisation of q qbar -> Z -> tau+ tau- at the Z pole, per event.

    C_kk = 1, C_rr = -C_nn = lambda sin^2 Theta / (1 + cos^2 Theta + 2 A_q A_tau cos Theta),
    B+_k = B-_k = P_tau = -[A_tau (1 + cos^2) + 2 A_q cos] / (1 + cos^2 + 2 A_q A_tau cos)
    (shared/reference/tomography.md "LO expectation"); keys ``kk``, ``rr``, ``nn``, ``bk``.

    ``a_q=None`` (pp: the incoming-quark direction is unknown): the cross-section-weighted
    average of Theta and pi - Theta, in which the terms odd in cos Theta cancel:
    C_rr = lambda sin^2/(1 + cos^2) and B_k = -A_tau for every Theta. With a number, Theta is
    measured from the quark and the full formulas are used.
    """
    c = np.asarray(cos_theta, dtype=np.float64)
    a_tau, lam = z_couplings(sin2_theta_eff)
    aq = 0.0 if a_q is None else float(a_q)
    # tomography.md "LO expectation": dsigma/dcos ~ 1 + cos^2 + 2 A_q A_tau cos
    den = 1.0 + c**2 + 2.0 * aq * a_tau * c
    crr = lam * (1.0 - c**2) / den
    pol = -(a_tau * (1.0 + c**2) + 2.0 * aq * c) / den
    return {"kk": np.ones_like(c), "rr": crr, "nn": -crr, "bk": pol}


def lo_inclusive(sin2_theta_eff: float = SIN2_THETA_EFF,
                 abs_cos_max: float = 1.0) -> dict[str, Any]:
    """LO expectation averaged over |cos Theta| < ``abs_cos_max`` (quark direction unknown).

    <sin^2/(1 + cos^2)> over dsigma/dcos ~ 1 + cos^2 on [0, a] is (a - a^3/3)/(a + a^3/3)
    (1/2 inclusively; -> 1 for a -> 0, i.e. Theta = pi/2), so C_rr = -C_nn = lambda times
    that, C_kk = 1, B_k = -A_tau (shared/reference/tomography.md "LO expectation" table:
    C_rr -0.494, concurrence 0.494, m12 1.245, D 0.663 inclusively for sin^2 = 0.2315).
    Returns ``C`` (3, 3), ``B`` (3,), and the quantum observables of
    :mod:`ditau.tomography.quantum` evaluated on (B = 0, C) as in the reference table
    (``concurrence``, ``m12``, ``chsh``, ``D``, ``bell_b``) plus ``concurrence_with_b``, the
    concurrence of the full density matrix with B+ = B- = (B_k, 0, 0).
    """
    from ditau.tomography import quantum

    if not 0.0 <= abs_cos_max <= 1.0:
        raise ValueError(f"abs_cos_max must be in [0, 1], got {abs_cos_max}")
    a_tau, lam = z_couplings(sin2_theta_eff)
    a = abs_cos_max
    # integral of (1 - c^2) over integral of (1 + c^2) on [0, a] (tomography.md: <sin^2/(1+cos^2)>)
    ratio = 1.0 if a == 0 else (a - a**3 / 3.0) / (a + a**3 / 3.0)
    crr = lam * ratio
    c = np.diag([1.0, crr, -crr])
    b = np.array([-a_tau, 0.0, 0.0])
    zero = np.zeros(3)
    rho = quantum.density_matrix(b, b, c)
    return {
        "C": c, "B": b, "A_tau": a_tau, "lambda": lam,
        "concurrence": float(quantum.concurrence(quantum.density_matrix(zero, zero, c))),
        "concurrence_with_b": float(quantum.concurrence(quantum.nearest_physical(rho))),
        "m12": float(quantum.horodecki_m12(c)), "chsh": float(quantum.chsh_max(c)),
        "D": float(quantum.witness_d(c)),
        "bell_b": {k: float(v) for k, v in quantum.bell_b(c).items()},
    }
