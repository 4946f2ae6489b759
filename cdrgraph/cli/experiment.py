r"""Run one experiment config over seeds and models, and sweeps over a grid.

``data -> split -> candidates`` (persisted in a cache folder keyed by a hash of
the config sections that determine them) ``-> for every seed and model: fit on
train with early stopping on val -> evaluate on test`` (plus full ranking when
the protocol is sampled and ``evaluation.also_full`` is set) ``-> results.csv``
(one row per model × seed × protocol × metric × domain) and ``results.md``
(mean ± std via :func:`cdrgraph.metrics.report.summarize`, ``↓`` markers from
the config's ``baseline``).
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import os.path as osp
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import networkx as nx
import pandas as pd
import yaml
from torch_geometric.data import HeteroData

from cdrgraph.cli.config import (
    ConfigError,
    build_candidates,
    build_dataset,
    build_evaluator,
    build_model,
    build_splits,
    cache_root,
    get_by_path,
    model_entries,
    parse_assignment,
    set_by_path,
    train_kwargs,
    validate_config,
)
from cdrgraph.data.schema import INTERACTS, domain_names
from cdrgraph.train.checkpoint import save_checkpoint
from cdrgraph.train.distributed import barrier, is_distributed, is_main_process
from cdrgraph.train.evaluate import evaluate
from cdrgraph.train.fit import FitResult, fit
from cdrgraph.train.seed import seed_everything

__all__ = ['prepare_splits', 'split_key', 'run_model', 'run_experiment', 'run_sweep', 'parse_grid',
           'write_results', 'merge_runs', 'load_run', 'select_models', 'select_on_validation', 'selection_markdown',
           'config_differences', 'RESULT_COLUMNS', 'VAL_PREFIX']

RESULT_COLUMNS = ['model', 'seed', 'protocol', 'metric', 'domain', 'value']
SPLIT_CACHE_VERSION = 2  # bump when a split/candidate rule changes
MODEL_FILE = 'model.pt'
#: metric-name prefix of the validation rows of results.csv (``val_ndcg@10``)
VAL_PREFIX = 'val_'


# ---------------------------------------------------------------- data
def split_key(cfg: Mapping[str, Any]) -> str:
    r"""Hash of the config sections that determine the split and its candidates."""
    obj = {'version': SPLIT_CACHE_VERSION, 'data': cfg['data'], 'split': cfg['split'],
           'candidates': cfg.get('candidates')}
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _strip_shipped(data: HeteroData) -> HeteroData:
    for key in ('fixed_neg', 'fixed_neg_edge'):
        if key in data:
            del data[key]
    return data


def prepare_splits(cfg: Mapping[str, Any],
                   rebuild: bool = False) -> tuple[HeteroData, HeteroData, HeteroData]:
    r"""``(train, val, test)`` of a validated config, with evaluation
    candidates; loaded from ``<cache_dir>/<dataset>-<split_key>`` when it was
    built before (checksums verified by ``load_split``), else built and saved.
    """
    from cdrgraph.transforms.split_io import load_split

    folder = osp.join(cache_root(cfg), f"{cfg['data']['name']}-{split_key(cfg)}")
    if is_distributed():   # rank 0 builds and saves the split, the other ranks load it
        if is_main_process():
            splits = _prepare_splits_local(cfg, folder, rebuild)
        barrier()
        return splits if is_main_process() else load_split(folder)
    return _prepare_splits_local(cfg, folder, rebuild)


def _prepare_splits_local(cfg: Mapping[str, Any], folder: str,
                         rebuild: bool = False) -> tuple[HeteroData, HeteroData, HeteroData]:
    r""":func:`prepare_splits` in one process: load ``folder`` or build and save it."""
    from cdrgraph.transforms.split_io import load_split, save_split

    if not rebuild and osp.exists(osp.join(folder, 'manifest.json')):
        return load_split(folder)
    splits: Any = build_dataset(cfg['data'])
    for transform in build_splits(cfg['split']):
        splits = transform(splits)
    if not (isinstance(splits, (tuple, list)) and len(splits) == 3):
        raise ConfigError(f"split: the transforms {[s['name'] for s in cfg['split']]} must produce a "
                          f'(train, val, test) tuple, got {type(splits).__name__}; start with a split rule '
                          'such as GivenSplit, LeaveOneOut or RatioSplit')
    cand = cfg.get('candidates')
    if cand is not None:
        if not cand.get('shipped', True):
            splits = tuple(_strip_shipped(copy.copy(s)) for s in splits)
        splits = build_candidates(cand)(tuple(splits))
    save_split(folder, tuple(splits), manifest={'experiment_split_key': split_key(cfg), 'data': cfg['data'],
                                                'split': cfg['split'], 'candidates': cand})
    return tuple(splits)  # type: ignore[return-value]


# ---------------------------------------------------------------- one model
def _held_out(data: HeteroData) -> Any:
    return getattr(data[INTERACTS], 'edge_label_index', None)


def _fit_and_test(cfg: Mapping[str, Any], name: str, entry: Mapping[str, Any], splits: Sequence[HeteroData],
                  seed: int, ckpt_dir: str, device: str, progress: bool, resume: bool,
                  domain: str | None) -> dict[str, dict[str, float]]:
    train, val, test = splits
    ev_cfg = cfg['evaluation']
    protocol = ev_cfg.get('protocol', 'sampled')
    evaluator = build_evaluator(ev_cfg)
    seed_everything(seed)
    model = build_model(entry, train)
    result = fit(model, train, val, evaluator=evaluator, seed=seed, checkpoint_dir=ckpt_dir, resume=resume,
                 device=device, progress=progress, **train_kwargs(cfg, entry))
    exclude = _held_out(val)
    shard = is_distributed()
    out = {protocol: evaluate(model, train, test, evaluator, exclude=exclude, device=device, distributed=shard)}
    # the validation metrics of the tested model, as `val_<metric>/<domain>` (what a sweep selects on)
    out[protocol].update(_val_rows(result, model, train, val, evaluator, device, shard))
    if protocol == 'sampled' and ev_cfg.get('also_full'):
        out['full'] = evaluate(model, train, test, build_evaluator(ev_cfg, protocol='full'), exclude=exclude,
                               device=device, distributed=shard)
    if is_main_process():
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_checkpoint({'model': state, 'config': dict(cfg), 'entry': name, 'seed': seed, 'domain': domain},
                        osp.join(ckpt_dir, MODEL_FILE))
    return {p: {k: float(v) for k, v in m.items()} for p, m in out.items()}


def _val_rows(result: FitResult, model: Any, train: HeteroData, val: HeteroData, evaluator: Any, device: str,
              shard: bool) -> dict[str, float]:
    r"""Validation metrics of the model as :func:`fit` left it (the best state
    of its last stage), keyed ``val_<metric>/<domain>`` without the ``num_*``
    counts: the history row of that epoch when the stage was monitored,
    otherwise a fresh evaluation on ``val`` (models without a trained stage,
    e.g. ``Popularity``); empty when ``val`` holds no held-out pairs."""
    held = _held_out(val)
    if held is None or held.numel() == 0:
        return {}
    metrics: Mapping[str, Any] | None = None
    if result.history:
        last = result.history[-1]['stage']
        epoch = result.best_epoch.get(last)
        rows = [r for r in result.history if r['stage'] == last and r['epoch'] == epoch and result.monitor in r]
        if rows and result.best_metric.get(last) is not None:
            metrics = rows[-1]
    if metrics is None:
        metrics = evaluate(model, train, val, evaluator, device=device, distributed=shard)
    # metric keys are '<metric>/<domain>'; the history's own keys (stage, epoch, loss, ...) have no '/'
    return {f'{VAL_PREFIX}{k}': float(v) for k, v in metrics.items()
            if '/' in k and not k.startswith('num_') and v is not None}


def _add_means(metrics: dict[str, float]) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for key, val in metrics.items():
        metric, _, dom = key.rpartition('/')
        if dom != 'mean' and not metric.startswith('num_') and val == val:
            groups.setdefault(metric, []).append(val)
    out = {k: v for k, v in metrics.items() if not k.endswith('/mean')}
    out.update({f'{m}/mean': sum(v) / len(v) for m, v in groups.items()})
    return out


def run_model(cfg: Mapping[str, Any], name: str, entry: Mapping[str, Any], splits: Sequence[HeteroData],
              seed: int, out: str, device: str = 'cpu', progress: bool = False,
              resume: bool = False) -> dict[str, dict[str, float]]:
    r"""Fit one model entry with one seed and return its test metrics per
    protocol (``{'sampled': {...}, 'full': {...}}``). With
    ``select_domains: per_domain`` one model is trained per domain on
    ``SelectDomains([domain])`` of the split and the per-domain metrics are
    merged (``/mean`` recomputed over the domains)."""
    ckpt = osp.join(out, 'checkpoints', name, f'seed{seed}')
    if entry.get('select_domains') != 'per_domain':
        return _fit_and_test(cfg, name, entry, splits, seed, ckpt, device, progress, resume, None)
    from cdrgraph.transforms.select_domains import SelectDomains
    merged: dict[str, dict[str, float]] = {}
    names = domain_names(splits[0])
    unknown = sorted(set(entry.get('domains') or {}) - set(names))
    if unknown:
        raise ConfigError(f'models.{name}.domains: unknown domain(s) {unknown}; the data has {names}')
    for dname in names:
        sub = SelectDomains([dname])(tuple(splits))
        override = (entry.get('domains') or {}).get(dname, {})
        dentry = {**entry, 'model': {**entry['model'], **override.get('model', {})},
                  'train': {**entry['train'], **override.get('train', {})}}
        res = _fit_and_test(cfg, name, dentry, sub, seed, osp.join(ckpt, _safe(dname)), device, progress,
                            resume, dname)
        for proto, metrics in res.items():
            merged.setdefault(proto, {}).update({k: v for k, v in metrics.items() if not k.endswith('/mean')})
    return {proto: _add_means(m) for proto, m in merged.items()}


# ---------------------------------------------------------------- results
def _safe(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9._=,-]+', '_', str(text))


def _rows(name: str, seed: int, results: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    rows = []
    for proto, metrics in results.items():
        for key, val in metrics.items():
            metric, _, dom = key.rpartition('/')
            rows.append({'model': name, 'seed': seed, 'protocol': proto, 'metric': metric or key,
                         'domain': dom if metric else '', 'value': float(val)})
    return rows


#: metrics shown in the Markdown tables (results.csv keeps every metric)
HEADLINE_METRICS: dict[str, list[str]] = {
    'sampled': ['hr@10', 'ndcg@10', 'mrr'],
    'full': ['hr@10', 'ndcg@10', 'recall@20', 'ndcg@20'],
    'ctr': ['auc', 'gauc', 'logloss'],
    'rating': ['mae', 'rmse'],
}


def write_results(df: pd.DataFrame, out: str, baseline: Mapping[str, str] | None = None,
                  title: str = 'Results', report: Mapping[str, Sequence[str]] | None = None) -> str:
    r"""Write ``results.csv`` (long format) and ``results.md`` (one mean ± std
    table per protocol, ``↓`` where a model is below its baseline) into
    ``out``; returns the Markdown text. The tables show ``report[protocol]``
    (the config's ``evaluation.report``, e.g. ``{full: [precision@10,
    recall@10, ndcg@10]}``) or :data:`HEADLINE_METRICS`."""
    from cdrgraph.metrics.report import summarize, to_markdown

    os.makedirs(out, exist_ok=True)
    df.to_csv(osp.join(out, 'results.csv'), index=False)
    parts = [f'# {title}\n']
    for proto, group in df.groupby('protocol', sort=False):
        runs: dict[str, list[dict[str, float]]] = {}
        for (model, _seed), g in group.groupby(['model', 'seed'], sort=False):
            runs.setdefault(str(model), []).append(
                {f'{m}/{d}': v for m, d, v in zip(g['metric'], g['domain'], g['value'], strict=True) if d})
        base = {m: b for m, b in (baseline or {}).items() if m in runs and b in runs}
        label = {'sampled': 'Sampled ranking (1 positive + N candidates)',
                 'full': 'Full ranking (all items of the domain, training items excluded)',
                 'ctr': 'CTR', 'rating': 'Rating'}.get(str(proto), str(proto))
        seeds = sorted(group['seed'].unique().tolist())
        parts.append(f'## {label}\n\nmean ± std over seeds {seeds}; ↓: below the single-domain baseline '
                     f'({", ".join(f"{m} vs {b}" for m, b in base.items()) or "none"})\n')
        per_model = {str(m): sorted(g['seed'].unique().tolist()) for m, g in group.groupby('model', sort=False)}
        fewer = {m: s for m, s in per_model.items() if s != seeds}
        if fewer:
            parts.append('Fewer seeds for ' + '; '.join(f'{m}: {s}' for m, s in fewer.items()) + '.\n')
        present = set(group['metric'].astype(str))
        wanted = report.get(str(proto), HEADLINE_METRICS.get(str(proto), [])) if report else \
            HEADLINE_METRICS.get(str(proto), [])
        headline = [m for m in wanted if m in present] or None
        parts.append(to_markdown(summarize(runs, baseline=base or None, metrics=headline)))
    parts.append('\nAll metrics (every k, per domain and seed) are in results.csv.\n')
    text = '\n'.join(parts)
    with open(osp.join(out, 'results.md'), 'w') as f:
        f.write(text)
    return text


def select_models(cfg: Mapping[str, Any], models: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    r"""The entries of :func:`~cdrgraph.cli.config.model_entries` named in
    ``models`` (all of them for :obj:`None`), in the config's order; an
    unknown name raises :class:`ConfigError` listing the known ones."""
    entries = model_entries(cfg)
    if models is None:
        return entries
    unknown = [m for m in models if m not in entries]
    if unknown:
        raise ConfigError(f'--models {",".join(models)}: no model entry {", ".join(map(repr, unknown))} in the '
                          f'config; its entries are {", ".join(entries)}')
    return {name: entry for name, entry in entries.items() if name in models}


def run_experiment(cfg: Mapping[str, Any], out: str, seeds: Sequence[int] | None = None,
                   device: str | None = None, progress: bool = False, resume: bool = False,
                   models: Sequence[str] | None = None) -> pd.DataFrame:
    r"""Run a validated config: every model entry (``Popularity`` added for
    ranking protocols; only the entries named in ``models`` when given) for
    every seed, writing ``results.csv``, ``results.md`` and the resolved
    ``config.yaml`` (its ``seeds`` and ``models`` those of this run) into
    ``out`` and one ``checkpoints/<model>/seed<k>/model.pt`` per run (for
    ``cdrgraph eval``). Runs of one config split over seeds or models
    (several machines, an interrupted study) are combined by
    :func:`merge_runs`.

    Returns:
        The long results table (columns :data:`RESULT_COLUMNS`).

    Example:
        >>> cfg = load_config('configs/fake_quickstart.yaml')
        >>> df = run_experiment(cfg, 'runs/quickstart', seeds=[0, 1])
    """
    cfg = validate_config(cfg)
    seeds = list(seeds) if seeds is not None else list(cfg['seeds'])
    cfg['seeds'] = seeds
    entries = select_models(cfg, models)
    cfg['models'] = {name: entry for name, entry in cfg['models'].items() if name in entries}
    device = device or cfg.get('device') or 'cpu'
    main_rank = is_main_process()
    if main_rank:
        os.makedirs(out, exist_ok=True)
        with open(osp.join(out, 'config.yaml'), 'w') as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
    splits = prepare_splits(cfg)
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        for name, entry in entries.items():
            res = run_model(cfg, name, entry, splits, seed, out, device=device, progress=progress,
                            resume=resume)
            rows.extend(_rows(name, seed, res))
            if main_rank:
                pd.DataFrame(rows, columns=RESULT_COLUMNS).to_csv(osp.join(out, 'results.csv'), index=False)
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    if main_rank:
        write_results(df, out, cfg.get('baseline'), title=cfg.get('name') or 'Results',
                      report=cfg['evaluation'].get('report'))
    barrier()   # the other ranks return once the results are on disk
    return df


# ---------------------------------------------------------------- sweeps
def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    r"""``['a.b=1,2,3']`` -> ``{'a.b': [1, 2, 3]}`` (each value typed as YAML)."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, raw = spec.partition('=')
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise ConfigError(f'--grid {spec!r}: expected key=v1,v2,..., '
                              'e.g. models.LightGCN.model.num_layers=1,2,3')
        if key in grid:
            raise ConfigError(f'--grid {spec!r}: {key!r} is given twice')
        grid[key] = [parse_assignment(f'{key}={v}')[1] for v in raw.split(',')]
    return grid


