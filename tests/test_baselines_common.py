"""The shared reconstruction interface: inputs from reco columns, flags, output table."""

from __future__ import annotations

import numpy as np
import pytest

from ditau.reconstruct import (
    INPUT_COLUMNS,
    inputs_from_table,
    read_recon,
    recon_table,
    write_recon,
)
from ditau.schema import SchemaError


def _events(n=4):
    rng = np.random.default_rng(3)
    d = {"event_id": np.arange(10, 10 + n)}
    for leg in ("p", "m"):
        px, py, pz = rng.normal(0, 30, (3, n))
        for part, f in (("chg", 0.6), ("neu", 0.4)):
            d[f"reco_{part}_px_{leg}"] = f * px
            d[f"reco_{part}_py_{leg}"] = f * py
            d[f"reco_{part}_pz_{leg}"] = f * pz
            d[f"reco_{part}_e_{leg}"] = f * np.sqrt(px**2 + py**2 + pz**2 + 0.5)
    d["reco_mode_p"] = np.array(["rho"] * n)
    d["reco_mode_m"] = np.array(["mu"] * n)
    d["reco_neu_px_m"] = d["reco_neu_py_m"] = d["reco_neu_pz_m"] = d["reco_neu_e_m"] = \
        np.full(n, np.nan)  # a muon leg has no neutral part
    d["met_x"], d["met_y"] = rng.normal(0, 20, (2, n))
    d["met_sumet"] = np.full(n, 200.0)
    d["met_cov_xx"] = d["met_cov_yy"] = np.full(n, 50.0)
    d["met_cov_xy"] = np.zeros(n)
    assert set(d) == set(INPUT_COLUMNS)
    return d


def test_visible_leg_is_charged_plus_neutral_and_nan_neutral_counts_as_none():
    d = _events()
    inp = inputs_from_table(d)
    assert np.allclose(inp.vis_p[:, 0], d["reco_chg_px_p"] + d["reco_neu_px_p"])
    assert np.allclose(inp.vis_m[:, 3], d["reco_chg_e_m"])
    assert inp.good.all()


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("met_x", np.nan, "MET is not finite"),
    ("met_cov_xx", 0.0, "MET covariance"),
    ("reco_mode_p", "other", "tau+ leg: decay mode"),
    ("reco_chg_px_m", 0.0, None),
])
def test_bad_inputs_are_flagged_per_event(column, value, reason):
    d = _events()
    d[column] = np.array(d[column], dtype=object if isinstance(value, str) else float)
    d[column][1] = value
    if column == "reco_chg_px_m":  # zero-pT leg
        d["reco_chg_py_m"] = d["reco_chg_py_m"].copy()
        d["reco_chg_py_m"][1] = 0.0
        reason = "tau- leg: visible momentum missing or zero pT"
    inp = inputs_from_table(d)
    assert inp.bad[1].startswith(reason)
    assert list(inp.good) == [True, False, True, True]


def test_recon_table_marks_failed_inputs_and_derives_neutrinos(tmp_path):
    d = _events()
    d["met_y"][2] = np.inf
    inp = inputs_from_table(d)
    tau_p, tau_m = inp.vis_p * 1.5, inp.vis_m * 2.0
    t = recon_table("test", inp, tau_p, tau_m, np.full(4, "ok", dtype=object))
    assert t["rec_status"].to_pylist() == ["ok", "ok", "failed", "ok"]
    assert t["rec_reason"][2].as_py() == "MET is not finite"
    assert np.isnan(t["rec_tau_px_p"][2].as_py())
    assert t["rec_nu_px_p"][0].as_py() == pytest.approx(0.5 * inp.vis_p[0, 0])
    write_recon(t, tmp_path / "r.parquet", {"method": "test"})
    back = read_recon(tmp_path / "r.parquet")
    assert back["event_id"].to_pylist() == [10, 11, 12, 13]


def test_missing_reco_columns_name_the_source():
    d = _events()
    del d["met_cov_xy"]
    with pytest.raises(SchemaError, match=r"src\.parquet: missing column.*met_cov_xy"):
        inputs_from_table(d, source="src.parquet")
