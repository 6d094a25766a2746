"""The ML method end to end: `ditau train` -> `ditau reconstruct --method ml` -> `ditau
evaluate`, candidates and point estimates, ONNX export, and the CLI without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from ditau.cli import app  # noqa: E402
from ditau.evaluate import evaluate_files, residuals  # noqa: E402
from ditau.ml.infer import candidate_spread, constraint_chi2, predict  # noqa: E402
from ditau.ml.synthetic import synthetic_events  # noqa: E402
from ditau.reconstruct import (  # noqa: E402
    inputs_from_table,
    read_recon,
    reconstruct,
)
from ditau.reconstruct.ml import ml  # noqa: E402
from ditau.schema import read_metadata, write_events  # noqa: E402

torch.set_num_threads(1)
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
N, K = 120, 4


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """Synthetic events plus one bad event and one dileptonic (foreign-channel) event."""
    t = synthetic_events(N, seed=21, x_spread=0.05, met_noise=2.0)
    d = {n: t[n].to_numpy(zero_copy_only=False).copy() for n in t.column_names}
    d["reco_mode_p"][3] = "other"
    d["reco_mode_p"][7], d["reco_mode_m"][7] = "e", "mu"
    d["reco_channel"][3] = d["reco_channel"][7] = "other"
    path = tmp_path_factory.mktemp("mlpipe") / "events.parquet"
    write_events(pa.table(d), path, {"stage": "detector", "run_id": "synthetic-mlpipe"})
    return path


@pytest.fixture(scope="module")
def model(events, tmp_path_factory):
    out = tmp_path_factory.mktemp("mlrun") / "run"
    r = runner.invoke(app, ["train", str(ROOT / "configs/ml/smoke_cpu.yaml"), "--data",
                            str(events), "--out-dir", str(out), "--max-steps", "60", "-q"])
    assert r.exit_code == 0, r.output
    assert f"wrote {out / 'model.pt'}" in r.output and "training /" in r.output
    return out / "model.pt"


def test_reconstruct_cli_writes_candidates_and_evaluate_accepts_them(events, model, tmp_path):
    out = tmp_path / "ml.parquet"
    r = runner.invoke(app, ["reconstruct", str(events), "-o", str(out), "--method", "ml",
                            "--model", str(model), "--candidates", str(K), "--device", "cpu",
                            "-q"])
    assert r.exit_code == 0, r.output
    t = read_recon(out)
    assert t.num_rows == (N - 2) * (K + 1) + 2
    cand = t["candidate"].to_numpy()
    status = np.asarray(t["rec_status"].to_pylist())
    ids = t["event_id"].to_numpy()
    assert np.array_equal(np.unique(ids), np.arange(N))
    assert np.all(np.diff(ids) >= 0)  # event-major, input order
    assert np.array_equal(np.bincount(cand[status == "ok"]), np.full(K + 1, N - 2))
    reasons = dict(zip(ids[status == "failed"], np.asarray(t["rec_reason"].to_pylist())[
        status == "failed"], strict=True))
    assert set(reasons) == {3, 7}
    assert "decay mode" in reasons[3] and "legs e/mu" in reasons[7]
    ok = status == "ok"
    assert np.all(np.isfinite(t["rec_m_tautau"].to_numpy()[ok]))
    meta = read_metadata(out)
    assert meta["method"] == "ml" and meta["settings"] == {
        "model": str(model), "candidates": K, "device": "cpu", "steps": None, "sampler": None,
        "point": "median", "seed": 0, "batch_size": 4096}
    r = runner.invoke(app, ["evaluate", str(events), "-r", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert "ml" in r.output and "dm_tautau" in r.output
    ev = evaluate_files(events, [out], plots=False)
    assert ev.table.cell("pipi", "ml").n_rows == ev.table.cell("pipi", "ml").n_ok
    res_all = residuals(pq.read_table(events), t, all_candidates=True)
    assert len(res_all["event_id"]) == (N - 2) * (K + 1)


def test_output_does_not_depend_on_the_chunking(events, model, tmp_path):
    a = read_recon(reconstruct(events, tmp_path / "a.parquet", "ml", chunk=1000,
                               progress=False, model=str(model), candidates=3,
                               device="cpu").path)
    b = read_recon(reconstruct(events, tmp_path / "b.parquet", "ml", chunk=17,
                               progress=False, model=str(model), candidates=3,
                               device="cpu").path)
    assert a["event_id"].to_pylist() == b["event_id"].to_pylist()
    for c in ("rec_nu_px_p", "rec_nu_pz_m", "rec_m_tautau"):
        assert np.allclose(a[c].to_numpy(), b[c].to_numpy(), atol=1e-4, equal_nan=True), c


def test_point_estimates_and_uncertainty(events, model):
    table = pq.read_table(events)
    med = predict(table, model=model, candidates=6, device="cpu", seed=4)
    con = predict(table, model=model, candidates=6, device="cpu", seed=4, point="constraint")
    assert np.array_equal(med.nu, con.nu)  # same seed, same candidates
    assert np.allclose(med.point, np.median(med.nu, axis=1))
    # the constraint estimate is the candidate of least chi^2, i.e. one of the candidates
    chi2 = constraint_chi2(con.nu, con.inputs, con.rows)
    assert np.array_equal(con.chosen, np.argmin(chi2, axis=1))
    assert np.array_equal(con.point, con.nu[np.arange(len(con.rows)), con.chosen])
    out = ml(table, model=model, candidates=6, device="cpu", seed=4)
    spread = candidate_spread(out)
    assert np.array_equal(spread["event_id"], table["event_id"].to_numpy()[med.rows])
    assert np.all(spread["n"] == 6)
    assert np.allclose(spread["nu_std_px_p"], med.nu_std[:, 0], rtol=1e-6, atol=1e-9)
    assert np.allclose(spread["m_std"], med.m_std, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="point estimate"):
        predict(table, model=model, point="mode", device="cpu")
    with pytest.raises(ValueError, match="needs the event table"):
        ml(inputs_from_table(table), model=model, device="cpu")


def test_events_without_a_usable_channel_give_failed_rows_only(events, model):
    t = synthetic_events(4, seed=2)
    d = {n: t[n].to_numpy(zero_copy_only=False).copy() for n in t.column_names}
    d["reco_mode_p"][:], d["reco_mode_m"][:] = "e", "mu"
    for point in ("median", "constraint"):
        out = ml(pa.table(d), model=model, device="cpu", point=point)
        assert out["rec_status"].to_pylist() == ["failed"] * 4
        assert out["candidate"].to_pylist() == [0] * 4


def test_help_lists_the_ml_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "train" in r.output and "export" in r.output


def test_cli_errors(events, model, tmp_path):
    out = tmp_path / "x.parquet"
    missing = tmp_path / "missing.pt"
    r = runner.invoke(app, ["reconstruct", str(events), "-o", str(out), "--method", "ml",
                            "--model", str(missing), "-q"])
    assert r.exit_code == 2 and str(missing) in r.output and "cannot read" in r.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(model.read_bytes()[:1000])
    r = runner.invoke(app, ["reconstruct", str(events), "-o", str(out), "--method", "ml",
                            "--model", str(bad), "-q"])
    assert r.exit_code == 2 and f"{bad}: checksum mismatch" in r.output
    r = runner.invoke(app, ["reconstruct", str(events), "-o", str(out), "--method",
                            "collinear", "--model", str(model), "-q"])
    assert r.exit_code == 2 and "unknown setting" in r.output
    assert not out.exists()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: [x.parquet]\nepochs: 3\n")
    r = runner.invoke(app, ["train", str(cfg)])
    assert r.exit_code == 2 and "unknown key(s) ['epochs']" in r.output


@pytest.mark.parametrize("split", [False, True])
def test_onnx_export_matches_pytorch(model, tmp_path, split):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from ditau.ml.export import compare_onnx, read_metadata

    out = tmp_path / "m.onnx"
    args = ["export", str(model), "-o", str(out), "--steps", "3", "--check"]
    r = runner.invoke(app, args + (["--split"] if split else []))
    assert r.exit_code == 0, r.output
    paths = [tmp_path / "m.body.onnx", tmp_path / "m.head.onnx"] if split else [out]
    assert all(p.is_file() for p in paths)
    assert compare_onnx(paths, model, batch=4, candidates=3) < 1e-4
    meta = read_metadata(paths[0])
    assert meta["steps"] == 3 and meta["objective"] == "fm" and "met_scale" in meta["stats"]


def test_cli_and_classical_methods_work_without_torch(events, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any 'import torch' now raises ImportError
        from typer.testing import CliRunner
        import ditau, ditau.cli
        r = CliRunner().invoke(ditau.cli.app, ["reconstruct", {str(events)!r}, "-o",
                               {str(tmp_path / "c.parquet")!r}, "--method", "collinear", "-q"])
        assert r.exit_code == 0, r.output
        r = CliRunner().invoke(ditau.cli.app, ["reconstruct", {str(events)!r}, "-o",
                               {str(tmp_path / "m.parquet")!r}, "--method", "ml", "--model",
                               "x.pt", "-q"])
        assert r.exit_code == 2 and "method ml not available" in r.output, r.output
        r = CliRunner().invoke(ditau.cli.app, ["train", "x.yaml"])
        assert r.exit_code == 2 and "need PyTorch" in r.output, r.output
        r = CliRunner().invoke(ditau.cli.app, ["export", "x.pt", "-o", "x.onnx"])
        assert r.exit_code == 2 and "need PyTorch" in r.output, r.output
        print(json.dumps("torch" in [m for m in sys.modules if sys.modules[m] is not None]))
    """).replace("print(json", "import json; print(json")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout.strip().splitlines()[-1]) is False
    assert (tmp_path / "c.parquet").is_file()
