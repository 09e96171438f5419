"""llm/chat, llm/generate and llm/vision against Ollama's HTTP API (httpx, HTTP/1.1).

* One ``httpx.AsyncClient`` (one connection pool) per gleitzeit client,
  created on first use and closed with the client.
* Always streams (NDJSON), sending ``stream`` explicitly: long generations
  never hit a read timeout between bytes, and cancelling closes the stream so
  the server stops generating. An in-band ``{"error": ...}`` line is a failure
  even after a 200.
* At most ``max_in_flight`` requests per host at once (default 16), so big
  fan-outs queue here instead of overflowing Ollama's queue into 503s. A
  default bound (not set by the user) widens for a batch that asks for more
  files in flight (:meth:`OllamaProvider.allow`).
* Errors are mapped by status and exception type, never by message text:
  refused/unreachable → PROVIDER_NOT_AVAILABLE; 404 → the model is missing
  (``ollama pull``); 400 → INVALID_PARAMS; 429/503 → retried, then
  PROVIDER_OVERLOADED; 500/dropped connection/in-band error → retried, then
  PROVIDER_UNHEALTHY; a read timeout → PROVIDER_TIMEOUT (not retried: a slow
  model stays slow).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import random
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.to_thread

from ..core._methods import MethodSpec
from ..core.errors import ErrorCode, ProviderError, TaskError
from . import BaseProvider
from .python import resolve_path

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx

    from . import Call

__all__ = ["DEFAULT_CHAT_MODEL", "DEFAULT_VISION_MODEL", "OLLAMA_SPECS", "OllamaProvider"]

log = logging.getLogger("gleitzeit.ollama")

DEFAULT_CHAT_MODEL: Final = "llama3.2:latest"
DEFAULT_VISION_MODEL: Final = "llava:latest"
MAX_FILE_BYTES: Final = 1 << 20
#: Requests in flight per host when the user set no bound.
DEFAULT_MAX_IN_FLIGHT: Final = 16
_IMAGE_SUFFIXES: Final = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"})
_USAGE: Final = ("done_reason", "prompt_eval_count", "eval_count", "total_duration")

_NUM: Final = (int, float)
_TEXT: Final = (str,)
_LLM_COMMON: Final[dict[str, tuple[type, ...]]] = {
    "model": _TEXT,
    "system": _TEXT,
    "temperature": _NUM,
    "max_tokens": (int,),
    "options": (dict,),
    "format": (str, dict),
    "keep_alive": (str, int, float),
    "file_path": _TEXT,
    "files": (list,),
    "batch_mode": (bool,),  # accepted from the earlier system, ignored
}


def _check_messages(params: Mapping[str, Any], source_dir: str | None) -> list[tuple[str, str]]:
    """Each literal message is a mapping with 'role' and 'content' strings."""
    messages = params.get("messages")
    problems = []
    if isinstance(messages, list):
        for i, msg in enumerate(messages):
            if (
                not isinstance(msg, dict)
                or not isinstance(msg.get("role"), str)
                or not (isinstance(msg.get("content"), str) or "images" in msg)
            ):
                problems.append(
                    (
                        "params.messages",
                        f"message {i + 1} must be a mapping with 'role' and 'content' strings",
                    )
                )
    return problems


#: The methods this provider serves.
OLLAMA_SPECS: Final = (
    MethodSpec(
        "llm/chat",
        {**_LLM_COMMON, "messages": (list,), "prompt": _TEXT},
        any_of=(("messages", "prompt"),),
        check=_check_messages,
        description="Chat with an Ollama model.",
    ),
    MethodSpec(
        "llm/generate",
        {**_LLM_COMMON, "prompt": _TEXT},
        any_of=(("prompt",),),
        description="Complete a prompt with an Ollama model.",
    ),
    MethodSpec(
        "llm/vision",
        {
            **_LLM_COMMON,
            "messages": (list,),
            "prompt": _TEXT,
            "images": (list, str),
            "image_path": _TEXT,
            "image_paths": (list,),
        },
        any_of=(("images", "image_path", "image_paths"),),
        check=_check_messages,
        description="Ask an Ollama vision model about images.",
    ),
)


class _Retry(Exception):
    """A failure worth another attempt; carries the error to raise if none is left."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(str(error))
        self.error = error


