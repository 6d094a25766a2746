"""ditau.spin.density: the LO production spin state of q qbar -> gamma*/Z -> tau tau against an
explicit Dirac-trace calculation, analytic limits, the reference values and symmetries."""

from __future__ import annotations

import numpy as np
import pytest

from ditau.physics import M_TAU, M_Z, SIN2_THETA_EFF
from ditau.spin.density import (
    SpinState,
    chiral_couplings,
    production_state,
    quark_type,
)
from ditau.tomography import quantum
from ditau.tomography.estimators import lo_expectation, lo_inclusive, z_couplings

# --- an independent calculation: Dirac traces with spin projectors (Dirac representation)

_I2, _Z2 = np.eye(2), np.zeros((2, 2))
_PAULI = [np.array([[0, 1], [1, 0]], complex), np.array([[0, -1j], [1j, 0]]),
          np.array([[1, 0], [0, -1]], complex)]
_G0 = np.block([[_I2, _Z2], [_Z2, -_I2]]).astype(complex)
_G = [_G0] + [np.block([[_Z2, s], [-s, _Z2]]) for s in _PAULI]
_G5 = 1j * _G[0] @ _G[1] @ _G[2] @ _G[3]
_METRIC = np.diag([1.0, -1.0, -1.0, -1.0])
_PL, _PR = (np.eye(4) - _G5) / 2, (np.eye(4) + _G5) / 2


def _slash(p):
    return p[0] * _G[0] - p[1] * _G[1] - p[2] * _G[2] - p[3] * _G[3]


def _spin4(p, m, a):
    """Spin four-vector of rest-frame spin ``a`` (rotation-free boost from the frame of p)."""
    pa = p[1:] @ a
    return np.concatenate([[pa / m], a + pa * p[1:] / (m * (p[0] + m))])


def _trace_me2(s_hat, cos_q, c, m, a_m, b_p):
    """|M|^2 summed over quark helicities with the tau- spin along ``a_m`` and the tau+ along
    ``b_p`` (rest-frame unit vectors or 0), quark along +z, tau- in the xz plane:
    Tr[gamma^mu P_s q/ P_-s gamma^nu qbar/] Tr[G^a (p+/ - m)(1 + g5 s+/)/2 Gbar^b (p-/ + m)
    (1 + g5 s-/)/2] g_mu,a g_nu,b (u ubar = (p/ + m)(1 + g5 s/)/2, v vbar = (p/ - m)(...)/2)."""
    e = np.sqrt(s_hat) / 2
    q, qb = np.array([e, 0, 0, e]), np.array([e, 0, 0, -e])
    pm = np.sqrt(e**2 - m**2)
    sin_q = np.sqrt(1 - cos_q**2)
    p_m = np.array([e, pm * sin_q, 0, pm * cos_q])
    p_p = np.array([e, -pm * sin_q, 0, -pm * cos_q])
    s_m, s_p = _spin4(p_m, m, a_m), _spin4(p_p, m, b_p)
    uu = (_slash(p_m) + m * np.eye(4)) @ (np.eye(4) + _G5 @ _slash(s_m)) / 2
    vv = (_slash(p_p) - m * np.eye(4)) @ (np.eye(4) + _G5 @ _slash(s_p)) / 2
    total = 0.0
    for i_sig, (p_in, p_out) in enumerate(((_PL, _PR), (_PR, _PL))):
        lep = np.array([[np.trace(_G[mu] @ p_in @ _slash(q) @ p_out @ _G[nu] @ _slash(qb))
                         for nu in range(4)] for mu in range(4)])
        cl, cr = c[i_sig]
        gam = [g @ (cl * _PL + cr * _PR) for g in _G]
        gbar = [g @ (np.conj(cl) * _PL + np.conj(cr) * _PR) for g in _G]
        had = np.array([[np.trace(gam[al] @ vv @ gbar[be] @ uu) for be in range(4)]
                        for al in range(4)])
        total += np.einsum("mn,ab,ma,nb->", lep, had, _METRIC, _METRIC).real
    return total


