r"""Epoch time of UniCDR / UniCDR+ on a real scenario (issue 4), data sampling included.

Loads the split of a UniCDR config (default: the Sport–Cloth dual-user-intra
benchmark, ``benchmarks/configs/unicdr_bench_dual_user_intra_sport_cloth.yaml``)
and, for each model entry named in ``--models``, with the entry's own training
settings (batch size, negatives, domain policy):

* **sampling** — ``--steps`` batches of the loader :func:`cdrgraph.train.fit`
  builds (:class:`~cdrgraph.loader.link_loader.CDRLinkLoader`), timed alone;
* **step** — ``fit(..., max_steps_per_epoch=--steps)`` without validation
  (after one warm-up step): loader + loss + backward + optimiser, per step;
* the projected time of one pass over the training pairs
  (``ceil(|train pairs| / batch_size)`` steps) and of the config's budgeted
  epoch (``max_steps_per_epoch`` steps);
* with ``--optimizer-impl default,fused``: each figure once per Adam
  implementation (``fit(optimizer_impl=...)``) and the step-time ratio to
  the first one;
* with ``--profile``: the top operators (PyTorch profiler, self CPU time) of
  ``--profile-steps`` training steps.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_unicdr_epoch.py --steps 20
    python benchmarks/bench_unicdr_epoch.py --models UniCDRPlus --profile --json unicdr_epoch.json
    OMP_NUM_THREADS=1 python benchmarks/bench_unicdr_epoch.py --optimizer-impl default,fused,default,fused
"""
from __future__ import annotations

import argparse
import json
import math
import os
import os.path as osp
import platform
import sys
import time
from typing import Any

import torch

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(HERE)
sys.path[:0] = [p for p in (HERE, ROOT) if p not in sys.path]

DEFAULT_CONFIG = osp.join(HERE, 'configs', 'unicdr_bench_dual_user_intra_sport_cloth.yaml')

#: fit() arguments that matter for a timed training step (validation, early stopping and the epoch budget are
#: replaced by the benchmark's own)
_STEP_KEYS = ('lr', 'weight_decay', 'optimizer_impl', 'batch_size', 'num_negatives', 'domain_policy', 'mode',
              'num_neighbors', 'sampler_backend')


