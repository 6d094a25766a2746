"""Merging files of one sample: renumbered ids, shared weights, clear errors."""

import numpy as np
import pyarrow as pa
import pytest

from ditau.merge import merge_files
from ditau.schema import SchemaError, read_events, read_metadata, write_events


def _file(path, n, weight, sample="ztautau", extra=None):
    cols = {"event_id": pa.array(np.arange(n, dtype=np.int64)),
            "sample": pa.array([sample] * n), "weight": pa.array(np.full(n, weight)),
            "gen_weight": pa.array(np.ones(n))}
    cols.update(extra or {})
    write_events(pa.table(cols), path, {"stage": "detector", "seed": n})
    return path


def test_merge_renumbers_ids_and_keeps_the_expected_yield(tmp_path):
    # each file alone: sum of weights = its own estimate of the yield (100 and 110 per fb^-1)
    a = _file(tmp_path / "a.parquet", 40, 100 / 40)
    b = _file(tmp_path / "b.parquet", 60, 110 / 60)
    n = merge_files([a, b], tmp_path / "m.parquet")
    t = read_events(tmp_path / "m.parquet")
    assert n == 100 == t.num_rows
    assert np.array_equal(np.asarray(t["event_id"]), np.arange(100))
    # event-count-weighted mean of the two estimates: 0.4*100 + 0.6*110
    assert np.sum(t["weight"]) == pytest.approx(106.0)
    meta = read_metadata(tmp_path / "m.parquet")
    assert [s["first_event_id"] for s in meta["merged_from"]] == [0, 40]
    assert meta["merged_from"][1]["metadata"]["seed"] == 60


def test_merge_refuses_mixed_samples_and_columns(tmp_path):
    a = _file(tmp_path / "a.parquet", 5, 1.0)
    with pytest.raises(SchemaError, match="one sample"):
        merge_files([a, _file(tmp_path / "b.parquet", 5, 1.0, sample="zll")],
                    tmp_path / "m.parquet")
    c = _file(tmp_path / "c.parquet", 5, 1.0, extra={"m_hat": pa.array(np.ones(5))})
    with pytest.raises(SchemaError, match="different columns"):
        merge_files([a, c], tmp_path / "m.parquet")
    with pytest.raises(SchemaError, match="also an input"):
        merge_files([a], a)
    assert not (tmp_path / "m.parquet").exists()
