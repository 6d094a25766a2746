"""Collinear approximation on hand-built events with exactly collinear decays.

Also home of :func:`ztautau_events`, the event builder the FastMTT and driver tests share.
"""

from __future__ import annotations

import numpy as np
import pytest

from ditau.physics import M_TAU, M_Z, mass
from ditau.reconstruct import INPUT_COLUMNS, inputs_from_table
from ditau.reconstruct.collinear import collinear, collinear_x
from ditau.reconstruct.fastmtt import fastmtt

VIS_MASS = {"pi": 0.13957, "rho": 0.775, "e": 0.000511, "mu": 0.10566}


def _boost(p4, beta):
    b2 = np.sum(beta**2, axis=1)
    g = 1.0 / np.sqrt(1.0 - b2)
    bp = np.sum(beta * p4[:, :3], axis=1)
    g2 = np.where(b2 > 0, (g - 1.0) / np.where(b2 > 0, b2, 1.0), 0.0)
    p = p4[:, :3] + (g2 * bp + g * p4[:, 3])[:, None] * beta
    return np.column_stack([p, g * (p4[:, 3] + bp)])


def ztautau_events(n, seed=1, modes=("pi", "pi"), exact=False, m=M_Z, cov=1.0, m_tau=M_TAU,
                   x_range=(0.15, 0.95)):
    """Taus from a boosted resonance of mass ``m``, decayed collinearly with random x.

    vis = x tau in 3-momentum (``exact``: the whole four-vector, visible mass x m_tau; else
    the visible mass of the mode); MET = sum (1 - x) tau_T exactly; MET covariance ``cov`` 1.
    Returns the input-column dict, the true taus (tau+, tau-) and the true x (x+, x-).
    """
    rng = np.random.default_rng(seed)
    pz = rng.normal(0, 60, n)
    pt = rng.normal(0, 25, (n, 2))
    mom = np.column_stack([pt, pz])
    beta = mom / np.sqrt(m**2 + np.sum(mom**2, 1))[:, None]
    c = rng.uniform(-1, 1, n)
    ph = rng.uniform(0, 2 * np.pi, n)
    s = np.sqrt(1 - c**2)
    pst = np.sqrt(m**2 / 4 - m_tau**2)
    d = np.column_stack([s * np.cos(ph), s * np.sin(ph), c]) * pst
    taus = [_boost(np.column_stack([sign * d, np.full(n, m / 2)]), beta) for sign in (1, -1)]
    out = {"event_id": np.arange(n, dtype=np.int64)}
    met = np.zeros((n, 2))
    xs = []
    for leg, t, mode in (("p", taus[0], modes[0]), ("m", taus[1], modes[1])):
        x = rng.uniform(*x_range, n)
        vis = t * x[:, None]
        if not exact:
            vis[:, 3] = np.sqrt(np.sum(vis[:, :3] ** 2, 1) + VIS_MASS[mode] ** 2)
        met += (1 - x)[:, None] * t[:, :2]
        xs.append(x)
        for j, comp in enumerate(("px", "py", "pz", "e")):
            out[f"reco_chg_{comp}_{leg}"] = vis[:, j].copy()
            out[f"reco_neu_{comp}_{leg}"] = np.full(n, np.nan)
        out[f"reco_mode_{leg}"] = np.full(n, mode)
    out["met_x"], out["met_y"] = met[:, 0].copy(), met[:, 1].copy()
    out["met_sumet"] = np.full(n, 100.0)
    out["met_cov_xx"] = np.full(n, float(cov))
    out["met_cov_yy"] = np.full(n, float(cov))
    out["met_cov_xy"] = np.zeros(n)
    assert set(out) == set(INPUT_COLUMNS)
    return out, taus, xs


def col(t, name):
    return t[name].to_numpy(zero_copy_only=False)


def taus_of(t, leg):
    return np.column_stack([col(t, f"rec_tau_{c}_{leg}") for c in ("px", "py", "pz", "e")])


