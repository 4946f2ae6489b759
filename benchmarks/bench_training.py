r"""Training throughput, negative sampling and peak memory; epoch time of every ranking model on Sport–Cloth.

Measurements (each in a fresh subprocess, so its peak resident memory
``ru_maxrss`` is its own; ``--inprocess`` runs them in this process, where
peak memory is only an upper bound):

* ``bpr_dense`` / ``bpr_sparse`` — samples/s of :class:`~cdrgraph.models.bpr_mf.BPRMF`
  with dense-gradient lookups + Adam vs ``sparse=True`` + SparseAdam (the
  optimiser :func:`cdrgraph.train.fit` builds), ``d = --dim``;
* ``lightgcn3`` — samples/s of :class:`~cdrgraph.models.light_gcn.LightGCN`
  (``num_layers=3``, full-graph propagation every step, our CSR fast path);
* ``pyg_lightgcn3`` — PyG's :class:`torch_geometric.nn.models.LightGCN` out
  of the box (``forward(edge_index, edge_label_index)`` +
  ``recommendation_loss``) on the same batches;
* ``negative_sampling`` — ms per ``--batch-size`` batch of
  :class:`~cdrgraph.loader.negative_sampler.NegativeSampler` (exact rejection
  of the user's training positives) vs PyG's
  :func:`~torch_geometric.utils.negative_sampling` (bipartite, ``'sparse'``
  method: pairs that are not edges, not per user);
* ``sportcloth/<Model>`` — every registered model on amazon-disencdr
  Sport–Cloth (:class:`~cdrgraph.datasets.amazon_cdr.AmazonCDR`, given split):
  :func:`~cdrgraph.train.fit` with default constructor arguments, two epochs
  per stage capped at ``--max-steps`` steps; the second epoch's time per
  step × steps per epoch is the extrapolated epoch time. Models that cannot
  train on this data (CTR models needing labels, ...) are reported as
  ``skipped`` with the reason; the whole part is skipped when
  ``--data-root`` is absent.

One training step is what :func:`~cdrgraph.train.fit` does: draw the batch
(:class:`~cdrgraph.loader.link_loader.CDRLinkLoader`, full-graph mode, in-domain
negatives), ``zero_grad``, ``loss``, finiteness check, ``backward``, ``step``.
The synthetic graph is ``random_bipartite`` of ``bench_lgconv.py`` (default
100k users × 50k items × 2M interactions, one domain). Samples/s counts
positive pairs (``batch_size`` per step, ``--num-negatives`` negatives each).

Usage::

    python benchmarks/bench_training.py                          # all, 100k x 50k x 2M + Sport-Cloth
    python benchmarks/bench_training.py --only bpr_dense bpr_sparse negative_sampling
    python benchmarks/bench_training.py --users 2000 --items 1000 --edges 20000 --no-sport-cloth --inprocess
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(HERE)
sys.path[:0] = [p for p in (HERE, ROOT) if p not in sys.path]

from bench_lgconv import random_bipartite  # noqa: E402

SYNTHETIC = ('bpr_dense', 'bpr_sparse', 'lightgcn3', 'pyg_lightgcn3', 'negative_sampling')
DEFAULT_DATA_ROOT = osp.abspath(osp.join(ROOT, '..', 'shared', 'data'))
SPORT_CLOTH = {'name': 'AmazonCDR', 'root': '~/.cache/cdrgraph/amazon-disencdr', 'pair': 'sport_cloth'}
#: registered models that are not trained (no parameters / stages)
UNTRAINED = ('Popularity',)


def peak_mib() -> float:
    r"""Peak resident memory of this process so far (``ru_maxrss``, Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    r"""Current resident memory of this process."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


# ------------------------------------------------------------------------------------------ data
def synthetic_train(num_users: int, num_items: int, num_edges: int, seed: int = 0):
    r"""One-domain training graph (``split_name='train'``) over ``random_bipartite`` edges."""
    from torch_geometric.data import HeteroData

    from cdrgraph.data import add_derived_edges
    from cdrgraph.data.schema import DOMAIN, INTERACTS, ITEM, USER

    data = HeteroData()
    data[USER].num_nodes = num_users
    data[ITEM].num_nodes = num_items
    data[ITEM].domain = torch.zeros(num_items, dtype=torch.long)
    data[DOMAIN].num_nodes = 1
    data.domain_names = ['D']
    data[INTERACTS].edge_index = random_bipartite(num_users, num_items, num_edges, seed)
    add_derived_edges(data)
    data.split_name = 'train'
    return data


def sport_cloth_train(data_root: str):
    r"""The train graph of amazon-disencdr Sport–Cloth (given split)."""
    from cdrgraph.cli.config import build_dataset
    from cdrgraph.transforms.given_split import GivenSplit

    data = build_dataset({**SPORT_CLOTH, 'raw_dir': osp.join(data_root, 'amazon-disencdr')})
    return GivenSplit()(data)[0]


# ------------------------------------------------------------------------------------------ measurements
def _step_loop(step, loader, warmup: int, steps: int) -> dict[str, float]:
    r"""Run ``warmup`` + ``steps`` training steps; time the batch drawing and the rest separately."""
    it = iter(loader)
    draw, total = 0.0, 0.0
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        batch = next(it, None)
        if batch is None:   # small graphs: next epoch
            it = iter(loader)
            batch = next(it)
        t1 = time.perf_counter()
        step(batch)
        t2 = time.perf_counter()
        if s >= warmup:
            draw += t1 - t0
            total += t2 - t0
    return {'ms_per_step': total / steps * 1e3, 'batch_ms_per_step': draw / steps * 1e3}


def measure_ours(name: str, train, args: argparse.Namespace) -> dict[str, Any]:
    from cdrgraph.loader.link_loader import CDRLinkLoader
    from cdrgraph.models.bpr_mf import BPRMF
    from cdrgraph.models.light_gcn import LightGCN
    from cdrgraph.train.fit import _make_optimizer

    num_users, num_items = int(train['user'].num_nodes), int(train['item'].num_nodes)
    torch.manual_seed(0)
    if name == 'lightgcn3':
        model = LightGCN(num_users, num_items, embedding_dim=args.dim, num_layers=3)
    else:
        model = BPRMF(num_users, num_items, embedding_dim=args.dim, sparse=name == 'bpr_sparse')
    loader = CDRLinkLoader(train, batch_size=args.batch_size, num_negatives=args.num_negatives, seed=0)
    optimizer = _make_optimizer(model, list(model.parameters()), 1e-3, 0.0)
    losses: list[float] = []

    def step(batch) -> None:
        model.zero_grad(set_to_none=True)
        loss = model.loss(batch)
        if not bool(torch.isfinite(loss).all()):
            raise FloatingPointError(f'{name}: non-finite loss')
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))

    steps = args.steps if name != 'lightgcn3' else args.gcn_steps
    out = _step_loop(step, loader, args.warmup, steps)
    out['optimizer'] = type(optimizer).__name__
    out['loss_first_last'] = [losses[0], losses[-1]]
    return out


def measure_pyg_lightgcn(train, args: argparse.Namespace) -> dict[str, Any]:
    from torch_geometric.nn.models import LightGCN as PyGLightGCN

    from cdrgraph.loader.link_loader import CDRLinkLoader

    num_users, num_items = int(train['user'].num_nodes), int(train['item'].num_nodes)
    ei = train['user', 'interacts', 'item'].edge_index
    hom = torch.cat([torch.stack([ei[0], ei[1] + num_users]), torch.stack([ei[1] + num_users, ei[0]])], 1)
    torch.manual_seed(0)
    model = PyGLightGCN(num_users + num_items, args.dim, num_layers=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = CDRLinkLoader(train, batch_size=args.batch_size, num_negatives=1, seed=0)
    losses: list[float] = []

    def step(batch) -> None:
        u, pos, neg = batch.user, batch.pos_item + num_users, batch.neg_item[:, 0] + num_users
        label = torch.stack([torch.cat([u, u]), torch.cat([pos, neg])])
        optimizer.zero_grad()
        pos_rank, neg_rank = model(hom, label).chunk(2)
        loss = model.recommendation_loss(pos_rank, neg_rank, node_id=torch.cat([u, pos, neg]), lambda_reg=1e-4)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))

    out = _step_loop(step, loader, 1, args.pyg_steps)
    out['loss_first_last'] = [losses[0], losses[-1]]
    out['num_negatives'] = 1
    return out


def measure_negative_sampling(train, args: argparse.Namespace) -> dict[str, Any]:
    from torch_geometric.utils import negative_sampling

    from cdrgraph.loader.negative_sampler import NegativeSampler

    ei = train['user', 'interacts', 'item'].edge_index
    num_users, num_items = int(train['user'].num_nodes), int(train['item'].num_nodes)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    sampler = NegativeSampler(train, seed=0)
    build_ms = (time.perf_counter() - t0) * 1e3
    batches = [torch.randint(ei.size(1), (args.batch_size,), generator=g) for _ in range(args.ns_repeats + 2)]
    domains = torch.zeros(args.batch_size, dtype=torch.long)
    times, rejected = [], 0
    for k, b in enumerate(batches):
        t = time.perf_counter()
        neg = sampler.sample(ei[0, b], domains, 1, generator=g)
        if k >= 2:
            times.append((time.perf_counter() - t) * 1e3)
        rejected += int(sampler.is_excluded(ei[0, b].unsqueeze(1), neg).sum())
    pyg = []
    for k in range(args.pyg_ns_repeats + 1):
        t = time.perf_counter()
        negative_sampling(ei, num_nodes=(num_users, num_items), num_neg_samples=args.batch_size)
        if k:
            pyg.append((time.perf_counter() - t) * 1e3)
    return {'ms_per_batch': statistics.median(times), 'pyg_ms_per_batch': statistics.median(pyg),
            'build_ms': build_ms, 'positives_drawn': rejected, 'batch_size': args.batch_size}


def measure_sport_cloth(model_name: str, args: argparse.Namespace) -> dict[str, Any]:
    from cdrgraph.cli.registry import MODELS
    from cdrgraph.loader.link_loader import CDRLinkLoader
    from cdrgraph.train.fit import fit

    train = sport_cloth_train(args.data_root)
    setup = peak_mib()
    try:
        torch.manual_seed(0)
        model = MODELS.get(model_name).from_data(train)
        if not list(model.parameters()) or not model.stages:
            return {'status': 'skipped', 'reason': 'no trainable parameters / stages'}
        kw = dict(batch_size=args.sc_batch_size, num_negatives=args.sc_num_negatives)
        full_steps = len(CDRLinkLoader(train, **kw))
        stage_epochs = {s: 2 for s in model.stages}
        t0 = time.perf_counter()
        res = fit(model, train, epochs=2, stage_epochs=stage_epochs, max_steps_per_epoch=args.max_steps,
                  progress=False, seed=0, lr=1e-3, **kw)
        wall = time.perf_counter() - t0
    except Exception as e:  # a model that cannot train on this data is reported, not fatal
        return {'status': 'skipped', 'reason': f'{type(e).__name__}: {str(e)[:300]}'}
    stages = {}
    for row in res.history:
        if row['epoch'] == 1 and row['steps']:
            stages[row['stage']] = {'s_per_step': row['seconds'] / row['steps'], 'steps': row['steps'],
                                    'loss': row['loss']}
    epoch_s = sum(v['s_per_step'] for v in stages.values()) * full_steps
    return {'status': 'ok', 'stages': stages, 'steps_per_epoch': full_steps,
            'epoch_s_extrapolated': epoch_s, 'wall_s': wall,
            'num_parameters': sum(p.numel() for p in model.parameters()),
            'setup_peak_mib': setup, 'users': int(train['user'].num_nodes),
            'items': int(train['item'].num_nodes), 'train_edges': int(train['user', 'interacts', 'item'].num_edges)}


def run_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    r"""One measurement; returns its figures plus the memory of the process."""
    if args.threads:
        torch.set_num_threads(args.threads)
    base = peak_mib()
    if name.startswith('sportcloth/'):
        out = measure_sport_cloth(name.split('/', 1)[1], args)
    else:
        train = synthetic_train(args.users, args.items, args.edges)
        out = {'graph_peak_mib': peak_mib()}
        if name == 'negative_sampling':
            out.update(measure_negative_sampling(train, args))
        elif name == 'pyg_lightgcn3':
            out.update(measure_pyg_lightgcn(train, args))
        else:
            out.update(measure_ours(name, train, args))
        if 'ms_per_step' in out:
            out['samples_per_s'] = args.batch_size / (out['ms_per_step'] / 1e3)
    out['import_peak_mib'] = base
    out['peak_rss_mib'] = peak_mib()
    out['rss_end_mib'] = rss_mib()
    out['peak_over_import_mib'] = out['peak_rss_mib'] - base
    out['thp_mem_alloc_enable'] = os.environ.get('THP_MEM_ALLOC_ENABLE')
    return out


def registered_models() -> list[str]:
    from cdrgraph.cli.registry import MODELS
    return [m for m in MODELS.names() if m not in UNTRAINED]


# ------------------------------------------------------------------------------------------ main
def _child_argv(args: argparse.Namespace, name: str) -> list[str]:
    keep = ['users', 'items', 'edges', 'dim', 'batch_size', 'num_negatives', 'steps', 'gcn_steps', 'pyg_steps',
            'warmup', 'ns_repeats', 'pyg_ns_repeats', 'threads', 'data_root', 'max_steps', 'sc_batch_size',
            'sc_num_negatives']
    argv = [sys.executable, osp.abspath(__file__), '--child', name]
    for k in keep:
        argv += [f'--{k.replace("_", "-")}', str(getattr(args, k))]
    return argv


def run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    if args.inprocess:
        out = run_child(name, args)
        out['inprocess'] = True   # peak memory is the running maximum of this process
        return out
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')]))}
    proc = subprocess.run(_child_argv(args, name), capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {'status': 'error', 'reason': proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else
                f'exit code {proc.returncode}'}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _line(name: str, r: dict[str, Any]) -> str:
    if r.get('status') in ('skipped', 'error'):
        return f'{name:28s} {r["status"]}: {r["reason"]}'
    if 'samples_per_s' in r:
        return (f'{name:28s} {r["samples_per_s"]:10.0f} samples/s  ({r["ms_per_step"]:8.1f} ms/step, batch '
                f'{r["batch_ms_per_step"]:.1f} ms of it)  peak RSS {r["peak_rss_mib"]:.0f} MiB')
    if 'ms_per_batch' in r:
        return (f'{name:28s} {r["ms_per_batch"]:.2f} ms per batch (PyG negative_sampling '
                f'{r["pyg_ms_per_batch"]:.1f} ms), {r["positives_drawn"]} training positives drawn')
    return (f'{name:28s} epoch ≈ {r["epoch_s_extrapolated"]:8.1f} s ({r["steps_per_epoch"]} steps; '
            + ', '.join(f'{s}: {v["s_per_step"] * 1e3:.0f} ms/step' for s, v in r['stages'].items())
            + f')  peak RSS {r["peak_rss_mib"]:.0f} MiB')


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--users', type=int, default=100_000)
    parser.add_argument('--items', type=int, default=50_000)
    parser.add_argument('--edges', type=int, default=2_000_000)
    parser.add_argument('--dim', type=int, default=64)
    parser.add_argument('--batch-size', type=int, default=4096)
    parser.add_argument('--num-negatives', type=int, default=1)
    parser.add_argument('--steps', type=int, default=30, help='timed steps of BPR-MF')
    parser.add_argument('--gcn-steps', type=int, default=5, help='timed steps of our LightGCN-3')
    parser.add_argument('--pyg-steps', type=int, default=2, help="timed steps of PyG's LightGCN-3")
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--ns-repeats', type=int, default=50)
    parser.add_argument('--pyg-ns-repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    parser.add_argument('--only', nargs='+', default=None,
                        help=f'subset of {SYNTHETIC} and sportcloth (or sportcloth/<Model>)')
    parser.add_argument('--data-root', default=DEFAULT_DATA_ROOT)
    parser.add_argument('--no-sport-cloth', action='store_true')
    parser.add_argument('--max-steps', type=int, default=4, help='Sport–Cloth: steps per measured epoch')
    parser.add_argument('--sc-batch-size', type=int, default=4096)
    parser.add_argument('--sc-num-negatives', type=int, default=4)
    parser.add_argument('--inprocess', action='store_true', help='no subprocesses (peak memory is an upper bound)')
    parser.add_argument('--out', default=osp.join(HERE, 'results', 'bench_training.json'))
    parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_child(args.child, args)))
        return {}

    names = list(SYNTHETIC)
    want_sc = not args.no_sport_cloth
    if args.only:
        names = [n for n in SYNTHETIC if n in args.only]
        want_sc = want_sc and any(n.startswith('sportcloth') for n in args.only)
    print(f'training benchmark: {args.users} users x {args.items} items, {args.edges} interactions, d={args.dim}, '
          f'batch {args.batch_size}, torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'load avg {os.getloadavg()}, THP_MEM_ALLOC_ENABLE={os.environ.get("THP_MEM_ALLOC_ENABLE")}', flush=True)
    results: dict[str, Any] = {}
    for name in names:
        results[name] = run(name, args)
        print(_line(name, results[name]), flush=True)

    sport: dict[str, Any] = {}
    if want_sc and not osp.isdir(osp.join(args.data_root, 'amazon-disencdr')):
        sport = {'status': 'skipped', 'reason': f'no amazon-disencdr under {args.data_root}'}
        print(f'sport-cloth: skipped ({sport["reason"]})')
    elif want_sc:
        models = registered_models()
        if args.only:
            picked = [n.split('/', 1)[1] for n in args.only if n.startswith('sportcloth/')]
            models = [m for m in models if m in picked] if picked else models
        for m in models:
            sport[m] = run(f'sportcloth/{m}', args)
            print(_line(f'sportcloth/{m}', sport[m]), flush=True)
    else:
        sport = {'status': 'skipped', 'reason': 'not requested'}

    r = results
    if 'bpr_dense' in r and 'bpr_sparse' in r and 'samples_per_s' in r['bpr_sparse']:
        print(f"BPR-MF sparse / dense: {r['bpr_sparse']['samples_per_s'] / r['bpr_dense']['samples_per_s']:.1f}x")
    if 'lightgcn3' in r and 'pyg_lightgcn3' in r and 'samples_per_s' in r.get('pyg_lightgcn3', {}):
        print(f"LightGCN-3 ours / PyG: {r['lightgcn3']['samples_per_s'] / r['pyg_lightgcn3']['samples_per_s']:.1f}x")
    out = {'config': {k: v for k, v in vars(args).items() if k not in ('child', 'out')},
           'load_avg': list(os.getloadavg()), 'synthetic': results, 'sport_cloth': sport}
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == '__main__':
    main()
