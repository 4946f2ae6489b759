r"""A vectorised k-hop neighbour sampler over the user–item bipartite graph."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.build import add_derived_edges
from cdrgraph.data.schema import DOMAIN, EDGE_ATTRS, INTERACTS, ITEM, USER
from cdrgraph.loader.views import train_edge_mask

__all__ = ['CSRNeighborSampler', 'build_subgraph', 'global_to_local']


def global_to_local(n_id: Tensor, ids: Tensor) -> Tensor:
    r"""Local positions of the global ``ids`` in ``n_id`` (every id must be present)."""
    order = torch.argsort(n_id)
    sorted_ids = n_id[order]
    idx = torch.searchsorted(sorted_ids, ids).clamp(max=max(n_id.numel() - 1, 0))
    if ids.numel() and not bool((sorted_ids[idx] == ids).all()):
        raise KeyError('global_to_local: some ids are not among the sampled nodes')
    return order[idx]


def build_subgraph(data: HeteroData, n_id: dict[str, Tensor], edge_index: Tensor,
                   e_id: Tensor | None = None) -> HeteroData:
    r"""The cdrgraph subgraph induced by a sample (shared by both sampling backends).

    Args:
        data (HeteroData): the full training graph.
        n_id (dict): ``{'user': long[U_loc], 'item': long[I_loc]}`` local -> global.
        edge_index (Tensor): ``long[2, E_loc]`` local ``(user, item)`` edges.
        e_id (Tensor, optional): ``long[E_loc]`` their positions in
            ``data['user', 'interacts', 'item'].edge_index``; used to carry
            edge attributes (``rating``, ``time``, ...) and stored as ``e_id``.

    Returns:
        A :class:`HeteroData` with ``user``/``item`` nodes (``n_id`` and every
        node-level attribute such as ``item.domain``/``x`` sliced), all
        ``domain`` nodes, ``interacts`` (+ ``e_id`` and edge attributes) and
        the derived ``rev_interacts``/``belongs_to``/``active_in`` edges.
    """
    out = HeteroData()
    for nt in (USER, ITEM):
        store = data[nt]
        num = int(store.num_nodes)
        idx = n_id[nt]
        out[nt].num_nodes = idx.numel()
        for key, val in store.items():
            if key in ('num_nodes', 'n_id'):
                continue
            if isinstance(val, Tensor) and val.dim() > 0 and val.size(0) == num:
                out[nt][key] = val[idx]
        out[nt].n_id = idx
    for key, val in data[DOMAIN].items():
        out[DOMAIN][key] = val
    for key in ('domain_names', 'split_name'):
        if hasattr(data, key):
            out[key] = data[key]
    store = out[INTERACTS]
    store.edge_index = edge_index
    if e_id is not None:
        store.e_id = e_id
        full = data[INTERACTS]
        for key in EDGE_ATTRS:
            val = getattr(full, key, None)
            if key != 'split' and isinstance(val, Tensor):
                store[key] = val[e_id]
    return add_derived_edges(out)


class CSRNeighborSampler:
    r"""Vectorised k-hop neighbour sampler over ``interacts``/``rev_interacts``
    (the toolkit's fallback when neither ``torch-sparse`` nor ``pyg-lib`` is
    installed; DESIGN.md §3).

    The training edges are held twice in CSR form (user -> items and
    item -> users). Starting from the seed users and items, hop ``h`` samples,
    *without replacement*, up to ``num_neighbors[h]`` neighbours of every node
    that entered the sample in the previous hop (the frontier; ``-1`` takes all
    neighbours), like PyG's ``NeighborSampler``. All hops are vectorised:

    * nodes with degree :math:`\le k` keep all their edges;
    * nodes with a larger degree draw a uniform ``k``-subset of their edges
      with Floyd's algorithm, run for all of them at once (``k`` vectorised
      steps, no sort, no re-draws).

    The subgraph's ``interacts`` edges are the union of the sampled edges of
    both directions (deduplicated), ``rev_interacts`` is their reverse, so the
    subgraph holds only real training edges. Local node order: the distinct
    seeds (ascending), then the new nodes of hop 1, hop 2, ... (ascending
    within a hop). Deterministic for a given :class:`torch.Generator`.

    Args:
        data (HeteroData): the training graph.
        num_neighbors (list[int]): fan-out per hop (``-1`` = all).
        seed (int, optional): seed of the internal generator used when
            :meth:`sample` gets none. (default: :obj:`0`)

    Example:
        >>> sampler = CSRNeighborSampler(train_data, num_neighbors=[10, 10])
        >>> sub, n_id, seed_local = sampler.sample(users=torch.tensor([0, 1]), items=torch.tensor([3]))
        >>> n_id['user'][seed_local['user']]
        tensor([0, 1])
    """

    def __init__(self, data: HeteroData, num_neighbors: Sequence[int], seed: int = 0) -> None:
        self.num_neighbors = [int(k) for k in num_neighbors]
        if any(k < -1 or k == 0 for k in self.num_neighbors):
            raise ValueError(f'CSRNeighborSampler(num_neighbors={list(num_neighbors)}): fan-outs must be '
                             'positive or -1 (all neighbours)')
        self.data = data
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.num_users = int(data[USER].num_nodes)
        self.num_items = int(data[ITEM].num_nodes)
        ei = data[INTERACTS].edge_index
        e_id = torch.arange(ei.size(1))
        mask = train_edge_mask(data)
        if mask is not None:
            ei, e_id = ei[:, mask], e_id[mask]
        self._num_edges = int(data[INTERACTS].edge_index.size(1))
        self._csr = {USER: self._build(ei[0], ei[1], e_id, self.num_users),
                     ITEM: self._build(ei[1], ei[0], e_id, self.num_items)}

    @staticmethod
    def _build(rows: Tensor, cols: Tensor, e_id: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
        perm = torch.argsort(rows, stable=True)
        rowptr = torch.zeros(n + 1, dtype=torch.long)
        rowptr[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
        return rowptr, cols[perm], e_id[perm]

    # ------------------------------------------------------------ one hop
    def _sample_hop(self, node_type: str, frontier: Tensor, k: int,
                    gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        r"""Sampled ``(frontier node, neighbour, edge id)`` triples of one hop."""
        rowptr, col, e_id = self._csr[node_type]
        start = rowptr[frontier]
        deg = rowptr[frontier + 1] - start
        empty = torch.empty(0, dtype=torch.long)
        src, pos = [empty], [empty]

        def expand(nodes_start: Tensor, nodes_deg: Tensor) -> tuple[Tensor, Tensor]:
            seg = torch.repeat_interleave(torch.arange(nodes_deg.numel()), nodes_deg)
            offs = torch.cumsum(nodes_deg, 0) - nodes_deg
            return seg, nodes_start[seg] + torch.arange(seg.numel()) - offs[seg]

        # 1) all edges of nodes with deg <= k
        small = deg <= k if k >= 0 else torch.ones_like(deg, dtype=torch.bool)
        seg, p = expand(start[small], deg[small])
        src.append(frontier[small][seg])
        pos.append(p)
        if k >= 0:
            # 2) nodes with deg > k: Floyd's algorithm, vectorised over the nodes (k steps, no sort):
            #    for j = deg-k .. deg-1: t ~ U{0..j}; take t unless already taken, else take j
            big = deg > k
            if big.any():
                bdeg, nb = deg[big], int(big.sum())
                chosen = torch.empty(nb, k, dtype=torch.long)
                for step in range(k):
                    j = bdeg - k + step
                    t = (torch.rand(nb, generator=gen, dtype=torch.float64) * (j + 1)).long()
                    t = torch.minimum(t, j)
                    taken = (chosen[:, :step] == t.unsqueeze(1)).any(1)
                    chosen[:, step] = torch.where(taken, j, t)
                src.append(frontier[big].repeat_interleave(k))
                pos.append((start[big].unsqueeze(1) + chosen).view(-1))
        src_t, pos_t = torch.cat(src), torch.cat(pos)
        return src_t, col[pos_t], e_id[pos_t]

    # ------------------------------------------------------------- sample
    def sample(self, users: Tensor, items: Tensor, generator: torch.Generator | None = None,
               ) -> tuple[HeteroData, dict[str, Tensor], dict[str, Tensor]]:
        r"""Sample the subgraph around the seed nodes.

        Args:
            users (Tensor): ``long[S_u]`` global seed users (repeats allowed).
            items (Tensor): ``long[S_i]`` global seed items (repeats allowed).
            generator (torch.Generator, optional): source of randomness; the
                sampler's own generator when :obj:`None`.

        Returns:
            ``(graph, n_id, seed_local)``: the subgraph (see
            :func:`build_subgraph`), ``n_id`` local -> global per node type,
            and ``seed_local = {'user': long[S_u], 'item': long[S_i]}``, the
            local index of every seed.
        """
        gen = self.generator if generator is None else generator
        users = torch.as_tensor(users, dtype=torch.long).view(-1)
        items = torch.as_tensor(items, dtype=torch.long).view(-1)
        for name, ids, n in (('users', users, self.num_users), ('items', items, self.num_items)):
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n):
                raise ValueError(f'CSRNeighborSampler.sample: seed {name} must lie in [0, {n})')
        seeds = {USER: torch.unique(users), ITEM: torch.unique(items)}
        size = {USER: self.num_users, ITEM: self.num_items}
        seen = {}
        for nt in (USER, ITEM):
            seen[nt] = torch.zeros(size[nt], dtype=torch.bool)
            seen[nt][seeds[nt]] = True
        parts = {nt: [seeds[nt]] for nt in (USER, ITEM)}
        frontier = dict(seeds)
        other = {USER: ITEM, ITEM: USER}
        edge_mask = torch.zeros(self._num_edges, dtype=torch.bool)
        for k in self.num_neighbors:
            new = {}
            for nt in (USER, ITEM):
                _, dst, e = self._sample_hop(nt, frontier[nt], k, gen)
                edge_mask[e] = True
                ot = other[nt]
                fresh = torch.zeros(size[ot], dtype=torch.bool)   # dense dedupe: cheaper than torch.unique
                fresh[dst[~seen[ot][dst]]] = True
                new[ot] = fresh.nonzero().view(-1)
            for nt in (USER, ITEM):
                parts[nt].append(new[nt])
                seen[nt][new[nt]] = True
                frontier[nt] = new[nt]
        n_id = {nt: torch.cat(parts[nt]) for nt in (USER, ITEM)}
        e_id = edge_mask.nonzero().view(-1)
        ei = self.data[INTERACTS].edge_index[:, e_id]
        local = torch.stack([self._to_local(n_id[USER], ei[0], self.num_users),
                             self._to_local(n_id[ITEM], ei[1], self.num_items)])
        graph = build_subgraph(self.data, n_id, local, e_id)
        seed_local = {USER: torch.searchsorted(seeds[USER], users),
                      ITEM: torch.searchsorted(seeds[ITEM], items)}
        return graph, n_id, seed_local

    @staticmethod
    def _to_local(n_id: Tensor, ids: Tensor, size: int) -> Tensor:
        loc = torch.full((size,), -1, dtype=torch.long)
        loc[n_id] = torch.arange(n_id.numel())
        return loc[ids]

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(num_neighbors={self.num_neighbors})'
