"""A release folder for the four head tasks written directly with h5py, csv, zipfile and pickle the way the
reference's dataloaders read it, never through cmg-eval's synthetic writer, and with other legal choices
than that writer makes:

- h5: per-clip chunks compressed with lzf (video) or gzip with the shuffle filter, float16 video, float32
  labels, an extra dataset beside `avadataset`, int32 split orders in no particular order;
- text: CRLF line ends, a trailing blank line in class lists, extra CSV columns, quoted class names with
  commas ("playing violin, fiddle"), the reference's own "typing on typewriter" and a 12-class AVE->AVVP
  list naming "Speech";
- clip ids with `-` and `_`; zero-length AVVP events (onset == offset);
- feature zips pickled with protocols 2 to 5 in float16, float32 or float64, deflated or stored, the
  pickle in a subfolder of the zip, audio and UCF video of 7 or 13 steps (padded or cut to 10).

Features are planted: every class is a sum of "atoms" (orthonormal directions of the feature space), a
segment's feature is the sum of its active classes' atoms (the background atom when none) plus small
noise, so projecting onto the atoms (`probe_weights`) gives embeddings that separate every class.
"""

from __future__ import annotations

import csv
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

STEPS = 10
VIDEO_DIM, AUDIO_DIM, GRID = 512, 128, (7, 7)
NOISE = 0.1

AVE_CLASSES = ["Church bell", "Male speech", "Bark", "Fixed-wing aircraft", "Race car", "Female speech", "Helicopter",
               "Violin/fiddle", "Flute", "Ukulele", "Frying (food)", "Truck", "Shofar", "Motorcycle", "Acoustic guitar",
               "Train horn", "Clock", "Banjo", "Goat", "Baby cry", "Bus", "Chainsaw", "Cat", "Horse", "Toilet flush",
               "Rodents (rats, mice)", "Accordion", "Mandolin"]
AVVP_CLASSES = ["Speech", "Car", "Cheering", "Dog", "Cat", "Frying_(food)", "Basketball_bounce", "Fire_alarm",
                "Chainsaw", "Cello", "Banjo", "Singing", "Chicken_rooster", "Violin_fiddle", "Vacuum_cleaner",
                "Baby_laughter", "Accordion", "Lawn_mower", "Motorcycle", "Helicopter", "Acoustic_guitar",
                "Telephone_bell_ringing", "Baby_cry_infant_cry", "Blender", "Clapping"]
# The AVE->AVVP list is paired by position with the label file's columns; it names Speech (AVE's male and
# female speech) and leaves out the baby cry that cmg-eval's built-in map has.
AVE_AVVP_CLASSES = ["Speech", "Car", "Dog", "Cat", "Frying_(food)", "Chainsaw", "Banjo", "Violin_fiddle",
                    "Accordion", "Motorcycle", "Helicopter", "Acoustic_guitar"]
UCF_VGG_PAIRS = [("PlayingGuitar", "playing acoustic guitar"), ("PlayingCello", "playing cello"), ("Skiing", "skiing"),
                 ("TableTennisShot", "playing table tennis"), ("Typing", "typing on typewriter"),
                 ("JumpRope", "rope skipping"), ("FrisbeeCatch", "playing frisbee"), ("PlayingFlute", "playing flute"),
                 ("PlayingPiano", "playing piano"), ("Basketball", "basketball bounce"),
                 ("PlayingSitar", "playing sitar"),
                 ("PlayingViolin", "playing violin, fiddle"), ("PlayingTabla", "playing tabla"),
                 ("Drumming", "playing drum kit"), ("BlowDryHair", "hair dryer drying"), ("Bowling", "bowling impact")]
