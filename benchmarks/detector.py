"""Detector stage: throughput and the measured object resolutions on a generated sample.

    python benchmarks/detector.py [FILE.parquet] [--events 2000]

Without FILE a full-physics signal sample (taus forced into pi, rho, e, mu) is generated.
Prints events/s of detector + selection (1 and 2 workers) and, per object type, the measured
width of reco/true (standard deviation of the per-object pulls x the mean parametrised
resolution), the MET resolution against the true invisible pT and its mean predicted
sqrt(covariance), and the reco-vs-truth channel agreement.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow.parquet as pq

from ditau.detector import resolution as res
from ditau.detector.config import DetectorConfig
from ditau.detector.parametric import simulate
from ditau.detector.run import run_detector
from ditau.generate import GenerateConfig, run
from ditau.select import HADHAD, LEPHAD, select


def _flat(arr, keys):
    evt = np.repeat(np.arange(len(arr)), ak.to_numpy(ak.num(arr)))
    out = {f: ak.to_numpy(ak.flatten(arr[f])).astype(float) for f in arr.fields}
    out["evt"] = evt
    order = np.lexsort(tuple(out[k] for k in reversed(("evt", *keys))))
    return {k: v[order] for k, v in out.items()}


def _width(reco_pt, true_pt, sigma):
    """(measured std of reco/true - 1, mean parametrised sigma, pull width)."""
    r = reco_pt / true_pt - 1
    return np.std(r), np.mean(sigma), np.std(r / sigma)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("file", nargs="?", type=Path)
    ap.add_argument("--events", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file
        if path is None:
            path = Path(tmp) / "signal.parquet"
            run(GenerateConfig(events=args.events, seed=5, events_per_job=500,
                               force_decays=("pi", "rho", "e", "mu")), path, progress=False)
        n = pq.ParquetFile(path).metadata.num_rows
        print(f"machine: {platform.node()} ({platform.processor() or platform.machine()}), "
              f"sample {path.name}: {n} events")
        for w in (1, 2):
            t0 = time.perf_counter()
            run_detector(path, Path(tmp) / f"reco{w}.parquet", keep_particles=False,
                         workers=w, progress=False)
            dt = time.perf_counter() - t0
            print(f"detector + selection, {w} worker(s): {n / dt:8.0f} events/s")

    table = pq.read_table(path)
    nom = simulate(table, DetectorConfig(), fake_taus=False)
    raw = simulate(table, DetectorConfig(smear=False), fake_taus=False)
    print("\nobject resolution  measured std(reco/true-1)  parametrised <sigma>  pull width")
    a, b = _flat(nom.taus, ("charge",)), _flat(raw.taus, ("charge",))
    one = (b["n_tracks"] == 1) & (b["origin"] == 0)
    pt0 = np.hypot(b["chg_px"][one], b["chg_py"][one])
    eta0 = np.abs(np.arcsinh(b["chg_pz"][one] / pt0))
    rows = [("tau track", _width(np.hypot(a["chg_px"][one], a["chg_py"][one]), pt0,
                                 res.track_resolution(pt0, eta0)))]
    la, lb = _flat(nom.leptons, ("flavour", "charge")), _flat(raw.leptons, ("flavour", "charge"))
    lpt0 = np.hypot(lb["px"], lb["py"])
    leta0 = np.abs(np.arcsinh(lb["pz"] / lpt0))
    for fl, name, fn in ((11, "electron", res.electron_resolution),
                         (13, "muon", res.muon_resolution)):
        m = lb["flavour"] == fl
        rows.append((name, _width(np.hypot(la["px"], la["py"])[m], lpt0[m],
                                  fn(lpt0[m], leta0[m]))))
    ja = _flat(ak.with_field(nom.jets, np.arctan2(nom.jets.py, nom.jets.px), "phi"), ("phi",))
    jb = _flat(ak.with_field(raw.jets, np.arctan2(raw.jets.py, raw.jets.px), "phi"), ("phi",))
    jpt0 = np.hypot(jb["px"], jb["py"])
    hi = jpt0 > 20
    rows.append(("jet (pT > 20)", _width(np.hypot(ja["px"], ja["py"])[hi], jpt0[hi],
                                         res.jet_resolution(jpt0[hi], np.abs(np.arcsinh(
                                             jb["pz"][hi] / jpt0[hi]))))))
    for name, (std, sig, pull) in rows:
        print(f"{name:16s} {std:24.4f} {sig:22.4f} {pull:11.3f}")

    cols = select(nom)
    true_x = np.asarray(table["nu_px_p"]) + np.asarray(table["nu_px_m"]) \
        + np.asarray(table["nu_other_px"])
    d = cols["met_x"] - true_x
    print(f"\nMET x: RMS(reco - true invisible) = {np.std(d):.2f} GeV; "
          f"mean predicted sqrt(cov_xx) = {np.mean(np.sqrt(cols['met_cov_xx'])):.2f} GeV; "
          f"pull width = {np.std(d / np.sqrt(cols['met_cov_xx'])):.3f}")
    truth = np.asarray(table["truth_channel"].to_pylist())
    reco = cols["reco_channel"]
    paired = np.isin(reco, HADHAD + LEPHAD)
    print(f"channel: {paired.sum()} events paired into the 7 channels; "
          f"reco == truth for {np.mean(reco[paired] == truth[paired]):.3f} of them; "
          f"signal region: {int(cols['in_sr'].sum())}")


if __name__ == "__main__":
    main()