def _point_tag(keys: Iterable[str], values: Iterable[Any]) -> str:
    r"""Label of a sweep point, e.g. ``fraction=0.2`` for ``{'split.0.fraction': 0.2}``; its folder is
    ``_safe(tag)``."""
    return ','.join(f'{k.rsplit(".", 1)[-1]}={v}' for k, v in zip(keys, values, strict=True))


def run_sweep(cfg: Mapping[str, Any], grid: Mapping[str, Sequence[Any]], out: str,
              seeds: Sequence[int] | None = None, device: str | None = None, progress: bool = False,
              resume: bool = False, models: Sequence[str] | None = None) -> pd.DataFrame:
    r"""Run ``cfg`` once per point of the Cartesian ``grid`` (dotted config
    keys -> values) into ``out/<key=value,...>/`` and write the combined
    ``out/sweep.csv`` (one column per grid key) and ``out/sweep.md``,
    rewritten after each point so that an interrupted sweep keeps its
    finished points.

    Example:
        >>> run_sweep(cfg, {'models.LightGCN.model.num_layers': [1, 2, 3]}, 'runs/depth')
    """
    if not grid:
        raise ConfigError('sweep: the grid is empty; pass --grid key=v1,v2')
    keys = list(grid)
    frames, sections = [], []
    all_df = pd.DataFrame()
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        sub_cfg = copy.deepcopy(dict(cfg))
        for k, v in point.items():
            set_by_path(sub_cfg, k, v)
        try:
            sub_cfg = validate_config(sub_cfg)
        except ConfigError as e:
            raise ConfigError(f'sweep point {point}: {e}') from None
        tag = _point_tag(point.keys(), point.values())
        sub_out = osp.join(out, _safe(tag))
        df = run_experiment(sub_cfg, sub_out, seeds=seeds, device=device, progress=progress, resume=resume,
                            models=models)
        for k, v in point.items():
            df.insert(0, k, str(v) if isinstance(v, (list, dict)) else v)
        frames.append(df)
        with open(osp.join(sub_out, 'results.md')) as f:
            sections.append(f.read().replace('# ', f'# {tag}: ', 1))
        # rewritten after every point: an interrupted sweep keeps the finished points (for merge_runs)
        all_df = pd.concat(frames, ignore_index=True)
        if is_main_process():
            all_df.to_csv(osp.join(out, 'sweep.csv'), index=False)
            with open(osp.join(out, 'sweep.md'), 'w') as f:
                f.write('\n'.join([selection_markdown(select_on_validation(all_df, sub_cfg)), *sections]))
    return all_df


