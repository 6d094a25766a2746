"""Report of the profile-likelihood measurement (:mod:`ditau.tomography.measurement`): Markdown
tables (result, significance per method x yields x split, impacts, closure) and two figures
(significance versus luminosity, closure pulls). Nothing is recomputed here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.lines import Line2D

from ditau.plots import style as sty
from ditau.tomography.estimators import PARAMETER_NAMES
from ditau.tomography.fit import FitResult
from ditau.tomography.measurement import SPLIT_MOD, SpinFit
from ditau.tomography.significance import lumi_reaching

#: Fewest pseudo-data events for a fit result to be called meaningful in the report.
MEANINGFUL_EVENTS = 500
_LUMI = 140.0
_MAIN = "split 0, ours yields"


def _z(z: float) -> str:
    return "–" if not np.isfinite(z) else f"{z:.1f}"


def _val(x: float, e: float) -> str:
    return "–" if not np.isfinite(x) else f"{x:.3f} ± {e:.3f}"


def lumi_for(curve: tuple[Any, Any, Any], z: float = 5.0) -> tuple[float, float]:
    """Luminosity (fb^-1) where Z(D > 1/3) and Z(m12 > 1) of a curve (lumis, Z(D), Z(m12))
    first reach ``z`` (:func:`~ditau.tomography.significance.lumi_reaching`)."""
    lumis, zd, zb = curve
    return lumi_reaching(lumis, zd, z), lumi_reaching(lumis, zb, z)


def _lumi(x: float) -> str:
    return "> 3000" if not np.isfinite(x) else f"{x:.3g}"


def _q(r: FitResult, key: str) -> str:
    q = r.quantum
    if q is None:
        return "–"
    return _val(q.central[key], q.error[key])


def fit_lines(fits: dict[str, SpinFit]) -> list[str]:
    """The Markdown section of the measurement (empty without fits)."""
    if not fits:
        return []
    first = next(iter(fits.values()))
    none = "none here: no channel has enough template events"
    if first.observable == "moments":
        n_in = f"{first.n_bins} in all" if first.n_bins else none
        what = (f"Gaussian likelihood of the 16 moments (1, a±_i, a⁺_i a⁻_j) of the measured "
                f"analysers summed per reconstructed channel ({n_in}), their "
                "expectation linear in (B, C) (templates from the simulation's truth "
                "polarimeters); the data covariance and the templates' MC statistics "
                "(Barlow–Beeston in the Gaussian limit) at the sample's Standard-Model state")
    else:
        n_in = f"{first.n_bins} non-empty bins" if first.n_bins else none
        what = (f"binned Poisson likelihood of the "
                f"{'signs' if first.bins == 2 else f'{first.bins} bins'} of the six measured "
                f"analyser components per channel ({n_in}); "
                "template MC statistics (Barlow–Beeston lite at the Standard-Model state)")
    own = [m for m, f in fits.items() if f.background_shape == "own"]
    bkg_text = ("their yields with the signal's unpolarised shape (approximation)." if not own
                else "each background's own reconstructed analysers for "
                f"{', '.join(own)}" + ("; the signal's unpolarised shape for " + ", ".join(
                    m for m in fits if m not in own) if len(own) < len(fits) else "") + ".")
    lines = ["", "## Measurement: profile-likelihood fit of (B⁺, B⁻, C)", "",
             f"{what[0].upper()}{what[1:]}; 15 spin parameters free in [−2, 2] (C_kk "
             "replaced by the witness D) and the signal normalisation free (the shape measures "
             "the spin); nuisance parameters: luminosity (0.83 %), "
             "background cross sections (5 %), each detector variation given (shape). "
             "Templates from 10/11 of the sample, pseudo-data from the other 1/11 (event_id "
             f"mod {SPLIT_MOD}) scaled to {_LUMI:g} fb⁻¹, on two independent splits. "
             "Parameters: the spin state of the τ pairs in the signal region (truth level). "
             f"Backgrounds: {bkg_text} "
             "A fit at the bound ±2 is MC-statistics limited.", ""]
    small = [m for m, f in fits.items() if f.n_data_events < MEANINGFUL_EVENTS]
    if small:
        lines += [f"**Too small a sample for a meaningful result** ({', '.join(small)}: fewer "
                  f"than {MEANINGFUL_EVENTS} pseudo-data events); the tables show what the fit "
                  "does at this size, not what the measurement can do.", ""]
    lines += [f"Expected result at {_LUMI:g} fb⁻¹ (Asimov data at the sample's Standard-Model "
              "state; errors: data statistics, the templates' MC statistics, systematics):", "",
              "| method | template / pseudo-data events | D (> 1/3: entangled) | m12 "
              "| concurrence | Z(D > 1/3) | Z(m12 > 1) |",
              "|---|---|---|---|---|---|---|"]
    for m, f in fits.items():
        r = f.fits.get(_MAIN + ", Asimov")
        if r is None:
            continue
        if not r.reliable:
            lines.append(f"| {m} | {f.n_template_events} / {f.n_data_events} | "
                         f"{r.problem} | – | – | – | – |")
            continue
        lines.append(f"| {m} | {f.n_template_events} / {f.n_data_events} | "
                     f"{_val(r.d, r.d_err)} | {_q(r, 'm12')} | {_q(r, 'concurrence')} | "
                     f"{_z(r.z_entanglement)} | {_z(r.z_bell)} |")
    lines += ["", "m12 > 1: a Bell-inequality-violating state (\"Bell nonlocality\" in the "
              "reference); decay-angle measurements test the state, not local realism. m12 "
              "and the concurrence: central value and spread of Gaussian toys of the fitted "
              "parameters; Z: profile-likelihood ratio (D fixed to 1/3; m12 constrained to "
              "≤ 1).", "",
              f"### Significance at {_LUMI:g} fb⁻¹: Z(D > 1/3) / Z(m12 > 1), every uncertainty "
              "included", "",
              "Pseudo-data: the fit to each split's independent pseudo-data scaled to "
              f"{_LUMI:g} fb⁻¹; its error includes the pseudo-data sample's own statistics, so "
              "the two splits must agree within it. Asimov: expected, with templates of this "
              "sample's size; unlimited: the reach with templates of unlimited statistics.", "",
              "| method | yields | pseudo-data split 0 | split 1 | Asimov | Asimov, unlimited "
              "templates | 5σ L(D), L(m12) | 5σ L, unlimited templates |",
              "|---|---|---|---|---|---|---|---|"]
    not_fitted: dict[str, str] = {}
    for m, f in fits.items():
        for y in ("ours", "reference"):
            cells = []
            for key in (f"split 0, {y} yields", f"split 1, {y} yields",
                        f"split 0, {y} yields, Asimov",
                        f"split 0, {y} yields, Asimov, unlimited templates"):
                r = f.fits.get(key)
                if r is not None and r.not_run:  # the reason once, below the table
                    not_fitted.setdefault(m, r.not_run)
                cells.append("–" if r is None else "not fitted" if r.not_run
                             else r.problem if not r.reliable
                             else f"{_z(r.z_entanglement)} / {_z(r.z_bell)}")
            for c in (f.curves.get(f"{y}, Asimov"),
                      f.curves.get(f"{y}, Asimov, unlimited templates")):
                # no reliable fit at any luminosity: no statement on the 5σ luminosity
                no_fit = c is None or not (np.isfinite(c[1]).any() or np.isfinite(c[2]).any())
                cells.append("–" if no_fit else ", ".join(_lumi(v) for v in lumi_for(c)))
            if any(c != "–" for c in cells):
                lines.append(f"| {m} | {y} | " + " | ".join(cells) + " |")
    if not_fitted:
        lines += [""] + [f"- {m}, not fitted: {why}" for m, why in not_fitted.items()]
    lines += ["", f"### Uncertainty on D at {_LUMI:g} fb⁻¹ by source (Asimov, our yields; σ_D "
              "and share of the variance)", ""]
    srcs: list[str] = []
    for f in fits.values():
        srcs += [k for k, _, _ in f.impacts if k not in srcs]
    if not srcs:
        lines.append("None: no method has a reliable Asimov fit.")
    else:
        lines += ["| source | " + " | ".join(fits) + " |", "|---|" + "---|" * len(fits)]
    for s in srcs:
        cells = []
        for f in fits.values():
            row = next((x for x in f.impacts if x[0] == s), None)
            cells.append(f"{row[1]:.4f} ({row[2]:.0f} %)" if row else "–")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    sampled = {m: f.sampling for m, f in fits.items() if len(f.sampling) >= 2}
    if sampled:
        lines += ["", "### Neutrino sampling: the pseudo-data fit (split 0, our yields, "
                  f"{_LUMI:g} fb⁻¹, no detector variations) redone with each noise seed's "
                  "method output, templates and data alike", "",
                  "| method | draws | D (mean) | spread of D | σ_D of one fit | Z(D > 1/3) "
                  "range | Z(m12 > 1) range |", "|---|---|---|---|---|---|---|"]
        for m, rows in sampled.items():
            a = np.array(rows)
            lines.append(f"| {m} | {len(a)} | {a[:, 0].mean():.3f} | "
                         f"{a[:, 0].std(ddof=1):.3f} | {a[:, 1].mean():.3f} | "
                         f"{a[:, 2].min():.1f}–{a[:, 2].max():.1f} | "
                         f"{a[:, 3].min():.1f}–{a[:, 3].max():.1f} |")
        lines += ["", "The sampling is per-event noise of the analysers, in the pseudo-data "
                  "and the templates alike, so it is inside their statistical errors: the "
                  "spread is reported, not added. A spread close to σ_D says that the "
                  "sampling noise is a large part of the statistical error (averaging over "
                  "the candidates, the default, reduces it; --point-estimate does not "
                  "average)."]
    lines += ["", f"### Best fit to the pseudo-data (split 0, our yields, {_LUMI:g} fb⁻¹)", "",
              "| parameter | " + " | ".join(fits) + " |", "|---|" + "---|" * len(fits)]
    for i, name in enumerate(PARAMETER_NAMES):
        cells = []
        for f in fits.values():
            r = f.fits.get(_MAIN)
            cells.append("–" if r is None else _val(r.theta[i], r.errors[i]) if r.reliable
                         else "not fitted" if r.not_run else "did not converge" if not r.valid
                         else "at the ±2 bound")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "### Closure: fits to the pseudo-data put into other spin states (spin "
              "weights), at the pseudo-data's own statistics (each split's states share its "
              "events, so their deviations are correlated)", "",
              "| method | state | D true | D fitted | Z(D > 1/3) | max |pull| (parameter) | "
              "pulls > 2 |", "|---|---|---|---|---|---|---|"]
    if not any(f.closure for f in fits.values()):
        lines.append("| – | not run | | | | | |")
    for m, f in fits.items():
        for row in f.closure:
            if not row.result.reliable:
                lines.append(f"| {m} | {row.name} | {row.truth_d:.3f} | "
                             f"{row.result.problem} | – | – | – |")
                continue
            p = np.abs(row.pulls)
            i = int(np.nanargmax(p)) if np.any(np.isfinite(p)) else 0
            lines.append(f"| {m} | {row.name} | {row.truth_d:.3f} | "
                         f"{_val(row.result.d, row.result.d_err)} | "
                         f"{_z(row.result.z_entanglement)} | {p[i]:.1f} ({PARAMETER_NAMES[i]}) "
                         f"| {int(np.sum(p > 2))} / 15 |")
    skipped = [f"- {m}, closure tests: {f.closure_note}" for m, f in fits.items()
               if f.closure_note]
    if skipped:
        lines += ["", *skipped]
    notes = [n for f in fits.values() for n in f.notes]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return lines


def make_fit_figures(fits: dict[str, SpinFit], out_dir: str | os.PathLike[str],
                     dpi: int = 100, label: sty.Label | None = None) -> list[Path]:
    """``fit_significance.png`` (Z versus luminosity per method, our yields, split 0) and
    ``fit_closure.png`` (closure pulls of the 15 parameters per state, first method)."""
    if not fits:
        return []
    out = Path(out_dir)
    lab = label or sty.default_label()
    written = []
    with sty.style_context():
        fig, axes, head = sty.new_figure((12.5, 5.4), 1, 2, header=True, sharey=True)
        handles, names = [], []
        for ax, k, title in ((axes[0, 0], 1, r"$D > 1/3$ (entanglement)"),
                             (axes[0, 1], 2, r"$m_{12} > 1$ (Bell-violating state)")):
            for m, f in fits.items():
                st = sty.method_style(m)
                for key, ls in (("ours, Asimov", "-"), ("ours, Asimov, unlimited templates",
                                                         "--")):
                    c = f.curves.get(key)
                    if c is None or not np.isfinite(c[k]).any():
                        continue
                    h, = ax.plot(c[0], np.clip(c[k], 1e-2, None), color=st.color, ls=ls,
                                 marker=st.marker)
                    if k == 1 and ls == "-":
                        handles.append(h)
                        names.append(st.label)
            if not ax.lines:  # no method has a reliable fit at any luminosity
                ax.text(0.5, 0.5, "not fitted (see the report)", transform=ax.transAxes,
                        ha="center", va="center", fontsize=13, color="0.3")
            ax.axhline(5.0, color="0.3", ls=":")
            ax.axvline(_LUMI, color="0.5", ls="-.")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(title, fontsize=13)
            ax.set_xlabel(r"integrated luminosity [fb$^{-1}$]")
        axes[0, 0].set_ylabel(r"expected $Z$ (profile likelihood)")
        handles += [Line2D([], [], color="0.55", ls="-"), Line2D([], [], color="0.55", ls="--")]
        names += ["templates of this sample", "unlimited templates"]
        sty.legend_outside(fig, handles, names, where="right", fontsize=11)
        sty.draw_label(head, lab.with_(lumi=None), fontsize=12)
    written.append(sty.save_figure(fig, out / "fit_significance.png", dpi))
    m, f = next(iter(fits.items()))
    if f.closure:
        with sty.style_context():
            fig, axes, _ = sty.new_figure((12.0, 5.0), 1, 1)
            ax = axes[0, 0]
            ax.axhspan(-2, 2, color="0.92")
            ax.axhspan(-1, 1, color="0.82")
            n = len(f.closure)
            for j, row in enumerate(f.closure):
                x = np.arange(15) + (j - (n - 1) / 2) * 0.7 / n
                ax.plot(x, row.pulls, ls="none", marker="o", markersize=5, label=row.name)
            ax.set_xticks(range(15), [p.replace("_", " ") for p in PARAMETER_NAMES],
                          rotation=60, fontsize=9)
            ax.set_ylabel(f"closure pull ({sty.method_style(m).label})")
            ax.legend(fontsize=8, ncol=2)
        written.append(sty.save_figure(fig, out / "fit_closure.png", dpi))
    return written
