"""User encoders given as `--encoder user_models:FACTORY` (the factory receives the checkpoint path)."""

from __future__ import annotations

import torch

from cmg_eval.encoders.base import UnifiedEncoder


class ProjectionEncoder(UnifiedEncoder):
    """A user model: video pooled over its grid, each modality projected by a fixed matrix."""

    name = "projection"
    modalities = ("video", "audio")
    readouts = ("default",)

    def __init__(self, weights: dict[str, torch.Tensor]):
        self.weights = weights
        self.counter = torch.zeros(1)

    def output_dim(self, readout=None) -> int:
        return self.weights["audio"].shape[1]

    def encode(self, modality, feats, readout=None):
        feats = torch.as_tensor(feats).float()
        if modality == "video":
            feats = feats.mean(dim=(2, 3))
        return feats @ self.weights[modality]


class BufferMutatingEncoder(ProjectionEncoder):
    def encode(self, modality, feats, readout=None):
        self.counter += 1  # a side effect the contract forbids
        return super().encode(modality, feats, readout)


class WrongShapeEncoder(ProjectionEncoder):
    def encode(self, modality, feats, readout=None):
        return super().encode(modality, feats, readout)[:, :1]  # drops the time axis


def _weights(path: str) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def projection(path: str) -> ProjectionEncoder:
    return ProjectionEncoder(_weights(path))


def buffer_mutating(path: str) -> BufferMutatingEncoder:
    return BufferMutatingEncoder(_weights(path))


def wrong_shape(path: str) -> WrongShapeEncoder:
    return WrongShapeEncoder(_weights(path))


class NonFiniteEncoder(ProjectionEncoder):
    def encode(self, modality, feats, readout=None):
        out = super().encode(modality, feats, readout)
        out[0, 0, 0] = float("nan")
        return out


def non_finite(path: str) -> NonFiniteEncoder:
    return NonFiniteEncoder(_weights(path))
