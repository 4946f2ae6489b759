r"""Epoch iterator over training supervision edges yielding :class:`CDRBatch` (DESIGN.md §3)."""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch_geometric.typing
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import INTERACTS, ITEM, REV_INTERACTS, TRAIN, USER, domain_names
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.loader.csr_sampler import CSRNeighborSampler, build_subgraph, global_to_local
from cdrgraph.loader.negative_sampler import NegativeSampler
from cdrgraph.loader.views import train_edge_index

__all__ = ['CDRLinkLoader', 'pyg_sampling_available']

DOMAIN_POLICIES = ('proportional', 'equal')
MODES = ('full', 'sampled')
BACKENDS = ('auto', 'pyg', 'csr')


def pyg_sampling_available() -> bool:
    r"""Whether PyG's neighbour sampling can run (``torch-sparse`` or ``pyg-lib`` installed)."""
    return bool(torch_geometric.typing.WITH_TORCH_SPARSE or torch_geometric.typing.WITH_PYG_LIB)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    r"""A :class:`torch.Generator` that is a pure function of ``(seed, epoch)``."""
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


class _PyGSubgraphSampler:
    r"""PyG's :class:`~torch_geometric.sampler.NeighborSampler` behind the
    :class:`CSRNeighborSampler` interface (same subgraph schema)."""

    def __init__(self, data: HeteroData, num_neighbors: Sequence[int]) -> None:
        if not pyg_sampling_available():
            raise ImportError("CDRLinkLoader(backend='pyg') needs PyG's sampling backend: install 'pyg-lib' "
                              "or 'torch-sparse' (pip install cdrgraph[sampling]), or use backend='csr'")
        from torch_geometric.sampler import NeighborSampler
        self.data = data
        ei = data[INTERACTS].edge_index
        e_id = torch.arange(ei.size(1))
        split = getattr(data[INTERACTS], 'split', None)
        if split is not None:
            e_id = e_id[split == TRAIN]
            ei = ei[:, e_id]
        self.e_id = e_id
        mp = HeteroData()
        mp[USER].num_nodes = int(data[USER].num_nodes)
        mp[ITEM].num_nodes = int(data[ITEM].num_nodes)
        mp[INTERACTS].edge_index = ei
        mp[REV_INTERACTS].edge_index = ei.flip(0)
        self.sampler = NeighborSampler(mp, num_neighbors=list(num_neighbors))

    def sample(self, users: Tensor, items: Tensor, generator: torch.Generator | None = None,
               ) -> tuple[HeteroData, dict[str, Tensor], dict[str, Tensor]]:
        from torch_geometric.sampler import EdgeSamplerInput
        length = max(users.numel(), items.numel())
        row = users[torch.arange(length) % users.numel()]
        col = items[torch.arange(length) % items.numel()]
        seed = int(torch.randint(1 << 62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = self.sampler.sample_from_edges(EdgeSamplerInput(None, row, col, input_type=INTERACTS))
        n_id = {USER: out.node[USER], ITEM: out.node[ITEM]}
        perm = self.sampler.edge_permutation or {}
        e_parts = []
        for et in (INTERACTS, REV_INTERACTS):
            if et in out.edge:
                e = out.edge[et]
                if perm.get(et) is not None:
                    e = perm[et][e]
                e_parts.append(e)
        e_id = self.e_id[torch.unique(torch.cat(e_parts))] if e_parts else torch.empty(0, dtype=torch.long)
        ei = self.data[INTERACTS].edge_index[:, e_id]
        local = torch.stack([global_to_local(n_id[USER], ei[0]), global_to_local(n_id[ITEM], ei[1])])
        graph = build_subgraph(self.data, n_id, local, e_id)
        seed_local = {USER: global_to_local(n_id[USER], users), ITEM: global_to_local(n_id[ITEM], items)}
        return graph, n_id, seed_local


class CDRLinkLoader:
    r"""Iterates over the training supervision edges of a cross-domain graph
    and yields :class:`~cdrgraph.loader.CDRBatch` objects with in-domain
    negatives (DESIGN.md §3, MODELS.md §0.4).

    **Supervision.** The positives are ``interacts.edge_label_index`` of the
    training graph, else ``interacts.edge_index``. ``CDRBatch.label`` is
    ``interacts.edge_label`` (else ``interacts.rating`` in the fallback) when
    it is not all ones, i.e. for explicit ratings; :obj:`None` otherwise.
    Validation/test graphs and graphs whose ``interacts.split`` still holds
    held-out edges are refused (apply a split transform first).

    **Negatives.** ``num_negatives`` per positive, drawn by
    :class:`~cdrgraph.loader.NegativeSampler` from the training items of the
    positive's domain, never a training positive of the user nor one of the
    pairs of ``exclude_links`` (e.g. UniCDR's EASE pseudo-positives,
    MODELS.md §3.3; :func:`cdrgraph.train.fit` passes
    ``model.ease_pseudo_links()`` when the model has it).

    **Domain policy.**

    * ``'proportional'``: one global shuffle over all supervision edges; each
      batch holds ``batch_size`` pairs and mixes domains in proportion to
      their size. ``len(loader) = ceil(E / batch_size)`` (floor with
      ``drop_last``).
    * ``'equal'``: every step yields ``batch_size`` pairs from **every**
      domain that has supervision edges (a batch holds
      ``K * batch_size`` pairs, domain blocks in domain order). Each domain's
      edges are consumed as a stream of independent shuffles (one pass after
      another), so smaller domains are re-shuffled and cycled, the largest
      domain makes exactly one pass (its last step is topped up from a fresh
      shuffle). ``len(loader) = ceil(max_k E_k / batch_size)`` (floor with
      ``drop_last``, so the largest domain is never cycled).

    **Modes.**

    * ``'full'``: ``batch.graph`` is the whole training graph, ``n_id`` the
      identity (:meth:`CDRBatch.full`).
    * ``'sampled'``: ``batch.graph`` is the subgraph sampled ``len(num_neighbors)``
      hops around the seed users and the positive and negative items (over
      ``interacts``/``rev_interacts``), in local ids; ``n_id`` maps local to
      global ids and ``user``/``pos_item``/``neg_item`` are local. The
      subgraph carries ``item.domain`` of its items, ``interacts`` (with
      ``e_id`` and edge attributes), ``rev_interacts``, ``belongs_to`` and
      ``active_in``. The batch's own supervision edges are **kept** in the
      subgraph when sampled (as in the full-graph mode and in PyG's
      ``LinkNeighborLoader`` without ``disjoint``), so both modes see the same
      message-passing edges.

    **Backends** (sampled mode): ``'pyg'`` uses PyG's ``NeighborSampler`` (needs
    ``pyg-lib`` or ``torch-sparse``), ``'csr'`` uses
    :class:`~cdrgraph.loader.CSRNeighborSampler`, ``'auto'`` picks ``'pyg'``
    when available, else ``'csr'``. Both give the same schema.

    **Reproducibility.** Epoch ``e`` draws everything (order, negatives,
    neighbours) from a generator seeded by ``(seed, e)``, so its stream is a
    pure function of ``(seed, e)``. Each ``iter(loader)`` uses the current
    epoch and then advances it by one; :meth:`set_epoch` sets it (resume).
    With the ``'pyg'`` backend, neighbour sampling is seeded through torch's
    global RNG inside :func:`torch.random.fork_rng`.

    **Sharding** (multi-process training, :mod:`cdrgraph.train.distributed`).
    With ``num_replicas = W > 1`` every rank draws the same global batch
    (order and negatives from the ``(seed, e)`` stream) and yields only its
    contiguous shard ``rank`` of it (:func:`torch.tensor_split` into ``W``
    parts, in global ids for ``'full'`` mode); the ranks together see
    exactly the batches of ``num_replicas=1``. In ``'sampled'`` mode each
    rank samples the subgraph of its own shard from a generator seeded by
    ``(seed, e, rank)``. A global batch with fewer than ``W`` pairs (at most
    the last one of an epoch) is skipped on every rank, so all ranks take
    the same number of steps.

    Args:
        data (HeteroData): the training graph (``split_name='train'``).
        batch_size (int, optional): pairs per batch (per domain with
            ``domain_policy='equal'``). (default: :obj:`1024`)
        num_negatives (int, optional): negatives per positive. (default: :obj:`1`)
        domain_policy (str, optional): ``'proportional'`` or ``'equal'``.
            (default: :obj:`'proportional'`)
        mode (str, optional): ``'full'`` or ``'sampled'``. (default: :obj:`'full'`)
        num_neighbors (list[int], optional): fan-out per hop in sampled mode
            (``-1`` = all neighbours). (default: :obj:`[10, 10]`)
        shuffle (bool, optional): shuffle the supervision edges every epoch;
            otherwise they are taken in file order. (default: :obj:`True`)
        seed (int, optional): base seed. (default: :obj:`0`)
        backend (str, optional): ``'auto'``, ``'pyg'`` or ``'csr'``.
            (default: :obj:`'auto'`)
        drop_last (bool, optional): drop the last incomplete batch.
            (default: :obj:`False`)
        exclude_links (Tensor, optional): ``long[2, E']`` global
            ``(user, item)`` pairs never drawn as negatives (see
            :class:`~cdrgraph.loader.NegativeSampler`); :obj:`None` gives the
            same batches as before. (default: :obj:`None`)
        num_replicas (int, optional): number of processes sharing each
            global batch. (default: :obj:`1`)
        rank (int, optional): which shard this process yields,
            ``0 <= rank < num_replicas``. (default: :obj:`0`)

    Example:
        >>> loader = CDRLinkLoader(train_data, batch_size=2048, num_negatives=1)
        >>> for epoch in range(10):
        ...     loader.set_epoch(epoch)
        ...     for batch in loader:
        ...         loss = model.loss(batch)
    """

    def __init__(self, data: HeteroData, batch_size: int = 1024, num_negatives: int = 1,
                 domain_policy: str = 'proportional', mode: str = 'full',
                 num_neighbors: Sequence[int] | None = None, shuffle: bool = True, seed: int = 0,
                 backend: str = 'auto', drop_last: bool = False, exclude_links: Tensor | None = None,
                 num_replicas: int = 1, rank: int = 0) -> None:
        if domain_policy not in DOMAIN_POLICIES:
            raise ValueError(f'CDRLinkLoader(domain_policy={domain_policy!r}): choose one of '
                             f'{DOMAIN_POLICIES}')
        if mode not in MODES:
            raise ValueError(f'CDRLinkLoader(mode={mode!r}): choose one of {MODES}')
        if backend not in BACKENDS:
            raise ValueError(f'CDRLinkLoader(backend={backend!r}): choose one of {BACKENDS}')
        if int(batch_size) < 1:
            raise ValueError(f'CDRLinkLoader(batch_size={batch_size}): batch_size must be >= 1')
        if int(num_replicas) < 1 or not 0 <= int(rank) < int(num_replicas):
            raise ValueError(f'CDRLinkLoader(num_replicas={num_replicas}, rank={rank}): need num_replicas >= 1 '
                             'and 0 <= rank < num_replicas')
        if int(num_negatives) < 0:
            raise ValueError(f'CDRLinkLoader(num_negatives={num_negatives}): num_negatives must be >= 0')
        split_name = getattr(data, 'split_name', None)
        if split_name not in (None, 'train'):
            raise ValueError(f'CDRLinkLoader: data.split_name is {split_name!r}; train on the '
                             "'train' graph of a split, its edge_label_index holds held-out evaluation pairs")
        store = data[INTERACTS]
        split = getattr(store, 'split', None)
        if split is not None and bool((split != TRAIN).any()):
            raise ValueError(f"CDRLinkLoader: data[{INTERACTS}].split marks {int((split != TRAIN).sum())} "
                             'validation/test edges that would leak into message passing; apply a split '
                             'transform first (e.g. cdrgraph.transforms.GivenSplit()) and pass its train '
                             'graph')

        self.data = data
        self.batch_size = int(batch_size)
        self.num_negatives = int(num_negatives)
        self.domain_policy = domain_policy
        self.mode = mode
        self.num_neighbors = [10, 10] if num_neighbors is None else [int(k) for k in num_neighbors]
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self._epoch = 0

        # supervision pairs and labels
        label = None
        if getattr(store, 'edge_label_index', None) is not None:
            sup = store.edge_label_index
            label = getattr(store, 'edge_label', None)
        else:
            sup = train_edge_index(data)
            label = getattr(store, 'rating', None)
        if label is not None:
            label = label.float()
            if label.numel() != sup.size(1):
                raise ValueError(f'CDRLinkLoader: data[{INTERACTS}].edge_label has {label.numel()} '
                                 f'entries for {sup.size(1)} supervision pairs (edge_label_index)')
            if bool((label == 1).all()):
                label = None
        if sup.size(1) == 0:
            raise ValueError(f'CDRLinkLoader: data[{INTERACTS}] has no supervision edges')
        self.sup_index = sup
        self.sup_label = label
        self.sup_domain = data[ITEM].domain[sup[1]]
        self.domain_names = domain_names(data)
        num_domains = len(self.domain_names)
        self.domain_edges = [(self.sup_domain == k).nonzero().view(-1) for k in range(num_domains)]

        self.negative_sampler = NegativeSampler(data, seed=self.seed, exclude_links=exclude_links)
        if self.num_negatives:   # fail now, not in the middle of an epoch
            self.negative_sampler.check(sup[0], self.sup_domain)
        self.backend: str | None = None
        self.sampler: CSRNeighborSampler | _PyGSubgraphSampler | None = None
        if mode == 'sampled':
            self.backend = ('pyg' if pyg_sampling_available() else 'csr') if backend == 'auto' else backend
            if self.backend == 'pyg':
                self.sampler = _PyGSubgraphSampler(data, self.num_neighbors)
            else:
                self.sampler = CSRNeighborSampler(data, self.num_neighbors, seed=self.seed)
        elif backend == 'pyg' and not pyg_sampling_available():
            _PyGSubgraphSampler(data, self.num_neighbors)   # raises the ImportError

    # ----------------------------------------------------------------- epochs
    @property
    def epoch(self) -> int:
        r"""The epoch the next ``iter(loader)`` will produce."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        r"""Make the next iteration produce epoch ``epoch`` (a pure function of ``(seed, epoch)``)."""
        self._epoch = int(epoch)

    def __len__(self) -> int:
        if self.domain_policy == 'proportional':
            n = self.sup_index.size(1)
        else:
            n = max(idx.numel() for idx in self.domain_edges)
        steps = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        if (self.num_replicas > 1 and self.domain_policy == 'proportional' and steps
                and n - (steps - 1) * self.batch_size < self.num_replicas):
            steps -= 1   # the last global batch is too small to shard (skipped)
        return steps

    def _steps(self, gen: torch.Generator) -> list[Tensor]:
        r"""Supervision-edge positions of every step of one epoch."""
        bs, steps = self.batch_size, len(self)
        if self.domain_policy == 'proportional':
            num = self.sup_index.size(1)
            order = torch.randperm(num, generator=gen) if self.shuffle else torch.arange(num)
            return list(order[:steps * bs].split(bs)) if steps else []
        need = steps * bs
        streams = []
        for idx in self.domain_edges:
            if idx.numel() == 0 or need == 0:
                continue
            cycles = math.ceil(need / idx.numel())
            if self.shuffle:
                order = torch.argsort(torch.rand(cycles, idx.numel(), generator=gen), dim=1).view(-1)
            else:
                order = torch.arange(idx.numel()).repeat(cycles)
            streams.append(idx[order[:need]].view(steps, bs))
        if not streams:
            return []
        return list(torch.cat(streams, dim=1).unbind(0))

    def __iter__(self) -> Iterator[CDRBatch]:
        epoch = self._epoch
        self._epoch += 1
        return self._iter_epoch(epoch)

    def _iter_epoch(self, epoch: int) -> Iterator[CDRBatch]:
        gen = epoch_generator(self.seed, epoch)
        # with several ranks every rank draws the same global batches; the neighbour
        # sampling of a rank's shard gets its own stream, so the shared stream stays in step
        sample_gen = gen if self.num_replicas == 1 else epoch_generator(self.seed * 7919 + self.rank + 1, epoch)
        for pos in self._steps(gen):
            if pos.numel() >= self.num_replicas:   # a global batch too small to shard is skipped
                yield self._make_batch(pos, gen, sample_gen)

    def _make_batch(self, pos: Tensor, gen: torch.Generator, sample_gen: torch.Generator) -> CDRBatch:
        user, item = self.sup_index[0, pos], self.sup_index[1, pos]
        label = None if self.sup_label is None else self.sup_label[pos]
        neg = self.negative_sampler.sample(user, self.sup_domain[pos], self.num_negatives, generator=gen)
        if self.num_replicas > 1:
            part = torch.arange(pos.numel()).tensor_split(self.num_replicas)[self.rank]
            user, item, neg = user[part], item[part], neg[part]
            label = None if label is None else label[part]
        if self.mode == 'full':
            return CDRBatch.full(self.data, user=user, pos_item=item, neg_item=neg, label=label)
        assert self.sampler is not None
        b = user.numel()
        graph, n_id, seed_local = self.sampler.sample(user, torch.cat([item, neg.reshape(-1)]),
                                                      generator=sample_gen)
        local_items = seed_local[ITEM]
        return CDRBatch(graph=graph, user=seed_local[USER], pos_item=local_items[:b],
                        neg_item=local_items[b:].view(b, self.num_negatives), n_id=n_id, label=label)

    def __repr__(self) -> str:
        extra = ''
        n_excl = self.negative_sampler.num_exclude_links
        excl = f', num_exclude_links={n_excl}' if n_excl else ''
        shard = f', num_replicas={self.num_replicas}, rank={self.rank}' if self.num_replicas > 1 else ''
        if self.mode == 'sampled':
            extra = f', num_neighbors={self.num_neighbors}, backend={self.backend!r}'
        return (f'{self.__class__.__name__}(num_edges={self.sup_index.size(1)}, '
                f'batch_size={self.batch_size}, '
                f'num_negatives={self.num_negatives}, domain_policy={self.domain_policy!r}, '
                f'mode={self.mode!r}{extra}{excl}{shard})')
