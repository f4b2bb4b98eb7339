"""Clotho evaluation zero-shot audio-text retrieval (docs/protocols.md, `## clotho_at`), every clip and caption used.

Data: `clotho2.1/clotho_captions_evaluation.csv` (`file_name`, `caption_1` .. `caption_5`) and
`clotho2.1/feature/zip/<file_name without extension>.zip` (one pickled (T,128) array);
optional `clotho2.1/text_tokens.h5`.
"""

from __future__ import annotations

from cmg_eval.data.captions import read_clotho
from cmg_eval.registry import register_task
from cmg_eval.retrieval import RETRIEVAL_LOWER_IS_BETTER, RETRIEVAL_METRICS, RetrievalTask
from cmg_eval.task import TaskMeta


@register_task("clotho_at")
class ClothoAudioText(RetrievalTask):
    """A->T (a clip finds any of its five captions) and T->A (a caption finds its clip)."""

    meta = TaskMeta(name="clotho_at", version="1", primary_metric="r10", metrics=RETRIEVAL_METRICS,
                    lower_is_better=RETRIEVAL_LOWER_IS_BETTER, directions=(("audio", "text"), ("text", "audio")),
                    in_average=False,   # recalls are not averaged with accuracies and F1 (as in the papers)
                    reference="Drossos, Lipping, Virtanen: Clotho: An Audio Captioning Dataset, "
                              "ICASSP 2020",
                    files=("clotho2.1/clotho_captions_evaluation.csv", "clotho2.1/feature/zip/*.zip",
                           "clotho2.1/text_tokens.h5 (optional)"))
    item_modality = "audio"
    folder = "clotho2.1"
    caption_file = "clotho_captions_evaluation.csv"
    zip_folder = "feature/zip"
    read_captions = staticmethod(read_clotho)
