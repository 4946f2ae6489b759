r"""Throughput of one epoch of :class:`~cdrgraph.loader.link_loader.CDRLinkLoader` batches.

Builds a synthetic multi-domain graph of about ``--num-edges`` interactions with
:func:`cdrgraph.data.from_interactions` (power-law item popularity), then times
one epoch in full-graph mode and in sampled mode (CSR backend, and PyG when
``torch-sparse``/``pyg-lib`` is installed) and prints batches/s.

Usage::

    PYTHONPATH=. python benchmarks/bench_sampling.py          # ~1M edges, full epoch (or pip install -e .)
    PYTHONPATH=. python benchmarks/bench_sampling.py --max-batches 200 --json results.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import pandas as pd
import torch

from cdrgraph.data import from_interactions
from cdrgraph.loader.link_loader import CDRLinkLoader, pyg_sampling_available


def synthetic_graph(num_edges: int, num_users: int, items: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    dom = rng.integers(0, len(items), num_edges)
    sizes = np.asarray(items)
    # power-law popularity inside each domain
    item = np.minimum((rng.pareto(1.2, num_edges) * sizes[dom] / 50).astype(np.int64), sizes[dom] - 1)
    df = pd.DataFrame({'user': rng.integers(0, num_users, num_edges), 'item': item, 'domain': dom})
    return from_interactions(df, duplicates='drop')


def time_epoch(loader: CDRLinkLoader, max_batches: int | None) -> dict:
    start = time.perf_counter()
    n = 0
    pairs = 0
    sub_edges = 0
    for batch in loader:
        n += 1
        pairs += batch.batch_size
        sub_edges += batch.edge_index.size(1)
        if max_batches is not None and n >= max_batches:
            break
    sec = time.perf_counter() - start
    return {'batches': n, 'seconds': sec, 'batches_per_s': n / sec, 'pairs_per_s': pairs / sec,
            'mean_message_edges': sub_edges / max(n, 1), 'steps_per_epoch': len(loader)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-edges', type=int, default=1_000_000)
    parser.add_argument('--num-users', type=int, default=100_000)
    parser.add_argument('--items', type=int, nargs='+', default=[40_000, 20_000, 10_000])
    parser.add_argument('--batch-size', type=int, default=1024)
    parser.add_argument('--num-negatives', type=int, default=1)
    parser.add_argument('--num-neighbors', type=int, nargs='+', default=[10, 10])
    parser.add_argument('--max-batches', type=int, default=None, help='stop an epoch early (extrapolate)')
    parser.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    parser.add_argument('--json', default=None, help='write the results to this JSON file')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    t = time.perf_counter()
    data = synthetic_graph(args.num_edges, args.num_users, tuple(args.items))
    build_s = time.perf_counter() - t
    num_edges = int(data['user', 'interacts', 'item'].edge_index.size(1))
    print(f'graph: {int(data["user"].num_nodes)} users, {int(data["item"].num_nodes)} items, '
          f'{num_edges} edges, {len(args.items)} domains (built in {build_s:.1f}s); '
          f'torch threads={torch.get_num_threads()}')

    configs = [('full', 'proportional', 'csr'), ('full', 'equal', 'csr'), ('sampled', 'proportional', 'csr')]
    if pyg_sampling_available():
        configs.append(('sampled', 'proportional', 'pyg'))
    results = {'platform': platform.platform(), 'torch': torch.__version__, 'num_edges': num_edges,
               'batch_size': args.batch_size, 'num_negatives': args.num_negatives,
               'num_neighbors': args.num_neighbors, 'build_seconds': build_s, 'runs': []}
    for mode, policy, backend in configs:
        t = time.perf_counter()
        loader = CDRLinkLoader(data, batch_size=args.batch_size, num_negatives=args.num_negatives,
                               domain_policy=policy, mode=mode, num_neighbors=args.num_neighbors,
                               backend=backend)
        init_s = time.perf_counter() - t
        res = time_epoch(loader, args.max_batches)
        res.update(mode=mode, domain_policy=policy, backend=backend if mode == 'sampled' else None,
                   init_seconds=init_s)
        results['runs'].append(res)
        name = f'{mode}/{policy}' + (f'/{backend}' if mode == 'sampled' else '')
        print(f'{name:28s} init {init_s:6.2f}s  {res["batches"]:5d}/{res["steps_per_epoch"]} batches in '
              f'{res["seconds"]:7.2f}s  -> {res["batches_per_s"]:8.1f} batches/s, '
              f'{res["pairs_per_s"]:10.0f} pairs/s, {res["mean_message_edges"]:.0f} message edges/batch')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
