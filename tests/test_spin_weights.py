"""ditau.spin.weights and ditau.spin.polarimeters: normalisation, toy reweighting closure
against the decay-angle estimators, separable-state closure through the concurrence, and the
polarimeters against the tomography analysers and the leptonic matrix element."""

from __future__ import annotations

import numpy as np
import pytest

from ditau.physics import M_PI, M_TAU, M_Z
from ditau.spin import (
    SpinState,
    decay_density,
    lepton_polarimeter,
    polarimeters,
    production_state,
    spin_weight,
)
from ditau.spin.polarimeters import optimal_rho_polarimeter
from ditau.tomography import analysers, helicity_frame, quantum
from ditau.tomography.analysers import VisibleLegs
from ditau.tomography.estimators import measure

Z_POLE = SpinState.constant([-0.147, 0, 0], [-0.147, 0, 0], np.diag([1.0, -0.989, 0.989]))


def _isotropic(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_weights_average_to_one_exactly():
    """E[h] = 0 over unpolarised decays: on the 6 x 6 symmetric set of directions +-e_i the
    average of w(B, C) is exactly 1 for any state (and for a per-event state)."""
    axes = np.vstack([np.eye(3), -np.eye(3)])
    hp = np.repeat(axes, 6, axis=0)
    hm = np.tile(axes, (6, 1))
    rng = np.random.default_rng(0)
    for _ in range(5):
        st = SpinState.constant(rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3),
                                rng.uniform(-1, 1, (3, 3)))
        assert spin_weight(hp, hm, st, clip_negative=False).mean() == pytest.approx(1.0,
                                                                                    abs=1e-14)
    st = production_state(np.full(36, 70.0**2), rng.uniform(-1, 1, 36), 2)
    w = decay_density(-hp, hm, SpinState(st.B_p[:1], st.B_m[:1], st.C[:1]))
    assert w.mean() == pytest.approx(1.0, abs=1e-14)


def test_toy_reweighting_recovers_c_and_b():
    """Isotropic pi+ pi- directions (unpolarised toy), h+ = -q+, h- = +q- (kappa = -1, +1),
    reweighted to the Z-pole state: <q+_i q-_j>_w = kappa+ kappa- C_ij / 9 = -C_ij / 9 (the
    standard estimator, Bernreuther et al. arXiv:1508.05271; tomography.md) and
    measure() returns (B, C) within 4 sigma; weights average to 1 within 4 sigma."""
    rng = np.random.default_rng(1)
    n = 200_000
    qp, qm = _isotropic(rng, n), _isotropic(rng, n)
    w = spin_weight(-qp, qm, Z_POLE)
    assert abs(w.mean() - 1) < 4 * w.std() / np.sqrt(n)
    prod = np.einsum("n,ni,nj->ij", w, qp, qm) / w.sum()
    err = np.sqrt(np.einsum("n,ni,nj->ij", w**2, qp**2, qm**2)) / w.sum()
    pull = (prod - (-1.0) * Z_POLE.C / 9) / err
    assert np.max(np.abs(pull)) < 4, pull
    obs = measure(qp, qm, -1.0, 1.0, weights=w)
    pulls = (obs.vector - np.concatenate([Z_POLE.B_p, Z_POLE.B_m, Z_POLE.C.ravel()])) \
        / obs.errors
    assert np.max(np.abs(pulls)) < 4, pulls


def _sample_state(rng, state, n):
    """Accept-reject isotropic pion directions with the density w <= 4 (physical state)."""
    qp, qm = _isotropic(rng, 4 * n), _isotropic(rng, 4 * n)
    keep = rng.uniform(0, 4, 4 * n) < decay_density(-qp, qm, state)
    return qp[keep][:n], qm[keep][:n]


