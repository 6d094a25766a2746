"""Polarimeter vectors of each tau leg in its rest frame, components in the {k, r, n} basis.

The polarimeter h of a decay is defined by its differential rate for a tau with spin
(unit rest-frame vector) s: dGamma(s) = dGamma_unpol (1 + h.s), |h| <= 1 (Jadach, Kuhn, Was,
CPC 64 (1991) 275; TauSpinner, Przedzinski, Richter-Was, Was, EPJC 79 (2019) 91). So h is the
analyser direction times the analysing power *relative to that tau's spin*, sign included:
for the tau+ the charge-conjugate daughter's direction enters with the opposite sign (CP:
momenta flip, the spin does not; shared/reference/tomography.md "Decay-angle estimators").

* pi: h = -+ (pion direction), |h| = 1 (tau- / tau+; kappa(pi) = +1 for the tau-).
* rho: the optimal polarimeter of :mod:`ditau.tomography.analysers` (Tauola), |h| = 1,
  reused by import; -+ as for the pion.
* e, mu: exact: h = direction of the nubar_l (tau- -> l- nubar_l nu_tau) or minus the
  direction of the nu_l (tau+ -> l+ nu_l nubar_tau), |h| = 1: the matrix element is
  proportional to (p_tau - m_tau s).p_nubar_l (p_l.p_nu_tau) (tomography.md "What makes the
  result a measurement"). Needs the individual lepton-flavour neutrino: the truth schema
  stores it as ``nul_*`` (since 1.2.0); where it is absent or NaN (older files, Delphes
  records without it) :func:`from_truth` falls back to the labelled approximation
  h = kappa l_hat with kappa = -+1/3 (exact only for observables integrated over the lepton
  energy, i.e. without lepton-energy cuts), flagged ``exact_* = False``.
* anything else (3-prong, other modes): h = 0, labelled approximation (such a leg then
  carries no spin information; its weight factor is 1).

Frames: each tau's rest frame is reached from the tau-tau rest frame by a rotation-free
boost (ditau/physics/helicity.py), the basis is the one of :func:`ditau.tomography.helicity_frame`.
Four-momenta: ``(N, 4)`` arrays ``(px, py, pz, E)`` in GeV (lab frame) or ``vector`` arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ditau.physics import as_p4_array, momentum4, p4_from_columns, unit
from ditau.physics.helicity import HelicityFrame, analyser_components, helicity_frame
from ditau.schema import column_array, column_names

Leg = Literal["p", "m"]
LeptonPolarimeter = Literal["exact", "direction"]

#: Modes with an exact polarimeter (lepton: only with the lepton-flavour neutrino).
EXACT_MODES: tuple[str, ...] = ("pi", "rho", "e", "mu")


# --- the optimal rho polarimeter (Tauola)


def _mdot(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Minkowski product with metric (+, -, -, -) of ``(N, 4)`` rows ``(px, py, pz, E)``."""
    return a[:, 3] * b[:, 3] - np.sum(a[:, :3] * b[:, :3], axis=1)


def _to_rest_frame(p: NDArray[np.float64], frame: NDArray[np.float64]) -> NDArray[np.float64]:
    """``p`` boosted without rotation into the rest frame of ``frame`` (both ``(N, 4)``)."""
    q = momentum4(p).boostCM_of_p4(momentum4(frame))
    return as_p4_array(q)


