r"""The OGB-style :class:`Evaluator` of cdrgraph (DESIGN.md §5, MODELS.md §1.2–1.5)."""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import INTERACTS, ITEM, PAD, USER, domain_names
from cdrgraph.metrics.ctr import CTRMetrics
from cdrgraph.metrics.ranking import IDCG, TIES, RankingMetrics, topk_hits, topk_items
from cdrgraph.metrics.rating import RatingMetrics

__all__ = ['Evaluator', 'dot_scorer', 'ScoreFn']

#: ``score_fn(users long[P], items long[P]) -> float[P]`` on GLOBAL node ids. It may also expose
#: ``score_fn.score_matrix(users long[U], items long[I]) -> float[U, I]``, which full ranking then uses,
#: and ``score_fn.score_rows(users long[R], items long[R, C]) -> float[R, C]`` (row r: user r against
#: its candidates items[r]), which sampled ranking then uses.
ScoreFn = Callable[[Tensor, Tensor], Tensor]

PROTOCOLS = ('sampled', 'full', 'ctr', 'rating')
CANDIDATES = ('domain', 'train_items')
COUNT_PREFIX = 'num_'
_FIELD = f"data[{INTERACTS}]"


class _DotScorer:
    def __init__(self, user_emb: Tensor, item_emb: Tensor) -> None:
        self.user_emb = user_emb
        self.item_emb = item_emb

    def __call__(self, users: Tensor, items: Tensor) -> Tensor:
        dev = self.user_emb.device
        return (self.user_emb[users.to(dev)] * self.item_emb[items.to(dev)]).sum(-1)

    def score_matrix(self, users: Tensor, items: Tensor) -> Tensor:
        dev = self.user_emb.device
        return self.user_emb[users.to(dev)] @ self.item_emb[items.to(dev)].t()

    def score_rows(self, users: Tensor, items: Tensor) -> Tensor:
        dev = self.user_emb.device
        return torch.bmm(self.item_emb[items.to(dev)], self.user_emb[users.to(dev)].unsqueeze(-1)).squeeze(-1)

    def __repr__(self) -> str:
        return f'dot_scorer(num_users={self.user_emb.size(0)}, num_items={self.item_emb.size(0)})'


def dot_scorer(user_emb: Tensor, item_emb: Tensor) -> ScoreFn:
    r"""A score function ``⟨user_emb[u], item_emb[i]⟩`` for the :class:`Evaluator`.

    The returned callable scores pairs and exposes ``score_matrix(users,
    items)`` so that full ranking scores a chunk of users with one matrix
    product instead of materialising every (user, item) pair.

    Args:
        user_emb (Tensor): ``float[U, D]`` user embeddings (global ids).
        item_emb (Tensor): ``float[I, D]`` item embeddings (global ids).
    """
    if user_emb.dim() != 2 or item_emb.dim() != 2 or user_emb.size(1) != item_emb.size(1):
        raise ValueError(f'dot_scorer: expected user_emb [U, D] and item_emb [I, D], got '
                         f'{tuple(user_emb.shape)} and {tuple(item_emb.shape)}')
    return _DotScorer(user_emb, item_emb)


def _name_of(score_fn: Any) -> str:
    return getattr(score_fn, '__qualname__', None) or getattr(score_fn, '__name__', None) or repr(score_fn)


