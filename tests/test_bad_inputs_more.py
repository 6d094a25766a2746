"""More inputs a new user gets wrong (each a one-line error, exit code 2, or a flagged
result): an import over its input, inputs given twice, ROOT ntuples (integer decay modes,
repeated ids, a wrong --tree, RNTuples), a bad ML device, unphysical four-vectors, bad data
reported by ``ditau info``, a bad --scheduler, and no temporary file left on SIGTERM."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uproot
from typer.testing import CliRunner

from ditau.cli import app
from ditau.detector.delphes import DelphesError, import_delphes
from ditau.inputs import inputs_from_table
from ditau.merge import merge_files
from ditau.provenance import ProvenanceError, ProvenanceWarning
from ditau.reconstruct import reconstruct
from ditau.reconstruct.ml import MLSettings
from ditau.schema import SchemaError, read_events, read_metadata
from test_collinear import ztautau_events
from test_delphes import synthetic, write_delphes

runner = CliRunner()
MODES = {"pi": 0, "rho": 1, "e": 2, "mu": 3}


def invoke(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(res: Any) -> str:
    """The single ``error:`` line of a failed command (exit code 2, no traceback)."""
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


@pytest.fixture(scope="module")
def delphes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two Delphes files with the same events in different branch layouts."""
    d = tmp_path_factory.mktemp("delphes_more")
    return (write_delphes(d / "a.root", synthetic()),
            write_delphes(d / "b.root", synthetic(), "slash"))


def events(n: int = 40) -> dict[str, np.ndarray]:
    d, _, _ = ztautau_events(n, seed=5, modes=("rho", "mu"), cov=40.0)
    return {k: np.asarray(v) for k, v in d.items()}


def write_ttree(path: Path, cols: dict[str, np.ndarray], extra: bool = False) -> Path:
    """``cols`` as the TTree ``events`` (decay modes as integer codes: a TTree written by
    uproot cannot hold strings); ``extra``: a second tree ``other``."""
    cols = {k: (np.array([MODES[str(m)] for m in v], np.int32) if k.startswith("reco_mode")
                else v) for k, v in cols.items()}
    with uproot.recreate(path) as f:
        f.mktree("events", {k: v.dtype for k, v in cols.items()})
        f["events"].extend(cols)
        if extra:
            f.mktree("other", {"x": np.int64})
            f["other"].extend({"x": np.arange(3)})
    return path


# 1. import-delphes over its input


def test_import_delphes_refuses_to_write_over_an_input(delphes, tmp_path):
    a, b = delphes
    before = b.read_bytes()
    alias = b.parent / "sub" / ".." / b.name  # the same file, spelt otherwise
    (b.parent / "sub").mkdir(exist_ok=True)
    line = one_error_line(invoke("import-delphes", a, b, "-o", alias, "-q"))
    assert "is also an input" in line and "b.root" in line
    assert b.read_bytes() == before


# 2. run id of an import; an input twice; merge of one run twice


def test_import_records_a_content_run_id(delphes, tmp_path):
    a, _ = delphes
    copy = tmp_path / "elsewhere.root"
    shutil.copy(a, copy)
    s1 = import_delphes([a], tmp_path / "1.parquet", sample="z")
    s2 = import_delphes([copy], tmp_path / "2.parquet", sample="z", step_size=1)
    s3 = import_delphes([a], tmp_path / "3.parquet", sample="other")
    ids = [read_metadata(s.path)["run_id"] for s in (s1, s2, s3)]
    assert ids[0].startswith("import-delphes-")
    assert ids[0] == ids[1] != ids[2]  # the content and settings, not the path or chunking
    assert read_metadata(s1.path)["inputs"][0]["sha256"] == s1.metadata["inputs"][0]["sha256"]


def test_import_refuses_one_input_twice(delphes, tmp_path):
    a, _ = delphes
    copy = tmp_path / "copy.root"
    shutil.copy(a, copy)
    with pytest.raises(DelphesError, match="given twice"):
        import_delphes([a, a.parent / "." / a.name], tmp_path / "x.parquet")
    line = one_error_line(invoke("import-delphes", a, copy, "-o", tmp_path / "x.parquet",
                                 "-q"))
    assert "copy.root: the same content as" in line and "imported twice" in line
    assert not (tmp_path / "x.parquet").exists()


