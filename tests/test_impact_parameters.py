"""Track impact parameters (issue #16): truth vertices with the beam spot, the helix point of
closest approach, the ATLAS-like resolution and its systematic, the legs' schema columns, the
Delphes branches, and schema 1.3.0 files next to older ones.

Physics checks against independent references: the tau's mean proper decay length is the
PDG c tau = 87.03 um; the perigee sign is the geometric one (a track from a vertex on the tau
line of flight has d0 = L sin(phi_tau - phi_track)); the closed-form helix PCA agrees with a
brute-force scan along the helix; prompt Z -> ll leptons have d0 = 0 where tau daughters do
not; (measured - true) / error has width 1 where the true value comes from the truth columns
(tau decay vertex, primary vertex, charged product), not from the detector's particle lists.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ditau.detector import impact
from ditau.detector import resolution as res
from ditau.detector.config import SYSTEMATICS, DetectorConfig
from ditau.detector.delphes import read_delphes
from ditau.detector.parametric import INPUT_COLUMNS, VERTEX_COLUMNS, simulate
from ditau.detector.run import run_detector
from ditau.generate import GenerateConfig, run
from ditau.generate.config import ConfigError
from ditau.schema import (
    SCHEMA_VERSION,
    added_after,
    read_events,
    read_metadata,
    validate_file,
    write_events,
)
from test_delphes import cols_of, synthetic, write_delphes

#: tau lepton c tau [mm] (PDG 2024: 87.03 um).
CTAU_MM = 0.08703
M_TAU = 1.77693  # PDG 2024 [GeV]
BZ = 2.0
_P3 = ("px", "py", "pz")


# --------------------------------------------------------------------------------------------
# Geometry and resolution (no generation)


def test_straight_track_d0_has_the_atlas_perigee_sign():
    """Without a field, d0 = (y px - x py) / pT (ACTS/ATLAS perigee: PCA = d0 (-sin phi,
    cos phi)), z0 = z of the PCA; a point on the track itself gives 0."""
    rng = np.random.default_rng(3)
    x, y, z = rng.normal(0, 2, (3, 50))
    px, py, pz = rng.normal(0, 10, (3, 50))
    q = rng.choice([-1.0, 1.0], 50)
    d0, z0 = impact.impact_parameters(x, y, z, px, py, pz, q, bz=0.0)
    pt = np.hypot(px, py)
    np.testing.assert_allclose(d0, (y * px - x * py) / pt, atol=1e-12)
    # the PCA: d0 (-sin phi, cos phi) lies on the line through (x, y) along (px, py)
    pca = d0[:, None] * np.stack([-py / pt, px / pt], axis=1)
    rel = pca - np.stack([x, y], axis=1)
    assert np.allclose(rel[:, 0] * py - rel[:, 1] * px, 0.0, atol=1e-9)
    s = (rel[:, 0] * px + rel[:, 1] * py) / pt  # transverse path to the PCA
    np.testing.assert_allclose(z0, z + s * pz / pt, atol=1e-12)
    d0_on, z0_on = impact.impact_parameters(np.zeros(3), np.zeros(3), np.full(3, 5.0),
                                            np.ones(3), np.ones(3), np.ones(3), np.ones(3))
    assert np.all(d0_on == 0.0) and np.allclose(z0_on, 5.0)


def test_helix_pca_agrees_with_a_brute_force_scan():
    """In the 2 T field, the closed-form d0, z0 equal the nearest point of the helix (found by
    scanning its path length) to the reference point, for both charges and low pT."""
    rng = np.random.default_rng(7)
    n = 40
    x, y, z = rng.normal(0, 5, (3, n))
    pt, phi = rng.uniform(0.4, 3.0, n), rng.uniform(-np.pi, np.pi, n)
    pz = rng.normal(0, 4, n)
    q = rng.choice([-1.0, 1.0], n)
    d0, z0 = impact.impact_parameters(x, y, z, pt * np.cos(phi), pt * np.sin(phi), pz, q, BZ)
    s = np.linspace(-40.0, 40.0, 400_001)  # transverse path length [mm]
    for i in range(n):
        # Lorentz force q v x B for B along +z turns positive tracks clockwise
        kappa = q[i] * impact.C_GEV_PER_T_MM * BZ / pt[i]
        ph = phi[i] - kappa * s
        hx = x[i] + (np.sin(phi[i]) - np.sin(ph)) / kappa
        hy = y[i] + (np.cos(ph) - np.cos(phi[i])) / kappa
        j = int(np.argmin(hx * hx + hy * hy))
        d0_scan = -hx[j] * np.sin(ph[j]) + hy[j] * np.cos(ph[j])
        assert d0[i] == pytest.approx(d0_scan, abs=1e-6)
        assert z0[i] == pytest.approx(z[i] + s[j] * pz[i] / pt[i], abs=2e-3)
    # the straight line is the high-momentum limit
    big = 1e6
    d0_fast, _ = impact.impact_parameters(x, y, z, big * np.cos(phi), big * np.sin(phi), pz, q)
    np.testing.assert_allclose(d0_fast, y * np.cos(phi) - x * np.sin(phi), atol=1e-7)


def test_resolution_model_values():
    """sigma(d0) = 10 um (+) 81 um GeV / (pT sqrt(sin theta)): ~80 um at 1 GeV, ~13 um at
    10 GeV, ~10 um at 50 GeV for |eta| = 0; worse forward; z0 likewise from z0 sin(theta)."""
    pt = np.array([1.0, 10.0, 50.0])
    s = res.d0_resolution(pt, np.zeros(3))
    np.testing.assert_allclose(s, np.hypot(0.010, 0.081228 / pt), rtol=1e-6)
    assert 0.060 < s[0] < 0.100 and 0.010 < s[1] < 0.015 and s[2] == pytest.approx(0.0103,
                                                                                   abs=2e-4)
    assert np.all(res.d0_resolution(pt, np.full(3, 2.0)) > s)
    sz = res.z0_resolution(pt, np.zeros(3))
    np.testing.assert_allclose(sz, np.hypot(0.091, 0.121436 / pt), rtol=1e-6)
    st = 1 / np.cosh(2.0)  # z0 = (z0 sin theta) / sin theta
    assert res.z0_resolution(np.array([50.0]), np.array([2.0]))[0] > 0.091 / st
    assert SYSTEMATICS["ip_res_up"] == {"ip_resolution": 1.10}
    assert SYSTEMATICS["ip_res_down"] == {"ip_resolution": 0.90}
    with pytest.raises(ValueError, match="bz"):
        DetectorConfig(bz=-1.0)
    with pytest.raises(ValueError, match="ip_resolution"):
        DetectorConfig(ip_resolution=0.0)


def test_beam_spot_config_is_validated():
    assert GenerateConfig().beam_spot_mm == (0.010, 0.010, 40.0)
    assert GenerateConfig.from_dict({"beam_spot_mm": [0.02, 0.02, 30]}).beam_spot_mm == (
        0.02, 0.02, 30)
    for bad in ((0.01, 0.01), (0.01, -1.0, 40.0), (0.01, float("nan"), 1.0)):
        with pytest.raises(ConfigError, match="beam_spot_mm"):
            GenerateConfig(beam_spot_mm=bad)


# --------------------------------------------------------------------------------------------
# Generated samples


@pytest.fixture(scope="module")
def signal(tmp_path_factory) -> Path:
    """400 Z -> tau tau events, full physics, taus forced into pi, rho, e, mu (path)."""
    path = tmp_path_factory.mktemp("ipsig") / "signal.parquet"
    run(GenerateConfig(events=400, seed=31, events_per_job=200,
                       force_decays=("pi", "rho", "e", "mu")), path, workers=1, progress=False)
    return path


@pytest.fixture(scope="module")
def zll(tmp_path_factory) -> Path:
    """200 Z -> ee / mumu events with particles (prompt leptons) (path)."""
    path = tmp_path_factory.mktemp("ipzll") / "zll.parquet"
    run(GenerateConfig(process="zll", events=200, seed=32, events_per_job=200), path,
        workers=1, progress=False)
    return path


def _cols(path: Path) -> dict[str, np.ndarray]:
    t = read_events(path)
    return {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names
            if not c.startswith("fs_")}


def _vec(c: dict[str, np.ndarray], prefix: str, leg: str, comps: tuple[str, ...]) -> np.ndarray:
    return np.stack([c[f"{prefix}_{x}_{leg}"] for x in comps], axis=1)


def test_beam_spot_and_the_tau_decay_length(signal):
    """The primary vertices spread with the configured widths around 0; the taus' proper
    decay length |decay vertex - PV| m / |p| has the PDG mean c tau = 87.03 um and the
    exponential's tail fraction exp(-2) beyond 2 c tau."""
    c = _cols(signal)
    pv = np.stack([c[f"pv_{x}"] for x in "xyz"], axis=1)
    n = len(pv)
    widths = np.array(GenerateConfig().beam_spot_mm)
    np.testing.assert_allclose(pv.std(axis=0), widths, rtol=4 / np.sqrt(2 * n))
    assert np.all(np.abs(pv.mean(axis=0)) < 4 * widths / np.sqrt(n))
    proper = []
    for leg in "pm":
        flight = np.linalg.norm(_vec(c, "tau_dv", leg, tuple("xyz")) - pv, axis=1)
        p = np.linalg.norm(_vec(c, "tau", leg, _P3), axis=1)
        proper.append(flight * M_TAU / p)
    lt = np.concatenate(proper)
    assert np.all(np.isfinite(lt)) and len(lt) == 2 * n
    # exponential: standard deviation = mean, so the mean's error is c tau / sqrt(N)
    assert np.mean(lt) == pytest.approx(CTAU_MM, abs=4 * CTAU_MM / np.sqrt(len(lt)))
    frac = np.mean(lt > 2 * CTAU_MM)
    assert frac == pytest.approx(np.exp(-2), abs=4 * np.sqrt(np.exp(-2) / len(lt)))


