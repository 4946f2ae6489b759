r"""YAML experiment configs: loading, ``--set`` overrides, validation against
constructor signatures, and building data, splits, models and evaluators.

A config has these top-level keys (see ``configs/README.md``)::

    name: str                                  # optional experiment name
    data: {name: <dataset>, <constructor kwargs>}
    split: [{name: <split transform>, <kwargs>}, ...]   # applied in order
    candidates: {num_negatives, seed, dataset_id, compat_keep_positive, shipped}
    evaluation: {protocol, ks, ..., also_full: bool}    # Evaluator kwargs
    train: {<fit() kwargs>}                    # defaults for every model
    models: {<entry>: {class: <model>, model: {...}, train: {...}, select_domains: per_domain}}
    baseline: {<entry>: <baseline entry>}      # '↓' markers
    seeds: [0, 1, 2, 3, 4]
    cache_dir: str                             # persisted splits + candidates
    device: str
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import os
import os.path as osp
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import yaml

from cdrgraph.cli.registry import DATASETS, MODELS, SPLITS

__all__ = ['ConfigError', 'load_config', 'apply_overrides', 'set_by_path', 'parse_assignment',
           'validate_config', 'allowed_keys', 'check_keys', 'build_dataset', 'build_splits',
           'build_candidates', 'build_evaluator', 'build_model', 'model_entries', 'train_kwargs',
           'default_monitor', 'cache_root']

TOP_LEVEL = ('name', 'data', 'split', 'candidates', 'evaluation', 'train', 'models', 'baseline', 'seeds',
             'cache_dir', 'device')
MODEL_ENTRY = ('class', 'model', 'train', 'select_domains', 'domains')
SELECT_DOMAINS = ('per_domain',)
#: constructor arguments every ``from_data`` fills from the graph (never written in a config)
FROM_DATA = ('num_users', 'num_items', 'num_domains', 'items_per_domain')
#: fit() arguments the experiment sets itself
FIT_RESERVED = ('model', 'train_data', 'val_data', 'evaluator', 'seed', 'checkpoint_dir', 'resume', 'device',
                'progress', 'loader', 'callback')
#: constructor arguments that are objects, not config values
CTOR_RESERVED = ('self', 'transform', 'pre_transform', 'pre_filter', 'log')
PATH_KEYS = ('root', 'raw_dir')
EVAL_EXTRA = ('also_full', 'report')
CANDIDATE_EXTRA = ('shipped',)


class ConfigError(ValueError):
    r"""An invalid experiment config: names the offending key and how to fix it."""


# ---------------------------------------------------------------- loading and overrides
def parse_assignment(text: str) -> tuple[str, Any]:
    r"""Split ``'a.b=value'`` into ``('a.b', value)`` with ``value`` typed as YAML
    (``'3'`` -> ``3``, ``'[1, 2]'`` -> list, ``'null'`` -> :obj:`None`)."""
    key, sep, raw = text.partition('=')
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. models.LightGCN.model.num_layers=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ''
    except yaml.YAMLError as e:
        raise ConfigError(f'--set {text!r}: value {raw!r} is not valid YAML: {e}') from e
    return key, value


def set_by_path(cfg: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    r"""Set ``cfg[a][b][c] = value`` for ``path='a.b.c'`` in place (creating
    missing mappings; integer segments index lists, e.g. ``split.1.seed``)."""
    parts = path.split('.')
    if any(p == '' for p in parts):
        raise ConfigError(f'--set {path!r}: empty key segment')
    node: Any = cfg
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = '.'.join(parts[:depth]) or '<top level>'
        if isinstance(node, list):
            index = _list_index(node, part)
            if index is None:
                raise ConfigError(f'--set {path!r}: {where} is a list of {len(node)} entries; '
                                  f'use an index 0..{len(node) - 1} instead of {part!r}')
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(f'--set {path!r}: {where} is a {type(node).__name__} ({node!r}), not a mapping')
    return cfg


def _list_index(node: list, part: str) -> int | None:
    r"""``int(part)`` when it indexes ``node`` (negative indices allowed), else :obj:`None`."""
    if part.lstrip('-').isdigit() and -len(node) <= int(part) < len(node):
        return int(part)
    return None


def get_by_path(cfg: Any, path: str, default: Any = None) -> Any:
    r"""``cfg[a][b][c]`` for ``path='a.b.c'`` (integer segments index lists,
    as in :func:`set_by_path`); ``default`` when a segment is absent.

    Example:
        >>> get_by_path({'split': [{'fraction': 0.2}]}, 'split.0.fraction')
        0.2
    """
    node: Any = cfg
    for part in path.split('.'):
        index = _list_index(node, part) if isinstance(node, list) else None
        if index is not None:
            node = node[index]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return default
    return node


def _tree_copy(node: Any) -> Any:
    r"""Copy of a YAML tree in which no mapping or list is shared.

    ``copy.deepcopy`` keeps the sharing that YAML aliases create (``*name``
    and ``<<: *name`` hand every use the same dict), so a ``--set`` on one
    aliased entry would change all of them; rebuilding every container
    gives each use its own copy."""
    if isinstance(node, dict):
        return {key: _tree_copy(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_tree_copy(value) for value in node]
    return copy.deepcopy(node)


def apply_overrides(cfg: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    r"""Apply ``--set key=value`` strings in order; returns a new config in
    which YAML aliases are independent copies (see :func:`_tree_copy`)."""
    out = _tree_copy(cfg)
    for text in overrides:
        key, value = parse_assignment(text)
        set_by_path(out, key, value)
    return out


def load_config(path: str, overrides: Iterable[str] = (), require_models: bool = True) -> dict[str, Any]:
    r"""Read a YAML experiment file, apply ``--set`` overrides and validate it.

    Args:
        path (str): the YAML file.
        overrides (list[str], optional): ``'a.b=c'`` assignments.
        require_models (bool, optional): a config without ``models`` is an
            error (``False`` for ``cdrgraph finetune``, whose model comes
            from a checkpoint). (default: :obj:`True`)

    Returns:
        The validated, normalised config (see :func:`validate_config`).

    Example:
        >>> cfg = load_config('configs/fake_quickstart.yaml', ['models.BPRMF.train.epochs=2'])
    """
    if not osp.isfile(path):
        raise ConfigError(f'config file {path!r} does not exist')
    with open(path) as f:
        try:
            cfg = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f'{path}: invalid YAML: {e}') from e
    if not isinstance(cfg, dict):
        raise ConfigError(f'{path}: the top level must be a mapping with keys {", ".join(TOP_LEVEL)}')
    try:
        return validate_config(apply_overrides(cfg, overrides), require_models=require_models)
    except ConfigError as e:
        raise ConfigError(f'{path}: {e}') from None


# ---------------------------------------------------------------- validation
def _params(fn: Callable) -> list[inspect.Parameter]:
    target = fn.__init__ if isinstance(fn, type) else fn
    params = []
    for p in inspect.signature(target).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in CTOR_RESERVED:
            continue
        params.append(p)
    return params


def dataclass_params(cls: type) -> dict[str, type]:
    r"""Constructor arguments of ``cls`` annotated with a dataclass (or
    ``Dataclass | None``), e.g. ``compat: UniCDRCompat``: in a config they are
    written as a mapping of the dataclass's fields."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:   # unresolvable annotations: no nested dataclass arguments
        return {}
    out = {}
    for name, hint in hints.items():
        cands = [hint, *typing.get_args(hint)]
        for c in cands:
            if isinstance(c, type) and dataclasses.is_dataclass(c):
                out[name] = c
                break
    return out


