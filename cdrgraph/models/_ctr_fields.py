r"""Per-domain field sets of the heterogeneous-feature CTR models (CDTM, MODELS.md §7.2) and a tower
dropout helper shared by CDTM and DNN.

**Fields.** A sample ``(u, i, k)`` has the fields, in this canonical order:

=====================  =========================================  ==========================
name                   value                                      vocabulary
=====================  =========================================  ==========================
``user_id``            the user node id                           ``num_users``
``user_cat{j}``        column ``j`` of ``user.x_cat``             ``FieldSpec.user_vocab[j]``
``item_id``            the item node id                           ``num_items``
``item_shared_id``     ``item.shared_id`` (only when items        ``num_shared_items``
                       overlap, ``num_shared_items > 0``)
``item_cat{j}``        column ``j`` of ``item.x_cat``             ``FieldSpec.item_vocab[j]``
``domain_id``          the domain ``k`` of the item               ``num_domains``
=====================  =========================================  ==========================

:meth:`DomainFields.from_data` also accepts ``user_<name>`` / ``item_<name>``
for the columns named in ``x_cat_names`` (e.g. ``'user_gender'`` on
MovieLens) and translates them to the canonical names.

**Which fields a domain uses** (feature-dimension heterogeneity) is a
modelling choice the graph does not carry: :class:`DomainFields` lists, per
domain, the fields that exist there (``domain_fields``; default every field in
every domain) and the *transferable* fields that get a global shared
embedding (``transferable``). Absent fields are zero vectors.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import ACTIVE_IN, INTERACTS, ITEM, USER, domain_names, num_domains
from cdrgraph.nn.field_spec import FieldSpec
from cdrgraph.nn.heads.domain_towers import DomainTowers

__all__ = ['DomainFields', 'field_names', 'set_tower_dropout']

USER_ID, ITEM_ID, SHARED_ID, DOMAIN_ID = 'user_id', 'item_id', 'item_shared_id', 'domain_id'
#: fields whose every value belongs to one domain (item ids, domain ids): never transferable
DOMAIN_ONLY = (ITEM_ID, DOMAIN_ID)


def field_names(fields: FieldSpec, num_shared_items: int = 0) -> list[tuple[str, str]]:
    r"""``(name, side)`` of every field in canonical order; ``side`` is
    ``'user'``, ``'item'`` or ``'domain'``."""
    out = [(USER_ID, USER)] + [(f'user_cat{j}', USER) for j in range(len(fields.user_vocab))]
    out.append((ITEM_ID, ITEM))
    if num_shared_items > 0:
        out.append((SHARED_ID, ITEM))
    out += [(f'item_cat{j}', ITEM) for j in range(len(fields.item_vocab))]
    out.append((DOMAIN_ID, 'domain'))
    return out


class Layout(NamedTuple):
    r"""Resolved field layout: ``names``/``sides``/``vocab`` per field (canonical
    order), ``present`` bool ``[K, F]`` and the field indices of the
    transferable fields (ascending)."""

    names: tuple[str, ...]
    sides: tuple[str, ...]
    vocab: tuple[int, ...]
    present: Tensor
    transferable: tuple[int, ...]


@dataclass(frozen=True)
class DomainFields:
    r"""Which fields exist in which domain and which fields are transferable,
    for CDTM (MODELS.md §7.2).

    Args:
        num_shared_items (int, optional): vocabulary of ``item.shared_id``
            (``max + 1``); ``0`` means the graph has no item overlap and there
            is no ``item_shared_id`` field. (default: :obj:`0`)
        transferable (tuple[str, ...], optional): fields with a global shared
            embedding. :obj:`None` picks every field present in at least two
            domains except the domain-only ``item_id`` and ``domain_id``
            (:meth:`from_data` also drops ``user_id`` when no user is active in
            two domains). (default: :obj:`None`)
        domain_fields (tuple[tuple[str, ...], ...], optional): per domain (in
            domain-index order) the fields that exist there; :obj:`None`
            means every field in every domain. (default: :obj:`None`)

    Example:
        >>> DomainFields(transferable=('user_id', 'user_cat0'),
        ...              domain_fields=(('user_id', 'user_cat0', 'item_id', 'domain_id'),
        ...                             ('user_id', 'item_id', 'item_cat0', 'domain_id')))
    """

    num_shared_items: int = 0
    transferable: tuple[str, ...] | None = None
    domain_fields: tuple[tuple[str, ...], ...] | None = None

    def __post_init__(self) -> None:
        if int(self.num_shared_items) < 0:
            raise ValueError(f'DomainFields: num_shared_items must be >= 0, got {self.num_shared_items}')
        object.__setattr__(self, 'num_shared_items', int(self.num_shared_items))
        if self.transferable is not None:
            if isinstance(self.transferable, str):
                raise TypeError('DomainFields: transferable must be a sequence of field names, got a string')
            object.__setattr__(self, 'transferable', tuple(str(f) for f in self.transferable))
        if self.domain_fields is not None:
            if isinstance(self.domain_fields, Mapping):
                raise TypeError('DomainFields: domain_fields must be one sequence of field names per domain '
                                '(domain-index order); DomainFields.from_data accepts a dict keyed by domain')
            object.__setattr__(self, 'domain_fields',
                               tuple(tuple(str(f) for f in fs) for fs in self.domain_fields))

    # ------------------------------------------------------------------ from a graph
    @classmethod
    def from_data(cls, data: HeteroData, transferable: Sequence[str] | None = None,
                  domain_fields: Mapping[str | int, Sequence[str]] | Sequence[Sequence[str]] | None = None,
                  ) -> DomainFields:
        r"""The field sets of ``data``: ``num_shared_items`` from
        ``item.shared_id``; ``domain_fields`` may be a dict keyed by domain
        name or index (domains not listed keep every field); field names may
        use ``x_cat_names`` aliases (``'user_<name>'``, ``'item_<name>'``).
        With ``transferable=None`` the default rule applies, without
        ``user_id`` when no user is active in two domains."""
        shared = getattr(data[ITEM], 'shared_id', None)
        num_shared = int(shared.max()) + 1 if shared is not None and shared.numel() else 0
        alias = _aliases(data)
        k = num_domains(data)
        per_domain: tuple[tuple[str, ...], ...] | None = None
        if domain_fields is not None:
            if isinstance(domain_fields, Mapping):
                names = domain_names(data)
                rows: list[tuple[str, ...] | None] = [None] * k
                for key, fs in domain_fields.items():
                    if isinstance(key, str):
                        if key not in names:
                            raise ValueError(f'DomainFields.from_data: domain_fields names unknown domain {key!r}; '
                                             f'the graph has {names}')
                        idx = names.index(key)
                    else:
                        idx = int(key)
                        if not 0 <= idx < k:
                            raise ValueError(f'DomainFields.from_data: domain_fields index {idx} is outside '
                                             f'[0, {k})')
                    rows[idx] = tuple(alias.get(f, f) for f in fs)
                every = tuple(n for n, _ in field_names(FieldSpec.from_data(data, dense=False), num_shared))
                per_domain = tuple(every if r is None else r for r in rows)
            else:
                per_domain = tuple(tuple(alias.get(f, f) for f in fs) for fs in domain_fields)
        if transferable is not None:
            trans: tuple[str, ...] | None = tuple(alias.get(f, f) for f in transferable)
        else:
            spec = FieldSpec.from_data(data, dense=False)
            layout = cls(num_shared, None, per_domain).resolve(spec, 1, 1, k)
            trans = tuple(layout.names[f] for f in layout.transferable)
            if not _users_overlap(data):
                trans = tuple(f for f in trans if f != USER_ID)
        return cls(num_shared, trans, per_domain)

    # ------------------------------------------------------------------ resolution
    def resolve(self, fields: FieldSpec, num_users: int, num_items: int, num_domains: int,
                owner: str = 'DomainFields') -> Layout:
        r"""The :class:`Layout` for a model with these sizes; raises a
        :class:`ValueError` naming the argument for unknown field names, a
        domain-only field listed as transferable or a wrong number of domains."""
        named = field_names(fields, self.num_shared_items)
        names = tuple(n for n, _ in named)
        sides = tuple(s for _, s in named)
        vocab: list[int] = []
        for n, _ in named:
            if n == USER_ID:
                vocab.append(num_users)
            elif n == ITEM_ID:
                vocab.append(num_items)
            elif n == SHARED_ID:
                vocab.append(self.num_shared_items)
            elif n == DOMAIN_ID:
                vocab.append(num_domains)
            elif n.startswith('user_cat'):
                vocab.append(fields.user_vocab[int(n[8:])])
            else:
                vocab.append(fields.item_vocab[int(n[8:])])
        index = {n: f for f, n in enumerate(names)}
        present = torch.ones(num_domains, len(names), dtype=torch.bool)
        if self.domain_fields is not None:
            if len(self.domain_fields) != num_domains:
                raise ValueError(f'{owner}: domain_fields lists {len(self.domain_fields)} domains but the model '
                                 f'has num_domains={num_domains}; give one field list per domain')
            present.zero_()
            for k, fs in enumerate(self.domain_fields):
                for f in fs:
                    if f not in index:
                        raise ValueError(f'{owner}: domain_fields[{k}] names unknown field {f!r}; the fields are '
                                         f'{list(names)}')
                    present[k, index[f]] = True
        if self.transferable is None:
            multi = present.sum(0) >= 2
            trans = [f for f, n in enumerate(names) if n not in DOMAIN_ONLY and bool(multi[f])]
        else:
            trans = []
            for f in self.transferable:
                if f not in index:
                    raise ValueError(f'{owner}: transferable names unknown field {f!r}; the fields are '
                                     f'{list(names)}')
                if f in DOMAIN_ONLY:
                    raise ValueError(f'{owner}: transferable lists {f!r}, a domain-only field (every value '
                                     'belongs to one domain); share items across domains through '
                                     f"'{SHARED_ID}' (item.shared_id) instead")
                trans.append(index[f])
            trans = sorted(set(trans))
        return Layout(names, sides, tuple(vocab), present, tuple(trans))


def _aliases(data: HeteroData) -> dict[str, str]:
    out: dict[str, str] = {}
    for nt in (USER, ITEM):
        names = getattr(data[nt], 'x_cat_names', None)
        if names is None:
            continue
        if len(names) == 1 and isinstance(names[0], (list, tuple)):
            names = names[0]
        for j, n in enumerate(names):
            out[f'{nt}_{n}'] = f'{nt}_cat{j}'
    return out


def _users_overlap(data: HeteroData) -> bool:
    r"""Whether some user has training edges in two domains."""
    if ACTIVE_IN in data.edge_types:
        users = data[ACTIVE_IN].edge_index[0]
    else:
        ei = data[INTERACTS].edge_index
        k = num_domains(data)
        users = torch.unique(ei[0] * k + data[ITEM].domain[ei[1]]) // k
    return bool(users.numel() and torch.bincount(users).max() >= 2)


def set_tower_dropout(towers: DomainTowers, dropout: float) -> DomainTowers:
    r"""Dropout ``p`` after every hidden layer of each tower of ``towers``
    (PyG :class:`~torch_geometric.nn.MLP`'s per-layer ``dropout``; none on the
    output layer). Returns ``towers``."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f'dropout must lie in [0, 1), got {dropout}')
    for mlp in towers.towers:
        mlp.dropout = [float(dropout)] * (len(mlp.dropout) - 1) + [0.0]
    return towers
