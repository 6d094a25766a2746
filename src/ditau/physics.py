"""Physical constants and small array helpers shared by every stage.

Units: GeV for energies, momenta and masses; radians for angles. Four-vectors are
scikit-hep ``vector`` arrays (boosts, masses and angles come from there).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

import numpy as np
import vector
from numpy.typing import ArrayLike, NDArray
from particle import Particle
from particle.pdgid import is_valid

#: PDG masses in GeV (the ``particle`` package stores MeV).
M_TAU: Final[float] = Particle.from_pdgid(15).mass / 1000.0
M_PI: Final[float] = Particle.from_pdgid(211).mass / 1000.0
M_PI0: Final[float] = Particle.from_pdgid(111).mass / 1000.0
M_RHO: Final[float] = Particle.from_pdgid(113).mass / 1000.0
M_Z: Final[float] = Particle.from_pdgid(23).mass / 1000.0

#: Decay modes of one tau leg as labelled in the event schema.
DECAY_MODES: Final[tuple[str, ...]] = ("pi", "rho", "e", "mu", "other")

#: The seven analysis channels (order of the reference's tables) plus the catch-all.
CHANNELS: Final[tuple[str, ...]] = (
    "pipi", "pirho", "rhorho", "epi", "mupi", "erho", "murho", "other",
)

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


def channel_of(mode_p: ArrayLike, mode_m: ArrayLike) -> NDArray[np.str_]:
    """Analysis channel from the two legs' decay modes (order-independent).

    ``e``/``mu`` paired with ``pi``/``rho`` gives ``epi``, ``murho``, ...; fully leptonic or any
    ``other`` leg gives ``other``.
    """
    a = np.asarray(mode_p).astype(str)
    b = np.asarray(mode_m).astype(str)
    # Canonical order within a name: leptons first, then pi before rho.
    rank = {"e": 0, "mu": 1, "pi": 2, "rho": 3}
    out = np.full(a.shape, "other", dtype=object)
    for x, rx in rank.items():
        for y, ry in rank.items():
            if rx > ry or (rx <= 1 and ry <= 1):
                continue  # each unordered pair once; dileptonic stays "other"
            name = x + y
            out[((a == x) & (b == y)) | ((a == y) & (b == x))] = name
    return out.astype(str)


def expected_channel_fractions(br: dict[str, float]) -> dict[str, float]:
    """Channel fractions of uncorrelated-in-mode decays given per-tau mode fractions ``br``.

    The two taus decay independently in mode (spin correlations change angles, not rates), so
    P(ab) = 2 BR_a BR_b for a != b and BR_a^2 for a == b.
    """
    out: dict[str, float] = {}
    for name in CHANNELS[:-1]:
        for x in ("e", "mu", "pi", "rho"):
            if name.startswith(x) and name[len(x):] in ("pi", "rho", "e", "mu"):
                y = name[len(x):]
                out[name] = br.get(x, 0.0) * br.get(y, 0.0) * (1.0 if x == y else 2.0)
                break
    out["other"] = 1.0 - sum(out.values())
    return out


def p4_from_columns(table: Any, prefix: str, suffix: str = "") -> vector.MomentumNumpy4D:
    """``vector`` four-momenta from schema columns ``{prefix}_{px,py,pz,e}{suffix}``.

    ``table`` is anything indexable by column name returning arrays (pyarrow Table, pandas
    DataFrame, dict of numpy arrays), e.g. ``p4_from_columns(t, "tau", "_p")`` for the tau+.
    """
    def col(c: str) -> NDArray[np.float64]:
        return np.asarray(table[f"{prefix}_{c}{suffix}"], dtype=np.float64)

    return vector.array({"px": col("px"), "py": col("py"), "pz": col("pz"), "E": col("e")})


def unit(v: ArrayLike) -> NDArray[np.float64]:
    """Normalise ``(..., 3)`` vectors; zero vectors give NaN (flagged, not silently zero)."""
    a = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return a / n


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


def pt_eta(px: Any, py: Any, pz: Any) -> tuple[Any, Any]:
    """Transverse momentum and pseudorapidity eta = asinh(pz / pT) of numpy or Awkward
    components (pT = 0 gives +-inf or NaN, left to the caller to flag)."""
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        return pt, np.arcsinh(pz / pt)


def delta_r(a_px: Any, a_py: Any, a_pz: Any, b_px: Any, b_py: Any, b_pz: Any) -> Any:
    """Delta R = sqrt(d_eta^2 + d_phi^2) between two directions (numpy or Awkward arrays,
    broadcasting), with d_phi wrapped into [-pi, pi)."""
    _, ea = pt_eta(a_px, a_py, a_pz)
    _, eb = pt_eta(b_px, b_py, b_pz)
    dphi = (np.arctan2(a_py, a_px) - np.arctan2(b_py, b_px) + np.pi) % (2 * np.pi) - np.pi
    return np.hypot(ea - eb, dphi)
