"""A loopback fake Ollama server speaking the real HTTP API, for tests.

It runs real HTTP/1.1 on 127.0.0.1 (a random port) in its own threads, so
sync, asyncio and trio clients can all use it::

    with FakeOllama() as ollama:
        client = GleitzeitClient(ollama_url=ollama.url)

Replies are deterministic (:meth:`FakeOllama.reply_for`), streamed as NDJSON
in several chunks with the usage figures on the final ``done`` object, like
Ollama. Knobs cover latency, model load time, parallel slots per model with a
bounded wait queue (503 when full), injected HTTP errors, dropped connections
and in-band ``{"error": ...}`` lines; every request is logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

__all__ = ["FakeOllama", "LoggedRequest"]

VERSION = "0.12.3"
_MODELS = {
    "llama3.2:latest": {"family": "llama", "capabilities": ["completion", "tools"]},
    "llava:latest": {"family": "llava", "capabilities": ["completion", "vision"]},
}


@attrs.frozen
class LoggedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _full_name(name: str) -> str:
    name = name.strip().lower().removeprefix("library/")
    return name if ":" in name else name + ":latest"


class FakeOllama:
    """A fake Ollama server. Use as a context manager (or call start/stop).

    Args:
        latency: Seconds before the first chunk (prompt evaluation).
        chunk_delay: Seconds between streamed chunks.
        load_delay: Seconds the first request to each model waits (model load).
        parallel: Requests one model serves at once (Ollama's default is 1).
        max_queue: Requests that may wait for a slot; more get 503 at once.
        models: Extra model names to offer besides llama3.2 and llava.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        load_delay: float = 0.0,
        parallel: int = 64,
        max_queue: int = 512,
        models: tuple[str, ...] = (),
    ) -> None:
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.load_delay = load_delay
        self.parallel = parallel
        self.max_queue = max_queue
        self.models = dict(_MODELS)
        for name in models:
            self.models[_full_name(name)] = {"family": "test", "capabilities": ["completion"]}
        self._lock = threading.Lock()
        self._slots: dict[str, threading.Semaphore] = {}
        self._waiting = 0
        self._loaded: set[str] = set()
        self._fail: list[tuple[int, str]] = []
        self._drops = 0
        self._error_after: int | None = None
        self._hold: tuple[int, float, threading.Event] | None = None
        self.requests: list[LoggedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled_generations = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<FakeOllama {self.url if self._server else 'stopped'}>"

    # --- lifecycle ------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:41234``."""
        assert self._server is not None, "the server is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> FakeOllama:
        """Start serving in a background thread."""
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-ollama", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- knobs ----------------------------------------------------------------

    def reset(self) -> None:
        """Forget logged requests, pending faults and loaded models; keep the timings."""
        with self._lock:
            self.requests.clear()
            self._fail.clear()
            self._drops = 0
            self._error_after = None
            self._loaded.clear()
            self.max_in_flight = self.in_flight
            self.cancelled_generations = 0
            if self._hold is not None:
                self._hold[2].set()
            self._hold = None

    def hold(self, count: int, timeout: float = 30.0) -> None:
        """Hold generations until ``count`` are in flight at once, then let all go.

        For tests that a concurrency bound is reached without timing: with a
        bound below ``count`` the held requests go on after ``timeout``
        seconds, and :attr:`max_in_flight` shows the shortfall.
        """
        with self._lock:
            self._hold = (count, timeout, threading.Event())

    def fail_next(
        self,
        count: int,
        status: int = 503,
        message: str = "server busy, please try again.  maximum pending requests exceeded",
    ) -> None:
        """The next ``count`` generation requests answer ``status`` with ``{"error": message}``."""
        with self._lock:
            self._fail.extend([(status, message)] * count)

    def drop_next(self, count: int) -> None:
        """The next ``count`` generation requests get their connection closed, no answer."""
        with self._lock:
            self._drops += count

    def error_after(self, chunks: int) -> None:
        """The next streamed generation sends ``chunks`` chunks, then an in-band error."""
        with self._lock:
            self._error_after = chunks

    # --- replies ----------------------------------------------------------------

    @staticmethod
    def reply_for(model: str, prompt: str, images: int = 0) -> str:
        """The text the server answers for this model, prompt and number of images."""
        digest = hashlib.sha256(f"{_full_name(model)}|{prompt}|{images}".encode()).hexdigest()
        seen = f" I see {images} image{'s' if images != 1 else ''}." if images else ""
        return f"Reply {digest[:8]} to: {prompt[:60]}.{seen}"

    def _take_fault(self) -> tuple[str, Any] | None:
        with self._lock:
            if self._drops:
                self._drops -= 1
                return ("drop", None)
            if self._fail:
                return ("fail", self._fail.pop(0))
            return None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOllama
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    # --- plumbing ---------------------------------------------------------------

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.fake.requests.append(
            LoggedRequest(
                self.command, self.path, dict(self.headers), None if not raw else _try_json(raw)
            )
        )
        return _try_json(raw) if raw else None

    def _send(
        self, status: int, payload: Any, content_type: str = "application/json; charset=utf-8"
    ) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message})

    def _chunk(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # --- routes -----------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self.fake.requests.append(LoggedRequest(self.command, self.path, dict(self.headers), None))
        if self.path == "/":
            self._send(200, b"Ollama is running", "text/plain; charset=utf-8")
        elif self.path == "/api/version":
            self._send(200, {"version": VERSION})
        elif self.path == "/api/tags":
            models = [
                {
                    "name": name,
                    "model": name,
                    "modified_at": _now(),
                    "size": 2_019_393_189,
                    "digest": hashlib.sha256(name.encode()).hexdigest(),
                    "details": {
                        "parent_model": "",
                        "format": "gguf",
                        "family": info["family"],
                        "families": [info["family"]],
                        "parameter_size": "3.2B",
                        "quantization_level": "Q4_K_M",
                    },
                }
                for name, info in self.fake.models.items()
            ]
            self._send(200, {"models": models})
        elif self.path == "/api/ps":
            self._send(200, {"models": []})
        else:
            self._send(404, b"404 page not found", "text/plain")

    def do_POST(self) -> None:
        body = self._body()
        if self.path not in ("/api/chat", "/api/generate", "/api/show"):
            self._send(404, b"404 page not found", "text/plain")
            return
        if not isinstance(body, dict):
            self._error(400, "missing request body")
            return
        model = body.get("model")
        if not model:
            self._error(400, "model is required")
            return
        name = _full_name(str(model))
        if name not in self.fake.models:
            self._error(404, f"model '{model}' not found")
            return
        if self.path == "/api/show":
            info = self.fake.models[name]
            self._send(
                200,
                {
                    "modelfile": f"FROM {name}",
                    "parameters": "",
                    "template": "",
                    "details": {"family": info["family"], "format": "gguf"},
                    "model_info": {"general.architecture": info["family"]},
                    "capabilities": info["capabilities"],
                    "modified_at": _now(),
                },
            )
            return
        self._generate(body, name)

    def _generate(self, body: dict[str, Any], name: str) -> None:
        fake = self.fake
        chat = self.path == "/api/chat"
        prompt, images, problem = _prompt_of(body, chat)
        if problem:
            self._error(400, problem)
            return
        fault = fake._take_fault()
        if fault is not None:
            if fault[0] == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            status, message = fault[1]
            self._error(status, message)
            return
        with fake._lock:
            slots = fake._slots.setdefault(name, threading.Semaphore(fake.parallel))
            if fake._waiting >= fake.max_queue + fake.parallel:
                full = True
            else:
                full = False
                fake._waiting += 1
        if full:
            self._error(503, "server busy, please try again.  maximum pending requests exceeded")
            return
        try:
            with slots:
                with fake._lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    first_use = name not in fake._loaded
                    fake._loaded.add(name)
                    hold = fake._hold
                    if hold is not None and fake.in_flight >= hold[0]:
                        hold[2].set()
                try:
                    if hold is not None:
                        hold[2].wait(hold[1])
                    self._stream_reply(body, name, prompt, images, chat, first_use)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
        finally:
            with fake._lock:
                fake._waiting -= 1

    def _stream_reply(
        self, body: dict[str, Any], name: str, prompt: str, images: int, chat: bool, first_use: bool
    ) -> None:
        fake = self.fake
        start = time.perf_counter_ns()
        load = fake.load_delay if first_use else 0.0
        time.sleep(load + fake.latency)
        text = fake.reply_for(name, prompt, images)
        options = body.get("options") or {}
        limit = options.get("num_predict")
        words = text.split(" ")
        done_reason = "stop"
        if isinstance(limit, int) and 0 <= limit < len(words):
            words, done_reason = words[:limit], "length"
        pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
        model = body["model"]
        stats = {
            "total_duration": 0,
            "load_duration": int(load * 1e9),
            "prompt_eval_count": max(1, len(prompt.split())),
            "prompt_eval_duration": 1000,
            "eval_count": len(pieces),
            "eval_duration": 1000 * max(1, len(pieces)),
        }

        def final() -> dict[str, Any]:
            obj: dict[str, Any] = {
                "model": model,
                "created_at": _now(),
                "done": True,
                "done_reason": done_reason,
                **stats,
            }
            obj["total_duration"] = time.perf_counter_ns() - start
            if chat:
                obj["message"] = {"role": "assistant", "content": ""}
            else:
                obj["response"] = ""
            return obj

        def piece(content: str) -> dict[str, Any]:
            obj: dict[str, Any] = {"model": model, "created_at": _now(), "done": False}
            if chat:
                obj["message"] = {"role": "assistant", "content": content}
            else:
                obj["response"] = content
            return obj

        if body.get("stream", True) is False:
            whole = piece("".join(pieces))
            whole.update(final())
            if chat:
                whole["message"] = {"role": "assistant", "content": "".join(pieces)}
            else:
                whole["response"] = "".join(pieces)
            self._send(200, whole)
            return
        with fake._lock:
            error_after, fake._error_after = fake._error_after, None
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for i, content in enumerate(pieces):
                if error_after is not None and i >= error_after:
                    self._chunk({"error": "an error was encountered while running the model"})
                    break
                self._chunk(piece(content))
                if fake.chunk_delay:
                    time.sleep(fake.chunk_delay)
            else:
                self._chunk(final())
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            with fake._lock:
                fake.cancelled_generations += 1
            self.close_connection = True


def _try_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _prompt_of(body: dict[str, Any], chat: bool) -> tuple[str, int, str | None]:
    """(the prompt text the reply is derived from, number of images, a 400 message)."""
    images: list[Any] = []
    if chat:
        messages = body.get("messages") or []
        if not isinstance(messages, list):
            return "", 0, "invalid messages"
        prompt = ""
        for message in messages:
            if not isinstance(message, dict):
                return "", 0, "invalid message"
            if message.get("role") == "user":
                prompt = str(message.get("content", ""))
            images.extend(message.get("images") or [])
    else:
        prompt = str(body.get("prompt", ""))
        images = list(body.get("images") or [])
    for image in images:
        if not isinstance(image, str):
            return "", 0, "invalid image"
        try:
            base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            bad = next((i for i, ch in enumerate(image) if not (ch.isalnum() or ch in "+/=")), 0)
            return "", 0, f"illegal base64 data at input byte {bad}"
    return prompt, len(images), None


FakeOllama.__module__ = "gleitzeit.testing"
LoggedRequest.__module__ = "gleitzeit.testing"