def _trace_state(s_hat, cos_q, flavour, m, **kw):
    """(B+, B-, C) in (k, r, n) from :func:`_trace_me2`; k = (sin, 0, cos), r = (-cos, 0, sin),
    n = y (the basis of ditau.physics.helicity with p = +z)."""
    c = chiral_couplings(np.array([s_hat]), np.array([flavour]), **kw)[:, :, 0]
    sin_q = np.sqrt(1 - cos_q**2)
    axes = [np.array([sin_q, 0, cos_q]), np.array([-cos_q, 0, sin_q]), np.array([0, 1.0, 0])]
    zero = np.zeros(3)
    f0 = _trace_me2(s_hat, cos_q, c, m, zero, zero)
    # |M|^2(a, b) = f0 (1 + B-.a + B+.b + b^T C a) (tomography.md "Density matrix")
    b_m = np.array([_trace_me2(s_hat, cos_q, c, m, ax, zero) / f0 - 1 for ax in axes])
    b_p = np.array([_trace_me2(s_hat, cos_q, c, m, zero, ax) / f0 - 1 for ax in axes])
    cc = np.array([[(_trace_me2(s_hat, cos_q, c, m, aj, ai)
                     - _trace_me2(s_hat, cos_q, c, m, aj, -ai)) / (2 * f0) - b_p[i]
                    for j, aj in enumerate(axes)] for i, ai in enumerate(axes)])
    return b_p, b_m, cc


@pytest.mark.parametrize(("m_tt", "cos_q", "flavour", "m_tau"), [
    (M_Z, 0.0, 2, M_TAU), (60.0, 0.3, 2, M_TAU), (70.0, -0.7, 1, M_TAU),
    (110.0, 0.9, 3, M_TAU), (45.0, 0.5, 2, 15.0), (95.0, -0.2, 1, 30.0), (200.0, 0.6, 4, 60.0),
])
def test_matches_dirac_trace(m_tt, cos_q, flavour, m_tau):
    """All 15 coefficients equal the Dirac-trace result to 1e-10, including exaggerated tau
    masses (15-60 GeV) that make every mass term O(1)."""
    st = production_state(m_tt**2, cos_q, flavour, m_tau=m_tau)
    b_p, b_m, cc = _trace_state(m_tt**2, cos_q, flavour, m_tau)
    np.testing.assert_allclose(st.B_p[0], b_p, atol=1e-10)
    np.testing.assert_allclose(st.B_m[0], b_m, atol=1e-10)
    np.testing.assert_allclose(st.C[0], cc, atol=1e-10)


def test_z_pole_theta_90():
    """Z only, Theta = pi/2, u ubar: C = diag(1, lambda, -lambda), lambda = -0.989 and
    B_k = -A_tau = -0.147 for both taus (tomography.md LO table)."""
    a_tau, lam = z_couplings()
    assert lam == pytest.approx(-0.989, abs=5e-4)
    st = production_state(M_Z**2, 0.0, 2, exchange="z", m_tau=0.0)
    np.testing.assert_allclose(st.C[0], np.diag([1.0, lam, -lam]), atol=1e-12)
    np.testing.assert_allclose(st.B_m[0], [-a_tau, 0, 0], atol=1e-12)
    massive = production_state(M_Z**2, 0.0, 2, exchange="z")
    # mass terms: O(m_tau^2/m_Z^2) on the diagonal, O(m_tau/m_Z) in C_kr (3.8e-3)
    np.testing.assert_allclose(np.diag(massive.C[0]), [1.0, lam, -lam], atol=1e-4)
    np.testing.assert_allclose(massive.C[0], np.diag([1.0, lam, -lam]), atol=5e-3)
    # full gamma*/Z at the pole: the photon shifts C_rr by < 0.6 % and adds a T-odd C_rn
    full = production_state(M_Z**2, 0.0, 2)
    assert full.C[0, 1, 1] == pytest.approx(lam, abs=6e-3)
    assert abs(full.C[0, 1, 2]) < 0.05


def test_pure_photon_theta_90():
    """gamma* only, massless, Theta = pi/2: C = diag(1, +1, -1), B = 0 (tomography.md)."""
    st = production_state(30.0**2, 0.0, 1, exchange="gamma", m_tau=0.0)
    np.testing.assert_allclose(st.C[0], np.diag([1.0, 1.0, -1.0]), atol=1e-12)
    np.testing.assert_allclose(st.B_p[0], 0.0, atol=1e-12)


def test_issue_trace_values_60_70():
    """u ubar -> gamma*/Z -> tau tau at m = 60 and 70 GeV: C_rr = +0.68 and +0.19
    (shared/reference/tomography.md, independent review). Reproduced at Theta = pi/2 (quark
    direction known; cos Theta = 0, where the Z-pole value would be lambda = -0.989)."""
    st = production_state(np.array([60.0, 70.0]) ** 2, 0.0, 2)
    np.testing.assert_allclose(st.C[:, 1, 1], [0.68, 0.19], atol=0.006)
    np.testing.assert_allclose(st.C[:, 2, 2], [-0.68, -0.19], atol=0.006)


