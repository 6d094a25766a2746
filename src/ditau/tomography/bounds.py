"""Physical bounds of the tomography's results: what the report flags as meaningless.

A two-qubit state has |C_ij| <= 1, Horodecki m12 <= 2, concurrence <= 1 and a density matrix
without negative eigenvalues. A result outside these bounds by more than ``n_sigma`` of its
uncertainty cannot come from any state: the sample is too small for it, the calibration's
response matrix is near singular (the calibration divides by it), or the method keeps too few
events. A result whose uncertainty is wider than the physical range of C (sigma > 1) says
nothing either. Each :class:`Flag` names the bound, the diagnosed reasons and the sample size
that would bring the uncertainty of C to :data:`TARGET_ERROR` (errors scale as 1/sqrt(N)).

Significances get a bound too: with N signal events, the decay-angle estimator of the witness
D has a per-event standard deviation of at least sqrt(2) (kappa = 1, |h+^T diag(1, -1, 1) h-|
<= 1: E[(3 h+^T M h-)^2] >= 3 for a state with D = 1, minus D^2), so no measurement of N events
gives Z(D > 1/3) above (1 - 1/3) sqrt(N / 2) (:func:`max_significance`). A per-channel Z above
it comes from a covariance estimated on too few simulated events.

This module reads the result dataclasses of :mod:`ditau.tomography.run`; it changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray

from ditau.tomography import quantum
from ditau.tomography.significance import GRAD_D, RUN2_LUMI, m12_diag, witness_d

if TYPE_CHECKING:
    from ditau.tomography.run import MethodResult, TomographyResult

#: Uncertainty of each C_ii the needed sample size is quoted for.
TARGET_ERROR: Final[float] = 0.1
#: A result is flagged when it lies beyond a bound by more than this many standard deviations.
N_SIGMA: Final[float] = 2.0
#: Fewest simulated events behind a per-channel number for the report to print it.
MIN_EVENTS: Final[int] = 20
#: Smallest singular value of the calibration's response below which it counts as near singular.
MIN_RESPONSE: Final[float] = 0.2
#: Method efficiency below which it is named as a reason.
MIN_EFFICIENCY: Final[float] = 0.5
_AXES: Final[tuple[str, ...]] = ("kk", "rr", "nn")


@dataclass(frozen=True)
class Flag:
    """One result outside what any physical state allows (or uninformative).

    ``quantity``: what (``"C_nn"``, ``"m12"``, ...); ``value``: its formatted value;
    ``bound``: the bound it violates; ``reasons``: the diagnosed causes; ``needed``: signal-
    region events (with a solution) for sigma(C) = :data:`TARGET_ERROR`, None if unknown;
    ``needed_generated``: the same in generated events at this sample's selection rate.
    """

    quantity: str
    value: str
    bound: str
    reasons: tuple[str, ...]
    needed: int | None = None
    needed_generated: int | None = None

    def text(self) -> str:
        """One sentence for the report."""
        out = f"{self.quantity} = {self.value} violates {self.bound}"
        if self.reasons:
            out += f" ({'; '.join(self.reasons)})"
        if self.needed is not None:
            out += f"; σ(C) ≈ {TARGET_ERROR:g} needs ≈ {_round(self.needed)} signal-region events"
            if self.needed_generated is not None:
                out += f" (≈ {_round(self.needed_generated)} generated at this selection rate)"
        return out


def _round(n: float) -> str:
    """2 significant digits with thousands separators: 123456 -> '120 000'."""
    if not np.isfinite(n) or n <= 0:
        return "?"
    digits = max(0, math.floor(math.log10(n)) - 1)
    r = int(round(n, -digits))
    return f"{r:,}".replace(",", " ")


def max_significance(n_signal: float) -> float:
    """The largest Z(D > 1/3) that ``n_signal`` perfectly measured signal events can give with
    the decay-angle estimator: (1 - 1/3) sqrt(N/2) (module docstring)."""
    return (2.0 / 3.0) * math.sqrt(max(n_signal, 0.0) / 2.0)


def total_cov(r: MethodResult) -> NDArray[np.float64]:
    """Covariance of a method's calibrated diag C: statistics plus the calibration's MC
    statistics (the bootstrap covariance) where estimated."""
    mc = np.asarray(r.systematics.get("MC statistics (calibration)", np.zeros((3, 3))), float)
    return np.asarray(r.calibrated_cov, float) + (mc if mc.ndim == 2 else np.diag(mc**2))


def diag_quantities(c: NDArray[np.float64], cov: NDArray[np.float64], n_toys: int = 2000,
                    seed: int = 0) -> dict[str, tuple[float, float]]:
    """(value, error) of D, m12, the concurrence and the smallest eigenvalue of rho for a
    diagonal C (k, r, n) with B = 0 (the calibrated measurement). D and m12: linear error
    propagation; the concurrence (unclipped, so that values above 1 show) and the eigenvalue:
    the spread of Gaussian toys."""
    c = np.asarray(c, float)
    cov = np.asarray(cov, float)
    m12, grad = m12_diag(c)
    toys = quantum.gaussian_toys(c, cov, n_toys, seed)
    conc = _concurrence_raw(c)
    conc_t = _concurrence_raw(toys)
    lam = _min_eigenvalue(c)
    lam_t = _min_eigenvalue(toys)
    return {"D": (witness_d(c), float(np.sqrt(max(GRAD_D @ cov @ GRAD_D, 0.0)))),
            "m12": (m12, float(np.sqrt(max(grad @ cov @ grad, 0.0)))),
            "concurrence": (float(conc), float(np.std(conc_t, ddof=1))),
            "min_eigenvalue": (float(lam), float(np.std(lam_t, ddof=1)))}


def _concurrence_raw(c: NDArray[np.float64]) -> NDArray[np.float64]:
    """1/2 max(|C_rr - C_nn| + C_kk - 1, |C_rr + C_nn| - C_kk - 1) (no clipping at 0), the
    concurrence of B = 0, diagonal C (:func:`ditau.tomography.quantum.concurrence_diagonal`)."""
    kk, rr, nn = c[..., 0], c[..., 1], c[..., 2]
    return 0.5 * np.maximum(np.abs(rr - nn) + kk - 1.0, np.abs(rr + nn) - kk - 1.0)


def _min_eigenvalue(c: NDArray[np.float64]) -> NDArray[np.float64]:
    """Smallest eigenvalue of rho(B = 0, diag C)."""
    z = np.zeros((*c.shape[:-1], 3))
    cm = np.zeros((*c.shape[:-1], 3, 3))
    for i in range(3):
        cm[..., i, i] = c[..., i]
    rho = quantum.density_matrix(z, z, cm)
    return np.linalg.eigvalsh(rho)[..., 0]


def _reasons(r: MethodResult, n_half: int) -> tuple[str, ...]:
    out = [f"too few events: {n_half} in the pseudo-data half"]
    sv = np.linalg.svd(np.asarray(r.calibration.response, float), compute_uv=False)
    if sv[-1] < MIN_RESPONSE:
        out.append(f"response matrix near singular (smallest singular value {sv[-1]:.2f}: "
                   "the detector-level C keeps little of the truth correlation)")
    if r.efficiency < MIN_EFFICIENCY:
        out.append(f"method efficiency {100 * r.efficiency:.0f} %")
    return tuple(out)


def method_flags(r: MethodResult, n_generated: int | None = None,
                 n_sigma: float = N_SIGMA) -> list[Flag]:
    """The physical-bound flags of one method's calibrated result (module docstring).

    Bounds are checked against the statistical error (the one the report prints with the
    value); the needed sample size uses the total (with the calibration's MC statistics).
    ``n_generated``: produced events of the sample, for the needed size in generated events.
    """
    c = np.asarray(r.calibrated, float)
    cov = np.asarray(r.calibrated_cov, float)  # the statistical error the report prints
    err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    tot = np.sqrt(np.clip(np.diag(total_cov(r)), 0.0, None))
    n_half = max(r.n_selected // 2, 1)
    worst = float(np.max(tot)) if np.all(np.isfinite(tot)) else math.inf
    needed = None
    needed_gen = None
    if np.isfinite(worst) and worst > TARGET_ERROR:
        needed = math.ceil(r.n_selected * (worst / TARGET_ERROR) ** 2)
        if n_generated and r.n_selected:
            needed_gen = math.ceil(needed * n_generated / r.n_selected)
    why = _reasons(r, n_half)
    if any("near singular" in w for w in why):
        needed = needed_gen = None  # 1/sqrt(N) does not extrapolate a degenerate calibration
    flags: list[Flag] = []

    def add(quantity: str, value: str, bound: str) -> None:
        flags.append(Flag(quantity, value, bound, why, needed, needed_gen))

    for i, ax in enumerate(_AXES):
        if abs(c[i]) - 1.0 > n_sigma * err[i]:
            add(f"C_{ax}", f"{c[i]:+.2f} ± {err[i]:.2f}", "|C_ij| ≤ 1")
    q = diag_quantities(c, cov)
    m12, e12 = q["m12"]
    if m12 - 2.0 > n_sigma * e12:
        add("m12", f"{m12:.3g} ± {e12:.2g}", "m12 ≤ 2")
    conc, econc = q["concurrence"]
    if conc - 1.0 > n_sigma * econc:
        add("concurrence", f"{conc:.3g} ± {econc:.2g}", "concurrence ≤ 1")
    lam, elam = q["min_eigenvalue"]
    if lam < -n_sigma * elam:
        add("smallest eigenvalue of ρ", f"{lam:.3g} ± {elam:.2g}", "ρ ≥ 0")
    if not flags and worst > 1.0:
        add("σ(C)", f"{worst:.2f}", "σ(C_ii) < 1 (with the calibration's MC statistics the "
            "uncertainty spans the physical range)")
    return flags


def channel_significance(r: MethodResult, lumi: float = RUN2_LUMI
                         ) -> dict[str, tuple[float, float, int, str | None]]:
    """Per channel of a method: (Z(D > 1/3), Z(m12 > 1), simulated events (estimated), why
    it is not meaningful or None) at ``lumi``, data statistics only.

    The simulated events behind a channel are estimated from its share of the signal yield
    (the result keeps no per-channel count): n_selected / 2 x s_ch / sum s. A channel with
    fewer than :data:`MIN_EVENTS` is not meaningful, nor one whose Z exceeds
    :func:`max_significance` of its signal events at ``lumi``.
    """
    from ditau.tomography.significance import significance

    total = sum(ch.signal_per_fb for ch in r.channels) or 1.0
    out: dict[str, tuple[float, float, int, str | None]] = {}
    for ch in r.channels:
        z_d, z_b = significance([ch]).at(lumi)
        k = round(0.5 * r.n_selected * ch.signal_per_fb / total)
        bound = max_significance(ch.signal_per_fb * lumi)
        why = None
        if k < MIN_EVENTS:
            why = f"≈ {k} simulated events (fewer than {MIN_EVENTS})"
        elif max(z_d, z_b) > bound:
            why = (f"Z above the {bound:.0f} that {_round(ch.signal_per_fb * lumi)} signal "
                   f"events allow: covariance from ≈ {k} simulated events")
        out[ch.name] = (z_d, z_b, k, why)
    return out


def result_flags(res: TomographyResult) -> dict[str, list[Flag]]:
    """Method -> its flags (:func:`method_flags`), for every calibrated method."""
    n_gen = None
    obs = res.truth_inclusive.get("observables") if res.truth_inclusive else None
    if obs is not None:
        n_gen = int(obs.n)
    return {m: method_flags(r, n_gen) for m, r in res.methods.items()}


def truth_flags(truth_inclusive: dict[str, Any], n_sigma: float = N_SIGMA) -> list[Flag]:
    """Flags of the truth-level measurement (all 15 parameters): |C_ij|, m12, concurrence
    and the smallest eigenvalue of rho against their bounds (errors from Gaussian toys)."""
    obs = truth_inclusive.get("observables")
    if obs is None:
        return []
    flags = []
    err = obs.C_err
    for i, a in enumerate("krn"):
        for j, b in enumerate("krn"):
            if abs(obs.C[i, j]) - 1.0 > n_sigma * err[i, j]:
                flags.append(Flag(f"C_{a}{b}", f"{obs.C[i, j]:+.2f} ± {err[i, j]:.2f}",
                                  "|C_ij| ≤ 1", (f"too few events: {obs.n}",)))
    toys = quantum.gaussian_toys(obs.vector, obs.cov, 1000, 0)
    rho = quantum.density_matrix(obs.B_p, obs.B_m, obs.C)
    lam = float(np.linalg.eigvalsh(rho)[0])
    rho_t = quantum.density_matrix(toys[:, 0:3], toys[:, 3:6], toys[:, 6:].reshape(-1, 3, 3))
    elam = float(np.std(np.linalg.eigvalsh(rho_t)[:, 0], ddof=1))
    if lam < -n_sigma * elam:
        flags.append(Flag("smallest eigenvalue of ρ", f"{lam:.3g} ± {elam:.2g}", "ρ ≥ 0",
                          (f"too few events: {obs.n}",)))
    m12 = float(quantum.horodecki_m12(obs.C))
    e12 = float(np.std(quantum.horodecki_m12(toys[:, 6:].reshape(-1, 3, 3)), ddof=1))
    if m12 - 2.0 > n_sigma * e12:
        flags.append(Flag("m12", f"{m12:.3g} ± {e12:.2g}", "m12 ≤ 2",
                          (f"too few events: {obs.n}",)))
    return flags


__all__ = ["MIN_EFFICIENCY", "MIN_EVENTS", "MIN_RESPONSE", "N_SIGMA", "TARGET_ERROR", "Flag",
           "channel_significance", "diag_quantities", "max_significance", "method_flags",
           "result_flags", "total_cov", "truth_flags"]
