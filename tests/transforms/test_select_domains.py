"""SelectDomains: keep some domains, re-index items/domains, keep all users."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from cdrgraph.data import PAD, from_interactions, validate
from cdrgraph.transforms.eval_candidates import EvalCandidates
from cdrgraph.transforms.leave_one_out import LeaveOneOut
from cdrgraph.transforms.select_domains import SelectDomains

EI = ('user', 'interacts', 'item')


def build():
    rows = []
    for u in range(6):
        for d, n in (('a', 8), ('b', 9), ('c', 10)):
            for j in range(4):
                rows.append((u, f'{d}{(u + 2 * j) % n}', d, u * 10 + j))
    rows.append((6, 'a0', 'a', 0))  # user 6 only in a
    df = pd.DataFrame(rows, columns=['user', 'item', 'domain', 'time'])
    df['shared'] = df['item'].str[1:]
    return from_interactions(df, time='time', shared_item='shared', return_id_maps=True)


def test_select_reorders_domains_and_keeps_item_ids():
    data, maps = build()
    out = SelectDomains(['c', 'a'])(data)
    assert out.domain_names == ['c', 'a'] and out['domain'].num_nodes == 2
    assert out['user'].num_nodes == data['user'].num_nodes == 7
    orig = out['item'].orig_id
    # items of c first, then a; contiguous; original order inside
    assert [maps['item'][i].split('/')[0] for i in orig.tolist()] == ['c'] * 10 + ['a'] * 8
    assert out['item'].domain.tolist() == [0] * 10 + [1] * 8
    assert torch.equal(orig[:10], torch.sort(orig[:10]).values)
    assert torch.equal(out['item'].shared_id, data['item'].shared_id[orig])
    # the edges are exactly the original edges of c and a, in the same order, mapped through orig_id
    ei = data[EI].edge_index
    keep = data['item'].domain[ei[1]] != 1
    mapped = torch.stack([out[EI].edge_index[0], orig[out[EI].edge_index[1]]])
    assert torch.equal(mapped, ei[:, keep])
    assert torch.equal(out[EI].time, data[EI].time[keep])
    assert out.num_dropped_domain_edges == int((~keep).sum()) == 24
    validate(out)
    # chained selection composes orig_id
    only_a = SelectDomains('a')(out)
    assert torch.equal(only_a['item'].orig_id, torch.arange(8))
    # indices and names are equivalent
    assert torch.equal(SelectDomains([2, 0])(data)['item'].orig_id, orig)


def test_split_tuple_restricts_rows_and_candidate_lists():
    data, _ = build()
    split = LeaveOneOut(order='time')(data)
    split = EvalCandidates(num_negatives=3)(split)
    out = SelectDomains(['b'])(split)
    old_test, new_test = split[2], out[2]
    orig = new_test['item'].orig_id
    keep = old_test['item'].domain[old_test[EI].edge_label_index[1]] == 1
    lab = new_test[EI].edge_label_index
    assert torch.equal(torch.stack([lab[0], orig[lab[1]]]), old_test[EI].edge_label_index[:, keep])
    neg = new_test[EI].edge_label_neg
    assert torch.equal(orig[neg], old_test[EI].edge_label_neg[keep])
    assert new_test.num_dropped_domain_rows == int((~keep).sum())
    assert (neg != PAD).all()
    for g in out:
        validate(g)


def test_errors():
    data, _ = build()
    with pytest.raises(ValueError, match="'z' is not a domain"):
        SelectDomains(['z'])(data)
    with pytest.raises(ValueError, match='twice'):
        SelectDomains(['a', 0])(data)
    with pytest.raises(ValueError, match='empty'):
        SelectDomains([])
    assert repr(SelectDomains(['a'])) == "SelectDomains(domains=['a'])"
