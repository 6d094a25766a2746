"""``ditau reconstruct``: one registered method over an event file -> a method-output file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ditau.cli.common import given, key_values, scheduler_option, user_errors

#: The registered methods (ditau.reconstruct.METHODS), spelled out so that --help needs no import.
METHOD_NAMES = ("collinear", "fastmtt", "mmc", "ml")


def reconstruct_command(
    inp: Annotated[Path, typer.Argument(
        help="event file: 'ditau detector' output, or any Parquet file / ROOT TTree or "
             "RNTuple with the input columns ('ditau schema --group reco' lists them; see "
             "--columns); reco_mode_p/m must be string labels (pi, rho, e, mu, other): "
             "integer decay-mode codes are refused, not guessed")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output method file (Parquet)")],
    method: Annotated[str, typer.Option(
        "--method", help=f"reconstruction method: {', '.join(METHOD_NAMES)}")],
    only_sr: Annotated[bool, typer.Option(
        "--sr-only", help="only events in the signal region (in_sr)")] = False,
    workers: Annotated[int, typer.Option(
        "--workers", "-j", help="worker processes over chunks")] = 1,
    scheduler: Annotated[str | None, typer.Option(
        help="Dask scheduler address (tcp://host:port); overrides --workers")] = None,
    chunk: Annotated[int, typer.Option(help="events per chunk (bounds the memory)")] = 20000,
    columns: Annotated[list[str] | None, typer.Option(
        "--columns", help="SCHEMA=YOURS: read the schema column SCHEMA from the file's column "
                          "YOURS (repeatable), for ntuples that name them otherwise")] = None,
    tree: Annotated[str | None, typer.Option(
        "--tree", help="TTree or RNTuple name of a ROOT input with several")] = None,
    setting: Annotated[list[str] | None, typer.Option(
        "--setting", "-s", help="NAME=VALUE method setting (repeatable; YAML value syntax), "
                                "e.g. -s grid=50 for fastmtt, -s n_phi=32 for mmc")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    model: Annotated[Path | None, typer.Option(
        "--model", help="trained model file (method ml; 'ditau train') or a shipped model's "
        "name, e.g. ditau-cpu-v1 [default: the model shipped as default]")] = None,
    candidates: Annotated[int | None, typer.Option(
        "--candidates", help="method ml: sampled candidates per event [default: 10]")] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="random seed of a sampling method (ml, mmc) [default: 0]")] = None,
    device: Annotated[str | None, typer.Option(
        "--device", help="method ml: auto, cpu, cuda, cuda:N or mps [default: auto]")] = None,
) -> None:
    """Reconstruct the tau momenta and m_tautau of every event with a classical method
    (collinear approximation, CMS FastMTT, ATLAS MMC) or a trained ML model (ml: candidate 0
    is the point estimate, 1..K the sampled candidates) -> one method-output file.

    ROOT input: a TTree or RNTuple whose branches are checked like Parquet columns (numeric,
    unique event_id). The decay modes must be strings: integer codes (CMS HPS, ATLAS PanTau,
    ...) disagree beyond pi/rho, so they are an error naming the branch; uproot writes strings
    to an RNTuple (its default), not to a TTree."""
    import yaml

    from ditau.reconstruct import reconstruct

    with user_errors():
        scheduler = scheduler_option(scheduler)
        settings = {k: yaml.safe_load(v) for k, v in key_values(setting, "--setting").items()}
        settings.update(given(model=model, candidates=candidates, seed=seed, device=device))
        summary = reconstruct(inp, out, method, chunk=chunk, workers=workers,
                              scheduler=scheduler, only_sr=only_sr, progress=not quiet,
                              column_map=key_values(columns, "--columns"), tree=tree,
                              **settings)
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    typer.echo(f"wrote {summary.events} events ({summary.method}) to {summary.path} "
               f"in {summary.seconds:.1f} s ({summary.events_per_s:.0f} events/s); {counts}")
    for note in summary.notes:
        typer.echo(f"note: {note}")
