"""Target parametrisations of the ML reconstruction: what the head predicts for each event.

Two target frames (``ModelConfig.target_frame``, stored in the model file, so that inference
applies the matching inverse):

``lab`` (the default; the shipped ``ditau-cpu-v1``)
    Both legs' invisible 3-momenta, Cartesian, in the model's input frame (``frame``: lab or
    canonical), each divided by its leg's scale (x and y share one; :class:`NormStats`): 6
    targets, :data:`~ditau.ml.features.TARGETS`. The candidates are not on the tau mass shell.

``visible`` (issue #16, item 2)
    Per leg, the invisible (nu) system in the frame of that leg's visible products (the sum
    of its charged and neutral objects, as the model sees them: reconstructed ones), four
    coordinates, so 8 targets (:data:`VISIBLE_TARGETS`, tau+ leg first):

    1. ``log_p_ratio`` rho = ln(|p_nu| / |p_vis|), the longitudinal variable. For massless
       visible and nu systems |p_nu|/|p_vis| = E_nu/E_vis = (1 - x)/x with x = E_vis/E_tau
       the visible energy fraction, so rho = -logit(x): unbounded both ways, x -> 1 is
       rho -> -inf. The momentum (not the energy) is used so that E_nu = sqrt(|p_nu|^2 +
       m_nunu^2) >= m_nunu whatever is sampled. Clamped to [-:data:`RHO_MAX`, :data:`RHO_MAX`].
    2. ``cos_phi``, 3. ``sin_phi``: the azimuth phi of p_nu about the visible axis
       k = p_vis/|p_vis|, from e1 (the beam axis z projected perpendicular to k) towards
       e2 = k x e1 (:func:`visible_basis`). Circular, so encoded as (cos phi, sin phi): no
       wrap-around; the inverse takes the direction of the sampled pair (phi = atan2(sin,
       cos); (1, 0) where both vanish). The basis turns with the event about the beam axis,
       so the coordinates are invariant under those rotations (rotation augmentation, the
       canonical frame); the rotation by pi about x (reflection augmentation) maps
       phi -> phi + pi. A collinear nu (p_nu parallel to k, to 1e-9 rad) has phi = 0 by
       convention.
    4. ``m_nunu``: the nu-system mass. Leptonic legs (reco e or mu): in [0, m_tau - m_vis]
       (sampled values are clamped into it); hadronic legs: 0 (the coordinate is still a
       target, a constant given the channel, and is ignored by the inverse).

    The polar angle theta between p_nu and k follows from the tau mass shell,
    m_tau^2 = m_vis^2 + m_nunu^2 + 2 (E_vis E_nu - |p_vis| |p_nu| cos theta), so every
    candidate with a real solution has m(vis + nu) = m_tau (:data:`~ditau.physics.M_TAU`, the
    PDG 2024 1776.93 MeV through the ``particle`` package; the PDG 2022 1776.86 MeV differs by
    0.07 MeV; Pythia's record uses 1776.82 MeV). No real solution (1 - cos theta outside
    [0, 2]): theta is clamped to the nearest physical angle and the leg is flagged
    (``on_shell`` False), never NaN: theta = 0 (nu along the visible axis; m(vis + nu) >
    m_tau: |p_nu| too large for the leg, or m_vis > m_tau) or theta = pi (nu opposite to it;
    m(vis + nu) < m_tau: |p_nu| too small). Fraction of legs without a real solution,
    measured: Pythia truth (true visible products and nu, 2 400 legs;
    tests/test_ml_parametrisation.py): 0; the true coordinates with the detector-level
    visible products (327 selected events of 8 000 Pythia events through ``ditau
    detector``): 0.3 %, all with theta clamped to 0; candidates of a tiny model (300 steps
    on 1 000 events, 10 candidates; the test): 6 % for flow matching (0.3 % of pi legs, 5-7
    % of rho legs, 8-12 % of leptonic legs, nearly all theta clamped to 0: |p_nu| above the
    collinear threshold), 1 % for regression. A trained model should bring the sampled
    fraction towards the 0.3 % of the truth.

Each coordinate is standardised on its own, (c - mean)/std over the training set
(:attr:`NormStats.target_mean`, :attr:`NormStats.target_std`; :func:`compute_target_stats`).

Four-vector arithmetic is in torch (as the rest of :mod:`ditau.ml`), so the same functions run
in the training graph (float32, any device) and at inference (float64 on the host).
"""