def _check_dataclass_values(mcls: type, kwargs: Mapping[str, Any], where: str) -> None:
    for key, dc in dataclass_params(mcls).items():
        value = kwargs.get(key)
        if isinstance(value, Mapping):
            check_keys(value, [f.name for f in dataclasses.fields(dc)], f'{where}.{key} ({dc.__name__})')


def _build_dataclass_values(mcls: type, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    for key, dc in dataclass_params(mcls).items():
        if isinstance(out.get(key), Mapping):
            try:
                out[key] = dc(**out[key])
            except (TypeError, ValueError) as e:
                raise ConfigError(f'model argument {key!r} ({dc.__name__}): {e}') from None
    return out


def allowed_keys(fn: Callable, exclude: Sequence[str] = ()) -> list[str]:
    r"""Keyword names accepted by ``fn`` (a class: its constructor), minus ``exclude``."""
    return [p.name for p in _params(fn) if p.name not in exclude]


def check_keys(given: Iterable[str], allowed: Sequence[str], where: str) -> None:
    r"""Raise :class:`ConfigError` for the first key of ``given`` not in ``allowed``,
    naming it, suggesting the closest allowed key and listing all allowed ones."""
    for key in given:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f' (did you mean {close[0]!r}?)' if close else ''
            raise ConfigError(f'{where}: unknown key {key!r}{hint}; allowed keys: '
                              f'{", ".join(allowed) if allowed else "(none)"}')


def _check_required(fn: Callable, given: Iterable[str], where: str, exclude: Sequence[str] = ()) -> None:
    given = set(given)
    for p in _params(fn):
        if p.default is inspect.Parameter.empty and p.name not in given and p.name not in exclude:
            raise ConfigError(f'{where}: missing required key {p.name!r}')


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f'{where}: expected a mapping, got {type(value).__name__} {value!r}')
    return dict(value)


