"""Spin analysers of each tau leg: unit vectors in the tau rest frames and analysing powers.

Every event gets, for the tau+ and the tau- leg, the (k, r, n) components of an analyser unit
vector in the tau rest frame (helicity basis of :mod:`ditau.physics.helicity`) and the
analysing power kappa of that analyser *relative to that tau's spin*, so that the decay
distribution is (shared/reference/tomography.md, "Decay-angle estimators")

    (1/sigma) dsigma/dOmega+ dOmega- = (1 + kappa+ B+.h+ + kappa- B-.h- + kappa+ kappa- h+^T C h-)
                                       / (16 pi^2)

and :func:`ditau.tomography.estimators.measure` is the plain formula B = 3<h/kappa>,
C = 9<h+ h-^T/(kappa+ kappa-)>.

Analysers: the charged pion (pi), the charged lepton (e, mu), for the rho either the visible
(pi+- pi0) direction or the optimal polarimeter (Tauola; needs the neutrino). Four-momenta are
``(N, 4)`` arrays ordered ``(px, py, pz, E)`` in GeV (the schema's column order) or
scikit-hep ``vector`` arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ditau.physics import M_RHO, M_TAU, as_p4_array, mass2, momentum4
from ditau.physics.helicity import analyser_components, helicity_frame
from ditau.schema import column_array, column_names
from ditau.spin.polarimeters import polarimeter_four_vector

#: Analysing power of each analyser relative to the tau- spin (shared/reference/tomography.md,
#: "Decay-angle estimators", table). For the tau+ with the same (charge-conjugate) daughter's
#: direction the sign flips (CP: momenta flip, the spin does not), e.g. -1 for the pi+
#: direction, so that C = -9<q+ q-^T> and B+ = -3<q+> for pi+ pi-.
KAPPA: Final[dict[str, float]] = {
    # tau -> pi nu: pion direction (tomography.md table)
    "pi": 1.0,
    # tau -> rho nu, visible rho direction: (m_tau^2 - 2 m_rho^2)/(m_tau^2 + 2 m_rho^2)
    # (tomography.md table; Bullock, Hagiwara, Martin NPB 395 (1993) 499), PDG masses
    "rho_visible": (M_TAU**2 - 2 * M_RHO**2) / (M_TAU**2 + 2 * M_RHO**2),
    # tau -> rho nu, optimal polarimeter (Tauola, CPC 64 (1991) 275): |h| = 1
    "rho_polarimeter": 1.0,
    # tau -> l nu nu: charged-lepton direction, integrated over the lepton energy
    # (tomography.md table)
    "e": -1.0 / 3.0,
    "mu": -1.0 / 3.0,
}

#: Decay modes with an analyser.
SUPPORTED_MODES: Final[tuple[str, ...]] = ("pi", "rho", "e", "mu")

RhoAnalyser = Literal["visible", "polarimeter"]
Axis = Literal["collins-soper", "beam"]

_C = ("px", "py", "pz", "e")


def kappa(mode: ArrayLike, leg: Literal["p", "m"],
          rho: RhoAnalyser = "visible") -> NDArray[np.float64]:
    """Per-event analysing power relative to the spin of the ``leg`` tau (NaN if unsupported).

    ``leg="m"`` (tau-): :data:`KAPPA`; ``leg="p"`` (tau+): the sign flips
    (shared/reference/tomography.md, "Decay-angle estimators").
    """
    if rho not in ("visible", "polarimeter"):
        raise ValueError(f"rho must be 'visible' or 'polarimeter', not {rho!r}")
    if leg not in ("p", "m"):
        raise ValueError(f"leg must be 'p' or 'm', not {leg!r}")
    m = np.asarray(mode).astype(str)
    out = np.full(m.shape, np.nan)
    for name in SUPPORTED_MODES:
        key = f"rho_{rho}" if name == "rho" else name
        out[m == name] = KAPPA[key]
    # tau+ = CP conjugate of tau-: analysing power of the same analyser flips sign
    # (tomography.md "Decay-angle estimators")
    return out if leg == "m" else -out


# --- four-vector helpers


# --- per-event analysers


@dataclass(frozen=True)
class VisibleLegs:
    """Visible decay products of both legs, ``(N, 4)`` arrays ``(px, py, pz, E)``, lab frame.

    ``chg_*``: the charged pion or lepton; ``neu_*``: the neutral products (pi0 / photons),
    zero four-vectors if none. ``_p`` is the tau+ leg, ``_m`` the tau- leg.
    """

    chg_p: NDArray[np.float64]
    neu_p: NDArray[np.float64]
    chg_m: NDArray[np.float64]
    neu_m: NDArray[np.float64]

    def __post_init__(self) -> None:
        for name in ("chg_p", "neu_p", "chg_m", "neu_m"):
            object.__setattr__(self, name, as_p4_array(getattr(self, name)))
        if len({len(getattr(self, k)) for k in ("chg_p", "neu_p", "chg_m", "neu_m")}) != 1:
            raise ValueError("VisibleLegs: all four arrays need the same length")


@dataclass(frozen=True)
class Analysers:
    """Per-event spin analysers of the tau+ (``_p``) and tau- (``_m``) legs.

    ``h_p``/``h_m``: ``(N, 3)`` (k, r, n) components of the analyser unit vectors in the tau
    rest frames (NaN where invalid); ``kappa_p``/``kappa_m``: analysing powers relative to each
    tau's own spin, sign included (NaN where the mode is unsupported); ``cos_theta``: cos of the
    scattering angle in the tau-tau frame; ``valid``; ``reason``: why not valid ('' if valid).
    """

    h_p: NDArray[np.float64]
    h_m: NDArray[np.float64]
    kappa_p: NDArray[np.float64]
    kappa_m: NDArray[np.float64]
    cos_theta: NDArray[np.float64]
    valid: NDArray[np.bool_]
    reason: NDArray[np.str_]

    def __len__(self) -> int:
        return len(self.valid)

    @classmethod
    def from_truth(cls, events: Any, rho: RhoAnalyser = "visible",
                   axis: Axis = "collins-soper") -> Analysers:
        """See :func:`from_truth`."""
        return from_truth(events, rho=rho, axis=axis)

    @classmethod
    def from_reco(cls, events: Any, tau_p: ArrayLike, tau_m: ArrayLike,
                  rho: RhoAnalyser = "visible", axis: Axis = "collins-soper") -> Analysers:
        """See :func:`from_reco`."""
        return from_reco(events, tau_p, tau_m, rho=rho, axis=axis)


def analysers(tau_p: Any, tau_m: Any, vis: VisibleLegs, modes_p: ArrayLike, modes_m: ArrayLike,
              rho: RhoAnalyser = "visible", axis: Axis = "collins-soper") -> Analysers:
    """Analyser vectors and analysing powers of every event (never raises on bad events).

    ``tau_p``/``tau_m``: tau four-momenta (``(N, 4)`` or ``vector``); ``vis``: visible
    products; ``modes_*``: decay modes (pi, rho, e, mu; anything else is invalid).
    Analyser: the charged daughter's direction for pi, e, mu; for rho the visible
    (charged + neutral) direction (``rho="visible"``) or the optimal polarimeter with the
    neutrino = tau - visible (``rho="polarimeter"``). The directions are taken in each tau's
    rest frame reached from the tau-tau frame by a rotation-free boost and projected on the
    helicity basis (shared/reference/tomography.md "Helicity basis").

    Invalid events (reason, first that applies): 'non-finite tau momentum', 'tau not
    time-like' (E <= 0 or m^2 <= 0), 'tau at rest' (in the tau-tau frame: k undefined),
    'tau parallel to the beam axis' (sin Theta = 0: r, n undefined), 'unsupported decay mode
    X', 'non-finite visible momentum', 'no neutral momentum for the rho polarimeter',
    'polarimeter undefined'. Other events are unaffected.
    """
    if rho not in ("visible", "polarimeter"):
        raise ValueError(f"rho must be 'visible' or 'polarimeter', not {rho!r}")
    tp, tm = as_p4_array(tau_p), as_p4_array(tau_m)
    mode_p = np.asarray(modes_p).astype(str)
    mode_m = np.asarray(modes_m).astype(str)
    n = len(tp)
    if not (len(tm) == len(vis.chg_p) == len(mode_p) == len(mode_m) == n):
        raise ValueError("analysers: inputs of different lengths")
    reason = np.full(n, "", dtype=object)

    def flag(mask: NDArray[np.bool_], why: str) -> None:
        reason[mask & (reason == "")] = why

    with np.errstate(all="ignore"):
        finite = np.all(np.isfinite(tp), 1) & np.all(np.isfinite(tm), 1)
        flag(~finite, "non-finite tau momentum")
        timelike = ((tp[:, 3] > 0) & (tm[:, 3] > 0) & (mass2(tp) > 0)
                    & (mass2(tm) > 0))
        flag(~timelike, "tau not time-like")
        # replace bad taus by a harmless configuration so that no array op misbehaves
        ok_tau = finite & timelike
        safe_p = np.where(ok_tau[:, None], tp, [0.0, 0.0, -1.0, np.hypot(1.0, M_TAU)])
        safe_m = np.where(ok_tau[:, None], tm, [0.0, 0.0, 1.0, np.hypot(1.0, M_TAU)])
        vp, vm = momentum4(safe_p), momentum4(safe_m)
        frame = helicity_frame(vp, vm, axis=axis)
        k_star = as_p4_array(vm.boostCM_of_p4(frame.ditau))
        at_rest = np.linalg.norm(k_star[:, :3], axis=1) <= 1e-12 * np.abs(k_star[:, 3])
        flag(at_rest, "tau at rest")
        flag(~frame.valid, "tau parallel to the beam axis")
        for mode in (mode_p, mode_m):
            for bad_mode in np.unique(mode[~np.isin(mode, SUPPORTED_MODES)]):
                flag(mode == bad_mode, f"unsupported decay mode {bad_mode}")

        h: dict[str, NDArray[np.float64]] = {}
        for leg, tau, mode in (("p", safe_p, mode_p), ("m", safe_m, mode_m)):
            chg = getattr(vis, f"chg_{leg}")
            neu = getattr(vis, f"neu_{leg}")
            is_rho = mode == "rho"
            vis_ok = np.all(np.isfinite(chg), 1) & (~is_rho | np.all(np.isfinite(neu), 1))
            flag(~vis_ok, "non-finite visible momentum")
            daughter = np.where(is_rho[:, None], chg + neu, chg)
            if rho == "polarimeter":
                flag(is_rho & ~(neu[:, 3] > 0), "no neutral momentum for the rho polarimeter")
                x, _ = polarimeter_four_vector(chg, neu, tau - chg - neu, tau)
                flag(is_rho & ~np.all(np.isfinite(x), 1), "polarimeter undefined")
                daughter = np.where(is_rho[:, None], x, daughter)
            h[leg] = analyser_components(momentum4(daughter), momentum4(tau), frame)
        flag(~(np.all(np.isfinite(h["p"]), 1) & np.all(np.isfinite(h["m"]), 1)),
             "non-finite analyser direction")
    valid = reason == ""
    h_p = np.where(valid[:, None], h["p"], np.nan)
    h_m = np.where(valid[:, None], h["m"], np.nan)
    kp = np.where(valid, kappa(mode_p, "p", rho), np.nan)
    km = np.where(valid, kappa(mode_m, "m", rho), np.nan)
    cos_theta = np.where(ok_tau & ~at_rest, frame.cos_theta, np.nan)
    return Analysers(h_p, h_m, kp, km, cos_theta, valid, reason.astype(str))


# --- constructors from event tables


def _p4_columns(table: Any, prefix: str, leg: str) -> NDArray[np.float64]:
    return np.stack([column_array(table, f"{prefix}_{c}_{leg}").astype(np.float64) for c in _C],
                    axis=1)


def from_truth(events: Any, rho: RhoAnalyser = "visible",
               axis: Axis = "collins-soper") -> Analysers:
    """Truth-level analysers from an event table (pyarrow Table, pandas, dict of arrays).

    Uses the truth tau momenta ``tau_*``, the visible products ``chg_*``/``neu_*`` and the
    modes ``decay_mode_{p,m}``; the polarimeter's neutrino is tau - visible (equal to
    ``nu_*`` by four-momentum conservation).
    """
    vis = VisibleLegs(_p4_columns(events, "chg", "p"), _p4_columns(events, "neu", "p"),
                      _p4_columns(events, "chg", "m"), _p4_columns(events, "neu", "m"))
    return analysers(_p4_columns(events, "tau", "p"), _p4_columns(events, "tau", "m"), vis,
                     column_array(events, "decay_mode_p"), column_array(events, "decay_mode_m"),
                     rho=rho, axis=axis)


def from_reco(events: Any, tau_p: ArrayLike, tau_m: ArrayLike, rho: RhoAnalyser = "visible",
              axis: Axis = "collins-soper") -> Analysers:
    """Detector-level analysers: ``reco_chg_*``/``reco_neu_*``/``reco_mode_*`` columns with
    reconstructed tau four-momenta ``tau_p``/``tau_m`` (``(N, 4)``, ``(px, py, pz, E)``).

    An absent neutral cluster (NaN) counts as zero (as in ``ditau.baselines``); the
    polarimeter's neutrino is tau - visible. The ``_p`` slot is the positively charged leg;
    where ``reco_charge_{p,m}`` are present, events whose legs are not (+, -) are invalid
    ('legs not oppositely charged').
    """
    neu_p = np.nan_to_num(_p4_columns(events, "reco_neu", "p"), nan=0.0)
    neu_m = np.nan_to_num(_p4_columns(events, "reco_neu", "m"), nan=0.0)
    vis = VisibleLegs(_p4_columns(events, "reco_chg", "p"), neu_p,
                      _p4_columns(events, "reco_chg", "m"), neu_m)
    out = analysers(tau_p, tau_m, vis, column_array(events, "reco_mode_p"),
                    column_array(events, "reco_mode_m"), rho=rho, axis=axis)
    names = column_names(events)
    if "reco_charge_p" in names and "reco_charge_m" in names:
        opposite = (column_array(events, "reco_charge_p") > 0) \
            & (column_array(events, "reco_charge_m") < 0)
        bad = out.valid & ~opposite
        if np.any(bad):
            reason = out.reason.astype(object)
            reason[bad] = "legs not oppositely charged"
            valid = out.valid & ~bad
            return Analysers(np.where(valid[:, None], out.h_p, np.nan),
                             np.where(valid[:, None], out.h_m, np.nan),
                             np.where(valid, out.kappa_p, np.nan),
                             np.where(valid, out.kappa_m, np.nan), out.cos_theta, valid,
                             reason.astype(str))
    return out
