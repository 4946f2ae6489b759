r"""Experiment configs on :class:`~cdrgraph.datasets.FakeCDRDataset` for CLI tests."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml

__all__ = ['write_fake_config']


def write_fake_config(path: str | os.PathLike, models: Mapping[str, Mapping[str, Any]], *, name: str = 'fake',
                      num_users: int = 120, num_items: int = 60, num_candidates: int = 20,
                      ks: tuple[int, ...] = (5, 10), train: Mapping[str, Any] | None = None,
                      cache_dir: str | os.PathLike | None = None) -> str:
    r"""Write a two-domain ``cdrgraph train`` config (leave-one-out by time,
    ``1 + num_candidates`` sampled ranking plus full ranking) with the model
    entries ``models`` (``{entry: {'model': {...}}}``) to ``path``; returns the path.

    Example:
        >>> write_fake_config(tmp_path / 'c.yaml', {'LightGCN': {'model': {'num_layers': 2}}})
    """
    cfg = {
        'name': name,
        'data': {'name': 'FakeCDRDataset', 'num_domains': 2, 'num_users': num_users, 'num_items': num_items,
                 'avg_degree': 8, 'seed': 0},
        'split': [{'name': 'LeaveOneOut', 'order': 'time', 'validation': True, 'seed': 0}],
        'candidates': {'num_negatives': num_candidates, 'seed': 0, 'dataset_id': name},
        'evaluation': {'protocol': 'sampled', 'ks': list(ks), 'also_full': True},
        'train': {'epochs': 2, 'lr': 0.05, 'batch_size': 100, 'num_negatives': 2, 'patience': 5, **(train or {})},
        'models': {k: dict(v) for k, v in models.items()},
        'seeds': [0],
        'cache_dir': str(cache_dir if cache_dir is not None else os.path.join(os.path.dirname(path), 'cache')),
    }
    with open(path, 'w') as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    return str(path)
