"""Inputs a new user gets wrong: output = input, a device as output, files of the wrong kind,
a variation or background given under the wrong name, empty inputs (each a one-line error)."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ditau.cli import app
from ditau.reconstruct import reconstruct
from ditau.schema import SchemaError, read_events, write_events
from ditau.tomography.run import TomographyError, background_yields, check_variation

runner = CliRunner()


@pytest.fixture(scope="module")
def files(signal_reco_tes, tmp_path_factory):
    nom, up = signal_reco_tes
    d = tmp_path_factory.mktemp("badpaths")
    col = reconstruct(nom, d / "col.parquet", "collinear", progress=False).path
    return nom, up, col, d


def test_an_output_that_is_the_input_is_refused(files):
    nom, _, _, _ = files
    before = nom.read_bytes()
    r = runner.invoke(app, ["reconstruct", str(nom), "-o", str(nom), "--method", "collinear"])
    assert r.exit_code == 2 and "is the input file" in r.output
    assert nom.read_bytes() == before


def test_an_output_that_is_not_a_regular_file_is_refused(files, tmp_path):
    nom, _, _, _ = files
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    r = runner.invoke(app, ["reconstruct", str(nom), "-o", str(fifo), "--method", "collinear"])
    assert r.exit_code == 2 and "is not a regular file" in r.output


def test_outputs_get_the_usual_permissions(files):
    _, _, col, _ = files
    umask = os.umask(0)
    os.umask(umask)
    assert (col.stat().st_mode & 0o777) == 0o666 & ~umask  # not mkstemp's 0600


def test_files_of_the_wrong_kind_are_named(files, tmp_path):
    _, _, col, _ = files
    with pytest.raises(SchemaError, match=r"a reconstruction output .method collinear.*not an "
                                          r"event file"):
        reconstruct(col, tmp_path / "x.parquet", "collinear", progress=False)
    r = runner.invoke(app, ["merge", str(col), str(col), "-o", str(tmp_path / "m.parquet")])
    assert r.exit_code == 2 and "merge takes event files" in r.output


def test_an_empty_event_file_is_refused(files, tmp_path):
    nom, _, _, _ = files
    empty = tmp_path / "empty.parquet"
    write_events(read_events(nom).slice(0, 0), empty, {"stage": "detector"})
    with pytest.raises(SchemaError, match="no events"):
        reconstruct(empty, tmp_path / "x.parquet", "collinear", progress=False)


def test_a_variation_is_used_under_its_own_name(files):
    nom, up, _, _ = files
    t_nom, t_up = read_events(nom), read_events(up)
    check_variation(nom, t_nom, up, t_up, "tes_up")
    with pytest.raises(TomographyError, match="made with --systematic tes_up, given as the "
                                              "variation 'tes_down'"):
        check_variation(nom, t_nom, up, t_up, "tes_down")
    with pytest.raises(TomographyError, match="made with --systematic nominal, given as the "
                                              "variation 'tes_up'"):
        check_variation(nom, t_nom, nom, t_nom, "tes_up")


def test_the_signal_given_as_a_background_is_refused(files):
    nom, _, _, _ = files
    with pytest.raises(TomographyError, match=r"a signal .ztautau. sample given as a background"):
        background_yields([nom])


def test_column_maps_and_settings_are_checked(files, tmp_path):
    nom, _, _, _ = files
    out = str(tmp_path / "x.parquet")
    r = runner.invoke(app, ["reconstruct", str(nom), "-o", out, "--method", "collinear",
                            "--columns", "nope_col=met_x"])
    assert r.exit_code == 2 and "['nope_col'] are not input columns of method collinear" \
        in r.output
    r = runner.invoke(app, ["reconstruct", str(nom), "-o", out, "--method", "fastmtt",
                            "-s", "grid=50", "-s", "grid=60"])
    assert r.exit_code == 2 and "--setting: grid given twice ('50' and '60')" in r.output


def test_wrong_dtypes_and_repeated_event_ids_are_named(files, tmp_path):
    nom, _, _, _ = files
    t = read_events(nom).slice(0, 50)
    i = t.schema.get_field_index("reco_chg_px_p")
    bad = t.set_column(i, "reco_chg_px_p", pa.array([str(v) for v in
                                                     t["reco_chg_px_p"].to_pylist()]))
    pq_path = tmp_path / "strings.parquet"

    pq.write_table(bad, pq_path)
    with pytest.raises(SchemaError, match="column reco_chg_px_p has type string, the "
                                          "reconstruction needs double"):
        reconstruct(pq_path, tmp_path / "x.parquet", "collinear", progress=False)
    ids = t["event_id"].to_numpy().copy()
    ids[7] = ids[3]
    dup = t.set_column(t.schema.get_field_index("event_id"), "event_id", pa.array(ids))
    pq.write_table(dup, tmp_path / "dup.parquet")
    with pytest.raises(SchemaError, match=rf"event_id not unique \(1 repeated, e.g. {ids[3]}\)"):
        reconstruct(tmp_path / "dup.parquet", tmp_path / "y.parquet", "collinear",
                    progress=False)


def test_evaluate_refuses_the_same_method_file_twice(files):
    nom, _, col, _ = files
    r = runner.invoke(app, ["evaluate", str(nom), "-r", str(col), "-r", str(col)])
    assert r.exit_code == 2 and f"--recon: {col} given more than once" in r.output
