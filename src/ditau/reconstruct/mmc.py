"""ATLAS Missing Mass Calculator (MMC), vectorised across events (numba, parallel over events).

Re-implementation of the MMC of arXiv:1012.4686 (Elagin, Murat, Pranko, Safonov) following
ATLAS DiTauMassTools (``MissingMassCalculatorV2.cxx``, ``MissingMassProb.cxx``), summarised in
shared/reference/baselines.md §2. Per event the unknowns are the two neutrino systems; the
scan variables are the neutrino azimuths phi_1, phi_2 (within +-``dphi`` = 0.4 of the visible
azimuths), the invisible mass m_nunu of each leptonic leg (0 .. m_tau - m_vis) and a shift of
the MET along the axes of its error ellipse (from the event's MET covariance). For each scan
point the neutrino momenta follow analytically (:func:`solve_leg`: pT from the MET and both
azimuths, pz from the tau-mass constraint, up to two roots per leg), and each combination of
roots is weighted by P = P_MET * P_theta(leg 1) * P_theta(leg 2) with the ATLAS 2012 angle
pdfs (:mod:`ditau.reconstruct.mmc_pdfs`).

Sampling (deterministic for a given seed, independent of threads and of batch composition):
stratified importance sampling, not a Markov chain. Each neutrino azimuth is written as
phi_nu = phi_vis + dphi sign(t) |t|^k with t stratified in ``n_phi`` cells of [-1, 1)
(k = ``phi_power``, default 2: points concentrated near the visible azimuth, weight k |t|^(k-1)
so the target stays uniform in phi_nu as in the MMC; k = 1 is the plain uniform scan); each of
the ``n_phi`` x ``n_phi`` cells gets ``n_met`` points with a MET shift drawn from the Gaussian
MET resolution (P_MET is the sampling density, so a point's weight is P_theta1 * P_theta2:
importance sampling of the same posterior that the ATLAS Markov chain samples); each leptonic
leg adds ``n_mnu`` stratified m_nunu values per point. Points per event: n_phi^2 n_met
n_mnu^(number of leptonic legs) (default 4096 for two hadronic legs). Random numbers come from
a counter-based hash of (seed, event_id, point), so an event gives the same answer whatever
else is in the batch and however many threads run. A point's solutions (all root
combinations) each enter, each root of a leg weighted by 1/(number of roots of that leg): the
expectation of ATLAS's refineSolutions, which keeps one pseudo-randomly chosen root per leg.

ATLAS terms (DiTauMassTools in athena, main branch 2024: MissingMassProb.cxx,
MissingMassCalculatorV2.cxx; the formulas are those of the MMC2012 tag-00-00-10 and
MMC2016MC15C calibration sets):

* ``tau_probability`` (on by default, as ATLAS's ``SetUseTauProbability(true)``): each
  solution is multiplied by ``MissingMassProb::TauProbability``, per leg
  min(0.5 m_tau / (p0 V (1 + R)^2), 1) with R = E_nu/E_vis, V the tau velocity and p0 the
  rest-frame momentum (the Jacobian of a visible energy uniform in the lab), for lep-had and
  lep-lep; had-had events use the 8-argument version (ATLAS's ``TauProbabilityWrapper``): an
  exponential in R = |p_nu|/|p_vis| with slopes per leading / sub-leading leg;
* ``use_mht`` (off, as ATLAS's ``m_allowUseHT``): lep-had events without a jet above 25 GeV
  whose legs are back-to-back (|dphi| > 2.95 below MET = 20 GeV, > 2.8 above) replace the
  MET by -MHT = -(vis1 + vis2)_T with the MHT resolution (two Gaussians, 4.822 / 10.31 GeV
  or 7.5 / 13.51 GeV) and ``MHtProbability`` weights, and the Njet = 0 TauProbability;
* ``met_resolution="atlas2016"``: ATLAS's isotropic MET resolution from sumEt, the jet
  multiplicity (0 or > 0 jets above 25 GeV) and dphi per channel instead of the event's
  covariance (:func:`atlas2016_met_sigma`).

The jet multiplicity comes from :data:`EXTRA_COLUMNS` of the event table.

Adaptive budget: the scan above is one round; rounds repeat (new random numbers, same
histogram) up to ``max_rounds`` (default 4) until the MLM peaks of the two halves of the
points (even / odd point number) agree within ``stop_tol`` (default 5 %), as ATLAS's floating
stopping criterion compares two halves of its Markov chain. Events whose posterior is flat
(back-to-back legs) take more rounds. Measured (benchmarks/mmc_convergence.py, 453
signal-region events, 2026-11-30), the median |delta m|/m against a fixed 16x budget in
|dphi| > 3.0 is 9.5 % at the old default (no TauProbability, one round), 4.6 % with the
TauProbability term alone (it sharpens the posterior), 3.3-3.5 % with the adaptive budget
(2.4 rounds per event on average); see benchmarks/RESULTS.md.

Bias: without the TauProbability term the MLM sits 16-17 % above the true m_tautau (median
ratio) with our detector (integrating over the MET error ellipse opens phase space at higher
mass); the term brings the median ratio to 1.01-1.02 and the HWHM from 21 % to 15-16 %.

Failure region: MMC answers for back-to-back legs (it needs no 2x2 inversion), but its
posterior there is broad along the tau directions: near-back-to-back events
(|sin dphi| < 0.1) are the ones with the largest Monte-Carlo noise and bias (median
m_MMC/m_true 1.74 in the issue's sample without the TauProbability term; measured values in
benchmarks/RESULTS.md). ``no_solution`` only when no point of the scan has a solution.

Estimators (documented choice):

* m_tautau: MLM, the peak of the probability-weighted m_tautau histogram (0-3000 GeV, 2 GeV
  bins as ATLAS) found with a sliding 5-bin window, then refined by a weighted parabola fit in
  a range 2x (3x if the window holds < 20 % of the weight) the window around it, kept if the
  fitted vertex is within 80 % of that range, else the window mean (``maxFromHist``, FIT
  strategy).
* tau momenta: the probability-weighted mean of the tau 3-momenta of the solutions whose
  m_tautau lies in the peak window (the 5 bins of the sliding-window maximum), with
  E = sqrt(p^2 + m_tau^2); as ATLAS, a tau momentum below the visible momentum is replaced by
  1.01 x visible. (ATLAS's MLNU3P takes the peak of each component's histogram; the window
  mean is cheaper, smooth and consistent with the MLM mass; m_tautau of the returned taus
  is therefore close to, not equal to, the MLM mass, which is what ``rec_m_tautau`` holds.)

Status: ``no_solution`` when no point of the scan has a solution; ``failed`` for bad inputs
(from :class:`~ditau.reconstruct.output.Inputs`).

Not implemented (ATLAS options off here): the tau-energy scan, the m_nunu probability term
(off in ATLAS), the tail clean-up (off in ATLAS for 8/13 TeV lep-had), the MMC2019 log-normal
pdfs (calibration file not public), and the Markov chain itself (see Sampling).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pyarrow as pa
from numpy.typing import ArrayLike, NDArray

from ditau.config import StageConfig
from ditau.inputs import Inputs
from ditau.physics import M_TAU, mass2
from ditau.reconstruct.mmc_pdfs import (
    ATLAS2012,
    MODE_KIND,
    angle_pdf_table,
    landau,
    param_table,
)
from ditau.reconstruct.output import recon_table
from ditau.schema import column_array, column_names

#: Half-width of the neutrino azimuth window around the visible azimuth (DiTauMassTools
#: m_dRmax_tau = 0.4).
DPHI = 0.4
#: m_tautau histogram: range and bin width (GeV), sliding-window half width in bins
#: (MissingMassCalculatorV2.cxx: 1500 bins on 0-3000 GeV; 5-bin window).
HIST_MAX = 3000.0
HIST_BIN = 2.0
WIN_HALF = 2

DEFAULT_N_PHI = 16
DEFAULT_N_MET = 16
DEFAULT_N_MNU = 4
DEFAULT_PHI_POWER = 2.0
DEFAULT_SMOOTH = 0.0

#: fast-math flags for the scan: reassociation, contraction, approximate functions; NOT the
#: no-NaN/no-Inf assumptions (the scan tests for missing solutions through comparisons).
_FAST = {"reassoc", "contract", "afn", "arcp"}

_U64 = np.uint64
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0


@numba.njit(cache=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:
    # splitmix64 finaliser (Steele, Lea, Flood, OOPSLA 2014)
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(cache=True, inline="always")
def _uniform(key: np.uint64, counter: np.uint64) -> float:
    """Uniform in [0, 1) from a counter-based hash of (key, counter)."""
    return float(_mix(key + counter * _GOLDEN) >> _S11) * _INV53


@numba.njit(cache=True, error_model="numpy", inline="always")
def solve_leg(pt_nu: float, cphi: float, sphi: float, vpx: float, vpy: float, vpz: float,
              ve: float, m2vis: float, mnu: float, m_tau: float) -> tuple[int, float, float]:
    """pz roots of one leg's invisible system for given pT, azimuth and mass.

    Returns (number of valid roots 0..2, pz_a, pz_b); valid roots come first.
    """
    # M2 = m_tau^2 - m_nu^2 - m_vis^2, p_proj = p_vis,T . n(phi), ET2 = E_vis^2 - pz_vis^2
    # (MissingMassCalculatorV2.cxx NuPsolutionV3; baselines.md §2)
    m2 = m_tau * m_tau - mnu * mnu - m2vis
    pproj = vpx * cphi + vpy * sphi
    et2 = ve * ve - vpz * vpz
    a = m2 + 2.0 * pt_nu * pproj
    # disc = M2^2 + 4 M2 pT p_proj - 4 (ET2 (m_nu^2 + pT^2) - pT^2 p_proj^2) = A^2 - 4 ET2 (..)
    disc = a * a - 4.0 * et2 * (mnu * mnu + pt_nu * pt_nu)
    if disc < 0.0 or et2 <= 0.0:
        return 0, 0.0, 0.0
    # pz = (A pz_vis +- E_vis sqrt(disc)) / (2 ET2); the root without cancellation directly,
    # the other from the product of the roots (c/a of the quadratic) for numerical stability
    sq = ve * math.sqrt(disc)
    q = a * vpz + (sq if vpz >= 0.0 else -sq)
    r1 = q / (2.0 * et2)
    c = ve * ve * (mnu * mnu + pt_nu * pt_nu) - 0.25 * a * a
    r2 = 2.0 * c / q if q != 0.0 else (a * vpz - sq) / (2.0 * et2)
    # keep a root only if M2 + 2 pT p_proj + 2 pz pz_vis > 0 (E_vis E_nu > 0; NuPsolutionV3)
    n = 0
    out_a = 0.0
    out_b = 0.0
    if a + 2.0 * r1 * vpz > 0.0:
        out_a = r1
        n = 1
    if a + 2.0 * r2 * vpz > 0.0:
        if n == 0:
            out_a = r2
        else:
            out_b = r2
        n += 1
    return n, out_a, out_b


@numba.njit(cache=True, error_model="numpy", inline="always")
def _neutrino_pts(metx: float, mety: float, c1: float, s1: float, c2: float,
                  s2: float) -> tuple[float, float]:
    # pT_nu1 = (METy cos phi2 - METx sin phi2)/sin(phi1 - phi2), and 1 <-> 2
    # (baselines.md §2; MissingMassCalculatorV2.cxx NuPsolutionV3)
    s12 = s1 * c2 - c1 * s2
    if s12 == 0.0:
        return -1.0, -1.0
    return (mety * c2 - metx * s2) / s12, -(mety * c1 - metx * s1) / s12


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _solve_many(vis1: NDArray[np.float64], vis2: NDArray[np.float64], met: NDArray[np.float64],
                phi1: NDArray[np.float64], phi2: NDArray[np.float64], mnu1: NDArray[np.float64],
                mnu2: NDArray[np.float64], m_tau: float
                ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    n = vis1.shape[0]
    nu1 = np.full((n, 2, 4), np.nan)
    nu2 = np.full((n, 2, 4), np.nan)
    for i in numba.prange(n):
        c1 = math.cos(phi1[i])
        s1 = math.sin(phi1[i])
        c2 = math.cos(phi2[i])
        s2 = math.sin(phi2[i])
        pt1, pt2 = _neutrino_pts(met[i, 0], met[i, 1], c1, s1, c2, s2)
        if not (pt1 > 0.0 and pt2 > 0.0):
            continue
        for leg in range(2):
            v = vis1[i] if leg == 0 else vis2[i]
            pt = pt1 if leg == 0 else pt2
            c = c1 if leg == 0 else c2
            s = s1 if leg == 0 else s2
            mnu = mnu1[i] if leg == 0 else mnu2[i]
            out = nu1 if leg == 0 else nu2
            m2vis = max(v[3] ** 2 - v[0] ** 2 - v[1] ** 2 - v[2] ** 2, 0.0)
            nr, za, zb = solve_leg(pt, c, s, v[0], v[1], v[2], v[3], m2vis, mnu, m_tau)
            for r in range(nr):
                z = za if r == 0 else zb
                out[i, r, 0] = pt * c
                out[i, r, 1] = pt * s
                out[i, r, 2] = z
                out[i, r, 3] = math.sqrt(pt * pt + z * z + mnu * mnu)
    return nu1, nu2


def solve_neutrinos(vis1: NDArray[np.float64], vis2: NDArray[np.float64],
                    met: NDArray[np.float64], phi1: NDArray[np.float64],
                    phi2: NDArray[np.float64], mnu1: NDArray[np.float64] | float = 0.0,
                    mnu2: NDArray[np.float64] | float = 0.0, m_tau: float = M_TAU
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Analytic neutrino solutions of the MMC for given azimuths and invisible masses.

    ``vis1``, ``vis2``: (n, 4) visible four-momenta (px, py, pz, E); ``met``: (n, 2) the MET
    (the neutrino pT sum); ``phi1``, ``phi2``: (n,) neutrino azimuths; ``mnu1``, ``mnu2``:
    invisible masses (0 for hadronic legs). Returns ``(nu1, nu2)``, each (n, 2, 4): the up to
    two roots of each leg (px, py, pz, E), NaN where a root does not exist (pT of either leg
    not positive, negative discriminant, or E_vis E_nu < 0). This is the same compiled
    solver the scan uses.
    """
    n = len(vis1)
    arr = [np.ascontiguousarray(np.broadcast_to(np.asarray(x, float), shape))
           for x, shape in ((vis1, (n, 4)), (vis2, (n, 4)), (met, (n, 2)), (phi1, (n,)),
                            (phi2, (n,)), (mnu1, (n,)), (mnu2, (n,)))]
    return _solve_many(*arr, float(m_tau))


