r"""UniCDR+ (Cao et al., 2024): UniCDR with an item-level GNN and a soft
contrastive objective on mixed samples (MODELS.md §4)."""
from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import INTERACTS, ITEM, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.loader.views import train_edge_index, train_edge_mask
from cdrgraph.models.base import ITEM_DOMAIN_KEY, ZDict
from cdrgraph.models.uni_cdr import UniCDR, UniCDRCompat, UniCDRConfig, UniCDRContexts
from cdrgraph.nn.conv._sparse import CSRCacheMixin
from cdrgraph.nn.conv.item_graph_conv import ItemGraphConv
from cdrgraph.nn.field_spec import FieldSpec
from cdrgraph.nn.heads.behavior_tower_head import BehaviorTowerHead
from cdrgraph.nn.heads.deep_interest_aggregator_head import DeepInterestAggregatorHead
from cdrgraph.nn.heads.sequential_aggregator_head import SequentialAggregatorHead
from cdrgraph.nn.heads.user_aggregator_head import AGGREGATORS
from cdrgraph.nn.loss import sampled_bce_loss

__all__ = ['UniCDRPlus', 'UniCDRPlusConfig']

#: layer combinations of the item GNN (the names of LightGCN's ``combine`` and of the depth CLI)
COMBINE = ('mean', 'last', 'learned')
#: item graphs: per domain (``Â_k``) or one graph over all domains' edges
ITEM_GRAPHS = ('intra', 'cross')
#: UniCDR+'s aggregators: UniCDR's static ones, the sequential and the deep-interest one (MODELS.md §4.3 (c))
PLUS_AGGREGATORS = (*AGGREGATORS, 'sequential', 'deep_interest')
#: prediction towers (MODELS.md §4.3 (f))
TOWERS = ('dot', 'mlp')
#: z_dict keys of the deep-interest aggregator's evaluation materials (the user vector depends on the candidate)
_DI_KEYS = ('di_items', 'di_uid', 'di_index', 'di_mask', 'di_cold', 'di_shared_items')