def test_particle_vertices_are_relative_to_the_primary_vertex(signal):
    """The stored charged products of a 1-prong leg start at tau_dv - pv; particles not from
    the taus mostly at the primary vertex (0)."""
    t = read_events(signal)
    c = _cols(signal)
    fs_tau = t["fs_tau"].to_pylist()
    fs_pid = t["fs_pid"].to_pylist()
    v = [t[f"fs_v{x}"].to_pylist() for x in "xyz"]
    checked = 0
    for i in range(t.num_rows):
        for leg, tag in (("p", 1), ("m", -1)):
            if c[f"decay_mode_{leg}"][i] not in ("pi", "e", "mu"):
                continue
            want = np.array([c[f"tau_dv_{x}_{leg}"][i] - c[f"pv_{x}"][i] for x in "xyz"])
            hits = [k for k, (tg, pid) in enumerate(zip(fs_tau[i], fs_pid[i], strict=True))
                    if tg == tag and abs(pid) in (211, 11, 13)]
            for k in hits:
                # stored to 0.1 um (and float32)
                np.testing.assert_allclose([v[0][i][k], v[1][i][k], v[2][i][k]], want,
                                           rtol=1e-6, atol=5.1e-5)
                checked += 1
    assert checked > 300
    untagged = np.concatenate([np.asarray(vx)[np.asarray(tg) == 0]
                               for vx, tg in zip(v[0], fs_tau, strict=True)])
    assert np.mean(untagged == 0.0) > 0.7  # hadronisation products, pi0 photons: at the PV


