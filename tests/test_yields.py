"""Yields per fb^-1: sums of weights in the signal region, normalisation across files, CLI."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from typer.testing import CliRunner

from ditau.cli import app
from ditau.detector.run import run_detector
from ditau.schema import read_events
from ditau.select import HADHAD, LEPHAD
from ditau.yields import Yield, YieldTable, compute_yields, total


@pytest.fixture(scope="module")
def reco(signal_particles, tmp_path_factory):
    out = tmp_path_factory.mktemp("yields") / "signal_reco.parquet"
    run_detector(signal_particles, out, keep_particles=False, progress=False)
    return out


def test_signal_yields_are_the_weighted_sr_counts_by_truth_channel(reco):
    t = read_events(reco, require=("id", "truth", "reco"))
    w = np.asarray(t["weight"]) * np.asarray(t["reco_weight"])
    sr = np.asarray(t["in_sr"])
    rc = np.asarray(t["reco_channel"].to_pylist())
    tc = np.asarray(t["truth_channel"].to_pylist())
    y = compute_yields([reco])
    assert y.total_signal().sum_w == pytest.approx(w[sr & np.isin(rc, HADHAD + LEPHAD)].sum())
    assert y.total_signal().n == int(np.sum(sr))
    cell = y.signal["erho"]["lrho"]
    m = sr & (rc == "erho") & np.isin(tc, ["erho", "murho"])
    assert cell.sum_w == pytest.approx(w[m].sum())
    assert cell.error == pytest.approx(np.sqrt(np.sum(w[m] ** 2)))
    # the same sample given twice is one sample: same yields, not double
    y2 = compute_yields([reco, reco])
    assert y2.total_signal().sum_w == pytest.approx(y.total_signal().sum_w)


def test_yields_cli_prints_and_writes_the_tables(reco, tmp_path):
    md = tmp_path / "yields.md"
    res = CliRunner().invoke(app, ["yields", str(reco), "--markdown", str(md)])
    assert res.exit_code == 0, res.output
    assert "Signal yields per fb⁻¹" in res.output and "| eρ |" in res.output
    assert md.read_text().strip() == res.output.strip()


def test_yields_read_detector_level_files_only(signal_particles, tmp_path):
    # a generated file (particles, no reco columns): the yields do not run the detector
    res = CliRunner().invoke(app, ["yields", str(signal_particles)])
    assert res.exit_code == 2
    assert "run 'ditau detector' on it first" in res.output
    assert str(signal_particles) in res.output
    res = CliRunner().invoke(app, ["yields", str(tmp_path / "missing.parquet")])
    assert res.exit_code == 2 and "no such file" in res.output


def test_upper_limits_are_never_summed_into_a_total():
    # the pipi row: a yield from Z->ll, no W->lnu MC event (a limit); the rhorho row: limits
    # only. Before: "0.08 ± 0.06" hiding the limit, and "< 2.6e+04" as the rhorho total.
    zll = Yield(sum_w=0.08, sum_w2=0.06**2, n=2, unit=0.04)
    wlnu = Yield(unit=2.28e4)
    table = YieldTable(background={"pipi": {"zll": zll, "wlnu": wlnu},
                                   "rhorho": {"zll": Yield(unit=0.04), "wlnu": Yield(unit=2.28e4)}},
                       samples=["wlnu", "zll"], events={"wlnu": 10, "zll": 10})
    assert str(wlnu) == "< 2.6e+04"
    row = total(table.background["pipi"].values())
    assert row.sum_w == pytest.approx(0.08) and row.n == 2
    assert str(row) == "0.08 ± 0.06 (+ < 2.6e+04)"
    rr = total(table.background["rhorho"].values())
    assert rr.sum_w == 0 and not rr.is_limit and str(rr) == "0 (+ < 2.6e+04)"
    md = table.to_markdown()
    assert "| ππ | < 2.6e+04 | 0.08 ± 0.06 | 0.08 ± 0.06 (+ < 2.6e+04) |" in md
    assert "| ρρ | < 2.6e+04 | < 0.046 | 0 (+ < 2.6e+04) |" in md
    assert "Limits are never summed into a total" in md
    assert table.total_background().sum_w == pytest.approx(0.08)


def test_yields_cli_missing_file_is_one_line(reco, tmp_path):
    res = CliRunner().invoke(app, ["yields", str(reco), str(tmp_path / "gone.parquet")])
    assert res.exit_code == 2
    assert res.output.strip() == f"error: {tmp_path / 'gone.parquet'}: no such file"


def test_truth_leg_modes_classify_the_non_analyser_decays():
    import pyarrow as pa

    from ditau.yields import truth_leg_modes

    t = pa.table({
        "decay_mode_p": ["pi", "rho", "e", "other", "other", "other", "other", "other", "other"],
        "n_charged_p": [1, 1, 1, 1, 1, 1, 3, 3, 5],
        "n_pi0_p": [0, 1, 0, 2, 1, 0, 0, 1, 0],
        "n_neutral_p": [0, 1, 0, 2, 1, 1, 0, 1, 0],
        "chg_pdg_p": [211, -211, -11, 211, 321, 211, 0, 0, 0],
    })
    assert list(truth_leg_modes(t, "p")) == [
        "pi", "rho", "e", "pi2pi0", "kaon", "1prong_other", "3prong", "3prong_neu", "other"]


def test_composition_and_cutflow(reco, tmp_path, relabel_three_prong):
    from ditau.yields import REFERENCE_SR_DIAGONAL, composition, cutflow

    relabelled = tmp_path / "three_prong.parquet"
    ids = relabel_three_prong(reco, relabelled, 6)
    t = read_events(relabelled, require=("id", "truth", "reco"))
    w = np.asarray(t["weight"]) * np.asarray(t["reco_weight"])
    sr = np.asarray(t["in_sr"])
    rc = np.asarray(t["reco_channel"].to_pylist())
    tc = np.asarray(t["truth_channel"].to_pylist())
    rm = np.asarray(t["reco_mode_p"].to_pylist())
    moved = np.isin(np.asarray(t["event_id"]), ids)

    comp = composition([relabelled])
    # every SR event of a channel is in one of the three truth categories
    y = compute_yields([relabelled])
    for ch in HADHAD + LEPHAD:
        assert sum(c.sum_w for c in comp.events[ch].values()) == pytest.approx(
            total(y.signal[ch].values()).sum_w)
        m = sr & (rc == ch) & moved
        assert comp.events[ch]["non-analyser"].sum_w == pytest.approx(w[m].sum())
    # the relabelled tau+ legs are the 3-prong share of the reco legs they were
    for ch, mode in {(c, m) for c, m in zip(rc[moved], rm[moved], strict=True)}:
        legs = comp.legs[(ch, mode)]
        assert legs["3prong"].sum_w == pytest.approx(w[moved & (rc == ch) & (rm == mode)].sum())
        assert sum(comp.fraction(ch, mode, k) for k in legs) == pytest.approx(1.0)
    assert "3-prong" in comp.to_markdown()

    flow = cutflow([relabelled])
    for ch in HADHAD + LEPHAD:
        steps = [flow.steps[ch][s].sum_w for s in ("generated", "trigger", "object ID",
                                                    "channel", "SR")]
        assert steps[0] == pytest.approx(w[tc == ch].sum())
        assert all(a >= b for a, b in itertools.pairwise(steps))
        # the last step is the diagonal cell of the yields table
        assert steps[-1] == pytest.approx(w[sr & (rc == ch) & (tc == ch)].sum())
        assert ch in REFERENCE_SR_DIAGONAL
    md = flow.to_markdown()
    assert "| truth channel | generated | trigger | object ID | channel | SR |" in md
    res = CliRunner().invoke(app, ["yields", str(relabelled), "--composition", "--cutflow"])
    assert res.exit_code == 0, res.output
    assert "Signal cut-flow per truth channel" in res.output
    assert "Signal-region composition by truth decay mode" in res.output
