"""Track impact parameters (schema 1.3.0): truth vertices, pulls, resolution, lifetime signal.

    python benchmarks/impact_parameters.py [--signal-events 1500] [--zll-events 800]
        [--seed 11] [--signal FILE.parquet] [--zll FILE.parquet] [--keep DIR]
        [--systematic ip_res_up] [--workers 1]

Without ``--signal`` / ``--zll`` the samples are generated in this process: Z -> tau tau
(taus forced into ``--force-decays``, default pi,rho,e,mu, with the generator tau filter
``--tau-filter``, default sr, so that many events are selected) and Z -> ll (prompt leptons),
seeds ``--seed`` and ``--seed`` + 1. A given file may be a generated file (the detector is
then run on it) or a detector-level file with truth (used as it is). The detector
(ditau.detector.run.run_detector; nominal, or ``--systematic``, e.g. ip_res_up) writes the
per-leg ``reco_{d0,z0}[_err]_{p,m}``; with generated files, every lepton and tau_had
candidate it made (ditau.detector.parametric.simulate, same chunks and random numbers) is
analysed as well, a sample ~7x larger than the selected legs.

Prints, each figure with its reference and the ratio to it:

1. the primary-vertex spread (x, y, z) of both samples vs the configured beam spot
   (``beam_spot_mm`` of the generator configuration) and the mean vs 0;
2. the taus' mean proper decay length L m_tau / |p| (L = |tau_dv - pv|) vs the PDG
   c tau = 87.03 um, and the fraction beyond 2 c tau vs exp(-2);
3. the d0 and z0 pulls (reco - true) / error of the selected reco legs (and of all
   candidates) matched to their truth leg (1-prong legs, by charge and charged-track
   direction; the true d0, z0 from the truth vertices and charged product with
   ditau.detector.impact.impact_parameters) vs (0, 1) (width: the ip_resolution factor);
4. the resolution model sigma(d0), sigma(z0) at pT = 1, 2, 10, 50 GeV, |eta| = 0 and 2
   (ditau.detector.resolution; |eta| = 0 against the ATLAS Run-1 expectation it derives
   from), and the measured width of (reco - true) d0, z0 in bins of true pT vs the model;
5. median |d0| and median |d0| / sigma of the tau-decay legs (signal, per reco leg type:
   lepton, pi, rho) vs the prompt Z -> ll leptons, whose |d0| / sigma median is the
   half-normal's 0.674: the lifetime signal a reconstruction could use;
6. the run time of every step.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist
from typing import Any

import awkward as ak
import numpy as np
from numpy.typing import NDArray

from ditau.detector import resolution as res
from ditau.detector.config import DetectorConfig
from ditau.detector.impact import IP_FIELDS, impact_parameters
from ditau.detector.parametric import INPUT_COLUMNS, VERTEX_COLUMNS, simulate
from ditau.detector.run import run_detector
from ditau.generate import GenerateConfig, run
from ditau.generate.tau_filter import parse_tau_filter
from ditau.physics import M_TAU
from ditau.schema import column_array, read_events, read_metadata
from machine import describe_machine  # benchmarks/machine.py

Arr = NDArray[np.float64]

#: tau lepton c tau [mm] (PDG 2024: 87.03 um).
CTAU_MM = 0.08703
#: Median of |x| for x ~ N(0, 1) (the half-normal): Phi^-1(3/4) = 0.6745.
HALF_NORMAL_MEDIAN = NormalDist().inv_cdf(0.75)
#: ATLAS Run-1 expected impact-parameter resolution, sigma_X = sigma_X(inf) (1 (+) p_X / pT),
#: 0.25 < |eta| < 0.5 (JINST 3 (2008) S08003, Table 10.2, as quoted in
#: ditau.detector.resolution): (sigma(inf) [mm], p_X [GeV]) of d0 and of z0 sin(theta).
RUN1_D0 = (0.010, 14.0)
RUN1_Z0SIN = (0.091, 2.3)
UM = 1000.0  # mm -> um
_P3 = ("px", "py", "pz")

#: Columns read from the detector-level files.
_TRUTH = ["pv_x", "pv_y", "pv_z",
          *(f"{p}_{c}_{leg}" for leg in "pm" for p, comps in
            (("tau_dv", "xyz"), ("tau", _P3), ("chg", _P3)) for c in comps),
          "n_charged_p", "n_charged_m", "decay_mode_p", "decay_mode_m"]
_RECO = ["reco_channel",
         *(f"reco_{q}_{leg}" for leg in "pm" for q in
           ("chg_px", "chg_py", "chg_pz", "charge", "mode", "origin",
            "d0", "z0", "d0_err", "z0_err"))]


# --------------------------------------------------------------------------------------------
# Samples


def _timed(label: str, times: dict[str, float], fn: Callable[[], Any]) -> Any:
    """Run ``fn``, record its wall time under ``label``."""
    t0 = time.perf_counter()
    out = fn()
    times[label] = time.perf_counter() - t0
    return out


def _detector_file(name: str, given: Path | None, cfg: GenerateConfig, tmp: Path,
                   workers: int, systematic: str | None, times: dict[str, float]
                   ) -> tuple[Path, Path | None]:
    """(detector-level file with truth, generated file or None) for sample ``name``: ``given``
    if it is a detector-level file, else the detector run on ``given`` or on a sample
    generated here with ``cfg`` (the detector with the named ``systematic``, None: nominal)."""
    if given is not None and read_metadata(given).get("stage") == "detector":
        return given, None
    gen = given
    if gen is None:
        gen = tmp / f"{name}.parquet"
        _timed(f"generate {name} ({cfg.events} events)", times,
               lambda: run(cfg, gen, workers=workers, progress=False))
    out = tmp / f"{name}_reco.parquet"
    _timed(f"detector {name}", times,
           lambda: run_detector(gen, out, systematic=systematic, keep_particles=False,
                                workers=workers, progress=False))
    return out, gen


def _columns(path: Path, names: list[str]) -> dict[str, NDArray[Any]]:
    """The columns ``names`` of the event file ``path`` as numpy arrays."""
    t = read_events(path, columns=names)
    return {n: column_array(t, n) for n in names}


def _beam_spot(meta: dict[str, Any]) -> tuple[float, ...] | None:
    """The generator's configured beam-spot widths [mm] (generated or detector-level file)."""
    cfg = meta.get("input_config") or meta.get("config") or {}
    if "beam_spot_mm" not in cfg:
        return None  # not recorded (a file older than schema 1.3.0)
    bs = cfg["beam_spot_mm"]
    return tuple(float(x) for x in bs) if bs is not None else (0.0, 0.0, 0.0)


