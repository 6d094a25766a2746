"""Training of the ML reconstruction (``ditau train CONFIG.yaml``).

:class:`TrainConfig` (YAML-loadable, unknown keys refused) says which Parquet event files to
use (detector level, with truth), which events (the signal region, or every event of the 7
reco channels), the model, the optimiser (AdamW, or :class:`Lion`), the schedule (linear
warm-up then cosine decay), EMA, evaluation, checkpoints and early stopping.

Data: the selected events of all files are held in memory as tensors on the training device.
The validation split is a hash of ``event_id`` (:func:`split_mask`): it does not depend on the
seed, the file order or the number of processes. The normalisation statistics come from the
training split.

Determinism: the batch order of epoch e is a permutation seeded by (seed, e), and every random
number of step s (augmentation, noise, time) comes from a generator seeded by (seed, rank, s).
A checkpoint (every ``checkpoint_every`` steps, ``out_dir/last.ckpt``) holds model, EMA, best
EMA, optimiser, scheduler, the global RNG states (torch, numpy, python), the step and the
early-stopping state, so a resumed run ends bitwise equal to an uninterrupted one (same device
and thread count).

Distributed: under ``torchrun`` (WORLD_SIZE > 1) the process group is initialised from the
environment (nccl on GPUs, gloo on CPUs), the model is wrapped in DistributedDataParallel and
each rank takes its slice of every global batch of the shared permutation (``batch_size`` per
process); validation losses are all-reduced; rank 0 writes the files. AMP (bf16 autocast) is
used only on CUDA.

Outputs in ``out_dir``: ``last.ckpt``, ``model.pt`` (the EMA weights at the best validation
loss, see :mod:`ditau.ml.io`) and ``train_log.jsonl``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ditau.config import StageConfig
from ditau.ml.features import (
    CHANNELS,
    FEATURE_COLUMNS,
    TARGETS,
    Batch,
    EventArrays,
    NormStats,
    augment,
    canonical_angle,
    compute_stats,
    encode,
    extract,
    rotate_z,
    target_scale,
)
from ditau.ml.generative import Objective, get_objective
from ditau.ml.hashing import mix_seeds, uniform_hash
from ditau.ml.io import ModelFileError, read_blob, save_model, write_blob
from ditau.ml.model import ModelConfig, NeutrinoModel, count_parameters
from ditau.schema import SchemaError, read_events, read_metadata

SELECTIONS = ("sr", "channels")
OPTIMIZERS = ("adamw", "lion")
#: Config keys that may differ between a checkpoint and the run resuming it.
RESUMABLE_CHANGES = frozenset({"out_dir", "device", "log_every", "threads"})
_SPLIT_SALT = 0x5D1A_7A0E_D17A_0001


@dataclass
class TrainConfig(StageConfig):
    """Everything a training run needs (defaults: a small CPU-friendly model).

    ``data``: Parquet event files with reco and truth columns; ``selection``: ``sr`` (events
    in the signal region) or ``channels`` (every event of the 7 reco channels);
    ``max_events``: keep only the first N selected events (smoke runs); ``channels``: train
    on these reco channels only (None: all 7; a per-channel model); ``batch_size``: per
    process; ``patience``: evaluations without a validation-loss improvement larger than
    ``min_delta`` before stopping (None: never); ``amp``: bf16 autocast, on CUDA only;
    ``device``: ``auto`` (CUDA if present), ``cpu``, ``cuda``, ``cuda:N``; ``threads``: CPU
    threads of torch (None: torch's default; on a loaded machine 1 is often fastest).
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

    def __post_init__(self) -> None:
        if isinstance(self.data, str | os.PathLike):
            self.data = [str(self.data)]
        self.data = [str(p) for p in self.data]
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
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
            bad = [c for c in self.channels if c not in CHANNELS]
            if bad or not self.channels:
                raise ValueError(f"channels: {bad or 'empty'} not among {list(CHANNELS)}")

    @classmethod
    def _convert(cls, data: dict[str, Any], source: str) -> dict[str, Any]:
        d = dict(data)
        if "model" in d:
            if not isinstance(d["model"], dict):
                raise ValueError(f"{source}: 'model' must be a mapping of ModelConfig fields")
            d["model"] = ModelConfig.from_dict(dict(d["model"]), source=f"{source}: model")
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return d


# --------------------------------------------------------------------------------------------
# Lion


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms", arXiv:2302.06675,
    Alg. 2): sign of an interpolated momentum, decoupled weight decay."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                p.mul_(1.0 - lr * wd)  # decoupled weight decay: theta -= lr wd theta
                update = (b1 * m + (1.0 - b1) * p.grad).sign_()  # c = sign(b1 m + (1-b1) g)
                p.add_(update, alpha=-lr)
                m.mul_(b2).add_(p.grad, alpha=1.0 - b2)  # m = b2 m + (1-b2) g
        return loss


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or Lion; weight decay on matrices only (not on biases, norms, LayerScale)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "lion":
        return Lion(groups, lr=cfg.lr, betas=cfg.betas)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


