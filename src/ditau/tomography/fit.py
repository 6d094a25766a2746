"""Profile-likelihood fit of the tau-pair spin state (B+, B-, C) to detector-level histograms.

Model (templates: :mod:`ditau.tomography.templates`), per bin b of every channel:

    nu_b = L (1 + s_L eta_L) (1 + mu) [ (V_b + sum_k Delta_kb(eta_k)) . (1, theta) ]
           + L (1 + s_L eta_L)(1 + s_B eta_B) bkg_b,

theta the 15 spin parameters, V the nominal templates, Delta_k the change of the templates
under the detector variation k (tau/jet energy scale, soft MET) interpolated piecewise
linearly in eta_k (HistFactory "code 0": Cranmer et al., CERN-OPEN-2012-016), mu a free
signal normalisation (the spin state is measured from the shape), s_L the
luminosity and s_B the background cross-section uncertainties. Likelihood: Poisson in every
bin times a Gaussian constraint N(0, 1) per eta, and Barlow-Beeston-lite for the templates'
MC statistics (one gamma_b per bin scaling the whole prediction, Gaussian constraint of width
the relative MC error; Barlow & Beeston, CPC 77 (1993) 219; Conway, arXiv:1103.0354). The
gamma_b are profiled analytically (the root of the per-bin score equation, as in
HistFactory's "lite" treatment); theta and eta are fitted with iminuit (MIGRAD, HESSE).

Parameterisation: C_kk is replaced by the entanglement witness D = (C_kk - C_rr + C_nn)/3
(tomography.md "Quantum observables"), so D has its own profile-likelihood error and the test
of the separable boundary D <= 1/3 is a fit with D fixed. The test of m12 <= 1 (Horodecki: a
state violating the CHSH inequality has m12 > 1) is a fit with the nonlinear constraint
m12(C) <= 1 (MIGRAD on the same likelihood with a stiff penalty beyond the boundary, from the
best fit scaled onto it).
Significances: Z = sqrt(q), q = 2 (NLL_constrained - NLL_min), one-sided (Cowan, Cranmer,
Gross, Vitells, EPJC 71 (2011) 1554, q0 with Wilks' theorem).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from iminuit import Minuit
from iminuit._core import MnPrint
from numpy.typing import ArrayLike, NDArray

from ditau.tomography import quantum
from ditau.tomography.estimators import PARAMETER_NAMES, SpinObservables

# Minuit2 prints "not pos.def." notices of its own recovery to stderr; the fit reports
# validity through FitResult.valid instead
MnPrint.global_level = -1

#: The free signal normalisation (relative; last parameter of every likelihood): the spin
#: state is measured from the shape, so that the pseudo-data's yield fluctuation (4.7 % for
#: 460 events) is not read as an acceptance effect of the polarisation B_k.
SIGNAL_NORM = "signal_norm"
#: Names of the fit's spin parameters: PARAMETER_NAMES with C_kk replaced by D.
FIT_NAMES: tuple[str, ...] = tuple("D" if n == "C_kk" else n for n in PARAMETER_NAMES)
_I_D = FIT_NAMES.index("D")
#: Range of every spin parameter in the fit: twice the physical range (|B_i|, |C_ij| <= 1,
#: -1 <= D <= 1), so that an estimate near a physical boundary can fluctuate across it,
#: while an MC-limited fit cannot run away.
PARAMETER_LIMITS = (-2.0, 2.0)
_I_RR = PARAMETER_NAMES.index("C_rr")
_I_NN = PARAMETER_NAMES.index("C_nn")


def to_theta(p: ArrayLike) -> NDArray[np.float64]:
    """The 15 spin parameters (PARAMETER_NAMES order) from the fit's (D in place of C_kk):
    C_kk = 3 D + C_rr - C_nn."""
    t = np.array(p[:15], dtype=float)
    t[_I_D] = 3.0 * t[_I_D] + t[_I_RR] - t[_I_NN]
    return t


def from_theta(theta: ArrayLike) -> NDArray[np.float64]:
    """Inverse of :func:`to_theta`."""
    p = np.array(theta, dtype=float)
    p[_I_D] = (p[_I_D] - p[_I_RR] + p[_I_NN]) / 3.0
    return p


def _jacobian() -> NDArray[np.float64]:
    """d theta / d p (constant): theta = J p."""
    J = np.eye(15)
    J[_I_D] = 0.0
    J[_I_D, _I_D], J[_I_D, _I_RR], J[_I_D, _I_NN] = 3.0, 1.0, -1.0
    return J


@dataclass
class Variation:
    """A shape systematic: the templates' values (n_bins, 16) with the source shifted up and
    (optional) down; without ``down`` the shift is symmetrised."""

    up: NDArray[np.float64]
    down: NDArray[np.float64] | None = None


class SpinLikelihood:
    """-ln L of the module docstring for data ``data`` (n_bins,) at luminosity ``lumi``
    (fb^-1): ``templates`` (n_bins, 16) per fb^-1; the MC statistics of the templates either
    as ``mc_cov`` (n_bins, 16, 16; :attr:`Templates.cov`), so that the relative error of each
    bin's prediction is evaluated at the parameters being tested, sqrt(c^T cov c) / nu(c)
    with c = (1, theta) (the profile of Gaussian-constrained true templates: the spin
    templates are signed sums of few events and much noisier than T0; a relative error fixed
    at one state treats that noise as signal and biases C towards 0, like a regression with
    errors in the regressor), or as a fixed ``rel_mc`` (n_bins,) (0: no MC-statistics term);
    ``background`` (n_bins,) per fb^-1, ``variations`` {name: :class:`Variation`}. Bins
    without any expected MC events are left out (they carry no template information)."""

    def __init__(self, templates: ArrayLike, data: ArrayLike, lumi: float,
                 rel_mc: ArrayLike | None = None, background: ArrayLike | None = None,
                 variations: Mapping[str, Variation] | None = None,
                 lumi_unc: float = 0.0083, bkg_unc: float = 0.05,
                 mc_cov: ArrayLike | None = None, mc_reference: ArrayLike | None = None
                 ) -> None:
        V = np.asarray(templates, dtype=float)
        n = np.asarray(data, dtype=float)
        bkg = np.zeros(len(V)) if background is None else np.asarray(background, dtype=float)
        if not (len(V) == len(n) == len(bkg)):
            raise ValueError(f"templates ({len(V)}), data ({len(n)}) and background "
                             f"({len(bkg)}) have different numbers of bins")
        if not lumi > 0:
            raise ValueError(f"luminosity must be > 0, got {lumi}")
        if np.any(n < 0) or not np.all(np.isfinite(n)):
            raise ValueError("data must be finite and >= 0 in every bin")
        used = (np.abs(V).sum(1) + bkg) > 0
        self.used = used
        self.V = V[used]
        self.n = n[used]
        self.bkg = bkg[used]
        self.lumi = float(lumi)
        rel = np.zeros(len(V)) if rel_mc is None else np.asarray(rel_mc, dtype=float)
        with np.errstate(divide="ignore"):
            self.tau = np.where(rel[used] > 0, 1.0 / np.maximum(rel[used], 1e-300) ** 2,
                                np.inf)
        self.cov = None if mc_cov is None else np.asarray(mc_cov, dtype=float)[used]
        #: With ``mc_cov``: the 15 parameters at which the prediction's MC error is evaluated
        #: (None: at those tested; see ditau.tomography.moments on the run-away this invites)
        self.mc_reference = None if mc_reference is None else np.asarray(mc_reference, float)
        self.var_names = tuple(variations or {})
        ups, downs = [], []
        for v in (variations or {}).values():
            up = np.asarray(v.up, dtype=float)[used] - self.V
            down = (-up if v.down is None else np.asarray(v.down, dtype=float)[used] - self.V)
            ups.append(up)
            downs.append(down)
        self.d_up = np.array(ups).reshape(len(ups), *self.V.shape)
        self.d_down = np.array(downs).reshape(len(downs), *self.V.shape)
        self.lumi_unc, self.bkg_unc = float(lumi_unc), float(bkg_unc)
        self.names = (*FIT_NAMES, "lumi", "bkg_xsec", *self.var_names, SIGNAL_NORM)
        self.mc_stat = True

    @property
    def n_bins(self) -> int:
        """Bins entering the likelihood."""
        return len(self.n)

    @property
    def empty_reason(self) -> str:
        """Why no bin enters the likelihood ('' if some do)."""
        return "" if self.n_bins else "no bin has expected template or background events"

    def expected(self, p: ArrayLike) -> NDArray[np.float64]:
        """Expected events per used bin (without the MC-statistics gammas)."""
        p = np.asarray(p, dtype=float)
        coef = np.concatenate([[1.0], to_theta(p)])
        eta = p[17:-1]
        V = self.V
        if len(eta):
            shift = np.where(eta[:, None, None] >= 0, eta[:, None, None] * self.d_up,
                             -eta[:, None, None] * self.d_down)
            V = V + shift.sum(0)
        norm = self.lumi * (1.0 + self.lumi_unc * p[15])
        return norm * ((1.0 + p[-1]) * (V @ coef) + (1.0 + self.bkg_unc * p[16]) * self.bkg)

    def _tau(self, p: NDArray[np.float64], nu: NDArray[np.float64]) -> NDArray[np.float64]:
        """1 / (relative MC error)^2 of each bin's prediction at ``p`` (from ``mc_cov``)."""
        c = np.concatenate([[1.0], to_theta(p) if self.mc_reference is None
                            else self.mc_reference])
        norm = self.lumi * (1.0 + self.lumi_unc * p[15])
        var = norm**2 * np.einsum("bij,i,j->b", self.cov, c, c)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(var > 0, nu**2 / var, np.inf)

    def __call__(self, p: ArrayLike) -> float:
        """-ln L (up to a constant; the Poisson deviance / 2, so 0 for a perfect fit)."""
        p = np.asarray(p, dtype=float)
        nu_raw = self.expected(p)
        # densities of unphysical states can make a bin's prediction <= 0: below eps it is
        # continued smoothly as eps exp(nu/eps - 1) (value and slope continuous), so the
        # Poisson term rises linearly into the unphysical region instead of jumping (a hard
        # floor with a penalty made HESSE fail)
        eps = 1e-3 * max(float(self.n.sum()), 1.0) / max(self.n_bins, 1)
        with np.errstate(over="ignore", under="ignore"):
            nu = np.where(nu_raw >= eps, nu_raw,
                          eps * np.exp(np.minimum(nu_raw, eps) / eps - 1.0))
        n = self.n
        if self.mc_stat:
            tau = self.tau if self.cov is None else self._tau(p, nu)
            fin = np.isfinite(tau)
            g = np.ones_like(nu)
            t, v, k = tau[fin], nu[fin], n[fin]
            b = v - t
            # root of tau g^2 + (nu - tau) g - n = 0 (BB-lite score equation), stable form
            with np.errstate(over="ignore", invalid="ignore"):
                disc = np.sqrt(b * b + 4.0 * t * k)
            pos = b > 0
            g[fin] = np.where(pos, 2.0 * k / np.where(pos, b + disc, 1.0),
                              (disc - b) / (2.0 * t))
            g = np.where(g > 0, g, 1e-12)
            mu = g * nu
            con = 0.5 * np.sum(t * (g[fin] - 1.0) ** 2)
        else:
            mu, con = nu, 0.0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_term = np.where(n > 0, n * np.log(n / mu), 0.0)
        eta = p[15:-1]  # the constrained nuisance parameters (the signal norm is free)
        # a prediction far below 0 (exp underflow) with data in the bin: a finite wall
        log_term = np.where(np.isfinite(log_term), log_term, 1e30)
        return float(np.sum(mu - n + log_term) + con + 0.5 * np.sum(eta**2))


