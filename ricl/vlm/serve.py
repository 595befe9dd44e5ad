"""Start and stop a local ``vllm serve`` (the CPU build's separate environment) from Python.

    with VLLMServer("ricl/assets/vlm/phantom-qwen2vl", max_images=4) as server:
        backend = OpenAIBackend(None, server.base_url)

The vLLM environment: ``python=`` or ``$RICL_VLLM_PYTHON``, else a ``.venv-vllm`` in the
checkout or the current directory, made by ``scripts/setup_vllm_cpu.sh`` (shipped with
the wheel too: ``ricl.resources.shipped("scripts/setup_vllm_cpu.sh")``) (:func:`find_vllm_python` returns None
when there is none). The server runs in its own process group on 127.0.0.1 with the CPU
settings checked on these machines, including ``--mm-processor-kwargs '{"use_fast":
false}'`` so that its image resize is the PIL one the in-process ``hf`` backend uses
(greedy parity). ``stop()`` kills the whole group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Self

from ricl.vlm.errors import VLMConfigError, VLMTransportError

__all__ = ["VLLMServer", "find_vllm_python"]


def find_vllm_python(python: str | None = None) -> str | None:
    """The Python of an environment with vLLM, or None."""
    from ricl.resources import checkout_root

    root = checkout_root()
    places = [python, os.environ.get("RICL_VLLM_PYTHON")]
    places += [base / ".venv-vllm/bin/python" for base in (root, Path.cwd()) if base is not None]
    for candidate in places:
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VLLMServer:
    """``vllm serve MODEL`` on a free local port, served as ``served_name``.

    Raises VLMConfigError (no vLLM environment) and, from :meth:`wait`, VLMTransportError
    with the tail of the server log when it exits or is not healthy in time."""

    def __init__(
        self,
        model: str | Path,
        *,
        max_images: int = 4,
        python: str | None = None,
        log: str | Path | None = None,
        served_name: str = "ricl-vlm",
        max_num_seqs: int = 8,
        extra_args: list[str] | None = None,
    ) -> None:
        found = find_vllm_python(python)
        if found is None:
            raise VLMConfigError(
                "no vLLM environment: run scripts/setup_vllm_cpu.sh (CPU) or set RICL_VLLM_PYTHON"
            )
        from ricl.vlm import resolve_model

        self.python = found
        self.model = resolve_model(str(model))
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.served_name = served_name
        self.log = (
            Path(log) if log else Path(os.environ.get("TMPDIR", "/tmp")) / f"vllm-{self.port}.log"
        )
        from ricl.resources import shipped

        self.cmd = [
            self.python, str(shipped("scripts/vllm_serve.py")), "serve", self.model,
            "--host", "127.0.0.1", "--port", str(self.port), "--served-model-name", served_name,
            "--dtype", "float32", "--max-model-len", "4096", "--max-num-seqs", str(max_num_seqs),
            "--enforce-eager", "--limit-mm-per-prompt", f'{{"image": {max_images}}}',
            "--mm-processor-kwargs", '{"use_fast": false}', *(extra_args or []),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
            "VLLM_CPU_OMP_THREADS_BIND": "nobind",
            "HF_HUB_OFFLINE": "1",
            "VLLM_CACHE_ROOT": str(self.log.parent / f"vllm-cache-{self.port}"),
        }
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.cmd, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        return self

    def wait(self, timeout_s: float = 420) -> Self:
        """Block until ``GET /health`` answers 200."""
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise VLMTransportError(f"vllm serve exited:\n{self._tail()}")
            try:
                with urllib.request.urlopen(self.base_url[:-3] + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(1)
        raise VLMTransportError(f"vllm serve not healthy in {timeout_s:.0f} s:\n{self._tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> Self:
        return self.start().wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()
