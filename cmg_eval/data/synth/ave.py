"""Synthetic AVE in the AVE-ECCV18 release format (h5 key `avadataset`, orders under `order`)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from cmg_eval.constants import STEPS
from cmg_eval.data.h5 import write_h5
from cmg_eval.data.synth.world import BACKGROUND, World

AVE_CLASSES = [
    "Church bell", "Male speech", "Bark", "Fixed-wing aircraft", "Race car", "Female speech",
    "Helicopter", "Violin/fiddle", "Flute", "Ukulele", "Frying (food)", "Truck", "Shofar",
    "Motorcycle", "Acoustic guitar", "Train horn", "Clock", "Banjo", "Goat", "Baby cry", "Bus",
    "Chainsaw", "Cat", "Horse", "Toilet flush", "Rodents (rats, mice)", "Accordion", "Mandolin",
]
# tiny keeps enough training clips (10 batches of 80) for the reference head defaults to converge.
SPLIT_COUNTS = {"tiny": (800, 50, 50), "small": (835, 100, 101), "full": (3339, 402, 402)}
CHUNK = 128


def clip_layout(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Balanced class per clip and a contiguous event of 3-10 segments."""
    classes = rng.permutation(np.arange(n) % len(AVE_CLASSES))
    onset = rng.integers(0, STEPS - 2, n)
    length = rng.integers(3, STEPS + 1, n)
    steps = np.arange(STEPS)
    events = (steps >= onset[:, None]) & (steps < np.minimum(onset + length, STEPS)[:, None])
    return classes, events


def write(root: Path, world: World, size: str, rng: np.random.Generator, dtype=np.float32,
          counts: tuple[int, int, int] | None = None) -> dict:
    """The AVE release files; `counts` (train, val, test) overrides the size's split counts."""
    counts = counts or SPLIT_COUNTS[size]
    data = root / "AVE-ECCV18-master" / "data"
    data.mkdir(parents=True, exist_ok=True)
    n = sum(counts)
    classes, events = clip_layout(n, rng)
    labels = np.zeros((n, STEPS, len(AVE_CLASSES) + 1))
    labels[events, np.broadcast_to(classes[:, None], events.shape)[events]] = 1
    labels[~events, len(AVE_CLASSES)] = 1
    centres = np.where(events[..., None], world.prototypes(AVE_CLASSES)[classes][:, None, :], world.prototype(BACKGROUND))
    latents = world.segment_latents(centres, rng)
    with h5py.File(data / "visual_feature.h5", "w") as video, h5py.File(data / "audio_feature.h5", "w") as audio:
        video_set = video.create_dataset("avadataset", (n, STEPS, 7, 7, 512), dtype=dtype)
        audio_set = audio.create_dataset("avadataset", (n, STEPS, 128), dtype=dtype)
        for start in range(0, n, CHUNK):
            part = latents[start:start + CHUNK]
            video_set[start:start + len(part)] = world.render_video(part, rng, dtype)
            audio_set[start:start + len(part)] = world.render_audio(part, rng, dtype)
    write_h5(data / "labels.h5", "avadataset", labels)
    order = rng.permutation(n)
    bounds = np.cumsum((0, *counts))
    for split, lo, hi in zip(("train", "val", "test"), bounds[:-1], bounds[1:]):
        write_h5(data / f"{split}_order.h5", "order", np.sort(order[lo:hi]).astype(np.int64))
    return {"clips": n, "train": counts[0], "val": counts[1], "test": counts[2]}
