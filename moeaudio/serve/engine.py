"""One model copy, one worker thread, a queue: concurrent requests share one ``generate`` call.

Why a worker thread owning the model: a PyTorch model is not made to run two forwards at once, and
generating several prompts in one left-padded batch costs little more than one on a CPU or a GPU
(the weights are read once per step for all rows). The HTTP side never touches the model: it decodes
and checks the audio, builds :class:`~moeaudio.runtime.batching.Example` objects with the same
helpers as ``moeaudio transcribe`` (windows) and ``moeaudio eval`` (one user turn), and queues a
:class:`Job`. The worker takes the first job, waits up to ``max_wait_ms`` for more with the same
``max_new_tokens`` (up to ``max_batch`` examples), and runs them all through
:func:`moeaudio.eval.generation.generate_all`, the function eval and transcribe use, so answers
are the ones those commands give. Routing, when asked, is :func:`moeaudio.analyze.measure.route_audio`
(what ``analyze-routing`` runs), summarised with the routing module's statistics.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soundfile as sf
import torch

from moeaudio.analyze.measure import TokenRouting, route_audio
from moeaudio.analyze.routing import gate_matrix, routing_stats
from moeaudio.data.audio import AudioDecodeError, decode_audio_bytes
from moeaudio.eval.generation import generate_all
from moeaudio.model.audio_llm import AudioBatch, AudioLLM
from moeaudio.model.moe import Router
from moeaudio.runtime.batching import Collator, Example
from moeaudio.runtime.windows import check_clip_length, window_seconds
from moeaudio.serve.protocol import APIError

__all__ = ["Engine", "Job", "JobResult", "routing_summary"]

log = logging.getLogger("moeaudio.serve")


@dataclass
class JobResult:
    """Per example of the job: the answer, its generated token ids and its prompt length in tokens."""

    texts: list[str]
    tokens: list[list[int]]
    prompt_tokens: list[int]
    routing: dict[str, Any] | None
    seconds: float  # time from the batch's start to its end


@dataclass
class Job:
    """One request's work: ``examples`` to answer (a transcription's windows, or one chat turn).

    ``on_text`` (one example only) receives the answer as it grows, in pieces whose concatenation is
    exactly the final text. ``routing_wave``: route this recording too. ``cancelled``: the client
    went away; a job not started yet is dropped.
    """

    examples: list[Example]
    max_new_tokens: int
    routing_wave: np.ndarray | None = None
    on_text: Callable[[str], None] | None = None
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)


class _CountingCollator(Collator):
    """The generation collator, remembering each example's prompt length (for ``usage``)."""

    def __init__(self, model: AudioLLM):
        super().__init__(model, for_generation=True)
        self.prompt_tokens: dict[int, int] = {}

    def __call__(self, examples: list[Example]) -> AudioBatch:
        batch = super().__call__(examples)
        for e, n in zip(examples, batch.attention_mask.sum(1).tolist(), strict=True):
            self.prompt_tokens[id(e)] = int(n)
        return batch


class _TextStream:
    """Token ids -> text pieces whose concatenation is the final (stripped) answer.

    The text decoded so far is re-decoded at each token (byte-level BPE decodes prefix-stably) and
    what is new is sent, holding back trailing whitespace (the final answer is stripped) and an
    incomplete UTF-8 character (decoded as U+FFFD until its last byte arrives).
    """

    def __init__(self, tokenizer, sink: Callable[[str], None]):
        self.tokenizer = tokenizer
        self.sink: Callable[[str], None] | None = sink
        self.ids: list[int] = []
        self.sent = ""

    def token(self, token_id: int) -> None:
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True).strip()
        if text.endswith("\ufffd"):
            return
        self._send_up_to(text)

    def finish(self, final: str) -> None:
        self._send_up_to(final)

    def _send_up_to(self, text: str) -> None:
        if self.sink is None or not text.startswith(self.sent) or len(text) <= len(self.sent):
            return
        piece, self.sent = text[len(self.sent) :], text
        try:
            self.sink(piece)
        except Exception:  # a listener gone (closed event loop): the batch's other rows go on
            log.warning("a streaming listener failed; its stream is dropped", exc_info=True)
            self.sink = None


def routing_summary(r: TokenRouting) -> dict[str, Any]:
    """The experts a recording's audio tokens used: per-expert share of token-slots (``share``, sums
    to 1), share of tokens that chose each (``activation``), and the expert x token gate matrix
    (``gates``, what the demo page draws), from the routing module's own statistics."""
    n = int(r.expert_ids.shape[0])
    stats = routing_stats(r.expert_ids, ["audio"] * n, r.num_experts)
    times = r.times.tolist() if r.times is not None else [t * r.frame_seconds for t in range(n)]
    return {
        "num_experts": r.num_experts,
        "top_k": stats.top_k,
        "num_tokens": n,
        "frame_seconds": r.frame_seconds,
        "experts_used": [e for e, s in enumerate(stats.load) if s > 0],
        "share": [round(s, 4) for s in stats.load],
        "activation": [round(a, 4) for a in stats.activation["audio"]],
        "entropy": round(stats.entropy, 4),
        "maxvio": round(stats.maxvio, 4),
        "times": [round(t, 3) for t in times],
        "gates": [
            [round(float(g), 3) for g in row] for row in gate_matrix(r.expert_ids, r.gates, r.num_experts)
        ],
    }


