"""Track impact parameters: the helix point of closest approach, smearing, the legs' columns.

Convention (ATLAS perigee; ACTS ``LineSurface``, whose local frame ATLAS shares): for a track
of transverse direction (cos phi, sin phi) at its point of closest approach (PCA) to the
reference point (here the primary vertex, PV) in the transverse plane,

* ``d0``: signed transverse distance, PCA - PV = d0 (-sin phi, cos phi): positive when the
  PCA lies at azimuth phi + 90 deg; for a straight track through (x, y) relative to the PV,
  d0 = (y px - x py) / pT;
* ``z0``: z of the PCA minus z of the PV.

Units mm, GeV, T; laboratory frame (z along beam 1). The tracks are helices in a uniform
solenoid field ``bz`` along +z (ATLAS: 2 T), exact for the transverse PCA (no energy loss,
no multiple scattering: those enter only through the resolution); ``bz = 0`` gives straight
lines. Note: Delphes' ``ParticlePropagator`` stores D0 = (x py - y px) / pT, the opposite
sign (:mod:`ditau.detector.delphes` converts).

Smearing: Gaussian, sigma from :func:`ditau.detector.resolution.d0_resolution` and
:func:`~ditau.detector.resolution.z0_resolution` at the true pT and |eta|, times the
systematic handle ``DetectorConfig.ip_resolution``; the quoted errors (``*_err``) are the
nominal resolutions. Labelled simplifications: the true PV is the reference (no vertex
reconstruction or beam-line constraint), d0 and z0 uncorrelated, Gaussian tails only, every
charged particle tracked wherever it was produced (no inner-detector hit requirement), and
the legs' columns found by matching each selected leg to its candidate by momentum
(:func:`leg_columns`; :mod:`ditau.select` does not carry the fields yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import awkward as ak
import numpy as np
from numpy.typing import NDArray

from ditau.detector import resolution as res
from ditau.physics import eta

Arr = NDArray[np.float64]

#: Curvature constant: pT [GeV] = C_GEV_PER_T_MM x |q| [e] x B [T] x R [mm] (c = 299792458 m/s).
C_GEV_PER_T_MM: Final[float] = 0.299792458e-3
#: Fields each lepton and tau_had candidate carries (mm): its track's impact parameters and
#: their errors (NaN where unknown).
IP_FIELDS: Final[tuple[str, ...]] = ("d0", "z0", "d0_err", "z0_err")


def impact_parameters(dx: Arr, dy: Arr, dz: Arr, px: Arr, py: Arr, pz: Arr, charge: Arr,
                      bz: float = 2.0) -> tuple[Arr, Arr]:
    """True ``(d0, z0)`` [mm] of tracks (arrays of shape (n,)).

    ``dx, dy, dz``: production point relative to the reference point (the PV) [mm];
    ``px, py, pz``: momentum there [GeV]; ``charge`` [e]; ``bz``: field along +z [T]. The
    track follows the helix phi(s) = phi0 - kappa s (s: transverse path length, kappa =
    q c B / pT, positive: clockwise seen from +z), and the PCA is the point of the helix
    nearest to (or behind) the production point where the position is perpendicular to the
    direction. Closed forms (stable for kappa -> 0, where they become the straight line):
    with u = dx sin phi0 - dy cos phi0, w = dx cos phi0 + dy sin phi0, r2 = dx^2 + dy^2,

        d0 = -(2u + kappa r2) / (1 + sqrt(1 + 2 kappa u + kappa^2 r2)),
        s  = atan2(-kappa w, 1 + kappa u) / kappa  (-> -w),   z0 = dz + s pz / pT.
    """
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        cphi, sphi = px / pt, py / pt
        u = dx * sphi - dy * cphi
        w = dx * cphi + dy * sphi
        r2 = dx * dx + dy * dy
        kappa = np.asarray(charge, dtype=np.float64) * C_GEV_PER_T_MM * bz / pt
        d0 = -(2.0 * u + kappa * r2) / (1.0 + np.sqrt(np.maximum(
            1.0 + 2.0 * kappa * u + kappa * kappa * r2, 0.0)))
        curved = kappa != 0.0
        s = np.where(curved, np.arctan2(-kappa * w, 1.0 + kappa * u)
                     / np.where(curved, kappa, 1.0), -w)
        z0 = dz + s * pz / pt
    return d0, z0


def smeared(vertex: Arr, p: Arr, charge: Arr, z: Arr, bz: float, scale: float,
            smear: float) -> dict[str, Arr]:
    """Measured impact parameters of tracks: :data:`IP_FIELDS` -> arrays of shape (n,).

    ``vertex``: (n, 3) production points relative to the PV [mm] (NaN rows: unknown, giving
    NaN); ``p``: (n, >=3) true momenta [GeV]; ``charge`` [e]; ``z``: (n, 2) standard-normal
    draws for d0 and z0; ``scale``: the resolution systematic (smearing x scale, errors
    nominal); ``smear``: 0 switches the smearing off (then d0, z0 are the true values).
    """
    d0, z0 = impact_parameters(vertex[:, 0], vertex[:, 1], vertex[:, 2], p[:, 0], p[:, 1],
                               p[:, 2], charge, bz)
    pt = np.hypot(p[:, 0], p[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        abseta = np.nan_to_num(np.abs(eta(p[:, 0], p[:, 1], p[:, 2])), nan=np.inf)
    s_d0, s_z0 = res.d0_resolution(pt, abseta), res.z0_resolution(pt, abseta)
    k = smear * scale
    return {"d0": d0 + k * s_d0 * z[:, 0], "z0": z0 + k * s_z0 * z[:, 1],
            "d0_err": np.where(np.isnan(d0), np.nan, s_d0),
            "z0_err": np.where(np.isnan(z0), np.nan, s_z0)}


def leading(group: NDArray[np.int64], member: NDArray[np.int64], key: Arr,
            n_groups: int) -> NDArray[np.int64]:
    """Per group (0 .. n_groups-1), the ``member`` with the largest ``key`` (-1: none);
    ``group``, ``member``, ``key``: shape (m,) (e.g. event or jet, particle index, pT)."""
    out = np.full(n_groups, -1, dtype=np.int64)
    if len(member):
        order = np.lexsort((key, group))  # by group, then key: the largest is written last
        out[group[order]] = member[order]
    return out


def take(ip: Mapping[str, Arr], idx: NDArray[np.int64]) -> dict[str, Arr]:
    """``ip`` (:data:`IP_FIELDS` -> per-particle arrays) at ``idx``, NaN where idx < 0."""
    out = {}
    for f in IP_FIELDS:
        v = ip[f]
        out[f] = (np.where(idx >= 0, v[np.maximum(idx, 0)], np.nan) if len(v)
                  else np.full(len(idx), np.nan))
    return out


def _match(objs: ak.Array, fields: tuple[str, str, str], target: list[Arr],
           field: str) -> Arr:
    """Per event, ``field`` of the object whose three momentum ``fields`` equal ``target``
    exactly (the selection copies them unchanged), NaN where none."""
    n = len(target[0])
    if field not in ak.fields(objs) or len(objs) == 0:
        return np.full(n, np.nan)
    hit = ((objs[fields[0]] == target[0]) & (objs[fields[1]] == target[1])
           & (objs[fields[2]] == target[2]))
    return np.asarray(ak.to_numpy(ak.fill_none(ak.firsts(objs[field][hit]), np.nan)),
                      dtype=np.float64)


def leg_columns(cands: Any, cols: Mapping[str, Any]) -> dict[str, Arr]:
    """The schema's ``reco_{d0,z0}[_err]_{p,m}`` columns for the legs that
    :func:`ditau.select.select` chose (``cols``: its output) from the candidates ``cands``
    (:class:`~ditau.objects.Candidates` whose leptons and taus carry :data:`IP_FIELDS`).

    Each leg is matched to the candidate it was made from by its charged momentum, which the
    selection copies unchanged: a lepton for modes e/mu, else a tau_had (its leading track).
    NaN for unpaired events and candidates without impact parameters.
    """
    out: dict[str, Arr] = {}
    for leg in ("p", "m"):
        target = [np.asarray(cols[f"reco_chg_{c}_{leg}"], dtype=np.float64)
                  for c in ("px", "py", "pz")]
        is_lep = np.isin(np.asarray(cols[f"reco_mode_{leg}"]).astype(str), ("e", "mu"))
        for f in IP_FIELDS:
            from_lep = _match(cands.leptons, ("px", "py", "pz"), target, f)
            from_tau = _match(cands.taus, ("chg_px", "chg_py", "chg_pz"), target, f)
            out[f"reco_{f}_{leg}"] = np.where(is_lep, from_lep, from_tau)
    return out
