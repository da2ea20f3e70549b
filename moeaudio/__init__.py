"""moeaudio: audio LLMs with a sparse Mixture-of-Experts adapter, from the command line or from Python.

::

    import moeaudio

    model = moeaudio.load("runs/quickstart")         # a run, a checkpoint, or an export
    print(model.transcribe("talk.wav").text)
    print(model.generate("clip.wav", "What sound is heard in the audio?"))

The API (:mod:`moeaudio.api`) loads on first use, so ``import moeaudio`` and the ``moeaudio`` command's
``--help`` stay free of torch: ``load``, ``AudioModel``, and one function per command (``prepare``,
``convert``, ``train_recipe``, ``evaluate``, ``transcribe``, ``export``, ``inspect``, ``analyze_routing``,
``analyze_conflict``, ``analyze_probe``, ``bench_adapter``), plus ``load_recipe`` and ``Recipe``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = (
    "AudioModel",
    "Recipe",
    "analyze_conflict",
    "analyze_probe",
    "analyze_routing",
    "bench_adapter",
    "convert",
    "evaluate",
    "export",
    "inspect",
    "load",
    "load_recipe",
    "prepare",
    "train_recipe",
    "transcribe",
)

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from moeaudio import api  # lazy: torch loads when the API is first used, not on `import moeaudio`

        return getattr(api, name)
    raise AttributeError(f"module 'moeaudio' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
