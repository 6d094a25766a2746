"""ML reconstruction vs the classical methods: resolution, robustness, throughput.

    python benchmarks/ml.py EVENTS.parquet [--model NAME=MODEL ...] [--candidates 10] [--all]
        [--max-events N] [--skip-mmc] [--higgs EVENTS_125.parquet] [--constraint]
        [--throughput-events 5000] [--threads N] [--seed 0]

EVENTS: a held-out detector-level file with truth (not used in the training); MODEL: a file
written by ``ditau train`` or a shipped model's name, labelled NAME in the tables (repeatable:
several models side by side, e.g. a generative model and its regression baseline; default:
the shipped model). Signal-region events only unless --all (then every event of the 7 reco
channels). Prints, on this machine:

1. the HWHM table (``ditau.evaluate``) of ML (median and constraint point estimates) vs MMC,
   FastMTT and collinear per channel, and dm_tautau next to the reference's ML and MMC;
2. robustness: MET shifted by +-1 GeV along its direction, and all inputs (visible objects,
   jets, MET) scaled by +3%: peak and HWHM of dm_tautau over all selected events, and the
   median per-event change of m_tautau against the nominal;
3. the calibration of the per-event uncertainty (candidate spread): pulls (point estimate -
   truth)/spread of each neutrino component and of m_tautau, the coverage of the candidates'
   range and the rank of the truth among the K candidates (uniform for a calibrated
   posterior), next to the same numbers for an exactly calibrated Gaussian posterior;
4. the tau direction, which the spin analysers need at the scale of the boost's opening angle
   1/gamma: the median angle x gamma between each method's and the true tau per reco channel
   and leg type (issue #16 goal <= 0.35), and the fraction within 0.3/gamma; and <cos dphi>
   of the neutrino's azimuth about the visible axis against the truth, with the direction of
   the tracks' impact-parameter vector as the reference of what the tracks alone tell;
5. the rest-frame spin analysers: median |h_reco - h_true| of each component (k, r, n) of the
   tomography's analysers (rho: optimal polarimeter), reco visible products with each
   method's taus against the truth analysers, with "truth tau" (reco visible products, true
   taus) as the floor set by the visible objects' measurement;
6. the m_tautau bias: median(reco/true) - 1 in true-m_tautau bins 60-80, 80-100, 100-120 GeV
   (goal |bias| <= 2 %), and with --higgs (a held-out sample at m-hat ~ 125 GeV) its
   reconstructed peak and median against the true mass (goal within 3 %);
7. ML inference throughput with K candidates (default 10) on CPU, and on CUDA if present.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ditau.evaluate.hwhm import half_max
from ditau.evaluate.resolution import TRUTH_COLUMNS, residuals, resolution_table
from ditau.ml.features import IP_COLUMNS, JET_COLUMNS, TARGETS
from ditau.ml.infer import predict, resolve_model, tau_four_momenta
from ditau.ml.model import count_parameters
from ditau.physics import ANALYSIS_CHANNELS, M_TAU, REFERENCE_ORDER, mass
from ditau.physics import pt as pt_of
from ditau.physics.fourvec import as_p4_array, p4_from_columns
from ditau.reconstruct import INPUT_COLUMNS, get_method, inputs_from_table
from ditau.reconstruct.ml import ml
from ditau.tomography.analysers import from_reco as analysers_from_reco
from ditau.tomography.analysers import from_truth as analysers_from_truth
from machine import describe_machine  # benchmarks/machine.py


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{describe_machine()}, {gpu}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)")


def read_table(path: Path, all_events: bool, max_events: int | None) -> pa.Table:
    ids = ["event_id", "sample", "weight", "gen_weight"]
    names = set(pq.read_schema(path).names)
    truth_an = {f"{p}_{c}_{leg}" for p in ("chg", "neu") for c in ("px", "py", "pz", "e")
                for leg in ("p", "m")} | {"decay_mode_p", "decay_mode_m"}
    cols = sorted(set(ids) | set(INPUT_COLUMNS) | set(JET_COLUMNS) | set(TRUTH_COLUMNS)
                  | set(TARGETS) | {"reco_channel", "in_sr", "tau_e_p", "tau_e_m"}
                  | (set(IP_COLUMNS) & names) | (truth_an & names)
                  | {f"nu_{c}_{leg}" for c in ("px", "py", "pz") for leg in ("p", "m")})
    t = pq.read_table(path, columns=cols)
    ch = np.asarray(t["reco_channel"].to_pylist())
    keep = np.isin(ch, ANALYSIS_CHANNELS)
    if not all_events:
        keep &= t["in_sr"].to_numpy(zero_copy_only=False)
    t = t.filter(pa.array(keep))
    if max_events is not None:
        t = t.slice(0, max_events)
    if t.num_rows == 0:
        raise SystemExit(f"{path}: no selected events")
    return t


def run_methods(t: pa.Table, models: dict[str, object], k: int, seed: int, skip_mmc: bool,
                ml_only: bool = False, constraint: bool = False
                ) -> tuple[dict[str, pa.Table], dict[str, float]]:
    """Every model (point estimate: median of the K candidates; with ``constraint`` also the
    constraint point of the first) and the classical methods on the table ``t``."""
    inp = inputs_from_table(t)
    out: dict[str, pa.Table] = {}
    secs: dict[str, float] = {}
    runs = [(f"ml {label}", model, "median") for label, model in models.items()]
    if constraint:
        label, model = next(iter(models.items()))
        runs.append((f"ml {label} (constraint)", model, "constraint"))
    for name, model, point in runs:
        t0 = time.perf_counter()
        out[name] = ml(inp, table=t, model=model, candidates=k, point=point, seed=seed)
        secs[name] = time.perf_counter() - t0
    if ml_only:
        return out, secs
    for name in ("mmc", "fastmtt", "collinear"):
        if name == "mmc" and skip_mmc:
            continue
        t0 = time.perf_counter()
        out[name] = get_method(name)(inp)
        secs[name] = time.perf_counter() - t0
    return out, secs


def varied(t: pa.Table, kind: str) -> pa.Table:
    """The input table with a robustness variation applied (truth columns untouched)."""
    d = {n: t[n] for n in t.column_names}
    mx, my = t["met_x"].to_numpy(), t["met_y"].to_numpy()
    if kind in ("met+1", "met-1"):
        shift = 1.0 if kind == "met+1" else -1.0
        met = pt_of(mx, my)
        f = np.where(met > 0, (met + shift) / np.where(met > 0, met, 1.0), 1.0)
        d["met_x"], d["met_y"] = pa.array(mx * f), pa.array(my * f)  # |MET| -> |MET| +- 1 GeV
    elif kind == "scale+3%":
        scaled = [c for c in (*INPUT_COLUMNS, *JET_COLUMNS)
                  if c.startswith(("reco_chg_", "reco_neu_", "jet")) or c in ("met_x", "met_y")]
        for c in scaled:
            d[c] = pa.array(t[c].to_numpy(zero_copy_only=False) * 1.03)
    else:
        raise ValueError(kind)
    return pa.table(d)


def robustness(t: pa.Table, models: dict[str, object], k: int, seed: int,
               skip_mmc: bool) -> None:
    print("\n## Robustness: dm_tautau over all selected events (peak, HWHM in %), and the "
          "median |m(varied)/m(nominal) - 1| per event (%)\n")
    nominal, _ = run_methods(t, models, k, seed, skip_mmc)
    print("| method | variation | peak | HWHM | median per-event change |")
    print("|---|---|---|---|---|")
    for kind in ("nominal", "met+1", "met-1", "scale+3%"):
        recs = nominal if kind == "nominal" else run_methods(varied(t, kind), models, k, seed,
                                                             skip_mmc)[0]
        for name, rec in recs.items():
            res = residuals(t, rec)
            hm = half_max(res["dm_tautau"])
            base = residuals(t, nominal[name])
            common, ia, ib = np.intersect1d(res["event_id"], base["event_id"],
                                            return_indices=True)
            change = np.median(np.abs(res["m_rec"][ia] / base["m_rec"][ib] - 1)) \
                if len(common) else math.nan
            print(f"| {name} | {kind} | {100 * hm.peak:+.2f} | {100 * hm.hwhm:.2f} | "
                  f"{100 * change:.2f} |")


def _calib_stats(point: np.ndarray, spread: np.ndarray, cands: np.ndarray,
                 truth: np.ndarray) -> tuple[float, float, float, float, float]:
    """(median pull, 68 % half-width of the pulls, fraction |pull| < 1, fraction of truths
    inside the candidates' range, chi2/ndf of the truth's rank histogram vs uniform)."""
    ok = np.isfinite(truth) & (spread > 0)
    pull = (point[ok] - truth[ok]) / spread[ok]
    q16, q50, q84 = np.percentile(pull, [16, 50, 84])
    inside = np.mean((truth[ok] >= cands[ok].min(1)) & (truth[ok] <= cands[ok].max(1)))
    k = cands.shape[1]
    rank = np.sum(cands[ok] < truth[ok][:, None], axis=1)
    h = np.bincount(rank, minlength=k + 1).astype(float)
    expect = len(rank) / (k + 1)
    chi2 = float(np.sum((h - expect) ** 2 / expect)) / k
    return float(q50), float((q84 - q16) / 2), float(np.mean(np.abs(pull) < 1)), \
        float(inside), chi2


def uncertainty_calibration(t: pa.Table, label: str, model: object, k: int, seed: int) -> None:
    print(f"\n## Per-event uncertainty of {label}: candidate spread of {k} candidates (point "
          "estimate: median)\n")
    pred = predict(inputs_from_table(t), table=t, model=model, candidates=k, seed=seed)
    rows, inp = pred.rows, pred.inputs
    if pred.on_shell is not None:  # visible-frame targets: candidates on the tau mass shell
        print(f"legs without a real on-shell solution (polar angle clamped to the nearest "
              f"physical one, flagged): {100 * (1 - pred.on_shell.mean()):.2f} % of "
              f"{pred.on_shell.size} sampled legs\n")
    truth = np.stack([t[c].to_numpy(zero_copy_only=False) for c in TARGETS], 1)[rows]
    taus = [tau_four_momenta(v[rows][:, None, :], pred.nu[..., 3 * j:3 * j + 3])
            for j, v in enumerate((inp.vis_p, inp.vis_m))]
    m_cand = mass((taus[0] + taus[1]).reshape(-1, 4)).reshape(len(rows), k)
    m_true = t["m_tautau"].to_numpy(zero_copy_only=False)[rows]
    # the same statistics for an exactly calibrated Gaussian posterior (truth and the K
    # candidates drawn from one distribution), as the reference of this run
    rng = np.random.default_rng(seed)
    g_c = rng.standard_normal((200_000, k))
    g_t = rng.standard_normal(200_000)
    ref = _calib_stats(np.median(g_c, 1), g_c.std(1), g_c, g_t)
    print("| quantity | median pull | pull 68% half-width | abs(pull) < 1 | truth inside the "
          "candidates' range | rank chi2/ndf |")
    print("|---|---|---|---|---|---|")
    rows_out = [(name, pred.point[:, j], pred.nu_std[:, j], pred.nu[:, :, j], truth[:, j])
                for j, name in enumerate(TARGETS)]
    rows_out.append(("m_tautau", pred.m_point, pred.m_std, m_cand, m_true))
    for name, pt, sd, cands, tr in rows_out:
        r = _calib_stats(pt, sd, cands, tr)
        print(f"| {name} | {r[0]:+.2f} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.1f} |")
    print(f"| calibrated Gaussian posterior | {ref[0]:+.2f} | {ref[1]:.2f} | {ref[2]:.2f} | "
          f"{ref[3]:.2f} ({(k - 1) / (k + 1):.2f} exactly) | ~1 |")


def _candidate0(t: pa.Table, rec: pa.Table) -> tuple[np.ndarray, pa.Table]:
    """Rows of ``t`` matching the method's candidate-0 rows, and those rows."""
    r = rec.filter(pa.compute.equal(rec["candidate"], 0))
    ids = t["event_id"].to_numpy()
    order = np.argsort(ids)
    return order[np.searchsorted(ids[order], r["event_id"].to_numpy())], r


