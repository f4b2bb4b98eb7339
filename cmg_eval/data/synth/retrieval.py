"""Synthetic caption-retrieval sets in the release formats: MSCOCO, MSRVTT 1k-A test, Clotho evaluation.

Each item has an instance latent (a topic prototype plus an instance offset); its video or audio
steps and its captions are rendered from it. Topics are the VGGSound-AVEL40k categories: the World
gives a name the same prototype in every dataset, so what pretraining aligns across modalities is
what the captions and items are about (as real captions describe sounds and scenes that
VGGSound's classes also cover). A caption's words come from a synthetic vocabulary,
drawn with a preference for words whose vectors point along the item's text signal; its token
features (`text_tokens.h5`) are the first 10 words rendered by the World's text map.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from cmg_eval.constants import MAX_TEXT_TOKENS as MAX_TOKENS
from cmg_eval.data.captions import TOKENS_FILE
from cmg_eval.data.synth.vggsound40k import categories
from cmg_eval.data.synth.world import LATENT_DIM, VOCAB_SIZE, World
from cmg_eval.data.zipfeat import write_feature_zip

INSTANCE = 2.0        # per-dimension spread of an item around its topic prototype
STEP_JITTER = 2.0     # per video / audio step
CAPTION_JITTER = 4.0  # per caption: what its words say differs from the item
TOKEN_JITTER = 2.0    # per token
WORD_TEMPERATURE = 1.5
CAPTION_WORDS = (4, 12)
CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
# (items, captions per item (low, high), steps per item (low, high)) per size
SIZES = {
    "msrvtt": {"tiny": (200, (1, 3), (1, 6)), "small": (250, (1, 1), (4, 16)), "full": (1000, (1, 1), (10, 30))},
    "mscoco": {"tiny": (200, (5, 6), (1, 1)), "small": (1250, (5, 6), (1, 1)), "full": (5000, (5, 6), (1, 1))},
    "clotho": {"tiny": (200, (5, 5), (15, 31)), "small": (261, (5, 5), (15, 31)), "full": (1045, (5, 5), (15, 31))},
}


def vocabulary() -> list[str]:
    """VOCAB_SIZE distinct pronounceable words, word id -> string."""
    syllables = [c + v for c in CONSONANTS for v in VOWELS]
    words = [syllables[i % len(syllables)] + syllables[(i // len(syllables) * 7 + 3) % len(syllables)]
             + CONSONANTS[i // len(syllables) % len(CONSONANTS)] for i in range(VOCAB_SIZE)]
    assert len(set(words)) == VOCAB_SIZE
    return words


def item_latents(world: World, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, LATENT) instance latents: topic prototypes plus an instance offset."""
    topics = world.prototypes(categories())
    return topics[rng.integers(0, len(topics), n)] + INSTANCE * rng.normal(size=(n, LATENT_DIM))


def render_steps(world: World, latent: np.ndarray, steps: int, modality: str, rng: np.random.Generator) -> np.ndarray:
    """One item's (T, 7, 7, 512) video or (T, 128) audio features."""
    latents = latent[None, None, :] + STEP_JITTER * rng.normal(size=(1, steps, LATENT_DIM))
    render = world.render_video if modality == "video" else world.render_audio
    return render(latents, rng)[0]


