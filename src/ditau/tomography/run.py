"""The ``tomography`` stage: calibrated spin correlations, systematics and significance per
reconstruction method, from one detector-level signal file (plus optional detector variations
and background files) and, per method, the method-output files that ``ditau reconstruct``
wrote. The tomography reads those files; it never runs a reconstruction method itself.

Procedure (module docstrings of :mod:`~ditau.tomography.calibration` and
:mod:`~ditau.tomography.significance` give the formulas):

1. Truth sample: every produced event whose two taus decay to pi, rho, e or mu, with truth
   analysers (rho: optimal polarimeter; it carries the spin information the reweighting
   needs): the truth-level target. Calibration half: even ``event_id``; pseudo-data half: odd
   (independent closure).
2. Per method, *every* signal-region event with a solution, whatever its truth decay modes
   (real data has no truth: tau -> pi pi0 pi0 nu, 3-prong and K modes feed the reconstructed
   channels). Truth enters only the target and the calibration's spin reweighting, which
   needs each event's truth polarimeters: an event with a leg of another truth mode (or
   undefined truth analysers) gets h = 0 on both legs, the convention of :mod:`ditau.spin`
   for modes without a polarimeter, so every spin hypothesis gives it weight 1; it stays in
   the detector-level sample as a background to the measurement, with the simulated spin
   state (labelled approximation: its residual spin dependence is not reweighted). Analysers
   from the method's tau
   momenta and the measured visible objects (rho: ``rho`` option; default the optimal
   polarimeter from the method's tau momentum, which gives 2x (truth taus) to 10x (ML) the
   significance of the visible direction: benchmarks/RESULTS.md). The method ``truth`` uses
   the generated tau momenta with the measured visible objects (a perfect neutrino
   reconstruction). Events are weighted by (kappa+ kappa-)^2, the inverse variance of their
   C_ij term, which combines channels optimally.
3. Calibration on the calibration half; closure: the calibrated pseudo-data diag(C) against the
   pseudo-data's truth.
4. Systematics: each detector variation file (same events, varied response), with the
   method's output on it, is calibrated with the nominal calibration; the shift of the
   pseudo-data result per source (larger of up/down). MC statistics of the calibration:
   spread over bootstrap replicas of the calibration half. Neutrino sampling (generative
   methods): spread of the calibrated pseudo-data D over method outputs made with other noise
   seeds, reported as a share of the data statistics (it is per-event noise, already in them).
   Luminosity and background cross section: through the background subtraction (shift =
   C x b/s x relative uncertainty).
5. Significance of D > 1/3 and m12 > 1 versus luminosity from the signal-region yields.

Method-output files are checked against the events they are given for (:func:`read_method_output`):
the ``method`` column must be the method they are given as, their ``event_id`` must be events of
the file, and their visible momenta (``rec_tau - rec_nu``) the measured ones of those events (a
method output of the nominal file given for a detector variation is refused).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from ditau.schema import (
    SchemaError,
    column_array,
    event_weights,
    read_events,
    read_metadata,
    spin_weights,
)
from ditau.tomography.analysers import Analysers, from_reco, from_truth
from ditau.tomography.calibration import (
    Calibration,
    Hypotheses,
    SpinSample,
    build_calibration,
    diag_correlation,
    spin_hypotheses,
)
from ditau.tomography.measurement import (
    SPLIT_MOD,
    BackgroundInputs,
    SpinFit,
    SpinInputs,
    inputs_for,
    measure_method,
)
from ditau.tomography.moments import observables as moment_observables
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
    #: The profile-likelihood measurement (:mod:`ditau.tomography.measurement`), if run.
    fit: SpinFit | None = None

    @property
    def closure_pull(self) -> NDArray[np.float64]:
        """(calibrated - truth) / error, the error including the calibration's MC statistics
        (the bootstrap spread) when it was estimated."""
        mc = self.systematics.get("MC statistics (calibration)", np.zeros((3, 3)))
        mc_var = np.diag(mc) if np.ndim(mc) == 2 else np.asarray(mc) ** 2
        err = np.sqrt(np.diag(self.calibrated_cov) + np.diag(self.truth_cov) + mc_var)
        return (self.calibrated - self.truth) / err


@dataclass
class TomographyResult:
    events: Path
    methods: dict[str, MethodResult] = field(default_factory=dict)
    #: The profile-likelihood fits per method (``analysis`` 'fit' or 'both').
    fits: dict[str, SpinFit] = field(default_factory=dict)
    analysis: str = "both"
    truth_inclusive: dict[str, Any] = field(default_factory=dict)
    yields: dict[str, tuple[float, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------


def _p4(t: pa.Table, prefix: str, leg: str,
        comps: tuple[str, ...] = ("px", "py", "pz", "e")) -> NDArray[np.float64]:
    """Columns ``{prefix}_{c}_{leg}`` for ``c`` in ``comps`` as an (N, len(comps)) array."""
    return np.stack([column_array(t, f"{prefix}_{c}_{leg}") for c in comps], axis=1)


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
    the mask of the truth-level target (both taus in pi, rho, e, mu) and the analysers.

    Every event is in the returned sample, so that each selected event has its spin weight:
    target events with their truth analysers and weights; the others (a leg of another truth
    mode, or truth analysers undefined) with h = 0 on both legs (:mod:`ditau.spin`'s
    convention for modes without a polarimeter: decay density 1, hence weight 1 under every
    spin hypothesis), ``valid`` True and weight 0, so they never enter the truth-level C.
    """
    modes_ok = np.isin(column_array(events, "decay_mode_p"), _SPIN_MODES) \
        & np.isin(column_array(events, "decay_mode_m"), _SPIN_MODES)
    an = from_truth(events, rho="polarimeter")
    s = _spin_sample(an, np.asarray(column_array(events, "weight"), float)
                     * spin_weights(events))
    target = s.valid & modes_ok
    known = target[:, None]
    # the generated state: each event's LO Standard-Model state (m_tautau, flavour, angle)
    from ditau.spin import state_from_truth

    sm = state_from_truth(events, np.where(np.isfinite(an.cos_theta), an.cos_theta, 0.0)
                          ).defined_or_unpolarised()
    state = (sm.B_p, sm.B_m, sm.C)
    # no truth polarimeter: h = 0 (and kappa = 0, so the density is exactly 1)
    return SpinSample(np.where(known, s.h_p, 0.0), np.where(known, s.h_m, 0.0),
                      np.where(target, s.kappa_p, 0.0), np.where(target, s.kappa_m, 0.0),
                      s.cos_theta, np.where(target, s.weight, 0.0),
                      np.ones(len(target), dtype=bool), state=state), modes_ok, an


