"""The one plotting style of ditau: experiment label, method colours, legends, layout checks.

- :class:`Label`: the experiment-neutral label of every figure ("**ditau** *Simulation,
  ATLAS-like detector*" on the left, luminosity and sqrt(s) on the right). ditau is not an
  experiment's tool, so its figures never carry an experiment's label unless the user asks
  for one: :func:`set_default_label` (or the ``DITAU_PLOT_LABEL`` environment variable,
  ``EXPERIMENT;TEXT;DETECTOR``, e.g. ``ATLAS;Simulation Internal;``) changes it for every
  figure, or pass ``label=`` to a plotting function.
- :data:`METHOD_STYLES` / :func:`method_style`: one fixed colour, marker and line style per
  reconstruction method across every figure (truth black; collinear, FastMTT, MMC and ML
  distinct, colour-blind safe: Okabe and Ito's palette); :data:`REFERENCE_STYLES` for the
  reference study's numbers (open markers in the colour of the same method).
- :func:`new_figure`, :func:`draw_label`, :func:`legend_outside`, :func:`save_figure`:
  figures on an explicit Agg canvas (no pyplot, no global backend) with constrained layout
  (axis titles inside the canvas), the label above the axes and legends outside them, written
  atomically as PNG. :func:`layout_problems` checks a drawn figure: the label, legends and axis
  titles inside the canvas and not overlapping one another.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import matplotlib as mpl
import mplhep
import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from ditau.schema import atomic_path

log = logging.getLogger(__name__)

#: ``gid`` of the label's text artists (how :func:`layout_problems` finds them).
LABEL_GID: Final[str] = "ditau-label"
#: Environment variable overriding the default label: ``EXPERIMENT;TEXT;DETECTOR``.
LABEL_ENV: Final[str] = "DITAU_PLOT_LABEL"

#: rcParams of every figure: mplhep's ATLAS style (fonts, ticks) without a frame on legends.
#: mathtext's \mathcal font defaults to the generic 'cursive' family, which mathtext looks up
#: whenever it draws with a custom fontset (older mplhep ATLAS styles leave it unset): the
#: roman font instead.
STYLE: Final[dict[str, Any]] = {"mathtext.cal": mplhep.style.ATLAS.get("mathtext.rm", "sans"),
                                **mplhep.style.ATLAS, "legend.frameon": False,
                                "axes.titlesize": "medium"}


class _NoCursiveFallback(logging.Filter):
    r"""Drops matplotlib's "findfont: ... 'cursive' not found" warnings: noise from the
    \mathcal lookup above (no ditau figure uses \mathcal), not a problem of the figure."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith("findfont") and "cursive" in msg)


_FONT_LOG = logging.getLogger("matplotlib.font_manager")
if not any(isinstance(f, _NoCursiveFallback) for f in _FONT_LOG.filters):
    _FONT_LOG.addFilter(_NoCursiveFallback())


# --------------------------------------------------------------------------------------------
# Label


@dataclass(frozen=True)
class Label:
    """The figure label: ``experiment`` in bold, then ``text`` and ``detector`` in italics on
    the left; the integrated luminosity (fb^-1, None: none) and sqrt(s) (TeV) on the right.

    ``Label()`` reads "ditau Simulation, ATLAS-like detector"; an ATLAS member preparing an
    internal plot: ``Label("ATLAS", "Simulation Internal", None)``.
    """

    experiment: str = "ditau"
    text: str = "Simulation"
    detector: str | None = "ATLAS-like detector"
    com: float | None = 13.0
    lumi: float | None = None

    @property
    def left(self) -> str:
        """The italic part: ``"Simulation, ATLAS-like detector"``."""
        return ", ".join(p for p in (self.text, self.detector) if p)

    @property
    def right(self) -> str:
        """``"140 fb⁻¹, √s = 13 TeV"`` (parts that are set)."""
        parts = []
        if self.lumi is not None:
            parts.append(f"{self.lumi:g} fb$^{{-1}}$")
        if self.com is not None:
            parts.append(f"√s = {self.com:g} TeV")
        return ", ".join(parts)

    def with_(self, **changes: Any) -> Label:
        """A copy with fields changed (``label.with_(lumi=140.0)``)."""
        return replace(self, **changes)


_default_label: Label | None = None


def _label_from_env() -> Label | None:
    raw = os.environ.get(LABEL_ENV)
    if not raw:
        return None
    parts = [p.strip() for p in raw.split(";")] + ["", ""]
    return Label(parts[0], parts[1], parts[2] or None)


def default_label() -> Label:
    """The label figures get without ``label=``: :func:`set_default_label`'s, else
    ``DITAU_PLOT_LABEL``'s, else ``Label()``."""
    return _default_label or _label_from_env() or Label()


