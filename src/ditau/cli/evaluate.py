"""``ditau evaluate``: resolution of reconstruction methods against the truth (a thin shell
over :func:`ditau.evaluate.evaluate_files`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ditau.cli.common import Force, comma_list, existing_all, reported_warnings, user_errors


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
    force: Force = False,
) -> None:
    """HWHM of the relative tau-momentum and m_tautau residuals per channel and method."""
    from ditau.evaluate import evaluate_files
    from ditau.physics import ANALYSIS_CHANNELS

    with user_errors():
        channels = comma_list(channel, "--channel", ANALYSIS_CHANNELS)
    with user_errors(), reported_warnings():
        if not recon:
            raise ValueError("give at least one method-output file with --recon")
        existing_all([events, *recon])
        result = evaluate_files(events, recon, out=out, channels=channels,
                                only_sr=not all_events, force=force)
    typer.echo(result.markdown)
    if not quiet:
        for p in result.written:
            typer.echo(f"wrote {p}")
