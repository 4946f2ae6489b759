r"""Over-smoothing depth studies: train a propagating model at several depths
and layer-combination modes, record per-domain ranking metrics and the
smoothness (Dirichlet energy, MAD, cross-domain MAD) of every layer's output.

``depth_study(cfg, ...)`` is driven by an experiment config, so it reuses the
config helpers of :mod:`cdrgraph.cli` (imported lazily inside the function;
the rest of this module — :func:`combine_layers`, :func:`layer_smoothness`
and the plots — knows nothing about configs).
"""
from __future__ import annotations

import copy
import itertools
import os
import os.path as osp
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import INTERACTS, ITEM, USER, domain_names
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.metrics.smoothness import cross_domain_mad, dirichlet_energy, mad, within_domain_mad
from cdrgraph.models.base import CDRModel, ZDict

__all__ = ['DepthStudy', 'depth_study', 'combine_layers', 'use_combine_mode', 'layer_smoothness',
           'plot_metric_vs_depth', 'plot_smoothness_vs_layer', 'COMBINE_MODES', 'METRIC_COLUMNS',
           'SMOOTHNESS_COLUMNS']

#: ``'mean'``: average of the ``L + 1`` layer outputs (LightGCN); ``'last'``:
#: the last layer's output only (a plain GCN readout); ``'native'``: the
#: model's own :meth:`~cdrgraph.models.base.CDRModel.encode` unchanged
COMBINE_MODES = ('mean', 'last', 'learned', 'native')
#: the combination mode with trainable layer weights: the model is built with ``combine='learned'``
LEARNED = 'learned'
METRIC_COLUMNS = ['model', 'combine', 'num_layers', 'seed', 'protocol', 'metric', 'domain', 'value']
SMOOTHNESS_COLUMNS = ['model', 'combine', 'num_layers', 'seed', 'layer', 'metric', 'domain', 'value']


@dataclass
class DepthStudy:
    r"""What :func:`depth_study` returns (and writes into its ``out`` folder).

    Args:
        metrics (pandas.DataFrame): test metrics, columns
            :data:`METRIC_COLUMNS` (``depth_metrics.csv``).
        smoothness (pandas.DataFrame): smoothness of every layer's output of
            every trained model, columns :data:`SMOOTHNESS_COLUMNS`
            (``depth_smoothness.csv``); see :func:`layer_smoothness`.
        figures (list[str]): paths of the written PNG files.
        skipped (dict[str, str]): combination modes that were skipped, with
            the reason.

    Example:
        >>> study = depth_study(cfg, layers=[0, 1, 2], seeds=[0], out='runs/depth')
        >>> study.metrics.query("metric == 'ndcg@10' and domain == 'mean'")
    """

    metrics: pd.DataFrame
    smoothness: pd.DataFrame
    figures: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(metric_rows={len(self.metrics)}, '
                f'smoothness_rows={len(self.smoothness)}, figures={self.figures}, skipped={self.skipped})')


# ---------------------------------------------------------------- layer combination
def combine_layers(layers: Sequence[ZDict], mode: str) -> ZDict:
    r"""Combine the ``L + 1`` z_dicts of
    :meth:`~cdrgraph.models.base.CDRModel.encode_layers` into one.

    ``'mean'`` averages every tensor entry over the layers (LightGCN's
    readout; for an entry that does not change with depth, such as an item
    bias or a domain-specific table concatenated to a graph part, the mean is
    that entry, so the combination stays linear in the graph part);
    ``'last'`` returns the last layer's z_dict.

    Args:
        layers (list[dict]): one z_dict per depth, identical keys and shapes.
        mode (str): ``'mean'`` or ``'last'``.

    Example:
        >>> z = combine_layers(model.encode_layers(CDRBatch.full(train)), 'last')
    """
    if not layers:
        raise ValueError('combine_layers: no layers')
    if mode == 'last':
        return dict(layers[-1])
    if mode != 'mean':
        raise ValueError(f"combine_layers: mode must be 'mean' or 'last', got {mode!r}")
    out: ZDict = {}
    for key in layers[0]:
        values = [z[key] for z in layers]
        if any(v.shape != values[0].shape for v in values):
            raise ValueError(f'combine_layers: {key!r} changes shape across layers '
                             f'{[tuple(v.shape) for v in values]}; the mean is undefined')
        out[key] = torch.stack(values).mean(0)
    return out


