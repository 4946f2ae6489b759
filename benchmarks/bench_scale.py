r"""Million-user scale run (issue 9): a 1M-user, 200k-item, 10M-interaction, 3-domain
:class:`~cdrgraph.datasets.FakeCDRDataset` trained with sampled subgraphs.

Phases (``--phase``; ``all`` runs ``generate`` in this process, then each
model in a fresh subprocess so its peak resident memory is its own):

* ``generate`` — build the graph (``num_candidates`` approximate generation,
  ``O(users x candidates)``), the leave-one-out split (time order, per user
  and domain) and the evaluation rows of ``--eval-users`` random users
  (1 + 99 sampled candidates; the other users' held-out pairs are dropped
  from evaluation, never from training), and save them with
  :func:`cdrgraph.transforms.split_io.save_split` under ``--cache``.
* ``train --model M`` — load the split, build ``M`` with
  ``from_data`` and train it with :func:`cdrgraph.train.fit` in
  ``mode='sampled'`` (:class:`~cdrgraph.loader.CDRLinkLoader`, PyG
  neighbour sampling) for ``--steps`` steps of ``--batch-size`` positives;
  then evaluate the sampled protocol on the evaluation users (the evaluator
  streams users in chunks: the full graph is encoded once, scores are
  computed ``chunk_size`` rows at a time) and full ranking on
  ``--full-users`` of them. Reports s/step, the projected epoch time
  (s/step x steps per epoch), evaluation times, metrics and peak RSS.

Usage::

    python benchmarks/bench_scale.py                                # generate + LightGCN + UniCDRPlus
    python benchmarks/bench_scale.py --users 100000 --items 20000 --edges 1000000 --steps 50   # smaller
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time
from typing import Any

import torch

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(HERE)
sys.path[:0] = [p for p in (HERE, ROOT) if p not in sys.path]

#: sparse-gradient tables: a step touches the sampled subgraph's rows only (dense Adam over the 1M-user
#: tables made a UniCDR+ step 4 s, LightGCN 1.6 s on one thread); UniCDR+ encodes users in chunks
MODELS = {
    'LightGCN': {'embedding_dim': 64, 'num_layers': 2, 'sparse': True},
    'UniCDRPlus': {'embedding_dim': 64, 'num_layers': 1, 'config': {'sparse': True, 'encode_chunk': 65_536}},
}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6   # KiB on Linux


def cache_folder(args: argparse.Namespace) -> str:
    return osp.join(osp.expanduser(args.cache), f'fake-{args.users}u-{args.items}i-{args.edges}e-{args.domains}d')


def generate(args: argparse.Namespace) -> dict[str, Any]:
    from cdrgraph.datasets import FakeCDRDataset
    from cdrgraph.transforms import EvalCandidates, LeaveOneOut
    from cdrgraph.transforms.split_io import save_split

    folder = cache_folder(args)
    if osp.exists(osp.join(folder, 'manifest.json')):
        print(f'split cached in {folder}')
        with open(osp.join(folder, 'scale.json')) as f:
            return json.load(f)
    out: dict[str, Any] = {}
    K = args.domains
    items = [args.items // K + (k < args.items % K) for k in range(K)]
    # active (user, domain) pairs: overlap users are in every domain, the others in one
    active_pairs = args.users * (args.user_overlap * K + (1 - args.user_overlap))
    t = time.perf_counter()
    ds = FakeCDRDataset(num_domains=K, num_users=args.users, num_items=items,
                        avg_degree=args.edges / active_pairs, user_overlap=args.user_overlap,
                        num_candidates=args.candidates, side_features=False, seed=0)
    data = ds[0]
    del ds
    out['generate_s'] = time.perf_counter() - t
    out['num_edges'] = int(data['user', 'interacts', 'item'].edge_index.size(1))
    out['num_users'], out['num_items'] = int(data['user'].num_nodes), int(data['item'].num_nodes)
    print(f"generated {out['num_users']} users x {out['num_items']} items, {out['num_edges']} interactions "
          f"in {out['generate_s']:.0f} s (peak RSS {peak_rss_gb():.1f} GB)")
    t = time.perf_counter()
    train, val, test = LeaveOneOut(order='time', validation=True, seed=0)(data)
    del data
    out['split_s'] = time.perf_counter() - t
    # evaluation rows of a random subset of users only (the held-out pairs of the others are not evaluated)
    gen = torch.Generator().manual_seed(0)
    keep_users = torch.zeros(out['num_users'], dtype=torch.bool)
    keep_users[torch.randperm(out['num_users'], generator=gen)[:args.eval_users]] = True
    for g in (val, test):
        store = g['user', 'interacts', 'item']
        sel = keep_users[store.edge_label_index[0]]
        for key in ('edge_label_index',):
            store[key] = store[key][:, sel]
        for key in ('edge_label',):
            if getattr(store, key, None) is not None:
                store[key] = store[key][sel]
    t = time.perf_counter()
    train, val, test = EvalCandidates(num_negatives=99, seed=0, dataset_id='bench_scale')((train, val, test))
    out['candidates_s'] = time.perf_counter() - t
    out['num_train_edges'] = int(train['user', 'interacts', 'item'].edge_index.size(1))
    out['num_test_rows'] = int(test['user', 'interacts', 'item'].edge_label_index.size(1))
    out['generate_peak_rss_gb'] = peak_rss_gb()
    save_split(folder, (train, val, test), manifest={'bench_scale': vars(args)})
    with open(osp.join(folder, 'scale.json'), 'w') as f:
        json.dump(out, f, indent=1)
    print(f"split {out['split_s']:.0f} s, candidates {out['candidates_s']:.0f} s, "
          f"{out['num_test_rows']} test rows; saved to {folder}")
    return out


def train(args: argparse.Namespace) -> dict[str, Any]:
    import cdrgraph.models as models
    from cdrgraph.metrics.evaluator import Evaluator
    from cdrgraph.train.evaluate import evaluate
    from cdrgraph.train.fit import fit
    from cdrgraph.transforms.split_io import load_split

    out: dict[str, Any] = {'model': args.model}
    t = time.perf_counter()
    train_g, val, test = load_split(cache_folder(args))
    out['load_s'] = time.perf_counter() - t
    torch.manual_seed(0)
    kwargs = dict(MODELS[args.model])
    if args.model == 'UniCDRPlus':
        from cdrgraph.models.uni_cdr_plus import UniCDRPlusConfig
        kwargs['config'] = UniCDRPlusConfig(**kwargs['config'])
    model = getattr(models, args.model).from_data(train_g, **kwargs)
    out['num_parameters'] = sum(p.numel() for p in model.parameters())
    out['model_kwargs'] = {k: (v if not hasattr(v, '__dataclass_fields__') else str(v)) for k, v in kwargs.items()}
    steps_per_epoch = -(-int(train_g['user', 'interacts', 'item'].edge_index.size(1)) // args.batch_size)
    t = time.perf_counter()
    result = fit(model, train_g, None, epochs=1, lr=args.lr, batch_size=args.batch_size, num_negatives=1,
                 mode='sampled', num_neighbors=args.fanout, sampler_backend=args.sampler,
                 max_steps_per_epoch=args.steps, seed=0,
                 progress=False)
    train_s = time.perf_counter() - t
    steps = result.history[-1]['steps']
    out.update(train_s=train_s, steps=steps, s_per_step=train_s / steps, steps_per_epoch=steps_per_epoch,
               projected_epoch_s=train_s / steps * steps_per_epoch, loss=result.history[-1]['loss'],
               train_peak_rss_gb=peak_rss_gb())
    print(f"{args.model}: {steps} steps in {train_s:.0f} s ({train_s / steps:.3f} s/step, "
          f"{args.batch_size * steps / train_s:.0f} positives/s) -> epoch of {steps_per_epoch} steps "
          f"≈ {out['projected_epoch_s'] / 60:.0f} min; peak RSS {out['train_peak_rss_gb']:.1f} GB")
    exclude = val['user', 'interacts', 'item'].edge_label_index
    t = time.perf_counter()
    sampled = evaluate(model, train_g, test, Evaluator('sampled', ks=(10,), chunk_size=4096), exclude=exclude)
    out['eval_sampled_s'] = time.perf_counter() - t
    out['sampled'] = {k: v for k, v in sampled.items() if k.startswith(('hr@10', 'ndcg@10', 'num_rows'))}
    # full ranking on the first --full-users evaluation users (all items of the domain, streamed in chunks)
    store = test['user', 'interacts', 'item']
    users = store.edge_label_index[0].unique()[:args.full_users]
    sub = test.clone()
    sel = torch.isin(store.edge_label_index[0], users)
    sub['user', 'interacts', 'item'].edge_label_index = store.edge_label_index[:, sel]
    if getattr(store, 'edge_label_neg', None) is not None:
        sub['user', 'interacts', 'item'].edge_label_neg = store.edge_label_neg[sel]
    t = time.perf_counter()
    full = evaluate(model, train_g, sub, Evaluator('full', ks=(10,), chunk_size=1024), exclude=exclude)
    out['eval_full_s'] = time.perf_counter() - t
    out['full_users'] = int(users.numel())
    out['full'] = {k: v for k, v in full.items() if k.startswith(('hr@10', 'ndcg@10', 'num_users'))}
    out['peak_rss_gb'] = peak_rss_gb()
    print(f"  eval sampled {out['eval_sampled_s']:.0f} s ({out['sampled'].get('num_rows/d0')} rows in d0), "
          f"full ranking of {out['full_users']} users {out['eval_full_s']:.0f} s; "
          f"sampled ndcg@10/mean {sampled.get('ndcg@10/mean', float('nan')):.4f}, "
          f"full ndcg@10/mean {full.get('ndcg@10/mean', float('nan')):.4f}; peak RSS {out['peak_rss_gb']:.1f} GB")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--phase', choices=['all', 'generate', 'train'], default='all')
    parser.add_argument('--model', choices=sorted(MODELS), default='LightGCN')
    parser.add_argument('--models', nargs='+', default=sorted(MODELS))
    parser.add_argument('--users', type=int, default=1_000_000)
    parser.add_argument('--items', type=int, default=200_000)
    parser.add_argument('--edges', type=int, default=10_000_000)
    parser.add_argument('--domains', type=int, default=3)
    parser.add_argument('--user-overlap', type=float, default=0.5)
    parser.add_argument('--candidates', type=int, default=256)
    parser.add_argument('--eval-users', type=int, default=20_000)
    parser.add_argument('--full-users', type=int, default=2_000)
    parser.add_argument('--steps', type=int, default=200)
    parser.add_argument('--batch-size', type=int, default=4096)
    parser.add_argument('--fanout', type=int, nargs='+', default=[10, 5])
    parser.add_argument('--lr', type=float, default=0.005)
    parser.add_argument('--sampler', choices=['auto', 'pyg', 'csr'], default='auto',
                        help="fit(sampler_backend=...): PyG's NeighborSampler or cdrgraph's CSR sampler")
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--cache', default='~/.cache/cdrgraph/scale')
    parser.add_argument('--json', default=osp.join(HERE, 'results', 'scale.json'))
    parser.add_argument('--tag', default='', help='suffix of the model keys in the report (e.g. -csr)')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.phase == 'generate':
        print(json.dumps(generate(args)))
        return
    if args.phase == 'train':
        print('RESULT ' + json.dumps(train(args)))
        return
    report: dict[str, Any] = {'config': {k: v for k, v in vars(args).items() if k not in ('phase', 'model')},
                              'threads': torch.get_num_threads(), 'generate': generate(args), 'train': {}}
    for m in args.models:
        # the child sees this run's arguments (the last --phase/--model win)
        cmd = [sys.executable, __file__, *sys.argv[1:], '--phase', 'train', '--model', m]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
        lines = [ln for ln in proc.stdout.splitlines() if not ln.startswith('RESULT ')]
        print('\n'.join(lines))
        res = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
        report['train'][m + args.tag] = json.loads(res[-1][7:]) if res else {'error': proc.stderr[-2000:]}
        if not res:
            print(f'{m} failed:\n{proc.stderr[-2000:]}')
    os.makedirs(osp.dirname(args.json), exist_ok=True)
    with open(args.json, 'w') as f:
        json.dump(report, f, indent=1)
    print(f'written to {args.json}')


if __name__ == '__main__':
    main()
