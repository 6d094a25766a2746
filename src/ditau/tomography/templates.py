"""Detector-level templates of the tau-pair spin state: the expected histograms are linear in
the 15 spin parameters.

For one event with truth polarimeters h+- (:mod:`ditau.spin`: relative to each tau's spin,
analysing power included, 0 for modes without one) the decay density relative to unpolarised
decays is w(theta) = 1 + B+.h+ + B-.h- + h+^T C h- (TauSpinner, Przedzinski, Richter-Was, Was,
EPJC 79 (2019) 91). Selection, detector response and reconstruction do not depend on the spin
except through the decay products, so every detector-level histogram of a sample of τ pairs in
the (constant) state theta = (B+, B-, C) is

    N_b(theta) = T0_b + sum_i B+_i T[B+_i]_b + sum_j B-_j T[B-_j]_b + sum_ij C_ij T[C_ij]_b,
    T0_b = sum_e u_e [e in b],  T[B+_i]_b = sum_e u_e h+_ie [e in b],
    T[C_ij]_b = sum_e u_e h+_ie h-_je [e in b],

with u_e the event's weight divided by the decay density of the state it was generated in
(1 for ``--spin weights`` samples, which are unpolarised; the per-event Standard-Model density
for Pythia's exact correlated decays), so the templates do not depend on the generated state
(CMS TOP-23-001 and the reference's template fit use the same linearity).

The detector-level observable: per reconstructed channel, the signs (``bins`` = 2) or thirds
(3) of the six components of the two measured analyser unit vectors in their tau rest
frames (the reconstruction method's tau momenta, the {k, r, n} helicity basis of
:mod:`ditau.physics.helicity`): bins**6 bins per channel. The parameters measured are the spin
state of the tau pairs of the signal region (fiducial, truth level): for a state that varies
from event to event (the Standard Model's, with cos Theta, m_tautau and the quark flavour)
its average over the selected events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ditau.tomography.estimators import PARAMETER_NAMES

#: Template names: the unpolarised template and one per spin parameter.
TEMPLATE_NAMES: tuple[str, ...] = ("T0", *PARAMETER_NAMES)


def bin_index(a_p: ArrayLike, a_m: ArrayLike, bins: int = 2) -> NDArray[np.int64]:
    """Bin of each event in the (bins**6) grid of the six analyser components, shape (N,).

    ``a_p``/``a_m``: ``(N, 3)`` measured analyser unit-vector components (k, r, n) in [-1, 1];
    rows with a non-finite component get -1 (not histogrammed). Equal-width bins in each
    component."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    a = np.hstack([np.asarray(a_p, dtype=float), np.asarray(a_m, dtype=float)])
    ok = np.all(np.isfinite(a), axis=1)
    idx = np.clip(np.floor((np.nan_to_num(a) + 1.0) * 0.5 * bins), 0, bins - 1).astype(np.int64)
    flat = np.ravel_multi_index(tuple(idx.T), (bins,) * 6)
    return np.where(ok, flat, -1)


def basis_weights(h_p: ArrayLike, h_m: ArrayLike) -> NDArray[np.float64]:
    """Per-event factors of the 16 templates: (1, h+_i, h-_j, h+_i h-_j), shape (N, 16), in the
    order of :data:`TEMPLATE_NAMES`. NaN polarimeters count as 0 (no spin information)."""
    hp = np.nan_to_num(np.asarray(h_p, dtype=float))
    hm = np.nan_to_num(np.asarray(h_m, dtype=float))
    prod = np.einsum("ni,nj->nij", hp, hm).reshape(len(hp), 9)
    return np.hstack([np.ones((len(hp), 1)), hp, hm, prod])


