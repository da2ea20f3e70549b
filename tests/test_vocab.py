"""``llm.vocab: corpus``: the builtin BPE trimmed to the train split, exact on it, saved with the run.

The claims: every train prompt and answer tokenizes into the same tokens as with the full GPT-2 BPE
(so the trimmed model sees the same token sequences), text the corpus lacks still round-trips, a
checkpoint and a resumed run use the tokenizer they were trained with (not the corpus as it is
now), and recipes that cannot be trimmed are refused with the key named.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import tiny_recipe

from moeaudio.config import RecipeError, load_recipe
from moeaudio.data.manifest import read_manifest
from moeaudio.data.tasks import item_prompt
from moeaudio.errors import MissingDataError
from moeaudio.model.llm import build_tokenizer, builtin_tokenizer_file
from moeaudio.model.vocab import byte_alphabet, trim_bpe
from moeaudio.runtime.batching import Collator, Example
from moeaudio.runtime.vocabulary import corpus_tokenizer, corpus_tokens, recipe_tokenizer


def _quickstart(corpus: Path, *overrides: str):
    return load_recipe("quickstart", [f"data.root={corpus}", "data.synth_if_missing=false", *overrides])


def _rendered(tok, recipe, item) -> tuple[list[str], list[str]]:
    """An item's prompt and answer as token strings, rendered as training renders them."""
    render = Collator(
        SimpleNamespace(
            tokenizer=tok,
            recipe=recipe,
            audio_token_id=tok.convert_tokens_to_ids(recipe.llm.audio_placeholder),
        )
    )
    prompt = render.prompt_ids([Example(item_prompt(item), item.target)], [1])
    return tok.convert_ids_to_tokens(prompt), tok.convert_ids_to_tokens(render.response_ids(item.target))


def test_every_train_text_tokenizes_as_with_the_full_bpe(tiny_corpus: Path) -> None:
    recipe = _quickstart(tiny_corpus)
    assert recipe.llm.vocab == "corpus"  # the shipped quickstart trims
    full, trimmed = build_tokenizer(recipe.llm), corpus_tokenizer(recipe)
    items = read_manifest(tiny_corpus / "train.jsonl")
    for item in items:
        assert _rendered(trimmed, recipe, item) == _rendered(full, recipe, item), item.id
    # far smaller, ids dense, the byte tokens and the special tokens all kept
    assert 256 < len(trimmed) < 2000 < 50_000 < len(full)
    assert sorted(trimmed.get_vocab().values()) == list(range(len(trimmed)))
    assert set(byte_alphabet()) <= set(trimmed.get_vocab())
    for special in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", recipe.llm.audio_placeholder):
        assert special in trimmed.get_vocab()
    # and nothing beyond what the train split uses and what builds it: a token of the valid split
    # that the train split lacks is gone
    used = corpus_tokens(recipe)
    valid_only = {
        t
        for item in read_manifest(tiny_corpus / "valid.jsonl")
        for part in _rendered(full, recipe, item)
        for t in part
    } - set(trimmed.get_vocab())
    assert valid_only and not (valid_only & used)


def test_text_outside_the_corpus_still_round_trips(tiny_corpus: Path) -> None:
    trimmed = corpus_tokenizer(_quickstart(tiny_corpus))
    text = "Zebras play the xylophone at 3:45 — naïve café!"
    ids = trimmed(text, add_special_tokens=False).input_ids
    assert max(ids) < len(trimmed) and trimmed.decode(ids) == text


def test_trim_keeps_the_merge_path_of_each_kept_token() -> None:
    """A kept token brings the tokens it is merged from; a merge is kept only with all three."""
    spec = json.loads(builtin_tokenizer_file().read_text(encoding="utf-8"))
    full = build_tokenizer(load_recipe("tiny/moe").llm)
    word = full.convert_ids_to_tokens(full(" tokenization", add_special_tokens=False).input_ids)
    out = trim_bpe(spec, word)
    vocab, merges = out["model"]["vocab"], [tuple(m) for m in out["model"]["merges"]]
    assert set(word) <= set(vocab) and len(vocab) < 300 + 2 * len(" tokenization")
    assert all(a in vocab and b in vocab and a + b in vocab for a, b in merges)
    assert all(t in {a + b for a, b in merges} for t in vocab if t not in byte_alphabet())
    assert out["post_processor"] is None and out["added_tokens"] == []


def test_checkpoint_reloads_its_own_tokenizer_without_the_corpus(
    quickstart_checkpoint: Path, whisper_cache: Path, monkeypatch
) -> None:
    from moeaudio.runtime import vocabulary
    from moeaudio.runtime.checkpoint import load_model

    monkeypatch.setenv("MOEAUDIO_CACHE", str(whisper_cache))

    def no_corpus(recipe):
        raise AssertionError("a checkpoint must not read the corpus for its tokenizer")

    monkeypatch.setattr(vocabulary, "corpus_tokens", no_corpus)
    model = load_model(quickstart_checkpoint)
    saved = json.loads((quickstart_checkpoint / "tokenizer" / "tokenizer.json").read_text())
    assert model.tokenizer.get_vocab() == {
        **saved["model"]["vocab"],
        **{t["content"]: t["id"] for t in saved["added_tokens"]},
    }
    assert model.llm.get_input_embeddings().num_embeddings == len(model.tokenizer) < 2000


def test_resume_keeps_the_tokenizer_it_started_with(tiny_corpus: Path, tmp_path: Path) -> None:
    """The train split changes between the first run and the resume: the resumed run still loads."""
    from moeaudio.train.launch import train_recipe

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    run = tmp_path / "run"
    first = train_recipe(
        tiny_recipe(corpus, run, "moe", "train.max_steps=2", "llm.vocab=corpus"), evaluate=False
    )
    words = (first.checkpoint / "tokenizer" / "tokenizer.json").read_text()
    lines = (corpus / "train.jsonl").read_text().splitlines()
    extra = json.loads(lines[0]) | {"id": "new-words", "target": "quetzalcoatl wobbegong"}
    (corpus / "train.jsonl").write_text("\n".join([*lines, json.dumps(extra)]) + "\n")
    resumed = train_recipe(
        tiny_recipe(corpus, run, "moe", "train.max_steps=4", "llm.vocab=corpus"), resume=True, evaluate=False
    )
    assert resumed.steps == 4
    assert (resumed.checkpoint / "tokenizer" / "tokenizer.json").read_text() == words


def test_recipes_that_cannot_be_trimmed_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="llm.vocab"):
        load_recipe("smol", ["llm.vocab=corpus"])
    from moeaudio.model.audio_llm import build_audio_llm

    with pytest.raises(MissingDataError, match=r"train\.jsonl.*llm\.vocab"):
        recipe_tokenizer(_quickstart(tmp_path / "nowhere"))
    with pytest.raises(RecipeError, match=r"llm\.vocab=corpus.*recipe_tokenizer"):
        build_audio_llm(_quickstart(tmp_path / "nowhere"))  # the model layer does not read the corpus