def test_merge_refuses_two_files_of_one_run(delphes, tmp_path):
    a, b = delphes
    one = import_delphes([a], tmp_path / "one.parquet").path
    again = import_delphes([a], tmp_path / "again.parquet").path
    other = import_delphes([b], tmp_path / "other.parquet").path
    with pytest.raises(ProvenanceError, match=r"one\.parquet and .*again\.parquet are the same "
                                              r"run \(import-delphes-"):
        merge_files([one, again], tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()
    with pytest.warns(ProvenanceWarning, match="same run"):
        assert merge_files([one, again], tmp_path / "m.parquet", force=True) == 8
    assert merge_files([one, other], tmp_path / "m2.parquet") == 8  # two runs: fine


# 3. ROOT input to reconstruct


def test_root_integer_decay_modes_are_refused_naming_the_branch(tmp_path):
    path = write_ttree(tmp_path / "ev.root", events())
    line = one_error_line(invoke("reconstruct", path, "-o", tmp_path / "r.parquet",
                                 "--method", "collinear", "-q"))
    assert "branch events/reco_mode_p holds numbers (int32)" in line
    assert "as a string (pi, rho, e, mu, other)" in line
    assert not (tmp_path / "r.parquet").exists()


def test_root_input_gets_the_duplicate_event_id_check(tmp_path):
    cols = events()
    cols["event_id"][1] = cols["event_id"][0]
    cols["reco_mode_p"] = cols["reco_mode_p"].astype(str)
    cols["reco_mode_m"] = cols["reco_mode_m"].astype(str)
    path = tmp_path / "dup.root"
    with uproot.recreate(path) as f:
        f["events"] = cols  # an RNTuple: strings allowed
    with pytest.raises(SchemaError, match=r"event_id not unique \(1 repeated"):
        reconstruct(path, tmp_path / "r.parquet", "collinear", progress=False)


def test_root_unknown_tree_is_one_line_listing_the_trees(tmp_path):
    path = write_ttree(tmp_path / "two.root", events(), extra=True)
    line = one_error_line(invoke("reconstruct", path, "-o", tmp_path / "r.parquet",
                                 "--method", "collinear", "--tree", "nope", "-q"))
    assert "--tree nope: no such TTree or RNTuple" in line
    assert "events (TTree), other (TTree)" in line
    line = one_error_line(invoke("reconstruct", path, "-o", tmp_path / "r.parquet",
                                 "--method", "collinear", "-q"))
    assert "2 trees" in line and "name one with --tree" in line


def test_root_rntuple_is_read(tmp_path):
    cols = events()
    cols["reco_mode_p"] = cols["reco_mode_p"].astype(str)
    cols["reco_mode_m"] = cols["reco_mode_m"].astype(str)
    path = tmp_path / "ev.root"
    with uproot.recreate(path) as f:
        f["events"] = cols  # uproot >= 5.7 writes an RNTuple here
    assert uproot.open(path).classnames()["events;1"] == "ROOT::RNTuple"
    s = reconstruct(path, tmp_path / "r.parquet", "collinear", progress=False, chunk=15)
    assert s.events == 40 and s.counts["ok"] > 20
    ids = pq.read_table(tmp_path / "r.parquet", columns=["event_id"])["event_id"]
    assert np.array_equal(ids.to_numpy(), cols["event_id"])


# 4. ML device


def test_ml_device_is_validated(tmp_path):
    import torch

    for ok in ("auto", "cpu", "mps"):
        assert MLSettings(device=ok).device == ok
    for cuda in ("cuda", "cuda:1"):
        if torch.cuda.is_available():
            assert MLSettings(device=cuda).device == cuda
        else:  # refused before any work starts, naming the device
            with pytest.raises(ValueError, match="CUDA is not available"):
                MLSettings(device=cuda)
    for bad in ("tpu", "cuda:x", "gpu", 0):
        with pytest.raises(ValueError, match="ml: unknown device"):
            MLSettings(device=bad)
    path = write_ttree(tmp_path / "ev.root", events())
    for opt in (["--device", "tpu"], ["-s", "device=tpu"]):
        line = one_error_line(invoke("reconstruct", path, "-o", tmp_path / "r.parquet",
                                     "--method", "ml", "-q", *opt))
        assert "unknown device 'tpu'" in line and "cuda:N" in line


# 5. unphysical four-vectors; ditau info on bad data


def test_visible_energy_below_momentum_is_flagged():
    d = events(6)
    d["reco_chg_e_p"] = d["reco_chg_e_p"].copy()
    d["reco_chg_e_p"][2] = 0.5 * np.sqrt(d["reco_chg_px_p"][2] ** 2
                                         + d["reco_chg_py_p"][2] ** 2
                                         + d["reco_chg_pz_p"][2] ** 2) - np.nan_to_num(
        d["reco_neu_e_p"][2])
    bad = inputs_from_table(d).bad
    assert bad[2].startswith("tau+ leg: visible energy below |p|")
    assert list(bad[[0, 1, 3, 4, 5]]) == [""] * 5


@pytest.fixture(scope="module")
def detector_file(delphes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_delphes([delphes[0]], tmp_path_factory.mktemp("info") / "d.parquet").path


def _rewrite(src: Path, dst: Path, table: pa.Table) -> Path:
    meta = pq.ParquetFile(src).metadata.metadata[b"ditau"]
    pq.write_table(table.replace_schema_metadata({b"ditau": meta}), dst)
    return dst


def test_info_reports_repeated_event_ids_and_infinite_met(detector_file, tmp_path):
    t = read_events(detector_file)
    ids = t["event_id"].to_numpy().copy()
    ids[3] = ids[0]
    met = t["met_x"].to_numpy().copy()
    met[1] = np.inf
    t = t.set_column(t.schema.get_field_index("event_id"), "event_id", pa.array(ids))
    t = t.set_column(t.schema.get_field_index("met_x"), "met_x", pa.array(met))
    res = invoke("info", _rewrite(detector_file, tmp_path / "bad.parquet", t))
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "event_id not unique: 1 id(s) repeated, e.g. 0" \
        in res.output
    assert "column met_x has 1 +inf value(s) (first at row 1)" in res.output
    clean = invoke("info", detector_file)
    assert clean.exit_code == 0 and "warning" not in clean.output


def test_info_on_a_root_file_or_a_directory_says_what_it_is(delphes, tmp_path):
    line = one_error_line(invoke("info", delphes[0]))
    assert "a ROOT file, not a ditau Parquet file" in line and "import-delphes" in line
    line = one_error_line(invoke("info", tmp_path))
    assert "a directory; ditau info takes one ditau Parquet file" in line


# 6. --scheduler; SIGTERM; matplotlib font noise


def test_bad_scheduler_names_the_option(tmp_path):
    path = write_ttree(tmp_path / "ev.root", events())
    line = one_error_line(invoke("reconstruct", path, "-o", tmp_path / "r.parquet",
                                 "--method", "collinear", "--scheduler", "garbage"))
    assert line.startswith("error: --scheduler 'garbage': not a Dask scheduler address")


def test_sigterm_leaves_no_temporary_output(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from ditau.cli import app
        from ditau.schema import atomic_path

        @app.command("slow-write")
        def slow_write(out: str) -> None:
            with atomic_path(out) as tmp:
                tmp.write_text("partial")
                print("ready", flush=True)
                time.sleep(30)

        app(["slow-write", sys.argv[1]])
    """)
    out = tmp_path / "out.txt"
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).parent)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(tmp_path.iterdir()) == []


def test_the_cli_restores_the_sigterm_handler(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    invoke("info", tmp_path / "nope.parquet")
    assert signal.getsignal(signal.SIGTERM) is before


def test_cursive_font_fallback_warning_is_silenced(caplog):
    from matplotlib import font_manager

    import ditau.plots.style as style

    assert style.STYLE["mathtext.cal"] != "cursive"
    with caplog.at_level(logging.WARNING, logger="matplotlib.font_manager"):
        # a size no other test uses: findfont caches its answer per font property
        font_manager.findfont(font_manager.FontProperties(family="cursive", size=17.123))
    assert not [r for r in caplog.records if "cursive" in r.getMessage()]
