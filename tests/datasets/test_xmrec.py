import gzip
import os
import os.path as osp

import pytest
import torch

from cdrgraph.data.schema import ACTIVE_IN, INTERACTS, validate
from cdrgraph.datasets._base import DataFormatError
from cdrgraph.datasets.xmrec import XMRec

HEADER = 'userId itemId rate date'
CA = [
    ('U1', 'B001', '5.0', '2020-01-01'), ('U1', 'B002', '4.0', '2020-01-02'),
    ('U1', 'B001', '3.0', '2020-02-01'),          # duplicate (U1, B001): dropped, first row kept
    ('U2', 'B002', '1.0', '1970-01-02'),
    ('SAME', 'B003', '2.0', '2019-12-31'),        # reviewer id that also occurs in 'uk'
]
UK = [
    ('V1', 'B002', '5.0', '2018-06-30'), ('V1', 'B004', '4.0', '2018-07-01'),
    ('SAME', 'B002', '3.0', '2018-07-02'),
    ('V1', 'B004', '4.0', '2018-07-01'), ('V1', 'B004', '2.0', '2018-07-05'),   # 2 duplicates
]


def write(path, rows, header=HEADER, gz=True):
    text = '\n'.join([header] + [' '.join(r) for r in rows]) + '\n'
    if gz:
        with gzip.open(path + '.gz', 'wt') as f:
            f.write(text)
    else:
        with open(path, 'w') as f:
            f.write(text)


@pytest.fixture
def raw(tmp_path):
    folder = tmp_path / 'raw'
    folder.mkdir()
    write(str(folder / 'ca_5core.txt'), CA)
    write(str(folder / 'uk_5core.txt'), UK, gz=False)     # plain text works too
    return str(folder)


def test_markets_items_users(tmp_path, raw):
    ds = XMRec(str(tmp_path), markets=('uk', 'ca'), raw_dir=raw)
    data = validate(ds[0])
    assert ds.domain_names == ['uk', 'ca']
    assert ds.raw_file_names == ['uk_5core.txt', 'ca_5core.txt.gz']
    assert list(ds.id_maps['item']) == ['uk/B002', 'uk/B004', 'ca/B001', 'ca/B002', 'ca/B003']
    assert data['item'].domain.tolist() == [0, 0, 1, 1, 1]
    # the same ASIN in two markets shares one shared_id (B001..B004 -> 0..3)
    assert data['item'].shared_id.tolist() == [1, 3, 0, 1, 2]
    # users are per market, even the reviewer id present in both files
    assert list(ds.id_maps['user']) == ['ca:SAME', 'ca:U1', 'ca:U2', 'uk:SAME', 'uk:V1']
    ai = data[ACTIVE_IN].edge_index
    assert torch.bincount(ai[0], minlength=5).tolist() == [1, 1, 1, 1, 1]
    # duplicates counted per market; first row kept
    assert data.num_duplicates_by_domain == {'uk': 2, 'ca': 1}
    assert data.num_duplicates_dropped == 3
    assert data[INTERACTS].edge_index.size(1) == len(CA) + len(UK) - 3
    umap, imap = list(ds.id_maps['user']), list(ds.id_maps['item'])
    ei = data[INTERACTS].edge_index

    def edge(u, i):
        return int(((ei[0] == umap.index(u)) & (ei[1] == imap.index(i))).nonzero())

    store = data[INTERACTS]
    e = edge('ca:U1', 'ca/B001')
    assert store.rating[e].item() == 5.0
    assert store.time[e].item() == 1577836800          # 2020-01-01 00:00 UTC in unix seconds
    assert store.time[edge('ca:U2', 'ca/B002')].item() == 86400
    assert store.rating[edge('uk:V1', 'uk/B004')].item() == 4.0
    assert store.time.dtype == torch.long and store.rating.dtype == torch.float


def test_name_and_cache(tmp_path, raw):
    a = XMRec(str(tmp_path), markets=('ca', 'uk'), raw_dir=raw)
    b = XMRec(str(tmp_path), markets=('ca',), raw_dir=raw)
    assert a.name == 'xmrec_ca-uk' and b.name == 'xmrec_ca'
    assert b[0]['domain'].num_nodes == 1
    assert a[0]['domain'].num_nodes == 2
    assert repr(b) == "XMRec(markets=['ca'])"


