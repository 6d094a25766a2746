"""The training loop of the ML reconstruction (``ditau train CONFIG.yaml``): :func:`train`.

The pieces it runs live in their own modules: the configuration (:class:`TrainConfig`,
:mod:`ditau.ml.config`), the data and validation split (:mod:`ditau.ml.data`), the
optimisers, schedule and EMA (:mod:`ditau.ml.optim`) and the device and process group
(:mod:`ditau.ml.device`). ``from ditau.ml.train import TrainConfig, train`` keeps working.

Data: the selected events of all files are held in memory as tensors on the training device;
the normalisation statistics come from the training split. The targets are the lab nu momenta
(and energies) of each batch; after augmentation and the frame rotation they are turned into
the model's target frame (``model.target_frame``: ``lab`` or ``visible``,
:mod:`ditau.ml.parametrisation`) and standardised.

Objectives (``model.objective``): ``fm``, ``diffusion`` (generative) or ``regression``
(deterministic, MSE on the standardised targets; :mod:`ditau.ml.generative`).

Inputs: with ``model.impact_parameters`` the legs' charged objects carry their track impact
parameters (:func:`ditau.ml.features.ip_features`); the training files must have them
(schema 1.3.0 detector files), events whose legs lack them are left out (their count is in the
data recipe), and the reflection augmentation flips their signs with the momenta.

Mass weighting (``mass_weighting: flat``): global batch s is drawn with replacement from the
training events with the weights of :func:`ditau.ml.analyser_metric.flat_mass_weights`
(inverse-CDF sampling with uniforms seeded by (seed, s)), so the network does not learn the
m_Z peak as a prior; the recipe records the weighting and its effective sample size.

Model selection (``select_on``): the best model and early stopping follow the validation loss
or the rest-frame analyser resolution (:func:`ditau.ml.analyser_metric.analyser_resolution`,
one candidate per event with a fixed seed, the EMA weights).

Determinism: the batch order of epoch e is a permutation seeded by (seed, e), and every random
number of step s (augmentation, noise, time) comes from a generator seeded by (seed, rank, s).
A checkpoint (every ``checkpoint_every`` steps, ``out_dir/last.ckpt``) holds model, EMA, best
EMA, optimiser, scheduler, the global RNG states (torch, numpy, python), the step and the
early-stopping state, so a resumed run ends bitwise equal to an uninterrupted one: promised
(and tested) on CPU only, same thread count. On CUDA a resumed run is the same run up to
floating-point rounding, not bitwise: no deterministic-algorithms mode is set, and kernels with
atomic adds (the backward of the kNN gather) and cuBLAS/bf16-autocast reductions may sum in a
different order from run to run.

GPU: the per-step losses stay on the device (no host synchronisation per step; they are read
at the ``log_every`` boundaries), and the EMA is one fused update over all parameters.

Distributed: under ``torchrun`` (WORLD_SIZE > 1) the process group is initialised from the
environment (nccl on GPUs, gloo on CPUs), the model is wrapped in DistributedDataParallel and
each rank takes its slice of every global batch of the shared permutation (``batch_size`` per
process); validation losses are all-reduced; rank 0 writes the files. On CUDA each process's
GPU is set before the nccl group starts; the group is destroyed when :func:`train` returns or
fails (if it created it). AMP (bf16 autocast) is used only on CUDA.

Outputs in ``out_dir``: ``last.ckpt``, ``model.pt`` (the EMA weights at the best validation
loss, see :mod:`ditau.ml.io`) and ``train_log.jsonl``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ditau.ml.analyser_metric import analyser_resolution, flat_mass_weights
from ditau.ml.config import RESUMABLE_CHANGES, TrainConfig
from ditau.ml.data import load_data
from ditau.ml.device import (
    DistInfo,
    all_reduce,
    close_distributed,
    env_local_rank,
    init_distributed,
    resolve_device,
)
from ditau.ml.features import (
    Batch,
    NormStats,
    augment,
    canonical_angle,
    encode,
    rotate_z,
    target_scale,
)
from ditau.ml.generative import Objective, get_objective
from ditau.ml.hashing import mix_seeds
from ditau.ml.infer import sample_candidates
from ditau.ml.io import ModelFileError, TrainedModel, read_blob, save_model, write_blob
from ditau.ml.model import NeutrinoModel, count_parameters
from ditau.ml.optim import (
    ema_decay_at,
    ema_update,
    make_optimizer,
    make_scheduler,
)
from ditau.ml.parametrisation import compute_target_stats, standardised_targets


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
               reflect: bool = False, amp: bool = False, target_frame: str = "lab",
               impact_parameters: bool = False) -> Tensor:
    """The objective's loss on one batch (augmentation, frame, encoding, target frame, noise
    included): the mean squared error of the head's output against the objective's goal.
    ``scale``: the lab target divisors (used by ``target_frame="lab"``);
    ``impact_parameters``: the model's option (the batch then carries them)."""
    batch = augment(batch, generator, rotate=rotate and frame == "lab", reflect=reflect)
    batch = prepare_batch(batch, frame)
    x, coords, cond = encode(batch, stats, impact_parameters=impact_parameters)
    assert batch.target is not None
    z, t, goal = objective.training_inputs(
        standardised_targets(batch, stats, target_frame, scale), generator)
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
        c = self.cfg
        train, valid, self.recipe = load_data(c)
        self.stats = compute_target_stats(train, c.model.target_frame)
        self.train = train.to_batch(self.device)
        self.valid = valid.to_batch(self.device)
        self.scale = target_scale(self.stats, self.device)
        self.cdf: Tensor | None = None
        if c.mass_weighting == "flat":
            assert train.m_true is not None
            w = flat_mass_weights(train.m_true, c.mass_range, c.mass_bin, c.mass_max_ratio)
            cdf = np.cumsum(w)
            self.cdf = torch.from_numpy(cdf / cdf[-1])  # on the CPU: drawn with a CPU generator
            self.recipe["mass_weighting"] = {
                "kind": "flat", "range": list(c.mass_range), "bin": c.mass_bin,
                "max_ratio": c.mass_max_ratio,
                "effective_events": float(w.sum() ** 2 / np.sum(w * w))}
        # the analyser figure of merit: a fixed subset of the validation events, lab frame
        self.valid_ev = valid.subset(np.arange(min(len(valid), c.analyser_events)))

    def _perm(self, epoch: int) -> Tensor:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            g = torch.Generator().manual_seed(mix_seeds(self.cfg.seed, 0xE90C, epoch))
            perm = torch.randperm(len(self.train), generator=g)
            self._perm_cache = (epoch, perm.to(self.device))  # one copy per epoch
        return self._perm_cache[1]

    def batch_indices(self, step: int) -> Tensor:
        """This rank's slice of global batch ``step`` (epoch-wise shared permutation), on the
        training device."""
        n, bs = len(self.train), self.cfg.batch_size
        gb = bs * self.dist.world
        if self.cdf is not None:  # weighted draw with replacement (mass weighting)
            g = torch.Generator().manual_seed(mix_seeds(self.cfg.seed, 0xE90D, step))
            u = torch.rand(gb, generator=g, dtype=torch.float64)
            drawn = torch.searchsorted(self.cdf, u).clamp_max(n - 1)
            mine = drawn[self.dist.rank * bs:(self.dist.rank + 1) * bs]
            return mine.to(self.device)
        epoch, pos = divmod(step, max(1, n // gb))
        start = pos * gb + self.dist.rank * bs
        idx = (start + torch.arange(bs, device=self.device)) % n
        return self._perm(epoch)[idx]

    # --- model --------------------------------------------------------------------------
    def build(self) -> None:
        torch.manual_seed(self.cfg.seed)
        self.model = NeutrinoModel(self.cfg.model).to(self.device)
        self.ema = copy.deepcopy(self.model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.opt = make_optimizer(self.model, self.cfg)
        self.sched = make_scheduler(self.opt, self.cfg)
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
    def train_step(self) -> Tensor:
        """One optimisation step; the (detached, 0-d) loss stays on the device."""
        c = self.cfg
        g = torch.Generator(self.device).manual_seed(mix_seeds(c.seed, 1 + self.dist.rank,
                                                          self.step))
        batch = self.train.index(self.batch_indices(self.step))
        self.ddp.train()
        loss = batch_loss(self.ddp, self.objective, batch, self.stats, self.scale, g,
                          c.model.frame, rotate=c.rotate, reflect=c.reflect, amp=self.amp,
                          target_frame=c.model.target_frame,
                          impact_parameters=c.model.impact_parameters)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if c.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.opt.step()
        self.sched.step()
        self.step += 1
        ema_update(self.ema, self.model, ema_decay_at(self.step, c.ema_decay))
        return loss.detach()

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
                              c.model.frame, amp=self.amp, target_frame=c.model.target_frame,
                              impact_parameters=c.model.impact_parameters)
            tot[0] += loss.detach().double() * len(b)  # on the device: no sync per batch
            tot[1] += len(b)
        all_reduce(tot, self.dist)
        return float(tot[0] / tot[1]) if tot[1] > 0 else math.nan

    @torch.no_grad()
    def analyser_figure(self) -> float:
        """:func:`~ditau.ml.analyser_metric.analyser_resolution` of the EMA model on the first
        ``analyser_events`` validation events (one candidate each, fixed seed). The same on
        every rank (same events, same noise)."""
        ev = self.valid_ev
        if len(ev) == 0:
            return math.nan
        tm = TrainedModel(self.ema, self.cfg.model, self.stats, feature_set="")
        nu, _ = sample_candidates(tm, ev, candidates=1, seed=mix_seeds(self.cfg.seed, 0xA7A1),
                                  batch_size=self.cfg.eval_batch_size)
        assert ev.target is not None
        return analyser_resolution(ev.p4, nu[:, 0], ev.target)

    def after_eval(self, val: float) -> None:
        """Best model and early stopping on ``val`` (the ``select_on`` figure; lower is
        better)."""
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
    0, whose result names it; other ranks get ``model_path`` None). Under torchrun the process
    group this call created is destroyed before it returns or raises.
    ``_interrupt_after`` (tests): return right after that step as if the process had been
    killed (no checkpoint, no model file written beyond the regular ones).
    """
    start = time.perf_counter()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    pre = resolve_device(cfg.device, env_local_rank())
    dist_info = init_distributed(pre)
    try:
        return _run(cfg, dist_info, resume, progress, _interrupt_after, start)
    finally:
        close_distributed(dist_info)


def _mean_loss(losses: list[Tensor]) -> float:
    """The mean of the per-step losses (one device-to-host copy), summed in float64 by numpy
    as the Python floats of the single losses would be."""
    return float(np.mean(torch.stack(losses).double().cpu().numpy()))


def _run(cfg: TrainConfig, dist_info: DistInfo, resume: bool, progress: bool,
         interrupt_after: int | None, start: float) -> TrainResult:
    """The body of :func:`train` inside the process group."""
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
    losses: list[Tensor] = []  # this log interval's per-step losses, on the device
    try:
        while tr.step < cfg.max_steps and not tr.stopped:
            losses.append(tr.train_step())
            bar.update(1)
            last = tr.step == cfg.max_steps
            record: dict[str, Any] = {}
            if tr.step % cfg.log_every == 0 or last:
                record = {"step": tr.step, "loss": _mean_loss(losses),
                          "lr": tr.sched.get_last_lr()[0]}
                losses = []
            if (tr.step % cfg.eval_every == 0 or last) and len(tr.valid):
                val = tr.validate()
                evaluated = {"val_loss": val}
                if cfg.select_on == "analyser":
                    evaluated["val_analyser"] = tr.analyser_figure()
                tr.after_eval(evaluated["val_analyser" if cfg.select_on == "analyser"
                                        else "val_loss"])
                record = {**record, "step": tr.step, **evaluated, "best_val": tr.best_val}
                tr.history.append({"step": tr.step, **evaluated})
                bar.set_postfix(val=f"{val:.4f}")
            if record and dist_info.rank == 0:
                _log(log_path, record)
            if interrupt_after is not None and tr.step >= interrupt_after:
                return _result(tr, None, ckpt_path, start)
            if tr.step % cfg.checkpoint_every == 0 or last or tr.stopped:
                if dist_info.rank == 0:
                    write_blob(ckpt_path, "ckpt", tr.checkpoint())
    finally:
        bar.close()
    if dist_info.rank == 0:
        weights = tr.best_ema if tr.best_ema is not None else tr.ema.state_dict()
        info = {"step": tr.step, "best_step": tr.best_step, "best_val": tr.best_val,
                "select_on": cfg.select_on,
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


__all__ = ["TrainConfig", "TrainResult", "batch_loss", "prepare_batch", "train"]
