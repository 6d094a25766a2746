"""Production spin density matrix of q qbar -> gamma*/Z -> tau+ tau- at leading order.

Conventions (shared/reference/tomography.md "Density matrix", "Helicity basis"): in the
tau-tau rest frame k = tau- direction, p = the axis (beam 1 / Collins-Soper), r = (p - cos k) /
sin, n = r x k, one basis for both taus; tau+ is the first qubit:

    rho = 1/4 (I x I + B+_i sigma_i x I + B-_j I x sigma_j + C_ij sigma_i x sigma_j).

The state is computed with the tau mass, the photon and Z exchanges and their interference
and the incoming quark's electroweak couplings. Derivation (done for this module from the
helicity amplitudes, checked against an explicit Dirac-trace calculation in
tests/test_spin_density.py to 1e-12): for an incoming quark of helicity sigma = +-1 moving
along +p (antiquark along -p) the current is the circular vector eps_sigma = (x + i sigma y)
/ sqrt 2 transverse to p, and the tau vertex gamma^mu (c_sL P_L + c_sR P_R) with

    c_si(s) = Q_q Q_tau / s + g^q_sigma g^tau_i / (s_W^2 c_W^2) / (s - M_Z^2 + i M_Z Gamma_Z),
    g_L = T3 - Q s_W^2, g_R = -Q s_W^2   (common factor e^2 dropped).

With V = (c_R + c_L)/2, A = (c_R - c_L)/2, the Dirac-representation reduction of the final
current (u-bar gamma^i v = sqrt(s) chi^+ [sigma_perp + k (sigma.k)/gamma] eta, axial:
i beta sqrt(s) chi^+ (sigma x k) eta) shows the pair is a spin triplet with the Cartesian
polarisation vector (components k, r, n; cos, sin of Theta between the quark and the tau-)

    Phi_sigma = ( V sin/gamma,  -V cos - sigma beta A,  i (sigma V + beta A cos) ) / sqrt 2,

so (sum over sigma, N = sum |Phi|^2 proportional to dsigma/dcos Theta)

    C_ab = sum [ |Phi|^2 delta_ab - 2 Re(Phi_a Phi_b^*) ] / N,
    B+_a = B-_a = sum Im(Phi^* x Phi)_a / N   (vector cross product of the physical axes).

This is the Born-level input of TauSpinner (Przedzinski, Richter-Was, Was, EPJC 79 (2019) 91;
Banerjee et al., EPJC 73 (2013) 2313) and the massive-fermion analogue of
Bernreuther et al., arXiv:1508.05271. Limits (tomography.md "LO expectation"): at the Z pole,
massless, C = diag(1, lambda sin^2/(1 + cos^2 + 2 A_q A_tau cos), -same) and
B_k = P_tau(Theta); pure photon at Theta = pi/2: C = diag(1, +1, -1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ditau.physics import GAMMA_Z, M_TAU, M_Z, SIN2_THETA_EFF
from ditau.spin.pauli import density_matrix

#: Electric charge and weak isospin of the up-type and down-type quarks and the tau-.
_Q_UP, _T3_UP = 2.0 / 3.0, 0.5
_Q_DOWN, _T3_DOWN = -1.0 / 3.0, -0.5
_Q_TAU, _T3_TAU = -1.0, -0.5

Exchange = Literal["gamma-z", "z", "gamma"]
_EXCHANGES: Final[tuple[str, ...]] = ("gamma-z", "z", "gamma")


@dataclass(frozen=True)
class SpinState:
    """Two-tau spin state in the {k, r, n} helicity basis, per event or common.

    ``B_p``/``B_m``: tau+ / tau- polarisation vectors, shape ``(..., 3)``; ``C``: correlation
    matrix ``(..., 3, 3)``, row index tau+, column index tau- (tomography.md "Density matrix").
    ``rate``: the unpolarised |M|^2 (arbitrary normalisation, proportional to
    dsigma/dcos Theta at fixed s-hat and flavour), shape ``(...)``, or None.
    """

    B_p: NDArray[np.float64]
    B_m: NDArray[np.float64]
    C: NDArray[np.float64]
    rate: NDArray[np.float64] | None = None

    @classmethod
    def unpolarised(cls) -> SpinState:
        """The state with B = 0, C = 0 (unpolarised, uncorrelated taus)."""
        return cls(np.zeros(3), np.zeros(3), np.zeros((3, 3)))

    @classmethod
    def constant(cls, B_p: ArrayLike, B_m: ArrayLike, C: ArrayLike) -> SpinState:
        """A common state from (3,), (3,), (3, 3) array-likes (validated shapes)."""
        bp, bm = np.asarray(B_p, dtype=np.float64), np.asarray(B_m, dtype=np.float64)
        c = np.asarray(C, dtype=np.float64)
        if bp.shape[-1:] != (3,) or bm.shape[-1:] != (3,) or c.shape[-2:] != (3, 3):
            raise ValueError(f"SpinState: need (...,3), (...,3), (...,3,3), got "
                             f"{bp.shape}, {bm.shape}, {c.shape}")
        return cls(bp, bm, c)

    def defined_or_unpolarised(self) -> SpinState:
        """The per-event state with the rows that are undefined (NaN: no q qbar hard process,
        :func:`state_from_truth`) replaced by the unpolarised state B = C = 0."""
        ok = np.all(np.isfinite(self.C.reshape(*self.C.shape[:-2], 9)), axis=-1)
        return SpinState(np.where(ok[..., None], self.B_p, 0.0),
                         np.where(ok[..., None], self.B_m, 0.0),
                         np.where(ok[..., None, None], self.C, 0.0), self.rate)

    def coefficients(self) -> NDArray[np.float64]:
        """The 16 coefficients as a real ``(..., 4, 4)`` array R: R_00 = 1, R_i0 = B+_i,
        R_0j = B-_j, R_ij = C_ij (i, j = 1..3 for k, r, n), so rho = 1/4 R_ab s_a x s_b with
        s_0 = I (tomography.md "Density matrix"; TauSpinner's R_ij layout)."""
        shape = np.broadcast_shapes(self.B_p.shape[:-1], self.B_m.shape[:-1],
                                    self.C.shape[:-2])
        r = np.zeros((*shape, 4, 4))
        r[..., 0, 0] = 1.0
        r[..., 1:, 0] = self.B_p
        r[..., 0, 1:] = self.B_m
        r[..., 1:, 1:] = self.C
        return r

    def density_matrix(self) -> NDArray[np.complex128]:
        """The 4 x 4 density matrix ``(..., 4, 4)`` (:func:`ditau.spin.pauli.density_matrix`:
        (x, y, z) = (n, r, k))."""
        return density_matrix(self.B_p, self.B_m, self.C)


def quark_type(flavour: ArrayLike) -> NDArray[np.str_]:
    """'u' (up-type: |PDG id| 2, 4, 6), 'd' (down-type: 1, 3, 5) or '' per entry.

    ``flavour``: PDG ids (sign ignored) or the strings 'u'/'d'.
    """
    f = np.asarray(flavour)
    if f.dtype.kind in "iu":
        a = np.abs(f)
        return np.where((a >= 1) & (a <= 6), np.where(a % 2 == 0, "u", "d"), "")
    s = f.astype(str)
    return np.where(np.isin(s, ("u", "d")), s, "")


def _quark_charges(flavour: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    t = quark_type(flavour)
    if np.any(t == ""):
        raise ValueError("flavour: need quark PDG ids 1..6 (either sign) or 'u'/'d'")
    up = t == "u"
    return np.where(up, _Q_UP, _Q_DOWN), np.where(up, _T3_UP, _T3_DOWN)


def chiral_couplings(s_hat: ArrayLike, flavour: ArrayLike, *,
                     sin2_theta_eff: float = SIN2_THETA_EFF, m_z: float = M_Z,
                     gamma_z: float = GAMMA_Z, running_width: bool = False,
                     exchange: Exchange = "gamma-z") -> NDArray[np.complex128]:
    """Effective couplings c[sigma, i] of q_sigma qbar -> tau_i tau, shape ``(2, 2, N)``.

    Index 0 = left, 1 = right for both the quark helicity sigma and the tau chirality i;
    c = Q_q Q_tau / s + g^q_sigma g^tau_i / (s_W^2 c_W^2) * P_Z(s), g_L = T3 - Q s_W^2,
    g_R = -Q s_W^2 (standard model neutral current, e.g. PDG "Electroweak model" review), in
    units of e^2 / GeV^2. P_Z = 1/(s - M_Z^2 + i M_Z Gamma_Z) or with the running width
    s Gamma_Z / M_Z (``running_width``). ``exchange``: 'gamma-z' (both), 'z' or 'gamma' only.
    """
    if exchange not in _EXCHANGES:
        raise ValueError(f"exchange must be one of {_EXCHANGES}, not {exchange!r}")
    s = np.atleast_1d(np.asarray(s_hat, dtype=np.float64))
    q_q, t3_q = _quark_charges(np.broadcast_to(np.asarray(flavour), s.shape))
    s2 = float(sin2_theta_eff)
    # SM neutral-current chiral couplings g_L = T3 - Q s^2, g_R = -Q s^2 (PDG EW review)
    g_q = np.stack([t3_q - q_q * s2, -q_q * s2])  # (2, N): L, R
    g_tau = np.array([_T3_TAU - _Q_TAU * s2, -_Q_TAU * s2])  # (2,): L, R
    width = gamma_z * s / m_z if running_width else np.full_like(s, gamma_z * m_z)
    # Breit-Wigner Z propagator (fixed or running width)
    prop_z = 1.0 / (s - m_z**2 + 1j * width)
    z = g_q[:, None, :] * g_tau[None, :, None] / (s2 * (1.0 - s2)) * prop_z
    # photon exchange: Q_q Q_tau / s, the same for every helicity
    gam = np.broadcast_to(q_q * _Q_TAU / s, z.shape)
    if exchange == "z":
        return z.astype(np.complex128)
    if exchange == "gamma":
        return gam.astype(np.complex128)
    return (z + gam).astype(np.complex128)


def _state_quark_along_axis(cos_q: NDArray[np.float64], beta: NDArray[np.float64],
                            c: NDArray[np.complex128]
                            ) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                       NDArray[np.float64]]:
    """(B (N,3), C (N,3,3), N (N,)) with Theta measured from the quark (module docstring)."""
    sin_q = np.sqrt(np.clip(1.0 - cos_q**2, 0.0, None))
    inv_gamma = np.sqrt(np.clip(1.0 - beta**2, 0.0, None))
    n_ev = len(cos_q)
    num_c = np.zeros((n_ev, 3, 3))
    num_b = np.zeros((n_ev, 3))
    rate = np.zeros(n_ev)
    for i_sig, sigma in enumerate((-1.0, 1.0)):
        cl, cr = c[i_sig, 0], c[i_sig, 1]
        v, a = 0.5 * (cr + cl), 0.5 * (cr - cl)
        # triplet polarisation vector Phi_sigma in (k, r, n), derived in the module docstring
        phi = np.stack([v * sin_q * inv_gamma,
                        -v * cos_q - sigma * beta * a,
                        1j * (sigma * v + beta * a * cos_q)], axis=1) / np.sqrt(2.0)
        norm = np.sum(np.abs(phi) ** 2, axis=1)
        rate += norm
        # C_ab = |Phi|^2 delta_ab - 2 Re(Phi_a Phi_b^*) (spin-1 state of two spin-1/2)
        num_c += (norm[:, None, None] * np.eye(3)
                  - 2.0 * np.real(phi[:, :, None] * np.conj(phi[:, None, :])))
        # B = Im(Phi^* x Phi), the same for both taus; (k, r, n) is left-handed ((n, r, k) is
        # right-handed, physics.helicity), so the cross product in these components is -np.cross
        num_b -= np.imag(np.cross(np.conj(phi), phi))
    with np.errstate(invalid="ignore", divide="ignore"):
        return num_b / rate[:, None], num_c / rate[:, None, None], rate


def production_state(s_hat: ArrayLike, cos_theta: ArrayLike, flavour: ArrayLike,
                     quark_sign: ArrayLike = 1, *, sin2_theta_eff: float = SIN2_THETA_EFF,
                     m_z: float = M_Z, gamma_z: float = GAMMA_Z, m_tau: float = M_TAU,
                     running_width: bool = False,
                     exchange: Exchange = "gamma-z") -> SpinState:
    """LO spin state of q qbar -> gamma*/Z -> tau+ tau- per event, in the {k, r, n} basis.

    Args:
        s_hat: squared tau-tau mass (the hard process's s-hat), GeV^2, shape (N,).
        cos_theta: cos of the angle between the axis p and the tau- in the tau-tau rest
            frame (``HelicityFrame.cos_theta``; Collins-Soper axis at pp), shape (N,).
        flavour: PDG id of the incoming quark (or antiquark; sign ignored) or 'u'/'d', (N,).
        quark_sign: +1 if the quark moves along +p (the schema's ``quark_pz_sign`` for the
            beam/CS axis), -1 if along -p, 0 if unknown: then the cross-section-weighted
            mixture of both (odd terms in cos Theta diluted; tomography.md "Helicity basis").
        sin2_theta_eff, m_z, gamma_z: electroweak inputs (GeV); m_tau: tau mass in GeV
            (0 for the massless limit); running_width: s Gamma/M instead of M Gamma in the
            Z propagator; exchange: 'gamma-z', 'z' or 'gamma'.

    Returns:
        :class:`SpinState` with ``B_p``, ``B_m`` (N, 3), ``C`` (N, 3, 3) and ``rate`` (N,)
        (unpolarised |M|^2 / e^4 / s, proportional to dsigma/dcos Theta; formula in the
        module docstring). A quark along -p has Theta_q = pi - Theta, r_q = -r, n_q = -n,
        so B_r, B_n, C_kr, C_rk, C_kn, C_nk change sign in the p basis. Entries below
        threshold (s_hat <= 4 m_tau^2) or with non-finite input are NaN.
    """
    s = np.atleast_1d(np.asarray(s_hat, dtype=np.float64))
    cos = np.broadcast_to(np.asarray(cos_theta, dtype=np.float64), s.shape)
    sign = np.broadcast_to(np.asarray(quark_sign, dtype=np.float64), s.shape)
    if not np.all(np.isin(sign[np.isfinite(sign)], (-1.0, 0.0, 1.0))):
        raise ValueError("quark_sign must be +1, -1 or 0")
    ok = np.isfinite(s) & np.isfinite(cos) & (np.abs(cos) <= 1.0) & (s > 4.0 * m_tau**2)
    s_safe = np.where(ok, s, (2.0 * max(m_tau, 1.0)) ** 2 * 4.0)
    cos_safe = np.where(ok, cos, 0.0)
    c = chiral_couplings(s_safe, flavour, sin2_theta_eff=sin2_theta_eff, m_z=m_z,
                         gamma_z=gamma_z, running_width=running_width, exchange=exchange)
    # tau velocity in the tau-tau frame
    beta = np.sqrt(np.clip(1.0 - 4.0 * m_tau**2 / s_safe, 0.0, None))
    # from +p (quark along +p) and from -p (Theta -> pi - Theta, then r, n -> -r, -n)
    flip = np.array([1.0, -1.0, -1.0])
    b_f, c_f, n_f = _state_quark_along_axis(cos_safe, beta, c)
    b_b, c_b, n_b = _state_quark_along_axis(-cos_safe, beta, c)
    b_b = b_b * flip
    c_b = c_b * flip[:, None] * flip[None, :]
    w_f = np.where(sign > 0, 1.0, np.where(sign < 0, 0.0, n_f / (n_f + n_b)))
    w_b = 1.0 - w_f
    b = w_f[:, None] * b_f + w_b[:, None] * b_b
    cc = w_f[:, None, None] * c_f + w_b[:, None, None] * c_b
    rate = np.where(sign > 0, n_f, np.where(sign < 0, n_b, 0.5 * (n_f + n_b)))
    bad = ~ok | ~np.isfinite(sign)
    b[bad] = np.nan
    cc[bad] = np.nan
    rate = np.where(bad, np.nan, rate)
    return SpinState(b, b.copy(), cc, rate)


def state_from_truth(events: Any, cos_theta: ArrayLike, **kwargs: Any) -> SpinState:
    """Per-event generated state of a Drell-Yan tau-tau table, shape (N,).

    s-hat = ``m_hat``^2, flavour from ``hard_id1`` (q qbar annihilation: |id1| = |id2|),
    quark direction from ``quark_pz_sign`` (+1: quark along beam 1 = +p of the beam and
    Collins-Soper axes; 0: unknown, mixture). ``cos_theta``: the frame's cos Theta (e.g.
    :attr:`ditau.spin.Polarimeters.cos_theta`). Events whose hard process is not q qbar give
    NaN. ``kwargs`` go to :func:`production_state`. Approximation: with ISR the Collins-Soper
    angle stands for the parton-level one (tomography.md "Helicity basis").
    """
    from ditau.schema import column_array

    id1 = np.asarray(column_array(events, "hard_id1")).astype(np.int64)
    id2 = np.asarray(column_array(events, "hard_id2")).astype(np.int64)
    qq = (np.abs(id1) >= 1) & (np.abs(id1) <= 6) & (id1 == -id2)
    sign = np.asarray(column_array(events, "quark_pz_sign")).astype(np.float64)
    m_hat = np.asarray(column_array(events, "m_hat"), dtype=np.float64)
    st = production_state(np.where(qq, m_hat**2, np.nan), cos_theta, np.where(qq, id1, 2),
                          np.where(qq, sign, 0.0), **kwargs)
    return st