def use_combine_mode(model: CDRModel, mode: str) -> CDRModel:
    r"""Make ``model.encode`` (used by its loss, by :func:`~cdrgraph.train.evaluate`
    and by ``recommend``) combine ``model.encode_layers`` with ``mode``; in
    place, returns the model. ``'native'`` leaves the model unchanged.

    The replacement is an instance attribute shadowing the class method, so
    parameters, state dicts and checkpoints are unaffected. It is meaningful
    for models whose ``encode_layers`` returns ``num_layers + 1`` z_dicts of
    equal shapes whose combination the model scores (LightGCN, BiTGCF,
    HeroGRAPH): for LightGCN ``'mean'`` is exactly its own ``encode``, for
    BiTGCF ``'mean'`` replaces its default ``connect='concat'`` readout and
    for HeroGRAPH with ``aggr='attention'`` ``'last'`` is its own readout.

    Raises:
        ValueError: when the model has no ``num_layers`` or its
            ``encode_layers`` does not return ``num_layers + 1`` z_dicts, or
            the z_dicts cannot be combined (a skipped mode in :func:`depth_study`).
    """
    if mode not in COMBINE_MODES:
        raise ValueError(f'combine mode must be one of {COMBINE_MODES}, got {mode!r}')
    if mode == 'native':
        model.__dict__.pop('encode', None)
        return model
    name = model.__class__.__name__
    if getattr(model, 'combine', None) == mode:
        model.__dict__.pop('encode', None)   # undo an earlier patch: the model's own encode is this mode
        return model
    if mode == LEARNED:
        if int(getattr(model, 'num_layers', 0)) > 0:
            raise ValueError(f"{name} was not built with combine='learned' (trainable layer weights)")
        return model
    if 'encode_layers' not in {k for c in type(model).__mro__ if c is not CDRModel for k in vars(c)}:
        raise ValueError(f'{name} does not override encode_layers: it has no per-layer outputs to combine')

    def encode(batch: CDRBatch) -> ZDict:
        layers = model.encode_layers(batch)
        if len(layers) != int(model.num_layers) + 1:
            raise ValueError(f'{name}.encode_layers returned {len(layers)} z_dicts for num_layers='
                             f'{model.num_layers}; combine mode {mode!r} needs num_layers + 1')
        return combine_layers(layers, mode)

    model.encode = encode  # type: ignore[method-assign]
    return model


# ---------------------------------------------------------------- smoothness of every layer
def _user_rows(xu: Tensor, k: int) -> Tensor:
    return xu[:, k] if xu.dim() == 3 else xu


def _row(layer: int, metric: str, domain: str, value: Tensor | float) -> dict[str, Any]:
    return {'layer': layer, 'metric': metric, 'domain': domain, 'value': float(value)}


