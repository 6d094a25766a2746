"""``ditau reconstruct``: CLI over :func:`~ditau.reconstruct.runner.reconstruct`.

Registered in :mod:`ditau.cli` with ``app.command("reconstruct")(reconstruct_command)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ditau.schema import SchemaError


def reconstruct_command(
    inp: Annotated[Path, typer.Argument(help="detector-level event file (Parquet)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output method file (Parquet)")],
    method: Annotated[str, typer.Option(
        "--method", help="reconstruction method: collinear, fastmtt, mmc or ml")],
    only_sr: Annotated[bool, typer.Option(
        "--sr-only", help="only events in the signal region (in_sr)")] = False,
    workers: Annotated[int, typer.Option(
        "--workers", "-j", help="worker processes over chunks")] = 1,
    chunk: Annotated[int, typer.Option(help="events per chunk")] = 20000,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    model: Annotated[Path | None, typer.Option(
        "--model", help="trained model file (method ml; 'ditau train') [default: the "
        "model shipped with ditau]")] = None,
    candidates: Annotated[int | None, typer.Option(
        "--candidates", help="method ml: sampled candidates per event [default: 10]")] = None,
    device: Annotated[str | None, typer.Option(
        "--device", help="method ml: auto, cpu or cuda [default: auto]")] = None,
) -> None:
    """Reconstruct the tau momenta and m_tautau of every event with a classical method
    (collinear approximation, CMS FastMTT, ATLAS MMC) or a trained ML model (ml: candidate 0
    is the point estimate, 1..K the sampled candidates) -> one method-output file."""
    from ditau.reconstruct import reconstruct

    settings: dict[str, object] = {}
    for key, val in (("model", None if model is None else str(model)),
                     ("candidates", candidates), ("device", device)):
        if val is not None:
            settings[key] = val
    try:
        summary = reconstruct(inp, out, method, chunk=chunk, workers=workers,
                              only_sr=only_sr, progress=not quiet, **settings)
    except (SchemaError, ValueError, OSError) as err:  # OSError: FileNotFoundError too
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    typer.echo(f"wrote {summary.events} events ({summary.method}) to {summary.path} "
               f"in {summary.seconds:.1f} s ({summary.events_per_s:.0f} events/s); {counts}")
