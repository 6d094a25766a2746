"""Training objectives and samplers of the head.

All work on standardised targets x (B, D) (D = 6 for the lab target frame, 8 for the visible
one, :mod:`ditau.ml.parametrisation`) and call a *head function* ``f(z, t)`` that closes over
the body output of the events (computed once, :mod:`ditau.ml.model`), so a sampler costs only
head evaluations.

Diffusion (:class:`Diffusion`): variance-preserving, z_t = alpha_t x + sigma_t eps with the
cosine log-SNR schedule lambda(t) = -2 log tan(a t + b), truncated to [lambda_min,
lambda_max] (Kingma et al., arXiv:2107.00630; Hoogeboom et al., arXiv:2301.11093, eq. 4);
alpha^2 = sigmoid(lambda), sigma^2 = sigmoid(-lambda). v-prediction loss
||v_theta - (alpha eps - sigma x)||^2 (Salimans & Ho, arXiv:2202.00512); deterministic DDIM
sampler (Song et al., arXiv:2010.02502, eq. 12 with eta = 0), t from 1 (noise) to 0 (data).

Flow matching (:class:`FlowMatching`): linear path x_t = (1 - t) x_0 + t x_1 between noise
x_0 and data x_1, velocity target x_1 - x_0 (Lipman et al., arXiv:2210.02747; Liu et al.,
arXiv:2209.03003); ODE samplers Euler and Heun (2nd order), t from 0 (noise) to 1 (data).

Regression (:class:`Regression`, ``objective="regression"``; the TPMT-style baseline, a
transformer regression of the tau momenta, Camagni et al., shared/seeds/002): the same body and
head, evaluated once at a fixed input (z = 0, t = 0), trained with the mean squared error on
the standardised targets; a deterministic point prediction. Its :meth:`~Regression.sample`
ignores the noise and returns that prediction for every candidate, so downstream code (K
candidates per event) runs unchanged, but there is **no per-event spread**: the candidate
standard deviation is 0 and says nothing about the uncertainty.

Samplers are deterministic given the initial noise, so the caller fixes the randomness.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

HeadFn = Callable[[Tensor, Tensor], Tensor]


class Objective:
    """Interface: :meth:`loss` for training, :meth:`sample` for inference."""

    name: ClassVar[str]
    samplers: ClassVar[tuple[str, ...]]
    default_sampler: ClassVar[str]
    default_steps: ClassVar[int]
    #: True if :meth:`sample` ignores the noise (one prediction per event).
    deterministic: ClassVar[bool] = False

    def loss(self, head: HeadFn, x: Tensor, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def training_inputs(self, x: Tensor, generator: torch.Generator
                        ) -> tuple[Tensor, Tensor, Tensor]:
        """(z, t, target) of a training step for data ``x`` (noise from ``generator``)."""
        raise NotImplementedError

    def sample(self, head: HeadFn, noise: Tensor, steps: int | None = None,
               sampler: str | None = None) -> Tensor:
        raise NotImplementedError

    def _check(self, steps: int | None, sampler: str | None) -> tuple[int, str]:
        steps = self.default_steps if steps is None else int(steps)
        sampler = self.default_sampler if sampler is None else sampler
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if sampler not in self.samplers:
            raise ValueError(f"{self.name}: unknown sampler {sampler!r}; choose one of "
                             f"{', '.join(self.samplers)}")
        return steps, sampler


class Diffusion(Objective):
    """Cosine log-SNR diffusion with v-prediction and the DDIM sampler."""

    name = "diffusion"
    samplers = ("ddim",)
    default_sampler = "ddim"
    default_steps = 50

    def __init__(self, logsnr_min: float = -15.0, logsnr_max: float = 15.0) -> None:
        self.b = math.atan(math.exp(-0.5 * logsnr_max))
        self.a = math.atan(math.exp(-0.5 * logsnr_min)) - self.b

    def logsnr(self, t: Tensor) -> Tensor:
        """lambda(t) = -2 log tan(a t + b) (Hoogeboom et al. 2023, eq. 4)."""
        return -2.0 * torch.log(torch.tan(self.a * t + self.b))

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """alpha = sqrt(sigmoid(lambda)), sigma = sqrt(sigmoid(-lambda)) (alpha^2+sigma^2=1)."""
        lam = self.logsnr(t)
        return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()

    def training_inputs(self, x: Tensor, generator: torch.Generator
                        ) -> tuple[Tensor, Tensor, Tensor]:
        t = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        a, s = (u[:, None] for u in self.alpha_sigma(t))
        z = a * x + s * eps  # z_t = alpha x + sigma eps
        v = a * eps - s * x  # v = alpha eps - sigma x (Salimans & Ho 2022, v-parameterisation)
        return z, t, v

    def loss(self, head: HeadFn, x: Tensor, generator: torch.Generator) -> Tensor:
        z, t, v = self.training_inputs(x, generator)
        return torch.mean((head(z, t).float() - v.float()) ** 2)

    def sample(self, head: HeadFn, noise: Tensor, steps: int | None = None,
               sampler: str | None = None) -> Tensor:
        steps, _ = self._check(steps, sampler)
        z = noise
        zero = z[:, 0] * 0  # (B,) zeros; shape-generic (ONNX tracing)
        x_hat = z
        for i in range(steps):
            t = zero + (1.0 - i / steps)  # t from 1 to 0 in equal steps
            a, s = (u[:, None] for u in self.alpha_sigma(t))
            v = head(z, t).to(z.dtype)
            x_hat = a * z - s * v  # x = alpha z - sigma v
            eps_hat = s * z + a * v  # eps = sigma z + alpha v
            if i + 1 < steps:
                a2, s2 = (u[:, None] for u in self.alpha_sigma(zero + (1.0 - (i + 1) / steps)))
                z = a2 * x_hat + s2 * eps_hat  # DDIM, eta = 0 (Song et al. 2020, eq. 12)
        return x_hat


class FlowMatching(Objective):
    """Conditional flow matching on the linear path, Euler/Heun ODE samplers."""

    name = "fm"
    samplers = ("heun", "euler")
    default_sampler = "heun"
    default_steps = 8

    def training_inputs(self, x: Tensor, generator: torch.Generator
                        ) -> tuple[Tensor, Tensor, Tensor]:
        t = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        x0 = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        xt = (1 - t[:, None]) * x0 + t[:, None] * x  # x_t = (1 - t) x_0 + t x_1
        return xt, t, x - x0  # u_t = x_1 - x_0

    def loss(self, head: HeadFn, x: Tensor, generator: torch.Generator) -> Tensor:
        z, t, u = self.training_inputs(x, generator)
        return torch.mean((head(z, t).float() - u.float()) ** 2)

    def sample(self, head: HeadFn, noise: Tensor, steps: int | None = None,
               sampler: str | None = None) -> Tensor:
        steps, sampler = self._check(steps, sampler)
        x = noise
        zero = x[:, 0] * 0  # (B,) zeros; shape-generic (ONNX tracing)
        dt = 1.0 / steps
        for i in range(steps):
            t = zero + i * dt
            v1 = head(x, t).to(x.dtype)
            if sampler == "euler":
                x = x + dt * v1  # x_{t+dt} = x_t + dt v(x_t, t)
            else:
                v2 = head(x + dt * v1, t + dt).to(x.dtype)
                x = x + 0.5 * dt * (v1 + v2)  # Heun: trapezoid of the two slopes
        return x


class Regression(Objective):
    """Deterministic regression (module doc): the head at z = 0, t = 0 predicts x; MSE loss.

    :meth:`sample` returns that prediction for every row of ``noise`` (no per-event spread);
    ``steps`` is ignored, the only sampler is ``single``."""

    name = "regression"
    samplers = ("single",)
    default_sampler = "single"
    default_steps = 1
    deterministic = True

    def training_inputs(self, x: Tensor, generator: torch.Generator
                        ) -> tuple[Tensor, Tensor, Tensor]:
        # fixed head input (z, t) = (0, 0); the target is the data itself
        return torch.zeros_like(x), torch.zeros_like(x[:, 0]), x

    def loss(self, head: HeadFn, x: Tensor, generator: torch.Generator) -> Tensor:
        z, t, goal = self.training_inputs(x, generator)
        return torch.mean((head(z, t).float() - goal.float()) ** 2)  # MSE

    def sample(self, head: HeadFn, noise: Tensor, steps: int | None = None,
               sampler: str | None = None) -> Tensor:
        self._check(None, sampler)
        z = noise * 0  # the noise is ignored (shape-generic zeros: ONNX tracing)
        return head(z, z[:, 0]).to(noise.dtype)


OBJECTIVE_NAMES: tuple[str, ...] = ("fm", "diffusion", "regression")


def get_objective(name: str) -> Objective:
    """The objective called ``name`` (``fm``, ``diffusion`` or ``regression``)."""
    if name == "fm":
        return FlowMatching()
    if name == "diffusion":
        return Diffusion()
    if name == "regression":
        return Regression()
    raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVE_NAMES)}")


def head_evaluations(objective: str, steps: int, sampler: str) -> int:
    """Head evaluations per candidate of a sampler run (regression: 1 per event)."""
    if objective == "regression":
        return 1
    return 2 * steps if (objective == "fm" and sampler == "heun") else steps