@torch.no_grad()
def layer_smoothness(model: CDRModel, data: HeteroData, device: str | torch.device = 'cpu') -> pd.DataFrame:
    r"""Smoothness of every layer's output of ``model.encode_layers`` on the
    full graph ``data`` (usually the training split), per domain.

    For layer ``l`` (``0`` = ego embeddings) and domain ``k`` with edges
    :math:`\mathcal{E}_k` (interactions with items of ``k``), users
    :math:`\mathcal{U}_k` active in ``k`` and items :math:`\mathcal{I}_k`
    (per-domain user representations ``[U, K, D]`` use row ``k``):

    * ``dirichlet``: :func:`~cdrgraph.metrics.smoothness.dirichlet_energy`
      on :math:`\mathcal{E}_k` (degrees inside the domain); domain ``'all'``:
      on all edges for shared user vectors, the sum over domains for
      per-domain ones.
    * ``dirichlet_ratio``: ``dirichlet`` divided by the squared Frobenius
      norm of the rows of :math:`\mathcal{U}_k \cup \mathcal{I}_k` (a
      Rayleigh quotient: scale-free, so shrinking norms do not fake
      smoothing).
    * ``mad_user`` / ``mad_item``: global MAD over the pairs of
      :math:`\mathcal{U}_k` / of :math:`\mathcal{I}_k`
      (:func:`~cdrgraph.metrics.smoothness.within_domain_mad`).
    * ``mad_neighbor``: MAD over the user–item pairs of :math:`\mathcal{E}_k`
      (both directions).
    * ``cross_mad_item`` / ``cross_mad_user`` (domain ``'a|b'``):
      :func:`~cdrgraph.metrics.smoothness.cross_domain_mad` with
      ``paired=False`` between :math:`\mathcal{I}_a` and :math:`\mathcal{I}_b`
      / :math:`\mathcal{U}_a` and :math:`\mathcal{U}_b`.
    * ``cross_mad_user_paired`` (only for per-domain user representations):
      ``paired=True`` between row ``a`` and row ``b`` of the users active in
      both domains.

    Returns:
        A :class:`pandas.DataFrame` with columns ``layer, metric, domain, value``.

    Example:
        >>> layer_smoothness(model, train).query("metric == 'mad_item'")
    """
    was_training = model.training
    model.eval()
    try:
        graph = copy.copy(data).to(device)   # a shallow copy: ``to`` must not move the caller's graph
        layers = model.encode_layers(CDRBatch.full(graph).to(device))
    finally:
        model.train(was_training)
    names = domain_names(data)
    K = len(names)
    ei = graph[INTERACTS].edge_index
    item_dom = graph[ITEM].domain
    num_users = int(graph[USER].num_nodes)
    edge_dom = item_dom[ei[1]]
    active = torch.zeros(num_users, K, dtype=torch.bool, device=ei.device)
    active[ei[0], edge_dom] = True
    rows: list[dict[str, Any]] = []
    for layer, z in enumerate(layers):
        xu, xi = z[USER].float(), z[ITEM].float()
        total = xu.new_zeros(())
        for k, name in enumerate(names):
            e_k = ei[:, edge_dom == k]
            xu_k = _user_rows(xu, k)
            energy = dirichlet_energy(xu_k, xi, e_k)
            total = total + energy
            users, items = active[:, k], item_dom == k
            norm = xu_k[users].pow(2).sum() + xi[items].pow(2).sum()
            rows.append(_row(layer, 'dirichlet', name, energy))
            rows.append(_row(layer, 'dirichlet_ratio', name, energy / norm if norm > 0 else float('nan')))
            rows.append(_row(layer, 'mad_user', name, mad(xu_k[users])))
            both = torch.cat([xu_k, xi])
            pairs = torch.stack([e_k[0], e_k[1] + num_users])
            rows.append(_row(layer, 'mad_neighbor', name,
                             mad(both, edge_index=torch.cat([pairs, pairs.flip(0)], 1))))
        mad_item = within_domain_mad(xi, item_dom, num_domains=K)
        rows.extend(_row(layer, 'mad_item', name, mad_item[k]) for k, name in enumerate(names))
        rows.append(_row(layer, 'dirichlet', 'all', total if xu.dim() == 3 else dirichlet_energy(xu, xi, ei)))
        for a, b in itertools.combinations(range(K), 2):
            pair = f'{names[a]}|{names[b]}'
            rows.append(_row(layer, 'cross_mad_item', pair,
                             cross_domain_mad(xi[item_dom == a], xi[item_dom == b], paired=False)))
            rows.append(_row(layer, 'cross_mad_user', pair,
                             cross_domain_mad(_user_rows(xu, a)[active[:, a]], _user_rows(xu, b)[active[:, b]],
                                              paired=False)))
            if xu.dim() == 3:
                both_users = active[:, a] & active[:, b]
                rows.append(_row(layer, 'cross_mad_user_paired', pair,
                                 cross_domain_mad(xu[both_users, a], xu[both_users, b])))
    return pd.DataFrame(rows, columns=['layer', 'metric', 'domain', 'value'])


