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

Convergence (measured with benchmarks/baselines.py on 2 000 signal-region events of a
520k-event filtered sample, 2026-11-23): the MLM of a single event carries Monte-Carlo noise
at the default budget: the median |delta m|/m against a 16x budget is 4.8 % (2x: 4.2 %,
4x: 3.1 %), q90 30 %. The MLM of a broad, often multi-peaked posterior needs far more
effective samples (ATLAS: 1e5 Markov iterations per event; our 16x is 65k points). The
answer the evaluation uses does not change: the m_tautau resolution (HWHM of the relative
residual) is 22.0 +- 2.7 % at 1x, 18.5 +- 1.5 % at 2x, 20.7 +- 1.3 % at 4x and 20.0 +- 1.6 %
at 16x, and the tau p_x resolution 22.2 / 24.1 / 23.2 / 21.6 % (+- 1.5-2.7): a 5 % per-event
noise added in quadrature to a 20 % resolution is invisible. ``smooth`` (Gaussian smoothing
of the histogram, GeV) reduces the per-event noise a little.

Bias (measured): the MLM is 16 % above the true m_tautau (median ratio) with our detector,
while FastMTT is 4-6 % above. With the true MET and a 10x narrower MET covariance the MMC
ratio is 1.01-1.03, and with the true MET but the event's covariance it is 1.15. So the
upward pull comes from integrating over the MET error ellipse (larger MET -> more phase space
for solutions at higher mass), not from the solver or the pdfs. The resolution (HWHM around
the peak) is not affected.

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

Not implemented (ATLAS options off here): the tau-energy scan, the P_ratio ("TauProbability")
and m_nunu probability terms, the MHT-based MET tunes and the tail clean-up (off in ATLAS for
8/13 TeV lep-had), and the Markov-chain stopping criteria.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ditau.config import StageConfig
from ditau.inputs import Inputs
from ditau.physics import M_TAU
from ditau.reconstruct.mmc_pdfs import ATLAS2012, MODE_KIND, angle_pdf_table, param_table
from ditau.reconstruct.output import recon_table

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


@numba.njit(cache=True, error_model="numpy", inline="always", fastmath=_FAST)
def _leg_solutions(pt: float, c: float, s: float, v: NDArray[np.float64], m2vis: float,
                   pvis: float, kind: int, lep: bool, n_mnu: int, mnu_max: float,
                   key: np.uint64, counter: np.uint64, m_tau: float,
                   table: NDArray[np.float64], coef: NDArray[np.float64],
                   out: NDArray[np.float64]) -> int:
    """Fill ``out[k] = (tau px, py, pz, E, P_theta)`` for every root (and m_nunu stratum of a
    leptonic leg); returns the number of solutions."""
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
          keys: NDArray[np.uint64], todo: NDArray[np.bool_], n_phi: int, n_met: int,
          n_mnu: int, phi_power: float, dphi: float, m_tau: float,
          table: NDArray[np.float64],
          coef: NDArray[np.float64], nbins: int, bin_w: float, win_half: int,
          smooth_bins: float) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                       NDArray[np.float64], NDArray[np.float64]]:
    n = vis1.shape[0]
    m_out = np.full(n, np.nan)
    t1_out = np.full((n, 3), np.nan)
    t2_out = np.full((n, 3), np.nan)
    info = np.zeros((n, 3))  # total weight, number of solutions, effective sample size
    for i in numba.prange(n):
        if not todo[i]:
            continue
        v1 = vis1[i]
        v2 = vis2[i]
        m2v1 = max(v1[3] ** 2 - v1[0] ** 2 - v1[1] ** 2 - v1[2] ** 2, 0.0)
        m2v2 = max(v2[3] ** 2 - v2[0] ** 2 - v2[1] ** 2 - v2[2] ** 2, 0.0)
        pv1 = math.sqrt(v1[0] ** 2 + v1[1] ** 2 + v1[2] ** 2)
        pv2 = math.sqrt(v2[0] ** 2 + v2[1] ** 2 + v2[2] ** 2)
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
        hw = np.zeros(nbins)
        hw2 = np.zeros(nbins)
        hp = np.zeros((nbins, 6))
        sol1 = np.empty((2 * n_mnu, 5))
        sol2 = np.empty((2 * n_mnu, 5))
        total = 0.0
        nsol = 0
        counter = np.uint64(0)
        for a in range(n_phi):
            for b in range(n_phi):
                for _ in range(n_met):
                    # 8 random numbers per point: 2 azimuths, 2 MET Gaussians (Box-Muller),
                    # m_nunu strata offsets of both legs (up to n_mnu each, counted apart)
                    u1 = _uniform(key, counter)
                    u2 = _uniform(key, counter + np.uint64(1))
                    u3 = _uniform(key, counter + np.uint64(2))
                    u4 = _uniform(key, counter + np.uint64(3))
                    c_leg1 = counter + np.uint64(4)
                    c_leg2 = counter + np.uint64(4 + n_mnu)
                    counter += np.uint64(4 + 2 * n_mnu)
                    # stratified in t in [-1, 1); dphi_nu = dphi sign(t) |t|^k concentrates
                    # the points near the visible azimuth (k = phi_power, 1 = uniform); the
                    # weight carries 1/q = k |t|^(k-1) (target uniform in phi_nu)
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
                    c1 = math.cos(phi1)
                    s1 = math.sin(phi1)
                    c2 = math.cos(phi2)
                    s2 = math.sin(phi2)
                    pt1, pt2 = _neutrino_pts(metx, mety, c1, s1, c2, s2)
                    if not (pt1 > 0.0 and pt2 > 0.0):
                        continue
                    ns1 = _leg_solutions(pt1, c1, s1, v1, m2v1, pv1, k1, lep1, n_mnu,
                                         mnu1_max, key, c_leg1, m_tau, table, coef, sol1)
                    if ns1 == 0:
                        continue
                    ns2 = _leg_solutions(pt2, c2, s2, v2, m2v2, pv2, k2, lep2, n_mnu,
                                         mnu2_max, key, c_leg2, m_tau, table, coef, sol2)
                    for j1 in range(ns1):
                        for j2 in range(ns2):
                            # weight P_theta1 P_theta2 (P_MET sampled), one entry per root
                            # combination
                            w = sol1[j1, 4] * sol2[j2, 4] * wphi
                            ex = sol1[j1, 0] + sol2[j2, 0]
                            ey = sol1[j1, 1] + sol2[j2, 1]
                            ez = sol1[j1, 2] + sol2[j2, 2]
                            ee = sol1[j1, 3] + sol2[j2, 3]
                            mtt = math.sqrt(max(ee * ee - ex * ex - ey * ey - ez * ez, 0.0))
                            bb = int(mtt / bin_w)
                            if bb >= nbins:
                                continue
                            hw[bb] += w
                            hw2[bb] += w * w
                            hp[bb, 0] += w * sol1[j1, 0]
                            hp[bb, 1] += w * sol1[j1, 1]
                            hp[bb, 2] += w * sol1[j1, 2]
                            hp[bb, 3] += w * sol2[j2, 0]
                            hp[bb, 4] += w * sol2[j2, 1]
                            hp[bb, 5] += w * sol2[j2, 2]
                            total += w
                            nsol += 1
        info[i, 0] = total
        info[i, 1] = nsol
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

    def __post_init__(self) -> None:
        for name in ("n_phi", "n_met", "n_mnu"):
            val = getattr(self, name)
            if not isinstance(val, int | np.integer) or int(val) < 1:
                raise ValueError(f"mmc: {name} must be an integer >= 1, got {val!r}")
        if not self.phi_power >= 1.0:
            raise ValueError(f"mmc: phi_power must be >= 1, got {self.phi_power}")
        if not 0.0 < self.dphi <= math.pi:
            raise ValueError(f"mmc: dphi must be in (0, pi], got {self.dphi}")
        if not self.smooth >= 0.0:
            raise ValueError(f"mmc: smooth must be >= 0, got {self.smooth}")