def _p4(table: pa.Table, prefix: str, leg: str) -> np.ndarray:
    return as_p4_array(p4_from_columns(table, prefix, f"_{leg}"))


def tau_direction(t: pa.Table, recs: dict[str, pa.Table]) -> None:
    """Median angle x gamma between reconstructed and true tau, per reco channel and leg type
    (hadronic / leptonic), and over all legs with the fraction within 0.3/gamma."""
    print("\n## Tau direction: median angle between the reconstructed and the true tau x "
          "gamma (issue #16 goal <= 0.35 in every channel)\n")
    inv_gamma = {leg: M_TAU / t[f"tau_e_{leg}"].to_numpy() for leg in ("p", "m")}
    print(f"median 1/gamma of the taus: "
          f"{1000 * np.median(np.concatenate(list(inv_gamma.values()))):.1f} mrad\n")
    chan = np.asarray(t["reco_channel"].to_pylist())
    modes = {leg: np.asarray(t[f"reco_mode_{leg}"].to_pylist()) for leg in ("p", "m")}
    channels = [c for c in REFERENCE_ORDER if np.any(chan == c)]
    print("| method | all legs (mrad) | all legs x gamma | < 0.3/gamma | hadronic legs | "
          "leptonic legs | " + " | ".join(channels) + " |")
    print("|---" * (6 + len(channels)) + "|")
    for name, rec in recs.items():
        rows, r = _candidate0(t, rec)
        ok = r["rec_status"].to_numpy(zero_copy_only=False) == "ok"
        ang, scaled, had, ch = [], [], [], []
        for leg in ("p", "m"):
            a = _p4(r, "rec_tau", leg)[:, :3]
            b = _p4(t, "tau", leg)[rows, :3]
            x = np.where(ok, np.arccos(np.clip(_cos(a, b), -1, 1)), np.nan)
            ang.append(x)
            scaled.append(x / inv_gamma[leg][rows])
            had.append(np.isin(modes[leg][rows], ("pi", "rho")))
            ch.append(chan[rows])
        ang_a, sc, hd, cha = (np.concatenate(v) for v in (ang, scaled, had, ch))
        fin = np.isfinite(sc)

        def med(mask: np.ndarray, sc: np.ndarray = sc, fin: np.ndarray = fin) -> str:
            m = fin & mask
            return f"{np.median(sc[m]):.2f}" if m.sum() >= 10 else "-"

        print(f"| {name} | {1000 * np.median(ang_a[fin]):.1f} | {np.median(sc[fin]):.2f} | "
              f"{np.mean(sc[fin] < 0.3):.3f} | {med(hd)} | {med(~hd)} | "
              + " | ".join(med(cha == c) for c in channels) + " |")