from __future__ import annotations

import dataclasses
from typing import Final

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ditau.ml.features import (
    NU_ENERGY_COLUMNS,
    TARGETS,
    TYPES,
    Batch,
    EventArrays,
    NormStats,
    compute_stats,
)
from ditau.physics import M_TAU

#: The target frames a model can be trained in (``ModelConfig.target_frame``).
TARGET_FRAMES: Final[tuple[str, ...]] = ("lab", "visible")
#: The per-leg coordinates of the ``visible`` frame.
VISIBLE_COORDINATES: Final[tuple[str, ...]] = ("log_p_ratio", "cos_phi", "sin_phi", "m_nunu")
#: The 8 targets of the ``visible`` frame (tau+ leg, then tau- leg).
VISIBLE_TARGETS: Final[tuple[str, ...]] = tuple(
    f"nu_{c}_{leg}" for leg in ("p", "m") for c in VISIBLE_COORDINATES)
#: |rho| = |ln(|p_nu|/|p_vis|)| is clamped to this (|p_nu|/|p_vis| in [2e-9, 5e8]).
RHO_MAX: Final[float] = 20.0
_TINY: Final[float] = 1e-30
_LEPTON_TYPES: Final[tuple[int, ...]] = (TYPES.index("e"), TYPES.index("mu"))
#: Slots of each leg's objects in the point cloud: (charged, neutral) of tau+ and of tau-.
_LEG_SLOTS: Final[tuple[tuple[int, int], ...]] = ((0, 1), (2, 3))


def check_target_frame(frame: str) -> str:
    """``frame`` if it is one of :data:`TARGET_FRAMES`, else a ValueError naming them."""
    if frame not in TARGET_FRAMES:
        raise ValueError(f"target_frame must be one of {TARGET_FRAMES}, got {frame!r}")
    return frame


def target_names(frame: str) -> tuple[str, ...]:
    """The target names of ``frame``: :data:`~ditau.ml.features.TARGETS` (``lab``, 6) or
    :data:`VISIBLE_TARGETS` (``visible``, 8)."""
    return TARGETS if check_target_frame(frame) == "lab" else VISIBLE_TARGETS


def n_targets(frame: str) -> int:
    """The target dimension of ``frame`` (the head's input and output width)."""
    return len(target_names(frame))


# --------------------------------------------------------------------------------------------
# One leg: lab nu four-momentum <-> visible-frame coordinates


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1)


