"""``llm.vocab: corpus``: the builtin tokenizer trimmed to what the train split says.

The kept tokens are those of every train item's prompt, as the :class:`Collator` renders it (chat
template, instruction, audio placeholder, system prompt), and of its answer. Only the train split
is read: the model learns no other rows, and eval text it has not seen still tokenizes (into
smaller pieces, down to bytes). A checkpoint stores the trimmed tokenizer it was trained with
(``tokenizer/``) and is reloaded with that one, so eval never depends on the corpus.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from moeaudio.config import Recipe
from moeaudio.data.manifest import read_manifest
from moeaudio.data.tasks import item_prompt
from moeaudio.errors import MissingDataError
from moeaudio.model.llm import build_tokenizer
from moeaudio.runtime.batching import Collator, Example
from moeaudio.runtime.examples import manifest_path, select_items

__all__ = ["corpus_tokenizer", "corpus_tokens", "recipe_tokenizer", "saved_tokenizer"]


def corpus_tokens(recipe: Recipe) -> set[str]:
    """The builtin tokenizer's tokens in the train split's prompts and answers."""
    manifest = manifest_path(recipe, "train")
    if not manifest.exists():
        raise MissingDataError(
            f"{manifest} not found: llm.vocab=corpus builds the tokenizer from the train split; prepare "
            "the data first (e.g. `moeaudio prepare synth`) or set llm.vocab=full"
        )
    full = build_tokenizer(recipe.llm)
    placeholder = recipe.llm.audio_placeholder
    render = Collator(
        SimpleNamespace(tokenizer=full, recipe=recipe, audio_token_id=full.convert_tokens_to_ids(placeholder))
    )
    ids: set[int] = set()
    for item in select_items(recipe, read_manifest(manifest)):
        ids.update(render.prompt_ids([Example(item_prompt(item), item.target)], [1]))
        ids.update(render.response_ids(item.target or ""))
    return set(full.convert_ids_to_tokens(sorted(ids)))


def corpus_tokenizer(recipe: Recipe):
    """The builtin tokenizer keeping only :func:`corpus_tokens` (and what builds them)."""
    return build_tokenizer(recipe.llm, corpus_tokens(recipe))


def recipe_tokenizer(recipe: Recipe):
    """What :func:`~moeaudio.model.audio_llm.build_audio_llm` should be given for ``recipe``: the
    trimmed tokenizer under ``llm.vocab: corpus``, else None (the recipe's own is built there)."""
    return corpus_tokenizer(recipe) if recipe.llm.vocab == "corpus" else None


def saved_tokenizer(checkpoint: str | Path):
    """The tokenizer a checkpoint was trained with (its ``tokenizer/`` folder)."""
    from transformers import AutoTokenizer

    folder = Path(checkpoint) / "tokenizer"
    if not (folder / "tokenizer.json").exists():
        raise MissingDataError(
            f"{folder}/tokenizer.json not found: a checkpoint trained with llm.vocab=corpus carries its "
            "trimmed tokenizer there; copy the whole checkpoint directory"
        )
    return AutoTokenizer.from_pretrained(str(folder))
