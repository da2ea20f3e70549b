"""Audio longer than the encoder accepts: how long a window may be, and the clips it may not be.

Whisper encodes at most 30 s; longer recordings are cut into windows
(:func:`moeaudio.data.audio.split_windows`, at pauses where there are some) by every command that
takes a recording of any length -- ``transcribe`` and ``analyze-routing`` -- so none of them
silently drops what lies past the encoder's limit.
"""

from __future__ import annotations

import os

import numpy as np

from moeaudio.data.audio import AudioDecodeError
from moeaudio.errors import UsageError
from moeaudio.model.encoder import min_input_seconds

__all__ = ["DEFAULT_WINDOW_S", "check_clip_length", "max_window_seconds", "window_seconds"]

DEFAULT_WINDOW_S = 30.0


def max_window_seconds(model) -> float | None:
    """The longest input the model's encoder accepts (Whisper: 30 s), or None when unbounded."""
    enc = model.encoder
    max_frames = getattr(enc, "max_frames", None)
    hop = getattr(getattr(enc, "feature_extractor", None), "hop_length", None)
    if max_frames and hop:
        return float(max_frames * 2 * hop / enc.sample_rate)  # two mel frames per encoder frame
    return None


def window_seconds(model, window: float | None = None) -> float:
    """The window to cut recordings into: ``window`` (seconds) if given, else 30 s or the encoder's
    limit if shorter; :class:`UsageError` naming ``--window`` when it is not positive or exceeds
    what the encoder accepts."""
    limit = max_window_seconds(model)
    window_s = window if window is not None else min(DEFAULT_WINDOW_S, limit or DEFAULT_WINDOW_S)
    if window_s <= 0:
        raise UsageError(f"--window must be a positive number of seconds (got {window_s:g})")
    if limit is not None and window_s > limit + 1e-6:
        raise UsageError(f"--window {window_s:g} s is longer than the encoder accepts ({limit:g} s)")
    return window_s


def check_clip_length(model, wave: np.ndarray, path: str | os.PathLike[str]) -> None:
    """:class:`AudioDecodeError` naming ``path`` when ``wave`` (at the encoder's rate) is too short
    to give one audio token."""
    shortest = min_input_seconds(model.recipe.encoder)
    seconds = len(wave) / model.encoder.sample_rate
    if seconds < shortest:
        raise AudioDecodeError(
            f"{os.fspath(path)}: {seconds:.3f} s of audio is shorter than the encoder's shortest input "
            f"({shortest:.3f} s); use a longer recording"
        )
