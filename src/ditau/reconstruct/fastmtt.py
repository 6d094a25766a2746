"""CMS FastMTT: maximum of a collinear-decay likelihood on a grid in (x1, x2).

Re-implementation (a numba kernel, threads over blocks of events) of ``FastMTT::scan`` and
``Likelihood`` in SVfit/ClassicSVfit ``src/FastMTT.cc``, summarised in
shared/reference/baselines.md §3. Each tau is its visible leg scaled, tau_i = vis_i / x_i, and
the likelihood of a grid point is the product of

* the MET transfer function: a 2D Gaussian of (measured MET - neutrino pT sum) with the
  event's MET covariance;
* the mass/phase-space term of the di-tau mass m (``Likelihood::massLikelihood``): the
  integral over x2 along x1 x2 = (m_vis/m_s)^2, with the leptonic (m_nunu) corrections, times
  the Jacobian 2 m_vis^2 m_s^-6, m_s = m / 1.15;
* the transverse-momentum terms (``Likelihood::ptLikelihood``) for the x and y components of
  the di-tau momentum: the analytic phase-space integral of P = p1/x1 + p2/x2 over x2.

The grid is x = 1/grid .. (grid-1)/grid in both coordinates (99 x 99 for grid = 100); points
with x_i below (m_vis_i/m_tau)^2 have zero likelihood. The visible masses are clamped as
ClassicSVfit's ``MeasuredTauLepton`` does (:data:`VIS_MASS_RANGE`). The best point gives the
tau momenta; m_tautau is the mass of their sum times 1.03 (at least one leptonic leg) or 0.98
(two hadronic legs), as ``FastMTT::run`` does for its ``bestP4`` (``mass_correction=False``
drops it; the tau momenta are never scaled).

Differences from the C++, none of which moves the maximum of a well-defined likelihood: the
likelihood is compared in logarithms (the C++ product underflows to 0 far from the MET, and an
all-zero grid silently returns x = 0.75: such events are ``no_solution`` here); the legs are
ordered as ``FastMTT::compareLeptons`` intends (leptonic leg first, else the harder one; the
C++ sorts a copy and then uses the unsorted input); a p_T term is zero for |P| < 0.5 GeV as in
the 2019-2021 C++ (the latest C++ dropped that guard, and its antiderivatives then cancel
catastrophically near P = 0 and create spurious maxima); grid points that provably cannot beat
the best point are skipped (see :func:`_scan_impl`); events whose p_T terms vanish on the whole
grid (the C++ cut "x1 asymptote below x1_min" does that for a small leading-leg component,
~2 % of events) are scanned with MET x mass only (``pt_fallback``).
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing as mp
import os
from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ditau.config import StageConfig
from ditau.inputs import Inputs
from ditau.physics import M_PI, M_TAU, mass
from ditau.reconstruct.output import recon_table

#: |P| (GeV) of a di-tau momentum component below which its p_T term is zero (FastMTT.cc).
MIN_PT_COMPONENT = 0.5

#: Decay modes whose visible leg is a lepton (two neutrinos: m_nunu terms).
LEPTONIC = ("e", "mu")

#: Allowed visible-mass range (GeV) per decay mode; the leg's energy is recomputed with the
#: clamped mass, 3-momentum kept (ClassicSVfit MeasuredTauLepton: e, mu at their PDG masses,
#: 1-prong (decay mode 0) at m_pi+-, other hadronic modes in [0.3, 1.5]; PDG 2024 e, mu masses).
VIS_MASS_RANGE: dict[str, tuple[float, float]] = {
    "e": (0.51099895e-3, 0.51099895e-3),
    "mu": (0.1056583755, 0.1056583755),
    "pi": (M_PI, M_PI),
    "rho": (0.3, 1.5),
}


def _clamp_mass(vis: NDArray[np.float64], mode: NDArray[np.str_]
                ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(vis', m)``: ``vis`` with E = sqrt(p^2 + m^2), and ``m`` (n,), the measured mass
    clamped to the mode's range (:data:`VIS_MASS_RANGE`).

    The clamped mass is returned as such: recomputed from ``vis'`` it can come back a few
    1e-10 GeV above the clamp (rounding of E^2 - p^2), and the scan's "hadronic mass above
    1.5 GeV counts as 0.3 GeV" rule must see the clamp value, as the C++ does (it stores the
    mass it set; ClassicSVfit MeasuredTauLepton).
    """
    lo = np.ones(len(vis))
    hi = np.ones(len(vis))
    for name, (a, b) in VIS_MASS_RANGE.items():
        lo[mode == name] = a
        hi[mode == name] = b
    p2 = np.sum(vis[:, :3] ** 2, axis=1)
    m = np.clip(np.sqrt(np.maximum(vis[:, 3] ** 2 - p2, 0.0)), lo, hi)
    return np.column_stack([vis[:, :3], np.sqrt(p2 + m**2)]), m