@dataclass
class FitResult:
    """Best fit: ``theta`` (15, PARAMETER_NAMES order) with covariance ``cov`` (15, 15, other
    parameters profiled: HESSE), ``d``/``d_err`` (profile-likelihood parabolic error of D),
    nuisance parameters ``nuisance`` {name: (value, error)}, ``nll`` at the minimum; the
    tests: ``z_entanglement`` (D <= 1/3 excluded at this many sigma, 0 if D < 1/3),
    ``z_bell`` (m12 <= 1), and the quantum observables from Gaussian toys of theta
    (``quantum``: concurrence, m12, ...)."""

    theta: NDArray[np.float64]
    cov: NDArray[np.float64]
    d: float
    d_err: float
    nuisance: dict[str, tuple[float, float]]
    nll: float
    valid: bool
    z_entanglement: float = float("nan")
    z_bell: float = float("nan")
    quantum: Any = None
    params: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0), repr=False)
    #: Why no fit was run ('' when it was): the likelihood has nothing to fit
    not_run: str = ""

    @property
    def errors(self) -> NDArray[np.float64]:
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))

    @property
    def at_bound(self) -> bool:
        """A fitted spin parameter sits at the +-2 bound (an MC-limited fit: its HESSE
        errors and tests are not reliable)."""
        p = np.asarray(self.params[:15], dtype=float)
        return bool(len(p) and np.any(np.abs(p) > 0.999 * PARAMETER_LIMITS[1]))

    @property
    def reliable(self) -> bool:
        """Converged, inside the parameter bounds, with finite errors."""
        return self.valid and not self.at_bound and bool(np.all(np.isfinite(self.errors)))

    @property
    def problem(self) -> str:
        """Why the fit is not :attr:`reliable` ('' if it is)."""
        if self.not_run:
            return f"not fitted: {self.not_run}"
        if not self.valid:
            return "did not converge (HESSE failed)"
        if self.at_bound:
            return "at the ±2 parameter bound (MC-limited)"
        if not np.all(np.isfinite(self.errors)):
            return "non-finite errors"
        return ""

    def observables(self) -> SpinObservables:
        """The fit as :class:`~ditau.tomography.estimators.SpinObservables` (n = 0)."""
        t = self.theta
        return SpinObservables(t[:3], t[3:6], t[6:].reshape(3, 3), self.cov, 0, 0.0, 0.0)


