"""Event selection: object cuts, pairing, channel assignment, triggers and the signal region.

Input: :class:`ditau.objects.Candidates` (from the parametric detector or the
Delphes reader). Output: the schema's ``reco`` columns. Thresholds are the reference analysis
(shared/seeds/001, trigger slide: HLT_tau35_tau25, HLT_e17_tau25 || HLT_e26, HLT_mu14_tau25 ||
HLT_mu26), applied to the offline objects (trigger efficiencies are taken as a step function at
the offline threshold: a labelled simplification).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import awkward as ak
import numpy as np
from numpy.typing import NDArray

from ditau.config import StageConfig
from ditau.objects import Candidates
from ditau.physics import channel_of, delta_phi, delta_r, mass, pt_eta

#: Channels with one lepton and one tau_had, and with two tau_had.
LEPHAD: Final[tuple[str, ...]] = ("epi", "mupi", "erho", "murho")
HADHAD: Final[tuple[str, ...]] = ("pipi", "pirho", "rhorho")


@dataclass(frozen=True)
class SelectConfig(StageConfig):
    """Object and event selection (GeV, radians). Defaults: the reference analysis."""

    config_name = "select config"

    #: Offline lepton thresholds (ATLAS Z -> tau tau, PRD 84 (2011) 112006, Sec. IV): leptons
    #: above them count (and veto) in the channel assignment.
    e_pt_min: float = 15.0
    mu_pt_min: float = 10.0
    e_eta_max: float = 2.47
    mu_eta_max: float = 2.5
    #: ATLAS barrel/end-cap calorimeter transition, excluded for electrons and taus.
    crack: tuple[float, float] = (1.37, 1.52)
    #: tau_had candidates (ATLAS tau ID acceptance: pT > 20 GeV, |eta| < 2.5, 1 or 3 tracks).
    tau_pt_min: float = 20.0
    tau_eta_max: float = 2.5
    #: Overlap removal: a tau candidate this close to a selected lepton is dropped; jets this
    #: close to a selected lepton or tau are dropped.
    dr_tau_lepton: float = 0.2
    dr_jet: float = 0.4
    jet_pt_min: float = 20.0
    jet_eta_max: float = 4.5
    #: Triggers (reference trigger slide, offline thresholds).
    ditau_trigger: tuple[float, float] = (35.0, 25.0)
    etau_trigger: tuple[float, float] = (17.0, 25.0)
    mutau_trigger: tuple[float, float] = (14.0, 25.0)
    single_e_trigger: float = 26.0
    single_mu_trigger: float = 26.0
    #: Signal region, lep-had only (ATLAS Z -> tau tau, PRD 84 (2011) 112006, Sec. V): the
    #: lepton-MET transverse mass suppresses W + jets; sum cos(dphi) > cut keeps MET between
    #: the two visible legs. None disables a cut.
    lephad_mt_max: float | None = 50.0
    lephad_sum_cos_dphi_min: float | None = -0.15
    #: Optional visible-mass window for lep-had (ATLAS PRD 84 (2011) 112006: 35-75 GeV); it
    #: removes Z -> ll with a lepton faking the tau (m_vis ~ m_Z) but also cuts the signal's
    #: m_vis spectrum, so it is off by default (the reference lists no such cut).
    lephad_mvis_window: tuple[float, float] | None = None
    opposite_charge: bool = True


def _not_in_crack(eta: Any, crack: tuple[float, float]) -> Any:
    a = abs(eta)
    return (a < crack[0]) | (a > crack[1])


def _lead(arr: ak.Array, k: int, field: str) -> NDArray[np.float64]:
    """Field of the k-th object of each event (NaN if absent)."""
    padded = ak.pad_none(arr[field], k + 1, axis=1)[:, k]
    return ak.to_numpy(ak.fill_none(padded, np.nan)).astype(np.float64)


def _min_dr(objs: ak.Array, ref_px: NDArray, ref_py: NDArray, ref_pz: NDArray,
            fx: str = "px", fy: str = "py", fz: str = "pz") -> ak.Array:
    """Per object, Delta R to the event's reference direction (inf where it is absent)."""
    dr = delta_r(objs[fx], objs[fy], objs[fz], ref_px, ref_py, ref_pz)
    return ak.fill_none(ak.nan_to_none(dr), np.inf)


