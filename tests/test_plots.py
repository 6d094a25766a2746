"""``ditau plot-inputs``: histogram content, kinematics, figures and bad input (fast)."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from ditau.cli.plots import plot_inputs_command
from ditau.physics import ANALYSIS_CHANNELS, M_PI, M_PI0, eta, mass, phi, pt
from ditau.plots.draw import Binning, PlotError
from ditau.plots.inputs import (
    event_weights,
    first_leg_is_p,
    input_panels,
    load_inputs,
    neutral_fraction,
    plot_inputs,
    residual_panels,
    truth_met,
    visible_p4,
)
from ditau.schema import BY_NAME, arrow_schema, write_events
from ditau.stats import hist_content, weighted_quantiles

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
XYZE = ("px", "py", "pz", "e")
MODE_MASS = {"pi": M_PI, "rho": 0.775, "e": 0.000511, "mu": 0.1057}
FILLED = ("pipi", "erho", "rhorho")  # channels of the synthetic sample


# --------------------------------------------------------------------------------------------
# Synthetic detector-level sample


def _p4(pt_: np.ndarray, eta_: np.ndarray, phi_: np.ndarray, m: np.ndarray) -> np.ndarray:
    px, py, pz = pt_ * np.cos(phi_), pt_ * np.sin(phi_), pt_ * np.sinh(eta_)
    return np.stack([px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + m**2)], axis=1)


def synthetic_table(n: int = 300, seed: int = 1, channels: tuple[str, ...] = FILLED,
                    with_reco: bool = True) -> pa.Table:
    """``n`` events in ``channels`` with physical, internally consistent momenta."""
    rng = np.random.default_rng(seed)
    ch = np.asarray(channels)[rng.integers(0, len(channels), n)]
    split = {"pipi": ("pi", "pi"), "erho": ("e", "rho"), "rhorho": ("rho", "rho"),
             "pirho": ("pi", "rho"), "mupi": ("mu", "pi")}
    a = np.array([split[c][0] for c in ch])
    b = np.array([split[c][1] for c in ch])
    swap = rng.random(n) < 0.5
    mode = {"p": np.where(swap, b, a), "m": np.where(swap, a, b)}
    cols: dict[str, np.ndarray] = {
        "event_id": np.arange(n, dtype=np.int64), "sample": np.full(n, "ztautau"),
        "weight": rng.uniform(0.5, 1.5, n), "gen_weight": np.ones(n),
        "truth_channel": ch, "hard_id1": np.full(n, 2, np.int32),
        "hard_id2": np.full(n, -2, np.int32), "quark_pz_sign": np.ones(n, np.int8),
        "m_hat": rng.normal(91.0, 3.0, n), "m_tautau": rng.normal(90.0, 3.0, n),
        "pt_tautau": rng.exponential(5.0, n), "nu_other_px": rng.normal(0, 1, n),
        "nu_other_py": rng.normal(0, 1, n), "vis_out_px": np.zeros(n), "vis_out_py": np.zeros(n),
        "spin_weight": np.ones(n),
        **{f"nul_{c}_{leg}": np.full(n, np.nan) for c in XYZE for leg in "pm"},
    }
    for leg, sign in (("p", 1), ("m", -1)):
        md = mode[leg]
        phi_, eta_ = rng.uniform(-np.pi, np.pi, n), rng.uniform(-2.3, 2.3, n)
        vis_pt = rng.uniform(22.0, 70.0, n)
        f_neu = np.where(md == "rho", rng.uniform(0.1, 0.9, n), 0.0)  # neutral energy fraction
        m_chg = np.array([M_PI if m == "rho" else MODE_MASS[m] for m in md])
        chg = _p4((1 - f_neu) * vis_pt, eta_, phi_, m_chg)
        neu = _p4(f_neu * vis_pt, eta_, phi_, np.where(md == "rho", M_PI0, 0.0))
        nu = _p4(rng.uniform(2.0, 30.0, n), eta_ + rng.normal(0, 0.1, n),
                 phi_ + rng.normal(0, 0.1, n), np.zeros(n))
        tau = chg + neu + nu
        reco_chg = chg * rng.normal(1.0, 0.02, n)[:, None]
        reco_neu = np.where((md == "rho")[:, None], neu * rng.normal(1.0, 0.1, n)[:, None],
                            np.nan)
        for i, c in enumerate(XYZE):
            cols[f"tau_{c}_{leg}"], cols[f"nu_{c}_{leg}"] = tau[:, i], nu[:, i]
            cols[f"chg_{c}_{leg}"], cols[f"neu_{c}_{leg}"] = chg[:, i], neu[:, i]
            cols[f"reco_chg_{c}_{leg}"], cols[f"reco_neu_{c}_{leg}"] = (reco_chg[:, i],
                                                                      reco_neu[:, i])
        is_rho = (md == "rho").astype(np.int8)
        cols |= {f"n_nu_{leg}": np.where(np.isin(md, ("e", "mu")), 2, 1).astype(np.int8),
                 f"n_charged_{leg}": np.ones(n, np.int8), f"n_pi0_{leg}": is_rho,
                 f"n_neutral_{leg}": is_rho,
                 f"chg_pdg_{leg}": np.where(md == "e", -11 * sign, 211 * sign).astype(np.int32),
                 f"decay_mode_{leg}": md, f"reco_mode_{leg}": md,
                 f"reco_charge_{leg}": np.full(n, sign, np.int8), f"reco_n_neu_{leg}": is_rho,
                 f"reco_origin_{leg}": np.zeros(n, np.int8)}
    mx, my = truth_met(cols)
    has_jet = rng.random(n) < 0.5
    jet = _p4(rng.uniform(20.0, 120.0, n), rng.uniform(-4.0, 4.0, n),
              rng.uniform(-np.pi, np.pi, n), np.full(n, 5.0))
    for j in (1, 2, 3):
        for i, c in enumerate(XYZE):
            cols[f"jet{j}_{c}"] = np.where(has_jet, jet[:, i], np.nan) if j == 1 \
                else np.full(n, np.nan)
    cols |= {"n_jets": has_jet.astype(np.int8), "met_x": mx + rng.normal(0, 5, n),
             "met_y": my + rng.normal(0, 5, n), "met_sumet": rng.uniform(100, 400, n),
             "met_cov_xx": np.full(n, 25.0), "met_cov_xy": np.zeros(n),
             "met_cov_yy": np.full(n, 25.0), "reco_channel": ch,
             "in_sr": rng.random(n) < 0.9, "reco_weight": rng.uniform(0.5, 1.0, n)}
    for t in ("ditau", "etau", "mutau", "single_e", "single_mu"):
        cols[f"trig_{t}"] = np.ones(n, bool)
    schema = arrow_schema(*(("id", "truth", "reco") if with_reco else ("id", "truth")))
    # the optional columns (vertices, impact parameters: schema 1.3.0) are left out
    schema = pa.schema([f for f in schema if not BY_NAME[f.name].optional])
    assert set(schema.names) <= set(cols), set(schema.names) - set(cols)
    return pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in schema},
                    schema=schema)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    table = synthetic_table()
    path = tmp_path_factory.mktemp("plots") / "reco.parquet"
    write_events(table, path, metadata={"stage": "test", "config": {"sqrt_s": 13000.0}},
                 require=("id", "truth", "reco"))
    return path, table


@pytest.fixture(scope="module")
def plotted(sample, tmp_path_factory) -> tuple[list[Path], list[str], Path, list[dict]]:
    notes: list[str] = []
    out = tmp_path_factory.mktemp("figs") / "new" / "dir"
    before = dict(mpl.rcParams)
    labels: list[dict] = []
    import ditau.plots.draw

    real_label = ditau.plots.draw.draw_label

    def spy(ax, label=None, *args, **kwargs):
        labels.append({"label": label, **kwargs})
        return real_label(ax, label, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ditau.plots.draw, "draw_label", spy)
        files = plot_inputs(sample[0], out, dpi=30, note=notes.append)  # all seven channels
    assert dict(mpl.rcParams) == before, "plotting leaked style into the global rcParams"
    return files, notes, out, labels


# --------------------------------------------------------------------------------------------
# Pure functions


def test_hist_content_hand_checked() -> None:
    x = [0.5, 1.5, 1.5, 2.5, -1.0, 10.0, np.nan, 0.2]
    w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, np.inf]
    edges = [0.0, 1.0, 2.0, 3.0]
    sumw, sumw2 = hist_content(x, w, edges)  # under/overflow folded; NaN and inf dropped
    np.testing.assert_allclose(sumw, [1 + 5, 2 + 3, 4 + 6])
    np.testing.assert_allclose(sumw2, [1 + 25, 4 + 9, 16 + 36])
    sumw, sumw2 = hist_content(x, w, edges, fold=False)
    np.testing.assert_allclose(sumw, [1, 5, 4])
    np.testing.assert_allclose(sumw2, [1, 13, 16])
    sumw, _ = hist_content([0.5, 2.5], 2.0, edges)  # scalar weight broadcasts
    np.testing.assert_allclose(sumw, [2, 0, 2])


def test_binning_ranges() -> None:
    np.testing.assert_allclose(Binning(4, -1.0, 1.0).edges(), [-1.0, -0.5, 0.0, 0.5, 1.0])
    # hi from the data: 99.5 % quantile 995 rounded up to 1000
    np.testing.assert_allclose(Binning(5, 0.0, None).edges(np.arange(1001.0), [np.nan]),
                               np.linspace(0.0, 1000.0, 6))
    # symmetric: |median| + 2 (q84 - q16) = 2 x 1.36 = 2.72 -> 3, or the cap
    np.testing.assert_allclose(Binning(2, None, None).edges([-1.0, 0.0, 1.0, np.inf]),
                               [-3.0, 0.0, 3.0])
    np.testing.assert_allclose(Binning(2, None, None, cap=2.0).edges([-1.0, 0.0, 1.0]),
                               [-2.0, 0.0, 2.0])
    np.testing.assert_allclose(Binning(2, None, None).edges([]), [-1.0, 0.0, 1.0])


def test_weighted_quantiles() -> None:
    np.testing.assert_allclose(weighted_quantiles([4, 1, 3, 2], 1.0, [0.5]), [2.5])
    # mid-point CDF: 0 at 0.125, 10 at 0.625 -> q=0.5 is 7.5
    np.testing.assert_allclose(weighted_quantiles([10.0, 0.0, np.nan], [3, 1, 1], [0.5]), [7.5])
    assert np.isnan(weighted_quantiles([np.nan], [1.0], [0.5])).all()


def test_kinematics() -> None:
    """The plots' kinematics are the four-vector layer's (ditau.physics), on (n, 4) arrays."""
    p4 = np.array([[3.0, 4.0, 0.0, 13.0], [0.0, 1.0, 1.0, 2.0], [-1.0, 0.0, 0.0, 1.0]])
    px, py, pz = p4[:, 0], p4[:, 1], p4[:, 2]
    np.testing.assert_allclose(pt(px, py), [5.0, 1.0, 1.0])
    np.testing.assert_allclose(eta(px, py, pz), [0.0, np.arcsinh(1.0), 0.0])
    np.testing.assert_allclose(phi(px, py), [np.arctan2(4, 3), np.pi / 2, np.pi])
    np.testing.assert_allclose(mass(p4), [12.0, np.sqrt(2.0), 0.0])


def test_visible_neutral_and_met() -> None:
    cols = {f"{p}_{c}_{leg}": np.array([v]) for p, v in
            (("chg", 1.0), ("neu", 2.0), ("nu", 4.0), ("reco_chg", 1.5), ("reco_neu", np.nan))
            for c in XYZE for leg in ("p", "m")}
    cols |= {"nu_other_px": np.array([0.5]), "nu_other_py": np.array([-0.5])}
    np.testing.assert_allclose(visible_p4(cols, "p", "truth"), [[3.0] * 4])
    np.testing.assert_allclose(visible_p4(cols, "m", "reco"), [[1.5] * 4])  # NaN neutral = 0
    np.testing.assert_allclose(neutral_fraction(cols, "p", "truth"), [2.0 / 3.0])
    np.testing.assert_allclose(neutral_fraction(cols, "p", "reco"), [0.0])
    mx, my = truth_met(cols)
    np.testing.assert_allclose([mx[0], my[0]], [8.5, 7.5])
    cols["nu_px_m"] = np.array([np.nan])  # no tau on that leg: contributes nothing
    np.testing.assert_allclose(truth_met(cols)[0], [4.5])


def test_leg_order() -> None:
    cols = {f"reco_{p}_{c}_{leg}": np.array([v, v2]) for p in ("chg", "neu")
            for c in XYZE for leg, v, v2 in (("p", 1.0, 5.0), ("m", 2.0, 1.0))}
    cols |= {"reco_mode_p": np.array(["rho", "e"]), "reco_mode_m": np.array(["e", "rho"])}
    np.testing.assert_array_equal(first_leg_is_p(cols, "erho"), [False, True])  # e leg first
    np.testing.assert_array_equal(first_leg_is_p(cols, "rhorho"), [False, True])  # leading pT


def test_panels_weights_and_values(sample) -> None:
    cols, meta = load_inputs(sample[0])
    assert meta["config"]["sqrt_s"] == 13000.0
    mask = (cols["reco_channel"] == "erho") & cols["in_sr"]
    sub = {k: v[mask] for k, v in cols.items()}
    w = sub["weight"] * sub["reco_weight"]
    panels = {p.key: p for p in input_panels(sub, "erho", w)}
    # every event enters the folded leg-pT histogram once, with weight x reco_weight
    sumw, sumw2 = hist_content(panels["leg1_pt"].reco, panels["leg1_pt"].reco_w,
                               panels["leg1_pt"].binning.edges())
    assert sumw.sum() == pytest.approx(w.sum())
    assert sumw2.sum() == pytest.approx((w**2).sum())
    # leg 1 of erho is the electron: no neutral part, truth pT = chg pT of the e leg
    is_e_p = sub["reco_mode_p"] == "e"
    e_pt = np.where(is_e_p, np.hypot(sub["chg_px_p"], sub["chg_py_p"]),
                    np.hypot(sub["chg_px_m"], sub["chg_py_m"]))
    np.testing.assert_allclose(panels["leg1_pt"].truth, e_pt)
    np.testing.assert_allclose(panels["met"].reco, np.hypot(sub["met_x"], sub["met_y"]))
    # one hadronic (rho) leg per erho event; reco fraction within [0, 1)
    assert len(panels["neu_frac"].reco) == mask.sum()
    assert np.all((panels["neu_frac"].reco > 0) & (panels["neu_frac"].reco < 1))
    assert np.isnan(panels["jet1_pt"].reco).sum() == np.sum(sub["n_jets"] == 0)
    res = {p.key: p for p in residual_panels(sub, "erho", w)}
    med = weighted_quantiles(res["leg1_pt_res"].reco, w, [0.5])[0]
    assert abs(med) < 0.01  # 2 % smearing of the electron around truth


# --------------------------------------------------------------------------------------------
# Figures


def test_plot_inputs_files(plotted) -> None:
    files, notes, out, _ = plotted
    names = sorted(p.name for p in files)
    expected = sorted([f"inputs_{c}.png" for c in FILLED] + [f"residuals_{c}.png" for c in FILLED])
    assert names == expected
    for p in files:
        assert p.parent == out and p.is_file()
        assert p.read_bytes()[:8] == PNG_MAGIC
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    assert notes == [f"channel {c}: no signal-region events, skipped"
                     for c in ("pirho", "epi", "mupi", "murho")]


def test_no_pyplot_figures_left(plotted) -> None:
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_experiment_neutral_label(plotted) -> None:
    files, _, _, labels = plotted
    assert len(labels) == len(files)  # one label per figure
    for kw in labels:  # ditau's own simulation, sqrt(s) from the file's metadata
        lab = kw["label"]
        assert lab.experiment == "ditau" and "ATLAS" not in lab.experiment
        assert lab.left == "Simulation, ATLAS-like detector" and lab.lumi is None
        assert lab.com == pytest.approx(13.0)


def test_signal_region_only(sample, tmp_path) -> None:
    table = sample[1]
    ch = np.asarray(table["reco_channel"])
    in_sr = np.asarray(table["in_sr"]) & (ch != "pipi")  # no pipi event in the SR
    table = table.set_column(table.schema.get_field_index("in_sr"), "in_sr", pa.array(in_sr))
    notes: list[str] = []
    assert plot_inputs(table, tmp_path, channels=["pipi"], note=notes.append) == []
    assert notes == ["channel pipi: no signal-region events, skipped"]
    assert list(tmp_path.iterdir()) == []


def test_event_weights() -> None:
    cols = {"weight": np.array([2.0, 3.0]), "reco_weight": np.array([0.5, 1.0])}
    np.testing.assert_allclose(event_weights(cols), [1.0, 3.0])
    np.testing.assert_allclose(event_weights(cols, weighted=False), [1.0, 1.0])


def test_table_input(sample) -> None:
    from_path, _ = load_inputs(sample[0])
    from_table, meta = load_inputs(sample[1])
    assert meta == {}
    assert from_table.keys() == from_path.keys()
    for k, v in from_path.items():
        np.testing.assert_array_equal(from_table[k], v)
    assert set(ANALYSIS_CHANNELS) == {"pipi", "pirho", "rhorho", "epi", "mupi", "erho", "murho"}
    assert ANALYSIS_CHANNELS == ANALYSIS_CHANNELS  # from the one channel registry


# --------------------------------------------------------------------------------------------
# Bad input


def test_no_reco_group(tmp_path) -> None:
    truth_only = synthetic_table(n=20, with_reco=False)
    path = write_events(truth_only, tmp_path / "truth.parquet", metadata={"stage": "generate"},
                        require=("id", "truth"))
    with pytest.raises(PlotError, match=r"no detector-level.*ditau detector"):
        plot_inputs(path, tmp_path / "out")
    with pytest.raises(PlotError, match=r"no detector-level.*ditau detector"):
        plot_inputs(truth_only, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_channel(sample, tmp_path) -> None:
    with pytest.raises(PlotError, match=r"unknown channel\(s\) \['tautau'\].*pipi, pirho, "
                                        r"rhorho, epi, mupi, erho, murho"):
        plot_inputs(sample[0], tmp_path, channels=["pipi", "tautau"])


def test_out_is_a_file(sample, tmp_path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(PlotError, match="not a directory"):
        plot_inputs(sample[0], f, channels=["pipi"])


# --------------------------------------------------------------------------------------------
# Command line


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False)
    app.command("plot-inputs")(plot_inputs_command)

    @app.callback()
    def _main() -> None:  # keep plot-inputs a named subcommand
        pass

    return app


def test_cli(sample, tmp_path, monkeypatch) -> None:
    import ditau.plots.inputs

    def fake_draw(panels, path, *args, **kwargs):  # rendering is tested above; keep this fast
        assert len(panels) > 0
        path.write_bytes(PNG_MAGIC)
        return path

    monkeypatch.setattr(ditau.plots.inputs, "draw_panels", fake_draw)
    runner = CliRunner()
    res = runner.invoke(_app(), ["plot-inputs", str(sample[0]), "-o", str(tmp_path),
                                 "-c", "erho,murho"])
    assert res.exit_code == 0, res.output
    assert "note: channel murho: no signal-region events, skipped" in res.output
    assert f"wrote {tmp_path / 'inputs_erho.png'}" in res.output
    assert (tmp_path / "residuals_erho.png").read_bytes()[:8] == PNG_MAGIC

    res = runner.invoke(_app(), ["plot-inputs", str(sample[0]), "-o", str(tmp_path),
                                 "-c", "bogus"])
    assert res.exit_code == 2
    assert "error: " in res.output and "['bogus']" in res.output  # the CLI or the registry
    assert "murho" in res.output

    res = runner.invoke(_app(), ["plot-inputs", str(sample[0]), "-o", str(tmp_path / "q"),
                                 "--channel", "murho", "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"0 figure(s) in {tmp_path / 'q'}"  # no notes when quiet

    res = runner.invoke(_app(), ["plot-inputs", str(tmp_path / "missing.parquet")])
    assert res.exit_code == 2
    assert "error:" in res.output and "no such file" in res.output
