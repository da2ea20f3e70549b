"""The Python API behind ``import moeaudio``: load a model and use it, or run what each command runs.

``moeaudio/__init__.py`` re-exports these names lazily, so ``import moeaudio`` (and the ``moeaudio``
command's ``--help``) stays free of torch until one is used::

    import moeaudio

    model = moeaudio.load("runs/quickstart")        # a run, a checkpoint or an export
    model.generate("clip.wav", "What sound is heard in the audio?")
    model.transcribe("talk.wav").text

One function per command, with the command's options as keyword arguments: :func:`prepare`,
:func:`convert`, :func:`train_recipe`, :func:`evaluate`, :func:`transcribe`, :func:`export`,
:func:`inspect`, :func:`analyze_routing`, :func:`analyze_conflict`, :func:`analyze_probe`,
:func:`bench_adapter`. (Training is ``train_recipe``: ``moeaudio.train`` is the training package.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moeaudio.analyze.commands import analyze_conflict, analyze_probe
from moeaudio.analyze.commands import analyze_routing_audio as _routing_audio
from moeaudio.analyze.commands import analyze_routing_manifest as _routing_manifest
from moeaudio.bench.adapter import bench_adapter
from moeaudio.config import Recipe, load_recipe
from moeaudio.data.audio import load_audio
from moeaudio.data.formats import ConversionReport, convert_manifest
from moeaudio.data.sources.base import PrepareReport, get_source
from moeaudio.data.synth import SynthSummary, make_synth_corpus
from moeaudio.data.tasks import TASK_INSTRUCTIONS
from moeaudio.errors import UsageError
from moeaudio.eval.evaluate import run_eval
from moeaudio.eval.generation import generate_all
from moeaudio.eval.transcribe import Transcript, run_transcribe
from moeaudio.inspection import model_summary
from moeaudio.model.audio_llm import AudioLLM
from moeaudio.runtime.batching import Collator, Example
from moeaudio.runtime.checkpoint import load_model, resolve_checkpoint
from moeaudio.runtime.device import inference_dtype, pick_device
from moeaudio.runtime.export import export_checkpoint
from moeaudio.train.launch import train_recipe as _train_recipe
from moeaudio.train.trainer import TrainResult

__all__ = [
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
]

Audio = str | Path | np.ndarray


class AudioModel:
    """A trained audio LLM ready to answer: :meth:`generate`, :meth:`logits`, :meth:`transcribe`.

    ``model`` is the underlying :class:`~moeaudio.model.audio_llm.AudioLLM` (a ``torch.nn.Module``).
    """

    def __init__(self, model: AudioLLM, path: Path | None = None):
        self.model = model.eval()
        self.path = path

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | None = None,
        precision: str = "auto",
        runs_dir: str | Path = "runs",
    ) -> AudioModel:
        """Load a run directory (its latest checkpoint), a checkpoint or an export (``moeaudio export``),
        on ``device`` (default: CUDA when available), in bf16 on a GPU and fp32 on CPU (``precision``)."""
        checkpoint = resolve_checkpoint(path, runs_dir)
        target = pick_device(device)
        return cls(
            load_model(checkpoint, device=target, dtype=inference_dtype(target, precision)), checkpoint
        )

    @property
    def recipe(self) -> Recipe:
        return self.model.recipe

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _examples(self, audio: Audio | Sequence[Audio], prompt: str | None) -> tuple[list[Example], bool]:
        many = isinstance(audio, (list, tuple))
        clips = list(audio) if many else [audio]
        instruction = prompt or TASK_INSTRUCTIONS["asr"]
        sr = self.model.encoder.sample_rate
        waves = [
            np.asarray(a, dtype=np.float32) if isinstance(a, np.ndarray) else load_audio(a, sr) for a in clips
        ]
        return [Example(instruction, None, wave=w, meta={"id": str(i)}) for i, w in enumerate(waves)], many

    def generate(
        self,
        audio: Audio | Sequence[Audio],
        prompt: str | None = None,
        *,
        max_new_tokens: int = 64,
        num_beams: int = 1,
        batch_size: int = 8,
        ctc_weight: float | None = None,
    ) -> str | list[str]:
        """The model's answer to ``prompt`` about ``audio`` (a file path, or a mono waveform at the encoder's
        sample rate, 16 kHz); a list of clips gives a list of answers. Greedy unless ``num_beams`` > 1.
        Without a prompt the model is asked to transcribe. ``ctc_weight`` (a model trained with a
        ``ctc_embed`` stage, transcription): joint CTC/LLM rescoring (moeaudio.eval.joint_ctc)."""
        examples, many = self._examples(audio, prompt)
        texts, _ = generate_all(
            self.model, examples, batch_size, max_new_tokens, num_beams, progress=False, ctc_weight=ctc_weight
        )
        return texts if many else texts[0]

    @torch.no_grad()
    def logits(self, audio: Audio, prompt: str | None = None) -> torch.Tensor:
        """Next-token logits at every position of the prompt, audio tokens spliced in: ``(positions, vocab)``
        in float32 on the CPU (the last row is the distribution of the answer's first token)."""
        examples, _ = self._examples(audio, prompt)
        batch = Collator(self.model, for_generation=True)(examples).to(self.device)
        embeds, _ = self.model.embed(batch)
        out = self.model.llm(inputs_embeds=embeds, attention_mask=batch.attention_mask)
        return out.logits[0].float().cpu()

    def transcribe(
        self,
        audio: str | Path,
        *,
        prompt: str | None = None,
        window: float | None = None,
        batch_size: int = 8,
    ) -> Transcript:
        """A recording of any length: windows the encoder accepts, stitched, with timestamps (``.text``,
        ``.segments``); the same as ``moeaudio transcribe`` without writing anything."""
        import io

        (result,) = run_transcribe(
            [audio], prompt=prompt, window=window, batch_size=batch_size, model=self.model,
            stdout=io.StringIO(), stderr=io.StringIO(),
        )  # fmt: skip
        return result

    def __repr__(self) -> str:
        return f"AudioModel({self.recipe.name!r}, path={str(self.path)!r}, device={self.device})"


def load(
    path: str | Path | None = None,
    *,
    device: str | None = None,
    precision: str = "auto",
    runs_dir: str | Path = "runs",
) -> AudioModel:
    """:meth:`AudioModel.from_pretrained`; without ``path``, the newest checkpoint under ``runs_dir``."""
    if path is None:
        path = resolve_checkpoint(None, runs_dir)
    return AudioModel.from_pretrained(path, device=device, precision=precision, runs_dir=runs_dir)


# ----------------------------------------------------------------------------------- one per command


def prepare(
    source: str,
    *paths: str | Path,
    seed: int = 0,
    size: str = "default",
    progress: bool = False,
    **options: Any,
) -> SynthSummary | PrepareReport:
    """``moeaudio prepare``: ``prepare("synth", "data/synth")`` or ``prepare("librispeech", SRC, OUT, **options)``."""
    if source == "synth":
        if len(paths) != 1:
            raise UsageError("prepare('synth', OUT)")
        return make_synth_corpus(Path(paths[0]), seed=seed, size=size, progress=progress)
    if len(paths) != 2:
        raise UsageError(f"prepare({source!r}, SRC, OUT)")
    return get_source(source).prepare(Path(paths[0]), Path(paths[1]), **options)


def convert(
    src: str | Path,
    dst: str | Path,
    src_format: str = "auto",
    dst_format: str = "moeaudio",
    *,
    task: str | None = None,
) -> ConversionReport:
    """``moeaudio convert``: between moeaudio, SLAM-LLM, ms-swift / LLaMA-Factory and NeMo manifests."""
    return convert_manifest(src, dst, src_format, dst_format, task=task)


def train_recipe(
    recipe: str | Path | Recipe,
    *overrides: str,
    output_dir: str | Path | None = None,
    resume: bool = False,
    evaluate: bool = True,
) -> TrainResult:
    """``moeaudio train`` in this process: a recipe (path, shipped name or :class:`Recipe`) and
    ``section.key=value`` overrides."""
    loaded = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, list(overrides))
    return _train_recipe(loaded, output_dir, resume, evaluate=evaluate)


