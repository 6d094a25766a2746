"""``ditau evaluate``: resolution of reconstruction methods against the truth.

The command function is registered on the main app in :mod:`ditau.cli` (e.g.
``app.command("evaluate")(evaluate_command)``); it is a thin wrapper over
:func:`ditau.evaluate.evaluate_files`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ditau.schema import SchemaError

_USER_ERRORS = (SchemaError, ValueError, OSError)


def evaluate_command(
    events: Annotated[Path, typer.Argument(
        help="the detector-level event file the methods were run on (truth + reco)")],
    recon: Annotated[list[Path], typer.Option(
        "--recon", "-r", help="a method-output file of 'ditau reconstruct' (repeatable)")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="directory for the PNG figures and table.md (created if "
                            "missing; default: print the table only)")] = None,
    channel: Annotated[list[str] | None, typer.Option(
        "--channel", "-c", help="only this channel (repeatable or comma-separated): pipi, epi, "
                                "mupi, pirho, erho, murho, rhorho (default: all)")] = None,
    all_events: Annotated[bool, typer.Option(
        "--all", help="all events of a reco channel, not only the signal region")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="print only the tables (no list of written files)")] = False,
) -> None:
    """HWHM of the relative tau-momentum and m_tautau residuals per channel and method."""
    from ditau.evaluate import evaluate_files

    channels = None
    if channel:
        channels = [c.strip() for item in channel for c in item.split(",") if c.strip()]
    try:
        if not recon:
            raise ValueError("give at least one method-output file with --recon")
        result = evaluate_files(events, recon, out=out, channels=channels,
                                only_sr=not all_events)
    except _USER_ERRORS as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    typer.echo(result.markdown)
    if not quiet:
        for p in result.written:
            typer.echo(f"wrote {p}")
