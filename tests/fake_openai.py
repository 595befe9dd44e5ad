"""A fake OpenAI-compatible chat server on 127.0.0.1 for tests: ``answer(body)`` decides
each reply; requests are kept for assertions. Not a test module (no tests here)."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# answer(body) -> (content, finish_reason) or (HTTP status, error message) for a refusal
Answer = Callable[[dict[str, Any]], tuple[Any, str]]


def parts(body: dict[str, Any]) -> tuple[str, list[tuple[int, int]]]:
    """(all text of the request, (width, height) of every image sent, in order)."""
    from PIL import Image

    texts, sizes = [], []
    for m in body["messages"]:
        if isinstance(m["content"], str):
            texts.append(m["content"])
            continue
        for p in m["content"]:
            if p["type"] == "text":
                texts.append(p["text"])
            else:
                raw = base64.b64decode(p["image_url"]["url"].split(",", 1)[1])
                sizes.append(Image.open(io.BytesIO(raw)).size)
    return " ".join(texts), sizes


def completion(content: str, finish: str = "stop", model: str = "fake") -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": content}}]}  # fmt: skip


@contextmanager
def fake_server(answer: Answer) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """``(base_url, requests)`` of a running server; an int first item of ``answer``'s
    result is an HTTP error status with that message (vLLM's error body)."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            first, second = answer(body)
            if isinstance(first, int):
                self._send(first, {"object": "error", "message": second, "code": first})
            else:
                self._send(200, completion(first, second))

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", seen
    finally:
        httpd.shutdown()
