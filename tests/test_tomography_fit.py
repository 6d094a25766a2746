"""The profile-likelihood fit of the spin state: templates are exactly linear in (B, C), the
Barlow-Beeston-lite profile is the per-bin optimum, and fits to toy detector data recover the
state, its witness D and the separable / Bell tests."""

import numpy as np
import pytest

from ditau.spin import SpinState, decay_density
from ditau.tomography import quantum
from ditau.tomography.fit import (
    FIT_NAMES,
    SpinLikelihood,
    Variation,
    fit,
    from_theta,
    impacts,
    to_theta,
)
from ditau.tomography.templates import basis_weights, bin_index, build_templates, histogram

CH = ("pipi", "rhorho")
SM_LIKE = SpinState.constant([-0.2, 0.0, 0.0], [-0.2, 0.0, 0.0],
                             [[1.0, 0.1, 0.0], [0.1, -0.95, 0.0], [0.0, 0.0, 0.95]])


def _theta(st):
    return np.concatenate([st.B_p, st.B_m, st.C.ravel()])


def _toy(n, seed, smear=0.5):
    """Unpolarised tau pairs: truth polarimeters (pi-like, |h| = 1) and measured analysers
    (the truth direction smeared and renormalised), two channels."""
    rng = np.random.default_rng(seed)

    def sphere():
        v = rng.normal(size=(n, 3))
        return v / np.linalg.norm(v, axis=1)[:, None]

    hp, hm = sphere(), sphere()
    ap = hp + smear * rng.normal(size=(n, 3))
    am = hm + smear * rng.normal(size=(n, 3))
    ap /= np.linalg.norm(ap, axis=1)[:, None]
    am /= np.linalg.norm(am, axis=1)[:, None]
    ch = np.where(rng.random(n) < 0.5, "pipi", "rhorho")
    _toy.analysers = (ap, am)  # the measured analysers of the last toy (moment fits)
    return hp, hm, bin_index(ap, am), ch


def _sm_inputs(n, seed):
    """Fit inputs of ``n`` toy events (:func:`_toy`) in the constant SM-like state, 0.01 events
    per fb^-1 each, m_tautau = 91 GeV; returns (SpinInputs, event ids)."""
    from ditau.tomography.measurement import SPLIT_MOD, SpinInputs

    hp, hm, b, ch = _toy(n, seed)
    ap, am = _toy.analysers
    st = SpinState(np.broadcast_to(SM_LIKE.B_p, (n, 3)), np.broadcast_to(SM_LIKE.B_m, (n, 3)),
                   np.broadcast_to(SM_LIKE.C, (n, 3, 3)))
    u = np.full(n, 0.01)
    ids = np.arange(n)
    return SpinInputs(u, hp, hm, b, ch, st, u * decay_density(hp, hm, SM_LIKE),
                      np.full(n, 91.0), ids % SPLIT_MOD, ap, am), ids


def test_templates_reproduce_the_reweighted_histogram_for_any_state():
    hp, hm, b, ch = _toy(20000, 1)
    w = np.random.default_rng(2).uniform(0.5, 1.5, len(hp))
    tm = build_templates(w, hp, hm, b, ch, CH)
    for st in (SM_LIKE, SpinState.unpolarised(),
               SpinState.constant([0.3, -0.1, 0.2], [0, 0.1, 0], np.diag([1.0, 0, 0]))):
        direct = histogram(w * decay_density(hp, hm, st), b, ch, CH)
        np.testing.assert_allclose(tm.predict(_theta(st)), direct, rtol=1e-10, atol=1e-9)


def test_basis_and_bins():
    assert basis_weights(np.ones((1, 3)), 2 * np.ones((1, 3))).tolist() == [
        [1, 1, 1, 1, 2, 2, 2] + [2] * 9]
    # six signs -> 64 bins; a NaN row is not histogrammed
    b = bin_index([[0.5, -0.5, 0.5], [np.nan, 0, 0]], [[-0.5, 0.5, 0.5], [0, 0, 0]])
    assert b[1] == -1 and 0 <= b[0] < 64
    assert bin_index([[-1, -1, -1]], [[-1, -1, -1]])[0] == 0
    assert bin_index([[1, 1, 1]], [[1, 1, 1]], bins=3)[0] == 3**6 - 1


