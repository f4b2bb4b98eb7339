"""A third-party encoder written against docs/encoders.md only: no cmg_eval import, no base class.

`load(path)` reads a torch file {"video": (512, D), "audio": (128, D)} (the `user_weights` fixture) and returns
an object with exactly the required parts of the contract: `modalities`, `readouts`, `output_dim`, `encode`.
"""

import torch


class PlainProjection:
    modalities = ("video", "audio")
    readouts = ("proj", "half")          # no default_readout: the first one is the default

    def __init__(self, weights):
        self.helper = Weights(weights)  # tensors one level down, so moving to a device must find them

    def output_dim(self, readout):
        width = self.helper.by_modality["audio"].shape[1]
        return width if readout == "proj" else width // 2

    def encode(self, modality, feats, readout):
        feats = feats.float()
        if modality == "video":
            feats = feats.mean(dim=(2, 3))
        out = feats @ self.helper.by_modality[modality]
        return out if readout == "proj" else out[..., : out.shape[-1] // 2].contiguous()


class Weights:
    def __init__(self, weights):
        self.by_modality = {m: weights[m].float() for m in ("video", "audio")}


class NoEncode:
    modalities = ("audio",)
    readouts = ("proj",)

    def output_dim(self, readout):
        return 4


class CodesWithoutLookup(PlainProjection):
    code_readout = "proj"

    def encode_indices(self, modality, feats):
        return torch.zeros(feats.shape[:2] + (1,), dtype=torch.long)


def load(path):
    return PlainProjection(torch.load(path, map_location="cpu", weights_only=True))


def no_encode(path):
    return NoEncode()


def codes_without_lookup(path):
    return CodesWithoutLookup(torch.load(path, map_location="cpu", weights_only=True))