# --------------------------------------------------------------------------------------------
# Statistics helpers


def _median_err(x: Arr) -> tuple[float, float]:
    """(median, its ~68 % half-width): order statistics n/2 -+ sqrt(n)/2 (distribution-free)."""
    s = np.sort(x)
    n = len(s)
    if n == 0:
        return float("nan"), float("nan")
    half = 0.5 * np.sqrt(n)  # binomial(n, 1/2) standard deviation of the rank
    lo, hi = int(max(0, np.floor(n / 2 - half))), int(min(n - 1, np.ceil(n / 2 + half)))
    return float(np.median(s)), float(0.5 * (s[hi] - s[lo]))


def _ratio(x: float, ref: float) -> str:
    return f"{x / ref:7.3f}" if ref != 0 else "    n/a"


# --------------------------------------------------------------------------------------------
# 1. Primary vertex, 2. tau decay length


def primary_vertex(name: str, c: dict[str, NDArray[Any]], spot: tuple[float, ...] | None
                   ) -> None:
    pv = np.stack([c[f"pv_{x}"] for x in "xyz"], axis=1).astype(float)
    ok = np.all(np.isfinite(pv), axis=1)
    pv = pv[ok]
    n = len(pv)
    print(f"\n{name}: {n} events with a truth primary vertex; configured beam spot "
          f"{spot if spot is not None else 'not recorded'} mm")
    if n == 0:
        return
    print("  axis   std(pv) [um]  +- err     beam spot [um]  ratio   mean(pv) [um] +- err")
    for i, ax in enumerate("xyz"):
        std, mean = float(np.std(pv[:, i])), float(np.mean(pv[:, i]))
        ref = spot[i] if spot is not None else float("nan")
        # Gaussian: error of the std = sigma / sqrt(2n), of the mean = sigma / sqrt(n)
        print(f"  {ax:4s} {std * UM:14.2f} {std / np.sqrt(2 * n) * UM:8.2f} "
              f"{ref * UM:16.2f} {_ratio(std, ref)} {mean * UM:12.2f} "
              f"{std / np.sqrt(n) * UM:8.2f}   (ref 0)")


