"""The HTTP side of `moeaudio serve`: OpenAI's audio routes, the demo page, and the guards.

Every refusal is OpenAI's error object with a 4xx status and a message naming the field and the fix
(:class:`~moeaudio.serve.protocol.APIError`); a bug is a 500 in the same shape, logged, and the
next request is served. Two checks run before a route sees the request (:class:`Guard`, plain
ASGI): the API key, and the body size (by ``Content-Length`` when sent, else counted as the body
streams in), so an oversized upload is refused without being held in memory.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from moeaudio.data.tasks import TASK_INSTRUCTIONS
from moeaudio.eval.transcribe import TRANSCRIBE_MAX_NEW_TOKENS, stitch_windows, window_examples
from moeaudio.runtime.batching import Example
from moeaudio.runtime.windows import window_seconds
from moeaudio.serve.engine import Engine, Job, JobResult
from moeaudio.serve.protocol import (
    RESPONSE_FORMATS,
    APIError,
    ChatRequest,
    chat_chunk,
    chat_completion,
    chat_turn,
    error_body,
    new_id,
    transcription_body,
    usage,
)

__all__ = ["DEFAULT_MAX_TOKENS", "TRANSCRIPTION_FIELDS", "Guard", "create_app"]

log = logging.getLogger("moeaudio.serve")

#: Tokens generated for a chat answer when the request names no ``max_tokens``.
DEFAULT_MAX_TOKENS = 200
#: The form fields ``/v1/audio/transcriptions`` takes (OpenAI's, plus ``routing``).
TRANSCRIPTION_FIELDS = frozenset(
    {
        "file",
        "model",
        "response_format",
        "language",
        "prompt",
        "temperature",
        "timestamp_granularities[]",
        "routing",
    }
)
_OPEN = frozenset({"/", "/health"})  # no API key: the liveness probe, and the page (it holds no data)
_MEDIA = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}


def _json(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status)


class _BodyTooLarge(APIError):
    def __init__(self, limit: int):
        super().__init__(
            f"the request body is larger than this server takes ({limit / 1e6:g} MB; moeaudio serve "
            "--max-body-mb)",
            413,
            code="request_too_large",
        )


class Guard:
    """API key (``Authorization: Bearer KEY``, on every route but ``/health`` and the page) and the
    body size limit, before routing."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, api_key: str | None):
        self.app = app
        self.max_body = max_body_bytes
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        refusal = self._refusal(scope["path"], headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge(self.max_body)
            return message

        await self.app(scope, counted, send)

    def _refusal(self, path: str, headers: dict[bytes, bytes]) -> JSONResponse | None:
        if self.api_key is not None and path not in _OPEN:
            given = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, key = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                key.strip().encode(), self.api_key.encode()
            ):
                message = (
                    "Incorrect API key provided. Send `Authorization: Bearer KEY` with the key given to "
                    "moeaudio serve --api-key"
                    if given
                    else "You didn't provide an API key. Send `Authorization: Bearer KEY` (moeaudio serve --api-key)"
                )
                return _json(401, error_body(message, code="invalid_api_key"))
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return _json(
                    400,
                    error_body(
                        f"Content-Length {length.decode('latin-1')!r} is not a number", param="Content-Length"
                    ),
                )
            if size > self.max_body:
                return _json(413, _BodyTooLarge(self.max_body).body())
        return None


def _branch(part: object) -> bool:
    """A union member's tag in pydantic's error location (``str``, ``list[ContentPart]``), not a field."""
    return isinstance(part, str) and (part == "str" or "[" in part)


def _param(loc: tuple) -> str:
    out = ""
    for part in loc:
        if _branch(part):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validation_error(exc: ValidationError) -> APIError:
    """pydantic's most specific complaint as one sentence naming the field (a message whose content is
    a list of parts is judged as a list, not also as the plain string it could have been)."""
    errors = exc.errors()
    specific = [e for e in errors if "str" not in e.get("loc", ())] or errors
    err = max(specific, key=lambda e: len(e.get("loc", ())))
    param = _param(tuple(err.get("loc", ())))
    if err["type"] == "extra_forbidden":
        return APIError(
            f"unknown field {param!r}: this server does not take it", param=param, code="unknown_field"
        )
    if err["type"] == "json_invalid":
        return APIError(f"the body is not valid JSON ({err['msg']})", code="invalid_json")
    return APIError(f"{param or 'body'}: {err['msg']}", param=param or None)


