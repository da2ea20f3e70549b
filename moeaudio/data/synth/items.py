"""The two records every item maker shares: what to make (:class:`_Spec`, from the planner) and what was
made (:class:`_Made`, before normalising and writing).

Why not in :mod:`~moeaudio.data.synth.corpus`: the multiple-choice makers (:mod:`~moeaudio.data.synth.mcq`)
take and return them too, and the corpus module imports those makers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class _Spec:
    """What to make: a job row of the size table, the split and the index within (split, job)."""

    split: str
    job: str
    index: int
    label: str | None  # balanced class label assigned by the planner (None: drawn per item)


@dataclass
class _Made:
    audio: np.ndarray
    target: str
    meta: dict[str, Any]
    instruction: str | None = None
    choices: list[str] | None = None
    answer: str | None = None
    speaker: str | None = None
    lang: str | None = None
