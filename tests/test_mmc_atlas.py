"""MMC as ATLAS runs it: the TauProbability term, the MET -> -MHT switch, the jet-dependent
MET-resolution tune (DiTauMassTools MissingMassProb.cxx / MissingMassCalculatorV2.cxx) and
the adaptive scan budget."""

from __future__ import annotations

import dataclasses
import inspect
import math

import numpy as np
import pytest

from ditau.inputs import inputs_from_table
from ditau.physics import M_TAU
from ditau.reconstruct.method import make_method
from ditau.reconstruct.mmc import (
    DEFAULT_N_MET,
    LAST_RUN,
    TP_GENERIC,
    TP_HH,
    MMCSettings,
    atlas2016_met_sigma,
    mmc,
    tau_probability,
)
from test_mmc import _events


def _p4(px, py, pz, m):
    return np.array([px, py, pz, math.sqrt(px * px + py * py + pz * pz + m * m)])


def test_tau_probability_generic_value_at_a_known_point():
    # hadronic (pi) leg, massless neutrino along a nearby direction
    vis = _p4(10.0, 5.0, 20.0, 0.13957)
    nu = _p4(6.0, 3.5, 11.0, 0.0)
    # independent evaluation of MissingMassProb::TauProbability (7 arguments):
    # R = E_nu/E_vis, p0 = E1 = (m_tau^2 - m_vis^2)/(2 m_tau), V = |p_tau|/E_tau
    r = nu[3] / vis[3]
    p_tau = np.linalg.norm((vis + nu)[:3])
    v = p_tau / math.sqrt(p_tau**2 + 1.777**2)  # ATLAS's m_tau = 1.777
    p0 = (1.777**2 - 0.13957**2) / (2 * 1.777)
    expect = min(0.5 * 1.777 / (p0 * v * (1 + r) ** 2), 1.0)
    got = tau_probability("pi", vis, nu, scheme=TP_GENERIC, m_tau=1.777)
    assert got == pytest.approx(expect, rel=1e-12)
    assert got == pytest.approx(0.40987, abs=1e-5)  # the number, for the record
    # leptonic leg with m_nunu = 0.6 GeV: p0 = |p_lep| in the tau rest frame
    lep = _p4(12.0, -4.0, 7.0, 0.10566)
    nn = _p4(8.0, -2.0, 5.0, 0.6)
    e1 = (M_TAU**2 + 0.6**2 - 0.10566**2) / (2 * M_TAU)
    e2 = M_TAU - e1
    p0 = math.sqrt(e2**2 - 0.10566**2)
    pt = np.linalg.norm((lep + nn)[:3])
    v = pt / math.sqrt(pt**2 + M_TAU**2)
    expect = min(0.5 * M_TAU / (p0 * v * (1 + nn[3] / lep[3]) ** 2), 1.0)
    assert tau_probability("mu", lep, nn) == pytest.approx(expect, rel=1e-9)
    # kinematically impossible invisible mass (E1 >= m_tau): 0
    assert tau_probability("mu", lep, _p4(8.0, -2.0, 5.0, 1.7)) == 0.0


def test_tau_probability_had_had_value_at_a_known_point():
    vis = _p4(30.0, 0.0, 10.0, 0.775)
    nu = _p4(9.0, 0.5, 3.0, 0.0)
    r = np.linalg.norm(nu[:3]) / np.linalg.norm(vis[:3])
    e = (vis + nu)[3]  # 42 GeV < 100: slope scaled by 1/|pol2(E) slope|, within [1, 100]
    for lead, slope, c in ((True, -3.185, (-0.3745, 0.01417, -7.285e-5)),
                           (False, -2.052, (-0.3683, 0.01807, -9.514e-5))):
        scale = min(max(1.0 / abs((c[0] + c[1] * e + c[2] * e * e) * slope), 1.0), 100.0)
        expect = abs(slope) * scale * math.exp(slope * scale * r) * 0.04
        got = tau_probability("rho", vis, nu, scheme=TP_HH, lead=lead)
        assert got == pytest.approx(expect, rel=1e-12)


