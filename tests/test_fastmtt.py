"""FastMTT on generated collinear Z -> tau tau events with (nearly) perfect inputs."""

from __future__ import annotations

import numpy as np
import pytest

from ditau.physics import M_Z
from ditau.reconstruct import inputs_from_table
from ditau.reconstruct.fastmtt import _pt_likelihood, fastmtt
from test_collinear import col, taus_of, ztautau_events


@pytest.mark.parametrize("modes", [("pi", "rho"), ("mu", "rho"), ("e", "mu")])
def test_perfect_inputs_peak_at_the_generated_mass(modes):
    d, taus, _ = ztautau_events(600, seed=10, modes=modes, cov=1.0)
    inp = inputs_from_table(d)
    t = fastmtt(inp, mass_correction=False)
    ok = col(t, "rec_status") == "ok"
    assert ok.all()
    m = col(t, "rec_m_tautau")[ok]
    assert abs(np.median(m) / M_Z - 1) < 0.02
    h, edges = np.histogram(m, bins=np.arange(70.0, 111.0, 2.0))
    peak = 0.5 * (edges[np.argmax(h)] + edges[np.argmax(h) + 1])
    assert abs(peak / M_Z - 1) < 0.02
    # the tau momenta themselves: per-event error of the tau+ px a few per cent (grid step)
    rel = np.abs(taus_of(t, "p")[ok, 0] / taus[0][ok, 0] - 1)
    assert np.median(rel) < 0.04


def test_events_whose_pt_terms_vanish_fall_back_to_met_times_mass():
    d, _, _ = ztautau_events(300, seed=10, modes=("pi", "rho"), cov=1.0)
    inp = inputs_from_table(d)
    strict = fastmtt(inp, pt_fallback=False)
    bad = col(strict, "rec_status") != "ok"
    assert 0 < bad.sum() < 20
    assert set(col(strict, "rec_reason")[bad]) == {"likelihood zero on the whole x grid"}
    full = fastmtt(inp)
    nopt = fastmtt(inp, pt_terms=False)
    assert set(col(full, "rec_status")) == {"ok"}
    assert np.array_equal(col(full, "rec_m_tautau")[bad], col(nopt, "rec_m_tautau")[bad])
    assert np.array_equal(col(full, "rec_m_tautau")[~bad], col(strict, "rec_m_tautau")[~bad])


def test_mass_correction_factors_of_cms():
    for modes, factor in ((("pi", "rho"), 0.98), (("e", "pi"), 1.03), (("mu", "e"), 1.03)):
        d, _, _ = ztautau_events(50, seed=11, modes=modes)
        inp = inputs_from_table(d)
        a = col(fastmtt(inp), "rec_m_tautau")
        b = col(fastmtt(inp, mass_correction=False), "rec_m_tautau")
        assert np.allclose(a, factor * b, equal_nan=True)


def test_pruned_scan_equals_the_full_scan():
    for modes in (("pi", "rho"), ("rho", "e"), ("mu", "e")):
        d, _, _ = ztautau_events(150, seed=12, modes=modes, cov=80.0)
        inp = inputs_from_table(d)
        a = fastmtt(inp)
        b = fastmtt(inp, _prune=False)
        assert a.equals(b) or np.allclose(col(a, "rec_m_tautau"), col(b, "rec_m_tautau"),
                                          equal_nan=True, rtol=0, atol=0)


def test_pt_term_is_bounded_and_guarded_near_zero():
    # the p_T term is an integral of x1^2 f/|p1|, f, x1 in [0, 1], over an x2 range <= 1
    rng = np.random.default_rng(13)
    for _ in range(2000):
        p1, p2 = rng.normal(0, 30, 2)
        pp = p1 / rng.uniform(0.01, 1) + p2 / rng.uniform(0.01, 1)
        for lep1, lep2 in ((False, False), (True, False), (False, True), (True, True)):
            v = _pt_likelihood(pp, p1, p2, 0.006, 0.1, lep1, lep2)
            assert 0 <= v <= 1.0 / abs(p1) * (1 + 1e-9)
    assert _pt_likelihood(0.3, 10.0, -12.0, 0.006, 0.006, False, False) == 0.0


