r"""Relabel a model's rows of one ``cdrgraph train`` run as a part of another entry of a benchmark config — the
run of a hyper-parameter check point (entry ``UniCDR`` with ``--set`` changes) becomes seed 0 of the config entry
that was added with exactly those settings (``UniCDR-val``), instead of training the same thing twice. The issue-4
``UniCDR-val`` / ``UniCDRPlus-val`` seed-0 rows of the dual-user-intra bench results were made this way.

Usage::

    python benchmarks/relabel_run.py runs/sc_ll1.0_la0.9 \
        benchmarks/configs/unicdr_bench_dual_user_intra_sport_cloth.yaml \
        --from UniCDR --to UniCDR-val --out runs/sc_val_s0
    cdrgraph merge benchmarks/results/unicdr_bench_dual_user_intra_sport_cloth runs/sc_val_s0 runs/sc_val_s1 ... \
        --out benchmarks/results/unicdr_bench_dual_user_intra_sport_cloth

Refused, naming what differs, unless the run's ``--from`` entry equals the config's ``--to`` entry (model, train,
domains, select_domains) and every other section of the two configs (data, split, candidates, evaluation, train, …)
is equal — the relabelled rows are then the rows a ``cdrgraph train CONFIG --models TO --seeds K`` run gives,
training being deterministic for a seed. The output folder holds what that run would write (``config.yaml`` with
only the ``--to`` entry and the run's seeds, ``results.csv``, ``results.md``; no checkpoints), so that
``cdrgraph merge`` takes it like any part. Rows of other models in the run are left out.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

import yaml

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(HERE))

from cdrgraph.cli.config import ConfigError, load_config, validate_config  # noqa: E402
from cdrgraph.cli.experiment import config_differences, load_run, write_results  # noqa: E402


def relabel_run(run: str, config: str, source: str, target: str, out: str) -> int:
    r"""Write ``run``'s rows of entry ``source`` as a run of entry
    ``target`` of ``config`` into ``out`` and return the number of rows.

    Args:
        run (str): output folder of one ``cdrgraph train`` run.
        config (str): the YAML config that holds the ``target`` entry.
        source (str): the entry name in ``run``.
        target (str): the entry name in ``config``.
        out (str): the folder to write (created; must not hold results).

    Example:
        >>> relabel_run('runs/sc_ll1.0_la0.9', 'bench.yaml', 'UniCDR', 'UniCDR-val', 'runs/sc_val_s0')
    """
    run_cfg, df = load_run(run)
    # through YAML as `cdrgraph train` writes it, so that both sides compare as read back from disk
    cfg = yaml.safe_load(yaml.safe_dump(validate_config(load_config(config)), sort_keys=False))
    if source not in (run_cfg.get('models') or {}):
        raise ConfigError(f'{run}/config.yaml has no model entry {source!r}; its entries are '
                          f'{", ".join(run_cfg.get("models") or {})}')
    if target not in cfg['models']:
        raise ConfigError(f'{config}: no model entry {target!r}; its entries are {", ".join(cfg["models"])}')
    got, want = run_cfg['models'][source], cfg['models'][target]
    if got != want:
        keys = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        raise ConfigError(f'{run}/config.yaml entry {source!r} differs from {config} entry {target!r} in {keys}: '
                          f'{ {k: got.get(k) for k in keys} } vs { {k: want.get(k) for k in keys} }; only a run '
                          'of identical settings can be relabelled')
    differ = config_differences(run_cfg, cfg)
    if differ:
        raise ConfigError(f'{run}/config.yaml differs from {config} in {differ}: the run was made under other '
                          'data, split, candidates, evaluation or training settings')
    rows = df[df['model'] == source].assign(model=target)
    if rows.empty:
        raise ConfigError(f'{run}/results.csv has no rows of {source!r}')
    if osp.exists(osp.join(out, 'results.csv')):
        raise FileExistsError(f'{out}/results.csv exists; give a new --out folder')
    cfg['seeds'] = sorted(int(s) for s in rows['seed'].unique())
    cfg['models'] = {target: want}
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, 'config.yaml'), 'w') as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    write_results(rows, out, cfg.get('baseline'), title=cfg.get('name') or 'Results',
                  report=cfg['evaluation'].get('report'))
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('run', help='output folder of the cdrgraph train run to relabel')
    parser.add_argument('config', help='the config holding the --to entry')
    parser.add_argument('--from', dest='source', required=True, help='entry name in the run')
    parser.add_argument('--to', dest='target', required=True, help='entry name in the config')
    parser.add_argument('--out', required=True, help='folder of the relabelled part')
    args = parser.parse_args()
    n = relabel_run(args.run, args.config, args.source, args.target, args.out)
    print(f'{n} rows of {args.source} in {args.run} written as {args.target} to {args.out}')


if __name__ == '__main__':
    main()
