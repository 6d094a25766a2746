"""The one four-vector layer: every mass, pT, eta, phi, Delta phi, Delta R, boost and
(pT, eta, phi, m) <-> Cartesian conversion of the package goes through these functions, which
delegate to scikit-hep ``vector`` (numpy arrays, or Awkward arrays for jagged data).

Array convention: a four-momentum array has shape (..., 4) with the components (px, py, pz, E)
in GeV in the lab frame; component functions take numpy or Awkward arrays that broadcast.

Conventions decided once, here:

- m^2 < 0 (rounding in a nearly massless or mismeasured sum) gives m = 0, never NaN or a
  negative mass (``vector`` returns -sqrt(-m^2));
- pT = 0 gives eta = +inf or -inf by the sign of pz, and eta = 0 when the momentum is zero
  (``vector``'s convention); a caller that cannot use an infinite eta flags it itself;
- Delta phi is wrapped into [-pi, pi).
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np
import vector
from numpy.typing import ArrayLike, NDArray

from ditau.physics.constants import M_TAU

FloatArray = NDArray[np.float64]


def _is_awkward(*xs: Any) -> bool:
    return any(isinstance(x, ak.Array) for x in xs)


def momentum3(px: Any, py: Any, pz: Any) -> Any:
    """A ``vector`` three-momentum array from components (numpy -> VectorNumpy3D, Awkward ->
    an Awkward array of Momentum3D records, broadcast against each other)."""
    if _is_awkward(px, py, pz):
        px, py, pz = ak.broadcast_arrays(px, py, pz)
        return vector.zip({"px": px, "py": py, "pz": pz})
    px, py, pz = np.broadcast_arrays(*(np.asarray(c, dtype=np.float64) for c in (px, py, pz)))
    return vector.array({"px": px, "py": py, "pz": pz})


def momentum4(p4: ArrayLike) -> vector.MomentumNumpy4D:
    """A ``vector`` four-momentum array from a (..., 4) array of (px, py, pz, E)."""
    a = np.asarray(p4, dtype=np.float64)
    if a.shape[-1] != 4:
        raise ValueError(f"four-momenta need a last axis of 4 (px, py, pz, E), got {a.shape}")
    return vector.array({"px": a[..., 0], "py": a[..., 1], "pz": a[..., 2], "E": a[..., 3]})


def to_array(v: Any) -> FloatArray:
    """The (..., 4) array (px, py, pz, E) of a ``vector`` four-momentum array."""
    return np.stack([np.asarray(v.px), np.asarray(v.py), np.asarray(v.pz), np.asarray(v.E)],
                    axis=-1).astype(np.float64)


def mass(p4: ArrayLike) -> FloatArray:
    """Invariant mass (GeV) of (..., 4) four-momenta; m^2 < 0 gives 0 (module doc)."""
    return np.asarray(np.maximum(momentum4(p4).mass, 0.0), dtype=np.float64)


def mass2(p4: ArrayLike) -> FloatArray:
    """Invariant mass squared (GeV^2) of (..., 4) four-momenta, sign kept."""
    return np.asarray(momentum4(p4).mass2, dtype=np.float64)


def pt(px: Any, py: Any) -> Any:
    """Transverse momentum sqrt(px^2 + py^2) of numpy or Awkward components."""
    if _is_awkward(px, py):
        px, py = ak.broadcast_arrays(px, py)
        return vector.zip({"px": px, "py": py}).rho
    px, py = np.broadcast_arrays(np.asarray(px, np.float64), np.asarray(py, np.float64))
    return vector.array({"px": px, "py": py}).rho


def eta(px: Any, py: Any, pz: Any) -> Any:
    """Pseudorapidity asinh(pz / pT); pT = 0 gives +-inf (0 for a zero momentum)."""
    return momentum3(px, py, pz).eta


def phi(px: Any, py: Any) -> Any:
    """Azimuth atan2(py, px) in [-pi, pi]."""
    return np.arctan2(py, px)


def pt_eta(px: Any, py: Any, pz: Any) -> tuple[Any, Any]:
    """(pT, eta) of numpy or Awkward components (conventions of the module doc)."""
    v = momentum3(px, py, pz)
    return v.rho, v.eta


def wrap_phi(dphi: Any) -> Any:
    """An angle difference wrapped into [-pi, pi)."""
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def delta_phi(phi_a: Any, phi_b: Any) -> Any:
    """phi_a - phi_b wrapped into [-pi, pi)."""
    return wrap_phi(np.asarray(phi_a) - np.asarray(phi_b)) if not _is_awkward(phi_a, phi_b) \
        else wrap_phi(phi_a - phi_b)


def delta_r(a_px: Any, a_py: Any, a_pz: Any, b_px: Any, b_py: Any, b_pz: Any) -> Any:
    """Delta R = sqrt(Delta eta^2 + Delta phi^2) between two directions (numpy or Awkward,
    broadcasting; Delta phi wrapped)."""
    return momentum3(a_px, a_py, a_pz).deltaR(momentum3(b_px, b_py, b_pz))


def from_pt_eta_phi_m(pt_: ArrayLike, eta_: ArrayLike, phi_: ArrayLike,
                      m: ArrayLike) -> FloatArray:
    """(..., 4) Cartesian four-momenta (px, py, pz, E) from (pT, eta, phi, m)."""
    v = vector.array({"pt": np.asarray(pt_, np.float64), "eta": np.asarray(eta_, np.float64),
                      "phi": np.asarray(phi_, np.float64), "mass": np.asarray(m, np.float64)})
    return to_array(v)


def boost_to_rest(p4: ArrayLike, frame: ArrayLike) -> FloatArray:
    """(..., 4) four-momenta ``p4`` boosted into the rest frame of ``frame`` (..., 4)."""
    return to_array(momentum4(p4).boostCM_of_p4(momentum4(frame)))


def unit(v: ArrayLike) -> FloatArray:
    """Normalise ``(..., 3)`` vectors; zero vectors give NaN (flagged, not silently zero)."""
    a = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return a / n


def p4_from_columns(table: Any, prefix: str, suffix: str = "") -> vector.MomentumNumpy4D:
    """``vector`` four-momenta from schema columns ``{prefix}_{px,py,pz,e}{suffix}``.

    ``table`` is anything indexable by column name returning arrays (pyarrow Table, pandas
    DataFrame, dict of numpy arrays), e.g. ``p4_from_columns(t, "tau", "_p")`` for the tau+.
    """
    def col(c: str) -> FloatArray:
        return np.asarray(table[f"{prefix}_{c}{suffix}"], dtype=np.float64)

    return vector.array({"px": col("px"), "py": col("py"), "pz": col("pz"), "E": col("e")})


def as_p4_array(p: Any) -> NDArray[np.float64]:
    """``(N, 4)`` float array ``(px, py, pz, E)`` from an array-like or a ``vector`` array."""
    if isinstance(p, vector.VectorNumpy):
        return np.stack([np.asarray(p.px), np.asarray(p.py), np.asarray(p.pz),
                         np.asarray(p.E)], axis=-1).astype(np.float64)
    a = np.asarray(p, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"four-momenta must have shape (N, 4), got {a.shape}")
    return a


def tau_four_momenta(vis: NDArray[np.float64], nu: NDArray[np.float64]) -> NDArray[np.float64]:
    """On-shell tau four-momenta from visible (..., 4) and neutrino (..., 3) momenta (GeV):
    p = p_vis + p_nu, E = sqrt(|p|^2 + m_tau^2)."""
    p = vis[..., :3] + nu
    e = np.sqrt(np.sum(p**2, axis=-1) + M_TAU**2)  # E = sqrt(|p|^2 + m_tau^2)
    return np.concatenate([p, e[..., None]], axis=-1)