def decay_length(c: dict[str, NDArray[Any]]) -> None:
    pv = np.stack([c[f"pv_{x}"] for x in "xyz"], axis=1).astype(float)
    proper = []
    for leg in "pm":
        dv = np.stack([c[f"tau_dv_{x}_{leg}"] for x in "xyz"], axis=1).astype(float)
        p = np.linalg.norm(np.stack([c[f"tau_{x}_{leg}"] for x in _P3], axis=1), axis=1)
        # proper decay length c t = L / (beta gamma) = L m_tau / |p|
        proper.append(np.linalg.norm(dv - pv, axis=1) * M_TAU / p)
    lt = np.concatenate(proper)
    lt = lt[np.isfinite(lt)]
    n = len(lt)
    mean, err = float(np.mean(lt)), float(np.std(lt) / np.sqrt(n))
    print(f"\ntau proper decay length L m_tau / |p| ({n} taus, m_tau = {M_TAU:.5f} GeV)")
    print(f"  mean = {mean * UM:.2f} +- {err * UM:.2f} um   PDG c tau = {CTAU_MM * UM:.2f} um   "
          f"ratio = {mean / CTAU_MM:.4f} +- {err / CTAU_MM:.4f}   "
          f"pull = {(mean - CTAU_MM) / err:+.2f}")
    frac = float(np.mean(lt > 2 * CTAU_MM))
    ferr = float(np.sqrt(frac * (1 - frac) / n))  # binomial
    ref = float(np.exp(-2.0))  # exponential: P(t > 2 tau) = e^-2
    print(f"  fraction beyond 2 c tau = {frac:.4f} +- {ferr:.4f}   e^-2 = {ref:.4f}   "
          f"ratio = {frac / ref:.4f}   pull = {(frac - ref) / ferr:+.2f}")


# --------------------------------------------------------------------------------------------
# 3.-5. Reco tracks against the truth

Objects = dict[str, NDArray[Any]]


