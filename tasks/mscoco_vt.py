"""MSCOCO zero-shot image-text retrieval (docs/protocols.md, `## mscoco_vt`), the ~5 captions of an image grouped.

Data: `MSCOCO/val_part_1.json` (`annotations`: `image_id`, `caption`) and
`MSCOCO/feature/zip/<image_id zero-padded to 12 digits>.zip` (one pickled (T,7,7,512) array, T >= 1);
optional `MSCOCO/text_tokens.h5`.
"""

from __future__ import annotations

from cmg_eval.data.captions import read_mscoco
from cmg_eval.registry import register_task
from cmg_eval.retrieval import RETRIEVAL_LOWER_IS_BETTER, RETRIEVAL_METRICS, RetrievalTask
from cmg_eval.task import TaskMeta


@register_task("mscoco_vt")
class MscocoVideoText(RetrievalTask):
    """V->T (an image finds any of its captions) and T->V (a caption finds its image)."""

    meta = TaskMeta(name="mscoco_vt", version="1", primary_metric="r10", metrics=RETRIEVAL_METRICS,
                    lower_is_better=RETRIEVAL_LOWER_IS_BETTER, directions=(("video", "text"), ("text", "video")),
                    in_average=False,   # recalls are not averaged with accuracies and F1 (as in the papers)
                    reference="Lin et al.: Microsoft COCO: Common Objects in Context, ECCV "
                              "2014",
                    files=("MSCOCO/val_part_1.json", "MSCOCO/feature/zip/*.zip",
                           "MSCOCO/text_tokens.h5 (optional)"))
    item_modality = "video"
    folder = "MSCOCO"
    caption_file = "val_part_1.json"
    zip_folder = "feature/zip"
    read_captions = staticmethod(read_mscoco)

    def zip_name(self, item: str) -> str:
        return f"{int(item):012d}"
