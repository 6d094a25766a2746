"""Spin-reweighting calibration: exact weights, linear response, closure on an independent
sample with a spin-sculpting selection and a smeared analyser."""

import numpy as np
import pytest

from ditau.tomography.calibration import (
    SpinSample,
    build_calibration,
    decay_density,
    diag_correlation,
    hypothesis_weights,
    lo_state,
)


def _unit(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _sample(n, seed, kappa=(1.0, -1.0)):
    """Accept-reject from the LO decay density at cos Theta ~ 1 + cos^2 Theta."""
    rng = np.random.default_rng(seed)
    out = []
    while sum(len(o[0]) for o in out) < n:
        m = 4 * n
        c = rng.uniform(-1, 1, m)
        c = c[rng.uniform(0, 2, m) < 1 + c**2]
        hp, hm = _unit(rng, len(c)), _unit(rng, len(c))
        s = SpinSample(hp, hm, np.full(len(c), kappa[0]), np.full(len(c), kappa[1]), c,
                       np.ones(len(c)), np.ones(len(c), bool))
        p = decay_density(s, *lo_state(c))
        keep = rng.uniform(0, 3.5, len(c)) < p
        out.append((hp[keep], hm[keep], c[keep]))
    hp, hm, c = (np.concatenate(x)[:n] for x in zip(*out, strict=True))
    return SpinSample(hp, hm, np.full(n, kappa[0]), np.full(n, kappa[1]), c, np.ones(n),
                      np.ones(n, bool))


def _detector(s, seed):
    """Spin-independent response: a selection that depends on the true analyser directions
    (as visible-pT cuts do) and a smeared analyser direction."""
    rng = np.random.default_rng(seed)
    eff = 0.55 + 0.35 * s.h_p[:, 0] * np.sign(s.kappa_p) - 0.1 * s.h_m[:, 1] ** 2
    sel = np.flatnonzero(rng.uniform(size=len(s)) < eff)

    def smear(h):
        v = h + 0.6 * rng.normal(size=h.shape)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    det = SpinSample(smear(s.h_p[sel]), smear(s.h_m[sel]), s.kappa_p[sel], s.kappa_m[sel],
                     s.cos_theta[sel], s.weight[sel], s.valid[sel])
    return det, sel


def test_lo_state_inclusive_values():
    c = np.linspace(-1, 1, 200001)
    w = 1 + c**2
    B_p, _, C = lo_state(c)
    # tomography.md inclusive table: C_rr = -0.494, C_nn = +0.494, B_k = -0.147
    assert np.average(C[:, 1, 1], weights=w) == pytest.approx(-0.494, abs=0.002)
    assert np.average(C[:, 2, 2], weights=w) == pytest.approx(0.494, abs=0.002)
    assert B_p[0, 0] == pytest.approx(-0.147, abs=0.002)


def test_nominal_weights_are_one_and_zero_scaling_removes_the_correlation():
    s = _sample(60000, 1)
    w1, _ = hypothesis_weights(s, [1, 1, 1])
    assert np.allclose(w1, 1.0)
    c_nom, cov, _ = diag_correlation(s)
    assert c_nom[0] == pytest.approx(1.0, abs=4 * np.sqrt(cov[0, 0]))
    w0, _ = hypothesis_weights(s, [0, 0, 0])
    c0, cov0, _ = diag_correlation(s, w0)
    assert np.all(np.abs(c0) < 4 * np.sqrt(np.diag(cov0)) + 0.02)
    wh, _ = hypothesis_weights(s, [0.5, 1.0, 0.0])
    ch, covh, _ = diag_correlation(s, wh)
    expect = np.array([0.5, c_nom[1], 0.0])
    assert np.all(np.abs(ch - expect) < 4 * np.sqrt(np.diag(covh)) + 0.02)


def test_calibration_closes_on_an_independent_sample():
    train, test = _sample(150000, 2), _sample(100000, 3)
    det_train, sel_train = _detector(train, 12)
    det_test, _ = _detector(test, 13)
    cal = build_calibration(train, det_train, sel_train, n_hypotheses=12, seed=4)
    assert cal.max_residual() < 0.02  # the response is linear
    raw, cov_raw, _ = diag_correlation(det_test)
    truth, cov_t, _ = diag_correlation(test)
    calibrated, cov = cal.apply(raw, cov_raw)
    err = np.sqrt(np.diag(cov) + np.diag(cov_t))
    # the smearing and selection bias the raw value far beyond its error ...
    assert np.any(np.abs(raw - truth) > 8 * err)
    # ... the calibrated one agrees with the independent sample's truth
    assert np.all(np.abs(calibrated - truth) < 4 * err + 0.01)


def test_sample_length_mismatch_is_named():
    with pytest.raises(ValueError, match="kappa_p has length"):
        SpinSample(np.zeros((3, 3)), np.zeros((3, 3)), np.zeros(2), np.zeros(3), np.zeros(3),
                   np.ones(3), np.ones(3, bool))


def test_candidate_averaged_products_close_and_are_more_precise():
    """A generative reconstruction gives K posterior-like candidates per event: here K
    independent smearings of the true analysers. Averaging the per-event products over the
    candidates (SpinSample.prod) still calibrates back to the truth, with a smaller
    statistical error than a single candidate."""
    from dataclasses import replace

    k = 8
    train, test = _sample(60000, 5), _sample(40000, 6)

    def candidates(s, seed):
        rng = np.random.default_rng(seed)

        def smear(h):
            v = h + 0.9 * rng.normal(size=h.shape)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

        prods = [smear(s.h_p) * smear(s.h_m) for _ in range(k)]
        single = replace(s, prod=prods[0])
        return single, replace(s, prod=np.mean(prods, axis=0))

    idx = np.arange(len(train))
    truth, cov_t, _ = diag_correlation(test)
    errors = []
    for j, (tr, te) in enumerate(zip(candidates(train, 1), candidates(test, 2), strict=True)):
        cal = build_calibration(train, tr, idx, n_hypotheses=12, seed=4)
        calibrated, cov = cal.apply(*diag_correlation(te)[:2])
        err = np.sqrt(np.diag(cov) + np.diag(cov_t))
        assert np.all(np.abs(calibrated - truth) < 4 * err + 0.01), (j, calibrated, truth)
        errors.append(np.sqrt(np.diag(cov)))
    single_err, averaged_err = errors
    assert np.all(averaged_err < 0.8 * single_err), errors
