"""Two-qubit quantum observables of the tau pair: density matrix, concurrence, Bell variables.

Density matrix (shared/reference/tomography.md "Density matrix"):
rho = 1/4 (I x I + sum_i B+_i sigma_i x I + sum_j B-_j I x sigma_j + sum_ij C_ij sigma_i x sigma_j),
tau+ the first qubit, i, j in (k, r, n). Pauli mapping used throughout:

    sigma_k = sigma_z,  sigma_r = sigma_y,  sigma_n = sigma_x,

i.e. (x, y, z) = (n, r, k). It is right-handed because (n, r, k) is (n = r x k,
ditau.physics.helicity), so the Pauli algebra sigma_x sigma_y = i sigma_z holds with the
physical axes; the quantisation axis z is the tau- direction (helicity states). (A
left-handed assignment would act as a reflection on both spins: still a valid state with the
same concurrence, but B would flip.)

All functions accept stacked inputs: ``(..., 3)`` / ``(..., 3, 3)`` / ``(..., 4, 4)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

# the (B, C) <-> rho mapping lives with the spin state (re-exported here)
from ditau.spin.pauli import PAULI_KRN as PAULI_KRN
from ditau.spin.pauli import density_matrix as density_matrix
from ditau.spin.pauli import spin_parameters as spin_parameters

if TYPE_CHECKING:
    from ditau.tomography.estimators import SpinObservables

_YY = np.kron(PAULI_KRN[1], PAULI_KRN[1])  # sigma_y x sigma_y (sigma_r = sigma_y)
_K, _R, _N = 0, 1, 2

#: The reference's Bell-variable planes (shared/reference/tomography.md "Quantum observables").
BELL_PLANES: Final[tuple[str, ...]] = ("kr", "kn", "nr")


def is_physical(rho: ArrayLike, tol: float = 1e-9) -> NDArray[np.bool_] | bool:
    """Hermitian, unit trace and positive semi-definite, each within ``tol``."""
    r = np.asarray(rho, dtype=complex)
    herm = np.max(np.abs(r - np.conj(np.swapaxes(r, -1, -2))), axis=(-2, -1)) <= tol
    trace = np.abs(np.trace(r, axis1=-2, axis2=-1) - 1.0) <= tol
    hr = 0.5 * (r + np.conj(np.swapaxes(r, -1, -2)))
    with np.errstate(all="ignore"):
        pos = np.linalg.eigvalsh(hr)[..., 0] >= -tol
    out = herm & trace & pos
    return bool(out) if np.ndim(out) == 0 else out


def nearest_physical(rho: ArrayLike) -> NDArray[np.complex128]:
    """A physical state close to ``rho``: Hermitian part, negative eigenvalues set to 0, trace
    renormalised to 1 (eigenvectors kept). Physical input is returned unchanged (to rounding).

    This is the simple "clip and renormalise" projection, not the Frobenius-nearest state
    (Smolin, Gambetta, Smith, PRL 108 (2012) 070502, which subtracts a common shift); for
    states with small negative eigenvalues (statistical fluctuations) both agree to O(the
    negative eigenvalues)."""
    r = np.asarray(rho, dtype=complex)
    hr = 0.5 * (r + np.conj(np.swapaxes(r, -1, -2)))
    w, v = np.linalg.eigh(hr)
    w = np.clip(w, 0.0, None)
    s = np.sum(w, axis=-1, keepdims=True)
    w = np.where(s > 0, w / np.where(s > 0, s, 1.0), 0.25)  # all-negative: maximally mixed
    return np.einsum("...ai,...i,...bi->...ab", v, w, np.conj(v))


def _wootters_roots(rho: ArrayLike) -> NDArray[np.float64]:
    """sqrt of the eigenvalues of rho rho~ in decreasing order (Wootters, PRL 80 (1998) 2245).

    rho~ = (sigma_y x sigma_y) rho* (sigma_y x sigma_y) (matrix products). The eigenvalues of
    rho rho~ = sqrt(rho) [sqrt(rho) rho~] equal those of the Hermitian sqrt(rho) rho~ sqrt(rho)
    (AB and BA are isospectral), which are computed with eigvalsh: exact for physical states
    and numerically stable where rho rho~ is defective (e.g. product states). sqrt(rho) uses
    the eigenvalues clipped at 0 (exact for physical rho).
    """
    r = np.asarray(rho, dtype=complex)
    r = 0.5 * (r + np.conj(np.swapaxes(r, -1, -2)))
    # spin flip rho~ = (sy x sy) rho* (sy x sy) (Wootters 1998, eq. 4; tomography.md)
    tilde = _YY @ np.conj(r) @ _YY
    w, v = np.linalg.eigh(r)
    sq = np.einsum("...ai,...i,...bi->...ab", v, np.sqrt(np.clip(w, 0.0, None)), np.conj(v))
    lam = np.linalg.eigvalsh(sq @ tilde @ sq)
    return np.sqrt(np.clip(lam, 0.0, None))[..., ::-1]


def concurrence(rho: ArrayLike, clip: bool = True) -> NDArray[np.float64] | float:
    """Wootters concurrence max(0, sqrt(l1) - sqrt(l2) - sqrt(l3) - sqrt(l4)), l_i the
    eigenvalues of rho rho~ in decreasing order (Wootters PRL 80 (1998) 2245; tomography.md
    "Quantum observables"). ``clip=False`` returns the unclipped difference (negative for
    separable states; useful for significances). Meaningful for physical rho only."""
    s = _wootters_roots(rho)
    c = s[..., 0] - s[..., 1] - s[..., 2] - s[..., 3]
    out = np.maximum(c, 0.0) if clip else c
    return float(out) if np.ndim(out) == 0 else out


def concurrence_diagonal(C: ArrayLike) -> NDArray[np.float64] | float:
    """Concurrence for B = 0 and diagonal C (k, r, n): 1/2 max(0, |C_rr - C_nn| + C_kk - 1,
    |C_rr + C_nn| - C_kk - 1) (tomography.md "Quantum observables"; off-diagonal ignored)."""
    c = np.asarray(C, dtype=np.float64)
    kk, rr, nn = c[..., _K, _K], c[..., _R, _R], c[..., _N, _N]
    # tomography.md "Quantum observables", B = 0 and diagonal C
    out = 0.5 * np.maximum(0.0, np.maximum(np.abs(rr - nn) + kk - 1.0, np.abs(rr + nn) - kk - 1.0))
    return float(out) if np.ndim(out) == 0 else out


def horodecki_m12(C: ArrayLike) -> NDArray[np.float64] | float:
    """Sum of the two largest eigenvalues of C^T C (Horodecki, PLA 200 (1995) 340); Bell
    (CHSH) violation possible iff m12 > 1 (tomography.md "Quantum observables")."""
    c = np.asarray(C, dtype=np.float64)
    ev = np.linalg.eigvalsh(np.swapaxes(c, -1, -2) @ c)  # ascending
    out = ev[..., 2] + ev[..., 1]
    return float(out) if np.ndim(out) == 0 else out


def chsh_max(C: ArrayLike) -> NDArray[np.float64] | float:
    """Maximal CHSH value 2 sqrt(m12) (Horodecki 1995; tomography.md)."""
    out = 2.0 * np.sqrt(np.maximum(horodecki_m12(C), 0.0))
    return float(out) if np.ndim(out) == 0 else out


def bell_b(C: ArrayLike) -> dict[str, NDArray[np.float64] | float]:
    """The reference's Bell variables B+-_ij = sqrt(2) |C_ii +- C_jj| - 2 for ij in kr, kn, nr
    (tomography.md "Quantum observables"; Fabbrichesi et al. arXiv:2208.11723).

    Keys ``"kr+"``, ``"kr-"``, ... for each sign and ``"kr"``, ``"kn"``, ``"nr"`` for the
    larger of the two, sqrt(2)(|C_ii| + |C_jj|) - 2, which is what the reference's table quotes
    (inclusive LO: B_kr = +0.11, B_nr = -0.60). > 0 means a CHSH violation in that plane.
    """
    c = np.asarray(C, dtype=np.float64)
    idx = {"k": _K, "r": _R, "n": _N}
    out: dict[str, NDArray[np.float64] | float] = {}
    for plane in BELL_PLANES:
        a, b = c[..., idx[plane[0]], idx[plane[0]]], c[..., idx[plane[1]], idx[plane[1]]]
        # tomography.md: B+-_ij = sqrt(2) |C_ii +- C_jj| - 2
        plus = np.sqrt(2.0) * np.abs(a + b) - 2.0
        minus = np.sqrt(2.0) * np.abs(a - b) - 2.0
        for key, val in ((f"{plane}+", plus), (f"{plane}-", minus),
                         (plane, np.maximum(plus, minus))):
            out[key] = float(val) if np.ndim(val) == 0 else val
    return out


def witness_d(C: ArrayLike) -> NDArray[np.float64] | float:
    """Entanglement witness D = (C_nn - C_rr + C_kk)/3; entangled if D > 1/3 (tomography.md
    "Quantum observables"; fidelity with the (C_kk, C_rr, C_nn) = (1, -1, 1) Bell state is
    (1 + 3D)/4). Linear in C."""
    c = np.asarray(C, dtype=np.float64)
    out = (c[..., _N, _N] - c[..., _R, _R] + c[..., _K, _K]) / 3.0
    return float(out) if np.ndim(out) == 0 else out


# --- uncertainties from pseudo-experiments

#: Quantities of :func:`quantum_observables` and the thresholds of their significances.
THRESHOLDS: Final[dict[str, float]] = {"concurrence": 0.0, "m12": 1.0, "D": 1.0 / 3.0}


def _quantities(vec: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
    """All observables of stacked parameter vectors ``(..., 15)`` = (B_p, B_m, C.ravel())."""
    bp, bm, c = vec[..., 0:3], vec[..., 3:6], vec[..., 6:15].reshape(*vec.shape[:-1], 3, 3)
    rho = nearest_physical(density_matrix(bp, bm, c))
    out = {"concurrence": np.asarray(concurrence(rho)),
           "concurrence_raw": np.asarray(concurrence(rho, clip=False)),
           "m12": np.asarray(horodecki_m12(c)), "chsh": np.asarray(chsh_max(c)),
           "D": np.asarray(witness_d(c))}
    bb = bell_b(c)
    out.update({f"B_{p}": np.asarray(bb[p]) for p in BELL_PLANES})
    return out


@dataclass(frozen=True)
class QuantumResult:
    """Quantum observables with toy-based uncertainties (see :func:`quantum_observables`).

    Dicts keyed by quantity (``concurrence``, ``concurrence_raw``, ``m12``, ``chsh``, ``D``,
    ``B_kr``, ``B_kn``, ``B_nr``): ``central`` (from the measured B, C), ``error`` (std of the
    toys; exact linear propagation for D), ``bias`` (mean of toys - central), ``corrected``
    (central - bias); ``significance`` and ``p_toys`` keyed ``concurrence``, ``m12``, ``D``.
    ``physical``: whether the measured density matrix was positive (within 1e-9).
    """

    central: dict[str, float]
    error: dict[str, float]
    bias: dict[str, float]
    corrected: dict[str, float]
    significance: dict[str, float]
    p_toys: dict[str, float]
    physical: bool
    n_toys: int
    seed: int
    toys: dict[str, NDArray[np.float64]] = field(repr=False)

    @property
    def concurrence(self) -> float:
        """Central concurrence (of the nearest physical density matrix)."""
        return self.central["concurrence"]

    @property
    def concurrence_err(self) -> float:
        """Toy standard deviation of the concurrence."""
        return self.error["concurrence"]

    @property
    def m12(self) -> float:
        """Central Horodecki m12."""
        return self.central["m12"]

    @property
    def m12_err(self) -> float:
        """Toy standard deviation of m12."""
        return self.error["m12"]

    @property
    def d(self) -> float:
        """Central witness D."""
        return self.central["D"]

    @property
    def d_err(self) -> float:
        """Exact (linear) error of D."""
        return self.error["D"]


def gaussian_toys(mean: ArrayLike, cov: ArrayLike, n_toys: int,
                  seed: int = 0) -> NDArray[np.float64]:
    """``(n_toys, len(mean))`` Gaussian draws (reproducible for a seed). The covariance is
    symmetrised and its negative eigenvalues (rounding) set to 0, so singular matrices work."""
    m = np.asarray(mean, dtype=np.float64)
    cv = np.asarray(cov, dtype=np.float64)
    w, v = np.linalg.eigh(0.5 * (cv + cv.T))
    root = v * np.sqrt(np.clip(w, 0.0, None))
    z = np.random.default_rng(seed).standard_normal((n_toys, len(m)))
    return m + z @ root.T


def quantum_observables(obs: SpinObservables, n_toys: int = 2000,
                        seed: int = 0) -> QuantumResult:
    """Concurrence, m12, CHSH, D and the Bell variables with uncertainties, bias and significance.

    Central values from the measured (B+, B-, C) (concurrence of :func:`nearest_physical` of
    the measured rho). Uncertainties: ``n_toys`` Gaussian pseudo-experiments of the 15
    parameters drawn from ``obs.cov`` (seeded), the quantities recomputed on each; error =
    their standard deviation. The nonlinear quantities are biased at small N (tomography.md:
    E[m12] ~ 78.5/N without correlation): bias = mean(toys) - central, corrected =
    central - bias (first-order bias correction, as the toys scatter around the measurement
    the way the measurement scatters around the truth).

    Significance, one-sided, Gaussian approximation Z = (corrected - threshold)/error against
    concurrence > 0 (on ``concurrence_raw``, the unclipped Wootters combination, which stays
    smooth through 0), m12 > 1 and D > 1/3. D is linear in C: its error is the exact linear
    propagation sqrt(g^T cov g), its bias 0 and its Z exact for Gaussian C. ``p_toys`` is the
    fraction of bias-corrected toys at or below the threshold (0 means < 1/n_toys).
    """
    vec = obs.vector
    if not (np.all(np.isfinite(vec)) and np.all(np.isfinite(obs.cov))):
        raise ValueError(f"quantum_observables: non-finite B, C or covariance "
                         f"(n = {obs.n} events used)")
    central = {k: float(v) for k, v in _quantities(vec).items()}
    toy_vec = gaussian_toys(vec, obs.cov, n_toys, seed)
    toys = _quantities(toy_vec)
    error = {k: float(np.std(t, ddof=1)) for k, t in toys.items()}
    bias = {k: float(np.mean(t)) - central[k] for k, t in toys.items()}
    # D = (C_nn - C_rr + C_kk)/3 is linear: exact propagation, no bias (tomography.md)
    g = np.zeros(15)
    g[6 + 3 * _N + _N], g[6 + 3 * _R + _R], g[6 + 3 * _K + _K] = 1 / 3, -1 / 3, 1 / 3
    error["D"] = float(np.sqrt(max(g @ obs.cov @ g, 0.0)))
    bias["D"] = 0.0
    corrected = {k: central[k] - bias[k] for k in central}
    significance: dict[str, float] = {}
    p_toys: dict[str, float] = {}
    for name, thr in THRESHOLDS.items():
        key = "concurrence_raw" if name == "concurrence" else name
        with np.errstate(divide="ignore", invalid="ignore"):
            # numpy division: a zero error (a degenerate covariance) gives +-inf/NaN, no raise
            significance[name] = float(np.divide(corrected[key] - thr, error[key]))
        p_toys[name] = float(np.mean(toys[key] - bias[key] <= thr))
    physical = bool(is_physical(density_matrix(obs.B_p, obs.B_m, obs.C)))
    return QuantumResult(central, error, bias, corrected, significance, p_toys, physical,
                         n_toys, seed, toys)