def captions_for(world: World, latents: np.ndarray, counts: np.ndarray, words: list[str],
                 rng: np.random.Generator) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Caption strings, their token features (C, 10, 768) and owning item, items in order."""
    owner = np.repeat(np.arange(len(latents)), counts)
    caption_latents = latents[owner] + CAPTION_JITTER * rng.normal(size=(len(owner), LATENT_DIM))
    direction = caption_latents @ world.signal["text"]                 # (C, 768)
    logits = direction @ world.word_vectors.T
    logits = WORD_TEMPERATURE * (logits - logits.mean(1, keepdims=True)) / logits.std(1, keepdims=True)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    lengths = rng.integers(CAPTION_WORDS[0], CAPTION_WORDS[1] + 1, len(owner))
    ids = np.full((len(owner), MAX_TOKENS), -1)
    texts = []
    for c, (p, length) in enumerate(zip(probs, lengths)):
        chosen = rng.choice(VOCAB_SIZE, size=length, p=p)
        texts.append(" ".join(words[w] for w in chosen))
        ids[c, :min(length, MAX_TOKENS)] = chosen[:MAX_TOKENS]
    token_latents = caption_latents[:, None, :] + TOKEN_JITTER * rng.normal(size=(len(owner), MAX_TOKENS, LATENT_DIM))
    return texts, world.render_text(token_latents, ids, rng), owner


def write_tokens(path: Path, tokens: np.ndarray, caption_ids: list[str]) -> None:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("tokens", data=tokens.astype(np.float32))
        handle.create_dataset("caption_id", data=np.asarray(caption_ids, dtype=object), dtype=h5py.string_dtype())


def caption_ids(items: list[str], owner: np.ndarray) -> list[str]:
    """`<item>#<k>` in caption order (k counts the item's captions)."""
    seen: dict[int, int] = {}
    out = []
    for item in owner.tolist():
        out.append(f"{items[item]}#{seen.get(item, 0)}")
        seen[item] = seen.get(item, 0) + 1
    return out


def make_set(world: World, name: str, size: str, rng: np.random.Generator):
    """Latents, per-item caption counts and step counts, captions and tokens of one dataset."""
    n, (low, high), (t_low, t_high) = SIZES[name][size]
    latents = item_latents(world, n, rng)
    counts = rng.integers(low, high + 1, n)
    steps = rng.integers(t_low, t_high + 1, n)
    texts, tokens, owner = captions_for(world, latents, counts, vocabulary(), rng)
    return latents, steps, texts, tokens, owner


def write_items(folder: Path, names: list[str], latents: np.ndarray, steps: np.ndarray, modality: str,
                world: World, rng: np.random.Generator) -> None:
    for name, latent, t in zip(names, latents, steps):
        write_feature_zip(folder / f"{name}.zip", render_steps(world, latent, int(t), modality, rng))


def write_msrvtt(root: Path, world: World, size: str, rng: np.random.Generator) -> dict:
    """`MSRVTT/msrvtt_1kA_test.csv` (rows shuffled) and `MSRVTT/feature/video/zip/<video_id>.zip`."""
    folder = root / "MSRVTT"
    latents, steps, texts, tokens, owner = make_set(world, "msrvtt", size, rng)
    videos = [f"video{v}" for v in rng.choice(10_000, len(latents), replace=False)]
    write_items(folder / "feature" / "video" / "zip", videos, latents, steps, "video", world, rng)
    rows = rng.permutation(len(texts))   # file order; caption ids count each video's captions in it
    lines = ["video_id,caption"] + [f"{videos[owner[r]]},{texts[r]}" for r in rows]
    (folder / "msrvtt_1kA_test.csv").write_text("\n".join(lines) + "\n")
    write_tokens(folder / TOKENS_FILE, tokens[rows], caption_ids(videos, owner[rows]))
    return {"videos": len(videos), "captions": len(texts)}


def write_mscoco(root: Path, world: World, size: str, rng: np.random.Generator) -> dict:
    """`MSCOCO/val_part_1.json` (annotations shuffled) and `MSCOCO/feature/zip/<12-digit id>.zip`."""
    folder = root / "MSCOCO"
    latents, steps, texts, tokens, owner = make_set(world, "mscoco", size, rng)
    images = [int(i) for i in rng.choice(600_000, len(latents), replace=False)]
    write_items(folder / "feature" / "zip", [f"{i:012d}" for i in images], latents, steps, "video", world, rng)
    rows = rng.permutation(len(texts))   # file order; caption ids count each image's captions in it
    document = {"images": [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in images],
                "annotations": [{"image_id": images[owner[r]], "id": int(r), "caption": texts[r]} for r in rows]}
    (folder / "val_part_1.json").write_text(json.dumps(document))
    write_tokens(folder / TOKENS_FILE, tokens[rows], caption_ids([str(i) for i in images], owner[rows]))
    return {"images": len(images), "captions": len(texts)}


def write_clotho(root: Path, world: World, size: str, rng: np.random.Generator) -> dict:
    """`clotho2.1/clotho_captions_evaluation.csv` and `clotho2.1/feature/zip/<file name>.zip`."""
    folder = root / "clotho2.1"
    latents, steps, texts, tokens, owner = make_set(world, "clotho", size, rng)
    words = vocabulary()
    clips = [f"{words[rng.integers(VOCAB_SIZE)].capitalize()} {words[rng.integers(VOCAB_SIZE)]} {i:04d}"
             for i in range(len(latents))]
    write_items(folder / "feature" / "zip", clips, latents, steps, "audio", world, rng)
    lines = ["file_name,caption_1,caption_2,caption_3,caption_4,caption_5"]
    for item, clip in enumerate(clips):
        lines.append(",".join([f"{clip}.wav", *(texts[c] for c in np.flatnonzero(owner == item))]))
    (folder / "clotho_captions_evaluation.csv").write_text("\n".join(lines) + "\n")
    write_tokens(folder / TOKENS_FILE, tokens, caption_ids(clips, owner))
    return {"clips": len(clips), "captions": len(texts)}


def write(root: Path, world: World, size: str, rng: np.random.Generator) -> dict:
    """All three retrieval sets into `root`."""
    return {"msrvtt": write_msrvtt(root, world, size, rng), "mscoco": write_mscoco(root, world, size, rng),
            "clotho": write_clotho(root, world, size, rng)}
