"""The streaming data path: a lazy manifest index, examples read per batch, the sharded feature
cache filled by `prepare-features`, exact resume on one rank and two (gloo), disjoint rank shares."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_recipe
from test_train import _interrupted_copy, _run_cli, losses, train

import moeaudio.runtime.examples as examples_module
from moeaudio.data.feature_cache import FeatureCache, audio_key
from moeaudio.data.loader import BucketBatchSampler
from moeaudio.data.manifest import ManifestError
from moeaudio.data.stream import ManifestIndex
from moeaudio.model.audio_llm import build_audio_llm
from moeaudio.runtime.batching import example_length
from moeaudio.runtime.checkpoint import latest_checkpoint, load_trainer_state
from moeaudio.runtime.examples import (
    LazyExamples,
    StreamExamples,
    checked_items,
    index_keys,
    indexed_items,
    load_examples,
    select_items,
    use_streaming,
)

STREAM = [
    "data.loading=stream",
    "data.tasks=[asr]",
    "data.max_batch_seconds=5",
    "llm.tiny.attention_dropout=0.1",
]


pytestmark = pytest.mark.usefixtures("quiet_training")  # conftest: no reporter output


def test_index_gives_the_in_memory_items_and_examples(tiny_corpus: Path, tmp_path: Path) -> None:
    """Same items in the same order as checked_items + select_items (tasks and max_audio_seconds
    filters included), and StreamExamples[i] equals load_examples()[i]: waveforms, and cached states."""
    manifest = tiny_corpus / "train.jsonl"
    for overrides in ([], ["data.tasks=[asr,sound]", "data.max_audio_seconds=2.5"]):
        recipe = tiny_recipe(tiny_corpus, tmp_path / "run", "moe", *overrides)
        keep = set(recipe.data.tasks or [])
        items = select_items(
            recipe, checked_items(manifest, recipe, select=lambda i, keep=keep: not keep or i.task in keep)
        )
        index = indexed_items(manifest, recipe)
        assert 0 < len(index) == len(items)
        assert [index[i].to_dict() for i in range(len(index))] == [i.to_dict() for i in items]
        assert index.offsets.nbytes + index.linenos.nbytes + index.durations.nbytes == 16 * len(index)
    for cache in (None, tmp_path / "cache"):
        recipe = tiny_recipe(
            tiny_corpus, tmp_path / "run", "moe", "data.tasks=[asr]", f"data.feature_cache={cache or 'null'}"
        )
        model = build_audio_llm(recipe)
        index = indexed_items(manifest, recipe)
        memory = load_examples(model, manifest, recipe, progress=False)
        fc = FeatureCache(cache, model.encoder.identity) if cache else None
        stream = StreamExamples(index, recipe, model.encoder.sample_rate, fc)
        assert len(stream) == len(memory) > 0
        for i, want in enumerate(memory):
            got = stream[i]
            assert (got.instruction, got.target, got.meta) == (want.instruction, want.target, want.meta)
            if cache:
                assert got.wave is None and torch.equal(got.states, want.states)
            else:
                assert got.states is None and np.array_equal(got.wave, want.wave)
        assert stream.lengths_ms().tolist() == [round(1000 * e.meta["duration"]) for e in memory]
        if cache:  # with the keys hashed once, a read hashes no audio file and gets the same states
            keys = index_keys(index, progress=False)
            assert keys.shape == (len(index), 16)
            assert keys[0].tobytes().hex() == audio_key(index.audio_path(index[0]))
            keyed = StreamExamples(index, recipe, model.encoder.sample_rate, fc, keys)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(examples_module, "audio_key", lambda path: pytest.fail(f"hashed {path} again"))
                assert all(torch.equal(keyed[i].states, want.states) for i, want in enumerate(memory))


def test_lazy_examples_read_audio_when_asked_and_batch_as_in_memory(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    """load_examples(lazy=True): example i equals the in-memory one, read only when asked; its sort
    keys (from cache headers or audio headers) equal example_length of the loaded ones."""
    manifest = tiny_corpus / "test.jsonl"
    for cache in (None, tmp_path / "lazy_cache"):
        recipe = tiny_recipe(tiny_corpus, tmp_path / "run", "moe", f"data.feature_cache={cache or 'null'}")
        model = build_audio_llm(recipe)
        memory = load_examples(model, manifest, recipe, progress=False)
        reads: list[Path] = []

        def counted(*args, real=examples_module.load_audio, reads=reads, **kwargs):
            reads.append(args[0])
            return real(*args, **kwargs)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(examples_module, "load_audio", counted)
            lazy = load_examples(model, manifest, recipe, progress=False, lazy=True)
            assert isinstance(lazy, LazyExamples) and len(lazy) == len(memory) > 0
            assert reads == []  # nothing decoded up front (the cache was filled by the eager load)
            assert lazy.lengths() == [example_length(e) for e in memory]
            assert all(h.wave is None and h.states is None for h in lazy.headers)
            for i in (0, len(memory) // 2, len(memory) - 1):
                got, want = lazy[i], memory[i]
                assert (got.instruction, got.target, got.meta) == (want.instruction, want.target, want.meta)
                if cache:
                    assert got.wave is None and torch.equal(got.states, want.states)
                else:
                    assert got.states is None and np.array_equal(got.wave, want.wave)
        assert len(reads) == (0 if cache else 3)


def test_eval_streams_the_test_set_with_the_same_results(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """eval --loading stream (audio read a batch at a time) scores exactly what --loading memory does,
    generated and ranked answers alike."""
    from moeaudio.eval.evaluate import run_eval

    for task, scoring in (("asr", "generate"), ("mcq", "loglik"), ("sound", "loglik")):
        got = {}
        for loading in ("memory", "stream"):
            result = run_eval(
                task,
                tiny_checkpoint,
                max_items=10,
                scoring=scoring,
                loading=loading,
                progress=False,
                output=tmp_path / f"{task}-{loading}.json",
            )
            rows = [
                json.loads(line) for line in Path(result["files"]["predictions"]).read_text().splitlines()
            ]
            got[loading] = (result["metrics"], [(r["id"], r["prediction"], r.get("logprobs")) for r in rows])
        assert got["stream"] == got["memory"] and len(got["memory"][1]) >= 2


def test_index_reports_bad_lines_like_the_manifest_reader(tmp_path: Path, tiny_corpus: Path) -> None:
    """A refused manifest gets the same message from the index as from check_manifest (the in-memory
    path): bad JSON with its column, unknown tasks, duplicate ids naming both lines."""
    from moeaudio.data.manifest import check_manifest

    rec = json.loads((tiny_corpus / "train.jsonl").read_text().splitlines()[0])
    rec["audio"] = str((tiny_corpus / rec["audio"]).resolve())
    bad = tmp_path / "m.jsonl"
    cases = {
        "invalid JSON": [json.dumps(rec), "{not json"],
        "unknown task 'asrr'": [json.dumps(rec), json.dumps(rec | {"id": "other", "task": "asrr"})],
        "duplicates line 1": [json.dumps(rec), json.dumps(rec)],
    }
    for what, lines in cases.items():
        bad.write_text("\n".join(lines) + "\n")
        with pytest.raises(ManifestError) as want:
            check_manifest(bad)
        with pytest.raises(ManifestError) as got:
            ManifestIndex.build(bad)
        assert str(got.value) == str(want.value) and f"{bad}:2: " in str(got.value) and what in str(got.value)


def test_auto_loading_streams_only_large_corpora(tiny_corpus: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe(tiny_corpus, tmp_path, "moe")
    seconds = float(indexed_items(tiny_corpus / "train.jsonl", recipe).durations.sum())
    assert not use_streaming(recipe, seconds)  # a few MB of waveforms: in memory
    recipe.data.stream_above_gb = 1e-4
    assert use_streaming(recipe, seconds)
    recipe.data.loading = "memory"
    assert not use_streaming(recipe, seconds)


def _stream_recipe(corpus: Path, run_dir: Path, cache: Path, *overrides: str):
    base = ["train.max_steps=10", "train.save_every=6", "train.warmup_steps=2", "train.keep_last=3"]
    return tiny_recipe(corpus, run_dir, "moe", *STREAM, *base, f"data.feature_cache={cache}", *overrides)


@pytest.mark.parametrize("cached", [True, False], ids=["cached-states", "waveforms-in-2-workers"])
def test_streaming_resume_matches_uninterrupted_run(tiny_corpus: Path, tmp_path: Path, cached: bool) -> None:
    """Streaming, duration-capped batches (waveforms decoded in DataLoader workers, or states from the
    shard cache): interrupted after step 6 and resumed to step 10, the run sees the same batches,
    losses and final weights as the uninterrupted one."""
    from safetensors.torch import load_file

    extra = [] if cached else ["data.num_workers=2"]
    cache = tmp_path / "cache" if cached else "null"
    full = train(_stream_recipe(tiny_corpus, tmp_path / "full", cache, *extra))
    assert len({len(b) for b in full.batches}) > 1  # the duration cap, not a count, sized them
    _interrupted_copy(full.result.run_dir, tmp_path / "resumed", 6)
    resumed = train(_stream_recipe(tiny_corpus, tmp_path / "resumed", cache, *extra), resume=True)
    assert resumed.batches[:4] == full.batches[6:10]
    hist, ref = resumed.result.history, full.result.history
    for key in ("loss", "lm_loss", "aux_loss", "lr"):
        assert losses(hist[6:], key) == pytest.approx(losses(ref[6:], key), rel=1e-5, abs=1e-7), key
    a = load_file(str(resumed.result.checkpoint / "model.safetensors"))
    b = load_file(str(full.result.checkpoint / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.slow
def test_two_ranks_stream_disjoint_shares_and_resume_exactly(tiny_corpus: Path, tmp_path: Path) -> None:
    """`train --nproc 2` (gloo) on the streaming path: in every epoch the two ranks see disjoint items
    (no item twice), and a 2-rank run resumed from its step-3 checkpoint logs the same losses."""
    cache = tmp_path / "cache"
    steps = 6
    args = [
        f"data.root={tiny_corpus}", "data.synth_if_missing=false", *STREAM, f"data.feature_cache={cache}",
        f"train.max_steps={steps}", "train.save_every=3", "train.warmup_steps=2", "train.keep_last=3",
    ]  # fmt: skip
    full = tmp_path / "full"
    _run_cli(["train", "tiny/moe", *args, "--output-dir", str(full), "--nproc", "2", "--no-eval"], tmp_path, 300,
             MOEAUDIO_DUMP_LOADS="1")  # fmt: skip
    recipe = tiny_recipe(tiny_corpus, full, "moe", *STREAM)
    lengths = StreamExamples(
        indexed_items(tiny_corpus / "train.jsonl", recipe), recipe, 16000, None
    ).lengths_ms()
    per_epoch = BucketBatchSampler(
        lengths, 8, max_batch_length=5000, rank=0, world_size=2
    ).batches_per_epoch()
    assert 1 <= per_epoch < steps  # the run crosses an epoch boundary
    ids = {}
    for rank in (0, 1):
        rows = [
            json.loads(line) for line in (full / f"expert_loads.rank{rank}.jsonl").read_text().splitlines()
        ]
        assert [r["step"] for r in rows] == list(range(1, steps + 1))
        ids[rank] = [r["ids"] for r in rows]
    for epoch in range(steps // per_epoch):
        span = slice(epoch * per_epoch, (epoch + 1) * per_epoch)
        mine = [[i for step in ids[rank][span] for i in step] for rank in (0, 1)]
        assert mine[0] and mine[1] and not set(mine[0]) & set(mine[1])
        assert len(set(mine[0]) | set(mine[1])) == len(mine[0]) + len(mine[1])  # nothing served twice

    resumed = tmp_path / "resumed"
    _interrupted_copy(full, resumed, 3)
    _run_cli(["train", "tiny/moe", *args, "--output-dir", str(resumed), "--nproc", "2", "--no-eval", "--resume"],
             tmp_path, 300)  # fmt: skip
    ref = load_trainer_state(latest_checkpoint(full))["history"]
    got = load_trainer_state(latest_checkpoint(resumed))["history"]
    assert [r["step"] for r in got] == list(range(1, steps + 1))
    assert losses(got[3:]) == pytest.approx(losses(ref[3:]), rel=1e-5, abs=1e-7)
    shutil.rmtree(cache)


def test_prepare_features_in_parallel_resumes_and_feeds_training(tiny_corpus: Path, tmp_path: Path) -> None:
    """`prepare-features RECIPE --workers 2`: every distinct clip of the three splits encoded once,
    into shards of both workers; states equal the in-memory path's; a lost shard (an interrupted
    worker) is re-encoded alone on the next run; a second run encodes nothing."""
    from safetensors import safe_open

    from moeaudio.data.feature_cache import audio_key
    from moeaudio.runtime.features import prepare_features

    cache = tmp_path / "cache"
    args = [f"data.root={tiny_corpus}", "data.synth_if_missing=false", f"data.feature_cache={cache}"]
    out = _run_cli(["prepare-features", "tiny/moe", *args, "--workers", "2", "--json"], tmp_path, 240)
    report = json.loads(out.stdout[out.stdout.rfind("\n{") + 1 :])  # stderr lines come first
    recipe = tiny_recipe(tiny_corpus, tmp_path / "run", "moe", f"data.feature_cache={cache}")
    keys = set()
    for split in ("train", "valid", "test"):
        index = indexed_items(tiny_corpus / f"{split}.jsonl", recipe)
        keys |= {audio_key(index.audio_path(index[i])) for i in range(len(index))}
    assert report["clips"] == report["encoded"] == report["entries"] == len(keys) and report["workers"] == 2
    shards = sorted(Path(report["cache"], "shards").glob("*.safetensors"))
    assert {s.name.split("-")[1] for s in shards} == {"w0", "w1"}  # each worker wrote its own
    model = build_audio_llm(recipe)
    assert str(model.encoder.identity) == Path(report["cache"]).name
    memory = load_examples(model, tiny_corpus / "train.jsonl", recipe, progress=False)
    fc = FeatureCache(cache, model.encoder.identity)
    for e in memory[:20]:
        key = audio_key(tiny_corpus / e.meta["audio"])
        torch.testing.assert_close(fc.get(key), e.states, rtol=1e-5, atol=1e-5)
    # a worker interrupted before writing its last shard: only those clips are encoded again
    with safe_open(str(shards[0]), framework="pt") as f:
        lost = len(list(f.keys()))
    shards[0].unlink()
    again = prepare_features(recipe, workers=1, progress=False)
    assert (again["encoded"], again["reused"], again["entries"]) == (lost, len(keys) - lost, len(keys))
    assert prepare_features(recipe, workers=1, progress=False)["encoded"] == 0
