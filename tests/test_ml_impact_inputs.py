"""Track impact parameters as ML inputs (issue #16, item 3; ``ModelConfig.impact_parameters``).

What is proved: the features of real detector-level events (Pythia through ``ditau
detector``) are the documented transforms of the file's columns, on the legs' charged objects
only, and carry the tau lifetime (|d0|/sigma well above a prompt track's); the signs under
the augmentations derived from the perigee definition d0 = (y px - x py)/pT (rotation about
the beam: invariant; rotation by pi about x: d0, z0 -> -d0, -z0) hold for the detector's helix
impact parameters and for the encoded features (augmented features = features of the
augmented event); a tiny model with the option trains, predicts and exports to ONNX; files
without impact parameters are refused with the file and columns named; the option is off by
default, recorded in the model file, set from YAML and the CLI, and leaves the shipped
``ditau-cpu-v1`` as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from ditau.cli import app  # noqa: E402
from ditau.detector import impact  # noqa: E402
from ditau.detector import resolution as res  # noqa: E402
from ditau.detector.run import run_detector  # noqa: E402
from ditau.generate import GenerateConfig, run  # noqa: E402
from ditau.generate.tau_filter import parse_tau_filter  # noqa: E402
from ditau.ml.features import (  # noqa: E402
    FEATURE_SET_ID,
    IP_COLUMNS,
    IP_FEATURE_SET_ID,
    IP_FEATURES,
    IP_SLOTS,
    N_FEATURES,
    N_IP_FEATURES,
    augment,
    compute_stats,
    encode,
    extract,
    ip_features,
    rotate_events,
    rotate_x_pi,
    rotate_z,
)
from ditau.ml.infer import EXTRA_COLUMNS, model_columns, predict, resolve_model  # noqa: E402
from ditau.ml.io import ModelFileError, TrainedModel, load_model, read_blob, write_blob  # noqa: E402
from ditau.ml.model import ModelConfig, NeutrinoModel  # noqa: E402
from ditau.ml.synthetic import write_synthetic  # noqa: E402
from ditau.ml.train import TrainConfig, train  # noqa: E402
from ditau.physics import pt_eta  # noqa: E402
from ditau.provenance import RUN_ID, run_id  # noqa: E402
from ditau.schema import SchemaError, read_events, write_events  # noqa: E402
from test_ml_parametrisation import perfect_detector_table, tiny_train_config  # noqa: E402

torch.set_num_threads(1)
runner = CliRunner()
TINY = {"d_model": 16, "n_blocks": 1, "n_heads": 2, "d_head": 16, "head_blocks": 1}
BZ = 2.0  # T, the detector's solenoid


# --- samples ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reco_ip(tmp_path_factory) -> Path:
    """800 Pythia Z -> tau tau events (full physics, taus forced into pi, rho, e, mu, the
    generator-level SR filter) through ``ditau detector``: ~50 paired events with impact
    parameters (path)."""
    d = tmp_path_factory.mktemp("mlip")
    gen = d / "gen.parquet"
    run(GenerateConfig(events=800, seed=43, events_per_job=400, tau_filter=parse_tau_filter("sr"),
                       force_decays=("pi", "rho", "e", "mu")), gen, workers=2, progress=False)
    return run_detector(gen, d / "reco.parquet", keep_particles=False, progress=False).path


def _leg_ip(cols: dict[str, np.ndarray], leg: str, bz: float, mirror: bool = False
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True (d0, z0) of the leg's charged product from the truth vertices and its pT, |eta|;
    ``mirror``: of the event rotated by pi about x, (x, y, z) -> (x, -y, -z)."""
    s = np.array([1.0, -1.0, -1.0]) if mirror else np.ones(3)
    dv = np.stack([cols[f"tau_dv_{c}_{leg}"] - cols[f"pv_{c}"] for c in "xyz"], 1) * s
    p = np.stack([cols[f"chg_{c}_{leg}"] for c in ("px", "py", "pz")], 1) * s
    q = np.full(len(p), 1.0 if leg == "p" else -1.0)  # the tau+ leg's product is positive
    d0, z0 = impact.impact_parameters(*dv.T, *p.T, q, bz=bz)
    pt, eta = pt_eta(*p.T)
    return d0, z0, np.stack([pt, np.abs(eta)], 1)


