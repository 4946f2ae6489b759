import math

import pytest

from cdrgraph.metrics.report import MARKER, higher_is_better, summarize, to_csv, to_markdown

RUNS = {
    'SMF': [{'hr@10/Sport': 0.50, 'rmse/Sport': 1.0, 'num_rows/Sport': 10},
            {'hr@10/Sport': 0.70, 'rmse/Sport': 1.2, 'num_rows/Sport': 10}],
    'CMF': [{'hr@10/Sport': 0.40, 'rmse/Sport': 1.3}, {'hr@10/Sport': 0.60, 'rmse/Sport': 1.5}],
    'EMCDR': [{'hr@10/Sport': 0.80, 'rmse/Sport': 0.9}],
}


def test_summarize_mean_std_and_negative_transfer_marker():
    df = summarize(RUNS, baseline={'CMF': 'SMF', 'EMCDR': 'SMF'})
    assert list(df.index) == ['SMF', 'CMF', 'EMCDR']
    assert list(df.columns) == [('hr@10', 'Sport'), ('rmse', 'Sport')]  # counts are dropped
    mean, std = df.attrs['mean'], df.attrs['std']
    assert mean.loc['SMF', ('hr@10', 'Sport')] == pytest.approx(0.6)
    assert std.loc['SMF', ('hr@10', 'Sport')] == pytest.approx(math.sqrt(0.02))  # sample std of .5, .7
    assert std.loc['EMCDR', ('hr@10', 'Sport')] == 0.0  # one seed
    assert df.attrs['count'].loc['CMF', ('rmse', 'Sport')] == 2
    # CMF: hr 0.5 < 0.6 (worse) and rmse 1.4 > 1.1 (worse); EMCDR better on both
    assert df.loc['CMF', ('hr@10', 'Sport')] == f'0.5000 ± 0.1414 {MARKER}'
    assert df.loc['CMF', ('rmse', 'Sport')] == f'1.4000 ± 0.1414 {MARKER}'
    assert df.loc['EMCDR', ('hr@10', 'Sport')] == '0.8000 ± 0.0000'
    assert df.loc['EMCDR', ('rmse', 'Sport')] == '0.9000 ± 0.0000'
    assert df.loc['SMF', ('hr@10', 'Sport')] == '0.6000 ± 0.1414'
    assert df.attrs['negative_transfer'].loc['CMF'].all()


def test_summarize_metric_filter_missing_cells_and_errors():
    df = summarize({'A': [{'hr@10/x': 1.0, 'ndcg@10/x': 0.5}], 'B': [{'ndcg@10/y': 0.25}]},
                   metrics=['ndcg@10'], precision=2)
    assert list(df.columns) == [('ndcg@10', 'x'), ('ndcg@10', 'y')]
    assert df.loc['A', ('ndcg@10', 'y')] == '–' and df.loc['B', ('ndcg@10', 'y')] == '0.25 ± 0.00'
    with pytest.raises(KeyError, match="'SMF' is not in runs"):
        summarize({'A': [{'hr@10/x': 1.0}]}, baseline={'A': 'SMF'})
    with pytest.raises(TypeError, match='list of result dicts'):
        summarize({'A': {'hr@10/x': 1.0}})
    with pytest.raises(ValueError, match='not .<metric>/<domain>.'):
        summarize({'A': [{'hr@10': 1.0}]})
    with pytest.raises(ValueError, match='none of metrics'):
        summarize({'A': [{'hr@10/x': 1.0}]}, metrics=['auc'])


def test_higher_is_better():
    assert higher_is_better('ndcg@10') and higher_is_better('auc')
    assert not higher_is_better('rmse') and not higher_is_better('logloss') and not higher_is_better('mae')


def test_to_markdown_and_csv(tmp_path):
    df = summarize({'SMF': [{'hr@10/S': 0.5}], 'CMF': [{'hr@10/S': 0.25}]}, baseline={'CMF': 'SMF'},
                   precision=2)
    assert to_markdown(df) == ('| model | hr@10/S |\n'
                               '|---|---:|\n'
                               '| SMF | 0.50 ± 0.00 |\n'
                               f'| CMF | 0.25 ± 0.00 {MARKER} |\n')
    path = tmp_path / 'table.csv'
    text = to_csv(df, str(path))
    assert text.splitlines() == ['model,hr@10/S', 'SMF,0.50 ± 0.00', f'CMF,0.25 ± 0.00 {MARKER}']
    assert path.read_text(encoding='utf-8') == text
