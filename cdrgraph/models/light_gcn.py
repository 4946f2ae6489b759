r"""LightGCN (He et al., SIGIR 2020) on the user–item graph: single-domain or shared-user."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import Parameter

from cdrgraph.data.schema import INTERACTS, ITEM, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.base import ITEM_BIAS, ZDict
from cdrgraph.models.bpr_mf import BPRMF
from cdrgraph.nn.conv.bipartite_lg_conv import BipartiteLGConv

__all__ = ['LightGCN']

COMBINE = ('mean', 'last', 'learned')


class LightGCN(BPRMF):
    r"""LightGCN from `"LightGCN: Simplifying and Powering Graph Convolution
    Network for Recommendation" <https://arxiv.org/abs/2002.02126>`_ (He et
    al., SIGIR 2020) on the cdrgraph user–item graph (MODELS.md §9.2):

    .. math::
        E^{(0)} = [P; Q],\quad
        E^{(l+1)} = D^{-1/2} A D^{-1/2} E^{(l)},\quad
        E = \sum_{l=0}^{L} \alpha_l E^{(l)},\quad
        \hat y(u, i) = \mathbf{e}_u^\top \mathbf{e}_i \;(+\, b_i)

    with :class:`~cdrgraph.nn.conv.bipartite_lg_conv.BipartiteLGConv` over the
    ``interacts`` edges of ``batch.graph`` (local ids; the tables are indexed
    by ``batch.n_id``), trained with BPR + ``λ·L2`` on the batch's *ego*
    (layer-0) rows. On ``SelectDomains([k])`` it is the single-domain
    baseline; on the whole graph it is "shared-user LightGCN", where items of
    one domain feel the other domains through the shared users.
    ``num_layers=0`` is exactly :class:`~cdrgraph.models.bpr_mf.BPRMF`.

    The layer combination :math:`\alpha` is ``combine``: ``'mean'``
    (:math:`\alpha_l = 1/(L+1)`, the paper), ``'last'`` (only
    :math:`E^{(L)}`, a plain GCN readout, for depth studies) or ``'learned'``
    (:math:`\alpha = \mathrm{softmax}(w)` with trainable logits
    :math:`w \in \mathbb{R}^{L+1}` initialised to zero, i.e. to the mean).

    The optional learnt item bias ``b_i`` is the standard remedy when
    popularity is a strong bar (sparse Amazon pairs); it is off by default as
    in the paper. Edge weights of the graph are not used.

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        embedding_dim (int, optional): size ``h``. (default: :obj:`64`)
        num_layers (int, optional): propagation depth ``L``. (default: :obj:`3`)
        weight_decay (float, optional): ``λ`` of the L2 term. (default: :obj:`1e-4`)
        init_std (float, optional): ego rows are drawn from
            :math:`\mathcal{N}(0, \text{init\_std}^2)`. (default: :obj:`0.1`)
        item_bias (bool, optional): learn a per-item bias. (default: :obj:`False`)
        combine (str, optional): ``'mean'``, ``'last'`` or ``'learned'``
            layer combination. (default: :obj:`'mean'`)
        sparse (bool, optional): sparse-gradient tables (as
            :class:`~cdrgraph.models.bpr_mf.BPRMF`'s): with sampled subgraphs
            of a large graph a step then touches only the subgraph's rows
            (:func:`~cdrgraph.train.fit` uses SparseAdam for them).
            (default: :obj:`False`)

    Example:
        >>> model = LightGCN.from_data(train_data, embedding_dim=64, num_layers=3)
        >>> z_layers = model.encode_layers(CDRBatch.full(train_data))   # L + 1 z_dicts
        >>> top = model.recommend(CDRBatch.full(train_data), torch.tensor([0, 1]), domain=0, k=10)
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64, num_layers: int = 3,
                 weight_decay: float = 1e-4, init_std: float = 0.1, item_bias: bool = False,
                 combine: str = 'mean', sparse: bool = False) -> None:
        if num_layers < 0:
            raise ValueError(f'LightGCN: num_layers must be >= 0, got {num_layers}')
        if combine not in COMBINE:
            raise ValueError(f'LightGCN: combine must be one of {COMBINE}, got {combine!r}')
        super().__init__(num_users, num_items, embedding_dim=embedding_dim, weight_decay=weight_decay,
                         item_bias=item_bias, init_std=init_std, sparse=sparse)
        self.num_layers = num_layers
        self.combine = combine
        #: trainable layer logits of ``combine='learned'`` (softmax -> layer weights)
        self.layer_logits = Parameter(torch.zeros(num_layers + 1)) if combine == 'learned' else None
        #: one parameter-free layer applied ``num_layers`` times (shares its cached CSR across depths)
        self.conv = BipartiteLGConv()
        self._repr_args: dict[str, Any] = dict(num_users=num_users, num_items=num_items,
                                               embedding_dim=embedding_dim, num_layers=num_layers,
                                               weight_decay=weight_decay, item_bias=item_bias, combine=combine)
        if self.sparse:
            self._repr_args['sparse'] = True

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, 'conv'):
            self.conv.reset_parameters()
        if getattr(self, 'layer_logits', None) is not None:
            torch.nn.init.zeros_(self.layer_logits)

    def _propagate(self, batch: CDRBatch) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
        uid, iid = self._ids(batch)
        x_user, x_item = self.user_emb(uid), self.item_emb(iid)
        layers = [(x_user, x_item)]
        edge_index = batch.graph[INTERACTS].edge_index
        for _ in range(self.num_layers):
            x_user, x_item = self.conv(x_user, x_item, edge_index)
            layers.append((x_user, x_item))
        return layers, iid

    def _z(self, x_user: Tensor, x_item: Tensor, iid: Tensor) -> ZDict:
        z = {USER: x_user, ITEM: x_item}
        if self.item_bias is not None:
            z[ITEM_BIAS] = self.item_bias[iid]
        return z

    def encode_layers(self, batch: CDRBatch) -> list[ZDict]:
        r"""``L + 1`` z_dicts: the ego embeddings :math:`E^{(0)}` and the output
        :math:`E^{(l)}` of every layer (not the running mean)."""
        layers, iid = self._propagate(batch)
        return [self._z(xu, xi, iid) for xu, xi in layers]

    def layer_weights(self) -> Tensor:
        r"""The combination weights :math:`\alpha` ``[L + 1]`` (they sum to one)."""
        n = self.num_layers + 1
        if self.layer_logits is not None:
            return torch.softmax(self.layer_logits, 0)
        if self.combine == 'last':
            return torch.nn.functional.one_hot(torch.tensor(n - 1), n).float()
        return torch.full((n,), 1.0 / n)

    def encode(self, batch: CDRBatch) -> ZDict:
        r"""Layer combination :math:`E = \sum_l \alpha_l E^{(l)}` (``combine``)."""
        layers, iid = self._propagate(batch)
        if len(layers) == 1:
            return self._z(*layers[0], iid)
        if self.combine == 'last':
            return self._z(*layers[-1], iid)
        if self.combine == 'mean':   # a running sum: no [L + 1, N, D] stack (27 % of a step when profiled)
            scale = 1.0 / len(layers)
            x_user = sum(xu for xu, _ in layers[1:]) + layers[0][0]
            x_item = sum(xi for _, xi in layers[1:]) + layers[0][1]
            return self._z(x_user * scale, x_item * scale, iid)
        alpha = self.layer_weights()
        x_user = torch.einsum('l,lnd->nd', alpha, torch.stack([xu for xu, _ in layers]))
        x_item = torch.einsum('l,lnd->nd', alpha, torch.stack([xi for _, xi in layers]))
        return self._z(x_user, x_item, iid)

    def loss(self, batch: CDRBatch, stage: str = 'joint') -> Tensor:
        r"""BPR on the propagated embeddings + ``λ·L2`` on the ego rows."""
        self._check_stage(stage)
        uid, iid = self._ids(batch)
        ego = self._ego(batch, uid, iid)
        pos, neg = self.pos_neg_scores(self.encode(batch), batch)
        return self.bpr(pos, neg, *ego)