@dataclass(frozen=True)
class Templates:
    """Templates of one sample: ``values`` (n_bins_total, 16) in events per fb^-1 (bins of all
    channels concatenated, channel ``c`` at ``slices[c]``), ``reference`` (16,) the
    coefficients (1, B+, B-, C) of the state whose MC-statistics error :attr:`sumw2`
    describes."""

    values: NDArray[np.float64]
    reference: NDArray[np.float64]
    channels: tuple[str, ...]
    bins: int
    n_events: int = 0
    slices: dict[str, slice] = field(default_factory=dict)
    #: (n_bins_total, 16, 16): sum over the bin's events of u^2 (basis x basis), the MC
    #: covariance of the 16 templates in each bin (their events are shared, so the templates
    #: are correlated); the prediction at theta has MC variance c^T cov c, c = (1, theta).
    cov: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 16, 16)),
                                     repr=False)

    def predict(self, theta: ArrayLike) -> NDArray[np.float64]:
        """Expected events per fb^-1 per bin for the 15 spin parameters ``theta``."""
        return self.values @ np.concatenate([[1.0], np.asarray(theta, dtype=float)])

    @property
    def sumw2(self) -> NDArray[np.float64]:
        """Sum of the squared event weights of the reference-state prediction per bin,
        c_ref^T cov c_ref (n_bins_total,)."""
        return np.einsum("bij,i,j->b", self.cov, self.reference, self.reference)

    @property
    def rel_mc_error(self) -> NDArray[np.float64]:
        """Relative MC-statistics error of the reference-state prediction per bin (inf where
        it is empty)."""
        ref = self.values @ self.reference
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ref > 0, np.sqrt(self.sumw2) / ref, np.inf)


def build_templates(weight: ArrayLike, h_p: ArrayLike, h_m: ArrayLike, bin_idx: ArrayLike,
                    channel: ArrayLike, channels: tuple[str, ...], bins: int = 2,
                    reference: ArrayLike | None = None) -> Templates:
    """Templates (module docstring) from per-event inputs, all of length N.

    ``weight``: u_e, events per fb^-1 divided by the generated state's decay density;
    ``h_p``/``h_m``: truth polarimeters (N, 3); ``bin_idx``: :func:`bin_index` (-1: skipped);
    ``channel``: reco channel label (events of other labels are skipped); ``reference``: the 15
    parameters of the state whose MC-statistics error ``sumw2`` describes (default: the
    per-event densities are not known here, so the unpolarised state, B = C = 0); pass the
    fitted or expected state. Vectorised (``np.bincount``)."""
    w = np.asarray(weight, dtype=float)
    basis = basis_weights(h_p, h_m)
    b = np.asarray(bin_idx)
    ch = np.asarray(channel).astype(str)
    per = bins**6
    ref = np.zeros(16) if reference is None else np.concatenate([[0.0], np.asarray(reference)])
    ref[0] = 1.0
    vals, covs, slices = [], [], {}
    iu = np.triu_indices(16)
    for i, name in enumerate(channels):
        sel = (ch == name) & (b >= 0) & np.isfinite(w) & (w != 0)
        wb = w[sel, None] * basis[sel]
        vals.append(np.stack([np.bincount(b[sel], weights=wb[:, k], minlength=per)
                              for k in range(16)], axis=1))
        # per-bin sum of (u basis)(u basis)^T: the upper triangle, then mirrored
        cv = np.zeros((per, 16, 16))
        for a, c in zip(*iu, strict=True):
            cv[:, a, c] = np.bincount(b[sel], weights=wb[:, a] * wb[:, c], minlength=per)
        cv = cv + np.triu(cv, 1).transpose(0, 2, 1)
        covs.append(cv)
        slices[name] = slice(i * per, (i + 1) * per)
    return Templates(np.vstack(vals) if vals else np.zeros((0, 16)),
                     ref, tuple(channels), bins,
                     len(w), slices, np.concatenate(covs) if covs else np.zeros((0, 16, 16)))


def histogram(weight: ArrayLike, bin_idx: ArrayLike, channel: ArrayLike,
              channels: tuple[str, ...], bins: int = 2) -> NDArray[np.float64]:
    """Weighted counts per bin (all channels concatenated as in :class:`Templates`): the
    pseudo-data histogram."""
    w = np.asarray(weight, dtype=float)
    b = np.asarray(bin_idx)
    ch = np.asarray(channel).astype(str)
    per = bins**6
    out = []
    for name in channels:
        sel = (ch == name) & (b >= 0) & np.isfinite(w)
        out.append(np.bincount(b[sel], weights=w[sel], minlength=per))
    return np.concatenate(out) if out else np.zeros(0)
