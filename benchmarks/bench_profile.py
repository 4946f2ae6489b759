r"""cProfile of the hot paths: one BPR-MF step, one LightGCN-3 step and one full-ranking evaluation.

Shows that no per-sample (or per-user) Python loop sits in a training or
evaluation hot path: each call is profiled at two sizes, ``n`` and ``2n``
(batch size ``B`` of a training step, users ``U`` of an evaluation), and
the top functions by own time of the first are printed. A Python loop over
the samples (users) makes at least one more Python-level call per extra
sample, so the verdict ``per_sample_loop`` is
``calls(2n) - calls(n) >= n / 2``; without such a loop the count of calls
does not depend on ``n`` (up to chunking: one call per chunk of users).

* ``bpr_step`` — :class:`~cdrgraph.models.bpr_mf.BPRMF` (``sparse=True``, the
  optimiser of :func:`~cdrgraph.train.fit`): batch drawing
  (:class:`~cdrgraph.loader.link_loader.CDRLinkLoader`), loss, backward, step;
* ``lightgcn_step`` — :class:`~cdrgraph.models.light_gcn.LightGCN` with 3
  layers, the same step;
* ``full_ranking`` — :class:`~cdrgraph.metrics.evaluator.Evaluator`
  (``protocol='full'``, top-20, training items masked) over a dot-product
  scorer (``bench_full_ranking.build``).

Usage::

    python benchmarks/bench_profile.py [--users 20000 --items 10000 --edges 400000 --top 12 --out prof.json]
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import os.path as osp
import pstats
import sys
from collections.abc import Callable
from typing import Any

import torch

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(HERE)
sys.path[:0] = [p for p in (HERE, ROOT) if p not in sys.path]


def profile(fn: Callable[[], object], top: int) -> dict[str, Any]:
    r"""Profile one call of ``fn``; top functions by own time and the largest ``ncalls``."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    rows = []
    for (path, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = osp.relpath(path, ROOT) if path.startswith(ROOT) else osp.basename(path)
        where = func if path == '~' else f'{short}:{line}({func})'
        rows.append({'function': where, 'ncalls': ncalls, 'tottime_ms': tottime * 1e3, 'cumtime_ms': cumtime * 1e3})
    rows.sort(key=lambda r: -r['tottime_ms'])
    busiest = max(rows, key=lambda r: r['ncalls'])
    return {'total_ms': stats.total_tt * 1e3, 'num_functions': len(rows),  # type: ignore[attr-defined]
            'total_calls': sum(r['ncalls'] for r in rows), 'max_ncalls': busiest['ncalls'],
            'max_ncalls_function': busiest['function'], 'top': rows[:top]}


def _train_step(model_name: str, train, batch_size: int, dim: int) -> Callable[[], object]:
    from cdrgraph.loader.link_loader import CDRLinkLoader
    from cdrgraph.models.bpr_mf import BPRMF
    from cdrgraph.models.light_gcn import LightGCN
    from cdrgraph.train.fit import _make_optimizer

    u, i = int(train['user'].num_nodes), int(train['item'].num_nodes)
    torch.manual_seed(0)
    model = (BPRMF(u, i, dim, sparse=True) if model_name == 'bpr' else LightGCN(u, i, dim, num_layers=3))
    optimizer = _make_optimizer(model, list(model.parameters()), 1e-3, 0.0)
    loader = CDRLinkLoader(train, batch_size=batch_size, seed=0)
    it = iter(loader)

    def step() -> float:
        batch = next(it)
        model.zero_grad(set_to_none=True)
        loss = model.loss(batch)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    step()  # warm-up: CSR caches, allocator
    return step


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--users', type=int, default=20_000)
    parser.add_argument('--items', type=int, default=10_000)
    parser.add_argument('--edges', type=int, default=400_000)
    parser.add_argument('--eval-users', type=int, default=5_000)
    parser.add_argument('--dim', type=int, default=64)
    parser.add_argument('--batch-size', type=int, default=4096)
    parser.add_argument('--top', type=int, default=12)
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    parser.add_argument('--out', default=None, help='write the profiles as JSON here')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from bench_full_ranking import build
    from bench_training import synthetic_train

    from cdrgraph.metrics.evaluator import Evaluator, dot_scorer

    train = synthetic_train(args.users, args.items, args.edges)
    evaluator = Evaluator(protocol='full', ks=(10, 20), chunk_size=1024)

    def ranking(num_users: int) -> Callable[[], object]:
        data, user_emb, item_emb = build(num_users, args.items, args.edges * num_users // args.users, args.dim)
        scorer = dot_scorer(user_emb, item_emb)
        return lambda: evaluator(scorer, data)

    b, u = args.batch_size, args.eval_users
    calls = {'bpr_step': (b, lambda n: _train_step('bpr', train, n, args.dim)),
             'lightgcn_step': (b, lambda n: _train_step('lightgcn', train, n, args.dim)),
             'full_ranking': (u, ranking)}
    out: dict[str, Any] = {'config': vars(args), 'threads': torch.get_num_threads(),
                           'load_avg': list(os.getloadavg()), 'profiles': {}}
    for name, (n, make) in calls.items():
        p = profile(make(n), args.top)
        p2 = profile(make(2 * n), args.top)
        p.update(size=n, calls_at_double_size=p2['total_calls'], loop_threshold=n // 2,
                 per_sample_loop=bool(p2['total_calls'] - p['total_calls'] >= n // 2))
        out['profiles'][name] = p
        print(f'\n== {name} (n = {n}): {p["total_ms"]:.1f} ms, {p["total_calls"]} Python-level calls in '
              f'{p["num_functions"]} functions ({p["calls_at_double_size"]} at 2n); max ncalls {p["max_ncalls"]} '
              f'({p["max_ncalls_function"]}) -> '
              f'{"PER-SAMPLE LOOP" if p["per_sample_loop"] else "no per-sample loop"}')
        print(f'{"ncalls":>7} {"tottime ms":>10} {"cumtime ms":>10}  function')
        for r in p['top']:
            print(f'{r["ncalls"]:>7} {r["tottime_ms"]:>10.2f} {r["cumtime_ms"]:>10.2f}  {r["function"]}')
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == '__main__':
    main()
