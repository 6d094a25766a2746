"""``ditau import-delphes``: CLI over :func:`~ditau.detector.delphes.import_delphes`.

Registered in :mod:`ditau.cli` with ``app.command("import-delphes")(import_delphes_command)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ditau.cli.common import comma_list, fail, key_values, reported_warnings, user_errors

_COLLECTION_HELP = (
    "ROLE=NAME: read ROLE from the collection NAME (repeatable), e.g. --collection jets=KTjet; "
    "ROLE is one of jets, electrons, muons, met, scalar_ht, eflow_tracks, tracks, "
    "eflow_photons, eflow_neutral_hadrons, photons, event, particles")


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
    collection: Annotated[list[str] | None, typer.Option(
        "--collection", help=_COLLECTION_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Import Delphes ROOT files: leptons, tau_had candidates, jets and MET -> selection ->
    one ditau Parquet file (reco columns, and truth where the files hold Particle).

    Errors (exit code 2) name the file and the branch or collection, with the remedies as
    options of this command (--allow-missing, --collection)."""
    from ditau.detector.delphes import COLLECTIONS, DelphesError, DelphesWarning, import_delphes

    with user_errors():
        allowed = comma_list(allow_missing, "--allow-missing") or ()
        names = key_values(collection, "--collection")
        unknown = [k for k in names if k not in COLLECTIONS]
        if unknown:
            raise ValueError(f"--collection: unknown role(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(COLLECTIONS)}")
    with reported_warnings(DelphesWarning):
        try:
            summary = import_delphes(files, out, sample=sample,
                                     cross_section_pb=cross_section_pb, step_size=step_size,
                                     allow_missing=allowed, collections=names,
                                     progress=not quiet)
        except DelphesError as err:
            fail(err.render("cli"))
        except (ValueError, OSError) as err:  # SchemaError is a ValueError
            fail(err)
    fallbacks = sorted({f"{k}={i[k]}" for i in summary.metadata["inputs"]
                        for k in ("tau_split", "met", "sumet")})
    typer.echo(f"wrote {summary.events} events to {summary.path} ({summary.seconds:.1f} s); "
               f"{summary.in_sr} in the signal region; reco channels: {summary.channels}")
    typer.echo(f"inputs: {len(summary.metadata['inputs'])} file(s); {', '.join(fallbacks)}; "
               f"weights: {summary.metadata['normalisation']}; "
               f"truth: {'Particle' if 'truth' in summary.metadata['groups'] else 'omitted'}")
