"""`moeaudio serve` against a live uvicorn server on 127.0.0.1, with the official `openai` client.

The answers must be the ones the commands give (`transcribe`, `eval`, `analyze-routing`), bad input
must be refused with OpenAI's error shape and a 4xx status while the server goes on serving, and
concurrent requests must share batches.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
from pydantic import ValidationError
from typer.testing import CliRunner

from moeaudio.analyze.commands import analyze_routing_audio
from moeaudio.cli import app
from moeaudio.eval.evaluate import run_eval
from moeaudio.eval.transcribe import format_transcript, run_transcribe
from moeaudio.serve.app import _validation_error, create_app
from moeaudio.serve.main import build_server, start_in_thread
from moeaudio.serve.options import ServeOptions
from moeaudio.serve.protocol import ChatRequest

SR = 16000
KEY = "test-key-123"


@pytest.fixture(scope="module")
def live(quickstart_checkpoint: Path, whisper_cache: Path):
    """The quickstart's model (offline Whisper tiny.en, MoE-Adapter, small LLM; untrained, so its
    answers are long and varied, which makes equality checks mean something) behind two servers
    sharing one engine: open, and with an API key."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOEAUDIO_CACHE", str(whisper_cache))
        opts = ServeOptions(
            str(quickstart_checkpoint),
            max_batch=8,
            max_wait_ms=20,
            max_audio_seconds=90,
            max_body_mb=4,
            device="cpu",
        )
        built = build_server(opts)
        keyed = create_app(built.engine, built.model_id, api_key=KEY, max_body_bytes=4_000_000)
        servers = [start_in_thread(built.app), start_in_thread(keyed)]
        yield {
            "url": f"http://127.0.0.1:{servers[0][1]}",
            "keyed_url": f"http://127.0.0.1:{servers[1][1]}",
            "model": built.model_id,
            "engine": built.engine,
            "checkpoint": quickstart_checkpoint,
        }
        for server, _ in servers:
            server.should_exit = True
        time.sleep(0.3)
        built.engine.stop()


