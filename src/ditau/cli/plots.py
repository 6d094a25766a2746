"""``ditau plot-inputs``: truth-vs-reco validation plots of the reconstruction inputs (a thin
shell over :func:`ditau.plots.plot_inputs`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ditau.cli.common import comma_list, user_errors


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
    from ditau.physics import ANALYSIS_CHANNELS
    from ditau.plots import plot_inputs

    with user_errors():
        channels = comma_list(channel, "--channel", ANALYSIS_CHANNELS)

    def note(msg: str) -> None:
        if not quiet:
            typer.echo(f"note: {msg}")

    with user_errors():
        written = plot_inputs(path, out, channels=channels, note=note)
    if not quiet:
        for p in written:
            typer.echo(f"wrote {p}")
    typer.echo(f"{len(written)} figure(s) in {out}")
