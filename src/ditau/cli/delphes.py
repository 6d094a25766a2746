"""``ditau import-delphes``: CLI over :func:`~ditau.detector.delphes.import_delphes`.

Registered in :mod:`ditau.cli` with ``app.command("import-delphes")(import_delphes_command)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ditau.schema import SchemaError


def import_delphes_command(
    files: Annotated[list[Path], typer.Argument(help="Delphes ROOT files (tree 'Delphes')")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output Parquet file")],
    sample: Annotated[str, typer.Option(help="sample name for the 'sample' column")] = "delphes",
    cross_section_pb: Annotated[float | None, typer.Option(
        "--cross-section-pb", help="cross section of the sample in pb, for the per-event "
                                   "weight (events per fb^-1); without it weight = 1")] = None,
    step_size: Annotated[int, typer.Option(help="events read per chunk")] = 5000,
    allow_missing: Annotated[str | None, typer.Option(
        help="comma-separated collections that may be absent (then empty): Electron,Muon")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Import Delphes ROOT files: leptons, tau_had candidates, jets and MET -> selection ->
    one ditau Parquet file (reco columns, and truth where the files hold Particle)."""
    from ditau.detector.delphes import DelphesError, import_delphes

    allowed = tuple(c.strip() for c in allow_missing.split(",") if c.strip()) \
        if allow_missing else ()
    try:
        summary = import_delphes(files, out, sample=sample, cross_section_pb=cross_section_pb,
                                 step_size=step_size, allow_missing=allowed, progress=not quiet)
    except (DelphesError, SchemaError, ValueError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    fallbacks = sorted({f"{k}={i[k]}" for i in summary.metadata["inputs"]
                        for k in ("tau_split", "met", "sumet")})
    typer.echo(f"wrote {summary.events} events to {summary.path} ({summary.seconds:.1f} s); "
               f"{summary.in_sr} in the signal region; reco channels: {summary.channels}")
    typer.echo(f"inputs: {len(summary.metadata['inputs'])} file(s); {', '.join(fallbacks)}; "
               f"weights: {summary.metadata['normalisation']}")
