"""The planted latent world every synthetic dataset and the oracle share.

Classes have prototypes in a latent space; the same class name has the same prototype in
every dataset (derived from the name), so cross-dataset transfer is learnable. Each modality
sees the latent through its own fixed random map plus modality-specific nuisance and noise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

LATENT_DIM = 32
NUISANCE_DIM = 8
# Prototypes are far apart relative to the per-clip jitter, and the maps to features shrink by
# the same factor, so feature SNR is moderate while the oracle's latent is cleanly separable.
PROTOTYPE_NORM = 20.0
SIGNAL_SCALE = 3.0 / PROTOTYPE_NORM
VOCAB_SIZE = 1000
# Size of the per-item nuisance (a fixed random 8-dim subspace per modality). Audio and video clips
# vary in it from clip to clip in pretraining, so encoders learn to ignore it. Text in pretraining
# is one fixed prompt per category (as the release's BERT prompts), so a large per-prompt nuisance
# would be the easiest way to tell the 141 prompts apart, and a text encoder that keys on it maps any
# other sentence of the same concept elsewhere: text features are mostly their meaning (BERT-like).
NUISANCE_SCALE = {"video": 1.0, "audio": 1.0, "text": 0.1}
BACKGROUND = "__background__"
# Feature widths of the public releases: VGG19 pool5 maps, VGGish, BERT tokens.
VIDEO_SHAPE = (7, 7, 512)
AUDIO_DIM = 128
TEXT_DIM = 768


def name_seed(*parts: object) -> list[int]:
    """A stable numpy seed sequence from strings and ints (Python's hash() is salted per run)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]


@dataclass
class World:
    """Fixed maps latent -> features for one seed."""

    seed: int
    noise: dict[str, float] = field(default_factory=lambda: {"video": 1.0, "audio": 0.35, "text": 0.5})

    def __post_init__(self) -> None:
        rng = np.random.default_rng(name_seed("world", self.seed))
        scale = SIGNAL_SCALE / np.sqrt(LATENT_DIM)
        self.signal = {
            "video": rng.normal(0, scale, (LATENT_DIM, VIDEO_SHAPE[-1])),
            "audio": rng.normal(0, scale, (LATENT_DIM, AUDIO_DIM)),
            "text": rng.normal(0, scale, (LATENT_DIM, TEXT_DIM)),
        }
        self.nuisance = {m: NUISANCE_SCALE[m] * rng.normal(0, 1.0, (NUISANCE_DIM, w.shape[1]))
                         for m, w in self.signal.items()}
        self.offset = {"video": np.abs(rng.normal(0.5, 0.2, VIDEO_SHAPE[-1])), "audio": rng.normal(0, 0.5, AUDIO_DIM),
                       "text": np.zeros(TEXT_DIM)}
        self.word_vectors = rng.normal(0, 0.5, (VOCAB_SIZE, TEXT_DIM))

    def prototype(self, class_name: str) -> np.ndarray:
        """The class's latent prototype: same name, same vector, in every dataset."""
        vector = np.random.default_rng(name_seed("prototype", self.seed, class_name)).normal(size=LATENT_DIM)
        return PROTOTYPE_NORM * vector / np.linalg.norm(vector)

    def prototypes(self, class_names: list[str]) -> np.ndarray:
        return np.stack([self.prototype(name) for name in class_names])

    # ------------------------------------------------------------ rendering latents as features
    def render_video(self, latents: np.ndarray, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
        """(N, T, LATENT) -> (N, T, 7, 7, 512): each clip's content at a random spatial saliency."""
        n, steps, _ = latents.shape
        saliency = rng.gamma(2.0, 0.5, (n, 1, VIDEO_SHAPE[0] * VIDEO_SHAPE[1], 1))
        saliency /= saliency.mean(axis=2, keepdims=True)
        nuisance = rng.normal(size=(n, 1, 1, NUISANCE_DIM)) @ self.nuisance["video"]
        content = (latents @ self.signal["video"])[:, :, None, :]
        out = rng.standard_normal((n, steps, VIDEO_SHAPE[0] * VIDEO_SHAPE[1], VIDEO_SHAPE[2]), dtype=np.float32)
        out *= self.noise["video"]
        out += (saliency * content + nuisance + self.offset["video"]).astype(np.float32)
        return out.reshape(n, steps, *VIDEO_SHAPE).astype(dtype, copy=False)

    def render_audio(self, latents: np.ndarray, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
        """(N, T, LATENT) -> (N, T, 128)."""
        n, steps, _ = latents.shape
        nuisance = rng.normal(size=(n, 1, NUISANCE_DIM)) @ self.nuisance["audio"]
        noise = self.noise["audio"] * rng.normal(size=(n, steps, AUDIO_DIM))
        return (latents @ self.signal["audio"] + nuisance + noise + self.offset["audio"]).astype(dtype)

    def render_text(self, latents: np.ndarray, words: np.ndarray, rng: np.random.Generator,
                    dtype=np.float32) -> np.ndarray:
        """(N, L, LATENT) latents and (N, L) word ids -> (N, L, 768) token vectors (word id < 0: zero padding)."""
        n, length, _ = latents.shape
        nuisance = rng.normal(size=(n, 1, NUISANCE_DIM)) @ self.nuisance["text"]
        noise = self.noise["text"] * rng.normal(size=(n, length, TEXT_DIM))
        tokens = latents @ self.signal["text"] + self.word_vectors[np.maximum(words, 0)] + nuisance + noise
        tokens[words < 0] = 0.0
        return tokens.astype(dtype)

    # ------------------------------------------------------------ latents
    def segment_latents(self, centres: np.ndarray, rng: np.random.Generator,
                        instance: float = 0.5, segment: float = 0.25) -> np.ndarray:
        """(N, T, LATENT) centres -> latents with a per-clip instance offset and per-segment jitter."""
        n, steps, _ = centres.shape
        return centres + instance * rng.normal(size=(n, 1, LATENT_DIM)) + segment * rng.normal(size=(n, steps, LATENT_DIM))

    def random_latents(self, n: int, steps: int, rng: np.random.Generator) -> np.ndarray:
        """Latents that span the space the datasets use: prototypes of random names, background, spread."""
        names = [f"fit-{i}" for i in rng.integers(0, 10_000, n)]
        centres = np.where(rng.random((n, 1, 1)) < 0.2, self.prototype(BACKGROUND), self.prototypes(names)[:, None, :])
        return self.segment_latents(np.repeat(centres, steps, axis=1), rng, instance=2.0, segment=1.5)
