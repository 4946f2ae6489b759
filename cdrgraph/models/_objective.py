r"""Training objectives shared by the factorisation models (TgtOnly, CMF,
EMCDR, PTUPCDR) and the per-domain loss helpers of the graph models (BiTGCF,
HeroGRAPH) (MODELS.md §0.4)."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from cdrgraph.data.schema import ITEM, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.nn.loss import PointwiseBCELoss, RatingMSELoss, bpr_loss, l2_penalty

#: training objectives of the factorisation baselines (TgtOnly, CMF, EMCDR, PTUPCDR)
OBJECTIVES = ('auto', 'mse', 'bpr', 'bce')


# ------------------------------------------------------------------ shared helpers
def check_objective(owner: str, objective: str) -> str:
    r"""Raise a clear error for an unknown ``objective``."""
    if objective not in OBJECTIVES:
        raise ValueError(f'{owner}: objective must be one of {OBJECTIVES}, got {objective!r}')
    return objective


def mf_objective(owner: str, objective: str, user: Tensor, pos: Tensor, neg: Tensor, label: Tensor | None,
                 weight_decay: float = 0.0, ego: tuple[Tensor, ...] = ()) -> Tensor:
    r"""Factorisation loss of one domain's batch rows (MODELS.md §0.4).

    Args:
        owner (str): model name for error messages.
        objective (str): ``'mse'`` (ratings), ``'bpr'``, ``'bce'``
            (pointwise, one mean over positives and negatives) or ``'auto'``
            (``'mse'`` when ``label`` holds ratings, else ``'bpr'``).
        user (Tensor): ``[B, h]`` user vectors.
        pos (Tensor): ``[B, h]`` positive item vectors.
        neg (Tensor): ``[B, n, h]`` negative item vectors.
        label (Tensor, optional): ``float[B]`` ratings of the positives.
        weight_decay (float, optional): ``λ`` of ``λ·Σ‖ego‖²/(2B)``.
        ego (tuple of Tensor, optional): the rows the L2 term is taken on.

    Returns:
        A scalar; ``0`` (connected to the inputs, so ``backward`` works)
        when ``B = 0``.
    """
    b = user.size(0)
    pos_score = (user * pos).sum(-1)
    if b == 0:
        return pos_score.sum() * 0.0
    if objective == 'auto':
        objective = 'mse' if label is not None else 'bpr'
    if objective == 'mse':
        if label is None:
            raise ValueError(f"{owner}: objective='mse' needs ratings in batch.label; the graph has no "
                             "`interacts.rating`/`edge_label` — use objective='bpr' or 'bce'")
        loss = RatingMSELoss()(pos_score, label.to(pos_score.dtype))
    else:
        if neg.size(1) == 0:
            raise ValueError(f"{owner}: objective={objective!r} needs at least one negative per positive "
                             f'(got num_negatives=0); use CDRLinkLoader(num_negatives>=1)')
        neg_score = (user.unsqueeze(1) * neg).sum(-1)
        if objective == 'bpr':
            loss = bpr_loss(pos_score, neg_score)
        else:
            scores = torch.cat([pos_score, neg_score.reshape(-1)])
            labels = torch.cat([torch.ones_like(pos_score), torch.zeros_like(neg_score.reshape(-1))])
            loss = PointwiseBCELoss()(scores, labels)
    if weight_decay > 0 and ego:
        loss = loss + weight_decay * l2_penalty(*ego, batch_size=b)
    return loss


def batch_rows(batch: CDRBatch, keep: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    r"""``(user, pos_item, neg_item, label)`` of the batch rows where ``keep`` (local ids)."""
    label = None if batch.label is None else batch.label[keep]
    return batch.user[keep], batch.pos_item[keep], batch.neg_item[keep], label


def domain_mf_loss(owner: str, objective: str, batch: CDRBatch, keep: Tensor,
                   user_table: Callable[[Tensor], Tensor], item_table: Callable[[Tensor], Tensor],
                   uid: Tensor, iid: Tensor,
                   weight_decay: float = 0.0) -> Tensor:
    r""":func:`mf_objective` on the batch rows where ``keep``, with the user
    vectors from ``user_table`` and the item vectors from ``item_table``
    (indexed by the global ids ``uid``/``iid`` of the batch graph) and the L2
    term on those ego rows."""
    user, pos, neg, label = batch_rows(batch, keep)
    eu, ep, en = user_table(uid[user]), item_table(iid[pos]), item_table(iid[neg])
    return mf_objective(owner, objective, eu, ep, en, label, weight_decay, (eu, ep, en))


def require_negatives(owner: str, batch: CDRBatch) -> None:
    r"""Raise unless ``batch`` holds at least one positive and one negative per positive."""
    if batch.batch_size == 0 or batch.num_negatives == 0:
        raise ValueError(f'{owner}.loss needs a non-empty batch with at least one negative per positive '
                         f'(got batch_size={batch.batch_size}, num_negatives={batch.num_negatives}); use '
                         'CDRLinkLoader(num_negatives>=1)')


def domain_scores(z: dict[str, Tensor],
                  batch: CDRBatch) -> Iterator[tuple[int, Tensor, Tensor, Tensor, Tensor, Tensor]]:
    r"""Per domain ``d`` of the batch rows: ``(d, user, pos_item, neg_item,
    pos_score [B_d], neg_score [B_d, n])`` (local ids), scored with the
    domain-``d`` slice of ``z['user']`` (``[U, K, D]``) and ``z['item']``."""
    pair_dom = batch.domain
    for d in torch.unique(pair_dom).tolist():
        sel = pair_dom == d
        users, pos, neg = batch.user[sel], batch.pos_item[sel], batch.neg_item[sel]
        zu = z[USER][users, d]
        pos_s = (zu * z[ITEM][pos]).sum(-1)
        neg_s = (zu.unsqueeze(1) * z[ITEM][neg]).sum(-1)
        yield d, users, pos, neg, pos_s, neg_s
