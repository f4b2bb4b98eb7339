"""Synthetic AVVP and AVE->AVVP in the release formats (docs/formats.md).

AVVP clips have separate audio and visual event streams: each event class is audible and visible,
audible only, or visible only, with its own timing per stream; each stream's latent is the sum of the
prototypes of its active classes (background where none is active). Classes shared with AVE take the
AVE class's prototype (through the `ave_avvp` label map), so a head trained on AVE transfers.
The AVE->AVVP part reads the AVE labels the `ave` writer wrote before it (writers run by name).
"""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np

from cmg_eval.constants import STEPS
from cmg_eval.data.annotations import read_label_map
from cmg_eval.data.h5 import write_h5
from cmg_eval.data.synth.ave import AVE_CLASSES
from cmg_eval.data.synth.world import BACKGROUND, World
from cmg_eval.data.zipfeat import write_feature_zip
from cmg_eval.metrics.localization import runs

AVVP_CLASSES = [
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying_(food)", "Basketball_bounce", "Fire_alarm", "Chainsaw",
    "Cello", "Banjo", "Singing", "Chicken_rooster", "Violin_fiddle", "Vacuum_cleaner", "Baby_laughter",
    "Accordion", "Lawn_mower", "Motorcycle", "Helicopter", "Acoustic_guitar", "Telephone_bell_ringing",
    "Baby_cry_infant_cry", "Blender", "Clapping",
]
# The LLP/AVVP segment-annotated eval set has 1849 clips (649 val + 1200 test).
COUNTS = {"tiny": 240, "small": 462, "full": 1849}
CHUNK = 64

ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
STREAMS = ("audio", "visual")
# Per class in a clip: heard and seen, heard only, seen only.
KINDS = ((True, True), (True, False), (False, True))
KIND_P = (0.6, 0.2, 0.2)
# Events stand out of the background more than in AVE: per-segment thresholds (unlike AVE's argmax) must
# survive the audio oracle's noise, so the oracle stays well above the task's floor on tiny data.
EVENT_SALIENCE = 1.5


def youtube_ids(n: int, rng: np.random.Generator) -> list[str]:
    """n distinct 11-character ids in the YouTube alphabet."""
    ids: dict[str, None] = {}
    while len(ids) < n:
        ids.setdefault("".join(rng.choice(ID_ALPHABET, 11)), None)
    return list(ids)


def _interval(rng: np.random.Generator) -> np.ndarray:
    """A (STEPS,) activity mask: one run of 2-10 segments, sometimes cut in two by a short gap."""
    length = int(rng.integers(2, STEPS + 1))
    onset = int(rng.integers(0, STEPS - length + 1))
    mask = np.zeros(STEPS, bool)
    mask[onset:onset + length] = True
    if length >= 5 and rng.random() < 0.2:
        gap = onset + int(rng.integers(2, length - 2))
        mask[gap:gap + int(rng.integers(1, 3))] = False
    return mask


def _jitter(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The other stream's view of a shared event: each boundary may move by one segment."""
    active = np.flatnonzero(mask)
    start = int(np.clip(active[0] + rng.integers(-1, 2) * (rng.random() < 0.3), 0, STEPS - 1))
    end = int(np.clip(active[-1] + 1 + rng.integers(-1, 2) * (rng.random() < 0.3), start + 1, STEPS))
    out = np.zeros(STEPS, bool)
    out[start:end] = True
    return out


def clip_events(n: int, rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """(n, streams, STEPS, classes) activity: 1-3 classes per clip (drawn by `weights`), each in one or both streams."""
    active = np.zeros((n, len(STREAMS), STEPS, len(AVVP_CLASSES)), bool)
    for clip in range(n):
        k = rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15])
        for cls in rng.choice(len(AVVP_CLASSES), k, replace=False, p=weights / weights.sum()):
            heard, seen = KINDS[rng.choice(len(KINDS), p=KIND_P)]
            mask = _interval(rng)
            if heard:
                active[clip, 0, :, cls] = mask
            if seen:
                active[clip, 1, :, cls] = _jitter(mask, rng) if heard else mask
    return active


def segment_labels(active: np.ndarray) -> np.ndarray:
    """(..., STEPS, classes) activity -> (..., STEPS, classes + 1) float labels, background last."""
    return np.concatenate([active, ~active.any(-1, keepdims=True)], axis=-1).astype(np.float32)


def write_event_csv(path: Path, names: list[str], active: np.ndarray, classes: list[str]) -> int:
    """The tab-separated combined format: one row per clip with at least one event, parallel lists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["filename", "onset", "offset", "event_labels"])
        for name, clip in zip(names, active):
            events = [(start, end, classes[c]) for c in range(len(classes))
                      for start, end in runs(clip[:, c])]
            if events:
                writer.writerow([name, *(",".join(str(e[i]) for e in events) for i in range(3))])
                rows += 1
    return rows


def _stream_latents(world: World, active: np.ndarray, prototypes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, STEPS, classes) activity -> latents: salience x the sum of active prototypes, background where none."""
    centres = EVENT_SALIENCE * (active.astype(np.float64) @ prototypes)
    centres[~active.any(-1)] = world.prototype(BACKGROUND)
    return world.segment_latents(centres, rng)


