r"""Training losses shared by the cdrgraph models (MODELS.md §0.4).

* :class:`BPRLoss` — Bayesian personalised ranking (Rendle et al., UAI 2009)
  with the L2 term on the batch's ego embeddings;
* :class:`SampledBCELoss` — BCE with sampled negatives, UniCDR style (mean over
  positives + mean over negatives);
* :class:`PointwiseBCELoss` — one BCE mean over all labelled pairs;
* :class:`RatingMSELoss` — mean squared error on ratings;
* :class:`InfoNCELoss` — symmetric InfoNCE between two views.

Each loss also has a functional form (:func:`bpr_loss`, :func:`l2_penalty`,
:func:`sampled_bce_loss`, :func:`info_nce_loss`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['BPRLoss', 'SampledBCELoss', 'PointwiseBCELoss', 'RatingMSELoss', 'InfoNCELoss',
           'bpr_loss', 'l2_penalty', 'sampled_bce_loss', 'info_nce_loss']


def _pair_shapes(name: str, pos: Tensor, neg: Tensor) -> Tensor:
    r"""``neg`` as ``[B, n]`` aligned with ``pos [B]``."""
    if pos.dim() != 1:
        raise ValueError(f'{name}: pos_score must be float[B], got shape {tuple(pos.shape)}')
    if neg.dim() == 1:
        neg = neg.view(-1, 1)
    if neg.dim() != 2 or neg.size(0) != pos.size(0):
        raise ValueError(f'{name}: neg_score must be float[B] or float[B, n] with B={pos.size(0)}, '
                         f'got shape {tuple(neg.shape)}')
    return neg


def l2_penalty(*embeddings: Tensor, batch_size: int) -> Tensor:
    r"""``(Σ_t ‖t‖²) / (2 B)`` over the given (ego) embedding tensors.

    Every row counts once per occurrence, so a negative item drawn twice is
    penalised twice (as in the reference LightGCN code).

    Args:
        *embeddings (Tensor): tensors of any shape (users, positives, negatives, biases).
        batch_size (int): the number ``B`` of positive pairs.
    """
    if batch_size <= 0:
        raise ValueError(f'l2_penalty: batch_size must be positive, got {batch_size}')
    if not embeddings:
        return torch.zeros(())
    total = embeddings[0].pow(2).sum()
    for t in embeddings[1:]:
        total = total + t.pow(2).sum().to(total.device)
    return total / (2 * batch_size)


def bpr_loss(pos_score: Tensor, neg_score: Tensor) -> Tensor:
    r"""``−mean_{b,j} log σ(pos_b − neg_{b,j})`` for ``pos [B]``, ``neg [B]`` or ``[B, n]``."""
    neg_score = _pair_shapes('bpr_loss', pos_score, neg_score)
    return -F.logsigmoid(pos_score.unsqueeze(1) - neg_score).mean()


def sampled_bce_loss(pos_score: Tensor, neg_score: Tensor) -> Tensor:
    r"""``mean_b BCE(pos_b, 1) + mean_{b,j} BCE(neg_{b,j}, 0)`` on logits."""
    loss = F.binary_cross_entropy_with_logits(pos_score, torch.ones_like(pos_score))
    if neg_score.numel():
        loss = loss + F.binary_cross_entropy_with_logits(neg_score, torch.zeros_like(neg_score))
    return loss


def info_nce_loss(a: Tensor, b: Tensor, temperature: float = 0.2, symmetric: bool = True) -> Tensor:
    r"""InfoNCE between paired views: ``S_xy = cos(a_x, b_y) / τ``,
    ``½ [CE(S, diag) + CE(Sᵀ, diag)]`` (only ``CE(S, diag)`` when not symmetric)."""
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f'info_nce_loss: views must both be [B, h], got {tuple(a.shape)} and '
                         f'{tuple(b.shape)}')
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t() / temperature
    target = torch.arange(a.size(0), device=a.device)
    loss = F.cross_entropy(sim, target)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(sim.t(), target))
    return loss


class BPRLoss(torch.nn.Module):
    r"""Bayesian personalised ranking loss of `"BPR: Bayesian Personalized
    Ranking from Implicit Feedback" <https://arxiv.org/abs/1205.2618>`_
    (Rendle et al., UAI 2009) with the L2 term of LightGCN (MODELS.md §0.4):

    .. math::
        \mathcal{L} = -\frac{1}{Bn}\sum_{b,j} \log\sigma(\hat y_{b} - \hat y_{b,j}^{-})
        + \lambda\,\frac{\|e_u\|^2 + \|e_{i^+}\|^2 + \|e_{i^-}\|^2}{2B}

    with the norms summed over the batch's *ego* (layer-0) rows.

    Args:
        weight_decay (float, optional): :math:`\lambda`. (default: :obj:`0.0`)

    Shapes:
        - **input:** ``pos_score [B]``, ``neg_score [B]`` or ``[B, n]``,
          any number of ego tensors
        - **output:** scalar

    Example:
        >>> loss = BPRLoss(weight_decay=1e-4)
        >>> loss(torch.tensor([2.0]), torch.tensor([[0.0, 1.0]]), torch.ones(1, 4))
    """

    def __init__(self, weight_decay: float = 0.0) -> None:
        super().__init__()
        if weight_decay < 0:
            raise ValueError(f'BPRLoss: weight_decay must be >= 0, got {weight_decay}')
        self.weight_decay = weight_decay

    def reset_parameters(self) -> None:
        r"""No parameters."""

    def forward(self, pos_score: Tensor, neg_score: Tensor, *ego: Tensor) -> Tensor:
        loss = bpr_loss(pos_score, neg_score)
        if self.weight_decay > 0 and ego:
            loss = loss + self.weight_decay * l2_penalty(*ego, batch_size=pos_score.size(0))
        return loss

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(weight_decay={self.weight_decay})'


class SampledBCELoss(torch.nn.Module):
    r"""Binary cross-entropy with sampled negatives as in UniCDR (Cao et al.,
    WSDM 2023): two separate means, then summed (MODELS.md §0.4)

    .. math::
        \mathcal{L} = \frac{1}{B}\sum_b \mathrm{BCE}(\hat y_b, 1)
        + \frac{1}{Bn}\sum_{b,j} \mathrm{BCE}(\hat y^-_{b,j}, 0),

    so with ``n`` negatives each negative weighs ``1/n`` of a positive.

    Shapes:
        - **input:** logits ``pos_score [B]``, ``neg_score [B, n]`` (or ``[B]``)
        - **output:** scalar

    Example:
        >>> SampledBCELoss()(torch.tensor([0.0]), torch.tensor([[0.0, 0.0]]))  # 2·log 2
    """

    def reset_parameters(self) -> None:
        r"""No parameters."""

    def forward(self, pos_score: Tensor, neg_score: Tensor) -> Tensor:
        neg_score = _pair_shapes('SampledBCELoss', pos_score, neg_score)
        return sampled_bce_loss(pos_score, neg_score)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'


class PointwiseBCELoss(torch.nn.Module):
    r"""Pointwise binary cross-entropy on logits: one mean over all labelled
    pairs, :math:`\frac{1}{P}\sum_p \mathrm{BCE}(\hat y_p, y_p)` (MODELS.md §0.4).

    Shapes:
        - **input:** logits ``[P]``, labels ``[P]`` in ``[0, 1]``
        - **output:** scalar

    Example:
        >>> PointwiseBCELoss()(torch.zeros(3), torch.tensor([1.0, 0.0, 0.0]))  # log 2
    """

    def reset_parameters(self) -> None:
        r"""No parameters."""

    def forward(self, score: Tensor, label: Tensor) -> Tensor:
        if score.shape != label.shape:
            raise ValueError(f'PointwiseBCELoss: score {tuple(score.shape)} and label {tuple(label.shape)} '
                             'must have the same shape')
        return F.binary_cross_entropy_with_logits(score, label.to(score.dtype))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'


class RatingMSELoss(torch.nn.Module):
    r"""Mean squared error on explicit ratings, :math:`\frac{1}{P}\sum_p (y_p - \hat y_p)^2`
    (MODELS.md §0.4; PTUPCDR/EMCDR rating scenarios).

    Shapes:
        - **input:** predictions ``[P]``, ratings ``[P]``
        - **output:** scalar

    Example:
        >>> RatingMSELoss()(torch.tensor([3.0, 4.0]), torch.tensor([5.0, 4.0]))  # 2.0
    """

    def reset_parameters(self) -> None:
        r"""No parameters."""

    def forward(self, pred: Tensor, rating: Tensor) -> Tensor:
        if pred.shape != rating.shape:
            raise ValueError(f'RatingMSELoss: pred {tuple(pred.shape)} and rating {tuple(rating.shape)} '
                             'must have the same shape')
        return F.mse_loss(pred, rating.to(pred.dtype))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'


class InfoNCELoss(torch.nn.Module):
    r"""Symmetric InfoNCE (van den Oord et al., 2018; the contrastive term of
    UniCDR/CAT-ART) between two views whose rows are positive pairs:

    .. math::
        S_{xy} = \cos(a_x, b_y) / \tau,\qquad
        \mathcal{L} = \tfrac12\left[\mathrm{CE}(S, \mathrm{diag}) + \mathrm{CE}(S^\top, \mathrm{diag})\right].

    Args:
        temperature (float, optional): :math:`\tau`. (default: :obj:`0.2`)
        symmetric (bool, optional): average both directions; otherwise only
            ``CE(S, diag)``. (default: :obj:`True`)

    Shapes:
        - **input:** ``a [B, h]``, ``b [B, h]``
        - **output:** scalar

    Example:
        >>> InfoNCELoss(temperature=0.5)(torch.randn(4, 8), torch.randn(4, 8))
    """

    def __init__(self, temperature: float = 0.2, symmetric: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'InfoNCELoss: temperature must be > 0, got {temperature}')
        self.temperature = temperature
        self.symmetric = symmetric

    def reset_parameters(self) -> None:
        r"""No parameters."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return info_nce_loss(a, b, self.temperature, self.symmetric)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(temperature={self.temperature}, symmetric={self.symmetric})'
