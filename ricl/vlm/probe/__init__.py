"""``ricl probe``: which codec, box frame and image limit a served VLM actually has.

>>> from ricl.vlm.openai import OpenAIBackend          # doctest: +SKIP
>>> report = probe_server(OpenAIBackend(None, "http://127.0.0.1:8000/v1"))  # doctest: +SKIP
>>> report.recommendation                               # doctest: +SKIP
'use codec=qwen2vl (mean IoU 0.71 on the probe images); answers read best as rel1000 ...'
"""

from ricl.vlm.probe.cases import ProbeCase, probe_cases
from ricl.vlm.probe.frames import FRAMES, frame_boxes, number_quads
from ricl.vlm.probe.run import GOOD_IOU, ProbeAnswer, ProbeReport, probe_server

__all__ = [
    "FRAMES",
    "GOOD_IOU",
    "ProbeAnswer",
    "ProbeCase",
    "ProbeReport",
    "frame_boxes",
    "number_quads",
    "probe_cases",
    "probe_server",
]
