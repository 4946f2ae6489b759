"""Explicit registries with lazy imports."""
from __future__ import annotations

import re

import pytest

from cdrgraph.cli.registry import DATASETS, MODELS, SPLITS, Registry


def test_known_names_resolve():
    from cdrgraph.transforms.given_split import GivenSplit
    assert SPLITS.get('GivenSplit') is GivenSplit
    assert {'Popularity', 'BPRMF', 'LightGCN'} <= set(MODELS.names())
    assert 'FakeCDRDataset' in DATASETS and 'AmazonCDR' in DATASETS


def test_unknown_name_suggests_and_lists():
    known = ', '.join(sorted(MODELS.names()))
    with pytest.raises(KeyError, match=r"unknown model 'LightGNC' \(did you mean 'LightGCN'\?\); "
                                       r'known models: ' + re.escape(known)):
        MODELS.get('LightGNC')


def test_no_arbitrary_imports():
    # a dotted path is just an unknown name, never imported
    with pytest.raises(KeyError, match='unknown model'):
        MODELS.get('os:system')
    with pytest.raises(ValueError, match="must be 'cdrgraph"):
        Registry('model', {'X': 'os:system'})


def test_missing_module_is_a_clear_error():
    reg = Registry('model', {'Ghost': 'cdrgraph.models.ghost_model:Ghost'})
    assert 'Ghost' in reg  # listed without importing
    with pytest.raises(ImportError, match=r"'Ghost' is registered as cdrgraph.models.ghost_model:Ghost"):
        reg.get('Ghost')


def test_register_class_objects():
    reg = Registry('split')

    class Mine:
        pass

    assert reg.register('Mine', Mine) is Mine and reg.get('Mine') is Mine
    with pytest.raises(KeyError, match='already registered'):
        reg.register('Mine', Mine)
    with pytest.raises(TypeError, match='class'):
        reg.register('obj', Mine())
    reg.unregister('Mine')
    assert 'Mine' not in reg and len(reg) == 0
    assert repr(reg) == "Registry(kind='split', names=[])"
