r"""Shared + domain-specific embedding tables (UniCDR, HeroGRAPH, CDTM style)."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ['DomainEmbedding']

COMBINE = ('sum', 'concat')


class DomainEmbedding(torch.nn.Module):
    r"""Embedding table with one shared row per node plus one domain-specific
    row per (domain, node), as used for users in UniCDR (Cao et al., WSDM
    2023), HeroGRAPH (Cui et al., RecSys 2020) and CDTM (shared and
    domain-specific user embeddings):

    .. math::
        \mathbf{e}_{v,k} = \mathbf{s}_v \oplus \mathbf{p}_{k,v}

    where :math:`\oplus` is a sum or a concatenation. The specific rows are
    one :class:`torch.nn.Embedding` of ``K · N`` rows (row ``k · N + v``), so
    optimisers and sparse gradients work as for any embedding.

    Args:
        num_embeddings (int): number of nodes ``N``.
        num_domains (int): number of domains ``K``.
        embedding_dim (int, optional): size ``h`` of every row. (default: :obj:`64`)
        shared (bool, optional): keep the shared table. (default: :obj:`True`)
        specific (bool, optional): keep the domain-specific tables.
            (default: :obj:`True`)
        combine (str, optional): ``'sum'`` (output ``h``) or ``'concat'``
            (output ``2h``, shared first) when both tables exist.
            (default: :obj:`'sum'`)
        init_std (float, optional): rows are drawn from
            :math:`\mathcal{N}(0, \text{init\_std}^2)`. (default: :obj:`0.1`)
        sparse (bool, optional): sparse gradients for both tables (only the
            looked-up rows; :func:`~cdrgraph.train.fit` updates them with
            :class:`torch.optim.SparseAdam`). (default: :obj:`False`)

    Shapes:
        - **input:** ``index [B]``, ``domain [B]`` *(optional)*
        - **output:** ``[B, out_dim]`` with ``domain``, else ``[B, K, out_dim]``

    Example:
        >>> emb = DomainEmbedding(num_embeddings=100, num_domains=2, embedding_dim=8)
        >>> emb(torch.tensor([0, 5]), torch.tensor([1, 0])).shape
        torch.Size([2, 8])
        >>> emb(torch.tensor([0, 5])).shape       # every domain
        torch.Size([2, 2, 8])
    """

    def __init__(self, num_embeddings: int, num_domains: int, embedding_dim: int = 64, shared: bool = True,
                 specific: bool = True, combine: str = 'sum', init_std: float = 0.1, sparse: bool = False) -> None:
        super().__init__()
        if not (shared or specific):
            raise ValueError('DomainEmbedding: at least one of shared/specific must be True')
        if combine not in COMBINE:
            raise ValueError(f'DomainEmbedding: combine must be one of {COMBINE}, got {combine!r}')
        if num_embeddings < 1 or num_domains < 1 or embedding_dim < 1:
            raise ValueError(f'DomainEmbedding: sizes must be positive, got num_embeddings={num_embeddings}, '
                             f'num_domains={num_domains}, embedding_dim={embedding_dim}')
        self.num_embeddings = num_embeddings
        self.num_domains = num_domains
        self.embedding_dim = embedding_dim
        self.combine = combine
        self.init_std = init_std
        self.sparse = bool(sparse)
        self.shared = torch.nn.Embedding(num_embeddings, embedding_dim, sparse=self.sparse) if shared else None
        self.specific = (torch.nn.Embedding(num_domains * num_embeddings, embedding_dim, sparse=self.sparse)
                         if specific else None)
        self.reset_parameters()

    @property
    def out_dim(self) -> int:
        r"""Size of the combined vectors."""
        both = self.shared is not None and self.specific is not None
        return 2 * self.embedding_dim if both and self.combine == 'concat' else self.embedding_dim

    def reset_parameters(self) -> None:
        for table in (self.shared, self.specific):
            if table is not None:
                torch.nn.init.normal_(table.weight, std=self.init_std)

    def _check(self, index: Tensor, domain: Tensor | None) -> None:
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_embeddings):
            raise IndexError(f'DomainEmbedding: index outside [0, {self.num_embeddings}) '
                             f'(min {int(index.min())}, max {int(index.max())})')
        if domain is not None:
            if domain.shape != index.shape:
                raise ValueError(f'DomainEmbedding: domain {tuple(domain.shape)} must have the shape of '
                                 f'index {tuple(index.shape)}')
            if domain.numel() and (int(domain.min()) < 0 or int(domain.max()) >= self.num_domains):
                raise IndexError(f'DomainEmbedding: domain outside [0, {self.num_domains})')

    def shared_embedding(self, index: Tensor) -> Tensor:
        r"""Shared rows ``[*, h]`` (``index`` of any shape)."""
        if self.shared is None:
            raise RuntimeError('DomainEmbedding was built with shared=False')
        return self.shared(index)

    def specific_embedding(self, index: Tensor, domain: Tensor | None = None) -> Tensor:
        r"""Domain-specific rows: ``[*, h]`` for ``domain`` (same shape as
        ``index``), else ``[*, K, h]`` for every domain."""
        if self.specific is None:
            raise RuntimeError('DomainEmbedding was built with specific=False')
        if domain is None:
            offsets = torch.arange(self.num_domains, device=index.device) * self.num_embeddings
            return self.specific(index.unsqueeze(-1) + offsets)
        return self.specific(domain * self.num_embeddings + index)

    def forward(self, index: Tensor, domain: Tensor | None = None) -> Tensor:
        self._check(index, domain)
        parts = []
        if self.shared is not None:
            s = self.shared(index)
            if domain is None:
                s = s.unsqueeze(-2).expand(*index.shape, self.num_domains, -1)
            parts.append(s)
        if self.specific is not None:
            parts.append(self.specific_embedding(index, domain))
        if len(parts) == 1:
            return parts[0]
        return parts[0] + parts[1] if self.combine == 'sum' else torch.cat(parts, dim=-1)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_embeddings}, num_domains={self.num_domains}, '
                f'embedding_dim={self.embedding_dim}, shared={self.shared is not None}, '
                f'specific={self.specific is not None}, combine={self.combine!r}'
                + (', sparse=True)' if self.sparse else ')'))
