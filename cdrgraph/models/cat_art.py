r"""CAT-ART (Li et al., WSDM 2023): per-domain MF, a contrastive autoencoder
over all domains ("one for all") and attention-based transfer to every target
domain ("all for one")."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import ITEM, USER, num_domains
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models._objective import domain_mf_loss, require_negatives
from cdrgraph.models.base import CDRModel, ZDict, check_item_domains, check_non_negative, check_sizes
from cdrgraph.nn.heads.attention_transfer_head import KNOWLEDGE, AttentionTransferHead
from cdrgraph.nn.heads.contrastive_autoencoder_head import ContrastiveAutoencoderHead
from cdrgraph.nn.loss import bpr_loss

__all__ = ['CATART', 'CATARTVariant', 'CATARTCompat']

CAT_LOSSES = ('full', 'rec')
#: ablation rows of the paper's table -> variant fields
ABLATIONS: dict[str, dict[str, Any]] = {
    'autoencoder': dict(knowledge='d_in', cat_loss='rec'),
    'contrastive': dict(knowledge='d_in', cat_loss='full'),
    'art': dict(knowledge='both', cat_loss='full'),
    'no_attention': dict(knowledge='both', cat_loss='full', attention=False),
}


@dataclass(frozen=True)
class CATARTVariant:
    r"""Model variant of :class:`CATART`: the ablations of the paper's table
    and the ART training options (MODELS.md §6.3–6.4).

    Args:
        knowledge (str, optional): what ART transfers: ``'both'`` (the
            paper's full model), ``'d_in'`` (the global CAT code only; the
            released script's default) or ``'d_sp'`` (the attended source
            embeddings only). (default: :obj:`'both'`)
        attention (bool, optional): attend over the sources; :obj:`False` is
            the "−Attention" ablation (mean of the adapted sources).
            (default: :obj:`True`)
        cat_loss (str, optional): ``'full'`` (contrastive + both
            reconstructions) or ``'rec'`` (reconstruction only, the
            "+Autoencoder" ablation). (default: :obj:`'full'`)
        fix_user (bool, optional): keep the target user table
            :math:`\mathbf{P}_t` frozen in ``'art'`` (Algorithm 1 of the
            paper); :obj:`False` fine-tunes it. (default: :obj:`True`)
        fix_item (bool, optional): keep the target item table
            :math:`\mathbf{Q}_t` frozen in ``'art'``. (default: :obj:`False`)

    Example:
        >>> CATARTVariant.ablation('contrastive')
        CATARTVariant(knowledge='d_in', attention=True, cat_loss='full', fix_user=True, fix_item=False)
    """

    knowledge: str = 'both'
    attention: bool = True
    cat_loss: str = 'full'
    fix_user: bool = True
    fix_item: bool = False

    def __post_init__(self) -> None:
        if self.knowledge not in KNOWLEDGE:
            raise ValueError(f'CATARTVariant: knowledge must be one of {KNOWLEDGE}, got {self.knowledge!r}')
        if self.cat_loss not in CAT_LOSSES:
            raise ValueError(f'CATARTVariant: cat_loss must be one of {CAT_LOSSES}, got {self.cat_loss!r}')

    @classmethod
    def ablation(cls, name: str, **kwargs: Any) -> CATARTVariant:
        r"""The variant of one row of the paper's ablation table:
        ``'autoencoder'`` (+Autoencoder: ``d_in`` with a reconstruction-only
        CAT), ``'contrastive'`` (+Contrastive: ``d_in`` with the full CAT),
        ``'art'`` (+ART: the full model) or ``'no_attention'`` (−Attention);
        ``kwargs`` set the other fields."""
        if name not in ABLATIONS:
            raise ValueError(f'CATARTVariant.ablation: unknown ablation {name!r}; choose one of '
                             f'{sorted(ABLATIONS)}')
        return cls(**{**ABLATIONS[name], **kwargs})


@dataclass(frozen=True)
class CATARTCompat:
    r"""Reference-code switches of :class:`CATART` (MODELS.md §6.7, all off
    by default).

    Args:
        train_source_users (bool, optional): (§6.7 #1) ART also updates the
            source-domain user embeddings it attends over (the official
            optimiser covers them). Each target's head gets its own copy, as
            in the code's one-run-per-target; the CAT input keeps the
            pre-trained tables. (default: :obj:`False`)
        attention_dropout (float, optional): dropout on ART's attention
            weights (the official attention module uses ``0.1``).
            (default: :obj:`0.0`)

    The other quirks of §6.7 need no model switch: the released
    ``knowledge='d_in'`` default and ``fix_user=False`` are
    :class:`CATARTVariant` fields, early stopping on validation losses is a
    trainer setting, and #2–#5, #9 are fixed by construction.

    Example:
        >>> CATART.from_data(train, compat=CATARTCompat.reference())
    """

    train_source_users: bool = False
    attention_dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(f'CATARTCompat: attention_dropout must lie in [0, 1), got {self.attention_dropout}')

    @classmethod
    def reference(cls) -> CATARTCompat:
        r"""Every switch on: the official implementation's behaviour."""
        return cls(train_source_users=True, attention_dropout=0.1)


class CATART(CDRModel):
    r"""CAT-ART from `"One for All, All for One: Learning and Transferring
    User Embeddings for Cross-Domain Recommendation"
    <https://github.com/Chain123/CAT-ART>`_ (Li et al., WSDM 2023) (MODELS.md
    §6): multi-target CDR where every one of the :math:`K` domains (shared
    users) is a target.

    Stages (:attr:`stages`, run in order by :func:`~cdrgraph.train.fit`):

    * ``'pretrain'`` — per-domain BPR-MF :math:`\hat y_k(u, i) =
      \mathbf{P}_k[u] \cdot \mathbf{Q}[i]`: :math:`\sum_k` of the BPR mean
      over the batch rows of domain :math:`k` plus
      :math:`\lambda\,\tfrac12(\|\mathbf{u}\|^2 + \|\mathbf{i}^+\|^2 +
      \|\mathbf{i}^-\|^2)/B_k` on those rows; trains every
      :math:`\mathbf{P}_k` and :math:`\mathbf{Q}`.
    * ``'cat'`` — the contrastive autoencoder
      (:class:`~cdrgraph.nn.heads.contrastive_autoencoder_head.ContrastiveAutoencoderHead`)
      on :math:`\mathbf{E}_u = [\mathbf{P}_1[u]; \dots; \mathbf{P}_K[u]]` of
      the batch's distinct users, one randomly masked domain per user;
      trains :math:`f, g, \boldsymbol\pi` (the tables are frozen).
    * ``'art'`` — for every target :math:`t`, an
      :class:`~cdrgraph.nn.heads.attention_transfer_head.AttentionTransferHead`
      builds :math:`\mathbf{z}_t(u)` from :math:`\mathbf{P}_t[u]`, the
      attended :math:`\mathbf{P}_{k \ne t}[u]` and the frozen global code
      :math:`\mathbf{c}_u = f(\mathbf{E}_u)`; :math:`\sum_t` of the BPR mean
      over the batch rows of domain :math:`t` (no L2) trains the heads and
      :math:`\mathbf{Q}` (unless ``fix_item``). The CAT module and **every**
      user table stay frozen (Algorithm 1; MODELS.md §6.7 #1 fixed).
      The :math:`K` heads share no parameter, so training them in one stage
      on mixed batches equals :math:`K` parallel runs.

    Scores: :math:`\hat y_t(u, i) = \mathbf{z}_t(u) \cdot \mathbf{Q}[i]` for
    an item :math:`i` of domain :math:`t`; :meth:`encode` returns
    :math:`\mathbf{z}` as ``[U, K, h]``. Heads start with
    :math:`\mathbf{z}_t(u) = \mathbf{P}_t[u]` (zero-initialised last maps,
    [ours]), so during ``'pretrain'`` the model scores as the per-domain MF
    and that stage can be validated on ranking metrics; ``'cat'`` does not
    change any score, so it is not monitored (:attr:`monitored_stages`).

    A user without a training edge in domain :math:`k` (read from the
    training graph by :meth:`attach`) gets the pad vector
    :math:`\boldsymbol\pi` as its domain-:math:`k` embedding in every stage
    (MODELS.md §6.2 [ours]); with ``require_all_domains=True`` data no user
    is affected. ``fix_user=False`` fine-tunes the target user rows through
    a zero-initialised offset table (Adam gives the very updates of training
    :math:`\mathbf{P}_t` itself), so the CAT input and the source inputs of
    the other heads keep the pre-trained tables (MODELS.md §6.4).

    Per-domain item tables :math:`\mathbf{Q}_k` are the domain's rows of one
    table over all item nodes (items of a domain are contiguous); the user
    tables are one ``[K·U, h]`` table (row ``k·U + u``). Factors are drawn
    from :math:`\mathcal{N}(0, 0.1^2)`.

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes (all domains).
        num_domains (int, optional): number of domains ``K >= 2``.
            (default: :obj:`2`)
        embedding_dim (int, optional): size ``h``. (default: :obj:`64`)
        weight_decay (float, optional): ``λ`` of the pre-training L2 term.
            (default: :obj:`1e-4`)
        temperature (float, optional): ``τ_c`` of the contrastive loss.
            (default: :obj:`0.1`)
        loss_weights (Sequence[float], optional): weights of the
            contrastive, reconstruction and masked-reconstruction losses.
            (default: :obj:`(0.2, 0.4, 0.4)`)
        hidden_multipliers (Sequence[int], optional): hidden widths of the
            CAT encoder as multiples of ``h``. (default: :obj:`(5, 3)`)
        variant (CATARTVariant, optional): ablation and ART options.
            (default: :obj:`CATARTVariant()`, the paper's full model)
        compat (CATARTCompat, optional): reference-code switches.
            (default: :obj:`CATARTCompat()`)

    Example:
        >>> train, val, test = RatioSplit(0.8, 0.1, 0.1)(data)
        >>> model = CATART.from_data(train, embedding_dim=64)
        >>> fit(model, train, val, evaluator=Evaluator('full', ks=(10, 20)), batch_size=2048,
        ...     stage_epochs={'pretrain': 200, 'cat': 50, 'art': 200}, patience=3)
    """

    stages = ('pretrain', 'cat', 'art')
    monitored_stages: ClassVar[tuple[str, ...] | None] = ('pretrain', 'art')
    #: the transfer heads start as SMF (zero-initialised outputs): that state is validated too and kept
    #: when no ART epoch beats it, so a head that only hurts validation is never selected
    initial_eval: ClassVar[bool] = True
    #: std of the normal initialisation of the factor tables
    init_std: float = 0.1

    def __init__(self, num_users: int, num_items: int, num_domains: int = 2, embedding_dim: int = 64,
                 weight_decay: float = 1e-4, temperature: float = 0.1,
                 loss_weights: Sequence[float] = (0.2, 0.4, 0.4), hidden_multipliers: Sequence[int] = (5, 3),
                 variant: CATARTVariant = CATARTVariant(),  # noqa: B008 (frozen dataclass)
                 compat: CATARTCompat = CATARTCompat()) -> None:  # noqa: B008 (frozen dataclass)
        super().__init__()
        name = self.__class__.__name__
        check_sizes(name, num_users=num_users, num_items=num_items, num_domains=num_domains,
                    embedding_dim=embedding_dim)
        if num_domains < 2:
            raise ValueError(f'{name}: needs num_domains >= 2 (every domain is a target fed by the others), '
                             f'got {num_domains}')
        check_non_negative(name, 'weight_decay', weight_decay)
        if not isinstance(variant, CATARTVariant):
            raise TypeError(f'{name}: variant must be a CATARTVariant, got {type(variant).__name__}')
        if not isinstance(compat, CATARTCompat):
            raise TypeError(f'{name}: compat must be a CATARTCompat, got {type(compat).__name__}')
        self.num_users = num_users
        self.num_items = num_items
        self.num_domains = num_domains
        self.embedding_dim = embedding_dim
        self.weight_decay = weight_decay
        self.variant = variant
        self.compat = compat
        k, h = num_domains, embedding_dim
        self.user_emb = torch.nn.Embedding(k * num_users, h)   # P_k: row k*U + u
        self.item_emb = torch.nn.Embedding(num_items, h)       # Q_k: the rows of domain k
        self.cat = ContrastiveAutoencoderHead(k, h, hidden_multipliers, temperature, loss_weights)
        self.art = torch.nn.ModuleList([
            AttentionTransferHead(h, k - 1, variant.knowledge, variant.attention, compat.attention_dropout)
            for _ in range(k)])
        # ART fine-tuning offsets (zero-initialised): target rows (fix_user=False), per-head source rows (compat)
        self.target_delta = None if variant.fix_user else torch.nn.Embedding(k * num_users, h)
        self.source_delta = torch.nn.Embedding(k * k * num_users, h) if compat.train_source_users else None
        self.missing: Tensor | None
        self.register_buffer('missing', None)
        self._repr_args: dict[str, Any] = dict(num_users=num_users, num_items=num_items, num_domains=num_domains,
                                               embedding_dim=embedding_dim)
        if variant != CATARTVariant():
            self._repr_args['variant'] = variant
        if compat != CATARTCompat():
            self._repr_args['compat'] = compat
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.user_emb.weight, std=self.init_std)
        torch.nn.init.normal_(self.item_emb.weight, std=self.init_std)
        self.cat.reset_parameters()
        for head in self.art:
            head.reset_parameters()  # type: ignore[operator]
        for delta in (self.target_delta, self.source_delta):
            if delta is not None:
                torch.nn.init.zeros_(delta.weight)

    # ---------------------------------------------------------------- graph state
    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> CATART:
        r"""Build the model with node and domain counts read from ``data`` and
        :meth:`attach` it (which users miss which domains)."""
        model = cls(num_users=int(data[USER].num_nodes), num_items=int(data[ITEM].num_nodes),
                    num_domains=num_domains(data), **kwargs)
        return model.attach(data)

    def attach(self, data: HeteroData) -> CATART:
        r"""Read from the training graph ``data`` which users have no
        training edge in which domain (they get :math:`\boldsymbol\pi`
        there). Without it every user counts as active in every domain.
        Returns ``self``."""
        from cdrgraph.loader.views import is_cold

        name = self.__class__.__name__
        if int(data[USER].num_nodes) != self.num_users or num_domains(data) != self.num_domains:
            raise ValueError(f'{name}.attach: the graph has {int(data[USER].num_nodes)} users and '
                             f'{num_domains(data)} domains, the model {self.num_users} and {self.num_domains}; '
                             f'build it with {name}.from_data(train)')
        users = torch.arange(self.num_users)
        missing = torch.stack([is_cold(data, users, k) for k in range(self.num_domains)], dim=1)
        self.missing = missing.to(self.item_emb.weight.device)
        return self

    # ------------------------------------------------------------------ parts
    def _table_rows(self, users: Tensor) -> Tensor:
        r"""``[n, K, h]`` rows :math:`\mathbf{P}_k[u]` of the global ``users``."""
        return self.user_emb(users.unsqueeze(1) + self.num_users * torch.arange(self.num_domains,
                                                                                 device=users.device))

    def user_vectors(self, users: Tensor) -> Tensor:
        r"""``[n, K, h]`` per-domain embeddings :math:`\mathbf{E}_u` of the
        global ``users`` (``long[n]``), with :math:`\boldsymbol\pi` in the
        slots of domains the user has no training edge in."""
        return self.cat.fill(self._table_rows(users), None if self.missing is None else self.missing[users])

    def global_code(self, users: Tensor) -> Tensor:
        r"""Frozen global code :math:`\mathbf{c}_u = f(\mathbf{E}_u)` ``[n, h]``."""
        with torch.no_grad():
            return self.cat.encode(self.user_vectors(users))

    def transfer_inputs(self, users: Tensor, target: int, frozen: Tensor | None = None,
                        code: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        r"""``(target [n, h], sources [n, K-1, h], code [n, h] or None)``:
        the inputs of the ART head of domain ``target`` for the global
        ``users``. ``frozen`` and ``code`` may pass a precomputed
        :math:`\mathbf{E}_u` and :math:`\mathbf{c}_u`."""
        use_global = self.art[target].use_global
        with torch.no_grad():
            e = self.user_vectors(users) if frozen is None else frozen
            if use_global and code is None:
                code = self.cat.encode(e)
        code = code if use_global else None
        others = [k for k in range(self.num_domains) if k != target]
        tgt, src = e[:, target], e[:, others]
        if self.target_delta is not None:
            tgt = tgt + self.target_delta(users + target * self.num_users)
        if self.source_delta is not None:
            rows = (target * self.num_domains + torch.tensor(others, device=users.device)) * self.num_users
            src = src + self.source_delta(users.unsqueeze(1) + rows)
        return tgt, src, code

    def transfer(self, users: Tensor, target: int, frozen: Tensor | None = None,
                 code: Tensor | None = None) -> Tensor:
        r""":math:`\mathbf{z}_t(u)` ``[n, h]`` of the global ``users`` for
        the target domain ``target`` (see :meth:`transfer_inputs`)."""
        tgt, src, code = self.transfer_inputs(users, target, frozen, code)
        return self.art[target](tgt, src, code)

    # ------------------------------------------------------------------ contract
    def encode(self, batch: CDRBatch) -> ZDict:
        r"""``{'user': [U, K, h], 'item': [I, h]}`` with
        :math:`\mathbf{z}_t(u)` in slot ``t``."""
        uid, iid = self._ids(batch)
        check_item_domains(self.__class__.__name__, batch, self.num_domains)
        with torch.no_grad():
            e = self.user_vectors(uid)
            code = self.cat.encode(e) if self.variant.knowledge != 'd_sp' else None
        z = torch.stack([self.transfer(uid, t, e, code) for t in range(self.num_domains)], dim=1)
        return {USER: z, ITEM: self.item_emb(iid)}

    def loss(self, batch: CDRBatch, stage: str = 'pretrain') -> Tensor:
        r"""``'pretrain'``: per-domain BPR + L2; ``'cat'``:
        :math:`\mathcal{L}_{CAT}` of the batch's distinct users; ``'art'``:
        per-target BPR with :math:`\mathbf{z}_t` (see the class docstring)."""
        self._check_stage(stage)
        name = self.__class__.__name__
        uid, iid = self._ids(batch)
        check_item_domains(name, batch, self.num_domains)
        if stage == 'cat':
            users = torch.unique(uid[batch.user])
            x = self.cat.fill(self._table_rows(users).detach(),    # tables frozen, pi trained
                              None if self.missing is None else self.missing[users])
            return self.cat.loss(x, reconstruction_only=self.variant.cat_loss == 'rec')
        require_negatives(name, batch)
        dom = batch.domain
        total: Tensor | None = None
        for k in torch.unique(dom).tolist():
            keep = dom == k
            if stage == 'pretrain':
                def table(ids: Tensor, k: int = k) -> Tensor:
                    return self.user_emb(ids + k * self.num_users)

                lk = domain_mf_loss(name, 'bpr', batch, keep, table, self.item_emb, uid, iid, self.weight_decay)
            else:
                z = self.transfer(uid[batch.user[keep]], k)
                pos, neg = iid[batch.pos_item[keep]], iid[batch.neg_item[keep]]
                if self.variant.fix_item:
                    with torch.no_grad():
                        qp, qn = self.item_emb(pos), self.item_emb(neg)
                else:
                    qp, qn = self.item_emb(pos), self.item_emb(neg)
                lk = bpr_loss((z * qp).sum(-1), (z.unsqueeze(1) * qn).sum(-1))
            total = lk if total is None else total + lk
        assert total is not None  # require_negatives: the batch is not empty
        return total

    def stage_parameters(self, stage: str) -> Iterator[Parameter]:
        r"""``'pretrain'``: the user and item tables; ``'cat'``: the CAT
        encoder, decoder and pad vector (nothing for ``knowledge='d_sp'``,
        which does not use it); ``'art'``: the ART heads, the item table
        (unless ``fix_item``) and the fine-tuning offsets (``fix_user=False``,
        ``train_source_users``)."""
        self._check_stage(stage)
        if stage == 'pretrain':
            return iter([self.user_emb.weight, self.item_emb.weight])
        if stage == 'cat':
            return iter([] if self.variant.knowledge == 'd_sp' else list(self.cat.parameters()))
        params = list(self.art.parameters())
        if not self.variant.fix_item:
            params.append(self.item_emb.weight)
        for delta in (self.target_delta, self.source_delta):
            if delta is not None:
                params.append(delta.weight)
        return iter(params)
