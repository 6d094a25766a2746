"""The training configuration (:class:`TrainConfig`, YAML-loadable through
:class:`ditau.config.StageConfig`, unknown keys refused): data and selection, model,
optimiser, schedule, EMA, evaluation, checkpoints, early stopping, device.

Imports the model configuration (:mod:`ditau.ml.model`) and the channels of the features
(:mod:`ditau.ml.features`); no torch code runs here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Final

from ditau.config import StageConfig
from ditau.ml.features import ONE_HOT_CHANNELS
from ditau.ml.model import ModelConfig

SELECTIONS: Final[tuple[str, ...]] = ("sr", "channels")
#: How the training events are drawn: as they come, or flat in the true m_tautau.
MASS_WEIGHTINGS: Final[tuple[str, ...]] = ("none", "flat")
#: The figure of merit of model selection (best model, early stopping).
SELECT_ON: Final[tuple[str, ...]] = ("loss", "analyser")
OPTIMIZERS: Final[tuple[str, ...]] = ("adamw", "lion")
#: Config keys that may differ between a checkpoint and the run resuming it.
RESUMABLE_CHANGES: Final[frozenset[str]] = frozenset({"out_dir", "device", "log_every",
                                                      "threads"})


@dataclass
class TrainConfig(StageConfig):
    """Everything a training run needs (defaults: a small CPU-friendly model).

    ``data``: Parquet event files with reco and truth columns; ``selection``: ``sr`` (events
    in the signal region) or ``channels`` (every event of the 7 reco channels);
    ``max_events``: keep only the first N selected events (smoke runs); ``channels``: train
    on these reco channels only (None: all 7; a per-channel model); ``model``: the
    :class:`~ditau.ml.model.ModelConfig`, which also selects the objective
    (``model.objective``: fm, diffusion, regression) and the target frame
    (``model.target_frame``: lab, visible); ``batch_size``: per
    process; ``patience``: evaluations without a validation-loss improvement larger than
    ``min_delta`` before stopping (None: never); ``amp``: bf16 autocast, on CUDA only;
    ``device``: ``auto`` (CUDA if present), ``cpu``, ``cuda``, ``cuda:N``; ``threads``: CPU
    threads of torch (None: torch's default; on a loaded machine 1 is often fastest).

    ``mass_weighting``: ``none`` (every selected event equally often) or ``flat`` (batches
    drawn with replacement with weights that flatten the true m_tautau in ``mass_range`` in
    bins of ``mass_bin`` GeV, the largest weight at most ``mass_max_ratio`` x the smallest;
    :func:`ditau.ml.analyser_metric.flat_mass_weights`): weakens the m_Z prior the network
    learns from a Z-peaked sample. ``select_on``: the figure of merit of the best model and of
    early stopping, ``loss`` (validation loss) or ``analyser`` (median |h_reco - h_true| of
    the rest-frame visible spin analysers on the first ``analyser_events`` validation events,
    one candidate each; :func:`ditau.ml.analyser_metric.analyser_resolution`). The validation
    loss is logged either way.
    """

    config_name = "train config"

    data: list[str] = field(default_factory=list)
    out_dir: str = "ml-run"
    selection: str = "sr"
    val_fraction: float = 0.1
    max_events: int | None = None
    channels: list[str] | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    rotate: bool = True
    reflect: bool = True
    optimizer: str = "adamw"
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 200
    max_steps: int = 5000
    min_lr_ratio: float = 0.01
    batch_size: int = 256
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    eval_every: int = 250
    eval_batch_size: int = 4096
    checkpoint_every: int = 500
    patience: int | None = 10
    min_delta: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    log_every: int = 50
    threads: int | None = None
    mass_weighting: str = "none"
    mass_range: tuple[float, float] = (40.0, 250.0)
    mass_bin: float = 5.0
    mass_max_ratio: float = 20.0
    select_on: str = "loss"
    analyser_events: int = 4096

    def __post_init__(self) -> None:
        if isinstance(self.data, str | os.PathLike):
            self.data = [str(self.data)]
        self.data = [str(p) for p in self.data]
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.mass_weighting not in MASS_WEIGHTINGS:
            raise ValueError(f"mass_weighting must be one of {MASS_WEIGHTINGS}, got "
                             f"{self.mass_weighting!r}")
        self.mass_range = (float(self.mass_range[0]), float(self.mass_range[1]))
        if not 0.0 <= self.mass_range[0] < self.mass_range[1]:
            raise ValueError(f"mass_range must be [lo, hi] with 0 <= lo < hi, got "
                             f"{list(self.mass_range)}")
        if not self.mass_bin > 0 or not self.mass_max_ratio >= 1:
            raise ValueError(f"need mass_bin > 0 and mass_max_ratio >= 1, got {self.mass_bin}"
                             f", {self.mass_max_ratio}")
        if self.select_on not in SELECT_ON:
            raise ValueError(f"select_on must be one of {SELECT_ON}, got {self.select_on!r}")
        if self.analyser_events < 1:
            raise ValueError(f"analyser_events must be >= 1, got {self.analyser_events}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("max_steps", "batch_size", "eval_every", "checkpoint_every",
                     "eval_batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.max_events is not None and self.max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {self.max_events}")
        if self.channels is not None:
            self.channels = [self.channels] if isinstance(self.channels, str) \
                else list(self.channels)
            bad = [c for c in self.channels if c not in ONE_HOT_CHANNELS]
            if bad or not self.channels:
                raise ValueError(f"channels: {bad or 'empty'} not among "
                                 f"{list(ONE_HOT_CHANNELS)}")

    @classmethod
    def _convert(cls, data: dict[str, Any], source: str) -> dict[str, Any]:
        d = dict(data)
        if "model" in d:
            if not isinstance(d["model"], dict):
                raise ValueError(f"{source}: 'model' must be a mapping of ModelConfig fields")
            d["model"] = ModelConfig.from_dict(dict(d["model"]), source=f"{source}: model")
        for key in ("betas", "mass_range"):
            if key in d:
                d[key] = tuple(d[key])
        return d


__all__ = ["MASS_WEIGHTINGS", "OPTIMIZERS", "RESUMABLE_CHANGES", "SELECTIONS", "SELECT_ON",
           "TrainConfig"]
