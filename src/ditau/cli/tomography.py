"""``ditau tomography``: CLI over :func:`~ditau.tomography.run.run_tomography`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ditau.cli.common import comma_list, existing_all, user_errors
from ditau.cli.reconstruct import METHOD_NAMES


def _split(item: str, what: str, form: str) -> tuple[str, Path]:
    key, sep, val = item.partition("=")
    if not sep or not key.strip() or not val.strip():
        raise typer.BadParameter(f"{what}: expected {form}, got '{item}'")
    return key.strip(), Path(val.strip())


def _pairs(items: list[str] | None, what: str, form: str = "NAME=FILE") -> dict[str, Path]:
    """``NAME=FILE`` options -> {NAME: FILE} (a repeated NAME is an error)."""
    out: dict[str, Path] = {}
    for item in items or []:
        key, val = _split(item, what, form)
        if key in out:
            raise typer.BadParameter(f"{what}: {key} given twice ({out[key]}, {val})")
        out[key] = val
    return out


def _variation_pairs(items: list[str] | None, what: str = "--variation-recon",
                     form: str = "VARIATION:METHOD=FILE") -> dict[str, dict[str, Path]]:
    """``NAME:METHOD=FILE`` options (``--variation-recon``, ``--background-recon``) ->
    {NAME: {METHOD: FILE}}."""
    out: dict[str, dict[str, Path]] = {}
    for item in items or []:
        key, val = _split(item, what, form)
        var, sep, method = key.partition(":")
        if not sep or not var.strip() or not method.strip():
            raise typer.BadParameter(f"{what}: expected {form}, got '{item}'")
        per = out.setdefault(var.strip(), {})
        if method.strip() in per:
            raise typer.BadParameter(f"{what}: {key} given twice")
        per[method.strip()] = val
    return out


def _list_pairs(items: list[str] | None, what: str) -> dict[str, list[Path]]:
    """Repeatable ``METHOD=FILE`` options -> {METHOD: [FILE, ...]}."""
    out: dict[str, list[Path]] = {}
    for item in items or []:
        key, val = _split(item, what, "METHOD=FILE")
        out.setdefault(key, []).append(val)
    return out


def tomography_command(
    events: Annotated[Path, typer.Argument(help="detector-level signal file (truth + reco)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="report directory")],
    method: Annotated[list[str] | None, typer.Option(
        "--method", "-m", help="methods (repeatable): truth, collinear, fastmtt, mmc, ml; each "
                               "but truth needs its --recon file, and every method given "
                               "with --recon is run too (default: truth and those)")] = None,
    recon: Annotated[list[str] | None, typer.Option(
        "--recon", help="METHOD=FILE: the method's output on EVENTS, made with 'ditau "
                        "reconstruct EVENTS -o FILE --method METHOD --sr-only' (repeatable)"
    )] = None,
    variation: Annotated[list[str] | None, typer.Option(
        "--variation", help="NAME=FILE: the same events through a detector variation, e.g. "
                            "tes_up=sig_tes_up.parquet (repeatable); each method but truth "
                            "needs its --variation-recon on it")] = None,
    variation_recon: Annotated[list[str] | None, typer.Option(
        "--variation-recon", help="VARIATION:METHOD=FILE: the method's output on a variation "
                                  "file, e.g. tes_up:mmc=mmc_tes_up.parquet (repeatable)"
    )] = None,
    background: Annotated[list[Path] | None, typer.Option(
        "--background", "-b", help="detector-level background file, one per sample "
                                   "(repeatable)")] = None,
    background_recon: Annotated[list[str] | None, typer.Option(
        "--background-recon", help="SAMPLE:METHOD=FILE: the method's output on a background "
                                   "file, e.g. zll:mmc=zll_mmc.parquet (repeatable); with them "
                                   "the fit uses each background's own analyser distribution "
                                   "(else the signal's unpolarised shape)")] = None,
    rho: Annotated[str, typer.Option(
        help="rho analyser at detector level: visible (direction of pi+pi0) or polarimeter "
             "(optimal, needs the neutrino: uses each method's tau momentum)")] = "polarimeter",
    boot: Annotated[int, typer.Option(help="bootstrap replicas for the MC-statistics "
                                           "uncertainty of the calibration")] = 10,
    seed: Annotated[int, typer.Option(help="random seed (hypotheses, bootstrap, toys)")] = 0,
    nu_sampling: Annotated[list[str] | None, typer.Option(
        "--nu-sampling", help="METHOD=FILE: the method's output on EVENTS made with another "
                              "noise seed (ML); the spread over these files gives the "
                              "neutrino-sampling uncertainty (repeatable, one per seed)")] = None,
    candidate_average: Annotated[bool, typer.Option(
        "--candidate-average/--point-estimate",
        help="ML: average each event's analyser products (calibration) and moment "
             "observables (fit) over its sampled candidates (the posterior mean; default), "
             "or use the point estimate's analysers (the candidates' median)")] = True,
    reference_yields: Annotated[bool, typer.Option(
        "--reference-yields", help="significance with the reference study's signal-region "
                                   "yields instead of this sample's")] = False,
    analysis: Annotated[str, typer.Option(
        help="fit (profile-likelihood fit of B and C to the detector-level histograms, the "
             "measurement), calibration (the calibration of diag C, a cross-check) or both"
    )] = "both",
    observable: Annotated[str, typer.Option(
        help="fit: moments (the 16 analyser moments per channel, Gaussian; default) or signs "
             "(binned Poisson in the signs of the six analyser components; needs far more "
             "simulated events)")] = "moments",
    bins: Annotated[int, typer.Option(
        help="fit with --observable signs: bins per analyser component (2 or 3)")] = 2,
    closure: Annotated[bool, typer.Option(
        "--closure/--no-closure", help="fit: closure tests on the pseudo-data put into other "
                                       "spin states")] = True,
) -> None:
    """The spin measurement per reconstruction method: a profile-likelihood fit of B and C
    (concurrence, witness D, m12, every uncertainty, significance vs luminosity, closure
    tests) and the calibration cross-check -> summary.md + figures.

    Reads 'ditau reconstruct' outputs, runs no method: --recon, --variation-recon,
    --background-recon, --nu-sampling.
    """
    from ditau.tomography.report import to_markdown, write_report
    from ditau.tomography.run import run_tomography

    if rho not in ("visible", "polarimeter"):
        raise typer.BadParameter(f"--rho: 'visible' or 'polarimeter', got '{rho}'")
    if analysis not in ("fit", "calibration", "both"):
        raise typer.BadParameter(f"--analysis: 'fit', 'calibration' or 'both', got '{analysis}'")
    if analysis == "calibration" and (observable != "moments" or bins != 2 or not closure):
        raise typer.BadParameter("--observable, --bins and --no-closure set up the fit; with "
                                 "--analysis calibration there is no fit")
    if observable not in ("moments", "signs"):
        raise typer.BadParameter(f"--observable: 'moments' or 'signs', got '{observable}'")
    if bins not in (2, 3):
        raise typer.BadParameter(f"--bins: 2 or 3, got {bins}")
    if boot == 1 or boot < 0:
        raise typer.BadParameter(f"--boot: 0 (no MC-statistics estimate of the calibration) or "
                                 f">= 2 replicas (a spread needs two), got {boot}")
    with user_errors():
        methods = comma_list(method, "--method", ("truth", *METHOD_NAMES))
        pairs = _pairs(recon, "--recon", "METHOD=FILE")
        comma_list(list(pairs), "--recon", METHOD_NAMES)
        vpairs = _pairs(variation, "--variation")
        vrecon = _variation_pairs(variation_recon)
        nu = _list_pairs(nu_sampling, "--nu-sampling")
        brecon = _variation_pairs(background_recon, "--background-recon",
                                  "SAMPLE:METHOD=FILE")
        if brecon and not background:
            raise ValueError("--background-recon needs the background files (--background)")
        if brecon and analysis == "calibration":
            raise ValueError("--background-recon shapes the fit's backgrounds; with --analysis "
                             "calibration there is no fit")
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out}: exists and is not a directory (the report folder)")
        existing_all([events, *pairs.values(), *vpairs.values(), *(background or ()),
                      *(f for per in vrecon.values() for f in per.values()),
                      *(f for per in brecon.values() for f in per.values()),
                      *(f for fs in nu.values() for f in fs)])
        res = run_tomography(events, methods=methods or None,
                             recon=pairs, variations=vpairs, variation_recon=vrecon,
                             backgrounds=background or (), background_recon=brecon,
                             rho=rho, n_boot=boot, seed=seed,
                             reference_yields=reference_yields,
                             nu_sampling_recon=nu,
                             candidate_average=candidate_average,
                             analysis=analysis, bins=bins, closure=closure,
                             observable=observable,
                             progress=lambda m: typer.echo(m, err=True))
        written = write_report(res, out)
    typer.echo(to_markdown(res))
    typer.echo("wrote " + ", ".join(str(p) for p in written))
