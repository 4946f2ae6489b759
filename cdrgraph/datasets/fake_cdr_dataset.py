r"""A seeded synthetic multi-domain recommendation graph with a known latent structure."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData, InMemoryDataset

from cdrgraph.data.build import IdMaps, from_interactions
from cdrgraph.data.schema import INTERACTS, ITEM, USER, domain_names, validate

#: fewest interactions of a user in a domain where it is active (enough for leave-one-out with validation)
MIN_DEGREE = 3
#: scale of the latent affinity in the sampling logits (``logit = SCALE * <p, q> / sqrt(D) + log popularity``)
SCALE = 3.0
#: first timestamp of the synthetic interactions (2020-09-13, seconds)
T0 = 1_600_000_000


class FakeCDRDataset(InMemoryDataset):
    r"""A seeded synthetic cross-domain recommendation dataset (in memory,
    like PyG's :class:`~torch_geometric.datasets.FakeHeteroDataset`) with a
    latent structure that makes cross-domain transfer measurable.

    Generative model (``D = embedding_dim``, ``w = shared_weight``):

    * every user ``u`` has a shared preference :math:`\mathbf{s}_u` and a
      domain-specific one :math:`\mathbf{p}_{u,k}` (standard normal), and
      prefers :math:`\mathbf{r}_{u,k} = \sqrt{w}\,\mathbf{s}_u +
      \sqrt{1-w}\,\mathbf{p}_{u,k}` in domain ``k``;
    * every item has one latent vector :math:`\mathbf{q}_i` in its domain; an
      item with a real-world counterpart in the other domains (a fraction
      ``item_overlap``, ``item.shared_id``) mixes a common vector with a
      domain-specific one in the same proportions;
    * item popularity follows a Zipf law :math:`\pi_i \propto
      \mathrm{rank}^{-\texttt{degree\_skew}}` (random ranks per domain); user
      activity is log-normal with :math:`\sigma = \texttt{degree\_skew}`,
      rescaled so the mean degree per active (user, domain) is about
      ``avg_degree`` (at least :data:`MIN_DEGREE`, at most the domain size);
    * a user draws its items of a domain without replacement from
      :math:`\mathrm{softmax}_i(3\,\langle\mathbf{r}_{u,k},
      \mathbf{q}_i\rangle/\sqrt{D} + \log\pi_i)` (Gumbel top-k); every item
      gets at least one interaction (its best-scoring user adds it, a few
      edges beyond the drawn degrees), so ``num_items`` is exact;
    * a fraction ``user_overlap`` of the users is active in every domain, the
      others in one domain each (balanced);
    * timestamps are strictly increasing per user (exponential gaps), ratings
      are ``clip(round(3.5 + z + noise), 1, 5)`` of the standardised latent
      affinity ``z``, behaviours grow with the noisy affinity (type ``b``
      above the ``1 - 2^-b`` quantile: half the interactions are type 0, a
      quarter type 1, ...; the deepest type takes the rest).

    Generation costs ``O(num_users * num_items)`` (dense scores, chunked): about
    0.1 s at the defaults, but about 390 s for 100k users x 200k items on one
    core. For large graphs ``num_candidates = C`` draws from the same softmax
    approximately (sampled softmax with the popularity prior as proposal):
    each active (user, domain) scores ``C`` candidates drawn with
    probability :math:`\pi_i` (duplicates removed) and keeps the Gumbel top-k
    of :math:`3\,\langle\mathbf{r}_{u,k}, \mathbf{q}_i\rangle/\sqrt{D}`
    among them; degrees are capped at ``C`` and items no candidate list
    reached get one random active user of their domain, so cost is
    ``O(num_users * C)`` (1M users, 200k items, 10M edges in about a minute).

    The generator's own factors are kept in :attr:`latent` (aligned with the
    node indices), so tests can check that the shared part learned from one
    domain predicts another. User ``u`` is node ``u``; item ``j`` of domain
    ``k`` is node ``sum(num_items[:k]) + j``; domains are named ``'d0'``,
    ``'d1'``, ...

    Args:
        num_domains (int, optional): number of domains. (default: :obj:`2`)
        num_users (int, optional): number of users. (default: :obj:`500`)
        num_items (int or list[int], optional): items per domain.
            (default: :obj:`200`)
        avg_degree (float, optional): mean number of interactions per active
            (user, domain). (default: :obj:`10.0`)
        user_overlap (float, optional): fraction of users active in every
            domain. (default: :obj:`0.5`)
        item_overlap (float, optional): fraction of the smallest domain's
            items that exist in every domain (same ``item.shared_id``);
            ``item.shared_id`` is only stored when this is positive.
            (default: :obj:`0.0`)
        degree_skew (float, optional): Zipf exponent of item popularity and
            log-normal sigma of user activity; ``0`` gives uniform popularity
            and equal degrees. (default: :obj:`1.0`)
        embedding_dim (int, optional): latent dimension ``D``.
            (default: :obj:`8`)
        shared_weight (float, optional): share ``w`` of a user's preference
            that is common to all domains (``0``: domains independent,
            ``1``: identical tastes). (default: :obj:`0.7`)
        num_behaviors (int, optional): number of behaviour types; with more
            than one, ``interacts.behavior`` holds ``0 ... num_behaviors - 1``.
            (default: :obj:`1`)
        timestamps (bool, optional): store ``interacts.time``.
            (default: :obj:`True`)
        ratings (bool, optional): store ``interacts.rating`` in ``1 ... 5``.
            (default: :obj:`False`)
        num_candidates (int, optional): approximate generation from this many
            popularity-drawn candidates per active (user, domain) (see above);
            :obj:`None` scores every item. (default: :obj:`None`)
        side_features (bool, optional): store ``x_cat`` (``long[N, F]``,
            value ``0`` = missing), ``x_cat_vocab`` (``long[F]``) and dense
            ``x`` (``float[N, 4]``) for users and items. User fields: home
            domain, activity quartile, taste cluster; item fields: taste
            cluster, popularity quartile. (default: :obj:`True`)
        seed (int, optional): random seed; the same seed gives the same graph.
            (default: :obj:`0`)
        transform (callable, optional): applied on every access.
        pre_transform (callable, optional): applied once after generation.
        root (str, optional): ignored (nothing is written); accepted so that
            every dataset can be built as ``Dataset(root=..., ...)``.

    Example:
        >>> from cdrgraph.datasets.fake_cdr_dataset import FakeCDRDataset
        >>> dataset = FakeCDRDataset(num_users=100, num_items=50, seed=0)
        >>> data = dataset[0]
        >>> dataset.domain_names
        ['d0', 'd1']
        >>> data['item'].num_nodes
        100
    """

    def __init__(
        self,
        num_domains: int = 2,
        num_users: int = 500,
        num_items: int | Sequence[int] = 200,
        avg_degree: float = 10.0,
        user_overlap: float = 0.5,
        item_overlap: float = 0.0,
        degree_skew: float = 1.0,
        embedding_dim: int = 8,
        shared_weight: float = 0.7,
        num_behaviors: int = 1,
        timestamps: bool = True,
        ratings: bool = False,
        side_features: bool = True,
        num_candidates: int | None = None,
        seed: int = 0,
        transform: Callable | None = None,
        pre_transform: Callable | None = None,
        root: str | None = None,
    ) -> None:
        super().__init__(None, transform, pre_transform)
        items = [int(num_items)] * int(num_domains) if isinstance(num_items, (int, np.integer)) else \
            [int(n) for n in num_items]
        self.num_domains = int(num_domains)
        self.num_users = int(num_users)
        self.num_items = items
        self.avg_degree = float(avg_degree)
        self.user_overlap = float(user_overlap)
        self.item_overlap = float(item_overlap)
        self.degree_skew = float(degree_skew)
        self.embedding_dim = int(embedding_dim)
        self.shared_weight = float(shared_weight)
        self.num_behaviors = int(num_behaviors)
        self.timestamps = bool(timestamps)
        self.ratings = bool(ratings)
        self.side_features = bool(side_features)
        self.num_candidates = None if num_candidates is None else int(num_candidates)
        self.seed = int(seed)
        self._check_args()

        data, self._id_maps, self.latent = self._generate()
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        validate(data)
        self.data, self.slices = self.collate([data])

    # ---------------------------------------------------------------- checks
    def _check_args(self) -> None:
        def bad(name: str, value: object, rule: str) -> None:
            raise ValueError(f'FakeCDRDataset: {name}={value!r} is invalid; {rule}')

        if self.num_domains < 1:
            bad('num_domains', self.num_domains, 'use at least 1 domain')
        if len(self.num_items) != self.num_domains:
            bad('num_items', self.num_items, f'give one int or a list of {self.num_domains} ints')
        if min(self.num_items) < 1:
            bad('num_items', self.num_items, 'every domain needs at least 1 item')
        if not 0.0 <= self.user_overlap <= 1.0:
            bad('user_overlap', self.user_overlap, 'use a fraction in [0, 1]')
        if not 0.0 <= self.item_overlap <= 1.0:
            bad('item_overlap', self.item_overlap, 'use a fraction in [0, 1]')
        if not 0.0 <= self.shared_weight <= 1.0:
            bad('shared_weight', self.shared_weight, 'use a weight in [0, 1]')
        if not self.avg_degree > 0:
            bad('avg_degree', self.avg_degree, 'use a positive mean degree')
        if self.degree_skew < 0:
            bad('degree_skew', self.degree_skew, 'use a non-negative exponent')
        if self.embedding_dim < 1:
            bad('embedding_dim', self.embedding_dim, 'use at least 1 latent dimension')
        if self.num_behaviors < 1:
            bad('num_behaviors', self.num_behaviors, 'use at least 1 behaviour type')
        if self.num_candidates is not None and self.num_candidates < MIN_DEGREE:
            bad('num_candidates', self.num_candidates, f'use None (exact) or at least {MIN_DEGREE} candidates')
        n_over = self._num_overlap_users()
        rest = self.num_users - n_over
        if self.num_users < 1 or (n_over == 0 and rest < self.num_domains):
            bad('num_users', self.num_users,
                f'every domain needs a user: use num_users >= num_domains ({self.num_domains}) '
                'or user_overlap > 0')

    def _num_overlap_users(self) -> int:
        if self.num_domains == 1:
            return self.num_users
        return int(round(self.user_overlap * self.num_users))

    # ------------------------------------------------------------ generation
    def _generate(self) -> tuple[HeteroData, IdMaps, dict[str, Tensor]]:
        rng = np.random.default_rng(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        K, U, D, w = self.num_domains, self.num_users, self.embedding_dim, self.shared_weight
        a, b = math.sqrt(w), math.sqrt(1.0 - w)

        # users: which domains they are active in
        n_over = self._num_overlap_users()
        perm = rng.permutation(U)
        active = np.zeros((U, K), dtype=bool)
        active[perm[:n_over]] = True
        rest = perm[n_over:]
        active[rest, rng.permutation(np.arange(rest.size) % K)] = True

        # latent factors
        s = torch.randn(U, D, generator=gen)
        p = torch.randn(U, K, D, generator=gen)
        pref = a * s.unsqueeze(1) + b * p                          # [U, K, D]
        n_shared = int(round(self.item_overlap * min(self.num_items))) if K > 1 else 0
        common = torch.randn(n_shared, D, generator=gen)
        q_list, log_pop = [], []
        for n in self.num_items:
            q = torch.randn(n, D, generator=gen)
            q[:n_shared] = a * common + b * q[:n_shared]
            q_list.append(q)
            ranks = torch.as_tensor(rng.permutation(n) + 1, dtype=torch.float)
            log_pop.append(-self.degree_skew * ranks.log())
        activity = np.exp(self.degree_skew * rng.standard_normal(U))

        users, items, doms, affinity = [], [], [], []
        for k, n in enumerate(self.num_items):
            uk = torch.as_tensor(np.flatnonzero(active[:, k]))
            if self.num_candidates is None:
                deg = self._degrees(activity[uk.numpy()], n)
                lrow_t, col_t, lat_t = self._draw_dense(pref[:, k], uk, q_list[k], log_pop[k], deg, gen)
            else:
                deg = self._degrees(activity[uk.numpy()], min(n, self.num_candidates))
                lrow_t, col_t, lat_t = self._draw_from_candidates(pref[:, k], uk, q_list[k], log_pop[k], deg, gen)
            users.append(uk[lrow_t])
            items.append(col_t)
            doms.append(torch.full_like(col_t, k))
            affinity.append(lat_t)
        user = torch.cat(users)
        item = torch.cat(items)
        dom = torch.cat(doms)
        z = torch.cat(affinity)
        z = (z - z.mean()) / z.std().clamp(min=1e-6) if z.numel() > 1 else z * 0
        E = user.numel()

        names = [f'd{k}' for k in range(K)]
        df = pd.DataFrame({'user': user.numpy(), 'item': item.numpy(),
                           'domain': np.asarray(names, dtype=object)[dom.numpy()]})
        kw: dict = {}
        if self.timestamps:
            order = np.lexsort((rng.random(E), user.numpy()))
            gaps = np.ceil(rng.exponential(86_400.0, E)).astype(np.int64) + 1
            sorted_user = user.numpy()[order]
            cs = np.cumsum(gaps)
            start = np.r_[0, np.flatnonzero(np.diff(sorted_user)) + 1]
            group_start = np.repeat(cs[start] - gaps[start], np.diff(np.r_[start, E]))
            offset = rng.integers(0, 300 * 86_400, U)
            t = np.empty(E, dtype=np.int64)
            t[order] = T0 + offset[sorted_user] + cs - group_start
            df['time'] = t
            kw['time'] = 'time'
        if self.ratings:
            noise = rng.normal(0.0, 0.5, E)
            df['rating'] = np.clip(np.round(3.5 + z.numpy() + noise), 1, 5).astype(np.float32)
            kw['rating'] = 'rating'
        if self.num_behaviors > 1:
            u = z.numpy() + rng.standard_normal(E)
            qs = np.quantile(u, [1.0 - 0.5 ** j for j in range(1, self.num_behaviors)])
            df['behavior'] = (u[:, None] > qs[None, :]).sum(1).astype(np.int64)
            kw['behavior'] = 'behavior'
        if n_shared > 0:
            offsets = np.cumsum([0] + [n - n_shared for n in self.num_items])
            it, dm = item.numpy(), dom.numpy()
            df['shared'] = np.where(it < n_shared, it, n_shared + offsets[dm] + it - n_shared)
            kw['shared_item'] = 'shared'
        # canonical edge order: user, then time (or draw order)
        by = ['user', 'time'] if self.timestamps else ['user']
        df = df.sort_values(by, kind='stable').reset_index(drop=True)
        data, id_maps = from_interactions(df, domains=names, source='FakeCDRDataset', return_id_maps=True,
                                          **kw)

        q_all = torch.cat(q_list)
        if self.side_features:
            self._add_side_features(data, rng, gen, s, q_all, active)
        latent = {'user_shared': s, 'user_specific': p, 'user_pref': pref, 'item': q_all,
                  'item_log_popularity': torch.cat(log_pop)}
        return data, id_maps, latent

    @staticmethod
    def _take_top(noisy: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        r"""``(row, column)`` of the ``d[row]`` largest entries of every row of ``noisy``."""
        top = noisy.topk(int(d.max()), dim=1).indices
        keep = torch.arange(top.size(1)).unsqueeze(0) < d.unsqueeze(1)
        return torch.arange(noisy.size(0)).unsqueeze(1).expand_as(top)[keep], top[keep]

    def _cover(self, pref_k: Tensor, uk: Tensor, q: Tensor, lrow: Tensor, col: Tensor, lat: Tensor,
               fallback: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        r"""Every item gets at least one interaction: the items no drawn edge
        reached get the row ``fallback(missing)`` of ``uk``."""
        covered = torch.zeros(q.size(0), dtype=torch.bool)
        covered[col] = True
        missing = (~covered).nonzero().view(-1)
        if not missing.numel():
            return lrow, col, lat
        extra = fallback(missing)
        lat_m = (pref_k[uk[extra]] * q[missing]).sum(-1) / math.sqrt(self.embedding_dim)
        return torch.cat([lrow, extra]), torch.cat([col, missing]), torch.cat([lat, lat_m])

    def _draw_dense(self, pref_k: Tensor, uk: Tensor, q: Tensor, log_pop: Tensor, degrees: np.ndarray,
                    gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        r"""``(row in uk, item, latent affinity)`` of one domain: Gumbel top-k
        over every item (exact); uncovered items go to their best-scoring user."""
        n = q.size(0)
        deg = torch.as_tensor(degrees)
        lrow, col, lat_e = [], [], []
        best_val = torch.full((n,), -math.inf)
        best_row = torch.zeros(n, dtype=torch.long)
        chunk = max(1, (1 << 22) // max(n, 1))
        for lo in range(0, uk.numel(), chunk):
            hi = min(lo + chunk, uk.numel())
            lat = pref_k[uk[lo:hi]] @ q.t() / math.sqrt(self.embedding_dim)        # [chunk, n]
            gumbel = -torch.empty_like(lat).exponential_(generator=gen).log()
            noisy = SCALE * lat + log_pop + gumbel
            r, c = self._take_top(noisy, deg[lo:hi])
            lrow.append(r + lo)
            col.append(c)
            lat_e.append(lat[r, c])
            val, arg = noisy.max(dim=0)
            better = val > best_val
            best_val = torch.where(better, val, best_val)
            best_row = torch.where(better, arg + lo, best_row)
        return self._cover(pref_k, uk, q, torch.cat(lrow), torch.cat(col), torch.cat(lat_e),
                           lambda missing: best_row[missing])

    def _draw_from_candidates(self, pref_k: Tensor, uk: Tensor, q: Tensor, log_pop: Tensor, degrees: np.ndarray,
                              gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        r"""``(row in uk, item, latent affinity)`` of one domain drawn from
        ``num_candidates`` popularity-drawn candidates per user (the
        ``num_candidates`` mode)."""
        n, D = q.size(0), self.embedding_dim
        C = min(int(self.num_candidates or n), n)
        prob = (log_pop - log_pop.max()).exp()
        deg = torch.as_tensor(degrees)
        lrow, col, lat_e = [], [], []
        chunk = max(1, (1 << 22) // C)
        for lo in range(0, uk.numel(), chunk):
            hi = min(lo + chunk, uk.numel())
            cand = torch.multinomial(prob, (hi - lo) * C, replacement=True, generator=gen).view(hi - lo, C)
            cand, _ = cand.sort(dim=1)
            dup = torch.zeros_like(cand, dtype=torch.bool)
            dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
            lat = torch.bmm(q[cand], pref_k[uk[lo:hi]].unsqueeze(-1)).squeeze(-1) / math.sqrt(D)   # [chunk, C]
            gumbel = -torch.empty_like(lat).exponential_(generator=gen).log()
            noisy = (SCALE * lat + gumbel).masked_fill(dup, -math.inf)
            r, c = self._take_top(noisy, torch.minimum(deg[lo:hi], (~dup).sum(1)))
            lrow.append(r + lo)
            col.append(cand[r, c])
            lat_e.append(lat[r, c])
        # items no candidate list reached: a random active user of the domain
        return self._cover(pref_k, uk, q, torch.cat(lrow), torch.cat(col), torch.cat(lat_e),
                           lambda missing: torch.randint(uk.numel(), (missing.numel(),), generator=gen))

    def _degrees(self, activity: np.ndarray, num_items: int) -> np.ndarray:
        lo = min(MIN_DEGREE, num_items)
        target = min(max(self.avg_degree, lo), num_items)
        act = activity / activity.mean()

        def mean_degree(c: float) -> float:
            return float(np.clip(np.round(c * act), lo, num_items).mean())

        c_lo, c_hi = 0.0, target
        while mean_degree(c_hi) < target and c_hi < 1e9:
            c_hi *= 2
        for _ in range(50):
            mid = 0.5 * (c_lo + c_hi)
            if mean_degree(mid) < target:
                c_lo = mid
            else:
                c_hi = mid
        return np.clip(np.round(c_hi * act), lo, num_items).astype(np.int64)

    def _add_side_features(self, data: HeteroData, rng: np.random.Generator, gen: torch.Generator,
                           s: Tensor, q: Tensor, active: np.ndarray) -> None:
        D = self.embedding_dim
        C = min(D, 4)
        ei = data[INTERACTS].edge_index
        dom = data[ITEM].domain
        U, num_items = int(data[USER].num_nodes), int(data[ITEM].num_nodes)

        def quartile(values: Tensor) -> Tensor:
            cuts = torch.quantile(values.float(), torch.tensor([0.25, 0.5, 0.75]))
            return torch.bucketize(values.float(), cuts, right=True) + 1          # 1..4, 0 = missing

        def with_missing(col: Tensor, frac: float = 0.1) -> Tensor:
            mask = torch.as_tensor(rng.random(col.numel()) < frac)
            return col.masked_fill(mask, 0)

        per_dom = torch.zeros(U, self.num_domains, dtype=torch.long)
        per_dom.index_put_((ei[0], dom[ei[1]]), torch.ones(ei.size(1), dtype=torch.long), accumulate=True)
        home = per_dom.argmax(1) + 1
        user_deg = per_dom.sum(1)
        taste_u = with_missing(s[:, :C].argmax(1) + 1)
        data[USER].x_cat = torch.stack([home, quartile(user_deg), taste_u], dim=1)
        data[USER].x_cat_vocab = torch.tensor([self.num_domains + 1, 5, C + 1])
        item_deg = torch.bincount(ei[1], minlength=num_items)
        taste_i = with_missing(q[:, :C].argmax(1) + 1)
        data[ITEM].x_cat = torch.stack([taste_i, quartile(item_deg)], dim=1)
        data[ITEM].x_cat_vocab = torch.tensor([C + 1, 5])
        proj = torch.randn(D, 4, generator=gen) / math.sqrt(D)
        data[USER].x = s @ proj + 0.5 * torch.randn(U, 4, generator=gen)
        data[ITEM].x = q @ proj + 0.5 * torch.randn(num_items, 4, generator=gen)

    # ------------------------------------------------------------- accessors
    @property
    def domain_names(self) -> list[str]:
        r"""Domain names ``['d0', 'd1', ...]``."""
        return domain_names(self._data)

    @property
    def id_maps(self) -> IdMaps:
        r"""Raw ids in node order per node type (users: ints; items: ``'<domain>/<j>'``)."""
        return self._id_maps

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_domains={self.num_domains}, num_users={self.num_users}, '
                f'num_items={self.num_items}, num_edges={self._data[INTERACTS].edge_index.size(1)}, '
                f'seed={self.seed})')
