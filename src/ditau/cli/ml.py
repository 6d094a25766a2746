"""``ditau train`` and ``ditau export``: the ML neutrino reconstruction's model files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ditau.cli.common import user_errors


def train_command(
    config: Annotated[Path, typer.Argument(help="YAML file of TrainConfig fields "
                                                "(configs/ml/*.yaml)")],
    data: Annotated[list[Path] | None, typer.Option(
        "--data", "-d", help="training event file (repeatable); replaces 'data'")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out-dir", "-o", help="run directory; replaces 'out_dir'")] = None,
    max_steps: Annotated[int | None, typer.Option(help="replaces 'max_steps'")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda; replaces 'device'")] = None,
    objective: Annotated[str | None, typer.Option(
        help="fm, diffusion or regression (deterministic: no per-event spread); replaces "
             "'model.objective'")] = None,
    target_frame: Annotated[str | None, typer.Option(
        help="lab (Cartesian nu momenta) or visible (per-leg visible-frame coordinates, "
             "candidates on the tau mass shell); replaces 'model.target_frame'")] = None,
    impact_parameters: Annotated[bool | None, typer.Option(
        "--impact-parameters/--no-impact-parameters",
        help="give the legs' tracks' impact parameters (d0, z0 and significances) to the "
             "model as inputs (needs schema 1.3.0 detector files, for training and "
             "inference); replaces 'model.impact_parameters'")] = None,
    mass_weighting: Annotated[str | None, typer.Option(
        help="none, or flat (batches drawn flat in the true m_tautau over 'mass_range': no "
             "m_Z prior); replaces 'mass_weighting'")] = None,
    select_on: Annotated[str | None, typer.Option(
        help="loss, or analyser (best model and early stopping on the rest-frame spin "
             "analysers' resolution); replaces 'select_on'")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="continue from OUT_DIR/last.ckpt")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Train the ML neutrino reconstruction (PET body + generative or regression head) ->
    OUT_DIR/model.pt.
    Runs under torchrun for several processes (DDP)."""
    with user_errors():
        try:
            from ditau.ml.train import TrainConfig, train
        except ImportError as err:
            raise ImportError(f"the ML commands need PyTorch (pip install torch): {err}") \
                from err

        cfg = TrainConfig.from_yaml(config)
        changes: dict[str, object] = {}
        for key, val in (("out_dir", out_dir), ("max_steps", max_steps), ("device", device),
                         ("mass_weighting", mass_weighting), ("select_on", select_on)):
            if val is not None:
                changes[key] = str(val) if isinstance(val, Path) else val
        if data:
            changes["data"] = [str(p) for p in data]
        model_changes = {k: v for k, v in (("objective", objective),
                                           ("target_frame", target_frame),
                                           ("impact_parameters", impact_parameters))
                         if v is not None}
        if model_changes:
            changes["model"] = {**cfg.model.to_dict(), **model_changes}
            if objective is not None and objective != cfg.model.objective:
                from ditau.ml.generative import get_objective

                if cfg.model.sampler not in (None, *get_objective(objective).samplers):
                    # the config's sampler belongs to its objective: use the new one's default
                    changes["model"].update(sampler=None, sample_steps=None)
                    typer.echo(f"note: objective {objective}: its default sampler replaces "
                               f"the config's {cfg.model.sampler!r}")
        cfg = TrainConfig.from_dict({**cfg.to_dict(), **changes}, source=str(config))
        result = train(cfg, resume=resume, progress=not quiet)
    if result.model_path is not None:
        what = "analyser resolution" if cfg.select_on == "analyser" else "loss"
        typer.echo(f"wrote {result.model_path} (step {result.step}, best validation {what} "
                   f"{result.best_val:.4g} at step {result.best_step}"
                   f"{', stopped early' if result.stopped_early else ''}; {result.n_train} "
                   f"training / {result.n_val} validation events; {result.seconds:.1f} s)")


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
    with user_errors():
        try:
            from ditau.ml.export import compare_onnx, export_onnx
        except ImportError as err:
            raise ImportError(f"the ML commands need PyTorch (pip install torch): {err}") \
                from err

        paths = export_onnx(model, out, steps=steps, split=split)
        for p in paths:
            typer.echo(f"wrote {p}")
        if check:
            typer.echo(f"max |ONNX Runtime - PyTorch| = {compare_onnx(paths, model):.3g}")
