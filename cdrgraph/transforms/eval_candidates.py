r"""Persistable sampled-ranking candidates (negatives) for validation/test rows."""
from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform

from cdrgraph.data.schema import INTERACTS, ITEM, PAD, USER, domain_names, validate
from cdrgraph.transforms._split_utils import check_same_base, make_generator

#: elements per random matrix chunk (rows x draws); bounds memory (~32 MB of int64)
_CHUNK_ELEMENTS = 4_000_000


class EvalCandidates(BaseTransform):
    r"""Draw the fixed negatives of sampled-ranking evaluation (MODELS.md §1.2)
    and store them as ``interacts.edge_label_neg: long[R, N]`` (global item
    ids, padded with ``-1``) on the validation and test graphs.

    For every row :math:`(u, i^+)` of domain :math:`k`, ``num_negatives``
    distinct items are drawn uniformly without replacement from
    :math:`I_k^{train} \setminus (N_k(u) \cup H_k(u) \cup \{i^+\})`:
    :math:`I_k^{train}` the items of :math:`k` with a training edge,
    :math:`N_k(u)` the user's training items and :math:`H_k(u)` the user's
    validation and test positives in :math:`k`. A smaller pool is taken
    whole and the row counted as short (``data.num_short_rows``, per domain
    name). Rows whose positive is a cold item (not in :math:`I_k^{train}`)
    are kept and get candidates too (the Evaluator drops and counts them).

    **Determinism.** Rows are processed per domain in canonical
    :math:`(u, i^+)` order with a generator seeded by a SHA-256 hash of
    ``(dataset_id, split name, domain name, seed)``, so the lists do not
    depend on the process, ``PYTHONHASHSEED``, the model or the row order of
    the graph. Draws are vectorised (rejection sampling of distinct allowed
    items; exact random top-k over the pool for small pools or rows that
    need it).

    **Shipped lists.** Rows with a shipped list (``data.fixed_neg`` carried by
    a split, convention 1) use it as given, whatever ``num_negatives``: a
    positive found in its own list is removed with a warning and counted in
    ``data.num_fixed_neg_cleaned`` (per domain name) unless
    ``compat_keep_positive=True`` **[compat]** (then :func:`validate` cannot
    check the candidate lists and only the graph is validated). A shipped
    list holding a training item of its user, a duplicate, or an item of
    another domain raises a :class:`ValueError`. Rows without a list in a
    graph that has lists are sampled (counted in
    ``data.num_fixed_neg_sampled_rows``, with a warning).

    Called on a ``(train, val, test)`` tuple (``H_k(u)`` from both held-out
    graphs) or on one validation/test graph (``H_k(u)`` from its own rows).

    Args:
        num_negatives (int, optional): :math:`N`. (default: :obj:`999`)
        seed (int, optional): protocol seed. (default: :obj:`0`)
        dataset_id (str, optional): dataset identifier mixed into the seed
            (e.g. ``'amazon-disencdr/sport_cloth'``). (default: :obj:`''`)
        compat_keep_positive (bool, optional): keep a positive found in its
            shipped list (Bi-TGCF behaviour). (default: :obj:`False`)

    Example:
        >>> train, val, test = EvalCandidates(num_negatives=999, dataset_id='sport_cloth')(split)
        >>> test['user', 'interacts', 'item'].edge_label_neg.shape
        torch.Size([16654, 999])
    """

    def __init__(self, num_negatives: int = 999, seed: int = 0, dataset_id: str = '',
                 compat_keep_positive: bool = False) -> None:
        if int(num_negatives) < 1:
            raise ValueError(f'EvalCandidates: num_negatives={num_negatives} must be >= 1')
        self.num_negatives = int(num_negatives)
        self.seed = int(seed)
        self.dataset_id = str(dataset_id)
        self.compat_keep_positive = bool(compat_keep_positive)

    # ------------------------------------------------------------------ API
    def forward(self, data: Any) -> Any:
        if isinstance(data, HeteroData):
            name = getattr(data, 'split_name', None)
            if name not in ('val', 'test'):
                raise ValueError(f"EvalCandidates: a single graph must be a 'val' or 'test' split graph "
                                 f"(data.split_name), got {name!r}; or pass the (train, val, test) tuple")
            return self._fill(data, [data[INTERACTS].edge_label_index])
        if isinstance(data, (tuple, list)) and len(data) == 3 \
                and all(isinstance(d, HeteroData) for d in data):
            train, val, test = data
            check_same_base(data, 'EvalCandidates')
            held = [d[INTERACTS].edge_label_index for d in (val, test)
                    if getattr(d[INTERACTS], 'edge_label_index', None) is not None]
            return copy.copy(train), self._fill(val, held), self._fill(test, held)
        raise TypeError(f'EvalCandidates expects a (train, val, test) tuple or a val/test HeteroData, got '
                        f'{type(data).__name__}')

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_negatives={self.num_negatives}, seed={self.seed}, '
                f'dataset_id={self.dataset_id!r}, compat_keep_positive={self.compat_keep_positive})')

    # ------------------------------------------------------------- internals
    def _fill(self, data: HeteroData, held: list[Tensor]) -> HeteroData:
        name = str(getattr(data, 'split_name', '?'))
        store = data[INTERACTS]
        lab = getattr(store, 'edge_label_index', None)
        if lab is None:
            raise ValueError(f"EvalCandidates: the '{name}' graph has no interacts.edge_label_index; "
                             'apply a split transform first')
        names = domain_names(data)
        dom = data[ITEM].domain
        train_ei = store.edge_index
        held_ei = torch.cat(held, dim=1) if held else lab
        row_dom = dom[lab[1]]
        num_rows = lab.size(1)

        fixed = getattr(data, 'fixed_neg', None)
        has_list = (fixed != PAD).any(1) if fixed is not None else torch.zeros(num_rows, dtype=torch.bool)
        lists: list[tuple[Tensor, Tensor]] = []  # (row indices, long[rows, n] padded)
        cleaned: dict[str, int] = {}
        if has_list.any():
            rows = has_list.nonzero().view(-1)
            lists.append((rows, self._shipped(data, rows, fixed[rows].long(), name, cleaned)))

        short: dict[str, int] = {}
        sampled_rows = 0
        for k, dname in enumerate(names):
            rows = ((row_dom == k) & ~has_list).nonzero().view(-1)
            if fixed is not None:
                sampled_rows += rows.numel()
            if rows.numel() == 0:
                continue
            negs, n_short = self._sample_domain(data, k, dname, name, rows, lab, train_ei, held_ei)
            lists.append((rows, negs))
            short[dname] = n_short
        width = max([n.size(1) for _, n in lists], default=self.num_negatives)
        out_neg = torch.full((num_rows, width), PAD, dtype=torch.long)
        for rows, negs in lists:
            out_neg[rows, :negs.size(1)] = negs

        total_short = sum(short.values())
        if total_short:
            warnings.warn(f"EvalCandidates: {total_short} '{name}' rows have fewer than {self.num_negatives} "
                          f'candidate negatives (pool too small; per domain {short}); they hold the '
                          'whole pool padded with -1 (data.num_short_rows)', stacklevel=4)
        if fixed is not None and sampled_rows:
            warnings.warn(f"EvalCandidates: {sampled_rows} '{name}' rows have no shipped list and "
                          f'were sampled with {self.num_negatives} negatives '
                          '(data.num_fixed_neg_sampled_rows)', stacklevel=4)

        out = copy.copy(data)
        out[INTERACTS].edge_label_neg = out_neg
        out.num_short_rows = short
        out.candidates_rule = repr(self)
        if fixed is not None:
            out.num_fixed_neg_cleaned = cleaned
            out.num_fixed_neg_sampled_rows = int(sampled_rows)
        if self.compat_keep_positive and fixed is not None:
            validate(out, check_eval=False)
        else:
            validate(out)
        return out

    def _shipped(self, data: HeteroData, rows: Tensor, lists: Tensor, name: str,
                 cleaned: dict[str, int]) -> Tensor:
        lab = data[INTERACTS].edge_label_index[:, rows]
        num_items = int(data[ITEM].num_nodes)
        dom = data[ITEM].domain
        names = domain_names(data)
        valid = lists != PAD
        field = f"'{name}' data.fixed_neg"
        bad = valid & ((lists < 0) | (lists >= num_items))
        if bad.any():
            r = int(bad.any(1).nonzero()[0])
            raise ValueError(f'EvalCandidates: {field} has {int(bad.sum())} item ids outside [0, '
                             f'{num_items}) '
                             f'(e.g. row {int(rows[r])}); shipped lists must hold global item node ids')
        safe = lists.clamp(min=0)
        wrong = valid & (dom[safe] != dom[lab[1]].unsqueeze(1))
        if wrong.any():
            r = int(wrong.any(1).nonzero()[0])
            raise ValueError(f'EvalCandidates: {field} has {int(wrong.sum())} negatives from '
                             'another domain than '
                             f'their positive (e.g. row {int(rows[r])}, user {int(lab[0, r])})')
        srt = torch.sort(torch.where(valid, lists, torch.full_like(lists, -2)), dim=1).values
        dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
        if dup.any():
            r = int(dup.any(1).nonzero()[0])
            raise ValueError(f'EvalCandidates: {field} has {int(dup.any(1).sum())} rows with '
                             'duplicate negatives '
                             f'(e.g. row {int(rows[r])}, user {int(lab[0, r])})')
        train_keys = torch.unique(data[INTERACTS].edge_index[0] * num_items + data[INTERACTS].edge_index[1])
        keys = lab[0].unsqueeze(1) * num_items + safe
        hit = valid & torch.isin(keys, train_keys)
        if hit.any():
            r = int(hit.any(1).nonzero()[0])
            raise ValueError(f'EvalCandidates: {field} has {int(hit.sum())} negatives that are '
                             'training items of '
                             f'their user (e.g. row {int(rows[r])}, user {int(lab[0, r])}); the '
                             'shipped lists do '
                             'not match this split')
        is_pos = valid & (lists == lab[1].unsqueeze(1))
        pos_rows = is_pos.any(1)
        for k, dname in enumerate(names):
            in_k = dom[lab[1]] == k
            if in_k.any():
                cleaned[dname] = int((pos_rows & in_k).sum())
        if pos_rows.any():
            what = ('kept (compat_keep_positive=True)' if self.compat_keep_positive
                    else 'removed from its list')
            warnings.warn(f'EvalCandidates: {int(pos_rows.sum())} {field} rows hold their own positive '
                          f'(per domain {cleaned}); the positive is {what} (data.num_fixed_neg_cleaned)',
                          stacklevel=5)
        if self.compat_keep_positive or not pos_rows.any():
            return lists
        lists = lists.masked_fill(is_pos, PAD)
        order = torch.sort((lists == PAD).to(torch.int8), dim=1, stable=True).indices
        lists = torch.gather(lists, 1, order)
        width = int((lists != PAD).sum(1).max())
        return lists[:, :width]

    def _sample_domain(self, data: HeteroData, k: int, dname: str, name: str, rows: Tensor, lab: Tensor,
                       train_ei: Tensor, held_ei: Tensor) -> tuple[Tensor, int]:
        r"""Candidates of the ``rows`` (all of domain ``k``): ``(long[rows, w], #short)``."""
        n_neg = self.num_negatives
        num_items = int(data[ITEM].num_nodes)
        num_users = int(data[USER].num_nodes)
        dom = data[ITEM].domain
        # canonical (u, i+) order
        users, pos = lab[0, rows], lab[1, rows]
        canon = torch.sort(users * num_items + pos, stable=True).indices
        users = users[canon]
        # pool I_k^train and local ids
        tmask = dom[train_ei[1]] == k
        pool = torch.unique(train_ei[1, tmask])
        size = pool.numel()
        if size == 0:
            return torch.full((rows.numel(), 0), PAD, dtype=torch.long), rows.numel()
        result = torch.full((rows.numel(), min(n_neg, size)), PAD, dtype=torch.long)
        loc = torch.full((num_items,), -1, dtype=torch.long)
        loc[pool] = torch.arange(size)
        hmask = (dom[held_ei[1]] == k) & (loc[held_ei[1]] >= 0)
        forb = torch.unique(torch.cat([train_ei[0, tmask] * size + loc[train_ei[1, tmask]],
                                       held_ei[0, hmask] * size + loc[held_ei[1, hmask]]]))
        per_user = torch.bincount(forb // size, minlength=num_users)
        allowed = size - per_user[users]
        is_short = allowed < n_neg

        g = make_generator(self.dataset_id, name, dname, self.seed)
        width = result.size(1)
        use_dense = size <= 4 * n_neg  # rejection needs a pool much larger than N
        draws = n_neg + n_neg // 4 + 32
        if use_dense:
            chunk = max(1, _CHUNK_ELEMENTS // size)
            for start in range(0, users.numel(), chunk):
                sl = slice(start, start + chunk)
                result[sl] = self._dense(users[sl], forb, size, width, g)
        else:
            chunk = max(1, _CHUNK_ELEMENTS // draws)
            for start in range(0, users.numel(), chunk):
                sl = slice(start, start + chunk)
                u, s = users[sl], is_short[sl]
                block = torch.full((u.numel(), width), PAD, dtype=torch.long)
                todo = s.clone()
                rej = (~s).nonzero().view(-1)
                if rej.numel():
                    d = torch.randint(size, (rej.numel(), draws), generator=g)
                    srt, idx = torch.sort(d, dim=1, stable=True)
                    dup_s = torch.zeros_like(d, dtype=torch.bool)
                    dup_s[:, 1:] = srt[:, 1:] == srt[:, :-1]
                    dup = torch.zeros_like(dup_s).scatter_(1, idx, dup_s)
                    q = u[rej].unsqueeze(1) * size + d
                    p = torch.searchsorted(forb, q).clamp(max=forb.numel() - 1)
                    bad = forb[p] == q  # forb holds the domain's training edges: never empty
                    ok = ~dup & ~bad
                    csum = ok.cumsum(1)
                    full = csum[:, -1] >= n_neg
                    take = ok & (csum <= n_neg) & full.unsqueeze(1)
                    block[rej[full]] = d[take].view(-1, n_neg)
                    todo[rej[~full]] = True
                if todo.any():
                    t = todo.nonzero().view(-1)
                    block[t] = self._dense(u[t], forb, size, width, g)
                result[sl] = block
        neg = torch.where(result >= 0, pool[result.clamp(min=0)], torch.full_like(result, PAD))
        out = torch.empty_like(neg)
        out[canon] = neg
        return out, int(is_short.sum())

    @staticmethod
    def _dense(users: Tensor, forb: Tensor, size: int, width: int, g: torch.Generator) -> Tensor:
        r"""Exact uniform draw without replacement: random scores over the whole
        pool, forbidden items masked, top-``width`` (local ids; ``PAD`` when the
        allowed pool is smaller)."""
        scores = torch.rand(users.numel(), size, generator=g)
        start = torch.searchsorted(forb, users * size)
        end = torch.searchsorted(forb, (users + 1) * size)
        lengths = end - start
        if int(lengths.sum()):
            row = torch.repeat_interleave(torch.arange(users.numel()), lengths)
            starts = torch.cumsum(lengths, 0) - lengths
            offs = torch.arange(int(lengths.sum())) - torch.repeat_interleave(starts, lengths)
            col = forb[torch.repeat_interleave(start, lengths) + offs] % size
            scores[row, col] = -1.0
        val, idx = torch.topk(scores, width, dim=1)
        return idx.masked_fill(val < 0, PAD)


__all__ = ['EvalCandidates']