@dataclass(frozen=True)
class UniCDRPlusConfig(UniCDRConfig):
    r"""Hyper-parameters of :class:`UniCDRPlus` beyond its constructor's
    headline arguments: UniCDR's (:class:`~cdrgraph.models.uni_cdr.UniCDRConfig`,
    MODELS.md §3.5: ``max_len``, ``eval_max_len``, ``mask_rate``,
    ``lambda_a``, ``lambda_loss``, ``task``, ``ease_lambda``,
    ``ease_threshold``, ``ease_max_items``) and the UniCDR+ extension switches
    (§4.5).

    Args:
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
        seq_len (int, optional): context length of the ``'sequential'``
            aggregator, in training and evaluation (it replaces ``max_len``
            and ``eval_max_len`` there, so positions mean the same in both).
            (default: :obj:`50`)
        heads (int, optional): attention heads of the sequential block.
            (default: :obj:`2`)
        causal_context (bool, optional): ``'sequential'`` training contexts
            hold only items with time ``<`` the positive's time.
            (default: :obj:`True`)
        attention_hidden (tuple[int, ...], optional): hidden widths of the
            deep-interest attention MLP. (default: :obj:`(80, 40)`)
        score_chunk (int, optional): deep interest only: context slots
            (pairs × slots) scored per chunk in :meth:`UniCDRPlus.score`, which
            bounds the memory of full ranking and ``recommend``.
            (default: :obj:`65536`)
        tower (str, optional): prediction tower (§4.3 (f)): ``'dot'``
            (:math:`\hat y = z \cdot v`, UniCDR) or ``'mlp'``
            (:class:`~cdrgraph.nn.heads.behavior_tower_head.BehaviorTowerHead`,
            one tower per behaviour). (default: :obj:`'dot'`)
        tower_hidden (tuple[int, ...], optional): hidden widths of every
            behaviour tower. (default: :obj:`(128, 64)`)
        num_behaviors (int, optional): number of behaviours ``B`` of the
            ``'mlp'`` tower; :obj:`None`: ``len(behavior_thresholds)`` when
            given, else read by :meth:`UniCDRPlus.from_data` from
            ``interacts.behavior`` (``max + 1``; ``1`` without it).
            (default: :obj:`None`)
        behavior_thresholds (tuple[float | None, ...], optional): labels
            from ratings: behaviour ``b`` is observed on a training edge iff
            ``rating >= behavior_thresholds[b]`` (:obj:`None`: any
            interaction), e.g. ``(None, 4.0)`` = *rated*, *liked*. Must be
            hierarchical (leading :obj:`None`, then non-decreasing). Empty:
            labels from ``interacts.behavior`` (behaviour ``b`` observed iff
            ``behavior >= b``; ordinal levels as in
            :class:`~cdrgraph.datasets.fake_cdr_dataset.FakeCDRDataset`).
            (default: :obj:`()`)
        behavior_weights (tuple[float, ...], optional): :math:`w_b` of
            :math:`L_{rec} = \sum_b w_b L_{rec,b}`; empty: all ``1``.
            (default: :obj:`()`)
        features (bool, optional): feature embeddings (§4.3 (a)):
            :math:`\phi_u = \sum_f \mathbf{E}^u_f[x_{u,f}]` added to
            :math:`\mathbf{P}_k[u]` and :math:`\mathbf{P}_s[u]`, item field
            embeddings added to :math:`\mathbf{Q}^0_k` before the item GNN,
            from ``user.x_cat`` / ``item.x_cat``. (default: :obj:`False`)
        fields (FieldSpec, optional): vocabulary sizes of the categorical
            fields (:class:`~cdrgraph.nn.field_spec.FieldSpec`; dense widths
            are ignored); :obj:`None`: read by :meth:`UniCDRPlus.from_data`.
            (default: :obj:`None`)

    Example:
        >>> UniCDRPlus.from_data(train, config=UniCDRPlusConfig(max_len=50, gamma=0.0))
    """

    item_graph: str = 'intra'
    beta: float = 1.0
    gamma: float = 0.5
    seq_len: int = 50
    heads: int = 2
    causal_context: bool = True
    attention_hidden: tuple[int, ...] = (80, 40)
    score_chunk: int = 1 << 16
    tower: str = 'dot'
    tower_hidden: tuple[int, ...] = (128, 64)
    num_behaviors: int | None = None
    behavior_thresholds: tuple[float | None, ...] = ()
    behavior_weights: tuple[float, ...] = ()
    features: bool = False
    fields: FieldSpec | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, 'attention_hidden', tuple(int(w) for w in self.attention_hidden))
        self._check_tower()
        if isinstance(self.fields, dict):     # a config file's mapping
            object.__setattr__(self, 'fields', FieldSpec(**self.fields))
        if self.fields is not None and not isinstance(self.fields, FieldSpec):
            raise TypeError(f'UniCDRPlusConfig: fields must be a FieldSpec or None, got {type(self.fields).__name__}')
        if self.seq_len < 1 or self.heads < 1 or self.score_chunk < 1:
            raise ValueError(f'UniCDRPlusConfig: seq_len, heads and score_chunk must be >= 1, got {self.seq_len}, '
                             f'{self.heads}, {self.score_chunk}')
        if self.item_graph not in ITEM_GRAPHS:
            raise ValueError(f'UniCDRPlusConfig: item_graph must be one of {ITEM_GRAPHS}, got {self.item_graph!r}')
        if not self.beta > 0:
            raise ValueError(f'UniCDRPlusConfig: beta must be > 0 (Beta(beta, beta) ratios), got {self.beta}')
        if self.gamma < 0:
            raise ValueError(f'UniCDRPlusConfig: gamma must be >= 0, got {self.gamma}')

    def _check_tower(self) -> None:
        name = 'UniCDRPlusConfig'
        if self.tower not in TOWERS:
            raise ValueError(f'{name}: tower must be one of {TOWERS}, got {self.tower!r}')
        thr = tuple(None if t is None else float(t) for t in self.behavior_thresholds)
        object.__setattr__(self, 'behavior_thresholds', thr)
        object.__setattr__(self, 'behavior_weights', tuple(float(w) for w in self.behavior_weights))
        object.__setattr__(self, 'tower_hidden', tuple(int(w) for w in self.tower_hidden))
        if self.tower == 'dot' and (thr or self.behavior_weights or self.num_behaviors not in (None, 1)):
            raise ValueError(f"{name}: num_behaviors, behavior_thresholds and behavior_weights need tower='mlp' "
                             "(the 'dot' tower predicts one behaviour)")
        if any(w < 1 for w in self.tower_hidden):
            raise ValueError(f'{name}: tower_hidden widths must be >= 1, got {self.tower_hidden}')
        if self.num_behaviors is not None and self.num_behaviors < 1:
            raise ValueError(f'{name}: num_behaviors must be >= 1 or None, got {self.num_behaviors}')
        floats = [t for t in thr if t is not None]
        if thr and (any(t is None for t in thr[len(thr) - len(floats):])
                    or any(b < a for a, b in zip(floats, floats[1:], strict=False))):
            raise ValueError(f'{name}: behavior_thresholds must be hierarchical (None entries first, then '
                             f'non-decreasing ratings), got {thr}')
        if thr and self.num_behaviors is not None and self.num_behaviors != len(thr):
            raise ValueError(f'{name}: num_behaviors={self.num_behaviors} but behavior_thresholds has {len(thr)} '
                             'entries; give one threshold per behaviour (or num_behaviors=None)')
        if self.behavior_weights:
            if thr and len(self.behavior_weights) != len(thr) or (
                    self.num_behaviors is not None and len(self.behavior_weights) != self.num_behaviors):
                raise ValueError(f'{name}: behavior_weights has {len(self.behavior_weights)} entries, one per '
                                 'behaviour expected')
            if any(w < 0 for w in self.behavior_weights):
                raise ValueError(f'{name}: behavior_weights must be >= 0, got {self.behavior_weights}')

    @property
    def behaviors(self) -> int:
        r"""The number of behaviours ``B`` the towers predict (``1`` while
        unresolved, see ``num_behaviors``)."""
        if self.behavior_thresholds:
            return len(self.behavior_thresholds)
        if self.num_behaviors is not None:
            return self.num_behaviors
        return len(self.behavior_weights) or 1

    @classmethod
    def unicdr(cls, **kwargs: Any) -> UniCDRPlusConfig:
        r"""The soft contrastive term off (:math:`\gamma = 0`); with
        ``num_layers=0`` the model is then exactly :class:`UniCDR`."""
        return cls(**{'gamma': 0.0, **kwargs})


def _train_edge_attr(data: HeteroData, key: str) -> Tensor | None:
    r"""``interacts.<key>`` of the training edges of ``data`` (or :obj:`None`)."""
    val = getattr(data[INTERACTS], key, None)
    if val is None:
        return None
    mask = train_edge_mask(data)
    return val if mask is None else val[mask]


class _FieldSum(torch.nn.Module):
    r"""Sum of categorical field embeddings :math:`\sum_f \mathbf{E}_f[x_f]`
    (one :class:`torch.nn.EmbeddingBag` in ``'sum'`` mode, field ``f`` at row
    offset :math:`\sum_{f' < f} |f'|`), width ``dim``, tables
    :math:`\mathcal{N}(0, 0.1^2)` like UniCDR's ID tables."""

    def __init__(self, vocab: Sequence[int], dim: int) -> None:
        super().__init__()
        sizes = [int(v) for v in vocab]
        self.bag = torch.nn.EmbeddingBag(sum(sizes), dim, mode='sum')
        self.register_buffer('vocab', torch.tensor(sizes, dtype=torch.long), persistent=False)
        self.register_buffer('offsets', torch.tensor([0, *sizes[:-1]], dtype=torch.long).cumsum(0),
                             persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.bag.weight, std=0.1)

    def forward(self, x_cat: Tensor) -> Tensor:
        return self.bag(x_cat + self.offsets)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(vocab={self.vocab.tolist()}, dim={self.bag.embedding_dim})'


