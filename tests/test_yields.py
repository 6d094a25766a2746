"""Yields per fb^-1: sums of weights in the signal region, normalisation across files, CLI."""

from __future__ import annotations

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
