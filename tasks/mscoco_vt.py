"""MSCOCO zero-shot image-text retrieval (docs/protocols.md, `## mscoco_vt`), the ~5 captions of an image grouped.

Data: `MSCOCO/val_part_1.json` (`annotations`: `image_id`, `caption`) and
`MSCOCO/feature/zip/<image_id zero-padded to 12 digits>.zip` (one pickled (T,7,7,512) array, T >= 1);
optional `MSCOCO/text_tokens.h5`.
"""

from __future__ import annotations

from cmg_eval.data.captions import read_mscoco
from cmg_eval.registry import register_task
from cmg_eval.retrieval import RetrievalTask


@register_task("mscoco_vt")
class MscocoVideoText(RetrievalTask):
    """V->T (an image finds any of its captions) and T->V (a caption finds its image)."""

    name = "mscoco_vt"
    directions = (("video", "text"), ("text", "video"))
    item_modality = "video"
    folder = "MSCOCO"
    caption_file = "val_part_1.json"
    zip_folder = "feature/zip"
    read_captions = staticmethod(read_mscoco)

    def zip_name(self, item: str) -> str:
        return f"{int(item):012d}"
