"""``ricl eval`` killed for real (SIGKILL, then Ctrl-C) in a subprocess while it talks to an
OpenAI-compatible server, then ``--resume``: every instance ends answered exactly once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from ricl_apps.evaluation.runner import last_rows, read_rows
from tests.agent_fixtures import make_phantom_index

pytestmark = pytest.mark.slow


class _Slow(BaseHTTPRequestHandler):
    """A chat-completions endpoint answering one box after 80 ms. Requests past ``limit``
    wait until ``limit`` is raised, so a test decides how many answers a run gets before it
    is killed, however slow the machine (no race between the kill and the run's end)."""

    calls = 0
    limit = 10**9
    cond = threading.Condition()

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        json.loads(self.rfile.read(length))
        cls = type(self)
        with cls.cond:
            if _client_gone(self.connection):
                return  # sent just before a kill: it must not take an answer from the next run
            cls.calls += 1
            n = cls.calls
            cls.cond.wait_for(lambda: n <= cls.limit, timeout=300)
        time.sleep(0.08)
        body = json.dumps({
            "id": "c", "object": "chat.completion", "created": 0, "model": "slow",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": "[[0.1, 0.2, 0.5, 0.6]]"}}],
        }).encode()  # fmt: skip
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client was killed while this request waited

    def log_message(self, *args) -> None:
        pass


def _client_gone(sock: socket.socket) -> bool:
    """True when the client closed its end (a killed process): a peek reads end-of-file."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False  # alive, waiting for the answer
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def _answer_at_most(n: int | None) -> None:
    """Let the next ``n`` requests (all of them when None) be answered; later ones wait."""
    with _Slow.cond:
        _Slow.limit = 10**9 if n is None else _Slow.calls + n
        _Slow.cond.notify_all()


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    _answer_at_most(None)
    httpd.shutdown()


@pytest.fixture(autouse=True)
def _open_gate():
    yield
    _answer_at_most(None)  # a failed test must not leave the next one's requests waiting


def _config(tmp_path: Path, url: str) -> Path:
    index, ds = make_phantom_index(tmp_path / "p", n=60)
    cfg = {
        "run_id": "killed",
        "runs_dir": str(tmp_path / "runs"),
        "dataset": {"name": "phantom", "root": str(ds.root), "split": "test"},
        "agent": {"index": str(index), "selector": "random", "k": 1, "codec": "json",
                  "backend": "openai", "backend_options": {"base_url": url, "model": "slow"}},
        "concurrency": 2,
        "report": False,
        "rodeo": False,
    }  # fmt: skip
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start(cfg: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ricl_apps.cli", "eval", "--config", str(cfg), "--no-progress", *extra]
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # SIGABRT prints every thread's stack
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)  # fmt: skip


def _wait_exit(proc: subprocess.Popen, timeout: float) -> int:
    """The exit status; a process still running after ``timeout`` fails the test with the
    stacks of all its threads (what it waits for)."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, _ = proc.communicate(timeout=30)
        pytest.fail(f"eval still running {timeout} s after the signal:\n{out[-6000:]}")


def _wait_rows(path: Path, n: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().count("\n") >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"eval ended early:\n{proc.stdout.read()}")
        time.sleep(0.05)
    pytest.fail("no rows appeared")


def test_sigkill_and_ctrl_c_then_resume_answer_every_instance_once(tmp_path, server):
    cfg = _config(tmp_path, server)
    preds = tmp_path / "runs" / "killed" / "predictions.jsonl"
    _answer_at_most(5)  # the run cannot finish: 5 answers, then its requests wait
    proc = _start(cfg)
    _wait_rows(preds, 5, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    after_kill = len(read_rows(preds))
    assert after_kill == 5

    _answer_at_most(4)
    proc = _start(cfg, "--resume")
    _wait_rows(preds, after_kill + 4, proc)
    proc.send_signal(signal.SIGINT)  # Ctrl-C while two requests wait for an answer
    assert _wait_exit(proc, 60) != 0
    after_int = len(read_rows(preds))
    assert after_int == after_kill + 4

    _answer_at_most(None)
    done = subprocess.run(
        [sys.executable, "-m", "ricl_apps.cli", "eval", "--config", str(cfg), "--no-progress",
         "--resume", "--json"],
        capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    rows = read_rows(preds)
    final = last_rows(rows)
    assert summary["complete"] and len(final) == summary["n_instances"]
    assert sorted(r["instance_id"] for r in rows) == sorted(final)  # no instance twice
    assert all(r["status"] == "ok" for r in rows)
    assert summary["metrics"]["n_instances"] == summary["n_instances"]


def test_ray_engine_sigkill_then_resume_answers_every_instance_once(tmp_path, server):
    """The same with ``--engine ray``: the driver writes the rows, so a kill loses only
    what was in flight, and the Ray cluster it started goes with it."""
    pytest.importorskip("ray.data")
    cfg = _config(tmp_path, server)
    preds = tmp_path / "runs" / "killed" / "predictions.jsonl"
    ray_opts = ("--engine", "ray", "--set", "engine.actors=2", "--set", "engine.batch_size=2")
    _answer_at_most(6)  # the run cannot finish before the kill
    proc = _start(cfg, *ray_opts)
    _wait_rows(preds, 4, proc, timeout=480)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    after_kill = len(read_rows(preds))
    assert 4 <= after_kill <= 6

    _answer_at_most(None)

    done = subprocess.run(
        [sys.executable, "-m", "ricl_apps.cli", "eval", "--config", str(cfg), "--no-progress",
         "--resume", "--json", *ray_opts],
        capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    rows = read_rows(preds)
    final = last_rows(rows)
    assert summary["complete"] and len(final) == summary["n_instances"]
    assert sorted(r["instance_id"] for r in rows) == sorted(final)  # no instance twice
    assert summary["engine"]["name"] == "ray"