def analyser_resolution(t: pa.Table, recs: dict[str, pa.Table]) -> None:
    """Median |h_reco - h_true| per analyser component (k, r, n), both legs together; the
    tomography's analysers (rho: optimal polarimeter)."""
    print("\n## Rest-frame spin analysers: median |h_reco - h_true| per component (both legs; "
          "rho: optimal polarimeter)\n")
    if "chg_px_p" not in t.column_names:
        print("(no truth visible products in this file: skipped)")
        return
    true = analysers_from_truth(t, rho="polarimeter")
    floor = analysers_from_reco(t, _p4(t, "tau", "p"), _p4(t, "tau", "m"), rho="polarimeter")
    print("| method | k | r | n | mean | events |")
    print("|---|---|---|---|---|---|")

    def row(name: str, an: object, rows: np.ndarray) -> None:
        ok = an.valid & true.valid[rows]  # type: ignore[attr-defined]
        d = np.concatenate([np.abs(an.h_p[ok] - true.h_p[rows][ok]),  # type: ignore[attr-defined]
                            np.abs(an.h_m[ok] - true.h_m[rows][ok])])  # type: ignore[attr-defined]
        med = np.median(d, axis=0)
        print(f"| {name} | {med[0]:.4f} | {med[1]:.4f} | {med[2]:.4f} | {med.mean():.4f} | "
              f"{int(ok.sum())} |")

    row("truth tau (reco visible)", floor, np.arange(t.num_rows))
    for name, rec in recs.items():
        rows, r = _candidate0(t, rec)
        ok = r["rec_status"].to_numpy(zero_copy_only=False) == "ok"
        an = analysers_from_reco(t.take(pa.array(rows)), _p4(r, "rec_tau", "p"),
                                 _p4(r, "rec_tau", "m"), rho="polarimeter")
        row(name, dataclasses.replace(an, valid=an.valid & ok), rows)


