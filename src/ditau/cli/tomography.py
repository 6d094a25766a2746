"""``ditau tomography``: CLI over :func:`~ditau.tomography.run.run_tomography`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ditau.schema import SchemaError


def _pairs(items: list[str] | None, what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep or not key or not val:
            raise typer.BadParameter(f"{what}: expected NAME=FILE, got '{item}'")
        out[key.strip()] = Path(val.strip())
    return out


def tomography_command(
    events: Annotated[Path, typer.Argument(help="detector-level signal file (truth + reco)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="report directory")],
    method: Annotated[list[str] | None, typer.Option(
        "--method", "-m", help="methods (repeatable): truth, collinear, fastmtt, mmc, ml "
                               "[default: all five]")] = None,
    recon: Annotated[list[str] | None, typer.Option(
        "--recon", help="METHOD=FILE: use a 'ditau reconstruct' output instead of running the "
                        "method (repeatable)")] = None,
    variation: Annotated[list[str] | None, typer.Option(
        "--variation", help="NAME=FILE: the same events through a detector variation, e.g. "
                            "tes_up=sig_tes_up.parquet (repeatable)")] = None,
    background: Annotated[list[Path] | None, typer.Option(
        "--background", "-b", help="detector-level background file (repeatable)")] = None,
    rho: Annotated[str, typer.Option(
        help="rho analyser at detector level: visible (direction of pi+pi0) or polarimeter "
             "(optimal, needs the neutrino: uses each method's tau momentum)")] = "polarimeter",
    boot: Annotated[int, typer.Option(help="bootstrap replicas for the MC-statistics "
                                           "uncertainty of the calibration")] = 10,
    seed: Annotated[int, typer.Option(help="random seed (hypotheses, bootstrap, toys)")] = 0,
    model: Annotated[Path | None, typer.Option(
        "--model", help="method ml run here (variations, or no --recon): trained model file "
                        "[default: the shipped model]")] = None,
    candidates: Annotated[int, typer.Option(
        help="method ml run here: sampled candidates per event")] = 10,
    nu_sampling: Annotated[int, typer.Option(
        "--nu-sampling", help="ML: re-runs with other noise seeds for the neutrino-sampling "
                              "uncertainty (0: none)")] = 5,
    candidate_average: Annotated[bool, typer.Option(
        "--candidate-average", help="ML: average each event's analyser products over its "
                                    "sampled candidates instead of using the point "
                                    "estimate's")] = False,
    reference_yields: Annotated[bool, typer.Option(
        "--reference-yields", help="significance with the reference study's signal-region "
                                   "yields instead of this sample's")] = False,
) -> None:
    """Calibrated spin correlations, concurrence, Bell variable, systematics and expected
    significance vs luminosity per reconstruction method -> summary.md + significance.png."""
    from ditau.tomography.report import to_markdown, write_report
    from ditau.tomography.run import TomographyError, run_tomography

    if rho not in ("visible", "polarimeter"):
        raise typer.BadParameter(f"--rho: 'visible' or 'polarimeter', got '{rho}'")
    try:
        ml_settings: dict[str, object] = {"candidates": candidates}
        if model is not None:
            ml_settings["model"] = str(model)
        res = run_tomography(events, methods=tuple(method or ("truth", "collinear", "fastmtt",
                                                              "mmc", "ml")),
                             recon=_pairs(recon, "--recon"),
                             variations=_pairs(variation, "--variation"),
                             backgrounds=background or (), rho=rho, n_boot=boot, seed=seed,
                             reference_yields=reference_yields,
                             method_settings={"ml": ml_settings}, nu_sampling=nu_sampling,
                             candidate_average=candidate_average,
                             progress=lambda m: typer.echo(m, err=True))
        written = write_report(res, out)
    except (TomographyError, SchemaError, ValueError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    typer.echo(to_markdown(res))
    typer.echo("wrote " + ", ".join(str(p) for p in written))