def _bool_field(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("", "false", "0", "no"):
        return False
    if value.lower() in ("true", "1", "yes"):
        return True
    raise APIError(f"{name} must be true or false (got {value!r})", param=name)


def create_app(
    engine: Engine,
    model_id: str,
    *,
    api_key: str | None = None,
    max_body_bytes: int = 25_000_000,
) -> Guard:
    """The ASGI application: FastAPI routes behind the :class:`Guard`."""
    app = FastAPI(title="moeaudio serve", docs_url=None, redoc_url=None, openapi_url=None)
    model = engine.model
    created = int(time.time())
    context = getattr(model.llm.config, "max_position_embeddings", None)  # the longest answer possible
    page = resources.files("moeaudio.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return _json(exc.status, exc.body())

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = (
            f"no route {request.method} {request.url.path}"
            if exc.status_code in (404, 405)
            else str(exc.detail)
        )
        return _json(
            exc.status_code, error_body(message, code="not_found" if exc.status_code == 404 else None)
        )

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return _json(
            500, error_body(f"internal error ({type(exc).__name__}); see the server log", "server_error")
        )

    def check_model(name: str | None) -> None:
        if not name:
            raise APIError("model is required (GET /v1/models lists it)", param="model")
        if name != model_id:
            raise APIError(
                f"The model '{name}' does not exist; this server serves '{model_id}'",
                404,
                param="model",
                code="model_not_found",
            )

    async def run(job: Job) -> JobResult:
        return await asyncio.wrap_future(engine.submit(job))

    # ------------------------------------------------------------------------------ simple routes

    @app.get("/", response_class=HTMLResponse)
    async def demo_page() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> JSONResponse:
        body = {
            "status": "ok" if engine.alive else "error",
            "model": model_id,
            "queued": engine.queued,
            "batches": engine.batches,
        }
        return _json(200 if engine.alive else 503, body)

    def model_card() -> dict[str, Any]:
        return {
            "id": model_id,
            "object": "model",
            "created": created,
            "owned_by": "moeaudio",
            "adapter": model.recipe.adapter.kind,
            "routing": engine.has_router,
            "max_audio_seconds": engine.max_audio_seconds,
            "max_turn_audio_seconds": engine.turn_seconds,
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name}")
    async def one_model(name: str) -> dict[str, Any]:
        check_model(name)
        return model_card()

    # --------------------------------------------------------------------------- transcriptions

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Any:
        try:
            form = await request.form(max_files=1, max_fields=len(TRANSCRIPTION_FIELDS))
        except APIError:
            raise
        except Exception as exc:  # multipart parse errors: too many fields/files, a broken body
            raise APIError(
                f"the body is not a multipart form this route takes ({exc}); send the fields "
                f"{', '.join(sorted(TRANSCRIPTION_FIELDS))}",
                code="invalid_form",
            ) from None
        try:
            unknown = sorted(set(form.keys()) - TRANSCRIPTION_FIELDS)
            if unknown:
                raise APIError(
                    f"unknown field {unknown[0]!r}: this route takes {', '.join(sorted(TRANSCRIPTION_FIELDS))}",
                    param=unknown[0],
                    code="unknown_field",
                )
            fields = {k: v for k, v in form.items() if not isinstance(v, UploadFile)}
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise APIError("file is required: the audio, as a multipart file upload", param="file")
            check_model(fields.get("model"))
            fmt = fields.get("response_format") or "json"
            if fmt not in RESPONSE_FORMATS:
                raise APIError(
                    f"response_format {fmt!r}: use one of {', '.join(RESPONSE_FORMATS)}",
                    param="response_format",
                )
            routing = _bool_field(fields.get("routing"), "routing")
            granularities = set(form.getlist("timestamp_granularities[]")) - {"segment"}
            if granularities:
                raise APIError(
                    f"timestamp_granularities[] {sorted(granularities)}: this model gives segment "
                    "timestamps only (one per window)",
                    param="timestamp_granularities[]",
                )
            name = upload.filename or "upload"
            data = await upload.read()
        finally:
            await form.close()
        wave = await run_in_threadpool(engine.decode, data, "file", name)
        prompt = fields.get("prompt") or TASK_INSTRUCTIONS["asr"]
        sr = engine.sample_rate
        examples, owners = window_examples([wave], [name], sr, window_seconds(model), prompt)
        result = await run(Job(examples, TRANSCRIBE_MAX_NEW_TOKENS, wave if routing else None))
        (transcript,) = stitch_windows([wave], [name], sr, owners, result.texts, result.seconds)
        body = transcription_body(transcript, fmt, fields.get("language"), result.tokens, result.routing)
        if isinstance(body, str):
            return PlainTextResponse(body, media_type=_MEDIA[fmt])
        return body

    # -------------------------------------------------------------------------- chat completions

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        raw = await request.body()
        try:
            req = ChatRequest.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            raise _validation_error(exc) from None
        check_model(req.model)
        turn = chat_turn(req)
        max_tokens = req.max_completion_tokens or req.max_tokens or DEFAULT_MAX_TOKENS
        if context is not None and max_tokens > context:
            name = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
            raise APIError(
                f"{name} {max_tokens} is more than the model's context ({context} tokens)", param=name
            )
        wave = None
        if turn.audio is not None:
            param = f"{turn.audio_param}.input_audio.data"
            wave = await run_in_threadpool(engine.decode, turn.audio, param, f"{turn.audio_format} audio")
            seconds = len(wave) / engine.sample_rate
            if seconds > engine.turn_seconds + 1e-6:
                raise APIError(
                    f"{param}: {seconds:.1f} s of audio; the model hears at most {engine.turn_seconds:g} s "
                    "in one turn (POST /v1/audio/transcriptions windows longer recordings)",
                    param=param,
                    code="audio_too_long",
                )
        routing_wave = wave if req.routing and wave is not None else None
        job = Job([Example(turn.instruction, None, wave=wave)], max_tokens, routing_wave)
        if not req.stream:
            result = await run(job)
            return chat_completion(
                model_id,
                result.texts[0],
                _finish(result, max_tokens),
                result.prompt_tokens[0],
                len(result.tokens[0]),
                result.routing if req.routing else None,
            )
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(
            _stream(engine, job, model_id, max_tokens, include_usage, req.routing),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return Guard(app, max_body_bytes, api_key)


def _finish(result: JobResult, max_tokens: int) -> str:
    return "length" if len(result.tokens[0]) >= max_tokens else "stop"


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


_DONE = object()


def _stream(engine: Engine, job: Job, model_id: str, max_tokens: int, include_usage: bool, routing: bool):
    """Server-sent events in OpenAI's shape: a role chunk, content chunks as the answer grows, a chunk
    with ``finish_reason`` (and ``routing`` when asked), the usage chunk when asked, ``[DONE]``. A
    client that goes away cancels its job if it has not started; the worker is never disturbed."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[Any] = asyncio.Queue()

    def put(item: Any) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, item)

    job.on_text = put
    future = engine.submit(job)  # before the first byte: a full queue is still a plain 429
    future.add_done_callback(lambda _f: put(_DONE) if not loop.is_closed() else None)
    chunk_id, created = new_id("chatcmpl"), int(time.time())

    async def events():
        try:
            yield _sse(chat_chunk(chunk_id, created, model_id, {"role": "assistant", "content": ""}))
            while (piece := await pieces.get()) is not _DONE:
                yield _sse(chat_chunk(chunk_id, created, model_id, {"content": piece}))
            if future.cancelled() or future.exception() is not None:
                yield _sse(error_body("generation failed; see the server log", "server_error"))
            else:
                result = future.result()
                extra = {"routing": result.routing} if routing else {}
                yield _sse(chat_chunk(chunk_id, created, model_id, {}, _finish(result, max_tokens), **extra))
                if include_usage:
                    n = usage(result.prompt_tokens[0], len(result.tokens[0]))
                    yield _sse(chat_chunk(chunk_id, created, model_id, None, usage=n))
            yield _sse("[DONE]")
        finally:
            job.cancelled.set()  # a no-op once it ran; drops it if the client left before

    return events()
