"""The ``ditau`` command line: thin wrappers over the stage functions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ditau.cli.delphes import import_delphes_command
from ditau.cli.evaluate import evaluate_command
from ditau.cli.plots import plot_inputs_command
from ditau.cli.reconstruct import reconstruct_command
from ditau.cli.tomography import tomography_command
from ditau.generate.config import ConfigError, GenerateConfig
from ditau.generate.runner import GenerationError
from ditau.schema import SchemaError

app = typer.Typer(
    name="ditau",
    help="Quantum entanglement and Bell nonlocality in pp -> Z -> tau+ tau-.\n\n"
         "Stages: generate (Pythia 8 events with full truth) -> detector (response, "
         "triggers, channels, signal region) -> reconstruct -> evaluate -> tomography. "
         "Stages after the detector arrive in later releases; 'ditau demo' runs what exists.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_USER_ERRORS = (ConfigError, SchemaError, GenerationError, ValueError, OSError)


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="output Parquet file")],
    events: Annotated[int | None, typer.Option("--events", "-n", help="number of events")] = None,
    process: Annotated[str | None, typer.Option(
        help="process: ztautau (signal), zll, wlnu, wtaunu, ttbar")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed (same seed, same bytes)")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-j", help="local worker processes [default: one per core]")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="Dask scheduler address (tcp://host:port); overrides --workers")] = None,
    mass_window: Annotated[tuple[float, float] | None, typer.Option(
        help="m_hat window in GeV, e.g. --mass-window 60 120")] = None,
    force_decays: Annotated[str | None, typer.Option(
        help="force both taus into these modes, comma-separated subset of pi,rho,e,mu "
             "(weights keep the physical rates)")] = None,
    events_per_job: Annotated[int | None, typer.Option(help="events per job")] = None,
    tau_filter: Annotated[str | None, typer.Option(
        help="generator-level tau filter before hadronisation and decays: 'sr' (looser than "
             "the signal region: pT > 12/22 GeV, |eta| < 2.7) or 'PT_MIN,PT_LEAD_MIN,ABS_ETA_MAX'; "
             "weights stay physical")] = None,
    no_particles: Annotated[bool, typer.Option(
        "--no-particles", help="do not store the visible final state (smaller files; the "
                               "detector stage then cannot be re-run)")] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML file of GenerateConfig fields; options override it")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Generate events (signal pp -> Z/gamma* -> tau tau, or a background) with Pythia 8."""
    from ditau.generate import run

    try:
        cfg = GenerateConfig.from_yaml(config) if config else GenerateConfig()
        changes: dict[str, object] = {}
        for key, val in (("events", events), ("process", process), ("seed", seed),
                         ("mass_window", mass_window), ("events_per_job", events_per_job)):
            if val is not None:
                changes[key] = val
        if force_decays is not None:
            changes["force_decays"] = tuple(m.strip() for m in force_decays.split(",") if m)
        if no_particles:
            changes["keep_particles"] = False
        if tau_filter is not None:
            changes["tau_filter"] = tau_filter  # parsed by GenerateConfig.from_dict
        cfg = GenerateConfig.from_dict({**cfg.to_dict(), **changes}, source="options")
        summary = run(cfg, out, workers=workers, scheduler=scheduler, progress=not quiet)
    except _USER_ERRORS as err:
        _fail(err)
        return
    typer.echo(f"wrote {summary.events} events to {summary.path} "
               f"({summary.seconds:.1f} s, {summary.events_per_second:.1f} events/s)")
    from ditau.generate.config import PROCESSES

    typer.echo(f"cross section sigma({PROCESSES[cfg.process].doc}) = "
               f"{summary.cross_section_pb:.1f} +- {summary.cross_section_err_pb:.1f} pb; "
               f"truth channels: {summary.channels}")


