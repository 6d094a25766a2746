"""Half width at half maximum (HWHM) and peak (mode) of a sampled distribution.

The reference quotes its resolutions as the HWHM of the relative residuals
(shared/reference/ml.md, arXiv:2504.01496). A sample has no maximum, so the HWHM is defined
here through a histogram, precisely:

1. **Sample.** Entries with a finite value and a finite, positive weight; ``n_eff`` is Kish's
   effective size ``(sum w)^2 / sum w^2`` (= n for unit weights). Empty -> NaN.
2. **Range.** ``[max(min x, q50 - 5 IQR), min(max x, q50 + 5 IQR)]`` from the (weighted)
   quartiles: robust against the long tails of ratio residuals, wide enough to hold the
   half-maximum points of any unimodal peak (a Cauchy's are at q50 +- IQR/2, a Gaussian's at
   q50 +- 0.87 IQR). An IQR of 0 falls back to ``(q95 - q05) / 2.44`` (same scale for a
   Gaussian); a sample without spread (below 1e-9 of its magnitude: rounding) has HWHM 0
   and its median as peak.
3. **Bins.** Two passes over the same steps 3-6. Pass 1: Freedman-Diaconis width
   ``h1 = 2 IQR n_eff^(-1/3)`` (Z. Wahrscheinlichkeitstheorie verw. Geb. 57 (1981) 453),
   giving a first HWHM ``W1``. Pass 2 (the result): ``h = 0.7 W1 n_eff^(-1/5)``: bins scaled
   to the peak itself (heavy tails inflate the IQR), shrinking at the n^(-1/5) rate that
   balances the h^2 smoothing bias against the 1/sqrt(n h) noise (Silverman, Density
   Estimation (1986) sec. 3.3). Between 3 and 4000 bins; entries outside the range are
   dropped (not folded).
4. **Smoothing.** The bin contents are convolved ``n_smooth`` times (default 1) with the
   binomial kernel (1, 2, 1)/4 (edges padded with their value). Binning and smoothing add
   about (1/12 + n_smooth/2) h^2 to the variance: at n = 200k a relative HWHM bias of
   +0.1 % (Gaussian) to +0.3 % (Cauchy), with a statistical spread of 0.8 % / 1.2 %.
5. **Peak.** The highest smoothed bin, refined by a least-squares parabola through the smoothed
   bins within +- 0.3 x (a first HWHM estimate) of it (at least the three around the maximum):
   the vertex gives the peak position (the mode, :func:`peak`) and the maximum height H.
6. **Half-maximum points.** Walking outwards from the peak bin, the first bin centre on each
   side whose smoothed content is below H/2; the crossing is interpolated linearly between it
   and its inner neighbour. No crossing inside the range: that range edge is used (then the
   HWHM is a lower bound; ``HalfMax.closed`` says so).
7. **HWHM** = (right - left) / 2.

For a Gaussian this gives sqrt(2 ln 2) sigma = 1.1774 sigma, for a Cauchy its scale gamma
(tested to 2 %). Small samples give finite values with a larger spread (n = 100: about
+-20 %), never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ditau.stats import hist_content, weighted_quantiles

FloatArray = NDArray[np.float64]

#: sqrt(2 ln 2): the HWHM of a Gaussian in units of sigma.
GAUSS_HWHM_PER_SIGMA = float(np.sqrt(2.0 * np.log(2.0)))

_RANGE_IQR = 5.0
_MAX_BINS = 4000
_MIN_BINS = 3
_PEAK_FIT_FRACTION = 0.3
_NO_SPREAD = 1e-9
_PASS2_SCALE = 0.7
_PASS2_POWER = 0.2


@dataclass(frozen=True)
class HalfMax:
    """Result of the half-maximum analysis (see the module docstring for the definition).

    ``peak``: position of the maximum (the mode); ``height``: smoothed maximum (sum of weights
    per bin); ``left``/``right``: half-maximum points; ``hwhm`` = (right - left)/2;
    ``bin_width``; ``closed``: both crossings were found inside the histogram range;
    ``n``: entries used.
    """

    peak: float
    height: float
    left: float
    right: float
    hwhm: float
    bin_width: float
    closed: bool
    n: int


_NAN = HalfMax(np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, False, 0)


def _clean(values: ArrayLike, weights: ArrayLike | None) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(values, dtype=np.float64).ravel()
    w = np.ones_like(x) if weights is None else \
        np.broadcast_to(np.asarray(weights, dtype=np.float64), x.shape).ravel()
    ok = np.isfinite(x) & np.isfinite(w) & (w > 0)
    return x[ok], w[ok]


def _smooth(y: FloatArray, passes: int) -> FloatArray:
    for _ in range(passes):
        p = np.concatenate([y[:1], y, y[-1:]])
        y = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
    return y


def _vertex(xc: FloatArray, y: FloatArray, i: int, halfwin: float) -> tuple[float, float]:
    """Least-squares parabola through the bins within ``halfwin`` of bin ``i`` (at least
    i-1..i+1): (vertex position, height); falls back to the bin itself if not concave."""
    n = len(y)
    if i == 0 or i == n - 1:
        return float(xc[i]), float(y[i])
    sel = np.abs(xc - xc[i]) <= halfwin
    sel[i - 1:i + 2] = True
    u = xc[sel] - xc[i]
    scale = float(np.max(np.abs(u)))
    t = u / scale  # |t| <= 1: well-conditioned normal equations
    (c, b, a), *_ = np.linalg.lstsq(np.stack([np.ones_like(t), t, t * t], axis=1), y[sel],
                                    rcond=None)
    if not a < 0:
        return float(xc[i]), float(y[i])
    t0 = float(np.clip(-b / (2.0 * a), t.min(), t.max()))
    return float(xc[i] + t0 * scale), float(c - b * b / (4.0 * a))


def _crossing(xc: FloatArray, y: FloatArray, i: int, level: float, step: int,
              edge: float) -> tuple[float, bool]:
    """First point from bin ``i`` in direction ``step`` where ``y`` falls below ``level``."""
    side = y[i + step::step] if step > 0 else y[i - 1::-1] if i > 0 else y[:0]
    below = np.flatnonzero(side < level)
    if not len(below):
        return edge, False
    j = i + step * (int(below[0]) + 1)
    k = j - step  # inner neighbour (at or above the level)
    y0, y1 = y[k], y[j]
    t = (y0 - level) / (y0 - y1) if y0 != y1 else 0.5
    return float(xc[k] + t * (xc[j] - xc[k])), True


def half_max(values: ArrayLike, weights: ArrayLike | None = None,
             n_smooth: int = 1) -> HalfMax:
    """Peak and half-maximum points of the distribution of ``values`` (module docstring)."""
    x, w = _clean(values, weights)
    if not len(x):
        return _NAN
    q05, q25, q50, q75, q95 = weighted_quantiles(x, w, (0.05, 0.25, 0.5, 0.75, 0.95))
    iqr = q75 - q25
    if not iqr > 0:
        # Gaussian: IQR = 1.349 sigma, q95 - q05 = 3.290 sigma -> ratio 2.44.
        iqr = (q95 - q05) / 2.44
    if not iqr > _NO_SPREAD * max(abs(q05), abs(q95)):
        return HalfMax(float(q50), float(w.sum()), float(q50), float(q50), 0.0, 0.0, True,
                       len(x))
    n_eff = w.sum() ** 2 / np.sum(w * w)
    lo = max(float(x.min()), q50 - _RANGE_IQR * iqr)
    hi = min(float(x.max()), q50 + _RANGE_IQR * iqr)
    # Pass 1: Freedman-Diaconis bins; pass 2: bins scaled to the pass-1 HWHM.
    h = 2.0 * iqr * n_eff ** (-1.0 / 3.0)
    res = _analyse(x, w, lo, hi, h, n_smooth)
    if res[4] > 0:
        h = _PASS2_SCALE * res[4] * n_eff ** (-_PASS2_POWER)
        res = _analyse(x, w, lo, hi, h, n_smooth)
    return HalfMax(*res, len(x))


def _analyse(x: FloatArray, w: FloatArray, lo: float, hi: float, h: float,
             n_smooth: int) -> tuple[float, float, float, float, float, float, bool]:
    """Steps 3-7 of the definition with bin width ``h`` on ``[lo, hi]``."""
    nbins = int(np.clip(np.ceil((hi - lo) / h), _MIN_BINS, _MAX_BINS))
    edges = np.linspace(lo, hi, nbins + 1)
    if hi == x.max():  # the maximum itself belongs in the last bin
        edges[-1] = np.nextafter(hi, np.inf)
    content, _ = hist_content(x, w, edges, fold=False)
    y = _smooth(content, n_smooth)
    xc = 0.5 * (edges[:-1] + edges[1:])
    width = float(edges[1] - edges[0])

    i = int(np.argmax(y))
    # First pass: three-point peak height, crossings -> width estimate for the parabola fit.
    _, h0 = _vertex(xc, y, i, 0.0)
    l0, _ = _crossing(xc, y, i, 0.5 * h0, -1, lo)
    r0, _ = _crossing(xc, y, i, 0.5 * h0, +1, hi)
    pos, height = _vertex(xc, y, i, _PEAK_FIT_FRACTION * 0.5 * (r0 - l0))
    left, lclosed = _crossing(xc, y, i, 0.5 * height, -1, lo)
    right, rclosed = _crossing(xc, y, i, 0.5 * height, +1, hi)
    return (pos, height, left, right, 0.5 * (right - left), width, lclosed and rclosed)


def hwhm(values: ArrayLike, weights: ArrayLike | None = None, n_smooth: int = 1) -> float:
    """Half width at half maximum of the distribution of ``values`` (NaN if empty).

    Definition: module docstring of :mod:`ditau.evaluate.hwhm`.
    """
    return half_max(values, weights, n_smooth).hwhm


def peak(values: ArrayLike, weights: ArrayLike | None = None, n_smooth: int = 1) -> float:
    """The mode of the distribution of ``values``: vertex of the parabola fitted to the
    smoothed histogram's maximum, as in :func:`hwhm` (NaN if empty)."""
    return half_max(values, weights, n_smooth).peak


__all__ = ["GAUSS_HWHM_PER_SIGMA", "HalfMax", "half_max", "hwhm", "peak"]