def test_the_beam_spot_leaves_the_generated_events_unchanged(tmp_path):
    """The vertices come from their own random stream: with and without a beam spot the same
    seed gives the same events (every non-vertex column); the same seed twice, the same
    bytes."""
    cfg = GenerateConfig(events=30, seed=5, events_per_job=30, mpi=False)
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    run(cfg, a, workers=1, progress=False)
    run(cfg, b, workers=1, progress=False)
    run(cfg.replace(beam_spot_mm=None), c, workers=1, progress=False)
    assert a.read_bytes() == b.read_bytes()
    ta, tc = read_events(a), read_events(c)
    vertex = {col.name for col in added_after("1.2.0")}
    for name in ta.column_names:
        if name not in vertex:
            _assert_same(ta[name], tc[name], name)
    assert np.all(tc["pv_z"].to_numpy() == 0.0) and np.std(ta["pv_z"].to_numpy()) > 10.0
    # relative vertices do not see the beam spot
    _assert_same(ta["fs_vx"], tc["fs_vx"], "fs_vx")


def _assert_same(a: pa.ChunkedArray, b: pa.ChunkedArray, name: str) -> None:
    """Equal columns, NaN equal to NaN (lists: equal lengths and values)."""
    a, b = a.combine_chunks(), b.combine_chunks()
    if pa.types.is_list(a.type):
        assert a.value_lengths().equals(b.value_lengths()), name
        a, b = a.flatten(), b.flatten()
    np.testing.assert_array_equal(a.to_numpy(zero_copy_only=False),
                                  b.to_numpy(zero_copy_only=False), err_msg=name)


