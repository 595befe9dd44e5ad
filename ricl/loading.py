"""One process-wide lock around model loading.

Loading a transformers model is not thread-safe: ``from_pretrained`` switches global
state (default dtype and device, weight-init skipping) while it builds the module. The
agent answers queries in worker threads, so the first queries of a concurrent run would
load the query encoder and an in-process VLM at the same time, and each thread its own
copy of the VLM. Every lazy model load in ricl (:func:`ricl.encoders.load`, the ``hf``
backend) takes :data:`MODEL_LOAD_LOCK`; it is re-entrant, so a loader may call another.
"""

from __future__ import annotations

import threading

__all__ = ["MODEL_LOAD_LOCK"]

MODEL_LOAD_LOCK = threading.RLock()
