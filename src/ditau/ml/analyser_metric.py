"""Model selection on what the spin measurement needs: the resolution of the rest-frame spin
analysers (:func:`analyser_resolution`), and the weights that flatten the training sample in
the true m_tautau (:func:`flat_mass_weights`).

The analyser of each leg is its visible decay products' direction (charged + neutral object
of the point cloud; for pi, e, mu the neutral slot is empty), taken in the tau rest frame
reached from the tau-tau frame by a rotation-free boost and projected on the helicity basis
{k, r, n} (shared/reference/tomography.md "Helicity basis"; :mod:`ditau.physics.helicity`).
The true analyser uses the same visible products with the true neutrinos, so the figure
measures the neutrino reconstruction alone. Numpy only (no torch).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from ditau.physics import momentum4, tau_four_momenta
from ditau.physics.helicity import analyser_components, helicity_frame

#: Slots (charged, neutral) of the tau+ and tau- legs in the ML point cloud
#: (:class:`ditau.ml.features.EventArrays`; the same as the visible-frame parametrisation's).
LEG_SLOTS: Final[tuple[tuple[int, int], ...]] = ((0, 1), (2, 3))


def _leg_visible(p4: NDArray[np.float64]) -> list[NDArray[np.float64]]:
    return [p4[:, a] + p4[:, b] for a, b in LEG_SLOTS]


def _taus(vis: list[NDArray[np.float64]], nu: NDArray[np.float64]) -> list[NDArray[np.float64]]:
    """On-shell tau four-momenta (N, 4) of both legs (:func:`ditau.physics.tau_four_momenta`:
    the tau 3-momentum is the sum of its decay products', its mass is m_tau)."""
    return [tau_four_momenta(v, nu[:, 3 * leg:3 * leg + 3]) for leg, v in enumerate(vis)]


def analyser_components_of(p4: NDArray[np.float64], nu: NDArray[np.float64]
                           ) -> NDArray[np.float64]:
    """The (k, r, n) components of both legs' visible analysers, ``(N, 2, 3)``.

    ``p4``: the point cloud ``(N, 7, 4)`` (px, py, pz, E; lab frame, GeV) of
    :class:`~ditau.ml.features.EventArrays`; ``nu``: neutrino 3-momenta ``(N, 6)`` (tau+ leg,
    then tau- leg; :data:`~ditau.ml.features.TARGETS` order, lab frame). NaN where the
    helicity basis is undefined.
    """
    p4 = np.asarray(p4, dtype=np.float64)
    nu = np.asarray(nu, dtype=np.float64)
    if p4.ndim != 3 or p4.shape[1:] != (7, 4) or nu.shape != (len(p4), 6):
        raise ValueError(f"analyser_components_of: need p4 (N, 7, 4) and nu (N, 6), got "
                         f"{p4.shape} and {nu.shape}")
    vis = _leg_visible(p4)
    tau_p, tau_m = (momentum4(t) for t in _taus(vis, nu))
    with np.errstate(all="ignore"):
        frame = helicity_frame(tau_p, tau_m)
        h = [analyser_components(momentum4(v), t, frame) for v, t in zip(vis, (tau_p, tau_m),
                                                                         strict=True)]
    return np.stack(h, axis=1)


def analyser_resolution(p4: NDArray[np.float64], nu_pred: NDArray[np.float64],
                        nu_true: NDArray[np.float64]) -> float:
    """The mean over both legs and the three components (k, r, n) of the median
    |h_reco - h_true| of the visible analysers (dimensionless, in [0, 2]; lower is better).

    ``p4``: point cloud ``(N, 7, 4)``; ``nu_pred``, ``nu_true``: ``(N, 6)`` neutrino
    3-momenta (lab frame, GeV). Events where either basis is undefined are left out; NaN if
    none is left.
    """
    d = np.abs(analyser_components_of(p4, nu_pred) - analyser_components_of(p4, nu_true))
    ok = np.all(np.isfinite(d.reshape(len(d), -1)), axis=1)
    if not ok.any():
        return float("nan")
    return float(np.mean(np.median(d[ok], axis=0)))


def flat_mass_weights(m_true: NDArray[np.float64], mass_range: tuple[float, float],
                      bin_width: float, max_ratio: float) -> NDArray[np.float64]:
    """Per-event sampling weights that make the true m_tautau spectrum flat in
    ``mass_range`` (GeV), normalised to mean 1.

    w = 1 / (events in the event's ``bin_width`` bin), with events outside the range counted
    in the nearest edge bin; the largest weight is at most ``max_ratio`` times the smallest
    (bins with fewer than 1/max_ratio of the fullest bin's events stay under-represented rather
    than repeating a handful of events). ValueError for non-finite masses or bad settings.
    """
    m = np.asarray(m_true, dtype=np.float64)
    lo, hi = float(mass_range[0]), float(mass_range[1])
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi):
        raise ValueError(f"mass_range must be 0 <= lo < hi, got {mass_range}")
    if not bin_width > 0 or not max_ratio >= 1:
        raise ValueError(f"need bin_width > 0 and max_ratio >= 1, got {bin_width}, "
                         f"{max_ratio}")
    if len(m) == 0:
        return m.copy()
    if not np.all(np.isfinite(m)):
        bad = int(np.flatnonzero(~np.isfinite(m))[0])
        raise ValueError(f"true m_tautau is not finite for event index {bad}")
    n_bins = max(1, int(np.ceil((hi - lo) / bin_width)))
    idx = np.clip(np.floor((m - lo) / bin_width).astype(np.int64), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins).astype(np.float64)
    w_bin = np.where(counts > 0, 1.0 / np.maximum(counts, 1.0), 0.0)
    w_bin = np.minimum(w_bin, max_ratio * w_bin[counts > 0].min())
    w = w_bin[idx]
    return w / w.mean()


__all__ = ["LEG_SLOTS", "analyser_components_of", "analyser_resolution", "flat_mass_weights"]
