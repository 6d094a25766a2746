"""Validation plots of the reconstruction inputs: truth vs reco, per analysis channel.

:func:`plot_inputs` reads a detector-level ditau file (groups ``id``, ``truth`` and ``reco``)
and writes, for each of the seven channels with signal-region events, two ATLAS-style PNG
figures:

``inputs_<channel>.png``
    the reference's network inputs (shared/seeds/001, "Input variables": MET (pT, phi), the
    visible tau legs' (pT, eta, phi, E), small-R jets) plus the neutral-energy fraction of the
    hadronic legs (the rho polarimeter input), the visible mass and the MET scalar sum; truth
    as a line, reco as points with sqrt(sum w^2) errors.
``residuals_<channel>.png``
    reco/truth - 1 of both visible legs' pT and of MET x, and reco - truth of MET x in GeV.

Leg order within a channel follows the channel name (``erho``: the e leg, then the rho leg);
for ``pipi`` and ``rhorho`` the legs are the leading and subleading in reco visible pT. Truth
quantities are those of the same leg (same charge), so a fake leg is compared with whatever
the true tau of that charge left.

Plotting uses an explicit Agg canvas on a :class:`matplotlib.figure.Figure` (no pyplot
figure registry, no global backend switch) inside ``matplotlib.style.context`` (no rcParams
leak); every PNG is written atomically.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import hist
import matplotlib as mpl
import mplhep
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray

from ditau.physics import CHANNELS
from ditau.schema import atomic_path, group_columns, read_events, read_metadata, validate

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

#: The seven analysis channels that get plots (``other`` is not an analysis channel).
PLOT_CHANNELS: Final[tuple[str, ...]] = tuple(c for c in CHANNELS if c != "other")

#: Hadronic decay modes (legs with a tau_had candidate).
HADRONIC: Final[tuple[str, ...]] = ("pi", "rho")

#: Label text after "ATLAS Simulation" (``data=False`` adds "Simulation"): not an ATLAS result.
ATLAS_TEXT: Final[str] = "Internal"

_MODE_TEX: Final[dict[str, str]] = {"e": "e", "mu": r"\mu", "pi": r"\pi", "rho": r"\rho"}
_PNG: Final[str] = "png"
_XYZE: Final[tuple[str, ...]] = ("px", "py", "pz", "e")


class PlotError(ValueError):
    """Bad input for the plotting (unknown channel, file without detector-level columns)."""


# --------------------------------------------------------------------------------------------
# Histogram content (pure functions)


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


# --------------------------------------------------------------------------------------------
# Kinematics (vectorised over events; arrays of shape (n, 4) = px, py, pz, E)


def pt(p4: FloatArray) -> FloatArray:
    """Transverse momentum, sqrt(px^2 + py^2)."""
    return np.hypot(p4[:, 0], p4[:, 1])


def eta(p4: FloatArray) -> FloatArray:
    """Pseudorapidity, asinh(pz / pT) = -ln tan(theta/2) (PDG review "Kinematics")."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.arcsinh(p4[:, 2] / pt(p4))


def phi(p4: FloatArray) -> FloatArray:
    """Azimuth in (-pi, pi], atan2(py, px)."""
    return np.arctan2(p4[:, 1], p4[:, 0])


def mass(p4: FloatArray) -> FloatArray:
    """Invariant mass sqrt(E^2 - |p|^2), clipped at 0 against rounding."""
    m2 = p4[:, 3] ** 2 - (p4[:, 0] ** 2 + p4[:, 1] ** 2 + p4[:, 2] ** 2)
    return np.sqrt(np.clip(m2, 0.0, None))


def _p4(cols: Mapping[str, FloatArray], prefix: str, leg: str = "") -> FloatArray:
    suffix = f"_{leg}" if leg else ""
    return np.stack([cols[f"{prefix}_{c}{suffix}"] for c in _XYZE], axis=1)


def visible_p4(cols: Mapping[str, FloatArray], leg: str, level: str) -> FloatArray:
    """Visible four-momentum of leg ``p``/``m`` = charged + neutral part.

    ``level="truth"``: ``chg_* + neu_*`` (NaN where the event has no such tau);
    ``level="reco"``: ``reco_chg_* + reco_neu_*`` with an absent neutral cluster (NaN) as 0.
    """
    if level == "truth":
        return _p4(cols, "chg", leg) + _p4(cols, "neu", leg)
    if level == "reco":
        return _p4(cols, "reco_chg", leg) + np.nan_to_num(_p4(cols, "reco_neu", leg), nan=0.0)
    raise ValueError(f"level must be 'truth' or 'reco', not {level!r}")