def leg_objects(c: dict[str, NDArray[Any]], keep: Callable[[NDArray[Any], NDArray[Any]],
                                                            NDArray[np.bool_]]) -> Objects:
    """The paired reco legs of a detector-level file passing ``keep(reco_mode, reco_origin)``
    as flat arrays: event index, charged momentum, charge, mode and the ``reco_{d0,z0}[_err]``
    columns."""
    paired = c["reco_channel"].astype(str) != "other"
    parts = []
    for leg in "pm":
        mode = c[f"reco_mode_{leg}"].astype(str)
        evt = np.flatnonzero(paired & keep(mode, c[f"reco_origin_{leg}"]))
        parts.append({"evt": evt, "mode": mode[evt],
                      "charge": c[f"reco_charge_{leg}"][evt].astype(float),
                      **{x: c[f"reco_chg_{x}_{leg}"][evt].astype(float) for x in _P3},
                      **{f: c[f"reco_{f}_{leg}"][evt].astype(float) for f in IP_FIELDS}})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def candidate_objects(gen: Path, cfg: DetectorConfig, fake_taus: bool, taus: bool = True
                      ) -> Objects:
    """Every lepton candidate and (with ``taus``) every real 1-prong tau_had candidate that the
    nominal detector (ditau.detector.parametric.simulate, in the detector stage's chunks, so
    with its random numbers) makes from the generated file ``gen``, as flat arrays; tau_had
    mode pi / rho / other by its neutral clusters (0 / 1 / more), as the selection labels."""
    t = read_events(gen, columns=[*INPUT_COLUMNS, *VERTEX_COLUMNS])
    parts = []
    for first in range(0, t.num_rows, cfg.chunk_size):
        cands = simulate(t.slice(first, cfg.chunk_size), cfg, fake_taus=fake_taus)
        colls = [(cands.leptons, ("px", "py", "pz"), lambda o: o.charge != 0)]
        if taus:
            colls.append((cands.taus, ("chg_px", "chg_py", "chg_pz"),
                          lambda o: (o.origin == 0) & (o.n_tracks == 1)))
        for coll, fields, keep in colls:
            sel = coll[keep(coll)]
            flat = {f: ak.to_numpy(ak.flatten(sel[f])).astype(float) for f in sel.fields}
            if "flavour" in flat:
                mode = np.where(flat["flavour"] == 11, "e", "mu")
            else:
                mode = np.where(flat["n_neu"] == 0, "pi",
                                np.where(flat["n_neu"] == 1, "rho", "other"))
            parts.append({"evt": first + np.repeat(np.arange(len(sel)),
                                                   ak.to_numpy(ak.num(sel))),
                          "mode": mode, "charge": flat["charge"],
                          **{x: flat[f] for x, f in zip(_P3, fields, strict=True)},
                          **{f: flat[f] for f in IP_FIELDS}})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def match_truth(obj: Objects, c: dict[str, NDArray[Any]], bz: float) -> Objects:
    """The objects ``obj`` matched to the truth leg of their charge: a 1-prong leg whose
    charged product has the same direction (momentum smearing keeps it). Adds the true d0, z0
    (ditau.detector.impact.impact_parameters from tau_dv - pv and the truth charged product),
    the true track pT, |eta| and the truth decay mode."""
    evt = obj["evt"]
    tleg = np.where(obj["charge"] > 0, "p", "m")

    def truth(key: str) -> NDArray[Any]:
        return np.where(tleg == "p", c[f"{key}_p"][evt], c[f"{key}_m"][evt])

    mom = np.stack([obj[x] for x in _P3], axis=1)
    true = np.stack([truth(f"chg_{x}") for x in _P3], axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        # cosine of the angle between the reco track and the truth charged product
        cos = np.sum(mom * true, axis=1) / (np.linalg.norm(mom, axis=1)
                                             * np.linalg.norm(true, axis=1))
    ok = (truth("n_charged") == 1) & (cos > 1 - 1e-9)
    v = [(truth(f"tau_dv_{x}") - c[f"pv_{x}"][evt]).astype(float) for x in "xyz"]
    d0_t, z0_t = impact_parameters(v[0], v[1], v[2], true[:, 0], true[:, 1], true[:, 2],
                                   np.where(tleg == "p", 1.0, -1.0), bz)
    pt = np.hypot(true[:, 0], true[:, 1])
    abseta = np.abs(np.arcsinh(true[:, 2] / pt))  # |eta| = |asinh(pz / pT)|
    out = {k: v[ok] for k, v in obj.items()}
    out.update({"d0_true": d0_t[ok], "z0_true": z0_t[ok], "pt": pt[ok], "abseta": abseta[ok],
                "truth_mode": truth("decay_mode").astype(str)[ok]})
    return out


def _mode_counts(m: Objects) -> str:
    return (f"{np.sum(np.isin(m['mode'], ('e', 'mu')))} leptons, "
            f"{np.sum(m['mode'] == 'pi')} pi, {np.sum(m['mode'] == 'rho')} rho")


def pulls(label: str, m: Objects, n_obj: int, ref_width: float = 1.0) -> None:
    """Mean and width of the d0 and z0 pulls vs (0, ``ref_width``: the ip_resolution factor,
    since the quoted errors stay nominal)."""
    n = len(m["d0"])
    print(f"\n{label}: {n} matched to truth (of {n_obj}; {_mode_counts(m)})")
    if n == 0:
        return
    print(f"  quantity   mean +- err      (ref 0)  width +- err  (ref {ref_width:g})  ratio   "
          "|pull| > 3 (ref 0.0027)")
    for q in ("d0", "z0"):
        p = (m[q] - m[f"{q}_true"]) / m[f"{q}_err"]  # pull = (reco - true) / error
        mean, width = float(np.mean(p)), float(np.std(p))
        # Gaussian errors: of the mean width / sqrt(n), of the width width / sqrt(2n)
        err_mean, err_width = width / np.sqrt(n), width / np.sqrt(2 * n)
        print(f"  {q:8s} {mean:+7.3f} +- {err_mean:.3f}   pull {mean / err_mean:+5.2f}"
              f"  {width:6.3f} +- {err_width:.3f}         {width / ref_width:6.3f}   "
              f"{np.mean(np.abs(p) > 3):.4f}")


def resolution_model() -> None:
    pts = np.array([1.0, 2.0, 10.0, 50.0])
    print("\nresolution model (ditau.detector.resolution) [um]; reference at |eta| = 0: ATLAS "
          "Run-1 expectation sigma(inf) (1 (+) p_X/pT),\n  0.25 < |eta| < 0.5 (JINST 3 (2008) "
          "S08003 Tab. 10.2): d0 10 um, 14 GeV; z0 sin(theta) 91 um, 2.3 GeV (ratio at low pT: "
          "0.6 x 0.967 by design, IBL)")
    print("   pT [GeV]  |eta|  sigma(d0)  Run-1   ratio   sigma(z0)  Run-1   ratio")
    for abseta in (0.0, 2.0):
        e = np.full(len(pts), abseta)
        s_d0, s_z0 = res.d0_resolution(pts, e), res.z0_resolution(pts, e)
        # Run-1 form: sigma(inf) sqrt(1 + (p_X / pT)^2); z0 = (z0 sin theta) / sin theta
        r_d0 = RUN1_D0[0] * np.sqrt(1 + (RUN1_D0[1] / pts) ** 2)
        r_z0 = RUN1_Z0SIN[0] * np.sqrt(1 + (RUN1_Z0SIN[1] / pts) ** 2) * np.cosh(abseta)
        for i, pt in enumerate(pts):
            none = f"{'-':>7} {'-':>7}"
            ref_d0 = f"{r_d0[i] * UM:7.1f} {s_d0[i] / r_d0[i]:7.3f}" if abseta == 0 else none
            ref_z0 = f"{r_z0[i] * UM:7.1f} {s_z0[i] / r_z0[i]:7.3f}" if abseta == 0 else none
            print(f"  {pt:8.0f} {abseta:6.1f} {s_d0[i] * UM:9.1f} {ref_d0} "
                  f"{s_z0[i] * UM:10.1f} {ref_z0}")
    print("  (|eta| = 2: no Run-1 value quoted in the project; the model grows as "
          "1/sqrt(sin theta) (d0) and 1/sin theta^(1.5) (z0) at low pT)")


def binned_width(label: str, m: Objects) -> None:
    edges = (1.0, 3.0, 6.0, 10.0, 20.0, 40.0, np.inf)
    print("\nmeasured width of (reco - true) in bins of true track pT vs the model "
          f"sqrt(<sigma^2>) [um], and the pull width (ref 1) ({label})")
    print("  pT [GeV]     n |  d0: std +- err   model  ratio  pull w |"
          "  z0: std +- err   model  ratio  pull w")
    for lo, hi in itertools.pairwise(edges):
        sel = (m["pt"] >= lo) & (m["pt"] < hi)
        n = int(sel.sum())
        if n < 5:
            print(f"  {lo:4.0f}-{hi:<5.0f} {n:5d} |  (too few)")
            continue
        row = f"  {lo:4.0f}-{hi:<5.0f} {n:5d}"
        for q in ("d0", "z0"):
            d = (m[q] - m[f"{q}_true"])[sel]
            std = float(np.std(d))
            # a mixture of Gaussians of widths sigma_i has the std sqrt(<sigma_i^2>)
            model = float(np.sqrt(np.mean(m[f"{q}_err"][sel] ** 2)))
            pull_w = float(np.std(d / m[f"{q}_err"][sel]))
            row += (f" | {std * UM:8.1f} +- {std / np.sqrt(2 * n) * UM:5.1f} {model * UM:7.1f}"
                    f" {std / model:6.3f} {pull_w:7.3f}")
        print(row)


def lifetime_signal(label: str, m: Objects, prompt: dict[str, Objects]) -> None:
    """Median |d0| and |d0| / sigma of the matched tau-decay tracks per reco type vs the
    prompt Z -> ll tracks (the first of ``prompt`` is the |d0| reference)."""
    print(f"\nlifetime signal, {label}: median |d0| [um] and median |d0|/sigma(d0) "
          "(unweighted; +- ~68 % order-statistic half-width)")
    ref_abs = _median_err(np.abs(next(iter(prompt.values()))["d0"]))[0]
    print(f"  {'tracks':34s} {'n':>5}  {'median |d0|':>16} {'/prompt':>7}  "
          f"{'median |d0|/sigma':>18} {'/0.674':>7}  {'true median |d0|':>16}")
    rows: list[tuple[str, Objects, str]] = []
    for name, modes in (("lepton", ("e", "mu")), ("pi", ("pi",)), ("rho", ("rho",)),
                        ("any", ("e", "mu", "pi", "rho"))):
        sel = np.isin(m["mode"], modes)
        t = _median_err(np.abs(m["d0_true"][sel]))[0]
        rows.append((f"tau -> {name} (signal)", {k: v[sel] for k, v in m.items()},
                     f"{t * UM:16.1f}"))
    rows += [(name, o, f"{'0 (prompt)':>16}") for name, o in prompt.items()]
    for name, o, true in rows:
        ok = np.isfinite(o["d0"])
        d0, err = o["d0"][ok], o["d0_err"][ok]
        a, ae = _median_err(np.abs(d0))
        s, se = _median_err(np.abs(d0 / err))  # |d0| significance
        print(f"  {name:34s} {len(d0):5d}  {a * UM:8.1f} +- {ae * UM:5.1f} {_ratio(a, ref_abs)}"
              f"  {s:10.3f} +- {se:5.3f} {_ratio(s, HALF_NORMAL_MEDIAN)}  {true}")


# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--signal-events", type=int, default=1500)
    ap.add_argument("--zll-events", type=int, default=800)
    ap.add_argument("--seed", type=int, default=11, help="signal seed (Z -> ll: seed + 1)")
    ap.add_argument("--force-decays", default="pi,rho,e,mu",
                    help="signal tau decay modes ('none': Pythia's)")
    ap.add_argument("--tau-filter", default="sr", help="signal generator tau filter ('none')")
    ap.add_argument("--signal", type=Path, help="pre-made signal file (generated or detector)")
    ap.add_argument("--zll", type=Path, help="pre-made Z -> ll file (generated or detector)")
    ap.add_argument("--workers", type=int, default=1, help="processes for generation/detector")
    ap.add_argument("--systematic", help="detector variation, e.g. ip_res_up (pull width 1.1)")
    ap.add_argument("--keep", type=Path, help="directory to keep the files made here in")
    args = ap.parse_args()
    start = time.perf_counter()
    print(describe_machine())
    print(f"date: {time.strftime('%Y-%m-%d %H:%M')}")
    times: dict[str, float] = {}
    modes = None if args.force_decays == "none" else tuple(args.force_decays.split(","))
    flt = None if args.tau_filter == "none" else parse_tau_filter(args.tau_filter)
    sig_cfg = GenerateConfig(events=args.signal_events, seed=args.seed, events_per_job=500,
                             force_decays=modes, tau_filter=flt)
    zll_cfg = GenerateConfig(process="zll", events=args.zll_events, seed=args.seed + 1,
                             events_per_job=500)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = args.keep or Path(tmpdir)
        tmp.mkdir(parents=True, exist_ok=True)
        sig, sig_gen = _detector_file("signal", args.signal, sig_cfg, tmp, args.workers,
                                      args.systematic, times)
        zll, zll_gen = _detector_file("zll", args.zll, zll_cfg, tmp, args.workers,
                                      args.systematic, times)
        c = _timed("read signal", times, lambda: _columns(sig, _TRUTH + _RECO))
        z = _timed("read zll", times, lambda: _columns(zll, ["pv_x", "pv_y", "pv_z", *_RECO]))
        meta_s, meta_z = read_metadata(sig), read_metadata(zll)
        det_cfg = DetectorConfig.from_dict(meta_s.get("detector_config") or {})
        # every reco candidate, as the detector stage made them (needs the generated files)
        cand = (_timed("candidates signal", times,
                       lambda: candidate_objects(sig_gen, det_cfg, fake_taus=False))
                if sig_gen is not None else None)
        cand_z = (_timed("candidates zll", times,
                         lambda: candidate_objects(zll_gen, det_cfg, fake_taus=True,
                                                   taus=False))
                  if zll_gen is not None else None)
    bz = det_cfg.bz
    for name, given, cfg, cols in (("signal", args.signal, sig_cfg, c),
                                   ("zll", args.zll, zll_cfg, z)):
        made = (f"{given}" if given is not None else
                f"generated here: process {cfg.process}, seed {cfg.seed}, force_decays "
                f"{cfg.force_decays}, tau_filter {cfg.tau_filter}")
        print(f"{name}: {made}; {len(cols['pv_x'])} events, "
              f"{np.sum(cols['reco_channel'].astype(str) != 'other')} paired by the selection")
    print(f"detector: systematic {meta_s.get('systematic', 'nominal')}, field bz = {bz} T, "
          f"ip_resolution x {det_cfg.ip_resolution} (quoted errors: nominal)")
    if not np.any(np.isfinite(c["pv_x"].astype(float))):
        raise SystemExit("signal file has no truth vertices (schema < 1.3.0 or a Delphes "
                         "import): nothing to compare")

    t0 = time.perf_counter()
    primary_vertex("signal (Z -> tau tau)", c, _beam_spot(meta_s))
    primary_vertex("Z -> ll", z, _beam_spot(meta_z))
    decay_length(c)

    print("\nimpact-parameter pulls (reco - true) / error; true d0, z0 from tau_dv - pv and "
          "the truth charged product")
    legs = leg_objects(c, lambda mode, origin: (origin == 0)
                       & np.isin(mode, ("pi", "rho", "e", "mu")))
    m = match_truth(legs, c, bz)
    pulls("selected legs (reco_d0/z0 columns, origin real, modes pi/rho/e/mu)", m,
          len(legs["evt"]), det_cfg.ip_resolution)
    mc = None
    if cand is not None:
        mc = match_truth(cand, c, bz)
        pulls("all candidates (leptons, real 1-prong tau_had)", mc, len(cand["evt"]),
              det_cfg.ip_resolution)
    resolution_model()
    binned_width("selected legs", m)
    if mc is not None:
        binned_width("all candidates", mc)

    prompt = {"Z->ll lepton legs (prompt)":
              leg_objects(z, lambda mode, origin: np.isin(mode, ("e", "mu"))),
              "Z->ll lepton faking tau_had legs":
              leg_objects(z, lambda mode, origin: np.isin(origin, (2, 3)))}
    lifetime_signal("selected legs", m, prompt)
    if mc is not None and cand_z is not None:
        lifetime_signal("all candidates", mc, {"Z->ll lepton candidates (prompt)": cand_z})
    print(f"  reference: prompt tracks have true d0 = 0, so |d0|/sigma is half-normal, median "
          f"Phi^-1(3/4) = {HALF_NORMAL_MEDIAN:.4f} (expected error 0.787/sqrt(n))")
    times["analysis"] = time.perf_counter() - t0

    print("\nrun time [s]")
    for k, v in times.items():
        print(f"  {k:40s} {v:8.1f}")
    print(f"  {'total':40s} {time.perf_counter() - start:8.1f}")


if __name__ == "__main__":
    main()