# AVVP name -> AVE name of the same sound (one atom); AVE's speech classes are speech plus a speaker atom.
SHARED = {"Car": "Race car", "Dog": "Bark", "Cat": "Cat", "Frying_(food)": "Frying (food)", "Chainsaw": "Chainsaw",
          "Banjo": "Banjo", "Violin_fiddle": "Violin/fiddle", "Accordion": "Accordion", "Motorcycle": "Motorcycle",
          "Helicopter": "Helicopter", "Acoustic_guitar": "Acoustic guitar", "Baby_cry_infant_cry": "Baby cry"}
SIZES = {  # AVE (train, val, test), AVVP clips, (UCF clips, VGGSound clips)
    "tiny": ((800, 50, 50), 240, (320, 480)),  # the clip counts of `cmg-eval data synth --size tiny`
    "small": ((56, 22, 22), 100, (100, 100)),
}
ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


def atoms_of(name: str) -> list[str]:
    """The atoms a class name's sound is made of."""
    if name in ("Male speech", "Female speech"):
        return ["Speech", name]
    ave = {v: k for k, v in SHARED.items()}
    return [ave.get(name, name)]


def atom_names() -> list[str]:
    names = [a for c in AVE_CLASSES + AVVP_CLASSES for a in atoms_of(c)]
    names += [u for u, _ in UCF_VGG_PAIRS] + ["background"]
    return list(dict.fromkeys(names))


@dataclass
class Atoms:
    """Orthonormal atom directions per modality (feature dim x atoms)."""

    names: list[str]
    video: np.ndarray
    audio: np.ndarray

    @classmethod
    def make(cls, seed: int = 0) -> "Atoms":
        rng = np.random.default_rng(seed)
        names = atom_names()
        basis = {dim: np.linalg.qr(rng.normal(size=(dim, len(names))))[0] for dim in (VIDEO_DIM, AUDIO_DIM)}
        return cls(names, basis[VIDEO_DIM], basis[AUDIO_DIM])

    def coefficients(self, active: list[list[list[str]]]) -> np.ndarray:
        """(clips, steps, atoms): 1 for each atom of each active class of a segment, background if none."""
        out = np.zeros((len(active), STEPS, len(self.names)))
        index = {n: i for i, n in enumerate(self.names)}
        for clip, steps in enumerate(active):
            for step, classes in enumerate(steps):
                for atom in [a for c in classes for a in atoms_of(c)] or ["background"]:
                    out[clip, step, index[atom]] = 1.0
        return out

    def features(self, coefficients: np.ndarray, modality: str, rng: np.random.Generator) -> np.ndarray:
        """(clips, steps, dim) planted features (the video grid is added by the writers)."""
        basis = self.video if modality == "video" else self.audio
        return coefficients @ basis.T + NOISE * rng.normal(size=(*coefficients.shape[:2], basis.shape[0]))


def probe_weights(path: Path, atoms: Atoms) -> Path:
    """Weights of `tests/user_models.py:projection`: the probe encoder that projects onto the atoms."""
    torch.save({"video": torch.tensor(atoms.video, dtype=torch.float32),
                "audio": torch.tensor(atoms.audio, dtype=torch.float32)}, path)
    return path


# ------------------------------------------------------------------------------------------ file writers


