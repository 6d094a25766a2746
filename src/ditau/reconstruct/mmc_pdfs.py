"""Angle pdfs of the Missing Mass Calculator (ATLAS 2012 tune) and the Landau density.

The MMC weighs each neutrino solution by the probability density of the 3D angle between the
neutrino(s) and the visible decay products of a tau with momentum P (arXiv:1012.4686, sec. 3;
DiTauMassTools ``MissingMassProb.cxx``: ``dTheta3d_probabilityFast``, ``myDelThetaHadFunc``,
``myDelThetaLepFunc``, ``dTheta3Dparam``, coefficients ``s_fit_param[1]`` = MMC2012 set, which
the UPGRADE/MMC2015HIGHMASS calibration sets evaluate). Summary in
shared/reference/baselines.md §2.

Kinds (index of :data:`KINDS`): 0 leptonic (e, mu), 1 one-prong hadronic (pi, rho),
2 three-prong hadronic (not produced by this project's detector, kept for completeness).

Everything scalar is a numba function so the MMC scan (``ditau.reconstruct.mmc``) can call it in
compiled code; the numpy-facing wrappers (:func:`landau_pdf`, :func:`angle_pdf_params`,
:func:`angle_pdf`) are for tests and studies. :func:`fit_pdfs` refits the same functional
forms on this project's simulation.
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Decay kinds of the angle pdfs, index = kind code.
KINDS: tuple[str, ...] = ("lep", "1prong", "3prong")
#: Decay mode (schema label) -> kind code.
MODE_KIND: dict[str, int] = {"e": 0, "mu": 0, "pi": 1, "rho": 1}

_SQRT2PI = math.sqrt(2.0 * math.pi)

# ATLAS 2012 parameters [kind][parameter a0..a5][coefficient c0..c4]
# (MissingMassProb.cxx, s_fit_param[1][kind][i][j]; leptonic set unchanged since MMC2011).
# a0 = 0.00125 * (c0 + c1 P + c2 P^2 + c3 P^3 + c4 P^4)   (dTheta3Dparam, parInd 0)
# a1..a5 = c0 (exp(-c1 x) + c2/P) + c3 + c4 P, x = P (leptonic) or sqrt(P) (hadronic)
ATLAS2012: NDArray[np.float64] = np.array([
    [  # leptonic
        [-0.982013, 0.909874, 0.0, 0.0, 0.0],
        [99.6303, 16.8873, 0.0323798, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.3, 0.0],
        [97.0055, 64.6175, 0.0320679, 0.0, 0.0],
        [1.56865, 0.228336, 0.109396, 0.00199975, 0.0],
        [0.0, 0.0, 0.0, 0.66, 0.0],
    ],
    [  # 1-prong hadronic
        [0.7568, -1.469e-4, 5.413e-7, -6.754e-10, 2.269e-13],
        [-0.0288208, 0.134174, -142.588, -3.5606e-4, -6.94567e-20],
        [-0.00468927, 0.0378737, -260.284, 0.00241158, -6.01766e-7],
        [-0.170424, 0.135764, -50.2361, 0.00735544, -7.34073e-6],
        [-0.0081364, 0.0391428, -141.936, 0.0035034, -1.21956e-6],
        [0.0, 0.0, 0.0, 0.624 * 0.00125, 0.0],
    ],
    [  # 3-prong hadronic
        [0.7562, -1.168e-5, 0.0, 0.0, 0.0],
        [-0.0420458, 0.15917, -80.3259, 0.000125729, -2.43945e-18],
        [-0.0216898, 0.0243497, -63.8273, 0.0148339, -4.45351e-6],
        [-0.0879411, 0.110092, -75.4901, 0.0116915, -1e-5],
        [-0.0118324, 0.0280538, -85.127, 0.00724948, -2.38792e-6],
        [0.0, 0.0, 0.0, 0.6167 * 0.00125, 0.0],
    ],
])

# CERNLIB G110 DENLAN rational-approximation coefficients (Kolbig & Schorr; the same numbers
# as ROOT::Math::landau_pdf): numerator/denominator quartics per interval of v.
_LP = np.array([
    [0.4259894875, -0.1249762550, 0.03984243700, -0.006298287635, 0.001511162253],
    [0.1788541609, 0.1173957403, 0.01488850518, -0.001394989411, 0.0001283617211],
    [0.1788544503, 0.09359161662, 0.006325387654, 0.00006611667319, -0.000002031049101],
    [0.9874054407, 118.6723273, 849.2794360, -743.7792444, 427.0262186],
    [1.003675074, 167.5702434, 4789.711289, 21217.86767, -22324.94910],
    [1.000827619, 664.9143136, 62972.92665, 475554.6998, -5743609.109],
])
_LQ = np.array([
    [1.0, -0.3388260629, 0.09594393323, -0.01608042283, 0.003778942063],
    [1.0, 0.7428795082, 0.3153932961, 0.06694219548, 0.008790609714],
    [1.0, 0.6097809921, 0.2560616665, 0.04746722384, 0.006957301675],
    [1.0, 106.8615961, 337.6496214, 2016.712389, 1597.063511],
    [1.0, 156.9424537, 3745.310488, 9834.698876, 66924.28357],
    [1.0, 651.4101098, 56974.73333, 165917.4725, -2815759.939],
])
_LA1 = np.array([0.04166666667, -0.01996527778, 0.02709538966])
_LA2 = np.array([-1.845568670, -4.284640743])


@numba.njit(cache=True, inline="always")
def _ratio(k: int, t: float) -> float:
    p = _LP[k]
    q = _LQ[k]
    return (p[0] + t * (p[1] + t * (p[2] + t * (p[3] + t * p[4])))) \
        / (q[0] + t * (q[1] + t * (q[2] + t * (q[3] + t * q[4]))))


@numba.njit(cache=True, error_model="numpy")
def landau(v: float) -> float:
    """Standard Landau density phi(v) (mode at v = -0.22278), CERNLIB G110 DENLAN."""
    # piecewise rational approximation in v, exp(-v-1) or 1/v (CERNLIB DENLAN; Kolbig-Schorr,
    # Comput. Phys. Commun. 31 (1984) 97); used by TMath::Landau in MissingMassProb.cxx
    if v < -5.5:
        u = math.exp(v + 1.0)
        if u < 1e-10:
            return 0.0
        return 0.3989422803 * (math.exp(-1.0 / u) / math.sqrt(u)) \
            * (1.0 + (_LA1[0] + (_LA1[1] + _LA1[2] * u) * u) * u)
    if v < -1.0:
        u = math.exp(-v - 1.0)
        return math.exp(-u) * math.sqrt(u) * _ratio(0, v)
    if v < 1.0:
        return _ratio(1, v)
    if v < 5.0:
        return _ratio(2, v)
    if v < 12.0:
        u = 1.0 / v
        return u * u * _ratio(3, u)
    if v < 50.0:
        u = 1.0 / v
        return u * u * _ratio(4, u)
    if v < 300.0:
        u = 1.0 / v
        return u * u * _ratio(5, u)
    u = 1.0 / (v - v * math.log(v) / (v + 1.0))
    return u * u * (1.0 + (_LA2[0] + _LA2[1] * u) * u)


@numba.njit(cache=True, error_model="numpy")
def param_exact(coef: NDArray[np.float64], kind: int, i: int, p: float) -> float:
    """Parameter a_i of the angle pdf of ``kind`` at tau momentum ``p`` (GeV)."""
    c = coef[kind, i]
    if i == 0:
        # a0 = 0.00125 pol4(P) (MissingMassProb.cxx dTheta3Dparam, parInd 0)
        return 0.00125 * (c[0] + p * (c[1] + p * (c[2] + p * (c[3] + p * c[4]))))
    # c0 (exp(-c1 P) + c2/P) + c3 + c4 P, sqrt(P) in the exponent for hadronic taus
    # (MissingMassProb.cxx dTheta3Dparam)
    x = p if kind == 0 else math.sqrt(p)
    return c[0] * (math.exp(-c[1] * x) + c[2] / p) + c[3] + c[4] * p


@numba.njit(cache=True, error_model="numpy")
def pdf_from_params(kind: int, theta: float, a0: float, a1: float, a2: float, a3: float,
                    a4: float, a5: float) -> float:
    """Angle pdf for given parameters (1e-10 outside [0, pi], never negative)."""
    if theta < 0.0 or theta > math.pi:
        return 1e-10  # MissingMassProb.cxx myDelTheta*Func out-of-range value
    if kind == 0:
        # u = theta/a1 -> sqrt(u) below 1, u^2 above; f = a0 (a5 G(u;1,a2) + L(theta;a3,a4))
        # / (1 + a5) (MissingMassProb.cxx myDelThetaLepFunc)
        u = theta / a1
        u = math.sqrt(abs(u)) if u < 1.0 else u * u
        n5 = max(a5, 0.0)
        g = n5 * math.exp(-0.5 * ((u - 1.0) / a2) ** 2) if a2 != 0.0 else 0.0
        lan = landau((theta - a3) / a4) if a4 > 0.0 else 0.0
        f = a0 * (g + lan) / (1.0 + n5)
    else:
        # f = a0 G(theta;a1,a2)/(sqrt(2pi) a2) + a5 L(theta;a3,a4)/(sqrt(2pi) a4)
        # (MissingMassProb.cxx myDelThetaHadFunc, arXiv:1012.4686 eq. 4 shape)
        g = a0 * math.exp(-0.5 * ((theta - a1) / a2) ** 2) / (_SQRT2PI * a2) \
            if a2 != 0.0 else 0.0
        lan = a5 * landau((theta - a3) / a4) / (_SQRT2PI * a4) if a4 > 0.0 else 0.0
        f = g + lan
    return f if f > 0.0 else 0.0


@numba.njit(cache=True, error_model="numpy")
def angle_pdf_exact(coef: NDArray[np.float64], kind: int, theta: float, p: float) -> float:
    """Angle pdf of ``kind`` at angle ``theta`` and tau momentum ``p`` (exact parameters)."""
    if p <= 0.0:
        return 0.0
    return pdf_from_params(kind, theta, param_exact(coef, kind, 0, p),
                           param_exact(coef, kind, 1, p), param_exact(coef, kind, 2, p),
                           param_exact(coef, kind, 3, p), param_exact(coef, kind, 4, p),
                           param_exact(coef, kind, 5, p))


# Lookup table of the parameters for the scan: P = k * TABLE_STEP, k = 0 .. TABLE_N-1, linear
# interpolation; outside [TABLE_PMIN, (TABLE_N-1) TABLE_STEP) the exact formula is used.
TABLE_STEP = 0.25
TABLE_N = 16001
TABLE_PMIN = 5.0


def param_table(coef: NDArray[np.float64] = ATLAS2012) -> NDArray[np.float64]:
    """(3, TABLE_N, 6) table of a0..a5 per kind on the momentum grid of the scan."""
    p = np.arange(TABLE_N) * TABLE_STEP
    p[0] = TABLE_STEP  # never used (below TABLE_PMIN), avoid 1/0
    out = np.empty((len(KINDS), TABLE_N, 6))
    with np.errstate(over="ignore"):
        for kind in range(len(KINDS)):
            for i in range(6):
                c = coef[kind, i]
                if i == 0:
                    out[kind, :, i] = 0.00125 * np.polyval(c[::-1], p)
                else:
                    x = p if kind == 0 else np.sqrt(p)
                    out[kind, :, i] = c[0] * (np.exp(-c[1] * x) + c[2] / p) + c[3] + c[4] * p
    return out


@numba.njit(cache=True, error_model="numpy", inline="always")
def angle_pdf_table(table: NDArray[np.float64], coef: NDArray[np.float64], kind: int,
                    theta: float, p: float) -> float:
    """Angle pdf with the parameters interpolated in ``table`` (see :func:`param_table`)."""
    x = p / TABLE_STEP
    if p < TABLE_PMIN or x >= TABLE_N - 1:
        return angle_pdf_exact(coef, kind, theta, p)
    k = int(x)
    f = x - k
    r0 = table[kind, k]
    r1 = table[kind, k + 1]
    g = 1.0 - f
    return pdf_from_params(kind, theta, g * r0[0] + f * r1[0], g * r0[1] + f * r1[1],
                           g * r0[2] + f * r1[2], g * r0[3] + f * r1[3],
                           g * r0[4] + f * r1[4], g * r0[5] + f * r1[5])


@numba.vectorize(["float64(float64)"], cache=True)
def _landau_vec(v: float) -> float:
    return landau(v)


def landau_pdf(x: ArrayLike, mpv: float = 0.0, sigma: float = 1.0) -> NDArray[np.float64]:
    """Landau density of (x - mpv)/sigma divided by sigma (normalised in x; mode at
    mpv - 0.22278 sigma, as TMath::Landau(x, mpv, sigma, true))."""
    if sigma <= 0:
        raise ValueError(f"landau_pdf: sigma must be > 0, got {sigma}")
    return np.asarray(_landau_vec((np.asarray(x, dtype=float) - mpv) / sigma)) / sigma


def _kind_code(kind: str | int) -> int:
    if isinstance(kind, str):
        if kind in MODE_KIND:
            return MODE_KIND[kind]
        if kind in KINDS:
            return KINDS.index(kind)
        raise ValueError(f"unknown angle-pdf kind {kind!r}; use one of {KINDS} or a mode")
    if not 0 <= int(kind) < len(KINDS):
        raise ValueError(f"angle-pdf kind code must be 0..{len(KINDS) - 1}, got {kind}")
    return int(kind)


def angle_pdf_params(kind: str | int, p: ArrayLike,
                     coef: NDArray[np.float64] = ATLAS2012) -> NDArray[np.float64]:
    """Parameters (a0, ..., a5) of the angle pdf at tau momenta ``p``: shape (len(p), 6)."""
    k = _kind_code(kind)
    pp = np.atleast_1d(np.asarray(p, dtype=float))
    return np.array([[param_exact(coef, k, i, float(v)) for i in range(6)] for v in pp])


def angle_pdf(kind: str | int, theta: ArrayLike, p: ArrayLike,
              coef: NDArray[np.float64] = ATLAS2012) -> NDArray[np.float64]:
    """Angle pdf (1/rad, ATLAS normalisation incl. the 0.00125 bin size) at ``theta``, ``p``."""
    k = _kind_code(kind)
    th, pp = np.broadcast_arrays(np.asarray(theta, dtype=float), np.asarray(p, dtype=float))
    out = np.array([angle_pdf_exact(coef, k, float(a), float(b))
                    for a, b in zip(th.ravel(), pp.ravel(), strict=True)])
    return out.reshape(th.shape)


# --------------------------------------------------------------------------------------------
# Refit on our own simulation


def _angles_from_truth(events: Any, leg: str) -> tuple[NDArray[np.float64], ...]:
    def col(c: str) -> NDArray[np.float64]:
        x = events[c]
        return np.asarray(x.to_numpy() if hasattr(x, "to_numpy") else x, dtype=float)

    tau = np.stack([col(f"tau_{c}_{leg}") for c in ("px", "py", "pz")], axis=1)
    nu = np.stack([col(f"nu_{c}_{leg}") for c in ("px", "py", "pz")], axis=1)
    vis = tau - nu
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(nu * vis, axis=1) / (np.linalg.norm(nu, axis=1) * np.linalg.norm(vis, axis=1))
    theta = np.arccos(np.clip(cos, -1.0, 1.0))
    return theta, np.linalg.norm(tau, axis=1)


@numba.njit(cache=True, error_model="numpy")
def _shape_values(kind: int, x: NDArray[np.float64], a: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.empty(x.shape[0])
    for j in range(x.shape[0]):
        out[j] = pdf_from_params(kind, x[j], a[0], a[1], a[2], a[3], a[4], a[5])
    return out


def _full_params(kind: int, free: NDArray[np.float64]) -> NDArray[np.float64]:
    # hadronic: free = (a1, a2, a3, a4, a5/a0); leptonic: free = (a1, a2, a3, a4, a5); a0 = 1
    if kind == 0:
        return np.concatenate([[1.0], free])
    return np.concatenate([[1.0], free[:4], [free[4]]])


def fit_pdfs(events: Any, p_edges: ArrayLike | None = None,
             min_per_bin: int = 300) -> dict[str, Any]:
    """Refit the ATLAS 2012 angle-pdf shapes on a simulated sample (generator truth).

    ``events``: a table/mapping with ``tau_{px,py,pz}_{p,m}``, ``nu_{px,py,pz}_{p,m}`` and
    ``decay_mode_{p,m}`` (e.g. /work/data/ztautau_forced_reco.parquet). The angle is the 3D
    angle between the invisible system and the visible products (vis = tau - nu), P = |p_tau|.

    Per kind (lep from e/mu, 1prong from pi/rho) and per bin of P, the shape parameters are
    fitted by unbinned maximum likelihood (shape normalised numerically on [0, pi]):
    hadronic a1..a4 and the Landau fraction a5/a0; leptonic a1..a5. a0 is then set so that
    the pdf integrates to 0.00125 on [0, pi], the ATLAS convention ("multiplied by a bin
    size", MissingMassProb.cxx), so refitted and ATLAS pdfs are on the same scale. Finally
    each parameter's P dependence is fitted with the ATLAS form c0 (exp(-c1 x) + c2/P) + c3
    (x = sqrt(P) hadronic, P leptonic; c4 = 0), a0 with a straight line, a5 (and the
    hadronic Landau fraction) with a constant.

    Returns ``{"coef": (3, 6, 5) array for the ``coef`` argument of the pdf functions and of
    ``mmc(..., pdfs=...)`` (3-prong rows copied from ATLAS), "bins": {kind: {"p": bin
    medians, "params": (nbin, 6) fitted a0..a5, "n": decays per bin}}}``. A kind with fewer
    than 4 usable bins keeps the ATLAS coefficients.
    """
    from scipy.optimize import OptimizeWarning, curve_fit, minimize

    edges = np.asarray(p_edges if p_edges is not None else
                       [10, 20, 25, 30, 35, 40, 45, 50, 60, 70, 85, 100, 130, 200], float)

    def labels(c: str) -> NDArray[np.str_]:
        x = events[c]
        if hasattr(x, "to_numpy"):
            x = x.to_numpy(zero_copy_only=False) if not hasattr(x, "dtype") else x.to_numpy()
        return np.asarray(x).astype(str)

    th_all: dict[int, list[NDArray[np.float64]]] = {0: [], 1: []}
    p_all: dict[int, list[NDArray[np.float64]]] = {0: [], 1: []}
    for leg in ("p", "m"):
        theta, p = _angles_from_truth(events, leg)
        modes = labels(f"decay_mode_{leg}")
        for mode, kind in MODE_KIND.items():
            sel = (modes == mode) & np.isfinite(theta) & (p > 0)
            th_all[kind].append(theta[sel])
            p_all[kind].append(p[sel])
    coef = ATLAS2012.copy()
    bins: dict[str, Any] = {}
    grid = np.concatenate([np.linspace(0.0, 0.6, 12001)[:-1], np.linspace(0.6, np.pi, 2001)])
    w_grid = np.gradient(grid)  # trapezoid-like weights

    def norm_of(kind: int, full: NDArray[np.float64]) -> float:
        return float(np.sum(_shape_values(kind, grid, full) * w_grid))

    for kind in (0, 1):
        th = np.concatenate(th_all[kind])
        pp = np.concatenate(p_all[kind])
        centres, params, counts = [], [], []
        for lo, hi in itertools.pairwise(edges):
            sel = (pp >= lo) & (pp < hi)
            if sel.sum() < min_per_bin:
                continue
            t = np.ascontiguousarray(th[sel])
            pc = float(np.median(pp[sel]))
            start = angle_pdf_params(kind, pc)[0]
            x0 = start[1:6].copy() if kind == 0 else \
                np.concatenate([start[1:5], [start[5] / start[0]]])

            def nll(free: NDArray[np.float64], t: NDArray[np.float64] = t,
                    kind: int = kind) -> float:
                if free[1] <= 0 or free[3] <= 0 or free[4] < 0:
                    return 1e300
                full = _full_params(kind, free)
                norm = norm_of(kind, full)
                vals = _shape_values(kind, t, full)
                if not norm > 0 or np.any(vals <= 0):
                    return 1e300
                return float(-np.sum(np.log(vals)) + len(t) * np.log(norm))

            res = minimize(nll, x0, method="Nelder-Mead",
                           options={"maxiter": 3000, "xatol": 1e-7, "fatol": 1e-4})
            full = _full_params(kind, res.x)
            a0 = 0.00125 / norm_of(kind, full)
            full[0] = a0
            if kind == 1:
                full[5] = res.x[4] * a0
            centres.append(pc)
            params.append(full)
            counts.append(int(sel.sum()))
        centres_a = np.array(centres)
        params_a = np.array(params).reshape(-1, 6)
        bins[KINDS[kind]] = {"p": centres_a, "params": params_a, "n": np.array(counts)}
        if len(centres_a) < 4:
            continue
        line = np.polyfit(centres_a, params_a[:, 0] / 0.00125, 1)
        coef[kind, 0] = [line[1], line[0], 0.0, 0.0, 0.0]
        for i in range(1, 5):
            def form(p: NDArray[np.float64], a: float, b: float, c: float, d: float,
                     kind: int = kind) -> NDArray[np.float64]:
                x = p if kind == 0 else np.sqrt(p)
                return a * (np.exp(-b * x) + c / p) + d
            try:
                # degenerate coefficients (e.g. exp(-16.9 P) ~ 0 for leptons) only make the
                # covariance undefined, which is not used
                with np.errstate(over="ignore", invalid="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", OptimizeWarning)
                    popt, _ = curve_fit(form, centres_a, params_a[:, i],
                                        p0=coef[kind, i, :4], maxfev=20000)
                coef[kind, i] = [*popt, 0.0]
            except RuntimeError:
                coef[kind, i] = [0.0, 0.0, 0.0, float(np.mean(params_a[:, i])), 0.0]
        coef[kind, 5] = [0.0, 0.0, 0.0, float(np.mean(params_a[:, 5])), 0.0]
    return {"coef": coef, "bins": bins}
