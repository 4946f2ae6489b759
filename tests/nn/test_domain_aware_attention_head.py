"""DomainAwareAttentionHead: DACDR's two-step domain-aware cross-attention (MODELS.md §8.3, §8.8)."""
import math

import pytest
import torch

from cdrgraph.nn.heads.domain_aware_attention_head import DomainAwareAttentionHead


def reference(head, query, item, x, mask, row):
    """Dense masked-softmax re-implementation of §8.3 (the head uses PyG/torch_scatter softmaxes over the
    flattened valid slots)."""
    h = head.channels
    neg = torch.tensor(float('-inf'))
    if head.domain_level:
        s1 = torch.einsum('rh,rmh->rm', head.lin_q1(query), head.lin_k1(x)) / math.sqrt(h)
        s1 = torch.where(mask, s1, neg)
        alpha = torch.nan_to_num(torch.softmax(s1, -1), nan=0.0)
        e_da = torch.einsum('rm,rmh->rh', alpha, head.lin_v1(x))
    else:
        alpha, e_da = torch.zeros(mask.shape), torch.zeros(x.size(0), h)
    if not head.item_level:
        return e_da[row], torch.zeros(item.size(0), h), alpha, torch.zeros(item.size(0), mask.size(1))
    q_in = torch.cat([item, e_da[row]], -1) if head.use_query else item
    s2 = torch.einsum('ph,pmh->pm', head.lin_q2(q_in), head.lin_k2(x)[row]) / math.sqrt(h)
    if head.use_prior:
        s2 = s2 + torch.log(alpha[row])
    s2 = torch.where(mask[row], s2, neg)
    beta = torch.nan_to_num(torch.softmax(s2, -1), nan=0.0)
    e_ia = torch.einsum('pm,pmh->ph', beta, head.lin_v2(x)[row])
    return e_da[row], e_ia, alpha, beta


def inputs(seed=0, h=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, h, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    query = torch.randn(3, h, generator=g)
    item = torch.randn(7, h, generator=g)
    row = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    return query, item, x, mask, row


def test_hand_computed_two_steps():
    head = DomainAwareAttentionHead(2)
    with torch.no_grad():
        for lin in head.projections():
            lin.weight.zero_()
        head.lin_q1.weight.copy_(torch.eye(2))
        head.lin_k1.weight.copy_(torch.eye(2))
        head.lin_v1.weight.copy_(torch.eye(2))
        head.lin_q2.weight[:, :2] = torch.eye(2)  # q2 = item (the e_DA half of W_Q2 is zero)
        head.lin_k2.weight.copy_(torch.eye(2))
        head.lin_v2.weight.copy_(2 * torch.eye(2))
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [7.0, 7.0]]])
    mask = torch.tensor([[True, True, False]])
    query, item = torch.tensor([[math.sqrt(2) * math.log(3), 0.0]]), torch.tensor([[0.0, math.sqrt(2) * math.log(2)]])
    e_da, e_ia, alpha, beta = head(query, item, x, mask, return_attention=True)
    # step 1: logits (log 3, 0) -> alpha = (3/4, 1/4); e_DA = alpha-weighted x
    torch.testing.assert_close(alpha, torch.tensor([[0.75, 0.25, 0.0]]))
    torch.testing.assert_close(e_da, torch.tensor([[0.75, 0.25]]))
    # step 2: logits (0, log 2) + log alpha -> (log 3/4, log 2/4) -> beta = (3/5, 2/5); e_IA = 2 * beta-weighted x
    torch.testing.assert_close(beta, torch.tensor([[0.6, 0.4, 0.0]]))
    torch.testing.assert_close(e_ia, torch.tensor([[1.2, 0.8]]))


@pytest.mark.parametrize('refine', ['prior+query', 'prior', 'query', 'none'])
def test_matches_dense_reference(refine):
    torch.manual_seed(1)
    head = DomainAwareAttentionHead(6, refine=refine)
    query, item, x, mask, row = inputs()
    out = head(query, item, x, mask, row, return_attention=True)
    for a, b in zip(out, reference(head, query, item, x, mask, row), strict=True):
        torch.testing.assert_close(a, b)
    assert head.lin_q2.in_features == (12 if 'query' in refine else 6)


def test_weights_sum_to_one_and_ignore_padding():
    torch.manual_seed(2)
    head = DomainAwareAttentionHead(6)
    query, item, x, mask, row = inputs()
    e_da, e_ia, alpha, beta = head(query, item, x, mask, row, return_attention=True)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3))
    torch.testing.assert_close(beta.sum(-1), torch.ones(7))
    assert (alpha[~mask] == 0).all() and (beta[~mask[row]] == 0).all()
    # changing a padded slot's content (even to NaN) changes nothing
    x2 = x.clone()
    x2[0, 3] = float('nan')
    x2[1, 1:] = 100.0
    for a, b in zip(head(query, item, x2, mask, row, return_attention=True), (e_da, e_ia, alpha, beta), strict=True):
        assert torch.equal(a, b)
    # appending padded slots changes nothing
    xp = torch.cat([x, torch.randn(3, 4, 6)], 1)
    mp = torch.cat([mask, torch.zeros(3, 4, dtype=torch.bool)], 1)
    out = head(query, item, xp, mp, row, return_attention=True)
    torch.testing.assert_close(out[0], e_da)
    torch.testing.assert_close(out[1], e_ia)
    torch.testing.assert_close(out[2][:, :5], alpha)
    assert (out[2][:, 5:] == 0).all() and (out[3][:, 5:] == 0).all()