def n_candidates(recon: pa.Table | None) -> int:
    """Sampled candidates per event in a method-output table (0: a single solution)."""
    if recon is None or "candidate" not in recon.column_names or recon.num_rows == 0:
        return 0
    return int(pa.compute.max(recon["candidate"]).as_py())


def method_taus(events: pa.Table, method: str, recon: pa.Table | None = None,
                candidate: int = 0
                ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """(tau+ (N,4), tau- (N,4), ok (N,)) for the rows of ``events`` from ``method``: the
    generated taus for ``truth``, else the method-output table ``recon`` (joined on event_id;
    events it lacks are not ok). ``candidate``: for ML outputs, 0 = the point estimate,
    k >= 1 = the k-th sampled candidate."""
    n = events.num_rows
    if method == "truth":
        return _p4(events, "tau", "p"), _p4(events, "tau", "m"), np.ones(n, bool)
    if recon is None:
        raise TomographyError(f"method {method!r}: no method-output table (the tomography does "
                              "not run methods; make one with 'ditau reconstruct')")
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


def detector_sample(events: pa.Table, tau_p: NDArray[np.float64], tau_m: NDArray[np.float64],
                    ok: NDArray[np.bool_], rho: str) -> SpinSample:
    """Analysers from reconstructed tau momenta and the measured visible objects."""
    tp = np.where(ok[:, None], tau_p, np.nan)
    tm = np.where(ok[:, None], tau_m, np.nan)
    an = from_reco(events, tp, tm, rho=rho)
    w = event_weights(events)
    return _spin_sample(an, w)


def method_sample(events: pa.Table, method: str, recon: pa.Table | None, rho: str,
                  candidate_average: bool = False) -> SpinSample:
    """The detector-level spin sample of ``method`` (:func:`method_taus` +
    :func:`detector_sample`). With ``candidate_average`` and a method-output table with
    sampled candidates (ML), the per-event products h+_i h-_i are averaged over the
    candidates (the posterior expectation of the estimator's per-event term, which removes
    most of the sampling noise; ``SpinSample.prod``), and so are the fit's moment observables
    (``SpinSample.obs``); an event needs every candidate valid."""
    det = detector_sample(events, *method_taus(events, method, recon), rho)
    k = n_candidates(recon) if candidate_average else 0
    if k < 1:
        return det
    prods, obs = [], []
    valid = det.valid.copy()
    for c in range(1, k + 1):
        s = detector_sample(events, *method_taus(events, method, recon, candidate=c), rho)
        prods.append(s.h_p * s.h_m)
        obs.append(moment_observables(s.h_p, s.h_m))
        valid &= s.valid
    prod = np.mean(prods, axis=0)
    obs_mean = np.mean(obs, axis=0)
    valid &= np.all(np.isfinite(prod), 1) & np.all(np.isfinite(obs_mean), 1)
    return replace(det, prod=prod, obs=obs_mean, valid=valid,
                   weight=np.where(valid, det.weight, 0.0))


def _read(path: Path, role: str = "EVENTS", kind: str | None = None) -> pa.Table:
    """Every column but the particles' (``fs_*``) of the detector-level event file ``path``
    with truth (``role`` names it in errors; ``kind``: also check it as a file of that kind,
    :func:`~ditau.schema.read_events`). Raises :class:`TomographyError` for an unreadable
    file, a method-output file or one without the truth and detector-level columns."""
    try:
        schema_names = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as err:
        raise TomographyError(f"{role} {path}: not a readable Parquet file (truncated or "
                              f"corrupt?): {err}") from err
    names = set(schema_names)
    if "method" in names and "rec_status" in names:
        raise TomographyError(f"{role} {path}: a method-output file ('ditau reconstruct'), "
                              "not a detector-level event file ('ditau detector')")
    for need in ("in_sr", "reco_channel", "tau_px_p", "reco_chg_px_p"):
        if need not in names:
            what = "detector-level" if need.startswith("reco") or need == "in_sr" else "truth"
            raise TomographyError(f"{path}: no {what} column '{need}' (tomography needs a "
                                  "signal file with truth and 'ditau detector' output)")
    cols = [c for c in schema_names if not c.startswith("fs_")]
    return read_events(path, columns=cols, require=("id",), kind=kind)


@dataclass
class BackgroundFiles:
    """The background files of a tomography run, each read once
    (:func:`read_background_files`).

    ``yields``: signal-region events per fb^-1 per reco channel (keys :data:`CHANNELS`), all
    backgrounds summed, with the normalisation of ``ditau yields``
    (:func:`ditau.yields.compute_yields`: several files of one sample share its weight).
    ``events``: {sample name: (path, events table)}, every column but the particles' (what the
    fit's own-shape backgrounds need, :func:`background_inputs`); empty unless read with
    ``events=True``.
    """

    yields: dict[str, float]
    events: dict[str, tuple[Path, pa.Table]] = field(default_factory=dict)


def read_background_files(paths: Sequence[str | Path], events: bool = False
                          ) -> BackgroundFiles:
    """Read each background file of ``paths`` once: its signal-region yields and, with
    ``events``, its events table (:class:`BackgroundFiles`).

    Without ``events`` only the columns the yields need are read (those of
    :func:`ditau.yields.compute_yields`), and several files of one sample (or a file of several
    samples) are combined as ``ditau yields`` combines them. With ``events`` every column but
    the particles' is read, and each file must hold one sample and each sample come in one
    file (their weights share the sample: merge them first).

    Raises :class:`TomographyError` for a file given twice, a signal file, and with
    ``events`` a file of several samples or two files of one sample (and for a file that is
    not a detector-level event file, :func:`_read`); :class:`~ditau.schema.SchemaError` for a
    file without the columns the yields need.
    """
    from ditau.generate.config import SIGNAL
    from ditau.yields import read_yield_columns

    seen: set[Path] = set()
    tables: list[pa.Table] = []
    out: dict[str, tuple[Path, pa.Table]] = {}
    for p in paths:
        path = Path(p)
        if path.resolve() in seen:
            raise TomographyError(f"{path}: given twice as a background")
        seen.add(path.resolve())
        t = _read(path, "--background", kind="detector") if events else read_yield_columns(path)
        samples = sorted({str(v) for v in column_array(t, "sample")})
        if SIGNAL in samples:
            raise TomographyError(f"{path}: a signal ({SIGNAL}) sample given as a background")
        if events:
            if len(samples) != 1:
                raise TomographyError(f"{path}: events of {len(samples)} samples {samples}; "
                                      "a background file holds one sample")
            if samples[0] in out:
                first = out[samples[0]][0]
                raise TomographyError(f"{path} and {first}: two files of the background "
                                      f"{samples[0]!r}; merge them first ('ditau merge "
                                      f"{first} {path} -o FILE')")
            out[samples[0]] = (path, t)
        tables.append(t)
    return BackgroundFiles(_sr_yields(tables), out)


def _sr_yields(tables: Sequence[pa.Table]) -> dict[str, float]:
    """Signal-region events per fb^-1 per channel of :data:`CHANNELS` of the background
    ``tables`` (one per file), all backgrounds summed: the background table of
    :func:`ditau.yields.yields_of_tables`."""
    from ditau.yields import yields_of_tables

    tab = yields_of_tables(tables)
    return {ch: float(sum(y.sum_w for y in tab.background.get(ch, {}).values()))
            for ch in CHANNELS}


def background_yields(paths: Sequence[str | Path]) -> dict[str, float]:
    """Background SR yields per fb^-1 per reco channel (keys :data:`CHANNELS`; ``ditau
    yields`` normalisation), each file read once (:func:`read_background_files`). Raises
    :class:`TomographyError` for a file given twice or a signal file."""
    if not paths:
        return dict.fromkeys(CHANNELS, 0.0)
    return read_background_files(paths).yields


def read_backgrounds(paths: Sequence[str | Path]) -> dict[str, tuple[Path, pa.Table]]:
    """The background files' events: {sample name: (path, table)}, each file read once
    (:func:`read_background_files` with ``events``). Raises :class:`TomographyError` for a
    file given twice, a signal file, a file of several samples, or two files of one sample
    (merge them first: their weights share the sample)."""
    return read_background_files(paths, events=True).events


def background_inputs(backgrounds: Mapping[str, tuple[Path, pa.Table]],
                      recon: Mapping[str, pa.Table], method: str, rho: str, bins: int,
                      candidate_average: bool = False) -> BackgroundInputs:
    """``method``'s measurement of the background events: per background sample its
    signal-region events in the analysis channels with a valid measurement from the method's
    output ``recon[sample]`` (analysers from the method's tau momenta and the measured
    visible objects, as for the signal)."""
    from ditau.tomography.templates import bin_index

    parts = []
    for name, (_, t_all) in backgrounds.items():
        t = t_all.filter(pa.array(column_array(t_all, "in_sr").astype(bool)))
        det = method_sample(t, method, recon[name], rho, candidate_average)
        ch = column_array(t, "reco_channel").astype(str)
        ok = det.valid & np.isin(ch, CHANNELS) & np.all(np.isfinite(det.h_p), 1) \
            & np.all(np.isfinite(det.h_m), 1)
        ap, am = np.asarray(det.h_p, float)[ok], np.asarray(det.h_m, float)[ok]
        parts.append((event_weights(t)[ok], ap, am, bin_index(ap, am, bins), ch[ok],
                      np.full(int(ok.sum()), name),
                      np.zeros((0, 16)) if det.obs is None else det.obs[ok]))
    if not parts:
        z = np.zeros((0, 3))
        return BackgroundInputs(np.zeros(0), z, z, np.zeros(0, np.int64), np.zeros(0, str),
                                np.zeros(0, str))
    # every sample's averaged observables, or none (a method without candidates)
    cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
    if any(len(p[6]) != len(p[0]) for p in parts):
        cols[6] = np.zeros((0, 16))
    return BackgroundInputs(*cols)


def _bootstrap_mc_stat(truth: SpinSample, det: SpinSample, idx: NDArray[np.int64],
                       raw: NDArray[np.float64], n_boot: int, hyp: Hypotheses, seed: int
                       ) -> NDArray[np.float64]:
    """Covariance (3, 3) of the calibrated ``raw`` over Poisson bootstrap replicas of the
    calibration sample (the hypothesis weights do not depend on the event weights: computed
    once). The full covariance, not the outer product of the standard deviations: the
    calibrated elements are not fully correlated (on a toy the outer product gave
    sigma_D(MC) = 0.047 where the bootstrap of D gives 0.073)."""
    rng = np.random.default_rng(seed + 1000)
    out = []
    for _ in range(n_boot):
        pw = rng.poisson(1.0, len(truth)).astype(float)
        t_b = replace(truth, weight=truth.weight * pw)
        d_b = replace(det, weight=det.weight * pw[idx])
        cal = build_calibration(t_b, d_b, idx, hypotheses=hyp)
        out.append(cal.apply(raw)[0])
    return np.cov(np.array(out).T, ddof=1)


def _nu_sampling(dat: pa.Table, method: str, reruns: Sequence[pa.Table], cal: Calibration,
                 nominal: NDArray[np.float64], nominal_cov: NDArray[np.float64], rho: str,
                 candidate_average: bool) -> tuple[float, float]:
    """Neutrino-sampling part of the statistical uncertainty of a generative method.

    ``reruns``: method outputs made with other noise seeds (new candidates, hence new point
    estimates, statistically identical to the nominal ones, so the nominal calibration
    applies), evaluated on the pseudo-data events ``dat``. Returns (standard deviation of the
    calibrated D over the nominal and re-seeded outputs, its share of D's statistical variance
    on the same events). The sampling noise is per event, so the event-by-event spread that
    gives the data statistics already contains it; it scales with the luminosity like the
    data statistics and is reported, not added again as a systematic."""
    d = [float(GRAD_D @ nominal)]
    for rtab in reruns:
        det = method_sample(dat, method, rtab, rho, candidate_average)
        c = cal.apply(diag_correlation(det)[0])[0]
        d.append(float(GRAD_D @ c))
    sd = float(np.std(d, ddof=1))
    var_stat = float(GRAD_D @ nominal_cov @ GRAD_D)
    return sd, sd**2 / var_stat if var_stat > 0 else float("nan")


def _make_hint(events: Path, method: str) -> str:
    return f"ditau reconstruct {events} -o FILE --method {method} --sr-only"


def read_method_output(path: str | Path, method: str, events: pa.Table,
                       events_path: str | Path) -> pa.Table:
    """Read the method-output file ``path`` (written by ``ditau reconstruct``) given as the
    output of ``method`` on the event table ``events`` (read from ``events_path``), and check
    that it belongs to them: its ``method`` column is ``method``, its ``event_id`` are events
    of ``events``, and its visible momenta (``rec_tau - rec_nu`` of the ``ok`` rows) are the
    measured ones of those events (so an output of the nominal file given for a detector
    variation, or the reverse, is refused). Raises :class:`TomographyError` naming both
    files."""
    path = Path(path)
    try:
        recon = read_events(path, require=("method",))
    except (SchemaError, OSError) as err:
        raise TomographyError(f"{path} (given as the {method} output for {events_path}): "
                              f"not a method-output file: {err}") from err
    if "event_id" not in recon.column_names:
        raise TomographyError(f"{path}: a method-output table needs an event_id column")
    labels = sorted(set(pc.unique(recon["method"]).to_pylist()))
    if labels and labels != [method]:
        raise TomographyError(f"{path} holds the output of method {', '.join(labels)}, but it "
                              f"was given as the {method} output for {events_path}")
    ids = column_array(events, "event_id")
    rid = column_array(recon, "event_id")
    foreign = ~np.isin(rid, ids)
    if foreign.any():
        made = _find(read_metadata(path), "input")
        raise TomographyError(
            f"{path} does not belong to {events_path}: {len(np.unique(rid[foreign]))} of its "
            f"{len(np.unique(rid))} event_id are not in that file"
            + (f" (it was made from {made})" if made else "")
            + f"; make the {method} output of these events with: "
            + _make_hint(Path(events_path), method))
    first = np.asarray(column_array(recon, "rec_status") == "ok")
    if "candidate" in recon.column_names:
        first &= column_array(recon, "candidate") == 0
    if first.any():
        order = np.argsort(ids)
        rows = order[np.searchsorted(ids[order], rid[first])]
        xyz = ("px", "py", "pz")
        for leg in ("p", "m"):
            vis = _p4(events, "reco_chg", leg, xyz).astype(float) \
                + np.nan_to_num(_p4(events, "reco_neu", leg, xyz).astype(float))
            tau = _p4(recon, "rec_tau", leg, xyz)[first].astype(float)
            nu = _p4(recon, "rec_nu", leg, xyz)[first].astype(float)
            tol = 1e-6 * (1.0 + np.abs(tau).sum(1) + np.abs(nu).sum(1))
            off = np.any(np.abs(tau - nu - vis[rows]) > tol[:, None], axis=1)
            if off.any():
                raise TomographyError(
                    f"{path} does not belong to {events_path}: the visible momenta of "
                    f"{int(off.sum())} of its {int(first.sum())} reconstructed events "
                    "(rec_tau - rec_nu) differ from the measured ones in that file (an output "
                    "of another detector variation of the same events?); make the "
                    f"{method} output of these events with: "
                    + _make_hint(Path(events_path), method))
    return recon


def _file_seed(path: str | Path) -> Any:
    """The ``seed`` setting a method-output file was made with (None if not recorded)."""
    settings = read_metadata(path).get("settings")
    return settings.get("seed") if isinstance(settings, Mapping) else None


def _only(table: pa.Table, ids: NDArray[Any]) -> pa.Table:
    """The rows of a method-output table whose event_id is in ``ids``."""
    return table.filter(pc.is_in(table["event_id"], value_set=pa.array(ids)))


def _as_list(files: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(files, str | Path):
        return [Path(files)]
    return [Path(f) for f in files]


#: Detector-config fields a named systematic variation changes (ditau.detector.SYSTEMATICS).
_VARIED: Final[frozenset[str]] = frozenset({"tes", "jes", "soft_met_scale",
                                            "soft_met_resolution", "ip_resolution"})


def check_variation(nominal: str | Path, nominal_table: pa.Table, variation: str | Path,
                    variation_table: pa.Table, name: str | None = None) -> None:
    """A detector variation must be the nominal's events through the same detector with the
    same random numbers, shifted: the same event ids in the same order, the same generated
    input, the same detector seed and settings except the systematic handles. Raises
    :class:`TomographyError` naming both files and what differs."""
    a = column_array(nominal_table, "event_id")
    b = column_array(variation_table, "event_id")
    if len(a) != len(b) or not np.array_equal(a, b):
        n_diff = len(np.setxor1d(a, b))
        raise TomographyError(
            f"{variation}: not the same events as {nominal} ({len(b)} against {len(a)} events, "
            f"{n_diff} event ids in one file only): a variation must be 'ditau detector' run on "
            "the same generated file with --systematic")
    ma, mb = read_metadata(nominal), read_metadata(variation)
    made = mb.get("systematic")
    if name is not None and made is not None and made != name:
        raise TomographyError(f"{variation}: made with --systematic {made}, given as the "
                              f"variation {name!r}")
    if made == "nominal" or (made is None and isinstance(mb.get("detector_config"), Mapping) \
            and mb.get("detector_config") == ma.get("detector_config")):
        raise TomographyError(f"{variation}: the nominal detector run, not a variation "
                              f"(given as {name!r})")
    ia = (ma.get("input_identity") or {}).get("run_id") or ma.get("input")
    ib = (mb.get("input_identity") or {}).get("run_id") or mb.get("input")
    if ia is not None and ib is not None and ia != ib:
        raise TomographyError(f"{variation}: made from another generated file than {nominal} "
                              f"({ib} against {ia})")
    ca, cb = ma.get("detector_config"), mb.get("detector_config")
    if isinstance(ca, Mapping) and isinstance(cb, Mapping):
        diff = sorted(k for k in set(ca) | set(cb)
                      if k not in _VARIED and ca.get(k) != cb.get(k))
        if diff:
            raise TomographyError(
                f"{variation}: detector settings differ from {nominal} beyond the systematic "
                f"handles: {', '.join(f'{k} = {cb.get(k)!r} against {ca.get(k)!r}' for k in diff)}"
                " (a variation reuses the nominal's random numbers: same seed and settings)")


def _check_files(path: Path, methods: tuple[str, ...], recon: Mapping[str, str | Path],
                 variations: Mapping[str, str | Path],
                 variation_recon: Mapping[str, Mapping[str, str | Path]],
                 nu_sampling_recon: Mapping[str, Sequence[str | Path] | str | Path]) -> None:
    """Every requested method has its method-output file on the nominal and on each
    variation file (method ``truth`` needs none); raise :class:`TomographyError` saying which
    is missing and the command that makes it."""
    if "truth" in recon:
        raise TomographyError("method 'truth' uses the generated taus and takes no "
                              f"method-output file (got {recon['truth']})")
    for m in methods:
        if m != "truth" and m not in recon:
            raise TomographyError(
                f"method {m!r} has no method-output file for {path} (the tomography reads "
                f"method outputs, it does not run methods): make it with '{_make_hint(path, m)}'"
                f" and give it as --recon {m}=FILE (Python: recon={{{m!r}: FILE}})")
    for v, vmap in variation_recon.items():
        if v not in variations:
            raise TomographyError(f"method outputs given for variation {v!r}, which is not "
                                  "among the variations (give its events with --variation "
                                  f"{v}=FILE)")
        for m in vmap:
            if m not in methods or m == "truth":
                raise TomographyError(f"{vmap[m]}: given as the {m} output on variation {v!r}, "
                                      f"but {m!r} is not a method of this run (give its "
                                      f"nominal output with --recon {m}=FILE)")
    for v, vpath in variations.items():
        try:
            vnames = set(pq.read_schema(vpath).names)
        except (OSError, pa.ArrowException):
            vnames = set()  # unreadable: named when it is read
        if "method" in vnames and "rec_status" in vnames:
            raise TomographyError(f"--variation {v} {vpath}: a method-output file ('ditau "
                                  "reconstruct'), not a detector-level event file (make it "
                                  f"with 'ditau detector GENERATED -o FILE --systematic {v}')")
        for m in methods:
            if m != "truth" and m not in variation_recon.get(v, {}):
                raise TomographyError(
                    f"method {m!r} has no method-output file for the variation {v!r} "
                    f"({vpath}): make it with '{_make_hint(Path(vpath), m)}' and give it as "
                    f"--variation-recon {v}:{m}=FILE (Python: variation_recon={{{v!r}: "
                    f"{{{m!r}: FILE}}}})")
    for m, files in nu_sampling_recon.items():
        if m not in methods or m == "truth":
            raise TomographyError(f"neutrino-sampling outputs given for {m!r}, which is not a "
                                  f"method of this run with a --recon {m}=FILE")
        seen = {str(recon[m]): _file_seed(recon[m])}
        for f in _as_list(files):
            s = _file_seed(f)
            same = [g for g, t in seen.items() if s is not None and t == s]
            if same:
                raise TomographyError(
                    f"{f}: made with the same {m} seed ({s}) as {same[0]}: its candidates are "
                    f"the same and give no neutrino-sampling spread; make it with another "
                    f"seed: {_make_hint(path, m)} --seed N")
            seen[str(f)] = s


def run_tomography(events_path: str | Path, methods: Sequence[str] | None = None,
                   recon: Mapping[str, str | Path] | None = None,
                   variations: Mapping[str, str | Path] | None = None,
                   variation_recon: Mapping[str, Mapping[str, str | Path]] | None = None,
                   backgrounds: Sequence[str | Path] = (),
                   background_recon: Mapping[str, Mapping[str, str | Path]] | None = None,
                   rho: str = "polarimeter",
                   n_hypotheses: int = 12, n_boot: int = 10, seed: int = 0,
                   min_events: int = MIN_EVENTS, reference_yields: bool = False,
                   nu_sampling_recon: Mapping[str, Sequence[str | Path]] | None = None,
                   candidate_average: bool = True, progress: Any = None,
                   analysis: str = "both", bins: int = 2, closure: bool = True,
                   observable: str = "moments") -> TomographyResult:
    """Run the tomography (module docstring) and return the per-method results.

    The tomography reads method-output files (``ditau reconstruct EVENTS -o FILE --method
    NAME [--sr-only]``) and never runs a method:

    - ``recon``: method name -> its output on ``events_path``; every method of ``methods``
      but ``truth`` (the generated taus) needs one. ``methods`` defaults to ``truth`` plus
      the methods of ``recon``; methods of ``recon`` not in ``methods`` are added.
    - ``variations``: detector-variation name (``tes_up``, ...: the systematic source is the
      name without ``_up``/``_down``) -> the same events through that variation;
      ``variation_recon``: variation name -> {method -> its output on that variation file},
      needed for every method but ``truth``.
    - ``backgrounds``: detector-level background files (one per sample: zll, wlnu, ...);
      ``background_recon``: background sample name -> {method -> its output on that file}.
      With it the fit takes each background's own analyser distribution per method (every
      method but ``truth`` then needs one per background); without it, the background's
      yield in the shape of the signal's unpolarised template (labelled approximation).
    - ``nu_sampling_recon``: method -> outputs on ``events_path`` made with other noise seeds
      (``ditau reconstruct ... --method ml --seed N``); their spread of the calibrated D gives
      the neutrino-sampling uncertainty (none for a method without them).

    Each file is checked against the events it is given for (:func:`read_method_output`).
    ``candidate_average`` (default): for methods with sampled candidates (ML), average each
    event's analyser products (calibration) and moment observables (fit) over its candidates
    (:func:`method_sample`), the posterior mean; False: the point estimate's analysers.

    ``reference_yields``: use the reference study's signal-region yields per channel (and its
    total background shared in proportion) instead of this sample's and ``backgrounds``, to
    compare significances at the reference's event counts.

    ``analysis``: 'fit' (the profile-likelihood fit of the 15 spin parameters to the
    detector-level histograms, :mod:`ditau.tomography.measurement`, with ``bins`` bins per
    analyser component and, with ``closure``, its closure tests; ``observable``: 'moments'
    (default) or 'signs', :class:`~ditau.tomography.measurement.Observable`), 'calibration' (the
    calibration of diag C, the cross-check) or 'both'.

    Raises :class:`TomographyError` for a missing or mismatched input file.
    """
    if analysis not in ("fit", "calibration", "both"):
        raise TomographyError(f"analysis must be 'fit', 'calibration' or 'both', not "
                              f"{analysis!r}")
    if bins not in (1, 2, 3):
        raise TomographyError(f"bins per analyser component must be 1, 2 or 3, not {bins}")
    start = time.perf_counter()
    path = Path(events_path)
    recon = dict(recon or {})
    variations = dict(variations or {})
    variation_recon = {v: dict(m) for v, m in (variation_recon or {}).items()}
    nu_files = {m: _as_list(f) for m, f in (nu_sampling_recon or {}).items()}
    base = ("truth",) if methods is None else tuple(methods)
    methods = tuple(dict.fromkeys(base + tuple(recon)))
    _check_files(path, methods, recon, variations, variation_recon, nu_files)
    ev = _read(path)
    ids = column_array(ev, "event_id")
    res = TomographyResult(path, analysis=analysis)
    say = progress or (lambda msg: None)

    truth, in_spin, truth_an = truth_sample(ev)
    cal_half = (ids % 2 == 0)
    # the detector-level (pseudo-data and calibration) sample: every signal-region event,
    # whatever its truth decay modes (no truth-mode cut: data has none)
    sr = column_array(ev, "in_sr").astype(bool)
    sel = ev.filter(pa.array(sr))
    sel_ids = column_array(sel, "event_id")
    sel_cal = sel_ids % 2 == 0
    dat_ids = sel_ids[~sel_cal]
    # read and check every method output first (a bad file stops the run before the work);
    # keep only the rows the tomography uses
    rtabs = {m: _only(read_method_output(f, m, ev, path), sel_ids) for m, f in recon.items()}
    var_tables = {}
    var_sr: dict[str, pa.Table] = {}
    var_recon: dict[str, dict[str, pa.Table]] = {}
    for name, vpath in variations.items():
        vt = _read(Path(vpath), f"--variation {name}")
        check_variation(path, ev, vpath, vt, name)
        var_recon[name] = {m: read_method_output(f, m, vt, vpath)
                           for m, f in variation_recon.get(name, {}).items()}
        var_sr[name] = vt.filter(pa.array(column_array(vt, "in_sr").astype(bool)))
        var_tables[name] = var_sr[name].filter(
            pa.array(np.isin(column_array(var_sr[name], "event_id"), dat_ids)))
    # other noise seeds' outputs: every selected event (the fit's templates and pseudo-data);
    # the calibration uses their pseudo-data half
    nu_all = {m: [_only(read_method_output(f, m, ev, path), sel_ids) for f in files]
              for m, files in nu_files.items()}
    nu_tables = {m: [_only(t, dat_ids) for t in ts] for m, ts in nu_all.items()}

    t_cal = truth.subset(np.flatnonzero(cal_half))
    t_dat = truth.subset(np.flatnonzero(~cal_half))
    c_truth_dat, cov_truth_dat, _ = diag_correlation(t_dat)
    # one set of spin hypotheses (weights from the truth analysers) for every method
    hyp = spin_hypotheses(t_cal, n_hypotheses, seed)
    res.truth_inclusive = _truth_inclusive(truth_an, in_spin, spin_weights(ev),
                                           None if truth.state is None else truth.state[2])

    # position of each selected event in the calibration-half truth arrays
    cal_pos = np.searchsorted(ids[cal_half], sel_ids[sel_cal])
    chan = column_array(sel, "reco_channel")
    w_sr = event_weights(sel)
    # each background file read once: its yields and, for their own shapes, its events
    bfiles = read_background_files(
        backgrounds, events=bool(background_recon) and analysis != "calibration")
    bkg = bfiles.yields
    if not backgrounds and not reference_yields:
        res.notes.append("no background files given: background yields taken as 0")
    bkg_recon = _background_recon(bfiles, background_recon, methods, analysis)
    if backgrounds and analysis != "calibration":
        res.notes.append(
            "fit backgrounds: each background's own reconstructed analyser distribution per "
            "method" + (" (truth: the signal's unpolarised shape, a background has no generated"
                        " taus)" if "truth" in methods else "")
            if bkg_recon is not None else
            "fit backgrounds: their yields in the shape of the signal's unpolarised template "
            "(labelled approximation; give each background's method outputs with "
            "--background-recon SAMPLE:METHOD=FILE for their own shapes)")
    res.yields = {ch: (float(w_sr[chan == ch].sum()), bkg[ch]) for ch in CHANNELS}
    if reference_yields:
        tot = sum(REFERENCE_SIGNAL.values())
        res.yields = {ch: (REFERENCE_SIGNAL[ch], REFERENCE_BACKGROUND_TOTAL
                           * REFERENCE_SIGNAL[ch] / tot) for ch in CHANNELS}
        res.notes.append("yields: the reference study's signal-region yields per channel "
                         f"and its {REFERENCE_BACKGROUND_TOTAL:g}/fb^-1 background")
    meta = read_metadata(path)
    flt = _find(meta, "tau_filter")
    if flt:
        res.notes.append(f"truth level = the generated phase space, which has a generator-"
                         f"level tau filter {flt}: the truth-level C is fiducial to it")
    if analysis != "fit" and n_boot < 2:
        res.notes.append("calibration: its MC statistics not estimated (n_boot < 2): the "
                         "cross-check's errors leave them out")
    spin_meta = _find(meta, "spin")
    split_all = ids.astype(np.int64) % SPLIT_MOD
    ref_scale = None
    if reference_yields or analysis != "calibration":
        ours = {ch: float(w_sr[chan == ch].sum()) for ch in CHANNELS}
        ref_scale = {ch: REFERENCE_SIGNAL[ch] / ours[ch] if ours[ch] > 0 else 0.0
                     for ch in CHANNELS}
    for method in methods:
        say(f"tomography: {method}")
        rtab = rtabs.get(method)
        det = method_sample(sel, method, rtab, rho, candidate_average)
        n_lost = len(det) - int(det.valid.sum())
        if n_lost:  # say why events drop out of this method's measurement
            solved = int(method_taus(sel, method, rtab)[2].sum())
            res.notes.append(
                f"{method}: {n_lost} of {len(det)} signal-region events without a measurement "
                f"({len(det) - solved} without a method solution, {solved - (len(det) - n_lost)}"
                " with analysers undefined" + (" for some candidate" if candidate_average and
                                               n_candidates(rtab) else "") + ")")
        if n_candidates(rtab):
            res.notes.append(
                f"{method}: analysers " + (f"averaged over its {n_candidates(rtab)} sampled "
                                           "candidates per event (posterior mean)"
                                           if candidate_average else
                                           "of the point estimate (not averaged over its "
                                           f"{n_candidates(rtab)} candidates)"))
        if analysis != "calibration":
            x = _fit_inputs(sel, det, spin_meta, bins)
            var_x: dict[str, list[SpinInputs | None]] = {}
            for name, vsel in var_sr.items():
                src = name.removesuffix("_up").removesuffix("_down")
                vdet = method_sample(vsel, method, var_recon[name].get(method), rho,
                                     candidate_average)
                slot = var_x.setdefault(src, [None, None])
                slot[1 if name.endswith("_down") else 0] = _fit_inputs(vsel, vdet, spin_meta,
                                                                       bins)
            b_in: Mapping[str, float] | BackgroundInputs = bkg
            if bkg_recon is not None and method != "truth":
                b_in = background_inputs(bkg_recon[0], {k: v[method] for k, v in
                                                        bkg_recon[1].items()},
                                         method, rho, bins, candidate_average)
            # the same events measured with the method's other noise seeds (generative)
            resampled = tuple(_fit_inputs(sel, method_sample(sel, method, t, rho,
                                                             candidate_average),
                                          spin_meta, bins)
                              for t in nu_all.get(method, ()))
            if len(x.u) >= min_events:
                # our background files; at the reference's yields scaled with the signal
                res.fits[method] = measure_method(
                    method, x, split_all, CHANNELS, b_in,
                    {k: (v[0] if v[0] is not None else v[1], v[1] if v[0] is not None else None)
                     for k, v in var_x.items()},
                    ref_scale, bins, closure=closure, seed=seed, progress=say,
                    observable=observable, resampled=resampled)
            else:
                res.notes.append(f"{method}: only {len(x.u)} signal-region events with a "
                                 f"measurement (need {min_events}): not fitted")
        if analysis == "fit":
            continue
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
        for name, vsel in var_tables.items():
            src = name.removesuffix("_up").removesuffix("_down")
            vdet = method_sample(vsel, method, var_recon[name].get(method), rho,
                                 candidate_average)
            # nominal on the same events (a variation file may hold a subset of the sample)
            same = np.isin(dat_ids, column_array(vsel, "event_id"))
            nom = cal.apply(diag_correlation(d_dat.subset(np.flatnonzero(same)))[0])[0]
            shift = cal.apply(diag_correlation(vdet)[0])[0] - nom
            if src not in syst or np.linalg.norm(shift) > np.linalg.norm(syst[src]):
                syst[src] = shift
        nu = None
        if nu_tables.get(method):
            nu = _nu_sampling(sel.filter(pa.array(~sel_cal)), method, nu_tables[method], cal,
                              c_cal, cov_cal, rho, candidate_average)
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


def _background_recon(backgrounds: BackgroundFiles,
                      background_recon: Mapping[str, Mapping[str, str | Path]] | None,
                      methods: tuple[str, ...], analysis: str
                      ) -> tuple[dict[str, tuple[Path, pa.Table]],
                                 dict[str, dict[str, pa.Table]]] | None:
    """The background files' events (``backgrounds``, read with their events:
    :func:`read_background_files`) and, per sample and method, the checked method output on
    it (None without ``background_recon``). Raises :class:`TomographyError` for an output of
    an unknown background or method, a missing one, or one that does not belong to its
    file."""
    if not background_recon:
        return None
    if analysis == "calibration":
        raise TomographyError("background method outputs shape the fit's backgrounds; with "
                              "analysis 'calibration' there is no fit")
    bk = backgrounds.events
    out: dict[str, dict[str, pa.Table]] = {}
    for name, per in background_recon.items():
        if name not in bk:
            raise TomographyError(
                f"method outputs given for the background {name!r}, which is not among the "
                f"background files (their samples: {sorted(bk) or 'none'}; give its events "
                "with --background FILE)")
        for m, f in per.items():
            if m not in methods or m == "truth":
                raise TomographyError(f"{f}: given as the {m} output on the background {name!r}"
                                      f", but {m!r} is not a method of this run")
    for name, (bpath, t) in bk.items():
        per = background_recon.get(name, {})
        out[name] = {}
        for m in methods:
            if m == "truth":
                continue
            if m not in per:
                raise TomographyError(
                    f"method {m!r} has no method-output file for the background {name!r} "
                    f"({bpath}): make it with '{_make_hint(bpath, m)}' and give it as "
                    f"--background-recon {name}:{m}=FILE")
            out[name][m] = _only(read_method_output(per[m], m, t, bpath),
                                 column_array(t, "event_id"))
    return bk, out


def _fit_inputs(table: pa.Table, det: SpinSample, spin_meta: Any, bins: int) -> SpinInputs:
    """The fit's per-event inputs of a method's detector-level sample (valid rows)."""
    return inputs_for(table, det.h_p, det.h_m, det.valid,
                      spin_meta if isinstance(spin_meta, Mapping) else None, bins,
                      event_weights(table), spin_weights(table), obs=det.obs)


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


def _truth_inclusive(an: Analysers, in_spin: NDArray[np.bool_],
                     spin_weight: NDArray[np.float64],
                     state_c: NDArray[np.float64] | None = None) -> dict[str, Any]:
    """Full B, C and the quantum observables of all produced events (truth analysers), each
    weighted by its spin weight (a ``spin: weights`` sample is unpolarised without it); with
    ``state_c`` (N, 3, 3), the C of each event's Standard-Model state (:func:`truth_sample`'s
    ``state``: m-hat, flavour, cos Theta), ``expected``: the LO expectation for the same
    events, those states averaged with the measurement's weights (like-for-like with the
    measured C, which is fiducial to the generator-level filter and window; the inclusive LO
    table is not)."""
    from ditau.tomography import quantum
    from ditau.tomography.estimators import measure
    from ditau.tomography.quantum import quantum_observables

    ok = np.asarray(an.valid, bool) & in_spin
    w = np.asarray(an.kappa_p * an.kappa_m, float) ** 2 * np.asarray(spin_weight, float)
    obs = measure(an.h_p, an.h_m, an.kappa_p, an.kappa_m, weights=w, valid=ok)
    q = quantum_observables(obs, n_toys=2000, seed=0)
    out: dict[str, Any] = {"observables": obs, "quantum": q, "d": witness_d(np.diag(obs.C))}
    wk = np.where(ok & np.isfinite(w), w, 0.0)
    if state_c is not None and wk.sum() > 0:
        # the expectation of the estimator: the events' states averaged with its weights
        c = np.einsum("n,nij->ij", wk, state_c) / wk.sum()
        zero = np.zeros(3)
        out["expected"] = {
            "n": int(ok.sum()), "C": c, "D": float(quantum.witness_d(c)),
            "m12": float(quantum.horodecki_m12(c)),
            # as the LO table: the concurrence of (B = 0, C)
            "concurrence": float(quantum.concurrence(quantum.density_matrix(zero, zero, c)))}
    return out
