"""Drawing: histogram panels on a grid in ditau's style, written atomically as PNG.

A :class:`Panel` is one variable's reco sample (points with sqrt(sum w^2) errors) and,
optionally, its truth sample (a line), binned by a :class:`Binning`; :func:`draw_panels` puts
panels on a grid under a header with the figure label (:class:`ditau.plots.style.Label`:
ditau's own simulation, not an experiment's). Channel names are turned into labels here
(:func:`split_channel`, :func:`channel_tex`).

Plotting uses an explicit Agg canvas on a :class:`matplotlib.figure.Figure` (no pyplot
figure registry, no global backend switch) inside ``matplotlib.style.context`` (no rcParams
leak). Imports the statistics (:mod:`ditau.stats`), the channel registry (:mod:`ditau.physics`)
and the schema's atomic writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import matplotlib as mpl
import mplhep
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray

from ditau.physics import ANALYSIS_CHANNELS
from ditau.plots.style import STYLE, Label, default_label, draw_label
from ditau.schema import atomic_path
from ditau.stats import hist_content, weighted_quantiles

FloatArray = NDArray[np.float64]

_MODE_TEX: Final[dict[str, str]] = {"e": "e", "mu": r"\mu", "pi": r"\pi", "rho": r"\rho"}
_PNG: Final[str] = "png"


class PlotError(ValueError):
    """Bad input for the plotting (unknown channel, file without detector-level columns)."""


# --------------------------------------------------------------------------------------------
# Binning and panels


@dataclass(frozen=True)
class Binning:
    """``n`` equal bins on ``[lo, hi)``, with ranges from the data where a bound is None.

    ``hi=None``: the 99.5 % quantile of the data, rounded up. ``lo=None`` and ``hi=None``
    (residuals): symmetric about 0 with half-width |median| + 4 x the 68 % half-width,
    rounded up, at most ``cap``. Rounding: see :func:`_nice`.
    """

    n: int
    lo: float | None
    hi: float | None
    cap: float = float("inf")

    def edges(self, *samples: ArrayLike) -> FloatArray:
        """The ``n + 1`` bin edges, ranges from ``samples`` where a bound is None."""
        arrays = [np.asarray(s, dtype=np.float64).ravel() for s in samples]
        values = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.empty(0)
        lo, hi = self.lo, self.hi
        if lo is None:
            half = 1.0
            if len(values):
                q16, q50, q84 = np.quantile(values, (0.16, 0.5, 0.84))
                half = abs(q50) + 2.0 * (q84 - q16)
            half = min(_nice(half), self.cap)
            lo, hi = -half, half
        elif hi is None:
            span = float(np.quantile(values, 0.995)) - lo if len(values) else 1.0
            hi = lo + _nice(span)
        return np.linspace(lo, hi, self.n + 1)


def _nice(x: float) -> float:
    """Round a positive ``x`` up to 1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten
    (1 if not positive): readable axis ranges."""
    if not np.isfinite(x) or x <= 0:
        return 1.0
    mag = 10.0 ** np.floor(np.log10(x))
    steps = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
    return float(next(step * mag for step in steps if x <= step * mag * 1.0001))


@dataclass(frozen=True)
class Panel:
    """One histogram panel: reco (points) and optionally truth (line) of one variable."""

    key: str
    xlabel: str
    binning: Binning
    reco: FloatArray
    reco_w: FloatArray
    truth: FloatArray | None = None
    truth_w: FloatArray | None = None


# --------------------------------------------------------------------------------------------
# Labels


def split_channel(channel: str) -> tuple[str, str]:
    """The two leg modes of a channel name, in name order: ``"murho"`` -> ``("mu", "rho")``."""
    for first in ("e", "mu", "pi", "rho"):
        rest = channel[len(first):]
        if channel.startswith(first) and rest in _MODE_TEX:
            return first, rest
    raise PlotError(f"unknown channel {channel!r}; valid channels: "
                    f"{', '.join(ANALYSIS_CHANNELS)}")


def channel_tex(channel: str) -> str:
    """``"erho"`` -> ``$\\tau_{e}\\tau_{\\rho}$``."""
    a, b = split_channel(channel)
    return rf"$\tau_{{{_MODE_TEX[a]}}}\tau_{{{_MODE_TEX[b]}}}$"


def leg_tags(channel: str) -> tuple[str, str]:
    """Math-text tags of the two legs: ``("e", r"\\rho")``; ``pipi``: ``(r"\\pi_{1}", ...)``."""
    first, second = split_channel(channel)
    if first == second:  # leading / subleading
        return rf"{_MODE_TEX[first]}_{{1}}", rf"{_MODE_TEX[second]}_{{2}}"
    return _MODE_TEX[first], _MODE_TEX[second]


def _find_key(meta: Any, key: str) -> Any:
    """First value of ``key`` anywhere in nested metadata (stages nest their configs)."""
    if isinstance(meta, Mapping):
        if key in meta:
            return meta[key]
        for v in meta.values():
            found = _find_key(v, key)
            if found is not None:
                return found
    return None


def com_tev(meta: Mapping[str, Any]) -> float | None:
    """sqrt(s) in TeV from a file's ditau metadata (its ``sqrt_s`` in GeV, at any depth), or
    None if absent or not a number."""
    sqrt_s = _find_key(meta, "sqrt_s")
    try:
        return float(sqrt_s) / 1000.0 if sqrt_s is not None else None
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Drawing


def _draw_panel(ax: Axes, panel: Panel, ylabel: str, residual: bool) -> None:
    samples = [panel.reco] + ([panel.truth] if panel.truth is not None else [])
    edges = panel.binning.edges(*samples)
    reco_w, reco_w2 = hist_content(panel.reco, panel.reco_w, edges)
    top = float(np.max(reco_w + np.sqrt(reco_w2))) if len(reco_w) else 0.0
    if panel.truth is not None and panel.truth_w is not None:
        truth_w, _ = hist_content(panel.truth, panel.truth_w, edges)
        mplhep.histplot(truth_w, edges, ax=ax, histtype="step", color="#0072b2",
                        label="Truth", flow="none")
        top = max(top, float(np.max(truth_w)))
    mplhep.histplot(reco_w, edges, yerr=np.sqrt(reco_w2), ax=ax, histtype="errorbar",
                    color="black", label="Reco", flow="none", markersize=4)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0.0, 1.45 * top if top > 0 else 1.0)
    if top <= 0:
        ax.text(0.5, 0.45, "no entries", transform=ax.transAxes, ha="center")
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(ylabel)
    if residual:
        med, lo, hi = weighted_quantiles(panel.reco, panel.reco_w, (0.5, 0.16, 0.84))
        ax.text(0.04, 0.95, f"median {med:.3g}\n" + rf"$\sigma_{{68}}$ = {0.5 * (hi - lo):.3g}",
                transform=ax.transAxes, ha="left", va="top", fontsize="small")
    else:
        ax.legend(loc="upper right", fontsize="small")


def draw_panels(panels: Sequence[Panel], path: Path, title: str, ylabel: str,
                com: float | None = 13.0, ncols: int = 4, dpi: int = 80,
                residual: bool = False, label: Label | None = None) -> Path:
    """Draw ``panels`` on a grid and write the PNG atomically to ``path``.

    A header band above the grid carries the figure label (``label``, default
    :func:`ditau.plots.style.default_label`, with sqrt(s) = ``com`` TeV) and ``title``.
    """
    nrows = -(-len(panels) // ncols)
    cell_w, cell_h, header, left, right, bottom = 5.0, 4.2, 1.2, 1.0, 0.3, 0.9  # inches
    width, height = cell_w * ncols, cell_h * nrows + header
    lab = (label or default_label()).with_(com=com)
    with mpl.style.context(STYLE):
        fig = Figure(figsize=(width, height))
        FigureCanvasAgg(fig)  # explicit non-interactive canvas; no pyplot, no global backend
        # Fixed margins (constrained layout re-measures every text on each draw: too slow).
        top = 1.0 - (header + 0.15) / height
        fig.subplots_adjust(left=left / width, right=1.0 - right / width,
                            bottom=bottom / height, top=top, wspace=0.4, hspace=0.45)
        # header: the label above a thin axes-free strip, the title below it
        head = fig.add_axes((left / width, top + 0.55 / height, 1.0 - (left + right) / width,
                             0.05 / height))
        head.set_axis_off()
        # mplhep renders the whole figure to place its label: do it while the figure holds
        # only the empty header (axes coordinates: later content does not move it).
        draw_label(head, lab, fontsize=18)
        head.text(1.0, -0.5, title, transform=head.transAxes, ha="right", va="top",
                  fontsize=18)
        grid = fig.add_gridspec(nrows, ncols)
        axes = [fig.add_subplot(grid[i]) for i in range(nrows * ncols)]
        for ax, panel in zip(axes, panels, strict=False):
            _draw_panel(ax, panel, ylabel, residual)
        for ax in axes[len(panels):]:
            ax.set_axis_off()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=_PNG, dpi=dpi)
        fig.clear()
    return path


__all__ = ["Binning", "Panel", "PlotError", "channel_tex", "com_tev",
           "draw_panels", "leg_tags", "split_channel"]
