r"""Ranking metrics for sampled and full ranking (MODELS.md §1.2, §1.3).

Two families share this module:

* **sampled ranking** — one positive against ``N`` candidates per row:
  :func:`ranks_from_scores` turns scores into 0-based ranks (pessimistic ties
  by default), then :func:`hit_at_k`, :func:`ndcg_at_k` and
  :func:`reciprocal_rank` give per-row values;
* **full ranking** — a top-K list per user over all candidate items:
  :func:`topk_items` (ties broken by lower item index), :func:`topk_hits`
  (hit matrix, reusing PyG's :class:`~torch_geometric.metrics.link_pred.LinkPredMetricData`),
  then :func:`full_hit_at_k`, :func:`full_ndcg_at_k` (IDCG truncated at ``K``
  like PyG's ``LinkPredNDCG``; ``idcg='untruncated'`` is the UniCDR
  **[compat]**), :func:`full_mrr_at_k`, :func:`recall_at_k` and
  :func:`precision_at_k`.

Per-row functions return ``float`` tensors; :class:`RankingMetrics`
accumulates rows over chunks and averages them.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.metrics.link_pred import LinkPredMetricData

__all__ = [
    'RankingMetrics',
    'ranks_from_scores',
    'hit_at_k',
    'ndcg_at_k',
    'reciprocal_rank',
    'topk_items',
    'topk_hits',
    'full_hit_at_k',
    'full_ndcg_at_k',
    'full_mrr_at_k',
    'recall_at_k',
    'precision_at_k',
]

TIES = ('pessimistic', 'average', 'optimistic')
IDCG = ('truncated', 'untruncated')


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f'k must be a positive integer, got {k!r}')


# --------------------------------------------------------------------------- sampled ranking
def ranks_from_scores(pos: Tensor, neg: Tensor, mask: Tensor | None = None,
                      ties: str = 'pessimistic') -> Tensor:
    r"""0-based rank of each positive among its row's candidates (MODELS.md §1.2).

    ``rank = #{j : s⁻_j > s⁺} + t·#{j : s⁻_j = s⁺}`` with ``t = 1``
    (``'pessimistic'``, a constant model ranks last), ``t = ½``
    (``'average'``) or ``t = 0`` (``'optimistic'``).

    Args:
        pos (Tensor): ``float[R]`` score of each row's positive.
        neg (Tensor): ``float[R, N]`` scores of the candidates.
        mask (Tensor, optional): ``bool[R, N]``; :obj:`False` marks padded
            candidates that do not count. (default: :obj:`None`)
        ties (str, optional): ``'pessimistic'``, ``'average'`` or
            ``'optimistic'``. (default: :obj:`'pessimistic'`)

    Returns:
        ``float[R]`` ranks (half-integers only under ``ties='average'``).

    Example:
        >>> ranks_from_scores(torch.tensor([0.5]), torch.tensor([[0.9, 0.5, 0.1]]))
        tensor([2.])
    """
    _check_choice('ties', ties, TIES)
    if pos.dim() != 1 or neg.dim() != 2 or neg.size(0) != pos.size(0):
        raise ValueError(f'ranks_from_scores: expected pos float[R] and neg float[R, N], got shapes '
                         f'{tuple(pos.shape)} and {tuple(neg.shape)}')
    p = pos.unsqueeze(1)
    greater = neg > p
    equal = neg == p
    if mask is not None:
        if mask.shape != neg.shape:
            raise ValueError(f'ranks_from_scores: mask shape {tuple(mask.shape)} differs from neg '
                             f'{tuple(neg.shape)}')
        greater = greater & mask
        equal = equal & mask
    rank = greater.sum(1).to(torch.float)
    if ties == 'pessimistic':
        rank = rank + equal.sum(1)
    elif ties == 'average':
        rank = rank + 0.5 * equal.sum(1)
    return rank


def hit_at_k(rank: Tensor, k: int) -> Tensor:
    r"""Per-row ``HR@K = 1[rank < K]`` of 0-based ranks (sampled ranking).

    With one positive per row, Recall@K equals HR@K and Precision@K is
    ``HR@K / K``.
    """
    _check_k(k)
    return (rank < k).to(torch.float)


def ndcg_at_k(rank: Tensor, k: int) -> Tensor:
    r"""Per-row ``NDCG@K = 1[rank < K] / log2(rank + 2)`` of 0-based ranks (sampled ranking)."""
    _check_k(k)
    rank = rank.to(torch.float)
    return torch.where(rank < k, 1.0 / torch.log2(rank + 2.0), torch.zeros_like(rank))


def reciprocal_rank(rank: Tensor, k: int | None = None) -> Tensor:
    r"""Per-row ``MRR = 1 / (rank + 1)``; untruncated unless ``k`` is given (then 0 for ``rank ≥ K``)."""
    rank = rank.to(torch.float)
    rr = 1.0 / (rank + 1.0)
    if k is not None:
        _check_k(k)
        rr = torch.where(rank < k, rr, torch.zeros_like(rr))
    return rr


# --------------------------------------------------------------------------- full ranking
def topk_items(scores: Tensor, k: int, item_index: Tensor | None = None) -> Tensor:
    r"""Top-``k`` candidates of every row, ties broken by the lower column (MODELS.md §1.3).

    Entries scored ``-inf`` (excluded items) never enter a list; rows with
    fewer than ``k`` finite candidates are padded with ``-1``.

    Args:
        scores (Tensor): ``float[U, I]`` scores of ``I`` candidates.
        k (int): list length.
        item_index (Tensor, optional): ``long[I]`` ascending item id of each
            column; the result then holds item ids instead of columns.
            (default: :obj:`None`)

    Returns:
        ``long[U, k]`` columns (or item ids), best first, ``-1`` padded.

    Example:
        >>> topk_items(torch.tensor([[0.1, 0.9, 0.9, -float('inf')]]), k=4)
        tensor([[ 1,  2,  0, -1]])
    """
    _check_k(k)
    if scores.dim() != 2:
        raise ValueError(f'topk_items: expected scores float[U, I], got shape {tuple(scores.shape)}')
    num_rows, num_cols = scores.shape
    out = torch.full((num_rows, k), -1, dtype=torch.long, device=scores.device)
    k_eff = min(k, num_cols)
    if num_rows == 0 or k_eff == 0:
        return out
    # one extra entry tells whether the k-th value is shared by an item outside the list
    vals, idx = scores.topk(min(k_eff + 1, num_cols), dim=1)
    thr = vals[:, k_eff - 1:k_eff]
    if vals.size(1) > k_eff:
        ambiguous = vals[:, k_eff] == vals[:, k_eff - 1]
        vals, idx = vals[:, :k_eff], idx[:, :k_eff]
    else:
        ambiguous = torch.zeros(num_rows, dtype=torch.bool, device=scores.device)
    if bool(ambiguous.any()):  # pick the lowest columns among the tied values
        rows = ambiguous.nonzero().view(-1)
        sub = scores[rows]
        t = thr[rows]
        gt = sub > t
        tie = sub == t
        need = k_eff - gt.sum(1, keepdim=True)
        sel = gt | (tie & (tie.cumsum(1, dtype=torch.int32) <= need))
        del sub, gt, tie
        idx[rows] = sel.nonzero()[:, 1].view(-1, k_eff)
        del sel
    # deterministic order inside the list: score descending, column ascending
    idx = idx.sort(dim=1).values
    vals = scores.gather(1, idx)
    order = vals.sort(dim=1, descending=True, stable=True).indices
    idx = idx.gather(1, order)
    vals = vals.gather(1, order)
    if item_index is not None:
        idx = item_index.to(idx.device)[idx]
    idx = idx.masked_fill(vals == float('-inf'), -1)
    out[:, :k_eff] = idx
    return out


def topk_hits(topk: Tensor, target_index: Tensor) -> Tensor:
    r"""Hit matrix ``bool[U, K]``: is the ``r``-th recommended item of row ``u`` a target?

    Args:
        topk (Tensor): ``long[U, K]`` recommended items, ``-1`` padded.
        target_index (Tensor): ``long[2, T]`` pairs ``(row in [0, U), item)``
            of held-out targets.
    """
    if topk.numel() == 0:
        return torch.zeros(topk.shape, dtype=torch.bool, device=topk.device)
    sentinel = int(max(int(topk.max()), int(target_index[1].max()) if target_index.numel() else 0)) + 1
    pred = topk.masked_fill(topk < 0, sentinel)
    data = LinkPredMetricData(pred_index_mat=pred, edge_label_index=(target_index[0], target_index[1]))
    return data.pred_rel_mat.to(torch.bool)


def _discounts(n: int, device: torch.device | None = None) -> Tensor:
    return 1.0 / torch.log2(torch.arange(n, device=device, dtype=torch.float) + 2.0)


def _check_hits(hits: Tensor, k: int) -> Tensor:
    _check_k(k)
    if hits.dim() != 2 or hits.size(1) < k:
        raise ValueError(f'expected a hit matrix bool[U, >= {k}], got shape {tuple(hits.shape)}')
    return hits[:, :k].to(torch.float)


def full_hit_at_k(hits: Tensor, k: int) -> Tensor:
    r"""Per-user ``HR@K = 1[Σ_r h_r > 0]`` of a hit matrix ``bool[U, ≥K]``."""
    return (_check_hits(hits, k).sum(1) > 0).to(torch.float)


def precision_at_k(hits: Tensor, k: int) -> Tensor:
    r"""Per-user ``Precision@K = Σ_{r<K} h_r / K``."""
    return _check_hits(hits, k).sum(1) / k


def recall_at_k(hits: Tensor, num_targets: Tensor, k: int) -> Tensor:
    r"""Per-user ``Recall@K = Σ_{r<K} h_r / |T(u)|`` (0 for users without targets)."""
    h = _check_hits(hits, k).sum(1)
    n = num_targets.to(h.device, torch.float)
    return torch.where(n > 0, h / n.clamp(min=1), torch.zeros_like(h))


def full_ndcg_at_k(hits: Tensor, num_targets: Tensor, k: int, idcg: str = 'truncated') -> Tensor:
    r"""Per-user ``NDCG@K`` of a hit matrix (MODELS.md §1.3).

    ``DCG = Σ_{r<K} h_r / log2(r + 2)``; the ideal DCG sums the discounts of
    the first ``min(K, |T(u)|)`` positions (``idcg='truncated'``, as PyG's
    ``LinkPredNDCG``) or of all ``|T(u)|`` positions (``'untruncated'``,
    UniCDR **[compat]**, lower for users with more than ``K`` targets).
    """
    _check_choice('idcg', idcg, IDCG)
    h = _check_hits(hits, k)
    dcg = (h * _discounts(k, h.device)).sum(1)
    n = num_targets.to(h.device, torch.long)
    if idcg == 'truncated':
        n = n.clamp(max=k)
    n_max = int(n.max()) if n.numel() else 0
    cum = torch.cat([torch.zeros(1, device=h.device), _discounts(max(n_max, 1), h.device).cumsum(0)])
    ideal = cum[n.clamp(min=0)]
    return torch.where(ideal > 0, dcg / ideal.clamp(min=1e-12), torch.zeros_like(dcg))


def full_mrr_at_k(hits: Tensor, k: int) -> Tensor:
    r"""Per-user ``MRR@K = 1 / (r* + 1)`` of the first hit ``r* < K``; 0 without a hit."""
    h = _check_hits(hits, k)
    any_hit = h.sum(1) > 0
    first = h.argmax(1).to(torch.float)
    return torch.where(any_hit, 1.0 / (first + 1.0), torch.zeros_like(first))


# --------------------------------------------------------------------------- accumulator
class RankingMetrics:
    r"""Accumulates per-row ranking metrics over chunks and averages them.

    Sampled rows (:meth:`update`) give ``hr@K``, ``ndcg@K`` and ``mrr``
    (untruncated); full-ranking rows (:meth:`update_full`) give ``hr@K``,
    ``ndcg@K``, ``mrr@K``, ``recall@K`` and ``precision@K``. One accumulator
    holds one kind of rows.

    Args:
        ks (Sequence[int], optional): cut-offs. (default: :obj:`(1, 5, 10, 20)`)
        ties (str, optional): tie rule of sampled ranks, see
            :func:`ranks_from_scores`. (default: :obj:`'pessimistic'`)
        idcg (str, optional): ``'truncated'`` or ``'untruncated'`` ideal DCG
            of full ranking. (default: :obj:`'truncated'`)

    Example:
        >>> metric = RankingMetrics(ks=(1, 10))
        >>> metric.update(torch.tensor([0.9, 0.1]), torch.tensor([[0.5, 0.2], [0.5, 0.2]]))
        >>> metric.compute()['hr@1']
        0.5
    """

    def __init__(self, ks: Sequence[int] = (1, 5, 10, 20), ties: str = 'pessimistic',
                 idcg: str = 'truncated') -> None:
        ks = tuple(sorted(set(int(k) for k in ks)))
        if not ks:
            raise ValueError('ks must name at least one cut-off')
        for k in ks:
            _check_k(k)
        _check_choice('ties', ties, TIES)
        _check_choice('idcg', idcg, IDCG)
        self.ks = ks
        self.ties = ties
        self.idcg = idcg
        self.reset()

    @property
    def max_k(self) -> int:
        return self.ks[-1]

    def reset(self) -> None:
        r"""Forget all accumulated rows."""
        self._rows: dict[str, list[Tensor]] = {}
        self._kind: str | None = None

    def _set_kind(self, kind: str) -> None:
        if self._kind not in (None, kind):
            raise ValueError(f'RankingMetrics already holds {self._kind} rows; use a separate accumulator '
                             f'for {kind} rows (or call reset())')
        self._kind = kind

    def _add(self, values: dict[str, Tensor]) -> None:
        for key, val in values.items():
            self._rows.setdefault(key, []).append(val.detach().to('cpu', torch.float))

    def update(self, pos: Tensor, neg: Tensor, mask: Tensor | None = None) -> Tensor:
        r"""Add sampled-ranking rows; returns their ranks."""
        self._set_kind('sampled')
        rank = ranks_from_scores(pos, neg, mask, self.ties)
        vals = {'rank': rank}
        for k in self.ks:
            vals[f'hr@{k}'] = hit_at_k(rank, k)
            vals[f'ndcg@{k}'] = ndcg_at_k(rank, k)
        vals['mrr'] = reciprocal_rank(rank)
        self._add(vals)
        return rank

    def update_full(self, hits: Tensor, num_targets: Tensor) -> None:
        r"""Add full-ranking users from a hit matrix ``bool[U, ≥ max_k]`` and ``|T(u)|``."""
        self._set_kind('full')
        vals = {'num_targets': num_targets.to(torch.float)}
        for k in self.ks:
            vals[f'hr@{k}'] = full_hit_at_k(hits, k)
            vals[f'ndcg@{k}'] = full_ndcg_at_k(hits, num_targets, k, self.idcg)
            vals[f'mrr@{k}'] = full_mrr_at_k(hits, k)
            vals[f'recall@{k}'] = recall_at_k(hits, num_targets, k)
            vals[f'precision@{k}'] = precision_at_k(hits, k)
        self._add(vals)

    def merge(self, others: Sequence[RankingMetrics]) -> RankingMetrics:
        r"""Append the rows of ``others`` (e.g. the accumulators of the other
        ranks of a distributed evaluation, in rank order) to this one; returns
        ``self``."""
        for other in others:
            if other is self:
                continue
            if other._kind is not None:
                self._set_kind(other._kind)
            for key, rows in other._rows.items():
                self._rows.setdefault(key, []).extend(rows)
        return self

    def per_row(self) -> dict[str, Tensor]:
        r"""Per-row values of every metric (``rank``/``num_targets`` included)."""
        return {k: torch.cat(v) for k, v in self._rows.items()}

    @property
    def num_rows(self) -> int:
        rows = self._rows.get('rank') or self._rows.get('num_targets') or []
        return int(sum(r.numel() for r in rows))

    def compute(self) -> dict[str, float]:
        r"""Means over all rows (``nan`` when no row was added)."""
        out: dict[str, float] = {}
        for key, val in self.per_row().items():
            if key in ('rank', 'num_targets'):
                continue
            out[key] = float(val.double().mean()) if val.numel() else float('nan')
        return out

    def __call__(self, pos: Tensor, neg: Tensor, mask: Tensor | None = None) -> dict[str, float]:
        r"""One-shot sampled ranking: reset, update, compute."""
        self.reset()
        self.update(pos, neg, mask)
        return self.compute()

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(ks={self.ks}, ties={self.ties!r}, idcg={self.idcg!r})'
