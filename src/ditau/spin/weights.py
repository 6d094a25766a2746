"""Spin weights: the decay density of a tau pair in a spin state, and reweighting between states.

For a pair in the state (B+, B-, C) (tomography.md "Density matrix", tau+ first) and decays with
polarimeters h+- (:mod:`ditau.spin.polarimeters`; rate 1 + h.s for one tau of spin s), the
joint decay density relative to unpolarised decays is

    w(B, C) = 4 Tr[rho (1 + h+.sigma)/2 x (1 + h-.sigma)/2]
            = 1 + B+.h+ + B-.h- + h+^T C h-

(TauSpinner: Przedzinski, Richter-Was, Was, EPJC 79 (2019) 91: wt = sum_ab R_ab h+_a h-_b, h_0 = 1;
shared/reference/tomography.md "Decay-angle estimators" with h = kappa h_hat). For a physical
state and |h+-| <= 1 it is >= 0 (the trace of rho with a product of positive operators).
Reweighting events generated in the state G to the state T: w_T / w_G. Used by the
generation (spin weights for unpolarised samples), the tomography's calibration and its
closure tests.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ditau.spin.density import SpinState, state_from_truth


def decay_density(h_p: ArrayLike, h_m: ArrayLike, state: SpinState) -> NDArray[np.float64]:
    """1 + B+.h+ + B-.h- + h+^T C h- per event, shape (N,).

    ``h_p``/``h_m``: polarimeters ``(N, 3)`` (k, r, n; relative to each tau's spin, NaN rows
    count as h = 0, i.e. no spin information); ``state``: per-event ((N,3), (N,3), (N,3,3))
    or common ((3,), (3,), (3,3)) :class:`SpinState`. NaN entries of a per-event state give
    NaN. Formula: module docstring (TauSpinner EPJC 79 (2019) 91).
    """
    hp = np.nan_to_num(np.atleast_2d(np.asarray(h_p, dtype=np.float64)))
    hm = np.nan_to_num(np.atleast_2d(np.asarray(h_m, dtype=np.float64)))
    if hp.shape != hm.shape or hp.shape[1:] != (3,):
        raise ValueError(f"h_p and h_m must both be (N, 3), got {hp.shape} and {hm.shape}")
    bp = np.broadcast_to(state.B_p, hp.shape)
    bm = np.broadcast_to(state.B_m, hm.shape)
    c = np.broadcast_to(state.C, (len(hp), 3, 3))
    # w = 1 + B+.h+ + B-.h- + h+^T C h- (TauSpinner; tomography.md decay distribution)
    return (1.0 + np.einsum("ni,ni->n", bp, hp) + np.einsum("nj,nj->n", bm, hm)
            + np.einsum("ni,nij,nj->n", hp, c, hm))


def spin_weight(h_p: ArrayLike, h_m: ArrayLike, target: SpinState,
                generated: SpinState | None = None, *,
                clip_negative: bool = True) -> NDArray[np.float64]:
    """Per-event weight taking events generated in ``generated`` to ``target``, shape (N,).

    w = decay_density(target) / decay_density(generated); ``generated=None``: unpolarised
    decays (density 1), as for a sample generated with ``tau_spin_correlations: false``.
    Events with a generated density <= 0 or non-finite get weight 0 (they cannot have been
    generated). A target that is not a physical state can give negative densities: clipped to
    0 with ``clip_negative`` (count them with ``decay_density(h_p, h_m, target) < 0``).
    Over the generated sample the weights average to 1 (E_G[w_T / w_G] = integral of w_T = 1
    since E[h] = 0 for unpolarised decays).
    """
    num = decay_density(h_p, h_m, target)
    if clip_negative:
        num = np.clip(num, 0.0, None)
    if generated is None:
        return np.where(np.isfinite(num), num, 0.0)
    den = decay_density(h_p, h_m, generated)
    ok = np.isfinite(num) & np.isfinite(den) & (den > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, num / np.where(ok, den, 1.0), 0.0)


#: Target states of :func:`truth_weights` (``GenerateConfig.spin_state``).
TargetState = Literal["sm", "separable", "unpolarised"]


def target_state(events: Any, cos_theta: ArrayLike, state: TargetState = "sm") -> SpinState:
    """The per-event target state of :func:`truth_weights`, shape (N,).

    ``"sm"``: the LO Standard-Model state of each event (:func:`~ditau.spin.state_from_truth`:
    m_hat, cos Theta, flavour, quark direction); ``"separable"``: the product of its two
    single-tau states, B+- as for "sm" and C = B+ B-^T (rho = rho+ x rho-: separable, zero
    concurrence; for validation); ``"unpolarised"``: B = 0, C = 0.
    """
    if state not in ("sm", "separable", "unpolarised"):
        raise ValueError(f"state must be 'sm', 'separable' or 'unpolarised', not {state!r}")
    n = len(np.atleast_1d(np.asarray(cos_theta)))
    if state == "unpolarised":
        return SpinState(np.zeros((n, 3)), np.zeros((n, 3)), np.zeros((n, 3, 3)))
    sm = state_from_truth(events, cos_theta)
    if state == "sm":
        return sm
    # product state: <s+_i s-_j> = <s+_i><s-_j> for rho = rho+ x rho- (tomography.md)
    return SpinState(sm.B_p, sm.B_m, np.einsum("ni,nj->nij", sm.B_p, sm.B_m), sm.rate)


def truth_weights(events: Any, state: TargetState = "sm",
                  axis: Literal["collins-soper", "beam"] = "collins-soper"
                  ) -> NDArray[np.float64]:
    """Spin weights of unpolarised tau-pair decays to ``state`` from the truth, shape (N,).

    ``events``: a truth table (pyarrow Table, pandas, mapping of arrays) of a q qbar ->
    gamma*/Z -> tau tau sample generated with unpolarised decays (``spin: weights``); the
    polarimeters are :func:`~ditau.spin.from_truth`'s (exact for pi, rho and, with the
    ``nul_*`` columns, e and mu; other modes h = 0), the state :func:`target_state` in the same
    helicity frame (``axis``; Collins-Soper by default, as the tomography). Weight
    w = 1 + B+.h+ + B-.h- + h+ C h- (:func:`spin_weight`, TauSpinner EPJC 79 (2019) 91);
    averages to 1 over the sample. Events without a defined frame get 1 (h = 0); events whose
    state is undefined (not q qbar: NaN state) get 0 (they cannot be produced at LO).
    """
    from ditau.spin.polarimeters import from_truth

    pol = from_truth(events, axis=axis)
    return spin_weight(pol.h_p, pol.h_m, target_state(events, pol.cos_theta, state))
