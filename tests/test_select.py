"""Selection: triggers at their thresholds, pairing, charges, channel naming, SR cuts."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from ditau.objects import LEPTON_FIELDS, TAU_FIELDS, Candidates
from ditau.select import SelectConfig, lephad_variables, select

M_PI = 0.13957


def _p4(pt, eta, phi, m=0.0):
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + m**2)


def lepton(pt, eta=0.3, phi=0.0, charge=-1, flavour=11):
    px, py, pz, e = _p4(pt, eta, phi)
    return {"px": px, "py": py, "pz": pz, "e": e, "charge": charge, "flavour": flavour}


def tau(pt, eta=-0.4, phi=2.5, charge=1, neutral=0.0, n_tracks=1, weight=1.0, origin=0):
    """A tau candidate of visible pT ``pt``; ``neutral`` = pT fraction in one pi0 cluster."""
    cx, cy, cz, ce = _p4(pt * (1 - neutral), eta, phi, M_PI)
    nx, ny, nz, ne = _p4(pt * neutral, eta, phi, 0.135) if neutral else (0.0,) * 4
    return {"chg_px": cx, "chg_py": cy, "chg_pz": cz, "chg_e": ce, "neu_px": nx,
            "neu_py": ny, "neu_pz": nz, "neu_e": ne, "n_tracks": n_tracks,
            "n_neu": int(neutral > 0), "charge": charge, "fake_weight": weight,
            "origin": origin}


def cands(events):
    """Candidates from a list of (leptons, taus, met_xy) per event."""
    def coll(rows, fields):
        flat = [r for ev in rows for r in ev]
        counts = [len(ev) for ev in rows]
        arrays = {f: np.array([r[f] for r in flat], dtype=float) for f in fields}
        return ak.unflatten(ak.zip(arrays, depth_limit=1), counts)

    n = len(events)
    met = np.array([ev[2] for ev in events], dtype=float)
    return Candidates(
        leptons=coll([ev[0] for ev in events], LEPTON_FIELDS),
        taus=coll([ev[1] for ev in events], TAU_FIELDS),
        jets=coll([[] for _ in events], ("px", "py", "pz", "e")),
        met={"met_x": met[:, 0], "met_y": met[:, 1], "met_sumet": np.full(n, 100.0),
             "met_cov_xx": np.full(n, 25.0), "met_cov_xy": np.zeros(n),
             "met_cov_yy": np.full(n, 25.0)},
        event_id=np.arange(n))


# MET small and between the legs keeps the lep-had SR cuts (mT, sum cos dphi) satisfied.
QUIET = (1.0, 1.0)


@pytest.mark.parametrize(("t1", "t2", "fired"), [
    (35.1, 25.1, True), (34.9, 25.1, False), (35.1, 24.9, False), (60.0, 40.0, True)])
def test_ditau_trigger_thresholds(t1, t2, fired):
    c = select(cands([([], [tau(t1, charge=1), tau(t2, phi=-0.5, charge=-1)], QUIET)]))
    assert bool(c["trig_ditau"][0]) is fired
    assert bool(c["in_sr"][0]) is fired
    assert c["reco_channel"][0] == "pipi"


@pytest.mark.parametrize(("e_pt", "t_pt", "etau", "single"), [
    (17.1, 25.1, True, False), (16.9, 25.1, False, False), (17.1, 24.9, False, False),
    (26.1, 20.5, False, True), (25.9, 20.5, False, False)])
def test_etau_and_single_electron_triggers(e_pt, t_pt, etau, single):
    c = select(cands([([lepton(e_pt, phi=0.0)], [tau(t_pt, phi=2.0, neutral=0.4)], QUIET)]))
    assert bool(c["trig_etau"][0]) is etau
    assert bool(c["trig_single_e"][0]) is single
    assert bool(c["in_sr"][0]) is (etau or single)
    assert c["reco_channel"][0] == "erho"


@pytest.mark.parametrize(("mu_pt", "t_pt", "mutau", "single"), [
    (14.1, 25.1, True, False), (13.9, 25.1, False, False), (26.1, 21.0, False, True)])
def test_mutau_and_single_muon_triggers(mu_pt, t_pt, mutau, single):
    c = select(cands([([lepton(mu_pt, flavour=13, charge=1)], [tau(t_pt, charge=-1)], QUIET)]))
    assert bool(c["trig_mutau"][0]) is mutau
    assert bool(c["trig_single_mu"][0]) is single
    assert bool(c["in_sr"][0]) is (mutau or single)
    assert c["reco_channel"][0] == "mupi"
    # the mu+ fills the tau+ slot, the tau_had candidate the tau- slot
    assert c["reco_mode_p"][0] == "mu" and c["reco_mode_m"][0] == "pi"
    assert c["reco_charge_p"][0] == 1 and c["reco_charge_m"][0] == -1


def test_legs_keep_charged_and_neutral_parts_separate():
    t = tau(40.0, eta=0.5, phi=1.0, charge=-1, neutral=0.3)
    c = select(cands([([lepton(30.0, charge=1)], [t], QUIET)]))
    assert c["reco_chg_px_m"][0] == pytest.approx(t["chg_px"])
    assert c["reco_neu_e_m"][0] == pytest.approx(t["neu_e"])
    assert c["reco_n_neu_m"][0] == 1 and c["reco_mode_m"][0] == "rho"
    assert np.isnan(c["reco_neu_px_p"][0])  # a lepton has no neutral part


def test_same_sign_pairs_are_not_in_the_signal_region():
    c = select(cands([([], [tau(50.0, charge=1), tau(40.0, phi=-0.5, charge=1)], QUIET)]))
    assert c["reco_channel"][0] == "pipi" and c["trig_ditau"][0]
    assert not c["in_sr"][0]
    assert not select(cands([([], [tau(50.0, charge=1), tau(40.0, phi=-0.5, charge=1)],
                              QUIET)]), SelectConfig(opposite_charge=True))["in_sr"][0]
    assert select(cands([([], [tau(50.0, charge=1), tau(40.0, phi=-0.5, charge=1)], QUIET)]),
                  SelectConfig(opposite_charge=False))["in_sr"][0]


def test_lephad_transverse_mass_cut():
    # lepton along +x; MET along -x: mT = sqrt(2 * 30 * 40 * 2) = 69 GeV > 50 -> out
    ev_out = ([lepton(30.0, phi=0.0)], [tau(30.0, phi=2.0)], (-40.0, 0.0))
    ev_in = ([lepton(30.0, phi=0.0)], [tau(30.0, phi=2.0)], QUIET)
    c = select(cands([ev_out, ev_in]))
    mt, _ = lephad_variables(c, np.array([True, True]))
    assert mt[0] == pytest.approx(np.sqrt(2 * 30 * 40 * 2))
    assert c["in_sr"].tolist() == [False, True]


def test_object_cuts_crack_prong_and_lepton_veto():
    crack_e = ([lepton(30.0, eta=1.45)], [tau(30.0)], QUIET)  # electron in 1.37-1.52
    two_prong = ([lepton(30.0)], [tau(30.0, n_tracks=2)], QUIET)
    three_prong = ([lepton(30.0)], [tau(30.0, n_tracks=3)], QUIET)
    two_leptons = ([lepton(30.0), lepton(20.0, flavour=13, charge=1, phi=1.0)], [tau(30.0)],
                   QUIET)
    c = select(cands([crack_e, two_prong, three_prong, two_leptons]))
    assert c["reco_channel"].tolist() == ["other", "other", "other", "other"]
    assert c["reco_mode_p"][2] == "other"  # 3-prong paired, but no analysis channel
    assert not c["in_sr"].any()


def test_fake_weights_multiply_into_reco_weight():
    c = select(cands([([], [tau(50.0, charge=1, weight=0.02, origin=1),
                            tau(40.0, phi=-0.5, charge=-1, weight=0.01, origin=1)], QUIET),
                      ([lepton(30.0, charge=1)], [tau(30.0, charge=-1, weight=0.02, origin=1)],
                       QUIET)]))
    assert c["reco_weight"].tolist() == pytest.approx([2e-4, 0.02])
    assert c["reco_origin_m"].tolist() == [1, 1] and c["reco_origin_p"].tolist() == [1, 0]


def test_optional_visible_mass_window_for_lephad():
    # e and tau back to back, pT 30 each at eta 0: m_vis = 2 * 30 = 60 GeV
    ev = ([lepton(30.0, eta=0.0, phi=0.0)], [tau(30.0, eta=0.0, phi=np.pi)], QUIET)
    assert select(cands([ev]))["in_sr"][0]
    assert select(cands([ev]), SelectConfig(lephad_mvis_window=(35.0, 75.0)))["in_sr"][0]
    assert not select(cands([ev]), SelectConfig(lephad_mvis_window=(65.0, 75.0)))["in_sr"][0]
