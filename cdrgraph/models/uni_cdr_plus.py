r"""UniCDR+ (Cao et al., 2024): UniCDR with an item-level GNN and a soft
contrastive objective on mixed samples (MODELS.md §4)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from cdrgraph.data.schema import ITEM, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.loader.views import train_edge_index
from cdrgraph.models.base import ZDict
from cdrgraph.models.uni_cdr import UniCDR, UniCDRCompat
from cdrgraph.nn.conv.item_graph_conv import ItemGraphConv
from cdrgraph.nn.loss import sampled_bce_loss

__all__ = ['UniCDRPlus', 'UniCDRPlusConfig']

#: layer combinations of the item GNN (the names of LightGCN's ``combine`` and of the depth CLI)
COMBINE = ('mean', 'last', 'learned')
#: item graphs: per domain (``Â_k``) or one graph over all domains' edges
ITEM_GRAPHS = ('intra', 'cross')


@dataclass(frozen=True)
class UniCDRPlusConfig:
    r"""Hyper-parameters of :class:`UniCDRPlus` beyond its constructor's
    headline arguments: UniCDR's (MODELS.md §3.5) and the UniCDR+ extension
    switches (§4.5).

    Args:
        max_len (int, optional): training context length ``M`` per domain
            slot. (default: :obj:`10`)
        eval_max_len (int, optional): evaluation context length ``M_test``.
            (default: :obj:`50`)
        mask_rate (float, optional): interaction masking rate :math:`\rho`.
            (default: :obj:`0.1`)
        lambda_a (float, optional): aggregator weight :math:`\lambda_a` of the
            ID embedding. (default: :obj:`0.5`)
        lambda_loss (float, optional): :math:`\lambda_{loss}`, weight of
            :math:`L_{rec}` against the contrastive loss. (default: :obj:`0.4`)
        item_graph (str, optional): ``'intra'``: the item GNN propagates inside
            each domain (:math:`\hat{\mathbf{A}}_k`, MODELS.md §4.3 (b));
            ``'cross'`` **[ours, ablation]**: over all domains' edges at once
            (items of one domain feel other domains through shared users; this
            breaks domain masking of the shared view). (default: :obj:`'intra'`)
        beta (float, optional): :math:`\beta` of the interpolation ratios
            :math:`\lambda_b \sim \mathrm{Beta}(\beta, \beta)` of the soft
            contrastive term. (default: :obj:`1.0`)
        gamma (float, optional): :math:`\gamma`, weight of the soft
            contrastive term (``0`` = UniCDR's hard critic only).
            (default: :obj:`0.5`)

    Example:
        >>> UniCDRPlus.from_data(train, config=UniCDRPlusConfig(max_len=50, gamma=0.0))
    """

    max_len: int = 10
    eval_max_len: int = 50
    mask_rate: float = 0.1
    lambda_a: float = 0.5
    lambda_loss: float = 0.4
    item_graph: str = 'intra'
    beta: float = 1.0
    gamma: float = 0.5

    def __post_init__(self) -> None:
        if self.item_graph not in ITEM_GRAPHS:
            raise ValueError(f'UniCDRPlusConfig: item_graph must be one of {ITEM_GRAPHS}, got {self.item_graph!r}')
        if not self.beta > 0:
            raise ValueError(f'UniCDRPlusConfig: beta must be > 0 (Beta(beta, beta) ratios), got {self.beta}')
        if self.gamma < 0:
            raise ValueError(f'UniCDRPlusConfig: gamma must be >= 0, got {self.gamma}')

    @classmethod
    def unicdr(cls, **kwargs: Any) -> UniCDRPlusConfig:
        r"""The soft contrastive term off (:math:`\gamma = 0`); with
        ``num_layers=0`` the model is then exactly :class:`UniCDR`."""
        return cls(**{'gamma': 0.0, **kwargs})


class UniCDRPlus(UniCDR):
    r"""UniCDR+ from `"A Unified Framework for Cross-Domain Recommendation"
    <https://arxiv.org/abs/2409.04540>`_ (Cao et al., 2024) (MODELS.md §4):
    :class:`~cdrgraph.models.uni_cdr.UniCDR` with an item-level GNN and a soft
    contrastive objective.

    **Item GNN** (§4.3 (b)). Per domain :math:`k`, on the *training* edges of
    ``batch.graph`` only (full graph or sampled subgraph, local ids):

    .. math::
        \mathbf{H}^{(0)} = \mathbf{Q}_k,\quad
        \mathbf{H}^{(l+1)} = \hat{\mathbf{A}}_k \mathbf{H}^{(l)},\quad
        \hat{\mathbf{Q}}_k = \sum_{l=0}^{L} \alpha_l \mathbf{H}^{(l)},\quad
        \hat{\mathbf{A}}_k = \mathbf{D}_I^{-1/2}\mathbf{R}_k^\top\mathbf{D}_U^{-1}\mathbf{R}_k\mathbf{D}_I^{-1/2}

    with :class:`~cdrgraph.nn.conv.item_graph_conv.ItemGraphConv` (items
    without a training edge are carried unchanged). :math:`\hat{\mathbf{Q}}_k`
    replaces :math:`\mathbf{Q}_k` in the contexts of both user views and as
    candidate vectors; it is computed once per :meth:`loss`/:meth:`encode`.
    ``combine`` picks :math:`\alpha`: ``'mean'`` (:math:`1/(L+1)`),
    ``'last'`` (:math:`\mathbf{H}^{(L)}` only) or ``'learned'``
    (:math:`\mathrm{softmax}` of trainable logits initialised to zero, the
    "jk" readout of MODELS.md §4.3). :meth:`encode_layers` returns one z_dict
    per :math:`\mathbf{H}^{(l)}` (user views built from that layer's item
    table), for depth studies.

    **Soft contrastive** (§4.3 (e)). With :math:`\pi` the critic's cyclic
    shift and :math:`\lambda_b \sim \mathrm{Beta}(\beta, \beta)`:

    .. math::
        m_b = \lambda_b z_{spec}[b] + (1 - \lambda_b) z_{spec}[\pi(b)],\quad
        L_{soft} = \mathrm{mean}_b\, \mathrm{BCE}(D_k(m_b, z_{sh}[b]), \lambda_b),\quad
        L_{cl} = L_{hard} + \gamma L_{soft}

    and the loss of domain :math:`k` is
    :math:`\lambda_{loss} L_{rec} + (1 - \lambda_{loss}) L_{cl}`.

    With ``num_layers=0`` and ``config=UniCDRPlusConfig.unicdr()`` the model
    computes exactly what :class:`UniCDR` computes (same parameters, same
    random draws). Not implemented yet (MODELS.md §4.3): feature embeddings,
    the sequential and deep-interest aggregators and the multi-behaviour
    tower.

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        num_domains (int, optional): number of domains ``K``. (default: :obj:`2`)
        embedding_dim (int, optional): size ``h``. (default: :obj:`128`)
        aggregator (str, optional): ``'mean'`` or ``'user_attention'``.
            (default: :obj:`'mean'`)
        num_layers (int, optional): depth ``L`` of the item GNN (``0``: off).
            (default: :obj:`1`)
        combine (str, optional): ``'mean'``, ``'last'`` or ``'learned'``
            layer combination. (default: :obj:`'mean'`)
        dropout (float, optional): dropout on user views, item vectors and
            attention weights. (default: :obj:`0.3`)
        warmup (bool, optional): add a ``'warmup'`` stage before ``'joint'``
            (``multi-*`` tasks; no contrastive term, shared parts frozen).
            (default: :obj:`False`)
        config (UniCDRPlusConfig, optional): the other hyper-parameters.
            (default: :obj:`UniCDRPlusConfig()`)
        compat (UniCDRCompat, optional): UniCDR's reference-code switches.
            (default: :obj:`UniCDRCompat()`)

    Example:
        >>> model = UniCDRPlus.from_data(train_data, embedding_dim=32, num_layers=2, combine='learned')
        >>> model.loss(full_batch_unseen(train_data, num_negatives=10)).backward()
        >>> len(model.eval().encode_layers(CDRBatch.full(train_data)))
        3
    """

    def __init__(self, num_users: int, num_items: int, num_domains: int = 2, embedding_dim: int = 128,
                 aggregator: str = 'mean', num_layers: int = 1, combine: str = 'mean', dropout: float = 0.3,
                 warmup: bool = False,
                 config: UniCDRPlusConfig = UniCDRPlusConfig(),  # noqa: B008 (frozen dataclass)
                 compat: UniCDRCompat = UniCDRCompat()) -> None:  # noqa: B008 (frozen dataclass)
        if not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f'UniCDRPlus: num_layers must be an int >= 0, got {num_layers!r}')
        if combine not in COMBINE:
            raise ValueError(f'UniCDRPlus: combine must be one of {COMBINE}, got {combine!r}')
        if not isinstance(config, UniCDRPlusConfig):
            raise TypeError(f'UniCDRPlus: config must be a UniCDRPlusConfig, got {type(config).__name__}')
        super().__init__(num_users, num_items, num_domains=num_domains, embedding_dim=embedding_dim,
                         aggregator=aggregator, max_len=config.max_len, eval_max_len=config.eval_max_len,
                         mask_rate=config.mask_rate, lambda_a=config.lambda_a, lambda_loss=config.lambda_loss,
                         dropout=dropout, warmup=warmup, compat=compat)
        self.num_layers = num_layers
        self.combine = combine
        self.config = config
        #: parameter-free item–item operator, applied ``num_layers`` times (cached CSR across layers and steps)
        self.item_conv = ItemGraphConv()
        #: trainable layer logits of ``combine='learned'`` (softmax -> layer weights)
        self.layer_logits = Parameter(torch.zeros(num_layers + 1)) if combine == 'learned' else None
        self._repr_args: dict[str, Any] = dict(
            num_users=num_users, num_items=num_items, num_domains=num_domains, embedding_dim=embedding_dim,
            aggregator=aggregator, num_layers=num_layers, combine=combine, dropout=dropout, warmup=warmup)
        if config != UniCDRPlusConfig():
            self._repr_args['config'] = config
        if compat != UniCDRCompat():
            self._repr_args['compat'] = compat

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if getattr(self, 'item_conv', None) is not None:
            self.item_conv.reset_parameters()
        if getattr(self, 'layer_logits', None) is not None:
            torch.nn.init.zeros_(self.layer_logits)

    # ------------------------------------------------------------------ item GNN
    def layer_weights(self) -> Tensor:
        r"""The combination weights :math:`\alpha` ``[L + 1]`` (they sum to one)."""
        n = self.num_layers + 1
        w = self.item_emb.weight
        if self.layer_logits is not None:
            return torch.softmax(self.layer_logits, 0)
        if self.combine == 'last':
            return F.one_hot(torch.tensor(n - 1, device=w.device), n).to(w.dtype)
        return torch.full((n,), 1.0 / n, dtype=w.dtype, device=w.device)

    def item_layers(self, batch: CDRBatch, iid: Tensor) -> list[Tensor]:
        r"""The ``L + 1`` item tables :math:`\mathbf{H}^{(0)}, \dots,
        \mathbf{H}^{(L)}` ``[I_local, h]`` of ``batch.graph``'s items (global
        ids ``iid``), propagated over the graph's training edges."""
        x = self.item_emb(iid)
        layers = [x]
        if self.num_layers:
            g = batch.graph
            edge_index = train_edge_index(g)
            item_domain = g[ITEM].domain if self.config.item_graph == 'intra' else None
            num_users = int(g[USER].num_nodes)
            for _ in range(self.num_layers):
                x = self.item_conv(x, edge_index, num_users=num_users, item_domain=item_domain)
                layers.append(x)
        return layers

    def combine_layers(self, layers: list[Tensor]) -> Tensor:
        r""":math:`\hat{\mathbf{Q}} = \sum_l \alpha_l \mathbf{H}^{(l)}` (``combine``)."""
        if len(layers) == 1:
            return layers[0]
        if self.combine == 'last':
            return layers[-1]
        if self.combine == 'mean':
            return torch.stack(layers).mean(0)
        return torch.einsum('l,lnd->nd', self.layer_weights(), torch.stack(layers))

    def item_table(self, batch: CDRBatch, iid: Tensor) -> Tensor:
        r""":math:`\hat{\mathbf{Q}}` ``[I_local, h]``: the item GNN's combined output."""
        return self.combine_layers(self.item_layers(batch, iid))

    def encode_layers(self, batch: CDRBatch) -> list[ZDict]:
        r"""``L + 1`` evaluation z_dicts: for every layer ``l`` the items
        :math:`\mathbf{H}^{(l)}` and the user views built from them (the
        contexts are computed once)."""
        uid, iid = self._ids(batch)
        contexts = self.contexts(batch, torch.arange(uid.numel(), device=uid.device))
        return [self.encode_views(uid, items, contexts) for items in self.item_layers(batch, iid)]

    # ------------------------------------------------------------------ contrastive
    def soft_critic_loss(self, k: int, z_spec: Tensor, z_sh: Tensor, fake: Tensor, lam: Tensor) -> Tensor:
        r""":math:`L_{soft} = \mathrm{mean}_b\, \mathrm{BCE}(D_k(m_b, z_{sh}[b]), \lambda_b)`
        with :math:`m_b = \lambda_b z_{spec}[b] + (1 - \lambda_b) z_{spec}[fake_b]`.

        Args:
            k (int): domain.
            z_spec (Tensor): ``[B, h]`` specific views.
            z_sh (Tensor): ``[B, h]`` shared views.
            fake (Tensor): ``long[B]`` the critic's shifted rows (:meth:`critic_shift`).
            lam (Tensor): ``float[B]`` interpolation ratios in ``[0, 1]``.
        """
        lam = lam.to(z_spec.dtype)
        mixed = lam.unsqueeze(-1) * z_spec + (1.0 - lam).unsqueeze(-1) * z_spec[fake]
        return F.binary_cross_entropy_with_logits(self.critic(k, mixed, z_sh), lam)

    def critic_loss(self, k: int, z_spec: Tensor, z_sh: Tensor) -> Tensor:
        r""":math:`L_{cl} = L_{hard} + \gamma L_{soft}` (one shift for both
        terms, :math:`\lambda_b \sim \mathrm{Beta}(\beta, \beta)`); ``0`` when
        ``B < 2``. With :math:`\gamma = 0` no ratio is drawn (UniCDR's random
        stream)."""
        b = z_spec.size(0)
        if b < 2:
            return z_spec.new_zeros(())
        fake = self.critic_shift(b, z_spec.device)
        hard = sampled_bce_loss(self.critic(k, z_spec, z_sh), self.critic(k, z_spec[fake], z_sh))
        gamma = self.config.gamma
        if gamma == 0:
            return hard
        conc = torch.tensor(float(self.config.beta), device=z_spec.device)
        lam = torch.distributions.Beta(conc, conc).sample((b,))
        return hard + gamma * self.soft_critic_loss(k, z_spec, z_sh, fake, lam)

    # ------------------------------------------------------------------ stages
    def stage_parameters(self, stage: str) -> Iterator[Parameter]:
        r"""``'joint'``: everything; ``'warmup'``: :math:`\mathbf{P}_k`,
        :math:`\mathbf{Q}`, the per-domain aggregators and the learned layer
        logits."""
        self._check_stage(stage)
        if stage == 'joint':
            return self.parameters()
        extra = [] if self.layer_logits is None else [self.layer_logits]
        return iter([*super().stage_parameters(stage), *extra])