# --------------------------------------------------------------------------------------------
# Detector


def _simulate(path: Path, cfg: DetectorConfig | None = None):
    t = read_events(path, columns=[*INPUT_COLUMNS, *VERTEX_COLUMNS])
    return simulate(t, cfg or DetectorConfig())


def _truth_track(c: dict[str, np.ndarray], evt: np.ndarray, leg: np.ndarray
                 ) -> dict[str, np.ndarray]:
    """From the truth columns: the leg's charged product momentum, its production point
    relative to the PV (the tau decay vertex) and charge, for events ``evt``, legs ``leg``."""
    out: dict[str, np.ndarray] = {}
    for x in ("px", "py", "pz"):
        out[x] = np.where(leg == "p", c[f"chg_{x}_p"][evt], c[f"chg_{x}_m"][evt])
    for x in "xyz":
        dv = np.where(leg == "p", c[f"tau_dv_{x}_p"][evt], c[f"tau_dv_{x}_m"][evt])
        out[f"v{x}"] = dv - c[f"pv_{x}"][evt]
    out["q"] = np.where(leg == "p", 1.0, -1.0)
    out["n_charged"] = np.where(leg == "p", c["n_charged_p"][evt], c["n_charged_m"][evt])
    out["mode"] = np.where(leg == "p", c["decay_mode_p"][evt], c["decay_mode_m"][evt])
    return out


