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
boost (tomography/basis.py), the basis is the one of :func:`ditau.tomography.helicity_frame`.
Four-momenta: ``(N, 4)`` arrays ``(px, py, pz, E)`` in GeV (lab frame) or ``vector`` arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ditau.physics import momentum4, p4_from_columns
from ditau.schema import column_array, column_names
from ditau.tomography.analysers import Analysers, as_p4_array, polarimeter_four_vector
from ditau.tomography.basis import HelicityFrame, analyser_components, helicity_frame

Leg = Literal["p", "m"]
LeptonPolarimeter = Literal["exact", "direction"]

#: Modes with an exact polarimeter (lepton: only with the lepton-flavour neutrino).
EXACT_MODES: tuple[str, ...] = ("pi", "rho", "e", "mu")


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


def from_analysers(an: Analysers) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(h_p, h_m) = (kappa_p h_p, kappa_m h_m) of :class:`~ditau.tomography.Analysers`.

    Exact polarimeters for pi and for rho with ``rho="polarimeter"``; for the visible rho
    direction and the lepton direction an approximation (their kappa is an average). Invalid
    events and legs without an analyser give NaN rows.
    """
    return an.kappa_p[:, None] * an.h_p, an.kappa_m[:, None] * an.h_m
