"""Provenance (issue #19): every output records what it was made from, and files joined by
``evaluate`` must belong together (same run, or for old files the same event ids)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ditau.cli import app
from ditau.detector.run import run_detector
from ditau.evaluate import evaluate_files
from ditau.generate import GenerateConfig, run
from ditau.provenance import ProvenanceError, ProvenanceWarning, check_recon_input
from ditau.reconstruct.runner import reconstruct
from ditau.schema import read_metadata

FAST = {"mpi": False, "hadronisation": False, "events_per_job": 60}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two 60-event samples (seeds 1, 2) through the detector; collinear on the first."""
    d = tmp_path_factory.mktemp("prov")
    out: dict[str, Path] = {}
    for name, seed in (("a", 1), ("b", 2)):
        run(GenerateConfig(events=60, seed=seed, **FAST), d / f"{name}.parquet", workers=1,
            progress=False)
        out[name] = d / f"{name}.parquet"
        out[f"{name}_reco"] = run_detector(out[name], d / f"{name}_reco.parquet",
                                           keep_particles=False, progress=False).path
    reconstruct(out["a_reco"], d / "col_a.parquet", "collinear", progress=False)
    out["col_a"] = d / "col_a.parquet"
    return out


def _legacy(src: Path, dst: Path, drop: tuple[str, ...] = ("run_id", "input_identity",
                                                           "event_ids")) -> Path:
    """A copy of ``src`` as written before provenance: without the ``drop`` metadata keys."""
    pf = pq.ParquetFile(src)
    meta = json.loads(pf.metadata.metadata[b"ditau"])
    for k in drop:
        meta.pop(k, None)
    table = pf.read().replace_schema_metadata({b"ditau": json.dumps(meta).encode()})
    pq.write_table(table, dst)
    return dst


def test_every_stage_records_its_inputs_identity_and_its_own_run_id(chain, tmp_path):
    gen, det, rec = (read_metadata(chain[k]) for k in ("a", "a_reco", "col_a"))
    assert gen["run_id"].startswith("generate-")
    assert gen["event_ids"]["n"] == 60 and len(gen["event_ids"]["sha256"]) == 16
    # detector: its input's run id, seed and event-id checksum, plus its own id
    assert det["input_identity"]["run_id"] == gen["run_id"]
    assert det["input_identity"]["seed"] == 1
    assert det["input_identity"]["event_ids"] == gen["event_ids"]
    assert det["input_identity"]["path"] == str(chain["a"])
    assert det["run_id"].startswith("detector-") and det["run_id"] != gen["run_id"]
    # reconstruct: the detector run's id and its own
    assert rec["input_identity"]["run_id"] == det["run_id"]
    assert rec["run_id"].startswith("reconstruct-")
    # another seed: other ids; the same inputs and settings again: the same id (same bytes)
    assert read_metadata(chain["b"])["run_id"] != gen["run_id"]
    again = run_detector(chain["a"], tmp_path / "again.parquet", keep_particles=False,
                         progress=False).path
    assert read_metadata(again)["run_id"] == det["run_id"]
    tes = run_detector(chain["a"], tmp_path / "tes.parquet", systematic="tes_up",
                       keep_particles=False, progress=False).path
    assert read_metadata(tes)["run_id"] != det["run_id"]


def test_evaluate_refuses_a_recon_file_of_another_detector_run(chain):
    with pytest.raises(ProvenanceError) as err:
        evaluate_files(chain["b_reco"], [chain["col_a"]], only_sr=False, plots=False)
    msg = str(err.value)
    assert str(chain["col_a"]) in msg and str(chain["b_reco"]) in msg
    assert f"reconstructed from {chain['a_reco']}" in msg and "--force" in msg
    # the right pair passes without a word
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProvenanceWarning)
        assert check_recon_input(chain["a_reco"], chain["col_a"]) == "run id"
        evaluate_files(chain["a_reco"], [chain["col_a"]], only_sr=False, plots=False)


def test_evaluate_force_turns_the_mismatch_into_a_warning(chain):
    with pytest.warns(ProvenanceWarning, match=r"not from .*b_reco.*--force: going on"):
        result = evaluate_files(chain["b_reco"], [chain["col_a"]], only_sr=False, plots=False,
                                force=True)
    assert result.markdown


def test_evaluate_cli_names_both_files(chain):
    res = CliRunner().invoke(app, ["evaluate", str(chain["b_reco"]), "-r", str(chain["col_a"]),
                                   "--all"])
    assert res.exit_code == 2
    assert "error:" in res.output and "col_a.parquet was reconstructed from" in res.output
    assert "Traceback" not in res.output


def test_files_without_run_id_fall_back_to_event_ids_and_say_so(chain, tmp_path):
    old_rec = _legacy(chain["col_a"], tmp_path / "old_col.parquet")
    with pytest.warns(ProvenanceWarning, match="written before provenance.*event ids only"):
        assert check_recon_input(chain["a_reco"], old_rec) == "event ids"
    # an old events file with a new recon file: compared by the event-id checksum
    old_ev = _legacy(chain["a_reco"], tmp_path / "old_reco.parquet")
    with pytest.warns(ProvenanceWarning, match="no run id.*event-id checksum"):
        assert check_recon_input(old_ev, chain["col_a"]) == "event-id checksum"
    # an old recon file whose event ids are not in the events file
    short = _legacy(chain["a_reco"], tmp_path / "short.parquet")
    t = pq.read_table(short)
    pq.write_table(t.slice(0, 10).replace_schema_metadata(t.schema.metadata), short)
    with pytest.warns(ProvenanceWarning), pytest.raises(ProvenanceError,
                                                        match=r"50 of its event ids"):
        check_recon_input(short, old_rec)
    # and a new recon file against an old events file with other event ids
    with pytest.warns(ProvenanceWarning), pytest.raises(
            ProvenanceError, match=r"60 event ids, checksum .*10 event ids"):
        check_recon_input(short, chain["col_a"])