class _GraphCache(CSRCacheMixin):
    r"""Holds the last shared-item union graph (weak keys); dropped on pickling and deep copies."""

    def __init__(self) -> None:
        self._cache: tuple | None = None


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
    table), for depth studies. With a shared item table (multi-item-intra)
    the same operator also propagates :math:`\mathbf{Q}_s` over the union
    graph of all domains joined through ``item.shared_id``
    (:meth:`shared_item_layers`), so the shared view sees
    :math:`\hat{\mathbf{Q}}_s` and every copy of an item gets one row.

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
    random draws).

    **Aggregators** (§4.3 (c)): UniCDR's static ones, ``'sequential'``
    (:class:`~cdrgraph.nn.heads.sequential_aggregator_head.SequentialAggregatorHead`
    over time-ordered, causal contexts: :meth:`sequence_contexts`) and
    ``'deep_interest'``
    (:class:`~cdrgraph.nn.heads.deep_interest_aggregator_head.DeepInterestAggregatorHead`,
    target-aware: :meth:`score` builds the user vector per candidate, in
    chunks of ``config.score_chunk`` context slots; the critic compares the
    views built for the positive).

    **Feature embeddings** (§4.3 (a), ``config.features``). Sums of field
    embeddings shared across domains,
    :math:`\phi_u = \sum_f \mathbf{E}^u_f[x_{u,f}]` and
    :math:`\psi_i = \sum_f \mathbf{E}^i_f[x_{i,f}]`, enter as
    :math:`\hat{\mathbf{P}}_k[u] = \mathbf{P}_k[u] + \phi_u`,
    :math:`\hat{\mathbf{P}}_s[u] = \mathbf{P}_s[u] + \phi_u` (the ID inputs of
    the aggregators) and :math:`\mathbf{Q}^0_k[i] = \mathbf{Q}_k[i] + \psi_i`
    (the input of the item GNN). The categorical columns ``user.x_cat`` /
    ``item.x_cat`` of the training graph are stored by
    :meth:`fit_features` (called by :meth:`from_data`) and looked up by
    global id, so full-graph and sampled batches see the same features.

    **Multi-behaviour tower** (§4.3 (f), ``config.tower='mlp'``). The dot
    product is replaced by
    :class:`~cdrgraph.nn.heads.behavior_tower_head.BehaviorTowerHead`: one
    MLP per behaviour :math:`b` on :math:`[z; v; z \odot v; e_{dom}]`, and
    :math:`L_{rec} = \sum_b w_b L_{rec,b}` with :math:`L_{rec,b}` UniCDR's
    BCE with sampled negatives on the labels of :meth:`behavior_labels`
    (hierarchical for positives, all zero for negatives). :meth:`score`
    returns the logit of behaviour ``0`` (ranking evaluation),
    :meth:`behavior_scores` all of them. The labels of the training edges are
    stored by :meth:`fit_behaviors` (called by :meth:`from_data`).

    Not implemented yet (MODELS.md §4.3): the item GNN over the shared item
    table of item-overlap data (``Q_s`` is not propagated).

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        num_domains (int, optional): number of domains ``K``. (default: :obj:`2`)
        embedding_dim (int, optional): size ``h``. (default: :obj:`128`)
        aggregator (str, optional): ``'mean'``, ``'user_attention'``,
            ``'item_similarity'``, ``'sequential'`` or ``'deep_interest'``.
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
        num_shared_items (int, optional): rows of the shared item table
            (``multi-item-intra``; see :class:`UniCDR`). (default: :obj:`0`)
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

    AGGREGATORS = PLUS_AGGREGATORS

    def __init__(self, num_users: int, num_items: int, num_domains: int = 2, embedding_dim: int = 128,
                 aggregator: str = 'mean', num_layers: int = 1, combine: str = 'mean', dropout: float = 0.3,
                 warmup: bool = False, num_shared_items: int = 0,
                 config: UniCDRPlusConfig = UniCDRPlusConfig(),  # noqa: B008 (frozen dataclass)
                 compat: UniCDRCompat = UniCDRCompat()) -> None:  # noqa: B008 (frozen dataclass)
        if not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f'UniCDRPlus: num_layers must be an int >= 0, got {num_layers!r}')
        if combine not in COMBINE:
            raise ValueError(f'UniCDRPlus: combine must be one of {COMBINE}, got {combine!r}')
        if not isinstance(config, UniCDRPlusConfig):
            raise TypeError(f'UniCDRPlus: config must be a UniCDRPlusConfig, got {type(config).__name__}')
        if aggregator == 'sequential' and embedding_dim % config.heads:
            raise ValueError(f"UniCDRPlus(aggregator='sequential'): config.heads={config.heads} must divide "
                             f'embedding_dim={embedding_dim}')
        super().__init__(num_users, num_items, num_domains=num_domains, embedding_dim=embedding_dim,
                         aggregator=aggregator, dropout=dropout, warmup=warmup, num_shared_items=num_shared_items,
                         config=config, compat=compat)
        self.num_layers = num_layers
        self.combine = combine
        self.config = config
        #: parameter-free item–item operator, applied ``num_layers`` times (cached CSR across layers and steps)
        self.item_conv = ItemGraphConv()
        #: the same operator on the shared item table (multi-item-intra): items joined by ``item.shared_id``
        self.shared_item_conv = ItemGraphConv() if num_shared_items else None
        self._shared_graph = _GraphCache()
        #: trainable layer logits of ``combine='learned'`` (softmax -> layer weights)
        self.layer_logits = Parameter(torch.zeros(num_layers + 1)) if combine == 'learned' else None
        #: number of behaviours predicted (``1`` for the dot tower)
        self.num_behaviors = config.behaviors
        #: multi-behaviour towers (``config.tower='mlp'``)
        self.tower = BehaviorTowerHead(embedding_dim, self.num_behaviors, num_domains, hidden=config.tower_hidden,
                                       dropout=dropout) if config.tower == 'mlp' else None
        #: labels of the training edges (:meth:`fit_behaviors`): sorted keys ``user * I + item`` and ``bool[E, B]``
        self.register_buffer('behavior_key', None, persistent=False)
        self.register_buffer('behavior_label', None, persistent=False)
        #: feature embeddings (``config.features``): field sums of users and items
        fields = config.fields
        if config.features and fields is None:
            raise ValueError('UniCDRPlus(config.features=True) needs config.fields (the vocabulary sizes of '
                             'user.x_cat / item.x_cat); build the model with UniCDRPlus.from_data(train_data) or '
                             'pass fields=FieldSpec.from_data(train_data)')
        if config.features and fields is not None and not fields.num_categorical:
            raise ValueError('UniCDRPlus(config.features=True): config.fields has no categorical field (the graph '
                             'has no user.x_cat / item.x_cat); set features=False or add side features')
        use = config.features and fields is not None
        self.user_features = _FieldSum(fields.user_vocab, embedding_dim) if use and fields.user_vocab else None
        self.item_features = _FieldSum(fields.item_vocab, embedding_dim) if use and fields.item_vocab else None
        #: ``x_cat`` of the training graph's users and items, by global id (:meth:`fit_features`)
        self.register_buffer('user_x_cat', None, persistent=False)
        self.register_buffer('item_x_cat', None, persistent=False)
        self._repr_args: dict[str, Any] = dict(
            num_users=num_users, num_items=num_items, num_domains=num_domains, embedding_dim=embedding_dim,
            aggregator=aggregator, num_layers=num_layers, combine=combine, dropout=dropout, warmup=warmup)
        if num_shared_items:
            self._repr_args['num_shared_items'] = num_shared_items
        if config != UniCDRPlusConfig():
            self._repr_args['config'] = config
        if compat != UniCDRCompat():
            self._repr_args['compat'] = compat

    def _make_aggregator(self, shared: bool) -> torch.nn.Module:
        cfg = self.config
        assert isinstance(cfg, UniCDRPlusConfig)
        if self.aggregator == 'sequential':
            return SequentialAggregatorHead(self.embedding_dim, max_len=cfg.seq_len, heads=cfg.heads,
                                            lambda_a=self.lambda_a, dropout=self.dropout_p)
        if self.aggregator == 'deep_interest':
            return DeepInterestAggregatorHead(self.embedding_dim, hidden=cfg.attention_hidden,
                                              lambda_a=self.lambda_a)
        return super()._make_aggregator(shared)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for conv in ('item_conv', 'shared_item_conv'):
            if getattr(self, conv, None) is not None:
                getattr(self, conv).reset_parameters()
        self._shared_graph = _GraphCache()
        if getattr(self, 'layer_logits', None) is not None:
            torch.nn.init.zeros_(self.layer_logits)
        for name in ('tower', 'user_features', 'item_features'):
            mod = getattr(self, name, None)
            if mod is not None:
                mod.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> UniCDRPlus:
        r"""Build the model with the counts of ``data`` (the *training* graph,
        see :meth:`UniCDR.from_data`). With ``config.tower='mlp'`` an
        unresolved ``num_behaviors`` is read from ``interacts.behavior`` and
        the training edges' labels are stored (:meth:`fit_behaviors`); with
        ``config.features`` the field vocabularies (``fields=None``) and the
        ``x_cat`` columns are read (:meth:`fit_features`)."""
        cfg = kwargs.get('config', UniCDRPlusConfig())
        if isinstance(cfg, UniCDRPlusConfig):
            changes: dict[str, Any] = {}
            if cfg.tower == 'mlp' and cfg.num_behaviors is None and not cfg.behavior_thresholds:
                behavior = _train_edge_attr(data, 'behavior')
                changes['num_behaviors'] = int(behavior.max()) + 1 if behavior is not None and behavior.numel() \
                    else max(len(cfg.behavior_weights), 1)
            if cfg.features and cfg.fields is None:
                changes['fields'] = FieldSpec.from_data(data, dense=False)
            if changes:
                kwargs['config'] = dataclasses.replace(cfg, **changes)
        model = super().from_data(data, **kwargs)
        assert isinstance(model, UniCDRPlus)
        if model.tower is not None:
            model.fit_behaviors(data)
        if model.config.features:
            model.fit_features(data)
        return model

    # ------------------------------------------------------------------ feature embeddings
    def fit_features(self, data: HeteroData) -> UniCDRPlus:
        r"""Store the categorical columns ``user.x_cat`` / ``item.x_cat`` of
        ``data`` (the training graph) for the feature embeddings (checked
        against ``config.fields``). Returns ``self``."""
        for nt, table, num, attr in ((USER, self.user_features, self.num_users, 'user_x_cat'),
                                     (ITEM, self.item_features, self.num_items, 'item_x_cat')):
            if table is None:
                continue
            x_cat = getattr(data[nt], 'x_cat', None)
            f = len(table.vocab)
            if x_cat is None or x_cat.dim() != 2 or x_cat.size(0) != num or x_cat.size(1) != f:
                got = None if x_cat is None else tuple(x_cat.shape)
                raise ValueError(f'UniCDRPlus.fit_features: {nt}.x_cat must be long[{num}, {f}] (config.fields), '
                                 f'got {got}; pass the training graph the model was built for')
            x_cat = x_cat.long()
            vocab = table.vocab.to(x_cat.device).view(1, -1)
            if x_cat.numel() and bool(((x_cat < 0) | (x_cat >= vocab)).any()):
                col = int(((x_cat < 0) | (x_cat >= vocab)).any(0).nonzero()[0])
                raise ValueError(f'UniCDRPlus.fit_features: {nt}.x_cat column {col} holds values outside '
                                 f'[0, {int(vocab[0, col])}) (config.fields); a missing value must be its own '
                                 'vocabulary entry, never negative')
            setattr(self, attr, x_cat.to(self.item_emb.weight.device))
        return self

    def _field_sum(self, table: _FieldSum | None, x_cat: Tensor | None, ids: Tensor) -> Tensor | None:
        if table is None:
            return None
        if x_cat is None:
            raise ValueError('UniCDRPlus(config.features=True) has no side features; build it with '
                             'from_data(train_data) or call model.fit_features(train_data)')
        return table(x_cat[ids])

    def user_feature_embedding(self, uid: Tensor) -> Tensor | None:
        r""":math:`\phi_u = \sum_f \mathbf{E}^u_f[x_{u,f}]` ``[R, h]`` of global
        users ``uid`` (:obj:`None` without user features)."""
        return self._field_sum(self.user_features, self.user_x_cat, uid)

    def item_feature_embedding(self, iid: Tensor) -> Tensor | None:
        r""":math:`\psi_i = \sum_f \mathbf{E}^i_f[x_{i,f}]` ``[R, h]`` of global
        items ``iid`` (:obj:`None` without item features)."""
        return self._field_sum(self.item_features, self.item_x_cat, iid)

    def specific_input(self, k: int, uid: Tensor) -> Tensor:
        r""":math:`\hat{\mathbf{P}}_k[u] = \mathbf{P}_k[u] + \phi_u`."""
        e = super().specific_input(k, uid)
        phi = self.user_feature_embedding(uid)
        return e if phi is None else e + phi

    def shared_input(self, uid: Tensor) -> Tensor:
        r""":math:`\hat{\mathbf{P}}_s[u] = \mathbf{P}_s[u] + \phi_u`."""
        e = super().shared_input(uid)
        phi = self.user_feature_embedding(uid)
        return e if phi is None else e + phi

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
        psi = self.item_feature_embedding(iid)
        if psi is not None:
            x = x + psi
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

    def _shared_item_graph(self, batch: CDRBatch) -> tuple[Tensor, Tensor, Tensor]:
        r"""``(uniq, inv, edges)``: the shared ids of ``batch.graph``'s items
        (``uniq[inv] = item.shared_id``) and the ``long[2, E_s]`` (user, row of
        ``uniq``) pairs of the union graph over domains joined through
        ``item.shared_id`` (de-duplicated); cached for the graph's training
        edges and ``shared_id`` tensors."""
        g = batch.graph
        edge_index = train_edge_index(g)
        shared = g[ITEM].shared_id
        c = self._shared_graph._cache
        if c is not None and c[0]() is edge_index and c[1]() is shared:
            return c[2]
        uniq, inv = torch.unique(shared, return_inverse=True)
        num_shared = uniq.numel()
        keys = torch.unique(edge_index[0] * num_shared + inv[edge_index[1]])
        out = (uniq, inv, torch.stack([keys // num_shared, keys % num_shared]))
        self._shared_graph._cache = (weakref.ref(edge_index), weakref.ref(shared), out)
        return out

    def shared_item_layers(self, batch: CDRBatch) -> list[Tensor] | None:
        r"""The ``L + 1`` layers of the shared item table ``[I_local, h]`` of
        ``batch.graph``'s items (multi-item-intra), :obj:`None` without one.
        MODELS.md §4.2(b): the item GNN runs on the union graph over domains
        joined through ``item.shared_id`` (one node per shared item, an edge
        where a user interacted with any of its copies), so all copies of an
        item get one propagated row."""
        base = super().shared_item_table(batch)   # Q_s[shared_id], validated
        if base is None or not self.num_layers:
            return None if base is None else [base]
        assert self.item_shared is not None and self.shared_item_conv is not None
        uniq, inv, edges = self._shared_item_graph(batch)
        num_users = int(batch.graph[USER].num_nodes)
        x = self.item_shared(uniq)
        layers = [x]
        for _ in range(self.num_layers):
            x = self.shared_item_conv(x, edges, num_users=num_users, item_domain=None)
            layers.append(x)
        return [h[inv] for h in layers]

    def shared_item_table(self, batch: CDRBatch) -> Tensor | None:
        r""":math:`\hat{\mathbf{Q}}_s` ``[I_local, h]``: the combined layers of
        :meth:`shared_item_layers` (``Q_s[shared_id]`` when ``num_layers=0``)."""
        layers = self.shared_item_layers(batch)
        return None if layers is None else self.combine_layers(layers)

    def encode_layers(self, batch: CDRBatch) -> list[ZDict]:
        r"""``L + 1`` evaluation z_dicts: for every layer ``l`` the items
        :math:`\mathbf{H}^{(l)}` (and the shared item table's layer ``l``)
        and the user views built from them (the contexts are computed once)."""
        uid, iid = self._ids(batch)
        contexts = self.contexts(batch, torch.arange(uid.numel(), device=uid.device))
        item_layers = self.item_layers(batch, iid)
        shared = self.shared_item_layers(batch) or [None] * len(item_layers)
        return [self._with_item_domain(self.encode_views(uid, items, contexts, sh), batch)
                for items, sh in zip(item_layers, shared, strict=True)]

    # ------------------------------------------------------------------ sequential contexts
    def contexts(self, batch: CDRBatch, user: Tensor, domain: Tensor | None = None,
                 pos_item: Tensor | None = None) -> UniCDRContexts:
        r"""UniCDR's contexts (:meth:`UniCDR.contexts`); for the
        ``'sequential'`` aggregator time-ordered ones (:meth:`sequence_contexts`)."""
        if self.aggregator == 'sequential':
            return self.sequence_contexts(batch, user, domain, pos_item)
        return super().contexts(batch, user, domain, pos_item)

    def sequence_contexts(self, batch: CDRBatch, user: Tensor, domain: Tensor | None = None,
                          pos_item: Tensor | None = None) -> UniCDRContexts:
        r"""Time-ordered contexts of the ``'sequential'`` aggregator (MODELS.md
        §4.3 (c), (d)), from ``batch.graph``'s training edges ordered by
        ``interacts.time`` (ties and graphs without times: file order).

        Each domain slot holds the row's last ``seq_len`` eligible items,
        oldest first (left-aligned; slot ``t`` is the ``t``-th of the
        window). The shared view gets one merged sequence (``shared_index``):
        the last ``seq_len`` eligible items of all domains by time — in
        training of the *other* domains only (domain masking).

        Training (``domain``/``pos_item`` given): with
        ``config.causal_context`` only items with time ``<`` the positive's
        time are eligible (the positive's time is read from its training edge;
        a pair without one keeps every item). Interaction masking then drops
        a random set of window positions, keeping
        :math:`\min(n_{win}, \lfloor(1-\rho) n_{elig}\rfloor)` (``task='inter'``:
        all of them in the other domains and in the shared sequence) — dropped
        positions keep their place (mask ``False``), so the order is kept — and
        the positive's own position is dropped (unless
        ``compat.keep_target_in_context``). Evaluation: no masking.
        """
        g = batch.graph
        k_num = self.num_domains
        cfg = self.config
        assert isinstance(cfg, UniCDRPlusConfig)
        m = cfg.seq_len
        train = pos_item is not None
        row, item, edge = self._graph_edges(batch, user)
        dev = item.device
        d = g[ITEM].domain[item]
        r = user.numel()
        time = self._train_time(g)
        t = (edge if time is None else time[edge]).double()
        count = torch.bincount(row * k_num + d, minlength=r * k_num).view(r, k_num)
        eligible = torch.ones_like(item, dtype=torch.bool)
        drop = torch.zeros_like(eligible)
        if train:
            assert domain is not None
            is_pos = (d == domain[row]) & (item == pos_item[row])
            if cfg.causal_context:
                tau = torch.full((r,), float('-inf'), dtype=t.dtype, device=dev)
                tau = tau.scatter_reduce(0, row[is_pos], t[is_pos], reduce='amax')
                tau = tau.masked_fill(tau == float('-inf'), float('inf'))
                eligible = t < tau[row]
            if not self.compat.keep_target_in_context:
                drop = is_pos
        other = d != (domain[row] if train else d)
        spec = self._window(row * k_num + d, r * k_num, t, edge, eligible, drop, m, train,
                            no_rho=other if cfg.task == 'inter' else None)
        index = torch.zeros(r, k_num, m, dtype=torch.long, device=dev)
        mask = torch.zeros(r, k_num, m, dtype=torch.bool, device=dev)
        sel, slot, kept = spec
        index[row[sel], d[sel], slot] = item[sel]
        mask[row[sel], d[sel], slot] = kept
        sh_elig = eligible & (d != domain[row]) if train else eligible
        sel, slot, kept = self._window(row, r, t, edge, sh_elig, drop, m, train,
                                       no_rho=torch.ones_like(sh_elig) if cfg.task == 'inter' else None)
        shared_index = torch.zeros(r, m, dtype=torch.long, device=dev)
        shared_mask = torch.zeros(r, m, dtype=torch.bool, device=dev)
        shared_index[row[sel], slot] = item[sel]
        shared_mask[row[sel], slot] = kept
        return UniCDRContexts(index, mask, count, None, shared_index, shared_mask)

    def _window(self, group: Tensor, num_groups: int, t: Tensor, edge: Tensor, eligible: Tensor, drop: Tensor,
                m: int, train: bool, no_rho: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        r"""The last ``m`` eligible entries of every group, oldest first:
        ``(sel, slot, kept)`` — entry indices, their slots and whether the
        slot survives interaction masking (training)."""
        dev = t.device
        idx = eligible.nonzero().view(-1)
        grp = group[idx]
        # most recent first: time descending, then file position descending; grouped
        perm = torch.argsort(-edge[idx], stable=True)
        perm = perm[torch.argsort(-t[idx][perm], stable=True)]
        perm = perm[torch.argsort(grp[perm], stable=True)]
        n_elig = torch.bincount(grp, minlength=num_groups)
        start = torch.cumsum(n_elig, 0) - n_elig
        recent = torch.empty_like(perm)
        recent[perm] = torch.arange(perm.numel(), device=dev) - start[grp[perm]]
        win = recent < m
        idx, grp, recent = idx[win], grp[win], recent[win]
        n_win = n_elig.clamp(max=m)
        slot = n_win[grp] - 1 - recent
        kept = torch.ones_like(idx, dtype=torch.bool)
        if train:
            take = torch.minimum(n_win, torch.floor((1.0 - self.mask_rate) * n_elig.double()).long())
            if no_rho is not None:   # task='inter': no ρ on these entries' groups
                full = torch.zeros(num_groups, dtype=torch.bool, device=dev)
                full[grp[no_rho[idx]]] = True
                take = torch.where(full, n_win, take)
            key = torch.rand(idx.numel(), device=dev)
            perm = torch.argsort(key)
            perm = perm[torch.argsort(grp[perm], stable=True)]
            wstart = torch.cumsum(n_win, 0) - n_win
            rank = torch.empty_like(perm)
            rank[perm] = torch.arange(perm.numel(), device=dev) - wstart[grp[perm]]
            kept = (rank < take[grp]) & ~drop[idx]
        return idx, slot, kept

    # ------------------------------------------------------------------ deep interest
    def _row_scores(self, batch: CDRBatch, warmup: bool) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        di = self.aggregator == 'deep_interest'
        if not di and self.tower is None:
            return super()._row_scores(batch, warmup)
        _, iid = self._ids(batch)
        items = self.item_table(batch, iid)
        cand = torch.cat([batch.pos_item.view(-1, 1), batch.neg_item], dim=1)       # [B, 1 + n]
        if di:
            target = items[cand]
            z_spec, z_sh = self.row_views(batch, shared=not warmup, items=items, target=target)
            z = z_spec if z_sh is None else z_spec + z_sh                              # [B, 1 + n, h]
            v = self.dropout(target)
        else:
            z_spec, z_sh = self.row_views(batch, shared=not warmup, items=items)
            z = (z_spec if z_sh is None else z_spec + z_sh).unsqueeze(1)               # [B, 1, h]
            v = self.dropout(items[cand])
        scores = self.pair_logits(z, v, batch.graph[ITEM].domain[cand])              # [B, 1 + n (, B_beh)]
        if di:   # the critic compares the views built for the positive
            z_spec, z_sh = z_spec[:, 0], None if z_sh is None else z_sh[:, 0]
        return scores[:, 0], scores[:, 1:], z_spec, z_sh

    def encode_views(self, uid: Tensor, items: Tensor, contexts: UniCDRContexts,
                     shared_items: Tensor | None = None) -> ZDict:
        r"""UniCDR's z_dict; for ``'deep_interest'`` the materials of
        :meth:`score` instead of user vectors (the user vector depends on the
        candidate): ``{'item': [I, h]}`` plus the contexts and ID inputs."""
        if self.aggregator != 'deep_interest':
            return super().encode_views(uid, items, contexts, shared_items)
        z = {ITEM: self.dropout(items), 'di_items': items, 'di_uid': uid, 'di_index': contexts.index,
             'di_mask': contexts.mask, 'di_cold': contexts.count == 0}
        if shared_items is not None:
            z['di_shared_items'] = shared_items
        return z

    def score(self, z_dict: ZDict, user_index: Tensor, item_index: Tensor,
              domain: Tensor | None = None) -> Tensor:
        r"""Scores of (user, item) pairs; for ``'deep_interest'`` the
        target-aware views of every pair, in chunks of ``config.score_chunk``
        context slots (memory-bounded full ranking and ``recommend``); with
        ``tower='mlp'`` the logit of behaviour ``0`` (:meth:`behavior_scores`)."""
        if self.aggregator != 'deep_interest' and self.tower is None:
            return super().score(z_dict, user_index, item_index, domain)
        out = self._pair_outputs(z_dict, user_index, item_index, domain)
        return out if self.tower is None else out[:, 0]

    def dot_product_scores(self) -> bool:
        r""":meth:`score` is UniCDR's dot product unless the aggregator is
        target-aware (``deep_interest``) or the tower is an MLP, so full and
        sampled ranking use matrix products (MODELS.md §0.3)."""
        return self.aggregator != 'deep_interest' and self.tower is None

    def behavior_scores(self, z_dict: ZDict, user_index: Tensor, item_index: Tensor,
                        domain: Tensor | None = None) -> Tensor:
        r"""Logits ``[P, B]`` of every behaviour for (user, item) pairs given
        by *local* indices into ``z_dict`` (``B = 1`` with the dot tower), for
        per-behaviour metrics. ``domain`` (``long[P]``) defaults to
        ``z_dict['item_domain']`` of the items (put there by :meth:`encode`
        with ``tower='mlp'``)."""
        domain = self._pair_domain(z_dict, item_index, domain)
        if self.aggregator != 'deep_interest' and self.tower is None:
            return super().score(z_dict, user_index, item_index, domain).unsqueeze(-1)
        out = self._pair_outputs(z_dict, user_index, item_index, domain)
        return out.unsqueeze(-1) if out.dim() == 1 else out

    def pair_logits(self, z: Tensor, v: Tensor, domain: Tensor) -> Tensor:
        r"""The prediction tower on user vectors ``z [*, h]`` and item vectors
        ``v [*, h]`` (broadcastable) of domains ``domain``: ``'dot'``:
        :math:`z \cdot v` ``[*]``; ``'mlp'``: the behaviour logits ``[*, B]``."""
        if self.tower is None:
            return (z * v).sum(-1)
        return self.tower(z, v, domain)

    def _pair_domain(self, z_dict: ZDict, item_index: Tensor, domain: Tensor | None) -> Tensor | None:
        if domain is not None:
            return domain
        dom = z_dict.get(ITEM_DOMAIN_KEY)
        return None if dom is None else dom[item_index]

    def _pair_outputs(self, z_dict: ZDict, user_index: Tensor, item_index: Tensor,
                      domain: Tensor | None) -> Tensor:
        r"""Tower outputs (:meth:`pair_logits`) of local pairs: ``[P]`` or ``[P, B]``."""
        name = self.__class__.__name__
        domain = self._pair_domain(z_dict, item_index, domain)
        if self.aggregator != 'deep_interest':
            if domain is None:
                raise ValueError(f"{name}(tower='mlp').score needs `domain` (or z_dict['item_domain'])")
            zu = z_dict[USER]
            u = zu[user_index, domain] if zu.dim() == 3 else zu[user_index]
            return self.pair_logits(u, z_dict[ITEM][item_index], domain)
        if 'di_index' not in z_dict:
            raise ValueError(f"{name}(aggregator='deep_interest').score needs the z_dict of its encode()")
        if domain is None:
            raise ValueError(f"{name}(aggregator='deep_interest').score needs `domain`")
        cfg = self.config
        assert isinstance(cfg, UniCDRPlusConfig)
        slots = self.num_domains * int(z_dict['di_index'].size(-1))
        step = max(1, cfg.score_chunk // max(slots, 1))
        out = []
        for start in range(0, user_index.numel(), step):
            out.append(self._di_pair_scores(z_dict, user_index[start:start + step], item_index[start:start + step],
                                            domain[start:start + step]))
        if out:
            return torch.cat(out)
        return z_dict[ITEM].new_zeros((0,) if self.tower is None else (0, self.num_behaviors))

    def _di_pair_scores(self, z: ZDict, user: Tensor, item: Tensor, domain: Tensor) -> Tensor:
        items = z['di_items']
        uid = z['di_uid'][user]
        ctx = UniCDRContexts(z['di_index'][user], z['di_mask'][user], (~z['di_cold'][user]).long())
        target = items[item].unsqueeze(1)                                          # [P, 1, h]
        shape = (user.numel(),) if self.tower is None else (user.numel(), self.num_behaviors)
        out = items.new_zeros(shape)
        for k in torch.unique(domain).tolist():
            sel = (domain == k).nonzero().view(-1)
            ck = UniCDRContexts(ctx.index[sel], ctx.mask[sel], ctx.count[sel])
            zs = self._specific(k, uid[sel], items, ck.index[:, k], ck.mask[:, k], ck.count[:, k] == 0, None,
                                target[sel])
            zh = self.shared_view(uid[sel], items, ck, domain[sel], z.get('di_shared_items'), target[sel],
                                  masked=False)
            user_vec = (self.dropout(zs) + self.dropout(zh)).squeeze(1)
            out = out.index_copy(0, sel, self.pair_logits(user_vec, z[ITEM][item[sel]], domain[sel]))
        return out

    # ------------------------------------------------------------------ prediction tower
    user_keys = (USER, 'di_uid', 'di_index', 'di_mask', 'di_cold')

    def encode(self, batch: CDRBatch) -> ZDict:
        r"""UniCDR's evaluation z_dict (:meth:`UniCDR.encode`); with
        ``tower='mlp'`` also ``'item_domain'`` (the tower's domain input)."""
        return self._with_item_domain(super().encode(batch), batch)

    def _with_item_domain(self, z: ZDict, batch: CDRBatch) -> ZDict:
        if self.tower is not None:
            z[ITEM_DOMAIN_KEY] = batch.graph[ITEM].domain
        return z

    def forward(self, batch: CDRBatch) -> Tensor:
        r"""Scores ``[B * (1 + n)]`` of ``batch.edge_label_index`` (UniCDR's
        :meth:`UniCDR.forward`; behaviour ``0`` with ``tower='mlp'``)."""
        if self.training and self.tower is not None:
            pos, neg, _, _ = self._row_scores(batch, warmup=False)
            return torch.cat([pos[:, 0], neg[..., 0].reshape(-1)])
        return super().forward(batch)

    def _needs_label_table(self) -> bool:
        thr = self.config.behavior_thresholds
        return any(t is not None for t in thr) if thr else self.num_behaviors > 1

    def fit_behaviors(self, data: HeteroData) -> UniCDRPlus:
        r"""Store the behaviour labels ``bool[E, B]`` of the training edges of
        ``data`` (``tower='mlp'``): from ``interacts.rating`` and
        ``config.behavior_thresholds``, else behaviour ``b`` observed iff
        ``interacts.behavior >= b``. Returns ``self``."""
        name = self.__class__.__name__
        if self.tower is None:
            raise ValueError(f"{name}.fit_behaviors needs config.tower='mlp'")
        if int(data[USER].num_nodes) != self.num_users or int(data[ITEM].num_nodes) != self.num_items:
            raise ValueError(f'{name}.fit_behaviors: data has {int(data[USER].num_nodes)} users and '
                             f'{int(data[ITEM].num_nodes)} items, the model {self.num_users} and {self.num_items}; '
                             'pass the training graph the model was built for')
        if not self._needs_label_table():
            return self
        ei = train_edge_index(data)
        thr = self.config.behavior_thresholds
        if thr:
            rating = _train_edge_attr(data, 'rating')
            if rating is None:
                raise ValueError(f'{name}: config.behavior_thresholds={thr} needs interacts.rating in the training '
                                 'graph; use a rated dataset or labels from interacts.behavior '
                                 '(behavior_thresholds=())')
            ones = torch.ones(ei.size(1), dtype=torch.bool, device=ei.device)
            cols = [ones if t is None else rating.float() >= t for t in thr]
        else:
            behavior = _train_edge_attr(data, 'behavior')
            if behavior is None:
                raise ValueError(f'{name}: num_behaviors={self.num_behaviors} needs interacts.behavior in the '
                                 'training graph or config.behavior_thresholds (labels from ratings)')
            cols = [behavior >= b for b in range(self.num_behaviors)]
        label = torch.stack(cols, dim=1).long()
        key, inv = torch.unique(ei[0] * self.num_items + ei[1], return_inverse=True)
        lab = torch.zeros(key.numel(), label.size(1), dtype=torch.long, device=key.device)
        lab = lab.scatter_reduce(0, inv.view(-1, 1).expand_as(label), label, reduce='amax')
        dev = self.item_emb.weight.device
        self.behavior_key = key.to(dev)
        self.behavior_label = lab.bool().to(dev)
        return self

    def positive_behavior_labels(self, batch: CDRBatch) -> Tensor:
        r"""Hierarchical labels ``float[B, B_beh]`` of the batch's positives
        (MODELS.md §4.3 (f)): row ``b`` holds :math:`y_{b'}` of its training
        edge (:meth:`fit_behaviors`; all ones with a single unconditional
        behaviour)."""
        b = batch.batch_size
        dev = batch.user.device
        if not self._needs_label_table():
            return torch.ones(b, self.num_behaviors, device=dev)
        name = self.__class__.__name__
        if self.behavior_key is None:
            raise ValueError(f"{name}(tower='mlp') has no behaviour labels; build it with from_data(train_data) "
                             'or call model.fit_behaviors(train_data)')
        key = (self.node_ids(batch, USER)[batch.user] * self.num_items
               + self.node_ids(batch, ITEM)[batch.pos_item]).to(self.behavior_key.device)
        idx = torch.searchsorted(self.behavior_key, key).clamp(max=max(self.behavior_key.numel() - 1, 0))
        found = self.behavior_key[idx] == key if self.behavior_key.numel() else torch.zeros_like(key, dtype=torch.bool)
        if not bool(found.all()):
            miss = int((~found).nonzero()[0])
            raise ValueError(f'{name}.positive_behavior_labels: {int((~found).sum())} positive pair(s) of the batch '
                             f'are not training edges of the graph given to fit_behaviors (e.g. user '
                             f'{int(key[miss]) // self.num_items}, item {int(key[miss]) % self.num_items}); train on '
                             'the graph the model was built from')
        return self.behavior_label[idx].to(device=dev, dtype=torch.float)

    def behavior_labels(self, batch: CDRBatch) -> Tensor:
        r"""Labels ``float[B * (1 + n), B_beh]`` of ``batch.edge_label_index``
        (positives first): the hierarchical labels of the positives
        (:meth:`positive_behavior_labels`), all zeros for the sampled
        negatives."""
        pos = self.positive_behavior_labels(batch)
        neg = pos.new_zeros(batch.batch_size * batch.num_negatives, pos.size(1))
        return torch.cat([pos, neg])

    def behavior_loss_weights(self) -> Tensor:
        r""":math:`w_b` ``[B]`` (``config.behavior_weights``, default all ``1``)."""
        w = self.config.behavior_weights or (1.0,) * self.num_behaviors
        return torch.tensor(w, dtype=self.item_emb.weight.dtype, device=self.item_emb.weight.device)

    def rec_loss(self, pos: Tensor, neg: Tensor, batch: CDRBatch, sel: Tensor) -> Tensor:
        r""":math:`L_{rec}` of the rows ``sel`` of one domain: UniCDR's sampled
        BCE (MODELS.md §0.4); with ``tower='mlp'``
        :math:`\sum_b w_b L_{rec,b}`, each the sampled BCE of behaviour ``b``
        (``pos [B_k, B]`` against the positives' labels, ``neg [B_k, n, B]``
        against ``0``)."""
        if self.tower is None:
            return super().rec_loss(pos, neg, batch, sel)
        y = self.positive_behavior_labels(batch)[sel].to(pos.dtype)
        per = F.binary_cross_entropy_with_logits(pos, y, reduction='none').mean(0)
        if neg.numel():
            per = per + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg), reduction='none').mean((0, 1))
        return (self.behavior_loss_weights() * per).sum()

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
        :math:`\mathbf{Q}`, the per-domain aggregators, the learned layer
        logits, the behaviour towers and the feature tables (inputs of the
        specific view and of the rec loss; :math:`\mathbf{P}_s`,
        :math:`\mathrm{Agg}_s`, :math:`D_k` stay frozen)."""
        self._check_stage(stage)
        if stage == 'joint':
            return self.parameters()
        extra = [] if self.layer_logits is None else [self.layer_logits]
        for mod in (self.tower, self.user_features, self.item_features):
            if mod is not None:
                extra.extend(mod.parameters())
        return iter([*super().stage_parameters(stage), *extra])
