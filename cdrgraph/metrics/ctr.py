r"""Click-through-rate metrics: AUC, GAUC and logloss (MODELS.md §1.4).

* :func:`auc_score` — Mann–Whitney AUC, ties count ½;
* :func:`group_auc` — per-group (per-user) AUC, the building block of GAUC;
* :func:`gauc_score` — ``Σ w_u AUC_u / Σ w_u`` over users with both label
  classes, ``w_u`` = number of samples of ``u`` (``weight='samples'``) or 1
  (``'uniform'``); users with one class are excluded and counted;
* :func:`log_loss` — binary cross-entropy of probabilities clipped to
  ``[eps, 1 − eps]``.

:class:`CTRMetrics` accumulates samples over chunks.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch_geometric.utils import scatter

__all__ = ['CTRMetrics', 'auc_score', 'group_auc', 'gauc_score', 'log_loss', 'GroupAUC']

GAUC_WEIGHTS = ('samples', 'uniform')
SCORE_KINDS = ('logit', 'prob')


def _check_inputs(scores: Tensor, labels: Tensor, name: str) -> tuple[Tensor, Tensor]:
    if scores.dim() != 1 or labels.shape != scores.shape:
        raise ValueError(f'{name}: expected scores and labels of the same shape [S], got '
                         f'{tuple(scores.shape)} and {tuple(labels.shape)}')
    labels = labels.to(torch.float64)
    bad = (labels != 0) & (labels != 1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f'{name}: labels must be 0 or 1; {int(bad.sum())} are not (e.g. position {i}: '
                         f'{float(labels[i])}); binarise ratings first (e.g. rating > 3)')
    scores = scores.detach().to(torch.float64)
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f'{name}: {int((~torch.isfinite(scores)).sum())} non-finite scores')
    return scores, labels


def _average_ranks(scores: Tensor, groups: Tensor) -> Tensor:
    r"""1-based ranks of ``scores`` inside each group, ties getting their average rank."""
    n = scores.numel()
    perm = scores.argsort(stable=True)
    perm = perm[groups[perm].argsort(stable=True)]
    g, s = groups[perm], scores[perm]
    new_group = torch.ones(n, dtype=torch.bool)
    new_tie = torch.ones(n, dtype=torch.bool)
    if n > 1:
        new_group[1:] = g[1:] != g[:-1]
        new_tie[1:] = new_group[1:] | (s[1:] != s[:-1])
    pos = torch.arange(n, dtype=torch.float64)
    group_start = pos[new_group]
    pos_in_group = pos - group_start[new_group.cumsum(0) - 1] + 1.0
    tie_id = new_tie.cumsum(0) - 1
    avg = scatter(pos_in_group, tie_id, dim=0, reduce='mean')[tie_id]
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[perm] = avg
    return ranks


class GroupAUC(NamedTuple):
    r"""Per-group AUC: ``group`` ids, ``auc`` (``nan`` where undefined), ``num_samples``, ``valid``."""
    group: Tensor
    auc: Tensor
    num_samples: Tensor
    valid: Tensor


def group_auc(scores: Tensor, labels: Tensor, groups: Tensor) -> GroupAUC:
    r"""AUC of every group (Mann–Whitney with ties ½), vectorised.

    Args:
        scores (Tensor): ``float[S]`` scores (logits or probabilities).
        labels (Tensor): ``float[S]`` 0/1 labels.
        groups (Tensor): ``long[S]`` group (user) of each sample.

    Returns:
        :class:`GroupAUC` over the distinct groups in ascending order;
        ``valid`` is :obj:`False` for groups with a single label class.
    """
    scores, labels = _check_inputs(scores, labels, 'group_auc')
    if groups.shape != scores.shape:
        raise ValueError(f'group_auc: groups shape {tuple(groups.shape)} differs from scores '
                         f'{tuple(scores.shape)}')
    uniq, inv = torch.unique(groups.cpu(), return_inverse=True)
    scores, labels = scores.cpu(), labels.cpu()
    ranks = _average_ranks(scores, inv)
    size = uniq.numel()
    n_pos = scatter(labels, inv, dim=0, dim_size=size, reduce='sum')
    n_all = scatter(torch.ones_like(labels), inv, dim=0, dim_size=size, reduce='sum')
    n_neg = n_all - n_pos
    r_pos = scatter(ranks * labels, inv, dim=0, dim_size=size, reduce='sum')
    valid = (n_pos > 0) & (n_neg > 0)
    auc = (r_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg).clamp(min=1)
    auc = torch.where(valid, auc, torch.full_like(auc, float('nan')))
    return GroupAUC(uniq, auc, n_all.long(), valid)


def auc_score(scores: Tensor, labels: Tensor) -> float:
    r"""``AUC = Σ_p Σ_n (1[s_p > s_n] + ½·1[s_p = s_n]) / (|pos|·|neg|)``; ``nan`` with one class.

    Example:
        >>> auc_score(torch.tensor([0.3, 0.3]), torch.tensor([1.0, 0.0]))
        0.5
    """
    res = group_auc(scores, labels, torch.zeros(scores.numel(), dtype=torch.long))
    return float(res.auc[0]) if res.auc.numel() else float('nan')


def gauc_score(scores: Tensor, labels: Tensor, groups: Tensor,
               weight: str = 'samples') -> tuple[float, int, int]:
    r"""Group AUC ``Σ_{u∈U*} w_u AUC_u / Σ_{u∈U*} w_u`` (MODELS.md §1.4).

    Args:
        scores (Tensor): ``float[S]`` scores.
        labels (Tensor): ``float[S]`` 0/1 labels.
        groups (Tensor): ``long[S]`` user of each sample.
        weight (str, optional): ``'samples'`` (``w_u`` = number of samples of
            ``u``) or ``'uniform'``. (default: :obj:`'samples'`)

    Returns:
        ``(gauc, num_users, num_excluded)``: ``num_users = |U*|`` users with
        both classes, ``num_excluded`` users with one class only; ``gauc`` is
        ``nan`` when ``U*`` is empty.
    """
    if weight not in GAUC_WEIGHTS:
        raise ValueError(f'weight must be one of {list(GAUC_WEIGHTS)}, got {weight!r}')
    res = group_auc(scores, labels, groups)
    v = res.valid
    num_users, num_excluded = int(v.sum()), int((~v).sum())
    if num_users == 0:
        return float('nan'), 0, num_excluded
    w = res.num_samples[v].double() if weight == 'samples' else torch.ones(num_users, dtype=torch.float64)
    return float((w * res.auc[v]).sum() / w.sum()), num_users, num_excluded


def log_loss(probs: Tensor, labels: Tensor, eps: float = 1e-7) -> float:
    r"""``−mean[y·log p + (1−y)·log(1−p)]`` with ``p`` clipped to ``[eps, 1 − eps]``."""
    probs, labels = _check_inputs(probs, labels, 'log_loss')
    if probs.numel() == 0:
        return float('nan')
    p = probs.clamp(eps, 1 - eps)
    return float(-(labels * p.log() + (1 - labels) * (1 - p).log()).mean())


class CTRMetrics:
    r"""Accumulates CTR samples over chunks; computes AUC, GAUC and logloss.

    Args:
        scores (str, optional): ``'logit'`` (``p = σ(score)``) or ``'prob'``.
            (default: :obj:`'logit'`)
        gauc_weight (str, optional): ``'samples'`` or ``'uniform'``.
            (default: :obj:`'samples'`)
        eps (float, optional): logloss clipping. (default: :obj:`1e-7`)

    Example:
        >>> m = CTRMetrics()
        >>> m.update(torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0]), torch.tensor([0, 0]))
        >>> m.compute()['auc']
        1.0
    """

    def __init__(self, scores: str = 'logit', gauc_weight: str = 'samples', eps: float = 1e-7) -> None:
        if scores not in SCORE_KINDS:
            raise ValueError(f'scores must be one of {list(SCORE_KINDS)}, got {scores!r}')
        if gauc_weight not in GAUC_WEIGHTS:
            raise ValueError(f'gauc_weight must be one of {list(GAUC_WEIGHTS)}, got {gauc_weight!r}')
        self.scores = scores
        self.gauc_weight = gauc_weight
        self.eps = eps
        self.reset()

    def reset(self) -> None:
        r"""Forget all accumulated samples."""
        self._s: list[Tensor] = []
        self._y: list[Tensor] = []
        self._g: list[Tensor] = []

    def update(self, scores: Tensor, labels: Tensor, groups: Tensor | None = None) -> None:
        r"""Add samples: ``scores float[S]``, ``labels float[S]`` (0/1), ``groups long[S]`` (users)."""
        s, y = _check_inputs(scores, labels, 'CTRMetrics.update')
        g = torch.zeros(s.numel(), dtype=torch.long) if groups is None else groups.detach().cpu().long()
        self._s.append(s.cpu())
        self._y.append(y.cpu())
        self._g.append(g)

    def merge(self, others: Sequence[CTRMetrics]) -> CTRMetrics:
        r"""Append the samples of ``others`` (e.g. the other ranks'
        accumulators, in rank order) to this one; returns ``self``."""
        for other in others:
            if other is self:
                continue
            self._s.extend(other._s)
            self._y.extend(other._y)
            self._g.extend(other._g)
        return self

    def _cat(self) -> tuple[Tensor, Tensor, Tensor]:
        r"""All samples as three tensors; the chunks are joined once and kept
        joined, so :meth:`compute`, :meth:`per_user` and
        :meth:`mode_fraction` on the same samples do not copy them again."""
        if not self._s:
            e = torch.empty(0, dtype=torch.float64)
            return e, e, torch.empty(0, dtype=torch.long)
        if len(self._s) > 1:
            self._s, self._y, self._g = [torch.cat(self._s)], [torch.cat(self._y)], [torch.cat(self._g)]
        return self._s[0], self._y[0], self._g[0]

    def probabilities(self, scores: Tensor) -> Tensor:
        return torch.sigmoid(scores) if self.scores == 'logit' else scores

    def per_user(self) -> GroupAUC:
        r"""Per-user AUCs of the accumulated samples."""
        s, y, g = self._cat()
        return group_auc(s, y, g)

    def mode_fraction(self) -> tuple[float, float]:
        r"""``(value, fraction)``: the most frequent accumulated score and the
        fraction of samples holding it (``(nan, 0.0)`` when empty). A fraction
        near 1 means the model predicts a constant, e.g. a dead ReLU tower.

        Example:
            >>> m = CTRMetrics()
            >>> m.update(torch.tensor([0.0, 0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 1.0, 0.0]))
            >>> m.mode_fraction()
            (0.0, 0.75)
        """
        s, _, _ = self._cat()
        if not s.numel():
            return float('nan'), 0.0
        values, counts = torch.unique(s, return_counts=True)
        i = int(counts.argmax())
        return float(values[i]), float(counts[i]) / s.numel()

    def compute(self) -> dict[str, float]:
        r"""``{'auc', 'gauc', 'logloss', 'num_samples', 'num_gauc_users', 'num_gauc_excluded'}``."""
        s, y, g = self._cat()
        if self.scores == 'prob' and s.numel() and bool(((s < 0) | (s > 1)).any()):
            raise ValueError("CTRMetrics: scores='prob' but some scores lie outside [0, 1]; "
                             "pass logits with scores='logit'")
        gauc, n_users, n_excl = gauc_score(s, y, g, self.gauc_weight) if s.numel() else (float('nan'), 0, 0)
        return {
            'auc': auc_score(s, y) if s.numel() else float('nan'),
            'gauc': gauc,
            'logloss': log_loss(self.probabilities(s), y, self.eps),
            'num_samples': int(s.numel()),
            'num_gauc_users': n_users,
            'num_gauc_excluded': n_excl,
        }

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(scores={self.scores!r}, gauc_weight={self.gauc_weight!r})'
