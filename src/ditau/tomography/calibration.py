"""Calibration of detector-level spin correlations to the truth level, by spin reweighting.

The decay distribution is linear in the spin state (tomography.md, "From detector to truth"):
p(h+, h-) = 1 + k+ B+.h+ + k- B-.h- + k+ k- h+^T C h-. Re-weighting every simulated event by
p_new / p_gen, computed from its *truth* analysers, turns the sample into one produced with
another spin state while leaving everything spin-independent (kinematics, detector response,
selection) as simulated. For a family of hypotheses (the diagonal of C scaled element by
element) we measure, on the same weighted events,

* the truth-level diagonal C_ii of all produced events (truth analysers, no selection) and
* the detector-level C_ii of the selected events (analysers from reconstructed tau momenta),

and fit the linear response C_det = a + R C_truth (3 x 3 R; the decay distribution is linear
in C, so a straight line is exact up to the normalisation of the weights). Applying R^-1 to a
measured detector-level C gives the truth-level C of the produced tau pairs; ATLAS calibrated
its ttbar entanglement marker the same way (arXiv:2311.07288).

Approximations (labelled): the generated state of each event is its LO Standard-Model state
(``SpinSample.state``: :func:`ditau.spin.state_from_truth`, with m_tautau, the quark flavour
and the tau mass) or, without it, the Z-pole expectation at its truth scattering angle
(:func:`lo_state`); rho legs use the optimal polarimeter or the visible
direction with a fixed analysing power and leptons the average -1/3, so the weights capture
the spin dependence of the analyser direction but not that of the energy sharing beyond it.
Decay densities that a hypothesis would make negative are clipped to 0 (counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ditau.physics import SIN2_THETA_EFF
from ditau.tomography.estimators import lo_expectation

#: Index of k, r, n in the analyser component arrays.
AXES = ("k", "r", "n")


@dataclass(frozen=True)
class SpinSample:
    """Per-event analysers (components in the {k, r, n} basis of each tau rest frame), the
    signed analysing powers (relative to each tau's spin), cos Theta, event weights and a
    validity mask. Length N.

    ``prod`` (optional, (N, 3)): the per-event products h+_i h-_i to use in
    :func:`diag_correlation` instead of ``h_p * h_m``, e.g. averaged over the sampled
    neutrino candidates of a generative reconstruction (a detector-level sample only; the
    reweighting, :func:`decay_density`, uses ``h_p`` and ``h_m``). ``obs`` (optional,
    (N, 16)): likewise the profile-likelihood fit's moment observables (1, h+, h-,
    h+ (x) h-) averaged over the candidates (:mod:`ditau.tomography.moments`)."""

    h_p: NDArray[np.float64]
    h_m: NDArray[np.float64]
    kappa_p: NDArray[np.float64]
    kappa_m: NDArray[np.float64]
    cos_theta: NDArray[np.float64]
    weight: NDArray[np.float64]
    valid: NDArray[np.bool_]
    prod: NDArray[np.float64] | None = None
    #: The generated spin state per event (B+ (N,3), B- (N,3), C (N,3,3)); None: the LO
    #: Z-pole expectation at each event's cos Theta (:func:`lo_state`).
    state: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]] | None = None
    obs: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        n = len(self.weight)
        for name in ("h_p", "h_m", "kappa_p", "kappa_m", "cos_theta", "valid", "prod", "obs"):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise ValueError(f"SpinSample: {name} has length {len(getattr(self, name))}, "
                                 f"weight has {n}")

    def __len__(self) -> int:
        return len(self.weight)

    def subset(self, idx: ArrayLike) -> SpinSample:
        i = np.asarray(idx)
        return SpinSample(self.h_p[i], self.h_m[i], self.kappa_p[i], self.kappa_m[i],
                          self.cos_theta[i], self.weight[i], self.valid[i],
                          None if self.prod is None else self.prod[i],
                          None if self.state is None else tuple(x[i] for x in self.state),
                          None if self.obs is None else self.obs[i])


def lo_state(cos_theta: ArrayLike, sin2_theta_eff: float = SIN2_THETA_EFF
             ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """LO spin state per event as arrays: (B+ (N,3), B- (N,3), C (N,3,3)), from
    :func:`~ditau.tomography.estimators.lo_expectation` with the quark direction unknown
    (C = diag(1, C_rr, -C_rr), B+_k = B-_k = -A_tau). Non-finite cos Theta -> Theta = pi/2."""
    c = np.asarray(cos_theta, dtype=float)
    lo = lo_expectation(np.where(np.isfinite(c), c, 0.0), sin2_theta_eff)
    n = len(c)
    C = np.zeros((n, 3, 3))
    for i, key in enumerate(("kk", "rr", "nn")):
        C[:, i, i] = lo[key]
    B = np.zeros((n, 3))
    B[:, 0] = lo["bk"]
    return B, B.copy(), C


def decay_density(s: SpinSample, B_p: NDArray[np.float64], B_m: NDArray[np.float64],
                  C: NDArray[np.float64]) -> NDArray[np.float64]:
    """1 + k+ B+.h+ + k- B-.h- + k+ k- h+^T C h- per event (tomography.md, decay distribution);
    B and C per event ((N,3), (N,3,3)) or common ((3,), (3,3))."""
    hp = np.nan_to_num(s.h_p)
    hm = np.nan_to_num(s.h_m)
    bp = np.broadcast_to(B_p, hp.shape)
    bm = np.broadcast_to(B_m, hm.shape)
    cc = np.broadcast_to(C, (len(hp), 3, 3))
    return (1.0 + s.kappa_p * np.sum(bp * hp, 1) + s.kappa_m * np.sum(bm * hm, 1)
            + s.kappa_p * s.kappa_m * np.einsum("ni,nij,nj->n", hp, cc, hm))


def _generated(truth: SpinSample) -> tuple[NDArray[np.float64], ...]:
    """The generated state of every event (``truth.state``, else the LO Z-pole state) and its
    decay density p_gen."""
    B_p, B_m, C = truth.state if truth.state is not None else lo_state(truth.cos_theta)
    return B_p, B_m, C, decay_density(truth, B_p, B_m, C)


def _weights(truth: SpinSample, scale: NDArray[np.float64],
             generated: tuple[NDArray[np.float64], ...]) -> tuple[NDArray[np.float64], int]:
    B_p, B_m, C, p_gen = generated
    C_new = C * scale[None, :, None]  # row i scaled: diag(C)_i -> scale_i diag(C)_i
    p_new = decay_density(truth, B_p, B_m, C_new)
    bad = (p_new < 0) & truth.valid
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(truth.valid & (p_gen > 0), np.clip(p_new, 0.0, None) / p_gen, 0.0)
    return w, int(bad.sum())


def hypothesis_weights(truth: SpinSample, scale: ArrayLike) -> tuple[NDArray[np.float64], int]:
    """Weights p_new/p_gen turning the sample into one with diag(C) scaled by ``scale``
    (3 factors for k, r, n; B unchanged). Returns (weights, number of clipped densities)."""
    return _weights(truth, np.asarray(scale, dtype=float), _generated(truth))


@dataclass(frozen=True)
class Hypotheses:
    """Spin hypotheses (rows of ``scales``; the first is nominal) and the per-event weights
    (H, N) that realise them. They depend on the analysers, not on the event weights, so
    one set serves every bootstrap replica of a sample."""

    scales: NDArray[np.float64]
    weights: NDArray[np.float64]
    clipped: int


def spin_hypotheses(truth: SpinSample, n_hypotheses: int = 24, seed: int = 0,
                    scale_range: tuple[float, float] = (0.0, 1.0)) -> Hypotheses:
    """The nominal state and ``n_hypotheses`` - 1 random scalings of diag(C) (seeded), with
    their weights for ``truth``."""
    rng = np.random.default_rng(seed)
    lo, hi = scale_range
    scales = np.vstack([np.ones(3), rng.uniform(lo, hi, size=(max(n_hypotheses, 5) - 1, 3))])
    gen = _generated(truth)
    ws, clipped = [], 0
    for sc in scales:
        w, nclip = _weights(truth, sc, gen)
        ws.append(w)
        clipped += nclip
    return Hypotheses(scales, np.array(ws), clipped)


def diag_correlation(s: SpinSample, extra_weight: ArrayLike | None = None
                     ) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """Weighted C_ii = 9 <h+_i h-_i / (k+ k-)> (tomography.md) over valid events: (C_diag,
    its 3x3 statistical covariance, effective number of events). Uses ``s.prod`` for
    h+_i h-_i when it is set."""
    w = s.weight * (1.0 if extra_weight is None else np.asarray(extra_weight))
    prod = s.h_p * s.h_m if s.prod is None else s.prod
    ok = s.valid & np.all(np.isfinite(prod), 1) & (w > 0)
    w = w[ok]
    x = 9.0 * prod[ok] / (s.kappa_p[ok] * s.kappa_m[ok])[:, None]
    sw = w.sum()
    if not sw > 0:
        nan = np.full(3, np.nan)
        return nan, np.full((3, 3), np.nan), 0.0
    mean = (w[:, None] * x).sum(0) / sw
    d = x - mean
    # covariance of a weighted mean: sum w^2 (x - mean)(x - mean)^T / (sum w)^2
    cov = np.einsum("n,ni,nj->ij", w**2, d, d) / sw**2
    n_eff = sw**2 / np.sum(w**2)
    return mean, cov, float(n_eff)


@dataclass
class Calibration:
    """C_det = offset + response @ C_truth for the diagonal (k, r, n) of C."""

    offset: NDArray[np.float64]
    response: NDArray[np.float64]
    truth_nominal: NDArray[np.float64]
    det_nominal: NDArray[np.float64]
    hypotheses: NDArray[np.float64] = field(repr=False)
    truth_points: NDArray[np.float64] = field(repr=False)
    det_points: NDArray[np.float64] = field(repr=False)
    clipped: int = 0

    def apply(self, c_det: ArrayLike, cov_det: ArrayLike | None = None
              ) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """Truth-level C diagonal (and covariance) from a detector-level measurement."""
        inv = np.linalg.inv(self.response)
        c = inv @ (np.asarray(c_det, dtype=float) - self.offset)
        if cov_det is None:
            return c, None
        return c, inv @ np.asarray(cov_det, dtype=float) @ inv.T

    def max_residual(self) -> float:
        """Largest |C_det - (a + R C_truth)| over the hypotheses (linearity check)."""
        pred = self.offset + self.truth_points @ self.response.T
        return float(np.max(np.abs(pred - self.det_points)))


def build_calibration(truth: SpinSample, det: SpinSample, det_index: ArrayLike,
                      n_hypotheses: int = 24, seed: int = 0,
                      scale_range: tuple[float, float] = (0.0, 1.0),
                      hypotheses: Hypotheses | None = None) -> Calibration:
    """Fit the detector-to-truth response of diag(C).

    ``truth``: truth analysers of every produced event (no selection); ``det``: analysers from
    the reconstructed tau momenta of the selected events; ``det_index``: position of each
    selected event in ``truth`` (its spin weights come from its truth analysers). Hypotheses:
    ``hypotheses`` if given (from :func:`spin_hypotheses` on the same analysers), else
    ``spin_hypotheses(truth, n_hypotheses, seed, scale_range)``.
    """
    idx = np.asarray(det_index)
    if len(idx) != len(det):
        raise ValueError(f"det_index has {len(idx)} entries for {len(det)} selected events")
    hyp = hypotheses or spin_hypotheses(truth, n_hypotheses, seed, scale_range)
    if hyp.weights.shape[1] != len(truth):
        raise ValueError(f"hypotheses were built for {hyp.weights.shape[1]} events, the truth "
                         f"sample has {len(truth)}")
    tp = [diag_correlation(truth, w)[0] for w in hyp.weights]
    dp = [diag_correlation(det, w[idx])[0] for w in hyp.weights]
    t_arr, d_arr = np.array(tp), np.array(dp)
    design = np.hstack([np.ones((len(hyp.scales), 1)), t_arr])
    coef, *_ = np.linalg.lstsq(design, d_arr, rcond=None)
    return Calibration(offset=coef[0], response=coef[1:].T, truth_nominal=t_arr[0],
                       det_nominal=d_arr[0], hypotheses=hyp.scales, truth_points=t_arr,
                       det_points=d_arr, clipped=hyp.clipped)
