"""Cross-modal CPC (the reference's `Cross_CPC_AVT`): maximise MI between modalities' general features.

Each modality has its own unidirectional LSTM context; from one modality's context at step t a
linear predictor scores the next step of every modality against the batch (InfoNCE).
"""

from __future__ import annotations

import torch
from torch import nn

CROSS_WEIGHT = 1.0
SELF_WEIGHT = 0.1


def info_nce(targets: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of log p(right item) with scores targets @ predictions^T, softmax over predictions."""
    return torch.log_softmax(targets @ predictions.T, dim=1).diagonal().sum()


class CrossCPC(nn.Module):
    """Parameter names as the public `CPC_parameters`: `{m}_ar_lstm.*`, `{m}_predictors.0.*`."""

    def __init__(self, modalities: tuple[str, ...], dim: int, context: int, n_layers: int = 2,
                 prediction_steps: int = 1, min_start: int = 1):
        super().__init__()
        self.modalities = modalities
        self.prediction_steps, self.min_start = prediction_steps, min_start
        for modality in modalities:
            self.add_module(f"{modality}_ar_lstm", nn.LSTM(dim, context, num_layers=n_layers, batch_first=True))
            self.add_module(f"{modality}_predictors",
                            nn.ModuleList(nn.Linear(context, dim) for _ in range(prediction_steps)))

    def forward(self, features: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        """InfoNCE loss (to minimise) for a random context step t in [min_start, T - 1 - prediction_steps]."""
        steps = next(iter(features.values())).shape[1]
        batch = next(iter(features.values())).shape[0]
        t = int(torch.randint(self.min_start, steps - self.prediction_steps, (1,), generator=generator, device="cpu"))
        contexts = {m: getattr(self, f"{m}_ar_lstm")(features[m][:, :t + 1])[0][:, t] for m in self.modalities}
        total = torch.zeros((), device=contexts[self.modalities[0]].device)
        for k in range(self.prediction_steps):
            predictions = {m: getattr(self, f"{m}_predictors")[k](contexts[m]) for m in self.modalities}
            for target in self.modalities:
                for source in self.modalities:
                    weight = SELF_WEIGHT if source == target else CROSS_WEIGHT
                    total = total + weight * info_nce(features[target][:, t + 1 + k], predictions[source])
        return total / (-batch * self.prediction_steps)
