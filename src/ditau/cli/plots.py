"""``ditau plot-inputs``: truth-vs-reco validation plots of the reconstruction inputs.

The command function is registered on the main app in :mod:`ditau.cli` (e.g.
``app.command("plot-inputs")(plot_inputs_command)``); it is a thin wrapper over
:func:`ditau.plots.plot_inputs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ditau.schema import SchemaError

_USER_ERRORS = (SchemaError, ValueError, OSError)


def plot_inputs_command(
    path: Annotated[Path, typer.Argument(
        help="a detector-level ditau Parquet file (output of 'ditau detector')")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="output directory for the PNG figures (created if missing)")]
        = Path("plots"),
    channel: Annotated[list[str] | None, typer.Option(
        "--channel", "-c", help="only this channel (repeatable or comma-separated): pipi, "
                                "pirho, rhorho, epi, mupi, erho, murho (default: all)")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="print only a one-line summary (no per-file list, no notes)")]
        = False,
) -> None:
    """Plot the reconstruction inputs per channel, truth (line) vs reco (points), ATLAS style."""
    from ditau.plots import plot_inputs

    channels = None
    if channel:
        channels = [c.strip() for item in channel for c in item.split(",") if c.strip()]

    def note(msg: str) -> None:
        if not quiet:
            typer.echo(f"note: {msg}")

    try:
        written = plot_inputs(path, out, channels=channels, note=note)
    except _USER_ERRORS as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    if not quiet:
        for p in written:
            typer.echo(f"wrote {p}")
    typer.echo(f"{len(written)} figure(s) in {out}")
