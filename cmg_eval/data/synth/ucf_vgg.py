"""Synthetic UCF101 (video) and VGGSound-AVEL40k (audio) for UCF<->VGG (docs/formats.md).

The 16 index-aligned class pairs come from the `ucf_vgg` label map; both names of a pair share the
UCF name's prototype, so a head trained on one dataset transfers to the other. Clips have a varying
number of one-second steps (readers pad by repeating the last step or truncate to 10).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cmg_eval.data.annotations import read_label_map
from cmg_eval.data.synth.avvp import youtube_ids
from cmg_eval.data.synth.world import World
from cmg_eval.data.zipfeat import write_feature_zip

# Full: UCF101's clips of the 16 classes; VGGSound-AVEL40k's, estimated from the committed OSCMG
# subsets (~317 clips per class).
COUNTS = {"tiny": (320, 480), "small": (554, 1268), "full": (2214, 5072)}
LISTS = "feature_extractor/feature_extractor"
UCF_STEPS = (5, 12)        # UCF clips last a few seconds: 5..12 one-second steps
VGG_STEPS = (8, 12)        # VGGSound clips are 10 s; a few extractions are shorter or longer
CHUNK = 64


def balanced_classes(n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Class per clip, as even as n allows, grouped by class like the release CSVs."""
    return np.sort(rng.permutation(np.arange(n) % n_classes))


def ucf_ids(classes: np.ndarray, names: list[str], rng: np.random.Generator) -> list[str]:
    """`v_<Class>_g<group>_c<clip>` ids, distinct within each class (25 groups x 7 clips)."""
    ids = []
    for cls in range(len(names)):
        count = int(np.sum(classes == cls))
        for code in np.sort(rng.choice(25 * 7, count, replace=False)):
            ids.append(f"v_{names[cls]}_g{code // 7 + 1:02d}_c{code % 7 + 1:02d}")
    return ids


def write_features(folder: Path, world: World, ids: list[str], centres: np.ndarray, modality: str,
                   steps: tuple[int, int], rng: np.random.Generator) -> None:
    """One zip per clip of `steps[0]..steps[1]` rendered steps; video stored as float16 (disk)."""
    lengths = rng.integers(steps[0], steps[1] + 1, len(ids)) if modality == "video" else \
        np.where(rng.random(len(ids)) < 0.8, 10, rng.integers(steps[0], steps[1] + 1, len(ids)))
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        for start in range(0, len(members), CHUNK):
            part = members[start:start + CHUNK]
            latents = world.segment_latents(np.repeat(centres[part][:, None], length, axis=1), rng)
            arrays = world.render_video(latents, rng, np.float16) if modality == "video" \
                else world.render_audio(latents, rng)
            for row, array in zip(part, arrays):
                write_feature_zip(folder / f"{ids[row]}.zip", array)


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write(root: Path, world: World, size: str, rng: np.random.Generator,
          counts: tuple[int, int] | None = None) -> dict:
    """Class lists, `ucf2vggsound.csv`, `vggsound2ucf.csv` and both feature folders."""
    n_ucf, n_vgg = counts or COUNTS[size]
    pairs = read_label_map("ucf_vgg").pairs
    ucf_names, vgg_names = [a for a, _ in pairs], [b for _, b in pairs]
    lists = root / LISTS
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "UCF101sameVGGSound.txt").write_text("".join(f"{name}\n" for name in ucf_names))
    (lists / "VGGSoundsameUCF101.txt").write_text("".join(f"{name}\n" for name in vgg_names))
    prototypes = world.prototypes(ucf_names)

    ucf_classes = balanced_classes(n_ucf, len(pairs), rng)
    ucf = ucf_ids(ucf_classes, ucf_names, rng)
    write_csv(lists / "ucf2vggsound.csv", ["category", "video_id"],
              [[ucf_names[c], clip] for c, clip in zip(ucf_classes, ucf)])
    write_features(root / "UCF101" / "feature" / "video" / "zip", world, ucf, prototypes[ucf_classes], "video",
                   UCF_STEPS, rng)

    vgg_classes = balanced_classes(n_vgg, len(pairs), rng)
    vgg = youtube_ids(n_vgg, rng)
    splits = rng.choice(["train", "val", "test"], n_vgg, p=[0.7, 0.1, 0.2])
    write_csv(lists / "vggsound2ucf.csv", ["category", "video_id", "split"],
              [[vgg_names[c], clip, split] for c, clip, split in zip(vgg_classes, vgg, splits)])
    write_features(root / "vggsound40k" / "feature" / "audio" / "zip", world, vgg, prototypes[vgg_classes], "audio",
                   VGG_STEPS, rng)
    return {"ucf_clips": n_ucf, "vggsound_clips": n_vgg, "classes": len(pairs)}
