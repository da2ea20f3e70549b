"""`moeaudio serve`: load the model once, put the engine behind the routes, run uvicorn.

Why FastAPI + uvicorn: the maintained ASGI pair that OpenAI-compatible servers (vLLM, the Whisper
servers) are built on; both are pure Python here (uvicorn without its optional C speedups), a few MB,
no GPU build, and server-sent events and multipart uploads come with Starlette.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from moeaudio.errors import UsageError
from moeaudio.model.audio_llm import AudioLLM
from moeaudio.runtime.checkpoint import load_model, resolve_checkpoint
from moeaudio.runtime.device import inference_dtype, pick_device
from moeaudio.serve.app import create_app
from moeaudio.serve.engine import Engine
from moeaudio.serve.options import ServeOptions

__all__ = ["Server", "build_server", "serve", "start_in_thread"]


@dataclass
class Server:
    """What :func:`build_server` made: the ASGI app, its engine and the model's name in the API."""

    app: object
    engine: Engine
    model_id: str
    checkpoint: Path | None


def _check(opts: ServeOptions) -> None:
    if not 0 <= opts.port <= 65535:
        raise UsageError(f"--port {opts.port}: use 0-65535")
    if opts.max_batch < 1:
        raise UsageError(f"--max-batch {opts.max_batch}: use 1 or more")
    if opts.max_wait_ms < 0:
        raise UsageError(f"--max-wait-ms {opts.max_wait_ms:g}: use 0 or more")
    if opts.max_audio_seconds <= 0:
        raise UsageError(f"--max-audio-seconds {opts.max_audio_seconds:g}: use a positive number")
    if opts.max_body_mb <= 0:
        raise UsageError(f"--max-body-mb {opts.max_body_mb:g}: use a positive number")
    if opts.max_queue < 1:
        raise UsageError(f"--max-queue {opts.max_queue}: use 1 or more")
    if opts.api_key is not None and not opts.api_key.strip():
        raise UsageError("--api-key is empty; give a key or leave the option out")


def build_server(opts: ServeOptions, model: AudioLLM | None = None) -> Server:
    """Load ``opts.checkpoint`` (unless ``model`` is given) and build the app around one engine."""
    _check(opts)
    checkpoint = None
    if model is None:
        checkpoint = resolve_checkpoint(opts.checkpoint)
        target = pick_device(opts.device)
        model = load_model(checkpoint, device=target, dtype=inference_dtype(target, opts.precision))
    engine = Engine(
        model,
        max_batch=opts.max_batch,
        max_wait_ms=opts.max_wait_ms,
        max_queue=opts.max_queue,
        max_audio_seconds=opts.max_audio_seconds,
    )
    model_id = model.recipe.name
    app = create_app(engine, model_id, api_key=opts.api_key, max_body_bytes=int(opts.max_body_mb * 1e6))
    return Server(app, engine, model_id, checkpoint)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(opts: ServeOptions) -> None:
    """`moeaudio serve`: blocks until interrupted."""
    server = build_server(opts)
    reach = (
        "this machine only"
        if _is_loopback(opts.host)
        else "REACHABLE FROM THE NETWORK" + ("" if opts.api_key else " and without an API key (--api-key)")
    )
    print(
        f"moeaudio serve: {server.checkpoint} as model '{server.model_id}' on http://{opts.host}:{opts.port} "
        f"(bound to {opts.host}: {reach}); demo page at /, OpenAI API under /v1"
        + ("; API key required" if opts.api_key else ""),
        file=sys.stderr,
        flush=True,
    )
    try:
        uvicorn.run(server.app, host=opts.host, port=opts.port, log_level="info")
    finally:
        server.engine.stop()


def start_in_thread(app: object, host: str = "127.0.0.1", port: int = 0) -> tuple[uvicorn.Server, int]:
    """Run ``app`` under uvicorn in a daemon thread (``port=0``: a free port); returns the server (set
    ``should_exit`` to stop it) and the port it listens on. For tests and benchmarks."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return server, sock.getsockname()[1]
