"""Collinear approximation: the neutrinos of each leg fly along its visible products.

Each tau is its visible leg scaled up, tau_i = vis_i / x_i, with the visible momentum fractions
x_1, x_2 fixed by the two components of the measured MET (shared/reference/baselines.md §1).
Physical only for 0 < x_i <= 1; when the legs are (nearly) back-to-back in the transverse
plane the 2x2 system is singular and the method reports ``no_solution``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ditau.config import StageConfig
from ditau.inputs import Inputs
from ditau.reconstruct.output import recon_table

#: |sin(dphi)| between the visible legs below which the system is considered singular.
MIN_SIN_DPHI = 1e-3


@dataclass(frozen=True)
class CollinearSettings(StageConfig):
    """Settings of the collinear approximation (it has none: the method is parameter-free)."""

    config_name = "method collinear"


def collinear_x(inputs: Inputs) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                          NDArray[np.float64]]:
    """Visible momentum fractions (x1, x2) of the tau+ and tau- legs and |sin dphi|.

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


def collinear(inputs: Inputs) -> pa.Table:
    """Collinear-approximation reconstruction (method ``collinear``).

    ``ok`` rows: tau_i = vis_i / x_i (whole four-vector scaled) and m_tautau the mass of
    tau+ + tau- (equal to m_vis / sqrt(x1 x2) for massless visible legs). ``no_solution``
    rows say why: back-to-back legs, or an x outside (0, 1].
    """
    n = len(inputs)
    x1, x2, sin_dphi = collinear_x(inputs)
    status = np.full(n, "ok", dtype=object)
    reason = np.full(n, "", dtype=object)
    # Checks in increasing priority: the last matching reason is reported.
    for name, x in (("x2", x2), ("x1", x1)):
        bad = ~((x > 0) & (x <= 1))
        status[bad] = "no_solution"
        reason[bad] = f"{name} outside (0, 1]"
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
