"""Open-set AVE (`cmg_eval.openset`): a head on the first K AVE classes of one modality, scored on the AVE test split
of the other, classes >= K to be rejected.

Data: the AVE release (`cmg_eval.data.ave`) and the reference's known-class training orders
`OSCMG(cvpr25)/data/AVE_OSCMG/train_order_{14,21}class.h5` (dataset `order`: global clip indices, the AVE train
order's clips of the first K classes). K: `--set ave_os.known=21` (default 14).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmg_eval.data.ave import N_CLASSES, AveData, load_ave
from cmg_eval.data.openset import OPEN_SET, KnownSubsets, class_counts, read_known_orders
from cmg_eval.headtask import Fold, HeadPlan, Labeled
from cmg_eval.openset import REFERENCE, KnownLabeled, OpenSetTask, absent_note, open_set_defaults, open_set_meta
from cmg_eval.registry import register_task
from cmg_eval.task import SourceRun

KNOWN = (14, 21)
FOLDER = OPEN_SET / "AVE_OSCMG"


@dataclass
class AveOsData:
    ave: AveData
    known: KnownSubsets

    @staticmethod
    def split_name(known: int) -> str:
        return f"train_order_{known}class"


@register_task("ave_os")
class AveOs(OpenSetTask):
    """Open-set clip classification on AVE: 14 (or 21) known classes, the other 14 (7) to reject."""

    meta = open_set_meta("ave_os", REFERENCE + "; AVE: Tian et al., ECCV 2018",
                         ("AVE-ECCV18-master/data/{visual_feature,audio_feature,labels}.h5",
                          "AVE-ECCV18-master/data/{train,val,test}_order.h5",
                          "OSCMG(cvpr25)/data/AVE_OSCMG/train_order_{14,21}class.h5"))
    known_choices = KNOWN
    defaults = open_set_defaults(KNOWN[0], epochs=25)   # the reference's launcher: 25 epochs

    def load(self, data_root: Path) -> AveOsData:
        ave = load_ave(data_root)
        known = read_known_orders(Path(data_root) / FOLDER, KNOWN, len(ave.labels), ave.labels)
        for k, order in known.rows.items():   # each subset encodes as one more split of the AVE arrays
            ave.orders[AveOsData.split_name(k)] = order
        return AveOsData(ave, known)

    def files(self, data: AveOsData) -> list[Path]:
        return [*data.ave.files(), *data.known.paths.values()]

    def feature_readers(self, data: AveOsData) -> list:
        return list(data.ave.features.values())

    def split(self, data: AveOsData, modality: str, split: str) -> Labeled:
        order = data.ave.orders[split]
        return Labeled(data.ave.source(modality, split), data.ave.labels[order], items=order)

    def plan(self, data: AveOsData, job: SourceRun) -> HeadPlan:
        """Paper (the reference): train on every clip of the K-class order, score each target's test split.
        Clean: the same, less any clip of the val or test split; the epoch and the rejection threshold are chosen on
        the source's known-class val clips."""
        known = self.known(job)
        order = data.known.get(known)
        held_out = np.isin(order, np.concatenate([data.ave.orders["val"], data.ave.orders["test"]]))
        train = self.split(data, job.source, AveOsData.split_name(known))
        rows = None if job.protocol == "paper" else np.flatnonzero(~held_out)
        fit = KnownLabeled(train.source, train.labels, rows, train.items, known=known)
        tests = {t: self.split(data, t, "test") for t in job.targets}
        if job.protocol == "paper":
            return HeadPlan([Fold(fit)], tests)
        val = self.split(data, job.source, "val")
        return HeadPlan([Fold(fit, val.take(np.flatnonzero(val.labels < known)))], tests)

    def about(self, data: AveOsData) -> dict:
        """Per K: the known classes trained and the known and unknown clips of the test split."""
        names = [f"class {c}" for c in range(N_CLASSES)]
        test = data.ave.labels[data.ave.orders["test"]]
        return {f"known={k}": class_counts(data.ave.labels[order], test, k, names) for k, order in data.known.rows.items()}

    def data_notes(self, data: AveOsData) -> dict:
        test = data.ave.labels[data.ave.orders["test"]]
        held_out = np.concatenate([data.ave.orders["val"], data.ave.orders["test"]])
        warnings = []
        for k, order in data.known.rows.items():
            warnings += absent_note(f"{data.ave.root / 'test_order.h5'}", test, k)
            overlap = int(np.isin(order, held_out).sum())
            if overlap:
                warnings.append(f"{data.known.paths[k]}: {overlap} clips of the val or "
                                f"test split; the clean protocol does not train on them")
        return {"warnings": warnings}