def test_recovers_taus_and_mass_of_exactly_collinear_decays():
    d, taus, xs = ztautau_events(500, seed=2, exact=True)
    inp = inputs_from_table(d)
    x1, x2, _ = collinear_x(inp)
    assert np.allclose(x1, xs[0], rtol=1e-9)
    assert np.allclose(x2, xs[1], rtol=1e-9)
    t = collinear(inp)
    assert set(col(t, "rec_status")) == {"ok"}
    assert np.allclose(taus_of(t, "p"), taus[0], rtol=1e-9, atol=1e-9)
    assert np.allclose(taus_of(t, "m"), taus[1], rtol=1e-9, atol=1e-9)
    assert np.allclose(col(t, "rec_m_tautau"), M_Z, rtol=1e-9)
    # neutrinos = tau - visible
    assert np.allclose(col(t, "rec_nu_px_p"), (1 - xs[0]) * taus[0][:, 0], atol=1e-9)


def test_mass_is_m_vis_over_sqrt_x1_x2_for_massless_legs():
    d, _, xs = ztautau_events(200, seed=3, exact=True, m_tau=0.0)
    inp = inputs_from_table(d)
    t = collinear(inp)
    m_vis = mass(inp.vis_p + inp.vis_m)
    # m_coll = m_vis / sqrt(x1 x2) (baselines.md §1)
    assert np.allclose(col(t, "rec_m_tautau"), m_vis / np.sqrt(xs[0] * xs[1]), rtol=1e-9)
    assert np.allclose(col(t, "rec_m_tautau"), M_Z, rtol=1e-9)


def test_back_to_back_legs_have_no_solution_but_fastmtt_answers():
    d, _, _ = ztautau_events(6, seed=4)
    # event 2: legs back-to-back in the transverse plane at a generic azimuth
    phi = 0.7
    for leg, sign, pt in (("p", 1.0, 35.0), ("m", -1.0, 28.0)):
        d[f"reco_chg_px_{leg}"][2] = sign * pt * np.cos(phi)
        d[f"reco_chg_py_{leg}"][2] = sign * pt * np.sin(phi)
        d[f"reco_chg_pz_{leg}"][2] = 10.0 * sign
        d[f"reco_chg_e_{leg}"][2] = np.hypot(pt, 10.0)
    d["met_x"][2] = 12.0 * np.cos(phi) + 0.5
    d["met_y"][2] = 12.0 * np.sin(phi) - 0.3
    d["met_cov_xx"][:] = d["met_cov_yy"][:] = 50.0
    inp = inputs_from_table(d)
    t = collinear(inp)
    status = list(col(t, "rec_status"))
    assert status[2] == "no_solution"
    assert col(t, "rec_reason")[2].startswith("back-to-back legs")
    assert np.isnan(col(t, "rec_m_tautau")[2])
    assert status.count("ok") == 5
    f = fastmtt(inp)
    assert col(f, "rec_status")[2] == "ok"
    assert 50 < col(f, "rec_m_tautau")[2] < 200


def test_unphysical_x_is_no_solution_with_the_reason():
    d, _, _ = ztautau_events(4, seed=5, exact=True)
    d["met_x"][1], d["met_y"][1] = -d["met_x"][1] * 3, -d["met_y"][1] * 3  # x > 1 somewhere
    inp = inputs_from_table(d)
    x1, _, _ = collinear_x(inp)
    t = collinear(inp)
    assert col(t, "rec_status")[1] == "no_solution"
    which = "x1" if not 0 < x1[1] <= 1 else "x2"
    assert col(t, "rec_reason")[1] == f"{which} outside (0, 1]"
    assert list(col(t, "rec_status")[[0, 2, 3]]) == ["ok"] * 3


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("met_x", np.nan, "MET is not finite"),
    ("met_cov_yy", -1.0, "MET covariance"),
    ("reco_mode_m", "other", "tau- leg: decay mode"),
    ("reco_chg_px_p", 0.0, "tau+ leg: visible momentum missing or zero pT"),
])
def test_bad_inputs_fail_without_touching_other_events(column, value, reason):
    d, _, _ = ztautau_events(5, seed=6, exact=True)
    ref = collinear(inputs_from_table(d))
    d[column] = d[column].astype(object if isinstance(value, str) else float)
    d[column][3] = value
    if column == "reco_chg_px_p":
        d["reco_chg_py_p"][3] = 0.0
    t = collinear(inputs_from_table(d))
    assert col(t, "rec_status")[3] == "failed"
    assert col(t, "rec_reason")[3].startswith(reason)
    keep = [0, 1, 2, 4]
    assert np.array_equal(col(t, "rec_m_tautau")[keep], col(ref, "rec_m_tautau")[keep])
    assert list(col(t, "rec_status")[keep]) == ["ok"] * 4