@numba.njit(cache=True, error_model="numpy")
def _pt_antiderivative(x2: float, p1: float, p2: float, pp: float, inv_p: float,
                       lep1: bool, lep2: bool) -> float:
    """Antiderivative in x2 of the phase-space density of P = p1/x1 + p2/x2 (one component)
    without its log|p2 - P x2| part (see :func:`_pt_log_coefficient`)."""
    inv_t = 1.0 / (p2 - pp * x2)
    ip2 = inv_p * inv_p
    ip3 = ip2 * inv_p
    # hadronic: d/dx2 [p1 (P x2 + p2^2/t + 2 p2 log|t|)/P^3] = p1 x2^2/t^2 = x1^2/p1,
    # t = p2 - P x2 (ClassicSVfit FastMTT.cc, Likelihood::ptLikelihood)
    rest = p1 * (pp * x2 + p2 * p2 * inv_t) * ip3
    if lep1:
        # leptonic leg 1, m_nunu integrated (FastMTT.cc ptLikelihood, leg-1 mNuNuIntegral)
        rest -= 0.5 * p1 * p1 * (2.0 * pp * x2
                                 + p2 * p2 * (5.0 * p2 - 6.0 * pp * x2) * inv_t * inv_t) \
            * ip3 * inv_p
    if lep2:
        # leptonic leg 2, m_nunu integrated (FastMTT.cc ptLikelihood, leg-2 mNuNuIntegral)
        p2sq = p2 * p2
        rest -= 0.5 * p1 * ip3 * ip2 * (2.0 * p2 * pp * (2.0 * pp - 3.0 * p1) * x2
                                        + pp * pp * (pp - p1) * x2 * x2
                                        + p2sq * p2sq * p1 * inv_t * inv_t
                                        + 2.0 * p2sq * p2 * (pp - 4.0 * p1) * inv_t)
    return rest


@numba.njit(cache=True, error_model="numpy")
def _pt_log_coefficient(p1: float, p2: float, inv_p: float, lep1: bool, lep2: bool) -> float:
    """Coefficient of log|p2 - P x2| in :func:`_pt_antiderivative` (same source)."""
    ip3 = inv_p * inv_p * inv_p
    c = 2.0 * p1 * p2 * ip3
    if lep1:
        c -= 3.0 * p1 * p1 * p2 * ip3 * inv_p
    if lep2:
        c -= 3.0 * p1 * p2 * p2 * (1.0 / inv_p - 2.0 * p1) * ip3 * inv_p * inv_p
    return c


