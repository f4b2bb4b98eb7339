"""The oracle: per-modality linear maps back to the planted latent, fitted on extra samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cmg_eval.io import save_checkpoint
from cmg_eval.data.synth.world import LATENT_DIM, VOCAB_SIZE, World, name_seed

FIT_CLIPS = 600
FIT_STEPS = 10
RIDGE = 1e-4


def _ridge(inputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares with a small ridge: (weight (in, out), bias (out,))."""
    mean_in, mean_out = inputs.mean(0), targets.mean(0)
    centred = inputs - mean_in
    gram = centred.T @ centred + RIDGE * len(inputs) * np.eye(inputs.shape[1])
    weight = np.linalg.solve(gram, centred.T @ (targets - mean_out))
    return weight, mean_out - mean_in @ weight


def fit_oracle(world: World) -> dict:
    """Oracle checkpoint dict: video is mean-pooled over the 7x7 grid before its map."""
    rng = np.random.default_rng(name_seed("oracle", world.seed))
    latents = world.random_latents(FIT_CLIPS, FIT_STEPS, rng)
    flat_latents = latents.reshape(-1, LATENT_DIM)
    pooled_video = np.concatenate([world.render_video(part, rng).mean(axis=(2, 3))
                                   for part in np.array_split(latents, 10)]).reshape(len(flat_latents), -1)
    audio = world.render_audio(latents, rng).reshape(len(flat_latents), -1)
    words = rng.integers(0, VOCAB_SIZE, latents.shape[:2])
    text = world.render_text(latents, words, rng).reshape(len(flat_latents), -1)
    maps = {}
    for modality, inputs in (("video", pooled_video), ("audio", audio), ("text", text)):
        weight, bias = _ridge(inputs.astype(np.float64), flat_latents)
        maps[modality] = {"weight": torch.from_numpy(weight).float(), "bias": torch.from_numpy(bias).float()}
    return {"method": "oracle", "maps": maps, "epoch": -1,
            "config": {"latent_dim": LATENT_DIM, "world_seed": world.seed, "video_pool": "mean"}}


def write_oracle(world: World, path: Path) -> None:
    save_checkpoint(fit_oracle(world), path)
