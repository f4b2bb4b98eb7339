"""Synthetic VGGSound-AVEL40k, the pretraining set, in its release layout (docs/formats.md).

    vggsound40k/data/vggsound-avel40k.csv            category,video_id,split (all splits pretrain)
    vggsound40k/data/VggsoundAVEL40kCategories.txt   141 category names, one a line
    vggsound40k/data/vggsoundCategories2Prompts.csv  label,prompt
    vggsound40k/feature/audio/zip/<video_id>.zip     one pickled (10, 128) float32 array
    vggsound40k/feature/video/zip/<video_id>.zip     one pickled (10, 7, 7, 512) float16 array
    vggsound40k/feature/text/prompt_tokens.zip       one pickled (141, 10, 768) float32 array: each
                                                     prompt's BERT-like tokens, rows in category order

The release computes prompt tokens with BERT at load time; the synthetic set ships them instead.
Video maps are stored in float16 to halve the disk cost; readers cast to float32.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np

from cmg_eval.constants import MAX_TEXT_TOKENS as PROMPT_TOKENS, STEPS
from cmg_eval.data.synth.ave import AVE_CLASSES
from cmg_eval.data.synth.world import BACKGROUND, VIDEO_SHAPE, AUDIO_DIM, TEXT_DIM, VOCAB_SIZE, World, name_seed
from cmg_eval.data.zipfeat import write_feature_zip

FOLDER = "vggsound40k"
CLIPS = {"tiny": 400, "small": 1000, "full": 40_000}
FULL_ENV = "CMG_EVAL_SYNTH_VGGSOUND40K"   # set to 1 to write the 40k clips at --size full
N_CATEGORIES = 141
SPLIT_SHARES = (("train", 0.8), ("val", 0.1), ("test", 0.1))
ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
# VGGSound labels completing the AVE classes to the 141 categories (AVE names keep their
# prototypes, so pretraining sees the AVE events the way VGGSound-AVEL40k does).
VGGSOUND_LABELS = [
    "airplane flyby", "ambulance siren", "baby laughter", "bird chirping, tweeting", "playing drum kit",
    "cattle mooing", "chicken crowing", "duck quacking", "elephant trumpeting", "fire truck siren",
    "fireworks banging", "frog croaking", "goose honking", "lions roaring", "mouse squeaking",
    "ocean burbling", "owl hooting", "people clapping", "people crowd", "people whistling", "pig oinking",
    "playing bagpipes", "playing bass drum", "playing bass guitar", "playing cello", "playing clarinet",
    "playing cymbal", "playing electric guitar", "playing harmonica", "playing harp", "playing piano",
    "playing saxophone", "playing snare drum", "playing trombone", "playing trumpet", "police car siren",
    "rain", "railroad car, train wagon", "sheep bleating", "skateboarding", "thunder",
    "typing on computer keyboard", "vacuum cleaner cleaning floors", "waterfall burbling", "wind noise",
    "writing on blackboard with chalk", "lawn mowing", "car engine starting", "opening or closing car doors",
    "bowling impact", "basketball bounce", "tap dancing", "people sneezing", "people coughing",
    "people eating crisps", "cap gun shooting", "machine gun shooting", "hammering nails",
    "using sewing machines", "electric shaver shaving", "hair dryer drying", "printer printing",
    "mouse clicking", "blowtorch igniting", "lighting firecrackers", "ice cracking", "blender running",
    "popping popcorn", "cupboard opening or closing", "door slamming", "footsteps on snow", "sea waves",
    "stream burbling", "wind chime", "crow cawing", "magpie calling", "parrot talking", "pigeon cooing",
    "penguins braying", "tractor digging", "train whistling", "subway, metro, underground",
    "engine accelerating, revving", "skiing", "playing table tennis", "playing tennis", "playing badminton",
    "rope skipping", "playing volleyball", "golf driving", "yodelling", "singing choir", "child singing",
    "playing didgeridoo", "playing tabla", "playing sitar", "playing zither", "horse neighing",
    "cricket chirping", "mosquito buzzing", "bee, wasp buzzing", "chopping wood", "sharpen knife",
    "splashing water", "underwater bubbling", "volcano explosion", "smoke detector beeping",
    "telephone bell ringing", "alarm clock ringing", "whale calling", "woodpecker pecking tree",
    "zebra braying", "snake hissing", "dog howling",
]


def categories() -> list[str]:
    """The 141 category names: the 28 AVE classes, then VGGSound labels."""
    names = AVE_CLASSES + [n for n in VGGSOUND_LABELS if n not in AVE_CLASSES]
    return names[:N_CATEGORIES]


def prompt(category: str) -> str:
    return f"the sound of {category.lower()} in a video"


def prompt_tokens(world: World, names: list[str], rng: np.random.Generator) -> np.ndarray:
    """(C, 10, 768) token features: every word carries its category's prototype; zero padding."""
    words = np.full((len(names), PROMPT_TOKENS), -1)
    for row, name in enumerate(names):
        ids = [name_seed("word", w)[0] % VOCAB_SIZE for w in prompt(name).split()]
        words[row, :min(len(ids), PROMPT_TOKENS)] = ids[:PROMPT_TOKENS]
    latents = np.repeat(world.prototypes(names)[:, None, :], PROMPT_TOKENS, axis=1)
    return world.render_text(latents, words, rng)


