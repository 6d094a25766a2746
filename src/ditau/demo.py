"""``ditau demo``: the chain on a small sample, on CPU.

Today the chain is: Pythia 8 generation -> truth summary (channel yields against the PDG
expectation, cross section against the reference) -> ATLAS-like detector, triggers and signal
region -> signal yields per channel with the truth-to-reco channel migration. Reconstruction,
evaluation and tomography are appended here as they land (issues #4-#6).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ditau.detector.run import run_detector
from ditau.generate import GenerateConfig, run
from ditau.physics import BR_PDG, CHANNELS, expected_channel_fractions
from ditau.schema import read_events
from ditau.yields import compute_yields

#: sigma(pp -> Z -> tau tau) at 13 TeV used by the reference study (shared/seeds/001).
REFERENCE_SIGMA_PB = 1848.0

_PENDING = ("backgrounds in the demo (run `ditau generate --process wlnu|wtaunu|zll|ttbar` "
            "and `ditau yields`)", "collinear / MMC / FastMTT (#4)",
            "ML neutrino reconstruction (#5)", "spin tomography and significance (#6)")


def run_demo(outdir: Path, events: int = 2000, workers: int = 2, seed: int = 1) -> str:
    """Run the demo chain into ``outdir`` and return the Markdown report (also written)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    cfg = GenerateConfig(events=events, seed=seed,
                         events_per_job=max(1, min(1000, -(-events // workers))))
    summary = run(cfg, outdir / "ztautau.parquet", workers=workers)
    t = read_events(summary.path, columns=["truth_channel", "weight", "decay_mode_p",
                                           "decay_mode_m"], require=("id", "truth"))
    ch = np.asarray(t["truth_channel"]).astype(str)
    w = np.asarray(t["weight"])
    n = len(ch)
    expect = expected_channel_fractions(BR_PDG)
    lines = [
        "# ditau demo report", "",
        f"Generated {n} events of pp -> Z/gamma* -> tau tau at 13 TeV (Pythia 8, correlated tau "
        f"decays, 60 < m_hat < 120 GeV) in {summary.seconds:.1f} s on {workers} worker(s) "
        f"({summary.events_per_second:.1f} events/s).", "",
        f"Cross section: {summary.cross_section_pb:.0f} +- {summary.cross_section_err_pb:.0f} pb "
        f"(reference study: {REFERENCE_SIGMA_PB:.0f} pb; ratio "
        f"{summary.cross_section_pb / REFERENCE_SIGMA_PB:.3f}).", "",
        "## Truth channels", "",
        "| channel | events | yield / fb^-1 (no cuts) | fraction | PDG expectation | pull |",
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
    for m, br in BR_PDG.items():
        f = float(np.mean(modes == m))
        err = np.sqrt(br * (1 - br) / len(modes))
        lines.append(f"| {m} | {f:.4f} | {br:.4f} | {(f - br) / err:+.1f} |")
    det = run_detector(summary.path, outdir / "ztautau_reco.parquet", keep_particles=False,
                       workers=workers, progress=False)
    lines += ["", "## Detector level", "",
              f"ATLAS-like detector, triggers and signal region: {det.in_sr} of {det.events} "
              f"events in the signal region ({det.seconds:.1f} s).", "",
              compute_yields([det.path]).to_markdown()]
    lines += ["", "## Not yet in the chain", ""] + [f"- {p}" for p in _PENDING]
    lines += ["", f"Events: {summary.path}"]
    report = "\n".join(lines) + "\n"
    (outdir / "report.md").write_text(report)
    return report