# ---------------------------------------------------------------- plots
def _figure(nrows: int, ncols: int, width: float = 4.5, height: float = 3.4) -> tuple[Any, Any]:
    from matplotlib.figure import Figure  # no pyplot: renders with Agg, never opens a window
    fig = Figure(figsize=(width * ncols, height * nrows), layout='constrained')
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def plot_metric_vs_depth(metrics: pd.DataFrame, path: str, metric: str = 'ndcg@10',
                         protocol: str | None = None, title: str | None = None) -> str:
    r"""PNG of ``metric`` against the number of layers: one panel per
    combination mode, one line per domain (``mean`` dashed), mean ± std over
    seeds as error bars. Returns ``path``.

    Args:
        metrics (pandas.DataFrame): :attr:`DepthStudy.metrics`.
        path (str): the PNG file.
        metric (str, optional): e.g. ``'hr@10'``. (default: :obj:`'ndcg@10'`)
        protocol (str, optional): which protocol's rows; the first present
            by default.
        title (str, optional): figure title.
    """
    df = metrics[metrics['metric'] == metric]
    if protocol is None and len(df):
        protocol = str(df['protocol'].iloc[0])
    df = df[df['protocol'] == protocol]
    if df.empty:
        raise ValueError(f'plot_metric_vs_depth: no rows for metric {metric!r} (protocol {protocol!r}); '
                         f'metrics present: {sorted(metrics["metric"].unique())}')
    modes = list(dict.fromkeys(df['combine']))
    fig, axes = _figure(1, len(modes))
    for ax, mode in zip(axes[0], modes, strict=True):
        sub = df[df['combine'] == mode]
        for dom, g in sub.groupby('domain', sort=False):
            stat = g.groupby('num_layers')['value'].agg(['mean', 'std']).fillna(0.0).sort_index()
            style = {'linestyle': '--', 'color': 'black'} if dom == 'mean' else {}
            ax.errorbar(stat.index, stat['mean'], yerr=stat['std'], marker='o', capsize=3, label=str(dom),
                        **style)
        ax.set_xlabel('number of layers L')
        ax.set_ylabel(f'{metric} ({protocol})')
        ax.set_title(f'combine = {mode}')
        ax.set_xticks(sorted(sub['num_layers'].unique()))
        ax.grid(alpha=0.3)
        ax.legend(title='domain')
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return path


#: (metric, y label, log scale) of the panels of :func:`plot_smoothness_vs_layer`
SMOOTHNESS_PANELS = (('dirichlet_ratio', 'Dirichlet energy / ||X||²', True),
                     ('mad_item', 'MAD (items of the domain)', False),
                     ('cross_mad_item', 'cross-domain MAD (items)', False))


def plot_smoothness_vs_layer(smoothness: pd.DataFrame, path: str, num_layers: int | None = None,
                             title: str | None = None) -> str:
    r"""PNG of Dirichlet energy (Rayleigh quotient, log scale), within-domain
    MAD and cross-domain MAD against the layer index ``0 … L`` of the model
    trained with ``num_layers = L`` (the deepest by default): one row of
    panels per combination mode, one line per domain (pair), mean over seeds.
    Returns ``path``."""
    if smoothness.empty:
        raise ValueError('plot_smoothness_vs_layer: no smoothness rows')
    depth = int(smoothness['num_layers'].max()) if num_layers is None else int(num_layers)
    df = smoothness[smoothness['num_layers'] == depth]
    if df.empty:
        raise ValueError(f'plot_smoothness_vs_layer: no rows for num_layers={depth}')
    modes = list(dict.fromkeys(df['combine']))
    fig, axes = _figure(len(modes), len(SMOOTHNESS_PANELS))
    for r, mode in enumerate(modes):
        for c, (metric, label, log) in enumerate(SMOOTHNESS_PANELS):
            ax = axes[r][c]
            sub = df[(df['combine'] == mode) & (df['metric'] == metric)]
            for dom, g in sub.groupby('domain', sort=False):
                stat = g.groupby('layer')['value'].mean().sort_index()
                ax.plot(stat.index, stat.values, marker='o', label=str(dom))
            if log and len(sub) and bool((sub['value'] > 0).all()):
                ax.set_yscale('log')
            ax.set_xlabel('layer l')
            ax.set_ylabel(label)
            ax.set_title(f'L = {depth}, combine = {mode}')
            ax.set_xticks(range(depth + 1))
            ax.grid(alpha=0.3)
            if len(sub):
                ax.legend(title='domain')
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return path


