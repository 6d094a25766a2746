"""The ``tomography`` stage: calibrated spin correlations, systematics and significance per
reconstruction method, from one detector-level signal file (plus optional detector variations
and background files).

Procedure (module docstrings of :mod:`~ditau.tomography.calibration` and
:mod:`~ditau.tomography.significance` give the formulas):

1. Truth sample: every produced event whose two taus decay to pi, rho, e or mu, with truth
   analysers (rho: optimal polarimeter; it carries the spin information the reweighting
   needs). Calibration half: even ``event_id``; pseudo-data half: odd (independent closure).
2. Per method, the signal-region events with a solution: analysers from the method's tau
   momenta and the measured visible objects (rho: ``rho`` option; default the optimal
   polarimeter from the method's tau momentum, which gives 2x (truth taus) to 10x (ML) the
   significance of the visible direction: benchmarks/RESULTS.md). The method ``truth`` uses
   the generated tau momenta with the measured visible objects (a perfect neutrino
   reconstruction). Events are weighted by (kappa+ kappa-)^2, the inverse variance of their
   C_ij term, which combines channels optimally.
3. Calibration on the calibration half; closure: the calibrated pseudo-data diag(C) against the
   pseudo-data's truth.
4. Systematics: each detector variation file (same events, varied response) is reconstructed
   with the same method and calibrated with the nominal calibration; the shift of the
   pseudo-data result per source (larger of up/down). MC statistics of the calibration:
   spread over bootstrap replicas of the calibration half. Neutrino sampling (generative
   methods): spread of the calibrated pseudo-data D over re-runs with other noise seeds,
   reported as a share of the data statistics (it is per-event noise, already in them).
   Luminosity and background cross section: through the background subtraction (shift =
   C x b/s x relative uncertainty).
5. Significance of D > 1/3 and m12 > 1 versus luminosity from the signal-region yields.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from ditau.reconstruct import run_on_table
from ditau.schema import column_array, read_metadata
from ditau.tomography.analysers import Analysers, from_reco, from_truth
from ditau.tomography.calibration import (
    Calibration,
    Hypotheses,
    SpinSample,
    build_calibration,
    diag_correlation,
    spin_hypotheses,
)
from ditau.tomography.significance import (
    GRAD_D,
    ChannelInput,
    Significance,
    impact_table,
    significance,
    witness_d,
)

#: Channels of the analysis (reco_channel labels).
CHANNELS = ("pipi", "pirho", "rhorho", "epi", "erho", "mupi", "murho")
#: Relative uncertainties (ATLAS Run 2 luminosity, arXiv:2212.09379: 0.83 %; a typical
#: background cross-section uncertainty of 5 %).
LUMI_UNC = 0.0083
BKG_XSEC_UNC = 0.05
_SPIN_MODES = ("pi", "rho", "e", "mu")
#: The reference's signal-region yields per fb^-1 (tomography.md, "Significance") and its
#: total background (23 per fb^-1, shared here in proportion to the signal).
REFERENCE_SIGNAL = {"rhorho": 630.0, "pirho": 206.0, "pipi": 89.0, "epi": 379.0,
                    "erho": 1234.0, "mupi": 566.0, "murho": 1862.0}
REFERENCE_BACKGROUND_TOTAL = 23.0
#: Fewest usable signal-region events per half (calibration / pseudo-data) for a method.
MIN_EVENTS = 20


class TomographyError(ValueError):
    """Bad input to the tomography stage (message names the file/column)."""


@dataclass
class MethodResult:
    """One reconstruction method's calibrated result."""

    method: str
    n_selected: int
    efficiency: float
    calibration: Calibration
    raw: NDArray[np.float64]
    raw_cov: NDArray[np.float64]
    calibrated: NDArray[np.float64]
    calibrated_cov: NDArray[np.float64]
    truth: NDArray[np.float64]
    truth_cov: NDArray[np.float64]
    channels: list[ChannelInput]
    systematics: dict[str, NDArray[np.float64]]
    significance: Significance
    impacts: list[tuple[str, float, float]]
    #: The same without the calibration's MC-statistics term (a calibration sample much
    #: larger than the data).
    significance_no_mc: Significance | None = None
    #: Generative methods: (sigma of D from the neutrino sampling on the pseudo-data half,
    #: its share of D's statistical variance there); part of the data statistics.
    nu_sampling: tuple[float, float] | None = None

    @property
    def closure_pull(self) -> NDArray[np.float64]:
        """(calibrated - truth) / error, the error including the calibration's MC statistics
        (the bootstrap spread) when it was estimated."""
        mc = self.systematics.get("MC statistics (calibration)", np.zeros(3))
        err = np.sqrt(np.diag(self.calibrated_cov) + np.diag(self.truth_cov) + mc**2)
        return (self.calibrated - self.truth) / err


