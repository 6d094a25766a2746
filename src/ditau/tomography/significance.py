"""Expected significance of entanglement and Bell nonlocality versus integrated luminosity.

Inputs per channel: the signal-region yields per fb^-1 (signal s, background b, from
``ditau yields``), the calibrated truth-level diagonal of C expected for the signal and the
per-event covariance of its calibrated estimator (``var1``: N_eff x the covariance of the
calibrated C measured on simulation). With N = (s + b) L events of which the background
carries no spin correlation, subtracting its expected contribution gives
cov_stat(L) = var1 (s + b) / (s^2 L) (dilution by S/(S+B)). Channels are combined by inverse
covariance; systematic shifts (one (3,) vector per source, fully correlated across channels)
add in quadrature to the combined covariance.

Observables (tomography.md, "Quantum observables"), all from diag C = (C_kk, C_rr, C_nn):
* entanglement witness D = (C_nn - C_rr + C_kk)/3, entangled iff D > 1/3 (linear: its
  Gaussian error is exact);
* Horodecki m12 = sum of the two largest C_ii^2 (off-diagonal elements zero at LO), Bell
  nonlocality iff m12 > 1; its error by linear propagation (gradient 2 C_ii on the two largest).
Significance Z = (value - threshold) / sigma, one-sided, Gaussian.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ditau.tomography import quantum

#: Luminosity of Run 2 (fb^-1), where the reference quotes its result.
RUN2_LUMI = 140.0
#: The witness D's gradient with respect to (C_kk, C_rr, C_nn).
GRAD_D = np.array([1.0, -1.0, 1.0]) / 3.0


@dataclass(frozen=True)
class ChannelInput:
    """One channel's ingredients (see module docstring)."""

    name: str
    signal_per_fb: float
    background_per_fb: float
    c_diag: NDArray[np.float64]
    var1: NDArray[np.float64]

    def stat_cov(self, lumi: float) -> NDArray[np.float64]:
        s, b = self.signal_per_fb * lumi, self.background_per_fb * lumi
        if not s > 0:
            return np.full((3, 3), np.inf)
        return np.asarray(self.var1) * (s + b) / s**2


def witness_d(c: ArrayLike) -> float:
    """D for a diagonal (C_kk, C_rr, C_nn) (:func:`ditau.tomography.quantum.witness_d`)."""
    return float(quantum.witness_d(np.diag(np.asarray(c, dtype=float))))


def m12_diag(c: ArrayLike) -> tuple[float, NDArray[np.float64]]:
    """Horodecki m12 for a diagonal C (:func:`ditau.tomography.quantum.horodecki_m12`: the sum
    of the two largest C_ii^2) and its gradient with respect to (C_kk, C_rr, C_nn)."""
    c = np.asarray(c, dtype=float)
    top = np.argsort(c**2)[-2:]
    grad = np.zeros(3)
    grad[top] = 2.0 * c[top]
    return float(quantum.horodecki_m12(np.diag(c))), grad


