"""Loading a pretrained encoder, LLM or tokenizer by the name a recipe gives: failures as user errors.

``encoder.name`` / ``llm.name`` / ``llm.tokenizer`` may be a hub id, a local directory or one of our
offline names. A typo, a directory that is not a model, or a hub id that is not cached while offline
makes transformers raise ``OSError`` or ``ValueError`` from deep inside; :func:`loading` turns those
into one :class:`~moeaudio.errors.ModelLoadError` naming the recipe key and the ways to fix it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from moeaudio.errors import ModelLoadError, MoeaudioError

__all__ = ["loading"]


@contextlib.contextmanager
def loading(key: str, name: str, offline: tuple[str, ...] = ("tiny",)) -> Iterator[None]:
    """Run a ``from_pretrained`` block; its ``OSError``/``ValueError`` becomes a :class:`ModelLoadError`."""
    try:
        yield
    except MoeaudioError:
        raise
    except (OSError, ValueError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelLoadError(
            f"{key} {name!r} cannot be loaded ({reason}). Give a local model directory, a Hugging Face hub id "
            f"that is in the cache or can be downloaded (needs the network), or one of: {', '.join(offline)}"
        ) from None