def _lookup(registry: Any, name: Any, where: str) -> type:
    if not isinstance(name, str):
        raise ConfigError(f"{where}: 'name' must be one of {registry.names()}, got {name!r}")
    try:
        return registry.get(name)
    except KeyError as e:
        raise ConfigError(f'{where}: {e.args[0]}') from None
    except ImportError as e:
        raise ConfigError(f'{where}: {e}') from None


def _fit_allowed() -> list[str]:
    from cdrgraph.train.fit import fit
    return allowed_keys(fit, FIT_RESERVED)


def _evaluator_cls() -> type:
    from cdrgraph.metrics.evaluator import Evaluator
    return Evaluator


def _candidates_cls() -> type:
    from cdrgraph.transforms.eval_candidates import EvalCandidates
    return EvalCandidates


def validate_config(cfg: Mapping[str, Any], require_models: bool = True) -> dict[str, Any]:
    r"""Check every key of an experiment config against the allowed top-level
    keys and the constructor signatures of the named classes (``fit()``'s for
    ``train``), and normalise it: ``split`` becomes a list, every model entry
    gets ``class``, ``model``, ``train`` and ``select_domains``, ``seeds`` a
    list of ints. Raises :class:`ConfigError` naming the key.
    """
    cfg = copy.deepcopy(dict(cfg))
    check_keys(cfg, TOP_LEVEL, 'config')
    # data
    data = _mapping(cfg.get('data'), 'data')
    if 'name' not in data:
        raise ConfigError(f"data: missing key 'name' (one of {DATASETS.names()})")
    cls = _lookup(DATASETS, data['name'], 'data')
    keys = [k for k in data if k != 'name']
    check_keys(keys, allowed_keys(cls), f"data ({data['name']})")
    _check_required(cls, keys, f"data ({data['name']})")
    cfg['data'] = data
    # split
    split = cfg.get('split') or []
    if isinstance(split, Mapping):
        split = [split]
    if not isinstance(split, list) or not split:
        raise ConfigError('split: expected a list of {name: <transform>, ...} entries, '
                          'e.g. [{name: GivenSplit}]')
    norm = []
    for i, step in enumerate(split):
        step = _mapping(step, f'split[{i}]')
        if 'name' not in step:
            raise ConfigError(f"split[{i}]: missing key 'name' (one of {SPLITS.names()})")
        tcls = _lookup(SPLITS, step['name'], f'split[{i}]')
        keys = [k for k in step if k != 'name']
        check_keys(keys, allowed_keys(tcls), f"split[{i}] ({step['name']})")
        _check_required(tcls, keys, f"split[{i}] ({step['name']})")
        norm.append(step)
    cfg['split'] = norm
    # evaluation
    ev = _mapping(cfg.get('evaluation'), 'evaluation')
    check_keys(ev, allowed_keys(_evaluator_cls()) + list(EVAL_EXTRA), 'evaluation')
    if ev.get('report') is not None:
        report = _mapping(ev['report'], 'evaluation.report')
        check_keys(report, ('sampled', 'full', 'ctr', 'rating'), 'evaluation.report')
        for proto, metrics in report.items():
            if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
                raise ConfigError(f'evaluation.report.{proto}: expected a list of metric names such as '
                                  f'[precision@10, recall@10, ndcg@10], got {metrics!r}')
        ev['report'] = report
    cfg['evaluation'] = ev
    protocol = ev.get('protocol', 'sampled')
    # candidates
    if cfg.get('candidates') is not None:
        cand = _mapping(cfg['candidates'], 'candidates')
        check_keys(cand, allowed_keys(_candidates_cls()) + list(CANDIDATE_EXTRA), 'candidates')
        cfg['candidates'] = cand
    elif protocol == 'sampled':
        raise ConfigError("candidates: the 'sampled' protocol needs a candidates section, e.g. "
                          '{num_negatives: 999, seed: 0}')
    if ev.get('also_full') and protocol != 'sampled':
        raise ConfigError(f"evaluation.also_full: only meaningful with protocol 'sampled', not {protocol!r}")
    # train defaults
    fit_keys = _fit_allowed()
    train = _mapping(cfg.get('train'), 'train')
    check_keys(train, fit_keys, 'train')
    cfg['train'] = train
    # models
    models = _mapping(cfg.get('models'), 'models')
    if not models and require_models:
        raise ConfigError(f'models: name at least one model (known: {MODELS.names()})')
    norm_models: dict[str, dict[str, Any]] = {}
    for entry, spec in models.items():
        where = f'models.{entry}'
        spec = _mapping(spec, where)
        check_keys(spec, MODEL_ENTRY, where)
        name = spec.get('class', entry)
        mcls = _lookup(MODELS, name, where)
        mkw = _mapping(spec.get('model'), f'{where}.model')
        check_keys(mkw, allowed_keys(mcls, FROM_DATA), f'{where}.model ({name})')
        _check_dataclass_values(mcls, mkw, f'{where}.model')
        _check_required(mcls, mkw, f'{where}.model ({name})', FROM_DATA)
        tkw = _mapping(spec.get('train'), f'{where}.train')
        check_keys(tkw, fit_keys, f'{where}.train')
        sel = spec.get('select_domains')
        if sel is not None and sel not in SELECT_DOMAINS:
            raise ConfigError(f'{where}.select_domains: unknown value {sel!r}; '
                              f'allowed: {", ".join(SELECT_DOMAINS)}')
        per_dom = _mapping(spec.get('domains'), f'{where}.domains')
        if per_dom and sel != 'per_domain':
            raise ConfigError(f'{where}.domains: per-domain overrides need select_domains: per_domain '
                              '(one single-domain model per domain)')
        norm_dom: dict[str, dict[str, Any]] = {}
        for dname, ov in per_dom.items():
            dwhere = f'{where}.domains.{dname}'
            ov = _mapping(ov, dwhere)
            check_keys(ov, ('model', 'train'), dwhere)
            dm = _mapping(ov.get('model'), f'{dwhere}.model')
            check_keys(dm, allowed_keys(mcls, FROM_DATA), f'{dwhere}.model ({name})')
            _check_dataclass_values(mcls, dm, f'{dwhere}.model')
            dt = _mapping(ov.get('train'), f'{dwhere}.train')
            check_keys(dt, fit_keys, f'{dwhere}.train')
            norm_dom[str(dname)] = {'model': dm, 'train': dt}
        norm_models[str(entry)] = {'class': name, 'model': mkw, 'train': tkw, 'select_domains': sel,
                                   'domains': norm_dom}
    cfg['models'] = norm_models
    # baseline
    base = _mapping(cfg.get('baseline'), 'baseline')
    for m, b in base.items():
        for n in (m, b):
            if n not in norm_models and n != 'Popularity':
                raise ConfigError(f'baseline: {n!r} is not a model of this config; '
                                  f'models: {", ".join(norm_models)}')
    cfg['baseline'] = base
    # seeds
    seeds = cfg.get('seeds', [0])
    if isinstance(seeds, int):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ConfigError(f'seeds: expected a non-empty list of non-negative ints, got {seeds!r}')
    cfg['seeds'] = seeds
    for key in ('name', 'cache_dir', 'device'):
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            raise ConfigError(f'{key}: expected a string, got {cfg[key]!r}')
    return cfg