def test_witness_parameterisation_round_trips():
    theta = _theta(SM_LIKE)
    p = from_theta(theta)
    assert p[FIT_NAMES.index("D")] == pytest.approx(quantum.witness_d(SM_LIKE.C))
    np.testing.assert_allclose(to_theta(p), theta)


def test_barlow_beeston_profile_is_the_per_bin_optimum():
    from scipy.optimize import minimize_scalar

    V = np.zeros((3, 16))
    V[:, 0] = [10.0, 5.0, 2.0]
    nll = SpinLikelihood(V, [14.0, 3.0, 0.0], 1.0, rel_mc=[0.1, 0.3, 0.5], lumi_unc=0,
                         bkg_unc=0)
    p = np.zeros(len(nll.names))
    total = 0.0
    for nu, n, d in zip([10.0, 5.0, 2.0], [14.0, 3.0, 0.0], [0.1, 0.3, 0.5], strict=True):
        def f(g, nu=nu, n=n, d=d):
            return g * nu - n + (n * np.log(n / (g * nu)) if n else 0) + 0.5 * (g - 1) ** 2 / d**2

        total += minimize_scalar(f, bounds=(1e-6, 5), method="bounded",
                                 options={"xatol": 1e-10}).fun
    assert nll(p) == pytest.approx(total, rel=1e-6)


@pytest.fixture(scope="module")
def toy_templates():
    hp, hm, b, ch = _toy(200000, 3)
    return build_templates(np.full(len(hp), 0.05), hp, hm, b, ch, CH,
                           reference=_theta(SM_LIKE))


@pytest.mark.parametrize("state, entangled", [(SM_LIKE, True),
                                              (SpinState.constant([0, 0, 0], [0, 0, 0],
                                                                  np.zeros((3, 3))), False)])
def test_fit_recovers_the_state_of_independent_pseudo_data(toy_templates, state, entangled):
    hp, hm, b, ch = _toy(40000, 4)
    data = histogram(np.full(len(hp), 0.05 * 5) * decay_density(hp, hm, state), b, ch, CH)
    L = 1.0 / 0.25  # the pseudo-data's own statistics: weight 0.25 per fb^-1
    rng = np.random.default_rng(5)
    r = fit(SpinLikelihood(toy_templates.values, rng.poisson(data * L), L,
                           toy_templates.rel_mc_error), n_toys=300)
    assert r.valid
    pulls = (r.theta - _theta(state)) / r.errors
    assert np.max(np.abs(pulls)) < 4.0, pulls
    if entangled:
        assert r.d > 1 / 3 and r.z_entanglement > 5 and r.z_bell > 2
        # the profile-likelihood Z of D agrees with the Gaussian (D - 1/3)/sigma_D
        assert r.z_entanglement == pytest.approx((r.d - 1 / 3) / r.d_err, rel=0.25)
    else:
        assert r.z_entanglement < 2.0 and r.z_bell == 0.0


def test_mc_statistics_and_systematics_widen_the_error(toy_templates):
    hp, hm, b, ch = _toy(40000, 6)
    data = histogram(np.full(len(hp), 0.25) * decay_density(hp, hm, SM_LIKE), b, ch, CH)
    up = toy_templates.values * 1.02  # a 2 % normalisation-like shift
    nll = SpinLikelihood(toy_templates.values, data * 100.0, 100.0, toy_templates.rel_mc_error,
                         variations={"scale": Variation(up)})
    r = fit(nll, tests=False)
    rows = dict((k, v) for k, v, _ in impacts(nll, r))
    assert rows["MC statistics (templates)"] > 0
    assert rows["data statistics"] < r.d_err
    # statistics and sources add up in quadrature to no more than the total
    assert rows["data statistics"] ** 2 + rows["MC statistics (templates)"] ** 2 \
        <= r.d_err**2 * 1.05