class Evaluator:
    r"""Scores a validation/test split under one fixed protocol, knowing nothing about the model
    (OGB style; MODELS.md §1.2–1.5).

    Calling ``evaluator(score_fn, data)`` with ``score_fn(users, items) ->
    scores`` on GLOBAL node ids and a val/test graph of a split transform
    (``interacts.edge_index`` = training edges, ``edge_label_index`` =
    held-out pairs, ``edge_label``, ``edge_label_neg``) returns a flat dict
    keyed ``'<metric>@<k>/<domain>'`` / ``'<metric>/<domain>'`` plus
    ``'<metric>@<k>/mean'`` (unweighted mean over the evaluated domains) and
    counts (``'num_rows/<domain>'``, ...). The domain of a pair is
    ``item.domain[item]``.

    Protocols:

    * ``'sampled'`` — each held-out pair against its ``edge_label_neg``
      candidates (``-1`` padded); rows whose positive has no training edge
      are dropped and counted (``drop_cold_items``); rows with fewer than
      ``N`` candidates are counted as short. Keys ``hr@K``, ``ndcg@K``,
      ``mrr`` (untruncated); counts ``num_rows``, ``num_cold_dropped``,
      ``num_short_rows``.
    * ``'full'`` — for each user with held-out items in a domain, all items
      of the domain are ranked (``candidates='train_items'`` keeps only items
      with a training edge; its cold targets are then dropped and counted
      when ``drop_cold_items``); the user's training items and the
      ``exclude`` pairs get ``-inf``; top-K ties go to the lower item index.
      Users are scored ``chunk_size`` at a time, so at most
      ``chunk_size × items`` scores exist at once (via
      ``score_fn.score_matrix`` when present, else ``chunk_size × items``
      pairs). Keys ``hr@K``, ``ndcg@K``, ``mrr@K``, ``recall@K``,
      ``precision@K``; counts ``num_users``, ``num_rows``, ``num_candidates``,
      ``num_cold_dropped``.
    * ``'ctr'`` — samples are the held-out pairs with ``edge_label`` (0/1,
      or ratings binarised by ``rating > ctr_threshold``; ones when absent)
      plus every ``edge_label_neg`` candidate as a negative. Keys ``auc``,
      ``gauc``, ``logloss`` per domain and pooled (``'/all'``); counts
      ``num_rows``, ``num_samples``, ``num_gauc_users``, ``num_gauc_excluded``.
    * ``'rating'`` — ``mae``/``rmse`` pooled per domain and over all domains
      (``'/all'``) against ``edge_label``; ``clip`` clamps predictions.

    Args:
        protocol (str, optional): ``'sampled'``, ``'full'``, ``'ctr'`` or
            ``'rating'``. (default: :obj:`'sampled'`)
        ks (Sequence[int], optional): cut-offs. (default: :obj:`(1, 5, 10, 20)`)
        ties (str, optional): sampled tie rule, ``'pessimistic'``,
            ``'average'`` or ``'optimistic'``. (default: :obj:`'pessimistic'`)
        idcg (str, optional): ``'truncated'`` or ``'untruncated'`` (UniCDR
            **[compat]**) ideal DCG of full ranking. (default: :obj:`'truncated'`)
        chunk_size (int, optional): rows (sampled/ctr/rating) or users (full)
            scored per call of ``score_fn``. (default: :obj:`1024`)
        candidates (str, optional): full-ranking candidates, ``'domain'`` or
            ``'train_items'``. (default: :obj:`'domain'`)
        drop_cold_items (bool, optional): drop and count evaluation rows whose
            positive has no training edge. (default: :obj:`True`)
        clip (tuple[float, float], optional): rating prediction clamp.
            (default: :obj:`None`)
        gauc_weight (str, optional): ``'samples'`` or ``'uniform'``.
            (default: :obj:`'samples'`)
        ctr_scores (str, optional): ``'logit'`` (``p = σ(score)``) or
            ``'prob'``. (default: :obj:`'logit'`)
        ctr_threshold (float, optional): CTR label ``= edge_label >
            ctr_threshold`` (e.g. ``3`` for MovieLens ratings).
            (default: :obj:`None`)

    Example:
        >>> evaluator = Evaluator(protocol='sampled', ks=(10,))
        >>> result = evaluator(lambda u, i: model_scores[u, i], test_data)
        >>> result['hr@10/Sport'], result['hr@10/mean']
    """

    def __init__(
        self,
        protocol: str = 'sampled',
        ks: Sequence[int] = (1, 5, 10, 20),
        ties: str = 'pessimistic',
        idcg: str = 'truncated',
        chunk_size: int = 1024,
        candidates: str = 'domain',
        drop_cold_items: bool = True,
        clip: tuple[float, float] | None = None,
        gauc_weight: str = 'samples',
        ctr_scores: str = 'logit',
        ctr_threshold: float | None = None,
    ) -> None:
        for name, value, choices in (('protocol', protocol, PROTOCOLS), ('ties', ties, TIES),
                                     ('idcg', idcg, IDCG), ('candidates', candidates, CANDIDATES)):
            if value not in choices:
                raise ValueError(f'Evaluator: {name} must be one of {list(choices)}, got {value!r}')
        if int(chunk_size) < 1:
            raise ValueError(f'Evaluator: chunk_size must be >= 1, got {chunk_size}')
        self.protocol = protocol
        self.ks = tuple(sorted(set(int(k) for k in ks)))
        self.ties = ties
        self.idcg = idcg
        self.chunk_size = int(chunk_size)
        self.candidates = candidates
        self.drop_cold_items = bool(drop_cold_items)
        self.clip = clip
        self.gauc_weight = gauc_weight
        self.ctr_scores = ctr_scores
        self.ctr_threshold = ctr_threshold
        # constructor-time validation of the metric options
        RankingMetrics(self.ks, ties, idcg)
        CTRMetrics(ctr_scores, gauc_weight)
        RatingMetrics(clip)

    # ------------------------------------------------------------------ public API
    @torch.no_grad()
    def __call__(self, score_fn: ScoreFn, data: HeteroData, exclude: Tensor | None = None, *,
                 domains: Sequence[str] | None = None, return_rows: bool = False,
                 distributed: bool = False) -> dict[str, float] | tuple[dict[str, float], pd.DataFrame]:
        r"""Evaluate ``score_fn`` on the held-out pairs of ``data``.

        Args:
            score_fn (callable): ``score_fn(users long[P], items long[P]) ->
                float[P]`` on global ids; optionally with a ``score_matrix``
                method (see :func:`dot_scorer`).
            data (HeteroData): a val/test graph of a split transform.
            exclude (Tensor, optional): ``long[2, E]`` extra (user, item)
                pairs masked in full ranking (e.g. the validation pairs when
                scoring test). (default: :obj:`None`)
            domains (Sequence[str], optional): domain names to evaluate;
                all by default.
            return_rows (bool, optional): also return the per-row (per-user)
                values as a :class:`pandas.DataFrame`. (default: :obj:`False`)
            distributed (bool, optional): inside an initialised process group
                (:mod:`cdrgraph.train.distributed`), score only the rows of
                the users ``u % world_size == rank`` and merge the metric
                accumulators and counts of all ranks, so every rank returns
                the metrics of the whole split (the per-row frame holds this
                rank's rows). Every rank must make the same call. Without a
                process group it changes nothing. (default: :obj:`False`)

        Scores are computed under :func:`torch.no_grad`.
        """
        ctx = _Context(data, exclude, domains, self.protocol, distributed)
        result: dict[str, float] = {}
        frames: list[pd.DataFrame] = []
        run = {'sampled': self._sampled, 'full': self._full, 'ctr': self._ctr,
               'rating': self._rating}[self.protocol]
        run(score_fn, ctx, result, frames)
        self._add_means(result, ctx)
        if return_rows:
            rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
            return result, rows
        return result

    def per_row(self, score_fn: ScoreFn, data: HeteroData, exclude: Tensor | None = None, *,
                domains: Sequence[str] | None = None) -> pd.DataFrame:
        r"""Per-row values (one row per evaluated pair for sampled ranking and rating, per user
        for full ranking and CTR/GAUC) for significance tests; column ``domain`` names the domain."""
        return self(score_fn, data, exclude, domains=domains, return_rows=True)[1]  # type: ignore[index]

    @staticmethod
    def to_frame(result: dict[str, float]) -> pd.DataFrame:
        r"""A result dict as a table: rows = domain, columns = metric."""
        table: dict[str, dict[str, float]] = {}
        for key, value in result.items():
            metric, _, dom = key.rpartition('/')
            if not metric:
                metric, dom = key, ''
            table.setdefault(dom, {})[metric] = value
        return pd.DataFrame.from_dict(table, orient='index')

    def __repr__(self) -> str:
        extra = ''
        if self.protocol == 'sampled':
            extra = f', ties={self.ties!r}, drop_cold_items={self.drop_cold_items}'
        elif self.protocol == 'full':
            extra = f', idcg={self.idcg!r}, candidates={self.candidates!r}'
        elif self.protocol == 'ctr':
            extra = f', gauc_weight={self.gauc_weight!r}, ctr_scores={self.ctr_scores!r}'
        elif self.protocol == 'rating':
            extra = f', clip={self.clip}'
        ks = f', ks={self.ks}' if self.protocol in ('sampled', 'full') else ''
        return (f'{self.__class__.__name__}(protocol={self.protocol!r}{ks}{extra}, '
                f'chunk_size={self.chunk_size})')

    # ------------------------------------------------------------------ scoring helpers
    @staticmethod
    def _score_pairs(score_fn: ScoreFn, users: Tensor, items: Tensor, domain: str) -> Tensor:
        out = score_fn(users, items)
        if not isinstance(out, Tensor):
            out = torch.as_tensor(out)
        out = out.detach()
        if out.numel() != users.numel():
            raise ValueError(f'score_fn {_name_of(score_fn)} returned {out.numel()} scores for '
                             f'{users.numel()} (user, item) pairs in domain {domain!r}; '
                             'it must return float[P]')
        return out.reshape(-1).to('cpu', torch.float)

    @classmethod
    def _score_rows(cls, score_fn: ScoreFn, users: Tensor, items: Tensor, domain: str) -> Tensor:
        rows = getattr(score_fn, 'score_rows', None)
        if rows is None:
            out = cls._score_pairs(score_fn, users.repeat_interleave(items.size(1)), items.reshape(-1), domain)
            return out.view(items.shape)
        out = rows(users, items)
        out = (out if isinstance(out, Tensor) else torch.as_tensor(out)).detach()
        if tuple(out.shape) != tuple(items.shape):
            raise ValueError(f'score_fn {_name_of(score_fn)}.score_rows returned shape {tuple(out.shape)} for '
                             f'{tuple(items.shape)} (user, candidates) rows in domain {domain!r}')
        return out.to('cpu', torch.float)

    @staticmethod
    def _score_matrix(score_fn: ScoreFn, users: Tensor, items: Tensor, domain: str) -> Tensor:
        matrix = getattr(score_fn, 'score_matrix', None)
        if matrix is not None:
            out = matrix(users, items).detach()
        else:
            pu = users.repeat_interleave(items.numel())
            pi = items.repeat(users.numel())
            out = score_fn(pu, pi)
            del pu, pi
            out = (out if isinstance(out, Tensor) else torch.as_tensor(out)).detach()
        if out.numel() != users.numel() * items.numel():
            raise ValueError(f'score_fn {_name_of(score_fn)} returned {out.numel()} scores for '
                             f'{users.numel()} users x {items.numel()} items in domain {domain!r}')
        out = out.reshape(users.numel(), items.numel())
        if not out.is_floating_point():
            out = out.float()
        return out

    @staticmethod
    def _check_finite(scores: Tensor, valid: Tensor | None, score_fn: ScoreFn, domain: str) -> None:
        if valid is None and bool(torch.isfinite(scores.sum())):  # one cheap pass for the common case
            return
        bad = ~torch.isfinite(scores)
        if valid is not None:
            bad &= valid
        if bool(bad.any()):
            raise ValueError(f'score_fn {_name_of(score_fn)} returned {int(bad.sum())} non-finite scores '
                             f'(NaN/inf) in domain {domain!r}; check the model for diverged parameters')

    # ------------------------------------------------------------------ protocols
    def _sampled(self, score_fn: ScoreFn, ctx: _Context, result: dict[str, float],
                 frames: list[pd.DataFrame]) -> None:
        neg = ctx.require_neg('sampled ranking')
        lab = ctx.lab
        num_neg = neg.size(1)
        for k, name in ctx.domains:
            rows = ctx.rows_of(k)
            cold = ctx.train_deg[lab[1, rows]] == 0
            num_cold = int(cold.sum()) if self.drop_cold_items else 0
            if self.drop_cold_items:
                rows = rows[~cold]
            mask = neg[rows] != PAD
            result[f'num_rows/{name}'] = int(rows.numel())
            result[f'num_cold_dropped/{name}'] = num_cold
            result[f'num_short_rows/{name}'] = int((mask.sum(1) < num_neg).sum())
            ctx.sum_counts(result, name, ('num_rows', 'num_cold_dropped', 'num_short_rows'))
            if result[f'num_rows/{name}'] == 0:
                continue
            acc = RankingMetrics(self.ks, self.ties, self.idcg)
            for chunk in rows.split(self.chunk_size):
                users, pos, cand = lab[0, chunk], lab[1, chunk], neg[chunk]
                m = cand != PAD
                items = torch.cat([pos.unsqueeze(1), torch.where(m, cand, pos.unsqueeze(1))], dim=1)
                scores = self._score_rows(score_fn, users, items, name)
                self._check_finite(scores, torch.cat([torch.ones_like(m[:, :1]), m], dim=1), score_fn, name)
                acc.update(scores[:, 0], scores[:, 1:], m)
            if rows.numel():
                frame = pd.DataFrame({key: val.numpy() for key, val in acc.per_row().items()})
                frame.insert(0, 'item', lab[1, rows].numpy())
                frame.insert(0, 'user', lab[0, rows].numpy())
                frame.insert(0, 'domain', name)
                frames.append(frame)
            for key, val in ctx.merge(acc).compute().items():
                result[f'{key}/{name}'] = val

    @torch.no_grad()
    def top_k(self, score_fn: ScoreFn, data: HeteroData, domain: str, exclude: Tensor | None = None,
              k: int | None = None) -> tuple[Tensor, Tensor]:
        r"""Full-ranking top-``k`` lists of the users with held-out items in ``domain``.

        Uses exactly the candidates, exclusions and tie rule of
        ``protocol='full'``. Returns ``(users long[U], items long[U, k])``
        with ``-1`` where fewer than ``k`` candidates remain.
        """
        ctx = _Context(data, exclude, [domain], 'full')
        k_dom, name = ctx.domains[0]
        users, tops = [], []
        for uc, top, *_ in self._iter_full(score_fn, ctx, k_dom, name, k or self.ks[-1], {}):
            users.append(uc)
            tops.append(top)
        if not users:
            return torch.empty(0, dtype=torch.long), torch.empty(0, k or self.ks[-1], dtype=torch.long)
        return torch.cat(users), torch.cat(tops)

    def _iter_full(self, score_fn: ScoreFn, ctx: _Context, k: int, name: str, max_k: int,
                   result: dict[str, float]) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
        r"""Yields ``(users, top-k items, target rows, target items, |T|)`` per chunk of users."""
        num_items = ctx.num_items
        cand = (ctx.item_dom == k).nonzero().view(-1)
        if self.candidates == 'train_items':
            cand = cand[ctx.train_deg[cand] > 0]
        pairs = ctx.lab[:, ctx.rows_of(k)]
        keys = torch.unique(pairs[0] * num_items + pairs[1])  # sorted by (user, item), de-duplicated
        num_cold = 0
        if self.candidates == 'train_items' and self.drop_cold_items:
            cold = ctx.train_deg[keys % num_items] == 0
            num_cold = int(cold.sum())
            keys = keys[~cold]
        t_user, t_item = keys // num_items, keys % num_items
        users, counts = torch.unique_consecutive(t_user, return_counts=True)
        ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        result[f'num_users/{name}'] = int(users.numel())
        result[f'num_rows/{name}'] = int(keys.numel())
        result[f'num_candidates/{name}'] = int(cand.numel())
        result[f'num_cold_dropped/{name}'] = num_cold
        if users.numel() == 0 or cand.numel() == 0:
            return
        if ctx.exclude_keys is not None:
            clash = torch.isin(keys, ctx.exclude_keys)
            if bool(clash.any()):
                warnings.warn(f'Evaluator: exclude holds {int(clash.sum())} held-out pairs of domain '
                              f'{name!r}; '
                              'they are masked and can never be hit', stacklevel=3)
        ex_keys = ctx.exclusion_keys(k)
        ex_u, ex_i = ex_keys // num_items, ex_keys % num_items
        col_of = torch.full((num_items,), -1, dtype=torch.long)
        col_of[cand] = torch.arange(cand.numel())
        for start in range(0, users.numel(), self.chunk_size):
            end = min(start + self.chunk_size, users.numel())
            uc = users[start:end]
            scores = self._score_matrix(score_fn, uc, cand, name)
            self._check_finite(scores, None, score_fn, name)
            lo = int(torch.searchsorted(ex_u, uc[:1]))
            hi = int(torch.searchsorted(ex_u, uc[-1:], right=True))
            eu, ei = ex_u[lo:hi], ex_i[lo:hi]
            row = torch.searchsorted(uc, eu).clamp(max=uc.numel() - 1)
            col = col_of[ei]
            keep = (uc[row] == eu) & (col >= 0)
            if bool(keep.any()):
                dev = scores.device
                scores[row[keep].to(dev), col[keep].to(dev)] = float('-inf')
            top = topk_items(scores, max_k, item_index=cand).cpu()
            del scores
            tu = torch.searchsorted(uc, t_user[ptr[start]:ptr[end]])
            yield uc, top, tu, t_item[ptr[start]:ptr[end]], counts[start:end]

    def _full(self, score_fn: ScoreFn, ctx: _Context, result: dict[str, float],
              frames: list[pd.DataFrame]) -> None:
        for k, name in ctx.domains:
            acc = RankingMetrics(self.ks, self.ties, self.idcg)
            users = []
            for uc, top, tu, ti, counts in self._iter_full(score_fn, ctx, k, name, self.ks[-1], result):
                acc.update_full(topk_hits(top, torch.stack([tu, ti])), counts)
                users.append(uc)
            ctx.sum_counts(result, name, ('num_users', 'num_rows', 'num_cold_dropped'))
            if users:
                frame = pd.DataFrame({key: val.numpy() for key, val in acc.per_row().items()})
                frame['num_targets'] = frame['num_targets'].astype('int64')
                frame.insert(0, 'user', torch.cat(users).numpy())
                frame.insert(0, 'domain', name)
                frames.append(frame)
            acc = ctx.merge(acc)
            if acc.num_rows == 0:
                continue
            for key, val in acc.compute().items():
                result[f'{key}/{name}'] = val

    def _labels(self, ctx: _Context) -> Tensor:
        label = getattr(ctx.store, 'edge_label', None)
        if label is None:
            return torch.ones(ctx.lab.size(1))
        label = label.to(torch.float)
        if self.ctr_threshold is not None:
            return (label > float(self.ctr_threshold)).to(torch.float)
        bad = (label != 0) & (label != 1)
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise ValueError(f'{_FIELD}.edge_label holds {int(bad.sum())} values other than 0/1 '
                             f'(e.g. row {i}: {float(label[i])}); CTR needs binary labels: pass '
                             'Evaluator(protocol="ctr", ctr_threshold=3) to binarise ratings')
        return label

    def _ctr(self, score_fn: ScoreFn, ctx: _Context, result: dict[str, float],
             frames: list[pd.DataFrame]) -> None:
        labels = self._labels(ctx)
        neg = ctx.neg
        num_neg = 0 if neg is None else neg.size(1)
        lab = ctx.lab
        pooled = CTRMetrics(self.ctr_scores, self.gauc_weight)
        for k, name in ctx.domains:
            rows = ctx.rows_of(k)
            result[f'num_rows/{name}'] = int(rows.numel())
            ctx.sum_counts(result, name, ('num_rows',))
            if result[f'num_rows/{name}'] == 0:
                continue
            acc = CTRMetrics(self.ctr_scores, self.gauc_weight)
            for chunk in rows.split(self.chunk_size):
                users, pos, y = lab[0, chunk], lab[1, chunk], labels[chunk]
                if num_neg:
                    cand = neg[chunk]
                    m = cand != PAD
                    users = torch.cat([users, users.unsqueeze(1).expand_as(cand)[m]])
                    pos = torch.cat([pos, cand[m]])
                    y = torch.cat([y, torch.zeros(int(m.sum()))])
                scores = self._score_pairs(score_fn, users, pos, name)
                self._check_finite(scores, None, score_fn, name)
                acc.update(scores, y, users)
                pooled.update(scores, y, users)
            if rows.numel():
                per = acc.per_user()
                frames.append(pd.DataFrame({'domain': name, 'user': per.group.numpy(), 'auc': per.auc.numpy(),
                                            'num_samples': per.num_samples.numpy(),
                                            'valid': per.valid.numpy()}))
            merged = ctx.merge(acc)
            res = merged.compute()
            if res['num_samples'] > 1:
                self._warn_constant(merged, score_fn, name)
            for key in ('auc', 'gauc', 'logloss'):
                result[f'{key}/{name}'] = res[key]
            for key in ('num_samples', 'num_gauc_users', 'num_gauc_excluded'):
                result[f'{key}/{name}'] = res[key]
        pooled = ctx.merge(pooled)
        if pooled._s:
            res = pooled.compute()
            for key in ('auc', 'gauc', 'logloss', 'num_samples', 'num_gauc_users', 'num_gauc_excluded'):
                result[f'{key}/all'] = res[key]

    #: fraction of a domain's CTR samples sharing one score above which :meth:`__call__` warns
    CONSTANT_WARN_FRACTION = 0.99

    def _warn_constant(self, acc: CTRMetrics, score_fn: ScoreFn, domain: str) -> None:
        value, frac = acc.mode_fraction()
        if frac >= self.CONSTANT_WARN_FRACTION:
            warnings.warn(f'Evaluator(ctr): {100 * frac:.1f} % of the scores of {_name_of(score_fn)} on domain '
                          f'{domain!r} are the same value {value:.6g}; its AUC/GAUC are ~0.5 by ties, not by '
                          'ranking. The model predicts a constant for this domain (e.g. a dead ReLU tower '
                          'whose units never activate): check its training curve, learning rate or seed',
                          RuntimeWarning, stacklevel=3)

    def _rating(self, score_fn: ScoreFn, ctx: _Context, result: dict[str, float],
                frames: list[pd.DataFrame]) -> None:
        target = getattr(ctx.store, 'edge_label', None)
        if target is None:
            raise ValueError(f'{_FIELD}.edge_label is missing: the rating protocol needs the held-out '
                             'ratings '
                             '(build the graph with from_interactions(..., rating=...) before splitting)')
        lab = ctx.lab
        pooled = RatingMetrics(self.clip)
        for k, name in ctx.domains:
            rows = ctx.rows_of(k)
            result[f'num_rows/{name}'] = int(rows.numel())
            ctx.sum_counts(result, name, ('num_rows',))
            if result[f'num_rows/{name}'] == 0:
                continue
            acc = RatingMetrics(self.clip)
            for chunk in rows.split(self.chunk_size):
                pred = self._score_pairs(score_fn, lab[0, chunk], lab[1, chunk], name)
                self._check_finite(pred, None, score_fn, name)
                acc.update(pred, target[chunk])
                pooled.update(pred, target[chunk])
            if rows.numel():
                err = acc.per_row()
                frames.append(pd.DataFrame({'domain': name, 'user': lab[0, rows].numpy(),
                                            'item': lab[1, rows].numpy(),
                                            'target': target[rows].double().numpy(), 'error': err.numpy()}))
            res = ctx.merge(acc).compute()
            result[f'mae/{name}'] = res['mae']
            result[f'rmse/{name}'] = res['rmse']
        pooled = ctx.merge(pooled)
        if pooled._n:
            res = pooled.compute()
            result['mae/all'] = res['mae']
            result['rmse/all'] = res['rmse']
            result['num_rows/all'] = res['num_rows']

    # ------------------------------------------------------------------ aggregation
    @staticmethod
    def _add_means(result: dict[str, float], ctx: _Context) -> None:
        names = {name for _, name in ctx.domains}
        sums: dict[str, list[float]] = {}
        for key, val in result.items():
            metric, _, dom = key.rpartition('/')
            if dom in names and not metric.startswith(COUNT_PREFIX) and not math.isnan(float(val)):
                sums.setdefault(metric, []).append(float(val))
        for metric, vals in sums.items():
            result[f'{metric}/mean'] = sum(vals) / len(vals)


