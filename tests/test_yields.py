"""Yields per fb^-1: sums of weights in the signal region, normalisation across files, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from ditau.cli import app
from ditau.detector.run import run_detector
from ditau.schema import read_events
from ditau.select import HADHAD, LEPHAD, SelectConfig
from ditau.yields import compute_yields


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


def test_yields_run_the_detector_on_generated_files(signal_particles, reco):
    direct = compute_yields([signal_particles]).total_signal()
    assert direct.sum_w == pytest.approx(compute_yields([reco]).total_signal().sum_w)


def test_yields_cli_prints_and_writes_the_tables(reco, tmp_path):
    md = tmp_path / "yields.md"
    res = CliRunner().invoke(app, ["yields", str(reco), "--markdown", str(md)])
    assert res.exit_code == 0, res.output
    assert "Signal yields per fb⁻¹" in res.output and "| eρ |" in res.output
    assert md.read_text().strip() == res.output.strip()


def test_yields_reject_files_without_reco_or_particles(inclusive):
    _, _, path = inclusive
    res = CliRunner().invoke(app, ["yields", str(path)])
    assert res.exit_code == 2
    assert "no particles to run the detector on and no reco columns" in res.output


def test_selection_settings_rerun_the_detector_or_fail_clearly(signal_particles, reco, tmp_path):
    cfg = tmp_path / "sel.yaml"
    cfg.write_text("lephad_mvis_window: [35, 75]\n")
    nominal = compute_yields([signal_particles]).total_signal()
    windowed = CliRunner().invoke(app, ["yields", str(signal_particles), "--select", str(cfg)])
    assert windowed.exit_code == 0, windowed.output
    tight = compute_yields([signal_particles], select_config=SelectConfig.from_yaml(cfg))
    assert 0 < tight.total_signal().sum_w < nominal.sum_w
    # a detector-level file without particles cannot be re-selected
    res = CliRunner().invoke(app, ["yields", str(reco), "--select", str(cfg)])
    assert res.exit_code == 2 and "with the requested settings" in res.output