def _step_kwargs(cfg: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    from cdrgraph.cli.config import train_kwargs
    kw = train_kwargs(cfg, entry)
    return {k: kw[k] for k in _STEP_KEYS if k in kw}


def time_model(cfg: dict[str, Any], name: str, splits: tuple, steps: int, profile_steps: int,
               optimizer_impl: str | None = None) -> dict[str, Any]:
    from cdrgraph.cli.config import build_model
    from cdrgraph.data.schema import INTERACTS
    from cdrgraph.train.fit import _build_loader, _exclude_links, fit
    from cdrgraph.train.seed import seed_everything

    train = splits[0]
    entry = cfg['models'][name]
    kw = _step_kwargs(cfg, entry)
    if optimizer_impl is not None:
        kw['optimizer_impl'] = optimizer_impl
    seed_everything(0)
    model = build_model(entry, train)
    batch_size = int(kw.get('batch_size', 1024))
    loader = _build_loader(train, 0, batch_size, int(kw.get('num_negatives', 1)),
                           kw.get('domain_policy', 'proportional'), kw.get('mode', 'full'),
                           kw.get('num_neighbors'), _exclude_links(model), kw.get('sampler_backend', 'auto'))
    loader.set_epoch(0)
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    drawn = 0
    for _ in range(steps):
        try:
            next(it)
        except StopIteration:
            break
        drawn += 1
    sampling = (time.perf_counter() - start) / max(drawn, 1)

    common = dict(kw, epochs=1, evaluator=None, progress=False, seed=0, patience=10**9)
    fit(model, train, None, max_steps_per_epoch=1, **common)          # warm-up (allocations, first autograd)
    start = time.perf_counter()
    fit(model, train, None, max_steps_per_epoch=steps, **common)
    step = (time.perf_counter() - start) / steps

    num_pairs = int(train[INTERACTS].edge_index.size(1))
    full_steps = math.ceil(num_pairs / batch_size)
    budget = cfg['train'].get('max_steps_per_epoch')
    out: dict[str, Any] = {
        'model': name, 'optimizer_impl': kw.get('optimizer_impl', 'default'), 'batch_size': batch_size,
        'num_negatives': kw.get('num_negatives', 1),
        'train_pairs': num_pairs, 'sampling_s_per_step': sampling, 'train_s_per_step': step,
        'sampling_share': sampling / step, 'steps_per_pass': full_steps,
        'pass_s': step * full_steps,
        'budget_epoch_steps': budget, 'budget_epoch_s': step * budget if budget else None,
        'parameters': sum(p.numel() for p in model.parameters()),
    }
    if profile_steps:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fit(model, train, None, max_steps_per_epoch=profile_steps, **common)
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events) or 1.0
        out['profile_top'] = [{'op': e.key, 'calls': e.count, 'self_ms_per_step': e.self_cpu_time_total / 1e3
                               / profile_steps, 'share': e.self_cpu_time_total / total} for e in events[:15]]
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', default=DEFAULT_CONFIG)
    p.add_argument('--models', default='UniCDR,UniCDRPlus', help='comma-separated model entries of the config')
    p.add_argument('--steps', type=int, default=20, help='timed training steps (and sampled batches)')
    p.add_argument('--profile', action='store_true', help='also profile training steps (torch.profiler)')
    p.add_argument('--profile-steps', type=int, default=5)
    p.add_argument('--optimizer-impl', default=None,
                   help="comma-separated fit(optimizer_impl=...) values to time, e.g. 'default,fused' "
                        "(default: the config's)")
    p.add_argument('--json', default=None, help='write the figures to this file')
    args = p.parse_args(argv)
    from cdrgraph.cli.main import THP_ENV
    os.environ.setdefault(THP_ENV, '1')    # as the cdrgraph CLI does

    from cdrgraph.cli.config import load_config
    from cdrgraph.cli.experiment import prepare_splits
    cfg = load_config(args.config)
    names = [m for m in args.models.split(',') if m]
    unknown = [m for m in names if m not in cfg['models']]
    if unknown:
        raise SystemExit(f'{args.config}: no model entry {unknown}; entries: {list(cfg["models"])}')
    splits = prepare_splits(cfg)
    print(f"# {cfg['name']}: torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{platform.processor() or platform.machine()}, {THP_ENV}={os.environ[THP_ENV]}, "
          f'load average {os.getloadavg()}')
    impls = [i for i in args.optimizer_impl.split(',') if i] if args.optimizer_impl else [None]
    rows = []
    for name, (pos, impl) in ((n, e) for n in names for e in enumerate(impls)):
        r = time_model(cfg, name, splits, args.steps, args.profile_steps if args.profile else 0, impl)
        rows.append(r)
        budget = (f", {r['budget_epoch_steps']}-step budget epoch {r['budget_epoch_s']:.1f} s"
                  if r['budget_epoch_s'] else '')
        if impl is not None:
            first = rows[-1 - pos]     # this model's row of the first listed implementation
            r['step_ratio_to_first_impl'] = r['train_s_per_step'] / first['train_s_per_step']
            budget += f"; Adam {impl!r}: {r['step_ratio_to_first_impl']:.2f}x the step of {impls[0]!r}"
        print(f"{name}: batch {r['batch_size']} x {r['num_negatives']} negatives, "
              f"{r['train_s_per_step'] * 1e3:.0f} ms/step (sampling {r['sampling_s_per_step'] * 1e3:.1f} ms = "
              f"{100 * r['sampling_share']:.1f} %); one pass over {r['train_pairs']:,} pairs = "
              f"{r['steps_per_pass']} steps = {r['pass_s']:.0f} s{budget}")
        for row in r.get('profile_top', []):
            print(f"    {row['op']:<40} {row['calls']:>7} calls {row['self_ms_per_step']:8.1f} ms/step "
                  f"{100 * row['share']:5.1f} %")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    main()