def _perp(v: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """The component of ``v`` (N, 3) perpendicular to ``axis`` (N, 3)."""
    n = axis / np.linalg.norm(axis, axis=1, keepdims=True)
    return v - np.sum(v * n, 1, keepdims=True) * n


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of the angle between rows (NaN where a vector is zero)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def nu_azimuth(t: pa.Table, recs: dict[str, pa.Table]) -> None:
    """<cos dphi> between the reconstructed and the true neutrino component perpendicular to
    the visible axis (the azimuth of the tau about its visible products, which the
    direction at the 1/gamma scale needs; 0: no information, 1: exact), hadronic legs; and the
    information in the tracks' impact parameters alone: the direction of the IP vector
    (PCA - PV = (-d0 sin phi, d0 cos phi, z0), perpendicular part) of 1-prong hadronic legs,
    which points along the tau flight's component perpendicular to the track."""
    print("\n## Neutrino azimuth about the visible axis: <cos dphi> (reco vs true perpendicular "
          "component), hadronic legs\n")
    vis = {leg: _p4(t, "reco_chg", leg)[:, :3] + np.nan_to_num(_p4(t, "reco_neu", leg)[:, :3])
           for leg in ("p", "m")}
    true = {leg: np.stack([t[f"nu_{c}_{leg}"].to_numpy() for c in ("px", "py", "pz")], 1)
            for leg in ("p", "m")}
    had = {leg: np.isin(np.asarray(t[f"reco_mode_{leg}"].to_pylist()), ("pi", "rho"))
           for leg in ("p", "m")}
    print("| method | <cos dphi> | median cos dphi | legs |")
    print("|---|---|---|---|")
    if "reco_d0_p" in t.column_names:
        c = []
        for leg in ("p", "m"):
            chg = _p4(t, "reco_chg", leg)[:, :3]
            phi = np.arctan2(chg[:, 1], chg[:, 0])
            d0 = t[f"reco_d0_{leg}"].to_numpy(zero_copy_only=False)
            z0 = t[f"reco_z0_{leg}"].to_numpy(zero_copy_only=False)
            r = np.stack([-d0 * np.sin(phi), d0 * np.cos(phi), z0], 1)
            c.append(np.where(had[leg], _cos(_perp(r, chg), _perp(true[leg], vis[leg])),
                              np.nan))
        x = np.concatenate(c)
        x = x[np.isfinite(x)]
        if len(x):
            print(f"| IP vector (reference, no fit) | {x.mean():.3f} +- "
                  f"{x.std() / np.sqrt(len(x)):.3f} | {np.median(x):.3f} | {len(x)} |")
    for name, rec in recs.items():
        rows, r = _candidate0(t, rec)
        ok = r["rec_status"].to_numpy(zero_copy_only=False) == "ok"
        c = []
        for leg in ("p", "m"):
            nu = np.stack([r[f"rec_nu_{q}_{leg}"].to_numpy(zero_copy_only=False)
                           for q in ("px", "py", "pz")], 1)
            v = vis[leg][rows]
            c.append(np.where(ok & had[leg][rows], _cos(_perp(nu, v), _perp(true[leg][rows], v)),
                              np.nan))
        x = np.concatenate(c)
        x = x[np.isfinite(x)]
        print(f"| {name} | {x.mean():.3f} +- {x.std() / np.sqrt(max(len(x), 1)):.3f} | "
              f"{np.median(x):.3f} | {len(x)} |")


MASS_BINS = ((60.0, 80.0), (80.0, 100.0), (100.0, 120.0))


def mass_bias(t: pa.Table, recs: dict[str, pa.Table], title: str = "",
              bins: tuple[tuple[float, float], ...] = MASS_BINS) -> None:
    """median(m_reco/m_true) - 1 in bins of the true m_tautau, and the peak of the relative
    residual (half-maximum method) over all events."""
    m_true = t["m_tautau"].to_numpy()
    print(f"\n## m_tautau bias{title}: median(reco/true) - 1 (%) in true-m_tautau bins "
          "(goal |bias| <= 2 %)\n")
    heads = [f"{lo:.0f}-{hi:.0f} GeV" for lo, hi in bins]
    print("| method | " + " | ".join(heads) + " | all: median | all: peak | all: HWHM |")
    print("|---" * (4 + len(bins)) + "|")
    counts = [int(np.sum((m_true >= lo) & (m_true < hi))) for lo, hi in bins]
    print("| events | " + " | ".join(str(c) for c in counts) + " | | | |")
    for name, rec in recs.items():
        rows, r = _candidate0(t, rec)
        ok = r["rec_status"].to_numpy(zero_copy_only=False) == "ok"
        ratio = np.where(ok, r["rec_m_tautau"].to_numpy(zero_copy_only=False), np.nan) \
            / m_true[rows]
        fin = np.isfinite(ratio)
        cells = []
        for lo, hi in bins:
            sel = fin & (m_true[rows] >= lo) & (m_true[rows] < hi)
            cells.append(f"{100 * (np.median(ratio[sel]) - 1):+.1f}" if sel.sum() >= 20
                         else "-")
        hm = half_max(ratio[fin] - 1)
        print(f"| {name} | " + " | ".join(cells) + f" | {100 * (np.median(ratio[fin]) - 1):+.1f}"
              f" | {100 * hm.peak:+.1f} | {100 * hm.hwhm:.1f} |")


GOAL_EVENTS_PER_S = 1000  # issue #16: 10 candidates per event on 2 CPU cores


def throughput(t: pa.Table, models: dict[str, object], k: int, n: int, seed: int) -> None:
    print(f"\n## ML inference throughput, {k} candidates per event\n")
    reps = max(1, math.ceil(n / t.num_rows))
    big = pa.concat_tables([t] * reps).slice(0, n)
    ids = np.arange(big.num_rows, dtype=np.int64)
    big = big.set_column(big.column_names.index("event_id"), "event_id", pa.array(ids))
    inp = inputs_from_table(big)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"| model | device | events | seconds | events/s | candidates/s | "
          f"ratio to the goal ({GOAL_EVENTS_PER_S} events/s) |")
    print("|---|---|---|---|---|---|---|")
    for label, model in models.items():
        for dev in devices:
            tm = resolve_model(model, dev)  # type: ignore[arg-type]
            ml(big.slice(0, min(256, big.num_rows)), model=tm, candidates=k, seed=seed)  # warm-up
            if dev == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            ml(inp, table=big, model=tm, candidates=k, seed=seed)
            if dev == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            print(f"| {label} | {dev} | {big.num_rows} | {dt:.2f} | {big.num_rows / dt:.0f} | "
                  f"{big.num_rows * k / dt:.0f} | {big.num_rows / dt / GOAL_EVENTS_PER_S:.2f} |")


