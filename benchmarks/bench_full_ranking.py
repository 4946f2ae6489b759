r"""Time and peak memory of full-ranking evaluation (MODELS.md §1.3) at scale.

A synthetic single-domain graph with ``--users`` users, ``--items`` items,
about ``--edges`` random training edges and one held-out item per user is
scored by a dot-product model with random ``--dim``-dimensional embeddings
(:func:`cdrgraph.metrics.evaluator.dot_scorer`), once per chunk size. Every
chunk size runs in a fresh subprocess so its peak resident memory
(``ru_maxrss``) is its own; the table shows the peak minus the resident
memory just before evaluation, next to the size of one score chunk
(``chunk_size × items × 4`` bytes).

Usage::

    python benchmarks/bench_full_ranking.py                      # 100k x 50k, chunks 256/1024/4096
    python benchmarks/bench_full_ranking.py --users 10000 --items 5000 --chunk-sizes 128 1024
    python benchmarks/bench_full_ranking.py --out results/bench_full_ranking.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_mib() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build(num_users: int, num_items: int, num_edges: int, dim: int, seed: int = 0):
    r"""Synthetic test graph (convention 2) and random embeddings."""
    from torch_geometric.data import HeteroData

    from cdrgraph.data import add_derived_edges

    gen = torch.Generator().manual_seed(seed)
    test_items = torch.randint(0, num_items, (num_users,), generator=gen)
    test_key = torch.arange(num_users) * num_items + test_items
    u = torch.randint(0, num_users, (num_edges,), generator=gen)
    i = torch.randint(0, num_items, (num_edges,), generator=gen)
    key = torch.unique(u * num_items + i)
    key = key[~torch.isin(key, test_key)]
    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].num_nodes = num_items
    data['item'].domain = torch.zeros(num_items, dtype=torch.long)
    data['domain'].num_nodes = 1
    data.domain_names = ['D']
    data['user', 'interacts', 'item'].edge_index = torch.stack([key // num_items, key % num_items])
    add_derived_edges(data)
    data['user', 'interacts', 'item'].edge_label_index = torch.stack([torch.arange(num_users), test_items])
    data['user', 'interacts', 'item'].edge_label = torch.ones(num_users)
    data.split_name = 'test'
    user_emb = torch.randn(num_users, dim, generator=gen)
    item_emb = torch.randn(num_items, dim, generator=gen)
    return data, user_emb, item_emb


def run_one(args: argparse.Namespace, chunk_size: int) -> dict:
    from cdrgraph.metrics.evaluator import Evaluator, dot_scorer

    if args.threads:
        torch.set_num_threads(args.threads)
    data, user_emb, item_emb = build(args.users, args.items, args.edges, args.dim)
    before = _rss_mib()
    evaluator = Evaluator(protocol='full', ks=(10, 20), chunk_size=chunk_size)
    start = time.perf_counter()
    result = evaluator(dot_scorer(user_emb, item_emb), data)
    seconds = time.perf_counter() - start
    return {
        'chunk_size': chunk_size,
        'seconds': round(seconds, 2),
        'users_per_s': round(args.users / seconds),
        'rss_before_mib': round(before, 1),
        'peak_rss_mib': round(_peak_mib(), 1),
        'peak_over_setup_mib': round(_peak_mib() - before, 1),
        'score_chunk_mib': round(chunk_size * args.items * 4 / 2**20, 1),
        'num_train_edges': int(data['user', 'interacts', 'item'].edge_index.size(1)),
        'hr@10': result['hr@10/D'],
        'ndcg@10': result['ndcg@10/D'],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--users', type=int, default=100_000)
    parser.add_argument('--items', type=int, default=50_000)
    parser.add_argument('--edges', type=int, default=1_000_000)
    parser.add_argument('--dim', type=int, default=64)
    parser.add_argument('--chunk-sizes', type=int, nargs='+', default=[256, 1024, 4096])
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    parser.add_argument('--out', type=str, default=None, help='write the rows as JSON here')
    parser.add_argument('--child', type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:
        print(json.dumps(run_one(args, args.child)))
        return

    print(f'full ranking: {args.users} users x {args.items} items, ~{args.edges} training edges, '
          f'd={args.dim}, '
          f'torch {torch.__version__}, {torch.get_num_threads()} threads')
    rows = []
    for cs in args.chunk_sizes:
        cmd = [sys.executable, __file__, '--users', str(args.users), '--items', str(args.items), '--edges',
               str(args.edges), '--dim', str(args.dim), '--threads', str(args.threads), '--child', str(cs)]
        path = os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')]))
        env = {**os.environ, 'PYTHONPATH': path}
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"chunk_size={cs:>6}: {row['seconds']:>7.2f} s ({row['users_per_s']} users/s), "
              f"peak RSS {row['peak_rss_mib']:.0f} MiB (+{row['peak_over_setup_mib']:.0f} MiB over setup; "
              f"one score chunk = {row['score_chunk_mib']:.0f} MiB), hr@10={row['hr@10']:.5f}", flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump({'users': args.users, 'items': args.items, 'edges': args.edges, 'dim': args.dim,
                       'rows': rows}, f, indent=2)


if __name__ == '__main__':
    main()
