"""Tests of cdrgraph/datasets/douban_cdr.py (GA-DTCDR Douban ratings)."""
from __future__ import annotations

import gzip
import os
import os.path as osp

import pytest
import torch

from cdrgraph.data.schema import INTERACTS, ITEM
from cdrgraph.datasets._base import DataFormatError
from cdrgraph.datasets.douban_cdr import DoubanCDR


def write(raw, domain, lines, gz=False):
    folder = osp.join(raw, f'douban_{domain}')
    os.makedirs(folder, exist_ok=True)
    for stale in ('ratings.dat', 'ratings.dat.gz'):
        if osp.exists(osp.join(folder, stale)):
            os.remove(osp.join(folder, stale))
    text = ''.join(line + '\n' for line in lines)
    if gz:
        with gzip.open(osp.join(folder, 'ratings.dat.gz'), 'wt') as f:
            f.write(text)
    else:
        with open(osp.join(folder, 'ratings.dat'), 'w') as f:
            f.write(text)


BOOK = ['3\t2\t4', '3\t1\t5', '1\t2\t3']
MUSIC = ['1\t1\t1', '4\t3\t2', '1\t2\t5']


def make(raw):
    write(raw, 'book', BOOK)
    write(raw, 'music', MUSIC, gz=True)


def no_cache(root):
    pdir = osp.join(root, 'processed')
    return not osp.isdir(pdir) or not [f for f in os.listdir(pdir) if f.endswith(('.pt', '.json', '.tmp'))]


def test_toy_graph_ratings_and_file_order(tmp_path):
    raw = str(tmp_path / 'raw')
    make(raw)
    ds = DoubanCDR(str(tmp_path / 'root'), raw_dir=raw)
    data = ds[0]
    assert ds.domain_names == ['book', 'music']
    # users are global raw ids (sorted): 1, 3, 4
    assert ds.id_maps['user'].tolist() == ['1', '3', '4']
    assert ds.id_maps[ITEM].tolist() == ['book/1', 'book/2', 'music/1', 'music/2', 'music/3']
    store = data[INTERACTS]
    assert store.edge_index.tolist() == [[1, 1, 0, 0, 2, 0], [1, 0, 1, 2, 4, 3]]
    assert store.rating.dtype == torch.float32
    assert store.rating.tolist() == [4.0, 5.0, 3.0, 1.0, 2.0, 5.0]
    # file order as time: row position inside the domain's ratings.dat
    assert store.time.tolist() == [0, 1, 2, 0, 1, 2]
    assert data.time_is_file_order is True
    # user 1 (node 0) is the overlap; active in both domains
    active = data['user', 'active_in', 'domain'].edge_index.tolist()
    assert sorted(zip(*active, strict=True)) == [(0, 0), (0, 1), (1, 0), (2, 1)]
    assert ds.name == 'douban_cdr_book_music' and repr(ds) == "DoubanCDR(domains=['book', 'music'])"


def test_domain_subsets_and_new_domains(tmp_path):
    raw = str(tmp_path / 'raw')
    make(raw)
    write(raw, 'movie', ['2\t7\t2'])
    root = str(tmp_path / 'root')
    music = DoubanCDR(root, domains=('music',), raw_dir=raw)
    assert music.domain_names == ['music'] and music[0]['user'].num_nodes == 2
    three = DoubanCDR(root, domains=['movie', 'book', 'music'], raw_dir=raw)
    assert three.domain_names == ['movie', 'book', 'music'] and three.name == 'douban_cdr_movie_book_music'
    assert three[0][ITEM].domain.tolist() == [0, 1, 1, 2, 2, 2]
    assert three.available_domains() == ['book', 'movie', 'music']
    with pytest.raises(FileNotFoundError, match=r"douban_film/ratings.dat.gz.*available in .*\['book', 'mov"):
        DoubanCDR(str(tmp_path / 'other'), domains=('book', 'film'), raw_dir=raw)
    with pytest.raises(ValueError, match='distinct'):
        DoubanCDR(root, domains=('book', 'book'), raw_dir=raw)


BOOK_LINE_2 = r'douban_book/ratings.dat, line 2: '


@pytest.mark.parametrize('lines,match', [
    (['3\t2\t4', '3\t1\t6'], BOOK_LINE_2 + r"field 'rating' = (np\.float64\()?6\.0\)? is outside \[1.0, 5"),
    (['3\t2\t4', '3\t1\t0'], BOOK_LINE_2 + r"field 'rating' = (np\.float64\()?0\.0\)? is outside"),
    (['3\t2\t4', '3\t1\tnan'], r"douban_book/ratings.dat, line 2: field 'rating' must be a finite number"),
    (['3\t2\t4', '3\t1\t'], r'douban_book/ratings.dat, line 2: expected 3 fields'),
    (['3\t2\t4', '3\t1'], r'douban_book/ratings.dat, line 2: expected 3 fields'),
    (['3\t2\t4', '3\t1\t4\t9'], r'douban_book/ratings.dat, line 2: expected 3 fields'),
    (['3\t2\t4', 'x3\t1\t4'], r"douban_book/ratings.dat, line 2: field 'user' must be an integer, got 'x3'"),
    (['3\t2\t4', '3\t2\t5'], r'douban_book/ratings.dat, line 2: duplicate \(user, item\) = \(3, 2\)'),
    ([], r'douban_book/ratings.dat: the file holds no interactions'),
])
def test_bad_input_names_file_and_line(tmp_path, lines, match):
    raw = str(tmp_path / 'raw')
    make(raw)
    write(raw, 'book', lines)
    root = str(tmp_path / 'root')
    with pytest.raises(DataFormatError, match=match):
        DoubanCDR(root, raw_dir=raw)
    assert no_cache(root)


def test_missing_file(tmp_path):
    raw = str(tmp_path / 'raw')
    write(raw, 'book', BOOK)
    root = str(tmp_path / 'root')
    with pytest.raises(FileNotFoundError, match=r'douban_music/ratings.dat.gz.*place the files.*GA-DTCDR'):
        DoubanCDR(root, raw_dir=raw)
    assert no_cache(root)


@pytest.mark.realdata
def test_real_douban_matches_readme(shared_data, tmp_path_factory):
    ds = DoubanCDR(str(tmp_path_factory.mktemp('douban')), raw_dir=osp.join(shared_data, 'douban-gadtcdr'))
    data = ds[0]
    store = data[INTERACTS]
    ei = store.edge_index
    dom = data[ITEM].domain[ei[1]]
    readme = {0: (2110, 6777, 96041, [1605, 4207, 21018, 38975, 30236]),
              1: (1672, 5567, 69709, [1478, 3215, 13031, 24805, 27180])}
    users = []
    for k, (n_users, n_items, n_ratings, hist) in readme.items():
        m = dom == k
        users.append(ei[0, m].unique())
        assert (users[-1].numel(), ei[1, m].unique().numel(), int(m.sum())) == (n_users, n_items, n_ratings)
        assert torch.bincount(store.rating[m].long(), minlength=6)[1:].tolist() == hist
        assert store.time[m].tolist() == list(range(n_ratings))
    assert torch.isin(users[0], users[1]).sum() == 1566
    assert data['user'].num_nodes == 2216
    raw_users = ds.id_maps['user'].astype(int)
    assert raw_users.min() == 1 and raw_users.max() == 2718
    # the last line of user 1 in douban_book/ratings.dat is item 3111 (LeaveOneOut(order='file') test item)
    u1 = (ei[0] == 0) & (dom == 0)
    last = ei[1, u1][store.time[u1].argmax()]
    assert ds.id_maps[ITEM][int(last)] == 'book/3111'