def select_on_validation(sweep: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.DataFrame:
    r"""Per model, the sweep point whose validation value of the model's
    early-stopping monitor (``train.monitor``, e.g. ``ndcg@10/mean``; the
    ``val_`` rows of ``results.csv``), averaged over the point's seeds, is
    best (largest, or smallest for ``monitor_mode: min``; the first point in
    grid order on ties). The test value of the same metric is reported beside
    it and never used to choose. Models whose rows hold no validation values
    (runs written before they were recorded) are left out.

    Args:
        sweep (pandas.DataFrame): the long table of ``sweep.csv`` (grid
            columns, then :data:`RESULT_COLUMNS`).
        cfg (Mapping[str, Any]): a validated config of the sweep (for each
            model's monitor).

    Returns:
        One row per model: ``model``, the grid columns, ``monitor``,
        ``validation``, ``test``, ``seeds`` and ``points`` (how many points
        had validation values).

    Example:
        >>> select_on_validation(pd.read_csv('runs/depth/sweep.csv'), cfg)
    """
    grid_cols = [c for c in sweep.columns if c not in RESULT_COLUMNS]
    entries = model_entries(cfg)
    rows = []
    for model, group in sweep.groupby('model', sort=False):
        kw = train_kwargs(cfg, entries.get(str(model), {}))
        metric, _, dom = str(kw['monitor']).rpartition('/')
        sign = -1.0 if kw['monitor_mode'] == 'min' else 1.0
        best: dict[str, Any] | None = None
        points = 0
        for point, g in group.groupby(grid_cols, sort=False) if grid_cols else [((), group)]:
            point = point if isinstance(point, tuple) else (point,)
            val = g[(g['metric'] == f'{VAL_PREFIX}{metric}') & (g['domain'] == dom)]
            if val.empty:
                continue
            points += 1
            test = g[(g['metric'] == metric) & (g['domain'] == dom) & (g['protocol'] == val['protocol'].iloc[0])]
            row = {'model': model, **dict(zip(grid_cols, point, strict=True)), 'monitor': kw['monitor'],
                   'validation': float(val['value'].mean()),
                   'test': float(test['value'].mean()) if not test.empty else float('nan'),
                   'seeds': ','.join(str(v) for v in sorted(val['seed'].unique()))}
            if best is None or sign * row['validation'] > sign * best['validation']:
                best = row
        if best is not None:
            rows.append({**best, 'points': points})
    return pd.DataFrame(rows, columns=['model', *grid_cols, 'monitor', 'validation', 'test', 'seeds', 'points'])


def selection_markdown(selection: pd.DataFrame) -> str:
    r"""The ``# Selected on validation`` section of ``sweep.md``: the table
    of :func:`select_on_validation` (validation and test to 4 decimals), or
    a line saying that the runs hold no validation values.

    Args:
        selection (pandas.DataFrame): rows as :func:`select_on_validation`
            returns them (one per model; several such frames may be
            concatenated, e.g. models selected under different configs).

    Example:
        >>> print(selection_markdown(select_on_validation(sweep, cfg)))
    """
    from cdrgraph.metrics.report import to_markdown
    head = ('# Selected on validation\n\nPer model, the point with the best validation value of its '
            'early-stopping monitor (mean over seeds); the test value is shown, not used to choose.\n\n')
    if selection.empty:
        return head + 'No validation values in these runs (written before cdrgraph recorded them).\n'
    sel = selection.copy()
    sel[['validation', 'test']] = sel[['validation', 'test']].map('{:.4f}'.format)
    return head + to_markdown(sel.set_index('model'))


# ---------------------------------------------------------------- merging runs
def _read_results(path: str) -> pd.DataFrame:
    # every column but seed/value as text: '' (no domain) stays '', a domain called 'NA' stays a name and
    # sweep grid values keep the spelling their point folder was named with
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if 'seed' in df.columns and 'value' in df.columns:
        df['seed'] = df['seed'].astype(int)
        df['value'] = pd.to_numeric(df['value'].replace('', 'nan'))
    return df


def load_run(folder: str) -> tuple[dict[str, Any], pd.DataFrame]:
    r"""``(config, results)`` of an output folder of ``cdrgraph train --out``
    or ``cdrgraph merge --out``: its ``config.yaml`` and ``results.csv``
    (columns :obj:`RESULT_COLUMNS`, ``seed`` as int, ``value`` as float).

    Example:
        >>> cfg, df = load_run('benchmarks/results/baselines_sport_cloth')
    """
    for name in ('config.yaml', 'results.csv'):
        if not osp.exists(osp.join(folder, name)):
            raise ConfigError(f'{folder}: no {name}; expected an output folder of `cdrgraph train` or '
                              '`cdrgraph merge` (--out DIR), holding config.yaml and results.csv')
    with open(osp.join(folder, 'config.yaml')) as f:
        cfg = yaml.safe_load(f)
    df = _read_results(osp.join(folder, 'results.csv'))
    if list(df.columns) != RESULT_COLUMNS:
        raise ConfigError(f'{folder}/results.csv: columns {list(df.columns)}, expected {RESULT_COLUMNS}')
    return cfg, df


def _model_order(parts: Sequence[Sequence[str]], baseline: Mapping[str, str] | None) -> list[str]:
    r"""One order of the model entries of runs merged from parts. Each part
    lists a subsequence of its config's order, so consecutive names are
    constraints; parts that share no model (``--models UniCDR`` beside
    ``--models SMF,LightGCN``) are ordered by the config's ``baseline``
    mapping (a baseline before the models compared with it) where the parts
    do not say otherwise; remaining ties put models without a baseline
    first, then keep the order of first appearance. Parts of configs that
    list the models in contradicting orders fall back to first appearance."""
    graph: nx.DiGraph = nx.DiGraph()
    first: dict[str, int] = {}
    for names in parts:
        for name in names:
            first.setdefault(name, len(first))
            graph.add_node(name)
        graph.add_edges_from(zip(names, names[1:], strict=False))
    if not nx.is_directed_acyclic_graph(graph):
        return list(first)
    for model, base in (baseline or {}).items():
        if model in first and base in first and not nx.has_path(graph, model, base):
            graph.add_edge(base, model)
    compared = set(baseline or {})
    return list(nx.lexicographical_topological_sort(graph, key=lambda m: (m in compared, first[m])))


def config_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    r"""The top-level sections in which two run configs differ, apart from
    what a part of one experiment may change (``seeds``, ``models``,
    ``baseline``); empty when both runs belong to one experiment.

    Example:
        >>> config_differences(load_run('runs/a')[0], load_run('runs/b')[0])
        []
    """
    per_run = ('seeds', 'models', 'baseline')
    return sorted(k for k in set(a) | set(b) if k not in per_run and a.get(k) != b.get(k))


def _merge_plain(folders: Sequence[str], out: str) -> pd.DataFrame:
    runs = [(f, *load_run(f)) for f in folders]
    first, cfg0, _ = runs[0]

    # a model entry added to the config later (a part run with the new entry) brings its baseline pair along:
    # the pairs are united like the model entries, and one model compared with two baselines is refused
    baseline: dict[str, str] = {}
    for folder, cfg, _ in runs:
        for model, ref in (cfg.get('baseline') or {}).items():
            if baseline.setdefault(model, ref) != ref:
                raise ConfigError(f'{folder}/config.yaml: baseline compares {model!r} with {ref!r}, an earlier run '
                                  f'with {baseline[model]!r}; one model entry has one baseline (rename one entry)')
    models: dict[str, Any] = {}
    order = _model_order([list(cfg.get('models') or {}) for _, cfg, _ in runs], baseline or None)
    owner: dict[tuple[str, int], str] = {}
    for folder, cfg, df in runs:
        differ = config_differences(cfg, cfg0)
        if differ:
            raise ConfigError(f'{folder}/config.yaml differs from {first}/config.yaml in {differ}: only runs of '
                              'one experiment (same data, split, candidates, evaluation, train) can be merged')
        for name, entry in (cfg.get('models') or {}).items():
            if name in models and models[name] != entry:
                raise ConfigError(f'{folder}/config.yaml: model entry {name!r} differs from the one of an earlier '
                                  'run; rename one of them to merge both')
            models.setdefault(name, entry)
        for model, seed in df[['model', 'seed']].drop_duplicates().itertuples(index=False):
            key = (str(model), int(seed))
            if key in owner:
                raise ConfigError(f'{model} seed {seed} is in both {owner[key]} and {folder}; merge each run '
                                  'once (re-run only the missing ones with --models/--seeds)')
            owner[key] = folder
    df = pd.concat([d for _, _, d in runs], ignore_index=True)
    rank = {m: i for i, m in enumerate(['Popularity', *order])}
    df = df.assign(_o=df['model'].map(lambda m: rank.get(m, len(rank)))) \
        .sort_values(['_o', 'seed'], kind='stable').drop(columns='_o').reset_index(drop=True)
    cfg = dict(cfg0, models={m: models[m] for m in order}, seeds=sorted({s for _, s in owner}))
    if baseline:
        cfg['baseline'] = baseline
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, 'config.yaml'), 'w') as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    write_results(df, out, cfg.get('baseline'), title=cfg.get('name') or 'Results',
                  report=(cfg.get('evaluation') or {}).get('report'))
    return df


