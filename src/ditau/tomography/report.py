"""Markdown summary and figures of a :class:`~ditau.tomography.run.TomographyResult`.

The summary comes first (sample, methods, headline numbers with their uncertainties and the
physical-bound flags of :mod:`ditau.tomography.bounds`), then one small table per quantity.
The figures are :mod:`ditau.tomography.figures`'.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ditau.schema import atomic_path
from ditau.tomography.bounds import (
    MIN_EVENTS,
    N_SIGMA,
    Flag,
    channel_significance,
    diag_quantities,
    result_flags,
    truth_flags,
)
from ditau.tomography.estimators import lo_inclusive
from ditau.tomography.figures import write_figures
from ditau.tomography.fit_report import fit_lines, make_fit_figures
from ditau.tomography.run import CHANNELS, TomographyResult
from ditau.tomography.significance import RUN2_LUMI


def _pm(x: float, e: float, nd: int = 3) -> str:
    return f"{x:+.{nd}f} ± {e:.{nd}f}"


def _z(z: float) -> str:
    return f"{z:.1f}" if np.isfinite(z) else "–"


def _lumi(x: float) -> str:
    if not np.isfinite(x):
        return "> 10⁴"
    return "≤ 1" if x <= 1.0 else f"{x:.0f}"


def _val(x: float, e: float) -> str:
    """Value ± error with digits from the error (2 significant)."""
    if not (np.isfinite(x) and np.isfinite(e)):
        return "–"
    nd = 2 if e >= 0.1 else 3
    if e >= 10:
        return f"{x:.0f} ± {e:.0f}"
    return f"{x:.{nd}f} ± {e:.{nd}f}"


def _method_name(m: str) -> str:
    return "truth τ" if m == "truth" else m


def summary_lines(res: TomographyResult, flags: dict[str, list[Flag]] | None = None
                  ) -> list[str]:
    """The summary (Markdown lines): sample, methods, and one table of the headline numbers
    (D, m12, concurrence with errors, Z at 140 fb⁻¹) with a physical-bounds column."""
    flags = result_flags(res) if flags is None else flags
    ti = res.truth_inclusive or {}
    obs = ti.get("observables")
    lines = ["## Summary", ""]
    if obs is not None:
        lines.append(f"- Sample: {obs.n} produced events with both τ decaying to π, ρ, e or μ; "
                     "the signal-region events are split in two halves (calibration / "
                     "pseudo-data).")
    calibrated = ", ".join(_method_name(m) for m in res.methods) or "none"
    lines.append(f"- Methods calibrated: {calibrated} (truth τ: the generated τ momenta, a "
                 "perfect neutrino reconstruction).")
    skipped = [n for n in res.notes if "not calibrated" in n]
    lines += [f"- {n}." for n in skipped]
    fits = res.fits
    if fits and not any(r.reliable for f in fits.values() for r in f.fits.values()):
        lines.append("- **The measurement (the profile-likelihood fit) gave no result at this "
                     "sample size** (section 'Measurement' says why): the rows below are the "
                     "calibration cross-check.")
    lo = lo_inclusive()
    lines += ["", f"| result | events | D (> 1/3: entangled) | m12 (> 1: Bell) | concurrence | "
              f"Z(D > 1/3) at {RUN2_LUMI:.0f} fb⁻¹ | Z(m12 > 1) | physical bounds |",
              "|---|---|---|---|---|---|---|---|",
              f"| LO expectation, inclusive (Z pole) | – | {lo['D']:.3f} | {lo['m12']:.3f} | "
              f"{lo['concurrence']:.3f} | – | – | – |"]
    ex = ti.get("expected")
    if ex is not None:  # the same (fiducial) events: like-for-like with the truth level
        lines.append(f"| LO expectation, these events | {ex['n']} | {ex['D']:.3f} | "
                     f"{ex['m12']:.3f} | {ex['concurrence']:.3f} | – | – | – |")
    if obs is not None:
        q = ti["quantum"]
        tf = truth_flags(ti)
        lines.append(f"| truth level, all produced | {obs.n} | {_val(q.d, q.d_err)} | "
                     f"{_val(q.m12, q.m12_err)} | {_val(q.concurrence, q.concurrence_err)} | "
                     f"– | – | {_flag_cell(tf)} |")
    for m, r in res.methods.items():
        dq = diag_quantities(r.calibrated, r.calibrated_cov)
        sig = r.significance_no_mc or r.significance
        z_d, z_b = sig.at(RUN2_LUMI)
        zm_d, zm_b = r.significance.at(RUN2_LUMI)
        # a result outside the physical bounds carries no information: no significance
        zs = ("– | –" if flags.get(m) else
              f"{_z(z_d)} ({_z(zm_d)}) | {_z(z_b)} ({_z(zm_b)})")
        lines.append(f"| {_method_name(m)}, calibrated | {r.n_selected} | "
                     f"{_val(*dq['D'])} | {_val(*dq['m12'])} | "
                     f"{_val(*dq['concurrence'])} | {zs} | {_flag_cell(flags.get(m, []))} |")
    lines += ["", "Method rows: the calibrated diagonal of C on the pseudo-data half (B = 0; "
              "concurrence unclipped, from diagonal C), statistical errors. Z: expected, at "
              f"{RUN2_LUMI:.0f} fb⁻¹ with this sample's yields, data statistics ⊕ systematics "
              "(in brackets: with the calibration's MC statistics); none for a result outside "
              "the physical bounds."]
    fl = flag_lines(res, flags)
    lines += ["", *fl] if fl else []
    return lines


def _flag_cell(flags: list[Flag]) -> str:
    if not flags:
        return "ok"
    return "**outside**: " + ", ".join(dict.fromkeys(f.quantity for f in flags))


def flag_lines(res: TomographyResult, flags: dict[str, list[Flag]] | None = None
               ) -> list[str]:
    """Markdown lines naming every result outside the physical bounds, with its reason and
    the sample size needed (empty list if none)."""
    flags = result_flags(res) if flags is None else flags
    items = []
    for who, fl in [("truth level", truth_flags(res.truth_inclusive or {})),
                    *((_method_name(m), fl) for m, fl in flags.items())]:
        if not fl:
            continue
        what = "; ".join(f"{f.quantity} = {f.value} (bound: {f.bound})" for f in fl)
        tail = fl[0].text().split(f" violates {fl[0].bound}", 1)[1]  # reasons and size
        items.append(f"- {who}: {what}{tail}")
    if not items:
        return []
    return [f"**Physical bounds.** These results lie outside what any spin state allows "
            f"(|C_ij| ≤ 1, m12 ≤ 2, concurrence ≤ 1, ρ ≥ 0) by more than {N_SIGMA:g}σ, or "
            "their uncertainty spans the whole physical range: they carry no physics "
            "information at this sample size.", "", *items]


def to_markdown(res: TomographyResult) -> str:
    """The tomography report (Markdown): the summary first, then one table per quantity."""
    flags = result_flags(res)
    fit_s = max((f.seconds_per_fit for f in res.fits.values()), default=0.0)
    lines = ["# Spin tomography of pp → Z → τ⁺τ⁻", "",
             f"Events: `{res.events}`; {res.seconds:.0f} s"
             + (f" (one fit with its tests: {fit_s:.1f} s)" if res.fits else "") + ".", ""]
    lines += summary_lines(res, flags) if res.methods else []
    lines += fit_lines(res.fits)
    ti = res.truth_inclusive
    if ti:
        obs, q = ti["observables"], ti["quantum"]
        err = np.sqrt(np.diag(obs.cov))
        lines += ["", "## Truth level (all produced events, generated taus, ρ: optimal "
                  "polarimeter)", "", f"{obs.n} events.", "",
                  "| | k | r | n |", "|---|---|---|---|"]
        lines.append("| B⁺ | " + " | ".join(_pm(obs.B_p[i], err[i]) for i in range(3)) + " |")
        lines.append("| B⁻ | " + " | ".join(_pm(obs.B_m[i], err[3 + i]) for i in range(3)) + " |")
        for i, a in enumerate("krn"):
            lines.append(f"| C_{a}· | " + " | ".join(
                _pm(obs.C[i, j], err[6 + 3 * i + j]) for j in range(3)) + " |")
        lo = lo_inclusive()
        ex = ti.get("expected") or {}

        def _ex(key: str) -> str:
            return f"{ex[key]:.3f}" if key in ex else "–"

        lines += ["", "| observable | value | LO, these events | LO, inclusive (Z pole) |",
                  "|---|---|---|---|",
                  f"| concurrence | {_val(q.concurrence, q.concurrence_err)} | "
                  f"{_ex('concurrence')} | {lo['concurrence']:.3f} |",
                  f"| Horodecki m12 | {_val(q.m12, q.m12_err)} | {_ex('m12')} | "
                  f"{lo['m12']:.3f} |",
                  f"| witness D | {_val(q.d, q.d_err)} | {_ex('D')} | {lo['D']:.3f} |", "",
                  "LO, these events: each event's Standard-Model state (its m̂, quark "
                  "flavour and cos Θ) averaged with the measurement's weights, the "
                  "like-for-like expectation (the sample is fiducial to its generator-level "
                  "filter and m̂ window); inclusive: the Z-pole table over all cos Θ."]
    lines += ["", "## Signal-region yields per fb⁻¹", "", "| channel | signal | background |",
              "|---|---|---|"]
    for ch in CHANNELS:
        s, b = res.yields.get(ch, (0.0, 0.0))
        lines.append(f"| {ch} | {s:.1f} | {b:.1f} |")
    if not res.methods:
        if res.analysis != "fit":
            lines += ["", "No reconstruction method had enough signal-region events for the "
                      "calibration (see the notes); generate a larger sample."]
        if res.notes:
            lines += ["", "Notes:", *[f"- {n}" for n in res.notes]]
        return "\n".join(lines) + "\n"
    lines += ["", "## Cross-check: calibration of diag C (pseudo-data half)", "",
              "| method | events | efficiency | C_kk | C_rr | C_nn |", "|---|---|---|---|---|---|"]
    for m, r in res.methods.items():
        e = np.sqrt(np.diag(r.calibrated_cov))
        mark = " ⚠" if flags.get(m) else ""
        lines.append(f"| {m}{mark} | {r.n_selected} | {r.efficiency:.2f} | "
                     + " | ".join(_val(r.calibrated[i], e[i]) for i in range(3)) + " |")
    lines += ["", "### Closure (the pseudo-data half's truth; pull = (calibrated − truth) / "
              "error with the calibration's MC statistics)", "",
              "| method | truth C_kk | truth C_rr | truth C_nn | pulls kk, rr, nn |",
              "|---|---|---|---|---|"]
    for m, r in res.methods.items():
        et = np.sqrt(np.diag(r.truth_cov))
        pulls = ", ".join(f"{p:+.1f}" for p in r.closure_pull)
        lines.append(f"| {m} | " + " | ".join(_val(r.truth[i], et[i]) for i in range(3))
                     + f" | {pulls} |")
    lines += ["", f"## Expected significance at {RUN2_LUMI:.0f} fb⁻¹", "",
              "Asimov: the truth-level C of the calibration sample; data statistics ⊕ "
              "systematics, without / with the MC-statistics uncertainty of this sample's "
              "calibration (the former assumes a calibration sample much larger than the data).",
              "", "| method | Z(D > 1/3) | L for 5σ (fb⁻¹) | Z(m12 > 1) | L for 5σ (fb⁻¹) |",
              "|---|---|---|---|---|"]
    for m, r in res.methods.items():
        sigs = [r.significance_no_mc or r.significance, r.significance]
        ze = [s_.at(RUN2_LUMI)[0] for s_ in sigs]
        zb = [s_.at(RUN2_LUMI)[1] for s_ in sigs]
        le = [s_.lumi_for(5.0)[0] for s_ in sigs]
        lb = [s_.lumi_for(5.0)[1] for s_ in sigs]
        lines.append(f"| {m} | {_z(ze[0])} / {_z(ze[1])} | {_lumi(le[0])} / {_lumi(le[1])} | "
                     f"{_z(zb[0])} / {_z(zb[1])} | {_lumi(lb[0])} / {_lumi(lb[1])} |")
    first = next(iter(res.methods.values()))
    lines += ["", f"Asimov values: D = {first.significance.d:.3f}, m12 = "
              f"{first.significance.m12:.3f}."]
    lines += ["", f"### Per channel at {RUN2_LUMI:.0f} fb⁻¹ (data statistics only): "
              "Z(D > 1/3) / Z(m12 > 1)", "",
              "| method | " + " | ".join(CHANNELS) + " |", "|---|" + "---|" * len(CHANNELS)]
    why_notes: list[str] = []
    for m, r in res.methods.items():
        per = channel_significance(r)
        cells = []
        for ch in CHANNELS:
            if ch not in per:
                cells.append("–")
                continue
            z_d, z_b, k, why = per[ch]
            if why is None:
                cells.append(f"{_z(z_d)} / {_z(z_b)}")
            elif k < MIN_EVENTS:
                cells.append(f"n/a (≈ {k} events)")
            else:
                cells.append(f"{_z(z_d)} / {_z(z_b)} ⚠")
                why_notes.append(f"- {m}, {ch}: {why}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", f"n/a: fewer than {MIN_EVENTS} simulated events in the channel's pseudo-data "
              "half (estimated from its share of the yield): its covariance, hence its Z, is "
              "not meaningful.", *why_notes]
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


def write_report(res: TomographyResult, out_dir: str | os.PathLike[str]) -> list[Path]:
    """``summary.md`` and the figures (:func:`ditau.tomography.figures.write_figures`:
    ``significance.png``, ``density_matrix.png``, ``density_matrix_methods.png``,
    ``correlations.png``, ``closure.png``) in ``out_dir`` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(to_markdown(res))
    return [out / "summary.md", *write_figures(res, out), *make_fit_figures(res.fits, out)]


__all__ = ["flag_lines", "summary_lines", "to_markdown", "write_report"]