def _minuit(nll: SpinLikelihood, start: ArrayLike, fixed: Sequence[str] = ()) -> Minuit:
    m = Minuit(nll, np.asarray(start, dtype=float), name=nll.names)
    m.errordef = Minuit.LIKELIHOOD
    m.strategy = 1
    for i, name in enumerate(nll.names):
        m.errors[name] = 0.05 if i < 15 or name == SIGNAL_NORM else 0.5
        if i < 15:
            # the prediction's MC error grows with theta: without a bound an MC-limited fit
            # runs away
            m.limits[name] = PARAMETER_LIMITS
    for name in fixed:
        m.fixed[name] = True
    m.migrad(ncall=20000)
    return m


def _start(nll: SpinLikelihood, theta0: ArrayLike | None) -> NDArray[np.float64]:
    p = np.zeros(len(nll.names))
    if theta0 is not None:
        p[:15] = from_theta(theta0)
    return p


def fit(nll: SpinLikelihood, theta0: ArrayLike | None = None, fixed: Sequence[str] = (),
        tests: bool = True, n_toys: int = 2000, seed: int = 0) -> FitResult:
    """Maximum-likelihood fit of ``nll`` from ``theta0`` (15 spin parameters; default 0), the
    parameters ``fixed`` at their start values (0 for nuisances); with ``tests`` the
    profile-likelihood tests of D <= 1/3 and m12 <= 1 and the toys of the quantum
    observables (module docstring). Raises RuntimeError when MIGRAD fails. A likelihood
    without a bin (every channel below its minimum of template events) is not fitted: an
    invalid result whose ``not_run`` says why."""
    if nll.n_bins == 0:
        nan = float("nan")
        return FitResult(np.full(15, nan), np.full((15, 15), nan), nan, nan, {}, nan, False,
                         params=np.full(len(nll.names), nan), not_run=nll.empty_reason)
    m = _minuit(nll, _start(nll, theta0), fixed)
    if not m.valid:
        m.migrad(ncall=40000)
    m.hesse()
    p = np.array(m.values)
    free = [i for i, n in enumerate(nll.names) if not m.fixed[n]]
    cov_p = np.zeros((len(p), len(p)))
    if m.covariance is None:  # HESSE failed: no error matrix
        cov_p[:] = np.nan
    else:
        cov_p[np.ix_(free, free)] = np.array(m.covariance)[np.ix_(free, free)]
    J = _jacobian()
    cov = J @ cov_p[:15, :15] @ J.T
    res = FitResult(to_theta(p), cov, float(p[_I_D]), float(m.errors["D"]),
                    {n: (float(m.values[n]), float(m.errors[n])) for n in nll.names[15:]},
                    float(m.fval), bool(m.valid and m.covariance is not None), params=p)
    if tests and res.valid:
        res.z_entanglement = z_entanglement(nll, res, fixed)
        res.z_bell = z_bell(nll, res, fixed)
        res.quantum = quantum.quantum_observables(res.observables(), n_toys=n_toys, seed=seed)
    return res