def combine(channels: Sequence[ChannelInput], lumi: float
            ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Inverse-covariance combination of the channels' calibrated diag C at ``lumi``."""
    inv_sum = np.zeros((3, 3))
    vec = np.zeros(3)
    for ch in channels:
        cov = ch.stat_cov(lumi)
        if not np.all(np.isfinite(cov)) or np.linalg.matrix_rank(cov) < 3:
            continue  # a channel with too few events to measure all three elements
        inv = np.linalg.inv(cov)
        inv_sum += inv
        vec += inv @ np.asarray(ch.c_diag)
    if not np.any(inv_sum):
        return np.full(3, np.nan), np.full((3, 3), np.inf)
    cov = np.linalg.inv(inv_sum)
    return cov @ vec, cov


@dataclass
class Significance:
    """Expected significances of D > 1/3 and m12 > 1 at each luminosity."""

    lumi: NDArray[np.float64]
    d: float
    m12: float
    sigma_d: NDArray[np.float64]
    sigma_m12: NDArray[np.float64]
    z_entanglement: NDArray[np.float64]
    z_bell: NDArray[np.float64]
    sigma_d_syst: float = 0.0
    sigma_m12_syst: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def at(self, lumi: float) -> tuple[float, float]:
        """(Z entanglement, Z Bell) interpolated at ``lumi`` (log-lumi)."""
        x = np.log(self.lumi)
        return (float(np.interp(np.log(lumi), x, self.z_entanglement)),
                float(np.interp(np.log(lumi), x, self.z_bell)))

    def lumi_for(self, z: float = 5.0) -> tuple[float, float]:
        """Luminosity (fb^-1) at which each significance reaches ``z`` (inf if never in the
        scanned range)."""
        return (lumi_reaching(self.lumi, self.z_entanglement, z),
                lumi_reaching(self.lumi, self.z_bell, z))


def lumi_reaching(lumi: ArrayLike, z_curve: ArrayLike, z: float = 5.0) -> float:
    """The luminosity (fb^-1) where ``z_curve`` (Z on the grid ``lumi``) first reaches ``z``:
    log-linear interpolation from the point below; the grid point itself where there is no
    finite point below; inf if never in the scanned range."""
    lum = np.asarray(lumi, dtype=float)
    arr = np.asarray(z_curve, dtype=float)
    above = np.flatnonzero(arr >= z)
    if len(above) == 0:
        return float("inf")
    i = above[0]
    if i == 0 or not np.isfinite(arr[i - 1]):
        return float(lum[i])
    x0, x1 = np.log(lum[i - 1]), np.log(lum[i])
    f = (z - arr[i - 1]) / (arr[i] - arr[i - 1])
    return float(np.exp(x0 + f * (x1 - x0)))


def significance(channels: Sequence[ChannelInput],
                 systematics: Mapping[str, ArrayLike] | None = None,
                 lumi: ArrayLike | None = None) -> Significance:
    """Expected significance vs luminosity for the combination of ``channels``.

    ``systematics``: source -> shift of the combined calibrated diag C (3,), added in
    quadrature (fully correlated between channels), or its covariance (3, 3) (a bootstrap's:
    MC statistics), added as it is. ``lumi``: grid in fb^-1 (default 1-10^4,
    log-spaced).
    """
    grid = np.geomspace(1.0, 1e4, 161) if lumi is None else np.asarray(lumi, dtype=float)
    syst = np.zeros((3, 3))
    for shift in (systematics or {}).values():
        syst += _syst_cov(shift)
    c0, _ = combine(channels, RUN2_LUMI)
    if not np.all(np.isfinite(c0)):  # no channel with events: nothing to test
        nan = np.full(len(grid), np.nan)
        return Significance(grid, float("nan"), float("nan"), nan, nan, nan, nan)
    d = witness_d(c0)
    m12, grad_m = m12_diag(c0)
    sd, sm = [], []
    for L in grid:
        _, cov = combine(channels, L)
        tot = cov + syst
        sd.append(np.sqrt(GRAD_D @ tot @ GRAD_D))
        sm.append(np.sqrt(grad_m @ tot @ grad_m))
    sd_a, sm_a = np.array(sd), np.array(sm)
    return Significance(grid, d, m12, sd_a, sm_a, (d - 1.0 / 3.0) / sd_a, (m12 - 1.0) / sm_a,
                        float(np.sqrt(GRAD_D @ syst @ GRAD_D)),
                        float(np.sqrt(grad_m @ syst @ grad_m)))


def _syst_cov(shift: ArrayLike) -> NDArray[np.float64]:
    """Covariance of a systematic: outer(v, v) of a shift (3,), or a covariance (3, 3)."""
    v = np.asarray(shift, dtype=float)
    return v if v.ndim == 2 else np.outer(v, v)


def impact_table(channels: Sequence[ChannelInput], systematics: Mapping[str, ArrayLike],
                 lumi: float = RUN2_LUMI) -> list[tuple[str, float, float]]:
    """Per source: (name, uncertainty on D, share of the total variance of D in %), with
    'data statistics' first, at ``lumi``."""
    _, cov = combine(channels, lumi)
    rows = [("data statistics", float(np.sqrt(GRAD_D @ cov @ GRAD_D)))]
    rows += [(k, float(np.sqrt(max(GRAD_D @ _syst_cov(v) @ GRAD_D, 0.0))))
             for k, v in systematics.items()]
    total = sum(x**2 for _, x in rows)
    return [(k, x, 100.0 * x**2 / total if total > 0 else float("nan")) for k, x in rows]
