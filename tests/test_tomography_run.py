"""The tomography stage end to end on a small generated sample."""

import numpy as np
import pytest

from ditau.schema import read_events, write_events
from ditau.tomography.report import to_markdown, write_report
from ditau.tomography.run import TomographyError, run_tomography


@pytest.fixture(scope="module")
def reco_files(signal_reco_tes):
    return signal_reco_tes


def test_pipeline_calibrates_and_reports(reco_files, tmp_path):
    nom, up = reco_files
    kw = dict(methods=("truth", "fastmtt"), variations={"tes_up": up}, n_boot=3, seed=1,
              min_events=5)
    res = run_tomography(nom, **kw)
    assert set(res.methods) == {"truth", "fastmtt"}, res.notes
    truth = res.truth_inclusive["observables"]
    # 2000 produced events, polarimeter analysers: C_kk ~ 1 within a few sigma
    assert abs(truth.C[0, 0] - 1.0) < 4 * truth.C_err[0, 0] + 0.05
    for r in res.methods.values():
        assert np.all(np.isfinite(r.calibrated)) and np.all(np.isfinite(r.truth))
        assert set(r.systematics) >= {"tes", "MC statistics (calibration)", "luminosity"}
        z = r.significance_no_mc.z_entanglement
        assert np.all(np.diff(z) >= -1e-9)  # more data never hurts
    # the truth method keeps every selected event
    assert res.methods["truth"].efficiency == 1.0
    md = to_markdown(res)
    assert "Calibrated spin correlations" in md and "| truth |" in md
    files = write_report(res, tmp_path / "rep")
    assert all(f.is_file() for f in files)
    # reproducible: same seed, same report
    assert to_markdown(run_tomography(nom, **kw)).split("\n", 3)[3] == md.split("\n", 3)[3]


def test_file_without_reco_columns_is_named(signal_particles, tmp_path):
    t = read_events(signal_particles, columns=["event_id", "sample", "weight", "gen_weight"])
    write_events(t, tmp_path / "bare.parquet", {"stage": "generate"})
    with pytest.raises(TomographyError, match=r"bare.parquet: no .*column 'in_sr'"):
        run_tomography(tmp_path / "bare.parquet")
