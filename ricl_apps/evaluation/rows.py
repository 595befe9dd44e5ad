"""predictions.jsonl rows: reading them back, building one from an agent's answer, and the
one writer every evaluation engine (local or Ray) hands its answers to.

A row is an instance's identity (instance_id, image_id, study_id, patient_id, phrase,
label_group), then :meth:`ricl.agent.GroundingResult.to_dict` of the answer (error results
too), then ``union_iou`` and ``attempt``. Whatever engine produced the answer, the row is
built here, so the local and the Ray engines write the same rows for the same answers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from ricl.errors import DatasetFormatError
from ricl.types import Instance

__all__ = ["RowWriter", "last_rows", "read_rows", "result_row"]

log = logging.getLogger(__name__)


def read_rows(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """Rows of a predictions file. A final line without its newline (a write cut off by a
    kill) is dropped, and with ``repair=True`` cut from the file. Any other bad line raises
    DatasetFormatError naming the file and line."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    cut = len(data) if data.endswith(b"\n") or not data else data.rfind(b"\n") + 1
    if cut < len(data):
        log.warning("%s: dropping a truncated last line (%d bytes)", path, len(data) - cut)
        if repair:
            with path.open("r+b") as f:
                f.truncate(cut)
    rows = []
    for n, line in enumerate(data[:cut].decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(f"{path}:{n}: not a JSON object ({exc})") from exc
        if not isinstance(row, dict) or "instance_id" not in row:
            raise DatasetFormatError(f"{path}:{n}: a row needs an instance_id")
        rows.append(row)
    return rows


def last_rows(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """instance_id -> its last row."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        out[row["instance_id"]] = row
    return out


def _identity(instance: Instance) -> dict[str, Any]:
    """The fields naming an instance, first in every predictions.jsonl row."""
    return {
        "instance_id": instance.instance_id,
        "image_id": instance.image_id,
        "study_id": instance.study_id,
        "patient_id": instance.patient_id,
        "phrase": instance.phrase,
        "label_group": instance.label_group,
    }


def result_row(instance: Instance, result: Any, attempt: int) -> dict[str, Any]:
    """The predictions.jsonl row of one attempt: the instance's identity, the agent's own
    serialization of its result (a :class:`GroundingResult`, or the mapping its
    :meth:`~ricl.agent.GroundingResult.to_dict` made, as a Ray worker sends it back), its
    union IoU against the gold boxes (0 for a failed answer) and the attempt number."""
    from ricl.boxes.geometry import union_iou
    from ricl.types import Box

    body = dict(result) if isinstance(result, Mapping) else result.to_dict()
    failed = body["status"] in ("error", "parse_error")
    body.pop("phrase", None)  # the instance's phrase leads the row
    boxes = [Box.from_list(b) for b in body["boxes"]]
    return {
        **_identity(instance),
        **body,
        "union_iou": 0.0 if failed else float(union_iou(boxes, instance.boxes)),
        "attempt": attempt,
    }


class RowWriter:
    """Appends one row per finished query and flushes it at once; counts failures and
    decides when the run stops (``max_in_a_row`` transport failures in a row).

    Engines call :meth:`add` for every answer and check :attr:`stopped` before starting
    more queries. Not thread-safe: call it from one thread (the engine's driver loop).
    """

    def __init__(
        self,
        out: IO[str],
        instances: Mapping[str, Instance],
        attempts: Mapping[str, int],
        max_in_a_row: int,
        on_row: Any = None,
    ) -> None:
        self.out = out
        self.instances = instances
        self.attempts = dict(attempts)
        self.max_in_a_row = max_in_a_row
        self.on_row = on_row
        self.in_a_row = 0
        self.failed = 0
        self.written = 0
        self.last_failure: str | None = None
        self.stopped = False
        self.started = time.perf_counter()

    def add(self, instance_id: str, result: Any, transport_error: str | None = None) -> None:
        """Write the row of ``instance_id``'s answer (a result or its ``to_dict`` mapping).
        ``transport_error``: the answer is an error result because the server could not be
        reached or refused (these, in a row, stop the run); per-query errors (image, selector)
        are error results with ``transport_error=None`` and do not count towards stopping.

        Raises KeyError for an id that is not one of the run's pending instances (an engine
        bug: rows must never name instances the run did not send)."""
        inst = self.instances[instance_id]
        body = dict(result) if isinstance(result, Mapping) else result.to_dict()
        if body["status"] == "error":
            self.failed += 1
        if transport_error is not None:
            self.in_a_row += 1
            self.last_failure = transport_error
            if self.in_a_row >= self.max_in_a_row:
                self.stopped = True
        elif body["status"] != "error":
            self.in_a_row = 0
        attempt = self.attempts.get(instance_id, 0) + 1
        self.attempts[instance_id] = attempt
        row = result_row(inst, body, attempt)
        self.out.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.out.flush()
        self.written += 1
        if self.on_row is not None:
            self.on_row(self)

    @property
    def rate(self) -> float:
        """Rows written per second since the writer was made."""
        return self.written / max(1e-9, time.perf_counter() - self.started)

    @property
    def aborted(self) -> str | None:
        """The last transport failure when the run was stopped by them, else None."""
        return self.last_failure if self.stopped else None
