import numpy as np
from typer.testing import CliRunner

from ditau.cli import app
from ditau.schema import read_events

runner = CliRunner()


def test_help_lists_stages():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for stage in ("generate", "demo", "info", "schema", "detector", "yields", "import-delphes",
                  "plot-inputs"):
        assert stage in res.output


def test_generate_and_info(tmp_path):
    out = tmp_path / "z.parquet"
    res = runner.invoke(app, ["generate", "--events", "30", "--out", str(out), "--quiet",
                              "--events-per-job", "15", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert "wrote 30 events" in res.output
    t = read_events(out, require=("id", "truth", "particles"))
    assert t.num_rows == 30 and np.all(np.diff(t["event_id"].to_numpy()) == 1)
    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and "30 events" in info.output


def test_forced_decays_option(tmp_path):
    out = tmp_path / "f.parquet"
    res = runner.invoke(app, ["generate", "-n", "20", "-o", str(out), "-q", "--no-particles",
                              "--force-decays", "pi,rho"])
    assert res.exit_code == 0, res.output
    t = read_events(out, require=("id", "truth"))
    assert set(t["decay_mode_p"].to_pylist()) <= {"pi", "rho"}
    assert "fs_px" not in t.column_names


def test_spin_weights_option(tmp_path):
    """--spin weights: unpolarised decays with a spin_weight column, recorded in the metadata;
    --spin-state without --spin weights is refused."""
    from ditau.schema import read_metadata

    out = tmp_path / "w.parquet"
    res = runner.invoke(app, ["generate", "-n", "20", "-o", str(out), "-q", "--no-particles",
                              "--force-decays", "pi", "--spin", "weights",
                              "--spin-state", "separable"])
    assert res.exit_code == 0, res.output
    w = read_events(out)["spin_weight"].to_numpy()
    assert np.all(np.isfinite(w)) and np.all(w >= 0) and np.any(w != 1.0)
    assert read_metadata(out)["spin"]["state"] == "separable"
    bad = runner.invoke(app, ["generate", "-n", "5", "-o", str(tmp_path / "b.parquet"), "-q",
                              "--spin-state", "separable"])
    assert bad.exit_code != 0 and "spin_state" in bad.output


def test_unknown_process(tmp_path):
    out = tmp_path / "x.parquet"
    res = runner.invoke(app, ["generate", "--process", "higgs", "--out", str(out)])
    assert res.exit_code == 2
    assert "unknown process 'higgs'" in res.output
    assert not out.exists()


def test_negative_event_count(tmp_path):
    out = tmp_path / "x.parquet"
    res = runner.invoke(app, ["generate", "--events", "-3", "--out", str(out)])
    assert res.exit_code == 2 and "events: must be a positive integer" in res.output
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output(tmp_path):
    out = tmp_path / "missing_dir" / "x.parquet"
    res = runner.invoke(app, ["generate", "--events", "5", "--out", str(out)])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["generate", "--events", "5", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "is a directory" in res.output
    assert list(tmp_path.iterdir()) == []


def test_info_on_corrupt_file(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    res = runner.invoke(app, ["info", str(bad)])
    assert res.exit_code == 2 and "bad.parquet" in res.output


def test_schema_command():
    res = runner.invoke(app, ["schema", "--group", "id"])
    assert res.exit_code == 0 and "event_id" in res.output
    assert runner.invoke(app, ["schema", "--group", "nope"]).exit_code == 2


def test_demo_writes_report(tmp_path):
    res = runner.invoke(app, ["demo", "--outdir", str(tmp_path), "--events", "40",
                              "--workers", "1"])
    assert res.exit_code == 0, res.output
    report = (tmp_path / "report.md").read_text()
    assert "| pipi |" in report and "Cross section" in report
    assert read_events(tmp_path / "ztautau.parquet").num_rows == 40
    assert "Signal yields per fb⁻¹" in report
    assert read_events(tmp_path / "ztautau_reco.parquet",
                       require=("id", "truth", "reco")).num_rows == 40
    # the whole chain ran: reconstruction, resolution table, tomography report
    assert "## Resolution" in report and "## Spin tomography" in report
    assert (tmp_path / "tomography" / "summary.md").is_file()
    assert (tmp_path / "tomography" / "significance.png").is_file()


def test_missing_file_arguments_are_one_line_errors(tmp_path):
    gone = tmp_path / "gone.parquet"
    z = tmp_path / "z.parquet"
    z.write_bytes(b"")  # exists; the missing one must be named first
    for args in (["info", str(gone)], ["merge", str(gone), "-o", str(tmp_path / "m.parquet")],
                 ["detector", str(gone), "-o", str(tmp_path / "d.parquet")],
                 ["detector", str(z), "-o", str(tmp_path / "d.parquet"), "--select", str(gone)],
                 ["detector", str(z), "-o", str(tmp_path / "d.parquet"), "-c", str(gone)],
                 ["yields", str(gone)]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, args
        assert res.output.strip() == f"error: {gone}: no such file", args