def perfect_table_with_ip(cols: dict[str, np.ndarray], *, smear: bool = True, bz: float = BZ,
                          mirror: bool = False, seed: int = 0) -> pa.Table:
    """:func:`perfect_detector_table` of Pythia truth plus the charged products' impact
    parameters from the true tau decay vertices (the detector's helix PCA; with ``smear`` the
    detector's ATLAS-like resolution, else the true values with those errors); ``mirror``:
    of the events rotated by pi about x (only the impact-parameter columns are mirrored)."""
    t = perfect_detector_table(cols)
    rng = np.random.default_rng(seed)
    for leg in ("p", "m"):
        d0, z0, pe = _leg_ip(cols, leg, bz, mirror)
        s_d0, s_z0 = res.d0_resolution(*pe.T), res.z0_resolution(*pe.T)
        k = 1.0 if smear else 0.0
        new = {f"reco_d0_{leg}": d0 + k * s_d0 * rng.normal(size=len(d0)),
               f"reco_z0_{leg}": z0 + k * s_z0 * rng.normal(size=len(d0)),
               f"reco_d0_err_{leg}": s_d0, f"reco_z0_err_{leg}": s_z0}
        for name, v in new.items():
            t = t.append_column(name, pa.array(v))
    return t


@pytest.fixture(scope="module")
def perfect_ip(forced4) -> pa.Table:
    """1 200 Pythia events (pi, rho, e, mu), perfect detector, smeared impact parameters."""
    return perfect_table_with_ip(forced4[0])