def mmc(inputs: Inputs, *, n_phi: int = DEFAULT_N_PHI, n_met: int = DEFAULT_N_MET,
        n_mnu: int = DEFAULT_N_MNU, seed: int = 0,
        pdfs: str | NDArray[np.float64] = "atlas2012", dphi: float = DPHI,
        smooth: float = DEFAULT_SMOOTH, phi_power: float = DEFAULT_PHI_POWER) -> pa.Table:
    """MMC reconstruction (method ``mmc``) of every event of ``inputs``.

    ``sampler="legs"`` (default): per-leg importance samples on the tau-mass shell,
    ``n_theta`` x ``n_psi`` per leg (x ``n_mnu`` m_nunu strata for leptonic legs), all pairs
    weighted with P_MET (see the module docstring). ``sampler="scan"``: the direct MMC scan,
    ``n_phi`` x ``n_phi`` azimuth cells x ``n_met`` MET samples (x ``n_mnu`` per leptonic
    leg). ``seed``: random-number seed (results are reproducible and do not depend on the
    batch or the number of threads); ``pdfs``: ``"atlas2012"`` or a (3, 6, 5) coefficient
    array (:func:`ditau.reconstruct.mmc_pdfs.fit_pdfs`); ``dphi``: half-width of the azimuth
    window; ``smooth``: Gaussian smoothing (GeV) of the m_tautau histogram before the MLM peak
    search (0 = the ATLAS raw histogram). ``rec_m_tautau`` is the MLM mass, the tau momenta
    the weighted mean of the solutions in the MLM peak window.
    """
    MMCSettings(n_phi, n_met, n_mnu, seed, pdfs, dphi, smooth, phi_power)  # validates
    coef = _pdf_coef(pdfs)
    table = _TABLES.get(id(coef)) if coef is ATLAS2012 else None
    if table is None:
        table = param_table(coef)
        if coef is ATLAS2012:
            _TABLES[id(coef)] = table
    n = len(inputs)
    kind_p = np.array([MODE_KIND.get(m, -1) for m in inputs.mode_p], dtype=np.int64)
    kind_m = np.array([MODE_KIND.get(m, -1) for m in inputs.mode_m], dtype=np.int64)
    todo = inputs.good & (kind_p >= 0) & (kind_m >= 0)
    axes = _met_axes(inputs.cov, todo)
    todo &= axes[:, 1] > 0
    vis_p = np.ascontiguousarray(np.where(todo[:, None], inputs.vis_p, 1.0))
    vis_m = np.ascontiguousarray(np.where(todo[:, None], inputs.vis_m, 1.0))
    met = np.ascontiguousarray(np.where(todo[:, None], inputs.met, 0.0))
    # per-event random key from (seed, event_id): independent of the batch composition
    offset = np.uint64((int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 64))
    keys = inputs.event_id.astype(np.uint64) * np.uint64(0xD1B54A32D192ED03) + offset
    nbins = round(HIST_MAX / HIST_BIN)
    common = (float(dphi), float(M_TAU), table, coef, nbins, HIST_BIN, WIN_HALF,
              float(smooth) / HIST_BIN)
    m_tt, t1, t2, _info = _scan(vis_p, vis_m, kind_p, kind_m, met, np.ascontiguousarray(axes),
                                keys, todo, int(n_phi), int(n_met), int(n_mnu),
                                float(phi_power), *common)
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