# --------------------------------------------------------------------------------------------
# Data


def split_mask(event_id: np.ndarray, val_fraction: float) -> np.ndarray:
    """True for validation events: a hash of ``event_id`` below ``val_fraction``."""
    return uniform_hash(event_id, _SPLIT_SALT) <= val_fraction


def _concat(parts: list[EventArrays]) -> EventArrays:
    out = {}
    for f in fields(EventArrays):
        vals = [getattr(p, f.name) for p in parts]
        out[f.name] = None if any(v is None for v in vals) else np.concatenate(vals)
    return EventArrays(**out)


def expand_paths(patterns: list[str]) -> list[str]:
    """Paths with glob patterns (``*``, ``?``, ``[``) expanded, sorted; a pattern matching
    nothing is an error."""
    import glob

    out: list[str] = []
    for p in patterns:
        if any(ch in p for ch in "*?["):
            hits = sorted(glob.glob(p))
            if not hits:
                raise OSError(f"no file matches {p!r}")
            out += hits
        else:
            out.append(p)
    return out


def load_data(cfg: TrainConfig) -> tuple[EventArrays, EventArrays, dict[str, Any]]:
    """The selected events of ``cfg.data``, split into (train, validation), and the recipe."""
    if not cfg.data:
        raise ValueError("no training data: give one or more event files ('data' in the "
                         "config, or --data)")
    cols = [*FEATURE_COLUMNS, *TARGETS, "in_sr"]
    parts: list[EventArrays] = []
    files = []
    for path in expand_paths(cfg.data):
        meta = read_metadata(path)
        table = read_events(path, columns=_present(path, cols), require=("id",))
        ev = extract(table, targets=True, source=path)
        keep = ev.usable.copy()
        if cfg.selection == "sr":
            keep &= table["in_sr"].to_numpy(zero_copy_only=False).astype(bool)
        if cfg.channels is not None:
            keep &= np.isin(ev.channel, [CHANNELS.index(c) for c in cfg.channels])
        parts.append(ev.subset(keep))
        files.append({"path": str(Path(path).resolve()), "bytes": Path(path).stat().st_size,
                      "rows": table.num_rows, "selected": int(keep.sum()),
                      "stage": meta.get("stage"), "sample": meta.get("sample")})
    ev = _concat(parts)
    if cfg.max_events is not None:
        ev = ev.subset(np.arange(min(len(ev), cfg.max_events)))
    val = split_mask(ev.event_id, cfg.val_fraction)
    train, valid = ev.subset(~val), ev.subset(val)
    if len(train) == 0:
        raise ValueError(f"no training events left after the selection ({cfg.selection}) in "
                         f"{', '.join(cfg.data)}")
    recipe = {"files": files, "selection": cfg.selection, "channels": cfg.channels,
              "val_fraction": cfg.val_fraction,
              "max_events": cfg.max_events, "n_train": len(train), "n_val": len(valid),
              "split": f"uniform_hash(event_id, {_SPLIT_SALT:#x}) <= val_fraction"}
    return train, valid, recipe


