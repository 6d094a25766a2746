"""Physical constants (PDG masses, branching fractions, analysing powers) and particle charges.

Units: GeV for energies, momenta and masses; radians for angles.
"""

from __future__ import annotations

from functools import cache
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray
from particle import Particle
from particle.pdgid import is_valid

#: PDG masses in GeV (the ``particle`` package stores MeV).
M_TAU: Final[float] = Particle.from_pdgid(15).mass / 1000.0
M_PI: Final[float] = Particle.from_pdgid(211).mass / 1000.0
M_PI0: Final[float] = Particle.from_pdgid(111).mass / 1000.0
M_RHO: Final[float] = Particle.from_pdgid(113).mass / 1000.0
M_Z: Final[float] = Particle.from_pdgid(23).mass / 1000.0
#: Z width in GeV (PDG, via the ``particle`` package, which stores MeV).
GAMMA_Z: Final[float] = Particle.from_pdgid(23).width / 1000.0

#: Decay modes of one tau leg as labelled in the event schema.
DECAY_MODES: Final[tuple[str, ...]] = ("pi", "rho", "e", "mu", "other")

#: tau- branching fractions, PDG 2024 (R.L. Workman et al., PTEP 2022 083C01 and 2024 update):
#: pi- nu 10.82(5) %, pi- pi0 nu 25.49(9) %, e- nubar nu 17.82(4) %, mu- nubar nu 17.39(4) %.
BR_PDG: Final[dict[str, float]] = {"pi": 0.1082, "rho": 0.2549, "e": 0.1782, "mu": 0.1739}
BR_PDG_ERR: Final[dict[str, float]] = {"pi": 0.0005, "rho": 0.0009, "e": 0.0004, "mu": 0.0004}

#: Spin-analysing power of each analyser for a tau- (shared/reference/tomography.md; rho:
#: (m_tau^2 - 2 m_rho^2)/(m_tau^2 + 2 m_rho^2), Bullock-Hagiwara-Martin NPB 395 (1993) 499).
#: For the tau+ with the same daughter's direction the sign flips.
KAPPA: Final[dict[str, float]] = {
    "pi": 1.0,
    "rho": (M_TAU**2 - 2 * M_RHO**2) / (M_TAU**2 + 2 * M_RHO**2),
    "e": -1.0 / 3.0,
    "mu": -1.0 / 3.0,
}

#: Effective weak mixing angle at the Z pole (PDG 2024 EW review, sin^2 theta_eff^lept).
SIN2_THETA_EFF: Final[float] = 0.2315

#: Unit conversion: Pythia reports cross sections in mb.
MB_TO_FB: Final[float] = 1e12


@cache
def _charge(pdg: int) -> float:
    if not is_valid(pdg):
        raise ValueError(f"PDG id {pdg} is not a valid particle id")
    try:
        return float(Particle.from_pdgid(pdg).charge)
    except Exception as err:  # the particle table lacks a few exotic states
        raise ValueError(f"no charge known for PDG id {pdg}") from err


def charges(pid: ArrayLike) -> NDArray[np.float64]:
    """Electric charges (units of e) of PDG ids, from the ``particle`` package (cached per id)."""
    a = np.asarray(pid)
    uniq, inv = np.unique(a, return_inverse=True)
    return np.array([_charge(int(u)) for u in uniq], dtype=np.float64)[inv].reshape(a.shape)
