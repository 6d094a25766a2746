"""The detector's random streams: keyed by the detector seed and the chunk's events, so files
of different generation runs (each numbering its events from 0) get independent noise, and
the same input gives the same bytes.

The soft-term noise of an event is read back exactly from two runs that differ only in the
soft-term resolution (the streams do not depend on the scale factors): the MET difference over
the soft term's sigma is the event's standard-normal draw.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ditau.cli import app
from ditau.detector.config import DetectorConfig
from ditau.detector.parametric import INPUT_COLUMNS, simulate, stream_seed
from ditau.detector.run import run_detector
from ditau.generate import GenerateConfig, run
from ditau.merge import merge_files
from ditau.schema import read_metadata, write_events
from ditau.stage import read_chunks

N = 120
FAST = {"mpi": False, "hadronisation": False, "events_per_job": 60}
NO_SOFT_RES = "soft_met_resolution: 1.0e-9\n"


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Two generated samples of N events, generation seeds 1 and 2 (both ids 0..N-1)."""
    d = tmp_path_factory.mktemp("seeding")
    out = {}
    for seed in (1, 2):
        out[seed] = d / f"gen{seed}.parquet"
        run(GenerateConfig(events=N, seed=seed, **FAST), out[seed], workers=1, progress=False)
    return out


def _detector_cli(inp: Path, out: Path, *options: str) -> Path:
    res = CliRunner().invoke(app, ["detector", str(inp), "-o", str(out), "-q",
                                   "--drop-particles", *options])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def reco(gen: dict[int, Path], tmp_path_factory: pytest.TempPathFactory
         ) -> dict[str, Path]:
    """Both samples through ``ditau detector`` with the default detector seed, nominal
    (``nom1``, ``nom2``) and with the soft-term resolution off (``flat1``, ``flat2``); each
    pair merged with ``ditau merge`` (``nom``, ``flat``)."""
    d = tmp_path_factory.mktemp("seeding_reco")
    cfg = d / "no_soft_res.yaml"
    cfg.write_text(NO_SOFT_RES)
    out: dict[str, Path] = {}
    for seed, path in gen.items():
        out[f"nom{seed}"] = _detector_cli(path, d / f"nom{seed}.parquet")
        out[f"flat{seed}"] = _detector_cli(path, d / f"flat{seed}.parquet", "-c", str(cfg))
    for kind in ("nom", "flat"):
        res = CliRunner().invoke(app, ["merge", str(out[f"{kind}1"]), str(out[f"{kind}2"]),
                                       "-o", str(d / f"{kind}.parquet")])
        assert res.exit_code == 0, res.output
        out[kind] = d / f"{kind}.parquet"
    return out


