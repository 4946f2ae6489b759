r"""CDTM: centralised-distributed transfer model for heterogeneous multi-domain CTR (MODELS.md §7)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_scatter import scatter

from cdrgraph.data.schema import ITEM, USER
from cdrgraph.data.schema import num_domains as graph_num_domains
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models._ctr_base import ITEM_DOMAIN, MultiDomainCTRModel
from cdrgraph.models._ctr_fields import DOMAIN_ONLY, SHARED_ID, DomainFields, Layout, set_tower_dropout
from cdrgraph.models.base import CDRModel, ZDict, check_item_domains, check_non_negative, check_sizes
from cdrgraph.nn.field_spec import FieldSpec
from cdrgraph.nn.heads.combination_attention_head import CombinationAttentionHead
from cdrgraph.nn.heads.domain_towers import DomainTowers
from cdrgraph.nn.heads.transfer_matrix_head import TransferMatrixHead

__all__ = ['CDTM', 'CDTMOptions']

#: ``z_dict`` keys of CDTM besides ``'user'``/``'item'``/``'item_domain'``
USER_GLOBAL, ITEM_GLOBAL, USER_DENSE, ITEM_DENSE = 'user_global', 'item_global', 'user_dense', 'item_dense'
ABLATIONS = ('attention', 'transfer_matrix', 'global_embeddings')


@dataclass(frozen=True)
class CDTMOptions:
    r"""Variant switches of :class:`CDTM` (ablations of the paper's Task 3 and
    our reconstruction choices, MODELS.md §7.3, §7.7).

    Args:
        gate (float, optional): :obj:`None` learns the combination attention;
            a number in ``[0, 1]`` fixes every gate :math:`A_f` to it (no
            attention parameters): ``0.5`` is the "without combination
            attention" ablation (plain average), ``1.0`` uses only the
            domain-specific embeddings, ``0.0`` only the mapped global ones on
            transferable fields. (default: :obj:`None`)
        transfer_matrix (bool, optional): map the global embeddings with
            :math:`\mathbf{T}_k`; :obj:`False` is the "without transfer matrix"
            ablation (:math:`\hat{\boldsymbol{\gamma}} = \boldsymbol{\gamma}`).
            (default: :obj:`True`)
        global_embeddings (bool, optional): give transferable fields a global
            shared embedding; :obj:`False` is the "without global embeddings"
            ablation: a domain-specific model (no transfer matrix, attention
            or alignment term). (default: :obj:`True`)
        shared_attention (bool, optional): one set of attention parameters for
            all domains (the paper's :math:`\sigma(\mathbf{V}_1\mathbf{h}_0 +
            \mathbf{b}_1)`) instead of one per domain. (default: :obj:`False`)
        domain_weights (tuple[float, ...], optional): loss weight :math:`w_k`
            of every domain; :obj:`None` gives 1 each. (default: :obj:`None`)

    Example:
        >>> CDTM.from_data(train, options=CDTMOptions.ablation('attention'))
    """

    gate: float | None = None
    transfer_matrix: bool = True
    global_embeddings: bool = True
    shared_attention: bool = False
    domain_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.gate is not None and not 0.0 <= float(self.gate) <= 1.0:
            raise ValueError(f'CDTMOptions: gate must be None or lie in [0, 1], got {self.gate}')
        if self.domain_weights is not None:
            w = tuple(float(v) for v in self.domain_weights)
            if any(v < 0 for v in w):
                raise ValueError(f'CDTMOptions: domain_weights must be >= 0, got {w}')
            object.__setattr__(self, 'domain_weights', w)

    @classmethod
    def ablation(cls, without: str) -> CDTMOptions:
        r"""The ablation "CDTM without ``without``", one of ``'attention'``
        (gates fixed to ½), ``'transfer_matrix'`` or ``'global_embeddings'``."""
        if without not in ABLATIONS:
            raise ValueError(f'CDTMOptions.ablation: unknown ablation {without!r}; choose one of {ABLATIONS}')
        return {'attention': cls(gate=0.5), 'transfer_matrix': cls(transfer_matrix=False),
                'global_embeddings': cls(global_embeddings=False)}[without]


class CDTM(CDRModel):
    r"""The centralised-distributed transfer model of `"A Centralized-Distributed
    Transfer Model for Cross-Domain Recommendation Based on Multi-Source
    Heterogeneous Transfer Learning" <https://arxiv.org/abs/2411.09286>`_
    (NetEase, 2024) for multi-domain CTR with heterogeneous feature sets
    (MODELS.md §7). For a sample ``(u, i)`` of domain ``k = item.domain[i]``:

    .. math::
        \mathbf{e}_f &= \mathbf{E}^k_f[x_f] \quad (f \in F_k,\ \text{zero otherwise}),\qquad
        \hat{\boldsymbol{\gamma}}_f = \mathbf{T}_k \mathbf{G}_f[x_f] \quad (f \in \mathcal{T})\\
        \mathbf{A} &= \sigma(\mathbf{V}_k \mathbf{h}_0 + \mathbf{c}_k),\quad
        \mathbf{h}_0 = [\mathbf{e}_1; \dots; \mathbf{e}_{|F|}; \hat{\boldsymbol{\gamma}}_1; \dots;
        \hat{\boldsymbol{\gamma}}_{|\mathcal{T}|}]\\
        \tilde{\mathbf{e}}_f &= A_f \mathbf{e}_f + (1 - A_f)\hat{\boldsymbol{\gamma}}_f
        \ (f \in \mathcal{T} \cap F_k), \qquad \tilde{\mathbf{e}}_f = \mathbf{e}_f \ \text{otherwise}\\
        \ell &= \mathrm{MLP}_k([\tilde{\mathbf{e}}_1; \dots; \tilde{\mathbf{e}}_{|F|}; \mathbf{x}^{dense}])

    with domain-specific embeddings (DSE) :math:`\mathbf{E}^k_f` per field and
    domain, global shared embeddings (GSE) :math:`\mathbf{G}_f` for the
    transferable fields :math:`\mathcal{T}`, transfer matrices
    :math:`\mathbf{T}_k` (:class:`~cdrgraph.nn.heads.TransferMatrixHead`,
    identity at the start), the combination attention
    (:class:`~cdrgraph.nn.heads.CombinationAttentionHead`) and one tower per
    domain (:class:`~cdrgraph.nn.heads.DomainTowers`, ReLU, dropout). Absent
    fields (:math:`f \notin F_k`) are zero vectors in :math:`\mathbf{h}_0`
    and in the tower input. The item id and domain id are domain-only: each
    of their values belongs to one domain, so one table row per value is
    that domain's DSE.

    **Fields.** ``user_id``, the ``user.x_cat`` columns, ``item_id``,
    ``item_shared_id`` (when items overlap), the ``item.x_cat`` columns and
    ``domain_id``; dense ``user.x``/``item.x`` are appended to the tower
    input. Which fields exist in which domain and which are transferable is
    given by ``domain_fields`` (:class:`~cdrgraph.models._ctr_fields.DomainFields`;
    :meth:`from_data` reads the shared ids and user overlap of the graph).
    :attr:`field_names` lists the fields in order.

    **Loss.** One stage ``'joint'``:
    :math:`\sum_k w_k\, \mathrm{mean}_{b \in k} \mathrm{BCE}(\ell_b, y_b) +
    \lambda_{align} \sum_k \mathrm{mean}_{b \in k} \sum_{f \in \mathcal{T} \cap F_k}
    \lVert \mathrm{sg}(\mathbf{e}_f) - \mathbf{T}_k \boldsymbol{\gamma}_f \rVert^2`
    over the batch's labelled pairs (``y`` = CTR labels of the positives, 0
    for sampled negatives); the stop-gradient keeps the alignment from
    moving the DSE.

    **Transfer tasks.** The model is centralised over the domains of its
    graph (multi-target by default). A *single-source* task ``s → t`` trains
    on ``SelectDomains([s, t])`` of the data and evaluates ``t``
    (``Evaluator(protocol='ctr')(..., domains=[t])``); *multi-source* keeps
    all sources and ``t``. ``options.domain_weights`` can down-weight the
    sources.

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        num_domains (int, optional): number ``K`` of domains. (default: :obj:`2`)
        fields (FieldSpec, optional): categorical and dense side fields;
            :obj:`None` for ids only. (default: :obj:`None`)
        embedding_dim (int, optional): width ``h`` of every field embedding.
            (default: :obj:`16`)
        tower_channels (Sequence[int], optional): hidden widths of each
            domain's tower. (default: :obj:`(128, 64, 32)`)
        dropout (float, optional): dropout after every hidden tower layer.
            (default: :obj:`0.2`)
        align_weight (float, optional): :math:`\lambda_{align}`.
            (default: :obj:`0.1`)
        domain_fields (DomainFields, optional): per-domain and transferable
            field sets; :obj:`None` is ``DomainFields()`` (every field in every
            domain, all non-domain-only fields transferable, no shared item
            ids). (default: :obj:`None`)
        options (CDTMOptions, optional): ablations and variants.
            (default: ``CDTMOptions()``)

    Example:
        >>> model = CDTM.from_data(train_data, transferable=['user_id', 'item_shared_id'])
        >>> logits = model(batch)                  # [B * (1 + n)]
        >>> model.loss(batch).backward()
    """

    def __init__(self, num_users: int, num_items: int, num_domains: int = 2, fields: FieldSpec | None = None,
                 embedding_dim: int = 16, tower_channels: Sequence[int] = (128, 64, 32), dropout: float = 0.2,
                 align_weight: float = 0.1, domain_fields: DomainFields | None = None,
                 options: CDTMOptions = CDTMOptions()) -> None:
        super().__init__()
        name = self.__class__.__name__
        check_sizes(name, num_users=num_users, num_items=num_items, num_domains=num_domains,
                    embedding_dim=embedding_dim)
        check_non_negative(name, 'align_weight', align_weight)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'{name}: dropout must lie in [0, 1), got {dropout}')
        tower_channels = [int(c) for c in tower_channels]
        fields = FieldSpec() if fields is None else fields
        domain_fields = DomainFields() if domain_fields is None else domain_fields
        if options.domain_weights is not None and len(options.domain_weights) != num_domains:
            raise ValueError(f'{name}: options.domain_weights has {len(options.domain_weights)} weights for '
                             f'num_domains={num_domains}; give one weight per domain')
        self.num_users, self.num_items, self.num_domains = num_users, num_items, num_domains
        self.fields, self.embedding_dim, self.dropout = fields, embedding_dim, float(dropout)
        self.align_weight, self.domain_fields, self.options = float(align_weight), domain_fields, options
        layout = domain_fields.resolve(fields, num_users, num_items, num_domains, owner=name)
        self.layout: Layout = layout
        if not options.global_embeddings:
            layout = layout._replace(transferable=())
        self.transferable: tuple[int, ...] = layout.transferable
        nf, nt, h = len(layout.names), len(layout.transferable), embedding_dim

        # domain-specific embeddings: one row block per (domain, field) present; one block for domain-only fields
        offsets = torch.zeros(num_domains, nf, dtype=torch.long)
        rows = 0
        for f, (fname, vocab) in enumerate(zip(layout.names, layout.vocab, strict=True)):
            if fname in DOMAIN_ONLY:
                offsets[:, f] = rows
                rows += vocab
                continue
            for k in range(num_domains):
                if bool(layout.present[k, f]):
                    offsets[k, f] = rows
                    rows += vocab
        self.specific = torch.nn.Embedding(max(rows, 1), h)
        self.register_buffer('specific_offset', offsets, persistent=False)
        self.register_buffer('present', layout.present.clone(), persistent=False)
        sides = layout.sides
        self.register_buffer('user_fields', torch.tensor([f for f in range(nf) if sides[f] == USER]),
                             persistent=False)
        self.register_buffer('item_fields', torch.tensor([f for f in range(nf) if sides[f] == ITEM]),
                             persistent=False)
        self.register_buffer('transfer_fields', torch.tensor(layout.transferable, dtype=torch.long),
                             persistent=False)
        # global shared embeddings of the transferable fields
        self.shared: torch.nn.Embedding | None = None
        self.transfer: TransferMatrixHead | None = None
        self.attention: CombinationAttentionHead | None = None
        gse_offsets = torch.zeros(nt, dtype=torch.long)
        if nt:
            vocab = torch.tensor([layout.vocab[f] for f in layout.transferable])
            gse_offsets = torch.cat([vocab.new_zeros(1), vocab.cumsum(0)[:-1]])
            self.shared = torch.nn.Embedding(int(vocab.sum()), h)
            if options.transfer_matrix:
                self.transfer = TransferMatrixHead(h, num_domains)
            if options.gate is None:
                self.attention = CombinationAttentionHead((nf + nt) * h, nt, num_domains,
                                                          shared=options.shared_attention)
        self.register_buffer('shared_offset', gse_offsets, persistent=False)
        in_ch = nf * h + fields.user_dense + fields.item_dense
        self.towers = set_tower_dropout(DomainTowers(in_ch, num_domains, tower_channels), dropout)
        weights = options.domain_weights or (1.0,) * num_domains
        self.register_buffer('domain_weight', torch.tensor(weights, dtype=torch.float), persistent=False)
        self._repr_args: dict[str, Any] = dict(
            num_users=num_users, num_items=num_items, num_domains=num_domains, fields=fields,
            embedding_dim=embedding_dim, tower_channels=tower_channels, dropout=dropout,
            align_weight=align_weight, domain_fields=domain_fields, options=options)
        self.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, transferable: Sequence[str] | None = None,
                  domain_fields: Any = None, **kwargs: Any) -> CDRModel:
        r"""Build CDTM for ``data``: node and domain counts, side fields
        (:meth:`FieldSpec.from_data <cdrgraph.nn.field_spec.FieldSpec.from_data>`)
        and the field sets of
        :meth:`DomainFields.from_data <cdrgraph.models._ctr_fields.DomainFields.from_data>`
        with ``transferable`` and ``domain_fields`` (a dict keyed by domain
        name or index, or one field list per domain); keyword arguments
        override them (``domain_fields`` may also be a :class:`DomainFields`)."""
        kwargs.setdefault('fields', FieldSpec.from_data(data))
        if not isinstance(domain_fields, DomainFields):
            domain_fields = DomainFields.from_data(data, transferable, domain_fields)
        elif transferable is not None:
            raise ValueError('CDTM.from_data: pass transferable inside the DomainFields object, not beside it')
        return cls(num_users=int(data[USER].num_nodes), num_items=int(data[ITEM].num_nodes),
                   num_domains=graph_num_domains(data), domain_fields=domain_fields, **kwargs)

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.specific.weight, std=0.01)
        if self.shared is not None:
            torch.nn.init.normal_(self.shared.weight, std=0.01)
        if self.transfer is not None:
            self.transfer.reset_parameters()
        if self.attention is not None:
            self.attention.reset_parameters()
        self.towers.reset_parameters()

    @property
    def field_names(self) -> tuple[str, ...]:
        r"""Names of the fields in input order (:mod:`cdrgraph.models._ctr_fields`)."""
        return self.layout.names

    @property
    def transferable_names(self) -> tuple[str, ...]:
        r"""Names of the fields with a global shared embedding (empty without GSE)."""
        return tuple(self.layout.names[f] for f in self.transferable)

    # ------------------------------------------------------------------ encode
    def _raw(self, batch: CDRBatch) -> tuple[Tensor, Tensor]:
        r"""Field values ``long[U, F_u]`` and ``long[I, F_i]`` of the batch graph's users and items."""
        uid, iid = self._ids(batch)
        g, name = batch.graph, self.__class__.__name__
        user_cols, item_cols = [uid.view(-1, 1)], [iid.view(-1, 1)]
        if self.domain_fields.num_shared_items > 0:
            shared = getattr(g[ITEM], 'shared_id', None)
            if shared is None:
                raise ValueError(f"{name}: the model has an '{SHARED_ID}' field but batch.graph has no "
                                 'item.shared_id; build it with CDTM.from_data(train_data) on the same graph')
            item_cols.append(shared.view(-1, 1))
        for nt, vocab, cols in ((USER, self.fields.user_vocab, user_cols), (ITEM, self.fields.item_vocab, item_cols)):
            if not vocab:
                continue
            x_cat = getattr(g[nt], 'x_cat', None)
            if x_cat is None or x_cat.dim() != 2 or x_cat.size(1) != len(vocab):
                got = None if x_cat is None else tuple(x_cat.shape)
                raise ValueError(f"{name}: batch.graph['{nt}'].x_cat must be long[N, {len(vocab)}] (fields "
                                 f'{vocab}), got {got}; build the model with CDTM.from_data on the same graph')
            cols.append(x_cat)
        user_raw, item_raw = torch.cat(user_cols, 1), torch.cat(item_cols, 1)
        for nt, raw, idx in ((USER, user_raw, self.user_fields), (ITEM, item_raw, self.item_fields)):
            vocab = torch.tensor([self.layout.vocab[f] for f in idx.tolist()], device=raw.device)
            bad = (raw < 0) | (raw >= vocab)
            if bool(bad.any()):
                f = int(bad.any(0).nonzero()[0])
                raise ValueError(f"{name}: {nt} field {self.layout.names[int(idx[f])]!r} holds values outside "
                                 f'[0, {int(vocab[f])})')
        return user_raw, item_raw

    def encode(self, batch: CDRBatch) -> ZDict:
        r"""Embeddings of the batch graph's users and items (local order):
        ``'user'`` ``[U, K, F_u, h]`` DSE per domain, ``'item'``
        ``[I, F_i, h]`` DSE of the item's domain, ``'user_global'``
        ``[U, T_u, h]`` and ``'item_global'`` ``[I, T_i, h]`` GSE, dense
        ``'user_dense'``/``'item_dense'`` when used, and ``'item_domain'``."""
        check_item_domains(self.__class__.__name__, batch, self.num_domains)
        user_raw, item_raw = self._raw(batch)
        item_dom = batch.graph[ITEM].domain
        uf, itf = self.user_fields, self.item_fields
        z: ZDict = {
            USER: self.specific(self.specific_offset[:, uf].unsqueeze(0) + user_raw.unsqueeze(1)),
            ITEM: self.specific(self.specific_offset[item_dom][:, itf] + item_raw),
            ITEM_DOMAIN: item_dom,
        }
        if self.shared is not None:
            fields = self.transfer_fields
            side_u = torch.isin(fields, uf)
            pos_u = torch.searchsorted(uf, fields[side_u])
            pos_i = torch.searchsorted(itf, fields[~side_u])
            z[USER_GLOBAL] = self.shared(self.shared_offset[side_u] + user_raw[:, pos_u])
            z[ITEM_GLOBAL] = self.shared(self.shared_offset[~side_u] + item_raw[:, pos_i])
        g = batch.graph
        for key, nt, width in ((USER_DENSE, USER, self.fields.user_dense), (ITEM_DENSE, ITEM, self.fields.item_dense)):
            if width:
                x = getattr(g[nt], 'x', None)
                if x is None or x.dim() != 2 or x.size(1) != width:
                    got = None if x is None else tuple(x.shape)
                    raise ValueError(f"{self.__class__.__name__}: batch.graph['{nt}'].x must be float[N, {width}], "
                                     f'got {got}')
                z[key] = x.to(self.specific.weight.dtype)
        return z

    # ------------------------------------------------------------------ scoring
    def pair_embeddings(self, z_dict: ZDict, user_index: Tensor, item_index: Tensor,
                        domain: Tensor) -> tuple[Tensor, Tensor | None]:
        r"""DSE ``e [P, F, h]`` (absent fields zero) and mapped GSE
        ``γ̂ [P, T, h]`` (absent fields zero; :obj:`None` without GSE) of
        (user, item) pairs of domains ``domain``."""
        e_user = z_dict[USER][user_index, domain]
        e_item = z_dict[ITEM][item_index]
        e_dom = self.specific(self.specific_offset[domain, -1] + domain).unsqueeze(1)
        present = self.present[domain]
        e = torch.cat([e_user, e_item, e_dom], dim=1) * present.unsqueeze(-1)
        if self.shared is None:
            return e, None
        gamma = torch.cat([z_dict[USER_GLOBAL][user_index], z_dict[ITEM_GLOBAL][item_index]], dim=1)
        mapped = gamma if self.transfer is None else self.transfer(gamma, domain)
        return e, mapped * present[:, self.transfer_fields].unsqueeze(-1)

    def gates(self, e: Tensor, mapped: Tensor, domain: Tensor) -> Tensor:
        r"""Combination gates ``A [P, T]`` (fixed to ``options.gate`` when set)."""
        if self.attention is None:
            return e.new_full((e.size(0), mapped.size(1)), float(self.options.gate))  # type: ignore[arg-type]
        return self.attention(torch.cat([e.flatten(1), mapped.flatten(1)], dim=1), domain)

    def _pairs(self, z_dict: ZDict, user_index: Tensor, item_index: Tensor,
               domain: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        r"""``(logits [P], per-pair alignment ‖sg(e_f) − γ̂_f‖² summed over
        fields [P] or None, domain [P])``."""
        if domain is None:
            domain = z_dict[ITEM_DOMAIN][item_index]
        e, mapped = self.pair_embeddings(z_dict, user_index, item_index, domain)
        align = None
        if mapped is not None:
            fields = self.transfer_fields
            e_t = e[:, fields]
            combined = CombinationAttentionHead.combine(self.gates(e, mapped, domain), e_t, mapped)
            align = (e_t.detach() - mapped).pow(2).sum(dim=(1, 2))
            e = e.index_copy(1, fields, combined)
        parts = [e.flatten(1)]
        if USER_DENSE in z_dict:
            parts.append(z_dict[USER_DENSE][user_index])
        if ITEM_DENSE in z_dict:
            parts.append(z_dict[ITEM_DENSE][item_index])
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return self.towers(x, domain), align, domain

    def score(self, z_dict: ZDict, user_index: Tensor, item_index: Tensor,
              domain: Tensor | None = None) -> Tensor:
        r"""Logits ``[P]`` of (user, item) pairs (local indices); ``domain``
        defaults to the items' ``item.domain``."""
        return self._pairs(z_dict, user_index, item_index, domain)[0]

    def loss(self, batch: CDRBatch, stage: str = 'joint') -> Tensor:
        r"""Per-domain weighted BCE over ``batch.edge_label_index`` plus
        :math:`\lambda_{align}` times the alignment term (class docstring)."""
        self._check_stage(stage)
        if batch.batch_size == 0:
            raise ValueError(f'{self.__class__.__name__}.loss needs a non-empty batch')
        z = self.encode(batch)
        eli = batch.edge_label_index
        logits, align, domain = self._pairs(z, eli[0], eli[1], None)
        label = MultiDomainCTRModel.labels(batch).to(logits.device, logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, label, reduction='none')
        k = self.num_domains
        loss = (scatter(bce, domain, dim=0, dim_size=k, reduce='mean') * self.domain_weight).sum()
        if align is not None and self.align_weight > 0:
            loss = loss + self.align_weight * scatter(align, domain, dim=0, dim_size=k, reduce='mean').sum()
        return loss
