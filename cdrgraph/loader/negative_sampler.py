r"""Training-time negative sampling inside the positive's domain (MODELS.md §0.4)."""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import ITEM, USER, domain_names, num_domains
from cdrgraph.loader.views import train_edge_index

__all__ = ['NegativeSampler']


class NegativeSampler:
    r"""Uniform training negatives from :math:`I_k^{train} \setminus N_k(u)`
    (MODELS.md §0.4).

    For a row with user :math:`u` and domain :math:`k`, every negative is drawn
    uniformly from the items of domain :math:`k` that have at least one
    training edge (:math:`I_k^{train}`), excluding the user's training items
    :math:`N_k(u)` and the pairs of ``exclude_links``. The ``n`` draws of a
    row are independent, so duplicates across them are possible.

    The draw is exact and loop-free: instead of re-drawing rejected items,
    a rank :math:`r` is drawn uniformly in ``[0, |I_k^train| - |excluded|)``
    and mapped to the :math:`r`-th non-excluded item with one
    :func:`torch.searchsorted` over the sorted exclusion keys. This has the
    same distribution as rejection sampling with re-draws, needs a fixed
    number of random numbers (``B * n`` per call) and never loops.

    The training edges are ``interacts.edge_index`` (restricted to
    ``split == TRAIN`` when the graph still carries a given ``split``
    attribute), see :mod:`cdrgraph.loader.views`.

    Args:
        data (HeteroData): the training graph.
        seed (int, optional): seed of the internal generator used when
            :meth:`sample` gets no ``generator``. (default: :obj:`0`)
        exclude_links (Tensor, optional): ``long[2, E']`` extra global
            ``(user, item)`` pairs never to return as negatives, e.g. UniCDR's
            EASE pseudo-positives (``model.ease_pseudo_links()``, MODELS.md
            §3.3). They are rejected exactly like the training positives (the
            same rank mapping, no re-draws); pairs that are training positives
            already, or whose item has no training edge, change nothing, and
            :obj:`None` or an empty tensor gives the same draws as no
            exclusion. (default: :obj:`None`)

    Example:
        >>> sampler = NegativeSampler(train_data, seed=0)
        >>> users, pos = train_data['user', 'interacts', 'item'].edge_index[:, :4]
        >>> neg = sampler.sample(users, train_data['item'].domain[pos], num_negatives=5)
        >>> neg.shape
        torch.Size([4, 5])
    """

    def __init__(self, data: HeteroData, seed: int = 0, exclude_links: Tensor | None = None) -> None:
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.domain_names = domain_names(data)
        self.num_users = int(data[USER].num_nodes)
        self.num_items = int(data[ITEM].num_nodes)
        self.num_domains = num_domains(data)
        item_dom = data[ITEM].domain
        k = self.num_domains

        ei = train_edge_index(data)
        # pool = I_k^train of every domain, grouped by domain (ascending item id inside)
        pool = torch.unique(ei[1])
        pool = pool[torch.argsort(item_dom[pool] * max(self.num_items, 1) + pool)]
        self.pool = pool
        self.pool_count = torch.bincount(item_dom[pool], minlength=k)
        self.pool_ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(self.pool_count, 0)])
        num_pool = max(pool.numel(), 1)
        self.num_pool = num_pool

        excl = ei
        #: number of ``exclude_links`` pairs given (before deduplication)
        self.num_exclude_links = 0
        if exclude_links is not None:
            extra = self._check_links(exclude_links)
            self.num_exclude_links = int(extra.size(1))
            excl = torch.cat([ei, extra], dim=1)
        #: sorted ``user * I + item`` keys of every excluded pair
        self.excluded_keys = torch.unique(excl[0] * self.num_items + excl[1])

        # excluded pairs restricted to the pool, as (user, pool position), sorted
        pos_of_item = torch.full((self.num_items,), -1, dtype=torch.long)
        pos_of_item[pool] = torch.arange(pool.numel())
        ex_user = self.excluded_keys // max(self.num_items, 1)
        ex_pos = pos_of_item[self.excluded_keys % max(self.num_items, 1)]
        keep = ex_pos >= 0
        ex_user, ex_pos = ex_user[keep], ex_pos[keep]
        order = torch.argsort(ex_user * num_pool + ex_pos)    # by (user, domain, pool position)
        ex_user, ex_pos = ex_user[order], ex_pos[order]
        ex_dom = item_dom[pool[ex_pos]] if ex_pos.numel() else ex_pos
        seg = ex_user * k + ex_dom
        #: ``seg_ptr[u * K + d] : seg_ptr[u * K + d + 1]`` = the excluded pool items of (u, d)
        self.seg_ptr = torch.zeros(self.num_users * k + 1, dtype=torch.long)
        self.seg_ptr[1:] = torch.cumsum(torch.bincount(seg, minlength=self.num_users * k), 0)
        rank = torch.arange(seg.numel()) - self.seg_ptr[seg]
        # number of valid items before each excluded one, shifted into its own (user, domain) key range:
        # the r-th valid item of (u, d) is at pool position start_d + r + #{excluded with valid_before <= r}
        valid_before = ex_pos - self.pool_ptr[ex_dom] - rank
        self._shift_keys = ex_user * num_pool + self.pool_ptr[ex_dom] + valid_before

    # ---------------------------------------------------------------- helpers
    def _check_links(self, links: Tensor) -> Tensor:
        r"""``exclude_links`` as a CPU ``long[2, E]`` tensor of valid global ids."""
        if not isinstance(links, Tensor):
            raise TypeError('NegativeSampler(exclude_links=...): expected a long[2, E] tensor of global (user, '
                            f'item) pairs, got {type(links).__name__}')
        if links.is_floating_point() or links.dtype == torch.bool:
            raise TypeError(f'NegativeSampler(exclude_links=...): expected integer ids, got dtype {links.dtype}')
        links = links.detach().to('cpu', torch.long)
        if links.dim() != 2 or links.size(0) != 2:
            raise ValueError('NegativeSampler(exclude_links=...): expected long[2, E] (user, item) pairs, got '
                             f'shape {tuple(links.shape)}; stack them as torch.stack([users, items])')
        if links.numel() and (int(links[0].min()) < 0 or int(links[0].max()) >= self.num_users
                              or int(links[1].min()) < 0 or int(links[1].max()) >= self.num_items):
            raise ValueError('NegativeSampler(exclude_links=...): user ids must lie in '
                             f'[0, {self.num_users}) and item ids in [0, {self.num_items}) (global ids of the '
                             'training graph)')
        return links

    def num_excluded(self, users: Tensor, domains: Tensor) -> Tensor:
        r"""``long[B]`` number of excluded items of :math:`I_k^{train}` for each (user, domain)."""
        s = users * self.num_domains + domains
        return self.seg_ptr[s + 1] - self.seg_ptr[s]

    def check(self, users: Tensor, domains: Tensor) -> None:
        r"""Raise :class:`ValueError` when some row has no valid negative
        (its user has interacted with every training item of its domain)."""
        users = torch.as_tensor(users, dtype=torch.long).view(-1)
        domains = torch.as_tensor(domains, dtype=torch.long).view(-1)
        self._raise_if_empty(users, domains, self.pool_count[domains] - self.num_excluded(users, domains))

    def _raise_if_empty(self, users: Tensor, domains: Tensor, num_valid: Tensor) -> None:
        empty = num_valid <= 0
        if bool(empty.any()):
            row = int(empty.nonzero()[0])
            d = int(domains[row])
            raise ValueError(
                f'NegativeSampler: user {int(users[row])} has no valid negative in domain '
                f"{self.domain_names[d]!r}: all {int(self.pool_count[d])} items with a training edge there "
                f'(I_k^train) are among its training positives or exclude_links ({int(empty.sum())} rows affected). '
                'Drop such rows from the supervision edges or add items to the domain.')

    def is_excluded(self, users: Tensor, items: Tensor) -> Tensor:
        r"""``bool[...]``: whether each ``(user, item)`` pair is a training
        positive or one of ``exclude_links``, i.e. can never be drawn as a negative."""
        users = torch.as_tensor(users, dtype=torch.long)
        key = users * self.num_items + torch.as_tensor(items, dtype=torch.long)
        if self.excluded_keys.numel() == 0:
            return torch.zeros_like(key, dtype=torch.bool)
        idx = torch.searchsorted(self.excluded_keys, key).clamp(max=self.excluded_keys.numel() - 1)
        return self.excluded_keys[idx] == key

    # ----------------------------------------------------------------- sample
    def sample(self, users: Tensor, domains: Tensor, num_negatives: int,
               generator: torch.Generator | None = None) -> Tensor:
        r"""Draw ``num_negatives`` negatives for each row.

        Args:
            users (Tensor): ``long[B]`` global user ids.
            domains (Tensor): ``long[B]`` domain of each row (the domain of
                its positive item).
            num_negatives (int): ``n``.
            generator (torch.Generator, optional): source of randomness;
                the sampler's own generator (seeded with ``seed``) when
                :obj:`None`.

        Returns:
            ``long[B, n]`` global item node ids.

        Raises:
            ValueError: when a user has interacted with every training item
                of a row's domain (no valid negative exists).
        """
        users = torch.as_tensor(users, dtype=torch.long).view(-1).cpu()
        domains = torch.as_tensor(domains, dtype=torch.long).view(-1).cpu()
        n = int(num_negatives)
        if n < 0:
            raise ValueError(f'NegativeSampler.sample: num_negatives must be >= 0, got {n}')
        if users.numel() != domains.numel():
            raise ValueError(f'NegativeSampler.sample: users ({users.numel()}) and domains '
                             f'({domains.numel()}) must have one entry per row')
        b = users.numel()
        if b == 0 or n == 0:
            return torch.empty(b, n, dtype=torch.long)
        if int(users.min()) < 0 or int(users.max()) >= self.num_users:
            raise ValueError(f'NegativeSampler.sample: user ids must lie in [0, {self.num_users})')
        if int(domains.min()) < 0 or int(domains.max()) >= self.num_domains:
            raise ValueError(f'NegativeSampler.sample: domains must lie in [0, {self.num_domains})')
        gen = self.generator if generator is None else generator

        seg = users * self.num_domains + domains
        lo = self.seg_ptr[seg]
        num_valid = self.pool_count[domains] - (self.seg_ptr[seg + 1] - lo)
        self._raise_if_empty(users, domains, num_valid)
        rank = (torch.rand(b, n, generator=gen, dtype=torch.float64) * num_valid.unsqueeze(1)).long()
        rank = torch.minimum(rank, (num_valid - 1).unsqueeze(1))
        start = self.pool_ptr[domains]
        base = users * self.num_pool + start
        hi = torch.searchsorted(self._shift_keys, base.unsqueeze(1) + rank, right=True)
        pos = start.unsqueeze(1) + rank + (hi - lo.unsqueeze(1))
        return self.pool[pos]

    def __repr__(self) -> str:
        extra = f', num_exclude_links={self.num_exclude_links}' if self.num_exclude_links else ''
        return (f'{self.__class__.__name__}(num_users={self.num_users}, num_items={self.num_items}, '
                f'num_domains={self.num_domains}, seed={self.seed}{extra})')