#: TauProbability schemes (per leg; :func:`_tau_prob_leg`), DiTauMassTools MissingMassProb.cxx.
TP_OFF = 0  # no tau-probability term
TP_GENERIC = 1  # lep-had and lep-lep: TauProbability(type1, vis1, nu1, type2, vis2, nu2)
TP_HH = 2  # had-had, "events with jets" branch of the 8-argument TauProbability (m_UseHT off)
TP_HT_LOWMET = 3  # lep-had with MET -> -MHT (m_UseHT), detector MET < 20 GeV
TP_HT_HIGHMET = 4  # lep-had with MET -> -MHT (m_UseHT), detector MET >= 20 GeV

# had-had TauProbability constants, index 0 = leading, 1 = sub-leading leg in pT
# (MissingMassProb.cxx TauProbability(..., detmet), had-had "events with jets")
_HH_SLOPE = np.array([[-3.185, -2.052], [-3.876, -2.853]])  # [1-prong, 3-prong][lead, sub]
_HH_PAR = np.array([[[-0.3745, 0.01417, -7.285e-5], [-0.3683, 0.01807, -9.514e-5]],
                    [[-0.3055, 0.01149, -5.855e-5], [-0.3410, 0.01638, -9.465e-5]]])
# lep-had with m_UseHT, Njet25 = 0 (same function): leptonic Gaus + Landau in R per P_lep bin,
# [low MET, high MET][p1..p5][bin]
_HT_LEP = np.array([
    [[0.417, 0.64, 0.52, 0.678], [0.23, 0.17, 0.315, 0.319], [0.18, 0.33, 0.41, 0.299],
     [0.033, 0.109, 0.129, 0.096], [0.145, 0.107, 0.259, 0.304]],
    [[0.441, 0.64, 0.79, 0.8692], [0.218, 0.28, 0.29, 0.3304], [0.256, 0.33, 0.395, 0.4105],
     [0.048, 0.072, 0.148, 0.1335], [0.25, 0.68, 0.10, 0.2872]],
])
# low MET hadronic Gaussians in R per P_tau bin: [1-prong mean, 1-prong sigma, 3p mean, 3p sigma]
_HT_HAD_LOW = np.array([[-0.15, -0.13, -0.25, -0.114], [0.40, 0.54, 0.62, 0.57],
                        [-1.08, -1.57, -0.46, -0.39], [0.53, 0.85, 0.61, 0.53]])