def z_entanglement(nll: SpinLikelihood, best: FitResult, fixed: Sequence[str] = ()) -> float:
    """Profile-likelihood significance of D > 1/3: sqrt(2 (NLL(D = 1/3) - NLL_min)), 0 if the
    best-fit D <= 1/3."""
    if best.d <= 1.0 / 3.0:
        return 0.0
    start = best.params.copy()
    start[_I_D] = 1.0 / 3.0
    m = _minuit(nll, start, (*fixed, "D"))
    return float(np.sqrt(max(2.0 * (m.fval - best.nll), 0.0)))


def _m12(p: NDArray[np.float64]) -> float:
    return float(quantum.horodecki_m12(to_theta(p)[6:].reshape(3, 3)))


class _BellPenalty:
    """-ln L plus a stiff quadratic penalty K max(m12 - 1, 0)^2: MIGRAD's minimum of it is the
    minimum of -ln L on m12 <= 1 up to a violation of order 1/K (which only lowers the
    constrained minimum, so the Z from it is conservative; :func:`z_bell` raises K until the
    violation is below 1e-3)."""

    def __init__(self, nll: SpinLikelihood, stiffness: float) -> None:
        self.nll = nll
        self.names = nll.names
        self.stiffness = stiffness

    def __call__(self, p: ArrayLike) -> float:
        p = np.asarray(p, dtype=float)
        return self.nll(p) + self.stiffness * max(_m12(p) - 1.0, 0.0) ** 2