def test_settings_match_the_function_and_validate():
    fields = [f.name for f in dataclasses.fields(MMCSettings)]
    params = [p for p in inspect.signature(mmc).parameters if p not in ("inputs", "table")]
    assert fields == params
    s = MMCSettings()
    assert s.tau_probability is True and s.use_mht is False
    assert s.met_resolution == "covariance"
    for bad in ({"met_resolution": "atlas2019"}, {"max_rounds": 0}, {"stop_tol": -1.0},
                {"tau_probability": "yes"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            make_method("mmc", bad)
    assert make_method("mmc").columns == ()  # the defaults read no jets
    assert make_method("mmc", {"use_mht": True}).columns == ("jet1_px", "jet1_py")


def test_tau_probability_enters_the_weights():
    cols, _ = _events(30, ("mu", "rho"), seed=21, cov=25.0)
    inp = inputs_from_table(cols)
    on = mmc(inp, max_rounds=1)["rec_m_tautau"].to_numpy()
    off = mmc(inp, max_rounds=1, tau_probability=False)["rec_m_tautau"].to_numpy()
    assert np.all(np.isfinite(on)) and np.all(np.isfinite(off))
    assert np.mean(on != off) > 0.8


def test_atlas2016_met_sigma_spot_values():
    n = 4
    vis_p = np.array([_p4(30.0, 0.0, 0.0, 0.10566)] * n)  # mu
    phi = np.array([3.0, 3.0, 1.0, 3.0])
    vis_m = np.stack([_p4(25 * np.cos(f), 25 * np.sin(f), 0.0, 0.775) for f in phi])
    kind_p = np.array([0, 0, 0, 1])  # mu-rho x3, then a rho-rho event
    kind_m = np.array([1, 1, 1, 1])
    met = np.array([[10.0, 0.0], [30.0, 0.0], [30.0, 0.0], [30.0, 0.0]])
    sumet = np.full(n, 400.0)
    njet = np.array([0, 0, 1, 1])
    sig = atlas2016_met_sigma(kind_p, kind_m, vis_p, vis_m, met, sumet, njet)
    x = 1.0  # dphi of event 2
    xh = 3.0  # dphi of event 3
    np.testing.assert_allclose(sig, [
        5.38 + 0.32 * 20.0,  # lep-had, 0 jets, MET < 20 GeV (no subtraction for a muon)
        4.16 + 0.87 * 20.0,  # lep-had, 0 jets, MET > 20 GeV
        (1.875 + 8.914 * np.log(20.0 - 8.53)) * (0.9429 - 0.059 * x + 0.054 * x * x),
        (1.19769 + 5.61687 * np.log(20.0 - 4.2076))
        * (1.42047 - 0.666644 * xh + 0.199986 * xh * xh),
    ], rtol=1e-12)
    # an electron's pT is subtracted from sumEt
    vis_e = np.array([_p4(30.0, 0.0, 0.0, 0.000511)] * n)
    sig_e = atlas2016_met_sigma(kind_p, kind_m, vis_e, vis_m, met, sumet, njet)
    assert sig_e[0] == pytest.approx(5.38 + 0.32 * math.sqrt(370.0))


def _table(cols, jet_pt):
    n = len(cols["event_id"])
    return {**cols, "jet1_px": np.full(n, jet_pt), "jet1_py": np.zeros(n)}


def test_mht_switch_only_for_back_to_back_lep_had_without_jets():
    cols, _ = _events(20, ("mu", "pi"), seed=22, cov=25.0, back_to_back=True)
    inp = inputs_from_table(cols)
    base = mmc(inp, max_rounds=1)["rec_m_tautau"].to_numpy()
    no_jet = mmc(inp, table=_table(cols, np.nan), use_mht=True,
                 max_rounds=1)["rec_m_tautau"].to_numpy()
    with_jet = mmc(inp, table=_table(cols, 40.0), use_mht=True,
                   max_rounds=1)["rec_m_tautau"].to_numpy()
    np.testing.assert_array_equal(with_jet, base)  # Njet25 > 0: the MET is kept
    assert np.all(np.isfinite(no_jet))
    assert np.mean(no_jet != base) > 0.8  # MET -> -MHT
    with pytest.raises(ValueError, match="jet columns"):
        mmc(inp, use_mht=True)
    with pytest.raises(ValueError, match="jet columns"):
        mmc(inp, met_resolution="atlas2016")
    tuned = mmc(inp, table=_table(cols, np.nan), met_resolution="atlas2016", max_rounds=1)
    assert np.all(tuned["rec_status"].to_numpy(zero_copy_only=False) == "ok")


def test_adaptive_budget_converges_on_a_back_to_back_event():
    """A synthetic back-to-back mu-rho event (flat likelihood along the legs): the fixed
    default budget scatters with the seed, the adaptive one stays close to a 16x budget."""
    cols, _ = _events(40, ("mu", "rho"), seed=23, cov=49.0, back_to_back=True)
    inp = inputs_from_table(cols)
    ref = mmc(inp, n_met=16 * DEFAULT_N_MET, max_rounds=1, seed=100)["rec_m_tautau"].to_numpy()
    fixed = np.array([mmc(inp, max_rounds=1, seed=s)["rec_m_tautau"].to_numpy()
                      for s in range(3)])
    adaptive = np.array([mmc(inp, seed=s)["rec_m_tautau"].to_numpy() for s in range(3)])
    rounds = LAST_RUN["rounds"]
    assert rounds.max() == 4 and rounds.min() >= 1  # more rounds where needed
    d_fixed = np.median(np.abs(fixed - ref) / ref)
    d_adapt = np.median(np.abs(adaptive - ref) / ref)
    assert d_adapt < 0.8 * d_fixed
    assert d_adapt < 0.05
