"""Weighted-sample statistics shared by the plots (:mod:`ditau.plots`) and the evaluation
(:mod:`ditau.evaluate.hwhm`): histogram content with sum-of-weights-squared errors and
weighted quantiles. Pure numpy (and ``hist``); no plotting.
"""

from __future__ import annotations

from collections.abc import Sequence

import hist
import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def hist_content(values: ArrayLike, weights: ArrayLike, edges: ArrayLike,
                 fold: bool = True) -> tuple[FloatArray, FloatArray]:
    """Weighted histogram: ``(sum w, sum w^2)`` per bin of ``edges``.

    Non-finite values (NaN = absent object) and non-finite weights are dropped. With ``fold``,
    under/overflow are added to the first/last bin (ATLAS convention for input plots).
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), x.shape).ravel()
    ok = np.isfinite(x) & np.isfinite(w)
    h = hist.Hist(hist.axis.Variable(np.asarray(edges, dtype=np.float64)),
                  storage=hist.storage.Weight())
    h.fill(x[ok], weight=w[ok])
    view = h.view(flow=True)
    sumw = np.array(view.value, dtype=np.float64)
    sumw2 = np.array(view.variance, dtype=np.float64)
    if fold:
        for arr in (sumw, sumw2):
            arr[1] += arr[0]
            arr[-2] += arr[-1]
    return sumw[1:-1], sumw2[1:-1]


def weighted_quantiles(values: ArrayLike, weights: ArrayLike,
                       qs: Sequence[float]) -> FloatArray:
    """Quantiles of a weighted sample (linear interpolation of the mid-point CDF).

    Non-finite entries are dropped; NaNs come back if nothing (or no positive weight) is left.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), x.shape).ravel()
    ok = np.isfinite(x) & np.isfinite(w) & (w > 0)
    x, w = x[ok], w[ok]
    if not len(x):
        return np.full(len(qs), np.nan)
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    # Mid-point empirical CDF: (cumsum(w) - w/2) / sum(w) (Hyndman & Fan 1996, def. 5).
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    return np.interp(np.asarray(qs, dtype=np.float64), cdf, x)


__all__ = ["hist_content", "weighted_quantiles"]
