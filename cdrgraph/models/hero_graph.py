r"""HeroGRAPH (Cui et al., ORSUM @ RecSys 2020): shared all-domain graph embeddings + per-domain tables."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import INTERACTS, ITEM, USER, num_domains
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models._objective import domain_scores, require_negatives
from cdrgraph.models.base import CDRModel, ZDict, check_item_domains, check_non_negative, check_sizes
from cdrgraph.nn.conv.bipartite_lg_conv import BipartiteLGConv
from cdrgraph.nn.conv.recurrent_attention_conv import RecurrentAttentionConv
from cdrgraph.nn.embedding import DomainEmbedding
from cdrgraph.nn.loss import BPRLoss

__all__ = ['HeroGRAPH']

AGGR = ('attention', 'lightgcn')
COMBINE = ('concat', 'sum')


class HeroGRAPH(CDRModel):
    r"""HeroGRAPH from `"HeroGRAPH: A Heterogeneous Graph Framework for
    Multi-Target Cross-Domain Recommendation"
    <https://ceur-ws.org/Vol-2715/paper6.pdf>`_ (Cui et al., ORSUM workshop at
    ACM RecSys 2020), MODELS.md §5.

    All domains' users and items form **one** shared graph (``batch.graph``:
    users shared across domains, ``interacts`` edges of every domain). Tables
    [paper README]: per domain :math:`k` a within-domain user table
    :math:`P_k` (``[U, h]``) and item table :math:`Q_k` (the domain-:math:`k`
    rows of one ``[I, h]`` item table, since every item has one domain); one
    shared graph user table :math:`G_U` and graph item table :math:`G_I`.

    **Graph embedding [ours, following the abstract].** With
    ``aggr='attention'`` (default) every user attends over its training items
    of *all* domains through :math:`G_I`, refining a GRU state :math:`T`
    times (:class:`~cdrgraph.nn.conv.recurrent_attention_conv.RecurrentAttentionConv`,
    :math:`\mathbf{c}^0 = G_U[u]`, :math:`g_u = \mathbf{c}^T`); items
    symmetrically attend over their users through :math:`G_U` with their own
    projections and GRU cell. Nodes without neighbours keep
    :math:`g = G[\text{node}]`. With ``aggr='lightgcn'``, :math:`[G_U; G_I]` is
    propagated :math:`L` layers by
    :class:`~cdrgraph.nn.conv.bipartite_lg_conv.BipartiteLGConv` over the
    all-domain graph and :math:`g` is the mean of the layers (for depth
    studies). Projections and GRU are bias-free [ours], so zero graph tables
    give :math:`g = 0` exactly.

    **Score in domain k [ours — the paper's preference equation is not
    available].**

    .. math::
        \hat y_k(u, i) = \langle [P_k[u]; g_u], [Q_k[i]; g_i] \rangle
        = P_k[u]^\top Q_k[i] + g_u^\top g_i \quad (\texttt{combine='concat'})

        \hat y_k(u, i) = (P_k[u] + g_u)^\top (Q_k[i] + g_i) \quad (\texttt{combine='sum'})

    :math:`g_u` is the same vector in every domain — that is where transfer
    happens. ``encode`` returns ``user: [U, K, D]`` (one row per domain) and
    ``item: [I, D]``; the base :meth:`~cdrgraph.models.base.CDRModel.score`
    picks the item's domain.

    **Loss [paper README].** The sum over the batch's domains of per-domain
    BPR losses (each a mean over that domain's pairs) plus ``weight_decay``
    times the L2 term :math:`\sum\|\cdot\|^2/(2B_k)` on the domain's ego rows
    (:math:`P_k[u], G_U[u], Q_k[i^\pm], G_I[i^\pm]`), so a batch's loss equals
    the sum of the losses of its per-domain sub-batches. The README draws one
    batch from every domain per step: use
    ``CDRLinkLoader(domain_policy='equal')``.

    Other **[ours]** choices: ``num_layers`` is the number :math:`T` of
    attention refinement steps (``'attention'``) or the propagation depth
    :math:`L` (``'lightgcn'``), and ``encode_layers`` returns the z_dict after
    each step/layer. The neighbour sample of :math:`S = 20` per node of
    MODELS.md §5.5 is delegated to the loader: in sampled mode the model
    attends over the neighbours present in ``batch.graph`` (e.g.
    ``CDRLinkLoader(mode='sampled', num_neighbors=[20])``), so the model itself
    is deterministic and a subgraph holding the seeds' full 1-hop
    neighbourhoods gives exactly the full-graph scores. Tables are drawn from
    :math:`\mathcal{N}(0, \text{init\_std}^2)`.

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        num_domains (int, optional): number of domains :math:`K`. (default: :obj:`2`)
        embedding_dim (int, optional): size :math:`h` of every table. (default: :obj:`64`)
        num_layers (int, optional): attention steps :math:`T` or LightGCN
            depth :math:`L`. (default: :obj:`2`)
        aggr (str, optional): ``'attention'`` or ``'lightgcn'``. (default: :obj:`'attention'`)
        combine (str, optional): ``'concat'`` or ``'sum'``. (default: :obj:`'concat'`)
        weight_decay (float, optional): weight of the L2 term. (default: :obj:`1e-4`)
        init_std (float, optional): standard deviation of the initial tables.
            (default: :obj:`0.1`)

    Example:
        >>> model = HeroGRAPH.from_data(train_data, embedding_dim=64)
        >>> loader = CDRLinkLoader(train_data, batch_size=256, domain_policy='equal')
        >>> loss = model.loss(next(iter(loader)))
        >>> top = model.recommend(CDRBatch.full(train_data), torch.tensor([0, 1]), domain=1, k=10)
    """

    def __init__(self, num_users: int, num_items: int, num_domains: int = 2, embedding_dim: int = 64,
                 num_layers: int = 2, aggr: str = 'attention', combine: str = 'concat',
                 weight_decay: float = 1e-4, init_std: float = 0.1) -> None:
        super().__init__()
        check_sizes('HeroGRAPH', num_users=num_users, num_items=num_items, num_domains=num_domains,
                    embedding_dim=embedding_dim)
        check_non_negative('HeroGRAPH', 'num_layers', num_layers)
        if aggr not in AGGR:
            raise ValueError(f'HeroGRAPH: aggr must be one of {AGGR}, got {aggr!r}')
        if combine not in COMBINE:
            raise ValueError(f'HeroGRAPH: combine must be one of {COMBINE}, got {combine!r}')
        self.num_users = num_users
        self.num_items = num_items
        self.num_domains = num_domains
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.aggr = aggr
        self.combine = combine
        self.init_std = init_std
        #: within-domain user tables P_k (row k * U + u)
        self.user_emb = DomainEmbedding(num_users, num_domains, embedding_dim, shared=False, specific=True,
                                        init_std=init_std)
        #: within-domain item tables Q_k (the rows of domain k's items)
        self.item_emb = torch.nn.Embedding(num_items, embedding_dim)
        #: shared graph tables G_U, G_I
        self.graph_user_emb = torch.nn.Embedding(num_users, embedding_dim)
        self.graph_item_emb = torch.nn.Embedding(num_items, embedding_dim)
        self.user_conv: RecurrentAttentionConv | None = None
        self.item_conv: RecurrentAttentionConv | None = None
        self.lg_conv: BipartiteLGConv | None = None
        if aggr == 'attention':
            self.user_conv = RecurrentAttentionConv(embedding_dim, num_steps=num_layers)
            self.item_conv = RecurrentAttentionConv(embedding_dim, num_steps=num_layers)
        else:
            self.lg_conv = BipartiteLGConv()
        self.bpr = BPRLoss(weight_decay)
        self._repr_args: dict[str, Any] = dict(
            num_users=num_users, num_items=num_items, num_domains=num_domains, embedding_dim=embedding_dim,
            num_layers=num_layers, aggr=aggr, combine=combine, weight_decay=weight_decay)
        self.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> HeroGRAPH:
        r"""Build the model with the user, item and domain counts of ``data``."""
        return cls(num_users=int(data[USER].num_nodes), num_items=int(data[ITEM].num_nodes),
                   num_domains=num_domains(data), **kwargs)

    def reset_parameters(self) -> None:
        self.user_emb.reset_parameters()
        for table in (self.item_emb, self.graph_user_emb, self.graph_item_emb):
            torch.nn.init.normal_(table.weight, std=self.init_std)
        for conv in (self.user_conv, self.item_conv, self.lg_conv):
            if conv is not None:
                conv.reset_parameters()

    @property
    def out_dim(self) -> int:
        r"""Width ``D`` of the combined representations."""
        return 2 * self.embedding_dim if self.combine == 'concat' else self.embedding_dim

    # ------------------------------------------------------------------ helpers
    def _ids(self, batch: CDRBatch) -> tuple[Tensor, Tensor]:
        uid, iid = super()._ids(batch)
        check_item_domains('HeroGRAPH', batch, self.num_domains)
        return uid, iid

    def graph_embeddings(self, batch: CDRBatch) -> list[tuple[Tensor, Tensor]]:
        r"""The graph embeddings :math:`(g_u [U, h], g_i [I, h])` of the batch
        graph's nodes after every step: ``num_layers + 1`` pairs (the first
        is :math:`(G_U, G_I)`)."""
        uid, iid = self._ids(batch)
        gu, gi = self.graph_user_emb(uid), self.graph_item_emb(iid)
        ei = batch.graph[INTERACTS].edge_index
        if self.aggr == 'attention':
            assert self.user_conv is not None and self.item_conv is not None
            users = self.user_conv.states(gi, gu, ei.flip(0))    # users attend over their items
            items = self.item_conv.states(gu, gi, ei)            # items attend over their users
            return list(zip(users, items, strict=True))
        assert self.lg_conv is not None
        out = [(gu, gi)]
        for _ in range(self.num_layers):
            gu, gi = self.lg_conv(gu, gi, ei)
            out.append((gu, gi))
        return out

    def _z(self, batch: CDRBatch, g_user: Tensor, g_item: Tensor) -> ZDict:
        uid, iid = self._ids(batch)
        p = self.user_emb.specific_embedding(uid)                      # [U, K, h]
        q = self.item_emb(iid)                                          # [I, h]
        gu = g_user.unsqueeze(1).expand_as(p)
        if self.combine == 'concat':
            return {USER: torch.cat([p, gu], -1), ITEM: torch.cat([q, g_item], -1)}
        return {USER: p + gu, ITEM: q + g_item}

    # ------------------------------------------------------------------ contract
    def encode_layers(self, batch: CDRBatch) -> list[ZDict]:
        r"""``num_layers + 1`` z_dicts, with the graph part after each
        attention step (``'attention'``) or the output of each LightGCN layer
        (``'lightgcn'``)."""
        return [self._z(batch, gu, gi) for gu, gi in self.graph_embeddings(batch)]

    def encode(self, batch: CDRBatch) -> ZDict:
        r"""``user: [U, K, D]``, ``item: [I, D]`` with the final graph
        embeddings (last attention state, or LightGCN layer mean)."""
        layers = self.graph_embeddings(batch)
        if self.aggr == 'attention' or len(layers) == 1:
            gu, gi = layers[-1]
        else:
            gu = torch.stack([u for u, _ in layers]).mean(0)
            gi = torch.stack([i for _, i in layers]).mean(0)
        return self._z(batch, gu, gi)

    def loss(self, batch: CDRBatch, stage: str = 'joint') -> Tensor:
        r"""Sum over the batch's domains of BPR + ``weight_decay``·L2 on the
        domain's ego rows (MODELS.md §5.4)."""
        self._check_stage(stage)
        require_negatives('HeroGRAPH', batch)
        z = self.encode(batch)
        uid, iid = self._ids(batch)
        total = z[ITEM].new_zeros(())
        for d, users, pos, neg, pos_s, neg_s in domain_scores(z, batch):
            gu, gp, gn = uid[users], iid[pos], iid[neg]
            ego = (self.user_emb.specific_embedding(gu, torch.full_like(gu, d)), self.graph_user_emb(gu),
                   self.item_emb(gp), self.graph_item_emb(gp), self.item_emb(gn), self.graph_item_emb(gn))
            total = total + self.bpr(pos_s, neg_s, *ego)
        return total