def _point_of(folder: str, keys: Sequence[str]) -> tuple[str, ...] | None:
    r"""Grid values (as text, as ``sweep.csv`` holds them) of the run in
    ``folder`` read from its ``config.yaml`` at the dotted ``keys``;
    :obj:`None` when a key is absent."""
    with open(osp.join(folder, 'config.yaml')) as f:
        cfg = yaml.safe_load(f)
    missing = object()
    values = [get_by_path(cfg, key, missing) for key in keys]
    if any(v is missing for v in values):
        return None
    return tuple(str(v) for v in values)


def merge_runs(folders: Sequence[str], out: str) -> pd.DataFrame:
    r"""Combine output folders of one experiment run in parts — different
    seeds or models (``cdrgraph train --seeds/--models``), e.g. on several
    machines or after an interruption — into ``out``: one ``results.csv``,
    ``results.md`` (``Fewer seeds for ...`` where models differ) and
    ``config.yaml`` (union of seeds, models and ``baseline`` pairs, so a
    model entry added to the config later merges with the runs made
    before it). Sweep folders
    (``sweep.csv``) are merged point by point, including the point an
    interrupted sweep was in (its finished models; the grid values are read
    from the point's ``config.yaml``). Raises :class:`ConfigError`
    when the runs' data, split, candidates, evaluation or training differ,
    when a (model, seed) appears twice, or when a model entry differs or is
    compared with two baselines. Checkpoints are not copied.
    Models keep their config order as far as the parts show it; parts that
    share no model are placed by the config's ``baseline`` mapping (a
    baseline before the models compared with it).

    Example:
        >>> merge_runs(['runs/a-seeds012', 'runs/a-seeds34'], 'runs/a')
    """
    folders = [str(f) for f in folders]
    if not folders:
        raise ConfigError('merge: give at least one run folder')
    sweeps = [osp.exists(osp.join(f, 'sweep.csv')) for f in folders]
    if not any(sweeps):
        return _merge_plain(folders, out)
    if not all(sweeps):
        raise ConfigError('merge: ' + ', '.join(f for f, s in zip(folders, sweeps, strict=True) if not s)
                          + ' hold no sweep.csv while the others are sweeps; merge sweeps with sweeps')
    frames = [_read_results(osp.join(f, 'sweep.csv')) for f in folders]
    grid_cols = [c for c in frames[0].columns if c not in RESULT_COLUMNS]
    for f, frame in zip(folders, frames, strict=True):
        if [c for c in frame.columns if c not in RESULT_COLUMNS] != grid_cols:
            raise ConfigError(f'{f}/sweep.csv: grid {[c for c in frame.columns if c not in RESULT_COLUMNS]} '
                              f'differs from {grid_cols} of {folders[0]}')
    # point folder name -> grid values, named as run_sweep names them
    values: dict[str, tuple[str, ...]] = {}
    for frame in frames:
        for point in frame[grid_cols].drop_duplicates().itertuples(index=False):
            values.setdefault(_safe(_point_tag(grid_cols, point)), tuple(point))
    points: dict[str, list[str]] = {}
    for f in folders:
        for name in sorted(os.listdir(f)):
            if osp.exists(osp.join(f, name, 'results.csv')):
                if name not in values:   # the point a sweep was interrupted in: its config.yaml names it
                    point = _point_of(osp.join(f, name), grid_cols)
                    if point is None or _safe(_point_tag(grid_cols, point)) != name:
                        raise ConfigError(f'{f}/{name}: a run folder that no row of {f}/sweep.csv names (grid '
                                          f'{grid_cols}) and whose config.yaml does not either; move it out of '
                                          'the sweep folder or re-run the sweep')
                    values[name] = point
                points.setdefault(name, []).append(osp.join(f, name))
    merged, sections = [], []
    names = sorted(points, key=list(values).index)
    for name in names:
        df = _merge_plain(points[name], osp.join(out, name))
        with open(osp.join(out, name, 'results.md')) as fh:
            sections.append(fh.read().replace('# ', f'# {_point_tag(grid_cols, values[name])}: ', 1))
        for col, value in reversed(list(zip(grid_cols, values[name], strict=True))):
            df.insert(0, col, value)
        merged.append(df)
    all_df = pd.concat(merged, ignore_index=True)
    all_df.to_csv(osp.join(out, 'sweep.csv'), index=False)
    with open(osp.join(out, names[0], 'config.yaml')) as fh:   # the first point's merged config: the monitors
        first = yaml.safe_load(fh)
    with open(osp.join(out, 'sweep.md'), 'w') as fh:
        fh.write('\n'.join([selection_markdown(select_on_validation(all_df, first)), *sections]))
    return all_df


