"""Generation side of the tau-pair spin (issue #14): the lepton-flavour neutrino in the truth,
the exact lepton polarimeter from it, ``spin: weights`` samples (unpolarised decays with a
per-event spin weight) against the LO expectation, the configuration and the schema versions
(files of the previous version stay readable)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ditau.generate import GenerateConfig, run
from ditau.generate.config import ConfigError
from ditau.generate.runner import _pythia
from ditau.generate.truth import extract
from ditau.merge import merge_files
from ditau.physics import mass2
from ditau.schema import (
    SCHEMA_VERSION,
    SchemaError,
    added_after,
    read_events,
    read_metadata,
    validate_file,
    write_events,
)
from ditau.spin import from_truth, state_from_truth, truth_weights
from ditau.tomography import from_truth as analysers_from_truth
from ditau.tomography import measure

_P4 = ("px", "py", "pz", "e")
#: MPI and hadronisation off (tau decays do not depend on them), as tests/conftest.py FAST.
FAST = {"mpi": False, "hadronisation": False, "keep_particles": False}


def _p4(cols, prefix, leg):
    return np.stack([np.asarray(cols[f"{prefix}_{c}_{leg}"], dtype=float) for c in _P4], axis=1)


def _cols(path):
    t = read_events(path)
    return {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names}


def test_lepton_neutrino_matches_the_pythia_record():
    """Forced e/mu decays, straight from Pythia's record: ``nul_*`` is the record's nu_l (tau+,
    PDG +12/+14) or nubar_l (tau-, -12/-14) of the lepton's flavour; with the record's nu_tau
    it sums to the stored invisible system, and lepton + nu_l + nu_tau = the tau (tau -> l nu
    nu kinematics, four-momentum conservation to 1e-6 GeV)."""
    cfg = GenerateConfig(events=60, seed=5, force_decays=("e", "mu"), **FAST)
    pythia = _pythia(cfg, 12345)
    batch = pythia.nextBatch(60, 10.0)
    cols = extract(batch, 0, "ztautau", keep_particles=False)
    prt = batch.prt
    for i in range(60):
        ids = np.asarray(prt.id[i])
        m1 = np.asarray(prt.mother1[i])
        p = np.stack([np.asarray(prt.p[c][i]) for c in _P4], axis=1)
        for leg, sign in (("p", 1), ("m", -1)):
            mode = cols[f"decay_mode_{leg}"][i]
            assert mode in ("e", "mu")
            want = (12 if mode == "e" else 14) * sign
            # the decaying tau: the mother of the nu_tau (-16 for the tau+, +16 for the tau-)
            nut = np.flatnonzero(ids == -16 * sign)
            assert len(nut) == 1
            tau = m1[nut[0]]
            nul = np.flatnonzero((ids == want) & (m1 == tau))
            assert len(nul) == 1
            np.testing.assert_allclose(_p4(cols, "nul", leg)[i], p[nul[0]], atol=1e-9)
            np.testing.assert_allclose(_p4(cols, "nul", leg)[i] + p[nut[0]],
                                       _p4(cols, "nu", leg)[i], atol=1e-6)
            np.testing.assert_allclose(_p4(cols, "chg", leg)[i] + p[nul[0]] + p[nut[0]],
                                       _p4(cols, "tau", leg)[i], atol=1e-6)


def test_lepton_neutrino_columns_and_exact_polarimeter(forced4):
    """Generated file, modes pi/rho/e/mu: leptonic legs carry a massless nu_l with E > 0 and
    nu - nu_l (the nu_tau) is massless too; tau = chg + nu_l + nu_tau; other legs NaN. The
    truth polarimeters are then exact for every leg (|h| = 1); exact mode: spin_weight = 1."""
    cols, meta, _ = forced4
    assert meta["spin"]["mode"] == "exact"
    np.testing.assert_array_equal(cols["spin_weight"], 1.0)
    for leg in "pm":
        lep = np.isin(cols[f"decay_mode_{leg}"], ("e", "mu"))
        assert lep.sum() > 100 and (~lep).sum() > 100
        nul, nu = _p4(cols, "nul", leg), _p4(cols, "nu", leg)
        assert np.all(np.isfinite(nul[lep])) and np.all(np.isnan(nul[~lep]))
        nut = nu[lep] - nul[lep]
        scale = nu[lep, 3:] ** 2
        assert np.all(np.abs(mass2(nul[lep])) < 1e-6 * (1 + nul[lep, 3] ** 2))
        assert np.all(np.abs(mass2(nut)) < 1e-6 * (1 + scale[:, 0]))
        assert np.all(nul[lep, 3] > 0) and np.all(nut[:, 3] > 0)
        np.testing.assert_allclose(_p4(cols, "chg", leg)[lep] + nul[lep] + nut,
                                   _p4(cols, "tau", leg)[lep], atol=1e-6)
    pol = from_truth(cols)
    assert pol.exact_p.all() and pol.exact_m.all()
    ok = np.all(np.isfinite(pol.h_p), axis=1) & np.all(np.isfinite(pol.h_m), axis=1)
    assert ok.mean() > 0.99
    np.testing.assert_allclose(np.linalg.norm(pol.h_p[ok], axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pol.h_m[ok], axis=1), 1.0, atol=1e-6)
    # without the neutrino (e.g. older files): the labelled approximation, flagged inexact
    old = {k: v for k, v in cols.items() if not k.startswith("nul_")}
    pol_old = from_truth(old)
    lep = np.isin(cols["decay_mode_p"], ("e", "mu"))
    assert not pol_old.exact_p[lep].any() and pol_old.exact_p[~lep].all()


@pytest.fixture(scope="module")
def pipi_weights(tmp_path_factory):
    """A ``spin: weights`` pi pi sample (unpolarised decays + spin weights), fast settings."""
    path = tmp_path_factory.mktemp("spinw") / "pipi_w.parquet"
    run(GenerateConfig(events=800, seed=31, events_per_job=400, force_decays=("pi",),
                       spin="weights", **FAST), path, workers=2, progress=False)
    return path


def test_weights_sample_reproduces_the_lo_correlations(pipi_weights):
    """800 pi pi events with unpolarised decays: the raw C is 0 within 4 sigma; the weights are
    finite, >= 0, average to 1 within 4 sigma and equal ditau.spin.truth_weights of the stored
    truth; the weighted C_kk, C_rr, C_nn (tomography truth analysers and estimator) agree with
    the LO expectation (the sample mean of the per-event LO C) within 4 sigma, and C_kk moves
    from 0 to ~1 (more than 3 sigma). The metadata records the mode, state and frame."""
    cols = _cols(pipi_weights)
    meta = read_metadata(pipi_weights)
    assert meta["spin"]["mode"] == "weights" and meta["spin"]["state"] == "sm"
    assert "TauDecays:mode = 3" in meta["pythia_settings"]
    w = cols["spin_weight"]
    n = len(w)
    assert np.all(np.isfinite(w)) and np.all(w >= 0)
    assert abs(w.mean() - 1) < 4 * w.std() / np.sqrt(n)
    np.testing.assert_allclose(w, truth_weights(cols), rtol=1e-12)
    an = analysers_from_truth(cols)
    raw = measure(an.h_p, an.h_m, an.kappa_p, an.kappa_m, valid=an.valid)
    wtd = measure(an.h_p, an.h_m, an.kappa_p, an.kappa_m, weights=w, valid=an.valid)
    lo = state_from_truth(cols, an.cos_theta)
    expect = np.nanmean(lo.C[an.valid], axis=0)
    err_raw, err = raw.errors[6:].reshape(3, 3), wtd.errors[6:].reshape(3, 3)
    for i in range(3):
        assert abs(raw.C[i, i]) < 4 * err_raw[i, i], (i, raw.C[i, i], err_raw[i, i])
        assert abs(wtd.C[i, i] - expect[i, i]) < 4 * err[i, i], (i, wtd.C[i, i], expect[i, i])
    assert wtd.C[0, 0] - raw.C[0, 0] > 3 * np.hypot(err[0, 0], err_raw[0, 0])
    assert expect[0, 0] == pytest.approx(1.0, abs=0.01) and expect[1, 1] < -0.3


def test_separable_and_unpolarised_targets(pipi_weights):
    """The validation targets: 'unpolarised' weights are all 1; 'separable' (C = B+ B-^T)
    weights average to 1 and differ from the SM ones."""
    cols = _cols(pipi_weights)
    np.testing.assert_array_equal(truth_weights(cols, "unpolarised"), 1.0)
    sep = truth_weights(cols, "separable")
    assert np.all(sep >= 0) and abs(sep.mean() - 1) < 4 * sep.std() / np.sqrt(len(sep))
    assert np.abs(sep - cols["spin_weight"]).max() > 0.1


def test_spin_configuration():
    """spin / spin_state are validated and map to Pythia's unpolarised decays."""
    cfg = GenerateConfig(spin="weights")
    s = cfg.pythia_settings(1)
    assert "TauDecays:mode = 3" in s and "TauDecays:tauPolarization = 0" in s
    assert "TauDecays:mode = 1" in GenerateConfig().pythia_settings(1)
    assert GenerateConfig.from_dict({"spin": "weights", "spin_state": "separable"}).spin_state \
        == "separable"
    for bad, match in (({"spin": "fast"}, "spin"),
                       ({"spin": "weights", "process": "wtaunu"}, "spin"),
                       ({"spin_state": "separable"}, "spin_state"),
                       ({"spin": "weights", "spin_state": "bell"}, "spin_state"),
                       ({"spin": "weights", "tau_spin_correlations": False}, "spin")):
        with pytest.raises(ConfigError, match=match):
            GenerateConfig(**bad)


