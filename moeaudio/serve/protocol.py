"""OpenAI's shapes: the chat request, the chat and transcription answers, and the error object.

Requests are parsed strictly (an unknown field is an error naming it, not silently ignored), so a
client learns at once that a parameter it relies on means nothing here. What OpenAI accepts and
this server honours: ``model``, ``messages`` (one user turn of ``text`` and ``input_audio`` parts),
``max_tokens`` / ``max_completion_tokens``, ``stream``, ``stream_options.include_usage``, ``n=1``;
``temperature``, ``top_p``, ``seed`` and ``user`` are accepted and change nothing (decoding is
greedy). ``routing`` (``true``) is this server's own: the answer then carries the experts the
audio used.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from moeaudio.eval.transcribe import Transcript, format_srt, format_vtt

__all__ = [
    "AUDIO_FORMATS",
    "APIError",
    "ChatRequest",
    "ChatTurn",
    "RESPONSE_FORMATS",
    "chat_chunk",
    "chat_completion",
    "chat_turn",
    "decode_base64",
    "error_body",
    "transcription_body",
]

#: ``input_audio.format`` values (OpenAI's): each is decoded by libsndfile.
AUDIO_FORMATS: tuple[str, ...] = ("wav", "mp3", "flac")
#: ``response_format`` values of ``/v1/audio/transcriptions``.
RESPONSE_FORMATS: tuple[str, ...] = ("json", "text", "srt", "vtt", "verbose_json")


class APIError(Exception):
    """A request the server refuses: answered as ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.code = code
        self.kind = kind

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.kind, self.param, self.code)


def error_body(
    message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# ------------------------------------------------------------------------------------ chat request


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputAudio(_Strict):
    data: str
    format: str


class ContentPart(_Strict):
    type: Literal["text", "input_audio"]
    text: str | None = None
    input_audio: InputAudio | None = None


class Message(_Strict):
    role: str
    content: str | list[ContentPart]
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatRequest(_Strict):
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = None
    user: str | None = None
    routing: bool = False  # moeaudio's own: the experts the audio used


@dataclass
class ChatTurn:
    """What the model is asked: the instruction, and the audio bytes with their declared format."""

    instruction: str
    audio: bytes | None
    audio_format: str | None
    audio_param: str | None  # where the audio sat in the request, for error messages


def decode_base64(data: str, param: str) -> bytes:
    """``input_audio.data``: base64, optionally as a ``data:audio/...;base64,`` URL."""
    text = data.strip()
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if not head.endswith(";base64"):
            raise APIError(f"{param}: a data URL must be base64 (data:audio/wav;base64,...)", param=param)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise APIError(f"{param} is not valid base64 ({exc})", param=param, code="invalid_base64") from None
    if not raw:
        raise APIError(f"{param} is empty: no audio bytes", param=param, code="empty_audio")
    return raw


def chat_turn(request: ChatRequest) -> ChatTurn:
    """The one user turn of ``request.messages``: its text parts joined, its one audio part.

    The model was trained on a single user turn (its recipe fixes the system prompt), so a request
    with other messages is refused rather than answered as if they were not there.
    """
    if len(request.messages) != 1 or request.messages[0].role != "user":
        roles = [m.role for m in request.messages]
        raise APIError(
            f"messages: this model answers one user turn (its recipe fixes the system prompt); got roles "
            f"{roles}. Send messages=[{{'role': 'user', 'content': [text and input_audio parts]}}]",
            param="messages",
        )
    content = request.messages[0].content
    if isinstance(content, str):
        return ChatTurn(content, None, None, None)
    texts: list[str] = []
    audio: tuple[bytes, str, str] | None = None
    for i, part in enumerate(content):
        param = f"messages[0].content[{i}]"
        if part.type == "text":
            if part.text is None or part.input_audio is not None:
                raise APIError(f"{param}: a text part holds `text` only", param=param)
            texts.append(part.text)
            continue
        if part.input_audio is None or part.text is not None:
            raise APIError(f"{param}: an input_audio part holds `input_audio` only", param=param)
        if audio is not None:
            raise APIError(f"{param}: one input_audio part per request (this one is the second)", param=param)
        fmt = part.input_audio.format.lower()
        if fmt not in AUDIO_FORMATS:
            raise APIError(
                f"{param}.input_audio.format {part.input_audio.format!r}: use one of {', '.join(AUDIO_FORMATS)}",
                param=f"{param}.input_audio.format",
            )
        audio = (decode_base64(part.input_audio.data, f"{param}.input_audio.data"), fmt, param)
    instruction = "\n".join(texts).strip()
    if not instruction:
        raise APIError("messages[0].content: no text part; say what to do with the audio", param="messages")
    if audio is None:
        return ChatTurn(instruction, None, None, None)
    return ChatTurn(instruction, audio[0], audio[1], audio[2])


# ------------------------------------------------------------------------------------------ answers


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(
    model: str,
    text: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    routing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` object (one choice)."""
    body: dict[str, Any] = {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }
    if routing is not None:
        body["routing"] = routing
    return body


def chat_chunk(
    chunk_id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a stream; ``delta=None`` gives the usage-only chunk (no choices)."""
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
    )
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
        **extra,
    }


def transcription_body(
    t: Transcript, fmt: str, language: str | None, tokens: list[list[int]], routing: dict[str, Any] | None
) -> dict[str, Any] | str:
    """``/v1/audio/transcriptions``' answer in ``fmt``: a JSON object (json, verbose_json) or text
    (text, srt, vtt, as ``moeaudio transcribe`` writes them). ``tokens``: each segment's token ids."""
    if fmt == "text":
        return t.text + "\n"
    if fmt == "srt":
        return format_srt(t.segments)
    if fmt == "vtt":
        return format_vtt(t.segments)
    body: dict[str, Any] = {"text": t.text}
    if fmt == "verbose_json":
        body = {
            "task": "transcribe",
            "language": language,
            "duration": round(t.duration, 3),
            "text": t.text,
            "segments": [
                {
                    "id": i,
                    "seek": int(round(s.start * 100)),  # Whisper's unit: 10 ms frames
                    "start": s.start,
                    "end": s.end,
                    "text": s.text,
                    "tokens": ids,
                    "temperature": 0.0,
                }
                for i, (s, ids) in enumerate(zip(t.segments, tokens, strict=True))
            ],
        }
    if routing is not None:
        body["routing"] = routing
    return body