def video_ids(n: int, rng: np.random.Generator) -> list[str]:
    """Distinct 11-character YouTube-style ids."""
    found: dict[str, None] = {}
    while len(found) < n:
        for row in ID_ALPHABET[rng.integers(0, len(ID_ALPHABET), (n - len(found), 11))]:
            found.setdefault("".join(row), None)
    return list(found)


def disk_bytes(n: int) -> int:
    per_clip = STEPS * int(np.prod(VIDEO_SHAPE)) * 2 + STEPS * AUDIO_DIM * 4
    return n * per_clip + N_CATEGORIES * PROMPT_TOKENS * TEXT_DIM * 4


def clip_latents(world: World, names: list[str], classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 10, LATENT): the category's event on a contiguous run of 5-10 segments, background elsewhere."""
    n = len(classes)
    onset = rng.integers(0, STEPS - 4, n)
    length = rng.integers(5, STEPS + 1, n)
    steps = np.arange(STEPS)
    events = (steps >= onset[:, None]) & (steps < np.minimum(onset + length, STEPS)[:, None])
    centres = np.where(events[..., None], world.prototypes(names)[classes][:, None, :], world.prototype(BACKGROUND))
    return world.segment_latents(centres, rng)


def write_meta(data: Path, names: list[str], classes: np.ndarray, ids: list[str], rng: np.random.Generator) -> None:
    data.mkdir(parents=True, exist_ok=True)
    (data / "VggsoundAVEL40kCategories.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    with open(data / "vggsoundCategories2Prompts.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "prompt"])
        writer.writerows([name, prompt(name)] for name in names)
    shares = np.cumsum([share for _, share in SPLIT_SHARES])
    splits = np.searchsorted(shares, rng.random(len(ids)))
    with open(data / "vggsound-avel40k.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["category", "video_id", "split"])
        writer.writerows([names[c], vid, SPLIT_SHARES[min(s, 2)][0]] for c, vid, s in zip(classes, ids, splits))


def write(root: Path, world: World, size: str, rng: np.random.Generator, clips: int | None = None) -> dict:
    """The pretraining set; at `full` only when $CMG_EVAL_SYNTH_VGGSOUND40K=1 (it takes ~20 GB)."""
    n = clips or CLIPS[size]
    if size == "full" and clips is None and os.environ.get(FULL_ENV) != "1":
        return {"clips": 0, "skipped": f"set {FULL_ENV}=1 to write the 40k pretraining clips "
                                        f"({disk_bytes(n) / 1e9:.1f} GB)"}
    if size == "full":
        print(f"vggsound40k: writing {n} clips, {disk_bytes(n) / 1e9:.1f} GB", file=sys.stderr)
    base = Path(root) / FOLDER
    names = categories()
    classes = rng.permutation(np.arange(n) % len(names))
    ids = video_ids(n, rng)
    write_meta(base / "data", names, classes, ids, rng)
    write_feature_zip(base / "feature" / "text" / "prompt_tokens.zip", prompt_tokens(world, names, rng))
    latents = clip_latents(world, names, classes, rng)
    for start in range(0, n, 64):
        part = latents[start:start + 64]
        video = world.render_video(part, rng, np.float16)
        audio = world.render_audio(part, rng, np.float32)
        for offset, vid in enumerate(ids[start:start + 64]):
            write_feature_zip(base / "feature" / "video" / "zip" / f"{vid}.zip", video[offset])
            write_feature_zip(base / "feature" / "audio" / "zip" / f"{vid}.zip", audio[offset])
    return {"clips": n, "categories": len(names), "disk_bytes": disk_bytes(n)}
