"""Markdown summary and ATLAS-style plots of a :class:`~ditau.tomography.run.TomographyResult`."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib as mpl
import mplhep
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ditau.plots import ATLAS_TEXT
from ditau.schema import atomic_path
from ditau.tomography.run import CHANNELS, TomographyResult
from ditau.tomography.significance import RUN2_LUMI, m12_diag, significance, witness_d

_AX = ("kk", "rr", "nn")


def _pm(x: float, e: float, nd: int = 3) -> str:
    return f"{x:+.{nd}f} ± {e:.{nd}f}"


def _z(z: float) -> str:
    return f"{z:.1f}" if np.isfinite(z) else "–"


def _lumi(x: float) -> str:
    if not np.isfinite(x):
        return "> 10⁴"
    return "≤ 1" if x <= 1.0 else f"{x:.0f}"


def to_markdown(res: TomographyResult) -> str:
    """The tomography summary (Markdown)."""
    lines = ["# Spin tomography of pp → Z → τ⁺τ⁻", "",
             f"Events: `{res.events}`; {res.seconds:.0f} s.", ""]
    ti = res.truth_inclusive
    if ti:
        obs, q = ti["observables"], ti["quantum"]
        err = np.sqrt(np.diag(obs.cov))
        lines += ["## Truth level (all produced events, generated taus, ρ: optimal polarimeter)",
                  "", f"{obs.n} events.", "",
                  "| | k | r | n |", "|---|---|---|---|"]
        lines.append("| B⁺ | " + " | ".join(_pm(obs.B_p[i], err[i]) for i in range(3)) + " |")
        lines.append("| B⁻ | " + " | ".join(_pm(obs.B_m[i], err[3 + i]) for i in range(3)) + " |")
        for i, a in enumerate("krn"):
            lines.append(f"| C_{a}· | " + " | ".join(
                _pm(obs.C[i, j], err[6 + 3 * i + j]) for j in range(3)) + " |")
        lines += ["", "| observable | value | LO expectation |", "|---|---|---|"]
        for label, key, lo in (("concurrence", "concurrence", "0.494"),
                               ("Horodecki m12", "m12", "1.245"), ("witness D", "d", "0.663")):
            val = getattr(q, key, None)
            e = getattr(q, f"{key}_err", None)
            if val is None and key == "d":
                val, e = ti["d"], None
            txt = f"{val:.3f}" + (f" ± {e:.3f}" if e is not None else "") if val is not None \
                else "–"
            lines.append(f"| {label} | {txt} | {lo} |")
        lines.append("")
    lines += ["## Signal-region yields per fb⁻¹", "", "| channel | signal | background |",
              "|---|---|---|"]
    for ch in CHANNELS:
        s, b = res.yields.get(ch, (0.0, 0.0))
        lines.append(f"| {ch} | {s:.1f} | {b:.1f} |")
    if not res.methods:
        lines += ["", "No reconstruction method had enough signal-region events for the "
                  "calibration (see the notes); generate a larger sample."]
        if res.notes:
            lines += ["", "Notes:", *[f"- {n}" for n in res.notes]]
        return "\n".join(lines) + "\n"
    lines += ["", "## Calibrated spin correlations (pseudo-data half vs its truth)", "",
              "| method | events | eff. | C_kk | C_rr | C_nn | truth C_kk | truth C_rr | "
              "truth C_nn | closure pulls | D | m12 |", "|---" * 12 + "|"]
    for m, r in res.methods.items():
        e = np.sqrt(np.diag(r.calibrated_cov))
        et = np.sqrt(np.diag(r.truth_cov))
        pulls = ", ".join(f"{p:+.1f}" for p in r.closure_pull)
        lines.append(f"| {m} | {r.n_selected} | {r.efficiency:.2f} | "
                     + " | ".join(_pm(r.calibrated[i], e[i], 2) for i in range(3)) + " | "
                     + " | ".join(_pm(r.truth[i], et[i], 2) for i in range(3))
                     + f" | {pulls} | {witness_d(r.calibrated):.2f} | "
                     f"{m12_diag(r.calibrated)[0]:.2f} |")
    lines += ["", f"## Expected significance at {RUN2_LUMI:.0f} fb⁻¹ (Asimov: the truth-level C "
              "of the calibration sample; data statistics ⊕ systematics)", "",
              "Without / with the MC-statistics uncertainty of this sample's calibration "
              "(the former assumes a calibration sample much larger than the data).", "",
              "| method | D | Z(D > 1/3) | L for 5σ (fb⁻¹) | m12 | Z(m12 > 1) | L for 5σ (fb⁻¹) |",
              "|---|---|---|---|---|---|---|"]
    for m, r in res.methods.items():
        sigs = [r.significance_no_mc or r.significance, r.significance]
        ze = [s_.at(RUN2_LUMI)[0] for s_ in sigs]
        zb = [s_.at(RUN2_LUMI)[1] for s_ in sigs]
        le = [s_.lumi_for(5.0)[0] for s_ in sigs]
        lb = [s_.lumi_for(5.0)[1] for s_ in sigs]
        lines.append(f"| {m} | {r.significance.d:.3f} | {_z(ze[0])} / {_z(ze[1])} | "
                     f"{_lumi(le[0])} / {_lumi(le[1])} | {r.significance.m12:.3f} | "
                     f"{_z(zb[0])} / {_z(zb[1])} | {_lumi(lb[0])} / {_lumi(lb[1])} |")
    lines += ["", f"### Per channel at {RUN2_LUMI:.0f} fb⁻¹ (data statistics only): "
              "Z(D > 1/3) / Z(m12 > 1)", "",
              "| method | " + " | ".join(CHANNELS) + " |", "|---|" + "---|" * len(CHANNELS)]
    for m, r in res.methods.items():
        cells = []
        for ch in CHANNELS:
            inp = [c for c in r.channels if c.name == ch]
            if not inp:
                cells.append("–")
                continue
            z = significance(inp).at(RUN2_LUMI)
            cells.append(f"{_z(z[0])} / {_z(z[1])}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", f"## Uncertainty on D at {RUN2_LUMI:.0f} fb⁻¹ by source "
              "(share of the variance)", ""]
    srcs: list[str] = []
    for r in res.methods.values():
        srcs += [k for k, _, _ in r.impacts if k not in srcs]
    lines += ["| source | " + " | ".join(res.methods) + " |",
              "|---|" + "---|" * len(res.methods)]
    for s in srcs:
        cells = []
        for r in res.methods.values():
            row = next((x for x in r.impacts if x[0] == s), None)
            cells.append(f"{row[1]:.4f} ({row[2]:.1f} %)" if row else "–")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    nu = {m: r.nu_sampling for m, r in res.methods.items() if r.nu_sampling is not None}
    for m, (sd, share) in nu.items():
        lines += ["", f"Neutrino sampling ({m}): re-running the method with other noise seeds "
                  f"moves the calibrated D of the pseudo-data half by {sd:.4f} (standard "
                  f"deviation), {100 * share:.0f} % of its statistical variance. It is "
                  "per-event noise, part of the data statistics above (not added again)."]
    if res.notes:
        lines += ["", "Notes:", *[f"- {n}" for n in res.notes]]
    return "\n".join(lines) + "\n"


def plot_significance(res: TomographyResult, path: str | os.PathLike[str],
                      com: float = 13.0, dpi: int = 90) -> Path:
    """Z vs integrated luminosity, entanglement and Bell, one curve per method, 5σ line."""
    with mpl.style.context(mplhep.style.ATLAS):
        fig = Figure(figsize=(13, 5.5))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2)
        for ax, key, title in ((axes[0], "z_entanglement", "entanglement (D > 1/3)"),
                               (axes[1], "z_bell", r"Bell nonlocality ($m_{12} > 1$)")):
            for i, (m, r) in enumerate(res.methods.items()):
                color = f"C{i}"
                if r.significance_no_mc is not None:
                    ax.plot(r.significance_no_mc.lumi, getattr(r.significance_no_mc, key),
                            color=color, label=f"{m}")
                ax.plot(r.significance.lumi, getattr(r.significance, key), color=color,
                        ls="--", label=f"{m} (with MC stat.)")
            ax.axhline(5.0, color="k", ls="--", lw=1)
            ax.axvline(RUN2_LUMI, color="grey", ls=":", lw=1)
            ax.set_xscale("log")
            ax.set_xlim(1, 1e4)
            ax.set_ylim(0, None)
            ax.set_xlabel(r"integrated luminosity [fb$^{-1}$]")
            ax.set_ylabel(f"expected significance, {title}")
            if res.methods:
                ax.legend(loc="upper left", fontsize=11)
            mplhep.atlas.label(text=ATLAS_TEXT, data=False, lumi=None, com=com, ax=ax, loc=4,
                               fontsize=11)
        fig.tight_layout()
        out = Path(path)
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    return out


def write_report(res: TomographyResult, out_dir: str | os.PathLike[str]) -> list[Path]:
    """``summary.md`` and ``significance.png`` in ``out_dir`` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(to_markdown(res))
    return [out / "summary.md", plot_significance(res, out / "significance.png")]