def select(cands: Candidates, config: SelectConfig | None = None) -> dict[str, NDArray]:
    """The schema's ``reco`` columns (plus ``reco_weight``, ``reco_origin_*``) for ``cands``."""
    cfg = config or SelectConfig()
    n = len(cands)

    # --- objects ---------------------------------------------------------------------------
    lep = cands.leptons
    lpt, leta = pt_eta(lep.px, lep.py, lep.pz)
    is_e = lep.flavour == 11
    lep_ok = ak.where(
        is_e,
        (lpt > cfg.e_pt_min) & (abs(leta) < cfg.e_eta_max) & _not_in_crack(leta, cfg.crack),
        (lpt > cfg.mu_pt_min) & (abs(leta) < cfg.mu_eta_max),
    )
    lep = lep[lep_ok]
    n_lep = ak.to_numpy(ak.num(lep)).astype(np.int64)

    tau = cands.taus
    vis = {c: tau[f"chg_{c}"] + tau[f"neu_{c}"] for c in ("px", "py", "pz", "e")}
    tpt, teta = pt_eta(vis["px"], vis["py"], vis["pz"])
    tau_ok = ((tpt > cfg.tau_pt_min) & (abs(teta) < cfg.tau_eta_max)
              & _not_in_crack(teta, cfg.crack)
              & ((tau.n_tracks == 1) | (tau.n_tracks == 3)) & (abs(tau.charge) == 1))
    # Overlap removal against the leading selected lepton.
    l1 = {c: _lead(lep, 0, c) for c in ("px", "py", "pz")}
    tau = ak.with_field(tau, vis["px"], "vis_px")
    tau = ak.with_field(tau, vis["py"], "vis_py")
    tau = ak.with_field(tau, vis["pz"], "vis_pz")
    tau = ak.with_field(tau, vis["e"], "vis_e")
    tau_ok = tau_ok & (_min_dr(tau, l1["px"], l1["py"], l1["pz"], "vis_px", "vis_py", "vis_pz")
                       > cfg.dr_tau_lepton)
    tau = tau[tau_ok]
    n_tau = ak.to_numpy(ak.num(tau)).astype(np.int64)

    lephad = (n_lep == 1) & (n_tau >= 1)
    hadhad = (n_lep == 0) & (n_tau >= 2)

    # --- the two legs: A = lepton or leading tau, B = (next) tau -------------------------------
    def leg_from_tau(k: int) -> dict[str, NDArray]:
        out = {f"chg_{c}": _lead(tau, k, f"chg_{c}") for c in ("px", "py", "pz", "e")}
        out.update({f"neu_{c}": _lead(tau, k, f"neu_{c}") for c in ("px", "py", "pz", "e")})
        nt, nn = _lead(tau, k, "n_tracks"), _lead(tau, k, "n_neu")
        mode = np.full(n, "other", dtype=object)
        mode[(nt == 1) & (nn == 0)] = "pi"
        mode[(nt == 1) & (nn == 1)] = "rho"
        out["mode"] = mode
        out["n_neu"] = np.nan_to_num(nn)
        no_neu = ~(nn > 0)
        for c in ("px", "py", "pz", "e"):
            out[f"neu_{c}"] = np.where(no_neu, np.nan, out[f"neu_{c}"])
        out["charge"] = _lead(tau, k, "charge")
        out["weight"] = _lead(tau, k, "fake_weight")
        out["origin"] = _lead(tau, k, "origin")
        return out

    def leg_from_lepton() -> dict[str, NDArray]:
        out = {f"chg_{c}": _lead(lep, 0, c) for c in ("px", "py", "pz", "e")}
        out.update({f"neu_{c}": np.full(n, np.nan) for c in ("px", "py", "pz", "e")})
        fl = _lead(lep, 0, "flavour")
        out["mode"] = np.where(fl == 11, "e", np.where(fl == 13, "mu", "other")).astype(object)
        out["n_neu"] = np.zeros(n)
        out["charge"] = _lead(lep, 0, "charge")
        out["weight"] = np.ones(n)
        out["origin"] = np.zeros(n)
        return out

    t0, t1, lp = leg_from_tau(0), leg_from_tau(1), leg_from_lepton()
    a = {k: np.where(lephad, lp[k], t0[k]) for k in t0}
    b = {k: np.where(lephad, t0[k], t1[k]) for k in t0}
    paired = lephad | hadhad
    # Leg slots by measured charge: _p = positive. Same-sign pairs: A fills its own slot.
    a_is_p = ~(a["charge"] < 0)
    legs = {"p": {k: np.where(a_is_p, a[k], b[k]) for k in a},
            "m": {k: np.where(a_is_p, b[k], a[k]) for k in a}}

    cols: dict[str, NDArray] = {}
    for leg, v in legs.items():
        for c in ("px", "py", "pz", "e"):
            cols[f"reco_chg_{c}_{leg}"] = np.where(paired, v[f"chg_{c}"], np.nan)
            cols[f"reco_neu_{c}_{leg}"] = np.where(paired, v[f"neu_{c}"], np.nan)
        cols[f"reco_mode_{leg}"] = np.where(paired, v["mode"], "other").astype(object)
        cols[f"reco_charge_{leg}"] = np.where(paired, v["charge"], 0).astype(np.int8)
        cols[f"reco_n_neu_{leg}"] = np.where(paired, v["n_neu"], 0).astype(np.int8)
        cols[f"reco_origin_{leg}"] = np.where(paired, v["origin"], 0).astype(np.int8)
    cols["reco_weight"] = np.where(paired, a["weight"] * b["weight"], 1.0)
    channel = channel_of(cols["reco_mode_p"], cols["reco_mode_m"]).astype(object)
    channel[~paired] = "other"
    cols["reco_channel"] = channel

    # --- jets (overlap-removed against the two legs) -----------------------------------------
    jets = cands.jets
    jpt, jeta = pt_eta(jets.px, jets.py, jets.pz)
    jok = (jpt > cfg.jet_pt_min) & (abs(jeta) < cfg.jet_eta_max)
    for leg in ("p", "m"):
        vx = np.nan_to_num(cols[f"reco_chg_px_{leg}"]) + np.nan_to_num(cols[f"reco_neu_px_{leg}"])
        vy = np.nan_to_num(cols[f"reco_chg_py_{leg}"]) + np.nan_to_num(cols[f"reco_neu_py_{leg}"])
        vz = np.nan_to_num(cols[f"reco_chg_pz_{leg}"]) + np.nan_to_num(cols[f"reco_neu_pz_{leg}"])
        has = paired & (np.hypot(vx, vy) > 0)
        dr = _min_dr(jets, np.where(has, vx, np.nan), np.where(has, vy, np.nan),
                     np.where(has, vz, np.nan))
        jok = jok & (dr > cfg.dr_jet)
    jets = jets[jok]
    cols["n_jets"] = ak.to_numpy(ak.num(jets)).astype(np.int8)
    for j in range(3):
        for c in ("px", "py", "pz", "e"):
            cols[f"jet{j + 1}_{c}"] = _lead(jets, j, c)

    for f, v in cands.met.items():
        cols[f] = np.asarray(v, dtype=np.float64)

    # --- triggers (on the selected objects) -------------------------------------------------
    lpt_sel = np.hypot(lep.px, lep.py)
    e_pt = ak.to_numpy(ak.fill_none(ak.max(ak.where(lep.flavour == 11, lpt_sel, 0.0), axis=1),
                                    0.0))
    mu_pt = ak.to_numpy(ak.fill_none(ak.max(ak.where(lep.flavour == 13, lpt_sel, 0.0), axis=1),
                                     0.0))
    tau_pt = np.hypot(tau.vis_px, tau.vis_py)
    tau1 = np.nan_to_num(ak.to_numpy(ak.fill_none(ak.pad_none(tau_pt, 2, axis=1)[:, 0], 0.0)))
    tau2 = np.nan_to_num(ak.to_numpy(ak.fill_none(ak.pad_none(tau_pt, 2, axis=1)[:, 1], 0.0)))
    cols["trig_ditau"] = (tau1 > cfg.ditau_trigger[0]) & (tau2 > cfg.ditau_trigger[1])
    cols["trig_etau"] = (e_pt > cfg.etau_trigger[0]) & (tau1 > cfg.etau_trigger[1])
    cols["trig_mutau"] = (mu_pt > cfg.mutau_trigger[0]) & (tau1 > cfg.mutau_trigger[1])
    cols["trig_single_e"] = e_pt > cfg.single_e_trigger
    cols["trig_single_mu"] = mu_pt > cfg.single_mu_trigger

    # --- signal region ---------------------------------------------------------------------
    in_sr = np.isin(channel.astype(str), HADHAD + LEPHAD)
    if cfg.opposite_charge:
        in_sr &= cols["reco_charge_p"].astype(int) * cols["reco_charge_m"].astype(int) == -1
    is_e = np.char.startswith(channel.astype(str), "e")
    is_mu = np.char.startswith(channel.astype(str), "mu")
    trig = np.where(hadhad, cols["trig_ditau"],
                    np.where(is_e, cols["trig_etau"] | cols["trig_single_e"],
                             np.where(is_mu, cols["trig_mutau"] | cols["trig_single_mu"],
                                      False)))
    in_sr &= trig
    mt, scd = lephad_variables(cols, lephad)
    if cfg.lephad_mt_max is not None:
        in_sr &= ~lephad | (mt < cfg.lephad_mt_max)
    if cfg.lephad_sum_cos_dphi_min is not None:
        in_sr &= ~lephad | (scd > cfg.lephad_sum_cos_dphi_min)
    if cfg.lephad_mvis_window is not None:
        vis = [np.nan_to_num(cols[f"reco_chg_{c}_p"]) + np.nan_to_num(cols[f"reco_neu_{c}_p"])
               + np.nan_to_num(cols[f"reco_chg_{c}_m"]) + np.nan_to_num(cols[f"reco_neu_{c}_m"])
               for c in ("px", "py", "pz", "e")]
        m_vis = mass(np.stack(vis, axis=-1))
        lo, hi = cfg.lephad_mvis_window
        in_sr &= ~lephad | ((m_vis > lo) & (m_vis < hi))
    cols["in_sr"] = in_sr
    return cols


