"""The reconstruct driver and its CLI: file in, one method file out, deterministic."""

from __future__ import annotations

import importlib.util

import numpy as np
import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from ditau.cli.reconstruct import reconstruct_command
from ditau.reconstruct import get_method, inputs_from_table, read_recon, reconstruct
from ditau.reconstruct.collinear import collinear
from ditau.reconstruct.fastmtt import fastmtt
from ditau.schema import SchemaError, read_metadata, write_events
from test_collinear import col, ztautau_events

N = 230


def write_event_file(path, d: dict, jets: bool = False):
    """A detector-level file of the synthetic events ``d`` (every third event outside the
    signal region; with ``jets``, empty jet slots as the ml method reads them)."""
    n = len(d["event_id"])
    cols = dict(d)
    if jets:
        cols.update({f"jet{j}_{c}": np.full(n, np.nan) for j in (1, 2, 3)
                     for c in ("px", "py", "pz", "e")})
    cols["sample"] = np.full(n, "ztautau")
    cols["weight"] = np.ones(n)
    cols["gen_weight"] = np.ones(n)
    cols["in_sr"] = np.arange(n) % 3 != 0
    write_events(pa.table(cols), path, {"stage": "detector"})
    return path


@pytest.fixture(scope="module")
def event_file(tmp_path_factory):
    d, _, _ = ztautau_events(N, seed=30, modes=("rho", "mu"), cov=40.0)
    d["reco_mode_p"] = d["reco_mode_p"].astype(object)
    d["reco_mode_p"][5] = "other"  # a bad event: failed, the rest goes on
    d["event_id"] = d["event_id"] + 1000
    return write_event_file(tmp_path_factory.mktemp("recon") / "events.parquet", d), d


@pytest.mark.parametrize("method", ["collinear", "fastmtt"])
def test_writes_a_valid_file_equal_to_the_method_on_all_events(event_file, tmp_path, method):
    path, d = event_file
    out = tmp_path / f"{method}.parquet"
    s = reconstruct(path, out, method, progress=False)
    t = read_recon(out)
    assert s.path == out and s.events == N == t.num_rows
    direct = {"collinear": collinear, "fastmtt": fastmtt}[method](inputs_from_table(d))
    assert np.array_equal(col(t, "event_id"), np.arange(N) + 1000)
    assert np.array_equal(col(t, "rec_m_tautau"), col(direct, "rec_m_tautau"), equal_nan=True)
    assert col(t, "rec_status")[5] == "failed"
    meta = read_metadata(out)
    assert meta["stage"] == "reconstruct" and meta["method"] == method
    assert meta["input"] == str(path)
    assert meta["status_counts"] == s.counts
    assert sum(s.counts.values()) == N and s.counts["failed"] == 1
    assert meta["reason_counts"]["tau+ leg: decay mode not one of pi, rho, e, mu"] == 1


def test_chunks_workers_and_reruns_give_the_same_output(event_file, tmp_path):
    path, _ = event_file
    ref = read_recon(_run(path, tmp_path / "a.parquet", chunk=1000, workers=1))
    for i, (chunk, workers) in enumerate([(1000, 1), (17, 1), (40, 2)]):
        t = read_recon(_run(path, tmp_path / f"b{i}.parquet", chunk=chunk, workers=workers))
        for name in ref.column_names:
            a, b = col(ref, name), col(t, name)
            if a.dtype.kind == "f":
                assert np.array_equal(a, b, equal_nan=True), name
            else:
                assert list(a) == list(b), name


def _run(path, out, **kw):
    reconstruct(path, out, "fastmtt", progress=False, **kw)
    return out


def test_signal_region_only_and_settings_are_recorded(event_file, tmp_path):
    path, _ = event_file
    out = tmp_path / "sr.parquet"
    s = reconstruct(path, out, "fastmtt", only_sr=True, chunk=50, progress=False, grid=50,
                    mass_correction=False)
    t = read_recon(out)
    sr = np.arange(N) % 3 != 0
    assert s.events == t.num_rows == sr.sum()
    assert np.array_equal(col(t, "event_id"), np.arange(N)[sr] + 1000)
    meta = read_metadata(out)
    assert {k: meta["settings"][k] for k in ("grid", "mass_correction", "mass_power")} == {
        "grid": 50, "mass_correction": False, "mass_power": 6.0}  # the defaults recorded too
    assert meta["only_sr"] is True
    x = col(t, "rec_tau_px_p") / col(t, "rec_tau_px_p")  # finite where ok
    assert np.isfinite(x).sum() == s.counts["ok"]


def test_user_errors(event_file, tmp_path):
    path, _ = event_file
    with pytest.raises(ValueError, match="unknown method"):
        reconstruct(path, tmp_path / "x.parquet", "svfit", progress=False)
    with pytest.raises(ValueError, match="unknown setting"):
        reconstruct(path, tmp_path / "x.parquet", "collinear", grid=3, progress=False)
    with pytest.raises(SchemaError, match="no such file"):
        reconstruct(tmp_path / "missing.parquet", tmp_path / "x.parquet", "collinear",
                    progress=False)
    with pytest.raises(SchemaError, match="does not exist"):
        reconstruct(path, tmp_path / "nodir" / "x.parquet", "collinear", progress=False)
    assert not (tmp_path / "x.parquet").exists()


def test_mmc_is_dispatched_by_name_or_reported_missing():
    if importlib.util.find_spec("ditau.reconstruct.mmc") is None:
        with pytest.raises(ValueError, match="method mmc not available"):
            get_method("mmc")
    else:
        assert callable(get_method("mmc"))


def test_cli(event_file, tmp_path):
    path, _ = event_file
    app = typer.Typer()
    app.command()(reconstruct_command)
    runner = CliRunner()
    out = tmp_path / "cli.parquet"
    r = runner.invoke(app, [str(path), "-o", str(out), "--method", "collinear", "-q"])
    assert r.exit_code == 0, r.output
    assert str(out) in r.output and "events/s" in r.output and "failed 1" in r.output
    assert read_recon(out).num_rows == N
    r = runner.invoke(app, [str(path), "-o", str(out), "--method", "nope", "-q"])
    assert r.exit_code == 2
    assert "error: unknown method" in r.output


def test_worker_processes_are_spawned_once_torch_is_loaded():
    """Regression: ``ditau reconstruct --method ml -j 2`` never returned once the parent had
    loaded the model (to learn which columns it reads): children forked after torch's
    intra-op thread pool started hang on its locks. A process that imported torch spawns its
    workers; one that did not (and ran no OpenMP numba code) forks them."""
    import subprocess
    import sys

    code = ("import sys; from ditau.stage import _start_method; a = _start_method(); "
            "import torch; torch.ones(64, 64) @ torch.ones(64, 64); print(a, _start_method())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["fork", "spawn"], out