def z_bell(nll: SpinLikelihood, best: FitResult, fixed: Sequence[str] = ()) -> float:
    """Profile-likelihood significance of m12 > 1 (a CHSH-violating state):
    sqrt(2 (min_{m12 <= 1} NLL - NLL_min)), 0 if the best fit has m12 <= 1. The constrained
    minimum: MIGRAD on -ln L with a stiff penalty outside m12 <= 1 (:class:`_BellPenalty`),
    started from the best fit with C scaled onto m12 = 1 (on a toy it agrees with scipy's
    SLSQP with the exact constraint to 0.2 % in Z, 20x faster)."""
    m12 = _m12(best.params)
    if not m12 > 1.0:
        return 0.0
    start = best.params.copy()
    theta = to_theta(start)
    theta[6:] /= np.sqrt(m12) * (1.0 + 1e-6)
    start[:15] = from_theta(theta)
    # stiffen the penalty until the minimum lies within 1e-3 of the boundary (a precise
    # measurement needs a stiffer wall)
    point, stiffness = start, 1e5
    for _ in range(4):
        m = _minuit(_BellPenalty(nll, stiffness), point, fixed)  # type: ignore[arg-type]
        point = np.array(m.values)
        if _m12(point) - 1.0 < 1e-3:
            break
        stiffness *= 100.0
    # the start is on the boundary: the constrained minimum is at most its -ln L
    val = min(nll(point), nll(start))
    return float(np.sqrt(max(2.0 * (val - best.nll), 0.0)))


def impacts(nll: SpinLikelihood, best: FitResult) -> list[tuple[str, float, float]]:
    """Uncertainty breakdown of D: per nuisance parameter the quadrature difference of D's
    error with it free and fixed at its best-fit value, the MC statistics (fit without the
    Barlow-Beeston term) and the data statistics (every nuisance fixed, no MC term). Returns
    (name, sigma_D, share of the total variance in %), 'data statistics' first."""
    tot = best.d_err
    rows: list[tuple[str, float]] = []
    nps = list(nll.names[15:])
    start = best.params
    try:
        nll.mc_stat = False
        m = _minuit(nll, start, nps)
        m.hesse()
        rows.append(("data statistics", float(m.errors["D"])))
        m = _minuit(nll, start)
        m.hesse()
        no_mc = float(m.errors["D"])
    finally:
        nll.mc_stat = True
    rows.append(("MC statistics (templates)", float(np.sqrt(max(tot**2 - no_mc**2, 0.0)))))
    for name in nps:
        m = _minuit(nll, start, (name,))
        m.hesse()
        rows.append((name, float(np.sqrt(max(tot**2 - float(m.errors["D"]) ** 2, 0.0)))))
    total = tot**2
    return [(k, x, 100.0 * x**2 / total if total > 0 else float("nan")) for k, x in rows]