@numba.njit(cache=True, error_model="numpy", inline="always")
def _pt_likelihood(pp: float, p1: float, p2: float, x1min: float, x2min0: float,
                   lep1: bool, lep2: bool) -> float:
    """Phase-space likelihood of one di-tau momentum component ``pp`` given the visible
    components p1, p2 (FastMTT.cc ``Likelihood::ptLikelihood``, without its 1e4 scale)."""
    # protection against the numerical singularity of the phase-space volume at P -> 0
    # (FastMTT.cc ptLikelihood in ClassicSVfit 919590b; without it the antiderivatives
    # cancel catastrophically and give spurious maxima near P = 0)
    if abs(pp) < MIN_PT_COMPONENT:
        return 0.0
    inv_p = 1.0 / pp
    # x2 range from x1 = p1 x2 / (P x2 - p2) in [x1min, 1] (FastMTT.cc ptLikelihood)
    x1_sing = p1 * inv_p
    has_sing = 0.0 < x1_sing < 1.0
    if has_sing and x1_sing < x1min:
        return 0.0
    a_x2 = x1min * p2 / (x1min * pp - p1)
    b_x2 = p2 / (pp - p1)
    lo = x2min0
    hi = 1.0
    if p1 * p2 > 0.0:
        lo = max(lo, b_x2)
        hi = min(hi, a_x2)
    else:
        lo = max(lo, a_x2)
        hi = min(hi, b_x2)
    if has_sing and hi < 0.0:
        hi = 1.0
    lo = max(lo, 0.0)
    if lo > hi:
        return 0.0
    hi = min(1.0, hi)
    value = _pt_antiderivative(hi, p1, p2, pp, inv_p, lep1, lep2) \
        - _pt_antiderivative(lo, p1, p2, pp, inv_p, lep1, lep2)
    # the log parts of both ends with one log: c (log|t_hi| - log|t_lo|)
    value += _pt_log_coefficient(p1, p2, inv_p, lep1, lep2) \
        * math.log(abs((p2 - pp * hi) / (p2 - pp * lo)))
    return abs(value)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _log_met_tf(u: float, v: float, a: NDArray[np.float64], b: NDArray[np.float64],
                ox: float, oy: float, cxx: float, cxy: float, cyy: float) -> float:
    """log of the MET transfer function at inverse energy fractions (u, v): a Gaussian in the
    MET residual with the inverse MET covariance (cxx, cxy, cyy) (FastMTT.cc metTF)."""
    rx = ox - a[0] * u - b[0] * v
    ry = oy - a[1] * u - b[1] * v
    return -0.5 * (cxx * rx * rx + 2.0 * cxy * rx * ry + cyy * ry * ry)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _log_mass_pt(u: float, v: float, a: NDArray[np.float64], b: NDArray[np.float64],
                 ma2: float, mb2: float, ab: float, m_vis2: float, x1min: float, x2min: float,
                 lep1: bool, lep2: bool, scale2: float, half_power: float,
                 use_pt: bool) -> float:
    """log of the mass term (without the constant 2 m_vis^2) times the px, py terms at
    x1 = 1/u, x2 = 1/v; -inf where the likelihood is zero."""
    # mass term, m_s = m * scale (FastMTT.cc Likelihood::massLikelihood)
    ms2 = (ma2 * u * u + mb2 * v * v + 2.0 * ab * u * v) * scale2
    if ms2 < m_vis2 or ms2 <= 0.0:
        return -np.inf
    r = m_vis2 / ms2
    lo = max(x2min, r)
    hi = min(1.0, r / x1min)
    if hi < lo:
        return -np.inf
    lg = math.log(hi / lo)
    val = lg
    if lep1:
        val += r * (1.0 / hi - 1.0 / lo)
    if lep2:
        val += r * lg - (hi - lo)
    if use_pt:
        # px and py phase-space terms (FastMTT.cc Likelihood::ptLikelihood)
        val *= _pt_likelihood(a[0] * u + b[0] * v, a[0], b[0], x1min, x2min, lep1, lep2)
        if val == 0.0:
            return -np.inf
        val *= _pt_likelihood(a[1] * u + b[1] * v, a[1], b[1], x1min, x2min, lep1, lep2)
    if not val > 0.0:
        return -np.inf
    # Jacobian 2 m_vis^2 m_s^-power (FastMTT.cc massLikelihood); 2 m_vis^2 is a constant
    if half_power == 3.0:
        val /= ms2 * ms2 * ms2
    else:
        val *= ms2 ** -half_power
    return math.log(val)


