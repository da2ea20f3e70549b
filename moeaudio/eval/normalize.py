"""Text normalisation for scoring, matching what Whisper-family papers report.

WER is only comparable across systems when both sides are normalised the same way, so we reuse
Whisper's own normalisers (shipped in ``transformers``) instead of writing our own:

* English: ``EnglishTextNormalizer`` (numbers, contractions, fillers, British->American spelling).
* Other languages: ``BasicTextNormalizer`` (lower-case, drop bracketed text, punctuation and symbols).

The English normaliser needs Whisper's British->American spelling map (``english.json``, MIT, from
``openai/whisper``; ``normalizer.json`` in a Whisper tokenizer repo). It is looked up offline only. The
``whisper-normalizer`` package, a dependency of moeaudio, ships a copy, so the map is always found
and "colour" and "color" score as the same word, as in published Whisper numbers. Should every
lookup fail we fall back to an empty map (only spelling variants change) and
:func:`english_spelling_source` reports ``"none"`` so the run records it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing transformers costs seconds; defer it to the first normalisation
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

__all__ = [
    "ENGLISH_SPELLING_ENV",
    "english_spelling_source",
    "load_english_spelling_mapping",
    "normalize_basic",
    "normalize_english",
    "normalizer_for",
]

logger = logging.getLogger(__name__)

#: Environment variable naming a JSON file with the spelling map (takes precedence over lookups).
ENGLISH_SPELLING_ENV = "MOEAUDIO_ENGLISH_SPELLING_JSON"

# Whisper tokenizer repos whose ``normalizer.json`` carries the spelling map; all share the same file.
_WHISPER_REPOS = (
    "openai/whisper-large-v3",
    "openai/whisper-large-v3-turbo",
    "openai/whisper-large-v2",
    "openai/whisper-medium",
    "openai/whisper-small",
    "openai/whisper-base",
    "openai/whisper-tiny",
)

_ENGLISH_LANGS = {"en", "eng", "english"}


def _read_mapping(path: str | os.PathLike[str]) -> dict[str, str]:
    with open(path, encoding="utf-8") as fh:
        mapping = json.load(fh)
    if not isinstance(mapping, dict):
        raise ValueError(f"spelling map {path} is not a JSON object")
    return {str(k): str(v) for k, v in mapping.items()}


@lru_cache(maxsize=8)
def load_english_spelling_mapping(path: str | None = None) -> tuple[dict[str, str], str]:
    """Find Whisper's British->American spelling map without touching the network.

    Order: ``path`` / ``$MOEAUDIO_ENGLISH_SPELLING_JSON``, a Whisper tokenizer's ``normalizer.json`` in the
    local Hugging Face cache, the ``openai-whisper`` package's ``english.json``, the
    ``whisper-normalizer`` package's copy of it, else ``{}``.
    Returns ``(mapping, source)`` where ``source`` says where it came from (``"none"`` for the fallback).
    """
    explicit = path or os.environ.get(ENGLISH_SPELLING_ENV)
    if explicit:
        return _read_mapping(explicit), str(explicit)

    try:
        from huggingface_hub import try_to_load_from_cache

        for repo in _WHISPER_REPOS:
            cached = try_to_load_from_cache(repo, "normalizer.json")
            if isinstance(cached, str) and Path(cached).is_file():
                return _read_mapping(cached), f"hf-cache:{repo}/normalizer.json"
    except Exception as exc:  # a broken cache must not break scoring
        logger.debug("HF cache lookup for normalizer.json failed: %s", exc)

    try:
        from importlib.resources import files

        resource = files("whisper.normalizers").joinpath("english.json")
        if resource.is_file():
            return _read_mapping(str(resource)), "openai-whisper:whisper/normalizers/english.json"
    except Exception as exc:  # package absent or laid out differently
        logger.debug("openai-whisper english.json not available: %s", exc)

    bundled = _whisper_normalizer_json()
    if bundled is not None:
        return _read_mapping(bundled), "whisper-normalizer:whisper_normalizer/normalizers/english.json"

    logger.warning(
        "Whisper English spelling map not found offline; using EnglishTextNormalizer({}) "
        "(British/American spelling variants will count as errors). Set %s to a normalizer.json to fix.",
        ENGLISH_SPELLING_ENV,
    )
    return {}, "none"


def _whisper_normalizer_json() -> Path | None:
    """``english.json`` inside the installed ``whisper-normalizer`` package, found without importing it."""
    spec = importlib.util.find_spec("whisper_normalizer")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "normalizers" / "english.json"
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=1)
def _english_normalizer() -> EnglishTextNormalizer:
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    mapping, _ = load_english_spelling_mapping()
    return EnglishTextNormalizer(mapping)


@lru_cache(maxsize=1)
def _basic_normalizer() -> BasicTextNormalizer:
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    return BasicTextNormalizer()


def english_spelling_source() -> str:
    """Where the spelling map used by :func:`normalize_english` came from (record it with results)."""
    return load_english_spelling_mapping()[1]


def normalize_english(text: str) -> str:
    """Whisper's English normaliser, so our English WER is comparable to published Whisper numbers."""
    return _english_normalizer()(text).strip()


def normalize_basic(text: str) -> str:
    """Whisper's language-agnostic normaliser: lower-case, drop bracketed spans, punctuation, symbols."""
    return _basic_normalizer()(text).strip()


def normalizer_for(lang: str | None) -> Callable[[str], str]:
    """Pick the normaliser for a language code or name (``en``, ``en-US``, ``English``...).

    English gets the English normaliser; any other language, or an unknown one (``None``), gets the
    basic one, because the English rules (numbers, contractions) would corrupt other languages.
    """
    if lang is not None:
        primary = lang.strip().lower().replace("_", "-").split("-")[0]
        if primary in _ENGLISH_LANGS:
            return normalize_english
    return normalize_basic