def visible_basis(p_vis: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The orthonormal basis (k, e1, e2), each (..., 3), of visible 3-momenta ``p_vis``
    (..., 3; GeV, lab frame or any frame rotated about the beam axis).

    k = p_vis/|p_vis|; e1 = the beam axis z projected perpendicular to k, normalised (the x
    axis instead where p_vis lies along the beam); e2 = k x e1 (right-handed).
    """
    p = p_vis.norm(dim=-1, keepdim=True)
    k = p_vis / p.clamp_min(_TINY)
    unit_z = torch.zeros_like(k)
    unit_z[..., 2] = 1.0
    unit_x = torch.zeros_like(k)
    unit_x[..., 0] = 1.0
    e1_z = unit_z - k[..., 2:3] * k  # Gram-Schmidt: z - (z.k) k
    e1_x = unit_x - k[..., 0:1] * k  # x - (x.k) k
    n_z = e1_z.norm(dim=-1, keepdim=True)
    e1 = torch.where(n_z > 1e-6, e1_z / n_z.clamp_min(_TINY),
                     e1_x / e1_x.norm(dim=-1, keepdim=True).clamp_min(_TINY))
    e2 = torch.linalg.cross(k, e1)  # e2 = k x e1
    return k, e1, e2


def nu_to_visible(vis: Tensor, nu: Tensor, leptonic: Tensor) -> Tensor:
    """Visible-frame coordinates (..., 4) = (rho, cos phi, sin phi, m_nunu) of nu systems.

    ``vis``, ``nu``: (..., 4) four-momenta (px, py, pz, E; GeV) of a leg's visible products
    and of its nu system, in the same frame (lab or rotated about the beam); ``leptonic``:
    (...,) bool, the leg's visible object is a lepton (m_nunu kept; 0 for hadronic legs).
    Definitions in the module doc. Does not need m_tau (the polar angle is not a coordinate).
    m_nunu comes from E^2 - |p|^2: use float64 (or :func:`nu_to_visible_m` with the mass).
    """
    p_nu = nu[..., :3].norm(dim=-1)
    m2 = (nu[..., 3] - p_nu) * (nu[..., 3] + p_nu)  # m^2 = (E - |p|)(E + |p|)
    return nu_to_visible_m(vis, nu[..., :3], m2.clamp_min(0.0).sqrt(), leptonic)


def nu_to_visible_m(vis: Tensor, p3: Tensor, m_nunu: Tensor, leptonic: Tensor) -> Tensor:
    """:func:`nu_to_visible` from the nu 3-momenta ``p3`` (..., 3) and masses ``m_nunu``
    (...,) (GeV), e.g. computed in float64 beforehand (training batches are float32)."""
    _, e1, e2 = visible_basis(vis[..., :3])
    p_vis = vis[..., :3].norm(dim=-1).clamp_min(_TINY)
    p_nu = p3.norm(dim=-1)
    ratio = (p_nu / p_vis).clamp(float(np.exp(-RHO_MAX)), float(np.exp(RHO_MAX)))
    rho = torch.log(ratio)  # rho = ln(|p_nu|/|p_vis|) (= -logit x for massless systems)
    a, b = _dot(p3, e1), _dot(p3, e2)  # components perpendicular to k
    perp = torch.hypot(a, b)
    has_perp = perp > 1e-9 * p_nu  # below: collinear up to rounding, phi = 0 by convention
    cos_phi = torch.where(has_perp, a / perp.clamp_min(_TINY), torch.ones_like(a))  # phi of (a, b)
    sin_phi = torch.where(has_perp, b / perp.clamp_min(_TINY), torch.zeros_like(b))
    m_nunu = torch.where(leptonic, m_nunu.clamp_min(0.0), torch.zeros_like(m_nunu))
    return torch.stack([rho, cos_phi, sin_phi, m_nunu], dim=-1)


def visible_to_nu(vis: Tensor, coords: Tensor, leptonic: Tensor,
                  m_tau: float | Tensor = M_TAU) -> tuple[Tensor, Tensor]:
    """The nu four-momenta (..., 4; GeV, the frame of ``vis``) of visible-frame coordinates
    ``coords`` (..., 4) = (rho, cos phi, sin phi, m_nunu) (not standardised), on the tau mass
    shell m(vis + nu) = ``m_tau`` (GeV; a number or (...,) per leg), and ``on_shell`` (...,)
    bool: False where no polar angle solves it (the angle is then clamped; module doc).

    ``vis``: (..., 4) the leg's visible four-momenta; ``leptonic``: (...,) bool (hadronic
    legs: m_nunu = 0 whatever ``coords`` says).
    """
    k, e1, e2 = visible_basis(vis[..., :3])
    p_vis = vis[..., :3].norm(dim=-1).clamp_min(_TINY)
    e_vis = vis[..., 3]
    m_vis2 = ((e_vis - p_vis) * (e_vis + p_vis)).clamp_min(0.0)  # m^2 = (E - |p|)(E + |p|)
    m_tau2 = m_tau * m_tau
    p_nu = p_vis * torch.exp(coords[..., 0].clamp(-RHO_MAX, RHO_MAX))  # |p_nu| = |p_vis| e^rho
    m_max = (m_tau - m_vis2.sqrt()).clamp_min(0.0)  # leptonic legs: m_nunu <= m_tau - m_vis
    m_nunu = torch.where(leptonic, torch.minimum(coords[..., 3].clamp_min(0.0), m_max),
                         torch.zeros_like(p_nu))
    e_nu = torch.sqrt(p_nu**2 + m_nunu**2)  # E_nu = sqrt(|p_nu|^2 + m_nunu^2)
    # (p_vis + p_nu)^2 = m_tau^2 (four-momentum conservation, tau on shell) expands to
    # m_tau^2 = m_vis^2 + m_nunu^2 + 2 (E_vis E_nu - |p_vis||p_nu| cos theta), rewritten with
    # E_vis E_nu - |p_vis||p_nu| = (m_vis^2 E_nu^2 + |p_vis|^2 m_nunu^2)/(E_vis E_nu +
    # |p_vis||p_nu|) (no cancellation for boosted legs): |p_vis||p_nu| (1 - cos theta) = d
    d = 0.5 * (m_tau2 - m_vis2 - m_nunu**2) - (m_vis2 * e_nu**2 + p_vis**2 * m_nunu**2) / (
        e_vis * e_nu + p_vis * p_nu).clamp_min(_TINY)
    w = d / (p_vis * p_nu).clamp_min(_TINY)  # w = 1 - cos theta
    on_shell = (w >= 0.0) & (w <= 2.0)
    w = w.clamp(0.0, 2.0)  # no real solution: the nearest physical angle (0 or pi)
    cos_t, sin_t = 1.0 - w, torch.sqrt(w * (2.0 - w))  # sin theta = sqrt((1 - c)(1 + c))
    c, s = coords[..., 1], coords[..., 2]
    r = torch.hypot(c, s)
    big = r > _TINY  # phi = atan2(s, c): the direction of the sampled pair, (1, 0) if none
    cos_phi = torch.where(big, c / r.clamp_min(_TINY), torch.ones_like(c))
    sin_phi = torch.where(big, s / r.clamp_min(_TINY), torch.zeros_like(s))
    perp = cos_phi[..., None] * e1 + sin_phi[..., None] * e2  # unit vector at azimuth phi
    # p_nu = |p_nu| (cos theta k + sin theta (cos phi e1 + sin phi e2)) (spherical coordinates)
    p3 = p_nu[..., None] * (cos_t[..., None] * k + sin_t[..., None] * perp)
    return torch.cat([p3, e_nu[..., None]], dim=-1), on_shell


# --------------------------------------------------------------------------------------------
# Events: both legs from the point cloud


def leg_visible(p4: Tensor) -> Tensor:
    """Each leg's visible four-momentum (B, 2, 4): charged + neutral object (masked slots
    are zero) of the point cloud ``p4`` (B, 7, 4), in its frame."""
    return torch.stack([p4[:, a] + p4[:, b] for a, b in _LEG_SLOTS], dim=1)


def leg_leptonic(otype: Tensor) -> Tensor:
    """(B, 2) bool: the leg's charged object is an electron or a muon (``otype`` (B, 7))."""
    chg = otype[:, [_LEG_SLOTS[0][0], _LEG_SLOTS[1][0]]]
    return (chg == _LEPTON_TYPES[0]) | (chg == _LEPTON_TYPES[1])