# ---------------------------------------------------------------- new-domain fine-tuning
def finetune(checkpoint: str, cfg: Mapping[str, Any], out: str, domain: str | None = None,
             seeds: Sequence[int] | None = None, device: str | None = None,
             progress: bool = False) -> pd.DataFrame:
    r"""Fine-tune a trained model on a new target domain and test it there.

    ``checkpoint`` is a ``model.pt`` written by ``cdrgraph train`` (it holds
    the run's config and weights); ``cfg`` describes the new data: ``data``
    (the trained domains unchanged, plus the new one), ``split`` (e.g. a
    ``ColdStartSplit`` from the source into the new domain), ``evaluation``
    and ``train``; its ``models`` section is not needed. The model is rebuilt
    on the training graph of its own run, loaded, given the new domain with
    its ``extend_domains(train, domain, eval_data)`` (e.g.
    :class:`~cdrgraph.models.dacdr.DACDR`) and trained on the ``'finetune'``
    stage only (everything else frozen), once per seed; results go to
    ``out/results.csv`` and ``out/results.md`` like ``cdrgraph train``.

    Example:
        >>> cfg = load_config('new_domain.yaml', require_models=False)
        >>> finetune('runs/a/checkpoints/DACDR/seed0/model.pt', cfg, 'runs/a-finetune', domain='Drama')
    """
    from cdrgraph.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    if not isinstance(ckpt, dict) or 'config' not in ckpt or 'entry' not in ckpt:
        raise ConfigError(f'{checkpoint} is not an experiment model file (no config stored); use '
                          '<out>/checkpoints/<model>/seed<k>/model.pt written by `cdrgraph train`')
    old_cfg = validate_config(ckpt['config'])
    name = ckpt['entry']
    entry = old_cfg['models'][name]
    cfg = validate_config(cfg, require_models=False)
    seeds = list(seeds) if seeds is not None else list(cfg['seeds'])
    device = device or cfg.get('device') or 'cpu'
    old_train = prepare_splits(old_cfg)[0]
    train, val, test = prepare_splits(cfg)
    ev_cfg = cfg['evaluation']
    protocol = ev_cfg.get('protocol', 'sampled')
    evaluator = build_evaluator(ev_cfg)
    kwargs = {**train_kwargs(cfg, {'train': {}}), 'progress': progress}
    os.makedirs(out, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        seed_everything(seed)
        model = build_model(entry, old_train)
        model.load_state_dict(ckpt['model'])
        if not hasattr(model, 'extend_domains'):
            raise ConfigError(f'{name} ({entry["class"]}) cannot take a new domain: it has no extend_domains(); '
                              'new-domain fine-tuning is available for DACDR')
        model.extend_domains(train, domain=domain, eval_data=(val, test))
        result = fit(model, train, val, evaluator=evaluator, seed=seed, stages=['finetune'],
                     checkpoint_dir=osp.join(out, 'checkpoints', name, f'seed{seed}'), device=device, **kwargs)
        res = {protocol: {**evaluate(model, train, test, evaluator, exclude=_held_out(val), device=device),
                          **_val_rows(result, model, train, val, evaluator, device, False)}}
        rows.extend(_rows(f'{name}-finetuned', seed, {p: {k: float(v) for k, v in m.items()}
                                                       for p, m in res.items()}))
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    write_results(df, out, None, title=f"{cfg.get('name') or 'finetune'}: {name} fine-tuned from {checkpoint}",
                  report=ev_cfg.get('report'))
    return df
