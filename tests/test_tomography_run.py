"""The tomography stage end to end on a small generated sample: it reads the method outputs
of the reconstruct stage (never runs a method) and refuses files that are missing or belong
to other events."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from ditau.cli import app
from ditau.reconstruct import read_recon, reconstruct, write_recon
from ditau.schema import read_events, write_events
from ditau.tomography.report import to_markdown, write_report
from ditau.tomography.run import TomographyError, run_tomography

runner = CliRunner()


@pytest.fixture(scope="module")
def reco_files(signal_reco_tes, tmp_path_factory):
    """Nominal and tes_up event files with the FastMTT (and collinear) outputs on them."""
    nom, up = signal_reco_tes
    d = tmp_path_factory.mktemp("tomo_recon")

    def make(inp, name, method, **settings):
        return reconstruct(inp, d / f"{name}.parquet", method, only_sr=True, progress=False,
                           **settings).path

    return SimpleNamespace(nom=nom, up=up, dir=d, fastmtt=make(nom, "fastmtt", "fastmtt"),
                           fastmtt_up=make(up, "fastmtt_tes_up", "fastmtt"),
                           collinear=make(nom, "collinear", "collinear"), make=make)


def _no_method(*args, **kwargs):
    raise AssertionError("the tomography ran a reconstruction method")


def test_pipeline_calibrates_and_reports(reco_files, tmp_path, monkeypatch):
    import ditau.reconstruct.method
    import ditau.reconstruct.runner

    # the tomography reads method outputs: running a method here fails the test
    for mod in (ditau.reconstruct.method, ditau.reconstruct.runner, ditau.reconstruct):
        monkeypatch.setattr(mod, "make_method", _no_method, raising=False)
        monkeypatch.setattr(mod, "run_on_table", _no_method, raising=False)
    f = reco_files
    kw = dict(methods=("truth", "fastmtt"), recon={"fastmtt": f.fastmtt},
              variations={"tes_up": f.up}, variation_recon={"tes_up": {"fastmtt": f.fastmtt_up}},
              n_boot=3, seed=1, min_events=5)
    res = run_tomography(f.nom, **kw)
    assert set(res.methods) == {"truth", "fastmtt"}, res.notes
    truth = res.truth_inclusive["observables"]
    # 2000 produced events, polarimeter analysers: C_kk ~ 1 within a few sigma
    assert abs(truth.C[0, 0] - 1.0) < 4 * truth.C_err[0, 0] + 0.05
    # the LO expectation for the same (fiducial) events: at LO C_kk = 1 and C_rr = -C_nn for
    # every event (tomography.md; up to tau-mass terms ~ m_tau^2 / m^2 ~ 4e-4), so
    # D ~ (1 + 2 C_nn) / 3; the measured truth level agrees
    ex = res.truth_inclusive["expected"]
    c = ex["C"]
    assert c[0, 0] == pytest.approx(1.0, abs=1e-3) and c[1, 1] == pytest.approx(-c[2, 2],
                                                                               abs=2e-3)
    assert ex["D"] == pytest.approx((1.0 + 2.0 * c[2, 2]) / 3.0, abs=2e-3)
    assert 0.55 < ex["D"] < 1.0 and ex["n"] == truth.n
    q = res.truth_inclusive["quantum"]
    assert abs(q.d - ex["D"]) < 4 * q.d_err
    for r in res.methods.values():
        assert np.all(np.isfinite(r.calibrated)) and np.all(np.isfinite(r.truth))
        assert set(r.systematics) >= {"tes", "MC statistics (calibration)", "luminosity"}
        z = r.significance_no_mc.z_entanglement
        assert np.all(np.diff(z) >= -1e-9)  # more data never hurts
    # the calibration's MC statistics: the bootstrap covariance, so sigma_D(MC) is the direct
    # bootstrap of D (g^T cov g), not the fully correlated outer product of the spreads
    from ditau.tomography.significance import GRAD_D

    for r in res.methods.values():
        mc = r.systematics["MC statistics (calibration)"]
        assert np.shape(mc) == (3, 3) and np.allclose(mc, mc.T)
        row = next(x for x in r.impacts if x[0] == "MC statistics (calibration)")
        assert row[1] == pytest.approx(np.sqrt(GRAD_D @ mc @ GRAD_D))
    # the profile-likelihood measurement: two splits, our and the reference's yields, curves
    for fr in res.fits.values():
        assert {"split 0, ours yields", "split 1, ours yields",
                "split 0, reference yields", "split 1, reference yields"} <= set(fr.fits)
        lumis, zd, zb = fr.curves["ours, Asimov"]
        assert len(lumis) == len(zd) == len(zb) and fr.n_template_events > fr.n_data_events
        # the truth method keeps every selected event
    assert res.methods["truth"].efficiency == 1.0
    # a method that loses events says how many and why (FastMTT: analysers undefined)
    r = res.methods["fastmtt"]
    n_all = round(r.n_selected / r.efficiency)
    lost = [n for n in res.notes if n.startswith("fastmtt: ") and "without a measurement" in n]
    if r.n_selected < n_all:
        assert lost and lost[0].startswith(
            f"fastmtt: {n_all - r.n_selected} of {n_all} signal-region events without a "
            "measurement ("), res.notes
    else:
        assert not lost
    assert not any(n.startswith("truth: ") and "without a measurement" in n for n in res.notes)
    md = to_markdown(res)
    assert "Cross-check: calibration" in md and "| truth |" in md
    assert f"| LO expectation, these events | {truth.n} | {ex['D']:.3f} |" in md
    assert "Measurement: profile-likelihood fit" in md and set(res.fits) == {"truth", "fastmtt"}
    files = write_report(res, tmp_path / "rep")
    assert all(f.is_file() for f in files)
    # reproducible: same seed, same report
    assert to_markdown(run_tomography(f.nom, **kw)).split("\n", 3)[3] == md.split("\n", 3)[3]


def test_tomography_imports_no_reconstruction_method():
    """Importing the tomography (API and report) loads no reconstruction module and no ML:
    a fresh interpreter's sys.modules after the import."""
    code = ("import sys, ditau.tomography.run, ditau.tomography.report; "
            "print(sorted(m for m in sys.modules if m.startswith(('ditau.reconstruct', "
            "'ditau.ml', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]", out


def test_method_without_its_file_names_the_command(reco_files):
    f = reco_files
    with pytest.raises(TomographyError,
                       match=rf"method 'mmc' has no method-output file for {f.nom}.*"
                             rf"'ditau reconstruct {f.nom} -o FILE --method mmc --sr-only'.*"
                             r"--recon mmc=FILE"):
        run_tomography(f.nom, methods=("truth", "mmc"))
    with pytest.raises(TomographyError,
                       match=rf"method 'fastmtt' has no method-output file for the variation "
                             rf"'tes_up' \({f.up}\).*'ditau reconstruct {f.up} -o FILE --method "
                             r"fastmtt --sr-only'.*--variation-recon tes_up:fastmtt=FILE"):
        run_tomography(f.nom, recon={"fastmtt": f.fastmtt}, variations={"tes_up": f.up})
    # truth needs no file
    with pytest.raises(TomographyError, match="'truth' uses the generated taus"):
        run_tomography(f.nom, recon={"truth": f.fastmtt})


def test_method_output_of_other_events_is_refused(reco_files, tmp_path):
    f = reco_files
    # the nominal output given for the tes_up variation: same event_id, other visible momenta
    with pytest.raises(TomographyError,
                       match=rf"{f.fastmtt} does not belong to {f.up}: the visible momenta"):
        run_tomography(f.nom, recon={"fastmtt": f.fastmtt}, variations={"tes_up": f.up},
                       variation_recon={"tes_up": {"fastmtt": f.fastmtt}})
    # events of another sample (event_id not in the file)
    t = read_recon(f.fastmtt)
    other = tmp_path / "other.parquet"
    write_recon(t.set_column(0, "event_id", pa.compute.add(t["event_id"], 10**7)), other,
                {"method": "fastmtt"})
    with pytest.raises(TomographyError,
                       match=rf"{other} does not belong to {f.nom}: \d+ of its \d+ event_id "
                             rf"are not in that file.*ditau reconstruct {f.nom} -o FILE"):
        run_tomography(f.nom, recon={"fastmtt": other})
    # another method's output under this label
    with pytest.raises(TomographyError,
                       match=rf"{f.collinear} holds the output of method collinear, but it was "
                             rf"given as the fastmtt output for {f.nom}"):
        run_tomography(f.nom, recon={"fastmtt": f.collinear})


def test_ml_neutrino_sampling_reads_outputs_of_other_seeds(reco_files):
    pytest.importorskip("torch")
    f = reco_files
    ml = {s: f.make(f.nom, f"ml_seed{s}", "ml", candidates=4, seed=s, device="cpu")
          for s in (0, 7919, 15838)}
    ml_up = f.make(f.up, "ml_tes_up", "ml", candidates=4, device="cpu")
    kw = dict(methods=("truth", "ml"), recon={"ml": ml[0]}, variations={"tes_up": f.up},
              variation_recon={"tes_up": {"ml": ml_up}}, n_boot=2, seed=1, min_events=5,
              analysis="calibration", candidate_average=False)
    res = run_tomography(f.nom, nu_sampling_recon={"ml": [ml[7919], ml[15838]]}, **kw)
    assert "ml" in res.methods, res.notes
    r = res.methods["ml"]
    sd, share = r.nu_sampling
    # the spread of D over the noise seeds (on ~30 events its ratio to the statistical error
    # is itself noise, 0.2-4: only positivity is robust here)
    assert sd > 0 and share > 0 and np.isfinite(share)
    one = run_tomography(f.nom, nu_sampling_recon={"ml": [ml[7919]]}, **kw).methods["ml"]
    assert one.nu_sampling[0] > 0 and one.nu_sampling[0] != sd  # the given outputs are read
    assert np.all(np.isfinite(r.systematics["tes"])) and np.all(np.isfinite(r.calibrated))
    assert res.methods["truth"].nu_sampling is None
    assert "Neutrino sampling (ml)" in to_markdown(res)
    avg_res = run_tomography(f.nom, **{**kw, "candidate_average": True})
    avg = avg_res.methods["ml"]
    assert "ml: analysers averaged over its 4 sampled candidates per event" in \
        "\n".join(avg_res.notes)
    assert "ml: analysers of the point estimate" in "\n".join(res.notes)
    # averaging is the default
    dflt = {k: v for k, v in kw.items() if k != "candidate_average"}
    assert np.allclose(run_tomography(f.nom, **dflt).methods["ml"].raw, avg.raw)
    assert avg.nu_sampling is None  # no outputs of other seeds given
    assert np.all(np.isfinite(avg.calibrated)) and not np.allclose(avg.raw, r.raw)
    with pytest.raises(TomographyError, match=r"same ml seed \(0\) as .*no neutrino-sampling"):
        run_tomography(f.nom, nu_sampling_recon={"ml": [ml[0]]}, **kw)


def test_candidate_average_reaches_the_fit(reco_files):
    """Regression: --candidate-average averaged the calibration's products only; the
    profile-likelihood fit (moments of the analysers) still used the point estimate's."""
    pytest.importorskip("torch")
    from ditau.tomography.measurement import Observable
    from ditau.tomography.moments import observables
    from ditau.tomography.run import (
        _fit_inputs,
        detector_sample,
        method_sample,
        method_taus,
        n_candidates,
    )

    f = reco_files
    ml = read_recon(f.make(f.nom, "ml_avg", "ml", candidates=3, seed=0, device="cpu"))
    assert n_candidates(ml) == 3
    ev = read_events(f.nom)
    ev = ev.filter(pa.array(np.asarray(ev["in_sr"].to_pylist(), dtype=bool)))
    point = method_sample(ev, "ml", ml, "polarimeter")
    avg = method_sample(ev, "ml", ml, "polarimeter", candidate_average=True)
    assert point.obs is None and avg.obs is not None and avg.obs.shape == (len(ev), 16)
    each = [detector_sample(ev, *method_taus(ev, "ml", ml, candidate=c), "polarimeter")
            for c in (1, 2, 3)]
    ok = avg.valid
    assert ok.sum() > 10
    expect = np.mean([observables(s.h_p, s.h_m) for s in each], axis=0)
    np.testing.assert_allclose(avg.obs[ok], expect[ok], rtol=1e-12)
    x_pt, x_avg = _fit_inputs(ev, point, None, 2), _fit_inputs(ev, avg, None, 2)
    assert len(x_pt.obs) == 0 and len(x_avg.obs) == len(x_avg.u)
    obs = Observable("moments", ("murho", "erho", "mupi", "epi", "pirho", "rhorho", "pipi"))
    all_pt, all_avg = np.ones(len(x_pt.u), bool), np.ones(len(x_avg.u), bool)
    d_pt = obs.data(x_pt, all_pt, x_pt.weight)
    d_avg = obs.data(x_avg, all_avg, x_avg.weight)
    ch = max(d_avg.m, key=lambda c: d_avg.m[c][0])
    # the same events' counts, other (averaged) correlation moments
    assert d_avg.m[ch][0] > 0 and not np.allclose(d_avg.m[ch][1:], d_pt.m[ch][1:])


def test_cli_reads_method_outputs(reco_files, tmp_path):
    f = reco_files
    base = ["tomography", str(f.nom), "-o", str(tmp_path / "rep")]
    r = runner.invoke(app, [*base, "-m", "truth", "-m", "mmc"])
    assert r.exit_code == 2 and "method 'mmc' has no method-output file" in r.output
    r = runner.invoke(app, [*base, "--variation", f"tes_up={f.up}",
                            "--variation-recon", f"tes_up-fastmtt={f.fastmtt_up}"])
    assert r.exit_code == 2 and "VARIATION:METHOD=FILE" in r.output
    r = runner.invoke(app, [*base, "--recon", f"fastmtt={f.fastmtt}",
                            "--variation", f"tes_up={f.up}",
                            "--variation-recon", f"tes_up:fastmtt={f.fastmtt_up}",
                            "--boot", "2", "--seed", "1"])
    assert r.exit_code == 0, r.output
    # read and used (34 signal-region events: too few for the default --min-events, noted)
    assert "tomography: fastmtt" in r.output and "fastmtt: only" in r.output
    assert (tmp_path / "rep" / "summary.md").is_file()


def test_file_without_reco_columns_is_named(signal_particles, tmp_path):
    t = read_events(signal_particles, columns=["event_id", "sample", "weight", "gen_weight"])
    write_events(t, tmp_path / "bare.parquet", {"stage": "generate"})
    with pytest.raises(TomographyError, match=r"bare.parquet: no .*column 'in_sr'"):
        run_tomography(tmp_path / "bare.parquet")


def test_a_variation_must_be_the_same_events_with_the_same_random_numbers(
        signal_particles, signal_reco_tes, tmp_path):
    from ditau.detector.config import DetectorConfig
    from ditau.detector.run import run_detector
    from ditau.tomography.run import check_variation

    nom, up = signal_reco_tes
    t_nom, t_up = read_events(nom), read_events(up)
    check_variation(nom, t_nom, up, t_up)  # the real tes_up variation passes
    other_seed = run_detector(signal_particles, tmp_path / "tes_up_seed2.parquet",
                              DetectorConfig(seed=2), systematic="tes_up",
                              keep_particles=False, progress=False).path
    with pytest.raises(TomographyError, match=r"detector settings differ from .*nom\.parquet "
                                              r"beyond the systematic handles: seed = 2 "
                                              r"against 1"):
        check_variation(nom, t_nom, other_seed, read_events(other_seed))
    fewer = t_up.slice(0, t_up.num_rows - 5)
    with pytest.raises(TomographyError, match="5 event ids in one file only"):
        check_variation(nom, t_nom, up, fewer)


def test_cli_names_unknown_methods_and_missing_files(reco_files, tmp_path):
    r = CliRunner().invoke(app, ["tomography", str(tmp_path / "none.parquet"), "-o",
                                 str(tmp_path / "t")])
    assert r.exit_code == 2 and f"error: {tmp_path / 'none.parquet'}: no such file" in r.output
    nom = reco_files.nom
    r = CliRunner().invoke(app, ["tomography", str(nom), "-o", str(tmp_path / "t"),
                                 "-m", "mmcc"])
    assert r.exit_code == 2
    assert "--method: unknown value(s) ['mmcc']; choose from truth, collinear, fastmtt, mmc, ml" \
        in r.output
    for bad, what in ((["--analysis", "nonsense"], "--analysis"),
                      (["--observable", "x"], "--observable"), (["--bins", "7"], "--bins"),
                      (["--boot", "1"], "--boot"),
                      (["--analysis", "calibration", "--observable", "signs"], "no fit")):
        r = CliRunner().invoke(app, ["tomography", str(nom), "-o", str(tmp_path / "t"), *bad])
        assert r.exit_code == 2 and what in r.output, (bad, r.output)


def test_event_weights_include_the_spin_weight():
    from ditau.schema import event_weights, spin_weights

    t = pa.table({"weight": [2.0, 2.0], "reco_weight": [1.0, 0.5], "spin_weight": [1.5, 0.25]})
    assert np.allclose(event_weights(t), [3.0, 0.25])
    assert np.allclose(spin_weights(t.drop_columns(["spin_weight"])), [1.0, 1.0])


def test_detector_sample_keeps_events_of_non_analyser_truth_modes(signal_reco_tes, tmp_path,
                                                                   relabel_three_prong):
    """No truth-mode cut on the detector-level sample: an SR event whose truth tau+ is a
    3-prong (reconstructed as pi or rho) stays in it; truth gives it h = 0 (spin weight 1
    under every hypothesis) and keeps it out of the truth-level target."""
    from ditau.tomography.calibration import spin_hypotheses
    from ditau.tomography.run import truth_sample

    nom, _ = signal_reco_tes
    relabelled = tmp_path / "three_prong.parquet"
    ids = relabel_three_prong(nom, relabelled, 8)
    kw = dict(methods=("truth",), n_boot=0, seed=1, min_events=5, analysis="calibration")
    before = run_tomography(nom, **kw).methods["truth"]
    after = run_tomography(relabelled, **kw).methods["truth"]
    # the same signal-region events enter the detector-level sample (before the fix: 8 fewer)
    assert after.n_selected == before.n_selected
    assert sum(c.signal_per_fb for c in after.channels) == pytest.approx(
        sum(c.signal_per_fb for c in before.channels))
    assert np.all(np.isfinite(after.calibrated))
    # truth: out of the target (weight 0), h = 0, weight 1 under every spin hypothesis
    t = read_events(relabelled)
    truth, target, _ = truth_sample(t)
    rows = np.isin(np.asarray(t["event_id"]), ids)
    assert not target[rows].any() and target[~rows].all()
    assert np.all(truth.weight[rows] == 0) and np.all(truth.h_p[rows] == 0)
    assert np.all(truth.h_m[rows] == 0) and truth.valid[rows].all()
    hyp = spin_hypotheses(truth, 6, seed=3)
    assert np.allclose(hyp.weights[:, rows], 1.0)
    assert not np.allclose(hyp.weights[1:, ~rows], 1.0)


def test_unreadable_events_and_a_method_output_as_variation_are_named(reco_files, tmp_path):
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(TomographyError, match=r"EVENTS .*empty\.parquet: not a readable"):
        run_tomography(empty)
    f = reco_files
    with pytest.raises(TomographyError, match=r"--variation tes_up .*a method-output file"):
        run_tomography(f.nom, recon={"fastmtt": f.fastmtt}, variations={"tes_up": f.fastmtt})


@pytest.fixture(scope="module")
def background_files(reco_files, tmp_path_factory):
    """A 'wtaunu' background file for the mechanics of the own-shape backgrounds, with its
    FastMTT output: the signal's detector-level events relabelled as sample wtaunu (a run of
    its own, event ids moved). A real W -> tau nu sample of test size has 0-1 signal-region
    events with a FastMTT solution (about 1 in 10^4 fakes), so whether any background event
    enters the fit would depend on the detector's random numbers; these events always do."""
    from ditau.provenance import RUN_ID, run_id
    from ditau.schema import read_metadata

    d = tmp_path_factory.mktemp("bkg_recon")
    t = read_events(reco_files.nom)
    t = t.set_column(t.column_names.index("sample"), "sample",
                     pa.array(["wtaunu"] * t.num_rows))
    ids = np.asarray(t["event_id"]) + 1_000_000_000  # other events than the signal's
    t = t.set_column(t.column_names.index("event_id"), "event_id", pa.array(ids))
    meta = {**read_metadata(reco_files.nom), "sample": "wtaunu",
            RUN_ID: run_id("relabelled-as-wtaunu", {"source": str(reco_files.nom)})}
    bk = write_events(t, d / "wtaunu.parquet", meta)
    return SimpleNamespace(events=bk, fastmtt=reco_files.make(bk, "wtaunu_fastmtt", "fastmtt"))


def test_backgrounds_enter_the_fit_with_their_own_method_outputs(reco_files, background_files):
    from ditau.tomography.run import background_inputs, read_backgrounds

    f, b = reco_files, background_files
    kw = dict(methods=("truth", "fastmtt"), recon={"fastmtt": f.fastmtt},
              backgrounds=[b.events], analysis="fit", closure=False, min_events=5, seed=1)
    res = run_tomography(f.nom, background_recon={"wtaunu": {"fastmtt": b.fastmtt}}, **kw)
    assert any("own reconstructed analyser distribution" in n for n in res.notes), res.notes
    # the fit section says so too (it said "the signal's unpolarised shape" whatever was used)
    from ditau.tomography.fit_report import fit_lines
    assert res.fits["fastmtt"].background_shape == "own"
    md = "\n".join(fit_lines(res.fits))
    assert ("Backgrounds: each background's own reconstructed analysers for fastmtt; the "
            "signal's unpolarised shape for truth.") in md
    # the background's measured events: signal-region, analysis channels, a FastMTT solution
    bk = read_backgrounds([b.events])
    assert set(bk) == {"wtaunu"}
    inp = background_inputs(bk, {"wtaunu": read_recon(b.fastmtt)}, "fastmtt",
                            "polarimeter", 2)
    ev = read_events(b.events)
    n_sr = int(np.sum(np.asarray(ev["in_sr"])))
    assert 0 < len(inp.weight) <= n_sr and set(inp.process) == {"wtaunu"}
    np.testing.assert_allclose(np.linalg.norm(inp.a_p, axis=1), 1.0, atol=1e-9)
    without = run_tomography(f.nom, **kw)
    assert any("signal's unpolarised template" in n for n in without.notes)
    assert "Backgrounds: their yields with the signal's unpolarised shape (approximation)." \
        in "\n".join(fit_lines(without.fits))
    with pytest.raises(TomographyError, match="'zll', which is not among the background"):
        run_tomography(f.nom, background_recon={"zll": {"fastmtt": b.fastmtt}}, **kw)
    with pytest.raises(TomographyError, match="has no method-output file for the background"):
        run_tomography(f.nom, background_recon={"wtaunu": {"fastmtt": b.fastmtt}},
                       **{**kw, "methods": ("truth", "fastmtt", "collinear"),
                          "recon": {"fastmtt": f.fastmtt, "collinear": f.collinear}})
    # the signal's FastMTT output given as the background's is refused
    with pytest.raises(TomographyError, match="does not belong"):
        run_tomography(f.nom, background_recon={"wtaunu": {"fastmtt": f.fastmtt}}, **kw)
    with pytest.raises(TomographyError, match=r"a signal .* given as a background"):
        run_tomography(f.nom, **{**kw, "backgrounds": [f.nom]},
                       background_recon={"ztautau": {"fastmtt": f.fastmtt}})
    with pytest.raises(TomographyError, match="given twice as a background"):
        read_backgrounds([b.events, b.events])
    with pytest.raises(TomographyError, match="given twice as a background"):
        run_tomography(f.nom, **{**kw, "backgrounds": [b.events, b.events]})
    copy = b.events.parent / "wtaunu_copy.parquet"
    copy.write_bytes(b.events.read_bytes())
    with pytest.raises(TomographyError, match="two files of the background 'wtaunu'"):
        read_backgrounds([b.events, copy])


def test_cli_background_recon_needs_its_background(reco_files, background_files, tmp_path):
    f, b = reco_files, background_files
    base = ["tomography", str(f.nom), "-o", str(tmp_path / "rep"), "--recon",
            f"fastmtt={f.fastmtt}"]
    r = runner.invoke(app, [*base, "--background-recon", f"wtaunu:fastmtt={b.fastmtt}"])
    assert r.exit_code == 2 and "needs the background files" in r.output
    r = runner.invoke(app, [*base, "-b", str(b.events), "--background-recon",
                            f"wtaunu-fastmtt={b.fastmtt}"])
    assert r.exit_code == 2 and "SAMPLE:METHOD=FILE" in r.output
    r = runner.invoke(app, [*base, "-b", str(b.events), "--analysis", "calibration",
                            "--background-recon", f"wtaunu:fastmtt={b.fastmtt}"])
    assert r.exit_code == 2 and "no fit" in r.output


def _count_reads(monkeypatch) -> dict:
    """Count the event-file reads (``read_events``, wherever the tomography and the yields
    call it) per resolved path."""
    import ditau.tomography.run as tomo_run
    import ditau.yields as yields_mod

    counts: dict = {}
    for mod in (tomo_run, yields_mod):
        def counted(path, *args, _real=mod.read_events, **kwargs):
            key = Path(path).resolve()
            counts[key] = counts.get(key, 0) + 1
            return _real(path, *args, **kwargs)
        monkeypatch.setattr(mod, "read_events", counted)
    return counts


def test_each_background_file_is_read_once(reco_files, background_files, monkeypatch):
    """A background file gives the yields and (with --background-recon) its events from one
    read, with or without its own method outputs."""
    f, b = reco_files, background_files
    counts = _count_reads(monkeypatch)
    kw = dict(methods=("truth", "fastmtt"), recon={"fastmtt": f.fastmtt},
              backgrounds=[b.events], analysis="fit", closure=False, min_events=5, seed=1)
    res = run_tomography(f.nom, background_recon={"wtaunu": {"fastmtt": b.fastmtt}}, **kw)
    assert counts[b.events.resolve()] == 1, counts
    assert any("own reconstructed analyser distribution" in n for n in res.notes)
    counts.clear()
    run_tomography(f.nom, **{**kw, "analysis": "calibration"})
    assert counts[b.events.resolve()] == 1, counts


def test_one_background_reader_gives_the_yields_of_ditau_yields(background_files, monkeypatch):
    """The yields of the one reader are those of ``compute_yields`` to the last bit, whether it
    reads the events (one file per sample) or only the yields' columns (two files of one
    sample combined); the duplicate file is refused in both modes."""
    from ditau.tomography.run import (
        CHANNELS,
        background_yields,
        read_background_files,
        read_backgrounds,
    )
    from ditau.yields import compute_yields

    b = background_files
    copy = b.events.parent / "wtaunu_second.parquet"
    copy.write_bytes(b.events.read_bytes())

    def reference(paths):
        tab = compute_yields(paths)
        return {ch: float(sum(y.sum_w for y in tab.background.get(ch, {}).values()))
                for ch in CHANNELS}

    one, two = reference([b.events]), reference([b.events, copy])
    assert sum(one.values()) > 0
    counts = _count_reads(monkeypatch)
    assert background_yields([b.events]) == one
    assert background_yields([b.events, copy]) == two
    assert counts == {b.events.resolve(): 2, copy.resolve(): 1}
    counts.clear()
    full = read_background_files([b.events], events=True)
    assert full.yields == one and set(full.events) == {"wtaunu"}
    assert full.events["wtaunu"][0] == b.events and counts == {b.events.resolve(): 1}
    again = read_backgrounds([b.events])["wtaunu"][1]
    assert again.schema == full.events["wtaunu"][1].schema
    assert again["event_id"].equals(full.events["wtaunu"][1]["event_id"])
    assert read_background_files([b.events]).events == {}
    for events in (False, True):
        with pytest.raises(TomographyError, match="given twice as a background"):
            read_background_files([b.events, b.events], events=events)