@numba.njit(cache=True, inline="always")
def _p_bin(p: float) -> int:
    # P < 40, 40-45, 45-50, >= 50 GeV (MissingMassProb.cxx TauProbability(..., detmet))
    if p < 40.0:
        return 0
    if p < 45.0:
        return 1
    if p < 50.0:
        return 2
    return 3


@numba.njit(cache=True, error_model="numpy")
def _tau_prob_leg(scheme: int, kind: int, lead: bool, vis_e: float, pvis: float,
                  m_vis: float, nu_e: float, pnu: float, mnu: float, ptau: float,
                  etau: float, m_tau: float) -> float:
    """One leg's factor of ATLAS's TauProbability (DiTauMassTools MissingMassProb.cxx, athena
    main 2024, unchanged since MMC2012 tag-00-00-10): the product of both legs' factors is
    the term. Energies/momenta in GeV (lab frame): visible E and |p|, invisible E, |p| and
    mass, tau |p| and E; ``kind`` 0 leptonic, 1 one-prong, 2 three-prong."""
    if scheme == TP_OFF:
        return 1.0
    if scheme == TP_GENERIC:
        # R = E_nu/E_vis; the visible energy is uniform in the lab between the boosts of the
        # rest-frame momentum p0: density 0.5 m_tau / (p0 V (1 + R)^2), V = p/sqrt(p^2 + m^2),
        # capped at 1 (MissingMassProb::TauProbability, 7-argument version)
        e1 = 0.5 * (m_tau * m_tau + mnu * mnu - m_vis * m_vis) / m_tau
        e2 = m_tau - e1
        if e1 <= mnu or e1 >= m_tau or e2 <= m_vis or e2 >= m_tau:
            return 0.0
        v = ptau / math.sqrt(ptau * ptau + m_tau * m_tau)
        # p0 = |p_vis| in the tau rest frame (leptonic), E_nu* = p* (hadronic, massless nu)
        p0 = math.sqrt(e2 * e2 - m_vis * m_vis) if kind == 0 else e1
        r = nu_e / vis_e
        return min(0.5 * m_tau / (p0 * v * (r + 1.0) ** 2), 1.0)
    r = pnu / pvis  # R = |p_nu| / |p_vis| in the had-had and m_UseHT branches
    if scheme == TP_HH:
        if kind == 0:
            return 1.0
        k = 0 if kind == 1 else 1
        o = 0 if lead else 1
        slope = _HH_SLOPE[k, o]
        # below E_tau = 100 GeV the slope is scaled by 1/|pol2(E) slope|, within [1, 100]
        # (TauProbability(..., detmet), had-had with jets)
        scale = 1.0
        if etau <= 100.0:
            c = _HH_PAR[k, o]
            scale = 1.0 / abs((c[0] + c[1] * etau + c[2] * etau * etau) * slope)
            scale = min(max(scale, 1.0), 100.0)
        return abs(slope) * scale * math.exp(slope * scale * r) * 0.04
    # lep-had with MET -> -MHT (TP_HT_LOWMET / TP_HT_HIGHMET)
    low = scheme == TP_HT_LOWMET
    if kind == 0:
        # (p5 Gaus(R; p1, p2) + Landau(R; p3, p4)) / (1 + p5), unnormalised TMath functions,
        # parameters per P_lep bin (TauProbability(..., detmet), m_UseHT)
        t = _HT_LEP[0 if low else 1]
        b = _p_bin(ptau)
        g = math.exp(-0.5 * ((r - t[0, b]) / t[1, b]) ** 2)
        return (t[4, b] * g + landau((r - t[2, b]) / t[3, b])) / (1.0 + t[4, b])
    if low:
        # Gaus(R; mean, sigma) per P_tau bin (same function, detmet < 20 GeV)
        b = _p_bin(ptau)
        j = 0 if kind == 1 else 2
        return math.exp(-0.5 * ((r - _HT_HAD_LOW[j, b]) / _HT_HAD_LOW[j + 1, b]) ** 2)
    # exp(p R scale) |p scale| 0.02 with a P_tau-dependent scale below 45 (40) GeV
    # (same function, detmet >= 20 GeV)
    if kind == 1:
        p = -3.706
        scale = 1.0 if ptau > 45.0 else -1.019 / ((ptau * 0.0074 - 0.059) * p)
    else:
        p = -5.845
        scale = 1.0 if ptau > 40.0 else -1.24 / ((ptau * 0.0062 - 0.033) * p)
    return math.exp(p * r * scale) * abs(p * scale) * 0.02


@numba.njit(cache=True, error_model="numpy", inline="always", fastmath=_FAST)
def _leg_solutions(pt: float, c: float, s: float, v: NDArray[np.float64], m2vis: float,
                   pvis: float, kind: int, lep: bool, n_mnu: int, mnu_max: float,
                   key: np.uint64, counter: np.uint64, m_tau: float,
                   table: NDArray[np.float64], coef: NDArray[np.float64],
                   out: NDArray[np.float64], tp: int, lead: bool) -> int:
    """Fill ``out[k] = (tau px, py, pz, E, P_theta x tau-probability factor)`` for every root
    (and m_nunu stratum of a leptonic leg); returns the number of solutions. ``tp``: the
    TauProbability scheme (``TP_*``), ``lead``: this leg has the larger visible pT."""
    nsol = 0
    nm = n_mnu if lep else 1
    npx = pt * c
    npy = pt * s
    for j in range(nm):
        mnu = 0.0
        if lep:
            mnu = (j + _uniform(key, counter + np.uint64(j))) / nm * mnu_max
        nr, za, zb = solve_leg(pt, c, s, v[0], v[1], v[2], v[3], m2vis, mnu, m_tau)
        for r in range(nr):
            z = za if r == 0 else zb
            enu = math.sqrt(pt * pt + z * z + mnu * mnu)
            tx = v[0] + npx
            ty = v[1] + npy
            tz = v[2] + z
            ptau = math.sqrt(tx * tx + ty * ty + tz * tz)
            # 3D angle between the invisible system and the visible products
            # (MissingMassProb.cxx dTheta3d_probabilityFastWrapper: Angle(nu, vis))
            pnu = math.sqrt(pt * pt + z * z)
            cosang = (npx * v[0] + npy * v[1] + z * v[2]) / (pnu * pvis) if pnu > 0 else 1.0
            cosang = min(1.0, max(-1.0, cosang))
            prob = angle_pdf_table(table, coef, kind, math.acos(cosang), ptau)
            if tp != TP_OFF and prob > 0.0:
                # x the leg's TauProbability factor (MissingMassProb.cxx TauProbability)
                prob *= _tau_prob_leg(tp, kind, lead, v[3], pvis, math.sqrt(m2vis), enu, pnu,
                                      mnu, ptau, v[3] + enu, m_tau)
            if prob > 0.0:
                out[nsol, 0] = tx
                out[nsol, 1] = ty
                out[nsol, 2] = tz
                out[nsol, 3] = v[3] + enu
                # each root enters with 1/(number of roots): the expectation of ATLAS's
                # random choice of one root per leg (refineSolutions)
                out[nsol, 4] = prob / nr
                nsol += 1
    return nsol


