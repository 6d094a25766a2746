"""Issue #16 item 4: training without the m_Z prior (flat mass weighting) and model selection
on the rest-frame spin analysers' resolution. The analyser figure is checked against the
tomography's independent truth analysers, its limits (0 for the true neutrinos, growing with
the neutrino error), the weights against the flat target, and the training options end to
end (deterministic, resumable, selection follows the figure)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")

from ditau.ml.analyser_metric import (  # noqa: E402
    analyser_components_of,
    analyser_resolution,
    flat_mass_weights,
)
from ditau.ml.data import load_data  # noqa: E402
from ditau.ml.device import DistInfo  # noqa: E402
from ditau.ml.features import extract  # noqa: E402
from ditau.ml.io import load_model, read_blob  # noqa: E402
from ditau.ml.synthetic import write_synthetic  # noqa: E402
from ditau.ml.train import TrainConfig, _Trainer, train  # noqa: E402
from ditau.schema import SchemaError, read_metadata, write_events  # noqa: E402
from ditau.tomography.analysers import from_truth  # noqa: E402
from test_ml_parametrisation import perfect_detector_table  # noqa: E402
from test_ml_train import tiny_config  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def perfect(forced4):
    """Pythia events (taus forced into pi, rho, e, mu) seen by a perfect detector: the point
    cloud's visible objects are the true decay products."""
    table = perfect_detector_table(forced4[0])
    ev = extract(table, targets=True)
    keep = np.flatnonzero(ev.usable)
    return table.take(keep), ev.subset(keep)


def test_analyser_components_agree_with_the_tomography_truth_analysers(perfect):
    """Visible products + true neutrinos, put on the tau mass shell, give the same rest-frame
    analysers as the tomography's, which start from Pythia's tau momenta (independent path)."""
    table, ev = perfect
    h = analyser_components_of(ev.p4, ev.target)
    ref = from_truth(table, rho="visible")
    ok = ref.valid
    assert ok.sum() > 500
    # 5e-4: the record's tau momentum equals the sum of its daughters' to ~1e-6 relative, and
    # the boost into the tau rest frame (gamma ~ 25) magnifies that (median difference 2e-5)
    assert np.allclose(h[ok, 0], ref.h_p[ok], atol=5e-4)
    assert np.allclose(h[ok, 1], ref.h_m[ok], atol=5e-4)
    assert np.median(np.abs(h[ok, 0] - ref.h_p[ok])) < 1e-4


def test_analyser_resolution_is_zero_for_the_truth_and_grows_with_the_error(perfect):
    _, ev = perfect
    assert analyser_resolution(ev.p4, ev.target, ev.target) == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(5)
    noise = rng.normal(size=ev.target.shape)
    figs = [analyser_resolution(ev.p4, ev.target + s * noise, ev.target)
            for s in (0.5, 2.0, 8.0)]
    assert 0 < figs[0] < figs[1] < figs[2] < 2, figs
    # the analysers need the direction at the 1/gamma scale: 2 GeV of noise per component is
    # already a large effect (|p_nu| ~ 20 GeV)
    assert figs[1] > 0.05
    with pytest.raises(ValueError, match="N, 7, 4"):
        analyser_resolution(ev.p4[:, :3], ev.target, ev.target)


def test_flat_mass_weights_flatten_and_are_capped():
    rng = np.random.default_rng(1)
    # a Z-peak-like sample on a falling continuum
    m = np.concatenate([rng.normal(91.0, 3.0, 20000), 40 + rng.exponential(30.0, 4000)])
    m = m[(m > 40) & (m < 250)]
    w = flat_mass_weights(m, (40.0, 250.0), 5.0, 1e9)
    assert w.mean() == pytest.approx(1.0)
    h, _ = np.histogram(m, bins=np.arange(40, 255, 5), weights=w)
    filled = np.histogram(m, bins=np.arange(40, 255, 5))[0] > 0
    assert np.allclose(h[filled], h[filled][0])  # every filled bin carries the same weight
    capped = flat_mass_weights(m, (40.0, 250.0), 5.0, 20.0)
    assert capped.max() / capped.min() == pytest.approx(20.0)
    with pytest.raises(ValueError, match="event index 2"):
        flat_mass_weights(np.array([80.0, 90.0, np.nan]), (40.0, 250.0), 5.0, 20.0)
    with pytest.raises(ValueError, match="mass_range"):
        flat_mass_weights(m, (90.0, 40.0), 5.0, 20.0)


def test_config_refuses_bad_options():
    with pytest.raises(ValueError, match="mass_weighting"):
        TrainConfig(mass_weighting="peak")
    with pytest.raises(ValueError, match="select_on"):
        TrainConfig(select_on="m_tautau")
    with pytest.raises(ValueError, match="mass_range"):
        TrainConfig(mass_range=(100.0, 50.0))
    cfg = TrainConfig.from_dict({"mass_weighting": "flat", "mass_range": [50, 200]})
    assert cfg.mass_range == (50.0, 200.0)