@pytest.fixture(scope="module")
def perfect_ip_file(perfect_ip, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("perfectip") / "perfect_ip.parquet"
    settings = {"perfect_detector": "forced4", "impact_parameters": "truth vertices, smeared"}
    return write_events(perfect_ip, path, {"stage": "detector", "sample": "pythia-perfect-ip",
                                           RUN_ID: run_id("perfect-ip", settings)})


def _without_ip(table: pa.Table, *, drop: bool = False) -> pa.Table:
    """``table`` with the impact-parameter columns all NaN (``drop``: removed)."""
    if drop:
        return table.drop_columns(list(IP_COLUMNS))
    for c in IP_COLUMNS:
        table = table.set_column(table.column_names.index(c), c,
                                 pa.array(np.full(table.num_rows, np.nan)))
    return table


def _tiny_ip_model(table: pa.Table, seed: int = 0, **cfg: object) -> TrainedModel:
    torch.manual_seed(seed)
    c = ModelConfig(**{**TINY, "impact_parameters": True, "sample_steps": 2, **cfg})
    stats = compute_stats(extract(table, targets=True))
    return TrainedModel(NeutrinoModel(c).eval(), c, stats, FEATURE_SET_ID)


# --- feature values on detector events ---------------------------------------------------------


def _expected_ip_features(t: pa.Table, rows: np.ndarray, leg: str) -> np.ndarray:
    """The documented transforms, written out independently of the package (numpy)."""
    col = {q: t[f"reco_{q}_{leg}"].to_numpy()[rows] for q in ("d0", "z0", "d0_err", "z0_err")}
    p = np.stack([t[f"reco_chg_{c}_{leg}"].to_numpy()[rows] for c in ("px", "py", "pz")], 1)
    sin_theta = np.hypot(p[:, 0], p[:, 1]) / np.linalg.norm(p, axis=1)
    return np.stack([
        np.sign(col["d0"]) * np.log(1 + np.abs(col["d0"]) / 0.010),
        np.sign(col["z0"]) * np.log(1 + np.abs(col["z0"] * sin_theta) / 0.010),
        np.clip(col["d0"] / col["d0_err"], -50, 50) / 10,
        np.clip(col["z0"] / col["z0_err"], -50, 50) / 10,
        np.ones(len(rows))], 1)


def test_features_and_flags_on_detector_events(reco_ip):
    """The detector file's d0/z0 (+ errors) of each leg's charged object become the 5 extra
    features of that object (values as documented), zeros and flag 0 for neutrals and jets;
    the base features are unchanged; the tau lifetime shows: median |d0|/sigma(d0) about 1.5,
    against 0.67 for prompt tracks."""
    t = read_events(reco_ip)
    ev = extract(t, impact_parameters=True, source=str(reco_ip))
    rows = np.flatnonzero(ev.usable)
    assert len(rows) >= 25 and ev.ip is not None and ev.has_ip is not None
    paired = t["reco_channel"].to_numpy(zero_copy_only=False) != "other"
    assert np.array_equal(ev.usable, extract(t).usable)  # every paired leg has its IPs
    assert np.all(ev.has_ip[rows][:, list(IP_SLOTS)])
    others = [s for s in range(7) if s not in IP_SLOTS]
    assert not ev.has_ip[:, others].any() and np.all(ev.ip[:, others] == 0)
    assert not ev.has_ip[~paired].any()  # no legs, no impact parameters
    stats = compute_stats(extract(t, targets=True))
    b = ev.subset(rows).to_batch(dtype=torch.float64)
    x, coords, cond = encode(b, stats, impact_parameters=True)
    x0, coords0, cond0 = encode(b, stats)
    assert x.shape == (len(rows), 7, N_FEATURES + N_IP_FEATURES) and len(IP_FEATURES) == 5
    assert torch.equal(x[..., :N_FEATURES], x0) and torch.equal(coords, coords0)
    assert torch.equal(cond, cond0)
    f = x[..., N_FEATURES:].numpy()
    for slot, leg in zip(IP_SLOTS, ("p", "m"), strict=True):
        np.testing.assert_allclose(f[:, slot], _expected_ip_features(t, rows, leg), atol=1e-12)
        assert np.all(np.abs(f[:, slot, 2:4]) <= 5.0)  # clipped significances
    assert np.all(f[:, others] == 0)
    # the tau lifetime is in the inputs: |d0|/sigma of both legs (3 samples of this size:
    # median 1.4-1.6, 26-33 % above 3) against prompt Gaussian tracks (0.67, 0.27 %)
    sig = np.abs(np.concatenate([f[:, s, 2] for s in IP_SLOTS])) * 10.0
    print(f"median |d0|/sigma {np.median(sig):.2f}, fraction > 3: {np.mean(sig > 3):.2f}")
    assert np.median(sig) > 1.0 and np.mean(sig > 3) > 0.1


def test_legs_without_impact_parameters_are_refused_not_zero_filled(reco_ip):
    """Per event: a leg without impact parameters (NaN, or an error not > 0) makes the event
    unusable with the leg named; per file: none at all (NaN everywhere, as a 1.2.0 file reads,
    or the columns absent) is a SchemaError naming the source and the columns."""
    t = read_events(reco_ip)
    ev = extract(t, impact_parameters=True)
    i, j = np.flatnonzero(ev.usable)[:2]
    d = {c: t[c].to_numpy(zero_copy_only=False).copy() for c in t.column_names}
    d["reco_d0_p"][i] = np.nan
    d["reco_z0_err_m"][j] = 0.0
    cut = extract(pa.table(d), impact_parameters=True)
    assert not cut.usable[i] and not cut.usable[j]
    assert cut.reason[i].startswith("no track impact parameters for the tau+ leg")
    assert "tau- leg" in cut.reason[j]
    assert cut.usable.sum() == ev.usable.sum() - 2
    assert extract(pa.table(d)).usable[[i, j]].all()  # a model without them does not care
    for bad in (_without_ip(t), _without_ip(t, drop=True)):
        with pytest.raises(SchemaError, match="reco_d0_p") as err:
            extract(bad, impact_parameters=True, source="old.parquet")
        assert str(err.value).startswith("old.parquet: the ML model uses track impact param")


# --- augmentation signs -------------------------------------------------------------------------


def test_impact_parameter_signs_under_the_augmentation_rotations():
    """From d0 = (y px - x py)/pT: the rotation by pi about x (y, z, py, pz -> -y, -z, -py,
    -pz) gives d0 -> -d0 and z0 -> -z0; the detector's helix impact parameters do so exactly
    when the field is rotated with the event (B_z -> -B_z), and in the fixed 2 T field up to
    a curvature term far below the resolution for tau decays; rotations about the beam axis
    leave both unchanged."""
    rng = np.random.default_rng(5)
    n = 500
    v = rng.normal(0, 2.0, (n, 3))  # decay vertex - PV, mm
    p = rng.normal(0, 15.0, (n, 3))
    p[:, :2] *= np.maximum(1.0, 5.0 / np.hypot(p[:, 0], p[:, 1]))[:, None]  # pT >= 5 GeV
    q = rng.choice([-1.0, 1.0], n)
    s = np.array([1.0, -1.0, -1.0])
    d0, z0 = impact.impact_parameters(*v.T, *p.T, q, bz=0.0)
    np.testing.assert_allclose(d0, (v[:, 1] * p[:, 0] - v[:, 0] * p[:, 1])
                               / np.hypot(p[:, 0], p[:, 1]), atol=1e-12)
    d0f, z0f = impact.impact_parameters(*(v * s).T, *(p * s).T, q, bz=0.0)
    np.testing.assert_allclose(d0f, -d0, atol=1e-12)
    np.testing.assert_allclose(z0f, -z0, atol=1e-12)
    d0, z0 = impact.impact_parameters(*v.T, *p.T, q, bz=BZ)
    d0f, z0f = impact.impact_parameters(*(v * s).T, *(p * s).T, q, bz=-BZ)
    np.testing.assert_allclose(d0f, -d0, atol=1e-12)
    np.testing.assert_allclose(z0f, -z0, atol=1e-12)
    # In the fixed field the rotated event is not the exact image: to first order in the
    # curvature kappa = q c B / pT, d0 + d0' = -kappa w^2 and z0 + z0' = 2 kappa u w pz/pT
    # (w, u: the vertex along and across the track in the transverse plane). Tau-like
    # decays (tracks of pT 15-50 GeV, 2 mm mean flight, the track 1/gamma ~ 0.07 rad off
    # it): median below 0.1 um, 99 % below 2 um, against the 10 um d0 resolution.
    p[:, :2] *= (rng.uniform(15.0, 50.0, n) / np.hypot(p[:, 0], p[:, 1]))[:, None]
    dirn = p / np.linalg.norm(p, axis=1)[:, None] + rng.normal(0, 0.07, (n, 3))
    tv = dirn / np.linalg.norm(dirn, axis=1)[:, None] * rng.exponential(2.0, n)[:, None]
    d0t, z0t = impact.impact_parameters(*tv.T, *p.T, q, bz=BZ)
    d0f, z0f = impact.impact_parameters(*(tv * s).T, *(p * s).T, q, bz=BZ)
    pt = np.hypot(p[:, 0], p[:, 1])
    kappa = q * impact.C_GEV_PER_T_MM * BZ / pt
    w = (tv[:, 0] * p[:, 0] + tv[:, 1] * p[:, 1]) / pt  # along the track
    u = (tv[:, 0] * p[:, 1] - tv[:, 1] * p[:, 0]) / pt  # across it (= -d0 of a straight line)
    np.testing.assert_allclose(d0f + d0t, -kappa * w**2, atol=1e-8)
    np.testing.assert_allclose(z0f + z0t, 2 * kappa * u * w * p[:, 2] / pt, atol=1e-8)
    assert np.median(np.abs(d0f + d0t)) < 1e-4 and np.quantile(np.abs(d0f + d0t), 0.99) < 2e-3
    a = rng.uniform(0, 2 * np.pi, n)
    c, sn = np.cos(a), np.sin(a)
    d0, z0 = impact.impact_parameters(*v.T, *p.T, q, bz=BZ)

    def rot(x: np.ndarray) -> np.ndarray:
        return np.stack([c * x[:, 0] - sn * x[:, 1], sn * x[:, 0] + c * x[:, 1], x[:, 2]], 1)

    d0r, z0r = impact.impact_parameters(*rot(v).T, *rot(p).T, q, bz=BZ)
    np.testing.assert_allclose(d0r, d0, atol=1e-12)
    np.testing.assert_allclose(z0r, z0, atol=1e-12)


def test_features_of_the_augmented_events_are_the_augmented_features(forced4):
    """Covariance: rotate_x_pi of the batch gives the impact-parameter features of the events
    rotated by pi about x (impact parameters recomputed from the rotated truth vertices and
    momenta, the field rotated with them): the four values change sign, the flag not; a
    rotation about the beam (rotate_z, the canonical frame, rotate_events) changes none.
    The same through encode and through augment's random rotations."""
    cols = forced4[0]
    base = perfect_table_with_ip(cols, smear=False)
    ev = extract(base, targets=True, impact_parameters=True)
    rows = np.flatnonzero(ev.usable)
    assert len(rows) > 700
    b = ev.subset(rows).to_batch(dtype=torch.float64)
    f = ip_features(b)
    assert torch.all(f[:, list(IP_SLOTS), 4] == 1) and bool((f[..., 0] != 0).any())
    # the mirrored events, built from the geometry: momenta and truth vertices rotated
    mirrored = perfect_table_with_ip(cols, smear=False, bz=-BZ, mirror=True)
    d = {c: mirrored[c].to_numpy(zero_copy_only=False) for c in mirrored.column_names}
    for c in list(d):
        if c.endswith(("_py_p", "_py_m", "_pz_p", "_pz_m")) or c in ("met_y",):
            d[c] = -d[c]
    for j in (1, 2, 3):
        d[f"jet{j}_py"], d[f"jet{j}_pz"] = -d[f"jet{j}_py"], -d[f"jet{j}_pz"]
    ev_m = extract(pa.table(d), targets=True, impact_parameters=True).subset(rows)
    flip = rotate_x_pi(b, torch.ones(len(rows), dtype=torch.bool))
    assert torch.allclose(flip.p4, torch.as_tensor(ev_m.p4), atol=1e-9)
    assert torch.allclose(flip.ip, torch.as_tensor(ev_m.ip), atol=1e-12)
    fm = ip_features(ev_m.to_batch(dtype=torch.float64))
    assert torch.allclose(ip_features(flip), fm, atol=1e-9)
    sign = torch.tensor([-1.0, -1.0, -1.0, -1.0, 1.0], dtype=torch.float64)
    assert torch.allclose(fm, f * sign, atol=1e-9)
    # only the flipped events change
    some = torch.arange(len(rows)) % 3 == 0
    fs = ip_features(rotate_x_pi(b, some))
    assert torch.allclose(fs, torch.where(some[:, None, None], f * sign, f), atol=1e-12)
    # rotations about the beam axis: invariant (torch, numpy and the canonical frame)
    angle = torch.linspace(0.2, 6.0, len(rows), dtype=torch.float64)
    assert torch.allclose(ip_features(rotate_z(b, angle)), f, atol=1e-12)  # pT rounding
    r = rotate_events(ev.subset(rows), angle.numpy())
    assert np.array_equal(r.ip, ev.ip[rows]) and np.array_equal(r.has_ip, ev.has_ip[rows])
    stats = compute_stats(ev)
    x, _, _ = encode(rotate_z(b, angle), stats, impact_parameters=True)
    assert torch.allclose(x[..., N_FEATURES:], f, atol=1e-12)

    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    aug = augment(b, g1, rotate=True, reflect=True)
    torch.rand(len(rows), generator=g2)  # augment's draws: the angles, then the flips
    flips = torch.rand(len(rows), generator=g2) < 0.5
    assert 0 < int(flips.sum()) < len(rows)
    want = torch.where(flips[:, None, None], f * sign, f)
    assert torch.allclose(ip_features(aug), want, atol=1e-12)


# --- model, training, inference, export ---------------------------------------------------------


def test_option_is_off_by_default_recorded_and_set_from_yaml_and_cli(tmp_path):
    """ModelConfig.impact_parameters: False by default and for files written before it
    existed; round trip through to_dict; non-bool refused; the body's input width follows it;
    ``ditau train --impact-parameters`` / ``--no-impact-parameters`` replace the YAML's."""
    assert ModelConfig().impact_parameters is False
    cfg = ModelConfig(**TINY, impact_parameters=True)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    old = ModelConfig(**TINY).to_dict()
    del old["impact_parameters"]  # a model file written before the option (ditau-cpu-v1)
    assert ModelConfig.from_dict(old).impact_parameters is False
    with pytest.raises(ValueError, match="impact_parameters"):
        ModelConfig(impact_parameters="yes")  # type: ignore[arg-type]
    assert NeutrinoModel(cfg).body.embed[0].in_features == N_FEATURES + N_IP_FEATURES == 17
    assert NeutrinoModel(ModelConfig(**TINY)).body.embed[0].in_features == N_FEATURES == 12
    yml = tmp_path / "c.yaml"
    yml.write_text(f"model: {json.dumps({**TINY, 'impact_parameters': True})}\n"
                   "batch_size: 16\nwarmup_steps: 1\neval_every: 2\nthreads: 1\n"
                   "patience: null\n")
    assert TrainConfig.from_yaml(yml).model.impact_parameters is True
    data = write_synthetic(tmp_path / "ip.parquet", 120, seed=2, impact_parameters=True)
    args = ["train", str(yml), "--data", str(data), "--max-steps", "3", "--device", "cpu", "-q"]
    r = runner.invoke(app, [*args, "-o", str(tmp_path / "on")])
    assert r.exit_code == 0, r.output
    tm = load_model(tmp_path / "on" / "model.pt")
    assert tm.config.impact_parameters is True
    assert read_blob(tmp_path / "on" / "model.pt", "model")["ip_feature_set"] == IP_FEATURE_SET_ID
    assert tm.data["files"][0]["no_ip"] == 0
    assert model_columns(tm) == (*EXTRA_COLUMNS, *IP_COLUMNS)
    r = runner.invoke(app, [*args, "-o", str(tmp_path / "off"), "--no-impact-parameters"])
    assert r.exit_code == 0, r.output
    tm = load_model(tmp_path / "off" / "model.pt")
    assert tm.config.impact_parameters is False and model_columns(tm) == EXTRA_COLUMNS
    assert "ip_feature_set" not in read_blob(tmp_path / "off" / "model.pt", "model")
    # training data without impact parameters: the file and the columns are named
    plain = write_synthetic(tmp_path / "plain.parquet", 120, seed=2)
    r = runner.invoke(app, ["train", str(yml), "--data", str(plain), "-o", str(tmp_path / "x"),
                            "--max-steps", "3", "--device", "cpu", "-q"])
    assert r.exit_code != 0 and "plain.parquet" in r.output and "reco_d0_p" in r.output


def test_model_file_with_other_impact_parameter_features_is_refused(tmp_path):
    data = write_synthetic(tmp_path / "ip.parquet", 40, seed=3, impact_parameters=True)
    tm = _tiny_ip_model(pq.read_table(data))
    from ditau.ml.io import save_model

    path = save_model(tmp_path / "m.pt", tm.model.state_dict(), tm.config, tm.stats,
                      train_config={}, data={})
    assert load_model(path).config.impact_parameters
    payload = read_blob(path, "model")
    payload["ip_feature_set"] = "ip0-000000000000"
    write_blob(tmp_path / "other.pt", "model", payload)
    with pytest.raises(ModelFileError, match="impact-parameter features 'ip0-"):
        load_model(tmp_path / "other.pt")


def test_tiny_model_with_impact_parameters_trains_predicts_and_refuses_files_without(
        perfect_ip_file, tmp_path):
    """300 steps on ~1 000 Pythia events with impact parameters from the true tau decay
    vertices: the loss decreases, the candidates are finite and reproducible; an event whose
    leg lacks impact parameters gets a reason instead of candidates; a table without them is
    a clear error, not a prediction from zeros."""
    res = train(tiny_train_config(perfect_ip_file, tmp_path / "run", impact_parameters=True),
                progress=False)
    lines = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    losses = [json.loads(x)["loss"] for x in lines if "loss" in json.loads(x)]
    assert np.mean(losses[-3:]) < 0.8 * losses[0], losses
    tm = load_model(res.model_path)
    assert tm.config.impact_parameters and tm.model.body.n_features == 17
    table = pq.read_table(perfect_ip_file)
    p = predict(table, model=tm, candidates=3, device="cpu", seed=2)
    assert len(p.rows) > 800 and np.all(np.isfinite(p.nu)) and np.all(np.isfinite(p.m_point))
    again = predict(table.slice(0, 200), model=tm, candidates=3, device="cpu", seed=2)
    n0 = len(again.rows)
    assert np.allclose(again.nu, p.nu[:n0], atol=1e-9)
    # the impact parameters matter to the model: other values, other candidates
    d = {c: table[c].to_numpy(zero_copy_only=False).copy() for c in table.column_names}
    d["reco_d0_p"] = -d["reco_d0_p"]
    other = predict(pa.table(d), model=tm, candidates=3, device="cpu", seed=2)
    assert not np.allclose(other.nu, p.nu, atol=1e-3)
    d["reco_d0_p"][p.rows[0]] = np.nan
    cut = predict(pa.table(d), model=tm, candidates=3, device="cpu", seed=2)
    assert p.rows[0] not in cut.rows and len(cut.rows) == len(p.rows) - 1
    assert "no track impact parameters for the tau+ leg" in cut.reason[p.rows[0]]
    for bad in (_without_ip(table), _without_ip(table, drop=True)):
        with pytest.raises(SchemaError, match=r"reco_d0_p.*reco_z0_err_m") as err:
            predict(bad, model=tm, candidates=2, device="cpu", source="delphes.parquet")
        assert "delphes.parquet" in str(err.value)


def test_onnx_export_with_impact_parameters(perfect_ip, tmp_path):
    """Both layouts export with the wider object features and agree with PyTorch; the
    metadata names the features."""
    pytest.importorskip("onnxruntime")
    from ditau.ml.export import compare_onnx, export_onnx, read_metadata

    tm = _tiny_ip_model(perfect_ip, seed=4)
    paths = export_onnx(tm, tmp_path / "m.onnx")
    assert compare_onnx(paths, tm) < 1e-4
    meta = read_metadata(paths[0])
    assert meta["ip_feature_set"] == IP_FEATURE_SET_ID and meta["object_features"][-5:] == list(
        IP_FEATURES) and meta["model_config"]["impact_parameters"] is True
    split = export_onnx(tm, tmp_path / "s.onnx", split=True)
    assert compare_onnx(split, tm) < 1e-4


def test_shipped_model_is_without_impact_parameters():
    """ditau-cpu-v1 reads as a model without the option (its candidates are checked against
    the recorded ones in test_ml_parametrisation), needs no impact-parameter column, and its
    file has no impact-parameter feature id."""
    tm = resolve_model("ditau-cpu-v1", "cpu")
    assert tm.config.impact_parameters is False and tm.model.body.n_features == N_FEATURES
    assert model_columns("ditau-cpu-v1") == EXTRA_COLUMNS
    # the default, ditau-cpu-v2, reads them
    assert model_columns(None) == (*EXTRA_COLUMNS, *IP_COLUMNS)
    assert "ip_feature_set" not in read_blob(tm.path, "model")
    assert "impact_parameters" not in read_blob(tm.path, "model")["model_config"]


def test_reconstruct_cli_reads_the_impact_parameters_an_ip_model_needs(tmp_path):
    """``ditau reconstruct --method ml`` with a model trained with impact parameters, on a
    file that has them (the runner reads the columns ditau.reconstruct.ml.columns_for
    names)."""
    data = write_synthetic(tmp_path / "ip.parquet", 60, seed=6, impact_parameters=True)
    tm = _tiny_ip_model(pq.read_table(data), seed=6)
    from ditau.ml.io import save_model

    path = save_model(tmp_path / "m.pt", tm.model.state_dict(), tm.config, tm.stats,
                      train_config={}, data={})
    r = runner.invoke(app, ["reconstruct", str(data), "--method", "ml", "--model", str(path),
                            "-o", str(tmp_path / "rec.parquet")])
    assert r.exit_code == 0, r.output
