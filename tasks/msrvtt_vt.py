"""MSR-VTT 1k-A test zero-shot video-text retrieval (docs/protocols.md, `## msrvtt_vt`; the reference ships no
MSR-VTT code).

Data: `MSRVTT/msrvtt_1kA_test.csv` (header `video_id,caption`, one row per caption) and
`MSRVTT/feature/video/zip/<video_id>.zip` (one pickled (T,7,7,512) array); optional `MSRVTT/text_tokens.h5`.
"""

from __future__ import annotations

from cmg_eval.data.captions import read_msrvtt
from cmg_eval.registry import register_task
from cmg_eval.retrieval import RETRIEVAL_LOWER_IS_BETTER, RETRIEVAL_METRICS, RetrievalTask
from cmg_eval.task import TaskMeta


@register_task("msrvtt_vt")
class MsrvttVideoText(RetrievalTask):
    """V->T (a video finds any of its captions) and T->V (a caption finds its video)."""

    meta = TaskMeta(name="msrvtt_vt", version="1", primary_metric="r10", metrics=RETRIEVAL_METRICS,
                    lower_is_better=RETRIEVAL_LOWER_IS_BETTER, directions=(("video", "text"), ("text", "video")),
                    in_average=False,   # recalls are not averaged with accuracies and F1 (as in the papers)
                    reference="Xu, Mei, Yao, Rui: MSR-VTT: A Large Video Description Dataset for "
                              "Bridging Video and Language, CVPR 2016",
                    files=("MSRVTT/msrvtt_1kA_test.csv", "MSRVTT/feature/video/zip/*.zip",
                           "MSRVTT/text_tokens.h5 (optional)"))
    item_modality = "video"
    folder = "MSRVTT"
    caption_file = "msrvtt_1kA_test.csv"
    zip_folder = "feature/video/zip"
    read_captions = staticmethod(read_msrvtt)
