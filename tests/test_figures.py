"""Figures and report of the tomography and the resolution: every figure renders from a small
fixture, is a non-empty PNG, and its label, legends and axis titles stay inside the canvas
without overlapping; the physical-bound flags of the report (a result with m12 = 431 is
flagged, a physical one is not); the resolution tables print n/a for small cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from ditau.evaluate.resolution import (
    LOW_STATS,
    make_hwhm_bars,
    make_residual_overlay,
    plot_summary,
    resolution_table,
)
from ditau.plots.style import (
    LABEL_GID,
    METHOD_STYLES,
    Label,
    draw_label,
    layout_problems,
    legend_outside,
    method_style,
    new_figure,
    set_default_label,
    style_context,
)
from ditau.tomography import bounds
from ditau.tomography.calibration import Calibration
from ditau.tomography.estimators import measure
from ditau.tomography.figures import (
    make_closure,
    make_correlations,
    make_density_matrix,
    make_significance,
    write_figures,
)
from ditau.tomography.quantum import quantum_observables
from ditau.tomography.report import to_markdown, write_report
from ditau.tomography.run import MethodResult, TomographyResult
from ditau.tomography.significance import ChannelInput, impact_table, significance

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
C_LO = np.array([1.0, -0.494, 0.494])


# --------------------------------------------------------------------------------------------
# Fixtures


def _method(name: str, c: np.ndarray, err: float, n: int = 2000, response: float = 0.8,
            efficiency: float = 0.9, mc: float = 0.0) -> MethodResult:
    cal = Calibration(np.zeros(3), np.eye(3) * response, C_LO, C_LO * response,
                      np.zeros(1), np.zeros((1, 3)), np.zeros((1, 3)))
    chans = [ChannelInput(ch, s, 0.0, C_LO, np.eye(3) * 9.0)
             for ch, s in (("rhorho", 600.0), ("murho", 1800.0))]
    syst = {"MC statistics (calibration)": np.full(3, mc), "tes": np.full(3, 0.01)}
    cov = np.eye(3) * err**2
    return MethodResult(name, n, efficiency, cal, c * response, cov * response**2, c, cov,
                        C_LO, np.eye(3) * 0.01, chans, syst, significance(chans, syst),
                        impact_table(chans, syst), significance(chans, {"tes": syst["tes"]}))


def _result(**methods: MethodResult) -> TomographyResult:
    rng = np.random.default_rng(3)
    n = 3000
    h = rng.normal(size=(2, n, 3))
    h /= np.linalg.norm(h, axis=2, keepdims=True)
    obs = measure(h[0], h[1], np.ones(n), np.ones(n))
    res = TomographyResult(Path("events.parquet"))
    res.truth_inclusive = {"observables": obs, "quantum": quantum_observables(obs, 200)}
    res.yields = {"rhorho": (600.0, 0.0), "murho": (1800.0, 0.0)}
    res.methods = dict(methods)
    return res


@pytest.fixture(scope="module")
def tomo() -> TomographyResult:
    return _result(truth=_method("truth", C_LO + 0.02, 0.05),
                   mmc=_method("mmc", np.array([1.0, 1.4, 20.0]), 0.8, n=179, response=0.05,
                               efficiency=0.3, mc=5.0),
                   ml=_method("ml", C_LO - 0.03, 0.08))


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(5)
    n = 400
    chans = np.where(np.arange(n) < 380, "murho", "pipi")  # pipi: 20 events, 10 ok
    ev = {"event_id": np.arange(n), "reco_channel": chans, "in_sr": np.ones(n, bool),
          "m_tautau": rng.normal(91.0, 3.0, n)}
    for leg in ("p", "m"):
        for c in ("px", "py", "pz"):
            ev[f"tau_{c}_{leg}"] = rng.normal(0.0, 30.0, n)
    recons = {}
    for name, width in (("collinear", 0.3), ("fastmtt", 0.2), ("mmc", 0.15), ("ml", 0.05)):
        rows = np.flatnonzero((chans == "murho") | (np.arange(n) % 2 == 0))
        rec = {"event_id": rows, "candidate": np.zeros(len(rows), np.int64),
               "rec_status": np.full(len(rows), "ok")}
        for leg in ("p", "m"):
            for c in ("px", "py", "pz"):
                rec[f"rec_tau_{c}_{leg}"] = ev[f"tau_{c}_{leg}"][rows] * (
                    1 + width * rng.standard_normal(len(rows)))
        rec["rec_m_tautau"] = ev["m_tautau"][rows] * (1 + width * rng.standard_normal(len(rows)))
        recons[name] = rec
    return resolution_table(ev, recons, channels=["pipi", "murho"])


# --------------------------------------------------------------------------------------------
# Style


def test_method_styles_are_fixed_and_distinct():
    colors = [s.color for s in METHOD_STYLES.values()]
    markers = [s.marker for s in METHOD_STYLES.values()]
    assert len(set(colors)) == len(colors) and len(set(markers)) == len(markers)
    assert METHOD_STYLES["truth"].color == "#000000"
    assert method_style("mmc").color == METHOD_STYLES["mmc"].color
    assert method_style("mmc (run2)").color == METHOD_STYLES["mmc"].color  # same method
    assert method_style("my-method") == method_style("my-method")  # stable for other names


def test_label_is_configurable(monkeypatch):
    assert Label().left == "Simulation, ATLAS-like detector" and Label().experiment == "ditau"
    assert Label(lumi=140.0).right == "140 fb$^{-1}$, √s = 13 TeV"
    own = Label("ATLAS", "Simulation Internal", None)
    with style_context():
        _, axes, _ = new_figure((5, 4))
        texts = draw_label(axes[0, 0], own)
    assert [t.get_text().strip() for t in texts] == ["ATLAS", "Simulation Internal",
                                                     "√s = 13 TeV"]
    assert all(t.get_gid() == LABEL_GID for t in texts)
    monkeypatch.setenv("DITAU_PLOT_LABEL", "CMS;Private Work;")
    from ditau.plots.style import default_label

    assert default_label() == Label("CMS", "Private Work", None)
    set_default_label(Label(detector="CMS-like detector"))
    try:
        assert default_label().left == "Simulation, CMS-like detector"
    finally:
        set_default_label(None)


def test_layout_check_catches_an_overlap():
    with style_context():
        fig, axes, _ = new_figure((6, 4))
        ax = axes[0, 0]
        ax.plot([0, 1], [0, 1], label="a long legend entry")
        draw_label(ax)
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, 1.12))  # on top of the label
    assert any("overlaps" in p for p in layout_problems(fig))
    with style_context():
        fig, axes, _ = new_figure((9, 4))
        h = axes[0, 0].plot([0, 1], [0, 1])
        axes[0, 0].set_xlabel("x")
        draw_label(axes[0, 0])
        legend_outside(fig, h, ["a"], where="right")
    assert layout_problems(fig) == []


# --------------------------------------------------------------------------------------------
# Figures


def _check(fig: Figure) -> None:
    assert layout_problems(fig) == []
    labels = [t for ax in fig.axes for t in ax.texts if t.get_gid() == LABEL_GID]
    assert labels and labels[0].get_text() == "ditau"


@pytest.mark.parametrize("make", [make_significance, make_density_matrix, make_correlations,
                                  make_closure,
                                  lambda r: make_density_matrix(r, methods=True)])
def test_tomography_figures_layout(tomo, make):
    _check(make(tomo))


def test_significance_colours_follow_the_method(tomo):
    fig = make_significance(tomo)
    colors = {line.get_color() for line in fig.axes[1].get_lines() if line.get_linestyle() == "-"
              and len(line.get_xdata()) > 2}
    assert {METHOD_STYLES[m].color for m in ("truth", "mmc", "ml")} <= colors


@pytest.mark.parametrize("make", [make_hwhm_bars, make_residual_overlay,
                                  lambda t: make_hwhm_bars(t, ("dpx_p", "dpy_p", "dpz_p"))])
def test_resolution_figures_layout(table, make):
    _check(make(table))


def test_figures_are_written(tomo, table, tmp_path):
    files = write_report(tomo, tmp_path / "tomo") + plot_summary(table, tmp_path / "ev")
    names = sorted(p.name for p in files)
    assert names == sorted(["summary.md", "significance.png", "density_matrix.png",
                            "density_matrix_methods.png", "correlations.png", "closure.png",
                            "hwhm_mtautau.png", "hwhm_momentum.png", "residuals_overlay.png"])
    for p in files:
        assert p.stat().st_size > 1000
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG_MAGIC
    assert not list(tmp_path.rglob("*.tmp*"))  # atomic writes leave nothing behind
    assert write_figures(_result(), tmp_path / "empty")  # no method: still the LO/truth maps


# --------------------------------------------------------------------------------------------
# Physical bounds


def test_unphysical_results_are_flagged():
    bad = _method("x", np.array([1.0, -0.5, -20.0]), 0.3, n=179, response=0.05,
                  efficiency=0.3)
    # m12 = 431 (C_nn = -20.74): flagged; so are |C_nn| > 1 and the negative eigenvalue
    big = _method("y", np.array([1.0, 0.5, -20.736]), 0.5, n=179)
    m12 = bounds.diag_quantities(big.calibrated, big.calibrated_cov)["m12"][0]
    assert m12 == pytest.approx(431.0, abs=1.0)
    flags = {f.quantity: f for f in bounds.method_flags(big, n_generated=4000)}
    assert {"C_nn", "m12", "concurrence", "smallest eigenvalue of ρ"} <= set(flags)
    f = flags["m12"]
    assert f.bound == "m12 ≤ 2" and "too few events: 89 in the pseudo-data half" in f.reasons
    # sigma(C) = 0.5 -> 0.1: 25 x the events
    assert f.needed == 179 * 25 and f.needed_generated == 4000 * 25
    first = bounds.method_flags(bad)[0]
    assert any("near singular" in r for r in first.reasons)
    assert any("efficiency 30 %" in r for r in first.reasons)
    assert first.needed is None  # no 1/sqrt(N) extrapolation of a degenerate calibration


def test_physical_results_are_not_flagged():
    good = _method("ml", C_LO, 0.05)
    assert bounds.method_flags(good) == []
    # outside by less than 2 sigma: not flagged
    assert bounds.method_flags(_method("ml", np.array([1.3, -0.5, 0.5]), 0.2)) == []
    # within the bounds but an uncertainty wider than the physical range: flagged as such
    wide = bounds.method_flags(_method("ml", C_LO, 0.3, mc=2.0))
    assert [f.quantity for f in wide] == ["σ(C)"]


def test_significance_bound():
    assert bounds.max_significance(2.0) == pytest.approx(2.0 / 3.0)
    assert bounds.max_significance(0.0) == 0.0


def test_report_summary_first_and_flags(tomo):
    md = to_markdown(tomo)
    head = md.split("\n## Truth level", 1)[0]
    assert "## Summary" in head and "| mmc, calibrated | 179 |" in head
    assert "**outside**: C_nn" in head and "| ml, calibrated |" in head
    ml_row = next(ln for ln in head.splitlines() if ln.startswith("| ml, calibrated"))
    assert ml_row.endswith("| ok |")
    # a result outside the physical bounds gets no significance (the demo showed Z = 113
    # beside a D the same table called meaningless); a physical one keeps its Z
    mmc_row = next(ln for ln in head.splitlines() if ln.startswith("| mmc, calibrated"))
    assert mmc_row.split(" | ")[5:7] == ["–", "–"], mmc_row
    assert "(" in ml_row.split(" | ")[5]
    assert "none for a result outside the physical bounds" in head
    assert "gave no result at this sample size" not in head  # no fits run here
    assert "response matrix near singular" in head
    assert "issue #" not in md
    widest = max(ln.count("|") for ln in md.splitlines() if ln.startswith("|"))
    assert widest <= 10  # small tables (the old resolution table had 35 bars)


def test_small_hwhm_cells_read_na(table):
    md = table.to_markdown("quantity", key="dm_tautau", reference=True)
    pipi = next(ln for ln in md.splitlines() if ln.startswith("| pi pi"))
    assert "n/a (10 events)" in pipi and f"fewer than {LOW_STATS}" in md
    murho = next(ln for ln in md.splitlines() if ln.startswith("| mu rho"))
    assert "n/a" not in murho.split("|")[3]
    assert np.isfinite(table.overall("ml")[0]) and table.overall("ml")[1] == 390


def test_summary_says_when_the_measurement_gave_no_result(tomo):
    from dataclasses import replace

    from ditau.tomography.fit import FitResult
    from ditau.tomography.measurement import SpinFit

    nan = float("nan")
    not_run = FitResult(np.full(15, nan), np.full((15, 15), nan), nan, nan, {}, nan, False,
                        not_run="no channel has the 50 template events the fit needs")
    res = replace(tomo, fits={"ml": SpinFit("ml", fits={"split 0, ours yields": not_run})})
    head = to_markdown(res).split("\n## Truth level", 1)[0]
    assert "**The measurement (the profile-likelihood fit) gave no result at this sample " \
           "size**" in head
    good = FitResult(np.zeros(15), np.eye(15) * 0.01, 0.8, 0.1, {}, 0.0, True, 3.0, 2.0,
                     params=np.zeros(18))
    res = replace(tomo, fits={"ml": SpinFit("ml", fits={"split 0, ours yields": good})})
    assert "gave no result" not in to_markdown(res).split("\n## Truth level", 1)[0]