def polarimeter_four_vector(pi_chg: ArrayLike, pi0: ArrayLike, nu: ArrayLike,
                            tau: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Light-like four-vector (in the input frame) pointing along the rho polarimeter.

    The Tauola polarimeter of tau -> pi pi0 nu (Jadach, Kuhn, Was, CPC 64 (1991) 275;
    shared/reference/tomography.md "Optimal rho polarimeter"):
    H = m_tau [2 (q.N) q - q^2 N] / [2 (q.N)(q.P) - q^2 (N.P)], q = p_pi+- - p_pi0 made
    transverse to the pi pi system as in Tauola (a 0.1 % correction for m_pi+- != m_pi0),
    N = p_nu, P = p_tau. With H_perp = H - P (H.P)/m_tau^2 (spatial part of H in the tau
    rest frame), the returned X = H_perp + P |H_perp|/m_tau has, in any tau rest frame, the
    direction of the polarimeter, so it can be treated like a daughter momentum.

    For the tau- the decay distribution is 1 + h.s (analysing power +1); for the tau+ with the
    same formula it is 1 - h.s (see :data:`KAPPA`). Returns ``(X, rate)``: ``rate`` is the
    denominator (proportional to the unpolarised matrix element squared, > 0 for physical
    kinematics); events with ``rate <= 0`` or non-finite input give NaN rows in ``X``.
    """
    p1, p2 = as_p4_array(pi_chg), as_p4_array(pi0)
    n, p = as_p4_array(nu), as_p4_array(tau)
    with np.errstate(all="ignore"):
        big_q = p1 + p2
        q = p1 - p2
        # transverse current q - Q (q.Q)/Q^2 (Tauola DAM2PI; Kuhn & Was, Acta Phys. Pol. B39)
        q = q - big_q * (_mdot(q, big_q) / _mdot(big_q, big_q))[:, None]
        qn, qp, np_ = _mdot(q, n), _mdot(q, p), _mdot(n, p)
        q2, m2 = _mdot(q, q), _mdot(p, p)
        # polarimeter numerator and denominator, Tauola CPC 64 (1991) 275 (tomography.md)
        num = 2.0 * qn[:, None] * q - q2[:, None] * n
        rate = 2.0 * qn * qp - q2 * np_
        h = np.sqrt(m2)[:, None] * num / rate[:, None]
        # remove the component along P: rest-frame spatial part of h
        h_perp = h - p * (_mdot(h, p) / m2)[:, None]
        size = np.sqrt(np.clip(-_mdot(h_perp, h_perp), 0.0, None))
        x = h_perp + p * (size / np.sqrt(m2))[:, None]
    bad = ~(np.isfinite(rate) & (rate > 0) & (m2 > 0) & (size > 0)
            & np.all(np.isfinite(x), axis=1))
    x[bad] = np.nan
    return x, rate


def optimal_rho_polarimeter(pi_chg: ArrayLike, pi0: ArrayLike, nu: ArrayLike,
                            tau: ArrayLike) -> NDArray[np.float64]:
    """Unit rho polarimeter h (``(N, 3)``) in the tau rest frame.

    Inputs are ``(N, 4)`` lab-frame four-momenta; the rest frame is reached from the input
    frame by a rotation-free boost (for a tau at rest: the input frame itself). Formula:
    :func:`polarimeter_four_vector` (Tauola, CPC 64 (1991) 275). NaN rows where undefined.
    """
    x, _ = polarimeter_four_vector(pi_chg, pi0, nu, tau)
    with np.errstate(all="ignore"):
        return unit(_to_rest_frame(x, as_p4_array(tau))[:, :3])



# --- polarimeters per leg


def _sign(leg: Leg) -> float:
    """+1 for the tau- (kappa of the tau- daughter), -1 for the tau+ (tomography.md)."""
    if leg not in ("p", "m"):
        raise ValueError(f"leg must be 'p' or 'm', not {leg!r}")
    return 1.0 if leg == "m" else -1.0


def _components(daughter: ArrayLike, tau: ArrayLike, frame: HelicityFrame
                ) -> NDArray[np.float64]:
    return analyser_components(momentum4(as_p4_array(daughter)), momentum4(as_p4_array(tau)),
                               frame)


def _columns(table: Any, prefix: str, leg: str) -> NDArray[np.float64]:
    return as_p4_array(p4_from_columns(table, prefix, f"_{leg}"))


def pion_polarimeter(pion: ArrayLike, tau: ArrayLike, frame: HelicityFrame,
                     leg: Leg) -> NDArray[np.float64]:
    """tau -> pi nu: h = +-(pion unit direction) in the tau rest frame, ``(N, 3)`` (k, r, n).

    dGamma ~ 1 + s.q_hat for the tau- and 1 - s.q_hat for the tau+ (tomography.md table,
    kappa(pi) = 1). ``pion``, ``tau``: lab four-momenta ``(N, 4)``.
    """
    return _sign(leg) * _components(pion, tau, frame)


def rho_polarimeter(pi_chg: ArrayLike, pi0: ArrayLike, nu: ArrayLike, tau: ArrayLike,
                    frame: HelicityFrame, leg: Leg) -> NDArray[np.float64]:
    """tau -> pi pi0 nu: the optimal (Tauola) polarimeter, |h| = 1, ``(N, 3)`` (k, r, n).

    :func:`ditau.tomography.analysers.polarimeter_four_vector` (Jadach, Kuhn, Was, CPC 64
    (1991) 275) gives the direction with dGamma ~ 1 + h.s for the tau-; for the tau+ the sign
    flips. NaN rows where the polarimeter is undefined.
    """
    x, _ = polarimeter_four_vector(pi_chg, pi0, nu, tau)
    return _sign(leg) * _components(x, tau, frame)


def lepton_polarimeter(nu_lepton: ArrayLike, tau: ArrayLike, frame: HelicityFrame,
                       leg: Leg) -> NDArray[np.float64]:
    """tau -> l nu nu, exact: h = +-(unit direction of the lepton-flavour neutrino), |h| = 1.

    tau- -> l- nubar_l nu_tau: |M|^2 ~ (p_tau - m s).p_nubar_l (p_l.p_nu_tau), i.e.
    1 + s.n(nubar_l) in the tau rest frame; tau+ -> l+ nu_l nubar_tau: 1 - s.n(nu_l)
    (tomography.md "What makes the result a measurement"). ``nu_lepton``: the nubar_l (tau-)
    or nu_l (tau+) lab four-momentum ``(N, 4)``.
    """
    return _sign(leg) * _components(nu_lepton, tau, frame)


@dataclass(frozen=True)
class Polarimeters:
    """Per-event polarimeters of both legs (components k, r, n in each tau rest frame).

    ``h_p``/``h_m``: ``(N, 3)``, relative to each tau's own spin (sign included), zero for
    legs without a polarimeter, NaN where the frame or the polarimeter is undefined;
    ``exact_p``/``exact_m``: True where h is the exact polarimeter (pi, rho, lepton with its
    neutrino), False where it is an approximation (lepton direction x -+1/3, or h = 0);
    ``cos_theta``: cos Theta of the frame (N,); ``frame``: the :class:`HelicityFrame`.
    """

    h_p: NDArray[np.float64]
    h_m: NDArray[np.float64]
    exact_p: NDArray[np.bool_]
    exact_m: NDArray[np.bool_]
    cos_theta: NDArray[np.float64]
    frame: HelicityFrame

    def __len__(self) -> int:
        return len(self.h_p)


def polarimeters(tau_p: ArrayLike, tau_m: ArrayLike, chg_p: ArrayLike, neu_p: ArrayLike,
                 chg_m: ArrayLike, neu_m: ArrayLike, modes_p: ArrayLike, modes_m: ArrayLike,
                 nu_lep_p: ArrayLike | None = None, nu_lep_m: ArrayLike | None = None,
                 axis: Literal["collins-soper", "beam"] = "collins-soper",
                 lepton: LeptonPolarimeter | Literal["auto"] = "exact") -> Polarimeters:
    """Polarimeters of every event from lab four-momenta ``(N, 4)`` and decay modes.

    ``chg_*``: charged pion or lepton; ``neu_*``: neutral products (pi0 for the rho);
    ``nu_lep_*``: the lepton-flavour neutrino of a leptonic leg (nu_l for the tau+, nubar_l
    for the tau-; rows of non-leptonic legs are ignored). The rho's neutrino is
    tau - chg - neu. Leptonic legs: ``lepton="exact"`` needs ``nu_lep_*`` (else ValueError);
    ``lepton="direction"`` uses -+1/3 x lepton direction (approximation, see module doc);
    ``lepton="auto"``: exact for the rows whose ``nu_lep_*`` is finite, the direction
    elsewhere. Modes other than pi, rho, e, mu get h = 0.
    """
    if lepton not in ("exact", "direction", "auto"):
        raise ValueError(f"lepton must be 'exact', 'direction' or 'auto', not {lepton!r}")
    tp, tm = as_p4_array(tau_p), as_p4_array(tau_m)
    frame = helicity_frame(momentum4(tp), momentum4(tm), axis=axis)
    out: dict[str, tuple[NDArray[np.float64], NDArray[np.bool_]]] = {}
    for leg, tau, chg, neu, modes, nu_lep in (("p", tp, chg_p, neu_p, modes_p, nu_lep_p),
                                              ("m", tm, chg_m, neu_m, modes_m, nu_lep_m)):
        c, n = as_p4_array(chg), as_p4_array(neu)
        mode = np.asarray(modes).astype(str)
        h = np.zeros((len(tp), 3))
        exact = np.zeros(len(tp), dtype=bool)
        with np.errstate(all="ignore"):
            is_pi, is_rho = mode == "pi", mode == "rho"
            is_lep = np.isin(mode, ("e", "mu"))
            if np.any(is_pi):
                h[is_pi] = pion_polarimeter(c, tau, frame, leg)[is_pi]  # type: ignore[arg-type]
            if np.any(is_rho):
                h[is_rho] = rho_polarimeter(c, n, tau - c - n, tau, frame,
                                            leg)[is_rho]  # type: ignore[arg-type]
            exact |= is_pi | is_rho
            if np.any(is_lep):
                if lepton == "exact" and nu_lep is None:
                    raise ValueError(f"lepton='exact' needs nu_lep_{leg} for the leptonic "
                                     f"legs (the lepton-flavour neutrino)")
                with_nu = np.zeros(len(tp), dtype=bool)
                if lepton != "direction" and nu_lep is not None:
                    nl = as_p4_array(nu_lep)
                    with_nu = is_lep & (np.all(np.isfinite(nl), axis=1) | (lepton == "exact"))
                    if np.any(with_nu):
                        h[with_nu] = lepton_polarimeter(nl, tau, frame,
                                                        leg)[with_nu]  # type: ignore[arg-type]
                    exact |= with_nu
                approx = is_lep & ~with_nu
                if np.any(approx):
                    # lepton direction with kappa = -1/3 (tau-), +1/3 (tau+): tomography.md table
                    h[approx] = (-_sign(leg) / 3.0  # type: ignore[arg-type]
                                 * _components(c, tau, frame))[approx]
        h[~frame.valid] = np.nan
        out[leg] = (h, exact)
    return Polarimeters(out["p"][0], out["m"][0], out["p"][1], out["m"][1], frame.cos_theta,
                        frame)


def from_truth(events: Any, axis: Literal["collins-soper", "beam"] = "collins-soper",
               lepton: LeptonPolarimeter | None = None) -> Polarimeters:
    """Truth polarimeters from an event table (pyarrow Table, pandas, dict of arrays).

    Columns: ``tau_*``, ``chg_*``, ``neu_*``, ``decay_mode_{p,m}`` and, where present, the
    lepton-flavour neutrino ``nul_{px,py,pz,e}_{p,m}`` (schema 1.2.0). ``lepton=None``: the
    exact lepton polarimeter for the rows where ``nul_*`` is finite (``exact_*`` True), the
    direction approximation elsewhere (files without the columns: everywhere); 'exact' needs
    the columns (NaN rows give NaN), 'direction' ignores them.
    """
    names = column_names(events)
    has_nul = all(f"nul_{c}_{leg}" in names for c in ("px", "py", "pz", "e") for leg in "pm")
    mode = lepton or ("auto" if has_nul else "direction")
    nul = ((_columns(events, "nul", "p"), _columns(events, "nul", "m"))
           if has_nul else (None, None))
    return polarimeters(_columns(events, "tau", "p"), _columns(events, "tau", "m"),
                        _columns(events, "chg", "p"), _columns(events, "neu", "p"),
                        _columns(events, "chg", "m"), _columns(events, "neu", "m"),
                        column_array(events, "decay_mode_p"),
                        column_array(events, "decay_mode_m"), nul[0], nul[1], axis=axis,
                        lepton=mode)


def from_analysers(an: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(h_p, h_m) = (kappa_p h_p, kappa_m h_m) of analysers ``an`` with ``h_p``/``h_m`` (N, 3)
    and ``kappa_p``/``kappa_m`` (N,) (:class:`ditau.tomography.Analysers`).

    Exact polarimeters for pi and for rho with ``rho="polarimeter"``; for the visible rho
    direction and the lepton direction an approximation (their kappa is an average). Invalid
    events and legs without an analyser give NaN rows.
    """
    return an.kappa_p[:, None] * an.h_p, an.kappa_m[:, None] * an.h_m