def _present(path: str, cols: list[str]) -> list[str]:
    import pyarrow.parquet as pq

    names = set(pq.ParquetFile(path).schema_arrow.names)
    missing = [c for c in cols if c not in names]
    if missing:
        what = "truth" if set(missing) <= set(TARGETS) else "detector-level"
        raise SchemaError(f"{path}: missing {what} column(s) {missing[:6]} needed for the ML "
                          "training (a detector-level file with truth is needed)")
    return ["event_id", *[c for c in cols if c != "event_id"]]


# --------------------------------------------------------------------------------------------
# Distributed helpers


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size, local rank; ``enabled`` under torchrun (WORLD_SIZE > 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def _init_distributed(device: torch.device) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(),
                    int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA (the local rank's GPU) if available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name}: CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


# --------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainResult:
    """What :func:`train` did (``final_state``: this process's last trained weights)."""

    model_path: Path | None
    checkpoint_path: Path
    step: int
    best_val: float
    best_step: int
    stopped_early: bool
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0
    final_state: dict[str, Tensor] = field(default_factory=dict, repr=False)


def prepare_batch(batch: Batch, frame: str) -> Batch:
    """The model frame of a batch: ``canonical`` rotates each event so that the tau+ charged
    object has phi = 0 (the inverse rotation maps the model's output back)."""
    if frame == "canonical":
        return rotate_z(batch, canonical_angle(batch.p4))
    return batch


def batch_loss(model: nn.Module, objective: Objective, batch: Batch, stats: NormStats,
               scale: Tensor, generator: torch.Generator, frame: str, *, rotate: bool = False,
               reflect: bool = False, amp: bool = False) -> Tensor:
    """The objective's loss on one batch (augmentation, frame, encoding, noise included)."""
    batch = augment(batch, generator, rotate=rotate and frame == "lab", reflect=reflect)
    batch = prepare_batch(batch, frame)
    x, coords, cond = encode(batch, stats)
    assert batch.target is not None
    z, t, goal = objective.training_inputs(batch.target / scale, generator)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    with ctx:
        pred = model(x, coords, batch.mask, cond, z, t)
    return torch.mean((pred.float() - goal.float()) ** 2)


def _rng_state(device: torch.device) -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - global state
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(_tuplify(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],  # noqa: NPY002
                         n["has_gauss"], n["cached"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, list | tuple) else x


class _Trainer:
    """State and steps of one training run (one process)."""

    def __init__(self, cfg: TrainConfig, dist_info: DistInfo, device: torch.device,
                 progress: bool) -> None:
        self.cfg, self.dist, self.device = cfg, dist_info, device
        self.out = Path(cfg.out_dir)
        self.amp = cfg.amp and device.type == "cuda"
        self.progress = progress and dist_info.rank == 0
        self.objective = get_objective(cfg.model.objective)
        self._perm_cache: tuple[int, Tensor] | None = None

    # --- data ---------------------------------------------------------------------------
    def load(self) -> None:
        train, valid, self.recipe = load_data(self.cfg)
        self.stats = compute_stats(train)
        self.train = train.to_batch(self.device)
        self.valid = valid.to_batch(self.device)
        self.scale = target_scale(self.stats, self.device)

    def _perm(self, epoch: int) -> Tensor:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            g = torch.Generator().manual_seed(mix_seeds(self.cfg.seed, 0xE90C, epoch))
            self._perm_cache = (epoch, torch.randperm(len(self.train), generator=g))
        return self._perm_cache[1]

    def batch_indices(self, step: int) -> Tensor:
        """This rank's slice of global batch ``step`` (epoch-wise shared permutation)."""
        n, bs = len(self.train), self.cfg.batch_size
        gb = bs * self.dist.world
        epoch, pos = divmod(step, max(1, n // gb))
        start = pos * gb + self.dist.rank * bs
        idx = (start + torch.arange(bs)) % n
        return self._perm(epoch)[idx].to(self.device)

    # --- model --------------------------------------------------------------------------
    def build(self) -> None:
        torch.manual_seed(self.cfg.seed)
        self.model = NeutrinoModel(self.cfg.model).to(self.device)
        self.ema = copy.deepcopy(self.model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.opt = make_optimizer(self.model, self.cfg)
        c = self.cfg
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, c.warmup_steps, c.max_steps, c.min_lr_ratio))
        self.step = 0
        self.best_val = math.inf
        self.best_step = -1
        self.bad_evals = 0
        self.stopped = False
        self.best_ema: dict[str, Tensor] | None = None
        self.history: list[dict[str, Any]] = []
        self.ddp: nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)

    def checkpoint(self) -> dict[str, Any]:
        return {
            "format_version": 1, "step": self.step, "config": self.cfg.to_dict(),
            "model": self.model.state_dict(), "ema": self.ema.state_dict(),
            "best_ema": self.best_ema, "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(), "rng": _rng_state(self.device),
            "best_val": self.best_val, "best_step": self.best_step,
            "bad_evals": self.bad_evals, "stopped": self.stopped, "history": self.history,
            "stats": self.stats.to_dict(), "data": self.recipe,
        }

    def restore(self, path: Path) -> None:
        ck = read_blob(path, "ckpt", map_location=self.device)
        old = TrainConfig.from_dict(ck["config"], source=f"{path} config").to_dict()
        new = self.cfg.to_dict()
        diff = sorted(k for k in new if k not in RESUMABLE_CHANGES and old.get(k) != new[k])
        if diff:
            raise ValueError(f"{path}: cannot resume: the config differs from the checkpoint's "
                             f"in {diff}")
        sizes_old = [(f["path"], f["bytes"]) for f in ck["data"]["files"]]
        sizes_new = [(f["path"], f["bytes"]) for f in self.recipe["files"]]
        if sizes_old != sizes_new:
            raise ValueError(f"{path}: cannot resume: the training files changed since the "
                             "checkpoint was written")
        self.model.load_state_dict(ck["model"])
        self.ema.load_state_dict(ck["ema"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.best_ema = ck["best_ema"]
        self.step, self.best_val, self.best_step = ck["step"], ck["best_val"], ck["best_step"]
        self.bad_evals, self.stopped = ck["bad_evals"], ck["stopped"]
        self.history = list(ck["history"])
        _set_rng_state(ck["rng"], self.device)

    # --- steps --------------------------------------------------------------------------
    def train_step(self) -> float:
        c = self.cfg
        g = torch.Generator(self.device).manual_seed(mix_seeds(c.seed, 1 + self.dist.rank,
                                                          self.step))
        batch = self.train.index(self.batch_indices(self.step))
        self.ddp.train()
        loss = batch_loss(self.ddp, self.objective, batch, self.stats, self.scale, g,
                          c.model.frame, rotate=c.rotate, reflect=c.reflect, amp=self.amp)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if c.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.opt.step()
        self.sched.step()
        self.step += 1
        d = min(c.ema_decay, (1.0 + self.step) / (10.0 + self.step))  # EMA warm-up
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                e.mul_(d).add_(p.detach(), alpha=1.0 - d)  # ema = d ema + (1-d) theta
        return float(loss.detach())

    @torch.no_grad()
    def validate(self) -> float:
        """Mean loss of the EMA model on this rank's validation shard (all-reduced); fixed
        noise, no augmentation."""
        c = self.cfg
        n = len(self.valid)
        idx = torch.arange(self.dist.rank, n, self.dist.world, device=self.device)
        tot = torch.zeros(2, dtype=torch.float64, device=self.device)
        g = torch.Generator(self.device).manual_seed(mix_seeds(c.seed, 0x7A11D))
        for s in range(0, len(idx), c.eval_batch_size):
            b = self.valid.index(idx[s:s + c.eval_batch_size])
            loss = batch_loss(self.ema, self.objective, b, self.stats, self.scale, g,
                              c.model.frame, amp=self.amp)
            tot += torch.tensor([float(loss) * len(b), len(b)], dtype=torch.float64,
                                device=self.device)
        if self.dist.enabled:
            import torch.distributed as dist

            dist.all_reduce(tot)
        return float(tot[0] / tot[1]) if tot[1] > 0 else math.nan

    def after_eval(self, val: float) -> None:
        c = self.cfg
        if math.isfinite(val) and val < self.best_val - c.min_delta:
            self.best_val, self.best_step, self.bad_evals = val, self.step, 0
            self.best_ema = {k: v.detach().clone() for k, v in self.ema.state_dict().items()}
        else:
            self.bad_evals += 1
            if c.patience is not None and self.bad_evals >= c.patience:
                self.stopped = True


def _log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True,
          _interrupt_after: int | None = None) -> TrainResult:
    """Train a model as ``cfg`` says; with ``resume``, continue from ``out_dir/last.ckpt``.

    Returns a :class:`TrainResult`; the model file is ``out_dir/model.pt`` (written by rank
    0, whose result names it; other ranks get ``model_path`` None).
    ``_interrupt_after`` (tests): return right after that step as if the process had been
    killed (no checkpoint, no model file written beyond the regular ones).
    """
    start = time.perf_counter()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    pre = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    dist_info = _init_distributed(pre)
    device = resolve_device(cfg.device, dist_info.local_rank)
    out = Path(cfg.out_dir)
    ckpt_path, model_path, log_path = out / "last.ckpt", out / "model.pt", out / "train_log.jsonl"
    if dist_info.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    tr = _Trainer(cfg, dist_info, device, progress)
    tr.load()
    tr.build()
    if resume:
        if not ckpt_path.is_file():
            raise ModelFileError(f"{ckpt_path}: no checkpoint to resume from")
        tr.restore(ckpt_path)
    elif ckpt_path.exists():
        raise ValueError(f"{ckpt_path} exists: resume the run (--resume) or choose another "
                         "out_dir")
    bar = tqdm(total=cfg.max_steps, initial=tr.step, unit="step", desc="train",
               disable=not tr.progress, leave=False)
    losses: list[float] = []
    try:
        while tr.step < cfg.max_steps and not tr.stopped:
            losses.append(tr.train_step())
            bar.update(1)
            last = tr.step == cfg.max_steps
            record: dict[str, Any] = {}
            if tr.step % cfg.log_every == 0 or last:
                record = {"step": tr.step, "loss": float(np.mean(losses)),
                          "lr": tr.sched.get_last_lr()[0]}
                losses = []
            if (tr.step % cfg.eval_every == 0 or last) and len(tr.valid):
                val = tr.validate()
                tr.after_eval(val)
                record = {**record, "step": tr.step, "val_loss": val, "best_val": tr.best_val}
                tr.history.append({"step": tr.step, "val_loss": val})
                bar.set_postfix(val=f"{val:.4f}")
            if record and dist_info.rank == 0:
                _log(log_path, record)
            if _interrupt_after is not None and tr.step >= _interrupt_after:
                return _result(tr, None, ckpt_path, start)
            if tr.step % cfg.checkpoint_every == 0 or last or tr.stopped:
                if dist_info.rank == 0:
                    write_blob(ckpt_path, "ckpt", tr.checkpoint())
    finally:
        bar.close()
    if dist_info.rank == 0:
        weights = tr.best_ema if tr.best_ema is not None else tr.ema.state_dict()
        info = {"step": tr.step, "best_step": tr.best_step, "best_val": tr.best_val,
                "stopped_early": tr.stopped, "n_parameters": count_parameters(tr.model),
                "torch": str(torch.__version__), "device": str(device),
                "world_size": dist_info.world}
        save_model(model_path, weights, cfg.model, tr.stats, train_config=cfg.to_dict(),
                   data=tr.recipe, info=info)
    return _result(tr, model_path if dist_info.rank == 0 else None, ckpt_path, start)


def _result(tr: _Trainer, model_path: Path | None, ckpt: Path, start: float) -> TrainResult:
    return TrainResult(model_path, ckpt, tr.step, tr.best_val, tr.best_step, tr.stopped,
                       time.perf_counter() - start, list(tr.history), len(tr.train),
                       len(tr.valid), tr.model.state_dict())
