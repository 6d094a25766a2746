"""Spin tomography: truth-level validation against LO and the calibrated result per method.

    python benchmarks/tomography.py --truth GEN.parquet            # part 1 only
    python benchmarks/tomography.py [--truth GEN.parquet] --events RECO.parquet \\
        [--recon METHOD=FILE ...] [--variation NAME=FILE ...] \\
        [--variation-recon VARIATION:METHOD=FILE ...] [--background FILE ...] \\
        [--model ML_MODEL] [--candidates 10] [--nu-sampling 10] [--workdir DIR] [--out DIR]

1. Truth level (GEN: a generated signal file, all produced events, generated taus, rho
   optimal polarimeter, events weighted by (kappa+ kappa-)^2): diag(C) and B_k in bins of
   |cos Theta| against the LO expectation averaged over the same events, and the inclusive
   concurrence, m12 and D against tomography.md's LO table.
2. With RECO (a detector-level signal file): the reconstruct stage for every method without
   a --recon file (ML: --model, default the shipped model, --candidates), for every variation
   and method without a --variation-recon file, and ML with --nu-sampling other noise seeds
   (7919 r, r = 1..N: the neutrino-sampling uncertainty), and every method on every
   --background file (their own analyser shapes in the fit; --background-shape t0: the
   signal's unpolarised shape instead), into --workdir; then
   ``run_tomography`` on those method outputs for truth taus, collinear, FastMTT, MMC and ML:
   calibrated C with its closure on the independent half, systematics and the expected
   significance at 140 fb^-1 (summary.md + significance.png in --out); and (``--analysis``
   fit or both, the default) the profile-likelihood fit of the 15 spin parameters
   (ditau.tomography.measurement): templates from 10/11 of the events, pseudo-data from the
   other 1/11 on two independent splits, Z(D > 1/3) and Z(m12 > 1) at 140 fb^-1 at our yields
   and the reference's, the impact table, the closure tests and the fit time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ditau.reconstruct import reconstruct
from ditau.schema import read_events
from ditau.tomography import from_truth, lo_expectation, lo_inclusive, measure, quantum_observables
from ditau.tomography.report import to_markdown, write_report
from ditau.tomography.run import read_backgrounds, run_tomography

MODES = ("pi", "rho", "e", "mu")


def truth_level(path: Path) -> None:
    cols = [c for c in pq.read_schema(path).names if not c.startswith("fs_")]
    ev = read_events(path, columns=cols, require=("id", "truth"))
    an = from_truth(ev, rho="polarimeter")
    mp = ev["decay_mode_p"].to_numpy(zero_copy_only=False)
    mm = ev["decay_mode_m"].to_numpy(zero_copy_only=False)
    ok = an.valid & np.isin(mp, MODES) & np.isin(mm, MODES)
    w = (an.kappa_p * an.kappa_m) ** 2
    c = np.abs(an.cos_theta)
    print(f"1. truth level: {path} ({int(ok.sum())} events with both taus in "
          f"{'/'.join(MODES)}; rho: optimal polarimeter)")
    print("   |cos T| bin    C_kk (LO)              C_rr (LO)               C_nn (LO)"
          "               B_k+ / B_k- (LO)")
    for lo, hi in ((0.0, 0.3), (0.3, 0.6), (0.6, 1.0), (0.0, 1.0)):
        m = ok & (c >= lo) & (c < hi + 1e-12)
        obs = measure(an.h_p, an.h_m, an.kappa_p, an.kappa_m, weights=w, valid=m)
        exp = lo_expectation(an.cos_theta[m])
        e = obs.C_err
        print(f"   [{lo:.1f}, {hi:.1f}]   "
              + "   ".join(f"{obs.C[i, i]:+.3f}±{e[i, i]:.3f} ({np.mean(exp[k]):+.3f})"
                           for i, k in enumerate(("kk", "rr", "nn")))
              + f"   {obs.B_p[0]:+.3f}/{obs.B_m[0]:+.3f}±{obs.B_p_err[0]:.3f} "
                f"({np.mean(exp['bk']):+.3f})")
    obs = measure(an.h_p, an.h_m, an.kappa_p, an.kappa_m, weights=w, valid=ok)
    q = quantum_observables(obs, n_toys=4000, seed=1)
    lo = lo_inclusive()
    print("   inclusive:  value ± toy error (toy bias) [LO]")
    for key, ref in (("concurrence", lo["concurrence"]), ("m12", lo["m12"]), ("D", lo["D"])):
        print(f"     {key:12s} {q.central[key]:.3f} ± {q.error[key]:.3f} "
              f"(bias {q.bias[key]:+.3f}) [{ref:.3f}]   significance vs threshold: "
              f"{q.significance[key]:.1f} sigma")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--truth", type=Path)
    ap.add_argument("--events", type=Path)
    ap.add_argument("--variation", action="append", default=[])
    ap.add_argument("--background", action="append", default=[])
    ap.add_argument("--recon", action="append", default=[], help="METHOD=FILE")
    ap.add_argument("--variation-recon", action="append", default=[],
                    help="VARIATION:METHOD=FILE (else the method is run on the variation)")
    ap.add_argument("--background-recon", action="append", default=[],
                    help="SAMPLE:METHOD=FILE (else the method is run on the background)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the method outputs made here go [default: a temporary folder]")
    ap.add_argument("--workers", type=int, default=1, help="reconstruct-stage processes")
    ap.add_argument("--boot", type=int, default=10)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--reference-yields", action="store_true")
    ap.add_argument("--model", default=None, help="ML model file [default: shipped]")
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--nu-sampling", type=int, default=5,
                    help="ML re-runs with other noise seeds (0: none)")
    ap.add_argument("--nu-recon", action="append", default=[],
                    help="an ML output of EVENTS made with another noise seed (repeatable; "
                         "instead of running --nu-sampling)")
    ap.add_argument("--rho", default="polarimeter", choices=("visible", "polarimeter"),
                    help="rho analyser at detector level")
    ap.add_argument("--methods", default="truth,collinear,fastmtt,mmc,ml")
    ap.add_argument("--point-estimate", action="store_true",
                    help="ML: the point estimate's analysers, not averaged over the "
                         "candidates (the default averages products and moment observables)")
    ap.add_argument("--analysis", default="both", choices=("fit", "calibration", "both"),
                    help="the profile-likelihood fit, the calibration cross-check, or both")
    ap.add_argument("--bins", type=int, default=2, help="fit: bins per analyser component")
    ap.add_argument("--observable", default="moments", choices=("moments", "signs"))
    ap.add_argument("--background-shape", default="own", choices=("own", "t0"),
                    help="fit backgrounds: each method run on each background file (own) or "
                         "their yields in the signal's unpolarised shape (t0)")
    args = ap.parse_args()
    print(f"date: {time.strftime('%Y-%m-%d %H:%M')}")
    if args.truth is not None:
        truth_level(args.truth)
    if args.events is None:
        return
    ml_settings = {"candidates": args.candidates,
                   **({"model": args.model} if args.model else {})}
    methods = tuple(args.methods.split(","))
    variations = dict(v.split("=", 1) for v in args.variation)
    recon = dict(v.split("=", 1) for v in args.recon)
    variation_recon: dict[str, dict[str, str]] = {}
    for v in args.variation_recon:
        key, path = v.split("=", 1)
        var, method = key.split(":", 1)
        variation_recon.setdefault(var, {})[method] = path
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)

        def make(inp: str | Path, name: str, method: str, **extra: object) -> str:
            # the reconstruct stage (this driver runs it; the tomography only reads its output)
            settings = {**(ml_settings if method == "ml" else {}), **extra}
            rs = reconstruct(inp, work / f"{name}.parquet", method, only_sr=True,
                             workers=args.workers, progress=False, **settings)
            print(f"   reconstruct {name}: {rs.events} events in {rs.seconds:.0f} s")
            return str(rs.path)

        for m in methods:
            if m != "truth" and m not in recon:
                recon[m] = make(args.events, f"recon_{m}", m)
        for var, vpath in variations.items():
            per = variation_recon.setdefault(var, {})
            for m in recon:
                if m not in per:
                    per[m] = make(vpath, f"recon_{m}_{var}", m)
        # each background's own analyser distribution per method: the method run on it
        brecon: dict[str, dict[str, str]] = {}
        if args.background_shape == "own":
            for v in args.background_recon:
                key, path = v.split("=", 1)
                name, method = key.split(":", 1)
                brecon.setdefault(name, {})[method] = path
            for name, (bpath, _) in read_backgrounds(args.background).items():
                per = brecon.setdefault(name, {})
                for m in recon:
                    if m not in per:
                        per[m] = make(bpath, f"bkg_{name}_{m}", m)
        nu = {"ml": list(args.nu_recon)} if args.nu_recon else {}
        if "ml" in recon and args.nu_sampling > 0 and not nu:
            nu["ml"] = [make(args.events, f"recon_ml_seed{7919 * r}", "ml", seed=7919 * r)
                        for r in range(1, args.nu_sampling + 1)]
        res = run_tomography(args.events, methods=methods, rho=args.rho, recon=recon,
                             variations=variations, variation_recon=variation_recon,
                             nu_sampling_recon=nu, candidate_average=not args.point_estimate,
                             backgrounds=args.background, background_recon=brecon,
                             n_boot=args.boot,
                             reference_yields=args.reference_yields,
                             analysis=args.analysis, bins=args.bins,
                             observable=args.observable,
                             progress=lambda m: print(f"   {m} ({time.perf_counter() - t0:.0f} s)"))
        out = args.out or Path(tmp) / "report"
        write_report(res, out)
        print(f"\n2. tomography on {args.events} ({res.seconds:.0f} s)\n")
        print(to_markdown(res))


if __name__ == "__main__":
    main()
