"""Synthetic open-set UCF51: the 51 UCF101 classes with audio, both modalities of every clip.

Files: `OSCMG(cvpr25)/data/UCF_OSCMG/UCF51Categories.txt`, `ucf51checked.csv` (`category, video_id`, grouped by
class) and its first-K-class subsets `ucf51checked_{17,34}.csv`; features `UCF101ALL/feature/{video,audio}/zip/
<video_id>.zip`, each clip's audio and video rendered from the same latents.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmg_eval.data.synth.ave_os import OPEN_SET
from cmg_eval.data.synth.ucf_vgg import CHUNK, balanced_classes, ucf_ids, write_csv
from cmg_eval.data.synth.world import World
from cmg_eval.data.zipfeat import write_feature_zip

UCF51_CLASSES = [
    "ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "BalanceBeam", "BandMarching", "BasketballDunk",
    "BlowDryHair", "BlowingCandles", "BodyWeightSquats", "Bowling", "BoxingPunchingBag", "BoxingSpeedBag",
    "BrushingTeeth", "CliffDiving", "CricketBowling", "CricketShot", "CuttingInKitchen", "FieldHockeyPenalty",
    "FloorGymnastics", "FrisbeeCatch", "FrontCrawl", "Haircut", "Hammering", "HammerThrow", "HandstandWalking",
    "HeadMassage", "IceDancing", "Knitting", "LongJump", "MoppingFloor", "ParallelBars", "PlayingCello",
    "PlayingDaf", "PlayingDhol", "PlayingFlute", "PlayingSitar", "Rafting", "ShavingBeard", "Shotput", "SkyDiving",
    "SoccerPenalty", "StillRings", "SumoWrestling", "Surfing", "TableTennisShot", "Typing", "UnevenBars",
    "WallPushups", "WritingOnBoard", "YoYo",
]
# Full: the reference's ucf51checked.csv has 6831 clips.
COUNTS = {"tiny": 1020, "small": 1530, "full": 6831}
KNOWN = (17, 34)
STEPS = (2, 4)      # UCF clips last a few seconds (fewer steps here: small files)


def write_features(root: Path, world: World, ids: list[str], centres: np.ndarray, rng: np.random.Generator) -> None:
    """Video (float16) and audio zips of each clip, both rendered from the clip's latents."""
    lengths = rng.integers(STEPS[0], STEPS[1] + 1, len(ids))
    folder = root / "UCF101ALL" / "feature"
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        for start in range(0, len(members), CHUNK):
            part = members[start:start + CHUNK]
            latents = world.segment_latents(np.repeat(centres[part][:, None], length, axis=1), rng)
            videos, audios = world.render_video(latents, rng, np.float16), world.render_audio(latents, rng)
            for row, video, audio in zip(part, videos, audios):
                write_feature_zip(folder / "video" / "zip" / f"{ids[row]}.zip", video)
                write_feature_zip(folder / "audio" / "zip" / f"{ids[row]}.zip", audio)


def write(root: Path, world: World, size: str, rng: np.random.Generator, count: int | None = None) -> dict:
    folder = root / OPEN_SET / "UCF_OSCMG"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "UCF51Categories.txt").write_text("".join(f"{name}\n" for name in UCF51_CLASSES))
    classes = balanced_classes(count or COUNTS[size], len(UCF51_CLASSES), rng)
    ids = ucf_ids(classes, UCF51_CLASSES, rng)
    rows = [[UCF51_CLASSES[c], clip] for c, clip in zip(classes, ids)]
    write_csv(folder / "ucf51checked.csv", ["category", "video_id"], rows)
    for known in KNOWN:
        write_csv(folder / f"ucf51checked_{known}.csv", ["category", "video_id"],
                  [row for row, c in zip(rows, classes) if c < known])
    write_features(root, world, ids, world.prototypes(UCF51_CLASSES)[classes], rng)
    return {"clips": len(ids), "classes": len(UCF51_CLASSES)}