def _audio_steps(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Most clips keep 10 VGGish rows; some have 9 or 11, as real extractions do (readers pad or cut)."""
    extra = rng.choice([-1, 0, 1], p=[0.1, 0.8, 0.1])
    if extra < 0:
        return audio[:-1]
    if extra > 0:
        return np.concatenate([audio, audio[-1:] + 0.05 * rng.standard_normal(audio[-1:].shape)]).astype(audio.dtype)
    return audio


def write_features(root: Path, world: World, ids: list[str], active: np.ndarray, prototypes: np.ndarray,
                   rng: np.random.Generator) -> None:
    """`AVVP/feature/{audio,video}/zip/<id>.zip`; video stored as float16 to halve the disk cost."""
    folders = {m: root / "AVVP" / "feature" / m / "zip" for m in ("audio", "video")}
    for start in range(0, len(ids), CHUNK):
        part = slice(start, start + CHUNK)
        audio = world.render_audio(_stream_latents(world, active[part, 0], prototypes, rng), rng)
        video = world.render_video(_stream_latents(world, active[part, 1], prototypes, rng), rng, np.float16)
        for clip_id, clip_audio, clip_video in zip(ids[part], audio, video):
            write_feature_zip(folders["audio"] / f"{clip_id}.zip", _audio_steps(clip_audio, rng))
            write_feature_zip(folders["video"] / f"{clip_id}.zip", clip_video)


def write_ave_avvp(root: Path, names: list[str], active: np.ndarray) -> dict:
    """`AVE_AVVP/`: 12-class labels of every AVE clip (clips of the other 16 AVE classes are all background),
    the order (every AVE clip), and per stream the AVVP clips whose events there are all of shared classes."""
    label_map = read_label_map("ave_avvp")
    ave_names = [a for a, _ in label_map.pairs]
    shared = [AVVP_CLASSES.index(b) for _, b in label_map.pairs]
    folder = root / "AVE_AVVP"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "AVE_AVVP_Categories.txt").write_text("".join(f"{b}\n" for _, b in label_map.pairs))
    with h5py.File(root / "AVE-ECCV18-master" / "data" / "labels.h5", "r") as handle:
        ave_labels = handle["avadataset"][()]
    ave_class = ave_labels[:, :, :len(AVE_CLASSES)].max(1).argmax(1)
    column = {AVE_CLASSES.index(a): j for j, a in enumerate(ave_names)}
    events = ave_labels[:, :, :len(AVE_CLASSES)].max(-1) > 0
    mapped = np.zeros((len(ave_labels), STEPS, len(shared)), bool)
    for clip in np.flatnonzero(np.isin(ave_class, list(column))):
        mapped[clip, :, column[int(ave_class[clip])]] = events[clip]
    write_h5(folder / "ave_avvp_labels.h5", "avadataset", segment_labels(mapped).astype(np.float64))
    write_h5(folder / "ave_avvp_order.h5", "order", np.arange(len(ave_labels), dtype=np.int64))
    unshared = np.setdiff1d(np.arange(len(AVVP_CLASSES)), shared)
    rows = {}
    for s, stream in enumerate(STREAMS):
        # a clip whose stream has an event outside the label space would carry it as "background": left out
        clean = ~active[:, s][..., unshared].any((1, 2))
        rows[stream] = write_event_csv(folder / f"AVE_AVVP_eval_{stream}_checked_combined.csv",
                                       [n for n, keep in zip(names, clean) if keep], active[clean, s][..., shared],
                                       [b for _, b in label_map.pairs])
    return {"ave_clips": len(ave_labels), **{f"{s}_rows": n for s, n in rows.items()}}


def write(root: Path, world: World, size: str, rng: np.random.Generator, count: int | None = None) -> dict:
    """The AVVP release files and the AVE->AVVP files; `count` overrides the size's clip count."""
    n = count or COUNTS[size]
    ids = youtube_ids(n, rng)
    names = [f"{clip_id}_{s}_{s + STEPS}" for clip_id, s in zip(ids, 10 * rng.integers(0, 30, n))]
    canonical = {b: a for a, b in read_label_map("ave_avvp").pairs}
    # classes AVE also has are drawn twice as often, so AVE->AVVP has test clips at every size
    active = clip_events(n, rng, np.array([2.0 if name in canonical else 1.0 for name in AVVP_CLASSES]))
    prototypes = world.prototypes([canonical.get(name, name) for name in AVVP_CLASSES])
    data = root / "AVVP" / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "AVVP_Categories.txt").write_text("".join(f"{name}\n" for name in AVVP_CLASSES))
    rows = {stream: write_event_csv(data / f"AVVP_eval_{stream}_checked_combined.csv", names, active[:, s],
                                    AVVP_CLASSES) for s, stream in enumerate(STREAMS)}
    write_features(root, world, ids, active, prototypes, rng)
    return {"clips": n, **{f"{s}_rows": r for s, r in rows.items()}, "ave_avvp": write_ave_avvp(root, names, active)}
