"""Figures of a :class:`~ditau.tomography.run.TomographyResult`, in ditau's plotting style
(:mod:`ditau.plots.style`: the label, one colour per method, legends outside the axes).

- :func:`plot_significance`: expected Z of D > 1/3 and m12 > 1 versus luminosity per method,
  with the 5 sigma line and the Run-2 luminosity (140 fb^-1) marked;
- :func:`plot_density_matrix`: Re rho and Im rho as annotated heat-maps, the LO expectation
  next to the truth-level measurement and each method's calibrated state (B = 0 and the
  calibrated diagonal of C: the only part a method's calibration measures);
- :func:`plot_correlations`: C_ij as annotated heat-maps with errors (same states);
- :func:`plot_closure`: the closure pulls per parameter (C_kk, C_rr, C_nn) and method.

Each ``make_*`` function returns the :class:`~matplotlib.figure.Figure` (tests check its
layout); each ``plot_*`` writes it atomically as PNG. Only results already in the result
dataclasses are drawn; nothing is recomputed but the linear maps C -> rho.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import NDArray

from ditau.plots import style as sty
from ditau.tomography import quantum
from ditau.tomography.bounds import result_flags, total_cov
from ditau.tomography.estimators import lo_inclusive
from ditau.tomography.run import TomographyResult
from ditau.tomography.significance import RUN2_LUMI

_KRN: Final[tuple[str, ...]] = ("k", "r", "n")
_BASIS: Final[tuple[str, ...]] = (r"$\uparrow\uparrow$", r"$\uparrow\downarrow$",
                                  r"$\downarrow\uparrow$", r"$\downarrow\downarrow$")


@dataclass(frozen=True)
class State:
    """One spin state to draw: B+, B-, C with the covariance of (B+, B-, C.ravel()) (None:
    no errors) and which of the 15 parameters were measured."""

    name: str
    B_p: NDArray[np.float64]
    B_m: NDArray[np.float64]
    C: NDArray[np.float64]
    cov: NDArray[np.float64] | None
    measured: NDArray[np.bool_]
    flagged: bool = False


def states(res: TomographyResult) -> list[State]:
    """The LO expectation, the truth-level measurement (if any) and each calibrated method
    (B = 0, diagonal C; off-diagonal C and B not measured)."""
    lo = lo_inclusive()
    out = [State("LO expectation", lo["B"], lo["B"], lo["C"], None, np.ones(15, bool))]
    ti = res.truth_inclusive
    if ti and "observables" in ti:
        obs = ti["observables"]
        out.append(State(f"truth level, {obs.n} events", obs.B_p, obs.B_m, obs.C, obs.cov,
                         np.ones(15, bool)))
    flags = result_flags(res)
    for m, r in res.methods.items():
        cov = np.zeros((15, 15))
        idx = [6, 10, 14]  # C_kk, C_rr, C_nn in (B+, B-, C.ravel())
        cov[np.ix_(idx, idx)] = total_cov(r)
        meas = np.zeros(15, bool)
        meas[idx] = True
        out.append(State(f"{sty.method_style(m).label}, calibrated", np.zeros(3), np.zeros(3),
                         np.diag(r.calibrated), cov, meas, bool(flags.get(m))))
    return out


def _rho_and_errors(s: State) -> tuple[NDArray[np.complex128], NDArray[np.float64],
                                       NDArray[np.float64]]:
    """rho, sigma(Re rho), sigma(Im rho): rho is linear in the 15 parameters."""
    rho = quantum.density_matrix(s.B_p, s.B_m, s.C)
    if s.cov is None:
        z = np.zeros((4, 4))
        return rho, z, z
    basis = np.eye(15)
    # d rho / d parameter: rho of a unit parameter minus rho of none
    zero = quantum.density_matrix(np.zeros(3), np.zeros(3), np.zeros((3, 3)))
    jac = np.stack([quantum.density_matrix(v[0:3], v[3:6], v[6:].reshape(3, 3)) - zero
                    for v in basis])  # (15, 4, 4)
    jr = jac.real.reshape(15, 16)
    ji = jac.imag.reshape(15, 16)
    er = np.sqrt(np.clip(np.einsum("pa,pq,qa->a", jr, s.cov, jr), 0.0, None)).reshape(4, 4)
    ei = np.sqrt(np.clip(np.einsum("pa,pq,qa->a", ji, s.cov, ji), 0.0, None)).reshape(4, 4)
    return rho, er, ei


def _heatmap(ax: Axes, values: NDArray[np.float64], errors: NDArray[np.float64] | None,
             ticks: Sequence[str], vmax: float, mask: NDArray[np.bool_] | None = None,
             fontsize: float = 11) -> Any:
    shown = np.ma.masked_array(values, mask=mask if mask is not None else False)
    cmap = _cmap()
    im = ax.imshow(shown, cmap=cmap, vmin=-vmax, vmax=vmax, origin="upper")
    n = values.shape[0]
    for i in range(n):
        for j in range(n):
            if mask is not None and mask[i, j]:
                ax.text(j, i, "n/m", ha="center", va="center", fontsize=fontsize, color="0.4")
                continue
            v = values[i, j]
            txt = f"{v:+.2f}"
            if errors is not None and errors[i, j] > 0:
                txt += f"\n±{errors[i, j]:.2g}" if errors[i, j] >= 10 else \
                    f"\n±{errors[i, j]:.2f}"
            color = "white" if abs(v) > 0.6 * vmax else "black"
            ax.text(j, i, txt, ha="center", va="center", fontsize=fontsize, color=color)
    ax.set_xticks(range(n), ticks)
    ax.set_yticks(range(n), ticks)
    ax.tick_params(which="minor", length=0)
    ax.tick_params(which="major", length=0)
    return im


def _cmap() -> Any:
    import matplotlib as mpl

    return mpl.colormaps["RdBu_r"].with_extremes(bad="0.92")


def make_density_matrix(res: TomographyResult, label: sty.Label | None = None,
                        methods: bool = False) -> Figure:
    """Re rho (top row) and Im rho (bottom row) of the LO expectation and the truth-level
    measurement, annotated with the values and their errors (linear propagation of the
    parameters' covariance). ``methods``: instead, Re rho of each calibrated method (B = 0,
    diagonal C: their Im rho is zero by construction) next to the LO expectation with B = 0."""
    sts = states(res)
    if methods:
        lo = sts[0]
        sts = [State("LO expectation, B = 0", np.zeros(3), np.zeros(3), lo.C, None,
                     lo.measured)] + [s for s in sts if not s.measured.all()]
    else:
        sts = [s for s in sts if s.measured.all()]
    n = len(sts)
    rows = 1 if methods else 2
    lab = (label or sty.default_label())
    with sty.style_context():
        fig, axes, head = sty.new_figure((3.9 * n + 1.4, 4.3 * rows + 0.6), rows, n, header=True)
        im = None
        for k, s in enumerate(sts):
            rho, er, ei = _rho_and_errors(s)
            im = _heatmap(axes[0, k], rho.real, er, _BASIS, 0.5)
            axes[0, k].set_title(s.name + ("\n(unphysical)" if s.flagged else ""),
                                 fontsize=12)
            if rows == 2:
                _heatmap(axes[1, k], rho.imag, ei, _BASIS, 0.5)
        axes[0, 0].set_ylabel(r"Re $\rho$")
        if rows == 2:
            axes[1, 0].set_ylabel(r"Im $\rho$")
        _finish_heatmaps(fig, axes, head, im, r"element of $\rho$", lab, 0.8)
    return fig


def _finish_heatmaps(fig: Figure, axes: Any, head: Any, im: Any, what: str,
                     lab: sty.Label, shrink: float) -> None:
    """One colour bar for a row of heat-maps and the label in the header strip."""
    if im is not None:
        fig.colorbar(im, ax=list(axes.ravel()), shrink=shrink, label=what)
    sty.draw_label(head, lab.with_(lumi=None), fontsize=12)


def make_correlations(res: TomographyResult, label: sty.Label | None = None) -> Figure:
    """C_ij of :func:`states` as annotated heat-maps with errors; elements a method does not
    measure (off-diagonal) are grey, "n/m"."""
    sts = states(res)
    n = len(sts)
    lab = (label or sty.default_label())
    ticks = [f"${a}$" for a in _KRN]
    with sty.style_context():
        fig, axes, head = sty.new_figure((3.2 * n + 1.2, 4.6), 1, n, header=True)
        im = None
        for k, s in enumerate(sts):
            err = None
            if s.cov is not None:
                err = np.sqrt(np.clip(np.diag(s.cov)[6:], 0.0, None)).reshape(3, 3)
            mask = ~s.measured[6:].reshape(3, 3)
            im = _heatmap(axes[0, k], np.asarray(s.C, float), err, ticks, 1.0, mask=mask)
            axes[0, k].set_title(s.name + ("\n(unphysical)" if s.flagged else ""), fontsize=12)
            axes[0, k].set_xlabel(r"$\tau^-$ axis")
        axes[0, 0].set_ylabel(r"$\tau^+$ axis")
        _finish_heatmaps(fig, axes, head, im, r"$C_{ij}$", lab, 0.85)
    return fig


def make_significance(res: TomographyResult, label: sty.Label | None = None) -> Figure:
    """Z(D > 1/3) and Z(m12 > 1) versus luminosity, one colour per method: solid without,
    dashed with the calibration's MC-statistics uncertainty; the 5 sigma line and 140 fb^-1
    marked; the legend right of the axes."""
    lab = (label or sty.default_label())
    with sty.style_context():
        fig, axes, head = sty.new_figure((12.5, 5.4), 1, 2, header=True, sharey=True)
        handles: list[Any] = []
        names: list[str] = []
        top = 10.0
        for ax, key, title in ((axes[0, 0], "z_entanglement", "entanglement"),
                               (axes[0, 1], "z_bell", "Bell nonlocality")):
            for m, r in res.methods.items():
                st = sty.method_style(m)
                if r.significance_no_mc is not None:
                    z = np.asarray(getattr(r.significance_no_mc, key), float)
                    h, = ax.plot(r.significance_no_mc.lumi, np.clip(z, 1e-3, None),
                                 color=st.color, ls="-")
                    top = max(top, float(np.nanmax(z, initial=0.0)))
                    if ax is axes[0, 0]:
                        handles.append(h)
                        names.append(st.label)
                z = np.asarray(getattr(r.significance, key), float)
                ax.plot(r.significance.lumi, np.clip(z, 1e-3, None), color=st.color, ls="--")
                top = max(top, float(np.nanmax(z, initial=0.0)))
            ax.axhline(5.0, color="0.3", ls=":", lw=1.2)
            ax.axvline(RUN2_LUMI, color="0.5", ls="-.", lw=1.0)
            ax.text(1.2, 5.4, r"5$\sigma$", fontsize=11, color="0.3")
            ax.text(RUN2_LUMI * 1.1, 0.13, f"{RUN2_LUMI:g} fb$^{{-1}}$", fontsize=11,
                    color="0.4", rotation=90, va="bottom")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(1, 1e4)
            ax.set_title(title, fontsize=13)
            ax.set_xlabel(r"integrated luminosity [fb$^{-1}$]")
        axes[0, 0].set_ylim(0.1, 3.0 * top)
        axes[0, 0].set_ylabel(r"expected $Z$")
        axes[0, 0].text(0.03, 0.97, r"$D > 1/3$", transform=axes[0, 0].transAxes, va="top")
        axes[0, 1].text(0.03, 0.97, r"$m_{12} > 1$", transform=axes[0, 1].transAxes, va="top")
        if handles:
            # line-style keys in grey, so that they cannot be read as the black truth curve
            handles += [Line2D([], [], color="0.55", ls="-"), Line2D([], [], color="0.55",
                                                                    ls="--")]
            names += [r"data stat. $\oplus$ syst.", "+ MC stat. of calibration"]
        sty.legend_outside(fig, handles, names, where="right", fontsize=11)
        sty.draw_label(head, lab.with_(lumi=None), fontsize=12)
    return fig


def make_closure(res: TomographyResult, label: sty.Label | None = None) -> Figure:
    """Closure pulls (calibrated pseudo-data half minus its truth, over the error) per
    parameter and method, with the +-1 and +-2 bands."""
    lab = (label or sty.default_label())
    with sty.style_context():
        fig, axes, _ = sty.new_figure((8.0, 4.6), 1, 1)
        ax = axes[0, 0]
        ax.axhspan(-2, 2, color="0.92")
        ax.axhspan(-1, 1, color="0.82")
        ax.axhline(0.0, color="0.3", lw=1)
        n = max(len(res.methods), 1)
        handles, names = [], []
        for k, (m, r) in enumerate(res.methods.items()):
            st = sty.method_style(m)
            x = np.arange(3) + (k - (n - 1) / 2) * 0.6 / n
            h = ax.plot(x, r.closure_pull, ls="none", marker=st.marker, color=st.color,
                        markersize=8)[0]
            handles.append(h)
            names.append(st.label)
        ax.set_xticks(range(3), [r"$C_{kk}$", r"$C_{rr}$", r"$C_{nn}$"])
        ax.set_xlim(-0.5, 2.5)
        pulls = [abs(v) for r in res.methods.values() for v in r.closure_pull if np.isfinite(v)]
        lim = max(3.0, 1.2 * max(pulls, default=0.0))
        ax.set_ylim(-lim, lim)
        ax.set_ylabel("closure pull")
        sty.legend_outside(fig, handles, names, where="right", fontsize=11)
        sty.draw_label(ax, lab.with_(lumi=None), fontsize=12)
    return fig


def plot_significance(res: TomographyResult, path: str | os.PathLike[str],
                      com: float = 13.0, dpi: int = 100, label: sty.Label | None = None) -> Path:
    """Write :func:`make_significance` as PNG."""
    lab = (label or sty.default_label()).with_(com=com)
    return sty.save_figure(make_significance(res, lab), path, dpi)


def write_figures(res: TomographyResult, out_dir: str | os.PathLike[str], com: float = 13.0,
                  dpi: int = 100, label: sty.Label | None = None) -> list[Path]:
    """``significance.png``, ``density_matrix.png`` (LO and truth level),
    ``density_matrix_methods.png``, ``correlations.png`` and, with calibrated methods,
    ``closure.png`` in ``out_dir``."""
    out = Path(out_dir)
    lab = (label or sty.default_label()).with_(com=com)
    written = [plot_significance(res, out / "significance.png", com, dpi, lab),
               sty.save_figure(make_density_matrix(res, lab), out / "density_matrix.png", dpi),
               sty.save_figure(make_density_matrix(res, lab, methods=True),
                           out / "density_matrix_methods.png", dpi),
               sty.save_figure(make_correlations(res, lab), out / "correlations.png", dpi)]
    if res.methods:
        written.append(sty.save_figure(make_closure(res, lab), out / "closure.png", dpi))
    return written


__all__ = ["State", "make_closure", "make_correlations", "make_density_matrix",
           "make_significance", "plot_significance", "states", "write_figures"]
