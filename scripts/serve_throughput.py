"""Requests/s of `moeaudio serve` at several concurrencies, batching on and off, on loopback.

Starts the server in this process on 127.0.0.1 (a free port) with CHECKPOINT, then for each
concurrency sends REQUESTS chat completions (the same question about test clips of the recipe's
corpus, --max-tokens each) from that many client threads, and reports requests/s, the median
latency and the mean batch the worker ran. The same with ``--max-batch 1`` (every request its own
generate call) shows what batching buys::

    python scripts/serve_throughput.py runs/quickstart --concurrency 1,4,16 --requests 48
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from moeaudio.config import load_recipe
from moeaudio.runtime.checkpoint import resolve_checkpoint
from moeaudio.serve.main import build_server, start_in_thread
from moeaudio.serve.options import ServeOptions


def clips(checkpoint: Path, n: int) -> list[bytes]:
    recipe = load_recipe(checkpoint / "recipe.yaml")
    manifest = Path(recipe.data.root) / "test.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    speech = [r for r in rows if r["task"] == "asr"][:n]
    return [(manifest.parent / r["audio"]).read_bytes() for r in speech]


def run(
    checkpoint: str, concurrency: list[int], requests: int, max_tokens: int, max_batch: int, wait_ms: float
):
    server = build_server(ServeOptions(checkpoint, max_batch=max_batch, max_wait_ms=wait_ms, device="cpu"))
    uv, port = start_in_thread(server.app)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    audio = clips(resolve_checkpoint(checkpoint), 16)
    bodies = [
        {
            "model": server.model_id,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "input_audio",
                            "input_audio": {"data": base64.b64encode(a).decode(), "format": "wav"},
                        },
                        {"type": "text", "text": "Transcribe the audio."},
                    ],
                }
            ],
            "max_tokens": max_tokens,
        }
        for a in audio
    ]

    def one(i: int) -> float:
        start = time.monotonic()
        r = httpx.post(url, json=bodies[i % len(bodies)], timeout=600)
        r.raise_for_status()
        return time.monotonic() - start

    rows = []
    try:
        one(0)  # warm-up
        for c in concurrency:
            before = len(server.engine.batch_examples)
            start = time.monotonic()
            with ThreadPoolExecutor(c) as pool:
                latencies = list(pool.map(one, range(requests)))
            seconds = time.monotonic() - start
            sizes = server.engine.batch_examples[before:]
            rows.append(
                {
                    "concurrency": c,
                    "max_batch": max_batch,
                    "requests": requests,
                    "seconds": round(seconds, 2),
                    "requests_per_s": round(requests / seconds, 3),
                    "median_latency_s": round(statistics.median(latencies), 3),
                    "mean_batch": round(sum(sizes) / len(sizes), 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        uv.should_exit = True
        server.engine.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch", default="8,1", help="batch limits to compare (1: batching off)")
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    for mb in [int(b) for b in args.max_batch.split(",")]:
        run(args.checkpoint, levels, args.requests, args.max_tokens, mb, args.max_wait_ms)


if __name__ == "__main__":
    main()
