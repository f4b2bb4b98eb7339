"""CLUB: a variational upper bound of mutual information (the reference's `CLUBSample_group`).

A network q(y|x) = N(mu(x), exp(logvar(x))) is fitted in its own inner steps on detached pairs;
the bound, positive-pair minus shuffled-pair log-likelihood, is then minimised by the encoders.
"""

from __future__ import annotations

import torch
from torch import nn


def _mlp(x_dim: int, y_dim: int, hidden: int, last: nn.Module | None = None) -> nn.Sequential:
    half = hidden // 2
    layers = [nn.Linear(x_dim, half), nn.ReLU(), nn.Linear(half, half), nn.ReLU(), nn.Linear(half, half), nn.ReLU(),
              nn.Linear(half, y_dim)]
    return nn.Sequential(*layers, *([last] if last is not None else []))


def mi_upper_bound(mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """mean_b(positive - negative) / 2 with the per-sample terms -sum_d mean_T (mu - y)^2 / exp(mean_T logvar).

    `mu`, `logvar`, `y` are (B, T, D); the negative pairs use y of sample `permutation[b]`.
    """
    variance = logvar.mean(dim=1).exp()
    positive = -((mu - y) ** 2).mean(dim=1) / variance
    negative = -((mu - y[permutation]) ** 2).mean(dim=1) / variance
    return (positive.sum(-1) - negative.sum(-1)).mean() / 2


class CLUBSampleGroup(nn.Module):
    """q(y|x) with the public parameter names `p_mu.*`, `p_logvar.*`."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int):
        super().__init__()
        self.p_mu = _mlp(x_dim, y_dim, hidden)
        self.p_logvar = _mlp(x_dim, y_dim, hidden, nn.Tanh())

    def loglikeli(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean over all steps of sum_d [-(mu - y)^2 / exp(logvar) - logvar] / 2."""
        mu, logvar = self.p_mu(x), self.p_logvar(x)
        return ((-(mu - y) ** 2 / logvar.exp() - logvar).sum(-1) / 2).mean()

    def mi_est(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        permutation = torch.randperm(x.shape[0], generator=generator, device="cpu")
        return mi_upper_bound(self.p_mu(x), self.p_logvar(x), y, permutation)


class Club:
    """A CLUB network with its own Adam, fitted for `iters` steps per training batch."""

    def __init__(self, net: CLUBSampleGroup, lr: float):
        self.net = net
        self.optimizer = torch.optim.Adam(net.parameters(), lr=lr)

    def fit(self, x: torch.Tensor, y: torch.Tensor, iters: int) -> float:
        """Maximise the log-likelihood of detached pairs; returns the last negative log-likelihood."""
        x, y = x.detach(), y.detach()
        loss = torch.zeros((), device=x.device)
        for _ in range(iters):
            loss = -self.net.loglikeli(x, y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())

    def estimate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The MI bound with gradients reaching the encoders through x and y, not the CLUB network."""
        for parameter in self.net.parameters():
            parameter.requires_grad_(False)
        try:
            return self.net.mi_est(x, y)
        finally:
            for parameter in self.net.parameters():
                parameter.requires_grad_(True)
