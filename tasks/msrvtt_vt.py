"""MSR-VTT 1k-A test zero-shot video-text retrieval (docs/protocols.md, `## msrvtt_vt`; the reference ships no
MSR-VTT code).

Data: `MSRVTT/msrvtt_1kA_test.csv` (header `video_id,caption`, one row per caption) and
`MSRVTT/feature/video/zip/<video_id>.zip` (one pickled (T,7,7,512) array); optional `MSRVTT/text_tokens.h5`.
"""

from __future__ import annotations

from cmg_eval.data.captions import read_msrvtt
from cmg_eval.registry import register_task
from cmg_eval.retrieval import RetrievalTask


@register_task("msrvtt_vt")
class MsrvttVideoText(RetrievalTask):
    """V->T (a video finds any of its captions) and T->V (a caption finds its video)."""

    name = "msrvtt_vt"
    directions = (("video", "text"), ("text", "video"))
    item_modality = "video"
    folder = "MSRVTT"
    caption_file = "msrvtt_1kA_test.csv"
    zip_folder = "feature/video/zip"
    read_captions = staticmethod(read_msrvtt)