def write_lines(path: Path, lines: list[str]) -> None:
    """A class list with CRLF line ends and a trailing blank line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{line}\r\n" for line in lines + [""]).encode())


def write_table(path: Path, header: list[str], rows: list[list], delimiter: str = ",",
                quoting: int = csv.QUOTE_NONNUMERIC) -> None:
    """A CSV with CRLF line ends (by default every text field quoted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\r\n", quoting=quoting)
        writer.writerow(header)
        writer.writerows(rows)


def write_zip(path: Path, array: np.ndarray, k: int, grid: bool = False) -> None:
    """One pickled array (`grid`: a video's per-step vectors, spread over the 7 x 7 grid); protocol, dtype (video:
    no float64, for speed), compression and member path vary with k."""
    array = np.asarray(array, dtype=(np.float16, np.float32, np.float64)[k % (2 if grid else 3)])
    payload = pickle.dumps(on_grid(array) if grid else array, protocol=2 + k % 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=(zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED)[k % 2]) as archive:
        archive.writestr(f"{path.stem}/{path.stem}.pkl" if k % 5 == 0 else f"{path.stem}.pkl", payload)


def on_grid(vectors: np.ndarray) -> np.ndarray:
    """(..., 512) -> (..., 7, 7, 512): the same vector at every grid cell."""
    return np.broadcast_to(vectors[..., None, None, :], (*vectors.shape[:-1], *GRID, vectors.shape[-1]))


def stored_steps(k: int) -> int:
    """Steps of the k-th clip's audio (or UCF video) file: 7 (the reader pads with the last step), 13 (cut to 10)
    or 10."""
    return (7, 13, STEPS)[k % 3]


def resample(array: np.ndarray, k: int) -> np.ndarray:
    steps = stored_steps(k)
    return array[:steps] if steps <= STEPS else np.concatenate([array, np.repeat(array[-1:], steps - STEPS, 0)])


def youtube_ids(n: int, rng: np.random.Generator) -> list[str]:
    """Distinct 11-character ids, many with `-` and `_`."""
    ids: dict[str, None] = {}
    while len(ids) < n:
        chars = rng.choice(ID_ALPHABET, 11)
        chars[rng.integers(0, 11)] = "-_"[len(ids) % 2]
        ids.setdefault("".join(chars), None)
    return list(ids)


# ------------------------------------------------------------------------------------------ datasets


def write_ave(root: Path, atoms: Atoms, counts: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """AVE-ECCV18-master/data; returns each clip's class."""
    data = root / "AVE-ECCV18-master" / "data"
    data.mkdir(parents=True, exist_ok=True)
    n = sum(counts)
    order = rng.permutation(n).astype(np.int32)
    splits = np.split(order, np.cumsum(counts)[:-1])
    classes = np.zeros(n, np.int64)
    for part in splits:  # every split as balanced over the classes as its size allows
        classes[part] = rng.permutation(np.arange(len(part)) % len(AVE_CLASSES))
    onsets, lengths = rng.integers(0, 5, n), rng.integers(3, 11, n)
    events = (np.arange(STEPS) >= onsets[:, None]) & (np.arange(STEPS) < (onsets + lengths)[:, None])
    labels = np.zeros((n, STEPS, len(AVE_CLASSES) + 1), np.float32)
    labels[..., -1] = ~events
    labels[np.nonzero(events)[0], np.nonzero(events)[1], classes[np.nonzero(events)[0]]] = 1
    active = [[[AVE_CLASSES[c]] if e else [] for e in row] for c, row in zip(classes, events)]
    coefficients = atoms.coefficients(active)
    options = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    with h5py.File(data / "visual_feature.h5", "w") as video, h5py.File(data / "audio_feature.h5", "w") as audio:
        video_set = video.create_dataset("avadataset", (n, STEPS, *GRID, VIDEO_DIM), np.float16,
                                         chunks=(1, STEPS, *GRID, VIDEO_DIM), compression="lzf")
        audio_set = audio.create_dataset("avadataset", (n, STEPS, AUDIO_DIM), np.float32, chunks=(16, STEPS, AUDIO_DIM),
                                         **options)
        for start in range(0, n, 100):
            part = coefficients[start:start + 100]
            video_set[start:start + len(part)] = on_grid(atoms.features(part, "video", rng).astype(np.float16))
            audio_set[start:start + len(part)] = atoms.features(part, "audio", rng).astype(np.float32)
    with h5py.File(data / "labels.h5", "w") as handle:
        handle.create_dataset("avadataset", data=labels, chunks=(64, STEPS, len(AVE_CLASSES) + 1), **options)
        handle.create_dataset("notes", data=np.arange(3))
    for split, part in zip(("train", "val", "test"), splits):
        with h5py.File(data / f"{split}_order.h5", "w") as handle:
            handle.create_dataset("order", data=part)
    return classes


def avvp_events(n: int, rng: np.random.Generator) -> np.ndarray:
    """(clips, streams (audio, visual), steps, classes) activity: two classes heard and seen per clip, dealt so
    that every class has clips in both streams even in a small folder, and sometimes a third, heard or seen."""
    active = np.zeros((n, 2, STEPS, len(AVVP_CLASSES)), bool)
    for clip in range(n):
        first = clip % len(AVVP_CLASSES)
        dealt = {first, (first + 1 + clip // len(AVVP_CLASSES) % (len(AVVP_CLASSES) - 1)) % len(AVVP_CLASSES)}
        extra = {int(rng.integers(len(AVVP_CLASSES)))} if rng.random() < 0.4 else set()
        for cls in dealt | extra:
            onset = rng.integers(0, STEPS - 1)
            span = slice(onset, rng.integers(onset + 1, STEPS + 1))
            for stream in ((0, 1) if cls in dealt else (int(rng.integers(2)),)):
                active[clip, stream, span, cls] = True
    return active


def event_rows(names: list[str], active: np.ndarray, classes: list[str], zero_length: bool) -> list[list]:
    """Tab-separated combined rows (parallel comma lists); every 4th clip also gets a zero-length event."""
    rows = []
    for k, (name, clip) in enumerate(zip(names, active)):
        events = []
        for c, cls in enumerate(classes):
            edges = np.diff(np.concatenate([[0], clip[:, c].astype(int), [0]]))
            events += [(on, off, cls) for on, off in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]
        if not events:
            continue
        if zero_length and k % 4 == 0:
            events.append((5, 5, classes[k % len(classes)]))
        rows.append([name, *(",".join(str(e[i]) for e in events) for i in range(3)), f"clip {k}"])
    return rows


def write_avvp(root: Path, atoms: Atoms, n: int, rng: np.random.Generator, zero_length: bool) -> None:
    """AVVP/ (25 classes) and the AVE_AVVP test CSVs, features of every clip."""
    ids = youtube_ids(n, rng)
    names = [f"{clip_id}_{s}_{s + STEPS}" for clip_id, s in zip(ids, 10 * rng.integers(0, 30, n))]
    active = avvp_events(n, rng)
    for k in range(n):  # a clip whose audio file is short is heard as its last stored step until the end
        active[k, 0, stored_steps(k):] = active[k, 0, min(stored_steps(k), STEPS) - 1]
    data = root / "AVVP" / "data"
    write_lines(data / "AVVP_Categories.txt", AVVP_CLASSES)
    header = ["filename", "onset", "offset", "event_labels", "comment"]
    for s, stream in enumerate(("audio", "visual")):
        write_table(data / f"AVVP_eval_{stream}_checked_combined.csv", header,
                    event_rows(names, active[:, s], AVVP_CLASSES, zero_length), "\t", csv.QUOTE_MINIMAL)
        listed = [AVVP_CLASSES.index(c) for c in AVE_AVVP_CLASSES]
        clean = ~np.delete(active[:, s], listed, axis=-1).any((1, 2))
        write_table(root / "AVE_AVVP" / f"AVE_AVVP_eval_{stream}_checked_combined.csv", header,
                    event_rows([m for m, keep in zip(names, clean) if keep], active[clean, s][..., listed],
                               AVE_AVVP_CLASSES, zero_length), "\t", csv.QUOTE_MINIMAL)
    for s, modality in enumerate(("audio", "video")):
        stream = [[[AVVP_CLASSES[c] for c in np.flatnonzero(step)] for step in clip] for clip in active[:, s]]
        features = atoms.features(atoms.coefficients(stream), modality, rng)
        for k, (clip_id, array) in enumerate(zip(ids, features)):
            write_zip(root / "AVVP" / "feature" / modality / "zip" / f"{clip_id}.zip",
                      resample(array, k) if modality == "audio" else array, k, grid=modality == "video")


def write_ave_avvp(root: Path, ave_classes: np.ndarray, rng: np.random.Generator) -> None:
    """AVE_AVVP/: the positional class list, 12-class labels of the AVE clips, an unsorted int32 order."""
    folder = root / "AVE_AVVP"
    write_lines(folder / "AVE_AVVP_Categories.txt", AVE_AVVP_CLASSES)
    with h5py.File(root / "AVE-ECCV18-master" / "data" / "labels.h5", "r") as handle:
        ave_labels = handle["avadataset"][()]
    events = ave_labels[..., :-1].max(-1) > 0
    labels = np.zeros((len(ave_labels), STEPS, len(AVE_AVVP_CLASSES) + 1), np.float32)
    for clip, cls in enumerate(ave_classes):
        shared = [j for j, name in enumerate(AVE_AVVP_CLASSES) if name in atoms_of(AVE_CLASSES[cls])]
        if shared:
            labels[clip, events[clip], shared[0]] = 1
    labels[..., -1] = labels[..., :-1].max(-1) == 0
    with h5py.File(folder / "ave_avvp_labels.h5", "w") as handle:
        handle.create_dataset("avadataset", data=labels, compression="gzip")
    with h5py.File(folder / "ave_avvp_order.h5", "w") as handle:
        handle.create_dataset("order", data=rng.permutation(len(ave_labels)).astype(np.int32))


def write_ucf_vgg(root: Path, atoms: Atoms, counts: tuple[int, int], rng: np.random.Generator) -> None:
    """feature_extractor/feature_extractor/ lists and CSVs, UCF101 video and VGGSound audio zips."""
    lists = root / "feature_extractor" / "feature_extractor"
    write_lines(lists / "UCF101sameVGGSound.txt", [u for u, _ in UCF_VGG_PAIRS])
    write_lines(lists / "VGGSoundsameUCF101.txt", [v for _, v in UCF_VGG_PAIRS])
    for side, (n, modality) in enumerate(zip(counts, ("video", "audio"))):
        classes = np.sort(rng.permutation(np.arange(n) % len(UCF_VGG_PAIRS)))
        if side == 0:
            ids = [f"v_{UCF_VGG_PAIRS[c][0]}_g{k // 7 % 25 + 1:02d}_c{k % 7 + 1:02d}" for k, c in enumerate(classes)]
            write_table(lists / "ucf2vggsound.csv", ["category", "video_id", "duration"],
                        [[UCF_VGG_PAIRS[c][0], i, 7.5] for c, i in zip(classes, ids)])
        else:
            ids = youtube_ids(n, rng)
            write_table(lists / "vggsound2ucf.csv", ["category", "video_id", "split", "source"],
                        [[UCF_VGG_PAIRS[c][1], i, ("train", "test")[k % 2], "vggsound"]
                         for k, (c, i) in enumerate(zip(classes, ids))])
        folder = root / ("UCF101" if side == 0 else "vggsound40k") / "feature" / modality / "zip"
        coefficients = atoms.coefficients([[[UCF_VGG_PAIRS[c][0]]] * STEPS for c in classes])
        for k, (clip_id, array) in enumerate(zip(ids, atoms.features(coefficients, modality, rng))):
            array = resample(array, k + side)
            write_zip(folder / f"{clip_id}.zip", array, k, grid=modality == "video")


def write_release(root: Path, size: str = "small", seed: int = 0, zero_length: bool = True) -> Atoms:
    """Every head task's files under `root`; returns the atoms (for the probe encoder's weights)."""
    rng = np.random.default_rng(seed)
    atoms = Atoms.make(seed)
    ave_counts, avvp_count, ucf_vgg_counts = SIZES[size]
    ave_classes = write_ave(root, atoms, ave_counts, rng)
    write_avvp(root, atoms, avvp_count, rng, zero_length)
    write_ave_avvp(root, ave_classes, rng)
    write_ucf_vgg(root, atoms, ucf_vgg_counts, rng)
    return atoms
