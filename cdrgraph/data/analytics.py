r"""Graph analytics of a cdrgraph graph: per-domain degree distributions
(log-log plots) and the sampled cross-domain neighbourhood of one user as a
:mod:`networkx` graph and a drawing.

Degrees are counted with torch (fast on full real graphs); the neighbourhood
is a :class:`networkx.Graph` laid out and drawn with networkx on a
matplotlib :class:`~matplotlib.figure.Figure` (no pyplot: the Agg renderer,
never a window).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import INTERACTS, ITEM, USER, domain_names

__all__ = ['degree_distribution', 'plot_degree_distribution', 'sample_user_subgraph', 'draw_user_subgraph']

DEGREE_COLUMNS = ['domain', 'degree', 'count']


def _graph(data: Any) -> HeteroData:
    return data[0] if not isinstance(data, HeteroData) and hasattr(data, '__getitem__') else data


def _histogram(name: str, degree: Tensor) -> list[dict[str, Any]]:
    values, counts = torch.unique(degree, return_counts=True)
    return [{'domain': name, 'degree': int(v), 'count': int(c)}
            for v, c in zip(values.tolist(), counts.tolist(), strict=True)]


def degree_distribution(data: Any) -> dict[str, pd.DataFrame]:
    r"""Degree distributions of users and items, per domain and overall.

    The degree of a user in domain ``k`` is its number of ``interacts``
    edges to items of ``k`` (repeated edges counted); users without any
    edge in ``k`` are not in that domain and are left out of its rows. Items
    belong to one domain, so every item of ``k`` is counted, including cold
    items (degree ``0``). Domain ``'all'`` holds every node with its total
    degree (users without any edge at degree ``0``).

    Args:
        data (HeteroData or InMemoryDataset): the graph.

    Returns:
        ``{'user': DataFrame, 'item': DataFrame}``, each with columns
        ``domain, degree, count`` (number of nodes with that degree), sorted
        by domain order then degree.

    Example:
        >>> dist = degree_distribution(FakeCDRDataset(num_users=100)[0])
        >>> dist['item'].query("domain == 'd0'")
    """
    data = _graph(data)
    ei = data[INTERACTS].edge_index
    dom = data[ITEM].domain
    names = domain_names(data)
    num_users, num_items, k = int(data[USER].num_nodes), int(data[ITEM].num_nodes), len(names)
    edge_dom = dom[ei[1]]
    # [U, K] per-domain user degrees in one scatter
    user_deg = torch.zeros(num_users * k, dtype=torch.long).index_add_(
        0, ei[0] * k + edge_dom, torch.ones_like(ei[0])).view(num_users, k)
    item_deg = torch.bincount(ei[1], minlength=num_items)
    users: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for d, name in enumerate(names):
        col = user_deg[:, d]
        users += _histogram(name, col[col > 0])
        items += _histogram(name, item_deg[dom == d])
    users += _histogram('all', user_deg.sum(1))
    items += _histogram('all', item_deg)
    return {USER: pd.DataFrame(users, columns=DEGREE_COLUMNS), ITEM: pd.DataFrame(items, columns=DEGREE_COLUMNS)}


def _figure(nrows: int, ncols: int, width: float = 4.8, height: float = 3.8) -> tuple[Any, Any]:
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width * ncols, height * nrows), layout='constrained')
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def plot_degree_distribution(data: Any, path: str, title: str | None = None) -> str:
    r"""Log-log PNG of the degree distributions: one panel for users, one for
    items, one series per domain (``'all'`` dashed black); nodes of degree
    ``0`` cannot be shown on a log axis and are counted in the legend.

    Args:
        data (HeteroData, InMemoryDataset or dict): the graph, or the output
            of :func:`degree_distribution`.
        path (str): the PNG file.
        title (str, optional): figure title.

    Returns:
        ``path``.

    Example:
        >>> plot_degree_distribution(train, 'degrees.png')
    """
    dist = data if isinstance(data, Mapping) else degree_distribution(data)
    fig, axes = _figure(1, 2)
    for ax, node_type in zip(axes[0], (USER, ITEM), strict=True):
        df = dist[node_type]
        for name, g in df.groupby('domain', sort=False):
            pos = g[g['degree'] > 0]
            zero = int(g.loc[g['degree'] == 0, 'count'].sum())
            label = f'{name} ({zero} at degree 0)' if zero else str(name)
            style = {'linestyle': '--', 'color': 'black'} if name == 'all' else {}
            ax.plot(pos['degree'], pos['count'], marker='o', markersize=3, label=label, **style)
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel(f'{node_type} degree (interactions)')
        ax.set_ylabel(f'number of {node_type}s')
        ax.set_title(f'{node_type} degree distribution')
        ax.grid(alpha=0.3, which='both')
        ax.legend(title='domain')
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return path


def _sample_edges(src: Tensor, dst: Tensor, max_neighbors: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    r"""At most ``max_neighbors`` random edges per source node (vectorised)."""
    if src.numel() == 0:
        return src, dst
    order = torch.argsort(torch.rand(src.numel(), generator=gen))
    order = order[torch.argsort(src[order], stable=True)]
    src, dst = src[order], dst[order]
    _, counts = torch.unique_consecutive(src, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(src.numel()) - torch.repeat_interleave(starts, counts)
    keep = rank < max_neighbors
    return src[keep], dst[keep]


def sample_user_subgraph(data: Any, user: int, hops: int = 2, max_neighbors: int = 10,
                         seed: int = 0) -> nx.Graph:
    r"""The sampled ``hops``-hop neighbourhood of ``user`` in the bipartite
    user–item graph of all domains, as a :class:`networkx.Graph`.

    Hop 1 reaches (at most ``max_neighbors`` random) items of the user, in
    every domain; hop 2 the users of those items (at most ``max_neighbors``
    per item), hop 3 their items, and so on. The returned graph is the
    subgraph *induced* by the reached nodes (every ``interacts`` edge between
    them), so cross-domain paths through shared users are visible.

    Nodes are ``('user', id)`` / ``('item', id)`` tuples (global ids) with
    attributes ``type``, ``domain`` (item domain name; :obj:`None` for users)
    and ``hop`` (distance from ``user`` in the sampled BFS); edges carry the
    ``domain`` name of their item.

    Args:
        data (HeteroData or InMemoryDataset): the graph.
        user (int): the centre user (global id).
        hops (int, optional): BFS depth. (default: :obj:`2`)
        max_neighbors (int, optional): neighbours sampled per node and hop.
            (default: :obj:`10`)
        seed (int, optional): sampling seed. (default: :obj:`0`)

    Example:
        >>> g = sample_user_subgraph(train, user=0, hops=2)
        >>> sorted({d['domain'] for _, d in g.nodes(data=True) if d['type'] == 'item'})
        ['d0', 'd1']
    """
    data = _graph(data)
    num_users = int(data[USER].num_nodes)
    if not 0 <= int(user) < num_users:
        raise ValueError(f'user {user} is not a user node (0..{num_users - 1})')
    if hops < 0 or max_neighbors < 1:
        raise ValueError(f'hops must be >= 0 and max_neighbors >= 1, got {hops} and {max_neighbors}')
    ei = data[INTERACTS].edge_index
    dom = data[ITEM].domain
    names = domain_names(data)
    gen = torch.Generator().manual_seed(int(seed))
    hop_of = {USER: {int(user): 0}, ITEM: {}}
    frontier, frontier_type = torch.tensor([int(user)]), USER
    for hop in range(1, hops + 1):
        src_row, dst_row = (0, 1) if frontier_type == USER else (1, 0)
        mask = torch.isin(ei[src_row], frontier)
        _, dst = _sample_edges(ei[src_row][mask], ei[dst_row][mask], max_neighbors, gen)
        next_type = ITEM if frontier_type == USER else USER
        new = [n for n in torch.unique(dst).tolist() if n not in hop_of[next_type]]
        for n in new:
            hop_of[next_type][n] = hop
        frontier, frontier_type = torch.tensor(new, dtype=torch.long), next_type
        if not new:
            break
    users = torch.tensor(sorted(hop_of[USER]), dtype=torch.long)
    items = torch.tensor(sorted(hop_of[ITEM]), dtype=torch.long)
    g = nx.Graph()
    for u in users.tolist():
        g.add_node((USER, u), type=USER, domain=None, hop=hop_of[USER][u])
    for i in items.tolist():
        g.add_node((ITEM, i), type=ITEM, domain=names[int(dom[i])], hop=hop_of[ITEM][i])
    induced = torch.isin(ei[0], users) & torch.isin(ei[1], items)
    for u, i in ei[:, induced].t().tolist():
        g.add_edge((USER, u), (ITEM, i), domain=names[int(dom[i])])
    return g


def draw_user_subgraph(data: Any, user: int, hops: int = 2, path: str | None = None, max_neighbors: int = 10,
                       seed: int = 0) -> nx.Graph:
    r"""Draw the sampled cross-domain neighbourhood of ``user``
    (:func:`sample_user_subgraph`) as a PNG: the centre user as a large
    black node, other users grey, items coloured by domain, edges in their
    item's domain colour, spring layout (seeded).

    Args:
        data (HeteroData or InMemoryDataset): the graph.
        user (int): the centre user.
        hops (int, optional): BFS depth. (default: :obj:`2`)
        path (str, optional): PNG file to write; nothing is written when
            :obj:`None`.
        max_neighbors (int, optional): neighbours sampled per node and hop.
            (default: :obj:`10`)
        seed (int, optional): sampling and layout seed. (default: :obj:`0`)

    Returns:
        The drawn :class:`networkx.Graph`.

    Example:
        >>> g = draw_user_subgraph(train, user=0, hops=2, path='user0.png')
    """
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    g = sample_user_subgraph(data, user, hops=hops, max_neighbors=max_neighbors, seed=seed)
    if path is None:
        return g
    names = domain_names(_graph(data))
    cmap = colormaps['tab10']
    color = {name: cmap(k % 10) for k, name in enumerate(names)}
    pos = nx.spring_layout(g, seed=seed)
    fig, axes = _figure(1, 1, width=7.0, height=6.0)
    ax = axes[0][0]
    centre = (USER, int(user))
    others = [n for n, d in g.nodes(data=True) if d['type'] == USER and n != centre]
    edges = list(g.edges(data=True))
    nx.draw_networkx_edges(g, pos, ax=ax, edgelist=[(a, b) for a, b, _ in edges],
                           edge_color=[color[d['domain']] for _, _, d in edges], alpha=0.5, width=1.0)
    nx.draw_networkx_nodes(g, pos, ax=ax, nodelist=others, node_color='0.6', node_size=60, node_shape='o')
    for name in names:
        nodes = [n for n, d in g.nodes(data=True) if d['type'] == ITEM and d['domain'] == name]
        nx.draw_networkx_nodes(g, pos, ax=ax, nodelist=nodes, node_color=[color[name]] * len(nodes),
                               node_size=60, node_shape='s')
    nx.draw_networkx_nodes(g, pos, ax=ax, nodelist=[centre], node_color='black', node_size=250, node_shape='*')
    handles = [Line2D([], [], marker='*', color='black', linestyle='', markersize=12, label=f'user {user}'),
               Line2D([], [], marker='o', color='0.6', linestyle='', label='other users')]
    handles += [Line2D([], [], marker='s', color=color[n], linestyle='', label=f'items of {n}') for n in names]
    ax.legend(handles=handles, loc='best', fontsize='small')
    n_items = sum(1 for _, d in g.nodes(data=True) if d['type'] == ITEM)
    ax.set_title(f'{hops}-hop neighbourhood of user {user}\n{len(others) + 1} users, {n_items} items, '
                 f'{g.number_of_edges()} edges (≤ {max_neighbors} sampled neighbours per node and hop)')
    ax.set_axis_off()
    fig.savefig(path, dpi=100)
    return g