@numba.njit(cache=True, error_model="numpy")
def _smooth(hw: NDArray[np.float64], first: int, last: int, sigma_bins: float
            ) -> NDArray[np.float64]:
    """Gaussian-kernel smoothing (sigma in bins) of ``hw`` over [first, last] + margins."""
    nb = hw.shape[0]
    out = np.zeros(nb)
    reach = int(3.0 * sigma_bins) + 1
    kern = np.empty(2 * reach + 1)
    for k in range(2 * reach + 1):
        kern[k] = math.exp(-0.5 * ((k - reach) / sigma_bins) ** 2)
    for b in range(first, last + 1):
        w = hw[b]
        if w == 0.0:
            continue
        for k in range(2 * reach + 1):
            bb = b + k - reach
            if 0 <= bb < nb:
                out[bb] += w * kern[k]
    return out


@numba.njit(cache=True, error_model="numpy")
def _peak(hw_raw: NDArray[np.float64], hw2: NDArray[np.float64], bin_w: float,
          win_half: int, smooth_bins: float) -> tuple[float, int, int]:
    """MLM peak of a weighted histogram (MissingMassCalculatorV2.cxx maxFromHist, FIT):
    (peak position, first and last bin of the sliding-window maximum). With
    ``smooth_bins`` > 0 the histogram is first smoothed with a Gaussian kernel of that width
    (in bins) and the parabola fit is unweighted."""
    nb = hw_raw.shape[0]
    first = -1
    last = -1
    total = 0.0
    for b in range(nb):
        if hw_raw[b] > 0.0:
            total += hw_raw[b]
            if first < 0:
                first = b
            last = b
    if first < 0:
        return np.nan, -1, -1
    hw = hw_raw
    margin = win_half
    if smooth_bins > 0.0:
        hw = _smooth(hw_raw, first, last, smooth_bins)
        margin = win_half + int(3.0 * smooth_bins) + 1
        total = 0.0
        for b in range(nb):
            total += hw[b]
    # sliding window of 2 win_half + 1 bins over the occupied range (+ margins): maximum sum
    lo = max(0, first - margin)
    hi = min(nb - 1, last + margin)
    best = -1.0
    best_c = lo
    for cbin in range(lo, hi + 1):
        s = 0.0
        for b in range(max(0, cbin - win_half), min(nb, cbin + win_half + 1)):
            s += hw[b]
        if s > best:
            best = s
            best_c = cbin
    b0 = max(0, best_c - win_half)
    b1 = min(nb - 1, best_c + win_half)
    sw = 0.0
    sx = 0.0
    for b in range(b0, b1 + 1):
        sw += hw[b]
        sx += hw[b] * (b + 0.5) * bin_w
    mean = sx / sw
    # parabola fit in 2x (3x if the window holds < 20 % of the weight) the window, weights
    # 1/sum(w^2) per bin, empty bins skipped (maxFromHist FIT strategy)
    fit_w = (win_half + 0.5) * bin_w * (2.0 if sw / total > 0.2 else 3.0)
    s0 = s1 = s2 = s3 = s4 = t0 = t1 = t2 = 0.0
    npt = 0
    f0 = max(0, int((mean - fit_w) / bin_w))
    f1 = min(nb - 1, int((mean + fit_w) / bin_w))
    for b in range(f0, f1 + 1):
        x = (b + 0.5) * bin_w - mean
        if hw[b] <= 0.0 or abs(x) > fit_w:
            continue
        if smooth_bins > 0.0:
            w = 1.0
        elif hw2[b] > 0.0:
            w = 1.0 / hw2[b]
        else:
            continue
        y = hw[b]
        x2 = x * x
        s0 += w
        s1 += w * x
        s2 += w * x2
        s3 += w * x2 * x
        s4 += w * x2 * x2
        t0 += w * y
        t1 += w * y * x
        t2 += w * y * x2
        npt += 1
    if npt >= 3:
        # normal equations of y = p0 + p1 x + p2 x^2 (Cramer's rule)
        det = s0 * (s2 * s4 - s3 * s3) - s1 * (s1 * s4 - s3 * s2) + s2 * (s1 * s3 - s2 * s2)
        if det != 0.0:
            d1 = s0 * (t1 * s4 - s3 * t2) - t0 * (s1 * s4 - s3 * s2) + s2 * (s1 * t2 - t1 * s2)
            d2 = s0 * (s2 * t2 - t1 * s3) - s1 * (s1 * t2 - t1 * s2) + t0 * (s1 * s3 - s2 * s2)
            p1 = d1 / det
            p2 = d2 / det
            if p2 < 0.0:
                vertex = -p1 / (2.0 * p2)
                # keep the fit only within 80 % of the fit range (maxFromHist)
                if abs(vertex) < 0.8 * fit_w and mean + vertex >= 0.0:
                    return mean + vertex, b0, b1
    return mean, b0, b1


