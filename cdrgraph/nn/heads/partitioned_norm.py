r"""Partitioned normalisation of STAR (MODELS.md §9.8)."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ['PartitionedNorm']


class PartitionedNorm(torch.nn.Module):
    r"""Partitioned normalisation of STAR (Sheng et al., CIKM 2021): the
    samples of each domain are normalised with that domain's statistics and
    scaled/shifted by shared and domain parameters,

    .. math::
        \mathbf{z} = (\gamma \cdot \gamma_k) \odot
        \frac{\mathbf{x} - \mu_k}{\sqrt{\sigma_k^2 + \epsilon}} + (\beta + \beta_k).

    In training :math:`\mu_k, \sigma^2_k` are the (biased) mean and variance of
    the batch's domain-``k`` samples, and per-domain running statistics are
    updated (unbiased variance, ``momentum``); in evaluation the running
    statistics of domain ``k`` are used. A domain-``k`` sample's output thus
    never depends on the other domains' samples of the batch.

    Args:
        num_features (int): input width.
        num_domains (int): number ``K`` of domains.
        eps (float, optional): :math:`\epsilon`. (default: :obj:`1e-5`)
        momentum (float, optional): running-statistics momentum.
            (default: :obj:`0.1`)

    Shapes:
        - **input:** ``x [P, num_features]``, ``domain long[P]``
        - **output:** ``[P, num_features]``

    Example:
        >>> pn = PartitionedNorm(4, num_domains=2)
        >>> pn(torch.randn(6, 4), torch.tensor([0, 0, 0, 1, 1, 1])).shape
        torch.Size([6, 4])
    """

    def __init__(self, num_features: int, num_domains: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        if num_features < 1 or num_domains < 1:
            raise ValueError(f'PartitionedNorm: sizes must be positive, got {num_features}, {num_domains}')
        self.num_features, self.num_domains, self.eps, self.momentum = num_features, num_domains, eps, momentum
        self.weight = torch.nn.Parameter(torch.empty(num_features))
        self.bias = torch.nn.Parameter(torch.empty(num_features))
        self.domain_weight = torch.nn.Parameter(torch.empty(num_domains, num_features))
        self.domain_bias = torch.nn.Parameter(torch.empty(num_domains, num_features))
        self.register_buffer('running_mean', torch.zeros(num_domains, num_features))
        self.register_buffer('running_var', torch.ones(num_domains, num_features))
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        torch.nn.init.ones_(self.weight)
        torch.nn.init.zeros_(self.bias)
        torch.nn.init.ones_(self.domain_weight)
        torch.nn.init.zeros_(self.domain_bias)

    def forward(self, x: Tensor, domain: Tensor) -> Tensor:
        if domain.numel() and (int(domain.min()) < 0 or int(domain.max()) >= self.num_domains):
            raise ValueError(f'PartitionedNorm: domain must lie in [0, {self.num_domains})')
        out = torch.zeros_like(x)
        for k in torch.unique(domain).tolist():
            mask = domain == k
            xk = x[mask]
            if self.training:
                mean, var = xk.mean(0), xk.var(0, unbiased=False)
                with torch.no_grad():
                    n = xk.size(0)
                    self.running_mean[k].lerp_(mean.detach(), self.momentum)
                    if n > 1:
                        self.running_var[k].lerp_(var.detach() * n / (n - 1), self.momentum)
            else:
                mean, var = self.running_mean[k], self.running_var[k]
            y = (xk - mean) / torch.sqrt(var + self.eps)
            y = y * (self.weight * self.domain_weight[k]) + (self.bias + self.domain_bias[k])
            out = out.masked_scatter(mask.unsqueeze(-1), y)
        return out

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.num_features}, num_domains={self.num_domains})'