def test_lo_expectation_overlap():
    """Z only, massless, against estimators.lo_expectation with a_q = A_u (quark direction
    known) over a cos Theta scan; and quark_sign = 0 against a_q = None (odd terms cancel)."""
    cos = np.linspace(-0.99, 0.99, 41)
    s2 = SIN2_THETA_EFF
    # A_q = 2 gV gA/(gV^2 + gA^2), gV/gA = 1 - 4|Q| s^2 for the up quark (same form as A_tau)
    r = 1 - 4 * (2 / 3) * s2
    a_u = 2 * r / (1 + r**2)
    for sign, a_q in ((1, a_u), (0, None)):
        st = production_state(np.full_like(cos, M_Z**2), cos, 2, sign, exchange="z",
                               m_tau=0.0)
        lo = lo_expectation(cos, a_q=a_q)
        np.testing.assert_allclose(st.C[:, 0, 0], lo["kk"], atol=1e-12)
        np.testing.assert_allclose(st.C[:, 1, 1], lo["rr"], atol=1e-12)
        np.testing.assert_allclose(st.C[:, 2, 2], lo["nn"], atol=1e-12)
        np.testing.assert_allclose(st.B_m[:, 0], lo["bk"], atol=1e-12)
        np.testing.assert_allclose(st.B_p[:, 0], lo["bk"], atol=1e-12)


def test_inclusive_lo_values():
    """Rate-weighted average over cos Theta (Z only, massless, u ubar, quark direction
    unknown): C_rr = -0.494, C_kk = 1, B_k = -0.147 (tomography.md "inclusive" row)."""
    cos = np.linspace(-1, 1, 20001)
    st = production_state(np.full_like(cos, M_Z**2), cos, 2, 0, exchange="z", m_tau=0.0)
    w = st.rate / st.rate.sum()
    inc = lo_inclusive()
    assert w @ st.C[:, 1, 1] == pytest.approx(inc["C"][1, 1], abs=1e-4)
    assert w @ st.C[:, 1, 1] == pytest.approx(-0.494, abs=1e-3)
    assert w @ st.C[:, 0, 0] == pytest.approx(1.0, abs=1e-12)
    assert w @ st.B_m[:, 0] == pytest.approx(-0.147, abs=1e-3)


def test_trace_one_and_positive_everywhere():
    """Random scan over m in [20, 500] GeV, cos Theta, flavour, quark sign and tau mass: the
    density matrix has trace 1, is Hermitian and positive semi-definite (a mixture of the
    quark-helicity and quark-direction states)."""
    rng = np.random.default_rng(1)
    n = 4000
    m = rng.uniform(20, 500, n)
    st = production_state(m**2, rng.uniform(-1, 1, n), rng.choice([1, 2, 3, 4, 5], n),
                          rng.choice([-1, 0, 1], n), m_tau=rng.choice([M_TAU, 8.0], 1)[0])
    rho = st.density_matrix()
    np.testing.assert_allclose(np.trace(rho, axis1=1, axis2=2), 1.0, atol=1e-12)
    assert np.all(quantum.is_physical(rho, tol=1e-10))


def test_single_helicity_is_pure():
    """For one quark helicity the tau pair is a pure state: 1 + |B+|^2 + |B-|^2 + |C|^2 = 4
    (Tr rho^2 = 1). Realised with a fictitious coupling set where only g_R^q is non-zero."""
    rng = np.random.default_rng(2)
    n = 500
    m = rng.uniform(20, 300, n)
    cos = rng.uniform(-1, 1, n)
    # with exchange='z' and sin^2 = 0 the right-handed quark coupling g_R = -Q s^2 vanishes
    # for both quark types: only the left-handed quark contributes (divides by s^2 c^2 ->
    # use a tiny s^2 instead of 0)
    st = production_state(m**2, cos, 2, exchange="z", sin2_theta_eff=1e-9, m_tau=5.0)
    purity = (1 + np.sum(st.B_p**2, 1) + np.sum(st.B_m**2, 1) + np.sum(st.C**2, (1, 2))) / 4
    np.testing.assert_allclose(purity, 1.0, atol=1e-6)


