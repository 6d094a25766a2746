"""``ditau evaluate``: HWHM definition, residuals, resolution tables, plots, CLI, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import typer
from scipy.optimize import brentq
from typer.testing import CliRunner

from ditau.cli.evaluate import evaluate_command
from ditau.evaluate import (
    GAUSS_HWHM_PER_SIGMA,
    REFERENCE_CHANNELS,
    REFERENCE_ORDER,
    ResolutionError,
    evaluate_files,
    half_max,
    hwhm,
    peak,
    plot_resolution,
    residuals,
    resolution_table,
)
from ditau.provenance import ProvenanceWarning, identity
from ditau.reconstruct import INPUT_COLUMNS, inputs_from_table, recon_table, write_recon
from ditau.schema import group_columns, write_events

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LEGS = ("p", "m")
XYZ = ("px", "py", "pz")
KEYS = ("dpx_p", "dpy_p", "dpz_p", "dpx_m", "dpy_m", "dpz_m", "dm_tautau")


# --------------------------------------------------------------------------------------------
# HWHM


def test_gaussian_hwhm_is_sqrt_2ln2_sigma():
    assert GAUSS_HWHM_PER_SIGMA == pytest.approx(1.1774, abs=1e-4)
    x = np.random.default_rng(1).normal(0.5, 0.2, 200_000)
    assert hwhm(x) == pytest.approx(GAUSS_HWHM_PER_SIGMA * 0.2, rel=0.02)
    assert peak(x) == pytest.approx(0.5, abs=0.02 * 0.2)


def test_cauchy_hwhm_is_gamma():
    x = 2.0 + 0.3 * np.random.default_rng(2).standard_cauchy(200_000)
    assert hwhm(x) == pytest.approx(0.3, rel=0.02)
    assert peak(x) == pytest.approx(2.0, abs=0.02 * 0.3)


def test_asymmetric_gumbel_hwhm_and_mode():
    # Gumbel(mu, beta): mode mu, f/f_max = exp(1 - z - e^-z) = 1/2 at z + e^-z = 1 + ln 2.
    def g(z):
        return z + np.exp(-z) - 1.0 - np.log(2.0)

    beta, mu = 0.5, -1.0
    expected = beta * 0.5 * (brentq(g, 0.0, 10.0) - brentq(g, -5.0, 0.0))
    x = np.random.default_rng(3).gumbel(mu, beta, 200_000)
    hm = half_max(x)
    assert hm.hwhm == pytest.approx(expected, rel=0.02)
    assert hm.peak == pytest.approx(mu, abs=0.02 * expected)
    # The crossings are asymmetric about the mode: longer tail to the right.
    assert hm.right - hm.peak > 1.2 * (hm.peak - hm.left)
    assert hm.closed


def test_hwhm_is_shift_and_scale_covariant():
    x = np.random.default_rng(4).normal(0.0, 1.0, 20_000)
    assert hwhm(3.0 * x + 7.0) == pytest.approx(3.0 * hwhm(x), rel=1e-9)
    assert peak(3.0 * x + 7.0) == pytest.approx(3.0 * peak(x) + 7.0, rel=1e-9)


@pytest.mark.parametrize(("n", "lo", "hi"), [(3, 0.2, 3.0), (30, 0.7, 1.4), (100, 0.8, 1.25),
                                             (1000, 0.9, 1.1)])
def test_small_samples_give_sensible_finite_values(n, lo, hi):
    widths = np.array([hwhm(np.random.default_rng(s).normal(0.0, 1.0, n)) for s in range(20)])
    assert np.all(np.isfinite(widths)) and np.all(widths > 0)
    assert lo < np.median(widths) / GAUSS_HWHM_PER_SIGMA < hi


def test_empty_and_degenerate_input():
    assert np.isnan(hwhm([]))
    assert np.isnan(hwhm([np.nan, np.inf, -np.inf]))
    assert np.isnan(peak(np.array([])))
    assert hwhm([2.5]) == 0.0 and peak([2.5]) == 2.5
    assert hwhm(np.full(50, 0.1)) == 0.0


def test_zero_weight_and_non_finite_entries_are_ignored():
    x = np.random.default_rng(5).normal(0.0, 1.0, 50_000)
    junk = np.array([50.0, -80.0, 1e6, np.nan, np.inf])
    w = np.concatenate([np.ones_like(x), [0.0, 0.0, 0.0, 1.0, 1.0]])
    assert hwhm(np.concatenate([x, junk]), w) == hwhm(x)
    # Weights matter: weighting down one side of the peak moves the mode to the other side.
    assert abs(peak(x)) < 0.1
    assert 0.03 < peak(x, np.where(x < 0, 0.2, 1.0)) < 0.6


# --------------------------------------------------------------------------------------------
# Residuals


def _truth(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    d: dict[str, np.ndarray] = {"event_id": np.arange(100, 100 + n, dtype=np.int64)}
    for leg in LEGS:
        for c in XYZ:
            # |p| >= 5 GeV, random sign: no true value near 0.
            d[f"tau_{c}_{leg}"] = rng.choice([-1.0, 1.0], n) * rng.uniform(5.0, 50.0, n)
        p2 = sum(d[f"tau_{c}_{leg}"] ** 2 for c in XYZ)
        d[f"tau_e_{leg}"] = np.sqrt(p2 + 1.77686**2)
    d["m_tautau"] = rng.uniform(60.0, 120.0, n)
    return d


def _recon(ev: dict[str, np.ndarray], factor: np.ndarray | float, rows=None, status=None,
           candidate=None) -> dict[str, np.ndarray]:
    rows = np.arange(len(ev["event_id"])) if rows is None else np.asarray(rows)
    k = len(rows)
    f = np.broadcast_to(np.asarray(factor, dtype=float), (k,))
    d = {"event_id": ev["event_id"][rows], "method": np.full(k, "test"),
         "candidate": np.zeros(k, np.int16) if candidate is None else candidate,
         "rec_status": np.full(k, "ok", dtype=object) if status is None else status}
    for leg in LEGS:
        for c in (*XYZ, "e"):
            d[f"rec_tau_{c}_{leg}"] = ev[f"tau_{c}_{leg}"][rows] * f
    d["rec_m_tautau"] = ev["m_tautau"][rows] * f
    return d


def test_residuals_of_scaled_truth_are_exact():
    ev = _truth(20)
    rows = np.array([5, 1, 7, 3])  # recon in another order than the events
    res = residuals(ev, _recon(ev, 1.1, rows=rows))
    np.testing.assert_array_equal(res["row"], rows)
    np.testing.assert_array_equal(res["event_id"], ev["event_id"][rows])
    for key in KEYS:
        np.testing.assert_allclose(res[key], 0.1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res["m_rec"], 1.1 * ev["m_tautau"][rows])
    np.testing.assert_allclose(res["m_true"], ev["m_tautau"][rows])


def test_residuals_per_component_and_sign():
    ev = _truth(3)
    rec = _recon(ev, 1.0)
    rec["rec_tau_py_m"] = ev["tau_py_m"] * np.array([0.5, 1.0, 2.0])
    rec["rec_m_tautau"] = ev["m_tautau"] - 9.0
    res = residuals(ev, rec)
    np.testing.assert_allclose(res["dpy_m"], [-0.5, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(res["dpx_p"], 0.0, atol=1e-12)
    np.testing.assert_allclose(res["dm_tautau"], -9.0 / ev["m_tautau"], atol=1e-12)


def test_only_ok_rows_and_candidate_zero_unless_asked():
    ev = _truth(4)
    rows = np.array([0, 0, 1, 2, 3])
    status = np.array(["ok", "ok", "no_solution", "failed", "ok"], dtype=object)
    cand = np.array([0, 1, 0, 0, 0], np.int16)
    factor = np.array([1.1, 1.3, 1.1, 1.1, 1.2])
    rec = _recon(ev, 1.0, rows=rows, status=status, candidate=cand)
    for leg in LEGS:
        for c in XYZ:
            rec[f"rec_tau_{c}_{leg}"] = ev[f"tau_{c}_{leg}"][rows] * factor
    res = residuals(ev, rec)
    np.testing.assert_array_equal(res["event_id"], ev["event_id"][[0, 3]])
    np.testing.assert_allclose(res["dpz_p"], [0.1, 0.2], atol=1e-12)
    res_all = residuals(ev, rec, all_candidates=True)
    np.testing.assert_array_equal(res_all["candidate"], [0, 1, 0])
    np.testing.assert_allclose(res_all["dpz_p"], [0.1, 0.3, 0.2], atol=1e-12)


def test_unknown_event_ids_name_both_sources_and_count():
    ev = _truth(10)
    rec = _recon(ev, 1.0)
    rec["event_id"] = rec["event_id"] + 7  # 7 of 10 ids beyond the events' range
    with pytest.raises(ResolutionError) as exc:
        residuals(ev, rec, events_source="ev.parquet", recon_source="mmc.parquet")
    msg = str(exc.value)
    assert "mmc.parquet" in msg and "ev.parquet" in msg and "7 of 10" in msg


def test_missing_columns_and_duplicate_ids():
    ev = _truth(5)
    rec = _recon(ev, 1.0)
    del rec["rec_m_tautau"]
    with pytest.raises(ResolutionError, match=r"recon: missing column.*rec_m_tautau"):
        residuals(ev, rec)
    ev2 = _truth(5)
    ev2["event_id"][1] = ev2["event_id"][0]
    with pytest.raises(ResolutionError, match="not unique"):
        residuals(ev2, _recon(ev, 1.0))


# --------------------------------------------------------------------------------------------
# Table

SIGMA = {"pipi": 0.10, "erho": 0.20, "rhorho": 0.05}  # relative smearing per channel


def _smeared_sample(n_per: int = 120_000, seed: int = 7):
    """Events in three channels (plus some outside the SR) and a Gaussian-smeared method
    output (relative sigma per channel); every 4th erho event has no solution."""
    chans = np.repeat(list(SIGMA), n_per)
    n = len(chans)
    ev = _truth(n, seed)
    ev["reco_channel"] = chans
    ev["in_sr"] = np.arange(n) % 10 != 9  # 10 % outside the signal region
    rng = np.random.default_rng(seed + 1)
    sig = np.array([SIGMA[c] for c in chans])
    rec = _recon(ev, 1.0)
    for key in (*(f"rec_tau_{c}_{leg}" for leg in LEGS for c in XYZ), "rec_m_tautau"):
        rec[key] = rec[key] * (1.0 + sig * rng.standard_normal(n))
    status = np.full(n, "ok", dtype=object)
    status[(chans == "erho") & (np.arange(n) % 4 == 0)] = "no_solution"
    rec["rec_status"] = status
    return ev, rec


@pytest.fixture(scope="module")
def smeared_table():
    ev, rec = _smeared_sample()
    return resolution_table(ev, {"smear": rec}), ev


def test_table_recovers_gaussian_smearing(smeared_table):
    table, _ = smeared_table
    for ch, sigma in SIGMA.items():
        cell = table.cell(ch, "smear")
        expected = 100 * GAUSS_HWHM_PER_SIGMA * sigma
        for key in KEYS:  # ~1e5 entries per cell: statistical spread ~1.2 %
            assert cell.hwhm[key] == pytest.approx(expected, rel=0.04), (ch, key)
            assert abs(cell.peak[key]) < 0.05 * 100 * sigma
        assert np.mean(list(cell.hwhm.values())) == pytest.approx(expected, rel=0.015)


def test_table_counts_events_and_efficiency(smeared_table):
    table, ev = smeared_table
    chans = ev["reco_channel"]
    idx = np.arange(len(chans))
    for ch in SIGMA:
        sel = (chans == ch) & ev["in_sr"]
        cell = table.cell(ch, "smear")
        assert cell.n_events == sel.sum()
        failed = sel & (idx % 4 == 0) if ch == "erho" else np.zeros_like(sel)
        assert cell.n_ok == sel.sum() - failed.sum()
        assert cell.n_rows == cell.n_ok
    # Failures (even ids) all lie in the SR (odd ids % 10 == 9 are out): 1 - 0.25/0.9.
    assert table.cell("erho", "smear").efficiency == pytest.approx(1 - 0.25 / 0.9, abs=1e-4)
    assert table.cell("pipi", "smear").efficiency == 1.0
    empty = table.cell("mupi", "smear")
    assert empty.n_events == 0 and np.isnan(empty.efficiency)
    assert np.isnan(empty.hwhm["dm_tautau"])


def test_markdown_layouts(smeared_table):
    table, _ = smeared_table
    full = table.to_markdown()
    lines = [ln for ln in full.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["channel", "events", "eff (%)"]
    assert header[3:] == ["dp_x(tau+)", "dp_y(tau+)", "dp_z(tau+)", "dp_x(tau-)",
                          "dp_y(tau-)", "dp_z(tau-)", "dm_tautau"]
    rows = {r.strip("|").split("|")[0].strip(): [c.strip() for c in r.strip("|").split("|")]
            for r in lines[2:]}
    assert list(rows) == ["pi pi", "e pi", "mu pi", "pi rho", "e rho", "mu rho", "rho rho"]
    assert rows["mu pi"][1] == "0" and rows["mu pi"][2:] == ["n/a"] * 8
    assert float(rows["e rho"][2]) == pytest.approx(100 * (1 - 0.25 / 0.9), abs=0.06)
    assert float(rows["pi pi"][-1]) == pytest.approx(11.77, rel=0.03)

    mass = table.to_markdown("mass", reference=True)
    mlines = [ln for ln in mass.splitlines() if ln.startswith("| ")]
    assert [c.strip() for c in mlines[0].strip("|").split("|")] == \
        ["channel", "events", "dm_tautau smear", "ML (ref.)", "MMC (ref.)"]
    pipi = [c.strip() for c in mlines[2].strip("|").split("|")]
    assert pipi[0] == "pi pi" and pipi[3:] == ["7.94", "23.27"]
    with pytest.raises(ResolutionError, match="layout"):
        table.to_markdown("wide")


def test_methods_side_by_side_and_channel_selection():
    ev = _truth(400, seed=9)
    ev["reco_channel"] = np.where(np.arange(400) < 200, "epi", "murho")
    ev["in_sr"] = np.ones(400, bool)
    tab = resolution_table(ev, {"a": _recon(ev, 1.1), "b": _recon(ev, 0.8)},
                           channels=["murho", "epi"])
    assert tab.channels == ("epi", "murho")  # reference order
    assert tab.cell("murho", "b").peak["dpx_p"] == pytest.approx(-20.0, abs=1e-9)
    assert tab.cell("epi", "a").hwhm["dm_tautau"] == 0.0
    md = tab.to_markdown("full")
    assert "dp_x(tau+) a | dp_x(tau+) b" in md and "eff (%) a | eff (%) b" in md
    with pytest.raises(ResolutionError, match="unknown channel"):
        resolution_table(ev, {"a": _recon(ev, 1.1)}, channels=["pipi", "tautau"])
    del ev["in_sr"]
    with pytest.raises(ResolutionError, match="in_sr"):
        resolution_table(ev, {"a": _recon(ev, 1.1)})
    assert resolution_table(ev, {"a": _recon(ev, 1.1)}, only_sr=False).cell(
        "epi", "a").n_events == 200


def test_low_statistics_cells_are_marked():
    ev = _truth(30, seed=10)
    ev["reco_channel"] = np.full(30, "pipi")
    ev["in_sr"] = np.ones(30, bool)
    rec = _recon(ev, 1.0, rows=np.arange(5))  # 25 events absent from the output
    tab = resolution_table(ev, {"m": rec})
    assert tab.cell("pipi", "m").efficiency == pytest.approx(5 / 30)
    md = tab.to_markdown()
    # an HWHM from 5 events is no number (tomography.bounds / evaluate.resolution: N >= 20)
    assert "n/a (5 events)" in md and "25 selected event(s) absent" in md


def test_plots_are_png(tmp_path):
    ev = _truth(300, seed=11)
    ev["reco_channel"] = np.full(300, "erho")
    ev["in_sr"] = np.ones(300, bool)
    rec = _recon(ev, 1.0 + 0.1 * np.random.default_rng(1).standard_normal(300))
    tab = resolution_table(ev, {"fast mtt/v2": rec}, channels=["erho", "pipi"])
    written = plot_resolution(tab, tmp_path / "plots")
    assert [p.name for p in written] == ["residuals_fast_mtt_v2_erho.png", "mtautau_erho.png"]
    for p in written:
        assert p.read_bytes()[:8] == PNG_MAGIC
    assert not list((tmp_path / "plots").glob(".*"))  # no temporary files left


# --------------------------------------------------------------------------------------------
# CLI on files


def _detector_table(n: int, seed: int, first_id: int = 0) -> dict[str, np.ndarray]:
    """Events with the id, truth (tau, m_tautau) and reco columns the methods and the
    evaluation need; channels erho and rhorho, all in the signal region."""
    rng = np.random.default_rng(seed)
    ev = _truth(n, seed)
    ev["event_id"] = np.arange(first_id, first_id + n, dtype=np.int64)
    p4 = sum(np.stack([ev[f"tau_{c}_{leg}"] for c in (*XYZ, "e")], axis=1) for leg in LEGS)
    ev["m_tautau"] = np.sqrt(p4[:, 3] ** 2 - np.sum(p4[:, :3] ** 2, axis=1))
    ev.update({"sample": np.full(n, "ztautau"), "weight": np.ones(n), "gen_weight": np.ones(n)})
    for leg in LEGS:
        for part, f in (("chg", 0.6), ("neu", 0.2)):
            for c in XYZ:
                ev[f"reco_{part}_{c}_{leg}"] = f * ev[f"tau_{c}_{leg}"]
            ev[f"reco_{part}_e_{leg}"] = f * ev[f"tau_e_{leg}"]
    rho_rho = np.arange(n) % 2 == 0
    ev["reco_mode_p"] = np.where(rho_rho, "rho", "e")
    ev["reco_mode_m"] = np.full(n, "rho")
    for c in ("px", "py", "pz", "e"):  # electrons have no neutral part
        ev[f"reco_neu_{c}_p"] = np.where(rho_rho, ev[f"reco_neu_{c}_p"], np.nan)
    ev["reco_channel"] = np.where(rho_rho, "rhorho", "erho")
    ev["in_sr"] = np.ones(n, bool)
    ev["met_x"], ev["met_y"] = rng.normal(0.0, 20.0, (2, n))
    ev["met_sumet"] = np.full(n, 300.0)
    ev["met_cov_xx"] = ev["met_cov_yy"] = np.full(n, 40.0)
    ev["met_cov_xy"] = np.zeros(n)
    assert set(INPUT_COLUMNS) <= set(ev)
    return ev


def _detector_file(ev: dict[str, np.ndarray], path: Path, run: str) -> Path:
    """``ev`` as a complete detector-level file (the schema's id, truth and reco columns the
    table lacks filled with valid placeholders), with the run id ``run``."""
    n = len(ev["event_id"])
    cols = dict(ev)
    for c in group_columns("id", "truth", "reco"):
        if c.name in cols:
            continue
        if c.allowed is not None:
            cols[c.name] = np.full(n, c.allowed[-1], dtype=object)
        elif pa.types.is_boolean(c.dtype):
            cols[c.name] = np.zeros(n, bool)
        elif pa.types.is_string(c.dtype):
            cols[c.name] = np.full(n, "", dtype=object)
        else:
            cols[c.name] = pa.array(np.zeros(n), pa.float64()).cast(c.dtype)
    return write_events(pa.table(cols), path, {"stage": "detector", "run_id": run})


def _write_files(tmp_path: Path, n: int = 40) -> tuple[Path, Path, dict[str, np.ndarray]]:
    ev = _detector_table(n, seed=12)
    events = _detector_file(ev, tmp_path / "events.parquet", "detector-test12")
    inputs = inputs_from_table(ev)
    assert inputs.good.all()
    tau = {leg: np.stack([ev[f"tau_{c}_{leg}"] for c in (*XYZ, "e")], axis=1) * 1.1
           for leg in LEGS}
    status = np.where(np.arange(n) % 4 == 1, "no_solution", "ok").astype(object)  # erho only
    rec = recon_table("scaled", inputs, tau["p"], tau["m"], status)
    path = tmp_path / "scaled.parquet"
    write_recon(rec, path, {"method": "scaled", "input_identity": identity(events)})
    return events, path, ev


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(evaluate_command)
    return app


def test_cli_prints_table_and_writes_plots(tmp_path):
    events, recon, _ = _write_files(tmp_path)
    out = tmp_path / "eval"
    r = CliRunner().invoke(_app(), [str(events), "--recon", str(recon), "--out", str(out),
                                    "--channel", "erho"])
    assert r.exit_code == 0, r.output
    row = next([c.strip() for c in ln.strip("|").split("|")]
               for ln in r.output.splitlines() if ln.startswith("| e rho"))
    assert row[1] == "20" and row[2] == "50.0"  # 10 of 20 erho events are no_solution
    # Reco = 1.1 x truth: every residual is 0.1, so the HWHM is 0.
    assert row[3:10] == ["n/a (10 events)"] * 7  # 10 ok events: too few for an HWHM
    assert "ML (ref.)" in r.output and "wrote" in r.output
    assert (out / "table.md").read_text().startswith("HWHM")
    for name in ("residuals_scaled_erho.png", "mtautau_erho.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC


def test_cli_rejects_recon_from_another_file(tmp_path):
    events, _, _ = _write_files(tmp_path)
    other = _detector_table(40, seed=13, first_id=30)  # ids 30..69, events have 0..39
    inputs = inputs_from_table(other)
    tau = np.stack([other[f"tau_{c}_p"] for c in (*XYZ, "e")], axis=1)
    rec = recon_table("other", inputs, tau, tau, np.full(40, "ok", dtype=object))
    bad = tmp_path / "other.parquet"
    other_events = _detector_file(other, tmp_path / "other_events.parquet", "detector-test13")
    write_recon(rec, bad, {"input_identity": identity(other_events)})
    r = CliRunner().invoke(_app(), [str(events), "--recon", str(bad), "-q"])
    assert r.exit_code == 2
    err = r.stderr if hasattr(r, "stderr") else r.output
    assert "error:" in err and str(bad) in err and str(events) in err
    assert f"reconstructed from {other_events} (run detector-test13)" in err
    # forced: the evaluation's own event-id check still refuses the foreign ids
    with pytest.warns(ProvenanceWarning, match="--force"), \
            pytest.raises(ResolutionError, match="30 of 40"):
        evaluate_files(events, [bad], force=True, plots=False)


@pytest.mark.parametrize(("args", "message"), [
    (["--recon", "MISSING"], "no such file"),
    (["--channel", "pipi,tautau"], "['tautau']"),
])
def test_cli_user_errors(tmp_path, args, message):
    events, recon, _ = _write_files(tmp_path)
    full = [str(events), *(["--recon", str(recon)] if args[0] != "--recon" else [])]
    full += [str(tmp_path / a) if a == "MISSING" else a for a in args]
    r = CliRunner().invoke(_app(), full)
    assert r.exit_code == 2
    assert message in (r.stderr if hasattr(r, "stderr") else r.output)


def test_cli_needs_truth_and_reco_columns(tmp_path):
    ev = _truth(10)
    ev.update({"sample": np.full(10, "z"), "weight": np.ones(10), "gen_weight": np.ones(10)})
    events = write_events(pa.table(ev), tmp_path / "truth_only.parquet", {})
    _, recon, _ = _write_files(tmp_path)
    r = CliRunner().invoke(_app(), [str(events), "--recon", str(recon)])
    assert r.exit_code == 2
    assert "ditau detector" in (r.stderr if hasattr(r, "stderr") else r.output)


def test_reference_channel_order():
    assert REFERENCE_ORDER == ("pipi", "epi", "mupi", "pirho", "erho", "murho", "rhorho")
    assert REFERENCE_CHANNELS is REFERENCE_ORDER  # the old name is the registry's order
