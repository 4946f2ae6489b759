r"""UniCDR+'s sequential interaction aggregator: a causal pre-LN Transformer
block over the time-ordered context (MODELS.md §4.3 (c))."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ['SequentialAggregatorHead']


class SequentialAggregatorHead(torch.nn.Module):
    r"""Sequential aggregator of `"A Unified Framework for Cross-Domain
    Recommendation" <https://arxiv.org/abs/2409.04540>`_ (Cao et al., 2024)
    (MODELS.md §4.3 (c), [ours]).

    The context :math:`\mathbf{x}_1, \dots, \mathbf{x}_M` is ordered by time
    (most recent last). With a positional table :math:`\boldsymbol\Pi [M, h]`
    and one pre-LayerNorm Transformer encoder block
    (:class:`torch.nn.TransformerEncoderLayer`, ``norm_first=True``,
    feed-forward width ``h``) under a causal mask:

    .. math::
        \mathbf{s} &= \mathrm{Block}_{causal}(\mathbf{x} + \boldsymbol\Pi)

        \mathbf{p} &= \mathbf{s}_{t^*},\quad t^* = \text{the last valid position}

        \mathbf{g} &= \lambda_a \mathbf{e} + (1 - \lambda_a)\, \mathbf{W}_{agg} \mathbf{p}

    Position :math:`t` attends only to valid positions :math:`\le t`, so
    the output at :math:`t` never depends on later items, and padded slots
    (``mask == False``, anywhere in the row: masking drops positions but
    keeps the order) never influence a valid position. An empty context
    gives :math:`\mathbf{p} = 0`, hence :math:`\mathbf{g} = \lambda_a \mathbf{e}`.

    Args:
        channels (int): embedding size ``h``.
        max_len (int, optional): ``M``, rows of the positional table.
            (default: :obj:`50`)
        heads (int, optional): attention heads (must divide ``channels``).
            (default: :obj:`2`)
        lambda_a (float, optional): :math:`\lambda_a \in [0, 1]`, weight of
            the ID embedding. (default: :obj:`0.5`)
        dropout (float, optional): dropout inside the Transformer block.
            (default: :obj:`0.3`)

    Shapes:
        - **input:** ID embedding ``e [B, h]``, context ``x [B, M', h]``
          (``M' <= max_len``), mask ``bool[B, M']``
        - **output:** ``g [B, h]``

    Example:
        >>> agg = SequentialAggregatorHead(8, max_len=5, lambda_a=0.5)
        >>> e, x, mask = torch.randn(4, 8), torch.randn(4, 5, 8), torch.rand(4, 5) < 0.5
        >>> agg(e, x, mask).shape
        torch.Size([4, 8])
    """

    def __init__(self, channels: int, max_len: int = 50, heads: int = 2, lambda_a: float = 0.5,
                 dropout: float = 0.3) -> None:
        super().__init__()
        if channels < 1 or max_len < 1 or heads < 1:
            raise ValueError(f'SequentialAggregatorHead: channels, max_len and heads must be positive, got '
                             f'{channels}, {max_len}, {heads}')
        if channels % heads:
            raise ValueError(f'SequentialAggregatorHead: heads={heads} must divide channels={channels}')
        if not 0.0 <= lambda_a <= 1.0:
            raise ValueError(f'SequentialAggregatorHead: lambda_a must lie in [0, 1], got {lambda_a}')
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'SequentialAggregatorHead: dropout must lie in [0, 1), got {dropout}')
        self.channels = channels
        self.max_len = max_len
        self.heads = heads
        self.lambda_a = lambda_a
        self.pos_emb = torch.nn.Embedding(max_len, channels)
        self.block = torch.nn.TransformerEncoderLayer(channels, heads, dim_feedforward=channels, dropout=dropout,
                                                      batch_first=True, norm_first=True)
        self.lin_agg = torch.nn.Linear(channels, channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.pos_emb.weight, std=0.1)
        self.block.self_attn._reset_parameters()
        for mod in (self.block.linear1, self.block.linear2, self.block.norm1, self.block.norm2, self.lin_agg):
            mod.reset_parameters()

    def _check(self, e: Tensor | None, x: Tensor, mask: Tensor) -> None:
        if x.dim() != 3 or mask.shape != x.shape[:2] or x.size(-1) != self.channels or \
                (e is not None and (e.dim() != 2 or e.shape != (x.size(0), x.size(2)))):
            raise ValueError(f'SequentialAggregatorHead: expected e [B, {self.channels}], x [B, M, {self.channels}], '
                             f'mask [B, M]; got {None if e is None else tuple(e.shape)}, {tuple(x.shape)}, '
                             f'{tuple(mask.shape)}')
        if mask.dtype != torch.bool:
            raise ValueError(f'SequentialAggregatorHead: mask must be bool, got {mask.dtype}')
        if x.size(1) > self.max_len:
            raise ValueError(f'SequentialAggregatorHead: the context has {x.size(1)} positions but max_len='
                             f'{self.max_len}; build the head with max_len >= the context length')

    def encode_sequence(self, x: Tensor, mask: Tensor) -> Tensor:
        r"""Per-position outputs :math:`\mathbf{s}` ``[B, M, h]`` of the causal
        block (padded positions hold values that no valid position reads)."""
        self._check(None, x, mask)
        b, m, _ = x.shape
        pos = torch.arange(m, device=x.device)
        causal = pos.view(1, m) > pos.view(m, 1)                              # key after query
        blocked = causal.unsqueeze(0) | ~mask.unsqueeze(1)                      # [B, M(query), M(key)]
        blocked = blocked & ~torch.eye(m, dtype=torch.bool, device=x.device)   # every query sees itself
        attn_mask = blocked.repeat_interleave(self.heads, dim=0)               # [B * heads, M, M]
        return self.block(x + self.pos_emb(pos).unsqueeze(0), src_mask=attn_mask)

    def pool(self, x: Tensor, mask: Tensor) -> Tensor:
        r"""The pooled context :math:`\mathbf{p}` ``[B, h]``: the output at
        the last valid position (``0`` for an empty context)."""
        s = self.encode_sequence(x, mask)
        m = mask.size(1)
        last = (mask.long() * torch.arange(1, m + 1, device=x.device)).argmax(dim=1)     # [B]
        p = s[torch.arange(s.size(0), device=x.device), last]
        return p * mask.any(dim=1, keepdim=True).to(p.dtype)

    def forward(self, e: Tensor, x: Tensor, mask: Tensor) -> Tensor:
        self._check(e, x, mask)
        return self.lambda_a * e + (1.0 - self.lambda_a) * self.lin_agg(self.pool(x, mask))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.channels}, max_len={self.max_len}, heads={self.heads}, '
                f'lambda_a={self.lambda_a}, dropout={self.block.dropout.p})')
