r"""The ``cdrgraph`` console script: ``train``, ``eval``, ``sweep`` and ``data stats``.

.. code-block:: text

    cdrgraph train CONFIG [--set key=value ...] [--seeds 0,1,2] [--out DIR]
    torchrun --nproc_per_node=N -m cdrgraph train CONFIG [--device cuda]   (DistributedDataParallel)
    cdrgraph eval CHECKPOINT [--split test]
    cdrgraph finetune CHECKPOINT NEW_DOMAIN_CONFIG [--domain NAME] [--seeds 0,1]
    cdrgraph train CONFIG --models CMF,EMCDR --seeds 3,4 --out DIR2      (a part of the runs)
    cdrgraph merge DIR DIR2 --out DIR3                                   (one table from the parts)
    cdrgraph sweep CONFIG --grid models.LightGCN.model.num_layers=1,2,3 [--out DIR]
    cdrgraph data stats NAME --root DIR [--raw-dir DIR] [--set key=value ...]
    cdrgraph depth CONFIG --layers 0,1,2,4 [--seeds 0,1] [--out DIR] [--combine mean,last] [--model ENTRY]

Errors exit with status 2 and a one-line message (``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ['main', 'build_parser']


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(',') if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'--seeds {text!r}: expected comma-separated ints, '
                                         'e.g. 0,1,2') from None
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f'--seeds {text!r}: expected non-negative ints, e.g. 0,1,2')
    return seeds


def _layers(text: str) -> list[int]:
    try:
        layers = [int(s) for s in text.split(',') if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'--layers {text!r}: expected comma-separated ints, '
                                         'e.g. 0,1,2,4') from None
    if not layers or any(v < 0 for v in layers):
        raise argparse.ArgumentTypeError(f'--layers {text!r}: expected non-negative ints, e.g. 0,1,2,4')
    return layers


def _words(flag: str, expected: str) -> Callable[[str], list[str]]:
    r"""argparse type of a non-empty comma-separated list (``--models``, ``--combine``)."""
    def parse(text: str) -> list[str]:
        words = [s.strip() for s in text.split(',') if s.strip()]
        if not words:
            raise argparse.ArgumentTypeError(f'{flag} {text!r}: expected {expected}')
        return words
    return parse


_names = _words('--models', 'comma-separated entries, e.g. CMF,EMCDR')
_modes = _words('--combine', 'e.g. mean,last')


def build_parser() -> argparse.ArgumentParser:
    r"""The argument parser of the ``cdrgraph`` command."""
    parser = argparse.ArgumentParser(prog='cdrgraph', description='Cross-domain recommendation experiments.')
    parser.add_argument('--debug', action='store_true', help='show tracebacks on errors')
    sub = parser.add_subparsers(dest='command', required=True)

    def run_args(p: argparse.ArgumentParser) -> None:
        p.add_argument('config', help='YAML experiment file (see configs/README.md)')
        p.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                       help='override a config value, e.g. models.BPRMF.train.epochs=5 (repeatable)')
        p.add_argument('--seeds', type=_seeds, default=None,
                       help='comma-separated seeds (default: config seeds)')
        p.add_argument('--models', type=_names, default=None,
                       help='comma-separated model entries to run (default: all; Popularity only when named)')
        p.add_argument('--out', default=None, help='output folder (default: runs/<config name>)')
        p.add_argument('--device', default=None, help="torch device (default: config 'device' or cpu)")
        p.add_argument('--resume', action='store_true', help='resume interrupted runs from their checkpoints')
        p.add_argument('--no-progress', dest='progress', action='store_false', help='hide progress bars')

    train = sub.add_parser('train', help='train and evaluate every model of a config over seeds')
    run_args(train)
    sweep = sub.add_parser('sweep', help='run a config once per point of a grid')
    run_args(sweep)
    sweep.add_argument('--grid', action='append', required=True, metavar='KEY=V1,V2',
                       help='grid axis, e.g. models.LightGCN.model.num_layers=1,2,3 (repeatable)')

    ft = sub.add_parser('finetune', help='fine-tune a trained model (model.pt) on a new target domain')
    ft.add_argument('checkpoint', help='<out>/checkpoints/<model>/seed<k>/model.pt of a `cdrgraph train` run')
    ft.add_argument('config', help='YAML file of the new data: data, split, evaluation, train (no models)')
    ft.add_argument('--domain', default=None, help='the new target domain (name); default: the only new one')
    ft.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                    help='override a config value (repeatable)')
    ft.add_argument('--seeds', type=_seeds, default=None, help='comma-separated seeds (default: config seeds)')
    ft.add_argument('--out', default=None, help='output folder (default: runs/<config name>)')
    ft.add_argument('--device', default=None, help="torch device (default: config 'device' or cpu)")
    ft.add_argument('--no-progress', dest='progress', action='store_false', help='hide progress bars')

    merge = sub.add_parser('merge', help='combine runs of one config made in parts (--seeds/--models)')
    merge.add_argument('runs', nargs='+', help='output folders of `cdrgraph train` (or of `cdrgraph sweep`)')
    merge.add_argument('--out', required=True, help='folder of the merged results (may be one of the runs)')

    ev = sub.add_parser('eval', help='evaluate a saved model (checkpoints/<model>/seed<k>/model.pt)')
    ev.add_argument('checkpoint')
    ev.add_argument('--split', choices=('val', 'test'), default='test')
    ev.add_argument('--protocol', choices=('sampled', 'full', 'ctr', 'rating'), default=None,
                    help="override the config's evaluation protocol")
    ev.add_argument('--device', default='cpu')

    data = sub.add_parser('data', help='dataset utilities')
    dsub = data.add_subparsers(dest='data_command', required=True)
    stats = dsub.add_parser('stats', help='per-domain statistics, overlaps and connected components')
    stats.add_argument('name', help='dataset class name, e.g. AmazonCDR')
    stats.add_argument('--root', default=None, help='dataset root (processed cache)')
    stats.add_argument('--raw-dir', default=None, help='folder of the raw files (may be read-only)')
    stats.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                       help='dataset constructor argument, e.g. pair=phone_electronic (repeatable)')

    depth = sub.add_parser('depth', help='over-smoothing depth study of a propagating model')
    depth.add_argument('config', help='YAML experiment file with one propagating model (e.g. LightGCN)')
    depth.add_argument('--layers', type=_layers, required=True, help='depths, e.g. 0,1,2,4')
    depth.add_argument('--seeds', type=_seeds, default=None, help='comma-separated seeds (default: config seeds)')
    depth.add_argument('--out', default=None, help='output folder (default: runs/<config name>-depth)')
    depth.add_argument('--combine', type=_modes, default=['mean', 'last', 'learned'],
                       help='layer-combination modes: mean, last, learned, native (default: mean,last,learned)')
    depth.add_argument('--model', default=None, help='model entry (default: the only propagating entry)')
    depth.add_argument('--metric', default=None, help='metric of the depth figure (default: ndcg@10)')
    depth.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                       help='override a config value (repeatable)')
    depth.add_argument('--device', default=None, help="torch device (default: config 'device' or cpu)")
    return parser


def _default_out(args: argparse.Namespace, cfg: dict[str, Any]) -> str:
    if args.out:
        return args.out
    name = cfg.get('name') or osp.splitext(osp.basename(args.config))[0]
    return osp.join('runs', name)


def _cmd_train(args: argparse.Namespace) -> int:
    from cdrgraph.cli.config import load_config
    from cdrgraph.cli.experiment import run_experiment
    from cdrgraph.train.distributed import init_distributed, is_distributed, is_main_process
    cfg = load_config(args.config, args.overrides)
    out = _default_out(args, cfg)
    # under torchrun: one process group, this rank's device (cuda:<LOCAL_RANK> for --device cuda)
    device = init_distributed(args.device or cfg.get('device') or 'cpu')
    main_rank = is_main_process()
    try:
        run_experiment(cfg, out, seeds=args.seeds, device=device, progress=args.progress, resume=args.resume,
                       models=args.models)
    finally:
        if is_distributed():
            import torch.distributed as dist
            dist.destroy_process_group()
    if main_rank:
        with open(osp.join(out, 'results.md')) as f:
            print(f.read())
        print(f'results written to {osp.join(out, "results.csv")} and {osp.join(out, "results.md")}')
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from cdrgraph.cli.config import load_config
    from cdrgraph.cli.experiment import parse_grid, run_sweep
    cfg = load_config(args.config, args.overrides)
    grid = parse_grid(args.grid)
    out = _default_out(args, cfg)
    run_sweep(cfg, grid, out, seeds=args.seeds, device=args.device, progress=args.progress,
              resume=args.resume, models=args.models)
    with open(osp.join(out, 'sweep.md')) as f:   # its first section: the points selected on validation
        print(f.read().split('\n# ', 1)[0])
    print(f'sweep over {grid} written to {osp.join(out, "sweep.csv")} and {osp.join(out, "sweep.md")}')
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from cdrgraph.cli.experiment import merge_runs
    merge_runs(args.runs, args.out)
    # what was merged decides the file, not what an earlier command may have left in --out
    sweep = osp.exists(osp.join(args.runs[0], 'sweep.csv'))
    name = 'sweep.md' if sweep else 'results.md'
    with open(osp.join(args.out, name)) as f:
        print(f.read())
    print(f'{len(args.runs)} runs merged into {args.out}')
    return 0


def _cmd_depth(args: argparse.Namespace) -> int:
    from cdrgraph.cli.config import load_config
    from cdrgraph.cli.depth import depth_study
    cfg = load_config(args.config, args.overrides)
    out = args.out or osp.join('runs', f"{cfg.get('name') or osp.splitext(osp.basename(args.config))[0]}-depth")
    study = depth_study(cfg, args.layers, seeds=args.seeds, out=out, combine_modes=args.combine,
                        model=args.model, metric=args.metric, device=args.device)
    for mode, why in study.skipped.items():
        print(f'skipped combine mode {mode!r}: {why}')
    files = ['depth_metrics.csv', 'depth_smoothness.csv'] + [osp.basename(p) for p in study.figures]
    print(f'depth study written to {out}: {", ".join(files)}')
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from cdrgraph.cli.config import load_config
    from cdrgraph.cli.experiment import finetune
    cfg = load_config(args.config, args.overrides, require_models=False)
    out = _default_out(args, cfg)
    finetune(args.checkpoint, cfg, out, domain=args.domain, seeds=args.seeds, device=args.device,
             progress=args.progress)
    with open(osp.join(out, 'results.md')) as f:
        print(f.read())
    print(f'results written to {osp.join(out, "results.csv")} and {osp.join(out, "results.md")}')
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from cdrgraph.cli.config import ConfigError, build_evaluator, build_model, validate_config
    from cdrgraph.cli.experiment import prepare_splits
    from cdrgraph.data.schema import INTERACTS
    from cdrgraph.train.checkpoint import load_checkpoint
    from cdrgraph.train.evaluate import evaluate
    ckpt = load_checkpoint(args.checkpoint)
    if not isinstance(ckpt, dict) or 'config' not in ckpt or 'entry' not in ckpt:
        raise ConfigError(f'{args.checkpoint} is not an experiment model file (no config stored); use '
                          '<out>/checkpoints/<model>/seed<k>/model.pt written by `cdrgraph train`')
    cfg = validate_config(ckpt['config'])
    entry = {'Popularity': {'class': 'Popularity', 'model': {}, 'train': {}, 'select_domains': None},
             **cfg['models']}[ckpt['entry']]
    splits = prepare_splits(cfg)
    if ckpt.get('domain') is not None:
        from cdrgraph.transforms.select_domains import SelectDomains
        splits = SelectDomains([ckpt['domain']])(tuple(splits))
    train, val, test = splits
    model = build_model(entry, train)
    model.load_state_dict(ckpt['model'])
    data = test if args.split == 'test' else val
    exclude = getattr(val[INTERACTS], 'edge_label_index', None) if args.split == 'test' else None
    evaluator = build_evaluator(cfg['evaluation'], protocol=args.protocol)
    metrics = evaluate(model, train, data, evaluator, exclude=exclude, device=args.device)
    print(f"{ckpt['entry']} (seed {ckpt.get('seed')}) on {args.split}, {evaluator!r}")
    width = max((len(k) for k in metrics), default=0)
    for key in sorted(metrics):
        val_ = metrics[key]
        print(f'{key:<{width}}  {val_:.6g}' if isinstance(val_, float) else f'{key:<{width}}  {val_}')
    return 0


def _cmd_data_stats(args: argparse.Namespace) -> int:
    from cdrgraph.cli.config import ConfigError, _path, allowed_keys, check_keys, parse_assignment
    from cdrgraph.cli.registry import DATASETS
    try:
        cls = DATASETS.get(args.name)
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    kwargs: dict[str, Any] = {}
    if args.root is not None:
        kwargs['root'] = _path(args.root)
    if args.raw_dir is not None:
        kwargs['raw_dir'] = _path(args.raw_dir)
    for text in args.overrides:
        key, value = parse_assignment(text)
        kwargs[key] = value
    allowed = allowed_keys(cls)
    check_keys(kwargs, allowed, f'data stats {args.name}')
    if 'root' in allowed and 'root' not in kwargs:
        import inspect
        if inspect.signature(cls.__init__).parameters['root'].default is inspect.Parameter.empty:
            raise ConfigError(f'data stats {args.name}: --root DIR is required')
    from cdrgraph.data.stats import dataset_stats, format_stats
    data = cls(**kwargs)[0]
    print(format_stats(dataset_stats(data)))
    return 0


#: PyTorch's switch that puts large CPU tensors on transparent huge pages; the CLI turns it on unless the
#: environment sets it (``THP_MEM_ALLOC_ENABLE=0`` opts out). Fresh full-size gradient buffers then cost far
#: fewer page faults: a UniCDR training step on Sport–Cloth (1 thread) went from 673 to 468 ms
#: (``benchmarks/bench_unicdr_epoch.py``)
THP_ENV = 'THP_MEM_ALLOC_ENABLE'


def main(argv: Sequence[str] | None = None) -> int:
    r"""Entry point of the ``cdrgraph`` console script; returns the exit status.

    Sets ``THP_MEM_ALLOC_ENABLE=1`` (:data:`THP_ENV`) for the process unless
    the environment already sets it.

    Example:
        >>> main(['train', 'configs/fake_quickstart.yaml', '--seeds', '0', '--out', 'runs/quick'])
        0
    """
    os.environ.setdefault(THP_ENV, '1')
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {'train': _cmd_train, 'sweep': _cmd_sweep, 'eval': _cmd_eval, 'depth': _cmd_depth,
                'finetune': _cmd_finetune, 'merge': _cmd_merge}
    try:
        from cdrgraph.train.distributed import env_world_size
        if env_world_size() > 1 and args.command != 'train':
            raise RuntimeError(f'`cdrgraph {args.command}` runs in one process; under torchrun only '
                               '`cdrgraph train` is distributed')
        if args.command == 'data':
            return _cmd_data_stats(args)
        return commands[args.command](args)
    except KeyboardInterrupt:
        print('cdrgraph: interrupted (resume with --resume)', file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        msg = ' '.join(str(msg).split())
        print(f'cdrgraph: error: {type(e).__name__}: {msg}', file=sys.stderr)
        return 2


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