class OllamaProvider(BaseProvider):
    """Talks to one Ollama server.

    Args:
        base_url: e.g. ``http://localhost:11434``.
        max_in_flight: Most requests in flight to this host at once; None (the
            default) means :data:`DEFAULT_MAX_IN_FLIGHT`, widened by
            :meth:`allow` for batches that ask for more.
        connect_timeout: Seconds to establish a connection (short: a dead
            server should fail fast).
        read_timeout: Seconds to wait for the next bytes (generous: the first
            token waits for the model to load and the prompt to be read).
        retries: Extra attempts for 429/5xx answers and dropped connections.
        retry_delay: Base of the exponential backoff between those attempts.
    """

    provider_id = "ollama"
    specs = OLLAMA_SPECS

    def __init__(
        self,
        base_url: str,
        *,
        max_in_flight: int | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 600.0,
        retries: int = 3,
        retry_delay: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        #: The bound the user set, or None.
        self.max_in_flight = max_in_flight
        #: The bound in force.
        self.limit = max_in_flight if max_in_flight is not None else DEFAULT_MAX_IN_FLIGHT
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self._http: httpx.AsyncClient | None = None
        self._limiter: anyio.CapacityLimiter | None = None  # made lazily: binds to a loop
        self._transport: httpx.AsyncBaseTransport | None = None

    def __repr__(self) -> str:
        return f"<OllamaProvider {self.base_url} max_in_flight={self.limit}>"

    def allow(self, in_flight: int) -> None:
        """Let at least ``in_flight`` requests through at once, unless the user set a bound.

        A batch asking for more files in flight than the default bound widens it
        (for the rest of the client's life); an explicit ``max_in_flight`` holds.
        """
        if self.max_in_flight is not None or in_flight <= self.limit:
            return
        self.limit = in_flight
        if self._limiter is not None:
            self._limiter.total_tokens = in_flight

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx  # deferred: importing httpx costs ~100 ms, and not every run calls it

            timeout = httpx.Timeout(
                connect=self.connect_timeout, read=self.read_timeout, write=60.0, pool=None
            )
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=timeout,
                http2=False,
                trust_env=False,
                # The limiter bounds requests; the pool only keeps connections.
                limits=httpx.Limits(
                    max_connections=self.max_in_flight, max_keepalive_connections=self.limit
                ),
                transport=self._transport,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
        return self._http

    async def aclose(self) -> None:
        """Close the connection pool."""
        http, self._http = self._http, None
        if http is not None:
            with anyio.CancelScope(shield=True):
                await http.aclose()

    # --- requests ----------------------------------------------------------------

    def _data(self, **extra: Any) -> dict[str, Any]:
        return {"provider_id": self.provider_id, "url": self.base_url, **extra}

    async def execute(self, call: Call) -> dict[str, Any]:
        """Run one llm/* call (files and images are read in a worker thread)."""
        if _reads_files(call.params):
            path, body = await anyio.to_thread.run_sync(self.build_request, call)
        else:
            path, body = self.build_request(call)
        return await self.generate(path, body)

    def build_request(self, call: Call) -> tuple[str, dict[str, Any]]:
        """The endpoint and JSON body for a call (files and images read here).

        Raises:
            TaskError: TASK_VALIDATION_FAILED for a missing, binary or oversized
                file or image — before any request is made.
        """
        p = call.params
        vision = call.method == "llm/vision"
        model = p.get("model") or (DEFAULT_VISION_MODEL if vision else DEFAULT_CHAT_MODEL)
        options = dict(p.get("options") or {})
        if p.get("temperature") is not None:
            options["temperature"] = p["temperature"]
        if p.get("max_tokens") is not None:
            options["num_predict"] = p["max_tokens"]
        body: dict[str, Any] = {"model": model, "stream": True}
        if options:
            body["options"] = options
        for key in ("format", "keep_alive"):
            if p.get(key) is not None:
                body[key] = p[key]
        attachments = self._read_files(call)
        if call.method == "llm/generate":
            prompt = str(p.get("prompt", ""))
            if attachments:
                prompt += attachments
            body["prompt"] = prompt
            if p.get("system"):
                body["system"] = p["system"]
            return "/api/generate", body
        messages = [dict(m) for m in p.get("messages") or []]
        if p.get("prompt") is not None or not messages:
            default = "Describe this image" if vision else ""
            messages.append({"role": "user", "content": str(p.get("prompt") or default)})
        if p.get("system"):
            messages.insert(0, {"role": "system", "content": str(p["system"])})
        if attachments:
            if messages[-1].get("role") != "user":
                messages.append({"role": "user", "content": ""})
            messages[-1]["content"] = str(messages[-1].get("content", "")) + attachments
        if vision:
            images = self._read_images(call)
            last = messages[-1] if messages[-1].get("role") == "user" else None
            if last is None:
                last = {"role": "user", "content": "Describe this image"}
                messages.append(last)
            last["images"] = [*last.get("images", []), *images]
        body["messages"] = messages
        return "/api/chat", body

    def _fail_input(self, call: Call, message: str, **extra: Any) -> TaskError:
        return TaskError(
            f"Task {call.task_id!r}: {message}",
            ErrorCode.TASK_VALIDATION_FAILED,
            {"task_id": call.task_id, **extra},
        )

    def _read_files(self, call: Call) -> str:
        names: list[str] = []
        if call.params.get("file_path"):
            names.append(str(call.params["file_path"]))
        names.extend(str(f) for f in call.params.get("files") or [])
        text = ""
        for name in names:
            path = resolve_path(name, call.source_dir)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                if path.is_symlink():
                    raise self._fail_input(
                        call,
                        f"file {name!r} is a dangling symlink: it points to "
                        f"{os.readlink(path)!r}, which does not exist; fix or remove the link.",
                        file=name,
                    ) from None
                raise self._fail_input(
                    call, f"file {name!r} not found ({path}); fix the path.", file=name
                ) from None
            except OSError as exc:
                raise self._fail_input(
                    call, f"cannot read file {name!r}: {exc.strerror}.", file=name
                ) from exc
            if len(data) > MAX_FILE_BYTES:
                raise self._fail_input(
                    call,
                    f"file {name!r} has {len(data):,} bytes, more "
                    f"than the {MAX_FILE_BYTES:,} a prompt may carry.",
                    file=name,
                )
            if b"\x00" in data or path.suffix.lower() in _IMAGE_SUFFIXES:
                raise self._fail_input(
                    call,
                    f"file {name!r} is binary; attach text files "
                    "(use llm/vision with 'images' for pictures).",
                    file=name,
                )
            try:
                content = data.decode("utf-8")
            except UnicodeDecodeError:
                raise self._fail_input(
                    call, f"file {name!r} is not UTF-8 text.", file=name
                ) from None
            text += f"\n\nFile content from {name}:\n{content}"
        return text

    def _read_images(self, call: Call) -> list[str]:
        p = call.params
        raw: list[Any] = []
        images = p.get("images")
        if isinstance(images, str):
            raw.append(images)  # a single image, not a string of characters
        elif isinstance(images, list):
            raw.extend(images)
        if p.get("image_path"):
            raw.append(p["image_path"])
        raw.extend(p.get("image_paths") or [])
        if not raw:
            raise self._fail_input(call, "llm/vision needs 'images' or 'image_path'.")
        out = []
        for item in raw:
            if not isinstance(item, str) or not item:
                raise self._fail_input(call, f"image {item!r:.40} must be a path or base64 text.")
            text = item.split(",", 1)[1] if item.startswith("data:") and "," in item else item
            path = resolve_path(item, call.source_dir) if len(item) < 4096 else None
            if path is not None and path.is_file():
                try:
                    out.append(base64.b64encode(path.read_bytes()).decode())
                except OSError as exc:
                    raise self._fail_input(
                        call, f"cannot read image {item!r}: {exc.strerror}.", image=item
                    ) from exc
                continue
            try:
                if "." in item:  # base64 has no dots: this is a path
                    raise ValueError(item)
                base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise self._fail_input(
                    call,
                    f"image {item[:80]!r} is neither an existing "
                    f"file ({path}) nor base64 data; fix the path.",
                    image=item[:200],
                ) from None
            out.append(text)
        return out

    async def generate(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a streaming generation (with bounded retries) and join the reply."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.limit)
        attempt = 0
        while True:
            try:
                async with self._limiter:
                    return await self._stream(path, body)
            except _Retry as retry:
                attempt += 1
                if attempt > self.retries:
                    raise retry.error from retry.error.__cause__
                delay = self.retry_delay * 2 ** (attempt - 1) * (0.5 + random.random() / 2)
                log.debug(
                    "ollama %s: %s; retry %d in %.2fs", path, retry.error.message, attempt, delay
                )
                await anyio.sleep(delay)

    async def _stream(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        model = body["model"]
        url = self.base_url + path
        try:
            async with self._client().stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._status_error(response, model)
                return await self._collect(response, path, model)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ProviderError(
                f"Cannot reach Ollama at {self.base_url} ({type(exc).__name__}); start it "
                "with 'ollama serve' or set ollama_url / GLEITZEIT_OLLAMA_URL.",
                ErrorCode.PROVIDER_NOT_AVAILABLE,
                self._data(),
            ) from exc
        except httpx.ReadTimeout as exc:
            raise ProviderError(
                f"Ollama at {self.base_url} sent nothing for {self.read_timeout:g} s "
                f"({path}, model {model!r}); the model may still be loading: raise the read "
                "timeout or warm the model up.",
                ErrorCode.PROVIDER_TIMEOUT,
                self._data(model=model),
            ) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise _Retry(
                ProviderError(
                    f"Ollama at {self.base_url} dropped the connection during {path} "
                    f"({type(exc).__name__}); check its logs.",
                    ErrorCode.PROVIDER_UNHEALTHY,
                    self._data(model=model),
                )
            ) from exc
        except httpx.HTTPError as exc:  # anything else httpx raises
            raise ProviderError(
                f"Request to {url} failed: {type(exc).__name__}: {exc}",
                ErrorCode.PROVIDER_NOT_AVAILABLE,
                self._data(),
            ) from exc

    def _status_error(self, response: httpx.Response, model: str) -> Exception:
        status = response.status_code
        try:
            message = str(response.json().get("error", response.text))
        except (ValueError, AttributeError):
            message = response.text
        data = self._data(model=model, status=status, server_message=message[:500])
        if status == 404:
            return ProviderError(
                f"Ollama at {self.base_url} has no model {model!r}; install it with "
                f"'ollama pull {model}' or pick one from 'ollama list'.",
                ErrorCode.INVALID_PARAMS,
                data,
            )
        if status in (429, 503):
            return _Retry(
                ProviderError(
                    f"Ollama at {self.base_url} is overloaded ({status}: {message}); lower the "
                    "concurrency or raise OLLAMA_MAX_QUEUE / OLLAMA_NUM_PARALLEL.",
                    ErrorCode.PROVIDER_OVERLOADED,
                    data,
                )
            )
        if status >= 500:
            return _Retry(
                ProviderError(
                    f"Ollama at {self.base_url} failed ({status}: {message}); check its logs.",
                    ErrorCode.PROVIDER_UNHEALTHY,
                    data,
                )
            )
        return ProviderError(
            f"Ollama rejected the request ({status}: {message}); fix the task's params.",
            ErrorCode.INVALID_PARAMS,
            data,
        )

    async def _collect(self, response: httpx.Response, path: str, model: str) -> dict[str, Any]:
        """Join a streamed reply. The stream is always read to its end (Ollama ends it
        after an in-band error), so no half-read iterator is left behind."""
        chat = path == "/api/chat"
        parts: list[str] = []
        final: dict[str, Any] | None = None
        problem: ProviderError | None = None
        async for line in response.aiter_lines():
            if problem is not None or not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                problem = ProviderError(
                    f"Ollama sent a malformed stream line ({line[:80]!r}).",
                    ErrorCode.PROVIDER_UNHEALTHY,
                    self._data(model=model),
                )
                continue
            if "error" in obj:
                problem = ProviderError(
                    f"Ollama failed while generating with {model!r}: {obj['error']}",
                    ErrorCode.PROVIDER_UNHEALTHY,
                    self._data(model=model, server_message=str(obj["error"])[:500]),
                )
                continue
            parts.append(
                (obj.get("message") or {}).get("content", "") if chat else obj.get("response", "")
            )
            if obj.get("done"):
                final = obj
        if problem is not None:
            raise _Retry(problem)
        if final is None:
            raise _Retry(
                ProviderError(
                    f"Ollama's stream for {model!r} ended before its final object.",
                    ErrorCode.PROVIDER_UNHEALTHY,
                    self._data(model=model),
                )
            )
        text = "".join(parts)
        result: dict[str, Any] = {
            "response": text,
            "content": text,
            "model": final.get("model", model),
        }
        for key in _USAGE:
            result[key] = final.get(key)
        return result

    # --- health ------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """Reachability, server version and installed models (never raises)."""
        import httpx

        out: dict[str, Any] = {
            "provider_id": self.provider_id,
            "url": self.base_url,
            "reachable": False,
            "version": None,
            "models": [],
        }
        try:
            client = self._client()
            version = await client.get("/api/version", timeout=self.connect_timeout)
            tags = await client.get("/api/tags", timeout=self.connect_timeout)
            out["version"] = version.json().get("version")
            out["models"] = [m.get("model") or m.get("name") for m in tags.json()["models"]]
            out["reachable"] = True
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
        return out


_FILE_PARAMS = ("file_path", "files", "images", "image_path", "image_paths")


def _reads_files(params: dict[str, Any]) -> bool:
    """True if building the request reads files (which must not block the loop)."""
    return any(params.get(key) for key in _FILE_PARAMS)
