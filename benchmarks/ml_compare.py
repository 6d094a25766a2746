"""Compare ML models on the same held-out events: resolution per channel, and resolution
versus the number of sampling steps (diffusion vs flow matching).

    python benchmarks/ml_compare.py EVENTS.parquet --model fm=A.pt --model diffusion=B.pt
        [--model murho-only=C.pt] [--steps 1,2,4,8,16,32] [--sweep fm,diffusion]
        [--candidates 10] [--threads N] [--all]

Prints, on this machine:

1. per model (its default sampler and steps): HWHM (%) of dm_tautau and of the mean of the
   six tau-momentum components per channel; a model trained on some channels only (its
   recipe's ``channels``) is shown on those channels;
2. for the models named in --sweep: the HWHM of dm_tautau and of the tau-momentum components
   (pooled over all selected events and channels), whether the candidates behave as
   posterior samples (the fraction of true neutrino components inside the range of the K
   candidates: (K-1)/(K+1) for exact posterior samples, less when the candidates collapse
   towards one value) and the CPU time per event, for each number of sampler steps (flow
   matching: Heun, 2 head evaluations per step; diffusion: DDIM, 1;
   ditau.ml.generative.head_evaluations).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ditau.evaluate.hwhm import half_max
from ditau.evaluate.resolution import residuals
from ditau.ml.features import TARGETS
from ditau.ml.generative import head_evaluations
from ditau.ml.infer import predict, resolve_model
from ditau.ml.model import count_parameters
from ditau.physics import REFERENCE_ORDER
from ditau.reconstruct import inputs_from_table
from ditau.reconstruct.ml import ml
from machine import describe_machine  # benchmarks/machine.py
from ml import read_table  # benchmarks/ml.py

_TAU = tuple(f"d{c}_{leg}" for leg in ("p", "m") for c in ("px", "py", "pz"))


def hwhm(x: np.ndarray) -> float:
    return 100 * half_max(x).hwhm if len(x) >= 20 else float("nan")


def summary(res: dict[str, np.ndarray], rows: np.ndarray | None = None) -> tuple[float, float]:
    """(HWHM of dm_tautau, mean HWHM of the six tau-momentum components), in %."""
    pick = slice(None) if rows is None else rows
    return (hwhm(res["dm_tautau"][pick]),
            float(np.mean([hwhm(res[q][pick]) for q in _TAU])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("events", type=Path)
    ap.add_argument("--model", action="append", required=True, help="NAME=FILE (repeatable)")
    ap.add_argument("--steps", default="1,2,4,8,16,32")
    ap.add_argument("--sweep", default=None, help="models to sweep, comma-separated "
                    "(default: all; '' for none)")
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--all", action="store_true", help="all events of the 7 reco channels")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = dict(m.split("=", 1) for m in args.model)
    print(f"# ML model comparison ({time.strftime('%Y-%m-%d')})\n\n{describe_machine()}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)\n")
    t = read_table(args.events, args.all, None)
    inp = inputs_from_table(t)
    chan = np.asarray(t["reco_channel"].to_pylist())
    print(f"events: {args.events} ({t.num_rows} selected)\n")
    loaded = {}
    for name, path in models.items():
        tm = resolve_model(path, "cpu")
        loaded[name] = tm
        c = tm.config
        print(f"- {name}: {path}, {count_parameters(tm.model)} parameters, {c.objective}, "
              f"{c.sampler or 'default'} x {c.sample_steps or 'default'} steps, trained on "
              f"{tm.data.get('n_train', '?')} events, channels "
              f"{tm.data.get('channels') or 'all'}, {tm.info.get('step', '?')} steps")
    print("\n## Per channel, default sampler: HWHM % of dm_tautau / mean of the six tau "
          "momentum components\n")
    print("| channel | events | " + " | ".join(models) + " |")
    print("|---|---|" + "---|" * len(models))
    per_model = {}
    for name, tm in loaded.items():
        rec = ml(inp, table=t, model=tm, candidates=args.candidates, seed=args.seed)
        per_model[name] = residuals(t, rec)
    for ch in REFERENCE_ORDER:
        cells = []
        for name, res in per_model.items():
            chans = loaded[name].data.get("channels")
            if chans and ch not in chans:
                cells.append("–")
                continue
            rows = np.flatnonzero(chan[res["row"]] == ch)
            m, p = summary(res, rows)
            cells.append(f"{m:.1f} / {p:.1f}")
        print(f"| {ch} | {int(np.sum(chan == ch))} | " + " | ".join(cells) + " |")
    sweep = [m for m in args.sweep.split(",") if m] if args.sweep is not None else list(models)
    unknown = [m for m in sweep if m not in models]
    if unknown:
        raise SystemExit(f"--sweep: {unknown} not among the --model names {list(models)}")
    if not sweep:
        return
    steps = [int(s) for s in args.steps.split(",")]
    print(f"\n## Resolution vs sampler steps ({args.candidates} candidates, median point "
          "estimate; all selected events pooled)\n")
    truth = np.stack([t[c].to_numpy(zero_copy_only=False) for c in TARGETS], 1)
    k = args.candidates
    print(f"Coverage: fraction of true neutrino components inside the candidates' range "
          f"(exact posterior samples: {(k - 1) / (k + 1):.3f}).\n")
    print("| model | sampler | steps | head evaluations | dm_tautau HWHM % | "
          "tau momenta HWHM % (mean of 6) | coverage | ms / event (CPU) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in sweep:
        tm = loaded[name]
        sampler = tm.config.sampler or ("heun" if tm.config.objective == "fm" else "ddim")
        for n in steps:
            t0 = time.perf_counter()
            rec = ml(inp, table=t, model=tm, candidates=args.candidates, steps=n,
                     seed=args.seed)
            dt = time.perf_counter() - t0
            m, p = summary(residuals(t, rec))
            pred = predict(inp, table=t, model=tm, candidates=k, steps=n, seed=args.seed)
            tr = truth[pred.rows][:, None, :]
            cover = np.mean((tr >= pred.nu.min(1, keepdims=True))
                            & (tr <= pred.nu.max(1, keepdims=True)))
            nfe = head_evaluations(tm.config.objective, n, sampler)
            print(f"| {name} | {sampler} | {n} | {nfe} | {m:.2f} | {p:.2f} | {cover:.3f} | "
                  f"{1000 * dt / t.num_rows:.2f} |")


if __name__ == "__main__":
    main()