# ---------------------------------------------------------------- building
def _path(value: Any) -> Any:
    return osp.abspath(osp.expanduser(value)) if isinstance(value, str) else value


def build_dataset(data_cfg: Mapping[str, Any]) -> Any:
    r"""Instantiate the dataset of ``data_cfg`` (``root``/``raw_dir`` with ``~``
    expanded; relative paths are relative to the working directory) and return
    its graph (:class:`~torch_geometric.data.HeteroData`)."""
    kwargs = {k: (_path(v) if k in PATH_KEYS else v) for k, v in data_cfg.items() if k != 'name'}
    cls = DATASETS.get(data_cfg['name'])
    dataset = cls(**kwargs)
    return dataset[0]


def build_splits(split_cfg: Sequence[Mapping[str, Any]]) -> list[Any]:
    r"""The split transforms of ``split_cfg``, in order."""
    return [SPLITS.get(step['name'])(**{k: v for k, v in step.items() if k != 'name'}) for step in split_cfg]


def build_candidates(cand_cfg: Mapping[str, Any]) -> Any:
    r"""``EvalCandidates`` from the ``candidates`` section (without ``shipped``)."""
    return _candidates_cls()(**{k: v for k, v in cand_cfg.items() if k not in CANDIDATE_EXTRA})


def build_evaluator(eval_cfg: Mapping[str, Any], protocol: str | None = None) -> Any:
    r"""``Evaluator`` from the ``evaluation`` section; ``protocol`` overrides its protocol."""
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in eval_cfg.items() if k not in EVAL_EXTRA}
    if protocol is not None:
        kwargs['protocol'] = protocol
    return _evaluator_cls()(**kwargs)