def lephad_variables(cols: dict[str, NDArray], lephad: NDArray[np.bool_]
                     ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Lepton-MET transverse mass and sum of cos(dphi(leg, MET)) (ATLAS PRD 84 (2011) 112006).

    m_T = sqrt(2 pT_l MET (1 - cos dphi)); the lepton is the leg with a lepton mode.
    """
    def phi_pt(leg: str) -> tuple[NDArray, NDArray]:
        px = cols[f"reco_chg_px_{leg}"] + np.nan_to_num(cols[f"reco_neu_px_{leg}"])
        py = cols[f"reco_chg_py_{leg}"] + np.nan_to_num(cols[f"reco_neu_py_{leg}"])
        return np.arctan2(py, px), np.hypot(px, py)

    met = np.hypot(cols["met_x"], cols["met_y"])
    mphi = np.arctan2(cols["met_y"], cols["met_x"])
    (phi_p, pt_p), (phi_m, pt_m) = phi_pt("p"), phi_pt("m")
    lep_is_p = np.isin(cols["reco_mode_p"].astype(str), ("e", "mu"))
    lphi, lpt = np.where(lep_is_p, phi_p, phi_m), np.where(lep_is_p, pt_p, pt_m)
    # m_T = sqrt(2 pT(l) MET (1 - cos dphi)) (ATLAS W/Z selections, e.g. EPJC 77 (2017) 367)
    mt = np.sqrt(np.maximum(2 * lpt * met * (1 - np.cos(delta_phi(lphi, mphi))), 0.0))
    scd = np.cos(phi_p - mphi) + np.cos(phi_m - mphi)
    return np.where(lephad, mt, np.nan), np.where(lephad, scd, np.nan)