def test_unknown_market_and_missing_file(tmp_path, raw):
    valid = r"\['ca', 'de', 'fr', 'in', 'jp', 'mx', 'uk'\]"
    with pytest.raises(ValueError, match=r"unknown market\(s\) \['us'\]; valid: " + valid):
        XMRec(str(tmp_path), markets=('ca', 'us'), raw_dir=raw)
    with pytest.raises(FileNotFoundError, match=r'de_5core\.txt\.gz.*efficient-xmrec'):
        XMRec(str(tmp_path), markets=('ca', 'de'), raw_dir=raw)


@pytest.mark.parametrize('rows, header, message', [
    ([('U1', 'B001', '5.0')], HEADER, r'ca_5core\.txt\.gz, line 2: expected 4 fields'),
    ([('U1', 'B001', '5.0', '2020-01-01'), ('U1', 'B002', 'five', '2020-01-01')], HEADER,
     r"line 3: field 'rating' must be a finite number, got 'five'"),
    ([('U1', 'B001', '9.0', '2020-01-01')], HEADER,
     r"line 2: field 'rating' = (np\.float64\()?9\.0\)? is outside \[1, 5\]"),
    ([('U1', 'B001', '5.0', '01/02/2020')], HEADER,
     r"line 2: field 'date' must be YYYY-MM-DD, got '01/02/2020'"),
    ([('U1', 'B001', '5.0', '2020-01-01')], 'user item rating time',
     r"line 1: expected the header 'userId itemId rate date'"),
])
def test_bad_rows(tmp_path, rows, header, message):
    folder = tmp_path / 'raw'
    folder.mkdir()
    write(str(folder / 'ca_5core.txt'), rows, header=header)
    with pytest.raises(DataFormatError, match=message):
        XMRec(str(tmp_path), markets=('ca',), raw_dir=str(folder))
    assert not any(f.startswith('xmrec') for f in os.listdir(osp.join(str(tmp_path), 'processed')))


@pytest.mark.realdata
def test_real_xmrec(shared_data, tmp_path):
    ds = XMRec(str(tmp_path), raw_dir=osp.join(shared_data, 'xmrec-electronics'))
    data = ds[0]
    assert ds.domain_names == ['ca', 'de', 'fr', 'in', 'jp', 'mx', 'uk']
    # README statistics per market: users, items, rows (before de-duplication)
    readme = {'ca': (5675, 5772, 55045), 'de': (2373, 2210, 22247), 'fr': (2396, 1911, 22905),
              'in': (239, 470, 2015), 'jp': (487, 955, 4485), 'mx': (1878, 1645, 17095),
              'uk': (4847, 3302, 44515)}
    dom = data['item'].domain
    ei = data[INTERACTS].edge_index
    edges = torch.bincount(dom[ei[1]], minlength=7).tolist()
    users = torch.bincount(data[ACTIVE_IN].edge_index[1], minlength=7).tolist()
    items = torch.bincount(dom, minlength=7).tolist()
    dups = data.num_duplicates_by_domain
    for k, m in enumerate(ds.domain_names):
        assert (users[k], items[k], edges[k] + dups[m]) == readme[m], m
    # README: duplicate rows ca 954, de 728, uk 727
    assert (dups['ca'], dups['de'], dups['uk']) == (954, 728, 727)
    # every user node is active in exactly one market
    assert data['user'].num_nodes == sum(v[0] for v in readme.values())
    # README item overlaps via shared_id
    sid = data['item'].shared_id
    asins = {m: set(sid[dom == k].tolist()) for k, m in enumerate(ds.domain_names)}
    assert len(asins['ca'] & asins['uk']) == 1746
    assert len(asins['de'] & asins['fr']) == 1277
    assert len(asins['in'] & asins['jp']) == 142
    # dates 2004-05-09 ... 2020-11-18 as unix seconds
    assert int(data[INTERACTS].time.min()) == 1084060800
    assert int(data[INTERACTS].time.max()) == 1605657600