# ---------------------------------------------------------------- the study
def _pick_entry(cfg: Mapping[str, Any], name: str | None) -> tuple[str, dict[str, Any]]:
    from cdrgraph.cli.config import ConfigError, allowed_keys
    from cdrgraph.cli.registry import MODELS

    def propagating(entry: Mapping[str, Any]) -> bool:
        return 'num_layers' in allowed_keys(MODELS.get(entry['class']))

    models = cfg['models']
    if name is not None:
        if name not in models:
            raise ConfigError(f'depth: no model entry {name!r}; entries: {", ".join(models)}')
        if not propagating(models[name]):
            raise ConfigError(f"depth: {name} ({models[name]['class']}) has no num_layers; pick a propagating "
                              'model (LightGCN, BiTGCF, HeroGRAPH)')
        cands = [name]
    else:
        cands = [n for n, e in models.items() if propagating(e) and e.get('select_domains') != 'per_domain']
        if len(cands) != 1:
            raise ConfigError('depth: the config must hold exactly one propagating model entry (a class with '
                              f'num_layers, without select_domains) or name one with --model; found {cands}')
    entry = copy.deepcopy(dict(models[cands[0]]))
    if entry.get('select_domains') == 'per_domain':
        raise ConfigError(f'depth: entry {cands[0]} uses select_domains: per_domain, which depth studies do not '
                          'support; use a joint entry (or a config whose data holds one domain)')
    return cands[0], entry


