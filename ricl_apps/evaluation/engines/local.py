"""The ``local`` engine: one process, :meth:`GroundingAgent.astream` with ``concurrency``
queries in flight (the OpenAI backend keeps that many requests open)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ricl.types import Instance

__all__ = ["query_for", "run"]


def query_for(inst: Instance, images_root: Path, query_box: str) -> Any:
    """The agent query of an evaluation instance (``query_box="gold"``: the gold boxes' hull
    goes to the retriever, the ORACLE of the location ablations)."""
    from ricl.agent import GroundingQuery
    from ricl.boxes.geometry import hull

    return GroundingQuery(
        images_root / inst.image_path,
        inst.phrase,
        study_id=inst.study_id,
        patient_id=inst.patient_id,
        box=hull(inst.boxes) if query_box == "gold" else None,
        labels=tuple(inst.labels),
        query_id=inst.instance_id,
    )


def run(config: Any, agent: Any, images_root: Path, todo: Sequence[Instance], writer: Any) -> None:
    """Answer ``todo`` with ``agent`` in this process; each answer goes to ``writer`` as it
    finishes. Transport failures (``VLMError``) are written as error rows and counted by the
    writer, which stops new queries after ``max_consecutive_failures`` in a row."""
    asyncio.run(_run(config, agent, images_root, todo, writer))


async def _run(config: Any, agent: Any, images_root: Path, todo: Sequence[Instance],
               writer: Any) -> None:  # fmt: skip
    from ricl.vlm.errors import VLMError

    queries = (query_for(i, images_root, config.query_box) for i in todo)
    stream = agent.astream(queries, max_concurrency=config.concurrency,
                           stop=lambda: writer.stopped)  # fmt: skip
    with _ctrl_c_cancels(asyncio.current_task()):
        async with contextlib.aclosing(stream):
            async for query, outcome in stream:
                transport = None
                if isinstance(outcome, Exception):
                    if isinstance(outcome, VLMError):
                        transport = f"{type(outcome).__name__}: {outcome}"
                    outcome = agent.error_result(query, outcome)
                writer.add(query.query_id, outcome, transport)


@contextlib.contextmanager
def _ctrl_c_cancels(task: asyncio.Task[Any] | None) -> Iterator[None]:
    """Ctrl-C (SIGINT) cancels ``task`` (the queries in flight with it) and surfaces as
    KeyboardInterrupt, however long the server takes to answer. The loop's own signal
    handler is used because it wakes the loop whichever thread the signal lands on;
    Python's default handler waits for the main thread to run again, which a loop waiting
    on a stalled server may not do until a request times out. Outside the main thread (or
    without signals) the default behaviour stays."""
    loop = asyncio.get_running_loop()
    interrupted = False

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted = True
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError, ValueError):
        yield
        return
    try:
        yield
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)