def visible_coordinates(p4: Tensor, otype: Tensor, nu3: Tensor, nu_mass: Tensor) -> Tensor:
    """The 8 visible-frame targets (B, 8) (:data:`VISIBLE_TARGETS`, not standardised) of
    events with point cloud ``p4`` (B, 7, 4), object types ``otype`` (B, 7), nu 3-momenta
    ``nu3`` (B, 6) (:data:`~ditau.ml.features.TARGETS`) and nu-system masses ``nu_mass``
    (B, 2) (:attr:`~ditau.ml.features.EventArrays.nu_mass`), all in one frame (GeV)."""
    return nu_to_visible_m(leg_visible(p4), nu3.reshape(-1, 2, 3), nu_mass,
                           leg_leptonic(otype)).reshape(-1, 8)


def neutrinos_from_coordinates(p4: Tensor, otype: Tensor, coords: Tensor,
                               m_tau: float | Tensor = M_TAU) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse of :func:`visible_coordinates`: nu 3-momenta (B, 6) (:data:`TARGETS` order,
    the frame of ``p4``), nu-system masses (B, 2) and ``on_shell`` (B, 2) from coordinates
    ``coords`` (B, 8) (not standardised)."""
    nu, ok = visible_to_nu(leg_visible(p4), coords.reshape(-1, 2, 4), leg_leptonic(otype),
                           m_tau)
    p_nu = nu[..., :3].norm(dim=-1)
    m2 = (nu[..., 3] - p_nu) * (nu[..., 3] + p_nu)  # m^2 = (E - |p|)(E + |p|)
    return nu[..., :3].reshape(-1, 6), m2.clamp_min(0.0).sqrt(), ok


# --------------------------------------------------------------------------------------------
# Standardisation, training targets, decoding of samples


def compute_target_stats(ev: EventArrays, target_frame: str = "lab") -> NormStats:
    """:func:`~ditau.ml.features.compute_stats` of the usable events of ``ev``, with the
    mean and standard deviation of each visible-frame coordinate for ``visible`` (float64;
    std floored at 1e-6). ``lab``: exactly :func:`~ditau.ml.features.compute_stats`."""
    stats = compute_stats(ev)
    if check_target_frame(target_frame) == "lab":
        return stats
    if ev.nu_mass is None or ev.target is None:
        raise ValueError("the visible target frame needs the truth nu energies (nu_e_p, "
                         "nu_e_m) besides the nu momenta")
    u = ev.usable
    c = visible_coordinates(torch.as_tensor(ev.p4[u], dtype=torch.float64),
                            torch.as_tensor(ev.otype[u], dtype=torch.long),
                            torch.as_tensor(ev.target[u], dtype=torch.float64),
                            torch.as_tensor(ev.nu_mass[u], dtype=torch.float64)).numpy()
    mean, std = c.mean(0), np.maximum(c.std(0), 1e-6)
    return dataclasses.replace(stats, target_mean=tuple(float(v) for v in mean),
                               target_std=tuple(float(v) for v in std))


def _moments(stats: NormStats, like: Tensor) -> tuple[Tensor, Tensor]:
    if len(stats.target_mean) != len(VISIBLE_TARGETS):
        raise ValueError("the normalisation statistics have no visible-frame moments "
                         "(computed for the lab frame?)")
    return (torch.as_tensor(stats.target_mean, dtype=like.dtype, device=like.device),
            torch.as_tensor(stats.target_std, dtype=like.dtype, device=like.device))


def standardised_targets(batch: Batch, stats: NormStats, target_frame: str,
                         scale: Tensor | None = None) -> Tensor:
    """The training targets (B, :func:`n_targets`) of ``batch`` (in its frame, after
    augmentation): ``lab``: ``batch.target / scale`` (``scale``: the (6,) divisors,
    :func:`~ditau.ml.features.target_scale`); ``visible``: the standardised coordinates."""
    if batch.target is None:
        raise ValueError("the batch has no targets")
    if check_target_frame(target_frame) == "lab":
        if scale is None:
            raise ValueError("the lab target frame needs the target scales")
        return batch.target / scale
    if batch.nu_mass is None:
        raise ValueError("the visible target frame needs the truth nu energies (nu_e_p, "
                         "nu_e_m; the nu masses) in the batch")
    c = visible_coordinates(batch.p4, batch.otype, batch.target, batch.nu_mass)
    mean, std = _moments(stats, c)
    return (c - mean) / std


def decode_visible(samples: NDArray[np.floating], p4: NDArray[np.float64],
                   otype: NDArray[np.integer], stats: NormStats,
                   m_tau: float = M_TAU) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Lab nu 3-momenta (n, K, 6) (:data:`TARGETS` order, GeV) and ``on_shell`` (n, K, 2)
    from standardised visible-frame samples (n, K, 8) of events with point cloud ``p4``
    (n, 7, 4; lab frame) and object types ``otype`` (n, 7). float64 on the host."""
    n, k, _ = samples.shape
    z = torch.as_tensor(np.asarray(samples, dtype=np.float64))
    mean, std = _moments(stats, z)
    coords = (z * std + mean).reshape(n * k, 8)
    pc = torch.as_tensor(p4, dtype=torch.float64).repeat_interleave(k, dim=0)
    ot = torch.as_tensor(otype, dtype=torch.long).repeat_interleave(k, dim=0)
    nu, _, ok = neutrinos_from_coordinates(pc, ot, coords, m_tau)
    return nu.reshape(n, k, 6).numpy(), ok.reshape(n, k, 2).numpy()


__all__ = ["NU_ENERGY_COLUMNS", "RHO_MAX", "TARGET_FRAMES", "VISIBLE_COORDINATES",
           "VISIBLE_TARGETS", "check_target_frame", "compute_target_stats", "decode_visible",
           "leg_leptonic", "leg_visible", "n_targets", "neutrinos_from_coordinates",
           "nu_to_visible", "nu_to_visible_m", "standardised_targets", "target_names",
           "visible_basis", "visible_coordinates", "visible_to_nu"]