def depth_study(cfg: Mapping[str, Any], layers: Sequence[int], seeds: Sequence[int] | None = None,
                out: str = 'runs/depth', combine_modes: Sequence[str] = ('mean', 'last', 'learned'),
                model: str | None = None, metric: str | None = None, device: str | None = None,
                progress: bool = False) -> DepthStudy:
    r"""Over-smoothing depth study of a config's propagating model.

    For every seed, depth ``L`` in ``layers`` and mode in ``combine_modes``
    (:func:`use_combine_mode`): build the config's model entry with
    ``num_layers = L``, :func:`~cdrgraph.train.fit` it on the config's train
    split (early stopping on val as configured), evaluate it on test
    (the configured protocol, plus full ranking with ``also_full``) and
    measure :func:`layer_smoothness` of its ``L + 1`` layer outputs on the
    training graph. At ``L = 0`` all modes are the same model, trained once.
    A mode the model cannot use (:func:`use_combine_mode` raises) is skipped
    with a warning and listed in :attr:`DepthStudy.skipped`.

    Writes into ``out``: ``depth_metrics.csv``, ``depth_smoothness.csv``,
    ``metric_vs_depth.png`` (``metric`` per domain against ``L``),
    ``smoothness_vs_layer.png`` (energy and MAD against the layer index of
    the deepest model) and the resolved ``config.yaml``.

    Args:
        cfg (dict): an experiment config (see ``configs/README.md``).
        layers (list[int]): depths, e.g. ``[0, 1, 2, 4]``.
        seeds (list[int], optional): defaults to the config's seeds.
        out (str, optional): output folder. (default: :obj:`'runs/depth'`)
        combine_modes (list[str], optional): of :data:`COMBINE_MODES`;
            ``'learned'`` builds the model with ``combine='learned'`` and is
            skipped for a model whose constructor has no such option.
            (default: :obj:`('mean', 'last', 'learned')`)
        model (str, optional): the model entry; by default the config's only
            propagating entry without ``select_domains``.
        metric (str, optional): metric of the depth figure; by default the
            early-stopping metric of the protocol (``ndcg@10``, or ``ndcg@k``
            of the largest ``k`` when 10 is not among ``ks``).
        device (str, optional): defaults to the config's or ``'cpu'``.
        progress (bool, optional): progress bars. (default: :obj:`False`)

    Example:
        >>> cfg = load_config('configs/depth_fake.yaml')
        >>> study = depth_study(cfg, layers=[0, 1, 2, 4], seeds=[0, 1], out='runs/depth_fake')
    """
    import yaml

    from cdrgraph.cli.config import (
        ConfigError,
        allowed_keys,
        build_evaluator,
        build_model,
        default_monitor,
        train_kwargs,
        validate_config,
    )
    from cdrgraph.cli.experiment import prepare_splits
    from cdrgraph.cli.registry import MODELS
    from cdrgraph.train.evaluate import evaluate
    from cdrgraph.train.fit import fit
    from cdrgraph.train.seed import seed_everything

    cfg = validate_config(cfg)
    depths = sorted({int(v) for v in layers})
    if not depths or depths[0] < 0:
        raise ConfigError(f'depth: layers must be non-negative ints, got {list(layers)}')
    modes = list(dict.fromkeys(combine_modes))
    for mode in modes:
        if mode not in COMBINE_MODES:
            raise ConfigError(f'depth: combine mode {mode!r} is not one of {COMBINE_MODES}')
    seeds = list(seeds) if seeds is not None else list(cfg['seeds'])
    device = device or cfg.get('device') or 'cpu'
    name, entry = _pick_entry(cfg, model)
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, 'config.yaml'), 'w') as f:
        yaml.safe_dump({**cfg, 'depth': {'model': name, 'layers': depths, 'seeds': seeds,
                                         'combine_modes': modes}}, f, sort_keys=False)
    train, val, test = prepare_splits(cfg)
    ev_cfg = cfg['evaluation']
    protocol = ev_cfg.get('protocol', 'sampled')
    evaluator = build_evaluator(ev_cfg)
    full = build_evaluator(ev_cfg, protocol='full') if protocol == 'sampled' and ev_cfg.get('also_full') else None
    exclude = getattr(val[INTERACTS], 'edge_label_index', None)
    fit_kwargs = {**train_kwargs(cfg, entry), 'progress': progress}
    if metric is None:
        metric = default_monitor(protocol, ev_cfg.get('ks'))[0].rpartition('/')[0]

    metric_rows: list[dict[str, Any]] = []
    smooth_rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for seed, depth in itertools.product(seeds, depths):
        active = [m for m in modes if m not in skipped]
        runs = active[:1] if depth == 0 else active   # L = 0: one layer, every mode is the same model
        for mode in runs:
            sub_entry = copy.deepcopy(entry)
            sub_entry['model']['num_layers'] = depth
            if mode != 'native' and depth > 0 and 'combine' in allowed_keys(MODELS.get(sub_entry['class'])):
                # the model combines its layers itself, in training and evaluation alike
                sub_entry['model']['combine'] = mode
            seed_everything(seed)
            try:
                net = build_model(sub_entry, train)
                use_combine_mode(net, mode)
                if depth > 0:
                    net.encode(CDRBatch.full(train))   # fail early when the layers cannot be combined
            except (ValueError, ConfigError) as e:
                skipped[mode] = str(e)
                warnings.warn(f'depth: skipping combine mode {mode!r}: {e}', stacklevel=2)
                continue
            fit(net, train, val, evaluator=evaluator, seed=seed, device=device, **fit_kwargs)
            results = {protocol: evaluate(net, train, test, evaluator, exclude=exclude, device=device)}
            if full is not None:
                results['full'] = evaluate(net, train, test, full, exclude=exclude, device=device)
            smooth = layer_smoothness(net.cpu(), train)
            for label in (active if depth == 0 else [mode]):
                base = {'model': name, 'combine': label, 'num_layers': depth, 'seed': seed}
                for proto, res in results.items():
                    for key, value in res.items():
                        met, _, dom = key.rpartition('/')
                        if isinstance(value, (int, float)) or (isinstance(value, Tensor) and value.numel() == 1):
                            metric_rows.append({**base, 'protocol': proto, 'metric': met or key, 'domain': dom,
                                                'value': float(value)})
                smooth_rows.extend({**base, **r} for r in smooth.to_dict('records'))
            pd.DataFrame(metric_rows, columns=METRIC_COLUMNS).to_csv(osp.join(out, 'depth_metrics.csv'),
                                                                     index=False)
    metrics = pd.DataFrame(metric_rows, columns=METRIC_COLUMNS)
    smoothness = pd.DataFrame(smooth_rows, columns=SMOOTHNESS_COLUMNS)
    if skipped:   # a mode found unusable at L > 0 may have received L = 0 rows first
        metrics = metrics[~metrics['combine'].isin(list(skipped))].reset_index(drop=True)
        smoothness = smoothness[~smoothness['combine'].isin(list(skipped))].reset_index(drop=True)
    metrics.to_csv(osp.join(out, 'depth_metrics.csv'), index=False)
    smoothness.to_csv(osp.join(out, 'depth_smoothness.csv'), index=False)
    figures = []
    if len(metrics):
        title = f"{name} on {cfg['data']['name']}"
        figures.append(plot_metric_vs_depth(metrics, osp.join(out, 'metric_vs_depth.png'), metric=metric,
                                            protocol=protocol, title=title))
        figures.append(plot_smoothness_vs_layer(smoothness, osp.join(out, 'smoothness_vs_layer.png'),
                                                title=title))
    return DepthStudy(metrics=metrics, smoothness=smoothness, figures=figures, skipped=skipped)
