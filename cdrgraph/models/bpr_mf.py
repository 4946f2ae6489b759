r"""BPR matrix factorisation (Rendle et al., UAI 2009): the single-domain SMF baseline."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from cdrgraph.data.schema import ITEM, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models._objective import require_negatives
from cdrgraph.models.base import ITEM_BIAS, CDRModel, ZDict
from cdrgraph.models.base import check_ids as check_ids  # re-export
from cdrgraph.nn.loss import BPRLoss

__all__ = ['BPRMF']


class BPRMF(CDRModel):
    r"""Matrix factorisation trained with Bayesian personalised ranking, from
    `"BPR: Bayesian Personalized Ranking from Implicit Feedback"
    <https://arxiv.org/abs/1205.2618>`_ (Rendle et al., UAI 2009)
    (MODELS.md §9.1):

    .. math::
        \hat y(u, i) = \mathbf{p}_u^\top \mathbf{q}_i \;(+\, b_i)

    trained with :class:`~cdrgraph.nn.loss.BPRLoss` (``λ·L2`` on the batch's
    user, positive and negative rows and their biases).

    On a single-domain graph (``SelectDomains([k])``) it is the "SMF"
    baseline, the reference for negative transfer; on the whole multi-domain
    graph (users shared, items per domain) it is shared-user MF. Tables are
    indexed by ``batch.n_id``, so full-graph and sampled batches give the same
    scores.

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        embedding_dim (int, optional): size ``h`` of the factors. (default: :obj:`64`)
        weight_decay (float, optional): ``λ`` of the L2 term. (default: :obj:`1e-4`)
        item_bias (bool, optional): learn a per-item bias ``b_i`` (initialised
            to zero). (default: :obj:`False`)
        init_std (float, optional): factors are drawn from
            :math:`\mathcal{N}(0, \text{init\_std}^2)`. (default: :obj:`0.1`)
        sparse (bool, optional): sparse gradients for the user and item
            tables (:class:`torch.nn.Embedding` with ``sparse=True``): a step
            touches only the batch's rows, so :func:`~cdrgraph.train.fit`
            updates them with :class:`torch.optim.SparseAdam` ("lazy" Adam:
            rows outside the batch keep their moments and values) instead of
            a dense Adam sweep over every row (2.1× the samples/s of the dense
            path on 100k users × 50k items, ``benchmarks/bench_training.py``).
            The ``λ·L2`` term stays on the batch rows. A plain
            :class:`torch.optim.Adam` refuses sparse gradients; use
            ``fit`` or ``SparseAdam`` for the tables. (default: :obj:`False`)

    Example:
        >>> model = BPRMF.from_data(train_data, embedding_dim=32)
        >>> batch = CDRBatch.full(train_data, torch.tensor([0]), torch.tensor([1]), torch.tensor([[2]]))
        >>> model.loss(batch).backward()
        >>> fast = BPRMF.from_data(train_data, sparse=True)   # fit() pairs it with SparseAdam
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64, weight_decay: float = 1e-4,
                 item_bias: bool = False, init_std: float = 0.1, sparse: bool = False) -> None:
        super().__init__()
        if num_users < 1 or num_items < 1 or embedding_dim < 1:
            raise ValueError(f'{self.__class__.__name__}: sizes must be positive, got num_users={num_users}, '
                             f'num_items={num_items}, embedding_dim={embedding_dim}')
        self.num_users = num_users
        self.num_items = num_items
        self.embedding_dim = embedding_dim
        self.weight_decay = weight_decay
        self.init_std = init_std
        self.sparse = bool(sparse)
        self.user_emb = torch.nn.Embedding(num_users, embedding_dim, sparse=self.sparse)
        self.item_emb = torch.nn.Embedding(num_items, embedding_dim, sparse=self.sparse)
        self.item_bias = torch.nn.Parameter(torch.zeros(num_items)) if item_bias else None
        self.bpr = BPRLoss(weight_decay)
        self._repr_args: dict[str, Any] = dict(num_users=num_users, num_items=num_items,
                                               embedding_dim=embedding_dim, weight_decay=weight_decay,
                                               item_bias=item_bias)
        if self.sparse:
            self._repr_args['sparse'] = True
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.user_emb.weight, std=self.init_std)
        torch.nn.init.normal_(self.item_emb.weight, std=self.init_std)
        if self.item_bias is not None:
            torch.nn.init.zeros_(self.item_bias)

    # ------------------------------------------------------------------ helpers
    def _ego(self, batch: CDRBatch, uid: Tensor, iid: Tensor) -> list[Tensor]:
        r"""Ego rows (and biases) of the batch's users, positives and negatives."""
        require_negatives(self.__class__.__name__, batch)
        pos, neg = iid[batch.pos_item], iid[batch.neg_item]
        ego = [self.user_emb(uid[batch.user]), self.item_emb(pos), self.item_emb(neg)]
        if self.item_bias is not None:
            ego += [self.item_bias[pos], self.item_bias[neg]]
        return ego

    # ------------------------------------------------------------------ contract
    def encode(self, batch: CDRBatch) -> ZDict:
        uid, iid = self._ids(batch)
        z = {USER: self.user_emb(uid), ITEM: self.item_emb(iid)}
        if self.item_bias is not None:
            z[ITEM_BIAS] = self.item_bias[iid]
        return z

    def loss(self, batch: CDRBatch, stage: str = 'joint') -> Tensor:
        r"""BPR + ``λ·L2`` on the ego rows of the batch (MODELS.md §0.4)."""
        self._check_stage(stage)
        uid, iid = self._ids(batch)
        ego = self._ego(batch, uid, iid)
        # only the batch's rows are needed: score them straight from the ego rows
        eu, ep, en = ego[:3]
        pos = (eu * ep).sum(-1)
        neg = (eu.unsqueeze(1) * en).sum(-1)
        if self.item_bias is not None:
            pos, neg = pos + ego[3], neg + ego[4]
        return self.bpr(pos, neg, *ego)