@numba.njit(cache=True, error_model="numpy", parallel=True, fastmath=_FAST)
def _scan(vis1: NDArray[np.float64], vis2: NDArray[np.float64], kind1: NDArray[np.int64],
          kind2: NDArray[np.int64], met: NDArray[np.float64], axes: NDArray[np.float64],
          keys: NDArray[np.uint64], todo: NDArray[np.bool_], tp: NDArray[np.int64],
          ht: NDArray[np.float64], n_phi: int, n_met: int, n_mnu: int, phi_power: float,
          max_rounds: int, stop_tol: float, dphi: float, m_tau: float,
          table: NDArray[np.float64],
          coef: NDArray[np.float64], nbins: int, bin_w: float, win_half: int,
          smooth_bins: float) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                       NDArray[np.float64], NDArray[np.float64]]:
    n = vis1.shape[0]
    m_out = np.full(n, np.nan)
    t1_out = np.full((n, 3), np.nan)
    t2_out = np.full((n, 3), np.nan)
    # total weight, number of solutions, effective sample size, rounds used
    info = np.zeros((n, 4))
    for i in numba.prange(n):
        if not todo[i]:
            continue
        v1 = vis1[i]
        v2 = vis2[i]
        m2v1 = max(v1[3] ** 2 - v1[0] ** 2 - v1[1] ** 2 - v1[2] ** 2, 0.0)
        m2v2 = max(v2[3] ** 2 - v2[0] ** 2 - v2[1] ** 2 - v2[2] ** 2, 0.0)
        pv1 = math.sqrt(v1[0] ** 2 + v1[1] ** 2 + v1[2] ** 2)
        pv2 = math.sqrt(v2[0] ** 2 + v2[1] ** 2 + v2[2] ** 2)
        lead1 = v1[0] ** 2 + v1[1] ** 2 > v2[0] ** 2 + v2[1] ** 2
        k1 = kind1[i]
        k2 = kind2[i]
        lep1 = k1 == 0
        lep2 = k2 == 0
        mnu1_max = max(m_tau - math.sqrt(m2v1), 0.0)
        mnu2_max = max(m_tau - math.sqrt(m2v2), 0.0)
        phi1_c = math.atan2(v1[1], v1[0])
        phi2_c = math.atan2(v2[1], v2[0])
        step = 2.0 / n_phi
        sl = axes[i, 0]
        sp = axes[i, 1]
        ca = axes[i, 2]
        sa = axes[i, 3]
        key = keys[i]
        tpi = tp[i]
        use_ht = ht[i, 0] > 0.0
        s1_ht = ht[i, 1]
        s2_ht = ht[i, 2]
        fr_ht = ht[i, 3]
        mht = math.sqrt(met[i, 0] ** 2 + met[i, 1] ** 2)
        hw = np.zeros(nbins)
        hw2 = np.zeros(nbins)
        hwa = np.zeros(nbins)  # the even-numbered points only (split-half stopping test)
        hw2a = np.zeros(nbins)
        hp = np.zeros((nbins, 6))
        sol1 = np.empty((2 * n_mnu, 5))
        sol2 = np.empty((2 * n_mnu, 5))
        total = 0.0
        nsol = 0
        counter = np.uint64(0)
        rounds = 0
        for _rnd in range(max_rounds):
            rounds += 1
            pidx = 0
            for a in range(n_phi):
                for b in range(n_phi):
                    for _ in range(n_met):
                        half_a = (pidx & 1) == 0
                        pidx += 1
                        # 8 random numbers per point: 2 azimuths, 2 MET Gaussians
                        # (Box-Muller), m_nunu strata offsets of both legs (up to n_mnu each,
                        # counted apart)
                        u1 = _uniform(key, counter)
                        u2 = _uniform(key, counter + np.uint64(1))
                        u3 = _uniform(key, counter + np.uint64(2))
                        u4 = _uniform(key, counter + np.uint64(3))
                        c_leg1 = counter + np.uint64(4)
                        c_leg2 = counter + np.uint64(4 + n_mnu)
                        counter += np.uint64(4 + 2 * n_mnu)
                        # stratified in t in [-1, 1); dphi_nu = dphi sign(t) |t|^k
                        # concentrates the points near the visible azimuth (k = phi_power,
                        # 1 = uniform); the weight carries 1/q = k |t|^(k-1) (target uniform
                        # in phi_nu)
                        ta = -1.0 + (a + u1) * step
                        tb = -1.0 + (b + u2) * step
                        if phi_power == 2.0:  # the default: no pow() calls
                            phi1 = phi1_c + dphi * ta * abs(ta)
                            phi2 = phi2_c + dphi * tb * abs(tb)
                            wphi = 4.0 * abs(ta) * abs(tb)
                        else:
                            phi1 = phi1_c + dphi * math.copysign(abs(ta) ** phi_power, ta)
                            phi2 = phi2_c + dphi * math.copysign(abs(tb) ** phi_power, tb)
                            wphi = phi_power * abs(ta) ** (phi_power - 1.0) \
                                * phi_power * abs(tb) ** (phi_power - 1.0)
                        # MET shift along the error-ellipse axes, Gaussian (P_MET as sampling
                        # density; MissingMassProb.cxx MetProbability / mEtAndTauProbability)
                        rad = math.sqrt(-2.0 * math.log(1.0 - u3))
                        d_l = rad * math.cos(2.0 * math.pi * u4) * sl
                        d_p = rad * math.sin(2.0 * math.pi * u4) * sp
                        metx = met[i, 0] + d_l * ca - d_p * sa
                        mety = met[i, 1] + d_l * sa + d_p * ca
                        if use_ht:
                            # MET = -MHT sampled with sigma2; the MHT probability
                            # (G(dx; s1) + fr G(dx; s2)) (same for dy) exp(-0.25 ((MHT -
                            # |MET|)/s1)^2) enters as its ratio to that Gaussian
                            # (MissingMassProb.cxx MHtProbability, lep-had, offset 0)
                            gx = math.exp(-0.5 * d_l * d_l * (1.0 / (s1_ht * s1_ht)
                                                              - 1.0 / (s2_ht * s2_ht))) + fr_ht
                            gy = math.exp(-0.5 * d_p * d_p * (1.0 / (s1_ht * s1_ht)
                                                              - 1.0 / (s2_ht * s2_ht))) + fr_ht
                            narg = (mht - math.sqrt(metx * metx + mety * mety)) / s1_ht
                            wphi_pt = wphi * gx * gy * math.exp(-0.25 * narg * narg)
                        else:
                            wphi_pt = wphi
                        c1 = math.cos(phi1)
                        s1 = math.sin(phi1)
                        c2 = math.cos(phi2)
                        s2 = math.sin(phi2)
                        pt1, pt2 = _neutrino_pts(metx, mety, c1, s1, c2, s2)
                        if not (pt1 > 0.0 and pt2 > 0.0):
                            continue
                        ns1 = _leg_solutions(pt1, c1, s1, v1, m2v1, pv1, k1, lep1, n_mnu,
                                             mnu1_max, key, c_leg1, m_tau, table, coef, sol1,
                                             tpi, lead1)
                        if ns1 == 0:
                            continue
                        ns2 = _leg_solutions(pt2, c2, s2, v2, m2v2, pv2, k2, lep2, n_mnu,
                                             mnu2_max, key, c_leg2, m_tau, table, coef, sol2,
                                             tpi, not lead1)
                        for j1 in range(ns1):
                            for j2 in range(ns2):
                                # weight P_theta1 P_theta2 (x tau probabilities; P_MET
                                # sampled), one entry per root combination
                                w = sol1[j1, 4] * sol2[j2, 4] * wphi_pt
                                ex = sol1[j1, 0] + sol2[j2, 0]
                                ey = sol1[j1, 1] + sol2[j2, 1]
                                ez = sol1[j1, 2] + sol2[j2, 2]
                                ee = sol1[j1, 3] + sol2[j2, 3]
                                mtt = math.sqrt(max(ee * ee - ex * ex - ey * ey - ez * ez,
                                                    0.0))
                                bb = int(mtt / bin_w)
                                if bb >= nbins or not w > 0.0:
                                    continue
                                hw[bb] += w
                                hw2[bb] += w * w
                                if half_a:
                                    hwa[bb] += w
                                    hw2a[bb] += w * w
                                hp[bb, 0] += w * sol1[j1, 0]
                                hp[bb, 1] += w * sol1[j1, 1]
                                hp[bb, 2] += w * sol1[j1, 2]
                                hp[bb, 3] += w * sol2[j2, 0]
                                hp[bb, 4] += w * sol2[j2, 1]
                                hp[bb, 5] += w * sol2[j2, 2]
                                total += w
                                nsol += 1
            if not total > 0.0:
                break  # no solution in a whole round: no_solution, as the fixed budget
            if _rnd + 1 < max_rounds:
                # adaptive budget: stop once the MLM peaks of the two halves of the points
                # agree within stop_tol (as ATLAS's floating stopping criterion compares the
                # split1/split2 histograms of its Markov chain: MissingMassCalculatorV2.cxx,
                # m_fUseFloatStopping, athena main 2024)
                pa_, _b0, _b1 = _peak(hwa, hw2a, bin_w, win_half, smooth_bins)
                pb_, _b0, _b1 = _peak(hw - hwa, hw2 - hw2a, bin_w, win_half, smooth_bins)
                if abs(pa_ - pb_) <= stop_tol * 0.5 * (pa_ + pb_):
                    break
        info[i, 0] = total
        info[i, 1] = nsol
        info[i, 3] = rounds
        w2 = 0.0
        for bb in range(nbins):
            w2 += hw2[bb]
        info[i, 2] = total * total / w2 if w2 > 0 else 0.0
        if not total > 0.0:
            continue
        peak, b0, b1 = _peak(hw, hw2, bin_w, win_half, smooth_bins)
        m_out[i] = peak
        sw = 0.0
        acc = np.zeros(6)
        for bb in range(b0, b1 + 1):
            sw += hw[bb]
            for q in range(6):
                acc[q] += hp[bb, q]
        for q in range(3):
            t1_out[i, q] = acc[q] / sw
            t2_out[i, q] = acc[q + 3] / sw
    return m_out, t1_out, t2_out, info