def test_empty_sequence_gives_zero_and_finite_outputs():
    torch.manual_seed(3)
    head = DomainAwareAttentionHead(6)
    query, item, x, mask, row = inputs()
    mask[1] = False
    e_da, e_ia, alpha, beta = head(query, item, x, mask, row, return_attention=True)
    assert all(torch.isfinite(t).all() for t in (e_da, e_ia, alpha, beta))
    assert (e_da[row == 1] == 0).all() and (e_ia[row == 1] == 0).all()
    assert (alpha[1] == 0).all() and (beta[row == 1] == 0).all()
    assert (e_da[row != 1] != 0).any()


def test_step_one_is_item_agnostic_step_two_is_not():
    torch.manual_seed(4)
    head = DomainAwareAttentionHead(6)
    query, item, x, mask, row = inputs()
    _, _, alpha, beta = head(query, item, x, mask, row, return_attention=True)
    other = torch.randn_like(item)
    e_da2, _, alpha2, beta2 = head(query, other, x, mask, row, return_attention=True)
    assert torch.equal(alpha, alpha2)
    assert not torch.allclose(beta[mask[row].sum(-1) > 1], beta2[mask[row].sum(-1) > 1])
    # step 1 only depends on the domain query
    assert not torch.allclose(head(torch.randn_like(query), item, x, mask, row, return_attention=True)[2], alpha)


def test_ablations():
    torch.manual_seed(5)
    query, item, x, mask, row = inputs()
    # w/o DA: beta is a plain item-query softmax, e_DA = 0, independent of the domain query
    no_da = DomainAwareAttentionHead(6, domain_level=False)
    assert no_da.lin_q2.in_features == 6
    e_da, e_ia, alpha, beta = no_da(query, item, x, mask, row, return_attention=True)
    s = torch.einsum('ph,pmh->pm', no_da.lin_q2(item), no_da.lin_k2(x)[row]) / math.sqrt(6)
    plain = torch.softmax(s.masked_fill(~mask[row], float('-inf')), -1)
    torch.testing.assert_close(beta, plain)
    assert (e_da == 0).all() and (alpha == 0).all()
    assert torch.equal(no_da(torch.randn_like(query), item, x, mask, row)[1], e_ia)
    # w/o IA: e_IA = 0 and the output is independent of the item
    no_ia = DomainAwareAttentionHead(6, item_level=False)
    e_da, e_ia = no_ia(query, item, x, mask, row)
    assert (e_ia == 0).all()
    assert torch.equal(no_ia(query, torch.randn_like(item), x, mask, row)[0], e_da)
    for a, b in zip(no_ia(query, item, x, mask, row, return_attention=True),
                    reference(no_ia, query, item, x, mask, row), strict=True):
        torch.testing.assert_close(a, b)
    # w/o DA & IA: the masked mean of the sequence in the e_DA slot
    none = DomainAwareAttentionHead(6, domain_level=False, item_level=False)
    e_da, e_ia = none(query, item, x, mask, row)
    mean = (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(e_da, mean[row])
    assert (e_ia == 0).all()


def test_gradients_reach_all_six_projections():
    torch.manual_seed(6)
    head = DomainAwareAttentionHead(6)
    query, item, x, mask, row = inputs()
    e_da, e_ia = head(query, item, x, mask, row)
    (e_da.pow(2).sum() + e_ia.pow(2).sum()).backward()
    assert all(lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0 for lin in head.projections())
    assert all(lin.bias is None for lin in head.projections())


def test_errors_and_repr():
    with pytest.raises(ValueError, match='refine must be one of'):
        DomainAwareAttentionHead(4, refine='both')
    with pytest.raises(ValueError, match='channels must be positive'):
        DomainAwareAttentionHead(0)
    head = DomainAwareAttentionHead(4)
    x, mask = torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match='mask must be bool'):
        head(torch.randn(2, 4), torch.randn(2, 4), x, mask.long())
    with pytest.raises(ValueError, match=r'x must be \[R, M, 4\]'):
        head(torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 3, 5), mask)
    with pytest.raises(ValueError, match='pass row'):
        head(torch.randn(2, 4), torch.randn(3, 4), x, mask)
    with pytest.raises(ValueError, match='row must index'):
        head(torch.randn(2, 4), torch.randn(2, 4), x, mask, row=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match='e_da is None'):
        head.item_attention(torch.randn(2, 4), x, mask)
    assert repr(head) == "DomainAwareAttentionHead(4, refine='prior+query', domain_level=True, item_level=True)"