def _matched_candidates(cands, c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Real 1-prong tau_had candidates and leptons matched to their truth leg (by charge and
    the charged product's direction, which momentum smearing keeps): measured d0, z0, errors
    and the true ones computed from the truth columns."""
    import awkward as ak

    rows = []
    for coll, fields, keep in (
            (cands.taus, ("chg_px", "chg_py", "chg_pz"),
             lambda o: (o.origin == 0) & (o.n_tracks == 1)),
            (cands.leptons, ("px", "py", "pz"), lambda o: o.charge != 0)):
        sel = coll[keep(coll)]
        evt = np.repeat(np.arange(len(sel)), ak.to_numpy(ak.num(sel)))
        flat = {f: ak.to_numpy(ak.flatten(sel[f])) for f in
                (*fields, "charge", *impact.IP_FIELDS)}
        leg = np.where(flat["charge"] > 0, "p", "m")
        tr = _truth_track(c, evt, leg)
        mom = np.stack([flat[f] for f in fields], axis=1)
        true = np.stack([tr[x] for x in _P3], axis=1)
        cos = np.sum(mom * true, axis=1) / (np.linalg.norm(mom, axis=1)
                                             * np.linalg.norm(true, axis=1))
        ok = (tr["n_charged"] == 1) & (cos > 1 - 1e-9)
        d0_t, z0_t = impact.impact_parameters(tr["vx"], tr["vy"], tr["vz"], tr["px"],
                                              tr["py"], tr["pz"], tr["q"], BZ)
        rows.append({**{f: flat[f][ok] for f in impact.IP_FIELDS}, "d0_true": d0_t[ok],
                     "z0_true": z0_t[ok], "lepton": np.isin(tr["mode"][ok], ("e", "mu")),
                     "phi": np.arctan2(true[ok, 1], true[ok, 0]), "evt": evt[ok],
                     "leg": leg[ok]})
    return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


@pytest.fixture(scope="module")
def matched(signal) -> dict[str, np.ndarray]:
    return _matched_candidates(_simulate(signal), _cols(signal))


def test_impact_parameter_pulls_against_the_truth_vertices(matched):
    """(measured - true) / error ~ N(0, 1) for d0 and z0, the true values computed from the
    truth columns (tau decay vertex - PV, charged product): mean 0, width 1."""
    n = len(matched["d0"])
    assert n > 200
    assert matched["lepton"].sum() > 30 and (~matched["lepton"]).sum() > 100
    for q in ("d0", "z0"):
        pull = (matched[q] - matched[f"{q}_true"]) / matched[f"{q}_err"]
        assert np.all(np.isfinite(pull))
        assert abs(np.mean(pull)) < 4 / np.sqrt(n)
        assert np.std(pull) == pytest.approx(1.0, abs=4 / np.sqrt(2 * n))
        assert np.mean(np.abs(pull) > 3) < 0.01


def test_true_d0_has_the_lifetime_sign(signal):
    """A track from a vertex a transverse distance L along the tau's flight has
    d0 = L sin(phi_tau - phi_track) for a straight track (the perigee sign: positive when the
    track points clockwise from the tau's flight); the 2 T field changes it by at most the
    sagitta kappa L^2 / 2."""
    c = _cols(signal)
    signed = []
    for leg in "pm":
        one = c[f"n_charged_{leg}"] == 1
        v = _vec(c, "tau_dv", leg, tuple("xyz")) - np.stack([c[f"pv_{x}"] for x in "xyz"], 1)
        p = _vec(c, "chg", leg, _P3)
        q = 1.0 if leg == "p" else -1.0
        d0, _ = impact.impact_parameters(v[:, 0], v[:, 1], v[:, 2], p[:, 0], p[:, 1],
                                         p[:, 2], np.full(len(v), q), BZ)
        phi_tau, phi_trk = np.arctan2(v[:, 1], v[:, 0]), np.arctan2(p[:, 1], p[:, 0])
        flight = np.hypot(v[:, 0], v[:, 1])
        straight = flight * np.sin(phi_tau - phi_trk)
        signed.append((d0 * np.sign(straight))[one])
        kappa = impact.C_GEV_PER_T_MM * BZ / np.hypot(p[:, 0], p[:, 1])
        sagitta = 0.5 * kappa * flight**2
        assert np.all((np.abs(d0 - straight) <= sagitta * (1 + 1e-6) + 1e-12)[one])
    s = np.concatenate(signed)
    assert len(s) > 400 and np.mean(s > 0) > 0.99


def test_tau_leptons_are_displaced_prompt_leptons_are_not(matched, zll):
    """Z -> ll leptons come from the primary vertex: true d0 = 0; leptons from tau decays
    have |d0| of order c tau; after smearing their median |d0| is still more than twice the
    prompt one (which is the resolution's: 0.674 sigma, the half-normal median)."""
    nosmear = DetectorConfig(smear=False)
    prompt0 = _simulate(zll, nosmear).leptons
    prompt = _simulate(zll).leptons
    import awkward as ak

    d0_prompt0 = ak.to_numpy(ak.flatten(prompt0.d0))
    d0_prompt = ak.to_numpy(ak.flatten(prompt.d0))
    err_prompt = ak.to_numpy(ak.flatten(prompt.d0_err))
    assert len(d0_prompt0) > 100
    assert np.max(np.abs(d0_prompt0)) < 1e-6
    assert np.median(np.abs(d0_prompt / err_prompt)) == pytest.approx(0.674, abs=0.15)
    tau = matched
    lep = tau["lepton"]
    # a lepton shares the tau's momentum with two neutrinos: |d0| ~ 0.1 - 1 c tau
    assert 0.1 * CTAU_MM < np.median(np.abs(tau["d0_true"][lep])) < CTAU_MM
    assert np.median(np.abs(tau["d0"][lep])) > 2 * np.median(np.abs(d0_prompt))


def test_ip_resolution_systematic_scales_only_the_smearing(signal):
    """ip_res_up/down reuse the nominal random numbers: d0 - d0_nominal is +-10 % of the
    nominal smearing (so up + down = 2 nominal), the quoted errors and every other object
    quantity unchanged."""
    import awkward as ak

    cfg = DetectorConfig()
    nom, up, down = (_simulate(signal, cfg.vary(s)) for s in (None, "ip_res_up", "ip_res_down"))
    for coll in ("leptons", "taus"):
        a, b, d = getattr(nom, coll), getattr(up, coll), getattr(down, coll)
        for f in ak.fields(a):
            x, y, z = (ak.to_numpy(ak.flatten(o[f])) for o in (a, b, d))
            if f in ("d0", "z0"):
                np.testing.assert_allclose(y + z, 2 * x, rtol=0, atol=1e-12)
                assert np.any(np.abs(y - x) > 1e-4)
            else:
                np.testing.assert_array_equal(y, x)
                np.testing.assert_array_equal(z, x)
    for k, v in nom.met.items():
        np.testing.assert_array_equal(up.met[k], v)


@pytest.fixture(scope="module")
def reco(signal, tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("ipreco")
    nom = run_detector(signal, d / "nom.parquet", keep_particles=False, progress=False).path
    up = run_detector(signal, d / "up.parquet", systematic="ip_res_up", keep_particles=False,
                      progress=False).path
    return nom, up


def test_leg_columns_carry_the_candidates_impact_parameters(signal, reco, matched):
    """The detector file's reco_d0/z0 (+ errors) of each paired leg are its candidate's (a
    lepton's own track, a tau_had's leading track); NaN for unpaired events; the named
    systematic changes nothing else in the file."""
    nom, up = reco
    t = _cols(nom)
    paired = t["reco_channel"] != "other"
    assert paired.sum() >= 10
    for leg in "pm":
        for q in ("d0", "z0", "d0_err", "z0_err"):
            v = t[f"reco_{q}_{leg}"]
            assert np.all(np.isnan(v[~paired]))
            assert np.all(np.isfinite(v[paired]))
        assert np.all(t[f"reco_d0_err_{leg}"][paired] > 0.009)
    # the legs matched to truth above: same numbers in the file
    by_leg = {(e, g): i for i, (e, g) in enumerate(zip(matched["evt"], matched["leg"],
                                                        strict=True))}
    found = 0
    for i in np.flatnonzero(paired):
        for leg in "pm":
            k = by_leg.get((i, leg))
            if k is not None and t[f"reco_origin_{leg}"][i] == 0:
                assert t[f"reco_d0_{leg}"][i] == matched["d0"][k]
                assert t[f"reco_z0_err_{leg}"][i] == matched["z0_err"][k]
                found += 1
    assert found >= 10
    u = _cols(up)
    assert read_metadata(up)["systematic"] == "ip_res_up"
    for name, v in t.items():
        if name.startswith(("reco_d0_p", "reco_d0_m", "reco_z0_p", "reco_z0_m")):
            continue
        np.testing.assert_array_equal(u[name], v, err_msg=name)
    for leg in "pm":
        assert not np.array_equal(u[f"reco_d0_{leg}"][paired], t[f"reco_d0_{leg}"][paired])
        np.testing.assert_array_equal(u[f"reco_d0_err_{leg}"], t[f"reco_d0_err_{leg}"])


# --------------------------------------------------------------------------------------------
# Schema 1.3.0 and older files


def _as_1_2_0(src: Path, dst: Path) -> Path:
    """``src`` rewritten as a schema 1.2.0 file (without the 1.3.0 columns)."""
    meta = json.loads(pq.ParquetFile(src).metadata.metadata[b"ditau"])
    meta["schema_version"] = "1.2.0"
    t = pq.read_table(src)
    new = {c.name for c in added_after("1.2.0")}
    write_events(t.select([c for c in t.column_names if c not in new]), dst, meta)
    return dst


def test_a_1_2_0_file_reads_and_runs_through_the_detector(signal, reco, tmp_path):
    """Older files stay readable: the 1.3.0 columns read as NaN (particle vertices as NaN
    lists as long as fs_px), also one by one; the detector runs on them, with NaN impact
    parameters and every other reco column as from the 1.3.0 file."""
    assert SCHEMA_VERSION == "1.3.0"
    old = _as_1_2_0(signal, tmp_path / "old.parquet")
    assert "pv_x" not in pq.ParquetFile(old).schema_arrow.names
    assert validate_file(old)[0] == "generated"
    t = read_events(old, kind="generated")
    assert np.all(np.isnan(t["pv_z"].to_numpy()))
    assert np.all(np.isnan(t["tau_dv_x_m"].to_numpy()))
    assert t["fs_vx"].combine_chunks().value_lengths().equals(
        t["fs_px"].combine_chunks().value_lengths())
    assert np.all(np.isnan(t["fs_vz"].combine_chunks().flatten().to_numpy()))
    alone = read_events(old, columns=["event_id", "fs_vy"])
    assert alone.column_names == ["event_id", "fs_vy"]
    assert alone["fs_vy"].combine_chunks().value_lengths().equals(
        t["fs_px"].combine_chunks().value_lengths())
    out = run_detector(old, tmp_path / "old_reco.parquet", keep_particles=True,
                       progress=False).path
    r = read_events(out, kind="detector")
    assert read_metadata(out)["schema_version"] == SCHEMA_VERSION
    assert np.all(np.isnan(r["reco_d0_p"].to_numpy()))
    assert np.all(np.isnan(r["pv_x"].to_numpy()))
    nom = _cols(reco[0])
    for name, v in _cols(out).items():
        if name in {c.name for c in added_after("1.2.0")}:
            continue
        np.testing.assert_array_equal(v, nom[name], err_msg=name)


def test_optional_columns_may_be_absent_from_a_current_file(signal, tmp_path):
    """A current-version table without the vertex and impact-parameter columns (a toy, a
    hand-made file) is a valid file of its kind; readers see NaN."""
    t = pq.read_table(signal)
    new = {c.name for c in added_after("1.2.0")}
    path = write_events(t.select([c for c in t.column_names if c not in new]),
                        tmp_path / "bare.parquet", {"stage": "generate"})
    assert validate_file(path)[0] == "generated"
    r = read_events(path, kind="generated")
    assert np.all(np.isnan(r["tau_dv_z_p"].to_numpy()))
    assert pa.types.is_list(r.schema.field("fs_vx").type)


# --------------------------------------------------------------------------------------------
# Delphes


def _with_ip(colls: dict[str, dict[str, list]], coll: str, rows: list[list[tuple]]) -> None:
    for i, f in enumerate(("D0", "DZ", "ErrorD0", "ErrorDZ")):
        colls[coll][f] = [[r[i] for r in ev] for ev in rows]


def test_delphes_impact_parameters_with_the_atlas_sign(tmp_path):
    """Where the file has D0/DZ/ErrorD0/ErrorDZ: leptons their own, tau_had legs their
    leading cone track's (not a softer or outside track), d0 = -D0 (Delphes'
    ParticlePropagator sign is the opposite of ATLAS'), z0 = DZ; an error of 0 is unknown."""
    colls = synthetic()
    _with_ip(colls, "Electron", [[(0.05, 1.0, 0.01, 0.05)], [], [], []])
    _with_ip(colls, "Muon", [[], [(0.2, 0.3, 0.01, 0.05)], [(-0.03, -2.0, 0.0, 0.05)], []])
    _with_ip(colls, "EFlowTrack", [
        # ev0: the 20 GeV core track, a 0.5 GeV core track, a 3 GeV track outside the cone
        [(0.1, 0.5, 0.02, 0.1), (5.0, 5.0, 1.0, 1.0), (7.0, 7.0, 1.0, 1.0),
         (0.05, 1.0, 0.01, 0.05), (9.0, 9.0, 9.0, 9.0)],
        [(0.3, 0.1, 0.01, 0.02), (-0.4, -0.2, 0.02, 0.03)],
        [(0.6, 0.7, 0.03, 0.04), (-0.03, -2.0, 0.0, 0.05)],
        [(1.0, 1.0, 0.1, 0.1), (2.0, 2.0, 0.2, 0.2), (3.0, 3.0, 0.3, 0.3)]])
    stream = read_delphes(write_delphes(tmp_path / "ip.root", colls))
    c = cols_of(stream)
    assert "from Electron, Muon, EFlowTrack" in stream.metadata["impact_parameters"]
    assert list(c["reco_channel"]) == ["erho", "pipi", "mupi", "other"]
    f32 = np.float32
    np.testing.assert_array_equal(c["reco_d0_p"][:3], -np.array([f32(0.05), f32(0.3),
                                                                   f32(0.6)], dtype=float))
    np.testing.assert_array_equal(c["reco_d0_m"][:3], -np.array([f32(0.1), f32(-0.4),
                                                                   f32(-0.03)], dtype=float))
    np.testing.assert_array_equal(c["reco_z0_m"][:3], np.array([f32(0.5), f32(-0.2),
                                                                 f32(-2.0)], dtype=float))
    np.testing.assert_array_equal(c["reco_d0_err_p"][:3], np.array([f32(0.01), f32(0.01),
                                                                     f32(0.03)], dtype=float))
    assert np.isnan(c["reco_d0_err_m"][2])  # ErrorD0 = 0: unknown
    assert all(np.isnan(c[f"reco_{q}_{leg}"][3]) for q in ("d0", "z0") for leg in "pm")
    assert np.all(np.isnan(c["pv_x"]))  # vertices are not read from Delphes


def test_delphes_file_without_impact_parameters_says_so(tmp_path):
    """A file without the branches imports as before, with NaN impact parameters and a note
    in the metadata (top level and per input) instead of a failure."""
    out = tmp_path / "noip.parquet"
    from ditau.detector.delphes import import_delphes

    summary = import_delphes(write_delphes(tmp_path / "noip.root", synthetic()), out)
    t = read_events(out, kind="detector")
    assert np.all(np.isnan(t["reco_d0_p"].to_numpy()))
    assert np.all(np.isnan(t["reco_z0_err_m"].to_numpy()))
    meta = read_metadata(out)
    assert meta["impact_parameters"].startswith("none: no D0/DZ/ErrorD0/ErrorDZ")
    assert "NaN" in meta["impact_parameters"]
    assert any("no impact parameters" in n for n in summary.metadata["inputs"][0]["notes"])
    assert meta["inputs"][0]["impact_parameters"] == meta["impact_parameters"]
