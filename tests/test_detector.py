"""The parametric detector: resolutions, MET closure, systematics, fakes, determinism."""

from __future__ import annotations

import hashlib

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest

from ditau.detector import resolution as res
from ditau.detector.config import SYSTEMATICS, DetectorConfig
from ditau.detector.parametric import simulate
from ditau.detector.run import run_detector
from ditau.schema import SchemaError, read_events
from ditau.select import select


@pytest.fixture(scope="module")
def table(signal_particles):
    return pq.read_table(signal_particles)


@pytest.fixture(scope="module")
def nominal(table):
    return simulate(table, DetectorConfig())


@pytest.fixture(scope="module")
def unsmeared(table):
    return simulate(table, DetectorConfig(smear=False))


def _flat(arr: ak.Array, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Flatten an object collection with its event index, sorted by (event, keys)."""
    evt = np.repeat(np.arange(len(arr)), ak.to_numpy(ak.num(arr)))
    out = {f: ak.to_numpy(ak.flatten(arr[f])).astype(np.float64) for f in arr.fields}
    out["evt"] = evt
    order = np.lexsort(tuple(out[k] for k in reversed(("evt", *keys))))
    return {k: v[order] for k, v in out.items()}


def _pt_eta(px, py, pz):
    pt = np.hypot(px, py)
    return pt, np.abs(np.arcsinh(pz / pt))


def _pull_ok(pull: np.ndarray, n_min: int) -> None:
    """Unit-width, zero-mean pulls (4 sigma statistical tolerance, at least 10 % on the width)."""
    n = len(pull)
    assert n >= n_min
    assert abs(np.mean(pull)) < 4 / np.sqrt(n)
    assert np.std(pull) == pytest.approx(1.0, abs=max(0.1, 4 / np.sqrt(2 * n)))


# --- parametrisations against the card's numbers ---------------------------------------------

def test_resolution_functions_match_the_cited_card_values():
    pt, e = np.array([20.0]), np.array([50.0])
    # hand-computed from delphes_card_ATLAS.tcl formulas
    assert res.track_resolution(pt, np.array([0.3]))[0] == pytest.approx(np.hypot(0.06, 0.026))
    assert res.track_resolution(pt, np.array([2.0]))[0] == pytest.approx(np.hypot(0.25, 0.062))
    assert res.electron_resolution(pt, np.array([1.0]))[0] == pytest.approx(np.hypot(0.05, 0.034))
    assert res.muon_resolution(pt, np.array([0.2]))[0] == pytest.approx(np.hypot(0.01, 0.002))
    assert res.ecal_resolution(e, np.array([1.0]))[0] == pytest.approx(
        np.sqrt(0.0017**2 + 0.101**2 / 50.0))
    assert res.tau_id_efficiency(np.array([1, 3])).tolist() == [0.70, 0.60]
    assert res.jet_fake_rate(np.array([1, 3])).tolist() == [0.02, 0.01]
    assert res.electron_efficiency(np.array([5.0, 30.0]), np.array([0.5, 0.5])).tolist() == \
        pytest.approx([0.0, 0.95 * 0.95])


def test_lognormal_factor_has_unit_mean_and_the_requested_width():
    z = np.random.default_rng(1).standard_normal(400_000)
    for s in (0.05, 0.25):
        r = res.lognormal_factor(np.full_like(z, s), z)
        assert r.min() > 0
        assert np.mean(r) == pytest.approx(1.0, abs=3e-3)
        assert np.std(r) == pytest.approx(s, rel=0.02)


# --- smeared / true ratios have the parametrised widths ----------------------------------------

def test_track_resolution_of_one_prong_taus(nominal, unsmeared):
    a, b = _flat(nominal.taus, ("charge",)), _flat(unsmeared.taus, ("charge",))
    assert np.array_equal(a["evt"], b["evt"])  # same candidates: ID does not depend on smearing
    one = (b["n_tracks"] == 1) & (b["origin"] == 0)
    pt0, eta0 = _pt_eta(b["chg_px"][one], b["chg_py"][one], b["chg_pz"][one])
    pt1 = np.hypot(a["chg_px"][one], a["chg_py"][one])
    _pull_ok((pt1 / pt0 - 1) / res.track_resolution(pt0, eta0), 300)


def test_lepton_resolutions(nominal, unsmeared):
    a, b = _flat(nominal.leptons, ("flavour", "charge")), _flat(unsmeared.leptons,
                                                                ("flavour", "charge"))
    assert np.array_equal(a["evt"], b["evt"]) and np.array_equal(a["flavour"], b["flavour"])
    pt0, eta0 = _pt_eta(b["px"], b["py"], b["pz"])
    pt1 = np.hypot(a["px"], a["py"])
    for fl, fn in ((11, res.electron_resolution), (13, res.muon_resolution)):
        m = b["flavour"] == fl
        _pull_ok((pt1[m] / pt0[m] - 1) / fn(pt0[m], eta0[m]), 100)


def test_pi0_cluster_energy_resolution_from_the_photons(table, nominal, unsmeared):
    a, b = _flat(nominal.taus, ("charge",)), _flat(unsmeared.taus, ("charge",))
    both = (a["n_neu"] > 0) & (b["n_neu"] > 0) & (b["origin"] == 0) & (b["n_tracks"] == 1)
    # Expected width from the leg's true photons (each ECAL-smeared independently).
    e = table.column("fs_e").combine_chunks()
    evt = np.repeat(np.arange(table.num_rows), np.diff(np.asarray(e.offsets)))
    flat = {k: np.asarray(table.column(f"fs_{k}").combine_chunks().flatten(), dtype=np.float64)
            for k in ("px", "py", "pz", "e", "pid", "tau")}
    pt = np.hypot(flat["px"], flat["py"])
    aeta = np.abs(np.arcsinh(flat["pz"] / pt))
    gam = (flat["pid"] == 22) & (aeta < 2.5) & (flat["tau"] != 0)
    var = (res.ecal_resolution(flat["e"], aeta) * flat["e"]) ** 2
    key = evt * 2 + (flat["tau"] > 0)
    sig2 = np.bincount(key[gam], var[gam], minlength=2 * table.num_rows)
    # candidates whose leg is known from the charge: true 1-prong rho decays
    ev = b["evt"].astype(int)
    mode = np.where(b["charge"] > 0, np.asarray(table.column("decay_mode_p").to_pylist())[ev],
                    np.asarray(table.column("decay_mode_m").to_pylist())[ev])
    both &= mode == "rho"
    k = ev[both] * 2 + (b["charge"][both] > 0)
    pull = (a["neu_e"][both] - b["neu_e"][both]) / np.sqrt(sig2[k])
    _pull_ok(pull, 150)


def test_jet_resolution(nominal, unsmeared):
    # Scaling keeps directions, so jets pair up by (event, phi).
    def flat(c):
        j = c.jets
        return _flat(ak.with_field(j, np.arctan2(j.py, j.px), "phi"), ("phi",))
    a, b = flat(nominal), flat(unsmeared)
    assert np.allclose(a["phi"], b["phi"])
    pt0, eta0 = _pt_eta(b["px"], b["py"], b["pz"])
    pt1 = np.hypot(a["px"], a["py"])
    _pull_ok((pt1 / pt0 - 1) / res.jet_resolution(pt0, eta0), 300)


# --- MET ---------------------------------------------------------------------------------------

def test_met_closure_without_smearing_or_inefficiency(table):
    cands = simulate(table, DetectorConfig(smear=False, efficiencies=False))
    t = {c: np.asarray(table.column(c)) for c in
         ("nu_px_p", "nu_py_p", "nu_px_m", "nu_py_m", "nu_other_px", "nu_other_py",
          "vis_out_px", "vis_out_py")}
    n = table.num_rows
    e = table.column("fs_e").combine_chunks()
    evt = np.repeat(np.arange(n), np.diff(np.asarray(e.offsets)))
    flat = {k: np.asarray(table.column(f"fs_{k}").combine_chunks().flatten(), dtype=np.float64)
            for k in ("px", "py", "pz", "pid")}
    pt = np.hypot(flat["px"], flat["py"])
    forward = np.abs(np.arcsinh(flat["pz"] / pt)) >= 4.9
    muon = np.abs(flat["pid"]) == 13
    lep = cands.leptons
    mu_id = lep.flavour == 13
    for c, comp in (("x", "px"), ("y", "py")):
        expect = (t[f"nu_{comp}_p"] + t[f"nu_{comp}_m"] + t[f"nu_other_{comp}"]
                  + t[f"vis_out_{comp}"]
                  + np.bincount(evt[forward], flat[comp][forward], minlength=n)
                  # muons leave no calorimeter energy: the unidentified ones are missing
                  + np.bincount(evt[muon & ~forward], flat[comp][muon & ~forward], minlength=n)
                  - ak.to_numpy(ak.sum(lep[comp][mu_id], axis=1)))
        assert np.allclose(cands.met[f"met_{c}"], expect, atol=2e-3), c


def test_met_residual_width_matches_the_covariance(nominal, unsmeared):
    for c in ("x", "y"):
        d = nominal.met[f"met_{c}"] - unsmeared.met[f"met_{c}"]
        _pull_ok(d / np.sqrt(nominal.met[f"met_cov_{c}{c}"]), 1500)
    # the covariance is a proper 2x2 covariance: positive definite
    det = nominal.met["met_cov_xx"] * nominal.met["met_cov_yy"] - nominal.met["met_cov_xy"] ** 2
    assert np.all(det > 0) and np.all(nominal.met["met_cov_xx"] > 0)


def test_soft_term_alone_has_the_modelled_width(table):
    """Only the soft-term resolution differs: the MET difference is k sqrt(sumET_soft) wide."""
    a = simulate(table, DetectorConfig(soft_met_resolution=1.0))
    b = simulate(table, DetectorConfig(soft_met_resolution=1e-9))
    d = a.met["met_x"] - b.met["met_x"]
    soft_var = a.met["met_cov_xx"] - b.met["met_cov_xx"]  # = sigma_soft^2 (1 - 1e-18)
    _pull_ok(d / np.sqrt(soft_var), 1500)
    assert np.all(soft_var > 0)


# --- systematics change what they should and nothing else ----------------------------------

def _objects(c):
    return (_flat(c.leptons, ("flavour", "charge")), _flat(c.taus, ("charge",)),
            ak.to_list(c.jets))


def test_tes_scales_taus_and_met_only(table, nominal):
    up = simulate(table, DetectorConfig().vary("tes_up"))
    l0, t0, j0 = _objects(nominal)
    l1, t1, j1 = _objects(up)
    assert all(np.array_equal(l0[k], l1[k]) for k in l0) and j0 == j1
    for k in ("chg_px", "chg_e", "neu_pz", "neu_e"):
        assert np.allclose(t1[k], 1.03 * t0[k], rtol=1e-12)
    vis = ak.sum(nominal.taus.chg_px + nominal.taus.neu_px, axis=1)
    assert np.allclose(up.met["met_x"] - nominal.met["met_x"], -0.03 * ak.to_numpy(vis))
    assert not np.allclose(up.met["met_x"], nominal.met["met_x"])


def test_jes_scales_jets_and_met_only(table, nominal):
    up = simulate(table, DetectorConfig().vary("jes_up"))
    l0, t0, _ = _objects(nominal)
    l1, t1, _ = _objects(up)
    assert all(np.array_equal(l0[k], l1[k]) for k in l0)
    assert all(np.array_equal(t0[k], t1[k]) for k in t0)
    assert np.allclose(ak.flatten(up.jets.px), 1.03 * ak.flatten(nominal.jets.px), rtol=1e-12)
    assert not np.allclose(up.met["met_x"], nominal.met["met_x"])


@pytest.mark.parametrize("name", ["soft_met_scale_up", "soft_met_resolution_down"])
def test_soft_met_variations_touch_only_met(table, nominal, name):
    var = simulate(table, DetectorConfig().vary(name))
    o0, o1 = _objects(nominal), _objects(var)
    for a, b in zip(o0[:2], o1[:2], strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert o0[2] == o1[2]
    assert not np.allclose(var.met["met_x"], nominal.met["met_x"])


def test_unknown_systematic_is_named():
    with pytest.raises(ValueError, match="unknown systematic 'tes_sideways'"):
        DetectorConfig().vary("tes_sideways")
    assert set(SYSTEMATICS) >= {"tes_up", "jes_down", "soft_met_scale_up"}


# --- channels and migration ----------------------------------------------------------------

def test_channel_migration_matrix_is_mostly_diagonal(table, nominal):
    cols = select(nominal)
    truth = np.asarray(table.column("truth_channel").to_pylist())
    reco = cols["reco_channel"]
    chans = ["pipi", "pirho", "rhorho", "epi", "mupi", "erho", "murho"]
    m = np.array([[np.sum((truth == t) & (reco == r)) for r in chans] for t in chans])
    assert m.sum() > 60
    rows = m.sum(1)
    diag = np.diag(m) / np.maximum(rows, 1)
    assert np.all(diag[rows >= 10] > 0.7), dict(zip(chans, diag.round(2), strict=True))
    # real migrations exist (e.g. a soft pi0 lost: rho -> pi), computed from the events
    assert m.sum() - np.trace(m) > 0
    assert m[chans.index("rhorho"), chans.index("pirho")] + \
        m[chans.index("pirho"), chans.index("pipi")] > 0


# --- backgrounds ---------------------------------------------------------------------------

def test_wtaunu_truth_has_one_tau_leg_and_fakes_carry_rates(wtaunu_particles):
    t = read_events(wtaunu_particles, require=("id", "truth", "particles"))
    has_p = np.isfinite(np.asarray(t["tau_e_p"]))
    has_m = np.isfinite(np.asarray(t["tau_e_m"]))
    assert np.mean(has_p ^ has_m) > 0.95  # one tau from the W
    assert np.all(np.asarray(t["n_nu_p"])[~has_p] == 0)
    assert set(np.asarray(t["decay_mode_p"].to_pylist())[~has_p]) == {"other"}
    cands = simulate(t, DetectorConfig(), fake_taus=True)
    origin = ak.to_numpy(ak.flatten(cands.taus.origin))
    w = ak.to_numpy(ak.flatten(cands.taus.fake_weight))
    ntrk = ak.to_numpy(ak.flatten(cands.taus.n_tracks))
    jet = origin == 1
    assert jet.sum() > 100
    assert np.array_equal(w[jet], np.where(ntrk[jet] == 1, 0.02, 0.01))
    assert np.all(w[origin == 0] == 1.0)
    cols = select(cands)
    assert np.all(cols["reco_weight"] <= 1.0)
    fake_legs = (cols["reco_origin_p"] == 1) | (cols["reco_origin_m"] == 1)
    assert np.all(cols["reco_weight"][fake_legs] < 0.03)


# --- running over files ------------------------------------------------------------------

def test_run_detector_is_reproducible_and_parallel_safe(signal_particles, tmp_path):
    cfg = DetectorConfig(chunk_size=700)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    sa = run_detector(signal_particles, a, cfg, keep_particles=False, workers=1, progress=False)
    run_detector(signal_particles, b, cfg, keep_particles=False, workers=2, progress=False)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    t = read_events(a, require=("id", "truth", "reco"))
    assert t.num_rows == 2000 and sa.in_sr == int(np.sum(np.asarray(t["in_sr"])))
    assert "fs_px" not in t.column_names


def test_detector_needs_particles(inclusive, tmp_path):
    _, _, path = inclusive  # generated with keep_particles = False
    with pytest.raises(SchemaError, match="--no-particles"):
        run_detector(path, tmp_path / "x.parquet", progress=False)
    assert not (tmp_path / "x.parquet").exists()


def test_detector_on_a_dask_cluster_is_byte_identical(signal_particles, tmp_path):
    import hashlib

    from dask.distributed import Client, LocalCluster

    from ditau.detector.config import DetectorConfig

    cfg = DetectorConfig(chunk_size=500)
    local = run_detector(signal_particles, tmp_path / "local.parquet", cfg,
                         keep_particles=False, progress=False).path
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        remote = run_detector(signal_particles, tmp_path / "dask.parquet", cfg,
                              keep_particles=False, progress=False,
                              scheduler=client.scheduler.address).path
    assert hashlib.sha256(remote.read_bytes()).digest() == \
        hashlib.sha256(local.read_bytes()).digest()