def test_cp_parity_symmetries():
    """Tree level is CP invariant: B+ = B-, C = C^T (common basis). Pure photon (parity
    conserving): B = 0 everywhere and C(Theta) = C(pi - Theta) up to the sign of C_kr, C_kn
    (quark direction reversed: r, n -> -r, -n); massless: helicity conservation gives
    C_kk = 1, C_kr = C_kn = 0, B_r = B_n = 0 without absorptive parts."""
    rng = np.random.default_rng(3)
    n = 2000
    m = rng.uniform(20, 300, n)
    cos = rng.uniform(-1, 1, n)
    fl = rng.choice([1, 2], n)
    st = production_state(m**2, cos, fl)
    np.testing.assert_allclose(st.B_p, st.B_m, atol=1e-14)
    np.testing.assert_allclose(st.C, np.swapaxes(st.C, 1, 2), atol=1e-14)
    g1 = production_state(m**2, cos, fl, exchange="gamma")
    g2 = production_state(m**2, -cos, fl, exchange="gamma")
    np.testing.assert_allclose(g1.B_m, 0.0, atol=1e-14)
    flip = np.array([1.0, -1.0, -1.0])
    np.testing.assert_allclose(g1.C, g2.C * flip[:, None] * flip[None, :], atol=1e-12)
    z0 = production_state(m**2, cos, fl, exchange="z", m_tau=0.0, gamma_z=0.0)
    np.testing.assert_allclose(z0.C[:, 0, 0], 1.0, atol=1e-12)
    np.testing.assert_allclose(z0.C[:, 0, 1:], 0.0, atol=1e-12)
    np.testing.assert_allclose(z0.B_m[:, 1:], 0.0, atol=1e-12)


def test_quark_sign_reverses_axis():
    """A quark along -p equals the quark along +p at pi - Theta with r, n reversed; sign 0 is
    the rate-weighted mixture of the two."""
    m, cos = np.array([80.0, 95.0]), np.array([0.4, -0.8])
    fwd = production_state(m**2, -cos, 1, 1)
    bwd = production_state(m**2, cos, 1, -1)
    flip = np.array([1.0, -1.0, -1.0])
    np.testing.assert_allclose(bwd.B_m, fwd.B_m * flip, atol=1e-14)
    np.testing.assert_allclose(bwd.C, fwd.C * flip[:, None] * flip[None, :], atol=1e-14)
    plus = production_state(m**2, cos, 1, 1)
    mix = production_state(m**2, cos, 1, 0)
    w = plus.rate / (plus.rate + bwd.rate)
    np.testing.assert_allclose(mix.C, w[:, None, None] * plus.C
                               + (1 - w)[:, None, None] * bwd.C, atol=1e-14)


def test_inputs_and_helpers():
    """Flavour decoding, NaN below threshold, coefficient layout."""
    np.testing.assert_array_equal(quark_type([1, -2, 3, 4, 21]), ["d", "u", "d", "u", ""])
    with pytest.raises(ValueError, match="flavour"):
        production_state(100.0, 0.0, 21)
    st = production_state(np.array([1.0, 100.0**2]), 0.0, 2)
    assert np.all(np.isnan(st.C[0])) and np.all(np.isfinite(st.C[1]))
    r = st.coefficients()
    assert r.shape == (2, 4, 4) and r[1, 0, 0] == 1.0
    np.testing.assert_array_equal(r[1, 1:, 1:], st.C[1])
    unp = SpinState.unpolarised()
    np.testing.assert_allclose(unp.density_matrix(), np.eye(4) / 4)


def test_undefined_rows_become_unpolarised():
    from ditau.spin import SpinState

    c = np.stack([np.diag([1.0, -0.5, 0.5]), np.full((3, 3), np.nan)])
    st = SpinState(np.array([[0.1, 0, 0], [np.nan] * 3]), np.array([[0.2, 0, 0], [np.nan] * 3]),
                   c).defined_or_unpolarised()
    np.testing.assert_array_equal(st.C[0], np.diag([1.0, -0.5, 0.5]))
    assert st.B_p[0, 0] == 0.1 and st.B_m[0, 0] == 0.2
    assert not np.any(st.C[1]) and not np.any(st.B_p[1]) and not np.any(st.B_m[1])


def test_upstream_stages_import_no_tomography():
    """Layering (shared/DESIGN.md: data flows one way): the spin weights, generation and
    detector stages never import the tomography (the helicity basis, the polarimeters and the
    (B, C) <-> rho mapping live in ditau.physics / ditau.spin)."""
    import subprocess
    import sys

    code = ("import sys, ditau.spin, ditau.generate, ditau.detector; "
            "print(sorted(m for m in sys.modules if m.startswith('ditau.tomography')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", out
