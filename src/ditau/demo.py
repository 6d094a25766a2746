"""``ditau demo``: the whole chain on a small sample, on CPU, in a few minutes.

Pythia 8 generation (taus forced to pi, rho, e, mu with the generator-level tau filter, so
most of the CPU goes to events that can enter the signal region; weights stay physical) ->
truth summary -> ATLAS-like detector, triggers and signal region -> collinear, FastMTT, MMC
and ML (the model shipped in the package, 10 candidates per event) reconstruction ->
resolution table -> spin tomography (calibration, concurrence, Bell variable, expected
significance; systematics from a tau-energy-scale variation, the MC statistics and the
neutrino sampling of the ML candidates). One report folder. The sample is small: the numbers
show that the chain works, the benchmarks (benchmarks/RESULTS.md) hold the measured figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ditau.detector.run import run_detector
from ditau.evaluate import evaluate_files
from ditau.evaluate.resolution import LOW_STATS, REFERENCE_DM_TAUTAU, plot_summary
from ditau.generate import GenerateConfig, run
from ditau.generate.tau_filter import SIGNAL_REGION_FILTER
from ditau.physics import BR_PDG, CHANNELS, expected_channel_fractions
from ditau.reconstruct import reconstruct
from ditau.schema import read_events, read_metadata
from ditau.tomography.fit_report import fit_lines
from ditau.tomography.report import summary_lines, write_report
from ditau.tomography.report import to_markdown as tomography_markdown
from ditau.tomography.run import run_tomography
from ditau.yields import compute_yields

#: sigma(pp -> Z -> tau tau) at 13 TeV used by the reference study (shared/seeds/001).
REFERENCE_SIGMA_PB = 1848.0
#: Forced tau decay modes of the demo sample.
DEMO_MODES = ("pi", "rho", "e", "mu")
#: ML noise seeds of the re-runs for the neutrino-sampling uncertainty (the nominal run has
#: seed 0).
NU_SAMPLING_SEEDS = tuple(7919 * r for r in range(1, 6))

_PENDING = ("backgrounds in the demo (run `ditau generate --process wlnu|wtaunu|zll|ttbar`, "
            "`ditau detector`, then `ditau yields` / `ditau tomography --background`)",
            "a GPU-trained ML model: the shipped model was trained on CPU")


def _model_line(recon: Path) -> str:
    """The shipped model the ML output ``recon`` was made with (recorded in its settings)."""
    from ditau.ml.infer import resolve_model

    name = str(read_metadata(recon)["settings"]["model"])
    tm = resolve_model(name, "cpu")
    c = tm.config
    return (f"{name} (shipped; {c.objective}, {c.target_frame}-frame targets, impact "
            f"parameters {'used' if c.impact_parameters else 'not used'}, "
            f"{c.sampler or 'default'} sampler x "
            f"{c.sample_steps or 'default'} steps, trained on {tm.data.get('n_train', '?')} "
            "events; 10 candidates per event, point estimate = their median)")


def run_demo(outdir: Path, events: int = 4000, workers: int = 2, seed: int = 1) -> str:
    """Run the demo chain into ``outdir`` and return the Markdown report (also written)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    cfg = GenerateConfig(events=events, seed=seed, force_decays=DEMO_MODES,
                         tau_filter=SIGNAL_REGION_FILTER,
                         events_per_job=max(1, min(1000, -(-events // workers))))
    summary = run(cfg, outdir / "ztautau.parquet", workers=workers)
    t = read_events(summary.path, columns=["truth_channel", "weight", "decay_mode_p",
                                           "decay_mode_m"], require=("id", "truth"))
    ch = np.asarray(t["truth_channel"]).astype(str)
    w = np.asarray(t["weight"])
    n = len(ch)
    br_sum = sum(BR_PDG[m] for m in DEMO_MODES)
    br_forced = {m: BR_PDG[m] / br_sum for m in DEMO_MODES}
    expect = expected_channel_fractions(br_forced)
    lines = [
        "## Sample", "",
        f"Generated {n} events of pp -> Z/gamma* -> tau tau at 13 TeV (Pythia 8, correlated tau "
        f"decays forced to {', '.join(DEMO_MODES)}, 60 < m_hat < 120 GeV, generator-level tau "
        f"filter pT > {SIGNAL_REGION_FILTER.pt_min:g}/{SIGNAL_REGION_FILTER.pt_lead_min:g} GeV, "
        f"|eta| < {SIGNAL_REGION_FILTER.abs_eta_max:g}) in {summary.seconds:.1f} s on "
        f"{workers} worker(s) ({summary.events_per_second:.1f} events/s).", "",
        f"Cross section after the filter: {summary.cross_section_pb:.0f} +- "
        f"{summary.cross_section_err_pb:.0f} pb (tau decays not included; the reference's "
        f"unfiltered sigma is {REFERENCE_SIGMA_PB:.0f} pb).", "",
        "## Truth channels", "",
        "| channel | events | yield / fb^-1 (filter only) | fraction | PDG expectation (forced "
        "modes) | pull |",
        "|---|---|---|---|---|---|",
    ]
    for c in CHANNELS:
        k = int(np.sum(ch == c))
        frac = k / n
        err = np.sqrt(max(expect[c] * (1 - expect[c]), 1e-12) / n)
        lines.append(f"| {c} | {k} | {w[ch == c].sum():.0f} | {frac:.4f} | {expect[c]:.4f} | "
                     f"{(frac - expect[c]) / err:+.1f} |")
    modes = np.concatenate([np.asarray(t["decay_mode_p"]), np.asarray(t["decay_mode_m"])])
    lines += ["", "## Tau decay modes (both legs)", "",
              "| mode | fraction | PDG | pull |", "|---|---|---|---|"]
    for m, br in br_forced.items():
        f = float(np.mean(modes == m))
        err = np.sqrt(br * (1 - br) / len(modes))
        lines.append(f"| {m} | {f:.4f} | {br:.4f} | {(f - br) / err:+.1f} |")
    det = run_detector(summary.path, outdir / "ztautau_reco.parquet", keep_particles=False,
                       workers=workers, progress=False)
    lines += ["", "## Detector level", "",
              f"ATLAS-like detector, triggers and signal region: {det.in_sr} of {det.events} "
              f"events in the signal region ({det.seconds:.1f} s).", "",
              compute_yields([det.path]).to_markdown()]
    # reconstruction of the signal-region events, and the resolution table
    recon = {}
    for method in ("collinear", "fastmtt", "mmc", "ml"):
        rs = reconstruct(det.path, outdir / f"recon_{method}.parquet", method, only_sr=True,
                         workers=1, progress=False)
        recon[method] = rs.path
        lines.append(f"- {method}: {rs.events} signal-region events in {rs.seconds:.1f} s, "
                     f"status {dict(rs.counts)}")
    # detector variation for the systematics: tau energy scale up/down, each reconstructed
    # by every method; ML with other noise seeds for the neutrino-sampling uncertainty. The
    # tomography reads these method outputs (it runs no method).
    variations = {}
    variation_recon: dict[str, dict[str, Path]] = {}
    for var in ("tes_up", "tes_down"):
        vd = run_detector(summary.path, outdir / f"ztautau_reco_{var}.parquet", systematic=var,
                          keep_particles=False, workers=workers, progress=False)
        variations[var] = vd.path
        secs = 0.0
        variation_recon[var] = {}
        for method in recon:
            rs = reconstruct(vd.path, outdir / f"recon_{method}_{var}.parquet", method,
                             only_sr=True, workers=1, progress=False)
            variation_recon[var][method] = rs.path
            secs += rs.seconds
        lines.append(f"- {var}: detector variation reconstructed by {', '.join(recon)} "
                     f"in {secs:.1f} s")
    nu_files = []
    secs = 0.0
    for nu_seed in NU_SAMPLING_SEEDS:
        rs = reconstruct(det.path, outdir / f"recon_ml_seed{nu_seed}.parquet", "ml",
                         only_sr=True, workers=1, progress=False, seed=nu_seed)
        nu_files.append(rs.path)
        secs += rs.seconds
    lines.append(f"- ml with {len(NU_SAMPLING_SEEDS)} other noise seeds (neutrino-sampling "
                 f"uncertainty) in {secs:.1f} s")
    model_line = _model_line(recon["ml"])
    lines.append(f"- ml model: {model_line}")
    ev = evaluate_files(det.path, list(recon.values()), out=outdir / "evaluation")
    figs = plot_summary(ev.table, outdir / "evaluation")
    lines += ["", "## Resolution", "",
              "HWHM of the relative residuals (reco − true)/true in %, per channel; an HWHM "
              f"from fewer than {LOW_STATS} events reads n/a. Every component of both τ: "
              f"{outdir / 'evaluation' / 'table.md'}.", ""]
    for key in ("efficiency", "dm_tautau", "dpx_p", "dpy_p", "dpz_p"):
        lines += [ev.table.to_markdown("quantity", reference=True, key=key), ""]
    tomo = run_tomography(det.path, recon=recon, variations=variations,
                          variation_recon=variation_recon, nu_sampling_recon={"ml": nu_files},
                          n_boot=5, seed=seed)
    written = write_report(tomo, outdir / "tomography")
    body = tomography_markdown(tomo).split("\n## Truth level", 1)
    lines += ["## Spin tomography of pp → Z → τ⁺τ⁻", "",
              "The summary is at the top of this report.", ""]
    if len(body) == 2:
        lines.append("### Truth level" + body[1].replace("\n## ", "\n### "))
    lines += ["", "## Figures", "", *[f"- {p}" for p in [*written[1:], *figs]],
              f"- per channel and method: {outdir / 'evaluation'}/residuals_*.png, "
              "mtautau_*.png"]
    lines += ["", "## Not yet in the chain", ""] + [f"- {p}" for p in _PENDING]
    lines += ["", f"Events: {summary.path}"]
    head = ["# ditau demo report", "", "## Summary", "",
            f"- Sample: {n} generated pp → Z/γ* → ττ events at 13 TeV (τ decays forced to "
            f"{', '.join(DEMO_MODES)}), {det.in_sr} in the signal region of the ATLAS-like "
            "detector.",
            f"- Methods: {', '.join(recon)} (ml: {model_line}).", "",
            "| method | m_ττ HWHM, all channels (%) | events | reference (%) |",
            "|---|---|---|---|"]
    ref = {"ml": np.mean([v[0] for v in REFERENCE_DM_TAUTAU.values()]),
           "mmc": np.mean([v[1] for v in REFERENCE_DM_TAUTAU.values()])}
    for m in ev.table.methods:
        hw, k = ev.table.overall(m)
        txt = f"{hw:.1f}" if np.isfinite(hw) else f"n/a ({k} events)"
        r = f"{ref[m]:.1f} (channel mean)" if m in ref else "–"
        head.append(f"| {m} | {txt} | {k} | {r} |")
    head += ["", "Spin tomography:", "", *summary_lines(tomo)[2:], *fit_lines(tomo.fits), ""]
    lines = head + lines
    report = "\n".join(lines) + "\n"
    (outdir / "report.md").write_text(report)
    return report
