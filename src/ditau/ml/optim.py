"""Optimisation of the ML model: the optimisers (AdamW, :class:`Lion`) with weight decay on
matrices only, the learning-rate schedule (:func:`lr_factor`: linear warm-up, cosine decay)
and the exponential moving average of the weights (:func:`ema_update`).

Imports torch and the training configuration (:mod:`ditau.ml.config`) only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ditau.ml.config import TrainConfig


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


def make_scheduler(opt: torch.optim.Optimizer,
                   cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The :func:`lr_factor` schedule of ``cfg`` on ``opt``."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio))


def ema_decay_at(step: int, decay: float) -> float:
    """The EMA decay after ``step`` optimiser steps: ``decay`` with a warm-up,
    min(decay, (1 + step) / (10 + step))."""
    return min(decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * theta over all parameters at once (fused ``_foreach``
    kernels: a few launches per step on CUDA, not two per parameter). The same two roundings
    as ``e.mul_(decay).add_(p, alpha=1 - decay)`` per parameter (not a lerp)."""
    ema_params = list(ema.parameters())
    params = list(model.parameters())
    if len(ema_params) != len(params):
        raise ValueError(f"EMA has {len(ema_params)} parameters, the model {len(params)}")
    if not params:
        return
    torch._foreach_mul_(ema_params, decay)
    torch._foreach_add_(ema_params, params, alpha=1.0 - decay)


__all__ = ["Lion", "ema_decay_at", "ema_update", "lr_factor", "make_optimizer",
           "make_scheduler"]
