"""AttentionTransferHead: CAT-ART's attention-based representation transfer (MODELS.md §6.3, §6.8 #5)."""
import math

import pytest
import torch

from cdrgraph.nn.heads.attention_transfer_head import AttentionTransferHead


def randomise(head, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return head


def inputs(b=5, s=3, h=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, h, generator=g), torch.randn(b, s, h, generator=g), torch.randn(b, h, generator=g)


@pytest.mark.parametrize('knowledge', ['both', 'd_in', 'd_sp'])
@pytest.mark.parametrize('attention', [True, False])
def test_untrained_head_returns_the_target_embedding(knowledge, attention):
    torch.manual_seed(0)
    head = AttentionTransferHead(4, 3, knowledge=knowledge, attention=attention)
    t, s, c = inputs()
    torch.testing.assert_close(head(t, s, c), t, rtol=0, atol=0)


def test_attention_equals_hand_computed_single_head():
    head = randomise(AttentionTransferHead(4, 3, knowledge='d_sp'))
    t, s, _ = inputs()
    z, alpha = head(t, s, return_attention_weights=True)
    a = torch.stack([lin(s[:, k]) for k, lin in enumerate(head.adapters)], 1)
    wq, wk, wv = head.attn.in_proj_weight.chunk(3)
    bq, bk, bv = head.attn.in_proj_bias.chunk(3)
    q, k, v = t @ wq.t() + bq, a @ wk.t() + bk, a @ wv.t() + bv
    w = torch.softmax((k @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(4), dim=-1)
    o = (w.unsqueeze(-1) * v).sum(1) @ head.attn.out_proj.weight.t() + head.attn.out_proj.bias
    torch.testing.assert_close(alpha, w)
    torch.testing.assert_close(z, t + o)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(5))


def test_knowledge_switches_give_the_three_sums():
    both = randomise(AttentionTransferHead(4, 3, knowledge='both'))
    d_in = AttentionTransferHead(4, 3, knowledge='d_in')
    d_sp = AttentionTransferHead(4, 3, knowledge='d_sp')
    d_in.load_state_dict({k: v for k, v in both.state_dict().items() if k.startswith('global_adapter')})
    d_sp.load_state_dict({k: v for k, v in both.state_dict().items() if not k.startswith('global_adapter')})
    t, s, c = inputs()
    o, _ = both.transfer(t, s)
    r = both.global_adapter(c)
    torch.testing.assert_close(both(t, s, c), t + o + r)
    torch.testing.assert_close(d_in(t, s, c), t + r)
    torch.testing.assert_close(d_sp(t, s), t + o)
    # only the modules a setting uses are built
    assert d_in.attn is None and len(d_in.adapters) == 0
    assert d_sp.global_adapter is None


def test_single_source_gets_weight_one_and_the_target_never_enters_keys_or_values():
    head = randomise(AttentionTransferHead(4, 1, knowledge='d_sp'))
    t, s, _ = inputs(s=1)
    z, alpha = head(t, s, return_attention_weights=True)
    torch.testing.assert_close(alpha, torch.ones(5, 1))
    # with one source the attended value does not depend on the query: moving the target moves z by as much
    t2 = t + 3.0
    torch.testing.assert_close(head(t2, s) - z, t2 - t)


def test_without_attention_the_sources_are_averaged():
    head = randomise(AttentionTransferHead(4, 3, knowledge='d_sp', attention=False))
    assert head.attn is None
    t, s, _ = inputs()
    z, alpha = head(t, s, return_attention_weights=True)
    a = torch.stack([lin(s[:, k]) for k, lin in enumerate(head.adapters)], 1)
    torch.testing.assert_close(z, t + a.mean(1))
    torch.testing.assert_close(alpha, torch.full((5, 3), 1 / 3))


def test_zero_initialised_branches_still_learn():
    torch.manual_seed(0)
    head = AttentionTransferHead(4, 2)
    t, s, c = inputs(s=2)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    target = torch.randn(5, 4, generator=torch.Generator().manual_seed(9))
    for _ in range(3):
        opt.zero_grad()
        ((head(t, s, c) - target) ** 2).sum().backward()
        opt.step()
    # after the first step the attention's query/key/value projections receive gradient too
    assert head.attn.in_proj_weight.grad.abs().sum() > 0
    assert head.global_adapter.weight.abs().sum() > 0 and head.attn.out_proj.weight.abs().sum() > 0


def test_errors_and_repr():
    with pytest.raises(ValueError, match='knowledge must be one of'):
        AttentionTransferHead(4, 2, knowledge='all')
    with pytest.raises(ValueError, match='sizes must be positive'):
        AttentionTransferHead(4, 0)
    head = AttentionTransferHead(4, 2)
    t, s, c = inputs(s=2)
    with pytest.raises(ValueError, match=r"needs global_code \[5, 4\]"):
        head(t, s)
    with pytest.raises(ValueError, match=r'sources must be \[5, 2, 4\]'):
        head(t, s[:, :1], c)
    assert repr(head) == "AttentionTransferHead(4, num_sources=2, knowledge='both', attention=True, dropout=0.0)"
