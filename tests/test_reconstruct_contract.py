"""One contract for every registered reconstruction method (collinear, FastMTT, MMC, ML):
the Method protocol, the output schema and row order, flags for bad inputs, independence of
chunking / workers / back-end, and determinism with a seed."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ditau.ml.features import IP_COLUMNS
from ditau.reconstruct import (
    METHODS,
    Method,
    make_method,
    read_recon,
    recon_schema,
    reconstruct,
    run_on_table,
    settings_class,
)
from ditau.schema import RECO_STATUS, read_events
from test_collinear import ztautau_events
from test_reconstruct import write_event_file

ALL = sorted(METHODS)
#: Settings that keep the slow methods quick on the test sample.
QUICK = {"mmc": {"n_phi": 8, "n_met": 8}, "ml": {"candidates": 3, "device": "cpu"},
         "fastmtt": {"grid": 40}, "collinear": {}}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sr_events(tmp_path_factory):
    """300 Z -> tau tau events (rho/mu legs with a realistic MET resolution, no jets) as a
    detector-level file and a table; every third event is outside the signal region."""
    d, _, _ = ztautau_events(300, seed=41, modes=("rho", "mu", "pi"), cov=60.0)
    path = write_event_file(tmp_path_factory.mktemp("contract") / "events.parquet", d,
                            jets=True)
    t = read_events(path)
    return path, t.filter(t["in_sr"]).drop_columns(["in_sr"])


@pytest.mark.parametrize("name", ALL)
def test_method_follows_the_protocol_and_validates_its_settings(name):
    m = make_method(name, QUICK[name])
    assert isinstance(m, Method) and m.name == name
    assert isinstance(m.settings, settings_class(name))
    assert all(isinstance(c, str) for c in m.columns)
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['no_such_setting'\]"):
        make_method(name, {"no_such_setting": 1})


@pytest.mark.parametrize("name", ALL)
def test_output_schema_rows_and_status(name, sr_events):
    _, t = sr_events
    out = run_on_table(name, t, QUICK[name])
    assert out.schema.equals(recon_schema())
    first = out.filter(pc.equal(out["candidate"], 0))
    # one candidate-0 row per input event, in input order
    assert np.array_equal(first["event_id"].to_numpy(), t["event_id"].to_numpy())
    status = np.asarray(first["rec_status"].to_pylist())
    assert set(status) <= set(RECO_STATUS)
    m = first["rec_m_tautau"].to_numpy(zero_copy_only=False)
    assert np.all(np.isfinite(m[status == "ok"])) and np.all(m[status == "ok"] > 0)
    assert np.all(np.isnan(m[status != "ok"]))
    assert np.mean(status == "ok") > 0.3  # Z -> tau tau events: a good share is reconstructed


BAD_INPUTS = [  # (column, value, reason of the failed row)
    ("met_x", np.nan, "MET is not finite"),
    ("met_cov_xx", 0.0, "MET covariance missing or not positive definite"),
    ("reco_mode_p", "other", "tau+ leg: decay mode"),
    ("reco_mode_m", "other", "tau- leg: decay mode"),
    ("reco_chg_px_p", np.nan, "tau+ leg: visible momentum missing or zero pT"),
    ("reco_chg_px_m", 0.0, "tau- leg: visible momentum missing or zero pT"),
    ("reco_chg_e_p", 1e-3, "tau+ leg: visible energy below |p|"),  # E < |p|: unphysical
]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(("column", "value", "reason"), BAD_INPUTS)
def test_bad_inputs_are_flagged_and_do_not_change_the_others(name, column, value, reason,
                                                              sr_events):
    _, t = sr_events
    t = t.slice(0, 30)
    arr = np.asarray(t[column].to_pylist(), dtype=object if isinstance(value, str) else float)
    arr[3] = value
    bad = t.set_column(t.schema.get_field_index(column), column,
                       pa.array(arr, type=t.schema.field(column).type))
    if column == "reco_chg_px_m":  # zero pT: both components
        bad = bad.set_column(bad.schema.get_field_index("reco_chg_py_m"), "reco_chg_py_m",
                             pa.array(np.where(np.arange(30) == 3, 0.0,
                                               t["reco_chg_py_m"].to_numpy())))
    out = run_on_table(name, bad, QUICK[name])
    out = out.filter(pc.equal(out["candidate"], 0))
    status = np.asarray(out["rec_status"].to_pylist())
    reasons = np.asarray(out["rec_reason"].to_pylist())
    if name == "collinear" and column == "met_cov_xx":
        assert status[3] != "failed"  # collinear does not use the MET covariance
    else:
        assert status[3] == "failed" and reasons[3].startswith(reason), reasons[3]
    good = run_on_table(name, t, QUICK[name])
    good = good.filter(pc.equal(good["candidate"], 0))
    keep = np.setdiff1d(np.arange(30), [3])
    a = out["rec_m_tautau"].to_numpy(zero_copy_only=False)[keep]
    b = good["rec_m_tautau"].to_numpy(zero_copy_only=False)[keep]
    assert np.allclose(a, b, rtol=1e-6, equal_nan=True)
    assert out["rec_status"].to_pylist()[:3] == good["rec_status"].to_pylist()[:3]


@pytest.mark.parametrize("name", ALL)
def test_chunking_and_workers_do_not_change_the_output(name, sr_events, tmp_path):
    nom, _ = sr_events
    kw = {"only_sr": True, "progress": False, **QUICK[name]}
    big = reconstruct(nom, tmp_path / "big.parquet", name, chunk=100000, **kw).path
    small = reconstruct(nom, tmp_path / "small.parquet", name, chunk=97, **kw).path
    a, b = read_recon(big), read_recon(small)
    assert np.array_equal(a["event_id"].to_numpy(), b["event_id"].to_numpy())
    assert np.array_equal(a["candidate"].to_numpy(), b["candidate"].to_numpy())
    assert a["rec_status"].to_pylist() == b["rec_status"].to_pylist()
    ma = a["rec_m_tautau"].to_numpy(zero_copy_only=False)
    mb = b["rec_m_tautau"].to_numpy(zero_copy_only=False)
    if name == "ml":  # different batch shapes: equal up to float rounding (ditau.ml.infer)
        assert np.allclose(ma, mb, rtol=1e-5, equal_nan=True)
    else:
        assert np.array_equal(ma, mb, equal_nan=True)
    if name != "ml":  # two processes (fork) over 97-event chunks: the same bytes
        two = reconstruct(nom, tmp_path / "two.parquet", name, chunk=97, workers=2, **kw).path
        assert _sha(two) == _sha(small)


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_bytes(name, sr_events, tmp_path):
    nom, _ = sr_events
    kw = {"only_sr": True, "progress": False, "chunk": 500, **QUICK[name]}
    p1 = reconstruct(nom, tmp_path / "a.parquet", name, **kw).path
    p2 = reconstruct(nom, tmp_path / "b.parquet", name, **kw).path
    assert _sha(p1) == _sha(p2)
    if "seed" in {f for f in settings_class(name).__dataclass_fields__}:
        p3 = reconstruct(nom, tmp_path / "c.parquet", name, **{**kw, "seed": 7}).path
        m1 = read_recon(p1)["rec_m_tautau"].to_numpy(zero_copy_only=False)
        m3 = read_recon(p3)["rec_m_tautau"].to_numpy(zero_copy_only=False)
        assert not np.array_equal(m1, m3, equal_nan=True)  # the seed is used


def test_reconstruct_on_a_dask_cluster_is_byte_identical(sr_events, tmp_path):
    from dask.distributed import Client, LocalCluster

    nom, _ = sr_events
    kw = {"only_sr": True, "progress": False, "chunk": 150, "grid": 40}
    local = reconstruct(nom, tmp_path / "local.parquet", "fastmtt", **kw).path
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        remote = reconstruct(nom, tmp_path / "dask.parquet", "fastmtt",
                             scheduler=client.scheduler.address, **kw).path
    assert _sha(remote) == _sha(local)
    assert math.isfinite(float(np.nanmedian(read_recon(remote)["rec_m_tautau"].to_numpy(
        zero_copy_only=False))))


def test_mmc_reads_the_jets_only_when_its_settings_use_them():
    assert make_method("mmc").columns == ()
    assert make_method("mmc", {"use_mht": True}).columns == ("jet1_px", "jet1_py")
    assert make_method("mmc", {"met_resolution": "atlas2016"}).columns == ("jet1_px", "jet1_py")
    jets = tuple(f"jet{j}_{c}" for j in (1, 2, 3) for c in ("px", "py", "pz", "e"))
    assert make_method("ml", {"model": "ditau-cpu-v1"}).columns == jets
    # the default model (ditau-cpu-v2) reads the tracks' impact parameters too
    assert make_method("ml").columns == (*jets, *IP_COLUMNS)