def test_separable_target_from_entangled_sample():
    """Events generated in the entangled Z-pole state (concurrence ~ 0.99), reweighted by
    w_target / w_generated to (a) C = 0, B = 0 and (b) the product state B+ = B- = b,
    C = b b^T: the measured state has concurrence 0 and (B, C) within 4 sigma; the weights
    average to 1 within 4 sigma (tomography.md: 'a separable state must not come out
    entangled')."""
    rng = np.random.default_rng(2)
    qp, qm = _sample_state(rng, Z_POLE, 100_000)
    raw = measure(qp, qm, -1.0, 1.0)
    rho = quantum.nearest_physical(quantum.density_matrix(raw.B_p, raw.B_m, raw.C))
    assert quantum.concurrence(rho) > 0.95
    b = np.array([0.3, -0.2, 0.1])
    for target in (SpinState.unpolarised(), SpinState.constant(b, b, np.outer(b, b))):
        w = spin_weight(-qp, qm, target, Z_POLE)
        assert abs(w.mean() - 1) < 4 * w.std() / np.sqrt(len(w))
        obs = measure(qp, qm, -1.0, 1.0, weights=w)
        want = np.concatenate([target.B_p, target.B_m, target.C.ravel()])
        assert np.max(np.abs((obs.vector - want) / obs.errors)) < 4
        rho = quantum.nearest_physical(quantum.density_matrix(obs.B_p, obs.B_m, obs.C))
        assert quantum.concurrence(rho) < 0.02


def test_per_event_generated_state():
    """Per-event states (the LO state of each event) work as generated and as target: the
    weight to the same state is 1, to another state positive."""
    rng = np.random.default_rng(3)
    n = 1000
    st = production_state(rng.uniform(60, 120, n) ** 2, rng.uniform(-1, 1, n),
                          rng.choice([1, 2], n), rng.choice([-1, 1], n))
    hp, hm = _isotropic(rng, n), _isotropic(rng, n)
    np.testing.assert_allclose(spin_weight(hp, hm, st, st), 1.0, atol=1e-12)
    w = spin_weight(hp, hm, Z_POLE, st)
    assert np.all(w >= 0) and np.all(np.isfinite(w))
    assert np.all(decay_density(hp, hm, st) >= -1e-12)  # physical state, |h| <= 1


def _back_to_back_taus(rng, n, m_tt=91.0):
    """Tau pairs in a boosted, rotated frame: (tau+, tau-) lab four-momenta (N, 4)."""
    e = m_tt / 2
    p = np.sqrt(e**2 - M_TAU**2)
    d = _isotropic(rng, n)
    tm = np.column_stack([p * d, np.full(n, e)])
    tp = np.column_stack([-p * d, np.full(n, e)])
    # boost along z by beta_z = 0.5 and transverse by a random small kick
    beta = np.column_stack([rng.uniform(-0.3, 0.3, (n, 2)), rng.uniform(-0.6, 0.6, n)])
    from ditau.physics import momentum4, to_array

    def boost(x):
        return to_array(momentum4(x).boost_beta3(
            momentum4(np.column_stack([beta, np.ones(n)])).to_beta3()))

    return boost(tp), boost(tm)


def _two_body(rng, tau, m_daughter):
    """Isotropic two-body decay of each tau (lab (N, 4)) into a daughter of mass m and a
    massless neutrino; returns (daughter, neutrino) lab four-momenta."""
    n = len(tau)
    from ditau.physics import momentum4, to_array

    e = (M_TAU**2 + m_daughter**2) / (2 * M_TAU)
    p = np.sqrt(e**2 - m_daughter**2)
    d = _isotropic(rng, n)
    rest = np.column_stack([p * d, np.full(n, e)])
    nu = np.column_stack([-p * d, np.full(n, p)])
    b = momentum4(tau).to_beta3()
    return (to_array(momentum4(rest).boost_beta3(b)), to_array(momentum4(nu).boost_beta3(b)))


