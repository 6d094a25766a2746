import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ditau.schema import (
    COLUMNS,
    GROUPS,
    SCHEMA_VERSION,
    EventWriter,
    SchemaError,
    arrow_schema,
    describe,
    group_columns,
    read_events,
    read_metadata,
    validate,
    write_events,
)


def _id_table(n: int = 5) -> pa.Table:
    return pa.table({
        "event_id": pa.array(np.arange(n), pa.int64()),
        "sample": pa.array(["ztautau"] * n),
        "weight": pa.array(np.ones(n)),
        "gen_weight": pa.array(np.ones(n)),
    })


def test_every_column_has_unit_group_and_doc():
    names = [c.name for c in COLUMNS]
    assert len(names) == len(set(names))
    for c in COLUMNS:
        assert c.doc and c.group in GROUPS
        if c.name.endswith(("_px_p", "_e_m")) or c.name.startswith("met_"):
            assert c.unit.startswith("GeV")


def test_reco_columns_are_defined_for_the_detector_stage():
    reco = {c.name for c in group_columns("reco")}
    assert {"met_x", "met_cov_xy", "reco_chg_px_p", "reco_neu_e_m", "jet3_e", "trig_ditau",
            "reco_channel", "in_sr"} <= reco


def test_roundtrip_with_metadata(tmp_path):
    path = tmp_path / "ok.parquet"
    write_events(_id_table(), path, {"stage": "test", "seed": 3})
    meta = read_metadata(path)
    assert meta["schema_version"] == SCHEMA_VERSION and meta["seed"] == 3
    assert read_events(path).num_rows == 5


def test_missing_column_named(tmp_path):
    with pytest.raises(SchemaError, match=r"missing required column.*gen_weight"):
        validate(_id_table().drop_columns(["gen_weight"]), require=("id",))


def test_wrong_dtype_named():
    t = _id_table()
    t = t.set_column(0, "event_id", pa.array(np.arange(5, dtype=np.float64)))
    with pytest.raises(SchemaError, match=r"'event_id' has dtype double.*int64"):
        validate(t)


def test_nan_in_required_column_named_with_row():
    t = _id_table()
    t = t.set_column(2, "weight", pa.array([1.0, 1.0, np.nan, 1.0, 1.0]))
    with pytest.raises(SchemaError, match=r"'weight' has 1 NaN.*row 2"):
        validate(t)


def test_nan_allowed_in_reco_absent_object():
    t = _id_table().append_column("jet1_px", pa.array([np.nan] * 5))
    validate(t)  # absent jets are NaN by design


def test_unknown_label_rejected():
    t = _id_table().append_column("truth_channel", pa.array(["pipi", "tautau", "pipi",
                                                             "other", "erho"]))
    with pytest.raises(SchemaError, match=r"'truth_channel' has unknown label.*tautau"):
        validate(t)


def test_truncated_file_named(tmp_path):
    path = tmp_path / "cut.parquet"
    write_events(_id_table(1000), path, {"stage": "test"})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SchemaError, match=r"cut\.parquet.*not a readable Parquet file"):
        read_events(path)


def test_file_without_ditau_metadata(tmp_path):
    path = tmp_path / "foreign.parquet"
    pq.write_table(_id_table(), path)
    with pytest.raises(SchemaError, match="no ditau metadata"):
        read_events(path)


def test_incompatible_major_version(tmp_path):
    path = tmp_path / "future.parquet"
    t = _id_table()
    meta = {b"ditau": json.dumps({"schema_version": "99.0.0"}).encode()}
    pq.write_table(t.replace_schema_metadata(meta), path)
    with pytest.raises(SchemaError, match=r"99.0.0.*incompatible"):
        read_events(path)


def test_missing_required_group_in_file(tmp_path):
    path = tmp_path / "idonly.parquet"
    write_events(_id_table(), path, {"stage": "test"})
    with pytest.raises(SchemaError, match=r"missing required column.*truth_channel"):
        read_events(path, require=("id", "truth"))


def test_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "partial.parquet"
    writer = EventWriter(path, arrow_schema("id"), {"stage": "test"})
    writer.write(_id_table())
    bad = _id_table().set_column(2, "weight", pa.array([np.nan] * 5))
    with pytest.raises(SchemaError):
        writer.write(bad)
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destination(tmp_path):
    with pytest.raises(SchemaError, match="does not exist"):
        write_events(_id_table(), tmp_path / "nodir" / "x.parquet", {})
    with pytest.raises(SchemaError, match="is a directory"):
        write_events(_id_table(), tmp_path, {})


def test_describe_lists_columns_with_units():
    text = describe(("id",))
    assert "| weight | double | fb |" in text and SCHEMA_VERSION in text


def test_method_table_columns_for_the_reconstruction_stage():
    cols = {c.name: c for c in group_columns("method")}
    assert {"method", "candidate", "rec_tau_px_p", "rec_nu_pz_m", "rec_m_tautau",
            "rec_status", "rec_reason"} <= set(cols)
    assert cols["rec_status"].allowed == ("ok", "no_solution", "failed")
    assert cols["rec_tau_e_p"].nan_allowed  # failed events carry NaN momenta
    assert not set(cols) & {c.name for c in group_columns("id", "truth", "reco")}
