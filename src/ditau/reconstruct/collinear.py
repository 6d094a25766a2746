"""Collinear approximation: the neutrinos of each leg fly along its visible products.

Each tau is its visible leg scaled up, tau_i = vis_i / x_i, with the visible momentum fractions
x_1, x_2 fixed by the two components of the measured MET (shared/reference/baselines.md §1).
Physical only for 0 < x_i <= 1.

Failure region. The 2x2 system has determinant D = pT1 pT2 sin(dphi): when the legs are
(nearly) back-to-back in the transverse plane, 1/x_i - 1 = (MET x p_j)/D amplifies any MET
mismeasurement by 1/|sin dphi|. A Z -> pi pi event at |sin dphi| = 0.013 with a 3 GeV MET
error comes back ``ok`` at m_tautau = 533 GeV if only x in (0, 1] is checked, and on signal
the ``ok`` results with |sin dphi| < 0.1 sit at a median 3.3x the true mass. Three checks, in
increasing priority (the reason of the last one that fails is reported, status
``no_solution``):

1. x1, x2 in (0, 1];
2. the fractions are determined by the MET: 1/x_i is linear in the MET,
   1/x_i = 1 + g_i . MET with g_1 = (py2, -px2)/D, g_2 = (-py1, px1)/D, so the MET
   covariance C gives sigma(1/x_i) = sqrt(g_i^T C g_i) = sigma(E_tau_i)/E_vis_i exactly
   (linear error propagation). Above ``max_inv_x_unc`` (default 1.5: the tau energy is
   uncertain by more than 1.5 visible energies; ~ sigma_MET / (pT_i |sin dphi|)) the result
   is flagged. The absolute, not the relative, uncertainty: a mismeasured MET that inflates
   1/x makes sigma(1/x) x small exactly where the result is wrong (measured on 453
   signal-region events: with the relative criterion the flagged-free |sin dphi| < 0.1
   results still sat at 4x the true mass; with this one the ``ok`` median m/m_true goes from
   1.24 to 1.10 and its 90 % quantile from 5.6 to 1.6, at 39 % instead of 63 % efficiency).
   Events without a usable MET covariance skip this check (collinear does
   not need the covariance otherwise: such events are reconstructed, not ``failed``);
3. |sin dphi| >= :data:`MIN_SIN_DPHI` (exactly singular system).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ditau.config import StageConfig
from ditau.inputs import COVARIANCE_REASON, Inputs
from ditau.reconstruct.output import recon_table

#: |sin(dphi)| between the visible legs below which the system is considered singular.
MIN_SIN_DPHI = 1e-3
#: Default largest uncertainty sigma(1/x_i) (from the MET covariance) of an ``ok`` result
#: (check 2 of the module docstring).
DEFAULT_MAX_INV_X_UNC = 1.5


@dataclass(frozen=True)
class CollinearSettings(StageConfig):
    """Settings of :func:`collinear`: ``max_inv_x_unc``, the largest uncertainty sigma(1/x_i)
    of an ``ok`` result (None: no uncertainty check)."""

    config_name = "method collinear"

    max_inv_x_unc: float | None = DEFAULT_MAX_INV_X_UNC

    def __post_init__(self) -> None:
        v = self.max_inv_x_unc
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)
                              or not v > 0):
            raise ValueError(f"collinear: max_inv_x_unc must be a positive number or None, "
                             f"got {v!r}")


def collinear_x(inputs: Inputs) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                          NDArray[np.float64]]:
    """Visible momentum fractions (x1, x2) of the tau+ and tau- legs and |sin dphi|, each (n,).

    Singular events (D = 0) get x = NaN.
    """
    p1, p2, met = inputs.vis_p, inputs.vis_m, inputs.met
    # D = px1 py2 - py1 px2 = pT1 pT2 sin(dphi) (baselines.md §1, collinear approximation)
    d = p1[:, 0] * p2[:, 1] - p1[:, 1] * p2[:, 0]
    pt1 = np.hypot(p1[:, 0], p1[:, 1])
    pt2 = np.hypot(p2[:, 0], p2[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        sin_dphi = np.abs(d) / (pt1 * pt2)
        # 1/x1 - 1 = (METx py2 - METy px2)/D, 1/x2 - 1 = (METy px1 - METx py1)/D (baselines.md §1)
        r1 = (met[:, 0] * p2[:, 1] - met[:, 1] * p2[:, 0]) / d
        r2 = (met[:, 1] * p1[:, 0] - met[:, 0] * p1[:, 1]) / d
        x1 = 1.0 / (1.0 + r1)
        x2 = 1.0 / (1.0 + r2)
    singular = ~(d != 0)
    x1[singular] = np.nan
    x2[singular] = np.nan
    return x1, x2, sin_dphi


def collinear_inv_x_unc(inputs: Inputs) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Uncertainties sigma(1/x_1), sigma(1/x_2), each (n,), of the inverse collinear fractions
    propagated from the MET covariance (module docstring, check 2); unitless,
    = sigma(E_tau_i)/E_vis_i. NaN/inf where the system is singular or the covariance is not
    finite.
    """
    p1, p2, cov = inputs.vis_p, inputs.vis_m, inputs.cov
    d = p1[:, 0] * p2[:, 1] - p1[:, 1] * p2[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        # d(1/x1)/dMET = (py2, -px2)/D, d(1/x2)/dMET = (-py1, px1)/D (derivative of baselines.md
        # §1); sigma^2 = g^T C g (linear error propagation)
        g1 = np.stack([p2[:, 1], -p2[:, 0]], axis=1) / d[:, None]
        g2 = np.stack([-p1[:, 1], p1[:, 0]], axis=1) / d[:, None]
        s1 = np.sqrt(np.einsum("ni,nij,nj->n", g1, cov, g1))
        s2 = np.sqrt(np.einsum("ni,nij,nj->n", g2, cov, g2))
    return s1, s2


def collinear(inputs: Inputs, *,
              max_inv_x_unc: float | None = DEFAULT_MAX_INV_X_UNC) -> pa.Table:
    """Collinear-approximation reconstruction (method ``collinear``).

    ``ok`` rows: tau_i = vis_i / x_i (whole four-vector scaled) and m_tautau the mass of
    tau+ + tau- (equal to m_vis / sqrt(x1 x2) for massless visible legs). ``no_solution``
    rows say why (module docstring): an x outside (0, 1], fractions not determined by the MET
    (sigma(1/x) above ``max_inv_x_unc``, None = no check), or
    back-to-back legs. A missing or non-positive MET covariance does not make an event fail
    here (only the uncertainty check is skipped); the other bad inputs do (``failed``).
    Raises ValueError for an invalid ``max_inv_x_unc``.
    """
    CollinearSettings(max_inv_x_unc)  # validates
    # the covariance is needed only for check 2: un-fail events whose only problem it is
    # (it is the lowest-priority reason of Inputs.bad, so no other problem hides behind it)
    no_cov = inputs.bad == COVARIANCE_REASON
    if no_cov.any():
        inputs = dataclasses.replace(inputs, bad=np.where(no_cov, "", inputs.bad))
    n = len(inputs)
    x1, x2, sin_dphi = collinear_x(inputs)
    status = np.full(n, "ok", dtype=object)
    reason = np.full(n, "", dtype=object)
    # Checks in increasing priority: the last matching reason is reported.
    for name, x in (("x2", x2), ("x1", x1)):
        bad = ~((x > 0) & (x <= 1))
        status[bad] = "no_solution"
        reason[bad] = f"{name} outside (0, 1]"
    if max_inv_x_unc is not None:
        u1, u2 = collinear_inv_x_unc(inputs)
        undetermined = ~no_cov & ((u1 > max_inv_x_unc) | (u2 > max_inv_x_unc))
        status[undetermined] = "no_solution"
        reason[undetermined] = (f"fractions not determined by the MET: sigma(1/x) > "
                                f"{max_inv_x_unc:g} from the MET covariance")
    b2b = ~(sin_dphi >= MIN_SIN_DPHI)
    status[b2b] = "no_solution"
    reason[b2b] = f"back-to-back legs: |sin dphi| < {MIN_SIN_DPHI:g}"
    ok = status == "ok"
    s1 = np.where(ok, 1.0 / np.where(ok, x1, 1.0), np.nan)
    s2 = np.where(ok, 1.0 / np.where(ok, x2, 1.0), np.nan)
    # p_tau_i = p_vis_i / x_i (baselines.md §1)
    tau_p = inputs.vis_p * s1[:, None]
    tau_m = inputs.vis_m * s2[:, None]
    return recon_table("collinear", inputs, tau_p, tau_m, status, reason)
