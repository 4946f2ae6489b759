r"""Small training-step helpers for model tests (gradients, parameter
snapshots, one optimiser step of a stage)."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import Parameter

from cdrgraph.loader.cdr_batch import CDRBatch

__all__ = ['no_grad', 'snapshot', 'stage_step', 'train_losses']


def no_grad(p: Parameter) -> bool:
    r"""``True`` when ``p`` received no gradient (``None`` or all zeros)."""
    return p.grad is None or p.grad.abs().sum() == 0


def snapshot(model: torch.nn.Module) -> dict[str, Tensor]:
    r"""Detached copies of every named parameter of ``model``."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def stage_step(model: torch.nn.Module, batch: CDRBatch, stage: str, lr: float = 0.05) -> Tensor:
    r"""One Adam step (fresh optimiser) on ``model.stage_parameters(stage)``
    with ``model.loss(batch, stage)``; returns the loss."""
    params = list(model.stage_parameters(stage))  # type: ignore[operator]
    opt = torch.optim.Adam(params, lr=lr)
    opt.zero_grad()
    loss = model.loss(batch, stage)  # type: ignore[operator]
    loss.backward()
    opt.step()
    return loss


def train_losses(model: torch.nn.Module, batch: CDRBatch, steps: int = 30, lr: float = 1e-2,
                 stage: str = 'joint') -> list[float]:
    r"""``steps`` Adam steps (one optimiser) on ``model.stage_parameters(stage)``
    with ``model.loss(batch, stage)`` on the same batch; returns the losses
    before each step (to check that a model can fit a batch)."""
    opt = torch.optim.Adam(list(model.stage_parameters(stage)), lr=lr)  # type: ignore[operator]
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = model.loss(batch, stage)  # type: ignore[operator]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
