"""Merging files of one sample: renumbered ids, shared weights, clear errors."""

import numpy as np
import pyarrow as pa
import pytest

from ditau.merge import merge_files
from ditau.provenance import ProvenanceError, ProvenanceWarning
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


def _gen(path, n, seed, **config):
    """A file that looks generated with ``config`` (GenerateConfig fields) and job ``seed``."""
    from ditau.generate import GenerateConfig

    cfg = GenerateConfig(events=n, seed=seed, **config).to_dict()
    cols = {"event_id": pa.array(np.arange(n, dtype=np.int64)),
            "sample": pa.array(["ztautau"] * n), "weight": pa.array(np.ones(n)),
            "gen_weight": pa.array(np.ones(n))}
    write_events(pa.table(cols), path, {"stage": "generate", "config": cfg,
                                        "jobs": [{"index": 0, "seed": 1000 + seed}]})
    return path


def test_merge_refuses_the_same_file_twice_and_shared_job_seeds(tmp_path):
    a = _gen(tmp_path / "a.parquet", 5, seed=1)
    with pytest.raises(ProvenanceError, match=r"a\.parquet and .*a\.parquet share generation "
                                              r"job seed\(s\) \[1001\].*same file twice"):
        merge_files([a, a], tmp_path / "m.parquet")
    b = _gen(tmp_path / "b.parquet", 7, seed=1)  # another file, the same seed: same events
    with pytest.raises(ProvenanceError, match=r"share generation job seed.*own --seed"):
        merge_files([a, b], tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()


@pytest.mark.parametrize("setting, value, name", [
    ("tau_filter", "sr", "generator.tau_filter"),
    ("mass_window", (70.0, 110.0), "generator.mass_window"),
    ("force_decays", ("pi",), "generator.force_decays"),
    ("process", "zll", "generator.process"),
    ("tau_spin_correlations", False, "generator.tau_spin_correlations"),
])
def test_merge_refuses_mixed_generator_settings_naming_the_setting(tmp_path, setting, value,
                                                                   name):
    from ditau.generate.tau_filter import parse_tau_filter

    if setting == "tau_filter":
        value = parse_tau_filter(value)
    a = _gen(tmp_path / "a.parquet", 5, seed=1)
    b = _gen(tmp_path / "b.parquet", 5, seed=2, **{setting: value})
    with pytest.raises(ProvenanceError, match=rf"a\.parquet and .*b\.parquet differ in the "
                                              rf"setting '{name}'"):
        merge_files([a, b], tmp_path / "m.parquet")


def test_merge_force_warns_and_records_the_inputs(tmp_path):
    from ditau.generate.tau_filter import parse_tau_filter

    a = _gen(tmp_path / "a.parquet", 5, seed=1)
    b = _gen(tmp_path / "b.parquet", 5, seed=2, tau_filter=parse_tau_filter("sr"))
    with pytest.warns(ProvenanceWarning, match="tau_filter.*--force: going on"):
        assert merge_files([a, b], tmp_path / "m.parquet", force=True) == 10
    meta = read_metadata(tmp_path / "m.parquet")
    assert meta["run_id"].startswith("merge-")
    assert [i["path"] for i in meta["input_identities"]] == [str(a), str(b)]
    assert meta["input_identities"][1]["seed"] == 2
    # seeds 1 and 2, same settings: merged without a word
    c = _gen(tmp_path / "c.parquet", 5, seed=3)
    merge_files([a, c], tmp_path / "ac.parquet")


def test_merge_cli_force_and_missing_file(tmp_path):
    from typer.testing import CliRunner

    from ditau.cli import app

    a = _gen(tmp_path / "a.parquet", 5, seed=1)
    res = CliRunner().invoke(app, ["merge", str(a), str(a), "-o", str(tmp_path / "m.parquet")])
    assert res.exit_code == 2 and "share generation job seed" in res.output
    res = CliRunner().invoke(app, ["merge", str(a), str(a), "-o", str(tmp_path / "m.parquet"),
                                   "--force"])
    assert res.exit_code == 0, res.output
    assert "warning: merge:" in res.output and "merged 2 files (10 events)" in res.output
    res = CliRunner().invoke(app, ["merge", str(a), str(tmp_path / "nope.parquet"), "-o",
                                   str(tmp_path / "n.parquet")])
    assert res.exit_code == 2 and "nope.parquet: no such file" in res.output


def test_detector_file_of_a_merged_file_merges_with_single_ones(tmp_path):
    """Regression: a detector-level file made from a merged generated file records no
    generator config of its own (only ``merged_from``); merging it with the detector output of
    another seed was refused as 'differ in the setting generator (None vs {...})', and its job
    seeds were not checked."""
    from ditau.generate import GenerateConfig
    from ditau.merge import check_one_sample

    merge_files([_gen(tmp_path / "a.parquet", 5, 1), _gen(tmp_path / "b.parquet", 5, 2)],
                tmp_path / "m.parquet")
    merged = read_metadata(tmp_path / "m.parquet")
    det = {"detector_config": {"tes": 1.0}, "systematic": "nominal", "stage": "detector"}
    # what the detector stage writes for a merged input: its merge provenance, no config
    of_merged = {**det, "input_stage": "merge", "merged_from": merged["merged_from"]}

    def single(seed, **config):
        return {**det, "input_stage": "generate",
                "input_config": GenerateConfig(events=5, seed=seed, **config).to_dict(),
                "jobs": [{"index": 0, "seed": 1000 + seed}]}

    paths = [tmp_path / "d_m.parquet", tmp_path / "d_3.parquet"]
    check_one_sample(paths, [of_merged, single(3)])  # one sample: accepted
    with pytest.raises(ProvenanceError, match=r"differ in the setting 'generator\.mass_window'"):
        check_one_sample(paths, [of_merged, single(3, mass_window=(70.0, 110.0))])
    with pytest.raises(ProvenanceError, match=r"share generation job seed\(s\) \[1001\]"):
        check_one_sample(paths, [of_merged, single(1)])