def _cols(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    t = pq.read_table(path, columns=list(names))
    return {c: t[c].to_numpy(zero_copy_only=False) for c in names}


def _soft_z(nominal: Path, flat: Path) -> np.ndarray:
    """Each event's soft-term draw (x), NaN without a soft term; the two files differ only in
    ``soft_met_resolution`` (1 and 1e-9)."""
    a = _cols(nominal, ("event_id", "met_x", "met_cov_xx"))
    b = _cols(flat, ("event_id", "met_x", "met_cov_xx"))
    assert np.array_equal(a["event_id"], b["event_id"])
    var = a["met_cov_xx"] - b["met_cov_xx"]  # the soft term's sigma^2 (1 - 1e-18)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 0, (b["met_x"] - a["met_x"]) / np.sqrt(var), np.nan)


def _independent(za: np.ndarray, zb: np.ndarray) -> None:
    """Standard-normal draws of two sets of events that are independent: none equal, and
    uncorrelated within 4 sigma."""
    both = np.isfinite(za) & np.isfinite(zb)
    n = int(both.sum())
    assert n > 0.8 * len(za)
    assert not np.any(np.isclose(za[both], zb[both], rtol=0, atol=1e-6))
    assert abs(np.corrcoef(za[both], zb[both])[0, 1]) < 4 / np.sqrt(n)
    for z in (za[both], zb[both]):
        assert abs(np.mean(z)) < 4 / np.sqrt(n) and np.std(z) == pytest.approx(1.0, abs=0.3)


# --- inputs of different generation runs ---------------------------------------------------

def test_different_generation_runs_get_independent_detector_noise(reco):
    """The defect: with the default detector seed, event i of the seed-1 file and event i of
    the seed-2 file got the same random numbers (streams keyed by the first event id)."""
    ids1, ids2 = (_cols(reco[f"nom{s}"], ("event_id",))["event_id"] for s in (1, 2))
    assert np.array_equal(ids1, np.arange(N)) and np.array_equal(ids2, ids1)
    _independent(_soft_z(reco["nom1"], reco["flat1"]), _soft_z(reco["nom2"], reco["flat2"]))


def test_merged_detector_outputs_have_independent_rows(reco):
    """``ditau merge`` of the two detector outputs: row i and row N + i (event i of each
    run) carry independent soft-term noise."""
    z = _soft_z(reco["nom"], reco["flat"])
    assert len(z) == 2 * N
    assert np.array_equal(_cols(reco["nom"], ("event_id",))["event_id"], np.arange(2 * N))
    _independent(z[:N], z[N:])


def test_every_stream_of_a_chunk_differs_between_the_runs(gen):
    """All five streams (smearing, efficiencies, per-event, jets, impact parameters) of the
    first chunk differ: their root keys differ, with the same detector seed."""
    roots = [stream_seed(next(read_chunks(gen[s], INPUT_COLUMNS, 2000))) for s in (1, 2)]
    assert roots[0].entropy[0] == roots[1].entropy[0] == DetectorConfig().seed
    states = [[c.generate_state(4).tolist() for c in r.spawn(5)] for r in roots]
    assert all(a != b for a, b in zip(*states, strict=True))


def test_the_event_id_key_of_older_versions_repeats_across_runs(gen):
    """``seeding="event_id"`` (the key before the fix, to reproduce older files) gives event
    i of both runs the same soft-term draw: why it is not the default."""
    cfg = DetectorConfig(seeding="event_id")
    z = []
    for s in (1, 2):
        t = pq.read_table(gen[s], columns=list(INPUT_COLUMNS))
        a = simulate(t, cfg)
        b = simulate(t, DetectorConfig(seeding="event_id", soft_met_resolution=1e-9))
        var = a.met["met_cov_xx"] - b.met["met_cov_xx"]
        z.append(np.where(var > 0, (b.met["met_x"] - a.met["met_x"]) / np.sqrt(
            np.where(var > 0, var, 1.0)), np.nan))
    both = np.isfinite(z[0]) & np.isfinite(z[1])
    assert both.sum() > 0.8 * N
    assert np.allclose(z[0][both], z[1][both], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="seeding must be one of"):
        DetectorConfig(seeding="run")


def test_another_detector_seed_draws_other_numbers(gen, reco, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(NO_SOFT_RES)
    nom = _detector_cli(gen[1], tmp_path / "nom.parquet", "--seed", "2")
    flat = _detector_cli(gen[1], tmp_path / "flat.parquet", "--seed", "2", "-c", str(cfg))
    _independent(_soft_z(nom, flat), _soft_z(reco["nom1"], reco["flat1"]))


# --- reproducibility -------------------------------------------------------------------------

RECO_FIELDS = ("event_id", "met_x", "met_y", "met_sumet", "met_cov_xx", "reco_chg_px_p",
               "reco_chg_e_m", "reco_neu_e_p", "reco_d0_p", "reco_z0_m", "jet1_px", "in_sr",
               "reco_channel")


def _same_reco(a: Path, b: Path) -> None:
    ca, cb = _cols(a, RECO_FIELDS), _cols(b, RECO_FIELDS)
    for name in RECO_FIELDS:
        np.testing.assert_array_equal(ca[name], cb[name], err_msg=name)  # NaN == NaN


def test_the_same_input_gives_the_same_bytes(gen, reco, tmp_path):
    again = _detector_cli(gen[1], tmp_path / "again.parquet")
    assert hashlib.sha256(again.read_bytes()).digest() == \
        hashlib.sha256(reco["nom1"].read_bytes()).digest()


def test_the_noise_depends_on_the_events_not_on_the_files_metadata(gen, reco, tmp_path):
    """A copy of the input with none of the generator's metadata (a user's ntuple: no run
    id, no configuration, no seeds) gets the same detector noise as the generated file: the
    events key the streams."""
    bare = write_events(pq.read_table(gen[1]), tmp_path / "ntuple.parquet",
                        {"stage": "generate"})
    meta = read_metadata(bare)
    assert not {"run_id", "config", "jobs"} & set(meta)
    out = run_detector(bare, tmp_path / "ntuple_reco.parquet", keep_particles=False,
                       progress=False).path
    _same_reco(out, reco["nom1"])


def test_a_chunk_key_depends_on_its_events_not_on_the_table_layout(gen):
    """The second 50-event chunk as the runner reads it and as a slice of the whole table (a
    list column with an offset) get one key; another chunk another key."""
    whole = pq.read_table(gen[1], columns=list(INPUT_COLUMNS))
    chunks = list(read_chunks(gen[1], INPUT_COLUMNS, 50))
    key = stream_seed(chunks[1]).entropy
    assert stream_seed(whole.slice(50, 50)).entropy == key
    assert stream_seed(pa.concat_tables([whole.slice(50, 20), whole.slice(70, 30)])
                       ).entropy == key
    assert len({tuple(stream_seed(c).entropy) for c in chunks}) == len(chunks) == 3


def test_a_merged_input_is_reproducible_with_distinct_chunk_streams(gen, tmp_path):
    """A merged generated file (event ids renumbered 0..2N-1): every chunk has its own key,
    and the output does not depend on the number of workers."""
    merged = tmp_path / "merged.parquet"
    merge_files([gen[1], gen[2]], merged)
    chunks = list(read_chunks(merged, INPUT_COLUMNS, 40))
    assert len({tuple(stream_seed(c).entropy) for c in chunks}) == len(chunks) == 6
    cfg = DetectorConfig(chunk_size=40)
    a = run_detector(merged, tmp_path / "a.parquet", cfg, keep_particles=False, workers=1,
                     progress=False).path
    b = run_detector(merged, tmp_path / "b.parquet", cfg, keep_particles=False, workers=2,
                     progress=False).path
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