def evaluate(task: str, checkpoint: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """``moeaudio eval``: the result record (also written to ``CHECKPOINT/eval/TASK.json``); options as the
    command's (``manifest=``, ``max_items=``, ``few_shot=``, ``precision=``, ...)."""
    return run_eval(task, checkpoint, progress=options.pop("progress", False), **options)


def transcribe(
    audio: Sequence[str | Path] | str | Path, checkpoint: str | Path | None = None, **options: Any
):
    """``moeaudio transcribe``: one :class:`~moeaudio.eval.transcribe.Transcript` per input file."""
    return run_transcribe([audio] if isinstance(audio, str | Path) else list(audio), checkpoint, **options)


def export(
    checkpoint: str | Path | None, out: str | Path, *, lora: str = "merge", overwrite: bool = False
) -> dict:
    """``moeaudio export``: a self-contained folder (encoder weights, LLM, tokenizer, recipe, model card)."""
    return export_checkpoint(checkpoint, out, lora=lora, overwrite=overwrite)


def inspect(recipe: str | Path, *overrides: str) -> dict[str, Any]:
    """``moeaudio inspect``: parameters (total / trainable / active) and adapter FLOPs, without weights."""
    return model_summary(load_recipe(recipe, list(overrides)))


def analyze_routing(
    audio: str | Path | None = None,
    *,
    manifest: str | Path | None = None,
    checkpoints: Sequence[str | Path] = (),
    png: str | Path | None = None,
    **options: Any,
) -> Any:
    """``moeaudio analyze-routing``: one recording (per-token experts) or a manifest (expert x domain)."""
    if (audio is None) == (manifest is None):
        raise UsageError("analyze_routing: give either audio or manifest=")
    if audio is not None:
        checkpoint = checkpoints[0] if checkpoints else None
        return _routing_audio(audio, checkpoint, png, device=options.get("device", "cpu"))[0]
    return _routing_manifest(
        manifest, list(checkpoints), options.get("by", "domain"), options.get("batch_size", 16), png,
        options.get("limit"), device=options.get("device", "cpu"), progress=False,
    )[1]  # fmt: skip
