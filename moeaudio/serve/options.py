"""Options of `moeaudio serve`, light enough for `moeaudio --help`."""

from __future__ import annotations

from dataclasses import dataclass

from moeaudio.options import argument, option

__all__ = ["ServeOptions"]


@dataclass
class ServeOptions:
    """What `moeaudio serve` takes."""

    checkpoint: str = argument(help="checkpoint, run directory (its latest checkpoint) or export folder")
    host: str = option("127.0.0.1", "address to bind (0.0.0.0 exposes the server to the network)")
    port: int = option(8000, "TCP port")
    api_key: str | None = option(
        None, "require `Authorization: Bearer KEY` on every route but /health (and the page at /)"
    )
    max_audio_seconds: float = option(600.0, "longest recording accepted (longer: HTTP 400)")
    max_body_mb: float = option(25.0, "largest request body in MB (larger: HTTP 413); OpenAI's limit is 25")
    max_batch: int = option(8, "most examples (audio windows) generated together in one batch")
    max_wait_ms: float = option(10.0, "how long the first queued request waits for others to batch with")
    max_queue: int = option(256, "requests waiting at most (more: HTTP 429)")
    device: str | None = option(None, "cpu | cuda (default: cuda when available)")
    precision: str = option("auto", "auto | fp32 | bf16 (auto: bf16 on a GPU, fp32 on CPU)")