def test_swapping_the_legs_swaps_the_output():
    d, _, _ = ztautau_events(200, seed=14, modes=("rho", "mu"), cov=30.0)
    s = {}
    for k, v in d.items():
        if k.endswith("_p"):
            s[k[:-2] + "_m"] = v
        elif k.endswith("_m"):
            s[k[:-2] + "_p"] = v
        else:
            s[k] = v
    a = fastmtt(inputs_from_table(d))
    b = fastmtt(inputs_from_table(s))
    assert np.allclose(col(a, "rec_m_tautau"), col(b, "rec_m_tautau"), equal_nan=True)
    assert np.allclose(taus_of(a, "p"), taus_of(b, "m"), equal_nan=True)


def test_threads_do_not_change_the_result():
    d, _, _ = ztautau_events(700, seed=15, modes=("pi", "e"), cov=50.0)
    inp = inputs_from_table(d)
    a = fastmtt(inp, threads=1)
    b = fastmtt(inp, threads=2)
    assert np.array_equal(col(a, "rec_m_tautau"), col(b, "rec_m_tautau"), equal_nan=True)


# bad inputs: every method through the same checks in tests/test_reconstruct_contract.py


def test_bad_grid_is_rejected():
    d, _, _ = ztautau_events(3, seed=17)
    with pytest.raises(ValueError, match="grid"):
        fastmtt(inputs_from_table(d), grid=1)


def test_heavy_hadronic_leg_is_clamped_to_1p5_gev_and_keeps_x_min_0p71():
    """A rho leg with a 2 GeV visible mass: clamped to 1.5 GeV (ClassicSVfit
    MeasuredTauLepton), so x_min = (1.5 / m_tau)^2 = 0.7125 for that leg. Recomputing the mass
    from the clamped four-vector used to land ~1e-10 above 1.5 in a third of the events, which
    fired the "> 1.5 GeV -> 0.3 GeV" rule and dropped x_min to (0.3 / m_tau)^2 = 0.029."""
    from ditau.physics import M_TAU
    from ditau.reconstruct.fastmtt import _clamp_mass

    n = 60
    d, _, _ = ztautau_events(n, seed=21, modes=("rho", "pi"), cov=1.0, x_range=(0.2, 0.5))
    p2 = sum(d[f"reco_chg_{c}_p"] ** 2 for c in ("px", "py", "pz"))
    d["reco_chg_e_p"] = np.sqrt(p2 + 2.0**2)  # visible mass 2 GeV
    inp = inputs_from_table(d)
    vis, m = _clamp_mass(inp.vis_p, inp.mode_p)
    assert np.all(m == 1.5)  # the clamp value itself, exactly
    recomputed = np.sqrt(vis[:, 3] ** 2 - np.sum(vis[:, :3] ** 2, axis=1))
    assert np.any(recomputed > 1.5)  # the rounding the scan must not see
    t = fastmtt(inp, mass_correction=False)
    ok = col(t, "rec_status") == "ok"
    assert ok.all()
    # x of the heavy leg = |p_vis| / |p_tau| (the tau is the clamped visible leg / x)
    x = np.sqrt(p2) / np.linalg.norm(taus_of(t, "p")[:, :3], axis=1)
    x_min = (1.5 / M_TAU) ** 2
    assert x_min == pytest.approx(0.7125, abs=1e-4)
    assert np.all(x >= x_min - 1e-9)  # never the 0.03 of the 0.3 GeV rule
    # the true x (0.2 - 0.5) is below x_min: most events sit at the first grid point above it
    assert np.median(x) == pytest.approx(0.72, abs=1e-9)