class Engine:
    """The model, its worker thread and the request queue (see the module docstring)."""

    def __init__(
        self,
        model: AudioLLM,
        *,
        max_batch: int = 8,
        max_wait_ms: float = 10.0,
        max_queue: int = 256,
        max_audio_seconds: float = 600.0,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 (got {max_batch})")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0 (got {max_wait_ms})")
        self.model = model.eval()
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_audio_seconds = max_audio_seconds
        self.sample_rate = int(model.encoder.sample_rate)
        self.turn_seconds = window_seconds(model)  # one chat turn: one window, as transcribe cuts
        self.has_router = any(isinstance(m, Router) for m in model.adapter.modules())
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._held: deque[Job] = deque()  # taken from the queue but waiting for a batch of their kind
        self.batches = 0  # generate rounds run (batch sizes: ``batch_examples``)
        self.batch_examples: list[int] = []
        self._thread = threading.Thread(target=self._loop, name="moeaudio-serve-model", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------ requests side

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def queued(self) -> int:
        return self._queue.qsize() + len(self._held)

    def submit(self, job: Job) -> Future:
        """Queue ``job``; its future resolves to a :class:`JobResult`. A full queue is a 429."""
        if not self.alive:
            raise APIError("the model worker has stopped; restart the server", 503, kind="server_error")
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise APIError(
                f"the server is busy ({self._queue.maxsize} requests waiting); retry shortly",
                429,
                kind="rate_limit_error",
                code="queue_full",
            ) from None
        return job.future

    def decode(self, data: bytes, param: str, name: str) -> np.ndarray:
        """Uploaded bytes -> a mono waveform at the encoder's rate, or an :class:`APIError` saying why
        not (empty, not audio, longer than ``max_audio_seconds``, shorter than one audio token).
        The length is read from the header before anything is decoded."""
        if not data:
            raise APIError(f"{param} ({name}) is empty: no audio bytes", param=param, code="empty_audio")
        try:
            info = sf.info(io.BytesIO(data))
        except Exception as exc:  # libsndfile's errors vary by format
            raise APIError(
                f"{param} ({name}): not a readable audio file ({str(exc).strip() or type(exc).__name__}); "
                "send wav, flac, mp3 or ogg",
                param=param,
                code="invalid_audio",
            ) from None
        if info.samplerate > 0 and info.frames / info.samplerate > self.max_audio_seconds:
            self._too_long(info.frames / info.samplerate, param, name)
        try:
            wave, _ = decode_audio_bytes(data, self.sample_rate, name=f"{param} ({name})")
            check_clip_length(self.model, wave, f"{param} ({name})")
        except AudioDecodeError as exc:
            raise APIError(str(exc), param=param, code="invalid_audio") from None
        if len(wave) / self.sample_rate > self.max_audio_seconds:
            self._too_long(len(wave) / self.sample_rate, param, name)
        return wave

    def _too_long(self, seconds: float, param: str, name: str) -> None:
        raise APIError(
            f"{param} ({name}) is {seconds:.1f} s long; this server takes at most "
            f"{self.max_audio_seconds:g} s (moeaudio serve --max-audio-seconds)",
            param=param,
            code="audio_too_long",
        )

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    # -------------------------------------------------------------------------------- worker side

    def _loop(self) -> None:
        while True:
            first = self._held.popleft() if self._held else self._queue.get()
            if first is None:
                return
            jobs, stop = self._gather(first)
            live = [j for j in jobs if not j.cancelled.is_set() and j.future.set_running_or_notify_cancel()]
            if live:
                self._run(live)
            if stop:
                return

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        """``first`` and the jobs arriving within ``max_wait`` with its ``max_new_tokens``, up to
        ``max_batch`` examples; jobs of another kind wait for the next round."""
        jobs, size = [first], len(first.examples)
        deadline = time.monotonic() + self.max_wait
        for job in [j for j in self._held if j.max_new_tokens == first.max_new_tokens]:
            if size >= self.max_batch:
                break
            self._held.remove(job)
            jobs.append(job)
            size += len(job.examples)
        while size < self.max_batch:
            wait = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            if job.max_new_tokens != first.max_new_tokens:
                self._held.append(job)
                continue
            jobs.append(job)
            size += len(job.examples)
        return jobs, False

    def _run(self, jobs: Sequence[Job]) -> None:
        start = time.time()
        try:
            examples = [e for j in jobs for e in j.examples]
            owner = [(j, pos) for j in jobs for pos in range(len(j.examples))]
            tokens: list[list[int]] = [[] for _ in examples]
            streams = {
                id(j): _TextStream(self.model.tokenizer, j.on_text)
                for j in jobs
                if j.on_text is not None and len(j.examples) == 1
            }

            def on_token(i: int, token_id: int) -> None:
                tokens[i].append(token_id)
                stream = streams.get(id(owner[i][0]))
                if stream is not None:
                    stream.token(token_id)

            collate = _CountingCollator(self.model)
            with torch.no_grad():
                routed = {
                    id(j): routing_summary(route_audio(self.model, j.routing_wave))
                    for j in jobs
                    if j.routing_wave is not None and self.has_router
                }
            texts, _ = generate_all(
                self.model,
                examples,
                self.max_batch,
                jobs[0].max_new_tokens,
                1,
                False,
                collate=collate,
                on_token=on_token,
            )
            self.batches += 1
            self.batch_examples.append(len(examples))
        except Exception as exc:  # a bug or the machine (out of memory): fail these jobs, keep serving
            log.exception("generation failed for a batch of %d job(s)", len(jobs))
            for j in jobs:
                j.future.set_exception(exc)
            return
        seconds = time.time() - start
        at = 0
        for j in jobs:
            n = len(j.examples)
            result = JobResult(
                texts[at : at + n],
                tokens[at : at + n],
                [collate.prompt_tokens[id(e)] for e in j.examples],
                routed.get(id(j)),
                seconds,
            )
            at += n
            stream = streams.get(id(j))
            if stream is not None:
                stream.finish(result.texts[0])
            j.future.set_result(result)