def _as_old_version(src, dst):
    """``src`` rewritten as a file of the previous schema version (1.1.0: no nul_*, no
    spin_weight)."""
    pf = pq.ParquetFile(src)
    meta = json.loads(pf.metadata.metadata[b"ditau"])
    meta["schema_version"] = "1.1.0"
    for key in ("spin", "spin_state"):  # generator settings that 1.1 files do not record
        meta["config"].pop(key)
    meta.pop("spin")
    t = pf.read()
    t = t.select([c for c in t.column_names if c not in {c.name for c in added_after("1.1.0")}])
    write_events(t, dst, meta)
    return dst


def test_previous_schema_version_is_readable_and_upgraded(pipi, tmp_path):
    """A 1.1.0 generated file (without the 1.2.0 columns) validates and reads with nul_* = NaN
    and spin_weight = 1 filled in (also when asked for by name); a 1.2.0 file without them
    is an error naming the column; merging old files gives a complete current file, and an
    old file merges with a new one of the same settings (spin: exact by default)."""
    assert SCHEMA_VERSION == "1.3.0"
    assert {c.name for c in added_after("1.1.0")} - {c.name for c in added_after("1.2.0")} == {
        *(f"nul_{c}_{leg}" for c in _P4 for leg in "pm"), "spin_weight"}
    _, _, path = pipi
    old = _as_old_version(path, tmp_path / "old.parquet")
    assert "spin_weight" not in pq.ParquetFile(old).schema_arrow.names
    assert validate_file(old)[0] == "generated"
    t = read_events(old, kind="generated")
    assert np.all(np.asarray(t["spin_weight"]) == 1.0)
    assert np.all(np.isnan(np.asarray(t["nul_px_p"])))
    sub = read_events(old, columns=["event_id", "spin_weight"])
    assert sub.column_names == ["event_id", "spin_weight"]
    # the same columns claimed as the current version: missing columns
    meta = read_metadata(old)
    meta["schema_version"] = SCHEMA_VERSION
    bad = tmp_path / "bad.parquet"
    write_events(pq.read_table(old), bad, meta)
    with pytest.raises(SchemaError, match=r"missing required column.*nul_px_p"):
        read_events(bad, kind="generated")
    # merge: two old files -> one current file with the filled columns
    old2 = tmp_path / "old2.parquet"
    tbl = pq.read_table(old)
    meta2 = read_metadata(old)
    meta2["jobs"] = [{**j, "seed": j["seed"] + 1} for j in meta2["jobs"]]
    meta2["run_id"] = "generate-old2"  # other seeds: another run (merge refuses one run twice)
    write_events(tbl, old2, meta2)
    out = tmp_path / "merged.parquet"
    assert merge_files([old, old2], out) == 2 * tbl.num_rows
    assert read_metadata(out)["schema_version"] == SCHEMA_VERSION
    m = read_events(out, kind="generated")
    assert np.all(np.asarray(m["spin_weight"]) == 1.0)
    # an old and a new file of one sample: the old one's settings read with the defaults
    assert merge_files([old2, path], tmp_path / "mixed.parquet") == 2 * tbl.num_rows


def test_upgrade_leaves_groups_the_table_lacks():
    """Only groups the table has get the new columns (a reco-only table stays as it is)."""
    from ditau.schema import upgrade

    t = pa.table({"met_x": [1.0], "event_id": pa.array([0], pa.int64())})
    from ditau.schema import BY_NAME

    up = upgrade(t, "1.1.0").column_names
    # the reco group's later columns (impact parameters, 1.3.0) only; no truth column
    assert up[:2] == ["met_x", "event_id"]
    assert up[2:] and {BY_NAME[c].group for c in up[2:]} == {"reco"}
    t2 = pa.table({"m_hat": [91.0]})
    assert "spin_weight" in upgrade(t2, "1.1.0").column_names
    assert upgrade(t2, SCHEMA_VERSION).column_names == ["m_hat"]