@app.command()
def detector(
    inp: Annotated[Path, typer.Argument(help="generated event file (with particles)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output Parquet file")],
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML file of DetectorConfig fields")] = None,
    systematic: Annotated[str | None, typer.Option(
        help="named variation: tes_up/down, jes_up/down, soft_met_scale_up/down, "
             "soft_met_resolution_up/down")] = None,
    seed: Annotated[int | None, typer.Option(help="detector random seed")] = None,
    no_smear: Annotated[bool, typer.Option(
        "--no-smear", help="switch all resolutions off (closure studies)")] = False,
    drop_particles: Annotated[bool, typer.Option(
        "--drop-particles", help="do not copy the particle lists to the output")] = False,
    select: Annotated[Path | None, typer.Option(
        "--select", help="YAML file of SelectConfig fields (cuts, triggers, SR)")] = None,
    workers: Annotated[int, typer.Option("--workers", "-j", help="local processes")] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """ATLAS-like detector response, triggers, channel assignment and signal region."""
    from ditau.detector.config import DetectorConfig
    from ditau.detector.run import run_detector
    from ditau.select import SelectConfig

    try:
        scfg = SelectConfig.from_yaml(select) if select else SelectConfig()
        cfg = DetectorConfig.from_yaml(config) if config else DetectorConfig()
        changes: dict[str, object] = {}
        if seed is not None:
            changes["seed"] = seed
        if no_smear:
            changes["smear"] = False
        cfg = DetectorConfig.from_dict({**cfg.to_dict(), **changes}, source="options")
        summary = run_detector(inp, out, cfg, scfg, systematic=systematic,
                               keep_particles=not drop_particles, workers=workers,
                               progress=not quiet)
    except _USER_ERRORS as err:
        _fail(err)
        return
    typer.echo(f"wrote {summary.events} events to {summary.path} ({summary.in_sr} in the "
               f"signal region; {summary.seconds:.1f} s)")


@app.command()
def yields(
    files: Annotated[list[Path], typer.Argument(
        help="event files: detector output, or generated files (the detector then runs "
             "in memory with default settings)")],
    markdown: Annotated[Path | None, typer.Option(
        "--markdown", help="also write the tables to this Markdown file")] = None,
    select: Annotated[Path | None, typer.Option(
        "--select", help="YAML file of SelectConfig fields: re-applies the selection to the "
                         "stored candidates' events by re-running the detector (files with "
                         "particles only)")] = None,
) -> None:
    """Signal-region yields per fb^-1 per channel: signal by truth channel, backgrounds."""
    from ditau.schema import atomic_path
    from ditau.select import SelectConfig
    from ditau.yields import compute_yields

    try:
        scfg = SelectConfig.from_yaml(select) if select else None
        table = compute_yields(files, select_config=scfg)
        text = table.to_markdown()
        if markdown is not None:
            with atomic_path(markdown) as tmp:
                tmp.write_text(text + "\n")
    except _USER_ERRORS as err:
        _fail(err)
        return
    typer.echo(text)


@app.command()
def merge(
    inputs: Annotated[list[Path], typer.Argument(help="event files of one sample")],
    out: Annotated[Path, typer.Option("--out", "-o", help="merged Parquet file")],
) -> None:
    """Merge files of one sample (e.g. several seeds): event ids renumbered, weights shared."""
    from ditau.merge import merge_files

    try:
        n = merge_files(inputs, out)
    except _USER_ERRORS as err:
        _fail(err)
        return
    typer.echo(f"merged {len(inputs)} files ({n} events) into {out}")


@app.command()
def info(path: Annotated[Path, typer.Argument(help="a ditau Parquet file")]) -> None:
    """Validate a ditau file and print its metadata and channel content."""
    import numpy as np
    import pyarrow.parquet as pq

    from ditau.schema import read_events, read_metadata

    try:
        meta = read_metadata(path)
        label = "truth_channel"
        if "truth_channel" not in pq.ParquetFile(path).schema_arrow.names:
            label = "reco_channel"  # detector-level only (e.g. a Delphes import without truth)
        table = read_events(path, columns=[label, "weight"])
    except _USER_ERRORS as err:
        _fail(err)
        return
    typer.echo(json.dumps({k: v for k, v in meta.items() if k != "jobs"}, indent=1))
    ch = np.asarray(table[label])
    w = np.asarray(table["weight"])
    typer.echo(f"{table.num_rows} events; yield per fb^-1 = {w.sum():.1f}")
    for c in sorted(set(ch)):
        typer.echo(f"  {c:8s} {np.sum(ch == c):8d} events  {w[ch == c].sum():10.2f} /fb^-1")


@app.command()
def schema(group: Annotated[list[str] | None, typer.Option(
        help="only these groups (id, truth, particles, reco)")] = None) -> None:
    """Print the event schema (columns, dtypes, units) as a Markdown table."""
    from ditau.schema import GROUPS, describe

    try:
        typer.echo(describe(tuple(group) if group else GROUPS))
    except ValueError as err:
        _fail(err)


@app.command()
def demo(
    outdir: Annotated[Path, typer.Option("--outdir", help="report folder")] = Path("ditau-demo"),
    events: Annotated[int, typer.Option("--events", "-n")] = 4000,
    workers: Annotated[int, typer.Option("--workers", "-j")] = 2,
    seed: Annotated[int, typer.Option()] = 1,
) -> None:
    """Run the whole chain on a small sample, on CPU: generation, detector, selection,
    collinear/FastMTT/MMC, resolution table, spin tomography -> one report folder."""
    from ditau.demo import run_demo

    try:
        report = run_demo(outdir, events=events, workers=workers, seed=seed)
    except _USER_ERRORS as err:
        _fail(err)
        return
    typer.echo(report)


def _ml_import_error(err: ImportError) -> None:
    _fail(OSError(f"the ML commands need PyTorch (pip install 'ditau[ml]'): {err}"))


@app.command("train")
def train_command(
    config: Annotated[Path, typer.Argument(help="YAML file of TrainConfig fields "
                                                "(configs/ml/*.yaml)")],
    data: Annotated[list[Path] | None, typer.Option(
        "--data", "-d", help="training event file (repeatable); replaces 'data'")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out-dir", "-o", help="run directory; replaces 'out_dir'")] = None,
    max_steps: Annotated[int | None, typer.Option(help="replaces 'max_steps'")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda; replaces 'device'")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="continue from OUT_DIR/last.ckpt")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Train the ML neutrino reconstruction (PET body + generative head) -> OUT_DIR/model.pt.
    Runs under torchrun for several processes (DDP)."""
    try:
        from ditau.ml.train import TrainConfig, train
    except ImportError as err:
        _ml_import_error(err)
        return
    try:
        cfg = TrainConfig.from_yaml(config)
        changes: dict[str, object] = {}
        for key, val in (("out_dir", out_dir), ("max_steps", max_steps), ("device", device)):
            if val is not None:
                changes[key] = str(val) if isinstance(val, Path) else val
        if data:
            changes["data"] = [str(p) for p in data]
        cfg = TrainConfig.from_dict({**cfg.to_dict(), **changes}, source=str(config))
        result = train(cfg, resume=resume, progress=not quiet)
    except _USER_ERRORS as err:
        _fail(err)
        return
    if result.model_path is not None:
        typer.echo(f"wrote {result.model_path} (step {result.step}, best validation loss "
                   f"{result.best_val:.4g} at step {result.best_step}"
                   f"{', stopped early' if result.stopped_early else ''}; {result.n_train} "
                   f"training / {result.n_val} validation events; {result.seconds:.1f} s)")


@app.command("export")
def export_command(
    model: Annotated[Path, typer.Argument(help="trained model file ('ditau train')")],
    out: Annotated[Path, typer.Option("--out", "-o", help="ONNX file to write")],
    steps: Annotated[int | None, typer.Option(
        help="sampler steps unrolled into the graph [default: the model's]")] = None,
    split: Annotated[bool, typer.Option(
        "--split", help="write STEM.body.onnx and STEM.head.onnx (one head step) instead")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="compare ONNX Runtime with PyTorch on random inputs")] = False,
) -> None:
    """Export a trained model to ONNX (body + unrolled sampler, or body and head step)."""
    try:
        from ditau.ml.export import compare_onnx, export_onnx
    except ImportError as err:
        _ml_import_error(err)
        return
    try:
        paths = export_onnx(model, out, steps=steps, split=split)
        for p in paths:
            typer.echo(f"wrote {p}")
        if check:
            typer.echo(f"max |ONNX Runtime - PyTorch| = {compare_onnx(paths, model):.3g}")
    except (*_USER_ERRORS, ImportError) as err:
        _fail(err)


app.command("import-delphes")(import_delphes_command)
app.command("plot-inputs")(plot_inputs_command)
app.command("reconstruct")(reconstruct_command)
app.command("evaluate")(evaluate_command)
app.command("tomography")(tomography_command)


def main() -> None:  # pragma: no cover - console entry point for `python -m ditau`
    sys.exit(app())