def set_default_label(label: Label | None) -> None:
    """Set the label of every later figure (None: back to the default)."""
    global _default_label
    _default_label = label


def draw_label(ax: Axes, label: Label | None = None, right_ax: Axes | None = None,
               fontsize: float | None = None) -> list[Text]:
    """Draw ``label`` above ``ax``, left-aligned, in the layout of mplhep's generic experiment
    label (its ``loc=0``: the experiment in bold, then the text in italics), with the
    luminosity/sqrt(s) part above ``right_ax`` (default ``ax``), right-aligned. Returns the
    text artists (tagged :data:`LABEL_GID`).

    Drawn with plain text artists (the second anchored to the first's box): mplhep's label
    functions fall back to pyplot's current axes internally, which would register a pyplot
    figure."""
    lab = label or default_label()
    size = fontsize or mpl.rcParams["font.size"]
    out = [ax.text(0.0, 1.005, lab.experiment, transform=ax.transAxes, ha="left", va="bottom",
                   fontsize=size * 1.25, fontweight="bold")]
    if lab.left:
        out.append(ax.annotate(lab.left, xy=(1.0, 0.0), xycoords=out[0], xytext=(0.4 * size, 0),
                               textcoords="offset points", ha="left", va="bottom",
                               fontsize=size, fontstyle="italic"))
    if lab.right:
        target = right_ax if right_ax is not None else ax
        out.append(target.text(1.0, 1.005, lab.right, transform=target.transAxes,
                               ha="right", va="bottom", fontsize=size))
    for t in out:
        t.set_gid(LABEL_GID)
    return out


# --------------------------------------------------------------------------------------------
# Methods


@dataclass(frozen=True)
class MethodStyle:
    """How one method is drawn in every figure."""

    label: str
    color: str
    marker: str
    linestyle: str = "-"

    def line(self) -> dict[str, Any]:
        """Keyword arguments for ``Axes.plot``/``errorbar``."""
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle}


#: Okabe & Ito, "Color Universal Design" (2008): distinguishable with every common colour-
#: vision deficiency.
OKABE_ITO: Final[dict[str, str]] = {
    "black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
}
#: Fixed style of each method (keys: method names of ``ditau reconstruct`` plus ``truth``).
METHOD_STYLES: Final[dict[str, MethodStyle]] = {
    "truth": MethodStyle(r"truth $\tau$", OKABE_ITO["black"], "o", "-"),
    "collinear": MethodStyle("collinear", OKABE_ITO["orange"], "s", "-"),
    "fastmtt": MethodStyle("FastMTT", OKABE_ITO["purple"], "^", "-"),
    "mmc": MethodStyle("MMC", OKABE_ITO["green"], "D", "-"),
    "ml": MethodStyle("ML", OKABE_ITO["blue"], "*", "-"),
}
#: The reference study's numbers: open markers in the colour of the same method.
REFERENCE_STYLES: Final[dict[str, MethodStyle]] = {
    "ml": MethodStyle("ML (reference)", OKABE_ITO["blue"], "*", "none"),
    "mmc": MethodStyle("MMC (reference)", OKABE_ITO["green"], "D", "none"),
}
_OTHER_COLORS: Final[tuple[str, ...]] = (OKABE_ITO["vermillion"], OKABE_ITO["sky"],
                                         "#999999", OKABE_ITO["yellow"])
_OTHER_MARKERS: Final[tuple[str, ...]] = ("v", "P", "X", "h")


def method_key(name: str) -> str:
    """The method a (possibly decorated) name refers to: ``"mmc (nominal)"`` -> ``"mmc"``."""
    return name.strip().split(" ")[0].split("(")[0].lower()