@dataclass
class TomographyResult:
    events: Path
    methods: dict[str, MethodResult] = field(default_factory=dict)
    truth_inclusive: dict[str, Any] = field(default_factory=dict)
    yields: dict[str, tuple[float, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------


def _p4(t: pa.Table, prefix: str, leg: str) -> NDArray[np.float64]:
    return np.stack([column_array(t, f"{prefix}_{c}_{leg}") for c in ("px", "py", "pz", "e")],
                    axis=1)


def _spin_sample(an: Any, weight: NDArray[np.float64]) -> SpinSample:
    kp = np.asarray(an.kappa_p, dtype=float)
    km = np.asarray(an.kappa_m, dtype=float)
    valid = np.asarray(an.valid, bool) & np.isfinite(kp * km) & (kp * km != 0)
    # inverse-variance weight of each event's C_ij term: (kappa+ kappa-)^2
    w = np.where(valid, weight * (kp * km) ** 2, 0.0)
    return SpinSample(np.asarray(an.h_p, float), np.asarray(an.h_m, float), kp, km,
                      np.asarray(an.cos_theta, float), w, valid)


def truth_sample(events: pa.Table) -> tuple[SpinSample, NDArray[np.bool_], Analysers]:
    """Truth analysers of the produced events (rho: optimal polarimeter) as a weighted sample,
    the mask of events that enter (both taus in pi, rho, e, mu), and the analysers."""
    modes_ok = np.isin(column_array(events, "decay_mode_p"), _SPIN_MODES) \
        & np.isin(column_array(events, "decay_mode_m"), _SPIN_MODES)
    an = from_truth(events, rho="polarimeter")
    s = _spin_sample(an, np.asarray(column_array(events, "weight"), float))
    valid = s.valid & modes_ok
    return SpinSample(s.h_p, s.h_m, s.kappa_p, s.kappa_m, s.cos_theta,
                      np.where(valid, s.weight, 0.0), valid), modes_ok, an


def n_candidates(recon: pa.Table | None) -> int:
    """Sampled candidates per event in a method-output table (0: a single solution)."""
    if recon is None or "candidate" not in recon.column_names or recon.num_rows == 0:
        return 0
    return int(pa.compute.max(recon["candidate"]).as_py())


def method_taus(events: pa.Table, method: str, recon: pa.Table | None = None,
                settings: Mapping[str, Any] | None = None, candidate: int = 0
                ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """(tau+ (N,4), tau- (N,4), ok (N,)) for the rows of ``events`` from ``method``: the
    generated taus for ``truth``, a method-output table (joined on event_id), or the method
    run in-process. ``candidate``: for ML outputs, 0 = the point estimate, k >= 1 = the k-th
    sampled candidate."""
    n = events.num_rows
    if method == "truth":
        return _p4(events, "tau", "p"), _p4(events, "tau", "m"), np.ones(n, bool)
    if recon is None:
        recon = run_on_table(method, events, settings)
    if "candidate" in recon.column_names:
        recon = recon.filter(pa.compute.equal(recon["candidate"], candidate))
    ids = column_array(events, "event_id")
    rid = column_array(recon, "event_id")
    if len(rid) == 0:
        nan = np.full((n, 4), np.nan)
        return nan, nan.copy(), np.zeros(n, bool)
    order = np.argsort(rid)
    rows = order[np.clip(np.searchsorted(rid[order], ids), 0, len(rid) - 1)]
    ok = (rid[rows] == ids) & (column_array(recon, "rec_status")[rows] == "ok")
    tp = _p4(recon, "rec_tau", "p")[rows]
    tm = _p4(recon, "rec_tau", "m")[rows]
    return tp, tm, ok


def _event_weight(t: pa.Table) -> NDArray[np.float64]:
    """Events per fb^-1 of each selected event, fake-rate weight included."""
    return np.asarray(column_array(t, "weight"), float) \
        * np.asarray(column_array(t, "reco_weight"), float)


def detector_sample(events: pa.Table, tau_p: NDArray[np.float64], tau_m: NDArray[np.float64],
                    ok: NDArray[np.bool_], rho: str) -> SpinSample:
    """Analysers from reconstructed tau momenta and the measured visible objects."""
    tp = np.where(ok[:, None], tau_p, np.nan)
    tm = np.where(ok[:, None], tau_m, np.nan)
    an = from_reco(events, tp, tm, rho=rho)
    w = _event_weight(events)
    return _spin_sample(an, w)


def method_sample(events: pa.Table, method: str, recon: pa.Table | None, rho: str,
                  candidate_average: bool = False) -> SpinSample:
    """The detector-level spin sample of ``method`` (:func:`method_taus` +
    :func:`detector_sample`). With ``candidate_average`` and a method-output table with
    sampled candidates (ML), the per-event products h+_i h-_i are averaged over the
    candidates (the posterior expectation of the estimator's per-event term, which removes
    most of the sampling noise; ``SpinSample.prod``); an event needs every candidate valid."""
    det = detector_sample(events, *method_taus(events, method, recon), rho)
    k = n_candidates(recon) if candidate_average else 0
    if k < 1:
        return det
    prods = []
    valid = det.valid.copy()
    for c in range(1, k + 1):
        s = detector_sample(events, *method_taus(events, method, recon, candidate=c), rho)
        prods.append(s.h_p * s.h_m)
        valid &= s.valid
    prod = np.mean(prods, axis=0)
    valid &= np.all(np.isfinite(prod), 1)
    return replace(det, prod=prod, valid=valid, weight=np.where(valid, det.weight, 0.0))


def _read(path: Path) -> pa.Table:
    from ditau.schema import read_events

    schema_names = pq.read_schema(path).names
    names = set(schema_names)
    for need in ("in_sr", "reco_channel", "tau_px_p", "reco_chg_px_p"):
        if need not in names:
            what = "detector-level" if need.startswith("reco") or need == "in_sr" else "truth"
            raise TomographyError(f"{path}: no {what} column '{need}' (tomography needs a "
                                  "signal file with truth and 'ditau detector' output)")
    cols = [c for c in schema_names if not c.startswith("fs_")]
    return read_events(path, columns=cols, require=("id",))


def background_yields(paths: Sequence[str | Path]) -> dict[str, float]:
    """Background SR yields per fb^-1 per reco channel (``ditau yields`` normalisation)."""
    if not paths:
        return dict.fromkeys(CHANNELS, 0.0)
    from ditau.yields import compute_yields

    tab = compute_yields(list(paths))
    return {ch: float(sum(y.sum_w for y in tab.background.get(ch, {}).values()))
            for ch in CHANNELS}


def _bootstrap_mc_stat(truth: SpinSample, det: SpinSample, idx: NDArray[np.int64],
                       raw: NDArray[np.float64], n_boot: int, hyp: Hypotheses, seed: int
                       ) -> NDArray[np.float64]:
    """Spread of the calibrated ``raw`` over Poisson bootstrap replicas of the calibration
    sample (the hypothesis weights do not depend on the event weights: computed once)."""
    rng = np.random.default_rng(seed + 1000)
    out = []
    for _ in range(n_boot):
        pw = rng.poisson(1.0, len(truth)).astype(float)
        t_b = replace(truth, weight=truth.weight * pw)
        d_b = replace(det, weight=det.weight * pw[idx])
        cal = build_calibration(t_b, d_b, idx, hypotheses=hyp)
        out.append(cal.apply(raw)[0])
    return np.std(np.array(out), axis=0, ddof=1)


def _nu_sampling(dat: pa.Table, method: str, settings: Mapping[str, Any] | None,
                 cal: Calibration, nominal: NDArray[np.float64],
                 nominal_cov: NDArray[np.float64], n_rep: int, rho: str,
                 candidate_average: bool) -> tuple[float, float]:
    """Neutrino-sampling part of the statistical uncertainty of a generative method.

    The method is re-run on the pseudo-data events ``dat`` with ``n_rep`` other noise seeds
    (new candidates, hence new point estimates, statistically identical to the nominal ones,
    so the nominal calibration applies). Returns (standard deviation of the calibrated D over
    the nominal and re-seeded runs, its share of D's statistical variance on the same
    events). The sampling noise is per event, so the event-by-event spread that gives the data
    statistics already contains it; it scales with the luminosity like the data statistics
    and is reported, not added again as a systematic."""
    base = dict(settings or {})
    seed0 = int(base.pop("seed", 0))
    d = [float(GRAD_D @ nominal)]
    for r in range(1, n_rep + 1):
        rtab = run_on_table(method, dat, {**base, "seed": seed0 + 7919 * r})
        det = method_sample(dat, method, rtab, rho, candidate_average)
        c = cal.apply(diag_correlation(det)[0])[0]
        d.append(float(GRAD_D @ c))
    sd = float(np.std(d, ddof=1))
    var_stat = float(GRAD_D @ nominal_cov @ GRAD_D)
    return sd, sd**2 / var_stat if var_stat > 0 else float("nan")


def run_tomography(events_path: str | Path, methods: Sequence[str] = ("truth", "collinear",
                                                                       "fastmtt", "mmc"),
                   recon: Mapping[str, str | Path] | None = None,
                   variations: Mapping[str, str | Path] | None = None,
                   backgrounds: Sequence[str | Path] = (), rho: str = "polarimeter",
                   n_hypotheses: int = 12, n_boot: int = 10, seed: int = 0,
                   min_events: int = MIN_EVENTS, reference_yields: bool = False,
                   method_settings: Mapping[str, Mapping[str, Any]] | None = None,
                   nu_sampling: int = 5, candidate_average: bool = False,
                   progress: Any = None) -> TomographyResult:
    """Run the tomography (module docstring) and return the per-method results.

    ``method_settings``: per method, the settings of a method run in-process (on the
    variation files, and on the nominal file when no ``recon`` output is given), e.g.
    ``{"ml": {"model": "m.pt", "candidates": 10}}`` (with ``recon``, give the settings the
    file was made with). ``nu_sampling``: for methods with sampled candidates (ML), the
    number of re-runs with other noise seeds for the neutrino-sampling uncertainty (0: none).
    ``candidate_average``: for such methods, average each event's analyser products over
    its candidates (:func:`method_sample`) instead of using the point estimate's.

    ``reference_yields``: use the reference study's signal-region yields per channel (and its
    total background shared in proportion) instead of this sample's and ``backgrounds``, to
    compare significances at the reference's event counts.
    """
    start = time.perf_counter()
    path = Path(events_path)
    ev = _read(path)
    ids = column_array(ev, "event_id")
    res = TomographyResult(path)
    say = progress or (lambda msg: None)
    methods = tuple(methods) + tuple(m for m in (recon or {}) if m not in methods)

    truth, in_spin, truth_an = truth_sample(ev)
    cal_half = (ids % 2 == 0)
    t_cal = truth.subset(np.flatnonzero(cal_half))
    t_dat = truth.subset(np.flatnonzero(~cal_half))
    c_truth_dat, cov_truth_dat, _ = diag_correlation(t_dat)
    # one set of spin hypotheses (weights from the truth analysers) for every method
    hyp = spin_hypotheses(t_cal, n_hypotheses, seed)
    res.truth_inclusive = _truth_inclusive(truth_an, in_spin)

    sr = column_array(ev, "in_sr").astype(bool) & in_spin
    sel = ev.filter(pa.array(sr))
    sel_ids = column_array(sel, "event_id")
    sel_cal = sel_ids % 2 == 0
    # position of each selected event in the calibration-half truth arrays
    cal_pos = np.searchsorted(ids[cal_half], sel_ids[sel_cal])
    chan = column_array(sel, "reco_channel")
    w_sr = _event_weight(sel)
    bkg = background_yields(backgrounds)
    if not backgrounds and not reference_yields:
        res.notes.append("no background files given: background yields taken as 0")
    res.yields = {ch: (float(w_sr[chan == ch].sum()), bkg[ch]) for ch in CHANNELS}
    if reference_yields:
        tot = sum(REFERENCE_SIGNAL.values())
        res.yields = {ch: (REFERENCE_SIGNAL[ch], REFERENCE_BACKGROUND_TOTAL
                           * REFERENCE_SIGNAL[ch] / tot) for ch in CHANNELS}
        res.notes.append("yields: the reference study's signal-region yields per channel "
                         f"and its {REFERENCE_BACKGROUND_TOTAL:g}/fb^-1 background")
    flt = _find(read_metadata(path), "tau_filter")
    if flt:
        res.notes.append(f"truth level = the generated phase space, which has a generator-"
                         f"level tau filter {flt}: the truth-level C is fiducial to it")
    var_tables = {k: _read(Path(p)) for k, p in (variations or {}).items()}
    for method in methods:
        say(f"tomography: {method}")
        settings = (method_settings or {}).get(method)
        rtab = None
        if recon and method in recon:
            from ditau.reconstruct import read_recon

            rtab = read_recon(recon[method])
        elif method != "truth":
            rtab = run_on_table(method, sel, settings)
        det = method_sample(sel, method, rtab, rho, candidate_average)
        d_cal = det.subset(np.flatnonzero(sel_cal))
        d_dat = det.subset(np.flatnonzero(~sel_cal))
        n_min = min(int(d_cal.valid.sum()), int(d_dat.valid.sum()))
        if n_min < min_events:
            res.notes.append(f"{method}: only {n_min} usable signal-region events in a half "
                             f"of the sample (need {min_events}): not calibrated")
            continue
        cal = build_calibration(t_cal, d_cal, cal_pos, hypotheses=hyp)
        raw, raw_cov, _ = diag_correlation(d_dat)
        c_cal, cov_cal = cal.apply(raw, raw_cov)
        inv = np.linalg.inv(cal.response)
        chans = []
        for ch in CHANNELS:
            m = ~sel_cal & (chan == ch) & det.valid
            s_ch = res.yields[ch][0] * (np.sum(w_sr[m]) / max(np.sum(w_sr[~sel_cal & (chan == ch)]),
                                                              1e-300))
            if m.sum() < max(2, min_events // 2) or s_ch <= 0:
                continue
            _, cov_ch, _ = diag_correlation(det.subset(np.flatnonzero(m)))
            # per-event covariance of the calibrated estimator in this channel
            var1 = inv @ cov_ch @ inv.T * m.sum()
            chans.append(ChannelInput(ch, s_ch, res.yields[ch][1], cal.truth_nominal, var1))
        syst: dict[str, NDArray[np.float64]] = {}
        for name, vt in var_tables.items():
            src = name.removesuffix("_up").removesuffix("_down")
            vsel = vt.filter(pa.array(np.isin(column_array(vt, "event_id"), sel_ids[~sel_cal])
                                      & column_array(vt, "in_sr").astype(bool)))
            vrec = None if method == "truth" else run_on_table(method, vsel, settings)
            vdet = method_sample(vsel, method, vrec, rho, candidate_average)
            # nominal on the same events (a variation file may hold a subset of the sample)
            same = np.isin(sel_ids[~sel_cal], column_array(vsel, "event_id"))
            nom = cal.apply(diag_correlation(d_dat.subset(np.flatnonzero(same)))[0])[0]
            shift = cal.apply(diag_correlation(vdet)[0])[0] - nom
            if src not in syst or np.linalg.norm(shift) > np.linalg.norm(syst[src]):
                syst[src] = shift
        nu = None
        if nu_sampling > 0 and n_candidates(rtab) > 0:
            nu = _nu_sampling(sel.filter(pa.array(~sel_cal)), method, settings, cal, c_cal,
                              cov_cal, nu_sampling, rho, candidate_average)
        if n_boot > 1:
            syst["MC statistics (calibration)"] = _bootstrap_mc_stat(
                t_cal, d_cal, cal_pos, raw, n_boot, hyp, seed)
        s_tot = sum(c.signal_per_fb for c in chans)
        b_tot = sum(c.background_per_fb for c in chans)
        ratio = b_tot / s_tot if s_tot > 0 else 0.0
        syst["luminosity"] = cal.truth_nominal * ratio * LUMI_UNC
        syst["background cross sections"] = cal.truth_nominal * ratio * BKG_XSEC_UNC
        sig = significance(chans, syst)
        no_mc = significance(chans, {k: v for k, v in syst.items() if not k.startswith("MC")})
        res.methods[method] = MethodResult(
            method, int(det.valid.sum()), float(np.mean(det.valid)) if len(det) else 0.0,
            cal, raw, raw_cov, c_cal, cov_cal, c_truth_dat, cov_truth_dat, chans, syst, sig,
            impact_table(chans, syst), no_mc, nu)
    res.seconds = time.perf_counter() - start
    return res


def _find(meta: Any, key: str) -> Any:
    """First non-null value of ``key`` anywhere in nested metadata."""
    if isinstance(meta, Mapping):
        if meta.get(key) is not None:
            return meta[key]
        meta = list(meta.values())
    if isinstance(meta, list):
        for v in meta:
            found = _find(v, key)
            if found is not None:
                return found
    return None


def _truth_inclusive(an: Analysers, in_spin: NDArray[np.bool_]) -> dict[str, Any]:
    """Full B, C and the quantum observables of all produced events (truth analysers)."""
    from ditau.tomography.estimators import measure
    from ditau.tomography.quantum import quantum_observables

    ok = np.asarray(an.valid, bool) & in_spin
    obs = measure(an.h_p, an.h_m, an.kappa_p, an.kappa_m,
                  weights=np.asarray(an.kappa_p * an.kappa_m, float) ** 2, valid=ok)
    q = quantum_observables(obs, n_toys=2000, seed=0)
    return {"observables": obs, "quantum": q, "d": witness_d(np.diag(obs.C))}