class _Context:
    r"""Tensors of one val/test graph that every protocol needs."""

    def __init__(self, data: HeteroData, exclude: Tensor | None, domains: Sequence[str] | None,
                 protocol: str, distributed: bool = False) -> None:
        from cdrgraph.train.distributed import get_rank, get_world_size
        self.world = get_world_size() if distributed else 1
        self.rank = get_rank() if distributed else 0
        if (not isinstance(data, HeteroData) or INTERACTS not in data.edge_types
                or ITEM not in data.node_types):
            raise TypeError(f'Evaluator: expected a cdrgraph HeteroData with {INTERACTS} edges '
                            '(a val/test graph '
                            f'of a split transform), got {type(data).__name__}')
        self.store = data[INTERACTS]
        lab = getattr(self.store, 'edge_label_index', None)
        if lab is None:
            raise ValueError(f'{_FIELD}.edge_label_index is missing: evaluate the val/test graph '
                             'returned by a '
                             'split transform (e.g. GivenSplit()(data)[2])')
        split_name = getattr(data, 'split_name', None)
        if split_name == 'train' and protocol in ('sampled', 'full'):
            raise ValueError("Evaluator: data.split_name is 'train': its edge_label_index are training "
                             'edges, '
                             'which ranking protocols exclude; pass the val or test graph of the split')
        self.lab = lab.long().cpu()
        self.train_ei = self.store.edge_index.long().cpu()
        self.num_items = int(data[ITEM].num_nodes)
        self.num_users = int(data[USER].num_nodes)
        self.item_dom = data[ITEM].domain.long().cpu()
        self.pos_dom = self.item_dom[self.lab[1]]
        self.train_deg = torch.bincount(self.train_ei[1], minlength=self.num_items)
        neg = getattr(self.store, 'edge_label_neg', None)
        self.neg = None if neg is None else neg.long().cpu()
        if self.neg is not None and (self.neg.dim() != 2 or self.neg.size(0) != self.lab.size(1)):
            raise ValueError(f'{_FIELD}.edge_label_neg has shape {tuple(self.neg.shape)}, expected '
                             f'[{self.lab.size(1)}, N] (one candidate row per edge_label_index column)')
        all_names = domain_names(data)
        if domains is None:
            self.domains = list(enumerate(all_names))
        else:
            unknown = [d for d in domains if d not in all_names]
            if unknown:
                raise KeyError(f'Evaluator: unknown domain(s) {unknown}; the graph has {all_names}')
            self.domains = [(all_names.index(d), d) for d in domains]
        self.exclude_keys: Tensor | None = None
        if exclude is not None:
            exclude = torch.as_tensor(exclude)
            if exclude.dim() != 2 or exclude.size(0) != 2 or exclude.is_floating_point():
                raise ValueError(f'Evaluator: exclude must be long[2, E] (user, item) pairs, got shape '
                                 f'{tuple(exclude.shape)} and dtype {exclude.dtype}')
            exclude = exclude.long().cpu()
            bad = ((exclude[0] < 0) | (exclude[0] >= self.num_users)
                   | (exclude[1] < 0) | (exclude[1] >= self.num_items))
            if bool(bad.any()):
                raise ValueError(f'Evaluator: exclude holds {int(bad.sum())} pairs outside the graph '
                                 f'({self.num_users} users, {self.num_items} items)')
            self.exclude_keys = torch.unique(exclude[0] * self.num_items + exclude[1])

    def rows_of(self, k: int) -> Tensor:
        r"""Held-out rows of domain ``k`` (of this rank's users when distributed)."""
        sel = self.pos_dom == k
        if self.world > 1:
            sel &= self.lab[0] % self.world == self.rank
        return sel.nonzero().view(-1)

    def sum_counts(self, result: dict[str, float], name: str, keys: Sequence[str]) -> None:
        r"""Sum the counts ``<key>/<name>`` of ``result`` over the ranks (distributed only)."""
        if self.world == 1:
            return
        from cdrgraph.train.distributed import all_reduce_sum
        total = all_reduce_sum([result.get(f'{key}/{name}', 0) for key in keys])
        for key, val in zip(keys, total, strict=True):
            result[f'{key}/{name}'] = int(val)

    def merge(self, acc: Any) -> Any:
        r"""The metric accumulator ``acc`` merged with those of the other ranks
        (rank order; distributed only)."""
        if self.world == 1:
            return acc
        from cdrgraph.train.distributed import all_gather_object
        gathered = all_gather_object(acc)
        return gathered[0].merge(gathered[1:])

    def require_neg(self, what: str) -> Tensor:
        if self.neg is None:
            raise ValueError(f'{_FIELD}.edge_label_neg is missing: {what} needs candidate lists; apply '
                             'cdrgraph.transforms.EvalCandidates(num_negatives=...) to the split, '
                             "or use Evaluator(protocol='full')")
        return self.neg

    def exclusion_keys(self, k: int) -> Tensor:
        r"""Sorted unique keys ``user * num_items + item`` of the training edges (+ exclude)
        of domain ``k``."""
        ei = self.train_ei
        keys = ei[0, self.item_dom[ei[1]] == k] * self.num_items + ei[1, self.item_dom[ei[1]] == k]
        if self.exclude_keys is not None:
            ex = self.exclude_keys
            keys = torch.cat([keys, ex[self.item_dom[ex % self.num_items] == k]])
        return torch.unique(keys)