def test_bad_likelihood_input_is_named():
    with pytest.raises(ValueError, match="different numbers of bins"):
        SpinLikelihood(np.ones((3, 16)), [1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="luminosity"):
        SpinLikelihood(np.ones((2, 16)), [1.0, 2.0], 0.0)
    with pytest.raises(ValueError, match=">= 0"):
        SpinLikelihood(np.ones((2, 16)), [1.0, -2.0], 1.0)


def test_moment_templates_of_candidate_averaged_observables_stay_exact():
    """--candidate-average: the events' observables averaged over K analyser candidates are
    still linear in the state, so the templates reproduce the reweighted sums exactly; and
    obs equal to the analysers' own observables is the same as giving the analysers."""
    from ditau.tomography.moments import build_moment_templates, moment_data, observables

    hp, hm, _, ch = _toy(3000, 17)
    ap, am = _toy.analysers
    w = np.random.default_rng(18).uniform(0.5, 1.5, len(hp))
    same = build_moment_templates(w, hp, hm, ap, am, ch, CH, obs=observables(ap, am))
    plain = build_moment_templates(w, hp, hm, ap, am, ch, CH)
    for c in CH:
        np.testing.assert_allclose(same.R[c], plain.R[c], rtol=1e-12)
    rng = np.random.default_rng(19)
    cands = []
    for _ in range(4):  # four smeared copies of each event's analysers
        cp, cm = ap + 0.3 * rng.normal(size=ap.shape), am + 0.3 * rng.normal(size=am.shape)
        cands.append(observables(cp / np.linalg.norm(cp, axis=1)[:, None],
                                 cm / np.linalg.norm(cm, axis=1)[:, None]))
    avg = np.mean(cands, axis=0)
    avg[5] = np.nan  # an event without a valid average is left out, not propagated
    mt = build_moment_templates(w, hp, hm, ap, am, ch, CH, obs=avg)
    assert sum(mt.n_events.values()) == len(hp) - 1
    for st in (SM_LIKE, SpinState.unpolarised()):
        md = moment_data(w * decay_density(hp, hm, st), ap, am, ch, CH, obs=avg)
        ref = moment_data(w * decay_density(hp, hm, st), ap, am, ch, CH)
        for c in CH:
            pred = mt.R[c] @ np.concatenate([[1.0], _theta(st)])
            np.testing.assert_allclose(pred, md.m[c], rtol=1e-10, atol=1e-8)
            assert np.all(np.isfinite(md.m[c])) and not np.allclose(md.m[c], ref.m[c])


def test_moment_templates_reproduce_the_reweighted_moment_sums():
    from ditau.tomography.moments import build_moment_templates, moment_data

    hp, hm, _, ch = _toy(5000, 7)
    ap, am = _toy.analysers
    w = np.random.default_rng(8).uniform(0.5, 1.5, len(hp))
    mt = build_moment_templates(w, hp, hm, ap, am, ch, CH)
    for st in (SM_LIKE, SpinState.unpolarised()):
        md = moment_data(w * decay_density(hp, hm, st), ap, am, ch, CH)
        for c in CH:
            np.testing.assert_allclose(mt.R[c] @ np.concatenate([[1.0], _theta(st)]), md.m[c],
                                       rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("state, entangled", [(SM_LIKE, True),
                                              (SpinState.constant([0, 0, 0], [0, 0, 0],
                                                                  np.diag([1.0, 0, 0])), False)])
def test_moment_fit_recovers_the_state_of_independent_pseudo_data(state, entangled):
    from ditau.tomography.moments import MomentLikelihood, build_moment_templates, moment_data

    hp, hm, _, ch = _toy(100000, 9)
    ap, am = _toy.analysers
    mt = build_moment_templates(np.full(len(hp), 0.1), hp, hm, ap, am, ch, CH)
    hp, hm, _, ch = _toy(20000, 10)
    ap, am = _toy.analysers
    w = 0.5 * decay_density(hp, hm, state)
    L = float(w.sum() / np.sum(w**2))
    r = fit(MomentLikelihood(mt, moment_data(w, ap, am, ch, CH), L, data_var="sample"),
            n_toys=300)
    assert r.valid
    pulls = (r.theta - _theta(state)) / r.errors
    assert np.max(np.abs(pulls)) < 4.0, pulls
    if entangled:
        assert r.z_entanglement > 5 and r.z_bell > 2
    else:  # on the separable boundary D = 1/3: no significant entanglement, m12 = 1
        assert r.z_entanglement < 2.5 and r.z_bell < 2.5


def test_truth_level_of_a_spin_weighted_sample_uses_the_weights():
    """Regression: the inclusive truth level of a ``--spin weights`` sample read unweighted
    gave the unpolarised C = 0 (D = 0.009 on 120k events)."""
    from ditau.tomography.analysers import Analysers
    from ditau.tomography.run import _truth_inclusive

    hp, hm, _, _ = _toy(40000, 11)
    n = len(hp)
    an = Analysers(hp, hm, np.ones(n), np.ones(n), np.zeros(n), np.ones(n, bool),
                   np.full(n, ""))
    w = decay_density(hp, hm, SM_LIKE)
    obs = _truth_inclusive(an, np.ones(n, bool), w)["observables"]
    np.testing.assert_allclose(np.diag(obs.C), [1.0, -0.95, 0.95], atol=0.1)
    assert abs(_truth_inclusive(an, np.ones(n, bool), np.ones(n))["observables"].C[0, 0]) < 0.1


@pytest.mark.parametrize("background", [{}, {"pipi": 40.0, "rhorho": 80.0}])
def test_measurement_closes_on_a_toy_and_calls_separable_states_separable(monkeypatch,
                                                                         background):
    """measure_method end to end on toy events (truth polarimeters, smeared measured
    analysers, an SM-like constant state): the Asimov fit returns the state, and the closure
    fits on both splits recover D and call no separable state entangled."""
    import ditau.tomography.measurement as meas
    from ditau.tomography.measurement import SPLIT_MOD, measure_method

    monkeypatch.setattr(meas, "LUMIS", (140.0,))  # one point of the significance curves

    x, ids = _sm_inputs(33000, 12)
    # (background: SR events per fb^-1 per channel; the toy signal has ~150 per channel; the
    # Asimov and pseudo-data include it, so the fitted state must not move)
    out = measure_method("truth", x, ids % SPLIT_MOD, CH, background, {}, None, lumi=140.0,
                         seed=1)
    a = out.fits["split 0, ours yields, Asimov"]
    d_true = quantum.witness_d(SM_LIKE.C)
    assert a.valid and abs(a.d - d_true) < 1e-3 and a.z_entanglement > 5
    assert {"split 0, ours yields", "split 1, ours yields"} <= set(out.fits)
    rows = {r.name: r for r in out.closure}
    assert len(rows) == 2 * 6  # five states and the 80-100 GeV bin (m = 91 GeV) per split
    for split in (0, 1):
        for state in ("unpolarised decays", "separable", "classical diag(1,0,0)"):
            r = rows[f"split {split}: {state}"]
            assert r.result.z_entanglement < 2.0, (split, state)
        sm = rows[f"split {split}: sm"]
        assert abs(sm.result.d - sm.truth_d) < 3 * sm.result.d_err
        assert np.nanmax(np.abs(sm.pulls)) < 4.0


def test_report_marks_unreliable_fits_and_says_why_closure_is_empty():
    from ditau.tomography.fit import FitResult
    from ditau.tomography.fit_report import fit_lines, lumi_for
    from ditau.tomography.measurement import SpinFit

    good = FitResult(np.zeros(15), np.eye(15) * 0.01, 0.8, 0.1, {}, 0.0, True, 3.0, 2.0,
                     params=np.zeros(18))
    bound = FitResult(np.zeros(15), np.eye(15) * 0.01, 0.8, 0.1, {}, 0.0, True, 9.0, 9.0,
                      params=np.r_[np.zeros(14), 2.0, np.zeros(3)])
    assert good.reliable and not bound.reliable and "bound" in bound.problem
    f = SpinFit("mmc", fits={"split 0, ours yields, Asimov": bound,
                             "split 0, ours yields": good},
                closure_note="split 0: skipped, 16 pseudo-data events, 50 needed")
    md = "\n".join(fit_lines({"mmc": f}))
    assert "at the ±2 parameter bound" in md and "9.0" not in md
    assert "- mmc, closure tests: split 0: skipped, 16 pseudo-data events, 50 needed" in md
    # the binned (signs) likelihood's description keeps its MC-statistics clause
    signs = SpinFit("mmc", fits=f.fits, observable="signs", n_bins=40)
    assert ("of the six measured analyser components per channel (40 non-empty bins); "
            "template MC statistics (Barlow–Beeston lite") in "\n".join(fit_lines({"mmc": signs}))
    # no impacts: said, not an empty table
    assert "None: no method has a reliable Asimov fit." in md
    # a curve whose low-luminosity points are missing (unreliable fits) gives no interpolation
    # from NaN
    assert lumi_for((np.array([1.0, 10.0]), np.array([np.nan, 6.0]),
                     np.array([np.nan, 1.0]))) == (10.0, float("inf"))


def test_constant_closure_states_are_physical():
    from ditau.tomography.measurement import CLOSURE_STATES

    conc = {}
    for name, st in CLOSURE_STATES.items():
        if st is not None:
            assert quantum.is_physical(st.density_matrix()), name
            conc[name] = quantum.concurrence(st.density_matrix())
    assert conc["non-SM entangled"] == pytest.approx(0.54, abs=0.01)
    assert conc["classical diag(1,0,0)"] == 0.0 and conc["unpolarised decays"] == 0.0


def test_background_with_its_own_analyser_shape_is_not_read_as_spin_correlation():
    """A background whose measured analysers are aligned (a- = a+: fake C_ii > 0, half the
    signal's yield) added to SM-like pseudo-data: fitted with its own moments the state is
    recovered; fitted as the signal's unpolarised shape (the old approximation) the alignment
    is read as spin correlation and C moves by many sigma."""
    from ditau.tomography.moments import MomentLikelihood, build_moment_templates, moment_data

    hp, hm, _, ch = _toy(100000, 21)
    ap, am = _toy.analysers
    mt = build_moment_templates(np.full(len(hp), 0.01), hp, hm, ap, am, ch, CH)
    hp, hm, _, ch = _toy(100000, 22)
    ap, am = _toy.analysers
    sig = moment_data(0.01 * decay_density(hp, hm, SM_LIKE), ap, am, ch, CH)
    _, _, _, bch = _toy(50000, 23)
    bp, _ = _toy.analysers
    bkg = moment_data(np.full(len(bp), 0.01), bp, bp, bch, CH)
    data = type(sig)({c: sig.m[c] + bkg.m[c] for c in CH}, sig.S1, sig.S2)
    yields = {c: float(bkg.m[c][0]) for c in CH}
    truth = _theta(SM_LIKE)
    own = fit(MomentLikelihood(mt, data, 20.0, background=bkg), n_toys=100)
    t0 = fit(MomentLikelihood(mt, data, 20.0, background=yields), n_toys=100)
    assert own.valid and t0.valid
    diag = [6, 10, 14]  # C_kk, C_rr, C_nn
    pull_own = (own.theta - truth) / own.errors
    pull_t0 = (t0.theta - truth) / t0.errors
    assert np.max(np.abs(pull_own)) < 4.0, pull_own
    assert np.max(pull_t0[diag]) > 6.0, pull_t0[diag]


def test_t0_background_is_the_unpolarised_signal_shape():
    from ditau.tomography.moments import build_moment_templates, t0_background

    hp, hm, _, ch = _toy(5000, 24)
    ap, am = _toy.analysers
    mt = build_moment_templates(np.full(len(hp), 0.1), hp, hm, ap, am, ch, CH)
    b = t0_background(mt, {"pipi": 10.0})
    assert set(b.m) == {"pipi"} and b.m["pipi"][0] == pytest.approx(10.0)
    np.testing.assert_allclose(b.m["pipi"] / 10.0, mt.R["pipi"][:, 0] / mt.R["pipi"][0, 0])
    assert not b.S2["pipi"].any()  # no MC statistics of a shape taken from the signal


def test_measurement_with_background_events_fits_and_scales_them(monkeypatch):
    """measure_method with BackgroundInputs (moments and signs): the Asimov fit returns the
    state exactly (the background in the data is the one in the model), and the reference-
    yields fit scales the background with the signal."""
    import ditau.tomography.measurement as meas
    from ditau.tomography.measurement import (
        SPLIT_MOD,
        BackgroundInputs,
        Observable,
        measure_method,
    )

    monkeypatch.setattr(meas, "LUMIS", (140.0,))
    x, ids = _sm_inputs(22000, 25)
    _, _, _, bch = _toy(4000, 26)
    bp, _ = _toy.analysers
    bkg = BackgroundInputs(np.full(len(bp), 0.01), bp, bp, bin_index(bp, bp), bch,
                           np.full(len(bp), "zll"))
    assert bkg.yields(CH)["pipi"] == pytest.approx(0.01 * np.sum(bch == "pipi"))
    for kind in ("moments", "signs"):
        out = measure_method("truth", x, ids % SPLIT_MOD, CH, bkg, {},
                             {"pipi": 2.0, "rhorho": 0.5}, lumi=140.0, closure=False,
                             seed=1, observable=kind)
        for y in ("ours", "reference"):
            a = out.fits[f"split 0, {y} yields, Asimov"]
            assert a.valid and abs(a.d - quantum.witness_d(SM_LIKE.C)) < 2e-3, (kind, y, a.d)
    obs = Observable("moments", CH)
    tm = obs.templates(x, np.ones(len(ids), bool), 1.0, _theta(SM_LIKE))
    own = obs.background(tm, bkg)
    ref = obs.scaled_background(tm, own, {"pipi": 2.0, "rhorho": 0.5})
    np.testing.assert_allclose(ref.m["pipi"], 2.0 * own.m["pipi"])
    np.testing.assert_allclose(ref.S2["rhorho"], 0.25 * own.S2["rhorho"])


def test_neutrino_sampling_spread_is_reported_and_below_the_statistical_error(monkeypatch):
    """Other draws of the measured analysers of the same events (a generative method's other
    noise seeds): the pseudo-data fit redone per draw; an identical draw gives the identical
    fit, independent draws a spread of D below one fit's sigma_D (the sampling noise is
    inside the statistics), and the report shows it."""
    import ditau.tomography.measurement as meas
    from ditau.tomography.fit_report import fit_lines
    from ditau.tomography.measurement import SPLIT_MOD, SpinInputs, measure_method

    monkeypatch.setattr(meas, "LUMIS", (140.0,))
    hp, hm, _, ch = _toy(22000, 31)
    n = len(hp)
    st = SpinState(np.broadcast_to(SM_LIKE.B_p, (n, 3)), np.broadcast_to(SM_LIKE.B_m, (n, 3)),
                   np.broadcast_to(SM_LIKE.C, (n, 3, 3)))
    u = np.full(n, 0.01)
    ids = np.arange(n)
    rng = np.random.default_rng(32)

    def draw():
        a = [h + 0.5 * rng.normal(size=(n, 3)) for h in (hp, hm)]
        ap, am = (v / np.linalg.norm(v, axis=1)[:, None] for v in a)
        return SpinInputs(u, hp, hm, bin_index(ap, am), ch, st,
                          u * decay_density(hp, hm, SM_LIKE), np.full(n, 91.0),
                          ids % SPLIT_MOD, ap, am)

    x = draw()
    same = measure_method("truth", x, ids % SPLIT_MOD, CH, {}, {}, None, closure=False,
                          resampled=(x,))
    assert len(same.sampling) == 2 and same.sampling[0] == same.sampling[1]
    out = measure_method("ml", x, ids % SPLIT_MOD, CH, {}, {}, None, closure=False,
                         resampled=tuple(draw() for _ in range(3)))
    a = np.array(out.sampling)
    assert len(a) == 4 and np.all(np.isfinite(a))
    assert 0 < a[:, 0].std(ddof=1) < a[:, 1].mean()
    assert "Neutrino sampling" in "\n".join(fit_lines({"ml": out}))


def test_a_sample_without_a_channel_of_enough_template_events_is_not_fitted(monkeypatch):
    """Regression (the demo's 4 000 events): with no channel at MIN_CHANNEL_EVENTS the
    likelihood had no bins and every fit read "did not converge (HESSE failed)", with a 5σ
    luminosity "> 3000"; now it is not fitted, says why, and makes no luminosity claim."""
    import ditau.tomography.fit as fit_module
    from ditau.tomography.fit_report import fit_lines
    from ditau.tomography.measurement import SpinFit
    from ditau.tomography.moments import (
        MIN_CHANNEL_EVENTS,
        MomentLikelihood,
        build_moment_templates,
        moment_data,
    )

    hp, hm, _, ch = _toy(70, 11)  # about 35 per channel
    ap, am = _toy.analysers
    n_rr = int(np.sum(ch == "rhorho"))
    assert max(n_rr, 70 - n_rr) < MIN_CHANNEL_EVENTS
    mt = build_moment_templates(np.full(len(hp), 0.1), hp, hm, ap, am, ch, CH)
    nll = MomentLikelihood(mt, moment_data(np.full(len(hp), 0.1), ap, am, ch, CH), 140.0)
    assert nll.n_bins == 0
    top, n_top = ("rhorho", n_rr) if n_rr >= 70 - n_rr else ("pipi", 70 - n_rr)
    assert nll.empty_reason == (f"no channel has the {MIN_CHANNEL_EVENTS} template events "
                                f"the fit needs (largest: {top} with {n_top})")
    monkeypatch.setattr(fit_module, "_minuit", lambda *a, **k: pytest.fail("MIGRAD ran"))
    r = fit(nll)
    assert not r.valid and not r.reliable and r.not_run == nll.empty_reason
    assert r.problem == f"not fitted: {nll.empty_reason}"
    assert np.all(np.isnan(r.theta)) and np.isnan(r.d)
    # a sample with enough events in one channel is fitted as before
    hp, hm, _, ch = _toy(400, 12)
    ap, am = _toy.analysers
    mt = build_moment_templates(np.full(len(hp), 0.1), hp, hm, ap, am, ch, CH)
    assert MomentLikelihood(mt, moment_data(np.full(len(hp), 0.1), ap, am, ch, CH),
                            140.0).empty_reason == ""
    # the report: the reason once, no "HESSE failed", no 5σ luminosity
    curve = (np.array([10.0, 140.0]), np.full(2, np.nan), np.full(2, np.nan))
    f = SpinFit("ml", fits={"split 0, ours yields": r, "split 0, ours yields, Asimov": r},
                curves={"ours, Asimov": curve})
    md = "\n".join(fit_lines({"ml": f}))
    assert "HESSE" not in md and "> 3000" not in md
    assert f"- ml, not fitted: {nll.empty_reason}" in md
    assert "| ml | ours | not fitted | – | not fitted | – | – | – |" in md
    # the binned likelihood without a bin says so too
    empty = SpinLikelihood(np.zeros((4, 16)), np.zeros(4), 1.0)
    assert empty.n_bins == 0 and fit(empty).problem == (
        "not fitted: no bin has expected template or background events")