def parse_models(specs: list[str]) -> dict[str, str | None]:
    """``NAME=MODEL`` (or a bare MODEL, labelled by its file stem) -> {label: model}; none:
    the shipped default model."""
    if not specs:
        return {"shipped": None}
    out: dict[str, str | None] = {}
    for spec in specs:
        label, sep, model = spec.partition("=")
        if not sep:
            label, model = Path(spec).stem, spec
        if not label or not model:
            raise SystemExit(f"--model {spec!r}: expected NAME=MODEL (both non-empty)")
        if label in out:
            raise SystemExit(f"--model {spec!r}: the label {label!r} is given twice")
        out[label] = model
    return out


def describe(label: str, tm: object) -> str:
    c = tm.config  # type: ignore[attr-defined]
    data = tm.data  # type: ignore[attr-defined]
    return (f"model {label}: {count_parameters(tm.model)} parameters, "  # type: ignore[attr-defined]
            f"objective {c.objective}, frame {c.frame}, targets {c.target_frame}, impact "
            f"parameters {'yes' if c.impact_parameters else 'no'}, sampler "
            f"{c.sampler or 'default'} x {c.sample_steps or 'default'} steps; trained on "
            f"{data.get('n_train', '?')} events "
            f"({len(data.get('files', []))} files: "
            f"{', '.join(Path(f['path']).name for f in data.get('files', [])[:4])}"
            f"{', ...' if len(data.get('files', [])) > 4 else ''})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("events", type=Path)
    ap.add_argument("--model", action="append", default=[],
                    help="NAME=MODEL (file or shipped name), repeatable [default: the shipped "
                         "model]")
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--all", action="store_true", help="all events of the 7 reco channels")
    ap.add_argument("--max-events", type=int, default=None)
    ap.add_argument("--skip-mmc", action="store_true")
    ap.add_argument("--skip-robustness", action="store_true")
    ap.add_argument("--constraint", action="store_true",
                    help="also the constraint point estimate of the first model")
    ap.add_argument("--higgs", type=Path, default=None,
                    help="held-out sample at m-hat ~ 125 GeV: peak and bias of m_tautau")
    ap.add_argument("--throughput-events", type=int, default=5000)
    ap.add_argument("--throughput-only", action="store_true",
                    help="only the inference throughput (run it on an idle machine)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# ML benchmark ({time.strftime('%Y-%m-%d')})\n\n{machine()}\n")
    try:
        models = {label: resolve_model(m, "cpu") for label, m in parse_models(args.model).items()}
    except (OSError, ValueError) as err:  # an unknown shipped name, a missing or bad file
        raise SystemExit(f"--model: {err}") from err
    if not args.events.is_file():
        raise SystemExit(f"{args.events}: no such event file")
    for label, tm in models.items():
        print(describe(label, tm))
    try:
        t = read_table(args.events, args.all, args.max_events)
    except (OSError, pa.ArrowException) as err:  # truncated, or not a detector-level file
        raise SystemExit(f"{args.events}: not a readable detector-level event file with truth "
                         f"('ditau detector' output): {str(err).splitlines()[0]}") from err
    if args.throughput_only:
        throughput(t, dict(parse_models(args.model)), args.candidates, args.throughput_events,
                   args.seed)
        return
    print(f"\nevents: {args.events} ({t.num_rows} selected, "
          f"{'all reco-channel events' if args.all else 'signal region'})\n")
    recs, secs = run_methods(t, models, args.candidates, args.seed, args.skip_mmc,
                             constraint=args.constraint)
    table = resolution_table(t, recs, only_sr=not args.all)
    print(table.to_markdown("full"))
    print()
    print(table.to_markdown("mass", reference=True))
    print("\nwall time per method (s): " + ", ".join(f"{k} {v:.2f}" for k, v in secs.items()))
    tau_direction(t, recs)
    nu_azimuth(t, recs)
    analyser_resolution(t, recs)
    mass_bias(t, recs)
    if args.higgs is not None:
        th = read_table(args.higgs, args.all, args.max_events)
        m = th["m_tautau"].to_numpy()
        rh, _ = run_methods(th, models, args.candidates, args.seed, args.skip_mmc)
        lo, hi = np.percentile(m, [0, 100])
        mass_bias(th, rh, f" on {args.higgs.name} ({th.num_rows} events, true m_tautau "
                  f"median {np.median(m):.1f} GeV)", bins=((float(lo), float(hi) + 1e-9),))
    if not args.skip_robustness:
        robustness(t, models, args.candidates, args.seed, args.skip_mmc)
    for label, tm in models.items():
        if tm.config.objective == "regression":
            print(f"\n## Per-event uncertainty of {label}: none (regression: one prediction "
                  "per event, no candidate spread)")
        else:
            uncertainty_calibration(t, label, tm, args.candidates, args.seed)
    throughput(t, {label: m for label, m in parse_models(args.model).items()},
               args.candidates, args.throughput_events, args.seed)


if __name__ == "__main__":
    main()
