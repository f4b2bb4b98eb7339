"""Synthetic open-set UCF<->VGG subsets: `OSCMG(cvpr25)/data/UCF_VGG_OSCMG/{ucf2vggsound,vggsound2ucf}_{8,12}.csv`.

Each is the rows of the first K classes of the full clip CSV the `ucf_vgg` writer wrote before it (writers run
by name), minus one known class on some sides, as in the reference, whose subsets are not symmetric:
`vggsound2ucf_8` holds 7 classes and both `_12` files 11.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cmg_eval.data.synth.ave_os import OPEN_SET
from cmg_eval.data.synth.ucf_vgg import LISTS, write_csv
from cmg_eval.data.synth.world import World

# (full CSV, class list) per side, and the known class left out of each K-subset (None: all K classes).
SIDES = {"ucf2vggsound": ("ucf2vggsound.csv", "UCF101sameVGGSound.txt"),
         "vggsound2ucf": ("vggsound2ucf.csv", "VGGSoundsameUCF101.txt")}
LEFT_OUT = {("ucf2vggsound", 8): None, ("vggsound2ucf", 8): 3, ("ucf2vggsound", 12): 10, ("vggsound2ucf", 12): 5}


def write(root: Path, world: World, size: str, rng: np.random.Generator) -> dict:
    folder = root / OPEN_SET / "UCF_VGG_OSCMG"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for (side, known), left_out in LEFT_OUT.items():
        csv_name, list_name = SIDES[side]
        names = (root / LISTS / list_name).read_text().splitlines()
        with open(root / LISTS / csv_name, newline="") as handle:
            rows = list(csv.DictReader(handle))
        subset = [[r["category"], r["video_id"]] for r in rows
                  if names.index(r["category"]) < known and names.index(r["category"]) != left_out]
        write_csv(folder / f"{side}_{known}.csv", ["category", "video_id"], subset)
        written[f"{side}_{known}"] = {"clips": len(subset), "classes": len({category for category, _ in subset})}
    return written