@pytest.fixture(scope="module")
def mass_file(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("mflat") / "m.parquet", 600, seed=7)


def test_flat_mass_weighting_draws_a_flatter_spectrum(mass_file, tmp_path):
    """The trainer's batches under ``mass_weighting: flat`` follow the weights (reproducibly),
    the recipe records them, and the drawn m_tautau spectrum is flatter than the sample's."""
    m_all = pq.read_table(mass_file)["m_tautau"].to_numpy()
    lo, hi = np.percentile(m_all, [5, 95])
    cfg = tiny_config(mass_file, tmp_path / "r", mass_weighting="flat", mass_bin=2.0,
                      mass_range=(float(lo), float(hi)), mass_max_ratio=50.0)
    tr = _Trainer(cfg, DistInfo(), torch.device("cpu"), progress=False)
    tr.load()
    assert tr.recipe["mass_weighting"]["kind"] == "flat"
    assert 0 < tr.recipe["mass_weighting"]["effective_events"] < len(tr.train)
    idx = torch.cat([tr.batch_indices(s) for s in range(200)]).numpy()
    assert np.array_equal(idx[:32], tr.batch_indices(0).numpy())  # keyed by the step
    train_ev, _, _ = load_data(cfg)
    m = train_ev.m_true
    bins = np.linspace(lo, hi, 9)
    plain = np.histogram(m, bins)[0] / len(m)
    drawn = np.histogram(m[idx], bins)[0] / len(idx)
    assert np.std(drawn) < 0.6 * np.std(plain), (plain, drawn)
    # a file without the truth mass is refused when the weighting needs it
    t = pq.read_table(mass_file).drop(["m_tautau"])
    write_events(t, tmp_path / "nomass.parquet", read_metadata(mass_file))
    with pytest.raises(SchemaError, match="m_tautau"):
        load_data(tiny_config(tmp_path / "nomass.parquet", tmp_path / "x",
                              mass_weighting="flat"))


def test_mass_weighted_run_resumes_bitwise(mass_file, tmp_path):
    kw = {"mass_weighting": "flat", "mass_range": (60.0, 120.0)}
    full = train(tiny_config(mass_file, tmp_path / "full", **kw), progress=False)
    cfg = tiny_config(mass_file, tmp_path / "cut", **kw)
    train(cfg, progress=False, _interrupt_after=10)
    resumed = train(cfg, resume=True, progress=False)
    assert resumed.step == full.step
    a = read_blob(tmp_path / "full" / "last.ckpt", "ckpt")["ema"]
    b = read_blob(tmp_path / "cut" / "last.ckpt", "ckpt")["ema"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_selection_on_the_analyser_figure(mass_file, tmp_path):
    """``select_on: analyser`` logs the analyser figure at every evaluation and keeps the
    model with the lowest one (not the lowest loss)."""
    cfg = tiny_config(mass_file, tmp_path / "run", select_on="analyser", max_steps=40,
                      eval_every=8, lr=3e-3, analyser_events=64)
    res = train(cfg, progress=False)
    figs = [h["val_analyser"] for h in res.history]
    assert len(figs) == 5 and all(np.isfinite(figs)) and all("val_loss" in h for h in res.history)
    assert res.best_val == pytest.approx(min(figs))
    assert res.best_step == res.history[int(np.argmin(figs))]["step"]
    tm = load_model(res.model_path)
    assert tm.info["select_on"] == "analyser"
    # the figure is the model's: recomputing it from the saved (best EMA) weights agrees
    tr = _Trainer(cfg, DistInfo(), torch.device("cpu"), progress=False)
    tr.load()
    tr.build()
    tr.ema.load_state_dict(tm.model.state_dict())
    assert tr.analyser_figure() == pytest.approx(res.best_val, rel=1e-6)


def test_a_sampler_of_another_objective_is_refused_and_the_cli_replaces_it(mass_file, tmp_path):
    """A config with the flow-matching sampler and the regression objective is refused when
    it is made (it used to fail only at the first sampling, inside the training); `ditau train
    --objective regression` on a flow-matching config uses the regression's own sampler."""
    import yaml
    from typer.testing import CliRunner

    from ditau.cli import app
    from ditau.ml.model import ModelConfig

    with pytest.raises(ValueError, match="'heun' is not a sampler of objective 'regression'"):
        ModelConfig(objective="regression", sampler="heun")
    cfg = tiny_config(mass_file, tmp_path / "unused", max_steps=4, select_on="analyser",
                      analyser_events=16, model={"sampler": "heun", "sample_steps": 8})
    path = tmp_path / "fm.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    r = CliRunner().invoke(app, ["train", str(path), "-o", str(tmp_path / "reg"),
                                 "--objective", "regression", "-q"])
    assert r.exit_code == 0, r.output
    assert "its default sampler replaces the config's 'heun'" in r.output
    tm = load_model(tmp_path / "reg" / "model.pt")
    assert tm.config.objective == "regression" and tm.config.sampler is None