def _met_axes(cov: NDArray[np.float64], ok: NDArray[np.bool_]) -> NDArray[np.float64]:
    """(n, 4): sigma along the major axis, sigma along the minor axis, cos and sin of the
    major-axis angle, from the 2x2 MET covariance (eigen-decomposition)."""
    a = cov[:, 0, 0]
    c = cov[:, 1, 1]
    b = 0.5 * (cov[:, 0, 1] + cov[:, 1, 0])
    with np.errstate(invalid="ignore"):
        half = np.sqrt(0.25 * (a - c) ** 2 + b * b)
        lam1 = 0.5 * (a + c) + half
        lam2 = 0.5 * (a + c) - half
        ang = 0.5 * np.arctan2(2.0 * b, a - c)
        out = np.stack([np.sqrt(np.maximum(lam1, 0.0)), np.sqrt(np.maximum(lam2, 0.0)),
                        np.cos(ang), np.sin(ang)], axis=1)
    return np.where(ok[:, None] & np.isfinite(out), out, 0.0)


_TABLES: dict[int, NDArray[np.float64]] = {}


def _pdf_coef(pdfs: str | NDArray[np.float64]) -> NDArray[np.float64]:
    if isinstance(pdfs, str):
        if pdfs != "atlas2012":
            raise ValueError(f"mmc: unknown pdf set {pdfs!r}; use 'atlas2012' or a (3, 6, 5) "
                             "coefficient array from mmc_pdfs.fit_pdfs")
        return ATLAS2012
    coef = np.ascontiguousarray(pdfs, dtype=float)
    if coef.shape != ATLAS2012.shape:
        raise ValueError(f"mmc: pdf coefficients must have shape {ATLAS2012.shape}, "
                         f"got {coef.shape}")
    return coef


#: MET resolution choices of :func:`mmc`.
MET_RESOLUTIONS = ("covariance", "atlas2016")
#: Event-table columns the MMC reads besides the inputs: the leading jet, for the number of
#: jets with pT > 25 GeV (Njet25) of the ``use_mht`` and ``met_resolution="atlas2016"`` options.
EXTRA_COLUMNS: tuple[str, ...] = ("jet1_px", "jet1_py")


def columns_for(settings: MMCSettings) -> tuple[str, ...]:
    """Event-table columns MMC needs with ``settings``: the leading jet only for ``use_mht``
    and the ``atlas2016`` MET tune (the defaults read the inputs alone)."""
    return EXTRA_COLUMNS if settings.use_mht or settings.met_resolution == "atlas2016" else ()


#: Jet pT threshold (GeV) of ATLAS's Njet25 (MissingMassCalculatorV2 RunMissingMassCalculator).
NJET_PT_MIN = 25.0

DEFAULT_MAX_ROUNDS = 4
DEFAULT_STOP_TOL = 0.05