def test_pion_and_rho_polarimeters_match_analysers():
    """pi: h = kappa h_hat of tomography.analysers (|h| = 1, sign -1 for the tau+); rho: the
    optimal polarimeter of tomography.analysers (reused, not copied), |h| = 1."""
    rng = np.random.default_rng(4)
    n = 300
    tp, tm = _back_to_back_taus(rng, n)
    pip, _ = _two_body(rng, tp, M_PI)
    pim, _ = _two_body(rng, tm, M_PI)
    zero = np.zeros((n, 4))
    pol = polarimeters(tp, tm, pip, zero, pim, zero, ["pi"] * n, ["pi"] * n)
    an = analysers(tp, tm, VisibleLegs(pip, zero, pim, zero), ["pi"] * n, ["pi"] * n)
    np.testing.assert_allclose(pol.h_p, -an.h_p, atol=1e-12)
    np.testing.assert_allclose(pol.h_m, an.h_m, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(pol.h_m, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(pol.cos_theta, an.cos_theta, atol=1e-12)
    # rho: a crude pi pi0 nu configuration (two-body tau -> rho nu, rho -> pi pi0 isotropic)
    rho_m, nu_m = _two_body(rng, tm, 0.775)
    from ditau.physics import momentum4, to_array
    e_pi = 0.775 / 2
    q = np.sqrt(e_pi**2 - M_PI**2)
    d = _isotropic(rng, n)
    b = momentum4(rho_m).to_beta3()
    pic = to_array(momentum4(np.column_stack([q * d, np.full(n, e_pi)])).boost_beta3(b))
    pi0 = to_array(momentum4(np.column_stack([-q * d, np.full(n, e_pi)])).boost_beta3(b))
    pol = polarimeters(tp, tm, pip, zero, pic, pi0, ["pi"] * n, ["rho"] * n)
    an = analysers(tp, tm, VisibleLegs(pip, zero, pic, pi0), ["pi"] * n, ["rho"] * n,
                   rho="polarimeter")
    np.testing.assert_allclose(pol.h_m, an.h_m, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(pol.h_m, axis=1), 1.0, atol=1e-9)
    assert np.all(pol.exact_m)
    # same direction as optimal_rho_polarimeter in the tau rest frame (lab axes): |h| = 1
    h_lab = optimal_rho_polarimeter(pic, pi0, nu_m, tm)
    np.testing.assert_allclose(np.linalg.norm(h_lab, axis=1), 1.0, atol=1e-9)


def test_other_modes_get_zero_and_exact_leptons_need_the_neutrino():
    rng = np.random.default_rng(5)
    n = 10
    tp, tm = _back_to_back_taus(rng, n)
    zero = np.zeros((n, 4))
    pol = polarimeters(tp, tm, tp / 2, zero, tm / 2, zero, ["other"] * n, ["pi"] * n)
    np.testing.assert_array_equal(pol.h_p, 0.0)
    assert not pol.exact_p.any() and pol.exact_m.all()
    with pytest.raises(ValueError, match="nu_lep_m"):
        polarimeters(tp, tm, tp / 2, zero, tm / 2, zero, ["pi"] * n, ["e"] * n)


def _michel_tau_minus(rng, n):
    """Unpolarised tau- -> l- nubar_l nu_tau at rest (massless), |M|^2 ~ (p_tau.p_nubar)
    (p_l.p_nutau): flat 3-body phase space (uniform Dalitz, isotropic orientation) times the
    matrix element by accept-reject. Returns rest-frame (lepton, nubar_l) directions/momenta."""
    m = M_TAU
    out_l, out_nb = [], []
    while sum(len(x) for x in out_l) < n:
        x1, x2 = rng.uniform(0, 1, (2, 4 * n))  # E_i = x_i m/2
        x3 = 2 - x1 - x2
        ok = (x3 > 0) & (x3 < 1)
        x1, x2, x3 = x1[ok], x2[ok], x3[ok]
        e_l, e_nb, e_nt = x1 * m / 2, x2 * m / 2, x3 * m / 2
        # p_tau.p_nubar = m E_nb; p_l.p_nutau = (m^2 - 2 m E_nb)/2 (massless, tomography.md)
        me = m * e_nb * (m**2 - 2 * m * e_nb) / 2
        keep = rng.uniform(0, m**4 / 8 + 1e-12, len(me)) < me
        e_l, e_nb, e_nt = e_l[keep], e_nb[keep], e_nt[keep]
        # lepton along z, nubar in the xz plane at the angle fixed by momentum conservation
        cos_ln = (e_nt**2 - e_l**2 - e_nb**2) / (2 * e_l * e_nb)
        sin_ln = np.sqrt(np.clip(1 - cos_ln**2, 0, None))
        lep = np.column_stack([np.zeros_like(e_l), np.zeros_like(e_l), e_l])
        nub = np.column_stack([e_nb * sin_ln, np.zeros_like(e_l), e_nb * cos_ln])
        # random rotation
        from scipy.spatial.transform import Rotation

        rot = Rotation.random(len(e_l), random_state=rng.integers(1 << 31))
        out_l.append(rot.apply(lep))
        out_nb.append(rot.apply(nub))
    return np.vstack(out_l)[:n], np.vstack(out_nb)[:n]


def test_lepton_polarimeter_gives_kappa_one_third():
    """Exact lepton polarimeter h = nubar_l direction (|h| = 1): reweighting unpolarised
    tau- -> l nu nu decays to polarisation P along an axis gives the lepton direction the
    analysing power -1/3 (tomography.md table): 3 <l_hat . axis> = -P/3 within 4 sigma; the
    tau+ (h = -nu_l direction) the opposite sign. Also |h| = 1 via lepton_polarimeter."""
    rng = np.random.default_rng(6)
    n = 100_000
    lep, nub = _michel_tau_minus(rng, n)
    l_hat = lep / np.linalg.norm(lep, axis=1, keepdims=True)
    h = nub / np.linalg.norm(nub, axis=1, keepdims=True)
    pol = 0.8
    for sign in (1.0, -1.0):  # tau-: h = +nubar; tau+ (CP image: momenta flip): h = -nu
        w = 1 + pol * sign * h[:, 2]
        a = 3 * np.sum(w * sign * l_hat[:, 2]) / w.sum()
        err = 3 * np.sqrt(np.sum(w**2 * l_hat[:, 2] ** 2)) / w.sum()
        assert abs(a - (-pol / 3)) < 4 * err, (a, err)
    # the function: tau at rest in a tau-tau frame along x; h has unit length
    m = 3
    tm = np.tile([0.0, 0.0, 0.0, M_TAU], (m, 1))
    tm[:, 0] = 40.0
    tm[:, 3] = np.hypot(40.0, M_TAU)
    tp = tm * [-1, 1, 1, 1]
    frame = helicity_frame(*(_vec(tp), _vec(tm)))
    nu = np.column_stack([rng.normal(size=(m, 3)), np.zeros(m)])
    nu[:, 3] = np.linalg.norm(nu[:, :3], axis=1)
    h = lepton_polarimeter(nu, tm, frame, "m")
    np.testing.assert_allclose(np.linalg.norm(h, axis=1), 1.0, atol=1e-12)


def _vec(a):
    from ditau.physics import momentum4

    return momentum4(a)


def test_z_pole_production_state_weights_are_positive():
    """The LO state at the Z pole and 60 GeV with random polarimeters of length <= 1: every
    density is >= 0 (a physical state) and the weights to the Z-pole constant state finite."""
    rng = np.random.default_rng(7)
    n = 5000
    st = production_state(rng.choice([60.0, M_Z], n) ** 2, rng.uniform(-1, 1, n), 1)
    hp = _isotropic(rng, n) * rng.uniform(0, 1, (n, 1))
    hm = _isotropic(rng, n) * rng.uniform(0, 1, (n, 1))
    assert decay_density(hp, hm, st).min() >= -1e-12
