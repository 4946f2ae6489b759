r"""Keep a subset of the domains of a graph (or of a split)."""
from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform

from cdrgraph.data.build import add_derived_edges
from cdrgraph.data.schema import DOMAIN, EDGE_ATTRS, INTERACTS, ITEM, PAD, domain_names, validate
from cdrgraph.transforms._split_utils import resolve_domain

_ROW_KEYS = ('edge_label', 'edge_label_time', 'edge_label_neg')


class SelectDomains(BaseTransform):
    r"""Keep only the items (and their interactions) of the given domains,
    e.g. to run a single-domain baseline or one domain pair of a
    multi-domain dataset.

    Domains are re-indexed ``0 .. len(domains) - 1`` in the order given, item
    nodes are re-numbered domain by domain (each domain stays one contiguous
    range, original order inside) and ``item.orig_id: long`` holds the item
    ids of the input graph (composed when selections are chained). **All user
    nodes are kept with unchanged ids** (a user without interactions in the
    kept domains simply has none). Item attributes (``shared_id``, ``x``,
    ...), domain attributes, interactions and their attributes, supervision
    rows (``edge_label_index``/``edge_label``/``edge_label_time``/
    ``edge_label_neg``), shipped lists (``fixed_neg``) and ``domain_names``
    are restricted and re-mapped; ``source_domain``/``target_domain`` are
    re-mapped. The numbers of removed interactions and supervision rows are
    stored as ``data.num_dropped_domain_edges`` / ``num_dropped_domain_rows``.

    Works on one graph and on a ``(train, val, test)`` tuple (each graph).

    Args:
        domains (list[int or str]): domains to keep, by index or name.

    Example:
        >>> sport = SelectDomains(['Sport'])(data)
        >>> sport['item'].orig_id  # item ids in the input graph
    """

    def __init__(self, domains: Sequence[int | str] | int | str) -> None:
        if isinstance(domains, (int, str)):
            domains = [domains]
        self.domains = list(domains)
        if not self.domains:
            raise ValueError('SelectDomains: domains is empty; name at least one domain to keep')

    def forward(self, data: Any) -> Any:
        if isinstance(data, HeteroData):
            return self._select(data)
        if isinstance(data, (tuple, list)) and all(isinstance(d, HeteroData) for d in data):
            return tuple(self._select(d) for d in data)
        raise TypeError(f'SelectDomains expects a HeteroData or a (train, val, test) tuple, got '
                        f'{type(data).__name__}')

    def _select(self, data: HeteroData) -> HeteroData:
        names = domain_names(data)
        keep = [resolve_domain(data, d, 'SelectDomains domain') for d in self.domains]
        if len(set(keep)) != len(keep):
            raise ValueError(f'SelectDomains: domains {self.domains} name a domain twice')
        num_domains = len(names)
        num_items = int(data[ITEM].num_nodes)
        keep_t = torch.tensor(keep, dtype=torch.long)
        dom_map = torch.full((num_domains,), -1, dtype=torch.long)
        dom_map[keep_t] = torch.arange(len(keep))

        old_dom = data[ITEM].domain
        new_dom = dom_map[old_dom]
        kept = (new_dom >= 0).nonzero().view(-1)
        kept = kept[torch.sort(new_dom[kept], stable=True).indices]  # domain by domain, old order inside
        item_map = torch.full((num_items,), -1, dtype=torch.long)
        item_map[kept] = torch.arange(kept.numel())

        out = copy.copy(data)
        # items
        istore = out[ITEM]
        orig = getattr(istore, 'orig_id', None)
        for key in list(istore.keys()):
            val = istore[key]
            if isinstance(val, Tensor) and val.dim() >= 1 and val.size(0) == num_items:
                istore[key] = val[kept]
        istore.domain = new_dom[kept]
        istore.orig_id = orig[kept] if orig is not None else kept.clone()
        istore.num_nodes = int(kept.numel())
        # domains
        dstore = out[DOMAIN]
        for key in list(dstore.keys()):
            val = dstore[key]
            if isinstance(val, Tensor) and val.dim() >= 1 and val.size(0) == num_domains:
                dstore[key] = val[keep_t]
        dstore.num_nodes = len(keep)
        out.domain_names = [names[k] for k in keep]
        # interactions
        store = out[INTERACTS]
        ei = store.edge_index
        num_edges = ei.size(1)
        emask = item_map[ei[1]] >= 0
        eidx = emask.nonzero().view(-1)
        store.edge_index = torch.stack([ei[0, eidx], item_map[ei[1, eidx]]])
        for key in EDGE_ATTRS:
            if getattr(store, key, None) is not None:
                store[key] = store[key][eidx]
        dropped_rows = 0
        if getattr(store, 'edge_label_index', None) is not None:
            lab = store.edge_label_index
            rmask = item_map[lab[1]] >= 0
            ridx = rmask.nonzero().view(-1)
            dropped_rows = int(lab.size(1) - ridx.numel())
            for key in _ROW_KEYS:
                if getattr(store, key, None) is not None:
                    store[key] = store[key][ridx]
            store.edge_label_index = torch.stack([lab[0, ridx], item_map[lab[1, ridx]]])
            if getattr(store, 'edge_label_neg', None) is not None:
                store.edge_label_neg = _remap_lists(store.edge_label_neg, item_map)
            fixed = getattr(out, 'fixed_neg', None)
            if fixed is not None and getattr(out, 'fixed_neg_edge', None) is None:
                out.fixed_neg = _remap_lists(fixed[ridx], item_map)
        if getattr(out, 'fixed_neg_edge', None) is not None:
            edge_map = torch.full((num_edges,), -1, dtype=torch.long)
            edge_map[eidx] = torch.arange(eidx.numel())
            new_edge = edge_map[out.fixed_neg_edge]
            ok = new_edge >= 0
            out.fixed_neg_edge = new_edge[ok]
            out.fixed_neg = _remap_lists(out.fixed_neg[ok], item_map)
        for key in ('source_domain', 'target_domain'):
            val = getattr(out, key, None)
            if val is not None:
                if int(dom_map[int(val)]) < 0:
                    warnings.warn(f'SelectDomains: {key}={names[int(val)]!r} is not kept; '
                                  f'data.{key} is removed',
                                  stacklevel=4)
                    del out._global_store[key]
                else:
                    setattr(out, key, int(dom_map[int(val)]))
        for key in ('num_short_rows', 'num_fixed_neg_cleaned', 'num_fixed_neg_sampled_rows'):
            val = getattr(out, key, None)
            if isinstance(val, dict):
                setattr(out, key, {k: v for k, v in val.items() if k in out.domain_names})
        out.num_dropped_domain_edges = int(num_edges - eidx.numel())
        out.num_dropped_domain_rows = dropped_rows
        add_derived_edges(out)
        # lists kept by EvalCandidates(compat_keep_positive=True) hold their positive: validate() rejects them
        validate(out, check_eval='compat_keep_positive=True' not in str(getattr(out, 'candidates_rule', '')))
        return out

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(domains={self.domains!r})'


def _remap_lists(lists: Tensor, item_map: Tensor) -> Tensor:
    r"""Map item ids of padded lists; ids of dropped items become ``PAD`` and
    rows are re-compacted to the left."""
    valid = lists != PAD
    mapped = torch.where(valid, item_map[lists.clamp(min=0)], torch.full_like(lists, PAD))
    ok = mapped != PAD
    if bool((ok == valid).all()):
        return mapped
    order = torch.sort((~ok).to(torch.int8), dim=1, stable=True).indices
    return torch.gather(mapped, 1, order)


__all__ = ['SelectDomains']
