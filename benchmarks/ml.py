"""ML reconstruction vs the classical methods: resolution, robustness, throughput.

    python benchmarks/ml.py EVENTS.parquet --model MODEL.pt [--candidates 10] [--all]
        [--max-events N] [--skip-mmc] [--throughput-events 5000] [--threads N] [--seed 0]

EVENTS: a held-out detector-level file with truth (not used in the training); MODEL: a file
written by ``ditau train``. Signal-region events only unless --all (then every event of the 7
reco channels). Prints, on this machine:

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
   1/gamma: the median angle between each method's and the true tau, and the fraction of taus
   reconstructed within 0.3/gamma;
5. ML inference throughput with K candidates (default 10) on CPU, and on CUDA if present.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ditau.evaluate.hwhm import half_max
from ditau.evaluate.resolution import TRUTH_COLUMNS, residuals, resolution_table
from ditau.ml.features import JET_COLUMNS, TARGETS
from ditau.ml.infer import predict, resolve_model, tau_four_momenta
from ditau.ml.model import count_parameters
from ditau.physics import ANALYSIS_CHANNELS, M_TAU, mass
from ditau.physics import pt as pt_of
from ditau.reconstruct import INPUT_COLUMNS, get_method, inputs_from_table
from ditau.reconstruct.ml import ml
from machine import describe_machine  # benchmarks/machine.py


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{describe_machine()}, {gpu}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)")


def read_table(path: Path, all_events: bool, max_events: int | None) -> pa.Table:
    ids = ["event_id", "sample", "weight", "gen_weight"]
    cols = sorted(set(ids) | set(INPUT_COLUMNS) | set(JET_COLUMNS) | set(TRUTH_COLUMNS)
                  | set(TARGETS) | {"reco_channel", "in_sr", "tau_e_p", "tau_e_m"})
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


def run_methods(t: pa.Table, model: object, k: int, seed: int, skip_mmc: bool,
                ml_only: bool = False) -> tuple[dict[str, pa.Table], dict[str, float]]:
    inp = inputs_from_table(t)
    out: dict[str, pa.Table] = {}
    secs: dict[str, float] = {}
    for name, point in (("ml (median)", "median"), ("ml (constraint)", "constraint")):
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


def robustness(t: pa.Table, model: object, k: int, seed: int, skip_mmc: bool) -> None:
    print("\n## Robustness: dm_tautau over all selected events (peak, HWHM in %), and the "
          "median |m(varied)/m(nominal) - 1| per event (%)\n")
    nominal, _ = run_methods(t, model, k, seed, skip_mmc)
    print("| method | variation | peak | HWHM | median per-event change |")
    print("|---|---|---|---|---|")
    for kind in ("nominal", "met+1", "met-1", "scale+3%"):
        recs = nominal if kind == "nominal" else run_methods(varied(t, kind), model, k, seed,
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


def uncertainty_calibration(t: pa.Table, model: object, k: int, seed: int) -> None:
    print(f"\n## Per-event uncertainty: candidate spread of {k} candidates (point estimate: "
          "median)\n")
    pred = predict(inputs_from_table(t), table=t, model=model, candidates=k, seed=seed)
    rows, inp = pred.rows, pred.inputs
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


def tau_direction(t: pa.Table, recs: dict[str, pa.Table]) -> None:
    print("\n## Tau direction: angle between the reconstructed and the true tau\n")
    ids = t["event_id"].to_numpy()
    true = {leg: np.stack([t[f"tau_{c}_{leg}"].to_numpy() for c in ("px", "py", "pz")], 1)
            for leg in ("p", "m")}
    inv_gamma = np.concatenate([M_TAU / t[f"tau_e_{leg}"].to_numpy() for leg in ("p", "m")])
    print(f"median 1/gamma of the taus: {1000 * np.median(inv_gamma):.1f} mrad\n")
    print("| method | median angle (mrad) | median angle x gamma | angle < 0.3/gamma |")
    print("|---|---|---|---|")
    for name, rec in recs.items():
        r = rec.filter(pa.compute.equal(rec["candidate"], 0))
        order = np.argsort(ids)
        rows = order[np.searchsorted(ids[order], r["event_id"].to_numpy())]
        ok = (r["rec_status"].to_numpy(zero_copy_only=False) == "ok")
        ang = []
        for leg in ("p", "m"):
            a = np.stack([r[f"rec_tau_{c}_{leg}"].to_numpy() for c in ("px", "py", "pz")], 1)
            b = true[leg][rows]
            cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            ang.append(np.where(ok, np.arccos(np.clip(cos, -1, 1)), np.nan))
        ang_all = np.concatenate(ang)
        g = np.concatenate([inv_gamma[: len(ids)][rows], inv_gamma[len(ids):][rows]])
        fin = np.isfinite(ang_all)
        print(f"| {name} | {1000 * np.median(ang_all[fin]):.1f} | "
              f"{np.median(ang_all[fin] / g[fin]):.2f} | "
              f"{np.mean(ang_all[fin] < 0.3 * g[fin]):.3f} |")


def throughput(t: pa.Table, model_path: Path | None, k: int, n: int, seed: int) -> None:
    print(f"\n## ML inference throughput, {k} candidates per event\n")
    reps = max(1, math.ceil(n / t.num_rows))
    big = pa.concat_tables([t] * reps).slice(0, n)
    ids = np.arange(big.num_rows, dtype=np.int64)
    big = big.set_column(big.column_names.index("event_id"), "event_id", pa.array(ids))
    inp = inputs_from_table(big)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print("| device | events | seconds | events/s | candidates/s |")
    print("|---|---|---|---|---|")
    for dev in devices:
        tm = resolve_model(model_path, dev)
        ml(big.slice(0, min(256, big.num_rows)), model=tm, candidates=k, seed=seed)  # warm-up
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        ml(inp, table=big, model=tm, candidates=k, seed=seed)
        if dev == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        print(f"| {dev} | {big.num_rows} | {dt:.2f} | {big.num_rows / dt:.0f} | "
              f"{big.num_rows * k / dt:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("events", type=Path)
    ap.add_argument("--model", type=Path, default=None,
                    help="trained model file [default: the shipped model]")
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--all", action="store_true", help="all events of the 7 reco channels")
    ap.add_argument("--max-events", type=int, default=None)
    ap.add_argument("--skip-mmc", action="store_true")
    ap.add_argument("--skip-robustness", action="store_true")
    ap.add_argument("--throughput-events", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# ML benchmark ({time.strftime('%Y-%m-%d')})\n\n{machine()}\n")
    tm = resolve_model(args.model, "cpu")
    print(f"model {args.model or 'shipped default'}: {count_parameters(tm.model)} parameters, "
          f"objective {tm.config.objective}, frame {tm.config.frame}, sampler "
          f"{tm.config.sampler or 'default'} x {tm.config.sample_steps or 'default'} steps; "
          f"trained on {tm.data.get('n_train', '?')} events "
          f"({', '.join(Path(f['path']).name for f in tm.data.get('files', []))})")
    t = read_table(args.events, args.all, args.max_events)
    print(f"events: {args.events} ({t.num_rows} selected, "
          f"{'all reco-channel events' if args.all else 'signal region'})\n")
    recs, secs = run_methods(t, tm, args.candidates, args.seed, args.skip_mmc)
    table = resolution_table(t, recs, only_sr=not args.all)
    print(table.to_markdown("full"))
    print()
    print(table.to_markdown("mass", reference=True))
    print("\nwall time per method (s): " + ", ".join(f"{k} {v:.2f}" for k, v in secs.items()))
    if not args.skip_robustness:
        robustness(t, tm, args.candidates, args.seed, args.skip_mmc)
    uncertainty_calibration(t, tm, args.candidates, args.seed)
    tau_direction(t, recs)
    throughput(t, args.model, args.candidates, args.throughput_events, args.seed)


if __name__ == "__main__":
    main()
