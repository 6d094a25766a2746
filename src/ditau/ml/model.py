"""The network: a Point-Edge Transformer body run once per event, and a light generative head
iterated over the sampling steps.

Body (after PET, OmniLearn, Mikuni & Nachman, arXiv:2404.16091; without the diffusion time,
which is the change that lets it run once per event): a per-object embedding MLP, a local
kNN edge block in (eta, phi) (edge features [neighbour - centre, centre] through an MLP,
averaged over the valid neighbours), a global token from the condition (MET, channel), and
pre-norm transformer blocks with LayerScale (Touvron et al., arXiv:2103.17239). Output: the
tokens and a context vector (global token + masked mean of the object tokens).

Head: the noisy targets (6 for the lab target frame, 8 for the visible one,
:mod:`ditau.ml.parametrisation`; zeros for the regression objective) plus a sinusoidal time
embedding; residual MLP blocks
modulated by (context + time) with adaptive LayerNorm (shift, scale, gate; zero-initialised,
Peebles & Xie, arXiv:2212.09748), each optionally followed by a cross-attention from the
neutrino state to the body tokens. A head step costs a few (d_head x d_head) matmuls per
candidate, so sampling cost is nearly independent of the body's size.

Attention is written with plain matmuls (no fused kernels) so that it exports to ONNX and is
deterministic on CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ditau.config import StageConfig
from ditau.ml.features import N_COND, _wrap, n_object_features
from ditau.ml.generative import OBJECTIVE_NAMES
from ditau.ml.parametrisation import TARGET_FRAMES, check_target_frame, n_targets

OBJECTIVES = OBJECTIVE_NAMES
FRAMES = ("canonical", "lab")


@dataclass
class ModelConfig(StageConfig):
    """Architecture and sampling defaults of a model (stored in the model file).

    ``objective``: ``fm`` (conditional flow matching), ``diffusion`` (v-prediction) or
    ``regression`` (deterministic, MSE; every candidate is the one prediction, no per-event
    spread; :class:`~ditau.ml.generative.Regression`);
    ``frame``: ``canonical`` (events rotated so the tau+ charged object has phi = 0: exact
    azimuthal equivariance) or ``lab`` (the reference's; rotation augmentation needed);
    ``target_frame``: what the head predicts, ``lab`` (Cartesian nu momenta, 6 targets; the
    default and the shipped model's) or ``visible`` (per leg ln |p_nu|/|p_vis|, the nu
    azimuth about the visible axis as (cos, sin), m_nunu; 8 targets, every candidate on the
    tau mass shell; :mod:`ditau.ml.parametrisation`);
    ``impact_parameters``: the legs' charged objects also carry their track impact parameters
    (d0, z0 sin theta, their significances, a flag: :func:`ditau.ml.features.ip_features`);
    off by default (and for model files written before the option existed, such as
    ``ditau-cpu-v1``); a model with it needs the impact-parameter columns (schema 1.3.0) at
    inference;
    ``sampler``/``sample_steps``: inference defaults (None: ``heun``/8 for fm, ``ddim``/50 for
    diffusion, ``single``/1 for regression).
    """

    d_model: int = 64
    n_blocks: int = 4
    n_heads: int = 4
    knn_k: int = 3
    mlp_ratio: float = 2.0
    layerscale_init: float = 0.1
    dropout: float = 0.0
    d_head: int = 64
    head_blocks: int = 3
    cross_attention: bool = True
    time_dim: int = 32
    objective: str = "fm"
    frame: str = "canonical"
    target_frame: str = "lab"
    impact_parameters: bool = False
    sampler: str | None = None
    sample_steps: int | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.frame not in FRAMES:
            raise ValueError(f"frame must be one of {FRAMES}, got {self.frame!r}")
        check_target_frame(self.target_frame)
        if not isinstance(self.impact_parameters, bool):
            raise ValueError("impact_parameters must be true or false, got "
                             f"{self.impact_parameters!r}")
        for name in ("d_model", "n_heads", "d_head", "time_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_blocks", "head_blocks", "knn_k"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.d_model % self.n_heads or self.d_head % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) and d_head ({self.d_head}) must be "
                             f"multiples of n_heads ({self.n_heads})")
        if self.time_dim % 2:
            raise ValueError(f"time_dim must be even, got {self.time_dim}")
        if self.sample_steps is not None and self.sample_steps < 1:
            raise ValueError(f"sample_steps must be >= 1, got {self.sample_steps}")
        from ditau.ml.generative import get_objective  # the objectives' samplers

        samplers = get_objective(self.objective).samplers
        if self.sampler is not None and self.sampler not in samplers:
            raise ValueError(f"sampler {self.sampler!r} is not a sampler of objective "
                             f"{self.objective!r} (choose one of {', '.join(samplers)}, or "
                             "leave it unset for the objective's default)")

    config_name = "model config"


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, d_out))


class Attention(nn.Module):
    """Multi-head attention of queries ``xq`` over keys/values ``xkv`` with a key mask."""

    def __init__(self, d_q: int, d_kv: int, d: int, heads: int) -> None:
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.q = nn.Linear(d_q, d)
        self.kv = nn.Linear(d_kv, 2 * d)
        self.out = nn.Linear(d, d_q)

    def project_kv(self, xkv: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values (B, heads, T, d_h) of ``xkv`` (reusable across queries)."""
        b, nk, _ = xkv.shape
        k, v = self.kv(xkv).reshape(b, nk, 2, self.heads, self.dh).permute(2, 0, 3, 1, 4)
        return k, v

    def attend(self, xq: Tensor, k: Tensor, v: Tensor, key_mask: Tensor) -> Tensor:
        """Attention of ``xq`` over projected keys/values."""
        b, nq, _ = xq.shape
        q = self.q(xq).reshape(b, nq, self.heads, self.dh).transpose(1, 2)
        # softmax(q k^T / sqrt(d_h)) v (Vaswani et al., arXiv:1706.03762, eq. 1), fused
        att = nn.functional.scaled_dot_product_attention(q, k, v,
                                                         attn_mask=key_mask[:, None, None, :])
        return self.out(att.transpose(1, 2).reshape(b, nq, self.heads * self.dh))

    def forward(self, xq: Tensor, xkv: Tensor, key_mask: Tensor) -> Tensor:
        return self.attend(xq, *self.project_kv(xkv), key_mask)


class LayerScale(nn.Module):
    """Per-channel learnable residual scale (CaiT, arXiv:2103.17239)."""

    def __init__(self, d: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((d,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: x + ls(attn(LN x)), then x + ls(MLP(LN x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, d, d, cfg.n_heads)
        self.mlp = _mlp(d, int(cfg.mlp_ratio * d), d, cfg.dropout)
        self.ls1, self.ls2 = LayerScale(d, cfg.layerscale_init), LayerScale(d, cfg.layerscale_init)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.ls1(self.attn(h, h, mask)))
        return x + self.drop(self.ls2(self.mlp(self.norm2(x))))


class EdgeBlock(nn.Module):
    """Local kNN block: for each object its ``k`` nearest valid objects in (eta, phi), edge
    features [h_j - h_i, h_i] through an MLP, mean over the valid neighbours, added to h_i."""

    def __init__(self, d: int, k: int, mlp_ratio: float) -> None:
        super().__init__()
        self.k = k
        self.mlp = _mlp(2 * d, int(mlp_ratio * d), d)

    def forward(self, h: Tensor, coords: Tensor, mask: Tensor) -> Tensor:
        b, n, d = h.shape
        k = min(self.k, n - 1)
        if k < 1:
            return h
        deta = coords[:, :, None, 0] - coords[:, None, :, 0]
        dphi = _wrap(coords[:, :, None, 1] - coords[:, None, :, 1])
        dist2 = deta**2 + dphi**2  # Delta R^2 = Delta eta^2 + Delta phi^2
        ar = torch.arange(n, device=h.device)
        invalid = ~mask[:, None, :] | (ar[:, None] == ar[None, :])[None]  # no self-edges
        dist2 = dist2.masked_fill(invalid, 1e9)
        d_k, idx = torch.topk(dist2, k, dim=-1, largest=False)
        valid = (d_k < 1e8) & mask[:, :, None]
        nb = torch.gather(h[:, None].expand(b, n, n, d), 2, idx[..., None].expand(b, n, k, d))
        centre = h[:, :, None, :].expand(b, n, k, d)
        edge = self.mlp(torch.cat([nb - centre, centre], dim=-1))
        w = valid.to(h.dtype)[..., None]
        return h + (edge * w).sum(2) / w.sum(2).clamp_min(1.0)


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    w = mask.to(x.dtype)[..., None]
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


class Body(nn.Module):
    """PET body: objects (B, 7, F) + condition -> tokens (B, 1 + 7, d), token mask, context
    (B, d_head); F = :func:`~ditau.ml.features.n_object_features` of the config's
    ``impact_parameters`` (:attr:`n_features`).

    Independent of the diffusion/flow time: run once per event."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, hid = cfg.d_model, int(cfg.mlp_ratio * cfg.d_model)
        self.n_features = n_object_features(cfg.impact_parameters)
        self.embed = _mlp(self.n_features, hid, d)
        self.global_embed = _mlp(N_COND, hid, d)
        self.edge = EdgeBlock(d, cfg.knn_k, cfg.mlp_ratio) if cfg.knn_k > 0 else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_blocks))
        self.norm = nn.LayerNorm(d)
        self.context = nn.Linear(2 * d, cfg.d_head)

    def forward(self, x: Tensor, coords: Tensor, mask: Tensor,
                cond: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.embed(x)
        if self.edge is not None:
            h = self.edge(h, coords, mask)
        tokens = torch.cat([self.global_embed(cond)[:, None], h], dim=1)
        tmask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        for blk in self.blocks:
            tokens = blk(tokens, tmask)
        tokens = self.norm(tokens)
        ctx = self.context(torch.cat([tokens[:, 0], _masked_mean(tokens[:, 1:], mask)], -1))
        return tokens, tmask, ctx


def time_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of t in [0, 1] (B,) -> (B, dim), frequencies 1..1000 (geometric)."""
    half = dim // 2
    freqs = torch.exp(torch.linspace(0.0, math.log(1000.0), half, device=t.device))
    arg = t.to(torch.float32)[:, None] * freqs[None] * math.pi
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class HeadBlock(nn.Module):
    """AdaLN-modulated residual MLP (+ optional cross-attention to the body tokens)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_head
        self.norm = nn.LayerNorm(d, elementwise_affine=False)
        self.mod = nn.Linear(d, 3 * d)
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)
        self.mlp = _mlp(d, int(cfg.mlp_ratio * d), d, cfg.dropout)
        self.cross = Attention(d, cfg.d_model, d, cfg.n_heads) if cfg.cross_attention else None
        self.cross_norm = nn.LayerNorm(d) if cfg.cross_attention else None

    def forward(self, h: Tensor, c: Tensor, kv: tuple[Tensor, Tensor] | None,
                tmask: Tensor) -> Tensor:
        shift, scale, gate = self.mod(nn.functional.silu(c)).chunk(3, dim=-1)
        # adaLN: h + gate * MLP(LN(h) (1 + scale) + shift) (DiT, arXiv:2212.09748)
        h = h + gate * self.mlp(self.norm(h) * (1 + scale) + shift)
        if self.cross is not None and self.cross_norm is not None and kv is not None:
            # the K candidates of an event (rows event-major, see :func:`repeat_context`) are K
            # queries of its tokens: keys/values are not repeated per candidate
            q = self.cross_norm(h).reshape(kv[0].shape[0], -1, h.shape[-1])
            h = h + self.cross.attend(q, kv[0], kv[1], tmask).reshape(h.shape)
        return h


class Head(nn.Module):
    """Generative head: (z, t, prepared body output) -> the objective's prediction (B, D),
    D = :attr:`n_targets` (the target frame's dimension).

    :meth:`prepare` turns the body output into what every step reuses: the context, the token
    mask and each block's cross-attention keys/values (projected once per event)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_head
        self.time_dim = cfg.time_dim
        self.time = _mlp(cfg.time_dim, d, d)
        self.n_targets = n_targets(cfg.target_frame)
        self.inp = nn.Linear(self.n_targets, d)
        self.blocks = nn.ModuleList(HeadBlock(cfg) for _ in range(cfg.head_blocks))
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, self.n_targets)

    def prepare(self, tokens: Tensor, tmask: Tensor, ctx: Tensor) -> tuple[Tensor, ...]:
        """(ctx, tmask, k_1, v_1, k_2, v_2, ...) for :meth:`forward`."""
        kv: list[Tensor] = []
        for blk in self.blocks:
            if blk.cross is not None:
                kv.extend(blk.cross.project_kv(tokens))
        return (ctx, tmask, *kv)

    def forward(self, z: Tensor, t: Tensor, *prepared: Tensor) -> Tensor:
        ctx, tmask, kv = prepared[0], prepared[1], prepared[2:]
        c = ctx + self.time(time_embedding(t, self.time_dim).to(ctx.dtype))
        h = self.inp(z)
        i = 0
        for blk in self.blocks:
            pair = None
            if blk.cross is not None:
                pair, i = (kv[i], kv[i + 1]), i + 2
            h = blk(h, c, pair, tmask)
        return self.out(self.norm(h))


class NeutrinoModel(nn.Module):
    """Body + head. :meth:`encode` (body + :meth:`Head.prepare`) once per event, :meth:`step`
    once per sampling step; :meth:`forward` (both) is what training calls."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.body = Body(cfg)
        self.head = Head(cfg)

    def encode(self, x: Tensor, coords: Tensor, mask: Tensor,
               cond: Tensor) -> tuple[Tensor, ...]:
        """What the head steps of a batch of events reuse: body output, prepared."""
        return self.head.prepare(*self.body(x, coords, mask, cond))  # type: ignore[no-any-return]

    def step(self, z: Tensor, t: Tensor, *prepared: Tensor) -> Tensor:
        """One head evaluation at state ``z`` (B, D) and time ``t`` (B,)."""
        return self.head(z, t, *prepared)  # type: ignore[no-any-return]

    def forward(self, x: Tensor, coords: Tensor, mask: Tensor, cond: Tensor, z: Tensor,
                t: Tensor) -> Tensor:
        return self.step(z, t, *self.encode(x, coords, mask, cond))


def repeat_context(context: tuple[Tensor, ...], k: int) -> tuple[Tensor, ...]:
    """The prepared body output for ``k`` candidates per event: the context repeated
    (event-major rows, B·k); the token mask and the cross-attention keys/values stay per
    event (B), since :class:`HeadBlock` attends with an event's candidates as its queries.
    Repeating every element (the exported ONNX head does) gives the same result."""
    return (context[0].repeat_interleave(k, dim=0), *context[1:])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["FRAMES", "OBJECTIVES", "TARGET_FRAMES", "Body", "Head", "ModelConfig", "NeutrinoModel",
           "count_parameters", "repeat_context", "time_embedding"]

