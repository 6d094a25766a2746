"""The ``ditau`` command line: one module per stage, joined here; thin shells over the stage
functions. Shared option types and the one error path (user error -> one line, exit code 2)
are in :mod:`ditau.cli.common`; no science package imports typer.
"""

from __future__ import annotations

import sys

import typer

from ditau.cli.common import exit_on_sigterm
from ditau.cli.delphes import import_delphes_command
from ditau.cli.demo import demo
from ditau.cli.detector import detector, yields
from ditau.cli.evaluate import evaluate_command
from ditau.cli.files import info, merge, schema
from ditau.cli.generate import generate
from ditau.cli.ml import export_command, train_command
from ditau.cli.plots import plot_inputs_command
from ditau.cli.reconstruct import reconstruct_command
from ditau.cli.tomography import tomography_command

app = typer.Typer(
    name="ditau",
    help="Quantum entanglement and Bell-inequality violation in pp -> Z -> tau+ tau-.\n\n"
         "Stages: generate (Pythia 8 events with full truth) or import-delphes -> detector "
         "(response, triggers, channels, signal region) -> reconstruct (collinear, FastMTT, "
         "MMC, ml) -> evaluate (resolutions) and tomography (spin density matrix, "
         "entanglement, CHSH, significance). 'ditau demo' runs the whole chain on a small "
         "sample.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _entry(ctx: typer.Context) -> None:
    # SIGTERM -> SystemExit while a command runs, so atomic writes remove their temporary file
    ctx.call_on_close(exit_on_sigterm())


for name, command in (
    ("generate", generate), ("import-delphes", import_delphes_command),
    ("detector", detector), ("yields", yields), ("plot-inputs", plot_inputs_command),
    ("reconstruct", reconstruct_command), ("evaluate", evaluate_command),
    ("tomography", tomography_command), ("train", train_command), ("export", export_command),
    ("merge", merge), ("info", info), ("schema", schema), ("demo", demo),
):
    app.command(name)(command)


def main() -> None:  # pragma: no cover - console entry point for `python -m ditau`
    sys.exit(app())
