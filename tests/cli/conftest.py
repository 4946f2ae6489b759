"""A tiny FakeCDRDataset experiment config shared by the CLI tests."""
from __future__ import annotations

import pytest
import yaml


def tiny_config(tmp_path) -> dict:
    return {
        'name': 'tiny',
        'data': {'name': 'FakeCDRDataset', 'num_users': 40, 'num_items': 20, 'avg_degree': 5, 'seed': 0,
                 'side_features': False},
        'split': [{'name': 'LeaveOneOut', 'order': 'random', 'seed': 0}],
        'candidates': {'num_negatives': 5, 'seed': 0, 'dataset_id': 'tiny'},
        'evaluation': {'protocol': 'sampled', 'ks': [1, 5], 'also_full': True},
        'train': {'epochs': 1, 'batch_size': 64, 'lr': 0.01},
        'models': {'BPRMF': {'model': {'embedding_dim': 4}}},
        'seeds': [0],
        'cache_dir': str(tmp_path / 'cache'),
    }


@pytest.fixture
def tiny_cfg(tmp_path):
    return tiny_config(tmp_path)


@pytest.fixture
def tiny_yaml(tmp_path, tiny_cfg):
    path = tmp_path / 'tiny.yaml'
    path.write_text(yaml.safe_dump(tiny_cfg))
    return str(path)
