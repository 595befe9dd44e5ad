"""Ctrl-C stops the local engine at once even when the signal lands on another thread
than the one running the event loop, and the loop waits on a server that never answers
(Python's default handler would only run when the loop's thread next wakes)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest

from ricl_apps.evaluation.engines.local import _ctrl_c_cancels


def _sigint_on_another_thread(delay: float) -> threading.Thread:
    def fire() -> None:
        time.sleep(delay)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)

    t = threading.Thread(target=fire, daemon=True)
    t.start()
    return t


def test_sigint_on_a_worker_thread_cancels_a_stalled_run_as_keyboard_interrupt():
    async def stalled() -> None:
        with _ctrl_c_cancels(asyncio.current_task()):
            _sigint_on_another_thread(0.3)
            await asyncio.sleep(30)  # a request the server never answers

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(stalled())
    assert time.monotonic() - t0 < 10
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_cancellation_without_ctrl_c_stays_cancellation():
    async def cancelled() -> None:
        with _ctrl_c_cancels(asyncio.current_task()):
            asyncio.current_task().cancel()
            await asyncio.sleep(1)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