def neutral_fraction(cols: Mapping[str, FloatArray], leg: str, level: str) -> FloatArray:
    """E_neutral / E_visible of a leg.

    The rho polarimeter is y = (E_pi+- - E_pi0) / (E_pi+- + E_pi0) = 1 - 2 f with this
    fraction f (Bullock, Hagiwara, Martin, NPB 395 (1993) 499).
    """
    prefix = "neu" if level == "truth" else "reco_neu"
    e_neu = cols[f"{prefix}_e_{leg}"]
    if level == "reco":
        e_neu = np.nan_to_num(e_neu, nan=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return e_neu / visible_p4(cols, leg, level)[:, 3]


def truth_met(cols: Mapping[str, FloatArray]) -> tuple[FloatArray, FloatArray]:
    """Truth MET (x, y): vector sum of both legs' neutrinos and the other neutrinos.

    A leg without a tau (NaN neutrino columns) contributes nothing.
    """
    mx = (np.nan_to_num(cols["nu_px_p"]) + np.nan_to_num(cols["nu_px_m"])
          + cols["nu_other_px"])
    my = (np.nan_to_num(cols["nu_py_p"]) + np.nan_to_num(cols["nu_py_m"])
          + cols["nu_other_py"])
    return mx, my


def split_channel(channel: str) -> tuple[str, str]:
    """The two leg modes of a channel name, in name order: ``"murho"`` -> ``("mu", "rho")``."""
    for first in ("e", "mu", "pi", "rho"):
        rest = channel[len(first):]
        if channel.startswith(first) and rest in _MODE_TEX:
            return first, rest
    raise PlotError(f"unknown channel {channel!r}; valid channels: {', '.join(PLOT_CHANNELS)}")


def first_leg_is_p(cols: Mapping[str, NDArray[Any]], channel: str) -> NDArray[np.bool_]:
    """Per event: is the channel's first leg the tau+ (``_p``) leg?

    Mixed channels: the leg whose reco mode is the first mode of the name. ``pipi`` and
    ``rhorho``: the leg with the larger reco visible pT (leading leg first).
    """
    first, second = split_channel(channel)
    if first != second:
        return np.asarray(cols["reco_mode_p"] == first, dtype=bool)
    return pt(visible_p4(cols, "p", "reco")) >= pt(visible_p4(cols, "m", "reco"))


def _pick(first_is_p: NDArray[np.bool_], a_p: FloatArray, a_m: FloatArray,
          first: bool) -> FloatArray:
    sel = first_is_p if first else ~first_is_p
    if a_p.ndim == 2:
        sel = sel[:, None]
    return np.where(sel, a_p, a_m)


# --------------------------------------------------------------------------------------------
# Inputs


_TRUTH_COLS: Final[tuple[str, ...]] = (
    *(f"{p}_{c}_{leg}" for p in ("chg", "neu", "nu") for c in _XYZE for leg in ("p", "m")),
    "nu_other_px", "nu_other_py")
_RECO_COLS: Final[tuple[str, ...]] = (
    *(f"{p}_{c}_{leg}" for p in ("reco_chg", "reco_neu") for c in _XYZE for leg in ("p", "m")),
    *(f"jet1_{c}" for c in _XYZE),
    "reco_mode_p", "reco_mode_m", "reco_channel", "in_sr", "n_jets", "met_x", "met_y",
    "met_sumet", "reco_weight")
NEEDED_COLUMNS: Final[tuple[str, ...]] = ("weight", *_TRUTH_COLS, *_RECO_COLS)
_REQUIRE: Final[tuple[str, ...]] = ("id", "truth", "reco")


def _no_reco_error(source: str) -> PlotError:
    return PlotError(f"{source}: the file has no detector-level (reco) columns; "
                     "run `ditau detector` on it first")


def load_inputs(table_or_path: pa.Table | str | os.PathLike[str],
                ) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
    """The columns the plots need, as numpy arrays, and the file's ditau metadata.

    Raises :class:`PlotError` for input without the reco group, :class:`SchemaError` for other
    schema problems.
    """
    reco_names = {c.name for c in group_columns("reco")}
    meta: dict[str, Any] = {}
    if isinstance(table_or_path, pa.Table):
        table = table_or_path
        if not reco_names & set(table.column_names):
            raise _no_reco_error("table")
        validate(table.select([c for c in table.column_names if not c.startswith("fs_")]),
                 require=_REQUIRE, source="table")
    else:
        path = Path(table_or_path)
        meta = read_metadata(path)  # checks existence, readability and the ditau footer
        if not reco_names & set(pq.read_schema(path).names):
            raise _no_reco_error(str(path))
        table = read_events(path, columns=NEEDED_COLUMNS, require=_REQUIRE)
    cols = {c: table[c].to_numpy(zero_copy_only=False) for c in NEEDED_COLUMNS}
    return cols, meta


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


def _com_tev(meta: Mapping[str, Any]) -> float | None:
    sqrt_s = _find_key(meta, "sqrt_s")
    try:
        return float(sqrt_s) / 1000.0 if sqrt_s is not None else None
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Panels


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


_GEV = "[GeV]"
_RAD = "[rad]"


def _leg_tags(channel: str) -> tuple[str, str]:
    """Math-text tags of the two legs: ``("e", r"\\rho")``; ``pipi``: ``(r"\\pi_{1}", ...)``."""
    first, second = split_channel(channel)
    if first == second:  # leading / subleading
        return rf"{_MODE_TEX[first]}_{{1}}", rf"{_MODE_TEX[second]}_{{2}}"
    return _MODE_TEX[first], _MODE_TEX[second]


def input_panels(cols: Mapping[str, NDArray[Any]], channel: str,
                 weights: FloatArray) -> list[Panel]:
    """The input-variable panels of one channel; ``cols`` already restricted to its events."""
    tags = _leg_tags(channel)
    fp = first_leg_is_p(cols, channel)
    panels: list[Panel] = []
    legs: dict[str, list[FloatArray]] = {"truth": [], "reco": []}
    for i, tag in enumerate(tags):
        v = {lvl: _pick(fp, visible_p4(cols, "p", lvl), visible_p4(cols, "m", lvl), i == 0)
             for lvl in ("truth", "reco")}
        for lvl in v:
            legs[lvl].append(v[lvl])
        specs = (("pt", rf"$p_{{\mathrm{{T}}}}^{{{tag}}}$ {_GEV}", Binning(40, 0.0, 100.0), pt),
                 ("eta", rf"$\eta^{{{tag}}}$", Binning(30, -3.0, 3.0), eta),
                 ("phi", rf"$\phi^{{{tag}}}$ {_RAD}", Binning(32, -np.pi, np.pi), phi),
                 ("e", rf"$E^{{{tag}}}$ {_GEV}", Binning(40, 0.0, 300.0),
                  lambda p: p[:, 3]))
        for key, label, binning, fn in specs:
            panels.append(Panel(f"leg{i + 1}_{key}", label, binning, fn(v["reco"]), weights,
                                fn(v["truth"]), weights))
    # Visible di-tau mass (invariant mass of the two visible legs).
    panels.append(Panel("m_vis", r"$m_{\mathrm{vis}}$ " + _GEV, Binning(30, 0.0, 150.0),
                        mass(legs["reco"][0] + legs["reco"][1]), weights,
                        mass(legs["truth"][0] + legs["truth"][1]), weights))
    tmx, tmy = truth_met(cols)
    rmx, rmy = cols["met_x"], cols["met_y"]
    panels += [
        Panel("met", r"$E_{\mathrm{T}}^{\mathrm{miss}}$ " + _GEV, Binning(40, 0.0, 100.0),
              np.hypot(rmx, rmy), weights, np.hypot(tmx, tmy), weights),
        Panel("met_phi", r"$\phi(E_{\mathrm{T}}^{\mathrm{miss}})$ " + _RAD,
              Binning(32, -np.pi, np.pi), np.arctan2(rmy, rmx), weights,
              np.arctan2(tmy, tmx), weights),
        Panel("met_sumet", r"$\Sigma E_{\mathrm{T}}$ " + _GEV, Binning(40, 0.0, None),
              np.asarray(cols["met_sumet"], dtype=np.float64), weights),
    ]
    # Neutral-energy fraction of the reco-hadronic legs (both legs pooled).
    had = {leg: np.isin(cols[f"reco_mode_{leg}"], HADRONIC) for leg in ("p", "m")}
    frac = {lvl: np.concatenate([neutral_fraction(cols, leg, lvl)[had[leg]]
                                 for leg in ("p", "m")]) for lvl in ("truth", "reco")}
    w_had = np.concatenate([weights[had[leg]] for leg in ("p", "m")])
    panels.append(Panel("neu_frac", r"$E_{\pi^{0}}/E_{\mathrm{vis}}$ ($\tau_{\mathrm{had}}$)",
                        Binning(25, 0.0, 1.0), frac["reco"], w_had, frac["truth"], w_had))
    jet = _p4(cols, "jet1")
    panels += [
        Panel("jet1_pt", r"leading jet $p_{\mathrm{T}}$ " + _GEV, Binning(36, 20.0, 200.0),
              pt(jet), weights),
        Panel("jet1_eta", r"leading jet $\eta$", Binning(30, -4.5, 4.5), eta(jet), weights),
        Panel("n_jets", r"$N_{\mathrm{jets}}$", Binning(6, -0.5, 5.5),
              np.asarray(cols["n_jets"], dtype=np.float64), weights),
    ]
    return panels


def residual_panels(cols: Mapping[str, NDArray[Any]], channel: str,
                    weights: FloatArray) -> list[Panel]:
    """Resolution panels of one channel: reco/truth - 1 of the legs' visible pT and of MET x,
    and reco - truth of MET x (filled into ``Panel.reco``)."""
    tags = _leg_tags(channel)
    fp = first_leg_is_p(cols, channel)
    panels = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for i, tag in enumerate(tags):
            v = {lvl: pt(_pick(fp, visible_p4(cols, "p", lvl), visible_p4(cols, "m", lvl),
                               i == 0)) for lvl in ("truth", "reco")}
            panels.append(Panel(
                f"leg{i + 1}_pt_res",
                rf"$p_{{\mathrm{{T}}}}^{{{tag},\,\mathrm{{reco}}}}/"
                rf"p_{{\mathrm{{T}}}}^{{{tag},\,\mathrm{{truth}}}} - 1$",
                Binning(40, None, None, cap=2.0), v["reco"] / v["truth"] - 1.0, weights))
        tmx, _ = truth_met(cols)
        rmx = np.asarray(cols["met_x"], dtype=np.float64)
        panels += [
            Panel("met_x_res", r"$E_{x}^{\mathrm{miss,reco}}/E_{x}^{\mathrm{miss,truth}} - 1$",
                  Binning(40, None, None, cap=5.0), rmx / tmx - 1.0, weights),
            Panel("met_x_diff", r"$E_{x}^{\mathrm{miss,reco}} - E_{x}^{\mathrm{miss,truth}}$ "
                  + _GEV, Binning(40, None, None, cap=200.0), rmx - tmx, weights),
        ]
    return panels


# --------------------------------------------------------------------------------------------
# Drawing


def channel_tex(channel: str) -> str:
    """``"erho"`` -> ``$\\tau_{e}\\tau_{\\rho}$``."""
    a, b = split_channel(channel)
    return rf"$\tau_{{{_MODE_TEX[a]}}}\tau_{{{_MODE_TEX[b]}}}$"


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
                residual: bool = False) -> Path:
    """Draw ``panels`` on a grid in ATLAS style and write the PNG atomically to ``path``.

    A header band above the grid carries the experiment label and ``title``.
    """
    nrows = -(-len(panels) // ncols)
    cell_w, cell_h, header, left, right, bottom = 5.0, 4.2, 0.8, 1.0, 0.3, 0.9  # inches
    width, height = cell_w * ncols, cell_h * nrows + header
    with mpl.style.context(mplhep.style.ATLAS):
        fig = Figure(figsize=(width, height))
        FigureCanvasAgg(fig)  # explicit non-interactive canvas; no pyplot, no global backend
        # Fixed margins (constrained layout re-measures every text on each draw: too slow).
        top = 1.0 - (header + 0.15) / height
        fig.subplots_adjust(left=left / width, right=1.0 - right / width,
                            bottom=bottom / height, top=top, wspace=0.4, hspace=0.45)
        head = fig.add_axes((left / width, top + 0.1 / height, 1.0 - (left + right) / width,
                             (header - 0.1) / height))
        head.set_axis_off()
        # mplhep renders the whole figure to place its label: do it while the figure holds
        # only the empty header (axes coordinates: later content does not move it).
        mplhep.atlas.label(text=ATLAS_TEXT, data=False, lumi=None, com=com, ax=head, loc=1,
                           fontsize=18)
        head.text(1.0, 0.5, title, transform=head.transAxes, ha="right", va="center",
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


# --------------------------------------------------------------------------------------------
# Entry point


def check_channels(channels: Sequence[str] | None) -> tuple[str, ...]:
    """Validated channel selection (default: all seven), in the reference's order."""
    if channels is None:
        return PLOT_CHANNELS
    unknown = [c for c in channels if c not in PLOT_CHANNELS]
    if unknown:
        raise PlotError(f"unknown channel(s) {unknown}; valid channels: "
                        f"{', '.join(PLOT_CHANNELS)}")
    return tuple(c for c in PLOT_CHANNELS if c in set(channels))


def event_weights(cols: Mapping[str, NDArray[Any]], weighted: bool = True) -> FloatArray:
    """Per-event weights: weight x reco_weight (expected events per fb^-1, schema docs of
    ``reco_weight``), or 1 for ``weighted=False``."""
    w = np.asarray(cols["weight"], dtype=np.float64)
    if not weighted:
        return np.ones_like(w)
    return w * np.asarray(cols["reco_weight"], dtype=np.float64)


def plot_inputs(table_or_path: pa.Table | str | os.PathLike[str],
                out_dir: str | os.PathLike[str], channels: Sequence[str] | None = None,
                weighted: bool = True, *, dpi: int = 80,
                note: Callable[[str], None] | None = None) -> list[Path]:
    """Truth-vs-reco validation plots of the reconstruction inputs, per channel.

    ``table_or_path``: a ditau table or Parquet file with the ``id``, ``truth`` and ``reco``
    groups. Events of a channel: ``reco_channel == channel`` and ``in_sr``. ``weighted``:
    weight x reco_weight (expected events per fb^-1), else unit weights (MC counts).
    Channels without events are skipped; ``note`` (default: the module logger) is told.
    Returns the written PNG paths (``inputs_<ch>.png``, ``residuals_<ch>.png`` per channel).
    """
    selected = check_channels(channels)
    say = note if note is not None else log.info
    cols, meta = load_inputs(table_or_path)
    com = _com_tev(meta) if meta else None
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PlotError(f"output directory {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)

    w_all = event_weights(cols, weighted)
    ylabel = "Events / bin / fb$^{-1}$" if weighted else "MC events / bin"
    reco_channel = np.asarray(cols["reco_channel"]).astype(str)
    in_sr = np.asarray(cols["in_sr"], dtype=bool)
    written: list[Path] = []
    for ch in selected:
        mask = (reco_channel == ch) & in_sr
        if not mask.any():
            say(f"channel {ch}: no signal-region events, skipped")
            continue
        sub = {k: v[mask] for k, v in cols.items()}
        title = f"{channel_tex(ch)}, SR ({int(mask.sum())} MC events)"
        written.append(draw_panels(input_panels(sub, ch, w_all[mask]),
                                   out / f"inputs_{ch}.png", title, ylabel, com, dpi=dpi))
        written.append(draw_panels(residual_panels(sub, ch, w_all[mask]),
                                   out / f"residuals_{ch}.png", title, ylabel, com, ncols=2,
                                   dpi=dpi, residual=True))
    return written


__all__ = [
    "ATLAS_TEXT", "NEEDED_COLUMNS", "PLOT_CHANNELS", "Binning", "Panel", "PlotError",
    "channel_tex", "check_channels", "draw_panels", "eta", "event_weights", "first_leg_is_p",
    "hist_content", "input_panels", "load_inputs", "mass", "neutral_fraction", "phi",
    "plot_inputs", "pt", "residual_panels", "split_channel", "truth_met", "visible_p4",
    "weighted_quantiles",
]
