"""``ditau info`` and ``read_events(kind=...)``: one validator per file kind (issue #19)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ditau.cli import app
from ditau.generate import GenerateConfig, run
from ditau.schema import FILE_KINDS, SchemaError, read_events, validate_file

runner = CliRunner()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("info") / "z.parquet"
    run(GenerateConfig(events=20, seed=5, mpi=False, hadronisation=False,
                       keep_particles=False), path, workers=1, progress=False)
    return path


def _rewrite(src: Path, dst: Path, table: pa.Table) -> Path:
    """``table`` written to ``dst`` with the ditau metadata of ``src``, bypassing the
    validating writer (as a foreign tool would)."""
    meta = pq.ParquetFile(src).metadata.metadata[b"ditau"]
    pq.write_table(table.replace_schema_metadata({b"ditau": meta}), dst)
    return dst


def test_info_validates_a_generated_file(generated):
    res = runner.invoke(app, ["info", str(generated)])
    assert res.exit_code == 0, res.output
    assert "valid generated events" in res.output and "20 events" in res.output
    assert validate_file(generated)[0] == "generated"


def test_info_refuses_a_generated_file_without_m_hat(generated, tmp_path):
    bad = _rewrite(generated, tmp_path / "no_mhat.parquet",
                   pq.read_table(generated).drop_columns(["m_hat"]))
    res = runner.invoke(app, ["info", str(bad)])
    assert res.exit_code == 2
    assert "no_mhat.parquet: missing required column(s) m_hat" in res.output
    assert "generated events" in res.output
    with pytest.raises(SchemaError, match=r"missing required column.*m_hat"):
        read_events(bad, columns=["weight"], kind="generated")


def test_info_and_every_reader_refuse_a_wrong_dtype_in_an_unread_column(generated, tmp_path):
    t = pq.read_table(generated)
    i = t.schema.get_field_index("hard_id1")
    bad = _rewrite(generated, tmp_path / "int64.parquet",
                   t.set_column(i, "hard_id1", t["hard_id1"].cast(pa.int64())))
    res = runner.invoke(app, ["info", str(bad)])
    assert res.exit_code == 2
    assert "column 'hard_id1' has dtype int64" in res.output and "requires int32" in res.output
    with pytest.raises(SchemaError, match="'hard_id1' has dtype int64"):
        read_events(bad, columns=["weight"])  # not among the columns read


def test_info_finds_a_nan_in_any_row(generated, tmp_path):
    t = pq.read_table(generated)
    w = t["weight"].to_pylist()
    w[13] = float("nan")
    bad = _rewrite(generated, tmp_path / "nan.parquet",
                   t.set_column(t.schema.get_field_index("weight"), "weight", pa.array(w)))
    res = runner.invoke(app, ["info", str(bad)])
    assert res.exit_code == 2 and "'weight' has 1 NaN value(s) (first at row 13)" in res.output


def test_info_on_a_reconstruction_output_checks_its_own_columns(tmp_path):
    from ditau.ml.synthetic import write_synthetic
    from ditau.reconstruct.runner import reconstruct

    ev = write_synthetic(tmp_path / "syn.parquet", 30, seed=1)
    out = tmp_path / "col.parquet"
    reconstruct(ev, out, "collinear", progress=False)
    res = runner.invoke(app, ["info", str(out)])
    assert res.exit_code == 0, res.output
    assert "valid reconstruction output" in res.output and "method(s) collinear" in res.output
    assert "sample" not in res.output.split("\n")[0] and "missing" not in res.output
    t = pq.read_table(out).drop_columns(["rec_m_tautau"])
    bad = _rewrite(out, tmp_path / "bad_col.parquet", t)
    res = runner.invoke(app, ["info", str(bad)])
    assert res.exit_code == 2
    assert "missing required column(s) rec_m_tautau" in res.output
    assert "reconstruction output" in res.output
    for col in ("sample", "gen_weight"):
        assert col not in res.output
    with pytest.raises(SchemaError, match="rec_m_tautau"):
        read_events(bad, kind="recon")


def test_detector_kind_needs_the_reco_group_and_a_whole_truth_group(generated, tmp_path):
    meta = json.loads(pq.ParquetFile(generated).metadata.metadata[b"ditau"])
    assert FILE_KINDS["detector"].required == ("id", "reco")
    with pytest.raises(SchemaError, match=r"missing required column\(s\) reco_chg_px_p.*"
                                          r"detector-level events"):
        read_events(generated, kind="detector")
    assert meta["stage"] == "generate"


def test_info_missing_file_is_one_line(tmp_path):
    res = runner.invoke(app, ["info", str(tmp_path / "nope.parquet")])
    assert res.exit_code == 2 and res.output.strip().endswith("nope.parquet: no such file")