def build_model(entry: Mapping[str, Any], data: Any) -> Any:
    r"""Model of a normalised ``models`` entry, sized by ``data`` via ``from_data``;
    a mapping given for a dataclass-typed constructor argument (e.g.
    ``compat: {pad_logit_zero: true}``) becomes that dataclass."""
    cls = MODELS.get(entry['class'])
    return cls.from_data(data, **_build_dataclass_values(cls, entry['model']))


def model_entries(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    r"""The config's models, with ``Popularity`` first for ranking protocols."""
    models = dict(cfg['models'])
    protocol = cfg['evaluation'].get('protocol', 'sampled')
    if protocol in ('sampled', 'full') and not any(m['class'] == 'Popularity' for m in models.values()):
        models = {'Popularity': {'class': 'Popularity', 'model': {}, 'train': {}, 'select_domains': None,
                                 'domains': {}},
                  **models}
    return models


def default_monitor(protocol: str, ks: Sequence[int] | None = None) -> tuple[str, str]:
    r"""Default early-stopping metric and mode of a protocol (MODELS.md §1.7):
    ``ndcg@10/mean`` for ranking (the largest cut-off of ``ks`` when 10 is
    not among them), ``auc/mean`` for CTR, ``rmse/mean`` (minimised) for rating."""
    if protocol in ('sampled', 'full'):
        ks = list(ks) if ks else [10]
        k = 10 if 10 in ks else max(int(v) for v in ks)
        return f'ndcg@{k}/mean', 'max'
    return {'ctr': ('auc/mean', 'max'), 'rating': ('rmse/mean', 'min')}[protocol]


def train_kwargs(cfg: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    r"""``fit()`` keyword arguments of a model entry: protocol defaults for the
    monitor, then the config's ``train`` section, then the entry's ``train``."""
    ev = cfg['evaluation']
    monitor, mode = default_monitor(ev.get('protocol', 'sampled'), ev.get('ks'))
    out: dict[str, Any] = {'monitor': monitor, 'monitor_mode': mode}
    out.update(cfg.get('train') or {})
    out.update(entry.get('train') or {})
    return out


def cache_root(cfg: Mapping[str, Any]) -> str:
    r"""Folder of persisted splits: ``cache_dir`` or ``~/.cache/cdrgraph/splits``."""
    return _path(cfg.get('cache_dir') or os.environ.get('CDRGRAPH_CACHE', '~/.cache/cdrgraph/splits'))