@dataclass(frozen=True)
class MMCSettings(StageConfig):
    """Settings of :func:`mmc` (meanings in its docstring)."""

    config_name = "method mmc"

    n_phi: int = DEFAULT_N_PHI
    n_met: int = DEFAULT_N_MET
    n_mnu: int = DEFAULT_N_MNU
    seed: int = 0
    pdfs: Any = "atlas2012"
    dphi: float = DPHI
    smooth: float = DEFAULT_SMOOTH
    phi_power: float = DEFAULT_PHI_POWER
    tau_probability: bool = True
    use_mht: bool = False
    met_resolution: str = "covariance"
    max_rounds: int = DEFAULT_MAX_ROUNDS
    stop_tol: float = DEFAULT_STOP_TOL

    def __post_init__(self) -> None:
        for name in ("n_phi", "n_met", "n_mnu", "max_rounds"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int | np.integer) or int(val) < 1:
                raise ValueError(f"mmc: {name} must be an integer >= 1, got {val!r}")
        if not self.phi_power >= 1.0:
            raise ValueError(f"mmc: phi_power must be >= 1, got {self.phi_power}")
        if not 0.0 < self.dphi <= math.pi:
            raise ValueError(f"mmc: dphi must be in (0, pi], got {self.dphi}")
        if not self.smooth >= 0.0:
            raise ValueError(f"mmc: smooth must be >= 0, got {self.smooth}")
        if not self.stop_tol >= 0.0:
            raise ValueError(f"mmc: stop_tol must be >= 0, got {self.stop_tol}")
        for name in ("tau_probability", "use_mht"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise ValueError(f"mmc: {name} must be true or false, got "
                                 f"{getattr(self, name)!r}")
        if self.met_resolution not in MET_RESOLUTIONS:
            raise ValueError(f"mmc: met_resolution must be one of {MET_RESOLUTIONS}, got "
                             f"{self.met_resolution!r}")


def n_jets25(table: Any, n: int) -> NDArray[np.int64]:
    """(n,) 1 where the leading jet has pT > 25 GeV, else 0 (all ATLAS's MMC needs of
    Njet25 is whether it is 0). ``table``: pyarrow table or mapping with
    :data:`EXTRA_COLUMNS` (NaN = no jet). Raises ValueError if it is missing."""
    names = set(column_names(table)) if table is not None else set()
    missing = [c for c in EXTRA_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"mmc: use_mht / met_resolution='atlas2016' need the jet columns "
                         f"{missing} (pass table=, the event table)")
    pt = np.hypot(*(np.asarray(column_array(table, c), dtype=float)
                    for c in ("jet1_px", "jet1_py")))
    if len(pt) != n:
        raise ValueError(f"mmc: table has {len(pt)} rows for {n} events")
    return (pt > NJET_PT_MIN).astype(np.int64)


def _abs_dphi(vis_p: NDArray[np.float64], vis_m: NDArray[np.float64]) -> NDArray[np.float64]:
    """(n,) |dphi| in [0, pi] between the visible legs (of both ATLAS tunes; kept as
    |arg e^(i dphi)|, not ditau.physics.delta_phi: a last-bit change of dphi moves the
    sampled MET resolution and with it the scan's random points)."""
    return np.abs(np.angle(np.exp(1j * (np.arctan2(vis_p[:, 1], vis_p[:, 0])
                                        - np.arctan2(vis_m[:, 1], vis_m[:, 0])))))


def atlas2016_met_sigma(kind_p: NDArray[np.int64], kind_m: NDArray[np.int64],
                        vis_p: NDArray[np.float64], vis_m: NDArray[np.float64],
                        met: NDArray[np.float64], sumet: NDArray[np.float64],
                        njet: NDArray[np.int64]) -> NDArray[np.float64]:
    """(n,) isotropic MET resolution (GeV) of ATLAS's MMC2016MC15C / MMC2019 tune
    (DiTauMassTools MissingMassProb.cxx ``MissingMassProb::MET``, METScanScheme 1, no MET
    systematics) from the scalar sum E_T, the jet multiplicity (0 or > 0 jets above 25 GeV),
    dphi of the visible legs, the MET and the channel (kind codes of mmc_pdfs.MODE_KIND)."""
    lep_p = kind_p == 0
    lep_m = kind_m == 0
    ll = lep_p & lep_m
    hh = ~lep_p & ~lep_m
    lh = ~ll & ~hh
    x = _abs_dphi(vis_p, vis_m)
    pt_p = np.hypot(vis_p[:, 0], vis_p[:, 1])
    pt_m = np.hypot(vis_m[:, 0], vis_m[:, 1])
    m2_p = mass2(vis_p)
    m2_m = mass2(vis_m)
    s = np.asarray(sumet, float).copy()
    # sumEt minus both lepton pT in lep-lep, minus electron (m < 0.05 GeV) pT otherwise, when
    # larger than that pT (MissingMassCalculatorV2.cxx FinalizeSettings)
    for pt, m2, lep in ((pt_p, m2_p, lep_p), (pt_m, m2_m, lep_m)):
        sub = (s > pt) & np.where(ll, lep, lep & (m2 < 0.05**2))
        s = np.where(sub, s - pt, s)
    rs = np.sqrt(np.maximum(s, 0.0))
    metv = np.hypot(met[:, 0], met[:, 1])
    j0 = njet == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        # lep-had, 0 jets: offset + scale sqrt(sumEt), (5.38, 0.32) below MET 20 GeV,
        # (4.16, 0.87) above (MissingMassProb.cxx MET, MMC2016MC15C lep-had Njet25 == 0)
        lh0 = np.where(metv < 20.0, np.where(s > 0, 5.38 + 0.32 * rs, 5.38),
                       np.where(s > 0, 4.16 + 0.87 * rs, 4.16))
        # lep-had, jets: (1.875 + 8.914 ln(sqrt(sumEt) - 8.53)) x pol2(dphi) (same, Njet25 > 0)
        lhj = np.where(s > 80.0, 1.875 + 8.914 * np.log(rs - 8.53), 5.0) \
            * np.where(x > 0.3, 0.9429 - 0.059 * x + 0.054 * x * x, 0.728)
        # had-had, 0 jets: (-8.51013 + 8.54378 ln(sqrt(sumEt) - 3.97146)) x pol2(dphi)
        hh0 = np.where(s > 80.0, -8.51013 + 8.54378 * np.log(rs - 3.97146), 5.0) \
            * np.where(x > 2.5, 11.0796 - 4.61236 * x + 0.423617 * x * x, 2.0)
        # had-had, jets: (1.19769 + 5.61687 ln(sqrt(sumEt) - 4.2076)) x pol2(dphi)
        hhj = np.where(s > 115.0, 1.19769 + 5.61687 * np.log(rs - 4.2076), 12.1) \
            * np.where(x > 0.6, 1.42047 - 0.666644 * x + 0.199986 * x * x, 1.02)
        # lep-lep, 0 jets: 4.22581 + 0.03818 sqrt(sumEt) + 0.12623 sumEt; jets: 5.42506 +
        # 5.36760 ln(sqrt(sumEt) - 4.86808); both at least 2 GeV (MET, lep-lep 2016 MC15c)
        ll0 = np.where(s > 0, 4.22581 + 0.03818 * rs + 0.12623 * s, 2.0)
        llj = np.where((s > 0) & (rs - 4.86808 > 1.0), 5.42506 + 5.36760 * np.log(rs - 4.86808),
                       5.42506)
    sigma = np.where(lh, np.where(j0, lh0, lhj), np.where(hh, np.where(j0, hh0, hhj),
                                                         np.maximum(np.where(j0, ll0, llj), 2.0)))
    return np.asarray(sigma, dtype=float)


def _mht_events(kind_p: NDArray[np.int64], kind_m: NDArray[np.int64],
                vis_p: NDArray[np.float64], vis_m: NDArray[np.float64],
                met: NDArray[np.float64], njet: NDArray[np.int64]
                ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(use MHT, low MET) per event: lep-had, 0 jets above 25 GeV, legs back-to-back,
    |dphi| > 2.95 below MET = 20 GeV, > 2.8 above (MissingMassProb.cxx MET, MMC2016MC15C,
    m_allowUseHT)."""
    lh = (kind_p == 0) != (kind_m == 0)
    x = _abs_dphi(vis_p, vis_m)
    low = np.hypot(met[:, 0], met[:, 1]) < 20.0
    use = lh & (njet == 0) & np.where(low, x > 2.95, x > 2.8)
    return use, low


def mmc(inputs: Inputs, *, table: Any = None, n_phi: int = DEFAULT_N_PHI,
        n_met: int = DEFAULT_N_MET, n_mnu: int = DEFAULT_N_MNU, seed: int = 0,
        pdfs: str | NDArray[np.float64] = "atlas2012", dphi: float = DPHI,
        smooth: float = DEFAULT_SMOOTH, phi_power: float = DEFAULT_PHI_POWER,
        tau_probability: bool = True, use_mht: bool = False,
        met_resolution: str = "covariance", max_rounds: int = DEFAULT_MAX_ROUNDS,
        stop_tol: float = DEFAULT_STOP_TOL) -> pa.Table:
    """MMC reconstruction (method ``mmc``) of every event of ``inputs``.

    The scan (module docstring): ``n_phi`` x ``n_phi`` azimuth cells x ``n_met`` MET samples
    (x ``n_mnu`` m_nunu strata per leptonic leg) per round, repeated up to ``max_rounds``
    times until the MLM peaks of the two halves of the points agree within ``stop_tol``
    (relative; ``max_rounds=1``: the fixed budget). ``seed``: random-number seed (results
    are reproducible and do not depend on the batch or the number of threads); ``pdfs``:
    ``"atlas2012"`` or a (3, 6, 5) coefficient array
    (:func:`ditau.reconstruct.mmc_pdfs.fit_pdfs`); ``dphi``: half-width of the azimuth
    window; ``smooth``: Gaussian smoothing (GeV) of the m_tautau histogram before the MLM peak
    search (0 = the ATLAS raw histogram); ``tau_probability``: multiply each solution by
    ATLAS's TauProbability (on in ATLAS); ``use_mht``: lep-had events without jets above
    25 GeV whose legs are back-to-back use MET = -MHT with ATLAS's MHT resolution and
    probability (off in ATLAS unless allowed); ``met_resolution``: ``"covariance"`` (the
    event's MET covariance) or ``"atlas2016"`` (ATLAS's isotropic sumEt/jet-multiplicity/dphi
    tune, :func:`atlas2016_met_sigma`). ``table``: the event table with
    :data:`EXTRA_COLUMNS` (needed by ``use_mht`` and ``"atlas2016"``; the method registry
    passes it). ``rec_m_tautau`` is the MLM mass, the tau momenta the weighted mean of the
    solutions in the MLM peak window. Raises ValueError for invalid settings or a missing
    jet column.
    """
    settings = MMCSettings(n_phi, n_met, n_mnu, seed, pdfs, dphi, smooth, phi_power,
                           tau_probability, use_mht, met_resolution, max_rounds,
                           stop_tol)  # validates
    coef = _pdf_coef(pdfs)
    ptable = _TABLES.get(id(coef)) if coef is ATLAS2012 else None
    if ptable is None:
        ptable = param_table(coef)
        if coef is ATLAS2012:
            _TABLES[id(coef)] = ptable
    n = len(inputs)
    kind_p = np.array([MODE_KIND.get(m, -1) for m in inputs.mode_p], dtype=np.int64)
    kind_m = np.array([MODE_KIND.get(m, -1) for m in inputs.mode_m], dtype=np.int64)
    todo = inputs.good & (kind_p >= 0) & (kind_m >= 0)
    met_in = inputs.met
    axes = _met_axes(inputs.cov, todo)
    ht = np.zeros((n, 4))
    hh = (kind_p > 0) & (kind_m > 0)
    # TauProbability scheme: the had-had function for had-had, else the generic one
    # (MissingMassProb.cxx TauProbabilityWrapper)
    tp = np.where(hh, TP_HH, TP_GENERIC) if tau_probability else np.full(n, TP_OFF)
    if columns_for(settings):  # the options that need the jet multiplicity
        njet = n_jets25(table, n)
        if met_resolution == "atlas2016":
            sig = atlas2016_met_sigma(kind_p, kind_m, inputs.vis_p, inputs.vis_m, met_in,
                                      inputs.sumet, njet)
            ok_sig = np.isfinite(sig) & (sig > 0)
            axes = np.where((todo & ok_sig)[:, None],
                            np.stack([sig, sig, np.ones(n), np.zeros(n)], axis=1), axes)
        if use_mht:
            use, low = _mht_events(kind_p, kind_m, inputs.vis_p, inputs.vis_m, met_in, njet)
            use &= todo
            # MHT resolution: sigma1, sigma2, fraction of the 2nd Gaussian, 4.822 / 10.31 /
            # 6.34e-5 below MET 20 GeV, 7.5 / 13.51 / 6.81e-4 above (MissingMassProb.cxx MET,
            # MMC2016MC15C lep-had Njet25 == 0); the scan samples with sigma2
            s1 = np.where(low, 4.822, 7.5)
            s2 = np.where(low, 10.31, 13.51)
            fr = np.where(low, 6.34e-5, 6.81e-4)
            ht = np.where(use[:, None], np.stack([np.ones(n), s1, s2, fr], axis=1), 0.0)
            axes = np.where(use[:, None], np.stack([s2, s2, np.ones(n), np.zeros(n)], axis=1),
                            axes)
            # MET replaced by -MHT = -(vis1 + vis2)_T (MissingMassCalculatorV2.cxx
            # FinalizeSettings, GetUseHT)
            mht = -(inputs.vis_p[:, :2] + inputs.vis_m[:, :2])
            met_in = np.where(use[:, None], mht, met_in)
            if tau_probability:
                tp = np.where(use, np.where(low, TP_HT_LOWMET, TP_HT_HIGHMET), tp)
    todo &= axes[:, 1] > 0
    vis_p = np.ascontiguousarray(np.where(todo[:, None], inputs.vis_p, 1.0))
    vis_m = np.ascontiguousarray(np.where(todo[:, None], inputs.vis_m, 1.0))
    met = np.ascontiguousarray(np.where(todo[:, None], met_in, 0.0))
    # per-event random key from (seed, event_id): independent of the batch composition
    offset = np.uint64((int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 64))
    keys = inputs.event_id.astype(np.uint64) * np.uint64(0xD1B54A32D192ED03) + offset
    nbins = round(HIST_MAX / HIST_BIN)
    common = (float(dphi), float(M_TAU), ptable, coef, nbins, HIST_BIN, WIN_HALF,
              float(smooth) / HIST_BIN)
    m_tt, t1, t2, info = _scan(vis_p, vis_m, kind_p, kind_m, met, np.ascontiguousarray(axes),
                               keys, todo, np.ascontiguousarray(tp, dtype=np.int64),
                               np.ascontiguousarray(ht), int(n_phi), int(n_met), int(n_mnu),
                               float(phi_power), int(max_rounds), float(stop_tol), *common)
    LAST_RUN.update(rounds=info[:, 3].copy(), todo=todo.copy())
    found = todo & np.isfinite(m_tt)
    status = np.where(found, "ok", "no_solution").astype(object)
    reason = np.where(found, "", "no point of the scan has a solution").astype(object)
    taus = []
    for t, vis in ((t1, inputs.vis_p), (t2, inputs.vis_m)):
        t = np.where(found[:, None], t, 0.0)
        p = np.linalg.norm(t, axis=1)
        pvis = np.linalg.norm(vis[:, :3], axis=1)
        # fitted tau momentum below the visible one -> 1.01 x visible
        # (MissingMassCalculatorV2.cxx DitauMassCalculatorV9walk)
        small = found & (p < pvis)
        t = np.where(small[:, None], 1.01 * vis[:, :3], t)
        e = np.sqrt(np.sum(t**2, axis=1) + M_TAU**2)
        taus.append(np.concatenate([t, e[:, None]], axis=1))
    if n == 0:
        taus = [np.zeros((0, 4)), np.zeros((0, 4))]
    return recon_table("mmc", inputs, taus[0], taus[1], status, reason, m_tautau=m_tt)


#: Diagnostics of the last :func:`mmc` call in this process: ``rounds`` (n,) rounds of the
#: adaptive scan per event (0 for events not scanned), ``todo`` (n,) events scanned.
LAST_RUN: dict[str, NDArray[Any]] = {}


def tau_probability(mode: str, vis: ArrayLike, nu: ArrayLike, *, scheme: int = TP_GENERIC,
                    lead: bool = True, m_tau: float = M_TAU) -> float:
    """One leg's factor of ATLAS's TauProbability (the term is the product over both legs)
    for the visible four-momentum ``vis`` and invisible four-momentum ``nu`` (px, py, pz, E;
    GeV; the invisible mass is that of ``nu``). ``mode``: e, mu, pi, rho; ``scheme``: a
    ``TP_*`` constant; ``lead``: the leg has the larger visible pT (had-had scheme).
    The compiled function the scan uses. Raises ValueError for an unknown mode."""
    if mode not in MODE_KIND:
        raise ValueError(f"tau_probability: unknown mode {mode!r}; use one of "
                         f"{sorted(MODE_KIND)}")
    v = np.asarray(vis, dtype=float)
    q = np.asarray(nu, dtype=float)
    tau = v + q
    pvis = float(np.linalg.norm(v[:3]))
    pnu = float(np.linalg.norm(q[:3]))
    m_vis = math.sqrt(max(v[3] ** 2 - pvis**2, 0.0))
    mnu = math.sqrt(max(q[3] ** 2 - pnu**2, 0.0))
    return float(_tau_prob_leg(int(scheme), MODE_KIND[mode], bool(lead), float(v[3]), pvis,
                               m_vis, float(q[3]), pnu, mnu, float(np.linalg.norm(tau[:3])),
                               float(tau[3]), float(m_tau)))


def budget_study(inputs: Inputs, factors: tuple[int, ...] = (1, 2, 4),
                 **kwargs: Any) -> dict[str, Any]:
    """Accuracy vs sampling budget: run :func:`mmc` with ``n_met`` scaled by each factor
    (other settings from ``kwargs``) and compare the MLM m_tautau with the largest budget.

    Returns per factor: events/s, and vs the largest budget the median and 90 % quantile of
    |delta m|/m and the fraction of events with |delta m|/m > 1 %, over events ``ok`` in both.
    """
    n_met = int(kwargs.pop("n_met", DEFAULT_N_MET))
    runs: dict[int, tuple[NDArray[np.float64], float]] = {}
    for f in factors:
        t0 = time.perf_counter()
        tab = mmc(inputs, n_met=n_met * f, **kwargs)
        dt = time.perf_counter() - t0
        runs[f] = (tab["rec_m_tautau"].to_numpy(), dt)
    ref = runs[max(factors)][0]
    out: dict[str, Any] = {"n_events": len(inputs), "reference_factor": max(factors)}
    for f in factors:
        m, dt = runs[f]
        both = np.isfinite(m) & np.isfinite(ref)
        rel = np.abs(m[both] - ref[both]) / ref[both]
        out[f"x{f}"] = {
            "events_per_s": len(inputs) / dt if dt > 0 else float("inf"),
            "median_rel_dm": float(np.median(rel)) if rel.size else float("nan"),
            "q90_rel_dm": float(np.quantile(rel, 0.9)) if rel.size else float("nan"),
            "frac_rel_dm_gt_1pct": float(np.mean(rel > 0.01)) if rel.size else float("nan"),
            "median_m": float(np.median(m[np.isfinite(m)])) if np.isfinite(m).any()
            else float("nan"),
        }
    return out