def method_style(name: str) -> MethodStyle:
    """The style of method ``name`` (:data:`METHOD_STYLES`; a name decorated with a suffix,
    ``"mmc (run2)"``, gets its method's colour and dashes). Unknown methods get a colour and
    marker that depend only on the name (stable across figures)."""
    key = method_key(name)
    if key in METHOD_STYLES:
        base = METHOD_STYLES[key]
        if name.strip().lower() == key:
            return base
        return replace(base, label=name, linestyle="--")
    h = zlib.crc32(name.encode())
    return MethodStyle(name, _OTHER_COLORS[h % len(_OTHER_COLORS)],
                       _OTHER_MARKERS[(h // 7) % len(_OTHER_MARKERS)], "-.")


# --------------------------------------------------------------------------------------------
# Figures


@contextmanager
def style_context() -> Iterator[None]:
    """The rcParams of :data:`STYLE` for the duration (nothing leaks to the global ones)."""
    with mpl.style.context(STYLE):
        yield


def new_figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1,
               header: bool = False, **subplots: Any) -> tuple[Figure, Any, Axes | None]:
    """``(fig, axes, head)``: a figure with constrained layout on an explicit Agg canvas, its
    axes (an ``(nrows, ncols)`` array; ``subplots``: ``sharex``/``sharey``) and, with
    ``header``, an axes-free strip above every panel for the label (:func:`draw_label` on
    it), so that panel titles never meet the label (else None). Call inside
    :func:`style_context`."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    if not header:
        axes = fig.subplots(nrows, ncols, squeeze=False, **subplots)
        return fig, axes, None
    grid = fig.add_gridspec(nrows + 1, ncols, height_ratios=[0.001] + [1.0] * nrows)
    head = fig.add_subplot(grid[0, :])
    head.set_axis_off()
    axes = np.empty((nrows, ncols), dtype=object)
    for i in range(nrows):
        for j in range(ncols):
            share: dict[str, Any] = {}
            if subplots.get("sharey") and j > 0:
                share["sharey"] = axes[i, 0]
            if subplots.get("sharex") and i > 0:
                share["sharex"] = axes[0, j]
            axes[i, j] = fig.add_subplot(grid[i + 1, j], **share)
    return fig, axes, head


def legend_outside(fig: Figure, handles: Sequence[Artist], labels: Sequence[str],
                   where: str = "right", **kwargs: Any) -> Legend | None:
    """One figure legend outside every axes: ``where="right"`` (a column right of the axes)
    or ``"bottom"`` (a row under them). None without handles."""
    if not handles:
        return None
    if where == "right":
        return fig.legend(handles, labels, loc="outside right upper", **kwargs)
    if where == "bottom":
        kwargs.setdefault("ncols", min(len(handles), 4))
        return fig.legend(handles, labels, loc="outside lower center", **kwargs)
    raise ValueError(f"where must be 'right' or 'bottom', not {where!r}")


def _legends(fig: Figure) -> list[Legend]:
    out = list(fig.legends)
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is not None:
            out.append(leg)
    return out


def _titles(fig: Figure) -> list[tuple[str, Text]]:
    out = []
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible() or not ax.axison:
            continue
        for what, t in (("x-axis title", ax.xaxis.label), ("y-axis title", ax.yaxis.label),
                        ("title", ax.title)):
            if t.get_visible() and t.get_text():
                out.append((f"axes {i} {what}", t))
    return out


def _bbox_overlap(a: Bbox, b: Bbox, tol: float = 0.5) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > tol) and (min(a.y1, b.y1) - max(a.y0, b.y0) > tol)


def layout_problems(fig: Figure) -> list[str]:
    """What is wrong with a figure's layout (empty: nothing): the label, the legends and the
    axis titles must lie inside the canvas, and the label and each legend must overlap no
    other legend, label text or axis title. Draws the figure (window extents are known after
    a draw)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    r = canvas.get_renderer()
    page = fig.bbox
    labels = [t for ax in fig.axes for t in ax.texts if t.get_gid() == LABEL_GID]
    labels += [t for t in fig.texts if t.get_gid() == LABEL_GID]
    named: list[tuple[str, Bbox]] = []
    named += [(f"label '{t.get_text()}'", t.get_window_extent(r)) for t in labels]
    named += [(f"legend {i}", leg.get_window_extent(r)) for i, leg in enumerate(_legends(fig))]
    titles = [(n, t.get_window_extent(r)) for n, t in _titles(fig)]
    problems = []
    for name, box in named + titles:
        if (box.x0 < page.x0 - 1 or box.y0 < page.y0 - 1 or box.x1 > page.x1 + 1
                or box.y1 > page.y1 + 1):
            problems.append(f"{name} extends outside the canvas")
    every = named + titles
    for i, (na, a) in enumerate(named):
        for nb, b in every[i + 1:]:
            if _bbox_overlap(a, b):
                problems.append(f"{na} overlaps {nb}")
    return problems


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Write ``fig`` atomically as PNG to ``path`` (folder created); a layout problem
    (:func:`layout_problems`) is logged as a warning. Returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    for problem in layout_problems(fig):
        log.warning("%s: %s", out.name, problem)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return out


def finite_or(x: float, default: float) -> float:
    """``x`` if finite, else ``default``."""
    return float(x) if np.isfinite(x) else default


__all__ = [
    "LABEL_ENV", "LABEL_GID", "METHOD_STYLES", "OKABE_ITO", "REFERENCE_STYLES", "STYLE",
    "Label", "MethodStyle", "default_label", "draw_label", "finite_or", "layout_problems",
    "legend_outside", "method_key", "method_style", "new_figure", "save_figure",
    "set_default_label", "style_context",
]