@pytest.fixture(scope="module")
def client(live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live["url"] + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def speech_clip(tiny_corpus: Path) -> Path:
    rows = [json.loads(line) for line in (tiny_corpus / "test.jsonl").read_text().splitlines()]
    return tiny_corpus / next(r for r in rows if r["task"] == "asr")["audio"]


@pytest.fixture(scope="module")
def long_clip(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 45 s of speech clips with pauses: two windows of at most 30 s."""
    rows = [json.loads(line) for line in (tiny_corpus / "train.jsonl").read_text().splitlines()]
    speech = [r for r in rows if r["task"] == "asr"]
    parts, total, i = [], 0, 0
    while total < 45 * SR:
        wave, sr = sf.read(tiny_corpus / speech[i % len(speech)]["audio"], dtype="float32")
        assert sr == SR
        parts += [wave, np.zeros(int(0.6 * SR), np.float32)]
        total += len(wave) + int(0.6 * SR)
        i += 1
    path = tmp_path_factory.mktemp("serve_long") / "long.wav"
    sf.write(path, np.concatenate(parts)[: 45 * SR], SR)
    return path


def _wav_bytes(seconds: float, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * sr), np.float32), sr, format="WAV")
    return buf.getvalue()


def _audio_part(data: bytes, fmt: str = "wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt}}


def _transcribe_cli(path: Path, checkpoint: Path) -> dict[str, str]:
    """What `moeaudio transcribe PATH --checkpoint CKPT --format F` prints, for each format."""
    out = io.StringIO()
    (transcript,) = run_transcribe(
        [path], checkpoint, fmt="txt", device="cpu", stdout=out, stderr=io.StringIO()
    )
    printed = {"txt": out.getvalue()}
    for fmt in ("json", "srt", "vtt"):
        printed[fmt] = format_transcript(transcript, fmt)
    assert printed["txt"] == format_transcript(transcript, "txt")
    return printed


def _assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def _healthy(url: str) -> None:
    r = httpx.get(url + "/health", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"


# ------------------------------------------------------------------------------ same answers as the CLI


def test_models_and_health(live, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [live["model"]]
    _healthy(live["url"])
    page = httpx.get(live["url"] + "/", timeout=10)
    assert (
        page.status_code == 200 and "MediaRecorder" in page.text and "/v1/audio/transcriptions" in page.text
    )


def test_transcription_equals_transcribe(live, client: openai.OpenAI, speech_clip: Path) -> None:
    cli = _transcribe_cli(speech_clip, live["checkpoint"])
    for fmt, cli_fmt in (("text", "txt"), ("srt", "srt"), ("vtt", "vtt")):
        with open(speech_clip, "rb") as f:
            got = client.audio.transcriptions.create(model=live["model"], file=f, response_format=fmt)
        assert got == cli[cli_fmt], fmt
    assert len(cli["txt"]) > 20  # a real transcript to compare (json: the long-audio test)


def test_long_audio_windowed_as_transcribe(live, client: openai.OpenAI, long_clip: Path) -> None:
    with open(long_clip, "rb") as f:
        verbose = client.audio.transcriptions.create(
            model=live["model"], file=f, response_format="verbose_json", language="en"
        )
    cli = json.loads(_transcribe_cli(long_clip, live["checkpoint"])["json"])
    assert len(cli["segments"]) == 2 and verbose.duration == pytest.approx(45.0)
    assert verbose.text == cli["text"] and verbose.language == "en"
    assert [(s.start, s.end, s.text) for s in verbose.segments] == [
        (s["start"], s["end"], s["text"]) for s in cli["segments"]
    ]


@pytest.fixture(scope="module")
def eval_rows(live, tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], dict]:
    out = tmp_path_factory.mktemp("serve_eval") / "sound.json"
    record = run_eval(
        "sound", live["checkpoint"], tiny_corpus / "test.jsonl", out, max_items=3, batch_size=1,
        device="cpu", progress=False,
    )  # fmt: skip
    rows = [json.loads(line) for line in Path(record["files"]["predictions"]).read_text().splitlines()]
    return rows, record


def test_chat_with_audio_equals_eval(live, client: openai.OpenAI, eval_rows) -> None:
    rows, record = eval_rows
    manifest_dir = Path(record["manifest"]).parent
    max_new = record["decoding"]["max_new_tokens"]
    assert all(row["prediction"] for row in rows)  # real answers to compare, not empty strings
    for row in rows:
        audio = (manifest_dir / row["audio"]).read_bytes()
        reply = client.chat.completions.create(
            model=live["model"],
            messages=[
                {
                    "role": "user",
                    "content": [_audio_part(audio), {"type": "text", "text": row["instruction"]}],
                }
            ],
            max_tokens=max_new,
        )
        assert reply.choices[0].message.content == row["prediction"], row["id"]
        assert reply.usage.completion_tokens <= max_new and reply.usage.prompt_tokens > 0


def test_streaming_yields_the_same_text(live, client: openai.OpenAI, eval_rows) -> None:
    rows, record = eval_rows
    row = rows[0]
    audio = (Path(record["manifest"]).parent / row["audio"]).read_bytes()
    messages = [
        {"role": "user", "content": [_audio_part(audio), {"type": "text", "text": row["instruction"]}]}
    ]
    max_new = record["decoding"]["max_new_tokens"]
    chunks = list(
        client.chat.completions.create(
            model=live["model"],
            messages=messages,
            max_tokens=max_new,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == row["prediction"]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish in (["stop"], ["length"])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    # the raw stream ends with OpenAI's sentinel
    body = {"model": live["model"], "messages": messages, "max_tokens": 4, "stream": True}
    raw = httpx.post(live["url"] + "/v1/chat/completions", json=body, timeout=60).text
    assert raw.rstrip().endswith("data: [DONE]") and raw.count("data: ") >= 3


def test_routing_field_is_analyze_routing(live, client: openai.OpenAI, speech_clip: Path) -> None:
    reply = client.chat.completions.create(
        model=live["model"],
        messages=[
            {
                "role": "user",
                "content": [_audio_part(speech_clip.read_bytes()), {"type": "text", "text": "Transcribe."}],
            }
        ],
        max_tokens=4,
        extra_body={"routing": True},
    )
    routing = reply.model_extra["routing"]
    reference, _ = analyze_routing_audio(speech_clip, live["checkpoint"], device="cpu")
    assert routing["num_tokens"] == reference["num_tokens"] and routing["top_k"] == reference["top_k"]
    E, T = routing["num_experts"], routing["num_tokens"]
    counts = np.bincount([e for tok in reference["tokens"] for e in tok["experts"]], minlength=E)
    assert routing["share"] == pytest.approx(counts / counts.sum(), abs=1e-4)
    assert routing["experts_used"] == [e for e in range(E) if counts[e]]
    assert len(routing["gates"]) == E and all(len(row) == T for row in routing["gates"])
    for t, tok in enumerate(reference["tokens"]):  # each token's gates land on the experts it chose
        for e, g in zip(tok["experts"], tok["gates"], strict=True):
            assert routing["gates"][e][t] == pytest.approx(g, abs=2e-3)
    # transcription: the same summary on request, none by default
    with open(speech_clip, "rb") as f:
        files = {"file": ("clip.wav", f.read(), "audio/wav")}
    r = httpx.post(
        live["url"] + "/v1/audio/transcriptions",
        data={"model": live["model"], "routing": "true"},
        files=files,
    )
    assert r.status_code == 200 and r.json()["routing"]["share"] == routing["share"]


# ---------------------------------------------------------------------------------------- bad input


def _bad_requests(live) -> list[tuple[str, dict, int, str | None]]:
    """(path, httpx keyword arguments, expected status, expected code) for each kind of bad input."""
    model = live["model"]

    def chat(**overrides) -> dict:
        body = {
            "model": model,
            "messages": [
                {"role": "user", "content": [_audio_part(_wav_bytes(1.0)), {"type": "text", "text": "hi"}]}
            ],
        }
        body.update(overrides)
        return {"json": body}

    def upload(data: bytes, name: str = "a.wav", **fields) -> dict:
        return {"data": {"model": model, **fields}, "files": {"file": (name, data, "audio/wav")}}

    bad_b64 = {"type": "input_audio", "input_audio": {"data": "not base64 !!", "format": "wav"}}
    return [
        ("/v1/audio/transcriptions", upload(b"\x00\x01garbage" * 50, "noise.wav"), 400, "invalid_audio"),
        ("/v1/audio/transcriptions", upload(b"", "empty.wav"), 400, "empty_audio"),
        ("/v1/audio/transcriptions", upload(_wav_bytes(95.0, 8000)), 400, "audio_too_long"),
        ("/v1/audio/transcriptions", upload(_wav_bytes(0.001)), 400, "invalid_audio"),
        ("/v1/audio/transcriptions", upload(_wav_bytes(1.0), temperature_x="1"), 400, "unknown_field"),
        ("/v1/audio/transcriptions", upload(_wav_bytes(1.0), response_format="xml"), 400, None),
        (
            "/v1/audio/transcriptions",
            upload(_wav_bytes(1.0), **{"timestamp_granularities[]": "word"}),
            400,
            None,
        ),
        ("/v1/audio/transcriptions", {"data": {"model": model}}, 400, None),
        ("/v1/audio/transcriptions", upload(_wav_bytes(1.0), model="whisper-1"), 404, "model_not_found"),
        (
            "/v1/chat/completions",
            chat(messages=[{"role": "user", "content": [bad_b64, {"type": "text", "text": "hi"}]}]),
            400,
            "invalid_base64",
        ),
        (
            "/v1/chat/completions",
            chat(
                messages=[
                    {
                        "role": "user",
                        "content": [_audio_part(b"RIFF\x00junk"), {"type": "text", "text": "hi"}],
                    }
                ]
            ),
            400,
            "invalid_audio",
        ),
        (
            "/v1/chat/completions",
            chat(
                messages=[
                    {
                        "role": "user",
                        "content": [_audio_part(_wav_bytes(31.0)), {"type": "text", "text": "hi"}],
                    }
                ]
            ),
            400,
            "audio_too_long",
        ),
        (
            "/v1/chat/completions",
            chat(
                messages=[
                    {
                        "role": "user",
                        "content": [_audio_part(_wav_bytes(1.0), "ogg"), {"type": "text", "text": "hi"}],
                    }
                ]
            ),
            400,
            None,
        ),
        ("/v1/chat/completions", chat(frequency_penalty=0.5), 400, "unknown_field"),
        ("/v1/chat/completions", chat(max_tokens=0), 400, None),
        ("/v1/chat/completions", chat(n=2), 400, None),
        ("/v1/chat/completions", chat(max_tokens=10**9), 400, None),
        (
            "/v1/chat/completions",
            chat(messages=[{"role": "system", "content": "x"}, {"role": "user", "content": "y"}]),
            400,
            None,
        ),
        (
            "/v1/chat/completions",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "invalid_json",
        ),
        ("/v1/chat/completions", {"content": b"x" * 4_100_000}, 413, "request_too_large"),
        ("/v1/chat/completions", {"content": iter([b"x" * 1_500_000] * 3)}, 413, "request_too_large"),
        ("/v1/nothing-here", {"json": {}}, 404, "not_found"),
    ]


def test_bad_input_gets_an_openai_error_and_the_server_goes_on(
    live, client: openai.OpenAI, speech_clip: Path
) -> None:
    for path, kwargs, status, code in _bad_requests(live):
        r = httpx.post(live["url"] + path, timeout=30, **kwargs)
        error = _assert_openai_error(r, status, code)
        assert "Traceback" not in error["message"], error
        _healthy(live["url"])
    with open(speech_clip, "rb") as f:  # and a good request is answered as before
        assert client.audio.transcriptions.create(model=live["model"], file=f, response_format="text")


def test_client_disconnecting_mid_stream(live, client: openai.OpenAI, speech_clip: Path) -> None:
    body = {
        "model": live["model"],
        "messages": [
            {
                "role": "user",
                "content": [_audio_part(speech_clip.read_bytes()), {"type": "text", "text": "Transcribe."}],
            }
        ],
        "max_tokens": 64,
        "stream": True,
    }
    for _ in range(3):
        with httpx.stream("POST", live["url"] + "/v1/chat/completions", json=body, timeout=30) as r:
            assert r.status_code == 200
            first = next(r.iter_lines())
            assert first.startswith("data: ")
        # the connection is closed here, the answer half sent
    _healthy(live["url"])
    reply = client.chat.completions.create(model=live["model"], messages=body["messages"], max_tokens=8)
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_api_key_on_every_route_but_health(live, speech_clip: Path) -> None:
    url = live["keyed_url"]
    assert httpx.get(url + "/health").status_code == 200
    assert httpx.get(url + "/").status_code == 200  # the page holds no data; its calls send the key
    for path in ("/v1/models", "/v1/chat/completions", "/v1/audio/transcriptions"):
        _assert_openai_error(
            httpx.post(url + path) if path != "/v1/models" else httpx.get(url + path), 401, "invalid_api_key"
        )
    wrong = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer nope"})
    _assert_openai_error(wrong, 401, "invalid_api_key")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="nope", max_retries=0).models.list()
    keyed = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    with open(speech_clip, "rb") as f:
        assert keyed.audio.transcriptions.create(model=live["model"], file=f, response_format="text")


# ----------------------------------------------------------------------------------------- load test


def test_load_mixed_valid_and_invalid(live, speech_clip: Path) -> None:
    """200 requests at concurrency 16, a third of them invalid: no 5xx, every invalid one a 4xx
    OpenAI error, every valid one answered, batches shared, the server healthy after."""
    audio = speech_clip.read_bytes()
    good = {
        "model": live["model"],
        "messages": [
            {"role": "user", "content": [_audio_part(audio), {"type": "text", "text": "Transcribe."}]}
        ],
        "max_tokens": 8,
    }
    bad = [
        kwargs
        for path, kwargs, _, _ in _bad_requests(live)
        if path == "/v1/chat/completions" and "json" in kwargs
    ]
    jobs = [("good", {"json": good}) if i % 3 else ("bad", bad[i % len(bad)]) for i in range(200)]
    engine = live["engine"]
    batches_before = len(engine.batch_examples)

    def send(job):
        kind, kwargs = job
        r = httpx.post(live["url"] + "/v1/chat/completions", timeout=60, **kwargs)
        return kind, r.status_code, r.json()

    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, jobs))
    seconds = time.monotonic() - start
    assert seconds < 120
    assert all(status < 500 for _, status, _ in results)
    answers = {body["choices"][0]["message"]["content"] for kind, status, body in results if kind == "good"}
    assert all(status == 200 for kind, status, _ in results if kind == "good")
    assert len(answers) == 1  # the same question answered the same way in every batch
    for kind, status, body in results:
        if kind == "bad":
            assert 400 <= status < 500 and set(body["error"]) == {"message", "type", "param", "code"}
    sizes = engine.batch_examples[batches_before:]
    assert max(sizes) > 1 and sum(sizes) == sum(1 for kind, _ in jobs if kind == "good")
    _healthy(live["url"])
    print(
        f"load: 200 requests in {seconds:.1f} s ({200 / seconds:.1f} req/s), batch sizes up to {max(sizes)}"
    )


# ------------------------------------------------------------------------------------- the command


def test_command_refuses_bad_options_before_loading(tmp_path: Path) -> None:
    for args, flag in ((["--max-batch", "0"], "--max-batch"), (["--port", "70000"], "--port")):
        result = CliRunner().invoke(app, ["serve", str(tmp_path / "nowhere"), *args])
        assert result.exit_code == 2 and flag in result.output, result.output


@pytest.mark.slow  # a fresh interpreter imports torch and loads the model: ~10 s on a quiet machine
def test_command_serves_on_loopback_and_says_so(quickstart_checkpoint: Path, whisper_cache: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MOEAUDIO_CACHE": str(whisper_cache)}
    cmd = [sys.executable, "-m", "moeaudio", "serve", str(quickstart_checkpoint), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "moeaudio serve did not answer /health"
            time.sleep(0.5)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()
        assert models["data"][0]["id"] == "quickstart" and models["data"][0]["routing"] is True
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert f"on http://127.0.0.1:{port} (bound to 127.0.0.1: this machine only)" in err, err


@pytest.mark.parametrize(
    "body, param, words",
    [
        (
            {"content": [{"type": "image_url", "image_url": {}}]},
            "messages[0].content[0].type",
            "'input_audio'",
        ),
        (
            {"content": [{"type": "text", "text": "x", "foo": 1}]},
            "messages[0].content[0].foo",
            "unknown field",
        ),
    ],
)
def test_validation_errors_name_the_field(body: dict, param: str, words: str) -> None:
    """A part of the wrong kind is reported where it is, not as 'content should be a string'."""
    with pytest.raises(ValidationError) as info:
        ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", **body}]})
    error = _validation_error(info.value)
    assert error.param == param and words in error.message and error.status == 400
