"""The helicity basis {k, r, n} of the tau pair and spin-analyser components in the tau rest
frames: shared by the spin weights (:mod:`ditau.spin`) and the tomography
(:mod:`ditau.tomography`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import vector
from numpy.typing import NDArray

from ditau.physics import unit


@dataclass(frozen=True)
class HelicityFrame:
    """Per-event basis vectors (N x 3, in the tau-tau rest frame) and cos(Theta).

    Events where the basis is undefined (tau parallel to the axis, non-finite input) carry
    NaN vectors and ``valid = False``.
    """

    k: NDArray[np.float64]
    r: NDArray[np.float64]
    n: NDArray[np.float64]
    cos_theta: NDArray[np.float64]
    ditau: vector.MomentumNumpy4D
    valid: NDArray[np.bool_]


def _xyz(v: vector.VectorNumpy) -> NDArray[np.float64]:
    return np.stack([np.asarray(v.px), np.asarray(v.py), np.asarray(v.pz)], axis=-1)


def helicity_frame(tau_p: vector.MomentumNumpy4D, tau_m: vector.MomentumNumpy4D,
                   axis: Literal["collins-soper", "beam"] = "collins-soper",
                   sqrt_s: float = 13000.0) -> HelicityFrame:
    """Helicity basis of each event (shared/reference/tomography.md, "Helicity basis").

    ``axis="collins-soper"``: p = normalised difference of the two beam directions boosted
    into the tau-tau frame (Collins & Soper, PRD 16 (1977) 2219); ``"beam"``: beam 1 (+z)
    boosted into that frame.
    """
    ditau = tau_p + tau_m
    k = unit(_xyz(tau_m.boostCM_of_p4(ditau)))
    e = 0.5 * sqrt_s
    ones = np.ones(len(k))
    beam1 = vector.array({"px": 0 * ones, "py": 0 * ones, "pz": e * ones, "E": e * ones})
    beam2 = vector.array({"px": 0 * ones, "py": 0 * ones, "pz": -e * ones, "E": e * ones})
    b1 = unit(_xyz(beam1.boostCM_of_p4(ditau)))
    p = b1 if axis == "beam" else unit(b1 - unit(_xyz(beam2.boostCM_of_p4(ditau))))
    cos_theta = np.sum(p * k, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sin_theta = np.sqrt(np.clip(1.0 - cos_theta**2, 0.0, None))
        r = (p - cos_theta[:, None] * k) / sin_theta[:, None]
    r = np.where(sin_theta[:, None] > 1e-9, r, np.nan)
    n = np.cross(r, k)
    valid = np.all(np.isfinite(np.concatenate([k, r, n], axis=1)), axis=1)
    return HelicityFrame(k, r, n, cos_theta, ditau, valid)


def analyser_components(daughter: vector.MomentumNumpy4D, tau: vector.MomentumNumpy4D,
                        frame: HelicityFrame) -> NDArray[np.float64]:
    """(k, r, n) components of the daughter's unit direction in its tau's rest frame.

    The daughter and tau are boosted into the tau-tau frame, then the daughter into the tau
    rest frame with a rotation-free boost along the tau direction, so the axes are shared.
    Returns an N x 3 array; NaN where the frame is invalid.
    """
    d = daughter.boostCM_of_p4(frame.ditau)
    t = tau.boostCM_of_p4(frame.ditau)
    h = unit(_xyz(d.boostCM_of_p4(t)))
    return np.stack([np.sum(h * frame.k, 1), np.sum(h * frame.r, 1), np.sum(h * frame.n, 1)],
                    axis=1)