def _scan_impl(l1: NDArray[np.float64], l2: NDArray[np.float64], met: NDArray[np.float64],
          icov: NDArray[np.float64], lep1: NDArray[np.bool_], lep2: NDArray[np.bool_],
          vm1: NDArray[np.float64], vm2: NDArray[np.float64],
          todo: NDArray[np.bool_], grid: int, power: float, scale: float, use_pt: bool,
          m_tau: float, prune: bool) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Best (x1, x2) per event (NaN where the likelihood is zero on the whole grid).

    ``vm1``, ``vm2``: the clamped visible masses of the legs (:func:`_clamp_mass`), used for
    x_min and the 1.5 GeV rule (not recomputed from the four-vectors).

    With ``prune``, grid points whose MET term alone cannot beat the best point so far are
    skipped: the rest of the likelihood is bounded, mass term <= c (2/p) e^-1 m_vis^-p
    (c = 2 with a leptonic leg 2, else 1; max of log(y) y^(-p/2), y = m_s^2/m_vis^2 >= 1) and
    each p_T term <= 1/|p1| (its integrand is x1^2 f/|p1| with x1, f in [0, 1], over an x2
    range of length <= 1). The scan is seeded with the point of largest MET term. Same result
    as the full scan, minus exact ties.
    """
    n = l1.shape[0]
    best_x1 = np.full(n, np.nan)
    best_x2 = np.full(n, np.nan)
    ng = grid - 1
    xs = np.arange(1, grid) / grid
    inv_xs = 1.0 / xs
    half_power = 0.5 * power
    scale2 = scale * scale
    for i in range(n):
        if not todo[i]:
            continue
        a = l1[i]
        b = l2[i]
        ma2 = a[3] * a[3] - a[0] * a[0] - a[1] * a[1] - a[2] * a[2]
        mb2 = b[3] * b[3] - b[0] * b[0] - b[1] * b[1] - b[2] * b[2]
        ab = a[3] * b[3] - a[0] * b[0] - a[1] * b[1] - a[2] * b[2]
        m_vis2 = max(ma2 + mb2 + 2.0 * ab, 0.0)
        # the clamped masses as set, not recomputed (E^2 - p^2 rounds to 1.5 + O(1e-10))
        m1 = vm1[i]
        m2 = vm2[i]
        is_lep1 = lep1[i]
        is_lep2 = lep2[i]
        # hadronic legs heavier than 1.5 GeV count as 0.3 GeV (FastMTT.cc setLeptonInputs)
        if not is_lep1 and m1 > 1.5:
            m1 = 0.3
        if not is_lep2 and m2 > 1.5:
            m2 = 0.3
        x1min = min(1.0, (m1 / m_tau) ** 2)
        x2min = min(1.0, (m2 / m_tau) ** 2)
        cxx = icov[i, 0]
        cxy = icov[i, 1]
        cyy = icov[i, 2]
        # MET - sum nu_T, nu_i = vis_i (1/x_i - 1): an offset minus terms linear in 1/x_i
        ox = met[i, 0] + a[0] + b[0]
        oy = met[i, 1] + a[1] + b[1]
        # grid ranges with x >= x_min (FastMTT.cc Likelihood::value)
        k1_0 = 0
        while k1_0 < ng and xs[k1_0] < x1min:
            k1_0 += 1
        k2_0 = 0
        while k2_0 < ng and xs[k2_0] < x2min:
            k2_0 += 1
        slack = np.inf
        if prune and power > 0.0 and m_vis2 > 0.0:
            slack = math.log((2.0 if is_lep2 else 1.0) * (2.0 / power) / math.e) \
                - half_power * math.log(m_vis2)
            if use_pt:
                slack -= math.log(abs(a[0]) * abs(a[1]))
        best = -np.inf
        best_k = ng * ng
        if slack < np.inf:
            # seed: the point with the largest MET term
            seed_met = -np.inf
            for k2 in range(k2_0, ng):
                v = inv_xs[k2]
                for k1 in range(k1_0, ng):
                    u = inv_xs[k1]
                    lm = _log_met_tf(u, v, a, b, ox, oy, cxx, cxy, cyy)
                    if lm > seed_met:
                        seed_met = lm
                        best_k = k2 * ng + k1
            if best_k < ng * ng:
                u = inv_xs[best_k % ng]
                v = inv_xs[best_k // ng]
                best = seed_met + _log_mass_pt(u, v, a, b, ma2, mb2, ab, m_vis2, x1min,
                                               x2min, is_lep1, is_lep2, scale2, half_power,
                                               use_pt)
                if best == -np.inf:
                    best_k = ng * ng
        for k2 in range(k2_0, ng):  # x2 outer, x1 inner, first maximum kept (FastMTT::scan)
            v = inv_xs[k2]
            for k1 in range(k1_0, ng):
                u = inv_xs[k1]
                log_met = _log_met_tf(u, v, a, b, ox, oy, cxx, cxy, cyy)
                if log_met + slack < best:
                    continue
                lh = log_met + _log_mass_pt(u, v, a, b, ma2, mb2, ab, m_vis2, x1min, x2min,
                                            is_lep1, is_lep2, scale2, half_power, use_pt)
                k = k2 * ng + k1
                if lh > best or (lh == best and k < best_k):
                    best = lh
                    best_k = k
        if best > -np.inf:
            best_x1[i] = xs[best_k % ng]
            best_x2[i] = xs[best_k // ng]
    return best_x1, best_x2


_scan_kernel = numba.njit(cache=True, nogil=True, error_model="numpy")(_scan_impl)

#: Events per block handed to a thread.
_BLOCK = 256


def default_threads() -> int:
    """Threads :func:`fastmtt` uses by default: the usable cores, 1 inside a worker process
    (the reconstruct driver parallelises over chunks there)."""
    if mp.parent_process() is not None:
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _scan(l1: NDArray[np.float64], l2: NDArray[np.float64], *rest: object,
          threads: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    # Python threads over blocks of events running the nogil kernel: no OpenMP pool, so the
    # process can still fork workers afterwards.
    n = len(l1)
    if threads <= 1 or n <= _BLOCK:
        return _scan_kernel(l1, l2, *rest)  # type: ignore[no-any-return]
    x1 = np.empty(n)
    x2 = np.empty(n)

    def block(lo: int) -> None:
        hi = min(n, lo + _BLOCK)
        arrays = [a[lo:hi] if isinstance(a, np.ndarray) else a for a in rest]
        x1[lo:hi], x2[lo:hi] = _scan_kernel(l1[lo:hi], l2[lo:hi], *arrays)

    with cf.ThreadPoolExecutor(threads) as ex:
        list(ex.map(block, range(0, n, _BLOCK)))
    return x1, x2


@dataclass(frozen=True)
class FastMTTSettings(StageConfig):
    """Settings of :func:`fastmtt` (defaults: CMS FastMTT master; meanings in its docstring)."""

    config_name = "method fastmtt"

    grid: int = 100
    mass_power: float = 6.0
    mass_scale: float = 1.0 / 1.15
    pt_terms: bool = True
    mass_correction: bool = True
    pt_fallback: bool = True
    threads: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.grid, int) or self.grid < 2:
            raise ValueError(f"fastmtt: grid must be an integer >= 2, got {self.grid!r}")
        if not self.mass_scale > 0:
            raise ValueError(f"fastmtt: mass_scale must be positive, got {self.mass_scale!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"fastmtt: threads must be a positive integer, got {self.threads!r}")


def fastmtt(inputs: Inputs, grid: int = 100, *, mass_power: float = 6.0,
            mass_scale: float = 1.0 / 1.15, pt_terms: bool = True,
            mass_correction: bool = True, pt_fallback: bool = True,
            threads: int | None = None,
            _prune: bool = True) -> pa.Table:
    """FastMTT reconstruction (method ``fastmtt``) of every event of ``inputs``.

    ``grid``: the scan uses x = k/grid, k = 1 .. grid-1, in both coordinates (CMS: 100);
    ``mass_power``, ``mass_scale``: the shape parameters of the mass term (CMS: 6, 1/1.15);
    ``pt_terms``: include the px, py phase-space terms (on in CMS master; off = the 2019
    MET x mass likelihood); ``pt_fallback``: events whose likelihood with the p_T terms is zero
    on the whole grid (the C++ returns its default x = 0.75 for them) are scanned with MET x
    mass only, else they are ``no_solution``; ``mass_correction``: scale m_tautau by
    1.03 / 0.98 as CMS does; ``threads``: threads over events (default
    :func:`default_threads`).
    """
    FastMTTSettings(grid, mass_power, mass_scale, pt_terms, mass_correction, pt_fallback,
                    threads)  # validates
    lep_p = np.isin(inputs.mode_p, LEPTONIC)
    lep_m = np.isin(inputs.mode_m, LEPTONIC)
    pt_p = np.hypot(inputs.vis_p[:, 0], inputs.vis_p[:, 1])
    pt_m = np.hypot(inputs.vis_m[:, 0], inputs.vis_m[:, 1])
    # leg 1 = the leptonic leg in lep-had, else the harder leg (FastMTT::compareLeptons)
    swap = (lep_m & ~lep_p) | ((lep_p == lep_m) & (pt_m > pt_p))
    todo = inputs.good.copy()
    vis_p, mv_p = _clamp_mass(inputs.vis_p, inputs.mode_p)
    vis_m, mv_m = _clamp_mass(inputs.vis_m, inputs.mode_m)
    l1 = np.where(swap[:, None], vis_m, vis_p)
    l2 = np.where(swap[:, None], vis_p, vis_m)
    vm1 = np.where(swap, mv_m, mv_p)
    vm2 = np.where(swap, mv_p, mv_m)
    lep1 = np.where(swap, lep_m, lep_p)
    lep2 = np.where(swap, lep_p, lep_m)
    cov = inputs.cov
    det = cov[:, 0, 0] * cov[:, 1, 1] - cov[:, 0, 1] * cov[:, 1, 0]
    todo &= np.isfinite(det) & (det > 0)
    safe = np.where(todo, det, 1.0)
    icov = np.stack([cov[:, 1, 1] / safe, -0.5 * (cov[:, 0, 1] + cov[:, 1, 0]) / safe,
                     cov[:, 0, 0] / safe], axis=1)
    met = np.where(todo[:, None], inputs.met, 0.0)
    l1 = np.where(todo[:, None], l1, 1.0)
    l2 = np.where(todo[:, None], l2, 1.0)
    vm1 = np.where(todo, vm1, 0.0)
    vm2 = np.where(todo, vm2, 0.0)
    icov = np.where(todo[:, None], icov, 0.0)
    n_threads = default_threads() if threads is None else int(threads)
    args = [np.ascontiguousarray(a) for a in (l1, l2, met, icov, lep1, lep2, vm1, vm2)]

    def scan(rows: NDArray[np.bool_], use_pt: bool) -> tuple[NDArray[np.float64],
                                                             NDArray[np.float64]]:
        return _scan(*args, np.ascontiguousarray(rows), int(grid), float(mass_power),
                     float(mass_scale), use_pt, float(M_TAU), bool(_prune), threads=n_threads)

    x1, x2 = scan(todo, bool(pt_terms))
    if pt_terms and pt_fallback:
        # the p_T terms vanish on the whole grid (e.g. a small leading-leg component below
        # the C++ singularity cut, where it returns its default x = 0.75): MET x mass only
        redo = todo & ~np.isfinite(x1)
        if redo.any():
            y1, y2 = scan(redo, False)
            x1 = np.where(redo, y1, x1)
            x2 = np.where(redo, y2, x2)
    found = np.isfinite(x1)
    status = np.where(found, "ok", "no_solution").astype(object)
    reason = np.where(found, "", "likelihood zero on the whole x grid").astype(object)
    # legs back to tau+ / tau-
    xp = np.where(swap, x2, x1)
    xm = np.where(swap, x1, x2)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau_p = vis_p / xp[:, None]
        tau_m = vis_m / xm[:, None]
    m_tt = mass(np.where(found[:, None], tau_p + tau_m, 0.0))
    if mass_correction:
        # bestP4 *= 1.03 with a leptonic leg, 0.98 for two hadronic legs (FastMTT::run)
        m_tt = m_tt * np.where(lep_p | lep_m, 1.03, 0.98)
    m_tt = np.where(found, m_tt, np.nan)
    return recon_table("fastmtt", inputs, tau_p, tau_m, status, reason, m_tautau=m_tt)
